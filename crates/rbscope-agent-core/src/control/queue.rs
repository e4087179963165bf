//! The bounded queue between the control socket's threads, which never touch the VM, and the
//! agent's Ruby thread, which does the work that needs it.
//!
//! A request becomes a [`Work`] item with a deadline and a reply channel; [`ask`] queues it
//! and waits up to the client's wait for the answer. While the item waits to be taken, the
//! waiter calls the queue's `nudge` every couple of milliseconds (the agent uses it to make
//! the VM give its thread a turn sooner). Items are counted as they are queued and taken (the
//! queue is FIFO, so the n-th item queued has been taken once n items were), so a waiter knows
//! when to stop nudging. Work past its deadline is dropped by the agent, not done late.

use super::trace::Plan;
use rbscope_proto::{AgentMessage, PointRequest, SnapshotRequest, TraceStarted};
use rbscope_trace::session::Session;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The answer when the agent's Ruby thread did not start.
pub const NO_AGENT_THREAD: &str =
    "the agent has no Ruby thread for requests (it failed to start; see rbscope doctor)";
/// The answer when the agent's work queue is full or its thread has ended.
pub const QUEUE_FULL: &str =
    "the agent is still working on earlier requests, or its Ruby thread has ended";

/// Work for the agent's Ruby thread; `X` is the agent's own kind (heap jobs).
pub enum Work<X> {
    /// Read every thread's stack and send the answer on `reply`, unless `deadline` passed.
    Stacks {
        asked: Instant,
        deadline: Instant,
        reply: SyncSender<AgentMessage>,
    },
    /// Install a trace session's hooks; the answer goes to `reply` (unless `deadline` passed,
    /// then nothing is installed).
    Attach {
        session: Arc<Session>,
        plan: Plan,
        deadline: Instant,
        reply: SyncSender<Result<TraceStarted, String>>,
    },
    /// Try a trace session's waiting selectors again.
    Retry { id: u64 },
    /// Remove a trace session's hooks, then say so on `reply`.
    Detach { id: u64, reply: SyncSender<()> },
    /// Start evaluating code for the eval waiting under `token` (in a console's kept binding).
    Eval {
        token: u64,
        code: String,
        binding: Option<u64>,
    },
    /// Kill the thread of a timed-out eval.
    CancelEval { token: u64 },
    /// Store live snapshots of the requested threads and send the answer on `reply`, unless
    /// `deadline` passed (then nothing is taken).
    Snapshot {
        request: SnapshotRequest,
        asked: Instant,
        deadline: Instant,
        reply: SyncSender<AgentMessage>,
    },
    /// Read the memory report and send it on `reply`, unless `deadline` passed.
    Memory {
        deadline: Instant,
        reply: SyncSender<AgentMessage>,
    },
    /// Set breakpoint (or logpoint) `id` and send `BreakSet` (or the error) on `reply`, unless
    /// `deadline` passed (then nothing is set).
    Break {
        id: u64,
        request: PointRequest,
        deadline: Instant,
        reply: SyncSender<AgentMessage>,
    },
    /// Remove breakpoint `id`'s hook, then say so on `reply`.
    BreakRemove { id: u64, reply: SyncSender<()> },
    /// The agent's own work (a heap job, with its deadline and reply).
    Heap(X),
    /// Wake up (from the VM's unblocking function) and look for an interrupt.
    Wake,
    /// End the thread.
    Stop,
}

/// How many items were queued and taken so far.
#[derive(Default)]
struct Counts {
    queued: AtomicU64,
    taken: AtomicU64,
}

/// Where the control threads hand work over.
pub struct WorkQueue<X> {
    tx: SyncSender<Work<X>>,
    counts: Arc<Counts>,
    nudge: fn(),
}

impl<X> Clone for WorkQueue<X> {
    fn clone(&self) -> Self {
        WorkQueue {
            tx: self.tx.clone(),
            counts: self.counts.clone(),
            nudge: self.nudge,
        }
    }
}

/// The agent thread's end of the queue.
pub struct Inbox<X> {
    rx: Receiver<Work<X>>,
    counts: Arc<Counts>,
}

