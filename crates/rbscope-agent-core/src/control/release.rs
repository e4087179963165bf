//! Giving the app's freed memory back to the system once the last client has gone.
//!
//! Each client is served on a thread of its own, and a heap dump or a firehose trace can make
//! large temporary buffers (on the client thread or the agent's Ruby thread). glibc keeps the
//! memory of freed blocks in the arena of the thread that used it, and only gives back what sits
//! at the top of an arena, so over hours of attaches an app's RSS grew with memory nobody used
//! (the 60-minute soak of 2026-12-07: 4.6 → 54 MB free in the arenas of a Rails worker).
//! `malloc_trim(0)` returns the whole free pages of every arena; it walks only free blocks and
//! is called at most once per client session, when the last one ends, never on a path the app
//! waits for.

/// Returns the free pages of every malloc arena to the system (glibc only; elsewhere nothing).
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer; it locks each arena in turn and only releases pages
    // of free chunks, so no block any thread holds is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::return_free_memory;

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn freed_blocks_inside_an_arena_leave_the_rss() {
        // On a thread of its own, as a client is served: 64 MiB in blocks below the mmap
        // threshold, touched, then all freed but the last, which pins the arena's top so that
        // free() alone cannot give the memory back.
        let drop_kib = std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..1024).map(|_| vec![1u8; 64 * 1024]).collect();
            let pin = blocks.pop().unwrap();
            drop(blocks);
            let before = rss_kib();
            return_free_memory();
            let after = rss_kib();
            drop(pin);
            before.saturating_sub(after)
        })
        .join()
        .unwrap();
        assert!(drop_kib > 32 * 1024, "RSS fell by only {drop_kib} KiB");
    }
}
