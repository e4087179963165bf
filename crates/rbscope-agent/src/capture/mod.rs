//! Seeing every raise and keeping its app frames alive until it is reported.
//!
//! A raw `RUBY_EVENT_RAISE` hook fires for every raise, including the ones the VM makes itself
//! (`nil.foo`, `Integer("x")`), which a Ruby-level `Exception#initialize` hook would miss. At
//! raise we only *keep* things: for each app frame, its backtrace location, its `Binding`, its
//! `self` and the method's class. Walking and encoding the object graph waits until the
//! exception is reported, because most raises are rescued and never reported.
//!
//! The kept frames wait in the pending-capture ring (ring.rs) until reported or replaced. A
//! re-raise of an exception already in the ring keeps the first, deepest capture.
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
use crate::ffi::guard::{self, Feature};
use crate::ffi::{self, Gvl, NIL};
use crate::state::{self, Agent};
use rb_sys::{
    rb_ary_new_capa, rb_ary_push, rb_ary_store, rb_debug_inspector_backtrace_locations,
    rb_debug_inspector_frame_binding_get, rb_debug_inspector_frame_class_get,
    rb_debug_inspector_frame_self_get, rb_debug_inspector_open, rb_debug_inspector_t, rb_obj_hide,
    rb_obj_is_kind_of, rb_thread_current, rb_trace_arg_t, rb_tracearg_raised_exception,
    RARRAY_AREF, RARRAY_LEN, VALUE,
};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

/// Index of each slot in a debug-inspector capture record (a hidden Array).
pub mod record {
    // Slot 0 holds the exception, slot 1 the raising Thread.
    /// Number of app frames skipped over the frame cap (debug-inspector path).
    pub const SKIPPED: isize = 2;
    // Slot 3 is unused (nil).
    /// The frames start here.
    pub const FIRST_FRAME: isize = 4;
}

/// Index of each slot in a captured frame (a hidden Array).
pub mod frame {
    pub const DEPTH: isize = 0;
    pub const LOCATION: isize = 1;
    pub const BINDING: isize = 2;
    pub const SELF: isize = 3;
    pub const KLASS: isize = 4;
    /// The iseq's own label (`rescue in block in m`), nil when unknown.
    pub const ISEQ_LABEL: isize = 5;
    /// The method entry the frame runs, nil when unknown or none.
    pub const ME: isize = 6;
}

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

const RUBY_EVENT_RAISE: u32 = 0x0080;

/// Sizes the pending-capture ring and installs the raise hook.
pub fn install(gvl: Gvl, ring_size: usize) {
    crate::capture::ring::init(gvl, ring_size);
    if !HOOK_ON.swap(true, Ordering::AcqRel) {
        // SAFETY: GVL held; the hook has the raw-arg signature that the flag announces.
        unsafe { ffi::add_raw_event_hook(on_raise, RUBY_EVENT_RAISE, NIL, ffi::HOOK_FLAG_RAW_ARG) };
    }
}

/// Removes the raise hook (the ring stays, and empties as it is overwritten).
pub fn uninstall(_gvl: Gvl) {
    if HOOK_ON.swap(false, Ordering::AcqRel) {
        // SAFETY: GVL held; removing a hook we installed.
        unsafe { ffi::remove_raw_event_hook(on_raise) };
    }
}

fn is_uninteresting(exc: VALUE) -> bool {
    // Hot loops raise the same class again and again: remember the last answer.
    // SAFETY: rb_obj_class is defined for every VALUE.
    let class = unsafe { rb_sys::rb_obj_class(exc) };
    if let Some(answer) = LAST_CLASS.with(|c| {
        let (k, a) = c.get();
        (k == class).then_some(a)
    }) {
        return answer;
    }
    let answer = uninteresting_class(exc);
    LAST_CLASS.with(|c| c.set((class, answer)));
    answer
}

fn uninteresting_class(exc: VALUE) -> bool {
    // SAFETY: GVL held (called from the hook); the class globals are set at boot.
    unsafe {
        [
            rb_sys::rb_eSystemExit,
            rb_sys::rb_eSignal,
            rb_sys::rb_eSysStackError,
            rb_sys::rb_eNoMemError,
        ]
        .iter()
        .any(|k| ffi::truthy(rb_obj_is_kind_of(exc, *k)))
    }
}

