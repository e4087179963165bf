//! Apps writing to the PostgreSQL fleet store, end to end: a real Ruby process with the agent
//! stores into a real server; the CLI lists, groups, shows and restores from it; signing uses
//! the fleet's key file; and when the server goes away snapshots wait in a bounded backlog,
//! are dropped and counted past it, and arrive when the server is back.

mod common;

use common::pg::Postgres;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const CHECKOUT: &str = r##"
class Checkout
  def initialize; @cart = { sku: "A-1", qty: 2 }; end
  def pay(amount)
    card = "4111"
    raise ArgumentError, "declined #{amount}"
  end
end
"##;

const APP: &str = r##"
require "rbscope"
Rbscope.start(rate_limit: 0)
require_relative "checkout"
begin; Checkout.new.pay(42); rescue => e; Rbscope.report(e); end
Rbscope.flush
c = Rbscope.counters
puts "stored=#{c[:stored]} errors=#{c[:store_errors]}"
"##;

fn cli_with(sb: &Sandbox, url: &str, key: Option<&Path>) -> Command {
    let mut c = sb.cli();
    c.env("RBSCOPE_STORE", url).env_remove("RBSCOPE_STORE_KEY");
    if let Some(k) = key {
        c.env("RBSCOPE_STORE_KEY", k);
    }
    c
}

