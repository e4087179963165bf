//! The control socket: how `rbscope doctor`, `stacks`, `trace` and `eval` talk to the agent.
//!
//! A plain Rust thread owns a UNIX socket in the user's private runtime directory (0700,
//! refused if it belongs to someone else or is open to others), named after the PID, mode
//! 0600. It checks each peer's uid with `SO_PEERCRED` (same user or root only) and serves each
//! client on its own thread (at most [`MAX_CLIENTS`] at once), speaking the versioned
//! handshake of `rbscope-proto`. These threads never touch the Ruby VM: status comes from
//! atomics and a settings copy; work that needs Ruby goes to the agent's Ruby thread
//! (agent_thread.rs); a trace's events are drained from its ring (trace.rs's hooks fill it)
//! and written to the client here, so a slow client only ever loses events.

use crate::counters::{bump, Counters};
use crate::ffi::guard::{self, Feature};
use crate::live::agent_thread::{Work, WorkQueue};
use rbscope_proto::{
    mismatch_advice, paths, read_frame, write_frame, AgentMessage, AgentStatus, ClientMessage,
    EvalRequest, EvalResult, FrameError, Welcome, PROTOCOL_VERSION,
};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the control thread may show; copied at start, counters live.
pub struct StatusSource {
    pub store: String,
    pub settings: Vec<(String, String)>,
    pub warnings: Vec<String>,
    pub counters: Arc<Counters>,
    pub ruby_version: String,
    /// The agent's Ruby thread, when it runs (requests that need the VM go there).
    pub work: Option<WorkQueue>,
    pub allow_eval: bool,
    /// YJIT is on and this is Ruby 3.1: any trace hook slows the app until it restarts.
    pub yjit_hooks_last: bool,
    /// Bytes of each trace session's event ring.
    pub trace_buffer: usize,
}

/// Clients served at once; more are refused with a message.
pub const MAX_CLIENTS: usize = 16;

pub struct ControlServer {
    pub path: PathBuf,
    fd: i32,
    stop: Arc<AtomicBool>,
}

impl ControlServer {
    pub fn start(source: StatusSource) -> Result<ControlServer, String> {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
        let dir = paths::runtime_dir(xdg.as_deref(), uid);
        ensure_private_dir(&dir, uid)?;
        let path = paths::socket_path(&dir, std::process::id());
        if let Ok(meta) = fs::symlink_metadata(&path) {
            // A leftover from a dead process that had our PID, or something planted: remove
            // the entry itself (never follow it) and bind afresh.
            let _ = meta;
            fs::remove_file(&path)
                .map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
        }
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        let fd = listener.as_raw_fd();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let source = Arc::new(source);
        std::thread::Builder::new()
            .name("rbscope-control".into())
            .spawn(move || {
                guard::run(Feature::Live, "the control socket", (), || {
                    serve(listener, source, stop2, uid)
                })
            })
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        // The trace clock's rate (20 ms, once per process), on a short-lived thread of its own
        // so that serving does not wait for it.
        let _ = std::thread::Builder::new()
            .name("rbscope-clock".into())
            .spawn(|| {
                guard::run(
                    Feature::Trace,
                    "calibrating the trace clock",
                    (),
                    crate::live::trace_clock::calibrate,
                )
            });
        Ok(ControlServer { path, fd, stop })
    }

    /// Stops accepting and removes the socket file.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = fs::remove_file(&self.path);
        // Wake the accept call so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
    }

    /// In a forked child: close the parent's listening socket (the parent keeps serving).
    pub fn close_inherited(&self) {
        // SAFETY: the fd is the inherited listener; no thread in the child uses it.
        unsafe { libc::close(self.fd) };
    }
}

fn ensure_private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    match fs::symlink_metadata(dir) {
        Err(_) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let meta = fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
            check_dir(dir, &meta, uid)
        }
        Ok(meta) => check_dir(dir, &meta, uid),
    }
}

fn check_dir(dir: &Path, meta: &fs::Metadata, uid: u32) -> Result<(), String> {
    rbscope_store::check_owned_dir(dir, meta, uid, 0o077)
}

