//! What the agent did and what it had to drop, for `rbscope doctor -p PID`: the counters
//! and how events land in them are `rbscope_agent_core::agent::counters` (tested there).

pub use rbscope_agent_core::agent::counters::{add, bump, Counters};
