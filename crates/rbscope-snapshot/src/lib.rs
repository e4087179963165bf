//! The exception snapshot: what rbscope stores when a Ruby exception is reported.
//!
//! This crate is pure Rust on purpose: the agent (inside a Ruby process) builds a [`Snapshot`],
//! the CLI and the web UI read one, and none of that needs a Ruby VM. Its parts:
//!
//! * [`model`]: frames, the object graph (an arena of objects addressed by index, so cycles and
//!   shared references are plain indices), the exception and its cause chain, the context;
//! * [`codec`]: the versioned, compressed, checksummed binary format (decoding garbage is an
//!   error, never a panic);
//! * [`redact`]: which names and values count as secrets;
//! * [`walk`]: the policy of the walk that fills the arena (breadth first, each object once,
//!   limits and their cut reasons, redaction), behind a trait for reading the objects; how
//!   much of a string, array or hash it keeps is in `walk_kinds`.

pub mod codec;
pub mod json;
pub mod model;
pub mod redact;
pub mod take;
pub mod walk;
mod walk_kinds;

pub use codec::{decode, encode, DecodeError, FORMAT_VERSION, MAGIC};
pub use model::*;
pub use take::{Take, TakeMember};
