//! What an instruction sequence says about the code it runs: its name, file, the line at a
//! given pc, its kind (method, block, class body...), and its parameters.
//!
//! The executing line is found the way `rb_iseq_line_no` finds it: each instruction position
//! maps to an entry of `insns_info`; from 2.6 the position table is replaced after compilation
//! by a succinct bit vector (`succ_index_table`, iseq.c) that we decode here. rbspy returns the
//! last entry instead, which is the method's `end` line.

use crate::frames::RawFrame;
use crate::layout::Layout;
use crate::memory::{Memory, ReadError};
use crate::objects::{Objects, T_ARRAY, T_STRING};
use rbscope_backtrace::Param;

/// `enum rb_iseq_type` (3.1 to 4.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IseqType {
    Top,
    Method,
    Block,
    Class,
    Rescue,
    Ensure,
    Eval,
    Main,
    Plain,
}

impl IseqType {
    fn from_raw(n: u32) -> Option<IseqType> {
        use IseqType::*;
        Some(match n {
            0 => Top,
            1 => Method,
            2 => Block,
            3 => Class,
            4 => Rescue,
            5 => Ensure,
            6 => Eval,
            7 => Main,
            8 => Plain,
            _ => return None,
        })
    }
}

/// The kind of the iseq at `iseq` (checked to be an `imemo_iseq`), without the object reader
/// [`Iseq::open`] needs: what the agent asks of every frame it reads from its own VM.
pub fn kind_at<M: Memory>(mem: &M, l: &Layout, iseq: usize) -> Result<IseqType, ReadError> {
    let flags = mem.read_word(iseq)?;
    if flags & 0x1f != crate::objects::T_IMEMO || (flags >> 12) & 0x0f != IMEMO_ISEQ {
        return Err(ReadError::Unreadable(iseq));
    }
    let body = mem.read_word(iseq + l.iseq_body)?;
    if body == 0 {
        return Err(ReadError::Unreadable(iseq));
    }
    IseqType::from_raw(mem.read_u32(body + l.body_type)?).ok_or(ReadError::Unreadable(body))
}

/// Whether the running Ruby's backtraces show a frame of `iseq` (whose path is `path`) like a C
/// function, at its caller's line (see [`rbscope_backtrace::LikeC`]). Unreadable: no.
pub fn shown_like_c<M: Memory>(mem: &M, l: &Layout, iseq: usize, path: &str) -> bool {
    /// `BUILTIN_ATTR_C_TRACE` of 3.4's vm_core.h.
    const C_TRACE: u32 = 0x08;
    match l.like_c {
        rbscope_backtrace::LikeC::Never => false,
        rbscope_backtrace::LikeC::Internal => path.starts_with("<internal:"),
        rbscope_backtrace::LikeC::CTrace => mem
            .read_word(iseq + l.iseq_body)
            .and_then(|body| mem.read_u32(body + l.body_builtin_attrs))
            .map(|attrs| attrs & C_TRACE != 0)
            .unwrap_or(false),
    }
}

/// The iseq whose code the iseq at `iseq` runs in: for code given to `eval`, the code of its
/// binding, up through every eval (as Ruby's own labels do: 3.4's compiler labels eval code
/// `<main>` whatever block the binding is in); any other iseq itself.
pub fn labelled_by<M: Memory>(mem: &M, l: &Layout, iseq: usize) -> Result<usize, ReadError> {
    let mut cur = iseq;
    for _ in 0..MAX_NESTING {
        if kind_at(mem, l, cur)? != IseqType::Eval {
            break;
        }
        let parent = mem.read_word(mem.read_word(cur + l.iseq_body)? + l.body_parent_iseq)?;
        if parent == 0 {
            break;
        }
        cur = parent;
    }
    Ok(cur)
}

impl IseqType {
    /// A rescue or ensure clause's code (see [`rbscope_backtrace::hidden_by_clauses`]).
    pub fn is_clause(self) -> bool {
        matches!(self, IseqType::Rescue | IseqType::Ensure)
    }
}

const IMEMO_ISEQ: usize = 7;
const WORD: usize = 8;
/// Nesting deeper than this (blocks in blocks...) means a bad read.
const MAX_NESTING: u32 = 256;

