//! Walking an execution context's control frames.
//!
//! A thread's VM stack holds its control frames at the top end, growing down: `ec->cfp` is the
//! innermost frame and frames continue upward until `vm_stack + vm_stack_size`. A frame runs
//! Ruby code when its environment's flags (`ep[0]`) lack `VM_FRAME_FLAG_CFRAME` and it has an
//! iseq and a pc. Its locals sit just below `ep`: local `i` of `n` is `ep[i - n - 2]`. A block's
//! environment links to its parent's through `ep[-1]` (low two bits are tags) until an
//! environment flagged `VM_ENV_FLAG_LOCAL`; the parent's local names are those of the block
//! iseq's `parent_iseq`. Like Ruby's own backtraces, the walk leaves out the bottom-most
//! control frame, which the VM pushes to start the thread (or the program).

use crate::layout::Layout;
use crate::memory::{Memory, ReadError};

const WORD: usize = std::mem::size_of::<usize>();
/// `VM_FRAME_FLAG_CFRAME` (3.1 to 4.0).
pub const VM_FRAME_FLAG_CFRAME: usize = 0x0080;
/// `VM_FRAME_MAGIC_MASK` and `VM_FRAME_MAGIC_IFUNC` (3.1 to 4.0): a block made of a C
/// function (`rb_proc_new`, `rb_block_call`), which Ruby's backtraces leave out.
const VM_FRAME_MAGIC_MASK: usize = 0x7fff_0001;
const VM_FRAME_MAGIC_IFUNC: usize = 0x6666_0001;

/// Whether a frame whose environment flags (`ep[0]`) are `flags` is a C block (IFUNC), which
/// backtraces leave out.
#[inline]
pub fn is_ifunc(flags: usize) -> bool {
    flags & VM_FRAME_MAGIC_MASK == VM_FRAME_MAGIC_IFUNC
}
/// `VM_ENV_FLAG_LOCAL` (3.1 to 4.0).
pub const VM_ENV_FLAG_LOCAL: usize = 0x0002;
/// No Ruby method has more locals than this; a larger count means a bad read.
const MAX_LOCALS: usize = 65_536;
/// Environment chains (nested blocks) deeper than this are cut.
const MAX_ENV_LEVELS: usize = 64;

/// One Ruby frame, as raw addresses and VALUEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame {
    pub cfp: usize,
    pub iseq: usize,
    pub pc: usize,
    pub self_value: usize,
    pub ep: usize,
}

/// Called for each Ruby frame, innermost first; return false to stop.
pub trait FrameVisitor {
    fn frame(&mut self, frame: &RawFrame) -> bool;
}

impl<F: FnMut(&RawFrame) -> bool> FrameVisitor for F {
    fn frame(&mut self, frame: &RawFrame) -> bool {
        self(frame)
    }
}

/// Any control frame: Ruby code, or a C function (which has no iseq; its method entry sits in
/// its environment's `me_cref` slot, see [`method_entry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackFrame {
    Ruby(RawFrame),
    C {
        cfp: usize,
        ep: usize,
        self_value: usize,
    },
}

/// Walks the Ruby frames of the execution context at `ec`, innermost first, visiting at most
/// `max_frames`. Returns how many Ruby frames were visited.
pub fn walk<M: Memory, V: FrameVisitor>(
    mem: &M,
    l: &Layout,
    ec: usize,
    max_frames: usize,
    visitor: &mut V,
) -> Result<usize, ReadError> {
    let mut seen = 0;
    walk_all(mem, l, ec, &mut |f: &StackFrame| match f {
        StackFrame::Ruby(raw) if seen < max_frames => {
            seen += 1;
            visitor.frame(raw) && seen < max_frames
        }
        StackFrame::Ruby(_) => false,
        StackFrame::C { .. } => true,
    })?;
    Ok(seen)
}

