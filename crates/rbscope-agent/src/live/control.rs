//! The agent's side of the control socket: what it answers, for the server in
//! `rbscope_agent_core::control` (which owns the socket, the peer check, the handshake, the
//! trace stream and the eval waits, and never touches the VM).
//!
//! Status comes from atomics and a settings copy made at start; work that needs Ruby goes to
//! the agent's Ruby thread (agent_thread.rs). The server's threads run under the agent's panic
//! guard, and the trace clock's rate is measured beside them.

use crate::counters::Counters;
use crate::ffi::guard::{self, Feature};
use crate::heap::live_heap::{self, Job};
use crate::live::agent_thread::{HeapWork, WorkQueue};
use rbscope_agent_core::agent::counters;
use rbscope_agent_core::control::{self, ask, ControlError, Count, Evals, Handler, HeapRequest};
use rbscope_proto::{AgentMessage, AgentStatus};
use std::sync::Arc;

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

impl Handler for StatusSource {
    type Heap = HeapWork;

    fn guarded(&self, what: &'static str, body: impl FnOnce()) {
        guard::run(Feature::Live, what, (), body)
    }

    fn count(&self, what: Count) {
        self.counters.count(what)
    }

    fn ruby_version(&self) -> String {
        self.ruby_version.clone()
    }

    fn status(&self) -> AgentStatus {
        let (store, settings) = (self.store.clone(), self.settings.clone());
        counters::status(store, settings, &self.counters, &self.warnings)
    }

    fn queue(&self) -> Option<&WorkQueue> {
        self.work.as_ref()
    }

    fn evals(&self) -> &Evals {
        &crate::live::live_eval::EVALS
    }

    fn allow_eval(&self) -> bool {
        self.allow_eval
    }

    fn yjit_hooks_last(&self) -> bool {
        self.yjit_hooks_last
    }

    fn trace_buffer(&self) -> usize {
        self.trace_buffer
    }

    /// A heap job on the agent's Ruby thread; a dump written by a forked child is waited for
    /// on the connection's thread, however long it takes, without holding the VM.
    fn heap(&self, request: HeapRequest) -> AgentMessage {
        let (wait_ms, job) = Job::of(request);
        let work = |deadline, reply| {
            control::Work::Heap(HeapWork {
                job,
                deadline,
                reply,
            })
        };
        ask(self.work.as_ref(), wait_ms, work, |o| {
            o.answer(live_heap::finish)
        })
    }
}

/// The running control socket server.
pub struct ControlServer(control::Server);

impl std::ops::Deref for ControlServer {
    type Target = control::Server;
    fn deref(&self) -> &control::Server {
        &self.0
    }
}

impl ControlServer {
    pub fn start(source: StatusSource) -> Result<ControlServer, ControlError> {
        let server = control::Server::start(source)?;
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
        Ok(ControlServer(server))
    }
}
