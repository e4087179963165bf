//! Turning a reported exception into a stored snapshot.
//!
//! Runs on the reporting Ruby thread (an escaped exception at exit or thread end,
//! `Rbscope.report`, a 500 response): finds the frames kept at raise, labels them, walks the
//! object graph under the configured limits, then hands the encoded blob to the writer thread.
//! Values are read *now*, not at raise: a change made in `rescue`/`ensure` before the report
//! shows up in the snapshot. A live snapshot (`Rbscope.snapshot`) copies a thread's frames now,
//! as a raise would, and goes the same way.

use crate::capture::fast_capture;
use crate::capture::graph::{self, RubyObjects};
use crate::capture::labels;
use crate::capture::ring;
use crate::counters::{add, bump};
use crate::ffi::capture::{self as rb, VALUE};
use crate::ffi::{self, Gvl, NIL};
use crate::state::Agent;
use rbscope_agent_core::capture::{is_app_path, FrameCap};
use rbscope_agent_core::report::{cause_chain, live_trigger, placed, store_job, tallies, Sources};
use rbscope_snapshot::walk::Walk;
use rbscope_snapshot::{
    fingerprint, trigger_class, CauseInfo, Context, ExceptionInfo, Frame, Snapshot, Trigger,
};
use rbscope_vm::captured;
use rbscope_vm::raise_record::{self, InspectorFrame, Record, VmFrame};

/// What a live snapshot was taken for, when not asked by someone: (kind, reason).
pub type Given = Option<(String, String)>;

/// Backtrace lines kept per exception.
const MAX_BACKTRACE: usize = 500;

/// Reports `exc`; returns the new snapshot's id, or None when nothing was stored (rate
/// limited, queue full, capture failed: each counted).
pub fn report(gvl: Gvl, agent: &Agent, exc: VALUE, ctx: VALUE, how: &str) -> Option<String> {
    bump(&agent.counters.reports);
    // GC stays off for the whole report: the kept VALUEs sit in Rust vectors from here on,
    // and the walk's identity map needs stable addresses (no compaction, no frees).
    let _gc_off = ffi::GcOff::new(gvl);
    let rec = ring::find(gvl, exc);
    let (kept, skipped) = rec
        .as_ref()
        .map(|r| kept_frames(gvl, agent, r))
        .unwrap_or_default();
    // Each cause whose raise was captured brings its own (often deeper) frames.
    let cause_values = causes(gvl, exc);
    let cause_kept: Vec<Vec<KeptFrame>> = cause_values
        .iter()
        .map(|c| {
            ring::find(gvl, *c)
                .map(|r| kept_frames(gvl, agent, &r).0)
                .unwrap_or_default()
        })
        .collect();
    let any_captured = rec.is_some() || cause_kept.iter().any(|k| !k.is_empty());
    if !any_captured {
        bump(&agent.counters.reports_without_capture);
    }
    let head = ExceptionInfo {
        class_name: ffi::class_name_of(gvl, exc),
        message: rb::exception_message(gvl, exc),
        backtrace: rb::backtrace_lines(gvl, "Exception", exc, MAX_BACKTRACE),
        causes: Vec::new(),
    };
    let causes = cause_values.into_iter().zip(cause_kept).collect();
    let subject = Subject {
        head,
        kept,
        skipped,
        causes,
        locals_missing: !any_captured,
        trigger: None,
        limited: true,
        take: None,
    };
    store(gvl, agent, subject, ctx, how)
}

/// How a live snapshot is taken, beyond which thread and who asks.
#[derive(Default)]
pub struct Live {
    /// Whether the rate limiter may drop it, like an exception's (the app asked; a person
    /// asking from outside is not).
    pub limited: bool,
    /// Its (kind, reason) when it is not kind `live` (a breakpoint, a slow request).
    pub given: Given,
    /// Taken with other threads' (`rbscope snapshot -p --all`): the id chosen for it
    /// beforehand and its take's context entries (rbscope_snapshot::take).
    pub take: Option<(String, Vec<(String, String)>)>,
}

