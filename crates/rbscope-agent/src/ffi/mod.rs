//! The one place for raw Ruby C API calls.
//!
//! Everything here must be called on a Ruby thread that holds the GVL; callers prove it by
//! holding a [`Gvl`] token, which only code entered from Ruby can make. Any call that may raise
//! goes through [`protect`], so a Ruby exception never unwinds through Rust frames: the error is
//! cleared and returned as `Err`, and the caller counts it and moves on.

pub(crate) mod capture;
pub(crate) mod guard;
pub(crate) mod heap;
pub(crate) mod live;
pub(crate) mod marker;
pub(crate) mod raw;

use rb_sys::{
    rb_funcallv, rb_id2str, rb_intern2, rb_mod_name, rb_obj_class, rb_protect, rb_set_errinfo,
    ruby_value_type, Qfalse, Qnil, Qtrue, RSTRING_LEN, RSTRING_PTR,
};
/// A Ruby object reference and an interned name, as every other module names them.
pub(crate) use rb_sys::{ID, VALUE};
use std::ffi::c_int;
use std::marker::PhantomData;

/// Proof that the current thread is a Ruby thread holding the GVL. Not `Send`.
#[derive(Clone, Copy)]
pub struct Gvl(PhantomData<*mut ()>);

impl Gvl {
    /// # Safety
    /// The caller must be running on a Ruby thread with the GVL held (a method called from
    /// Ruby, an event hook, a debug inspector callback).
    pub unsafe fn assume() -> Gvl {
        Gvl(PhantomData)
    }
}

pub const NIL: VALUE = Qnil as VALUE;
pub const TRUE: VALUE = Qtrue as VALUE;
pub const FALSE: VALUE = Qfalse as VALUE;

/// The error of a live request that needs `Rbscope::Live` when the process has not loaded it.
pub const LIVE_NOT_LOADED: &str =
    "the rbscope gem's Ruby half (rbscope/live) is not loaded in this process";

/// A Ruby exception (or other non-local exit) that [`protect`] caught and cleared.
#[derive(Debug, Clone, Copy)]
pub struct Raised;

struct Thunk<'a> {
    f: &'a mut dyn FnMut() -> VALUE,
    /// Set when `f` panicked (the panic cannot unwind through rb_protect's C frame).
    panicked: bool,
}

unsafe extern "C" fn call_thunk(arg: VALUE) -> VALUE {
    // SAFETY: `arg` is the address of a live `Thunk` on `protect`'s stack frame.
    let thunk = unsafe { &mut *(arg as *mut Thunk) };
    match guard::catch_nested("a call into Ruby", || (thunk.f)()) {
        Some(v) => v,
        None => {
            thunk.panicked = true;
            NIL
        }
    }
}

/// Runs `f` under `rb_protect`. `f` must not own values with destructors across the Ruby
/// calls it makes (a raise would skip them); it should only pass VALUEs around.
pub fn protect(_gvl: Gvl, mut f: impl FnMut() -> VALUE) -> Result<VALUE, Raised> {
    let mut thunk = Thunk {
        f: &mut f,
        panicked: false,
    };
    let mut state: c_int = 0;
    // SAFETY: we hold the GVL (token); `call_thunk` receives a pointer to `thunk`, which lives
    // until rb_protect returns.
    let v = unsafe {
        rb_protect(
            Some(call_thunk),
            &mut thunk as *mut Thunk as VALUE,
            &mut state,
        )
    };
    if state != 0 {
        // SAFETY: GVL held; clearing $! is what rb_protect's contract asks of us.
        unsafe { rb_set_errinfo(NIL) };
        Err(Raised)
    } else if thunk.panicked {
        Err(Raised)
    } else {
        Ok(v)
    }
}

/// Interns a method or variable name.
pub fn intern(_gvl: Gvl, name: &str) -> ID {
    // SAFETY: GVL held; the pointer and length describe `name`.
    unsafe { rb_intern2(name.as_ptr() as *const _, name.len() as _) }
}

/// Calls `recv.name(*args)`, protected.
pub fn call(gvl: Gvl, recv: VALUE, name: &str, args: &[VALUE]) -> Result<VALUE, Raised> {
    let mid = intern(gvl, name);
    protect(gvl, || {
        // SAFETY: GVL held; `args` outlives the call.
        unsafe { rb_funcallv(recv, mid, args.len() as c_int, args.as_ptr()) }
    })
}

