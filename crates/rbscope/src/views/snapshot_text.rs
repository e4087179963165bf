//! `rbscope show` as text: the exception, its causes, the context, then each frame with its
//! source lines, `self`, locals and instance variables as an indented tree, then the
//! class-level state of the classes the frames used.
//!
//! Objects referenced more than once carry a `#N` tag; a second sighting in the same frame
//! prints `-> #N` instead of the object again, which is how cycles and shared references read.

use super::records::{self, View};
use super::ruby_inspect;
use super::time::format_ms;
use rbscope_snapshot::{CutReason, Frame, Object, ObjectKind, Snapshot, Take, Value};
use std::collections::HashSet;
use std::fmt::Write;

pub struct Options {
    pub max_depth: usize,
    pub max_items: usize,
    /// Show ActiveRecord records and `ActionController::Parameters` as the objects Rails
    /// keeps them in, instead of as their attributes and parameters (`views::records`).
    pub raw: bool,
    /// The ids of the take's snapshots the store does not hold (marked as such).
    pub missing: Vec<String>,
}

pub fn snapshot(s: &Snapshot, o: &Options) -> String {
    let mut out = String::new();
    let e = &s.exception;
    match &s.extras.trigger {
        // A snapshot no exception caused says what took it.
        Some(t) => {
            let _ = writeln!(out, "{} snapshot: {}", t.kind, e.message.trim_end());
        }
        None => {
            let _ = writeln!(out, "{}: {}", e.class_name, e.message.trim_end());
        }
    }
    for c in &e.causes {
        let _ = writeln!(
            out,
            "  caused by {}: {}",
            c.class_name,
            first_line(&c.message)
        );
    }
    let _ = writeln!(out);
    let c = &s.context;
    let reported_by = c
        .extra
        .iter()
        .find(|(k, _)| k == "reported_by")
        .map(|(_, v)| format!(" ({v})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "snapshot  {}  reported {}{}",
        s.id,
        format_ms(s.reported_at_ms),
        reported_by
    );
    let _ = writeln!(
        out,
        "process   pid {} on {}  {}",
        c.pid, c.hostname, c.process_title
    );
    let _ = writeln!(
        out,
        "ruby      {} ({})  rbscope {}",
        c.ruby_version, c.ruby_platform, c.agent_version
    );
    let _ = writeln!(
        out,
        "app       {}  revision {}  thread {}",
        c.app_root,
        c.app_revision.as_deref().unwrap_or("-"),
        c.thread_name.as_deref().unwrap_or("-")
    );
    for (k, v) in c
        .extra
        .iter()
        .filter(|(k, _)| k != "reported_by" && !Take::is_entry(k))
    {
        let _ = writeln!(out, "{k:<9} {v}");
    }
    if let Some(take) = Take::of(c) {
        // Taken with other threads: one line for each, with its snapshot's id.
        let _ = writeln!(
            out,
            "take      {}  with {} other threads (rbscope restore {} --thread NAME|TID)",
            take.id,
            take.others(&s.id).count(),
            s.id
        );
        for m in take.others(&s.id) {
            let gone = if o.missing.contains(&m.id) {
                "  (not in this store)"
            } else {
                ""
            };
            let _ = writeln!(out, "  thread  {}  {}{gone}", m.describe(), m.id);
        }
    }
    let st = &s.stats;
    let mut notes = Vec::new();
    if st.redacted > 0 {
        notes.push(format!("{} values redacted", st.redacted));
    }
    let cut = st.cut_depth + st.cut_objects + st.cut_bytes;
    if cut > 0 {
        notes.push(format!(
            "{cut} values cut by limits (depth {}, objects {}, bytes {})",
            st.cut_depth, st.cut_objects, st.cut_bytes
        ));
    }
    if st.truncated_strings + st.truncated_collections > 0 {
        notes.push(format!(
            "{} strings and {} collections truncated",
            st.truncated_strings, st.truncated_collections
        ));
    }
    if st.frames_skipped > 0 {
        notes.push(format!(
            "{} app frames over the frame cap",
            st.frames_skipped
        ));
    }
    if st.locals_missing {
        notes.push("locals not captured (the raise was not seen by the agent)".into());
    }
    if st.errors > 0 {
        notes.push(format!("{} values failed to capture", st.errors));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "capture   {}", notes.join("; "));
    }
    let refs = ref_counts(s);
    let mut shown = HashSet::new();
    let cause_frames = e.causes.iter().map(|c| c.frames.len()).sum::<usize>();
    if s.frames.is_empty() && cause_frames == 0 {
        let _ = writeln!(out, "\n(no app frames captured)");
        for line in e.backtrace.iter().take(20) {
            let _ = writeln!(out, "  {line}");
        }
    }
    let mut n = 0;
    for f in &s.frames {
        frame(&mut out, s, f, n, &refs, o, &mut shown);
        n += 1;
    }
    for c in e.causes.iter().filter(|c| !c.frames.is_empty()) {
        let _ = writeln!(
            out,
            "\n--- caused by {}: {} (its frames when it was raised) ---",
            c.class_name,
            first_line(&c.message)
        );
        for f in &c.frames {
            frame(&mut out, s, f, n, &refs, o, &mut shown);
            n += 1;
        }
    }
    class_states(&mut out, s, &refs, o, &mut shown);
    out
}

