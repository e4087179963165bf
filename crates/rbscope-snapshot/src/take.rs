//! Snapshots taken together: one `rbscope snapshot -p` request that names several threads
//! (`--all`, or `--thread` more than once) stores one snapshot per thread, and each of them
//! carries the whole take in its context, as two entries of [`Context::extra`]:
//!
//! - `take`: the take's own id (a ULID, shared by every snapshot of the take);
//! - `take_threads`: every thread of the take with the id its snapshot was given, as JSON
//!   (`[{"id":"01J...","name":"worker","tid":4242,"main":false}]`).
//!
//! The ids are chosen before any snapshot is taken, so the first snapshot already names the
//! last; a thread that ended before its turn, or whose snapshot could not be stored, is still
//! listed, and readers check the store for it. Context entries need no change of the snapshot
//! format, and every reader of a snapshot (show, restore, the UI) has them without a query.

use crate::Context;
use serde::{Deserialize, Serialize};

/// The context key holding the take's id.
pub const TAKE_KEY: &str = "take";
/// The context key holding the take's threads, as JSON.
pub const TAKE_THREADS_KEY: &str = "take_threads";

/// One thread of a take and the id of its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeMember {
    /// The id its snapshot was given.
    pub id: String,
    /// `Thread#name`, if it has one.
    pub name: Option<String>,
    /// The OS thread id.
    pub tid: Option<i32>,
    /// Whether it is the main thread.
    pub main: bool,
}

impl TakeMember {
    /// How a list or a message names the thread: `worker-1 (tid 4242)`, `main`, `(unnamed)`.
    pub fn describe(&self) -> String {
        let name = match (&self.name, self.main) {
            (Some(n), _) => n.clone(),
            (None, true) => "main".into(),
            (None, false) => "(unnamed)".into(),
        };
        match self.tid {
            Some(t) => format!("{name} (tid {t})"),
            None => name,
        }
    }

    /// Whether `wanted` names this thread, as `rbscope snapshot -p --thread` takes it: its
    /// name, `main` for the main thread, or its OS thread id in decimal.
    pub fn is(&self, wanted: &str) -> bool {
        self.name.as_deref() == Some(wanted)
            || (self.main && wanted == "main")
            || matches!((wanted.parse::<i32>(), self.tid), (Ok(w), Some(t)) if w == t)
    }
}

/// The snapshots of one take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub id: String,
    pub members: Vec<TakeMember>,
}

impl Take {
    /// The context entries that record the take (see the module's comment).
    pub fn context_entries(&self) -> Vec<(String, String)> {
        let threads = serde_json::to_string(&self.members).unwrap_or_else(|_| "[]".into());
        vec![
            (TAKE_KEY.into(), self.id.clone()),
            (TAKE_THREADS_KEY.into(), threads),
        ]
    }

    /// The take a snapshot's context records; None when it records none (a snapshot taken
    /// alone, an exception's) or its entries cannot be read.
    pub fn of(context: &Context) -> Option<Take> {
        let entry = |key: &str| {
            context
                .extra
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let id = entry(TAKE_KEY)?.to_string();
        let members: Vec<TakeMember> = serde_json::from_str(entry(TAKE_THREADS_KEY)?).ok()?;
        Some(Take { id, members })
    }

    /// Whether a context entry is one of the take's (views show the take in their own words).
    pub fn is_entry(key: &str) -> bool {
        key == TAKE_KEY || key == TAKE_THREADS_KEY
    }

    /// The thread `wanted` names (see [`TakeMember::is`]).
    pub fn find(&self, wanted: &str) -> Option<&TakeMember> {
        self.members.iter().find(|m| m.is(wanted))
    }

    /// Every thread of the take but the one of snapshot `id`.
    pub fn others<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a TakeMember> + 'a {
        self.members.iter().filter(move |m| m.id != id)
    }

    /// The take's threads in words: `main (tid 1), worker (tid 2)`.
    pub fn describe_threads(&self) -> String {
        self.members
            .iter()
            .map(TakeMember::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: Option<&str>, tid: Option<i32>, main: bool) -> TakeMember {
        TakeMember {
            id: id.into(),
            name: name.map(Into::into),
            tid,
            main,
        }
    }

    fn take() -> Take {
        Take {
            id: "TAKE1".into(),
            members: vec![
                member("A", None, Some(100), true),
                member("B", Some("worker \"1\"\nx"), Some(101), false),
                member("C", None, None, false),
            ],
        }
    }

    #[test]
    fn a_take_reads_back_from_the_context_it_writes() {
        let t = take();
        let mut c = Context {
            extra: vec![("request".into(), "GET /".into())],
            ..Context::default()
        };
        c.extra.extend(t.context_entries());
        assert_eq!(Take::of(&c), Some(t));
        assert!(Take::is_entry("take") && Take::is_entry("take_threads"));
        assert!(!Take::is_entry("request"));
    }

    #[test]
    fn no_take_without_both_entries_or_with_unreadable_threads() {
        let mut c = Context::default();
        assert_eq!(Take::of(&c), None);
        c.extra.push((TAKE_KEY.into(), "T".into()));
        assert_eq!(Take::of(&c), None);
        c.extra.push((TAKE_THREADS_KEY.into(), "not json".into()));
        assert_eq!(Take::of(&c), None);
    }

    #[test]
    fn threads_are_found_by_name_main_or_tid() {
        let t = take();
        let id = |w: &str| t.find(w).map(|m| m.id.clone());
        assert_eq!(id("main").as_deref(), Some("A"));
        assert_eq!(id("100").as_deref(), Some("A"));
        assert_eq!(id("worker \"1\"\nx").as_deref(), Some("B"));
        assert_eq!(id("101").as_deref(), Some("B"));
        assert_eq!(id("worker"), None);
        assert_eq!(id("999"), None);
        let others: Vec<&str> = t.others("B").map(|m| m.id.as_str()).collect();
        assert_eq!(others, ["A", "C"]);
        assert_eq!(
            t.describe_threads(),
            "main (tid 100), worker \"1\"\nx (tid 101), (unnamed)"
        );
    }
}
