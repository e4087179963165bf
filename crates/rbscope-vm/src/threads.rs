//! Finding every Ruby thread of a VM.
//!
//! `vm->ractor.set` lists the ractors (through each ractor's `vmlr_node`), and each ractor's
//! `threads.set` lists its threads (through each thread's `lt_node`): intrusive doubly linked
//! lists whose head is embedded in the owner. rbspy reads only `threads.running_ec`, the thread
//! holding the lock, so a hung process's waiting threads never show; here every thread does.

use crate::layout::{Layout, ThreadTid};
use crate::memory::{Memory, ReadError};
use crate::objects::{Objects, T_STRING};

/// More threads than any real process has; a longer list means a bad read.
const MAX_THREADS: usize = 100_000;
const MAX_RACTORS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStatus {
    Runnable,
    Stopped,
    StoppedForever,
    Killed,
}

impl ThreadStatus {
    pub fn describe(self, holds_lock: bool) -> &'static str {
        // `running_ec` keeps the last thread that ran Ruby code even once it went to sleep:
        // the status says more than the lock.
        match self {
            ThreadStatus::Runnable if holds_lock => "running",
            ThreadStatus::Runnable => "runnable",
            ThreadStatus::Stopped => "sleeping",
            ThreadStatus::StoppedForever => "sleeping forever",
            ThreadStatus::Killed => "dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    /// Address of the `rb_thread_t`.
    pub thread: usize,
    /// The Thread object (`th->self`).
    pub object: usize,
    pub ec: usize,
    pub tid: Option<i32>,
    /// The thread's name (a String VALUE, or nil): read with [`name_of`] once the process
    /// may run again, since a name does not move.
    pub name_value: usize,
    pub status: ThreadStatus,
    pub main: bool,
    /// Holds its ractor's lock (the GVL): the thread running Ruby code right now.
    pub holds_lock: bool,
}

/// Follows an intrusive list from its embedded head; returns the node addresses.
fn list_nodes<M: Memory>(mem: &M, head: usize, max: usize) -> Result<Vec<usize>, ReadError> {
    let mut out = Vec::new();
    let mut node = mem.read_word(head)?;
    while node != head {
        if node == 0 || out.len() >= max {
            return Err(ReadError::Unreadable(head));
        }
        out.push(node);
        node = mem.read_word(node)?;
    }
    Ok(out)
}

/// Every thread of every ractor of the VM at `vm`, main thread first.
pub fn threads<M: Memory>(o: &Objects<'_, M>, vm: usize) -> Result<Vec<ThreadInfo>, ReadError> {
    let (mem, l) = (o.mem, o.l);
    let main_ractor = mem.read_word(vm + l.vm_main_ractor)?;
    let main_thread = mem.read_word(vm + l.vm_main_thread)?;
    let mut ractors: Vec<usize> = list_nodes(mem, vm + l.vm_ractor_set, MAX_RACTORS)?
        .into_iter()
        .map(|node| node - l.ractor_vmlr_node)
        .collect();
    if !ractors.contains(&main_ractor) {
        ractors.insert(0, main_ractor);
    }
    let mut out = Vec::new();
    for ractor in ractors {
        let running_ec = mem.read_word(ractor + l.ractor_running_ec)?;
        for node in list_nodes(mem, ractor + l.ractor_threads_set, MAX_THREADS)? {
            let thread = node - l.thread_lt_node;
            out.push(thread_info(
                o,
                l,
                thread,
                running_ec,
                thread == main_thread,
            )?);
        }
    }
    // Main thread first, the others in the order they were created.
    out.sort_by_key(|t| !t.main);
    Ok(out)
}

/// Only the main thread, found without walking the thread lists (whose offsets follow
/// platform-sized locks): the fallback when the lists cannot be read.
pub fn main_thread<M: Memory>(o: &Objects<'_, M>, vm: usize) -> Result<ThreadInfo, ReadError> {
    let (mem, l) = (o.mem, o.l);
    let main_ractor = mem.read_word(vm + l.vm_main_ractor)?;
    let main_thread = mem.read_word(vm + l.vm_main_thread)?;
    let running_ec = mem
        .read_word(main_ractor + l.ractor_running_ec)
        .unwrap_or(0);
    let mut t = thread_info(o, l, main_thread, running_ec, true)?;
    // The name sits after those locks too; do not trust it here.
    t.name_value = 0;
    Ok(t)
}

/// A thread's name, if it has one.
pub fn name_of<M: Memory>(o: &Objects<'_, M>, t: &ThreadInfo) -> Option<String> {
    match o.builtin_type(t.name_value) {
        Ok(Some(T_STRING)) => o.string(t.name_value).ok(),
        _ => None,
    }
}

/// The status of the `rb_thread_t` at `thread`: what `rbscope stacks` shows for a thread,
/// read from outside or (by the agent) from inside, so both say the same.
pub fn status_of<M: Memory>(mem: &M, l: &Layout, thread: usize) -> Result<ThreadStatus, ReadError> {
    Ok(match mem.read_u8(thread + l.thread_status_bits)? & 0x03 {
        0 => ThreadStatus::Runnable,
        1 => ThreadStatus::Stopped,
        2 => ThreadStatus::StoppedForever,
        _ => ThreadStatus::Killed,
    })
}

fn thread_info<M: Memory>(
    o: &Objects<'_, M>,
    l: &Layout,
    thread: usize,
    running_ec: usize,
    main: bool,
) -> Result<ThreadInfo, ReadError> {
    let mem = o.mem;
    let ec = mem.read_word(thread + l.thread_ec)?;
    let status = status_of(mem, l, thread)?;
    let tid = match l.thread_tid {
        ThreadTid::InThread(off) => Some(mem.read_u32(thread + off)? as i32),
        ThreadTid::InNativeThread { nt, tid } => {
            let nt = mem.read_word(thread + nt)?;
            if nt == 0 {
                None
            } else {
                Some(mem.read_u32(nt + tid)? as i32)
            }
        }
    }
    .filter(|&t| t > 0);
    let name_value = mem.read_word(thread + l.thread_name)?;
    Ok(ThreadInfo {
        thread,
        object: mem.read_word(thread + l.thread_self)?,
        ec,
        tid,
        name_value,
        status,
        main,
        holds_lock: ec != 0 && ec == running_ec,
    })
}
