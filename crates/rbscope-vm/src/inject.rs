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
//! 2. it is made to call libc's `syscall(SYS_mmap, ...)` for one private page (a system call:
//!    safe at any instant), into which the Ruby code to run is written;
//! 3. it is made to call `rb_postponed_job_register_one(0, rb_eval_string, page)`, which queues
//!    the job and sets the thread's interrupt flag;
//! 4. its registers are restored exactly (an interrupted system call is restarted by the kernel
//!    as if nothing happened) and it is let go;
//! 5. a thread blocked in a system call (sleep, a pipe read, a queue) would only see the job when
//!    it wakes; it is sent SIGVTALRM, the signal Ruby itself uses to interrupt blocking calls
//!    (its handler does nothing; the call returns EINTR and Ruby, after checking interrupts,
//!    carries on with the time or data that remain), so the app cannot tell.
//!
//! Each call returns to address 0; the fault stops the thread under ptrace, the result is read
//! from `rax`, and the fault is never delivered. Only x86-64 Linux.
//!
//! On Ruby 3.3+ `rb_postponed_job_register_one` still exists (deprecated, it preregisters then
//! triggers); preregistering is not async-signal-safe, so there the design is to preregister
//! from a point known to be safe (a stopped thread inside `rb_thread_call_without_gvl`'s
//! blocking region) and trigger with `rb_postponed_job_trigger`, which is. Only 3.1 is run here.

use std::time::{Duration, Instant};
use thiserror::Error;

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
}

/// What happened.
#[derive(Debug, Clone, Copy)]
pub struct Injected {
    /// How long the main thread was stopped.
    pub paused: Duration,
    /// Whether SIGVTALRM was sent to wake it.
    pub woken: bool,
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
    let mut found: [Option<u64>; 3] = [None; 3];
    let names = ["syscall", "rb_postponed_job_register_one", "rb_eval_string"];
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
        [Some(syscall), Some(register_one), Some(eval_string)] => Ok(Entry {
            syscall,
            register_one,
            eval_string,
        }),
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

/// Stops the main thread of `pid`, queues `code` (Ruby, NUL-free) to be run by the VM at its
/// next safe point, lets the thread go, and wakes it if Ruby handles SIGVTALRM.
pub fn inject(pid: i32, entry: Entry, code: &str) -> Result<Injected, InjectError> {
    if code.as_bytes().contains(&0) || code.len() >= 4000 {
        return Err(InjectError::Missing(
            "the code to inject is not a short C string".into(),
        ));
    }
    let tid = pid;
    // SAFETY: plain syscalls on another process's thread; no memory of ours is lent.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) } != 0 {
        return Err(match errno() {
            libc::ESRCH => InjectError::NoProcess(pid),
            e => InjectError::Denied {
                pid,
                detail: std::io::Error::from_raw_os_error(e).to_string(),
            },
        });
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
        let outcome = (|| {
            let page = call(
                pid,
                tid,
                &saved,
                entry.syscall,
                &[libc::SYS_mmap as u64, 0, 4096, 3, 0x22, u64::MAX, 0],
                &mut held,
            )?;
            if page == 0 || page > u64::MAX - 4096 {
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
                &saved,
                entry.register_one,
                &[0, entry.eval_string, page],
                &mut held,
            )?;
            if queued as u32 == 0 {
                return Err(InjectError::Failed {
                    pid,
                    detail: "Ruby's postponed job queue is full; try again".into(),
                });
            }
            Ok(())
        })();
        // Back exactly as it was, whatever happened.
        set_fpregs(pid, tid, &saved_fp)?;
        set_regs(pid, tid, &saved)?;
        outcome
    })();
    // SAFETY: detaching our own tracee; signal 0: nothing is delivered.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
    let paused = started.elapsed();
    for sig in held {
        // SAFETY: the app's own signal, sent again to the thread it was meant for.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
    }
    result?;
    let woken = catches_sigvtalrm(pid);
    if woken {
        // SAFETY: a signal to a thread of the target, which handles it (checked above).
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGVTALRM) };
    }
    Ok(Injected { paused, woken })
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

fn wait_stop(pid: i32, tid: i32) -> Result<i32, InjectError> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for the call.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r == tid {
            break;
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
    Ok(libc::WSTOPSIG(status))
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
fn call(
    pid: i32,
    tid: i32,
    saved: &libc::user_regs_struct,
    func: u64,
    args: &[u64],
    held: &mut Vec<i32>,
) -> Result<u64, InjectError> {
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
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sig = wait_stop(pid, tid)?;
        let now = get_regs(pid, tid)?;
        if sig == libc::SIGSEGV && now.rip == 0 {
            return Ok(now.rax);
        }
        if Instant::now() > deadline {
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
