//! Freezes the bytes of snapshot formats 1 and 2.
//!
//! Snapshots are stored for months and read by whatever rbscope the user runs later, so a
//! change to the model (a field added, a variant moved) or to the encoding must be a visible,
//! versioned change, never a silent one. This test builds one snapshot that uses every kind of
//! value, object, cut reason and frame field the format has, encodes it, and compares the result
//! byte for byte with a committed fixture; it also decodes the fixture back to the same value.
//! The exhaustive `match`es below stop compiling when a variant is added, so a new kind cannot
//! escape the fixture either. A snapshot written by the real agent is kept too: it must go on
//! decoding, and re-encoding it (as format 2) must keep its format 1 payload as it was
//! (fixtures/README.md says how it was made). The JSON documents (what `rbscope show --json`
//! and the web UI give) are frozen too, as `.json` fixtures.
//!
//! Format 2 adds `Extras` after format 1's payload and the `Value::EncodedSymbol` variant:
//! `every_kind()` is the format 1 sample (its fixture, `snapshot-v1.bin`, is a format 1 file
//! that must go on decoding to it), `every_kind_v2()` adds what format 2 has.
//!
//! To rewrite the fixtures on purpose: `RBSCOPE_UPDATE_GOLDEN=1 cargo test -p rbscope-snapshot
//! --test golden`.

use rbscope_snapshot::*;
use std::collections::BTreeSet;
use std::path::PathBuf;

const UPDATE_ENV: &str = "RBSCOPE_UPDATE_GOLDEN";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn frame(depth: u32, label: &str, method: Option<&str>, path: &str, lineno: i64) -> Frame {
    Frame {
        depth,
        label: label.into(),
        method_name: method.map(Into::into),
        path: path.into(),
        lineno,
        self_value: Value::Nil,
        locals: vec![],
        source: None,
    }
}

fn object(class_name: &str, frozen: bool, kind: ObjectKind) -> Object {
    Object {
        class_name: class_name.into(),
        frozen,
        kind,
        ivars: vec![],
    }
}

