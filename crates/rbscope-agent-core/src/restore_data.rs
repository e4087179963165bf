//! A decoded snapshot as plain Ruby arrays, for `Rbscope::Restore` (restore.rb): the shapes,
//! built through [`Build`] (the agent builds Ruby objects; tests build a tree).
//!
//! Building Ruby arrays, strings and numbers directly is several times faster than rendering
//! JSON text for Ruby to parse again. Every object is pushed at once into a parent that is
//! reachable from the root array (which the agent keeps on its native stack, scanned by the
//! GC), so nothing is collected half-built.
//!
//! Shapes (documented again in restore.rb, which reads them):
//!
//! ```text
//! doc    = [format_version, id, exception, frames, objects, context_json, singletons, classes]
//! exception = [class, message, [[class, message, frames], ...causes]]
//! frame  = [label, method_or_nil, path, lineno, self, [name, value, ...], first_lineno, lines]
//! object = [kind, class, frozen, [ivar_name, value, ...], *kind_specific]
//! value  = nil | true | false | Integer | Float | Symbol | [ref_index] | [:redacted, why] | [:cut, why]
//! singleton = [object_index, [extended_module, ...], [singleton_method_name, ...]]
//! class  = [class_path, [var_name, value, ...], vars_left_out]
//! ```
//!
//! kind_specific: string `[text, original_len]`; array and set `[items, original_len]`; hash
//! `[[k, v, ...], [default] | nil, compare_by_identity, original_len, default_proc | nil]`;
//! module `[name | nil, is_class, anonymous_path | nil, superclass | nil]`; method `[owner,
//! name, arity, unbound, location, receiver]` (the receiver `[:cut, "receiver not stored"]`
//! in a format 1 snapshot, none for an UnboundMethod); proc `[lambda, arity, location]`; the
//! others as restore.rb reads them. A Symbol is the one Ruby code gets (`to_sym`), in its own
//! encoding. `singletons` lists the objects extended with modules or given singleton methods
//! (format 2); `classes` the class-level state of the classes the frames used (format 3).

use rbscope_snapshot::{CutReason, Frame, Object, ObjectExtra, ObjectKind, Snapshot, Value};
use std::collections::HashMap;

/// Makes the objects of the shapes (Ruby's, in the agent).
pub trait Build {
    type Obj: Copy;
    fn array(&self, capacity: usize) -> Self::Obj;
    /// Appends `v` to an array this builder made.
    fn push(&self, array: Self::Obj, v: Self::Obj);
    fn str(&self, s: &str) -> Self::Obj;
    /// A string of bytes in the named encoding (binary when the name is unknown).
    fn bytes(&self, bytes: &[u8], encoding: &str) -> Self::Obj;
    fn int(&self, n: i64) -> Self::Obj;
    /// An integer given in decimal (nil when it is not one).
    fn big_int(&self, decimal: &str) -> Self::Obj;
    fn float(&self, f: f64) -> Self::Obj;
    /// The Symbol named `name` (UTF-8), equal to the app's own.
    fn sym(&self, name: &str) -> Self::Obj;
    /// The Symbol of `bytes` in the named encoding (the String itself when they make none).
    fn sym_bytes(&self, bytes: &[u8], encoding: &str) -> Self::Obj;
    fn bool(&self, b: bool) -> Self::Obj;
    fn nil(&self) -> Self::Obj;
}

