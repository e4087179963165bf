//! A decoded snapshot handed to Ruby as plain arrays, for `Rbscope::Restore` (restore.rb).
//!
//! Building Ruby arrays, strings and numbers directly is several times faster than rendering
//! JSON text for Ruby to parse again. Every object created here is pushed at once into a parent
//! that is reachable from the root array (which lives on this native stack, scanned by the GC),
//! so nothing is collected half-built.
//!
//! Shapes (documented again in restore.rb, which reads them):
//!
//! ```text
//! doc    = [format_version, id, exception, frames, objects, context_json]
//! exception = [class, message, [[class, message, frames], ...causes]]
//! frame  = [label, method_or_nil, path, lineno, self, [name, value, ...], first_lineno, lines]
//! object = [kind, class, frozen, [ivar_name, value, ...], *kind_specific]
//! value  = nil | true | false | Integer | Float | Symbol | [ref_index] | [:redacted, why] | [:cut, why]
//! ```

use crate::ffi::{self, Gvl, NIL};
use rb_sys::{
    rb_ary_new_capa, rb_ary_push, rb_enc_associate_index, rb_enc_find_index, rb_float_new,
    rb_ll2inum, rb_str_new, rb_utf8_str_new, VALUE,
};
use rbscope_snapshot::{CutReason, Frame, Object, ObjectKind, Snapshot, Value};
use std::ffi::CString;

pub fn build(gvl: Gvl, s: &Snapshot) -> VALUE {
    let b = Builder { gvl };
    let doc = b.ary(6);
    b.push(doc, b.int(rbscope_snapshot::FORMAT_VERSION as i64));
    b.push(doc, b.str(&s.id));
    let exc = b.ary(3);
    b.push(doc, exc);
    b.push(exc, b.str(&s.exception.class_name));
    b.push(exc, b.str(&s.exception.message));
    let causes = b.ary(s.exception.causes.len());
    b.push(exc, causes);
    for c in &s.exception.causes {
        let ca = b.ary(3);
        b.push(causes, ca);
        b.push(ca, b.str(&c.class_name));
        b.push(ca, b.str(&c.message));
        b.frames(ca, &c.frames);
    }
    b.frames(doc, &s.frames);
    let objects = b.ary(s.objects.len());
    b.push(doc, objects);
    for o in &s.objects {
        b.object(objects, o);
    }
    let context = rbscope_snapshot::json::snapshot_context(s).to_string();
    b.push(doc, b.str(&context));
    doc
}

struct Builder {
    gvl: Gvl,
}

impl Builder {
    fn ary(&self, capa: usize) -> VALUE {
        // SAFETY: GVL held (the token); the new array is pushed into a reachable parent or
        // returned to Ruby right away.
        unsafe { rb_ary_new_capa(capa as _) }
    }

    fn push(&self, ary: VALUE, v: VALUE) {
        // SAFETY: GVL held; `ary` is an Array built here.
        unsafe { rb_ary_push(ary, v) };
    }

    fn str(&self, s: &str) -> VALUE {
        // SAFETY: GVL held; pointer and length describe `s`, which is UTF-8.
        unsafe { rb_utf8_str_new(s.as_ptr() as *const _, s.len() as _) }
    }

    fn int(&self, n: i64) -> VALUE {
        // SAFETY: builds a Fixnum or Bignum; no preconditions.
        unsafe { rb_ll2inum(n) }
    }

    fn sym(&self, name: &str) -> VALUE {
        rb_sys::ID2SYM(ffi::intern(self.gvl, name))
    }

    fn bool(&self, b: bool) -> VALUE {
        if b {
            ffi::TRUE
        } else {
            ffi::FALSE
        }
    }

    fn opt_str(&self, s: &Option<String>) -> VALUE {
        s.as_deref().map(|s| self.str(s)).unwrap_or(NIL)
    }

    fn bytes(&self, bytes: &[u8], encoding: &str) -> VALUE {
        // SAFETY: GVL held; pointer and length describe `bytes`.
        let s = unsafe { rb_str_new(bytes.as_ptr() as *const _, bytes.len() as _) };
        if let Ok(name) = CString::new(encoding) {
            // SAFETY: a NUL-terminated name; -1 (unknown) leaves the string binary.
            let idx = unsafe { rb_enc_find_index(name.as_ptr()) };
            if idx >= 0 {
                // SAFETY: a valid encoding index for a fresh String.
                unsafe { rb_enc_associate_index(s, idx) };
            }
        }
        s
    }

    fn value(&self, v: &Value) -> VALUE {
        match v {
            Value::Nil => NIL,
            Value::True => ffi::TRUE,
            Value::False => ffi::FALSE,
            Value::Integer(i) => self.int(*i),
            Value::BigInteger(s) => match CString::new(s.as_str()) {
                // SAFETY: a NUL-terminated decimal string; badcheck 0 never raises.
                Ok(c) => unsafe { rb_sys::rb_cstr_to_inum(c.as_ptr(), 10, 0) },
                Err(_) => NIL,
            },
            // SAFETY: builds a Float; no preconditions.
            Value::Float(f) => unsafe { rb_float_new(*f) },
            Value::Symbol(s) => self.sym(s),
            Value::Ref(i) => {
                let a = self.ary(1);
                self.push(a, self.int(*i as i64));
                a
            }
            Value::Redacted(why) => self.tagged("redacted", why),
            Value::Cut(r) => self.tagged(
                "cut",
                match r {
                    CutReason::Depth => "depth limit",
                    CutReason::Objects => "object limit",
                    CutReason::Bytes => "byte limit",
                    CutReason::Error => "capture error",
                },
            ),
        }
    }

