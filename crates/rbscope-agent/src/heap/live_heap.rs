//! `rbscope heap dump | count | track -p PID` and `Rbscope.heap_dump` / `Rbscope.count_objects`.
//!
//! A dump is written by a forked child: the app's threads stop only for the `fork` itself (and
//! a GC when asked). The agent's Ruby thread, holding the GVL, opens the output file first (so
//! a bad path fails at once, in the app's view of the filesystem and as its user), forks, and
//! goes back to waiting for work. The child is a copy of the heap at that instant: it raises
//! its own `oom_score_adj` (under memory pressure the kernel kills it, not the app), blocks
//! signals, walks the heap (`heap_walk.rs`) into a temporary file next to the target, links it
//! to the final name only when complete, reports on a pipe and leaves with `_exit`: no at_exit
//! handler, finalizer or IO buffer of the app runs in it. The client's connection thread reads
//! the pipe and reaps the child.

use crate::ffi::{self, Gvl};
use crate::heap::heap_walk;
use rbscope_heap::walk::child::Report;
use rbscope_heap::walk::Written;
use rbscope_proto::{AgentMessage, HeapCensus, HeapDumpRequest, HeapDumpResult};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What the agent thread is asked to do.
pub enum Job {
    Dump(HeapDumpRequest),
    Count(Vec<String>),
    Track(bool),
}

/// The agent thread's answer: done, or a child still writing.
pub enum Outcome {
    Done(AgentMessage),
    Forked(Forked),
}

/// A dump being written by a child process.
pub struct Forked {
    pid: libc::pid_t,
    status: OwnedFd,
    path: PathBuf,
    partial: PathBuf,
    pause_us: u64,
    gc_us: u64,
    started: Instant,
}

/// Allocation tracing as this agent set it.
static TRACKING: AtomicBool = AtomicBool::new(false);

pub fn run(gvl: Gvl, job: Job) -> Outcome {
    match job {
        Job::Dump(req) => dump(gvl, &req),
        Job::Count(names) => Outcome::Done(count(gvl, &names)),
        Job::Track(on) => Outcome::Done(track(gvl, on)),
    }
}

fn error(msg: String) -> Outcome {
    Outcome::Done(AgentMessage::Error(msg))
}

/// Where the dump goes: the asked path (relative to the process's working directory) or a
/// new file in the agent's private directory.
fn target_path(req: &HeapDumpRequest) -> Result<PathBuf, String> {
    let ext = if req.gzip { "json.gz" } else { "json" };
    let path = match &req.path {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir()
                    .map_err(|e| format!("cannot resolve {}: {e}", p.display()))?
                    .join(p)
            }
        }
        _ => {
            // SAFETY: getuid never fails.
            let uid = unsafe { libc::getuid() };
            let dir = rbscope_proto::paths::runtime_dir(
                std::env::var("XDG_RUNTIME_DIR").ok().as_deref(),
                uid,
            );
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            dir.join(format!("heap-{}-{ms}.{ext}", std::process::id()))
        }
    };
    if path.exists() {
        return Err(format!(
            "{} already exists; a heap dump never overwrites a file: remove it or choose another path",
            path.display()
        ));
    }
    Ok(path)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".rbscope-partial-{}", std::process::id()));
    path.with_file_name(name)
}

