//! `rbscope break -p PID FILE:LINE`: a non-breaking breakpoint, through the agent. Each time the
//! line runs, the agent stores a live snapshot of that thread (kind `breakpoint`) and the thread
//! goes on; this prints each snapshot's id as it is stored, and ends after `--max` hits or
//! `--for`. The breakpoint lives as long as this connection: Ctrl-C or SIGTERM ends it (the
//! agent says what it skipped), a killed client removes it too.
//!
//! `rbscope log` (commands/log.rs) sets the same kind of point with values to print instead of
//! snapshots; both run through [`run_point`] here, for one process (`-p`) or every matching one
//! (`--ps`, found again every second as `trace --ps` does, with trace.rs's `matching`).

use crate::agent_client::{self, NoAgent};
use crate::commands::trace::{matching, output_to, Prefixed};
use crate::printable;
use anyhow::{bail, Context as _};
use rbscope_proto::{AgentMessage, BreakRequest, PointRequest};
use rbscope_trace::render::{self, Format};
use rbscope_trace::timeline::{Names, Step};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Set a non-breaking breakpoint in a running process: a snapshot of the thread each time the
/// line runs.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Set a non-breaking breakpoint in a running process, through its agent: each \
        time FILE:LINE runs, the agent stores a live snapshot of that thread (every app frame \
        with self, locals, the objects they reach and source lines, as an exception snapshot, \
        listed as (breakpoint)) and the thread goes on. Only that line of that method or block \
        is hooked (a TracePoint targeted at its instruction sequence): other code runs as \
        before. FILE is absolute, or relative to the app root or the process's working \
        directory. A line in a method whose file is not loaded yet waits for it; a file loaded \
        again (load, a Rails reload) is hooked again. Each snapshot id is printed as it is \
        stored; the breakpoint is removed after --max hits, when --for is over, or when this \
        command ends (Ctrl-C, SIGTERM, killed). --every spaces the snapshots out: the hits \
        between are skipped inside the app and counted. --ps sets it in every matching \
        process (and in those that start later), each line prefixed with [PID].",
    after_help = "Examples: rbscope break -p 4242 app/models/order.rb:42\n          \
        rbscope break -p 4242 /srv/app/lib/billing.rb:17 --max 5 --for 1h\n          \
        rbscope break -p 4242 app/models/order.rb:42 --if 'total > 100 and @state == :paid'\n          \
        rbscope break --ps puma app/models/order.rb:42 --max 10 --every 1m"
)]
pub struct Args {
    #[command(flatten)]
    point: PointArgs,
    /// Snapshots at most: the breakpoint is removed after this many hits.
    #[arg(long, default_value_t = 1)]
    max: u32,
}

/// What `break` and `log` share: where, in which processes, and when a hit counts.
#[derive(clap::Args, Debug)]
pub struct PointArgs {
    /// The process (it must run the rbscope agent; `rbscope inject -p PID` loads it).
    #[arg(short, long, required_unless_present = "ps", conflicts_with = "ps")]
    pid: Option<u32>,
    /// Every Ruby process of yours whose command line contains PATTERN and that runs the
    /// agent (and those that start later, such as restarted puma workers); lines start with
    /// [PID].
    #[arg(long, value_name = "PATTERN")]
    ps: Option<String>,
    /// The line: FILE:LINE (FILE absolute, or relative to the app root).
    #[arg(value_name = "FILE:LINE")]
    at: String,
    /// Fire only when this holds: captured values (locals and arguments, @ivars, self, and
    /// method chains like order.total when the app allows eval) compared with literals
    /// (== != < > <= >= =~ /re/ !~ nil?), joined by and/or/not; nothing is run as Ruby.
    #[arg(long = "if", value_name = "CONDITION")]
    condition: Option<String>,
    /// At most one hit per DURATION (e.g. 500ms, 10s, 1m): the hits between are skipped inside
    /// the app (cheaply, before any value is read) and counted.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_ms)]
    every: Option<i64>,
    /// How long it stays at most.
    #[arg(long = "for", value_name = "DURATION", default_value = "10m", value_parser = crate::duration::parse_ms)]
    for_: i64,
    /// Set it even though YJIT is on in a Ruby 3.1 process (it stays slower until restart).
    #[arg(long)]
    force: bool,
    /// How long to wait for the VM to give the agent a turn to set it.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::duration::parse_ms)]
    wait: i64,
}