/// The bytes of a Ruby String. Valid until the string is mutated or collected.
///
/// # Safety
/// `v` must be a T_STRING that stays alive and unmodified while the slice is used.
#[inline]
pub unsafe fn str_bytes<'a>(v: VALUE) -> &'a [u8] {
    // SAFETY: per the caller's promise, v is a live String: its pointer is valid for its
    // length (a negative length cannot happen; it is read as empty).
    unsafe {
        let len = RSTRING_LEN(v).max(0) as usize;
        if len == 0 {
            return &[];
        }
        std::slice::from_raw_parts(RSTRING_PTR(v) as *const u8, len)
    }
}

/// The Ruby type tag of `v`.
pub fn type_of(_gvl: Gvl, v: VALUE) -> ruby_value_type {
    // SAFETY: RB_TYPE reads the tag bits or the object header of any valid VALUE.
    unsafe { rb_sys::RB_TYPE(v) }
}

/// A String VALUE as Rust text (lossy), or None if `v` is not a String.
pub fn to_string(gvl: Gvl, v: VALUE) -> Option<String> {
    if type_of(gvl, v) != ruby_value_type::RUBY_T_STRING {
        return None;
    }
    // SAFETY: v is a String; we copy its bytes out immediately.
    Some(String::from_utf8_lossy(unsafe { str_bytes(v) }).into_owned())
}

/// The name of an ID (`:foo` gives "foo"), or None for internal IDs without one.
pub fn id_name(gvl: Gvl, id: ID) -> Option<String> {
    // SAFETY: GVL held; rb_id2str returns 0 (false) for IDs without a name.
    let s = unsafe { rb_id2str(id) };
    if s == 0 || s == NIL {
        return None;
    }
    to_string(gvl, s)
}

/// A Symbol's name.
pub fn symbol_name(gvl: Gvl, sym: VALUE) -> Option<String> {
    // SAFETY: GVL held; callers pass Symbols only (checked by RB_SYMBOL_P).
    unsafe {
        if !rb_sys::RB_SYMBOL_P(sym) {
            return None;
        }
        to_string(gvl, rb_sys::rb_sym2str(sym))
    }
}

/// The permanent name of a class or module, or None if it is anonymous.
pub fn module_name(gvl: Gvl, module: VALUE) -> Option<String> {
    // SAFETY: GVL held; rb_mod_name accepts any Module and returns nil for anonymous ones.
    let name = unsafe { rb_mod_name(module) };
    to_string(gvl, name)
}

/// A readable class path: the name, `#<Class:0x...>` for an anonymous class, and for a
/// singleton class what `inspect` shows (`#<Class:#<Object:0x...>>`, `#<Class:Foo>`), built
/// without calling the object's own `inspect`.
pub fn class_path(gvl: Gvl, module: VALUE) -> String {
    if let Some(n) = module_name(gvl, module) {
        return n;
    }
    if is_singleton_class(gvl, module) {
        let attached = attached_object(gvl, module);
        let inner = match type_of(gvl, attached) {
            ruby_value_type::RUBY_T_CLASS | ruby_value_type::RUBY_T_MODULE => {
                class_path(gvl, attached)
            }
            _ => format!("#<{}:0x{:016x}>", class_name_of(gvl, attached), attached),
        };
        return format!("#<Class:{inner}>");
    }
    // SAFETY: GVL held; rb_class_path never raises for a Module and builds "#<Class:0x...>".
    let p = unsafe { rb_sys::rb_class_path(module) };
    to_string(gvl, p).unwrap_or_else(|| "#<anonymous>".into())
}

/// The class path of an object's class (singleton classes skipped).
pub fn class_name_of(gvl: Gvl, v: VALUE) -> String {
    // SAFETY: GVL held; rb_obj_class is defined for every VALUE.
    class_path(gvl, unsafe { rb_obj_class(v) })
}

pub fn truthy(v: VALUE) -> bool {
    v != NIL && v != FALSE
}

