//! The one wrapper for every place Ruby or the OS calls into the agent: event hooks, GC mark
//! functions, iteration callbacks, thread mains, the fork handler, and the methods of
//! `Rbscope::Native`.
//!
//! Why: the agent runs inside someone else's production process. A Rust panic that reaches a
//! C frame aborts the process, and one that reaches magnus's method wrapper becomes Ruby's
//! `fatal`, which ends it too. So each entry point runs its body through [`run`] (or
//! [`method`] for a Ruby method), which catches the panic, counts it, remembers its message,
//! and turns the feature it belongs to off for the rest of the process: a feature that failed
//! once holds state nobody can trust, and the app matters more than the feature. The app goes
//! on; `rbscope doctor -p PID` lists what is off and why (the agent's warnings).
//!
//! What is off, the first failure of each feature, the panic count and the quiet panic hook
//! are `rbscope_agent_core::agent::failures`'s (they need no Ruby).

use rbscope_agent_core::agent::failures::failed;
pub use rbscope_agent_core::agent::failures::{install_hook, is_off, Feature};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

thread_local! {
    /// The feature of the innermost guarded body, for a panic caught deeper (ffi::protect).
    static CURRENT: Cell<Option<Feature>> = const { Cell::new(None) };
}

/// Runs `body` with the fault injection of test builds first, catching a panic (the caller
/// records it).
#[inline(always)]
fn attempt<R>(what: &str, body: impl FnOnce() -> R) -> std::thread::Result<R> {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        fault(what);
        body()
    }))
}

/// Runs `body`, the work of an entry point of `feature`, unless the feature is off; a panic is
/// caught, recorded and turns the feature off. Returns `fallback` in both cases.
pub fn run<R>(feature: Feature, what: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    if is_off(feature) {
        return fallback;
    }
    catch(feature, what, body).unwrap_or(fallback)
}

/// Runs `body` as the innermost guarded body of this thread; None when it panicked (recorded,
/// and `feature` turned off).
fn catch<R>(feature: Feature, what: &str, body: impl FnOnce() -> R) -> Option<R> {
    // A Ruby exception can leave a body by `longjmp` (an inspector callback raises through
    // to the `protect` around it), past the restore below; the next body that ends normally
    // on this thread puts it right.
    let outer = CURRENT.with(|c| c.replace(Some(feature)));
    let result = attempt(what, body);
    CURRENT.with(|c| c.set(outer));
    match result {
        Ok(r) => Some(r),
        Err(_) => {
            failed(feature, what);
            None
        }
    }
}

/// [`run`] for the trace hooks, which run for every call of the traced code: no thread-local
/// state (a panic in a Ruby call they make is counted against snapshots; see
/// [`catch_in_c`]).
#[inline]
pub fn run_hot<R>(feature: Feature, what: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    if is_off(feature) {
        return fallback;
    }
    match attempt(what, body) {
        Ok(r) => r,
        Err(_) => {
            failed(feature, what);
            fallback
        }
    }
}

/// A GC mark function of data that `readers` use. It keeps marking while any of them is on
/// (skipping would let the GC free what they still read); a panic turns them all off, after
/// which nothing reads the data and marking stops.
pub fn mark(readers: &[Feature], what: &str, body: impl FnOnce()) {
    if readers.iter().all(|f| is_off(*f)) {
        return;
    }
    if attempt(what, body).is_err() {
        for f in readers {
            failed(*f, what);
        }
    }
}

/// For `ffi::protect`'s thunk, which runs inside a C frame: runs `body` and says whether it
/// panicked (recorded against the innermost guarded feature of this thread, or `Capture`).
///
/// It changes no thread-local state around `body`: a Ruby exception raised inside `body`
/// leaves by `longjmp` to rb_protect, past this frame, and nothing here would be undone.
pub fn catch_in_c(body: impl FnOnce() -> rb_sys::VALUE) -> Option<rb_sys::VALUE> {
    match attempt("a call into Ruby", body) {
        Ok(v) => Some(v),
        Err(_) => {
            let feature = CURRENT.with(|c| c.get()).unwrap_or(Feature::Capture);
            failed(feature, "a call into Ruby");
            None
        }
    }
}

/// A method of `Rbscope::Native`: a panic becomes a RuntimeError saying what is off (never
/// magnus's `fatal`, which would end the app), and turns the feature off.
pub fn method<T>(
    ruby: &magnus::Ruby,
    feature: Feature,
    name: &str,
    body: impl FnOnce() -> Result<T, magnus::Error>,
) -> Result<T, magnus::Error> {
    let off = || magnus::Error::new(ruby.exception_runtime_error(), feature.off_message());
    // The body runs even when the feature is off: most methods only read state, and those
    // that use a feature's data check for themselves (`report`), or reach its guarded entry
    // points, which do nothing once it is off.
    catch(feature, name, body).unwrap_or_else(|| Err(off()))
}

/// Test builds (`--features fault-injection`): panics when `what` contains the text of
/// `RBSCOPE_FAULT`, read once.
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
fn fault(what: &str) {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let wanted = FAULT.get_or_init(|| {
        std::env::var("RBSCOPE_FAULT")
            .ok()
            .filter(|f| !f.is_empty())
    });
    if let Some(w) = wanted {
        if what.contains(w.as_str()) {
            panic!("injected fault in {what}");
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn fault(_what: &str) {}
