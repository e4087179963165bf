//! The leak hunt across dumps (`rbscope heap diff`, and `heap watch --diff`).

use std::path::PathBuf;
use std::time::Instant;

use rbscope_heap::input::Dump;

use super::HeapRead;
use super::{bytes, num, open, print_json, warn_unreadable, Bar};
use crate::views::heap::diff::diff_json;

/// Leak hunt across two or three dumps of one process, oldest first: per class and
/// allocation site, counts and bytes in each dump and the objects that are new in the
/// second (and still there in the third), with sample addresses for `heap path`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Two or three dumps of one process, oldest first.
    #[arg(required = true, num_args = 2..=3, value_name = "DUMP")]
    dumps: Vec<PathBuf>,
    /// Groups to show.
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    read: HeapRead,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    diff(&a.dumps, a.limit, &a.read)
}

/// `diff` with default reading options (for `heap watch --diff`).
pub(super) fn diff_paths(paths: &[PathBuf], limit: usize, json: bool) -> anyhow::Result<i32> {
    let read = HeapRead {
        jobs: None,
        json,
        allow_truncated: false,
    };
    diff(paths, limit, &read)
}

fn diff(paths: &[PathBuf], limit: usize, read: &HeapRead) -> anyhow::Result<i32> {
    let bar = Bar::start();
    let dumps = paths
        .iter()
        .map(|p| open(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&Dump> = dumps.iter().collect();
    let started = Instant::now();
    let d = rbscope_heap::diff::diff(&refs, bar.opts(read))?;
    let elapsed = started.elapsed();
    drop(bar);
    for (p, info) in paths.iter().zip(&d.dumps) {
        warn_unreadable(p, &info.stats);
    }
    let three = d.dumps.len() == 3;
    let leaking: Vec<_> = d.groups.iter().filter(|g| g.leaked().count > 0).collect();
    if read.json {
        return print_json(&diff_json(&d, limit, elapsed.as_secs_f64()));
    }
    let mut o = String::new();
    for (k, i) in d.dumps.iter().enumerate() {
        o += &format!(
            "dump {}: {}  {} objects, {}{}\n",
            k + 1,
            i.path,
            num(i.total.count),
            bytes(i.total.bytes),
            if i.traced == 0 {
                "  (no allocation tracing)"
            } else {
                ""
            }
        );
    }
    o += &format!(
        "new in dump 2 (not in dump 1): {} objects, {}\n",
        num(d.new_total.count),
        bytes(d.new_total.bytes)
    );
    if let Some(r) = d.retained_total {
        o += &format!(
            "of those, still in dump 3 (leak candidates): {} objects, {}\n",
            num(r.count),
            bytes(r.bytes)
        );
    }
    if d.dumps.iter().any(|i| i.traced == 0) {
        o += "note: without allocation tracing objects are matched by address, type and class only: objects moved by GC.compact count as new\n";
    }
    o += &format!("compared in {:.2} s\n\n", elapsed.as_secs_f64());
    if leaking.is_empty() {
        o += if three {
            "nothing new in dump 2 is still in dump 3\n"
        } else {
            "nothing in dump 2 is new\n"
        };
        print!("{o}");
        return Ok(0);
    }
    let heads: Vec<String> = (1..=d.dumps.len()).map(|k| format!("in {k}")).collect();
    let kept = if three { "new+kept" } else { "new" };
    o += &format!(
        "  {}  {:>10}  {:>10}  class, allocation site\n",
        heads
            .iter()
            .map(|h| format!("{h:>10}"))
            .collect::<Vec<_>>()
            .join(""),
        kept,
        "bytes"
    );
    for g in leaking.iter().take(limit) {
        let counts: String = g
            .counts
            .iter()
            .map(|t| format!("{:>10}", num(t.count)))
            .collect();
        let l = g.leaked();
        o += &format!(
            "  {counts}  {:>10}  {:>10}  {}{}\n",
            num(l.count),
            bytes(l.bytes),
            g.name,
            g.site
                .as_deref()
                .map(|s| format!("  {s}"))
                .unwrap_or_default()
        );
        if !g.samples.is_empty() {
            o += &format!(
                "  {:width$}  e.g. (in dump {}) {}\n",
                "",
                d.dumps.len(),
                g.samples
                    .iter()
                    .map(|a| format!("{a:#x}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                width = 10 * d.dumps.len() + 24
            );
        }
    }
    if leaking.len() > limit {
        o += &format!("  ... {} more groups (-n)\n", leaking.len() - limit);
    }
    print!("{o}");
    Ok(0)
}
