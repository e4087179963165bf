//! One client's trace, served on its connection thread: install (through the agent's Ruby
//! thread), stream events, detach.
//!
//! The thread drains the session's ring every few milliseconds (at once when busy) and writes
//! the records to the client as they are; what the ring had to drop is reported in the stream
//! as a lost-events record. It watches the socket between drains: a `Detach` message, or the
//! client going away (Ctrl-C, SIGKILL: the kernel closes the socket), ends the trace, and the
//! hooks are removed by the agent's Ruby thread at its next turn (the session is closed first,
//! so its hooks stop writing at once). A client that stops reading for [`STALL_LIMIT`] is
//! treated as gone.

use super::queue::{Work, WorkQueue, NO_AGENT_THREAD, QUEUE_FULL};
use super::{Count, Handler};
use rbscope_proto::{
    read_frame, write_frame, AgentMessage, ClientMessage, FrameError, TraceRequest, TraceSummary,
};
use rbscope_trace::events;
use rbscope_trace::selector::Selector;
use rbscope_trace::session::Session;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client that reads nothing for this long is detached.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);
/// How often selectors that wait for their code are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// How long an idle drain loop sleeps between looks at the ring (milliseconds).
const IDLE_POLL_MS: i32 = 2;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// What a client asked to trace.
pub struct Plan {
    pub firehose: bool,
    pub gc: bool,
    pub selectors: Vec<Selector>,
    /// Selectors naming code not loaded yet wait for it instead of failing.
    pub wait_for_code: bool,
}

impl Plan {
    /// The selectors as `Rbscope::Live.install` (lib/rbscope/live.rb) takes them, one array
    /// each: `[index, text, owner, kind, method, [argument names], optional]`, with nil for
    /// a missing owner or method.
    pub fn selector_list<B: crate::restore_data::Build>(&self, b: &B) -> B::Obj {
        let list = b.array(self.selectors.len());
        let opt = |v: &Option<String>| v.as_deref().map_or(b.nil(), |s| b.str(s));
        for (i, s) in self.selectors.iter().enumerate() {
            let args = b.array(0);
            for name in s.arg_names() {
                b.push(args, b.str(name));
            }
            let entry = b.array(7);
            for v in [
                b.int(i as i64),
                b.str(&s.describe()),
                opt(&s.owner),
                b.str(s.kind.name()),
                opt(&s.method),
                args,
                b.bool(s.optional),
            ] {
                b.push(entry, v);
            }
            b.push(list, entry);
        }
        list
    }
}

enum End {
    /// The client sent Detach (and is waiting for `Detached`).
    Asked,
    /// The client went away or stalled.
    Gone,
}