fn serve(listener: UnixListener, source: Arc<StatusSource>, stop: Arc<AtomicBool>, uid: u32) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        bump(&source.counters.control_connections);
        if !peer_allowed(&stream, uid) {
            bump(&source.counters.control_refused);
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            bump(&source.counters.control_refused);
            let _ = write_frame(
                &mut stream,
                &AgentMessage::Refused(format!(
                    "{MAX_CLIENTS} clients are already attached to this process; detach one and retry"
                )),
            );
            continue;
        }
        let source = source.clone();
        let count = active.clone();
        let spawned = std::thread::Builder::new()
            .name("rbscope-client".into())
            .spawn(move || {
                guard::run(Feature::Live, "a client connection", (), || {
                    if handle(stream, &source).is_err() {
                        bump(&source.counters.control_refused);
                    }
                });
                count.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Same user or root, checked with the kernel's own record of the peer.
fn peer_allowed(stream: &UnixStream, uid: u32) -> bool {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out-pointers of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    rc == 0 && (cred.uid == uid || cred.uid == 0)
}

fn handle(mut stream: UnixStream, source: &StatusSource) -> Result<(), FrameError> {
    let hello = match read_frame::<_, ClientMessage>(&mut stream)? {
        ClientMessage::Hello(h) => h,
        _ => {
            write_frame(
                &mut stream,
                &AgentMessage::Refused("the first message must be Hello".into()),
            )?;
            return Err(FrameError::Malformed("no hello".into()));
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        let advice = mismatch_advice(hello.protocol_version, PROTOCOL_VERSION);
        write_frame(&mut stream, &AgentMessage::Refused(advice))?;
        return Err(FrameError::Malformed("protocol mismatch".into()));
    }
    write_frame(
        &mut stream,
        &AgentMessage::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            ruby_version: source.ruby_version.clone(),
        }),
    )?;
    loop {
        let msg = match read_frame::<_, ClientMessage>(&mut stream) {
            Ok(m) => m,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let reply = match msg {
            ClientMessage::Status => AgentMessage::Status(AgentStatus {
                started: true,
                store: source.store.clone(),
                settings: source.settings.clone(),
                counters: {
                    let mut c = source.counters.snapshot();
                    c.push(("internal_errors_caught".into(), guard::panics()));
                    c
                },
                warnings: source
                    .warnings
                    .iter()
                    .cloned()
                    .chain(guard::report())
                    .collect(),
            }),
            ClientMessage::Hello(_) => AgentMessage::Error("already said hello".into()),
            ClientMessage::Stacks { wait_ms } => stacks(source, wait_ms),
            ClientMessage::Trace(req) => return crate::live::trace::serve(stream, source, req),
            ClientMessage::Detach => AgentMessage::Error("nothing is being traced".into()),
            ClientMessage::Eval(req) => eval(source, req, &mut stream),
            ClientMessage::Cancel => AgentMessage::Error("no eval is running".into()),
            ClientMessage::Memory { wait_ms } => memory(source, wait_ms),
            ClientMessage::HeapDump(req) => {
                let wait = req.wait_ms;
                heap(source, wait, crate::heap::live_heap::Job::Dump(req))
            }
            ClientMessage::HeapCount(req) => heap(
                source,
                req.wait_ms,
                crate::heap::live_heap::Job::Count(req.names),
            ),
            ClientMessage::HeapTrack { on, wait_ms } => {
                heap(source, wait_ms, crate::heap::live_heap::Job::Track(on))
            }
        };
        write_frame(&mut stream, &reply)?;
    }
}

/// The answer when the agent's Ruby thread did not start.
pub const NO_AGENT_THREAD: &str =
    "the agent has no Ruby thread for requests (it failed to start; see rbscope doctor)";
/// The answer when the agent's work queue is full or its thread has ended.
pub const QUEUE_FULL: &str =
    "the agent is still working on earlier requests, or its Ruby thread has ended";

/// Hands work that answers with one message (made by `make` from its deadline and reply
/// channel) to the agent's Ruby thread and waits up to `wait_ms` for the answer. The control
/// thread never touches the VM itself.
fn ask(
    source: &StatusSource,
    wait_ms: u32,
    make: impl FnOnce(Instant, mpsc::SyncSender<AgentMessage>) -> Work,
) -> AgentMessage {
    ask_then(source, wait_ms, make, |message| message)
}

/// [`ask`] for work whose answer is not yet the message: `finish` turns it into one (on this
/// connection's thread, without the VM).
fn ask_then<T>(
    source: &StatusSource,
    wait_ms: u32,
    make: impl FnOnce(Instant, mpsc::SyncSender<T>) -> Work,
    finish: impl FnOnce(T) -> AgentMessage,
) -> AgentMessage {
    let Some(queue) = &source.work else {
        return AgentMessage::Busy(NO_AGENT_THREAD.into());
    };
    let wait = Duration::from_millis(u64::from(wait_ms.clamp(1, 60_000)));
    let (reply, answer) = mpsc::sync_channel(1);
    let Some(ticket) = queue.submit(make(Instant::now() + wait, reply)) else {
        return AgentMessage::Busy(QUEUE_FULL.into());
    };
    match ticket.wait(&answer, wait) {
        Ok(answer) => finish(answer),
        Err(RecvTimeoutError::Timeout) => AgentMessage::Busy(format!(
            "the Ruby VM did not give the agent a turn within {} ms (native code, such as a C \
             extension, may be holding the GVL)",
            wait.as_millis()
        )),
        Err(RecvTimeoutError::Disconnected) => {
            AgentMessage::Busy("the agent's Ruby thread ended before answering".into())
        }
    }
}

/// Every thread's stack, read by the agent's Ruby thread.
fn stacks(source: &StatusSource, wait_ms: u32) -> AgentMessage {
    let asked = Instant::now();
    ask(source, wait_ms, |deadline, reply| Work::Stacks {
        asked,
        deadline,
        reply,
    })
}

/// Runs code in the app (if it allowed eval) on a new Ruby thread, waiting up to the client's
/// timeout; on timeout, on the client's `Cancel`, or when the client goes away, that thread is
/// killed.
fn eval(source: &StatusSource, req: EvalRequest, stream: &mut UnixStream) -> AgentMessage {
    if !source.allow_eval {
        bump(&source.counters.evals_refused);
        return AgentMessage::Error(
            "eval is off in this process: the app must opt in with Rbscope.start(allow_eval: true) \
             or RBSCOPE_ALLOW_EVAL=1 (it runs any code you send with the app's privileges)"
                .into(),
        );
    }
    let Some(queue) = &source.work else {
        return AgentMessage::Busy(NO_AGENT_THREAD.into());
    };
    bump(&source.counters.evals_run);
    let timeout = Duration::from_millis(u64::from(req.timeout_ms.clamp(1, 86_400_000)));
    let (token, answer) = crate::live::live_eval::register();
    let Some(ticket) = queue.submit(Work::Eval {
        token,
        code: req.code,
        binding: req.binding,
    }) else {
        crate::live::live_eval::forget(token);
        return AgentMessage::Busy(QUEUE_FULL.into());
    };
    let deadline = Instant::now() + timeout;
    let stopped = |why: String| {
        crate::live::live_eval::forget(token);
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
            bump(&source.counters.evals_timed_out);
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
        // SAFETY: one valid pollfd for this connection's open socket; no waiting.
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

/// A heap job on the agent's Ruby thread; a dump written by a forked child is waited for here
/// (this connection's thread), however long it takes, without holding the VM.
fn heap(source: &StatusSource, wait_ms: u32, job: crate::heap::live_heap::Job) -> AgentMessage {
    ask_then(
        source,
        wait_ms,
        |deadline, reply| Work::Heap {
            job,
            deadline,
            reply,
        },
        |outcome| match outcome {
            crate::heap::live_heap::Outcome::Done(message) => message,
            crate::heap::live_heap::Outcome::Forked(child) => crate::heap::live_heap::finish(child),
        },
    )
}

/// The memory report, read by the agent's Ruby thread.
fn memory(source: &StatusSource, wait_ms: u32) -> AgentMessage {
    ask(source, wait_ms, |deadline, reply| Work::Memory {
        deadline,
        reply,
    })
}
