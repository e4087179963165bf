//! The raise record: what the agent keeps of a raising thread's frames until the exception is
//! reported (or the record is replaced by newer raises).
//!
//! The agent has two ways to keep frames at raise: reading the VM's control frames directly
//! (the fast path: the iseq, position, `self`, method entry and local values of every frame)
//! and Ruby's debug inspector (the portable path: a location, a `Binding`, `self`, class and
//! method entry per app frame). Both write this one format and the report reads it with one
//! decoder, so what a record holds, and its bounds, are defined (and tested) here.
//!
//! A record is a flat sequence of machine words, each either a Ruby object the record keeps
//! alive (the agent's pending-capture ring marks every word for the GC) or an immediate the GC
//! ignores: counts and addresses are stored as Fixnums (`n << 1 | 1`), "none" as `false` (0).
//! So marking a record never mistakes a number for an object.
//!
//! ```text
//! record    = header frame*  |  header stack
//! header    = fix(source) fix(skipped)        source: 1 VM frames, 2 inspector frames,
//!                                             3 stack copy; skipped: app frames over the cap
//! VM frame  = iseq|false fix(pos) self me|false fix(cfp) fix(ep) fix(levels) level*
//!             (a C function's frame: iseq false, pos 0, no levels)
//! level     = fix(n) local*n                  one environment, innermost first
//! inspector = fix(depth) location binding self class iseq|nil me|nil
//! stack     = fix(base) fix(stack words) fix(first cfp) fix(cfp words) fix(self at)
//!             fix(iseq at) fix(ep at) fix(values) fix(cfp region words) fix(envs)
//!             fix(scan)                       scan: 0 not yet, 1 done, 2 unreadable
//!             value*values cfpword*region env*envs
//! ```
//!
//! A stack copy is what the raise path keeps: the raising thread's value stack (every word
//! below the running frame's `sp`, all VALUEs or immediates, as the VM's own GC treats them)
//! and its control frames, copied as two blocks. Copying two blocks costs a few instructions
//! per frame where reading each frame's fields costs ~150; the frames are read out of the copy
//! (`stack_copy::expand`, into VM frames) only if the exception is reported. Its control-frame
//! words hold raw pointers (pc, sp, ep), so only their `self` and `iseq` words are objects:
//! [`for_each_object`] is how a record is marked. The environments of blocks whose parent's
//! frame had already returned (heap objects nothing on the stack holds) are found by
//! `stack_copy::scan_parents` at the first GC after the raise, when they are still alive, and
//! appended as `env` words.

/// `false` (`Qfalse`): "none" in a record.
pub const FALSE: usize = 0;
/// Words of the record's header.
pub const HEADER: usize = 2;
/// Words of every frame before its levels (both kinds).
pub const FRAME_WORDS: usize = 7;
/// Ruby frames copied per raise at most (a runaway recursion must not make raise slow).
pub const MAX_FRAMES: usize = 512;
/// Environment levels (nested blocks) kept per frame at most.
pub const MAX_LEVELS: usize = 64;
/// Locals per level at most; a larger count means a bad read.
pub const MAX_LOCALS: usize = 65_536;
/// A record's first room, in words (enough for about a hundred frames)...
pub const FIRST_WORDS: usize = 1024;
/// ...and the most words one record may take (deeper stacks fall back to the inspector).
pub const MAX_WORDS: usize = 256 * 1024;

/// A non-negative number as a Fixnum.
#[inline(always)]
pub const fn fix(n: usize) -> usize {
    (n << 1) | 1
}

/// The number a Fixnum word holds, if it is a non-negative Fixnum.
#[inline]
pub fn unfix(w: usize) -> Option<usize> {
    (w & 1 == 1 && (w as isize) >= 0).then_some(w >> 1)
}

/// How a record's frames were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Read from the VM's control frames: every frame, Ruby and C.
    Vm = 1,
    /// Given by the debug inspector: the app frames only.
    Inspector = 2,
    /// The raising thread's VM stack, copied whole (read into VM frames at report).
    Stack = 3,
}

/// Words of a stack copy's fields after the header.
pub const STACK_FIELDS: usize = 11;
/// Where a stack copy's `values`, `region`, `envs` and `scan` fields are.
const VALUES_AT: usize = HEADER + 7;
const ENVS_AT: usize = HEADER + 9;
const SCAN_AT: usize = HEADER + 10;

