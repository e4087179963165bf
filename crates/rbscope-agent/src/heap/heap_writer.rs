//! The heap dump's writes, on a second thread of the forked child, so that formatting the
//! next piece of the dump overlaps with the kernel copying the last one into the file.
//!
//! Why: in the child, a third of the time went to `write` (the kernel copying each buffer into
//! the page cache), during which nothing was formatted. With this thread the walk hands over a
//! full buffer and goes on with a spare one; two buffers take turns.
//!
//! Why a raw `pthread_create` with a stack we map ourselves: in a forked child, glibc keeps the
//! stacks of the parent's other threads (which did not survive the fork) in its cache of free
//! stacks, and hands one to the next thread created. Ruby keeps each thread's VM stack inside
//! its native stack, and the walk still reads those (a Thread object's frames): a thread given
//! such a stack would overwrite what the walk reads. A stack from our own `mmap` is fresh
//! memory.
//!
//! The thread only writes bytes to a file descriptor: it touches no Ruby data.

use crate::ffi::guard::{self, Feature};
use std::ffi::c_void;
use std::fs::File;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// The writer thread's stack: it only calls `write`.
const STACK_LEN: usize = 256 << 10;
const GUARD_LEN: usize = 4096;

/// What the writer thread owns.
struct Job {
    file: File,
    full: Receiver<Vec<u8>>,
    free: SyncSender<std::io::Result<Vec<u8>>>,
}

impl Job {
    fn run(mut self) {
        while let Ok(mut buf) = self.full.recv() {
            if let Err(e) = self.file.write_all(&buf) {
                let _ = self.free.send(Err(e));
                return;
            }
            buf.clear();
            if self.free.send(Ok(buf)).is_err() {
                return;
            }
        }
    }
}

extern "C" fn writer_main(arg: *mut c_void) -> *mut c_void {
    // Entered by the OS: a panic must not unwind out of it. The job's channels close when it
    // is dropped (on return or unwinding), which the walk sees as the writer's end.
    guard::run(Feature::Heap, "the heap dump's writer thread", (), || {
        // SAFETY: `arg` is the Box<Job> that `Background::start` leaked for this thread alone.
        let job = unsafe { Box::from_raw(arg as *mut Job) };
        job.run();
    });
    std::ptr::null_mut()
}

/// A running writer thread.
pub struct Background {
    full: Option<SyncSender<Vec<u8>>>,
    free: Receiver<std::io::Result<Vec<u8>>>,
    thread: libc::pthread_t,
    stack: *mut c_void,
}

fn os_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Background {
    /// Starts a thread that writes, in order, the buffers given to [`Background::swap`] to
    /// `file`; `spare` is the second buffer.
    pub fn start(file: File, spare: Vec<u8>) -> std::io::Result<Background> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(1);
        let (free_tx, free_rx) = sync_channel::<std::io::Result<Vec<u8>>>(2);
        free_tx
            .send(Ok(spare))
            .map_err(|_| std::io::Error::other("the writer's channel closed"))?;
        let len = STACK_LEN + GUARD_LEN;
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let stack = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if stack == libc::MAP_FAILED {
            return Err(os_error("cannot map a stack for the dump's writer thread"));
        }
        // SAFETY: the lowest page of the mapping made above becomes the guard page: a stack
        // overflow faults instead of writing below the mapping.
        unsafe { libc::mprotect(stack, GUARD_LEN, libc::PROT_NONE) };
        let job = Box::into_raw(Box::new(Job {
            file,
            full: full_rx,
            free: free_tx,
        }));
        // SAFETY: `attr` is initialised before use and destroyed after; the stack is the
        // mapping above past its guard page (page-aligned, STACK_LEN bytes, unmapped only
        // after the thread is joined); `job` is handed to the thread, or taken back below if
        // it was not created.
        let (rc, thread) = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            libc::pthread_attr_init(&mut attr);
            libc::pthread_attr_setstack(
                &mut attr,
                (stack as *mut u8).add(GUARD_LEN) as *mut c_void,
                STACK_LEN,
            );
            let mut thread: libc::pthread_t = 0;
            let rc = libc::pthread_create(&mut thread, &attr, writer_main, job as *mut c_void);
            libc::pthread_attr_destroy(&mut attr);
            (rc, thread)
        };
        if rc != 0 {
            // SAFETY: the thread was not created, so `job` is still ours; the stack mapping
            // is unused.
            unsafe {
                drop(Box::from_raw(job));
                libc::munmap(stack, len);
            }
            return Err(std::io::Error::other(format!(
                "cannot start the dump's writer thread: {}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        Ok(Background {
            full: Some(full_tx),
            free: free_rx,
            thread,
            stack,
        })
    }

    /// Hands `full` to the writer and returns an empty buffer (the one it wrote before), or
    /// the error a write met.
    pub fn swap(&mut self, full: Vec<u8>) -> std::io::Result<Vec<u8>> {
        let sent = match &self.full {
            Some(tx) => tx.send(full).is_ok(),
            None => false,
        };
        match self.free.recv() {
            Ok(result) if sent => result,
            Ok(Err(e)) => Err(e),
            _ => Err(std::io::Error::other("the dump's writer thread stopped")),
        }
    }

    /// Waits until every buffer handed over is written; the first error met, if any.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.full = None; // the writer's loop ends once it has written what it holds
        let mut outcome = Ok(());
        while let Ok(result) = self.free.recv() {
            if let (Err(e), Ok(())) = (result, &outcome) {
                outcome = Err(e);
            }
        }
        outcome
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.full = None;
        // SAFETY: the thread was created by `start` and is joined once, here; its loop ends
        // when the sender is gone (above), or has ended already. Its stack is unmapped only
        // after it has exited.
        unsafe {
            libc::pthread_join(self.thread, std::ptr::null_mut());
            libc::munmap(self.stack, STACK_LEN + GUARD_LEN);
        }
    }
}
