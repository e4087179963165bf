//! Which raises become snapshots: VM-raised and C-raised exceptions, threads, forks, explicit
//! reports, rescued exceptions (none), rate limits, and RBSCOPE_DISABLE.

mod common;
use common::*;
use serde_json::Value as J;

fn assert_top_frame_has_local(sb: &Sandbox, label: &str, local: &str) -> serde_json::Value {
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let f = s.frame(label);
    s.local(f, local);
    snap
}

#[test]
fn exceptions_raised_by_the_vm_and_by_c_code_are_seen() {
    let cases = [
        ("nil_call", "x = nil\n  x.foo", "NoMethodError"),
        ("undefined_local", "x = 1\n  undefined_thing", "NameError"),
        ("fetch", "x = {}\n  x.fetch(:missing)", "KeyError"),
        ("integer", "x = \"abc\"\n  Integer(x)", "ArgumentError"),
        ("zero", "x = 0\n  1 / x", "ZeroDivisionError"),
    ];
    for (name, body, class) in cases {
        let sb = Sandbox::new();
        let out = sb.run_started(
            &format!("{name}.rb"),
            &format!("def {name}\n  {body}\nend\n{name}\n"),
        );
        assert!(!out.status.success());
        let snap = assert_top_frame_has_local(&sb, &format!("Object#{name}"), "x");
        assert_eq!(snap["exception"]["class"], class, "{name}");
        assert_eq!(snap["frames"][0]["label"], format!("Object#{name}()"));
        assert_eq!(snap["frames"][0]["lineno"], 5, "{name}: the raising line");
    }
}

#[test]
fn an_exception_escaping_a_thread_is_stored() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "thread.rb",
        r#"
class Worker
  def perform(job)
    attempt = 3
    raise IOError, "worker failed on #{job}"
  end
end
Thread.report_on_exception = false
t = Thread.new { Worker.new.perform("job-7") }
t.name = "worker-1"
begin
  t.join
rescue IOError => e
  # the main thread handles it; the thread still died of it
  puts e.backtrace
end
# Threads that end normally, or after rescuing, report nothing.
Thread.new { 1 + 1 }.join
Thread.new { raise "handled" rescue nil }.join
Thread.new { begin; raise "handled"; rescue; end; :ok }.join
puts Thread.new { caller_locations.map(&:to_s) }.value
Rbscope.flush
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = assert_top_frame_has_local(&sb, "Worker#perform", "attempt");
    assert_eq!(snap["exception"]["class"], "IOError");
    assert_eq!(snap["context"]["extra"]["reported_by"], "escaped a thread");
    assert_eq!(sb.list().len(), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("thread.rb"), "{text}");
}

#[test]
fn rescued_exceptions_store_nothing_and_report_stores_one() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "rescued.rb",
        r#"
100.times { begin; raise "handled"; rescue; end }
def risky
  amount = 12
  raise ArgumentError, "bad amount"
end
begin
  risky
rescue => e
  id = Rbscope.report(e, order_id: 77)
  puts "ID=#{id}"
end
Rbscope.flush
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let snap = assert_top_frame_has_local(&sb, "Object#risky", "amount");
    assert!(
        stdout.contains(&format!("ID={}", snap["id"].as_str().unwrap())),
        "{stdout}"
    );
    assert_eq!(snap["context"]["extra"]["order_id"], "77");
    assert!(stderr(&out).contains(&format!(
        "[rbscope] snapshot {} stored",
        snap["id"].as_str().unwrap()
    )));
}

#[test]
fn cause_chain_is_kept() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "cause.rb",
        r#"
def inner
  depth = 2
  {}.fetch(:config)
end
def outer
  inner
rescue KeyError
  raise RuntimeError, "could not load config"
end
outer
"#,
    );
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    assert_eq!(snap["exception"]["class"], "RuntimeError");
    assert_eq!(snap["exception"]["causes"][0]["class"], "KeyError");
    // The cause's own frames hold the deepest state.
    let cause_frame = &snap["exception"]["causes"][0]["frames"][0];
    assert_eq!(cause_frame["label"], "Object#inner()");
    assert_eq!(cause_frame["locals"][0]["name"], "depth");
    let text = sb.show_text(snap["id"].as_str().unwrap());
    assert!(text.contains("caused by KeyError"), "{text}");
    assert!(text.contains("Object#inner()"), "{text}");
}