/// How far a stack copy's parent environments were found (its `scan` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Not yet: nothing was freed since the raise (no GC ran), so all it points to is alive.
    Pending = 0,
    /// Found and appended as `env` words, kept alive from then on.
    Done = 1,
    /// A block's parent environment was neither on the copied stack nor on the heap: the
    /// copy is never read.
    Unreadable = 2,
}

/// Where a copied VM stack lived and how to read its control frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackShape {
    /// The value stack's first word (`ec->vm_stack`).
    pub base: usize,
    /// The whole stack's size in words (`ec->vm_stack_size`): control frames end there.
    pub stack_words: usize,
    /// The running (innermost) control frame, where the copied control frames start.
    pub first_cfp: usize,
    /// A control frame's size in words, and where its `self`, `iseq` and `ep` words are.
    pub cfp_words: usize,
    pub self_at: usize,
    pub iseq_at: usize,
    pub ep_at: usize,
}

/// A stack copy, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackCopy<'a> {
    pub shape: StackShape,
    /// The value stack from `base`.
    pub values: &'a [usize],
    /// The control frames from `first_cfp` to the stack's end.
    pub frames: &'a [usize],
    /// Environment objects kept alive for the frames' parents.
    pub envs: &'a [usize],
    pub scan: Scan,
}

/// The stack copy a record holds, if it is one and is whole.
pub fn stack_copy(words: &[usize]) -> Option<StackCopy<'_>> {
    let (head, rest) = words.split_at_checked(HEADER + STACK_FIELDS)?;
    let num = |i: usize| head.get(i).copied().and_then(unfix);
    if num(0)? != Source::Stack as usize {
        return None;
    }
    let shape = StackShape {
        base: num(2)?,
        stack_words: num(3)?,
        first_cfp: num(4)?,
        cfp_words: num(5)?,
        self_at: num(6)?,
        iseq_at: num(7)?,
        ep_at: num(8)?,
    };
    let w = shape.cfp_words;
    if w == 0 || shape.self_at >= w || shape.iseq_at >= w || shape.ep_at >= w {
        return None;
    }
    let scan = match num(SCAN_AT)? {
        0 => Scan::Pending,
        1 => Scan::Done,
        2 => Scan::Unreadable,
        _ => return None,
    };
    let (values, rest) = rest.split_at_checked(num(VALUES_AT)?)?;
    let (frames, rest) = rest.split_at_checked(num(VALUES_AT + 1)?)?;
    let envs = rest.get(..num(ENVS_AT)?)?;
    Some(StackCopy {
        shape,
        values,
        frames,
        envs,
        scan,
    })
}

/// Appends `envs` to a whole stack copy's `env` words and sets its scan state. False (and
/// nothing changed) when `words` is no whole stack copy.
pub fn finish_scan(words: &mut Vec<usize>, envs: &[usize], scan: Scan) -> bool {
    let Some(copy) = stack_copy(words) else {
        return false;
    };
    let (kept, end) = (copy.envs.len(), words.len());
    let whole = HEADER + STACK_FIELDS + copy.values.len() + copy.frames.len() + kept;
    if whole != end {
        words.truncate(whole);
    }
    words.extend_from_slice(envs);
    if let Some(n) = words.get_mut(ENVS_AT) {
        *n = fix(kept + envs.len());
    }
    if let Some(s) = words.get_mut(SCAN_AT) {
        *s = fix(scan as usize);
    }
    true
}

/// Calls `f` with every word of a record that may be an object (a VALUE the record keeps
/// alive); the caller marks them. Every word but a stack copy's control-frame words, of which
/// only `self` and `iseq` are objects. A stack copy that does not decode gives nothing: it was
/// never published (a record is written whole or not at all).
pub fn for_each_object(words: &[usize], mut f: impl FnMut(usize)) {
    if words.first().copied().and_then(unfix) != Some(Source::Stack as usize) {
        words.iter().for_each(|w| f(*w));
        return;
    }
    let Some(copy) = stack_copy(words) else {
        return;
    };
    copy.values.iter().for_each(|w| f(*w));
    let s = copy.shape;
    for cfp in copy.frames.chunks_exact(s.cfp_words) {
        if let (Some(self_value), Some(iseq)) = (cfp.get(s.self_at), cfp.get(s.iseq_at)) {
            f(*self_value);
            f(*iseq);
        }
    }
    copy.envs.iter().for_each(|w| f(*w));
}

