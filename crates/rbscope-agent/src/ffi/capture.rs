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
use rbscope_agent_core::capture::own_frames;

pub(crate) use rbscope_agent_core::capture::Inspected;
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

    /// Frame `i` as the inspector's API gives it (no iseq, no control frame). An index the
    /// inspector refuses raises, which ends the inspection ([`with_inspector`] answers Err).
    pub fn frame(&self, i: usize) -> Inspected {
        let i = i as _;
        // SAFETY: `dc` is the open inspector's context; the getters check the index (raising
        // an ArgumentError, caught by the protect around the inspection).
        unsafe {
            Inspected {
                binding: rb_sys::rb_debug_inspector_frame_binding_get(self.dc, i),
                self_value: rb_sys::rb_debug_inspector_frame_self_get(self.dc, i),
                klass: rb_sys::rb_debug_inspector_frame_class_get(self.dc, i),
                iseq: 0,
                cfp: 0,
            }
        }
    }

    /// The inspector's own list of frames (`dc->contexts`: `[self, class, binding, iseq, cfp,
    /// ...]` per frame, innermost first), at least `n` of them, read from the debug context,
    /// which has no API for it: Ruby 3.4 gives locations only for the frames its backtraces
    /// show (a rescue or ensure clause's frame stands for the frame it runs in) while the
    /// per-frame getters count every frame, and refuse the outermost ones. The list is the
    /// fourth word of the context in 3.1 to 3.4 and the third in 4.0; it is used only when its
    /// first frame is the one the API gives for index 0.
    pub fn own_frames(&self, gvl: Gvl, n: usize) -> Option<Vec<Inspected>> {
        if n == 0 {
            return None;
        }
        let first = self.frame(0);
        // SAFETY: `dc` points at the live rb_debug_inspector_struct, at least four words long
        // in 3.1 to 4.0 (ec, cfp, then two VALUEs); words 2 and 3 are VALUEs there.
        let candidates = unsafe {
            let words = self.dc as *const VALUE;
            [*words.add(3), *words.add(2)]
        };
        let entries = |list: VALUE| -> Option<Vec<Vec<VALUE>>> {
            if ffi::type_of(gvl, list) != T::RUBY_T_ARRAY {
                return None;
            }
            let is_array = |e: VALUE| ffi::type_of(gvl, e) == T::RUBY_T_ARRAY;
            ffi::array_items(gvl, list)
                .into_iter()
                .map(|e| is_array(e).then(|| ffi::array_items(gvl, e)))
                .collect()
        };
        own_frames(candidates.into_iter().map(entries), &first, n, NIL)
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
    /// The real path: nil when it has none.
    RealPath,
    Label,
    BaseLabel,
}

/// One of the iseq's location strings as Ruby has it (a String, or nil).
///
/// # Safety
/// `iseq` must be a live iseq, kept alive by whoever holds it.
pub unsafe fn iseq_value(_gvl: Gvl, iseq: VALUE, what: IseqText) -> VALUE {
    // SAFETY: per the contract `iseq` is a live iseq; these accessors only read its location.
    unsafe {
        match what {
            IseqText::Path => raw::rb_iseq_path(iseq),
            IseqText::RealPath => raw::rb_iseq_realpath(iseq),
            IseqText::Label => raw::rb_iseq_label(iseq),
            IseqText::BaseLabel => raw::rb_iseq_base_label(iseq),
        }
    }
}

/// One of the iseq's location strings (empty when it has none).
///
/// # Safety
/// As [`iseq_value`].
pub unsafe fn iseq_text(gvl: Gvl, iseq: VALUE, what: IseqText) -> String {
    // SAFETY: the caller's contract is iseq_value's.
    ffi::to_string(gvl, unsafe { iseq_value(gvl, iseq, what) }).unwrap_or_default()
}

