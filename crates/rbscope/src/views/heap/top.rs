//! `heap top`: what retains the memory, from the dominator tree.

use rbscope_heap::detail::Detail;
use rbscope_heap::graph::{HeapGraph, NodeId};
use rbscope_heap::top::{ClassRetained, Retention};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{json, Value};

use super::{node_json, tally_json};

/// What `heap top` shows (the CLI and `rbscope ui` both print it).
pub struct TopView {
    /// The dominator tree under the start, depth-first, `limit` children per node.
    pub rows: Vec<(usize, NodeId)>,
    /// The start's dominators, nearest first.
    pub chain: Vec<NodeId>,
    pub details: FxHashMap<u64, Detail>,
}

/// The dominator tree under `start` (the roots when None), `depth` levels of at most `limit`
/// children; `describe` gives the details of the objects to show.
pub fn top_view(
    g: &HeapGraph,
    ret: &Retention,
    start: Option<NodeId>,
    depth: usize,
    limit: usize,
    describe: &mut super::Describe,
) -> anyhow::Result<TopView> {
    let mut rows: Vec<(usize, NodeId)> = Vec::new();
    let mut stack: Vec<(usize, NodeId)> = ret
        .children(start)
        .iter()
        .take(limit)
        .rev()
        .map(|n| (0usize, *n))
        .collect();
    while let Some((d, n)) = stack.pop() {
        rows.push((d, n));
        if d + 1 < depth {
            stack.extend(
                ret.children(Some(n))
                    .iter()
                    .take(limit)
                    .rev()
                    .map(|c| (d + 1, *c)),
            );
        }
    }
    let chain = start.map(|s| ret.dominators_of(s)).unwrap_or_default();
    let mut wanted: FxHashSet<u64> = rows.iter().map(|(_, n)| g.address[*n as usize]).collect();
    wanted.extend(chain.iter().take(20).map(|n| g.address[*n as usize]));
    if let Some(s) = start {
        wanted.insert(g.address[s as usize]);
    }
    let details = describe(&wanted)?;
    Ok(TopView {
        rows,
        chain,
        details,
    })
}

/// `heap top --json`.
pub fn top_json(
    dump: &str,
    g: &HeapGraph,
    ret: &Retention,
    start: Option<NodeId>,
    v: &TopView,
    by_class: &[ClassRetained],
    seconds: f64,
) -> Value {
    let details = &v.details;
    json!({
        "dump": dump,
        "reachable": tally_json(ret.reachable()),
        "unreachable": tally_json(ret.unreachable(g)),
        "allocation_tracer": g.tracer.map(|(n, b)| json!({"address": format!("{:#x}", g.address[n as usize]), "bytes": b})),
        "dangling_references": g.dangling_refs,
        "from": start.map(|s| json!({
            "object": node_json(g, details, s),
            "retained": ret.retained(s),
            "retained_objects": ret.retained_count[s as usize],
            "dominators": v.chain.iter().take(20).map(|n| node_json(g, details, *n)).collect::<Vec<_>>(),
        })),
        "tree": v.rows.iter().map(|(d, n)| {
            let mut j = node_json(g, details, *n);
            j["depth"] = json!(d);
            j["retained"] = json!(ret.retained(*n));
            j["retained_objects"] = json!(ret.retained_count[*n as usize]);
            j["children"] = json!(ret.children(Some(*n)).len());
            j
        }).collect::<Vec<_>>(),
        "by_class": by_class.iter().map(|c| json!({
            "class": c.name, "instances": c.instances, "retained": c.retained,
        })).collect::<Vec<_>>(),
        "seconds": seconds,
    })
}
