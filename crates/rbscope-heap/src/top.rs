//! Who holds the memory: the dominator tree read from the top, retained size by class, and the
//! tree as flame graph stacks.
//!
//! Retained sizes come from [`crate::dominators`]. Summing them by class would count a nested
//! object twice (a Hash inside a Hash), so a class's total takes only its outermost instances:
//! a walk down the dominator tree keeps, per class, how many of the current node's ancestors
//! are of that class, and a node adds to its class only when that count is zero.

use rustc_hash::FxHashMap;

use crate::dominators::{Dominators, SUPER_ROOT, UNREACHABLE};
use crate::graph::{HeapGraph, NodeId};
use crate::summary::Tally;

/// A class and what its outermost instances retain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRetained {
    pub name: String,
    /// Outermost instances (those not retained by another instance of the class).
    pub instances: u64,
    pub retained: u64,
}

/// Retained sizes and object counts of one dump.
pub struct Retention {
    pub dom: Dominators,
    /// Objects in each node's dominator subtree (itself included).
    pub retained_count: Vec<u32>,
}

impl Retention {
    pub fn compute(g: &HeapGraph) -> Retention {
        let roots = g.root_nodes();
        let dom = Dominators::compute(&g.edges, &roots, &g.self_size);
        let mut retained_count = vec![0u32; g.node_count()];
        for &v in dom.preorder.iter().rev() {
            retained_count[v as usize] += 1;
            let d = dom.idom[v as usize];
            if d != SUPER_ROOT && d != UNREACHABLE {
                retained_count[d as usize] += retained_count[v as usize];
            }
        }
        Retention {
            dom,
            retained_count,
        }
    }

    pub fn retained(&self, n: NodeId) -> u64 {
        self.dom.retained[n as usize]
    }

    /// Objects reachable from the roots, and their bytes.
    pub fn reachable(&self) -> Tally {
        Tally {
            count: self.dom.reachable_count() as u64,
            bytes: self.dom.reachable_size(),
        }
    }

    /// Objects no root reaches (garbage not yet collected when the dump was written).
    pub fn unreachable(&self, g: &HeapGraph) -> Tally {
        let mut t = Tally::default();
        for (i, d) in self.dom.idom.iter().enumerate() {
            if *d == UNREACHABLE {
                t.count += 1;
                t.bytes = t.bytes.saturating_add(g.self_size[i]);
            }
        }
        t
    }

    /// The dominator-tree children of `n` (`None` for the top), biggest first.
    pub fn children(&self, n: Option<NodeId>) -> &[NodeId] {
        self.dom.children(n.unwrap_or(SUPER_ROOT))
    }

    /// The chain of dominators above `n`, nearest first.
    pub fn dominators_of(&self, n: NodeId) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut at = self.dom.idom[n as usize];
        while at != SUPER_ROOT && at != UNREACHABLE && out.len() < 1_000_000 {
            out.push(at);
            at = self.dom.idom[at as usize];
        }
        out
    }

    /// Retained bytes per class, outermost instances only, biggest first.
    pub fn by_class(&self, g: &HeapGraph) -> Vec<ClassRetained> {
        let groups = g.group_names.len();
        let mut open = vec![0u32; groups];
        let mut instances = vec![0u64; groups];
        let mut retained = vec![0u64; groups];
        // Iterative walk of the dominator tree: (node, entered?).
        let mut stack: Vec<(NodeId, bool)> = self
            .children(None)
            .iter()
            .rev()
            .map(|n| (*n, false))
            .collect();
        while let Some((n, entered)) = stack.pop() {
            let grp = g.group[n as usize] as usize;
            if entered {
                open[grp] -= 1;
                continue;
            }
            if open[grp] == 0 {
                instances[grp] += 1;
                retained[grp] = retained[grp].saturating_add(self.dom.retained[n as usize]);
            }
            open[grp] += 1;
            stack.push((n, true));
            stack.extend(self.dom.children(n).iter().rev().map(|c| (*c, false)));
        }
        let mut out: Vec<ClassRetained> = (0..groups)
            .filter(|i| instances[*i] > 0)
            .map(|i| ClassRetained {
                name: g.group_names[i].clone(),
                instances: instances[i],
                retained: retained[i],
            })
            .collect();
        out.sort_by(|a, b| {
            b.retained
                .cmp(&a.retained)
                .then_with(|| a.name.cmp(&b.name))
        });
        out
    }

    /// Flame graph stacks of retained size by class path: one line per distinct path of class
    /// names down the dominator tree (repeats of one class in a row merged, at most `max_depth`
    /// frames; deeper objects count in their ancestor at that depth), weighted by self size, so a
    /// frame's width is what it retains. Lines are `frame;frame;frame bytes`.
    pub fn class_stacks(&self, g: &HeapGraph, max_depth: usize) -> Vec<(String, u64)> {
        // A trie of class paths: (parent trie node, group) -> trie node.
        let mut trie: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        let mut parent_of: Vec<(u32, u32)> = vec![(u32::MAX, u32::MAX)];
        let mut depth_of: Vec<u32> = vec![0];
        let mut weight: Vec<u64> = vec![0];
        let mut stack: Vec<(NodeId, u32)> =
            self.children(None).iter().map(|n| (*n, 0u32)).collect();
        while let Some((n, at)) = stack.pop() {
            let grp = g.group[n as usize];
            let same_as_parent = at != 0 && parent_of[at as usize].1 == grp;
            let here = if same_as_parent || depth_of[at as usize] as usize >= max_depth {
                at
            } else {
                let next = parent_of.len() as u32;
                let id = *trie.entry((at, grp)).or_insert(next);
                if id == next {
                    parent_of.push((at, grp));
                    depth_of.push(depth_of[at as usize] + 1);
                    weight.push(0);
                }
                id
            };
            weight[here as usize] = weight[here as usize].saturating_add(g.self_size[n as usize]);
            stack.extend(self.dom.children(n).iter().map(|c| (*c, here)));
        }
        let mut out = Vec::new();
        for (t, w) in weight.iter().enumerate().skip(1) {
            if *w == 0 {
                continue;
            }
            let mut frames = Vec::new();
            let mut at = t as u32;
            while at != 0 {
                let (p, grp) = parent_of[at as usize];
                frames.push(g.group_names[grp as usize].replace(';', ":"));
                at = p;
            }
            frames.reverse();
            out.push((frames.join(";"), *w));
        }
        out.sort();
        out
    }
}