/// Looks up a constant by path (`"Foo::Bar"`) without autoloading or raising.
pub fn const_at(gvl: Gvl, path: &str) -> Option<VALUE> {
    // SAFETY: rb_cObject is initialised before any extension loads and never changes.
    let mut cur = unsafe { rb_sys::rb_cObject };
    for part in path.split("::").filter(|p| !p.is_empty()) {
        let id = intern(gvl, part);
        // SAFETY: GVL held; rb_const_defined_at does not trigger autoload or raise.
        let defined = unsafe { rb_sys::rb_const_defined_at(cur, id) } != 0;
        if !defined {
            return None;
        }
        // SAFETY: GVL held; the constant exists, so rb_const_get_at only reads it (an autoload
        // entry could load a file, which is why magic roots must be loaded already).
        cur = protect(gvl, || unsafe { rb_sys::rb_const_get_at(cur, id) }).ok()?;
    }
    Some(cur)
}

/// `Const.name` (no arguments) for the constant at `path`, protected; None when the constant
/// is missing or the call raised.
pub fn call_const(gvl: Gvl, path: &str, name: &str) -> Option<VALUE> {
    const_at(gvl, path).and_then(|c| call(gvl, c, name, &[]).ok())
}

/// The text of the String constant at `path` (`RUBY_VERSION`); empty when there is none.
pub fn const_text(gvl: Gvl, path: &str) -> String {
    const_at(gvl, path)
        .and_then(|v| to_string(gvl, v))
        .unwrap_or_default()
}

/// Calls `Core.instance_method(name).bind_call(recv, *args)`: the core class's own method,
/// which an application subclass or singleton cannot intercept.
pub fn core_call(
    gvl: Gvl,
    core: &str,
    name: &str,
    recv: VALUE,
    args: &[VALUE],
) -> Result<VALUE, Raised> {
    let um = core_method(gvl, core, name)?;
    bind_call(gvl, um, recv, args)
}

/// `Core.instance_method(name)`: a core class's own method, as an UnboundMethod.
pub fn core_method(gvl: Gvl, core: &str, name: &str) -> Result<VALUE, Raised> {
    let class = const_at(gvl, core).ok_or(Raised)?;
    call(gvl, class, "instance_method", &[symbol(gvl, name)])
}

/// `um.bind_call(recv, *args)` (at most three args), protected. Runs once per captured
/// Hash, Time, Date ... so the method's ID is interned once per process (interned IDs of
/// static names live forever).
pub fn bind_call(gvl: Gvl, um: VALUE, recv: VALUE, args: &[VALUE]) -> Result<VALUE, Raised> {
    static BIND_CALL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut mid = BIND_CALL.load(std::sync::atomic::Ordering::Relaxed) as ID;
    if mid == 0 {
        mid = intern(gvl, "bind_call");
        BIND_CALL.store(mid as usize, std::sync::atomic::Ordering::Relaxed);
    }
    let mut all = [recv; 4];
    let n = args.len().min(3);
    for (slot, arg) in all.iter_mut().skip(1).zip(args) {
        *slot = *arg;
    }
    protect(gvl, || {
        // SAFETY: GVL held; `all` outlives the call and holds n + 1 arguments.
        unsafe { rb_funcallv(um, mid, (n + 1) as c_int, all.as_ptr()) }
    })
}

/// The elements of a Ruby Array (empty for anything else).
pub fn array_items(gvl: Gvl, v: VALUE) -> Vec<VALUE> {
    if type_of(gvl, v) != ruby_value_type::RUBY_T_ARRAY {
        return Vec::new();
    }
    // SAFETY: v is an Array; we copy the element VALUEs out.
    unsafe {
        let n = rb_sys::RARRAY_LEN(v);
        (0..n).map(|i| rb_sys::RARRAY_AREF(v, i as isize)).collect()
    }
}

/// An Array's length (0 for anything else).
pub fn array_len(gvl: Gvl, v: VALUE) -> usize {
    if type_of(gvl, v) != ruby_value_type::RUBY_T_ARRAY {
        return 0;
    }
    // SAFETY: v is an Array (checked above), whose length field RARRAY_LEN reads.
    unsafe { rb_sys::RARRAY_LEN(v) as usize }
}

