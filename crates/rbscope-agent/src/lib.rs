//! rbscope's agent: the native extension loaded by `require "rbscope"`.
//!
//! It lives inside someone else's production process, so it follows strict rules (see
//! ARCHITECTURE.md): it never panics, aborts or blocks the app; Ruby exceptions never unwind
//! through Rust frames (every call into Ruby is protected, see [`ffi`]); Ruby values held by
//! Rust are marked by the GC (the pending-capture ring's marker object, hidden arrays); the
//! fast capture path reads the VM's frames through `rbscope-vm`; background work runs on plain
//! Rust threads that never touch the VM; memory and time are bounded, and what had to be
//! dropped is counted for `rbscope doctor -p PID`.
//!
//! The logic that needs no VM lives in the pure crates (`rbscope-snapshot`, `rbscope-store`,
//! `rbscope-proto`, `rbscope-backtrace`, `rbscope-vm`); this crate gathers facts and hands
//! them over.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

mod capture;
mod counters;
mod ffi;
mod heap;
mod lifecycle;
mod live;
mod native;
mod state;
mod thread_end;
mod writer;

use ffi::guard;
use magnus::{function, prelude::*, Error, Ruby};
use rbscope_agent_core::agent::args;

/// The Ruby minor release this agent was compiled for (`3.4`), from build.rs.
const BUILT_FOR_RUBY: &str = env!("RBSCOPE_BUILT_FOR_RUBY");

/// Refuses to run in a Ruby other than the one whose headers the agent was compiled against:
/// struct layouts, inline functions and symbols differ between minor releases, so running
/// anyway could corrupt the app. Only `RUBY_VERSION` is read before deciding.
fn check_ruby_version(ruby: &Ruby) -> Result<(), Error> {
    let running: String = ruby.class_object().const_get("RUBY_VERSION")?;
    match args::wrong_ruby(BUILT_FOR_RUBY, &running) {
        None => Ok(()),
        Some(why) => Err(Error::new(ruby.exception_load_error(), why)),
    }
}

#[magnus::init(name = "rbscope_agent")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    check_ruby_version(ruby)?;
    guard::install_hook();
    let module = ruby.define_module("Rbscope")?;
    let native = module.define_module("Native")?;
    native.define_singleton_method("start", function!(native::start, 1))?;
    native.define_singleton_method("stop", function!(native::stop, 0))?;
    native.define_singleton_method("started?", function!(native::started, 0))?;
    native.define_singleton_method("after_fork", function!(native::after_fork, 0))?;
    native.define_singleton_method("hold_writer", function!(native::hold_writer, 1))?;
    native.define_singleton_method("report", function!(native::report, 3))?;
    native.define_singleton_method("snapshot", function!(native::snapshot, 4))?;
    native.define_singleton_method("break_post", function!(native::break_post, 3))?;
    native.define_singleton_method("break_test", function!(native::break_test, 3))?;
    native.define_singleton_method("break_due", function!(native::break_due, 2))?;
    native.define_singleton_method("log_post", function!(native::log_post, 4))?;
    native.define_singleton_method("flush", function!(native::flush, 1))?;
    native.define_singleton_method("counters", function!(native::counters, 0))?;
    native.define_singleton_method("store_location", function!(native::store_location, 0))?;
    native.define_singleton_method("socket_path", function!(native::socket_path, 0))?;
    native.define_singleton_method("warnings", function!(native::warnings, 0))?;
    native.define_singleton_method("snapshot_json", function!(native::snapshot_json, 3))?;
    native.define_singleton_method("snapshot_data", function!(native::snapshot_data, 3))?;
    native.define_singleton_method("trace_hook", function!(native::trace_hook, 6))?;
    native.define_singleton_method("trace_retry", function!(native::trace_retry, 1))?;
    native.define_singleton_method(
        "trace_ignore_owner",
        function!(native::trace_ignore_owner, 2),
    )?;
    native.define_singleton_method("eval_done", function!(native::eval_done, 4))?;
    native.define_singleton_method("flush_traces", function!(native::flush_traces, 1))?;
    native.define_singleton_method("heap_dump", function!(native::heap_dump, 4))?;
    native.define_singleton_method("count_objects", function!(native::count_objects, 1))?;
    native.define_singleton_method("__provide", function!(native::provide_own, 1))?;
    native.define_singleton_method("thread_body", function!(native::thread_body, 1))?;
    native.define_singleton_method(
        "trace_clock_settled?",
        function!(native::trace_clock_settled, 0),
    )?;
    capture::backtrace::define(ruby, module, native)?;
    native.const_set("VERSION", env!("CARGO_PKG_VERSION"))?;
    native.const_set("BUILT_WITH_RUBY", env!("RBSCOPE_BUILT_WITH_RUBY"))?;
    Ok(())
}
