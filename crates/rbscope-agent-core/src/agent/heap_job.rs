//! The agent's heap requests (`rbscope heap dump | count | track -p PID`, `Rbscope.heap_dump`,
//! `Rbscope.count_objects`) apart from the VM: where the dump goes and its files, the forked
//! child's process setup and report, waiting for it, the answers, and what each failure tells
//! the user to do, and the order of a dump's steps ([`dump`]). Walking the heap is the agent's
//! (`heap/`, with `rbscope_heap::walk`).

use crate::control::HeapRequest;
use rbscope_heap::walk::child::Report;
use rbscope_heap::walk::{target, Written};
use rbscope_proto::{AgentMessage, HeapDumpRequest, HeapDumpResult};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the agent's Ruby thread is asked to do.
pub enum Job {
    Dump(HeapDumpRequest),
    Count(Vec<String>),
    Track(bool),
}

impl Job {
    /// The job a control request asks for, and how long its client waits for the VM (ms).
    pub fn of(request: HeapRequest) -> (u32, Job) {
        match request {
            HeapRequest::Dump(req) => (req.wait_ms, Job::Dump(req)),
            HeapRequest::Count(req) => (req.wait_ms, Job::Count(req.names)),
            HeapRequest::Track { on, wait_ms } => (wait_ms, Job::Track(on)),
        }
    }
}

/// The Ruby thread's answer: done, or a child still writing.
pub enum Outcome {
    Done(AgentMessage),
    Forked(Forked),
}

impl Outcome {
    /// The answer, once a child still writing was waited for with `wait`.
    pub fn answer(self, wait: impl FnOnce(Forked) -> AgentMessage) -> AgentMessage {
        match self {
            Outcome::Done(message) => message,
            Outcome::Forked(child) => wait(child),
        }
    }
}

/// Where the dump goes (`rbscope_heap::walk::target`): the agent's private directory by
/// default.
pub fn target_path(req: &HeapDumpRequest) -> Result<PathBuf, String> {
    let default_dir = || {
        // SAFETY: getuid never fails.
        let uid = unsafe { libc::getuid() };
        let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
        rbscope_proto::paths::runtime_dir(xdg.as_deref(), uid)
    };
    let (pid, ms) = (std::process::id(), unix_ms());
    let cwd = std::env::current_dir;
    target::dump_path(req.path.as_deref(), req.gzip, cwd, default_dir, pid, ms)
}

/// The partial file a dump is written into: new (never over a file), private, closed on exec.
pub fn create_partial(partial: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(partial)
}

