//! `rbscope show ID`: one snapshot, as a readable tree or as JSON.

use crate::cli::Cli;
use crate::render;
use anyhow::Context;
use rbscope_store::Store;

pub fn show(cli: &Cli, id: &str, json: bool, depth: usize, items: usize) -> anyhow::Result<i32> {
    let mut store = Store::open_existing(&cli.store_location()?)?;
    let (full_id, body) = store.get(id)?;
    let snapshot = rbscope_snapshot::decode(&body)
        .with_context(|| format!("snapshot {full_id} cannot be read"))?;
    if json {
        let mut doc = rbscope_snapshot::json::snapshot(&snapshot);
        doc["reported_at"] = crate::time::format_ms(snapshot.reported_at_ms).into();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let opts = render::text::Options {
            max_depth: depth,
            max_items: items,
        };
        print!("{}", render::text::snapshot(&snapshot, &opts));
    }
    Ok(0)
}
