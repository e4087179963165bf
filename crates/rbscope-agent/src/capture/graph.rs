//! Walking the object graph that a frame reaches, into the snapshot's object arena.
//!
//! The walk is breadth first, so when a limit (depth, objects, bytes) cuts the graph, what is
//! kept is what is closest to the frame. Every object is visited once and later sightings
//! become references, which keeps cycles and shared references intact.
//!
//! The walk never calls a method on an application object: it reads strings, arrays, hashes,
//! structs and instance variables through the C API. The few values that live in C data on
//! Ruby 3.1 (Time, Date, DateTime, BigDecimal, procs, methods, IO) are read through their
//! *core class's own* method (`Date.instance_method(:iso8601).bind_call(obj)`), so an
//! application subclass cannot intercept the call.

use crate::ffi::guard::{self, Feature};
use crate::ffi::{self, Gvl, NIL};
use rb_sys::{ruby_value_type as T, VALUE, *};
use rbscope_agent_core::config::Config;
use rbscope_snapshot::{CaptureStats, CutReason, Object, ObjectKind, Value};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// What an iteration callback returns to stop the walk (`ST_STOP`).
const ST_STOP: i32 = 1;

/// VALUEs are addresses: mixing the bits once is all the hashing they need.
#[derive(Default)]
pub struct AddrHasher(u64);
impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {}
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}
pub type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;

pub struct Walker<'a> {
    gvl: Gvl,
    cfg: &'a Config,
    seen: AddrMap<u32>,
    magic: &'a AddrMap<String>,
    pub objects: Vec<Object>,
    queue: VecDeque<(VALUE, u32, u32)>,
    pub stats: CaptureStats,
    bytes: usize,
    classes: Classes,
    /// Per-walk caches: class names, ivar names, the core UnboundMethods borrowed for C data,
    /// and struct member names. Valid because GC is paused for the walk.
    class_names: AddrMap<String>,
    id_names: AddrMap<Option<String>>,
    core_methods: HashMap<(&'static str, &'static str), VALUE>,
    struct_members: AddrMap<Vec<String>>,
    secret_names: HashMap<String, Option<&'static str>>,
}

/// Classes recognised by the walk; zero when not loaded in this process.
struct Classes {
    set: VALUE,
    date: VALUE,
    datetime: VALUE,
    bigdecimal: VALUE,
}

impl<'a> Walker<'a> {
    pub fn new(gvl: Gvl, cfg: &'a Config, magic: &'a AddrMap<String>) -> Self {
        let find = |p: &str| ffi::const_at(gvl, p).unwrap_or(0);
        Walker {
            gvl,
            cfg,
            seen: AddrMap::default(),
            magic,
            objects: Vec::new(),
            queue: VecDeque::new(),
            stats: CaptureStats::default(),
            bytes: 0,
            classes: Classes {
                set: find("Set"),
                date: find("Date"),
                datetime: find("DateTime"),
                bigdecimal: find("BigDecimal"),
            },
            class_names: AddrMap::default(),
            id_names: AddrMap::default(),
            core_methods: HashMap::new(),
            struct_members: AddrMap::default(),
            secret_names: HashMap::new(),
        }
    }

    /// A value held under `name` (a local, an ivar, a hash key): redacted if the name looks
    /// secret, else captured.
    pub fn named(&mut self, name: &str, v: VALUE, depth: u32) -> Value {
        let secret = match self.secret_names.get(name) {
            Some(s) => *s,
            None => {
                let s = self.cfg.redaction.secret_name(name);
                if self.secret_names.len() < 10_000 {
                    self.secret_names.insert(name.to_string(), s);
                }
                s
            }
        };
        if let Some(why) = secret {
            self.stats.redacted += 1;
            return Value::Redacted(why.into());
        }
        self.value(v, depth)
    }