/// One snapshot with every value, object kind, cut reason and field of format 1, with time and
/// ids set explicitly. Object indices are fixed (the comments), so references are plain
/// numbers.
fn every_kind() -> Snapshot {
    let objects = vec![
        // 0: the frame's self, a plain object with ivars (one refers back to itself).
        Object {
            class_name: "Billing::Invoice".into(),
            frozen: false,
            kind: ObjectKind::Plain,
            ivars: vec![
                ("@self".into(), Value::Ref(0)),
                ("@lines".into(), Value::Ref(2)),
                ("@api_key".into(), Value::Redacted("name".into())),
            ],
        },
        // 1: a string cut to 5 of its 12 bytes, frozen, with bytes that are not UTF-8.
        object(
            "String",
            true,
            ObjectKind::String {
                bytes: vec![b'h', b'e', 0xff, 0x00, b'o'],
                encoding: "ASCII-8BIT".into(),
                original_len: 12,
            },
        ),
        // 2: an array holding every immediate value and every cut reason.
        object(
            "Array",
            false,
            ObjectKind::Array {
                items: vec![
                    Value::Nil,
                    Value::True,
                    Value::False,
                    Value::Integer(i64::MIN),
                    Value::Integer(-1),
                    Value::Integer(i64::MAX),
                    Value::BigInteger("123456789012345678901234567890".into()),
                    Value::Float(-2.5),
                    Value::Float(f64::INFINITY),
                    Value::Symbol("total".into()),
                    Value::Ref(1),
                    Value::Redacted("value".into()),
                    Value::Cut(CutReason::Depth),
                    Value::Cut(CutReason::Objects),
                    Value::Cut(CutReason::Bytes),
                    Value::Cut(CutReason::Error),
                ],
                original_len: 20,
            },
        ),
        // 3: a hash with a default and a default proc, compared by identity.
        object(
            "Hash",
            false,
            ObjectKind::Hash {
                entries: vec![
                    (Value::Symbol("a".into()), Value::Integer(1)),
                    (Value::Ref(1), Value::Ref(2)),
                ],
                original_len: 3,
                default: Some(Value::Integer(0)),
                default_proc: Some(Value::Ref(12)),
                compare_by_identity: true,
            },
        ),
        // 4: a hash without default or default proc.
        object(
            "Hash",
            false,
            ObjectKind::Hash {
                entries: vec![],
                original_len: 0,
                default: None,
                default_proc: None,
                compare_by_identity: false,
            },
        ),
        // 5
        object(
            "Set",
            false,
            ObjectKind::Set {
                items: vec![Value::Integer(7), Value::Ref(1)],
                original_len: 2,
            },
        ),
        // 6
        object(
            "Point",
            false,
            ObjectKind::Struct {
                members: vec![
                    ("x".into(), Value::Float(1.25)),
                    ("y".into(), Value::Ref(8)),
                ],
            },
        ),
        // 7
        object(
            "Range",
            true,
            ObjectKind::Range {
                begin: Value::Integer(1),
                end: Value::Nil,
                exclusive: true,
            },
        ),
        // 8
        object(
            "Rational",
            true,
            ObjectKind::Rational {
                numerator: Value::Integer(-3),
                denominator: Value::BigInteger("98765432109876543210".into()),
            },
        ),
        // 9
        object(
            "Complex",
            true,
            ObjectKind::Complex {
                real: Value::Float(0.5),
                imaginary: Value::Ref(8),
            },
        ),
        // 10
        object(
            "Regexp",
            true,
            ObjectKind::Regexp {
                source: "\\Ainv-(\\d+)\\z".into(),
                options: 7,
            },
        ),
        // 11
        object(
            "Time",
            false,
            ObjectKind::Time {
                seconds: -86_400,
                nanoseconds: 999_999_999,
                utc_offset: -34_200,
                utc: false,
            },
        ),
        // 12: a lambda with a source location.
        object(
            "Proc",
            false,
            ObjectKind::Proc {
                lambda: true,
                arity: -2,
                source_location: Some(("app/models/invoice.rb".into(), 17)),
            },
        ),
        // 13: a proc without one (defined in C).
        object(
            "Proc",
            false,
            ObjectKind::Proc {
                lambda: false,
                arity: 0,
                source_location: None,
            },
        ),
        // 14
        object(
            "Date",
            false,
            ObjectKind::Date {
                iso8601: "2024-02-29".into(),
            },
        ),
        // 15
        object(
            "DateTime",
            false,
            ObjectKind::DateTime {
                iso8601: "2024-02-29T23:59:59.123456789+05:30".into(),
            },
        ),
        // 16
        object(
            "BigDecimal",
            true,
            ObjectKind::BigDecimal {
                digits: "0.1e1".into(),
            },
        ),
        // 17: a named class.
        object(
            "Class",
            false,
            ObjectKind::Module {
                name: Some("Billing::Invoice".into()),
                is_class: true,
            },
        ),
        // 18: an anonymous module.
        object(
            "Module",
            false,
            ObjectKind::Module {
                name: None,
                is_class: false,
            },
        ),
        // 19
        object(
            "Method",
            false,
            ObjectKind::Method {
                owner: "Billing::Invoice".into(),
                name: "total".into(),
                arity: 1,
                unbound: false,
                source_location: Some(("app/models/invoice.rb".into(), 12)),
            },
        ),
        // 20
        object(
            "UnboundMethod",
            false,
            ObjectKind::Method {
                owner: "Kernel".into(),
                name: "puts".into(),
                arity: -1,
                unbound: true,
                source_location: None,
            },
        ),
        // 21: an exception, with an ivar.
        Object {
            class_name: "KeyError".into(),
            frozen: false,
            kind: ObjectKind::Exception {
                message: "key not found: :rate".into(),
            },
            ivars: vec![("@key".into(), Value::Symbol("rate".into()))],
        },
        // 22
        object(
            "IO",
            false,
            ObjectKind::Opaque {
                preview: "#<IO:<STDOUT>>".into(),
            },
        ),
        // 23
        object(
            "MyApp::Application",
            false,
            ObjectKind::Magic {
                path: "Rails.application".into(),
            },
        ),
    ];

    let checkout = Frame {
        depth: 0,
        label: "Billing::Invoice#total{block}(rate)".into(),
        method_name: Some("total".into()),
        path: "app/models/invoice.rb".into(),
        lineno: 13,
        self_value: Value::Ref(0),
        locals: vec![
            ("rate".into(), Value::Ref(3)),
            ("lines".into(), Value::Ref(2)),
            ("password".into(), Value::Redacted("name".into())),
            ("deep".into(), Value::Cut(CutReason::Depth)),
            ("n".into(), Value::Integer(3)),
        ],
        source: Some(SourceExcerpt {
            first_lineno: 11,
            lines: vec![
                "  def total(rate)".into(),
                "    lines.sum do |l|".into(),
                "      l.amount * rate.fetch(:rate)".into(),
            ],
        }),
    };
    let main = Frame {
        self_value: Value::Ref(23),
        ..frame(3, "<main>", None, "script.rb", 1)
    };
    let cause_frame = Frame {
        self_value: Value::Ref(3),
        locals: vec![("key".into(), Value::Symbol("rate".into()))],
        ..frame(0, "Hash#fetch(_)", Some("fetch"), "<internal:hash>", -1)
    };

    Snapshot {
        id: "01HZX3V5Q7W8Y9Z0ABCDEFGHJK".into(),
        reported_at_ms: 1_717_171_717_171,
        fingerprint: fingerprint("NoMethodError", "Billing::Invoice#total{block}(rate)"),
        exception: ExceptionInfo {
            class_name: "NoMethodError".into(),
            message: "undefined method `amount' for nil".into(),
            backtrace: vec![
                "app/models/invoice.rb:13:in `block in total'".into(),
                "script.rb:1:in `<main>'".into(),
            ],
            causes: vec![
                CauseInfo {
                    class_name: "KeyError".into(),
                    message: "key not found: :rate".into(),
                    backtrace: vec!["<internal:hash>:1:in `fetch'".into()],
                    frames: vec![cause_frame],
                },
                CauseInfo {
                    class_name: "RuntimeError".into(),
                    message: String::new(),
                    backtrace: vec![],
                    frames: vec![],
                },
            ],
        },
        frames: vec![checkout, main],
        objects,
        context: Context {
            hostname: "web-1.example.com".into(),
            pid: 4_194_304,
            process_title: "puma: cluster worker 0: 4242 [app]".into(),
            ruby_version: "3.3.4".into(),
            ruby_platform: "x86_64-linux".into(),
            app_root: "/srv/app".into(),
            app_revision: Some("0123456789abcdef".into()),
            thread_name: Some("puma srv tp 001".into()),
            gems: vec![
                ("rack".into(), "3.1.7".into()),
                ("rails".into(), "7.2.1".into()),
            ],
            agent_version: "0.1.0".into(),
            extra: vec![
                ("request.method".into(), "POST".into()),
                ("request.path".into(), "/invoices/42".into()),
            ],
        },
        stats: CaptureStats {
            redacted: 3,
            cut_depth: 1,
            cut_objects: 300,
            cut_bytes: 70_000,
            truncated_strings: 5,
            truncated_collections: 6,
            errors: 7,
            frames_skipped: 8,
            locals_missing: true,
        },
        // Format 1 has none.
        extras: Extras::default(),
    }
}

