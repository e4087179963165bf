//! Every thread's stack, labelled: what `rbscope stacks` prints.
//!
//! For each thread: walk its control frames ([`crate::frames::walk_all`]), and for each frame
//! gather the facts of a better backtrace (class path, `#`/`.`/`$singleton`, block depth,
//! parameters, the executing line) from the iseq and the method entry. C frames are named by
//! their method entry's owner and `original_id`, and placed at their caller's line, as Ruby
//! does. A frame that does not check out (not an iseq, pc outside it) is a torn read: the whole
//! thread is read again, up to [`ReadOptions::attempts`] times, and then reported as unreadable
//! rather than shown.

use crate::frames::{self, RawFrame, StackFrame};
use crate::iseq::{self, Iseq, IseqType};
use crate::memory::{Memory, ReadError};
use crate::objects::{Objects, T_CLASS, T_MODULE};
use crate::threads::{self, ThreadInfo};
use rbscope_backtrace::{Clause, FrameFacts, MethodKind, Params, Place, Shape};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    pub path: String,
    pub line: Option<i64>,
    pub label: String,
    pub facts: FrameFacts,
    pub cfunc: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadStack {
    pub tid: Option<i32>,
    pub name: Option<String>,
    pub status: &'static str,
    pub main: bool,
    pub thread: String,
    pub frames: Vec<Frame>,
    /// Set when the stack could not be read consistently; `frames` is then empty.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// How many times a thread whose stack changed while being read is read again.
    pub attempts: u32,
    pub max_frames: usize,
    /// Read each stack twice and keep it only if both reads agree (a stack shown to a person
    /// must be one the thread really had). A sampling profiler takes one read whose frames
    /// check out: a busy thread's stack rarely holds still for two reads, and dropping those
    /// samples would hide exactly the busy code.
    pub settled: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            attempts: 5,
            max_frames: 10_000,
            settled: true,
        }
    }
}

/// Every thread's stack, and anything the reader should know about how complete it is.
#[derive(Debug, Clone, Serialize)]
pub struct Stacks {
    pub threads: Vec<ThreadStack>,
    pub notes: Vec<String>,
}

/// What the reader should know when IDs cannot be named.
fn symbols_note<M: Memory>(o: &Objects<'_, M>) -> Vec<String> {
    if o.has_symbols() {
        return Vec::new();
    }
    vec!["the symbol table was not found: C functions show as <cfunc>, parameters as (*)".into()]
}

/// Every thread of the VM, read up to `attempts` times (calling `refresh` between tries); when
/// the list cannot be read, the main thread alone, with a note saying so.
fn thread_list<M: Memory>(
    o: &Objects<'_, M>,
    vm: usize,
    attempts: u32,
    refresh: &dyn Fn(),
    notes: &mut Vec<String>,
) -> Result<Vec<ThreadInfo>, ReadError> {
    let mut last_err = ReadError::Unreadable(vm);
    for _ in 0..attempts.max(1) {
        match threads::threads(o, vm) {
            Ok(list) => return Ok(list),
            Err(e @ (ReadError::ProcessGone | ReadError::PermissionDenied)) => return Err(e),
            Err(e) => {
                last_err = e;
                refresh();
            }
        }
    }
    notes.push(format!(
        "the thread list could not be read ({last_err}); showing the main thread only"
    ));
    Ok(vec![threads::main_thread(o, vm)?])
}

impl ThreadStack {
    /// A thread's header, before its frames are read.
    fn empty<M: Memory>(o: &Objects<'_, M>, t: &ThreadInfo) -> ThreadStack {
        ThreadStack {
            tid: t.tid,
            name: threads::name_of(o, t),
            status: t.status.describe(t.holds_lock),
            main: t.main,
            thread: format!("{:#x}", t.object),
            frames: Vec::new(),
            error: None,
        }
    }
}