    /// Captures a value: immediates inline, heap objects by reference (queued for the walk).
    pub fn value(&mut self, v: VALUE, depth: u32) -> Value {
        let gvl = self.gvl;
        match v {
            _ if v == NIL => return Value::Nil,
            _ if v == ffi::TRUE => return Value::True,
            _ if v == ffi::FALSE => return Value::False,
            _ => {}
        }
        if FIXNUM_P(v) {
            // SAFETY: v is a Fixnum.
            return Value::Integer(unsafe { FIX2LONG(v) } as i64);
        }
        // SAFETY: the type predicates accept any VALUE.
        if unsafe { RB_FLOAT_TYPE_P(v) } {
            // SAFETY: v is a Float.
            return Value::Float(unsafe { rb_float_value(v) });
        }
        // SAFETY: as above.
        if unsafe { RB_SYMBOL_P(v) } {
            return Value::Symbol(ffi::symbol_name(gvl, v).unwrap_or_default());
        }
        if SPECIAL_CONST_P(v) {
            return Value::Cut(CutReason::Error);
        }
        if ffi::type_of(gvl, v) == T::RUBY_T_BIGNUM {
            // SAFETY: v is a Bignum.
            let s = unsafe { rb_big2str(v, 10) };
            return Value::BigInteger(ffi::to_string(gvl, s).unwrap_or_default());
        }
        if ffi::type_of(gvl, v) == T::RUBY_T_STRING {
            // SAFETY: v is a String; only its bytes are read.
            if let Some(why) = self
                .cfg
                .redaction
                .secret_value(unsafe { ffi::str_bytes(v) })
            {
                self.stats.redacted += 1;
                return Value::Redacted(why.into());
            }
        }
        if let Some(&idx) = self.seen.get(&(v as usize)) {
            return Value::Ref(idx);
        }
        if self.objects.len() >= self.cfg.max_objects {
            self.stats.cut_objects += 1;
            return Value::Cut(CutReason::Objects);
        }
        if depth > self.cfg.max_depth {
            self.stats.cut_depth += 1;
            return Value::Cut(CutReason::Depth);
        }
        if self.bytes > self.cfg.max_bytes {
            self.stats.cut_bytes += 1;
            return Value::Cut(CutReason::Bytes);
        }
        let idx = self.objects.len() as u32;
        self.seen.insert(v as usize, idx);
        self.objects.push(Object {
            class_name: String::new(),
            frozen: false,
            kind: ObjectKind::Plain,
            ivars: Vec::new(),
        });
        self.queue.push_back((v, idx, depth));
        Value::Ref(idx)
    }

    /// Fills every queued object, breadth first.
    pub fn drain(&mut self) {
        while let Some((v, idx, depth)) = self.queue.pop_front() {
            let obj = self.describe(v, depth + 1);
            self.bytes += 48 + obj.class_name.len();
            if let Some(slot) = self.objects.get_mut(idx as usize) {
                *slot = obj;
            }
        }
    }

    fn class_name(&mut self, v: VALUE) -> String {
        // SAFETY: rb_obj_class is defined for every VALUE.
        let klass = unsafe { rb_obj_class(v) };
        let gvl = self.gvl;
        self.class_names
            .entry(klass as usize)
            .or_insert_with(|| ffi::class_path(gvl, klass))
            .clone()
    }

    fn id_name(&mut self, id: rb_sys::ID) -> Option<String> {
        let gvl = self.gvl;
        self.id_names
            .entry(id as usize)
            .or_insert_with(|| ffi::id_name(gvl, id))
            .clone()
    }

    fn describe(&mut self, v: VALUE, depth: u32) -> Object {
        let class_name = self.class_name(v);
        // SAFETY: v is a live heap object.
        let frozen = ffi::truthy(unsafe { rb_obj_frozen_p(v) });
        if let Some(path) = self.magic.get(&(v as usize)) {
            return Object {
                class_name,
                frozen,
                kind: ObjectKind::Magic { path: path.clone() },
                ivars: Vec::new(),
            };
        }
        let kind = self.kind(v, depth);
        let ivars = match kind {
            ObjectKind::Module { .. } | ObjectKind::Opaque { .. } => Vec::new(),
            // A Set's @hash is its members, already captured.
            ObjectKind::Set { .. } => {
                let mut iv = self.ivars(v, depth);
                iv.retain(|(n, _)| n != "@hash");
                iv
            }
            _ => self.ivars(v, depth),
        };
        Object {
            class_name,
            frozen,
            kind,
            ivars,
        }
    }

