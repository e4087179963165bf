//! Facts about the process that the OS gives (no Ruby): its host name, its id (cached, and
//! renewed in a forked child), glibc's malloc figures, thread ids, and the words and numbers
//! of `rbscope stacks` and `rbscope memory` derived from what Ruby said.

use super::failures::{self, Feature};
use rbscope_snapshot::{Take, TakeMember};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The machine's host name ("unknown" when it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(buf.get(..end).unwrap_or(&[])).into_owned()
}

/// glibc's malloc figures (`mallinfo2`, process-wide); empty elsewhere.
pub fn malloc_figures() -> Vec<(String, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and only reads the allocator's statistics
        // (under malloc's own locks).
        let m = unsafe { libc::mallinfo2() };
        vec![
            ("arena_bytes".into(), m.arena as u64),
            ("in_use_bytes".into(), m.uordblks as u64),
            ("free_bytes".into(), m.fordblks as u64),
            ("mmapped_bytes".into(), m.hblkhd as u64),
            ("mmapped_blocks".into(), m.hblks as u64),
            ("releasable_bytes".into(), m.keepcost as u64),
        ]
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        Vec::new()
    }
}

/// The heap page size from `GC::INTERNAL_CONSTANTS`: `HEAP_PAGE_SIZE`, or before Ruby had it,
/// `HEAP_PAGE_OBJ_LIMIT * RVALUE_SIZE` (0 when neither is there).
pub fn heap_page_bytes(constants: &[(String, i64)]) -> u64 {
    let constant = |name: &str| constants.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    constant("HEAP_PAGE_SIZE")
        .or_else(|| Some(constant("HEAP_PAGE_OBJ_LIMIT")? * constant("RVALUE_SIZE")?))
        .unwrap_or(0)
        .max(0) as u64
}

/// Ruby 3.1 does not update `native_thread_id` after `fork`: in a forked child (a puma
/// worker) the main thread still reports the parent's thread id. A tid that is not a thread of
/// this process is that stale one; the thread that forked (the child's main thread) has the
/// process id as its thread id.
pub fn own_tid(tid: i32, main: bool) -> i32 {
    if !main || std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
        return tid;
    }
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// `Thread#status` in the words `rbscope stacks` uses for threads read from outside.
pub fn thread_status(status: Option<&str>) -> &'static str {
    match status {
        Some("run") => "running",
        Some("sleep") => "sleeping",
        Some("aborting") => "aborting",
        _ => "dead",
    }
}

/// This process's id without a system call per check (getpid is not cached by glibc): a
/// child learns its new id from the fork handler.
pub fn process_id() -> u32 {
    let cached = PID.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    if !ATFORK.swap(true, Ordering::AcqRel) {
        // SAFETY: registering a child handler that only stores to an atomic (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
    }
    pid
}

static PID: AtomicU32 = AtomicU32::new(0);
static ATFORK: AtomicBool = AtomicBool::new(false);

extern "C" fn forget_pid() {
    failures::run(Feature::Fork, "the fork handler", (), || {
        PID.store(0, Ordering::Relaxed)
    })
}

/// A Ruby thread as a live snapshot request picks it: its name, OS thread id, main or not.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadFacts {
    pub name: Option<String>,
    pub tid: Option<i32>,
    pub main: bool,
}

impl ThreadFacts {
    /// How a list or a message names the thread: `worker-1 (tid 4242)`.
    pub fn describe(&self) -> String {
        let name = match (&self.name, self.main) {
            (Some(n), _) => n.clone(),
            (None, true) => "main".into(),
            (None, false) => "(unnamed)".into(),
        };
        match self.tid {
            Some(t) => format!("{name} (tid {t})"),
            None => name,
        }
    }
}

