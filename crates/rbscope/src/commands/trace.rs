//! `rbscope trace -p PID ...`: method calls of a running process, as they happen;
//! `rbscope trace --ps PATTERN ...`: of every matching process (each line prefixed with its
//! PID), attaching to new ones (a restarted puma worker) as they appear.
//!
//! The agent installs hooks for what was asked and streams binary event records; this side
//! rebuilds each thread's calls (rbscope-trace's timeline) and prints them as text, JSON lines
//! or Chrome trace events. Ctrl-C (or `--for`) sends Detach and waits for the agent to say the
//! hooks are gone; if this process is killed instead, the agent sees the socket close and
//! removes them by itself.

use crate::agent_client::{self, NoAgent};
use crate::printable;
use anyhow::{bail, Context};
use rbscope_proto::{AgentMessage, TraceRequest};
use rbscope_trace::render::{self, Format};
use rbscope_trace::selector::Selector;
use rbscope_trace::timeline::Timeline;
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Trace method calls in a running process, nested per thread and timed.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Trace method calls in a running process through its agent, without \
        restarting it. Output: one line per call that made no traced calls \
        (`Foo#bar <12.0µs>`); a call that did opens a line, its calls follow \
        indented, and a closing line gives its duration. Durations exclude the tracer's \
        own time. Nesting is per thread (--show-threads prefixes each line with the \
        thread's OS id and name).\n\n\
        Selectors (-m, repeatable): Class#method, Class.method (singleton), Class# or \
        Class. (every method of its own), or a bare method name (that method on every \
        class that defines it); a leading ? makes one optional (reported, not an error, \
        when it names nothing loaded). --preset NAME adds a library's selectors (built-in \
        data files) and -c FILE reads them from a file, one per line. C methods are traced \
        by wrapping them, removed on detach. \
        Values to capture at call time go in parentheses: \
        'Foo#bar(self, arg, @ivar, arg.name.size)' -- self, arguments by name, instance \
        variables, then argument-less methods; never arbitrary code.\n\n\
        Only what is asked for is hooked. Events go through a bounded buffer: the app \
        never waits for this client. This client reads them as they come and keeps up to \
        512 MiB that the output has not taken yet (lines may then trail the app); past \
        that, events are dropped and the count is printed. Ctrl-C (or --for) detaches; if this command is killed, the \
        agent detaches by itself.",
    after_help = "Examples:\n  rbscope trace -p 4242 -m 'User#save' -m 'Net::HTTP#request'\n  rbscope trace -p 4242 --preset activerecord --preset net-http -c my-selectors.txt\n  rbscope trace -p 4242 -m 'Foo#bar(self, arg, @ivar)' --show-threads\n  rbscope trace -p 4242 --slow 50\n  rbscope trace -p 4242 -f --for 2s -o trace.json --format chrome"
)]
pub struct Args {
    /// The process to trace (it must run the rbscope agent).
    #[arg(short, long, required_unless_present = "ps", conflicts_with = "ps")]
    pid: Option<u32>,
    /// Trace every Ruby process of yours whose command line contains PATTERN (and those
    /// that start later, such as restarted puma workers); lines start with [PID].
    #[arg(long, value_name = "PATTERN")]
    ps: Option<String>,
    /// Trace every Ruby method call (C methods only when selected with -m).
    #[arg(short = 'f', long)]
    firehose: bool,
    #[command(flatten)]
    selection: Selection,
    /// Only print calls that took at least this many milliseconds (of the selected
    /// methods, or of every Ruby method without -m), indented by stack depth.
    #[arg(long, value_name = "MS")]
    slow: Option<u32>,
    /// Print each garbage collection with its duration (and marking's).
    #[arg(long)]
    gc: bool,
    #[command(flatten)]
    out: TraceOutput,
    /// Trace even though YJIT is on in a Ruby 3.1 process (it stays slower until restart).
    #[arg(long)]
    force: bool,
    /// Detach after this long (e.g. 10s, 2m) instead of waiting for Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = crate::duration::parse_ms)]
    duration: Option<i64>,
}

