//! Live tracing, the parts that need no Ruby.
//!
//! The agent's hooks write compact binary records ([`events`]) into a lock-free byte ring
//! ([`ring`]) that a plain Rust thread drains to the client; the app never waits for the
//! client, and what did not fit is counted. The CLI decodes the same records, rebuilds every
//! thread's calls ([`timeline`]) and prints them ([`render`]: an indented text tree, JSON lines
//! or Chrome's trace format), and reads written traces back ([`file`](mod@file)). What to
//! trace is said with selectors ([`selector`]), parsed the same way on both sides; when a
//! breakpoint or logpoint fires, with conditions ([`condition`]) over values read as
//! selectors' captures are.
//!
//! The hooks' side without the VM: the clock they stamp records with ([`clock`]), a session's
//! ring and flags ([`session`]), the threads and shadow stacks that time calls ([`shadow`]),
//! and how captured values are shown within their budget ([`values`]).

pub mod clock;
pub mod condition;
pub mod events;
pub mod file;
pub mod render;
pub mod ring;
pub mod selector;
pub mod session;
pub mod shadow;
pub mod timeline;
pub mod values;
