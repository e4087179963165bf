//! Duplicated strings: the same text held by many String objects, and the bytes that wastes.
//!
//! Ruby writes a string's `value` only when it is 7-bit ASCII, so only those can be compared;
//! the others are counted apart. Values are grouped by a 128-bit hash of their full bytes
//! (never a prefix), keeping the first few characters to show. "Wasted" is what all copies but
//! one cost: interning them (`-"str"`, frozen string literals) would save it.

use rustc_hash::FxHashMap;

use crate::detail::preview;
use crate::input::{Dump, HeapError, ScanOptions, ScanStats};
use crate::parse::{ObjType, RecordKind};
use crate::summary::Tally;

/// One text and its copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DupString {
    /// The start of the text, quoted.
    pub preview: String,
    pub bytesize: u64,
    /// Copies and the bytes all of them take (`memsize`).
    pub copies: Tally,
    /// Bytes all copies but the biggest-average one take.
    pub wasted: u64,
    /// How many of the copies are interned (fstring).
    pub interned: u64,
    /// A few of their addresses.
    pub samples: Vec<u64>,
}

/// The strings of a dump.
#[derive(Clone, Debug, Default)]
pub struct StringReport {
    /// Texts held more than once, most wasted bytes first.
    pub duplicated: Vec<DupString>,
    /// Every String object.
    pub all: Tally,
    /// Strings whose text the dump does not show (not 7-bit, or sharing another's buffer).
    pub without_value: Tally,
    pub wasted: u64,
    pub stats: ScanStats,
}

struct Entry {
    preview: String,
    bytesize: u64,
    copies: Tally,
    interned: u64,
    samples: Vec<u64>,
}

#[derive(Default)]
struct Worker {
    by_text: FxHashMap<u128, Entry>,
    all: Tally,
    without_value: Tally,
}

const SAMPLES: usize = 3;

/// Finds the duplicated strings of `dump`.
pub fn duplicated_strings(dump: &Dump, opts: ScanOptions<'_>) -> Result<StringReport, HeapError> {
    let (workers, stats) = dump.fold(opts, Worker::default, |w, _, rec| {
        if rec.kind != RecordKind::Object || rec.ty != ObjType::String {
            return;
        }
        w.all.count += 1;
        w.all.bytes = w.all.bytes.saturating_add(rec.memsize);
        let Some(value) = rec.value else {
            w.without_value.count += 1;
            w.without_value.bytes = w.without_value.bytes.saturating_add(rec.memsize);
            return;
        };
        let bytes = value.bytes();
        let key = xxhash_rust::xxh3::xxh3_128(&bytes);
        let e = w.by_text.entry(key).or_insert_with(|| Entry {
            preview: preview(&String::from_utf8_lossy(&bytes[..bytes.len().min(256)])),
            bytesize: bytes.len() as u64,
            copies: Tally::default(),
            interned: 0,
            samples: Vec::new(),
        });
        e.copies.count += 1;
        e.copies.bytes = e.copies.bytes.saturating_add(rec.memsize);
        e.interned += rec.fstring as u64;
        if e.samples.len() < SAMPLES {
            e.samples.push(rec.address);
        }
    })?;
    let mut merged: FxHashMap<u128, Entry> = FxHashMap::default();
    let mut report = StringReport {
        stats,
        ..StringReport::default()
    };
    for w in workers {
        report.all.count += w.all.count;
        report.all.bytes = report.all.bytes.saturating_add(w.all.bytes);
        report.without_value.count += w.without_value.count;
        report.without_value.bytes = report
            .without_value
            .bytes
            .saturating_add(w.without_value.bytes);
        for (k, e) in w.by_text {
            match merged.get_mut(&k) {
                Some(m) => {
                    m.copies.count += e.copies.count;
                    m.copies.bytes = m.copies.bytes.saturating_add(e.copies.bytes);
                    m.interned += e.interned;
                    for s in e.samples {
                        if m.samples.len() < SAMPLES {
                            m.samples.push(s);
                        }
                    }
                }
                None => {
                    merged.insert(k, e);
                }
            }
        }
    }
    for e in merged.into_values() {
        if e.copies.count < 2 {
            continue;
        }
        let wasted = e.copies.bytes - e.copies.bytes / e.copies.count;
        report.wasted += wasted;
        let mut samples = e.samples;
        samples.sort_unstable();
        report.duplicated.push(DupString {
            preview: e.preview,
            bytesize: e.bytesize,
            copies: e.copies,
            wasted,
            interned: e.interned,
            samples,
        });
    }
    report.duplicated.sort_by(|a, b| {
        b.wasted
            .cmp(&a.wasted)
            .then(b.copies.count.cmp(&a.copies.count))
            .then_with(|| a.preview.cmp(&b.preview))
    });
    Ok(report)
}
