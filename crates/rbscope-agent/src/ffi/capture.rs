//! Ruby C API calls used only by the agent's `capture/` modules: safe wrappers that take a
//! [`Gvl`] token, and a few `unsafe` ones whose argument must be of a kind no type can check
//! (a live iseq). The raw declarations rb-sys lacks are in `raw.rs`.
//!
//! Every VALUE passed in is assumed to be a valid Ruby value (an immediate, or an object the
//! caller keeps alive), as everywhere in `ffi`.

use crate::ffi::guard::{self, Feature};
use crate::ffi::raw;
use crate::ffi::{self, Gvl, Raised, NIL};
use rb_sys::rb_debug_inspector_t;
use std::ffi::c_void;
use std::marker::PhantomData;

pub(crate) use magnus::rb_sys::{AsRawValue, FromRawValue};
pub(crate) use rb_sys::{rb_trace_arg_t as TraceArg, ruby_value_type as T, ID, VALUE};

/// `RUBY_EVENT_RAISE`.
const RUBY_EVENT_RAISE: u32 = 0x0080;

/// Installs `hook` for every raise (`RUBY_EVENT_RAISE`, raw trace argument).
pub fn add_raise_hook(_gvl: Gvl, hook: raw::RawArgHook) {
    // SAFETY: GVL held (token); the hook has the raw-arg signature that the flag announces.
    unsafe { ffi::add_raw_event_hook(hook, RUBY_EVENT_RAISE, NIL, ffi::HOOK_FLAG_RAW_ARG) };
}

/// Removes a hook [`add_raise_hook`] installed.
pub fn remove_raise_hook(_gvl: Gvl, hook: raw::RawArgHook) {
    // SAFETY: GVL held (token); removing a hook by its function only reads the hook list.
    unsafe { ffi::remove_raw_event_hook(hook) };
}

/// The exception a RAISE event is about.
///
/// # Safety
/// `arg` must be the trace argument of a RAISE event, inside its hook.
pub unsafe fn raised_exception(arg: *mut TraceArg) -> VALUE {
    // SAFETY: per the contract, `arg` is a live RAISE trace argument.
    unsafe { rb_sys::rb_tracearg_raised_exception(arg) }
}

/// `v`'s class (singleton classes skipped).
pub fn class_of(_gvl: Gvl, v: VALUE) -> VALUE {
    // SAFETY: GVL held; rb_obj_class is defined for every VALUE.
    unsafe { rb_sys::rb_obj_class(v) }
}

/// `v.kind_of?(class)`, without calling Ruby code; false when `class` is 0 (not loaded).
pub fn is_kind_of(_gvl: Gvl, v: VALUE, class: VALUE) -> bool {
    // SAFETY: GVL held; rb_obj_is_kind_of only reads class pointers of a live class.
    class != 0 && ffi::truthy(unsafe { rb_sys::rb_obj_is_kind_of(v, class) })
}

/// Whether `exc` is a SystemExit, a signal, a stack overflow or an out-of-memory error: raises
/// the capture leaves alone.
pub fn is_exit_or_fatal(gvl: Gvl, exc: VALUE) -> bool {
    // SAFETY: the class globals are set at boot and never change.
    let classes = unsafe {
        [
            rb_sys::rb_eSystemExit,
            rb_sys::rb_eSignal,
            rb_sys::rb_eSysStackError,
            rb_sys::rb_eNoMemError,
        ]
    };
    classes.iter().any(|k| is_kind_of(gvl, exc, *k))
}

/// The debug inspector while it is open (inside [`with_inspector`]'s callback only).
pub struct Inspector<'a> {
    dc: *const rb_debug_inspector_t,
    _open: PhantomData<&'a ()>,
}