/// Where a VM frame starts in the record, to finish it once its levels are written.
#[derive(Clone, Copy, Debug)]
pub struct FrameAt(usize);

/// Writes a record into a vector, only within its capacity (so a record written at raise never
/// allocates): every write answers None when it does not fit, and the caller grows the vector
/// (up to [`MAX_WORDS`]) and starts again. The vector's length is set when the encoder is
/// dropped: until then the buffer, its capacity and the words written are kept in the encoder
/// itself, so the raise path's loop keeps them in registers instead of reloading the vector's
/// fields after every write (that cost about 60 instructions per frame, measured with
/// callgrind on bench/raise.rb).
pub struct Encoder<'a> {
    out: &'a mut Vec<usize>,
    /// `out`'s buffer; valid for `cap` words while the encoder holds `out` (nothing can grow
    /// or free it meanwhile).
    buf: *mut usize,
    cap: usize,
    /// Words written: every slot below `len` holds one.
    len: usize,
}

impl Drop for Encoder<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `len <= cap` (every write checks room first) and the slots below `len` were
        // all written (a write bumps `len` only after writing).
        unsafe { self.out.set_len(self.len) };
    }
}

impl<'a> Encoder<'a> {
    /// Clears `out` and writes the header.
    #[inline]
    pub fn new(out: &'a mut Vec<usize>, source: Source) -> Option<Encoder<'a>> {
        out.clear();
        let (buf, cap) = (out.as_mut_ptr(), out.capacity());
        let mut e = Encoder {
            out,
            buf,
            cap,
            len: 0,
        };
        e.put([fix(source as usize), fix(0)])?;
        Some(e)
    }

    /// Appends `words` within the capacity, or gives None when they do not fit.
    #[inline(always)]
    fn put<const N: usize>(&mut self, words: [usize; N]) -> Option<()> {
        // Locals, not fields, in the loop: a write through `buf` could alias `self` as far as
        // the compiler knows, which would reload the fields after every word.
        let (buf, len) = (self.buf, self.len);
        if self.cap - len < N {
            return None;
        }
        for (i, w) in words.into_iter().enumerate() {
            // SAFETY: `len + i < len + N <= cap`: within `out`'s buffer, which the encoder
            // holds (borrowed mutably) so it cannot move.
            unsafe { buf.add(len + i).write(w) };
        }
        self.len = len + N;
        Some(())
    }

    /// Overwrites the word at `i`, if it was written.
    #[inline(always)]
    fn set(&mut self, i: usize, w: usize) {
        if i < self.len {
            // SAFETY: `i < len <= cap`: a written slot of the held buffer.
            unsafe { self.buf.add(i).write(w) };
        }
    }

    /// Words written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets how many app frames were left out over the frame cap.
    pub fn set_skipped(&mut self, skipped: usize) {
        self.set(1, fix(skipped));
    }

    /// A Ruby frame read from the VM; its levels follow ([`Encoder::level`]), then
    /// [`Encoder::end_frame`].
    #[inline]
    pub fn ruby_frame(
        &mut self,
        iseq: usize,
        pos: usize,
        self_value: usize,
        cfp: usize,
        ep: usize,
    ) -> Option<FrameAt> {
        let at = FrameAt(self.len);
        self.put::<FRAME_WORDS>([iseq, fix(pos), self_value, FALSE, fix(cfp), fix(ep), fix(0)])?;
        Some(at)
    }

    /// One environment level: `n` locals, `local(i)` giving the i-th.
    #[inline]
    pub fn level(&mut self, n: usize, mut local: impl FnMut(usize) -> usize) -> Option<()> {
        let (buf, len) = (self.buf, self.len); // locals in the loop, as in `put`
        if n > MAX_LOCALS || self.cap - len < 1 + n {
            return None;
        }
        // SAFETY: `len + n < len + 1 + n <= cap` for every write below: within the held buffer.
        unsafe { buf.add(len).write(fix(n)) };
        for i in 0..n {
            // SAFETY: as above.
            unsafe { buf.add(len + 1 + i).write(local(i)) };
        }
        self.len = len + 1 + n;
        Some(())
    }

    /// Finishes the frame started at `at`: its method entry (0: none) and its level count.
    #[inline]
    pub fn end_frame(&mut self, at: FrameAt, me: usize, levels: usize) {
        if me != 0 {
            self.set(at.0 + 3, me);
        }
        self.set(at.0 + 6, fix(levels));
    }

    /// A C function's frame.
    #[inline]
    pub fn c_frame(&mut self, self_value: usize, me: usize, cfp: usize, ep: usize) -> Option<()> {
        let me = if me == 0 { FALSE } else { me };
        self.put::<FRAME_WORDS>([FALSE, fix(0), self_value, me, fix(cfp), fix(ep), fix(0)])
    }

    /// A stack copy's fields (counts zero until [`Encoder::set_stack_counts`]).
    #[inline]
    pub fn stack_head(&mut self, s: &StackShape) -> Option<()> {
        self.put::<STACK_FIELDS>([
            fix(s.base),
            fix(s.stack_words),
            fix(s.first_cfp),
            fix(s.cfp_words),
            fix(s.self_at),
            fix(s.iseq_at),
            fix(s.ep_at),
            fix(0),
            fix(0),
            fix(0),
            fix(Scan::Pending as usize),
        ])
    }

    /// Sets a stack copy's counts, once its blocks are written.
    #[inline]
    pub fn set_stack_counts(&mut self, values: usize, region: usize) {
        self.set(VALUES_AT, fix(values));
        self.set(VALUES_AT + 1, fix(region));
    }

    /// Appends `n` words read from `src` as one block copy.
    ///
    /// # Safety
    /// `src` is valid for reading `n` words, and nothing writes them meanwhile.
    #[inline]
    pub unsafe fn copy_block(&mut self, src: *const usize, n: usize) -> Option<()> {
        let len = self.len;
        if self.cap - len < n {
            return None;
        }
        // SAFETY: the source is readable for n words (the caller's contract); the destination
        // `len..len + n` is within the held buffer's capacity (checked above) and cannot
        // overlap memory the caller reads (the buffer is this encoder's, borrowed mutably).
        unsafe { std::ptr::copy_nonoverlapping(src, self.buf.add(len), n) };
        self.len = len + n;
        Some(())
    }

    /// Appends one word.
    #[inline]
    pub fn push(&mut self, w: usize) -> Option<()> {
        self.put([w])
    }

    /// One environment level whose locals are read fallibly: None (and nothing written) when
    /// a read fails or the level does not fit.
    #[inline]
    pub fn try_level(
        &mut self,
        n: usize,
        mut local: impl FnMut(usize) -> Option<usize>,
    ) -> Option<()> {
        let (buf, len) = (self.buf, self.len);
        if n > MAX_LOCALS || self.cap - len < 1 + n {
            return None;
        }
        // SAFETY: `len + n < len + 1 + n <= cap` for every write below: within the held buffer.
        // Words past `len` count only once `len` is bumped, at the end.
        unsafe { buf.add(len).write(fix(n)) };
        for i in 0..n {
            let w = local(i)?;
            // SAFETY: as above.
            unsafe { buf.add(len + 1 + i).write(w) };
        }
        self.len = len + 1 + n;
        Some(())
    }

    /// An app frame given by the debug inspector.
    pub fn inspector_frame(&mut self, f: &InspectorFrame) -> Option<()> {
        self.put::<FRAME_WORDS>([
            fix(f.depth),
            f.location,
            f.binding,
            f.self_value,
            f.klass,
            f.iseq,
            f.method_entry,
        ])
    }
}

/// A frame read from the VM, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmFrame {
    /// Position among the Ruby frames (a C frame shares the index of the Ruby frame below).
    pub index: usize,
    /// A C function's frame: no iseq, no locals.
    pub cfunc: bool,
    /// The iseq (false for a C function).
    pub iseq: usize,
    /// The instruction index being executed in `iseq`.
    pub pos: usize,
    pub self_value: usize,
    /// The method entry (false when none).
    pub method_entry: usize,
    /// The control frame and environment addresses, to recognise the frame if it is still
    /// running at report time.
    pub cfp: usize,
    pub ep: usize,
    /// Local values per environment level, innermost first.
    pub levels: Vec<Vec<usize>>,
}