/// Each class's `@name` and `@@name` variables at the failure, as a frame's locals are shown.
fn class_states(
    out: &mut String,
    s: &Snapshot,
    refs: &[u32],
    o: &Options,
    shown: &mut HashSet<u32>,
) {
    if s.extras.classes.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "
class-level state at the failure"
    );
    let mut r = Renderer {
        s,
        refs,
        o,
        shown: std::mem::take(shown),
        out: String::new(),
    };
    for c in &s.extras.classes {
        let _ = writeln!(r.out, "  {}", c.class_path);
        for (name, v) in &c.vars {
            r.entry(1, name, v, 0);
        }
        if c.vars_left_out > 0 {
            let _ = writeln!(r.out, "      … {} more not captured", c.vars_left_out);
        }
    }
    out.push_str(&r.out);
    *shown = r.shown;
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn frame(
    out: &mut String,
    s: &Snapshot,
    f: &Frame,
    i: usize,
    refs: &[u32],
    o: &Options,
    shown: &mut HashSet<u32>,
) {
    let _ = writeln!(out, "\n#{i} {}", f.label);
    let _ = writeln!(out, "   {}:{}", f.path, f.lineno);
    if let Some(src) = &f.source {
        for (k, line) in src.lines.iter().enumerate() {
            let n = src.first_lineno + k as i64;
            let mark = if n == f.lineno { ">" } else { " " };
            let _ = writeln!(out, "   {mark}{n:>5} | {line}");
        }
    }
    let mut r = Renderer {
        s,
        refs,
        o,
        shown: std::mem::take(shown),
        out: String::new(),
    };
    r.entry(2, "self", &f.self_value, 0);
    if f.locals.is_empty() {
        r.out.push_str("      (no locals)\n");
    }
    for (name, v) in &f.locals {
        r.entry(2, name, v, 0);
    }
    out.push_str(&r.out);
    *shown = r.shown;
}

fn ref_counts(s: &Snapshot) -> Vec<u32> {
    let mut counts = vec![0u32; s.objects.len()];
    let mut bump = |v: &Value| {
        if let Value::Ref(i) = v {
            if let Some(c) = counts.get_mut(*i as usize) {
                *c += 1;
            }
        }
    };
    let cause_frames = s.exception.causes.iter().flat_map(|c| c.frames.iter());
    for f in s.frames.iter().chain(cause_frames) {
        bump(&f.self_value);
        f.locals.iter().for_each(|(_, v)| bump(v));
    }
    for c in &s.extras.classes {
        c.vars.iter().for_each(|(_, v)| bump(v));
    }
    for o in &s.objects {
        o.ivars.iter().for_each(|(_, v)| bump(v));
        o.kind.children().into_iter().for_each(&mut bump);
    }
    counts
}

struct Renderer<'a> {
    s: &'a Snapshot,
    refs: &'a [u32],
    o: &'a Options,
    shown: HashSet<u32>,
    out: String,
}

