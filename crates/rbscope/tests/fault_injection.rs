//! A panic inside the agent never takes the app down: with an agent built with the
//! `fault-injection` feature (this file builds it, for the `ruby` first on PATH), every guarded
//! entry point whose description contains `RBSCOPE_FAULT` panics. For each kind of entry point
//! in turn, a real Ruby app (programs/fault_app.rb) keeps answering and finishes its work, and
//! `rbscope doctor -p PID` names the feature that turned itself off.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A copy of the gem's Ruby files with the fault-injection agent in place of the real one.
fn fault_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let release = ruby_release();
        let root = repo_root();
        let dir = root.join("target/fault-injection").join(&release);
        let ruby = Command::new("ruby")
            .args(["-e", "print RbConfig.ruby"])
            .output()
            .unwrap();
        let ruby = String::from_utf8(ruby.stdout).unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "rbscope-agent",
                "--features",
                "fault-injection",
            ])
            .current_dir(&root)
            // One target directory for every Ruby: switching RUBY rebuilds only rb-sys,
            // magnus and the agent (as scripts/build does).
            .env(
                "CARGO_TARGET_DIR",
                root.join("target/fault-injection/target"),
            )
            .env("RUBY", &ruby)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "building the fault-injection agent failed: {}",
            stderr(&built)
        );
        let lib = dir.join("lib");
        let own = lib.join("rbscope");
        std::fs::create_dir_all(own.join(&release)).unwrap();
        let gem = root.join("gem/lib");
        std::fs::copy(gem.join("rbscope.rb"), lib.join("rbscope.rb")).unwrap();
        for entry in std::fs::read_dir(gem.join("rbscope")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rb") {
                std::fs::copy(&path, own.join(path.file_name().unwrap())).unwrap();
            }
        }
        std::fs::copy(
            root.join("target/fault-injection/target/release/librbscope_agent.so"),
            own.join(&release).join("rbscope_agent.so"),
        )
        .unwrap();
        lib
    })
}

/// fault_app.rb under the fault-injection agent, failing where `fault` says.
struct App {
    p: Program,
    pid: String,
}

impl App {
    fn start(fault: &str) -> App {
        let p = Program::start_with(
            "fault_app.rb",
            fault_lib(),
            &[("RBSCOPE_FAULT", fault)],
            true,
        );
        let pid = p.pid.to_string();
        App { p, pid }
    }

    /// Runs one command of the app and returns its result.
    fn run(&mut self, cmd: &str) -> String {
        self.p.run(cmd)
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(cli())
            .args(args)
            .env("RBSCOPE_STORE", self.p.sb.store())
            .env("RBSCOPE_RUBY_LIB", fault_lib())
            .env("XDG_RUNTIME_DIR", self.p.sb.dir.path().join("run"))
            .current_dir(self.p.sb.dir.path())
            .output()
            .unwrap()
    }

    /// `rbscope doctor -p PID`'s warning lines.
    fn warnings(&self) -> Vec<String> {
        let out = self.cli(&["doctor", "-p", &self.pid]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("warning: ").map(str::to_string))
            .collect()
    }

