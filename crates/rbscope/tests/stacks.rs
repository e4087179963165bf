//! `rbscope stacks`: every thread of a real Ruby process (no agent loaded) read from outside,
//! paused and running, and from a core file written by gdb's `gcore`; checked frame by frame
//! against the threads' own `Thread#backtrace_locations`. And the errors a user meets: no such
//! process, not a Ruby process, not permitted, garbage or truncated core files.

mod common;

use common::{ruby_at_least, Sandbox};
use serde_json::Value as J;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

/// 20 threads: 16 sleepers in a method with keyword parameters, a queue waiter, a method on
/// one object inside a block, a method of a refinement, and the main thread. Each writes down its own backtrace once all
/// are asleep; then the program prints "ready" and sleeps.
const PROGRAM: &str = r##"require "json"

class Sleeper
  def nap(seconds, label: "x")
    loop do
      sleep
    end
  end
end

module Waiting
  def self.on(queue)
    queue.pop
  end
end

class Worker; end
worker = Worker.new
def worker.special(n, *rest, &blk)
  [1].each do
    sleep
  end
end

module Ext
  refine String do
    def shout(times)
      sleep
    end
  end
end
using Ext

queue = Queue.new
threads = 16.times.map do |i|
  Thread.new { Sleeper.new.nap(1) }.tap { |t| t.name = "sleeper-#{i}" }
end
threads << Thread.new { Waiting.on(queue) }.tap { |t| t.name = "waiter" }
threads << Thread.new { worker.special(1, 2) }.tap { |t| t.name = "special" }
threads << Thread.new { "hi".shout(2) }.tap { |t| t.name = "refined" }
Thread.pass until threads.all? { |t| t.status == "sleep" && t.backtrace_locations.size > 2 }
own = threads.to_h { |t| [t.name, t.backtrace_locations.map { |l| "#{l.path}:#{l.lineno}" }] }
File.write("own_backtraces.json", JSON.generate(own))
$stdout.puts "ready #{Process.pid}"
$stdout.flush
sleep
"##;

struct Program {
    child: Child,
    sandbox: Sandbox,
}

impl Program {
    fn start() -> Program {
        Program::run("threads.rb", PROGRAM)
    }

