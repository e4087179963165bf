//! Better-backtrace facts for a frame, in process.
//!
//! From a frame's method class (for a singleton method, the object the singleton belongs to:
//! see [`as_frame_class`]) and its `self` we decide `#`, `.` or `$singleton`, and ask the
//! method's own class for the parameter names; the block depth and any rescue/ensure clause
//! come from the iseq's own label. When the method entry is known ([`facts_for_entry`]: the
//! fast path, `Rbscope.backtrace`, and the inspector path where the VM layout is known), a
//! block run as a method is named by that method, as the remote reader (rbscope-vm) names it.

use crate::capture::fast_capture;
use crate::ffi::capture::{self as rb, IseqText, T, VALUE};
use crate::ffi::{self, Gvl, NIL};
use rbscope_agent_core::frame_facts::{self, Classes};
use rbscope_backtrace::{FrameFacts, Param};
use rbscope_vm::captured;

/// Facts for a frame from its iseq labels, its method's class as [`as_frame_class`] gives it
/// (nil outside methods) and its `self` (decided by rbscope-agent-core's `frame_facts`).
pub fn facts(gvl: Gvl, label: &str, base_label: &str, klass: VALUE, self_v: VALUE) -> FrameFacts {
    let klass = (klass != NIL).then_some(klass);
    frame_facts::facts(&RubyClasses(gvl), label, base_label, klass, self_v)
}

/// Classes, modules and objects as the naming asks about them.
struct RubyClasses(Gvl);

impl Classes for RubyClasses {
    type V = VALUE;

    fn is_module(&self, v: VALUE) -> bool {
        matches!(ffi::type_of(self.0, v), T::RUBY_T_CLASS | T::RUBY_T_MODULE)
    }

    fn path(&self, module: VALUE) -> String {
        ffi::class_path(self.0, module)
    }

    fn class_name_of(&self, v: VALUE) -> String {
        ffi::class_name_of(self.0, v)
    }

    /// Ruby keeps both as hidden instance variables of the refinement.
    fn refinement(&self, klass: VALUE) -> Option<(VALUE, VALUE)> {
        if ffi::type_of(self.0, klass) != T::RUBY_T_MODULE {
            return None;
        }
        let refined = rb::ivar_get(self.0, klass, "__refined_class__");
        let defined_at = rb::ivar_get(self.0, klass, "__defined_at__");
        (refined != NIL && defined_at != NIL).then_some((refined, defined_at))
    }

    fn is_subclass(&self, a: VALUE, b: VALUE) -> bool {
        let gvl = self.0;
        if ffi::type_of(gvl, a) != T::RUBY_T_CLASS || ffi::type_of(gvl, b) != T::RUBY_T_CLASS {
            return false;
        }
        ffi::core_call(gvl, "Module", "<=", a, &[b])
            .map(ffi::truthy)
            .unwrap_or(false)
    }

    fn singleton_class(&self, v: VALUE) -> Option<VALUE> {
        ffi::core_call(self.0, "Kernel", "singleton_class", v, &[]).ok()
    }

    /// Through core methods only.
    fn parameters(&self, owner: VALUE, name: &str) -> Option<Vec<Param>> {
        let gvl = self.0;
        let sym = ffi::symbol(gvl, name);
        let um = ffi::core_call(gvl, "Module", "instance_method", owner, &[sym]).ok()?;
        let list = ffi::core_call(gvl, "UnboundMethod", "parameters", um, &[]).ok()?;
        Some(
            ffi::array_items(gvl, list)
                .into_iter()
                .filter_map(|pair| {
                    let parts = ffi::array_items(gvl, pair);
                    let kind = ffi::symbol_name(gvl, *parts.first()?)?;
                    let name = parts.get(1).and_then(|n| ffi::symbol_name(gvl, *n));
                    Param::from_parts(&kind, name)
                })
                .collect(),
        )
    }
}

/// The class as [`facts`] wants it, from the owner of a frame's method: a singleton class
/// stands for the object it belongs to, an included module's iclass for the module. Ruby's
/// debug inspector gives the owner as it is (a singleton class itself: `Pricing.round_it`
/// would read `#<Class:Pricing>#round_it`); [`frame_class`] resolves a method
/// entry's class the same way. Resolve once: a method of a singleton class's singleton class
/// (`class << obj; def self.m`) belongs to the singleton class `#<Class:obj>`.
pub fn as_frame_class(gvl: Gvl, klass: VALUE) -> VALUE {
    if klass == NIL || klass == 0 {
        return NIL;
    }
    if let Some(module) = rb::iclass_module(gvl, klass) {
        return module;
    }
    if ffi::is_singleton_class(gvl, klass) {
        return ffi::attached_object(gvl, klass);
    }
    klass
}

/// The name a method entry was called by (`called_id`), e.g. the name given to
/// `define_method`.
pub fn called_name(gvl: Gvl, me: VALUE) -> Option<String> {
    if me == ffi::FALSE || me == 0 {
        return None;
    }
    // SAFETY: GVL held; `me` is a live method entry (kept by its holder).
    let id = captured::called_id(&unsafe { fast_capture::vm() }, me as usize).ok()?;
    ffi::id_name(gvl, id as _)
}

