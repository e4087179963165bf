//! `rbscope heap ...`: heap dump analysis, the CLI side of `rbscope-heap`.
//!
//! Each subcommand opens the dump(s), runs one analysis of the pure crate with a progress bar on
//! a terminal, and prints text or JSON. The analyses live in `rbscope-heap`; this module only
//! chooses what to show and how.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbscope_heap::input::{Dump, Progress, ScanOptions, ScanStats};
use serde_json::Value;

mod count;
mod diff;
mod dump;
mod import;
mod live;
pub(crate) mod path;
mod strings;
pub(crate) mod summary;
pub(crate) mod top;
mod track;
mod watch;

/// `rbscope heap SUBCOMMAND`: dump files first, then the live process.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    Summary(summary::Args),
    Diff(diff::Args),
    Path(path::Args),
    Top(top::Args),
    Strings(strings::Args),
    Dump(dump::Args),
    Count(count::Args),
    Track(track::Args),
    Watch(watch::Args),
    Import(import::Args),
}

pub fn run(command: &Command) -> anyhow::Result<i32> {
    match command {
        Command::Summary(a) => summary::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Path(a) => path::run(a),
        Command::Top(a) => top::run(a),
        Command::Strings(a) => strings::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Count(a) => count::run(a),
        Command::Track(a) => track::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Import(a) => import::run(a),
    }
}

/// How a heap dump is read (every `rbscope heap` subcommand that reads dump files).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct HeapRead {
    /// Threads to read with (default: one per core).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Analyse a dump whose last record is cut off (a dump that was not finished), using the
    /// complete records before it.
    #[arg(long)]
    pub allow_truncated: bool,
}

/// A progress bar on standard error, drawn only on a terminal and only once an operation has
/// taken a second: quick runs and pipes print nothing extra.
pub(super) struct Bar {
    progress: &'static Progress,
    phase: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    fn start() -> Bar {
        let progress: &'static Progress = Box::leak(Box::default());
        let phase = Arc::new(Mutex::new(String::from("reading")));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let (phase, stop) = (phase.clone(), stop.clone());
            std::thread::spawn(move || draw(progress, &phase, &stop))
        });
        Bar {
            progress,
            phase,
            stop,
            thread,
        }
    }

    fn phase(&self, text: impl Into<String>) {
        if let Ok(mut p) = self.phase.lock() {
            *p = text.into();
        }
    }

    fn opts(&self, read: &HeapRead) -> ScanOptions<'static> {
        ScanOptions {
            jobs: read
                .jobs
                .unwrap_or_else(rbscope_heap::input::default_jobs)
                .max(1),
            progress: Some(self.progress),
            allow_truncated: read.allow_truncated,
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw(progress: &Progress, phase: &Mutex<String>, stop: &AtomicBool) {
    let started = Instant::now();
    let mut drawn = false;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let done = progress.done.load(Ordering::Relaxed);
        let total = progress.total.load(Ordering::Relaxed).max(1);
        let pct = (done as f64 / total as f64 * 100.0).min(100.0);
        let width = 30usize;
        let filled = (pct / 100.0 * width as f64) as usize;
        let text = phase.lock().map(|p| p.clone()).unwrap_or_default();
        eprint!(
            "\r\x1b[K{text} [{}{}] {pct:3.0}% of {}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            bytes(total)
        );
        drawn = true;
    }
    if drawn {
        eprint!("\r\x1b[K");
    }
}

pub(super) fn open(path: &Path) -> anyhow::Result<Dump> {
    Ok(Dump::open(path)?)
}

/// Warnings about lines that could not be read, on standard error.
pub(super) fn warn_unreadable(path: &Path, stats: &ScanStats) {
    if let Some((at, e)) = stats.first_unreadable {
        eprintln!(
            "rbscope: warning: {}: {} line(s) could not be read and were left out (the first, at byte {at}, {e})",
            path.display(),
            stats.unreadable
        );
    }
    if let Some(at) = stats.truncated_at {
        eprintln!(
            "rbscope: warning: {}: the dump is truncated at byte {at}; the records before it were analysed",
            path.display()
        );
    }
}

pub(super) fn print_json(v: &Value) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(0)
}

// ---------------------------------------------------------------- formatting

pub(super) use crate::views::numbers::{bytes, grouped as num};
