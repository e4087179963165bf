//! Leak hunting across two or three dumps of the same process.
//!
//! The classic method: dump, let the app run, dump again, run more, dump a third time. Objects
//! that are in the second dump but not in the first, and are still there in the third, are what
//! the app keeps accumulating. Per group (class + allocation site) this gives counts and bytes
//! in each dump and the objects that are new and stayed, with sample addresses to pass to
//! `rbscope heap path`.
//!
//! "The same object" is decided carefully, because an address is not an identity: a freed slot
//! is reused by a new object, and `GC.compact` moves objects. An object of the newer dump is
//! the same as one of the older dump when the address matches *and* so do its type, class name,
//! allocation site and generation (a reused slot differs in at least one of those when
//! allocation tracing is on). Objects left unmatched that carry allocation info are then
//! paired by (type, class, site, generation) regardless of address: that is a moved object.
//! Without allocation tracing only the first rule applies, so after a compaction moved
//! objects look new; the output says when tracing was off.

use rustc_hash::FxHashMap;

use crate::input::{Dump, HeapError, ScanOptions, ScanStats};
use crate::names::{self, ClassTable, GroupKey, Interner, SubNames};
use crate::parse::{ObjType, Record, RecordKind};
use crate::summary::Tally;

const NO_GENERATION: u32 = u32::MAX;
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    address: u64,
    memsize: u64,
    generation: u32,
    group: u32,
    /// Index into the site interner; 0 = unknown.
    site: u32,
    ty: ObjType,
}

impl Entry {
    fn signature(&self) -> (ObjType, u32, u32, u32) {
        (self.ty, self.group, self.site, self.generation)
    }
}

struct Loaded {
    entries: Vec<Entry>,
    stats: ScanStats,
    traced: u64,
}

#[derive(Default)]
struct Worker {
    raw: Vec<(Entry, GroupKey, u64)>,
    classes: ClassTable,
    subs: SubNames,
    files: FxHashMap<u64, String>,
}

impl Worker {
    fn add(&mut self, rec: &Record<'_>) {
        if rec.kind != RecordKind::Object || rec.ty == ObjType::None {
            return;
        }
        self.classes.note(rec);
        let key = names::group_key(rec, &mut self.subs);
        let file_hash = match rec.file {
            Some(f) => {
                let h = names::hash_bytes(f.raw());
                self.files.entry(h).or_insert_with(|| f.to_string_lossy());
                h
            }
            None => 0,
        };
        self.raw.push((
            Entry {
                address: rec.address,
                memsize: rec.memsize,
                generation: rec.generation.unwrap_or(NO_GENERATION),
                group: 0,
                site: rec.line.unwrap_or(0),
                ty: rec.ty,
            },
            key,
            file_hash,
        ));
    }
}

fn load(
    dump: &Dump,
    opts: ScanOptions<'_>,
    groups: &mut Interner,
    sites: &mut Interner,
) -> Result<Loaded, HeapError> {
    let (workers, stats) = dump.fold(opts, Worker::default, |w, _, rec| w.add(rec))?;
    let mut classes = ClassTable::default();
    let mut subs = SubNames::default();
    let mut files: FxHashMap<u64, String> = FxHashMap::default();
    let mut raws = Vec::new();
    for w in workers {
        classes.merge(w.classes);
        subs.merge(w.subs);
        files.extend(w.files);
        raws.push(w.raw);
    }
    let mut group_ids: FxHashMap<GroupKey, u32> = FxHashMap::default();
    let mut site_ids: FxHashMap<(u64, u32), u32> = FxHashMap::default();
    let mut entries = Vec::with_capacity(raws.iter().map(|r| r.len()).sum());
    let mut traced = 0;
    for raw in raws {
        for (mut e, key, file_hash) in raw {
            e.group = *group_ids
                .entry(key)
                .or_insert_with(|| groups.id(names::group_name(&key, &classes, &subs)));
            let line = e.site;
            e.site = if file_hash == 0 {
                0
            } else {
                traced += 1;
                *site_ids.entry((file_hash, line)).or_insert_with(|| {
                    let file = files.get(&file_hash).cloned().unwrap_or_default();
                    sites.id(if line == 0 {
                        file
                    } else {
                        format!("{file}:{line}")
                    })
                })
            };
            entries.push(e);
        }
    }
    Ok(Loaded {
        entries,
        stats,
        traced,
    })
}