#[test]
fn eight_forked_children_raising_at_once_store_eight_snapshots() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "forks.rb",
        r#"
r, w = IO.pipe
pids = 8.times.map do |i|
  fork do
    r.read(1) # wait until every child exists, then raise together
    child = i
    raise "child #{i} failed"
  end
end
w.write("x" * 8); w.close
statuses = pids.map { |pid| Process.wait2(pid)[1] }
puts statuses.map(&:exitstatus).inspect
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = sb.list();
    assert_eq!(rows.len(), 8, "{rows:#?}\n{}", stderr(&out));
    let mut pids: Vec<_> = rows.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 8);
    for r in rows {
        let snap = sb.show(r["id"].as_str().unwrap());
        let s = Snap(&snap);
        s.local(s.frame("Object$singleton#<main>{block}{block}"), "child");
    }
}

/// A fork while the parent's writer thread is in the middle of a write: each child still
/// stores its own snapshot. (Before the writer was held around fork, the child inherited
/// SQLite's lock table mid-write and its new connection waited forever: 1 to 6 children in
/// 10 lost their snapshot.)
#[test]
fn children_forked_while_the_parent_writes_store_their_snapshots() {
    let sb = Sandbox::new();
    let script = sb.write(
        "busy_forks.rb",
        r#"require "rbscope"
Rbscope.start(log: false, rate_limit: 0)
class Boom < StandardError; end
def deep(n, text) = n.zero? ? raise(Boom, text) : deep(n - 1, text)
def report(text)
  deep(20, text)
rescue Boom => e
  Rbscope.report(e)
end
ready = Queue.new
busy = Thread.new { n = 0; loop { report("parent"); ready << true if (n += 1) == 20 } }
ready.pop
results = 16.times.map do |i|
  pid = fork do
    report("child #{i}")
    stored = Rbscope.flush(10) && Rbscope.counters[:stored] == 1
    exit!(stored ? 0 : 1)
  end
  Process.wait2(pid)[1].exitstatus
end
busy.kill.join
puts "children that stored: #{results.count(0)} of #{results.size}"
"#,
    );
    let out = sb.ruby(&script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "children that stored: 16 of 16\n",
        "{}",
        stderr(&out)
    );
}

#[test]
fn rate_limit_per_fingerprint_drops_and_counts() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "storm.rb",
        r#"
def flaky(i)
  raise "storm #{i}"
end
25.times do |i|
  begin
    flaky(i)
  rescue => e
    Rbscope.report(e)
  end
end
Rbscope.flush
puts Rbscope.counters[:rate_limited]
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.list().len(), 10);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "15");
}

#[test]
fn report_all_raises_mode_stores_rescued_raises() {
    let sb = Sandbox::new();
    let script = sb.write(
        "all.rb",
        "require 'rbscope'\nRbscope.start(report_all_raises: true, rate_limit: 0)\n3.times { |i| begin; raise \"r#{i}\"; rescue; end }\nRbscope.flush\n",
    );
    let out = sb.ruby(&script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.list().len(), 3);
}

#[test]
fn disable_turns_everything_off() {
    let sb = Sandbox::new();
    let script = sb.write(
        "off.rb",
        "require 'rbscope'\np Rbscope.start\np defined?(Rbscope::Native)\nraise 'x'\n",
    );
    let out = sb
        .ruby(&script)
        .env("RBSCOPE_DISABLE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "false\nnil\n");
    assert!(!sb.store().exists());
}

#[test]
fn library_frames_are_skipped() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "lib.rb",
        "require 'json'\ndef parse(text)\n  JSON.parse(text)\nend\nparse('{oops')\n",
    );
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    let frames = snap["frames"].as_array().unwrap();
    assert!(!frames.is_empty());
    for f in frames {
        let path = f["path"].as_str().unwrap();
        assert!(
            !path.starts_with("/usr/lib/ruby"),
            "library frame captured: {path}"
        );
    }
    assert_eq!(frames[0]["label"], "Object#parse(text)");
}