fn restore_session(
    sb: &Sandbox,
    url: &str,
    key: Option<&Path>,
    args: &[&str],
) -> (bool, String, String) {
    let out = with_input(
        cli_with(sb, url, key)
            .args(["restore", "-r", "./checkout"])
            .args(args),
        "puts \"AMOUNT=#{amount} SKU=#{@cart[:sku]} SELF=#{self.class}\"\n",
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

#[test]
fn an_app_stores_into_postgres_and_the_cli_reads_it_back() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let sb = Sandbox::new();
    let key = sb.dir.path().join("fleet.key");
    let made = cli_with(&sb, &url, None)
        .args(["key", "new"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));

    // Two hosts' worth of the same failure, signed with the fleet key.
    sb.write("checkout.rb", CHECKOUT);
    let app = sb.write("app.rb", APP);
    for _ in 0..2 {
        let out = sb
            .ruby(&app)
            .env("RBSCOPE_STORE", &url)
            .env("RBSCOPE_STORE_KEY", &key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "stored=1 errors=0\n",
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(" stored: ArgumentError: declined 42"),
            "{}",
            stderr(&out)
        );
    }
    // Nothing went to the sandbox's SQLite file.
    assert!(!sb.store().exists());

    let list = cli_with(&sb, &url, None)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", stderr(&list));
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["exception_class"], "ArgumentError");
    assert_eq!(rows[0]["top_frame"], "Checkout#pay(amount)");
    let id = rows[0]["id"].as_str().unwrap().to_string();

    let groups = cli_with(&sb, &url, None)
        .args(["list", "--group", "--json", "--class", "ArgumentError"])
        .output()
        .unwrap();
    let groups: serde_json::Value = serde_json::from_slice(&groups.stdout).unwrap();
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(groups[0]["last_id"], id.as_str());

    let show = cli_with(&sb, &url, None)
        .args(["show", &id, "--json"])
        .output()
        .unwrap();
    assert!(show.status.success(), "{}", stderr(&show));
    let doc: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let snap = Snap(&doc);
    let frame = snap.frame("Checkout#pay");
    assert_eq!(snap.local(frame, "amount")["value"], 42);

    // Restore with the fleet's key: back in the frame.
    let (ok, out, err) = restore_session(&sb, &url, Some(&key), &[&id]);
    assert!(ok, "{err}\n{out}");
    assert!(
        out.contains("AMOUNT=42 SKU=A-1 SELF=Checkout"),
        "{out}\n{err}"
    );

    // Without the key, or with another key: refused, one line; --trust overrides.
    let (ok, _, err) = restore_session(&sb, &url, None, &[&id]);
    assert!(!ok);
    assert!(
        err.contains("no key was given") && err.contains("RBSCOPE_STORE_KEY"),
        "{err}"
    );
    let other = sb.dir.path().join("other.key");
    assert!(cli_with(&sb, &url, None)
        .args(["key", "new"])
        .arg(&other)
        .output()
        .unwrap()
        .status
        .success());
    let (ok, _, err) = restore_session(&sb, &url, Some(&other), &[&id]);
    assert!(!ok);
    assert!(err.contains("does not match"), "{err}");
    let (ok, out, err) = restore_session(&sb, &url, None, &[&id, "--trust"]);
    assert!(ok, "{err}");
    assert!(out.contains("AMOUNT=42"), "{out}");

    // A writer without the key stores unsigned snapshots, which restore refuses.
    let out = sb
        .ruby(&app)
        .env("RBSCOPE_STORE", &url)
        .env_remove("RBSCOPE_STORE_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let newest = cli_with(&sb, &url, None)
        .args(["list", "--json", "-n", "1"])
        .output()
        .unwrap();
    let newest: serde_json::Value = serde_json::from_slice(&newest.stdout).unwrap();
    let unsigned = newest[0]["id"].as_str().unwrap().to_string();
    let (ok, _, err) = restore_session(&sb, &url, Some(&key), &[&unsigned]);
    assert!(!ok);
    assert!(err.contains("is unsigned"), "{err}");

    // purge works on the fleet store too.
    let purge = cli_with(&sb, &url, None)
        .args(["purge", "--id", &unsigned])
        .output()
        .unwrap();
    assert!(purge.status.success(), "{}", stderr(&purge));
    let mut c = pg.client("fleet");
    let n: i64 = c
        .query_one("SELECT count(*) FROM rbscope_snapshots", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

const OUTAGE: &str = r##"
require "rbscope"
Rbscope.start(rate_limit: 0, store_backlog: 5)
def fail_once(i)
  order = { id: i }
  raise KeyError, "order #{order[:id]}"
rescue => e
  e
end
def counters
  c = Rbscope.counters
  %i[stored store_errors store_dropped stored_after_retry].map { |k| "#{k}=#{c[k]}" }.join(" ")
end
Rbscope.report(fail_once(0))
Rbscope.flush
puts counters
$stdout.flush
$stdin.gets # the test stops the server
8.times { |i| Rbscope.report(fail_once(i + 1)) }
Rbscope.flush
puts counters
$stdout.flush
$stdin.gets # the test starts the server again
Rbscope.flush
puts counters
"##;

#[test]
fn while_postgres_is_down_snapshots_wait_in_a_bounded_backlog() {
    let mut pg = Postgres::start();
    let url = pg.database("outage");
    let sb = Sandbox::new();
    let app = sb.write("outage.rb", OUTAGE);
    let mut child = sb
        .ruby(&app)
        .env("RBSCOPE_STORE", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();

    assert_eq!(
        next(),
        "stored=1 store_errors=0 store_dropped=0 stored_after_retry=0"
    );
    pg.stop();
    stdin.write_all(b"go\n").unwrap();
    // Five wait (the backlog's bound), three are dropped and counted; the app goes on.
    assert_eq!(
        next(),
        "stored=1 store_errors=5 store_dropped=3 stored_after_retry=0"
    );
    pg.resume();
    stdin.write_all(b"go\n").unwrap();
    assert_eq!(
        next(),
        "stored=6 store_errors=5 store_dropped=3 stored_after_retry=5"
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[rbscope] snapshot not stored: ") && err.contains("will retry"),
        "{err}"
    );
    let mut c = pg.client("outage");
    // The first five of the outage waited; the last three were the ones dropped.
    let messages: Vec<String> = c
        .query(
            "SELECT message FROM rbscope_snapshots ORDER BY message",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        messages,
        ["order 0", "order 1", "order 2", "order 3", "order 4", "order 5"]
    );
}

/// Snapshots without an exception go to the fleet store too: `rbscope snapshot -p` of a
/// thread of an app that writes to PostgreSQL is listed from there as `(live)` and restores.
#[test]
fn a_live_snapshot_of_a_running_app_goes_to_postgres() {
    let pg = Postgres::start();
    let url = pg.database("fleet_live");
    let sb = Sandbox::new();
    sb.write("checkout.rb", CHECKOUT);
    let app = sb.write(
        "waiting.rb",
        r##"
require "rbscope"
Rbscope.start(rate_limit: 0)
require_relative "checkout"
class Checkout
  def wait_for_bank(amount, go)
    attempt = 3
    go.pop
  end
end
go = Queue.new
t = Thread.new { Thread.current.name = "payer"; Checkout.new.wait_for_bank(42, go) }
sleep 0.01 until t.status == "sleep"
puts "ready"
$stdout.flush
$stdin.gets
go << :go
t.join
"##,
    );
    let mut child = sb
        .ruby(&app)
        .env("RBSCOPE_STORE", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let taken = sb
        .cli()
        .args([
            "snapshot",
            "-p",
            &child.id().to_string(),
            "--thread",
            "payer",
        ])
        .output()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(taken.status.success(), "{}", stderr(&taken));
    let id = String::from_utf8_lossy(&taken.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(!sb.store().exists(), "nothing in the sandbox's SQLite file");

    let list = cli_with(&sb, &url, None)
        .args(["list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["id"], id.as_str(), "{rows}");
    assert_eq!(rows[0]["exception_class"], "(live)", "{rows}");
    let (ok, out, err) = restore_session(&sb, &url, None, &["--trust", &id]);
    assert!(ok, "{err}\n{out}");
    assert!(
        out.contains("AMOUNT=42 SKU=A-1 SELF=Checkout"),
        "{out}\n{err}"
    );
}
