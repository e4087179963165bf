//! `heap diff`: the leak hunt across two or three dumps.

use serde_json::{json, Value};

use super::{scan_json, tally_json};

/// `heap diff --json`.
pub fn diff_json(d: &rbscope_heap::diff::Diff, limit: usize, seconds: f64) -> Value {
    let leaking: Vec<_> = d.groups.iter().filter(|g| g.leaked().count > 0).collect();
    json!({
        "dumps": d.dumps.iter().map(|i| json!({
            "path": i.path, "total": tally_json(i.total), "allocation_traced_objects": i.traced,
            "scan": scan_json(&i.stats),
        })).collect::<Vec<_>>(),
        "new_in_second": tally_json(d.new_total),
        "retained_in_third": d.retained_total.map(tally_json),
        "groups": leaking.iter().take(limit).map(|g| json!({
            "class": g.name,
            "site": g.site,
            "counts": g.counts.iter().map(|t| tally_json(*t)).collect::<Vec<_>>(),
            "new": tally_json(g.new),
            "retained": g.retained.map(tally_json),
            "samples": g.samples.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "groups_with_new_objects": leaking.len(),
        "seconds": seconds,
    })
}