/// The class the inspector would report for a frame: the method entry's defined class, with
/// an included module's iclass resolved to the module and a singleton class to its object.
pub fn frame_class(gvl: Gvl, me: VALUE) -> VALUE {
    if me == ffi::FALSE || me == 0 {
        return NIL;
    }
    // SAFETY: GVL held; `me` is a live method entry (kept by its holder).
    let Ok(klass) = captured::defined_class(&unsafe { fast_capture::vm() }, me as usize) else {
        return NIL;
    };
    if klass == 0 {
        return NIL;
    }
    as_frame_class(gvl, klass as VALUE)
}

/// Facts for a frame known by its method entry (the fast path, `Rbscope.backtrace`, and the
/// inspector path when the entry could be read): a block run as a method (define_method,
/// Sinatra routes) is named by the method it was defined as, not by the code the block was
/// written in, and its block depth counts only the blocks inside it, as the remote reader
/// (rbscope-vm stacks.rs) counts them. Returns the facts and the base label they used.
pub fn facts_for_entry(
    gvl: Gvl,
    label: &str,
    base_label: &str,
    me: VALUE,
    self_v: VALUE,
) -> (FrameFacts, String) {
    let klass = frame_class(gvl, me);
    let as_method = (klass != NIL && is_bmethod(gvl, me))
        .then(|| called_name(gvl, me))
        .flatten();
    let Some(name) = as_method else {
        return (
            facts(gvl, label, base_label, klass, self_v),
            base_label.to_string(),
        );
    };
    let (depth, clause) = rbscope_backtrace::nesting_of_label(label);
    let body_depth = bmethod_body_depth(gvl, me, &name).unwrap_or(0);
    let mut f = facts(gvl, &name, &name, klass, self_v);
    f.block_depth = depth.saturating_sub(body_depth);
    f.clause = clause;
    (f, name)
}

/// An iseq's own label (`block (2 levels) in m`, `rescue in m`), from which the block depth
/// and clause are read; code given to `eval` is labelled by the code it runs in
/// (`rbscope_vm::iseq::labelled_by`), as the remote reader counts it. `iseq` must be live;
/// `own` is its own label when already read.
pub fn iseq_label(gvl: Gvl, iseq: VALUE, own: Option<String>) -> String {
    let code = fast_capture::verified_layout(gvl)
        .ok()
        .and_then(|l| {
            // SAFETY: GVL held; `iseq` is live (the caller's contract), and so are the iseqs
            // it links to.
            let mem = unsafe { fast_capture::vm() };
            rbscope_vm::iseq::labelled_by(&mem, l, iseq as usize).ok()
        })
        .map_or(iseq, |v| v as VALUE);
    match own {
        Some(label) if code == iseq => label,
        // SAFETY: `code` is `iseq` or the live iseq it is labelled by.
        _ => unsafe { rb::iseq_text(gvl, code, IseqText::Label) },
    }
}

/// Whether `me` is a method defined from a block (`VM_METHOD_TYPE_BMETHOD`).
fn is_bmethod(gvl: Gvl, me: VALUE) -> bool {
    let Ok(layout) = fast_capture::verified_layout(gvl) else {
        return false;
    };
    if me == 0 || me == ffi::FALSE || me == NIL {
        return false;
    }
    // SAFETY: GVL held; `me` is a live method entry (kept by its holder), and its definition.
    captured::is_bmethod(&unsafe { fast_capture::vm() }, layout, me as usize)
}

/// How many blocks deep the block a bmethod runs was written (`define_method(:m) { }` in a
/// class body: 1), from `RubyVM::InstructionSequence.of` the method's label.
fn bmethod_body_depth(gvl: Gvl, me: VALUE, name: &str) -> Option<u32> {
    // SAFETY: GVL held; `me` is a live method entry (checked by is_bmethod).
    let owner = captured::defined_class(&unsafe { fast_capture::vm() }, me as usize).ok()? as VALUE;
    let owner = match ffi::type_of(gvl, owner) {
        T::RUBY_T_ICLASS => rb::iclass_module(gvl, owner)?,
        T::RUBY_T_CLASS | T::RUBY_T_MODULE => owner,
        _ => return None,
    };
    let sym = ffi::symbol(gvl, name);
    let um = ffi::core_call(gvl, "Module", "instance_method", owner, &[sym]).ok()?;
    let iseq_class = ffi::const_at(gvl, "RubyVM::InstructionSequence")?;
    let iseq = ffi::call(gvl, iseq_class, "of", &[um]).ok()?;
    if iseq == NIL {
        return None;
    }
    let label = ffi::call(gvl, iseq, "label", &[]).ok()?;
    let label = ffi::to_string(gvl, label)?;
    Some(rbscope_backtrace::nesting_of_label(&label).0)
}
