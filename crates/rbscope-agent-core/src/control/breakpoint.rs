//! One client's breakpoint (`rbscope break`), served on its connection thread: set (through
//! the agent's Ruby thread, which asks lib/rbscope/live.rb), report each hit, remove.
//!
//! The hook itself is a TracePoint that lib/rbscope/live.rb targets at the one instruction
//! sequence and line; when the line runs, Ruby stores the snapshot and posts what happened
//! here ([`post`], through `Rbscope::Native.break_post`), into the breakpoint's mailbox. The
//! connection thread takes the mailbox's messages every few milliseconds and writes them to the
//! client. The breakpoint ends when Ruby posts that it reached its `max` hits (the hook is
//! already off then, inside the app), when its time is up, or when the client goes away (Ctrl-C,
//! SIGKILL: the kernel closes the socket); then the agent's Ruby thread removes it.

use super::queue::{Work, WorkQueue, NO_AGENT_THREAD, QUEUE_FULL};
use super::{Handler, STORED_WAIT};
use crate::restore_data::Build;
use rbscope_proto::{
    read_frame, write_frame, AgentMessage, BreakHit, BreakRequest, ClientMessage, FrameError,
};
use rbscope_trace::condition::{Condition, Outcome, Value, Why};
use rbscope_trace::selector::Root;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// How long the connection thread sleeps between looks at the mailbox (milliseconds).
const POLL_MS: i32 = 5;
/// The longest a breakpoint may stay (`--for`).
pub const MAX_FOR: Duration = Duration::from_secs(24 * 3600);
/// Hits at most per breakpoint (`--max`).
pub const MAX_HITS: u32 = 10_000;
/// Messages a mailbox keeps for its client at most (the rest are dropped, counted).
const MAILBOX_LIMIT: usize = 1_000;

/// The refusal on Ruby 3.1 with YJIT on (as `rbscope trace` refuses).
const YJIT_3_1: &str = "YJIT is on in this Ruby 3.1 process: a line hook makes YJIT drop its \
     compiled code, and the app stays slower until it restarts, even after the breakpoint is \
     removed; add --force to set it anyway";

static NEXT_BREAK: AtomicU64 = AtomicU64::new(1);

/// What Ruby posted for one breakpoint, waiting for its connection thread.
#[derive(Default)]
struct Mailbox {
    messages: VecDeque<AgentMessage>,
    hits: u32,
    /// Why it ended inside the app (its `max` hits), once it has.
    done: Option<String>,
    dropped: u64,
    /// Its condition (`--if`), when it has one.
    condition: Option<Condition>,
    /// The reasons a test was unknown already told to the client (each once).
    told: HashSet<Why>,
}

static MAILBOXES: Mutex<BTreeMap<u64, Mailbox>> = Mutex::new(BTreeMap::new());

fn with_boxes<R>(f: impl FnOnce(&mut BTreeMap<u64, Mailbox>) -> R) -> R {
    let mut boxes = match MAILBOXES.lock() {
        Ok(b) => b,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut boxes)
}

/// Forgets every breakpoint (`Rbscope.stop`, a forked child): their connection threads, if
/// any, end as if removed, and posts find nothing.
pub fn forget() {
    with_boxes(|b| b.clear());
}

/// Breakpoints set now (shown by `rbscope doctor -p` as `breakpoints_set`).
pub fn count() -> u64 {
    with_boxes(|b| b.len() as u64)
}

