//! The messages. Version 1: handshake and agent status. Version 2: every thread's stack.
//! Version 3: tracing (a stream of event records, see `rbscope-trace`) and eval.
//! Version 4: the memory report, and eval for consoles (a kept binding, incomplete input,
//! cancelling). Version 5: the heap (dump, census, allocation tracking). Version 6: live
//! snapshots of threads (`Snapshot`, answered by `Snapshots`) and breakpoints (`Break`,
//! answered by `BreakSet`, `BreakHit`, `BreakNote`, `BreakEnded`), added after every older
//! message so that those keep their bytes.
//!
//! tests/golden.rs freezes every message's bytes; a change that moves them is a new version.

use crate::facts::FrameFacts;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 7;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub client_version: String,
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Always the first message.
    Hello(Hello),
    /// Ask for the agent's state and counters.
    Status,
    /// Ask for every Ruby thread's stack, read by the agent inside the process. The agent
    /// answers `Stacks`, or `Busy` when the VM did not give it a turn within `wait_ms`.
    Stacks { wait_ms: u32 },
    /// Start tracing on this connection. The agent answers `Tracing` (or `Error`/`Busy`), then
    /// streams `Events` until the client sends `Detach` or goes away; then hooks are removed
    /// and, if the client is still there, it gets `Detached`.
    Trace(TraceRequest),
    /// Stop tracing (removes this connection's hooks).
    Detach,
    /// Evaluate Ruby code in the process (refused unless the app allowed it).
    Eval(EvalRequest),
    /// Cancel the eval this connection is waiting for (its thread is killed); the agent then
    /// answers that eval with an "interrupted" result.
    Cancel,
    /// Ask for the memory report (GC statistics, objects by type, malloc figures); the agent
    /// answers `Memory`, or `Busy` when the VM did not give it a turn within `wait_ms`.
    Memory { wait_ms: u32 },
    /// Dump the heap to a file (from a forked child unless `in_process`); the agent answers
    /// `HeapDumped` when the file is complete, or `Error`.
    HeapDump(HeapDumpRequest),
    /// Count live objects by type, and instances of the classes under the given names.
    HeapCount(HeapCountRequest),
    /// Turn allocation tracing (`ObjectSpace.trace_object_allocations`) on or off.
    HeapTrack { on: bool, wait_ms: u32 },
    /// Store a live snapshot of threads now (protocol 6); the agent answers `Snapshots`, or
    /// `Error` (no such thread), or `Busy` when the VM did not give it a turn within `wait_ms`.
    Snapshot(SnapshotRequest),
    /// Set a breakpoint (protocol 6): the agent answers `BreakSet` (or `Error`/`Busy`), then
    /// sends `BreakHit` for each time the line runs and `BreakNote`s, until it sends
    /// `BreakEnded` (`max` hits, `for_ms` passed) or the client goes away; the hook is removed
    /// then.
    Break(BreakRequest),
    /// A breakpoint or a logpoint with protocol 7's options (protocol 7): answered as `Break`
    /// is, a logpoint's hits as `LogHit`s. While it runs, the client may send `Detach` to end
    /// it: the agent then answers `BreakEnded` (with what was skipped or dropped).
    Point(PointRequest),
}

/// `Break`'s request with what protocol 7 added: a logpoint (`values` given: each hit sends
/// them, read and rendered by the agent, instead of storing a snapshot) and `every_ms` (at most
/// one hit per that many milliseconds; the hits between are skipped inside the app, counted).
/// A logpoint's `max` of 0 means no limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRequest {
    pub at: BreakRequest,
    /// 0: every hit.
    pub every_ms: u64,
    /// The values a logpoint reads (capture paths: `order.id`, `@user.email`, `self`); empty
    /// for a breakpoint.
    pub values: Vec<String>,
}

/// One time a logpoint's line ran: its values as the agent rendered them (never with the app's
/// `inspect`), on which thread, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogHit {
    /// 1 for the first hit.
    pub n: u32,
    /// CLOCK_MONOTONIC, in nanoseconds (the trace clock's time base).
    pub t_ns: u64,
    /// The OS thread id, when Ruby knows it.
    pub tid: Option<i32>,
    /// The thread's name, or empty.
    pub thread: String,
    /// (path as the client wrote it, rendered value), in the request's order.
    pub values: Vec<(String, String)>,
}

/// A non-breaking breakpoint: a live snapshot of the thread each time `file`:`line` runs, at
/// most `max` times, for at most `for_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakRequest {
    /// As given: absolute, or relative to the app root or the process's working directory.
    pub file: String,
    pub line: u32,
    pub max: u32,
    pub for_ms: u64,
    pub wait_ms: u32,
    /// Fire only when this holds (rbscope-trace's condition language), when given.
    pub condition: Option<String>,
    /// Set it even though YJIT is on in a Ruby 3.1 process.
    pub force: bool,
}

