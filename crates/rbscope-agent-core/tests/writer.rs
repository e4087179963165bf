//! The writer thread against a fake store that fails, recovers, is slow and is full.

use rbscope_agent_core::writer::{Bounds, Job, Limits, Observer, Sink, Tally, Writer};
use rbscope_store::{Retention, SnapshotSummary, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// What the fake store does and what happened to it.
#[derive(Default)]
struct FakeState {
    /// Opening fails with this error.
    open_fails: Option<fn() -> StoreError>,
    /// Opening succeeds without a signing key, for this reason.
    key_problem: Option<fn() -> StoreError>,
    /// Whole batches fail (after opening) with this error.
    insert_fails: Option<fn() -> StoreError>,
    /// Snapshots with these ids are refused by the byte cap.
    over_cap: Vec<String>,
    /// While set, inserts wait (a slow store).
    paused: bool,
    /// An insert is waiting because the store is paused.
    waiting: bool,
    open: bool,
    opens: usize,
    closes: usize,
    /// Ids stored, in order, and the batch sizes.
    stored: Vec<String>,
    batches: Vec<usize>,
    retention_runs: usize,
}

#[derive(Clone, Default)]
struct Fake(Arc<(Mutex<FakeState>, Condvar)>);

impl Fake {
    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        let mut s = self.0 .0.lock().unwrap();
        let r = f(&mut s);
        self.0 .1.notify_all();
        r
    }

    /// Waits until `ready` holds (or fails the test after a long while).
    fn wait_until(&self, ready: impl Fn(&FakeState) -> bool) {
        let (lock, cv) = &*self.0;
        let s = lock.lock().unwrap();
        let (s, timeout) = cv.wait_timeout_while(s, WAIT, |s| !ready(s)).unwrap();
        assert!(!timeout.timed_out(), "the writer never got there");
        drop(s);
    }

    fn stored(&self) -> Vec<String> {
        self.with(|s| s.stored.clone())
    }
}

impl Sink for Fake {
    fn is_open(&self) -> bool {
        self.with(|s| s.open)
    }

    fn open(&mut self) -> Result<Option<StoreError>, StoreError> {
        self.with(|s| {
            s.opens += 1;
            if let Some(e) = s.open_fails {
                return Err(e());
            }
            s.open = true;
            Ok(s.key_problem.map(|e| e()))
        })
    }

    fn close(&mut self) {
        self.with(|s| {
            s.open = false;
            s.closes += 1;
        })
    }

    fn insert_batch(
        &mut self,
        batch: &[(&SnapshotSummary, &[u8])],
        _max_bytes: Option<u64>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let (lock, cv) = &*self.0;
        let mut s = lock.lock().unwrap();
        s.waiting = true;
        cv.notify_all();
        let mut s = cv.wait_while(s, |s| s.paused).unwrap();
        s.waiting = false;
        if let Some(e) = s.insert_fails {
            return Err(e());
        }
        s.batches.push(batch.len());
        let results = batch
            .iter()
            .map(|(summary, _)| {
                if s.over_cap.contains(&summary.id) {
                    Err(StoreError::OverCap(10))
                } else {
                    s.stored.push(summary.id.clone());
                    Ok(())
                }
            })
            .collect();
        cv.notify_all();
        Ok(results)
    }

    fn apply_retention(&mut self, _: &Retention, _: i64) -> Result<u64, StoreError> {
        self.with(|s| {
            s.retention_runs += 1;
            Ok(2)
        })
    }
}

#[derive(Default)]
struct Seen {
    counts: Mutex<HashMap<String, u64>>,
    lines: Mutex<Vec<String>>,
}

impl Observer for Seen {
    fn count(&self, what: Tally, n: u64) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(format!("{what:?}"))
            .or_default() += n;
    }
    fn log(&self, line: &str) {
        self.lines.lock().unwrap().push(line.to_string());
    }
}

