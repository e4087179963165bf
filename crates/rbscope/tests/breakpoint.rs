//! `rbscope break -p PID FILE:LINE`: non-breaking breakpoints against a real process. The app
//! runs its loop only when told (`go N` calls `Counter#bump(k)` for k = 1..N, whose local
//! `total` is k * 10), so which hit stored which values is known; the CLI's readiness is its
//! "breakpoint set" line. Each snapshot is listed as (breakpoint), its top frame at the line with
//! that hit's locals, and restores; --max is kept inside the app; a killed client leaves no
//! hook; a file not loaded yet is waited for and hooked again when loaded again; bad input gets
//! one line. The app flushes the store's queue before it says a command is done, so what the
//! hooks stored is there when the test looks.
//!
//! `rbscope log` (a logpoint: the same hook, printing values instead of storing snapshots),
//! `--every` (a hot loop: `spin N`) and `--ps` (two processes of the same script) are tested
//! here too, on the same app: `cart N` calls `Cart#add(k)` for k = 1..N, whose local `item` is
//! `"item-k"`, on a cart whose `@owner` is "ann".

mod common;
use common::*;
use serde_json::Value as J;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const APP: &str = r#"require "rbscope"
Rbscope.start(rate_limit: 1000)
class Counter
  def bump(k)
    total = k * 10
    total + 1 # BREAK
  end
end

def go(n)
  n.times { |k| Counter.new.bump(k + 1) }
end

class Cart
  def initialize(owner)
    @owner = owner
    @api_token = "t0k3n"
  end

  def add(k)
    item = "item-#{k}"
    item.size # LOG
  end

  def spin(n)
    i = 0
    while i < n
      i += 1 # HOT
    end
  end
end
$stdout.sync = true
puts "ready"
while (line = $stdin.gets)
  cmd, arg = line.split
  case cmd
  when "go" then go(arg.to_i)
  when "load" then load(File.join(__dir__, "later.rb"))
  when "later" then Later.new.run(arg.to_i)
  when "fork" then Process.wait(fork { go(3) })
  when "cart"
    cart = Cart.new("ann")
    arg.to_i.times { |k| cart.add(k + 1) }
  when "spin" then Cart.new("ann").spin(arg.to_i)
  end
  # What the hooks queued is in the store before the test looks.
  Rbscope.flush
  puts "done #{cmd}"
end
"#;

/// Loaded only when the app is told to (`load`), each time again.
const LATER: &str = "class Later\n  def run(n)\n    seen = n + 1\n    seen\n  end\nend\n";

struct App {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    sb: Sandbox,
}

