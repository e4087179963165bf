//! `rbscope doctor [-p PID]`: is everything where it should be?

use super::store_args::StoreArgs;
use crate::agent_client;
use crate::ruby_lib;
use rbscope_store::{Store, StoreError};
use std::process::Command;

/// Check the set-up: the store, the Ruby agent, and with -p a running process's agent.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A running process to ask for its agent's state and counters.
    #[arg(short, long)]
    pid: Option<u32>,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    let pid = a.pid;
    println!("rbscope {}", env!("CARGO_PKG_VERSION"));
    let location = a.store.location()?;
    let place = location.describe();
    match Store::open_existing(&location) {
        Ok(mut store) => {
            let st = store.stats()?;
            println!(
                "store     {}  ({} snapshots, {} bytes of snapshots, {} {} bytes)",
                place,
                st.snapshots,
                st.snapshot_bytes,
                match location {
                    rbscope_store::StoreLocation::Sqlite(_) => "file",
                    rbscope_store::StoreLocation::Postgres(_) => "table",
                },
                st.file_bytes
            );
        }
        Err(StoreError::Missing(_)) => {
            println!(
                "store     {}  (not created yet: the first snapshot creates it)",
                place
            )
        }
        Err(e) => println!("store     {}  PROBLEM: {e}", place),
    }
    match ruby_lib::find() {
        Ok(lib) => agent_in_ruby(&lib),
        Err(e) => println!("agent     PROBLEM: {e:#}"),
    }
    let Some(pid) = pid else { return Ok(0) };
    let target = agent_client::locate(pid)?;
    let mut client = agent_client::connect(&target)?;
    let status = client.status()?;
    let w = &client.welcome;
    println!(
        "process   {pid}: agent {} started on Ruby {} (protocol {}), socket {}",
        w.agent_version,
        w.ruby_version,
        w.protocol_version,
        target.socket.display()
    );
    println!("          store {}", status.store);
    for warning in &status.warnings {
        println!("          warning: {warning}");
    }
    println!("settings");
    for (k, v) in &status.settings {
        println!("  {k:<24} {v}");
    }
    println!("counters");
    for (k, v) in &status.counters {
        println!("  {k:<24} {v}");
    }
    Ok(0)
}

/// The Ruby one-liner `doctor` runs: the agent's version, or why it is off.
const AGENT_PROBE: &str = "require 'rbscope'; problem = Rbscope.agent_problem; \
    print(problem ? \"off\\t#{RUBY_VERSION}\\t#{problem}\" : \"on\\t#{RUBY_VERSION}\\t#{Rbscope::Native::VERSION}\")";

/// What the app loses when the agent is off (everything else works without it).
const OFF_FEATURES: &str = "snapshots, better backtraces, Rbscope.backtrace, restore, and \
    live attach through the agent (trace, eval, console, memory, heap dump/count/track/watch); \
    still working: list, show, ui, heap analysis, stacks --remote, record";

/// What `require "rbscope"` gives the `ruby` on PATH: the agent, or why it is off and what
/// that turns off.
fn agent_in_ruby(lib: &std::path::Path) {
    let check = Command::new("ruby")
        .arg(format!("-I{}", lib.display()))
        .args(["-e", AGENT_PROBE])
        .env("RBSCOPE_DISABLE", "")
        .env_remove("RUBYOPT")
        .output();
    let out = match check {
        Ok(out) => out,
        Err(e) => return println!("agent     PROBLEM: cannot run ruby: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.splitn(3, '\t');
    match (
        out.status.success(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (true, Some("on"), Some(ruby), Some(version)) => println!(
            "agent     {version} loads in `ruby` (Ruby {ruby}) from {}",
            lib.display()
        ),
        (true, Some("off"), Some(ruby), Some(reason)) => {
            println!("agent     OFF in `ruby` (Ruby {ruby}): {reason}");
            println!("          off: {OFF_FEATURES}");
        }
        _ => println!(
            "agent     PROBLEM: `ruby` cannot load rbscope from {}: {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ),
    }
}
