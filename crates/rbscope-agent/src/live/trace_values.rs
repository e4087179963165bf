//! Values captured by selectors (`Foo#bar(self, arg, @ivar, arg.id)`), read from Ruby.
//!
//! A capture is read at call time inside the hook: `self`, an instance variable (read
//! directly, no method called), an argument (from the call's binding), then a chain of
//! argument-less public methods. Every call is protected (an exception becomes the shown
//! value), and values are rendered here by walking the object rather than with `inspect`, so
//! an app's `inspect` that is slow, huge or broken cannot hurt; how much is shown and how it
//! is cut is `rbscope_trace::values`. A logpoint's values (`rbscope log`) are rendered the same
//! way with the app's redaction rules ([`render_redacted`]): an instance variable or hash key
//! whose name looks secret, or a string that does, is shown as `[redacted]`, as snapshots
//! store it.

use crate::ffi::guard::Feature;
use crate::ffi::live::{self as rb, rb_trace_arg_t, ruby_value_type as T, CaptureRoot, ID, VALUE};
use crate::ffi::{self, Gvl};
use rbscope_snapshot::redact::Rules;
use rbscope_trace::selector::{Capture, Root};
use rbscope_trace::values::{self, Pairs, ITEMS};
use std::fmt::Write;

pub struct Compiled {
    pub text: String,
    pub root: CaptureRoot,
    pub chain: Vec<ID>,
}

pub fn compile(gvl: Gvl, c: &Capture) -> Compiled {
    let root = match &c.root {
        Root::SelfValue => CaptureRoot::SelfValue,
        Root::Ivar(name) => CaptureRoot::Ivar(ffi::intern(gvl, name)),
        Root::Arg(name) => CaptureRoot::Arg(ffi::symbol(gvl, name)),
    };
    Compiled {
        text: c.text.clone(),
        root,
        chain: c.chain.iter().map(|m| ffi::intern(gvl, m)).collect(),
    }
}

/// Reads every capture for the call described by `arg`.
///
/// # Safety
/// `arg` is the trace argument of the call hook running now on this thread.
pub unsafe fn read(gvl: Gvl, captures: &[Compiled], arg: *mut rb_trace_arg_t) -> Vec<String> {
    // SAFETY: the caller's promise: `arg` belongs to the running call hook.
    let recv = unsafe { rb::trace_self(arg) };
    let mut binding: VALUE = 0;
    let local_variable_get = ffi::intern(gvl, "local_variable_get");
    captures
        .iter()
        .map(|c| {
            // SAFETY: as above; `recv` is that call's receiver.
            let got = unsafe {
                rb::read_capture(
                    gvl,
                    arg,
                    recv,
                    &c.root,
                    &c.chain,
                    &mut binding,
                    local_variable_get,
                )
            };
            match got {
                Ok(v) => render(gvl, v),
                Err(_) => "(raised an exception)".into(),
            }
        })
        .collect()
}

/// `v` shown safely within the value budget.
pub fn render(gvl: Gvl, v: VALUE) -> String {
    let mut out = String::new();
    show(gvl, v, &mut out, 2, None);
    values::finish(&mut out);
    out
}

/// [`render`], with what `rules` finds secret (names of instance variables and hash keys,
/// string values) shown as `[redacted]`.
pub fn render_redacted(gvl: Gvl, v: VALUE, rules: &Rules) -> String {
    let mut out = String::new();
    show(gvl, v, &mut out, 2, Some(rules));
    values::finish(&mut out);
    out
}

/// Whether `name` is secret under `rules` (never without rules).
fn secret(rules: Option<&Rules>, name: &str) -> bool {
    rules.is_some_and(|r| r.secret_name(name.trim_start_matches('@')).is_some())
}

/// A Symbol's or String's text (a hash key's name), or None.
fn key_name(gvl: Gvl, k: VALUE) -> Option<String> {
    match ffi::type_of(gvl, k) {
        T::RUBY_T_SYMBOL => ffi::symbol_name(gvl, k),
        T::RUBY_T_STRING => {
            // SAFETY: k is a String (matched), alive on this frame; its bytes are copied at once.
            let bytes = unsafe { ffi::str_bytes(k) };
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        _ => None,
    }
}

fn show(gvl: Gvl, v: VALUE, out: &mut String, depth: u8, rules: Option<&Rules>) {
    if values::spent(out) {
        return;
    }
    match ffi::type_of(gvl, v) {
        T::RUBY_T_NIL => out.push_str("nil"),
        T::RUBY_T_TRUE => out.push_str("true"),
        T::RUBY_T_FALSE => out.push_str("false"),
        T::RUBY_T_FIXNUM => {
            let _ = write!(out, "{}", ffi::fixnum(v).unwrap_or(0));
        }
        T::RUBY_T_FLOAT => {
            let _ = write!(out, "{:?}", ffi::float_value(gvl, v).unwrap_or(0.0));
        }
        T::RUBY_T_BIGNUM => out.push_str(&ffi::bignum_string(gvl, v).unwrap_or_default()),
        T::RUBY_T_SYMBOL => {
            out.push(':');
            out.push_str(&ffi::symbol_name(gvl, v).unwrap_or_default());
        }
        T::RUBY_T_STRING => {
            // SAFETY: v is a String (matched), alive on this frame; its bytes are read here and
            // copied by `values::string` before any Ruby code can run and change them.
            let bytes = unsafe { ffi::str_bytes(v) };
            match rules.and_then(|r| r.secret_value(bytes)) {
                Some(why) => {
                    let _ = write!(out, "[redacted: {why}]");
                }
                None => values::string(out, bytes),
            }
        }
        T::RUBY_T_CLASS | T::RUBY_T_MODULE => out.push_str(&ffi::class_path(gvl, v)),
        T::RUBY_T_ARRAY if depth > 0 => {
            let len = ffi::array_len(gvl, v);
            out.push('[');
            for i in 0..len.min(ITEMS) {
                if i > 0 {
                    out.push_str(", ");
                }
                let item = ffi::array_at(gvl, v, i).unwrap_or(ffi::NIL);
                show(gvl, item, out, depth - 1, rules);
            }
            values::more(out, len, ITEMS);
            out.push(']');
        }
        T::RUBY_T_HASH if depth > 0 => {
            out.push('{');
            let mut pairs = Pairs::hash();
            let what = "reading a traced hash";
            ffi::hash_each(gvl, v, Feature::Trace, what, &mut |k, v| {
                if !pairs.next(out) {
                    return false;
                }
                show(gvl, k, out, depth - 1, rules);
                out.push_str(" => ");
                if rules.is_some() && key_name(gvl, k).is_some_and(|n| secret(rules, &n)) {
                    out.push_str("[redacted]");
                } else {
                    show(gvl, v, out, depth - 1, rules);
                }
                true
            });
            values::more(out, rb::hash_size(gvl, v), pairs.seen());
            out.push('}');
        }
        kind => {
            let _ = write!(out, "#<{}", ffi::class_name_of(gvl, v));
            if depth > 0 && kind == T::RUBY_T_OBJECT {
                let mut ivars = Pairs::ivars();
                let what = "reading traced instance variables";
                ffi::ivar_each(gvl, v, Feature::Trace, what, &mut |id, v| {
                    if !ivars.next(out) {
                        return false;
                    }
                    let name = ffi::id_name(gvl, id).unwrap_or_default();
                    out.push_str(&name);
                    out.push('=');
                    if secret(rules, &name) {
                        out.push_str("[redacted]");
                    } else {
                        show(gvl, v, out, depth - 1, rules);
                    }
                    true
                });
            }
            out.push('>');
        }
    }
}