/// Walks every frame (Ruby and C) of the execution context at `ec`, innermost first, until
/// `visit` returns false. Frames that run neither (the VM's dummy frames) are skipped, and so
/// are IFUNC frames (C blocks), as in Ruby's own backtraces: rbscope's thread wrapper is one. At most
/// `MAX_STACK_FRAMES`: a longer walk means a bad read.
pub fn walk_all<M: Memory>(
    mem: &M,
    l: &Layout,
    ec: usize,
    visit: &mut dyn FnMut(&StackFrame) -> bool,
) -> Result<(), ReadError> {
    let stack = mem.read_word(ec + l.ec_vm_stack)?;
    let size = mem.read_word(ec + l.ec_vm_stack_size)?;
    let cfp = mem.read_word(ec + l.ec_cfp)?;
    walk_stack(mem, l, stack, size, cfp, visit)
}

/// [`walk_all`] of the stack whose value stack starts at `stack` (`size` words in all, control
/// frames from `cfp` to the end): a thread's, or a copy of one (`stack_copy`).
pub fn walk_stack<M: Memory>(
    mem: &M,
    l: &Layout,
    stack: usize,
    size: usize,
    mut cfp: usize,
    visit: &mut dyn FnMut(&StackFrame) -> bool,
) -> Result<(), ReadError> {
    let end = stack.saturating_add(size.saturating_mul(WORD));
    if stack == 0 || cfp < stack || cfp > end {
        return Err(ReadError::Unreadable(cfp));
    }
    // Ruby's backtraces start one frame above the end of the stack (vm_backtrace.c: the
    // start is two "next" steps from the end marker, which is one past the last frame).
    let end = end.saturating_sub(l.cfp_size);
    let mut steps = 0;
    while cfp + l.cfp_size <= end && steps < MAX_STACK_FRAMES {
        steps += 1;
        let ep = mem.read_word(cfp + l.cfp_ep)?;
        let iseq = mem.read_word(cfp + l.cfp_iseq)?;
        let pc = mem.read_word(cfp + l.cfp_pc)?;
        if ep != 0 {
            let flags = mem.read_word(ep)?;
            let self_value = mem.read_word(cfp + l.cfp_self)?;
            let frame = if is_ifunc(flags) {
                None
            } else if flags & VM_FRAME_FLAG_CFRAME != 0 {
                Some(StackFrame::C {
                    cfp,
                    ep,
                    self_value,
                })
            } else if iseq != 0 && pc != 0 {
                Some(StackFrame::Ruby(RawFrame {
                    cfp,
                    iseq,
                    pc,
                    self_value,
                    ep,
                }))
            } else {
                None
            };
            if let Some(frame) = frame {
                if !visit(&frame) {
                    break;
                }
            }
        }
        cfp += l.cfp_size;
    }
    Ok(())
}

/// `VM_ENV_FLAG_ESCAPED` (3.1 to 4.0): the environment was moved to the heap.
const VM_ENV_FLAG_ESCAPED: usize = 0x0004;

/// Whether `inner` sits on the VM stack where a frame called while `outer` ran must sit.
///
/// Every call pushes onto the value stack above what its caller had pushed: a method's
/// receiver, then its locals, then its environment (`me_cref`, `specval`, flags at `ep`); a
/// block or a class body, its locals and environment; a C function, its environment after its
/// receiver and arguments. So the lowest slot an inner frame owns lies above the outer frame's
/// `ep`. A frame popped a moment ago keeps its bytes; read together with a live frame that
/// replaced its caller (a stack read while the thread runs), it usually owns a slot at or below
/// that caller's `ep`, which this check catches. Environments moved to the heap (escaped) are
/// not compared: their place says nothing.
pub fn nests_in<M: Memory>(
    mem: &M,
    l: &Layout,
    inner: &StackFrame,
    outer: &StackFrame,
) -> Result<bool, ReadError> {
    let (inner_ep, outer_ep) = (inner.ep(), outer.ep());
    let escaped = |ep: usize| -> Result<bool, ReadError> {
        Ok(mem.read_word(ep)? & VM_ENV_FLAG_ESCAPED != 0)
    };
    if escaped(inner_ep)? || escaped(outer_ep)? {
        return Ok(true);
    }
    // Slots of the inner frame's region below its `ep`: `me_cref`, `specval`, and for Ruby
    // code its locals, and a method's receiver below them.
    let below = match inner {
        StackFrame::C { .. } => 2,
        StackFrame::Ruby(r) => {
            let receiver = crate::iseq::kind_at(mem, l, r.iseq)? == crate::iseq::IseqType::Method;
            2 + local_count(mem, l, r.iseq)? + usize::from(receiver)
        }
    };
    Ok(inner_ep
        .checked_sub(below * WORD)
        .is_some_and(|lowest| lowest > outer_ep))
}