/// A queue of at most `capacity` waiting items; `nudge` is called by waiters until their item
/// is taken.
pub fn work_queue<X>(capacity: usize, nudge: fn()) -> (WorkQueue<X>, Inbox<X>) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let counts = Arc::new(Counts::default());
    (
        WorkQueue {
            tx,
            counts: counts.clone(),
            nudge,
        },
        Inbox { rx, counts },
    )
}

/// A queued work item, for waiting on its answer.
pub struct Ticket {
    n: u64,
    counts: Arc<Counts>,
    nudge: fn(),
}

impl Ticket {
    /// Waits up to `wait` for the answer on `rx`, nudging until the agent thread has taken the
    /// work.
    pub fn wait<T>(&self, rx: &Receiver<T>, wait: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + wait;
        loop {
            if self.counts.taken.load(Ordering::Acquire) >= self.n {
                return rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            }
            (self.nudge)();
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(2));
            match rx.recv_timeout(step) {
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                other => return other,
            }
        }
    }
}

impl<X> WorkQueue<X> {
    /// Queues `work`; false when the queue is full or the thread has ended.
    pub fn offer(&self, work: Work<X>) -> bool {
        self.submit(work).is_some()
    }

    /// Queues `work` and returns its ticket; None when the queue is full or the thread ended.
    pub fn submit(&self, work: Work<X>) -> Option<Ticket> {
        // Counted before sending, so the agent thread never takes an item not yet counted.
        let n = self.counts.queued.fetch_add(1, Ordering::AcqRel) + 1;
        match self.tx.try_send(work) {
            Ok(()) => Some(Ticket {
                n,
                counts: self.counts.clone(),
                nudge: self.nudge,
            }),
            Err(_) => {
                // Not queued: the agent thread will never take it; count it as taken so later
                // tickets stay in step.
                self.counts.taken.fetch_add(1, Ordering::AcqRel);
                None
            }
        }
    }

    /// Asks the thread to end.
    pub fn stop(&self) {
        let _ = self.tx.try_send(Work::Stop);
    }

    /// Wakes the thread (not counted: it answers nobody).
    pub fn wake(&self) {
        let _ = self.tx.try_send(Work::Wake);
    }
}

impl<X> Inbox<X> {
    /// The next item, waiting for it; `Stop` once every queue handle is gone.
    pub fn wait(&self) -> Work<X> {
        self.rx.recv().unwrap_or(Work::Stop)
    }