/// What to trace (`rbscope trace`, `rbscope run`): selectors given one by one, by preset, or
/// in files.
#[derive(clap::Args, Debug)]
pub struct Selection {
    /// A method selector, optionally with values to capture; repeatable.
    #[arg(short = 'm', long = "method", value_name = "SELECTOR")]
    pub methods: Vec<String>,
    /// Selectors for a library (its data file, built in); repeatable. A selector for
    /// something the app has not loaded is reported as not traced.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(crate::presets::NAMES))]
    pub preset: Vec<String>,
    /// Read selectors from FILE: one per line, `#` comments, a leading `?` marks one
    /// optional; repeatable.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
}

impl Selection {
    /// Every selector: those given with -m, then the presets', then the files'.
    pub fn selectors(&self) -> anyhow::Result<Vec<String>> {
        let mut all = self.methods.clone();
        for name in &self.preset {
            all.extend(crate::presets::preset(name).unwrap_or_default());
        }
        for file in &self.config {
            all.extend(crate::presets::file(file)?);
        }
        Ok(all)
    }
}

/// Where and how a trace is written.
#[derive(clap::Args, Debug)]
pub struct TraceOutput {
    /// Prefix each line with the thread's OS id and name.
    #[arg(long)]
    pub show_threads: bool,
    /// Write the trace to FILE (mode 0600) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// text (indented tree), jsonl (one event per line), or chrome (open in Perfetto).
    #[arg(long, default_value = "text", value_parser = str::parse::<Format>)]
    pub format: Format,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    trace(Options {
        pid: a.pid,
        ps: a.ps.clone(),
        firehose: a.firehose,
        selectors: a.selection.selectors()?,
        slow_ms: a.slow,
        gc: a.gc,
        show_threads: a.out.show_threads,
        output: a.out.output.clone(),
        format: a.out.format,
        force: a.force,
        duration: a.duration.map(|ms| Duration::from_millis(ms as u64)),
        wait_for_code: false,
    })
}

pub struct Options {
    /// One process (`-p`), or None with `ps` set.
    pub pid: Option<u32>,
    /// Every process whose command line contains this (`--ps`).
    pub ps: Option<String>,
    pub firehose: bool,
    pub selectors: Vec<String>,
    pub slow_ms: Option<u32>,
    pub gc: bool,
    pub show_threads: bool,
    pub output: Option<PathBuf>,
    pub format: Format,
    pub force: bool,
    pub duration: Option<Duration>,
    /// Selectors may name code not loaded yet (`rbscope run -m`): they wait for it.
    pub wait_for_code: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The longest a line of the trace waits in the output buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(30);

/// How long installing may wait for the app to give the agent a turn.
const ATTACH_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the agent to confirm the hooks are gone.
const DETACH_WAIT: Duration = Duration::from_secs(8);

fn trace(o: Options) -> anyhow::Result<i32> {
    let begun = Instant::now();
    for s in &o.selectors {
        Selector::parse(s)?;
    }
    if !o.firehose && o.selectors.is_empty() && o.slow_ms.is_none() && !o.gc {
        bail!("nothing to trace: give -f (every call), -m SELECTOR, --slow MS or --gc");
    }
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let out = open_output(&o)?;
    let until = o.duration.map(|d| Instant::now() + d);
    match (&o.ps, o.pid) {
        (Some(pattern), _) => many(&o, pattern, out, until),
        (None, Some(pid)) => {
            let (mut client, _) = attach(&o, pid)?;
            let renderer = render::renderer(o.format, out, o.show_threads, pid);
            let ended = follow(&mut client, renderer, pid, begun, until)?;
            Ok(report(pid, &ended))
        }
        (None, None) => bail!("say which process: -p PID or --ps PATTERN"),
    }
}

fn open_output(o: &Options) -> anyhow::Result<Box<dyn Write + Send>> {
    output_to(o.output.as_ref())
}

/// Standard output, or FILE (mode 0600), buffered (`-o`, shared with `rbscope log`).
pub(crate) fn output_to(output: Option<&PathBuf>) -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(match output {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            crate::output::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout())),
    })
}

