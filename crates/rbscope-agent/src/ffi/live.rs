//! Ruby C API calls used only by the agent's `live/` modules (safe wrappers; the raw
//! declarations rb-sys lacks are in `raw.rs`).
//!
//! Safe where a [`Gvl`] token and the argument types say all that Ruby needs; `unsafe fn`
//! with its contract where the caller must promise more (a pointer that is valid, a hook that
//! is running, the GC's mark phase). Anything that may raise runs under [`protect`].

use super::{intern, protect, type_of, Gvl, Raised, NIL};
use std::ffi::c_void;

pub(crate) use rb_sys::{rb_event_flag_t, rb_trace_arg_t, ruby_value_type, ID, VALUE};

pub const EVENT_CALL: rb_event_flag_t = rb_sys::RUBY_EVENT_CALL as rb_event_flag_t;
pub const EVENT_RETURN: rb_event_flag_t = rb_sys::RUBY_EVENT_RETURN as rb_event_flag_t;
pub const GC_START: rb_event_flag_t = rb_sys::RUBY_INTERNAL_EVENT_GC_START as rb_event_flag_t;
pub const GC_END_MARK: rb_event_flag_t = rb_sys::RUBY_INTERNAL_EVENT_GC_END_MARK as rb_event_flag_t;
pub const GC_END_SWEEP: rb_event_flag_t =
    rb_sys::RUBY_INTERNAL_EVENT_GC_END_SWEEP as rb_event_flag_t;

/// The running Thread.
#[inline]
pub fn thread_current(_gvl: Gvl) -> VALUE {
    // SAFETY: GVL held (token): the VM's current thread is set and stays so during the call.
    unsafe { rb_sys::rb_thread_current() }
}

/// The main Thread.
pub fn thread_main(_gvl: Gvl) -> VALUE {
    // SAFETY: GVL held (token); the main thread exists for the VM's whole life.
    unsafe { rb_sys::rb_thread_main() }
}

/// Yields the GVL to a waiting thread, as `Thread.pass` does.
pub fn thread_schedule(_gvl: Gvl) {
    // SAFETY: GVL held (token): only a thread holding it may give it up this way.
    unsafe { rb_sys::rb_thread_schedule() }
}

/// Starts a Ruby thread running `main(data)`.
///
/// # Safety
/// `main` must accept `data` (it runs on the new thread, holding the GVL, and owns `data`
/// from then on); when this returns `Err`, no thread was made and `data` is still the caller's.
pub unsafe fn thread_create(
    gvl: Gvl,
    main: unsafe extern "C" fn(*mut c_void) -> VALUE,
    data: *mut c_void,
) -> Result<VALUE, Raised> {
    // SAFETY: GVL held (token); `main` and `data` as the caller promised; a raise (no memory
    // for a thread) is caught by `protect`.
    protect(gvl, || unsafe {
        rb_sys::rb_thread_create(Some(main), data)
    })
}

/// Runs `work(data)` without the GVL; the VM calls `unblock(unblock_data)`, possibly from
/// another thread, to make it return when this thread is interrupted. Err when the thread was
/// interrupted (killed, or raised into) after `work` returned.
///
/// # Safety
/// `work` must not touch Ruby; `data` must be valid for `work` and `unblock_data` for
/// `unblock` (from any thread) until this returns, and the two must not alias.
pub unsafe fn call_without_gvl(
    gvl: Gvl,
    work: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    data: *mut c_void,
    unblock: unsafe extern "C" fn(*mut c_void),
    unblock_data: *mut c_void,
) -> Result<(), Raised> {
    protect(gvl, || {
        // SAFETY: GVL held on entry (token); the functions and pointers as the caller
        // promised; a pending interrupt raised on return is caught by `protect`.
        unsafe {
            rb_sys::rb_thread_call_without_gvl(Some(work), data, Some(unblock), unblock_data);
        }
        NIL
    })
    .map(|_| ())
}

