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
use rbscope_vm::raise_record::{self as record, Encoder, Source, VmFrame};
use rbscope_vm::{captured, frames};
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

/// Copies the current thread's frames into `e` (the raise-record format). None when the stack
/// does not fit or looks wrong. The same walk as `rbscope_vm::frames::walk`, flattened for
/// speed: this runs on every raise.
///
/// # Safety
/// GVL held, on the thread whose `ec` this is, inside the raise hook, or `ec` is another
/// thread's, stopped at a safe point while this one holds the GVL (frames are stable).
unsafe fn copy_stack(l: &Layout, ec: usize, e: &mut Encoder) -> Option<()> {
    // SAFETY: this function's contract (GVL held, in the raise hook, this thread's `ec`) is
    // vm()'s: only this thread's live VM structures are read.
    let mem = unsafe { vm() };
    // SAFETY: ec is the running execution context (caller's contract).
    let (stack, size, mut cfp) = unsafe {
        (
            rd(ec + l.ec_vm_stack),
            rd(ec + l.ec_vm_stack_size),
            rd(ec + l.ec_cfp),
        )
    };
    let end = (stack + size * 8).checked_sub(l.cfp_size)?;
    if cfp < stack || cfp > end || stack == 0 {
        return None;
    }
    let mut frames = 0usize;
    while cfp + l.cfp_size <= end && frames < record::MAX_FRAMES {
        // SAFETY: cfp lies inside this thread's control-frame area.
        let (ep, iseq, pc) =
            unsafe { (rd(cfp + l.cfp_ep), rd(cfp + l.cfp_iseq), rd(cfp + l.cfp_pc)) };
        // SAFETY: a frame's ep points at its environment's flags word.
        let flags = if ep != 0 { unsafe { rd(ep) } } else { 0 };
        let cframe = flags & frames::VM_FRAME_FLAG_CFRAME != 0;
        if iseq != 0 && pc != 0 && ep != 0 && !cframe {
            frames += 1;
            // SAFETY: cfp lies inside this thread's control-frame area.
            let self_value = unsafe { rd(cfp + l.cfp_self) };
            // SAFETY: a Ruby frame's iseq and its body are live VM structures.
            let body = unsafe { rd(iseq + l.iseq_body) };
            // SAFETY: the body just read is that live iseq's.
            let enc = unsafe { rd(body + l.body_iseq_encoded) };
            let pos = (pc.saturating_sub(enc) / 8).saturating_sub(1);
            let at = e.ruby_frame(iseq, pos, self_value, cfp, ep)?;
            let (mut ep, mut body) = (ep, body);
            let mut levels = 0;
            let mut me = 0usize;
            for _ in 0..record::MAX_LEVELS {
                // SAFETY: the body's local table size is a u32 field.
                let n = unsafe { std::ptr::read((body + l.body_local_table_size) as *const u32) }
                    as usize;
                let first = ep.wrapping_sub((n + 2) * 8);
                // SAFETY: local i of n sits at ep[i - n - 2] in this environment (the encoder
                // refuses an impossible count before reading any).
                e.level(n, |i| unsafe { rd(first + i * 8) })?;
                levels += 1;
                // SAFETY: environment flags and me/cref slots of a live environment.
                let local = unsafe { rd(ep) } & frames::VM_ENV_FLAG_LOCAL != 0;
                if me == 0 {
                    me = frames::method_entry_at(&mem, ep, local).unwrap_or(0);
                }
                if local {
                    break;
                }
                // SAFETY: a block environment links to its parent (low bits are tags), and a
                // block iseq to its parent iseq.
                let (parent, prev) = unsafe { (rd(body + l.body_parent_iseq), rd(ep - 8) & !0x03) };
                if parent == 0 || prev == 0 {
                    break;
                }
                // SAFETY: the parent iseq is live (it encloses a running block).
                body = unsafe { rd(parent + l.iseq_body) };
                ep = prev;
            }
            e.end_frame(at, me, levels);
        } else if cframe && !frames::is_ifunc(flags) {
            // A C function: no iseq, its method entry, no locals. Kept for better backtraces,
            // which show C frames where Ruby's backtrace does. A C block (IFUNC, always a C
            // frame: rbscope's thread wrapper) is left out, as Ruby's backtraces do.
            // SAFETY: cfp lies inside this thread's control-frame area.
            let self_value = unsafe { rd(cfp + l.cfp_self) };
            let me = frames::method_entry_at(&mem, ep, true).unwrap_or(0);
            e.c_frame(self_value, me, cfp, ep)?;
        }
        cfp += l.cfp_size;
    }
    Some(())
}

/// Copies the current thread's frames into `words` (a pending-capture slot), in the
/// raise-record format. Allocates no Ruby object: the ring's mark function keeps the copied
/// VALUEs alive from here on. Grows `words` (Rust memory) when the stack is deeper than
/// before. False when the stack could not be read (the caller falls back to the inspector).
pub fn capture(gvl: Gvl, layout: &Layout, words: &mut Vec<usize>) -> bool {
    current_ec(gvl, layout).is_some_and(|ec| copy_ec(layout, ec, words))
}

/// Copies the frames of another thread (`th`, its live rb_thread_t) as `capture` does: with
/// the GVL held here, that thread is stopped at a safe point and its frames do not change.
/// The caller keeps the copied VALUEs alive (a live snapshot keeps GC off).
pub fn capture_thread(_gvl: Gvl, layout: &Layout, th: usize, words: &mut Vec<usize>) -> bool {
    // SAFETY: GVL held; `th` is a live thread's rb_thread_t, whose `ec` field we read.
    let ec = unsafe { vm() }.read_word(th + layout.thread_ec).ok();
    ec.is_some_and(|ec| ec != 0 && copy_ec(layout, ec, words))
}

fn copy_ec(layout: &Layout, ec: usize, words: &mut Vec<usize>) -> bool {
    let mut cap = words.capacity().max(record::FIRST_WORDS);
    loop {
        words.clear();
        words.reserve(cap);
        let cap_now = words.capacity();
        let copied = Encoder::new(words, Source::Vm).and_then(|mut e| {
            // SAFETY: GVL held, and ec is this thread's (in the raise hook) or that of a
            // thread stopped at a safe point: its frames do not change meanwhile.
            unsafe { copy_stack(layout, ec, &mut e) }
        });
        if copied.is_some() {
            return true;
        }
        if cap_now >= record::MAX_WORDS {
            words.clear();
            return false;
        }
        cap = (cap_now * 4).min(record::MAX_WORDS);
    }
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
