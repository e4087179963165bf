//! Frame labels are the same however they are read and whichever Ruby runs the code (snapshot
//! fingerprints are built from them). The frames of tests/programs/labels_oracle.rb (every kind
//! of frame rbscope names) are read on the native Ruby under test:
//! (a) in process (`Rbscope.backtrace`, `exception.better_backtrace`, the snapshots of the fast
//!     and the debug-inspector capture paths) and from outside (`rbscope stacks -p PID` through
//!     the agent and `--remote`, while the process is parked in those frames): same labels;
//! (b) against Ruby's own labels on 3.4 and 4.0 (the WASI Rubies, run here), which name the
//!     class: same frames at the same lines, same class path and `#`/`.`;
//! (c) against tests/fixtures/labels/rbscope.txt, the labels the Ruby 3.1 agent gives
//!     (`LABELS_BLESS=1` with Ruby 3.1 rewrites it): the same on every Ruby.

mod common;
use common::*;
use serde_json::Value as J;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Prepended to Object, so the oracle's `here` calls land here first: reads the stack in every
/// way the process can, and when parking, says so and waits for a line on stdin.
const DRIVER: &str = r#"require "rbscope"
require "json"
Rbscope.start(log: false)
ORACLE = ENV.fetch("LABELS_ORACLE")
PARK = ENV["LABELS_PARK"] == "1"
module LabelsHook
  def here(name)
    ours = ->(frames) { frames&.select { |f| f.path == ORACLE }&.map { |f| [f.lineno, f.label, f.cfunc?, f.internal?] } }
    live = ours.(Rbscope.backtrace)
    e = begin
      raise "labels"
    rescue => ex
      ex
    end
    raised = ours.(e.better_backtrace)
    Rbscope.report(e, case_name: name)
    if PARK
      puts "parked #{name}"
      $stdout.flush
      $stdin.gets
    end
    puts "case #{JSON.generate(name: name, live: live, raised: raised)}"
    $stdout.flush
  end
end
Object.prepend(LabelsHook)
at_exit { Rbscope.flush; puts "finished"; $stdout.flush }
"#;

/// One frame: line, label, C function.
type F = (i64, String, bool);

fn oracle() -> PathBuf {
    repo_root().join("crates/rbscope/tests/programs/labels_oracle.rb")
}

fn fixtures() -> PathBuf {
    repo_root().join("crates/rbscope/tests/fixtures/labels")
}

