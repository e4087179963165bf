//! `slow_snapshot`: a request (Rack, Rails) or job (ActiveJob, Sidekiq) still running after its
//! budget gets one live snapshot of its thread, kind `slow`, taken while it runs, with the
//! request's or job's facts; then it finishes untouched. Each slow handler waits in a method
//! with a distinctive local until the test creates a release file, and the test waits for the
//! snapshot to appear in the store (bounded polls, no timing guesses); a fast request stores
//! nothing. The snapshots restore with the local readable in the console.

mod common;
use common::*;
use serde_json::Value as J;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Polls the sandbox's store until `n` snapshots are listed (at most `secs`), and returns them.
fn wait_for_snapshots(sb: &Sandbox, n: usize, secs: u64, what: &str) -> Vec<J> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if sb.store().exists() {
            let rows = sb.list();
            if rows.len() >= n {
                return rows;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no slow snapshot of {what} within {secs}s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The checks every slow snapshot gets: listed as `(slow)`, its trigger says why and which
/// thread, and the waiting method's frame holds the local `local` = `value`.
fn assert_slow(sb: &Sandbox, row: &J, how: &str, frame: &str, local: &str, value: &str) -> J {
    assert_eq!(row["exception_class"], "(slow)", "{row}");
    let snap = sb.show(row["id"].as_str().unwrap());
    let trigger = &snap["trigger"];
    assert_eq!(trigger["kind"], "slow", "{trigger}");
    assert_eq!(trigger["reason"], how, "{trigger}");
    assert!(
        !trigger["thread"].as_str().unwrap_or("").is_empty(),
        "{trigger}"
    );
    let message = snap["exception"]["message"].as_str().unwrap();
    assert!(message.ends_with(&format!("({how})")), "{message}");
    let s = Snap(&snap);
    let f = s.frame(frame);
    // A String local is a reference to its object.
    assert_eq!(s.obj(s.local(f, local))["value"], value, "{f}");
    snap
}

#[test]
fn a_slow_rack_request_gets_one_slow_snapshot_and_goes_on() {
    let sb = Sandbox::new();
    let started = sb.dir.path().join("started");
    let release = sb.dir.path().join("release");
    let ru = sb.write(
        "config.ru",
        &format!(
            r##"
require "rbscope"
Rbscope.start(slow_snapshot: 1, log: false)
class Checkout
  def wait_for_stock(order_ref)
    basket = ["A-1", "B-2"]
    File.write({started:?}, order_ref)
    sleep 0.02 until File.exist?({release:?})
    "done #{{order_ref}} #{{basket.size}}"
  end
end
use Rbscope::Middleware
run lambda {{ |env|
  if env["PATH_INFO"] == "/fast"
    [200, {{ "content-type" => "text/plain" }}, ["fast #{{Rbscope::Slow.watched}}"]]
  else
    [200, {{ "content-type" => "text/plain" }}, [Checkout.new.wait_for_stock("order-" + env["QUERY_STRING"])]]
  end
}}
"##
        ),
    );
    let server = Server::rack(&sb, &ru);
    // A fast request is watched while it runs (one watch: itself) and costs nothing after.
    assert_eq!(server.get("/fast"), (200, "fast 1".to_string()));
    let (rows, answer) = std::thread::scope(|scope| {
        let slow = scope.spawn(|| server.get("/checkout?77"));
        wait_for_file(&started);
        let rows = wait_for_snapshots(&sb, 1, 60, "the request");
        // Only now may the request finish: the snapshot was taken while it ran.
        std::fs::write(&release, "").unwrap();
        (rows, slow.join().unwrap())
    });
    assert_eq!(answer, (200, "done order-77 2".to_string()));
    // After both requests: nothing more was stored (the fast request's watch ended with it).
    assert_eq!(server.get("/fast"), (200, "fast 1".to_string()));
    drop(server);
    let all = sb.list();
    assert_eq!(all.len(), 1, "one snapshot, of the slow request: {all:#?}");
    assert_eq!(all[0]["id"], rows[0]["id"]);
    let snap = assert_slow(
        &sb,
        &rows[0],
        "request still running after 1s",
        "Checkout#wait_for_stock",
        "order_ref",
        "order-77",
    );
    let extra = &snap["context"]["extra"];
    assert_eq!(extra["request_method"], "GET", "{extra}");
    assert_eq!(extra["path"], "/checkout", "{extra}");
    assert_eq!(extra["request_id"], "req-42", "{extra}");
    // The frame below is the Rack app's block: the whole request is there.
    let labels: Vec<&str> = snap["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect();
    assert!(
        labels[0].starts_with("Checkout#wait_for_stock"),
        "{labels:?}"
    );

    // `show` titles it by its trigger.
    let shown = sb.show_text(rows[0]["id"].as_str().unwrap());
    assert!(
        shown.starts_with("slow snapshot: thread ")
            && shown
                .lines()
                .next()
                .unwrap()
                .ends_with("(request still running after 1s)"),
        "{shown}"
    );
    let text = sb.restore(
        rows[0]["id"].as_str().unwrap(),
        "puts \"REF=#{order_ref} BASKET=#{basket.inspect}\"\n",
    );
    assert!(
        text.contains("REF=order-77 BASKET=[\"A-1\", \"B-2\"]"),
        "{text}"
    );
}

#[test]
fn slow_snapshot_settings_are_checked_and_shown_by_doctor() {
    let sb = Sandbox::new();
    let script = sb.write(
        "check.rb",
        r##"
require "rbscope"
def try(label)
  yield
  puts "#{label}: accepted"
rescue ArgumentError, TypeError => e
  puts "#{label}: #{e.class}: #{e.message}"
end
try("zero") { Rbscope.start(slow_snapshot: 0) }
try("negative") { Rbscope.start(slow_snapshot: -2.5) }
try("string") { Rbscope.start(slow_snapshot: "10") }
try("true") { Rbscope.start(slow_snapshot: true) }
try("nan") { Rbscope.start(slow_snapshot: Float::NAN) }
try("huge") { Rbscope.start(slow_snapshot: 10**7) }
try("native") { Rbscope::Native.start([["slow_snapshot", "0"]]) }
puts "started: #{Rbscope.started?}"
try("rational") { Rbscope.start(slow_snapshot: 5/2r) }
puts "budget: #{Rbscope::Slow.budget.inspect}"
$stdout.flush
Rbscope::Native.socket_path.then { |p| puts "socket: #{!p.nil?}" }
puts "ready"
$stdout.flush
$stdin.read
"##,
    );
    let mut child = sb
        .ruby_with_lib(&script, &gem_lib())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(out.read_line(&mut line).unwrap() > 0, "ended early: {text}");
        text.push_str(&line);
        if line.starts_with("ready") {
            break;
        }
    }
    let expected = "a number of seconds above 0 and at most 1000000 (or false: off)";
    let want = format!(
        "zero: ArgumentError: rbscope: Rbscope.start(slow_snapshot:) expects {expected}, got 0
negative: ArgumentError: rbscope: Rbscope.start(slow_snapshot:) expects {expected}, got -2.5
string: TypeError: rbscope: Rbscope.start(slow_snapshot:) expects {expected}, got \"10\"
true: TypeError: rbscope: Rbscope.start(slow_snapshot:) expects {expected}, got true
nan: ArgumentError: rbscope: Rbscope.start(slow_snapshot:) expects {expected}, got NaN
huge: ArgumentError: rbscope: Rbscope.start(slow_snapshot:) expects {expected}, got 10000000
native: ArgumentError: rbscope: setting slow_snapshot wants a number of seconds above 0 and at most 1000000, got \"0\"
started: false
rational: accepted
budget: 2.5
socket: true
ready
"
    );
    assert_eq!(text, want);
    let doctor = sb
        .cli()
        .args(["doctor", "-p", &child.id().to_string()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["slow_snapshot", "2.5s"]),
        "{report}\n{}",
        stderr(&doctor)
    );
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());

    // A bad variable is ignored with one line, and the default (off) is used; a good one
    // sets the budget.
    for (value, budget, warning) in [
        ("0", "nil", true),
        ("ten", "nil", true),
        ("0.75", "0.75", false),
    ] {
        let out = Command::new("ruby")
            .arg(format!("-I{}", gem_lib().display()))
            .args([
                "-rrbscope",
                "-e",
                "Rbscope.start; puts Rbscope::Slow.budget.inspect",
            ])
            .current_dir(sb.dir.path())
            .env("RBSCOPE_STORE", sb.store())
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .env("RBSCOPE_SLOW_SNAPSHOT", value)
            .env_remove("RUBYOPT")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), budget);
        let line = format!(
            "[rbscope] ignored RBSCOPE_SLOW_SNAPSHOT=\"{value}\": expected a number of seconds above 0 and at most 1000000; using the default"
        );
        assert_eq!(stderr(&out).contains(&line), warning, "{}", stderr(&out));
    }
}