impl App {
    fn start() -> App {
        App::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> App {
        let sb = Sandbox::new();
        let script = sb.write("app.rb", APP);
        sb.write("later.rb", LATER);
        let mut child = sb
            .ruby(&script)
            .envs(env.iter().copied())
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

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends `cmd` and waits until the app has done it.
    fn run(&mut self, cmd: &str) {
        command(&mut self.stdin, &mut self.out, cmd);
    }

    /// Another process of the same script in the same sandbox, ready: (child, stdin, stdout).
    fn twin(&self) -> (Child, ChildStdin, BufReader<ChildStdout>) {
        let mut child = self
            .sb
            .ruby(&self.sb.dir.path().join("app.rb"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        (child, stdin, out)
    }

    /// `rbscope CMD -p PID ARGS...` started, its standard error's lines on a channel; returns
    /// once its first line came, with it.
    fn start_cli(
        &self,
        cmd: &str,
        args: &[&str],
    ) -> (Child, std::sync::mpsc::Receiver<String>, String) {
        let mut child = self
            .cli()
            .args([cmd, "-p", &self.pid()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = stderr_lines(&mut child);
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("no answer");
        (child, lines, first)
    }

    fn cli(&self) -> Command {
        self.sb.cli()
    }

    /// `rbscope break` with `args` after the PID, started; returns once it says the breakpoint
    /// is set (or waits), with what it said.
    fn set(&self, args: &[&str]) -> (Child, String) {
        let mut child = self
            .cli()
            .args(["break", "-p", &self.pid()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "no answer");
        assert!(
            line.contains("breakpoint set at") || line.contains("waiting for"),
            "{line}"
        );
        // The rest of its standard error is read when it ends.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        (child, line)
    }

    /// One `rbscope break` run to its end: (exit code, stdout, stderr).
    fn once(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self
            .cli()
            .args(["break", "-p", &self.pid()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    }

    fn list(&self) -> Vec<J> {
        self.sb.list()
    }

    /// `breakpoints_set` as `rbscope doctor -p` shows it.
    fn breakpoints_set(&self) -> u64 {
        breakpoints_set(self.child.id())
    }
}

/// Sends `cmd` to an app process and waits until it has done it.
fn command(stdin: &mut ChildStdin, out: &mut BufReader<ChildStdout>, cmd: &str) {
    writeln!(stdin, "{cmd}").unwrap();
    let word = cmd.split_whitespace().next().unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the app ended");
        if line.trim() == format!("done {word}") {
            return;
        }
    }
}

/// `child`'s standard error, line by line, on a channel (read by a thread until it ends).
fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends SIGTERM (as Ctrl-C) to `child`.
fn terminate(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to end (bounded) and returns its standard output's lines.
fn ids_of(child: Child) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn bump_frame(snap: &J) -> &J {
    let top = &snap["frames"][0];
    assert!(
        top["label"].as_str().unwrap().starts_with("Counter#bump"),
        "{top}"
    );
    top
}

#[test]
fn a_breakpoint_stores_the_thread_at_the_line_with_that_hits_values() {
    let mut app = App::start();
    let line = line_of(APP, "# BREAK");
    let at = format!("app.rb:{line}");
    let (child, said) = app.set(&[&at]);
    assert!(said.contains("hooked bump"), "{said}");
    app.run("go 1");
    let ids = ids_of(child);
    assert_eq!(ids.len(), 1, "{ids:?}");

    let list = app.list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["exception_class"], "(breakpoint)");
    let snap = app.sb.show(&ids[0]);
    assert_eq!(snap["trigger"]["kind"], "breakpoint");
    assert_eq!(snap["trigger"]["thread"], "main");
    assert_eq!(snap["trigger"]["reason"], format!("line {at} ran"));
    assert_eq!(snap["context"]["extra"]["reported_by"], "rbscope break");
    let top = bump_frame(&snap);
    assert_eq!(top["lineno"], line as i64, "{top}");
    let s = Snap(&snap);
    assert_eq!(s.local(top, "k")["value"], 1);
    assert_eq!(s.local(top, "total")["value"], 10);
    // Its callers too: the block in `go` and the loop at top level.
    assert!(s.frame("Object#go{block}")["label"].is_string());

    // --max 3: exactly three, the first three hits' values, then the hook is off in the app.
    let (child, _) = app.set(&[&at, "--max", "3"]);
    app.run("go 10");
    let ids = ids_of(child);
    assert_eq!(ids.len(), 3, "{ids:?}");
    let totals: Vec<i64> = ids
        .iter()
        .map(|id| {
            let snap = app.sb.show(id);
            let top = bump_frame(&snap);
            Snap(&snap).local(top, "total")["value"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(totals, [10, 20, 30]);
    app.run("go 5");
    assert_eq!(app.list().len(), 4, "nothing more stored after --max");
    assert_eq!(app.breakpoints_set(), 0);

    // Restored like any snapshot: the frame at the line, with that hit's values.
    let out = with_input(
        app.cli().args(["restore", &ids[1]]),
        r#"puts "K=#{k} TOTAL=#{total}""#,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains("K=2 TOTAL=20"), "{text}");

    // The same line by absolute path, twice at once: both breakpoints work, each its own hit.
    let abs = format!("{}:{line}", app.sb.dir.path().join("app.rb").display());
    let (a, _) = app.set(&[&abs]);
    let (b, _) = app.set(&[&at]);
    assert_eq!(app.breakpoints_set(), 2);
    app.run("go 1");
    let (a, b) = (ids_of(a), ids_of(b));
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_ne!(a[0], b[0]);
    assert_eq!(app.list().len(), 6);
}

#[test]
fn a_killed_client_leaves_no_hook_and_time_up_ends_it() {
    let mut app = App::start();
    let at = format!("app.rb:{}", line_of(APP, "# BREAK"));
    let (mut child, _) = app.set(&[&at, "--max", "5"]);
    assert_eq!(app.breakpoints_set(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    // The agent sees the connection close and removes the hook: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.breakpoints_set() != 0 {
        assert!(Instant::now() < deadline, "the breakpoint is still set");
        std::thread::sleep(Duration::from_millis(20));
    }
    app.run("go 3");
    assert!(
        app.list().is_empty(),
        "a hit after the client was killed stored a snapshot"
    );

    // SIGTERM (as Ctrl-C): the CLI closes the connection and exits 0; the hook is removed.
    let (child, _) = app.set(&[&at, "--max", "5"]);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.breakpoints_set() != 0 {
        assert!(Instant::now() < deadline, "the breakpoint is still set");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A forked child (a puma worker) does not inherit the hook; the parent keeps it.
    let (child, _) = app.set(&[&at]);
    app.run("fork");
    assert!(app.list().is_empty(), "the forked child stored a snapshot");
    app.run("go 1");
    assert_eq!(ids_of(child).len(), 1);
    let before = app.list().len();
    assert_eq!(before, 1);

    // --for: it ends by itself when the time is up, exit 0, nothing stored.
    let started = Instant::now();
    let (code, out, err) = app.once(&[&at, "--for", "300ms"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.is_empty() && err.contains("time is up"), "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(app.breakpoints_set(), 0);
    assert_eq!(app.list().len(), before);
}

#[test]
fn a_file_not_loaded_yet_is_waited_for_and_hooked_again_when_loaded_again() {
    let mut app = App::start();
    // `seen` is set on line 3; line 4 reads it.
    let line = 4;
    assert_eq!(LATER.lines().nth(line - 1), Some("    seen"));
    let (child, said) = app.set(&[&format!("later.rb:{line}"), "--max", "2"]);
    assert!(
        said.contains("later.rb:4 is in run, which is not defined yet: waiting for later.rb"),
        "{said}"
    );
    app.run("load");
    app.run("later 4");
    // Loaded again: the method is defined anew (a new iseq); the breakpoint follows it.
    app.run("load");
    app.run("later 7");
    let ids = ids_of(child);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let seen: Vec<i64> = ids
        .iter()
        .map(|id| {
            let snap = app.sb.show(id);
            let top = &snap["frames"][0];
            assert!(
                top["label"].as_str().unwrap().starts_with("Later#run"),
                "{top}"
            );
            Snap(&snap).local(top, "seen")["value"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(seen, [5, 8]);
}

#[test]
fn bad_input_gets_one_line() {
    let app = App::start();
    let one_line = |args: &[&str], want: &str| {
        let (code, out, err) = app.once(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    let end = line_of(APP, "# BREAK") + 1;
    one_line(
        &[&format!("app.rb:{end}")],
        &format!(
            "app.rb:{end} has no code; the nearest lines with code: app.rb:{} and app.rb:{}",
            end - 1,
            line_of(APP, "def go")
        ),
    );
    one_line(&["app.rb:1"], "app.rb:1 is top-level code");
    one_line(
        &["app.rb:4"],
        "app.rb:4 defines bump: hook a line inside it (5 to 6)",
    );
    one_line(&["nope.rb:3"], "nope.rb: no such file");
    one_line(&["app.rb"], "give the line as FILE:LINE");
    one_line(&["app.rb:x"], "must be a number");
    one_line(&["app.rb:6", "--max", "0"], "--max must be at least 1");
    assert!(app.list().is_empty());
    assert_eq!(app.breakpoints_set(), 0);

    // No such process; a Ruby process without the agent: the way to load it.
    let sb = Sandbox::new();
    let out = sb
        .cli()
        .args(["break", "-p", "999999999", "a.rb:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no process with PID 999999999"),
        "{}",
        stderr(&out)
    );
    let script = sb.write("plain.rb", "$stdout.puts \"ready\"\n$stdout.flush\nsleep\n");
    let p = Running::start(sb, &script, &[], "ready");
    let out = Command::new(cli())
        .args(["break", "-p", &p.pid(), "plain.rb:3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("has no rbscope agent listening") && err.contains("rbscope inject -p"),
        "{err}"
    );
}

#[test]
fn a_condition_picks_the_hits_and_says_why_when_it_cannot_tell() {
    let mut app = App::start();
    let at = format!("app.rb:{}", line_of(APP, "# BREAK"));

    // Only the hits where it holds: k is 4 then 5 (total 40, 50), not the first three.
    let (child, _) = app.set(&[&at, "--max", "2", "--if", "total >= 40 and k != nil"]);
    app.run("go 10");
    let totals: Vec<i64> = ids_of(child)
        .iter()
        .map(|id| {
            let snap = app.sb.show(id);
            let top = bump_frame(&snap);
            Snap(&snap).local(top, "total")["value"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(totals, [40, 50]);

    // self and a regex; an attribute read without allow_eval is unknown: no hit, one note.
    let mut cli = app
        .cli()
        .args(["break", "-p", &app.pid(), &at, "--for", "2s"])
        .args(["--if", "self.class == 1 or @missing =~ /x/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(cli.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("breakpoint set at"), "{line}");
    app.run("go 3");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let out = cli.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        rest.matches("the condition could not be decided").count(),
        1,
        "{rest}"
    );
    assert!(
        rest.contains("self.class is not read: attribute reads call the app's methods"),
        "{rest}"
    );
    assert_eq!(app.list().len(), 2);

    // A condition that does not parse: one line, before anything is set.
    let (code, out, err) = app.once(&[&at, "--if", "total >"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty() && err.lines().count() == 1, "{err}");
    assert!(err.contains("--if: condition: at column"), "{err}");
}

/// On Ruby 3.1 a line hook makes YJIT drop its code for good: refused without --force, as
/// `rbscope trace` refuses. (Only where this Ruby is 3.1 with YJIT built in.)
#[test]
fn yjit_on_ruby_3_1_is_refused_without_force() {
    let probe = Command::new("ruby")
        .args([
            "--yjit",
            "-e",
            "print RUBY_VERSION[0, 4], RubyVM::YJIT.enabled?",
        ])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&probe.stdout) != "3.1.true" {
        return;
    }
    let mut app = App::start_with(&[("RUBY_YJIT_ENABLE", "1")]);
    let at = format!("app.rb:{}", line_of(APP, "# BREAK"));
    let (code, _, err) = app.once(&[&at]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("YJIT is on in this Ruby 3.1 process") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(app.breakpoints_set(), 0);
    let (child, _) = app.set(&[&at, "--force"]);
    app.run("go 1");
    assert_eq!(ids_of(child).len(), 1);
}

/// Reads `lines` until one contains `want` (bounded), returning what came before too.
fn wait_for(lines: &std::sync::mpsc::Receiver<String>, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {want:?} in {seen:?}"));
        let found = line.contains(want);
        seen.push(line);
        if found {
            return seen;
        }
    }
}

#[test]
fn a_logpoint_prints_each_hits_values_in_text_and_jsonl() {
    let mut app = App::start();
    let line = line_of(APP, "# LOG");
    let at = format!("app.rb:{line}");
    // Text on stdout: one line per hit, the local changing in order, an @ivar and self
    // rendered by the agent (not by Cart#inspect), a secret name redacted as snapshots do.
    let (child, lines, first) = app.start_cli(
        "log",
        &[
            &at,
            "item",
            "k",
            "@owner",
            "self",
            "@api_token",
            "--max",
            "3",
        ],
    );
    assert!(
        first.contains("logpoint set at") && first.contains("hooked add"),
        "{first}"
    );
    app.run("cart 5");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let want: String = (1..=3)
        .map(|k| {
            format!(
                "{at}  item=\"item-{k}\"  k={k}  @owner=\"ann\"  \
                 self=#<Cart @owner=\"ann\", @api_token=[redacted]>  @api_token=[redacted: name]\n"
            )
        })
        .collect();
    assert_eq!(text, want);
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("logpoint removed: 3 hits (--max 3)")),
        "{rest:?}"
    );
    assert_eq!(app.breakpoints_set(), 0);
    assert!(app.list().is_empty(), "a logpoint stores no snapshot");

    // JSON lines to a file, with --if: only k > 2, each with its thread and time.
    let file = app.sb.dir.path().join("log.jsonl");
    let file_s = file.to_str().unwrap();
    let (child, _lines, first) = app.start_cli(
        "log",
        &[
            &at,
            "k",
            "item",
            "--if",
            "k > 2",
            "--format",
            "jsonl",
            "-o",
            file_s,
            "--max",
            "2",
            "--show-threads",
        ],
    );
    assert!(first.contains("logpoint set at"), "{first}");
    app.run("cart 5");
    assert!(child.wait_with_output().unwrap().status.success());
    let hits: Vec<J> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 2, "{hits:?}");
    for (hit, k) in hits.iter().zip([3, 4]) {
        assert_eq!(hit["event"], "log");
        assert_eq!(hit["at"], at.as_str());
        assert_eq!(hit["values"]["k"], k.to_string());
        assert_eq!(hit["values"]["item"], format!("\"item-{k}\""));
        assert!(hit["thread"].as_i64().unwrap() > 0, "{hit}");
        assert!(hit["thread_name"].is_string(), "{hit}");
    }
    assert!(hits[0]["t_ns"].as_u64().unwrap() <= hits[1]["t_ns"].as_u64().unwrap());

    // A method chain without allow_eval: not read, said once; the rest is printed.
    let (child, lines, _) = app.start_cli("log", &[&at, "k", "item.size", "--max", "2"]);
    app.run("cart 2");
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        text,
        format!("{at}  k=1  item.size=(not read)\n{at}  k=2  item.size=(not read)\n")
    );
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(
        rest.iter()
            .filter(|l| l.contains("item.size is not read: attribute reads call the app's methods"))
            .count(),
        1,
        "{rest:?}"
    );
}

#[test]
fn every_lets_one_snapshot_through_per_period_in_a_hot_loop() {
    let mut app = App::start();
    let at = format!("app.rb:{}", line_of(APP, "# HOT"));
    let (mut child, lines, first) =
        app.start_cli("break", &[&at, "--every", "200ms", "--max", "1000"]);
    assert!(first.contains("breakpoint set at"), "{first}");
    let started = Instant::now();
    app.run("spin 300000");
    let took = started.elapsed();
    terminate(&child);
    let mut stdout = child.stdout.take().unwrap();
    let mut ids = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut ids).unwrap();
    assert!(child.wait().unwrap().success());
    let ids: Vec<&str> = ids.lines().collect();
    // At most one per 200 ms over the loop's run (plus the first), and the first at least.
    let most = (took.as_millis() / 200) as usize + 1;
    assert!(
        !ids.is_empty() && ids.len() <= most,
        "{} snapshots in {took:?}",
        ids.len()
    );
    assert_eq!(app.list().len(), ids.len());
    let ended = wait_for(&lines, "breakpoint removed");
    let last = ended.last().unwrap();
    let skipped: u64 = last
        .split("; ")
        .find_map(|p| p.strip_suffix(" hits skipped by --every (200 ms)"))
        .unwrap_or_else(|| panic!("{last}"))
        .parse()
        .unwrap();
    assert_eq!(skipped + ids.len() as u64, 300_000, "{last}");
    assert!(last.contains("stopped by the client"), "{last}");
    assert_eq!(app.breakpoints_set(), 0);
}

#[test]
fn ps_sets_the_point_in_every_matching_process() {
    let mut app = App::start();
    let (mut twin, mut twin_in, mut twin_out) = app.twin();
    let at = format!("app.rb:{}", line_of(APP, "# LOG"));
    // The sandbox's directory name is in both command lines, and in no other process's.
    let pattern = app
        .sb
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut child = app
        .cli()
        .args(["log", "--ps", &pattern, &at, "k", "--for", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let pids = [app.pid(), twin.id().to_string()];
    let mut set = std::collections::BTreeSet::new();
    while set.len() < 2 {
        let said = wait_for(&lines, "logpoint set at");
        let last = said.last().unwrap();
        let pid = pids
            .iter()
            .find(|p| last.contains(&format!("[{p}] ")))
            .unwrap_or_else(|| panic!("{last}"));
        set.insert(pid.clone());
    }
    app.run("cart 2");
    command(&mut twin_in, &mut twin_out, "cart 1");
    // Both processes' hits come through, each line prefixed with its PID.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut got = Vec::new();
    while got.len() < 3 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "{got:?}");
        got.push(line.trim_end().to_string());
    }
    terminate(&child);
    assert!(child.wait().unwrap().success());
    got.sort();
    let mut want = vec![
        format!("[{}] {at}  k=1", pids[0]),
        format!("[{}] {at}  k=2", pids[0]),
        format!("[{}] {at}  k=1", pids[1]),
    ];
    want.sort();
    assert_eq!(got, want);
    let _ = twin.kill();
    let _ = twin.wait();

    // --ps and -p together: refused.
    let out = app
        .cli()
        .args(["break", "--ps", &pattern, "-p", &app.pid(), &at])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn log_and_every_bad_input_gets_one_line() {
    let app = App::start();
    let at = format!("app.rb:{}", line_of(APP, "# LOG"));
    let one_line = |cmd: &str, args: &[&str], want: &str| {
        let out = app
            .cli()
            .args([cmd, "-p", &app.pid()])
            .args(args)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    one_line("log", &[&at], "no values to print");
    one_line(
        "log",
        &[&at, "k", "Order.find"],
        "value \"Order.find\" does not parse",
    );
    one_line(
        "log",
        &[&at, "k", "item.save!"],
        "value \"item.save!\" does not parse",
    );
    one_line(
        "log",
        &[&at, "k", "--if", "k >"],
        "--if: condition: at column",
    );
    one_line("log", &["nope.rb:3", "k"], "nope.rb: no such file");
    one_line("log", &["app.rb", "k"], "give the line as FILE:LINE");
    one_line("log", &["app.rb:1", "k"], "app.rb:1 is top-level code");
    one_line(
        "log",
        &[&at, "k", "--every", "0s"],
        "--every must be more than 0",
    );
    one_line(
        "break",
        &[&at, "--every", "0ms"],
        "--every must be more than 0",
    );
    one_line("log", &[&at, "k", "--max", "0"], "--max must be at least 1");
    assert_eq!(app.breakpoints_set(), 0);
    let out = app
        .sb
        .cli()
        .args(["log", "-p", "999999999", "a.rb:1", "k"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no process with PID 999999999"),
        "{}",
        stderr(&out)
    );
    let sb = Sandbox::new();
    let script = sb.write("plain.rb", "$stdout.puts \"ready\"\n$stdout.flush\nsleep\n");
    let p = Running::start(sb, &script, &[], "ready");
    let out = Command::new(cli())
        .args(["log", "-p", &p.pid(), "plain.rb:3", "k"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("has no rbscope agent listening") && err.contains("rbscope inject -p"),
        "{err}"
    );
}

/// A logpoint at every hit of a hot loop: the app never waits for the client; what its mailbox
/// could not hold is dropped, counted and reported, and every hit is either printed or counted.
#[test]
fn a_logpoint_in_a_hot_loop_drops_what_the_client_cannot_take_and_says_how_many() {
    let mut app = App::start();
    let at = format!("app.rb:{}", line_of(APP, "# HOT"));
    let file = app.sb.dir.path().join("hot.txt");
    let (child, lines, first) = app.start_cli("log", &[&at, "i", "-o", file.to_str().unwrap()]);
    assert!(first.contains("logpoint set at"), "{first}");
    app.run("spin 300000");
    terminate(&child);
    assert!(child.wait_with_output().unwrap().status.success());
    let ended = wait_for(&lines, "logpoint removed");
    let last = ended.last().unwrap();
    let dropped: usize = last
        .split("; ")
        .find_map(|p| p.strip_suffix(" hits dropped (this client did not keep up)"))
        .unwrap_or_else(|| panic!("{last}"))
        .parse()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let printed: Vec<&str> = text.lines().collect();
    assert_eq!(printed.len() + dropped, 300_000, "{last}");
    // What was printed is in the loop's order: i grows.
    let values: Vec<u64> = printed
        .iter()
        .map(|l| l.rsplit_once("  i=").unwrap().1.parse().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(app.breakpoints_set(), 0);
}
