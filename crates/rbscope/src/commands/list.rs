//! `rbscope list`: the newest snapshots, one line each.

use super::store_args::StoreArgs;
use crate::views::snapshots;
use crate::views::time::format_ms;
use anyhow::Context;
use rbscope_store::{Filter, Store, StoreError};

/// List stored snapshots, newest first (or grouped by fingerprint with --group).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many to show (snapshots, or groups with --group).
    #[arg(short = 'n', long, default_value_t = 50)]
    limit: usize,
    /// Print JSON (one array) instead of a table.
    #[arg(long)]
    json: bool,
    /// Group by fingerprint (exception class + top app frame): counts, first and last seen.
    #[arg(long)]
    group: bool,
    /// Only snapshots reported within this long (30m, 2h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_ms)]
    since: Option<i64>,
    /// Only this exception class.
    #[arg(long = "class", value_name = "CLASS")]
    class: Option<String>,
    /// Only snapshots from this host.
    #[arg(long)]
    host: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    let filter = Filter {
        since_ms: a.since.map(|d| crate::views::time::now_ms() - d),
        class: a.class.clone(),
        host: a.host.clone(),
        limit: a.limit,
        ..Filter::default()
    };
    list(&a.store, &filter, a.json, a.group)
}

fn list(store: &StoreArgs, filter: &Filter, json: bool, group: bool) -> anyhow::Result<i32> {
    let location = store.location()?;
    let mut store = match Store::open_existing(&location) {
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
    if group {
        return groups(&mut store, filter, json);
    }
    let rows = store
        .list_filtered(filter)
        .context("cannot list snapshots")?;
    if json {
        let out: Vec<_> = rows.iter().map(snapshots::summary_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("No snapshots yet in {}.", store.describe());
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
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn groups(store: &mut Store, filter: &Filter, json: bool) -> anyhow::Result<i32> {
    let groups = store.groups(filter).context("cannot group snapshots")?;
    if json {
        let out: Vec<_> = groups.iter().map(snapshots::group_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    if groups.is_empty() {
        println!("No snapshots match.");
        return Ok(0);
    }
    println!(
        "{:>6}  {:<23}  {:<23}  {:<40}  {:<40}  {:>5}  LATEST",
        "COUNT", "FIRST SEEN", "LAST SEEN", "EXCEPTION", "TOP APP FRAME", "HOSTS"
    );
    for g in groups {
        let first_line = g.last_message.lines().next().unwrap_or("");
        println!(
            "{:>6}  {:<23}  {:<23}  {:<40}  {:<40}  {:>5}  {}",
            g.count,
            format_ms(g.first_ms),
            format_ms(g.last_ms),
            clip(&format!("{}: {}", g.exception_class, first_line), 40),
            clip(&g.top_frame, 40),
            g.hosts,
            g.last_id
        );
    }
    Ok(0)
}
