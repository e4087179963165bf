//! `rbscope eval -p PID CODE`, the waiting side: code run in the app, when the app allowed it.
//!
//! The connection thread registers a reply slot under a token and hands the code to the
//! agent's Ruby thread, which starts a Ruby thread for it and goes back to waiting; that eval
//! thread delivers its result with [`Evals::done`]. The connection thread waits up to the
//! client's timeout, watching the socket: on timeout, on the client's `Cancel`, or when the
//! client goes away, it answers for the eval and asks for its thread to be killed.

use super::queue::{Work, NO_AGENT_THREAD, QUEUE_FULL};
use super::{Count, Handler};
use rbscope_proto::{read_frame, AgentMessage, ClientMessage, EvalRequest, EvalResult};
use std::collections::HashMap;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Results longer than this are cut (a protocol frame holds at most 64 MiB).
pub const MAX_RESULT: usize = 32 * 1024 * 1024;

struct Waiting {
    started: Instant,
    reply: SyncSender<EvalResult>,
}

/// The evals waiting for their result, by token.
pub struct Evals {
    waiting: Mutex<Option<HashMap<u64, Waiting>>>,
    next: AtomicU64,
}

impl Default for Evals {
    fn default() -> Self {
        Evals::new()
    }
}

impl Evals {
    pub const fn new() -> Evals {
        Evals {
            waiting: Mutex::new(None),
            next: AtomicU64::new(1),
        }
    }

    /// A token and the receiver its result will arrive on.
    pub fn register(&self) -> (u64, Receiver<EvalResult>) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        if let Ok(mut w) = self.waiting.lock() {
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
    pub fn forget(&self, token: u64) {
        if let Ok(mut w) = self.waiting.lock() {
            if let Some(m) = w.as_mut() {
                m.remove(&token);
            }
        }
    }

    /// Delivers a result (from the eval thread, or an error from the agent thread); a text
    /// over [`MAX_RESULT`] bytes is cut, saying so. Nothing happens for a forgotten token.
    pub fn done(&self, token: u64, ok: bool, mut text: String, incomplete: bool) {
        if text.len() > MAX_RESULT {
            let mut end = MAX_RESULT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let whole = text.len();
            text.truncate(end);
            text.push_str(&format!("\n... (cut at 32 MiB of {whole} bytes)"));
        }
        let waiting = self
            .waiting
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
}

/// Runs code in the app (if it allowed eval) on a new Ruby thread, waiting up to the client's
/// timeout; on timeout, on the client's `Cancel`, or when the client goes away, that thread is
/// killed.
pub(super) fn run<H: Handler>(
    handler: &H,
    req: EvalRequest,
    stream: &mut UnixStream,
) -> AgentMessage {
    if !handler.allow_eval() {
        handler.count(Count::EvalRefused);
        return AgentMessage::Error(
            "eval is off in this process: the app must opt in with Rbscope.start(allow_eval: true) \
             or RBSCOPE_ALLOW_EVAL=1 (it runs any code you send with the app's privileges)"
                .into(),
        );
    }
    let Some(queue) = handler.queue() else {
        return AgentMessage::Busy(NO_AGENT_THREAD.into());
    };
    handler.count(Count::EvalRun);
    let evals = handler.evals();
    let timeout = Duration::from_millis(u64::from(req.timeout_ms.clamp(1, 86_400_000)));
    let (token, answer) = evals.register();
    let Some(ticket) = queue.submit(Work::Eval {
        token,
        code: req.code,
        binding: req.binding,
    }) else {
        evals.forget(token);
        return AgentMessage::Busy(QUEUE_FULL.into());
    };
    let deadline = Instant::now() + timeout;
    let stopped = |why: String| {
        evals.forget(token);
        let _ = queue.offer(Work::CancelEval { token });
        AgentMessage::Evaluated(EvalResult {
            ok: false,
            text: why,
            elapsed_us: 0,
            incomplete: false,
        })
    };
    loop {
        let step = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        match ticket.wait(&answer, step) {
            Ok(result) => return AgentMessage::Evaluated(result),
            Err(RecvTimeoutError::Disconnected) => {
                return stopped("the eval's reply was lost".into());
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            handler.count(Count::EvalTimedOut);
            return stopped(format!(
                "timed out after {:.1} s: the eval thread was stopped (if native code held \
                 the GVL, it may not have started at all)",
                timeout.as_secs_f64()
            ));
        }
        // The client may cancel (Ctrl-C in a console) or go away while it waits.
        let mut pfd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for this connection's socket, kept open by `stream`; no
        // waiting.
        if unsafe { libc::poll(&mut pfd, 1, 0) } > 0 {
            return match read_frame::<_, ClientMessage>(stream) {
                Ok(ClientMessage::Cancel) => {
                    stopped("interrupted: the eval thread was stopped".into())
                }
                _ => stopped("the client went away: the eval thread was stopped".into()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_reaches_its_waiter_once() {
        let evals = Evals::new();
        let (token, rx) = evals.register();
        let (other, other_rx) = evals.register();
        assert_ne!(token, other);
        evals.done(token, true, "42".into(), false);
        let got = rx.try_recv().unwrap();
        assert!(got.ok && got.text == "42" && !got.incomplete);
        // Delivered once; the other waiter has nothing.
        evals.done(token, true, "43".into(), false);
        assert!(rx.try_recv().is_err());
        assert!(other_rx.try_recv().is_err());
    }

    #[test]
    fn a_forgotten_token_gets_nothing() {
        let evals = Evals::new();
        let (token, rx) = evals.register();
        evals.forget(token);
        evals.done(token, false, "late".into(), false);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_huge_result_is_cut_at_a_character_boundary_and_says_so() {
        let evals = Evals::new();
        let (token, rx) = evals.register();
        let text = "a".repeat(MAX_RESULT - 1) + "é" + "tail";
        let whole = text.len();
        evals.done(token, true, text, false);
        let got = rx.try_recv().unwrap().text;
        assert_eq!(
            got,
            "a".repeat(MAX_RESULT - 1) + &format!("\n... (cut at 32 MiB of {whole} bytes)")
        );
    }
}
