//! `rbscope purge`: delete snapshots by id, age or fingerprint, or down to a retention limit.

use super::store_args::StoreArgs;
use anyhow::bail;
use rbscope_store::{Filter, Retention, Store};

/// Delete snapshots: by id, by age, by fingerprint, or down to a retention limit.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Delete this snapshot (id or unambiguous prefix).
    #[arg(long)]
    id: Option<String>,
    /// Delete snapshots reported longer ago than this (30d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_ms)]
    older_than: Option<i64>,
    /// Delete every snapshot with this fingerprint (see `list --group --json`).
    #[arg(long)]
    fingerprint: Option<String>,
    /// Keep only the newest N snapshots.
    #[arg(long, value_name = "N")]
    keep_count: Option<u64>,
    /// Keep only the newest snapshots that fit in this many bytes.
    #[arg(long, value_name = "BYTES")]
    keep_bytes: Option<u64>,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(r: &Args) -> anyhow::Result<i32> {
    if r.id.is_none()
        && r.older_than.is_none()
        && r.fingerprint.is_none()
        && r.keep_count.is_none()
        && r.keep_bytes.is_none()
    {
        bail!(
            "say what to delete: --id, --older-than, --fingerprint, --keep-count or --keep-bytes"
        );
    }
    let mut store = Store::open_existing(&r.store.location()?)?;
    let mut deleted = 0u64;
    if let Some(id) = &r.id {
        let full = store.delete_id(id)?;
        println!("deleted snapshot {full}");
        deleted += 1;
    }
    if let Some(fp) = &r.fingerprint {
        deleted += store.delete_matching(&Filter {
            fingerprint: Some(fp.clone()),
            ..Filter::default()
        })?;
    }
    let retention = Retention {
        max_age_ms: r.older_than,
        max_count: r.keep_count,
        max_bytes: r.keep_bytes,
    };
    deleted += store.apply_retention(&retention, crate::views::time::now_ms())?;
    println!("{deleted} snapshot(s) deleted from {}", store.describe());
    Ok(0)
}
