//! The public Ruby API answers odd arguments with a TypeError or ArgumentError saying what it
//! expects, and the app goes on: `Rbscope.start` options and `RBSCOPE_*` variables,
//! `report`, `backtrace`, `heap_dump`, `count_objects`, `magic_root`, `restore`, the Rack and
//! Sidekiq middleware with odd requests and jobs, the native functions lib/rbscope/live.rb
//! calls, and a fuzz run of every public method (RBSCOPE_FUZZ_SECONDS, default 20).

mod common;
use common::*;
use std::process::Command;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `body` after `require "rbscope"` (nothing started) and checks that it ended well.
fn run(sb: &Sandbox, body: &str) -> String {
    let script = sb.write("app.rb", &format!("require \"rbscope\"\n{body}"));
    let out = sb.ruby(&script).output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// Prints each case's answer: `accepted` or the exception's class and message.
const TRY: &str = r##"
def try(label)
  yield
  puts "#{label}: accepted"
rescue ArgumentError, TypeError => e
  puts "#{label}: #{e.class}: #{e.message}"
end
"##;

#[test]
fn start_options_are_checked_and_the_app_goes_on() {
    let sb = Sandbox::new();
    let out = run(
        &sb,
        &format!(
            r##"{TRY}
try("1e300") {{ Rbscope.start(max_depth: 1e300) }}
try("2**32+1") {{ Rbscope.start(max_depth: 2**32 + 1) }}
try("-1") {{ Rbscope.start(max_frames: 0) }}
try("string number") {{ Rbscope.start(rate_limit: "5") }}
try("rate 2**40") {{ Rbscope.start(rate_limit: 2**40) }}
try("days") {{ Rbscope.start(retention_days: 2**62) }}
try("flag") {{ Rbscope.start(log: "yes") }}
try("flag 1") {{ Rbscope.start(allow_eval: 1) }}
try("twice") {{ Rbscope.start("log" => false, log: true) }}
try("unknown") {{ Rbscope.start("nope" => 1) }}
try("odd key") {{ Rbscope.start(**{{ 1 => 2 }}) }}
try("store") {{ Rbscope.start(store: 5) }}
try("empty store") {{ Rbscope.start(store: "") }}
try("NUL") {{ Rbscope.start(store: "a\0b") }}
try("bad bytes") {{ Rbscope.start(app_root: "\xff".dup.force_encoding("UTF-8")) }}
try("list item") {{ Rbscope.start(magic_roots: ["A", 1]) }}
try("long list") {{ Rbscope.start(redact_names: Array.new(10_001, "x")) }}
try("capture") {{ Rbscope.start(capture: :fast) }}
try("buffer") {{ Rbscope.start(trace_buffer: 10) }}
try("BasicObject") {{ Rbscope.start(app_revision: BasicObject.new) }}
try("pending") {{ Rbscope.start(pending_captures: Float::NAN) }}
puts "started: #{{Rbscope.started?}}"
# String names and Symbol values are taken; so is a Pathname.
require "pathname"
try("good") {{ Rbscope.start("log" => false, capture: :inspector, store: Pathname.new(ENV["RBSCOPE_STORE"]), max_depth: 1000) }}
puts "started: #{{Rbscope.started?}}"
# The agent checks the same ranges when it is handed settings directly.
try("native") {{ Rbscope::Native.start([["max_depth", "4294967297"]]) }}
try("native days") {{ Rbscope::Native.start([["retention_days", "18446744073709551615"]]) }}
try("native frames") {{ Rbscope::Native.start([["max_frames", "0"]]) }}
puts "alive"
"##
        ),
    );
    let known = "store, store_key, app_root, app_revision, report_all_raises, \
                 capture_library_frames, max_frames, max_depth, max_objects, max_bytes, \
                 max_string_bytes, max_collection_items, source_context_lines, rate_limit, \
                 max_store_bytes, store_backlog, magic_roots, redact, redact_names, log, \
                 control_socket, allow_eval, trace_buffer, pending_captures, capture, \
                 retention_days, retention_count, retention_bytes, slow_snapshot";
    let path = "a path (a String or a Pathname) or a postgres:// URL";
    assert_eq!(
        out,
        format!(
            "1e300: TypeError: rbscope: Rbscope.start(max_depth:) expects an Integer from 0 to 1000, got 1.0e+300
2**32+1: ArgumentError: rbscope: Rbscope.start(max_depth:) expects an Integer from 0 to 1000, got 4294967297
-1: ArgumentError: rbscope: Rbscope.start(max_frames:) expects an Integer from 1 to 10000, got 0
string number: TypeError: rbscope: Rbscope.start(rate_limit:) expects an Integer from 0 to 1000000, got \"5\"
rate 2**40: ArgumentError: rbscope: Rbscope.start(rate_limit:) expects an Integer from 0 to 1000000, got 1099511627776
days: ArgumentError: rbscope: Rbscope.start(retention_days:) expects an Integer from 0 to 100000, got 4611686018427387904
flag: TypeError: rbscope: Rbscope.start(log:) expects true or false, got \"yes\"
flag 1: TypeError: rbscope: Rbscope.start(allow_eval:) expects true or false, got 1
twice: ArgumentError: rbscope: Rbscope.start got option log twice (as a String and a Symbol)
unknown: ArgumentError: rbscope: unknown option(s) \"nope\" (Rbscope.start takes {known})
odd key: ArgumentError: rbscope: unknown option(s) 1 (Rbscope.start takes {known})
store: TypeError: rbscope: Rbscope.start(store:) expects {path}, got 5
empty store: ArgumentError: rbscope: Rbscope.start(store:) expects {path} (this one is empty), got \"\"
NUL: ArgumentError: rbscope: Rbscope.start(store:) expects {path} (this one has a NUL byte), got \"a\\u0000b\"
bad bytes: ArgumentError: rbscope: Rbscope.start(app_root:) expects a path (a String or a Pathname) (this one is not valid UTF-8), got \"\\xFF\"
list item: TypeError: rbscope: Rbscope.start(magic_roots:) expects an Array of Strings or Symbols (at most 10000), got 1
long list: ArgumentError: rbscope: Rbscope.start(redact_names:) expects an Array of Strings or Symbols (at most 10000), got 10001 items
capture: ArgumentError: rbscope: Rbscope.start(capture:) expects :auto or :inspector, got :fast
buffer: ArgumentError: rbscope: Rbscope.start(trace_buffer:) expects an Integer from 65536 to 1073741824, got 10
BasicObject: TypeError: rbscope: Rbscope.start(app_revision:) expects a String, got a BasicObject
pending: TypeError: rbscope: Rbscope.start(pending_captures:) expects an Integer from 1 to 4096, got NaN
started: false
good: accepted
started: true
native: ArgumentError: rbscope: setting max_depth wants a whole number from 0 to 1000, got \"4294967297\"
native days: ArgumentError: rbscope: setting retention_days wants a whole number from 0 to 100000, got \"18446744073709551615\"
native frames: ArgumentError: rbscope: setting max_frames wants a whole number from 1 to 10000, got \"0\"
alive
"
        )
    );
}

/// A bad `RBSCOPE_*` variable never stops the app: it is ignored (the default is used) with one
/// line on stderr naming it, whether the agent starts from `rbscope run`'s autostart or from the
/// app's own `Rbscope.start`; an option given to `Rbscope.start` overrides the variable.
#[test]
fn bad_environment_variables_are_ignored_with_one_line_and_the_app_boots() {
    let sb = Sandbox::new();
    let script = sb.write(
        "boot.rb",
        "Rbscope.start(rate_limit: 3) if ARGV[0] == \"own\"\nputs \"app runs, started: #{Rbscope.started?}\"\n",
    );
    let ignored = |var: &str, value: &str, why: &str| {
        format!("[rbscope] ignored {var}=\"{value}\": {why}; using the default")
    };
    let number = |lo: u64, hi: u64| format!("expected a whole number from {lo} to {hi}");
    for (how, hold) in [("autostart", "1e300"), ("own", "nan")] {
        let mut cmd = Command::new("ruby");
        cmd.arg(format!("-I{}", gem_lib().display()))
            .arg(if how == "autostart" {
                "-rrbscope/autostart"
            } else {
                "-rrbscope"
            })
            .arg(&script)
            .arg(how)
            .current_dir(sb.dir.path())
            .env("RBSCOPE_STORE", sb.store())
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .env("RBSCOPE_RUN_HOLD", hold)
            .env("RBSCOPE_MAX_DEPTH", "1e300")
            .env("RBSCOPE_RATE_LIMIT", "99999999999999999999")
            .env("RBSCOPE_RETENTION_DAYS", "18446744073709551615")
            .env("RBSCOPE_LOG", "maybe")
            .env("RBSCOPE_CAPTURE", "fast")
            .env("RBSCOPE_MAX_FRAMES", "-3")
            .env("RBSCOPE_SLOW_SNAPSHOT", "10s")
            .env_remove("RUBYOPT")
            .env_remove("RBSCOPE_DISABLE");
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{how}: {}", stderr(&out));
        assert_eq!(stdout(&out), "app runs, started: true\n", "{how}");
        let mut want = vec![
            ignored("RBSCOPE_MAX_FRAMES", "-3", &number(1, 10_000)),
            ignored("RBSCOPE_MAX_DEPTH", "1e300", &number(0, 1_000)),
            ignored(
                "RBSCOPE_LOG",
                "maybe",
                "expected 1, true, yes, on, 0, false, no or off",
            ),
            ignored("RBSCOPE_CAPTURE", "fast", "expected auto or inspector"),
            ignored(
                "RBSCOPE_RETENTION_DAYS",
                "18446744073709551615",
                &number(0, 100_000),
            ),
            ignored(
                "RBSCOPE_SLOW_SNAPSHOT",
                "10s",
                "expected a number of seconds above 0 and at most 1000000",
            ),
        ];
        if how == "autostart" {
            // The app's own start gives rate_limit: the variable is not read there.
            want.insert(
                2,
                ignored(
                    "RBSCOPE_RATE_LIMIT",
                    "99999999999999999999",
                    &number(0, 1_000_000),
                ),
            );
            // RBSCOPE_RUN_HOLD is read by autostart only.
            want.push(format!(
                "[rbscope] ignored RBSCOPE_RUN_HOLD=\"{hold}\": expected 0 to 60 seconds"
            ));
        }
        let err = stderr(&out);
        let got: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("[rbscope] ignored"))
            .collect();
        assert_eq!(got, want, "{how}: {err}");
    }
}

