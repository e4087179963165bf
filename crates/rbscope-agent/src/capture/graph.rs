//! Reading Ruby objects for the snapshot's object graph: rbscope-snapshot's walk
//! (`rbscope_snapshot::walk`: breadth first, each object once, limits, redaction) asks, this
//! module reads.
//!
//! The walk never calls a method on an application object: it reads strings, arrays, hashes,
//! structs and instance variables through the C API. The few values that live in C data on
//! Ruby 3.1 (Time, Date, DateTime, BigDecimal, procs, methods, IO) are read through their
//! *core class's own* method (`Date.instance_method(:iso8601).bind_call(obj)`), so an
//! application subclass cannot intercept the call.

use crate::ffi::capture::{self as rb, Core, CoreMethods, T, VALUE};
use crate::ffi::guard::Feature;
use crate::ffi::{self, Gvl, NIL};
use rbscope_agent_core::capture::{extended_modules, walk_limits, FirstN, TEXT_READERS};
use rbscope_agent_core::config::Config;
use rbscope_snapshot::walk::{AddrMap, ClassVars, Reader, Walk};
use rbscope_snapshot::{CutReason, ObjectExtra, ObjectKind, Value};

/// The walk of one report (its state: limits, redaction, what was seen) and the reader of
/// Ruby objects it asks.
pub fn walker<'a>(
    gvl: Gvl,
    cfg: &'a Config,
    magic: &'a AddrMap<String>,
) -> (Walk<'a, VALUE>, RubyObjects) {
    let walk = Walk::new(walk_limits(cfg), &cfg.redaction, magic);
    (walk, RubyObjects::new(gvl))
}

/// Reads Ruby objects for the walk. Its caches are valid because GC is paused for the walk.
pub struct RubyObjects {
    gvl: Gvl,
    /// Classes recognised by the walk; zero when not loaded in this process.
    set: VALUE,
    /// The classes of `TEXT_READERS`, in its order.
    text_classes: [VALUE; TEXT_READERS.len()],
    class_names: AddrMap<String>,
    id_names: AddrMap<Option<String>>,
    /// The core methods borrowed for C data, looked up once per walk.
    core: CoreMethods,
    struct_members: AddrMap<Vec<String>>,
}

type W<'w, 'a> = &'w mut Walk<'a, VALUE>;

impl Reader for RubyObjects {
    type Value = VALUE;

    fn inline(&mut self, v: VALUE) -> Option<Value> {
        let gvl = self.gvl;
        Some(match v {
            _ if v == NIL => Value::Nil,
            _ if v == ffi::TRUE => Value::True,
            _ if v == ffi::FALSE => Value::False,
            _ => {
                if let Some(i) = ffi::fixnum(v) {
                    Value::Integer(i)
                } else if let Some(f) = ffi::float_value(gvl, v) {
                    Value::Float(f)
                } else if let Some(sym) = rb::symbol_value(gvl, v) {
                    sym
                } else if rb::is_special_const(v) {
                    Value::Cut(CutReason::Error)
                } else if ffi::type_of(gvl, v) == T::RUBY_T_BIGNUM {
                    Value::BigInteger(ffi::bignum_string(gvl, v).unwrap_or_default())
                } else {
                    return None;
                }
            }
        })
    }

    fn identity(&self, v: VALUE) -> usize {
        v as usize
    }

    fn read_string<R>(&self, v: VALUE, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        rb::with_string_bytes(self.gvl, v, f)
    }

    fn header(&mut self, v: VALUE) -> (String, bool) {
        let gvl = self.gvl;
        let klass = rb::class_of(gvl, v);
        let name = self
            .class_names
            .entry(klass as usize)
            .or_insert_with(|| ffi::class_path(gvl, klass))
            .clone();
        (name, rb::is_frozen(gvl, v))
    }

