//! Better-backtrace facts for a frame kept by the debug inspector.
//!
//! The inspector gives each frame's `self` and its method's class (for a singleton method, the
//! object the singleton belongs to). From those we decide `#`, `.` or `$singleton`, and ask the
//! method's own class for the parameter names. The block depth still comes from the location's
//! label on this path; reading the VM's frames directly (rbscope-vm) replaces that.

use crate::rb::{self, Gvl, NIL};
use rb_sys::{ruby_value_type as T, VALUE};
use rbscope_backtrace::{FrameFacts, MethodKind, Param, Params};

pub fn facts(gvl: Gvl, label: &str, base_label: &str, klass: VALUE, self_v: VALUE) -> FrameFacts {
    let (block_depth, clause) = rbscope_backtrace::nesting_of_label(label);
    let is_module = |v: VALUE| matches!(rb::type_of(gvl, v), T::RUBY_T_CLASS | T::RUBY_T_MODULE);
    let self_class = || rb::class_name_of(gvl, self_v);

    // Code outside any method: `<main>`, `<top (required)>`, `<class:Foo>`.
    if base_label.starts_with('<') || klass == NIL {
        let class_body = base_label.starts_with("<class:") || base_label.starts_with("<module:");
        let (class_path, kind) = if is_module(self_v) && class_body {
            (rb::class_path(gvl, self_v), MethodKind::ClassLevel)
        } else {
            (self_class(), MethodKind::TopLevel)
        };
        return FrameFacts {
            class_path,
            method_name: base_label.to_string(),
            kind,
            block_depth,
            clause,
            params: Params::Known(Vec::new()),
        };
    }

    let (class_path, kind, method_owner) =
        if let Some((refined, defined_at)) = refinement(gvl, klass) {
            // A method of `refine String do ... end` inside `module Ext`.
            (
                rb::class_path(gvl, refined),
                MethodKind::Refinement {
                    refined_in: rb::class_path(gvl, defined_at),
                },
                Some(klass),
            )
        } else if !is_module(klass) {
            // A method defined on one specific object: the inspector gives the object.
            (
                rb::class_name_of(gvl, klass),
                MethodKind::ObjectSingleton,
                singleton_class(gvl, klass),
            )
        } else if is_module(self_v) && (self_v == klass || is_subclass(gvl, self_v, klass)) {
            (
                rb::class_path(gvl, klass),
                MethodKind::ClassLevel,
                singleton_class(gvl, klass),
            )
        } else {
            (
                rb::class_path(gvl, klass),
                MethodKind::Instance,
                Some(klass),
            )
        };
    let params = method_owner
        .and_then(|owner| parameters(gvl, owner, base_label))
        .map(Params::Known)
        .unwrap_or(Params::Unknown);
    FrameFacts {
        class_path,
        method_name: base_label.to_string(),
        kind,
        block_depth,
        clause,
        params,
    }
}

/// For a refinement module, the class it refines and the module that defined it (Ruby keeps
/// both as hidden instance variables of the refinement).
fn refinement(gvl: Gvl, klass: VALUE) -> Option<(VALUE, VALUE)> {
    if rb::type_of(gvl, klass) != T::RUBY_T_MODULE {
        return None;
    }
    // SAFETY: GVL held; rb_attr_get reads an ivar of a live module and never raises.
    let get = |name: &str| unsafe { rb_sys::rb_attr_get(klass, rb::intern(gvl, name)) };
    let refined = get("__refined_class__");
    let defined_at = get("__defined_at__");
    (refined != NIL && defined_at != NIL).then_some((refined, defined_at))
}

/// Facts for a frame known by its method entry (the fast path and `Rbscope.backtrace`): a
/// block run as a method (define_method, Sinatra routes) is named by the method it was
/// defined as, not by the class body the block was written in. Returns the facts and the
/// base label they used.
pub fn facts_for_entry(
    gvl: Gvl,
    label: &str,
    base_label: &str,
    me: VALUE,
    self_v: VALUE,
) -> (FrameFacts, String) {
    let klass = crate::fast_capture::frame_class(gvl, me);
    let as_method = (base_label.starts_with('<') && klass != NIL)
        .then(|| crate::fast_capture::called_name(gvl, me))
        .flatten();
    let (label, base_label) = match as_method {
        Some(name) => (name.clone(), name),
        None => (label.to_string(), base_label.to_string()),
    };
    (facts(gvl, &label, &base_label, klass, self_v), base_label)
}

fn is_subclass(gvl: Gvl, a: VALUE, b: VALUE) -> bool {
    if rb::type_of(gvl, a) != T::RUBY_T_CLASS || rb::type_of(gvl, b) != T::RUBY_T_CLASS {
        return false;
    }
    rb::core_call(gvl, "Module", "<=", a, &[b])
        .map(rb::truthy)
        .unwrap_or(false)
}

fn singleton_class(gvl: Gvl, v: VALUE) -> Option<VALUE> {
    rb::core_call(gvl, "Kernel", "singleton_class", v, &[]).ok()
}

/// `owner.instance_method(name).parameters`, through core methods only.
fn parameters(gvl: Gvl, owner: VALUE, name: &str) -> Option<Vec<Param>> {
    let sym = rb_sys::ID2SYM(rb::intern(gvl, name));
    let um = rb::core_call(gvl, "Module", "instance_method", owner, &[sym]).ok()?;
    let list = rb::core_call(gvl, "UnboundMethod", "parameters", um, &[]).ok()?;
    Some(
        rb::array_items(gvl, list)
            .into_iter()
            .filter_map(|pair| {
                let parts = rb::array_items(gvl, pair);
                let kind = rb::symbol_name(gvl, *parts.first()?)?;
                let name = parts.get(1).and_then(|n| rb::symbol_name(gvl, *n));
                Param::from_parts(&kind, name)
            })
            .collect(),
    )
}
