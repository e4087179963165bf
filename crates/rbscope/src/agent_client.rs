//! Talking to a running process's agent over its control socket.
//!
//! Finding the socket uses the *target's* uid and `XDG_RUNTIME_DIR` (read from /proc), so a
//! root CLI finds a user's process, and every failure says what to do: no such process, not a
//! Ruby process, agent not started, another user's process, a protocol mismatch.

use crate::inbox;
use anyhow::{anyhow, bail, Context};
use rbscope_proto::{
    paths, read_frame, write_frame, AgentMessage, AgentStatus, BreakSet, ClientMessage,
    EvalRequest, EvalResult, FrameError, Hello, MemoryReport, PointRequest, SnapshotRequest,
    SnapshotsTaken, Stacks, TraceRequest, TraceStarted, Welcome, PROTOCOL_VERSION,
};
use std::fs;
use std::io::{self, ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a stream may hold that the renderer has not taken yet: the agent's events are read off
/// the socket as fast as they come (so the agent never drops them because this CLI renders more
/// slowly than the app runs), up to this much; past it the reader waits and the agent counts
/// what it drops.
pub const STREAM_QUEUE_BYTES: usize = 512 << 20;

/// The process runs no agent (or its socket is stale): callers that can do without it (such as
/// `rbscope stacks`) look for this error.
#[derive(Debug)]
pub struct NoAgent(pub String);

impl std::fmt::Display for NoAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoAgent {}

pub struct Target {
    pub pid: u32,
    pub uid: u32,
    pub socket: PathBuf,
}

pub struct Client {
    stream: UnixStream,
    pub welcome: Welcome,
}

/// Finds where process `pid`'s agent would listen.
pub fn locate(pid: u32) -> anyhow::Result<Target> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let status = match fs::read_to_string(proc_dir.join("status")) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("no process with PID {pid} (it may have exited)")
        }
        Err(e) => return Err(e).context(format!("cannot inspect process {pid}")),
    };
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse::<u32>().ok())
        .ok_or_else(|| anyhow!("cannot read the owner of process {pid}"))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if me != 0 && me != uid {
        bail!("process {pid} belongs to uid {uid}, you are uid {me}: run rbscope as that user (or root)");
    }
    let xdg = fs::read(proc_dir.join("environ")).ok().and_then(|env| {
        env.split(|b| *b == 0).find_map(|kv| {
            kv.strip_prefix(b"XDG_RUNTIME_DIR=")
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    });
    let dir = paths::runtime_dir(xdg.as_deref(), uid);
    Ok(Target {
        pid,
        uid,
        socket: paths::socket_path(&dir, pid),
    })
}

pub fn is_ruby(pid: u32) -> bool {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if maps.contains("libruby") {
        return true;
    }
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().contains("ruby"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Reads one frame that must be whole by `deadline`, however the peer paces its bytes: one
/// that stops in the middle of a frame, or sends it a byte at a time, is given up on when the
/// time is up (a per-read timeout alone would wait again after every byte).
fn read_by<T: serde::de::DeserializeOwned>(
    stream: &UnixStream,
    deadline: Instant,
) -> Result<T, FrameError> {
    read_frame(&mut Deadline { stream, deadline })
}

struct Deadline<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "no whole answer in time",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// Connects and performs the handshake.
pub fn connect(target: &Target) -> anyhow::Result<Client> {
    connect_within(target, Duration::from_secs(5))
}

/// Connects and performs the handshake, waiting at most `timeout` for each answer.
pub fn connect_within(target: &Target, timeout: Duration) -> anyhow::Result<Client> {
    let pid = target.pid;
    let mut stream = match UnixStream::connect(&target.socket) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            if !is_ruby(pid) {
                bail!("process {pid} is not a Ruby process");
            }
            let stale = e.kind() == ErrorKind::ConnectionRefused;
            return Err(NoAgent(format!(
                "process {pid} has no rbscope agent listening{} ({}): load it now with \
                 `rbscope inject -p {pid}`, or start the app with `rbscope run -- ...` or \
                 Rbscope.start",
                if stale { " (stale socket)" } else { "" },
                target.socket.display()
            ))
            .into());
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            bail!(
                "permission denied on {}: run rbscope as uid {} (or root)",
                target.socket.display(),
                target.uid
            )
        }
        Err(e) => return Err(e).context(format!("cannot connect to {}", target.socket.display())),
    };
    stream.set_write_timeout(Some(timeout))?;
    let deadline = Instant::now() + timeout;
    write_frame(
        &mut stream,
        &ClientMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: env!("CARGO_PKG_VERSION").into(),
        }),
    )
    .context("handshake failed")?;
    match read_by::<AgentMessage>(&stream, deadline).context("no answer to the handshake")? {
        AgentMessage::Welcome(welcome) => Ok(Client { stream, welcome }),
        AgentMessage::Refused(why) => bail!("the agent in process {pid} refused: {why}"),
        other => bail!("unexpected answer to the handshake: {other:?}"),
    }
}

