//! `rbscope trace`, `rbscope eval` and `rbscope ps` against real Ruby processes, through the
//! real CLI: nesting per thread and timings of known sleeps, selectors (modules, class
//! methods, C methods, attr readers) and captured values, --slow, --gc, the output formats,
//! a killed CLI then a new attach, a stalled client, eval refused and allowed, a sleeping app
//! thread left asleep, another user refused, and attach/detach cycles under HTTP load.

mod common;
use common::*;
use serde_json::Value as J;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// tests/programs/traced.rb, driven line by line.
struct App;

impl App {
    fn start(env: &[(&str, &str)]) -> Program {
        Program::start("traced.rb", env)
    }
}

/// A running `rbscope trace`, attached (its "*** attached" line was read).
struct Tracer {
    child: Child,
    err: BufReader<std::process::ChildStderr>,
    output: PathBuf,
    attached: String,
}

impl Tracer {
    fn attach(app: &Program, args: &[&str]) -> Tracer {
        let output = app
            .sb
            .dir
            .path()
            .join(format!("trace-{}.out", rand_suffix()));
        let mut child = Command::new(cli())
            .args(["trace", "-p", &app.pid.to_string()])
            .args(args)
            .arg("-o")
            .arg(&output)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut attached = String::new();
        err.read_line(&mut attached).unwrap();
        assert!(
            attached.starts_with("*** attached"),
            "did not attach: {attached}"
        );
        Tracer {
            child,
            err,
            output,
            attached,
        }
    }

