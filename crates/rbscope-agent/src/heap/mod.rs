//! The heap: `rbscope heap dump | count | track` and `Rbscope.heap_dump` / `Rbscope.count_objects`.
//!
//! live_heap.rs answers the requests (on the agent's Ruby thread) and forks the child that
//! writes a dump; heap_walk.rs walks the VM's heap (through `ffi::heap`) and hands each fact
//! to `rbscope_heap::walk`, which formats the dump in `ObjectSpace.dump_all`'s format and
//! counts the census.

pub(crate) mod heap_walk;
pub(crate) mod live_heap;
