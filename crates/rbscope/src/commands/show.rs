//! `rbscope show ID`: one snapshot, as a readable tree or as JSON.

use super::store_args::StoreArgs;
use crate::views::{snapshot_text, snapshots};
use anyhow::Context;
use rbscope_snapshot::Take;
use rbscope_store::{Store, StoreError};

/// Show one snapshot: the exception, its causes, then every frame with source, self, locals
/// and instance variables.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The snapshot id, or an unambiguous prefix of it.
    id: String,
    /// Print the whole snapshot as JSON.
    #[arg(long)]
    json: bool,
    /// How deep to expand objects in the text view.
    #[arg(long, default_value_t = 4)]
    depth: usize,
    /// How many items of each array or hash to print in the text view.
    #[arg(long, default_value_t = 20)]
    items: usize,
    /// Show ActiveRecord records and ActionController::Parameters as the objects Rails keeps
    /// them in (attribute sets, lazy hashes) instead of as their attributes and entries, which
    /// is how the text view shows them otherwise.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    let mut store = Store::open_existing(&a.store.location()?)?;
    let (full_id, body) = store.get(&a.id)?;
    let snapshot = rbscope_snapshot::decode(&body)
        .with_context(|| format!("snapshot {full_id} cannot be read"))?;
    // The take's other snapshots this store does not hold (never stored, or purged).
    let mut stored = |id: &str| match store.get(id) {
        Ok(_) => Some(true),
        Err(StoreError::NotFound(_)) => Some(false),
        Err(_) => None,
    };
    if a.json {
        let mut doc = snapshots::snapshot_json(&snapshot);
        snapshots::mark_take_stored(&mut doc, stored);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let missing = Take::of(&snapshot.context)
            .map(|t| {
                t.others(&snapshot.id)
                    .filter(|m| stored(&m.id) == Some(false))
                    .map(|m| m.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let opts = snapshot_text::Options {
            max_depth: a.depth,
            max_items: a.items,
            raw: a.raw,
            missing,
        };
        print!("{}", snapshot_text::snapshot(&snapshot, &opts));
    }
    Ok(0)
}