/// A snapshot of `thread` (any live thread, this one too) now, as an exception's: every app
/// frame with self and locals, read while this thread holds the GVL (so `thread` is stopped at
/// a safe point), taken as `opts` says. None when its frames cannot be read or nothing was
/// stored.
pub fn live(
    gvl: Gvl,
    agent: &Agent,
    thread: VALUE,
    ctx: VALUE,
    how: &str,
    opts: Live,
) -> Option<String> {
    bump(&agent.counters.reports);
    let _gc_off = ffi::GcOff::new(gvl);
    let layout = fast_capture::verified_layout(gvl).ok()?;
    let th = rb::thread_struct(gvl, thread).filter(|th| *th != 0)?;
    let mut words = Vec::new();
    if !fast_capture::capture_thread(gvl, layout, th, &mut words) {
        return None;
    }
    let Some(Record::Vm(frames)) = raise_record::decode(&words) else {
        return None;
    };
    // GC is off: the VALUEs copied into `words` stay alive for the whole report.
    let (kept, skipped) = fast_frames(gvl, agent, layout, frames);
    // The thread's name as the context gives it (lib/rbscope/context.rb).
    let name = ffi::array_items(gvl, ctx)
        .first()
        .and_then(|n| ffi::to_string(gvl, *n));
    let thread_name = name.unwrap_or_else(|| rb::any_to_s(gvl, thread));
    let (trigger, message) = live_trigger(thread_name, how, opts.given);
    let head = ExceptionInfo {
        class_name: trigger_class(&trigger.kind),
        message,
        backtrace: rb::backtrace_lines(gvl, "Thread", thread, MAX_BACKTRACE),
        causes: Vec::new(),
    };
    let subject = Subject {
        head,
        kept,
        skipped,
        causes: Vec::new(),
        locals_missing: false,
        trigger: Some(trigger),
        limited: opts.limited,
        take: opts.take,
    };
    store(gvl, agent, subject, ctx, how)
}

/// What a snapshot is made of before its values are walked: the exception (or what stands
/// for one), the frames kept, and each cause with its own frames.
struct Subject {
    head: ExceptionInfo,
    kept: Vec<KeptFrame>,
    skipped: usize,
    causes: Vec<(VALUE, Vec<KeptFrame>)>,
    locals_missing: bool,
    /// What took a snapshot no exception caused.
    trigger: Option<Trigger>,
    /// Whether the rate limiter may drop it.
    limited: bool,
    /// Its id chosen beforehand and its take's context entries (Live::take).
    take: Option<(String, Vec<(String, String)>)>,
}

/// Walks the subject's values and hands the snapshot to the writer (rate limited by its
/// fingerprint unless the subject says not).
fn store(gvl: Gvl, agent: &Agent, s: Subject, ctx: VALUE, how: &str) -> Option<String> {
    let top = s
        .kept
        .first()
        .or_else(|| s.causes.iter().find_map(|(_, k)| k.first()))
        .map(|f| f.frame.label.clone())
        .unwrap_or_else(|| "-".into());
    let fp = fingerprint(&s.head.class_name, &top);
    if s.limited && !agent.rate_limiter_allows(&fp) {
        bump(&agent.counters.rate_limited);
        return None;
    }

    let magic = graph::magic_roots(gvl, &agent.config.magic_roots);
    let (mut walk, mut reader) = graph::walker(gvl, &agent.config, &magic);
    let out_frames = walk_frames(agent, &mut walk, &mut reader, &s.kept);
    let causes: Vec<CauseInfo> = s
        .causes
        .iter()
        .map(|(c, kept)| CauseInfo {
            class_name: ffi::class_name_of(gvl, *c),
            message: rb::exception_message(gvl, *c),
            backtrace: rb::backtrace_lines(gvl, "Exception", *c, MAX_BACKTRACE),
            frames: walk_frames(agent, &mut walk, &mut reader, kept),
        })
        .collect();
    let (objects, mut stats, mut extras) = walk.finish(&mut reader);
    extras.trigger = s.trigger;
    stats.frames_skipped = s.skipped as u32;
    stats.locals_missing = s.locals_missing;
    let (redacted, truncated, cut) = tallies(&stats);
    add(&agent.counters.values_redacted, redacted);
    add(&agent.counters.values_truncated, truncated);
    add(&agent.counters.objects_cut, cut);

    let (id, take_entries) = s
        .take
        .unwrap_or_else(|| (ulid::Ulid::new().to_string(), Vec::new()));
    let mut context = context(gvl, agent, ctx, how);
    context.extra.extend(take_entries);
    let snapshot = Snapshot {
        id,
        reported_at_ms: rbscope_agent_core::writer::now_ms(),
        fingerprint: fp,
        exception: ExceptionInfo { causes, ..s.head },
        frames: out_frames,
        objects,
        context,
        stats,
        extras,
    };
    let raised_at = s.kept.first().map(|k| &k.frame);
    let Some(job) = store_job(&snapshot, raised_at, std::process::id()) else {
        bump(&agent.counters.encode_errors);
        return None;
    };
    if agent.writer.submit(job) {
        Some(snapshot.id)
    } else {
        bump(&agent.counters.queue_full);
        None
    }
}

