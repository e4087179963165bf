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
use crate::ffi::live::{self as rb, VALUE};
use crate::ffi::{self, Gvl, NIL};
use crate::live;
use rbscope_agent_core::agent::handler::late;
use rbscope_agent_core::control::{self, Inbox};
use std::ffi::c_void;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

pub use rbscope_agent_core::agent::handler::{HeapWork, Work, WorkQueue};

/// Requests waiting at most; more are refused as busy.
const QUEUE: usize = 8;

/// What the thread owns: its end of the queue, and the slot the waiting call fills.
struct Slot {
    inbox: Inbox<HeapWork>,
    /// Filled by `wait_for_work` outside the GVL, taken by the loop with the GVL.
    work: Option<Work>,
}

/// The thread's data: the slot, used by the thread only, and a queue handle for the unblocking
/// function, which may run on another thread (separate fields, so never borrowed together).
struct Parts {
    slot: Slot,
    waker: WorkQueue,
}

/// Starts the thread. Returns the queue that feeds it.
pub fn start(gvl: Gvl) -> Result<WorkQueue, String> {
    preregister_nudge(gvl);
    let (queue, inbox) = control::work_queue(QUEUE, nudge);
    let parts = Box::new(Parts {
        slot: Slot { inbox, work: None },
        waker: queue.clone(),
    });
    let data = Box::into_raw(parts) as *mut c_void;
    // SAFETY: `agent_main` takes ownership of `data` (a leaked Box<Parts>) for the life of the
    // thread it runs on; on `Err` no thread was made and `data` is freed below.
    let Ok(thread) = (unsafe { rb::thread_create(gvl, agent_main, data) }) else {
        // SAFETY: the thread was not created, so nothing else owns `data`.
        drop(unsafe { Box::from_raw(data as *mut Parts) });
        return Err("cannot create the agent's Ruby thread".into());
    };
    let name = ffi::str_new(gvl, "rbscope-agent");
    let _ = ffi::core_call(gvl, "Thread", "name=", thread, &[name]);
    // Once it has a turn, finish the (short) work before yielding: a higher priority only
    // lengthens its time slice, so a request is not cut in two by the app's threads.
    let _ = ffi::core_call(gvl, "Thread", "priority=", thread, &[rb::long(gvl, 3)]);
    // Its end must not be reported as an error, nor end the program.
    let _ = ffi::core_call(gvl, "Thread", "report_on_exception=", thread, &[ffi::FALSE]);
    Ok(queue)
}

