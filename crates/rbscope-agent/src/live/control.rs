//! The agent's side of the control socket: what it answers, for the server in
//! `rbscope_agent_core::control` (which owns the socket, the peer check, the handshake, the
//! trace stream and the eval waits, and never touches the VM).
//!
//! Status comes from atomics and a settings copy made at start; work that needs Ruby goes to
//! the agent's Ruby thread (agent_thread.rs): that is `rbscope_agent_core::agent::handler`'s
//! [`StatusSource`]. The server's threads run under the agent's panic guard, and the trace
//! clock's rate is measured beside them.

use crate::ffi::guard::{self, Feature};
pub use rbscope_agent_core::agent::handler::StatusSource;
use rbscope_agent_core::control::{self, ControlError};

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
