//! One client's breakpoint (`rbscope break`) or logpoint (`rbscope log`), served on its
//! connection thread: set (through the agent's Ruby thread, which asks
//! lib/rbscope/breakpoints.rb), report each hit, remove. A logpoint is a breakpoint whose hit
//! sends the values it read ([`log_post`], a `LogHit`) instead of storing a snapshot; `--every`
//! lets one hit through per period ([`due`]), the others are skipped and counted.
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
    read_frame, write_frame, AgentMessage, BreakHit, ClientMessage, FrameError, LogHit,
    PointRequest,
};
use rbscope_snapshot::redact::Rules;
use rbscope_trace::condition::{Condition, Outcome, Value, Why};
use rbscope_trace::selector::{Capture, Root};
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
/// Values a logpoint reads at most.
pub const MAX_VALUES: usize = 16;

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
    /// `--every`: at most one hit per this long.
    every: Option<Duration>,
    /// When the next hit may go through (with `every`).
    next_due: Option<Instant>,
    /// Hits skipped by `every`.
    skipped: u64,
    /// A logpoint's values (their paths as the client wrote them).
    values: Vec<Capture>,
    /// Why a logpoint's value was not read, each told to the client once.
    noted: HashSet<String>,
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

/// Whether breakpoint `id` may fire now under its `--every` (always without one) and, for a
/// logpoint, whether its mailbox has room. With `claim`, a yes also starts the next period; a
/// no is counted as skipped (`--every`) or dropped (no room). Called by the hook before
/// anything else is read (`claim` false) and once its condition held (`claim` true), so a
/// skipped or dropped hit costs one call and reads no value. False when no such breakpoint is
/// set.
pub fn due(id: u64, claim: bool) -> bool {
    with_boxes(|boxes| {
        let Some(b) = boxes.get_mut(&id) else {
            return false;
        };
        if !b.values.is_empty() && b.messages.len() >= MAILBOX_LIMIT {
            b.dropped += 1;
            return false;
        }
        let Some(every) = b.every else {
            return true;
        };
        let now = Instant::now();
        if b.next_due.is_some_and(|d| now < d) {
            b.skipped = b.skipped.saturating_add(1);
            return false;
        }
        if claim {
            b.next_due = Some(now + every);
        }
        true
    })
}

/// Posts a logpoint's hit: (path, rendered value or why it was not read), in the order of
/// [`log_paths`], on thread `tid`/`thread`. A value not read is shown as `(not read)` and why is
/// told to the client once (as a condition's unknowns are). False when no such logpoint is set
/// (the caller removes its hook). A full mailbox drops the hit and counts it; the app never
/// waits.
pub fn log_post(
    id: u64,
    tid: Option<i32>,
    thread: String,
    read: Vec<(String, Result<String, String>)>,
) -> bool {
    let t_ns = rbscope_trace::clock::mono_ns();
    with_boxes(|boxes| {
        let Some(b) = boxes.get_mut(&id) else {
            return false;
        };
        b.hits = b.hits.saturating_add(1);
        if b.messages.len() >= MAILBOX_LIMIT {
            b.dropped += 1;
            return true;
        }
        let mut values = Vec::with_capacity(read.len());
        for (path, shown) in read {
            let shown = match shown {
                Ok(text) => text,
                Err(why) => {
                    let note = format!("{path} {why}");
                    if b.noted.len() < 16 && b.noted.insert(note.clone()) {
                        b.messages.push_back(AgentMessage::BreakNote(note));
                    }
                    "(not read)".into()
                }
            };
            values.push((path, shown));
        }
        b.messages.push_back(AgentMessage::LogHit(LogHit {
            n: b.hits,
            t_ns,
            tid,
            thread,
            values,
        }));
        true
    })
}

/// Why a logpoint's value must not be shown, by the names along its path (`@user.password`,
/// `api_token`), under the app's redaction rules (those of snapshots); None to show it.
pub fn log_secret(rules: &Rules, path: &str) -> Option<&'static str> {
    path.split('.')
        .map(|n| n.trim_start_matches('@'))
        .find_map(|n| rules.secret_name(n))
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
    let paths = with_boxes(
        |boxes| match boxes.get(&id).and_then(|m| m.condition.as_ref()) {
            Some(c) => c.paths().into_iter().map(path_parts).collect(),
            None => Vec::new(),
        },
    );
    path_list(b, paths)
}

/// The values logpoint `id` reads, as [`condition_paths`] gives a condition's (empty for a
/// breakpoint).
pub fn log_paths<B: Build>(b: &B, id: u64) -> B::Obj {
    let paths = with_boxes(|boxes| match boxes.get(&id) {
        Some(m) => m.values.iter().map(path_parts).collect(),
        None => Vec::new(),
    });
    path_list(b, paths)
}