/// Where a logpoint's hits go (`rbscope log`'s output options, as `trace`'s).
pub struct LogOutput {
    pub format: Format,
    pub show_threads: bool,
    pub output: Option<PathBuf>,
}

/// A checked breakpoint or logpoint, ready to set in any number of processes.
pub struct Plan {
    /// As the user wrote FILE:LINE (a logpoint's lines start with it).
    at: String,
    request: PointRequest,
    /// A logpoint's output; None for a breakpoint.
    log: Option<LogOutput>,
    pid: Option<u32>,
    ps: Option<String>,
}

impl Plan {
    /// Checks the shared arguments and `values` (empty for a breakpoint); `max` 0: no limit
    /// (logpoints only). Every error is one line.
    pub fn new(
        p: &PointArgs,
        max: u32,
        values: &[String],
        log: Option<LogOutput>,
    ) -> anyhow::Result<Plan> {
        let (file, line) = parse_at(&p.at)?;
        if max == 0 && log.is_none() {
            bail!("--max must be at least 1");
        }
        if p.for_ <= 0 {
            bail!("--for must be more than 0");
        }
        let every_ms = match p.every {
            Some(ms) if ms <= 0 => bail!("--every must be more than 0 (e.g. 500ms, 10s, 1m)"),
            Some(ms) => ms as u64,
            None => 0,
        };
        if let Some(c) = &p.condition {
            rbscope_trace::condition::parse(c).map_err(|e| anyhow::anyhow!("--if: {e}"))?;
        }
        for v in values {
            rbscope_trace::selector::Capture::parse(v)
                .map_err(|e| anyhow::anyhow!("value {v:?} does not parse: {e}"))?;
        }
        if let (Some(l), Some(_)) = (&log, &p.ps) {
            if l.format == Format::Chrome {
                bail!("--ps writes one stream for many processes: use --format text or jsonl");
            }
        }
        Ok(Plan {
            at: p.at.clone(),
            request: PointRequest {
                at: BreakRequest {
                    file,
                    line,
                    max,
                    for_ms: p.for_ as u64,
                    wait_ms: p.wait.clamp(1, 60_000) as u32,
                    condition: p.condition.clone(),
                    force: p.force,
                },
                every_ms,
                values: values.to_vec(),
            },
            log,
            pid: p.pid,
            ps: p.ps.clone(),
        })
    }

