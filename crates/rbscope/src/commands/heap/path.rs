//! Why an object is alive (`rbscope heap path`), and how objects are shown in a line.

use std::path::{Path, PathBuf};

use anyhow::bail;
use rbscope_heap::detail;
use rbscope_heap::graph::{HeapGraph, NodeId};
use rbscope_heap::paths::{Reach, Step};

use super::HeapRead;
use super::{open, print_json, warn_unreadable, Bar};
use crate::views::heap::path::{path_json, path_view, PathView};
use crate::views::heap::{node_line, parse_address};

/// Why an object is alive: the shortest chain of references from a GC root to it, and one
/// through each other object that references it.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
    dump: PathBuf,
    /// The object's address, as the dump writes it (0x7f...).
    address: String,
    /// Paths to show at most.
    #[arg(short = 'n', long, default_value_t = 3)]
    limit: usize,
    #[command(flatten)]
    read: HeapRead,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    path(&a.dump, &a.address, a.limit, &a.read)
}

fn path(dump_path: &Path, address: &str, limit: usize, read: &HeapRead) -> anyhow::Result<i32> {
    let target_addr = parse_address(address)?;
    let bar = Bar::start();
    let dump = open(dump_path)?;
    let opts = bar.opts(read);
    let g = HeapGraph::build(&dump, opts)?;
    warn_unreadable(dump_path, &g.stats);
    let Some(target) = g.node(target_addr) else {
        bail!(
            "there is no object at {target_addr:#x} in {} (an address is only valid in the dump it came from; `rbscope heap diff` prints sample addresses of the last dump)",
            dump_path.display()
        );
    };
    bar.phase("searching");
    let reach = Reach::compute(&g);
    let view = path_view(&g, &reach, target, limit, &mut |wanted| {
        bar.phase("describing");
        Ok(detail::describe(&dump, opts, wanted)?)
    })?;
    drop(bar);
    if read.json {
        return print_json(&path_json(&g, &reach, target, &view));
    }
    let PathView {
        found,
        referrers,
        root_refs,
        details,
    } = view;
    let show = |n: NodeId| node_line(&g, &details, n);
    let mut o = format!("{}\n", show(target));
    if found.is_empty() {
        o += "is not reachable from any GC root: it is garbage the GC had not collected yet when the dump was written";
        if !referrers.is_empty() {
            o += &format!(
                " (referenced only by {} other unreachable object(s))",
                referrers.len()
            );
        }
        o += "\n";
        print!("{o}");
        return Ok(0);
    }
    o += &format!(
        "is referenced by {} object(s){}; {} retention path(s), shortest first:\n",
        referrers.len(),
        if root_refs.is_empty() {
            String::new()
        } else {
            format!(" and directly by the roots: {}", root_refs.join(", "))
        },
        found.len()
    );
    for (k, p) in found.iter().enumerate() {
        o += &format!("\npath {} ({} references):\n", k + 1, p.len() - 1);
        for (i, s) in p.iter().enumerate() {
            let arrow = if i == 0 { "  " } else { "  -> " };
            match s {
                Step::Root(name) => o += &format!("{arrow}root {name}\n"),
                Step::Node(n) => o += &format!("{arrow}{}\n", show(*n)),
            }
        }
    }
    print!("{o}");
    Ok(0)
}
