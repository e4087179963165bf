//! Tracing sessions as the VM sees them: attaching and detaching on the agent's Ruby thread,
//! and the native half of `lib/rbscope/live.rb`, which resolves selectors to methods (and
//! wraps C methods) and asks for each to be hooked.
//!
//! Sessions live in a table touched only under the GVL; a hidden marker object marks what
//! each session keeps (classes its method names refer to, threads, TracePoints), so no address
//! a session knows can be reused while it lives.

use crate::ffi::capture::RubyBuild;
use crate::ffi::guard::{self, Feature};
use crate::ffi::live::{self as rb, VALUE};
use crate::ffi::marker::MarkerType;
use crate::ffi::{self, Gvl};
use crate::live::trace_hooks::Installed;
use crate::live::trace_session::{self as ts, method_label, Session};
use crate::live::trace_values;
use rbscope_agent_core::agent::trace_table::{Attached, Table};
use rbscope_agent_core::control::Plan;
use rbscope_proto::TraceStarted;
use std::cell::UnsafeCell;
use std::mem::take;
use std::sync::Arc;
use std::time::Instant;

struct Live(UnsafeCell<Table<Installed>>);
// SAFETY: only touched under the GVL (the agent thread, Ruby calls, GC marking), in borrows
// that end before any Ruby call.
unsafe impl Sync for Live {}

static LIVE: Live = Live(UnsafeCell::new(Table::new()));
static LIVE_MARKER: MarkerType = MarkerType::new(c"rbscope trace sessions", mark_live);

unsafe extern "C" fn mark_live(_data: *mut std::ffi::c_void) {
    guard::mark(&[Feature::Trace], "marking trace sessions", || {
        // SAFETY: the GC runs under the GVL; no borrow of the table is alive while Ruby runs.
        let table = unsafe { &*LIVE.0.get() };
        // SAFETY: the GC calls mark functions on a Ruby thread holding the GVL.
        let gvl = unsafe { Gvl::assume() };
        for ls in table.iter() {
            ts::with(&ls.session, gvl, |st| {
                st.each_kept(|v| {
                    // SAFETY: this is the marker's mark function, run by the GC in its mark
                    // phase; `v` is kept by the session, so it has not been freed.
                    unsafe { ffi::gc_mark(v) }
                })
            });
        }
    })
}

fn with_table<R>(_gvl: Gvl, f: impl FnOnce(&mut Table<Installed>) -> R) -> R {
    // SAFETY: GVL held (token); `f` does not call into Ruby, so no other borrow exists.
    f(unsafe { &mut *LIVE.0.get() })
}

/// Session `id`, while it is attached.
fn session(gvl: Gvl, id: u64) -> Option<Arc<Session>> {
    with_table(gvl, |t| t.get(id).map(|l| l.session.clone()))
}

/// Installs the hooks `plan` asks for. Runs on the agent's Ruby thread.
pub fn attach(gvl: Gvl, session: Arc<Session>, plan: Plan) -> Result<TraceStarted, String> {
    LIVE_MARKER.ensure(gvl);
    let started = Instant::now();
    // The agent's own thread (the current one) is never traced.
    let me = rb::thread_current(gvl);
    ts::with(&session, gvl, |st| st.ignore_thread(me));
    let id = session.id;
    with_table(gvl, |t| {
        t.push(Attached {
            session: session.clone(),
            hooks: Installed::default(),
            selectors: plan.selectors.clone(),
        })
    });
    let result = install(gvl, &session, &plan);
    match result {
        Ok((hooked, skipped, waiting)) => Ok(TraceStarted {
            hooked,
            skipped,
            waiting,
            ring_bytes: session.ring.capacity() as u64,
            install_us: started.elapsed().as_micros() as u64,
            clock: session.clock.name().into(),
        }),
        Err(e) => {
            detach(gvl, id);
            Err(e)
        }
    }
}

/// What installing gave: labels hooked, what was skipped and why, what waits for its code.
type Installing = (Vec<String>, Vec<String>, Vec<String>);

fn install(gvl: Gvl, session: &Arc<Session>, plan: &Plan) -> Result<Installing, String> {
    let mut hooked = Vec::new();
    let mut skipped = Vec::new();
    let mut waiting = Vec::new();
    if !plan.selectors.is_empty() {
        let live = ffi::const_at(gvl, "Rbscope::Live").ok_or(ffi::LIVE_NOT_LOADED)?;
        let list = plan.selector_list(&RubyBuild(gvl));
        let flag = |b: bool| if b { ffi::TRUE } else { ffi::FALSE };
        let answer = ffi::call(
            gvl,
            live,
            "install",
            &[
                ffi::u64_value(gvl, session.id),
                list,
                flag(plan.firehose),
                flag(plan.wait_for_code),
            ],
        )
        .map_err(|_| "installing the selectors raised inside the app".to_string())?;
        // [ok, hooked, skipped] or [false, message]
        let parts = ffi::array_items(gvl, answer);
        if parts.first().copied() != Some(ffi::TRUE) {
            return Err(parts
                .get(1)
                .and_then(|v| ffi::to_string(gvl, *v))
                .unwrap_or_else(|| "the selectors could not be installed".into()));
        }
        for (i, out) in [(1, &mut hooked), (2, &mut skipped), (3, &mut waiting)] {
            out.extend(parts.get(i).map(|v| strings(gvl, *v)).unwrap_or_default());
        }
    }
    if plan.firehose {
        update(gvl, session.id, |installed, gvl, s| {
            installed.firehose(gvl, s);
            Ok(())
        })?;
        hooked.push("every Ruby method call (C methods only when selected)".into());
    }
    if plan.gc {
        update(gvl, session.id, |installed, gvl, s| installed.gc(gvl, s))?;
        hooked.push("GC start and end".into());
    }
    session
        .waiting
        .store(!waiting.is_empty(), std::sync::atomic::Ordering::Relaxed);
    Ok((hooked, skipped, waiting))
}

