//! Why is this object alive: the shortest chains of references from a GC root to it.
//!
//! One breadth-first search from all roots at once gives every reachable object its shortest
//! distance and the object it was first reached from. The shortest path to the target follows
//! those links back. An object is often held by more than one referrer, and the second one is
//! the one you forgot: so a path is also given through each other direct referrer of the target
//! that is reachable, shortest first.

use crate::graph::{HeapGraph, NodeId};

/// A step of a path: the node, or the root category the path starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Root(String),
    Node(NodeId),
}

/// Shortest distances and first parents from the roots.
pub struct Reach {
    /// `u32::MAX` when unreachable.
    dist: Vec<u32>,
    /// The node a node was reached from; `ROOT_BASE + category` for a root's own references.
    parent: Vec<u32>,
}

const ROOT_BASE: u32 = u32::MAX - 1_000_000;
const NONE: u32 = u32::MAX;

impl Reach {
    pub fn compute(g: &HeapGraph) -> Reach {
        let n = g.node_count();
        let mut dist = vec![NONE; n];
        let mut parent = vec![NONE; n];
        let mut queue: Vec<u32> = Vec::with_capacity(n.min(1 << 20));
        for (cat, (_, nodes)) in g.roots.iter().enumerate() {
            for &v in nodes {
                if dist[v as usize] == NONE {
                    dist[v as usize] = 0;
                    parent[v as usize] = ROOT_BASE + cat as u32;
                    queue.push(v);
                }
            }
        }
        let mut head = 0;
        while head < queue.len() {
            let u = queue[head];
            head += 1;
            let d = dist[u as usize] + 1;
            for &v in g.edges.successors(u) {
                if dist[v as usize] == NONE {
                    dist[v as usize] = d;
                    parent[v as usize] = u;
                    queue.push(v);
                }
            }
        }
        Reach { dist, parent }
    }

    pub fn is_reachable(&self, n: NodeId) -> bool {
        self.dist[n as usize] != NONE
    }

    /// The shortest path from a root to `n`, root first.
    pub fn path_to(&self, g: &HeapGraph, n: NodeId) -> Option<Vec<Step>> {
        if !self.is_reachable(n) {
            return None;
        }
        let mut steps = vec![Step::Node(n)];
        let mut at = n;
        loop {
            let p = self.parent[at as usize];
            if p >= ROOT_BASE {
                let cat = (p - ROOT_BASE) as usize;
                let name = g.roots.get(cat).map(|r| r.0.clone()).unwrap_or_default();
                steps.push(Step::Root(name));
                break;
            }
            steps.push(Step::Node(p));
            at = p;
        }
        steps.reverse();
        Some(steps)
    }
}

/// Up to `limit` paths from a root to `target`: the shortest, then one through each other
/// reachable direct referrer, shortest first. Empty when the target is unreachable.
pub fn retention_paths(
    g: &HeapGraph,
    reach: &Reach,
    target: NodeId,
    limit: usize,
) -> Vec<Vec<Step>> {
    let Some(shortest) = reach.path_to(g, target) else {
        return Vec::new();
    };
    let mut paths = vec![shortest];
    let first_referrer = match paths[0].iter().rev().nth(1) {
        Some(Step::Node(r)) => Some(*r),
        _ => None,
    };
    let mut others: Vec<(u32, NodeId)> = referrers(g, target)
        .into_iter()
        .filter(|r| Some(*r) != first_referrer && *r != target && reach.is_reachable(*r))
        .map(|r| (reach.dist[r as usize], r))
        .collect();
    others.sort();
    others.dedup();
    for (_, r) in others {
        if paths.len() >= limit {
            break;
        }
        if let Some(mut p) = reach.path_to(g, r) {
            // A referrer reached through the target itself is not another reason it is alive.
            if p.contains(&Step::Node(target)) {
                continue;
            }
            p.push(Step::Node(target));
            paths.push(p);
        }
    }
    paths.truncate(limit.max(1));
    paths
}

/// Every node with an edge to `target` (one pass over the edges).
pub fn referrers(g: &HeapGraph, target: NodeId) -> Vec<NodeId> {
    let mut out = Vec::new();
    let offsets = &g.edges.offsets;
    for u in 0..g.node_count() {
        let s = &g.edges.targets[offsets[u] as usize..offsets[u + 1] as usize];
        if s.contains(&target) {
            out.push(u as NodeId);
        }
    }
    out
}

/// The root categories that reference `target` directly.
pub fn root_referrers(g: &HeapGraph, target: NodeId) -> Vec<String> {
    g.roots
        .iter()
        .filter(|(_, v)| v.contains(&target))
        .map(|(n, _)| n.clone())
        .collect()
}
