//! The background thread that writes snapshots to the store.
//!
//! The app never waits for the disk: a report puts the encoded blob on a bounded queue and
//! returns; this plain Rust thread (it never touches the Ruby VM) owns the store connection.
//! When the queue is full the snapshot is dropped (the caller counts it). When the store fails
//! (a PostgreSQL server restarting, a network cut, a full disk) snapshots wait in a bounded
//! backlog and are retried with backoff; past the bound they are dropped and counted. At exit,
//! `flush` waits a bounded time for one more attempt so an escaping exception is not lost.
//! Before a fork the app's thread holds the writer ([`Writer::hold`]) until it is between two
//! writes, so the child never inherits the store library mid-write (SQLite's per-process lock
//! table would say the child holds locks it does not, and its new connection would wait forever).
//!
//! The writer is generic over the store ([`Sink`]; [`StoreSink`] is the real one) and over
//! where its counts and log lines go ([`Observer`]), so its batching, backoff and bounds are
//! tested against a fake store (tests/writer.rs).

use rbscope_store::{
    writer_key, NewSnapshot, Retention, SnapshotSummary, Store, StoreError, StoreKey, StoreLocation,
};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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

/// How long the agent waits for queued snapshots at exit.
pub const EXIT_FLUSH: Duration = Duration::from_secs(5);

/// What the writer enforces on the store (from the agent's settings).
#[derive(Clone, Copy)]
pub struct Limits {
    /// Refuse snapshots beyond this many bytes of snapshots.
    pub max_store_bytes: Option<u64>,
    /// Delete the oldest snapshots beyond these (checked at most once a minute).
    pub retention: Retention,
    /// How many snapshots may wait in memory while the store is failing.
    pub backlog: usize,
}

/// The writer's fixed bounds; [`Bounds::default`] is what the agent uses, tests shrink them.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// How many snapshots may wait for the writer thread...
    pub queue_len: usize,
    /// ...and how many bytes of them (the bound that matters for memory).
    pub queue_bytes: usize,
    /// Bytes of snapshots kept in the backlog while the store fails (beside `Limits::backlog`).
    pub backlog_bytes: usize,
    /// Snapshots written in one transaction at most.
    pub batch: usize,
    /// Retries of an unreachable store start quickly and back off to `max_retry`.
    pub first_retry: Duration,
    pub max_retry: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            queue_len: 8192,
            queue_bytes: 64 * 1024 * 1024,
            backlog_bytes: 32 * 1024 * 1024,
            batch: 256,
            first_retry: Duration::from_millis(250),
            max_retry: Duration::from_secs(30),
        }
    }
}

/// What the writer counts (the agent's counters of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    Stored,
    StoredAfterRetry,
    BytesStored,
    StoreErrors,
    StoreDropped,
    StoreOverCap,
    RetentionDeleted,
}

/// Where the writer's counts and log lines go.
pub trait Observer: Send + Sync + 'static {
    fn count(&self, what: Tally, n: u64);
    /// A line for the app's log (only called when logging is on).
    fn log(&self, line: &str);
}

/// A store connection the writer can open, write batches to and trim.
pub trait Sink: Send + 'static {
    /// Whether a connection is open and usable.
    fn is_open(&self) -> bool;
    /// Opens a new connection. `Ok(Some(e))`: open, but without a signing key (snapshots are
    /// stored unsigned rather than not at all; `e` says why).
    fn open(&mut self) -> Result<Option<StoreError>, StoreError>;
    /// Forgets the connection (the next write reopens it).
    fn close(&mut self);
    /// Stores `batch` in one transaction: the outer error for the whole batch (nothing stored),
    /// the inner results per snapshot (the byte cap may refuse one).
    #[allow(clippy::type_complexity)]
    fn insert_batch(
        &mut self,
        batch: &[(&SnapshotSummary, &[u8])],
        max_bytes: Option<u64>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;
    /// Deletes the oldest snapshots beyond `retention`; how many.
    fn apply_retention(&mut self, retention: &Retention, now_ms: i64) -> Result<u64, StoreError>;
}

/// The app's side of the writer: queues jobs without blocking (a clone queues to the same
/// thread).
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Job>,
    queued_bytes: Arc<AtomicUsize>,
    queue_bytes: usize,
    gate: Arc<Gate>,
}