#[test]
fn report_checks_its_arguments_and_stores_odd_context_values() {
    let sb = Sandbox::new();
    let out = run(
        &sb,
        &format!(
            r##"{TRY}
Rbscope.start(log: false, rate_limit: 0)
class Liar
  def to_s = nil
end
class Raiser
  def to_s = raise("no")
end
try("string") {{ Rbscope.report("boom") }}
try("nil") {{ Rbscope.report(nil) }}
try("BasicObject") {{ Rbscope.report(BasicObject.new) }}
try("how") {{ Rbscope.report(RuntimeError.new("x"), how: 5) }}
try("many") {{ Rbscope.report(RuntimeError.new("x"), **(1..101).to_h {{ |i| [:"k#{{i}}", i] }}) }}
frozen = begin
  raise "frozen one"
rescue => e
  e.freeze
end
id = Rbscope.report(frozen, how: :odd_values, liar: Liar.new, raiser: Raiser.new, basic: BasicObject.new,
                    bytes: "\xff\xfe".b, long: "y" * 5000, nothing: nil, 1 => 2)
puts "frozen: #{{id ? 'stored' : 'nothing'}}"
puts "flushed: #{{Rbscope.flush(10)}}"
puts "alive"
"##
        ),
    );
    assert_eq!(
        out,
        "string: TypeError: rbscope: Rbscope.report(exception) expects an Exception, got \"boom\"
nil: TypeError: rbscope: Rbscope.report(exception) expects an Exception, got nil
BasicObject: TypeError: rbscope: Rbscope.report(exception) expects an Exception, got a BasicObject
how: TypeError: rbscope: Rbscope.report(how:) expects a String or Symbol, got 5
many: ArgumentError: rbscope: Rbscope.report takes at most 100 context values, got 101
frozen: stored
flushed: true
alive
"
    );
    let snap = sb.only_snapshot();
    let extra = &snap["context"]["extra"];
    let get = |k: &str| -> String {
        extra
            .as_array()
            .and_then(|a| a.iter().find(|p| p[0] == k))
            .map(|p| p[1].as_str().unwrap_or_default().to_string())
            .or_else(|| extra[k].as_str().map(String::from))
            .unwrap_or_else(|| panic!("no {k} in {extra}"))
    };
    assert_eq!(get("reported_by"), "odd_values");
    assert_eq!(get("liar"), "a Liar");
    assert_eq!(get("raiser"), "a Raiser");
    assert_eq!(get("basic"), "a BasicObject");
    assert_eq!(get("bytes"), "\u{fffd}\u{fffd}");
    assert_eq!(get("long"), "y".repeat(1000));
    assert_eq!(get("nothing"), "");
    assert_eq!(get("1"), "2");
}