#[test]
fn frame_cap_counts_skipped_frames() {
    let sb = Sandbox::new();
    let script = sb.write(
        "cap.rb",
        "require 'rbscope'\nRbscope.start(max_frames: 3)\ndef rec(n)\n  n.zero? ? raise('deep') : rec(n - 1)\nend\nrec(10)\n",
    );
    let out = sb.ruby(&script).output().unwrap();
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    assert_eq!(snap["frames"].as_array().unwrap().len(), 3);
    assert_eq!(snap["stats"]["frames_skipped"], 9);
    assert_eq!(snap["frames"][1]["label"], "Object#rec(n)");
}

#[test]
fn rbscope_run_starts_the_agent() {
    let sb = Sandbox::new();
    let app = sb.write(
        "app.rb",
        "def go\n  ticket = 5\n  raise 'from run'\nend\ngo\n",
    );
    let out = sb
        .cli()
        .args(["run", "--", "ruby"])
        .arg(&app)
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_top_frame_has_local(&sb, "Object#go", "ticket");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sb.store()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn capture_calls_no_application_methods_and_leaves_exceptions_marshalable() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "sneaky.rb",
        r#"
$calls = []
class Sneaky
  def initialize; @x = 1; end
  %i[inspect to_s hash == eql? respond_to? method instance_variables class].each do |m|
    define_method(m) { |*a| $calls << m; super(*a) }
  end
  def method_missing(name, *a) = ($calls << name; super)
end
class LoudError < StandardError
  def backtrace; $calls << :backtrace; super; end
end
def risky
  thing = Sneaky.new
  list = [thing, { thing => thing }]
  raise LoudError, "boom"
end
begin
  risky
rescue => e
  $calls.clear
  Rbscope.report(e)
  Rbscope.flush
  puts "calls=#{$calls.inspect}"
  puts "marshal=#{Marshal.load(Marshal.dump(e)).message}"
end
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("calls=[]"), "{stdout}");
    assert!(stdout.contains("marshal=boom"), "{stdout}");
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let thing = s.obj(s.local(s.frame("Object#risky"), "thing"));
    assert_eq!(thing["class"], "Sneaky");
}

#[test]
fn magic_roots_are_stored_by_name() {
    let sb = Sandbox::new();
    let script = sb.write(
        "magic.rb",
        r#"
module App
  CONFIG = { db: "primary", pool: 5 }
end
require "rbscope"
Rbscope.start(magic_roots: ["App::CONFIG"])
Rbscope.magic_root("App.registry", Object.new)
Rbscope.magic_root("App.pool", [1, 2]) # replaced below: the newest registration wins
POOL = Rbscope.magic_root("App.pool", { size: 5 })
def handle
  config = App::CONFIG
  pool = POOL
  raise "with config"
end
handle
"#,
    );
    let out = sb.ruby(&script).output().unwrap();
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let frame = s.frame("Object#handle");
    let config = s.obj(s.local(frame, "config"));
    assert_eq!(config["kind"], "magic");
    assert_eq!(config["path"], "App::CONFIG");
    let pool = s.obj(s.local(frame, "pool"));
    assert_eq!(pool["kind"], "magic");
    assert_eq!(pool["path"], "App.pool");
    // A restore looks the name up in its own process: the object registered there, or a
    // stand-in naming it.
    let id = snap["id"].as_str().unwrap();
    let check = sb.write(
        "check.rb",
        &format!(
            r#"require "rbscope/restore"
mine = Rbscope.magic_root("App.pool", {{ size: 9 }})
r = Rbscope.restore("{id}", console: false)
p r.frames[0].locals[:pool].equal?(mine)
p r.frames[0].locals[:config].inspect.include?("App::CONFIG")
"#
        ),
    );
    let out = sb
        .ruby(&check)
        .env("RBSCOPE_DISABLE", "1")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "true\ntrue\n",
        "{}",
        stderr(&out)
    );
}

