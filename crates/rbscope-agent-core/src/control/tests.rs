//! The server over real UNIX sockets in a temporary directory, with a handler and a "Ruby
//! thread" that fake the agent.

use super::*;
use rbscope_proto::{
    read_frame, ClientMessage, EvalRequest, Hello, TraceRequest, TraceStarted, PROTOCOL_VERSION,
};
use rbscope_trace::events::{Event, Reader};
use rbscope_trace::session::Session;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::Instant;

/// What the fake agent saw and counted.
#[derive(Default)]
struct Seen {
    counts: Mutex<Vec<Count>>,
    evals: Evals,
}

struct Fake {
    seen: Arc<Seen>,
    queue: Option<WorkQueue<u32>>,
    allow_eval: bool,
}

impl Handler for Fake {
    type Heap = u32;
    fn count(&self, what: Count) {
        self.seen.counts.lock().unwrap().push(what);
    }
    fn ruby_version(&self) -> String {
        "3.4.0".into()
    }
    fn status(&self) -> AgentStatus {
        AgentStatus {
            started: true,
            store: "fake".into(),
            settings: vec![],
            counters: vec![("seen".into(), 1)],
            warnings: vec![],
        }
    }
    fn queue(&self) -> Option<&WorkQueue<u32>> {
        self.queue.as_ref()
    }
    fn evals(&self) -> &Evals {
        &self.seen.evals
    }
    fn allow_eval(&self) -> bool {
        self.allow_eval
    }
    fn yjit_hooks_last(&self) -> bool {
        false
    }
    fn trace_buffer(&self) -> usize {
        64 * 1024
    }
    fn heap(&self, request: HeapRequest) -> AgentMessage {
        AgentMessage::Error(format!("heap: {request:?}"))
    }
}

/// What the fake Ruby thread did, in order.
#[derive(Debug, PartialEq)]
enum Did {
    Attached(u64),
    Detached(u64),
    EvalStarted(String),
    EvalCancelled,
    BreakRemoved(u64),
}

/// A running server with a fake agent thread.
struct Agent {
    _dir: tempfile::TempDir,
    server: Server,
    seen: Arc<Seen>,
    did: Receiver<Did>,
    /// The sessions the fake thread attached, for the test to write events into.
    sessions: Receiver<Arc<Session>>,
}

impl Agent {
    fn start(allow_eval: bool) -> Agent {
        Agent::start_owned_by(our_uid(), allow_eval)
    }

