//! Why an object is alive (`rbscope heap path`), and how objects are shown in a line.

use std::path::{Path, PathBuf};

use anyhow::bail;
use rbscope_heap::detail::{self, Detail};
use rbscope_heap::graph::{HeapGraph, NodeId};
use rbscope_heap::paths::{self, Reach, Step};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{json, Value};

use super::HeapRead;
use super::{open, parse_address, print_json, warn_unreadable, Bar};

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
    if read.json {
        return print_json(&json!({
            "object": node_json(&g, &details, target),
            "reachable": reach.is_reachable(target),
            "referenced_by_roots": root_refs,
            "referrers": referrers.iter().take(100).map(|r| node_json(&g, &details, *r)).collect::<Vec<_>>(),
            "referrer_count": referrers.len(),
            "paths": found.iter().map(|p| p.iter().map(|s| match s {
                Step::Root(name) => json!({"root": name}),
                Step::Node(n) => node_json(&g, &details, *n),
            }).collect::<Vec<_>>()).collect::<Vec<_>>(),
        }));
    }
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

/// What `heap path` shows about one object (the CLI and `rbscope ui` both print it).
pub(crate) struct PathView {
    pub found: Vec<Vec<Step>>,
    pub referrers: Vec<NodeId>,
    pub root_refs: Vec<String>,
    pub details: FxHashMap<u64, Detail>,
}

/// Finds up to `limit` retention paths to `target` and its referrers; `describe` gives the
/// details of the objects to show (a pass over the dump, or a cache of one).
pub(crate) fn path_view(
    g: &HeapGraph,
    reach: &Reach,
    target: NodeId,
    limit: usize,
    describe: &mut super::Describe,
) -> anyhow::Result<PathView> {
    let found = paths::retention_paths(g, reach, target, limit.max(1));
    let referrers = paths::referrers(g, target);
    let root_refs = paths::root_referrers(g, target);
    let mut wanted: FxHashSet<u64> = FxHashSet::default();
    wanted.insert(g.address[target as usize]);
    for p in &found {
        for s in p {
            if let Step::Node(n) = s {
                wanted.insert(g.address[*n as usize]);
            }
        }
    }
    for r in referrers.iter().take(100) {
        wanted.insert(g.address[*r as usize]);
    }
    let details = describe(&wanted)?;
    Ok(PathView {
        found,
        referrers,
        root_refs,
        details,
    })
}

/// `heap path --json`.
pub(crate) fn path_json(g: &HeapGraph, reach: &Reach, target: NodeId, v: &PathView) -> Value {
    let details = &v.details;
    json!({
        "object": node_json(g, details, target),
        "reachable": reach.is_reachable(target),
        "referenced_by_roots": v.root_refs,
        "referrers": v.referrers.iter().take(100).map(|r| node_json(g, details, *r)).collect::<Vec<_>>(),
        "referrer_count": v.referrers.len(),
        "paths": v.found.iter().map(|p| p.iter().map(|s| match s {
            Step::Root(name) => json!({"root": name}),
            Step::Node(n) => node_json(g, details, *n),
        }).collect::<Vec<_>>()).collect::<Vec<_>>(),
    })
}

pub(super) fn node_line(g: &HeapGraph, details: &FxHashMap<u64, Detail>, n: NodeId) -> String {
    let addr = g.address[n as usize];
    match details.get(&addr) {
        Some(d) => detail::one_line(d, g.group_name(n)),
        None => format!("{addr:#x} {}", g.group_name(n)),
    }
}

pub(crate) fn node_json(g: &HeapGraph, details: &FxHashMap<u64, Detail>, n: NodeId) -> Value {
    let addr = g.address[n as usize];
    let d = details.get(&addr);
    json!({
        "address": format!("{addr:#x}"),
        "type": g.ty[n as usize].name(),
        "class": g.group_name(n),
        "info": d.map(|d| d.info.clone()),
        "file": d.and_then(|d| d.file.clone()),
        "line": d.and_then(|d| d.line),
        "generation": d.and_then(|d| d.generation),
        "memsize": d.map(|d| d.memsize),
    })
}
