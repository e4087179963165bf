//! `rbscope trace -p PID ...`: method calls of a running process, as they happen.
//!
//! The agent installs hooks for what was asked and streams binary event records; this side
//! rebuilds each thread's calls (rbscope-trace's timeline) and prints them as text, JSON lines
//! or Chrome trace events. Ctrl-C (or `--for`) sends Detach and waits for the agent to say the
//! hooks are gone; if this process is killed instead, the agent sees the socket close and
//! removes them by itself.

use crate::agent_client::{self, NoAgent};
use anyhow::{anyhow, bail, Context};
use rbscope_proto::{AgentMessage, TraceRequest};
use rbscope_trace::render::{self, Format};
use rbscope_trace::selector::Selector;
use rbscope_trace::timeline::Timeline;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

pub struct Options {
    pub pid: u32,
    pub firehose: bool,
    pub selectors: Vec<String>,
    pub slow_ms: Option<u32>,
    pub gc: bool,
    pub show_threads: bool,
    pub output: Option<PathBuf>,
    pub format: Format,
    pub force: bool,
    pub duration: Option<Duration>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// How long installing may wait for the app to give the agent a turn.
const ATTACH_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the agent to confirm the hooks are gone.
const DETACH_WAIT: Duration = Duration::from_secs(8);

pub fn trace(o: Options) -> anyhow::Result<i32> {
    let begun = Instant::now();
    for s in &o.selectors {
        Selector::parse(s)?;
    }
    if !o.firehose && o.selectors.is_empty() && o.slow_ms.is_none() && !o.gc {
        bail!("nothing to trace: give -f (every call), -m SELECTOR, --slow MS or --gc");
    }
    let target = agent_client::locate(o.pid)?;
    let mut client = agent_client::connect(&target).map_err(|e| match e.downcast::<NoAgent>() {
        Ok(no) => anyhow!(
            "{no}; tracing needs the agent (read stacks without it: rbscope stacks -p {} --remote)",
            o.pid
        ),
        Err(e) => e,
    })?;
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let asked = Instant::now();
    let started = client.start_trace(TraceRequest {
        firehose: o.firehose,
        selectors: o.selectors.clone(),
        slow_ms: o.slow_ms,
        gc: o.gc,
        force: o.force,
        wait_ms: ATTACH_WAIT.as_millis() as u32,
    })?;
    eprintln!(
        "*** attached to process {} in {:.1} ms (clock: {}), tracing: {}",
        o.pid,
        asked.elapsed().as_secs_f64() * 1000.0,
        started.clock,
        if started.hooked.is_empty() {
            "nothing (see below)".to_string()
        } else {
            started.hooked.join(", ")
        }
    );
    for s in &started.skipped {
        eprintln!("*** not traced: {s}");
    }
    if started.hooked.is_empty() {
        let _ = client.send_detach();
        bail!("nothing to trace: no selector matched a loaded method (see the lines above)");
    }
    let out: Box<dyn Write> = match &o.output {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout())),
    };
    let mut renderer = render::renderer(o.format, out, o.show_threads, o.pid);
    let mut timeline = Timeline::default();
    let messages = client.stream_messages()?;
    let until = o.duration.map(|d| Instant::now() + d);
    let mut detach_by: Option<Instant> = None;
    let mut summary = None;
    let mut trouble: Option<String> = None;
    let mut first_event: Option<Duration> = None;
    loop {
        if detach_by.is_none()
            && (STOP.load(Ordering::SeqCst) || until.is_some_and(|u| Instant::now() >= u))
        {
            if client.send_detach().is_err() {
                trouble = Some("the connection to the agent broke while detaching".into());
                break;
            }
            detach_by = Some(Instant::now() + DETACH_WAIT);
        }
        match messages.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(AgentMessage::Events(bytes))) => {
                let before = timeline.events;
                let mut failed = None;
                timeline
                    .feed(&bytes, |names, step| {
                        if failed.is_none() {
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
            Ok(Ok(AgentMessage::Detached(s))) => {
                summary = Some(s);
                break;
            }
            Ok(Ok(AgentMessage::Busy(why))) => {
                trouble = Some(why);
                break;
            }
            Ok(Ok(AgentMessage::Error(e))) => {
                trouble = Some(e);
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                trouble = Some(format!(
                    "process {} closed the connection (it exited, or its agent stopped)",
                    o.pid
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
    let lost = timeline.lost;
    match (summary, trouble) {
        (Some(_), None) => {
            eprintln!(
                "*** detached from process {}: {} calls traced, {} events{}{}",
                o.pid,
                timeline.calls,
                timeline.events,
                first_event
                    .map(|d| format!(", first after {:.1} ms", d.as_secs_f64() * 1000.0))
                    .unwrap_or_default(),
                if lost > 0 {
                    format!(
                        ", {lost} events lost (this client did not keep up; try -o FILE or fewer selectors)"
                    )
                } else {
                    String::new()
                }
            );
            Ok(0)
        }
        (_, Some(t)) => {
            eprintln!("*** trace ended: {t}");
            Ok(1)
        }
        (None, None) => Ok(1),
    }
}