/// Connects to `pid`'s agent and starts the trace; prints the "attached" line.
fn attach(
    o: &Options,
    pid: u32,
) -> anyhow::Result<(agent_client::Client, rbscope_proto::TraceStarted)> {
    let target = agent_client::locate(pid)?;
    let mut client = agent_client::connect(&target).map_err(|e| match e.downcast::<NoAgent>() {
        Ok(no) => anyhow::Error::new(NoAgent(format!(
            "{no}; tracing needs the agent (read stacks without it: rbscope stacks -p {pid} --remote)"
        ))),
        Err(e) => e,
    })?;
    let asked = Instant::now();
    let started = client.start_trace(TraceRequest {
        firehose: o.firehose,
        selectors: o.selectors.clone(),
        slow_ms: o.slow_ms,
        gc: o.gc,
        force: o.force,
        wait_ms: ATTACH_WAIT.as_millis() as u32,
        wait_for_code: o.wait_for_code,
    })?;
    eprintln!(
        "*** attached to process {pid} in {:.1} ms (clock: {}), tracing: {}",
        asked.elapsed().as_secs_f64() * 1000.0,
        printable(&started.clock),
        if started.hooked.is_empty() {
            "nothing (see below)".to_string()
        } else {
            printable(&started.hooked.join(", "))
        }
    );
    // What the agent says is shown one line each, whatever it holds.
    for s in &started.skipped {
        eprintln!("*** not traced in {pid}: {}", printable(s));
    }
    for s in &started.waiting {
        eprintln!("*** waiting for its code to load: {}", printable(s));
    }
    if started.hooked.is_empty() && started.waiting.is_empty() {
        let _ = client.send_detach();
        bail!("nothing to trace in process {pid}: no selector matched a loaded method (see the lines above)");
    }
    Ok((client, started))
}

/// How a followed trace ended.
struct Ended {
    calls: u64,
    events: u64,
    lost: u64,
    first_event: Option<Duration>,
    /// None when the agent confirmed the detach.
    trouble: Option<String>,
}

/// Reads one process's events into `renderer` until STOP, `until`, or the connection ends;
/// then detaches and waits for the agent to confirm.
fn follow<'w>(
    client: &mut agent_client::Client,
    mut renderer: Box<dyn render::Render + 'w>,
    pid: u32,
    begun: Instant,
    until: Option<Instant>,
) -> anyhow::Result<Ended> {
    let mut timeline = Timeline::default();
    let messages = client.stream_messages()?;
    let mut detach_by: Option<Instant> = None;
    let mut confirmed = false;
    let mut trouble: Option<String> = None;
    let mut first_event: Option<Duration> = None;
    // Output is buffered for throughput, and written out at least every FLUSH_EVERY and
    // whenever the stream goes quiet, so a terminal or a pipe sees each line within about
    // that time of its event.
    let mut flushed = Instant::now();
    loop {
        if flushed.elapsed() >= FLUSH_EVERY {
            renderer.flush().context("cannot write the trace")?;
            flushed = Instant::now();
        }
        if detach_by.is_none()
            && (STOP.load(Ordering::SeqCst) || until.is_some_and(|u| Instant::now() >= u))
        {
            if client.send_detach().is_err() {
                trouble = Some("the connection to the agent broke while detaching".into());
                break;
            }
            detach_by = Some(Instant::now() + DETACH_WAIT);
        }
        let message = match messages.try_recv() {
            Ok(m) => Ok(m),
            Err(_) => {
                // Nothing waiting: the stream is quiet, so what was written goes out now.
                renderer.flush().context("cannot write the trace")?;
                flushed = Instant::now();
                messages.recv_timeout(FLUSH_EVERY)
            }
        };
        match message {
            Ok(Ok(AgentMessage::Events(bytes))) => {
                let before = timeline.events;
                let mut failed = None;
                timeline
                    .feed(&bytes, |names, step| {
                        if let rbscope_trace::timeline::Step::Note(text) = &step {
                            // For the person, not the trace.
                            eprintln!("*** {}", printable(text));
                        } else if failed.is_none() {
                            failed = renderer.step(names, step).err();
                        }
                    })
                    .context("the agent sent events this rbscope cannot read")?;
                if let Some(e) = failed {
                    return Err(e).context("cannot write the trace");
                }
                if first_event.is_none() && timeline.events > before {
                    first_event = Some(begun.elapsed());
                }
            }
            Ok(Ok(AgentMessage::Detached(_))) => {
                confirmed = true;
                break;
            }
            Ok(Ok(AgentMessage::Busy(why))) | Ok(Ok(AgentMessage::Error(why))) => {
                trouble = Some(why);
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                trouble = Some(format!(
                    "process {pid} closed the connection (it exited, or its agent stopped)"
                ));
                break;
            }
            Err(RecvTimeoutError::Timeout) => {
                if detach_by.is_some_and(|d| Instant::now() >= d) {
                    trouble = Some(
                        "the agent did not confirm the detach in time; its hooks do nothing \
                         now and are removed at the app's next turn"
                            .into(),
                    );
                    break;
                }
            }
        }
    }
    renderer
        .finish(&timeline.names)
        .context("cannot write the trace")?;
    if !confirmed && trouble.is_none() {
        trouble = Some("the trace ended without the agent confirming the detach".into());
    }
    Ok(Ended {
        calls: timeline.calls,
        events: timeline.events,
        lost: timeline.lost,
        first_event,
        trouble,
    })
}

