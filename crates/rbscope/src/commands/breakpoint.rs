//! `rbscope break -p PID FILE:LINE`: a non-breaking breakpoint, through the agent. Each time the
//! line runs, the agent stores a live snapshot of that thread (kind `breakpoint`) and the thread
//! goes on; this prints each snapshot's id as it is stored, and ends after `--max` hits or
//! `--for`. The breakpoint lives as long as this connection: Ctrl-C, SIGTERM or a killed client
//! removes it.

use crate::agent_client;
use anyhow::{bail, Context as _};
use rbscope_proto::{AgentMessage, BreakRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
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
        command ends (Ctrl-C, SIGTERM, killed).",
    after_help = "Examples: rbscope break -p 4242 app/models/order.rb:42\n          \
        rbscope break -p 4242 /srv/app/lib/billing.rb:17 --max 5 --for 1h\n          \
        rbscope break -p 4242 app/models/order.rb:42 --if 'total > 100 and @state == :paid'"
)]
pub struct Args {
    /// The process (it must run the rbscope agent; `rbscope inject -p PID` loads it).
    #[arg(short, long)]
    pid: u32,
    /// The line: FILE:LINE (FILE absolute, or relative to the app root).
    #[arg(value_name = "FILE:LINE")]
    at: String,
    /// Fire only when this holds: captured values (locals and arguments, @ivars, self, and
    /// method chains like order.total when the app allows eval) compared with literals
    /// (== != < > <= >= =~ /re/ !~ nil?), joined by and/or/not; nothing is run as Ruby.
    #[arg(long = "if", value_name = "CONDITION")]
    condition: Option<String>,
    /// Snapshots at most: the breakpoint is removed after this many hits.
    #[arg(long, default_value_t = 1)]
    max: u32,
    /// How long the breakpoint stays at most.
    #[arg(long = "for", value_name = "DURATION", default_value = "10m", value_parser = crate::duration::parse_ms)]
    for_: i64,
    /// Set it even though YJIT is on in a Ruby 3.1 process (it stays slower until restart).
    #[arg(long)]
    force: bool,
    /// How long to wait for the VM to give the agent a turn to set it.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::duration::parse_ms)]
    wait: i64,
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
    let (file, line) = parse_at(&a.at)?;
    if a.max == 0 {
        bail!("--max must be at least 1");
    }
    if a.for_ <= 0 {
        bail!("--for must be more than 0");
    }
    if let Some(c) = &a.condition {
        rbscope_trace::condition::parse(c).map_err(|e| anyhow::anyhow!("--if: {e}"))?;
    }
    let target = agent_client::locate(a.pid)?;
    let mut client = agent_client::connect(&target)?;
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let wait_ms = a.wait.clamp(1, 60_000) as u32;
    let set = client.set_break(BreakRequest {
        file,
        line,
        max: a.max,
        for_ms: a.for_ as u64,
        wait_ms,
        condition: a.condition.clone(),
        force: a.force,
    })?;
    match &set.waiting {
        Some(why) => eprintln!("rbscope: {why}"),
        None => eprintln!(
            "rbscope: breakpoint set at {}:{} (hooked {}); waiting for it to run",
            set.file, set.line, set.hooked
        ),
    }
    let messages = client.stream_messages()?;
    // The agent ends it by itself (--max, --for); this is a backstop.
    let backstop = Instant::now() + Duration::from_millis(a.for_ as u64) + Duration::from_secs(10);
    loop {
        if STOP.load(Ordering::SeqCst) {
            // Closing the connection removes the breakpoint.
            drop(client);
            eprintln!("rbscope: stopped; the breakpoint is removed");
            return Ok(0);
        }
        if Instant::now() > backstop {
            bail!("the agent did not end the breakpoint in time");
        }
        match messages.recv_timeout(Duration::from_millis(50)) {
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                bail!("the connection to the agent ended (did the process exit?)")
            }
            Ok(Err(e)) => {
                return Err(e).context("the connection to the agent ended (did the process exit?)")
            }
            Ok(Ok(AgentMessage::BreakHit(hit))) => match (&hit.id, &hit.note) {
                (Some(id), _) => println!("{id}"),
                (None, note) => eprintln!(
                    "rbscope: hit {}: {}",
                    hit.n,
                    note.as_deref().unwrap_or("not stored")
                ),
            },
            Ok(Ok(AgentMessage::BreakNote(note))) => eprintln!("rbscope: {note}"),
            Ok(Ok(AgentMessage::BreakEnded(why))) => {
                eprintln!(
                    "rbscope: breakpoint removed: {why}; see the snapshots with `rbscope show ID`"
                );
                return Ok(0);
            }
            Ok(Ok(other)) => bail!("unexpected message from the agent: {other:?}"),
        }
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
