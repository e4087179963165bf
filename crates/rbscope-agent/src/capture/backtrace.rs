//! `Rbscope.backtrace(thread)`: any thread's stack, read from the VM's control frames.
//!
//! Ruby 3.1 has no API for another thread's frames (`Thread#backtrace_locations` gives only
//! paths, lines and labels, not the class, the kind of method or the parameters). With the GVL
//! held, every other Ruby thread is stopped at a safe point and its control frames do not
//! change, so we read them as the fast capture does (rbscope-vm, `walk_all`): Ruby and C
//! frames, innermost first.
//!
//! Reading is cheap and everything else is lazy, like `Thread::Backtrace::Location`: each
//! frame is a small `Rbscope::Frame` that keeps the iseq, instruction position, method entry
//! and `self` alive (marked) and works out its label, path, line and parameters only when
//! asked.

use crate::capture::fast_capture;
use crate::capture::labels;
use crate::ffi::capture::{self as rb, AsRawValue, FromRawValue, IseqText, T, VALUE};
use crate::ffi::guard::{self, Feature};
use crate::ffi::marker::MarkerType;
use crate::ffi::{self, Gvl};
use magnus::{gc, prelude::*, DataTypeFunctions, Error, RArray, Ruby, TypedData, Value};
use rbscope_agent_core::capture::{backtraces_agree, ListFrames, Memo};
use rbscope_agent_core::frame_facts::{kind_name, param_parts};
use rbscope_backtrace::{FrameFacts, MethodKind, Params};
use rbscope_vm::captured::{self, FrameRef};
use rbscope_vm::raise_record::{self, Record};
use rbscope_vm::Layout;
use std::cell::OnceCell;
use std::sync::Arc;

/// Frames read per call at most.
const MAX_FRAMES: usize = 10_000;

type FactsKey = (VALUE, VALUE, bool, VALUE);

/// Facts already worked out, shared by every frame of the same method and receiver class. The
/// keys are object addresses, valid only while those objects neither die nor move: so the cache
/// marks (and so pins) every object in its keys, through a marker object, and an address in it
/// cannot be reused for another object. It survives garbage collections; when full it starts
/// over (and what only it kept can then be collected).
type FactsCache = Memo<FactsKey, Arc<FrameFacts>>;

/// Enough for the distinct methods of many stacks; beyond it the cache starts over.
const FACTS_CACHE_MAX: usize = 4096;

struct GvlCell(std::cell::UnsafeCell<Option<FactsCache>>);
// SAFETY: only touched with the GVL held (frame methods, and the GC's mark phase, which also
// runs under the GVL), never from two threads at once; no Ruby object is allocated while it is
// borrowed, so the mark function never sees it half-changed.
unsafe impl Sync for GvlCell {}

static FACTS: GvlCell = GvlCell(std::cell::UnsafeCell::new(None));
static FACTS_MARKER: MarkerType = MarkerType::new(c"rbscope frame facts", mark_facts);

unsafe extern "C" fn mark_facts(_data: *mut std::ffi::c_void) {
    let readers = [Feature::Backtrace, Feature::Capture, Feature::Live];
    guard::mark(&readers, "marking frame facts", || {
        // SAFETY: called by the GC under the GVL; no borrow of the cache is alive during GC.
        if let Some(cache) = unsafe { &*FACTS.0.get() } {
            for (iseq, me, _, class) in cache.keys() {
                for v in [*iseq, *me, *class] {
                    // SAFETY: in the GC's mark phase; the keys are live VALUEs (marked from
                    // here since they were stored) or 0, which gc_mark skips.
                    unsafe { ffi::gc_mark(v) };
                }
            }
        }
    })
}

fn cached_facts(key: &FactsKey) -> Option<Arc<FrameFacts>> {
    // SAFETY: GVL held (frame methods); the borrow ends before anything can allocate.
    let cache = unsafe { &*FACTS.0.get() };
    cache.as_ref().and_then(|c| c.get(key))
}

fn keep_facts(key: FactsKey, facts: Arc<FrameFacts>) {
    FACTS_MARKER.ensure(gvl());
    // SAFETY: GVL held; the borrow ends here and nothing in it allocates Ruby objects.
    let cache = unsafe { &mut *FACTS.0.get() };
    let cache = cache.get_or_insert_with(|| Memo::new(FACTS_CACHE_MAX));
    cache.insert(key, facts);
}