impl Client {
    pub fn status(&mut self) -> anyhow::Result<AgentStatus> {
        write_frame(&mut self.stream, &ClientMessage::Status)?;
        match read_by::<AgentMessage>(&self.stream, Instant::now() + Duration::from_secs(5))? {
            AgentMessage::Status(s) => Ok(s),
            AgentMessage::Error(e) => bail!("the agent answered with an error: {e}"),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}

/// The agent's answer to a stacks request.
pub enum StacksAnswer {
    Read(Stacks),
    /// The agent could not run the read in time; the text says why.
    Busy(String),
    /// The agent could not read them (a Ruby it cannot read, an error): what it said.
    Failed(String),
}

impl Client {
    /// Asks for every thread's stack, giving the agent `wait` to get a turn in the VM.
    pub fn stacks(&mut self, wait: Duration) -> anyhow::Result<StacksAnswer> {
        let wait_ms = wait.as_millis().min(u32::MAX as u128) as u32;
        // The agent answers Busy by itself after `wait`; this limit is a backstop.
        let deadline = Instant::now() + wait + Duration::from_secs(2);
        write_frame(&mut self.stream, &ClientMessage::Stacks { wait_ms })?;
        match read_by::<AgentMessage>(&self.stream, deadline) {
            Ok(AgentMessage::Stacks(s)) => Ok(StacksAnswer::Read(s)),
            Ok(AgentMessage::Busy(why)) => Ok(StacksAnswer::Busy(why)),
            Ok(AgentMessage::Error(e)) => Ok(StacksAnswer::Failed(e)),
            Ok(other) => bail!("unexpected answer: {other:?}"),
            Err(rbscope_proto::FrameError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                Ok(StacksAnswer::Busy(format!(
                    "no answer within {} ms",
                    (wait + Duration::from_secs(2)).as_millis()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Client {
    /// Asks the agent to start tracing; on success the connection then carries events.
    pub fn start_trace(&mut self, req: TraceRequest) -> anyhow::Result<TraceStarted> {
        let wait = Duration::from_millis(u64::from(req.wait_ms));
        let deadline = Instant::now() + wait + Duration::from_secs(2);
        write_frame(&mut self.stream, &ClientMessage::Trace(req))?;
        match read_by::<AgentMessage>(&self.stream, deadline) {
            Ok(AgentMessage::Tracing(s)) => Ok(s),
            Ok(AgentMessage::Error(e)) => bail!("{e}"),
            Ok(AgentMessage::Busy(why)) => bail!("the agent could not start tracing: {why}"),
            Ok(other) => bail!("unexpected answer: {other:?}"),
            Err(rbscope_proto::FrameError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                bail!(
                    "the agent did not answer within {} ms",
                    (wait + Duration::from_secs(2)).as_millis()
                )
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the agent's messages on a thread of their own (so waiting for them never cuts a
    /// frame in half); the receiver gets each, then the error that ended the stream.
    pub fn stream_messages(
        &mut self,
    ) -> anyhow::Result<inbox::Receiver<anyhow::Result<AgentMessage>>> {
        let mut reader = self.stream.try_clone()?;
        reader.set_read_timeout(None)?;
        let (tx, rx) = inbox::bounded(STREAM_QUEUE_BYTES);
        std::thread::Builder::new()
            .name("agent-reader".into())
            .spawn(move || loop {
                let msg = read_frame::<_, AgentMessage>(&mut reader).map_err(anyhow::Error::from);
                let end = msg.is_err();
                let bytes = match &msg {
                    Ok(AgentMessage::Events(events)) => events.len() + 64,
                    _ => 64,
                };
                if tx.send(msg, bytes).is_err() || end {
                    break;
                }
            })?;
        Ok(rx)
    }

    /// Asks the agent to stop tracing (it answers `Detached` on the stream).
    pub fn send_detach(&mut self) -> anyhow::Result<()> {
        write_frame(&mut self.stream, &ClientMessage::Detach)?;
        Ok(())
    }

    /// Runs `code` in the process (if the app allowed eval), waiting up to `timeout`.
    pub fn eval(&mut self, code: &str, timeout: Duration) -> anyhow::Result<EvalResult> {
        static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        self.eval_in(code, None, timeout, &NEVER)
    }

    /// Runs `code` in console binding `binding` (None: a fresh one); when `cancel` becomes
    /// true while it runs, asks the agent to stop it (the answer then says "interrupted").
    pub fn eval_in(
        &mut self,
        code: &str,
        binding: Option<u64>,
        timeout: Duration,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> anyhow::Result<EvalResult> {
        use std::os::unix::io::AsRawFd;
        let timeout_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        write_frame(
            &mut self.stream,
            &ClientMessage::Eval(EvalRequest {
                code: code.to_string(),
                timeout_ms,
                binding,
            }),
        )?;
        let deadline = std::time::Instant::now() + timeout + Duration::from_secs(5);
        let mut cancelled = false;
        loop {
            let mut pfd = libc::pollfd {
                fd: self.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for our open socket.
            let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
            if ready > 0 {
                break;
            }
            if cancel.load(std::sync::atomic::Ordering::SeqCst) && !cancelled {
                write_frame(&mut self.stream, &ClientMessage::Cancel)?;
                cancelled = true;
            }
            if std::time::Instant::now() > deadline {
                bail!("the agent did not answer the eval in time");
            }
        }
        // The answer has begun: the whole of it must come by the same deadline.
        match read_by::<AgentMessage>(&self.stream, deadline)? {
            AgentMessage::Evaluated(r) => Ok(r),
            AgentMessage::Error(e) => bail!("{e}"),
            AgentMessage::Busy(why) => bail!("the agent could not run the code: {why}"),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}

impl Client {
    /// Asks for the memory report, giving the agent `wait` to get a turn in the VM.
    pub fn memory(&mut self, wait: Duration) -> anyhow::Result<MemoryReport> {
        let wait_ms = wait.as_millis().min(u32::MAX as u128) as u32;
        let deadline = Instant::now() + wait + Duration::from_secs(2);
        write_frame(&mut self.stream, &ClientMessage::Memory { wait_ms })?;
        match read_by::<AgentMessage>(&self.stream, deadline)? {
            AgentMessage::Memory(m) => Ok(m),
            AgentMessage::Busy(why) => bail!("the agent could not read the VM: {why}"),
            AgentMessage::Error(e) => bail!("the agent answered with an error: {e}"),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}

impl Client {
    /// Asks the agent to set a breakpoint or a logpoint; on success the connection then
    /// carries its hits.
    pub fn set_point(&mut self, req: PointRequest) -> anyhow::Result<BreakSet> {
        let wait = Duration::from_millis(u64::from(req.at.wait_ms));
        // Finding the line's code may scan the loaded methods after the agent's turn.
        let deadline = Instant::now() + wait + Duration::from_secs(30);
        write_frame(&mut self.stream, &ClientMessage::Point(req))?;
        match read_by::<AgentMessage>(&self.stream, deadline)? {
            AgentMessage::BreakSet(s) => Ok(s),
            AgentMessage::Busy(why) => bail!("the agent could not set the breakpoint: {why}"),
            AgentMessage::Error(e) => bail!("{e}"),
            other => bail!("unexpected answer: {other:?}"),
        }
    }

    /// Asks the agent for live snapshots of threads (`request`); the answer says each one's
    /// id, or why none was stored.
    pub fn snapshot(&mut self, request: SnapshotRequest) -> anyhow::Result<SnapshotsTaken> {
        let wait = Duration::from_millis(u64::from(request.wait_ms));
        // Taking snapshots walks object graphs: the agent may take a while after its turn.
        let deadline = Instant::now() + wait + Duration::from_secs(30);
        write_frame(&mut self.stream, &ClientMessage::Snapshot(request))?;
        match read_by::<AgentMessage>(&self.stream, deadline)? {
            AgentMessage::Snapshots(s) => Ok(s),
            AgentMessage::Busy(why) => bail!("the agent could not take snapshots: {why}"),
            AgentMessage::Error(e) => bail!("{e}"),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}

impl Client {
    /// Sends a heap request and reads its one answer; `read_limit` bounds the wait (a dump is
    /// answered when its file is complete).
    fn heap_request(
        &mut self,
        msg: &ClientMessage,
        read_limit: Option<Duration>,
    ) -> anyhow::Result<AgentMessage> {
        write_frame(&mut self.stream, msg)?;
        let answer = match read_limit {
            Some(limit) => read_by::<AgentMessage>(&self.stream, Instant::now() + limit),
            // A dump is answered when its file is complete, however long that takes.
            None => {
                self.stream.set_read_timeout(None)?;
                read_frame::<_, AgentMessage>(&mut self.stream)
            }
        };
        match answer {
            Ok(AgentMessage::Busy(why)) => bail!("the agent could not run the request: {why}"),
            Ok(AgentMessage::Error(e)) => bail!("{e}"),
            Ok(m) => Ok(m),
            Err(rbscope_proto::FrameError::Closed) => {
                bail!("the process closed the connection before answering (did it exit?)")
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Dumps the heap; answers when the file is complete.
    pub fn heap_dump(
        &mut self,
        req: rbscope_proto::HeapDumpRequest,
    ) -> anyhow::Result<rbscope_proto::HeapDumpResult> {
        match self.heap_request(&ClientMessage::HeapDump(req), None)? {
            AgentMessage::HeapDumped(r) => Ok(r),
            other => bail!("unexpected answer: {other:?}"),
        }
    }

    /// Counts live objects.
    pub fn heap_count(&mut self, names: Vec<String>) -> anyhow::Result<rbscope_proto::HeapCensus> {
        let req = rbscope_proto::HeapCountRequest {
            names,
            wait_ms: 5_000,
        };
        match self.heap_request(
            &ClientMessage::HeapCount(req),
            Some(Duration::from_secs(60)),
        )? {
            AgentMessage::HeapCensus(c) => Ok(c),
            other => bail!("unexpected answer: {other:?}"),
        }
    }

    /// Turns allocation tracing on or off; gives (on, was_on).
    pub fn heap_track(&mut self, on: bool) -> anyhow::Result<(bool, bool)> {
        let msg = ClientMessage::HeapTrack { on, wait_ms: 5_000 };
        match self.heap_request(&msg, Some(Duration::from_secs(30)))? {
            AgentMessage::HeapTracking { on, was_on } => Ok((on, was_on)),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}
