//! `rbscope heap dump | count | track -p PID` and `Rbscope.heap_dump` / `Rbscope.count_objects`.
//!
//! A dump is written by a forked child: the app's threads stop only for the `fork` itself (and
//! a GC when asked). The agent's Ruby thread, holding the GVL, opens the output file first (so
//! a bad path fails at once, in the app's view of the filesystem and as its user), forks, and
//! goes back to waiting for work. The child is a copy of the heap at that instant: it raises
//! its own `oom_score_adj` (under memory pressure the kernel kills it, not the app), blocks
//! signals, walks the heap (`heap_walk.rs`) into a temporary file next to the target, links it
//! to the final name only when complete, reports on a pipe and leaves with `_exit`: no at_exit
//! handler, finalizer or IO buffer of the app runs in it. The client's connection thread reads
//! the pipe and reaps the child. The steps that need no VM (files, pipe, the child's setup,
//! report and reaping, the order of the steps, the answers) are
//! `rbscope_agent_core::agent::heap_job`'s.

use crate::ffi::{self, Gvl};
use crate::heap::heap_walk;
use rbscope_agent_core::agent::heap_job::{self, DumpTo, Forked};
pub use rbscope_agent_core::agent::heap_job::{Job, Outcome};
use rbscope_proto::{AgentMessage, HeapCensus, HeapDumpRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub use heap_job::finish;

/// Allocation tracing as this agent set it.
static TRACKING: AtomicBool = AtomicBool::new(false);

pub fn run(gvl: Gvl, job: Job) -> Outcome {
    match job {
        Job::Dump(req) => dump(gvl, &req),
        Job::Count(names) => Outcome::Done(count(gvl, &names)),
        Job::Track(on) => Outcome::Done(track(gvl, on)),
    }
}

fn dump(gvl: Gvl, req: &HeapDumpRequest) -> Outcome {
    // In the forked child the walk runs alone: a copy of the heap, GVL held.
    let walk = |to: DumpTo| match to {
        DumpTo::Stream(out) => heap_walk::dump(gvl, out),
        DumpTo::Overlapped(file) => heap_walk::dump_overlapped(gvl, file),
    };
    let gc = || ffi::heap::gc_start(gvl);
    heap_job::dump(req, gc, || ffi::heap::prepare(gvl), walk)
}

/// The heap census: objects by type, and instances of the classes under `names`.
fn count(gvl: Gvl, names: &[String]) -> AgentMessage {
    let started = Instant::now();
    let (objects, by_type, classes) = heap_walk::census(gvl, |c| {
        // GC is off: the class VALUEs counted are alive; the real class skips singleton and
        // include classes.
        let classes = c.classes(names, |klass| {
            let real = ffi::heap::class_real(gvl, klass);
            (real != 0).then(|| ffi::class_path(gvl, real))
        });
        (c.objects(), c.by_type(), classes)
    });
    if crate::ffi::guard::is_off(crate::ffi::guard::Feature::Heap) {
        return AgentMessage::Error(heap_job::COUNT_STOPPED.into());
    }
    AgentMessage::HeapCensus(HeapCensus {
        objects,
        by_type,
        classes,
        held_us: started.elapsed().as_micros() as u64,
    })
}

/// Allocation tracing on or off (`require "objspace"` first).
fn track(gvl: Gvl, on: bool) -> AgentMessage {
    let was_on = TRACKING.load(Ordering::Acquire);
    if !ffi::heap::require_objspace(gvl) {
        return AgentMessage::Error("cannot load objspace (Ruby's ext/objspace)".into());
    }
    let method = heap_job::tracking_method(on);
    let Some(objspace) = ffi::const_at(gvl, "ObjectSpace") else {
        return AgentMessage::Error("ObjectSpace is not defined".into());
    };
    if ffi::call(gvl, objspace, method, &[]).is_err() {
        return AgentMessage::Error(format!("ObjectSpace.{method} failed"));
    }
    TRACKING.store(on, Ordering::Release);
    AgentMessage::HeapTracking { on, was_on }
}

/// [`finish`] for a Ruby caller (`Rbscope.heap_dump`): the wait happens without the GVL, so
/// the app's other threads run while the child writes.
pub fn finish_without_gvl(child: Forked) -> AgentMessage {
    // SAFETY: called only by `Rbscope.heap_dump` (lib.rs), a method Ruby calls with the GVL.
    let gvl = unsafe { Gvl::assume() };
    ffi::heap::without_gvl(gvl, "waiting for the heap dump's child", || finish(child))
        .unwrap_or_else(|| AgentMessage::Error("the heap dump was not waited for".into()))
}