/// A frame given by the debug inspector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectorFrame {
    /// Position among the Ruby frames.
    pub depth: usize,
    /// Its `Thread::Backtrace::Location`.
    pub location: usize,
    pub binding: usize,
    pub self_value: usize,
    /// The method's class as the inspector gives it (nil outside methods).
    pub klass: usize,
    /// The frame's iseq, nil when unknown.
    pub iseq: usize,
    /// The method entry, nil when unknown or none.
    pub method_entry: usize,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Vm(Vec<VmFrame>),
    Inspector {
        frames: Vec<InspectorFrame>,
        /// App frames left out over the frame cap.
        skipped: usize,
    },
}

/// Decodes a record; None when its header is not one, and for a stack copy (which only reads
/// as frames with the VM's memory at hand: `stack_copy::expand` turns it into VM frames). A frame that is cut short or malformed
/// ends the record (the frames before it are kept).
pub fn decode(words: &[usize]) -> Option<Record> {
    let (head, frames) = words.split_at_checked(HEADER)?;
    let source = unfix(*head.first()?)?;
    let skipped = unfix(*head.get(1)?)?;
    if source == Source::Vm as usize {
        Some(Record::Vm(decode_vm(frames)))
    } else if source == Source::Inspector as usize {
        let frames = frames
            .chunks_exact(FRAME_WORDS)
            .map_while(|w| {
                Some(InspectorFrame {
                    depth: unfix(*w.first()?)?,
                    location: *w.get(1)?,
                    binding: *w.get(2)?,
                    self_value: *w.get(3)?,
                    klass: *w.get(4)?,
                    iseq: *w.get(5)?,
                    method_entry: *w.get(6)?,
                })
            })
            .collect();
        Some(Record::Inspector { frames, skipped })
    } else {
        None
    }
}