/// Reads every thread's stack of the VM at `vm`. `refresh` is called before each retry so the
/// memory source can drop what it cached.
pub fn read_all<M: Memory>(
    o: &Objects<'_, M>,
    vm: usize,
    opts: ReadOptions,
    refresh: &dyn Fn(),
) -> Result<Stacks, ReadError> {
    let mut notes = symbols_note(o);
    let list = thread_list(o, vm, opts.attempts, refresh, &mut notes)?;
    let mut out = Vec::with_capacity(list.len());
    for t in &list {
        out.push(read_thread(o, t, opts, refresh)?);
    }
    Ok(Stacks {
        threads: out,
        notes,
    })
}

fn read_thread<M: Memory>(
    o: &Objects<'_, M>,
    t: &ThreadInfo,
    opts: ReadOptions,
    refresh: &dyn Fn(),
) -> Result<ThreadStack, ReadError> {
    let mut stack = ThreadStack::empty(o, t);
    if t.status == threads::ThreadStatus::Killed || t.ec == 0 {
        return Ok(stack);
    }
    if !opts.settled {
        return Ok(sampled(o, t, opts, refresh, stack));
    }
    let mut last = String::new();
    for _ in 0..opts.attempts.max(1) {
        // Read the frames twice, the second time afresh: a stack that held still across
        // both reads, and whose frames check out, is one that really was.
        let first = raw_frames(o, t.ec, opts.max_frames);
        refresh();
        let second = raw_frames(o, t.ec, opts.max_frames);
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => match label_frames(o, &b) {
                Ok(frames) => {
                    stack.frames = frames;
                    return Ok(stack);
                }
                Err(e @ (ReadError::ProcessGone | ReadError::PermissionDenied)) => return Err(e),
                Err(e) => last = format!("a frame did not check out ({e})"),
            },
            (Ok(_), Ok(_)) => last = "its stack changed while it was read".into(),
            (Err(e @ (ReadError::ProcessGone | ReadError::PermissionDenied)), _)
            | (_, Err(e @ (ReadError::ProcessGone | ReadError::PermissionDenied))) => {
                return Err(e)
            }
            (Err(e), _) | (_, Err(e)) => last = format!("a frame did not check out ({e})"),
        }
        refresh();
    }
    stack.error = Some(format!(
        "not shown: {last}, {} times; read it again, or pause the process while reading",
        opts.attempts.max(1)
    ));
    Ok(stack)
}

/// Innermost frames a sample may drop when they do not check out.
const SAMPLE_DROP: usize = 8;

/// A sample's read of one thread: one read, keeping the longest run of outer frames that
/// checks out. A busy thread's innermost frames are pushed and popped while they are read (a
/// method entry or iseq read a moment too late); dropping up to [`SAMPLE_DROP`] of them keeps
/// the sample, which shows where the thread was a few calls up. Deeper trouble leaves the
/// thread out of the sample.
fn sampled<M: Memory>(
    o: &Objects<'_, M>,
    t: &ThreadInfo,
    opts: ReadOptions,
    refresh: &dyn Fn(),
    mut stack: ThreadStack,
) -> ThreadStack {
    let mut last = String::new();
    for _ in 0..opts.attempts.max(1) {
        let mut walked = Vec::new();
        let walk = frames::walk_all(o.mem, o.l, t.ec, &mut |f: &StackFrame| {
            walked.push(*f);
            walked.len() < opts.max_frames
        });
        if let Err(e) = walk {
            last = format!("its frames could not be walked ({e})");
            refresh();
            continue;
        }
        let captured: Vec<Option<CapturedFrame>> = walked
            .into_iter()
            .map(|frame| {
                frames::method_entry_depth(o.mem, &as_raw(&frame))
                    .ok()
                    .map(|(me, me_depth)| CapturedFrame {
                        frame,
                        me,
                        me_depth,
                    })
            })
            .collect();
        // The outer frames that read well, from the first bad one (counted from inside) out.
        let first_good = captured
            .iter()
            .rposition(|c| c.is_none())
            .map_or(0, |i| i + 1);
        if first_good > SAMPLE_DROP {
            last = "a frame deep in its stack did not check out".into();
            refresh();
            continue;
        }
        let good: Vec<CapturedFrame> = captured[first_good..].iter().flatten().copied().collect();
        for skip in 0..=SAMPLE_DROP.saturating_sub(first_good).min(good.len()) {
            if let Ok(frames) = label_frames(o, &good[skip..]) {
                stack.frames = frames;
                return stack;
            }
        }
        last = "its frames did not check out".into();
        refresh();
    }
    stack.error = Some(format!("not sampled: {last}"));
    stack
}

