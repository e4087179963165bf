//! The web UI shows snapshots no exception caused by their kind: a real Ruby process gets a
//! live snapshot of two threads taken together (`rbscope snapshot -p --thread alpha --thread
//! beta`), a breakpoint's (`rbscope break -p`) and a slow request's (`slow_snapshot`), each
//! through its real path; the API gives each its trigger and the live ones their take, and
//! Chromium (tests/browser/ui_kinds.py, driven by Playwright) checks that the list shows the
//! three kinds, that each page shows its kind, reason and thread, and that a live snapshot's
//! page links to the other thread of its take. Readiness is what each step prints or stores
//! (bounded polls of the store, no timing guesses).

mod common;
use common::*;
use serde_json::Value as J;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Two threads parked with locals of their own; a slow "request" through Rbscope::Middleware
/// (`slow`, held until `release`); a line for a breakpoint (`go`). Each command answers
/// `done CMD` once what it queued is in the store.
const APP: &str = r#"require "rbscope"
Rbscope.start(slow_snapshot: 1, rate_limit: 1000, log: false)
$stdout.sync = true
class Parked
  def park(parked, go)
    mine = Thread.current.name
    parked << mine
    go.pop
  end
end
class Counter
  def bump(k)
    total = k * 10
    total + 1 # BREAK
  end
end
class Checkout
  def wait_for_stock(release)
    order_ref = "order-77"
    release.pop
    order_ref
  end
end
parked = Queue.new
go = Queue.new
threads = %w[alpha beta].map do |name|
  Thread.new do
    Thread.current.name = name
    Parked.new.park(parked, go)
  end
end
2.times { parked.pop }
sleep 0.01 until threads.all? { |t| t.status == "sleep" }
release = Queue.new
request = nil
puts "ready"
while (line = $stdin.gets)
  cmd = line.strip
  case cmd
  when "go" then Counter.new.bump(1)
  when "slow"
    app = ->(_env) { [200, {}, [Checkout.new.wait_for_stock(release)]] }
    request = Thread.new do
      Thread.current.name = "request-1"
      Rbscope::Middleware.new(app).call({ "REQUEST_METHOD" => "GET", "PATH_INFO" => "/checkout" })
    end
  when "release"
    release << :go
    request.join
  end
  Rbscope.flush
  puts "done #{cmd}"
end
"#;

struct App {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    sb: Sandbox,
}

impl App {
    fn start() -> App {
        let sb = Sandbox::new();
        let script = sb.write("app.rb", APP);
        let mut child = sb
            .ruby(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        App {
            child,
            stdin,
            out,
            sb,
        }
    }

    /// Sends `cmd` and waits until the app has done it.
    fn run(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "the app ended");
            if line.trim() == format!("done {cmd}") {
                return;
            }
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The store's snapshots listed as `(kind)`, polled until there are `n` (at most 60 s).
    fn wait_for(&self, kind: &str, n: usize) -> Vec<J> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.sb.store().exists() {
                let rows: Vec<J> = self
                    .sb
                    .list()
                    .into_iter()
                    .filter(|r| r["exception_class"] == format!("({kind})"))
                    .collect();
                if rows.len() >= n {
                    return rows;
                }
            }
            assert!(Instant::now() < deadline, "no {kind} snapshot within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_ui_shows_live_breakpoint_and_slow_snapshots_by_kind() {
    let python = repo_root().join("target/pyenv/bin/python");
    assert!(
        python.exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Chromium and Playwright: run scripts/install-deps"
    );
    let mut app = App::start();
    let pid = app.pid();

    // Live: two threads taken together.
    let out = app
        .sb
        .cli()
        .args([
            "snapshot", "-p", &pid, "--thread", "alpha", "--thread", "beta",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let [alpha, beta] = ids[..] else {
        panic!("two ids: {text}")
    };

    // Breakpoint: set (its first line says so), then the line runs once (--max 1 ends it).
    let line = APP.lines().position(|l| l.contains("# BREAK")).unwrap() + 1;
    let mut brk = app
        .sb
        .cli()
        .args(["break", "-p", &pid, &format!("app.rb:{line}"), "--max", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(brk.stderr.take().unwrap());
    let mut said = String::new();
    err.read_line(&mut said).unwrap();
    assert!(said.contains("breakpoint set at"), "{said}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    app.run("go");
    let out = brk.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let breakpoint = app.wait_for("breakpoint", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Slow: the request waits until its snapshot is stored, then finishes.
    app.run("slow");
    let slow = app.wait_for("slow", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.run("release");

    // What the pages must show, from the API's side.
    let store = app.sb.store();
    let ui = Ui::start(&store, &[], &[]);
    let doc = |id: &str| ui.get(&format!("/api/snapshots/{id}")).json();
    let (a, b, k, s) = (doc(alpha), doc(beta), doc(&breakpoint), doc(&slow));
    assert_eq!(a["trigger"]["kind"], "live");
    assert_eq!(a["trigger"]["thread"], "alpha");
    assert_eq!(a["take"]["id"], b["take"]["id"]);
    let others = |d: &J| -> Vec<String> {
        d["take"]["threads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["this"] == false)
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(others(&a), [beta]);
    assert_eq!(others(&b), [alpha]);
    assert_eq!(k["trigger"]["kind"], "breakpoint");
    assert_eq!(k["trigger"]["reason"], format!("line app.rb:{line} ran"));
    assert!(k["take"].is_null());
    assert_eq!(s["trigger"]["kind"], "slow");
    assert_eq!(s["trigger"]["thread"], "request-1");
    let slow_reason = s["trigger"]["reason"].as_str().unwrap();
    assert!(
        slow_reason.starts_with("request still running after"),
        "{s}"
    );

    let shots = repo_root().join("target/ui-test-kinds");
    std::fs::create_dir_all(&shots).unwrap();
    let browse = |mode: &[&str]| -> String {
        let out = Command::new(&python)
            .arg(repo_root().join("crates/rbscope/tests/browser/ui_kinds.py"))
            .arg(&ui.url)
            .arg(&shots)
            .args([alpha, beta, &breakpoint, &slow])
            .arg(format!("line app.rb:{line} ran"))
            .arg(slow_reason)
            .args(mode)
            .output()
            .unwrap();
        let log = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "browser test failed:\n{log}");
        log
    };
    let log = browse(&[]);
    assert!(log.contains("all kind checks passed\n"), "{log}");

    // Beta's snapshot purged: alpha's page names it without a link.
    let out = app.sb.cli().args(["purge", "--id", beta]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(doc(alpha)["take"]["threads"][1]["stored"], false);
    let log = browse(&["gone"]);
    assert!(log.contains("all kind checks passed (gone)"), "{log}");
}