/// Tries the selectors of session `id` that wait for their code again; what is hooked now is
/// announced in the event stream. Runs on the agent's Ruby thread (every 100 ms while some
/// selector waits), or on an app thread the moment it defines a method a selector waits for
/// (lib/rbscope/live.rb's method-added hook, through `Native.trace_retry`).
pub fn retry(gvl: Gvl, id: u64) {
    let session = session(gvl, id);
    let (Some(session), Some(live)) = (session, ffi::const_at(gvl, "Rbscope::Live")) else {
        return;
    };
    let Ok(answer) = ffi::call(gvl, live, "retry", &[ffi::u64_value(gvl, id)]) else {
        return;
    };
    // [hooked now, still waiting]
    let parts = ffi::array_items(gvl, answer);
    for text in parts.first().map(|v| strings(gvl, *v)).unwrap_or_default() {
        session.note(&format!("now tracing {text}"));
    }
    let still = parts.get(1).and_then(|v| ffi::fixnum(*v)).unwrap_or(0);
    session
        .waiting
        .store(still > 0, std::sync::atomic::Ordering::Relaxed);
}

/// The Strings of the Array `v` (anything else left out).
fn strings(gvl: Gvl, v: VALUE) -> Vec<String> {
    let items = ffi::array_items(gvl, v).into_iter();
    items.filter_map(|s| ffi::to_string(gvl, s)).collect()
}

/// Runs `f` on a session's hooks, outside any borrow of the table (it may call Ruby).
fn update(
    gvl: Gvl,
    id: u64,
    f: impl FnOnce(&mut Installed, Gvl, &Arc<Session>) -> Result<(), String>,
) -> Result<(), String> {
    let taken = with_table(gvl, |t| {
        let l = t.get_mut(id)?;
        Some((l.session.clone(), take(&mut l.hooks)))
    });
    let Some((session, mut installed)) = taken else {
        return Err("the trace session has ended".into());
    };
    let r = f(&mut installed, gvl, &session);
    let back = with_table(gvl, |t| {
        t.get_mut(id).map(|l| l.hooks = take(&mut installed))
    });
    if back.is_none() {
        // Detached meanwhile: remove what was just installed.
        installed.remove(gvl, &session);
    }
    r
}

/// Removes a session's hooks and C-method wrappers. Runs on the agent's Ruby thread.
pub fn detach(gvl: Gvl, id: u64) {
    let _ = update(gvl, id, |installed, gvl, s| {
        installed.remove(gvl, s);
        Ok(())
    });
    if let Some(live) = ffi::const_at(gvl, "Rbscope::Live") {
        let _ = ffi::call(gvl, live, "uninstall", &[ffi::u64_value(gvl, id)]);
    }
    if let Some(mut ls) = with_table(gvl, |t| t.remove(id)) {
        ls.hooks.remove(gvl, &ls.session);
    }
}

/// Removes every session's hooks: on `Rbscope.stop`, and in a forked child (the parent's
/// sessions have no client there).
pub fn detach_all(gvl: Gvl) {
    for id in with_table(gvl, |t| t.ids()) {
        detach(gvl, id);
    }
}

/// `Rbscope::Native.trace_hook(session_id, unbound_method, owner, name, filter, index)`:
/// hooks one resolved method for selector `index`; returns its label.
pub fn hook_method(
    gvl: Gvl,
    id: u64,
    um: VALUE,
    owner: VALUE,
    name: &str,
    filter: VALUE,
    index: usize,
) -> Result<String, String> {
    let captures =
        with_table(gvl, |t| t.captures(id, index)).ok_or("the trace session has ended")?;
    let captures = captures
        .iter()
        .map(|c| trace_values::compile(gvl, c))
        .collect();
    let label = method_label(gvl, owner, ffi::symbol(gvl, name));
    let l = label.clone();
    update(gvl, id, move |installed, gvl, s| {
        installed.method(gvl, s, um, l, filter, captures)
    })?;
    Ok(label)
}

/// `Rbscope::Native.trace_ignore_owner(session_id, module)`: the firehose skips methods of
/// this module (a C-method wrapper).
pub fn ignore_owner(gvl: Gvl, id: u64, module: VALUE) {
    if let Some(s) = session(gvl, id) {
        ts::with(&s, gvl, |st| st.ignore_owner(module));
    }
}

/// At exit: gives every trace's connection thread up to `wait` to send what the hooks wrote
/// (the process's threads end with it). Hooks stop writing first.
pub fn flush_all(gvl: Gvl, wait: std::time::Duration) {
    let sessions = with_table(gvl, |t| t.sessions());
    let deadline = Instant::now() + wait;
    for s in sessions {
        s.close_and_drain(deadline);
    }
}