/// `every_kind()` and what format 2 adds: a symbol that is not UTF-8, and every field of an
/// object's extras.
fn every_kind_v2() -> Snapshot {
    let mut s = every_kind();
    s.frames[0].locals.push((
        "sjis".into(),
        Value::EncodedSymbol {
            bytes: vec![0x82, 0xa0],
            encoding: "Shift_JIS".into(),
        },
    ));
    s.extras = Extras {
        objects: vec![
            // The frame's self was extended and given a singleton method.
            ObjectExtra {
                object: 0,
                extended: vec!["Comparable".into(), "#<Module:0x00007f00deadbeef>".into()],
                singleton_methods: vec!["refund!".into()],
                ..ObjectExtra::default()
            },
            // The anonymous module (a superclass is only ever stored for a class: here it is
            // only there to be in the fixture).
            ObjectExtra {
                object: 18,
                anonymous_path: Some("#<Module:0x00007f00deadbeef>".into()),
                superclass: Some("Object".into()),
                ..ObjectExtra::default()
            },
            // The bound method's receiver.
            ObjectExtra {
                object: 19,
                receiver: Some(Value::Ref(0)),
                ..ObjectExtra::default()
            },
        ],
        classes: Vec::new(),
        trigger: None,
    };
    s
}

/// Format 2's sample plus what format 3 adds: the class-level state of two classes (one with
/// a redacted class variable, a reference into the arena and variables left out), and a
/// trigger (the sample stands for both kinds of snapshot at once: only its bytes matter).
fn every_kind_v3() -> Snapshot {
    let mut s = every_kind_v2();
    s.extras.trigger = Some(Trigger {
        kind: "live".into(),
        thread: "worker-1".into(),
        reason: "asked by Rbscope.snapshot".into(),
    });
    s.extras.classes = vec![
        ClassState {
            class_path: "Billing::Config".into(),
            vars: vec![
                ("@limit".into(), Value::Integer(3)),
                ("@@loads".into(), Value::Integer(7)),
                ("@@api_key".into(), Value::Redacted("name".into())),
                ("@defaults".into(), Value::Ref(1)),
            ],
            vars_left_out: 2,
        },
        ClassState {
            class_path: "#<Class:0x00007f00deadbeef>".into(),
            vars: vec![("@count".into(), Value::Cut(CutReason::Objects))],
            vars_left_out: 0,
        },
    ];
    s
}

