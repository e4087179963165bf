//! `rbscope eval -p PID CODE`: code run in the app, when the app allowed it.
//!
//! The control thread (which never touches the VM) registers a reply slot under a token and
//! hands the code to the agent's Ruby thread, which starts a new Ruby thread for it
//! (lib/rbscope/live.rb: inside the Rails executor when Rails is loaded) and goes back to
//! waiting. No app thread is interrupted, joined or woken. The eval thread reports back with
//! `Rbscope::Native.eval_done`; if the client's timeout passes first, the control thread
//! answers with a timeout and asks for the eval thread to be killed.

use crate::ffi::{self, Gvl};
use rbscope_proto::EvalResult;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Mutex;
use std::time::Instant;

struct Waiting {
    started: Instant,
    reply: SyncSender<EvalResult>,
}

static WAITING: Mutex<Option<HashMap<u64, Waiting>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A token and the receiver its result will arrive on.
pub fn register() -> (u64, Receiver<EvalResult>) {
    let token = NEXT.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::sync_channel(1);
    if let Ok(mut w) = WAITING.lock() {
        w.get_or_insert_with(HashMap::new).insert(
            token,
            Waiting {
                started: Instant::now(),
                reply: tx,
            },
        );
    }
    (token, rx)
}

/// Forgets a token (its client gave up).
pub fn forget(token: u64) {
    if let Ok(mut w) = WAITING.lock() {
        if let Some(m) = w.as_mut() {
            m.remove(&token);
        }
    }
}

/// Results longer than this are cut (a protocol frame holds at most 64 MiB).
const MAX_RESULT: usize = 32 * 1024 * 1024;

/// Delivers a result (from the eval thread, or an error from the agent thread).
pub fn done(token: u64, ok: bool, mut text: String, incomplete: bool) {
    if text.len() > MAX_RESULT {
        let mut end = MAX_RESULT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let whole = text.len();
        text.truncate(end);
        text.push_str(&format!("\n... (cut at 32 MiB of {whole} bytes)"));
    }
    let waiting = WAITING
        .lock()
        .ok()
        .and_then(|mut w| w.as_mut().and_then(|m| m.remove(&token)));
    if let Some(w) = waiting {
        let _ = w.reply.try_send(EvalResult {
            ok,
            text,
            elapsed_us: w.started.elapsed().as_micros() as u64,
            incomplete,
        });
    }
}

/// Starts the eval thread. Runs on the agent's Ruby thread.
pub fn start(gvl: Gvl, token: u64, code: &str, binding: Option<u64>) {
    let Some(live) = ffi::const_at(gvl, "Rbscope::Live") else {
        done(
            token,
            false,
            "the rbscope gem's Ruby half (rbscope/live) is not loaded in this process".into(),
            false,
        );
        return;
    };
    let code = ffi::str_new(gvl, code);
    let binding = binding.map_or(ffi::NIL, |b| ffi::u64_value(gvl, b));
    let args = [code, ffi::u64_value(gvl, token), binding];
    if ffi::call(gvl, live, "eval_async", &args).is_err() {
        done(
            token,
            false,
            "could not start a thread for the eval".into(),
            false,
        );
    }
}

/// Kills a timed-out eval's thread. Runs on the agent's Ruby thread.
pub fn cancel(gvl: Gvl, token: u64) {
    if let Some(live) = ffi::const_at(gvl, "Rbscope::Live") {
        let _ = ffi::call(gvl, live, "cancel_eval", &[ffi::u64_value(gvl, token)]);
    }
}