impl<'a> Renderer<'a> {
    /// One `name = value` line, then the value's children indented below it.
    fn entry(&mut self, indent: usize, name: &str, v: &Value, depth: usize) {
        self.entry_with(indent, name, "=", v, depth);
    }

    fn entry_with(&mut self, indent: usize, name: &str, sep: &str, v: &Value, depth: usize) {
        self.entry_noted(indent, name, sep, v, "", depth);
    }

    /// [`Self::entry_with`], with `note` after the value's line.
    fn entry_noted(
        &mut self,
        indent: usize,
        name: &str,
        sep: &str,
        v: &Value,
        note: &str,
        depth: usize,
    ) {
        let pad = "  ".repeat(indent + 1);
        let (head, expand) = self.head(v);
        let _ = writeln!(self.out, "{pad}{name} {sep} {head}{note}");
        if let (Some(idx), true) = (expand, depth < self.o.max_depth) {
            self.children(indent + 1, idx, depth + 1);
        }
    }

    /// The one-line form of a value, and the object to expand below it (if any).
    fn head(&mut self, v: &Value) -> (String, Option<u32>) {
        match v {
            Value::Nil => ("nil".into(), None),
            Value::True => ("true".into(), None),
            Value::False => ("false".into(), None),
            Value::Integer(i) => (i.to_string(), None),
            Value::BigInteger(s) => (s.clone(), None),
            Value::Float(f) => (ruby_inspect::float(*f), None),
            Value::Symbol(s) => (ruby_inspect::symbol(s), None),
            Value::EncodedSymbol { bytes, encoding } => (
                format!(
                    "{} ({encoding})",
                    ruby_inspect::encoded_symbol(bytes, encoding)
                ),
                None,
            ),
            Value::Redacted(why) => (format!("[REDACTED: {why}]"), None),
            Value::Cut(reason) => (format!("… ({})", cut_text(*reason)), None),
            Value::Ref(i) => self.object_head(*i),
        }
    }

    fn object_head(&mut self, i: u32) -> (String, Option<u32>) {
        let Some(obj) = self.s.object(i) else {
            return (format!("<missing object {i}>"), None);
        };
        let tag = if self.refs.get(i as usize).copied().unwrap_or(0) > 1 {
            format!(" #{i}")
        } else {
            String::new()
        };
        let inline = inline_form(self.s, obj);
        if let Some(text) = &inline {
            if obj.ivars.is_empty() {
                return (format!("{text}{tag}"), None);
            }
        }
        if !self.shown.insert(i) {
            return (format!("-> #{i} ({}, see above)", obj.class_name), None);
        }
        let text = match self.view(i) {
            Some(View::Record(r)) => r.head(&obj.class_name),
            Some(View::Parameters(p)) => p.head(self.s, &obj.class_name),
            None => inline.unwrap_or_else(|| block_head(obj)),
        };
        (format!("{text}{tag}"), Some(i))
    }

