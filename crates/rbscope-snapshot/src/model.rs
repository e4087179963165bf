//! The snapshot model.
//!
//! The object graph is an arena: every heap object a frame reaches is stored once in
//! [`Snapshot::objects`] and referred to by its index ([`Value::Ref`]). That keeps cycles and
//! shared references intact without recursion in the stored form, so decoding a hostile blob
//! can never overflow the stack, and a restore can rebuild identity exactly.
//!
//! Immediate values (nil, booleans, small integers, floats, symbols) are stored inline.

use serde::{Deserialize, Serialize};

/// One stored exception snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// A ULID: unique across hosts, sortable by time.
    pub id: String,
    /// Milliseconds since the Unix epoch, when the exception was reported.
    pub reported_at_ms: i64,
    /// Class name + top app frame label (not its line): groups repeats of the same failure.
    pub fingerprint: String,
    pub exception: ExceptionInfo,
    /// The captured app frames, innermost first.
    pub frames: Vec<Frame>,
    pub objects: Vec<Object>,
    pub context: Context,
    pub stats: CaptureStats,
    /// What format 1 has no place for (format 2): stored after the format 1 fields, so the
    /// rest of the payload reads as before; empty in a format 1 snapshot.
    #[serde(skip)]
    pub extras: Extras,
}

/// Format 2's additions, by object: only objects that have any are listed, so a snapshot of
/// plain values costs nothing more; and format 3's class-level state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    pub objects: Vec<ObjectExtra>,
    /// The class-level state of the classes the frames use (format 3; empty before).
    pub classes: Vec<ClassState>,
    /// What took a snapshot that no exception caused (format 3; None for an exception's).
    pub trigger: Option<Trigger>,
}

/// Why a snapshot without an exception was taken: its [`ExceptionInfo`] then names the kind
/// (`(live)`) instead of an exception class, and its message says why, so lists and groups read
/// the same for every snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// `live`: asked for (`Rbscope.snapshot`, `rbscope snapshot -p`).
    pub kind: String,
    /// The thread it shows: its name, or `#<Thread:0x...>`.
    pub thread: String,
    /// In words: `asked by Rbscope.snapshot`.
    pub reason: String,
}

/// The exception class a snapshot of `kind` without an exception is listed under: `(live)`.
/// Parenthesised, so it never equals a Ruby class name.
pub fn trigger_class(kind: &str) -> String {
    format!("({kind})")
}

/// The class-level state of one class or module at the failure: its own class instance
/// variables (`@limit` on the class itself) and class variables (`@@count`), captured like a
/// frame's locals (bounded, redacted) so that a restore can show them beside today's values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassState {
    /// Class path (`Billing::Config`; `#<Class:0x...>` for an anonymous one).
    pub class_path: String,
    /// `@name` and `@@name` variables, in the VM's order.
    pub vars: Vec<(String, Value)>,
    /// Variables left out over the per-class limit.
    pub vars_left_out: u32,
}

/// What format 2 adds about one object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectExtra {
    /// The object's index in [`Snapshot::objects`].
    pub object: u32,
    /// The modules the object was extended with (`obj.extend(M)`), the most recent first, by
    /// class path (`#<Module:0x...>` for an anonymous one).
    pub extended: Vec<String>,
    /// The names of the object's own singleton methods (their code is never stored).
    pub singleton_methods: Vec<String>,
    /// An anonymous class or module: what it showed as (`#<Class:0x...>`), the name its
    /// instances' `class_name` gives.
    pub anonymous_path: Option<String>,
    /// An anonymous class's superclass, by class path.
    pub superclass: Option<String>,
    /// A Method's receiver.
    pub receiver: Option<Value>,
}

/// An exception, with its cause chain flattened (outermost first, each the cause of the one
/// before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    pub class_name: String,
    pub message: String,
    /// Ruby's own backtrace lines, as `Exception#backtrace` gives them (bounded).
    pub backtrace: Vec<String>,
    pub causes: Vec<CauseInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseInfo {
    pub class_name: String,
    pub message: String,
    pub backtrace: Vec<String>,
    /// The cause's own app frames, when its raise was captured: often the deepest state
    /// (a `rescue` that wraps and re-raises runs in a shallower frame).
    pub frames: Vec<Frame>,
}

/// One captured app frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Position among the Ruby frames of the raising stack (0 = the innermost Ruby frame).
    pub depth: u32,
    /// Better-backtrace label, e.g. `Billing::Invoice#total{block}`.
    pub label: String,
    /// The method's name alone (`total`), when the frame runs a method.
    pub method_name: Option<String>,
    pub path: String,
    pub lineno: i64,
    pub self_value: Value,
    /// Local variables in the order the VM lists them.
    pub locals: Vec<(String, Value)>,
    /// Source lines around `lineno`, read at report time (files change on deploy).
    pub source: Option<SourceExcerpt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceExcerpt {
    pub first_lineno: i64,
    pub lines: Vec<String>,
}

