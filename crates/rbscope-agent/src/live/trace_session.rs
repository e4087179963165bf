//! One client's trace: its event ring, and what its hooks know about threads and methods.
//!
//! Hooks run on app threads holding the GVL, so the hook state (thread table, method names,
//! per-thread shadow stacks) is only touched under the GVL, in short borrows that never call
//! into Ruby (anything that needs Ruby, such as a thread's name or a class's path, is looked
//! up before the borrow). The ring is the only part the drain thread touches.
//!
//! Timings: a record's time is the clock when its hook was entered (one clock read per event).
//! Each thread's shadow stack remembers, per open call, when it began and how many hooks had
//! run on that thread so far; a return reports the elapsed time minus the tracer's time inside
//! the call: the number of hooks that ran in between times their measured average cost (every
//! 64th hook reads the clock again on its way out to keep that average current), plus the
//! measured time of captured values. Returns whose call was not seen (the trace began inside
//! them) are not reported, so the stream is balanced per thread.

use crate::ffi::{self, Gvl};
use crate::live::trace_clock::Clock;
use rb_sys::{ruby_value_type, VALUE};
use rbscope_trace::events;
use rbscope_trace::ring::ByteRing;
use rustc_hash::FxHashMap;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Deeper calls are counted but not timed (their returns are matched by the count).
const MAX_STACK: usize = 10_000;
/// Method ids for firehose labels; past this, new methods are not traced (and counted).
const MAX_METHODS: usize = 200_000;
/// Threads remembered at once (see `thread_index`).
const MAX_THREADS: usize = 1024;
/// A method id meaning "do not trace" (the agent's own wrappers).
const IGNORED: u32 = u32::MAX;

struct Open {
    method: u32,
    start: u64,
    /// The thread's hook count and extra tracer time when the call began.
    hooks: u64,
    extra: u64,
}

struct ThreadEntry {
    value: VALUE,
    id: u32,
    name: String,
    tid: i32,
    announced: bool,
    ignored: bool,
    /// Hooks run on this thread so far.
    hooks: u64,
    /// Measured tracer time beyond the average hook (captured values).
    extra: u64,
    stack: Vec<Open>,
    /// Calls past MAX_STACK not pushed.
    overflow: u32,
}

struct Label {
    text: String,
    announced: bool,
}

#[derive(Default)]
struct HookState {
    threads: Vec<ThreadEntry>,
    last_thread: usize,
    methods: FxHashMap<(VALUE, VALUE), u32>,
    labels: Vec<Label>,
    /// Threads whose calls are never traced (the agent's own).
    ignore_threads: Vec<VALUE>,
    /// Modules whose methods the firehose skips (rbscope's C-method wrappers).
    ignored_owners: Vec<VALUE>,
    /// The average cost of one hook, in nanoseconds (sampled).
    hook_ns: u64,
    /// The last thread id given out.
    next_thread: u32,
    /// The last firehose lookup: (class, method) and its id.
    last_method: (VALUE, VALUE, u32),
    /// Objects the session's Ruby handle marks (classes named by method keys, threads,
    /// tracepoints, filters), so their addresses cannot be reused while it lives.
    marks: Vec<VALUE>,
}

pub struct Session {
    pub id: u64,
    /// The clock every record of this session is stamped with.
    pub clock: Clock,
    pub ring: ByteRing,
    closed: AtomicBool,
    /// Report only calls at least this slow (as slow records).
    pub slow_ns: Option<u64>,
    /// Methods the firehose could not name (too many).
    pub unnamed: AtomicU64,
    /// Some selectors wait for their code to be loaded (see `live::retry`).
    pub waiting: AtomicBool,
    /// Records the ring dropped over the session (the client did not keep up).
    pub lost: AtomicU64,
    /// Ring bytes the connection thread has written to the client so far.
    pub sent: std::sync::atomic::AtomicUsize,
    state: UnsafeCell<HookState>,
}

// SAFETY: `state` is only accessed under the GVL (hooks, the agent thread, GC marking), which
// serializes those accesses; the ring and the flags are atomics.
unsafe impl Sync for Session {}
// SAFETY: as above.
unsafe impl Send for Session {}

