//! Capture at raise by reading the raising thread's control frames directly (rbscope-vm).
//!
//! No `Binding` is made: for every Ruby frame we copy, into a pending-capture slot (ring.rs),
//! the frame's iseq, its instruction position, `self`, its method entry and the VALUEs of its
//! locals (its own environment and, for blocks, the enclosing ones). That is a few plain
//! memory reads per frame and no allocation at all once the slot has grown. Everything else (which frames are app code, labels,
//! lines, local names) waits until the exception is reported.
//!
//! Used only when the running Ruby's exact version has a known layout *and* a self-test at
//! start agrees with `rb_profile_frames`; otherwise the agent uses the debug inspector
//! (capture.rs) and says so.

use crate::ffi::raw::{
    rb_iseq_base_label, rb_iseq_label, rb_iseq_line_no, rb_iseq_path, rb_iseq_realpath,
};
use crate::ffi::{self, Gvl, NIL};
use rb_sys::{rb_thread_current, VALUE};
use rbscope_vm::frames;
use rbscope_vm::{Layout, LocalMemory, Memory, RawFrame};
use std::sync::atomic::{AtomicPtr, Ordering};

/// Ruby frames copied per raise at most (a runaway recursion must not make raise slow).
pub const MAX_RAW_FRAMES: usize = 512;
/// Words per frame before its locals: iseq, position, self, method entry, control frame and
/// environment addresses (to recognise the frame if it is still running at report time),
/// level count.
const FRAME_HEADER: usize = 7;

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
    let version = ffi::const_at(gvl, "RUBY_VERSION")
        .and_then(|v| ffi::to_string(gvl, v))
        .unwrap_or_default();
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

pub fn current_ec(layout: &Layout) -> Option<usize> {
    // SAFETY: GVL held by the callers; the current Thread is a TypedData whose data is the
    // VM's rb_thread_t, and its `ec` field is the running execution context.
    unsafe {
        let th = rb_sys::RTYPEDDATA_GET_DATA(rb_thread_current()) as usize;
        LocalMemory.read_word(th + layout.thread_ec).ok()
    }
}

/// Compares our walk of the current stack with `rb_profile_frames`: same paths and lines for
/// every Ruby frame, or the layout is not trusted.
fn self_test(gvl: Gvl, layout: &Layout) -> Result<(), String> {
    let fail =
        |what: &str| format!("fast capture self-test failed ({what}); using the debug inspector");
    let ec = current_ec(layout).ok_or_else(|| fail("no execution context"))?;
    let mut ours: Vec<(String, i64)> = Vec::new();
    frames::walk(&LocalMemory, layout, ec, 64, &mut |f: &RawFrame| {
        let path = iseq_string(gvl, f.iseq as VALUE, rb_iseq_path);
        let line = frames::pc_position(&LocalMemory, layout, f)
            // SAFETY: the iseq is live (its frame is on the stack).
            .map(|pos| unsafe { rb_iseq_line_no(f.iseq as VALUE, pos) } as i64)
            .unwrap_or(-1);
        ours.push((path, line));
        true
    })
    .map_err(|e| fail(&e.to_string()))?;
    let mut buf = [0 as VALUE; 64];
    let mut lines = [0i32; 64];
    // SAFETY: GVL held; buffers are on the stack (scanned by the GC) and sized 64.
    let n = unsafe { rb_sys::rb_profile_frames(0, 64, buf.as_mut_ptr(), lines.as_mut_ptr()) };
    let mut theirs: Vec<(String, i64)> = Vec::new();
    for (&frame, &line) in buf.iter().zip(lines.iter()).take(n.max(0) as usize) {
        if line == 0 {
            continue; // a C function
        }
        // SAFETY: `frame` is a frame object rb_profile_frames just returned.
        let p = unsafe { rb_sys::rb_profile_frame_path(frame) };
        theirs.push((ffi::to_string(gvl, p).unwrap_or_default(), line as i64));
    }
    // Code run by `rb_eval_string` from C (how `rbscope inject` starts the agent) has the path
    // "eval" in its iseq, while rb_profile_frames names the file of the code it interrupted:
    // the check covers the frames above it, which are the agent's own Ruby.
    let k = ours.len().min(theirs.len()).min(
        ours.iter()
            .position(|(p, _)| p == "eval")
            .unwrap_or(usize::MAX),
    );
    if k == 0 || ours.get(..k) != theirs.get(..k) {
        return Err(fail(&format!(
            "walk {:?} vs profile {:?}",
            ours.first(),
            theirs.first()
        )));
    }
    Ok(())
}