/// Posts what happened to breakpoint `id` (from `Rbscope::Native.break_post(id, what, text)`):
/// `hit` (`text`: the snapshot id, or nil when none was stored), `note`, `done` (`text`: why).
/// False when no such breakpoint is
/// set (its client went away): the caller removes its hook.
pub fn post(id: u64, what: &str, text: Option<String>) -> bool {
    with_boxes(|boxes| {
        let Some(b) = boxes.get_mut(&id) else {
            return false;
        };
        let message = match what {
            "hit" => {
                b.hits = b.hits.saturating_add(1);
                let note = text.is_none().then(|| {
                    "not stored: rate limited, the store's queue is full or the frames could not \
                     be read (see `rbscope doctor -p PID`)"
                        .to_string()
                });
                Some(AgentMessage::BreakHit(BreakHit {
                    n: b.hits,
                    id: text,
                    note,
                }))
            }
            "note" => text.map(AgentMessage::BreakNote),
            "done" => {
                b.done = Some(text.unwrap_or_else(|| "done".into()));
                None
            }
            _ => None,
        };
        if let Some(m) = message {
            if b.messages.len() < MAILBOX_LIMIT {
                b.messages.push_back(m);
            } else {
                b.dropped += 1;
            }
        }
        true
    })
}

/// The answer to a `Break` from what lib/rbscope/live.rb's `break_set` gave: `ok` and [file,
/// hooked, waiting], or not `ok` and [message].
pub fn answer(ok: bool, texts: Vec<Option<String>>, line: u32) -> AgentMessage {
    let mut texts = texts.into_iter();
    let mut next = || texts.next().flatten();
    if !ok {
        return AgentMessage::Error(
            next().unwrap_or_else(|| "the breakpoint could not be set".into()),
        );
    }
    let (file, hooked, waiting) = (
        next().unwrap_or_default(),
        next().unwrap_or_default(),
        next(),
    );
    AgentMessage::BreakSet(rbscope_proto::BreakSet {
        file,
        line,
        hooked,
        waiting,
    })
}

/// The values breakpoint `id`'s condition reads, as lib/rbscope/breakpoints.rb takes them: one
/// `[text, root, name, [method...]]` each, root `self`, `local` or `ivar` (name nil for self);
/// an empty array without a condition.
pub fn condition_paths<B: Build>(b: &B, id: u64) -> B::Obj {
    let paths: Vec<(String, &'static str, Option<String>, Vec<String>)> = with_boxes(|boxes| {
        let Some(c) = boxes.get(&id).and_then(|m| m.condition.as_ref()) else {
            return Vec::new();
        };
        c.paths()
            .into_iter()
            .map(|p| {
                let (root, name) = match &p.root {
                    Root::SelfValue => ("self", None),
                    Root::Arg(n) => ("local", Some(n.clone())),
                    Root::Ivar(n) => ("ivar", Some(n.clone())),
                };
                (p.text.clone(), root, name, p.chain.clone())
            })
            .collect()
    });
    let list = b.array(paths.len());
    for (text, root, name, chain) in paths {
        let entry = b.array(4);
        let methods = b.array(chain.len());
        for m in &chain {
            b.push(methods, b.str(m));
        }
        let name = name.map_or(b.nil(), |n| b.str(&n));
        for v in [b.str(&text), b.str(root), name, methods] {
            b.push(entry, v);
        }
        b.push(list, entry);
    }
    list
}

/// A value lib/rbscope/breakpoints.rb read for a condition, as (kind, bytes): `nil`, `true`,
/// `false`, `int` (decimal), `float` (Ruby's `to_s`), `str`, `sym`, `other` (its class name),
/// `unavailable` (why, after the path: "raised NoMethodError").
pub fn condition_value(kind: &str, bytes: Vec<u8>) -> Value {
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    match kind {
        "nil" => Value::Nil,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "int" => match text().parse() {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Unavailable("is an Integer too large to compare".into()),
        },
        "float" => match text().parse::<f64>() {
            Ok(f) if f.is_finite() => Value::Float(f),
            _ => Value::Other("Float".into()),
        },
        "str" => Value::Str(bytes),
        "sym" => Value::Sym(text()),
        "other" => Value::Other(text()),
        _ => Value::Unavailable(text()),
    }
}