/// Item `i` of an Array, checked against its length now (None past its end, or for anything
/// else).
pub fn array_at(gvl: Gvl, v: VALUE, i: usize) -> Option<VALUE> {
    // SAFETY: array_len checked that v is an Array, and i is below its current length.
    (i < array_len(gvl, v)).then(|| unsafe { rb_sys::RARRAY_AREF(v, i as isize) })
}

/// The Symbol for `name`: the one Ruby code gets for `:name`. (rb-sys's `ID2SYM` only
/// shifts the ID, which is right for a static symbol but makes a second, unequal Symbol when
/// the name already exists as a dynamic one, made by `to_sym`.)
pub fn symbol(gvl: Gvl, name: &str) -> VALUE {
    let id = intern(gvl, name);
    // SAFETY: GVL held; `id` was just interned, and rb_id2sym returns its Symbol (static or
    // dynamic) without raising.
    unsafe { rb_sys::rb_id2sym(id) }
}

/// `s.to_sym` for a String `s`, equal to the app's own Symbol (a dynamic one when none exists,
/// so a hostile snapshot cannot fill the symbol table for good): Err when its bytes are not
/// valid in its encoding (Ruby refuses such a symbol).
pub fn encoded_symbol(gvl: Gvl, s: VALUE) -> Result<VALUE, Raised> {
    // SAFETY: GVL held; `s` is a String; rb_str_intern may raise (invalid bytes), which
    // protect catches.
    protect(gvl, || unsafe { rb_sys::rb_str_intern(s) })
}

/// Marks `v` for the GC (pinning it).
///
/// # Safety
/// Only inside a mark function (the GC's mark phase, which holds the GVL), with `v` a VALUE
/// that has not been freed, or an immediate (which is skipped).
#[inline]
pub unsafe fn gc_mark(v: VALUE) {
    // Immediates (Fixnums, Symbols, Flonums: low bits set; false and nil) are skipped here,
    // without a call: a copied VM stack is mostly such words.
    if v & 0x07 != 0 || v & !0x08 == 0 {
        return;
    }
    // SAFETY: the caller promised we are in the GC's mark phase and `v` is live or immediate.
    unsafe { rb_sys::rb_gc_mark(v) }
}

/// A Float's value; None for anything else.
pub fn float_value(_gvl: Gvl, v: VALUE) -> Option<f64> {
    // SAFETY: RB_FLOAT_TYPE_P accepts any valid VALUE; rb_float_value then reads a Float.
    unsafe { rb_sys::RB_FLOAT_TYPE_P(v).then(|| rb_sys::rb_float_value(v)) }
}

/// A Bignum's decimal digits (None for anything else).
pub fn bignum_string(gvl: Gvl, v: VALUE) -> Option<String> {
    if type_of(gvl, v) != ruby_value_type::RUBY_T_BIGNUM {
        return None;
    }
    // SAFETY: GVL held; v is a Bignum (checked), which rb_big2str formats in base 10 without
    // calling Ruby code (it only allocates the String).
    let s = unsafe { rb_sys::rb_big2str(v, 10) };
    to_string(gvl, s)
}

/// A walk's callback, and the feature and words the guard knows it by, for `walk_pair`.
struct Walk<'a> {
    feature: guard::Feature,
    what: &'static str,
    each: &'a mut dyn FnMut(VALUE, VALUE) -> bool,
}

/// The callback of both `rb_hash_foreach` and `rb_ivar_foreach` (an ID and an `st_data_t` are
/// VALUE-sized integers, the same C type): one pair, for the Walk at `data`.
unsafe extern "C" fn walk_pair(k: VALUE, v: VALUE, data: VALUE) -> c_int {
    use rb_sys::st_retval::{ST_CONTINUE, ST_STOP};
    // SAFETY: `data` is the Walk on `hash_each`'s or `ivar_each`'s frame, alive for the whole
    // walk.
    let walk = unsafe { &mut *(data as *mut Walk) };
    let (go_on, stop) = (ST_CONTINUE as c_int, ST_STOP as c_int);
    guard::run(walk.feature, walk.what, stop, || {
        if (walk.each)(k, v) {
            go_on
        } else {
            stop
        }
    })
}

