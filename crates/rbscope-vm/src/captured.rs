//! What the agent reads from its own VM around a stack it has walked or copied at raise, beyond
//! the walk itself: the frames of a walked stack as the better backtrace keeps them, how each
//! is shown (a clause, like a C function), the method entry's fields a frame is named by, the
//! frames still running at report time (whose locals are re-read) and a captured frame's
//! locals. Plain reads over [`Memory`], so they are tested here on fake memory; the agent
//! hands in its `LocalMemory` (and holds the GVL).

use crate::frames::{self, RawFrame, StackFrame};
use crate::iseq;
use crate::layout::Layout;
use crate::memory::{Memory, ReadError};
use crate::raise_record::{VmFrame, MAX_FRAMES};
use rbscope_backtrace::{Place, Shape};

/// `rb_callable_method_entry_t`: flags, `defined_class`, `def`, `called_id` (3.1 to 4.0).
const ME_DEFINED_CLASS: usize = 8;
const ME_CALLED_ID: usize = 24;
/// `VM_METHOD_TYPE_BMETHOD` (3.1 to 4.0): a method defined from a block.
const VM_METHOD_TYPE_BMETHOD: u8 = 4;

/// A frame of a stack (walked now, or copied at raise), before the agent makes it an
/// `Rbscope::Frame`: addresses and VALUEs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    /// 0 for a C function.
    pub iseq: usize,
    /// The instruction index in `iseq`, when it could be read.
    pub pos: Option<usize>,
    /// The method entry (0 when none or unreadable).
    pub me: usize,
    pub self_value: usize,
    pub cfunc: bool,
}

impl FrameRef {
    /// A frame of a stack walked with [`frames::walk_all`].
    pub fn of_stack<M: Memory>(mem: &M, l: &Layout, f: &StackFrame) -> FrameRef {
        match *f {
            StackFrame::Ruby(raw) => FrameRef {
                iseq: raw.iseq,
                pos: frames::pc_position(mem, l, &raw).ok(),
                me: frames::method_entry(mem, &raw).unwrap_or(0),
                self_value: raw.self_value,
                cfunc: false,
            },
            StackFrame::C {
                cfp,
                ep,
                self_value,
            } => {
                let raw = RawFrame {
                    cfp,
                    iseq: 0,
                    pc: 0,
                    self_value,
                    ep,
                };
                FrameRef {
                    iseq: 0,
                    pos: None,
                    me: frames::method_entry(mem, &raw).unwrap_or(0),
                    self_value,
                    cfunc: true,
                }
            }
        }
    }

    /// A frame of a raise record copied by the fast capture.
    pub fn of_record(f: &VmFrame) -> FrameRef {
        FrameRef {
            iseq: if f.cfunc { 0 } else { f.iseq },
            pos: (!f.cfunc).then_some(f.pos),
            me: f.method_entry,
            self_value: f.self_value,
            cfunc: f.cfunc,
        }
    }

    /// How the running Ruby's backtraces show the frame; `path` gives an iseq's path (asked
    /// only when the layout's `like_c` rule needs it).
    pub fn shape<M: Memory>(&self, mem: &M, l: &Layout, path: impl Fn(usize) -> String) -> Shape {
        if self.cfunc {
            return Shape::C;
        }
        let path = match l.like_c {
            rbscope_backtrace::LikeC::Internal => path(self.iseq),
            _ => String::new(),
        };
        Shape::Ruby {
            clause: is_clause(mem, l, self.iseq),
            like_c: iseq::shown_like_c(mem, l, self.iseq, &path),
        }
    }
}

/// The frames (Ruby and C, innermost first, at most `max`) of the thread whose `rb_thread_t` is
/// at `th`; empty when it has no stack left to read (a thread that has finished).
pub fn thread_frames<M: Memory>(mem: &M, l: &Layout, th: usize, max: usize) -> Vec<FrameRef> {
    let ec = match mem.read_word(th + l.thread_ec) {
        Ok(ec) if ec != 0 => ec,
        _ => return Vec::new(),
    };
    let mut stack: Vec<StackFrame> = Vec::new();
    let walked = frames::walk_all(mem, l, ec, &mut |f: &StackFrame| {
        stack.push(*f);
        stack.len() < max
    });
    if walked.is_err() {
        return Vec::new();
    }
    stack
        .iter()
        .map(|f| FrameRef::of_stack(mem, l, f))
        .collect()
}

