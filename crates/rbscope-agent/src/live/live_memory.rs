//! `rbscope memory -p PID`: the VM's own memory figures, read on the agent's Ruby thread.
//!
//! `GC.stat` and `ObjectSpace.count_objects` (both read the heap's counters; `count_objects`
//! walks the heap pages, so the VM is held for about a millisecond per hundred thousand
//! objects), the heap page size, and glibc's malloc figures (`mallinfo2`, read from this thread:
//! they are process-wide). The CLI adds what the kernel says about the process.

use crate::ffi::live::VALUE;
use crate::ffi::{self, Gvl};
use rbscope_agent_core::agent::host;
use rbscope_proto::{AgentMessage, MemoryReport};
use std::time::Instant;

/// `recv.name` as [key, value] pairs with integer values (a Hash's `to_a`).
fn pairs(gvl: Gvl, hash: VALUE) -> Vec<(String, i64)> {
    let Ok(list) = ffi::call(gvl, hash, "to_a", &[]) else {
        return Vec::new();
    };
    ffi::array_items(gvl, list)
        .into_iter()
        .filter_map(|pair| {
            let kv = ffi::array_items(gvl, pair);
            let key = ffi::symbol_name(gvl, *kv.first()?)?;
            let value = ffi::fixnum(*kv.get(1)?)?;
            Some((key, value))
        })
        .collect()
}

pub fn read(gvl: Gvl) -> AgentMessage {
    let started = Instant::now();
    let gc = ffi::call_const(gvl, "GC", "stat")
        .map(|h| pairs(gvl, h))
        .unwrap_or_default();
    let objects = ffi::call_const(gvl, "ObjectSpace", "count_objects")
        .map(|h| pairs(gvl, h))
        .unwrap_or_default();
    let constants = ffi::const_at(gvl, "GC::INTERNAL_CONSTANTS")
        .map(|h| pairs(gvl, h))
        .unwrap_or_default();
    let heap_page_bytes = host::heap_page_bytes(&constants);
    let threads = ffi::call_const(gvl, "Thread", "list")
        .map(|l| ffi::array_items(gvl, l).len() as u64)
        .unwrap_or(0);
    if gc.is_empty() {
        return AgentMessage::Error("GC.stat could not be read".into());
    }
    AgentMessage::Memory(MemoryReport {
        gc,
        objects,
        heap_page_bytes,
        malloc: host::malloc_figures(),
        threads,
        held_us: started.elapsed().as_micros() as u64,
    })
}