/// Calls `each(key, value)` for the pairs of the Hash `v` until it returns false (nothing for
/// anything else), protected. A panic in `each` ends the walk and turns `feature` off (`what`
/// names it). `each` must not change the Hash.
pub fn hash_each(
    gvl: Gvl,
    v: VALUE,
    feature: guard::Feature,
    what: &'static str,
    each: &mut dyn FnMut(VALUE, VALUE) -> bool,
) {
    if type_of(gvl, v) != ruby_value_type::RUBY_T_HASH {
        return;
    }
    let mut walk = Walk {
        feature,
        what,
        each,
    };
    let data = &mut walk as *mut Walk as VALUE;
    let _ = protect(gvl, || {
        // SAFETY: GVL held (token); v is a Hash (checked); `walk_pair` has the callback's
        // signature and `data` outlives the walk.
        unsafe { rb_sys::rb_hash_foreach(v, Some(walk_pair), data) };
        NIL
    });
}

/// Calls `each(name, value)` for the instance variables of `v` (also internal ones) until it
/// returns false. A panic in `each` ends the walk and turns `feature` off (`what` names it).
/// `each` must not change the object.
pub fn ivar_each(
    _gvl: Gvl,
    v: VALUE,
    feature: guard::Feature,
    what: &'static str,
    each: &mut dyn FnMut(ID, VALUE) -> bool,
) {
    let mut walk = Walk {
        feature,
        what,
        each,
    };
    // SAFETY: GVL held (token); v is a live object; `walk_pair` has the callback's signature
    // and `data` outlives the walk.
    unsafe { rb_sys::rb_ivar_foreach(v, Some(walk_pair), &mut walk as *mut Walk as VALUE) };
}

/// A Fixnum as i64.
pub fn fixnum(v: VALUE) -> Option<i64> {
    if rb_sys::FIXNUM_P(v) {
        // SAFETY: v is a Fixnum.
        Some(unsafe { rb_sys::FIX2LONG(v) } as i64)
    } else {
        None
    }
}

/// Whether `klass` is a singleton class.
pub fn is_singleton_class(gvl: Gvl, klass: VALUE) -> bool {
    if type_of(gvl, klass) != ruby_value_type::RUBY_T_CLASS {
        return false;
    }
    // SAFETY: reading the RBasic flags of a live class.
    let flags = unsafe { (*(klass as *const rb_sys::RBasic)).flags };
    flags & (rb_sys::ruby_fl_type::RUBY_FL_SINGLETON as VALUE) != 0
}

/// The object a singleton class belongs to: `Class#attached_object` where Ruby has it (3.2+),
/// the class's internal `__attached__` before that.
pub fn attached_object(gvl: Gvl, singleton: VALUE) -> VALUE {
    static HAS_METHOD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let has = *HAS_METHOD.get_or_init(|| {
        let sym = symbol(gvl, "attached_object");
        const_at(gvl, "Class")
            .and_then(|c| call(gvl, c, "method_defined?", &[sym]).ok())
            .map(truthy)
            .unwrap_or(false)
    });
    if has {
        if let Ok(v) = core_call(gvl, "Class", "attached_object", singleton, &[]) {
            return v;
        }
    }
    // SAFETY: GVL held; a singleton class keeps its object in the internal `__attached__`
    // (Ruby 3.1), and rb_ivar_get never raises.
    unsafe { rb_sys::rb_ivar_get(singleton, intern(gvl, "__attached__")) }
}

/// A new Ruby String (UTF-8) with `text`.
pub fn str_new(_gvl: Gvl, text: &str) -> VALUE {
    // SAFETY: GVL held; the pointer and length describe `text`, which Ruby copies.
    unsafe { rb_sys::rb_utf8_str_new(text.as_ptr() as *const _, text.len() as _) }
}

pub(crate) use raw::{
    add_raw_event_hook, remove_raw_event_hook, remove_raw_event_hook_with_data, HOOK_FLAG_RAW_ARG,
};

