//! Helpers for tests that run real Ruby programs with the agent and the real CLI.
#![allow(dead_code)]

pub mod pg;

use serde_json::Value as J;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// gem/lib, with the agent for the Ruby under test in it (scripts/build puts it there).
pub fn gem_lib() -> PathBuf {
    let lib = repo_root().join("gem/lib");
    let release = ruby_release();
    assert!(
        lib.join(format!("rbscope/{release}/rbscope_agent.so"))
            .is_file(),
        "the agent for Ruby {release} is not built: run scripts/build (or scripts/test) first"
    );
    lib
}

/// The full version of the Ruby under test: the first `ruby` on PATH (scripts/test puts each
/// Ruby it tests first on PATH in turn), e.g. `3.4.9`.
pub fn ruby_version() -> String {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            let out = Command::new("ruby")
                .args(["-e", "print RUBY_VERSION"])
                .output()
                .expect("cannot run `ruby`: is Ruby installed and on PATH?");
            String::from_utf8(out.stdout).unwrap()
        })
        .clone()
}

/// `3.4` for Ruby 3.4.9.
pub fn ruby_release() -> String {
    ruby_version()
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether the Ruby under test is at least `major.minor`.
pub fn ruby_at_least(major: u32, minor: u32) -> bool {
    let v: Vec<u32> = ruby_version()
        .split('.')
        .take(2)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    (v[0], v[1]) >= (major, minor)
}

/// A `ruby` that another user (uid 65534, through setpriv) can run, for a client that needs
/// only the standard library: Debian's, in /usr/bin. The Ruby under test may live in a home
/// directory other users cannot enter (~/.rubies under a 0700 /root), where they can neither
/// run it nor load its libruby.so.
pub fn ruby_any_user_can_run() -> &'static str {
    if Path::new("/usr/bin/ruby").exists() {
        "/usr/bin/ruby"
    } else {
        "ruby"
    }
}

/// Debian's Rails 6.1, Sinatra, Sidekiq and their gems are installed for Debian's Ruby 3.1
/// only: tests of those integrations run there and say so elsewhere (the Rack middleware is
/// tested with plain Rack on every Ruby).
pub fn debian_gems_available(what: &str) -> bool {
    if ruby_release() == "3.1" {
        return true;
    }
    eprintln!(
        "skipped on Ruby {}: {what} comes from Debian's packages, which serve Ruby 3.1 only",
        ruby_version()
    );
    false
}

