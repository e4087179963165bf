//! Making a running Ruby process load code it never asked for, at a safe point of its VM.
//!
//! Running Ruby at an arbitrary instruction (what `gdb -p PID -ex 'call rb_require(...)'`
//! does) can corrupt the VM: the thread may be in the middle of the GC, of a hash update, of
//! malloc. Ruby has one entry point made for being called at any instant: the postponed job
//! registration, which only queues a function (it is what profilers call from signal
//! handlers). So:
//!
//! 1. the main thread alone is stopped with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`; its general
//!    and floating-point registers are saved;
//! 2. it is made to call libc's `syscall(SYS_mmap, ...)` for private pages (a system call:
//!    safe at any instant), into which the Ruby code to run is written;
//! 3. it is made to call `rb_postponed_job_register_one(0, rb_eval_string, page)`, which queues
//!    the job and sets the main thread's interrupt flag. On 3.1 and 3.2 it appends to a
//!    preallocated buffer with atomic operations; on 3.3+ it is `rb_postponed_job_preregister`
//!    (a compare-and-swap into a fixed table: its documented race is only between concurrent
//!    registrations of one function with different data, and nothing else registers
//!    `rb_eval_string`) then `rb_postponed_job_trigger` (an atomic OR and the interrupt flag of
//!    the calling thread's execution context, the main thread's). No lock, no allocation;
//! 4. its registers are restored exactly (an interrupted system call is restarted by the kernel
//!    as if nothing happened) and it is let go;
//! 5. it is woken if it is blocked (see [`Wake`]), so that it checks its interrupts now rather
//!    than whenever its sleep, read or queue wait ends. Ruby then runs the job at its next safe
//!    point, and carries on with the time or data that remain: `sleep` loops until its deadline
//!    (`sleep_hrtime`'s `SLEEP_SPURIOUS_CHECK`), `Queue#pop` and `Thread#join` loop until their
//!    condition holds, a read is retried. The app cannot tell.
//!
//! Each call returns to address 0; the fault stops the thread under ptrace, the result is read
//! from `rax`, and the fault is never delivered. A signal meant for the app that arrives while
//! a thread runs our call is held and sent again to that thread once its registers are back.
//! Termination signals to rbscope itself are blocked meanwhile, so that a Ctrl-C cannot leave
//! a thread of the app returning to address 0. Only x86-64 Linux.
//!
//! # Waking a blocked main thread
//!
//! * Ruby 3.1 and 3.2 ([`Wake::Signal`]): the main thread's sleeps and waits are `ppoll`s
//!   (on the signal wait fd, or `native_ppoll_sleep`), and its reads are system calls; Ruby's
//!   handler for SIGVTALRM does nothing, so one SIGVTALRM makes the call return EINTR, and Ruby
//!   checks interrupts and resumes. This is what Ruby's own unblocking function for I/O does.
//! * Ruby 3.3+ ([`Wake::Unblock`]): a `sleep N` of a thread with a dedicated native thread is
//!   `native_cond_sleep`, a `pthread_cond_timedwait` on `th->nt->cond.intr`; `sleep` forever,
//!   `Queue#pop` and `Thread#join` wait in `thread_sched_to_waiting_until_wakeup`. glibc retries
//!   a condition variable's futex wait after EINTR, so no signal wakes them. What does is what
//!   Ruby itself does to interrupt a thread (`rb_threadptr_interrupt`, not exported): take
//!   `th->interrupt_lock`, and, the interrupt flag being set, call `th->unblock.func(arg)` (
//!   `ubf_pthread_cond_signal`, `ubf_waiting`, `ubf_select` for I/O, or an extension's own),
//!   then unlock. rbscope does exactly that, with the exported `rb_native_mutex_lock`/`unlock`
//!   and the offsets of `interrupt_lock` and `unblock` in `rb_thread_t` (from the bindgen
//!   layouts of `rbspy-ruby-structs`), as three calls made on a *second* thread of the process,
//!   after the main thread is running again.
//!
//! That second thread is Ruby's timer thread (created at boot by `Init_Thread`, before any
//! other, so the earliest-started thread after the main one), taken only while it is blocked in
//! `epoll_wait` as seen in its registers once it is stopped (`orig_rax`); otherwise it is let
//! go untouched and tried again a moment later. Ruby calls `epoll_wait` only there; a thread of
//! an extension found waiting in it instead holds none of Ruby's internal locks either (they
//! are not reachable from extensions), which is all the calls below need.
//!
//! Why this cannot corrupt or deadlock the app:
//!
//! * the timer thread calls `epoll_wait` from `timer_thread_polling` holding no lock at all, and
//!   Ruby itself runs this very sequence on that thread (`timer_thread_check_signal` →
//!   `rb_threadptr_check_signal` → `threadptr_trap_interrupt` on the main thread, whenever the
//!   app receives a trapped signal): the same locks in the same order (`interrupt_lock`, then
//!   whatever the unblocking function takes: the scheduler lock, `ubf_list_lock`, the ractor
//!   scheduler lock), from the same thread and state;
//! * while our calls run, every other thread runs: a lock they hold is released, so our
//!   `rb_native_mutex_lock` returns. Should it not within 2 s, the thread is stopped again;
//!   blocked in the lock's futex wait it does not own the lock, so its registers are put back
//!   and nothing changed (the job runs when the main thread next checks interrupts);
//! * between the lock and the unlock the timer thread, holding `interrupt_lock`, is stopped for
//!   our round trips through ptrace (the whole wake stops it 0.2 to 9 ms in bench/inject.rb on
//!   a loaded 2-core machine); the main thread may wait for the lock that long, as it may while
//!   Ruby delivers a signal. rbscope always makes the unlock call, whatever happened in
//!   between;
//! * the main thread's own flag was set by itself (step 3), so any blocking wait it starts
//!   afterwards sees it under `interrupt_lock` and does not block (the protocol that makes
//!   `rb_threadptr_interrupt` race-free): only a wait already in progress needs waking, and
//!   such a wait has `th->unblock.func` set until it ends. If it reads as unset once the main
//!   thread runs again, nothing is done; otherwise it is read again under the lock;
//! * `rb_thread_wakeup` is not used: it would end the sleep early. An unblocking function only
//!   makes the wait return to Ruby's loop, which checks interrupts and waits for what remains.
//!   An extension's own unblocking function sees what it sees when the app receives a trapped
//!   signal.
//!
//! Run here on 3.1 (Debian), 3.2, 3.3, 3.4 and 4.0, with and without YJIT, with the main thread
//! computing, in `sleep N`, `sleep`, `Queue#pop`, `Thread#join` and a pipe read
//! (crates/rbscope/tests/inject.rs).

