//! Frames read out of a copied VM stack, and the frame walk that writes VM-frame records.
//!
//! At raise the agent copies the raising thread's value stack and control frames as two
//! blocks (a stack-copy record, `raise_record`): a few instructions per frame, where reading
//! each frame's fields costs about 150, and most raises are rescued and never reported. When
//! one is reported, [`expand`] runs the same frame walk the live paths use ([`encode_frames`])
//! over [`Copied`], memory that answers stack addresses from the copy and everything else
//! (iseqs, method entries, heap environments, all kept alive by the record) from the process.

use crate::frames::{self, RawFrame, StackFrame, VM_ENV_FLAG_LOCAL};
use crate::layout::Layout;
use crate::memory::{Memory, ReadError, WORD};
use crate::raise_record::{self as record, Encoder, Scan, Source, StackCopy};

/// `VM_ENV_FLAG_ESCAPED` (3.1 to 4.0): the environment was moved to the heap.
const VM_ENV_FLAG_ESCAPED: usize = 0x0004;

/// A copied stack in front of the process's memory: addresses inside the stack read from the
/// copy (and fail where nothing was copied: that memory has changed since); the rest from
/// `live`.
pub struct Copied<'a, M> {
    base: usize,
    end: usize,
    values: &'a [usize],
    first_cfp: usize,
    frames: &'a [usize],
    live: &'a M,
}

impl<'a, M: Memory> Copied<'a, M> {
    pub fn new(copy: &StackCopy<'a>, live: &'a M) -> Copied<'a, M> {
        let s = copy.shape;
        Copied {
            base: s.base,
            end: s.base.saturating_add(s.stack_words.saturating_mul(WORD)),
            values: copy.values,
            first_cfp: s.first_cfp,
            frames: copy.frames,
            live,
        }
    }
}

fn word_in(block: &[usize], start: usize, addr: usize) -> Option<usize> {
    let off = addr.checked_sub(start)?;
    if !off.is_multiple_of(WORD) {
        return None;
    }
    block.get(off / WORD).copied()
}

impl<M: Memory> Memory for Copied<'_, M> {
    fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
        if addr < self.base || addr >= self.end {
            return self.live.read_word(addr);
        }
        let copied = if addr >= self.first_cfp {
            word_in(self.frames, self.first_cfp, addr)
        } else {
            word_in(self.values, self.base, addr)
        };
        copied.ok_or(ReadError::Unreadable(addr))
    }
}

/// Writes the frames of the stack whose value stack starts at `stack` (`size` words in all,
/// control frames from `cfp` to the end) into `e`, as VM frames: for each Ruby frame its iseq,
/// instruction position, `self`, method entry and the locals of its environments (its own and,
/// for blocks, the enclosing ones); for each C function its `self` and method entry. At most
/// [`record::MAX_FRAMES`] Ruby frames, innermost first. None when the stack does not fit the
/// encoder or reads wrong (the caller grows the record or gives up).
pub fn encode_frames<M: Memory>(
    mem: &M,
    l: &Layout,
    stack: usize,
    size: usize,
    cfp: usize,
    e: &mut Encoder,
) -> Option<()> {
    let mut ruby_frames = 0usize;
    let mut written = Some(());
    frames::walk_stack(mem, l, stack, size, cfp, &mut |f: &StackFrame| {
        written = match *f {
            StackFrame::Ruby(ref raw) => {
                ruby_frames += 1;
                ruby_frame(mem, l, raw, e)
            }
            // A C function: no iseq, its method entry, no locals. Kept for better backtraces,
            // which show C frames where Ruby's backtrace does (the walk leaves out C blocks,
            // IFUNC frames such as rbscope's thread wrapper, as Ruby's backtraces do).
            StackFrame::C {
                cfp,
                ep,
                self_value,
            } => {
                let me = frames::method_entry_at(mem, ep, true).unwrap_or(0);
                e.c_frame(self_value, me, cfp, ep)
            }
        };
        written.is_some() && ruby_frames < record::MAX_FRAMES
    })
    .ok()?;
    written
}

