//! `rbscope heap watch -p PID`: dumps at intervals, then (with --diff) the leak hunt on them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use rbscope_proto::HeapDumpResult;

use super::live::{connect, request, result_json, result_line, DumpOptions};

/// Dump a running process's heap N times, EVERY apart, then (with --diff) compare the
/// dumps: the leak hunt in one command.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example: rbscope heap watch -p 4242 --every 60s -n 3 --diff")]
pub struct Args {
    /// The process (it must run the rbscope agent).
    #[arg(short, long)]
    pid: u32,
    /// Time between dumps (30s, 5m).
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse_ms)]
    every: i64,
    /// Dumps to take (2 or more; the diff uses the first, the middle and the last).
    #[arg(short = 'n', long = "count", default_value_t = 3)]
    count: usize,
    /// Compare the dumps when they are taken (`rbscope heap diff`).
    #[arg(long)]
    diff: bool,
    /// A directory for the dumps, as the process sees it (default: the agent's private
    /// directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<String>,
    /// Run a full GC before each dump.
    #[arg(long)]
    gc: bool,
    /// Groups to show in the diff.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    watch(
        a.pid,
        WatchOptions {
            every: Duration::from_millis(a.every.max(0) as u64),
            count: a.count,
            diff: a.diff,
            dir: a.dir.clone(),
            gc: a.gc,
            limit: a.limit,
            json: a.json,
        },
    )
}

struct WatchOptions {
    every: Duration,
    count: usize,
    diff: bool,
    dir: Option<String>,
    gc: bool,
    limit: usize,
    json: bool,
}

fn watch(pid: u32, w: WatchOptions) -> anyhow::Result<i32> {
    if w.count < 2 {
        bail!("watch takes at least 2 dumps (-n 2 or more)");
    }
    let mut client = connect(pid)?;
    let started = Instant::now();
    let mut results = Vec::new();
    for k in 0..w.count {
        if k > 0 {
            let due = started + w.every * k as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let output = w.dir.as_ref().map(|d| {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            format!("{}/heap-{pid}-{ms}-{}.json", d.trim_end_matches('/'), k + 1)
        });
        let r = client.heap_dump(request(&DumpOptions {
            output,
            gzip: false,
            gc: w.gc,
            in_process: false,
        }))?;
        if !w.json {
            eprintln!("dump {}/{}: {}", k + 1, w.count, result_line(pid, &r));
        }
        results.push(r);
    }
    if !w.diff {
        if w.json {
            let all: Vec<_> = results.iter().map(result_json).collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        } else {
            for r in &results {
                println!("{}", r.path);
            }
        }
        return Ok(0);
    }
    // The first, the middle and the last: what appeared, and what stayed.
    let picked: Vec<&HeapDumpResult> = if results.len() == 2 {
        results.iter().collect()
    } else {
        vec![
            &results[0],
            &results[results.len() / 2],
            &results[results.len() - 1],
        ]
    };
    let paths: Vec<PathBuf> = picked.iter().map(|r| readable(pid, &r.path)).collect();
    super::diff::diff_paths(&paths, w.limit, w.json)
}

/// The dump as this process can read it: the path the target wrote, or the same path under
/// its root (a process in another mount namespace).
fn readable(pid: u32, path: &str) -> PathBuf {
    let direct = PathBuf::from(path);
    if direct.exists() {
        return direct;
    }
    let under_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
    if under_root.exists() {
        under_root
    } else {
        direct
    }
}
