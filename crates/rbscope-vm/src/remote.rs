//! Another process's memory, read with `process_vm_readv`.
//!
//! The VM's structures are small and scattered, and one stack walk touches a few hundred of
//! them; a syscall per read made rbspy's samples cost ~230 syscalls each. Reads here go through
//! a page cache instead: each 4 KiB page is copied once and served from the copy after. The
//! cache is only right while the target does not change, that is while it is paused (see
//! [`crate::pause`]); a non-pausing reader calls [`ProcessMemory::forget`] before each attempt
//! and checks what it read (see [`crate::stacks`]).

use crate::memory::{word_at, Memory, ReadError};
use std::cell::RefCell;
use std::collections::HashMap;

const PAGE: usize = 4096;

pub struct ProcessMemory {
    pid: i32,
    pages: RefCell<HashMap<usize, Box<[u8]>>>,
    syscalls: std::cell::Cell<u64>,
}

impl ProcessMemory {
    pub fn new(pid: i32) -> ProcessMemory {
        ProcessMemory {
            pid,
            pages: RefCell::new(HashMap::new()),
            syscalls: std::cell::Cell::new(0),
        }
    }

    /// Drops every cached page: the next reads see the process as it is now.
    pub fn forget(&self) {
        self.pages.borrow_mut().clear();
    }

    /// The pages copied so far: after a first read of a running process, the set of pages the
    /// same read will need again (see `refetch`).
    pub fn cached_pages(&self) -> Vec<usize> {
        self.pages.borrow().keys().copied().collect()
    }

    /// Drops the cache and copies `pages` afresh, in as few syscalls as possible.
    pub fn refetch(&self, pages: &[usize]) {
        self.forget();
        self.fetch_pages(pages);
    }

    /// How many `process_vm_readv` calls were made (for benchmarks and tests).
    pub fn syscalls(&self) -> u64 {
        self.syscalls.get()
    }

    /// Copies `buf.len()` bytes at `addr` straight from the process.
    fn copy(&self, addr: usize, buf: &mut [u8]) -> Result<(), ReadError> {
        if addr == 0 {
            return Err(ReadError::Unreadable(addr));
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        self.syscalls.set(self.syscalls.get() + 1);
        // SAFETY: `local` describes `buf`, which we own mutably for the call; the kernel
        // checks the remote range against the target's mappings and never writes outside
        // `buf`. `remote` is only read, in the other process.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n == buf.len() as isize {
            return Ok(());
        }
        if n >= 0 {
            return Err(ReadError::Unreadable(addr + n as usize));
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Err(ReadError::ProcessGone),
            Some(libc::EPERM) | Some(libc::EACCES) => Err(ReadError::PermissionDenied),
            _ => Err(ReadError::Unreadable(addr)),
        }
    }

    fn with_page<T>(&self, page: usize, f: impl FnOnce(&[u8]) -> T) -> Result<T, ReadError> {
        if let Some(bytes) = self.pages.borrow().get(&page) {
            return Ok(f(bytes));
        }
        let mut bytes = vec![0u8; PAGE].into_boxed_slice();
        self.copy(page, &mut bytes)?;
        let out = f(&bytes);
        self.pages.borrow_mut().insert(page, bytes);
        Ok(out)
    }
}

/// At most this many pages per `process_vm_readv` (the kernel's IOV_MAX is 1024).
const PAGES_PER_CALL: usize = 512;

