//! What rbscope shows, built once for the terminal and the web UI.
//!
//! The CLI (`list --json`, `show --json`, `heap ... --json`) and `rbscope ui`'s JSON API show
//! the same data: a snapshot's summary and its document, a fingerprint group, the heap views
//! (summary, dominator tree, retention paths, diff), a recorded profile, a time. Each is made
//! here, from the data, by one function that both sides call, so the page and the terminal
//! never disagree and a change to a view is made once. The commands keep what only they
//! do: reading files with a progress bar, and their text tables.

pub mod heap;
pub mod numbers;
pub mod profile;
pub mod records;
pub mod ruby_inspect;
pub mod snapshot_text;
pub mod snapshots;
pub mod time;