/// A frame as found on the stack, with the method entry its environment chain points at: the
/// parts that change as the thread runs, read while it is paused (see [`capture`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturedFrame {
    pub frame: StackFrame,
    pub me: usize,
    pub me_depth: u32,
}

/// A thread and its raw frames.
#[derive(Debug, Clone)]
pub struct CapturedThread {
    pub info: ThreadInfo,
    pub frames: Result<Vec<CapturedFrame>, ReadError>,
}

/// The raw frames of the execution context at `ec`, innermost first.
pub fn raw_frames<M: Memory>(
    o: &Objects<'_, M>,
    ec: usize,
    max_frames: usize,
) -> Result<Vec<CapturedFrame>, ReadError> {
    let mut raw = Vec::new();
    frames::walk_all(o.mem, o.l, ec, &mut |f: &StackFrame| {
        raw.push(*f);
        raw.len() < max_frames
    })?;
    raw.into_iter()
        .map(|frame| {
            let (me, me_depth) = frames::method_entry_depth(o.mem, &as_raw(&frame))?;
            Ok(CapturedFrame {
                frame,
                me,
                me_depth,
            })
        })
        .collect()
}

fn as_raw(f: &StackFrame) -> RawFrame {
    match *f {
        StackFrame::Ruby(r) => r,
        StackFrame::C {
            cfp,
            ep,
            self_value,
        } => RawFrame {
            cfp,
            iseq: 0,
            pc: 0,
            self_value,
            ep,
        },
    }
}

/// Reads what changes while a process runs (the thread list, each thread's control frames and
/// environments) and nothing else: the part to do while the process is paused. A memory source
/// that keeps what it copied (the page cache of `ProcessMemory`) then serves these same bytes
/// to [`label`], which reads the rest (iseqs, method entries, classes, strings: objects that
/// stay as they are while a frame uses them) after the process goes on.
pub fn capture<M: Memory>(
    o: &Objects<'_, M>,
    vm: usize,
    opts: ReadOptions,
) -> Result<(Vec<CapturedThread>, Vec<String>), ReadError> {
    let mut notes = Vec::new();
    let list = thread_list(o, vm, 1, &|| {}, &mut notes)?;
    prefetch_stacks(o, &list);
    let mut out = Vec::with_capacity(list.len());
    for info in list {
        let frames = if info.status == threads::ThreadStatus::Killed || info.ec == 0 {
            Ok(Vec::new())
        } else {
            raw_frames(o, info.ec, opts.max_frames)
        };
        if let Err(e @ (ReadError::ProcessGone | ReadError::PermissionDenied)) = &frames {
            return Err(e.clone());
        }
        out.push(CapturedThread { info, frames });
    }
    Ok((out, notes))
}