/// Whether breakpoint `id` fires with these values (one per [`condition_paths`] entry, in its
/// order): true without a condition, or when it holds. A condition that cannot be decided does
/// not fire; the first time each reason comes up it is told to the client as a note.
pub fn test(id: u64, values: Vec<Value>) -> bool {
    with_boxes(|boxes| {
        let Some(b) = boxes.get_mut(&id) else {
            return false;
        };
        let Some(c) = &b.condition else {
            return true;
        };
        let paths: Vec<String> = c.paths().iter().map(|p| p.text.clone()).collect();
        let outcome = c.eval(|capture| {
            let i = paths.iter().position(|t| *t == capture.text)?;
            values.get(i).cloned()
        });
        match outcome {
            Outcome::True => true,
            Outcome::False => false,
            Outcome::Unknown(why) => {
                if b.told.len() < 16
                    && b.told.insert(why.clone())
                    && b.messages.len() < MAILBOX_LIMIT
                {
                    b.messages.push_back(AgentMessage::BreakNote(format!(
                        "the condition could not be decided (the line ran, no snapshot): {why}"
                    )));
                }
                false
            }
        }
    })
}

/// What the client asked for, checked; the error is one line for the client.
pub fn check(req: &BreakRequest) -> Result<(), String> {
    if req.file.trim().is_empty() {
        return Err("no file given (FILE:LINE)".into());
    }
    if req.line == 0 {
        return Err("line numbers start at 1".into());
    }
    if req.max == 0 || req.max > MAX_HITS {
        return Err(format!("--max must be between 1 and {MAX_HITS}"));
    }
    if req.for_ms == 0 || req.for_ms > MAX_FOR.as_millis() as u64 {
        return Err("--for must be more than 0 and at most 24 hours".into());
    }
    if let Some(text) = &req.condition {
        Condition::parse(text).map_err(|e| format!("--if: {e}"))?;
    }
    Ok(())
}

enum End {
    /// It reached its `max` hits (the text says so).
    Done(String),
    TimeUp,
    /// The client went away (or sent something else than Detach).
    Gone,
}

/// Serves a `Break` request on `stream` until the breakpoint ends.
pub(super) fn serve<H: Handler>(
    mut stream: UnixStream,
    handler: &H,
    req: BreakRequest,
) -> Result<(), FrameError> {
    if let Err(why) = check(&req) {
        return write_frame(&mut stream, &AgentMessage::Error(why));
    }
    if handler.yjit_hooks_last() && !req.force {
        return write_frame(&mut stream, &AgentMessage::Error(YJIT_3_1.into()));
    }
    let Some(queue) = handler.queue() else {
        return write_frame(&mut stream, &AgentMessage::Busy(NO_AGENT_THREAD.into()));
    };
    let id = NEXT_BREAK.fetch_add(1, Ordering::Relaxed);
    let condition = req
        .condition
        .as_deref()
        .and_then(|t| Condition::parse(t).ok());
    with_boxes(|b| {
        b.insert(
            id,
            Mailbox {
                condition,
                ..Mailbox::default()
            },
        )
    });
    let ends = Instant::now() + Duration::from_millis(req.for_ms);
    let wait = Duration::from_millis(u64::from(req.wait_ms.clamp(1, 60_000)));
    let (reply, answer) = mpsc::sync_channel(1);
    let Some(ticket) = queue.submit(Work::Break {
        id,
        request: req,
        deadline: Instant::now() + wait,
        reply,
    }) else {
        with_boxes(|b| b.remove(&id));
        return write_frame(&mut stream, &AgentMessage::Busy(QUEUE_FULL.into()));
    };
    let set = match ticket.wait(&answer, wait) {
        Ok(m @ AgentMessage::BreakSet(_)) => m,
        Ok(other) => {
            remove(queue, id);
            return write_frame(&mut stream, &other);
        }
        Err(_) => {
            remove(queue, id);
            return write_frame(
                &mut stream,
                &AgentMessage::Busy(format!(
                    "the Ruby VM did not give the agent a turn within {} ms to set the \
                     breakpoint (native code, such as a C extension, may be holding the GVL)",
                    wait.as_millis()
                )),
            );
        }
    };
    let end = match write_frame(&mut stream, &set) {
        Ok(()) => pump(&mut stream, handler, id, ends),
        Err(_) => End::Gone,
    };
    remove(queue, id);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    match end {
        End::Done(why) => write_frame(&mut stream, &AgentMessage::BreakEnded(why)),
        End::TimeUp => write_frame(
            &mut stream,
            &AgentMessage::BreakEnded("time is up (--for)".into()),
        ),
        End::Gone => Ok(()),
    }
}

