//! The dump's writes on a second thread, so that formatting the next piece of the dump
//! overlaps with the kernel copying the last one into the file.
//!
//! Why: in the forked child, a third of the time went to `write` (the kernel copying each
//! buffer into the page cache), during which nothing was formatted. With this thread the walk
//! hands over a full buffer and goes on with a spare one; two buffers take turns. The thread is
//! a [`FreshThread`] (its module says why) and only writes bytes: it touches no Ruby data.

use super::fresh_thread::FreshThread;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// What the writer thread owns.
struct Job<W> {
    out: W,
    full: Receiver<Vec<u8>>,
    free: SyncSender<std::io::Result<Vec<u8>>>,
}

impl<W: Write> Job<W> {
    fn run(mut self) {
        while let Ok(mut buf) = self.full.recv() {
            if let Err(e) = self.out.write_all(&buf) {
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

/// A running writer thread. Dropping it waits for the thread.
pub struct Overlapped {
    full: Option<SyncSender<Vec<u8>>>,
    free: Receiver<std::io::Result<Vec<u8>>>,
    thread: Option<FreshThread>,
}

impl Overlapped {
    /// Starts a thread that writes, in order, the buffers given to [`Overlapped::swap`] to
    /// `out`; `spare` is the second buffer. The thread's body runs inside `guard` (the agent's
    /// panic guard); if it ends early (a panic), its channels close and the walk sees a
    /// stopped writer.
    pub fn start<W: Write + Send + 'static>(
        out: W,
        spare: Vec<u8>,
        guard: impl FnOnce(Box<dyn FnOnce() + Send>) + Send + 'static,
    ) -> std::io::Result<Overlapped> {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(1);
        let (free_tx, free_rx) = sync_channel::<std::io::Result<Vec<u8>>>(2);
        free_tx
            .send(Ok(spare))
            .map_err(|_| std::io::Error::other("the writer's channel closed"))?;
        let job = Job {
            out,
            full: full_rx,
            free: free_tx,
        };
        let thread = FreshThread::spawn(Box::new(move || guard(Box::new(move || job.run()))))?;
        Ok(Overlapped {
            full: Some(full_tx),
            free: free_rx,
            thread: Some(thread),
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

impl Drop for Overlapped {
    fn drop(&mut self) {
        self.full = None;
        // Its loop ends when the sender is gone (above), or has ended already.
        drop(self.thread.take());
    }
}

#[cfg(test)]
mod tests {
    use super::super::out::tests::Failing;
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test can read after the thread is done.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn unguarded(body: Box<dyn FnOnce() + Send>) {
        body()
    }

    #[test]
    fn buffers_are_written_in_order_and_reused() {
        let shared = Shared::default();
        let mut bg = Overlapped::start(shared.clone(), Vec::with_capacity(64), unguarded).unwrap();
        let mut expected = Vec::new();
        let mut buf = Vec::with_capacity(64);
        for i in 0..1000u32 {
            buf.extend_from_slice(format!("piece {i}\n").as_bytes());
            expected.extend_from_slice(&buf);
            buf = bg.swap(buf).unwrap();
            assert!(buf.is_empty(), "the writer hands back an empty buffer");
        }
        bg.finish().unwrap();
        assert_eq!(*shared.0.lock().unwrap(), expected);
    }

    #[test]
    fn a_write_error_comes_back_and_the_writer_stops() {
        let mut bg = Overlapped::start(Failing::after(10), Vec::new(), unguarded).unwrap();
        // The first swap gets the spare buffer; the writer fails on the buffer it was handed.
        assert!(bg.swap(b"0123456789abcdef".to_vec()).is_ok());
        let e = bg.swap(b"more".to_vec()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        let e = bg.swap(b"more".to_vec()).unwrap_err();
        assert!(e.to_string().contains("stopped"), "{e}");
        // The error was reported by swap, which the caller keeps.
        bg.finish().unwrap();
    }

    #[test]
    fn finish_reports_an_error_met_after_the_last_swap() {
        let mut bg = Overlapped::start(Failing::after(10), Vec::new(), unguarded).unwrap();
        assert!(bg.swap(b"0123456789abcdef".to_vec()).is_ok());
        assert_eq!(bg.finish().unwrap_err().raw_os_error(), Some(28));
    }

    #[test]
    fn a_writer_that_panics_is_seen_as_stopped() {
        struct Panics;
        impl Write for Panics {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                panic!("a bug in the writer");
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let caught = Arc::new(Mutex::new(false));
        let flag = caught.clone();
        let guard = move |body: Box<dyn FnOnce() + Send>| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            *flag.lock().unwrap() = r.is_err();
        };
        let mut bg = Overlapped::start(Panics, Vec::new(), guard).unwrap();
        let mut stopped = false;
        for _ in 0..3 {
            if let Err(e) = bg.swap(b"x".to_vec()) {
                assert!(e.to_string().contains("stopped"), "{e}");
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        drop(bg);
        assert!(*caught.lock().unwrap(), "the guard saw the panic");
    }
}