/// Asks the memory source for everything the walks will read, in three rounds (execution
/// contexts; the control frames they point at; the environments those point at), so a process
/// source makes a few batched syscalls instead of one per page, which keeps the pause short.
fn prefetch_stacks<M: Memory>(o: &Objects<'_, M>, list: &[ThreadInfo]) {
    const WORD: usize = 8;
    let (mem, l) = (o.mem, o.l);
    let ecs: Vec<usize> = list.iter().map(|t| t.ec).filter(|&ec| ec != 0).collect();
    mem.prefetch(&ecs.iter().map(|&ec| (ec, ec + 64)).collect::<Vec<_>>());
    let mut cfps = Vec::new();
    for &ec in &ecs {
        let (Ok(stack), Ok(size), Ok(cfp)) = (
            mem.read_word(ec + l.ec_vm_stack),
            mem.read_word(ec + l.ec_vm_stack_size),
            mem.read_word(ec + l.ec_cfp),
        ) else {
            continue;
        };
        let end = stack.saturating_add(size.saturating_mul(WORD));
        if cfp >= stack && cfp < end {
            cfps.push((cfp, end));
        }
    }
    mem.prefetch(&cfps);
    let mut eps = Vec::new();
    for &(start, end) in &cfps {
        let mut cfp = start;
        while cfp + l.cfp_size <= end && eps.len() < 100_000 {
            if let Ok(ep) = mem.read_word(cfp + l.cfp_ep) {
                if ep > 3 * WORD {
                    eps.push((ep - 3 * WORD, ep + WORD));
                }
            }
            cfp += l.cfp_size;
        }
    }
    mem.prefetch(&eps);
    // The method entries (or cref/svar) the environments point at, and enclosing environments.
    let mut objects = Vec::new();
    for &(start, _) in &eps {
        for slot in [start + WORD, start + 2 * WORD] {
            if let Ok(v) = mem.read_word(slot) {
                if v != 0 && v & 0x07 == 0 {
                    let v = v & !0x03;
                    objects.push((v, v + 2 * WORD));
                }
            }
        }
    }
    mem.prefetch(&objects);
}

/// Labels captured threads (see [`capture`]).
pub fn label<M: Memory>(
    o: &Objects<'_, M>,
    captured: Vec<CapturedThread>,
    notes: Vec<String>,
) -> Result<Stacks, ReadError> {
    let notes = [symbols_note(o), notes].concat();
    let mut threads = Vec::with_capacity(captured.len());
    for c in captured {
        let mut stack = ThreadStack::empty(o, &c.info);
        match c.frames.and_then(|raw| label_frames(o, &raw)) {
            Ok(frames) => stack.frames = frames,
            Err(e @ (ReadError::ProcessGone | ReadError::PermissionDenied)) => return Err(e),
            Err(e) => stack.error = Some(format!("not shown: a frame did not check out ({e})")),
        }
        threads.push(stack);
    }
    Ok(Stacks { threads, notes })
}

fn label_frames<M: Memory>(
    o: &Objects<'_, M>,
    raw: &[CapturedFrame],
) -> Result<Vec<Frame>, ReadError> {
    let mut out: Vec<Frame> = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        if let (StackFrame::Ruby(r), true) = (&c.frame, i > 0) {
            if !Iseq::open(o, r.iseq)?.is_call_site(r.pc)? {
                return Err(ReadError::Unreadable(r.cfp));
            }
        }
        // A frame popped while the stack was read can stay in view below a live frame that
        // took its caller's place; where the two sit on the VM stack gives it away.
        if let Some(inner) = i.checked_sub(1).and_then(|j| raw.get(j)) {
            if !frames::nests_in(o.mem, o.l, &inner.frame, &c.frame)? {
                return Err(ReadError::Unreadable(c.frame.cfp()));
            }
        }
        out.push(match &c.frame {
            StackFrame::Ruby(r) => ruby_frame(o, r, c.me, c.me_depth)?,
            StackFrame::C { .. } => c_frame(o, c.me)?,
        });
    }
    // Frames are placed as the running Ruby's backtraces place them: a C function (and what
    // this release shows like one) at the line of the Ruby code that called it; a rescue or
    // ensure clause's frame stands for the frame it belongs to (as in Ruby 3.4+, on every Ruby).
    let shapes: Vec<Shape> = out
        .iter()
        .zip(raw)
        .map(|(f, c)| match &c.frame {
            StackFrame::Ruby(r) => Shape::Ruby {
                clause: f.facts.clause.is_some(),
                like_c: iseq::shown_like_c(o.mem, o.l, r.iseq, &f.path),
            },
            StackFrame::C { .. } => Shape::C,
        })
        .collect();
    let places = rbscope_backtrace::place_frames(&shapes, o.l.like_c);
    // A frame shown at another's line takes that frame's path and line (always a frame shown
    // at its own, so the order of the copies does not matter).
    for (j, place) in places.iter().enumerate() {
        if let Place::At(i) = *place {
            let caller = out.get(i).map(|c| (c.path.clone(), c.line));
            if let (Some((path, line)), Some(f)) = (caller, out.get_mut(j)) {
                f.path = path;
                f.line = line;
            }
        }
    }
    let mut places = places.into_iter();
    out.retain(|_| places.next() != Some(Place::Hidden));
    Ok(out)
}