pub struct Iseq<'a, 'm, M: Memory> {
    o: &'a Objects<'m, M>,
    pub iseq: usize,
    pub body: usize,
}

impl<'a, 'm, M: Memory> Iseq<'a, 'm, M> {
    /// Checks that `iseq` is an instruction sequence (an `imemo_iseq`) and opens it.
    pub fn open(o: &'a Objects<'m, M>, iseq: usize) -> Result<Self, ReadError> {
        let flags = o.mem.read_word(iseq)?;
        if flags & 0x1f != crate::objects::T_IMEMO || (flags >> 12) & 0x0f != IMEMO_ISEQ {
            return Err(ReadError::Unreadable(iseq));
        }
        let body = o.mem.read_word(iseq + o.l.iseq_body)?;
        if body == 0 {
            return Err(ReadError::Unreadable(iseq));
        }
        Ok(Iseq { o, iseq, body })
    }

    fn l(&self) -> &'static Layout {
        self.o.l
    }

    fn word(&self, off: usize) -> Result<usize, ReadError> {
        self.o.mem.read_word(self.body + off)
    }

    fn u32(&self, off: usize) -> Result<u32, ReadError> {
        self.o.mem.read_u32(self.body + off)
    }

    fn i32(&self, off: usize) -> Result<i32, ReadError> {
        Ok(self.u32(off)? as i32)
    }

    pub fn kind(&self) -> Result<IseqType, ReadError> {
        IseqType::from_raw(self.u32(self.l().body_type)?).ok_or(ReadError::Unreadable(self.body))
    }

    pub fn label(&self) -> Result<String, ReadError> {
        self.o.string(self.word(self.l().body_location_label)?)
    }

    pub fn base_label(&self) -> Result<String, ReadError> {
        self.o.string(self.word(self.l().body_location_base_label)?)
    }

    /// The path as Ruby's backtraces print it (`rb_iseq_path`).
    pub fn path(&self) -> Result<String, ReadError> {
        let pathobj = self.word(self.l().body_location_pathobj)?;
        match self.o.builtin_type(pathobj)? {
            Some(T_STRING) => self.o.string(pathobj),
            Some(T_ARRAY) => self.o.string(self.o.array_entry(pathobj, 0)?),
            _ => Err(ReadError::Unreadable(pathobj)),
        }
    }

    pub fn first_lineno(&self) -> Result<i64, ReadError> {
        let off = self.l().body_location_first_lineno;
        Ok(if self.l().first_lineno_is_value {
            (self.word(off)? as i64) >> 1
        } else {
            self.i32(off)? as i64
        })
    }

    /// Checks that `pc` points into this iseq's instructions (a torn read would not).
    pub fn contains_pc(&self, pc: usize) -> Result<bool, ReadError> {
        let start = self.word(self.l().body_iseq_encoded)?;
        let size = self.u32(self.l().body_iseq_size)? as usize;
        Ok(pc >= start && pc <= start + size * WORD)
    }

    /// Whether `pc` can be where a frame that called another one stands: just after its call
    /// instruction. A frame whose pc is just after a `leave` (every iseq's last instruction,
    /// one word wide) has returned already: seeing it under a newer frame means the stack was
    /// read at two moments. (Operands of call instructions are call data or iseq pointers,
    /// never the address of an instruction's code.)
    pub fn is_call_site(&self, pc: usize) -> Result<bool, ReadError> {
        let start = self.word(self.l().body_iseq_encoded)?;
        let size = self.u32(self.l().body_iseq_size)? as usize;
        if size == 0 || pc <= start {
            return Ok(false);
        }
        let last = self.o.mem.read_word(start + (size - 1) * WORD)?;
        Ok(self.o.mem.read_word(pc - WORD)? != last)
    }

    /// The line executing at instruction position `pos` (see `crate::frames::pc_position`).
    pub fn line_at(&self, pos: usize) -> Result<i64, ReadError> {
        let l = self.l();
        let size = self.u32(l.body_insns_info_size)? as usize;
        let entries = self.word(l.body_insns_info_body)?;
        let entry_line = |i: usize| -> Result<i64, ReadError> {
            Ok(self.o.mem.read_u32(entries + i * l.insn_info_entry_size)? as i32 as i64)
        };
        match size {
            0 => return self.first_lineno(),
            1 => return entry_line(0),
            _ => {}
        }
        let positions = self.word(l.body_insns_info_positions)?;
        let index = if positions != 0 {
            // The table still has positions: the last entry starting at or before `pos`.
            let mut found = 0;
            for i in 1..size.min(1 << 20) {
                if self.o.mem.read_u32(positions + i * 4)? as usize > pos {
                    break;
                }
                found = i;
            }
            found
        } else {
            let table = self.word(l.body_insns_info_succ_index_table)?;
            if table == 0 {
                return Err(ReadError::Unreadable(self.body));
            }
            let rank = succ_index_lookup(self.o.mem, table, pos)?;
            rank.checked_sub(1).ok_or(ReadError::Unreadable(table))?
        };
        if index >= size {
            return Err(ReadError::Unreadable(entries));
        }
        entry_line(index)
    }

    pub fn parent(&self) -> Result<usize, ReadError> {
        self.word(self.l().body_parent_iseq)
    }

    /// The iseq whose locals a block shares (its method, or the top level), and how many
    /// blocks deep this one is. Code given to `eval` runs in the scope of its binding: it is
    /// passed through, not counted as a block.
    pub fn local_iseq(&self) -> Result<(Iseq<'a, 'm, M>, u32), ReadError> {
        let mut cur = Iseq::open(self.o, self.iseq)?;
        let mut depth = 0;
        let mut steps = 0;
        loop {
            let kind = cur.kind()?;
            if !matches!(kind, IseqType::Block | IseqType::Eval) || steps >= MAX_NESTING {
                break;
            }
            let parent = cur.parent()?;
            if parent == 0 {
                break;
            }
            cur = Iseq::open(self.o, parent)?;
            steps += 1;
            if kind == IseqType::Block {
                depth += 1;
            }
        }
        Ok((cur, depth))
    }

    fn local_name(&self, i: i32) -> Result<Option<String>, ReadError> {
        let n = self.u32(self.l().body_local_table_size)? as i32;
        if i < 0 || i >= n {
            return Ok(None);
        }
        let table = self.word(self.l().body_local_table)?;
        let id = self.o.mem.read_word(table + i as usize * WORD)?;
        Ok(self.o.id_name(id).filter(|n| is_local_name(n)))
    }

    /// The parameters, as `Method#parameters` would list them. None when IDs cannot be named
    /// (no symbol table).
    pub fn parameters(&self) -> Result<Option<Vec<Param>>, ReadError> {
        if !self.o.has_symbols() {
            return Ok(None);
        }
        let l = self.l();
        let flags = self.u32(l.body_param_flags)?;
        let has = |bit: u32| flags & (1 << bit) != 0;
        let (lead, opt, rest, post, kw, kwrest, block, no_kw) = (
            has(0),
            has(1),
            has(2),
            has(3),
            has(4),
            has(5),
            has(6),
            has(8),
        );
        let mut out = Vec::new();
        if lead {
            for i in 0..self.i32(l.body_param_lead_num)?.clamp(0, 256) {
                out.push(Param::Req(self.local_name(i)?));
            }
        }
        if opt {
            let lead_num = if lead {
                self.i32(l.body_param_lead_num)?
            } else {
                0
            };
            for i in 0..self.i32(l.body_param_opt_num)?.clamp(0, 256) {
                out.push(Param::Opt(
                    self.local_name(lead_num + i)?.unwrap_or_default(),
                ));
            }
        }
        if rest {
            out.push(Param::Rest(
                self.local_name(self.i32(l.body_param_rest_start)?)?,
            ));
        }
        if post {
            let start = self.i32(l.body_param_post_start)?;
            for i in 0..self.i32(l.body_param_post_num)?.clamp(0, 256) {
                out.push(Param::Post(self.local_name(start + i)?));
            }
        }
        let keyword = self.word(l.body_param_keyword)?;
        if kw && keyword != 0 {
            let num = self.o.mem.read_u32(keyword)? as usize;
            let required = self.o.mem.read_u32(keyword + 4)? as usize;
            let table = self.o.mem.read_word(keyword + 16)?;
            for i in 0..num.min(256) {
                let name = self
                    .o
                    .id_name(self.o.mem.read_word(table + i * WORD)?)
                    .unwrap_or_default();
                out.push(if i < required {
                    Param::KeyReq(name)
                } else {
                    Param::Key(name)
                });
            }
        }
        if kwrest && keyword != 0 {
            let rest_start = self.o.mem.read_u32(keyword + 12)? as i32;
            out.push(Param::KeyRest(self.local_name(rest_start)?));
        } else if no_kw {
            out.push(Param::NoKey);
        }
        if block {
            out.push(Param::Block(
                self.local_name(self.i32(l.body_param_block_start)?)?,
            ));
        }
        Ok(Some(out))
    }
}