pub fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rbscope"))
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store/snapshots.db")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A `ruby` command for `script` with the agent on the load path and this sandbox's store
    /// (started by the script itself, or by `-rrbscope/autostart`).
    pub fn ruby(&self, script: &Path) -> Command {
        self.ruby_with_lib(script, &gem_lib())
    }

    /// [`Sandbox::ruby`] with another copy of the gem's lib directory on the load path (the
    /// fault-injection test's agent).
    pub fn ruby_with_lib(&self, script: &Path, lib: &Path) -> Command {
        let mut c = Command::new("ruby");
        c.arg(format!("-I{}", lib.display()))
            .arg(script)
            .current_dir(self.dir.path())
            .env("RBSCOPE_STORE", self.store())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env_remove("RUBYOPT")
            .env_remove("RBSCOPE_DISABLE");
        c
    }

    /// Runs a program that starts the agent on its first line.
    pub fn run_started(&self, name: &str, body: &str) -> Output {
        let script = self.write(name, &format!("require \"rbscope\"\nRbscope.start\n{body}"));
        self.ruby(&script).output().unwrap()
    }

    pub fn cli(&self) -> Command {
        let mut c = Command::new(cli());
        c.env("RBSCOPE_STORE", self.store())
            .env("RBSCOPE_RUBY_LIB", gem_lib())
            .current_dir(self.dir.path());
        c
    }

    /// Runs `app` under `rbscope run`; it must fail (an exception escapes). Returns the id of
    /// the store's first snapshot.
    pub fn run_failing(&self, app: &Path) -> String {
        let out = self
            .cli()
            .args(["run", "--", "ruby"])
            .arg(app)
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env_remove("RUBYOPT")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        self.list()[0]["id"].as_str().unwrap().to_string()
    }

    /// Runs `code` (written as a UTF-8 file, whatever the locale) in a Ruby that loaded the
    /// sandbox's `model.rb` and rbscope/restore, on the sandbox's store.
    pub fn restore_check(&self, code: &str) -> Output {
        let script = self.write("check.rb", code);
        Command::new("ruby")
            .arg(format!("-I{}", gem_lib().display()))
            .arg("-r./model")
            .arg("-rrbscope/restore")
            .arg(script)
            .current_dir(self.dir.path())
            .env("RBSCOPE_STORE", self.store())
            .env_remove("RUBYOPT")
            .output()
            .unwrap()
    }

    /// `rbscope restore ID` with `input` on its standard input (the console opens in the
    /// snapshot's innermost app frame); checks that it succeeded and returns what it printed.
    pub fn restore(&self, id: &str, input: &str) -> String {
        let out = with_input(self.cli().args(["restore", id]), input);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{}\n{text}", stderr(&out));
        text
    }

    /// Runs the CLI on the store `store` (not the sandbox's own), checks that it succeeded and
    /// returns its standard output.
    pub fn cli_on(&self, store: &Path, args: &[&str]) -> String {
        let o = self
            .cli()
            .env("RBSCOPE_STORE", store)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// [`Sandbox::cli_on`] for a command that prints JSON.
    pub fn cli_json_on(&self, store: &Path, args: &[&str]) -> J {
        let out = self.cli_on(store, args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    pub fn list(&self) -> Vec<J> {
        let out = self
            .cli()
            .args(["list", "--json", "-n", "1000"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<J>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn show(&self, id: &str) -> J {
        let out = self.cli().args(["show", id, "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn show_text(&self, id: &str) -> String {
        let out = self.cli().args(["show", id]).output().unwrap();
        assert!(
            out.status.success(),
            "show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stores an encoded snapshot (`body`, whose decoded form is `snap`) in the sandbox's store
    /// (which must exist), signed with the store's key as the agent signs what it writes.
    pub fn insert_signed(&self, snap: &rbscope_snapshot::Snapshot, body: &[u8]) {
        let key = rbscope_store::StoreKey::load_file(&rbscope_store::key_path(&self.store()))
            .unwrap()
            .unwrap();
        let mut store = rbscope_store::Store::open_existing(&rbscope_store::StoreLocation::Sqlite(
            self.store(),
        ))
        .unwrap();
        store
            .insert(
                &rbscope_store::SnapshotSummary::of(snap, body.len()),
                body,
                Some(&key.sign(body)),
                None,
            )
            .unwrap();
    }

    /// The only snapshot in the store, fully decoded.
    pub fn only_snapshot(&self) -> J {
        let rows = self.list();
        assert_eq!(rows.len(), 1, "expected one snapshot, got {rows:#?}");
        self.show(rows[0]["id"].as_str().unwrap())
    }
}

/// Snapshot JSON helpers.
pub struct Snap<'a>(pub &'a J);

impl<'a> Snap<'a> {
    pub fn frame(&self, label_prefix: &str) -> &'a J {
        self.0["frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["label"].as_str().unwrap().starts_with(label_prefix))
            .unwrap_or_else(|| panic!("no frame {label_prefix} in {:#}", self.0["frames"]))
    }

    pub fn local(&self, frame: &'a J, name: &str) -> &'a J {
        frame["locals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .map(|l| &l["value"])
            .unwrap_or_else(|| panic!("no local {name} in {:#}", frame["locals"]))
    }

    /// Follows a `ref` value to its object.
    pub fn obj(&self, v: &J) -> &'a J {
        assert_eq!(v["type"], "ref", "not a reference: {v}");
        &self.0["objects"][v["id"].as_u64().unwrap() as usize]
    }

    pub fn ivar(&self, obj: &'a J, name: &str) -> &'a J {
        obj["ivars"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| &i["value"])
            .unwrap_or_else(|| panic!("no ivar {name} in {obj:#}"))
    }
}

/// Runs `cmd` with `input` on its standard input (then closed), as a console session.
pub fn with_input(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Ruby program started with this sandbox's store and runtime directory, killed on drop.
pub struct Running {
    pub child: std::process::Child,
    /// The lines it printed up to and including the one starting with `ready_word`.
    pub lines: Vec<String>,
    _sb: Sandbox,
}

impl Running {
    pub fn start(
        sb: Sandbox,
        script: &std::path::Path,
        args: &[&str],
        ready_word: &str,
    ) -> Running {
        let mut child = sb
            .ruby(script)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = Vec::new();
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "ended early: {lines:?}"
            );
            let done = line.starts_with(ready_word);
            lines.push(line.trim_end().to_string());
            if done {
                break;
            }
        }
        Running {
            child,
            lines,
            _sb: sb,
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The sandbox it runs in (its store, for the CLI).
    pub fn sb(&self) -> &Sandbox {
        &self._sb
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real HTTP server (puma) running an app from the sandbox, on a loopback port it picks.
pub struct Server {
    pub child: std::process::Child,
    pub port: u16,
}

/// Debian's Rack (pure Ruby), which runs on every Ruby.
pub const DEBIAN_RACK_LIB: &str = "/usr/share/rubygems-integration/all/gems/rack-2.2.22/lib";

impl Server {
    /// Serves a plain Rack app: with puma where Debian's puma runs (Ruby 3.1), else with
    /// programs/rack_server.rb on Debian's Rack.
    pub fn rack(sb: &Sandbox, config_ru: &Path) -> Server {
        if ruby_release() == "3.1" {
            return Server::puma(sb, config_ru, &[]);
        }
        let mut c = Command::new("ruby");
        c.arg(format!("-I{}", gem_lib().display()))
            .arg(format!("-I{DEBIAN_RACK_LIB}"))
            .arg(repo_root().join("crates/rbscope/tests/programs/rack_server.rb"))
            .arg(config_ru);
        Server::start(sb, c)
    }

    /// Starts `puma CONFIG_RU` with the agent on the load path; waits until it listens.
    pub fn puma(sb: &Sandbox, config_ru: &Path, extra: &[&str]) -> Server {
        let mut c = Command::new("ruby");
        c.arg(format!("-I{}", gem_lib().display()))
            .arg("/usr/bin/puma")
            .args(["-b", "tcp://127.0.0.1:0", "-e", "production"])
            .args(extra)
            .arg(config_ru);
        Server::start(sb, c)
    }

    fn start(sb: &Sandbox, mut c: Command) -> Server {
        use std::io::BufRead;
        let mut child = c
            .current_dir(sb.dir.path())
            .env("RBSCOPE_STORE", sb.store())
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .env_remove("RUBYOPT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ruby must be installed: scripts/install-deps");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .unwrap();
            // "* Listening on http://127.0.0.1:PORT"
            if let Some(addr) = line.split("Listening on ").nth(1) {
                let port = addr.rsplit(':').next().unwrap_or("");
                break port.trim().parse::<u16>().unwrap();
            }
        };
        // Keep draining stdout so puma never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, port }
    }

    /// One GET request; returns the status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: rbscope-test\r\nX-Request-Id: req-42\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: sending SIGTERM to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The line of `text` holding `marker` (1-based): where a test's app marks the line it hooks.
pub fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker}"))
        + 1
}

/// A child process that is sent SIGTERM and waited for on drop (servers a test started:
/// redis-server, sidekiq).
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// A real redis-server (Debian's package) on a free loopback port, without persistence,
/// started in the sandbox's directory once it says it is ready; stopped on drop.
pub struct Redis {
    _server: Daemon,
    /// `redis://127.0.0.1:PORT/0`, as REDIS_URL.
    pub url: String,
}

impl Redis {
    pub fn start(sb: &Sandbox) -> Redis {
        let port = free_port();
        let mut server = Daemon(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(sb.dir.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("redis-server (Debian package) must be installed: scripts/install-deps"),
        );
        let mut out = std::io::BufReader::new(server.0.stdout.take().unwrap()).lines();
        while !out
            .next()
            .expect("redis exited")
            .unwrap()
            .contains("Ready to accept connections")
        {}
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in out {});
        Redis {
            _server: server,
            url: format!("redis://127.0.0.1:{port}/0"),
        }
    }

    /// `ruby -r./jobs -e CODE` in the sandbox against this Redis (enqueueing jobs, reading
    /// Sidekiq's sets); checks that it succeeded and returns its standard output.
    pub fn ruby_with_jobs(&self, sb: &Sandbox, requires: &[&str], code: &str) -> String {
        let out = Command::new("ruby")
            .arg(format!("-I{}", gem_lib().display()))
            .arg("-r./jobs")
            .args(requires.iter().map(|r| format!("-r{r}")))
            .args(["-e", code])
            .current_dir(sb.dir.path())
            .env("REDIS_URL", &self.url)
            .env_remove("RUBYOPT")
            .output()
            .unwrap();
        assert!(out.status.success(), "{code}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A Sidekiq 6 worker (Debian's) loading the sandbox's jobs.rb, against this Redis, with
    /// the sandbox's store and `args` after its own; its output is dropped. Not started yet
    /// (the caller adds its environment, then wraps the spawned child in a [`Daemon`]).
    pub fn sidekiq(&self, sb: &Sandbox, args: &[&str]) -> Command {
        let mut c = Command::new("ruby");
        c.arg(format!("-I{}", gem_lib().display()))
            .args(["/usr/bin/sidekiq", "-r", "./jobs.rb", "-t", "1"])
            .args(args)
            .current_dir(sb.dir.path())
            .env("REDIS_URL", &self.url)
            .env("RBSCOPE_STORE", sb.store())
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .env_remove("RUBYOPT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    }
}

/// Waits (at most 60 s) until the file at `path` exists: the app says it got there.
pub fn wait_for_file(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `breakpoints_set` as `rbscope doctor -p PID` shows it.
pub fn breakpoints_set(pid: u32) -> u64 {
    let out = Command::new(cli())
        .args(["doctor", "-p", &pid.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("breakpoints_set"))
        .unwrap_or_else(|| panic!("no breakpoints_set in:\n{text}{}", stderr(&out)))
        .trim()
        .parse()
        .unwrap()
}

/// Polls `rbscope doctor -p PID` (bounded, 10 s) until `breakpoints_set` is `n`.
pub fn wait_for_breakpoints_set(pid: u32, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = breakpoints_set(pid);
        if now == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "breakpoints_set stays {now}, not {n}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The labels, innermost first, for the chain in programs/constructs.rb.
pub const CONSTRUCT_LABELS: &[&str] = &[
    "Object#bottom()",
    "Object#top_level_hello()",
    "Object#method_with_complex_parameters(a, b, *c, (), f:, g:, **h, &i)",
    "ANON_MODULE.hello()",
    "ANON_CLASS#hello()",
    "#<Class:SINGLETON_OWNER>.hello()",
    "ClassF#hello{block}(arg1, arg2, test1, test2:)",
    "Integer#times()",
    "ClassF#hello(arg1, arg2, test1, test2:)",
    "ClassH#method_missing(name, *_)",
    "ModuleE.hello()",
    "ClassG$refinement@ContainsRefinement::RefinesClassG#hello()",
    "Method#call(*)",
    "ClassE#hello()",
    "ClassD$singleton#hello()",
    "ModuleD#hello{block}{block}()",
    "Array#each()",
    "ModuleD#hello{block}()",
    "Array#each()",
    "ModuleD#hello()",
    "UsesModuleD#go()",
    "ClassWithStaticMethod.hello()",
    "ModuleC.hello()",
    "ModuleB::ClassB#hello()",
    "ClassA#hello()",
    "Object$singleton#<main>{block}{block}()",
    "Kernel#eval(*)",
    "Object$singleton#<main>{block}{block}()",
    "Integer#times()",
    "Object$singleton#<main>{block}()",
    "Integer#times()",
    "Object$singleton#<main>()",
];

/// A program of tests/programs/ that says "ready ..." first, then runs commands read from
/// stdin, one per line, answering "done COMMAND [RESULT]" after each. Killed on drop.
pub struct Program {
    pub child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    pub out: std::io::BufReader<std::process::ChildStdout>,
    pub pid: u32,
    pub sb: Sandbox,
}

impl Program {
    /// tests/programs/`name` with the gem's lib and `env`, once it printed its `ready` line.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Program {
        Program::start_with(name, &gem_lib(), env, false)
    }

    /// [`Program::start`] with the gem's lib at `lib`; with `keep_stderr`, its standard error
    /// is kept for [`Program::finish`].
    pub fn start_with(name: &str, lib: &Path, env: &[(&str, &str)], keep_stderr: bool) -> Program {
        let sb = Sandbox::new();
        let program = repo_root().join("crates/rbscope/tests/programs").join(name);
        let mut cmd = sb.ruby_with_lib(&program, lib);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if keep_stderr {
            cmd.stderr(std::process::Stdio::piped());
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "{line:?}");
        let pid = child.id();
        Program {
            child,
            stdin,
            out,
            pid,
            sb,
        }
    }

    /// Ends the program through its input, checks that it exited well and returns its
    /// standard error (empty unless started with `keep_stderr`).
    pub fn finish(mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            e.read_to_string(&mut err).unwrap();
        }
        assert!(status.success(), "{status}: {err}");
        err
    }

    pub fn send(&mut self, cmd: &str) {
        writeln!(
            self.stdin.as_mut().expect("the program's input is open"),
            "{cmd}"
        )
        .unwrap();
    }

    /// Waits for "done CMD ..." and returns what follows CMD.
    pub fn done(&mut self, cmd: &str) -> String {
        let word = cmd.split_whitespace().next().unwrap();
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "app ended");
            if let Some(rest) = line.trim_end().strip_prefix(&format!("done {word}")) {
                return rest.trim().to_string();
            }
        }
    }

    pub fn run(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.done(cmd)
    }

    pub fn eval(&self, code: &str) -> std::process::Output {
        std::process::Command::new(cli())
            .args(["eval", "-p", &self.pid.to_string(), code])
            .output()
            .unwrap()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs programs/heap_leak.rb (copied into `dir`, so allocation sites name that copy) with
/// `entries` leaked per round: it writes `dir`/1.json, 2.json and 3.json. Returns the copy.
pub fn write_leak_dumps(dir: &Path, entries: u64) -> PathBuf {
    let program = dir.join("heap_leak.rb");
    std::fs::copy(
        repo_root().join("crates/rbscope/tests/programs/heap_leak.rb"),
        &program,
    )
    .unwrap();
    let out = Command::new("ruby")
        .arg(&program)
        .arg(dir)
        .arg(entries.to_string())
        .env_remove("RUBYOPT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "dumped");
    program
}

/// The main thread's entry of an `rbscope stacks --json` report, if it has one.
pub fn main_thread(report: &J) -> Option<&J> {
    report["threads"]
        .as_array()?
        .iter()
        .find(|t| t["main"] == true)
}

/// A running `rbscope ui` on a port it picked.
pub struct Ui {
    pub child: Child,
    pub port: u16,
    /// The URL it printed (with the token when there is one).
    pub url: String,
}

pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> J {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Ui {
    pub fn start(store: &Path, args: &[&str], files: &[&Path]) -> Ui {
        let mut child = Command::new(cli())
            .args(["ui", "--listen", "127.0.0.1:0"])
            .args(args)
            .args(files)
            .env("RBSCOPE_STORE", store)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // "rbscope ui: open http://127.0.0.1:PORT/[?token=T]"
        let url = line
            .trim()
            .strip_prefix("rbscope ui: open ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let port = url
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        std::thread::spawn(move || for _ in out.lines() {});
        Ui { child, port, url }
    }

    pub fn request(&self, path: &str, headers: &str) -> Resp {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n{headers}\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Resp {
            status: head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request(path, "Host: 127.0.0.1\r\n")
    }

    /// GET a heap endpoint, waiting through its 202 answers (the analysis running).
    pub fn ready(&self, path: &str) -> Resp {
        let started = Instant::now();
        loop {
            let r = self.get(path);
            if r.status != 202 {
                return r;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{path} still analysing"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