use std::time::{Duration, Instant};
use thiserror::Error;

use crate::memory::Memory;
use crate::target::Target;

#[derive(Debug, Error)]
pub enum InjectError {
    #[error("no process {0}")]
    NoProcess(i32),
    #[error("not permitted to trace process {pid}: {detail}")]
    Denied { pid: i32, detail: String },
    #[error("{0}")]
    Missing(String),
    #[error("injecting into process {pid} failed: {detail}")]
    Failed { pid: i32, detail: String },
    #[error("process {pid}'s main thread is blocked, and no thread of the process was waiting in epoll_wait (Ruby's timer thread) to wake it from: the agent will load when the main thread next wakes; or try again")]
    NoWaker { pid: i32 },
    #[error("process {pid}'s main thread kept its interrupt lock for {ms} ms, so it was not woken: the agent will load when the main thread next wakes; or try again")]
    LockBusy { pid: i32, ms: u128 },
}

/// Addresses in the target, found by the caller from its mapped files.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// libc's `syscall`.
    pub syscall: u64,
    /// libruby's `rb_postponed_job_register_one`.
    pub register_one: u64,
    /// libruby's `rb_eval_string` (the job: `VALUE rb_eval_string(const char *)`).
    pub eval_string: u64,
    /// libruby's `rb_native_mutex_lock` and `rb_native_mutex_unlock` (3.3+ waking).
    pub mutex_lock: Option<u64>,
    pub mutex_unlock: Option<u64>,
}

