//! The object graph of one dump: nodes numbered in file order, references resolved to node
//! numbers, and the GC roots.
//!
//! Built in two steps so that memory stays near the final size: the parallel scan keeps, per
//! chunk, each object's address, type, class pointer, size and its raw reference addresses;
//! then chunks are put back in file order, an address table is built, and each chunk's
//! references are resolved in parallel into the final edge array. An object's `class` becomes
//! an edge too when it points at a class, module or include class (so a singleton class keeps
//! its object's class alive, as in the VM); Ruby 3.1's junk IMEMO class values resolve to
//! nothing or to non-classes and are dropped. SHAPE records are not nodes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rustc_hash::FxHashMap;

use crate::dominators::Csr;
use crate::input::{Dump, HeapError, ScanOptions, ScanStats};
use crate::names::{self, ClassTable, GroupKey, SubNames};
use crate::parse::{ObjType, Record, RecordKind};

/// Node number of an object in a [`HeapGraph`].
pub type NodeId = u32;

/// One dump's objects and references.
pub struct HeapGraph {
    pub address: Vec<u64>,
    pub ty: Vec<ObjType>,
    /// `memsize` (which includes the slot). The allocation tracer's table counts as its slot
    /// only (see [`HeapGraph::tracer`]).
    pub self_size: Vec<u64>,
    /// Index into [`HeapGraph::group_names`].
    pub group: Vec<u32>,
    pub group_names: Vec<String>,
    pub edges: Csr,
    /// Root categories in file order and the nodes each references (deduplicated).
    pub roots: Vec<(String, Vec<NodeId>)>,
    pub classes: ClassTable,
    /// References to addresses that are not objects of this dump (e.g. to a free slot, or to
    /// static data), left out of the graph.
    pub dangling_refs: u64,
    /// The allocation tracer's table and its memsize, left out of sizes because it is the
    /// tracer's memory, not the app's.
    pub tracer: Option<(NodeId, u64)>,
    pub stats: ScanStats,
    index: FxHashMap<u64, NodeId>,
}

/// What one chunk contributed, in file order.
#[derive(Default)]
struct Part {
    seq: usize,
    address: Vec<u64>,
    ty: Vec<ObjType>,
    class: Vec<u64>,
    size: Vec<u64>,
    key: Vec<GroupKey>,
    ref_len: Vec<u32>,
    refs: Vec<u64>,
    roots: Vec<(String, Vec<u64>)>,
}

#[derive(Default)]
struct Worker {
    parts: Vec<Part>,
    classes: ClassTable,
    subs: SubNames,
}

impl Worker {
    fn add(&mut self, seq: usize, rec: &Record<'_>) {
        if self.parts.last().is_none_or(|p| p.seq != seq) {
            self.parts.push(Part {
                seq,
                ..Part::default()
            });
        }
        let Some(part) = self.parts.last_mut() else {
            return;
        };
        match rec.kind {
            RecordKind::Shape => {}
            RecordKind::Root => {
                let name = rec.root.map(|r| r.to_string_lossy()).unwrap_or_default();
                part.roots.push((name, rec.references.iter().collect()));
            }
            RecordKind::Object => {
                if rec.ty == ObjType::None {
                    return;
                }
                part.address.push(rec.address);
                part.ty.push(rec.ty);
                part.class.push(rec.class);
                part.size.push(rec.memsize);
                part.key.push(names::group_key(rec, &mut self.subs));
                let before = part.refs.len();
                part.refs.extend(rec.references.iter());
                part.ref_len.push((part.refs.len() - before) as u32);
                self.classes.note(rec);
            }
        }
    }
}