/// One frame of a thread's stack at the moment it was read.
#[derive(TypedData)]
#[magnus(class = "Rbscope::Frame", free_immediately, mark, size)]
pub struct Frame {
    /// The iseq of the line the frame is shown at: its own, or for a C function (and a Ruby
    /// frame this Ruby shows like one) that of the Ruby code that called it, or 0 when there
    /// is none.
    iseq: VALUE,
    /// The instruction index being executed in `iseq`.
    pos: usize,
    /// The iseq of the frame's own code (0 for a C function).
    code: VALUE,
    /// The method entry (0 at top level and in class bodies).
    me: VALUE,
    self_value: VALUE,
    cfunc: bool,
    /// Worked out on the first question about the frame, then kept.
    facts: OnceCell<Arc<FrameFacts>>,
}

impl DataTypeFunctions for Frame {
    fn mark(&self, marker: &gc::Marker) {
        for v in [self.iseq, self.code, self.me, self.self_value] {
            if v != 0 {
                // SAFETY: these are live VALUEs read from the stack while the GVL was held;
                // marking (and pinning) keeps them so for as long as this frame lives.
                marker.mark(unsafe { Value::from_raw(v) });
            }
        }
    }
}

fn gvl() -> Gvl {
    // SAFETY: Ruby calls these methods with the GVL held.
    unsafe { Gvl::assume() }
}

impl Frame {
    fn path(&self) -> Option<String> {
        // SAFETY: the iseq is live: this frame marks it.
        (self.iseq != 0).then(|| unsafe { rb::iseq_text(gvl(), self.iseq, IseqText::Path) })
    }

    fn lineno(&self) -> i64 {
        if self.iseq == 0 {
            return 0;
        }
        // SAFETY: a live iseq (this frame marks it); pos is within it (read from its own
        // frame's pc).
        unsafe { rb::iseq_line(gvl(), self.iseq, self.pos) }
    }

    fn facts(&self) -> &FrameFacts {
        self.facts.get_or_init(|| {
            let key = self.cache_key();
            if let Some(hit) = cached_facts(&key) {
                return hit;
            }
            let facts = Arc::new(self.work_out_facts());
            keep_facts(key, facts.clone());
            facts
        })
    }

    /// What a frame's facts depend on: its code, its method entry, and `self` only as far as
    /// "is it a class or module, and which" or else "which class is it an instance of".
    fn cache_key(&self) -> FactsKey {
        let self_key = match ffi::type_of(gvl(), self.self_value) {
            T::RUBY_T_CLASS | T::RUBY_T_MODULE => self.self_value,
            _ => rb::class_of(gvl(), self.self_value),
        };
        (self.code, self.me, self.cfunc, self_key)
    }

    fn work_out_facts(&self) -> FrameFacts {
        let gvl = gvl();
        if self.cfunc {
            let name = labels::called_name(gvl, self.me).unwrap_or_else(|| "?".into());
            let klass = labels::frame_class(gvl, self.me);
            let mut facts = labels::facts(gvl, &name, &name, klass, self.self_value);
            facts.params = facts.params.of_c_function();
            return facts;
        }
        let label = labels::iseq_label(gvl, self.code, None);
        // SAFETY: a Ruby frame always has its iseq, which this frame marks (live).
        let base = unsafe { rb::iseq_text(gvl, self.code, IseqText::BaseLabel) };
        labels::facts_for_entry(gvl, &label, &base, self.me, self.self_value).0
    }

    fn label(&self) -> String {
        self.facts().label_with_params()
    }

    fn method_name(&self) -> String {
        self.facts().method_name.clone()
    }

    fn class_path(&self) -> String {
        self.facts().class_path.clone()
    }

    fn kind(ruby: &Ruby, rb_self: &Self) -> Value {
        ruby.to_symbol(kind_name(&rb_self.facts().kind)).as_value()
    }

    fn refined_in(&self) -> Option<String> {
        match &self.facts().kind {
            MethodKind::Refinement { refined_in } => Some(refined_in.clone()),
            _ => None,
        }
    }

    fn block_depth(&self) -> u32 {
        self.facts().block_depth
    }

    /// `:rescue` or `:ensure` for a frame running such a clause, else nil.
    fn clause(ruby: &Ruby, rb_self: &Self) -> Option<magnus::Symbol> {
        rb_self.facts().clause.map(|c| ruby.to_symbol(c.name()))
    }

    fn is_cfunc(&self) -> bool {
        self.cfunc
    }