    fn kind(&mut self, v: VALUE, depth: u32) -> ObjectKind {
        let gvl = self.gvl;
        match ffi::type_of(gvl, v) {
            T::RUBY_T_STRING => self.string(v),
            T::RUBY_T_ARRAY => {
                // SAFETY: v is an Array; we re-read the length each step in case it shrank.
                let len = unsafe { RARRAY_LEN(v) } as usize;
                let take = len.min(self.cfg.max_collection_items);
                if take < len {
                    self.stats.truncated_collections += 1;
                }
                let mut items = Vec::with_capacity(take);
                for i in 0..take {
                    // SAFETY: bounds re-checked against the current length.
                    let item = unsafe {
                        if i as i64 >= RARRAY_LEN(v) as i64 {
                            break;
                        }
                        RARRAY_AREF(v, i as isize)
                    };
                    items.push(self.value(item, depth));
                }
                self.bytes += items.len() * 8;
                ObjectKind::Array {
                    items,
                    original_len: len as u64,
                }
            }
            T::RUBY_T_HASH => self.hash(v, depth),
            // Range is a Struct inside the VM on 3.1.
            // SAFETY: rb_cRange is set at boot.
            T::RUBY_T_STRUCT if ffi::truthy(unsafe { rb_obj_is_kind_of(v, rb_cRange) }) => {
                let (mut b, mut e, mut excl) = (NIL, NIL, 0i32);
                // SAFETY: v is a Range; the out-pointers are valid locals.
                let ok = unsafe { rb_range_values(v, &mut b, &mut e, &mut excl) } != 0;
                if ok {
                    ObjectKind::Range {
                        begin: self.value(b, depth),
                        end: self.value(e, depth),
                        exclusive: excl != 0,
                    }
                } else {
                    ObjectKind::Opaque {
                        preview: self.any_to_s(v),
                    }
                }
            }
            T::RUBY_T_STRUCT => {
                // SAFETY: rb_obj_class is defined for every VALUE.
                let klass = unsafe { rb_obj_class(v) };
                let names = match self.struct_members.get(&(klass as usize)) {
                    Some(n) => n.clone(),
                    None => {
                        // SAFETY: v is a Struct; rb_struct_members returns its member names.
                        let syms =
                            ffi::protect(gvl, || unsafe { rb_struct_members(v) }).unwrap_or(NIL);
                        let names: Vec<String> = ffi::array_items(gvl, syms)
                            .into_iter()
                            .map(|s| ffi::symbol_name(gvl, s).unwrap_or_default())
                            .collect();
                        self.struct_members.insert(klass as usize, names.clone());
                        names
                    }
                };
                let mut members = Vec::with_capacity(names.len());
                for (i, name) in names.into_iter().enumerate() {
                    // SAFETY: rb_struct_aref with an in-range index reads the slot directly.
                    let val = ffi::protect(gvl, || unsafe { rb_struct_aref(v, LONG2FIX(i as _)) })
                        .unwrap_or(NIL);
                    let val = self.named(&name, val, depth);
                    members.push((name, val));
                }
                ObjectKind::Struct { members }
            }
            T::RUBY_T_REGEXP => {
                // SAFETY: v is a Regexp: an RRegexp whose `src` is its source String.
                let src = unsafe { (*(v as *const RRegexp)).src };
                // SAFETY: as above.
                let options = ffi::protect(gvl, || unsafe { rb_reg_options(v) } as VALUE)
                    .map(|o| o as u32)
                    .unwrap_or(0);
                ObjectKind::Regexp {
                    source: ffi::to_string(gvl, src).unwrap_or_default(),
                    options,
                }
            }
            T::RUBY_T_RATIONAL => {
                // SAFETY: v is a Rational.
                let (n, d) = unsafe { (rb_rational_num(v), rb_rational_den(v)) };
                ObjectKind::Rational {
                    numerator: self.value(n, depth),
                    denominator: self.value(d, depth),
                }
            }
            T::RUBY_T_COMPLEX => {
                // SAFETY: v is a Complex.
                let (r, i) = unsafe { (rb_complex_real(v), rb_complex_imag(v)) };
                ObjectKind::Complex {
                    real: self.value(r, depth),
                    imaginary: self.value(i, depth),
                }
            }
            T::RUBY_T_CLASS | T::RUBY_T_MODULE => ObjectKind::Module {
                name: ffi::module_name(gvl, v),
                is_class: ffi::type_of(gvl, v) == T::RUBY_T_CLASS,
            },
            T::RUBY_T_OBJECT => self.plain_object(v, depth),
            T::RUBY_T_DATA => self.data(v, depth),
            T::RUBY_T_FILE => ObjectKind::Opaque {
                preview: self.core_call(v, "IO", "inspect").unwrap_or_default(),
            },
            _ => ObjectKind::Opaque {
                preview: self.any_to_s(v),
            },
        }
    }

