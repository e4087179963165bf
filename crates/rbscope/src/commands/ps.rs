//! `rbscope ps`: the Ruby processes this user may attach to, and whether each runs the agent.
//!
//! A process is a Ruby process when its program is named ruby* or it maps libruby. Its agent is
//! asked for a handshake (half a second at most), which also gives its Ruby and agent versions.

use crate::agent_client::{self, NoAgent};
use serde::Serialize;
use std::fs;
use std::time::Duration;

#[derive(Serialize)]
struct Row {
    pid: u32,
    uid: u32,
    ruby: String,
    agent: String,
    command: String,
}

fn uid_of(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
}

/// The Ruby version from the libruby the process maps (`libruby.so.3.1.2` gives 3.1.2).
fn mapped_ruby_version(pid: u32) -> Option<String> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let file = l.rsplit('/').next()?;
        let v = file.strip_prefix("libruby")?.split(".so.").nth(1)?;
        Some(v.to_string())
    })
}

fn command_line(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    text.join(" ")
}

/// List the Ruby processes you may attach to, and whether each runs the rbscope agent.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    ps(a.json)
}

fn ps(json: bool) -> anyhow::Result<i32> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mine = std::process::id();
    let mut pids: Vec<u32> = fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p| *p != mine)
        .collect();
    pids.sort_unstable();
    let mut rows = Vec::new();
    for pid in pids {
        let Some(uid) = uid_of(pid) else { continue };
        if me != 0 && uid != me {
            continue;
        }
        if !agent_client::is_ruby(pid) {
            continue;
        }
        let mut ruby = mapped_ruby_version(pid).unwrap_or_else(|| "?".into());
        let agent = match agent_client::locate(pid)
            .and_then(|t| agent_client::connect_within(&t, Duration::from_millis(500)))
        {
            Ok(client) => {
                ruby = client.welcome.ruby_version.clone();
                format!("agent {}", client.welcome.agent_version)
            }
            Err(e) if e.is::<NoAgent>() => "no agent".to_string(),
            Err(e) => {
                let text = e.to_string();
                if text.contains("protocol") {
                    "agent (other protocol version)".to_string()
                } else {
                    "agent not answering".to_string()
                }
            }
        };
        let command = command_line(pid);
        if command.is_empty() {
            continue;
        }
        rows.push(Row {
            pid,
            uid,
            ruby,
            agent,
            command,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!(
            "no Ruby processes{}",
            if me == 0 { "" } else { " of this user" }
        );
        return Ok(0);
    }
    println!(
        "{:>7}  {:>5}  {:<8}  {:<22}  COMMAND",
        "PID", "UID", "RUBY", "AGENT"
    );
    for r in rows {
        let mut cmd = r.command;
        if cmd.len() > 100 {
            let mut end = 100;
            while !cmd.is_char_boundary(end) {
                end -= 1;
            }
            cmd.truncate(end);
            cmd.push('…');
        }
        println!(
            "{:>7}  {:>5}  {:<8}  {:<22}  {cmd}",
            r.pid, r.uid, r.ruby, r.agent
        );
    }
    Ok(0)
}