type PathParts = (String, &'static str, Option<String>, Vec<String>);

fn path_parts(p: &Capture) -> PathParts {
    let (root, name) = match &p.root {
        Root::SelfValue => ("self", None),
        Root::Arg(n) => ("local", Some(n.clone())),
        Root::Ivar(n) => ("ivar", Some(n.clone())),
    };
    (p.text.clone(), root, name, p.chain.clone())
}

fn path_list<B: Build>(b: &B, paths: Vec<PathParts>) -> B::Obj {
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
pub fn check(point: &PointRequest) -> Result<(), String> {
    let req = &point.at;
    if req.file.trim().is_empty() {
        return Err("no file given (FILE:LINE)".into());
    }
    if req.line == 0 {
        return Err("line numbers start at 1".into());
    }
    // A logpoint's max of 0: no limit.
    let unlimited = req.max == 0 && !point.values.is_empty();
    if !unlimited && (req.max == 0 || req.max > MAX_HITS) {
        return Err(format!("--max must be between 1 and {MAX_HITS}"));
    }
    if point.every_ms > MAX_FOR.as_millis() as u64 {
        return Err("--every must be at most 24 hours".into());
    }
    if point.values.len() > MAX_VALUES {
        return Err(format!("at most {MAX_VALUES} values per logpoint"));
    }
    for v in &point.values {
        Capture::parse(v).map_err(|e| format!("value {v:?}: {e}"))?;
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
    /// The client asked to end it (`Detach`).
    Detached,
    /// The client went away (or sent something else than Detach).
    Gone,
}

/// Serves a `Break` request on `stream` until the breakpoint ends.
pub(super) fn serve<H: Handler>(
    mut stream: UnixStream,
    handler: &H,
    point: PointRequest,
) -> Result<(), FrameError> {
    if let Err(why) = check(&point) {
        return write_frame(&mut stream, &AgentMessage::Error(why));
    }
    let req = &point.at;
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
    let values = point
        .values
        .iter()
        .filter_map(|v| Capture::parse(v).ok())
        .collect();
    let every_ms = point.every_ms;
    let every = (every_ms > 0).then(|| Duration::from_millis(every_ms));
    with_boxes(|b| {
        b.insert(
            id,
            Mailbox {
                condition,
                every,
                values,
                ..Mailbox::default()
            },
        )
    });
    let ends = Instant::now() + Duration::from_millis(req.for_ms);
    let wait = Duration::from_millis(u64::from(req.wait_ms.clamp(1, 60_000)));
    let (reply, answer) = mpsc::sync_channel(1);
    let Some(ticket) = queue.submit(Work::Break {
        id,
        request: point,
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
    // What it skipped and dropped, read before the mailbox goes.
    let tally = with_boxes(|b| b.get(&id).map(|m| (m.skipped, m.dropped)));
    remove(queue, id);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let why = match end {
        End::Done(why) => why,
        End::TimeUp => "time is up (--for)".into(),
        End::Detached => "stopped by the client".into(),
        End::Gone => return Ok(()),
    };
    let (skipped, dropped) = tally.unwrap_or_default();
    write_frame(
        &mut stream,
        &AgentMessage::BreakEnded(ended(&why, skipped, every_ms, dropped)),
    )
}

/// The `BreakEnded` text: why, then what was skipped (`--every`) and dropped (the client did
/// not keep up), when any was.
fn ended(why: &str, skipped: u64, every_ms: u64, dropped: u64) -> String {
    let mut text = why.to_string();
    if every_ms > 0 {
        let s = if skipped == 1 { "" } else { "s" };
        text.push_str(&format!(
            "; {skipped} hit{s} skipped by --every ({} ms)",
            every_ms
        ));
    }
    if dropped > 0 {
        text.push_str(&format!(
            "; {dropped} hits dropped (this client did not keep up)"
        ));
    }
    text
}

/// Sends the mailbox's messages to the client until the breakpoint ends.
fn pump<H: Handler>(stream: &mut UnixStream, handler: &H, id: u64, ends: Instant) -> End {
    let fd = stream.as_raw_fd();
    let mut detached = false;
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
                // The client only ever closes the connection or sends Detach to stop; after
                // Detach, what the mailbox holds still goes out.
                match read_frame::<_, ClientMessage>(stream) {
                    Ok(ClientMessage::Detach) => detached = true,
                    _ => return End::Gone,
                }
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
        if detached {
            return End::Detached;
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

    fn req(file: &str, line: u32, max: u32, for_ms: u64) -> PointRequest {
        PointRequest {
            at: rbscope_proto::BreakRequest {
                file: file.into(),
                line,
                max,
                for_ms,
                wait_ms: 1_000,
                condition: None,
                force: false,
            },
            every_ms: 0,
            values: Vec::new(),
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
        r.at.condition = Some("total >".into());
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

    #[test]
    fn a_logpoint_request_is_checked_too() {
        let mut r = req("a.rb", 3, 0, 1_000);
        assert!(check(&r).unwrap_err().contains("--max"));
        r.values = vec!["order.id".into(), "@user.email".into(), "self".into()];
        assert!(check(&r).is_ok(), "a logpoint's max 0 is no limit");
        r.values.push("order.save!".into());
        let e = check(&r).unwrap_err();
        assert!(
            e.starts_with("value \"order.save!\": ") && !e.contains('\n'),
            "{e}"
        );
        r.values = vec!["x".into(); MAX_VALUES + 1];
        assert!(check(&r).unwrap_err().contains("at most"));
        let mut r = req("a.rb", 3, 1, 1_000);
        r.every_ms = 25 * 3600 * 1000;
        assert!(check(&r).unwrap_err().contains("--every"));
    }

    #[test]
    fn every_lets_one_hit_through_per_period_and_counts_the_rest() {
        let id = NEXT_BREAK.fetch_add(1, Ordering::Relaxed);
        assert!(!due(id, false), "no such breakpoint");
        with_boxes(|b| {
            b.insert(
                id,
                Mailbox {
                    every: Some(Duration::from_secs(3600)),
                    ..Mailbox::default()
                },
            )
        });
        // A peek does not start the period; a claim does.
        assert!(due(id, false));
        assert!(due(id, true));
        assert!(!due(id, false));
        assert!(!due(id, true));
        let b = with_boxes(|b| b.remove(&id)).unwrap();
        assert_eq!(b.skipped, 2);
        // Without --every, always.
        with_boxes(|b| b.insert(id, Mailbox::default()));
        assert!(due(id, true) && due(id, true));
        // A logpoint whose mailbox is full: dropped before anything is read, counted.
        with_boxes(|b| {
            if let Some(m) = b.get_mut(&id) {
                m.values = vec![Capture::parse("k").unwrap()];
                m.messages = (0..MAILBOX_LIMIT)
                    .map(|_| AgentMessage::BreakNote(String::new()))
                    .collect();
            }
        });
        assert!(!due(id, false));
        let b = with_boxes(|b| b.remove(&id)).unwrap();
        assert_eq!((b.dropped, b.skipped), (1, 0));
        assert_eq!(
            ended("time is up (--for)", 1, 500, 0),
            "time is up (--for); 1 hit skipped by --every (500 ms)"
        );
        assert_eq!(
            ended("3 hits (--max 3)", 0, 0, 7),
            "3 hits (--max 3); 7 hits dropped (this client did not keep up)"
        );
        assert_eq!(
            ended("stopped by the client", 0, 0, 0),
            "stopped by the client"
        );
    }

    #[test]
    fn a_logpoint_posts_its_values_and_drops_past_the_mailbox_limit() {
        let id = NEXT_BREAK.fetch_add(1, Ordering::Relaxed);
        assert!(!log_post(id, None, String::new(), vec![]));
        let read = |n: usize| {
            vec![
                ("order.id".to_string(), Ok(n.to_string())),
                ("@user.email".to_string(), Ok("\"a@b.c\"".to_string())),
            ]
        };
        let values = ["order.id", "@user.email"]
            .iter()
            .map(|t| Capture::parse(t).unwrap())
            .collect();
        with_boxes(|b| {
            b.insert(
                id,
                Mailbox {
                    values,
                    ..Mailbox::default()
                },
            )
        });
        let tree = crate::restore_data::tests::Tree::default();
        assert_eq!(
            tree.render(log_paths(&tree, id)),
            "[[\"order.id\", \"local\", \"order\", [\"id\"]], [\"@user.email\", \"ivar\", \"@user\", [\"email\"]]]"
        );
        let unread = |why: &str| {
            vec![
                ("order.id".to_string(), Err(why.to_string())),
                ("@user.email".to_string(), Ok("nil".to_string())),
            ]
        };
        // Why a value was not read is told once.
        assert!(log_post(
            id,
            Some(7),
            "w".into(),
            unread("raised NoMethodError")
        ));
        assert!(log_post(
            id,
            Some(7),
            "w".into(),
            unread("raised NoMethodError")
        ));
        for n in 2..MAILBOX_LIMIT + 2 {
            assert!(log_post(id, Some(7), "w".into(), read(n)));
        }
        let b = with_boxes(|b| b.remove(&id)).unwrap();
        assert_eq!((b.messages.len(), b.dropped), (MAILBOX_LIMIT, 3));
        assert_eq!(
            b.messages[0],
            AgentMessage::BreakNote("order.id raised NoMethodError".into())
        );
        assert!(
            matches!(&b.messages[2], AgentMessage::LogHit(h) if h.n == 2 && h.values[0].1 == "(not read)")
        );
        match &b.messages[3] {
            AgentMessage::LogHit(h) => {
                assert_eq!((h.n, h.tid, h.thread.as_str()), (3, Some(7), "w"));
                assert_eq!(
                    h.values,
                    [
                        ("order.id".to_string(), "2".to_string()),
                        ("@user.email".to_string(), "\"a@b.c\"".to_string())
                    ]
                );
                assert!(h.t_ns > 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_logged_value_with_a_secret_name_is_not_shown() {
        let rules = Rules::default();
        assert_eq!(log_secret(&rules, "@user.password"), Some("name"));
        assert_eq!(log_secret(&rules, "api_token"), Some("name"));
        assert_eq!(log_secret(&rules, "order.id"), None);
        assert_eq!(log_secret(&rules, "self"), None);
        let off = Rules {
            enabled: false,
            ..Rules::default()
        };
        assert_eq!(log_secret(&off, "@user.password"), None);
    }
}