/// Where a breakpoint was set, or what it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakSet {
    /// The file as resolved (absolute).
    pub file: String,
    pub line: u32,
    /// The method or block hooked (`Shop::Cart#add`, `block in Shop::Cart#add`); empty while
    /// waiting.
    pub hooked: String,
    /// Why it waits (the file or method is not loaded yet), when it does.
    pub waiting: Option<String>,
}

/// One time the line ran: the snapshot stored, or why none was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakHit {
    /// 1 for the first hit.
    pub n: u32,
    pub id: Option<String>,
    pub note: Option<String>,
}

/// Which threads to snapshot: each of `threads` (a name, or an OS thread id as `stacks` shows
/// it), every thread with `all`, the main thread when neither is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub threads: Vec<String>,
    pub all: bool,
    pub wait_ms: u32,
}

/// One thread's live snapshot: its id, or why none was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakenSnapshot {
    /// The thread's name (`main`, `worker-1`) or its inspect text.
    pub thread: String,
    pub tid: Option<i32>,
    pub id: Option<String>,
    /// Why no snapshot was stored (rate limited, queue full ...), when `id` is None.
    pub note: Option<String>,
}

/// The live snapshots taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotsTaken {
    pub taken: Vec<TakenSnapshot>,
    /// How long the agent held the VM (every other Ruby thread waited) to take them, in all:
    /// it takes one thread at a time and lets the app run between two.
    pub held_us: u64,
    /// How long the request waited for the VM to give the agent a turn.
    pub waited_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeapDumpRequest {
    /// Where to write, as the process sees it (relative to its working directory); None: a
    /// new file in the agent's private directory.
    pub path: Option<String>,
    pub gzip: bool,
    /// Run a full GC first (the app pauses for it too).
    pub gc: bool,
    /// Write from the process itself, not a forked child: the app pauses for the whole dump.
    pub in_process: bool,
    /// How long to wait for the VM to give the agent a turn.
    pub wait_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeapCountRequest {
    /// Namespaces or classes (`MyApp`, `User`): their classes' instances are counted. Empty:
    /// every class.
    pub names: Vec<String>,
    pub wait_ms: u32,
}

/// A finished heap dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeapDumpResult {
    /// The file, as an absolute path in the process's view.
    pub path: String,
    pub objects: u64,
    pub roots: u64,
    /// Bytes written (compressed size with gzip).
    pub bytes: u64,
    /// How long the app's threads were stopped, in microseconds: the fork (and the GC when
    /// asked), or the whole dump in process.
    pub pause_us: u64,
    pub gc_us: u64,
    /// From the request reaching the VM to the file being complete.
    pub total_us: u64,
    pub forked: bool,
    /// Allocation tracing was on: lines carry file, line and generation.
    pub allocation_info: bool,
}

/// Live objects of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeapCensus {
    pub objects: u64,
    /// By VM type (`T_STRING`, ...).
    pub by_type: Vec<(String, u64)>,
    /// Instances per class (of the classes asked for), most first.
    pub classes: Vec<(String, u64)>,
    /// How long the VM was held to count, in microseconds.
    pub held_us: u64,
}

/// What the agent reads for `rbscope memory -p PID` (the CLI adds the process's own figures
/// from /proc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// `GC.stat`, as name/value pairs.
    pub gc: Vec<(String, i64)>,
    /// `ObjectSpace.count_objects`: live objects by type (`T_STRING`, ...), plus `TOTAL` and
    /// `FREE` slots.
    pub objects: Vec<(String, i64)>,
    /// Bytes of one Ruby heap page.
    pub heap_page_bytes: u64,
    /// glibc's malloc figures (`mallinfo2`), as name/value pairs; empty elsewhere.
    pub malloc: Vec<(String, u64)>,
    /// Ruby threads alive.
    pub threads: u64,
    /// How long the agent held the VM to read it, in microseconds.
    pub held_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRequest {
    /// Every Ruby method call (C methods only when selected).
    pub firehose: bool,
    /// Selectors as the user wrote them (`User#save`, `Foo#bar(self, arg)`).
    pub selectors: Vec<String>,
    /// Only report calls at least this slow, as `Slow` records.
    pub slow_ms: Option<u32>,
    /// GC start and end.
    pub gc: bool,
    /// Trace even where hooks cost more than while attached (YJIT on Ruby 3.1).
    pub force: bool,
    /// How long the client waits for the hooks to be installed.
    pub wait_ms: u32,
    /// Selectors may name code that is not loaded yet (`rbscope run -m`): those are hooked
    /// when it appears (looked for every 100 ms), and a note says so in the event stream.
    pub wait_for_code: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRequest {
    pub code: String,
    pub timeout_ms: u32,
    /// A console's binding: evals with the same id share local variables (the agent keeps a
    /// few, the least recently used go first). None: a fresh binding.
    pub binding: Option<u64>,
}

/// The answer to `Trace`: what is hooked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStarted {
    /// Each method hooked, labelled (`Foo#bar`), plus `every Ruby method` / `GC`.
    pub hooked: Vec<String>,
    /// What was asked but is not traced, and why.
    pub skipped: Vec<String>,
    /// Selectors waiting for their code to be loaded (with `wait_for_code`).
    pub waiting: Vec<String>,
    /// Bytes of the event ring between the app and this client.
    pub ring_bytes: u64,
    /// How long installing took, in microseconds (the app's threads waited for part of it).
    pub install_us: u64,
    /// The clock records are stamped with: `tsc` or `monotonic` (both in CLOCK_MONOTONIC's
    /// nanoseconds).
    pub clock: String,
}

