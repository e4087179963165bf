//! `rbscope stacks -p PID`, `rbscope stacks -p PID --remote` and `rbscope stacks --core FILE
//! --ruby BIN`: every Ruby thread's stack, asked of the process's agent, or read from outside
//! the process (see rbscope-vm's `stacks`).

use crate::agent_client::{self, NoAgent, StacksAnswer};
use anyhow::{anyhow, Context};
use rbscope_vm::core_file::CoreMemory;
use rbscope_vm::memory::{Memory, ReadError};
use rbscope_vm::objects::Objects;
use rbscope_vm::pause::{self, Pause, PauseError};
use rbscope_vm::remote::ProcessMemory;
use rbscope_vm::stacks::{self, ReadOptions, Stacks};
use rbscope_vm::target::{SymbolsFoundBy, Target, TargetError};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct Report<'a> {
    source: String,
    ruby_version: &'a str,
    paused_ms: Option<f64>,
    read_ms: f64,
    #[serde(flatten)]
    stacks: &'a Stacks,
}

/// What to tell someone who may not trace the process.
fn permission_hint(pid: i32) -> String {
    let scope = pause::ptrace_scope();
    let scope_text = match scope {
        Some(n) => format!(" (kernel.yama.ptrace_scope is {n})"),
        None => String::new(),
    };
    format!(
        "not permitted to read process {pid}{scope_text}: run rbscope as root or with CAP_SYS_PTRACE \
         (in a container: --cap-add=SYS_PTRACE), or as the process's user with ptrace_scope 0"
    )
}

pub fn read_error(pid: i32, e: ReadError) -> anyhow::Error {
    match e {
        ReadError::ProcessGone => anyhow!("process {pid} exited while it was being read"),
        ReadError::PermissionDenied => anyhow!(permission_hint(pid)),
        ReadError::Unreadable(addr) => anyhow!(
            "process {pid}'s Ruby VM could not be read (address {addr:#x}); if it is still starting or exiting, try again"
        ),
    }
}

pub fn target_error(pid: i32, e: TargetError) -> anyhow::Error {
    match e {
        TargetError::Read(r) => read_error(pid, r),
        TargetError::Denied(_) => anyhow!(permission_hint(pid)),
        other => anyhow!(other),
    }
}

/// How long the agent may take to get a turn in the VM before the stacks are read from outside.
const AGENT_WAIT: Duration = Duration::from_secs(1);

/// Asks the process's agent; reads from outside when there is no agent or it does not answer
/// in time (saying so).
pub fn via_agent(pid: i32, pause_it: bool, json: bool) -> anyhow::Result<i32> {
    let started = Instant::now();
    let pid_u = u32::try_from(pid).map_err(|_| anyhow!("{pid} is not a process id"))?;
    let target = agent_client::locate(pid_u)?;
    let why_outside = match agent_client::connect(&target) {
        Ok(mut client) => match client.stacks(AGENT_WAIT)? {
            StacksAnswer::Read(s) => {
                let ruby_version = client.welcome.ruby_version.clone();
                return print_from_agent(pid, &ruby_version, s, started.elapsed(), json);
            }
            StacksAnswer::Busy(why) => {
                format!("the agent did not answer: {}", crate::printable(&why))
            }
            StacksAnswer::Failed(why) => {
                format!("the agent could not read them: {}", crate::printable(&why))
            }
        },
        Err(e) => match e.downcast::<NoAgent>() {
            Ok(_) => "the process runs no rbscope agent".to_string(),
            Err(e) => return Err(e),
        },
    };
    process(pid, pause_it, json, Some(why_outside))
}

fn print_from_agent(
    pid: i32,
    ruby_version: &str,
    read: rbscope_proto::Stacks,
    took: Duration,
    json: bool,
) -> anyhow::Result<i32> {
    let stacks = Stacks {
        notes: Vec::new(),
        threads: read
            .threads
            .into_iter()
            .map(|t| stacks::ThreadStack {
                tid: t.tid,
                name: t.name,
                status: match t.status.as_str() {
                    "running" => "running",
                    "runnable" => "runnable",
                    "sleeping" => "sleeping",
                    "sleeping forever" => "sleeping forever",
                    "aborting" => "aborting",
                    _ => "dead",
                },
                main: t.main,
                thread: String::new(),
                frames: t
                    .frames
                    .into_iter()
                    .map(|f| stacks::Frame {
                        path: f.path,
                        line: f.line,
                        label: f.label,
                        facts: f.facts.into(),
                        cfunc: f.cfunc,
                    })
                    .collect(),
                error: None,
            })
            .collect(),
    };
    let held = Duration::from_micros(read.held_us);
    let source = format!(
        "process {pid}, Ruby {ruby_version}, through its agent (threads held {}, after waiting {} for the VM)",
        ms(held),
        ms(Duration::from_micros(read.waited_us))
    );
    print(ruby_version, &stacks, source, Some(held), took, json)
}