/// How the main thread is woken once the job is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Ruby 3.1, 3.2: SIGVTALRM to the main thread, if the process handles it.
    Signal,
    /// Ruby 3.3+: the main thread's unblocking function, called under its `interrupt_lock`
    /// from Ruby's timer thread. Addresses in the target.
    Unblock {
        /// `&th->interrupt_lock` of the main `rb_thread_t`.
        interrupt_lock: u64,
        /// `&th->unblock` (`func`, then `arg`).
        unblock: u64,
    },
}

/// What happened.
#[derive(Debug, Clone, Copy)]
pub struct Injected {
    /// How long the main thread was stopped.
    pub paused: Duration,
    /// Whether the main thread was woken from a blocking call.
    pub woken: bool,
    /// The thread whose calls woke it (3.3+) and how long that thread was stopped.
    pub waker: Option<(i32, Duration)>,
}

/// Offsets of `interrupt_lock` and `unblock` in `rb_thread_t`, for the releases that need
/// [`Wake::Unblock`].
struct InterruptOffsets {
    version: &'static str,
    interrupt_lock: usize,
    unblock: usize,
}

macro_rules! interrupt_offsets {
    ($($module:ident => $version:literal),* $(,)?) => {
        const INTERRUPT_OFFSETS: &[InterruptOffsets] = &[$(InterruptOffsets {
            version: $version,
            interrupt_lock: std::mem::offset_of!(
                rbspy_ruby_structs::$module::rb_thread_struct,
                interrupt_lock
            ),
            unblock: std::mem::offset_of!(rbspy_ruby_structs::$module::rb_thread_struct, unblock),
        },)*];
    };
}

interrupt_offsets! {
    ruby_3_3_0 => "3.3.0", ruby_3_3_1 => "3.3.1", ruby_3_3_2 => "3.3.2", ruby_3_3_3 => "3.3.3",
    ruby_3_3_4 => "3.3.4", ruby_3_3_5 => "3.3.5", ruby_3_3_6 => "3.3.6", ruby_3_3_7 => "3.3.7",
    ruby_3_3_8 => "3.3.8", ruby_3_3_9 => "3.3.9", ruby_3_3_10 => "3.3.10", ruby_3_3_11 => "3.3.11",
    ruby_3_3_12 => "3.3.12", ruby_3_3_13 => "3.3.13",
    ruby_3_4_0 => "3.4.0", ruby_3_4_1 => "3.4.1", ruby_3_4_2 => "3.4.2", ruby_3_4_3 => "3.4.3",
    ruby_3_4_4 => "3.4.4", ruby_3_4_5 => "3.4.5", ruby_3_4_6 => "3.4.6", ruby_3_4_7 => "3.4.7",
    ruby_3_4_8 => "3.4.8", ruby_3_4_9 => "3.4.9", ruby_3_4_10 => "3.4.10", ruby_3_4_11 => "3.4.11",
    ruby_3_4_12 => "3.4.12",
    ruby_4_0_0 => "4.0.0", ruby_4_0_1 => "4.0.1", ruby_4_0_2 => "4.0.2", ruby_4_0_3 => "4.0.3",
    ruby_4_0_4 => "4.0.4", ruby_4_0_5 => "4.0.5", ruby_4_0_6 => "4.0.6", ruby_4_0_7 => "4.0.7",
    ruby_4_0_8 => "4.0.8", ruby_4_0_9 => "4.0.9",
}

/// Whether `version` ("X.Y.Z") is 3.3 or later: the releases whose main thread waits on a
/// condition variable.
fn needs_unblock(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (3, 3)
}

/// How to wake the main thread of the process `target` describes (`mem` reads that process).
pub fn wake_for<M: Memory>(target: &Target, mem: &M) -> Result<Wake, InjectError> {
    if !needs_unblock(&target.version) {
        return Ok(Wake::Signal);
    }
    let offsets = INTERRUPT_OFFSETS
        .iter()
        .find(|o| o.version == target.version)
        .ok_or_else(|| {
            InjectError::Missing(format!(
                "rbscope inject does not know Ruby {}'s thread layout: use an rbscope built for it, or start the app with rbscope run",
                target.version
            ))
        })?;
    let unreadable = |e: String| {
        InjectError::Missing(format!(
            "cannot find the main thread of the Ruby VM ({e}); the process may still be starting: try again"
        ))
    };
    let vm = target.vm(mem).map_err(|e| unreadable(e.to_string()))?;
    let thread = mem
        .read_word(vm + target.layout.vm_main_thread)
        .map_err(|e| unreadable(e.to_string()))?;
    if thread == 0 {
        return Err(unreadable("vm->ractor.main_thread is empty".into()));
    }
    Ok(Wake::Unblock {
        interrupt_lock: (thread + offsets.interrupt_lock) as u64,
        unblock: (thread + offsets.unblock) as u64,
    })
}

