//! Reading the Ruby VM's own structures from memory.
//!
//! Ruby exposes no API to read another frame's locals without making a `Binding` (which moves
//! the frame's environment to the heap: the cost that makes "capture every frame at raise"
//! expensive), nor to read other threads' stacks on 3.1, nor anything at all from outside the
//! process. This crate reads the structures directly:
//!
//! * [`layout`]: byte offsets of the fields we read, per Ruby release, taken at compile time
//!   from the bindgen layouts of the `rbspy-ruby-structs` crate (one table, no per-version code);
//! * [`memory`]: where bytes come from, behind one trait (this process today; another process
//!   or a core file plug in the same way);
//! * [`frames`]: walking an execution context's control frames into raw frames with their
//!   iseq, pc, self, method entry and local values.
//!
//! Everything here is plain reads of plain memory: no Ruby calls, no allocation of Ruby
//! objects, so it can run inside a VM event hook.

pub mod frames;
pub mod layout;
pub mod memory;

pub use frames::{walk, FrameVisitor, RawFrame};
pub use layout::Layout;
pub use memory::{LocalMemory, Memory, ReadError};
