//! A bounded byte ring between the app's threads (writers, inside event hooks) and one drain
//! thread (the reader), that never makes a writer wait.
//!
//! Writers are already serialized by Ruby's GVL, but a writer still takes a try-lock (one
//! uncontended atomic swap), so two writers can never interleave even where the GVL does not
//! order them; a writer that finds it taken, or finds too little room, drops its record and
//! counts it. Records never straddle the end: a padding record fills the tail and the record
//! goes to the start. Positions are ever-growing byte counts; the reader publishes how far it
//! has read, the writer how far it has written (release/acquire), so each side only touches
//! bytes the other has handed over.

use crate::events;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

pub struct ByteRing {
    buf: Pages,
    cap: usize,
    /// Bytes written so far (only the writer stores it; the reader loads it).
    head: CacheLine<AtomicUsize>,
    /// Bytes read so far (only the reader stores it; the writer loads it when its cached copy
    /// says the ring is full).
    tail: CacheLine<AtomicUsize>,
    writer: CacheLine<WriterSide>,
    lost: CacheLine<AtomicU64>,
}

/// Keeps the writer's and the reader's hot words on separate cache lines, so that neither
/// side's stores evict the other's.
#[repr(align(128))]
struct CacheLine<T>(T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What only the writer holding the try-lock changes (plain loads and stores, no
/// read-modify-write, since the lock already excludes other writers).
struct WriterSide {
    writing: AtomicBool,
    /// The last `tail` the writer read.
    seen_tail: AtomicUsize,
    written: AtomicU64,
}

/// The ring's bytes: `len` zero bytes mapped straight from the kernel, so an idle ring costs no
/// resident memory (pages are mapped in when first written) and a dropped ring gives all of it
/// back. Not through malloc: once a block this large has been freed, glibc serves the next one
/// from its arenas (its mmap threshold follows the largest block freed), zeroes it by hand (all
/// of it resident at once) and keeps it after it is freed; scripts/soak saw puma workers grow
/// from 65 to 170 MB in two minutes of traces that way, in memory free in malloc's arenas.
struct Pages {
    ptr: std::ptr::NonNull<UnsafeCell<u8>>,
    len: usize,
}

impl Pages {
    /// None when the kernel has no memory for it.
    fn zeroed(len: usize) -> Option<Pages> {
        // SAFETY: a new private anonymous mapping (zero-filled by the kernel), no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        std::ptr::NonNull::new(p as *mut UnsafeCell<u8>).map(|ptr| Pages { ptr, len })
    }

    fn as_ptr(&self) -> *const UnsafeCell<u8> {
        self.ptr.as_ptr()
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the mapping `zeroed` made, unmapped once; nothing refers to it after the drop.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

// SAFETY: the bytes are shared by one writer at a time (the try-lock) and one reader; each side
// only accesses the region the other released through `head`/`tail` (see the module docs).
unsafe impl Sync for ByteRing {}
// SAFETY: as above; the ring owns its buffer.
unsafe impl Send for ByteRing {}

impl ByteRing {
    /// A ring of `cap` bytes (rounded up to a multiple of 4, at least 64 KiB); None when the
    /// memory cannot be mapped (the caller refuses the trace; nothing aborts).
    pub fn new(cap: usize) -> Option<ByteRing> {
        let cap = events::aligned(cap.max(64 * 1024));
        Some(ByteRing {
            buf: Pages::zeroed(cap)?,
            cap,
            head: CacheLine(AtomicUsize::new(0)),
            tail: CacheLine(AtomicUsize::new(0)),
            writer: CacheLine(WriterSide {
                writing: AtomicBool::new(false),
                seen_tail: AtomicUsize::new(0),
                written: AtomicU64::new(0),
            }),
            lost: CacheLine(AtomicU64::new(0)),
        })
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Where byte `at` of the buffer is (`at` within the buffer).
    fn at(&self, at: usize) -> *mut u8 {
        debug_assert!(at < self.cap);
        self.base().wrapping_add(at)
    }

    fn slice(&self, at: usize, len: usize) -> &[u8] {
        // SAFETY: [at, at+len) lies in the written region, which the writer no longer touches
        // until the reader publishes `tail` past it.
        unsafe { std::slice::from_raw_parts(self.base().add(at) as *const u8, len) }
    }

    /// The buffer's first byte, with the provenance of the whole buffer.
    fn base(&self) -> *mut u8 {
        UnsafeCell::raw_get(self.buf.as_ptr())
    }

    /// Writes one record of `len` bytes (a multiple of 4) with `fill`, or drops it and counts
    /// it when the ring is full or another writer holds it. Never blocks.
    pub fn push(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        debug_assert!(len.is_multiple_of(4) && len >= 4);
        let w = &self.writer;
        if len > self.cap / 2
            || w.writing
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let head = self.head.load(Ordering::Relaxed);
        let pos = head % self.cap;
        let to_end = self.cap - pos;
        let need = if len <= to_end { len } else { to_end + len };
        // The reader only ever frees more room, so an old tail can only underestimate it:
        // look at the real one only when the old one says there is not enough.
        let mut tail = w.seen_tail.load(Ordering::Relaxed);
        if need > self.cap.saturating_sub(head - tail) {
            tail = self.tail.load(Ordering::Acquire);
            w.seen_tail.store(tail, Ordering::Relaxed);
        }
        let ok = need <= self.cap.saturating_sub(head - tail);
        if ok {
            // SAFETY: the writer lock is held and the `need` bytes from `pos` (wrapping to 0)
            // are free, so no one else touches them until `head` is published; UnsafeCell<u8>
            // has u8's layout.
            unsafe {
                if len > to_end {
                    events::write_pad(std::slice::from_raw_parts_mut(self.at(pos), to_end), to_end);
                    fill(std::slice::from_raw_parts_mut(self.at(0), len));
                } else {
                    fill(std::slice::from_raw_parts_mut(self.at(pos), len));
                }
            }
            self.head.store(head + need, Ordering::Release);
            w.written
                .store(w.written.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        w.writing.store(false, Ordering::Release);
        ok
    }

    /// Appends everything written so far to `out` (records whole, padding included) and frees
    /// it for writers. Returns the number of bytes taken.
    pub fn drain_into(&self, out: &mut Vec<u8>) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        let n = head - tail;
        if n == 0 {
            return 0;
        }
        let pos = tail % self.cap;
        let first = n.min(self.cap - pos);
        out.extend_from_slice(self.slice(pos, first));
        if first < n {
            out.extend_from_slice(self.slice(0, n - first));
        }
        self.tail.store(head, Ordering::Release);
        n
    }

    /// Bytes written into the ring since it was made (padding included): compare with what
    /// the reader has passed on to know when everything written so far has left.
    pub fn position(&self) -> usize {
        self.head.load(Ordering::Acquire)
    }

    /// Records dropped since the last call.
    pub fn take_lost(&self) -> u64 {
        self.lost.swap(0, Ordering::Relaxed)
    }

    /// Records written since the ring was made.
    pub fn written(&self) -> u64 {
        self.writer.written.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Reader, CALL_LEN, RETURN_LEN};
    use std::sync::Arc;

    #[test]
    fn wraps_with_padding_and_counts_what_did_not_fit() {
        let ring = ByteRing::new(64 * 1024).unwrap();
        let mut out = Vec::new();
        let mut sent = 0u64;
        // Fill, drain a little at a time, across many wraps, with two record sizes so that
        // padding is needed.
        for round in 0..20_000u64 {
            let ok = if round % 3 == 0 {
                ring.push(RETURN_LEN, |b| events::write_return(b, 1, 2, round, 5))
            } else {
                ring.push(CALL_LEN, |b| events::write_call(b, 1, 2, round))
            };
            assert!(ok, "round {round}");
            sent += 1;
            if round % 7 == 0 {
                ring.drain_into(&mut out);
            }
        }
        ring.drain_into(&mut out);
        let ts: Vec<u64> = Reader::new(&out)
            .map(|e| match e.unwrap() {
                Event::Call { t, .. } | Event::Return { t, .. } => t,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ts.len() as u64, sent);
        assert!(ts.windows(2).all(|w| w[1] == w[0] + 1));

        // Nobody drains: the ring fills, then drops and counts.
        let full = ByteRing::new(64 * 1024).unwrap();
        let fits = full.capacity() / CALL_LEN;
        let mut ok = 0;
        for i in 0..fits + 100 {
            if full.push(CALL_LEN, |b| events::write_call(b, 0, 0, i as u64)) {
                ok += 1;
            }
        }
        assert_eq!(ok, fits);
        assert_eq!(full.take_lost(), 100);
        assert_eq!(full.take_lost(), 0);
    }

    #[test]
    fn a_reader_thread_sees_every_record_in_order() {
        let ring = Arc::new(ByteRing::new(64 * 1024).unwrap());
        let writer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut pushed = Vec::new();
                for i in 0..200_000u64 {
                    if ring.push(CALL_LEN, |b| events::write_call(b, 0, 0, i)) {
                        pushed.push(i);
                    }
                }
                pushed
            })
        };
        let mut out = Vec::new();
        while !writer.is_finished() {
            ring.drain_into(&mut out);
        }
        let pushed = writer.join().unwrap();
        ring.drain_into(&mut out);
        let got: Vec<u64> = Reader::new(&out)
            .map(|e| match e.unwrap() {
                Event::Call { t, .. } => t,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, pushed);
        assert_eq!(ring.take_lost() as usize, 200_000 - pushed.len());
    }
}