/// Thread#kill and Thread#raise (Timeout) reach a thread that is reporting or snapshotting:
/// the agent's protected calls into Ruby must not catch and lose them. (They did: a thread
/// killed while it reported went on forever, and so did the process at exit.)
#[test]
fn a_thread_busy_reporting_can_be_killed_and_timed_out() {
    let sb = Sandbox::new();
    let out = run(
        &sb,
        r##"require "timeout"
Rbscope.start(log: false, rate_limit: 0)
class Boom < StandardError; end
def deep(n) = n.zero? ? raise(Boom, "deep") : deep(n - 1)
# A thread that reports (or snapshots itself) in a loop; `ready` once it has done so.
def busy(ready, &one) = Thread.new { n = 0; loop { one.call; ready << true if (n += 1) == 3 } }
def report_one
  deep(30)
rescue Boom => e
  Rbscope.report(e)
end
{ "report" => -> { report_one }, "snapshot" => -> { Rbscope.snapshot(Thread.current, n: 1) } }.each do |what, one|
  ready = Queue.new
  t = busy(ready, &one)
  ready.pop
  t.kill
  # A thread that cannot be killed would also keep the process from exiting: leave at once.
  (puts "#{what}: the thread was not killed"; exit!(3)) unless t.join(10)
  puts "#{what}: killed"
end
timed = Thread.new do
  Timeout.timeout(0.2) { loop { report_one } }
rescue Timeout::Error
  :timed_out
end
(puts "Timeout::Error was lost"; exit!(3)) unless timed.join(10)
puts "timeout: #{timed.value}"
"##,
    );
    assert_eq!(
        out,
        "report: killed\nsnapshot: killed\ntimeout: timed_out\n"
    );
}

