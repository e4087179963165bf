//! What the agent did and what it had to drop, for `rbscope doctor -p PID`, and how the
//! control server's and the store writer's events are counted.
//!
//! Plain atomics: the app's threads bump them, the control thread reads them, and they stay
//! valid across `fork` (a child starts from its parent's figures and resets them).

use crate::agent::failures;
use crate::control::Count;
use crate::writer::{Observer, Tally};
use rbscope_proto::AgentStatus;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        #[derive(Default)]
        pub struct Counters { $(#[doc = $doc] pub $name: AtomicU64,)* }

        impl Counters {
            /// Every counter with its name, for display.
            pub fn snapshot(&self) -> Vec<(String, u64)> {
                vec![$((stringify!($name).to_string(), self.$name.load(Relaxed)),)*]
            }
        }
    };
}

counters! {
    raises_seen: "raises the hook saw",
    raises_captured: "raises whose app frames were captured",
    capture_errors: "captures that failed (swallowed)",
    reports: "exceptions reported (escaped, or Rbscope.report)",
    reports_without_capture: "reports whose raise had not been captured (no locals)",
    rate_limited: "snapshots dropped by the per-fingerprint rate limit",
    queue_full: "snapshots dropped because the write queue was full",
    encode_errors: "snapshots that could not be encoded",
    stored: "snapshots written to the store",
    store_errors: "snapshots whose write failed (kept and retried while the backlog has room)",
    stored_after_retry: "snapshots written after the store had failed them (it came back)",
    store_dropped: "snapshots dropped because the store stayed unreachable and the backlog was full",
    store_over_cap: "snapshots dropped because the store is over its byte cap",
    values_redacted: "values redacted as secrets",
    values_truncated: "strings and collections cut to the limits",
    objects_cut: "objects left out by the depth, object or byte limits",
    bytes_stored: "bytes of encoded snapshots written",
    retention_deleted: "old snapshots deleted by the retention settings",
    control_connections: "clients that connected to the control socket",
    control_refused: "control connections refused (wrong user or bad handshake)",
    traces_started: "trace sessions started (rbscope trace)",
    traces_active: "trace sessions running now",
    trace_events_written: "trace event records the hooks wrote (counted when a trace ends)",
    trace_events_lost: "trace event records dropped because a client did not keep up",
    evals_run: "evals run (rbscope eval)",
    evals_refused: "evals refused (allow_eval is off)",
    evals_timed_out: "evals stopped at their client's timeout",
}

pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

impl Counters {
    /// Counts what the control server saw.
    pub fn count(&self, what: Count) {
        match what {
            Count::Connection => bump(&self.control_connections),
            Count::Refused => bump(&self.control_refused),
            Count::EvalRun => bump(&self.evals_run),
            Count::EvalRefused => bump(&self.evals_refused),
            Count::EvalTimedOut => bump(&self.evals_timed_out),
            Count::TraceStarted => {
                bump(&self.traces_started);
                bump(&self.traces_active);
            }
            Count::TraceEnded { events } => {
                self.traces_active.fetch_sub(1, Relaxed);
                add(&self.trace_events_written, events);
            }
            Count::EventsLost(n) => add(&self.trace_events_lost, n),
        }
    }
}

/// What `rbscope doctor -p PID` shows of a running agent: its store and settings, its counters
/// and the panics its guard caught, its warnings and the features an internal error turned off.
pub fn status(
    store: String,
    settings: Vec<(String, String)>,
    counters: &Counters,
    warnings: &[String],
) -> AgentStatus {
    let mut counters = counters.snapshot();
    counters.push(("internal_errors_caught".into(), failures::panics()));
    AgentStatus {
        started: true,
        store,
        settings,
        counters,
        warnings: warnings.iter().cloned().chain(failures::report()).collect(),
    }
}

/// What the store writer thread counts, and its log lines on stderr.
impl Observer for Counters {
    fn count(&self, what: Tally, n: u64) {
        let counter = match what {
            Tally::Stored => &self.stored,
            Tally::StoredAfterRetry => &self.stored_after_retry,
            Tally::BytesStored => &self.bytes_stored,
            Tally::StoreErrors => &self.store_errors,
            Tally::StoreDropped => &self.store_dropped,
            Tally::StoreOverCap => &self.store_over_cap,
            Tally::RetentionDeleted => &self.retention_deleted,
        };
        add(counter, n);
    }

    fn log(&self, line: &str) {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &Counters, name: &str) -> u64 {
        c.snapshot().into_iter().find(|(k, _)| k == name).unwrap().1
    }

    #[test]
    fn snapshot_names_every_counter_in_order() {
        let c = Counters::default();
        bump(&c.stored);
        add(&c.bytes_stored, 40);
        let names: Vec<String> = c.snapshot().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names.len(), 27);
        assert_eq!(names.first().map(String::as_str), Some("raises_seen"));
        assert_eq!(names.last().map(String::as_str), Some("evals_timed_out"));
        assert_eq!((get(&c, "stored"), get(&c, "bytes_stored")), (1, 40));
    }

    #[test]
    fn status_adds_the_guards_figures() {
        let c = Counters::default();
        bump(&c.reports);
        let settings = vec![("capture".to_string(), "fast".to_string())];
        // The panic count is the process's, and other tests record panics meanwhile: it only
        // grows, so the status's figure lies between a reading before and one after.
        let before = failures::panics();
        let s = status("db".into(), settings.clone(), &c, &["a warning".into()]);
        let after = failures::panics();
        assert!(s.started);
        assert_eq!((s.store.as_str(), s.settings), ("db", settings));
        let last = s.counters.last().unwrap();
        assert_eq!(last.0, "internal_errors_caught");
        assert!(
            (before..=after).contains(&last.1),
            "{} not in {before}..={after}",
            last.1
        );
        assert_eq!(s.counters.len(), 28);
        assert_eq!(s.warnings.first().map(String::as_str), Some("a warning"));
    }

    #[test]
    fn control_and_writer_counts_land_in_their_counters() {
        let c = Counters::default();
        c.count(Count::TraceStarted);
        c.count(Count::TraceStarted);
        c.count(Count::TraceEnded { events: 12 });
        c.count(Count::EventsLost(3));
        c.count(Count::Refused);
        assert_eq!(get(&c, "traces_started"), 2);
        assert_eq!(get(&c, "traces_active"), 1);
        assert_eq!(get(&c, "trace_events_written"), 12);
        assert_eq!(get(&c, "trace_events_lost"), 3);
        assert_eq!(get(&c, "control_refused"), 1);
        Observer::count(&c, Tally::StoreOverCap, 2);
        Observer::count(&c, Tally::RetentionDeleted, 5);
        assert_eq!(get(&c, "store_over_cap"), 2);
        assert_eq!(get(&c, "retention_deleted"), 5);
    }
}