/// A local variable's name as `Method#parameters` shows it: internal names (`*`, `**`, `&`,
/// hidden temporaries) are not shown.
fn is_local_name(n: &str) -> bool {
    n.chars()
        .next()
        .is_some_and(|c| c == '_' || c.is_lowercase() || !c.is_ascii())
}

/// `succ_index_lookup` (iseq.c): the rank of position `x` in the succinct bit vector, i.e.
/// how many instruction-info entries start at or before it.
fn succ_index_lookup<M: Memory>(mem: &M, table: usize, x: usize) -> Result<usize, ReadError> {
    const IMMEDIATE: usize = 54;
    if x < IMMEDIATE {
        let word = mem.read_word(table + (x / 9) * 8)?;
        return Ok((word >> ((x % 9) * 7)) & 0x7f);
    }
    // After six u64 of immediate part: blocks of { u32 rank; u64 small_block_ranks; u64 bits[8] }.
    let block = table + 48 + ((x - IMMEDIATE) / 512) * 80;
    let bit = (x - IMMEDIATE) % 512;
    let small = bit / 64;
    let rank = mem.read_u32(block)? as usize;
    let small_ranks = mem.read_word(block + 8)?;
    let small_count = if small == 0 {
        0
    } else {
        (small_ranks >> ((small - 1) * 9)) & 0x1ff
    };
    let bits = mem.read_word(block + 16 + small * 8)? as u64;
    let pop = (bits << (63 - bit % 64)).count_ones() as usize;
    Ok(rank + small_count + pop)
}