/// Registers `job` as a postponed job that any thread may trigger; its handle, or `u32::MAX`
/// when none is free.
#[cfg(ruby_gte_3_3)]
pub fn postponed_job_preregister(_gvl: Gvl, job: unsafe extern "C" fn(*mut c_void)) -> u32 {
    // SAFETY: GVL held (token); `job` takes no data (null), so nothing must outlive this.
    unsafe { rb_sys::rb_postponed_job_preregister(0, Some(job), std::ptr::null_mut()) as u32 }
}

/// Asks the VM to run a preregistered job at its next safe point (from any thread).
///
/// # Safety
/// `handle` must come from [`postponed_job_preregister`] (and not be `u32::MAX`).
#[cfg(ruby_gte_3_3)]
pub unsafe fn postponed_job_trigger(handle: u32) {
    // SAFETY: a valid handle (the caller's promise); triggering is async-signal-safe and needs
    // no GVL.
    unsafe { rb_sys::rb_postponed_job_trigger(handle as rb_sys::rb_postponed_job_handle_t) }
}

/// A C long as a Ruby Integer.
pub fn long(_gvl: Gvl, n: i64) -> VALUE {
    rb_sys::LONG2NUM(n as _)
}

/// GC runs so far.
pub fn gc_count(_gvl: Gvl) -> u64 {
    // SAFETY: GVL held (token); reads a counter, allocates nothing (safe inside GC hooks).
    unsafe { rb_sys::rb_gc_count() as u64 }
}

/// The event of the hook running now.
///
/// # Safety
/// `arg` is the trace argument of the event hook running now on this thread.
#[inline]
pub unsafe fn trace_event(arg: *mut rb_trace_arg_t) -> rb_event_flag_t {
    // SAFETY: the caller's promise: `arg` is live for the running hook.
    unsafe { rb_sys::rb_tracearg_event_flag(arg) }
}

/// The class defining the method of a call or return event, and the method's name (a
/// Symbol).
///
/// # Safety
/// As [`trace_event`].
#[inline]
pub unsafe fn trace_method(arg: *mut rb_trace_arg_t) -> (VALUE, VALUE) {
    // SAFETY: the caller's promise: `arg` is live for the running hook.
    unsafe {
        (
            rb_sys::rb_tracearg_defined_class(arg),
            rb_sys::rb_tracearg_method_id(arg),
        )
    }
}

/// The receiver of the event's method.
///
/// # Safety
/// As [`trace_event`].
pub unsafe fn trace_self(arg: *mut rb_trace_arg_t) -> VALUE {
    // SAFETY: the caller's promise: `arg` is live for the running hook.
    unsafe { rb_sys::rb_tracearg_self(arg) }
}

/// The trace argument of TracePoint `tp`'s running hook.
///
/// # Safety
/// Only inside `tp`'s hook, on the thread running it.
pub unsafe fn trace_arg_of(tp: VALUE) -> *mut rb_trace_arg_t {
    // SAFETY: the caller's promise: `tp`'s hook is running, so it has a current trace arg.
    unsafe { rb_sys::rb_tracearg_from_tracepoint(tp) }
}

/// Whether `obj` is a kind of `module`.
///
/// # Safety
/// `module` must be a Class or Module (anything else raises, through the caller's frames).
pub unsafe fn is_kind_of(_gvl: Gvl, obj: VALUE, module: VALUE) -> bool {
    // SAFETY: GVL held (token); `module` is a Module (the caller's promise), so this never
    // raises and calls no Ruby code.
    super::truthy(unsafe { rb_sys::rb_obj_is_kind_of(obj, module) })
}

/// What a TracePoint calls: `hook(tp, data)`.
pub type TracePointHook = unsafe extern "C" fn(VALUE, *mut c_void);

/// A new (disabled) TracePoint on `events` that calls `hook(tp, data)`.
///
/// # Safety
/// `data` must stay valid for `hook` as long as the TracePoint may fire (until it is disabled
/// and no hook of it runs).
pub unsafe fn tracepoint_new(
    _gvl: Gvl,
    events: rb_event_flag_t,
    hook: TracePointHook,
    data: *mut c_void,
) -> VALUE {
    // SAFETY: GVL held (token); `data` as the caller promised; 0: any thread.
    unsafe { rb_sys::rb_tracepoint_new(0, events, Some(hook), data) }
}