// The exhaustive matches: adding a variant to the model stops these from compiling, so the
// fixture has to grow with it.

const VALUE_KINDS: &[&str] = &[
    "nil",
    "true",
    "false",
    "integer",
    "big-integer",
    "float",
    "symbol",
    "ref",
    "redacted",
    "cut-depth",
    "cut-objects",
    "cut-bytes",
    "cut-error",
    "encoded-symbol",
];

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::True => "true",
        Value::False => "false",
        Value::Integer(_) => "integer",
        Value::BigInteger(_) => "big-integer",
        Value::Float(_) => "float",
        Value::Symbol(_) => "symbol",
        Value::Ref(_) => "ref",
        Value::Redacted(_) => "redacted",
        Value::Cut(CutReason::Depth) => "cut-depth",
        Value::Cut(CutReason::Objects) => "cut-objects",
        Value::Cut(CutReason::Bytes) => "cut-bytes",
        Value::Cut(CutReason::Error) => "cut-error",
        Value::EncodedSymbol { .. } => "encoded-symbol",
    }
}

const OBJECT_KINDS: &[&str] = &[
    "string",
    "array",
    "hash",
    "hash-with-defaults",
    "set",
    "struct",
    "range",
    "regexp",
    "rational",
    "complex",
    "time",
    "date",
    "datetime",
    "bigdecimal",
    "plain",
    "module-named",
    "module-anonymous",
    "proc-located",
    "proc",
    "method-located",
    "method",
    "exception",
    "opaque",
    "magic",
];

