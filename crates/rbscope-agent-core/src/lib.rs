//! The agent's logic that needs no Ruby, so it can be unit-tested without a VM: the agent
//! crate (crates/rbscope-agent) gathers facts from Ruby and hands them to these modules.
//!
//! - `capture`: the raise capture's decisions (app code, frame locations, self-tests).
//! - `config`: the settings `Rbscope.start` and `RBSCOPE_*` give, parsed and range-checked.
//! - `control`: the control socket server (private directory, peer check, handshake, request
//!   dispatch, the trace stream pump, eval waits), behind a `Handler` the agent implements.
//! - `frame_facts`: how a frame is named in a better backtrace (`Shop#checkout`, `Shop.build`).
//! - `rate_limit`: at most so many snapshots of one failure a minute.
//! - `report`: a report's bookkeeping (source lines, cause chain, log line, counts).
//! - `restore_data`: the shapes of a snapshot handed to `Rbscope::Restore` as plain arrays.
//! - `writer`: the thread that writes snapshots to the store (queue, batches, backoff, backlog).

// This code runs inside the app's process, as the agent does: the same rules (tests may unwrap).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod agent;
pub mod capture;
pub mod config;
pub mod control;
pub mod frame_facts;
pub mod rate_limit;
pub mod report;
pub mod restore_data;
pub mod writer;