impl StackFrame {
    /// The frame's control frame address.
    pub fn cfp(&self) -> usize {
        match *self {
            StackFrame::Ruby(r) => r.cfp,
            StackFrame::C { cfp, .. } => cfp,
        }
    }

    /// The frame's environment pointer.
    pub fn ep(&self) -> usize {
        match *self {
            StackFrame::Ruby(r) => r.ep,
            StackFrame::C { ep, .. } => ep,
        }
    }
}

/// More control frames than a VM stack can hold (1 MiB stacks of 56-byte frames).
const MAX_STACK_FRAMES: usize = 20_000;

fn body<M: Memory>(mem: &M, l: &Layout, iseq: usize) -> Result<usize, ReadError> {
    mem.read_word(iseq + l.iseq_body)
}

/// The instruction index a frame's pc points into, as `rb_iseq_line_no` wants it (the pc
/// points at the *next* instruction, hence the step back).
pub fn pc_position<M: Memory>(mem: &M, l: &Layout, f: &RawFrame) -> Result<usize, ReadError> {
    let encoded = mem.read_word(body(mem, l, f.iseq)? + l.body_iseq_encoded)?;
    let pos = f.pc.saturating_sub(encoded) / WORD;
    Ok(pos.saturating_sub(1))
}

/// Number of locals in an iseq's local table.
pub fn local_count<M: Memory>(mem: &M, l: &Layout, iseq: usize) -> Result<usize, ReadError> {
    let n = mem.read_u32(body(mem, l, iseq)? + l.body_local_table_size)? as usize;
    if n > MAX_LOCALS {
        return Err(ReadError::Unreadable(iseq));
    }
    Ok(n)
}

/// The local variable IDs of an iseq, in table order.
pub fn local_ids<M: Memory>(mem: &M, l: &Layout, iseq: usize) -> Result<Vec<usize>, ReadError> {
    let n = local_count(mem, l, iseq)?;
    let table = mem.read_word(body(mem, l, iseq)? + l.body_local_table)?;
    (0..n).map(|i| mem.read_word(table + i * WORD)).collect()
}

/// One level of a frame's environment chain: the iseq whose local table names it, and its ep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvLevel {
    pub iseq: usize,
    pub ep: usize,
    pub locals: usize,
}

/// The environment chain of a frame: its own environment, then (for blocks) each enclosing
/// one up to the method's or the top level's.
pub fn env_chain<M: Memory>(
    mem: &M,
    l: &Layout,
    f: &RawFrame,
    out: &mut Vec<EnvLevel>,
) -> Result<(), ReadError> {
    let (mut iseq, mut ep) = (f.iseq, f.ep);
    for _ in 0..MAX_ENV_LEVELS {
        out.push(EnvLevel {
            iseq,
            ep,
            locals: local_count(mem, l, iseq)?,
        });
        let flags = mem.read_word(ep)?;
        if flags & VM_ENV_FLAG_LOCAL != 0 {
            break;
        }
        let parent = mem.read_word(body(mem, l, iseq)? + l.body_parent_iseq)?;
        let prev_ep = mem.read_word(ep - WORD)? & !0x03;
        if parent == 0 || prev_ep == 0 {
            break;
        }
        iseq = parent;
        ep = prev_ep;
    }
    Ok(())
}

/// Local `i` of an environment with `n` locals.
pub fn local_value<M: Memory>(mem: &M, ep: usize, n: usize, i: usize) -> Result<usize, ReadError> {
    mem.read_word(ep - (n + 2 - i) * WORD)
}

/// The method entry running in a frame, as `rb_vm_frame_method_entry` finds it: the
/// `me_cref` slot (`ep[-2]`) of each environment up the chain, looking through an `svar`
/// at the local one. Returns 0 when the frame runs no method (top level, class body).
pub fn method_entry<M: Memory>(mem: &M, f: &RawFrame) -> Result<usize, ReadError> {
    Ok(method_entry_depth(mem, f)?.0)
}

