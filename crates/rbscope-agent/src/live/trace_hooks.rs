//! The VM hooks behind `rbscope trace`, and installing and removing them.
//!
//! - Firehose: one global hook on Ruby method calls and returns (`RUBY_EVENT_CALL|RETURN`,
//!   never the C-call events, which leave Ruby 3.1 slower for good), with the raw trace
//!   argument so no Ruby objects are made per event.
//! - Selected methods: a TracePoint enabled with `target:` on each method, so only those
//!   methods' instructions are hooked and a method never called costs nothing. C methods are
//!   wrapped in Ruby first (lib/rbscope/live.rb) and the wrapper is targeted.
//! - GC: a TracePoint on the internal GC events (start, end of marking, end of sweeping);
//!   its hook only stores a record (no allocation is allowed there).
//!
//! Every hook first checks that its session is still open, then writes fixed-size records
//! into the session's ring (trace_session.rs); nothing here waits for the client.
//!
//! A hook that calls into Ruby (naming a thread the first time, reading captured values) can
//! lose the GVL in the middle (any method call may switch threads), and the session may be
//! detached meanwhile. So a hook that is about to call into Ruby first takes a reference of
//! its own on its target (and so its session), and freeing waits for that hook; the common
//! case (a named method, nothing to capture) calls no Ruby and takes none. Threads are named
//! without Ruby (trace_session.rs).

use crate::ffi::guard::{self, Feature};
use crate::ffi::live::{self as rb, rb_trace_arg_t, VALUE};
use crate::ffi::live::{EVENT_CALL as CALL, EVENT_RETURN as RETURN};
use crate::ffi::live::{GC_END_MARK, GC_END_SWEEP, GC_START};
use crate::ffi::{self, Gvl, NIL};
use crate::live::trace_session::{self as ts, Session};
use crate::live::trace_values::{self, Compiled};
use rbscope_trace::events::{self, GcPhase};
use std::ffi::c_void;
use std::sync::Arc;

/// One hooked method: what its TracePoint's hook needs.
pub struct Target {
    session: Arc<Session>,
    method: u32,
    /// When the method is inherited, only calls on receivers of this class or module count.
    filter: VALUE,
    captures: Vec<Compiled>,
}

/// The hooks a session installed, so they can be removed.
#[derive(Default)]
pub struct Installed {
    firehose: bool,
    tracepoints: Vec<VALUE>,
    /// Each TracePoint's data is the address of one of these (kept alive here until it is
    /// disabled, and by any hook still running).
    targets: Vec<Arc<Target>>,
}

// SAFETY: only touched on the agent's Ruby thread under the GVL (install and remove); the
// raw pointers inside are never dereferenced elsewhere.
unsafe impl Send for Installed {}

/// A reference of the running hook's own on what its data points to.
///
/// # Safety
/// `data` must come from `Arc::as_ptr` of an `Arc<T>` that is alive now (the installed hook's
/// own reference, dropped only under the GVL after the hook is removed); the caller holds the
/// GVL, so that reference cannot go away before this one is taken.
unsafe fn hold<T>(data: *const T) -> Arc<T> {
    // SAFETY: see the contract; this adds one strong reference and adopts it.
    unsafe {
        Arc::increment_strong_count(data);
        Arc::from_raw(data)
    }
}

/// The firehose hook's data: the session's address tagged as a Fixnum. Ruby's GC marks every
/// event hook's data as a VALUE (`rb_hook_list_mark`), so a bare Rust address there would be
/// marked as if it were an object on the Ruby heap: the GC then reads and sets mark bits in
/// whatever lies at the 64 KiB boundary below it, and crashes or corrupts memory (found by
/// scripts/soak: puma workers died in GC during `rbscope trace -f`). A Fixnum is a special
/// constant, never marked; sessions are at least 2-byte aligned, so bit 0 is free.
fn hook_data(session: *const Session) -> VALUE {
    const _: () = assert!(std::mem::align_of::<Session>() >= 2);
    session as VALUE | 1
}