/// The whole snapshot as a `doc`.
pub fn build<B: Build>(builder: &B, s: &Snapshot) -> B::Obj {
    let extras = s.extras.objects.iter().map(|e| (e.object, e)).collect();
    let b = Shapes(builder, extras);
    let doc = b.0.array(8);
    b.0.push(doc, b.0.int(rbscope_snapshot::FORMAT_VERSION as i64));
    b.0.push(doc, b.0.str(&s.id));
    let exc = b.0.array(3);
    b.0.push(doc, exc);
    b.0.push(exc, b.0.str(&s.exception.class_name));
    b.0.push(exc, b.0.str(&s.exception.message));
    let causes = b.0.array(s.exception.causes.len());
    b.0.push(exc, causes);
    for c in &s.exception.causes {
        let ca = b.0.array(3);
        b.0.push(causes, ca);
        b.0.push(ca, b.0.str(&c.class_name));
        b.0.push(ca, b.0.str(&c.message));
        b.frames(ca, &c.frames);
    }
    b.frames(doc, &s.frames);
    let objects = b.0.array(s.objects.len());
    b.0.push(doc, objects);
    for (i, o) in s.objects.iter().enumerate() {
        b.object(objects, i as u32, o);
    }
    let context = rbscope_snapshot::json::snapshot_context(s).to_string();
    b.0.push(doc, b.0.str(&context));
    let singletons = b.0.array(0);
    b.0.push(doc, singletons);
    for e in &s.extras.objects {
        if e.extended.is_empty() && e.singleton_methods.is_empty() {
            continue;
        }
        let one = b.0.array(3);
        b.0.push(singletons, one);
        b.0.push(one, b.0.int(e.object as i64));
        for names in [&e.extended, &e.singleton_methods] {
            let list = b.0.array(names.len());
            b.0.push(one, list);
            for n in names {
                b.0.push(list, b.0.str(n));
            }
        }
    }
    let classes = b.0.array(s.extras.classes.len());
    b.0.push(doc, classes);
    for c in &s.extras.classes {
        let one = b.0.array(3);
        b.0.push(classes, one);
        b.0.push(one, b.0.str(&c.class_path));
        let vars = b.0.array(c.vars.len() * 2);
        b.0.push(one, vars);
        for (name, v) in &c.vars {
            b.0.push(vars, b.0.str(name));
            b.0.push(vars, b.value(v));
        }
        b.0.push(one, b.0.int(c.vars_left_out as i64));
    }
    doc
}

/// The builder, and format 2's extras by object index.
struct Shapes<'b, 's, B>(&'b B, HashMap<u32, &'s ObjectExtra>);

impl<B: Build> Shapes<'_, '_, B> {
    fn opt_str(&self, s: &Option<String>) -> B::Obj {
        s.as_deref().map(|s| self.0.str(s)).unwrap_or(self.0.nil())
    }

