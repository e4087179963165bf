//! `heap path`: why an object is alive.

use rbscope_heap::detail::Detail;
use rbscope_heap::graph::{HeapGraph, NodeId};
use rbscope_heap::paths::{self, Reach, Step};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{json, Value};

use super::node_json;

/// What `heap path` shows about one object (the CLI and `rbscope ui` both print it).
pub struct PathView {
    pub found: Vec<Vec<Step>>,
    pub referrers: Vec<NodeId>,
    pub root_refs: Vec<String>,
    pub details: FxHashMap<u64, Detail>,
}

/// Finds up to `limit` retention paths to `target` and its referrers; `describe` gives the
/// details of the objects to show (a pass over the dump, or a cache of one).
pub fn path_view(
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
pub fn path_json(g: &HeapGraph, reach: &Reach, target: NodeId, v: &PathView) -> Value {
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
