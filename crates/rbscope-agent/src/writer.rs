//! The background thread that writes snapshots to the store.
//!
//! The app never waits for the disk: a report puts the encoded blob on a bounded queue and
//! returns; this plain Rust thread (it never touches the Ruby VM) owns the store connection.
//! When the queue is full the snapshot is dropped and counted. When the store fails (a
//! PostgreSQL server restarting, a network cut, a full disk) snapshots wait in a bounded
//! backlog and are retried with backoff; past the bound they are dropped and counted. At exit,
//! `flush` waits a bounded time for one more attempt so an escaping exception is not lost.

use crate::capture::report::now_ms;
use crate::counters::{add, bump, Counters};
use crate::ffi::guard::{self, Feature};
use rbscope_store::{
    writer_key, NewSnapshot, Retention, SnapshotSummary, Store, StoreError, StoreKey, StoreLocation,
};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub enum Job {
    Store {
        summary: Box<SnapshotSummary>,
        body: Vec<u8>,
        log: String,
    },
    /// Write what is queued now; answers how many snapshots are still waiting.
    Flush(SyncSender<usize>),
}

pub struct Writer {
    tx: SyncSender<Job>,
    queued_bytes: Arc<AtomicUsize>,
}

/// How many snapshots may wait for the disk...
const QUEUE_LEN: usize = 8192;
/// ...and how many bytes of them (the bound that matters for memory).
const QUEUE_BYTES: usize = 64 * 1024 * 1024;

impl Writer {
    pub fn spawn(
        location: StoreLocation,
        key_file: Option<PathBuf>,
        limits: Limits,
        counters: Arc<Counters>,
        log: bool,
    ) -> Result<Writer, String> {
        let (tx, rx) = sync_channel(QUEUE_LEN);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let queued = queued_bytes.clone();
        std::thread::Builder::new()
            .name("rbscope-writer".into())
            .spawn(move || {
                guard::run(Feature::Writer, "the store writer", (), || {
                    run(rx, location, key_file, limits, counters, log, queued)
                })
            })
            .map_err(|e| format!("rbscope: cannot start the writer thread: {e}"))?;
        Ok(Writer { tx, queued_bytes })
    }

    /// Queues a job without blocking; false when the queue is full (by count or bytes) or the
    /// thread is gone.
    pub fn submit(&self, job: Job) -> bool {
        let size = match &job {
            Job::Store { body, .. } => body.len(),
            Job::Flush(_) => 0,
        };
        if self.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                false
            }
        }
    }

    /// Waits up to `timeout` for every queued snapshot to be written; true when none is left
    /// waiting (a store that keeps failing leaves them in the backlog).
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = sync_channel(1);
        if self.tx.send(Job::Flush(done_tx)).is_err() {
            return false;
        }
        done_rx.recv_timeout(timeout) == Ok(0)
    }
}

/// What the writer enforces on the store.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Refuse snapshots beyond this many bytes of snapshots.
    pub max_store_bytes: Option<u64>,
    /// Delete the oldest snapshots beyond these (checked at most once a minute).
    pub retention: Retention,
    /// How many snapshots may wait in memory while the store is failing.
    pub backlog: usize,
}

/// Snapshots written in one transaction at most.
const BATCH: usize = 256;

/// While the store is unreachable, snapshots wait in memory up to `Limits::backlog` of them and
/// this many bytes; beyond that new ones are dropped and counted (`store_dropped`). The app
/// never waits either way.
const BACKLOG_BYTES: usize = 32 * 1024 * 1024;

/// Retries of an unreachable store start quickly and back off to this.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(30);

struct Pending {
    summary: Box<SnapshotSummary>,
    body: Vec<u8>,
    log: String,
    /// A write of it failed before (counted once in `store_errors`).
    failed_before: bool,
}

