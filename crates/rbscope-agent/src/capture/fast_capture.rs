//! Capture at raise by reading the raising thread's control frames directly (rbscope-vm).
//!
//! No `Binding` is made: for every frame we copy, into a pending-capture slot (ring.rs), the
//! frame's iseq, its instruction position, `self`, its method entry and the VALUEs of its
//! locals (its own environment and, for blocks, the enclosing ones), in the raise-record format
//! (`rbscope_vm::raise_record`). That is a few plain memory reads per frame and no allocation
//! at all once the slot has grown. Everything else (which frames are app code, labels, lines,
//! local names) waits until the exception is reported.
//!
//! Used only when the running Ruby's exact version has a known layout *and* a self-test at
//! start agrees with `rb_profile_frames`; otherwise the agent uses the debug inspector
//! (capture/mod.rs) and says so.

use crate::ffi::capture::{self as rb, IseqText, VALUE};
use crate::ffi::{self, Gvl};
use rbscope_vm::raise_record::{self as record, Encoder, Source, StackShape, VmFrame};
use rbscope_vm::{captured, frames, stack_copy};
use rbscope_vm::{Layout, LocalMemory, Memory, RawFrame};
use std::sync::atomic::{AtomicPtr, Ordering};

static LAYOUT: AtomicPtr<Layout> = AtomicPtr::new(std::ptr::null_mut());

/// The layout in use, when the fast path is on.
pub fn layout() -> Option<&'static Layout> {
    let p = LAYOUT.load(Ordering::Acquire);
    // SAFETY: LAYOUT only ever holds null or a pointer to a `'static` Layout from the table.
    unsafe { p.as_ref() }
}

/// Turns the fast path on for this Ruby if its layout is known and verified. Returns the
/// reason when it stays off.
pub fn enable(gvl: Gvl) -> Result<&'static str, String> {
    let layout = verified_layout(gvl)?;
    LAYOUT.store(layout as *const Layout as *mut Layout, Ordering::Release);
    Ok(layout.version)
}

/// This Ruby's layout, once known and checked by the self-test (the answer is kept: it cannot
/// change within a process). Also what `Rbscope.backtrace` reads other threads with, whatever
/// the capture setting.
pub fn verified_layout(gvl: Gvl) -> Result<&'static Layout, String> {
    static VERIFIED: std::sync::OnceLock<Result<&'static Layout, String>> =
        std::sync::OnceLock::new();
    // Callers hold the GVL, so two first calls cannot race into the self-test.
    VERIFIED.get_or_init(|| check_layout(gvl)).clone()
}

fn check_layout(gvl: Gvl) -> Result<&'static Layout, String> {
    let version = ffi::const_text(gvl, "RUBY_VERSION");
    let layout = Layout::for_version(&version).ok_or_else(|| {
        format!(
            "no VM layout for Ruby {version} (known: {}); using the debug inspector, which is \
             slower at raise",
            Layout::known_versions()
        )
    })?;
    self_test(gvl, layout)?;
    Ok(layout)
}

/// Turns the fast path off (the `capture: "inspector"` setting).
pub fn disable() {
    LAYOUT.store(std::ptr::null_mut(), Ordering::Release);
}

/// Reads this process's VM structures.
///
/// # Safety
/// The GVL is held and only addresses of live VM structures reached from this thread's
/// execution context, or from VALUEs kept alive (marked) by whoever holds them, are read
/// through it (see `LocalMemory::new`).
pub(crate) unsafe fn vm() -> LocalMemory {
    // SAFETY: the caller's contract is LocalMemory::new's.
    unsafe { LocalMemory::new() }
}

/// The running thread's execution context.
pub fn current_ec(gvl: Gvl, layout: &Layout) -> Option<usize> {
    let th = rb::current_thread_struct(gvl);
    // SAFETY: GVL held; `th` is the running thread's rb_thread_t, whose `ec` field we read.
    unsafe { vm() }.read_word(th + layout.thread_ec).ok()
}

/// Compares our walk of the current stack with `rb_profile_frames`: same paths and lines for
/// every Ruby frame, or the layout is not trusted.
fn self_test(gvl: Gvl, layout: &Layout) -> Result<(), String> {
    let fail =
        |what: &str| format!("fast capture self-test failed ({what}); using the debug inspector");
    let ec = current_ec(gvl, layout).ok_or_else(|| fail("no execution context"))?;
    let mut ours: Vec<(String, i64)> = Vec::new();
    // SAFETY: GVL held; the walk reads this thread's own control frames, from its `ec`.
    let mem = unsafe { vm() };
    frames::walk(&mem, layout, ec, 64, &mut |f: &RawFrame| {
        // SAFETY: the iseq of a frame on this thread's stack is live.
        let path = unsafe { rb::iseq_text(gvl, f.iseq as VALUE, IseqText::Path) };
        let line = frames::pc_position(&mem, layout, f)
            // SAFETY: the iseq of a frame on this thread's stack is live; pos was read
            // from that frame's pc.
            .map(|pos| unsafe { rb::iseq_line(gvl, f.iseq as VALUE, pos) })
            .unwrap_or(-1);
        ours.push((path, line));
        true
    })
    .map_err(|e| fail(&e.to_string()))?;
    let theirs = rb::profile_frames(gvl);
    rbscope_agent_core::capture::walks_agree(&ours, &theirs).map_err(|e| fail(&e))
}

