//! The census of a dump: objects and bytes by type, by class, by allocation site, by
//! generation, and what the roots and format look like.
//!
//! One parallel pass; each worker counts into its own maps keyed by numbers (class address,
//! hashes of file names), merged and named at the end, so the pass allocates almost nothing per
//! line and keeps memory to the number of distinct groups, not objects.

use rustc_hash::FxHashMap;

use crate::input::{Dump, HeapError, ScanOptions, ScanStats};
use crate::names::{self, ClassTable, GroupKey, SubNames};
use crate::parse::{ObjType, Record, RecordKind};

/// A count and the bytes (`memsize`) behind it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        // Sizes come from the dump: a hostile one may claim anything.
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn merge(&mut self, o: Tally) {
        self.count += o.count;
        self.bytes = self.bytes.saturating_add(o.bytes);
    }
}

/// A named group and its tally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub tally: Tally,
}

/// An allocation site: a line, and the method Ruby recorded for allocations there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteRow {
    pub file: String,
    pub line: Option<u32>,
    pub method: Option<String>,
    pub tally: Tally,
}

/// What a dump holds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub total: Tally,
    pub by_type: Vec<Row>,
    pub by_class: Vec<Row>,
    /// Empty when allocation tracing was off.
    pub by_site: Vec<SiteRow>,
    /// `(generation, tally)`, oldest first; objects without one are in `no_generation`.
    pub by_generation: Vec<(u32, Tally)>,
    pub no_generation: Tally,
    /// Root categories and how many references each holds.
    pub roots: Vec<(String, u64)>,
    pub shapes: u64,
    /// `slot_size` values seen (3.2+) and their counts.
    pub slot_sizes: Vec<(u32, u64)>,
    /// The allocation tracer's table: its address and memsize.
    pub tracer: Option<(u64, u64)>,
    pub stats: ScanStats,
}

#[derive(Default)]
struct Worker {
    types: [Tally; ObjType::ALL.len()],
    groups: FxHashMap<GroupKey, Tally>,
    subs: SubNames,
    classes: ClassTable,
    /// By (file hash, line, method hash).
    sites: FxHashMap<(u64, u32, u64), Tally>,
    files: FxHashMap<u64, String>,
    methods: FxHashMap<u64, String>,
    generations: FxHashMap<u32, Tally>,
    no_generation: Tally,
    roots: FxHashMap<String, u64>,
    shapes: u64,
    slot_sizes: FxHashMap<u32, u64>,
    tracer: Option<(u64, u64)>,
}

impl Worker {
    fn add(&mut self, rec: &Record<'_>) {
        match rec.kind {
            RecordKind::Root => {
                let name = rec.root.map(|r| r.to_string_lossy()).unwrap_or_default();
                *self.roots.entry(name).or_default() += rec.references.iter().count() as u64;
                return;
            }
            RecordKind::Shape => {
                self.shapes += 1;
                return;
            }
            RecordKind::Object => {}
        }
        if rec.ty == ObjType::None {
            // A free slot (`full: true`): not an object.
            return;
        }
        let bytes = rec.memsize;
        self.types[rec.ty as usize].add(bytes);
        let key = names::group_key(rec, &mut self.subs);
        if key.is_allocation_tracer() {
            self.tracer = Some((rec.address, bytes));
        }
        self.groups.entry(key).or_default().add(bytes);
        self.classes.note(rec);
        if let Some(file) = rec.file {
            let h = names::hash_bytes(file.raw());
            let m = rec.method.map_or(0, |m| {
                let mh = names::hash_bytes(m.raw());
                self.methods
                    .entry(mh)
                    .or_insert_with(|| m.to_string_lossy());
                mh
            });
            self.sites
                .entry((h, rec.line.unwrap_or(0), m))
                .or_default()
                .add(bytes);
            self.files
                .entry(h)
                .or_insert_with(|| file.to_string_lossy());
        }
        match rec.generation {
            Some(g) => self.generations.entry(g).or_default().add(bytes),
            None => self.no_generation.add(bytes),
        }
        if let Some(s) = rec.slot_size {
            *self.slot_sizes.entry(s).or_default() += 1;
        }
    }

    fn merge(&mut self, o: Worker) {
        for (a, b) in self.types.iter_mut().zip(o.types) {
            a.merge(b);
        }
        for (k, v) in o.groups {
            self.groups.entry(k).or_default().merge(v);
        }
        self.subs.merge(o.subs);
        self.classes.merge(o.classes);
        for (k, v) in o.sites {
            self.sites.entry(k).or_default().merge(v);
        }
        self.files.extend(o.files);
        self.methods.extend(o.methods);
        for (k, v) in o.generations {
            self.generations.entry(k).or_default().merge(v);
        }
        self.no_generation.merge(o.no_generation);
        for (k, v) in o.roots {
            *self.roots.entry(k).or_default() += v;
        }
        self.shapes += o.shapes;
        for (k, v) in o.slot_sizes {
            *self.slot_sizes.entry(k).or_default() += v;
        }
        self.tracer = self.tracer.or(o.tracer);
    }
}

/// Counts everything in `dump`.
pub fn summarize(dump: &Dump, opts: ScanOptions<'_>) -> Result<Summary, HeapError> {
    let (workers, stats) = dump.fold(opts, Worker::default, |w, _, rec| w.add(rec))?;
    let mut all = Worker::default();
    for w in workers {
        all.merge(w);
    }
    let mut s = Summary {
        stats,
        shapes: all.shapes,
        tracer: all.tracer,
        no_generation: all.no_generation,
        ..Summary::default()
    };
    for (t, tally) in ObjType::ALL.iter().zip(all.types) {
        if tally.count > 0 {
            s.total.merge(tally);
            s.by_type.push(Row {
                name: t.name().to_string(),
                tally,
            });
        }
    }
    sort_rows(&mut s.by_type);
    // Several keys can carry the same name (a singleton and its class): add them up.
    let mut by_name: FxHashMap<String, Tally> = FxHashMap::default();
    for (k, v) in &all.groups {
        by_name
            .entry(names::group_name(k, &all.classes, &all.subs))
            .or_default()
            .merge(*v);
    }
    s.by_class = by_name
        .into_iter()
        .map(|(name, tally)| Row { name, tally })
        .collect();
    sort_rows(&mut s.by_class);
    s.by_site = all
        .sites
        .into_iter()
        .map(|((h, line, m), tally)| SiteRow {
            file: all.files.get(&h).cloned().unwrap_or_default(),
            line: (line != 0).then_some(line),
            method: all.methods.get(&m).cloned(),
            tally,
        })
        .collect();
    s.by_site.sort_by(|a, b| {
        b.tally
            .bytes
            .cmp(&a.tally.bytes)
            .then(b.tally.count.cmp(&a.tally.count))
            .then_with(|| (&a.file, a.line, &a.method).cmp(&(&b.file, b.line, &b.method)))
    });
    s.by_generation = all.generations.into_iter().collect();
    s.by_generation.sort_by_key(|(g, _)| *g);
    s.roots = all.roots.into_iter().collect();
    s.roots.sort();
    s.slot_sizes = all.slot_sizes.into_iter().collect();
    s.slot_sizes.sort();
    Ok(s)
}

/// Biggest first; ties by count, then name, so output is stable.
pub fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        b.tally
            .bytes
            .cmp(&a.tally.bytes)
            .then(b.tally.count.cmp(&a.tally.count))
            .then_with(|| a.name.cmp(&b.name))
    });
}