/// The thread itself. Only VALUEs and raw pointers live in this frame while Ruby is called, so
/// an interrupt that unwinds (it is caught by `protect` first) skips no destructor.
unsafe extern "C" fn agent_main(data: *mut c_void) -> VALUE {
    guard::run(Feature::Live, "the agent thread", NIL, || {
        // SAFETY: rb_thread_create calls this on the new Ruby thread, holding the GVL, with
        // the `data` that `start` leaked for it: `agent_loop`'s contract.
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
    let (slot, waker) = unsafe {
        (
            std::ptr::addr_of_mut!((*parts).slot),
            std::ptr::addr_of_mut!((*parts).waker) as *mut c_void,
        )
    };
    loop {
        // SAFETY: `wait_for_work` touches no Ruby and only the slot, which this thread owns;
        // `wake` may run on another thread and only uses the queue handle, a separate field;
        // both live as long as `parts`, past this call.
        let waited =
            unsafe { rb::call_without_gvl(gvl, wait_for_work, slot as *mut c_void, wake, waker) };
        let work = {
            // SAFETY: the slot is this thread's; the waiting call has returned, so nothing
            // else borrows it while this borrow lives.
            let slot = unsafe { &mut *slot };
            let work = slot.work.take();
            if let Some(w) = &work {
                slot.inbox.took(w);
            }
            work
        };
        if waited.is_err() {
            // Killed (program exit, Thread#kill) or raised into: end quietly.
            break;
        }
        if work.as_ref().is_some_and(|w| late(w, Instant::now())) {
            continue;
        }
        match work {
            Some(Work::Stacks { asked, reply, .. }) => {
                answer(Feature::Backtrace, "reading stacks", reply, || {
                    live::live_stacks::read(gvl, asked)
                })
            }
            Some(Work::Snapshot {
                request,
                asked,
                reply,
                ..
            }) => answer(Feature::Capture, "taking live snapshots", reply, || {
                live::live_stacks::snapshot(gvl, request, asked)
            }),
            Some(Work::Attach {
                session,
                plan,
                reply,
                ..
            }) => answer(Feature::Trace, "attaching a trace", reply, || {
                live::sessions::attach(gvl, session, plan)
            }),
            Some(Work::Retry { id }) => {
                guard::run(Feature::Trace, "hooking a selector", (), || {
                    live::sessions::retry(gvl, id)
                })
            }
            Some(Work::Detach { id, reply }) => {
                guard::run(Feature::Trace, "detaching a trace", (), || {
                    live::sessions::detach(gvl, id)
                });
                let _ = reply.send(());
            }
            Some(Work::Eval {
                token,
                code,
                binding,
            }) => guard::run(Feature::Live, "starting an eval", (), || {
                live::live_eval::start(gvl, token, &code, binding)
            }),
            Some(Work::Memory { reply, .. }) => {
                answer(Feature::Live, "reading memory figures", reply, || {
                    live::live_memory::read(gvl)
                })
            }
            Some(Work::CancelEval { token }) => {
                guard::run(Feature::Live, "cancelling an eval", (), || {
                    live::live_eval::cancel(gvl, token)
                })
            }
            Some(Work::Heap(HeapWork { job, reply, .. })) => {
                answer(Feature::Heap, "a heap request", reply, || {
                    crate::heap::live_heap::run(gvl, job)
                })
            }
            Some(Work::Break {
                id, request, reply, ..
            }) => answer(Feature::Live, "setting a breakpoint", reply, || {
                live::breakpoints::set(gvl, id, &request)
            }),
            Some(Work::BreakRemove { id, reply }) => {
                guard::run(Feature::Live, "removing a breakpoint", (), || {
                    live::breakpoints::remove(gvl, id)
                });
                let _ = reply.send(());
            }
            Some(Work::Stop) | None => break,
            Some(Work::Wake) => {}
        }
    }
    // SAFETY: `data` is the Box leaked by `start`, owned by this thread, which ends here.
    drop(unsafe { Box::from_raw(parts) });
    NIL
}

/// Runs `f` guarded as `what` and sends its answer on `reply` (a client that gave up is no
/// error).
fn answer<T>(feature: Feature, what: &str, reply: SyncSender<T>, f: impl FnOnce() -> T) {
    guard::run(feature, what, (), || {
        let _ = reply.send(f());
    })
}

/// Waits, without the GVL, for the next piece of work (or the end of the queue).
unsafe extern "C" fn wait_for_work(data: *mut c_void) -> *mut c_void {
    guard::run(
        Feature::Live,
        "waiting for work",
        std::ptr::null_mut(),
        || {
            // SAFETY: `data` is this thread's live Slot (see agent_loop), used by no one else
            // while this runs.
            let slot = unsafe { &mut *(data as *mut Slot) };
            slot.work = Some(slot.inbox.wait());
            std::ptr::null_mut()
        },
    )
}

/// The VM's unblocking function: makes `wait_for_work` return so the interrupt is seen.
unsafe extern "C" fn wake(data: *mut c_void) {
    guard::run(Feature::Live, "waking the agent thread", (), || {
        // SAFETY: `data` is the thread's waker, a queue handle that lives as long as the
        // thread and is usable from any thread.
        let waker = unsafe { &*(data as *const WorkQueue) };
        waker.wake();
    })
}

/// The postponed job: yield the GVL (to the agent thread, which is waiting for it).
#[cfg(ruby_gte_3_3)]
unsafe extern "C" fn yield_gvl(_data: *mut c_void) {
    guard::run(Feature::Live, "the GVL nudge", (), || {
        // SAFETY: postponed jobs run on a Ruby thread holding the GVL, at a safe point.
        rb::thread_schedule(unsafe { Gvl::assume() });
    })
}

/// Ruby 3.1 and 3.2: no nudge (see the module docs); the time slice decides.
#[cfg(not(ruby_gte_3_3))]
fn nudge() {}

#[cfg(ruby_gte_3_3)]
use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(ruby_gte_3_3)]
static NUDGE_HANDLE: AtomicU32 = AtomicU32::new(u32::MAX);

/// Ruby 3.3+: the job is registered once (with the GVL, in `start`) and triggered here.
#[cfg(ruby_gte_3_3)]
fn nudge() {
    let h = NUDGE_HANDLE.load(Ordering::Acquire);
    if h != u32::MAX {
        // SAFETY: `h` was given by `postponed_job_preregister` (stored only by
        // `preregister_nudge`) and is not the invalid handle.
        unsafe { rb::postponed_job_trigger(h) };
    }
}

#[cfg(ruby_gte_3_3)]
fn preregister_nudge(gvl: Gvl) {
    NUDGE_HANDLE.store(
        rb::postponed_job_preregister(gvl, yield_gvl),
        Ordering::Release,
    );
}

#[cfg(not(ruby_gte_3_3))]
fn preregister_nudge(_gvl: Gvl) {}