impl ProcessMemory {
    /// Copies every page of `pages` not cached yet, many per syscall. A page that cannot be
    /// read ends a batch early; the pages after it are left for the ordinary reads, which then
    /// report the error.
    fn fetch_pages(&self, pages: &[usize]) {
        let wanted: Vec<usize> = {
            let cache = self.pages.borrow();
            let mut w: Vec<usize> = pages
                .iter()
                .copied()
                .filter(|p| *p != 0 && !cache.contains_key(p))
                .collect();
            w.sort_unstable();
            w.dedup();
            w
        };
        for batch in wanted.chunks(PAGES_PER_CALL) {
            let mut bufs: Vec<Box<[u8]>> = batch
                .iter()
                .map(|_| vec![0u8; PAGE].into_boxed_slice())
                .collect();
            let local: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: PAGE,
                })
                .collect();
            let remote: Vec<libc::iovec> = batch
                .iter()
                .map(|&p| libc::iovec {
                    iov_base: p as *mut libc::c_void,
                    iov_len: PAGE,
                })
                .collect();
            self.syscalls.set(self.syscalls.get() + 1);
            // SAFETY: each local iovec describes one owned, writable PAGE-sized buffer in
            // `bufs`, alive for the call; the kernel writes only within them. The remote
            // iovecs are only read, in the other process.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            if n <= 0 {
                continue;
            }
            let full = n as usize / PAGE;
            let mut cache = self.pages.borrow_mut();
            for (page, buf) in batch.iter().zip(bufs).take(full) {
                cache.insert(*page, buf);
            }
        }
    }
}

impl Memory for ProcessMemory {
    fn prefetch(&self, ranges: &[(usize, usize)]) {
        let mut pages = Vec::new();
        for &(start, end) in ranges {
            if start == 0 || end < start || end - start > 64 * PAGE {
                continue;
            }
            let mut p = start & !(PAGE - 1);
            while p < end {
                pages.push(p);
                p += PAGE;
            }
        }
        self.fetch_pages(&pages);
    }

    fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
        let page = addr & !(PAGE - 1);
        let at = addr - page;
        if at + 8 <= PAGE {
            return self
                .with_page(page, |b| word_at(b, at))?
                .ok_or(ReadError::Unreadable(addr));
        }
        let mut w = [0u8; 8];
        self.read_bytes(addr, &mut w)?;
        Ok(usize::from_ne_bytes(w))
    }

    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result<(), ReadError> {
        let mut done = 0;
        while done < buf.len() {
            let at = addr + done;
            let page = at & !(PAGE - 1);
            let off = at - page;
            let take = (PAGE - off).min(buf.len() - done);
            self.with_page(page, |b| {
                buf[done..done + take].copy_from_slice(&b[off..off + take])
            })?;
            done += take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_childs_memory_and_reports_unmapped_addresses() {
        // Our own pid: process_vm_readv works on the calling process too.
        let value: [usize; 3] = [0x1122_3344, 0x5566_7788, 42];
        let m = ProcessMemory::new(std::process::id() as i32);
        let addr = value.as_ptr() as usize;
        assert_eq!(m.read_word(addr + 8).unwrap(), 0x5566_7788);
        let mut buf = [0u8; 24];
        m.read_bytes(addr, &mut buf).unwrap();
        assert_eq!(word_at(&buf, 16), Some(42));
        assert!(matches!(m.read_word(8), Err(ReadError::Unreadable(_))));
    }

    #[test]
    fn prefetched_pages_serve_later_reads_without_syscalls() {
        let data = vec![7usize; 3 * PAGE / 8];
        let m = ProcessMemory::new(std::process::id() as i32);
        let start = data.as_ptr() as usize;
        m.prefetch(&[(start, start + data.len() * 8), (8, 16)]);
        let after_prefetch = m.syscalls();
        assert!(after_prefetch <= 2, "one batch: {after_prefetch}");
        assert_eq!(m.read_word(start + PAGE).unwrap(), 7);
        assert_eq!(m.read_word(start + 2 * PAGE).unwrap(), 7);
        assert_eq!(m.syscalls(), after_prefetch);
    }

    #[test]
    fn a_process_that_does_not_exist_is_gone() {
        let m = ProcessMemory::new(i32::MAX - 7);
        assert_eq!(m.read_word(0x1000), Err(ReadError::ProcessGone));
    }
}