#[test]
fn backtrace_heap_dump_count_objects_magic_root_and_restore_check_their_arguments() {
    let sb = Sandbox::new();
    let out = run(
        &sb,
        &format!(
            r##"{TRY}
require "pathname"
dead = Thread.new {{ 1 }}.tap(&:join)
try("backtrace 5") {{ Rbscope.backtrace(5) }}
try("backtrace nil") {{ Rbscope.backtrace(nil) }}
try("backtrace dead") {{ p Rbscope.backtrace(dead).size }}
try("dump path") {{ Rbscope.heap_dump(5) }}
try("dump NUL") {{ Rbscope.heap_dump("a\0b") }}
try("dump empty") {{ Rbscope.heap_dump("") }}
try("dump gzip") {{ Rbscope.heap_dump(gzip: "yes") }}
try("dump gc") {{ Rbscope.heap_dump(gc: nil) }}
try("dump in_process") {{ Rbscope.heap_dump(in_process: 1) }}
try("dump Pathname") {{ Rbscope.heap_dump(Pathname.new("dump.json"))[:path].then {{ |p| puts File.basename(p) }} }}
try("count 5") {{ Rbscope.count_objects(5) }}
try("count item") {{ Rbscope.count_objects(["String", 1.5]) }}
try("count empty") {{ Rbscope.count_objects([""]) }}
try("count many") {{ Rbscope.count_objects(Array.new(10_001, "X")) }}
try("count anonymous") {{ Rbscope.count_objects([Class.new]) }}
try("count bytes") {{ Rbscope.count_objects(["\xff".dup.force_encoding("UTF-8")]) }}
kept = Rbscope::Middleware.new(nil)
try("count good") {{ p Rbscope.count_objects([Rbscope, :Comparable, "Rbscope::Settings"]).key?("Rbscope::Middleware") }}
try("count nil") {{ p Rbscope.count_objects(nil).size > 10 }}
try("root 5") {{ Rbscope.magic_root(5, 1) }}
try("root empty") {{ Rbscope.magic_root("", 1) }}
try("root ok") {{ Rbscope.magic_root(:ok, 1) }}
try("root for") {{ p [Rbscope.magic_root_for("ok"), Rbscope.magic_root_for(:ok), Rbscope.magic_root_for(BasicObject.new)] }}
try("root many") {{ 1001.times {{ |i| Rbscope.magic_root("r#{{i}}", i) }} }}
try("install io") {{ Rbscope::BetterBacktraces.install(io: 42) }}
try("install io ok") {{ Rbscope::BetterBacktraces.install(io: $stdout) }}
require "rbscope/restore"
try("restore id") {{ Rbscope.restore(5) }}
try("restore empty") {{ Rbscope.restore("") }}
try("restore frame") {{ Rbscope.restore("x", frame: -1) }}
try("restore trust") {{ Rbscope.restore("x", trust: "yes") }}
try("restore console") {{ Rbscope.restore("x", console: nil) }}
try("restore store") {{ Rbscope.restore("x", store: 5) }}
begin
  Rbscope.restore("zz", console: false)
rescue RuntimeError => e
  puts "restore missing: RuntimeError"
end
puts "alive"
"##
        ),
    );
    let dump = "a path (a String or a Pathname)";
    let names = "an Array of class names (Strings, Symbols or named Modules, at most 10000)";
    assert_eq!(
        out,
        format!(
            "backtrace 5: TypeError: rbscope: Rbscope.backtrace(thread) expects a Thread, got 5
backtrace nil: TypeError: rbscope: Rbscope.backtrace(thread) expects a Thread, got nil
0
backtrace dead: accepted
dump path: TypeError: rbscope: Rbscope.heap_dump(path) expects nil or {dump}, got 5
dump NUL: ArgumentError: rbscope: Rbscope.heap_dump(path) expects nil or {dump} (this one has a NUL byte), got \"a\\u0000b\"
dump empty: ArgumentError: rbscope: Rbscope.heap_dump(path) expects nil or {dump} (this one is empty), got \"\"
dump gzip: TypeError: rbscope: Rbscope.heap_dump(gzip:) expects true or false, got \"yes\"
dump gc: TypeError: rbscope: Rbscope.heap_dump(gc:) expects true or false, got nil
dump in_process: TypeError: rbscope: Rbscope.heap_dump(in_process:) expects true or false, got 1
dump.json
dump Pathname: accepted
count 5: TypeError: rbscope: Rbscope.count_objects(names) expects {names}, got 5
count item: TypeError: rbscope: Rbscope.count_objects(names) expects {names}, got 1.5
count empty: ArgumentError: rbscope: Rbscope.count_objects(names) expects {names} (this one is empty), got \"\"
count many: ArgumentError: rbscope: Rbscope.count_objects(names) expects {names}, got 10001 names
count anonymous: ArgumentError: rbscope: Rbscope.count_objects(names) expects named classes or modules, got an anonymous one
count bytes: ArgumentError: rbscope: Rbscope.count_objects(names) expects {names} (this one is not valid UTF-8), got \"\\xFF\"
true
count good: accepted
true
count nil: accepted
root 5: TypeError: rbscope: Rbscope.magic_root(name) expects a String or Symbol, got 5
root empty: ArgumentError: rbscope: Rbscope.magic_root(name) expects a String or Symbol (this one is empty), got \"\"
root ok: accepted
[1, 1, nil]
root for: accepted
root many: ArgumentError: rbscope: Rbscope.magic_root keeps at most 1000 names; \"r999\" is one too many
install io: TypeError: rbscope: Rbscope::BetterBacktraces.install(io:) expects nil or an object with #write (an IO), got 42
install io ok: accepted
restore id: TypeError: rbscope: Rbscope.restore(id) expects a snapshot id (a String), got 5
restore empty: ArgumentError: rbscope: Rbscope.restore(id) expects a snapshot id (a String) (this one is empty), got \"\"
restore frame: ArgumentError: rbscope: Rbscope.restore(frame:) expects an Integer from 0 to 1000000, got -1
restore trust: TypeError: rbscope: Rbscope.restore(trust:) expects true or false, got \"yes\"
restore console: TypeError: rbscope: Rbscope.restore(console:) expects true or false, got nil
restore store: TypeError: rbscope: Rbscope.restore(store:) expects nil, a path (a String or a Pathname) or a postgres:// URL, got 5
restore missing: RuntimeError
alive
"
        )
    );
}

