//! The bookkeeping of a report that needs no Ruby: the source lines shown beside a frame,
//! the cause chain's bounds, the line logged for a stored snapshot, and what the walk's counts
//! add to the agent's counters, how a kept frame is placed and named, and what a snapshot of a
//! live thread says of why it was taken.

use crate::writer::Job;
use rbscope_backtrace::FrameFacts;
use rbscope_snapshot::{CaptureStats, Frame, Snapshot, SourceExcerpt, Trigger, Value};

/// Causes followed at most.
pub const MAX_CAUSES: usize = 16;
/// Source files larger than this are not read.
const MAX_SOURCE_FILE: u64 = 8 * 1024 * 1024;
/// Characters kept of a source line.
const MAX_SOURCE_LINE: usize = 400;

/// `context` lines either side of `lineno` in the file at `path`, each cut to 400 characters;
/// None when there is no such file (or it is huge, or the line is unknown).
pub fn read_source(path: &str, lineno: i64, context: usize) -> Option<SourceExcerpt> {
    Sources::default().excerpt(path, lineno, context)
}

/// The source files one report reads: each read once, however many of its frames are in it
/// (a recursion 50 deep in one file read it 50 times, about a third of a report's work).
#[derive(Default)]
pub struct Sources {
    /// Each file's text, or None when it cannot be shown (missing, not a file, huge).
    files: std::collections::HashMap<String, Option<String>>,
}

impl Sources {
    /// [`read_source`], with each file read at most once.
    pub fn excerpt(&mut self, path: &str, lineno: i64, context: usize) -> Option<SourceExcerpt> {
        if lineno <= 0 || context == 0 {
            return None;
        }
        let text = self
            .files
            .entry(path.to_string())
            .or_insert_with(|| read_text(path))
            .as_deref()?;
        let first = (lineno as usize).saturating_sub(context).max(1);
        let lines: Vec<String> = text
            .lines()
            .skip(first - 1)
            .take(context * 2 + 1)
            .map(cut_line)
            .collect();
        (!lines.is_empty()).then_some(SourceExcerpt {
            first_lineno: first as i64,
            lines,
        })
    }
}