    fn noun(&self) -> &'static str {
        if self.log.is_some() {
            "logpoint"
        } else {
            "breakpoint"
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// FILE:LINE split at its last colon; the error is one line.
pub fn parse_at(at: &str) -> anyhow::Result<(String, u32)> {
    let Some((file, line)) = at.rsplit_once(':') else {
        bail!("{at}: give the line as FILE:LINE (app/models/order.rb:42)");
    };
    let line: u32 = match line.parse() {
        Ok(n) if n > 0 => n,
        _ => bail!("{at}: the line after the colon must be a number from 1 (FILE:LINE)"),
    };
    if file.is_empty() {
        bail!("{at}: no file before the colon (FILE:LINE)");
    }
    Ok((file.to_string(), line))
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    run_point(Plan::new(&a.point, a.max, &[], None)?)
}

/// Sets the point in `-p`'s process, or in every `--ps` match, and follows its hits until it
/// ends; the exit code.
pub fn run_point(plan: Plan) -> anyhow::Result<i32> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let out = output_to(plan.log.as_ref().and_then(|l| l.output.as_ref()))?;
    match (plan.ps.clone(), plan.pid) {
        (Some(pattern), _) => many(Arc::new(plan), &pattern, out),
        (None, Some(pid)) => {
            follow(&plan, pid, out, "rbscope: ")?;
            Ok(0)
        }
        (None, None) => bail!("say which process: -p PID or --ps PATTERN"),
    }
}

/// Sets the point in `pid` and writes its hits to `out` (snapshot ids, or a logpoint's lines
/// through rbscope-trace's renderer) until it ends; `say` starts each line on stderr.
fn follow(plan: &Plan, pid: u32, out: Box<dyn Write + Send>, say: &str) -> anyhow::Result<()> {
    let target = agent_client::locate(pid)?;
    let mut client = agent_client::connect(&target)?;
    let noun = plan.noun();
    let set = client.set_point(plan.request.clone())?;
    match &set.waiting {
        Some(why) => eprintln!("{say}{}", printable(why)),
        None => eprintln!(
            "{say}{noun} set at {}:{} (hooked {}); waiting for it to run",
            printable(&set.file),
            set.line,
            printable(&set.hooked)
        ),
    }
    let messages = client.stream_messages()?;
    // The renderer writes into `out` through a handle this loop keeps, to flush what it wrote
    // at least every FLUSH_EVERY (the lines appear as the hits come, not when a buffer fills).
    let out = Arc::new(Mutex::new(out));
    let (mut ids, mut renderer) = match &plan.log {
        Some(l) => {
            let w = Box::new(Shared(out.clone()));
            (
                None,
                Some(render::renderer(l.format, w, l.show_threads, pid)),
            )
        }
        None => (Some(Shared(out.clone())), None),
    };
    let mut flushed = Instant::now();
    let names = Names::default();
    // The agent ends it by itself (--max, --for); this is a backstop.
    let backstop =
        Instant::now() + Duration::from_millis(plan.request.at.for_ms) + Duration::from_secs(10);
    let mut detach_by: Option<Instant> = None;
    let result = loop {
        if detach_by.is_none() && STOP.load(Ordering::SeqCst) {
            // The agent removes it and says what it skipped; closing would remove it too.
            if client.send_detach().is_err() {
                break Ok(());
            }
            detach_by = Some(Instant::now() + Duration::from_secs(5));
        }
        if detach_by.is_some_and(|d| Instant::now() > d) {
            eprintln!("{say}stopped; the {noun} is removed");
            break Ok(());
        }
        if Instant::now() > backstop {
            break Err(anyhow::anyhow!("the agent did not end the {noun} in time"));
        }
        if flushed.elapsed() >= FLUSH_EVERY {
            flushed = Instant::now();
            if let Err(e) = out
                .lock()
                .map_err(|_| anyhow::anyhow!("output lock"))
                .and_then(|mut w| Ok(w.flush()?))
            {
                break Err(e).context("cannot write the output");
            }
        }
        match messages.recv_timeout(Duration::from_millis(50)) {
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) | Ok(Err(_)) if detach_by.is_some() => {
                eprintln!("{say}stopped; the {noun} is removed");
                break Ok(());
            }
            Err(RecvTimeoutError::Disconnected) | Ok(Err(_)) => {
                break Err(anyhow::anyhow!(
                    "the connection to the agent ended (did process {pid} exit?)"
                ))
            }
            Ok(Ok(AgentMessage::BreakHit(hit))) => match (&hit.id, &hit.note, ids.as_mut()) {
                (Some(id), _, Some(w)) => {
                    let wrote = writeln!(w, "{}", printable(id)).and_then(|_| w.flush());
                    if let Err(e) = wrote {
                        break Err(e).context("cannot write the snapshot ids");
                    }
                }
                (_, note, _) => eprintln!(
                    "{say}hit {}: {}",
                    hit.n,
                    printable(note.as_deref().unwrap_or("not stored"))
                ),
            },
            Ok(Ok(AgentMessage::LogHit(h))) => {
                if let Some(r) = renderer.as_mut() {
                    let step = Step::Log {
                        tid: h.tid.map_or(0, i64::from),
                        thread: printable(&h.thread),
                        t: h.t_ns,
                        at: plan.at.clone(),
                        values: h.values,
                    };
                    if let Err(e) = r.step(&names, step) {
                        break Err(e).context("cannot write the log");
                    }
                }
            }
            Ok(Ok(AgentMessage::BreakNote(note))) => eprintln!("{say}{}", printable(&note)),
            Ok(Ok(AgentMessage::BreakEnded(why))) => {
                let tail = if plan.log.is_some() {
                    ""
                } else {
                    "; see the snapshots with `rbscope show ID`"
                };
                // What was printed goes out before the line that says it is over.
                if let Ok(mut w) = out.lock() {
                    let _ = w.flush();
                }
                eprintln!("{say}{noun} removed: {}{tail}", printable(&why));
                break Ok(());
            }
            Ok(Ok(other)) => {
                break Err(anyhow::anyhow!(
                    "unexpected message from the agent: {other:?}"
                ))
            }
        }
    };
    if let Some(mut r) = renderer {
        r.finish(&names).context("cannot write the log")?;
    }
    if let Some(mut w) = ids {
        w.flush().context("cannot write the snapshot ids")?;
    }
    result
}

