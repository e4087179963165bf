//! Duplicated strings (`rbscope heap strings`).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::HeapRead;
use super::{bytes, num, open, print_json, warn_unreadable, Bar};
use crate::views::heap::tally_json;

/// Duplicated strings (the same text in many String objects) and the bytes they waste.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
    dump: PathBuf,
    /// Texts to show.
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    read: HeapRead,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    strings(&a.dump, a.limit, &a.read)
}

fn strings(path: &Path, limit: usize, read: &HeapRead) -> anyhow::Result<i32> {
    let bar = Bar::start();
    let dump = open(path)?;
    let r = rbscope_heap::strings::duplicated_strings(&dump, bar.opts(read))?;
    drop(bar);
    warn_unreadable(path, &r.stats);
    if read.json {
        return print_json(&json!({
            "strings": tally_json(r.all),
            "without_value": tally_json(r.without_value),
            "wasted_bytes": r.wasted,
            "duplicated_texts": r.duplicated.len(),
            "duplicated": r.duplicated.iter().take(limit).map(|d| json!({
                "text": d.preview, "bytesize": d.bytesize, "copies": d.copies.count,
                "bytes": d.copies.bytes, "wasted": d.wasted, "interned": d.interned,
                "samples": d.samples.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    let mut o = format!(
        "{}: {} String objects ({}); {} texts held more than once waste {}\n",
        path.display(),
        num(r.all.count),
        bytes(r.all.bytes),
        num(r.duplicated.len() as u64),
        bytes(r.wasted)
    );
    if r.without_value.count > 0 {
        o += &format!(
            "  {} strings ({}) are not compared: the dump shows no text for non-ASCII or shared strings\n",
            num(r.without_value.count),
            bytes(r.without_value.bytes)
        );
    }
    if r.duplicated.is_empty() {
        print!("{o}");
        return Ok(0);
    }
    o += &format!(
        "\n  {:>10}  {:>10}  {:>9}  text (interned copies, sample address)\n",
        "copies", "wasted", "bytesize"
    );
    for d in r.duplicated.iter().take(limit) {
        o += &format!(
            "  {:>10}  {:>10}  {:>9}  {}{}  {}\n",
            num(d.copies.count),
            bytes(d.wasted),
            num(d.bytesize),
            d.preview,
            if d.interned > 0 {
                format!(" ({} interned)", num(d.interned))
            } else {
                String::new()
            },
            d.samples
                .first()
                .map(|a| format!("{a:#x}"))
                .unwrap_or_default()
        );
    }
    print!("{o}");
    Ok(0)
}
