//! `rbscope record -p PID`: a sampling profile of every thread of a running Ruby process.
//!
//! Each sample reads every thread's stack from outside (rbscope-vm, `process_vm_readv`, the
//! process is never paused or signalled, and no agent is needed), with the labels of better
//! backtraces, so the process pays only for the memory traffic. Each stack is read once and
//! kept when its frames check out (a stack read twice rarely holds still on a busy thread, and
//! dropping those samples would hide the busy code); one that does not is read again (up to 3
//! times) or left out of that sample. Wall mode counts every
//! thread in every sample (a thread waiting on I/O shows where it waits); CPU mode only threads
//! that are running. Samples are aggregated per thread and stack and written as collapsed
//! stacks (`thread;outer;...;inner count`, for flamegraph.pl and friends), speedscope JSON, or a
//! flame graph SVG.

use super::stacks::{read_error, read_with, target_error};
use crate::views::profile::{self, Counts};
use anyhow::{anyhow, bail, Context};
use rbscope_vm::memory::{Memory, ReadError};
use rbscope_vm::remote::ProcessMemory;
use rbscope_vm::stacks::{ReadOptions, Stacks, ThreadStack};
use rbscope_vm::target::Target;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Collapsed,
    Speedscope,
    Flamegraph,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "collapsed" => Ok(Format::Collapsed),
            "speedscope" => Ok(Format::Speedscope),
            "flamegraph" => Ok(Format::Flamegraph),
            other => Err(format!(
                "unknown format {other:?}: use flamegraph, speedscope or collapsed"
            )),
        }
    }
}

/// A sampling profile of every thread of a running Ruby process (no agent needed).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "A sampling profile of every thread of a running Ruby process, read from \
        outside (like `rbscope stacks --remote`: no agent, the process is never paused or \
        signalled). Each sample reads every thread's stack with better-backtrace labels; \
        wall time (default) counts every thread in every sample, --cpu only the threads \
        that are running. Written as a flame graph SVG (opens in a browser), speedscope \
        JSON (https://www.speedscope.app) or collapsed stacks (one line per stack and \
        count). Reading another process needs the right to trace it (same user with \
        kernel.yama.ptrace_scope=0, or root / CAP_SYS_PTRACE).",
    after_help = "Example: rbscope record -p 4242 --duration 30s -o profile.svg\n         rbscope record -p 4242 --duration 10s --format speedscope -o profile.json --cpu"
)]
pub struct Args {
    /// The process to sample.
    #[arg(short, long)]
    pid: i32,
    /// How long to sample (Ctrl-C stops early and still writes the profile).
    #[arg(long, default_value = "30s", value_parser = crate::duration::parse_ms)]
    duration: i64,
    /// Samples per second.
    #[arg(long, default_value_t = 99)]
    rate: u32,
    /// Where to write the profile (mode 0600).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// flamegraph (SVG), speedscope (JSON) or collapsed (text).
    #[arg(long, default_value = "flamegraph", value_parser = str::parse::<Format>)]
    format: Format,
    /// Count only running threads (CPU time), not every thread (wall time).
    #[arg(long)]
    cpu: bool,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    record(Options {
        pid: a.pid,
        duration: Duration::from_millis(a.duration as u64),
        rate: a.rate,
        output: a.output.clone(),
        format: a.format,
        cpu: a.cpu,
    })
}