fn object_kind(k: &ObjectKind) -> &'static str {
    match k {
        ObjectKind::String { .. } => "string",
        ObjectKind::Array { .. } => "array",
        ObjectKind::Hash {
            default: Some(_),
            default_proc: Some(_),
            ..
        } => "hash-with-defaults",
        ObjectKind::Hash { .. } => "hash",
        ObjectKind::Set { .. } => "set",
        ObjectKind::Struct { .. } => "struct",
        ObjectKind::Range { .. } => "range",
        ObjectKind::Regexp { .. } => "regexp",
        ObjectKind::Rational { .. } => "rational",
        ObjectKind::Complex { .. } => "complex",
        ObjectKind::Time { .. } => "time",
        ObjectKind::Date { .. } => "date",
        ObjectKind::DateTime { .. } => "datetime",
        ObjectKind::BigDecimal { .. } => "bigdecimal",
        ObjectKind::Plain => "plain",
        ObjectKind::Module { name: Some(_), .. } => "module-named",
        ObjectKind::Module { name: None, .. } => "module-anonymous",
        ObjectKind::Proc {
            source_location: Some(_),
            ..
        } => "proc-located",
        ObjectKind::Proc { .. } => "proc",
        ObjectKind::Method {
            source_location: Some(_),
            ..
        } => "method-located",
        ObjectKind::Method { .. } => "method",
        ObjectKind::Exception { .. } => "exception",
        ObjectKind::Opaque { .. } => "opaque",
        ObjectKind::Magic { .. } => "magic",
    }
}

/// Every field of a frame, by whether its optional parts are there.
fn frame_shape(f: &Frame) -> &'static str {
    let Frame {
        depth: _,
        label: _,
        method_name,
        path: _,
        lineno: _,
        self_value: _,
        locals,
        source,
    } = f;
    match (method_name, source, locals.is_empty()) {
        (Some(_), Some(_), false) => "method-source-locals",
        (None, None, true) => "bare",
        _ => "other",
    }
}

#[test]
fn the_sample_uses_every_kind_the_format_has() {
    let s = every_kind_v2();
    assert_eq!(s.validate(), Ok(()));

    let mut values = BTreeSet::new();
    let frames = s
        .frames
        .iter()
        .chain(s.exception.causes.iter().flat_map(|c| c.frames.iter()));
    for f in frames.clone() {
        values.insert(value_kind(&f.self_value));
        values.extend(f.locals.iter().map(|(_, v)| value_kind(v)));
    }
    let mut objects = BTreeSet::new();
    for o in &s.objects {
        objects.insert(object_kind(&o.kind));
        values.extend(o.ivars.iter().map(|(_, v)| value_kind(v)));
        values.extend(o.kind.children().into_iter().map(value_kind));
    }
    let want: BTreeSet<_> = VALUE_KINDS.iter().copied().collect();
    assert_eq!(values, want, "every value kind, in the golden snapshot");
    let want: BTreeSet<_> = OBJECT_KINDS.iter().copied().collect();
    assert_eq!(objects, want, "every object kind, in the golden snapshot");

    let shapes: BTreeSet<_> = frames.map(frame_shape).collect();
    assert!(shapes.contains("method-source-locals") && shapes.contains("bare"));
    assert!(s.exception.causes.iter().any(|c| !c.frames.is_empty()));
    let c = &s.context;
    assert!(c.app_revision.is_some() && c.thread_name.is_some());
    assert!(!c.gems.is_empty() && !c.extra.is_empty());
    assert!(s.stats.locals_missing && s.stats.frames_skipped > 0);
    // Every field of format 2's extras.
    let ObjectExtra {
        object: _,
        extended,
        singleton_methods,
        anonymous_path,
        superclass,
        receiver,
    } = s
        .extras
        .objects
        .iter()
        .fold(ObjectExtra::default(), |mut all, e| {
            all.extended.extend(e.extended.clone());
            all.singleton_methods.extend(e.singleton_methods.clone());
            all.anonymous_path = all.anonymous_path.or(e.anonymous_path.clone());
            all.superclass = all.superclass.or(e.superclass.clone());
            all.receiver = all.receiver.or(e.receiver.clone());
            all
        });
    assert!(!extended.is_empty() && !singleton_methods.is_empty());
    assert!(anonymous_path.is_some() && superclass.is_some() && receiver.is_some());
    // The format 1 sample has none of format 2's additions.
    assert!(every_kind().extras.objects.is_empty());
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Compares `actual` with the committed fixture `name` (or rewrites it when asked).
fn check_golden(name: &str, actual: &[u8], why: &str) {
    let path = fixture(name);
    if std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the fixture {} ({e}); to create it: \
             {UPDATE_ENV}=1 cargo test -p rbscope-snapshot --test golden",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "the snapshot format changed: bump the format version and keep a reader for \
             version 1.\n\
             {} is {} bytes, this build writes {} bytes for the same snapshot (first \
             difference at byte {}). {why}\n\
             Stored snapshots are read by later rbscope versions: a change to the model or its \
             encoding needs FORMAT_VERSION bumped in crates/rbscope-snapshot/src/codec.rs, a \
             decoder kept for version 1 (this fixture must go on decoding), and a new fixture \
             for the new version. If the bytes changed without changing what they mean (a new \
             lz4_flex compresses differently and the fixture still decodes to the same \
             snapshot), rewrite the fixture on purpose: \
             {UPDATE_ENV}=1 cargo test -p rbscope-snapshot --test golden",
            path.display(),
            expected.len(),
            actual.len(),
            first_difference(&expected, actual),
        );
    }
}

