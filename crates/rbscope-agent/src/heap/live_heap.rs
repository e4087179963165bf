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

use crate::ffi::guard::{self, Feature};
use crate::ffi::{self, Gvl};
use crate::heap::heap_walk;
use rbscope_proto::{AgentMessage, HeapCensus, HeapDumpRequest, HeapDumpResult};
use std::ffi::CString;
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
        // SAFETY: GVL held (token); a full GC is what GC.start does.
        let _ = ffi::protect(gvl, || unsafe { rb_sys::rb_gc_start() });
        gc_us = t.elapsed().as_micros() as u64;
    }
    heap_walk::prepare();
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
    let result = (|| -> std::io::Result<(heap_walk::Written, u64)> {
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
    // SAFETY (whole block): this process is the child of fork, with one thread; these calls
    // only change this process (its OOM score, signal mask, name).
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
    let line = match write_dump(gvl, file, partial, path, gzip, true) {
        Ok(w) => format!(
            "ok {} {} {} {}\n",
            w.objects, w.roots, w.bytes, w.allocation_info as u8
        ),
        Err(e) => format!("err {}\n", e.replace('\n', " ")),
    };
    let mut out = File::from(status);
    let _ = out.write_all(line.as_bytes());
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
    let mut words = report.trim_end().splitn(2, ' ');
    match (read, words.next(), words.next()) {
        (Ok(_), Some("ok"), Some(rest)) => {
            let n: Vec<u64> = rest.split(' ').filter_map(|x| x.parse().ok()).collect();
            AgentMessage::HeapDumped(HeapDumpResult {
                path: f.path.display().to_string(),
                objects: n.first().copied().unwrap_or(0),
                roots: n.get(1).copied().unwrap_or(0),
                bytes: n.get(2).copied().unwrap_or(0),
                pause_us: f.pause_us,
                gc_us: f.gc_us,
                total_us,
                forked: true,
                allocation_info: n.get(3).copied() == Some(1),
            })
        }
        (Ok(_), Some("err"), Some(msg)) => AgentMessage::Error(msg.to_string()),
        _ => {
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
        let mut by_type: Vec<(String, u64)> = c
            .by_type
            .iter()
            .map(|(t, n)| (heap_walk::type_name(*t), *n))
            .collect();
        by_type.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut per_name: rustc_hash::FxHashMap<String, u64> = Default::default();
        for (klass, n) in &c.by_class {
            // SAFETY: GVL held, GC off: the class VALUE is alive; rb_class_real skips
            // singleton and include classes.
            let real = unsafe { rb_sys::rb_class_real(*klass) };
            if real == 0 {
                continue;
            }
            let name = ffi::class_path(gvl, real);
            let wanted = names.is_empty()
                || names.iter().any(|w| {
                    name == *w
                        || name
                            .strip_prefix(w.as_str())
                            .is_some_and(|rest| rest.starts_with("::"))
                });
            if wanted {
                *per_name.entry(name).or_default() += n;
            }
        }
        let mut classes: Vec<(String, u64)> = per_name.into_iter().collect();
        classes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        (c.objects, by_type, classes)
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
    let feature = match CString::new("objspace") {
        Ok(f) => f,
        Err(_) => return AgentMessage::Error("internal: bad feature name".into()),
    };
    // SAFETY: GVL held (token); rb_require raises on failure, which protect catches.
    if ffi::protect(gvl, || unsafe { rb_sys::rb_require(feature.as_ptr()) }).is_err() {
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
    struct Slot {
        child: Option<Forked>,
        answer: Option<AgentMessage>,
    }
    unsafe extern "C" fn wait(data: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
        guard::run(
            Feature::Heap,
            "waiting for the heap dump's child",
            std::ptr::null_mut(),
            || {
                // SAFETY: what the caller of `wait` guarantees, passed on as it came.
                unsafe { wait_body(data) }
            },
        )
    }

    /// # Safety
    /// What the caller of `wait` guarantees.
    unsafe fn wait_body(data: *mut std::ffi::c_void) -> *mut std::ffi::c_void {
        // SAFETY: `data` is the Slot below, alive for the whole call and used only here.
        let slot = unsafe { &mut *(data as *mut Slot) };
        if let Some(child) = slot.child.take() {
            slot.answer = Some(finish(child));
        }
        std::ptr::null_mut()
    }
    let mut slot = Slot {
        child: Some(child),
        answer: None,
    };
    // SAFETY: called from Ruby with the GVL; `wait` touches no Ruby object. No unblocking
    // function: the wait ends when the child does.
    unsafe {
        rb_sys::rb_thread_call_without_gvl(
            Some(wait),
            &mut slot as *mut Slot as *mut std::ffi::c_void,
            None,
            std::ptr::null_mut(),
        );
    }
    slot.answer
        .unwrap_or_else(|| AgentMessage::Error("the heap dump was not waited for".into()))
}
