//! `rbscope stacks -p PID` and `rbscope snapshot -p PID` answered from inside: every Ruby
//! thread's stack, or a live snapshot of the threads asked for, read on the agent's Ruby thread
//! (agent_thread.rs) while it holds the GVL, so every other thread is stopped at a safe point
//! and its frames cannot change under the read. Frames and labels are the ones
//! `Rbscope.backtrace(thread)` gives (backtrace.rs); a snapshot is an exception snapshot's
//! (capture/report.rs); thread facts come from Thread's own methods (called as Thread's, so an
//! app subclass cannot intercept them).

use crate::capture::{self, backtrace, report};
use crate::ffi::live::{self as rb, VALUE};
use crate::ffi::{self, Gvl, NIL};
use crate::state;
use magnus::Ruby;
use rbscope_agent_core::agent::host::{self, ThreadFacts};
use rbscope_proto::ThreadStack;
use rbscope_proto::{AgentMessage, SnapshotRequest, SnapshotsTaken, Stacks, TakenSnapshot};
use rbscope_snapshot::Take;
use std::time::Instant;

/// How a snapshot taken for `rbscope snapshot -p` says who asked (not rate limited).
const ASKED_BY: &str = "rbscope snapshot -p";

/// Reads every thread but the agent's own. `asked` is when the client's request arrived.
pub fn read(gvl: Gvl, asked: Instant) -> AgentMessage {
    let started = Instant::now();
    let Ok(ruby) = Ruby::get() else {
        return AgentMessage::Error("the agent thread cannot reach the Ruby VM".into());
    };
    let (list, found) = match threads(gvl) {
        Ok(t) => t,
        Err(e) => return AgentMessage::Error(e),
    };
    let mut out = Vec::new();
    for (th, facts) in found {
        let frames = match backtrace::proto_frames(&ruby, th) {
            Ok(f) => f,
            Err(e) => {
                return AgentMessage::Error(format!("cannot read a thread's frames: {e}"));
            }
        };
        out.push(ThreadStack {
            name: facts.name,
            tid: facts.tid,
            status: status(gvl, th),
            main: facts.main,
            frames,
        });
    }
    // The list array stays referenced (on this stack) until every thread was read.
    std::hint::black_box(list);
    AgentMessage::Stacks(Stacks {
        threads: out,
        held_us: started.elapsed().as_micros() as u64,
        waited_us: started.duration_since(asked).as_micros() as u64,
    })
}