impl HeapGraph {
    /// Reads `dump` into a graph.
    pub fn build(dump: &Dump, opts: ScanOptions<'_>) -> Result<HeapGraph, HeapError> {
        let (workers, stats) = dump.fold(opts, Worker::default, |w, seq, rec| w.add(seq, rec))?;
        let mut classes = ClassTable::default();
        let mut subs = SubNames::default();
        let mut parts = Vec::new();
        for w in workers {
            classes.merge(w.classes);
            subs.merge(w.subs);
            parts.extend(w.parts);
        }
        parts.sort_by_key(|p| p.seq);
        let n: usize = parts.iter().map(|p| p.address.len()).sum();

        let mut g = HeapGraph {
            address: Vec::with_capacity(n),
            ty: Vec::with_capacity(n),
            self_size: Vec::with_capacity(n),
            group: Vec::with_capacity(n),
            group_names: Vec::new(),
            edges: Csr {
                offsets: Vec::new(),
                targets: Vec::new(),
            },
            roots: Vec::new(),
            classes,
            dangling_refs: 0,
            tracer: None,
            stats,
            index: FxHashMap::default(),
        };
        let mut group_ids: FxHashMap<GroupKey, u32> = FxHashMap::default();
        let mut group_names = names::Interner::default();
        let mut tracer: Option<usize> = None;
        for p in &parts {
            g.address.extend_from_slice(&p.address);
            g.ty.extend_from_slice(&p.ty);
            g.self_size.extend_from_slice(&p.size);
            for k in &p.key {
                if k.is_allocation_tracer() && tracer.is_none() {
                    tracer = Some(g.group.len());
                }
                let id = *group_ids
                    .entry(*k)
                    .or_insert_with(|| group_names.id(names::group_name(k, &g.classes, &subs)));
                g.group.push(id);
            }
        }
        g.group_names = group_names.names;
        g.index.reserve(n);
        for (i, a) in g.address.iter().enumerate() {
            g.index.insert(*a, i as NodeId);
        }
        if let Some(i) = tracer {
            // Counted as its slot only: the table is the tracer's memory, not the app's.
            let size = g.self_size[i];
            g.tracer = Some((i as NodeId, size));
            g.self_size[i] = 40.min(size);
        }

        // Resolve each part's references (and class edge) in parallel, then concatenate.
        let resolved = resolve_parts(&parts, &g.index, &g.ty, opts.jobs);
        let total_edges: usize = resolved.iter().map(|r| r.targets.len()).sum();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut targets = Vec::with_capacity(total_edges);
        offsets.push(0u64);
        for r in resolved {
            g.dangling_refs += r.dangling;
            for len in r.lens {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + len as u64);
            }
            targets.extend_from_slice(&r.targets);
        }
        g.edges = Csr { offsets, targets };

        // Roots, in file order, merged by category.
        let mut roots: Vec<(String, Vec<NodeId>)> = Vec::new();
        for p in &mut parts {
            for (name, refs) in p.roots.drain(..) {
                let ids = refs.iter().filter_map(|a| g.index.get(a).copied());
                match roots.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => v.extend(ids),
                    None => roots.push((name, ids.collect())),
                }
            }
        }
        for (_, v) in &mut roots {
            let mut seen = rustc_hash::FxHashSet::default();
            v.retain(|x| seen.insert(*x));
        }
        g.roots = roots;
        Ok(g)
    }

    pub fn node_count(&self) -> usize {
        self.address.len()
    }

    /// The node at `address`, if it is an object of this dump.
    pub fn node(&self, address: u64) -> Option<NodeId> {
        self.index.get(&address).copied()
    }

    pub fn group_name(&self, n: NodeId) -> &str {
        &self.group_names[self.group[n as usize] as usize]
    }

    /// Every node a root references, roots in order (a node can appear under two roots).
    pub fn root_nodes(&self) -> Vec<NodeId> {
        self.roots
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }
}

struct Resolved {
    lens: Vec<u32>,
    targets: Vec<u32>,
    dangling: u64,
}

fn resolve_parts(
    parts: &[Part],
    index: &FxHashMap<u64, NodeId>,
    ty: &[ObjType],
    jobs: usize,
) -> Vec<Resolved> {
    let next = AtomicUsize::new(0);
    let out: Vec<Mutex<Option<Resolved>>> = parts.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(parts.len().max(1)) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = parts.get(k) else { break };
                let r = resolve_part(p, index, ty);
                if let Ok(mut slot) = out[k].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner().ok().flatten().unwrap_or(Resolved {
                lens: Vec::new(),
                targets: Vec::new(),
                dangling: 0,
            })
        })
        .collect()
}

fn resolve_part(p: &Part, index: &FxHashMap<u64, NodeId>, ty: &[ObjType]) -> Resolved {
    let mut r = Resolved {
        lens: Vec::with_capacity(p.address.len()),
        targets: Vec::with_capacity(p.refs.len() + p.address.len()),
        dangling: 0,
    };
    let mut at = 0usize;
    for i in 0..p.address.len() {
        let before = r.targets.len();
        let refs = &p.refs[at..at + p.ref_len[i] as usize];
        at += p.ref_len[i] as usize;
        for a in refs {
            match index.get(a) {
                Some(t) => r.targets.push(*t),
                None => r.dangling += 1,
            }
        }
        if p.class[i] != 0 {
            if let Some(c) = index.get(&p.class[i]) {
                if ty[*c as usize].is_class_like() {
                    r.targets.push(*c);
                }
            }
        }
        r.lens.push((r.targets.len() - before) as u32);
    }
    r
}
