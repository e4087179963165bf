//! The agent's side of a trace session (`rbscope_trace::session`): the Ruby facts its hooks
//! need (the running thread, a method's label) and the GVL as the promise the session's
//! unsafe methods ask for.
//!
//! Hooks run on app threads holding the GVL, so the hook state (thread table, method names,
//! per-thread shadow stacks) is only touched under the GVL, in short borrows that never call
//! into Ruby (anything that needs Ruby, such as a class's path, is looked up between borrows,
//! and threads are named from the kernel). The ring is the only part the drain thread touches.

use crate::ffi::live::{self as rb, ruby_value_type, VALUE};
use crate::ffi::{self, Gvl};
use rbscope_trace::session::os_thread_facts;
pub use rbscope_trace::session::Session;
use rbscope_trace::shadow::HookState;

/// Runs `f` on the session's hook state. `f` must not call into Ruby.
pub fn with<R>(session: &Session, _gvl: Gvl, f: impl FnOnce(&mut HookState) -> R) -> R {
    // SAFETY: the GVL (token) serializes every access to a session's hook state (hooks, the
    // agent thread and GC marking all hold it), and `f` does not call into Ruby, so no hook
    // can run and re-enter while it borrows.
    unsafe { session.with(f) }
}

/// A call of `method` began on this thread; `t0` is when the hook was entered, `extra` the
/// tracer time already spent on it beyond an ordinary hook (reading captured values).
#[inline]
pub fn call(s: &Session, gvl: Gvl, method: u32, t0: u64, values: &[(&str, &str)], extra: u64) {
    let cur = rb::thread_current(gvl);
    // SAFETY: GVL held (token), which serializes the session's hook state; naming a new thread
    // reads the kernel's facts and calls no Ruby.
    unsafe { s.call(cur, || thread_facts(gvl, cur), method, t0, values, extra) }
}

/// A call of `method` ended on this thread; `t0` is when the hook was entered.
#[inline]
pub fn ret(s: &Session, gvl: Gvl, method: u32, t0: u64) {
    let cur = rb::thread_current(gvl);
    // SAFETY: as in `call`.
    unsafe { s.ret(cur, || thread_facts(gvl, cur), method, t0) }
}

/// The firehose's id for the method `mid` (a Symbol) defined in `klass`, naming it on first
/// sight (which calls Ruby: `before_ruby` runs first); None for methods not traced.
#[inline]
pub fn method_id(
    s: &Session,
    gvl: Gvl,
    klass: VALUE,
    mid: VALUE,
    before_ruby: impl FnOnce(),
) -> Option<u32> {
    let object = klass != 0 && klass != ffi::NIL;
    // SAFETY: GVL held (token), which serializes the session's hook state; `before_ruby` and
    // the naming (which calls Ruby, so other hooks may run) happen between its borrows.
    unsafe {
        s.method_id(klass, mid, object, before_ruby, || {
            method_label(gvl, klass, mid)
        })
    }
}

/// `Foo#bar`, `Foo.bar` (a module's singleton method), `#<Class:...>#bar` otherwise.
pub fn method_label(gvl: Gvl, klass: VALUE, mid: VALUE) -> String {
    let name = ffi::symbol_name(gvl, mid).unwrap_or_else(|| "?".into());
    if klass == 0 || klass == ffi::NIL {
        return name;
    }
    if ffi::is_singleton_class(gvl, klass) {
        let attached = ffi::attached_object(gvl, klass);
        if matches!(
            ffi::type_of(gvl, attached),
            ruby_value_type::RUBY_T_CLASS | ruby_value_type::RUBY_T_MODULE
        ) {
            return format!("{}.{name}", ffi::class_path(gvl, attached));
        }
    }
    format!("{}#{name}", ffi::class_path(gvl, klass))
}

/// The running thread's name and OS thread id, read without calling Ruby (a hook that calls
/// Ruby may lose the GVL).
fn thread_facts(gvl: Gvl, thread: VALUE) -> (String, i32) {
    os_thread_facts(rb::thread_main(gvl) == thread)
}