/// A captured frame ready for the walk: the snapshot's frame without its values and source,
/// its file's absolute path (when known), its `self` and its locals.
struct KeptFrame {
    frame: Frame,
    abs_path: Option<String>,
    self_value: VALUE,
    locals: Vec<(String, VALUE)>,
}

/// The app frames of a capture record (either path), capped at `max_frames`, and how many
/// app frames went over the cap.
fn kept_frames(gvl: Gvl, agent: &Agent, slot: &ring::Slot) -> (Vec<KeptFrame>, usize) {
    match raise_record::decode(&slot.words) {
        Some(Record::Vm(frames)) => match fast_capture::layout() {
            Some(layout) => fast_frames(gvl, agent, layout, frames),
            None => (Vec::new(), 0),
        },
        Some(Record::Inspector { frames, skipped }) => {
            let kept = frames
                .iter()
                .map(|f| {
                    let (frame, abs_path) = inspected_frame(gvl, f);
                    KeptFrame {
                        frame,
                        abs_path,
                        self_value: f.self_value as VALUE,
                        locals: rb::binding_locals(gvl, f.binding as VALUE),
                    }
                })
                .collect();
            (kept, skipped)
        }
        None => (Vec::new(), 0),
    }
}

fn fast_frames(
    gvl: Gvl,
    agent: &Agent,
    layout: &rbscope_vm::Layout,
    decoded: Vec<VmFrame>,
) -> (Vec<KeptFrame>, usize) {
    let mut kept = Vec::new();
    let mut cap = FrameCap::new(agent.config.max_frames);
    let running = fast_capture::running_frames(gvl, layout);
    // SAFETY: GVL held; the iseqs read are kept alive by the ring (and GC is off).
    let mem = unsafe { fast_capture::vm() };
    // A rescue or ensure clause's frame stands for the frame it runs in, as in Ruby 3.4+'s
    // backtraces and the inspector path (capture/mod.rs), on every Ruby.
    let hidden = captured::hidden_by_clauses(&mem, layout, &decoded);
    for (mut f, hidden) in decoded.into_iter().zip(hidden) {
        if f.cfunc || hidden {
            continue;
        }
        let text = fast_capture::frame_text(gvl, &f);
        if !is_app_path(&agent.config, text.path.as_bytes()) {
            continue;
        }
        if !cap.admit() {
            continue;
        }
        fast_capture::refresh_if_running(gvl, layout, &mut f, &running);
        let (facts, base_label) = labels::facts_for_entry(
            gvl,
            &labels::iseq_label(gvl, f.iseq as VALUE, Some(text.label.clone())),
            &text.base_label,
            f.method_entry as VALUE,
            f.self_value as VALUE,
        );
        kept.push(KeptFrame {
            frame: placed(f.index, facts, &base_label, text.path, text.lineno),
            abs_path: text.abs_path,
            self_value: f.self_value as VALUE,
            locals: fast_capture::locals(gvl, layout, &f),
        });
    }
    (kept, cap.skipped)
}

