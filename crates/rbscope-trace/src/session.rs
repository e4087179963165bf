//! One client's trace: its event ring and clock, the flags its connection thread and its hooks
//! share, and the hooks' own state ([`HookState`]).
//!
//! The hooks run on the app's threads, serialized by the VM (Ruby's GVL), and their state is
//! only touched through this type's `unsafe` methods, whose callers promise that
//! serialization: no lock or atomic is taken per event. The ring and the flags are what the
//! connection thread (the drain) touches, from any thread.

use crate::clock::Clock;
use crate::events;
use crate::ring::ByteRing;
use crate::shadow::{HookState, Key, Lookup};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

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
    /// Some selectors wait for their code to be loaded (the connection thread asks for them
    /// to be tried again).
    pub waiting: AtomicBool,
    /// Records the ring dropped over the session (the client did not keep up).
    pub lost: AtomicU64,
    /// Ring bytes the connection thread has written to the client so far.
    pub sent: AtomicUsize,
    state: UnsafeCell<HookState>,
}

// SAFETY: `state` is only reached through `Session`'s unsafe methods, whose callers serialize
// every access (the agent: under the GVL); the ring is built for one writer at a time and one
// reader on any thread, and the flags are atomics.
unsafe impl Sync for Session {}
// SAFETY: as above; a session owns everything in it.
unsafe impl Send for Session {}

impl Session {
    /// A session with a ring of `ring_bytes` bytes; None when its memory cannot be had.
    pub fn new(id: u64, ring_bytes: usize, slow_ns: Option<u64>) -> Option<Session> {
        Some(Session {
            id,
            clock: Clock::start(),
            ring: ByteRing::new(ring_bytes)?,
            closed: AtomicBool::new(false),
            slow_ns,
            unnamed: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            sent: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
            state: UnsafeCell::new(HookState::default()),
        })
    }

    #[inline]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Hooks stop writing at once (they are removed later, by the agent).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// At exit: stops the hooks, then waits until `deadline` at most for the connection thread
    /// to send what they wrote.
    pub fn close_and_drain(&self, deadline: std::time::Instant) {
        self.close();
        let written = self.ring.position();
        while self.sent.load(Ordering::Acquire) < written && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Puts a note for the person tracing into the event stream.
    pub fn note(&self, text: &str) {
        self.ring
            .push(events::note_len(text), |b| events::write_note(b, text));
    }

    /// Runs `f` on the hooks' state.
    ///
    /// # Safety
    /// Every call of this and the other `unsafe` methods of this session must be serialized
    /// (the agent holds the GVL), and `f` must not call any of them (nor call code that may).
    #[inline]
    pub unsafe fn with<R>(&self, f: impl FnOnce(&mut HookState) -> R) -> R {
        // SAFETY: the caller serializes all access and `f` cannot re-enter, so this is the only
        // reference to the state while it lives.
        f(unsafe { &mut *self.state.get() })
    }

    /// A call of `method` began on `thread` (first seen: named by `facts`); `t0` is when the
    /// hook was entered, `extra` the tracer time already spent on it (captured values).
    ///
    /// # Safety
    /// As for [`Session::with`]; `facts` runs inside it.
    #[inline]
    pub unsafe fn call(
        &self,
        thread: Key,
        facts: impl FnOnce() -> (String, i32),
        method: u32,
        t0: u64,
        values: &[(&str, &str)],
        extra: u64,
    ) {
        let slow = self.slow_ns.is_some();
        // SAFETY: the caller's promise, passed on.
        unsafe {
            self.with(|st| {
                let Some(ti) = st.thread_index(thread, facts) else {
                    return;
                };
                if st.call(&self.ring, ti, method, t0, values, extra, slow) {
                    st.fold_cost(self.clock.now().saturating_sub(t0));
                }
            })
        }
    }

    /// A call of `method` ended on `thread`; `t0` is when the hook was entered.
    ///
    /// # Safety
    /// As for [`Session::with`]; `facts` runs inside it.
    #[inline]
    pub unsafe fn ret(
        &self,
        thread: Key,
        facts: impl FnOnce() -> (String, i32),
        method: u32,
        t0: u64,
    ) {
        // SAFETY: the caller's promise, passed on.
        unsafe {
            self.with(|st| {
                let Some(ti) = st.thread_index(thread, facts) else {
                    return;
                };
                if st.ret(&self.ring, ti, method, t0, self.slow_ns) {
                    st.fold_cost(self.clock.now().saturating_sub(t0));
                }
            })
        }
    }

    /// The firehose's id for method `mid` defined in `klass`; on first sight `before_naming`
    /// runs, then `name` gives its label (unless its owner is ignored), outside any borrow of
    /// the state. None for methods not traced (and those past the cap, counted in `unnamed`).
    /// `keep_class`: `klass` is an object to keep alive while the session lives.
    ///
    /// # Safety
    /// As for [`Session::with`]; `before_naming` and `name` may re-enter the session (they run
    /// between borrows).
    #[inline]
    pub unsafe fn method_id(
        &self,
        klass: Key,
        mid: Key,
        keep_class: bool,
        before_naming: impl FnOnce(),
        name: impl FnOnce() -> String,
    ) -> Option<u32> {
        // SAFETY: the caller's promise, passed on.
        let ignored = match unsafe { self.with(|st| st.lookup_method(klass, mid)) } {
            Lookup::Known(id) => return Some(id),
            Lookup::NotTraced => return None,
            Lookup::Full => {
                self.unnamed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Lookup::New { ignored } => ignored,
        };
        before_naming();
        let label = (!ignored).then(name);
        // SAFETY: the caller's promise, passed on (no borrow was alive while naming).
        unsafe { self.with(|st| st.add_method(klass, mid, label, keep_class)) }
    }
}

/// The calling thread's name and OS thread id, read from the kernel without the VM: `main`
/// for the main thread, else the OS thread name (which Ruby sets from `Thread#name`, cut to
/// 15 bytes).
pub fn os_thread_facts(main: bool) -> (String, i32) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Reader};