/// The watchdog in a plain process: many short watches cost one thread, a watch ended before
/// its deadline never fires, nested watches are one, each slow thread gets one snapshot with its
/// facts, and a forked child watches with a watchdog of its own.
#[test]
fn one_watchdog_thread_for_many_watches_and_its_own_in_a_fork() {
    let sb = Sandbox::new();
    let script = sb.write(
        "watch.rb",
        r##"
require "rbscope"
Rbscope.start(slow_snapshot: 0.3, log: false)
def busy_in(name, release)
  mark = "#{name}-mark"
  sleep 0.01 until release.closed?
  mark
end
# Waits (at most 60 s) until the agent has begun `n` more snapshots than `base`.
def wait_for_reports(base, n)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 60
  until Rbscope.counters.fetch(:reports, 0) >= base + n
    raise "no slow snapshot" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    sleep 0.02
  end
end
def watched_worker(name)
  release = Queue.new
  started = Queue.new
  t = Thread.new do
    Thread.current.name = name
    watched_at_ms = (Time.now.to_f * 1000).floor
    w = Rbscope::Slow.watch("job", { job_class: "#{name.capitalize}Job", queue: "q", watched_at_ms: watched_at_ms })
    started << true
    busy_in(name, release)
  ensure
    Rbscope::Slow.done(w)
  end
  started.pop
  [t, release]
end
# 2,000 short requests: each watched and let go, none slow.
2_000.times do
  w = Rbscope::Slow.watch("request", { "REQUEST_METHOD" => "GET", "PATH_INFO" => "/quick" })
  Rbscope::Slow.done(w)
end
puts "watchdogs: #{Thread.list.count { |t| t.name == "rbscope-slow" }}"
puts "watched after: #{Rbscope::Slow.watched}"
# Nested watches (a job inside a request) are one watch.
outer = Rbscope::Slow.watch("request", {})
puts "nested: #{Rbscope::Slow.watch("job", {}).inspect}"
Rbscope::Slow.done(outer)
base = Rbscope.counters.fetch(:reports, 0)
workers = %w[first second].map { |name| watched_worker(name) }
wait_for_reports(base, 2)
workers.each { |_, release| release.close }
puts "values: #{workers.map { |t, _| t.value }.join(' ')}"
pid = fork do
  base = Rbscope.counters.fetch(:reports, 0)
  t, release = watched_worker("child")
  wait_for_reports(base, 1)
  release.close
  t.join
  Rbscope.flush
  exit!(Thread.list.count { |th| th.name == "rbscope-slow" })
end
Process.wait(pid)
puts "child watchdogs: #{$?.exitstatus}"
Rbscope.flush
"##,
    );
    let out = sb.ruby(&script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "watchdogs: 1\nwatched after: 0\nnested: nil\nvalues: first-mark second-mark\nchild watchdogs: 1\n"
    );
    let rows = sb.list();
    let mut threads: Vec<String> = rows
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            let thread = sb.show(id)["trigger"]["thread"]
                .as_str()
                .unwrap()
                .to_string();
            let snap = assert_slow(
                &sb,
                r,
                "job still running after 0.3s",
                "Object#busy_in",
                "name",
                &thread,
            );
            let mut class = thread.clone();
            class[..1].make_ascii_uppercase();
            let extra = &snap["context"]["extra"];
            assert_eq!(extra["job_class"], format!("{class}Job"), "{extra}");
            assert_eq!(extra["queue"], "q", "{extra}");
            // Taken once the job had run its budget (0.3 s), and not much later.
            let watched: u64 = extra["watched_at_ms"].as_str().unwrap().parse().unwrap();
            let ran = r["reported_at_ms"].as_u64().unwrap() - watched;
            assert!((300..5_000).contains(&ran), "snapshot after {ran} ms");
            thread
        })
        .collect();
    threads.sort();
    assert_eq!(threads, ["child", "first", "second"], "{rows:#?}");
}

