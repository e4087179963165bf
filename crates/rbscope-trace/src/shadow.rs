//! What a trace session's hooks remember between events: the threads seen, each thread's
//! shadow stack of open calls, the method ids and their labels, and what the session keeps
//! alive. Plain data driven by the hooks (through [`crate::session::Session`]), so the timing
//! rules can be tested with made-up clock readings.
//!
//! Timings: a record's time is the clock when its hook was entered (one clock read per event).
//! Each thread's shadow stack remembers, per open call, when it began and how many hooks had
//! run on that thread so far; a return reports the elapsed time minus the tracer's time inside
//! the call: the number of hooks that ran in between times their measured average cost (every
//! 64th hook reads the clock again on its way out to keep that average current, see
//! [`HookState::fold_cost`]), plus the measured time of captured values. Returns whose call
//! was not seen (the trace began inside them) are not reported, so the stream is balanced per
//! thread. Calls deeper than [`MAX_STACK`] are counted, not timed.
//!
//! Threads, classes and method names are opaque [`Key`]s here (the agent passes Ruby VALUEs).

use crate::events;
use crate::ring::ByteRing;
use rustc_hash::FxHashMap;

/// An opaque word naming a thread, class or method name (the agent's Ruby VALUEs).
pub type Key = std::ffi::c_ulong;

/// Deeper calls are counted but not timed (their returns are matched by the count).
pub const MAX_STACK: usize = 10_000;
/// Method ids for firehose labels; past this, new methods are not traced (and counted).
pub const MAX_METHODS: usize = 200_000;
/// Threads remembered at once (see [`HookState::thread_index`]).
pub const MAX_THREADS: usize = 1024;
/// A method id meaning "do not trace" (the agent's own wrappers).
const IGNORED: u32 = u32::MAX;
/// Every this many hooks on a thread, one measures its own cost.
const SAMPLE_EVERY: u64 = 64;

struct Open {
    method: u32,
    start: u64,
    /// The thread's hook count and extra tracer time when the call began.
    hooks: u64,
    extra: u64,
}

struct ThreadEntry {
    key: Key,
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

/// What a firehose lookup found for a (class, method name) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Traced under this id.
    Known(u32),
    /// Seen before and not traced (its owner is ignored).
    NotTraced,
    /// Not seen yet, and no room to name it ([`MAX_METHODS`]).
    Full,
    /// Not seen yet: name it (unless `ignored`) and [`HookState::add_method`].
    New { ignored: bool },
}

#[derive(Default)]
pub struct HookState {
    threads: Vec<ThreadEntry>,
    last_thread: usize,
    methods: FxHashMap<(Key, Key), u32>,
    labels: Vec<Label>,
    /// Threads whose calls are never traced (the agent's own).
    ignore_threads: Vec<Key>,
    /// Modules whose methods the firehose skips (rbscope's C-method wrappers).
    ignored_owners: Vec<Key>,
    /// The average cost of one hook, in nanoseconds (sampled).
    hook_ns: u64,
    /// The last thread id given out.
    next_thread: u32,
    /// The last firehose lookup: (class, method) and its id.
    last_method: (Key, Key, u32),
    /// Objects the session keeps alive (classes named by method keys, threads, tracepoints,
    /// filters), so their addresses cannot be reused while it lives.
    marks: Vec<Key>,
}

impl HookState {
    /// Keeps `v` alive (and its address unique) while the session lives.
    pub fn keep(&mut self, v: Key) {
        self.marks.push(v);
    }

    /// Calls on `thread` are never traced.
    pub fn ignore_thread(&mut self, thread: Key) {
        self.ignore_threads.push(thread);
    }

    /// The firehose skips methods of `module` (kept alive too).
    pub fn ignore_owner(&mut self, module: Key) {
        self.ignored_owners.push(module);
        self.marks.push(module);
    }

    /// Calls `mark` on every object the session keeps (for the GC's mark function).
    pub fn each_kept(&self, mut mark: impl FnMut(Key)) {
        self.marks.iter().for_each(|v| mark(*v));
        self.threads.iter().for_each(|t| mark(t.key));
    }

