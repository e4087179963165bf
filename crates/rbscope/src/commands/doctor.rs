//! `rbscope doctor [-p PID]`: is everything where it should be?

use crate::agent_client;
use crate::cli::Cli;
use crate::ruby_lib;
use rbscope_store::{Store, StoreError};
use std::process::Command;

pub fn doctor(cli: &Cli, pid: Option<u32>) -> anyhow::Result<i32> {
    println!("rbscope {}", env!("CARGO_PKG_VERSION"));
    let location = cli.store_location()?;
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
        Ok(lib) => {
            let check = Command::new("ruby")
                .arg(format!("-I{}", lib.display()))
                .args(["-e", "require 'rbscope'; print Rbscope::Native::VERSION"])
                .env("RBSCOPE_DISABLE", "")
                .output();
            match check {
                Ok(out) if out.status.success() => println!(
                    "agent     loads in `ruby` (version {}) from {}",
                    String::from_utf8_lossy(&out.stdout),
                    lib.display()
                ),
                Ok(out) => println!(
                    "agent     PROBLEM: `ruby` cannot load it from {}: {}",
                    lib.display(),
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                ),
                Err(e) => println!("agent     PROBLEM: cannot run ruby: {e}"),
            }
        }
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