/// The Rack middleware never raises into the app: a frozen env (or one that is not a Hash)
/// gets the app's own exception or response back, and the exception is reported once.
#[test]
fn rack_middleware_with_a_frozen_env_gives_back_the_apps_exception() {
    let sb = Sandbox::new();
    let out = run(
        &sb,
        r##"Rbscope.start(log: false, rate_limit: 0)
failing = Rbscope::Middleware.new(->(_env) { raise "app failed" })
env = { "REQUEST_METHOD" => "GET", "PATH_INFO" => "/x", "HTTP_USER_AGENT" => Object.new }.freeze
begin
  failing.call(env)
rescue => e
  puts "frozen env: #{e.class}: #{e.message}"
end
# The Rails middleware and this one both see it: one report.
outer = Rbscope::Middleware.new(Rbscope::Middleware.new(->(_env) { raise "twice seen" }))
begin
  outer.call(env)
rescue => e
  puts "nested: #{e.class}: #{e.message}"
end
[nil, 5, "env", BasicObject.new].each do |odd|
  failing.call(odd)
rescue => e
  puts "odd env: #{e.class}: #{e.message}"
end
rendered = Rbscope::Middleware.new(->(env) { [500, {}, ["oops"]] })
p rendered.call({ "rack.exception" => RuntimeError.new("rendered") }.freeze)
p Rbscope::Middleware.new(->(_env) { :not_a_response }).call({}.freeze)
p Rbscope::Middleware.new(->(_env) { ["500", {}, []] }).call({ "sinatra.error" => RuntimeError.new("s") })
puts "flushed: #{Rbscope.flush(10)}"
p Rbscope.counters[:reports]
puts "alive"
"##,
    );
    assert_eq!(
        out,
        "frozen env: RuntimeError: app failed
nested: RuntimeError: twice seen
odd env: RuntimeError: app failed
odd env: RuntimeError: app failed
odd env: RuntimeError: app failed
odd env: RuntimeError: app failed
[500, {}, [\"oops\"]]
:not_a_response
[\"500\", {}, []]
flushed: true
8
alive
"
    );
    let messages: Vec<String> = sb
        .list()
        .iter()
        .map(|s| s["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        messages.iter().filter(|m| *m == "twice seen").count(),
        1,
        "{messages:?}"
    );
}

/// Sidekiq's middleware stores the snapshot and re-raises the job's own exception whatever
/// the job hash holds.
#[test]
fn sidekiq_middleware_with_odd_jobs_reraises_the_jobs_exception() {
    if !debian_gems_available("Sidekiq") {
        return;
    }
    let sb = Sandbox::new();
    let out = run(
        &sb,
        r##"Rbscope.start(log: false, rate_limit: 0)
require "rbscope/sidekiq"
mw = Rbscope::SidekiqMiddleware.new
[{ "class" => "J", "retry_count" => [] }, { "retry_count" => "2" }, { "retry_count" => Float::NAN },
 nil, "job", { "retry_count" => Object.new }].each do |job|
  mw.call(nil, job, "default") { raise "job failed" }
rescue => e
  puts "#{e.class}: #{e.message}"
end
puts "flushed: #{Rbscope.flush(10)}"
puts "alive"
"##,
    );
    assert_eq!(
        out,
        "RuntimeError: job failed\n".repeat(6) + "flushed: true\nalive\n"
    );
    let mut attempts: Vec<String> = sb
        .list()
        .iter()
        .map(|s| {
            let snap = sb.show(s["id"].as_str().unwrap());
            let extra = &snap["context"]["extra"];
            extra
                .as_array()
                .and_then(|a| a.iter().find(|p| p[0] == "attempt"))
                .map(|p| p[1].as_str().unwrap_or_default().to_string())
                .or_else(|| extra["attempt"].as_str().map(String::from))
                .unwrap_or_default()
        })
        .collect();
    attempts.sort();
    assert_eq!(attempts, ["1", "1", "1", "1", "1", "4"]);
}

/// A Rails app whose `config.rbscope` holds a bad option still boots (rbscope stays off and
/// says why in one line), and the Rails middleware gives a frozen env's request its own
/// exception back.
#[test]
fn rails_boots_with_a_bad_rbscope_option_and_its_middleware_takes_a_frozen_env() {
    if !debian_gems_available("Rails 6.1") {
        return;
    }
    let sb = Sandbox::new();
    let script = sb.write(
        "rails_app.rb",
        r##"require "rbscope"
require "rails"
require "action_controller/railtie"
require "rbscope/rails"
class TinyApp < Rails::Application
  config.root = __dir__
  config.eager_load = false
  config.logger = Logger.new(nil)
  config.secret_key_base = "x" * 64
  config.rbscope.max_depth = "5"
end
Rails.application.initialize!
puts "booted, started: #{Rbscope.started?}"
Rbscope.start(log: false, rate_limit: 0)
begin
  Rbscope::RailsMiddleware.new(->(_env) { raise "controller failed" }).call({ "PATH_INFO" => "/x" }.freeze)
rescue => e
  puts "#{e.class}: #{e.message}"
end
puts "flushed: #{Rbscope.flush(10)}"
puts "alive"
"##,
    );
    let out = sb.ruby(&script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "booted, started: false\nRuntimeError: controller failed\nflushed: true\nalive\n"
    );
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("[rbscope]")).collect();
    assert_eq!(
        lines,
        [
            "[rbscope] not started: config.rbscope: rbscope: Rbscope.start(max_depth:) expects an \
          Integer from 0 to 1000, got \"5\""
        ],
        "{err}"
    );
    let snap = sb.only_snapshot();
    assert_eq!(snap["exception"]["message"], "controller failed", "{snap}");
}

/// The native functions lib/rbscope/live.rb calls check what they are given before it reaches
/// the VM (a non-module owner would reach rb_mod_name; a filter that is not a module would
/// raise TypeError inside a TracePoint), and an eval's result text in any encoding or with
/// invalid bytes is taken.
#[test]
fn native_trace_and_eval_functions_check_their_arguments() {
    let sb = Sandbox::new();
    let out = run(
        &sb,
        &format!(
            r##"{TRY}
um = String.instance_method(:upcase)
try("method") {{ Rbscope::Native.trace_hook(1, 5, String, "upcase", nil, 0) }}
try("owner") {{ Rbscope::Native.trace_hook(1, um, "String", "upcase", nil, 0) }}
try("owner BasicObject") {{ Rbscope::Native.trace_hook(1, um, BasicObject.new, "upcase", nil, 0) }}
try("filter") {{ Rbscope::Native.trace_hook(1, um, String, "upcase", 5, 0) }}
try("ignore owner") {{ Rbscope::Native.trace_ignore_owner(1, :x) }}
try("eval_done text") {{ Rbscope::Native.eval_done(123, true, 5, false) }}
try("eval_done bytes") {{ Rbscope::Native.eval_done(123, true, "\xff\xfe".b, false) }}
try("eval_done invalid") {{ Rbscope::Native.eval_done(123, true, "\xff".dup.force_encoding("UTF-8"), false) }}
try("eval_done UTF-16") {{ Rbscope::Native.eval_done(123, true, "é".encode("UTF-16LE"), false) }}
puts "alive"
"##
        ),
    );
    assert_eq!(
        out,
        "method: TypeError: rbscope: Rbscope::Native.trace_hook(method) expects an UnboundMethod, got an Integer
owner: TypeError: rbscope: Rbscope::Native.trace_hook(owner) expects a Module, got a String
owner BasicObject: TypeError: rbscope: Rbscope::Native.trace_hook(owner) expects a Module, got a BasicObject
filter: TypeError: rbscope: Rbscope::Native.trace_hook(filter) expects nil or a Module, got an Integer
ignore owner: TypeError: rbscope: Rbscope::Native.trace_ignore_owner(module) expects a Module, got a Symbol
eval_done text: TypeError: rbscope: Rbscope::Native.eval_done(text) expects a String, got an Integer
eval_done bytes: accepted
eval_done invalid: accepted
eval_done UTF-16: accepted
alive
"
    );
}

/// `rbscope eval` of a value whose #inspect is not valid UTF-8 answers with it (invalid bytes
/// replaced) instead of leaving the client waiting.
#[test]
fn eval_of_a_value_with_invalid_bytes_answers() {
    let mut p = Program::start("api_eval_target.rb", &[]);
    let out = p.eval("o = Object.new; def o.inspect = \"bad \\xff\".b; o");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), "bad \u{fffd}");
    let out = p.eval("raise \"broken \\xff\".dup.force_encoding(\"UTF-8\")");
    assert!(
        stdout(&out).contains("RuntimeError: broken \u{fffd}")
            || stderr(&out).contains("RuntimeError: broken \u{fffd}"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(p.run("alive"), "yes");
}

/// Every public Rbscope method called with generated odd arguments, for RBSCOPE_FUZZ_SECONDS
/// (default 20; RBSCOPE_FUZZ_SEED repeats a run): each call returns or raises what its method
/// documents, and the process lives to say so.
#[test]
fn fuzzing_every_public_method_never_ends_the_app() {
    let sb = Sandbox::new();
    let program = repo_root().join("crates/rbscope/tests/programs/api_fuzz.rb");
    let mut cmd = sb.ruby(&program);
    for var in ["RBSCOPE_FUZZ_SECONDS", "RBSCOPE_FUZZ_SEED"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    let out = cmd.output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.starts_with("ready seed "), "{text}");
    let unexpected: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("unexpected"))
        .collect();
    assert!(unexpected.is_empty(), "{}\n{text}", unexpected.join("\n"));
    let calls = text
        .lines()
        .find(|l| l.starts_with("calls "))
        .unwrap_or_else(|| panic!("{text}"));
    for method in [
        "start",
        "report",
        "backtrace",
        "heap_dump",
        "count_objects",
        "flush",
        "magic_root",
        "magic_root_for",
        "restore",
        "counters",
    ] {
        assert!(
            calls
                .split_whitespace()
                .any(|w| w.starts_with(&format!("{method}="))),
            "{method} never called: {calls}"
        );
    }
    assert!(text.ends_with("started true\nalive\n"), "{text}");
}

/// With RBSCOPE_DISABLE=1 the public methods are stand-ins that do nothing, but a wrong call
/// raises exactly what it raises with rbscope on: an app tested with rbscope disabled meets no
/// new exception in production. Right calls are accepted by both.
#[test]
fn disabled_stand_ins_check_arguments_as_the_agent_does() {
    let body = format!(
        r##"{TRY}
try("start unknown") {{ Rbscope.start(nope: 1) }}
try("start range") {{ Rbscope.start(max_depth: 1e300) }}
try("start flag") {{ Rbscope.start(log: "yes") }}
try("report nil") {{ Rbscope.report(nil) }}
try("report how") {{ Rbscope.report(RuntimeError.new, how: 5) }}
try("report context") {{ Rbscope.report(RuntimeError.new, **(1..101).to_h {{ |i| [:"k#{{i}}", i] }}) }}
try("report ok") {{ Rbscope.report(RuntimeError.new("x"), order: 7) }}
try("flush NaN") {{ Rbscope.flush(Float::NAN) }}
try("flush string") {{ Rbscope.flush("5") }}
try("flush negative") {{ Rbscope.flush(-1) }}
try("flush ok") {{ Rbscope.flush(0.01) }}
try("backtrace") {{ Rbscope.backtrace(:main) }}
try("heap_dump path") {{ Rbscope.heap_dump(5) }}
try("heap_dump flag") {{ Rbscope.heap_dump(nil, gzip: 1) }}
try("count_objects") {{ Rbscope.count_objects([Class.new]) }}
try("count_objects kind") {{ Rbscope.count_objects([1]) }}
"##
    );
    let on = {
        let sb = Sandbox::new();
        run(&sb, &body)
    };
    let off = {
        let sb = Sandbox::new();
        let script = sb.write("app.rb", &format!("require \"rbscope\"\n{body}"));
        let out = sb
            .ruby(&script)
            .env("RBSCOPE_DISABLE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    assert_eq!(off, on, "disabled:\n{off}\nenabled:\n{on}");
    assert!(on.contains("report ok: accepted"), "{on}");
    assert!(on.contains("flush ok: accepted"), "{on}");
    assert_eq!(on.matches("Error: rbscope:").count(), 14, "{on}");
}
