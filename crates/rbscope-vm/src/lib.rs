//! Reading the Ruby VM's own structures from memory.
//!
//! Ruby exposes no API to read another frame's locals without making a `Binding` (which moves
//! the frame's environment to the heap: the cost that makes "capture every frame at raise"
//! expensive), nor to read other threads' stacks on 3.1, nor anything at all from outside the
//! process. This crate reads the structures directly:
//!
//! * [`layout`]: byte offsets of the fields we read, per Ruby release, taken at compile time
//!   from the bindgen layouts of the `rbspy-ruby-structs` crate (one table, no per-version code);
//! * [`memory`]: where bytes come from, behind one trait with three sources: this process
//!   ([`LocalMemory`]), another process ([`remote::ProcessMemory`], `process_vm_readv`) and a
//!   core file ([`core_file::CoreMemory`]);
//! * [`frames`]: walking an execution context's control frames into raw frames with their
//!   iseq, pc, self, method entry and local values;
//! * [`raise_record`]: the one format both of the agent's capture paths keep a raising
//!   thread's frames in, its encoder, decoder and bounds;
//! * [`captured`]: what the agent reads around a stack it walked or copied (method entries,
//!   frames still running, locals);
//! * [`objects`], [`iseq`], [`threads`], [`stacks`]: reading strings, IDs, class paths, lines
//!   and parameters, every thread of a VM, and labelled stacks, for readers outside the process;
//! * [`target`], [`elf`], [`pause`]: finding the VM in a process or core file, and pausing a
//!   process while it is read.
//!
//! The in-process parts ([`frames`], [`LocalMemory`]) are plain reads of plain memory: no Ruby
//! calls, no allocation of Ruby objects, so they can run inside a VM event hook.

pub mod captured;
pub mod core_file;
pub mod elf;
pub mod frames;
pub mod inject;
pub mod iseq;
pub mod layout;
pub mod memory;
pub mod objects;
pub mod pause;
pub mod raise_record;
pub mod remote;
pub mod stack_copy;
pub mod stacks;
pub mod target;
pub mod threads;

pub use frames::{walk, FrameVisitor, RawFrame};
pub use layout::Layout;
pub use memory::{LocalMemory, Memory, ReadError};