/// Reads a word of this process's VM memory.
///
/// # Safety
/// `addr` must be a VM structure address obtained from the running thread's execution
/// context while the GVL is held (see `rbscope_vm::LocalMemory`).
#[inline(always)]
unsafe fn rd(addr: usize) -> usize {
    // SAFETY: the caller promised `addr` is in a live VM structure of this thread, read
    // with the GVL held (nothing writes it meanwhile).
    unsafe { std::ptr::read(addr as *const usize) }
}

/// A stack copy larger than this (in words) is not taken at raise: the frame walk, which
/// keeps at most `MAX_FRAMES` frames, copies a runaway recursion's stack instead.
const MAX_BLOCK_WORDS: usize = 32 * 1024;

/// Copies the running thread's VM stack into `e` as a stack-copy record: the value stack up
/// to the running frame's `sp` and the control frames, as two blocks (where `stack_bounds`
/// found them). None when they do not fit `e`: the caller walks the frames instead.
///
/// What the copied frames point to outside the stack stays alive through the record: iseqs
/// and `self` are in the control frames, environments that escaped to the heap leave their
/// object in the frame's stack slot, and the parents of blocks whose own frame is gone are
/// found at the next GC's mark, before anything can be freed (`ring::mark_ring`).
///
/// # Safety
/// GVL held, on the thread whose `ec` this is, inside the raise hook, and `b` read from that
/// `ec` by `stack_bounds` in this same hook.
#[inline]
unsafe fn copy_block(l: &Layout, b: &StackBounds, e: &mut Encoder) -> Option<()> {
    let StackBounds {
        stack,
        size,
        cfp,
        values,
        region,
    } = *b;
    e.stack_head(&StackShape {
        base: stack,
        stack_words: size,
        first_cfp: cfp,
        cfp_words: l.cfp_size / 8,
        self_at: l.cfp_self / 8,
        iseq_at: l.cfp_iseq / 8,
        ep_at: l.cfp_ep / 8,
    })?;
    // SAFETY: [stack, stack + values) is this thread's value stack below its running frame
    // and [cfp, cfp + region) its control frames (`stack_bounds` checked both); the GVL is
    // held and this thread is in the hook, so nothing writes them while they are copied.
    unsafe {
        e.copy_block(stack as *const usize, values)?;
        e.copy_block(cfp as *const usize, region)?;
    }
    e.set_stack_counts(values, region);
    Some(())
}

/// Copies the current thread's stack into `words` (a pending-capture slot): as a stack copy
/// (`copy_block`) when it can, otherwise frame by frame. Allocates no Ruby object: the ring's
/// mark function keeps the copied VALUEs alive from here on. Grows `words` (Rust memory) when
/// the stack is deeper than before. False when the stack could not be read (the caller falls
/// back to the inspector).
pub fn capture(gvl: Gvl, layout: &Layout, words: &mut Vec<usize>) -> bool {
    let Some(ec) = current_ec(gvl, layout) else {
        return false;
    };
    // SAFETY: GVL held, in the raise hook, and ec is this thread's.
    if let Some(b) = unsafe { stack_bounds(layout, ec) } {
        words.clear();
        words.reserve(record::HEADER + record::STACK_FIELDS + b.values + b.region);
        let copied = Encoder::new(words, Source::Stack).and_then(|mut e| {
            // SAFETY: as for stack_bounds, whose answer this is.
            unsafe { copy_block(layout, &b, &mut e) }
        });
        if copied.is_some() {
            return true;
        }
    }
    copy_ec(layout, ec, words)
}

/// Where a stack copy's two blocks are: the value stack from `stack` (`values` words, up to
/// the running frame's `sp`) and the control frames from `cfp` (`region` words, to the
/// stack's end, `size` words from `stack`).
#[derive(Clone, Copy)]
struct StackBounds {
    stack: usize,
    size: usize,
    cfp: usize,
    values: usize,
    region: usize,
}

/// `ec`'s stack blocks, when they look right and a stack copy can take them.
///
/// # Safety
/// GVL held, on the thread whose `ec` this is, inside the raise hook.
#[inline]
unsafe fn stack_bounds(l: &Layout, ec: usize) -> Option<StackBounds> {
    // SAFETY: ec is the running execution context (caller's contract).
    let (stack, size, cfp) = unsafe {
        (
            rd(ec + l.ec_vm_stack),
            rd(ec + l.ec_vm_stack_size),
            rd(ec + l.ec_cfp),
        )
    };
    let end = stack.checked_add(size.checked_mul(8)?)?;
    if stack == 0 || cfp < stack || cfp.checked_add(l.cfp_size)? > end {
        return None;
    }
    // SAFETY: cfp lies inside this thread's control-frame area (checked just above).
    let sp = unsafe { rd(cfp + l.cfp_sp) };
    if sp < stack || sp > cfp || !sp.is_multiple_of(8) || !cfp.is_multiple_of(8) {
        return None;
    }
    let (values, region) = ((sp - stack) / 8, (end - cfp) / 8);
    (values + region <= MAX_BLOCK_WORDS).then_some(StackBounds {
        stack,
        size,
        cfp,
        values,
        region,
    })
}