/// What `req` asks to hook, or the error the client gets.
fn plan(req: &TraceRequest, yjit_hooks_last: bool) -> Result<Plan, String> {
    let selectors = req
        .selectors
        .iter()
        .map(|text| Selector::parse(text).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if !req.firehose && selectors.is_empty() && req.slow_ms.is_none() && !req.gc {
        return Err(
            "nothing to trace: give -f (every call), -m SELECTOR, --slow MS or --gc".into(),
        );
    }
    // `--slow` alone watches every Ruby method.
    let firehose = req.firehose || (req.slow_ms.is_some() && selectors.is_empty());
    if yjit_hooks_last && !req.force && (firehose || !selectors.is_empty()) {
        return Err(
            "YJIT is on in this Ruby 3.1 process: a method hook makes YJIT drop its \
             compiled code, and the app stays slower until it restarts, even after \
             detaching; add --force to trace anyway (--gc alone is harmless)"
                .into(),
        );
    }
    Ok(Plan {
        firehose,
        gc: req.gc,
        selectors,
        wait_for_code: req.wait_for_code,
    })
}

/// Serves a `Trace` request on `stream` until the trace ends.
pub(super) fn serve<H: Handler>(
    mut stream: UnixStream,
    handler: &H,
    req: TraceRequest,
) -> Result<(), FrameError> {
    let refuse = |stream: &mut UnixStream, msg: AgentMessage| write_frame(stream, &msg);
    let plan = match plan(&req, handler.yjit_hooks_last()) {
        Ok(plan) => plan,
        Err(why) => return refuse(&mut stream, AgentMessage::Error(why)),
    };
    let Some(queue) = handler.queue() else {
        return refuse(&mut stream, AgentMessage::Busy(NO_AGENT_THREAD.into()));
    };
    let buffer = handler.trace_buffer();
    let Some(session) = Session::new(
        NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        buffer,
        req.slow_ms.map(|ms| u64::from(ms) * 1_000_000),
    ) else {
        return refuse(
            &mut stream,
            AgentMessage::Error(format!(
                "the process has no memory for a trace buffer of {buffer} bytes (RBSCOPE_TRACE_BUFFER)"
            )),
        );
    };
    let session = Arc::new(session);
    let wait = Duration::from_millis(u64::from(req.wait_ms.clamp(1, 60_000)));
    let (reply, answer) = mpsc::sync_channel(1);
    let ticket = queue.submit(Work::Attach {
        session: session.clone(),
        plan,
        deadline: Instant::now() + wait,
        reply,
    });
    let Some(ticket) = ticket else {
        return refuse(&mut stream, AgentMessage::Busy(QUEUE_FULL.into()));
    };
    let started = match ticket.wait(&answer, wait) {
        Ok(Ok(started)) => started,
        Ok(Err(why)) => return refuse(&mut stream, AgentMessage::Error(why)),
        Err(_) => {
            // It may still be installed later: make sure it is removed then.
            session.close();
            detach(queue, session.id);
            return refuse(
                &mut stream,
                AgentMessage::Busy(format!(
                    "the Ruby VM did not give the agent a turn within {} ms to install the \
                     hooks (native code, such as a C extension, may be holding the GVL)",
                    wait.as_millis()
                )),
            );
        }
    };
    handler.count(Count::TraceStarted);
    let end = match write_frame(&mut stream, &AgentMessage::Tracing(started)) {
        Ok(()) => {
            let _ = stream.set_write_timeout(Some(STALL_LIMIT));
            pump(&mut stream, &session, handler, queue)
        }
        Err(_) => End::Gone,
    };
    handler.count(Count::TraceEnded {
        events: session.ring.written(),
    });
    session.close();
    if let End::Asked = end {
        // What the hooks wrote before the client asked to stop still goes to it.
        let mut rest = Vec::new();
        take_records(&session, handler, &mut rest);
        if !rest.is_empty() {
            let _ = write_frame(&mut stream, &AgentMessage::Events(rest));
        }
    }
    let removed = detach(queue, session.id);
    if let End::Asked = end {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        if removed {
            write_frame(
                &mut stream,
                &AgentMessage::Detached(TraceSummary {
                    events: session.ring.written(),
                    lost: session.lost.load(Ordering::Relaxed),
                }),
            )?;
        } else {
            write_frame(
                &mut stream,
                &AgentMessage::Busy(
                    "tracing stopped, but the agent's Ruby thread has not had a turn to remove \
                     the hooks yet (they do nothing meanwhile and go at its next turn)"
                        .into(),
                ),
            )?;
        }
    }
    Ok(())
}

/// Streams the ring to the client until it asks to stop or goes away.
fn pump<H: Handler>(
    stream: &mut UnixStream,
    session: &Session,
    handler: &H,
    queue: &WorkQueue<H::Heap>,
) -> End {
    let fd = stream.as_raw_fd();
    let mut last_retry = Instant::now();
    let mut sent = 0usize;
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut idle = true;
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is one valid pollfd for the connection's open socket, which `stream`
        // keeps open for the whole call.
        let n = unsafe { libc::poll(&mut pfd, 1, if idle { IDLE_POLL_MS } else { 0 }) };
        if n > 0 {
            if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return End::Gone;
            }
            if pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                match read_frame::<_, ClientMessage>(stream) {
                    Ok(ClientMessage::Detach) => return End::Asked,
                    Ok(_) => {}
                    Err(_) => return End::Gone,
                }
            }
        }
        // Selectors waiting for their code: look again every 100 ms (the agent's Ruby thread
        // does the looking; if it is busy, this turn is skipped).
        if session.waiting.load(Ordering::Relaxed) && last_retry.elapsed() >= RETRY_EVERY {
            last_retry = Instant::now();
            let _ = queue.offer(Work::Retry { id: session.id });
        }
        buf.clear();
        let taken = take_records(session, handler, &mut buf);
        idle = buf.is_empty();
        if !idle {
            let msg = AgentMessage::Events(std::mem::take(&mut buf));
            if write_frame(stream, &msg).is_err() {
                return End::Gone;
            }
            if let AgentMessage::Events(b) = msg {
                buf = b;
            }
        }
        sent += taken;
        session.sent.store(sent, Ordering::Release);
    }
}