/// A value as stored: an immediate, or a reference into [`Snapshot::objects`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Nil,
    True,
    False,
    Integer(i64),
    /// An integer too big for i64, in decimal.
    BigInteger(String),
    Float(f64),
    Symbol(String),
    Ref(u32),
    /// A value that looked like a secret. The string says why (the rule that matched).
    Redacted(String),
    /// Not captured because a limit was reached.
    Cut(CutReason),
    /// A symbol whose name is not UTF-8 (format 2): its bytes and encoding. (A UTF-8 or
    /// US-ASCII symbol is a [`Value::Symbol`].)
    EncodedSymbol {
        bytes: Vec<u8>,
        encoding: String,
    },
}

impl Value {
    /// The value of a Symbol named by `bytes`, in the encoding `encoding()` names (asked only
    /// for a name that is not ASCII): a [`Value::Symbol`] when the name is ASCII or UTF-8, else
    /// a [`Value::EncodedSymbol`].
    pub fn symbol(bytes: &[u8], encoding: impl FnOnce() -> String) -> Value {
        if bytes.is_ascii() {
            return Value::Symbol(String::from_utf8_lossy(bytes).into_owned());
        }
        let encoding = encoding();
        match std::str::from_utf8(bytes) {
            Ok(text) if encoding == "UTF-8" => Value::Symbol(text.to_string()),
            _ => Value::EncodedSymbol {
                bytes: bytes.to_vec(),
                encoding,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CutReason {
    Depth,
    Objects,
    Bytes,
    /// Capturing this value failed (the error was swallowed and counted).
    Error,
}

/// A heap object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// Class path, e.g. `Billing::Invoice`, or `#<Class:0x...>` for an anonymous class.
    pub class_name: String,
    pub frozen: bool,
    pub kind: ObjectKind,
    /// Instance variables (`@name`), in the VM's order.
    pub ivars: Vec<(String, Value)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ObjectKind {
    /// A string: its bytes (possibly cut) and encoding; `original_len` is the full byte length.
    String {
        bytes: Vec<u8>,
        encoding: String,
        original_len: u64,
    },
    Array {
        items: Vec<Value>,
        original_len: u64,
    },
    Hash {
        entries: Vec<(Value, Value)>,
        original_len: u64,
        default: Option<Value>,
        default_proc: Option<Value>,
        compare_by_identity: bool,
    },
    Set {
        items: Vec<Value>,
        original_len: u64,
    },
    Struct {
        members: Vec<(String, Value)>,
    },
    Range {
        begin: Value,
        end: Value,
        exclusive: bool,
    },
    Regexp {
        source: String,
        options: u32,
    },
    Rational {
        numerator: Value,
        denominator: Value,
    },
    Complex {
        real: Value,
        imaginary: Value,
    },
    /// A Time: seconds and nanoseconds since the epoch, and its UTC offset in seconds.
    Time {
        seconds: i64,
        nanoseconds: u32,
        utc_offset: i32,
        utc: bool,
    },
    /// A Date, as ISO 8601 (`2024-02-29`).
    Date {
        iso8601: String,
    },
    /// A DateTime, as ISO 8601 with nanoseconds and offset.
    DateTime {
        iso8601: String,
    },
    /// A BigDecimal, in its exact string form (`0.1e1`).
    BigDecimal {
        digits: String,
    },
    /// A plain object: its class name and ivars say everything.
    Plain,
    /// A class or module, by name; `name` is None for an anonymous one.
    Module {
        name: Option<String>,
        is_class: bool,
    },
    /// A proc or lambda. Its code is never stored or re-executed.
    Proc {
        lambda: bool,
        arity: i32,
        source_location: Option<(String, i64)>,
    },
    /// A Method or UnboundMethod.
    Method {
        owner: String,
        name: String,
        arity: i32,
        unbound: bool,
        source_location: Option<(String, i64)>,
    },
    Exception {
        message: String,
    },
    /// Something that cannot be captured meaningfully (IO, Thread, Mutex, a socket, a database
    /// connection, other C data): its class and a short, safe preview.
    Opaque {
        preview: String,
    },
    /// A registered "magic" root (an app-wide singleton such as `Rails.application`), stored as
    /// the constant path that finds it again.
    Magic {
        path: String,
    },
}

/// Where and in what the exception happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub hostname: String,
    pub pid: u32,
    pub process_title: String,
    pub ruby_version: String,
    pub ruby_platform: String,
    pub app_root: String,
    pub app_revision: Option<String>,
    pub thread_name: Option<String>,
    /// Loaded gems and their versions, sorted by name.
    pub gems: Vec<(String, String)>,
    /// rbscope's version that captured this snapshot.
    pub agent_version: String,
    /// Free-form facts added by integrations (request method and path, job class, ...).
    pub extra: Vec<(String, String)>,
}

/// What the capture had to leave out, so the reader knows what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStats {
    pub redacted: u32,
    pub cut_depth: u32,
    pub cut_objects: u32,
    pub cut_bytes: u32,
    pub truncated_strings: u32,
    pub truncated_collections: u32,
    pub errors: u32,
    /// App frames in the backtrace that were not captured (over the frame cap).
    pub frames_skipped: u32,
    /// True when the frames' locals were not available (the raise was not seen).
    pub locals_missing: bool,
}

impl Snapshot {
    /// The object a [`Value::Ref`] points at, if the index is valid.
    pub fn object(&self, index: u32) -> Option<&Object> {
        self.objects.get(index as usize)
    }

    /// The innermost captured frame's label, or `-` when no frame was captured.
    pub fn top_frame_label(&self) -> &str {
        self.frames.first().map(|f| f.label.as_str()).unwrap_or("-")
    }

    /// Checks that every reference points inside the arena. The decoder calls this, so code
    /// holding a decoded snapshot can index without checking again.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.objects.len();
        let check = |v: &Value, what: &str| -> Result<(), String> {
            match v {
                Value::Ref(i) if *i as usize >= n => Err(format!(
                    "{what} refers to object {i}, but there are only {n}"
                )),
                _ => Ok(()),
            }
        };
        let cause_frames = self.exception.causes.iter().flat_map(|c| c.frames.iter());
        for (fi, f) in self.frames.iter().chain(cause_frames).enumerate() {
            check(&f.self_value, &format!("frame {fi} self"))?;
            for (name, v) in &f.locals {
                check(v, &format!("frame {fi} local {name}"))?;
            }
        }
        for (oi, o) in self.objects.iter().enumerate() {
            let what = format!("object {oi}");
            for (_, v) in &o.ivars {
                check(v, &what)?;
            }
            for v in o.kind.children() {
                check(v, &what)?;
            }
        }
        for e in &self.extras.objects {
            if e.object as usize >= n {
                return Err(format!(
                    "extras refer to object {}, but there are only {n}",
                    e.object
                ));
            }
            if let Some(r) = &e.receiver {
                check(r, &format!("object {} receiver", e.object))?;
            }
        }
        for c in &self.extras.classes {
            for (name, v) in &c.vars {
                check(v, &format!("class state {} {name}", c.class_path))?;
            }
        }
        Ok(())
    }

    /// The class-level state captured for the class or module at `class_path`.
    pub fn class_state(&self, class_path: &str) -> Option<&ClassState> {
        self.extras
            .classes
            .iter()
            .find(|c| c.class_path == class_path)
    }

    /// Format 2's additions about object `index`, if it has any.
    pub fn extra(&self, index: u32) -> Option<&ObjectExtra> {
        self.extras.objects.iter().find(|e| e.object == index)
    }
}

impl ObjectKind {
    /// Every value this object holds directly (ivars excluded).
    pub fn children(&self) -> Vec<&Value> {
        match self {
            ObjectKind::Array { items, .. } | ObjectKind::Set { items, .. } => {
                items.iter().collect()
            }
            ObjectKind::Hash {
                entries,
                default,
                default_proc,
                ..
            } => entries
                .iter()
                .flat_map(|(k, v)| [k, v])
                .chain(default.iter())
                .chain(default_proc.iter())
                .collect(),
            ObjectKind::Struct { members } => members.iter().map(|(_, v)| v).collect(),
            ObjectKind::Range { begin, end, .. } => vec![begin, end],
            ObjectKind::Rational {
                numerator,
                denominator,
            } => vec![numerator, denominator],
            ObjectKind::Complex { real, imaginary } => vec![real, imaginary],
            _ => Vec::new(),
        }
    }

