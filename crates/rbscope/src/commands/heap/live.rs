//! What `rbscope heap dump | count | track | watch -p PID` share: the heap of a running
//! process, through its agent. The agent does the work inside the process (a forked child
//! writes dumps); these commands ask, wait and print, and `watch --diff` analyses the dumps
//! with rbscope-heap.

use rbscope_proto::{HeapDumpRequest, HeapDumpResult};
use serde_json::json;

use super::bytes;
use crate::agent_client;

pub(super) fn connect(pid: u32) -> anyhow::Result<agent_client::Client> {
    let target = agent_client::locate(pid)?;
    agent_client::connect(&target)
}

pub(super) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub(super) fn result_json(r: &HeapDumpResult) -> serde_json::Value {
    json!({
        "path": r.path,
        "objects": r.objects,
        "roots": r.roots,
        "bytes": r.bytes,
        "pause_ms": ms(r.pause_us),
        "gc_ms": ms(r.gc_us),
        "total_ms": ms(r.total_us),
        "forked": r.forked,
        "allocation_info": r.allocation_info,
    })
}

pub(super) fn result_line(pid: u32, r: &HeapDumpResult) -> String {
    let how = if r.forked {
        "the fork"
    } else {
        "the whole dump (in process)"
    };
    let gc = if r.gc_us > 0 {
        format!(", GC {:.1} ms included", ms(r.gc_us))
    } else {
        String::new()
    };
    let tracing = if r.allocation_info {
        "with allocation sites"
    } else {
        "no allocation sites (rbscope heap track -p PID start)"
    };
    format!(
        "process {pid}: {} objects, {} written to {} in {:.2} s; the app paused {:.1} ms for {how}{gc}; {tracing}",
        r.objects,
        bytes(r.bytes),
        r.path,
        r.total_us as f64 / 1e6,
        ms(r.pause_us),
    )
}

pub(super) struct DumpOptions {
    pub output: Option<String>,
    pub gzip: bool,
    pub gc: bool,
    pub in_process: bool,
}

pub(super) fn request(o: &DumpOptions) -> HeapDumpRequest {
    HeapDumpRequest {
        path: o.output.clone(),
        gzip: o.gzip,
        gc: o.gc,
        in_process: o.in_process,
        wait_ms: if o.in_process { 60_000 } else { 5_000 },
    }
}