    /// Whether the frame runs Ruby's own code: a C function or a method of Ruby's
    /// `<internal:...>` files (which, unlike C functions, some Rubies place at their own line).
    /// These are the frames a snapshot leaves out as not the app's.
    fn is_internal(&self) -> bool {
        self.cfunc
            || (self.code != 0
                // SAFETY: the code's iseq is live: this frame marks it.
                && unsafe { rb::iseq_text(gvl(), self.code, IseqText::Path) }
                    .starts_with("<internal:"))
    }

    /// Like `Method#parameters`: `[[:req, :a], [:opt, :b], [:rest], ...]`, or nil when unknown.
    fn parameters(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let Params::Known(params) = &rb_self.facts().params else {
            return Ok(ruby.qnil().as_value());
        };
        let out = ruby.ary_new();
        for p in params {
            let (kind, name) = param_parts(p);
            let pair = ruby.ary_new();
            pair.push(ruby.to_symbol(kind))?;
            if let Some(n) = name {
                pair.push(ruby.to_symbol(n))?;
            }
            out.push(pair)?;
        }
        Ok(out.as_value())
    }

    /// `path:line:in Label(params)`, as the better backtrace prints it.
    fn to_s(&self) -> String {
        let facts = self.facts();
        rbscope_backtrace::format_line(
            &self.path().unwrap_or_else(|| "(unknown)".into()),
            self.lineno(),
            facts,
        )
    }
}

/// `Rbscope::Native.backtrace(thread)`: the thread's frames, innermost first (an empty Array
/// for a thread that has finished).
fn backtrace(ruby: &Ruby, thread: Value) -> Result<RArray, Error> {
    let gvl = gvl();
    let Some(th) = rb::thread_struct(gvl, thread.as_raw()) else {
        return Err(Error::new(
            ruby.exception_type_error(),
            "rbscope: backtrace wants a Thread",
        ));
    };
    let layout = fast_capture::verified_layout(gvl).map_err(|why| {
        Error::new(
            ruby.exception_not_imp_error(),
            format!("rbscope: cannot read thread stacks here: {why}"),
        )
    })?;
    let out = ruby.ary_new();
    if th == 0 {
        return Ok(out);
    }
    // SAFETY: GVL held, so the thread is this one or stopped at a safe point, and its control
    // frames do not change while they are read; its rb_thread_t is live (not freed: th != 0).
    let read = captured::thread_frames(&unsafe { fast_capture::vm() }, layout, th, MAX_FRAMES);
    push_frames(out, layout, read)?;
    Ok(out)
}

/// Turns frames (innermost first) into `Frame`s appended to `out`, placed as the running
/// Ruby's own backtraces place them (`rbscope_backtrace::place_frames`): a C function, and a
/// Ruby frame this release shows like one, at the line of the Ruby code that called it; a
/// rescue or ensure clause's frame stands for the frame it runs in, which is left out (as Ruby
/// 3.4+ does, on every Ruby).
fn push_frames(out: RArray, layout: &Layout, read: Vec<FrameRef>) -> Result<(), Error> {
    let gvl = gvl();
    // SAFETY: GVL held; the iseqs read are live (held by the caller's frames or record).
    let mem = unsafe { fast_capture::vm() };
    // SAFETY: a live iseq read from the stack (held by the caller).
    let path = |iseq: usize| unsafe { rb::iseq_text(gvl, iseq as VALUE, IseqText::Path) };
    for p in captured::place(&mem, layout, &read, path) {
        let f = p.frame;
        out.push(Frame {
            iseq: p.iseq as VALUE,
            pos: p.pos,
            code: if f.cfunc { 0 } else { f.iseq as VALUE },
            me: if f.me as VALUE == ffi::FALSE {
                0
            } else {
                f.me as VALUE
            },
            self_value: f.self_value as VALUE,
            cfunc: f.cfunc,
            facts: OnceCell::new(),
        })?;
    }
    Ok(())
}