/// Prints how the trace of `pid` ended; the exit code.
fn report(pid: u32, e: &Ended) -> i32 {
    match &e.trouble {
        None => {
            eprintln!(
                "*** detached from process {pid}: {} calls traced, {} events{}{}",
                e.calls,
                e.events,
                e.first_event
                    .map(|d| format!(", first after {:.1} ms", d.as_secs_f64() * 1000.0))
                    .unwrap_or_default(),
                if e.lost > 0 {
                    format!(
                        ", {} events lost (this client did not keep up; try -o FILE or fewer selectors)",
                        e.lost
                    )
                } else {
                    String::new()
                }
            );
            0
        }
        Some(t) => {
            eprintln!("*** trace of process {pid} ended: {}", printable(t));
            1
        }
    }
}

/// Writes whole lines to a shared output, each prefixed with `[PID] `.
pub(crate) struct Prefixed {
    prefix: String,
    line: Vec<u8>,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Prefixed {
    pub(crate) fn new(pid: u32, out: Arc<Mutex<Box<dyn Write + Send>>>) -> Prefixed {
        Prefixed {
            prefix: format!("[{pid}] "),
            line: Vec::new(),
            out,
        }
    }
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &b in buf {
            self.line.push(b);
            if b == b'\n' {
                let mut out = self
                    .out
                    .lock()
                    .map_err(|_| io::Error::other("output lock"))?;
                // A blank line (between call trees) stays blank.
                if self.line.len() > 1 {
                    out.write_all(self.prefix.as_bytes())?;
                }
                out.write_all(&self.line)?;
                self.line.clear();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut out = self
            .out
            .lock()
            .map_err(|_| io::Error::other("output lock"))?;
        if !self.line.is_empty() {
            out.write_all(self.prefix.as_bytes())?;
            out.write_all(&self.line)?;
            out.write_all(b"\n")?;
            self.line.clear();
        }
        out.flush()
    }
}

/// The PIDs (not this process) whose command line contains `pattern`, that are Ruby processes
/// of this user.
pub(crate) fn matching(pattern: &str) -> Vec<u32> {
    let me = std::process::id();
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids.into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd: Vec<u8> = cmd.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
            String::from_utf8_lossy(&cmd).contains(pattern)
        })
        .filter(|&pid| {
            let owner = std::fs::metadata(format!("/proc/{pid}"))
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .unwrap_or(u32::MAX);
            uid == 0 || owner == uid
        })
        .filter(|&pid| agent_client::is_ruby(pid))
        .collect()
}

