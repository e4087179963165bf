//! Live attach: what `rbscope doctor -p`, `stacks`, `trace`, `eval`, `memory` and `heap` ask
//! of a running process, as the VM sees it.
//!
//! The control socket server itself needs no Ruby and lives in
//! `rbscope_agent_core::control`; [`control`] is the agent's handler for it. Work that needs
//! the VM runs on the agent's Ruby thread ([`agent_thread`]): stacks ([`live_stacks`]), the
//! memory report ([`live_memory`]), evals ([`live_eval`]), heap jobs (`heap/`), and trace
//! breakpoints ([`breakpoints`]), sessions ([`sessions`]), whose hooks ([`trace_hooks`]) record into the session state of
//! `rbscope_trace` ([`trace_session`]) and read captured values ([`trace_values`]).

pub(crate) mod agent_thread;
pub(crate) mod breakpoints;
pub(crate) mod control;
pub(crate) mod live_eval;
pub(crate) mod live_memory;
pub(crate) mod live_stacks;
pub(crate) mod sessions;
pub(crate) mod trace_hooks;
pub(crate) mod trace_session;
pub(crate) mod trace_values;

pub(crate) use rbscope_trace::clock as trace_clock;
pub use sessions::{detach_all, flush_all, hook_method, ignore_owner, retry};