unsafe extern "C" fn on_raise(_data: VALUE, arg: *mut rb_trace_arg_t) {
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
        let exc = unsafe { rb_tracearg_raised_exception(arg) };
        if is_uninteresting(exc) || crate::capture::ring::contains(gvl, exc) {
            return;
        }
        quietly(|| capture(gvl, &agent, exc));
        if agent.config.report_all_raises {
            quietly(|| crate::capture::report::report(gvl, &agent, exc, NIL, "raise"));
        }
    })
}

struct InspectCtx<'a> {
    agent: &'a Agent,
    record: VALUE,
}

fn capture(gvl: Gvl, agent: &Agent, exc: VALUE) {
    if let Some(layout) = crate::capture::fast_capture::layout() {
        let copied = crate::capture::ring::fill_next(gvl, |slot| {
            slot.exc = exc;
            slot.fast = true;
            crate::capture::fast_capture::capture(layout, &mut slot.words)
        });
        if copied {
            bump(&agent.counters.raises_captured);
            return;
        }
    }
    // SAFETY: GVL held. The record is hidden and reachable only from the ring.
    let record = unsafe {
        let rec = rb_ary_new_capa(8);
        rb_obj_hide(rec);
        rb_ary_push(rec, exc);
        rb_ary_push(rec, rb_thread_current());
        rb_ary_push(rec, rb_sys::LONG2FIX(0));
        rec
    };
    // SAFETY: GVL held; the record is a live hidden Array.
    unsafe { rb_ary_push(record, NIL) };
    let mut ctx = InspectCtx { agent, record };
    let ctx_ptr = &mut ctx as *mut InspectCtx as *mut c_void;
    let opened = ffi::protect(gvl, || {
        // SAFETY: GVL held; ctx outlives the call and the callback only reads it.
        unsafe { rb_debug_inspector_open(Some(inspect_frames), ctx_ptr) }
    });
    if opened.is_err() {
        bump(&agent.counters.capture_errors);
        return;
    }
    crate::capture::ring::fill_next(gvl, |slot| {
        slot.exc = exc;
        slot.fast = false;
        slot.words.push(record);
        true
    });
    bump(&agent.counters.raises_captured);
}

/// One frame as the debug inspector knows it (innermost first).
struct InspectedFrame {
    /// nil for a C function's frame.
    binding: VALUE,
    self_value: VALUE,
    klass: VALUE,
    /// The frame's iseq (0 when unknown), and its control frame (0 when unknown).
    iseq: VALUE,
    cfp: usize,
}

/// The inspector's own list of frames (`dc->contexts`: `[self, class, binding, iseq, cfp, ...]`
/// per frame, innermost first), read from the debug context, which has no API for it: Ruby 3.4
/// gives locations only for the frames its backtraces show (a rescue or ensure clause's frame
/// stands for the frame it runs in) while the per-frame getters count every frame, and refuse
/// the outermost ones. The list is the fourth word of the context in 3.1 to 3.4 and the third
/// in 4.0; both words are VALUEs in every one of those releases, and the list is used only when
/// its first frame is the one the API gives for index 0.
fn raw_contexts(gvl: Gvl, dc: *const rb_debug_inspector_t, n: i64) -> Option<Vec<InspectedFrame>> {
    if n == 0 {
        return None;
    }
    // SAFETY: index 0 < n, the inspector's frame count.
    let (binding0, self0) = unsafe {
        (
            rb_debug_inspector_frame_binding_get(dc, 0),
            rb_debug_inspector_frame_self_get(dc, 0),
        )
    };
    for word in [3usize, 2] {
        // SAFETY: `dc` points at the live rb_debug_inspector_struct, at least four words long
        // in 3.1 to 4.0 (ec, cfp, then two VALUEs); words 2 and 3 are VALUEs there.
        let list = unsafe { *(dc as *const VALUE).add(word) };
        if ffi::type_of(gvl, list) != rb_sys::ruby_value_type::RUBY_T_ARRAY {
            continue;
        }
        let entries = ffi::array_items(gvl, list);
        let frames: Vec<Option<InspectedFrame>> = entries
            .iter()
            .map(|e| {
                if ffi::type_of(gvl, *e) != rb_sys::ruby_value_type::RUBY_T_ARRAY {
                    return None;
                }
                let parts = ffi::array_items(gvl, *e);
                let iseq = *parts.get(3)?;
                Some(InspectedFrame {
                    self_value: *parts.first()?,
                    klass: *parts.get(1)?,
                    binding: *parts.get(2)?,
                    iseq: if iseq == NIL { 0 } else { iseq },
                    cfp: (*parts.get(4)? as usize) & !0x03,
                })
            })
            .collect();
        let Some(frames) = frames.into_iter().collect::<Option<Vec<_>>>() else {
            continue;
        };
        let first_agrees = frames
            .first()
            .is_some_and(|f| f.binding == binding0 && f.self_value == self0);
        if first_agrees && frames.len() >= n as usize {
            return Some(frames);
        }
    }
    None
}