/// Moves what the hooks wrote into `buf`, followed by a lost-events record when some did not
/// fit (counted for `doctor` and the session's summary). The ring bytes taken.
fn take_records<H: Handler>(session: &Session, handler: &H, buf: &mut Vec<u8>) -> usize {
    let taken = session.ring.drain_into(buf);
    let lost = session.ring.take_lost();
    if lost > 0 {
        handler.count(Count::EventsLost(lost));
        session.lost.fetch_add(lost, Ordering::Relaxed);
        events::push_to(buf, events::LOST_LEN, |b| events::write_lost(b, lost));
    }
    taken
}

/// Asks the agent's Ruby thread to remove the session's hooks and waits (a few seconds at
/// most) for it to be done. False if it did not get a turn in that time.
fn detach<X>(queue: &WorkQueue<X>, id: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (reply, done) = mpsc::sync_channel(1);
    let ticket = loop {
        if let Some(t) = queue.submit(Work::Detach {
            id,
            reply: reply.clone(),
        }) {
            break t;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // The queue is full (bounded): back off briefly and offer again.
        std::thread::sleep(Duration::from_millis(20));
    };
    ticket
        .wait(&done, deadline.saturating_duration_since(Instant::now()))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_gives_live_rb_its_selectors() {
        let parse = |t: &str| Selector::parse(t).unwrap();
        let plan = Plan {
            firehose: false,
            gc: false,
            selectors: vec![
                parse("Shop::Cart#add(item, qty)"),
                parse("?Dir.glob"),
                parse("sleep"),
            ],
            wait_for_code: false,
        };
        let tree = crate::restore_data::tests::Tree::default();
        let list = plan.selector_list(&tree);
        let first = "[0, \"Shop::Cart#add(item, qty)\", \"Shop::Cart\", \"instance\", \"add\", \
                     [\"item\", \"qty\"], false]";
        let second = "[1, \"Dir.glob\", \"Dir\", \"singleton\", \"glob\", [], true]";
        let third = "[2, \"sleep\", nil, \"anywhere\", \"sleep\", [], false]";
        assert_eq!(tree.render(list), format!("[{first}, {second}, {third}]"));
    }

    fn request() -> TraceRequest {
        TraceRequest {
            firehose: false,
            selectors: vec![],
            slow_ms: None,
            gc: false,
            force: false,
            wait_ms: 1_000,
            wait_for_code: false,
        }
    }

    #[test]
    fn a_request_becomes_a_plan_or_the_clients_error() {
        let none = plan(&request(), false).err().unwrap();
        assert!(none.starts_with("nothing to trace"), "{none}");
        let bad = plan(
            &TraceRequest {
                selectors: vec!["not a selector(".into()],
                ..request()
            },
            false,
        );
        assert!(bad.is_err());
        // --slow alone watches every method.
        let slow = plan(
            &TraceRequest {
                slow_ms: Some(5),
                ..request()
            },
            false,
        )
        .unwrap();
        assert!(slow.firehose);
        let picked = plan(
            &TraceRequest {
                selectors: vec!["Foo#bar".into()],
                slow_ms: Some(5),
                ..request()
            },
            false,
        )
        .unwrap();
        assert!(!picked.firehose);
        assert_eq!(picked.selectors.len(), 1);
    }

    #[test]
    fn yjit_on_ruby_3_1_needs_force_for_method_hooks_but_not_for_gc() {
        let firehose = TraceRequest {
            firehose: true,
            ..request()
        };
        let refused = plan(&firehose, true).err().unwrap();
        assert!(refused.contains("add --force"), "{refused}");
        assert!(plan(
            &TraceRequest {
                force: true,
                ..firehose
            },
            true
        )
        .is_ok());
        assert!(plan(
            &TraceRequest {
                gc: true,
                ..request()
            },
            true
        )
        .is_ok());
    }
}