/// Finds libc's `syscall` and libruby's entry points in the target's mapped files (read as the
/// process sees them, through /proc/PID/root).
pub fn find_entry(pid: i32) -> Result<Entry, InjectError> {
    use crate::elf::ElfImage;
    use crate::target::parse_maps_line;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|_| InjectError::NoProcess(pid))?;
    let mappings: Vec<_> = maps.lines().filter_map(parse_maps_line).collect();
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    let mut found: [Option<u64>; 5] = [None; 5];
    let names = [
        "syscall",
        "rb_postponed_job_register_one",
        "rb_eval_string",
        "rb_native_mutex_lock",
        "rb_native_mutex_unlock",
    ];
    let mut seen: Vec<&str> = Vec::new();
    for m in &mappings {
        if seen.contains(&m.path.as_str()) {
            continue;
        }
        seen.push(&m.path);
        let file = std::path::Path::new(&m.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !(file.starts_with("libc.so")
            || file.starts_with("libc-")
            || file.starts_with("libruby")
            || file == "ruby")
        {
            continue;
        }
        let inside = root.join(m.path.trim_start_matches('/'));
        let Ok(image) =
            ElfImage::read(&inside).or_else(|_| ElfImage::read(std::path::Path::new(&m.path)))
        else {
            continue;
        };
        let Some(first) = mappings
            .iter()
            .filter(|x| x.path == m.path)
            .min_by_key(|x| x.start)
        else {
            continue;
        };
        let Some(bias) = image.bias(first.start, first.offset) else {
            continue;
        };
        for (slot, name) in found.iter_mut().zip(names) {
            if slot.is_none() {
                *slot = image.symbol(name).map(|a| a + bias as u64);
            }
        }
    }
    match found {
        [Some(syscall), Some(register_one), Some(eval_string), mutex_lock, mutex_unlock] => {
            Ok(Entry {
                syscall,
                register_one,
                eval_string,
                mutex_lock,
                mutex_unlock,
            })
        }
        _ => Err(InjectError::Missing(format!(
            "process {pid} does not map the functions injection needs (libc's syscall, libruby's rb_postponed_job_register_one and rb_eval_string): is it a Ruby linked with a shared libruby and glibc?"
        ))),
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn fail(pid: i32, what: &str) -> InjectError {
    InjectError::Failed {
        pid,
        detail: format!("{what}: {}", std::io::Error::last_os_error()),
    }
}

/// Blocks the signals that would end rbscope (Ctrl-C, `kill`, a closed terminal) on this
/// thread while it has a thread of the target running our calls; they are delivered when it
/// is dropped.
struct QuietSignals(libc::sigset_t);

impl QuietSignals {
    fn new() -> QuietSignals {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `old` is filled by pthread_sigmask.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: pointers to our own sets, valid for each call.
        unsafe {
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        }
        QuietSignals(old)
    }
}

impl Drop for QuietSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`, a valid set.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// The largest code [`inject`] writes into the target.
pub const MAX_CODE: usize = 1 << 20;

/// Stops the main thread of `pid`, queues `code` (Ruby, NUL-free) to be run by the VM at its
/// next safe point, lets the thread go, and wakes it as `wake` says.
pub fn inject(pid: i32, entry: Entry, wake: Wake, code: &str) -> Result<Injected, InjectError> {
    if code.as_bytes().contains(&0) || code.len() >= MAX_CODE {
        return Err(InjectError::Missing(format!(
            "the code to inject is not a C string under {} KiB",
            MAX_CODE / 1024
        )));
    }
    // Whole pages, the NUL included. They stay mapped in the target (Ruby copies the string
    // when the job runs, at a moment we do not see): a few dozen KiB, once per injection.
    let len = (code.len() + 1).div_ceil(4096) as u64 * 4096;
    let _quiet = QuietSignals::new();
    let tid = pid;
    let (result, paused) = with_thread_stopped(pid, tid, |saved, held| {
        let page = call(
            pid,
            tid,
            saved,
            entry.syscall,
            &[libc::SYS_mmap as u64, 0, len, 3, 0x22, u64::MAX, 0],
            held,
            Finish::GiveUpAfter5s,
        )?;
        if page == 0 || page > u64::MAX - len {
            return Err(InjectError::Failed {
                pid,
                detail: "mmap in the target failed".into(),
            });
        }
        let mut bytes = code.as_bytes().to_vec();
        bytes.push(0);
        write_memory(pid, page, &bytes)?;
        let queued = call(
            pid,
            tid,
            saved,
            entry.register_one,
            &[0, entry.eval_string, page],
            held,
            Finish::GiveUpAfter5s,
        )?;
        if queued as u32 == 0 {
            return Err(InjectError::Failed {
                pid,
                detail: "Ruby's postponed job queue is full; try again".into(),
            });
        }
        Ok(())
    })
    .map_err(|e| match e {
        libc::ESRCH => InjectError::NoProcess(pid),
        e => InjectError::Denied {
            pid,
            detail: std::io::Error::from_raw_os_error(e).to_string(),
        },
    })?;
    result?;
    match wake {
        Wake::Signal => {
            let woken = catches_sigvtalrm(pid);
            if woken {
                // SAFETY: a signal to a thread of the target, which handles it (checked above).
                unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGVTALRM) };
            }
            Ok(Injected {
                paused,
                woken,
                waker: None,
            })
        }
        Wake::Unblock {
            interrupt_lock,
            unblock,
        } => {
            let waker = unblock_main(pid, entry, interrupt_lock, unblock)?;
            Ok(Injected {
                paused,
                woken: waker.is_some(),
                waker,
            })
        }
    }
}

/// Whether the process has a handler for SIGVTALRM (`SigCgt` in /proc/PID/status).
pub fn catches_sigvtalrm(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << (libc::SIGVTALRM - 1)) != 0)
}

/// The system calls in which Ruby's timer thread waits holding no lock (`timer_thread_polling`
/// → `event_wait` → `epoll_wait`; glibc may use the `p` variants). Ruby calls `epoll_wait`
/// nowhere else. `poll` is not accepted, although the timer thread uses it where there is no
/// epoll (not on Linux): Ruby's threads call `poll` too (`fd_readable_nonblock` of the M:N
/// scheduler, `IO#wait`), and which locks they hold there is not something to rely on.
const SAFE_WAITS: [i64; 3] = [
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
];

/// The threads of `pid` other than the main one that /proc shows waiting in one of
/// [`SAFE_WAITS`], earliest started first (Ruby's timer thread is created at boot).
fn waiting_threads(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, i32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&tid| tid != pid)
        .filter_map(|tid| {
            let base = format!("/proc/{pid}/task/{tid}");
            let nr: i64 = std::fs::read_to_string(format!("{base}/syscall"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            if !SAFE_WAITS.contains(&nr) {
                return None;
            }
            // Field 22, starttime; the name (field 2) may hold spaces and parentheses.
            let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 1..];
            let start: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
            Some((start, tid))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, tid)| tid).collect()
}

fn read_word(pid: i32, addr: u64) -> Result<u64, InjectError> {
    let mut word = [0u8; 8];
    let local = libc::iovec {
        iov_base: word.as_mut_ptr() as *mut libc::c_void,
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: writes our 8-byte buffer only; reads the target's memory.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n != 8 {
        return Err(fail(pid, "reading the target's memory"));
    }
    Ok(u64::from_le_bytes(word))
}

/// How long `rb_native_mutex_lock(&th->interrupt_lock)` may wait before we back off.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// Wakes the main thread if it is blocked: see the module docs. Returns the thread whose calls
/// woke it and how long that thread was stopped, or None if the main thread was not blocked.
fn unblock_main(
    pid: i32,
    entry: Entry,
    interrupt_lock: u64,
    unblock: u64,
) -> Result<Option<(i32, Duration)>, InjectError> {
    let (Some(lock), Some(unlock)) = (entry.mutex_lock, entry.mutex_unlock) else {
        return Err(InjectError::Missing(format!(
            "process {pid}'s libruby does not export rb_native_mutex_lock and rb_native_mutex_unlock, which waking its main thread needs: start the app with rbscope run"
        )));
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        // Not blocked (any more): its own interrupt flag stops it from blocking again.
        if read_word(pid, unblock)? == 0 {
            return Ok(None);
        }
        for tid in waiting_threads(pid) {
            if let Some(stopped) = unblock_from(pid, tid, lock, unlock, interrupt_lock, unblock)? {
                return Ok(Some((tid, stopped)));
            }
        }
        if Instant::now() > deadline {
            return Err(InjectError::NoWaker { pid });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Does what `rb_threadptr_interrupt` does to the main thread, on thread `tid` if it is
/// stopped inside one of [`SAFE_WAITS`]. Returns how long `tid` was stopped, or None if it was
/// elsewhere (then it is let go untouched).
fn unblock_from(
    pid: i32,
    tid: i32,
    lock: u64,
    unlock: u64,
    interrupt_lock: u64,
    unblock: u64,
) -> Result<Option<Duration>, InjectError> {
    let stopped = with_thread_stopped(pid, tid, |saved, held| {
        // `orig_rax` is the system call the thread is in (-1 when stopped in user code).
        if !SAFE_WAITS.contains(&(saved.orig_rax as i64)) {
            return Ok(false);
        }
        call(
            pid,
            tid,
            saved,
            lock,
            &[interrupt_lock],
            held,
            Finish::Lock(LOCK_PATIENCE),
        )?;
        // Locked: from here the unlock is always made.
        let unblocked = (|| {
            let func = read_word(pid, unblock)?;
            let arg = read_word(pid, unblock + 8)?;
            if func != 0 {
                call(pid, tid, saved, func, &[arg], held, Finish::Always)?;
            }
            Ok(())
        })();
        let unlocked = call(
            pid,
            tid,
            saved,
            unlock,
            &[interrupt_lock],
            held,
            Finish::Always,
        );
        unblocked.and(unlocked.map(|_| ())).map(|()| true)
    });
    match stopped {
        Ok((result, held_for)) => Ok(result?.then_some(held_for)),
        // The thread ended meanwhile.
        Err(libc::ESRCH) => Ok(None),
        Err(e) => Err(InjectError::Denied {
            pid,
            detail: std::io::Error::from_raw_os_error(e).to_string(),
        }),
    }
}

/// Seizes and stops thread `tid` of `pid`, runs `work` with the thread's registers as they
/// were and the signals held back from it, puts every register back whatever `work` did, lets
/// the thread go and sends it the signals it was sent meanwhile. `Err(errno)` when the thread
/// cannot be seized; else what `work` (and putting back) gave, and how long the thread was
/// held.
fn with_thread_stopped<T>(
    pid: i32,
    tid: i32,
    work: impl FnOnce(&libc::user_regs_struct, &mut Vec<i32>) -> Result<T, InjectError>,
) -> Result<(Result<T, InjectError>, Duration), i32> {
    // SAFETY: plain syscalls on a thread of the target; no memory of ours is lent.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) } != 0 {
        return Err(errno());
    }
    let started = Instant::now();
    let mut held: Vec<i32> = Vec::new();
    let result = (|| {
        // SAFETY: as above.
        if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) } != 0 {
            return Err(fail(pid, "PTRACE_INTERRUPT"));
        }
        wait_stop(pid, tid)?;
        let saved = get_regs(pid, tid)?;
        let saved_fp = get_fpregs(pid, tid)?;
        let outcome = work(&saved, &mut held);
        // Back exactly as it was, whatever happened.
        set_fpregs(pid, tid, &saved_fp)?;
        set_regs(pid, tid, &saved)?;
        outcome
    })();
    // SAFETY: detaching our own tracee; signal 0: nothing is delivered.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
    let held_for = started.elapsed();
    for sig in held {
        // SAFETY: the app's own signal, sent again to the thread it was meant for.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
    }
    Ok((result, held_for))
}

/// When a call made on a thread of the target may be given up (its registers then put back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// If it keeps being stopped by signals for 5 s (a system call, a lock-free function:
    /// abandoning them half-way leaves nothing held).
    GiveUpAfter5s,
    /// A lock: if it has not returned after this long, the thread is stopped; waiting in a
    /// futex (before the lock is owned) it is given up with [`InjectError::LockBusy`].
    Lock(Duration),
    /// Never: it runs while a lock is held, which must be released.
    Always,
}

fn wait_stop(pid: i32, tid: i32) -> Result<i32, InjectError> {
    Ok(wait_stop_until(pid, tid, None)?.unwrap_or(0))
}

/// Waits for `tid` to stop, until `until` if given (then None if it is still running).
fn wait_stop_until(pid: i32, tid: i32, until: Option<Instant>) -> Result<Option<i32>, InjectError> {
    let mut status = 0;
    let flags = libc::__WALL | if until.is_some() { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: `status` is a valid int for the call.
        let r = unsafe { libc::waitpid(tid, &mut status, flags) };
        if r == tid {
            break;
        }
        if r == 0 {
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        if errno() != libc::EINTR {
            return Err(fail(pid, "waitpid"));
        }
    }
    if !libc::WIFSTOPPED(status) {
        return Err(InjectError::Failed {
            pid,
            detail: "the thread ended while stopped".into(),
        });
    }
    Ok(Some(libc::WSTOPSIG(status)))
}
fn get_regs(pid: i32, tid: i32) -> Result<libc::user_regs_struct, InjectError> {
    // SAFETY: user_regs_struct is plain data; PTRACE_GETREGS fills it.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to our own struct for the call's duration.
    if unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs as *mut _) } != 0 {
        return Err(fail(pid, "PTRACE_GETREGS"));
    }
    Ok(regs)
}