/// The bytes this build writes for `s` checked against fixture `name`, and the header.
fn check_frozen(name: &str, s: &Snapshot, version: u16) {
    let bytes = encode(s).unwrap();
    // What the committed fixture means to this build, for the failure message.
    let why = match std::fs::read(fixture(name)).map(|b| decode(&b)) {
        Ok(Ok(old)) if &old == s => "The committed fixture still decodes to the same snapshot: \
                                     only the encoder's output changed."
            .to_string(),
        Ok(Ok(_)) => "The committed fixture decodes to a different snapshot.".to_string(),
        Ok(Err(e)) => format!("The committed fixture no longer decodes: {e}."),
        Err(_) => String::new(),
    };
    check_golden(name, &bytes, &why);

    // The header, field by field, as codec.rs documents it.
    assert_eq!(&bytes[..6], b"RBSNAP");
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), version);
}

#[test]
fn format_3_bytes_are_frozen() {
    assert_eq!(
        FORMAT_VERSION, 3,
        "the snapshot format version changed: keep snapshot-v1.bin, snapshot-v2.bin, \
         snapshot-v3.bin and their readers, and add a fixture for version {FORMAT_VERSION}"
    );
    check_frozen("snapshot-v3.bin", &every_kind_v3(), 3);
}

#[test]
fn the_format_3_fixture_decodes_to_the_sample() {
    let bytes = std::fs::read(fixture("snapshot-v3.bin")).unwrap();
    let decoded = decode(&bytes).unwrap_or_else(|e| {
        panic!("the snapshot format changed: the version-3 fixture no longer decodes: {e}")
    });
    assert!(
        decoded == every_kind_v3(),
        "the snapshot format changed: the version-3 fixture decodes to a different snapshot"
    );
}

/// Format 2 files (written before format 3) go on decoding, with no class-level state; and
/// format 3 writes format 2's payload first, unchanged, then the class states.
#[test]
fn the_format_2_fixture_stays_format_2_and_decodes_to_the_sample() {
    let bytes = std::fs::read(fixture("snapshot-v2.bin")).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), 2);
    let decoded = decode(&bytes).unwrap_or_else(|e| {
        panic!("the snapshot format changed: the version-2 fixture no longer decodes: {e}")
    });
    assert!(
        decoded == every_kind_v2(),
        "the snapshot format changed: the version-2 fixture decodes to a different snapshot"
    );
    let v3 = encode(&every_kind_v2()).unwrap();
    let (p2, p3) = (payload(&bytes), payload(&v3));
    assert!(
        p3.starts_with(&p2),
        "format 3 changed format 2's part of the payload"
    );
    assert_eq!(
        &p3[p2.len()..],
        &[0, 0],
        "no class states, no trigger: an empty list and None"
    );
}

