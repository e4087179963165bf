//! The methods of `Rbscope::Native`, the agent's face to the gem's Ruby code (lib/rbscope).
//!
//! Each one's body runs under `guard::method`: a panic inside becomes a RuntimeError and turns
//! its feature off, instead of magnus's `fatal`, which would end the app. Arguments are checked
//! here (or by magnus's conversions, which raise TypeError) before anything reaches the VM;
//! the gem's Ruby side checks the public API's arguments first (lib/rbscope/args.rb).

use crate::capture::{self, report, restore_data};
use crate::ffi::guard::{self, Feature};
use crate::heap::live_heap;
use crate::live::{self, live_eval, trace_clock};
use crate::{ffi, lifecycle, state, thread_end};
use magnus::{prelude::*, Error, RArray, RHash, Ruby, Value};
use rbscope_agent_core::agent::args::{self, bounded_wait};
use rbscope_agent_core::{agent::restore, config, control};

/// `guard::method` for the method `Rbscope::Native.<name>` of `feature`.
macro_rules! native {
    ($ruby:expr, $feature:ident, $name:literal, $body:expr) => {
        guard::method(
            $ruby,
            Feature::$feature,
            concat!("Rbscope::Native.", $name),
            $body,
        )
    };
}

/// `Rbscope::Native.start([[key, value], ...])`: true if started, false if already running.
pub fn start(ruby: &Ruby, pairs: RArray) -> Result<bool, Error> {
    native!(ruby, Capture, "start", || {
        let pairs: Vec<(String, String)> = pairs.to_vec()?;
        let config = config::Config::from_pairs(&pairs).map_err(|m| arg_error(ruby, m))?;
        lifecycle::start(gvl(), config).map_err(|m| runtime_error(ruby, m))
    })
}

/// `Rbscope::Native.stop`: removes the hooks and stops the writer and control threads.
pub fn stop(ruby: &Ruby) -> Result<(), Error> {
    native!(ruby, Capture, "stop", || {
        lifecycle::stop(gvl());
        Ok(())
    })
}

pub fn started(ruby: &Ruby) -> Result<bool, Error> {
    native!(ruby, Capture, "started?", || {
        Ok(state::current().is_some())
    })
}

pub fn after_fork(ruby: &Ruby) -> Result<bool, Error> {
    native!(ruby, Fork, "after_fork", || {
        lifecycle::after_fork(gvl()).map_err(|m| runtime_error(ruby, m))
    })
}

/// `Rbscope::Native.report(exception, context, how)`: the new snapshot id, or nil.
pub fn report(ruby: &Ruby, exc: Value, ctx: Value, how: String) -> Result<Option<String>, Error> {
    native!(ruby, Capture, "report", || {
        // Off after a failure: the pending captures it would read are no longer kept alive.
        if guard::is_off(Feature::Capture) {
            return Ok(None);
        }
        let gvl = gvl();
        ensure_forked(gvl);
        let Some(agent) = state::current() else {
            return Ok(None);
        };
        let exception_class = ruby.exception_exception();
        if !exc.is_kind_of(exception_class) {
            return Ok(None);
        }
        Ok(capture::quietly(|| {
            report::report(gvl, &agent, ffi::raw(exc), ffi::raw(ctx), &how)
        }))
    })
}

/// `Rbscope::Native.snapshot(thread, context, how, trigger)`: a live snapshot of `thread`
/// (`trigger`: nil, or [kind, reason] for a breakpoint's); its id, or nil (not started, rate
/// limited, queue full, frames unreadable).
pub fn snapshot(
    ruby: &Ruby,
    th: Value,
    ctx: Value,
    how: String,
    trigger: report::Given,
) -> Result<Option<String>, Error> {
    native!(ruby, Capture, "snapshot", || {
        let gvl = gvl();
        ensure_forked(gvl);
        let Some(agent) = state::current() else {
            return Ok(None);
        };
        let (th, ctx) = (ffi::raw(th), ffi::raw(ctx));
        Ok(capture::quietly(|| {
            let opts = report::Live {
                limited: true,
                given: trigger,
                take: None,
            };
            report::live(gvl, &agent, th, ctx, &how, opts)
        }))
    })
}