fn read_text(path: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_SOURCE_FILE {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A line cut to [`MAX_SOURCE_LINE`] characters (copied whole when its bytes are fewer).
fn cut_line(line: &str) -> String {
    if line.len() <= MAX_SOURCE_LINE {
        line.to_string()
    } else {
        line.chars().take(MAX_SOURCE_LINE).collect()
    }
}

/// The cause chain of `exc`, outermost first: `cause` gives an exception's cause (None for
/// none). At most [`MAX_CAUSES`], and a loop ends it.
pub fn cause_chain<V: Copy + PartialEq>(exc: V, mut cause: impl FnMut(V) -> Option<V>) -> Vec<V> {
    let mut out = Vec::new();
    let mut cur = exc;
    for _ in 0..MAX_CAUSES {
        let Some(c) = cause(cur) else {
            break;
        };
        if c == exc || out.contains(&c) {
            break;
        }
        out.push(c);
        cur = c;
    }
    out
}

/// Where a snapshot's exception was raised, for its log line.
pub struct RaisedAt<'a> {
    pub label: &'a str,
    pub path: &'a str,
    pub lineno: i64,
}

/// The line logged when a snapshot is stored: its id, the exception and the first line of its
/// message (at most 200 characters), where it was raised, and the process.
pub fn stored_line(
    id: &str,
    class_name: &str,
    message: &str,
    at: Option<RaisedAt>,
    pid: u32,
) -> String {
    let first_line: String = message
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let place = at
        .map(|f| format!(" in {} at {}:{}", f.label, f.path, f.lineno))
        .unwrap_or_default();
    format!("[rbscope] snapshot {id} stored: {class_name}: {first_line}{place} (pid {pid})")
}

/// The writer's job for `snapshot`: encoded, summarised, with the line to log once it is
/// stored (`raised_at`: the first kept frame, if any). None when it cannot be encoded.
pub fn store_job(snapshot: &Snapshot, raised_at: Option<&Frame>, pid: u32) -> Option<Job> {
    let body = rbscope_snapshot::encode(snapshot).ok()?;
    let summary = rbscope_store::SnapshotSummary::of(snapshot, body.len());
    let at = raised_at.map(|f| RaisedAt {
        label: &f.label,
        path: &f.path,
        lineno: f.lineno,
    });
    let e = &snapshot.exception;
    let log = stored_line(&snapshot.id, &e.class_name, &e.message, at, pid);
    Some(Job::Store {
        summary: Box::new(summary),
        body,
        log,
    })
}

/// What a walk's counts add to the agent's counters: values redacted, values truncated
/// (strings and collections), objects cut (by any limit).
pub fn tallies(stats: &CaptureStats) -> (u64, u64, u64) {
    (
        stats.redacted as u64,
        (stats.truncated_strings + stats.truncated_collections) as u64,
        (stats.cut_depth + stats.cut_objects + stats.cut_bytes) as u64,
    )
}

/// A snapshot frame at `path:lineno`, labelled by `facts`, named by its base label unless
/// that is not a method's (`<main>`); its values and source are filled in later.
pub fn placed(
    depth: usize,
    facts: FrameFacts,
    base_label: &str,
    path: String,
    lineno: i64,
) -> Frame {
    Frame {
        depth: depth as u32,
        label: facts.label_with_params(),
        method_name: (!base_label.starts_with('<')).then(|| base_label.to_string()),
        path,
        lineno,
        self_value: Value::Nil,
        locals: Vec::new(),
        source: None,
    }
}

/// The trigger of a live snapshot of the thread named `thread`, and the message it is listed
/// with (under the class `(kind)`): asked for by `how` (kind `live`: `thread worker-1 (asked by
/// Rbscope.snapshot)`), or for the `(kind, reason)` given (a breakpoint: `thread main (line
/// app.rb:12 ran)`).
pub fn live_trigger(
    thread: String,
    how: &str,
    given: Option<(String, String)>,
) -> (Trigger, String) {
    let (kind, reason) = given.unwrap_or_else(|| ("live".into(), format!("asked by {how}")));
    let message = format!("thread {thread} ({reason})");
    let trigger = Trigger {
        kind,
        thread,
        reason,
    };
    (trigger, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_snapshot_says_who_asked_and_a_breakpoint_why() {
        let (t, message) = live_trigger("worker-1".into(), "Rbscope.snapshot", None);
        assert_eq!(
            (t.kind.as_str(), t.thread.as_str(), t.reason.as_str()),
            ("live", "worker-1", "asked by Rbscope.snapshot")
        );
        assert_eq!(message, "thread worker-1 (asked by Rbscope.snapshot)");
        let given = Some(("breakpoint".into(), "line app.rb:12 ran".into()));
        let (t, message) = live_trigger("main".into(), "rbscope break", given);
        assert_eq!(
            (t.kind.as_str(), t.reason.as_str()),
            ("breakpoint", "line app.rb:12 ran")
        );
        assert_eq!(message, "thread main (line app.rb:12 ran)");
    }

    #[test]
    fn a_store_job_carries_the_encoded_snapshot_and_its_log_line() {
        let frame = Frame {
            depth: 0,
            label: "Shop#pay".into(),
            method_name: Some("pay".into()),
            path: "app.rb".into(),
            lineno: 9,
            self_value: Value::Nil,
            locals: Vec::new(),
            source: None,
        };
        let snapshot = Snapshot {
            id: "01ID".into(),
            reported_at_ms: 5,
            fingerprint: "fp".into(),
            exception: rbscope_snapshot::ExceptionInfo {
                class_name: "KeyError".into(),
                message: "missing\nmore".into(),
                backtrace: Vec::new(),
                causes: Vec::new(),
            },
            frames: vec![frame.clone()],
            objects: Vec::new(),
            context: rbscope_snapshot::Context::default(),
            stats: CaptureStats::default(),
            extras: Default::default(),
        };
        let Some(Job::Store { summary, body, log }) = store_job(&snapshot, Some(&frame), 42) else {
            panic!("no store job");
        };
        assert_eq!(rbscope_snapshot::decode(&body).unwrap(), snapshot);
        assert_eq!(summary.id, "01ID");
        assert_eq!(
            log,
            "[rbscope] snapshot 01ID stored: KeyError: missing in Shop#pay at app.rb:9 (pid 42)"
        );
        let Some(Job::Store { log, .. }) = store_job(&snapshot, None, 1) else {
            panic!("no store job");
        };
        assert!(log.ends_with("missing (pid 1)"), "{log}");
    }

    #[test]
    fn a_placed_frame_is_named_by_a_method_base_label_only() {
        let facts = FrameFacts {
            class_path: "Shop".into(),
            method_name: "pay".into(),
            kind: rbscope_backtrace::MethodKind::Instance,
            block_depth: 0,
            clause: None,
            params: rbscope_backtrace::Params::Unknown,
        };
        let f = placed(2, facts.clone(), "pay", "app.rb".into(), 7);
        assert_eq!((f.depth, f.lineno, f.path.as_str()), (2, 7, "app.rb"));
        assert_eq!(f.label, facts.label_with_params());
        assert_eq!(f.method_name.as_deref(), Some("pay"));
        assert_eq!(
            placed(0, facts, "<main>", String::new(), 1).method_name,
            None
        );
    }
    use std::io::Write;

    #[test]
    fn source_lines_around_a_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for i in 1..=10 {
            writeln!(f, "line {i}").unwrap();
        }
        writeln!(f, "{}", "x".repeat(500)).unwrap();
        let path = f.path().to_str().unwrap();
        let s = read_source(path, 5, 2).unwrap();
        assert_eq!(s.first_lineno, 3);
        assert_eq!(s.lines, ["line 3", "line 4", "line 5", "line 6", "line 7"]);
        let top = read_source(path, 1, 3).unwrap();
        assert_eq!((top.first_lineno, top.lines.len()), (1, 7));
        let long = read_source(path, 11, 1).unwrap();
        assert_eq!(long.lines[1].len(), 400);
        assert!(read_source(path, 0, 2).is_none());
        assert!(read_source(path, 5, 0).is_none());
        assert!(read_source(path, 50, 2).is_none(), "past the end");
        assert!(read_source("/no/such/file.rb", 5, 2).is_none());
        assert!(read_source("/tmp", 5, 2).is_none(), "a directory");
        // A line of 500 two-byte characters is cut at 400 characters, not bytes.
        let mut g = tempfile::NamedTempFile::new().unwrap();
        writeln!(g, "{}", "é".repeat(500)).unwrap();
        let wide = read_source(g.path().to_str().unwrap(), 1, 1).unwrap();
        assert_eq!(wide.lines[0].chars().count(), 400);
    }

    #[test]
    fn sources_read_each_file_once() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for i in 1..=10 {
            writeln!(f, "line {i}").unwrap();
        }
        let path = f.path().to_str().unwrap().to_string();
        let mut sources = Sources::default();
        assert_eq!(
            sources.excerpt(&path, 2, 1).unwrap().lines,
            ["line 1", "line 2", "line 3"]
        );
        // Changed on disk: the report goes on seeing the text it read first.
        std::fs::write(&path, "other\n").unwrap();
        assert_eq!(
            sources.excerpt(&path, 9, 1).unwrap().lines,
            ["line 8", "line 9", "line 10"]
        );
        assert!(sources.excerpt("/no/such/file.rb", 1, 1).is_none());
        // A new report reads it again.
        assert_eq!(
            Sources::default().excerpt(&path, 1, 1).unwrap().lines,
            ["other"]
        );
    }

    #[test]
    fn cause_chains_are_bounded_and_loop_safe() {
        // 1 -> 2 -> 3 -> end
        let chain = cause_chain(1, |e| (e < 3).then_some(e + 1));
        assert_eq!(chain, [2, 3]);
        // 1 -> 2 -> 3 -> 2: the loop ends it.
        assert_eq!(
            cause_chain(1, |e| Some(if e == 3 { 2 } else { e + 1 })),
            [2, 3]
        );
        // Back to the exception itself.
        assert_eq!(cause_chain(1, |e| Some(if e == 2 { 1 } else { 2 })), [2]);
        let endless = cause_chain(0u32, |e| Some(e + 1));
        assert_eq!(endless.len(), MAX_CAUSES);
    }

    #[test]
    fn the_stored_line() {
        let at = RaisedAt {
            label: "Shop#checkout",
            path: "app.rb",
            lineno: 3,
        };
        assert_eq!(
            stored_line("01ID", "KeyError", "key not found\nmore", Some(at), 42),
            "[rbscope] snapshot 01ID stored: KeyError: key not found in Shop#checkout at app.rb:3 (pid 42)"
        );
        let long = stored_line("01ID", "E", &"é".repeat(300), None, 1);
        assert_eq!(
            long,
            format!(
                "[rbscope] snapshot 01ID stored: E: {} (pid 1)",
                "é".repeat(200)
            )
        );
    }

    #[test]
    fn walk_counts_for_the_counters() {
        let stats = CaptureStats {
            redacted: 1,
            truncated_strings: 2,
            truncated_collections: 3,
            cut_depth: 4,
            cut_objects: 5,
            cut_bytes: 6,
            ..CaptureStats::default()
        };
        assert_eq!(tallies(&stats), (1, 5, 15));
    }
}
