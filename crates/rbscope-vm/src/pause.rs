//! Pausing a process while its stacks are read.
//!
//! A running Ruby thread moves its control frames under the reader; reading it paused gives a
//! consistent picture. [`Pause::all_threads`] stops every thread of the process with
//! `PTRACE_SEIZE` + `PTRACE_INTERRUPT` (no signal is delivered to the program, and nothing
//! changes for it except time) and lets them all go on drop with `PTRACE_DETACH`. The pause
//! is kept as short as possible: threads are seized first, while still running, and only
//! then interrupted, so the stopped window covers only the interrupts, the reads and the
//! detaches. [`Pause::held_for`] tells how long it was.

use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PauseError {
    #[error("no process {0}")]
    NoProcess(i32),
    #[error("not permitted to trace process {pid}: {detail}")]
    Denied { pid: i32, detail: String },
    #[error("could not pause process {pid}: {detail}")]
    Other { pid: i32, detail: String },
}

/// Every thread of a process, stopped until this is dropped.
pub struct Pause {
    tids: Vec<i32>,
    stopped_at: Instant,
}

fn tasks(pid: i32) -> std::io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(tid);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Pause {
    pub fn all_threads(pid: i32) -> Result<Pause, PauseError> {
        let mut seized: Vec<i32> = Vec::new();
        let mut pause = Pause {
            tids: Vec::new(),
            stopped_at: Instant::now(),
        };
        // Seize until the task list stops growing (a thread may start while we seize).
        loop {
            let now = tasks(pid).map_err(|_| PauseError::NoProcess(pid))?;
            let new: Vec<i32> = now.into_iter().filter(|t| !seized.contains(t)).collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                // SAFETY: plain syscall with integer arguments; no memory is passed.
                let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) };
                if r != 0 {
                    match errno() {
                        // The thread exited between listing and seizing.
                        libc::ESRCH => continue,
                        libc::EPERM | libc::EACCES => {
                            drop(pause);
                            return Err(PauseError::Denied {
                                pid,
                                detail: std::io::Error::from_raw_os_error(libc::EPERM).to_string(),
                            });
                        }
                        e => {
                            drop(pause);
                            return Err(PauseError::Other {
                                pid,
                                detail: std::io::Error::from_raw_os_error(e).to_string(),
                            });
                        }
                    }
                }
                seized.push(tid);
                pause.tids.push(tid);
            }
        }
        if seized.is_empty() {
            return Err(PauseError::NoProcess(pid));
        }
        pause.stopped_at = Instant::now();
        for &tid in &seized {
            // SAFETY: as above.
            unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) };
        }
        for &tid in &seized {
            let mut status = 0;
            // SAFETY: `status` is a valid, writable int for the call's duration.
            unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        }
        Ok(pause)
    }

    /// How long the threads have been stopped so far.
    pub fn held_for(&self) -> Duration {
        self.stopped_at.elapsed()
    }

    /// Lets the threads go and says how long they were stopped: from the first interrupt to
    /// the last thread let go.
    pub fn release(mut self) -> Duration {
        self.detach_all();
        self.held_for()
    }

    fn detach_all(&mut self) {
        for tid in self.tids.drain(..) {
            // SAFETY: plain syscall with integer arguments. Detaching a thread that already
            // exited fails with ESRCH, which is fine.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
        }
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// What `/proc/sys/kernel/yama/ptrace_scope` says, for error messages.
pub fn ptrace_scope() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
}