/// Whether the writer thread is using the store, and whether it may start to.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// The writer thread is inside the store library.
    writing: bool,
    /// Held for a fork: the writer thread waits before its next write.
    held: bool,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The writer thread, before it uses the store: waits while the gate is held.
    fn enter(&self) {
        let mut s = self.lock();
        while s.held {
            s = match self.changed.wait(s) {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        s.writing = true;
    }

    fn leave(&self) {
        self.lock().writing = false;
        self.changed.notify_all();
    }
}

impl Writer {
    /// Starts the writer thread. `guard` runs the thread's work (the agent's panic guard).
    pub fn spawn<S: Sink, O: Observer>(
        sink: S,
        limits: Limits,
        bounds: Bounds,
        observer: Arc<O>,
        log: bool,
        guard: impl FnOnce(Box<dyn FnOnce() + Send>) + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = sync_channel(bounds.queue_len);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let state = WriterState {
            sink,
            limits,
            bounds,
            observer,
            log,
            last_error: None,
            last_retention: None,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            retry_at: None,
            backoff: bounds.first_retry,
        };
        let queued = queued_bytes.clone();
        let gate = Arc::new(Gate::default());
        let gate_in = gate.clone();
        std::thread::Builder::new()
            .name("rbscope-writer".into())
            .spawn(move || guard(Box::new(move || state.run(rx, queued, &gate_in))))?;
        Ok(Writer {
            tx,
            queued_bytes,
            queue_bytes: bounds.queue_bytes,
            gate,
        })
    }

    /// Before a fork: keeps the writer thread from starting a write, and waits up to `timeout`
    /// for the one it is in to end. True when the store is not in use (safe to fork); false
    /// when the write outlasted `timeout` (the fork goes on anyway). Held until
    /// [`Writer::release`], queued snapshots wait meanwhile.
    pub fn hold(&self, timeout: Duration) -> bool {
        let mut s = self.gate.lock();
        s.held = true;
        let deadline = Instant::now() + timeout;
        while s.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = match self.gate.changed.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// After the fork, in the parent: the writer thread goes on.
    pub fn release(&self) {
        self.gate.lock().held = false;
        self.gate.changed.notify_all();
    }

    /// Queues a job without blocking; false when the queue is full (by count or bytes) or the
    /// thread is gone.
    pub fn submit(&self, job: Job) -> bool {
        let size = match &job {
            Job::Store { body, .. } => body.len(),
            Job::Flush(_) => 0,
        };
        if self.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > self.queue_bytes {
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

struct Pending {
    summary: Box<SnapshotSummary>,
    body: Vec<u8>,
    log: String,
    /// A write of it failed before (counted once in `store_errors`).
    failed_before: bool,
}

struct WriterState<S, O> {
    sink: S,
    limits: Limits,
    bounds: Bounds,
    observer: Arc<O>,
    log: bool,
    last_error: Option<String>,
    last_retention: Option<Instant>,
    /// Snapshots not yet written, oldest first.
    backlog: VecDeque<Pending>,
    backlog_bytes: usize,
    /// Set while the store is failing: when to try again.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl<S: Sink, O: Observer> WriterState<S, O> {
    fn run(mut self, rx: Receiver<Job>, queued_bytes: Arc<AtomicUsize>, gate: &Gate) {
        loop {
            let first = match self.retry_at {
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
                        self.enqueue(Pending {
                            summary,
                            body,
                            log,
                            failed_before: false,
                        });
                        taken += 1;
                    }
                }
                if taken < self.bounds.batch {
                    next = rx.try_recv().ok();
                }
            }
            // A flush tries now even while backing off: the process may be about to exit.
            gate.enter();
            self.drain(!flushes.is_empty());
            gate.leave();
            for done in flushes {
                let _ = done.try_send(self.backlog.len());
            }
        }
    }

    fn count(&self, what: Tally, n: u64) {
        self.observer.count(what, n);
    }

    fn enqueue(&mut self, p: Pending) {
        if self.backlog.len() >= self.limits.backlog
            || self.backlog_bytes + p.body.len() > self.bounds.backlog_bytes
        {
            self.count(Tally::StoreDropped, 1);
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
            let n = self.backlog.len().min(self.bounds.batch);
            if self.write_front(n) {
                self.retry_at = None;
                self.backoff = self.bounds.first_retry;
            } else {
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(self.bounds.max_retry);
                return;
            }
        }
    }

    fn open(&mut self) -> Result<(), StoreError> {
        if self.sink.is_open() {
            return Ok(());
        }
        if let Some(key_problem) = self.sink.open()? {
            // Stored unsigned rather than not at all; restore will ask for --trust.
            self.complain(&key_problem, None);
        }
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
        if let Ok(n) = self.sink.apply_retention(&self.limits.retention, now_ms()) {
            self.count(Tally::RetentionDeleted, n);
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
        let batch: Vec<(&SnapshotSummary, &[u8])> = self
            .backlog
            .iter()
            .take(n)
            .map(|p| (&*p.summary, p.body.as_slice()))
            .collect();
        let results = match self.sink.insert_batch(&batch, self.limits.max_store_bytes) {
            Ok(results) => results,
            Err(e) => {
                // Reopen next time: the file may have been replaced, the server restarted.
                self.sink.close();
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
                    self.count(Tally::Stored, 1);
                    if p.failed_before {
                        self.count(Tally::StoredAfterRetry, 1);
                    }
                    self.count(Tally::BytesStored, p.body.len() as u64);
                    self.last_error = None;
                    if self.log {
                        self.observer.log(&p.log);
                    }
                }
                Err(e) => {
                    self.count(Tally::StoreOverCap, 1);
                    self.complain(&e, None);
                }
            }
        }
        self.retention(false);
        true
    }

    /// The first `n` snapshots could not be written: count those failing for the first time
    /// and say why (once per distinct error).
    fn failed(&mut self, n: usize, e: &StoreError) {
        let mut first_failures = 0;
        for p in self.backlog.iter_mut().take(n) {
            if !p.failed_before {
                p.failed_before = true;
                first_failures += 1;
            }
        }
        self.count(Tally::StoreErrors, first_failures);
        self.complain(e, Some(self.limits.backlog));
    }

    /// Logs a store error once until it changes, so a broken store does not flood the app's
    /// log. `backlog` is given when the snapshots are kept for a retry.
    fn complain(&mut self, e: &StoreError, backlog: Option<usize>) {
        let text = e.to_string();
        if self.log && self.last_error.as_deref() != Some(text.as_str()) {
            let line = match backlog {
                Some(n) => format!(
                    "[rbscope] snapshot not stored: {text} (will retry; up to {n} snapshots wait in memory meanwhile)"
                ),
                None => format!("[rbscope] snapshot not stored: {text}"),
            };
            self.observer.log(&line);
        }
        self.last_error = Some(text);
    }
}

/// The real store: opened from its location, with the writer's signing key.
pub struct StoreSink {
    location: StoreLocation,
    key_file: Option<PathBuf>,
    store: Option<Store>,
    key: Option<StoreKey>,
}

impl StoreSink {
    pub fn new(location: StoreLocation, key_file: Option<PathBuf>) -> StoreSink {
        StoreSink {
            location,
            key_file,
            store: None,
            key: None,
        }
    }
}

impl Sink for StoreSink {
    fn is_open(&self) -> bool {
        self.store.as_ref().is_some_and(|s| !s.is_broken())
    }

    fn open(&mut self) -> Result<Option<StoreError>, StoreError> {
        self.store = None;
        let s = Store::open_or_create(&self.location)?;
        let (key, problem) = match writer_key(&self.location, self.key_file.as_deref()) {
            Ok(k) => (k, None),
            Err(e) => (None, Some(e)),
        };
        self.key = key;
        self.store = Some(s);
        Ok(problem)
    }

    fn close(&mut self) {
        self.store = None;
    }

    fn insert_batch(
        &mut self,
        batch: &[(&SnapshotSummary, &[u8])],
        max_bytes: Option<u64>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let signatures: Vec<Option<Vec<u8>>> = batch
            .iter()
            .map(|(_, body)| self.key.as_ref().map(|k| k.sign(body)))
            .collect();
        let rows: Vec<NewSnapshot> = batch
            .iter()
            .zip(&signatures)
            .map(|((summary, body), sig)| NewSnapshot {
                summary,
                body,
                signature: sig.as_deref(),
            })
            .collect();
        match self.store.as_mut() {
            Some(store) => store.insert_batch(&rows, max_bytes),
            None => Err(StoreError::Missing(self.location.describe())),
        }
    }

    fn apply_retention(&mut self, retention: &Retention, now_ms: i64) -> Result<u64, StoreError> {
        match self.store.as_mut() {
            Some(s) => s.apply_retention(retention, now_ms),
            None => Ok(0),
        }
    }
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