/// A frame as the running Ruby's backtraces show it: at instruction `pos` of `iseq` (both 0
/// when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub frame: FrameRef,
    pub iseq: usize,
    pub pos: usize,
}

/// Places `frames` (innermost first) as the running Ruby's own backtraces do
/// ([`rbscope_backtrace::place_frames`]): a C function, and a Ruby frame this release shows
/// like one, at the line of the Ruby code that called it; a rescue or ensure clause's frame
/// stands for the frame it runs in, which is left out. `path` as for [`FrameRef::shape`].
pub fn place<M: Memory>(
    mem: &M,
    l: &Layout,
    frames: &[FrameRef],
    path: impl Fn(usize) -> String,
) -> Vec<Placed> {
    let shapes: Vec<Shape> = frames.iter().map(|f| f.shape(mem, l, &path)).collect();
    let at = |i: usize| frames.get(i).map(|f| (f.iseq, f.pos.unwrap_or(0)));
    rbscope_backtrace::place_frames(&shapes, l.like_c)
        .into_iter()
        .zip(frames)
        .filter_map(|(place, f)| {
            let (iseq, pos) = match place {
                Place::Hidden => return None,
                Place::Own => (f.iseq, f.pos.unwrap_or(0)),
                Place::At(i) => at(i).unwrap_or((0, 0)),
                Place::Unknown => (0, 0),
            };
            Some(Placed {
                frame: *f,
                iseq,
                pos,
            })
        })
        .collect()
}

/// Whether the iseq at `iseq` is a rescue or ensure clause's code (unreadable: no).
pub fn is_clause<M: Memory>(mem: &M, l: &Layout, iseq: usize) -> bool {
    iseq::kind_at(mem, l, iseq)
        .map(|k| k.is_clause())
        .unwrap_or(false)
}

/// Which frames of a raise record a rescue or ensure clause's frame stands for (see
/// [`rbscope_backtrace::hidden_by_clauses`]); C functions are never hidden.
pub fn hidden_by_clauses<M: Memory>(mem: &M, l: &Layout, frames: &[VmFrame]) -> Vec<bool> {
    rbscope_backtrace::hidden_by_clauses(
        frames
            .iter()
            .map(|f| (!f.cfunc).then(|| is_clause(mem, l, f.iseq))),
    )
}

/// A method entry's `defined_class` (read without the layout, which may be unknown).
pub fn defined_class<M: Memory>(mem: &M, me: usize) -> Result<usize, ReadError> {
    mem.read_word(me + ME_DEFINED_CLASS)
}

/// The ID a method entry was called by (`called_id`), e.g. the name given to `define_method`.
pub fn called_id<M: Memory>(mem: &M, me: usize) -> Result<usize, ReadError> {
    mem.read_word(me + ME_CALLED_ID)
}

/// Whether the method entry `me` is a method defined from a block (unreadable: no).
pub fn is_bmethod<M: Memory>(mem: &M, l: &Layout, me: usize) -> bool {
    match mem.read_word(me + l.me_def) {
        Ok(def) if def != 0 => mem
            .read_u8(def)
            .map(|t| t & 0x0f == VM_METHOD_TYPE_BMETHOD)
            .unwrap_or(false),
        _ => false,
    }
}

/// The method entry of the running control frame `cfp` (whose iseq and `self` the caller
/// knows); 0 when none or unreadable.
pub fn method_entry_of_cfp<M: Memory>(
    mem: &M,
    l: &Layout,
    cfp: usize,
    iseq: usize,
    self_value: usize,
) -> usize {
    let Ok(ep) = mem.read_word(cfp + l.cfp_ep) else {
        return 0;
    };
    let raw = RawFrame {
        cfp,
        iseq,
        pc: 0,
        self_value,
        ep,
    };
    frames::method_entry(mem, &raw).unwrap_or(0)
}

