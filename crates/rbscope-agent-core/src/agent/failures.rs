//! The agent's panic guard (the agent's `ffi::guard` adds what needs Ruby: its methods and
//! `protect`'s thunk): the wrappers every entry point runs its body through ([`run`],
//! [`run_hot`], [`mark`]), and their bookkeeping: which features an internal error turned off,
//! the first failure of each, how many panics were caught, and the quiet panic hook that keeps
//! a panic's message.
//!
//! Why a feature goes off for good: a feature that failed once holds state nobody can trust,
//! and the app matters more than the feature. `rbscope doctor -p PID` lists what is off and why
//! ([`report`]). None of it needs Ruby, so it is tested here.
//!
//! A panic of rbscope's own code prints nothing on the app's stderr: the hook installed by
//! [`install_hook`] keeps the message when the panic is located in one of rbscope's crates, and
//! defers to the hook that was there before otherwise (other Rust code in the process keeps its
//! output). Deciding by location costs the entry points nothing, where a thread-local "inside
//! rbscope" mark would cost each trace event a TLS lookup.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

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

impl Feature {
    /// What a method of a feature that is off raises.
    pub fn off_message(self) -> String {
        format!(
            "rbscope: {} is off after an internal error (see rbscope doctor -p {}); the app is not affected",
            self.name(),
            std::process::id()
        )
    }
}

static OFF: [AtomicBool; 7] = [const { AtomicBool::new(false) }; 7];
static PANICS: AtomicU64 = AtomicU64::new(0);
/// The first failure of each feature: where and what.
static FIRST: Mutex<Vec<(Feature, String)>> = Mutex::new(Vec::new());

thread_local! {
    /// The message of the last panic on this thread, set by the hook.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The feature of the innermost guarded body, for a panic caught deeper
    /// ([`catch_nested`]).
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
pub fn catch<R>(feature: Feature, what: &str, body: impl FnOnce() -> R) -> Option<R> {
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
/// [`catch_nested`]).
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

/// For the agent's `ffi::protect` thunk, which runs inside a C frame: runs `body` and says
/// whether it panicked (recorded against the innermost guarded feature of this thread, or
/// `Capture`).
///
/// It changes no thread-local state around `body`: a Ruby exception raised inside `body`
/// leaves by `longjmp` to rb_protect, past this frame, and nothing here would be undone.
pub fn catch_nested<R>(what: &str, body: impl FnOnce() -> R) -> Option<R> {
    match attempt(what, body) {
        Ok(v) => Some(v),
        Err(_) => {
            let feature = CURRENT.with(|c| c.get()).unwrap_or(Feature::Capture);
            failed(feature, what);
            None
        }
    }
}

/// Test builds (`--features fault-injection`, crates/rbscope/tests/fault_injection.rs):
/// panics when `what` contains the text of `RBSCOPE_FAULT`, read once.
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

/// True once `feature` has failed: its entry points do nothing more.
#[inline]
pub fn is_off(feature: Feature) -> bool {
    OFF.get(feature.index())
        .is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Panics caught since the agent loaded.
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// The first failure of each feature, also after a panic while the lock was held.
fn first_failures() -> MutexGuard<'static, Vec<(Feature, String)>> {
    FIRST.lock().unwrap_or_else(|p| p.into_inner())
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

/// Records a caught panic of `feature` (in `what`, with the message the hook kept on this
/// thread) and turns the feature off.
pub fn failed(feature: Feature, what: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    // The state is the process's: each test turns off features of its own, and the one
    // that reports checks only its own. Fork stays on (host.rs's test forks). (The hook is not installed here: it would silence
    // the messages of every other test's panics.)

    #[test]
    fn run_catches_a_panic_and_then_skips_the_feature() {
        assert_eq!(run(Feature::Writer, "writing", 0, || 7), 7);
        assert_eq!(run_hot(Feature::Writer, "writing", 2, || 5), 5);
        assert!(!is_off(Feature::Writer));
        assert_eq!(run_hot(Feature::Writer, "writing", 2, || panic!("boom")), 2);
        assert!(is_off(Feature::Writer));
        let mut ran = false;
        run(Feature::Writer, "writing", (), || ran = true);
        assert!(!ran, "a feature that is off runs nothing");
        assert_eq!(run_hot(Feature::Writer, "writing", 2, || 5), 2);
    }

    #[test]
    fn a_panic_in_nested_code_counts_against_the_innermost_guarded_feature() {
        let inner = run(Feature::Capture, "reporting", None, || {
            Some(catch_nested("a call into Ruby", || -> u8 {
                panic!("deep")
            }))
        });
        assert_eq!(inner, Some(None), "the outer body goes on");
        assert!(is_off(Feature::Capture));
        let first = first_failures().clone();
        assert!(first.contains(&(Feature::Capture, "a call into Ruby: a panic".into())));
    }

    #[test]
    fn marking_goes_on_while_a_reader_is_on_and_a_panic_turns_all_off() {
        assert_eq!(run(Feature::Backtrace, "reading", 0, || panic!("boom")), 0);
        assert!(is_off(Feature::Backtrace) && !is_off(Feature::Live));
        let mut marked = 0;
        mark(&[Feature::Backtrace, Feature::Live], "marking", || {
            marked += 1
        });
        assert_eq!(marked, 1, "live attach still reads the data");
        mark(&[Feature::Backtrace, Feature::Live], "marking", || {
            panic!("bad mark")
        });
        assert!(is_off(Feature::Live));
        mark(&[Feature::Backtrace, Feature::Live], "marking", || {
            marked += 1
        });
        assert_eq!(marked, 1, "nothing reads the data any more");
    }

    #[test]
    fn a_failure_turns_its_feature_off_and_is_reported_once() {
        assert!(!is_off(Feature::Heap));
        let before = panics();
        failed(Feature::Heap, "walking the heap");
        failed(Feature::Heap, "a second time");
        assert!(is_off(Feature::Heap));
        assert!(panics() >= before + 2);
        let lines = report();
        let heap: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("heap dumps and counts turned off"))
            .collect();
        assert_eq!(heap.len(), 1);
        // No panic hook ran on this thread: the message says so.
        assert!(
            heap[0].contains("(walking the heap: a panic)"),
            "{}",
            heap[0]
        );
        assert!(!lines.iter().any(|l| l.starts_with("tracing")));
        let off = Feature::Heap.off_message();
        let pid = std::process::id();
        assert_eq!(off, format!("rbscope: heap dumps and counts is off after an internal error (see rbscope doctor -p {pid}); the app is not affected"));
    }
}
