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
//! The wrappers themselves, what is off, the first failure of each feature, the panic count
//! and the quiet panic hook are `rbscope_agent_core::agent::failures`'s (they need no Ruby);
//! only what needs Ruby is here.

use rbscope_agent_core::agent::failures;
pub use rbscope_agent_core::agent::failures::{
    catch_nested, install_hook, is_off, mark, run, run_hot, Feature,
};

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
    failures::catch(feature, name, body).unwrap_or_else(|| Err(off()))
}