/// The line a Ruby frame is executing.
pub fn frame_line<M: Memory>(o: &Objects<'_, M>, f: &RawFrame) -> Result<i64, ReadError> {
    let iseq = Iseq::open(o, f.iseq)?;
    let pos = crate::frames::pc_position(o.mem, o.l, f)?;
    iseq.line_at(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Words(HashMap<usize, usize>);
    impl Memory for Words {
        fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
            Ok(self.0.get(&addr).copied().unwrap_or(0))
        }
    }

    #[test]
    fn succinct_lookup_counts_set_bits_up_to_the_position() {
        // Immediate part: ranks 1,1,2,... for positions 0.. (7 bits each, 9 per word).
        let mut m = HashMap::new();
        let table = 0x1000;
        m.insert(table, 1 | (1 << 7) | (2 << 14));
        // First block: rank 10, bits for positions 54.. with bits 0 and 3 set.
        let block = table + 48;
        m.insert(block, 10);
        m.insert(block + 16, 0b1001);
        // Second small block: 5 set bits before it, bit 1 set inside it.
        m.insert(block + 8, 5);
        m.insert(block + 16 + 8, 0b10);
        let mem = Words(m);
        assert_eq!(succ_index_lookup(&mem, table, 0).unwrap(), 1);
        assert_eq!(succ_index_lookup(&mem, table, 2).unwrap(), 2);
        assert_eq!(succ_index_lookup(&mem, table, 54).unwrap(), 11);
        assert_eq!(succ_index_lookup(&mem, table, 56).unwrap(), 11);
        assert_eq!(succ_index_lookup(&mem, table, 57).unwrap(), 12);
        assert_eq!(succ_index_lookup(&mem, table, 54 + 64).unwrap(), 15);
        assert_eq!(succ_index_lookup(&mem, table, 54 + 65).unwrap(), 16);
    }

    #[test]
    fn internal_local_names_are_hidden() {
        assert!(is_local_name("arg1"));
        assert!(is_local_name("_x"));
        assert!(!is_local_name("*"));
        assert!(!is_local_name("#arg_rest"));
    }
}