/// For each object of `newer`, the index of the same object in `older`, or `NONE`.
fn match_objects(older: &[Entry], newer: &[Entry]) -> Vec<u32> {
    let mut by_address: FxHashMap<u64, u32> = FxHashMap::default();
    by_address.reserve(older.len());
    for (i, e) in older.iter().enumerate() {
        by_address.insert(e.address, i as u32);
    }
    let mut used = vec![false; older.len()];
    let mut matched = vec![NONE; newer.len()];
    for (j, e) in newer.iter().enumerate() {
        if let Some(&i) = by_address.get(&e.address) {
            if older[i as usize].signature() == e.signature() {
                matched[j] = i;
                used[i as usize] = true;
            }
        }
    }
    drop(by_address);
    // Moved objects: same type, class, site and generation, another address.
    let mut pool: FxHashMap<(ObjType, u32, u32, u32), Vec<u32>> = FxHashMap::default();
    for (i, e) in older.iter().enumerate() {
        if !used[i] && e.generation != NO_GENERATION && e.site != 0 {
            pool.entry(e.signature()).or_default().push(i as u32);
        }
    }
    if !pool.is_empty() {
        for (j, e) in newer.iter().enumerate() {
            if matched[j] == NONE && e.generation != NO_GENERATION && e.site != 0 {
                if let Some(v) = pool.get_mut(&e.signature()) {
                    if let Some(i) = v.pop() {
                        matched[j] = i;
                    }
                }
            }
        }
    }
    matched
}

/// One dump's place in a diff.
#[derive(Clone, Debug)]
pub struct DumpInfo {
    pub path: String,
    pub total: Tally,
    /// Objects with allocation info (file) — 0 means tracing was off.
    pub traced: u64,
    pub stats: ScanStats,
}

/// A class + allocation site across the dumps.
#[derive(Clone, Debug)]
pub struct DiffGroup {
    pub name: String,
    pub site: Option<String>,
    /// Count and bytes in each dump, in the order given.
    pub counts: Vec<Tally>,
    /// In the second dump and not in the first.
    pub new: Tally,
    /// With three dumps: new in the second and still in the third (the leak candidates).
    pub retained: Option<Tally>,
    /// Addresses in the last dump of objects that are new (two dumps) or retained (three).
    pub samples: Vec<u64>,
}

impl DiffGroup {
    /// What ranks the group: retained bytes with three dumps, new bytes with two.
    pub fn leaked(&self) -> Tally {
        self.retained.unwrap_or(self.new)
    }
}

/// The result of comparing dumps.
#[derive(Clone, Debug)]
pub struct Diff {
    pub dumps: Vec<DumpInfo>,
    /// Groups with new objects, biggest leak first; then the rest if asked for.
    pub groups: Vec<DiffGroup>,
    pub new_total: Tally,
    pub retained_total: Option<Tally>,
}

/// How many sample addresses a group keeps.
pub const SAMPLES: usize = 5;