    /// Ctrl-C, then the trace and the rest of stderr.
    fn stop(mut self) -> (String, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        self.err.read_to_string(&mut rest).unwrap();
        assert!(status.success(), "trace failed: {rest}");
        let text = std::fs::read_to_string(&self.output).unwrap();
        (text, rest)
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn jsonl(text: &str) -> Vec<J> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Durations replaced by <T>, for exact comparison of text traces.
fn untimed(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(" <") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('>') {
            Some(j) if !after[..j].contains(' ') => {
                out.push_str(" <T>");
                rest = &after[j + 1..];
            }
            _ => {
                out.push_str(" <");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// TracePoints enabled in the app, asked with eval (the app allows it).
fn enabled_tracepoints(app: &Program) -> i64 {
    let out = app.eval("ObjectSpace.each_object(TracePoint).count(&:enabled?)");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn two_threads_nest_separately_with_the_times_of_their_sleeps() {
    let mut app = App::start(&[]);
    let t = Tracer::attach(
        &app,
        &[
            "-m",
            "Job#outer",
            "-m",
            "Job#inner",
            "-m",
            "Kernel#sleep",
            "--format",
            "jsonl",
        ],
    );
    assert!(
        t.attached.contains("Job#outer, Job#inner, Kernel#sleep"),
        "{}",
        t.attached
    );
    app.run("jobs");
    let (text, err) = t.stop();
    assert!(err.contains("18 calls traced"), "{err}");
    let events = jsonl(&text);
    let mut tids = std::collections::BTreeSet::new();
    for (worker, secs) in [("worker-a", 0.05), ("worker-b", 0.07)] {
        let mine: Vec<&J> = events
            .iter()
            .filter(|e| e["thread_name"] == worker && e["event"] == "return")
            .collect();
        assert_eq!(mine.len(), 9, "{worker}: {text}");
        for e in &mine {
            tids.insert(e["thread"].as_i64().unwrap());
        }
        let want = (secs * 1e9) as i64;
        for (method, depth) in [("Kernel#sleep", 2), ("Job#inner", 1), ("Job#outer", 0)] {
            let calls: Vec<&&J> = mine.iter().filter(|e| e["method"] == method).collect();
            assert_eq!(calls.len(), 3, "{worker} {method}");
            for c in calls {
                assert_eq!(c["depth"], depth, "{c}");
                let d = c["duration_ns"].as_i64().unwrap();
                // A sleep never returns early; 40 ms covers scheduling on a loaded machine.
                // (The other thread's sleeps do not count here: nesting is per thread.)
                assert!(
                    d >= want && d < want + 40_000_000,
                    "{worker} {method}: {d} ns"
                );
            }
        }
    }
    assert_eq!(tids.len(), 2, "each worker has its own thread id: {tids:?}");
    assert!(!tids.contains(&0));
}

#[test]
fn selectors_modules_class_methods_c_methods_attr_readers_and_captured_values() {
    let mut app = App::start(&[("RBSCOPE_ALLOW_EVAL", "1")]);
    let t = Tracer::attach(
        &app,
        &[
            "-m",
            "Greeter.build",
            "-m",
            "Greeter#greet(self, times, punct, @name, self.name.size)",
            "-m",
            "Helpers#fmt(x)",
            "-m",
            "String#upcase",
            "-m",
            "Process.pid",
            "-m",
            "Greeter#name",
        ],
    );
    app.run("greet");
    let (text, err) = t.stop();
    assert!(err.contains("detached from process"), "{err}");
    assert_eq!(
        untimed(&text),
        "Greeter.build <T>\n\n\
         Greeter#greet(self=#<Greeter @name=\"bob\">, times=2, punct=\"!\", @name=\"bob\", self.name.size=3)\n\
         \x20 String#upcase <T>\n\
         \x20 Helpers#fmt(x=\"BOB\") <T>\n\
         \x20 String#upcase <T>\n\
         \x20 Helpers#fmt(x=\"BOB\") <T>\n\
         Greeter#greet <T>\n\n\
         Greeter#name <T>\n\n\
         Process.pid <T>\n\n"
    );
    // Detached: no hook left, and the C-method wrappers are gone from String and Process.
    assert_eq!(enabled_tracepoints(&app), 0);
    let out = app.eval(
        "[String, Process.singleton_class, Greeter].flat_map { |c| c.ancestors.take_while { |m| m != c } \
         .reject(&:name).flat_map { |m| m.instance_methods(false) + m.private_instance_methods(false) } }",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    // Mistakes are one line each, before anything is hooked.
    for (selector, says) in [
        ("Nope#x", "no constant Nope"),
        (
            "Greeter#shout(missing)",
            "has no argument named missing (its parameters: text)",
        ),
        (
            "Greeter#nothing",
            "there is no instance method Greeter#nothing",
        ),
        ("Kernel#binding", "reads its caller's frame"),
        ("Greeter#greet(system('id'))", "code is never evaluated"),
        ("String#upcase(str)", "C method"),
    ] {
        let out = Command::new(cli())
            .args(["trace", "-p", &app.pid.to_string(), "-m", selector])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{selector}");
        let e = stderr(&out);
        assert!(e.contains(says), "{selector}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    assert_eq!(enabled_tracepoints(&app), 0);
}

#[test]
fn slow_calls_gc_firehose_and_the_output_formats() {
    let mut app = App::start(&[]);
    let t = Tracer::attach(&app, &["--slow", "100"]);
    app.run("greet");
    app.run("slow");
    let (text, _) = t.stop();
    // Only calls of 100 ms or more, innermost first, indented by depth; fast calls not shown.
    let lines: Vec<String> = untimed(&text).lines().map(String::from).collect();
    assert!(
        lines.ends_with(&["  Slow#nap <T>".to_string(), "Slow#run <T>".to_string()])
            || lines.iter().any(|l| l.trim() == "Slow#nap <T>"),
        "{text}"
    );
    assert!(
        !text.contains("Greeter") && !text.contains("quick"),
        "{text}"
    );

    let t = Tracer::attach(&app, &["--gc"]);
    app.run("gc");
    let (text, _) = t.stop();
    assert!(
        text.starts_with("GC #") && text.contains(" mark <"),
        "{text}"
    );

    let t = Tracer::attach(&app, &["-f", "--format", "chrome", "--show-threads"]);
    app.run("greet");
    let (text, err) = t.stop();
    let chrome: J = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = chrome
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "B")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    // Ruby methods only (C methods such as String#upcase need -m). From Ruby 3.3 on,
    // Integer#times is Ruby code (<internal:numeric>), so the firehose sees it as such.
    let mut expected = vec!["Greeter.build", "Greeter#initialize", "Greeter#greet"];
    if ruby_at_least(3, 3) {
        expected.extend(["Integer#times", "Integer#times"]);
    }
    expected.extend([
        "Greeter#shout",
        "Helpers#fmt",
        "Greeter#shout",
        "Helpers#fmt",
    ]);
    assert_eq!(names, expected, "{err}");
    let ends = chrome
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "E")
        .count();
    assert_eq!(ends, names.len());
}

#[test]
fn a_killed_client_leaves_no_hooks_and_the_next_attach_works() {
    let mut app = App::start(&[("RBSCOPE_ALLOW_EVAL", "1")]);
    let mut t = Tracer::attach(&app, &["-m", "Hot#hot", "-m", "Integer#times"]);
    app.run("hot 1000");
    // One TracePoint per traced method (its calls and returns).
    assert_eq!(enabled_tracepoints(&app), 2);
    t.child.kill().unwrap();
    t.child.wait().unwrap();
    // The agent notices the closed socket and removes the hooks by itself.
    let deadline = Instant::now() + Duration::from_secs(2);
    while enabled_tracepoints(&app) != 0 {
        assert!(
            Instant::now() < deadline,
            "hooks still installed 2 s after the client died"
        );
    }
    let t = Tracer::attach(&app, &["-m", "Hot#hot"]);
    app.run("hot 10");
    let (text, err) = t.stop();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("Hot#hot <")).count(),
        10,
        "{text}"
    );
    assert!(err.contains("10 calls traced"), "{err}");
}

#[test]
fn a_stalled_client_loses_events_and_the_app_does_not_wait() {
    let mut app = App::start(&[]);
    let t = Tracer::attach(&app, &["-m", "Hot#hot"]);
    let live: f64 = app.run("hot 1000000").parse().unwrap();
    // SAFETY: stopping and continuing our own child.
    unsafe { libc::kill(t.child.id() as i32, libc::SIGSTOP) };
    let stalled: f64 = app.run("hot 1000000").parse().unwrap();
    // SAFETY: continuing our own child.
    unsafe { libc::kill(t.child.id() as i32, libc::SIGCONT) };
    let (text, err) = t.stop();
    assert!(
        text.contains("events lost here"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(err.contains("events lost"), "{err}");
    // 2 million events do not fit the 8 MiB ring: the app dropped them instead of waiting.
    assert!(
        stalled < live * 1.5 + 0.2,
        "stalled {stalled} s vs live {live} s"
    );
}

#[test]
fn eval_is_refused_unless_allowed_then_answers_whole_with_a_timeout() {
    let app = App::start(&[]);
    let out = app.eval("1 + 1");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("eval is off in this process"),
        "{}",
        stderr(&out)
    );

    let app = App::start(&[("RBSCOPE_ALLOW_EVAL", "1")]);
    let out = app.eval("1 + 1");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
    let out = app.eval("'x' * 300_000");
    assert!(out.status.success());
    assert_eq!(
        out.stdout.len(),
        300_003,
        "quotes and newline around 300,000 x"
    );
    let out = app.eval("raise ArgumentError, 'nope'");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("ArgumentError: nope\n"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(cli())
        .args([
            "eval",
            "-p",
            &app.pid.to_string(),
            "--timeout",
            "1s",
            "sleep 30",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("timed out after 1.0 s"),
        "{}",
        stderr(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = app.eval("Thread.list.map(&:name).count('rbscope-eval')");
        // This eval's own thread is one.
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out eval thread was not stopped"
        );
    }
}

#[test]
fn a_sleeping_thread_sleeps_on_through_eval_stacks_and_trace() {
    let mut app = App::start(&[("RBSCOPE_ALLOW_EVAL", "1")]);
    app.send("sleep 3");
    let pid = app.pid.to_string();
    // Readiness: the main thread is in Kernel#sleep.
    loop {
        let out = Command::new(cli())
            .args(["stacks", "-p", &pid, "--json"])
            .output()
            .unwrap();
        let report: J = serde_json::from_slice(&out.stdout).unwrap();
        if main_thread(&report).is_some_and(|m| {
            m["frames"][0]["label"]
                .as_str()
                .unwrap_or("")
                .starts_with("Kernel#sleep")
        }) {
            break;
        }
    }
    let asked = Instant::now();
    assert!(app.eval("1").status.success());
    let t = Tracer::attach(&app, &["-f"]);
    let _ = t.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the requests took too long to test this"
    );
    let slept: f64 = app.done("sleep").parse().unwrap();
    assert!(slept >= 3.0, "sleep 3 returned after {slept} s");
}

#[test]
fn another_user_is_refused() {
    let app = App::start(&[]);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cli())
        .args(["trace", "-p", &app.pid.to_string(), "-f"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to uid 0, you are uid 65534"),
        "{}",
        stderr(&out)
    );
    // The socket itself is out of reach too (its directory is private to uid 0).
    let sock = app
        .sb
        .dir
        .path()
        .join(format!("run/rbscope/{}.sock", app.pid));
    assert!(sock.exists());
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            ruby_any_user_can_run(),
            "-rsocket",
            "-e",
        ])
        .arg(format!(
            "UNIXSocket.new({:?}) rescue (puts $!.class; exit 3)",
            sock.display().to_string()
        ))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn ps_lists_ruby_processes_with_and_without_the_agent() {
    let app = App::start(&[]);
    let sb = Sandbox::new();
    let plain = sb.write("plain.rb", "$stdout.sync = true; puts 'ready'; sleep");
    let other = Running::start(sb, &plain, &[], "ready");
    let out = Command::new(cli()).args(["ps", "--json"]).output().unwrap();
    assert!(out.status.success());
    let rows: J = serde_json::from_slice(&out.stdout).unwrap();
    let row = |pid: u32| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["pid"] == pid)
            .cloned()
    };
    let with = row(app.pid).expect("the app is listed");
    assert!(
        with["agent"].as_str().unwrap().starts_with("agent "),
        "{with}"
    );
    assert_eq!(with["ruby"], ruby_version().as_str(), "{with}");
    let without = row(other.child.id()).expect("the plain ruby is listed");
    assert_eq!(without["agent"], "no agent");
}

#[test]
fn a_thousand_attach_trace_detach_cycles_under_http_load_fail_no_request() {
    if !debian_gems_available("puma") {
        return;
    }
    let sb = Sandbox::new();
    let ru = sb.write(
        "config.ru",
        "require 'rbscope'\nRbscope.start\n\
         class Hello\n  def call(env) = [200, { 'content-type' => 'text/plain' }, [work]]\n  def work = 'ok'\nend\n\
         run Hello.new\n",
    );
    let server = Server::puma(&sb, &ru, &["-t", "4:4"]);
    let port = server.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut first) = (0u64, 0u64, None);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = (|| -> std::io::Result<String> {
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
                    let mut text = String::new();
                    s.read_to_string(&mut text)?;
                    Ok(text)
                })();
                match r {
                    Ok(t) if t.starts_with("HTTP/1.0 200") || t.starts_with("HTTP/1.1 200") => {
                        ok += 1
                    }
                    other => {
                        failed += 1;
                        first.get_or_insert_with(|| format!("{other:?}"));
                    }
                }
            }
            (ok, failed, first)
        })
    };
    let pid = server.child.id().to_string();
    for cycle in 0..1000 {
        let every_100th = cycle % 100 == 99;
        let out = Command::new(cli())
            .args([
                "trace",
                "-p",
                &pid,
                "-m",
                "Hello#work",
                "-o",
                "/dev/stdout",
                "--for",
            ])
            .arg(if every_100th { "300ms" } else { "0s" })
            .output()
            .unwrap();
        assert!(out.status.success(), "cycle {cycle}: {}", stderr(&out));
        if every_100th {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("Hello#work <"),
                "cycle {cycle} traced nothing: {}",
                stderr(&out)
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, first) = load.join().unwrap();
    assert_eq!(failed, 0, "failed requests, the first: {first:?}");
    assert!(ok > 1000, "only {ok} requests were made");
}

