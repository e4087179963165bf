//! Seeing every raise and keeping its app frames alive until it is reported.
//!
//! A raw `RUBY_EVENT_RAISE` hook fires for every raise, including the ones the VM makes itself
//! (`nil.foo`, `Integer("x")`), which a Ruby-level `Exception#initialize` hook would miss. At
//! raise we only *keep* things: for each app frame, what reads its locals later (the values
//! themselves, or a `Binding`), its `self` and its method. Walking and encoding the object
//! graph waits until the exception is reported, because most raises are rescued and never
//! reported.
//!
//! The kept frames wait in the pending-capture ring (ring.rs), in the one raise-record format
//! (`rbscope_vm::raise_record`), until reported or replaced. A re-raise of an exception
//! already in the ring keeps the first, deepest capture.
//!
//! Two ways to keep frames: the fast path (fast_capture.rs) copies the raw frames from the VM
//! stack; the portable path here opens the debug inspector, which makes a `Binding` for every
//! frame (the cost that grows with stack depth). The fast path is used when the running
//! Ruby's layout is known and verified at start.

pub(crate) mod backtrace;
pub(crate) mod fast_capture;
pub(crate) mod graph;
pub(crate) mod labels;
pub(crate) mod report;
pub(crate) mod restore_data;
pub(crate) mod ring;

use crate::counters::bump;
use crate::ffi::capture::{self as rb, Inspected, Inspector, IseqText, TraceArg, VALUE};
use crate::ffi::guard::{self, Feature};
use crate::ffi::{self, Gvl, NIL};
use crate::state::{self, Agent};
use rbscope_agent_core::capture::{is_app_path, locations_by_frame, FrameCap};
use rbscope_vm::captured;
use rbscope_vm::raise_record::{Encoder, InspectorFrame, Source, FRAME_WORDS, HEADER};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

static HOOK_ON: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while this thread is inside rbscope's own code, so raises there are not captured.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// The last exception class seen by the hook and whether it is skipped.
    static LAST_CLASS: Cell<(VALUE, bool)> = const { Cell::new((0, false)) };
}

/// Runs `f` with raise capture suppressed on this thread (restored even if `f` panics).
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUSY.with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BUSY.with(|b| b.replace(true)));
    f()
}

/// Sizes the pending-capture ring and installs the raise hook.
pub fn install(gvl: Gvl, ring_size: usize) {
    ring::init(gvl, ring_size);
    if !HOOK_ON.swap(true, Ordering::AcqRel) {
        rb::add_raise_hook(gvl, on_raise);
    }
}

/// Removes the raise hook (the ring stays, and empties as it is overwritten).
pub fn uninstall(gvl: Gvl) {
    if HOOK_ON.swap(false, Ordering::AcqRel) {
        rb::remove_raise_hook(gvl, on_raise);
    }
}

fn is_uninteresting(gvl: Gvl, exc: VALUE) -> bool {
    // Hot loops raise the same class again and again: remember the last answer.
    let class = rb::class_of(gvl, exc);
    if let Some(answer) = LAST_CLASS.with(|c| {
        let (k, a) = c.get();
        (k == class).then_some(a)
    }) {
        return answer;
    }
    let answer = rb::is_exit_or_fatal(gvl, exc);
    LAST_CLASS.with(|c| c.set((class, answer)));
    answer
}

unsafe extern "C" fn on_raise(_data: VALUE, arg: *mut TraceArg) {
    if BUSY.with(|b| b.get()) {
        return;
    }
    // SAFETY: event hooks run on a Ruby thread holding the GVL.
    let gvl = unsafe { Gvl::assume() };
    guard::run(Feature::Capture, "the raise hook", (), || {
        let Some(agent) = state::current() else {
            return;
        };
        bump(&agent.counters.raises_seen);
        // SAFETY: `arg` is the trace arg of a RAISE event, as registered.
        let exc = unsafe { rb::raised_exception(arg) };
        if is_uninteresting(gvl, exc) || ring::contains(gvl, exc) {
            return;
        }
        quietly(|| capture(gvl, &agent, exc));
        if agent.config.report_all_raises {
            quietly(|| report::report(gvl, &agent, exc, NIL, "raise"));
        }
    })
}

fn capture(gvl: Gvl, agent: &Agent, exc: VALUE) {
    if let Some(layout) = fast_capture::layout() {
        let copied = ring::fill_next(gvl, |slot| {
            slot.exc = exc;
            fast_capture::capture(gvl, layout, &mut slot.words)
        });
        if copied {
            bump(&agent.counters.raises_captured);
            return;
        }
    }
    // Every VALUE the record gets is held by the open inspector (its frame list and
    // locations) or by a running frame, and nothing allocates between the inspector closing
    // and the ring taking the record.
    let mut words = Vec::new();
    let opened = rb::with_inspector(gvl, &mut |gvl, dc| {
        inspect_frames(gvl, dc, agent, &mut words)
    });
    if opened.is_err() {
        bump(&agent.counters.capture_errors);
        return;
    }
    ring::fill_next(gvl, |slot| {
        slot.exc = exc;
        slot.words.extend_from_slice(&words);
        true
    });
    bump(&agent.counters.raises_captured);
}