    fn string(&mut self, v: VALUE) -> ObjectKind {
        let gvl = self.gvl;
        // SAFETY: v is a String; its bytes are copied before any other Ruby call.
        let bytes = unsafe { ffi::str_bytes(v) };
        let original_len = bytes.len() as u64;
        let take = bytes.len().min(self.cfg.max_string_bytes);
        if take < bytes.len() {
            self.stats.truncated_strings += 1;
        }
        let kept = bytes.get(..take).unwrap_or(bytes).to_vec();
        self.bytes += kept.len();
        // SAFETY: rb_enc_get returns the string's encoding, whose name is a static C string.
        let encoding = unsafe {
            let enc = rb_enc_get(v);
            if enc.is_null() || (*enc).name.is_null() {
                String::from("ASCII-8BIT")
            } else {
                std::ffi::CStr::from_ptr((*enc).name)
                    .to_string_lossy()
                    .into_owned()
            }
        };
        let _ = gvl;
        ObjectKind::String {
            bytes: kept,
            encoding,
            original_len,
        }
    }

    fn hash(&mut self, v: VALUE, depth: u32) -> ObjectKind {
        let gvl = self.gvl;
        let mut pairs: Vec<(VALUE, VALUE)> = Vec::new();
        let limit = self.cfg.max_collection_items;
        struct Acc<'p> {
            pairs: &'p mut Vec<(VALUE, VALUE)>,
            limit: usize,
            total: usize,
        }
        unsafe extern "C" fn each(k: VALUE, val: VALUE, arg: VALUE) -> i32 {
            guard::run(Feature::Capture, "reading a hash", ST_STOP, || {
                // SAFETY: arg is the Acc below, alive for the whole rb_hash_foreach call.
                let acc = unsafe { &mut *(arg as *mut Acc) };
                acc.total += 1;
                if acc.pairs.len() < acc.limit {
                    acc.pairs.push((k, val));
                }
                0 // ST_CONTINUE
            })
        }
        let mut acc = Acc {
            pairs: &mut pairs,
            limit,
            total: 0,
        };
        let acc_ptr = &mut acc as *mut Acc as VALUE;
        let _ = ffi::protect(gvl, || {
            // SAFETY: v is a Hash; `each` never calls Ruby or allocates Ruby objects.
            unsafe { rb_hash_foreach(v, Some(each), acc_ptr) };
            NIL
        });
        let total = acc.total;
        if pairs.len() < total {
            self.stats.truncated_collections += 1;
        }
        let mut entries = Vec::with_capacity(pairs.len());
        for (k, val) in pairs {
            let key_name = match ffi::type_of(gvl, k) {
                T::RUBY_T_STRING => ffi::to_string(gvl, k),
                // Static symbols are immediates: symbol_name checks for both kinds.
                _ => ffi::symbol_name(gvl, k),
            };
            let key = self.value(k, depth);
            let value = match key_name {
                Some(name) => self.named(&name, val, depth),
                None => self.value(val, depth),
            };
            entries.push((key, value));
        }
        self.bytes += entries.len() * 16;
        // `default` is nil both without a default and with a default proc: only then ask
        // for the proc.
        let default = self.core_value(v, "Hash", "default");
        let default_proc = match default {
            Some(d) if d != NIL => None,
            _ => self.core_value(v, "Hash", "default_proc"),
        };
        let cbi = self.core_value(v, "Hash", "compare_by_identity?");
        ObjectKind::Hash {
            entries,
            original_len: total as u64,
            default: default.filter(|d| *d != NIL).map(|d| self.value(d, depth)),
            default_proc: default_proc
                .filter(|d| *d != NIL)
                .map(|d| self.value(d, depth)),
            compare_by_identity: cbi.map(ffi::truthy).unwrap_or(false),
        }
    }

    /// Ruby 4.0's Set, a core class with a table of its own: its members, read with
    /// `rb_set_foreach` (no Ruby code runs), at most `max_collection_items`.
    #[cfg(ruby_gte_4_0)]
    fn core_set(&mut self, v: VALUE, depth: u32) -> ObjectKind {
        struct Acc<'m> {
            members: &'m mut Vec<VALUE>,
            limit: usize,
            total: usize,
        }
        unsafe extern "C" fn each(member: VALUE, arg: VALUE) -> i32 {
            guard::run(Feature::Capture, "reading a set", ST_STOP, || {
                // SAFETY: arg is the Acc below, alive for the whole rb_set_foreach call.
                let acc = unsafe { &mut *(arg as *mut Acc) };
                acc.total += 1;
                if acc.members.len() < acc.limit {
                    acc.members.push(member);
                }
                0 // ST_CONTINUE
            })
        }
        let mut members = Vec::new();
        let mut acc = Acc {
            members: &mut members,
            limit: self.cfg.max_collection_items,
            total: 0,
        };
        let acc_ptr = &mut acc as *mut Acc as VALUE;
        let _ = ffi::protect(self.gvl, || {
            // SAFETY: v is a Set (checked by the caller); `each` neither calls Ruby nor
            // allocates Ruby objects, and the members stay alive: GC is paused while a
            // report walks the graph.
            unsafe { rb_sys::rb_set_foreach(v, Some(each), acc_ptr) };
            NIL
        });
        let total = acc.total;
        if members.len() < total {
            self.stats.truncated_collections += 1;
        }
        ObjectKind::Set {
            items: members.into_iter().map(|m| self.value(m, depth)).collect(),
            original_len: total as u64,
        }
    }

    fn plain_object(&mut self, v: VALUE, depth: u32) -> ObjectKind {
        let gvl = self.gvl;
        // SAFETY: kind_of checks on live objects and loaded classes.
        let kind_of = |k: VALUE| k != 0 && ffi::truthy(unsafe { rb_obj_is_kind_of(v, k) });
        if kind_of(self.classes.set) {
            // Set (Ruby code on 3.1) keeps its members as the keys of @hash.
            // SAFETY: reading an ivar never calls Ruby code.
            let h = unsafe { rb_ivar_get(v, ffi::intern(gvl, "@hash")) };
            if ffi::type_of(gvl, h) == T::RUBY_T_HASH {
                if let ObjectKind::Hash {
                    entries,
                    original_len,
                    ..
                } = self.hash(h, depth)
                {
                    return ObjectKind::Set {
                        items: entries.into_iter().map(|(k, _)| k).collect(),
                        original_len,
                    };
                }
            }
        }
        // SAFETY: rb_eException is set at boot.
        if kind_of(unsafe { rb_eException }) {
            // The message lives in the internal ivar `mesg`; reading it runs no user code.
            // SAFETY: as above.
            let mesg = unsafe { rb_ivar_get(v, ffi::intern(gvl, "mesg")) };
            return ObjectKind::Exception {
                message: ffi::to_string(gvl, mesg).unwrap_or_default(),
            };
        }
        ObjectKind::Plain
    }

    fn data(&mut self, v: VALUE, depth: u32) -> ObjectKind {
        let gvl = self.gvl;
        // SAFETY: kind_of checks on live objects and loaded classes.
        let kind_of = |k: VALUE| k != 0 && ffi::truthy(unsafe { rb_obj_is_kind_of(v, k) });
        #[cfg(ruby_gte_4_0)]
        if kind_of(self.classes.set) {
            return self.core_set(v, depth);
        }
        #[cfg(not(ruby_gte_4_0))]
        let _ = depth;
        // SAFETY: rb_cTime etc. are set at boot.
        if kind_of(unsafe { rb_cTime }) {
            // SAFETY: v is a Time; these read its fields without dispatch.
            let ts = ffi::protect(gvl, || {
                let t = unsafe { rb_time_timespec(v) };
                // Pack into a VALUE-sized pair via a Ruby Array to stay inside protect.
                // SAFETY: GVL held; a fresh Array filled with the Time's own figures.
                unsafe {
                    let a = rb_ary_new_capa(2);
                    rb_ary_push(a, rb_sys::rb_ll2inum(t.tv_sec as _));
                    rb_ary_push(a, LONG2FIX(t.tv_nsec as _));
                    rb_ary_push(a, rb_time_utc_offset(v));
                    a
                }
            });
            if let Ok(a) = ts {
                // SAFETY: a is the 3-element Array built above.
                let (s, ns, off) =
                    unsafe { (RARRAY_AREF(a, 0), RARRAY_AREF(a, 1), RARRAY_AREF(a, 2)) };
                let num = |x: VALUE| -> i64 {
                    // SAFETY: GVL held; rb_num2ll may raise, which protect catches.
                    ffi::protect(gvl, || unsafe { rb_sys::rb_num2ll(x) as VALUE })
                        .map(|n| n as i64)
                        .unwrap_or(0)
                };
                let utc = self
                    .core_value(v, "Time", "utc?")
                    .map(ffi::truthy)
                    .unwrap_or(false);
                return ObjectKind::Time {
                    seconds: num(s),
                    nanoseconds: num(ns) as u32,
                    utc_offset: num(off) as i32,
                    utc,
                };
            }
        }
        if kind_of(self.classes.datetime) {
            // SAFETY: 9 fits in a Fixnum.
            let nine = unsafe { LONG2FIX(9) };
            if let Some(s) = self.core_call_args(v, "DateTime", "iso8601", &[nine]) {
                return ObjectKind::DateTime { iso8601: s };
            }
        } else if kind_of(self.classes.date) {
            if let Some(s) = self.core_call(v, "Date", "iso8601") {
                return ObjectKind::Date { iso8601: s };
            }
        }
        if kind_of(self.classes.bigdecimal) {
            if let Some(s) = self.core_call(v, "BigDecimal", "to_s") {
                return ObjectKind::BigDecimal { digits: s };
            }
        }
        // SAFETY: predicates on a live object.
        if ffi::truthy(unsafe { rb_obj_is_proc(v) }) {
            // SAFETY: v is a Proc.
            let lambda = ffi::truthy(unsafe { rb_proc_lambda_p(v) });
            let arity = ffi::protect(gvl, || unsafe { rb_proc_arity(v) } as isize as VALUE)
                .map(|a| a as isize as i32)
                .unwrap_or(-1);
            let source_location = self.source_location(v, "Proc");
            return ObjectKind::Proc {
                lambda,
                arity,
                source_location,
            };
        }
        // SAFETY: predicates on a live object.
        if ffi::truthy(unsafe { rb_obj_is_method(v) }) {
            // SAFETY: rb_cUnboundMethod is set at boot.
            let unbound = kind_of(unsafe { rb_cUnboundMethod });
            let core = if unbound { "UnboundMethod" } else { "Method" };
            let owner = self
                .core_value(v, core, "owner")
                .map(|o| ffi::class_path(gvl, o))
                .unwrap_or_default();
            let name = self
                .core_value(v, core, "name")
                .and_then(|s| ffi::symbol_name(gvl, s))
                .unwrap_or_default();
            let arity = self
                .core_value(v, core, "arity")
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
        // SAFETY: rb_cThread is set at boot.
        if kind_of(unsafe { rb_cThread }) {
            if let Some(p) = self.core_call(v, "Thread", "inspect") {
                return ObjectKind::Opaque { preview: p };
            }
        }
        ObjectKind::Opaque {
            preview: self.any_to_s(v),
        }
    }

    fn source_location(&mut self, v: VALUE, core: &'static str) -> Option<(String, i64)> {
        let gvl = self.gvl;
        let loc = self.core_value(v, core, "source_location")?;
        if ffi::type_of(gvl, loc) != T::RUBY_T_ARRAY {
            return None;
        }
        // SAFETY: loc is an Array [path, line].
        let (p, l) = unsafe {
            if RARRAY_LEN(loc) < 2 {
                return None;
            }
            (RARRAY_AREF(loc, 0), RARRAY_AREF(loc, 1))
        };
        let line = if FIXNUM_P(l) {
            // SAFETY: l is a Fixnum.
            unsafe { FIX2LONG(l) as i64 }
        } else {
            0
        };
        Some((ffi::to_string(gvl, p)?, line))
    }

    fn ivars(&mut self, v: VALUE, depth: u32) -> Vec<(String, Value)> {
        let mut raw: Vec<(rb_sys::ID, VALUE)> = Vec::new();
        unsafe extern "C" fn each(id: rb_sys::ID, val: VALUE, arg: st_data_t) -> i32 {
            guard::run(
                Feature::Capture,
                "reading instance variables",
                ST_STOP,
                || {
                    // SAFETY: arg is the Vec below, alive for the whole rb_ivar_foreach call.
                    let raw = unsafe { &mut *(arg as *mut Vec<(rb_sys::ID, VALUE)>) };
                    if raw.len() < 4096 {
                        raw.push((id, val));
                    }
                    0
                },
            )
        }
        let raw_ptr = &mut raw as *mut Vec<(rb_sys::ID, VALUE)> as st_data_t;
        // SAFETY: v is a live object; `each` only pushes into a Vec with spare capacity
        // logic and never calls Ruby.
        unsafe { rb_ivar_foreach(v, Some(each), raw_ptr) };
        let mut out = Vec::with_capacity(raw.len());
        for (id, val) in raw {
            let Some(name) = self.id_name(id) else {
                continue;
            };
            if !name.starts_with('@') {
                continue;
            }
            let value = self.named(&name, val, depth);
            out.push((name, value));
        }
        out
    }

    fn any_to_s(&self, v: VALUE) -> String {
        // SAFETY: rb_any_to_s builds "#<Class:0x...>" from the class and address only.
        let s = unsafe { rb_any_to_s(v) };
        ffi::to_string(self.gvl, s).unwrap_or_default()
    }

    /// The core class's own method applied to `v` (see [`ffi::core_call`]), with the
    /// UnboundMethod looked up once per walk.
    fn core_value(&mut self, v: VALUE, core: &'static str, name: &'static str) -> Option<VALUE> {
        self.core_value_args(v, core, name, &[])
    }

    fn core_value_args(
        &mut self,
        v: VALUE,
        core: &'static str,
        name: &'static str,
        args: &[VALUE],
    ) -> Option<VALUE> {
        let gvl = self.gvl;
        let um = match self.core_methods.get(&(core, name)) {
            Some(um) => *um,
            None => {
                let um = ffi::core_method(gvl, core, name).ok()?;
                self.core_methods.insert((core, name), um);
                um
            }
        };
        ffi::bind_call(gvl, um, v, args).ok()
    }

    fn core_call(&mut self, v: VALUE, core: &'static str, name: &'static str) -> Option<String> {
        self.core_call_args(v, core, name, &[])
    }

    fn core_call_args(
        &mut self,
        v: VALUE,
        core: &'static str,
        name: &'static str,
        args: &[VALUE],
    ) -> Option<String> {
        let s = self.core_value_args(v, core, name, args)?;
        ffi::to_string(self.gvl, s)
    }

    /// Folds the walk's counts into the snapshot's stats and returns them.
    pub fn finish(mut self) -> (Vec<Object>, CaptureStats) {
        self.drain();
        (self.objects, self.stats)
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
            if !SPECIAL_CONST_P(v) {
                map.insert(v as usize, p.clone());
            }
        }
    }
    // Rbscope::MAGIC_ROOTS is a flat [name, object, name, object, ...] Array kept by
    // lib/rbscope.rb, so reading it calls no Ruby method.
    if let Some(registry) = ffi::const_at(gvl, "Rbscope::MAGIC_ROOTS") {
        for pair in ffi::array_items(gvl, registry).chunks(2) {
            if let [name, object] = pair {
                if SPECIAL_CONST_P(*object) {
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