/// Captures self and locals of each kept frame into the walk's arena.
fn walk_frames(
    agent: &Agent,
    walk: &mut Walk<VALUE>,
    reader: &mut RubyObjects,
    kept: &[KeptFrame],
) -> Vec<Frame> {
    let mut sources = Sources::default();
    kept.iter()
        .map(|k| {
            let f = &k.frame;
            Frame {
                self_value: walk.frame_self(reader, k.self_value),
                locals: k
                    .locals
                    .iter()
                    .map(|(name, v)| (name.clone(), walk.named(reader, name, *v, 0)))
                    .collect(),
                source: sources.excerpt(
                    k.abs_path.as_deref().unwrap_or(&f.path),
                    f.lineno,
                    agent.config.source_context_lines,
                ),
                ..f.clone()
            }
        })
        .collect()
}

/// An inspector frame placed and labelled, and its file's absolute path.
fn inspected_frame(gvl: Gvl, f: &InspectorFrame) -> (Frame, Option<String>) {
    let loc = f.location as VALUE;
    let text = |name: &str| {
        ffi::core_call(gvl, "Thread::Backtrace::Location", name, loc, &[])
            .ok()
            .and_then(|v| ffi::to_string(gvl, v))
    };
    let lineno = ffi::core_call(gvl, "Thread::Backtrace::Location", "lineno", loc, &[])
        .ok()
        .and_then(ffi::fixnum)
        .unwrap_or(0);
    // The iseq's own label when the capture kept the iseq: Ruby 3.4's locations name a
    // rescue clause's frame as the method, without `rescue in`.
    let iseq = f.iseq as VALUE;
    let label = (iseq != NIL)
        .then(|| labels::iseq_label(gvl, iseq, None))
        .or_else(|| text("label"))
        .unwrap_or_default();
    let base_label = text("base_label").unwrap_or_else(|| label.clone());
    let (me, self_value) = (f.method_entry as VALUE, f.self_value as VALUE);
    let (facts, base_label) = if me != NIL && me != 0 {
        labels::facts_for_entry(gvl, &label, &base_label, me, self_value)
    } else {
        let klass = labels::as_frame_class(gvl, f.klass as VALUE);
        let facts = labels::facts(gvl, &label, &base_label, klass, self_value);
        (facts, base_label)
    };
    let path = text("path").unwrap_or_default();
    let frame = placed(f.depth, facts, &base_label, path, lineno);
    (frame, text("absolute_path"))
}

/// The cause chain, outermost first, bounded and loop-safe.
fn causes(gvl: Gvl, exc: VALUE) -> Vec<VALUE> {
    cause_chain(exc, |e| rb::exception_cause(gvl, e))
}

fn context(gvl: Gvl, agent: &Agent, ctx: VALUE, how: &str) -> Context {
    let parts = ffi::array_items(gvl, ctx);
    let pairs = |v: Option<&VALUE>| -> Vec<(String, String)> {
        v.map(|v| ffi::array_items(gvl, *v))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let kv = ffi::array_items(gvl, p);
                Some((
                    ffi::to_string(gvl, *kv.first()?)?,
                    ffi::to_string(gvl, *kv.get(1)?)?,
                ))
            })
            .collect()
    };
    let mut extra = pairs(parts.get(2));
    extra.push(("reported_by".into(), how.into()));
    Context {
        hostname: agent.hostname.clone(),
        pid: std::process::id(),
        process_title: rb::process_title(gvl).unwrap_or_default(),
        ruby_version: ffi::const_text(gvl, "RUBY_VERSION"),
        ruby_platform: ffi::const_text(gvl, "RUBY_PLATFORM"),
        app_root: agent.config.app_root.clone(),
        app_revision: agent.config.app_revision.clone(),
        thread_name: parts.first().and_then(|v| ffi::to_string(gvl, *v)),
        gems: pairs(parts.get(1)),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        extra,
    }
}