unsafe extern "C" fn on_any(data: VALUE, arg: *mut rb_trace_arg_t) {
    guard::run_hot(Feature::Trace, "the trace hook", (), || {
        let ptr = (data & !1) as *const Session;
        // SAFETY: `data` is `Arc::as_ptr` of the session, whose table entry keeps it alive until
        // this hook is removed (under the GVL, which this hook holds now); it stays valid for as
        // long as this hook calls no Ruby, and `hold` covers the rest.
        let session = unsafe { &*ptr };
        let t0 = session.clock.now();
        if session.is_closed() {
            return;
        }
        // SAFETY: Ruby calls event hooks on a Ruby thread holding the GVL.
        let gvl = unsafe { Gvl::assume() };
        // SAFETY: `arg` is this event's trace argument, valid during the hook (the VM passes it
        // to the hook it is running).
        let (flag, (klass, mid)) = unsafe { (rb::trace_event(arg), rb::trace_method(arg)) };
        let mut held = None;
        let method = ts::method_id(session, gvl, klass, mid, || {
            // SAFETY: as above; naming the method calls Ruby.
            held = Some(unsafe { hold(ptr) });
        });
        let Some(method) = method else {
            return;
        };
        if flag == CALL {
            ts::call(session, gvl, method, t0, &[], 0);
        } else if flag == RETURN {
            ts::ret(session, gvl, method, t0);
        }
    })
}

/// The entry shared by a target's call and return hooks: the target (when its session is
/// still open and, if it filters receivers, this receiver counts) and, when the hook will
/// call into Ruby, a reference of the hook's own that keeps it alive.
///
/// # Safety
/// `data` must be a TracePoint's Target (see `hold`) and `tp` the TracePoint whose hook is
/// running; the returned reference is valid until the hook calls into Ruby, and for as long
/// as the returned `Arc`, if any, lives.
unsafe fn target_event<'a>(
    gvl: Gvl,
    tp: VALUE,
    data: *mut c_void,
    captures: bool,
) -> Option<(&'a Target, Option<Arc<Target>>, u64)> {
    let ptr = data as *const Target;
    // SAFETY: `data` is `Arc::as_ptr` of a Target in `Installed::targets`, dropped only after
    // this TracePoint is disabled, under the GVL this hook holds.
    let target = unsafe { &*ptr };
    let t0 = target.session.clock.now();
    if target.session.is_closed() {
        return None;
    }
    if target.filter != 0 {
        // SAFETY: inside `tp`'s hook (the caller's promise), so its trace argument is live;
        // the filter is a Module (checked by `Rbscope::Native.trace_hook`, kept alive by the
        // session's marks).
        let ok = unsafe {
            let arg = rb::trace_arg_of(tp);
            rb::is_kind_of(gvl, rb::trace_self(arg), target.filter)
        };
        if !ok {
            return None;
        }
    }
    // Only captured values call Ruby (threads are named without it).
    let calls_ruby = captures && !target.captures.is_empty();
    // SAFETY: as above.
    let held = calls_ruby.then(|| unsafe { hold(ptr) });
    Some((target, held, t0))
}

/// A target's TracePoint hook, for its calls and its returns.
unsafe extern "C" fn on_target_event(tp: VALUE, data: *mut c_void) {
    // SAFETY: Ruby calls this hook for `tp`, so its trace argument is live.
    let event = unsafe { rb::trace_event(rb::trace_arg_of(tp)) };
    // SAFETY: the same hook call, passed on.
    unsafe {
        if event == CALL {
            on_target::<true>(tp, data)
        } else {
            on_target::<false>(tp, data)
        }
    }
}

/// A target's call (`IS_CALL`) or return.
unsafe extern "C" fn on_target<const IS_CALL: bool>(tp: VALUE, data: *mut c_void) {
    guard::run_hot(Feature::Trace, "the trace hook", (), || {
        // SAFETY: Ruby calls TracePoint hooks on a Ruby thread holding the GVL.
        let gvl = unsafe { Gvl::assume() };
        // SAFETY: the hook's data and TracePoint, as `target_event` requires.
        let Some((target, _held, t0)) = (unsafe { target_event(gvl, tp, data, IS_CALL) }) else {
            return;
        };
        let session = &target.session;
        if !IS_CALL {
            ts::ret(session, gvl, target.method, t0);
        } else if target.captures.is_empty() {
            ts::call(session, gvl, target.method, t0, &[], 0);
        } else {
            // SAFETY: inside `tp`'s call hook (the caller's promise), so its trace argument is the
            // running call's and `read` may use it.
            let values = unsafe { trace_values::read(gvl, &target.captures, rb::trace_arg_of(tp)) };
            let pairs: Vec<(&str, &str)> = target
                .captures
                .iter()
                .zip(&values)
                .map(|(c, v)| (c.text.as_str(), v.as_str()))
                .collect();
            let extra = session.clock.now().saturating_sub(t0);
            ts::call(session, gvl, target.method, t0, &pairs, extra);
        }
    })
}

