//! Walking the VM's heap and writing it in `ObjectSpace.dump_all`'s format, or counting it.
//!
//! Used in two places: the child forked for `rbscope heap dump` (the normal case: the app is
//! paused only for the fork) and, when asked, the process itself. The walk is the VM's own
//! (`rb_objspace_each_objects`, `rb_objspace_reachable_objects_from(_root)`, the functions
//! ext/objspace uses, wrapped by `ffi::heap`); what is made of each object's facts is
//! `rbscope_heap::walk`'s. Nothing here allocates Ruby objects while the walk runs (GC is off
//! around it anyway), and the output is plain bytes written to a file descriptor, so neither
//! the app's IO buffers nor its Ruby code are involved.

use crate::ffi::guard::{self, Feature};
use crate::ffi::heap::{self as vm, RubyHeap};
use crate::ffi::{GcOff, Gvl};
use rbscope_heap::walk::census::Census;
use rbscope_heap::walk::out::{Out, Sink};
use rbscope_heap::walk::overlap::Overlapped;
use rbscope_heap::walk::{Walker, Written};
use std::io::Write;

/// Writes the whole heap, roots first, to `sink`. Must run with the GVL held (in the forked
/// child it is held by the only thread left).
pub fn dump(gvl: Gvl, sink: &mut dyn Write) -> std::io::Result<Written> {
    dump_to(gvl, Sink::Direct(sink))
}

/// [`dump`] with the writes on a thread of their own (`rbscope_heap::walk::overlap`), into
/// `file`: for the forked child.
pub fn dump_overlapped(gvl: Gvl, file: std::fs::File) -> std::io::Result<Written> {
    let spare = Vec::with_capacity(Out::CAPACITY);
    let bg = Overlapped::start(file, spare, |body| {
        guard::run(Feature::Heap, "the heap dump's writer thread", (), body)
    })?;
    dump_to(gvl, Sink::Overlapped(bg))
}

fn dump_to(gvl: Gvl, sink: Sink<'_>) -> std::io::Result<Written> {
    let heap = RubyHeap::new(gvl);
    let tracing = heap.tracing_allocations();
    let mut walker = Walker::new(heap, sink, tracing);
    {
        // GC stays off so the heap does not change under the walk.
        let gc_off = GcOff::new(gvl);
        vm::each_root(&gc_off, &mut |category, obj| walker.root(category, obj));
        walker.roots_done();
        // 3.2+: the shape tree, between the roots and the objects, as dump_all does.
        // SAFETY: the facts are of one of the VM's shapes, read with GC off.
        vm::each_shape(&gc_off, &mut |facts| unsafe { walker.shape(facts) });
        vm::each_page(
            &gc_off,
            "writing the heap's objects",
            &mut |start, end, stride| {
                // SAFETY: a page the VM's iteration hands out, with GC off and the GVL held.
                unsafe { walker.page(start, end, stride) }
            },
        );
    }
    if guard::is_off(Feature::Heap) {
        return Err(std::io::Error::other(
            "an internal error stopped the heap walk (rbscope doctor -p PID says which)",
        ));
    }
    walker.finish()
}

/// Counts every live object and hands the counts to `use_it` while GC is still off: the
/// class VALUEs in them are not GC roots, so they are only valid until GC runs again.
pub fn census<R>(gvl: Gvl, use_it: impl FnOnce(&Census) -> R) -> R {
    let heap = RubyHeap::new(gvl);
    let mut c = Census::default();
    // GC is turned back on (if it was on) only after `use_it` is done with the class VALUEs.
    let gc_off = GcOff::new(gvl);
    vm::each_page(&gc_off, "counting the heap", &mut |start, end, stride| {
        // SAFETY: a page the VM's iteration hands out, with GC off and the GVL held.
        unsafe { c.count_page(&heap, start, end, stride) };
        false
    });
    use_it(&c)
}