/// Like [`method_entry`], also saying how many environments up the chain the entry was found:
/// the number of blocks between the frame and the method body. For a method's own blocks this
/// is their nesting depth; for a block run as a method (`define_method`) it is 0 in the
/// method's body, because the entry sits in the block's own environment.
pub fn method_entry_depth<M: Memory>(mem: &M, f: &RawFrame) -> Result<(usize, u32), ReadError> {
    let mut ep = f.ep;
    for depth in 0..MAX_ENV_LEVELS as u32 {
        let local = mem.read_word(ep)? & VM_ENV_FLAG_LOCAL != 0;
        let me = method_entry_at(mem, ep, local)?;
        if me != 0 || local {
            return Ok((me, depth));
        }
        ep = mem.read_word(ep - WORD)? & !0x03;
        if ep == 0 {
            break;
        }
    }
    Ok((0, 0))
}

/// The method entry held by one environment's `me_cref` slot, if any; `local` says whether the
/// environment is the method's own (where the slot may hold an `svar` wrapping it).
pub fn method_entry_at<M: Memory>(mem: &M, ep: usize, local: bool) -> Result<usize, ReadError> {
    check_method_entry(mem, mem.read_word(ep - 2 * WORD)?, local)
}

const T_IMEMO: usize = 0x1a;
const T_MASK: usize = 0x1f;
const FL_USHIFT: usize = 12;
const IMEMO_MENT: usize = 6;
const IMEMO_SVAR: usize = 2;

