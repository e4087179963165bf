//! Details of a few objects, for printing paths and retainers.
//!
//! The graph keeps only what every analysis needs per object (a few numbers), so a string's
//! text or an array's length are not in memory. To show a handful of objects, one more pass
//! over the dump picks their records out by address; that costs a read of the file, not memory
//! per object.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::input::{Dump, HeapError, ScanOptions};
use crate::parse::{parse_address, parse_line, ObjType, Record, RecordKind};

/// What a record says about one object, ready to print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    pub address: u64,
    pub ty: ObjType,
    pub class: u64,
    /// A short description: a string's start, a class's name, an array's length...
    pub info: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub method: Option<String>,
    pub generation: Option<u32>,
    pub memsize: u64,
}

impl Detail {
    /// `file:line` when the allocation site is known.
    pub fn site(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match self.line {
            Some(l) => format!("{file}:{l}"),
            None => file.clone(),
        })
    }
}

/// Longest string start shown.
const PREVIEW: usize = 60;

/// The details of the objects at `addresses`.
pub fn describe(
    dump: &Dump,
    opts: ScanOptions<'_>,
    addresses: &FxHashSet<u64>,
) -> Result<FxHashMap<u64, Detail>, HeapError> {
    let workers = dump.fold_lines(opts, FxHashMap::default, |found, line| {
        // Objects start with their address: look at it before reading the whole line.
        if let Some(rest) = line.strip_prefix(b"{\"address\":\"") {
            let end = memchr::memchr(b'"', rest).unwrap_or(0);
            match parse_address(&rest[..end]) {
                Some(a) if addresses.contains(&a) => {}
                _ => return,
            }
        }
        if let Ok(rec) = parse_line(line) {
            if rec.kind == RecordKind::Object && addresses.contains(&rec.address) {
                found.insert(rec.address, detail_of(&rec));
            }
        }
    })?;
    Ok(workers.into_iter().flatten().collect())
}

/// The details of one record.
pub fn detail_of(rec: &Record<'_>) -> Detail {
    Detail {
        address: rec.address,
        ty: rec.ty,
        class: rec.class,
        info: info(rec),
        file: rec.file.map(|f| f.to_string_lossy()),
        line: rec.line,
        method: rec.method.map(|m| m.to_string_lossy()),
        generation: rec.generation,
        memsize: rec.memsize,
    }
}

/// A string's first characters, quoted like Ruby's `inspect` would, cut with `...`.
pub fn preview(text: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i >= PREVIEW {
            out.push_str("...");
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn info(rec: &Record<'_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    match rec.ty {
        ObjType::String | ObjType::Symbol => {
            if let Some(v) = rec.value {
                parts.push(preview(&v.to_string_lossy()));
            } else if rec.shared {
                parts.push("shared".into());
            }
            if let Some(b) = rec.bytesize {
                parts.push(format!("{b} bytes"));
            }
        }
        ObjType::Float => {
            if let Some(v) = rec.value {
                parts.push(v.to_string_lossy());
            }
        }
        ObjType::Class | ObjType::Module => {
            if let Some(n) = rec.name.or(rec.real_class_name) {
                parts.push(n.to_string_lossy());
            }
            if rec.singleton {
                parts.push("singleton".into());
            }
        }
        ObjType::Array => {
            if let Some(l) = rec.length {
                parts.push(format!("length {l}"));
            }
        }
        ObjType::Hash => {
            if let Some(s) = rec.size {
                parts.push(format!("size {s}"));
            }
        }
        ObjType::Object => {
            if let Some(i) = rec.ivars {
                parts.push(format!("{i} ivars"));
            }
        }
        ObjType::Data => {
            if let Some(s) = rec.struct_name {
                parts.push(s.to_string_lossy());
            }
        }
        _ => {}
    }
    parts.join(", ")
}

/// How an object is shown in one line: `0x7f… Foo (a string's start, ...) at file:line`.
pub fn one_line(d: &Detail, group: &str) -> String {
    let mut s = format!("{:#x} {}", d.address, group);
    if matches!(d.ty, ObjType::Class | ObjType::Module) && !d.info.is_empty() {
        // `Class Shop::Store` reads better than `Class (Shop::Store)`.
        s.push_str(&format!(" {}", d.info));
    } else if !d.info.is_empty() {
        s.push_str(&format!(" ({})", d.info));
    }
    if let Some(site) = d.site() {
        s.push_str(&format!(" allocated at {site}"));
    }
    s
}
