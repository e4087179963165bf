//! The running agent: its settings, counters, writer and control server.
//!
//! One `Agent` per process, replaced whole after `fork`: the child gets a new writer thread and
//! a new control socket, and the parent's copies (whose threads do not exist in the child, and
//! whose locks may have been held at the moment of the fork) are leaked, never touched.

use crate::counters::Counters;
use crate::live::control::ControlServer;
use crate::writer::Writer;
use rbscope_agent_core::agent::host;
use rbscope_agent_core::config::Config;
use rbscope_agent_core::rate_limit::RateLimiter;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct Agent {
    pub config: Config,
    pub counters: Arc<Counters>,
    pub writer: Writer,
    pub pid: u32,
    pub hostname: String,
    pub warnings: Vec<String>,
    /// Facts shown beside the settings (which capture path is in use).
    pub status_notes: Vec<(String, String)>,
    rate: Mutex<RateLimiter>,
    pub control: Option<ControlServer>,
    /// The agent's Ruby thread, for requests that need the VM.
    pub work: Option<crate::live::agent_thread::WorkQueue>,
}

static AGENT: Mutex<Option<Arc<Agent>>> = Mutex::new(None);

/// The running agent of *this* process, if started. After a fork, the parent's agent is not
/// returned: the child must call `after_fork` first.
pub fn current() -> Option<Arc<Agent>> {
    let guard = AGENT.lock().ok()?;
    let agent = guard.as_ref()?;
    (agent.pid == host::process_id()).then(|| agent.clone())
}

/// Whether an agent is installed, even one inherited from a parent process.
pub fn inherited() -> Option<Arc<Agent>> {
    AGENT.lock().ok()?.as_ref().cloned()
}

pub fn install(agent: Agent) {
    if let Ok(mut guard) = AGENT.lock() {
        if let Some(old) = guard.replace(Arc::new(agent)) {
            if old.pid != host::process_id() {
                // The parent's agent: its threads do not exist here; never run its destructors.
                std::mem::forget(old);
            }
        }
    }
}

pub fn remove() -> Option<Arc<Agent>> {
    AGENT.lock().ok()?.take()
}

impl Agent {
    pub fn new(config: Config, counters: Arc<Counters>, writer: Writer) -> Agent {
        Agent {
            config,
            counters,
            writer,
            pid: host::process_id(),
            hostname: rbscope_agent_core::agent::host::hostname(),
            warnings: Vec::new(),
            status_notes: Vec::new(),
            rate: Mutex::new(RateLimiter::default()),
            control: None,
            work: None,
        }
    }

    /// Per-fingerprint limit: at most `rate_limit_per_minute` snapshots a minute.
    pub fn rate_limiter_allows(&self, fingerprint: &str) -> bool {
        let limit = self.config.rate_limit_per_minute;
        if limit == 0 {
            return true;
        }
        match self.rate.lock() {
            Ok(mut r) => r.allow(fingerprint, limit, Instant::now()),
            Err(_) => true,
        }
    }
}
