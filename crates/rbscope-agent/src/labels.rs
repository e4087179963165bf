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
    let block_depth = block_depth(label);
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
            params: Params::Known(Vec::new()),
        };
    }

    let (class_path, kind, method_owner) = if !is_module(klass) {
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
        params,
    }
}

/// `block in x` is one level, `block (3 levels) in x` three.
fn block_depth(label: &str) -> u32 {
    if let Some(rest) = label.strip_prefix("block (") {
        rest.split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    } else if label.starts_with("block in ") {
        1
    } else {
        0
    }
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