/// Sends the mailbox's messages to the client until the breakpoint ends.
fn pump<H: Handler>(stream: &mut UnixStream, handler: &H, id: u64, ends: Instant) -> End {
    let fd = stream.as_raw_fd();
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is one valid pollfd for the connection's open socket, which `stream`
        // keeps open for the whole call.
        let n = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
        if n > 0 {
            if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return End::Gone;
            }
            if pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                // The client only ever closes the connection (or sends Detach) to stop.
                let _ = read_frame::<_, ClientMessage>(stream);
                return End::Gone;
            }
        }
        let (messages, done) = with_boxes(|boxes| match boxes.get_mut(&id) {
            Some(b) => (std::mem::take(&mut b.messages), b.done.clone()),
            None => (VecDeque::new(), Some("removed".into())),
        });
        // A hit's snapshot id goes out once the snapshot is in the store (as `snapshot -p`'s).
        if messages
            .iter()
            .any(|m| matches!(m, AgentMessage::BreakHit(h) if h.id.is_some()))
        {
            handler.stored(STORED_WAIT);
        }
        for m in messages {
            if write_frame(stream, &m).is_err() {
                return End::Gone;
            }
        }
        if let Some(why) = done {
            return End::Done(why);
        }
        if Instant::now() >= ends {
            return End::TimeUp;
        }
    }
}

