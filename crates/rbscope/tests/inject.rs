//! `rbscope inject -p PID` on real Ruby processes that never loaded rbscope, with their main
//! thread in each state it can be found in: computing, in `sleep N` (alone, or with every
//! thread asleep), in `sleep` forever, in `Queue#pop`, in a pipe read, in `Thread#join`; each
//! also under YJIT. After injection `stacks` (and `trace`) go through the agent and show the
//! main thread where it was, and each program's own output is what it would have been: the
//! same sums, a sleep that lasted its time, the line it was waiting for (a wait ended early
//! would show `nil`).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Target {
    child: Child,
    out: BufReader<ChildStdout>,
    pid: String,
    _sb: Sandbox,
}

/// The system calls a blocked main thread waits in: read, poll, futex (3.3+'s condition
/// variables), pselect6, ppoll (3.1 and 3.2).
const BLOCKING_SYSCALLS: [i64; 5] = [0, 7, 202, 270, 271];

impl Target {
    fn start(mode: &str, arg: &str, yjit: bool) -> Target {
        let sb = Sandbox::new();
        let program = repo_root().join("crates/rbscope/tests/programs/inject_target.rb");
        let mut cmd = Command::new("ruby");
        if yjit {
            cmd.arg("--yjit");
        }
        let mut child = cmd
            .arg(&program)
            .args([mode, arg])
            .current_dir(sb.dir.path())
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .env("RBSCOPE_STORE", sb.store())
            .env_remove("RUBYOPT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "{line}");
        let pid = child.id().to_string();
        Target {
            child,
            out,
            pid,
            _sb: sb,
        }
    }

    /// Waits until the main thread is blocked in a system call (the program said "ready" once
    /// Ruby marked it asleep; this makes sure it reached the kernel).
    fn wait_blocked(&self) {
        let path = format!("/proc/{0}/task/{0}/syscall", self.pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let nr = text.split_whitespace().next().and_then(|n| n.parse().ok());
            if nr.is_some_and(|n: i64| BLOCKING_SYSCALLS.contains(&n)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the main thread never blocked: {text}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn send_line(&mut self, line: &str) {
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
    }

    fn rest(mut self) -> String {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut s).unwrap();
        assert!(self.child.wait().unwrap().success());
        s
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli_cmd() -> Command {
    let mut c = Command::new(cli());
    c.env("RBSCOPE_RUBY_LIB", gem_lib());
    c
}

fn inject(pid: &str) -> String {
    let out = cli_cmd().args(["inject", "-p", pid]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Injects into a process whose main thread is busy in Ruby: the loading thread gets the GVL
/// only between the main thread's 100 ms time slices, so it may take several seconds.
fn inject_busy(pid: &str) -> String {
    let out = cli_cmd()
        .args(["inject", "-p", pid, "--timeout", "60s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Injects into a blocked main thread and checks it was woken the way this Ruby needs.
fn inject_blocked(t: &Target) -> String {
    t.wait_blocked();
    let said = inject(&t.pid);
    let how = if ruby_at_least(3, 3) {
        "woken from its wait by thread"
    } else {
        "woken from its system call"
    };
    assert!(said.contains(how), "{said}");
    said
}

fn stacks_through_agent(pid: &str) -> String {
    let out = cli_cmd().args(["stacks", "-p", pid]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("through its agent"), "{text}");
    text
}

/// The main thread's stack ("Thread 1 (main, tid ...)" and its frames).
fn main_stack(stacks: &str) -> String {
    stacks
        .split("\n\n")
        .find(|b| b.starts_with("Thread ") && b.contains("(main"))
        .unwrap_or_else(|| panic!("no main thread in {stacks}"))
        .to_string()
}

/// sum of (i*7 % 1000) for i < n: what the work loop prints after n calls. 7 is prime to 1000,
/// so each 1000 calls add 0 + 1 + ... + 999.
fn work_sum(n: u64) -> u64 {
    n / 1000 * 499_500 + (0..n % 1000).map(|i| (i * 7) % 1000).sum::<u64>()
}

fn a_working_process(yjit: bool) {
    // Runs until told to stop, so that the loading (which competes with the busy main thread
    // for the GVL, taking seconds) always finds it running.
    let mut t = Target::start("work", "1000000000000", yjit);
    let said = inject_busy(&t.pid);
    assert!(said.contains("agent loaded in process"), "{said}");
    let mut trace = cli_cmd();
    trace.args([
        "trace",
        "-p",
        &t.pid,
        "-m",
        "Worker#step(i)",
        "--for",
        "200ms",
    ]);
    if yjit && !ruby_at_least(3, 2) {
        // On 3.1 a method hook makes YJIT drop its code, which trace refuses without --force.
        trace.arg("--force");
    }
    let trace = trace.output().unwrap();
    assert!(trace.status.success(), "{}", stderr(&trace));
    let text = String::from_utf8_lossy(&trace.stdout);
    assert!(text.contains("Worker#step(i="), "{text}");
    let stacks = stacks_through_agent(&t.pid);
    assert!(main_stack(&stacks).contains("Integer#times"), "{stacks}");
    t.send_line("stop\n");
    let out = t.rest();
    // The same sums as without rbscope, and nothing of rbscope on the program's output.
    let mut checkpoints = 0;
    // The injected code left the interrupted frame's locals alone, and the gem's files it
    // evaluated from memory count as loaded: `require "rbscope"` answers false.
    let mut lines: Vec<&str> = out.lines().collect();
    let loaded = lines.pop().unwrap_or_default();
    let locals = lines.pop().unwrap_or_default();
    assert_eq!(locals, "locals [:app]", "{out}");
    let loaded: Vec<&str> = loaded.split(' ').collect();
    assert!(
        loaded.len() == 3
            && loaded[0] == "loaded"
            && loaded[1].parse::<u32>().unwrap_or(0) >= 10
            && loaded[2] == "false",
        "{out}"
    );
    for &line in lines.iter() {
        let fields: Vec<u64> = line
            .split(' ')
            .skip(1)
            .map(|f| f.parse().unwrap_or_else(|_| panic!("{out}")))
            .collect();
        match (line.split(' ').next(), fields.as_slice()) {
            (Some("sum"), [n, sum]) => {
                assert_eq!(*n, (checkpoints + 1) * 200_000, "{out}");
                assert_eq!(*sum, work_sum(*n), "{line}");
                checkpoints += 1;
            }
            (Some("done"), [n, sum]) => assert_eq!(*sum, work_sum(*n), "{line}"),
            _ => panic!("unexpected line {line:?} in {out}"),
        }
    }
    assert!(lines.last().unwrap().starts_with("done "), "{out}");
    assert!(checkpoints > 0, "{out}");
}

#[test]
fn a_working_process_is_traced_after_injection_and_its_output_is_unchanged() {
    a_working_process(false);
}

#[test]
fn a_working_process_under_yjit_is_traced_after_injection() {
    a_working_process(true);
}

/// `sleep S` in the main thread (with every thread asleep, or alone): woken for the agent, it
/// still sleeps its time, no more than a second longer.
fn a_sleep(mode: &str, yjit: bool) {
    let secs = 3.0;
    let t = Target::start(mode, &secs.to_string(), yjit);
    inject_blocked(&t);
    let stacks = stacks_through_agent(&t.pid);
    assert!(main_stack(&stacks).contains("Kernel#sleep"), "{stacks}");
    let out = t.rest();
    let slept: f64 = out
        .trim()
        .strip_prefix("slept ")
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!((secs..secs + 1.0).contains(&slept), "{slept}");
}

#[test]
fn every_thread_asleep_is_woken_for_the_agent_and_still_sleeps_its_time() {
    a_sleep("sleep", false);
}

#[test]
fn a_main_thread_in_sleep_n_still_sleeps_its_time() {
    a_sleep("sleep1", false);
}

#[test]
fn a_main_thread_in_sleep_n_under_yjit_still_sleeps_its_time() {
    a_sleep("sleep1", true);
}

/// The main thread waits for a line another thread reads (`mode` says how it waits); it must
/// get the agent while waiting and then carry on with the line, not wake early with nothing.
fn a_wait(mode: &str, yjit: bool, frame: &str, said: &str) {
    let mut t = Target::start(mode, "", yjit);
    inject_blocked(&t);
    let stacks = stacks_through_agent(&t.pid);
    assert!(main_stack(&stacks).contains(frame), "{stacks}");
    t.send_line("hello after inject\n");
    assert_eq!(t.rest(), format!("{said} \"hello after inject\\n\"\n"));
}

#[test]
fn a_main_thread_sleeping_forever_gets_the_agent_and_sleeps_on() {
    a_wait("forever", false, "Kernel#sleep", "woke");
}

#[test]
fn a_main_thread_sleeping_forever_under_yjit_gets_the_agent() {
    a_wait("forever", true, "Kernel#sleep", "woke");
}

#[test]
fn a_main_thread_in_queue_pop_gets_the_agent_and_pops_what_comes() {
    a_wait("queue", false, "Queue#pop", "popped");
}

#[test]
fn a_main_thread_in_queue_pop_under_yjit_gets_the_agent() {
    a_wait("queue", true, "Queue#pop", "popped");
}

#[test]
fn a_main_thread_joining_a_worker_gets_the_agent_and_joins() {
    a_wait("join", false, "Thread#join", "joined");
}

#[test]
fn a_main_thread_joining_a_worker_under_yjit_gets_the_agent() {
    a_wait("join", true, "Thread#join", "joined");
}

#[test]
fn a_main_thread_reading_a_pipe_under_yjit_gets_the_agent() {
    a_wait("pipe", true, "gets", "read");
}

#[test]
fn a_process_blocked_on_a_pipe_read_gets_the_agent_and_still_reads() {
    let mut t = Target::start("pipe", "", false);
    inject_blocked(&t);
    let stacks = stacks_through_agent(&t.pid);
    assert!(
        stacks.contains("IO#gets") || stacks.contains("Kernel#gets"),
        "{stacks}"
    );
    let again = cli_cmd().args(["inject", "-p", &t.pid]).output().unwrap();
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already runs the rbscope agent"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    t.send_line("hello after inject\n");
    assert_eq!(t.rest(), "read \"hello after inject\\n\"\n");
}

#[test]
fn refusals_are_one_line() {
    let t = Target::start("sleep", "2", false);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cli())
        .args(["inject", "-p", &t.pid])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to uid 0"),
        "{}",
        stderr(&out)
    );
    let out = cli_cmd()
        .args(["inject", "-p", "999999999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let me = std::process::id().to_string();
    let out = cli_cmd().args(["inject", "-p", &me]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not look like Ruby"),
        "{}",
        stderr(&out)
    );
    drop(t);
}