    fn kind(&mut self, v: VALUE, depth: u32, walk: W) -> ObjectKind {
        let gvl = self.gvl;
        match ffi::type_of(gvl, v) {
            T::RUBY_T_STRING => self.string(v, walk),
            T::RUBY_T_ARRAY => {
                // Each item re-checked against the current length.
                walk.array_kind(self, ffi::array_len(gvl, v), depth, |i| {
                    ffi::array_at(gvl, v, i)
                })
            }
            T::RUBY_T_HASH => self.hash(v, depth, walk),
            // Range is a Struct inside the VM on 3.1.
            T::RUBY_T_STRUCT if rb::is_kind_of(gvl, v, rb::core_class(Core::Range)) => {
                match rb::range_values(gvl, v) {
                    Some((b, e, exclusive)) => ObjectKind::Range {
                        begin: walk.value(self, b, depth),
                        end: walk.value(self, e, depth),
                        exclusive,
                    },
                    None => ObjectKind::Opaque {
                        preview: rb::any_to_s(gvl, v),
                    },
                }
            }
            T::RUBY_T_STRUCT => {
                let klass = rb::class_of(gvl, v);
                let names = self
                    .struct_members
                    .entry(klass as usize)
                    .or_insert_with(|| rb::struct_member_names(gvl, v))
                    .clone();
                let mut members = Vec::with_capacity(names.len());
                for (i, name) in names.into_iter().enumerate() {
                    let val = rb::struct_get(gvl, v, i);
                    let val = walk.named(self, &name, val, depth);
                    members.push((name, val));
                }
                ObjectKind::Struct { members }
            }
            T::RUBY_T_REGEXP => {
                let (source, options) = rb::regexp_parts(gvl, v);
                ObjectKind::Regexp { source, options }
            }
            T::RUBY_T_RATIONAL => {
                let (n, d) = rb::rational_parts(gvl, v);
                ObjectKind::Rational {
                    numerator: walk.value(self, n, depth),
                    denominator: walk.value(self, d, depth),
                }
            }
            T::RUBY_T_COMPLEX => {
                let (r, i) = rb::complex_parts(gvl, v);
                ObjectKind::Complex {
                    real: walk.value(self, r, depth),
                    imaginary: walk.value(self, i, depth),
                }
            }
            t @ (T::RUBY_T_CLASS | T::RUBY_T_MODULE) => ObjectKind::Module {
                name: ffi::module_name(gvl, v),
                is_class: t == T::RUBY_T_CLASS,
            },
            T::RUBY_T_OBJECT => self.plain_object(v, depth, walk),
            T::RUBY_T_DATA => self.data(v, depth, walk),
            T::RUBY_T_FILE => ObjectKind::Opaque {
                preview: self
                    .core
                    .text(gvl, v, "IO", "inspect", &[])
                    .unwrap_or_default(),
            },
            _ => ObjectKind::Opaque {
                preview: rb::any_to_s(gvl, v),
            },
        }
    }

    fn ivars(&mut self, v: VALUE, depth: u32, walk: W) -> Vec<(String, Value)> {
        let raw = self.named_ivars(v);
        raw.into_iter()
            .map(|(name, val)| {
                let value = walk.named(self, &name, val, depth);
                (name, value)
            })
            .collect()
    }

    fn frame_class(&mut self, self_value: VALUE) -> Option<VALUE> {
        match ffi::type_of(self.gvl, self_value) {
            T::RUBY_T_CLASS | T::RUBY_T_MODULE => Some(self_value),
            _ => Some(rb::class_of(self.gvl, self_value)),
        }
    }

    fn class_vars(&mut self, class: VALUE) -> Option<ClassVars<VALUE>> {
        let gvl = self.gvl;
        let is_class = match ffi::type_of(gvl, class) {
            T::RUBY_T_CLASS => true,
            T::RUBY_T_MODULE => false,
            _ => return None,
        };
        // Class variables (`@@name`) live beside the class's own instance variables.
        Some(ClassVars {
            path: ffi::class_path(gvl, class),
            vars: self.named_ivars(class),
            superclass: is_class.then(|| rb::superclass(gvl, class)).flatten(),
        })
    }

    fn extra(&mut self, v: VALUE, kind: &ObjectKind, depth: u32, walk: W) -> Option<ObjectExtra> {
        let gvl = self.gvl;
        match kind {
            // A class or module is found again by its name; an anonymous one by what it showed.
            ObjectKind::Module {
                name: None,
                is_class,
            } => Some(ObjectExtra {
                anonymous_path: Some(ffi::class_path(gvl, v)),
                superclass: match *is_class {
                    true => rb::superclass(gvl, v).map(|s| ffi::class_path(gvl, s)),
                    false => None,
                },
                ..ObjectExtra::default()
            }),
            ObjectKind::Module { .. } | ObjectKind::Opaque { .. } | ObjectKind::Magic { .. } => {
                None
            }
            ObjectKind::Method { unbound: false, .. } => {
                let receiver = self.core.call(gvl, v, "Method", "receiver", &[])?;
                Some(ObjectExtra {
                    receiver: Some(walk.value(self, receiver, depth)),
                    ..ObjectExtra::default()
                })
            }
            // Only an object that has a singleton class costs more than this check.
            _ => {
                let singleton = rb::own_singleton_class(gvl, v)?;
                let (ancestors, methods) = rb::singleton_parts(gvl, v, singleton);
                let modules = extended_modules(&ancestors, singleton, rb::class_of(gvl, v));
                let e = ObjectExtra {
                    extended: modules.iter().map(|m| ffi::class_path(gvl, *m)).collect(),
                    singleton_methods: methods
                        .iter()
                        .filter_map(|n| ffi::symbol_name(gvl, *n))
                        .collect(),
                    ..ObjectExtra::default()
                };
                (!e.extended.is_empty() || !e.singleton_methods.is_empty()).then_some(e)
            }
        }
    }
}

