//! `rbscope stacks -p PID` answered from inside: every Ruby thread's stack, read on the agent's
//! Ruby thread (agent_thread.rs) while it holds the GVL, so every other thread is stopped at a
//! safe point and its frames cannot change under the read. Frames and labels are the ones
//! `Rbscope.backtrace(thread)` gives (backtrace.rs); thread facts come from Thread's own
//! methods (called as Thread's, so an app subclass cannot intercept them).

use crate::capture::backtrace;
use crate::ffi::live::{self as rb, VALUE};
use crate::ffi::{self, Gvl};
use magnus::Ruby;
use rbscope_agent_core::agent::host;
use rbscope_proto::{AgentMessage, Stacks, ThreadStack};
use std::time::Instant;

/// Reads every thread but the agent's own. `asked` is when the client's request arrived.
pub fn read(gvl: Gvl, asked: Instant) -> AgentMessage {
    let started = Instant::now();
    let Ok(ruby) = Ruby::get() else {
        return AgentMessage::Error("the agent thread cannot reach the Ruby VM".into());
    };
    let Some(thread_class) = ffi::const_at(gvl, "Thread") else {
        return AgentMessage::Error("Thread is not defined".into());
    };
    let Ok(list) = ffi::call(gvl, thread_class, "list", &[]) else {
        return AgentMessage::Error("Thread.list failed".into());
    };
    let (me, main) = (rb::thread_current(gvl), rb::thread_main(gvl));
    let mut threads = Vec::new();
    for th in ffi::array_items(gvl, list) {
        if th == me {
            continue;
        }
        let frames = match backtrace::proto_frames(&ruby, th) {
            Ok(f) => f,
            Err(e) => {
                return AgentMessage::Error(format!("cannot read a thread's frames: {e}"));
            }
        };
        threads.push(ThreadStack {
            name: ffi::core_call(gvl, "Thread", "name", th, &[])
                .ok()
                .and_then(|n| ffi::to_string(gvl, n)),
            tid: ffi::core_call(gvl, "Thread", "native_thread_id", th, &[])
                .ok()
                .and_then(ffi::fixnum)
                .map(|t| host::own_tid(t as i32, th == main)),
            status: status(gvl, th),
            main: th == main,
            frames,
        });
    }
    // The list array stays referenced (on this stack) until every thread was read.
    std::hint::black_box(list);
    AgentMessage::Stacks(Stacks {
        threads,
        held_us: started.elapsed().as_micros() as u64,
        waited_us: started.duration_since(asked).as_micros() as u64,
    })
}

/// `Thread#status` in the words `rbscope stacks` uses for threads read from outside.
fn status(gvl: Gvl, th: VALUE) -> String {
    let s = ffi::core_call(gvl, "Thread", "status", th, &[])
        .ok()
        .and_then(|v| ffi::to_string(gvl, v));
    host::thread_status(s.as_deref()).to_string()
}