/// Whether a frame's code is a rescue or ensure clause, from its iseq's own label (`rescue in
/// m` in every release; Ruby 3.4's locations name the method instead).
fn is_clause_iseq(gvl: Gvl, iseq: VALUE) -> bool {
    let label =
        crate::capture::fast_capture::iseq_string(gvl, iseq, crate::ffi::raw::rb_iseq_label);
    label.starts_with("rescue in ") || label.starts_with("ensure in ")
}

/// The method entry a frame runs, read from its control frame when the VM layout is known
/// (nil otherwise, or at top level and in class bodies).
fn frame_method_entry(gvl: Gvl, f: &InspectedFrame) -> VALUE {
    let Ok(layout) = crate::capture::fast_capture::verified_layout(gvl) else {
        return NIL;
    };
    if f.cfp == 0 {
        return NIL;
    }
    let mem = rbscope_vm::LocalMemory;
    let Ok(ep) = rbscope_vm::Memory::read_word(&mem, f.cfp + layout.cfp_ep) else {
        return NIL;
    };
    let raw = rbscope_vm::RawFrame {
        cfp: f.cfp,
        iseq: f.iseq as usize,
        pc: 0,
        self_value: f.self_value as usize,
        ep,
    };
    match rbscope_vm::frames::method_entry(&mem, &raw) {
        Ok(me) if me != 0 => me as VALUE,
        _ => NIL,
    }
}

/// Inside the debug inspector: keep the app frames. Only VALUEs live in this frame, so a raise
/// (caught by the `protect` around `rb_debug_inspector_open`) skips no destructor.
///
/// A rescue or ensure clause's frame stands for the frame it runs in, which is left out (as
/// Ruby 3.4+ does, and the fast path on every Ruby: `rbscope_backtrace::hidden_by_clauses`).
unsafe extern "C" fn inspect_frames(dc: *const rb_debug_inspector_t, data: *mut c_void) -> VALUE {
    guard::run(Feature::Capture, "reading frames at raise", NIL, || {
        // SAFETY: as the inspector guarantees to its callback (see `inspect_frames_body`).
        unsafe { inspect_frames_body(dc, data) }
    })
}

