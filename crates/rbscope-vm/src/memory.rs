//! Where VM memory is read from.
//!
//! One trait, three sources: this process ([`LocalMemory`], for the agent), another process
//! ([`crate::remote::ProcessMemory`]) and a core file ([`crate::core_file::CoreMemory`]).
//! Everything above this module reads through the trait and never knows which one it has.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    #[error("address {0:#x} is not readable")]
    Unreadable(usize),
    #[error("the process exited while it was being read")]
    ProcessGone,
    #[error("permission denied reading the process's memory")]
    PermissionDenied,
}

pub const WORD: usize = std::mem::size_of::<usize>();

/// A source of VM memory. A null address, or one that is not mapped, is an error rather than
/// undefined behaviour.
pub trait Memory {
    fn read_word(&self, addr: usize) -> Result<usize, ReadError>;

    /// Fills `buf` from `addr`. Sources that can copy ranges override this; the default reads
    /// word by word.
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result<(), ReadError> {
        let start = addr & !(WORD - 1);
        let mut at = start;
        let mut filled = 0usize;
        while filled < buf.len() {
            let word = self.read_word(at)?.to_ne_bytes();
            let skip = if at == start { addr - start } else { 0 };
            let take = (WORD - skip).min(buf.len() - filled);
            buf[filled..filled + take].copy_from_slice(&word[skip..skip + take]);
            filled += take;
            at += WORD;
        }
        Ok(())
    }

    /// Hints that the byte ranges `(start, end)` will be read soon, so a source that pays per
    /// read (a syscall) can fetch them all at once. Reads report errors as usual.
    fn prefetch(&self, _ranges: &[(usize, usize)]) {}

    fn read_u32(&self, addr: usize) -> Result<u32, ReadError> {
        let aligned = addr & !7;
        let word = self.read_word(aligned)?;
        Ok((word >> ((addr - aligned) * 8)) as u32)
    }

    fn read_u8(&self, addr: usize) -> Result<u8, ReadError> {
        let aligned = addr & !7;
        let word = self.read_word(aligned)?;
        Ok((word >> ((addr - aligned) * 8)) as u8)
    }
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
        (**self).read_word(addr)
    }
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read_bytes(addr, buf)
    }
    fn prefetch(&self, ranges: &[(usize, usize)]) {
        (**self).prefetch(ranges)
    }
}

/// Reads a word out of a byte slice at `at` (native endianness), for sources that hold bytes.
pub(crate) fn word_at(bytes: &[u8], at: usize) -> Option<usize> {
    let chunk = bytes.get(at..at.checked_add(WORD)?)?;
    let mut w = [0u8; WORD];
    w.copy_from_slice(chunk);
    Some(usize::from_ne_bytes(w))
}

/// This process's own memory, for the agent. Reading it dereferences raw addresses, so making
/// one is `unsafe`: see [`LocalMemory::new`].
pub struct LocalMemory {
    _only_through_new: (),
}

impl LocalMemory {
    /// A reader of this process's memory.
    ///
    /// # Safety
    /// Every address read through it (by the caller, or by this crate's walks given it) must
    /// be mapped, and not written by another thread while it is read: in the agent, addresses
    /// of live VM structures (execution context, control frames, iseqs, environments, method
    /// entries, objects) reached from the running thread while it holds the GVL, or from a
    /// thread the GVL holder keeps stopped. Null and misaligned addresses are refused (an
    /// error), not read.
    pub unsafe fn new() -> LocalMemory {
        LocalMemory {
            _only_through_new: (),
        }
    }
}

impl Memory for LocalMemory {
    #[inline]
    fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
        if addr == 0 || !addr.is_multiple_of(std::mem::align_of::<usize>()) {
            return Err(ReadError::Unreadable(addr));
        }
        // SAFETY: whoever made this LocalMemory promised (`new`'s contract) that the addresses
        // read through it are mapped and not written concurrently; null and misaligned ones
        // were rejected above.
        Ok(unsafe { std::ptr::read(addr as *const usize) })
    }
}

/// Memory made of explicitly written words, for the crate's unit tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct FakeMemory(pub std::collections::HashMap<usize, usize>);

#[cfg(test)]
impl Memory for FakeMemory {
    fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
        self.0
            .get(&addr)
            .copied()
            .ok_or(ReadError::Unreadable(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use super::FakeMemory as Words;

    #[test]
    fn byte_reads_cross_word_boundaries() {
        let m = Words(HashMap::from([
            (0x100, usize::from_ne_bytes(*b"abcdefgh")),
            (0x108, usize::from_ne_bytes(*b"ijklmnop")),
        ]));
        let mut buf = [0u8; 6];
        m.read_bytes(0x105, &mut buf).unwrap();
        assert_eq!(&buf, b"fghijk");
        assert_eq!(m.read_u8(0x109).unwrap(), b'j');
        assert!(m.read_bytes(0x10c, &mut [0u8; 8]).is_err());
    }
}