/// `Rbscope::Native.break_test(id, kinds, payloads)`: whether breakpoint `id` fires with the
/// values its condition reads (agent-core's `control::break_test`, `condition_value`).
pub fn break_test(
    ruby: &Ruby,
    id: u64,
    kinds: Vec<String>,
    payloads: RArray,
) -> Result<bool, Error> {
    native!(ruby, Live, "break_test", || {
        let mut values = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let p: magnus::RString = payloads.entry(i as isize)?;
            // SAFETY: GVL held; the bytes are copied at once, before any Ruby code can run and
            // change or free the string.
            let bytes = unsafe { p.as_slice() }.to_vec();
            values.push(control::condition_value(kind, bytes));
        }
        Ok(control::break_test(id, values))
    })
}

/// `Rbscope::Native.break_post(id, what, text)`: what happened to breakpoint `id`
/// (lib/rbscope/live.rb; agent-core's `control::break_post`); false when it is not set.
pub fn break_post(ruby: &Ruby, id: u64, what: String, text: Option<String>) -> Result<bool, Error> {
    native!(ruby, Live, "break_post", || {
        Ok(control::break_post(id, &what, text))
    })
}

/// `Rbscope::Native.break_due(id, claim)`: whether breakpoint `id` may fire now under its
/// `--every`, and a logpoint's mailbox has room (agent-core's `control::break_due`).
pub fn break_due(ruby: &Ruby, id: u64, claim: bool) -> Result<bool, Error> {
    native!(ruby, Live, "break_due", || Ok(control::break_due(
        id, claim
    )))
}

/// `Rbscope::Native.log_post(id, tid, thread_name, reads)`: logpoint `id`'s hit, `reads` one
/// `[path, true, value]` or `[path, false, why]` per value (lib/rbscope/breakpoints.rb); false
/// when it is not set.
pub fn log_post(
    ruby: &Ruby,
    id: u64,
    tid: Option<i32>,
    thread: Option<String>,
    reads: RArray,
) -> Result<bool, Error> {
    native!(ruby, Live, "log_post", || {
        let mut got = Vec::with_capacity(reads.len());
        for i in 0..reads.len() {
            let entry: RArray = reads.entry(i as isize)?;
            let path: String = entry.entry(0)?;
            let ok: bool = entry.entry(1)?;
            let value = if ok {
                let v: Value = entry.entry(2)?;
                Ok(ffi::raw(v))
            } else {
                Err(entry.entry::<String>(2)?)
            };
            got.push(live::breakpoints::Read { path, value });
        }
        // The values stay alive: `reads` holds them, and it is on the caller's stack.
        Ok(live::breakpoints::log_post(
            gvl(),
            id,
            tid,
            thread.unwrap_or_default(),
            got,
        ))
    })
}

/// Waits up to `seconds` (at most 60) for queued snapshots to be written.
pub fn flush(ruby: &Ruby, seconds: f64) -> Result<bool, Error> {
    native!(ruby, Writer, "flush", || {
        Ok(match state::current() {
            Some(agent) => agent.writer.flush(bounded_wait(seconds, 60.0)),
            None => true,
        })
    })
}

/// `Rbscope::Native.hold_writer(hold)`: around a fork (lib/rbscope/fork_hook.rb). With true,
/// keeps the writer thread out of the store until released and answers whether it is out
/// (it waits up to 2 s for a write under way); with false, releases it.
pub fn hold_writer(ruby: &Ruby, hold: bool) -> Result<bool, Error> {
    native!(ruby, Writer, "hold_writer", || {
        Ok(match state::current() {
            Some(agent) if hold => agent.writer.hold(FORK_HOLD),
            Some(agent) => {
                agent.writer.release();
                true
            }
            None => true,
        })
    })
}

/// How long a fork waits for the store write under way.
const FORK_HOLD: std::time::Duration = std::time::Duration::from_secs(2);

