//! What rbscope needs from `ruby` and `libruby` ELF files: a few symbols, where the writable
//! data lives, and how file addresses map to the process's addresses.

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use std::collections::HashMap;
use std::path::Path;

/// The symbols looked up, when present.
pub const WANTED: &[&str] = &[
    "ruby_version",
    "ruby_current_vm_ptr",
    "ruby_global_symbols",
    "ruby_api_version",
    // For `inject`: what the stopped thread is made to call.
    "syscall",
    "rb_postponed_job_register_one",
    "rb_eval_string",
    // ... and, on 3.3+, what another thread is made to call to wake it.
    "rb_native_mutex_lock",
    "rb_native_mutex_unlock",
];

#[derive(Debug, Clone, Default)]
pub struct ElfImage {
    pub symbols: HashMap<String, u64>,
    /// `.data` and `.bss` as (file address, size).
    pub data_sections: Vec<(u64, u64)>,
    /// Loadable segments as (file offset, file address).
    pub load_segments: Vec<(u64, u64)>,
}

impl ElfImage {
    /// Maps the file rather than reading it: libruby is a few megabytes, of which the few
    /// pages of headers and symbol tables matter here.
    pub fn read(path: &Path) -> Result<ElfImage, String> {
        let map = Mapped::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ElfImage::parse(map.bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse<'data, R: object::ReadRef<'data>>(bytes: R) -> Result<ElfImage, String> {
        let file = object::File::parse(bytes).map_err(|e| format!("not an ELF file ({e})"))?;
        let mut image = ElfImage::default();
        for sym in file.dynamic_symbols().chain(file.symbols()) {
            if let Ok(name) = sym.name() {
                if WANTED.contains(&name) && sym.address() != 0 {
                    image.symbols.insert(name.to_string(), sym.address());
                }
            }
        }
        for s in file.sections() {
            if matches!(s.name(), Ok(".data") | Ok(".bss")) {
                image.data_sections.push((s.address(), s.size()));
            }
        }
        for seg in file.segments() {
            image
                .load_segments
                .push((seg.file_range().0, seg.address()));
        }
        Ok(image)
    }

    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// The load bias of this file given one of its mappings: (start address, file offset).
    pub fn bias(&self, start: usize, file_offset: usize) -> Option<usize> {
        const PAGE: u64 = 4096;
        let off = file_offset as u64;
        let (seg_off, seg_addr) = self
            .load_segments
            .iter()
            .find(|(o, _)| o & !(PAGE - 1) == off)?;
        let page_addr = seg_addr - (seg_off - (seg_off & !(PAGE - 1)));
        (start as u64).checked_sub(page_addr).map(|b| b as usize)
    }
}

/// A read-only private mapping of a whole file.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &Path) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "empty file",
            ));
        }
        // SAFETY: a fresh read-only, private mapping of an open file; the kernel picks the
        // address. The descriptor may be closed afterwards: the mapping keeps the file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives. Library files
        // are replaced (renamed over), not truncated in place, by package managers; a file
        // truncated while mapped would fault on access, a risk we accept for a CLI.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `open`, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_an_elf_file() {
        assert!(ElfImage::parse(&b"not elf at all"[..]).is_err());
    }

    #[test]
    fn finds_symbols_in_a_real_binary() {
        // Our own test binary is an ELF file with dynamic symbols from libc.
        let me = std::env::current_exe().unwrap();
        let image = ElfImage::read(&me).unwrap();
        assert!(!image.load_segments.is_empty());
        assert!(!image.data_sections.is_empty());
    }
}
