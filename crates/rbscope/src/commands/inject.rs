//! `rbscope inject -p PID`: the agent, loaded into a process that never required it.
//!
//! The checks that can be made before touching the process come first (it is Ruby, the agent
//! is not there already, our agent is built for its Ruby, ptrace is allowed), then
//! `rbscope_vm::inject` queues the Ruby code that requires and starts the agent, and we wait
//! for the agent's socket to answer. If the code failed inside the process it left its error
//! in a private file, which is reported.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::agent_client;

/// Load and start the agent in a running Ruby process that never loaded it, at a safe point
/// of its VM; then trace, eval (if allowed), stacks and heap work on it.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Load and start the agent in a running Ruby process that never loaded it. The \
        process's main thread is stopped with ptrace for a few milliseconds and made to queue \
        one of Ruby's postponed jobs (made to be queued from any instant); its registers are \
        put back exactly; Ruby runs the job (`require \"rbscope\"; Rbscope.start`) at its next \
        safe point, and a thread blocked in a system call is woken the way Ruby wakes its own \
        threads, without the app noticing. Needs the right to ptrace the process (same user \
        and kernel.yama.ptrace_scope 0, or root) and the rbscope gem for the process's Ruby.",
    after_help = "Example: rbscope inject -p 4242 && rbscope trace -p 4242 -m 'Order#total'"
)]
pub struct Args {
    /// The process.
    #[arg(short, long)]
    pid: u32,
    /// How long to wait for the agent to answer (loading competes with a busy main thread
    /// for the GVL: seconds).
    #[arg(long, default_value = "15s", value_parser = crate::duration::parse_ms)]
    timeout: i64,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    inject(a.pid, Duration::from_millis(a.timeout.max(0) as u64))
}