/// How often what a logpoint wrote is flushed, at most.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A writer shared with the loop that flushes it.
struct Shared(Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("output lock"))?
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("output lock"))?
            .flush()
    }
}

/// `--ps PATTERN`: the point in every matching process with an agent, found again every
/// second (a restarted worker gets it too), until --for is over or Ctrl-C.
fn many(plan: Arc<Plan>, pattern: &str, out: Box<dyn Write + Send>) -> anyhow::Result<i32> {
    let out = Arc::new(Mutex::new(out));
    let until = Instant::now() + Duration::from_millis(plan.request.at.for_ms);
    let mut followed: HashMap<u32, std::thread::JoinHandle<()>> = HashMap::new();
    let mut passed: HashSet<u32> = HashSet::new();
    let mut noted = HashSet::new();
    let mut next_look = Instant::now();
    let noun = plan.noun();
    while !STOP.load(Ordering::SeqCst) && Instant::now() < until {
        if Instant::now() >= next_look {
            next_look = Instant::now() + Duration::from_secs(1);
            for pid in matching(pattern) {
                if followed.contains_key(&pid) || passed.contains(&pid) {
                    continue;
                }
                // Is the agent there? Said once; a process still booting is tried again.
                let reachable = agent_client::locate(pid)
                    .and_then(|t| agent_client::connect_within(&t, Duration::from_secs(2)));
                if let Err(e) = reachable {
                    if noted.insert(pid) {
                        eprintln!("rbscope: [{pid}] not set: {}", crate::one_line(&e));
                    }
                    if !e.is::<NoAgent>() {
                        passed.insert(pid);
                    }
                    continue;
                }
                let (plan, out) = (plan.clone(), out.clone());
                let handle = std::thread::spawn(move || {
                    let say = format!("rbscope: [{pid}] ");
                    let writer = Box::new(Prefixed::new(pid, out));
                    if let Err(e) = follow(&plan, pid, writer, &say) {
                        eprintln!("{say}{}", crate::one_line(&e));
                    }
                });
                followed.insert(pid, handle);
            }
            if followed.is_empty() && noted.is_empty() {
                eprintln!(
                    "rbscope: no Ruby process matches {pattern:?} yet; looking again every second"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    STOP.store(true, Ordering::SeqCst);
    let set_any = !followed.is_empty();
    for (_, h) in followed {
        let _ = h.join();
    }
    if let Ok(mut w) = out.lock() {
        w.flush().context("cannot write the output")?;
    }
    if set_any {
        Ok(0)
    } else {
        eprintln!("rbscope: no {noun} was set: no matching process with the agent");
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_line_are_split_at_the_last_colon() {
        assert_eq!(parse_at("app/a.rb:12").unwrap(), ("app/a.rb".into(), 12));
        assert_eq!(parse_at("C:/x.rb:3").unwrap(), ("C:/x.rb".into(), 3));
        for bad in [
            "app/a.rb",
            "app/a.rb:",
            "app/a.rb:0",
            "a.rb:x",
            ":3",
            "a.rb:-1",
        ] {
            let e = parse_at(bad).unwrap_err().to_string();
            assert!(e.starts_with(bad) && !e.contains('\n'), "{bad}: {e}");
        }
    }
}
