//! The security pass and hostile input, on real Ruby processes with the agent and the real CLI:
//! another uid reaching the socket is refused by the agent itself; a symlink or directory
//! planted at the socket, or a runtime directory that is a symlink, a file, open to others or
//! someone else's, is never used; files and directories rbscope makes are private whatever the
//! umask; no output is written through a planted symlink; eval is off unless the app turns it
//! on (however the agent was started); redaction of every documented name and pattern, nested
//! in hashes, arrays and structs, and in Rails params; unsigned, re-signed or swapped snapshots
//! are refused; a signed snapshot full of code is restored without running any of it; and the
//! CLI given hostile stores, dumps, cores, keys and a hostile "agent" on the socket answers with
//! one line and a non-zero exit, in bounded time, never a panic.

mod common;
use common::*;
use rbscope_proto::{
    read_frame, write_frame, AgentMessage, AgentStatus, ClientMessage, EvalResult, HeapCensus,
    HeapDumpResult, Hello, MemoryReport, TraceStarted, TraceSummary, Welcome, PROTOCOL_VERSION,
};
use serde_json::{json, Value as J};
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The permission bits of `p` itself (a symlink is not followed).
fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

fn symlink(target: &Path, at: &Path) {
    let _ = fs::remove_file(at);
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// A symbolic link at `at` to `target`, made by another user (uid 65534), as one planted in a
/// shared directory would be.
fn planted_symlink(target: &Path, at: &Path) {
    symlink(target, at);
    std::os::unix::fs::lchown(at, Some(65534), Some(65534)).unwrap();
}

/// Runs `cmd` with umask 000, so that any mode not chosen on purpose would show.
fn umask0(cmd: &mut Command) -> &mut Command {
    // SAFETY: umask is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        })
    }
}

/// Runs `cmd` (stdin closed), killing it if it has not ended within `limit`: a hang fails the
/// test instead of stalling the suite.
fn bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(limit).is_err() {
            // SAFETY: killing our own child, which has not been waited for yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return true;
        }
        false
    });
    let out = child.wait_with_output().unwrap();
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "still running after {limit:?}: {cmd:?}\nstderr: {}",
        stderr(&out)
    );
    out
}

/// Like [`bounded`], with `input` on standard input.
fn bounded_with_input(cmd: &mut Command, input: &str, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(limit).is_err() {
            // SAFETY: killing our own child, which has not been waited for yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return true;
        }
        false
    });
    let out = child.wait_with_output().unwrap();
    let _ = done.send(());
    let _ = writer.join();
    assert!(
        !watchdog.join().unwrap(),
        "still running after {limit:?}: {cmd:?}\nstderr: {}",
        stderr(&out)
    );
    out
}

/// No panic and no backtrace, whatever the outcome.
fn no_panic(out: &Output, what: &str) {
    let err = stderr(out);
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!err.contains(bad), "{what}: {err}");
    }
    assert!(
        out.status.code().is_some(),
        "{what}: ended by a signal ({:?}), stderr: {err}",
        out.status
    );
}

/// A failure as the CLI must report one: exit 1, nothing on stdout, one line on stderr that
/// starts with `rbscope: ` and contains `needle`. Returns the line.
fn one_line_failure(out: &Output, what: &str, needle: &str) -> String {
    no_panic(out, what);
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(
        out.stdout.is_empty(),
        "{what}: stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "{what}: one line expected: {err:?}");
    assert!(err.ends_with('\n'), "{what}: {err:?}");
    assert!(err.starts_with("rbscope: "), "{what}: {err}");
    assert!(
        !err.trim_end().chars().any(char::is_control),
        "{what}: control characters in {err:?}"
    );
    assert!(err.contains(needle), "{what}: expected {needle:?} in {err}");
    err
}

/// Either it worked, or it failed as the CLI must fail.
fn works_or_one_line(out: &Output, what: &str) {
    if out.status.success() {
        no_panic(out, what);
    } else {
        one_line_failure(out, what, "");
    }
}

/// A Ruby program that prints `pid N`, waits for a line on stdin before it starts the agent,
/// then answers each further line with `alive LINE`. Killed on drop.
struct Gated {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    pid: u32,
}

const GATED: &str = r#"$stdout.sync = true
puts "pid #{Process.pid}"
$stdin.gets
require "rbscope"
Rbscope.start
puts "socket #{Rbscope::Native.socket_path.inspect} #{Rbscope::Native.warnings.join(' | ')}"
while (line = $stdin.gets)
  puts "alive #{line.strip}"
end
"#;

impl Gated {
    fn start(sb: &Sandbox) -> Gated {
        let script = sb.write("gated.rb", GATED);
        let mut child = sb
            .ruby(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let line = read_line(&mut out);
        let pid = line.strip_prefix("pid ").unwrap().parse().unwrap();
        Gated {
            child,
            stdin,
            out,
            pid,
        }
    }

    /// Starts the agent; returns what follows `socket `.
    fn go(&mut self) -> String {
        writeln!(self.stdin, "go").unwrap();
        let line = read_line(&mut self.out);
        line.strip_prefix("socket ").unwrap().to_string()
    }

    fn alive(&mut self) {
        writeln!(self.stdin, "ping").unwrap();
        assert_eq!(read_line(&mut self.out), "alive ping");
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    assert!(r.read_line(&mut line).unwrap() > 0, "the program ended");
    line.trim_end().to_string()
}

fn hello_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    write_frame(
        &mut v,
        &ClientMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: "test".into(),
        }),
    )
    .unwrap();
    v
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Other local users and the control socket

/// `tests/trace.rs` (`another_user_is_refused`) shows that the CLI refuses and that the
/// socket's directory keeps uid 65534 out. Here every permission on the way is opened (as a
/// careless administrator might), so only the agent's own peer check is left: uid 65534
/// connects and says hello, and gets the connection closed without a byte, while the app's
/// own user gets the agent's welcome through the same path.
#[test]
fn another_uid_that_reaches_the_socket_is_refused_by_the_agent() {
    let app = Program::start("traced.rb", &[]);
    let base = app.sb.dir.path();
    let sock = base.join(format!("run/rbscope/{}.sock", app.pid));
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(&base.join("run/rbscope")), 0o700);
    for dir in [
        base.to_path_buf(),
        base.join("run"),
        base.join("run/rbscope"),
    ] {
        chmod(&dir, 0o711);
    }
    chmod(&sock, 0o666);
    // (A refused connection is closed at once, the hello unread: the client sees a reset, a
    // broken pipe or an end of file; all of them are zero bytes of answer.)
    let script = format!(
        "require 'socket'; s = UNIXSocket.new({:?}); \
         r = begin; s.write([{:?}].pack('H*')); s.close_write; s.read.to_s; rescue SystemCallError; ''; end; \
         puts r.bytesize",
        sock.display().to_string(),
        hex(&hello_bytes())
    );
    let as_user = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(args)
            .args([ruby_any_user_can_run(), "-e", &script])
            .env_remove("RUBYOPT")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    // The app's own user (root here) is answered: the path and the bytes are right.
    assert!(as_user(&["--"]) > 0);
    // uid 65534 connects (the file system lets it now) and gets nothing at all.
    let before = refused_count(&app.pid.to_string());
    assert_eq!(
        as_user(&["--reuid=65534", "--regid=65534", "--clear-groups", "--"]),
        0
    );
    assert_eq!(refused_count(&app.pid.to_string()), before + 1);
}

/// The agent's count of refused control connections, through `rbscope doctor -p`.
fn refused_count(pid: &str) -> u64 {
    let out = Command::new(cli())
        .args(["doctor", "-p", pid])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("control_refused"))
        .unwrap_or_else(|| panic!("{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Whatever sits at the socket's path when the agent starts is removed as an entry, never
/// followed: a symlink to a file (the file is untouched), a dangling symlink (nothing appears
/// where it points). A directory there cannot be removed: the agent runs without a socket,
/// says why, and the app goes on.
#[test]
fn a_symlink_or_directory_planted_at_the_socket_is_never_followed() {
    let sb = Sandbox::new();
    let run = sb.dir.path().join("run/rbscope");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&run)
        .unwrap();
    let victim = sb.write("victim.txt", "keep me");
    chmod(&victim, 0o644);
    let nowhere = sb.dir.path().join("nowhere");

    for target in [&victim, &nowhere] {
        let mut app = Gated::start(&sb);
        let sock = run.join(format!("{}.sock", app.pid));
        symlink(target, &sock);
        let said = app.go();
        assert_eq!(said.trim(), format!("{:?}", sock.display().to_string()));
        let meta = fs::symlink_metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket(), "{:?}", meta.file_type());
        assert_eq!(mode(&sock), 0o600);
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(mode(&victim), 0o644);
        assert!(fs::symlink_metadata(&nowhere).is_err());
        // And it is the agent that answers there.
        let out = Command::new(cli())
            .args(["stacks", "-p", &app.pid.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("through its agent"));
        app.alive();
    }

    let mut app = Gated::start(&sb);
    let sock = run.join(format!("{}.sock", app.pid));
    fs::create_dir(&sock).unwrap();
    fs::write(sock.join("inside"), "keep me too").unwrap();
    let said = app.go();
    assert!(
        said.starts_with("nil control socket disabled: cannot remove stale"),
        "{said}"
    );
    assert_eq!(
        fs::read_to_string(sock.join("inside")).unwrap(),
        "keep me too"
    );
    app.alive();
}

/// The runtime directory (`$XDG_RUNTIME_DIR/rbscope`) is used only when it is a real directory
/// of the app's user, private to it: a symlink (even to such a directory), a file, a directory
/// open to others, or another user's, is refused with a warning; nothing is created through it,
/// and the app runs on.
#[test]
fn the_runtime_directory_must_be_a_private_directory_of_the_apps_user() {
    let program = "require \"rbscope\"\nRbscope.start\n\
                   puts Rbscope::Native.socket_path.inspect, Rbscope::Native.warnings.join(' | '), 'alive'\n";
    let run = |sb: &Sandbox| -> (String, String) {
        let script = sb.write("app.rb", program);
        let out = sb.ruby(&script).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[2], "alive");
        (lines[0].to_string(), lines[1].to_string())
    };
    let plant = |setup: &dyn Fn(&Path, &Path)| -> (Sandbox, String, String) {
        let sb = Sandbox::new();
        let parent = sb.dir.path().join("run");
        fs::DirBuilder::new().mode(0o700).create(&parent).unwrap();
        setup(&parent.join("rbscope"), sb.dir.path());
        let (socket, warnings) = run(&sb);
        (sb, socket, warnings)
    };

    // A symlink to a private directory of ours: still refused, nothing created there.
    let (sb, socket, warnings) = plant(&|dir, base| {
        let elsewhere = base.join("elsewhere");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&elsewhere)
            .unwrap();
        symlink(&elsewhere, dir);
    });
    assert_eq!(socket, "nil");
    assert!(
        warnings.contains("is not a directory (a symlink or file is in the way)"),
        "{warnings}"
    );
    assert_eq!(
        fs::read_dir(sb.dir.path().join("elsewhere"))
            .unwrap()
            .count(),
        0
    );

    let (_sb, socket, warnings) = plant(&|dir, _| fs::write(dir, "a file").unwrap());
    assert_eq!(socket, "nil");
    assert!(warnings.contains("is not a directory"), "{warnings}");

    let (sb, socket, warnings) = plant(&|dir, _| {
        fs::create_dir(dir).unwrap();
        chmod(dir, 0o755);
    });
    assert_eq!(socket, "nil");
    assert!(
        warnings.contains("is open to other users (mode 755)"),
        "{warnings}"
    );
    assert_eq!(
        fs::read_dir(sb.dir.path().join("run/rbscope"))
            .unwrap()
            .count(),
        0
    );

    let (_sb, socket, warnings) = plant(&|dir, _| {
        fs::create_dir(dir).unwrap();
        chmod(dir, 0o700);
        std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    });
    assert_eq!(socket, "nil");
    assert!(
        warnings.contains("belongs to uid 65534, not to this process's uid 0"),
        "{warnings}"
    );

    // Where nothing is in the way, the agent makes the directory private and listens.
    let sb = Sandbox::new();
    let (socket, warnings) = run(&sb);
    assert!(socket.ends_with(".sock\""), "{socket}");
    assert_eq!(warnings, "");
    assert_eq!(mode(&sb.dir.path().join("run/rbscope")), 0o700);
}