/// The Ruby frames running now on the stack of the execution context `ec`, as (control
/// frame, iseq, environment): a captured frame found here has not returned since the raise.
pub fn running_frames<M: Memory>(mem: &M, l: &Layout, ec: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let _ = frames::walk(mem, l, ec, MAX_FRAMES, &mut |f: &RawFrame| {
        out.push((f.cfp, f.iseq, f.ep));
        true
    });
    out
}

/// Re-reads the locals of a captured frame if it is among `running` (see [`running_frames`]),
/// so that assignments made after the raise (in `rescue` or `ensure`) show, as they would
/// through a Binding. Left as captured when anything is unreadable.
pub fn refresh_if_running<M: Memory>(
    mem: &M,
    l: &Layout,
    f: &mut VmFrame,
    running: &[(usize, usize, usize)],
) {
    if !running.contains(&(f.cfp, f.iseq, f.ep)) {
        return;
    }
    let raw = RawFrame {
        cfp: f.cfp,
        iseq: f.iseq,
        pc: 0,
        self_value: f.self_value,
        ep: f.ep,
    };
    let mut chain = Vec::new();
    if frames::env_chain(mem, l, &raw, &mut chain).is_err() {
        return;
    }
    let levels: Option<Vec<Vec<usize>>> = chain
        .iter()
        .map(|lv| {
            (0..lv.locals)
                .map(|i| frames::local_value(mem, lv.ep, lv.locals, i).ok())
                .collect()
        })
        .collect();
    if let Some(levels) = levels {
        f.levels = levels;
    }
}