    /// A new method id with this label (for a hooked method).
    pub fn register_method(&mut self, label: String) -> u32 {
        self.labels.push(Label {
            text: label,
            announced: false,
        });
        (self.labels.len() - 1) as u32
    }

    /// The firehose's id for method `mid` defined in `klass`, if it has been seen.
    #[inline]
    pub fn lookup_method(&mut self, klass: Key, mid: Key) -> Lookup {
        let (k, m, id) = self.last_method;
        let id = if k == klass && m == mid {
            id
        } else if let Some(id) = self.methods.get(&(klass, mid)).copied() {
            self.last_method = (klass, mid, id);
            id
        } else if self.labels.len() >= MAX_METHODS {
            return Lookup::Full;
        } else {
            return Lookup::New {
                ignored: self.ignored_owners.contains(&klass),
            };
        };
        if id == IGNORED {
            Lookup::NotTraced
        } else {
            Lookup::Known(id)
        }
    }

    /// Remembers the firehose method `mid` of `klass` under `label` (None: not traced);
    /// `keep_class` keeps `klass` alive while the session lives. Its id, if traced.
    pub fn add_method(
        &mut self,
        klass: Key,
        mid: Key,
        label: Option<String>,
        keep_class: bool,
    ) -> Option<u32> {
        let id = match label {
            Some(text) => self.register_method(text),
            None => IGNORED,
        };
        self.methods.insert((klass, mid), id);
        if keep_class {
            self.marks.push(klass);
        }
        (id != IGNORED).then_some(id)
    }

    /// The index of the running thread `cur` in the table, adding it on first sight with the
    /// name and OS thread id `facts` gives; None when its calls are not traced.
    #[inline]
    pub fn thread_index(
        &mut self,
        cur: Key,
        facts: impl FnOnce() -> (String, i32),
    ) -> Option<usize> {
        let i = if self
            .threads
            .get(self.last_thread)
            .is_some_and(|t| t.key == cur)
        {
            self.last_thread
        } else if let Some(i) = self.threads.iter().position(|t| t.key == cur) {
            i
        } else {
            self.add_thread(cur, facts)
        };
        self.last_thread = i;
        self.threads.get(i).is_some_and(|t| !t.ignored).then_some(i)
    }

    fn add_thread(&mut self, cur: Key, facts: impl FnOnce() -> (String, i32)) -> usize {
        let (name, tid) = facts();
        let ignored = self.ignore_threads.contains(&cur) || name.starts_with("rbscope-");
        if self.threads.len() >= MAX_THREADS {
            // An app that makes a thread per job: forget threads that are not inside a traced
            // call (one that comes back gets a new id), so the table, and the dead Thread
            // objects it keeps, stay bounded.
            self.threads
                .retain(|t| !t.stack.is_empty() || t.overflow > 0);
        }
        self.next_thread += 1;
        self.threads.push(ThreadEntry {
            key: cur,
            id: self.next_thread,
            name,
            tid,
            announced: false,
            ignored,
            hooks: 0,
            extra: 0,
            stack: Vec::new(),
            overflow: 0,
        });
        self.threads.len() - 1
    }

