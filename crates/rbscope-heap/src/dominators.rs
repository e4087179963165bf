//! Dominator tree and retained sizes of a heap's object graph.
//!
//! The *retained size* of an object is what the garbage collector would free if that object went
//! away: the object itself plus every object that is only reachable through it. An object `d`
//! *dominates* `v` when every path from the GC roots to `v` goes through `d`; the objects freed
//! with `d` are exactly the ones it dominates, so the retained size of `d` is the sum of the self
//! sizes over its subtree in the dominator tree. That is what makes a heap dump explainable: "this
//! one Hash keeps 300 MB alive".
//!
//! A heap has many GC roots (the VM, stacks, globals, ...), so the graph gets a *virtual super
//! root* ([`SUPER_ROOT`]) whose successors are the objects the roots reference. The super root
//! dominates everything reachable; objects dominated by nothing else (the root objects themselves,
//! and objects reachable from two roots' subtrees) have it as their immediate dominator, and it
//! retains the whole reachable heap.
//!
//! Heaps have millions of objects and chains a million deep (linked lists), so everything here is
//! iterative (explicit stacks, no recursion) and works on flat `u32` arrays. The algorithm is the
//! "simple" Lengauer–Tarjan (path compression without balancing, `O(E log V)`), run in DFS
//! preorder numbering: an iterative DFS from the super root, predecessor lists built as a
//! compressed-sparse-row array restricted to the reachable nodes, semidominators computed in
//! reverse preorder with a path-compressing `eval` that uses its own explicit stack, then the
//! immediate dominators. Retained sizes are accumulated in reverse preorder onto the immediate
//! dominator (which always precedes a node in preorder).
//!
//! Big heaps do not fit in the caches and their references go everywhere, so the cost is cache
//! misses: the DFS also translates every edge to preorder numbers (so that building the
//! predecessor lists reads memory in order), the per-vertex state of the forest is packed in 8
//! bytes, and both the DFS and the main loop read a little ahead to overlap misses. Working
//! memory peaks at about 20 bytes per node plus 8 bytes per edge while the predecessor lists are
//! built (the DFS stack adds 16 bytes per level of depth before that), then about 32 bytes per
//! node plus 4 per edge; the result keeps 24 bytes per node.

/// A graph in compressed sparse rows: the successors of node `n` are
/// `targets[offsets[n] as usize..offsets[n + 1] as usize]`. `offsets.len() == node_count + 1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Csr {
    /// Start of each node's successor range in `targets`, plus one final entry (the edge count).
    pub offsets: Vec<u64>,
    /// Successors of all nodes, node after node.
    pub targets: Vec<u32>,
}

impl Csr {
    /// Number of nodes (`offsets.len() - 1`, or 0 for an empty `offsets`).
    pub fn node_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The successors of node `n`, in edge order (duplicates and self-loops included).
    pub fn successors(&self, n: u32) -> &[u32] {
        let n = n as usize;
        &self.targets[self.offsets[n] as usize..self.offsets[n + 1] as usize]
    }

    /// Builds from an edge list (for tests and small callers). Each node's successors keep the
    /// order of `edges`.
    ///
    /// # Panics
    /// If an edge mentions a node `>= node_count`.
    pub fn from_edges(node_count: usize, edges: &[(u32, u32)]) -> Csr {
        let mut offsets = vec![0u64; node_count + 1];
        for &(from, to) in edges {
            assert!(
                (from as usize) < node_count && (to as usize) < node_count,
                "edge ({from}, {to}) out of range for {node_count} nodes"
            );
            offsets[from as usize + 1] += 1;
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let mut cursor = offsets.clone();
        let mut targets = vec![0u32; edges.len()];
        for &(from, to) in edges {
            let slot = &mut cursor[from as usize];
            targets[*slot as usize] = to;
            *slot += 1;
        }
        Csr { offsets, targets }
    }
}

/// Marks a node as not reachable from any root (in [`Dominators::idom`]).
pub const UNREACHABLE: u32 = u32::MAX;
/// The virtual root above all GC roots, as it appears in [`Dominators::idom`] and as the argument
/// of [`Dominators::children`] for the top level of the dominator tree.
pub const SUPER_ROOT: u32 = u32::MAX - 1;

/// "No vertex" in the internal linked lists.
const NONE: u32 = u32::MAX;

/// The dominator tree of a heap graph and the retained size of every node.
#[derive(Debug, Clone)]
pub struct Dominators {
    /// Immediate dominator of each node: another node, SUPER_ROOT for nodes dominated only by the
    /// virtual root (e.g. the roots themselves and nodes reachable from two roots' subtrees), or
    /// UNREACHABLE.
    pub idom: Vec<u32>,
    /// Retained size of each node (its own size plus all it dominates); 0 for unreachable nodes.
    pub retained: Vec<u64>,
    /// Nodes in the order a DFS from the virtual root first reached them (reachable nodes only).
    pub preorder: Vec<u32>,
    /// Children index: the children of node `n` are `child_list[child_offsets[n]..child_offsets[n
    /// + 1]]`; slot `node_count` holds the children of the super root.
    child_offsets: Vec<u32>,
    child_list: Vec<u32>,
    /// Sum of the self sizes of all reachable nodes.
    reachable_size: u64,
}

impl Dominators {
    /// Computes the dominator tree of `graph` below a virtual root whose successors are `roots`.
    ///
    /// `roots`: the nodes the GC roots reference (duplicates allowed); `self_size[n]` is node n's
    /// own size.
    ///
    /// # Panics
    /// If `self_size.len() != graph.node_count()`, if a root is `>= graph.node_count()`, or if
    /// the graph has `u32::MAX - 1` nodes or more (node ids must stay below [`SUPER_ROOT`]).
    pub fn compute(graph: &Csr, roots: &[u32], self_size: &[u64]) -> Dominators {
        // Offsets into the predecessor lists fit in u32 for any realistic heap; fall back to u64
        // for the others.
        if graph.targets.len() + roots.len() < u32::MAX as usize {
            Self::compute_with::<u32>(graph, roots, self_size)
        } else {
            Self::compute_with::<u64>(graph, roots, self_size)
        }
    }