fn set_regs(pid: i32, tid: i32, regs: &libc::user_regs_struct) -> Result<(), InjectError> {
    // SAFETY: the kernel reads our struct.
    if unsafe { libc::ptrace(libc::PTRACE_SETREGS, tid, 0, regs as *const _) } != 0 {
        return Err(fail(pid, "PTRACE_SETREGS"));
    }
    Ok(())
}

fn get_fpregs(pid: i32, tid: i32) -> Result<libc::user_fpregs_struct, InjectError> {
    // SAFETY: plain data filled by the kernel.
    let mut fp: libc::user_fpregs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: our struct, for the call's duration.
    if unsafe { libc::ptrace(libc::PTRACE_GETFPREGS, tid, 0, &mut fp as *mut _) } != 0 {
        return Err(fail(pid, "PTRACE_GETFPREGS"));
    }
    Ok(fp)
}

fn set_fpregs(pid: i32, tid: i32, fp: &libc::user_fpregs_struct) -> Result<(), InjectError> {
    // SAFETY: the kernel reads our struct.
    if unsafe { libc::ptrace(libc::PTRACE_SETFPREGS, tid, 0, fp as *const _) } != 0 {
        return Err(fail(pid, "PTRACE_SETFPREGS"));
    }
    Ok(())
}

