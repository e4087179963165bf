//! `rbscope list`: the newest snapshots, one line each.

use crate::cli::Cli;
use crate::time::format_ms;
use anyhow::Context;
use rbscope_store::{SqliteStore, StoreError};

pub fn list(cli: &Cli, limit: usize, json: bool) -> anyhow::Result<i32> {
    let path = cli.store_path()?;
    let store = match SqliteStore::open_existing(&path) {
        Ok(s) => s,
        Err(StoreError::Missing(p)) => {
            if json {
                println!("[]");
            } else {
                println!("No snapshots yet (no store at {p}).");
            }
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    let rows = store.list(limit).context("cannot list snapshots")?;
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "reported_at_ms": r.reported_at_ms,
                    "reported_at": format_ms(r.reported_at_ms),
                    "exception_class": r.exception_class,
                    "message": r.message,
                    "top_frame": r.top_frame,
                    "fingerprint": r.fingerprint,
                    "hostname": r.hostname,
                    "pid": r.pid,
                    "size": r.size,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("No snapshots yet in {}.", path.display());
        return Ok(0);
    }
    println!(
        "{:<26}  {:<23}  {:<50}  {:<40}  {:>7}  HOST",
        "ID", "TIME", "EXCEPTION", "TOP APP FRAME", "PID"
    );
    for r in rows {
        let first_line = r.message.lines().next().unwrap_or("");
        let exc = clip(&format!("{}: {}", r.exception_class, first_line), 50);
        println!(
            "{:<26}  {:<23}  {:<50}  {:<40}  {:>7}  {}",
            r.id,
            format_ms(r.reported_at_ms),
            exc,
            clip(&r.top_frame, 40),
            r.pid,
            r.hostname
        );
    }
    Ok(0)
}

/// Cuts text to `n` characters, marking the cut with an ellipsis.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