    /// A short name for the kind, as shown by `rbscope show` and in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            ObjectKind::String { .. } => "string",
            ObjectKind::Array { .. } => "array",
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
            ObjectKind::Plain => "object",
            ObjectKind::Module { .. } => "module",
            ObjectKind::Proc { .. } => "proc",
            ObjectKind::Method { .. } => "method",
            ObjectKind::Exception { .. } => "exception",
            ObjectKind::Opaque { .. } => "opaque",
            ObjectKind::Magic { .. } => "magic",
        }
    }
}

/// The fingerprint that groups repeats of one failure: exception class and the innermost app
/// frame's label. The line is left out on purpose, so an edit above the failing line does not
/// start a new group.
pub fn fingerprint(class_name: &str, top_frame_label: &str) -> String {
    format!("{class_name}@{top_frame_label}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_is_text_when_ascii_or_utf8_else_its_bytes_and_encoding() {
        let never = || -> String { panic!("the encoding of an ASCII name is not asked") };
        assert_eq!(
            Value::symbol(b"total", never),
            Value::Symbol("total".into())
        );
        assert_eq!(
            Value::symbol("héllo".as_bytes(), || "UTF-8".into()),
            Value::Symbol("héllo".into())
        );
        assert_eq!(
            Value::symbol(&[0x82, 0xa0], || "Shift_JIS".into()),
            Value::EncodedSymbol {
                bytes: vec![0x82, 0xa0],
                encoding: "Shift_JIS".into()
            }
        );
        // Bytes that happen to read as UTF-8 keep their own encoding.
        assert_eq!(
            Value::symbol("é".as_bytes(), || "ISO-8859-1".into()),
            Value::EncodedSymbol {
                bytes: "é".as_bytes().to_vec(),
                encoding: "ISO-8859-1".into()
            }
        );
        assert!(matches!(
            Value::symbol(&[0xff], || "ASCII-8BIT".into()),
            Value::EncodedSymbol { .. }
        ));
    }
}