/// Asks the agent's Ruby thread to remove breakpoint `id` and waits (a few seconds at most);
/// its mailbox is closed first, so a hit meanwhile finds it gone and turns its hook off.
fn remove<X>(queue: &WorkQueue<X>, id: u64) {
    with_boxes(|b| b.remove(&id));
    let deadline = Instant::now() + Duration::from_secs(5);
    let (reply, done) = mpsc::sync_channel(1);
    let ticket = loop {
        if let Some(t) = queue.submit(Work::BreakRemove {
            id,
            reply: reply.clone(),
        }) {
            break t;
        }
        if Instant::now() >= deadline {
            return;
        }
        // The queue is full (bounded): back off briefly and offer again.
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = ticket.wait(&done, deadline.saturating_duration_since(Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(file: &str, line: u32, max: u32, for_ms: u64) -> BreakRequest {
        BreakRequest {
            file: file.into(),
            line,
            max,
            for_ms,
            wait_ms: 1_000,
            condition: None,
            force: false,
        }
    }

    #[test]
    fn live_rb_answers_become_messages() {
        let s = |t: &str| Some(t.to_string());
        assert_eq!(
            answer(true, vec![s("/app/a.rb"), s("Shop#add"), None], 7),
            AgentMessage::BreakSet(rbscope_proto::BreakSet {
                file: "/app/a.rb".into(),
                line: 7,
                hooked: "Shop#add".into(),
                waiting: None
            })
        );
        assert_eq!(
            answer(false, vec![s("a.rb:3 has no code")], 3),
            AgentMessage::Error("a.rb:3 has no code".into())
        );
        assert!(matches!(answer(false, vec![], 3), AgentMessage::Error(_)));
    }

    #[test]
    fn a_request_is_checked_before_anything_is_set() {
        assert!(check(&req("app.rb", 3, 1, 600_000)).is_ok());
        assert!(check(&req(" ", 3, 1, 1)).unwrap_err().contains("no file"));
        assert!(check(&req("a.rb", 0, 1, 1))
            .unwrap_err()
            .contains("start at 1"));
        assert!(check(&req("a.rb", 1, 0, 1)).unwrap_err().contains("--max"));
        assert!(check(&req("a.rb", 1, MAX_HITS + 1, 1)).is_err());
        assert!(check(&req("a.rb", 1, 1, 0)).unwrap_err().contains("--for"));
        assert!(check(&req("a.rb", 1, 1, 25 * 3600 * 1000)).is_err());
        let mut r = req("a.rb", 1, 1, 1);
        r.condition = Some("total >".into());
        let e = check(&r).unwrap_err();
        assert!(
            e.starts_with("--if: condition: at column") && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn a_condition_reads_its_paths_and_fires_only_when_it_holds() {
        let id = NEXT_BREAK.fetch_add(1, Ordering::Relaxed);
        let condition = Condition::parse("total > 20 and @name =~ /^a/ and self").ok();
        with_boxes(|b| {
            b.insert(
                id,
                Mailbox {
                    condition,
                    ..Mailbox::default()
                },
            )
        });
        let tree = crate::restore_data::tests::Tree::default();
        let list = condition_paths(&tree, id);
        assert_eq!(
            tree.render(list),
            "[[\"total\", \"local\", \"total\", []], [\"@name\", \"ivar\", \"@name\", []], \
             [\"self\", \"self\", nil, []]]"
        );
        let v = |t: i64, name: &str| {
            vec![
                condition_value("int", t.to_string().into_bytes()),
                condition_value("str", name.as_bytes().to_vec()),
                condition_value("other", b"Counter".to_vec()),
            ]
        };
        assert!(test(id, v(30, "ab")));
        assert!(!test(id, v(10, "ab")));
        assert!(!test(id, v(30, "ba")));
        // Unknown: does not fire, and is told once.
        let unknown = vec![
            condition_value("unavailable", b"raised NoMethodError".to_vec()),
            condition_value("str", b"ab".to_vec()),
            condition_value("other", b"Counter".to_vec()),
        ];
        assert!(!test(id, unknown.clone()));
        assert!(!test(id, unknown));
        let b = with_boxes(|b| b.remove(&id)).unwrap();
        let notes: Vec<_> = b.messages.into_iter().collect();
        assert_eq!(
            notes,
            [AgentMessage::BreakNote(
                "the condition could not be decided (the line ran, no snapshot): total raised \
                 NoMethodError"
                    .into()
            )]
        );
        // Without a condition (or a breakpoint) the answer is plain.
        let id = NEXT_BREAK.fetch_add(1, Ordering::Relaxed);
        assert!(!test(id, vec![]));
        with_boxes(|b| b.insert(id, Mailbox::default()));
        assert!(test(id, vec![]));
        assert_eq!(tree.render(condition_paths(&tree, id)), "[]");
        with_boxes(|b| b.remove(&id));
        assert_eq!(
            condition_value("int", b"99999999999999999999".to_vec()),
            Value::Unavailable("is an Integer too large to compare".into())
        );
        assert_eq!(
            condition_value("float", b"1.0e+20".to_vec()),
            Value::Float(1e20)
        );
        assert_eq!(
            condition_value("float", b"Infinity".to_vec()),
            Value::Other("Float".into())
        );
    }

    #[test]
    fn posts_reach_the_mailbox_of_a_set_breakpoint_only() {
        let id = NEXT_BREAK.fetch_add(1, Ordering::Relaxed);
        assert!(!post(id, "hit", Some("x".into())));
        with_boxes(|b| b.insert(id, Mailbox::default()));
        assert!(post(id, "hit", Some("01AB".into())));
        assert!(post(id, "hit", None));
        assert!(post(id, "note", Some("set again".into())));
        assert!(post(id, "done", Some("2 hits (--max 2)".into())));
        let b = with_boxes(|b| b.remove(&id)).unwrap();
        assert_eq!(b.done.as_deref(), Some("2 hits (--max 2)"));
        let m: Vec<_> = b.messages.into_iter().collect();
        assert_eq!(
            m[0],
            AgentMessage::BreakHit(BreakHit {
                n: 1,
                id: Some("01AB".into()),
                note: None
            })
        );
        assert!(
            matches!(&m[1], AgentMessage::BreakHit(h) if h.n == 2 && h.id.is_none() && h.note.is_some())
        );
        assert_eq!(m[2], AgentMessage::BreakNote("set again".into()));
        assert!(!post(id, "hit", None));
    }
}