/// One Ruby frame into `e`: its iseq, instruction position, `self`, method entry and the
/// locals of each environment level, innermost first.
fn ruby_frame<M: Memory>(mem: &M, l: &Layout, f: &RawFrame, e: &mut Encoder) -> Option<()> {
    let rd = |addr: usize| mem.read_word(addr).ok();
    let body = rd(f.iseq + l.iseq_body)?;
    let enc = rd(body + l.body_iseq_encoded)?;
    let pos = (f.pc.saturating_sub(enc) / WORD).saturating_sub(1);
    let at = e.ruby_frame(f.iseq, pos, f.self_value, f.cfp, f.ep)?;
    let (mut ep, mut body) = (f.ep, body);
    let mut levels = 0;
    let mut me = 0usize;
    for _ in 0..record::MAX_LEVELS {
        let n = mem.read_u32(body + l.body_local_table_size).ok()? as usize;
        let first = ep.wrapping_sub((n + 2) * WORD);
        e.try_level(n, |i| rd(first + i * WORD))?;
        levels += 1;
        let local = rd(ep)? & VM_ENV_FLAG_LOCAL != 0;
        if me == 0 {
            me = frames::method_entry_at(mem, ep, local).unwrap_or(0);
        }
        if local {
            break;
        }
        // A block environment links to its parent (low bits are tags), and a block iseq to
        // its parent iseq.
        let (parent, prev) = (rd(body + l.body_parent_iseq)?, rd(ep - WORD)? & !0x03);
        if parent == 0 || prev == 0 {
            break;
        }
        body = rd(parent + l.iseq_body)?;
        ep = prev;
    }
    e.end_frame(at, me, levels);
    Some(())
}

/// [`encode_frames`] into `words` (cleared first) as a whole VM-frame record, growing it as
/// needed up to [`record::MAX_WORDS`]. False (and `words` empty) when the stack cannot be read
/// or does not fit.
pub fn encode_frames_into<M: Memory>(
    mem: &M,
    l: &Layout,
    stack: usize,
    size: usize,
    cfp: usize,
    words: &mut Vec<usize>,
) -> bool {
    let mut cap = words.capacity().max(record::FIRST_WORDS);
    loop {
        words.clear();
        words.reserve(cap);
        let cap_now = words.capacity();
        let copied = Encoder::new(words, Source::Vm)
            .and_then(|mut e| encode_frames(mem, l, stack, size, cfp, &mut e));
        if copied.is_some() {
            return true;
        }
        if cap_now >= record::MAX_WORDS {
            words.clear();
            return false;
        }
        cap = (cap_now * 4).min(record::MAX_WORDS);
    }
}

/// The environment objects a stack copy must keep alive besides what it copied: those of
/// block frames whose parent environment is not on the copied stack. Such a parent is an
/// escaped environment on the heap (its frame returned, or the block is a proc's), which
/// nothing on the stack holds once the block's frame is gone. Every other environment a frame
/// reads is on the copy, or escaped from a frame of the copy, whose stack slot then holds its
/// object (the VM's own GC relies on that too).
///
/// Reads `live` only at such parents, which must still be alive: call it before any GC since
/// the raise (at the first GC's mark, or when the copy is read). `Unreadable` when a parent is
/// neither on the stack nor an escaped environment.
pub fn scan_parents<M: Memory>(copy: &StackCopy, live: &M) -> (Vec<usize>, Scan) {
    let s = copy.shape;
    let stack_end = s.base.saturating_add(s.stack_words.saturating_mul(WORD));
    let value = |addr: usize| word_in(copy.values, s.base, addr);
    let mut envs = Vec::new();
    for cfp in copy.frames.chunks_exact(s.cfp_words) {
        let Some(&ep) = cfp.get(s.ep_at) else {
            continue;
        };
        // An environment off the copied stack escaped from its frame: its object, in the
        // frame's old stack slot, keeps it and its parents alive.
        let Some(flags) = value(ep) else {
            continue;
        };
        if flags & VM_ENV_FLAG_LOCAL != 0 {
            continue;
        }
        let Some(prev) = ep.checked_sub(WORD).and_then(value).map(|v| v & !0x03) else {
            continue;
        };
        if prev == 0 || (s.base..stack_end).contains(&prev) {
            continue;
        }
        match live.read_word(prev) {
            Ok(f) if f & VM_ENV_FLAG_ESCAPED != 0 => match live.read_word(prev + WORD) {
                Ok(env) => envs.push(env),
                Err(_) => return (Vec::new(), Scan::Unreadable),
            },
            _ => return (Vec::new(), Scan::Unreadable),
        }
    }
    (envs, Scan::Done)
}