/// The indices of the threads a request names: each of `wanted` (a thread's name, or its OS
/// thread id in decimal), every thread with `all`, the main thread when neither is given.
/// A name that matches no thread is an error naming the threads there are.
pub fn select_threads(
    threads: &[ThreadFacts],
    wanted: &[String],
    all: bool,
) -> Result<Vec<usize>, String> {
    if all {
        return Ok((0..threads.len()).collect());
    }
    if wanted.is_empty() {
        return match threads.iter().position(|t| t.main) {
            Some(i) => Ok(vec![i]),
            None => Err("the main thread is not there; name threads with --thread".into()),
        };
    }
    let mut out: Vec<usize> = Vec::new();
    for w in wanted {
        let by_tid = w.parse::<i32>().ok();
        let found = threads.iter().position(|t| {
            t.name.as_deref() == Some(w.as_str())
                || (t.main && w == "main")
                || (by_tid.is_some() && t.tid == by_tid)
        });
        match found {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => {}
            None => {
                let there: Vec<String> = threads.iter().map(ThreadFacts::describe).collect();
                return Err(format!(
                    "no thread named or with tid {w:?}; the threads are: {} (see `rbscope \
                     stacks -p PID`)",
                    there.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// The take of the threads `chosen` (indices into `threads`) when a request names more than one:
/// each thread with the id its snapshot will be given (`new_id` makes one, in the order of
/// `chosen`), under the take's own id (the first `new_id` gives). None for a single thread.
pub fn take_of(
    threads: &[ThreadFacts],
    chosen: &[usize],
    mut new_id: impl FnMut() -> String,
) -> Option<Take> {
    if chosen.len() < 2 {
        return None;
    }
    let id = new_id();
    let members = chosen
        .iter()
        .filter_map(|i| threads.get(*i))
        .map(|t| TakeMember {
            id: new_id(),
            name: t.name.clone(),
            tid: t.tid,
            main: t.main,
        })
        .collect();
    Some(Take { id, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_id_is_cached_and_a_forked_child_learns_its_own() {
        assert_eq!(process_id(), std::process::id());
        assert_eq!(process_id(), std::process::id());
        // SAFETY: the child only compares two numbers and leaves with _exit.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            let own = process_id() == std::process::id();
            // SAFETY: leaves the forked child at once, running nothing of the test harness.
            unsafe { libc::_exit(if own { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    #[test]
    fn hostname_is_the_kernels() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname(), kernel.trim());
    }

    #[test]
    fn malloc_figures_are_named() {
        let names: Vec<String> = malloc_figures().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names.len(), 6);
        assert_eq!(names.first().map(String::as_str), Some("arena_bytes"));
        assert!(names.iter().any(|n| n == "releasable_bytes"));
    }

    #[test]
    fn page_size_from_either_constant() {
        let c = |pairs: &[(&str, i64)]| -> Vec<(String, i64)> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        assert_eq!(heap_page_bytes(&c(&[("HEAP_PAGE_SIZE", 65536)])), 65536);
        let old = c(&[("HEAP_PAGE_OBJ_LIMIT", 409), ("RVALUE_SIZE", 40)]);
        assert_eq!(heap_page_bytes(&old), 16360);
        assert_eq!(heap_page_bytes(&c(&[("RVALUE_SIZE", 40)])), 0);
        assert_eq!(heap_page_bytes(&c(&[("HEAP_PAGE_SIZE", -1)])), 0);
    }

    #[test]
    fn stale_main_thread_ids_become_the_pid() {
        // SAFETY: gettid/getpid have no preconditions.
        let (tid, pid) = unsafe { (libc::gettid(), libc::getpid()) };
        assert_eq!(own_tid(tid, true), tid);
        assert_eq!(own_tid(i32::MAX, false), i32::MAX);
        assert_eq!(own_tid(i32::MAX, true), pid);
    }

    #[test]
    fn status_words() {
        assert_eq!(thread_status(Some("run")), "running");
        assert_eq!(thread_status(Some("sleep")), "sleeping");
        assert_eq!(thread_status(Some("aborting")), "aborting");
        assert_eq!(thread_status(None), "dead");
        assert_eq!(thread_status(Some("false")), "dead");
    }

    fn t(name: Option<&str>, tid: Option<i32>, main: bool) -> ThreadFacts {
        ThreadFacts {
            name: name.map(String::from),
            tid,
            main,
        }
    }

    #[test]
    fn threads_are_picked_by_name_tid_all_or_main() {
        let threads = [
            t(None, Some(100), true),
            t(Some("worker-1"), Some(101), false),
            t(Some("worker-2"), None, false),
        ];
        let w = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(select_threads(&threads, &[], false), Ok(vec![0]));
        assert_eq!(
            select_threads(&threads, &w(&["x"]), true),
            Ok(vec![0, 1, 2])
        );
        assert_eq!(
            select_threads(
                &threads,
                &w(&["worker-2", "101", "main", "worker-2"]),
                false
            ),
            Ok(vec![2, 1, 0])
        );
        let err = select_threads(&threads, &w(&["worker-9"]), false).unwrap_err();
        assert_eq!(
            err,
            "no thread named or with tid \"worker-9\"; the threads are: main (tid 100), \
             worker-1 (tid 101), worker-2 (see `rbscope stacks -p PID`)"
        );
        assert!(select_threads(&threads[1..], &[], false).is_err());
    }

    #[test]
    fn several_threads_make_a_take_with_an_id_each_and_one_thread_none() {
        let threads = [
            t(None, Some(100), true),
            t(Some("worker-1"), Some(101), false),
            t(Some("worker-2"), None, false),
        ];
        let mut n = 0;
        let mut ids = || {
            n += 1;
            format!("id{n}")
        };
        assert_eq!(take_of(&threads, &[1], &mut ids), None);
        let take = take_of(&threads, &[2, 0], &mut ids).unwrap();
        assert_eq!(take.id, "id1");
        let got: Vec<(String, String)> = take
            .members
            .iter()
            .map(|m| (m.id.clone(), m.describe()))
            .collect();
        assert_eq!(
            got,
            [
                ("id2".to_string(), "worker-2".to_string()),
                ("id3".to_string(), "main (tid 100)".to_string())
            ]
        );
        assert!(take.members.get(1).is_some_and(|m| m.main && m.is("100")));
    }
}