pub fn process(
    pid: i32,
    pause_it: bool,
    json: bool,
    why_outside: Option<String>,
) -> anyhow::Result<i32> {
    let started = Instant::now();
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(anyhow!("no process with PID {pid} (it may have exited)"));
    }
    let mem = ProcessMemory::new(pid);
    let target = Target::of_process(pid, &mem).map_err(|e| target_error(pid, e))?;
    // Everything read so far (ELF files, the version, the symbol table) does not move; the
    // stacks do, so they are read fresh, inside the pause.
    mem.forget();
    let (stacks, paused) = if pause_it {
        read_paused(pid, &mem, &target)?
    } else {
        (
            read(&mem, &target, true, &|| mem.forget()).map_err(|e| read_error(pid, e))?,
            None,
        )
    };
    let source = format!(
        "process {pid}, Ruby {}, read from outside, {}",
        target.version,
        match paused {
            Some(d) => format!("paused {}", ms(d)),
            None => "running (not paused)".to_string(),
        }
    );
    let mut stacks = stacks;
    if let Some(why) = why_outside {
        stacks
            .notes
            .insert(0, format!("read from outside because {why}"));
    }
    print(
        &target.version,
        &stacks,
        source,
        paused,
        started.elapsed(),
        json,
    )
}

/// Pauses the process only while the parts that move (thread list, frames, environments) are
/// copied; the process goes on while those copies are labelled.
fn read_paused(
    pid: i32,
    mem: &ProcessMemory,
    target: &Target,
) -> anyhow::Result<(Stacks, Option<Duration>)> {
    let vm = target.vm(mem).map_err(|e| target_error(pid, e))?;
    let o = Objects::new(mem, target.layout, target.global_symbols).with_vm(vm);
    // A first read while the process runs learns which pages the read touches; in the pause
    // they are copied again, fresh, in one batch, and the read is repeated on those copies.
    let _ = stacks::capture(&o, vm, ReadOptions::default());
    let pages = mem.cached_pages();
    mem.forget();
    let pause = Pause::all_threads(pid).map_err(|e| match e {
        PauseError::NoProcess(_) => anyhow!("process {pid} exited before it could be paused"),
        PauseError::Denied { .. } => anyhow!(permission_hint(pid)),
        other => anyhow!(other),
    })?;
    mem.refetch(&pages);
    let captured = stacks::capture(&o, vm, ReadOptions::default());
    let held = pause.release();
    let (threads, notes) = captured.map_err(|e| read_error(pid, e))?;
    let mut stacks = stacks::label(&o, threads, notes).map_err(|e| read_error(pid, e))?;
    note_scan(target, &mut stacks);
    Ok((stacks, Some(held)))
}

fn note_scan(target: &Target, stacks: &mut Stacks) {
    if target.symbols_found_by == SymbolsFoundBy::Scan {
        stacks.notes.push(
            "symbol table found by scanning libruby's data (it exports no symbol for it)".into(),
        );
    }
}

pub fn core(core: &Path, ruby: &Path, json: bool) -> anyhow::Result<i32> {
    let started = Instant::now();
    if !ruby.exists() {
        return Err(anyhow!(
            "{} does not exist: pass the ruby program that wrote the core file",
            ruby.display()
        ));
    }
    let mut mem = CoreMemory::open(core).map_err(|e| anyhow!(e))?;
    let target = Target::of_core(&mut mem, ruby).map_err(|e| anyhow!(e))?;
    let stacks = read(&mem, &target, false, &|| {}).map_err(|e| match e {
        ReadError::Unreadable(a) => anyhow!(
            "{}: the Ruby VM could not be read (address {a:#x} is not in the core file); is --ruby the program that wrote it?",
            core.display()
        ),
        other => anyhow!(other),
    })?;
    let source = format!("core file {}, Ruby {}", core.display(), target.version);
    print(
        &target.version,
        &stacks,
        source,
        None,
        started.elapsed(),
        json,
    )
}

/// Reads every thread; `refresh` makes the memory source forget what it copied before a
/// re-read (a running process), or does nothing (a core file does not change).
pub fn read<M: Memory>(
    mem: &M,
    target: &Target,
    running: bool,
    refresh: &dyn Fn(),
) -> Result<Stacks, ReadError> {
    let opts = ReadOptions {
        attempts: if running { 5 } else { 1 },
        ..ReadOptions::default()
    };
    let mut stacks = read_with(mem, target, opts, refresh)?;
    if target.symbols_found_by == SymbolsFoundBy::Scan {
        stacks.notes.push(
            "symbol table found by scanning libruby's data (it exports no symbol for it)".into(),
        );
    }
    Ok(stacks)
}