/// The decompressed payload of a stored snapshot.
fn payload(bytes: &[u8]) -> Vec<u8> {
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    lz4_flex::block::decompress(&bytes[16..], len).unwrap()
}

#[test]
fn format_1_fixtures_stay_format_1_files_and_read_with_no_extras() {
    for name in ["snapshot-v1.bin", "agent-ruby-3.1-v1.bin"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), 1, "{name}");
        assert!(decode(&bytes).unwrap().extras.objects.is_empty(), "{name}");
    }
    // Formats 2 and 3 write format 1's payload first, unchanged, then the extras.
    let v1 = std::fs::read(fixture("snapshot-v1.bin")).unwrap();
    let v3 = encode(&every_kind()).unwrap();
    let (p1, p3) = (payload(&v1), payload(&v3));
    assert!(
        p3.starts_with(&p1),
        "format 3 changed format 1's part of the payload"
    );
    assert_eq!(
        &p3[p1.len()..],
        &[0, 0, 0],
        "no extras: two empty lists and None"
    );
}

#[test]
fn the_format_1_fixture_decodes_to_the_sample() {
    let bytes = std::fs::read(fixture("snapshot-v1.bin")).unwrap();
    let decoded = decode(&bytes).unwrap_or_else(|e| {
        panic!(
            "the snapshot format changed: bump the format version and keep a reader for \
             version 1 (the version-1 fixture no longer decodes: {e})"
        )
    });
    let want = every_kind();
    // Name the parts that differ rather than printing two whole snapshots.
    let parts = [
        ("id", decoded.id == want.id),
        (
            "reported_at_ms",
            decoded.reported_at_ms == want.reported_at_ms,
        ),
        ("fingerprint", decoded.fingerprint == want.fingerprint),
        ("exception", decoded.exception == want.exception),
        ("frames", decoded.frames == want.frames),
        ("objects", decoded.objects == want.objects),
        ("context", decoded.context == want.context),
        ("stats", decoded.stats == want.stats),
    ];
    let differ: Vec<&str> = parts
        .iter()
        .filter(|(_, same)| !same)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        differ.is_empty() && decoded == want,
        "the snapshot format changed: bump the format version and keep a reader for version 1 \
         (the version-1 fixture decodes to a different snapshot; differing: {differ:?})"
    );
}