/// The agent's counters by name (what `rbscope doctor -p` shows).
pub fn counters(ruby: &Ruby) -> Result<RHash, Error> {
    native!(ruby, Capture, "counters", || {
        let h = ruby.hash_new();
        if let Some(agent) = state::current() {
            for (k, v) in agent.counters.snapshot() {
                h.aset(ruby.to_symbol(&k), v)?;
            }
        }
        Ok(h)
    })
}

pub fn store_location(ruby: &Ruby) -> Result<Option<String>, Error> {
    native!(ruby, Capture, "store_location", || {
        Ok(state::current().map(|a| a.config.store.clone()))
    })
}

pub fn socket_path(ruby: &Ruby) -> Result<Option<String>, Error> {
    native!(ruby, Live, "socket_path", || {
        let agent = state::current();
        Ok(agent.and_then(|a| a.control.as_ref().map(|c| c.path.display().to_string())))
    })
}

pub fn warnings(ruby: &Ruby) -> Result<Vec<String>, Error> {
    native!(ruby, Capture, "warnings", || {
        Ok(state::current()
            .map(|a| a.warnings.clone())
            .unwrap_or_default())
    })
}

/// `Rbscope::Native.snapshot_json(store, id, trust)`: the snapshot as JSON, for a restore.
/// Needs no running agent. Raises with a one-line reason when the snapshot is missing,
/// unreadable, or not signed with the store's key (unless `trust`).
pub fn snapshot_json(
    ruby: &Ruby,
    store: Option<String>,
    id: String,
    trust: bool,
) -> Result<String, Error> {
    native!(ruby, Capture, "snapshot_json", || {
        let snapshot = load_for_restore(ruby, store, &id, trust)?;
        serde_json::to_string(&rbscope_snapshot::json::snapshot(&snapshot))
            .map_err(|e| runtime_error(ruby, e.to_string()))
    })
}

/// `Rbscope::Native.snapshot_data(store, id, trust)`: the same snapshot as plain Ruby arrays
/// (see restore_data.rs), which is what `Rbscope::Restore` rebuilds objects from.
pub fn snapshot_data(
    ruby: &Ruby,
    store: Option<String>,
    id: String,
    trust: bool,
) -> Result<Value, Error> {
    native!(ruby, Capture, "snapshot_data", || {
        let snapshot = load_for_restore(ruby, store, &id, trust)?;
        // SAFETY: the VALUE is a live Array just built under the GVL, held by this frame
        // (the native stack is scanned by the GC) until Ruby takes the return value.
        Ok(unsafe { ffi::value(restore_data::build(gvl(), &snapshot)) })
    })
}

/// `Rbscope::Native.trace_hook(session, unbound_method, owner, name, filter, index)`: hooks one
/// method resolved by lib/rbscope/live.rb for selector `index`; returns its label.
pub fn trace_hook(
    ruby: &Ruby,
    session: u64,
    um: Value,
    owner: Value,
    name: String,
    filter: Value,
    index: usize,
) -> Result<String, Error> {
    native!(ruby, Trace, "trace_hook", || {
        // Checked before anything reaches the VM: the label calls rb_mod_name on `owner`, the hook
        // calls rb_obj_is_kind_of with `filter` (a TypeError inside a TracePoint), and the method
        // is a TracePoint's target.
        let wrong = |arg: &str, expected: &str, v: Value| type_error(ruby, arg, expected, v);
        if !um.is_kind_of(ruby.class_unbound_method()) {
            return Err(wrong("trace_hook(method)", "an UnboundMethod", um));
        }
        if !owner.is_kind_of(ruby.class_module()) {
            return Err(wrong("trace_hook(owner)", "a Module", owner));
        }
        if !filter.is_nil() && !filter.is_kind_of(ruby.class_module()) {
            return Err(wrong("trace_hook(filter)", "nil or a Module", filter));
        }
        live::hook_method(
            gvl(),
            session,
            ffi::raw(um),
            ffi::raw(owner),
            &name,
            ffi::raw(filter),
            index,
        )
        .map_err(|m| runtime_error(ruby, m))
    })
}

