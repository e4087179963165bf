//! Where VM memory is read from.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("address {0:#x} is not readable")]
    Unreadable(usize),
}

/// A source of VM memory. Reads are word-sized; a null or misaligned address is an error
/// rather than undefined behaviour.
pub trait Memory {
    fn read_word(&self, addr: usize) -> Result<usize, ReadError>;

    fn read_u32(&self, addr: usize) -> Result<u32, ReadError> {
        let aligned = addr & !7;
        let word = self.read_word(aligned)?;
        Ok((word >> ((addr - aligned) * 8)) as u32)
    }
}

/// This process's own memory, for the agent. Only addresses that the VM itself handed out
/// (execution context, frames, iseqs, environments) are read, while the VM is stopped in a
/// hook on the same thread, so they are valid.
pub struct LocalMemory;

impl Memory for LocalMemory {
    #[inline]
    fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
        if addr == 0 || !addr.is_multiple_of(std::mem::align_of::<usize>()) {
            return Err(ReadError::Unreadable(addr));
        }
        // SAFETY: see the type's docs: the caller walks live VM structures of the current
        // thread while holding the GVL inside a hook, so every address reached is mapped and
        // not being written concurrently. Null and misaligned addresses were rejected above.
        Ok(unsafe { std::ptr::read(addr as *const usize) })
    }
}
