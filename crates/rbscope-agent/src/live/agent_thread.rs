//! The agent's Ruby thread: where work asked for over the control socket runs Ruby-side.
//!
//! The control socket is served by a plain Rust thread, which must never call into Ruby. Work
//! that needs the VM (reading every thread's stack with the labels Ruby knows) is handed over
//! a bounded queue to this thread, a real Ruby thread named `rbscope-agent`. It waits for work
//! *without* the GVL (`rb_thread_call_without_gvl`), so it costs nothing while idle and never
//! wakes the app's sleeping threads; when work arrives it takes the GVL like any other thread
//! (within the VM's 100 ms time slice when the app is busy), does the work, and waits again.
//! A C extension that holds the GVL for long delays it: the control thread answers `Busy`
//! after the client's wait, and work that is past its deadline is dropped, not done late.
//!
//! Getting a turn: a thread waiting for the GVL normally gets it when the running thread's
//! time slice ends (100 ms). On Ruby 3.3 and later, whoever waits for an answer also *nudges*
//! the VM every couple of milliseconds until the agent thread has taken the work: a
//! preregistered postponed job (the VM runs it on the running thread at its next safe point,
//! and triggering it is safe from any thread) that only yields the GVL, as `Thread.pass`
//! would; it never runs on a sleeping thread and wakes none. Ruby 3.1 and 3.2 have no such
//! job that a non-Ruby thread may trigger safely (registering one writes into the running
//! thread's context, which may be exiting), so there the agent waits for the time slice.
//!
//! It ends when the VM kills it (exit, or `Thread#kill`: the unblocking function wakes it),
//! or on `Rbscope.stop`. A forked child starts its own (threads do not survive `fork`).