    fn compute_with<O: Offset>(graph: &Csr, roots: &[u32], self_size: &[u64]) -> Dominators {
        let node_count = graph.node_count();
        assert_eq!(
            self_size.len(),
            node_count,
            "self_size must have one entry per node"
        );
        assert!(
            node_count < SUPER_ROOT as usize,
            "too many nodes for u32 node ids"
        );

        // Everything below works on DFS preorder numbers: 0 is the super root, 1..=n the reachable
        // nodes. `vertex[i]` is the node numbered i (`vertex[0]` is a placeholder).
        let dfs = depth_first_search(graph, roots);
        let (pred_off, preds) = predecessors::<O>(graph, roots, &dfs);
        let Dfs { vertex, links, .. } = dfs;
        let idom = lengauer_tarjan(links, &pred_off, &preds);
        drop((pred_off, preds));
        let n = vertex.len() - 1;

        // Retained sizes, in preorder numbering for locality: children before parents.
        let mut ret: Vec<u64> = Vec::with_capacity(n + 1);
        ret.push(0);
        ret.extend(vertex[1..].iter().map(|&v| self_size[v as usize]));
        for w in (1..=n).rev() {
            let d = idom[w] as usize;
            ret[d] = ret[d].saturating_add(ret[w]);
        }
        let reachable_size = ret[0];

        let mut idom_out = vec![UNREACHABLE; node_count];
        let mut retained = vec![0u64; node_count];
        for w in 1..=n {
            let v = vertex[w] as usize;
            let d = idom[w];
            idom_out[v] = if d == 0 {
                SUPER_ROOT
            } else {
                vertex[d as usize]
            };
            retained[v] = ret[w];
        }
        drop((ret, idom));

        let mut preorder = vertex;
        preorder.remove(0);

        let (child_offsets, child_list) = children_index(&idom_out, &retained, &preorder);

        Dominators {
            idom: idom_out,
            retained,
            preorder,
            child_offsets,
            child_list,
            reachable_size,
        }
    }

    /// Total retained by the virtual root = sum of self sizes of all reachable nodes.
    pub fn reachable_size(&self) -> u64 {
        self.reachable_size
    }

    /// Number of nodes reachable from the roots.
    pub fn reachable_count(&self) -> usize {
        self.preorder.len()
    }

