//! `rbscope break` and `rbscope snapshot -p` against real apps: a Rack app served over loopback
//! (by puma on Ruby 3.1, by tests/programs/rack_server.rb elsewhere) whose request waits in an
//! app method, a loop whose local changes, and a Sidekiq job that hangs (Ruby 3.1, Debian's
//! Sidekiq and redis-server). Each snapshot they make is shown and restored with its values.
//! Then the unsafe cases: two clients on the same line (each gets every hit, and each one's
//! Ctrl-C removes only its own hook), a client killed in the middle of a stream of hits
//! (nothing stays hooked, no id it printed is missing from the store), a thread that ends while
//! `snapshot -p --all` goes through the threads (a note for it, the others stored); the app
//! answers a request after each. Readiness is always explicit: the client's "breakpoint set"
//! line, a file the app writes when it got somewhere, the ids the client prints.

mod common;
use common::*;
use serde_json::Value as J;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `rbscope break`: the ids it prints arrive on `ids` as it prints them; what it
/// says on standard error is collected. Killed on drop.
struct BreakClient {
    child: Child,
    ids: mpsc::Receiver<String>,
    said: std::sync::Arc<std::sync::Mutex<String>>,
    /// The thread reading its standard error, joined once it ended (then `said` is whole).
    reader: Option<std::thread::JoinHandle<()>>,
}

