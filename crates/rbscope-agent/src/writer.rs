//! The background thread that writes snapshots to the store.
//!
//! The app never waits for the disk: a report puts the encoded blob on a bounded queue and
//! returns; this plain Rust thread (it never touches the Ruby VM) owns the store connection.
//! When the queue is full the snapshot is dropped and counted. At exit, `flush` waits a
//! bounded time for the queue to drain so an escaping exception is not lost.

use crate::counters::{add, bump, Counters};
use rbscope_store::{SnapshotSummary, SqliteStore, StoreError, StoreKey, StoreLocation};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

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
        max_store_bytes: Option<u64>,
        counters: Arc<Counters>,
        log: bool,
    ) -> Result<Writer, String> {
        let (tx, rx) = sync_channel(QUEUE_LEN);
        std::thread::Builder::new()
            .name("rbscope-writer".into())
            .spawn(move || run(rx, location, max_store_bytes, counters, log))
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

fn run(
    rx: Receiver<Job>,
    location: StoreLocation,
    max_store_bytes: Option<u64>,
    counters: Arc<Counters>,
    log: bool,
) {
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
                            Ok(s) => Some(s),
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