struct Options {
    pid: i32,
    duration: Duration,
    rate: u32,
    output: PathBuf,
    format: Format,
    cpu: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn thread_label(t: &ThreadStack) -> String {
    let tid = t.tid.map(|t| t.to_string()).unwrap_or_else(|| "?".into());
    match (&t.name, t.main) {
        (Some(n), _) => format!("{n} ({tid})"),
        (None, true) => format!("main ({tid})"),
        (None, false) => format!("thread {tid}"),
    }
}

fn record(o: Options) -> anyhow::Result<i32> {
    let pid = o.pid;
    if o.rate == 0 || o.rate > 1000 {
        bail!("--rate must be between 1 and 1000 samples per second");
    }
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        bail!("no process with PID {pid} (it may have exited)");
    }
    let mem = ProcessMemory::new(pid);
    let target = Target::of_process(pid, &mem).map_err(|e| target_error(pid, e))?;
    // Opened before sampling, so a bad path fails at once.
    let file = crate::output::create(&o.output)
        .with_context(|| format!("cannot write {}", o.output.display()))?;
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    eprintln!(
        "*** sampling process {pid} (Ruby {}) at {} Hz for {:.0} s ({} time); Ctrl-C stops early",
        target.version,
        o.rate,
        o.duration.as_secs_f64(),
        if o.cpu { "CPU" } else { "wall" }
    );
    let interval = Duration::from_secs(1) / o.rate;
    let started = Instant::now();
    let mut next = started;
    let mut counts = Counts::new();
    let (mut samples, mut missed, mut torn) = (0u64, 0u64, 0u64);
    let mut ended = None;
    while started.elapsed() < o.duration && !STOP.load(Ordering::SeqCst) {
        mem.forget();
        match sample(&mem, &target, &|| mem.forget()) {
            Ok(stacks) => {
                samples += 1;
                for t in &stacks.threads {
                    if t.error.is_some() {
                        torn += 1;
                        continue;
                    }
                    if t.frames.is_empty() || (o.cpu && t.status != "running") {
                        continue;
                    }
                    let frames = t
                        .frames
                        .iter()
                        .rev()
                        .map(|f| {
                            (
                                f.label.replace(';', ":"),
                                f.path.clone(),
                                f.line.unwrap_or(0),
                            )
                        })
                        .collect();
                    *counts.entry((thread_label(t), frames)).or_default() += 1;
                }
            }
            Err(ReadError::ProcessGone) => {
                ended = Some(format!("process {pid} exited"));
                break;
            }
            Err(e @ ReadError::PermissionDenied) => return Err(read_error(pid, e)),
            Err(_) => missed += 1,
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // Behind (a slow read): skip the samples that could not be taken in time.
            let behind = (now - next).as_nanos() / interval.as_nanos().max(1);
            missed += behind as u64;
            next += interval * behind as u32;
        }
    }
    let took = started.elapsed();
    if samples == 0 {
        return Err(anyhow!(
            "no sample could be taken from process {pid}{}",
            ended.map(|e| format!(" ({e})")).unwrap_or_default()
        ));
    }
    let mut w = BufWriter::new(file);
    let seconds = interval.as_secs_f64();
    match o.format {
        Format::Collapsed => profile::write_collapsed(&mut w, &counts)?,
        Format::Speedscope => profile::write_speedscope(&mut w, &counts, pid, seconds)?,
        Format::Flamegraph => write_flamegraph(&mut w, &counts, pid, o.cpu)?,
    }
    w.flush()?;
    eprintln!(
        "*** {samples} samples in {:.1} s ({:.0} Hz){}{}{}; written to {}",
        took.as_secs_f64(),
        samples as f64 / took.as_secs_f64(),
        if missed > 0 {
            format!(", {missed} missed")
        } else {
            String::new()
        },
        if torn > 0 {
            format!(", {torn} thread stacks left out (they did not check out)")
        } else {
            String::new()
        },
        ended.map(|e| format!(" ({e})")).unwrap_or_default(),
        o.output.display()
    );
    Ok(0)
}

/// One sample: every thread's stack, each from one read whose frames check out (see
/// `ReadOptions::settled`).
fn sample<M: Memory>(mem: &M, target: &Target, refresh: &dyn Fn()) -> Result<Stacks, ReadError> {
    let opts = ReadOptions {
        attempts: 3,
        settled: false,
        ..ReadOptions::default()
    };
    read_with(mem, target, opts, refresh)
}

fn write_flamegraph(w: &mut dyn Write, counts: &Counts, pid: i32, cpu: bool) -> anyhow::Result<()> {
    let lines: Vec<String> = profile::collapsed_lines(counts).collect();
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!(
        "rbscope record: process {pid} ({} time)",
        if cpu { "CPU" } else { "wall" }
    );
    opts.count_name = "samples".into();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), w)
        .map_err(|e| anyhow!("cannot draw the flame graph: {e}"))
}
