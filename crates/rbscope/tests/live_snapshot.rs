//! Live snapshots, without an exception: `Rbscope.snapshot(thread)` from the app, and
//! `rbscope snapshot -p PID` from outside through the agent. Real processes: a worker parked in
//! a method with known locals, a loop whose local changes; each snapshot is listed as `(live)`,
//! shown, and restored with its values; bad input gets one clear line.

mod common;
use common::*;
use serde_json::Value as J;
use std::path::PathBuf;
use std::process::Command;

/// The app's side: a worker parked in `Worker#wait_for` with `step` 42, snapshotted from the main
/// thread; the main thread snapshotted too; wrong arguments rescued and printed.
const API_APP: &str = r#"
class Worker
  def initialize = @jobs = 3
  def wait_for(parked, go)
    step = 42
    parked << :parked
    go.pop
    step
  end
end
parked = Queue.new
go = Queue.new
t = Thread.new do
  Thread.current.name = "worker-1"
  Worker.new.wait_for(parked, go)
end
parked.pop
# The worker is blocked in go.pop, inside wait_for: its frame is still and step is 42.
sleep 0.01 until t.status == "sleep"
worker_id = Rbscope.snapshot(t, ticket: "T-1")
main_id = Rbscope.snapshot
go << :go
t.join
errors = [
  (begin; Rbscope.snapshot(42); rescue TypeError => e; e.message; end),
  (begin; Rbscope.snapshot(t); rescue ArgumentError => e; e.message; end),
  (begin; Rbscope.snapshot(how: 7); rescue TypeError => e; e.message; end),
]
Rbscope.flush
puts "WORKER=#{worker_id}"
puts "MAIN=#{main_id}"
errors.each { |e| puts "ERROR=#{e}" }
"#;

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

fn local<'a>(snap: &'a J, frame: &'a J, name: &str) -> &'a J {
    Snap(snap).local(frame, name)
}