#[test]
fn a_slow_rails_request_and_active_job() {
    if !debian_gems_available("Rails 6.1") {
        return;
    }
    let sb = Sandbox::new();
    let release = sb.dir.path().join("release");
    std::fs::create_dir_all(sb.dir.path().join("config")).unwrap();
    sb.write(
        "config/environment.rb",
        &format!(
            r##"
require "rails"
require "action_controller/railtie"
require "active_job/railtie"
require "rbscope/rails"

class ShopApp < Rails::Application
  config.root = File.expand_path("..", __dir__)
  config.eager_load = false
  config.logger = Logger.new(nil)
  config.secret_key_base = "x" * 64
  config.hosts.clear
  config.active_job.queue_adapter = :inline
  config.rbscope.log = false
  config.rbscope.slow_snapshot = 1.second
end
Rails.application.initialize!

RELEASE = {release:?}
class ReportsController < ActionController::Base
  def show
    report_name = "weekly-#{{params[:id]}}"
    sleep 0.02 until File.exist?(RELEASE)
    render plain: "built #{{report_name}}"
  end
end

class ExportJob < ActiveJob::Base
  queue_as :exports
  def perform(export_id)
    export_file = "export-#{{export_id}}.csv"
    sleep 0.02 until File.exist?(RELEASE)
    export_file
  end
end

Rails.application.routes.draw do
  get "/reports/:id" => "reports#show"
end
"##
        ),
    );
    let ru = sb.write(
        "config.ru",
        "require_relative \"config/environment\"\nrun Rails.application\n",
    );
    let server = Server::puma(&sb, &ru, &[]);
    let (rows, answer) = std::thread::scope(|scope| {
        let slow = scope.spawn(|| server.get("/reports/9"));
        let rows = wait_for_snapshots(&sb, 1, 90, "the Rails request");
        std::fs::write(&release, "").unwrap();
        (rows, slow.join().unwrap())
    });
    assert_eq!(answer, (200, "built weekly-9".to_string()));
    drop(server);
    let snap = assert_slow(
        &sb,
        &rows[0],
        "request still running after 1s",
        "ReportsController#show",
        "report_name",
        "weekly-9",
    );
    let extra = &snap["context"]["extra"];
    assert_eq!(extra["path"], "/reports/9", "{extra}");
    assert_eq!(extra["request_id"], "req-42", "{extra}");
    let id = rows[0]["id"].as_str().unwrap().to_string();

    // An ActiveJob performed by a worker thread (not inside a request).
    std::fs::remove_file(&release).unwrap();
    let job = Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .args([
            "-r./config/environment",
            "-e",
            "puts Thread.new { Thread.current.name = 'exporter'; ExportJob.perform_now(31) }.value; Rbscope.flush",
        ])
        .current_dir(sb.dir.path())
        .env("RBSCOPE_STORE", sb.store())
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .env_remove("RUBYOPT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rows = wait_for_snapshots(&sb, 2, 90, "the ActiveJob");
    std::fs::write(&release, "").unwrap();
    let out = job.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "export-31.csv");
    let row = rows.iter().find(|r| r["id"] != id.as_str()).unwrap();
    let snap = assert_slow(
        &sb,
        row,
        "job still running after 1s",
        "ExportJob#perform",
        "export_file",
        "export-31.csv",
    );
    let extra = &snap["context"]["extra"];
    assert_eq!(extra["job_class"], "ExportJob", "{extra}");
    assert_eq!(extra["queue"], "exports", "{extra}");
    assert_eq!(snap["trigger"]["thread"], "exporter");
}