fn dump(gvl: Gvl, req: &HeapDumpRequest) -> Outcome {
    let started = Instant::now();
    let path = match target_path(req) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let partial = partial_path(&path);
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&partial)
    {
        Ok(f) => f,
        Err(e) => {
            return error(format!(
                "cannot write the heap dump at {}: {e} (the path is the process's: as its user, relative to its working directory)",
                path.display()
            ))
        }
    };
    let mut gc_us = 0;
    if req.gc {
        let t = Instant::now();
        ffi::heap::gc_start(gvl);
        gc_us = t.elapsed().as_micros() as u64;
    }
    ffi::heap::prepare(gvl);
    if req.in_process {
        let t = Instant::now();
        let result = write_dump(gvl, file, &partial, &path, req.gzip, false);
        let pause_us = t.elapsed().as_micros() as u64 + gc_us;
        return Outcome::Done(match result {
            Ok(w) => AgentMessage::HeapDumped(HeapDumpResult {
                path: path.display().to_string(),
                objects: w.objects,
                roots: w.roots,
                bytes: w.bytes,
                pause_us,
                gc_us,
                total_us: started.elapsed().as_micros() as u64,
                forked: false,
                allocation_info: w.allocation_info,
            }),
            Err(e) => AgentMessage::Error(e),
        });
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let _ = std::fs::remove_file(&partial);
        return error(format!(
            "cannot make a pipe for the dump: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let t = Instant::now();
    // SAFETY: fork with the GVL held: the child continues as a copy with only this thread,
    // which holds the GVL there too; it runs no Ruby code and leaves with _exit.
    let pid = unsafe { libc::fork() };
    let pause_us = t.elapsed().as_micros() as u64 + gc_us;
    match pid {
        -1 => {
            let e = std::io::Error::last_os_error();
            drop(file);
            let _ = std::fs::remove_file(&partial);
            error(format!(
                "cannot fork to write the heap dump: {e}; `--in-process` writes it from the process itself (the app pauses for the whole dump)"
            ))
        }
        0 => {
            drop(read_end);
            child(gvl, file, write_end, &partial, &path, req.gzip)
        }
        child_pid => {
            drop(write_end);
            drop(file);
            Outcome::Forked(Forked {
                pid: child_pid,
                status: read_end,
                path,
                partial,
                pause_us,
                gc_us,
                started,
            })
        }
    }
}

/// What a finished write says.
struct Wrote {
    objects: u64,
    roots: u64,
    bytes: u64,
    allocation_info: bool,
}

/// Writes the heap into `file` (at `partial`) and gives it its final name; on any failure the
/// partial file is removed. GVL held. In the forked child (`forked`) an uncompressed dump is
/// written by a second thread while the walk goes on (`heap_writer`).
fn write_dump(
    gvl: Gvl,
    file: File,
    partial: &Path,
    path: &Path,
    gzip: bool,
    forked: bool,
) -> Result<Wrote, String> {
    let result = (|| -> std::io::Result<(Written, u64)> {
        let mut file = file;
        let written = if gzip {
            let mut gz = flate2::write::GzEncoder::new(&mut file, flate2::Compression::fast());
            let w = heap_walk::dump(gvl, &mut gz)?;
            gz.finish()?;
            w
        } else if forked {
            heap_walk::dump_overlapped(gvl, file.try_clone()?)?
        } else {
            heap_walk::dump(gvl, &mut file)?
        };
        file.flush()?;
        let bytes = file.metadata()?.len();
        Ok((written, bytes))
    })();
    let finished = result.and_then(|(w, bytes)| {
        // `link` fails if the final name appeared meanwhile: never overwrite.
        std::fs::hard_link(partial, path)?;
        let _ = std::fs::remove_file(partial);
        Ok((w, bytes))
    });
    match finished {
        Ok((w, bytes)) => Ok(Wrote {
            objects: w.objects,
            roots: w.roots,
            bytes,
            allocation_info: w.allocation_info,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
                " (the disk is full: free space or choose another path with -o)"
            } else {
                ""
            };
            Err(format!(
                "writing the heap dump to {} failed: {e}{hint}; nothing was left under that name",
                path.display()
            ))
        }
    }
}

/// The forked child: write, report on the pipe, `_exit`. Never returns.
fn child(gvl: Gvl, file: File, status: OwnedFd, partial: &Path, path: &Path, gzip: bool) -> ! {
    // SAFETY: this process is the child of fork, with one thread; the calls of this block only
    // change this process (its OOM score, signal mask, name).
    unsafe {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/oom_score_adj")
        {
            let _ = f.write_all(b"1000");
        }
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        libc::prctl(
            libc::PR_SET_NAME,
            c"rbscope-heap".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    let report = match write_dump(gvl, file, partial, path, gzip, true) {
        Ok(w) => Report::Ok {
            objects: w.objects,
            roots: w.roots,
            bytes: w.bytes,
            allocation_info: w.allocation_info,
        },
        Err(e) => Report::Err(e),
    };
    let mut out = File::from(status);
    let _ = out.write_all(report.line().as_bytes());
    drop(out);
    // SAFETY: leaves the child at once: no at_exit handler, destructor or buffer of the app.
    unsafe { libc::_exit(0) }
}

/// Waits for the child to finish (reads its report, reaps it) and says how it went. Runs on a
/// plain thread (the client's connection thread), never holding the GVL.
pub fn finish(f: Forked) -> AgentMessage {
    let mut report = String::new();
    let read = File::from(f.status).read_to_string(&mut report);
    let mut wstatus = 0;
    // SAFETY: waits for our own child; ECHILD (the app reaped it first) is fine.
    unsafe { libc::waitpid(f.pid, &mut wstatus, 0) };
    let total_us = f.started.elapsed().as_micros() as u64;
    match read.ok().and_then(|_| Report::parse(&report)) {
        Some(Report::Ok {
            objects,
            roots,
            bytes,
            allocation_info,
        }) => AgentMessage::HeapDumped(HeapDumpResult {
            path: f.path.display().to_string(),
            objects,
            roots,
            bytes,
            pause_us: f.pause_us,
            gc_us: f.gc_us,
            total_us,
            forked: true,
            allocation_info,
        }),
        Some(Report::Err(msg)) => AgentMessage::Error(msg),
        None => {
            // The child died before it could clean up: its partial file goes too.
            let _ = std::fs::remove_file(&f.partial);
            let how = if libc::WIFSIGNALED(wstatus) {
                format!("was killed by signal {}", libc::WTERMSIG(wstatus))
            } else {
                "ended without a report".to_string()
            };
            AgentMessage::Error(format!(
                "the process writing the heap dump (pid {}) {how}, maybe by the kernel for lack of memory; no dump was left at {}",
                f.pid,
                f.path.display()
            ))
        }
    }
}

/// The heap census: objects by type, and instances of the classes under `names`.
fn count(gvl: Gvl, names: &[String]) -> AgentMessage {
    let started = Instant::now();
    let (objects, by_type, classes) = heap_walk::census(gvl, |c| {
        // GC is off: the class VALUEs counted are alive; the real class skips singleton and
        // include classes.
        let classes = c.classes(names, |klass| {
            let real = ffi::heap::class_real(gvl, klass);
            (real != 0).then(|| ffi::class_path(gvl, real))
        });
        (c.objects(), c.by_type(), classes)
    });
    if crate::ffi::guard::is_off(crate::ffi::guard::Feature::Heap) {
        return AgentMessage::Error(
            "an internal error stopped the heap count; heap features are off in this process (rbscope doctor -p PID says why)".into(),
        );
    }
    AgentMessage::HeapCensus(HeapCensus {
        objects,
        by_type,
        classes,
        held_us: started.elapsed().as_micros() as u64,
    })
}

/// Allocation tracing on or off (`require "objspace"` first).
fn track(gvl: Gvl, on: bool) -> AgentMessage {
    let was_on = TRACKING.load(Ordering::Acquire);
    if !ffi::heap::require_objspace(gvl) {
        return AgentMessage::Error("cannot load objspace (Ruby's ext/objspace)".into());
    }
    let method = if on {
        "trace_object_allocations_start"
    } else {
        "trace_object_allocations_stop"
    };
    let Some(objspace) = ffi::const_at(gvl, "ObjectSpace") else {
        return AgentMessage::Error("ObjectSpace is not defined".into());
    };
    if ffi::call(gvl, objspace, method, &[]).is_err() {
        return AgentMessage::Error(format!("ObjectSpace.{method} failed"));
    }
    TRACKING.store(on, Ordering::Release);
    AgentMessage::HeapTracking { on, was_on }
}

/// [`finish`] for a Ruby caller (`Rbscope.heap_dump`): the wait happens without the GVL, so
/// the app's other threads run while the child writes.
pub fn finish_without_gvl(child: Forked) -> AgentMessage {
    // SAFETY: called only by `Rbscope.heap_dump` (lib.rs), a method Ruby calls with the GVL.
    let gvl = unsafe { Gvl::assume() };
    ffi::heap::without_gvl(gvl, "waiting for the heap dump's child", || finish(child))
        .unwrap_or_else(|| AgentMessage::Error("the heap dump was not waited for".into()))
}