    /// A call of `method` began on thread `ti`; `t0` is when the hook was entered, `extra` the
    /// tracer time already spent on it beyond an ordinary hook (reading captured values). The
    /// call record goes to `ring` unless `slow` (only slow returns are reported then). True
    /// when this hook should measure its own cost ([`HookState::fold_cost`]).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &mut self,
        ring: &ByteRing,
        ti: usize,
        method: u32,
        t0: u64,
        values: &[(&str, &str)],
        extra: u64,
        slow: bool,
    ) -> bool {
        self.announce(ring, ti, method);
        let Some(th) = self.threads.get_mut(ti) else {
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
        th.hooks % SAMPLE_EVERY == 0
    }

    /// A call of `method` ended on thread `ti`; `t0` is when the hook was entered. Reports a
    /// return record, or with `slow` a slow record when the call took at least that long. True
    /// when this hook should measure its own cost.
    #[inline]
    pub fn ret(
        &mut self,
        ring: &ByteRing,
        ti: usize,
        method: u32,
        t0: u64,
        slow: Option<u64>,
    ) -> bool {
        let hook_ns = self.hook_ns;
        let Some(th) = self.threads.get_mut(ti) else {
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
        th.hooks % SAMPLE_EVERY == 0
    }

    /// Folds one hook's measured `cost` into the average; one-off slow hooks (a first sight
    /// that looked up names) move it little.
    pub fn fold_cost(&mut self, cost: u64) {
        self.hook_ns = if self.hook_ns == 0 {
            cost
        } else {
            (self.hook_ns * 15 + cost.min(self.hook_ns * 2)) / 16
        };
    }

    /// Sends the names a record is about to use, if not sent yet (a name that does not fit is
    /// tried again next time).
    #[inline]
    fn announce(&mut self, ring: &ByteRing, ti: usize, method: u32) {
        let Some(th) = self.threads.get_mut(ti) else {
            return;
        };
        if !th.announced {
            th.announced = ring.push(events::thread_len(&th.name), |b| {
                events::write_thread(b, th.id, th.tid, &th.name)
            });
        }
        if let Some(label) = self.labels.get_mut(method as usize) {
            if !label.announced {
                label.announced = ring.push(events::method_len(&label.text), |b| {
                    events::write_method(b, method, &label.text)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Reader};

    fn ring() -> ByteRing {
        ByteRing::new(64 * 1024).unwrap()
    }

    /// Every record in the ring, as owned text-free tuples for comparison.
    fn drained(ring: &ByteRing) -> Vec<String> {
        let mut buf = Vec::new();
        ring.drain_into(&mut buf);
        Reader::new(&buf)
            .map(|e| format!("{:?}", e.unwrap()))
            .collect()
    }

    fn main_thread() -> (String, i32) {
        ("main".into(), 42)
    }

    #[test]
    fn a_call_and_its_return_are_timed_from_the_hooks_clock_readings() {
        let ring = ring();
        let mut st = HookState::default();
        let m = st.register_method("Foo#bar".into());
        let ti = st.thread_index(7, main_thread).unwrap();
        assert!(!st.call(&ring, ti, m, 1_000, &[], 0, false));
        assert!(!st.ret(&ring, ti, m, 1_600, None));
        let call = Event::Call {
            thread: 1,
            method: m,
            t: 1_000,
            values: vec![],
        };
        let ret = Event::Return {
            thread: 1,
            method: m,
            t: 1_600,
            duration: 600,
        };
        let thread = Event::Thread {
            id: 1,
            tid: 42,
            name: "main",
        };
        let method = Event::Method {
            id: m,
            label: "Foo#bar",
        };
        assert_eq!(
            drained(&ring),
            [thread, method, call, ret].map(|e| format!("{e:?}"))
        );
    }

    #[test]
    fn the_tracers_own_time_inside_a_call_is_taken_off() {
        let ring = ring();
        let mut st = HookState::default();
        st.fold_cost(10);
        let outer = st.register_method("Outer#run".into());
        let inner = st.register_method("Inner#run".into());
        let ti = st.thread_index(7, main_thread).unwrap();
        st.call(&ring, ti, outer, 0, &[], 0, false);
        // Captured values took 50 ns of the inner call's hook.
        st.call(&ring, ti, inner, 100, &[("arg", "1")], 50, false);
        st.ret(&ring, ti, inner, 300, None);
        st.ret(&ring, ti, outer, 1_000, None);
        let returns: Vec<(u32, u64)> = {
            let mut buf = Vec::new();
            ring.drain_into(&mut buf);
            Reader::new(&buf)
                .filter_map(|e| match e.unwrap() {
                    Event::Return {
                        method, duration, ..
                    } => Some((method, duration)),
                    _ => None,
                })
                .collect()
        };
        // Inner: 200 ns less its own call hook (10 ns) and the 50 ns its values took. Outer:
        // 1000 ns less three hooks (its own call, inner's call and return) and those 50 ns.
        assert_eq!(returns, vec![(inner, 140), (outer, 1_000 - 30 - 50)]);
    }

    #[test]
    fn a_return_closes_the_newest_open_call_of_its_method_and_unseen_returns_are_dropped() {
        let ring = ring();
        let mut st = HookState::default();
        let a = st.register_method("A#a".into());
        let b = st.register_method("B#b".into());
        let c = st.register_method("C#c".into());
        let ti = st.thread_index(7, main_thread).unwrap();
        // The trace began inside C#c: its return is not reported.
        st.ret(&ring, ti, c, 5, None);
        st.call(&ring, ti, a, 10, &[], 0, false);
        st.call(&ring, ti, b, 20, &[], 0, false);
        // A#a returns while B#b is open (B's return hook did not run): B is dropped with it.
        st.ret(&ring, ti, a, 50, None);
        st.ret(&ring, ti, b, 60, None);
        let mut buf = Vec::new();
        ring.drain_into(&mut buf);
        let returns: Vec<(u32, u64)> = Reader::new(&buf)
            .filter_map(|e| match e.unwrap() {
                Event::Return { method, t, .. } => Some((method, t)),
                _ => None,
            })
            .collect();
        assert_eq!(returns, vec![(a, 50)]);
    }

    #[test]
    fn calls_past_the_depth_cap_are_counted_and_their_returns_matched() {
        let ring = ByteRing::new(4 * 1024 * 1024).unwrap();
        let mut st = HookState::default();
        let m = st.register_method("Deep#down".into());
        let ti = st.thread_index(7, main_thread).unwrap();
        for i in 0..MAX_STACK as u64 + 5 {
            st.call(&ring, ti, m, i, &[], 0, false);
        }
        let calls = MAX_STACK as u64 + 5;
        for i in 0..calls {
            st.ret(&ring, ti, m, calls + i, None);
        }
        let mut buf = Vec::new();
        ring.drain_into(&mut buf);
        let (mut c, mut r) = (0, 0);
        let mut first_return = None;
        for e in Reader::new(&buf) {
            match e.unwrap() {
                Event::Call { .. } => c += 1,
                Event::Return { t, duration, .. } => {
                    r += 1;
                    first_return.get_or_insert((t, duration));
                }
                _ => {}
            }
        }
        assert_eq!((c, r), (MAX_STACK, MAX_STACK));
        // The first five returns matched the uncounted calls; the sixth closes the deepest
        // pushed call (begun at MAX_STACK - 1).
        let t = calls + 5;
        assert_eq!(first_return, Some((t, t - (MAX_STACK as u64 - 1))));
    }

    #[test]
    fn slow_mode_reports_only_calls_over_the_threshold_with_their_depth() {
        let ring = ring();
        let mut st = HookState::default();
        let outer = st.register_method("Outer#run".into());
        let fast = st.register_method("Fast#run".into());
        let ti = st.thread_index(7, main_thread).unwrap();
        st.call(&ring, ti, outer, 0, &[], 0, true);
        st.call(&ring, ti, fast, 10, &[], 0, true);
        st.ret(&ring, ti, fast, 20, Some(500));
        st.ret(&ring, ti, outer, 1_000, Some(500));
        let mut buf = Vec::new();
        ring.drain_into(&mut buf);
        let records: Vec<String> = Reader::new(&buf)
            .map(|e| e.unwrap())
            .filter(|e| !matches!(e, Event::Thread { .. } | Event::Method { .. }))
            .map(|e| format!("{e:?}"))
            .collect();
        let slow = Event::Slow {
            thread: 1,
            method: outer,
            depth: 0,
            start: 0,
            duration: 1_000,
        };
        assert_eq!(records, vec![format!("{slow:?}")]);
    }

    #[test]
    fn every_64th_hook_of_a_thread_samples_its_cost_and_the_average_moves_slowly() {
        let ring = ring();
        let mut st = HookState::default();
        let m = st.register_method("M#m".into());
        let ti = st.thread_index(7, main_thread).unwrap();
        let sampled: Vec<u64> = (0..128u64)
            .filter(|i| {
                if i % 2 == 0 {
                    st.call(&ring, ti, m, *i, &[], 0, false)
                } else {
                    st.ret(&ring, ti, m, *i, None)
                }
            })
            .collect();
        assert_eq!(sampled, vec![63, 127]);
        st.fold_cost(100);
        assert_eq!(st.hook_ns, 100);
        // An outlier counts as twice the average at most.
        st.fold_cost(10_000);
        assert_eq!(st.hook_ns, (100 * 15 + 200) / 16);
    }

    #[test]
    fn threads_get_ids_on_first_sight_and_the_agents_own_are_not_traced() {
        let mut st = HookState::default();
        st.ignore_thread(9);
        let named = std::cell::Cell::new(0);
        let facts = |name: &'static str| {
            let named = &named;
            move || {
                named.set(named.get() + 1);
                (name.to_string(), 1)
            }
        };
        assert_eq!(st.thread_index(7, facts("main")), Some(0));
        assert_eq!(st.thread_index(7, facts("main")), Some(0));
        assert_eq!(st.thread_index(8, facts("rbscope-agent")), None);
        assert_eq!(st.thread_index(9, facts("worker")), None);
        assert_eq!(st.thread_index(10, facts("worker")), Some(3));
        assert_eq!(st.thread_index(7, facts("main")), Some(0));
        // Each thread was named once, on first sight.
        assert_eq!(named.get(), 4);
        let mut marked = Vec::new();
        st.each_kept(|k| marked.push(k));
        assert_eq!(marked, vec![7, 8, 9, 10]);
    }

    #[test]
    fn a_full_thread_table_forgets_threads_outside_traced_calls() {
        let ring = ring();
        let mut st = HookState::default();
        let m = st.register_method("M#m".into());
        let busy = st.thread_index(1, main_thread).unwrap();
        st.call(&ring, busy, m, 0, &[], 0, false);
        for k in 2..=MAX_THREADS as Key {
            st.thread_index(k, main_thread);
        }
        assert_eq!(st.threads.len(), MAX_THREADS);
        let new = st.thread_index(5_000, main_thread).unwrap();
        // The busy thread and the new one are left, under new ids for newcomers.
        assert_eq!(st.threads.len(), 2);
        assert_eq!(new, 1);
        assert_eq!(st.thread_index(1, main_thread), Some(0));
        assert_eq!(st.threads[1].id, MAX_THREADS as u32 + 1);
    }

    #[test]
    fn firehose_methods_are_looked_up_named_once_and_ignored_owners_skipped() {
        let mut st = HookState::default();
        st.ignore_owner(100);
        assert_eq!(st.lookup_method(1, 2), Lookup::New { ignored: false });
        let id = st.add_method(1, 2, Some("Foo#bar".into()), true).unwrap();
        assert_eq!(st.lookup_method(1, 2), Lookup::Known(id));
        assert_eq!(st.lookup_method(100, 2), Lookup::New { ignored: true });
        assert_eq!(st.add_method(100, 2, None, false), None);
        assert_eq!(st.lookup_method(100, 2), Lookup::NotTraced);
        // The one-entry cache and the map agree.
        assert_eq!(st.lookup_method(1, 2), Lookup::Known(id));
        let mut marked = Vec::new();
        st.each_kept(|k| marked.push(k));
        assert_eq!(marked, vec![100, 1]);
    }

    #[test]
    fn no_new_method_is_named_past_the_cap() {
        let mut st = HookState::default();
        for i in 0..MAX_METHODS {
            st.register_method(format!("M{i}#m"));
        }
        assert_eq!(st.lookup_method(1, 2), Lookup::Full);
    }
}