#[allow(clippy::too_many_arguments)]
fn run(
    rx: Receiver<Job>,
    location: StoreLocation,
    key_file: Option<PathBuf>,
    limits: Limits,
    counters: Arc<Counters>,
    log: bool,
    queued_bytes: Arc<AtomicUsize>,
) {
    let mut w = WriterState {
        location,
        key_file,
        limits,
        counters,
        log,
        store: None,
        key: None,
        last_error: None,
        last_retention: None,
        backlog: VecDeque::new(),
        backlog_bytes: 0,
        retry_at: None,
        backoff: FIRST_RETRY,
    };
    loop {
        let first = match w.retry_at {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        // Take whatever else is already queued: one transaction for all of it.
        let mut flushes = Vec::new();
        let mut next = first;
        let mut taken = 0;
        while let Some(job) = next.take() {
            match job {
                Job::Flush(done) => flushes.push(done),
                Job::Store { summary, body, log } => {
                    queued_bytes.fetch_sub(body.len(), Ordering::AcqRel);
                    w.enqueue(Pending {
                        summary,
                        body,
                        log,
                        failed_before: false,
                    });
                    taken += 1;
                }
            }
            if taken < BATCH {
                next = rx.try_recv().ok();
            }
        }
        // A flush tries now even while backing off: the process may be about to exit.
        w.drain(!flushes.is_empty());
        for done in flushes {
            let _ = done.try_send(w.backlog.len());
        }
    }
}

struct WriterState {
    location: StoreLocation,
    key_file: Option<PathBuf>,
    limits: Limits,
    counters: Arc<Counters>,
    log: bool,
    store: Option<Store>,
    key: Option<StoreKey>,
    last_error: Option<String>,
    last_retention: Option<Instant>,
    /// Snapshots not yet written, oldest first.
    backlog: VecDeque<Pending>,
    backlog_bytes: usize,
    /// Set while the store is failing: when to try again.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl WriterState {
    fn enqueue(&mut self, p: Pending) {
        if self.backlog.len() >= self.limits.backlog
            || self.backlog_bytes + p.body.len() > BACKLOG_BYTES
        {
            bump(&self.counters.store_dropped);
            return;
        }
        self.backlog_bytes += p.body.len();
        self.backlog.push_back(p);
    }

    /// Writes the backlog, a batch at a time, unless the store is failing and its retry is not
    /// due (and `now` does not force it).
    fn drain(&mut self, now: bool) {
        while !self.backlog.is_empty() {
            if let Some(at) = self.retry_at {
                if !now && Instant::now() < at {
                    return;
                }
            }
            let n = self.backlog.len().min(BATCH);
            if self.write_front(n) {
                self.retry_at = None;
                self.backoff = FIRST_RETRY;
            } else {
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_RETRY);
                return;
            }
        }
    }

    fn open(&mut self) -> Result<(), StoreError> {
        if self.store.as_ref().is_some_and(|s| !s.is_broken()) {
            return Ok(());
        }
        self.store = None;
        let s = Store::open_or_create(&self.location)?;
        self.key = match writer_key(&self.location, self.key_file.as_deref()) {
            Ok(k) => k,
            Err(e) => {
                // Store unsigned rather than not at all; restore will ask for --trust.
                self.complain(&e);
                None
            }
        };
        self.store = Some(s);
        // Retention runs when the store is opened, then at most once a minute.
        self.retention(true);
        Ok(())
    }

    fn retention(&mut self, force: bool) {
        if self.limits.retention == Retention::default() {
            return;
        }
        let due = self
            .last_retention
            .map(|t| t.elapsed() >= Duration::from_secs(60))
            .unwrap_or(true);
        if !(force || due) {
            return;
        }
        self.last_retention = Some(Instant::now());
        if let Some(s) = self.store.as_mut() {
            if let Ok(n) = s.apply_retention(&self.limits.retention, now_ms()) {
                add(&self.counters.retention_deleted, n);
            }
        }
    }

    /// Writes the oldest `n` snapshots in one transaction. True when the store took the batch
    /// (each snapshot then stored, or refused by the byte cap and dropped); false when the
    /// store failed and the batch stays for a retry.
    fn write_front(&mut self, n: usize) -> bool {
        if let Err(e) = self.open() {
            self.failed(n, &e);
            return false;
        }
        let batch: Vec<&Pending> = self.backlog.iter().take(n).collect();
        let signatures: Vec<Option<Vec<u8>>> = batch
            .iter()
            .map(|p| self.key.as_ref().map(|k| k.sign(&p.body)))
            .collect();
        let rows: Vec<NewSnapshot> = batch
            .iter()
            .zip(&signatures)
            .map(|(p, sig)| NewSnapshot {
                summary: &p.summary,
                body: &p.body,
                signature: sig.as_deref(),
            })
            .collect();
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        let results = match store.insert_batch(&rows, self.limits.max_store_bytes) {
            Ok(results) => results,
            Err(e) => {
                // Reopen next time: the file may have been replaced, the server restarted.
                self.store = None;
                self.failed(n, &e);
                return false;
            }
        };
        for r in results {
            let Some(p) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= p.body.len();
            match r {
                Ok(()) => {
                    bump(&self.counters.stored);
                    if p.failed_before {
                        bump(&self.counters.stored_after_retry);
                    }
                    add(&self.counters.bytes_stored, p.body.len() as u64);
                    self.last_error = None;
                    if self.log {
                        eprintln!("{}", p.log);
                    }
                }
                Err(e) => {
                    bump(&self.counters.store_over_cap);
                    self.complain(&e);
                }
            }
        }
        self.retention(false);
        true
    }

    /// The first `n` snapshots could not be written: count those failing for the first time
    /// and say why (once per distinct error).
    fn failed(&mut self, n: usize, e: &StoreError) {
        for p in self.backlog.iter_mut().take(n) {
            if !p.failed_before {
                p.failed_before = true;
                bump(&self.counters.store_errors);
            }
        }
        complain(self.log, &mut self.last_error, e, Some(self.limits.backlog));
    }

    fn complain(&mut self, e: &StoreError) {
        complain(self.log, &mut self.last_error, e, None);
    }
}

/// Logs a store error once until it changes, so a broken store does not flood the app's log.
/// `backlog` is given when the snapshots are kept for a retry.
fn complain(log: bool, last: &mut Option<String>, e: &StoreError, backlog: Option<usize>) {
    let text = e.to_string();
    if log && last.as_deref() != Some(text.as_str()) {
        if let Some(n) = backlog {
            eprintln!(
                "[rbscope] snapshot not stored: {text} (will retry; up to {n} snapshots wait in memory meanwhile)"
            );
        } else {
            eprintln!("[rbscope] snapshot not stored: {text}");
        }
    }
    *last = Some(text);
}

pub const EXIT_FLUSH: Duration = Duration::from_secs(5);