#[test]
fn two_clients_at_once_each_get_their_own_events() {
    let mut app = App::start(&[]);
    let a = Tracer::attach(&app, &["-m", "Hot#hot"]);
    let b = Tracer::attach(&app, &["-m", "Hot#hot", "-m", "Greeter#shout"]);
    app.run("hot 5");
    app.run("greet");
    let (a_text, _) = a.stop();
    app.run("hot 3");
    let (b_text, _) = b.stop();
    let count = |t: &str, m: &str| t.lines().filter(|l| l.trim_start().starts_with(m)).count();
    assert_eq!(
        (count(&a_text, "Hot#hot"), count(&a_text, "Greeter#shout")),
        (5, 0)
    );
    assert_eq!(
        (count(&b_text, "Hot#hot"), count(&b_text, "Greeter#shout")),
        (8, 2)
    );
}

/// Under YJIT, Ruby 3.1 keeps its code slower for good once a method hook was set, so a trace
/// needs --force there; from 3.2 on the VM lets YJIT compile again after the hook is gone
/// (bench/yjit_trace.rb), so nothing is refused.
#[test]
fn yjit_needs_force_on_ruby_3_1_only() {
    let sb = Sandbox::new();
    let script = sb.write(
        "yjit.rb",
        "require 'rbscope'\nRbscope.start\n$stdout.sync = true\nputs \"ready #{defined?(RubyVM::YJIT) && RubyVM::YJIT.enabled?}\"\n$stdin.read\n",
    );
    let mut child = sb
        .ruby(&script)
        .env("RUBY_YJIT_ENABLE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = child.id().to_string();
    let run = |args: &[&str]| {
        Command::new(cli())
            .args(["trace", "-p", &pid, "--for", "0s"])
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(
        line.trim(),
        "ready true",
        "these Rubies are built with YJIT"
    );
    if ruby_release() == "3.1" {
        let out = run(&["-f"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("YJIT is on") && stderr(&out).contains("--force"),
            "{}",
            stderr(&out)
        );
        assert!(run(&["-f", "--force"]).status.success());
    } else {
        let out = run(&["-f"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(&["-m", "Object#puts"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(
        run(&["--gc"]).status.success(),
        "GC events do not disturb YJIT"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn no_such_process_and_not_ruby_are_one_line_each() {
    let out = Command::new(cli())
        .args(["trace", "-p", "999999999", "-f"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "rbscope: no process with PID 999999999 (it may have exited)"
    );
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let out = Command::new(cli())
        .args(["eval", "-p", &sleeper.id().to_string(), "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a Ruby process"),
        "{}",
        stderr(&out)
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let out = Command::new(cli())
        .args(["trace", "-p", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing to trace"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_protocol_mismatch_says_which_side_to_upgrade() {
    use rbscope_proto::{read_frame, write_frame, AgentMessage, ClientMessage, Hello};
    let app = App::start(&[]);
    let sock = app
        .sb
        .dir
        .path()
        .join(format!("run/rbscope/{}.sock", app.pid));
    for (version, says) in [
        (
            rbscope_proto::PROTOCOL_VERSION + 1,
            "upgrade the rbscope gem in the app",
        ),
        (1, "upgrade the rbscope CLI"),
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        write_frame(
            &mut s,
            &ClientMessage::Hello(Hello {
                protocol_version: version,
                client_version: "test".into(),
            }),
        )
        .unwrap();
        match read_frame::<_, AgentMessage>(&mut s).unwrap() {
            AgentMessage::Refused(why) => assert!(why.contains(says), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_thread_per_job_app_is_traced_whole_with_a_bounded_thread_table() {
    let mut app = App::start(&[]);
    let t = Tracer::attach(&app, &["-m", "Hot#hot", "--format", "jsonl"]);
    app.run("threads 3000");
    let (text, _) = t.stop();
    let events = jsonl(&text);
    let returns: Vec<&J> = events.iter().filter(|e| e["event"] == "return").collect();
    assert_eq!(returns.len(), 3000);
    // Past the agent's thread table (1,024 remembered at once) every call is still a whole,
    // top-level call of its own thread.
    assert!(returns
        .iter()
        .all(|e| e["depth"] == 0 && e["method"] == "Hot#hot"));
    let calls = events.iter().filter(|e| e["event"] == "call").count();
    assert_eq!(calls, 3000);
}

#[test]
fn presets_and_selector_files() {
    let mut app = App::start(&[]);
    let t = Tracer::attach(&app, &["--preset", "io"]);
    assert!(t.attached.contains("Kernel#sleep"), "{}", t.attached);
    app.run("sleep 0.01");
    let (text, _) = t.stop();
    assert!(text.contains("Kernel#sleep <"), "{text}");

    // A preset for a library the app has not loaded: every selector is reported, and since
    // nothing is left to trace, that is an error.
    let out = Command::new(cli())
        .args(["trace", "-p", &app.pid.to_string(), "--preset", "sidekiq"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains(": Sidekiq::Processor#process(work): no constant Sidekiq::Processor is defined (optional: skipped)"),
        "{e}"
    );
    assert!(e.contains("nothing to trace"), "{e}");

    let file = app.sb.write(
        "mine.txt",
        "# my selectors\nGreeter#shout(text)   # the shouting\n?Nope#x\n\n",
    );
    let t = Tracer::attach(&app, &["-c", file.to_str().unwrap()]);
    app.run("greet");
    let (text, err) = t.stop();
    assert!(text.contains("Greeter#shout(text=\"bob\") <"), "{text}");
    assert!(
        err.contains("not traced in ")
            && err.contains(": Nope#x: no constant Nope is defined (optional: skipped)"),
        "{err}"
    );
}

#[test]
fn memory_report_of_a_running_process() {
    let mut app = App::start(&[]);
    app.run("hoard 200000");
    let out = Command::new(cli())
        .args(["memory", "-p", &app.pid.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: J = serde_json::from_slice(&out.stdout).unwrap();
    let pair = |list: &str, name: &str| -> i64 {
        r[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == name)
            .and_then(|p| p[1].as_i64())
            .unwrap_or_else(|| panic!("{list} has no {name}: {r}"))
    };
    assert!(pair("objects", "T_STRING") >= 200_000, "{r}");
    let heap = pair("gc", "heap_allocated_pages") * r["heap_page_bytes"].as_i64().unwrap();
    // 200,000 strings need at least 200,000 slots of 40 bytes.
    assert!(heap >= 200_000 * 40, "{heap}");
    assert!(pair("kernel", "VmRSS") > heap);
    assert!(pair("malloc", "in_use_bytes") > 0);
    let text = Command::new(cli())
        .args(["memory", "-p", &app.pid.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Ruby heap") && text.contains("T_STRING"),
        "{text}"
    );
}

#[test]
fn console_keeps_locals_continues_lines_and_ctrl_c_stops_only_the_evaluation() {
    let mut app = App::start(&[("RBSCOPE_ALLOW_EVAL", "1")]);
    let home = app.sb.dir.path().join("home");
    let mut console = Command::new(cli())
        .args(["console", "-p", &app.pid.to_string()])
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = console.stdin.take().unwrap();
    let mut out = BufReader::new(console.stdout.take().unwrap());
    writeln!(input, "x = 21\nx * 2\ndef add(a,\n  b) = a + b\nadd(1, 2)").unwrap();
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("=> 3") {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "console ended: {lines:?}"
        );
        lines.push(line.trim_end().to_string());
    }
    assert_eq!(lines, ["=> 21", "=> 42", "=> :add", "=> 3"]);

    // A runaway evaluation: readiness is its thread asleep in the app.
    writeln!(input, "sleep 30").unwrap();
    let sleeping = "Thread.list.count { |t| t.name == 'rbscope-eval' && t.status == 'sleep' }";
    loop {
        let out = app.eval(sleeping);
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            break;
        }
    }
    // SAFETY: interrupting our own child, as Ctrl-C would.
    unsafe { libc::kill(console.id() as i32, libc::SIGINT) };
    writeln!(input, "x").unwrap();
    drop(input);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "=> 21\n", "the console goes on with its locals");
    let mut err = String::new();
    console
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(console.wait().unwrap().success());
    assert!(
        err.contains("interrupted: the eval thread was stopped"),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&app.eval(sleeping).stdout).trim(),
        "0"
    );
    // The app itself went on, and the history file is private.
    app.run("hot 10");
    let history = home.join(".local/share/rbscope/console_history");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&history).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&history)
        .unwrap()
        .contains("add(1, 2)"));

    let closed = App::start(&[]);
    let out = Command::new(cli())
        .args(["console", "-p", &closed.pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("eval is off"), "{}", stderr(&out));
}

#[test]
fn ps_traces_every_puma_worker_and_picks_up_a_restarted_one() {
    if !debian_gems_available("puma") {
        return;
    }
    let sb = Sandbox::new();
    let ru = sb.write(
        "config.ru",
        "require 'rbscope'\nRbscope.start\n\
         class Hello\n  def call(env) = [200, { 'content-type' => 'text/plain' }, [work]]\n  def work = Process.pid.to_s\nend\n\
         run Hello.new\n",
    );
    let server = Server::puma(&sb, &ru, &["-w", "2"]);
    // Puma titles its processes with the app directory's name: unique to this sandbox.
    let pattern = sb
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let output = sb.dir.path().join("ps-trace.out");
    let mut cli_child = Killed(
        Command::new(cli())
            .args(["trace", "--ps", &pattern, "-m", "Hello#work", "-o"])
            .arg(&output)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = cli_child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut attached = std::collections::BTreeSet::new();
    let wait_attached =
        |attached: &mut std::collections::BTreeSet<u32>, seen: &mut Vec<String>, n: usize| {
            while attached.len() < n {
                let line = rx
                    .recv_timeout(Duration::from_secs(30))
                    .unwrap_or_else(|_| panic!("no attach: {seen:?}"));
                if let Some(rest) = line.strip_prefix("*** attached to process ") {
                    attached.insert(rest.split_whitespace().next().unwrap().parse().unwrap());
                }
                seen.push(line);
            }
        };
    wait_attached(&mut attached, &mut seen, 2);
    // The master runs no agent (workers load the app): said, not traced.
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("process {} not traced", server.child.id()))),
        "{seen:?}"
    );
    // Requests until each worker has answered one.
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..500 {
        let (code, body) = server.get("/");
        assert_eq!(code, 200);
        answered.insert(body.trim().parse::<u32>().unwrap());
        if answered.len() == 2 {
            break;
        }
    }
    assert_eq!(answered, attached, "the traced processes are the workers");
    // Kill one worker: puma starts another, and the trace picks it up.
    let victim = *attached.iter().next().unwrap();
    // SAFETY: killing a puma worker of this test.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    wait_attached(&mut attached, &mut seen, 3);
    let newcomer = *attached
        .iter()
        .find(|p| **p != victim && !answered.contains(p))
        .unwrap();
    for _ in 0..500 {
        if server.get("/").1.trim() == newcomer.to_string() {
            break;
        }
    }
    // SAFETY: interrupting our own child, as Ctrl-C would.
    unsafe { libc::kill(cli_child.0.id() as i32, libc::SIGINT) };
    assert!(cli_child.0.wait().unwrap().success());
    let text = std::fs::read_to_string(&output).unwrap();
    // The killed worker's last events may die with it; the others' are all there.
    let survivor = *answered.iter().find(|p| **p != victim).unwrap();
    for pid in [survivor, newcomer] {
        assert!(
            text.contains(&format!("[{pid}] Hello#work <")),
            "{pid}: {text}"
        );
    }
    assert!(
        text.lines().all(|l| l.is_empty() || l.starts_with('[')),
        "{text}"
    );
}

/// A child process killed when the test ends (also when it fails).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_traces_a_program_from_the_start_hooking_code_as_it_loads() {
    let sb = Sandbox::new();
    let program = sb.write(
        "later.rb",
        "$stdout.sync = true\n$stdin.gets\nclass Later\n  def work(x) = x * 2\nend\n$stdin.gets\n3.times { |i| Later.new.work(i) }\n",
    );
    let mut run = Killed(
        sb.cli()
            .args(["run", "-m", "Later#work(x)", "--", "ruby"])
            .arg(&program)
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut input = run.0.stdin.take().unwrap();
    let mut err = BufReader::new(run.0.stderr.take().unwrap());
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str, seen: &mut Vec<String>| loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no {needle:?}: {seen:?}"
        );
        seen.push(line.trim_end().to_string());
        if line.contains(needle) {
            break;
        }
    };
    // Attached before the class exists: the selector waits for it.
    wait_for("waiting for its code to load: Later#work(x)", &mut seen);
    writeln!(input).unwrap();
    // Defined: hooked within a moment, and said so.
    wait_for("now tracing Later#work", &mut seen);
    writeln!(input).unwrap();
    drop(input);
    let mut out = String::new();
    run.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(run.0.wait().unwrap().success(), "{seen:?} {rest}");
    let calls: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("Later#work("))
        .collect();
    assert_eq!(calls.len(), 3, "{out}");
    assert!(calls[2].starts_with("Later#work(x=2) <"), "{out}");
    assert!(
        rest.contains("3 calls traced; the program exited"),
        "{rest}"
    );
}

/// The firehose's event hook once handed Ruby a bare Rust address as its data, which Ruby's GC
/// marks as an object: a process allocating on several threads crashed in GC within a few
/// `trace -f` (found by scripts/soak). Eight firehose traces of such a process: each ends
/// normally and the process is alive after them.
#[test]
fn firehose_traces_of_a_process_allocating_on_four_threads_leave_it_running() {
    let sb = Sandbox::new();
    let script = sb.write(
        "alloc.rb",
        r#"require "rbscope"
Rbscope.start(log: false)
class Churn
  def step(i) = Array.new(50) { |k| "s#{i}-#{k}" }.map(&:upcase).size
end
4.times { Thread.new { c = Churn.new; i = 0; loop { c.step(i += 1) } } }
$stdout.sync = true
puts "ready"
sleep
"#,
    );
    let mut p = Running::start(sb, &script, &[], "ready");
    let pid = p.pid();
    for round in 0..8 {
        let out = Command::new(cli())
            .args([
                "trace",
                "-p",
                &pid,
                "-f",
                "--for",
                "300ms",
                "-o",
                "/dev/null",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "trace {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "the process died during trace {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// On a terminal, a trace's lines appear as the calls happen, not when a buffer fills or the
/// trace ends: `rbscope trace` with its standard output on a pseudo-terminal prints the call
/// while it is still attached.
#[test]
fn a_trace_on_a_terminal_shows_each_call_while_it_runs() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut app = App::start(&[]);
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes the two descriptors it opens into the locals; the other
    // arguments may be null.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty");
    // SAFETY: both descriptors were just opened by openpty and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = Command::new(cli())
        .args([
            "trace",
            "-p",
            &app.pid.to_string(),
            "-m",
            "Greeter#greet",
            "--for",
            "60s",
        ])
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut attached = String::new();
    err.read_line(&mut attached).unwrap();
    assert!(attached.starts_with("*** attached"), "{attached}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut terminal = std::fs::File::from(master);
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        // Ends when the terminal closes (the CLI exits) or the line is there.
        while let Ok(n) = std::io::Read::read(&mut terminal, &mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("Greeter#greet") {
                let _ = tx.send(seen.clone());
                break;
            }
        }
    });
    app.run("greet");
    let line = rx.recv_timeout(std::time::Duration::from_secs(20));
    let still_running = child.try_wait().unwrap().is_none();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let line = line.expect("the call never appeared on the terminal while the trace ran");
    assert!(
        still_running,
        "the line came only when the trace ended: {line}"
    );
    assert!(status.success());
}

/// `rbscope run -m` of a program that defines its class and calls it within its first
/// millisecond: each selector waiting for its code is hooked the moment the method is defined
/// (an instance method, a class method, one made by define_method), so no call is missed.
#[test]
fn run_traces_calls_made_right_after_the_method_is_defined() {
    let sb = Sandbox::new();
    let program = sb.write(
        "quick.rb",
        "class A; def go = 1; end\n3.times { A.new.go }\n\
         class B; def self.make = new; end\n2.times { B.make }\n\
         class C; define_method(:run) { 7 }; end\nC.new.run\n",
    );
    let out = sb
        .cli()
        .args([
            "run", "-m", "A#go", "-m", "B.make", "-m", "C#run", "--", "ruby",
        ])
        .arg(&program)
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let count = |label: &str| text.lines().filter(|l| l.starts_with(label)).count();
    assert_eq!((count("A#go "), count("B.make ")), (3, 2), "{text}\n{err}");
    assert!(err.contains("*** 6 calls traced"), "{err}");
}
