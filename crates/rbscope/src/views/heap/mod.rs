//! The heap views `rbscope heap ... --json` prints and `rbscope ui` serves: a dump's summary,
//! the dominator tree (`top`), retention paths (`path`) and the diff of 2-3 dumps, and how one
//! object, a tally or a scan is shown in them. The analyses are rbscope-heap's; this chooses
//! what of them to show.

pub mod diff;
pub mod path;
pub mod summary;
pub mod top;

use anyhow::anyhow;
use rbscope_heap::detail::{self, Detail};
use rbscope_heap::graph::{HeapGraph, NodeId};
use rbscope_heap::input::ScanStats;
use rbscope_heap::summary::Tally;
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

/// Gives the details of the objects at some addresses: a pass over the dump (the CLI), or a
/// cache of such passes (`rbscope ui`).
pub type Describe<'a> = dyn FnMut(
        &rustc_hash::FxHashSet<u64>,
    ) -> anyhow::Result<rustc_hash::FxHashMap<u64, rbscope_heap::detail::Detail>>
    + 'a;

/// What reading a dump met: lines, objects, what could not be read, where it was cut off.
pub fn scan_json(stats: &ScanStats) -> Value {
    json!({
        "bytes": stats.bytes,
        "lines": stats.lines,
        "objects": stats.objects,
        "roots": stats.roots,
        "shapes": stats.shapes,
        "invalid_json_lines": stats.invalid_json,
        "unreadable_lines": stats.unreadable,
        "truncated_at": stats.truncated_at,
    })
}

/// A count of objects and their bytes.
pub fn tally_json(t: Tally) -> Value {
    json!({"count": t.count, "bytes": t.bytes})
}

/// An object's address as the user gives it (`0x7f...`, as the dump writes it).
pub fn parse_address(s: &str) -> anyhow::Result<u64> {
    rbscope_heap::parse::parse_address(s.trim().as_bytes()).ok_or_else(|| {
        anyhow!("{s:?} is not an address; give it as the dump writes it, like 0x7f1c2b3d4e50")
    })
}

/// Why an address names nothing: addresses are only valid in the dump they came from.
pub fn no_object(addr: u64, dump: &str) -> String {
    format!(
        "there is no object at {addr:#x} in {dump} (an address is only valid in the dump it came from)"
    )
}

/// One object on one line: its address, class and what the dump says of it.
pub fn node_line(g: &HeapGraph, details: &FxHashMap<u64, Detail>, n: NodeId) -> String {
    let addr = g.address[n as usize];
    match details.get(&addr) {
        Some(d) => detail::one_line(d, g.group_name(n)),
        None => format!("{addr:#x} {}", g.group_name(n)),
    }
}

/// One object as JSON: address, type, class and what the dump says of it.
pub fn node_json(g: &HeapGraph, details: &FxHashMap<u64, Detail>, n: NodeId) -> Value {
    let addr = g.address[n as usize];
    let d = details.get(&addr);
    json!({
        "address": format!("{addr:#x}"),
        "type": g.ty[n as usize].name(),
        "class": g.group_name(n),
        "info": d.map(|d| d.info.clone()),
        "file": d.and_then(|d| d.file.clone()),
        "line": d.and_then(|d| d.line),
        "generation": d.and_then(|d| d.generation),
        "memsize": d.map(|d| d.memsize),
    })
}