impl RubyObjects {
    fn new(gvl: Gvl) -> Self {
        let find = |p: &str| ffi::const_at(gvl, p).unwrap_or(0);
        RubyObjects {
            gvl,
            set: find("Set"),
            text_classes: TEXT_READERS.map(|r| match r.class {
                "Thread" => rb::core_class(Core::Thread),
                path => find(path),
            }),
            class_names: AddrMap::default(),
            id_names: AddrMap::default(),
            core: CoreMethods::default(),
            struct_members: AddrMap::default(),
        }
    }

    /// The object's `@name` (and a class's `@@name`) variables, at most 4096; internal ones
    /// (`mesg`, `__classpath__`...) left out.
    fn named_ivars(&mut self, v: VALUE) -> Vec<(String, VALUE)> {
        let gvl = self.gvl;
        let mut raw = Vec::new();
        ffi::ivar_each(
            gvl,
            v,
            Feature::Capture,
            "reading instance variables",
            &mut |id, val| {
                raw.push((id, val));
                raw.len() < 4096
            },
        );
        let names = &mut self.id_names;
        raw.into_iter()
            .filter_map(|(id, val)| {
                let name = names
                    .entry(id as usize)
                    .or_insert_with(|| ffi::id_name(gvl, id));
                Some((name.clone().filter(|n| n.starts_with('@'))?, val))
            })
            .collect()
    }

    fn string(&mut self, v: VALUE, walk: W) -> ObjectKind {
        let gvl = self.gvl;
        rb::with_string_bytes(gvl, v, |bytes| {
            walk.string_kind(bytes, rb::encoding_name(gvl, v))
        })
        .unwrap_or_else(|| walk.string_kind(&[], rb::encoding_name(gvl, v)))
    }

    fn hash(&mut self, v: VALUE, depth: u32, walk: W) -> ObjectKind {
        let gvl = self.gvl;
        // The pairs stay alive: GC is paused while a report walks the graph.
        let mut pairs = FirstN::new(walk.limits().max_collection_items);
        ffi::hash_each(gvl, v, Feature::Capture, "reading a hash", &mut |k, val| {
            pairs.offer((k, val));
            true
        });
        let total = pairs.total;
        // A String or Symbol key names its value (static symbols are immediates:
        // symbol_name checks for both kinds).
        let key_name = |k: VALUE| match ffi::type_of(gvl, k) {
            T::RUBY_T_STRING => ffi::to_string(gvl, k),
            _ => ffi::symbol_name(gvl, k),
        };
        let entries = walk.entries(self, pairs.items, depth, key_name);
        // `default` is nil both without a default and with a default proc: only then ask
        // for the proc.
        let default = self.core.call(gvl, v, "Hash", "default", &[]);
        let default_proc = match default {
            Some(d) if d != NIL => None,
            _ => self.core.call(gvl, v, "Hash", "default_proc", &[]),
        };
        let cbi = self.core.call(gvl, v, "Hash", "compare_by_identity?", &[]);
        ObjectKind::Hash {
            entries,
            original_len: total as u64,
            default: default
                .filter(|d| *d != NIL)
                .map(|d| walk.value(self, d, depth)),
            default_proc: default_proc
                .filter(|d| *d != NIL)
                .map(|d| walk.value(self, d, depth)),
            compare_by_identity: cbi.map(ffi::truthy).unwrap_or(false),
        }
    }

    fn plain_object(&mut self, v: VALUE, depth: u32, walk: W) -> ObjectKind {
        let gvl = self.gvl;
        if rb::is_kind_of(gvl, v, self.set) {
            // Set (Ruby code on 3.1) keeps its members as the keys of @hash.
            let h = rb::ivar_get(gvl, v, "@hash");
            if ffi::type_of(gvl, h) == T::RUBY_T_HASH {
                if let ObjectKind::Hash {
                    entries,
                    original_len,
                    ..
                } = self.hash(h, depth, walk)
                {
                    return ObjectKind::Set {
                        items: entries.into_iter().map(|(k, _)| k).collect(),
                        original_len,
                    };
                }
            }
        }
        if rb::is_kind_of(gvl, v, rb::core_class(Core::Exception)) {
            // The message lives in the internal ivar `mesg`; reading it runs no user code.
            let mesg = rb::ivar_get(gvl, v, "mesg");
            return ObjectKind::Exception {
                message: ffi::to_string(gvl, mesg).unwrap_or_default(),
            };
        }
        ObjectKind::Plain
    }