    fn tagged(&self, tag: &str, text: &str) -> VALUE {
        let a = self.ary(2);
        self.push(a, self.sym(tag));
        self.push(a, self.str(text));
        a
    }

    fn pairs<'a>(&self, items: impl Iterator<Item = (&'a str, &'a Value)>) -> VALUE {
        let a = self.ary(0);
        for (name, v) in items {
            self.push(a, self.str(name));
            self.push(a, self.value(v));
        }
        a
    }

    fn values<'a>(&self, items: impl Iterator<Item = &'a Value>) -> VALUE {
        let a = self.ary(0);
        for v in items {
            self.push(a, self.value(v));
        }
        a
    }

    fn location(&self, loc: &Option<(String, i64)>) -> VALUE {
        match loc {
            Some((p, l)) => {
                let a = self.ary(2);
                self.push(a, self.str(p));
                self.push(a, self.int(*l));
                a
            }
            None => NIL,
        }
    }

    fn frames(&self, parent: VALUE, frames: &[Frame]) {
        let list = self.ary(frames.len());
        self.push(parent, list);
        for f in frames {
            let a = self.ary(8);
            self.push(list, a);
            self.push(a, self.str(&f.label));
            self.push(a, self.opt_str(&f.method_name));
            self.push(a, self.str(&f.path));
            self.push(a, self.int(f.lineno));
            self.push(a, self.value(&f.self_value));
            self.push(a, self.pairs(f.locals.iter().map(|(n, v)| (n.as_str(), v))));
            match &f.source {
                Some(src) => {
                    self.push(a, self.int(src.first_lineno));
                    let lines = self.ary(src.lines.len());
                    self.push(a, lines);
                    for l in &src.lines {
                        self.push(lines, self.str(l));
                    }
                }
                None => {
                    self.push(a, NIL);
                    self.push(a, NIL);
                }
            }
        }
    }

    fn object(&self, parent: VALUE, o: &Object) {
        let a = self.ary(6);
        self.push(parent, a);
        self.push(a, self.sym(o.kind.name()));
        self.push(a, self.str(&o.class_name));
        self.push(a, self.bool(o.frozen));
        self.push(a, self.pairs(o.ivars.iter().map(|(n, v)| (n.as_str(), v))));
        match &o.kind {
            ObjectKind::String {
                bytes, encoding, ..
            } => self.push(a, self.bytes(bytes, encoding)),
            ObjectKind::Array { items, .. } | ObjectKind::Set { items, .. } => {
                self.push(a, self.values(items.iter()))
            }
            ObjectKind::Hash {
                entries,
                default,
                compare_by_identity,
                ..
            } => {
                self.push(a, self.values(entries.iter().flat_map(|(k, v)| [k, v])));
                match default {
                    Some(d) => {
                        let one = self.ary(1);
                        self.push(one, self.value(d));
                        self.push(a, one);
                    }
                    None => self.push(a, NIL),
                }
                self.push(a, self.bool(*compare_by_identity));
            }
            ObjectKind::Struct { members } => {
                self.push(a, self.pairs(members.iter().map(|(n, v)| (n.as_str(), v))))
            }
            ObjectKind::Range {
                begin,
                end,
                exclusive,
            } => {
                self.push(a, self.value(begin));
                self.push(a, self.value(end));
                self.push(a, self.bool(*exclusive));
            }
            ObjectKind::Regexp { source, options } => {
                self.push(a, self.str(source));
                self.push(a, self.int(*options as i64));
            }
            ObjectKind::Rational {
                numerator,
                denominator,
            } => {
                self.push(a, self.value(numerator));
                self.push(a, self.value(denominator));
            }
            ObjectKind::Complex { real, imaginary } => {
                self.push(a, self.value(real));
                self.push(a, self.value(imaginary));
            }
            ObjectKind::Time {
                seconds,
                nanoseconds,
                utc_offset,
                utc,
            } => {
                self.push(a, self.int(*seconds));
                self.push(a, self.int(*nanoseconds as i64));
                self.push(a, self.int(*utc_offset as i64));
                self.push(a, self.bool(*utc));
            }
            ObjectKind::Date { iso8601 } | ObjectKind::DateTime { iso8601 } => {
                self.push(a, self.str(iso8601))
            }
            ObjectKind::BigDecimal { digits } => self.push(a, self.str(digits)),
            ObjectKind::Plain => {}
            ObjectKind::Module { name, .. } => self.push(a, self.opt_str(name)),
            ObjectKind::Proc {
                lambda,
                arity,
                source_location,
            } => {
                self.push(a, self.bool(*lambda));
                self.push(a, self.int(*arity as i64));
                self.push(a, self.location(source_location));
            }
            ObjectKind::Method {
                owner,
                name,
                arity,
                unbound,
                source_location,
            } => {
                self.push(a, self.str(owner));
                self.push(a, self.str(name));
                self.push(a, self.int(*arity as i64));
                self.push(a, self.bool(*unbound));
                self.push(a, self.location(source_location));
            }
            ObjectKind::Exception { message } => self.push(a, self.str(message)),
            ObjectKind::Opaque { preview } => self.push(a, self.str(preview)),
            ObjectKind::Magic { path } => self.push(a, self.str(path)),
        }
    }
}
