//! `rbscope eval -p PID CODE`: run Ruby code in a running process and print the result.
//!
//! The app must have opted in (`Rbscope.start(allow_eval: true)` or `RBSCOPE_ALLOW_EVAL=1`).
//! The code runs on a thread of its own inside the process (in the Rails executor when Rails
//! is loaded); the result's `inspect` is printed whole on stdout, an exception with its
//! backtrace on stderr (exit 1).

use crate::agent_client;
use std::time::Duration;

/// Evaluate Ruby code inside a running process and print the result's inspect.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Evaluate Ruby code inside a running process (through its agent) and \
        print the result's inspect on stdout, whole. An exception is printed with its \
        backtrace on stderr, exit status 1.\n\n\
        The app must allow it: Rbscope.start(allow_eval: true), or RBSCOPE_ALLOW_EVAL=1 \
        in its environment. The code runs on a new thread of its own (no app thread is \
        interrupted or woken), inside Rails.application.executor when Rails is loaded, \
        with the app's privileges. Past --timeout the thread is killed.",
    after_help = "Example: rbscope eval -p 4242 'User.count'"
)]
pub struct Args {
    /// The process to evaluate in.
    #[arg(short, long)]
    pid: u32,
    /// The Ruby code.
    code: String,
    /// Give up (and kill the eval's thread) after this long.
    #[arg(long, default_value = "10s", value_parser = crate::duration::parse_ms)]
    timeout: i64,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    eval(a.pid, &a.code, Duration::from_millis(a.timeout as u64))
}

fn eval(pid: u32, code: &str, timeout: Duration) -> anyhow::Result<i32> {
    let target = agent_client::locate(pid)?;
    let mut client = agent_client::connect(&target)?;
    let result = client.eval(code, timeout)?;
    if result.ok {
        println!("{}", result.text);
        Ok(0)
    } else {
        eprintln!("{}", result.text);
        Ok(1)
    }
}
