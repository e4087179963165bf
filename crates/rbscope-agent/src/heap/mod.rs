//! The heap: `rbscope heap dump | count | track` and `Rbscope.heap_dump` / `Rbscope.count_objects`.
//!
//! live_heap.rs answers the requests (on the agent's Ruby thread) and forks the child that
//! writes a dump; heap_walk.rs walks the VM's heap in `ObjectSpace.dump_all`'s format;
//! heap_writer.rs overlaps the child's formatting with its writes.

pub(crate) mod heap_walk;
pub(crate) mod heap_writer;
pub(crate) mod live_heap;