    fn start_owned_by(uid: u32, allow_eval: bool) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Seen::default());
        let (queue, inbox) = work_queue::<u32>(8, || {});
        let (did, did_rx) = mpsc::channel();
        let (sessions, sessions_rx) = mpsc::channel();
        let thread_seen = seen.clone();
        std::thread::spawn(move || loop {
            let work = inbox.wait();
            inbox.took(&work);
            let _ = match work {
                Work::Stacks { reply, .. } => {
                    let _ = reply.send(AgentMessage::Error("stacks read".into()));
                    Ok(())
                }
                Work::Memory { reply, .. } => {
                    let _ = reply.send(AgentMessage::Error("memory read".into()));
                    Ok(())
                }
                Work::Snapshot { request, reply, .. } => {
                    let text = format!("snapshot of {:?} all {}", request.threads, request.all);
                    let _ = reply.send(AgentMessage::Error(text));
                    Ok(())
                }
                Work::Attach { session, reply, .. } => {
                    let _ = sessions.send(session.clone());
                    let _ = reply.send(Ok(TraceStarted {
                        hooked: vec!["every Ruby method call".into()],
                        skipped: vec![],
                        waiting: vec![],
                        ring_bytes: session.ring.capacity() as u64,
                        install_us: 1,
                        clock: session.clock.name().into(),
                    }));
                    did.send(Did::Attached(session.id))
                }
                Work::Detach { id, reply } => {
                    let _ = reply.send(());
                    did.send(Did::Detached(id))
                }
                Work::Eval { token, code, .. } => {
                    if code != "sleep" {
                        thread_seen
                            .evals
                            .done(token, true, format!("=> {code}"), false);
                    }
                    did.send(Did::EvalStarted(code))
                }
                Work::CancelEval { .. } => did.send(Did::EvalCancelled),
                Work::Break {
                    id, request, reply, ..
                } => {
                    let request = request.at;
                    // A line that runs at once: one hit per `max`, then done (as live.rb posts).
                    let set = AgentMessage::BreakSet(rbscope_proto::BreakSet {
                        file: format!("/app/{}", request.file),
                        line: request.line,
                        hooked: "Shop#add (shop.rb:3)".into(),
                        waiting: None,
                    });
                    let _ = reply.send(set);
                    if request.max < 5 {
                        for n in 0..request.max {
                            super::break_post(id, "hit", Some(format!("ID{n}")));
                        }
                        super::break_post(id, "done", Some(format!("{} hits", request.max)));
                    }
                    Ok(())
                }
                Work::BreakRemove { id, reply } => {
                    let _ = reply.send(());
                    did.send(Did::BreakRemoved(id))
                }
                Work::Stop => break,
                Work::Retry { .. } | Work::Heap(_) | Work::Wake => Ok(()),
            };
        });
        let handler = Fake {
            seen: seen.clone(),
            queue: Some(queue),
            allow_eval,
        };
        // The temporary directory is open to others: the agent's own is made inside it.
        let run = dir.path().join("run");
        std::fs::DirBuilder::new().mode(0o700).create(&run).unwrap();
        if uid != our_uid() {
            std::os::unix::fs::chown(&run, Some(uid), None).unwrap();
        }
        let server = Server::start_in(&run, uid, handler).unwrap();
        Agent {
            _dir: dir,
            server,
            seen,
            did: did_rx,
            sessions: sessions_rx,
        }
    }

    fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.server.path).unwrap()
    }

    /// A connected client past the handshake.
    fn client(&self) -> UnixStream {
        let mut s = self.connect();
        assert!(matches!(
            hello(&mut s, PROTOCOL_VERSION),
            AgentMessage::Welcome(_)
        ));
        s
    }

    /// Waits (10 s at most) until `what` has been counted `n` times.
    fn counted(&self, what: Count, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.count_of(what);
            if got == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what:?} counted {got} times, not {n}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn count_of(&self, what: Count) -> usize {
        let counts = self.seen.counts.lock().unwrap();
        counts.iter().filter(|c| **c == what).count()
    }

    fn next_did(&self) -> Did {
        self.did.recv_timeout(Duration::from_secs(10)).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

fn our_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

fn send(s: &mut UnixStream, msg: &ClientMessage) {
    write_frame(s, msg).unwrap();
}

fn recv(s: &mut UnixStream) -> AgentMessage {
    read_frame(s).unwrap()
}

fn hello(s: &mut UnixStream, version: u32) -> AgentMessage {
    send(
        s,
        &ClientMessage::Hello(Hello {
            protocol_version: version,
            client_version: "test".into(),
        }),
    );
    recv(s)
}

/// True when the server closed the connection (nothing more to read).
fn closed(s: &mut UnixStream) -> bool {
    matches!(
        read_frame::<_, AgentMessage>(s),
        Err(rbscope_proto::FrameError::Closed)
    )
}

#[test]
fn the_handshake_then_answers_from_the_handler_and_its_thread() {
    let agent = Agent::start(false);
    let mut s = agent.connect();
    match hello(&mut s, PROTOCOL_VERSION) {
        AgentMessage::Welcome(w) => {
            assert_eq!(w.protocol_version, PROTOCOL_VERSION);
            assert_eq!(w.ruby_version, "3.4.0");
            assert_eq!(w.pid, std::process::id());
        }
        other => panic!("{other:?}"),
    }
    send(&mut s, &ClientMessage::Status);
    assert!(matches!(recv(&mut s), AgentMessage::Status(st) if st.store == "fake"));
    let asks = [
        (ClientMessage::Stacks { wait_ms: 5_000 }, "stacks read"),
        (ClientMessage::Memory { wait_ms: 5_000 }, "memory read"),
        (
            ClientMessage::Snapshot(rbscope_proto::SnapshotRequest {
                threads: vec!["worker-1".into()],
                all: false,
                wait_ms: 5_000,
            }),
            "snapshot of [\"worker-1\"] all false",
        ),
        (
            ClientMessage::HeapTrack {
                on: true,
                wait_ms: 7,
            },
            "heap: Track { on: true, wait_ms: 7 }",
        ),
        (
            ClientMessage::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client_version: "again".into(),
            }),
            "already said hello",
        ),
        (ClientMessage::Detach, "nothing is being traced"),
        (ClientMessage::Cancel, "no eval is running"),
    ];
    for (ask, answer) in asks {
        send(&mut s, &ask);
        assert_eq!(recv(&mut s), AgentMessage::Error(answer.into()), "{ask:?}");
    }
    drop(s);
    agent.counted(Count::Connection, 1);
    assert_eq!(agent.count_of(Count::Refused), 0);
}