/// The line of instruction `pos` of the iseq.
///
/// # Safety
/// As [`iseq_value`]; `pos` must be an instruction index read from a frame running `iseq`.
pub unsafe fn iseq_line(_gvl: Gvl, iseq: VALUE, pos: usize) -> i64 {
    // SAFETY: the caller promised a live iseq and an instruction index of a frame running it.
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
    // SAFETY: rb_cThread is set at boot and never changes.
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

/// The module an included module's iclass stands for; None for anything but an iclass.
pub fn iclass_module(gvl: Gvl, klass: VALUE) -> Option<VALUE> {
    if ffi::type_of(gvl, klass) != T::RUBY_T_ICLASS {
        return None;
    }
    // SAFETY: GVL held; an iclass's RBasic klass is the module it stands for.
    Some(unsafe { (*(klass as *const rb_sys::RBasic)).klass })
}

/// A Symbol's value as stored (its name, with its encoding when that is not UTF-8); None for
/// anything but a Symbol.
pub fn symbol_value(gvl: Gvl, sym: VALUE) -> Option<rbscope_snapshot::Value> {
    if !is_symbol(sym) {
        return None;
    }
    // SAFETY: GVL held; sym is a Symbol (checked), whose name rb_sym2str returns.
    let s = unsafe { rb_sys::rb_sym2str(sym) };
    with_string_bytes(gvl, s, |bytes| {
        rbscope_snapshot::Value::symbol(bytes, || encoding_name(gvl, s))
    })
}

/// `v`'s singleton class when it has one (it was extended, or given singleton methods); None
/// otherwise. Reads the class pointer: no singleton class is made.
pub fn own_singleton_class(gvl: Gvl, v: VALUE) -> Option<VALUE> {
    if is_special_const(v) {
        return None;
    }
    // SAFETY: GVL held; v is a live heap object (not an immediate), which starts with RBasic.
    let klass = unsafe { (*(v as *const rb_sys::RBasic)).klass };
    ffi::is_singleton_class(gvl, klass).then_some(klass)
}

/// The ancestors of `singleton` (an object's singleton class) and the object's own singleton
/// methods (Symbols), read with the C functions behind `Module#ancestors` and
/// `singleton_methods(false)`: no method of the app runs.
pub fn singleton_parts(gvl: Gvl, v: VALUE, singleton: VALUE) -> (Vec<VALUE>, Vec<VALUE>) {
    let own_only = ffi::FALSE;
    let lists = [
        // SAFETY: GVL held; singleton is a class; a raise is caught.
        ffi::protect(gvl, || unsafe { rb_sys::rb_mod_ancestors(singleton) }),
        // SAFETY: GVL held; one argument (false: the object's own methods only) that outlives
        // the call; a raise is caught.
        ffi::protect(gvl, || unsafe {
            rb_sys::rb_obj_singleton_methods(1, &own_only, v)
        }),
    ];
    let [a, m] = lists.map(|l| l.map(|l| ffi::array_items(gvl, l)).unwrap_or_default());
    (a, m)
}

/// The superclass of `class` (a Class), read by `Class#superclass`'s C function; None at the
/// top.
pub fn superclass(_gvl: Gvl, class: VALUE) -> Option<VALUE> {
    // SAFETY: GVL held; callers pass a Class, whose chain rb_class_superclass reads.
    let s = unsafe { rb_sys::rb_class_superclass(class) };
    (s != NIL).then_some(s)
}

/// An instance variable (also an internal one such as `mesg` or `__attached__`), read without
/// calling Ruby code; nil when unset.
pub fn ivar_get(gvl: Gvl, obj: VALUE, name: &str) -> VALUE {
    // SAFETY: GVL held; rb_ivar_get reads a live object's ivar and never raises.
    unsafe { rb_sys::rb_ivar_get(obj, ffi::intern(gvl, name)) }
}

/// `$0`, the process title.
pub fn process_title(gvl: Gvl) -> Option<String> {
    // SAFETY: GVL held; `$0` is always a String or nil.
    let title = unsafe { rb_sys::rb_gv_get(c"$0".as_ptr()) };
    ffi::to_string(gvl, title)
}

// ---- Reading objects for the snapshot's graph (capture/graph.rs) ----

/// Core classes the graph walk recognises.
#[derive(Clone, Copy)]
pub enum Core {
    Exception,
    Range,
    Time,
    Thread,
    UnboundMethod,
}

/// A core class (set at boot, never changed).
pub fn core_class(c: Core) -> VALUE {
    // SAFETY: these globals are initialised before any extension loads and never change.
    unsafe {
        match c {
            Core::Exception => rb_sys::rb_eException,
            Core::Range => rb_sys::rb_cRange,
            Core::Time => rb_sys::rb_cTime,
            Core::Thread => rb_sys::rb_cThread,
            Core::UnboundMethod => rb_sys::rb_cUnboundMethod,
        }
    }
}

/// Whether `v` is an immediate (nil, true, false, a Fixnum, a static Symbol, a flonum...).
pub fn is_special_const(v: VALUE) -> bool {
    rb_sys::SPECIAL_CONST_P(v)
}

/// Whether `v` is a Symbol (static or dynamic).
pub fn is_symbol(v: VALUE) -> bool {
    // SAFETY: RB_SYMBOL_P reads the tag bits, or the header of a valid heap object.
    unsafe { rb_sys::RB_SYMBOL_P(v) }
}

pub fn is_frozen(_gvl: Gvl, v: VALUE) -> bool {
    // SAFETY: GVL held; rb_obj_frozen_p reads the flags of any valid VALUE.
    ffi::truthy(unsafe { rb_sys::rb_obj_frozen_p(v) })
}

/// A Range's begin, end and whether it excludes its end; None when it cannot be read.
pub fn range_values(gvl: Gvl, v: VALUE) -> Option<(VALUE, VALUE, bool)> {
    if !is_kind_of(gvl, v, core_class(Core::Range)) {
        return None;
    }
    let (mut b, mut e, mut excl) = (NIL, NIL, 0i32);
    // SAFETY: GVL held; v is a Range, whose fields rb_range_values reads; the out-pointers are
    // locals.
    let ok = unsafe { rb_sys::rb_range_values(v, &mut b, &mut e, &mut excl) } != 0;
    ok.then_some((b, e, excl != 0))
}

/// `#<Class:0x...>` for `v`, built from its class and address only (no Ruby method).
pub fn any_to_s(gvl: Gvl, v: VALUE) -> String {
    // SAFETY: GVL held; rb_any_to_s never calls Ruby code.
    let s = unsafe { rb_sys::rb_any_to_s(v) };
    ffi::to_string(gvl, s).unwrap_or_default()
}

/// The member names of a Struct's class (empty when they cannot be read).
pub fn struct_member_names(gvl: Gvl, v: VALUE) -> Vec<String> {
    // SAFETY: GVL held; v is a Struct; rb_struct_members returns its member names (a raise
    // is caught).
    let syms = ffi::protect(gvl, || unsafe { rb_sys::rb_struct_members(v) }).unwrap_or(NIL);
    ffi::array_items(gvl, syms)
        .into_iter()
        .map(|s| ffi::symbol_name(gvl, s).unwrap_or_default())
        .collect()
}

/// Member `i` of a Struct (nil when it cannot be read).
pub fn struct_get(gvl: Gvl, v: VALUE, i: usize) -> VALUE {
    let index = ffi::u64_value(gvl, i as u64);
    // SAFETY: GVL held; rb_struct_aref with an index reads the slot directly (an index out of
    // range raises, which is caught).
    ffi::protect(gvl, || unsafe { rb_sys::rb_struct_aref(v, index) }).unwrap_or(NIL)
}

/// A Regexp's source and options.
pub fn regexp_parts(gvl: Gvl, v: VALUE) -> (String, u32) {
    if ffi::type_of(gvl, v) != T::RUBY_T_REGEXP {
        return (String::new(), 0);
    }
    // SAFETY: v is a Regexp: an RRegexp whose `src` is its source String.
    let src = unsafe { (*(v as *const rb_sys::RRegexp)).src };
    // SAFETY: v is a Regexp (checked above); a raise is caught.
    let options = ffi::protect(gvl, || unsafe { rb_sys::rb_reg_options(v) } as VALUE)
        .map(|o| o as u32)
        .unwrap_or(0);
    (ffi::to_string(gvl, src).unwrap_or_default(), options)
}

/// A Rational's numerator and denominator.
pub fn rational_parts(gvl: Gvl, v: VALUE) -> (VALUE, VALUE) {
    if ffi::type_of(gvl, v) != T::RUBY_T_RATIONAL {
        return (NIL, NIL);
    }
    // SAFETY: GVL held; v is a Rational (checked above), whose parts these read.
    unsafe { (rb_sys::rb_rational_num(v), rb_sys::rb_rational_den(v)) }
}

/// A Complex's real and imaginary parts.
pub fn complex_parts(gvl: Gvl, v: VALUE) -> (VALUE, VALUE) {
    if ffi::type_of(gvl, v) != T::RUBY_T_COMPLEX {
        return (NIL, NIL);
    }
    // SAFETY: GVL held; v is a Complex (checked above), whose parts these read.
    unsafe { (rb_sys::rb_complex_real(v), rb_sys::rb_complex_imag(v)) }
}

/// The name of a String's encoding (`ASCII-8BIT` when it has none).
pub fn encoding_name(gvl: Gvl, v: VALUE) -> String {
    if ffi::type_of(gvl, v) != T::RUBY_T_STRING {
        return String::from("ASCII-8BIT");
    }
    // SAFETY: GVL held; rb_enc_get returns the string's encoding (or null), whose name is a
    // static C string, copied at once.
    unsafe {
        let enc = rb_sys::rb_enc_get(v);
        if enc.is_null() || (*enc).name.is_null() {
            String::from("ASCII-8BIT")
        } else {
            std::ffi::CStr::from_ptr((*enc).name)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// The first `limit` members of a Ruby 4.0 Set (a core class with a table of its own), and
/// how many it has, read with `rb_set_foreach` (no Ruby code runs).
#[cfg(ruby_gte_4_0)]
pub fn set_members(gvl: Gvl, v: VALUE, limit: usize) -> (Vec<VALUE>, usize) {
    use rb_sys::st_retval::{ST_CONTINUE, ST_STOP};
    use rbscope_agent_core::capture::FirstN;
    unsafe extern "C" fn each(member: VALUE, arg: VALUE) -> i32 {
        guard::run(Feature::Capture, "reading a set", ST_STOP as i32, || {
            // SAFETY: arg is the FirstN below, alive for the whole rb_set_foreach call.
            unsafe { &mut *(arg as *mut FirstN<VALUE>) }.offer(member);
            ST_CONTINUE as i32
        })
    }
    let mut acc = FirstN::new(limit);
    let acc_ptr = &mut acc as *mut FirstN<VALUE> as VALUE;
    let _ = ffi::protect(gvl, || {
        // SAFETY: v is a Set (the caller checked its class); `each` neither calls Ruby nor
        // allocates Ruby objects, and the members stay alive: GC is paused while a report
        // walks the graph.
        unsafe { rb_sys::rb_set_foreach(v, Some(each), acc_ptr) };
        NIL
    });
    (acc.items, acc.total)
}

/// A Time's seconds, nanoseconds and UTC offset (a part that cannot be read is 0); None when
/// the time cannot be read at all.
pub fn time_parts(gvl: Gvl, v: VALUE) -> Option<(i64, i64, i64)> {
    if !is_kind_of(gvl, v, core_class(Core::Time)) {
        return None;
    }
    let (mut seconds, mut nanoseconds, mut offset) = (0i64, 0i64, NIL);
    // Read inside `protect`: rb_time_timespec and rb_time_utc_offset may raise.
    ffi::protect(gvl, || {
        // SAFETY: GVL held; v is a Time (checked above), whose own figures these read.
        unsafe {
            let t = rb_sys::rb_time_timespec(v);
            (seconds, nanoseconds) = (t.tv_sec as i64, t.tv_nsec as i64);
            offset = rb_sys::rb_time_utc_offset(v);
        }
        NIL
    })
    .ok()?;
    // SAFETY: GVL held; rb_num2ll may raise, which protect catches.
    let offset = ffi::protect(gvl, || unsafe { rb_sys::rb_num2ll(offset) as VALUE })
        .map(|n| n as i64)
        .unwrap_or(0);
    Some((seconds, nanoseconds, offset))
}

/// A Proc's lambda-ness and arity; None for anything but a Proc.
pub fn proc_parts(gvl: Gvl, v: VALUE) -> Option<(bool, i32)> {
    // SAFETY: GVL held; rb_obj_is_proc accepts any VALUE.
    if !ffi::truthy(unsafe { rb_sys::rb_obj_is_proc(v) }) {
        return None;
    }
    // SAFETY: v is a Proc (rb_obj_is_proc said so); rb_proc_lambda_p reads its flag.
    let lambda = ffi::truthy(unsafe { rb_sys::rb_proc_lambda_p(v) });
    // SAFETY: v is a Proc; a raise is caught.
    let arity = ffi::protect(gvl, || unsafe { rb_sys::rb_proc_arity(v) } as isize
        as VALUE)
    .map(|a| a as isize as i32)
    .unwrap_or(-1);
    Some((lambda, arity))
}

/// Whether `v` is a Method or UnboundMethod.
pub fn is_method(_gvl: Gvl, v: VALUE) -> bool {
    // SAFETY: GVL held; rb_obj_is_method accepts any VALUE.
    ffi::truthy(unsafe { rb_sys::rb_obj_is_method(v) })
}

// ---- Building a restore's plain arrays (capture/restore_data.rs) ----

/// Builds Ruby objects for rbscope-agent-core's restore shapes. Each object is pushed into a
/// parent reachable from the root array (which the caller keeps on its stack) as soon as it is
/// made.
pub struct RubyBuild(pub Gvl);

impl rbscope_agent_core::restore_data::Build for RubyBuild {
    type Obj = VALUE;

    fn array(&self, capacity: usize) -> VALUE {
        // SAFETY: GVL held (the token); the new array is pushed into a reachable parent or
        // returned to Ruby right away.
        unsafe { rb_sys::rb_ary_new_capa(capacity as _) }
    }

    fn push(&self, array: VALUE, v: VALUE) {
        // SAFETY: GVL held; `array` is an Array this builder made.
        unsafe { rb_sys::rb_ary_push(array, v) };
    }

    fn str(&self, s: &str) -> VALUE {
        ffi::str_new(self.0, s)
    }

    fn bytes(&self, bytes: &[u8], encoding: &str) -> VALUE {
        // SAFETY: GVL held; pointer and length describe `bytes`, which Ruby copies.
        let s = unsafe { rb_sys::rb_str_new(bytes.as_ptr() as *const _, bytes.len() as _) };
        if let Ok(name) = std::ffi::CString::new(encoding) {
            // SAFETY: a NUL-terminated name; -1 (unknown) leaves the string binary.
            let idx = unsafe { rb_sys::rb_enc_find_index(name.as_ptr()) };
            if idx >= 0 {
                // SAFETY: a valid encoding index for a fresh String.
                unsafe { rb_sys::rb_enc_associate_index(s, idx) };
            }
        }
        s
    }

    fn int(&self, n: i64) -> VALUE {
        // SAFETY: GVL held; builds a Fixnum or Bignum, no other precondition.
        unsafe { rb_sys::rb_ll2inum(n) }
    }

    fn big_int(&self, decimal: &str) -> VALUE {
        match std::ffi::CString::new(decimal) {
            // SAFETY: GVL held; a NUL-terminated decimal string; badcheck 0 never raises.
            Ok(c) => unsafe { rb_sys::rb_cstr_to_inum(c.as_ptr(), 10, 0) },
            Err(_) => NIL,
        }
    }

    fn float(&self, f: f64) -> VALUE {
        // SAFETY: GVL held; builds a Float (flonum or heap), no other precondition.
        unsafe { rb_sys::rb_float_new(f) }
    }

    fn sym(&self, name: &str) -> VALUE {
        if name.is_ascii() {
            return ffi::symbol(self.0, name);
        }
        // `name.to_sym` of the UTF-8 text, never an error.
        ffi::encoded_symbol(self.0, ffi::str_new(self.0, name)).unwrap_or(NIL)
    }

    fn sym_bytes(&self, bytes: &[u8], encoding: &str) -> VALUE {
        let s = rbscope_agent_core::restore_data::Build::bytes(self, bytes, encoding);
        // Bytes that are not valid in their encoding make no Symbol: the String instead.
        ffi::encoded_symbol(self.0, s).unwrap_or(s)
    }

    fn bool(&self, b: bool) -> VALUE {
        if b {
            ffi::TRUE
        } else {
            ffi::FALSE
        }
    }

    fn nil(&self) -> VALUE {
        NIL
    }
}

/// Core classes' own methods (see [`ffi::core_call`]), each UnboundMethod looked up once per
/// holder. Only for as long as GC is paused (a report's walk): the cached methods are not
/// marked.
#[derive(Default)]
pub struct CoreMethods(std::collections::HashMap<(&'static str, &'static str), VALUE>);

impl CoreMethods {
    /// `Core.instance_method(name).bind_call(v, *args)`, protected.
    pub fn call(
        &mut self,
        gvl: Gvl,
        v: VALUE,
        core: &'static str,
        name: &'static str,
        args: &[VALUE],
    ) -> Option<VALUE> {
        let um = match self.0.get(&(core, name)) {
            Some(um) => *um,
            None => {
                let um = ffi::core_method(gvl, core, name).ok()?;
                self.0.insert((core, name), um);
                um
            }
        };
        ffi::bind_call(gvl, um, v, args).ok()
    }

    /// [`CoreMethods::call`] for a method that answers a String.
    pub fn text(
        &mut self,
        gvl: Gvl,
        v: VALUE,
        core: &'static str,
        name: &'static str,
        args: &[VALUE],
    ) -> Option<String> {
        let s = self.call(gvl, v, core, name, args)?;
        ffi::to_string(gvl, s)
    }
}

// ---- Reading an exception for its report (capture/report.rs) ----

/// A binding's local variables, in the VM's order, through core methods only.
pub fn binding_locals(gvl: Gvl, binding: VALUE) -> Vec<(String, VALUE)> {
    if binding == NIL {
        return Vec::new();
    }
    let Ok(names) = ffi::core_call(gvl, "Binding", "local_variables", binding, &[]) else {
        return Vec::new();
    };
    ffi::array_items(gvl, names)
        .into_iter()
        .filter_map(|sym| {
            let name = ffi::symbol_name(gvl, sym)?;
            let v = ffi::core_call(gvl, "Binding", "local_variable_get", binding, &[sym]).ok()?;
            Some((name, v))
        })
        .collect()
}

/// An exception's cause (None for none, or when it cannot be read).
pub fn exception_cause(gvl: Gvl, exc: VALUE) -> Option<VALUE> {
    ffi::core_call(gvl, "Exception", "cause", exc, &[])
        .ok()
        .filter(|c| *c != NIL)
}

/// An exception's message. `message` is the one method rbscope calls that an app may
/// define (as Ruby's own error printer does); a failure falls back to the stored text (the
/// internal `mesg` ivar, read without running Ruby code).
pub fn exception_message(gvl: Gvl, exc: VALUE) -> String {
    ffi::call(gvl, exc, "message", &[])
        .ok()
        .and_then(|m| ffi::to_string(gvl, m))
        .or_else(|| ffi::to_string(gvl, ivar_get(gvl, exc, "mesg")))
        .unwrap_or_default()
}

/// The backtrace lines of an exception or a thread (`core` is "Exception" or "Thread",
/// whose own `backtrace` is called), at most `max`.
pub fn backtrace_lines(gvl: Gvl, core: &str, v: VALUE, max: usize) -> Vec<String> {
    let bt = ffi::core_call(gvl, core, "backtrace", v, &[]).unwrap_or(NIL);
    ffi::array_items(gvl, bt)
        .into_iter()
        .take(max)
        .filter_map(|l| ffi::to_string(gvl, l))
        .collect()
}