    /// The children of `node` in the dominator tree (use SUPER_ROOT for the top level), sorted by
    /// retained size, biggest first (ties by node id). Empty for leaves, unreachable nodes and
    /// out-of-range ids.
    pub fn children(&self, node: u32) -> &[u32] {
        let node_count = self.idom.len();
        let slot = if node == SUPER_ROOT {
            node_count
        } else if (node as usize) < node_count {
            node as usize
        } else {
            return &[];
        };
        &self.child_list[self.child_offsets[slot] as usize..self.child_offsets[slot + 1] as usize]
    }
}

/// Index type of the predecessor lists: u32 when the edges allow, to halve the offsets array.
trait Offset: Copy {
    const ZERO: Self;
    fn from_usize(x: usize) -> Self;
    fn to_usize(self) -> usize;
}

impl Offset for u32 {
    const ZERO: u32 = 0;
    fn from_usize(x: usize) -> u32 {
        x as u32
    }
    fn to_usize(self) -> usize {
        self as usize
    }
}

impl Offset for u64 {
    const ZERO: u64 = 0;
    fn from_usize(x: usize) -> u64 {
        x as u64
    }
    fn to_usize(self) -> usize {
        self as usize
    }
}

/// The graph is much bigger than the caches and its edges go everywhere, so the DFS and the main
/// loop of Lengauer–Tarjan are bound by memory latency. Both load some data before they need it
/// (the loaded values go nowhere) so that cache misses overlap instead of queueing one behind
/// the other: the DFS the numbers and edge ranges of this many successors of each new node...
const DFS_LOOK_AHEAD: usize = 8;
/// ... and Lengauer–Tarjan the forest state of the predecessors of the vertex this many steps
/// ahead.
const LT_LOOK_AHEAD: usize = 16;

/// The hot per-vertex state of the link–eval forest of Lengauer–Tarjan, kept together so that
/// following a forest pointer touches one cache line.
#[derive(Clone, Copy)]
struct Link {
    /// Forest pointer (preorder number); starts as the DFS tree parent.
    ancestor: u32,
    /// The smallest semidominator on the compressed forest path up from this vertex (the
    /// vertex's own number until it is processed).
    best: u32,
}

/// The result of the DFS from the super root.
struct Dfs {
    /// Node → preorder number (NONE if unreachable).
    dfnum: Vec<u32>,
    /// Preorder number → node, with the placeholder NONE at 0 for the super root.
    vertex: Vec<u32>,
    /// Preorder number → forest state, with the DFS parent filled in.
    links: Vec<Link>,
    /// `graph.targets` translated to preorder numbers (only valid for reachable sources).
    renumbered: Vec<u32>,
}

/// Iterative DFS from the super root, numbering the reachable nodes in preorder and translating
/// their edges to preorder numbers on the way (each edge is looked at exactly once).
fn depth_first_search(graph: &Csr, roots: &[u32]) -> Dfs {
    let node_count = graph.node_count();
    let offsets = &graph.offsets;
    let targets = &graph.targets;
    let mut dfnum = vec![NONE; node_count];
    let mut renumbered = vec![0u32; targets.len()];
    let mut vertex: Vec<u32> = Vec::with_capacity(node_count + 1);
    let mut links: Vec<Link> = Vec::with_capacity(node_count + 1);
    vertex.push(NONE);
    links.push(Link {
        ancestor: 0,
        best: 0,
    });
    let mut sink = 0u64;
    // (node, its preorder number, next edge to look at)
    let mut stack: Vec<(u32, u32, u64)> = Vec::new();
    for &r in roots {
        if dfnum[r as usize] != NONE {
            continue;
        }
        let mut next = r;
        let mut parent = 0;
        loop {
            if next != NONE {
                // Visit `next`, a child of `parent`.
                let num = vertex.len() as u32;
                dfnum[next as usize] = num;
                vertex.push(next);
                links.push(Link {
                    ancestor: parent,
                    best: num,
                });
                sink ^= touch_successors(graph, &dfnum, next);
                stack.push((next, num, offsets[next as usize]));
            }
            let Some(top) = stack.last_mut() else { break };
            let (node, num, mut e) = *top;
            let end = offsets[node as usize + 1];
            next = NONE;
            while e < end {
                let s = targets[e as usize];
                let d = dfnum[s as usize];
                if d == NONE {
                    renumbered[e as usize] = vertex.len() as u32;
                    next = s;
                    e += 1;
                    break;
                }
                renumbered[e as usize] = d;
                e += 1;
            }
            top.2 = e;
            if next == NONE {
                stack.pop();
            } else {
                parent = num;
            }
        }
    }
    std::hint::black_box(sink);
    Dfs {
        dfnum,
        vertex,
        links,
        renumbered,
    }
}

/// Loads what the DFS will look at after `node`: its first successors' numbers and edge ranges.
fn touch_successors(graph: &Csr, dfnum: &[u32], node: u32) -> u64 {
    let mut sink = 0;
    for &t in graph.successors(node).iter().take(DFS_LOOK_AHEAD) {
        sink ^= u64::from(dfnum[t as usize]) ^ graph.offsets[t as usize];
    }
    sink
}

/// Predecessor lists in preorder numbering (CSR), restricted to reachable nodes; the super root
/// (0) is a predecessor of every root. The graph is read in its own order (sequentially).
fn predecessors<O: Offset>(graph: &Csr, roots: &[u32], dfs: &Dfs) -> (Vec<O>, Vec<u32>) {
    let n = dfs.vertex.len() - 1;
    let dfnum = &dfs.dfnum;
    let renumbered = &dfs.renumbered;
    let reachable_edges = || {
        (0..graph.node_count())
            .filter(|&v| dfnum[v] != NONE)
            .map(|v| {
                let range = graph.offsets[v] as usize..graph.offsets[v + 1] as usize;
                (dfnum[v], &renumbered[range])
            })
    };
    // off[d] counts the edges into d, then (inclusive prefix sum) the end of d's range; filling
    // by pre-decrement leaves off[d] at the start of d's range.
    let mut off = vec![O::ZERO; n + 2];
    let bump = |o: &mut O| *o = O::from_usize(o.to_usize() + 1);
    for &r in roots {
        bump(&mut off[dfnum[r as usize] as usize]);
    }
    for (_, succ) in reachable_edges() {
        for &d in succ {
            bump(&mut off[d as usize]);
        }
    }
    let mut sum = 0usize;
    for o in off.iter_mut() {
        sum += o.to_usize();
        *o = O::from_usize(sum);
    }
    let mut preds = vec![0u32; sum];
    let mut place = |o: &mut O, from: u32| {
        let at = o.to_usize() - 1;
        *o = O::from_usize(at);
        preds[at] = from;
    };
    for &r in roots {
        place(&mut off[dfnum[r as usize] as usize], 0);
    }
    for (from, succ) in reachable_edges() {
        for &d in succ {
            place(&mut off[d as usize], from);
        }
    }
    (off, preds)
}

/// The simple Lengauer–Tarjan algorithm on preorder numbers, given each vertex's DFS parent (in
/// `links`) and predecessors. Vertices are linked into the forest in reverse preorder, right
/// after being processed, and a vertex's forest pointer starts as its DFS parent; so a vertex
/// `x` is linked exactly when `x >= first_linked`, and linking costs nothing. Returns the
/// immediate dominators in preorder numbering (`idom[0] == 0`).
fn lengauer_tarjan<O: Offset>(mut links: Vec<Link>, pred_off: &[O], preds: &[u32]) -> Vec<u32> {
    let n = links.len() - 1;
    let preds_of = |w: usize| &preds[pred_off[w].to_usize()..pred_off[w + 1].to_usize()];
    // The vertex of smallest semidominator on the compressed forest path (see `eval`).
    let mut label: Vec<u32> = (0..=n as u32).collect();
    let mut semi = vec![0u32; n + 1];
    // Bucket lists: `head[s]` starts the list of vertices whose semidominator is s, linked
    // through `idom` (a vertex is in one bucket at most and gets its idom when it leaves it).
    let mut head = vec![NONE; n + 1];
    let mut idom = vec![NONE; n + 1];
    let mut stack: Vec<u32> = Vec::new();
    let mut sink = 0u32;

    for w in (1..=n).rev() {
        if w > LT_LOOK_AHEAD {
            for &v in preds_of(w - LT_LOOK_AHEAD).iter().take(2 * LT_LOOK_AHEAD) {
                if v as usize > w {
                    sink ^= links[v as usize].ancestor;
                }
            }
        }
        let p = links[w].ancestor; // w is not linked yet: still its DFS parent
        let mut s = w as u32;
        for &v in preds_of(w) {
            s = s.min(eval(&mut links, &mut label, v, w as u32 + 1, &mut stack));
        }
        semi[w] = s;
        links[w].best = s;
        idom[w] = head[s as usize];
        head[s as usize] = w as u32;
        // link(p, w): the forest pointer of w is already p; from now on w counts as linked.
        let mut v = std::mem::replace(&mut head[p as usize], NONE);
        while v != NONE {
            let next = idom[v as usize];
            // semi[v] == p
            let best = eval(&mut links, &mut label, v, w as u32, &mut stack);
            idom[v as usize] = if best < p { label[v as usize] } else { p };
            v = next;
        }
    }
    std::hint::black_box(sink);
    drop((head, label, links));
    idom[0] = 0;
    for w in 1..=n {
        if idom[w] != semi[w] {
            idom[w] = idom[idom[w] as usize];
        }
    }
    idom
}

/// `eval` of the link–eval forest with path compression: the smallest semidominator on the
/// forest path from `v` up to (not including) its forest root, or `v` itself if `v` is a root;
/// `label[v]` is then a vertex on that path with that semidominator. Vertices
/// `>= first_linked` are linked (and have been processed); the others still have their own
/// number as semidominator. The compression uses `stack` instead of recursion.
fn eval(
    links: &mut [Link],
    label: &mut [u32],
    v: u32,
    first_linked: u32,
    stack: &mut Vec<u32>,
) -> u32 {
    if v < first_linked {
        return v;
    }
    let mut x = v;
    loop {
        let a = links[x as usize].ancestor;
        if a < first_linked {
            break;
        }
        stack.push(x);
        x = a;
    }
    // x's forest parent is a root; compress from the top down.
    while let Some(y) = stack.pop() {
        let y = y as usize;
        let a = links[y].ancestor as usize;
        let up = links[a];
        if up.best < links[y].best {
            links[y].best = up.best;
            label[y] = label[a];
        }
        links[y].ancestor = up.ancestor;
    }
    links[v as usize].best
}

/// The children CSR: slot `node_count` is the super root. Children come out sorted by retained
/// size (biggest first), then node id.
fn children_index(idom: &[u32], retained: &[u64], preorder: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let node_count = idom.len();
    let slot_of = |d: u32| {
        if d == SUPER_ROOT {
            node_count
        } else {
            d as usize
        }
    };
    let mut offsets = vec![0u32; node_count + 2];
    for &v in preorder {
        offsets[slot_of(idom[v as usize]) + 1] += 1;
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    let mut cursor = offsets.clone();
    let mut list = vec![0u32; preorder.len()];
    for &v in preorder {
        let c = &mut cursor[slot_of(idom[v as usize])];
        list[*c as usize] = v;
        *c += 1;
    }
    drop(cursor);
    // Sort keys: (retained size descending, node id), packed into one u64 when every retained
    // size fits in 32 bits (then sorting is a plain integer sort), as a pair otherwise.
    let narrow = retained.iter().all(|&r| r <= u64::from(u32::MAX));
    let mut packed: Vec<u64> = Vec::new();
    let mut pairs: Vec<(std::cmp::Reverse<u64>, u32)> = Vec::new();
    for slot in 0..=node_count {
        let group = &mut list[offsets[slot] as usize..offsets[slot + 1] as usize];
        if group.len() < 2 {
            continue;
        }
        if narrow {
            packed.clear();
            packed.extend(
                group
                    .iter()
                    .map(|&c| (u64::from(!(retained[c as usize] as u32)) << 32) | u64::from(c)),
            );
            packed.sort_unstable();
            for (dst, &key) in group.iter_mut().zip(&packed) {
                *dst = key as u32;
            }
        } else {
            pairs.clear();
            pairs.extend(
                group
                    .iter()
                    .map(|&c| (std::cmp::Reverse(retained[c as usize]), c)),
            );
            pairs.sort_unstable();
            for (dst, &(_, c)) in group.iter_mut().zip(&pairs) {
                *dst = c;
            }
        }
    }
    (offsets, list)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic PRNG for the randomized tests.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn compute(n: usize, edges: &[(u32, u32)], roots: &[u32], sizes: &[u64]) -> Dominators {
        let d = Dominators::compute(&Csr::from_edges(n, edges), roots, sizes);
        check_invariants(&d);
        d
    }

    /// Structural checks every result must pass.
    fn check_invariants(d: &Dominators) {
        let n = d.idom.len();
        assert_eq!(d.retained.len(), n);
        let mut pos = vec![usize::MAX; n];
        for (i, &v) in d.preorder.iter().enumerate() {
            assert_eq!(pos[v as usize], usize::MAX, "node {v} twice in preorder");
            pos[v as usize] = i;
        }
        for v in 0..n {
            let idom = d.idom[v];
            if pos[v] == usize::MAX {
                assert_eq!(idom, UNREACHABLE);
                assert_eq!(d.retained[v], 0);
                assert!(d.children(v as u32).is_empty());
            } else {
                assert_ne!(idom, UNREACHABLE);
                if idom != SUPER_ROOT {
                    assert!(pos[idom as usize] < pos[v], "idom after node in preorder");
                }
            }
        }
        // children: exactly the nodes with that idom, sorted by retained, biggest first.
        let mut seen = 0;
        for parent in (0..n as u32).chain([SUPER_ROOT]) {
            let kids = d.children(parent);
            seen += kids.len();
            for &k in kids {
                assert_eq!(d.idom[k as usize], parent);
            }
            for pair in kids.windows(2) {
                assert!(d.retained[pair[0] as usize] >= d.retained[pair[1] as usize]);
            }
        }
        assert_eq!(seen, d.reachable_count());
        let top: u64 = d
            .children(SUPER_ROOT)
            .iter()
            .map(|&c| d.retained[c as usize])
            .sum();
        assert_eq!(top, d.reachable_size());
    }

    #[test]
    fn dominators_diamond() {
        // r=0, a=1, b=2, c=3
        let d = compute(
            4,
            &[(0, 1), (0, 2), (1, 3), (2, 3)],
            &[0],
            &[1, 10, 100, 1000],
        );
        assert_eq!(d.idom, vec![SUPER_ROOT, 0, 0, 0]);
        assert_eq!(d.retained, vec![1111, 10, 100, 1000]);
        assert_eq!(d.children(SUPER_ROOT), &[0]);
        assert_eq!(d.children(0), &[3, 2, 1]);
        assert_eq!(d.reachable_size(), 1111);
        assert_eq!(d.reachable_count(), 4);
        assert_eq!(d.preorder[0], 0);
    }

    #[test]
    fn dominators_chain() {
        let d = compute(4, &[(0, 1), (1, 2), (2, 3)], &[0], &[1, 2, 3, 4]);
        assert_eq!(d.idom, vec![SUPER_ROOT, 0, 1, 2]);
        assert_eq!(d.retained, vec![10, 9, 7, 4]);
        assert_eq!(d.preorder, vec![0, 1, 2, 3]);
        assert_eq!(d.children(2), &[3]);
        assert!(d.children(3).is_empty());
    }

    #[test]
    fn dominators_two_roots_share_a_node() {
        // roots 0 and 1 both reach 2; 2 -> 3; 0 -> 4 only.
        let d = compute(
            5,
            &[(0, 2), (1, 2), (2, 3), (0, 4)],
            &[0, 1, 0],
            &[1, 1, 5, 7, 3],
        );
        assert_eq!(d.idom, vec![SUPER_ROOT, SUPER_ROOT, SUPER_ROOT, 2, 0]);
        assert_eq!(d.retained, vec![4, 1, 12, 7, 3]);
        assert_eq!(d.children(SUPER_ROOT), &[2, 0, 1]);
        assert_eq!(d.reachable_size(), 17);
    }

    #[test]
    fn dominators_root_reachable_from_other_root() {
        // root 1 is also reached from root 0: it is still a root, so only the super root
        // dominates it.
        let d = compute(3, &[(0, 1), (1, 2)], &[0, 1], &[1, 2, 4]);
        assert_eq!(d.idom, vec![SUPER_ROOT, SUPER_ROOT, 1]);
        assert_eq!(d.retained, vec![1, 6, 4]);
    }

    #[test]
    fn dominators_cycle() {
        // 0 -> 1 -> 2 -> 3 -> 1, 3 -> 0
        let d = compute(
            4,
            &[(0, 1), (1, 2), (2, 3), (3, 1), (3, 0)],
            &[0],
            &[1, 2, 4, 8],
        );
        assert_eq!(d.idom, vec![SUPER_ROOT, 0, 1, 2]);
        assert_eq!(d.retained, vec![15, 14, 12, 8]);
    }

    #[test]
    fn dominators_self_loop_and_duplicate_edges() {
        let d = compute(
            3,
            &[(0, 0), (0, 1), (0, 1), (1, 1), (1, 2), (1, 2), (2, 2)],
            &[0, 0],
            &[1, 2, 4],
        );
        assert_eq!(d.idom, vec![SUPER_ROOT, 0, 1]);
        assert_eq!(d.retained, vec![7, 6, 4]);
    }

    #[test]
    fn dominators_unreachable() {
        // 2 points into the reachable graph but nothing reaches 2 (or 3).
        let d = compute(4, &[(0, 1), (2, 1), (2, 3)], &[0], &[1, 2, 4, 8]);
        assert_eq!(d.idom, vec![SUPER_ROOT, 0, UNREACHABLE, UNREACHABLE]);
        assert_eq!(d.retained, vec![3, 2, 0, 0]);
        assert_eq!(d.reachable_count(), 2);
        assert_eq!(d.reachable_size(), 3);
        assert!(d.children(2).is_empty());
        assert!(d.children(UNREACHABLE).is_empty());
    }

    #[test]
    fn dominators_no_roots_and_empty_graph() {
        let d = compute(2, &[(0, 1)], &[], &[1, 1]);
        assert_eq!(d.idom, vec![UNREACHABLE, UNREACHABLE]);
        assert_eq!(d.reachable_size(), 0);
        assert!(d.children(SUPER_ROOT).is_empty());
        let d = compute(0, &[], &[], &[]);
        assert!(d.idom.is_empty() && d.preorder.is_empty());
        assert_eq!(Csr::default().node_count(), 0);
    }

    #[test]
    fn dominators_lengauer_tarjan_paper_example() {
        // Figure 1 of Lengauer & Tarjan, "A Fast Algorithm for Finding Dominators in a
        // Flowgraph" (1979).
        const R: u32 = 0;
        const A: u32 = 1;
        const B: u32 = 2;
        const C: u32 = 3;
        const D: u32 = 4;
        const E: u32 = 5;
        const F: u32 = 6;
        const G: u32 = 7;
        const H: u32 = 8;
        const I: u32 = 9;
        const J: u32 = 10;
        const K: u32 = 11;
        const L: u32 = 12;
        let edges = [
            (R, A),
            (R, B),
            (R, C),
            (A, D),
            (B, A),
            (B, D),
            (B, E),
            (C, F),
            (C, G),
            (D, L),
            (E, H),
            (F, I),
            (G, I),
            (G, J),
            (H, E),
            (H, K),
            (I, K),
            (J, I),
            (K, I),
            (K, R),
            (L, H),
        ];
        let d = compute(13, &edges, &[R], &[1; 13]);
        let expected = [
            (R, SUPER_ROOT),
            (A, R),
            (B, R),
            (C, R),
            (D, R),
            (E, R),
            (F, C),
            (G, C),
            (H, R),
            (I, R),
            (J, G),
            (K, R),
            (L, D),
        ];
        for (node, idom) in expected {
            assert_eq!(d.idom[node as usize], idom, "idom of node {node}");
        }
        assert_eq!(d.retained[R as usize], 13);
        assert_eq!(d.retained[C as usize], 4); // C, F, G, J
        assert_eq!(d.retained[D as usize], 2); // D, L
        assert_eq!(d.children(R), &[C, D, A, B, E, H, I, K]);
    }

    /// All nodes reachable from `roots` when `removed` (if any) is deleted from the graph.
    fn reachable(graph: &Csr, roots: &[u32], removed: Option<u32>) -> Vec<bool> {
        let mut seen = vec![false; graph.node_count()];
        let mut stack: Vec<u32> = Vec::new();
        for &r in roots {
            if Some(r) != removed && !seen[r as usize] {
                seen[r as usize] = true;
                stack.push(r);
            }
        }
        while let Some(v) = stack.pop() {
            for &s in graph.successors(v) {
                if Some(s) != removed && !seen[s as usize] {
                    seen[s as usize] = true;
                    stack.push(s);
                }
            }
        }
        seen
    }

    #[test]
    fn dominators_match_brute_force_on_random_graphs() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..200 {
            let n = 1 + rng.below(40) as usize;
            let edge_count = rng.below(4 * n as u64 + 1) as usize;
            let mut edges = Vec::with_capacity(edge_count);
            for _ in 0..edge_count {
                let from = rng.below(n as u64) as u32;
                // Mix of local (list-like) and random edges.
                let to = if rng.below(3) == 0 {
                    ((from as u64 + 1 + rng.below(3)) % n as u64) as u32
                } else {
                    rng.below(n as u64) as u32
                };
                edges.push((from, to));
            }
            let root_count = rng.below(4) as usize;
            let roots: Vec<u32> = (0..root_count)
                .map(|_| rng.below(n as u64) as u32)
                .collect();
            let sizes: Vec<u64> = (0..n).map(|_| 1 + rng.below(1000)).collect();

            let graph = Csr::from_edges(n, &edges);
            let d = Dominators::compute(&graph, &roots, &sizes);
            check_invariants(&d);
            assert_same(&d, &Dominators::compute_with::<u64>(&graph, &roots, &sizes));
            // (also checks the reference used on bigger graphs below)
            assert_eq!(reference_idom(&graph, &roots), d.idom, "round {round}");

            let base = reachable(&graph, &roots, None);
            // dominated_by[d][v]: d dominates v (strictly).
            let mut dominated_by = vec![vec![false; n]; n];
            for (dom, row) in dominated_by.iter_mut().enumerate() {
                if !base[dom] {
                    continue;
                }
                let without = reachable(&graph, &roots, Some(dom as u32));
                for v in 0..n {
                    row[v] = v != dom && base[v] && !without[v];
                }
            }
            for v in 0..n {
                if !base[v] {
                    assert_eq!(d.idom[v], UNREACHABLE, "round {round} node {v}");
                    assert_eq!(d.retained[v], 0);
                    continue;
                }
                // Strict dominators form a chain; the immediate one is the deepest, i.e. the
                // one with the most dominators of its own.
                let doms: Vec<usize> = (0..n).filter(|&x| dominated_by[x][v]).collect();
                let expected = doms
                    .iter()
                    .copied()
                    .max_by_key(|&x| (0..n).filter(|&y| dominated_by[y][x]).count())
                    .map_or(SUPER_ROOT, |x| x as u32);
                for &x in &doms {
                    assert!(
                        x as u32 == expected || dominated_by[x][expected as usize],
                        "round {round}: dominators of {v} are not a chain"
                    );
                }
                assert_eq!(
                    d.idom[v], expected,
                    "round {round} node {v}: {edges:?} {roots:?}"
                );
                let retained: u64 = (0..n)
                    .filter(|&w| w == v || dominated_by[v][w])
                    .map(|w| sizes[w])
                    .sum();
                assert_eq!(d.retained[v], retained, "round {round} node {v}");
            }
            let total: u64 = (0..n).filter(|&v| base[v]).map(|v| sizes[v]).sum();
            assert_eq!(d.reachable_size(), total);
            assert_eq!(d.reachable_count(), base.iter().filter(|&&b| b).count());
        }
    }

    fn assert_same(a: &Dominators, b: &Dominators) {
        assert_eq!(a.idom, b.idom);
        assert_eq!(a.retained, b.retained);
        assert_eq!(a.preorder, b.preorder);
        assert_eq!(a.child_offsets, b.child_offsets);
        assert_eq!(a.child_list, b.child_list);
        assert_eq!(a.reachable_size, b.reachable_size);
    }

    /// Reference immediate dominators by the iterative data-flow algorithm of Cooper, Harvey and
    /// Kennedy ("A Simple, Fast Dominance Algorithm"): slow on big graphs but simple, and
    /// independent of Lengauer–Tarjan.
    fn reference_idom(graph: &Csr, roots: &[u32]) -> Vec<u32> {
        let n = graph.node_count();
        let root = n; // the super root
        let succ = |v: usize| -> Vec<usize> {
            if v == root {
                roots.iter().map(|&r| r as usize).collect()
            } else {
                graph
                    .successors(v as u32)
                    .iter()
                    .map(|&s| s as usize)
                    .collect()
            }
        };
        // Postorder numbers by an iterative DFS.
        let mut post = vec![usize::MAX; n + 1];
        let mut order = Vec::new(); // nodes in postorder
        let mut seen = vec![false; n + 1];
        let mut stack = vec![(root, succ(root), 0usize)];
        seen[root] = true;
        while let Some((v, s, i)) = stack.last_mut() {
            if *i < s.len() {
                let t = s[*i];
                *i += 1;
                if !seen[t] {
                    seen[t] = true;
                    let st = succ(t);
                    stack.push((t, st, 0));
                }
            } else {
                post[*v] = order.len();
                order.push(*v);
                stack.pop();
            }
        }
        let mut preds = vec![Vec::new(); n + 1];
        for &v in &order {
            for t in succ(v) {
                preds[t].push(v);
            }
        }
        let mut idom = vec![usize::MAX; n + 1];
        idom[root] = root;
        let mut changed = true;
        while changed {
            changed = false;
            for &v in order.iter().rev().filter(|&&v| v != root) {
                let mut new = usize::MAX;
                for &p in &preds[v] {
                    if idom[p] == usize::MAX {
                        continue;
                    }
                    new = if new == usize::MAX {
                        p
                    } else {
                        let (mut a, mut b) = (p, new);
                        while a != b {
                            while post[a] < post[b] {
                                a = idom[a];
                            }
                            while post[b] < post[a] {
                                b = idom[b];
                            }
                        }
                        a
                    };
                }
                if idom[v] != new {
                    idom[v] = new;
                    changed = true;
                }
            }
        }
        (0..n)
            .map(|v| match idom[v] {
                usize::MAX => UNREACHABLE,
                d if d == root => SUPER_ROOT,
                d => d as u32,
            })
            .collect()
    }

    #[test]
    fn dominators_match_reference_on_bigger_graphs() {
        // Deep graphs (chains and trees with random extra edges) of a few thousand nodes: long
        // forest paths exercise the path compression.
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        for round in 0..40 {
            let n = 500 + rng.below(3000) as usize;
            let mut edges = Vec::new();
            for v in 1..n as u32 {
                // a spanning chain or random tree, so most nodes are reachable
                let parent = if round % 2 == 0 {
                    v - 1
                } else {
                    rng.below(u64::from(v)) as u32
                };
                edges.push((parent, v));
            }
            let extra = rng.below(2 * n as u64) as usize;
            for _ in 0..extra {
                let from = rng.below(n as u64) as u32;
                let to = if rng.below(2) == 0 {
                    // short hops forward or back
                    (from as u64 + rng.below(16))
                        .saturating_sub(8)
                        .min(n as u64 - 1) as u32
                } else {
                    rng.below(n as u64) as u32
                };
                edges.push((from, to));
            }
            let mut roots = vec![0];
            roots.extend((0..rng.below(3)).map(|_| rng.below(n as u64) as u32));
            let sizes: Vec<u64> = (0..n).map(|_| rng.below(100)).collect();
            let graph = Csr::from_edges(n, &edges);
            let d = Dominators::compute(&graph, &roots, &sizes);
            check_invariants(&d);
            assert_eq!(d.idom, reference_idom(&graph, &roots), "round {round}");
            // retained = self size + retained of the dominator-tree children
            for v in 0..n as u32 {
                if d.idom[v as usize] != UNREACHABLE {
                    let kids: u64 = d.children(v).iter().map(|&c| d.retained[c as usize]).sum();
                    assert_eq!(d.retained[v as usize], sizes[v as usize] + kids);
                }
            }
        }
    }

    #[test]
    fn dominators_million_node_linked_list() {
        let n = 1_000_000u32;
        let mut edges: Vec<(u32, u32)> = (0..n - 1).map(|i| (i, i + 1)).collect();
        // A few cross edges: a back edge (changes nothing) and a skip edge (10 -> 500_000
        // makes 10 the idom of 500_000).
        edges.push((999_999, 0));
        edges.push((10, 500_000));
        edges.push((700_000, 700_000));
        let sizes = vec![1u64; n as usize];
        let d = Dominators::compute(&Csr::from_edges(n as usize, &edges), &[0], &sizes);
        assert_eq!(d.reachable_count(), n as usize);
        assert_eq!(d.idom[0], SUPER_ROOT);
        assert_eq!(d.idom[1], 0);
        assert_eq!(d.idom[500_000], 10);
        assert_eq!(d.idom[499_999], 499_998);
        assert_eq!(d.idom[999_999], 999_998);
        assert_eq!(d.retained[0], n as u64);
        assert_eq!(d.retained[10], n as u64 - 10);
        assert_eq!(d.retained[11], 500_000 - 11);
        assert_eq!(d.retained[500_000], 500_000);
        assert_eq!(d.children(10), &[500_000, 11]);
        for v in 1..n as usize {
            if v != 500_000 {
                assert_eq!(d.idom[v], v as u32 - 1);
            }
        }
    }

    /// Size of a heap of a big Rails app: 2 million objects, 10 million references. Run with
    /// `cargo test --release -p rbscope-heap dominators_large -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn dominators_large_random_heap() {
        let n: usize = 2_000_000;
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let mut offsets = Vec::with_capacity(n + 1);
        let mut targets = Vec::with_capacity(10_000_000);
        offsets.push(0u64);
        for v in 0..n as u64 {
            // ~5 references per object: half to objects allocated nearby, half anywhere.
            let k = rng.below(11);
            for _ in 0..k {
                let t = if rng.below(2) == 0 {
                    (v + 1 + rng.below(64)) % n as u64
                } else {
                    rng.below(n as u64)
                };
                targets.push(t as u32);
            }
            offsets.push(targets.len() as u64);
        }
        let graph = Csr { offsets, targets };
        let roots: Vec<u32> = (0..5_000).map(|_| rng.below(n as u64) as u32).collect();
        let sizes: Vec<u64> = (0..n).map(|_| 40 + rng.below(200)).collect();
        let start = std::time::Instant::now();
        let d = Dominators::compute(&graph, &roots, &sizes);
        println!(
            "{} nodes, {} edges: {} reachable, {:?}",
            n,
            graph.targets.len(),
            d.reachable_count(),
            start.elapsed()
        );
        assert!(d.reachable_count() > n / 2);
    }
}