/// Enables the TracePoint `tp`, protected.
pub fn tracepoint_enable(gvl: Gvl, tp: VALUE) -> Result<VALUE, Raised> {
    // SAFETY: GVL held (token); a `tp` that is not a TracePoint raises a TypeError, caught.
    protect(gvl, || unsafe { rb_sys::rb_tracepoint_enable(tp) })
}

/// Disables the TracePoint `tp`, protected.
pub fn tracepoint_disable(gvl: Gvl, tp: VALUE) -> Result<VALUE, Raised> {
    // SAFETY: as `tracepoint_enable`.
    protect(gvl, || unsafe { rb_sys::rb_tracepoint_disable(tp) })
}

/// A new Hash `{key: value}` (a Symbol key), as keyword arguments for [`call_kw`].
pub fn keywords(gvl: Gvl, key: &str, value: VALUE) -> VALUE {
    let key = super::symbol(gvl, key);
    // SAFETY: GVL held (token); the Hash is new (not frozen, no default proc), so storing
    // into it never raises and calls no Ruby code.
    unsafe {
        let h = rb_sys::rb_hash_new();
        rb_sys::rb_hash_aset(h, key, value);
        h
    }
}

/// `recv.name(**kw)`, protected.
pub fn call_kw(gvl: Gvl, recv: VALUE, name: &str, kw: VALUE) -> Result<VALUE, Raised> {
    let mid = intern(gvl, name);
    protect(gvl, || {
        // SAFETY: GVL held (token); one argument, `kw`, which lives on this frame, passed as
        // keywords (kw_splat 1).
        unsafe { rb_sys::rb_funcallv_kw(recv, mid, 1, &kw, 1) }
    })
}

/// Where a captured value starts.
pub enum CaptureRoot {
    SelfValue,
    Ivar(ID),
    /// An argument, by name (a Symbol).
    Arg(VALUE),
}

/// Reads one captured value for the call hook running now: `root`, then each method of
/// `chain` (public, no arguments) on the result, all protected. `binding` keeps the call's
/// binding for the next capture (0: not made yet); `local_variable_get` is that method's ID.
///
/// # Safety
/// `arg` is the trace argument of the call hook running now on this thread, and `recv` its
/// receiver.
pub unsafe fn read_capture(
    gvl: Gvl,
    arg: *mut rb_trace_arg_t,
    recv: VALUE,
    root: &CaptureRoot,
    chain: &[ID],
    binding: &mut VALUE,
    local_variable_get: ID,
) -> Result<VALUE, Raised> {
    protect(gvl, || {
        // SAFETY: GVL held (token); `arg` and `recv` are this call's (the caller's promise),
        // every later receiver is a value just returned (on this frame, so marked); a raise
        // or a method that is not public is caught by `protect`.
        unsafe {
            let mut v = match root {
                CaptureRoot::SelfValue => recv,
                CaptureRoot::Ivar(id) => rb_sys::rb_attr_get(recv, *id),
                CaptureRoot::Arg(sym) => {
                    if *binding == 0 {
                        *binding = rb_sys::rb_tracearg_binding(arg);
                    }
                    if *binding == NIL {
                        return NIL;
                    }
                    rb_sys::rb_funcallv(*binding, local_variable_get, 1, sym)
                }
            };
            for id in chain {
                v = rb_sys::rb_funcallv_public(v, *id, 0, std::ptr::null());
            }
            v
        }
    })
}

/// A Hash's size (0 for anything else).
pub fn hash_size(gvl: Gvl, v: VALUE) -> usize {
    if type_of(gvl, v) != ruby_value_type::RUBY_T_HASH {
        return 0;
    }
    // SAFETY: v is a Hash (checked).
    unsafe { rb_sys::rb_hash_size_num(v) as usize }
}