fn ruby_frame<M: Memory>(
    o: &Objects<'_, M>,
    f: &RawFrame,
    me: usize,
    me_depth: u32,
) -> Result<Frame, ReadError> {
    let iseq = Iseq::open(o, f.iseq)?;
    if !iseq.contains_pc(f.pc)? {
        return Err(ReadError::Unreadable(f.pc));
    }
    // The text of a few strings (`<main>`, `<internal:kernel>`) lives in libruby's read-only
    // data, which a core file may leave out: the object checked out, only its text is missing.
    let path = iseq.path().unwrap_or_else(|_| "(unknown)".to_string());
    let line = iseq.line_at(frames::pc_position(o.mem, o.l, f)?)?;
    let mut facts = if me != 0 {
        // Up the environment chain to the iseq of the method's body (the method itself, or
        // the block given to define_method), counting the blocks between; code given to eval
        // is not a block.
        let mut body = Iseq::open(o, f.iseq)?;
        let mut depth = 0;
        for _ in 0..me_depth {
            if body.kind()? == IseqType::Block {
                depth += 1;
            }
            match body.parent()? {
                0 => return Err(ReadError::Unreadable(body.body)),
                parent => body = Iseq::open(o, parent)?,
            }
        }
        if body.kind()? == IseqType::Method && !entry_runs(o, me, body.iseq)? {
            // A method entry of another method: frames read at two moments.
            return Err(ReadError::Unreadable(f.cfp));
        }
        let name = if body.kind()? == IseqType::Method {
            body.base_label()?
        } else {
            method_name(o, me).unwrap_or(body.base_label()?)
        };
        let params = body
            .parameters()?
            .map(Params::Known)
            .unwrap_or(Params::Unknown);
        method_facts(o, me, name, depth, params)?
    } else {
        let (local, block_depth) = iseq.local_iseq()?;
        if local.kind()? == IseqType::Method {
            // A method's frame always has its method entry; without one the frame was read
            // while being pushed or popped.
            return Err(ReadError::Unreadable(f.cfp));
        }
        top_level_facts(o, &local, f.self_value, block_depth)?
    };
    facts.clause = match iseq.kind()? {
        IseqType::Rescue => Some(Clause::Rescue),
        IseqType::Ensure => Some(Clause::Ensure),
        _ => None,
    };
    Ok(Frame {
        path,
        line: Some(line),
        label: facts.label_with_params(),
        facts,
        cfunc: false,
    })
}

fn c_frame<M: Memory>(o: &Objects<'_, M>, me: usize) -> Result<Frame, ReadError> {
    let name = if me != 0 { method_name(o, me) } else { None };
    let facts = match (me, name) {
        (0, _) => FrameFacts {
            class_path: "<unknown>".into(),
            method_name: "<cfunc>".into(),
            kind: MethodKind::Instance,
            block_depth: 0,
            clause: None,
            params: Params::Unknown,
        },
        (me, name) => method_facts(
            o,
            me,
            name.unwrap_or_else(|| "<cfunc>".into()),
            0,
            cfunc_params(o, me),
        )?,
    };
    Ok(Frame {
        path: String::new(),
        line: None,
        label: facts.label_with_params(),
        facts,
        cfunc: true,
    })
}

/// Whether the method entry `me`, if it is an iseq method, runs `iseq` (other kinds of
/// definition, such as aliases, are not checked).
fn entry_runs<M: Memory>(o: &Objects<'_, M>, me: usize, iseq: usize) -> Result<bool, ReadError> {
    const VM_METHOD_TYPE_ISEQ: u8 = 0;
    let def = o.mem.read_word(me + o.l.me_def)?;
    if def == 0 {
        return Ok(false);
    }
    if o.mem.read_u8(def)? & 0x0f != VM_METHOD_TYPE_ISEQ {
        return Ok(true);
    }
    Ok(o.mem.read_word(def + o.l.def_body)? == iseq)
}

