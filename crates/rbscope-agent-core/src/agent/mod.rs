//! Ruby-free pieces of the agent (crates/rbscope-agent): the arguments of its
//! `Rbscope::Native` methods, its counters, its panic guard, what it answers the control
//! server, the OS facts and files of its live requests and heap dumps, loading a snapshot for
//! a restore, the notes of a start. They live here so they are unit-tested without a VM; the agent only gathers
//! the Ruby facts they take.

pub mod args;
pub mod counters;
pub mod failures;
pub mod handler;
pub mod heap_job;
pub mod host;
pub mod restore;
pub mod startup;
pub mod trace_table;
