//! A thread on a stack mapped for it alone, for the forked child that writes a heap dump.
//!
//! Why not `std::thread`: in a forked child, glibc keeps the stacks of the parent's other
//! threads (which did not survive the fork) in its cache of free stacks, and hands one to the
//! next thread created. Ruby keeps each thread's VM stack inside its native stack, and the walk
//! still reads those (a Thread object's frames): a thread given such a stack would overwrite
//! what the walk reads. A stack from our own `mmap` is fresh memory. The thread is joined and
//! its stack unmapped when the [`FreshThread`] is dropped.

use std::ffi::c_void;

/// The thread's stack: it only calls `write`.
const STACK_LEN: usize = 256 << 10;
const GUARD_LEN: usize = 4096;

type Main = Box<dyn FnOnce() + Send>;

/// A running thread; dropping it waits for it to end.
pub struct FreshThread {
    thread: libc::pthread_t,
    stack: *mut c_void,
}

fn os_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

extern "C" fn thread_main(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `arg` is the Box<Main> that `spawn` leaked for this thread alone.
    let main = unsafe { Box::from_raw(arg as *mut Main) };
    // Entered by the OS: a panic must not unwind out of it (the caller's `main` is expected to
    // catch its own; this is the last line).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(main));
    std::ptr::null_mut()
}

impl FreshThread {
    /// Runs `main` on a new thread with a stack of its own.
    pub fn spawn(main: Main) -> std::io::Result<FreshThread> {
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
        let main = Box::into_raw(Box::new(main));
        // SAFETY: `attr` is initialised before use and destroyed after; the stack is the
        // mapping above past its guard page (page-aligned, STACK_LEN bytes, unmapped only
        // after the thread is joined); `main` is handed to the thread, or taken back below if
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
            let rc = libc::pthread_create(&mut thread, &attr, thread_main, main as *mut c_void);
            libc::pthread_attr_destroy(&mut attr);
            (rc, thread)
        };
        if rc != 0 {
            // SAFETY: the thread was not created, so `main` is still ours; the stack mapping
            // is unused.
            unsafe {
                drop(Box::from_raw(main));
                libc::munmap(stack, len);
            }
            return Err(std::io::Error::other(format!(
                "cannot start the dump's writer thread: {}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        Ok(FreshThread { thread, stack })
    }

    /// The thread's usable stack (past the guard page).
    pub fn stack(&self) -> std::ops::Range<usize> {
        let low = self.stack as usize + GUARD_LEN;
        low..low + STACK_LEN
    }
}

impl Drop for FreshThread {
    fn drop(&mut self) {
        // SAFETY: the thread was created by `spawn` and is joined once, here. Its stack is
        // unmapped only after it has exited.
        unsafe {
            libc::pthread_join(self.thread, std::ptr::null_mut());
            libc::munmap(self.stack, STACK_LEN + GUARD_LEN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn runs_on_its_own_stack_and_is_joined_when_dropped() {
        let (tx, rx) = channel();
        let t = FreshThread::spawn(Box::new(move || {
            let local = 0u64;
            let _ = tx.send(std::ptr::addr_of!(local) as usize);
        }))
        .unwrap();
        let range = t.stack();
        let at = rx.recv().unwrap();
        assert!(range.contains(&at), "{at:#x} outside {range:x?}");
        drop(t);
    }

    #[test]
    fn a_panic_stays_in_the_thread() {
        let (tx, rx) = channel::<()>();
        let t = FreshThread::spawn(Box::new(move || {
            let _keep = tx;
            panic!("inside the writer");
        }))
        .unwrap();
        drop(t);
        // The sender was dropped by the unwinding: the channel is closed, and we are here.
        assert!(rx.recv().is_err());
    }
}