fn write_memory(pid: i32, addr: u64, bytes: &[u8]) -> Result<(), InjectError> {
    let local = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: reads our buffer, writes the target's page (mapped writable by our mmap call).
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if n != bytes.len() as isize {
        return Err(fail(pid, "writing the target's memory"));
    }
    Ok(())
}

/// Calls `func(args...)` on the stopped thread (System V ABI: six register arguments, a
/// seventh on the stack) and returns `rax`. The call returns to address 0; the fault stops it.
///
/// `how` says whether and when it may be given up (see [`Finish`]).
fn call(
    pid: i32,
    tid: i32,
    saved: &libc::user_regs_struct,
    func: u64,
    args: &[u64],
    held: &mut Vec<i32>,
    how: Finish,
) -> Result<u64, InjectError> {
    let patience = match how {
        Finish::Lock(p) => Some(p),
        _ => None,
    };
    let mut regs = *saved;
    // Below the red zone, 16-byte aligned, then the return address (0) and the 7th argument.
    let mut sp = (saved.rsp - 4096) & !0xf;
    sp -= 16;
    let frame: [u64; 2] = [0, args.get(6).copied().unwrap_or(0)];
    let frame_bytes: Vec<u8> = frame.iter().flat_map(|w| w.to_le_bytes()).collect();
    write_memory(pid, sp, &frame_bytes)?;
    let reg_args = [
        &mut regs.rdi,
        &mut regs.rsi,
        &mut regs.rdx,
        &mut regs.rcx,
        &mut regs.r8,
        &mut regs.r9,
    ];
    for (slot, value) in reg_args.into_iter().zip(args.iter()) {
        *slot = *value;
    }
    regs.rsp = sp;
    regs.rip = func;
    regs.rax = 0;
    // Not a system call to restart: the kernel must leave rip and rax alone.
    regs.orig_rax = u64::MAX;
    set_regs(pid, tid, &regs)?;
    // SAFETY: resumes our tracee without a signal.
    if unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0, 0) } != 0 {
        return Err(fail(pid, "PTRACE_CONT"));
    }
    let began = Instant::now();
    let deadline = began + Duration::from_secs(5);
    let mut give_up_at = patience.map(|p| began + p);
    let mut interrupted = false;
    loop {
        let sig = match wait_stop_until(pid, tid, give_up_at)? {
            Some(sig) => sig,
            None => {
                // Still running: stop it to look where it is.
                // SAFETY: interrupting our own tracee.
                if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) } != 0 {
                    return Err(fail(pid, "PTRACE_INTERRUPT"));
                }
                give_up_at = None;
                interrupted = true;
                continue;
            }
        };
        let now = get_regs(pid, tid)?;
        if sig == libc::SIGSEGV && now.rip == 0 {
            return Ok(now.rax);
        }
        if interrupted && sig == libc::SIGTRAP {
            interrupted = false;
            if now.orig_rax as i64 == libc::SYS_futex {
                return Err(InjectError::LockBusy {
                    pid,
                    ms: began.elapsed().as_millis(),
                });
            }
            // Between two waits: look again a moment later.
            give_up_at = patience.map(|_| Instant::now() + Duration::from_millis(10));
        }
        if how == Finish::GiveUpAfter5s && Instant::now() > deadline {
            return Err(InjectError::Failed {
                pid,
                detail: format!("the injected call did not return (stopped by signal {sig})"),
            });
        }
        if sig == libc::SIGSEGV || sig == libc::SIGBUS || sig == libc::SIGILL {
            return Err(InjectError::Failed {
                pid,
                detail: format!("the injected call faulted (signal {sig} at {:#x})", now.rip),
            });
        }
        // A signal for the app arriving meanwhile: held back now, sent again once the thread
        // is back where it was (SIGTRAP/SIGSTOP here are ptrace's own stops, not the app's).
        if sig != libc::SIGTRAP && sig != libc::SIGSTOP && !held.contains(&sig) {
            held.push(sig);
        }
        // SAFETY: resume, delivering nothing now.
        unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(version: &str) -> (usize, usize) {
        let o = INTERRUPT_OFFSETS
            .iter()
            .find(|o| o.version == version)
            .unwrap();
        (o.interrupt_lock, o.unblock)
    }

    #[test]
    fn interrupt_offsets_match_the_built_rubies() {
        // What gdb reads from the debug info of the libruby builds used by the inject tests:
        // `p &((struct rb_thread_struct *)0)->interrupt_lock` and `->unblock`.
        assert_eq!(offsets("3.3.10"), (288, 328));
        assert_eq!(offsets("3.4.9"), (288, 328));
        assert_eq!(offsets("4.0.2"), (296, 336));
        // A pthread mutex (40 bytes) then the callback, in every release.
        for o in INTERRUPT_OFFSETS {
            assert_eq!(o.unblock - o.interrupt_lock, 40, "{}", o.version);
        }
    }

    #[test]
    fn only_3_3_and_later_are_woken_by_their_unblocking_function() {
        assert!(!needs_unblock("3.1.2"));
        assert!(!needs_unblock("3.2.9"));
        assert!(needs_unblock("3.3.0"));
        assert!(needs_unblock("3.4.9"));
        assert!(needs_unblock("4.0.2"));
    }
}