    fn events(s: &Session) -> Vec<String> {
        let mut buf = Vec::new();
        s.ring.drain_into(&mut buf);
        Reader::new(&buf)
            .map(|e| format!("{:?}", e.unwrap()))
            .collect()
    }

    #[test]
    fn draining_waits_for_the_sender_until_the_deadline() {
        use std::time::{Duration, Instant};
        let s = Session::new(1, 64 * 1024, None).unwrap();
        s.note("unsent");
        let t = Instant::now();
        s.close_and_drain(t + Duration::from_millis(30));
        assert!(s.is_closed());
        assert!(t.elapsed() >= Duration::from_millis(30));
        s.sent.store(s.ring.position(), Ordering::Release);
        let t = Instant::now();
        s.close_and_drain(t + Duration::from_secs(60));
        assert!(t.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn the_firehose_names_a_method_once_outside_the_state() {
        let s = Session::new(1, 64 * 1024, None).unwrap();
        let mut named = 0;
        for _ in 0..3 {
            // SAFETY: one thread; the closures do not touch the session.
            let id = unsafe { s.method_id(10, 20, true, || named += 1, || "Foo#bar".to_string()) };
            assert_eq!(id, Some(0));
        }
        assert_eq!(named, 1);
        // SAFETY: as above.
        unsafe { s.with(|st| st.ignore_owner(11)) };
        // SAFETY: as above.
        let id = unsafe { s.method_id(11, 20, true, || {}, || unreachable!("ignored")) };
        assert_eq!(id, None);
        // Naming may re-enter the session (it calls Ruby, which may run other hooks).
        // SAFETY: one thread; `name` re-enters between borrows, as allowed.
        let id = unsafe {
            s.method_id(
                12,
                20,
                true,
                || {},
                || {
                    s.with(|st| st.keep(99));
                    "Baz#qux".into()
                },
            )
        };
        assert_eq!(id, Some(1));
        let mut kept = Vec::new();
        // SAFETY: as above.
        unsafe { s.with(|st| st.each_kept(|k| kept.push(k))) };
        // The ignored owner is kept twice (as ignored, and as a method key's class).
        assert_eq!(kept, vec![10, 11, 11, 99, 12]);
        assert_eq!(events(&s), Vec::<String>::new());
    }

    #[test]
    fn a_call_and_return_go_to_the_ring_with_the_threads_name() {
        let s = Session::new(1, 64 * 1024, None).unwrap();
        // SAFETY: one thread; the closures do not touch the session.
        unsafe {
            let m = s.with(|st| st.register_method("Foo#bar".into()));
            s.call(5, || ("main".into(), 1), m, 100, &[], 0);
            s.ret(5, || unreachable!("named already"), m, 150);
        }
        let ret = Event::Return {
            thread: 1,
            method: 0,
            t: 150,
            duration: 50,
        };
        let got = events(&s);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[3], format!("{ret:?}"));
    }

    #[test]
    fn a_closed_session_says_so_and_notes_reach_the_stream() {
        let s = Session::new(1, 64 * 1024, Some(5)).unwrap();
        assert!(!s.is_closed());
        s.note("now tracing Foo#bar");
        s.close();
        assert!(s.is_closed());
        let note = Event::Note {
            text: "now tracing Foo#bar",
        };
        assert_eq!(events(&s), vec![format!("{note:?}")]);
    }

    #[test]
    fn thread_facts_come_from_the_kernel() {
        let (main, tid) = os_thread_facts(true);
        assert_eq!(main, "main");
        // SAFETY: gettid has no preconditions.
        assert_eq!(tid, unsafe { libc::gettid() });
        let named = std::thread::Builder::new()
            .name("a-long-thread-name".into())
            .spawn(|| os_thread_facts(false).0)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(named, "a-long-thread-n");
    }
}
