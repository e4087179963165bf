//! The agent's logic that needs no Ruby, so it can be unit-tested without a VM: the agent
//! crate (crates/rbscope-agent) gathers facts from Ruby and hands them to these modules.
//!
//! - `capture`: the raise capture's decisions (app code, frame locations, self-tests).
//! - `config`: the settings `Rbscope.start` and `RBSCOPE_*` give, parsed and range-checked.
//! - `writer`: the thread that writes snapshots to the store (queue, batches, backoff, backlog).

pub mod capture;
pub mod config;
pub mod writer;
