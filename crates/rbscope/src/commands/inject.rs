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

pub fn inject(pid: u32, timeout: Duration) -> anyhow::Result<i32> {
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

/// The Ruby the process runs: require and start the agent, never raise into the app. A
/// postponed job runs in Ruby's "trap context", where Mutex#lock (and so `require`) is not
/// allowed: the job only starts a thread that does the work. The gem is required by its full
/// path (unless the app has loaded it): a search of `$LOAD_PATH` checks files, and each check
/// waits for the GVL, which a main thread busy in Ruby gives up only every 100 ms.
fn ruby_code(lib: &std::path::Path, error_file: &std::path::Path) -> anyhow::Result<String> {
    let quote = |p: &std::path::Path| -> anyhow::Result<String> {
        let s = p.to_str().context("the path is not UTF-8")?;
        Ok(format!("{s:?}"))
    };
    Ok(format!(
        "Thread.new {{ Thread.current.name = \"rbscope-inject\"; begin; lib = {lib}; $LOAD_PATH.unshift(lib) unless $LOAD_PATH.include?(lib); require File.join(lib, \"rbscope\") unless defined?(::Rbscope.start); Rbscope.start unless Rbscope.started?; rescue Exception => e; begin; File.open({err}, File::WRONLY | File::CREAT | File::TRUNC, 0o600) {{ |f| f.write(\"#{{e.class}}: #{{e.message}}\") }}; rescue Exception; end; end }}",
        lib = quote(lib)?,
        err = quote(error_file)?
    ))
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
