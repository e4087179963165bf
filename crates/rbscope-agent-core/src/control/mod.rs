//! The control socket: how `rbscope doctor`, `stacks`, `trace` and `eval` talk to the agent.
//!
//! A plain thread owns a UNIX socket in the user's private runtime directory ([`socket`]),
//! checks each peer, and serves each client on a thread of its own (at most [`MAX_CLIENTS`] at
//! once), speaking the versioned handshake of `rbscope-proto` ([`client`]). None of these
//! threads touches the Ruby VM: what the agent knows comes from its [`Handler`], and work that
//! needs the VM goes over a bounded queue to the agent's Ruby thread ([`queue`]); a trace's
//! events are drained from its ring and written to the client here ([`trace`]), so a slow client
//! only ever loses events; an eval's result is waited for here ([`eval`]).
//!
//! Kept apart from the agent so all of this runs in unit tests over real sockets, with a
//! handler that fakes the agent.

mod breakpoint;
mod client;
mod eval;
mod queue;
mod release;
mod socket;
#[cfg(test)]
mod tests;
mod trace;

pub use breakpoint::{
    answer as break_answer, condition_paths, condition_value, count as breakpoints_set,
    due as break_due, forget as forget_breakpoints, log_paths, log_post, log_secret,
    post as break_post, test as break_test,
};
pub use eval::{Evals, MAX_RESULT};
pub use queue::{ask, work_queue, Inbox, Ticket, Work, WorkQueue, NO_AGENT_THREAD, QUEUE_FULL};
pub use release::return_free_memory;
pub use socket::{ensure_private_dir, peer_allowed, peer_uid};
pub use trace::{Plan, STALL_LIMIT};

use rbscope_proto::{paths, write_frame, AgentMessage, AgentStatus};
use rbscope_proto::{HeapCountRequest, HeapDumpRequest};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Clients served at once; more are refused with a message.
pub const MAX_CLIENTS: usize = 16;

/// What the server tells the agent to count (shown by `rbscope doctor -p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// A client connected.
    Connection,
    /// A connection was refused: wrong user, too many clients, bad handshake.
    Refused,
    EvalRun,
    /// An eval asked of an app that did not allow it.
    EvalRefused,
    EvalTimedOut,
    /// A trace session started streaming.
    TraceStarted,
    /// A trace session ended; its hooks wrote `events` records.
    TraceEnded {
        events: u64,
    },
    /// Records a trace's ring had to drop (its client did not keep up).
    EventsLost(u64),
}

/// A heap request, which the agent runs its own way.
#[derive(Debug, Clone, PartialEq)]
pub enum HeapRequest {
    Dump(HeapDumpRequest),
    Count(HeapCountRequest),
    Track { on: bool, wait_ms: u32 },
}

/// The agent, as the server sees it: what it knows, where its Ruby thread takes work, and what
/// it counts. Called on the server's threads, never with the VM.
pub trait Handler: Send + Sync + 'static {
    /// The agent's own kind of work, carried by [`Work::Heap`].
    type Heap: Send + 'static;

    /// Runs the body of a thread the server starts (`what` names it), so that a panic in it
    /// is caught and counted by the agent instead of ending the process.
    fn guarded(&self, what: &'static str, body: impl FnOnce()) {
        let _ = what;
        body()
    }
    fn count(&self, what: Count);
    /// For the handshake's `Welcome`.
    fn ruby_version(&self) -> String;
    /// What `Status` answers.
    fn status(&self) -> AgentStatus;
    /// The agent's Ruby thread, when it runs.
    fn queue(&self) -> Option<&WorkQueue<Self::Heap>>;
    /// Where eval results arrive.
    fn evals(&self) -> &Evals;
    /// The app opted in to eval.
    fn allow_eval(&self) -> bool;
    /// YJIT is on and this is Ruby 3.1: any method hook slows the app until it restarts.
    fn yjit_hooks_last(&self) -> bool;
    /// Bytes of each trace session's event ring.
    fn trace_buffer(&self) -> usize;
    /// Answers a heap request (through the agent's Ruby thread).
    fn heap(&self, request: HeapRequest) -> AgentMessage;
    /// Waits up to `timeout` for the snapshots queued so far to be in the store (on the
    /// connection's thread, never holding the VM); true when they are. A snapshot id goes to a
    /// client only after this ([`STORED_WAIT`]), so `rbscope show ID` finds it at once.
    fn stored(&self, _timeout: std::time::Duration) -> bool {
        true
    }
}

/// How long an answer carrying new snapshot ids waits for the store (a store that keeps
/// failing: the answer goes anyway).
pub(crate) const STORED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the control socket could not be set up (the agent runs on without it).
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Inspect(std::io::Error),
    /// The directory is not a private directory of this user (the text says what to do).
    #[error("{0}")]
    UnsafeDir(String),
    #[error("cannot remove stale {}: {source}", path.display())]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the control thread: {0}")]
    Thread(std::io::Error),
}

/// A listening control socket and the thread that serves it.
pub struct Server {
    pub path: PathBuf,
    fd: i32,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Listens in this user's runtime directory (`$XDG_RUNTIME_DIR` or the default), on a
    /// socket named after this process.
    pub fn start<H: Handler>(handler: H) -> Result<Server, ControlError> {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
        Server::start_in(&paths::runtime_dir(xdg.as_deref(), uid), uid, handler)
    }

    /// Listens in `dir` (made private to `uid`, whose clients, and root's, are served).
    pub fn start_in<H: Handler>(dir: &Path, uid: u32, handler: H) -> Result<Server, ControlError> {
        ensure_private_dir(dir, uid)?;
        let path = paths::socket_path(dir, std::process::id());
        let listener = socket::bind(&path)?;
        let fd = listener.as_raw_fd();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handler = Arc::new(handler);
        std::thread::Builder::new()
            .name("rbscope-control".into())
            .spawn(move || {
                let h = handler.clone();
                h.guarded("the control socket", || {
                    serve(listener, handler, stop2, uid)
                })
            })
            .map_err(ControlError::Thread)?;
        Ok(Server { path, fd, stop })
    }

    /// Stops accepting and removes the socket file.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
        // Wake the accept call so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
    }

    /// In a forked child: close the parent's listening socket (the parent keeps serving).
    pub fn close_inherited(&self) {
        // SAFETY: the fd is the inherited listener; no thread in the child uses it (threads do
        // not survive fork), and it is closed once, here.
        unsafe { libc::close(self.fd) };
    }
}

fn serve<H: Handler>(listener: UnixListener, handler: Arc<H>, stop: Arc<AtomicBool>, uid: u32) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        handler.count(Count::Connection);
        if !peer_allowed(peer_uid(&stream), uid) {
            handler.count(Count::Refused);
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            handler.count(Count::Refused);
            let _ = write_frame(
                &mut stream,
                &AgentMessage::Refused(format!(
                    "{MAX_CLIENTS} clients are already attached to this process; detach one and retry"
                )),
            );
            continue;
        }
        let handler = handler.clone();
        let count = active.clone();
        let spawned = std::thread::Builder::new()
            .name("rbscope-client".into())
            .spawn(move || {
                handler.guarded("a client connection", || {
                    if client::handle(stream, handler.as_ref()).is_err() {
                        handler.count(Count::Refused);
                    }
                });
                if count.fetch_sub(1, Ordering::SeqCst) == 1 {
                    release::return_free_memory();
                }
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