    /// Runs `text` (which prints a line starting with "ready" once set up); killed on drop.
    fn run(name: &str, text: &str) -> Program {
        let sandbox = Sandbox::new();
        let script = sandbox.write(name, text);
        let mut child = Command::new("ruby")
            .arg(&script)
            .current_dir(sandbox.dir.path())
            .env_remove("RUBYOPT")
            .stdout(Stdio::piped())
            .spawn()
            .expect("ruby must be installed: scripts/install-deps");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("ready"), "program did not start: {line:?}");
        Program { child, sandbox }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn own_backtraces(&self) -> J {
        let text =
            std::fs::read_to_string(self.sandbox.dir.path().join("own_backtraces.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stacks_json(args: &[&str]) -> J {
    let out = Command::new(common::cli())
        .arg("stacks")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stacks failed: {}",
        common::stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn thread<'a>(report: &'a J, name: &str) -> &'a J {
    report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thread {name} in {report:#}"))
}

fn places(t: &J) -> Vec<String> {
    t["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{}:{}", f["path"].as_str().unwrap(), f["line"]))
        .collect()
}

fn labels(t: &J) -> Vec<&str> {
    t["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect()
}

/// The checks shared by the live and the core-file reads.
fn check_report(report: &J, own: &J) {
    let threads = report["threads"].as_array().unwrap();
    assert_eq!(
        threads.len(),
        20,
        "every thread, not only the one holding the GVL"
    );
    assert_eq!(threads[0]["main"], true);
    for (name, expected) in own.as_object().unwrap() {
        let t = thread(report, name);
        let expected: Vec<String> = expected
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            places(t),
            expected,
            "thread {name}: path:line of every frame"
        );
        assert!(t["error"].is_null());
    }
    assert_eq!(
        labels(thread(report, "sleeper-3")),
        [
            "Kernel#sleep(*)",
            "Sleeper#nap{block}(seconds, label:)",
            "Kernel#loop()",
            "Sleeper#nap(seconds, label:)",
            // Started inside `16.times.map do ... end`: a block in a block.
            "Object$singleton#<main>{block}{block}()",
        ]
    );
    assert_eq!(
        labels(thread(report, "waiter"))[..2],
        [queue_pop(), "Waiting.on(queue)"]
    );
    assert_eq!(
        labels(thread(report, "special"))[..4],
        [
            "Kernel#sleep(*)",
            "Worker$singleton#special{block}(n, *rest, &blk)",
            "Array#each()",
            "Worker$singleton#special(n, *rest, &blk)",
        ]
    );
    assert_eq!(
        labels(thread(report, "refined"))[..2],
        ["Kernel#sleep(*)", "String$refinement@Ext#shout(times)"]
    );
    let main = labels(&threads[0]);
    assert_eq!(main.first(), Some(&"Kernel#sleep(*)"));
    assert_eq!(main.last(), Some(&"Object$singleton#<main>()"));
    // The main thread sleeps on the program's last line.
    assert_eq!(threads[0]["frames"][0]["line"], PROGRAM.lines().count());
}

#[test]
fn every_thread_of_a_live_process_paused_and_running() {
    let p = Program::start();
    let own = p.own_backtraces();
    let pid = p.pid().to_string();

    let paused = stacks_json(&["-p", &pid, "--remote"]);
    check_report(&paused, &own);
    assert!(paused["paused_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(thread(&paused, "waiter")["status"], "sleeping forever");

    let running = stacks_json(&["-p", &pid, "--remote", "--no-pause"]);
    check_report(&running, &own);
    assert!(running["paused_ms"].is_null());

    // The text form, as a user reads it.
    let out = Command::new(common::cli())
        .args(["stacks", "-p", &pid, "--remote"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("Ruby {}", common::ruby_version())),
        "{text}"
    );
    assert!(text.contains("Thread 1 (main, tid "), "{text}");
    assert!(
        text.contains("threads.rb:6:in Sleeper#nap{block}(seconds, label:)"),
        "{text}"
    );

    // The process was only paused: it still answers afterwards.
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        !status.contains("TracerPid:\t") || status.contains("TracerPid:\t0"),
        "{status}"
    );
}

use std::path::Path;

#[test]
fn the_same_stacks_from_a_core_file_written_by_gcore() {
    let p = Program::start();
    let own = p.own_backtraces();
    let core = p.sandbox.dir.path().join("core");
    let out = Command::new("gcore")
        .arg("-o")
        .arg(&core)
        .arg(p.pid().to_string())
        .output()
        .expect("gcore (package gdb) must be installed: scripts/install-deps");
    assert!(out.status.success(), "gcore: {}", common::stderr(&out));
    let core = format!("{}.{}", core.display(), p.pid());
    let ruby = std::fs::canonicalize(format!("/proc/{}/exe", p.pid())).unwrap();
    let report = stacks_json(&["--core", &core, "--ruby", ruby.to_str().unwrap()]);
    check_report(&report, &own);
}

/// A core as big as the process was is mapped, not read: `stacks --core` of a 400 MB core
/// keeps its resident memory far below that (it read the whole file before).
#[test]
fn a_big_core_file_is_read_without_loading_it() {
    let sb = Sandbox::new();
    let script = sb.write(
        "big.rb",
        r#"
class Holder
  def hold(bytes)
    big = "x" * bytes
    $stdout.puts "ready"
    $stdout.flush
    sleep
  end
end
Holder.new.hold(400_000_000)
"#,
    );
    let mut child = sb.ruby(&script).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let pid = child.id();
    let core = sb.dir.path().join("core");
    let out = Command::new("gcore")
        .arg("-o")
        .arg(&core)
        .arg(pid.to_string())
        .output()
        .expect("gcore (package gdb) must be installed: scripts/install-deps");
    let ruby = std::fs::canonicalize(format!("/proc/{pid}/exe")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "gcore: {}", common::stderr(&out));
    let core = format!("{}.{pid}", core.display());
    let core_kib = std::fs::metadata(&core).unwrap().len() / 1024;
    assert!(core_kib > 400_000, "the core is {core_kib} KiB");
    // Waited for below with wait4, which gives its own peak memory (Child::wait does not).
    #[allow(clippy::zombie_processes)]
    let mut cli = Command::new(common::cli())
        .args(["stacks", "--core", &core, "--ruby", ruby.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let cli_pid = cli.id() as i32;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut cli.stdout.take().unwrap(), &mut text).unwrap();
    // This child's own peak resident memory, from wait4.
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the two locals.
    let waited = unsafe { libc::wait4(cli_pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, cli_pid);
    assert!(text.contains("in Holder#hold(bytes)"), "{text}");
    let peak_kib = usage.ru_maxrss as u64;
    assert!(
        peak_kib < core_kib / 4,
        "stacks --core peaked at {peak_kib} KiB for a {core_kib} KiB core"
    );
}

fn stacks_error(args: &[&str]) -> String {
    let out = Command::new(common::cli())
        .arg("stacks")
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = common::stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn errors_say_what_happened_and_what_to_do() {
    // No such process.
    let err = stacks_error(&["-p", "2147483000", "--remote"]);
    assert!(err.contains("no process with PID 2147483000"), "{err}");

    // Not a Ruby process.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let err = stacks_error(&["-p", &sleeper.id().to_string(), "--remote"]);
    assert!(err.contains("does not look like Ruby"), "{err}");
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // Garbage and truncated core files.
    let sb = Sandbox::new();
    let garbage = sb.write("garbage", "this is not a core file");
    let err = stacks_error(&[
        "--core",
        garbage.to_str().unwrap(),
        "--ruby",
        "/usr/bin/ruby",
    ]);
    assert!(
        err.contains("is not a 64-bit little-endian ELF core file"),
        "{err}"
    );
    let p = Program::start();
    let core = sb.dir.path().join("core");
    let out = Command::new("gcore")
        .arg("-o")
        .arg(&core)
        .arg(p.pid().to_string())
        .output()
        .unwrap();
    assert!(out.status.success());
    let core = std::path::PathBuf::from(format!("{}.{}", core.display(), p.pid()));
    let bytes = std::fs::read(&core).unwrap();
    let cut = sb.write("cut", "");
    std::fs::write(&cut, &bytes[..4096]).unwrap();
    let err = stacks_error(&["--core", cut.to_str().unwrap(), "--ruby", "/usr/bin/ruby"]);
    assert!(err.contains("truncated or damaged"), "{err}");
    // A --ruby that does not exist.
    let err = stacks_error(&[
        "--core",
        core.to_str().unwrap(),
        "--ruby",
        "/nonexistent/ruby",
    ]);
    assert!(err.contains("does not exist"), "{err}");

    // Not permitted: another user may not read this process.
    let pid = p.pid().to_string();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::cli())
        .args(["stacks", "-p", &pid, "--remote"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = common::stderr(&out);
    assert!(err.contains("not permitted to read process"), "{err}");
    assert!(err.contains("CAP_SYS_PTRACE"), "{err}");
}

/// A thread whose stack changes all the time, read without pausing: every stack shown must be
/// one that really happened (every frame a known method at its own line), or be reported as
/// not shown; never a mix of two moments.
#[test]
fn a_changing_stack_read_running_is_shown_whole_or_not_at_all() {
    const CHURN: &str = r#"class Churn
  def dive(n)
    n.zero? ? n : dive(n - 1)
  end

  def run
    loop do
      dive(rand(30))
    end
  end
end
t = Thread.new { Churn.new.run }
t.name = "churn"
Thread.pass until t.backtrace_locations.to_a.size > 3
$stdout.puts "ready #{Process.pid}"
$stdout.flush
t.join
"#;
    let p = Program::run("churn.rb", CHURN);
    let pid = p.pid().to_string();
    let (mut whole, mut refused) = (0, 0);
    for _ in 0..100 {
        let report = stacks_json(&["-p", &pid, "--remote", "--no-pause"]);
        let t = thread(&report, "churn");
        if !t["error"].is_null() {
            assert!(t["error"].as_str().unwrap().starts_with("not shown"), "{t}");
            refused += 1;
            continue;
        }
        whole += 1;
        // From the bottom, frames must follow what the program can be doing at one moment:
        // main's block, run, loop, run's block, then rand or dive..., then a C call in dive.
        let frames: Vec<(i64, &str, bool)> = t["frames"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|f| {
                (
                    f["line"].as_i64().unwrap(),
                    f["label"].as_str().unwrap(),
                    f["cfunc"] == true,
                )
            })
            .collect();
        for (i, &(line, label, cfunc)) in frames.iter().enumerate() {
            let fits = match i {
                0 => (line, label) == (12, "Object$singleton#<main>{block}()"),
                1 => (line, label) == (7, "Churn#run()"),
                // Kernel#loop is Ruby code from 3.3 on, at its own line of <internal:kernel>.
                2 if ruby_at_least(3, 3) => label == "Kernel#loop()" && !cfunc,
                2 => (line, label) == (7, "Kernel#loop()"),
                3 => {
                    (line, label) == (8, "Churn#run{block}()")
                        // Returning from an iteration: `leave` is on the block's `end` line.
                        || (line, label) == (9, "Churn#run{block}()") && i == frames.len() - 1
                }
                4 if cfunc => line == 8 && i == frames.len() - 1,
                _ if cfunc => line == 3 && i == frames.len() - 1,
                // `n.zero?` runs Ruby code of its own (<internal:numeric>).
                _ if label == "Integer#zero?()" => i == frames.len() - 1,
                // The innermost dive may be returning: `leave` is on the `end` line.
                _ if line == 4 => label == "Churn#dive(n)" && i == frames.len() - 1,
                _ => (line, label) == (3, "Churn#dive(n)"),
            };
            assert!(fits, "frame {i} never ran like this: {line} {label} in {t}");
        }
        assert!(frames.len() >= 2, "{t}");
    }
    assert!(whole > 0, "never read whole ({refused} refused)");
}

/// Threads of every ractor, not only the main one.
#[test]
fn threads_of_other_ractors_are_shown() {
    const RACTORS: &str = r#"class Worker
  def self.work = sleep
end
Warning[:experimental] = false
Ractor.new { Worker.work }
$stdout.puts "ready #{Process.pid}"
$stdout.flush
sleep
"#;
    let p = Program::run("ractors.rb", RACTORS);
    let pid = p.pid().to_string();
    // The ractor's thread starts on its own; read until it is there (a real process, no sleep:
    // each read is a fresh look).
    let mut seen = None;
    for _ in 0..200 {
        let report = stacks_json(&["-p", &pid, "--remote"]);
        let found = report["threads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| labels(t).contains(&"Worker.work()"));
        if found {
            seen = Some(report);
            break;
        }
    }
    let report = seen.expect("the other ractor's thread never showed");
    let threads = report["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 2, "{report:#}");
    let worker = threads.iter().find(|t| t["main"] == false).unwrap();
    assert_eq!(labels(worker)[..2], ["Kernel#sleep(*)", "Worker.work()"]);
    assert_eq!(worker["frames"][1]["line"], 2);
}

/// The agent's `Rbscope.backtrace(thread)` and `rbscope stacks --remote` label the same
/// threads the same way: every place rbscope shows a frame shows the same label.
/// Runs `threads_code` (which sets `threads`, each named and about to sleep) with the gem
/// loaded; once all sleep, the labels the agent gives each thread (`Rbscope.backtrace`, by
/// thread name) and `stacks --remote`'s report of the same process. The program runs until the
/// returned `Program` is dropped.
fn labels_both_ways(name: &str, threads_code: &str) -> (Program, J, J) {
    let text = format!(
        r##"require "json"
require "rbscope"
{threads_code}
Thread.pass until threads.all? {{ |t| t.status == "sleep" }}
own = threads.to_h {{ |t| [t.name, Rbscope.backtrace(t).map(&:label)] }}
File.write("agent_labels.json", JSON.generate(own))
$stdout.puts "ready #{{Process.pid}}"
$stdout.flush
sleep
"##
    );
    let sandbox = Sandbox::new();
    let script = sandbox.write(name, &text);
    let mut child = sandbox
        .ruby(&script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let p = Program { child, sandbox };
    assert!(line.starts_with("ready"), "{line:?}");
    let agent: J = serde_json::from_str(
        &std::fs::read_to_string(p.sandbox.dir.path().join("agent_labels.json")).unwrap(),
    )
    .unwrap();
    let report = stacks_json(&["-p", &p.pid().to_string(), "--remote"]);
    (p, agent, report)
}

#[test]
fn labels_read_from_outside_match_the_agents() {
    const BOTH: &str = r##"module Ext
  refine String do
    def shout(times, loud: true) = [1].each { sleep }
  end
end
using Ext
module Shop
  class Cart
    def self.checkout(cart, *items, &done) = new.total(cart, **{})
    def total(cart, **opts)
      3.times { |i| loop { sleep } }
    end
  end
end
o = Object.new
def o.solo(a, b = 2) = Shop::Cart.checkout(a)
threads = [
  Thread.new { o.solo(1) }.tap { |t| t.name = "solo" },
  Thread.new { "x".shout(2) }.tap { |t| t.name = "refined" },
  Thread.new { Queue.new.pop }.tap { |t| t.name = "queue" },
]
"##;
    let (_program, agent, report) = labels_both_ways("both.rb", BOTH);
    for name in ["solo", "refined", "queue"] {
        let theirs: Vec<&str> = agent[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(labels(thread(&report, name)), theirs, "thread {name}");
    }
    assert_eq!(
        labels(thread(&report, "solo"))[..3],
        [
            "Kernel#sleep(*)",
            "Shop::Cart#total{block}{block}(cart, **opts)",
            "Kernel#loop()"
        ]
    );
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

/// Every construct a frame can come from, one thread each, parked in `sleep`: the labels the
/// agent gives (`Rbscope.backtrace`) and the labels read from outside (`stacks --remote`) agree
/// frame for frame, on every Ruby. Among them the cases the two readers once named apart: a
/// block inside a `define_method` body, and `define_method` inside `class << self`.
#[test]
fn every_construct_is_labelled_the_same_in_process_and_from_outside() {
    const CONSTRUCTS: &str = r##"class D
  define_method(:m) { [1].map { |x| sleep } }
  define_method(:with_args) { |a, b = 1, *rest, k:, &blk| sleep }
end
class S
  class << self
    define_method(:m) { |&b| sleep }
    def plain(x) = sleep
  end
end
module Helpers
  module_function
  def helper(v) = sleep
end
class Base
  def run(x) = sleep
end
class Child < Base
  def run(x)
    super
  end
  alias_method :go, :run
end
class Ghost
  def method_missing(name, *args) = sleep
  def respond_to_missing?(*) = true
end
Point = Struct.new(:x) do
  def wait = sleep
end
class Holder
  def initialize
    @v = 1
  end
  def with_exec = instance_exec(2) { |n| sleep }
  def with_eval = instance_eval { sleep }
end
class Lazy
  def each_wait = [1, 2].each_with_index.map { |a, i| lambda { |q| sleep }.call(a) }
  def proc_wait = proc { |a, (b, c)| sleep }.call(1, [2, 3])
  def nested = [1].each { [2].each { [3].each { sleep } } }
  def ensured
    sleep
  ensure
    nil
  end
  def rescued
    raise "x"
  rescue
    sleep
  end
end
class Evaluated
  class_eval "def from_string(a) = sleep", "evaluated.rb", 1
end
obj = Object.new
def obj.solo = sleep
cases = {
  "define_method_block" => -> { D.new.m },
  "define_method_args" => -> { D.new.with_args(1, k: 2) },
  "singleton_define_method" => -> { S.m },
  "singleton_def" => -> { S.plain(1) },
  "module_function" => -> { Helpers.helper(1) },
  "super" => -> { Child.new.run(1) },
  "alias" => -> { Child.new.go(1) },
  "method_missing" => -> { Ghost.new.vanish(1) },
  "struct_block" => -> { Point.new(1).wait },
  "instance_exec" => -> { Holder.new.with_exec },
  "instance_eval" => -> { Holder.new.with_eval },
  "lambda" => -> { Lazy.new.each_wait },
  "proc" => -> { Lazy.new.proc_wait },
  "nested_blocks" => -> { Lazy.new.nested },
  "ensure" => -> { Lazy.new.ensured },
  "rescue" => -> { Lazy.new.rescued },
  "class_eval_string" => -> { Evaluated.new.from_string(1) },
  "object_singleton" => -> { obj.solo },
  "top_level_block" => -> { [1].each { sleep } },
}
threads = cases.map { |name, body| Thread.new(&body).tap { |t| t.name = name } }
"##;
    let (_program, agent, report) = labels_both_ways("constructs.rb", CONSTRUCTS);
    let mut differ = Vec::new();
    for (name, own) in agent.as_object().unwrap() {
        let own: Vec<&str> = own
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let outside = labels(thread(&report, name));
        if outside != own {
            differ.push(format!(
                "{name}:\n  in process: {own:?}\n  outside:    {outside:?}"
            ));
        }
    }
    assert!(differ.is_empty(), "labels differ:\n{}", differ.join("\n"));
    // The cases the two readers once named apart, named as Ruby's own frames say.
    let block = labels(thread(&report, "define_method_block"));
    assert!(
        block.iter().any(|l| l.starts_with("D#m{block}")),
        "{block:?}"
    );
    let single = labels(thread(&report, "singleton_define_method"));
    assert!(single.iter().any(|l| l.starts_with("S.m(")), "{single:?}");
}