    fn counter(&self, name: &str) -> u64 {
        let out = self.cli(&["doctor", "-p", &self.pid]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(name)).then(|| f.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// Ends the app through its input and returns its standard error.
    fn finish(self) -> String {
        self.p.finish()
    }
}

/// The work every app does after the fault, with the answers it gives without rbscope.
fn still_works(app: &mut App) {
    assert_eq!(app.run("work 2000"), "999000");
    assert_eq!(app.run("raise 20"), "20");
    assert_eq!(app.run("fork"), "7");
}

/// The feature that `what` names is off, with the injected panic's message, and nothing of
/// the panic reached the app's stderr.
fn turned_off(app: App, feature: &str) {
    let warnings = app.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with(feature) && w.contains("injected fault")),
        "{warnings:?}"
    );
    assert!(app.counter("internal_errors_caught") >= 1);
    let err = app.finish();
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_panic_in_the_raise_hook_turns_snapshots_off() {
    let mut app = App::start("the raise hook");
    still_works(&mut app);
    turned_off(app, "snapshots");
}

#[test]
fn a_panic_while_reporting_a_threads_exception_leaves_the_thread_ending_as_before() {
    let mut app = App::start("report of a thread's exception");
    assert_eq!(app.run("thread"), "Failure 42");
    still_works(&mut app);
    assert_eq!(app.run("thread"), "Failure 42");
    turned_off(app, "snapshots");
}

#[test]
fn a_panic_while_reading_frames_at_raise_turns_snapshots_off() {
    let mut app = App::start("a call into Ruby");
    still_works(&mut app);
    turned_off(app, "snapshots");
}

#[test]
fn a_panic_in_a_gc_mark_function_turns_its_readers_off() {
    let mut app = App::start("marking pending captures");
    assert_eq!(app.run("raise 5"), "5");
    assert_eq!(app.run("gc"), "ok");
    still_works(&mut app);
    assert_eq!(app.run("gc"), "ok");
    turned_off(app, "snapshots");
}

#[test]
fn a_panic_in_the_store_writer_turns_it_off() {
    // The writer thread fails as it starts (a report made before that is queued, and lost).
    // Once it is off, a report is not stored, and says so (nil).
    let mut app = App::start("the store writer");
    app.run("report");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app
        .warnings()
        .iter()
        .any(|w| w.starts_with("the store writer"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never reported itself off"
        );
    }
    assert_eq!(app.run("report"), "nil");
    still_works(&mut app);
    turned_off(app, "the store writer");
}

#[test]
fn a_panic_in_the_fork_handler_leaves_parent_and_child_running() {
    // The handler runs in the child (which exits 7 as it should, after a raise): the
    // parent's features are untouched.
    let mut app = App::start("the fork handler");
    still_works(&mut app);
    assert!(app.warnings().is_empty());
    let err = app.finish();
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_panic_in_a_trace_hook_turns_tracing_off() {
    let mut app = App::start("the trace hook");
    let cli = cli();
    let pid = app.pid.clone();
    let store = app.p.sb.store();
    let run = app.p.sb.dir.path().join("run");
    let trace = std::thread::spawn(move || {
        Command::new(cli)
            .args(["trace", "-p", &pid, "-m", "Worker#step", "--for", "2s"])
            .env("RBSCOPE_STORE", store)
            .env("XDG_RUNTIME_DIR", run)
            .output()
            .unwrap()
    });
    // Work until the trace is attached: the hook's panic turns tracing off on the first call.
    while app.counter("traces_started") == 0 {
        assert_eq!(app.run("work 1000"), "499500");
    }
    assert_eq!(app.run("work 1000"), "499500");
    let traced = trace.join().unwrap();
    assert!(!String::from_utf8_lossy(&traced.stdout).contains("Worker#step(i="));
    still_works(&mut app);
    turned_off(app, "tracing");
}

#[test]
fn a_panic_in_a_heap_count_turns_heap_features_off() {
    let mut app = App::start("counting the heap");
    let out = app.cli(&["heap", "count", "-p", &app.pid]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    still_works(&mut app);
    turned_off(app, "heap dumps");
}

#[test]
fn a_panic_in_the_heap_dumps_child_fails_that_dump_only() {
    // The walk runs in a forked child: the child's error is the dump's; the app is untouched.
    let mut app = App::start("writing the heap's objects");
    let target = app.p.sb.dir.path().join("heap.json");
    let out = app.cli(&[
        "heap",
        "dump",
        "-p",
        &app.pid,
        "-o",
        target.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("internal error"), "{err}");
    assert!(!target.exists());
    still_works(&mut app);
    let err = app.finish();
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_panic_while_reading_stacks_turns_backtraces_off() {
    let mut app = App::start("reading stacks");
    let out = app.cli(&["stacks", "-p", &app.pid]);
    assert!(stderr(&out).lines().count() <= 1, "{}", stderr(&out));
    still_works(&mut app);
    turned_off(app, "better backtraces");
}
