//! `rbscope break -p PID FILE:LINE`: breakpoints, set and removed on the agent's Ruby thread by
//! lib/rbscope/breakpoints.rb (which resolves the line to an instruction sequence and hooks it with a
//! targeted TracePoint); its hits come back through `Rbscope::Native.break_post` into
//! `rbscope_agent_core::control`'s mailboxes. A logpoint (`rbscope log`) is a breakpoint whose
//! hit reads values instead of storing a snapshot: Ruby hands them over through
//! `Rbscope::Native.log_post` and [`log_post`] renders them with the trace captures' walker
//! (never the app's `inspect`).

use crate::ffi::capture::RubyBuild;
use crate::ffi::live::VALUE;
use crate::ffi::{self, Gvl};
use crate::live::trace_values;
use crate::state;
use rbscope_agent_core::control::{break_answer, condition_paths, log_paths, log_secret};
use rbscope_proto::{AgentMessage, PointRequest};

/// When lib/rbscope/breakpoints.rb is missing (an older gem's Ruby files with this agent).
const NOT_LOADED: &str =
    "this process's rbscope gem has no breakpoints (lib/rbscope/breakpoints.rb)";

/// Sets breakpoint (or logpoint) `id`; `BreakSet` or the error. Runs on the agent's Ruby
/// thread.
pub fn set(gvl: Gvl, id: u64, point: &PointRequest) -> AgentMessage {
    let req = &point.at;
    let Some(live) = ffi::const_at(gvl, "Rbscope::Breakpoints") else {
        return AgentMessage::Error(NOT_LOADED.into());
    };
    let agent = state::current();
    let root = agent.as_ref().map(|a| a.config.app_root.clone());
    // Attribute reads (`order.total`) in a condition call app methods: only where eval is allowed.
    let reads = agent.is_some_and(|a| a.config.allow_eval);
    let args = [
        ffi::u64_value(gvl, id),
        ffi::str_new(gvl, &req.file),
        ffi::u64_value(gvl, u64::from(req.line)),
        ffi::u64_value(gvl, u64::from(req.max)),
        ffi::str_new(gvl, &root.unwrap_or_default()),
        condition_paths(&RubyBuild(gvl), id),
        if reads { ffi::TRUE } else { ffi::FALSE },
        log_paths(&RubyBuild(gvl), id),
        if point.every_ms > 0 {
            ffi::TRUE
        } else {
            ffi::FALSE
        },
    ];
    let Ok(answer) = ffi::call(gvl, live, "set", &args) else {
        return AgentMessage::Error("setting the breakpoint raised inside the app".into());
    };
    // [true, file, hooked, waiting] or [false, message]
    let parts = ffi::array_items(gvl, answer);
    let ok = parts.first().copied() == Some(ffi::TRUE);
    let texts = parts
        .iter()
        .skip(1)
        .map(|v| ffi::to_string(gvl, *v))
        .collect();
    break_answer(ok, texts, req.line)
}

/// One value a logpoint's hook read: its path as the client wrote it, and the value, or why it
/// was not read.
pub struct Read {
    pub path: String,
    pub value: Result<VALUE, String>,
}

/// Renders logpoint `id`'s values (within the trace captures' budget, never calling the app's
/// `inspect`; a value whose path names a secret under the app's redaction rules is not shown,
/// nor what is secret inside a value)
/// and posts them to its client. False when it is not set. Runs on the app's thread, in the
/// hook, with the values alive on its stack.
pub fn log_post(gvl: Gvl, id: u64, tid: Option<i32>, thread: String, reads: Vec<Read>) -> bool {
    let agent = state::current();
    let rules = agent.as_ref().map(|a| &a.config.redaction);
    let values = reads
        .into_iter()
        .map(|r| {
            let shown = match (rules.and_then(|rules| log_secret(rules, &r.path)), r.value) {
                (Some(why), _) => Ok(format!("[redacted: {why}]")),
                (None, Ok(v)) => Ok(match rules {
                    Some(rules) => trace_values::render_redacted(gvl, v, rules),
                    None => trace_values::render(gvl, v),
                }),
                (None, Err(why)) => Err(why),
            };
            (r.path, shown)
        })
        .collect();
    rbscope_agent_core::control::log_post(id, tid, thread, values)
}

/// Removes breakpoint `id`'s hook. Runs on the agent's Ruby thread.
pub fn remove(gvl: Gvl, id: u64) {
    if let Some(b) = ffi::const_at(gvl, "Rbscope::Breakpoints") {
        let _ = ffi::call(gvl, b, "remove", &[ffi::u64_value(gvl, id)]);
    }
}

/// Removes every breakpoint: on `Rbscope.stop`, and in a forked child (the parent's have no
/// client there).
pub fn remove_all(gvl: Gvl) {
    rbscope_agent_core::control::forget_breakpoints();
    if let Some(b) = ffi::const_at(gvl, "Rbscope::Breakpoints") {
        let _ = ffi::call(gvl, b, "remove_all", &[]);
    }
}