impl Seen {
    fn get(&self, what: Tally) -> u64 {
        self.counts
            .lock()
            .unwrap()
            .get(&format!("{what:?}"))
            .copied()
            .unwrap_or(0)
    }
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

fn limits(backlog: usize) -> Limits {
    Limits {
        max_store_bytes: None,
        retention: Retention::default(),
        backlog,
    }
}

fn start(fake: &Fake, limits: Limits, bounds: Bounds) -> (Writer, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let w = Writer::spawn(fake.clone(), limits, bounds, seen.clone(), true, |work| {
        work()
    })
    .unwrap();
    (w, seen)
}

fn job(id: &str, size: usize) -> Job {
    Job::Store {
        summary: Box::new(SnapshotSummary {
            id: id.into(),
            reported_at_ms: 0,
            exception_class: "E".into(),
            message: String::new(),
            top_frame: "-".into(),
            fingerprint: "f".into(),
            hostname: "h".into(),
            pid: 1,
            size: size as u64,
        }),
        body: vec![7; size],
        log: format!("stored {id}"),
    }
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("s{i}")).collect()
}

#[test]
fn stores_in_order_counts_and_logs() {
    let fake = Fake::default();
    let (w, seen) = start(&fake, limits(100), Bounds::default());
    for id in ids(0..20) {
        assert!(w.submit(job(&id, 10)));
    }
    assert!(w.flush(WAIT));
    assert_eq!(fake.stored(), ids(0..20));
    assert_eq!(seen.get(Tally::Stored), 20);
    assert_eq!(seen.get(Tally::BytesStored), 200);
    assert_eq!(seen.get(Tally::StoreErrors), 0);
    assert_eq!(
        seen.lines(),
        ids(0..20)
            .iter()
            .map(|i| format!("stored {i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(fake.with(|s| s.opens), 1, "one connection for everything");
}

#[test]
fn batches_are_bounded() {
    let fake = Fake::default();
    fake.with(|s| s.paused = true);
    let bounds = Bounds {
        batch: 3,
        ..Bounds::default()
    };
    let (w, _) = start(&fake, limits(100), bounds);
    assert!(w.submit(job("s0", 1)));
    fake.wait_until(|s| s.waiting);
    for id in ids(1..8) {
        assert!(w.submit(job(&id, 1)));
    }
    fake.with(|s| s.paused = false);
    assert!(w.flush(WAIT));
    assert_eq!(fake.stored(), ids(0..8));
    let batches = fake.with(|s| s.batches.clone());
    assert_eq!(batches.first(), Some(&1));
    assert!(batches.iter().all(|b| *b <= 3), "{batches:?}");
    assert_eq!(batches.iter().sum::<usize>(), 8);
}

#[test]
fn a_failing_store_keeps_the_backlog_and_recovers_in_order() {
    let fake = Fake::default();
    fake.with(|s| s.open_fails = Some(|| StoreError::Postgres("connection refused".into())));
    let (w, seen) = start(&fake, limits(100), Bounds::default());
    for id in ids(0..3) {
        assert!(w.submit(job(&id, 5)));
    }
    assert!(!w.flush(WAIT), "nothing could be written");
    assert!(!w.flush(WAIT), "still nothing");
    assert_eq!(
        seen.get(Tally::StoreErrors),
        3,
        "each snapshot counted once"
    );
    let complaints: Vec<String> = seen
        .lines()
        .into_iter()
        .filter(|l| l.contains("connection refused"))
        .collect();
    assert_eq!(complaints.len(), 1, "the same error is logged once");
    assert!(complaints[0].contains("will retry; up to 100 snapshots"));

    fake.with(|s| s.open_fails = None);
    assert!(w.submit(job("s3", 5)));
    assert!(w.flush(WAIT));
    assert_eq!(fake.stored(), ids(0..4));
    assert_eq!(seen.get(Tally::StoredAfterRetry), 3);
    assert_eq!(seen.get(Tally::Stored), 4);
    assert_eq!(seen.get(Tally::StoreErrors), 3);
}

#[test]
fn a_failing_store_is_retried_without_a_flush() {
    let fake = Fake::default();
    fake.with(|s| s.open_fails = Some(|| StoreError::DiskFull));
    let bounds = Bounds {
        first_retry: Duration::ZERO,
        max_retry: Duration::ZERO,
        ..Bounds::default()
    };
    let (w, seen) = start(&fake, limits(100), bounds);
    assert!(w.submit(job("s0", 5)));
    fake.wait_until(|s| s.opens >= 2);
    fake.with(|s| s.open_fails = None);
    fake.wait_until(|s| s.stored.len() == 1);
    // Stored without a flush; this one only waits for the writer to finish counting.
    assert!(w.flush(WAIT));
    assert_eq!(seen.get(Tally::StoredAfterRetry), 1);
}

#[test]
fn a_failed_batch_closes_the_connection_and_reopens() {
    let fake = Fake::default();
    fake.with(|s| s.insert_fails = Some(|| StoreError::Sqlite("database is locked".into())));
    // No retry on a timer here: only the flushes try.
    let bounds = Bounds {
        first_retry: Duration::from_secs(3600),
        max_retry: Duration::from_secs(3600),
        ..Bounds::default()
    };
    let (w, seen) = start(&fake, limits(100), bounds);
    assert!(w.submit(job("s0", 5)));
    assert!(!w.flush(WAIT));
    // One attempt, or two when the snapshot came before the flush.
    let (opens, closes, open) = fake.with(|s| (s.opens, s.closes, s.open));
    assert!((1..=2).contains(&opens) && closes == opens && !open);
    fake.with(|s| s.insert_fails = None);
    assert!(w.flush(WAIT));
    assert_eq!(fake.with(|s| s.opens), opens + 1, "reopened once");
    assert_eq!(fake.stored(), ids(0..1));
    assert_eq!(seen.get(Tally::StoreErrors), 1);
}

#[test]
fn the_backlog_is_bounded_by_count_and_bytes() {
    let fake = Fake::default();
    fake.with(|s| s.open_fails = Some(|| StoreError::DiskFull));
    let bounds = Bounds {
        backlog_bytes: 100,
        ..Bounds::default()
    };
    let (w, seen) = start(&fake, limits(3), bounds);
    for id in ids(0..5) {
        assert!(w.submit(job(&id, 10)));
    }
    assert!(!w.flush(WAIT));
    assert_eq!(seen.get(Tally::StoreDropped), 2, "the count bound");
    assert!(w.submit(job("big", 80)));
    assert!(!w.flush(WAIT));
    assert_eq!(seen.get(Tally::StoreDropped), 3, "the byte bound");
    fake.with(|s| s.open_fails = None);
    assert!(w.flush(WAIT));
    assert_eq!(fake.stored(), ids(0..3), "the oldest are kept");
}

#[test]
fn a_full_queue_refuses_and_a_slow_store_keeps_order() {
    let fake = Fake::default();
    fake.with(|s| s.paused = true);
    let bounds = Bounds {
        queue_len: 2,
        queue_bytes: 1000,
        ..Bounds::default()
    };
    let (w, seen) = start(&fake, limits(100), bounds);
    assert!(w.submit(job("s0", 10)));
    fake.wait_until(|s| s.waiting);
    assert!(w.submit(job("s1", 10)));
    assert!(w.submit(job("s2", 10)));
    assert!(!w.submit(job("s3", 10)), "the queue holds two");
    fake.with(|s| s.paused = false);
    assert!(w.flush(WAIT));
    assert_eq!(fake.stored(), ids(0..3));
    assert_eq!(seen.get(Tally::Stored), 3);
}

#[test]
fn the_queue_is_bounded_by_bytes() {
    let fake = Fake::default();
    fake.with(|s| s.paused = true);
    let bounds = Bounds {
        queue_bytes: 100,
        ..Bounds::default()
    };
    let (w, _) = start(&fake, limits(100), bounds);
    assert!(w.submit(job("s0", 100)));
    fake.wait_until(|s| s.waiting);
    assert!(w.submit(job("s1", 60)));
    assert!(!w.submit(job("s2", 60)), "over the queue's bytes");
    assert!(w.submit(job("s3", 40)));
    fake.with(|s| s.paused = false);
    assert!(w.flush(WAIT));
    assert_eq!(fake.stored(), ["s0", "s1", "s3"]);
}

#[test]
fn flush_times_out_while_the_store_is_slow() {
    let fake = Fake::default();
    fake.with(|s| s.paused = true);
    let (w, _) = start(&fake, limits(100), Bounds::default());
    assert!(w.submit(job("s0", 1)));
    fake.wait_until(|s| s.waiting);
    assert!(!w.flush(Duration::from_millis(50)));
    fake.with(|s| s.paused = false);
    assert!(w.flush(WAIT));
    assert_eq!(fake.stored(), ids(0..1));
}

#[test]
fn over_the_byte_cap_is_dropped_not_retried() {
    let fake = Fake::default();
    fake.with(|s| s.over_cap = vec!["s1".into()]);
    let (w, seen) = start(&fake, limits(100), Bounds::default());
    for id in ids(0..3) {
        assert!(w.submit(job(&id, 5)));
    }
    assert!(w.flush(WAIT), "nothing is left waiting");
    assert_eq!(fake.stored(), ["s0", "s2"]);
    assert_eq!(seen.get(Tally::StoreOverCap), 1);
    assert_eq!(seen.get(Tally::Stored), 2);
    assert!(seen.lines().iter().any(|l| l.contains("over its size cap")));
}

#[test]
fn retention_runs_when_the_store_opens_and_a_missing_key_is_said() {
    let fake = Fake::default();
    fake.with(|s| s.key_problem = Some(|| StoreError::Key("unreadable".into())));
    let l = Limits {
        retention: Retention {
            max_count: Some(5),
            ..Retention::default()
        },
        ..limits(100)
    };
    let (w, seen) = start(&fake, l, Bounds::default());
    assert!(w.submit(job("s0", 5)));
    assert!(w.submit(job("s1", 5)));
    assert!(w.flush(WAIT));
    assert_eq!(
        fake.stored(),
        ids(0..2),
        "stored unsigned rather than not at all"
    );
    // Once at open; the minute has not passed for the write that followed.
    assert_eq!(fake.with(|s| s.retention_runs), 1);
    assert_eq!(seen.get(Tally::RetentionDeleted), 2);
    assert!(seen
        .lines()
        .iter()
        .any(|l| l == "[rbscope] snapshot not stored: store key: unreadable"));
}

#[test]
fn no_retention_without_limits() {
    let fake = Fake::default();
    let (w, _) = start(&fake, limits(100), Bounds::default());
    assert!(w.submit(job("s0", 5)));
    assert!(w.flush(WAIT));
    assert_eq!(fake.with(|s| s.retention_runs), 0);
}

#[test]
fn submit_and_flush_fail_once_the_thread_is_gone() {
    let fake = Fake::default();
    let seen = Arc::new(Seen::default());
    // A guard that never runs the work (as after a panic): the receiver is dropped.
    let w = Writer::spawn(fake, limits(1), Bounds::default(), seen, false, drop).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while w.submit(job("s0", 1)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never closed"
        );
        std::thread::yield_now();
    }
    assert!(!w.flush(WAIT));
}

#[test]
fn a_hold_waits_for_the_write_under_way_and_keeps_the_next_one_back() {
    let fake = Fake::default();
    fake.with(|s| s.paused = true);
    let (w, _) = start(&fake, limits(100), Bounds::default());
    assert!(w.submit(job("s0", 1)));
    fake.wait_until(|s| s.waiting);
    // Inside a write: the hold says so when its time is up.
    assert!(!w.hold(Duration::from_millis(50)));
    fake.with(|s| s.paused = false);
    // The write ends: now the store is not in use.
    assert!(w.hold(WAIT));
    assert_eq!(fake.stored(), ids(0..1));
    // Held: a queued snapshot waits (a flush times out) until the hold is released.
    assert!(w.submit(job("s1", 1)));
    assert!(!w.flush(Duration::from_millis(100)));
    assert_eq!(fake.stored(), ids(0..1));
    w.release();
    assert!(w.flush(WAIT));
    assert_eq!(fake.stored(), ids(0..2));
}