/// A C function's parameters as `Method#parameters` gives them: its fixed arity as unnamed
/// required parameters, or `(*)` for a variable one (argc -1 or -2).
fn cfunc_params<M: Memory>(o: &Objects<'_, M>, me: usize) -> Params {
    const VM_METHOD_TYPE_CFUNC: u8 = 1;
    let read = || -> Result<Option<i32>, ReadError> {
        let def = o.mem.read_word(me + o.l.me_def)?;
        if def == 0 || o.mem.read_u8(def)? & 0x0f != VM_METHOD_TYPE_CFUNC {
            return Ok(None);
        }
        Ok(Some(
            o.mem.read_u32(def + o.l.def_body + o.l.cfunc_argc)? as i32
        ))
    };
    match read() {
        Ok(Some(n @ 0..=15)) => {
            Params::Known(vec![rbscope_backtrace::Param::Req(None); n as usize]).of_c_function()
        }
        _ => Params::Unknown,
    }
}

fn method_name<M: Memory>(o: &Objects<'_, M>, me: usize) -> Option<String> {
    let def = o.mem.read_word(me + o.l.me_def).ok()?;
    if def == 0 {
        return None;
    }
    let id = o.mem.read_word(def + o.l.def_original_id).ok()?;
    o.id_name(id)
}

/// Facts for a method, from its owner: `Klass#m`, `Klass.m`, `Klass$singleton#m` or a
/// refinement.
fn method_facts<M: Memory>(
    o: &Objects<'_, M>,
    me: usize,
    method_name: String,
    block_depth: u32,
    params: Params,
) -> Result<FrameFacts, ReadError> {
    let owner = o.mem.read_word(me + o.l.me_owner)?;
    let (class_path, kind) = if let Some((refined, at)) = o.refinement_of_method(owner, me)? {
        (
            o.class_path(refined),
            MethodKind::Refinement {
                refined_in: o.class_path(at),
            },
        )
    } else if o.builtin_type(owner)? == Some(T_CLASS) && o.is_singleton(owner)? {
        match o.attached_object(owner)? {
            Some(a) if matches!(o.builtin_type(a)?, Some(T_CLASS) | Some(T_MODULE)) => {
                (o.class_path(a), MethodKind::ClassLevel)
            }
            Some(a) => (o.class_name_of(a), MethodKind::ObjectSingleton),
            None => (o.class_path(owner), MethodKind::Instance),
        }
    } else {
        (o.class_path(owner), MethodKind::Instance)
    };
    Ok(FrameFacts {
        class_path,
        method_name,
        kind,
        block_depth,
        clause: None,
        params,
    })
}

/// Facts for code outside any method: `<main>`, `<top (required)>`, `<class:Foo>`.
fn top_level_facts<M: Memory>(
    o: &Objects<'_, M>,
    local: &Iseq<'_, '_, M>,
    self_value: usize,
    block_depth: u32,
) -> Result<FrameFacts, ReadError> {
    let name = match (local.label(), local.kind()?) {
        (Ok(name), _) => name,
        (Err(_), IseqType::Main) => "<main>".to_string(),
        (Err(_), IseqType::Top) => "<top (required)>".to_string(),
        (Err(e), _) => return Err(e),
    };
    let is_module = matches!(o.builtin_type(self_value)?, Some(T_CLASS) | Some(T_MODULE));
    let class_body = local.kind()? == IseqType::Class;
    let (class_path, kind) = if is_module && class_body {
        (o.class_path(self_value), MethodKind::ClassLevel)
    } else {
        (o.class_name_of(self_value), MethodKind::TopLevel)
    };
    Ok(FrameFacts {
        class_path,
        method_name: name,
        kind,
        block_depth,
        clause: None,
        params: Params::Known(Vec::new()),
    })
}
