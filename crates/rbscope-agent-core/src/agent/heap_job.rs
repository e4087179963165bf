//! The words of the agent's heap requests (`rbscope heap dump | count | track -p PID`,
//! `Rbscope.heap_dump`, `Rbscope.count_objects`): what each failure tells the user to do, and
//! the allocation-tracing switch. The dump itself is `rbscope_heap::walk`'s.

use std::path::Path;

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