    /// A record's or parameters' view of object `i`, unless the raw objects were asked for.
    fn view(&self, i: u32) -> Option<View<'a>> {
        if self.o.raw {
            return None;
        }
        records::view(self.s, i)
    }

    /// A record's attributes (and its other instance variables worth showing), or
    /// parameters' entries, in place of the objects Rails keeps them in.
    fn view_children(&mut self, indent: usize, view: View<'a>, depth: usize) {
        let pad = "  ".repeat(indent + 1);
        let others = match view {
            View::Record(r) => {
                match &r.attributes {
                    Ok(list) => {
                        for a in list {
                            match &a.value {
                                records::AttributeValue::Value {
                                    value,
                                    before_type_cast,
                                } => {
                                    let note = if *before_type_cast {
                                        "  (before type cast)"
                                    } else {
                                        ""
                                    };
                                    self.entry_noted(indent, &a.name, "=", value, note, depth);
                                }
                                missing => {
                                    let why = records::missing_text(missing).unwrap_or("");
                                    let _ = writeln!(self.out, "{pad}{} = {why}", a.name);
                                }
                            }
                        }
                    }
                    Err(held) => self.entry(indent, "(attributes)", held, depth),
                }
                r.other_ivars
            }
            View::Parameters(p) => {
                match p.parameters {
                    Value::Ref(h)
                        if matches!(
                            self.s.object(*h).map(|o| &o.kind),
                            Some(ObjectKind::Hash { .. })
                        ) =>
                    {
                        self.shown.insert(*h);
                        self.children(indent, *h, depth);
                    }
                    other => self.entry(indent, "@parameters", other, depth),
                }
                p.other_ivars
            }
        };
        for (name, v) in others {
            self.entry(indent, name, v, depth);
        }
    }

    fn children(&mut self, indent: usize, i: u32, depth: usize) {
        if let Some(view) = self.view(i) {
            return self.view_children(indent, view, depth);
        }
        let Some(obj) = self.s.object(i) else { return };
        let max = self.o.max_items;
        let pad = "  ".repeat(indent + 1);
        match &obj.kind {
            ObjectKind::Array {
                items,
                original_len,
            }
            | ObjectKind::Set {
                items,
                original_len,
            } => {
                for (k, v) in items.iter().take(max).enumerate() {
                    self.entry(indent, &format!("[{k}]"), v, depth);
                }
                let more = *original_len as usize - items.len().min(max);
                if more > 0 {
                    let _ = writeln!(self.out, "{pad}… {more} more");
                }
            }
            ObjectKind::Hash {
                entries,
                original_len,
                default,
                default_proc,
                compare_by_identity,
            } => {
                for (k, v) in entries.iter().take(max) {
                    let (key, _) = self.head(k);
                    self.entry_with(indent, &key, "=>", v, depth);
                }
                let more = *original_len as usize - entries.len().min(max);
                if more > 0 {
                    let _ = writeln!(self.out, "{pad}… {more} more");
                }
                if let Some(d) = default {
                    self.entry(indent, "(default)", d, depth);
                }
                if let Some(d) = default_proc {
                    self.entry(indent, "(default proc)", d, depth);
                }
                if *compare_by_identity {
                    let _ = writeln!(self.out, "{pad}(compare_by_identity)");
                }
            }
            ObjectKind::Struct { members } => {
                for (name, v) in members {
                    self.entry(indent, name, v, depth);
                }
            }
            ObjectKind::Range { begin, end, .. } => {
                self.entry(indent, "begin", begin, depth);
                self.entry(indent, "end", end, depth);
            }
            ObjectKind::Rational {
                numerator,
                denominator,
            } => {
                self.entry(indent, "numerator", numerator, depth);
                self.entry(indent, "denominator", denominator, depth);
            }
            ObjectKind::Complex { real, imaginary } => {
                self.entry(indent, "real", real, depth);
                self.entry(indent, "imaginary", imaginary, depth);
            }
            _ => {}
        }
        for (name, v) in &obj.ivars {
            self.entry(indent, name, v, depth);
        }
    }
}