/// Sent when tracing ended, if the client is still connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub events: u64,
    pub lost: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// False when the code raised (or timed out): `text` is then the error with its backtrace.
    pub ok: bool,
    /// `inspect` of the result, or the error: whole, however long.
    pub text: String,
    pub elapsed_us: u64,
    /// The code is not complete yet (an open `def`, block or string): nothing was run; a
    /// console reads another line.
    pub incomplete: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u32,
    pub agent_version: String,
    pub pid: u32,
    pub ruby_version: String,
}

/// The agent's state, as `rbscope doctor -p PID` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub started: bool,
    pub store: String,
    /// Settings in force, as name/value pairs.
    pub settings: Vec<(String, String)>,
    /// Counters (captured, reported, stored, dropped, ...), as name/value pairs.
    pub counters: Vec<(String, u64)>,
    /// Warnings the agent has for the operator (e.g. YJIT is on).
    pub warnings: Vec<String>,
}

/// One frame of a thread's stack, innermost first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackFrame {
    pub path: String,
    /// The line executing (a C function's is its caller's); None when unknown.
    pub line: Option<i64>,
    /// The better-backtrace label, `Billing::Invoice#total(rate)`.
    pub label: String,
    /// What the label is made of: the protocol's own copy of the backtrace crate's facts
    /// (see [`crate::facts`]), converted with `.into()`.
    pub facts: FrameFacts,
    pub cfunc: bool,
}

/// One Ruby thread and its stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadStack {
    pub name: Option<String>,
    /// The OS thread id, when Ruby knows it.
    pub tid: Option<i32>,
    /// running, sleeping, aborting or dead.
    pub status: String,
    pub main: bool,
    pub frames: Vec<StackFrame>,
}

/// Every Ruby thread's stack, as the agent read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stacks {
    pub threads: Vec<ThreadStack>,
    /// How long the agent held the VM (every other Ruby thread waited) to read them.
    pub held_us: u64,
    /// How long the request waited for the VM to give the agent a turn.
    pub waited_us: u64,
}

/// What the agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    Welcome(Welcome),
    /// The handshake failed; the text says what to do.
    Refused(String),
    Status(AgentStatus),
    Error(String),
    Stacks(Stacks),
    /// The agent could not run Ruby work in time (the text says why): nothing was read.
    Busy(String),
    Tracing(TraceStarted),
    /// Event records (see `rbscope-trace::events`), as the hooks wrote them.
    Events(#[serde(with = "serde_bytes")] Vec<u8>),
    Detached(TraceSummary),
    Evaluated(EvalResult),
    Memory(MemoryReport),
    HeapDumped(HeapDumpResult),
    HeapCensus(HeapCensus),
    /// Allocation tracing is now `on`; `was_on` says what it was.
    HeapTracking {
        on: bool,
        was_on: bool,
    },
    /// The live snapshots a `Snapshot` request stored (protocol 6).
    Snapshots(SnapshotsTaken),
    /// The breakpoint a `Break` asked for is set (or waits for its code).
    BreakSet(BreakSet),
    /// The breakpoint's line ran.
    BreakHit(BreakHit),
    /// Something about the breakpoint (set again after a reload, now set after waiting).
    BreakNote(String),
    /// The breakpoint is removed; the text says why (`max` hits, time up).
    BreakEnded(String),
    /// A logpoint's line ran (protocol 7).
    LogHit(LogHit),
}

/// The instruction for a protocol mismatch, from the client's point of view.
pub fn mismatch_advice(client: u32, agent: u32) -> String {
    if client > agent {
        format!(
            "the agent in this process speaks protocol {agent}, this CLI speaks {client}: \
             upgrade the rbscope gem in the app (or use an older rbscope CLI)"
        )
    } else {
        format!(
            "the agent in this process speaks protocol {agent}, this CLI speaks {client}: \
             upgrade the rbscope CLI"
        )
    }
}