unsafe extern "C" fn on_gc(tp: VALUE, data: *mut c_void) {
    guard::run_hot(Feature::Trace, "the GC trace hook", (), || {
        // SAFETY: `data` is the session pointer; the TracePoint is disabled before the session
        // is dropped.
        let session = unsafe { &*(data as *const Session) };
        if session.is_closed() {
            return;
        }
        // SAFETY: the VM runs GC event hooks holding the GVL.
        let gvl = unsafe { Gvl::assume() };
        // SAFETY: inside `tp`'s hook (the caller's promise); reading the event allocates nothing,
        // as a GC hook requires.
        let flag = unsafe { rb::trace_event(rb::trace_arg_of(tp)) };
        let count = rb::gc_count(gvl);
        let phase = if flag == GC_START {
            GcPhase::Start
        } else if flag == GC_END_MARK {
            GcPhase::EndMark
        } else {
            GcPhase::EndSweep
        };
        let t = session.clock.now();
        session
            .ring
            .push(events::GC_LEN, |b| events::write_gc(b, phase, count, t));
    })
}

impl Installed {
    /// Hooks every Ruby method call and return for `session`.
    pub fn firehose(&mut self, _gvl: Gvl, session: &Arc<Session>) {
        // SAFETY: GVL held (the token), as adding a hook needs; `on_any` has the raw-arg
        // signature the flag announces, and its data is the session (tagged, see `hook_data`),
        // kept alive by the live table until `remove` has taken the hook away.
        unsafe {
            ffi::add_raw_event_hook(
                on_any,
                CALL | RETURN,
                hook_data(Arc::as_ptr(session)),
                ffi::HOOK_FLAG_RAW_ARG,
            )
        };
        self.firehose = true;
    }

    /// Hooks the GC's start and end.
    pub fn gc(&mut self, gvl: Gvl, session: &Arc<Session>) -> Result<(), String> {
        let data = Arc::as_ptr(session) as *mut c_void;
        // SAFETY: `data` is the session, kept alive by `self`'s owner (the live table) until
        // `remove` has disabled this TracePoint.
        let tp =
            unsafe { rb::tracepoint_new(gvl, GC_START | GC_END_MARK | GC_END_SWEEP, on_gc, data) };
        ts::with(session, gvl, |st| st.keep(tp));
        self.tracepoints.push(tp);
        rb::tracepoint_enable(gvl, tp)
            .map(|_| ())
            .map_err(|_| "cannot enable the GC hook".into())
    }

    /// Hooks one method (an UnboundMethod with Ruby code) under `label`.
    pub fn method(
        &mut self,
        gvl: Gvl,
        session: &Arc<Session>,
        um: VALUE,
        label: String,
        filter: VALUE,
        captures: Vec<Compiled>,
    ) -> Result<(), String> {
        let method = ts::with(session, gvl, |st| st.register_method(label));
        let target = Arc::new(Target {
            session: session.clone(),
            method,
            filter: if filter == NIL { 0 } else { filter },
            captures,
        });
        let filter = target.filter;
        let data = Arc::as_ptr(&target) as *mut c_void;
        self.targets.push(target);
        let hash = rb::keywords(gvl, "target", um);
        ts::with(session, gvl, |st| {
            if filter != 0 {
                st.keep(filter);
            }
            st.keep(um);
            st.keep(hash);
        });
        // One TracePoint for both events: Ruby 3.1 keeps one hook list per method made with
        // define_method, and a second TracePoint enabled on it replaced the first (its calls
        // were never seen).
        // SAFETY: `data` is a Target kept in `self.targets` until `remove` has disabled this
        // TracePoint (and by any hook still running, see `hold`).
        let tp = unsafe { rb::tracepoint_new(gvl, CALL | RETURN, on_target_event, data) };
        ts::with(session, gvl, |st| st.keep(tp));
        self.tracepoints.push(tp);
        rb::call_kw(gvl, tp, "enable", hash)
            .map_err(|_| "TracePoint#enable(target:) refused it".to_string())?;
        Ok(())
    }

    /// Removes every hook, then frees what they used. Under the GVL, so no hook is running.
    pub fn remove(&mut self, gvl: Gvl, session: &Session) {
        session.close();
        if self.firehose {
            // SAFETY: GVL held (the token), so no hook runs meanwhile; removes exactly the
            // hook `firehose` added for this session (same function, same data).
            unsafe { ffi::remove_raw_event_hook_with_data(on_any, hook_data(session)) };
            self.firehose = false;
        }
        let mut all_off = true;
        for tp in self.tracepoints.drain(..) {
            if rb::tracepoint_disable(gvl, tp).is_err() {
                all_off = false;
            }
        }
        if all_off {
            self.targets.clear();
        } else {
            // A hook that could not be disabled may still run: its data must stay valid.
            std::mem::forget(std::mem::take(&mut self.targets));
        }
    }
}