/// One of the iseq's location strings (`rb_iseq_path`, `rb_iseq_label`...). `iseq` must be a
/// live iseq, kept alive by whoever holds it.
pub(crate) fn iseq_string(
    gvl: Gvl,
    iseq: VALUE,
    f: unsafe extern "C" fn(VALUE) -> VALUE,
) -> String {
    // SAFETY: iseq is a live iseq; these accessors only read its location fields.
    let s = unsafe { f(iseq) };
    ffi::to_string(gvl, s).unwrap_or_default()
}

/// Initial room of a slot, in words (enough for about a hundred frames).
const STACK_WORDS: usize = 1024;
/// The most words one capture may take (deeper stacks fall back to the inspector).
const HEAP_WORDS: usize = 256 * 1024;

/// Reads a word of this process's VM memory.
///
/// # Safety
/// `addr` must be a VM structure address obtained from the running thread's execution
/// context while the GVL is held (see `rbscope_vm::LocalMemory`).
#[inline(always)]
unsafe fn rd(addr: usize) -> usize {
    // SAFETY: per the function's contract.
    unsafe { std::ptr::read(addr as *const usize) }
}

/// Copies the current thread's frames into `out`, in the record format (per frame: iseq,
/// position, self, method entry, cfp, ep, level count, then per level: local count and the
/// local values; a C function's frame has false for its iseq and no levels). Returns the number of words written, or None when the stack does not fit
/// or looks wrong. The same walk as `rbscope_vm::frames::walk`, flattened for speed: this
/// runs on every raise.
///
/// # Safety
/// GVL held, on the thread whose `ec` this is, inside the raise hook (frames are stable).
unsafe fn copy_stack(l: &Layout, ec: usize, out: *mut VALUE, cap: usize) -> Option<usize> {
    // LONG2FIX for non-negative values.
    let fix = |n: usize| ((n as VALUE) << 1) | 1;
    // SAFETY: every `put` below is preceded by a check that `len + k <= cap` for the k words
    // it writes, and `out` has room for `cap` VALUEs (the caller's contract).
    let put = |i: usize, v: VALUE| unsafe { out.add(i).write(v) };
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
    let mut len = 0usize;
    let mut frames = 0usize;
    while cfp + l.cfp_size <= end && frames < MAX_RAW_FRAMES {
        // SAFETY: cfp lies inside this thread's control-frame area.
        let (ep, iseq, pc) =
            unsafe { (rd(cfp + l.cfp_ep), rd(cfp + l.cfp_iseq), rd(cfp + l.cfp_pc)) };
        // SAFETY: a frame's ep points at its environment's flags word.
        let flags = if ep != 0 { unsafe { rd(ep) } } else { 0 };
        // A C block (IFUNC: rbscope's thread wrapper) is left out, as Ruby's backtraces do.
        if frames::is_ifunc(flags) {
            cfp += l.cfp_size;
            continue;
        }
        let cframe = flags & frames::VM_FRAME_FLAG_CFRAME != 0;
        if iseq != 0 && pc != 0 && ep != 0 && !cframe {
            frames += 1;
            // SAFETY: a Ruby frame's iseq and its body are live VM structures.
            let body = unsafe { rd(iseq + l.iseq_body) };
            // SAFETY: the body just read is that live iseq's.
            let enc = unsafe { rd(body + l.body_iseq_encoded) };
            let pos = (pc.saturating_sub(enc) / 8).saturating_sub(1);
            if len + FRAME_HEADER > cap {
                return None;
            }
            let start = len;
            put(len, iseq as VALUE);
            put(len + 1, fix(pos));
            // SAFETY: as above.
            put(len + 2, unsafe { rd(cfp + l.cfp_self) } as VALUE);
            put(len + 3, ffi::FALSE);
            put(len + 4, fix(cfp));
            put(len + 5, fix(ep));
            len += FRAME_HEADER;
            let (mut ep, mut body) = (ep, body);
            let mut levels = 0;
            let mut me = 0usize;
            for _ in 0..64 {
                // SAFETY: the body's local table size is a u32 field.
                let n = unsafe { std::ptr::read((body + l.body_local_table_size) as *const u32) }
                    as usize;
                if n > 65_536 || len + 1 + n > cap {
                    return None;
                }
                put(len, fix(n));
                let first = ep - (n + 2) * 8;
                for i in 0..n {
                    // SAFETY: local i of n sits at ep[i - n - 2] in this environment.
                    put(len + 1 + i, unsafe { rd(first + i * 8) } as VALUE);
                }
                len += 1 + n;
                levels += 1;
                // SAFETY: environment flags and me/cref slots of a live environment.
                let local = unsafe { rd(ep) } & frames::VM_ENV_FLAG_LOCAL != 0;
                if me == 0 {
                    me = frames::method_entry_at(&LocalMemory, ep, local).unwrap_or(0);
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
            if me != 0 {
                put(start + 3, me as VALUE);
            }
            put(start + 6, fix(levels));
        } else if cframe {
            // A C function: no iseq (written as false), its method entry, no locals. Kept for
            // better backtraces, which show C frames where Ruby's backtrace does.
            if len + FRAME_HEADER > cap {
                return None;
            }
            put(len, ffi::FALSE);
            put(len + 1, fix(0));
            // SAFETY: cfp lies inside this thread's control-frame area.
            put(len + 2, unsafe { rd(cfp + l.cfp_self) } as VALUE);
            let me = frames::method_entry_at(&LocalMemory, ep, true).unwrap_or(0);
            put(len + 3, if me == 0 { ffi::FALSE } else { me as VALUE });
            put(len + 4, fix(cfp));
            put(len + 5, fix(ep));
            put(len + 6, fix(0));
            len += FRAME_HEADER;
        }
        cfp += l.cfp_size;
    }
    Some(len)
}

/// Copies the current thread's Ruby frames into `words` (a pending-capture slot). Allocates
/// no Ruby object: the ring's mark function keeps the copied VALUEs alive from here on. Grows
/// `words` (Rust memory) when the stack is deeper than before. False when the stack could not
/// be read (the caller falls back to the inspector).
pub fn capture(layout: &Layout, words: &mut Vec<VALUE>) -> bool {
    let Some(ec) = current_ec(layout) else {
        return false;
    };
    let mut cap = words.capacity().max(STACK_WORDS);
    loop {
        words.clear();
        words.reserve(cap);
        let cap_now = words.capacity();
        // SAFETY: GVL held, in the raise hook, ec is this thread's; `words` has room for
        // `cap_now` VALUEs, and copy_stack writes only below the length it returns.
        if let Some(len) = unsafe { copy_stack(layout, ec, words.as_mut_ptr(), cap_now) } {
            // SAFETY: copy_stack initialised the first `len` elements.
            unsafe { words.set_len(len) };
            return true;
        }
        if cap_now >= HEAP_WORDS {
            return false;
        }
        cap = (cap_now * 4).min(HEAP_WORDS);
    }
}

/// One frame decoded from a fast record.
pub struct FastFrame {
    /// Position among the Ruby frames (C frames share the index of the Ruby frame below).
    pub index: usize,
    /// A C function's frame: no iseq, no locals.
    pub cfunc: bool,
    pub iseq: VALUE,
    pub pos: usize,
    pub self_value: VALUE,
    pub method_entry: VALUE,
    pub cfp: usize,
    pub ep: usize,
    /// Local values per environment level, innermost first.
    pub levels: Vec<Vec<VALUE>>,
}

/// Decodes the words that `capture` copied.
pub fn decode(words: &[VALUE]) -> Vec<FastFrame> {
    let mut out = Vec::new();
    let mut ruby_frames = 0;
    let mut i = 0;
    let fix = |v: Option<&VALUE>| v.and_then(|v| ffi::fixnum(*v)).unwrap_or(-1);
    while i + FRAME_HEADER <= words.len() {
        let nlevels = fix(words.get(i + 6));
        if nlevels < 0 {
            break;
        }
        let word = |k: usize| words.get(i + k).copied().unwrap_or(ffi::NIL);
        let cfunc = word(0) == ffi::FALSE;
        let mut f = FastFrame {
            index: ruby_frames,
            cfunc,
            iseq: word(0),
            pos: fix(words.get(i + 1)).max(0) as usize,
            self_value: word(2),
            method_entry: word(3),
            cfp: fix(words.get(i + 4)).max(0) as usize,
            ep: fix(words.get(i + 5)).max(0) as usize,
            levels: Vec::with_capacity(nlevels as usize),
        };
        i += FRAME_HEADER;
        for _ in 0..nlevels {
            let n = fix(words.get(i));
            let Some(level) = (n >= 0)
                .then(|| words.get(i + 1..i + 1 + n as usize))
                .flatten()
            else {
                return out;
            };
            f.levels.push(level.to_vec());
            i += 1 + n as usize;
        }
        if !cfunc {
            ruby_frames += 1;
        }
        out.push(f);
    }
    out
}

/// Path, real path, label, base label and line of a captured frame.
pub struct FrameText {
    pub path: String,
    pub abs_path: Option<String>,
    pub label: String,
    pub base_label: String,
    pub lineno: i64,
}

pub fn frame_text(gvl: Gvl, f: &FastFrame) -> FrameText {
    // SAFETY: the iseq is kept alive by the record that holds it.
    let lineno = unsafe { rb_iseq_line_no(f.iseq, f.pos) } as i64;
    // SAFETY: as above.
    let abs = unsafe { rb_iseq_realpath(f.iseq) };
    FrameText {
        path: iseq_string(gvl, f.iseq, rb_iseq_path),
        abs_path: ffi::to_string(gvl, abs),
        label: iseq_string(gvl, f.iseq, rb_iseq_label),
        base_label: iseq_string(gvl, f.iseq, rb_iseq_base_label),
        lineno,
    }
}

/// The name a method entry was called by (`called_id`), e.g. the name given to
/// `define_method`.
pub fn called_name(gvl: Gvl, me: VALUE) -> Option<String> {
    if me == ffi::FALSE || me == 0 {
        return None;
    }
    // SAFETY: `me` is a live method entry (kept by the ring); called_id follows flags,
    // defined_class and def in rb_callable_method_entry_t (3.1 to 4.0).
    let id = LocalMemory.read_word(me as usize + 24).ok()?;
    ffi::id_name(gvl, id as _)
}

/// The class the inspector would report for a frame: the method entry's defined class, with
/// an included module's iclass resolved to the module and a singleton class to its object.
pub fn frame_class(gvl: Gvl, me: VALUE) -> VALUE {
    if me == ffi::FALSE || me == 0 {
        return NIL;
    }
    let Ok(klass) = LocalMemory.read_word(me as usize + 8) else {
        return NIL;
    };
    let klass = klass as VALUE;
    if klass == 0 {
        return NIL;
    }
    match ffi::type_of(gvl, klass) {
        rb_sys::ruby_value_type::RUBY_T_ICLASS => {
            // SAFETY: an iclass's RBasic klass is the module it stands for.
            unsafe { (*(klass as *const rb_sys::RBasic)).klass }
        }
        rb_sys::ruby_value_type::RUBY_T_CLASS if ffi::is_singleton_class(gvl, klass) => {
            ffi::attached_object(gvl, klass)
        }
        _ => klass,
    }
}

/// The frames of the current thread that are running now, by (control frame, iseq,
/// environment): a captured frame found here has not returned since the raise.
pub fn running_frames(layout: &Layout) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    if let Some(ec) = current_ec(layout) {
        let _ = frames::walk(
            &LocalMemory,
            layout,
            ec,
            MAX_RAW_FRAMES,
            &mut |f: &RawFrame| {
                out.push((f.cfp, f.iseq, f.ep));
                true
            },
        );
    }
    out
}

/// Re-reads the locals of a captured frame that is still running, so that assignments made
/// after the raise (in `rescue` or `ensure`) show, as they would through a Binding.
pub fn refresh_if_running(layout: &Layout, f: &mut FastFrame, running: &[(usize, usize, usize)]) {
    if !running.contains(&(f.cfp, f.iseq as usize, f.ep)) {
        return;
    }
    let mem = LocalMemory;
    let raw = RawFrame {
        cfp: f.cfp,
        iseq: f.iseq as usize,
        pc: 0,
        self_value: f.self_value as usize,
        ep: f.ep,
    };
    let mut chain = Vec::new();
    if frames::env_chain(&mem, layout, &raw, &mut chain).is_err() {
        return;
    }
    let levels: Option<Vec<Vec<VALUE>>> = chain
        .iter()
        .map(|lv| {
            (0..lv.locals)
                .map(|i| {
                    frames::local_value(&mem, lv.ep, lv.locals, i)
                        .ok()
                        .map(|v| v as VALUE)
                })
                .collect()
        })
        .collect();
    if let Some(levels) = levels {
        f.levels = levels;
    }
}

/// Local variable names and values of a frame, innermost environment first, as
/// `Binding#local_variables` lists them (hidden and duplicate names skipped).
pub fn locals(gvl: Gvl, layout: &Layout, f: &FastFrame) -> Vec<(String, VALUE)> {
    let mem = LocalMemory;
    let mut out: Vec<(String, VALUE)> = Vec::new();
    let mut iseq = f.iseq as usize;
    for (level, values) in f.levels.iter().enumerate() {
        if level > 0 {
            let parent = mem
                .read_word(iseq + layout.iseq_body)
                .and_then(|b| mem.read_word(b + layout.body_parent_iseq));
            match parent {
                Ok(p) if p != 0 => iseq = p,
                _ => break,
            }
        }
        let Ok(ids) = frames::local_ids(&mem, layout, iseq) else {
            break;
        };
        for (id, v) in ids.iter().zip(values) {
            // SAFETY: checking an ID's kind reads the symbol table only.
            if unsafe { rb_sys::rb_is_local_id(*id as _) } == 0 {
                continue;
            }
            let Some(name) = ffi::id_name(gvl, *id as _) else {
                continue;
            };
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, *v));
            }
        }
    }
    out
}