#[test]
fn a_client_of_another_protocol_is_told_what_to_upgrade() {
    let agent = Agent::start(false);
    for version in [PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1] {
        let mut s = agent.connect();
        assert_eq!(
            hello(&mut s, version),
            AgentMessage::Refused(rbscope_proto::mismatch_advice(version, PROTOCOL_VERSION))
        );
        assert!(closed(&mut s));
    }
    agent.counted(Count::Refused, 2);
}

#[test]
fn a_first_message_other_than_hello_or_a_bad_frame_ends_the_connection() {
    let agent = Agent::start(false);
    let mut s = agent.connect();
    send(&mut s, &ClientMessage::Status);
    assert_eq!(
        recv(&mut s),
        AgentMessage::Refused("the first message must be Hello".into())
    );
    assert!(closed(&mut s));
    // A frame that announces 4 bytes of garbage: no answer, the connection is closed.
    let mut s = agent.connect();
    s.write_all(&[4, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc]).unwrap();
    assert!(closed(&mut s));
    // The same after the handshake.
    let mut s = agent.client();
    s.write_all(&[4, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc]).unwrap();
    assert!(closed(&mut s));
    agent.counted(Count::Refused, 3);
}

#[test]
fn at_most_max_clients_are_served_at_once() {
    let agent = Agent::start(false);
    let mut clients: Vec<UnixStream> = (0..MAX_CLIENTS).map(|_| agent.client()).collect();
    let mut extra = agent.connect();
    assert_eq!(
        recv(&mut extra),
        AgentMessage::Refused(format!(
            "{MAX_CLIENTS} clients are already attached to this process; detach one and retry"
        ))
    );
    agent.counted(Count::Refused, 1);
    // One leaves: its place is taken again (once its thread has ended).
    clients.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // While still full, the server answers Refused and closes without reading, so the
        // hello may meet a closed socket (EPIPE): only the answer counts.
        let mut s = agent.connect();
        let hello_msg = ClientMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: "test".into(),
        });
        let _ = write_frame(&mut s, &hello_msg);
        if let Ok(AgentMessage::Welcome(_)) = read_frame::<_, AgentMessage>(&mut s) {
            break;
        }
        assert!(Instant::now() < deadline, "no place was freed");
    }
}