/// `Rbscope::Native.trace_ignore_owner(session, module)`.
pub fn trace_ignore_owner(ruby: &Ruby, session: u64, module: Value) -> Result<(), Error> {
    native!(ruby, Trace, "trace_ignore_owner", || {
        if !module.is_kind_of(ruby.class_module()) {
            let arg = "trace_ignore_owner(module)";
            return Err(type_error(ruby, arg, "a Module", module));
        }
        live::ignore_owner(gvl(), session, ffi::raw(module));
        Ok(())
    })
}

/// `Rbscope::Native.trace_retry(session)`: hooks session's selectors whose code is defined now
/// (called by lib/rbscope/live.rb as the app defines a method one of them waits for).
pub fn trace_retry(ruby: &Ruby, session: u64) -> Result<(), Error> {
    native!(ruby, Trace, "trace_retry", || {
        live::retry(gvl(), session);
        Ok(())
    })
}

/// `Rbscope::Native.eval_done(token, ok, text, incomplete)`: an eval thread's result. `text` is
/// taken as UTF-8 with invalid bytes replaced (lib/rbscope/live.rb converts it first).
pub fn eval_done(
    ruby: &Ruby,
    token: u64,
    ok: bool,
    text: Value,
    incomplete: bool,
) -> Result<(), Error> {
    native!(ruby, Live, "eval_done", || {
        let Some(text) = magnus::RString::from_value(text) else {
            return Err(type_error(ruby, "eval_done(text)", "a String", text));
        };
        // SAFETY: GVL held; the borrowed bytes are copied into an owned String at once, before any
        // Ruby code can run and change or free the string.
        let text = unsafe { text.to_string_lossy() }.into_owned();
        live_eval::done(token, ok, text, incomplete);
        Ok(())
    })
}

/// `Rbscope::Native.flush_traces(seconds)`: at exit, lets traces send what was recorded.
pub fn flush_traces(ruby: &Ruby, seconds: f64) -> Result<(), Error> {
    native!(ruby, Trace, "flush_traces", || {
        live::flush_all(gvl(), bounded_wait(seconds, 5.0));
        Ok(())
    })
}

/// `Rbscope::Native.heap_dump(path, gzip, gc, in_process)`: see `Rbscope.heap_dump`.
pub fn heap_dump(
    ruby: &Ruby,
    path: Option<String>,
    gzip: bool,
    gc: bool,
    in_process: bool,
) -> Result<RHash, Error> {
    native!(ruby, Heap, "heap_dump", || {
        let req = rbscope_proto::HeapDumpRequest {
            path,
            gzip,
            gc,
            in_process,
            wait_ms: 0,
        };
        let answer =
            live_heap::run(gvl(), live_heap::Job::Dump(req)).answer(live_heap::finish_without_gvl);
        match answer {
            rbscope_proto::AgentMessage::HeapDumped(r) => {
                let h = ruby.hash_new();
                h.aset(ruby.to_symbol("path"), r.path)?;
                h.aset(ruby.to_symbol("objects"), r.objects)?;
                h.aset(ruby.to_symbol("roots"), r.roots)?;
                h.aset(ruby.to_symbol("bytes"), r.bytes)?;
                h.aset(ruby.to_symbol("pause_ms"), r.pause_us as f64 / 1000.0)?;
                h.aset(ruby.to_symbol("total_ms"), r.total_us as f64 / 1000.0)?;
                h.aset(ruby.to_symbol("forked"), r.forked)?;
                h.aset(ruby.to_symbol("allocation_info"), r.allocation_info)?;
                Ok(h)
            }
            rbscope_proto::AgentMessage::Error(e) => Err(runtime_error(ruby, e)),
            other => Err(runtime_error(ruby, format!("unexpected answer: {other:?}"))),
        }
    })
}

