//! The agent <-> client wire protocol.
//!
//! Both the agent (inside the Ruby process) and the CLI depend on this crate and never on each
//! other, so the format is defined in exactly one place. A connection starts with a handshake
//! that carries both sides' protocol versions; a mismatch becomes an instruction to the user
//! ("upgrade the gem" or "upgrade the CLI") instead of a confusing decode error.
//!
//! Framing: every message is a little-endian `u32` length followed by that many bytes of
//! postcard. Frames over [`MAX_FRAME`] are refused before anything is allocated.

pub mod facts;
pub mod frame;
pub mod message;
pub mod paths;

pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use message::*;