#[test]
fn a_peer_of_another_user_is_refused_without_a_word() {
    if our_uid() != 0 {
        eprintln!("skipped: acting as two other users needs root");
        return;
    }
    // The agent runs as uid 4242 (its directory is 4242's): root may talk to it.
    let agent = Agent::start_owned_by(4242, false);
    agent.client();
    // Uid 4243 may not. The directory and socket are opened up (for this test only) so that
    // it can reach the socket at all: the peer check is what refuses it.
    let dir = agent.server.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&agent.server.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = agent.server.path.as_os_str().as_bytes();
    for (d, s) in addr.sun_path.iter_mut().zip(path) {
        *d = *s as libc::c_char;
    }
    // A hello, so that a peer let in would be answered (and could not pass for a closed one).
    let mut hello = Vec::new();
    write_frame(
        &mut hello,
        &ClientMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: "test".into(),
        }),
    )
    .unwrap();
    // SAFETY: the child only makes system calls (no allocation, no lock) and leaves with
    // _exit; `addr` was prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; every pointer is to this frame's live data.
        unsafe {
            if libc::setgid(4243) != 0 || libc::setuid(4243) != 0 {
                libc::_exit(3);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
                libc::_exit(2);
            }
            let h = hello.as_ptr() as *const libc::c_void;
            libc::send(fd, h, hello.len(), libc::MSG_NOSIGNAL);
            let mut byte = [0u8; 1];
            let n = libc::read(fd, byte.as_mut_ptr() as *mut libc::c_void, 1);
            libc::_exit(if n <= 0 { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the other user's client was not simply closed (status {status:#x})"
    );
    agent.counted(Count::Connection, 2);
    agent.counted(Count::Refused, 1);
}

#[test]
fn eval_is_refused_unless_the_app_allowed_it() {
    let agent = Agent::start(false);
    let mut s = agent.client();
    send(&mut s, &eval("1 + 1", 5_000));
    assert!(matches!(recv(&mut s), AgentMessage::Error(m) if m.starts_with("eval is off")));
    agent.counted(Count::EvalRefused, 1);
}

fn eval(code: &str, timeout_ms: u32) -> ClientMessage {
    ClientMessage::Eval(EvalRequest {
        code: code.into(),
        timeout_ms,
        binding: None,
    })
}

fn evaluated(s: &mut UnixStream) -> (bool, String) {
    match recv(s) {
        AgentMessage::Evaluated(r) => (r.ok, r.text),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_eval_is_answered_cancelled_or_timed_out() {
    let agent = Agent::start(true);
    let mut s = agent.client();
    send(&mut s, &eval("1 + 1", 5_000));
    assert_eq!(evaluated(&mut s), (true, "=> 1 + 1".into()));
    assert_eq!(agent.next_did(), Did::EvalStarted("1 + 1".into()));
    // An eval that never ends: the client cancels it.
    send(&mut s, &eval("sleep", 60_000));
    assert_eq!(agent.next_did(), Did::EvalStarted("sleep".into()));
    send(&mut s, &ClientMessage::Cancel);
    assert_eq!(
        evaluated(&mut s),
        (false, "interrupted: the eval thread was stopped".into())
    );
    assert_eq!(agent.next_did(), Did::EvalCancelled);
    // Or its time runs out.
    send(&mut s, &eval("sleep", 30));
    let (ok, text) = evaluated(&mut s);
    assert!(!ok && text.starts_with("timed out after 0.0 s"), "{text}");
    assert_eq!(agent.next_did(), Did::EvalStarted("sleep".into()));
    assert_eq!(agent.next_did(), Did::EvalCancelled);
    agent.counted(Count::EvalTimedOut, 1);
    agent.counted(Count::EvalRun, 3);
}

fn trace_request() -> ClientMessage {
    ClientMessage::Trace(TraceRequest {
        firehose: true,
        selectors: vec![],
        slow_ms: None,
        gc: false,
        force: false,
        wait_ms: 5_000,
        wait_for_code: false,
    })
}

/// Reads `Events` messages until one holds a note; its text.
fn next_note(s: &mut UnixStream) -> String {
    loop {
        match recv(s) {
            AgentMessage::Events(bytes) => {
                for e in Reader::new(&bytes) {
                    if let Ok(Event::Note { text }) = e {
                        return text.to_string();
                    }
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_trace_streams_what_the_hooks_write_until_the_client_detaches() {
    let agent = Agent::start(false);
    let mut s = agent.client();
    send(&mut s, &trace_request());
    assert!(matches!(recv(&mut s), AgentMessage::Tracing(t) if t.ring_bytes == 64 * 1024));
    let session = agent
        .sessions
        .recv_timeout(Duration::from_secs(10))
        .unwrap();
    let id = session.id;
    assert_eq!(agent.next_did(), Did::Attached(id));
    session.note("first");
    assert_eq!(next_note(&mut s), "first");
    send(&mut s, &ClientMessage::Detach);
    // Whatever events are still on their way, then the summary.
    let summary = loop {
        match recv(&mut s) {
            AgentMessage::Events(_) => {}
            AgentMessage::Detached(summary) => break summary,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!((summary.events, summary.lost), (1, 0));
    assert!(session.is_closed());
    assert_eq!(agent.next_did(), Did::Detached(id));
    agent.counted(Count::TraceStarted, 1);
    agent.counted(Count::TraceEnded { events: 1 }, 1);
}

#[test]
fn a_trace_whose_client_disconnects_mid_stream_is_detached() {
    let agent = Agent::start(false);
    let mut s = agent.client();
    send(&mut s, &trace_request());
    assert!(matches!(recv(&mut s), AgentMessage::Tracing(_)));
    let session = agent
        .sessions
        .recv_timeout(Duration::from_secs(10))
        .unwrap();
    assert_eq!(agent.next_did(), Did::Attached(session.id));
    session.note("one");
    assert_eq!(next_note(&mut s), "one");
    drop(s);
    assert_eq!(agent.next_did(), Did::Detached(session.id));
    assert!(session.is_closed());
    agent.counted(Count::TraceEnded { events: 1 }, 1);
}

#[test]
fn a_trace_request_with_nothing_to_trace_is_refused() {
    let agent = Agent::start(false);
    let mut s = agent.client();
    send(
        &mut s,
        &ClientMessage::Trace(TraceRequest {
            firehose: false,
            selectors: vec![],
            slow_ms: None,
            gc: false,
            force: false,
            wait_ms: 5_000,
            wait_for_code: false,
        }),
    );
    assert!(matches!(recv(&mut s), AgentMessage::Error(m) if m.starts_with("nothing to trace")));
    assert_eq!(agent.count_of(Count::TraceStarted), 0);
}

#[test]
fn the_socket_is_removed_at_shutdown() {
    let agent = Agent::start(false);
    let path = agent.server.path.clone();
    assert!(path.exists());
    agent.server.shutdown();
    assert!(!path.exists());
}

fn break_request(max: u32, for_ms: u64) -> ClientMessage {
    ClientMessage::Break(rbscope_proto::BreakRequest {
        file: "shop.rb".into(),
        line: 4,
        max,
        for_ms,
        wait_ms: 1_000,
        condition: None,
        force: false,
    })
}

#[test]
fn a_breakpoint_sends_its_hits_and_ends_at_max_then_is_removed() {
    let agent = Agent::start(false);
    let mut s = agent.client();
    send(&mut s, &break_request(2, 60_000));
    assert!(
        matches!(recv(&mut s), AgentMessage::BreakSet(b) if b.file == "/app/shop.rb" && b.line == 4)
    );
    for n in 0..2 {
        match recv(&mut s) {
            AgentMessage::BreakHit(h) => {
                assert_eq!((h.n, h.id), (n + 1, Some(format!("ID{n}"))));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(recv(&mut s), AgentMessage::BreakEnded("2 hits".into()));
    assert!(matches!(agent.next_did(), Did::BreakRemoved(_)));
}

#[test]
fn a_breakpoint_whose_client_goes_away_or_whose_time_is_up_is_removed() {
    let agent = Agent::start(false);
    let mut s = agent.client();
    // Max 9: the fake never hits it.
    send(&mut s, &break_request(9, 60_000));
    assert!(matches!(recv(&mut s), AgentMessage::BreakSet(_)));
    drop(s);
    assert!(matches!(agent.next_did(), Did::BreakRemoved(_)));

    let mut s = agent.client();
    send(&mut s, &break_request(9, 50));
    assert!(matches!(recv(&mut s), AgentMessage::BreakSet(_)));
    assert_eq!(
        recv(&mut s),
        AgentMessage::BreakEnded("time is up (--for)".into())
    );
    assert!(matches!(agent.next_did(), Did::BreakRemoved(_)));

    // Refused before anything is set.
    let mut s = agent.client();
    send(&mut s, &break_request(0, 50));
    assert!(matches!(recv(&mut s), AgentMessage::Error(e) if e.contains("--max")));
}

#[test]
fn a_point_with_every_ends_on_detach_with_what_it_skipped() {
    let agent = Agent::start(false);
    let mut s = agent.client();
    let ClientMessage::Break(at) = break_request(9, 60_000) else {
        unreachable!()
    };
    send(
        &mut s,
        &ClientMessage::Point(rbscope_proto::PointRequest {
            at,
            every_ms: 1_000,
            values: vec!["order.id".into()],
        }),
    );
    assert!(matches!(recv(&mut s), AgentMessage::BreakSet(_)));
    send(&mut s, &ClientMessage::Detach);
    assert_eq!(
        recv(&mut s),
        AgentMessage::BreakEnded(
            "stopped by the client; 0 hits skipped by --every (1000 ms)".into()
        )
    );
    assert!(matches!(agent.next_did(), Did::BreakRemoved(_)));

    // A value that does not parse is refused, named.
    let mut s = agent.client();
    let ClientMessage::Break(at) = break_request(1, 60_000) else {
        unreachable!()
    };
    send(
        &mut s,
        &ClientMessage::Point(rbscope_proto::PointRequest {
            at,
            every_ms: 0,
            values: vec!["Order.find".into()],
        }),
    );
    assert!(
        matches!(recv(&mut s), AgentMessage::Error(e) if e.starts_with("value \"Order.find\""))
    );
}
