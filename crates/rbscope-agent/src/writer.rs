//! The background thread that writes snapshots to the store.
//!
//! The app never waits for the disk: a report puts the encoded blob on a bounded queue and
//! returns; this plain Rust thread (it never touches the Ruby VM) owns the store connection.
//! When the queue is full the snapshot is dropped and counted. At exit, `flush` waits a
//! bounded time for the queue to drain so an escaping exception is not lost.

use crate::counters::{add, bump, Counters};
use rbscope_store::{Retention, SnapshotSummary, SqliteStore, StoreError, StoreKey, StoreLocation};
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
}

/// How many snapshots may wait for the disk.
const QUEUE_LEN: usize = 256;

impl Writer {
    pub fn spawn(
        location: StoreLocation,
        limits: Limits,
        counters: Arc<Counters>,
        log: bool,
    ) -> Result<Writer, String> {
        let (tx, rx) = sync_channel(QUEUE_LEN);
        std::thread::Builder::new()
            .name("rbscope-writer".into())
            .spawn(move || run(rx, location, limits, counters, log))
            .map_err(|e| format!("rbscope: cannot start the writer thread: {e}"))?;
        Ok(Writer { tx })
    }

    /// Queues a job without blocking; false when the queue is full or the thread is gone.
    pub fn submit(&self, job: Job) -> bool {
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
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

fn run(
    rx: Receiver<Job>,
    location: StoreLocation,
    limits: Limits,
    counters: Arc<Counters>,
    log: bool,
) {
    let max_store_bytes = limits.max_store_bytes;
    let mut last_retention: Option<Instant> = None;
    let mut store: Option<SqliteStore> = None;
    let mut key: Option<StoreKey> = None;
    let mut last_error: Option<String> = None;
    while let Ok(job) = rx.recv() {
        match job {
            Job::Flush(done) => {
                let _ = done.try_send(());
            }
            Job::Store {
                summary,
                body,
                log: line,
            } => {
                if store.is_none() {
                    store = match &location {
                        StoreLocation::Sqlite(path) => match SqliteStore::open_or_create(path) {
                            Ok(mut s) => {
                                // Retention runs when the store is opened, then at most once
                                // a minute after writes.
                                if limits.retention != Retention::default() {
                                    last_retention = Some(Instant::now());
                                    if let Ok(n) = s.apply_retention(&limits.retention, now_ms()) {
                                        add(&counters.retention_deleted, n);
                                    }
                                }
                                Some(s)
                            }
                            Err(e) => {
                                bump(&counters.store_errors);
                                complain(log, &mut last_error, &e);
                                continue;
                            }
                        },
                    };
                }
                let Some(s) = store.as_mut() else { continue };
                if key.is_none() {
                    key = StoreKey::load_or_create(s.path()).ok();
                }
                let signature = key.as_ref().map(|k| k.sign(&body));
                match s.insert(&summary, &body, signature.as_deref(), max_store_bytes) {
                    Ok(()) => {
                        bump(&counters.stored);
                        add(&counters.bytes_stored, body.len() as u64);
                        last_error = None;
                        if log {
                            eprintln!("{line}");
                        }
                        let due = last_retention
                            .map(|t| t.elapsed() >= Duration::from_secs(60))
                            .unwrap_or(true);
                        if limits.retention != Retention::default() && due {
                            last_retention = Some(Instant::now());
                            if let Ok(n) = s.apply_retention(&limits.retention, now_ms()) {
                                add(&counters.retention_deleted, n);
                            }
                        }
                    }
                    Err(StoreError::OverCap(cap)) => {
                        bump(&counters.store_over_cap);
                        complain(log, &mut last_error, &StoreError::OverCap(cap));
                    }
                    Err(e) => {
                        bump(&counters.store_errors);
                        complain(log, &mut last_error, &e);
                        // Reopen next time: the file may have been replaced or repaired.
                        store = None;
                    }
                }
            }
        }
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
