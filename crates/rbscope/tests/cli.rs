//! The CLI on good and bad input (one clear line and a non-zero exit for every failure), and
//! what it says about itself: `--help` of every command frozen in tests/fixtures/help/, and
//! README.md's command lines checked against it.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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
    for cmd in ["run", "list", "show", "restore", "purge", "doctor"] {
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

// ---------------------------------------------------------------- `--help`, frozen

/// Where the `--help` of each command is kept: `rbscope.txt`, `rbscope-heap-summary.txt` ...
fn help_fixtures() -> PathBuf {
    repo_root().join("crates/rbscope/tests/fixtures/help")
}

const UPDATE_HELP: &str = "RBSCOPE_UPDATE_HELP";

/// `rbscope ARGS --help` as a user at a 100-column terminal sees it, whatever this test runs
/// in: clap takes the width from a terminal on stdout, stderr or stdin, else from COLUMNS, so
/// none of the three is a terminal; the store variables would show their values.
fn help_of(args: &[String]) -> String {
    let out = std::process::Command::new(cli())
        .args(args)
        .arg("--help")
        .env("COLUMNS", "100")
        .env_remove("LINES")
        .env_remove("RBSCOPE_STORE")
        .env_remove("RBSCOPE_STORE_KEY")
        .env_remove("CLICOLOR_FORCE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?} --help: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under "Commands:" (`help` aside).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // Wrapped descriptions are indented further than the names.
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command's path (`[]`, `["heap"]`, `["heap", "summary"]` ...) and its `--help`.
fn every_help() -> BTreeMap<Vec<String>, String> {
    let mut all = BTreeMap::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let help = help_of(&path);
        for sub in subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        all.insert(path, help);
    }
    all
}

fn fixture_name(path: &[String]) -> String {
    let mut name = String::from("rbscope");
    for p in path {
        name.push('-');
        name.push_str(p);
    }
    name + ".txt"
}

/// The lines that differ, `-` for the fixture's and `+` for the binary's, with two lines of
/// context around each change (a longest-common-subsequence diff: help texts are short).
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(op, _)| *op != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            out += &format!("{op} {line}\n");
            skipped = false;
        } else if !skipped {
            out += "  ...\n";
            skipped = true;
        }
    }
    if !expected.is_empty()
        && !actual.is_empty()
        && expected.ends_with('\n') != actual.ends_with('\n')
    {
        out += "(the two differ in the newline at the end)\n";
    }
    out
}