/// Compares two or three dumps of one process, oldest first.
pub fn diff(dumps: &[&Dump], opts: ScanOptions<'_>) -> Result<Diff, HeapError> {
    assert!(
        (2..=3).contains(&dumps.len()),
        "diff takes two or three dumps"
    );
    let mut groups = Interner::default();
    let mut sites = Interner::default();
    sites.id(String::new()); // id 0 = unknown site
    let mut loaded = Vec::with_capacity(dumps.len());
    for d in dumps {
        loaded.push(load(d, opts, &mut groups, &mut sites)?);
    }
    let b_in_a = match_objects(&loaded[0].entries, &loaded[1].entries);
    let is_new_in_b: Vec<bool> = b_in_a.iter().map(|m| *m == NONE).collect();
    drop(b_in_a);
    let c_in_b = (loaded.len() == 3).then(|| match_objects(&loaded[1].entries, &loaded[2].entries));

    let ndumps = loaded.len();
    let mut rows: FxHashMap<(u32, u32), DiffGroup> = FxHashMap::default();
    let mut new_total = Tally::default();
    let mut retained_total = (ndumps == 3).then(Tally::default);
    for (k, l) in loaded.iter().enumerate() {
        for (j, e) in l.entries.iter().enumerate() {
            let r = rows.entry((e.group, e.site)).or_insert_with(|| DiffGroup {
                name: groups.names[e.group as usize].clone(),
                site: (e.site != 0).then(|| sites.names[e.site as usize].clone()),
                counts: vec![Tally::default(); ndumps],
                new: Tally::default(),
                retained: (ndumps == 3).then(Tally::default),
                samples: Vec::new(),
            });
            add(&mut r.counts[k], e.memsize);
            if k == 1 && is_new_in_b[j] {
                add(&mut r.new, e.memsize);
                add(&mut new_total, e.memsize);
                if ndumps == 2 {
                    keep_lowest(&mut r.samples, e.address);
                }
            }
            if k == 2 {
                if let Some(c_in_b) = &c_in_b {
                    let b = c_in_b[j];
                    if b != NONE && is_new_in_b[b as usize] {
                        if let (Some(t), Some(total)) = (&mut r.retained, &mut retained_total) {
                            add(t, e.memsize);
                            add(total, e.memsize);
                        }
                        keep_lowest(&mut r.samples, e.address);
                    }
                }
            }
        }
    }
    let mut groups_out: Vec<DiffGroup> = rows.into_values().collect();
    for g in &mut groups_out {
        g.samples.sort_unstable();
    }
    groups_out.sort_by(|a, b| {
        let (la, lb) = (a.leaked(), b.leaked());
        lb.bytes
            .cmp(&la.bytes)
            .then(lb.count.cmp(&la.count))
            .then_with(|| {
                let grow = |g: &DiffGroup| {
                    g.counts.last().map_or(0, |t| t.bytes) as i128
                        - g.counts.first().map_or(0, |t| t.bytes) as i128
                };
                grow(b).cmp(&grow(a))
            })
            .then_with(|| (&a.name, &a.site).cmp(&(&b.name, &b.site)))
    });
    let infos = dumps
        .iter()
        .zip(&loaded)
        .map(|(d, l)| DumpInfo {
            path: d.path().display().to_string(),
            total: l.entries.iter().fold(Tally::default(), |mut t, e| {
                add(&mut t, e.memsize);
                t
            }),
            traced: l.traced,
            stats: l.stats.clone(),
        })
        .collect();
    Ok(Diff {
        dumps: infos,
        groups: groups_out,
        new_total,
        retained_total,
    })
}

fn add(t: &mut Tally, bytes: u64) {
    t.count += 1;
    // Sizes come from the dump: a hostile one may claim anything.
    t.bytes = t.bytes.saturating_add(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(address: u64, generation: u32, site: u32) -> Entry {
        Entry {
            address,
            memsize: 40,
            generation,
            group: 1,
            site,
            ty: ObjType::String,
        }
    }

    #[test]
    fn a_reused_slot_is_a_new_object_and_a_moved_one_is_not() {
        let older = vec![e(0x10, 3, 1), e(0x20, 3, 1), e(0x30, NO_GENERATION, 0)];
        let newer = vec![
            e(0x10, 3, 1),             // same object
            e(0x20, 7, 1),             // slot reused by an object born later
            e(0x40, 3, 1),             // 0x20's old object, moved by compaction
            e(0x30, NO_GENERATION, 0), // untraced, same address: same
            e(0x50, NO_GENERATION, 0), // untraced elsewhere: new
        ];
        let m = match_objects(&older, &newer);
        assert_eq!(m, vec![0, NONE, 1, 2, NONE]);
    }
}

/// Keeps the `SAMPLES` lowest addresses seen: the same samples whatever order the dump's
/// chunks were read in (they are read in parallel).
fn keep_lowest(samples: &mut Vec<u64>, address: u64) {
    if samples.len() < SAMPLES {
        samples.push(address);
    } else if let Some(max) = samples.iter_mut().max() {
        if address < *max {
            *max = address;
        }
    }
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    #[test]
    fn samples_are_the_lowest_addresses_in_any_order() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let addrs: Vec<u64> = (0..40).map(|i| (i * 7919) % 101).collect();
        for x in &addrs {
            keep_lowest(&mut a, *x);
        }
        for x in addrs.iter().rev() {
            keep_lowest(&mut b, *x);
        }
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        let mut lowest = addrs.clone();
        lowest.sort_unstable();
        lowest.dedup();
        assert_eq!(a, lowest[..SAMPLES].to_vec());
    }
}
