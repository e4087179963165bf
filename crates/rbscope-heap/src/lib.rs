//! Ruby heap dumps (`ObjectSpace.dump_all`), read fast and analysed, without Ruby.
//!
//! Dumps are big (hundreds of MB to GB), written by several Ruby versions (3.1 to 4.0) that
//! differ in small ways, and not always valid JSON (Ruby writes some fields without escaping).
//! So the reader is a byte-oriented, tolerant scanner of one line at a time ([`parse`]), run over
//! chunks of the file in parallel ([`input`]): plain files are mapped, gzip and zstd are
//! decompressed on the fly. On top of it: a census ([`summary`]), the object graph with its
//! dominator tree and retained sizes ([`graph`], [`dominators`]), retention paths ([`paths`]),
//! leak hunting across dumps ([`diff`]), duplicated strings ([`strings`]), SQL exports
//! ([`import`]). The agent, which writes dumps of a live process, uses the line format
//! ([`parse`], [`write`]) and the heap walk's logic ([`walk`]): the crate without its default
//! `analysis` feature.

#[cfg(feature = "analysis")]
pub mod detail;
#[cfg(feature = "analysis")]
pub mod diff;
#[cfg(feature = "analysis")]
pub mod dominators;
#[cfg(feature = "analysis")]
pub mod graph;
#[cfg(feature = "analysis")]
pub mod import;
#[cfg(feature = "analysis")]
pub mod input;
#[cfg(feature = "analysis")]
pub mod names;
pub mod parse;
#[cfg(feature = "analysis")]
pub mod paths;
#[cfg(feature = "analysis")]
pub mod strings;
#[cfg(feature = "analysis")]
pub mod summary;
#[cfg(feature = "analysis")]
pub mod top;
pub mod walk;
pub mod write;

#[cfg(feature = "analysis")]
pub use input::{Dump, HeapError, Progress, ScanStats};
pub use parse::{ObjType, Record, RecordKind};