/// What a user sees with `--help`, for the top level and every (nested) subcommand, is the
/// text kept in tests/fixtures/help/: a change to any flag, default or description shows up in
/// review as a change to those files.
#[test]
fn help_output_matches_the_fixtures() {
    let dir = help_fixtures();
    let update = std::env::var_os(UPDATE_HELP).is_some();
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let helps = every_help();
    assert!(
        helps.len() > 20,
        "too few commands found: {:?}",
        helps.keys()
    );
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (path, help) in &helps {
        let name = fixture_name(path);
        let file = dir.join(&name);
        names.insert(name.clone());
        if update {
            std::fs::write(&file, help).unwrap();
            continue;
        }
        let shown = format!("rbscope {}", path.join(" "));
        match std::fs::read_to_string(&file) {
            Ok(expected) if &expected == help => {}
            Ok(expected) => problems.push(format!(
                "`{} --help` differs from tests/fixtures/help/{name} (- fixture, + now):\n{}",
                shown.trim_end(),
                line_diff(&expected, help)
            )),
            Err(_) => problems.push(format!(
                "`{} --help` has no fixture tests/fixtures/help/{name}",
                shown.trim_end()
            )),
        }
    }
    // A fixture for a command that is gone.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !names.contains(&name) {
            if update {
                std::fs::remove_file(entry.path()).unwrap();
            } else {
                problems.push(format!(
                    "tests/fixtures/help/{name} is the help of no command any more"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nIf these changes are meant, update the fixtures and review their diff:\n  \
         {UPDATE_HELP}=1 cargo test -p rbscope --test cli help_output_matches_the_fixtures",
        problems.join("\n\n")
    );
}

#[test]
fn the_help_diff_shows_what_changed() {
    let d = line_diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nX\ne\nf\ng\n");
    assert_eq!(d, "  ...\n  b\n  c\n- d\n+ X\n  e\n  f\n  ...\n");
    assert_eq!(line_diff("a\n", "a\n"), "  ...\n");
    assert!(line_diff("a\n", "a").contains("newline at the end"));
    assert_eq!(line_diff("", "x\n"), "+ x\n");
}

/// The flags a help text defines: the first words of its option lines (`-n, --limit <N>`).
fn defined_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| *l != "Options:")
        .filter(|l| l.starts_with("  ") && l.trim_start().starts_with('-'))
        .flat_map(|l| {
            l.split_whitespace()
                .map(|w| w.trim_end_matches(','))
                .take_while(|w| w.starts_with('-'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The flags named in a README command line: `-p`, `--json` ... out of `[--json]`,
/// `--older-than 30d | --fingerprint FP`, `--format a|b`; nothing after a bare `--` (the
/// command `run` starts) or a `#` comment.
fn named_flags(words: &[&str]) -> Vec<String> {
    let mut flags = Vec::new();
    for w in words {
        if *w == "--" || w.starts_with('#') {
            break;
        }
        for part in w.split('|') {
            let part = part.trim_matches(|c| matches!(c, '[' | ']' | '(' | ')'));
            let part = part.split('=').next().unwrap_or("").trim_end_matches("...");
            let part = part.trim_end_matches([',', ';', ':', '.']);
            let named = part.len() > 1
                && part.starts_with('-')
                && part[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '-');
            if named {
                flags.push(part.to_string());
            }
        }
    }
    flags
}

/// Every `rbscope ...` line in README.md's code blocks (the command table and the examples)
/// names a command that exists, with flags it has; and every command is in the README.
#[test]
fn readme_commands_exist_with_their_flags() {
    let helps = every_help();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut problems = Vec::new();
    let mut documented: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut in_block = false;
    // The command the previous line named, for continuation lines (`      [--since 2h] ...`).
    let mut last: Option<Vec<String>> = None;
    for (n, line) in readme.lines().enumerate() {
        if line.starts_with("```") {
            in_block = !in_block;
            last = None;
            continue;
        }
        if !in_block {
            continue;
        }
        let text = line.trim_start();
        let text = text.strip_prefix("$ ").unwrap_or(text);
        let text = text.strip_prefix("sudo ").unwrap_or(text);
        let (path, flags) = if let Some(rest) = text.strip_prefix("rbscope ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if words.first().is_some_and(|w| w.ends_with(':')) {
                // What rbscope prints (`rbscope ui: open ...`), not a command.
                last = None;
                continue;
            }
            let mut path: Vec<String> = Vec::new();
            let mut k = 0;
            while let Some(w) = words.get(k) {
                let subs = helps.get(&path).map(|h| subcommands(h)).unwrap_or_default();
                if !subs.iter().any(|s| s == w) {
                    break;
                }
                path.push(w.to_string());
                k += 1;
            }
            if path.is_empty() || !subcommands(&helps[&path]).is_empty() {
                problems.push(format!(
                    "README.md:{}: `{}` names no command",
                    n + 1,
                    text.trim_end()
                ));
                last = None;
                continue;
            }
            documented.insert(path.clone());
            last = Some(path.clone());
            (path, named_flags(&words[k..]))
        } else if let (Some(path), true) = (&last, line.starts_with(' ') && text.starts_with('[')) {
            let words: Vec<&str> = text.split_whitespace().collect();
            (path.clone(), named_flags(&words))
        } else {
            if !line.starts_with(' ') {
                last = None;
            }
            continue;
        };
        let defined = defined_flags(&helps[&path]);
        for flag in flags {
            if !defined.contains(&flag) {
                problems.push(format!(
                    "README.md:{}: `rbscope {}` has no flag {flag} (see its --help)",
                    n + 1,
                    path.join(" ")
                ));
            }
        }
    }
    for (path, help) in &helps {
        if !path.is_empty() && subcommands(help).is_empty() && !documented.contains(path) {
            problems.push(format!(
                "`rbscope {}` is not in README.md's command list",
                path.join(" ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn readme_checks_read_flags_as_written() {
    let words = [
        "-p",
        "PID",
        "[--json]",
        "--a|--b",
        "[-m",
        "SELECTOR]...",
        "--",
        "-x",
    ];
    assert_eq!(named_flags(&words), ["-p", "--json", "--a", "--b", "-m"]);
    assert_eq!(named_flags(&["-n", "3", "#", "--no"]), ["-n"]);
    assert_eq!(named_flags(&["with", "-p,", "a"]), ["-p"]);
    assert_eq!(
        named_flags(&["--format", "a|b", "--x=1", "-1"]),
        ["--format", "--x"]
    );
    let help = "Usage: x\n\nOptions:\n  -n, --limit <N>  Rows\n      --json\n          Print JSON\n  -h, --help  Print help\n";
    let flags: Vec<String> = defined_flags(help).into_iter().collect();
    assert_eq!(flags, ["--help", "--json", "--limit", "-h", "-n"]);
}