/// Adds `feature` (a full path) to `$LOADED_FEATURES` the way `require` does after loading a
/// file, so a later `require` of it does nothing; false when it was there already or could
/// not be added (a frozen `$LOADED_FEATURES`). `rb_provide` updates Ruby's index of loaded
/// features in place, where a push onto `$LOADED_FEATURES` from Ruby makes the next `require`
/// rebuild it, resolving the real path of every loaded file again (a GVL wait per `readlink`
/// on Ruby 3.1).
pub fn provide(gvl: Gvl, feature: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(feature) else {
        return false;
    };
    // SAFETY: GVL held (token); `c` is a NUL-terminated string that outlives the call, and a
    // null `loading` pointer is allowed (it is only written when not null).
    if unsafe { rb_sys::rb_feature_provided(c.as_ptr(), std::ptr::null_mut()) } != 0 {
        return false;
    }
    // rb_provide makes a String that points at the C string without copying it (it is meant
    // for string literals): the C string is leaked, one per file of the gem, once per process.
    let leaked: &'static std::ffi::CStr = Box::leak(c.into_boxed_c_str());
    protect(gvl, || {
        // SAFETY: GVL held (token); `leaked` lives until the process ends; rb_provide raises
        // only for a frozen $LOADED_FEATURES, which `protect` catches.
        unsafe { rb_sys::rb_provide(leaked.as_ptr()) };
        TRUE
    })
    .is_ok()
}

/// The GC turned off for as long as this lives, and back on when it is dropped if it was on
/// before, also when a panic unwinds past it (a GC left off would grow the app's memory for
/// good).
pub struct GcOff {
    was_disabled: bool,
}

impl GcOff {
    pub fn new(_gvl: Gvl) -> GcOff {
        // SAFETY: GVL held (token); rb_gc_disable only sets a flag and says what it was.
        let was_disabled = truthy(unsafe { rb_sys::rb_gc_disable() });
        GcOff { was_disabled }
    }
}

impl Drop for GcOff {
    fn drop(&mut self) {
        if !self.was_disabled {
            // SAFETY: made with the GVL held on this thread (`new`), which a Gvl token (not
            // Send) pins; we re-enable only what we disabled.
            unsafe { rb_sys::rb_gc_enable() };
        }
    }
}

/// An unsigned 64-bit number as a Ruby Integer.
pub fn u64_value(_gvl: Gvl, n: u64) -> VALUE {
    // SAFETY: GVL held (token); rb_ull2inum makes a Fixnum or a Bignum.
    unsafe { rb_sys::rb_ull2inum(n as _) }
}

/// The function behind a Proc made by [`proc_of_fn`]: `(yielded, data, argc, argv, block)`.
pub type BlockFn = unsafe extern "C" fn(VALUE, VALUE, c_int, *const VALUE, VALUE) -> VALUE;

/// A Proc whose body is `f`, called with `data` as its second argument. Ruby runs it in an
/// IFUNC frame, which no backtrace shows (`Thread#backtrace`, `caller`, error reports), so a
/// block wrapped this way leaves no trace in the app's stacks. `data` is marked by the Proc.
pub fn proc_of_fn(gvl: Gvl, f: BlockFn, data: VALUE) -> Result<VALUE, Raised> {
    protect(gvl, || {
        // SAFETY: GVL held (token); `f` has the block-function signature Ruby calls it with,
        // and `data` is a VALUE the Proc keeps (its ifunc marks it).
        unsafe { rb_sys::rb_proc_new(Some(f), data) }
    })
}

/// Whether the method or block running now was called with keyword arguments.
pub fn keyword_given(_gvl: Gvl) -> bool {
    // SAFETY: GVL held (token); reads the current control frame's flag.
    unsafe { rb_sys::rb_keyword_given_p() != 0 }
}

/// A non-local exit stopped by [`call_proc_stopping_exits`]: `rb_protect`'s state and, for a
/// raise, the exception (`$!` is cleared meanwhile, so the caller can run Ruby code).
#[derive(Clone, Copy)]
pub struct Exit {
    state: c_int,
    /// The exception, when the exit is a raise (not `throw`, `break` or a thread kill).
    pub raised: Option<VALUE>,
}

/// `rb_protect`'s state for a raise (vm_core.h's TAG_RAISE, the same from 3.1 to 4.0).
const TAG_RAISE: c_int = 6;

struct ProcCall {
    proc: VALUE,
    argc: c_int,
    argv: *const VALUE,
    block: VALUE,
    kw: c_int,
}