/// A snapshot the real agent wrote (Ruby 3.1, fixtures/agent-values.rb, see
/// fixtures/README.md): what users have in their stores. It must go on decoding for as long as
/// format 1 is read, and this build's encoder must write the same bytes for it, or the agent and
/// the codec would disagree about format 1.
#[test]
fn a_snapshot_written_by_the_agent_still_reads_and_writes_the_same() {
    let bytes = std::fs::read(fixture("agent-ruby-3.1-v1.bin")).unwrap();
    let s = decode(&bytes).unwrap_or_else(|e| {
        panic!(
            "the snapshot format changed: bump the format version and keep a reader for \
             version 1 (a snapshot written by the agent no longer decodes: {e})"
        )
    });
    // Written again (as format 3), its format 1 part is byte for byte what the agent wrote,
    // then format 2's and 3's empty extras.
    let again = encode(&s).unwrap();
    assert_eq!(decode(&again).unwrap(), s);
    let (old, new) = (payload(&bytes), payload(&again));
    assert!(
        new.starts_with(&old) && new.len() == old.len() + 3,
        "the snapshot format changed: bump the format version and keep a reader for version 1 \
         (a snapshot written by the agent decodes, but this build encodes its format 1 part as \
         {} bytes instead of {}, first difference at byte {})",
        new.len() - 3,
        old.len(),
        first_difference(&old, &new)
    );

    // What the program did, as the agent saw it.
    assert_eq!(s.exception.class_name, "RuntimeError");
    assert_eq!(s.exception.message, "values captured");
    let cause = &s.exception.causes[0];
    assert_eq!(cause.class_name, "KeyError");
    assert_eq!(cause.frames[0].label, "Object#lookup(rates)");
    let f = &s.frames[0];
    assert_eq!(f.label, "Object#kinds{rescue}()");
    assert_eq!((f.path.as_str(), f.lineno), ("agent-values.rb", 64));
    let local = |name: &str| {
        f.locals
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no local {name}"))
    };
    assert_eq!(local("int"), &Value::Integer(42));
    assert_eq!(
        local("big"),
        &Value::BigInteger("1208925819614629174706176".into())
    );
    assert_eq!(local("flt"), &Value::Float(1.25));
    assert_eq!(local("sym"), &Value::Symbol("status".into()));
    assert_eq!(local("password"), &Value::Redacted("name".into()));
    let Value::Ref(holder) = local("holder") else {
        panic!("holder is not an object")
    };
    let holder = s.object(*holder).unwrap();
    assert_eq!(holder.class_name, "Holder");
    assert_eq!(holder.ivars[0], ("@me".into(), local("holder").clone()));
    assert_eq!(s.stats.redacted, 2);
    assert_eq!(s.stats.cut_depth, 1);
    assert_eq!(s.context.ruby_version, "3.1.2");

    // Which kinds it holds (a plain Ruby has no Magic root, no Cut(Objects)...).
    let mut objects = BTreeSet::new();
    for o in &s.objects {
        objects.insert(object_kind(&o.kind));
    }
    for kind in [
        "string",
        "array",
        "hash",
        "set",
        "struct",
        "range",
        "regexp",
        "rational",
        "complex",
        "time",
        "date",
        "datetime",
        "bigdecimal",
        "plain",
        "module-named",
        "proc-located",
        "method",
        "exception",
        "opaque",
    ] {
        assert!(objects.contains(kind), "no {kind} in the agent's snapshot");
    }
}

/// Compares a JSON document with the committed fixture `name` (or rewrites it when asked).
fn check_json_golden(name: &str, doc: &serde_json::Value) {
    let path = fixture(name);
    let mut actual = serde_json::to_string_pretty(doc).unwrap();
    actual.push('\n');
    if std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1") {
        std::fs::write(&path, &actual).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the fixture {} ({e}); to create it: \
             {UPDATE_ENV}=1 cargo test -p rbscope-snapshot --test golden",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "the snapshot's JSON form changed (first difference at line {} of {}): `rbscope \
             show --json`, the web UI's /api/snapshots/ID and users' scripts read it. Add \
             fields rather than rename or remove them, say so in the README, and rewrite the \
             fixture on purpose: {UPDATE_ENV}=1 cargo test -p rbscope-snapshot --test golden",
            line + 1,
            path.display()
        );
    }
}

/// The JSON document of a snapshot (what `show --json` and the UI give, before the CLI adds the
/// report time as text) is an interface too: frozen for the sample and for the agent's snapshot.
#[test]
fn the_json_form_is_frozen() {
    check_json_golden("snapshot-v1.json", &json::snapshot(&every_kind()));
    check_json_golden("snapshot-v2.json", &json::snapshot(&every_kind_v2()));
    check_json_golden("snapshot-v3.json", &json::snapshot(&every_kind_v3()));
    let bytes = std::fs::read(fixture("agent-ruby-3.1-v1.bin")).unwrap();
    let s = decode(&bytes).unwrap();
    check_json_golden("agent-ruby-3.1-v1.json", &json::snapshot(&s));
}
