//! The agent's logic that needs no Ruby, so it can be unit-tested without a VM: the agent
//! crate (crates/rbscope-agent) gathers facts from Ruby and hands them to these modules.
//!
//! - `config`: the settings `Rbscope.start` and `RBSCOPE_*` give, parsed and range-checked.
//! - `control`: the control socket server (private directory, peer check, handshake, request
//!   dispatch, the trace stream pump, eval waits), behind a `Handler` the agent implements.

pub mod config;
pub mod control;
