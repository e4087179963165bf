//! `rbscope log -p PID FILE:LINE VALUE...`: a logpoint, through the agent. Each time the line
//! runs, the agent reads the values (as trace captures and breakpoint conditions name them),
//! renders them without calling the app's `inspect`, and sends them here, where they are
//! written as `trace` writes its events (text, jsonl, chrome; -o; --show-threads). It is a
//! breakpoint whose hit reads values instead of storing a snapshot: commands/breakpoint.rs sets
//! and follows it.

use crate::commands::breakpoint::{run_point, LogOutput, Plan, PointArgs};
use crate::commands::trace::TraceOutput;
use anyhow::bail;

/// Print values each time a line runs in a running process (a logpoint), without a restart.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Set a logpoint in a running process, through its agent: each time FILE:LINE \
        runs, the agent reads the VALUEs there and this prints them, one line per hit \
        (`app/models/order.rb:42  order.id=5  @user.email=\"a@b.c\"`), or as JSON lines or \
        Chrome trace events, like `rbscope trace`. A VALUE is self, a local variable or \
        argument, an @ivar, or a chain of argument-less methods on one (order.total, \
        @user.email) when the app allows eval (Rbscope.start(allow_eval: true)); otherwise a \
        chain is not read and a note says why, once. Nothing is run as Ruby, and values are \
        shown by walking the objects (strings cut, collections' first items, objects' class \
        and first instance variables), never by calling the app's inspect; a value whose name \
        looks secret (password, token ...) is redacted as snapshots redact it. The line is \
        resolved and hooked as `rbscope break` does (only that line of that method or block; \
        a file not loaded yet is waited for; a reloaded file is hooked again). Hits go \
        through a bounded mailbox: the app never waits for this client; hits it could not \
        keep are dropped and counted.",
    after_help = "Examples: rbscope log -p 4242 app/models/order.rb:42 order.id @user.email\n          \
        rbscope log -p 4242 app/models/order.rb:42 self total --if 'total > 100' --max 20\n          \
        rbscope log --ps puma app/models/order.rb:42 order.id --every 1s --format jsonl -o hits.jsonl"
)]
pub struct Args {
    #[command(flatten)]
    point: PointArgs,
    /// The values to print at each hit: self, a local or argument, an @ivar, method chains
    /// (order.total) when the app allows eval.
    #[arg(value_name = "VALUE")]
    values: Vec<String>,
    /// Hits at most: the logpoint is removed after this many (default: no limit).
    #[arg(long)]
    max: Option<u32>,
    #[command(flatten)]
    out: TraceOutput,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    if a.values.is_empty() {
        bail!("no values to print: give them after FILE:LINE (e.g. order.id @user.email self)");
    }
    if a.max == Some(0) {
        bail!("--max must be at least 1 (leave it out for no limit)");
    }
    let log = LogOutput {
        format: a.out.format,
        show_threads: a.out.show_threads,
        output: a.out.output.clone(),
    };
    run_point(Plan::new(
        &a.point,
        a.max.unwrap_or(0),
        &a.values,
        Some(log),
    )?)
}
