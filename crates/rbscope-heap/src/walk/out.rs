//! The dump's output: lines are formatted into a buffer, written out in large pieces.
//!
//! Why: a dump is millions of short lines; one `write` per line would cost more than the
//! formatting. The buffer is handed over when it passes [`Out::FLUSH_AT`] (small enough to stay
//! in the core's cache while it fills), either written at once ([`Sink::Direct`]) or passed to
//! the forked child's writer thread ([`Sink::Overlapped`]). The first write error is kept, later
//! output dropped, and the walk told to stop ([`Out::failed`]): a full disk ends the dump, it
//! does not end the process.

use super::overlap::Overlapped;
use std::io::Write;

/// Where full buffers go.
pub enum Sink<'s> {
    /// Written here, on the walk's thread.
    Direct(&'s mut dyn Write),
    /// Handed to a writer thread (see [`super::overlap`]).
    Overlapped(Overlapped),
}

/// The buffer being filled, and where it goes.
pub struct Out<'s> {
    sink: Sink<'s>,
    buf: Vec<u8>,
    error: Option<std::io::Error>,
}

impl<'s> Out<'s> {
    /// When the buffer is handed over.
    pub const FLUSH_AT: usize = 256 << 10;
    /// Room for the buffer and the longest usual line past the threshold.
    pub const CAPACITY: usize = Self::FLUSH_AT + (64 << 10);

    pub fn new(sink: Sink<'s>) -> Self {
        Out {
            sink,
            buf: Vec::with_capacity(Self::CAPACITY),
            error: None,
        }
    }

    /// The buffer lines are formatted into.
    #[inline(always)]
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Hands the buffer over once it is full enough.
    #[inline(always)]
    pub fn maybe_flush(&mut self) {
        if self.buf.len() >= Self::FLUSH_AT {
            self.flush();
        }
    }

    /// Hands the buffer over (or drops it once a write failed).
    pub fn flush(&mut self) {
        if self.error.is_some() {
            self.buf.clear();
            return;
        }
        match &mut self.sink {
            Sink::Direct(w) => {
                if let Err(e) = w.write_all(&self.buf) {
                    self.error = Some(e);
                }
                self.buf.clear();
            }
            Sink::Overlapped(bg) => match bg.swap(std::mem::take(&mut self.buf)) {
                Ok(empty) => self.buf = empty,
                Err(e) => self.error = Some(e),
            },
        }
    }

    /// Whether a write failed.
    #[inline(always)]
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Writes what is left and waits for the writer thread, if any: the first error met.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.flush();
        let waited = match self.sink {
            Sink::Overlapped(bg) => bg.finish(),
            Sink::Direct(_) => Ok(()),
        };
        match self.error.take() {
            Some(e) => Err(e),
            None => waited,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A writer that takes `left` bytes, then fails (disk full).
    pub(crate) struct Failing {
        pub left: usize,
        pub taken: Vec<u8>,
    }

    impl Failing {
        pub fn after(left: usize) -> Failing {
            Failing {
                left,
                taken: Vec::new(),
            }
        }
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn fill(out: &mut Out<'_>, lines: usize) -> Vec<u8> {
        let mut all = Vec::new();
        for i in 0..lines {
            let line = format!("{{\"line\":{i}, \"pad\":\"{:0>100}\"}}\n", i);
            out.buf().extend_from_slice(line.as_bytes());
            all.extend_from_slice(line.as_bytes());
            out.maybe_flush();
        }
        all
    }

    #[test]
    fn writes_in_pieces_of_the_threshold_and_everything_at_the_end() {
        let mut sink = Vec::new();
        let mut out = Out::new(Sink::Direct(&mut sink));
        let all = fill(&mut out, 5_000);
        assert!(!out.failed());
        out.finish().unwrap();
        assert_eq!(sink, all);

        // Nothing is written before the threshold.
        let mut sink = Vec::new();
        let mut out = Out::new(Sink::Direct(&mut sink));
        out.buf().extend_from_slice(&[b'x'; Out::FLUSH_AT - 1]);
        out.maybe_flush();
        assert_eq!(out.buf().len(), Out::FLUSH_AT - 1);
        out.buf().push(b'y');
        out.maybe_flush();
        assert!(out.buf().is_empty());
        drop(out);
        assert_eq!(sink.len(), Out::FLUSH_AT);
    }

    #[test]
    fn the_first_error_is_kept_and_later_output_dropped() {
        let mut disk = Failing::after(1000);
        let mut out = Out::new(Sink::Direct(&mut disk));
        fill(&mut out, 5_000);
        assert!(out.failed());
        let e = out.finish().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(disk.taken.len(), 1000);
    }
}