#[test]
fn store_byte_cap_drops_and_counts() {
    let sb = Sandbox::new();
    let script = sb.write(
        "cap.rb",
        r#"
require "rbscope"
Rbscope.start(max_store_bytes: 3000, rate_limit: 0, log: false)
10.times do |i|
  begin
    payload = "x" * 2000 + i.to_s
    raise "big #{i}"
  rescue => e
    Rbscope.report(e)
  end
end
Rbscope.flush
c = Rbscope.counters
puts "stored=#{c[:stored]} over_cap=#{c[:store_over_cap]}"
"#,
    );
    let out = sb.ruby(&script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let rows = sb.list();
    assert!(!rows.is_empty() && rows.len() < 10, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "stored={} over_cap={}",
            rows.len(),
            10 - rows.len()
        )),
        "{stdout}"
    );
}

#[test]
fn context_names_the_process() {
    let sb = Sandbox::new();
    let script = sb.write("ctx.rb", "require 'rbscope'\nRbscope.start\n$0 = 'worker: billing'\nThread.current.name = 'billing'\ndef go\n  raise 'ctx'\nend\ngo\n");
    let out = sb.ruby(&script).env("REVISION", "abc123").output().unwrap();
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    let c = &snap["context"];
    assert_eq!(c["ruby_version"], ruby_version().as_str());
    assert_eq!(c["app_revision"], "abc123");
    assert_eq!(c["process_title"], "worker: billing");
    assert_eq!(c["thread_name"], "billing");
    assert!(c["pid"].as_u64().unwrap() > 0);
    assert!(!c["hostname"].as_str().unwrap().is_empty());
    assert_eq!(c["app_root"], sb.dir.path().to_str().unwrap());
}

#[test]
fn an_unwritable_store_is_logged_and_the_app_is_unaffected() {
    let sb = Sandbox::new();
    let blocker = sb.write("not-a-dir", "a file where a directory should be");
    let script = sb.write("nostore.rb", "require 'rbscope'\nRbscope.start\nbegin; raise 'x'; rescue => e; Rbscope.report(e); end\np Rbscope.flush\nputs Rbscope.counters[:store_errors]\nputs 'still running'\n");
    let out = sb
        .ruby(&script)
        .env("RBSCOPE_STORE", blocker.join("store.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // flush says the snapshot is still waiting.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "false\n1\nstill running\n"
    );
    let err = stderr(&out);
    assert!(
        err.contains("[rbscope] snapshot not stored: cannot open the store"),
        "{err}"
    );
    // At exit, a snapshot that could not be written is not lost silently.
    assert!(
        err.contains("[rbscope] snapshots not written before exit"),
        "{err}"
    );
}

#[test]
fn retention_settings_delete_the_oldest() {
    let sb = Sandbox::new();
    let many = sb.write("many.rb", "require 'rbscope'\nRbscope.start(rate_limit: 0, log: false)\n5.times { |i| begin; raise \"n#{i}\"; rescue => e; Rbscope.report(e); end }\nRbscope.flush\n");
    assert!(sb.ruby(&many).output().unwrap().status.success());
    assert_eq!(sb.list().len(), 5);
    let one = sb.write("one.rb", "require 'rbscope'\nRbscope.start(retention_count: 2, log: false)\nbegin; raise 'new'; rescue => e; Rbscope.report(e); end\nRbscope.flush\nputs Rbscope.counters[:retention_deleted]\n");
    let out = sb.ruby(&one).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    let rows = sb.list();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["message"], "new");
}

/// Odd arguments to `Rbscope.flush` are answered with an exception that says what it wants,
/// and the app goes on (NaN used to reach a Duration and end the process).
#[test]
fn flush_answers_odd_seconds_and_the_app_goes_on() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "flush.rb",
        r##"[Float::NAN, -1, "5", nil, :x, Complex(1, 1)].each do |arg|
  Rbscope.flush(arg)
  puts "#{arg.inspect}: accepted"
rescue ArgumentError, TypeError => e
  puts "#{arg.inspect}: #{e.class}: #{e.message}"