// ---------------------------------------------------------------------------------------------
// Files rbscope writes

/// A program that starts the agent with eval allowed (for `rbscope console`), says `ready`,
/// then on `report` stores a snapshot and answers `reported`. Started with umask 000.
const WRITER: &str = r#"require "rbscope"
Rbscope.start(allow_eval: true)
class Work
  def go = 1
end
$stdout.sync = true
puts "ready"
while (line = $stdin.gets)
  case line.strip
  when "report"
    Rbscope.report(RuntimeError.new("stored"))
    Rbscope.flush
    puts "reported"
  end
end
"#;

struct Writer {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    pid: String,
}

impl Writer {
    fn start(sb: &Sandbox, store: &Path, runtime: &Path) -> Writer {
        let script = sb.write("writer.rb", WRITER);
        let mut cmd = sb.ruby(&script);
        umask0(&mut cmd)
            .env("RBSCOPE_STORE", store)
            .env("XDG_RUNTIME_DIR", runtime)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        assert_eq!(read_line(&mut out), "ready");
        let pid = child.id().to_string();
        Writer {
            child,
            stdin,
            out,
            pid,
        }
    }

    fn report(&mut self) {
        writeln!(self.stdin, "report").unwrap();
        assert_eq!(read_line(&mut self.out), "reported");
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small heap dump (the shared Ruby 3.2 format fixture).
fn small_dump() -> PathBuf {
    repo_root().join("crates/rbscope-heap/tests/fixtures/ruby-3.2.jsonl")
}

fn cli_umask0(sb: &Sandbox) -> Command {
    let mut c = sb.cli();
    umask0(&mut c);
    c
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", stderr(&out));
    no_panic(&out, what);
    out
}

/// Every file rbscope makes is 0600 and every directory it makes 0700, with umask 000 in both
/// the app and the CLI: the store, SQLite's side files, the signing key and the directories
/// made for them; the runtime directory, the socket and a live heap dump (default place and
/// -o); trace and profile outputs, the heap flame graph, heap imports, a fleet key, and the
/// console's history with its directory.
#[test]
fn files_and_directories_rbscope_makes_are_private_whatever_the_umask() {
    let sb = Sandbox::new();
    let base = sb.dir.path();
    let store = base.join("data/deeper/snapshots.db");
    let runtime = base.join("xdg/run");
    let mut app = Writer::start(&sb, &store, &runtime);
    app.report();
    let key = rbscope_store::key_path(&store);
    let mut want: Vec<(PathBuf, u32)> = vec![
        (store.clone(), 0o600),
        (key, 0o600),
        (base.join("data"), 0o700),
        (base.join("data/deeper"), 0o700),
        (base.join("xdg"), 0o700),
        (runtime.clone(), 0o700),
        (runtime.join("rbscope"), 0o700),
        (runtime.join(format!("rbscope/{}.sock", app.pid)), 0o600),
    ];
    for side in ["-wal", "-shm"] {
        let mut p = store.clone().into_os_string();
        p.push(side);
        want.push((PathBuf::from(p), 0o600));
    }

    let pid = app.pid.clone();
    let out = ok(
        cli_umask0(&sb)
            .args(["heap", "dump", "-p", &pid, "--json"])
            .output()
            .unwrap(),
        "heap dump",
    );
    let dumped: J = serde_json::from_slice(&out.stdout).unwrap();
    let default_dump = PathBuf::from(dumped["path"].as_str().unwrap());
    assert!(
        default_dump.starts_with(runtime.join("rbscope")),
        "{dumped}"
    );
    want.push((default_dump, 0o600));
    let dump = base.join("live.json");
    ok(
        cli_umask0(&sb)
            .args(["heap", "dump", "-p", &pid, "-o"])
            .arg(&dump)
            .output()
            .unwrap(),
        "heap dump -o",
    );
    want.push((dump, 0o600));

    let trace = base.join("trace.txt");
    ok(
        cli_umask0(&sb)
            .args(["trace", "-p", &pid, "-m", "Work#go", "--for", "100ms", "-o"])
            .arg(&trace)
            .output()
            .unwrap(),
        "trace -o",
    );
    want.push((trace, 0o600));
    for format in ["collapsed", "flamegraph", "speedscope"] {
        let profile = base.join(format!("profile.{format}"));
        ok(
            cli_umask0(&sb)
                .args(["record", "-p", &pid, "--duration", "100ms", "--rate", "200"])
                .args(["--format", format, "-o"])
                .arg(&profile)
                .output()
                .unwrap(),
            "record -o",
        );
        want.push((profile, 0o600));
    }
    let svg = base.join("top.svg");
    ok(
        cli_umask0(&sb)
            .args(["heap", "top"])
            .arg(small_dump())
            .arg("--svg")
            .arg(&svg)
            .output()
            .unwrap(),
        "heap top --svg",
    );
    want.push((svg, 0o600));
    let db = base.join("heap.db");
    ok(
        cli_umask0(&sb)
            .args(["heap", "import"])
            .arg(small_dump())
            .arg("--sqlite")
            .arg(&db)
            .output()
            .unwrap(),
        "heap import --sqlite",
    );
    want.push((db, 0o600));
    let tables = base.join("tables/of/heap");
    ok(
        cli_umask0(&sb)
            .args(["heap", "import"])
            .arg(small_dump())
            .arg("--parquet")
            .arg(&tables)
            .output()
            .unwrap(),
        "heap import --parquet",
    );
    for d in ["tables", "tables/of", "tables/of/heap"] {
        want.push((base.join(d), 0o700));
    }
    for f in ["objects", "refs", "roots"] {
        want.push((tables.join(format!("{f}.parquet")), 0o600));
    }
    let fleet = base.join("fleet.key");
    ok(
        cli_umask0(&sb)
            .args(["key", "new"])
            .arg(&fleet)
            .output()
            .unwrap(),
        "key new",
    );
    want.push((fleet, 0o600));
    let data_home = base.join("home-data");
    let out = bounded_with_input(
        cli_umask0(&sb)
            .args(["console", "-p", &pid])
            .env("XDG_DATA_HOME", &data_home),
        "6 * 7\n",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("=> 42"));
    want.push((data_home.clone(), 0o700));
    want.push((data_home.join("rbscope"), 0o700));
    want.push((data_home.join("rbscope/console_history"), 0o600));

    let wrong: Vec<String> = want
        .iter()
        .filter(|(p, m)| mode(p) != *m)
        .map(|(p, m)| format!("{} is {:o}, not {m:o}", p.display(), mode(p)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A symlink another user planted at an output path (to a file, or dangling) is never written
/// through: the command fails with one line, the file it points to is unchanged, and nothing
/// appears where a dangling one points. A link of one's own is followed. (`heap dump -o`,
/// which refuses any existing name: tests/heap_live.rs.)
#[test]
fn no_output_is_written_through_a_planted_symlink() {
    let sb = Sandbox::new();
    let base = sb.dir.path();
    let mut app = Writer::start(&sb, &sb.store(), &base.join("run"));
    app.report();
    let pid = app.pid.clone();
    let victim = sb.write("victim.txt", "keep me");
    chmod(&victim, 0o644);
    let nowhere = base.join("nowhere.txt");

    let check = |what: &str, planted: &Path, args: &[OsString], needle: &str| {
        for target in [&victim, &nowhere] {
            planted_symlink(target, planted);
            let out = bounded(sb.cli().args(args), Duration::from_secs(30));
            one_line_failure(&out, what, needle);
            assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me", "{what}");
            assert_eq!(mode(&victim), 0o644, "{what}");
            assert!(fs::symlink_metadata(&nowhere).is_err(), "{what}");
            assert!(
                fs::symlink_metadata(planted)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{what}"
            );
        }
        let _ = fs::remove_file(planted);
    };
    let dump = small_dump().into_os_string();
    let out = base.join("out.txt");
    let o = out.clone().into_os_string();
    let s = |x: &str| OsString::from(x);

    let args = [
        s("trace"),
        s("-p"),
        s(&pid),
        s("-m"),
        s("Work#go"),
        s("--for"),
        s("100ms"),
        s("-o"),
        o.clone(),
    ];
    check("trace -o", &out, &args, "symbolic link");
    let args = [
        s("record"),
        s("-p"),
        s(&pid),
        s("--duration"),
        s("100ms"),
        s("-o"),
        o.clone(),
    ];
    check("record -o", &out, &args, "symbolic link");
    let args = [s("heap"), s("top"), dump.clone(), s("--svg"), o.clone()];
    check("heap top --svg", &out, &args, "symbolic link");
    let args = [
        s("heap"),
        s("import"),
        dump.clone(),
        s("--sqlite"),
        o.clone(),
    ];
    check("heap import --sqlite", &out, &args, "exists");
    let tables = base.join("tables");
    fs::create_dir(&tables).unwrap();
    let args = [
        s("heap"),
        s("import"),
        dump.clone(),
        s("--parquet"),
        tables.clone().into_os_string(),
    ];
    check(
        "heap import --parquet",
        &tables.join("refs.parquet"),
        &args,
        "exists",
    );
    assert_eq!(fs::read_dir(&tables).unwrap().count(), 0, "nothing left");
    let args = [s("key"), s("new"), o.clone()];
    check("key new", &out, &args, "");

    // A link of one's own (root's here) is followed, as `-o /dev/stdout` is.
    let mine = base.join("mine.txt");
    symlink(&mine, &out);
    let args = [s("heap"), s("top"), dump.clone(), s("--svg"), o.clone()];
    let done = bounded(sb.cli().args(args), Duration::from_secs(30));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(fs::read_to_string(&mine).unwrap().contains("<svg"));
    assert_eq!(mode(&mine), 0o600);
    fs::remove_file(&out).unwrap();

    // The console's history: the evaluation works, the history is not written through the
    // link (a note says so), and the linked file is unchanged.
    let data_home = base.join("data");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_home.join("rbscope"))
        .unwrap();
    let history = data_home.join("rbscope/console_history");
    for target in [&victim, &nowhere] {
        planted_symlink(target, &history);
        let out = bounded_with_input(
            sb.cli()
                .args(["console", "-p", &pid])
                .env("XDG_DATA_HOME", &data_home),
            "6 * 7\n",
            Duration::from_secs(30),
        );
        no_panic(&out, "console");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("=> 42"));
        assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(mode(&victim), 0o644);
        assert!(fs::symlink_metadata(&nowhere).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Eval

/// Eval is off unless the app turns it on, however the agent came to run: `Rbscope.start`
/// with no options (also tested in tests/trace.rs), `rbscope run` (autostart through RUBYOPT),
/// and `rbscope inject` into a process that never loaded rbscope. The CLI's own environment
/// cannot turn it on, and a console is refused the same way.
#[test]
fn eval_is_off_unless_the_app_turns_it_on() {
    let refused = |pid: &str, what: &str| {
        let out = bounded(
            Command::new(cli())
                .args(["eval", "-p", pid, "File.write('pwned', 'x')"])
                .env("RBSCOPE_ALLOW_EVAL", "1"),
            Duration::from_secs(30),
        );
        one_line_failure(&out, what, "eval is off in this process");
        let out = bounded(
            Command::new(cli()).args(["console", "-p", pid]),
            Duration::from_secs(30),
        );
        one_line_failure(&out, what, "eval is off in this process");
    };
    let sb = Sandbox::new();
    let script = sb.write(
        "plain.rb",
        "$stdout.sync = true\nputs \"ready #{defined?(Rbscope::Native) ? 'agent' : 'none'}\"\nsleep\n",
    );
    let spawn = |cmd: &mut Command| -> Child {
        let mut child = cmd
            .current_dir(sb.dir.path())
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .env("RBSCOPE_STORE", sb.store())
            .env("RBSCOPE_RUBY_LIB", gem_lib())
            .env_remove("RUBYOPT")
            .env_remove("RBSCOPE_ALLOW_EVAL")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let line = read_line(&mut out);
        assert!(line.starts_with("ready"), "{line}");
        std::thread::spawn(move || for _ in out.lines() {});
        child
    };

    // Under `rbscope run`: the agent starts with the app's defaults.
    // (`rbscope run` becomes the command: same process.)
    let run = KillOnDrop(spawn(
        Command::new(cli()).args(["run", "--", "ruby"]).arg(&script),
    ));
    refused(&run.0.id().to_string(), "rbscope run");
    drop(run);

    // Injected into a plain process.
    let plain = KillOnDrop(spawn(Command::new("ruby").arg(&script)));
    let pid = plain.0.id().to_string();
    let out = bounded(
        Command::new(cli())
            .args(["inject", "-p", &pid])
            .env("RBSCOPE_RUBY_LIB", gem_lib()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    refused(&pid, "rbscope inject");
    assert!(!sb.dir.path().join("pwned").exists());
}

// ---------------------------------------------------------------------------------------------
// Redaction

/// Every name README's "Secrets" section and redact.rs list (words, pairs, fragments, in any
/// case or style), as hash keys (strings and symbols) nested in hashes in arrays in hashes, as
/// struct members and instance variables of nested objects; every value pattern (secret
/// prefixes, PEM keys, card numbers with spaces or dashes) nested in arrays; names given with
/// `redact_names`. What is not secret stays visible, so the check can fail.
#[test]
fn redaction_covers_every_documented_name_and_pattern_at_any_depth() {
    const NAMES: &[&str] = &[
        // words
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "secrets",
        "token",
        "tokens",
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "cookies",
        "session",
        "sessions",
        "credential",
        "credentials",
        "cvv",
        "cvc",
        "ssn",
        "otp",
        "pin",
        "salt",
        // pairs
        "api_key",
        "private_key",
        "access_key",
        "secret_key",
        "signing_key",
        "encryption_key",
        "master_key",
        "card_number",
        "credit_card",
        "cc_number",
        "account_number",
        // styles and fragments
        "userPassword",
        "X-Api-Key",
        "apiKey",
        "HTTP_AUTHORIZATION",
        "HTTP_COOKIE",
        "accesstoken",
        "mysessionid",
        "dbcredentials",
        "Set-Cookie",
        "reset.token",
        "user:password",
        "PIN",
        "Bearer",
        // configured with redact_names
        "customer_iban",
    ];
    const VALUES: &[&str] = &[
        "sk_live_0123456789",
        "sk_test_0123456789",
        "rk_live_0123456789",
        "xoxb-0123-4567",
        "xoxp-0123-4567",
        "ghp_0123456789abcdef",
        "github_pat_0123456789",
        "AKIA0123456789ABCD",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
        "-----BEGIN PRIVATE KEY-----\nMIIE",
        "-----BEGIN EC PRIVATE KEY-----\nMHc",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl",
        "4111111111111111",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "378282246310005",
    ];
    const PLAIN: &[&str] = &[
        "author", "keyboard", "total", "pinch", "key", "user", "monkey",
    ];
    let mut pairs = String::new();
    for (i, n) in NAMES.iter().enumerate() {
        pairs += &format!("  {n:?} => \"v{i}\" + \"-secret\",\n");
    }
    for (i, n) in PLAIN.iter().enumerate() {
        pairs += &format!("  {n:?} => \"p{i}\" + \"-shown\",\n");
    }
    // Split in the source, so that the frame's source lines (stored too) do not hold them.
    let values: Vec<String> = VALUES
        .iter()
        .map(|v| {
            let (a, b) = v.split_at(v.len() / 2);
            format!("{a:?} + {b:?}")
        })
        .collect();
    let program = format!(
        r#"require "rbscope"
Rbscope.start(redact_names: ["iban"])
Cred = Struct.new(:user, :password, :api_token)
class Account
  def initialize
    @session_id = "s-1" + "-secret"
    @profile = {{ "user" => {{ "password" => "nested" + "-secret", "name" => "ann" }} }}
    @cred = Cred.new("bob", "struct" + "-secret", "tok" + "-secret")
  end
end
class Holder
  def initialize(inner) = @inner = inner
end
ALL = {{
{pairs}}}
def go(form)
  params = {{ "user" => {{ "password" => "pw" + "-secret", "name" => "ann", "tokens" => ["t1" + "-secret"] }} }}
  rows = [{{ "api_key" => "ak1" + "-secret", "id" => 1 }}, {{ password: "sym" + "-secret", id: 2 }}]
  deep = {{ a: [{{ b: {{ c: [ALL] }} }}] }}
  values = {{ list: [[{values}]] }}
  holder = Holder.new(Account.new)
  raise "denied"
end
go(1)
"#,
        values = values.join(", ")
    );
    let sb = Sandbox::new();
    let script = sb.write("secrets.rb", &program);
    let out = sb.ruby(&script).output().unwrap();
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    let id = snap["id"].as_str().unwrap();

    // Every string in the snapshot that survived, and every redacted value's reason.
    let mut kept = Vec::new();
    for o in snap["objects"].as_array().unwrap() {
        if let Some(v) = o["value"].as_str() {
            kept.push(v.to_string());
        }
    }
    let text = snap.to_string();
    let shown = sb.show_text(id);
    for (i, _) in NAMES.iter().enumerate() {
        let v = format!("v{i}-secret");
        assert!(!kept.contains(&v), "{} ({v}) was kept", NAMES[i]);
        assert!(!shown.contains(&v), "{} shown", NAMES[i]);
    }
    for (i, n) in PLAIN.iter().enumerate() {
        let v = format!("p{i}-shown");
        assert!(kept.contains(&v), "{n} ({v}) was redacted: {text}");
    }
    for v in VALUES {
        assert!(!kept.iter().any(|k| k == v), "{v:?} was kept");
        let first_line = v.lines().next().unwrap();
        assert!(!shown.contains(first_line), "{v:?} shown: {shown}");
    }
    for marker in [
        "pw-secret",
        "t1-secret",
        "ak1-secret",
        "sym-secret",
        "nested-secret",
        "struct-secret",
        "tok-secret",
        "s-1-secret",
    ] {
        assert!(!text.contains(marker), "{marker} was kept");
        assert!(!shown.contains(marker), "{marker} shown");
    }
    assert!(kept.contains(&"ann".to_string()) && kept.contains(&"bob".to_string()));
    // Each redaction is counted, and `show` says so.
    let redacted = snap["stats"]["redacted"].as_u64().unwrap();
    let expected = NAMES.len() + VALUES.len() + 8;
    assert_eq!(redacted as usize, expected, "{text}");
    assert!(
        shown.contains(&format!("{expected} values redacted")),
        "{shown}"
    );
    // The reasons are stored in place of the values.
    assert!(text.contains("\"reason\":\"configured name\""), "{text}");
    assert!(text.contains("\"reason\":\"card number\""), "{text}");
    assert!(text.contains("\"reason\":\"secret format\""), "{text}");
}

/// A real Rails 6.1 app (Debian's packages): the same signup, with `user[password]`,
/// `user[iban]` (in `filter_parameters`), `user[pin_code]` and a role, sent as a form, as JSON
/// and as a query string, fails with a 500 each time, after saving a record whose
/// `birth_date` is in `filter_attributes`. No snapshot holds any of those values: not in
/// `ActionController::Parameters`, not in the record's attributes, and not in the request's
/// raw body, `QUERY_STRING` or `REQUEST_URI`; what is not secret is there. Eval is off under
/// the Railtie too unless configured.
#[test]
fn rails_params_filter_parameters_and_filter_attributes_are_redacted() {
    if !debian_gems_available("Rails 6.1") {
        return;
    }
    let sb = Sandbox::new();
    fs::create_dir_all(sb.dir.path().join("config")).unwrap();
    sb.write(
        "config/database.yml",
        "development:\n  adapter: sqlite3\n  database: \":memory:\"\n",
    );
    sb.write(
        "config/environment.rb",
        r#"
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "rbscope/rails"

class SecApp < Rails::Application
  config.root = File.expand_path("..", __dir__)
  config.eager_load = false
  config.logger = Logger.new(nil)
  config.secret_key_base = "x" * 64
  config.hosts.clear
  config.filter_parameters += [:iban]
  config.rbscope.log = false
end
ActiveRecord::Base.filter_attributes += [:birth_date]
Rails.application.initialize!
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table(:people) { |t| t.string :name; t.string :birth_date }
end
class Person < ActiveRecord::Base; end

class SignupsController < ActionController::Base
  def create
    user = params.require(:user)
    person = Person.create!(name: user[:name], birth_date: "bd" + "-secret")
    raise ArgumentError, "signup failed"
  end
end

Rails.application.routes.draw do
  post "/signups" => "signups#create"
  get "/signups" => "signups#create"
end
"#,
    );
    let script = r#"
app = Rack::MockRequest.new(Rails.application)
user = { name: "ann", password: "pw" + "-secret", iban: "DE" + "-secret", pin_code: "pc" + "-secret", role: "admin" }
statuses = [
  app.post("/signups", params: { user: user }).status,
  app.post("/signups", input: JSON.generate(user: user), "CONTENT_TYPE" => "application/json").status,
  app.get("/signups?" + Rack::Utils.build_nested_query(user: user)).status,
]
Rbscope.flush
$stdout.sync = true
puts "status #{statuses.join(",")}"
$stdin.gets
"#;
    let child = Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .args(["-r./config/environment", "-e", script])
        .current_dir(sb.dir.path())
        .env("RBSCOPE_STORE", sb.store())
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .env_remove("RUBYOPT")
        .env_remove("RBSCOPE_ALLOW_EVAL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut app = KillOnDrop(child);
    let mut lines = BufReader::new(app.0.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    if first.trim() != "status 500,500,500" {
        let _ = app.0.kill();
        let mut err = String::new();
        let _ = app.0.stderr.take().unwrap().read_to_string(&mut err);
        panic!("{first:?}: {err}");
    }
    // Eval is off under the Railtie's defaults.
    let out = bounded(
        Command::new(cli()).args(["eval", "-p", &app.0.id().to_string(), "1"]),
        Duration::from_secs(30),
    );
    one_line_failure(&out, "eval in Rails", "eval is off in this process");

    let rows = sb.list();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let secrets = ["pw-secret", "DE-secret", "pc-secret", "bd-secret"];
    for row in rows {
        let id = row["id"].as_str().unwrap();
        let snap = sb.show(id);
        let s = Snap(&snap);
        let f = s.frame("SignupsController#create");
        let text = snap.to_string();
        let shown = sb.show_text(id);
        for secret in secrets {
            let at = text
                .find(secret)
                .map(|i| &text[i.saturating_sub(300)..(i + 100).min(text.len())]);
            assert!(at.is_none(), "{secret} kept: {at:?}");
            assert!(!shown.contains(secret), "{secret} shown");
        }
        // The params object is there, with what is not secret.
        let user = s.obj(s.local(f, "user"));
        assert_eq!(user["class"], "ActionController::Parameters", "{user}");
        assert!(text.contains("\"value\":\"admin\""), "{text}");
        assert!(text.contains("\"value\":\"ann\""), "{text}");
        let person = s.obj(s.local(f, "person"));
        assert_eq!(person["class"], "Person");
        assert!(text.contains("\"reason\":\"configured name\""), "{text}");
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Signed snapshots and restore

/// Two snapshots written by the app, in the CLI and in Ruby: a row whose signature was
/// removed ("is unsigned"), rows whose signatures were swapped (each a valid signature of
/// another real snapshot), a snapshot of another store signed with that store's key, and a
/// body changed after signing, are all refused; `--trust` restores them anyway.
#[test]
fn unsigned_swapped_foreign_and_altered_snapshots_are_refused() {
    let sb = Sandbox::new();
    for name in ["one", "two"] {
        let out = sb.run_started(
            &format!("{name}.rb"),
            &format!("def {name}(x) = raise(\"{name}\")\n{name}(1)\n"),
        );
        assert!(!out.status.success());
    }
    let ids: Vec<String> = sb
        .list()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let other = Sandbox::new();
    let out = other.run_started("three.rb", "def three(x) = raise(\"three\")\nthree(1)\n");
    assert!(!out.status.success());
    let foreign = other.list()[0]["id"].as_str().unwrap().to_string();

    let db = rusqlite::Connection::open(sb.store()).unwrap();
    let theirs = rusqlite::Connection::open(other.store()).unwrap();
    let row: (Vec<u8>, Vec<u8>, String, String) = theirs
        .query_row(
            "SELECT body, signature, message, top_frame FROM rbscope_snapshots",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    db.execute(
        "INSERT INTO rbscope_snapshots SELECT ?1, reported_at_ms, exception_class, ?2, ?3, \
         fingerprint, hostname, pid, ?4, ?5, ?6 FROM rbscope_snapshots LIMIT 1",
        rusqlite::params![foreign, row.2, row.3, row.0.len() as i64, row.0, row.1],
    )
    .unwrap();
    let sig = |id: &str| -> Vec<u8> {
        db.query_row(
            "SELECT signature FROM rbscope_snapshots WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (s0, s1) = (sig(&ids[0]), sig(&ids[1]));
    db.execute(
        "UPDATE rbscope_snapshots SET signature = ?2 WHERE id = ?1",
        rusqlite::params![ids[0], s1],
    )
    .unwrap();
    db.execute(
        "UPDATE rbscope_snapshots SET signature = ?2 WHERE id = ?1",
        rusqlite::params![ids[1], s0],
    )
    .unwrap();
    // A copy of the first with its own signature back but one byte of the body changed:
    // the codec's CRC is recomputed so only the signature can tell.
    let (body, _) = stored(&db, &ids[0]);
    let mut snap = rbscope_snapshot::decode(&body).unwrap();
    snap.id = "01JZZZZZZZZZZZZZZZZZZZZZZZ".into();
    snap.exception.message = "altered".into();
    let altered = rbscope_snapshot::encode(&snap).unwrap();
    db.execute(
        "INSERT INTO rbscope_snapshots SELECT ?1, reported_at_ms, exception_class, message, \
         top_frame, fingerprint, hostname, pid, ?2, ?3, ?4 FROM rbscope_snapshots WHERE id = ?5",
        rusqlite::params![snap.id, altered.len() as i64, altered, s0, ids[0]],
    )
    .unwrap();
    let unsigned = "01JYYYYYYYYYYYYYYYYYYYYYYY";
    db.execute(
        "INSERT INTO rbscope_snapshots SELECT ?1, reported_at_ms, exception_class, message, \
         top_frame, fingerprint, hostname, pid, size, body, NULL FROM rbscope_snapshots WHERE id = ?2",
        rusqlite::params![unsigned, ids[1]],
    )
    .unwrap();
    drop(db);

    let cases = [
        (ids[0].as_str(), "does not match the store's key"),
        (ids[1].as_str(), "does not match the store's key"),
        (foreign.as_str(), "does not match the store's key"),
        (
            "01JZZZZZZZZZZZZZZZZZZZZZZZ",
            "does not match the store's key",
        ),
        (unsigned, "is unsigned"),
    ];
    for (id, says) in cases {
        let out = bounded(sb.cli().args(["restore", id]), Duration::from_secs(30));
        one_line_failure(&out, id, says);
        assert!(stderr(&out).contains("--trust"), "{}", stderr(&out));
        // Rbscope.restore in Ruby checks the same.
        let out = Command::new("ruby")
            .arg(format!("-I{}", gem_lib().display()))
            .args(["-rrbscope/restore", "-e"])
            .arg(format!(
                "begin; Rbscope.restore('{id}', console: false); puts 'restored'; rescue => e; puts e.message; end; \
                 puts Rbscope.restore('{id}', console: false, trust: true).frames.size"
            ))
            .env("RBSCOPE_STORE", sb.store())
            .env("RBSCOPE_DISABLE", "1")
            .env_remove("RUBYOPT")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains(says) && lines[0].contains("trust"),
            "{text}"
        );
        assert!(lines[1].parse::<usize>().unwrap() > 0, "{text}");
    }
    // The CLI with --trust goes on to the console.
    let out = bounded_with_input(
        sb.cli().args(["restore", unsigned, "--trust"]),
        "puts :in_the_frame\n",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("in_the_frame"));
}

fn stored(db: &rusqlite::Connection, id: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    db.query_row(
        "SELECT body, signature FROM rbscope_snapshots WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// A snapshot whose every name and string is code (class names, constant paths, a magic
/// root's path, local and instance variable names, a regexp, a date, a decimal, hash keys,
/// labels, paths, the message), encoded with the real codec and signed with the store's own
/// key, so that nothing stops it before restore: `show` prints it, `rbscope restore` opens the
/// console in its frame, and none of the code runs.
#[test]
fn a_signed_snapshot_full_of_code_restores_without_running_any() {
    use rbscope_snapshot::{
        CaptureStats, Context, ExceptionInfo, Frame, Object, ObjectKind, Snapshot, SourceExcerpt,
        Value,
    };
    let sb = Sandbox::new();
    let out = sb.run_started("real.rb", "def real(x) = raise(\"real\")\nreal(1)\n");
    assert!(!out.status.success());
    let marker = sb.dir.path().join("pwned");
    let m = marker.display();
    let evil = format!("Object.send(:system, 'touch {m}')");
    let shell = format!("`touch {m}`");
    let interp = format!("#{{system('touch {m}')}}");
    let obj = |class_name: &str, kind: ObjectKind, ivars: Vec<(String, Value)>| Object {
        class_name: class_name.to_string(),
        frozen: false,
        kind,
        ivars,
    };
    let string = |s: &str| ObjectKind::String {
        bytes: s.as_bytes().to_vec(),
        encoding: "UTF-8".into(),
        original_len: s.len() as u64,
    };
    let objects = vec![
        obj(
            &evil,
            ObjectKind::Plain,
            vec![
                ("@x".into(), Value::Ref(1)),
                (format!("@a; system('touch {m}')"), Value::Integer(1)),
                (interp.clone(), Value::Ref(1)),
            ],
        ),
        obj("String", string(&interp), vec![]),
        obj(
            &shell,
            ObjectKind::Module {
                name: Some(evil.clone()),
                is_class: true,
            },
            vec![],
        ),
        obj(
            "Object",
            ObjectKind::Magic {
                path: "Kernel.exit!".into(),
            },
            vec![],
        ),
        obj(
            "Regexp",
            ObjectKind::Regexp {
                source: interp.clone(),
                options: 0,
            },
            vec![],
        ),
        obj(
            &evil,
            ObjectKind::Struct {
                members: vec![(evil.clone(), Value::Ref(1))],
            },
            vec![],
        ),
        obj(
            &evil,
            ObjectKind::Exception {
                message: interp.clone(),
            },
            vec![],
        ),
        obj(
            "Proc",
            ObjectKind::Proc {
                lambda: true,
                arity: 0,
                source_location: Some((evil.clone(), 1)),
            },
            vec![],
        ),
        obj(
            "Method",
            ObjectKind::Method {
                owner: evil.clone(),
                name: shell.clone(),
                arity: -1,
                unbound: false,
                source_location: None,
            },
            vec![],
        ),
        obj(
            "Date",
            ObjectKind::Date {
                iso8601: interp.clone(),
            },
            vec![],
        ),
        obj(
            "BigDecimal",
            ObjectKind::BigDecimal {
                digits: shell.clone(),
            },
            vec![],
        ),
        obj(
            &shell,
            ObjectKind::Opaque {
                preview: interp.clone(),
            },
            vec![],
        ),
        obj(
            &evil,
            ObjectKind::Hash {
                entries: vec![
                    (Value::Symbol(shell.clone()), Value::Ref(1)),
                    (Value::Ref(1), Value::Ref(6)),
                ],
                original_len: 2,
                default: Some(Value::Ref(1)),
                default_proc: None,
                compare_by_identity: false,
            },
            vec![],
        ),
        obj(
            "Rational",
            ObjectKind::Rational {
                numerator: Value::Ref(1),
                denominator: Value::Ref(1),
            },
            vec![],
        ),
        obj(
            "Range",
            ObjectKind::Range {
                begin: Value::Ref(1),
                end: Value::Symbol(evil.clone()),
                exclusive: true,
            },
            vec![],
        ),
        obj(
            "Time",
            ObjectKind::Time {
                seconds: i64::MAX,
                nanoseconds: u32::MAX,
                utc_offset: i32::MIN,
                utc: false,
            },
            vec![],
        ),
        obj("String", string(&evil), vec![]),
    ];
    let locals: Vec<(String, Value)> = (0..objects.len() as u32)
        .map(|i| (format!("l{i}"), Value::Ref(i)))
        .chain([
            (format!("z; system('touch {m}')"), Value::Ref(1)),
            ("sym".into(), Value::Symbol(interp.clone())),
            ("big".into(), Value::BigInteger(shell.clone())),
        ])
        .collect();
    let snap = Snapshot {
        id: "01JXXXXXXXXXXXXXXXXXXXXXXX".into(),
        reported_at_ms: 1_700_000_000_000,
        fingerprint: evil.clone(),
        exception: ExceptionInfo {
            class_name: evil.clone(),
            message: interp.clone(),
            backtrace: vec![shell.clone()],
            causes: vec![],
        },
        frames: vec![Frame {
            depth: 0,
            label: evil.clone(),
            method_name: Some(shell.clone()),
            path: interp.clone(),
            lineno: 1,
            self_value: Value::Ref(0),
            locals,
            source: Some(SourceExcerpt {
                first_lineno: 1,
                lines: vec![format!("system('touch {m}')")],
            }),
        }],
        objects,
        context: Context {
            extra: vec![(evil.clone(), interp.clone())],
            ..Context::default()
        },
        stats: CaptureStats::default(),
        extras: Default::default(),
    };
    let body = rbscope_snapshot::encode(&snap).unwrap();
    sb.insert_signed(&snap, &body);

    let id = snap.id.as_str();
    for args in [vec!["show", id], vec!["show", id, "--json"], vec!["list"]] {
        let out = bounded(sb.cli().args(&args), Duration::from_secs(30));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        no_panic(&out, "show");
    }
    let out = bounded_with_input(
        sb.cli().args(["restore", id]),
        "puts [self.class, l0.class, l5.class, l9.class, l12.size, l16].inspect\nputs :end_of_session\n",
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains("end_of_session"), "{text}\n{}", stderr(&out));
    assert!(!marker.exists(), "code stored in the snapshot was run");
    // Also with --trust (no signature check at all) and from Ruby directly.
    let out = Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .args(["-rrbscope/restore", "-e"])
        .arg(format!(
            "r = Rbscope.restore('{id}', console: false, trust: true); f = r.frames[0]; \
             f.locals.each_value(&:inspect); puts f.self_object.inspect.size > 0"
        ))
        .env("RBSCOPE_STORE", sb.store())
        .env("RBSCOPE_DISABLE", "1")
        .env_remove("RUBYOPT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
    assert!(!marker.exists(), "code stored in the snapshot was run");
}

// ---------------------------------------------------------------------------------------------
// Hostile files

/// Every command that reads the store, given stores that are not what they claim: garbage, a
/// directory, a truncated file, another program's SQLite database, a future or unreadable
/// schema version, a table missing columns, rows whose columns hold the wrong types, and
/// snapshots whose bodies are garbage, cut short or empty. Each answer is a result or one
/// line, never a panic.
#[test]
fn hostile_stores_get_one_line_from_every_store_command() {
    let sb = Sandbox::new();
    let out = sb.run_started("one.rb", "def f(x) = raise(\"x\")\nf(1)\n");
    assert!(!out.status.success());
    let id = sb.list()[0]["id"].as_str().unwrap().to_string();
    {
        let db = rusqlite::Connection::open(sb.store()).unwrap();
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let good = fs::read(sb.store()).unwrap();
    let dir = sb.dir.path().join("stores");
    fs::create_dir(&dir).unwrap();
    let mut n = 0;
    let mut variant = |setup: &dyn Fn(&Path)| -> PathBuf {
        n += 1;
        let p = dir.join(format!("{n}.db"));
        setup(&p);
        p
    };
    let good_key = rbscope_store::key_path(&sb.store());
    let copy_then = |sql: &'static str| {
        let good = good.clone();
        let good_key = good_key.clone();
        move |p: &Path| {
            fs::write(p, &good).unwrap();
            let _ = fs::copy(&good_key, rbscope_store::key_path(p));
            rusqlite::Connection::open(p)
                .unwrap()
                .execute_batch(sql)
                .unwrap();
        }
    };
    let mut noise = Vec::with_capacity(100_000);
    let mut x: u32 = 12345;
    for _ in 0..100_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        noise.push((x >> 16) as u8);
    }
    let stores = vec![
        ("garbage", variant(&|p| fs::write(p, &noise).unwrap()), "not an rbscope store"),
        ("text", variant(&|p| fs::write(p, "hello\n".repeat(1000)).unwrap()), "not an rbscope store"),
        ("directory", variant(&|p| fs::create_dir(p).unwrap()), ""),
        ("truncated", variant(&|p| fs::write(p, &good[..good.len() / 2]).unwrap()), ""),
        ("header only", variant(&|p| fs::write(p, &good[..100]).unwrap()), ""),
        ("another program's database", variant(&|p| {
            rusqlite::Connection::open(p).unwrap().execute_batch("CREATE TABLE users (id INTEGER, name TEXT);").unwrap();
        }), "not an rbscope store"),
        ("a newer schema", variant(&copy_then("UPDATE rbscope_meta SET value = '999'")), "newer"),
        ("an unreadable schema version", variant(&copy_then("UPDATE rbscope_meta SET value = 'abc'")), ""),
        ("a table missing columns", variant(&copy_then(
            "DROP TABLE rbscope_snapshots; CREATE TABLE rbscope_snapshots (id TEXT PRIMARY KEY);",
        )), ""),
        ("columns of the wrong types", variant(&copy_then(
            "UPDATE rbscope_snapshots SET reported_at_ms = 'soon', pid = -5, size = 'big', \
             message = x'ff00fe', hostname = 12, exception_class = x'00', signature = 'text'",
        )), ""),
        ("extreme numbers", variant(&copy_then(
            "UPDATE rbscope_snapshots SET reported_at_ms = 9223372036854775807, pid = 9223372036854775807, \
             size = -9223372036854775808",
        )), ""),
        ("a garbage body", variant(&copy_then("UPDATE rbscope_snapshots SET body = randomblob(length(body))")), "cannot be read"),
        ("a cut body", variant(&copy_then("UPDATE rbscope_snapshots SET body = substr(body, 1, length(body) / 2)")), "cannot be read"),
        ("an empty body", variant(&copy_then("UPDATE rbscope_snapshots SET body = x''")), "cannot be read"),
        ("a text body", variant(&copy_then("UPDATE rbscope_snapshots SET body = 'RBSNAP'")), "cannot be read"),
    ];
    for (what, store, needle) in &stores {
        let commands: Vec<Vec<&str>> = vec![
            vec!["list"],
            vec!["list", "--json"],
            vec!["list", "--group"],
            vec!["list", "--group", "--json"],
            vec!["show", &id],
            vec!["show", &id, "--json"],
            vec!["restore", &id],
            vec!["restore", &id, "--trust"],
            vec!["purge", "--older-than", "3650d"],
        ];
        for args in commands {
            let out = bounded(
                sb.cli().args(&args).arg("--store").arg(store),
                Duration::from_secs(30),
            );
            let label = format!("{what}: {args:?}");
            if out.status.success() {
                no_panic(&out, &label);
                continue;
            }
            let line = one_line_failure(&out, &label, "");
            // A bad body is only seen by `show` and a trusted restore (restore refuses it
            // first otherwise: the signature was made for the original).
            let decodes = args[0] == "show" || args.contains(&"--trust");
            if *needle == "cannot be read" && !decodes {
                continue;
            }
            assert!(line.contains(needle), "{label}: {line}");
        }
    }
    // The store's key file: cut short, a directory, garbage.
    for (what, key) in [
        ("short key", sb.write("short.key", "abc")),
        ("key directory", sb.dir.path().to_path_buf()),
        ("missing key", sb.dir.path().join("none.key")),
    ] {
        let out = bounded(
            sb.cli().args(["restore", &id]).arg("--key").arg(&key),
            Duration::from_secs(30),
        );
        one_line_failure(&out, what, "");
    }
}

/// A heap dump that parses line by line but whose content is hostile: duplicate addresses,
/// self references, references to nothing, a class that is its own class, sizes at the limits
/// of u64, negative and overflowing numbers, escapes that are not UTF-8, an address too long
/// for 64 bits. Every heap command gives a result or one line. Plus compressed-looking garbage,
/// an empty file, a directory and a missing file for the commands tests/heap.rs does not cover
/// (diff, path, import).
#[test]
fn hostile_heap_dumps_get_a_result_or_one_line_from_every_heap_command() {
    let sb = Sandbox::new();
    let hostile = sb.write(
        "hostile.json",
        concat!(
            r#"{"type":"ROOT", "root":"vm", "references":["0x1000", "0xdead", "0x1000", "0x0"]}"#, "\n",
            r#"{"type":"ROOT", "root":"", "references":[]}"#, "\n",
            r#"{"address":"0x1000", "type":"OBJECT", "class":"0x1000", "references":["0x1000","0x2000","0x2000"], "memsize":18446744073709551615}"#, "\n",
            r#"{"address":"0x1000", "type":"STRING", "class":"0x3000", "bytesize":-5, "value":"dup", "memsize":-1}"#, "\n",
            r#"{"address":"0x2000", "type":"ARRAY", "class":"0x2000", "references":["0x1000"], "memsize":18446744073709551615, "length":99999999999999999999}"#, "\n",
            r#"{"address":"0x3000", "type":"CLASS", "class":"0x3000", "name":"\u0000\n<script>\ud800", "references":["0x3000", "0x3000"], "memsize":18446744073709551615}"#, "\n",
            r#"{"address":"0x4000", "type":"IMEMO", "imemo_type":"", "class":"0x4000", "memsize":1e400}"#, "\n",
            r#"{"address":"0x5000", "type":"HASH", "references":[], "file":"a\"b\\", "line":-1, "generation":18446744073709551615, "memsize":18446744073709551615}"#, "\n",
            r#"{"address":"0x6000", "type":"STRING", "value":"\ud800\udfff\u00", "bytesize":18446744073709551615, "memsize":18446744073709551615, "file":"x", "line":18446744073709551615}"#, "\n",
            r#"{"address":"0xffffffffffffffffffff", "type":"OBJECT", "class":"0x3000"}"#, "\n",
            r#"{"address":"0x0", "type":"NONE"}"#, "\n",
            r#"{"address":"0x7000", "type":"MODULE", "name":"", "class":"0x7000", "references":["0x7000"]}"#, "\n",
        ),
    );
    let mut gz = vec![0x1f, 0x8b, 0x08, 0x00];
    gz.extend(std::iter::repeat_n(0xa5u8, 4000));
    let gz = {
        let p = sb.dir.path().join("garbage.json.gz");
        fs::write(&p, gz).unwrap();
        p
    };
    let mut zst = vec![0x28, 0xb5, 0x2f, 0xfd];
    zst.extend(std::iter::repeat_n(0x5au8, 4000));
    let zst = {
        let p = sb.dir.path().join("garbage.json.zst");
        fs::write(&p, zst).unwrap();
        p
    };
    let empty = sb.write("empty.json", "");
    let binary = {
        let p = sb.dir.path().join("binary.json");
        fs::write(&p, b"\x00\x01\x02\xff\xfe garbage\n").unwrap();
        p
    };
    let files: Vec<(&str, PathBuf)> = vec![
        ("hostile", hostile.clone()),
        ("gzip garbage", gz),
        ("zstd garbage", zst),
        ("empty", empty),
        ("binary", binary),
        ("directory", sb.dir.path().to_path_buf()),
        ("missing", sb.dir.path().join("missing.json")),
    ];
    let good = small_dump();
    for (what, f) in &files {
        let f = f.as_os_str();
        let out_db = sb
            .dir
            .path()
            .join(format!("import-{}.db", what.replace(' ', "-")));
        let out_pq = sb
            .dir
            .path()
            .join(format!("import-{}", what.replace(' ', "-")));
        let svg = sb
            .dir
            .path()
            .join(format!("top-{}.svg", what.replace(' ', "-")));
        let commands: Vec<Vec<&std::ffi::OsStr>> = vec![
            vec!["summary".as_ref(), f],
            vec!["summary".as_ref(), f, "--json".as_ref()],
            vec!["top".as_ref(), f],
            vec![
                "top".as_ref(),
                f,
                "--json".as_ref(),
                "--svg".as_ref(),
                svg.as_os_str(),
            ],
            vec!["top".as_ref(), f, "--from".as_ref(), "0x1000".as_ref()],
            vec!["strings".as_ref(), f],
            vec!["path".as_ref(), f, "0x1000".as_ref()],
            vec!["path".as_ref(), f, "0x2000".as_ref(), "--json".as_ref()],
            vec!["diff".as_ref(), f, f],
            vec!["diff".as_ref(), good.as_os_str(), f, "--json".as_ref()],
            vec!["diff".as_ref(), f, good.as_os_str(), f],
            vec![
                "import".as_ref(),
                f,
                "--sqlite".as_ref(),
                out_db.as_os_str(),
            ],
            vec![
                "import".as_ref(),
                f,
                "--parquet".as_ref(),
                out_pq.as_os_str(),
            ],
        ];
        for args in commands {
            let out = bounded(
                Command::new(cli()).arg("heap").args(&args),
                Duration::from_secs(60),
            );
            works_or_one_line(&out, &format!("{what}: heap {args:?}"));
            if *what != "hostile" {
                assert!(!out.status.success(), "{what}: {args:?}");
            }
        }
        if *what != "hostile" {
            assert!(
                !out_db.exists() && !out_pq.exists(),
                "{what}: an import was left"
            );
        }
    }
}

/// `stacks --core` on files that are no core of this Ruby, and `ui` on a file that is not there
/// or an address that is none: one line each.
#[test]
fn cores_and_ui_files_get_one_line() {
    let sb = Sandbox::new();
    let elf_header = {
        // A 64-bit little-endian ELF header that claims to be a core, then nothing.
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        h.resize(16, 0);
        h.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
        h.extend_from_slice(&62u16.to_le_bytes()); // x86-64
        h.extend_from_slice(&1u32.to_le_bytes());
        h.resize(32, 0);
        h.extend_from_slice(&64u64.to_le_bytes()); // program headers at 64...
        h.resize(54, 0);
        h.extend_from_slice(&56u16.to_le_bytes());
        h.extend_from_slice(&0xffffu16.to_le_bytes()); // ...65535 of them, past the end
        h.resize(64, 0);
        let p = sb.dir.path().join("lying.core");
        fs::write(&p, h).unwrap();
        p
    };
    let cores = [
        sb.write("empty.core", ""),
        sb.write("text.core", "not a core\n"),
        elf_header,
        sb.dir.path().to_path_buf(),
        sb.dir.path().join("missing.core"),
        PathBuf::from("/usr/bin/ruby"),
    ];
    for core in &cores {
        let out = bounded(
            Command::new(cli())
                .args(["stacks", "--core"])
                .arg(core)
                .args(["--ruby", "/usr/bin/ruby"]),
            Duration::from_secs(30),
        );
        one_line_failure(&out, &format!("stacks --core {}", core.display()), "");
    }
    let out = bounded(
        Command::new(cli())
            .args(["ui", "--listen", "127.0.0.1:0"])
            .arg(sb.dir.path().join("missing.json")),
        Duration::from_secs(30),
    );
    one_line_failure(&out, "ui missing file", "does not exist");
    let out = bounded(
        Command::new(cli()).args(["ui", "--listen", "not an address"]),
        Duration::from_secs(30),
    );
    one_line_failure(&out, "ui bad listen", "");
}

// ---------------------------------------------------------------------------------------------
// A hostile agent on the socket

/// What a fake agent does on its one connection, step by step. After the last step it keeps
/// the connection open until the client closes it (a stall, when the client waits for more).
enum Step {
    /// Read one frame from the client (its hello, or a request) and drop it.
    Read,
    /// Send these bytes as they are.
    Raw(Vec<u8>),
    /// Send a well-formed message.
    Send(AgentMessage),
    /// Close the connection.
    Close,
}

/// A real Ruby process that runs no agent (a sleeping `ruby`), with a private runtime
/// directory where the test plays its agent: the CLI finds the socket there as it would the
/// agent's. Killed on drop.
struct FakeAgent {
    _sb: Sandbox,
    target: Child,
    pid: String,
    sock: PathBuf,
}

impl FakeAgent {
    fn new() -> FakeAgent {
        let sb = Sandbox::new();
        let run = sb.dir.path().join("run/rbscope");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&run)
            .unwrap();
        let mut target = Command::new("ruby")
            .args(["-e", "$stdout.sync = true; puts :ready; sleep"])
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .env_remove("RUBYOPT")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(target.stdout.take().unwrap());
        assert_eq!(read_line(&mut out), "ready");
        let pid = target.id().to_string();
        let sock = run.join(format!("{pid}.sock"));
        FakeAgent {
            _sb: sb,
            target,
            pid,
            sock,
        }
    }

    /// Listens at the socket's path and plays `steps` on the first connection.
    fn serve(&self, steps: Vec<Step>) {
        let _ = fs::remove_file(&self.sock);
        let listener = UnixListener::bind(&self.sock).unwrap();
        std::thread::spawn(move || {
            let Some(mut s) = accept_ours(&listener) else {
                return;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
            for step in steps {
                let sent = match step {
                    Step::Read => {
                        let _ = read_frame::<_, ClientMessage>(&mut s);
                        Ok(())
                    }
                    Step::Raw(bytes) => s.write_all(&bytes).map_err(|_| ()),
                    Step::Send(msg) => write_frame(&mut s, &msg).map_err(|_| ()),
                    Step::Close => return,
                };
                if sent.is_err() {
                    return;
                }
            }
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
    }

    /// Runs the CLI with `args` against this fake, bounded in time.
    fn run(&self, steps: Vec<Step>, args: &[&str], input: &str, limit: Duration) -> Output {
        self.serve(steps);
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if *a == "PID" {
                    self.pid.clone()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let mut cmd = Command::new(cli());
        cmd.args(&args).env("RBSCOPE_RUBY_LIB", gem_lib());
        if input.is_empty() {
            bounded(&mut cmd, limit)
        } else {
            bounded_with_input(&mut cmd, input, limit)
        }
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        let _ = self.target.kill();
        let _ = self.target.wait();
    }
}

/// The first connection from a process this test started (the CLI under test); any other
/// (an `rbscope ps` elsewhere on the machine looks at every Ruby process's socket) is closed.
fn accept_ours(listener: &UnixListener) -> Option<std::os::unix::net::UnixStream> {
    use std::os::unix::io::AsRawFd;
    loop {
        let (s, _) = listener.accept().ok()?;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: cred and len are valid out-pointers of the sizes given; the fd is open.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                &mut cred as *mut libc::ucred as *mut libc::c_void,
                &mut len,
            )
        };
        let stat = fs::read_to_string(format!("/proc/{}/stat", cred.pid)).unwrap_or_default();
        // pid (comm) state ppid ...: the comm may hold spaces, so count from its end.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if rc == 0 && ppid == Some(std::process::id()) {
            return Some(s);
        }
    }
}

fn welcome(pid: &str) -> Step {
    Step::Send(AgentMessage::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "0.0.0-fake".into(),
        pid: pid.parse().unwrap(),
        ruby_version: "3.1.2".into(),
    }))
}

/// Every command that talks to an agent, as the fake's tests run it.
const AGENT_COMMANDS: &[&[&str]] = &[
    &["eval", "-p", "PID", "1"],
    &["console", "-p", "PID"],
    &["stacks", "-p", "PID"],
    &["stacks", "-p", "PID", "--json"],
    &["trace", "-p", "PID", "-f", "--for", "1s"],
    &["memory", "-p", "PID"],
    &["memory", "-p", "PID", "--json"],
    &["doctor", "-p", "PID"],
    &["heap", "count", "-p", "PID"],
    &["heap", "dump", "-p", "PID"],
    &["heap", "track", "-p", "PID", "start"],
];

/// What the fake answers to the client's hello: silence then a close, bytes that are no frame,
/// lengths over the limit, a frame cut short, undecodable bodies, the wrong message, and a
/// refusal full of control characters. Every command says so in one line.
#[test]
fn a_hostile_agent_gets_one_line_from_every_command_at_the_handshake() {
    let fake = FakeAgent::new();
    let mut announced = (1u32 << 20).to_le_bytes().to_vec();
    announced.extend_from_slice(b"abc");
    let scenarios: Vec<(&str, Vec<u8>, &str)> = vec![
        ("nothing", vec![], "connection closed"),
        (
            "HTTP",
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            "over the 67108864-byte limit",
        ),
        (
            "a huge length",
            vec![0xff, 0xff, 0xff, 0xff],
            "over the 67108864-byte limit",
        ),
        (
            "the largest length",
            (64u32 << 20).to_le_bytes().to_vec(),
            "got 0",
        ),
        (
            "a cut frame",
            announced,
            "frame announced 1048576 bytes, got 3",
        ),
        (
            "a garbage body",
            vec![5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff],
            "malformed message",
        ),
        ("an empty body", vec![0, 0, 0, 0], "malformed message"),
        (
            "an unknown message",
            vec![2, 0, 0, 0, 99, 0],
            "malformed message",
        ),
    ];
    for args in AGENT_COMMANDS {
        let mut all: Vec<(String, Vec<Step>, String)> = scenarios
            .iter()
            .map(|(what, bytes, needle)| {
                (
                    what.to_string(),
                    vec![Step::Read, Step::Raw(bytes.clone()), Step::Close],
                    needle.to_string(),
                )
            })
            .collect();
        all.push((
            "the wrong message".into(),
            vec![
                Step::Read,
                Step::Send(AgentMessage::Busy("x".into())),
                Step::Close,
            ],
            "unexpected answer to the handshake".into(),
        ));
        all.push((
            "a refusal with control characters".into(),
            vec![
                Step::Read,
                Step::Send(AgentMessage::Refused(
                    "one\ntwo\r\x1b[31mred\x1b[0m\x07\u{85}three".into(),
                )),
                Step::Close,
            ],
            "refused: one two".into(),
        ));
        for (what, steps, needle) in all {
            let out = fake.run(steps, args, "", Duration::from_secs(20));
            let label = format!("{args:?} / {what}");
            if args[0] == "doctor" {
                // doctor prints its report of the store and the gem before it connects.
                no_panic(&out, &label);
                let err = stderr(&out);
                assert_eq!(out.status.code(), Some(1), "{label}: {err}");
                assert_eq!(err.lines().count(), 1, "{label}: {err}");
                assert!(
                    err.starts_with("rbscope: ") && err.contains(&needle),
                    "{label}: {err}"
                );
                assert!(
                    !err.trim_end().chars().any(char::is_control),
                    "{label}: {err:?}"
                );
            } else {
                one_line_failure(&out, &label, &needle);
            }
        }
    }
}

/// After a proper welcome, each command's request gets: the connection closed, garbage, the
/// wrong message, an error full of newlines, and the right message with values at the limits
/// of their types. The first four fail in one line; the last must not panic.
#[test]
fn a_hostile_agent_gets_one_line_from_every_command_after_the_handshake() {
    let fake = FakeAgent::new();
    let pid = fake.pid.clone();
    let facts: J = json!({
        "class_path": "\u{1b}[2J", "method_name": "\n",
        "kind": {"Refinement": {"refined_in": ""}}, "block_depth": u32::MAX,
        "clause": "Rescue", "params": {"Known": [{"Req": null}, {"Opt": ""}, "NoKey"]},
    });
    let stacks: AgentMessage = serde_json::from_value(json!({"Stacks": {
        "threads": [
            {"name": "\n\r", "tid": i32::MIN, "status": "\u{1b}", "main": true, "frames": [
                {"path": "", "line": i64::MIN, "label": "", "facts": facts, "cfunc": true},
                {"path": "x\ny", "line": null, "label": "\u{0}", "facts": facts, "cfunc": false},
            ]},
            {"name": null, "tid": null, "status": "", "main": true, "frames": []},
        ],
        "held_us": u64::MAX, "waited_us": u64::MAX,
    }}))
    .unwrap();
    let extreme: Vec<(&str, AgentMessage)> = vec![
        (
            "eval",
            AgentMessage::Evaluated(EvalResult {
                ok: true,
                text: "\u{0}\n".repeat(3),
                elapsed_us: u64::MAX,
                incomplete: false,
            }),
        ),
        (
            "console",
            AgentMessage::Evaluated(EvalResult {
                ok: true,
                text: String::new(),
                elapsed_us: u64::MAX,
                incomplete: true,
            }),
        ),
        ("stacks", stacks),
        (
            "memory",
            AgentMessage::Memory(MemoryReport {
                gc: [
                    "heap_allocated_pages",
                    "count",
                    "time",
                    "heap_live_slots",
                    "old_objects",
                    "malloc_increase_bytes",
                    "total_allocated_objects",
                ]
                .iter()
                .flat_map(|k| [(k.to_string(), i64::MAX), (k.to_string(), i64::MIN)])
                .collect(),
                objects: vec![
                    ("T_STRING".into(), i64::MIN),
                    ("T_OBJECT".into(), i64::MAX),
                    ("TOTAL".into(), -1),
                ],
                heap_page_bytes: u64::MAX,
                malloc: [
                    "in_use_bytes",
                    "mmapped_bytes",
                    "free_bytes",
                    "releasable_bytes",
                ]
                .iter()
                .map(|k| (k.to_string(), u64::MAX))
                .collect(),
                threads: u64::MAX,
                held_us: u64::MAX,
            }),
        ),
        (
            "doctor",
            AgentMessage::Status(AgentStatus {
                started: false,
                store: "\n".into(),
                settings: vec![("".into(), "\u{1b}[2J".into())],
                counters: vec![("x".into(), u64::MAX)],
                warnings: vec!["\r".into()],
            }),
        ),
        (
            "heap count",
            AgentMessage::HeapCensus(HeapCensus {
                objects: u64::MAX,
                by_type: vec![("T_STRING".into(), u64::MAX); 3],
                classes: vec![("".into(), u64::MAX); 3],
                held_us: u64::MAX,
            }),
        ),
        (
            "heap dump",
            AgentMessage::HeapDumped(HeapDumpResult {
                path: "/etc/passwd\n".into(),
                objects: u64::MAX,
                roots: u64::MAX,
                bytes: u64::MAX,
                pause_us: u64::MAX,
                gc_us: u64::MAX,
                total_us: u64::MAX,
                forked: true,
                allocation_info: true,
            }),
        ),
        (
            "heap track",
            AgentMessage::HeapTracking {
                on: false,
                was_on: true,
            },
        ),
    ];
    for args in AGENT_COMMANDS {
        if args[0] == "trace" {
            continue; // its stream: the next test
        }
        let name = if args[0] == "heap" {
            format!("heap {}", args[1])
        } else {
            args[0].to_string()
        };
        let input = if args[0] == "console" { "1\n" } else { "" };
        let request = |reply: Step| vec![Step::Read, welcome(&pid), Step::Read, reply];
        let cases: Vec<(&str, Vec<Step>, &str)> = vec![
            ("closed", request(Step::Close), ""),
            (
                "garbage",
                request(Step::Raw(b"\x05\x00\x00\x00garbage".to_vec())),
                "malformed message",
            ),
            (
                "the wrong message",
                request(Step::Send(AgentMessage::Detached(TraceSummary {
                    events: 1,
                    lost: 2,
                }))),
                "unexpected answer",
            ),
            (
                "an error",
                request(Step::Send(AgentMessage::Error(
                    "bad\nthings\r\nhappened\x1b[0m".into(),
                ))),
                "bad things",
            ),
        ];
        for (what, steps, needle) in cases {
            let out = fake.run(steps, args, input, Duration::from_secs(20));
            let label = format!("{args:?} / {what}");
            if args[0] == "stacks" && out.status.success() {
                // No answer: read from outside instead, and said so.
                assert!(
                    stderr(&out).contains("note:")
                        || String::from_utf8_lossy(&out.stdout).contains("note"),
                    "{label}"
                );
                no_panic(&out, &label);
                continue;
            }
            if args[0] == "doctor" {
                no_panic(&out, &label);
                let err = stderr(&out);
                assert_eq!(out.status.code(), Some(1), "{label}: {err}");
                assert_eq!(err.lines().count(), 1, "{label}: {err}");
                assert!(err.contains(needle), "{label}: {err}");
                continue;
            }
            one_line_failure(&out, &label, needle);
        }
        let reply = extreme
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m.clone())
            .unwrap();
        let mut steps = vec![Step::Read, welcome(&pid), Step::Read, Step::Send(reply)];
        if args[0] == "console" {
            // The probe said "incomplete"; answer the real input too, then close.
            steps.push(Step::Read);
            steps.push(Step::Send(AgentMessage::Evaluated(EvalResult {
                ok: false,
                text: "x".repeat(100_000),
                elapsed_us: 0,
                incomplete: false,
            })));
        }
        let out = fake.run(steps, args, input, Duration::from_secs(20));
        works_or_one_line(&out, &format!("{args:?} / extreme values"));
    }
}

/// An agent that goes away between two requests: the console's next input meets a closed
/// connection. The CLI says so in one line; it is not killed by SIGPIPE on the way.
#[test]
fn an_agent_that_closes_between_requests_is_one_line_not_a_signal() {
    let fake = FakeAgent::new();
    let pid = fake.pid.clone();
    for _ in 0..3 {
        let steps = vec![
            Step::Read,
            welcome(&pid),
            Step::Read,
            Step::Send(AgentMessage::Evaluated(EvalResult {
                ok: true,
                text: "nil".into(),
                elapsed_us: 1,
                incomplete: false,
            })),
            Step::Close,
        ];
        let out = fake.run(
            steps,
            &["console", "-p", "PID"],
            "1 + 1\n2 + 2\n",
            Duration::from_secs(20),
        );
        no_panic(&out, "console");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or("");
        assert!(last.starts_with("rbscope: "), "{err}");
    }
}

/// A fake agent that accepts a trace and then streams event records that decode but make no
/// sense (returns without calls, time running backwards, ids and counts at the limits, deep
/// nesting, names with control characters), then bytes that are no records. In each output
/// format the CLI renders what it can, then fails in one line; ended by the agent instead, it
/// reports the trace's end. Never a panic.
#[test]
fn a_hostile_trace_stream_ends_in_one_line() {
    use rbscope_trace::events::*;
    let fake = FakeAgent::new();
    let pid = fake.pid.clone();
    let mut ev = Vec::new();
    push_to(&mut ev, method_len("A#\n\u{1b}[2Jb"), |b| {
        write_method(b, u32::MAX, "A#\n\u{1b}[2Jb")
    });
    push_to(&mut ev, method_len("B#c"), |b| write_method(b, 0, "B#c"));
    push_to(&mut ev, thread_len("\r"), |b| {
        write_thread(b, u32::MAX, i32::MIN, "\r")
    });
    push_to(&mut ev, RETURN_LEN, |b| write_return(b, 7, 7, 0, u64::MAX));
    push_to(&mut ev, CALL_LEN, |b| {
        write_call(b, u32::MAX, u32::MAX, u64::MAX)
    });
    push_to(&mut ev, RETURN_LEN, |b| {
        write_return(b, u32::MAX, u32::MAX, 0, u64::MAX)
    });
    let values = [("\n", "\u{1b}]0;title\u{7}"), ("", "")];
    push_to(&mut ev, call_values_len(&values), |b| {
        write_call_values(b, 1, 0, 5, &values)
    });
    push_to(&mut ev, SLOW_LEN, |b| {
        write_slow(b, 1, 99, u32::MAX, u64::MAX, u64::MAX)
    });
    push_to(&mut ev, GC_LEN, |b| {
        write_gc(b, GcPhase::Start, u64::MAX, u64::MAX)
    });
    push_to(&mut ev, GC_LEN, |b| {
        write_gc(b, GcPhase::EndMark, u64::MAX, 0)
    });
    push_to(&mut ev, GC_LEN, |b| {
        write_gc(b, GcPhase::EndSweep, u64::MAX, 0)
    });
    push_to(&mut ev, GC_LEN, |b| {
        write_gc(b, GcPhase::EndSweep, 3, u64::MAX)
    });
    push_to(&mut ev, LOST_LEN, |b| write_lost(b, u64::MAX));
    push_to(&mut ev, LOST_LEN, |b| write_lost(b, u64::MAX));
    push_to(&mut ev, note_len("\u{1b}[2J"), |b| {
        write_note(b, "\u{1b}[2J")
    });
    let mut deep = Vec::new();
    for i in 0..100_100u64 {
        push_to(&mut deep, CALL_LEN, |b| write_call(b, 2, 0, i));
    }
    for i in 0..100_100u64 {
        push_to(&mut deep, RETURN_LEN, |b| {
            write_return(b, 2, 0, u64::MAX - i, i)
        });
    }
    let started = || {
        Step::Send(AgentMessage::Tracing(TraceStarted {
            hooked: vec!["\u{1b}[2J".into()],
            skipped: vec!["\n".into()],
            waiting: vec![],
            ring_bytes: u64::MAX,
            install_us: u64::MAX,
            clock: "\r".into(),
        }))
    };
    for format in ["text", "jsonl", "chrome"] {
        let steps = vec![
            Step::Read,
            welcome(&pid),
            Step::Read,
            started(),
            Step::Send(AgentMessage::Events(ev.clone())),
            Step::Send(AgentMessage::Events(deep.clone())),
            Step::Send(AgentMessage::Events(b"\x08\x00\x00\x0c\xff\xff".to_vec())),
        ];
        let out = fake.run(
            steps,
            &[
                "trace",
                "-p",
                "PID",
                "-f",
                "--format",
                format,
                "--show-threads",
            ],
            "",
            Duration::from_secs(60),
        );
        let label = format!("trace --format {format}");
        no_panic(&out, &label);
        assert_eq!(out.status.code(), Some(1), "{label}: {}", stderr(&out));
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("rbscope: the agent sent events this rbscope cannot read"),
            "{label}: {err}"
        );
    }
    // Ended by the agent: the trace ends with its report line.
    for end in [
        Step::Send(AgentMessage::Error("gone\naway".into())),
        Step::Close,
    ] {
        let steps = vec![
            Step::Read,
            welcome(&pid),
            Step::Read,
            started(),
            Step::Send(AgentMessage::Events(ev.clone())),
            end,
        ];
        let out = fake.run(
            steps,
            &["trace", "-p", "PID", "-f"],
            "",
            Duration::from_secs(60),
        );
        no_panic(&out, "trace ended by the agent");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.lines()
                .last()
                .unwrap_or("")
                .starts_with(&format!("*** trace of process {pid} ended:")),
            "{err}"
        );
    }
}

/// A fake agent that says hello and then stops mid-answer (or never answers) is given up on
/// within the client's own bounds: the handshake's, eval's timeout, and stacks' wait (which
/// then reads the process from outside, and says why).
#[test]
fn a_stalled_agent_is_given_up_on_in_bounded_time() {
    let cases: Vec<(&str, Vec<Step>, Vec<&str>, Duration)> = vec![
        (
            "handshake",
            vec![Step::Read, Step::Raw(vec![40, 0])],
            vec!["eval", "-p", "PID", "1"],
            Duration::from_secs(5),
        ),
        (
            "eval",
            vec![
                Step::Read,
                Step::Raw(vec![]),
                Step::Read,
                Step::Raw(vec![40, 0, 0]),
            ],
            vec!["eval", "-p", "PID", "--timeout", "1s", "1"],
            Duration::from_secs(6),
        ),
        (
            "eval, one byte at a time",
            vec![Step::Read, Step::Raw(vec![]), Step::Read],
            vec!["eval", "-p", "PID", "--timeout", "1s", "1"],
            Duration::from_secs(6),
        ),
        (
            "stacks",
            vec![
                Step::Read,
                Step::Raw(vec![]),
                Step::Read,
                Step::Raw(vec![40]),
            ],
            vec!["stacks", "-p", "PID"],
            Duration::from_secs(3),
        ),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(what, mut steps, args, bound)| {
            std::thread::spawn(move || {
                let fake = FakeAgent::new();
                // The welcome needs the fake's pid: put it where the empty Raw is.
                for s in steps.iter_mut() {
                    if matches!(s, Step::Raw(b) if b.is_empty()) {
                        *s = welcome(&fake.pid);
                    }
                }
                let trickle = what.contains("one byte");
                if trickle {
                    // The answer's bytes one every 900 ms: each read returns, the whole never
                    // comes.
                    let frame = {
                        let mut v = Vec::new();
                        write_frame(
                            &mut v,
                            &AgentMessage::Evaluated(EvalResult {
                                ok: true,
                                text: "x".repeat(64),
                                elapsed_us: 0,
                                incomplete: false,
                            }),
                        )
                        .unwrap();
                        v
                    };
                    steps.push(Step::Raw(frame[..1].to_vec()));
                    for b in &frame[1..20] {
                        steps.push(Step::Raw(vec![*b]));
                    }
                }
                let started = Instant::now();
                let out = if trickle {
                    fake.run_trickling(steps, &args, Duration::from_secs(40))
                } else {
                    fake.run(steps, &args, "", Duration::from_secs(40))
                };
                let took = started.elapsed();
                no_panic(&out, what);
                assert!(
                    took < bound + Duration::from_secs(4),
                    "{what}: gave up after {took:?}, bound {bound:?}"
                );
                if what == "stacks" {
                    assert!(out.status.success(), "{}", stderr(&out));
                    assert!(
                        String::from_utf8_lossy(&out.stdout).contains("read from outside"),
                        "{}",
                        String::from_utf8_lossy(&out.stdout)
                    );
                } else {
                    one_line_failure(&out, what, "");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

impl FakeAgent {
    /// Like [`FakeAgent::run`], with each `Raw` step after the first request sent 900 ms
    /// after the one before.
    fn run_trickling(&self, steps: Vec<Step>, args: &[&str], limit: Duration) -> Output {
        let paced: Vec<Step> = steps
            .into_iter()
            .enumerate()
            .flat_map(|(i, s)| match s {
                Step::Raw(b) if i > 3 => vec![Step::Raw(Vec::new()), Step::Raw(b)],
                other => vec![other],
            })
            .collect();
        let _ = fs::remove_file(&self.sock);
        let listener = UnixListener::bind(&self.sock).unwrap();
        std::thread::spawn(move || {
            let Some(mut s) = accept_ours(&listener) else {
                return;
            };
            for step in paced {
                let ok = match step {
                    Step::Read => read_frame::<_, ClientMessage>(&mut s)
                        .map(|_| ())
                        .map_err(|_| ()),
                    Step::Raw(b) if b.is_empty() => {
                        std::thread::sleep(Duration::from_millis(900));
                        Ok(())
                    }
                    Step::Raw(b) => s.write_all(&b).map_err(|_| ()),
                    Step::Send(m) => write_frame(&mut s, &m).map_err(|_| ()),
                    Step::Close => return,
                };
                if ok.is_err() {
                    return;
                }
            }
        });
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if *a == "PID" {
                    self.pid.clone()
                } else {
                    a.to_string()
                }
            })
            .collect();
        bounded(Command::new(cli()).args(&args), limit)
    }
}