#[test]
fn a_hanging_sidekiq_job_gets_a_slow_snapshot() {
    if !debian_gems_available("Sidekiq") {
        return;
    }
    let sb = Sandbox::new();
    let release = sb.dir.path().join("release");
    let redis = Redis::start(&sb);
    sb.write(
        "jobs.rb",
        &format!(
            r##"
require "sidekiq"
require "rbscope/sidekiq"
class SyncJob
  include Sidekiq::Worker
  sidekiq_options retry: 0, queue: "sync"
  def perform(account_id)
    sync_cursor = "cursor-#{{account_id}}"
    sleep 0.02 until File.exist?({release:?})
    File.write({done:?}, sync_cursor)
  end
end
"##,
            done = sb.dir.path().join("done")
        ),
    );
    redis.ruby_with_jobs(&sb, &[], "SyncJob.perform_async(5)");
    let _worker = Daemon(
        redis
            .sidekiq(&sb, &["-c", "1", "-q", "sync"])
            .env("RBSCOPE_SLOW_SNAPSHOT", "1")
            .spawn()
            .unwrap(),
    );
    let rows = wait_for_snapshots(&sb, 1, 90, "the Sidekiq job");
    std::fs::write(&release, "").unwrap();
    wait_for_file(&sb.dir.path().join("done"));
    let snap = assert_slow(
        &sb,
        &rows[0],
        "job still running after 1s",
        "SyncJob#perform",
        "sync_cursor",
        "cursor-5",
    );
    let extra = &snap["context"]["extra"];
    assert_eq!(extra["job_class"], "SyncJob", "{extra}");
    assert_eq!(extra["queue"], "sync", "{extra}");
    assert_eq!(extra["attempt"], "1", "{extra}");
    assert!(
        !extra["job_id"].as_str().unwrap_or("").is_empty(),
        "{extra}"
    );
}