impl Inspector<'_> {
    /// The `Thread::Backtrace::Location`s of the stack (held by the inspector).
    pub fn locations(&self) -> VALUE {
        // SAFETY: `dc` is the open inspector's context (an Inspector exists only inside the
        // callback); the array is the one it keeps.
        unsafe { rb_sys::rb_debug_inspector_backtrace_locations(self.dc) }
    }

    /// Frame `i`'s binding (nil for a C frame), `self` and class. An index the inspector
    /// refuses raises, which ends the inspection ([`with_inspector`] answers Err).
    pub fn frame(&self, i: usize) -> (VALUE, VALUE, VALUE) {
        let i = i as _;
        // SAFETY: `dc` is the open inspector's context; the getters check the index (raising
        // an ArgumentError, caught by the protect around the inspection).
        unsafe {
            (
                rb_sys::rb_debug_inspector_frame_binding_get(self.dc, i),
                rb_sys::rb_debug_inspector_frame_self_get(self.dc, i),
                rb_sys::rb_debug_inspector_frame_class_get(self.dc, i),
            )
        }
    }

    /// The two words of the debug context that may hold its own frame list (`contexts`): the
    /// fourth in Ruby 3.1 to 3.4, the third in 4.0. Callers check what they find.
    pub fn context_list_candidates(&self) -> [VALUE; 2] {
        // SAFETY: `dc` points at the live rb_debug_inspector_struct, at least four words long
        // in 3.1 to 4.0 (ec, cfp, then two VALUEs); words 2 and 3 are VALUEs there.
        unsafe {
            let words = self.dc as *const VALUE;
            [*words.add(3), *words.add(2)]
        }
    }
}

type InspectFn<'f> = &'f mut dyn FnMut(Gvl, &Inspector);

/// Opens the debug inspector (which makes a Binding for every frame) and runs `f` with it.
/// Err when Ruby raised inside (caught and cleared); a panic in `f` is caught by the guard
/// (turning capture off) and answers Ok.
pub fn with_inspector(gvl: Gvl, mut f: InspectFn) -> Result<(), Raised> {
    let data = &mut f as *mut InspectFn as *mut c_void;
    ffi::protect(gvl, || {
        // SAFETY: GVL held; `data` points at `f`, which outlives the call, and the callback
        // runs (at most once) before rb_debug_inspector_open returns.
        unsafe { rb_sys::rb_debug_inspector_open(Some(inspect), data) }
    })
    .map(|_| ())
}

unsafe extern "C" fn inspect(dc: *const rb_debug_inspector_t, data: *mut c_void) -> VALUE {
    guard::run(Feature::Capture, "reading frames at raise", NIL, || {
        // SAFETY: `data` is the callback `with_inspector` passed, alive for this call.
        let f = unsafe { &mut *(data as *mut InspectFn) };
        // SAFETY: inspector callbacks run with the GVL held.
        let gvl = unsafe { Gvl::assume() };
        f(
            gvl,
            &Inspector {
                dc,
                _open: PhantomData,
            },
        );
        NIL
    })
}

/// Which of an iseq's location strings.
#[derive(Clone, Copy)]
pub enum IseqText {
    Path,
    Label,
    BaseLabel,
}

/// One of the iseq's location strings (empty when it has none).
///
/// # Safety
/// `iseq` must be a live iseq, kept alive by whoever holds it.
pub unsafe fn iseq_text(gvl: Gvl, iseq: VALUE, what: IseqText) -> String {
    // SAFETY: per the contract `iseq` is a live iseq; these accessors only read its location.
    let s = unsafe {
        match what {
            IseqText::Path => raw::rb_iseq_path(iseq),
            IseqText::Label => raw::rb_iseq_label(iseq),
            IseqText::BaseLabel => raw::rb_iseq_base_label(iseq),
        }
    };
    ffi::to_string(gvl, s).unwrap_or_default()
}

/// The iseq's path as Ruby has it (a String).
///
/// # Safety
/// As [`iseq_text`].
pub unsafe fn iseq_path_value(_gvl: Gvl, iseq: VALUE) -> VALUE {
    // SAFETY: per the contract `iseq` is a live iseq.
    unsafe { raw::rb_iseq_path(iseq) }
}

/// The iseq's real path, if it has one.
///
/// # Safety
/// As [`iseq_text`].
pub unsafe fn iseq_realpath(gvl: Gvl, iseq: VALUE) -> Option<String> {
    // SAFETY: per the contract `iseq` is a live iseq.
    ffi::to_string(gvl, unsafe { raw::rb_iseq_realpath(iseq) })
}

/// The line of instruction `pos` of the iseq.
///
/// # Safety
/// As [`iseq_text`]; `pos` must be an instruction index read from a frame running `iseq`.
pub unsafe fn iseq_line(_gvl: Gvl, iseq: VALUE, pos: usize) -> i64 {
    // SAFETY: per the contract.
    unsafe { raw::rb_iseq_line_no(iseq, pos) as i64 }
}

/// Runs `f` with a String's bytes; None when `v` is not a String. `f` must not change `v`.
pub fn with_string_bytes<R>(gvl: Gvl, v: VALUE, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    if ffi::type_of(gvl, v) != T::RUBY_T_STRING {
        return None;
    }
    // SAFETY: v is a String the caller keeps alive, and nothing changes it while `f` reads
    // the slice (the borrow ends with `f`).
    Some(f(unsafe { ffi::str_bytes(v) }))
}

