//! What the agent did and what it had to drop, for `rbscope doctor -p PID`.
//!
//! Plain atomics: the app's threads bump them, the control thread reads them, and they stay
//! valid across `fork` (a child starts from its parent's figures and resets them).

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