/// Objects that read best on one line (strings, numbers, times ...), or None.
fn inline_form(s: &Snapshot, obj: &Object) -> Option<String> {
    let imm = |v: &Value| -> Option<String> {
        match v {
            Value::Nil => Some("nil".into()),
            Value::Integer(i) => Some(i.to_string()),
            Value::BigInteger(b) => Some(b.clone()),
            Value::Float(f) => Some(ruby_inspect::float(*f)),
            Value::Ref(i) => match &s.object(*i)?.kind {
                ObjectKind::String {
                    bytes, encoding, ..
                } => Some(ruby_inspect::string(bytes, encoding)),
                _ => None,
            },
            _ => None,
        }
    };
    Some(match &obj.kind {
        ObjectKind::String {
            bytes,
            encoding,
            original_len,
        } => {
            let mut t = ruby_inspect::string(bytes, encoding);
            if (bytes.len() as u64) < *original_len {
                t.push_str(&format!(" (first {} of {original_len} bytes)", bytes.len()));
            }
            if encoding != "UTF-8" && encoding != "US-ASCII" {
                t.push_str(&format!(" ({encoding})"));
            }
            t
        }
        ObjectKind::Array { items, .. } if items.is_empty() => "[]".into(),
        // A hash's default is shown below it, so only a hash without one reads as `{}`.
        ObjectKind::Hash {
            entries,
            default: None,
            default_proc: None,
            ..
        } if entries.is_empty() => "{}".into(),
        ObjectKind::Range {
            begin,
            end,
            exclusive,
        } => {
            let dots = if *exclusive { "..." } else { ".." };
            format!("{}{dots}{}", imm(begin)?, imm(end)?)
        }
        ObjectKind::Regexp { source, options } => {
            let mut flags = String::new();
            if options & 1 != 0 {
                flags.push('i');
            }
            if options & 2 != 0 {
                flags.push('x');
            }
            if options & 4 != 0 {
                flags.push('m');
            }
            format!("/{source}/{flags}")
        }
        ObjectKind::Rational {
            numerator,
            denominator,
        } => format!("({}/{})", imm(numerator)?, imm(denominator)?),
        ObjectKind::Complex { real, imaginary } => {
            format!("({}+{}i)", imm(real)?, imm(imaginary)?)
        }
        ObjectKind::Time {
            seconds,
            nanoseconds,
            utc_offset,
            utc,
        } => {
            let local = format_ms(
                seconds
                    .saturating_add(*utc_offset as i64)
                    .saturating_mul(1000),
            );
            let base = local.trim_end_matches(" UTC");
            let zone = if *utc {
                " UTC".to_string()
            } else {
                format!(
                    " {}{:02}{:02}",
                    if *utc_offset < 0 { '-' } else { '+' },
                    utc_offset.unsigned_abs() / 3600,
                    utc_offset.unsigned_abs() % 3600 / 60
                )
            };
            let frac = if *nanoseconds > 0 {
                format!(".{nanoseconds:09}")
            } else {
                String::new()
            };
            format!("{} {base}{frac}{zone}", obj.class_name)
        }
        ObjectKind::Date { iso8601 }
        | ObjectKind::DateTime { iso8601 }
        | ObjectKind::BigDecimal { digits: iso8601 } => format!("{} {iso8601}", obj.class_name),
        ObjectKind::Module { name, is_class } => match name {
            Some(n) => n.clone(),
            None => format!(
                "#<anonymous {}>",
                if *is_class { "class" } else { "module" }
            ),
        },
        ObjectKind::Proc {
            lambda,
            arity,
            source_location,
        } => format!(
            "#<{}{} {} arity {arity}>",
            obj.class_name,
            if *lambda { " (lambda)" } else { "" },
            location(source_location)
        ),
        ObjectKind::Method {
            owner,
            name,
            arity,
            unbound,
            source_location,
        } => format!(
            "#<{} {owner}#{name} {} arity {arity}>",
            if *unbound { "UnboundMethod" } else { "Method" },
            location(source_location)
        ),
        ObjectKind::Exception { message } => {
            format!("#<{}: {}>", obj.class_name, first_line(message))
        }
        ObjectKind::Opaque { preview } => format!("{preview} (opaque {})", obj.class_name),
        ObjectKind::Magic { path } => format!("{path} (magic root, {})", obj.class_name),
        _ => return None,
    })
}

fn block_head(obj: &Object) -> String {
    match &obj.kind {
        ObjectKind::Array { original_len, .. } => {
            format!("{} ({original_len} items)", obj.class_name)
        }
        ObjectKind::Hash { original_len, .. } => {
            format!("{} ({original_len} entries)", obj.class_name)
        }
        ObjectKind::Set { original_len, .. } => {
            format!("{} ({original_len} items)", obj.class_name)
        }
        ObjectKind::Struct { .. } => format!("#<struct {}>", obj.class_name),
        _ => format!("#<{}>", obj.class_name),
    }
}

fn location(loc: &Option<(String, i64)>) -> String {
    match loc {
        Some((p, l)) => format!("{p}:{l}"),
        None => "(native)".into(),
    }
}

fn cut_text(r: CutReason) -> &'static str {
    match r {
        CutReason::Depth => "cut: depth limit",
        CutReason::Objects => "cut: object limit",
        CutReason::Bytes => "cut: byte limit",
        CutReason::Error => "could not be captured",
    }
}
