//! The pending captures: frames kept at raise until the exception is reported or replaced.
//!
//! A fixed number of slots in Rust memory, overwritten oldest first, so memory stays bounded
//! and a raise allocates nothing once the slots have grown to the stack sizes the app uses.
//! The VALUEs in the slots are kept alive (and pinned) by a marker object (marker.rs) whose
//! mark function marks every slot. Nothing is attached to the exception itself
//! (that would change what `Marshal.dump(exception)` does).
//!
//! Every access holds the GVL (a [`Gvl`] token), and no Ruby object is allocated while a slot
//! is borrowed, so the mark function (which runs inside GC, also under the GVL) never sees a
//! slot half-written.

use crate::capture::fast_capture;
use crate::ffi::capture::VALUE;
use crate::ffi::gc_mark;
use crate::ffi::guard::{self, Feature};
use crate::ffi::marker::MarkerType;
use crate::ffi::Gvl;
use rbscope_agent_core::capture::Ring;
use rbscope_vm::{raise_record, stack_copy};
use std::cell::UnsafeCell;
use std::ffi::c_void;

/// One pending capture: the exception (0 when the slot is empty) and its frames, every word a
/// VALUE kept alive here or an immediate.
pub use rbscope_agent_core::capture::Slot;

struct GvlCell(UnsafeCell<Ring>);
// SAFETY: the ring is only touched with the GVL held (Gvl tokens, and the GC's mark phase,
// which also runs under the GVL), so there is never concurrent access.
unsafe impl Sync for GvlCell {}

static RING: GvlCell = GvlCell(UnsafeCell::new(Ring::EMPTY));
unsafe extern "C" fn mark_ring(_data: *mut c_void) {
    guard::mark(&[Feature::Capture], "marking pending captures", || {
        // SAFETY: called by the GC under the GVL; no slot is borrowed while Ruby can allocate,
        // so this is the only borrow of the ring.
        let ring = unsafe { &mut *RING.0.get() };
        // SAFETY: in the GC's mark phase under the GVL: a stack copy not yet scanned was made
        // since the last GC, so what it points to is still alive (nothing was freed since).
        let live = unsafe { fast_capture::vm() };
        for (exc, words) in ring.records_mut() {
            stack_copy::keep_parents(words, &live);
            // SAFETY: in the GC's mark phase; the exception is a live object (marked from here
            // since it was stored), and every word `for_each_object` gives is a live VALUE or
            // an immediate (the format's rule: a stack copy's words are what the VM's own GC
            // marked on that stack at raise), which gc_mark skips.
            unsafe {
                gc_mark(exc as VALUE);
                raise_record::for_each_object(words, |w| gc_mark(w as VALUE));
            }
        }
    })
}

static MARKER: MarkerType = MarkerType::new(c"rbscope pending captures", mark_ring);

/// Sizes the ring (clearing it) and, once per process, creates the marking object.
pub fn init(gvl: Gvl, size: usize) {
    // SAFETY: GVL held; no other borrow of the ring is alive.
    unsafe { *RING.0.get() = Ring::new(size) };
    MARKER.ensure(gvl);
}

/// Runs `fill` on the oldest slot (emptied first). `fill` must not allocate Ruby objects.
/// Returns false (and leaves the slot empty) when `fill` does.
pub fn fill_next(_gvl: Gvl, fill: impl FnOnce(&mut Slot) -> bool) -> bool {
    // SAFETY: GVL held; the borrow ends before this function returns and `fill` does not
    // allocate Ruby objects (so no GC, so no concurrent mark).
    unsafe { &mut *RING.0.get() }.fill_next(fill)
}

/// Whether `exc` has a pending capture.
pub fn contains(_gvl: Gvl, exc: VALUE) -> bool {
    // SAFETY: the ring is only touched with the GVL held (the token), so nothing writes it
    // meanwhile; this read-only borrow ends here, before anything can allocate (and mark).
    unsafe { &*RING.0.get() }.find(exc).is_some()
}

/// A copy of `exc`'s pending capture, a stack copy read out into VM frames (so callers
/// decode one of the two frame formats). The copied VALUEs stay valid only while the ring
/// keeps them and GC cannot move them: callers hold it with GC paused (report.rs).
pub fn find(gvl: Gvl, exc: VALUE) -> Option<Slot> {
    // SAFETY: the ring is only touched with the GVL held (the token), so nothing writes it
    // meanwhile; this read-only borrow ends here, before anything can allocate (and mark).
    let slot = unsafe { &*RING.0.get() }.find(exc)?;
    // Reading out a stack copy allocates no Ruby object, so the ring still holds (and marks)
    // everything it reads.
    let words = match fast_capture::verified_layout(gvl) {
        Ok(layout) => fast_capture::expanded(gvl, layout, &slot.words).unwrap_or_default(),
        Err(_) => slot.words.clone(),
    };
    Some(Slot {
        exc: slot.exc,
        words,
    })
}