/// `Rbscope::Native.better_backtrace(exception)`: the frames of the stack `exception` was
/// raised from, copied at raise by the fast capture, innermost first. Nil when there is no such
/// copy (raised before rbscope started, or inside rbscope, the capture already replaced by
/// newer raises, or a Ruby where the fast capture is off), and nil when the copy does not
/// agree with `locations`, the exception's own `backtrace_locations` (one set by hand, or a
/// re-raise from elsewhere after the first capture was replaced): a better backtrace never
/// contradicts Ruby's.
fn better_backtrace(ruby: &Ruby, exc: Value, locations: Value) -> Result<Option<RArray>, Error> {
    let gvl = gvl();
    let Some(slot) = crate::capture::ring::find(gvl, exc.as_raw()) else {
        return Ok(None);
    };
    let (Some(Record::Vm(frames)), Some(layout)) =
        (raise_record::decode(&slot.words), fast_capture::layout())
    else {
        return Ok(None);
    };
    let read: Vec<FrameRef> = frames.iter().map(FrameRef::of_record).collect();
    let out = ruby.ary_new();
    // The ring keeps the copied VALUEs alive (and still holds this capture: nothing here
    // raises) until each Frame marks its own.
    push_frames(out, layout, read)?;
    Ok(agrees(gvl, out, locations.as_raw())?.then_some(out))
}

/// Whether `frames` are the frames of `locations` (the exception's `backtrace_locations`),
/// as `rbscope_agent_core::capture::backtraces_agree` decides.
fn agrees(gvl: Gvl, frames: RArray, locations: VALUE) -> Result<bool, Error> {
    let locations = ffi::array_items(gvl, locations);
    let labels: Vec<String> = locations
        .iter()
        .map(|loc| {
            ffi::call(gvl, *loc, "label", &[])
                .ok()
                .and_then(|l| ffi::to_string(gvl, l))
                .unwrap_or_default()
        })
        .collect();
    let mut ours = Vec::with_capacity(frames.len());
    for i in 0..frames.len() {
        ours.push(<&Frame>::try_convert(frames.entry::<Value>(i as isize)?)?);
    }
    let mut ours = ListFrames {
        items: &ours,
        line: |f: &&Frame| Some(f.lineno()),
        path: |f: &&Frame| f.path(),
    };
    let mut theirs = ListFrames {
        items: &locations,
        line: |loc: &VALUE| {
            ffi::call(gvl, *loc, "lineno", &[])
                .ok()
                .and_then(ffi::fixnum)
        },
        path: |loc: &VALUE| {
            let p = ffi::call(gvl, *loc, "path", &[]).ok()?;
            ffi::to_string(gvl, p)
        },
    };
    Ok(backtraces_agree(&mut ours, &mut theirs, &labels))
}

/// `thread`'s frames as the wire protocol carries them (labels worked out here).
pub fn proto_frames(ruby: &Ruby, thread: VALUE) -> Result<Vec<rbscope_proto::StackFrame>, Error> {
    // SAFETY: `thread` is a live Thread VALUE from Thread.list, held by the caller.
    let frames = backtrace(ruby, unsafe { Value::from_raw(thread) })?;
    let mut out = Vec::with_capacity(frames.len());
    for i in 0..frames.len() {
        let v: Value = frames.entry(i as isize)?;
        let f = <&Frame>::try_convert(v)?;
        let facts = f.facts().clone();
        out.push(rbscope_proto::StackFrame {
            path: f.path().unwrap_or_default(),
            line: (f.iseq != 0).then(|| f.lineno()),
            label: facts.label_with_params(),
            facts: facts.into(),
            cfunc: f.cfunc,
        });
    }
    Ok(out)
}

pub fn define(ruby: &Ruby, module: magnus::RModule, native: magnus::RModule) -> Result<(), Error> {
    use magnus::{function, method};
    let class = module.define_class("Frame", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_method("path", method!(Frame::path, 0))?;
    class.define_method("lineno", method!(Frame::lineno, 0))?;
    class.define_method("label", method!(Frame::label, 0))?;
    class.define_method("method_name", method!(Frame::method_name, 0))?;
    class.define_method("class_path", method!(Frame::class_path, 0))?;
    class.define_method("kind", method!(Frame::kind, 0))?;
    class.define_method("refined_in", method!(Frame::refined_in, 0))?;
    class.define_method("block_depth", method!(Frame::block_depth, 0))?;
    class.define_method("clause", method!(Frame::clause, 0))?;
    class.define_method("cfunc?", method!(Frame::is_cfunc, 0))?;
    class.define_method("internal?", method!(Frame::is_internal, 0))?;
    class.define_method("parameters", method!(Frame::parameters, 0))?;
    class.define_method("to_s", method!(Frame::to_s, 0))?;
    native.define_singleton_method("backtrace", function!(backtrace, 1))?;
    native.define_singleton_method("better_backtrace", function!(better_backtrace, 2))?;
    Ok(())
}