/// A captured frame's locals as (ID, value), innermost environment first, each level named by
/// its iseq's local table (a block's parent iseq for the next level). Stops at the first
/// level whose names cannot be read.
pub fn local_ids_and_values<M: Memory>(mem: &M, l: &Layout, f: &VmFrame) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut iseq = f.iseq;
    for (level, values) in f.levels.iter().enumerate() {
        if level > 0 {
            let parent = mem
                .read_word(iseq + l.iseq_body)
                .and_then(|b| mem.read_word(b + l.body_parent_iseq));
            match parent {
                Ok(p) if p != 0 => iseq = p,
                _ => break,
            }
        }
        let Ok(ids) = frames::local_ids(mem, l, iseq) else {
            break;
        };
        out.extend(ids.into_iter().zip(values.iter().copied()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::memory::FakeMemory as Words;

    fn l() -> Layout {
        *Layout::for_version("3.1.2").unwrap()
    }

    /// Writes a u32 field into the word that holds it (little-endian).
    fn put_u32(m: &mut Words, addr: usize, v: u32) {
        let word = m.0.entry(addr & !7).or_default();
        *word |= (v as usize) << ((addr & 7) * 8);
    }

    fn vm_frame(iseq: usize, levels: Vec<Vec<usize>>) -> VmFrame {
        VmFrame {
            index: 0,
            cfunc: false,
            iseq,
            pos: 3,
            self_value: 0x77,
            method_entry: 0,
            cfp: 0x500,
            ep: 0x600,
            levels,
        }
    }

    #[test]
    fn locals_are_named_level_by_level_through_the_parent_iseq() {
        let l = l();
        let mut m = Words::default();
        let (block, method) = (0x1000, 0x2000);
        let (block_body, method_body) = (0x1100, 0x2100);
        m.0.insert(block + l.iseq_body, block_body);
        m.0.insert(method + l.iseq_body, method_body);
        m.0.insert(block_body + l.body_parent_iseq, method);
        put_u32(&mut m, block_body + l.body_local_table_size, 1);
        put_u32(&mut m, method_body + l.body_local_table_size, 2);
        m.0.insert(block_body + l.body_local_table, 0x3000);
        m.0.insert(method_body + l.body_local_table, 0x4000);
        m.0.insert(0x3000, 11);
        m.0.insert(0x4000, 21);
        m.0.insert(0x4008, 22);
        let f = vm_frame(block, vec![vec![0xa1], vec![0xb1, 0xb2]]);
        assert_eq!(
            local_ids_and_values(&m, &l, &f),
            vec![(11, 0xa1), (21, 0xb1), (22, 0xb2)]
        );
        // Without a readable parent, only the frame's own level.
        m.0.remove(&(block_body + l.body_parent_iseq));
        assert_eq!(local_ids_and_values(&m, &l, &f), vec![(11, 0xa1)]);
    }

    #[test]
    fn only_a_running_frame_is_refreshed() {
        let l = l();
        let mut m = Words::default();
        let (iseq, body) = (0x1000, 0x1100);
        m.0.insert(iseq + l.iseq_body, body);
        put_u32(&mut m, body + l.body_local_table_size, 2);
        let mut f = vm_frame(iseq, vec![vec![1, 2]]);
        m.0.insert(f.ep, frames::VM_ENV_FLAG_LOCAL);
        // Locals sit just below ep: local i of n at ep[i - n - 2].
        m.0.insert(f.ep - 4 * 8, 0x51);
        m.0.insert(f.ep - 3 * 8, 0x52);
        let (cfp, ep) = (f.cfp, f.ep);
        refresh_if_running(&m, &l, &mut f, &[(cfp + 1, iseq, ep)]);
        assert_eq!(f.levels, vec![vec![1, 2]]);
        refresh_if_running(&m, &l, &mut f, &[(cfp, iseq, ep)]);
        assert_eq!(f.levels, vec![vec![0x51, 0x52]]);
    }

    #[test]
    fn a_bmethod_is_told_by_its_definition_type() {
        let l = l();
        let mut m = Words::default();
        let (me, def) = (0x1000, 0x2000);
        m.0.insert(me + l.me_def, def);
        m.0.insert(def, 0x10 | usize::from(VM_METHOD_TYPE_BMETHOD));
        assert!(is_bmethod(&m, &l, me));
        m.0.insert(def, 0); // an iseq method
        assert!(!is_bmethod(&m, &l, me));
        m.0.insert(me + l.me_def, 0);
        assert!(!is_bmethod(&m, &l, me));
        m.0.insert(me + ME_CALLED_ID, 0x99);
        m.0.insert(me + ME_DEFINED_CLASS, 0x88);
        assert_eq!(called_id(&m, me).unwrap(), 0x99);
        assert_eq!(defined_class(&m, me).unwrap(), 0x88);
    }

    #[test]
    fn a_c_function_is_placed_at_its_ruby_caller() {
        // Ruby 3.1 (no frame shown like a C function): a C function above a Ruby frame is
        // shown at that frame's line; one with no Ruby code below it is placed nowhere.
        let (m, l) = (Words::default(), l());
        let c = |me| FrameRef {
            iseq: 0,
            pos: None,
            me,
            self_value: 0,
            cfunc: true,
        };
        let ruby = FrameRef {
            iseq: 0x1000,
            pos: Some(4),
            me: 0,
            self_value: 0,
            cfunc: false,
        };
        let placed = place(&m, &l, &[c(1), ruby, c(2)], |_| String::new());
        let got: Vec<(usize, usize, usize)> =
            placed.iter().map(|p| (p.frame.me, p.iseq, p.pos)).collect();
        assert_eq!(got, vec![(1, 0x1000, 4), (0, 0x1000, 4), (2, 0, 0)]);
    }

    #[test]
    fn a_thread_without_an_execution_context_has_no_frames() {
        let (mut m, l) = (Words::default(), l());
        assert!(thread_frames(&m, &l, 0x1000, 10).is_empty());
        m.0.insert(0x1000 + l.thread_ec, 0);
        assert!(thread_frames(&m, &l, 0x1000, 10).is_empty());
    }

    #[test]
    fn a_record_frame_keeps_its_iseq_only_when_it_runs_ruby() {
        let mut f = vm_frame(0x1000, Vec::new());
        f.method_entry = 0x42;
        let r = FrameRef::of_record(&f);
        assert_eq!(
            (r.iseq, r.pos, r.me, r.cfunc),
            (0x1000, Some(3), 0x42, false)
        );
        f.cfunc = true;
        let r = FrameRef::of_record(&f);
        assert_eq!((r.iseq, r.pos, r.cfunc), (0, None, true));
        assert_eq!(
            r.shape(&Words::default(), &l(), |_| String::new()),
            Shape::C
        );
    }
}