unsafe extern "C" fn call_proc_thunk(arg: VALUE) -> VALUE {
    // SAFETY: `arg` is the address of the `ProcCall` on `call_proc_stopping_exits`'s frame,
    // which lives until rb_protect returns.
    let call = unsafe { &*(arg as *const ProcCall) };
    // SAFETY: GVL held (we were called by rb_protect on this Ruby thread); `argv` points at
    // `argc` VALUEs Ruby gave the caller's block function for the length of its call.
    unsafe {
        rb_sys::rb_proc_call_with_block_kw(call.proc, call.argc, call.argv, call.block, call.kw)
    }
}

/// Calls `proc` with the arguments, block and keyword-ness given, stopping any non-local exit
/// (raise, `throw`, `break`, thread kill) so the caller can act before resuming it with
/// [`resume_exit`]. Unlike [`protect`], `$!` is kept for everything but a raise.
///
/// # Safety
/// `argv` must point at `argc` live VALUEs for the duration of the call.
pub unsafe fn call_proc_stopping_exits(
    gvl: Gvl,
    proc: VALUE,
    argc: c_int,
    argv: *const VALUE,
    block: VALUE,
    kw: bool,
) -> Result<VALUE, Exit> {
    let _ = gvl;
    let call = ProcCall {
        proc,
        argc,
        argv,
        block,
        kw: kw as c_int,
    };
    let mut state: c_int = 0;
    // SAFETY: GVL held (token); the thunk receives the address of `call`, which outlives the
    // call, and the caller promised `argv`.
    let v = unsafe {
        rb_protect(
            Some(call_proc_thunk),
            &call as *const ProcCall as VALUE,
            &mut state,
        )
    };
    if state == 0 {
        return Ok(v);
    }
    let raised = (state == TAG_RAISE).then(|| {
        // SAFETY: GVL held; after a raise `$!` is the exception being raised, which the caller
        // keeps on this native stack (scanned by the GC) until it resumes the raise.
        unsafe {
            let e = rb_sys::rb_errinfo();
            rb_set_errinfo(NIL);
            e
        }
    });
    Err(Exit { state, raised })
}

/// Resumes a non-local exit stopped by [`call_proc_stopping_exits`], exactly where it was:
/// the raise goes on unwinding with its exception, a `throw` to its `catch`, a kill ends the
/// thread. Never returns.
///
/// The caller must hold no value with a destructor: this unwinds the native stack with
/// `longjmp`, past every Rust frame up to Ruby's.
pub fn resume_exit(_gvl: Gvl, exit: Exit) -> ! {
    if let Some(e) = exit.raised {
        // SAFETY: GVL held; `e` is the exception `$!` held when the raise was stopped (an
        // Exception, so rb_set_errinfo accepts it).
        unsafe { rb_set_errinfo(e) };
    }
    // SAFETY: GVL held; `exit.state` is the state rb_protect returned for this exit, and
    // `$!` is as it was (restored above for a raise, untouched otherwise), which is what
    // rb_jump_tag needs to go on. The caller holds nothing with a destructor.
    unsafe { rb_sys::rb_jump_tag(exit.state) }
}

/// The VALUE behind a magnus `Value` (what the agent's own calls take).
pub fn raw(v: magnus::Value) -> VALUE {
    use magnus::rb_sys::AsRawValue;
    v.as_raw()
}

/// A magnus `Value` for a VALUE, to hand back to Ruby from a `Rbscope::Native` method.
///
/// # Safety
/// `v` must be a live Ruby object (or an immediate) that stays reachable until Ruby takes it:
/// held on the native stack, which the GC scans, or by another live object.
pub unsafe fn value(v: VALUE) -> magnus::Value {
    use magnus::rb_sys::FromRawValue;
    // SAFETY: the caller promised a live, reachable VALUE.
    unsafe { magnus::Value::from_raw(v) }
}

/// The name of `v`'s class as `rb_obj_classname` gives it, for error messages: it reads the
/// class's name without calling any Ruby method, so an odd object cannot interfere. None for
/// an anonymous class.
pub fn plain_class_name(_gvl: Gvl, v: VALUE) -> Option<String> {
    // SAFETY: GVL held (token); rb_obj_classname takes any VALUE and returns NULL or a
    // NUL-terminated string owned by Ruby, copied here before any other Ruby code can run.
    unsafe {
        let p = rb_sys::rb_obj_classname(v);
        (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}