/// Whether a frame's code is a rescue or ensure clause, from its iseq's own label (`rescue in
/// m` in every release; Ruby 3.4's locations name the method instead).
fn is_clause_iseq(gvl: Gvl, iseq: VALUE) -> bool {
    // SAFETY: a live iseq from the open inspector's frame list.
    let label = unsafe { rb::iseq_text(gvl, iseq, IseqText::Label) };
    label.starts_with("rescue in ") || label.starts_with("ensure in ")
}

/// The method entry a frame runs, read from its control frame when the VM layout is known
/// (nil otherwise, or at top level and in class bodies).
fn frame_method_entry(gvl: Gvl, f: &Inspected) -> VALUE {
    let Ok(layout) = fast_capture::verified_layout(gvl) else {
        return NIL;
    };
    if f.cfp == 0 {
        return NIL;
    }
    // SAFETY: GVL held; `cfp` is a control frame of this thread's stack, running now (the
    // inspector is open inside the raise hook), and its environment is live.
    let mem = unsafe { fast_capture::vm() };
    let me =
        captured::method_entry_of_cfp(&mem, layout, f.cfp, f.iseq as usize, f.self_value as usize);
    if me != 0 {
        me as VALUE
    } else {
        NIL
    }
}

/// Inside the debug inspector: keep the app frames, as a raise record, in `out`.
///
/// A rescue or ensure clause's frame stands for the frame it runs in, which is left out (as
/// Ruby 3.4+ does, and the fast path on every Ruby: `rbscope_backtrace::hidden_by_clauses`).
fn inspect_frames(gvl: Gvl, dc: &Inspector, agent: &Agent, out: &mut Vec<usize>) {
    let cfg = &agent.config;
    let locs = ffi::array_items(gvl, dc.locations());
    let n = locs.len();
    let from_api = || -> Vec<Inspected> { (0..n).map(|i| dc.frame(i)).collect() };
    let mut frames = dc.own_frames(gvl, n).unwrap_or_else(from_api);
    let hidden = rbscope_backtrace::hidden_by_clauses(
        frames
            .iter()
            .map(|f| (f.binding != NIL).then(|| f.iseq != 0 && is_clause_iseq(gvl, f.iseq))),
    );
    // Which location each frame has; anything unexpected: the frames as the API gives them.
    let (hidden, by_frame) = match locations_by_frame(&hidden, n) {
        Some(by_frame) => (hidden, by_frame),
        None => {
            frames = from_api();
            (vec![false; n], (0..n).map(Some).collect())
        }
    };
    out.reserve(HEADER + FRAME_WORDS * frames.len());
    let Some(mut record) = Encoder::new(out, Source::Inspector) else {
        return;
    };
    let mut cap = FrameCap::new(cfg.max_frames);
    // Position among the Ruby frames (C frames have no binding), as the fast path counts.
    let mut ruby_frames = 0;
    for ((f, hidden), at) in frames.iter().zip(hidden).zip(by_frame) {
        if f.binding == NIL {
            continue;
        }
        let depth = ruby_frames;
        ruby_frames += 1;
        let Some(&loc) = at.filter(|_| !hidden).and_then(|at| locs.get(at)) else {
            continue;
        };
        // Whose code it is decides: the code's own path when its iseq is known (Ruby 3.4
        // under YJIT and 4.0 locate some methods of their `<internal:...>` files at their
        // caller's line, as they do a C function), else the location's.
        let path = if f.iseq != 0 {
            // SAFETY: a live iseq from the inspector's list.
            unsafe { rb::iseq_value(gvl, f.iseq, IseqText::Path) }
        } else {
            ffi::call(gvl, loc, "path", &[]).unwrap_or(NIL)
        };
        let app = rb::with_string_bytes(gvl, path, |bytes| is_app_path(cfg, bytes));
        if app != Some(true) {
            continue;
        }
        if !cap.admit() {
            continue;
        }
        let frame = InspectorFrame {
            depth,
            location: loc as usize,
            binding: f.binding as usize,
            self_value: f.self_value as usize,
            klass: f.klass as usize,
            iseq: if f.iseq != 0 { f.iseq } else { NIL } as usize,
            method_entry: frame_method_entry(gvl, f) as usize,
        };
        if record.inspector_frame(&frame).is_none() {
            break;
        }
    }
    record.set_skipped(cap.skipped);
}
