//! Starting, stopping and re-starting (after fork) the agent.

use crate::capture;
use crate::counters::Counters;
use crate::ffi::{self, Gvl};
use crate::live::control::{ControlServer, StatusSource};
use crate::state::{self, Agent};
use crate::writer::Writer;
use rbscope_agent_core::agent::{host, startup};
use rbscope_agent_core::config::Config;
use rbscope_store::StoreLocation;
use std::sync::Arc;

/// Starts the agent with `config`. Returns false if it was already running in this process.
pub fn start(gvl: Gvl, config: Config) -> Result<bool, String> {
    if state::current().is_some() {
        return Ok(false);
    }
    let location = StoreLocation::parse(Some(&config.store)).map_err(|e| e.to_string())?;
    let counters = Arc::new(Counters::default());
    let limits = crate::writer::Limits {
        max_store_bytes: config.max_store_bytes,
        retention: config.retention,
        backlog: config.store_backlog,
    };
    let key = config.store_key.as_ref().map(std::path::PathBuf::from);
    let writer = Writer::spawn(location.clone(), key, limits, counters.clone(), config.log)?;
    let mut agent = Agent::new(config, counters.clone(), writer);
    agent.config.store = startup::resolved_store(&location);
    let yjit = yjit_enabled(gvl);
    let has_key = agent.config.store_key.is_some();
    let ruby_version = ffi::const_text(gvl, "RUBY_VERSION");
    let warnings = startup::warnings(&location, has_key, yjit, &ruby_version);
    agent.warnings.extend(warnings);
    let fast = if agent.config.capture == "inspector" {
        crate::capture::fast_capture::disable();
        Err(startup::INSPECTOR_CONFIGURED.to_string())
    } else {
        crate::capture::fast_capture::enable(gvl).map(String::from)
    };
    let (note, warning) = startup::capture_note(&agent.config.capture, fast);
    agent.status_notes.push(note);
    agent.warnings.extend(warning);
    if agent.config.control_socket {
        match crate::live::agent_thread::start(gvl) {
            Ok(queue) => agent.work = Some(queue),
            Err(e) => agent.warnings.push(format!("live requests disabled: {e}")),
        }
        let source = StatusSource {
            store: location.describe(),
            settings: agent
                .config
                .describe()
                .into_iter()
                .chain(agent.status_notes.iter().cloned())
                .collect(),
            warnings: agent.warnings.clone(),
            counters,
            yjit_hooks_last: yjit && ruby_version.starts_with("3.1"),
            ruby_version,
            work: agent.work.clone(),
            evals: &crate::live::live_eval::EVALS,
            allow_eval: agent.config.allow_eval,
            trace_buffer: agent.config.trace_buffer,
            writer: Some((*agent.writer).clone()),
        };
        match ControlServer::start(source) {
            Ok(server) => agent.control = Some(server),
            Err(e) => {
                let msg = format!("control socket disabled: {e}");
                if agent.config.log {
                    eprintln!("[rbscope] {msg}");
                }
                agent.warnings.push(msg);
            }
        }
    }
    let ring = agent.config.pending_captures;
    state::install(agent);
    capture::install(gvl, ring);
    Ok(true)
}

/// Stops capture and the control socket; queued snapshots are still written.
pub fn stop(gvl: Gvl) {
    capture::uninstall(gvl);
    crate::live::detach_all(gvl);
    crate::live::breakpoints::remove_all(gvl);
    if let Some(agent) = state::remove() {
        if agent.pid == host::process_id() {
            if let Some(c) = &agent.control {
                c.shutdown();
            }
            if let Some(w) = &agent.work {
                w.stop();
            }
            agent.writer.flush(crate::writer::EXIT_FLUSH);
        } else {
            std::mem::forget(agent);
        }
    }
}

/// In a forked child: a fresh agent with the parent's settings (new writer thread, new socket,
/// zeroed counters). A no-op in the process that started the agent.
pub fn after_fork(gvl: Gvl) -> Result<bool, String> {
    let Some(old) = state::inherited() else {
        return Ok(false);
    };
    if old.pid == host::process_id() {
        return Ok(false);
    }
    if let Some(c) = &old.control {
        c.close_inherited();
    }
    // The parent's trace sessions and breakpoints have no client in the child: remove their
    // hooks here.
    crate::live::detach_all(gvl);
    crate::live::breakpoints::remove_all(gvl);
    // The parent's resolved store location is what the child must use too.
    let config = old.config.clone();
    drop(old);
    start(gvl, config)
}

fn yjit_enabled(gvl: Gvl) -> bool {
    ffi::call_const(gvl, "RubyVM::YJIT", "enabled?").is_some_and(ffi::truthy)
}