impl BreakClient {
    /// Starts `rbscope break -p PID ARGS... --for 60s` (a hit that never comes fails the test
    /// within a minute, not the default ten) and returns once it says the breakpoint is set.
    fn start(sb: &Sandbox, pid: u32, args: &[&str]) -> BreakClient {
        let mut child = sb
            .cli()
            .args(["break", "-p", &pid.to_string()])
            .args(args)
            .args(["--for", "60s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        assert!(first.contains("breakpoint set at"), "{args:?}: {first}");
        let said = std::sync::Arc::new(std::sync::Mutex::new(first));
        let keep = said.clone();
        let reader = std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                keep.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let (tx, ids) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        BreakClient {
            child,
            ids,
            said,
            reader: Some(reader),
        }
    }

    /// The next snapshot id it prints (at most 30 s).
    fn next_id(&self) -> String {
        self.ids
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no id ({e}); it said: {}", self.said()))
    }

    fn said(&self) -> String {
        self.said.lock().unwrap().clone()
    }

    /// Waits for it to end and for all it said to be read; checks it exited 0.
    fn ended(&mut self) {
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        assert!(status.success(), "{status}: {}", self.said());
    }

    /// Waits for it to end by itself; checks it exited 0; returns the ids it printed that were
    /// not taken yet.
    fn finish(mut self) -> Vec<String> {
        self.ended();
        self.ids.iter().collect()
    }

    /// Sends it SIGTERM (as Ctrl-C would); it must end well, saying the agent removed it.
    fn stop(mut self) -> Vec<String> {
        // SAFETY: kill(2) on our own child's pid.
        let sent = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(sent, 0);
        self.ended();
        let ids = self.ids.iter().collect();
        assert!(
            self.said()
                .contains("breakpoint removed: stopped by the client"),
            "{}",
            self.said()
        );
        ids
    }
}

impl Drop for BreakClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Rack app: `/checkout?REF` waits in `Checkout#wait_for_stock` until the test writes
/// `release-order-REF` (after writing `started-order-REF` with its thread's name); `/prices?N`
/// runs `Checkout#price` N times; `/spin` runs it until `release-spin` exists; `/vanish`
/// starts a thread that ends as soon as the agent begins a snapshot.
const CONFIG_RU: &str = r##"
require "rbscope"
Rbscope.start(rate_limit: 100_000, log: false)
DIR = __dir__
class Checkout
  def wait_for_stock(order_ref)
    basket = ["A-1", "B-2"]
    File.write(File.join(DIR, "started-#{order_ref}"), Thread.current.name.to_s) # REQUEST
    sleep 0.01 until File.exist?(File.join(DIR, "release-#{order_ref}")) # WAITING
    "done #{order_ref} #{basket.size}"
  end

  def price(sku, n)
    cents = n * 7
    cents + 0 # PRICE
  end

  # Starts a thread that ends as soon as the agent has begun a snapshot after this.
  def self.vanishing_thread
    base = Rbscope.counters.fetch(:reports, 0)
    started = Queue.new
    Thread.new do
      Thread.current.name = "vanishing"
      started << true
      # Runnable all along (never asleep): the agent lets the app run between two threads'
      # snapshots, and at the first such turn this thread sees a snapshot begun and ends.
      Thread.pass until Rbscope.counters.fetch(:reports, 0) > base
    end
    started.pop
    "vanishing"
  end
end

# A thread that waits all along (besides the server's own).
Thread.new do
  Thread.current.name = "idler"
  sleep
end

use Rbscope::Middleware
run lambda { |env|
  q = env["QUERY_STRING"].to_s
  body = case env["PATH_INFO"]
         when "/ok" then "ok"
         when "/checkout" then Checkout.new.wait_for_stock("order-#{q}")
         when "/prices" then (1..q.to_i).sum { |n| Checkout.new.price("sku-#{n}", n) }.to_s
         when "/spin"
           n = 0
           until File.exist?(File.join(DIR, "release-spin"))
             Checkout.new.price("spin", n += 1)
             sleep 0.001
           end
           n.to_s
         when "/vanish" then Checkout.vanishing_thread
         end
  [200, { "content-type" => "text/plain" }, [body.to_s]]
}
"##;

/// The Rack app served, with its sandbox.
fn rack_app() -> (Sandbox, Server) {
    let sb = Sandbox::new();
    let ru = sb.write("config.ru", CONFIG_RU);
    let server = Server::rack(&sb, &ru);
    assert_eq!(server.get("/ok"), (200, "ok".to_string()));
    (sb, server)
}

fn pid(server: &Server) -> u32 {
    server.child.id()
}

/// Snapshots listed as (breakpoint).
fn breakpoint_rows(sb: &Sandbox) -> Vec<J> {
    sb.list()
        .into_iter()
        .filter(|r| r["exception_class"] == "(breakpoint)")
        .collect()
}

/// `rbscope snapshot -p PID ARGS...`: (exit code, stdout, stderr).
fn snapshot(sb: &Sandbox, pid: u32, args: &[&str]) -> (Option<i32>, String, String) {
    let out = sb
        .cli()
        .args(["snapshot", "-p", &pid.to_string()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

/// A string local's text.
fn text_local<'a>(snap: &'a J, frame: &'a J, name: &str) -> &'a J {
    let s = Snap(snap);
    &s.obj(s.local(frame, name))["value"]
}

/// Writes the release file at `.0` when dropped: a waiting request ends even when an assertion
/// fails first (the scope that runs it joins it before the test can end).
struct Release(std::path::PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

#[test]
fn a_request_waiting_in_a_method_is_caught_by_break_and_snapshot_and_restores() {
    let (sb, server) = rack_app();
    let pid = pid(&server);
    let request_line = line_of(CONFIG_RU, "# REQUEST");
    let waiting_line = line_of(CONFIG_RU, "# WAITING");

    // A breakpoint on a line of the method the request will wait in; then the request.
    let client = BreakClient::start(&sb, pid, &[&format!("config.ru:{request_line}")]);
    assert!(
        client.said().contains("(hooked wait_for_stock (config.ru:"),
        "{}",
        client.said()
    );
    std::thread::scope(|scope| {
        let release = Release(sb.dir.path().join("release-order-77"));
        let request = scope.spawn(|| server.get("/checkout?77"));
        let ids = client.finish();
        assert_eq!(ids.len(), 1, "{ids:?}");
        let started = sb.dir.path().join("started-order-77");
        wait_for_file(&started);
        let thread = std::fs::read_to_string(&started).unwrap();
        assert!(!thread.is_empty(), "the request's thread has a name");

        // The hit: the request's thread at the line, before it ran, with the method's locals
        // and self; the Rack app's frame below it with the request's env.
        let snap = sb.show(&ids[0]);
        assert_eq!(snap["trigger"]["kind"], "breakpoint");
        assert_eq!(snap["trigger"]["thread"], thread.as_str());
        assert_eq!(
            snap["trigger"]["reason"],
            format!("line config.ru:{request_line} ran")
        );
        let top = &snap["frames"][0];
        assert!(
            top["label"]
                .as_str()
                .unwrap()
                .starts_with("Checkout#wait_for_stock"),
            "{top}"
        );
        assert_eq!(top["lineno"], request_line as i64, "{top}");
        assert_eq!(text_local(&snap, top, "order_ref"), "order-77");
        let s = Snap(&snap);
        assert_eq!(s.obj(&top["self"])["class"], "Checkout", "{top}");
        let shown = sb.show_text(&ids[0]);
        assert!(
            shown.starts_with(&format!(
                "breakpoint snapshot: thread {thread} (line config.ru:{request_line} ran)"
            )),
            "{shown}"
        );
        assert!(shown.contains("order_ref = \"order-77\""), "{shown}");

        // While it waits: the same thread by name, from outside, now.
        let (code, out, err) = snapshot(&sb, pid, &["--thread", &thread]);
        assert_eq!(code, Some(0), "{err}");
        let (live, rest) = out.trim().split_once("  ").unwrap();
        assert!(rest.starts_with(&format!("thread {thread} (tid ")), "{out}");
        assert!(err.contains("1 of 1 threads snapshotted"), "{err}");
        let snap = sb.show(live);
        assert_eq!(snap["trigger"]["kind"], "live");
        assert_eq!(snap["trigger"]["thread"], thread.as_str());
        let top = &snap["frames"][0];
        assert!(
            top["label"]
                .as_str()
                .unwrap()
                .starts_with("Checkout#wait_for_stock"),
            "{top}"
        );
        assert_eq!(top["lineno"], waiting_line as i64, "{top}");
        assert_eq!(text_local(&snap, top, "order_ref"), "order-77");

        // Both restore: the console in the method's frame, its locals as they were.
        for id in [&ids[0], live] {
            let text = sb.restore(id, "puts \"REF=#{order_ref} BASKET=#{basket.inspect}\"\n");
            assert!(
                text.contains("REF=order-77 BASKET=[\"A-1\", \"B-2\"]"),
                "{text}"
            );
        }

        // Other requests were served all along; this one finishes untouched.
        assert_eq!(server.get("/ok"), (200, "ok".to_string()));
        drop(release);
        assert_eq!(
            request.join().unwrap(),
            (200, "done order-77 2".to_string())
        );
    });
    assert_eq!(breakpoints_set(pid), 0);
    assert_eq!(sb.list().len(), 2);
}

/// A loop whose locals change: `i` counts 0 to 19 again and again, `round` grows, `seen` is
/// `i * 3`. It prints `ready` once it has looped.
const LOOP: &str = r#"
require "rbscope"
Rbscope.start(rate_limit: 10_000, log: false)
class Poller
  def run(ready)
    round = 0
    loop do
      round += 1
      20.times do |i|
        seen = i * 3
        ready << true if round == 1 && i.zero?
        sleep 0.001 # BREAK
      end
    end
  end
end
ready = Queue.new
Thread.new do
  Thread.current.name = "poller"
  Poller.new.run(ready)
end
ready.pop
$stdout.puts "ready"
$stdout.flush
sleep
"#;

#[test]
fn a_condition_on_a_changing_local_stores_exactly_that_value() {
    let sb = Sandbox::new();
    let script = sb.write("poller.rb", LOOP);
    let line = line_of(LOOP, "# BREAK");
    let p = Running::start(sb, &script, &[], "ready");
    let (sb, pid) = (p.sb(), p.child.id());
    let out = sb
        .cli()
        .args(["break", "-p", &pid.to_string()])
        .args([&format!("poller.rb:{line}"), "--if", "i == 7", "--max", "3"])
        .args(["--for", "60s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    // Each hit holds i == 7 (and seen == 21) at the line; three hits, three rounds, in order.
    let mut rounds = Vec::new();
    for id in &ids {
        let snap = sb.show(id);
        assert_eq!(snap["trigger"]["thread"], "poller");
        let s = Snap(&snap);
        let top = &snap["frames"][0];
        assert!(
            top["label"]
                .as_str()
                .unwrap()
                .starts_with("Poller#run{block}{block}"),
            "{top}"
        );
        assert_eq!(top["lineno"], line as i64);
        assert_eq!(s.local(top, "i")["value"], 7, "{top}");
        assert_eq!(s.local(top, "seen")["value"], 21, "{top}");
        let outer = s.frame("Poller#run(");
        rounds.push(s.local(outer, "round")["value"].as_i64().unwrap());
    }
    assert!(
        rounds.windows(2).all(|w| w[0] < w[1]),
        "one hit per round: {rounds:?}"
    );

    // Restored: the block's frame with that hit's values.
    let text = sb.restore(&ids[1], "puts \"I=#{i} SEEN=#{seen}\"\n");
    assert!(text.contains("I=7 SEEN=21"), "{text}");
    assert_eq!(breakpoints_set(pid), 0);
}

#[test]
fn a_hanging_sidekiq_job_is_found_by_snapshot_all_and_caught_by_break() {
    if !debian_gems_available("Sidekiq") {
        return;
    }
    let sb = Sandbox::new();
    let redis = Redis::start(&sb);
    let dir = sb.dir.path();
    let jobs = format!(
        r##"
require "sidekiq"
require "rbscope/sidekiq"
class SyncJob
  include Sidekiq::Worker
  sidekiq_options retry: 0, queue: "sync"
  def perform(account_id, mode)
    sync_cursor = "cursor-#{{account_id}}-#{{mode}}"
    File.write({started:?}, Thread.current.name.to_s)
    until File.exist?({release:?})
      sleep 0.01 # BREAK
    end
    File.write({done:?}, sync_cursor)
  end
end
"##,
        started = dir.join("started"),
        release = dir.join("release"),
        done = dir.join("done"),
    );
    sb.write("jobs.rb", &jobs);
    let line = line_of(&jobs, "# BREAK");
    redis.ruby_with_jobs(&sb, &[], "SyncJob.perform_async(5, \"full\")");
    let worker = Daemon(
        redis
            .sidekiq(&sb, &["-c", "2", "-q", "sync"])
            .spawn()
            .unwrap(),
    );
    let pid = worker.0.id();
    wait_for_file(&dir.join("started"));

    // Every thread: the job's is the one with SyncJob#perform, its arguments in the frame.
    let (code, out, err) = snapshot(&sb, pid, &["--all", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let all: J = serde_json::from_str(&out).unwrap();
    let taken = all["taken"].as_array().unwrap();
    assert!(taken.len() > 2, "sidekiq has several threads: {all}");
    let jobs_found: Vec<(String, J)> = taken
        .iter()
        .filter_map(|t| {
            let snap = sb.show(t["id"].as_str().unwrap());
            let has = snap["frames"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["label"].as_str().unwrap().starts_with("SyncJob#perform"));
            has.then(|| (t["thread"].as_str().unwrap().to_string(), snap))
        })
        .collect();
    assert_eq!(jobs_found.len(), 1, "one thread runs the job: {all}");
    let (thread, snap) = &jobs_found[0];
    let job_thread = std::fs::read_to_string(dir.join("started")).unwrap();
    assert!(
        thread.starts_with(&format!("{job_thread} (tid ")),
        "{thread}"
    );
    let s = Snap(snap);
    let f = s.frame("SyncJob#perform");
    assert_eq!(f["lineno"], line as i64, "{f}");
    assert_eq!(s.local(f, "account_id")["value"], 5);
    assert_eq!(text_local(snap, f, "mode"), "full");
    assert_eq!(text_local(snap, f, "sync_cursor"), "cursor-5-full");

    // A breakpoint on the line the job loops on: the job's thread, with its arguments.
    let client = BreakClient::start(&sb, pid, &[&format!("jobs.rb:{line}")]);
    let ids = client.finish();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let snap = sb.show(&ids[0]);
    assert_eq!(snap["trigger"]["kind"], "breakpoint");
    assert_eq!(snap["trigger"]["thread"], job_thread.as_str());
    let top = &snap["frames"][0];
    assert!(
        top["label"]
            .as_str()
            .unwrap()
            .starts_with("SyncJob#perform"),
        "{top}"
    );
    assert_eq!(Snap(&snap).local(top, "account_id")["value"], 5);
    let text = sb.restore(
        &ids[0],
        "puts \"ACCOUNT=#{account_id} MODE=#{mode} CURSOR=#{sync_cursor}\"\n",
    );
    assert!(
        text.contains("ACCOUNT=5 MODE=full CURSOR=cursor-5-full"),
        "{text}"
    );

    // The job was never disturbed: released, it finishes.
    assert_eq!(breakpoints_set(pid), 0);
    std::fs::write(dir.join("release"), "").unwrap();
    wait_for_file(&dir.join("done"));
    assert_eq!(
        std::fs::read_to_string(dir.join("done")).unwrap(),
        "cursor-5-full"
    );
}

/// Two clients on the same line, each stopped by Ctrl-C in turn; a client killed in the middle
/// of a stream of hits; a thread that ends while `snapshot -p --all` goes through the threads.
/// The app answers a request after each.
#[test]
fn clients_that_share_a_line_or_go_away_and_threads_that_end_leave_the_app_well() {
    let (sb, server) = rack_app();
    let pid = pid(&server);
    let at = format!("config.ru:{}", line_of(CONFIG_RU, "# PRICE"));
    let price_n = |snap: &J| -> i64 {
        let top = &snap["frames"][0];
        assert!(
            top["label"].as_str().unwrap().starts_with("Checkout#price"),
            "{top}"
        );
        Snap(snap).local(top, "n")["value"].as_i64().unwrap()
    };

    // Two clients, one line: each gets every hit, its own snapshot of it.
    let a = BreakClient::start(&sb, pid, &[&at, "--max", "100"]);
    let b = BreakClient::start(&sb, pid, &[&at, "--max", "100"]);
    assert_eq!(breakpoints_set(pid), 2);
    assert_eq!(server.get("/prices?3"), (200, "42".to_string()));
    let (a_ids, b_ids): (Vec<String>, Vec<String>) = (
        (0..3).map(|_| a.next_id()).collect(),
        (0..3).map(|_| b.next_id()).collect(),
    );
    let ns = |ids: &[String]| {
        ids.iter()
            .map(|id| price_n(&sb.show(id)))
            .collect::<Vec<_>>()
    };
    assert_eq!(ns(&a_ids), [1, 2, 3]);
    assert_eq!(ns(&b_ids), [1, 2, 3]);
    assert!(
        a_ids.iter().all(|id| !b_ids.contains(id)),
        "{a_ids:?} {b_ids:?}"
    );

    // A's Ctrl-C removes A's hook only: B goes on getting hits.
    assert!(a.stop().is_empty(), "A had no hit it did not print");
    // The agent sees A's connection close (within a few milliseconds) and removes its hook.
    wait_for_breakpoints_set(pid, 1);
    assert_eq!(server.get("/prices?2"), (200, "21".to_string()));
    let b_more: Vec<String> = (0..2).map(|_| b.next_id()).collect();
    assert_eq!(ns(&b_more), [1, 2]);
    assert!(b.stop().is_empty(), "B printed no more than the hits");
    wait_for_breakpoints_set(pid, 0);
    assert_eq!(breakpoint_rows(&sb).len(), 8);
    assert_eq!(server.get("/prices?2"), (200, "21".to_string()));

    // A client killed (SIGKILL: no goodbye) while hits stream in.
    let c = BreakClient::start(&sb, pid, &[&at, "--max", "10000"]);
    std::thread::scope(|scope| {
        let release = Release(sb.dir.path().join("release-spin"));
        let spin = scope.spawn(|| server.get("/spin"));
        let printed: Vec<String> = (0..5).map(|_| c.next_id()).collect();
        drop(c);
        // The agent sees the connection close and removes the hook, while the line still runs.
        wait_for_breakpoints_set(pid, 0);
        // No id the client printed is missing: each is in the store.
        for id in &printed {
            assert!(price_n(&sb.show(id)) >= 1);
        }
        drop(release);
        let (status, spins) = spin.join().unwrap();
        assert_eq!(status, 200);
        assert!(spins.parse::<u64>().unwrap() >= 5, "{spins}");
    });
    // Nothing is hooked any more: the line runs and nothing more is stored. (`snapshot -p`
    // answers once its snapshot is in the store, after anything queued before it.)
    let barrier = |sb: &Sandbox| {
        let (code, _, err) = snapshot(sb, pid, &[]);
        assert_eq!(code, Some(0), "{err}");
    };
    barrier(&sb);
    let before = breakpoint_rows(&sb).len();
    assert_eq!(
        server.get("/prices?50"),
        (200, (7 * 50 * 51 / 2).to_string())
    );
    barrier(&sb);
    assert_eq!(breakpoint_rows(&sb).len(), before, "a hit after the kill");

    // A thread that ends while `snapshot -p --all` goes through the threads: a note for it,
    // every other thread stored. The thread ends at the first turn the app gets after the
    // agent began a snapshot, which on a loaded machine may come only after its own turn (or
    // before the agent lists the threads): each attempt is checked whole, and one in five at
    // least must see it end.
    let mut noted = 0;
    for attempt in 0..5 {
        assert_eq!(server.get("/vanish"), (200, "vanishing".to_string()));
        let (code, out, err) = snapshot(&sb, pid, &["--all"]);
        let lines: Vec<&str> = out.lines().collect();
        let (gone, stored): (Vec<&str>, Vec<&str>) =
            lines.iter().partition(|l| l.starts_with("-  "));
        for g in &gone {
            assert!(
                g.starts_with("-  thread vanishing (tid ")
                    && g.ends_with(": it ended before its turn"),
                "attempt {attempt}: {out}{err}"
            );
        }
        assert!(stored.len() >= 2, "attempt {attempt}: {out}{err}");
        assert!(
            err.contains(&format!(
                "{} of {} threads snapshotted",
                stored.len(),
                lines.len()
            )),
            "{err}"
        );
        // Exit 1 when not every thread asked for was stored.
        assert_eq!(code, Some(i32::from(!gone.is_empty())), "{out}{err}");
        for l in &stored {
            let id = l.split_whitespace().next().unwrap();
            assert_eq!(sb.show(id)["trigger"]["kind"], "live", "{l}");
        }
        noted += gone.len();
        if noted > 0 {
            break;
        }
    }
    assert!(
        noted > 0,
        "no thread ended during a snapshot in five attempts"
    );
    // Nothing else happened to the app: every snapshot in the store is one a test asked for.
    for row in sb.list() {
        assert!(
            row["exception_class"] == "(live)" || row["exception_class"] == "(breakpoint)",
            "{row}"
        );
    }
    assert_eq!(server.get("/ok"), (200, "ok".to_string()));
}