fn inject(pid: u32, timeout: Duration) -> anyhow::Result<i32> {
    let target = agent_client::locate(pid)?;
    if agent_client::connect_within(&target, Duration::from_millis(500)).is_ok() {
        println!(
            "process {pid} already runs the rbscope agent (it answers on {}); nothing to do",
            target.socket.display()
        );
        return Ok(0);
    }
    let mem = rbscope_vm::remote::ProcessMemory::new(pid as i32);
    let vm = rbscope_vm::target::Target::of_process(pid as i32, &mem)?;
    let lib = crate::ruby_lib::find()?;
    let ours = agent_ruby_version()?;
    if major_minor(&ours) != major_minor(&vm.version) {
        bail!(
            "process {pid} runs Ruby {}, but the rbscope agent in {} is built for Ruby {ours} (the `ruby` on PATH): install rbscope for Ruby {} and run that rbscope",
            vm.version,
            lib.display(),
            vm.version
        );
    }
    check_ptrace(pid)?;
    let runtime = target
        .socket
        .parent()
        .map(|d| d.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let error_file = runtime.join(format!("{pid}.inject-error"));
    let _ = std::fs::remove_file(&error_file);
    let code = ruby_code(&lib, &error_file)?;
    let entry = rbscope_vm::inject::find_entry(pid as i32)?;
    let wake = rbscope_vm::inject::wake_for(&vm, &mem)?;
    let started = Instant::now();
    let done = match rbscope_vm::inject::inject(pid as i32, entry, wake, &code) {
        Err(e @ rbscope_vm::inject::InjectError::Denied { .. }) => bail!(
            "{e}: run rbscope inject as root, or as the process's user with kernel.yama.ptrace_scope = 0"
        ),
        other => other?,
    };
    let deadline = started + timeout;
    loop {
        if agent_client::connect_within(&target, Duration::from_millis(100)).is_ok() {
            println!(
                "agent loaded in process {pid} in {} ms (its main thread was stopped for {:.1} ms{}); trace, stacks, heap and, if the app allows it, eval now work",
                started.elapsed().as_millis(),
                done.paused.as_secs_f64() * 1000.0,
                match (done.woken, done.waker) {
                    (true, Some((tid, held))) => format!(
                        ", then woken from its wait by thread {tid}, stopped for {:.1} ms",
                        held.as_secs_f64() * 1000.0
                    ),
                    (true, None) => ", then woken from its system call".to_string(),
                    (false, _) => String::new(),
                }
            );
            return Ok(0);
        }
        if let Ok(text) = std::fs::read_to_string(&error_file) {
            let _ = std::fs::remove_file(&error_file);
            bail!(
                "the agent could not start in process {pid}: {}",
                text.trim()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "the agent did not answer within {} ms: the loading is queued and may still finish (a main thread busy in Ruby leaves the GVL to the loading thread only between its 100 ms time slices; one in native code that does not check Ruby's interrupts runs the job only when it returns): wait and run rbscope inject -p {pid} again (it says when the agent is there), give it a longer --timeout, or start the app with rbscope run",
                timeout.as_millis()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Ruby the process runs: load and start the agent, never raise into the app.
///
/// A postponed job runs in Ruby's "trap context", where Mutex#lock (and so `require`) is not
/// allowed: the job only starts a thread that does the work. That thread gets the GVL back
/// after each of its system calls only when the thread holding it lets go, which a main
/// thread busy in Ruby does every 100 ms; `require` waits four times per file. So the gem's
/// Ruby files travel with the code, as raw heredocs, and the loading thread evaluates them
/// from memory (`Rbscope.__require_own`), under their own paths: 13 files that took 1.5 s
/// cost no wait at all.
///
/// The code is evaluated in the scope of whatever Ruby frame the job interrupts, so it
/// defines no local variable there: the sources are the thread's argument, and the block's
/// variables are its own (`|sources; lib, main, e|`).
fn ruby_code(lib: &std::path::Path, error_file: &std::path::Path) -> anyhow::Result<String> {
    let lib = lib
        .canonicalize()
        .with_context(|| format!("cannot resolve the gem's directory {}", lib.display()))?;
    let lib_str = lib.to_str().context("the gem's path is not UTF-8")?;
    let err_str = error_file
        .to_str()
        .context("the runtime directory's path is not UTF-8")?;
    let sources = gem_sources(&lib)?;
    let mut entries = Vec::new();
    let mut bodies = String::new();
    for (path, text) in &sources {
        entries.push(format!(
            "{} => <<'{END}'",
            ruby_quote(path),
            END = SOURCE_END
        ));
        bodies.push_str(text);
        if !text.ends_with('\n') {
            bodies.push('\n');
        }
        bodies.push_str(SOURCE_END);
        bodies.push('\n');
    }
    Ok(format!(
        "# encoding: utf-8\nThread.new({{{entries}}}) do |sources; lib, main, e|\n{bodies}Thread.current.name = \"rbscope-inject\"\nbegin\n  lib = {lib}\n  $LOAD_PATH.unshift(lib) unless $LOAD_PATH.include?(lib)\n  unless defined?(::Rbscope.start)\n    sources.each_value {{ |s| s.force_encoding(Encoding::UTF_8) }}\n    Thread.current[:__rbscope_sources] = sources\n    main = File.join(lib, \"rbscope.rb\")\n    RubyVM::InstructionSequence.compile(sources.delete(main), main, main).eval\n    if Rbscope::Native.respond_to?(:__provide)\n      [main, *sources[:loaded]].each {{ |f| Rbscope::Native.__provide(f) }}\n    end\n  end\n  Rbscope.start unless Rbscope.started?\nrescue Exception => e\n  begin\n    File.open({err}, File::WRONLY | File::CREAT | File::TRUNC, 0o600) {{ |f| f.write(\"#{{e.class}}: #{{e.message}}\") }}\n  rescue Exception\n  end\nensure\n  Thread.current[:__rbscope_sources] = nil\nend\nend\n",
        entries = entries.join(", "),
        lib = ruby_quote(lib_str),
        err = ruby_quote(err_str),
    ))
}

/// The line that ends each source's heredoc; a file holding it as a line could not travel.
const SOURCE_END: &str = "RBSCOPE_INJECTED_SOURCE_END";

/// `lib/rbscope.rb` and every `lib/rbscope/*.rb`, by full path (what `File.join` gives in
/// Ruby for the same directory).
fn gem_sources(lib: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = vec![lib.join("rbscope.rb")];
    let own = lib.join("rbscope");
    let mut listed: Vec<PathBuf> = std::fs::read_dir(&own)
        .with_context(|| format!("cannot list {}", own.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rb") && p.is_file())
        .collect();
    listed.sort();
    files.extend(listed);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {} (reinstall the gem)", file.display()))?;
        if text.lines().any(|l| l == SOURCE_END) || text.contains('\0') {
            bail!(
                "{} cannot be sent with the injected code (it holds a NUL or the line {SOURCE_END})",
                file.display()
            );
        }
        let path = file
            .to_str()
            .context("the gem's path is not UTF-8")?
            .to_string();
        out.push((path, text));
    }
    Ok(out)
}

/// A single-quoted Ruby string literal: nothing in it is interpolated.
fn ruby_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// RUBY_VERSION of the `ruby` on PATH, the Ruby the gem's agent is built for.
fn agent_ruby_version() -> anyhow::Result<String> {
    let out = std::process::Command::new("ruby")
        .args(["-e", "print RUBY_VERSION"])
        .output()
        .context("cannot run `ruby` to learn which Ruby the agent is built for")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn major_minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// Says what to change when the kernel will not let us ptrace the process.
fn check_ptrace(pid: u32) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match rbscope_vm::pause::ptrace_scope() {
        Some(3) => bail!(
            "ptrace is disabled on this machine (kernel.yama.ptrace_scope = 3, until reboot): injection is impossible; start the app with rbscope run or require \"rbscope\""
        ),
        Some(2) if !root => bail!(
            "only root may ptrace here (kernel.yama.ptrace_scope = 2): run rbscope inject as root"
        ),
        Some(1) if !root => bail!(
            "process {pid} may only be traced by its parent here (kernel.yama.ptrace_scope = 1): run rbscope inject as root, or set `sysctl kernel.yama.ptrace_scope=0`"
        ),
        _ => Ok(()),
    }
}