/// The VM's `rb_thread_t` of the running thread (its address).
pub fn current_thread_struct(_gvl: Gvl) -> usize {
    // SAFETY: GVL held; the current Thread is a TypedData whose data is the VM's rb_thread_t.
    unsafe { rb_sys::RTYPEDDATA_GET_DATA(rb_sys::rb_thread_current()) as usize }
}

/// The VM's `rb_thread_t` of `thread` (0 once the thread is freed); None when it is not a
/// Thread.
pub fn thread_struct(gvl: Gvl, thread: VALUE) -> Option<usize> {
    // SAFETY: rb_cThread is set at boot.
    if !is_kind_of(gvl, thread, unsafe { rb_sys::rb_cThread }) {
        return None;
    }
    // SAFETY: GVL held; a Thread is a TypedData whose data is the VM's rb_thread_t.
    Some(unsafe { rb_sys::RTYPEDDATA_GET_DATA(thread) } as usize)
}

/// Path and line of each Ruby frame of the running thread as `rb_profile_frames` gives them
/// (at most 64, innermost first; C functions left out).
pub fn profile_frames(gvl: Gvl) -> Vec<(String, i64)> {
    let mut buf = [0 as VALUE; 64];
    let mut lines = [0i32; 64];
    // SAFETY: GVL held; both buffers are on this stack (scanned by the GC) and hold 64.
    let n = unsafe { rb_sys::rb_profile_frames(0, 64, buf.as_mut_ptr(), lines.as_mut_ptr()) };
    let mut out = Vec::new();
    for (&frame, &line) in buf.iter().zip(lines.iter()).take(n.max(0) as usize) {
        if line == 0 {
            continue; // a C function
        }
        // SAFETY: `frame` is a frame object rb_profile_frames just returned.
        let p = unsafe { rb_sys::rb_profile_frame_path(frame) };
        out.push((ffi::to_string(gvl, p).unwrap_or_default(), line as i64));
    }
    out
}

/// Whether `id` names a local variable (not a hidden or internal one).
pub fn is_local_id(_gvl: Gvl, id: ID) -> bool {
    // SAFETY: GVL held; checking an ID's kind reads the symbol table only.
    unsafe { rb_sys::rb_is_local_id(id) != 0 }
}

/// Marks `v` for the GC (pinning it).
///
/// # Safety
/// Only inside a mark function (the GC's mark phase), with `v` a live object or an immediate
/// (which is skipped).
pub unsafe fn gc_mark(v: VALUE) {
    // SAFETY: per the contract.
    unsafe { rb_sys::rb_gc_mark(v) }
}

/// The module an included module's iclass stands for; None for anything but an iclass.
pub fn iclass_module(gvl: Gvl, klass: VALUE) -> Option<VALUE> {
    if ffi::type_of(gvl, klass) != T::RUBY_T_ICLASS {
        return None;
    }
    // SAFETY: GVL held; an iclass's RBasic klass is the module it stands for.
    Some(unsafe { (*(klass as *const rb_sys::RBasic)).klass })
}

/// A Symbol for `name`.
pub fn symbol(gvl: Gvl, name: &str) -> VALUE {
    rb_sys::ID2SYM(ffi::intern(gvl, name))
}

/// An instance variable (also an internal one such as `mesg` or `__attached__`), read without
/// calling Ruby code; nil when unset.
pub fn ivar_get(gvl: Gvl, obj: VALUE, name: &str) -> VALUE {
    // SAFETY: GVL held; rb_ivar_get reads a live object's ivar and never raises.
    unsafe { rb_sys::rb_ivar_get(obj, ffi::intern(gvl, name)) }
}

/// Like [`ivar_get`], through `rb_attr_get` (what Ruby uses for the hidden ivars of a
/// refinement).
pub fn attr_get(gvl: Gvl, obj: VALUE, name: &str) -> VALUE {
    // SAFETY: GVL held; rb_attr_get reads an ivar of a live object and never raises.
    unsafe { rb_sys::rb_attr_get(obj, ffi::intern(gvl, name)) }
}

/// `$0`, the process title.
pub fn process_title(gvl: Gvl) -> Option<String> {
    // SAFETY: GVL held; `$0` is always a String or nil.
    let title = unsafe { rb_sys::rb_gv_get(c"$0".as_ptr()) };
    ffi::to_string(gvl, title)
}
