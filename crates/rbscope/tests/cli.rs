//! The CLI on good and bad input: one clear line and a non-zero exit for every failure.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

fn fails_with(cmd: &mut std::process::Command, needle: &str) {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "expected failure, got {out:?}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("rbscope: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
}

#[test]
fn help_and_version_are_true() {
    let out = std::process::Command::new(cli())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "run", "list", "show", "restore", "purge", "doctor", "--store",
    ] {
        assert!(help.contains(cmd), "help lacks {cmd}: {help}");
    }
    let out = std::process::Command::new(cli())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rbscope "));
}

#[test]
fn missing_store_lists_nothing_and_show_fails_clearly() {
    let sb = Sandbox::new();
    let out = sb.cli().arg("list").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("No snapshots yet"));
    fails_with(sb.cli().args(["show", "01ABC"]), "no store at");
}

#[test]
fn unknown_id_garbage_store_and_corrupt_snapshot() {
    let sb = Sandbox::new();
    let out = sb.run_started("one.rb", "def f\n  v = 1\n  raise 'x'\nend\nf\n");
    assert!(!out.status.success());
    let id = sb.list()[0]["id"].as_str().unwrap().to_string();
    fails_with(sb.cli().args(["show", "01ZZZZZZZZ"]), "no snapshot with id");
    fails_with(sb.cli().args(["show", "not-an-id!"]), "no snapshot with id");

    // Corrupt the stored blob: show says the snapshot cannot be read.
    let db = rusqlite_free_corrupt(&sb, &id);
    assert!(db);
    fails_with(sb.cli().args(["show", &id]), "cannot be read");

    // A file that is not a store at all.
    let junk = sb.write("junk.db", &"garbage ".repeat(2000));
    fails_with(
        sb.cli().arg("list").arg("--store").arg(&junk),
        "not an rbscope store",
    );
    let unsupported = sb
        .cli()
        .args(["list", "--store", "mysql://db/x"])
        .output()
        .unwrap();
    assert!(!unsupported.status.success());
}

/// Flips bytes inside the snapshot blob with the sqlite3 shell-free trick of rewriting the
/// file in place: find the blob's magic and damage the payload after it.
fn rusqlite_free_corrupt(sb: &Sandbox, _id: &str) -> bool {
    // Checkpoint the WAL into the main file first, by opening and listing (the CLI does that).
    let _ = sb.cli().arg("list").output();
    for path in [sb.store(), sb.store().with_extension("db-wal")] {
        let Ok(mut bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Some(pos) = bytes.windows(6).position(|w| w == b"RBSNAP") {
            for b in bytes.iter_mut().skip(pos + 20).take(40) {
                *b ^= 0x5a;
            }
            std::fs::write(&path, bytes).unwrap();
            return true;
        }
    }
    false
}

#[test]
fn doctor_reports_store_and_agent() {
    let sb = Sandbox::new();
    let out = sb.cli().arg("doctor").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not created yet"), "{text}");
    let expected = format!(
        "agent     {} loads in `ruby` (Ruby {})",
        env!("CARGO_PKG_VERSION"),
        ruby_version()
    );
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn doctor_with_pid_shows_a_live_agents_counters() {
    let sb = Sandbox::new();
    let script = sb.write(
        "live.rb",
        "require 'rbscope'\nRbscope.start\n3.times { begin; raise 'x'; rescue; end }\nputs 'ready'\n$stdout.flush\n$stdin.read\n",
    );
    let mut child = sb
        .ruby(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = child.id().to_string();
    let out = sb
        .cli()
        .args(["doctor", "-p", &pid])
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    drop(child.stdin.take());
    let _ = child.wait();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains(&format!("process   {pid}: agent")), "{text}");
    assert!(
        text.contains(&format!(
            "fast: VM frames read directly (layout {})",
            ruby_version()
        )),
        "{text}"
    );
    let seen = text
        .lines()
        .find(|l| l.trim_start().starts_with("raises_seen"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(seen.trim_end().ends_with('3'), "{seen}");
}

#[test]
fn doctor_with_bad_pids() {
    let sb = Sandbox::new();
    fails_with(
        sb.cli().args(["doctor", "-p", "999999999"]),
        "no process with PID",
    );
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = sleeper.id().to_string();
    fails_with(sb.cli().args(["doctor", "-p", &pid]), "not a Ruby process");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // A Ruby process without the agent.
    let mut ruby = std::process::Command::new("ruby")
        .args(["-e", "puts 1; $stdout.flush; sleep 30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(ruby.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = ruby.id().to_string();
    fails_with(
        sb.cli().args(["doctor", "-p", &pid]),
        "no rbscope agent listening",
    );
    let _ = ruby.kill();
    let _ = ruby.wait();
}

#[test]
fn show_text_has_frames_source_and_tree() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "text.rb",
        "class Order\n  def initialize\n    @lines = [1, 2]\n    @me = self\n  end\n  def pay(amount)\n    note = \"x\"\n    raise 'declined'\n  end\nend\nOrder.new.pay(5)\n",
    );
    assert!(!out.status.success());
    let id = sb.list()[0]["id"].as_str().unwrap().to_string();
    let text = sb.show_text(&id);
    assert!(text.starts_with("RuntimeError: declined"), "{text}");
    assert!(text.contains("#0 Order#pay(amount)"), "{text}");
    assert!(text.contains(">   10 |     raise 'declined'"), "{text}");
    assert!(text.contains("self = #<Order>"), "{text}");
    assert!(text.contains("@me = -> #"), "{text}");
    assert!(text.contains("amount = 5"), "{text}");
    assert!(text.contains("note = \"x\""), "{text}");
}

#[test]
fn unreadable_store_path_is_one_line() {
    let sb = Sandbox::new();
    let blocker = sb.write("file", "x");
    let out = sb
        .cli()
        .args(["show", "01A"])
        .arg("--store")
        .arg(blocker.join("store.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no store at"), "{}", stderr(&out));
}

#[test]
fn group_filter_and_purge() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "many.rb",
        r#"
def a = raise(KeyError, "a")
def b = raise(IOError, "b")
[:a, :a, :b, :a].each { |m| begin; send(m); rescue => e; Rbscope.report(e); end }
Rbscope.flush
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = |args: &[&str]| -> serde_json::Value {
        let o = sb.cli().args(args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let groups = json(&["list", "--group", "--json"]);
    assert_eq!(groups.as_array().unwrap().len(), 2);
    let key = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["exception_class"] == "KeyError")
        .unwrap();
    assert_eq!(key["count"], 3);
    assert_eq!(key["top_frame"], "Object#a()");
    assert_eq!(
        json(&["list", "--json", "--class", "IOError"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        json(&["list", "--json", "--since", "1h"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let text = sb.cli().args(["list", "--group"]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("KeyError: a"));

    fails_with(sb.cli().arg("purge"), "say what to delete");
    let bad = sb.cli().args(["list", "--since", "soon"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("\"soon\" is not a duration"),
        "{}",
        stderr(&bad)
    );
    let fp = key["fingerprint"].as_str().unwrap();
    let o = sb
        .cli()
        .args(["purge", "--fingerprint", fp])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 snapshot(s) deleted"),
        "{}",
        stderr(&o)
    );
    let o = sb
        .cli()
        .args(["purge", "--keep-count", "0"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 snapshot(s) deleted"),
        "{}",
        stderr(&o)
    );
    assert!(sb.list().is_empty());
}