/// At a GC's mark: finds a pending stack copy's parent environments ([`scan_parents`]) and
/// appends them, so that this and every later mark keeps them. Anything else is left as is.
pub fn keep_parents<M: Memory>(words: &mut Vec<usize>, live: &M) {
    let Some(copy) = record::stack_copy(words) else {
        return;
    };
    if copy.scan != Scan::Pending {
        return;
    }
    let (envs, scan) = scan_parents(&copy, live);
    record::finish_scan(words, &envs, scan);
}

/// The VM-frame record of a stack-copy record, its frames read from the copy and, for what
/// lies outside the stack, from `live`. None when `words` is no whole stack copy or its
/// frames cannot be read.
pub fn expand<M: Memory>(words: &[usize], l: &Layout, live: &M) -> Option<Vec<usize>> {
    let copy = record::stack_copy(words)?;
    let readable = match copy.scan {
        Scan::Done => true,
        Scan::Unreadable => false,
        // No GC since the raise: everything the copy points to is alive; only check.
        Scan::Pending => scan_parents(&copy, live).1 == Scan::Done,
    };
    if !readable {
        return None;
    }
    let mem = Copied::new(&copy, live);
    let s = copy.shape;
    let mut out = Vec::new();
    encode_frames_into(&mem, l, s.base, s.stack_words, s.first_cfp, &mut out).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;
    use crate::raise_record::{decode, fix, Record, StackShape, HEADER, STACK_FIELDS};

    fn l() -> Layout {
        *Layout::for_version("3.1.2").unwrap()
    }

    const BASE: usize = 0x10_0000;
    const WORDS: usize = 64;
    const ISEQ: usize = 0x5000;
    const BODY: usize = 0x6000;
    const ENC: usize = 0x7000;
    const ME: usize = 0x8000;
    const SELF: usize = 0x9000;

    /// A process with one Ruby method frame (2 locals) and one C frame on top, laid out as the
    /// VM does: values from BASE, control frames at the stack's end.
    fn process() -> (FakeMemory, usize, usize) {
        let l = l();
        let mut m = FakeMemory::default();
        let w = |m: &mut FakeMemory, addr: usize, v: usize| {
            m.0.insert(addr, v);
        };
        // Value stack: [local a, local b, me_cref, specval, flags] for the method frame, then
        // [me_cref, specval, flags] for the C frame.
        let v = |i: usize| BASE + i * WORD;
        w(&mut m, v(0), 0x11); // a = 8 (Fixnum)
        w(&mut m, v(1), 0xa000); // b: an object
        w(&mut m, v(2), ME);
        w(&mut m, v(3), 0);
        w(&mut m, v(4), VM_ENV_FLAG_LOCAL);
        w(&mut m, v(5), ME);
        w(&mut m, v(6), 0);
        w(
            &mut m,
            v(7),
            VM_ENV_FLAG_LOCAL | frames::VM_FRAME_FLAG_CFRAME,
        );
        let sp = v(8);
        let end = BASE + WORDS * WORD;
        // The last control frame is the thread's dummy bottom frame, which walks leave out.
        let method_cfp = end - 2 * l.cfp_size;
        let c_cfp = method_cfp - l.cfp_size;
        for (cfp, iseq, pc, ep) in [
            (method_cfp, ISEQ, ENC + 3 * WORD, v(4)),
            (c_cfp, 0, 0, v(7)),
        ] {
            w(&mut m, cfp + l.cfp_iseq, iseq);
            w(&mut m, cfp + l.cfp_pc, pc);
            w(&mut m, cfp + l.cfp_ep, ep);
            w(&mut m, cfp + l.cfp_self, SELF);
            w(&mut m, cfp + l.cfp_sp, sp);
        }
        // The heap: the iseq, its body, the method entry (an imemo_ment).
        w(&mut m, ISEQ + l.iseq_body, BODY);
        w(&mut m, BODY + l.body_iseq_encoded, ENC);
        let table = BODY + l.body_local_table_size;
        let aligned = table & !7;
        let shift = (table - aligned) * 8;
        w(&mut m, aligned, 2 << shift);
        w(&mut m, BODY + l.body_parent_iseq, 0);
        w(&mut m, ME, 0x1a | (6 << 12));
        (m, c_cfp, sp)
    }

    fn copy_of(m: &FakeMemory, cfp: usize, sp: usize) -> Vec<usize> {
        let l = l();
        let read = |a: usize| m.0.get(&a).copied().unwrap_or(0);
        let values: Vec<usize> = (BASE..sp).step_by(WORD).map(read).collect();
        let frames: Vec<usize> = (cfp..BASE + WORDS * WORD).step_by(WORD).map(read).collect();
        let mut words = Vec::with_capacity(256);
        let mut e = Encoder::new(&mut words, Source::Stack).unwrap();
        e.stack_head(&StackShape {
            base: BASE,
            stack_words: WORDS,
            first_cfp: cfp,
            cfp_words: l.cfp_size / WORD,
            self_at: l.cfp_self / WORD,
            iseq_at: l.cfp_iseq / WORD,
            ep_at: l.cfp_ep / WORD,
        })
        .unwrap();
        // SAFETY: both vectors are live for their lengths.
        unsafe {
            e.copy_block(values.as_ptr(), values.len()).unwrap();
            e.copy_block(frames.as_ptr(), frames.len()).unwrap();
        }
        e.set_stack_counts(values.len(), frames.len());
        drop(e);
        words
    }

    #[test]
    fn a_stack_copy_expands_to_the_frames_the_live_walk_reads() {
        let l = l();
        let (m, cfp, sp) = process();
        let mut live = Vec::new();
        assert!(encode_frames_into(&m, &l, BASE, WORDS, cfp, &mut live));
        let words = copy_of(&m, cfp, sp);
        // The stack changes after the copy (the frames return): the copy still reads whole.
        let mut later = FakeMemory::default();
        for (a, v) in &m.0 {
            if !(BASE..BASE + WORDS * WORD).contains(a) {
                later.0.insert(*a, *v);
            }
        }
        let expanded = expand(&words, &l, &later).expect("expands");
        assert_eq!(expanded, live);
        let Some(Record::Vm(frames)) = decode(&expanded) else {
            panic!("not VM frames");
        };
        assert_eq!(frames.len(), 2);
        assert!(frames[0].cfunc);
        let f = &frames[1];
        assert_eq!(
            (f.iseq, f.pos, f.self_value, f.method_entry),
            (ISEQ, 2, SELF, ME)
        );
        assert_eq!(f.levels, vec![vec![0x11, 0xa000]]);
    }

    #[test]
    fn marking_a_stack_copy_skips_the_raw_pointers_of_its_control_frames() {
        let l = l();
        let (m, cfp, sp) = process();
        let mut words = copy_of(&m, cfp, sp);
        assert!(record::finish_scan(&mut words, &[0xe000], Scan::Done));
        let mut marked = Vec::new();
        record::for_each_object(&words, |w| marked.push(w));
        // The values, then self and iseq of each control frame (C, Ruby, the dummy at the
        // bottom), then the env.
        let values = (sp - BASE) / WORD;
        assert_eq!(marked.len(), values + 3 * 2 + 1);
        assert_eq!(marked[values..], [SELF, 0, SELF, ISEQ, 0, 0, 0xe000]);
        let method_cfp = cfp + l.cfp_size;
        let pointers = [l.cfp_pc, l.cfp_ep, l.cfp_sp].map(|o| m.0[&(method_cfp + o)]);
        assert!(pointers.iter().all(|p| !marked[values..].contains(p)));
        // A cut record is never marked in part.
        let mut cut = words.clone();
        cut.truncate(words.len() - 1);
        let mut none = 0;
        record::for_each_object(&cut, |_| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn reads_where_nothing_was_copied_fail_instead_of_reading_the_live_stack() {
        let l = l();
        let (m, cfp, sp) = process();
        let words = copy_of(&m, cfp, sp);
        let copy = record::stack_copy(&words).unwrap();
        let c = Copied::new(&copy, &m);
        // Between the value stack's top and the first control frame: not copied.
        assert!(c.read_word(sp).is_err());
        assert!(c.read_word(cfp - WORD).is_err());
        assert!(c.read_word(BASE + 1).is_err(), "misaligned");
        assert_eq!(c.read_word(BASE).unwrap(), 0x11);
        assert_eq!(
            c.read_word(ME).unwrap(),
            m.0[&ME],
            "outside the stack: live"
        );
        // A header that does not add up is no stack copy.
        let mut bad = words.clone();
        bad[HEADER + 6] = fix(10_000);
        assert!(record::stack_copy(&bad).is_none());
        bad = words.clone();
        bad[HEADER + 3] = fix(0);
        assert!(record::stack_copy(&bad).is_none());
        assert!(expand(&words[..HEADER + STACK_FIELDS - 1], &l, &m).is_none());
        assert_eq!(
            decode(&words),
            None,
            "a stack copy is expanded, not decoded"
        );
    }

    /// Turns the method frame of `process` into a block frame whose parent environment is at
    /// `parent` (off the stack), with `parent_flags` there and an environment object next.
    fn block_with_parent(m: &mut FakeMemory, parent: usize, parent_flags: usize) {
        let ep = BASE + 4 * WORD;
        if !(BASE..BASE + WORDS * WORD).contains(&parent) {
            m.0.insert(parent, parent_flags);
            m.0.insert(parent + WORD, 0xe100); // the environment object, for an escaped one
            m.0.insert(parent - 2 * WORD, ME);
            m.0.insert(parent - WORD, 0);
        }
        m.0.insert(ep, 0); // flags: not LOCAL
        m.0.insert(ep - WORD, parent | 0x01); // specval: the guarded parent ep
    }

    #[test]
    fn a_block_whose_parent_escaped_keeps_the_parents_environment() {
        let l = l();
        let (mut m, cfp, sp) = process();
        block_with_parent(&mut m, 0x20_0000, VM_ENV_FLAG_LOCAL | VM_ENV_FLAG_ESCAPED);
        let mut words = copy_of(&m, cfp, sp);
        let copy = record::stack_copy(&words).unwrap();
        assert_eq!(copy.scan, Scan::Pending);
        assert_eq!(scan_parents(&copy, &m), (vec![0xe100], Scan::Done));
        keep_parents(&mut words, &m);
        let copy = record::stack_copy(&words).unwrap();
        assert_eq!((copy.envs, copy.scan), (&[0xe100][..], Scan::Done));
        let mut marked = Vec::new();
        record::for_each_object(&words, |w| marked.push(w));
        assert_eq!(marked.last(), Some(&0xe100));
        // Kept once: a second mark changes nothing.
        let before = words.clone();
        keep_parents(&mut words, &m);
        assert_eq!(words, before);
        assert!(expand(&words, &l, &m).is_some());
    }

    #[test]
    fn a_parent_neither_on_the_stack_nor_escaped_makes_the_copy_unreadable() {
        let l = l();
        let (mut m, cfp, sp) = process();
        block_with_parent(&mut m, 0x20_0000, VM_ENV_FLAG_LOCAL);
        let mut words = copy_of(&m, cfp, sp);
        assert!(
            expand(&words, &l, &m).is_none(),
            "checked before reading, too"
        );
        keep_parents(&mut words, &m);
        assert_eq!(record::stack_copy(&words).unwrap().scan, Scan::Unreadable);
        assert!(expand(&words, &l, &m).is_none());
        // A parent on this stack (a frame below) needs nothing.
        let (mut m, cfp, sp) = process();
        block_with_parent(&mut m, BASE + 2 * WORD, 0);
        let words = copy_of(&m, cfp, sp);
        let copy = record::stack_copy(&words).unwrap();
        assert_eq!(scan_parents(&copy, &m), (vec![], Scan::Done));
    }
}