/// `Rbscope::Native.count_objects(names)`: see `Rbscope.count_objects`.
pub fn count_objects(ruby: &Ruby, names: Vec<String>) -> Result<RHash, Error> {
    native!(ruby, Heap, "count_objects", || match live_heap::run(
        gvl(),
        live_heap::Job::Count(names)
    ) {
        live_heap::Outcome::Done(rbscope_proto::AgentMessage::HeapCensus(c)) => {
            let h = ruby.hash_new();
            for (name, n) in c.classes {
                h.aset(name, n)?;
            }
            Ok(h)
        }
        _ => Err(runtime_error(ruby, "the heap could not be counted")),
    })
}

/// `Rbscope::Native.__provide(path)`: records one of the gem's own files, evaluated from
/// memory by `rbscope inject`'s loading thread, as loaded (see `ffi::provide`). Only a full
/// path to `rbscope.rb` or to a `.rb` file in a directory named `rbscope` is accepted, so
/// that no other library can be marked loaded through it.
pub fn provide_own(ruby: &Ruby, path: String) -> Result<bool, Error> {
    native!(ruby, Capture, "__provide", || {
        if !args::own_gem_file(&path) {
            return Err(arg_error(ruby, args::not_own_gem_file(&path)));
        }
        Ok(ffi::provide(gvl(), &path))
    })
}

/// `Rbscope::Native.thread_body(block)`: the app's thread block wrapped so an exception
/// escaping it is reported, with no frame of ours in the thread (thread_end.rs).
pub fn thread_body(ruby: &Ruby, block: Value) -> Result<Value, Error> {
    native!(ruby, Capture, "thread_body", || {
        if !block.is_kind_of(ruby.class_proc()) {
            return Err(Error::new(
                ruby.exception_type_error(),
                "rbscope: thread_body wants the thread's block (a Proc)",
            ));
        }
        let wrapped = thread_end::wrap(gvl(), ffi::raw(block))
            .map_err(|_| runtime_error(ruby, "rbscope: could not wrap the thread's block"))?;
        // SAFETY: a live Proc just made under the GVL, held by this frame (scanned by the
        // GC) until Ruby takes the return value.
        Ok(unsafe { ffi::value(wrapped) })
    })
}

/// `Rbscope::Native.trace_clock_settled?`: whether the trace clock finished calibrating.
pub fn trace_clock_settled(ruby: &Ruby) -> Result<bool, Error> {
    native!(ruby, Trace, "trace_clock_settled?", || Ok(
        trace_clock::settled()
    ))
}

fn gvl() -> ffi::Gvl {
    // SAFETY: every function below is called from Ruby, on a Ruby thread holding the GVL.
    unsafe { ffi::Gvl::assume() }
}

fn arg_error(ruby: &Ruby, msg: String) -> Error {
    Error::new(ruby.exception_arg_error(), msg)
}

fn runtime_error(ruby: &Ruby, msg: impl Into<String>) -> Error {
    Error::new(ruby.exception_runtime_error(), msg.into())
}

/// A TypeError: `Rbscope::Native.{arg}` wants `expected` and got `v`.
fn type_error(ruby: &Ruby, arg: &str, expected: &str, v: Value) -> Error {
    let msg = args::type_error(arg, expected, &class_name_of(v));
    Error::new(ruby.exception_type_error(), msg)
}

fn load_for_restore(
    ruby: &Ruby,
    store: Option<String>,
    id: &str,
    trust: bool,
) -> Result<rbscope_snapshot::Snapshot, Error> {
    let agent_key = state::current().and_then(|a| a.config.store_key.clone());
    restore::load(store, id, trust, agent_key).map_err(|m| runtime_error(ruby, m))
}

/// A fork that bypassed `Process._fork` (a C extension calling fork(2)) still gets a fresh
/// agent the first time it reports.
fn ensure_forked(gvl: ffi::Gvl) {
    if state::current().is_none() && state::inherited().is_some() {
        let _ = lifecycle::after_fork(gvl);
    }
}

/// The name of `v`'s class for an error message, with its article ("an Integer").
fn class_name_of(v: Value) -> String {
    match ffi::plain_class_name(gvl(), ffi::raw(v)) {
        Some(name) => args::with_article(&name),
        None => "an object".into(),
    }
}
