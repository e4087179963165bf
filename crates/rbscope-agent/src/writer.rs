//! The background thread that writes snapshots to the store.
//!
//! The app never waits for the disk: a report puts the encoded blob on a bounded queue and
//! returns; this plain Rust thread (it never touches the Ruby VM) owns the store connection.
//! When the queue is full the snapshot is dropped and counted. At exit, `flush` waits a
//! bounded time for the queue to drain so an escaping exception is not lost.

use crate::counters::{add, bump, Counters};
use crate::report::now_ms;
use rbscope_store::{
    NewSnapshot, Retention, SnapshotSummary, SqliteStore, StoreError, StoreKey, StoreLocation,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub enum Job {
    Store {
        summary: Box<SnapshotSummary>,
        body: Vec<u8>,
        log: String,
    },
    Flush(SyncSender<()>),
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
        limits: Limits,
        counters: Arc<Counters>,
        log: bool,
    ) -> Result<Writer, String> {
        let (tx, rx) = sync_channel(QUEUE_LEN);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let queued = queued_bytes.clone();
        std::thread::Builder::new()
            .name("rbscope-writer".into())
            .spawn(move || run(rx, location, limits, counters, log, queued))
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

    /// Waits up to `timeout` for every queued snapshot to be written.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = sync_channel(1);
        if self.tx.send(Job::Flush(done_tx)).is_err() {
            return false;
        }
        done_rx.recv_timeout(timeout).is_ok()
    }
}

/// What the writer enforces on the store.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Refuse snapshots beyond this many bytes of snapshots.
    pub max_store_bytes: Option<u64>,
    /// Delete the oldest snapshots beyond these (checked at most once a minute).
    pub retention: Retention,
}

/// Snapshots written in one transaction at most.
const BATCH: usize = 256;

struct Pending {
    summary: Box<SnapshotSummary>,
    body: Vec<u8>,
    log: String,
}

fn run(
    rx: Receiver<Job>,
    location: StoreLocation,
    limits: Limits,
    counters: Arc<Counters>,
    log: bool,
    queued_bytes: Arc<AtomicUsize>,
) {
    let mut w = WriterState {
        location,
        limits,
        counters,
        log,
        store: None,
        key: None,
        last_error: None,
        last_retention: None,
    };
    while let Ok(first) = rx.recv() {
        // Take whatever else is already queued: one transaction for all of it.
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Flush(done) => flushes.push(done),
                Job::Store { summary, body, log } => {
                    queued_bytes.fetch_sub(body.len(), Ordering::AcqRel);
                    batch.push(Pending { summary, body, log })
                }
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            w.write(&batch);
        }
        for done in flushes {
            let _ = done.try_send(());
        }
    }
}

struct WriterState {
    location: StoreLocation,
    limits: Limits,
    counters: Arc<Counters>,
    log: bool,
    store: Option<SqliteStore>,
    key: Option<StoreKey>,
    last_error: Option<String>,
    last_retention: Option<Instant>,
}

impl WriterState {
    fn open(&mut self) -> bool {
        if self.store.is_some() {
            return true;
        }
        let StoreLocation::Sqlite(path) = &self.location;
        match SqliteStore::open_or_create(path) {
            Ok(s) => {
                self.key = StoreKey::load_or_create(s.path()).ok();
                self.store = Some(s);
                // Retention runs when the store is opened, then at most once a minute.
                self.retention(true);
                true
            }
            Err(e) => {
                self.complain(&e);
                false
            }
        }
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

    fn write(&mut self, batch: &[Pending]) {
        if !self.open() {
            add(&self.counters.store_errors, batch.len() as u64);
            return;
        }
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
            return;
        };
        match store.insert_batch(&rows, self.limits.max_store_bytes) {
            Ok(results) => {
                for (p, r) in batch.iter().zip(results) {
                    match r {
                        Ok(()) => {
                            bump(&self.counters.stored);
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
            }
            Err(e) => {
                add(&self.counters.store_errors, batch.len() as u64);
                self.complain(&e);
                // Reopen next time: the file may have been replaced or repaired.
                self.store = None;
            }
        }
    }

    fn complain(&mut self, e: &StoreError) {
        complain(self.log, &mut self.last_error, e);
    }
}

/// Logs a store error once until it changes, so a broken store does not flood the app's log.
fn complain(log: bool, last: &mut Option<String>, e: &StoreError) {
    let text = e.to_string();
    if log && last.as_deref() != Some(text.as_str()) {
        eprintln!("[rbscope] snapshot not stored: {text}");
    }
    *last = Some(text);
}

pub const EXIT_FLUSH: Duration = Duration::from_secs(5);