/// `--ps PATTERN`: every matching process with an agent, found again every second.
fn many(
    o: &Options,
    pattern: &str,
    out: Box<dyn Write + Send>,
    until: Option<Instant>,
) -> anyhow::Result<i32> {
    if o.format == render::Format::Chrome {
        bail!("--ps writes one stream for many processes: use --format text or jsonl");
    }
    let out = Arc::new(Mutex::new(out));
    let mut followed: HashMap<u32, std::thread::JoinHandle<i32>> = HashMap::new();
    let mut passed: HashMap<u32, String> = HashMap::new();
    let mut noted = std::collections::HashSet::new();
    let mut next_look = Instant::now();
    loop {
        if STOP.load(Ordering::SeqCst) || until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        if Instant::now() >= next_look {
            next_look = Instant::now() + Duration::from_secs(1);
            for pid in matching(pattern) {
                if followed.contains_key(&pid) || passed.contains_key(&pid) {
                    continue;
                }
                match attach(o, pid) {
                    Ok((mut client, _)) => {
                        let out = out.clone();
                        let format = o.format;
                        let show_threads = o.show_threads;
                        let handle = std::thread::spawn(move || {
                            let writer = Prefixed::new(pid, out);
                            let renderer =
                                render::renderer(format, Box::new(writer), show_threads, pid);
                            match follow(&mut client, renderer, pid, Instant::now(), until) {
                                Ok(ended) => report(pid, &ended),
                                Err(e) => {
                                    eprintln!(
                                        "*** trace of process {pid} failed: {}",
                                        crate::one_line(&e)
                                    );
                                    1
                                }
                            }
                        });
                        followed.insert(pid, handle);
                    }
                    Err(e) => {
                        // Said once. A process without the agent may start it later (a worker
                        // still booting): it is tried again; any other reason is final.
                        let no_agent = e.is::<NoAgent>();
                        if noted.insert(pid) {
                            eprintln!("*** process {pid} not traced: {}", crate::one_line(&e));
                        }
                        if !no_agent {
                            passed.insert(pid, e.to_string());
                        }
                    }
                }
            }
            if followed.is_empty() && noted.is_empty() {
                eprintln!(
                    "*** no Ruby process matches {pattern:?} yet; looking again every second"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    STOP.store(true, Ordering::SeqCst);
    let traced_any = !followed.is_empty();
    for (_, h) in followed {
        // A process that exited during the trace (a restarted worker) is not a failure.
        let _ = h.join();
    }
    if let Ok(mut w) = out.lock() {
        w.flush().context("cannot write the trace")?;
    }
    if traced_any {
        Ok(0)
    } else {
        eprintln!("*** nothing was traced: no matching process with the agent");
        Ok(1)
    }
}

/// `rbscope run -m ... -- CMD`: traces the child from its agent's start until it exits; the
/// child's exit status.
pub fn run_traced(mut o: Options, mut child: std::process::Child) -> anyhow::Result<i32> {
    let pid = child.id();
    o.pid = Some(pid);
    o.wait_for_code = true;
    // Readiness: the child's agent answers a handshake.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the program exited ({status}) before its agent started: nothing was traced");
        }
        let answered = agent_client::locate(pid)
            .and_then(|t| agent_client::connect_within(&t, Duration::from_millis(500)))
            .is_ok();
        if answered {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the program's agent did not start within 60 s (is it a Ruby program?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: installing a handler that only stores to an atomic (the program gets the
    // terminal's Ctrl-C too and decides for itself).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let out = open_output(&o)?;
    let (mut client, _) = attach(&o, pid)?;
    let renderer = render::renderer(o.format, out, o.show_threads, pid);
    let ended = follow(&mut client, renderer, pid, Instant::now(), None)?;
    let status = child.wait()?;
    eprintln!(
        "*** {} calls traced{}; the program exited ({status})",
        ended.calls,
        if ended.lost > 0 {
            format!(", {} events lost", ended.lost)
        } else {
            String::new()
        }
    );
    Ok(status.code().unwrap_or(1))
}