/// An anonymous class's address differs each run.
fn stable(label: &str) -> String {
    let mut out = String::new();
    let mut rest = label;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i]);
        out.push_str("0xADDR");
        rest = rest[i + 2..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

fn frames_of(v: &J) -> Option<Vec<F>> {
    v.as_array().map(|a| {
        a.iter()
            .map(|f| {
                (
                    f[0].as_i64().unwrap(),
                    stable(f[1].as_str().unwrap()),
                    f[2].as_bool().unwrap(),
                )
            })
            .collect()
    })
}

/// What one run of the oracle under the agent gave, per case (in the oracle's order).
#[derive(Default)]
struct Run {
    cases: Vec<String>,
    live: BTreeMap<String, Vec<F>>,
    raised: BTreeMap<String, Option<Vec<F>>>,
    agent: BTreeMap<String, Vec<F>>,
    remote: BTreeMap<String, Vec<F>>,
    snapshots: BTreeMap<String, Vec<(i64, String)>>,
    /// Per live frame: whether it runs Ruby's own code (`Rbscope::Frame#internal?`): a C
    /// function, or a core method written in Ruby (YJIT's `Array#each` on 3.4+).
    internal: BTreeMap<String, Vec<bool>>,
}

/// The main thread's frames in the oracle file, from `rbscope stacks -p PID ARGS --json`.
fn stacks(pid: u32, extra: &[&str]) -> Vec<F> {
    let out = Command::new(cli())
        .args(["stacks", "-p", &pid.to_string(), "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "stacks {extra:?}: {}", stderr(&out));
    let report: J = serde_json::from_slice(&out.stdout).unwrap();
    let main = main_thread(&report).unwrap_or_else(|| panic!("no main thread: {report:#}"));
    if !extra.contains(&"--remote") {
        let source = report["source"].as_str().unwrap_or_default();
        assert!(source.contains("through its agent"), "{source}");
    }
    let oracle = oracle().display().to_string();
    main["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("no frames: {main:#}"))
        .iter()
        .filter(|f| f["path"].as_str() == Some(oracle.as_str()))
        .map(|f| {
            (
                f["line"].as_i64().unwrap_or(0),
                stable(f["label"].as_str().unwrap()),
                f["cfunc"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Runs the oracle with the agent, capture `mode`; when `park`, reads every case's stack from
/// outside while the process waits in it.
fn run(mode: &str, park: bool) -> Run {
    let sb = Sandbox::new();
    let driver = sb.write("labels_driver.rb", DRIVER);
    let store = sb.dir.path().join(format!("{mode}.db"));
    let mut child = Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .arg("-r")
        .arg(&driver)
        .arg(oracle())
        .current_dir(sb.dir.path())
        .env("RBSCOPE_STORE", &store)
        .env("RBSCOPE_CAPTURE", mode)
        .env("RBSCOPE_RATE_LIMIT", "1000")
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .env("LABELS_ORACLE", oracle())
        .env("LABELS_PARK", if park { "1" } else { "0" })
        .env_remove("RUBYOPT")
        .env_remove("RBSCOPE_DISABLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut r = Run::default();
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let o = child.wait_with_output().unwrap();
            panic!("{mode}: ended early after {seen:#?}: {}", stderr(&o));
        }
        let line = line.trim_end().to_string();
        seen.push(line.clone());
        if let Some(name) = line.strip_prefix("parked ") {
            // Explicit readiness: the process said it waits on stdin inside the case's frames.
            r.agent.insert(name.to_string(), stacks(pid, &[]));
            r.remote
                .insert(name.to_string(), stacks(pid, &["--remote"]));
            writeln!(stdin, "go").unwrap();
            stdin.flush().unwrap();
        } else if let Some(json) = line.strip_prefix("case ") {
            let v: J = serde_json::from_str(json).unwrap();
            let name = v["name"].as_str().unwrap().to_string();
            r.live.insert(name.clone(), frames_of(&v["live"]).unwrap());
            let internal = v["live"].as_array().unwrap().iter();
            r.internal.insert(
                name.clone(),
                internal.map(|f| f[3].as_bool().unwrap()).collect(),
            );
            r.raised.insert(name.clone(), frames_of(&v["raised"]));
            r.cases.push(name);
        } else if line == "finished" {
            break;
        }
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{mode}: {}", stderr(&o));

    let cli = |args: &[&str]| sb.cli_json_on(&store, args);
    let rows = cli(&["list", "--json", "-n", "1000"]);
    for row in rows.as_array().unwrap() {
        let snap = cli(&["show", row["id"].as_str().unwrap(), "--json"]);
        let name = snap["context"]["extra"]["case_name"]
            .as_str()
            .unwrap_or_else(|| panic!("no case name: {:#}", snap["context"]))
            .to_string();
        let oracle = oracle().display().to_string();
        let frames = snap["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["path"].as_str() == Some(oracle.as_str()))
            .map(|f| {
                (
                    f["lineno"].as_i64().unwrap(),
                    stable(f["label"].as_str().unwrap()),
                )
            })
            .collect();
        r.snapshots.insert(name, frames);
    }
    assert_eq!(
        r.snapshots.len(),
        r.cases.len(),
        "{mode}: one snapshot per case"
    );
    r
}

fn show(frames: &[F]) -> String {
    frames
        .iter()
        .map(|(line, label, c)| format!("  {line} {label}{}\n", if *c { " (C)" } else { "" }))
        .collect()
}

/// The frames a snapshot keeps: those not running Ruby's own code.
fn app_frames(frames: &[F], internal: &[bool]) -> Vec<(i64, String)> {
    frames
        .iter()
        .zip(internal)
        .filter(|(_, internal)| !**internal)
        .map(|(f, _)| (f.0, f.1.clone()))
        .collect()
}

/// Ruby's own labels per case (`line label` per frame, innermost first), from the oracle's
/// output.
fn ruby_cases(text: &str) -> Vec<(String, Vec<(i64, String)>)> {
    let mut out: Vec<(String, Vec<(i64, String)>)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            out.push((name.to_string(), Vec::new()));
        } else if let Some(rest) = line.strip_prefix("labels_oracle.rb:") {
            let (lineno, rest) = rest.split_once(' ').unwrap();
            // `label base_label`: the label is everything but the last word.
            let (label, _base) = rest.rsplit_once(' ').unwrap();
            out.last_mut()
                .unwrap()
                .1
                .push((lineno.parse().unwrap(), label.to_string()));
        }
    }
    out
}

/// The label ours must start with, from Ruby 3.4+'s label, when Ruby's names the class:
/// `block (2 levels) in Foo#m` -> `Foo#m{block}{block}`. None for code Ruby names without a
/// class (`<main>`, `block in <class:Foo>`, a refinement's or an anonymous class's method).
fn expected_prefix(ruby_label: &str) -> Option<String> {
    let (depth, rest) = if let Some(r) = ruby_label.strip_prefix("block in ") {
        (1, r)
    } else if let Some(r) = ruby_label.strip_prefix("block (") {
        let (n, r) = r.split_once(" levels) in ").unwrap();
        (n.parse().unwrap(), r)
    } else {
        (0, ruby_label)
    };
    if rest.starts_with('<') || rest.starts_with("singleton class") {
        return None;
    }
    rest.rfind(['#', '.'])?;
    Some(format!("{rest}{}", "{block}".repeat(depth)))
}

fn matches_ruby(ours: &str, prefix: &str) -> bool {
    let Some(tail) = ours.strip_prefix(prefix) else {
        return false;
    };
    let tail = tail
        .strip_prefix("{rescue}")
        .or_else(|| tail.strip_prefix("{ensure}"))
        .unwrap_or(tail);
    tail.starts_with('(')
}

fn wasm_ruby_labels(version: &str) -> String {
    let out = Command::new(repo_root().join("scripts/wasm-ruby"))
        .arg(version)
        .arg(oracle())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/wasm-ruby (is Node installed?): {e}"));
    assert!(
        out.status.success(),
        "Ruby {version} for WASI did not run the oracle: {}\n\
         install the WASI Rubies with scripts/install-wasm-rubies",
        stderr(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let fixture = std::fs::read_to_string(fixtures().join(format!("ruby-{version}.txt"))).unwrap();
    let strip = |t: &str| -> String {
        t.lines()
            .filter(|l| !l.starts_with("# RUBY_VERSION"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&text),
        strip(&fixture),
        "Ruby {version}'s labels changed: regenerate tests/fixtures/labels/ruby-{version}.txt"
    );
    text
}

#[test]
fn labels_agree_however_read_and_on_every_ruby() {
    let fast = run("auto", true);
    let inspector = run("inspector", false);
    let mut problems = Vec::new();

    // (a) In process and from outside, both capture paths: the same labels.
    assert!(!fast.cases.is_empty());
    assert_eq!(fast.cases, inspector.cases);
    for name in &fast.cases {
        let live = &fast.live[name];
        let mut check = |what: &str, got: &[F]| {
            if got != live.as_slice() {
                problems.push(format!(
                    "{name}: {what} differs from Rbscope.backtrace\n ours:\n{} {what}:\n{}",
                    show(live),
                    show(got)
                ));
            }
        };
        check(
            "better_backtrace",
            fast.raised[name].as_deref().unwrap_or(&[]),
        );
        check("stacks through the agent", &fast.agent[name]);
        check("stacks --remote", &fast.remote[name]);
        check(
            "Rbscope.backtrace with capture: inspector",
            &inspector.live[name],
        );
        let ruby_only = app_frames(live, &fast.internal[name]);
        for (what, snap) in [
            ("fast capture snapshot", &fast.snapshots[name]),
            ("inspector capture snapshot", &inspector.snapshots[name]),
        ] {
            if *snap != ruby_only {
                problems.push(format!(
                    "{name}: {what} differs from Rbscope.backtrace's Ruby frames\n ours: {ruby_only:?}\n {what}: {snap:?}"
                ));
            }
        }
    }

    // (b) Ruby 3.4 and 4.0's own labels: the same frames, lines, classes and `#`/`.`.
    for version in ["3.4", "4.0"] {
        let theirs = ruby_cases(&wasm_ruby_labels(version));
        let names: Vec<&String> = theirs.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            fast.cases.iter().collect::<Vec<_>>(),
            "Ruby {version}"
        );
        for (name, frames) in &theirs {
            let ours = &fast.live[name];
            let same_shape = ours.len() == frames.len()
                && ours.iter().zip(frames).all(|(o, t)| {
                    o.0 == t.0 && expected_prefix(&t.1).is_none_or(|p| matches_ruby(&o.1, &p))
                });
            if !same_shape {
                problems.push(format!(
                    "{name}: not the frames Ruby {version} shows\n ours:\n{} Ruby {version}:\n{}",
                    show(ours),
                    frames
                        .iter()
                        .map(|(l, s)| format!("  {l} {s}\n"))
                        .collect::<String>()
                ));
            }
        }
    }

    // (c) The same labels on every Ruby: those the 3.1 agent gives.
    let text: String = fast
        .cases
        .iter()
        .map(|name| {
            // Marked (C): Ruby's own code, which is C on 3.1 and may be Ruby on later Rubies.
            let marked: Vec<F> = fast.live[name]
                .iter()
                .zip(&fast.internal[name])
                .map(|(f, internal)| (f.0, f.1.clone(), *internal))
                .collect();
            format!("== {name}\n{}", show(&marked))
        })
        .collect();
    let expected_file = fixtures().join("rbscope.txt");
    if std::env::var_os("LABELS_BLESS").is_some() {
        assert_eq!(
            ruby_release(),
            "3.1",
            "the expected labels come from Ruby 3.1"
        );
        std::fs::write(&expected_file, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (LABELS_BLESS=1 with Ruby 3.1 writes it)",
            expected_file.display()
        )
    });
    if text != expected {
        problems.push(format!(
            "Ruby {} labels differ from Ruby 3.1's ({}):\n{}",
            ruby_version(),
            expected_file.display(),
            diff(&expected, &text)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied(), b.get(i).copied());
        if x != y {
            out.push_str(&format!(
                "  line {}: 3.1 {:?}\n          now {:?}\n",
                i + 1,
                x.unwrap_or(""),
                y.unwrap_or("")
            ));
        }
    }
    out
}

#[test]
fn expected_prefix_reads_ruby_labels() {
    assert_eq!(expected_prefix("Foo#bar").as_deref(), Some("Foo#bar"));
    assert_eq!(
        expected_prefix("block (2 levels) in Foo#m").as_deref(),
        Some("Foo#m{block}{block}")
    );
    assert_eq!(
        expected_prefix("Outer::Inner#go").as_deref(),
        Some("Outer::Inner#go")
    );
    assert_eq!(expected_prefix("Helpers.mf").as_deref(), Some("Helpers.mf"));
    assert_eq!(expected_prefix("block in <class:Foo>"), None);
    assert_eq!(expected_prefix("shout"), None);
    assert!(matches_ruby("Foo#rescuer{rescue}()", "Foo#rescuer"));
    assert!(!matches_ruby("#<Class:Foo>#baz()", "Foo.baz"));
    assert!(!matches_ruby("Foo#barx()", "Foo#bar"));
}
