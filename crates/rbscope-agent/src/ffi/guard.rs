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
//! A panic of rbscope's own code prints nothing on the app's stderr: the panic hook installed
//! by [`install_hook`] keeps the message for `doctor -p` when the panic is located in one of
//! rbscope's crates, and defers to the hook that was there before otherwise (other Rust code
//! in the process keeps its output). Deciding by location costs the entry points nothing,
//! where a thread-local "inside rbscope" mark would cost each trace event a TLS lookup.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

/// What a failure turns off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Snapshots: the raise hook, captures, reports, the pending-capture ring.
    Capture,
    /// `Rbscope.backtrace` and better backtraces.
    Backtrace,
    /// Live tracing: the trace hooks and captured values.
    Trace,
    /// Heap dumps, counts and allocation tracking.
    Heap,
    /// The agent's Ruby thread and the control socket: live attach.
    Live,
    /// The store writer thread.
    Writer,
    /// What the agent does in a forked child.
    Fork,
}

const ALL: [Feature; 7] = [
    Feature::Capture,
    Feature::Backtrace,
    Feature::Trace,
    Feature::Heap,
    Feature::Live,
    Feature::Writer,
    Feature::Fork,
];

impl Feature {
    fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Feature::Capture => "snapshots (raise capture and reports)",
            Feature::Backtrace => "better backtraces",
            Feature::Trace => "tracing",
            Feature::Heap => "heap dumps and counts",
            Feature::Live => "live attach (the agent thread and its socket)",
            Feature::Writer => "the store writer",
            Feature::Fork => "the agent in forked children",
        }
    }
}

static OFF: [AtomicBool; 7] = [const { AtomicBool::new(false) }; 7];
static PANICS: AtomicU64 = AtomicU64::new(0);
/// The first failure of each feature: where and what.
static FIRST: Mutex<Vec<(Feature, String)>> = Mutex::new(Vec::new());

thread_local! {
    /// The feature of the innermost guarded body, for a panic caught deeper (ffi::protect).
    static CURRENT: Cell<Option<Feature>> = const { Cell::new(None) };
    /// The message of the last panic on this thread, set by the hook.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// True once `feature` has failed: its entry points do nothing more.
pub fn is_off(feature: Feature) -> bool {
    OFF.get(feature.index())
        .is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Panics caught since the agent loaded.
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// One line per feature that is off, for `doctor -p` (empty when all is well).
pub fn report() -> Vec<String> {
    let first = first_failures().clone();
    ALL.iter()
        .filter(|f| is_off(**f))
        .map(|f| {
            let why = first
                .iter()
                .find(|(g, _)| g == f)
                .map(|(_, m)| m.as_str())
                .unwrap_or("an internal error");
            format!(
                "{} turned off after an internal error ({why}); the app runs on; restart it to turn it back on, and please report this",
                f.name()
            )
        })
        .collect()
}

/// Records a caught panic of `feature` and turns it off.
fn failed(feature: Feature, what: &str) {
    PANICS.fetch_add(1, Ordering::Relaxed);
    let message = LAST
        .with(|l| l.borrow().clone())
        .unwrap_or_else(|| "a panic".to_string());
    if let Some(flag) = OFF.get(feature.index()) {
        if !flag.swap(true, Ordering::AcqRel) {
            first_failures().push((feature, format!("{what}: {message}")));
        }
    }
}

/// The first failure of each feature, also after a panic while the lock was held.
fn first_failures() -> std::sync::MutexGuard<'static, Vec<(Feature, String)>> {
    FIRST.lock().unwrap_or_else(|p| p.into_inner())
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
    let off = || {
        magnus::Error::new(
            ruby.exception_runtime_error(),
            format!(
                "rbscope: {} is off after an internal error (see rbscope doctor -p {}); the app is not affected",
                feature.name(),
                std::process::id()
            ),
        )
    };
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

/// Installs the quiet panic hook (once per process).
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info.location().is_some_and(|l| {
                let file = l.file();
                file.starts_with("crates/rbscope") || file.contains("/crates/rbscope")
            });
            if ours {
                let text = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                let place = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST.with(|l| *l.borrow_mut() = Some(format!("{text}{place}")));
            } else {
                previous(info);
            }
        }));
    });
}