impl Session {
    /// None when the ring's memory cannot be had.
    pub fn new(id: u64, ring_bytes: usize, slow_ns: Option<u64>) -> Option<Session> {
        Some(Session {
            id,
            clock: Clock::new(),
            ring: ByteRing::new(ring_bytes)?,
            closed: AtomicBool::new(false),
            slow_ns,
            unnamed: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            sent: std::sync::atomic::AtomicUsize::new(0),
            lost: AtomicU64::new(0),
            state: UnsafeCell::new(HookState::default()),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Hooks stop writing at once (they are removed later, under the GVL).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Runs `f` on the hook state. `f` must not call into Ruby.
    fn with<R>(&self, _gvl: Gvl, f: impl FnOnce(&mut HookState) -> R) -> R {
        // SAFETY: the GVL is held (token) and `f` cannot re-enter Ruby, so no other borrow of
        // the state exists while this one lives (see the module docs).
        f(unsafe { &mut *self.state.get() })
    }

    /// Keeps `v` alive (and its address unique) while the session lives.
    pub fn keep(&self, gvl: Gvl, v: VALUE) {
        self.with(gvl, |st| st.marks.push(v));
    }

    pub fn ignore_thread(&self, gvl: Gvl, thread: VALUE) {
        self.with(gvl, |st| st.ignore_threads.push(thread));
    }

    pub fn ignore_owner(&self, gvl: Gvl, module: VALUE) {
        self.with(gvl, |st| {
            st.ignored_owners.push(module);
            st.marks.push(module);
        });
    }

    /// Calls `mark` on every object the session keeps (from the handle's GC mark function).
    pub fn each_kept(&self, gvl: Gvl, mut mark: impl FnMut(VALUE)) {
        self.with(gvl, |st| {
            st.marks.iter().for_each(|v| mark(*v));
            st.threads.iter().for_each(|t| mark(t.value));
        });
    }

    /// Puts a note for the person tracing into the event stream.
    pub fn note(&self, text: &str) {
        self.ring
            .push(events::note_len(text), |b| events::write_note(b, text));
    }

    /// A new method id with this label (for a hooked method).
    pub fn register_method(&self, gvl: Gvl, label: String) -> u32 {
        self.with(gvl, |st| {
            st.labels.push(Label {
                text: label,
                announced: false,
            });
            (st.labels.len() - 1) as u32
        })
    }

    /// The firehose's id for the method `mid` (a Symbol) defined in `klass`, naming it on
    /// first sight (which calls Ruby: `before_ruby` runs first); None for methods not traced.
    pub fn method_id(
        &self,
        gvl: Gvl,
        klass: VALUE,
        mid: VALUE,
        before_ruby: impl FnOnce(),
    ) -> Option<u32> {
        let key = (klass, mid);
        let known = self.with(gvl, |st| {
            let (k, m, id) = st.last_method;
            if k == klass && m == mid {
                return Some(id);
            }
            let id = st.methods.get(&key).copied()?;
            st.last_method = (klass, mid, id);
            Some(id)
        });
        match known {
            Some(IGNORED) => return None,
            Some(id) => return Some(id),
            None => {}
        }
        let (ignored, full) = self.with(gvl, |st| {
            (
                st.ignored_owners.contains(&klass),
                st.labels.len() >= MAX_METHODS,
            )
        });
        if full {
            self.unnamed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        before_ruby();
        let label = (!ignored).then(|| method_label(gvl, klass, mid));
        self.with(gvl, |st| {
            let id = match label {
                Some(text) => {
                    st.labels.push(Label {
                        text,
                        announced: false,
                    });
                    (st.labels.len() - 1) as u32
                }
                None => IGNORED,
            };
            st.methods.insert(key, id);
            if klass != 0 && klass != ffi::NIL {
                st.marks.push(klass);
            }
            (id != IGNORED).then_some(id)
        })
    }

    /// The current thread's index in the table, adding it on first sight (no Ruby is called);
    /// None when its calls are not traced.
    fn thread_index(&self, gvl: Gvl) -> Option<usize> {
        // SAFETY: GVL held; returns the running Thread.
        let cur = unsafe { rb_sys::rb_thread_current() };
        // One borrow: naming a new thread calls no Ruby (see `thread_facts`).
        self.with(gvl, |st| {
            let i = if st
                .threads
                .get(st.last_thread)
                .is_some_and(|t| t.value == cur)
            {
                st.last_thread
            } else if let Some(i) = st.threads.iter().position(|t| t.value == cur) {
                i
            } else {
                let (name, tid) = thread_facts(gvl, cur);
                let ignored = st.ignore_threads.contains(&cur) || name.starts_with("rbscope-");
                if st.threads.len() >= MAX_THREADS {
                    // An app that makes a thread per job: forget threads that are not inside
                    // a traced call (one that comes back gets a new id), so the table, and
                    // the dead Thread objects it keeps, stay bounded.
                    st.threads.retain(|t| !t.stack.is_empty() || t.overflow > 0);
                }
                st.next_thread += 1;
                st.threads.push(ThreadEntry {
                    value: cur,
                    id: st.next_thread,
                    name,
                    tid,
                    announced: false,
                    ignored,
                    hooks: 0,
                    extra: 0,
                    stack: Vec::new(),
                    overflow: 0,
                });
                st.threads.len() - 1
            };
            st.last_thread = i;
            st.threads.get(i).is_some_and(|t| !t.ignored).then_some(i)
        })
    }

    /// A call of `method` began on this thread; `t0` is when the hook was entered, `extra`
    /// the tracer time already spent on it beyond an ordinary hook (reading captured values).
    pub fn call(&self, gvl: Gvl, method: u32, t0: u64, values: &[(&str, &str)], extra: u64) {
        let Some(ti) = self.thread_index(gvl) else {
            return;
        };
        let ring = &self.ring;
        let slow = self.slow_ns.is_some();
        let sample = self.with(gvl, |st| {
            announce(ring, st, ti, method);
            let Some(th) = st.threads.get_mut(ti) else {
                return false;
            };
            if th.stack.len() >= MAX_STACK {
                th.overflow += 1;
                return false;
            }
            if !slow {
                let id = th.id;
                if values.is_empty() {
                    ring.push(events::CALL_LEN, |b| events::write_call(b, id, method, t0));
                } else {
                    ring.push(events::call_values_len(values), |b| {
                        events::write_call_values(b, id, method, t0, values)
                    });
                }
            }
            th.stack.push(Open {
                method,
                start: t0,
                hooks: th.hooks,
                extra: th.extra,
            });
            th.hooks += 1;
            th.extra += extra;
            th.hooks % 64 == 0
        });
        if sample {
            self.sample_cost(gvl, t0);
        }
    }

    /// A call of `method` ended on this thread; `t0` is when the hook was entered.
    pub fn ret(&self, gvl: Gvl, method: u32, t0: u64) {
        let Some(ti) = self.thread_index(gvl) else {
            return;
        };
        let ring = &self.ring;
        let slow = self.slow_ns;
        let sample = self.with(gvl, |st| {
            let hook_ns = st.hook_ns;
            let Some(th) = st.threads.get_mut(ti) else {
                return false;
            };
            if th.overflow > 0 {
                th.overflow -= 1;
                return false;
            }
            let Some(at) = th.stack.iter().rposition(|o| o.method == method) else {
                return false;
            };
            th.stack.truncate(at + 1);
            let Some(open) = th.stack.pop() else {
                return false;
            };
            let inside = (th.hooks - open.hooks) * hook_ns + (th.extra - open.extra);
            let duration = t0.saturating_sub(open.start).saturating_sub(inside);
            let id = th.id;
            th.hooks += 1;
            match slow {
                None => {
                    ring.push(events::RETURN_LEN, |b| {
                        events::write_return(b, id, method, t0, duration)
                    });
                }
                Some(min) if duration >= min => {
                    ring.push(events::SLOW_LEN, |b| {
                        events::write_slow(b, id, method, at as u32, open.start, duration)
                    });
                }
                Some(_) => {}
            }
            th.hooks % 64 == 0
        });
        if sample {
            self.sample_cost(gvl, t0);
        }
    }

    /// Folds one hook's measured cost (from `t0` to now) into the average; one-off slow hooks
    /// (a first sight that looked up names) move it little.
    fn sample_cost(&self, gvl: Gvl, t0: u64) {
        let cost = self.clock.now().saturating_sub(t0);
        self.with(gvl, |st| {
            st.hook_ns = if st.hook_ns == 0 {
                cost
            } else {
                (st.hook_ns * 15 + cost.min(st.hook_ns * 2)) / 16
            };
        });
    }
}

/// Sends the names a record is about to use, if not sent yet (a name that does not fit is
/// tried again next time).
fn announce(ring: &ByteRing, st: &mut HookState, ti: usize, method: u32) {
    let Some(th) = st.threads.get_mut(ti) else {
        return;
    };
    if !th.announced {
        th.announced = ring.push(events::thread_len(&th.name), |b| {
            events::write_thread(b, th.id, th.tid, &th.name)
        });
    }
    if let Some(label) = st.labels.get_mut(method as usize) {
        if !label.announced {
            label.announced = ring.push(events::method_len(&label.text), |b| {
                events::write_method(b, method, &label.text)
            });
        }
    }
}

/// `Foo#bar`, `Foo.bar` (a module's singleton method), `#<Class:...>#bar` otherwise.
pub fn method_label(gvl: Gvl, klass: VALUE, mid: VALUE) -> String {
    let name = ffi::symbol_name(gvl, mid).unwrap_or_else(|| "?".into());
    if klass == 0 || klass == ffi::NIL {
        return name;
    }
    if ffi::is_singleton_class(gvl, klass) {
        let attached = ffi::attached_object(gvl, klass);
        if matches!(
            ffi::type_of(gvl, attached),
            ruby_value_type::RUBY_T_CLASS | ruby_value_type::RUBY_T_MODULE
        ) {
            return format!("{}.{name}", ffi::class_path(gvl, attached));
        }
    }
    format!("{}#{name}", ffi::class_path(gvl, klass))
}

/// The current thread's name and OS thread id, read without calling Ruby (a hook that calls
/// Ruby may lose the GVL): the OS thread name, which Ruby sets from `Thread#name` (cut to 15
/// bytes), `main` for the main thread.
fn thread_facts(_gvl: Gvl, thread: VALUE) -> (String, i32) {
    // SAFETY: GVL held; returns the main Thread.
    let main = unsafe { rb_sys::rb_thread_main() } == thread;
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    if main {
        return ("main".into(), tid);
    }
    let mut buf = [0u8; 32];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer given.
    let rc = unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            buf.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(buf.get(..end).unwrap_or(&[])).into_owned()
    } else {
        String::new()
    };
    (name, tid)
}
