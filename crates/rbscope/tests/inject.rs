//! `rbscope inject -p PID` on real Ruby 3.1 processes that never loaded rbscope: one doing
//! work, one with every thread asleep, one blocked reading a pipe. After injection `trace` and
//! `stacks` go through the agent, and each program's own output is what it would have been.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

struct Target {
    child: Child,
    out: BufReader<ChildStdout>,
    pid: String,
    _sb: Sandbox,
}

impl Target {
    fn start(mode: &str, arg: &str) -> Target {
        let sb = Sandbox::new();
        let program = repo_root().join("crates/rbscope/tests/programs/inject_target.rb");
        let mut child = Command::new("ruby")
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

    fn rest(mut self) -> String {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut s).unwrap();
        assert!(self.child.wait().unwrap().success());
        s
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

fn stacks_through_agent(pid: &str) -> String {
    let out = cli_cmd().args(["stacks", "-p", pid]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("through its agent"), "{text}");
    text
}

#[test]
fn a_working_process_is_traced_after_injection_and_its_output_is_unchanged() {
    let n = 20_000_000u64;
    let t = Target::start("work", &n.to_string());
    let said = inject(&t.pid);
    assert!(said.contains("agent loaded in process"), "{said}");
    let trace = cli_cmd()
        .args([
            "trace",
            "-p",
            &t.pid,
            "-m",
            "Worker#step(i)",
            "--for",
            "200ms",
        ])
        .output()
        .unwrap();
    assert!(trace.status.success(), "{}", stderr(&trace));
    let text = String::from_utf8_lossy(&trace.stdout);
    assert!(text.contains("Worker#step(i="), "{text}");
    stacks_through_agent(&t.pid);
    // The same sums as without rbscope: sum of (i*7 % 1000) for i < n.
    let expected: u64 = (0..n).map(|i| (i * 7) % 1000).sum();
    let out = t.rest();
    assert!(out.ends_with(&format!("done {expected}\n")), "{out}");
    // Nothing of rbscope on the program's output.
    assert!(
        out.lines()
            .all(|l| l.starts_with("sum ") || l.starts_with("done ")),
        "{out}"
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("sum ")).count(), 100);
}

#[test]
fn every_thread_asleep_is_woken_for_the_agent_and_still_sleeps_its_time() {
    let t = Target::start("sleep", "3");
    let said = inject(&t.pid);
    assert!(said.contains("woken"), "{said}");
    let stacks = stacks_through_agent(&t.pid);
    assert!(stacks.contains("Kernel#sleep"), "{stacks}");
    let out = t.rest();
    let slept: f64 = out
        .trim()
        .strip_prefix("slept ")
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!(slept >= 3.0, "{slept}");
}

#[test]
fn a_process_blocked_on_a_pipe_read_gets_the_agent_and_still_reads() {
    let mut t = Target::start("pipe", "");
    inject(&t.pid);
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
    let mut stdin = t.child.stdin.take().unwrap();
    stdin.write_all(b"hello after inject\n").unwrap();
    drop(stdin);
    assert_eq!(t.rest(), "read \"hello after inject\\n\"\n");
}

#[test]
fn refusals_are_one_line() {
    let t = Target::start("sleep", "2");
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
