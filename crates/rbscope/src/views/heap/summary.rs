//! `heap summary`: the census of one dump.

use serde_json::{json, Value};

use super::{scan_json, tally_json};

/// `heap summary --json`.
pub fn summary_json(
    dump: &str,
    file_bytes: u64,
    s: &rbscope_heap::summary::Summary,
    limit: usize,
    seconds: f64,
) -> Value {
    let traced: u64 = s.by_site.iter().map(|r| r.tally.count).sum();
    let rows = |rows: &[rbscope_heap::summary::Row]| -> Value {
        rows.iter()
            .take(limit)
            .map(|r| json!({"name": r.name, "count": r.tally.count, "bytes": r.tally.bytes}))
            .collect()
    };
    json!({
        "dump": dump,
        "file_bytes": file_bytes,
        "total": tally_json(s.total),
        "by_type": rows(&s.by_type),
        "by_class": rows(&s.by_class),
        "classes": s.by_class.len(),
        "by_site": s.by_site.iter().take(limit).map(|r| json!({
            "file": r.file, "line": r.line, "method": r.method,
            "count": r.tally.count, "bytes": r.tally.bytes,
        })).collect::<Vec<_>>(),
        "sites": s.by_site.len(),
        "allocation_traced_objects": traced,
        "by_generation": s.by_generation.iter().map(|(g, t)| json!({
            "generation": g, "count": t.count, "bytes": t.bytes,
        })).collect::<Vec<_>>(),
        "no_generation": tally_json(s.no_generation),
        "roots": s.roots.iter().map(|(n, c)| json!({"root": n, "references": c})).collect::<Vec<_>>(),
        "shape_records": s.shapes,
        "slot_sizes": s.slot_sizes.iter().map(|(sz, c)| json!({"slot_size": sz, "count": c})).collect::<Vec<_>>(),
        "allocation_tracer": s.tracer.map(|(a, b)| json!({"address": format!("{a:#x}"), "bytes": b})),
        "scan": scan_json(&s.stats),
        "seconds": seconds,
    })
}
