//! The messages. Version 1: handshake and agent status.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub client_version: String,
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Always the first message.
    Hello(Hello),
    /// Ask for the agent's state and counters.
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u32,
    pub agent_version: String,
    pub pid: u32,
    pub ruby_version: String,
}

/// The agent's state, as `rbscope doctor -p PID` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub started: bool,
    pub store: String,
    /// Settings in force, as name/value pairs.
    pub settings: Vec<(String, String)>,
    /// Counters (captured, reported, stored, dropped, ...), as name/value pairs.
    pub counters: Vec<(String, u64)>,
    /// Warnings the agent has for the operator (e.g. YJIT is on).
    pub warnings: Vec<String>,
}

/// What the agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    Welcome(Welcome),
    /// The handshake failed; the text says what to do.
    Refused(String),
    Status(AgentStatus),
    Error(String),
}

/// The instruction for a protocol mismatch, from the client's point of view.
pub fn mismatch_advice(client: u32, agent: u32) -> String {
    if client > agent {
        format!(
            "the agent in this process speaks protocol {agent}, this CLI speaks {client}: \
             upgrade the rbscope gem in the app (or use an older rbscope CLI)"
        )
    } else {
        format!(
            "the agent in this process speaks protocol {agent}, this CLI speaks {client}: \
             upgrade the rbscope CLI"
        )
    }
}