fn check_method_entry<M: Memory>(
    mem: &M,
    obj: usize,
    can_be_svar: bool,
) -> Result<usize, ReadError> {
    // Special constants (false, nil, fixnums...) have low tag bits or are 0.
    if obj == 0 || obj & 0x07 != 0 {
        return Ok(0);
    }
    let flags = mem.read_word(obj)?;
    if flags & T_MASK != T_IMEMO {
        return Ok(0);
    }
    match (flags >> FL_USHIFT) & 0x0f {
        IMEMO_MENT => Ok(obj),
        IMEMO_SVAR if can_be_svar => check_method_entry(mem, mem.read_word(obj + WORD)?, false),
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::memory::FakeMemory;

    fn l() -> Layout {
        *Layout::for_version("3.1.2").unwrap()
    }

    /// A stack with: a C frame, a block frame (1 local) whose parent method frame has 2 locals.
    fn fixture() -> (FakeMemory, usize) {
        let l = l();
        let mut m = FakeMemory::default();
        let ec = 0x1000;
        let stack = 0x10_000;
        let size = 0x100; // words
        let end = stack + size * WORD;
        // Three frames plus the bottom frame the walk leaves out.
        let cfp0 = end - 4 * l.cfp_size; // innermost
        m.0.insert(ec + l.ec_vm_stack, stack);
        m.0.insert(ec + l.ec_vm_stack_size, size);
        m.0.insert(ec + l.ec_cfp, cfp0);
        let (method_iseq, block_iseq) = (0x2000, 0x3000);
        let (method_body, block_body) = (0x2100, 0x3100);
        m.0.insert(method_iseq + l.iseq_body, method_body);
        m.0.insert(block_iseq + l.iseq_body, block_body);
        m.0.insert(method_body + l.body_local_table_size, 2);
        m.0.insert(block_body + l.body_local_table_size, 1);
        m.0.insert(block_body + l.body_parent_iseq, method_iseq);
        m.0.insert(method_body + l.body_iseq_encoded, 0x5000);
        // Environments: method env at 0x20_000 (locals a=11, b=12), block env at 0x21_000 (x=21).
        let (mep, bep) = (0x20_000, 0x21_000);
        m.0.insert(mep, 0x1111_0001 | VM_ENV_FLAG_LOCAL);
        m.0.insert(mep - WORD, 0);
        m.0.insert(mep - 2 * WORD, 0x7000); // me_cref: a method entry
        m.0.insert(0x7000, T_IMEMO | (IMEMO_MENT << FL_USHIFT));
        m.0.insert(mep - 4 * WORD, 11);
        m.0.insert(mep - 3 * WORD, 12);
        m.0.insert(bep, 0x2222_0001);
        m.0.insert(bep - WORD, mep | 0x1);
        m.0.insert(bep - 2 * WORD, 0x0); // blocks have no me here
        m.0.insert(bep - 3 * WORD, 21);
        // cfp0: C frame; cfp1: block; cfp2: method.
        let cfp1 = cfp0 + l.cfp_size;
        let cfp2 = cfp1 + l.cfp_size;
        let cep = 0x22_000;
        m.0.insert(cep, 0x5555_0001 | VM_FRAME_FLAG_CFRAME);
        for (cfp, iseq, pc, ep, slf) in [
            (cfp0, 0, 0, cep, 1),
            (cfp1, block_iseq, 0x6008, bep, 2),
            (cfp2, method_iseq, 0x5010, mep, 3),
        ] {
            m.0.insert(cfp + l.cfp_iseq, iseq);
            m.0.insert(cfp + l.cfp_pc, pc);
            m.0.insert(cfp + l.cfp_ep, ep);
            m.0.insert(cfp + l.cfp_self, slf);
        }
        (m, ec)
    }

    #[test]
    fn walks_ruby_frames_and_their_environments() {
        let (m, ec) = fixture();
        let l = l();
        let mut frames = Vec::new();
        let n = walk(&m, &l, ec, 100, &mut |f: &RawFrame| {
            frames.push(*f);
            true
        })
        .unwrap();
        assert_eq!(n, 2, "the C frame is skipped");
        assert_eq!(frames[0].self_value, 2);
        assert_eq!(frames[1].self_value, 3);
        assert_eq!(pc_position(&m, &l, &frames[1]).unwrap(), 1);

        let mut chain = Vec::new();
        env_chain(&m, &l, &frames[0], &mut chain).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            local_value(&m, chain[0].ep, chain[0].locals, 0).unwrap(),
            21
        );
        assert_eq!(
            local_value(&m, chain[1].ep, chain[1].locals, 0).unwrap(),
            11
        );
        assert_eq!(
            local_value(&m, chain[1].ep, chain[1].locals, 1).unwrap(),
            12
        );

        // The block finds its method's entry through the parent environment.
        assert_eq!(method_entry(&m, &frames[0]).unwrap(), 0x7000);
        assert_eq!(method_entry(&m, &frames[1]).unwrap(), 0x7000);
    }

    #[test]
    fn ifunc_frames_are_left_out_like_ruby_does() {
        let (mut m, ec) = fixture();
        let l = l();
        // The innermost frame becomes a C block (rbscope's thread wrapper, say).
        m.0.insert(0x22_000, VM_FRAME_MAGIC_IFUNC | VM_FRAME_FLAG_CFRAME);
        let mut kinds = Vec::new();
        walk_all(&m, &l, ec, &mut |f: &StackFrame| {
            kinds.push(matches!(f, StackFrame::C { .. }));
            true
        })
        .unwrap();
        assert_eq!(kinds, vec![false, false], "only the two Ruby frames remain");
        // A C function frame is still there.
        m.0.insert(0x22_000, 0x5555_0001 | VM_FRAME_FLAG_CFRAME);
        kinds.clear();
        walk_all(&m, &l, ec, &mut |f: &StackFrame| {
            kinds.push(matches!(f, StackFrame::C { .. }));
            true
        })
        .unwrap();
        assert_eq!(kinds, vec![true, false, false]);
    }

    /// The fixture's frames as [`StackFrame`]s, innermost first, with their iseqs marked as
    /// iseq objects of the given kinds (method 1, block 2; `rb_iseq_type`).
    fn frames_of(m: &mut FakeMemory, ec: usize) -> Vec<StackFrame> {
        let l = l();
        for (iseq, body, kind) in [(0x2000, 0x2100, 1), (0x3000, 0x3100, 2)] {
            m.0.insert(iseq, T_IMEMO | (7 << FL_USHIFT));
            m.0.insert(body + l.body_type, kind);
        }
        let mut out = Vec::new();
        walk_all(m, &l, ec, &mut |f: &StackFrame| {
            out.push(*f);
            true
        })
        .unwrap();
        out
    }

    fn ruby(f: StackFrame) -> RawFrame {
        match f {
            StackFrame::Ruby(r) => r,
            StackFrame::C { .. } => panic!("a Ruby frame was expected: {f:?}"),
        }
    }

    #[test]
    fn frames_pushed_one_above_the_other_nest() {
        let (mut m, ec) = fixture();
        let l = l();
        let f = frames_of(&mut m, ec);
        assert!(
            nests_in(&m, &l, &f[0], &f[1]).unwrap(),
            "C function in a block"
        );
        assert!(
            nests_in(&m, &l, &f[1], &f[2]).unwrap(),
            "block in its method"
        );
        // Read the other way round, the outer frame does not sit above the inner one.
        assert!(!nests_in(&m, &l, &f[2], &f[1]).unwrap());
    }

    /// What a stack read while its thread runs can show: a method frame left from a call that
    /// returned (its receiver and local sat where the C function now running keeps its
    /// environment), under that C function. Measured on the slots, not on the addresses alone.
    #[test]
    fn a_popped_frame_under_the_frame_that_took_its_callers_place_does_not_nest() {
        let (mut m, ec) = fixture();
        let l = l();
        let f = frames_of(&mut m, ec);
        let StackFrame::C { ep: cep, .. } = f[0] else {
            panic!("the fixture's innermost frame is a C function")
        };
        // A popped method frame (2 locals) whose receiver slot is the C frame's `ep`.
        let popped_ep = cep + 5 * WORD; // receiver, 2 locals, me_cref, specval below it
        m.0.insert(popped_ep, 0x1111_0001 | VM_ENV_FLAG_LOCAL);
        let popped = StackFrame::Ruby(RawFrame {
            cfp: 0,
            iseq: 0x2000,
            pc: 0x5010,
            self_value: 3,
            ep: popped_ep,
        });
        assert!(!nests_in(&m, &l, &popped, &f[0]).unwrap());
        // One slot higher, it would be a call the C function made.
        m.0.insert(popped_ep + WORD, 0x1111_0001 | VM_ENV_FLAG_LOCAL);
        let called = StackFrame::Ruby(RawFrame {
            ep: popped_ep + WORD,
            ..ruby(popped)
        });
        assert!(nests_in(&m, &l, &called, &f[0]).unwrap());
        // A block's frame has no receiver below its locals: at the popped method's place, a
        // block with as many locals is a call the C function made.
        let block = StackFrame::Ruby(RawFrame {
            iseq: 0x3000,
            ep: cep + 4 * WORD,
            ..ruby(popped)
        });
        m.0.insert(cep + 4 * WORD, 0x2222_0001);
        assert!(nests_in(&m, &l, &block, &f[0]).unwrap());
    }

    #[test]
    fn environments_moved_to_the_heap_are_not_compared() {
        let (mut m, ec) = fixture();
        let l = l();
        let f = frames_of(&mut m, ec);
        // The method's environment escaped to the heap, far above the block's.
        let heap_ep = 0x90_000;
        m.0.insert(
            heap_ep,
            0x1111_0001 | VM_ENV_FLAG_LOCAL | VM_ENV_FLAG_ESCAPED,
        );
        let moved = StackFrame::Ruby(RawFrame {
            ep: heap_ep,
            ..ruby(f[2])
        });
        assert!(nests_in(&m, &l, &f[1], &moved).unwrap());
        assert!(nests_in(&m, &l, &moved, &f[1]).unwrap());
    }

    #[test]
    fn bad_memory_is_an_error_not_a_crash() {
        let (mut m, ec) = fixture();
        let l = l();
        m.0.insert(ec + l.ec_cfp, 0x1); // outside the stack
        assert!(walk(&m, &l, ec, 10, &mut |_: &RawFrame| true).is_err());
        let empty = FakeMemory::default();
        assert!(walk(&empty, &l, ec, 10, &mut |_: &RawFrame| true).is_err());
    }
}