/// Copies the frames of another thread (`th`, its live rb_thread_t) frame by frame: with the
/// GVL held here, that thread is stopped at a safe point and its frames do not change. The
/// caller keeps the copied VALUEs alive (a live snapshot keeps GC off).
pub fn capture_thread(_gvl: Gvl, layout: &Layout, th: usize, words: &mut Vec<usize>) -> bool {
    // SAFETY: GVL held; `th` is a live thread's rb_thread_t, whose `ec` field we read.
    let ec = unsafe { vm() }.read_word(th + layout.thread_ec).ok();
    ec.is_some_and(|ec| ec != 0 && copy_ec(layout, ec, words))
}

/// The frame walk over `ec`'s stack into `words`, as VM frames.
fn copy_ec(layout: &Layout, ec: usize, words: &mut Vec<usize>) -> bool {
    // SAFETY: GVL held, and ec is this thread's (in the raise hook) or that of a thread
    // stopped at a safe point: its stack does not change meanwhile.
    let mem = unsafe { vm() };
    let (Ok(stack), Ok(size), Ok(cfp)) = (
        mem.read_word(ec + layout.ec_vm_stack),
        mem.read_word(ec + layout.ec_vm_stack_size),
        mem.read_word(ec + layout.ec_cfp),
    ) else {
        return false;
    };
    stack_copy::encode_frames_into(&mem, layout, stack, size, cfp, words)
}

/// The VM-frame record of a stack-copy record (read from the copy and from the live objects
/// the record keeps); other records unchanged. None when a stack copy cannot be read.
pub fn expanded(_gvl: Gvl, layout: &Layout, words: &[usize]) -> Option<Vec<usize>> {
    if record::stack_copy(words).is_none() {
        return Some(words.to_vec());
    }
    // SAFETY: GVL held; what the copy's frames point to outside the stack (iseqs, method
    // entries, heap environments) is kept alive and pinned by the pending-capture ring,
    // which holds this record.
    stack_copy::expand(words, layout, &unsafe { vm() })
}

/// Path, real path, label, base label and line of a captured frame.
pub struct FrameText {
    pub path: String,
    pub abs_path: Option<String>,
    pub label: String,
    pub base_label: String,
    pub lineno: i64,
}

pub fn frame_text(gvl: Gvl, f: &VmFrame) -> FrameText {
    let iseq = f.iseq as VALUE;
    // SAFETY: the iseq is kept alive by the record that holds it; pos was read from its frame.
    unsafe {
        FrameText {
            path: rb::iseq_text(gvl, iseq, IseqText::Path),
            abs_path: ffi::to_string(gvl, rb::iseq_value(gvl, iseq, IseqText::RealPath)),
            label: rb::iseq_text(gvl, iseq, IseqText::Label),
            base_label: rb::iseq_text(gvl, iseq, IseqText::BaseLabel),
            lineno: rb::iseq_line(gvl, iseq, f.pos),
        }
    }
}

/// The frames of the current thread that are running now, by (control frame, iseq,
/// environment): a captured frame found here has not returned since the raise.
pub fn running_frames(gvl: Gvl, layout: &Layout) -> Vec<(usize, usize, usize)> {
    let Some(ec) = current_ec(gvl, layout) else {
        return Vec::new();
    };
    // SAFETY: GVL held; the walk reads this thread's own control frames.
    captured::running_frames(&unsafe { vm() }, layout, ec)
}

/// Re-reads the locals of a captured frame that is still running, so that assignments made
/// after the raise (in `rescue` or `ensure`) show, as they would through a Binding.
pub fn refresh_if_running(
    _gvl: Gvl,
    layout: &Layout,
    f: &mut VmFrame,
    running: &[(usize, usize, usize)],
) {
    // SAFETY: GVL held; a frame found in `running` is on this thread's stack now, so its
    // environments are live (any other frame is left untouched).
    captured::refresh_if_running(&unsafe { vm() }, layout, f, running);
}

/// Local variable names and values of a frame, innermost environment first, as
/// `Binding#local_variables` lists them (hidden and duplicate names skipped).
pub fn locals(gvl: Gvl, layout: &Layout, f: &VmFrame) -> Vec<(String, VALUE)> {
    // SAFETY: GVL held; the frame's iseq and its parents are kept alive by the record.
    let mem = unsafe { vm() };
    let mut out: Vec<(String, VALUE)> = Vec::new();
    for (id, v) in captured::local_ids_and_values(&mem, layout, f) {
        if !rb::is_local_id(gvl, id as _) {
            continue;
        }
        let Some(name) = ffi::id_name(gvl, id as _) else {
            continue;
        };
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, v as VALUE));
        }
    }
    out
}