fn decode_vm(words: &[usize]) -> Vec<VmFrame> {
    let mut out = Vec::new();
    let mut ruby_frames = 0;
    let mut rest = words;
    while let Some((head, tail)) = rest.split_at_checked(FRAME_WORDS) {
        let num = |i: usize| head.get(i).copied().and_then(unfix);
        let word = |i: usize| head.get(i).copied().unwrap_or(FALSE);
        let (Some(pos), Some(cfp), Some(ep), Some(nlevels)) = (num(1), num(4), num(5), num(6))
        else {
            break;
        };
        if nlevels > MAX_LEVELS {
            break;
        }
        let cfunc = word(0) == FALSE;
        let mut levels = Vec::with_capacity(nlevels);
        rest = tail;
        for _ in 0..nlevels {
            let Some(level) = rest
                .split_first()
                .and_then(|(n, tail)| tail.split_at_checked(unfix(*n)?))
            else {
                return out;
            };
            levels.push(level.0.to_vec());
            rest = level.1;
        }
        out.push(VmFrame {
            index: ruby_frames,
            cfunc,
            iseq: word(0),
            pos,
            self_value: word(2),
            method_entry: word(3),
            cfp,
            ep,
            levels,
        });
        if !cfunc {
            ruby_frames += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIL: usize = 0x08;

    fn vm_record(cap: usize) -> Option<Vec<usize>> {
        let mut out = Vec::with_capacity(cap);
        let mut e = Encoder::new(&mut out, Source::Vm)?;
        let at = e.ruby_frame(0x1000, 5, 0x2000, 0x7f00, 0x7e00)?;
        e.level(2, |i| 0x3000 + i * 8)?;
        e.level(0, |_| unreachable!())?;
        e.end_frame(at, 0x4000, 2);
        e.c_frame(0x2008, 0x4100, 0x7f40, 0x7e40)?;
        let at = e.ruby_frame(0x1100, 0, 0x2010, 0x7f80, 0x7e80)?;
        e.level(1, |_| 0x15)?;
        e.end_frame(at, 0, 1);
        drop(e);
        Some(out)
    }

    #[test]
    fn vm_frames_round_trip() {
        let words = vm_record(64).unwrap();
        assert_eq!(
            words.len(),
            HEADER + 3 * FRAME_WORDS + (1 + 2) + 1 + (1 + 1)
        );
        let Some(Record::Vm(frames)) = decode(&words) else {
            panic!("not a VM record");
        };
        assert_eq!(frames.len(), 3);
        let f = &frames[0];
        assert_eq!((f.index, f.cfunc, f.iseq, f.pos), (0, false, 0x1000, 5));
        assert_eq!((f.self_value, f.method_entry), (0x2000, 0x4000));
        assert_eq!((f.cfp, f.ep), (0x7f00, 0x7e00));
        assert_eq!(f.levels, vec![vec![0x3000, 0x3008], vec![]]);
        let c = &frames[1];
        assert_eq!(
            (c.index, c.cfunc, c.iseq, c.method_entry),
            (1, true, FALSE, 0x4100)
        );
        assert!(c.levels.is_empty());
        let g = &frames[2];
        // A C frame shares the index of the Ruby frame below it; no method entry is false.
        assert_eq!((g.index, g.cfunc, g.method_entry), (1, false, FALSE));
        assert_eq!(g.levels, vec![vec![0x15]]);
    }

    #[test]
    fn every_number_is_a_fixnum_so_marking_skips_it() {
        let words = vm_record(64).unwrap();
        let objects: Vec<usize> = words.iter().copied().filter(|w| w & 1 == 0).collect();
        assert_eq!(
            objects,
            [
                0x1000, 0x2000, 0x4000, 0x3000, 0x3008, FALSE, 0x2008, 0x4100, 0x1100, 0x2010,
                FALSE
            ]
        );
    }

    #[test]
    fn the_encoder_never_grows_its_vector() {
        for cap in 0..40 {
            let got = vm_record(cap);
            assert_eq!(got.is_some(), cap >= 29, "capacity {cap}");
        }
        let mut out = Vec::with_capacity(HEADER + FRAME_WORDS + 3);
        let mut e = Encoder::new(&mut out, Source::Vm).unwrap();
        e.ruby_frame(1, 2, 3, 4, 6).unwrap();
        assert!(
            e.level(3, |i| i).is_none(),
            "four words do not fit in three"
        );
        assert!(e.level(2, |i| i).is_some());
        assert!(e.level(MAX_LOCALS + 1, |i| i).is_none());
    }

    #[test]
    fn a_cut_or_malformed_record_keeps_the_frames_before() {
        let words = vm_record(64).unwrap();
        let first_frame = HEADER + FRAME_WORDS + 3 + 1;
        for cut in first_frame..words.len() {
            let Some(Record::Vm(frames)) = decode(&words[..cut]) else {
                panic!("header lost at {cut}");
            };
            assert!(!frames.is_empty() && frames.len() < 3, "cut at {cut}");
        }
        // A level count past the end, and a count that is not a Fixnum.
        let mut bad = words.clone();
        bad[HEADER + FRAME_WORDS] = fix(1000);
        assert_eq!(decode(&bad), Some(Record::Vm(vec![])));
        bad[HEADER + FRAME_WORDS] = 0x40;
        assert_eq!(decode(&bad), Some(Record::Vm(vec![])));
        let mut many = words.clone();
        many[HEADER + 6] = fix(MAX_LEVELS + 1);
        assert_eq!(decode(&many), Some(Record::Vm(vec![])));
        assert_eq!(decode(&[fix(1)]), None);
        assert_eq!(decode(&[fix(3), fix(0)]), None);
        assert_eq!(decode(&[0x1000, fix(0)]), None);
    }

    #[test]
    fn inspector_frames_round_trip_with_skipped() {
        let frames = vec![
            InspectorFrame {
                depth: 0,
                location: 0x100,
                binding: 0x108,
                self_value: 0x110,
                klass: 0x118,
                iseq: 0x120,
                method_entry: 0x128,
            },
            InspectorFrame {
                depth: 3,
                location: 0x200,
                binding: 0x208,
                self_value: 0x14,
                klass: NIL,
                iseq: NIL,
                method_entry: NIL,
            },
        ];
        let mut out = Vec::with_capacity(HEADER + 2 * FRAME_WORDS);
        let mut e = Encoder::new(&mut out, Source::Inspector).unwrap();
        for f in &frames {
            e.inspector_frame(f).unwrap();
        }
        assert!(e.inspector_frame(&frames[0]).is_none(), "full");
        e.set_skipped(4);
        assert_eq!(e.len(), HEADER + 2 * FRAME_WORDS);
        // The vector's length is set when the encoder is dropped.
        drop(e);
        assert_eq!(
            decode(&out),
            Some(Record::Inspector {
                frames: frames.clone(),
                skipped: 4
            })
        );
        assert_eq!(
            decode(&out[..out.len() - 1]),
            Some(Record::Inspector {
                frames: frames[..1].to_vec(),
                skipped: 4
            })
        );
    }

    #[test]
    fn fixnums() {
        assert_eq!(fix(0), 1);
        assert_eq!(fix(21), 43);
        assert_eq!(unfix(43), Some(21));
        assert_eq!(unfix(42), None);
        assert_eq!(unfix(usize::MAX), None, "a negative Fixnum is no count");
    }
}
