//! `rbscope purge`: delete snapshots by id, age or fingerprint, or down to a retention limit.

use crate::cli::Cli;
use anyhow::bail;
use rbscope_store::{Filter, Retention, Store};

pub struct Request {
    pub id: Option<String>,
    pub older_than_ms: Option<i64>,
    pub fingerprint: Option<String>,
    pub keep_count: Option<u64>,
    pub keep_bytes: Option<u64>,
}

pub fn purge(cli: &Cli, r: Request) -> anyhow::Result<i32> {
    if r.id.is_none()
        && r.older_than_ms.is_none()
        && r.fingerprint.is_none()
        && r.keep_count.is_none()
        && r.keep_bytes.is_none()
    {
        bail!(
            "say what to delete: --id, --older-than, --fingerprint, --keep-count or --keep-bytes"
        );
    }
    let mut store = Store::open_existing(&cli.store_location()?)?;
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
        max_age_ms: r.older_than_ms,
        max_count: r.keep_count,
        max_bytes: r.keep_bytes,
    };
    deleted += store.apply_retention(&retention, crate::time::now_ms())?;
    println!("{deleted} snapshot(s) deleted from {}", store.describe());
    Ok(0)
}