    fn data(&mut self, v: VALUE, depth: u32, walk: W) -> ObjectKind {
        let gvl = self.gvl;
        let kind_of = |k: VALUE| rb::is_kind_of(gvl, v, k);
        #[cfg(ruby_gte_4_0)]
        if kind_of(self.set) {
            // Ruby 4.0's Set, a core class with a table of its own.
            let (members, total) = rb::set_members(gvl, v, walk.limits().max_collection_items);
            return ObjectKind::Set {
                items: members
                    .into_iter()
                    .map(|m| walk.value(self, m, depth))
                    .collect(),
                original_len: total as u64,
            };
        }
        #[cfg(not(ruby_gte_4_0))]
        let _ = (depth, walk);
        if kind_of(rb::core_class(Core::Time)) {
            if let Some((seconds, nanoseconds, utc_offset)) = rb::time_parts(gvl, v) {
                let utc = self
                    .core
                    .call(gvl, v, "Time", "utc?", &[])
                    .map(ffi::truthy)
                    .unwrap_or(false);
                return ObjectKind::Time {
                    seconds,
                    nanoseconds: nanoseconds as u32,
                    utc_offset: utc_offset as i32,
                    utc,
                };
            }
        }
        let reader = TEXT_READERS
            .iter()
            .zip(self.text_classes)
            .find(|(_, c)| kind_of(*c));
        if let Some((r, _)) = reader {
            let args = r.digits.map(|d| ffi::u64_value(gvl, d));
            if let Some(s) = self.core.text(gvl, v, r.class, r.method, args.as_slice()) {
                return (r.kind)(s);
            }
            return ObjectKind::Opaque {
                preview: rb::any_to_s(gvl, v),
            };
        }
        if let Some((lambda, arity)) = rb::proc_parts(gvl, v) {
            let source_location = self.source_location(v, "Proc");
            return ObjectKind::Proc {
                lambda,
                arity,
                source_location,
            };
        }
        if rb::is_method(gvl, v) {
            let unbound = kind_of(rb::core_class(Core::UnboundMethod));
            let core = if unbound { "UnboundMethod" } else { "Method" };
            let owner = self
                .core
                .call(gvl, v, core, "owner", &[])
                .map(|o| ffi::class_path(gvl, o))
                .unwrap_or_default();
            let name = self
                .core
                .call(gvl, v, core, "name", &[])
                .and_then(|s| ffi::symbol_name(gvl, s))
                .unwrap_or_default();
            let arity = self
                .core
                .call(gvl, v, core, "arity", &[])
                .and_then(ffi::fixnum)
                .map(|a| a as i32)
                .unwrap_or(-1);
            let source_location = self.source_location(v, core);
            return ObjectKind::Method {
                owner,
                name,
                arity,
                unbound,
                source_location,
            };
        }
        ObjectKind::Opaque {
            preview: rb::any_to_s(gvl, v),
        }
    }

    fn source_location(&mut self, v: VALUE, core: &'static str) -> Option<(String, i64)> {
        let gvl = self.gvl;
        let loc = self.core.call(gvl, v, core, "source_location", &[])?;
        if ffi::type_of(gvl, loc) != T::RUBY_T_ARRAY {
            return None;
        }
        let parts = ffi::array_items(gvl, loc);
        let (p, l) = (*parts.first()?, *parts.get(1)?);
        Some((ffi::to_string(gvl, p)?, ffi::fixnum(l).unwrap_or(0)))
    }
}

/// Resolves the magic roots to the objects they name: the configured constant paths, and the
/// per-process singletons registered by name with `Rbscope.magic_root` (the Railtie registers
/// `Rails.application`, its config, logger, cache...). Looked up per report: objects can move
/// (GC.compact) and registrations can change.
pub fn magic_roots(gvl: Gvl, paths: &[String]) -> AddrMap<String> {
    let mut map = AddrMap::default();
    for p in paths {
        if let Some(v) = ffi::const_at(gvl, p) {
            if !rb::is_special_const(v) {
                map.insert(v as usize, p.clone());
            }
        }
    }
    // Rbscope::MAGIC_ROOTS is a flat [name, object, name, object, ...] Array kept by
    // lib/rbscope.rb, so reading it calls no Ruby method.
    if let Some(registry) = ffi::const_at(gvl, "Rbscope::MAGIC_ROOTS") {
        for pair in ffi::array_items(gvl, registry).chunks(2) {
            if let [name, object] = pair {
                if rb::is_special_const(*object) {
                    continue;
                }
                if let Some(name) = ffi::to_string(gvl, *name) {
                    map.entry(*object as usize).or_insert(name);
                }
            }
        }
    }
    map
}