    fn value(&self, v: &Value) -> B::Obj {
        match v {
            Value::Nil => self.0.nil(),
            Value::True => self.0.bool(true),
            Value::False => self.0.bool(false),
            Value::Integer(i) => self.0.int(*i),
            Value::BigInteger(s) => self.0.big_int(s),
            Value::Float(f) => self.0.float(*f),
            Value::Symbol(s) => self.0.sym(s),
            Value::EncodedSymbol { bytes, encoding } => self.0.sym_bytes(bytes, encoding),
            Value::Ref(i) => {
                let a = self.0.array(1);
                self.0.push(a, self.0.int(*i as i64));
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

    fn tagged(&self, tag: &str, text: &str) -> B::Obj {
        let a = self.0.array(2);
        self.0.push(a, self.0.sym(tag));
        self.0.push(a, self.0.str(text));
        a
    }

    fn pairs<'a>(&self, items: impl Iterator<Item = (&'a str, &'a Value)>) -> B::Obj {
        let a = self.0.array(0);
        for (name, v) in items {
            self.0.push(a, self.0.str(name));
            self.0.push(a, self.value(v));
        }
        a
    }

    fn values<'a>(&self, items: impl Iterator<Item = &'a Value>) -> B::Obj {
        let a = self.0.array(0);
        for v in items {
            self.0.push(a, self.value(v));
        }
        a
    }

    fn location(&self, loc: &Option<(String, i64)>) -> B::Obj {
        match loc {
            Some((p, l)) => {
                let a = self.0.array(2);
                self.0.push(a, self.0.str(p));
                self.0.push(a, self.0.int(*l));
                a
            }
            None => self.0.nil(),
        }
    }

    fn frames(&self, parent: B::Obj, frames: &[Frame]) {
        let list = self.0.array(frames.len());
        self.0.push(parent, list);
        for f in frames {
            let a = self.0.array(8);
            self.0.push(list, a);
            self.0.push(a, self.0.str(&f.label));
            self.0.push(a, self.opt_str(&f.method_name));
            self.0.push(a, self.0.str(&f.path));
            self.0.push(a, self.0.int(f.lineno));
            self.0.push(a, self.value(&f.self_value));
            self.0
                .push(a, self.pairs(f.locals.iter().map(|(n, v)| (n.as_str(), v))));
            match &f.source {
                Some(src) => {
                    self.0.push(a, self.0.int(src.first_lineno));
                    let lines = self.0.array(src.lines.len());
                    self.0.push(a, lines);
                    for l in &src.lines {
                        self.0.push(lines, self.0.str(l));
                    }
                }
                None => {
                    self.0.push(a, self.0.nil());
                    self.0.push(a, self.0.nil());
                }
            }
        }
    }

    fn object(&self, parent: B::Obj, index: u32, o: &Object) {
        let extra = self.1.get(&index).copied();
        let a = self.0.array(6);
        self.0.push(parent, a);
        self.0.push(a, self.0.sym(o.kind.name()));
        self.0.push(a, self.0.str(&o.class_name));
        self.0.push(a, self.0.bool(o.frozen));
        self.0
            .push(a, self.pairs(o.ivars.iter().map(|(n, v)| (n.as_str(), v))));
        match &o.kind {
            ObjectKind::String {
                bytes,
                encoding,
                original_len,
            } => {
                self.0.push(a, self.0.bytes(bytes, encoding));
                self.0.push(a, self.0.int(*original_len as i64));
            }
            ObjectKind::Array {
                items,
                original_len,
            }
            | ObjectKind::Set {
                items,
                original_len,
            } => {
                self.0.push(a, self.values(items.iter()));
                self.0.push(a, self.0.int(*original_len as i64));
            }
            ObjectKind::Hash {
                entries,
                default,
                compare_by_identity,
                original_len,
                default_proc,
            } => {
                self.0
                    .push(a, self.values(entries.iter().flat_map(|(k, v)| [k, v])));
                match default {
                    Some(d) => {
                        let one = self.0.array(1);
                        self.0.push(one, self.value(d));
                        self.0.push(a, one);
                    }
                    None => self.0.push(a, self.0.nil()),
                }
                self.0.push(a, self.0.bool(*compare_by_identity));
                self.0.push(a, self.0.int(*original_len as i64));
                match default_proc {
                    Some(p) => self.0.push(a, self.value(p)),
                    None => self.0.push(a, self.0.nil()),
                }
            }
            ObjectKind::Struct { members } => self
                .0
                .push(a, self.pairs(members.iter().map(|(n, v)| (n.as_str(), v)))),
            ObjectKind::Range {
                begin,
                end,
                exclusive,
            } => {
                self.0.push(a, self.value(begin));
                self.0.push(a, self.value(end));
                self.0.push(a, self.0.bool(*exclusive));
            }
            ObjectKind::Regexp { source, options } => {
                self.0.push(a, self.0.str(source));
                self.0.push(a, self.0.int(*options as i64));
            }
            ObjectKind::Rational {
                numerator,
                denominator,
            } => {
                self.0.push(a, self.value(numerator));
                self.0.push(a, self.value(denominator));
            }
            ObjectKind::Complex { real, imaginary } => {
                self.0.push(a, self.value(real));
                self.0.push(a, self.value(imaginary));
            }
            ObjectKind::Time {
                seconds,
                nanoseconds,
                utc_offset,
                utc,
            } => {
                self.0.push(a, self.0.int(*seconds));
                self.0.push(a, self.0.int(*nanoseconds as i64));
                self.0.push(a, self.0.int(*utc_offset as i64));
                self.0.push(a, self.0.bool(*utc));
            }
            ObjectKind::Date { iso8601 } | ObjectKind::DateTime { iso8601 } => {
                self.0.push(a, self.0.str(iso8601))
            }
            ObjectKind::BigDecimal { digits } => self.0.push(a, self.0.str(digits)),
            ObjectKind::Plain => {}
            ObjectKind::Module { name, is_class } => {
                self.0.push(a, self.opt_str(name));
                self.0.push(a, self.0.bool(*is_class));
                let (path, superclass) = extra
                    .map(|e| (e.anonymous_path.clone(), e.superclass.clone()))
                    .unwrap_or_default();
                self.0.push(a, self.opt_str(&path));
                self.0.push(a, self.opt_str(&superclass));
            }
            ObjectKind::Proc {
                lambda,
                arity,
                source_location,
            } => {
                self.0.push(a, self.0.bool(*lambda));
                self.0.push(a, self.0.int(*arity as i64));
                self.0.push(a, self.location(source_location));
            }
            ObjectKind::Method {
                owner,
                name,
                arity,
                unbound,
                source_location,
            } => {
                self.0.push(a, self.0.str(owner));
                self.0.push(a, self.0.str(name));
                self.0.push(a, self.0.int(*arity as i64));
                self.0.push(a, self.0.bool(*unbound));
                self.0.push(a, self.location(source_location));
                // An UnboundMethod has none.
                match extra.and_then(|e| e.receiver.as_ref()) {
                    Some(r) => self.0.push(a, self.value(r)),
                    None if !*unbound => self.0.push(a, self.tagged("cut", "receiver not stored")),
                    None => {}
                }
            }
            ObjectKind::Exception { message } => self.0.push(a, self.0.str(message)),
            ObjectKind::Opaque { preview } => self.0.push(a, self.0.str(preview)),
            ObjectKind::Magic { path } => self.0.push(a, self.0.str(path)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rbscope_snapshot::{
        CaptureStats, CauseInfo, ClassState, Context, ExceptionInfo, Extras, SourceExcerpt,
        FORMAT_VERSION,
    };
    use std::cell::RefCell;

    /// Builds a tree of text nodes; an array's items are node indices.
    #[derive(Default)]
    pub(crate) struct Tree(RefCell<Vec<Node>>);

    enum Node {
        Array(Vec<usize>),
        Leaf(String),
    }

    impl Tree {
        fn leaf(&self, text: String) -> usize {
            let mut nodes = self.0.borrow_mut();
            nodes.push(Node::Leaf(text));
            nodes.len() - 1
        }

        /// `[a, b, ...]` with leaves as written by the builder.
        pub(crate) fn render(&self, i: usize) -> String {
            match &self.0.borrow()[i] {
                Node::Leaf(t) => t.clone(),
                Node::Array(items) => {
                    let parts: Vec<String> = items.iter().map(|j| self.render(*j)).collect();
                    format!("[{}]", parts.join(", "))
                }
            }
        }
    }

    impl Build for Tree {
        type Obj = usize;
        fn array(&self, _capacity: usize) -> usize {
            let mut nodes = self.0.borrow_mut();
            nodes.push(Node::Array(Vec::new()));
            nodes.len() - 1
        }
        fn push(&self, array: usize, v: usize) {
            match &mut self.0.borrow_mut()[array] {
                Node::Array(items) => items.push(v),
                Node::Leaf(_) => panic!("pushed into a leaf"),
            }
        }
        fn str(&self, s: &str) -> usize {
            self.leaf(format!("{s:?}"))
        }
        fn bytes(&self, bytes: &[u8], encoding: &str) -> usize {
            self.leaf(format!("{:?}.{encoding}", String::from_utf8_lossy(bytes)))
        }
        fn int(&self, n: i64) -> usize {
            self.leaf(n.to_string())
        }
        fn big_int(&self, decimal: &str) -> usize {
            self.leaf(format!("{decimal}n"))
        }
        fn float(&self, f: f64) -> usize {
            self.leaf(format!("{f:?}"))
        }
        fn sym(&self, name: &str) -> usize {
            self.leaf(format!(":{name}"))
        }
        fn sym_bytes(&self, bytes: &[u8], encoding: &str) -> usize {
            self.leaf(format!(":{bytes:02x?}.{encoding}"))
        }
        fn bool(&self, b: bool) -> usize {
            self.leaf(b.to_string())
        }
        fn nil(&self) -> usize {
            self.leaf("nil".into())
        }
    }

    fn object(class: &str, kind: ObjectKind, ivars: Vec<(String, Value)>) -> Object {
        Object {
            class_name: class.into(),
            frozen: false,
            kind,
            ivars,
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            id: "01ID".into(),
            reported_at_ms: 0,
            fingerprint: "fp".into(),
            exception: ExceptionInfo {
                class_name: "NoMethodError".into(),
                message: "boom".into(),
                backtrace: vec![],
                causes: vec![CauseInfo {
                    class_name: "KeyError".into(),
                    message: "key".into(),
                    backtrace: vec![],
                    frames: vec![],
                }],
            },
            frames: vec![Frame {
                depth: 0,
                label: "Shop#checkout".into(),
                method_name: Some("checkout".into()),
                path: "app.rb".into(),
                lineno: 3,
                self_value: Value::Ref(0),
                locals: vec![
                    ("n".into(), Value::Integer(3)),
                    ("password".into(), Value::Redacted("name".into())),
                    ("deep".into(), Value::Cut(CutReason::Depth)),
                    (
                        "sjis".into(),
                        Value::EncodedSymbol {
                            bytes: vec![0x82, 0xa0],
                            encoding: "Shift_JIS".into(),
                        },
                    ),
                ],
                source: Some(SourceExcerpt {
                    first_lineno: 2,
                    lines: vec!["def checkout".into()],
                }),
            }],
            objects: vec![
                object(
                    "Shop",
                    ObjectKind::Plain,
                    vec![("@items".into(), Value::Ref(1))],
                ),
                object(
                    "Hash",
                    ObjectKind::Hash {
                        entries: vec![(Value::Symbol("a".into()), Value::Float(1.5))],
                        original_len: 1,
                        default: Some(Value::Nil),
                        default_proc: None,
                        compare_by_identity: true,
                    },
                    vec![],
                ),
                object(
                    "String",
                    ObjectKind::String {
                        bytes: b"caf\xc3\xa9".to_vec(),
                        encoding: "UTF-8".into(),
                        original_len: 10_000,
                    },
                    vec![],
                ),
                object(
                    "Range",
                    ObjectKind::Range {
                        begin: Value::BigInteger("99999999999999999999".into()),
                        end: Value::True,
                        exclusive: false,
                    },
                    vec![],
                ),
                object(
                    "Proc",
                    ObjectKind::Proc {
                        lambda: true,
                        arity: -1,
                        source_location: Some(("a.rb".into(), 7)),
                    },
                    vec![],
                ),
                object(
                    "Class",
                    ObjectKind::Module {
                        name: None,
                        is_class: true,
                    },
                    vec![],
                ),
                object(
                    "Method",
                    ObjectKind::Method {
                        owner: "Shop".into(),
                        name: "pay".into(),
                        arity: 1,
                        unbound: false,
                        source_location: None,
                    },
                    vec![],
                ),
                object(
                    "Module",
                    ObjectKind::Module {
                        name: Some("Comparable".into()),
                        is_class: false,
                    },
                    vec![],
                ),
                object(
                    "Array",
                    ObjectKind::Array {
                        items: vec![Value::Integer(1)],
                        original_len: 1500,
                    },
                    vec![],
                ),
            ],
            context: Context {
                hostname: "web-1".into(),
                ..Context::default()
            },
            stats: CaptureStats::default(),
            extras: Extras {
                objects: vec![
                    ObjectExtra {
                        object: 0,
                        extended: vec!["Comparable".into()],
                        singleton_methods: vec!["shout".into()],
                        ..ObjectExtra::default()
                    },
                    ObjectExtra {
                        object: 5,
                        anonymous_path: Some("#<Class:0x0001>".into()),
                        superclass: Some("Shop".into()),
                        ..ObjectExtra::default()
                    },
                    ObjectExtra {
                        object: 6,
                        receiver: Some(Value::Ref(0)),
                        ..ObjectExtra::default()
                    },
                ],
                classes: vec![ClassState {
                    class_path: "Shop".into(),
                    vars: vec![
                        ("@limit".into(), Value::Integer(3)),
                        ("@@token".into(), Value::Redacted("name".into())),
                        ("@@orders".into(), Value::Ref(0)),
                    ],
                    vars_left_out: 2,
                }],
                trigger: None,
            },
        }
    }

    #[test]
    fn the_shapes_restore_rb_reads() {
        let tree = Tree::default();
        let s = sample();
        let doc = build(&tree, &s);
        let Node::Array(parts) = &tree.0.borrow()[doc] else {
            panic!("the doc is not an array")
        };
        let parts = parts.clone();
        let part = |i: usize| tree.render(parts[i]);
        assert_eq!(parts.len(), 8);
        assert_eq!(part(0), FORMAT_VERSION.to_string());
        assert_eq!(part(1), "\"01ID\"");
        assert_eq!(
            part(2),
            r#"["NoMethodError", "boom", [["KeyError", "key", []]]]"#
        );
        assert_eq!(
            part(3),
            [
                r#"[["Shop#checkout", "checkout", "app.rb", 3, [0], ["n", 3, "password", "#,
                r#"[:redacted, "name"], "deep", [:cut, "depth limit"], "sjis", "#,
                r#":[82, a0].Shift_JIS], 2, ["def checkout"]]]"#,
            ]
            .concat()
        );
        assert_eq!(
            part(4),
            [
                r#"[[:object, "Shop", false, ["@items", [1]]], "#,
                r#"[:hash, "Hash", false, [], [:a, 1.5], [nil], true, 1, nil], "#,
                r#"[:string, "String", false, [], "café".UTF-8, 10000], "#,
                r#"[:range, "Range", false, [], 99999999999999999999n, true, false], "#,
                r#"[:proc, "Proc", false, [], true, -1, ["a.rb", 7]], "#,
                r##"[:module, "Class", false, [], nil, true, "#<Class:0x0001>", "Shop"], "##,
                r#"[:method, "Method", false, [], "Shop", "pay", 1, false, nil, [0]], "#,
                r#"[:module, "Module", false, [], "Comparable", false, nil, nil], "#,
                r#"[:array, "Array", false, [], [1], 1500]]"#,
            ]
            .concat()
        );
        let context = part(5);
        assert!(context.contains("web-1"), "{context}");
        // Only objects extended or with singleton methods are listed.
        assert_eq!(part(6), r#"[[0, ["Comparable"], ["shout"]]]"#);
        assert_eq!(
            part(7),
            r#"[["Shop", ["@limit", 3, "@@token", [:redacted, "name"], "@@orders", [0]], 2]]"#
        );
    }

    #[test]
    fn a_format_1_method_says_its_receiver_was_not_stored() {
        let tree = Tree::default();
        let mut s = sample();
        s.extras = Extras::default();
        let doc = build(&tree, &s);
        let text = tree.render(doc);
        assert!(
            text.contains(r#"[:method, "Method", false, [], "Shop", "pay", 1, false, nil, [:cut, "receiver not stored"]]"#),
            "{text}"
        );
        assert!(
            text.contains(r#"[:module, "Class", false, [], nil, true, nil, nil]"#),
            "{text}"
        );
        assert!(text.ends_with(", []]"), "no singletons: {text}");
    }
}