/// Stores a live snapshot of each thread `request` names (host::select_threads), one at a
/// time: between two, the agent lets the app's threads run. Several threads are one take
/// (host::take_of): each snapshot's context names every thread of it with its snapshot's id.
/// `held_us` is the time the VM was held for the snapshots themselves.
pub fn snapshot(gvl: Gvl, request: SnapshotRequest, asked: Instant) -> AgentMessage {
    let started = Instant::now();
    let Some(agent) = state::current() else {
        return AgentMessage::Error("rbscope is not started in this process".into());
    };
    let (list, found) = match threads(gvl) {
        Ok(t) => t,
        Err(e) => return AgentMessage::Error(e),
    };
    let facts: Vec<ThreadFacts> = found.iter().map(|(_, f)| f.clone()).collect();
    let chosen = match host::select_threads(&facts, &request.threads, request.all) {
        Ok(c) => c,
        Err(e) => return AgentMessage::Error(e),
    };
    // Several threads are one take: each snapshot's id is chosen now, so each names them all.
    let take = host::take_of(&facts, &chosen, || ulid::Ulid::new().to_string());
    let entries = take.as_ref().map(Take::context_entries).unwrap_or_default();
    let ids = take.map(|t| t.members.into_iter().map(|m| m.id));
    let mut ids = ids.into_iter().flatten();
    let context = ffi::const_at(gvl, "Rbscope::Context");
    let mut taken = Vec::new();
    let mut held = 0;
    for (n, (th, facts)) in chosen.into_iter().filter_map(|i| found.get(i)).enumerate() {
        let own = ids.next().map(|id| (id, entries.clone()));
        // The app runs between two threads' snapshots: it pauses for one at a time.
        if n > 0 {
            rb::thread_schedule(gvl);
        }
        let one = Instant::now();
        let alive = ffi::core_call(gvl, "Thread", "alive?", *th, &[]).map(ffi::truthy);
        if !matches!(alive, Ok(true)) {
            taken.push(TakenSnapshot {
                thread: facts.describe(),
                tid: facts.tid,
                id: None,
                note: Some("it ended before its turn".into()),
            });
            continue;
        }
        // The thread's context as Rbscope.snapshot makes it (its name, the gems).
        let ctx = context
            .and_then(|c| ffi::call(gvl, c, "for_thread", &[*th]).ok())
            .unwrap_or(NIL);
        let opts = report::Live {
            take: own,
            ..report::Live::default()
        };
        let id = capture::quietly(|| report::live(gvl, &agent, *th, ctx, ASKED_BY, opts));
        taken.push(TakenSnapshot {
            thread: facts.describe(),
            tid: facts.tid,
            note: id.is_none().then(|| {
                "not stored: its frames could not be read, or the store's queue is full (see \
                 `rbscope doctor -p PID`)"
                    .into()
            }),
            id,
        });
        held += one.elapsed().as_micros() as u64;
    }
    std::hint::black_box(list);
    AgentMessage::Snapshots(SnapshotsTaken {
        taken,
        held_us: held,
        waited_us: started.duration_since(asked).as_micros() as u64,
    })
}

/// Every Ruby thread but the agent's own, with its facts; and the list array holding them,
/// which the caller keeps referenced while it uses them.
fn threads(gvl: Gvl) -> Result<(VALUE, Vec<(VALUE, ThreadFacts)>), String> {
    let thread_class = ffi::const_at(gvl, "Thread").ok_or("Thread is not defined")?;
    let list = ffi::call(gvl, thread_class, "list", &[]).map_err(|_| "Thread.list failed")?;
    let (me, main) = (rb::thread_current(gvl), rb::thread_main(gvl));
    let found = ffi::array_items(gvl, list)
        .into_iter()
        .filter(|th| *th != me)
        .map(|th| {
            let facts = ThreadFacts {
                name: ffi::core_call(gvl, "Thread", "name", th, &[])
                    .ok()
                    .and_then(|n| ffi::to_string(gvl, n)),
                tid: ffi::core_call(gvl, "Thread", "native_thread_id", th, &[])
                    .ok()
                    .and_then(ffi::fixnum)
                    .map(|t| host::own_tid(t as i32, th == main)),
                main: th == main,
            };
            (th, facts)
        })
        .collect();
    Ok((list, found))
}

/// `Thread#status` in the words `rbscope stacks` uses for threads read from outside. A sleeping
/// thread's status is read from the VM as `--remote` reads it (rbscope-vm's `status_of`):
/// `Thread#status` says "sleep" both for a sleep with a deadline and for one without (a
/// `Queue#pop`, a `join`), which the VM tells apart ("sleeping forever").
fn status(gvl: Gvl, th: VALUE) -> String {
    let s = ffi::core_call(gvl, "Thread", "status", th, &[])
        .ok()
        .and_then(|v| ffi::to_string(gvl, v));
    let said = host::thread_status(s.as_deref());
    if said == "sleeping" {
        let layout = capture::fast_capture::verified_layout(gvl).ok();
        if let (Some(l), Some(t)) = (layout, ffi::capture::thread_struct(gvl, th)) {
            // SAFETY: GVL held, so `th` (a live Thread, from Thread.list kept by the caller)
            // cannot end and free its rb_thread_t while its status byte is read.
            let mem = unsafe { capture::fast_capture::vm() };
            if let Ok(st) = rbscope_vm::threads::status_of(&mem, l, t) {
                return st.describe(false).to_string();
            }
        }
    }
    said.to_string()
}