use crate::ffi::guard::{self, Feature};
use crate::ffi::{self, Gvl, NIL};
use rb_sys::VALUE;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// Work for the agent thread.
pub enum Work {
    /// Read every thread's stack and send the answer on `reply`, unless `deadline` passed.
    Stacks {
        asked: Instant,
        deadline: Instant,
        reply: SyncSender<rbscope_proto::AgentMessage>,
    },
    /// Install a trace session's hooks; the answer goes to `reply` (unless `deadline` passed,
    /// then nothing is installed).
    Attach {
        session: std::sync::Arc<crate::live::trace_session::Session>,
        plan: crate::live::Plan,
        deadline: Instant,
        reply: SyncSender<Result<rbscope_proto::TraceStarted, String>>,
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
    /// Read the memory report and send it on `reply`, unless `deadline` passed.
    Memory {
        deadline: Instant,
        reply: SyncSender<rbscope_proto::AgentMessage>,
    },
    /// A heap job (dump, census, allocation tracing); the answer goes to `reply` unless
    /// `deadline` passed (then nothing is done).
    Heap {
        job: crate::heap::live_heap::Job,
        deadline: Instant,
        reply: SyncSender<crate::heap::live_heap::Outcome>,
    },
    /// Wake up (from the VM's unblocking function) and look for an interrupt.
    Wake,
    /// End the thread.
    Stop,
}

/// Requests waiting at most; more are refused as busy.
const QUEUE: usize = 8;

/// Where the control thread hands work over.
#[derive(Clone)]
pub struct WorkQueue(SyncSender<Work>);

/// Work items queued so far, and taken by the agent thread so far (the queue is FIFO, so the
/// n-th item queued has been taken once `TAKEN` reaches n).
static QUEUED: AtomicU64 = AtomicU64::new(0);
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// A queued work item, for waiting on its answer.
pub struct Ticket(u64);

impl Ticket {
    /// Waits up to `wait` for the answer on `rx`, nudging the VM until the agent thread has
    /// taken the work.
    pub fn wait<T>(&self, rx: &Receiver<T>, wait: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + wait;
        loop {
            if TAKEN.load(Ordering::Acquire) >= self.0 {
                return rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            }
            nudge();
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

impl WorkQueue {
    /// Queues `work`; false when the queue is full or the thread has ended.
    pub fn offer(&self, work: Work) -> bool {
        self.submit(work).is_some()
    }

    /// Queues `work` and returns its ticket; None when the queue is full or the thread ended.
    pub fn submit(&self, work: Work) -> Option<Ticket> {
        // Counted before sending, so the agent thread never takes an item not yet counted.
        let n = QUEUED.fetch_add(1, Ordering::AcqRel) + 1;
        match self.0.try_send(work) {
            Ok(()) => Some(Ticket(n)),
            Err(_) => {
                // Not queued: the agent thread will never take it; count it as taken so later
                // tickets stay in step.
                TAKEN.fetch_add(1, Ordering::AcqRel);
                None
            }
        }
    }

    pub fn stop(&self) {
        let _ = self.0.try_send(Work::Stop);
    }
}

/// What the thread owns: its end of the queue, and the slot the waiting call fills.
struct Inbox {
    rx: Receiver<Work>,
    /// Filled by `wait_for_work` outside the GVL, taken by the loop with the GVL.
    slot: Option<Work>,
}

/// The thread's data: the inbox, used by the thread only, and a sender for the unblocking
/// function, which may run on another thread (separate fields, so never borrowed together).
struct Parts {
    inbox: Inbox,
    waker: SyncSender<Work>,
}

/// Starts the thread. Returns the queue that feeds it.
pub fn start(gvl: Gvl) -> Result<WorkQueue, String> {
    preregister_nudge();
    let (tx, rx) = mpsc::sync_channel::<Work>(QUEUE);
    let parts = Box::new(Parts {
        inbox: Inbox { rx, slot: None },
        waker: tx.clone(),
    });
    let data = Box::into_raw(parts) as *mut c_void;
    // SAFETY: GVL held; `agent_main` has the signature rb_thread_create wants and takes
    // ownership of `data` (a leaked Box<Parts>) for the life of the thread.
    let thread = ffi::protect(gvl, || unsafe {
        rb_sys::rb_thread_create(Some(agent_main), data)
    });
    let Ok(thread) = thread else {
        // SAFETY: the thread was not created, so nothing else owns `data`.
        drop(unsafe { Box::from_raw(data as *mut Parts) });
        return Err("cannot create the agent's Ruby thread".into());
    };
    let name = ffi::str_new(gvl, "rbscope-agent");
    let _ = ffi::core_call(gvl, "Thread", "name=", thread, &[name]);
    // Once it has a turn, finish the (short) work before yielding: a higher priority only
    // lengthens its time slice, so a request is not cut in two by the app's threads.
    let _ = ffi::core_call(gvl, "Thread", "priority=", thread, &[rb_sys::LONG2NUM(3)]);
    // Its end must not be reported as an error, nor end the program.
    let _ = ffi::core_call(gvl, "Thread", "report_on_exception=", thread, &[ffi::FALSE]);
    Ok(WorkQueue(tx))
}

/// The thread itself. Only VALUEs and raw pointers live in this frame while Ruby is called, so
/// an interrupt that unwinds (it is caught by `protect` first) skips no destructor.
unsafe extern "C" fn agent_main(data: *mut c_void) -> VALUE {
    guard::run(Feature::Live, "the agent thread", NIL, || {
        // SAFETY: as agent_main's caller guarantees.
        unsafe { agent_loop(data) }
    })
}

/// # Safety
/// Runs on the new Ruby thread of `start`, holding the GVL; `data` is the Box `start` leaked.
unsafe fn agent_loop(data: *mut c_void) -> VALUE {
    // SAFETY: rb_thread_create runs this on a new Ruby thread holding the GVL.
    let gvl = unsafe { Gvl::assume() };
    let parts = data as *mut Parts;
    // SAFETY: `parts` is live for the whole thread; field pointers, never whole borrows.
    let (inbox, waker) = unsafe {
        (
            std::ptr::addr_of_mut!((*parts).inbox) as *mut c_void,
            std::ptr::addr_of_mut!((*parts).waker) as *mut c_void,
        )
    };
    loop {
        let waited = ffi::protect(gvl, || {
            // SAFETY: GVL held on entry; `wait_for_work` runs without it and only touches the
            // inbox, which this thread owns; `wake` may run on another thread and only uses
            // the sender, a separate field.
            unsafe {
                rb_sys::rb_thread_call_without_gvl(Some(wait_for_work), inbox, Some(wake), waker);
            }
            NIL
        });
        // SAFETY: the inbox is this thread's; the waiting call has returned.
        let work = unsafe { (*(inbox as *mut Inbox)).slot.take() };
        if !matches!(work, Some(Work::Wake) | None) {
            TAKEN.fetch_add(1, Ordering::AcqRel);
        }
        if waited.is_err() {
            // Killed (program exit, Thread#kill) or raised into: end quietly.
            break;
        }
        match work {
            Some(Work::Stacks {
                asked,
                deadline,
                reply,
            }) => {
                if Instant::now() <= deadline {
                    guard::run(Feature::Backtrace, "reading stacks", (), || {
                        let _ = reply.send(crate::live::live_stacks::read(gvl, asked));
                    });
                }
            }
            Some(Work::Attach {
                session,
                plan,
                deadline,
                reply,
            }) => {
                if Instant::now() <= deadline {
                    guard::run(Feature::Trace, "attaching a trace", (), || {
                        let _ = reply.send(crate::live::attach(gvl, session, plan));
                    });
                }
            }
            Some(Work::Retry { id }) => {
                guard::run(Feature::Trace, "hooking a selector", (), || {
                    crate::live::retry(gvl, id)
                })
            }
            Some(Work::Detach { id, reply }) => {
                guard::run(Feature::Trace, "detaching a trace", (), || {
                    crate::live::detach(gvl, id)
                });
                let _ = reply.send(());
            }
            Some(Work::Eval {
                token,
                code,
                binding,
            }) => guard::run(Feature::Live, "starting an eval", (), || {
                crate::live::live_eval::start(gvl, token, &code, binding)
            }),
            Some(Work::Memory { deadline, reply }) => {
                if Instant::now() <= deadline {
                    guard::run(Feature::Live, "reading memory figures", (), || {
                        let _ = reply.send(crate::live::live_memory::read(gvl));
                    });
                }
            }
            Some(Work::CancelEval { token }) => {
                guard::run(Feature::Live, "cancelling an eval", (), || {
                    crate::live::live_eval::cancel(gvl, token)
                })
            }
            Some(Work::Heap {
                job,
                deadline,
                reply,
            }) => {
                if Instant::now() <= deadline {
                    guard::run(Feature::Heap, "a heap request", (), || {
                        let _ = reply.send(crate::heap::live_heap::run(gvl, job));
                    });
                }
            }
            Some(Work::Stop) | None => break,
            Some(Work::Wake) => {}
        }
    }
    // SAFETY: `data` is the Box leaked by `start`, owned by this thread, which ends here.
    drop(unsafe { Box::from_raw(parts) });
    NIL
}

/// Waits, without the GVL, for the next piece of work (or the end of the queue).
unsafe extern "C" fn wait_for_work(data: *mut c_void) -> *mut c_void {
    guard::run(
        Feature::Live,
        "waiting for work",
        std::ptr::null_mut(),
        || {
            // SAFETY: `data` is this thread's live Inbox (see agent_main), used by no one else now.
            let inbox = unsafe { &mut *(data as *mut Inbox) };
            inbox.slot = Some(inbox.rx.recv().unwrap_or(Work::Stop));
            std::ptr::null_mut()
        },
    )
}

/// The VM's unblocking function: makes `wait_for_work` return so the interrupt is seen.
unsafe extern "C" fn wake(data: *mut c_void) {
    guard::run(Feature::Live, "waking the agent thread", (), || {
        // SAFETY: `data` is the thread's waker, a SyncSender (usable from any thread).
        let waker = unsafe { &*(data as *const SyncSender<Work>) };
        let _ = waker.try_send(Work::Wake);
    })
}

/// The postponed job: yield the GVL (to the agent thread, which is waiting for it).
#[cfg(ruby_gte_3_3)]
unsafe extern "C" fn yield_gvl(_data: *mut c_void) {
    guard::run(Feature::Live, "the GVL nudge", (), || {
        // SAFETY: postponed jobs run on a Ruby thread holding the GVL, at a safe point.
        unsafe { rb_sys::rb_thread_schedule() };
    })
}

/// Ruby 3.1 and 3.2: no nudge (see the module docs); the time slice decides.
#[cfg(not(ruby_gte_3_3))]
fn nudge() {}

#[cfg(ruby_gte_3_3)]
static NUDGE_HANDLE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Ruby 3.3+: the job is registered once (with the GVL, in `start`) and triggered here.
#[cfg(ruby_gte_3_3)]
fn nudge() {
    let h = NUDGE_HANDLE.load(Ordering::Acquire);
    if h != u32::MAX {
        // SAFETY: triggering a preregistered job is async-signal-safe.
        unsafe { rb_sys::rb_postponed_job_trigger(h as rb_sys::rb_postponed_job_handle_t) };
    }
}

#[cfg(ruby_gte_3_3)]
fn preregister_nudge() {
    // SAFETY: called from `start`, with the GVL held.
    let h =
        unsafe { rb_sys::rb_postponed_job_preregister(0, Some(yield_gvl), std::ptr::null_mut()) };
    NUDGE_HANDLE.store(h as u32, Ordering::Release);
}

#[cfg(not(ruby_gte_3_3))]
fn preregister_nudge() {}