/// Every thread's stack of the process behind `mem`, read with `opts`.
pub fn read_with<M: Memory>(
    mem: &M,
    target: &Target,
    opts: ReadOptions,
    refresh: &dyn Fn(),
) -> Result<Stacks, ReadError> {
    let vm = target.vm(mem).map_err(|e| match e {
        TargetError::Read(r) => r,
        _ => ReadError::Unreadable(target.vm_ptr),
    })?;
    let o = Objects::new(mem, target.layout, target.global_symbols).with_vm(vm);
    stacks::read_all(&o, vm, opts, refresh)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn print(
    ruby_version: &str,
    stacks: &Stacks,
    source: String,
    paused: Option<Duration>,
    took: Duration,
    json: bool,
) -> anyhow::Result<i32> {
    if json {
        let report = Report {
            source,
            ruby_version,
            paused_ms: paused.map(|d| d.as_secs_f64() * 1000.0),
            read_ms: took.as_secs_f64() * 1000.0,
            stacks,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("writing JSON")?
        );
        return Ok(0);
    }
    println!(
        "{source}; {} threads, read in {}",
        stacks.threads.len(),
        ms(took)
    );
    for note in &stacks.notes {
        println!("note: {note}");
    }
    for (i, t) in stacks.threads.iter().enumerate() {
        let mut head = format!("\nThread {}", i + 1);
        if let Some(name) = &t.name {
            head.push_str(&format!(" \"{name}\""));
        }
        let mut facts = Vec::new();
        if t.main {
            facts.push("main".to_string());
        }
        if let Some(tid) = t.tid {
            facts.push(format!("tid {tid}"));
        }
        facts.push(t.status.to_string());
        println!("{head} ({})", facts.join(", "));
        if let Some(err) = &t.error {
            println!("  ({err})");
        }
        for f in &t.frames {
            match f.line {
                Some(line) => println!("  {}:{}:in {}", f.path, line, f.label),
                None => println!("  {}", f.label),
            }
        }
    }
    Ok(0)
}

/// Print every Ruby thread's stack of a running process (through its agent, or read from
/// outside) or of a core file.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Print every Ruby thread's stack. Frames show class paths, # / . / \
        $singleton, {block} depth, parameter names and the line each frame is executing.\n\n\
        With -p PID, a process that runs the rbscope agent is asked through its control \
        socket: the agent's Ruby thread reads every other thread while it holds the VM \
        (its output says for how long). If the agent does not answer within a second \
        (native code holding the GVL), or the process has no agent, the stacks are read \
        from outside instead, and the output says why.\n\n\
        With --remote the process is always read from outside, straight from the VM's \
        memory: no agent, no code run in the target. It is paused for the read (well under \
        a millisecond for tens of threads; --no-pause reads it running and re-reads any \
        thread whose stack changed meanwhile). With --core FILE --ruby BIN the same is \
        read from a core file (gcore PID), with BIN the ruby program that dumped it.\n\n\
        Reading another process from outside needs the right to trace it: the same user \
        with kernel.yama.ptrace_scope=0, or root / CAP_SYS_PTRACE.",
    after_help = "Example: rbscope stacks -p 4242\n         sudo rbscope stacks -p 4242 --remote --no-pause --json\n         gcore -o /tmp/core 4242 && rbscope stacks --core /tmp/core.4242 --ruby /usr/bin/ruby3.1"
)]
pub struct Args {
    /// The process to read.
    #[arg(short, long, conflicts_with = "core")]
    pid: Option<i32>,
    /// Read the process's memory from outside (process_vm_readv), without asking its agent.
    #[arg(long)]
    remote: bool,
    /// When read from outside, do not pause the process: read it running, re-reading
    /// threads whose stack changed.
    #[arg(long)]
    no_pause: bool,
    /// A core file to read instead of a process.
    #[arg(long, value_name = "FILE", requires = "ruby")]
    core: Option<std::path::PathBuf>,
    /// The ruby program that wrote the core file (as installed on this machine).
    #[arg(long, value_name = "BIN")]
    ruby: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    match (a.pid, &a.core, &a.ruby) {
        (Some(pid), _, _) if !a.remote => via_agent(pid, !a.no_pause, a.json),
        (Some(pid), _, _) => process(pid, !a.no_pause, a.json, None),
        (None, Some(core_file), Some(ruby)) => core(core_file, ruby, a.json),
        _ => anyhow::bail!(
            "say what to read: `rbscope stacks -p PID` or `rbscope stacks --core FILE --ruby BIN`"
        ),
    }
}
