//! The exception snapshot: what rbscope stores when a Ruby exception is reported.
//!
//! This crate is pure Rust on purpose: the agent (inside a Ruby process) builds a [`Snapshot`],
//! the CLI and the web UI read one, and none of that needs a Ruby VM. Three parts:
//!
//! * [`model`]: frames, the object graph (an arena of objects addressed by index, so cycles and
//!   shared references are plain indices), the exception and its cause chain, the context;
//! * [`codec`]: the versioned, compressed, checksummed binary format (decoding garbage is an
//!   error, never a panic);
//! * [`redact`]: which names and values count as secrets.

pub mod codec;
pub mod json;
pub mod model;
pub mod redact;

pub use codec::{decode, encode, DecodeError, FORMAT_VERSION, MAGIC};
pub use model::*;