#[test]
fn the_app_snapshots_a_thread_now_and_it_restores() {
    let sb = Sandbox::new();
    let out = sb.run_started("app.rb", API_APP);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    let worker = line(&text, "WORKER=").to_string();
    let main = line(&text, "MAIN=").to_string();
    let errors: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ERROR="))
        .collect();
    assert_eq!(
        errors,
        [
            "rbscope: Rbscope.snapshot(thread) expects a Thread, got 42",
            "rbscope: Rbscope.snapshot: the thread has ended: nothing to snapshot",
            "rbscope: Rbscope.snapshot(how:) expects a String or Symbol, got 7",
        ],
        "{text}"
    );

    // Listed as (live), with the thread and who asked.
    let list = sb.list();
    assert_eq!(list.len(), 2, "{list:?}");
    for s in &list {
        assert_eq!(s["exception_class"], "(live)", "{s}");
    }

    let snap = sb.show(&worker);
    assert_eq!(
        snap["trigger"],
        serde_json::json!({"kind": "live", "thread": "worker-1", "reason": "asked by Rbscope.snapshot"})
    );
    assert_eq!(snap["exception"]["class"], "(live)");
    assert_eq!(snap["context"]["thread_name"], "worker-1");
    assert_eq!(snap["context"]["extra"]["ticket"], "T-1");
    let s = Snap(&snap);
    let f = s.frame("Worker#wait_for");
    assert_eq!(f, &snap["frames"][0], "the worker's innermost app frame");
    assert_eq!(local(&snap, f, "step")["value"], 42);
    let me = s.obj(&f["self"]);
    assert_eq!(s.ivar(me, "@jobs")["value"], 3);
    let text = sb.show_text(&worker);
    assert!(
        text.starts_with("live snapshot: thread worker-1 (asked by Rbscope.snapshot)\n"),
        "{text}"
    );

    // The main thread's own snapshot: its frame at the line that asked.
    let snap = sb.show(&main);
    assert_eq!(snap["trigger"]["thread"], "main");
    let top = &snap["frames"][0];
    assert!(top["label"].as_str().unwrap().contains("<main>"), "{top}");
    // The worker's snapshot id was assigned before this one was taken.
    let s = Snap(&snap);
    assert_eq!(s.obj(local(&snap, top, "worker_id"))["value"], *worker);

    // Restored like any snapshot: the worker's frame with step 42.
    let out = with_input(
        sb.cli().args(["restore", &worker]),
        r#"puts "STEP=#{step} JOBS=#{@jobs}""#,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains("STEP=42 JOBS=3"), "{text}");
}

/// A worker that loops, its local `n` growing; it prints `ready` once it has looped.
const LOOP_APP: &str = r#"
require "rbscope"
Rbscope.start
class Looper
  def run(ready)
    n = 0
    loop do
      n += 1
      ready << n if n == 1
      sleep 0.001
    end
  end
end
ready = Queue.new
Thread.new do
  Thread.current.name = "looper"
  Looper.new.run(ready)
end
ready.pop
$stdout.puts "ready"
$stdout.flush
sleep
"#;

fn cli_in(store: &PathBuf, args: &[&str]) -> std::process::Output {
    Command::new(cli())
        .args(args)
        .env("RBSCOPE_STORE", store)
        .env("RBSCOPE_RUBY_LIB", gem_lib())
        .output()
        .unwrap()
}

#[test]
fn rbscope_snapshot_takes_threads_of_a_running_process() {
    let sb = Sandbox::new();
    let store = sb.store();
    let script = sb.write("loop.rb", LOOP_APP);
    let p = Running::start(sb, &script, &[], "ready");
    let pid = p.pid();

    // One thread by name: one line with the new id; the process goes on.
    let out = cli_in(&store, &["snapshot", "-p", &pid, "--thread", "looper"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    let (first, rest) = text.trim().split_once("  ").unwrap();
    assert!(rest.starts_with("thread looper (tid "), "{text}");
    assert!(
        stderr(&out).contains("1 of 1 threads snapshotted"),
        "{}",
        stderr(&out)
    );

    // Every thread, as JSON: the main thread and the looper (not the agent's own).
    let out = cli_in(&store, &["snapshot", "-p", &pid, "--all", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all: J = serde_json::from_slice(&out.stdout).unwrap();
    let threads: Vec<&str> = all["taken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thread"].as_str().unwrap())
        .collect();
    assert_eq!(threads.len(), 2, "{all}");
    assert!(threads[0].starts_with("main (tid "), "{all}");
    assert!(threads[1].starts_with("looper (tid "), "{all}");
    let second = all["taken"][1]["id"].as_str().unwrap().to_string();

    // Both looper snapshots show the loop's frame; its local only grows.
    let show = |id: &str| -> J {
        let out = cli_in(&store, &["show", id, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, b) = (show(first), show(&second));
    let n = |snap: &J| -> i64 {
        let f = Snap(snap).frame("Looper#run{block}");
        Snap(snap).local(f, "n")["value"].as_i64().unwrap()
    };
    assert!(n(&a) >= 1 && n(&b) >= n(&a), "{} then {}", n(&a), n(&b));
    assert_eq!(a["trigger"]["reason"], "asked by rbscope snapshot -p");
    assert_eq!(a["exception"]["class"], "(live)");

    // Restored: the loop's frame with the value stored.
    let mut restore = Command::new(cli());
    restore
        .args(["restore", first])
        .env("RBSCOPE_STORE", &store)
        .env("RBSCOPE_RUBY_LIB", gem_lib());
    let out = with_input(&mut restore, r#"puts "N=#{n}""#);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains(&format!("N={}", n(&a))), "{text}");

    // A thread that is not there: one line naming those that are, exit 1, nothing stored.
    let before = cli_in(&store, &["list", "--json"]);
    let out = cli_in(&store, &["snapshot", "-p", &pid, "--thread", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no thread named or with tid \"nope\"; the threads are: main (tid ")
            && err.contains("looper (tid "),
        "{err}"
    );
    assert_eq!(before.stdout, cli_in(&store, &["list", "--json"]).stdout);

    // --thread and --all together are refused by the parser.
    let out = cli_in(
        &store,
        &["snapshot", "-p", &pid, "--all", "--thread", "looper"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn rbscope_snapshot_says_what_is_wrong_with_the_process() {
    let sb = Sandbox::new();
    let store = sb.store();
    // No such process.
    let out = cli_in(&store, &["snapshot", "-p", "999999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no process with PID 999999999"),
        "{}",
        stderr(&out)
    );

    // A Ruby process without the agent: the way to load it.
    let script = sb.write("plain.rb", "$stdout.puts \"ready\"\n$stdout.flush\nsleep\n");
    let p = Running::start(sb, &script, &[], "ready");
    let out = cli_in(&store, &["snapshot", "-p", &p.pid()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("has no rbscope agent listening") && err.contains("rbscope inject -p"),
        "{err}"
    );
}