/// A pipe for the child's report, both ends closed on exec: (read end, write end).
pub fn report_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The report of a write that gave `written` (objects, and the file's bytes): the partial
/// file gets its final name, and on any failure it is removed.
pub fn publish(written: std::io::Result<(Written, u64)>, partial: &Path, path: &Path) -> Report {
    match written.and_then(|w| target::publish(partial, path).map(|()| w)) {
        Ok((w, bytes)) => Report::Ok {
            objects: w.objects,
            roots: w.roots,
            bytes,
            allocation_info: w.allocation_info,
        },
        Err(e) => {
            let _ = std::fs::remove_file(partial);
            Report::Err(target::failure(path, &e))
        }
    }
}

/// Where a dump's walk writes: a stream (the file, or gzip over it), or, in the forked child,
/// the file itself, for a second thread that writes while the walk goes on
/// (`rbscope_heap::walk::overlap`).
pub enum DumpTo<'a> {
    Stream(&'a mut dyn Write),
    Overlapped(File),
}

/// A dump: opens the partial file first (so a bad path fails at once, in the app's view of
/// the filesystem and as its user), runs `gc` when asked and `prepare`, then writes through
/// `walk`, in this process or in a forked child that reports on a pipe and leaves with
/// `_exit` (the caller's thread goes back to its work; [`finish`] waits for the child).
/// Called on the Ruby thread holding the GVL, which the child keeps.
pub fn dump(
    req: &HeapDumpRequest,
    gc: impl FnOnce(),
    prepare: impl FnOnce(),
    walk: impl FnOnce(DumpTo) -> std::io::Result<Written>,
) -> Outcome {
    let error = |msg| Outcome::Done(AgentMessage::Error(msg));
    let started = Instant::now();
    let path = match target_path(req) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let partial = target::partial_path(&path, std::process::id());
    let file = match create_partial(&partial) {
        Ok(f) => f,
        Err(e) => return error(cannot_open(&path, &e)),
    };
    let mut gc_us = 0;
    if req.gc {
        let t = Instant::now();
        gc();
        gc_us = t.elapsed().as_micros() as u64;
    }
    prepare();
    if req.in_process {
        let t = Instant::now();
        let report = write_dump(file, &partial, &path, req.gzip, false, walk);
        let pause_us = t.elapsed().as_micros() as u64 + gc_us;
        let total_us = started.elapsed().as_micros() as u64;
        return Outcome::Done(answer(report, &path, pause_us, gc_us, total_us, false));
    }
    let (read_end, write_end) = match report_pipe() {
        Ok(ends) => ends,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return error(cannot_pipe(&e));
        }
    };
    let t = Instant::now();
    // SAFETY: the child continues as a copy with only this thread; it runs only `walk` (which
    // the caller made safe to run alone) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    let pause_us = t.elapsed().as_micros() as u64 + gc_us;
    match pid {
        -1 => {
            let e = std::io::Error::last_os_error();
            drop(file);
            let _ = std::fs::remove_file(&partial);
            error(cannot_fork(&e))
        }
        0 => {
            drop(read_end);
            child_setup();
            let report = write_dump(file, &partial, &path, req.gzip, true, walk);
            child_exit(write_end, &report)
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

/// Writes the heap through `walk` into `file` (at `partial`) and gives it its final name; on
/// any failure the partial file is removed. In the forked child (`forked`) an uncompressed
/// dump is overlapped ([`DumpTo::Overlapped`]).
fn write_dump(
    file: File,
    partial: &Path,
    path: &Path,
    gzip: bool,
    forked: bool,
    walk: impl FnOnce(DumpTo) -> std::io::Result<Written>,
) -> Report {
    let result = (|| -> std::io::Result<(Written, u64)> {
        let mut file = file;
        let written = if gzip {
            let mut gz = flate2::write::GzEncoder::new(&mut file, flate2::Compression::fast());
            let w = walk(DumpTo::Stream(&mut gz))?;
            gz.finish()?;
            w
        } else if forked {
            walk(DumpTo::Overlapped(file.try_clone()?))?
        } else {
            walk(DumpTo::Stream(&mut file))?
        };
        file.flush()?;
        let bytes = file.metadata()?.len();
        Ok((written, bytes))
    })();
    publish(result, partial, path)
}

/// The answer to a dump request, from the report of the write.
pub fn answer(
    r: Report,
    path: &Path,
    pause_us: u64,
    gc_us: u64,
    total_us: u64,
    forked: bool,
) -> AgentMessage {
    match r {
        Report::Ok {
            objects,
            roots,
            bytes,
            allocation_info,
        } => AgentMessage::HeapDumped(HeapDumpResult {
            path: path.display().to_string(),
            objects,
            roots,
            bytes,
            pause_us,
            gc_us,
            total_us,
            forked,
            allocation_info,
        }),
        Report::Err(msg) => AgentMessage::Error(msg),
    }
}

/// In the forked child, before it writes: under memory pressure the kernel kills it, not the
/// app (`oom_score_adj` 1000); no signal reaches it; `ps` names it `rbscope-heap`. Only for
/// the child: it changes the calling thread's signal mask and name.
pub fn child_setup() {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/oom_score_adj")
    {
        let _ = f.write_all(b"1000");
    }
    // SAFETY: the calls only change this process (its signal mask, its name); the set is
    // initialised by sigfillset before use and the name is a NUL-terminated static string.
    unsafe {
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
}

/// The forked child's end: writes `report` on the pipe and leaves with `_exit` (no at_exit
/// handler, destructor or IO buffer of the app runs). Only for the child.
pub fn child_exit(status: OwnedFd, report: &Report) -> ! {
    let mut out = File::from(status);
    let _ = out.write_all(report.line().as_bytes());
    drop(out);
    // SAFETY: leaves the child at once: no at_exit handler, destructor or buffer of the app.
    unsafe { libc::_exit(0) }
}

/// A dump being written by a child process.
pub struct Forked {
    pub pid: libc::pid_t,
    /// The read end of the child's report pipe.
    pub status: OwnedFd,
    pub path: PathBuf,
    pub partial: PathBuf,
    pub pause_us: u64,
    pub gc_us: u64,
    pub started: Instant,
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
        Some(r) => answer(r, &f.path, f.pause_us, f.gc_us, total_us, true),
        None => {
            // The child died before it could clean up: its partial file goes too.
            let _ = std::fs::remove_file(&f.partial);
            let signal = libc::WIFSIGNALED(wstatus).then(|| libc::WTERMSIG(wstatus));
            AgentMessage::Error(child_died(f.pid, signal, &f.path))
        }
    }
}

/// Milliseconds since the epoch (0 if the clock is before it), for a dump's default name.
pub fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The dump's file could not be made.
pub fn cannot_open(path: &Path, e: &std::io::Error) -> String {
    format!(
        "cannot write the heap dump at {}: {e} (the path is the process's: as its user, relative to its working directory)",
        path.display()
    )
}

/// No pipe for the child's report.
pub fn cannot_pipe(e: &std::io::Error) -> String {
    format!("cannot make a pipe for the dump: {e}")
}

/// No child to write the dump.
pub fn cannot_fork(e: &std::io::Error) -> String {
    format!(
        "cannot fork to write the heap dump: {e}; `--in-process` writes it from the process itself (the app pauses for the whole dump)"
    )
}

/// The child writing the dump (`pid`) ended without a report: killed by `signal`, or not.
pub fn child_died(pid: i32, signal: Option<i32>, path: &Path) -> String {
    let how = match signal {
        Some(s) => format!("was killed by signal {s}"),
        None => "ended without a report".to_string(),
    };
    format!(
        "the process writing the heap dump (pid {pid}) {how}, maybe by the kernel for lack of memory; no dump was left at {}",
        path.display()
    )
}

/// A census stopped by an internal error.
pub const COUNT_STOPPED: &str = "an internal error stopped the heap count; heap features are off in this process (rbscope doctor -p PID says why)";

/// The `ObjectSpace` method that turns allocation tracing on or off.
pub fn tracking_method(on: bool) -> &'static str {
    if on {
        "trace_object_allocations_start"
    } else {
        "trace_object_allocations_stop"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child process that ends as `script` says, with `report` waiting on its pipe.
    #[allow(clippy::zombie_processes)] // `finish` reaps it (waitpid), as it does the dump's.
    fn forked(dir: &Path, script: &str, report: &str) -> Forked {
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .spawn()
            .unwrap();
        let (read, write) = report_pipe().unwrap();
        File::from(write).write_all(report.as_bytes()).unwrap();
        let partial = dir.join("h.json.partial");
        create_partial(&partial).unwrap();
        Forked {
            pid: child.id() as libc::pid_t,
            status: read,
            path: dir.join("h.json"),
            partial,
            pause_us: 5,
            gc_us: 2,
            started: Instant::now(),
        }
    }

    /// A walk that writes `text` wherever it is asked to, and says it wrote 3 objects.
    fn fake_walk(text: &'static str) -> impl FnOnce(DumpTo) -> std::io::Result<Written> {
        move |to| {
            match to {
                DumpTo::Stream(out) => out.write_all(text.as_bytes())?,
                DumpTo::Overlapped(mut file) => file.write_all(text.as_bytes())?,
            }
            Ok(Written {
                objects: 3,
                roots: 1,
                allocation_info: false,
            })
        }
    }

    fn dump_request(path: &Path, gzip: bool, gc: bool, in_process: bool) -> HeapDumpRequest {
        HeapDumpRequest {
            path: Some(path.display().to_string()),
            gzip,
            gc,
            in_process,
            wait_ms: 0,
        }
    }

    #[test]
    fn an_in_process_dump_runs_its_steps_and_publishes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.json");
        let steps = std::cell::RefCell::new(Vec::new());
        let req = dump_request(&path, false, true, true);
        let out = dump(
            &req,
            || steps.borrow_mut().push("gc"),
            || steps.borrow_mut().push("prepare"),
            fake_walk("{}\n"),
        );
        assert_eq!(*steps.borrow(), ["gc", "prepare"]);
        match out {
            Outcome::Done(AgentMessage::HeapDumped(r)) => {
                assert_eq!((r.objects, r.roots, r.bytes), (3, 1, 3));
                assert!(!r.forked);
                assert_eq!(r.path, path.display().to_string());
            }
            _ => panic!("not dumped in process"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no partial file is left");
    }

    #[test]
    fn a_gzip_dump_is_compressed_and_gc_is_only_run_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.json.gz");
        let req = dump_request(&path, true, false, true);
        let out = dump(&req, || panic!("no GC asked"), || {}, fake_walk("hello"));
        assert!(matches!(out, Outcome::Done(AgentMessage::HeapDumped(_))));
        let mut text = String::new();
        let file = File::open(&path).unwrap();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello");
    }

    #[test]
    fn a_dump_that_cannot_open_its_file_walks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("h.json");
        let req = dump_request(&path, false, false, true);
        let walk = |_: DumpTo| -> std::io::Result<Written> { panic!("walked") };
        match dump(&req, || {}, || {}, walk) {
            Outcome::Done(AgentMessage::Error(m)) => assert!(m.contains("cannot write"), "{m}"),
            _ => panic!("not refused"),
        }
    }

    #[test]
    fn a_forked_dump_is_written_by_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("child.json");
        let req = dump_request(&path, false, false, false);
        let Outcome::Forked(child) = dump(&req, || {}, || {}, fake_walk("[1]")) else {
            panic!("not forked");
        };
        assert_ne!(child.pid, std::process::id() as libc::pid_t);
        match finish(child) {
            AgentMessage::HeapDumped(r) => {
                assert!(r.forked);
                assert_eq!((r.objects, r.bytes), (3, 3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1]");
    }

    #[test]
    fn requests_become_jobs() {
        let track = HeapRequest::Track {
            on: true,
            wait_ms: 40,
        };
        assert!(matches!(Job::of(track), (40, Job::Track(true))));
        let count = rbscope_proto::HeapCountRequest {
            names: vec!["Foo".into()],
            wait_ms: 7,
        };
        match Job::of(HeapRequest::Count(count)) {
            (7, Job::Count(names)) => assert_eq!(names, ["Foo"]),
            _ => panic!("not a count"),
        }
        let done = Outcome::Done(AgentMessage::Error("x".into()));
        let answer = done.answer(|_| panic!("nothing to wait for"));
        assert!(matches!(answer, AgentMessage::Error(m) if m == "x"));
    }

    #[test]
    fn a_reported_dump_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let f = forked(dir.path(), "exit 0", "ok 10 3 400 1\n");
        match finish(f) {
            AgentMessage::HeapDumped(r) => {
                assert_eq!((r.objects, r.roots, r.bytes), (10, 3, 400));
                assert!(r.allocation_info && r.forked);
                assert_eq!((r.pause_us, r.gc_us), (5, 2));
                assert!(r.path.ends_with("/h.json"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_killed_child_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = forked(dir.path(), "kill -9 $$", "");
        let partial = f.partial.clone();
        match finish(f) {
            AgentMessage::Error(m) => assert!(m.contains("was killed by signal 9"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(!partial.exists());
    }

    #[test]
    fn publishing_links_or_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let (path, partial) = (dir.path().join("d.json"), dir.path().join("d.partial"));
        create_partial(&partial).unwrap();
        assert!(create_partial(&partial).is_err(), "never over a file");
        let w = Written {
            objects: 7,
            roots: 1,
            allocation_info: false,
        };
        let ok = publish(Ok((w, 99)), &partial, &path);
        assert_eq!(ok.line(), "ok 7 1 99 0\n");
        assert!(path.exists() && !partial.exists());
        create_partial(&partial).unwrap();
        let err = publish(Err(std::io::Error::other("boom")), &partial, &path);
        assert!(matches!(err, Report::Err(_)));
        assert!(!partial.exists());
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        let open = cannot_open(Path::new("/x/h.json"), &e);
        assert!(open.starts_with("cannot write the heap dump at /x/h.json: Permission denied"));
        assert!(open.ends_with("relative to its working directory)"));
        assert!(cannot_fork(&e).contains("`--in-process`"));
        assert_eq!(
            cannot_pipe(&e),
            "cannot make a pipe for the dump: Permission denied (os error 13)"
        );
    }

    #[test]
    fn a_dead_child_is_described() {
        let p = Path::new("/tmp/h.json");
        assert!(child_died(7, Some(9), p).starts_with(
            "the process writing the heap dump (pid 7) was killed by signal 9, maybe"
        ));
        assert!(child_died(7, None, p).contains("(pid 7) ended without a report, maybe"));
        assert!(child_died(7, None, p).ends_with("no dump was left at /tmp/h.json"));
    }

    #[test]
    fn tracking_switch() {
        assert_eq!(tracking_method(true), "trace_object_allocations_start");
        assert_eq!(tracking_method(false), "trace_object_allocations_stop");
        assert!(unix_ms() > 1_600_000_000_000);
    }
}
