//! `rbscope heap track -p PID start|stop`: allocation tracing on or off in a running process.

use super::live::connect;

/// Turn allocation tracing on or off in a running process, so that later dumps carry
/// each object's file, line and GC generation (it costs the app some speed while on).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process (it must run the rbscope agent).
    #[arg(short, long)]
    pid: u32,
    /// `start` records where and when each new object is allocated; `stop` ends it.
    #[arg(value_parser = ["start", "stop"])]
    action: String,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    track(a.pid, &a.action)
}

fn track(pid: u32, action: &str) -> anyhow::Result<i32> {
    let on = action == "start";
    let mut client = connect(pid)?;
    let (now, was) = client.heap_track(on)?;
    let state = if now { "on" } else { "off" };
    let before = match (was, now) {
        (true, true) => " (it already was)",
        (false, false) => " (rbscope had not turned it on)",
        _ => "",
    };
    println!("process {pid}: allocation tracing is {state}{before}");
    Ok(0)
}
