//! `rbscope eval -p PID CODE`: code run in the app, when the app allowed it.
//!
//! The control thread (which never touches the VM, see `rbscope_agent_core::control`)
//! registers a reply slot under a token and hands the code to the agent's Ruby thread, which
//! starts a new Ruby thread for it here (lib/rbscope/live.rb: inside the Rails executor when
//! Rails is loaded) and goes back to waiting. No app thread is interrupted, joined or woken.
//! The eval thread reports back with `Rbscope::Native.eval_done`; if the client's timeout
//! passes first, the control thread answers with a timeout and asks for the eval thread to be
//! killed.

use crate::ffi::{self, Gvl};
use rbscope_agent_core::control::Evals;

/// The evals waiting for their result (the control thread waits on them).
pub static EVALS: Evals = Evals::new();

/// Delivers a result (from the eval thread, or an error from the agent thread).
pub fn done(token: u64, ok: bool, text: String, incomplete: bool) {
    EVALS.done(token, ok, text, incomplete)
}

/// Delivers the error of an eval that could not start.
fn failed(token: u64, why: &str) {
    done(token, false, why.into(), false)
}

/// Starts the eval thread. Runs on the agent's Ruby thread.
pub fn start(gvl: Gvl, token: u64, code: &str, binding: Option<u64>) {
    let Some(live) = ffi::const_at(gvl, "Rbscope::Live") else {
        return failed(token, ffi::LIVE_NOT_LOADED);
    };
    let code = ffi::str_new(gvl, code);
    let binding = binding.map_or(ffi::NIL, |b| ffi::u64_value(gvl, b));
    let args = [code, ffi::u64_value(gvl, token), binding];
    if ffi::call(gvl, live, "eval_async", &args).is_err() {
        failed(token, "could not start a thread for the eval");
    }
}

/// Kills a timed-out eval's thread. Runs on the agent's Ruby thread.
pub fn cancel(gvl: Gvl, token: u64) {
    if let Some(live) = ffi::const_at(gvl, "Rbscope::Live") {
        let _ = ffi::call(gvl, live, "cancel_eval", &[ffi::u64_value(gvl, token)]);
    }
}