/// # Safety
/// Called by `rb_debug_inspector_open` with its live context `dc`, holding the GVL; `data`
/// is the InspectCtx `capture` passed.
unsafe fn inspect_frames_body(dc: *const rb_debug_inspector_t, data: *mut c_void) -> VALUE {
    // SAFETY: `data` is the InspectCtx passed by `capture`, alive for this call.
    let ctx = unsafe { &*(data as *const InspectCtx) };
    // SAFETY: inspector callbacks run with the GVL held.
    let gvl = unsafe { Gvl::assume() };
    let cfg = &ctx.agent.config;
    // SAFETY: `dc` is the live debug context; the locations array is a fresh Ruby Array.
    let locs = unsafe { rb_debug_inspector_backtrace_locations(dc) };
    // SAFETY: locs is an Array.
    let n = unsafe { RARRAY_LEN(locs) };
    let from_api = || -> Vec<InspectedFrame> {
        (0..n)
            .map(|i| {
                // SAFETY: index i is inside the inspector's frame list.
                unsafe {
                    InspectedFrame {
                        binding: rb_debug_inspector_frame_binding_get(dc, i),
                        self_value: rb_debug_inspector_frame_self_get(dc, i),
                        klass: rb_debug_inspector_frame_class_get(dc, i),
                        iseq: 0,
                        cfp: 0,
                    }
                }
            })
            .collect()
    };
    let mut frames = raw_contexts(gvl, dc, n as i64).unwrap_or_else(from_api);
    let mut hidden = rbscope_backtrace::hidden_by_clauses(
        frames
            .iter()
            .map(|f| (f.binding != NIL).then(|| f.iseq != 0 && is_clause_iseq(gvl, f.iseq))),
    );
    // Which location each frame has: one each (3.1 to 3.3, 4.0), or none for the frames
    // Ruby 3.4 leaves out. Anything else: the frames as the API gives them.
    let shown = hidden.iter().filter(|h| !**h).count();
    let by_frame: Vec<Option<usize>> = if frames.len() == n as usize {
        (0..frames.len()).map(Some).collect()
    } else if shown == n as usize {
        let mut next = 0;
        hidden
            .iter()
            .map(|h| {
                (!*h).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect()
    } else {
        frames = from_api();
        hidden = vec![false; frames.len()];
        (0..frames.len()).map(Some).collect()
    };
    let path_id = ffi::intern(gvl, "path");
    let mut kept = 0usize;
    let mut skipped = 0i64;
    // Position among the Ruby frames (C frames have no binding), as the fast path counts.
    let mut ruby_index = -1i64;
    for ((f, hidden), at) in frames.iter().zip(hidden).zip(by_frame) {
        if f.binding == NIL {
            continue;
        }
        ruby_index += 1;
        let Some(at) = at.filter(|_| !hidden) else {
            continue;
        };
        if at >= n as usize {
            continue;
        }
        // SAFETY: at < n.
        let loc = unsafe { RARRAY_AREF(locs, at as isize) };
        // Whose code it is decides: the code's own path when its iseq is known (Ruby 3.4
        // under YJIT and 4.0 locate some methods of their `<internal:...>` files at their
        // caller's line, as they do a C function), else the location's.
        let path = if f.iseq != 0 {
            // SAFETY: a live iseq from the inspector's list; returns its path String.
            unsafe { crate::ffi::raw::rb_iseq_path(f.iseq) }
        } else {
            // SAFETY: Location#path is a core method that returns the iseq's path or nil.
            unsafe { rb_sys::rb_funcallv(loc, path_id, 0, std::ptr::null()) }
        };
        if ffi::type_of(gvl, path) != rb_sys::ruby_value_type::RUBY_T_STRING {
            continue;
        }
        // SAFETY: path is a live String.
        let path_bytes = unsafe { ffi::str_bytes(path) };
        if !is_app_path(cfg, path_bytes) {
            continue;
        }
        if kept >= cfg.max_frames {
            skipped += 1;
            continue;
        }
        kept += 1;
        let iseq_label = if f.iseq != 0 {
            // A live iseq from the inspector's list (held by it for this call).
            let label = crate::capture::labels::iseq_label(gvl, f.iseq, None);
            ffi::str_new(gvl, &label)
        } else {
            NIL
        };
        let me = frame_method_entry(gvl, f);
        // SAFETY: as above; the frame array is hidden and pushed into the record at once.
        unsafe {
            let fr = rb_ary_new_capa(7);
            rb_obj_hide(fr);
            rb_ary_push(fr, rb_sys::LONG2FIX(ruby_index as _));
            rb_ary_push(fr, loc);
            rb_ary_push(fr, f.binding);
            rb_ary_push(fr, f.self_value);
            rb_ary_push(fr, f.klass);
            rb_ary_push(fr, iseq_label);
            rb_ary_push(fr, me);
            rb_ary_push(ctx.record, fr);
        }
    }
    // SAFETY: the record is a live Array with the SKIPPED slot.
    unsafe {
        rb_ary_store(
            ctx.record,
            record::SKIPPED as _,
            rb_sys::LONG2FIX(skipped as _),
        )
    };
    NIL
}

/// App code is everything outside the library prefixes (gems, the standard library) and
/// outside Ruby's `<internal:...>` files, unless library frames were asked for.
pub fn is_app_path(cfg: &rbscope_agent_core::config::Config, path: &[u8]) -> bool {
    if path.starts_with(b"<internal:") {
        return false;
    }
    if cfg.capture_library_frames {
        return true;
    }
    !cfg.library_prefixes
        .iter()
        .any(|p| !p.is_empty() && path.starts_with(p.as_bytes()))
}
