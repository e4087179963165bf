//! `rbscope stacks -p PID` through the process's agent: the agent's Ruby thread reads every
//! thread with the labels of `Rbscope.backtrace`; when native code holds the GVL past the
//! one-second wait, or the process runs no agent, the CLI reads from outside instead and
//! says why. Real Ruby processes, real CLI.

mod common;
use common::*;
use serde_json::Value as J;
use std::process::Command;

fn stacks(args: &[&str]) -> J {
    let out = Command::new(cli())
        .arg("stacks")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn main_thread(report: &J) -> &J {
    common::main_thread(report).expect("a main thread")
}

/// Explicit readiness: reads `rbscope stacks ARGS` until `ready` says the report shows the
/// program where the test wants it (it may assert on every report), and returns that report.
fn stacks_until(args: &[&str], ready: impl Fn(&J) -> bool) -> J {
    for _ in 0..10_000 {
        let report = stacks(args);
        if ready(&report) {
            return report;
        }
    }
    panic!("the main thread never got there: {:#}", stacks(args));
}

fn labels(t: &J) -> Vec<String> {
    t["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_construct_through_the_agent_as_from_outside() {
    let program = repo_root().join("crates/rbscope/tests/programs/constructs.rb");
    let p = Running::start(Sandbox::new(), &program, &["park"], "parked");
    let aliases: Vec<(String, String)> = p
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("alias "))
        .map(|l| {
            let (name, inspect) = l.split_once(' ').unwrap();
            (inspect.to_string(), name.to_string())
        })
        .collect();
    let named = |labels: Vec<String>| -> Vec<String> {
        labels
            .into_iter()
            .map(|l| aliases.iter().fold(l, |l, (from, to)| l.replace(from, to)))
            .collect()
    };

    let agent = stacks(&["-p", &p.pid()]);
    let source = agent["source"].as_str().unwrap();
    assert!(source.contains("through its agent"), "{source}");
    // Only the app's thread: the agent leaves its own out.
    assert_eq!(agent["threads"].as_array().unwrap().len(), 1, "{agent:#}");
    let mut expected = vec![queue_pop().to_string()];
    expected.extend(CONSTRUCT_LABELS.iter().map(|s| s.to_string()));
    let main = main_thread(&agent);
    assert_eq!(named(labels(main)), expected);
    // Blocked in Queue#pop: a sleep without a deadline, said as `--remote` says it.
    assert_eq!(main["status"], "sleeping forever");

    // Read from outside, the same frames at the same places.
    let outside = stacks(&["-p", &p.pid(), "--remote"]);
    let places = |t: &J| -> Vec<(String, J, String)> {
        t["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_string(),
                    f["line"].clone(),
                    f["label"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(places(main_thread(&outside)), places(main));
    assert_eq!(main_thread(&outside)["status"], main["status"]);
}

const HOLDS_THE_VM: &str = r#"require "rbscope"
require "digest"
Rbscope.start(log: false)
DATA = "a" * (1 << 30)
# Digest hashes the whole string in C without letting another Ruby thread run.
def hold_the_vm = Digest::SHA256.digest(DATA)
puts "busy"
$stdout.flush
hold_the_vm
"#;

#[test]
fn native_code_holding_the_vm_makes_the_cli_read_from_outside() {
    let sb = Sandbox::new();
    let script = sb.write("busy.rb", HOLDS_THE_VM);
    let p = Running::start(sb, &script, &[], "busy");
    // Read from outside until the main thread is inside the digest.
    stacks_until(&["-p", &p.pid(), "--remote"], |report| {
        labels(main_thread(report))
            .first()
            .is_some_and(|l| l.starts_with("Digest::"))
    });
    let started = std::time::Instant::now();
    let report = stacks(&["-p", &p.pid()]);
    let took = started.elapsed();
    let source = report["source"].as_str().unwrap();
    assert!(source.contains("read from outside"), "{source}");
    let note = report["notes"][0].as_str().unwrap();
    assert!(
        note.starts_with("read from outside because the agent did not answer: the Ruby VM did not give the agent a turn within 1000 ms"),
        "{note}"
    );
    let main = labels(main_thread(&report));
    assert_eq!(main[0], "Digest::Base#update(_)", "{main:?}");
    assert!(main.iter().any(|l| l == "Object#hold_the_vm()"), "{main:?}");
    // One second of waiting, not the digest's several.
    assert!(took.as_secs_f64() < 3.0, "{took:?}");
}

#[test]
fn a_process_without_the_agent_is_read_from_outside() {
    let sb = Sandbox::new();
    let script = sb.write(
        "plain.rb",
        "def wait_here = sleep\nputs \"ready\"\n$stdout.flush\nwait_here\n",
    );
    let p = Running::start(sb, &script, &[], "ready");
    // Asked until the program is inside wait_here (it printed "ready" just before).
    let report = stacks_until(&["-p", &p.pid()], |report| {
        assert_eq!(
            report["notes"][0],
            "read from outside because the process runs no rbscope agent"
        );
        labels(main_thread(report))
            .iter()
            .any(|l| l == "Object#wait_here()")
    });
    assert_eq!(labels(main_thread(&report))[0], "Kernel#sleep(*)");
}

#[test]
fn a_forked_child_answers_with_its_own_agent_thread() {
    let sb = Sandbox::new();
    let script = sb.write(
        "forks.rb",
        r#"require "rbscope"
Rbscope.start(log: false)
def child_waits(q) = q.pop
r, w = IO.pipe
pid = fork do
  r.close
  q = Queue.new
  w.puts "child #{Process.pid}"
  w.close
  child_waits(q)
end
w.close
puts r.gets
$stdout.flush
Process.wait(pid)
"#,
    );
    let p = Running::start(sb, &script, &[], "child");
    let child = p
        .lines
        .last()
        .unwrap()
        .strip_prefix("child ")
        .unwrap()
        .to_string();
    let guard = ChildGuard(child.parse().unwrap());
    let report = stacks_until(&["-p", &child], |report| {
        let source = report["source"].as_str().unwrap();
        assert!(source.contains("through its agent"), "{source}");
        labels(main_thread(report))
            .iter()
            .any(|l| l == "Object#child_waits(q)")
    });
    assert_eq!(labels(main_thread(&report))[0], queue_pop());
    // Its own thread id, not the parent's (Ruby 3.1 keeps the parent's after fork).
    assert_eq!(
        main_thread(&report)["tid"].as_i64(),
        Some(child.parse::<i64>().unwrap()),
        "{report:#}"
    );
    drop(guard);
}

/// Kills a process (a forked child) when the test ends, however it ends.
struct ChildGuard(i32);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid this test's program forked.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// Thread::Queue#pop: a C function in Ruby 3.1, Ruby code (`<internal:thread_sync>`) with
/// named parameters from 3.2 on.
fn queue_pop() -> &'static str {
    if ruby_at_least(3, 2) {
        "Thread::Queue#pop(non_block, timeout:)"
    } else {
        "Thread::Queue#pop(*)"
    }
}
