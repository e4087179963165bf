//! The files `rbscope ui` was given: what each one is (told from its content, not its name)
//! and a short id for URLs. Nothing outside this list is ever opened through the UI.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Heap,
    Trace,
    Profile,
    /// The `--json` output of `rbscope heap summary|top|diff|path`: which one.
    Saved(&'static str),
    /// Not something the UI reads; why.
    Unknown(String),
}

impl Kind {
    pub fn name(&self) -> String {
        match self {
            Kind::Heap => "heap".into(),
            Kind::Trace => "trace".into(),
            Kind::Profile => "profile".into(),
            Kind::Saved(what) => format!("saved-{what}"),
            Kind::Unknown(_) => "unknown".into(),
        }
    }
}

pub struct FileEntry {
    pub id: String,
    pub path: PathBuf,
    pub name: String,
    pub bytes: u64,
    pub kind: Kind,
}

/// Ids `f1`, `f2`... in the order given.
pub fn entries(paths: &[PathBuf]) -> Vec<FileEntry> {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| FileEntry {
            id: format!("f{}", i + 1),
            path: p.clone(),
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            bytes: std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            kind: sniff(p),
        })
        .collect()
}

/// What a file is, from its first bytes (decompressed when it is gzip or zstd: only heap dumps
/// are read compressed).
pub fn sniff(path: &Path) -> Kind {
    match rbscope_heap::input::Dump::open(path) {
        Ok(_) => return Kind::Heap,
        Err(rbscope_heap::input::HeapError::Truncated { .. }) => return Kind::Heap,
        Err(rbscope_heap::input::HeapError::Open { source, .. }) => {
            return Kind::Unknown(format!("cannot read it: {source}"))
        }
        Err(rbscope_heap::input::HeapError::Empty { .. }) => {
            return Kind::Unknown("it is empty".into())
        }
        Err(_) => {}
    }
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
    if let Err(e) = read {
        return Kind::Unknown(format!("cannot read it: {e}"));
    }
    let text = String::from_utf8_lossy(&head);
    let t = text.trim_start();
    if t.starts_with('[') {
        return if t.contains("\"ph\"") || t.trim_end() == "[]" {
            Kind::Trace
        } else {
            Kind::Unknown("a JSON array that is not a Chrome trace".into())
        };
    }
    if t.starts_with('{') {
        let first = t.lines().next().unwrap_or("");
        if let Ok(v) = serde_json::from_str::<Value>(first) {
            if v.get("event").is_some() {
                return Kind::Trace;
            }
        }
        // A whole JSON document: a profile or a saved analysis. Tell by its keys, which sit
        // near the start in every one of them.
        if t.contains("speedscope.app/file-format-schema.json") {
            return Kind::Profile;
        }
        return match saved_kind_of_head(t) {
            Some(k) => Kind::Saved(k),
            None => Kind::Unknown(
                "a JSON document that is not a profile or a saved `rbscope heap ... --json` analysis"
                    .into(),
            ),
        };
    }
    if looks_collapsed(t) {
        return Kind::Profile;
    }
    match rbscope_trace::file::read(&head) {
        Ok(_) => Kind::Trace,
        Err(e @ rbscope_trace::file::TraceFileError::Text) => Kind::Unknown(e.to_string()),
        Err(_) => Kind::Unknown(
            "it is not a heap dump, a trace (jsonl or chrome), a profile (speedscope or collapsed) or a saved analysis"
                .into(),
        ),
    }
}

/// Which saved analysis a JSON document is, from its keys.
pub fn saved_kind(v: &Value) -> Option<&'static str> {
    let has = |k: &str| v.get(k).is_some();
    if has("tree") && has("reachable") {
        Some("top")
    } else if has("by_type") && has("total") {
        Some("summary")
    } else if has("new_in_second") && has("dumps") {
        Some("diff")
    } else if has("paths") && has("object") {
        Some("path")
    } else {
        None
    }
}

/// The same from the start of the text (the documents are pretty-printed JSON; their first
/// keys are enough).
fn saved_kind_of_head(t: &str) -> Option<&'static str> {
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return saved_kind(&v);
    }
    let has = |k: &str| t.contains(&format!("\"{k}\":"));
    if has("tree") && has("reachable") {
        Some("top")
    } else if has("by_type") && has("total") {
        Some("summary")
    } else if has("new_in_second") {
        Some("diff")
    } else if has("paths") && has("object") {
        Some("path")
    } else {
        None
    }
}

/// Collapsed stacks: `frame;frame;frame COUNT` lines.
fn looks_collapsed(t: &str) -> bool {
    let mut lines = t
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .peekable();
    lines.peek().is_some()
        && lines.all(|l| {
            l.rsplit_once(' ')
                .is_some_and(|(stack, n)| !stack.is_empty() && n.trim().parse::<u64>().is_ok())
        })
}