    /// The agent thread took `work` (call once per item `wait` gave).
    pub fn took(&self, work: &Work<X>) {
        if !matches!(work, Work::Wake) {
            self.counts.taken.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Hands work that answers with one message (made by `make` from its deadline and reply
/// channel) to the agent's Ruby thread and waits up to `wait_ms` for the answer, which
/// `finish` turns into the message (on the asking thread, without the VM).
pub fn ask<X, T>(
    queue: Option<&WorkQueue<X>>,
    wait_ms: u32,
    make: impl FnOnce(Instant, SyncSender<T>) -> Work<X>,
    finish: impl FnOnce(T) -> AgentMessage,
) -> AgentMessage {
    let Some(queue) = queue else {
        return AgentMessage::Busy(NO_AGENT_THREAD.into());
    };
    let wait = Duration::from_millis(u64::from(wait_ms.clamp(1, 60_000)));
    let (reply, answer) = mpsc::sync_channel(1);
    let Some(ticket) = queue.submit(make(Instant::now() + wait, reply)) else {
        return AgentMessage::Busy(QUEUE_FULL.into());
    };
    match ticket.wait(&answer, wait) {
        Ok(answer) => finish(answer),
        Err(RecvTimeoutError::Timeout) => AgentMessage::Busy(format!(
            "the Ruby VM did not give the agent a turn within {} ms (native code, such as a C \
             extension, may be holding the GVL)",
            wait.as_millis()
        )),
        Err(RecvTimeoutError::Disconnected) => {
            AgentMessage::Busy("the agent's Ruby thread ended before answering".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static NUDGES: AtomicUsize = AtomicUsize::new(0);

    fn count_nudge() {
        NUDGES.fetch_add(1, Ordering::Relaxed);
    }

    fn memory(queue: Option<&WorkQueue<()>>, wait_ms: u32) -> AgentMessage {
        ask(
            queue,
            wait_ms,
            |deadline, reply| Work::Memory { deadline, reply },
            |m| m,
        )
    }

    #[test]
    fn an_answer_comes_back_through_the_queue() {
        let (queue, inbox) = work_queue::<()>(8, || {});
        let worker = std::thread::spawn(move || loop {
            let work = inbox.wait();
            inbox.took(&work);
            match work {
                Work::Memory { reply, .. } => {
                    let _ = reply.send(AgentMessage::Error("read".into()));
                }
                Work::Stop => break,
                _ => {}
            }
        });
        assert_eq!(
            memory(Some(&queue), 1_000),
            AgentMessage::Error("read".into())
        );
        queue.stop();
        worker.join().unwrap();
    }

    #[test]
    fn without_a_thread_or_with_a_full_queue_the_answer_is_busy() {
        assert_eq!(memory(None, 10), AgentMessage::Busy(NO_AGENT_THREAD.into()));
        let (queue, _inbox) = work_queue::<()>(1, || {});
        assert!(queue.offer(Work::Retry { id: 1 }));
        assert_eq!(
            memory(Some(&queue), 10),
            AgentMessage::Busy(QUEUE_FULL.into())
        );
    }

    #[test]
    fn a_waiter_nudges_until_its_work_is_taken_then_times_out() {
        let (queue, inbox) = work_queue::<()>(8, count_nudge);
        let before = NUDGES.load(Ordering::Relaxed);
        let answer = memory(Some(&queue), 20);
        assert!(
            matches!(&answer, AgentMessage::Busy(m) if m.contains("within 20 ms")),
            "{answer:?}"
        );
        assert!(NUDGES.load(Ordering::Relaxed) > before);
        // Once taken (and not answered), the waiter stops nudging and only waits.
        let (reply, rx) = mpsc::sync_channel::<()>(1);
        let ticket = queue.submit(Work::Detach { id: 1, reply }).unwrap();
        let first = inbox.wait();
        inbox.took(&first);
        let second = inbox.wait();
        inbox.took(&second);
        let nudged = NUDGES.load(Ordering::Relaxed);
        assert!(ticket.wait(&rx, Duration::from_millis(5)).is_err());
        assert_eq!(NUDGES.load(Ordering::Relaxed), nudged);
    }

    #[test]
    fn a_refused_item_keeps_later_tickets_in_step() {
        let (queue, inbox) = work_queue::<()>(1, || {});
        assert!(queue.offer(Work::Retry { id: 1 }));
        assert!(queue.submit(Work::Retry { id: 2 }).is_none());
        let work = inbox.wait();
        inbox.took(&work);
        // Item 3 is the second one the thread takes, and counts as taken then.
        let ticket = queue.submit(Work::Retry { id: 3 }).unwrap();
        assert_eq!(ticket.n, 3);
        let work = inbox.wait();
        assert!(matches!(work, Work::Retry { id: 3 }));
        inbox.took(&work);
        assert_eq!(queue.counts.taken.load(Ordering::Acquire), 3);
        // A wake-up is not counted.
        queue.wake();
        let wake = inbox.wait();
        inbox.took(&wake);
        assert_eq!(queue.counts.taken.load(Ordering::Acquire), 3);
    }

    #[test]
    fn the_thread_ending_before_answering_is_said() {
        let (queue, inbox) = work_queue::<()>(8, || {});
        let worker = std::thread::spawn(move || {
            let work = inbox.wait();
            inbox.took(&work);
            drop(work);
        });
        let answer = memory(Some(&queue), 5_000);
        worker.join().unwrap();
        assert_eq!(
            answer,
            AgentMessage::Busy("the agent's Ruby thread ended before answering".into())
        );
    }
}