end
# Whether the queue was written in time (a zero wait may say no): true or false, no error.
answers = [Rbscope.flush(Float::INFINITY), Rbscope.flush(10**400), Rbscope.flush(0),
           Rbscope::Native.flush(Float::NAN), Rbscope::Native.flush(-Float::INFINITY)]
p answers.all? { |a| a == true || a == false }
puts "alive"
"##,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "NaN: ArgumentError: rbscope: flush wants 0 or more seconds (got NaN)
-1: ArgumentError: rbscope: flush wants 0 or more seconds (got -1.0)
\"5\": TypeError: rbscope: flush wants a number of seconds (got String)
nil: TypeError: rbscope: flush wants a number of seconds (got NilClass)
:x: TypeError: rbscope: flush wants a number of seconds (got Symbol)
(1+1i): TypeError: rbscope: flush wants a number of seconds (got Complex)
true
alive
"
    );
}

/// What threads do, printed as JSON by tests/programs/threads.rb; with `STARTED=1` it first
/// starts rbscope, which wraps every thread block from then on.
fn thread_behaviour(sb: &Sandbox, started: bool) -> J {
    let program = repo_root().join("crates/rbscope/tests/programs/threads.rb");
    let mut c = sb.ruby(&program);
    if started {
        c.env("STARTED", "1").env("RBSCOPE_CLI", cli());
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Issue [2/6]: rbscope reports exceptions that end threads without a frame of its own in
/// them. Every stack the app or rbscope shows of such a thread (`caller_locations` inside it,
/// `Thread#backtrace` and `Rbscope.backtrace` from outside, `rbscope stacks -p`, the stored
/// snapshot) holds only the app's frames, and threads behave exactly as without rbscope:
/// arguments, keywords, subclasses, `start`/`fork`, values, exceptions and their backtraces,
/// `throw`, `break`, `kill`, `exit`.
#[test]
fn threads_carry_no_rbscope_frame_and_behave_as_without_it() {
    let plain_sb = Sandbox::new();
    let plain = thread_behaviour(&plain_sb, false);
    let sb = Sandbox::new();
    let with = thread_behaviour(&sb, true);
    assert_eq!(
        with["behaviour"], plain["behaviour"],
        "threads behave differently with rbscope started"
    );
    let ours = |v: &J| v.to_string().contains("lib/rbscope");
    assert!(!ours(&with["behaviour"]), "{:#}", with["behaviour"]);
    for (name, bt) in with["outside"].as_object().unwrap() {
        assert!(!ours(bt), "{name}: {bt:#}");
        assert!(bt.to_string().contains("threads.rb"), "{name}: {bt:#}");
    }
    // The better backtrace of an exception raised in a wrapped thread agrees with Ruby's.
    let better = with["better"].as_array().expect("a better backtrace");
    assert_eq!(better.len(), 2, "{better:#?}");
    assert!(
        better[1]
            .as_str()
            .unwrap()
            .ends_with("Object$singleton#<main>{block}()"),
        "{better:#?}"
    );
    // rbscope stacks -p: the parked threads' frames are the app's.
    let stacks: J = serde_json::from_str(with["stacks"].as_str().unwrap()).unwrap();
    let parked: Vec<&J> = stacks["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().is_some_and(|n| n.starts_with("parked-")))
        .collect();
    assert_eq!(parked.len(), 4, "{stacks:#}");
    for t in parked {
        let frames = t["frames"].as_array().unwrap();
        assert!(!frames.is_empty(), "{t:#}");
        assert!(!ours(&t["frames"]), "{t:#}");
        let bottom = frames.last().unwrap();
        assert!(
            bottom["path"].as_str().unwrap().ends_with("threads.rb"),
            "the bottom frame is the app's block: {t:#}"
        );
    }
    // The exceptions that ended threads were stored, and their frames are the app's.
    let rows = sb.list();
    assert!(rows.len() >= 2, "{rows:#?}");
    for row in rows {
        let snap = sb.show(row["id"].as_str().unwrap());
        assert_eq!(snap["context"]["extra"]["reported_by"], "escaped a thread");
        assert!(!ours(&snap["frames"]), "{:#}", snap["frames"]);
    }
    assert!(plain_sb.list().is_empty());
}
