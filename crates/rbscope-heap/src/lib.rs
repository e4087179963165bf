//! Ruby heap dumps (`ObjectSpace.dump_all`), read fast and analysed, without Ruby.
//!
//! Dumps are big (hundreds of MB to GB), written by several Ruby versions (3.1 to 4.0) that
//! differ in small ways, and not always valid JSON (Ruby writes some fields without escaping).
//! So the reader is a byte-oriented, tolerant scanner of one line at a time ([`parse`]), run over
//! chunks of the file in parallel ([`input`]): plain files are mapped, gzip and zstd are
//! decompressed on the fly. On top of it: a census ([`summary`]), the object graph with its
//! dominator tree and retained sizes ([`graph`], [`dominators`]), retention paths ([`paths`]),
//! leak hunting across dumps ([`diff`]), duplicated strings ([`strings`]).

pub mod detail;
pub mod diff;
pub mod dominators;
pub mod graph;
pub mod import;
pub mod input;
pub mod names;
pub mod parse;
pub mod paths;
pub mod strings;
pub mod summary;
pub mod top;

pub use input::{Dump, HeapError, Progress, ScanStats};
pub use parse::{ObjType, Record, RecordKind};
