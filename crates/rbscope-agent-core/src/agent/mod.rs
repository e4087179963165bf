//! Ruby-free pieces of the agent's `Rbscope::Native` methods and live requests: argument
//! bounds and checks, OS facts, the messages of heap requests, loading a snapshot for a
//! restore, the notes of a start. They live here so they are unit-tested without a VM; the
//! agent crate only gathers the Ruby facts they take.

pub mod args;
pub mod failures;
pub mod heap_job;
pub mod host;
pub mod restore;
pub mod startup;
