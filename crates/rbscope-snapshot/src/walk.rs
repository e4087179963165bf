//! Walking the object graph that a frame reaches into a snapshot's object arena: the policy,
//! apart from how objects are read (the agent reads Ruby objects through [`Reader`]).
//!
//! The walk is breadth first, so when a limit (depth, objects, bytes) cuts the graph, what is
//! kept is what is closest to the frame. Every object is visited once and later sightings
//! become references, which keeps cycles and shared references intact. A value held under a
//! name that looks secret (a local, an instance variable, a hash key, a struct member), and a
//! string that looks like a secret itself, is redacted ([`crate::redact`]). Known singletons
//! (the magic roots: `Rails.application`...) are named, not walked.
//!
//! Once the frames' values are walked, the class-level state of the classes the frames use is
//! captured ([`ClassState`]): each frame's `self` (a class-method frame) or its class, every
//! class or module the walk met as a value, and their superclasses. It gets what the frames
//! left of the limits, and at most a quarter of the object limit, so a framework class with a
//! big class-level cache cannot crowd out the frames or make a report slow.

use crate::redact::Rules;
use crate::{CaptureStats, ClassState, CutReason, Extras, Object, ObjectExtra, ObjectKind, Value};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Object identities are addresses: mixing the bits once is all the hashing they need.
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

/// A map keyed by object identity (address).
pub type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;

/// How much of the graph a snapshot keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Objects further than this from a frame are cut.
    pub max_depth: u32,
    pub max_objects: usize,
    /// Once the kept objects weigh this much (an estimate), further objects are cut.
    pub max_bytes: usize,
    /// For the reader: bytes kept of a string, items kept of a collection.
    pub max_string_bytes: usize,
    pub max_collection_items: usize,
}

/// Reads the objects of a graph (Ruby's, for the agent; a fake one in tests).
pub trait Reader {
    /// A value as the reader holds it (a Ruby VALUE).
    type Value: Copy;

    /// The value itself when it is not an object of the graph (nil, booleans, numbers,
    /// symbols; a value that cannot be read is `Cut(Error)`); None for an object.
    fn inline(&mut self, v: Self::Value) -> Option<Value>;
    /// The object's identity: seen twice, it is one object.
    fn identity(&self, v: Self::Value) -> usize;
    /// Runs `f` with the bytes of a string object (for the secret-value check before it is
    /// kept); None for anything else.
    fn read_string<T>(&self, v: Self::Value, f: impl FnOnce(&[u8]) -> T) -> Option<T>;
    /// The object's class name and whether it is frozen.
    fn header(&mut self, v: Self::Value) -> (String, bool);
    /// What the object is. Its children are captured with `walk.value`/`walk.named` at
    /// `depth`, and the bytes of what is kept charged with `walk.charge` as it is kept.
    fn kind(&mut self, v: Self::Value, depth: u32, walk: &mut Walk<Self::Value>) -> ObjectKind;
    /// The object's instance variables (names starting with `@`), captured with `walk.named`.
    fn ivars(
        &mut self,
        v: Self::Value,
        depth: u32,
        walk: &mut Walk<Self::Value>,
    ) -> Vec<(String, Value)>;
    /// What format 2 adds about the object (extended modules, singleton methods, an anonymous
    /// class's path, a Method's receiver), values captured with `walk.value`; None (the
    /// default) for an object with none of them. Its `object` index is set by the walk.
    fn extra(
        &mut self,
        _v: Self::Value,
        _kind: &ObjectKind,
        _depth: u32,
        _walk: &mut Walk<Self::Value>,
    ) -> Option<ObjectExtra> {
        None
    }
    /// The class whose class-level state a frame with this `self` uses: `self` when it is a
    /// class or module, else its class (not a singleton class). None, the default, captures
    /// no class-level state.
    fn frame_class(&mut self, _self_value: Self::Value) -> Option<Self::Value> {
        None
    }
    /// A class's or module's class-level variables (see [`ClassVars`]); None (the default)
    /// when it cannot be read.
    fn class_vars(&mut self, _class: Self::Value) -> Option<ClassVars<Self::Value>> {
        None
    }
}

/// A class's or module's own class-level variables, as the reader found them.
pub struct ClassVars<V> {
    /// Its class path.
    pub path: String,
    /// Its `@name` and `@@name` variables, in the VM's order (internal ones left out).
    pub vars: Vec<(String, V)>,
    /// Its superclass (None for a module, and for BasicObject).
    pub superclass: Option<V>,
}

/// Classes with class-level state kept per snapshot.
pub const MAX_CLASS_STATES: usize = 16;
/// Classes looked at per snapshot (most have no class-level state).
const MAX_CLASSES_LOOKED_AT: usize = 64;
/// A class and this many of its superclasses are looked at.
const SUPERCLASSES: usize = 4;

/// The walk's state: the arena being filled, what was seen, what waits, what was cut.
pub struct Walk<'a, V> {
    limits: Limits,
    rules: &'a Rules,
    magic: &'a AddrMap<String>,
    seen: AddrMap<u32>,
    objects: Vec<Object>,
    extras: Vec<ObjectExtra>,
    queue: VecDeque<(V, u32, u32)>,
    stats: CaptureStats,
    bytes: usize,
    secret_names: HashMap<String, Option<&'static str>>,
    /// The classes whose class-level state is captured at the end: frames' first.
    classes: Vec<V>,
}

/// Names remembered per walk (a name's secrecy is asked once).
const SECRET_NAMES_CACHED: usize = 10_000;
/// What an object costs besides its contents (and its class name).
const OBJECT_BYTES: usize = 48;

impl<'a, V: Copy> Walk<'a, V> {
    /// A walk under `limits` and `rules`; `magic` names the objects (by identity) that are
    /// not walked.
    pub fn new(limits: Limits, rules: &'a Rules, magic: &'a AddrMap<String>) -> Self {
        Walk {
            limits,
            rules,
            magic,
            seen: AddrMap::default(),
            objects: Vec::new(),
            extras: Vec::new(),
            queue: VecDeque::new(),
            stats: CaptureStats::default(),
            bytes: 0,
            secret_names: HashMap::new(),
            classes: Vec::new(),
        }
    }

    /// A frame's `self`: captured as a value, and its class's class-level state later.
    pub fn frame_self<R>(&mut self, r: &mut R, v: V) -> Value
    where
        R: Reader<Value = V> + ?Sized,
    {
        if self.classes.len() < MAX_CLASSES_LOOKED_AT {
            self.classes.extend(r.frame_class(v));
        }
        self.value(r, v, 0)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts `bytes` of kept contents against the byte limit.
    pub fn charge(&mut self, bytes: usize) {
        self.bytes += bytes;
    }

    /// A value held under `name` (a local, an ivar, a hash key): redacted if the name looks
    /// secret, else captured.
    pub fn named<R>(&mut self, r: &mut R, name: &str, v: V, depth: u32) -> Value
    where
        R: Reader<Value = V> + ?Sized,
    {
        let secret = match self.secret_names.get(name) {
            Some(s) => *s,
            None => {
                let s = self.rules.secret_name(name);
                if self.secret_names.len() < SECRET_NAMES_CACHED {
                    self.secret_names.insert(name.to_string(), s);
                }
                s
            }
        };
        if let Some(why) = secret {
            self.stats.redacted += 1;
            return Value::Redacted(why.into());
        }
        self.value(r, v, depth)
    }

    /// Captures a value: inline values as they are, objects by reference (queued for the
    /// walk), or cut when a limit is reached.
    pub fn value<R>(&mut self, r: &mut R, v: V, depth: u32) -> Value
    where
        R: Reader<Value = V> + ?Sized,
    {
        if let Some(inline) = r.inline(v) {
            return inline;
        }
        let rules = self.rules;
        if let Some(Some(why)) = r.read_string(v, |bytes| rules.secret_value(bytes)) {
            self.stats.redacted += 1;
            return Value::Redacted(why.into());
        }
        let id = r.identity(v);
        if let Some(&idx) = self.seen.get(&id) {
            return Value::Ref(idx);
        }
        if self.objects.len() >= self.limits.max_objects {
            self.stats.cut_objects += 1;
            return Value::Cut(CutReason::Objects);
        }
        if depth > self.limits.max_depth {
            self.stats.cut_depth += 1;
            return Value::Cut(CutReason::Depth);
        }
        if self.bytes > self.limits.max_bytes {
            self.stats.cut_bytes += 1;
            return Value::Cut(CutReason::Bytes);
        }
        let idx = self.objects.len() as u32;
        self.seen.insert(id, idx);
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
    pub fn drain<R>(&mut self, r: &mut R)
    where
        R: Reader<Value = V> + ?Sized,
    {
        while let Some((v, idx, depth)) = self.queue.pop_front() {
            let (obj, extra) = self.describe(r, v, depth + 1);
            if let Some(mut e) = extra {
                e.object = idx;
                self.extras.push(e);
            }
            self.bytes += OBJECT_BYTES + obj.class_name.len();
            if let Some(slot) = self.objects.get_mut(idx as usize) {
                *slot = obj;
            }
        }
    }

    fn describe<R>(&mut self, r: &mut R, v: V, depth: u32) -> (Object, Option<ObjectExtra>)
    where
        R: Reader<Value = V> + ?Sized,
    {
        let (class_name, frozen) = r.header(v);
        if let Some(path) = self.magic.get(&r.identity(v)) {
            let magic = Object {
                class_name,
                frozen,
                kind: ObjectKind::Magic { path: path.clone() },
                ivars: Vec::new(),
            };
            return (magic, None);
        }
        let kind = r.kind(v, depth, self);
        self.count_truncation(&kind);
        if matches!(kind, ObjectKind::Module { .. }) && self.classes.len() < MAX_CLASSES_LOOKED_AT {
            self.classes.push(v);
        }
        let ivars = match kind {
            ObjectKind::Module { .. } | ObjectKind::Opaque { .. } => Vec::new(),
            // A Set's @hash (Ruby code on 3.1) is its members, already captured.
            ObjectKind::Set { .. } => {
                let mut iv = r.ivars(v, depth, self);
                iv.retain(|(n, _)| n != "@hash");
                iv
            }
            _ => r.ivars(v, depth, self),
        };
        let extra = r.extra(v, &kind, depth, self);
        let obj = Object {
            class_name,
            frozen,
            kind,
            ivars,
        };
        (obj, extra)
    }

    /// Strings and collections kept shorter than they are.
    fn count_truncation(&mut self, kind: &ObjectKind) {
        let (kept, len, stat) = match kind {
            ObjectKind::String {
                bytes,
                original_len,
                ..
            } => (
                bytes.len(),
                *original_len,
                &mut self.stats.truncated_strings,
            ),
            ObjectKind::Array {
                items,
                original_len,
            }
            | ObjectKind::Set {
                items,
                original_len,
            } => (
                items.len(),
                *original_len,
                &mut self.stats.truncated_collections,
            ),
            ObjectKind::Hash {
                entries,
                original_len,
                ..
            } => (
                entries.len(),
                *original_len,
                &mut self.stats.truncated_collections,
            ),
            _ => return,
        };
        if (kept as u64) < len {
            *stat += 1;
        }
    }

    /// Walks what is left, then the class-level state, and returns the arena, the walk's
    /// counts and the extras.
    pub fn finish<R>(mut self, r: &mut R) -> (Vec<Object>, CaptureStats, Extras)
    where
        R: Reader<Value = V> + ?Sized,
    {
        self.drain(r);
        let classes = self.class_states(r);
        let extras = Extras {
            objects: self.extras,
            classes,
            trigger: None,
        };
        (self.objects, self.stats, extras)
    }

    /// The class-level state of the classes met (see the module docs), walked with what the
    /// frames left of the limits.
    fn class_states<R>(&mut self, r: &mut R) -> Vec<ClassState>
    where
        R: Reader<Value = V> + ?Sized,
    {
        let limits = self.limits;
        let share = self.objects.len() + limits.max_objects / 4;
        self.limits.max_objects = limits.max_objects.min(share);
        let mut looked_at = AddrMap::default();
        let mut out = Vec::new();
        for class in std::mem::take(&mut self.classes) {
            let mut next = Some(class);
            for _ in 0..=SUPERCLASSES {
                let Some(c) = next.take() else { break };
                if looked_at.len() >= MAX_CLASSES_LOOKED_AT
                    || looked_at.insert(r.identity(c), ()).is_some()
                {
                    break;
                }
                let Some(found) = r.class_vars(c) else { break };
                next = found.superclass;
                if found.vars.is_empty() || out.len() >= MAX_CLASS_STATES {
                    continue;
                }
                let total = found.vars.len();
                let keep = total.min(limits.max_collection_items);
                let vars = found
                    .vars
                    .into_iter()
                    .take(keep)
                    .map(|(name, v)| {
                        let value = self.named(r, &name, v, 1);
                        (name, value)
                    })
                    .collect();
                out.push(ClassState {
                    class_path: found.path,
                    vars,
                    vars_left_out: (total - keep) as u32,
                });
            }
        }
        self.drain(r);
        self.limits = limits;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of the fake graph: an inline number, or an object by id.
    #[derive(Clone, Copy, Debug)]
    enum V {
        Int(i64),
        Obj(usize),
    }

    enum FakeObj {
        Str(&'static str),
        List(Vec<V>),
        Record(Vec<(&'static str, V)>),
        /// A class: its path, class-level variables and superclass (an object id).
        Class(&'static str, Vec<(&'static str, V)>, Option<usize>),
    }

    /// A fake graph: object `i` is `objects[i]`; every read is logged. A Record with an
    /// `@receiver` field has extras: a singleton method, and that field as its receiver.
    struct Graph {
        objects: Vec<FakeObj>,
        described: Vec<usize>,
        /// The class of every Record (an object id).
        record_class: Option<usize>,
    }

    impl Reader for Graph {
        type Value = V;

        fn inline(&mut self, v: V) -> Option<Value> {
            match v {
                V::Int(i) => Some(Value::Integer(i)),
                V::Obj(i) if i >= self.objects.len() => Some(Value::Cut(CutReason::Error)),
                V::Obj(_) => None,
            }
        }

        fn identity(&self, v: V) -> usize {
            match v {
                V::Obj(i) => 0x1000 + i * 8,
                V::Int(_) => 0,
            }
        }

        fn read_string<T>(&self, v: V, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
            match v {
                V::Obj(i) => match self.objects.get(i)? {
                    FakeObj::Str(s) => Some(f(s.as_bytes())),
                    _ => None,
                },
                V::Int(_) => None,
            }
        }

        fn header(&mut self, v: V) -> (String, bool) {
            let V::Obj(i) = v else { unreachable!() };
            self.described.push(i);
            let name = match self.objects[i] {
                FakeObj::Str(_) => "String",
                FakeObj::List(_) => "Array",
                FakeObj::Record(_) => "Record",
                FakeObj::Class(..) => "Class",
            };
            (name.into(), i % 2 == 1)
        }

        fn kind(&mut self, v: V, depth: u32, walk: &mut Walk<V>) -> ObjectKind {
            let V::Obj(i) = v else { unreachable!() };
            match &self.objects[i] {
                FakeObj::Str(s) => {
                    let keep = s.len().min(walk.limits().max_string_bytes);
                    walk.charge(keep);
                    ObjectKind::String {
                        bytes: s.as_bytes()[..keep].to_vec(),
                        encoding: "UTF-8".into(),
                        original_len: s.len() as u64,
                    }
                }
                FakeObj::List(items) => {
                    let items = items.clone();
                    let take = items.len().min(walk.limits().max_collection_items);
                    let kept: Vec<Value> = items[..take]
                        .iter()
                        .map(|item| walk.value(self, *item, depth))
                        .collect();
                    walk.charge(kept.len() * 8);
                    ObjectKind::Array {
                        items: kept,
                        original_len: items.len() as u64,
                    }
                }
                FakeObj::Record(_) => ObjectKind::Plain,
                FakeObj::Class(path, ..) => ObjectKind::Module {
                    name: Some(path.to_string()),
                    is_class: true,
                },
            }
        }

        fn frame_class(&mut self, v: V) -> Option<V> {
            match v {
                V::Obj(i) => match self.objects.get(i)? {
                    FakeObj::Class(..) => Some(v),
                    FakeObj::Record(_) => self.record_class.map(V::Obj),
                    _ => None,
                },
                V::Int(_) => None,
            }
        }

        fn class_vars(&mut self, class: V) -> Option<ClassVars<V>> {
            let V::Obj(i) = class else { return None };
            let FakeObj::Class(path, vars, superclass) = self.objects.get(i)? else {
                return None;
            };
            Some(ClassVars {
                path: path.to_string(),
                vars: vars.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
                superclass: superclass.map(V::Obj),
            })
        }

        fn ivars(&mut self, v: V, depth: u32, walk: &mut Walk<V>) -> Vec<(String, Value)> {
            let V::Obj(i) = v else { unreachable!() };
            let FakeObj::Record(fields) = &self.objects[i] else {
                return Vec::new();
            };
            let fields = fields.clone();
            fields
                .into_iter()
                .map(|(name, v)| (name.to_string(), walk.named(self, name, v, depth)))
                .collect()
        }

        fn extra(
            &mut self,
            v: V,
            kind: &ObjectKind,
            depth: u32,
            walk: &mut Walk<V>,
        ) -> Option<ObjectExtra> {
            let V::Obj(i) = v else { unreachable!() };
            let FakeObj::Record(fields) = &self.objects[i] else {
                return None;
            };
            assert_eq!(kind, &ObjectKind::Plain);
            let (_, receiver) = *fields.iter().find(|(n, _)| *n == "@receiver")?;
            Some(ObjectExtra {
                object: 999, // the walk sets the real index
                singleton_methods: vec![format!("m{i}")],
                receiver: Some(walk.value(self, receiver, depth)),
                ..ObjectExtra::default()
            })
        }
    }

    fn limits() -> Limits {
        Limits {
            max_depth: 10,
            max_objects: 100,
            max_bytes: 1 << 20,
            max_string_bytes: 100,
            max_collection_items: 100,
        }
    }

    /// Walks from `roots` (as a frame's locals at depth 0).
    fn walk_with(
        objects: Vec<FakeObj>,
        roots: &[V],
        limits: Limits,
        magic: &AddrMap<String>,
    ) -> (Vec<Value>, Vec<Object>, CaptureStats, Vec<usize>) {
        let rules = Rules::default();
        let mut g = Graph {
            objects,
            described: Vec::new(),
            record_class: None,
        };
        let mut w = Walk::new(limits, &rules, magic);
        let values = roots.iter().map(|v| w.value(&mut g, *v, 0)).collect();
        let (objects, stats, extras) = w.finish(&mut g);
        assert_eq!(extras, Extras::default(), "the fake graph has no extras");
        (values, objects, stats, g.described)
    }

    fn walk(
        objects: Vec<FakeObj>,
        roots: &[V],
        limits: Limits,
    ) -> (Vec<Value>, Vec<Object>, CaptureStats) {
        let (v, o, s, _) = walk_with(objects, roots, limits, &AddrMap::default());
        (v, o, s)
    }

    fn items(o: &Object) -> &[Value] {
        match &o.kind {
            ObjectKind::Array { items, .. } => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    #[test]
    fn cycles_and_shared_objects_become_references() {
        // 0 = [1, 2, 2], 1 = [0], 2 = "x"
        let objects = vec![
            FakeObj::List(vec![V::Obj(1), V::Obj(2), V::Obj(2)]),
            FakeObj::List(vec![V::Obj(0)]),
            FakeObj::Str("x"),
        ];
        let (values, arena, stats) = walk(objects, &[V::Obj(0), V::Obj(0), V::Int(7)], limits());
        assert_eq!(values, [Value::Ref(0), Value::Ref(0), Value::Integer(7)]);
        assert_eq!(arena.len(), 3);
        assert_eq!(
            items(&arena[0]),
            [Value::Ref(1), Value::Ref(2), Value::Ref(2)]
        );
        assert_eq!(items(&arena[1]), [Value::Ref(0)]);
        assert_eq!(arena[2].class_name, "String");
        assert_eq!((arena[0].frozen, arena[1].frozen), (false, true));
        assert_eq!(stats, CaptureStats::default());
    }

    #[test]
    fn breadth_first_order() {
        // 0 = [1, 2], 1 = [3], 2 = [4], 3 = "a", 4 = "b": 0, 1, 2, then 3, 4.
        let objects = vec![
            FakeObj::List(vec![V::Obj(1), V::Obj(2)]),
            FakeObj::List(vec![V::Obj(3)]),
            FakeObj::List(vec![V::Obj(4)]),
            FakeObj::Str("a"),
            FakeObj::Str("b"),
        ];
        let (_, arena, _, described) =
            walk_with(objects, &[V::Obj(0)], limits(), &AddrMap::default());
        assert_eq!(described, [0, 1, 2, 3, 4]);
        assert_eq!(items(&arena[1]), [Value::Ref(3)]);
        assert_eq!(items(&arena[2]), [Value::Ref(4)]);
    }

    /// A chain 0 -> 1 -> ... -> n-1 of one-item lists.
    fn chain(n: usize) -> Vec<FakeObj> {
        (0..n)
            .map(|i| {
                if i + 1 < n {
                    FakeObj::List(vec![V::Obj(i + 1)])
                } else {
                    FakeObj::Str("end")
                }
            })
            .collect()
    }

    #[test]
    fn the_depth_limit_cuts_far_objects() {
        let l = Limits {
            max_depth: 2,
            ..limits()
        };
        let (_, arena, stats) = walk(chain(6), &[V::Obj(0)], l);
        // Roots are at depth 0, their items at 1 and 2; the next is cut.
        assert_eq!(arena.len(), 3);
        assert_eq!(items(&arena[2]), [Value::Cut(CutReason::Depth)]);
        assert_eq!(stats.cut_depth, 1);
    }

    #[test]
    fn the_object_limit_keeps_the_closest() {
        let objects = vec![
            FakeObj::List(vec![V::Obj(1), V::Obj(2), V::Obj(3)]),
            FakeObj::Str("a"),
            FakeObj::Str("b"),
            FakeObj::Str("c"),
        ];
        let l = Limits {
            max_objects: 3,
            ..limits()
        };
        let (_, arena, stats) = walk(objects, &[V::Obj(0)], l);
        assert_eq!(
            items(&arena[0]),
            [Value::Ref(1), Value::Ref(2), Value::Cut(CutReason::Objects)]
        );
        assert_eq!(stats.cut_objects, 1);
    }

    #[test]
    fn the_byte_limit_counts_what_is_kept() {
        // 0 = [1, 2]: when 1 and 2 are queued nothing is kept yet; once 0 is (2 items * 8,
        // plus 48 and "Array": 69 bytes), 1's item 3 is over 68 and cut.
        let objects = vec![
            FakeObj::List(vec![V::Obj(1), V::Obj(2)]),
            FakeObj::List(vec![V::Obj(3)]),
            FakeObj::Str("b"),
            FakeObj::Str("c"),
        ];
        let l = Limits {
            max_bytes: 68,
            ..limits()
        };
        let (_, arena, stats) = walk(objects, &[V::Obj(0)], l);
        assert_eq!(arena.len(), 3);
        assert_eq!(items(&arena[1]), [Value::Cut(CutReason::Bytes)]);
        assert_eq!(stats.cut_bytes, 1);
        let roomy = Limits {
            max_bytes: 69,
            ..limits()
        };
        let objects = vec![
            FakeObj::List(vec![V::Obj(1), V::Obj(2)]),
            FakeObj::List(vec![V::Obj(3)]),
            FakeObj::Str("b"),
            FakeObj::Str("c"),
        ];
        assert_eq!(walk(objects, &[V::Obj(0)], roomy).1.len(), 4);
    }

    #[test]
    fn secrets_are_redacted_by_name_and_by_value() {
        let objects = vec![
            FakeObj::Record(vec![
                ("@password", V::Obj(1)),
                ("@name", V::Obj(2)),
                ("@card", V::Obj(3)),
                ("@api_key", V::Int(5)),
            ]),
            FakeObj::Str("hunter2"),
            FakeObj::Str("Ada"),
            FakeObj::Str("4111 1111 1111 1111"),
        ];
        let (_, arena, stats) = walk(objects, &[V::Obj(0)], limits());
        let ivars = &arena[0].ivars;
        assert_eq!(
            ivars[0],
            ("@password".into(), Value::Redacted("name".into()))
        );
        assert_eq!(ivars[1], ("@name".into(), Value::Ref(1)));
        assert_eq!(
            ivars[2],
            ("@card".into(), Value::Redacted("card number".into()))
        );
        assert_eq!(ivars[3].1, Value::Redacted("name".into()));
        assert_eq!(arena.len(), 2, "redacted objects are never walked");
        assert_eq!(stats.redacted, 3);
    }

    #[test]
    fn truncation_is_counted_from_what_is_kept() {
        let objects = vec![
            FakeObj::List(vec![V::Obj(1), V::Int(1), V::Int(2)]),
            FakeObj::Str("abcdef"),
        ];
        let l = Limits {
            max_string_bytes: 4,
            max_collection_items: 2,
            ..limits()
        };
        let (_, arena, stats) = walk(objects, &[V::Obj(0)], l);
        assert_eq!(items(&arena[0]).len(), 2);
        let ObjectKind::String {
            bytes,
            original_len,
            ..
        } = &arena[1].kind
        else {
            panic!()
        };
        assert_eq!((bytes.as_slice(), *original_len), (&b"abcd"[..], 6));
        assert_eq!(
            (stats.truncated_strings, stats.truncated_collections),
            (1, 1)
        );
    }

    #[test]
    fn magic_roots_are_named_not_walked() {
        let objects = vec![
            FakeObj::List(vec![V::Obj(1)]),
            FakeObj::Record(vec![("@secret_thing", V::Obj(2))]),
            FakeObj::Str("x"),
        ];
        let magic = AddrMap::from_iter([(0x1000 + 8, "Rails.application".to_string())]);
        let (_, arena, stats, described) = walk_with(objects, &[V::Obj(0)], limits(), &magic);
        assert_eq!(arena.len(), 2);
        assert_eq!(
            arena[1].kind,
            ObjectKind::Magic {
                path: "Rails.application".into()
            }
        );
        assert!(arena[1].ivars.is_empty());
        assert_eq!(described, [0, 1]);
        assert_eq!(stats.redacted, 0);
    }

    #[test]
    fn extras_are_kept_by_object_index_and_their_values_walked() {
        // 0 = [1, 2]; 1 = a record without extras; 2 = one whose receiver is 3.
        let objects = vec![
            FakeObj::List(vec![V::Obj(1), V::Obj(2)]),
            FakeObj::Record(vec![]),
            FakeObj::Record(vec![("@receiver", V::Obj(3))]),
            FakeObj::Str("r"),
        ];
        let rules = Rules::default();
        let magic = AddrMap::default();
        let mut g = Graph {
            objects,
            described: Vec::new(),
            record_class: None,
        };
        let mut w = Walk::new(limits(), &rules, &magic);
        w.value(&mut g, V::Obj(0), 0);
        let (arena, _, extras) = w.finish(&mut g);
        assert_eq!(arena.len(), 4);
        assert_eq!(
            extras.objects,
            [ObjectExtra {
                object: 2,
                singleton_methods: vec!["m2".into()],
                receiver: Some(Value::Ref(3)),
                ..ObjectExtra::default()
            }]
        );
        assert_eq!(arena[3].class_name, "String");
    }

    #[test]
    fn unreadable_values_are_cut_as_errors() {
        let (values, arena, _) = walk(vec![], &[V::Obj(9)], limits());
        assert_eq!(values, [Value::Cut(CutReason::Error)]);
        assert!(arena.is_empty());
    }

    /// Walks one frame whose self is `self_value` and whose one local is `local`, with every
    /// Record an instance of `record_class`: the arena, the class states and the counts.
    fn frame_walk(
        objects: Vec<FakeObj>,
        record_class: Option<usize>,
        self_value: V,
        local: V,
        limits: Limits,
    ) -> (Vec<Value>, Vec<Object>, Vec<ClassState>, CaptureStats) {
        let rules = Rules::default();
        let magic = AddrMap::default();
        let mut g = Graph {
            objects,
            described: Vec::new(),
            record_class,
        };
        let mut w = Walk::new(limits, &rules, &magic);
        let values = vec![
            w.frame_self(&mut g, self_value),
            w.named(&mut g, "x", local, 0),
        ];
        let (arena, stats, extras) = w.finish(&mut g);
        (values, arena, extras.classes, stats)
    }

    #[test]
    fn the_frame_class_and_its_superclasses_bring_their_class_state() {
        let objects = vec![
            // 0: self, an instance of 1
            FakeObj::Record(vec![("@items", V::Obj(4))]),
            // 1: its class, under 2, under 3 (which has no class-level state)
            FakeObj::Class(
                "Cart",
                vec![
                    ("@@created", V::Int(2)),
                    ("@shared", V::Obj(4)),
                    ("@@api_key", V::Obj(5)),
                ],
                Some(2),
            ),
            FakeObj::Class("Base", vec![("@limit", V::Int(3))], Some(3)),
            FakeObj::Class("Object", vec![], None),
            // 4: reached from the frame and from the class
            FakeObj::List(vec![V::Int(1)]),
            FakeObj::Str("k"),
        ];
        let (values, arena, classes, stats) =
            frame_walk(objects, Some(1), V::Obj(0), V::Int(0), limits());
        assert_eq!(values[0], Value::Ref(0));
        let paths: Vec<&str> = classes.iter().map(|c| c.class_path.as_str()).collect();
        assert_eq!(paths, ["Cart", "Base"], "Object has none: left out");
        assert_eq!(
            classes[0].vars,
            [
                ("@@created".into(), Value::Integer(2)),
                // The same object the frame reached: one reference.
                ("@shared".into(), Value::Ref(1)),
                ("@@api_key".into(), Value::Redacted("name".into())),
            ]
        );
        assert_eq!(classes[1].vars, [("@limit".into(), Value::Integer(3))]);
        assert_eq!(stats.redacted, 1);
        assert_eq!(arena.len(), 2, "the classes are not objects of the arena");
    }

    #[test]
    fn a_class_method_frame_and_classes_held_as_values_bring_theirs() {
        let objects = vec![
            FakeObj::Class("Cfg", vec![("@limit", V::Int(3))], None),
            FakeObj::Class("Other", vec![("@@n", V::Int(1))], None),
            FakeObj::Class("Quiet", vec![], None),
        ];
        // self is the class Cfg; the local holds the class Other.
        let (values, arena, classes, _) = frame_walk(objects, None, V::Obj(0), V::Obj(1), limits());
        assert_eq!(values, [Value::Ref(0), Value::Ref(1)]);
        assert_eq!(arena.len(), 2);
        let paths: Vec<&str> = classes.iter().map(|c| c.class_path.as_str()).collect();
        assert_eq!(paths, ["Cfg", "Other"]);
    }

    #[test]
    fn class_state_gets_a_quarter_of_the_object_limit_and_its_own_var_limit() {
        let objects = vec![
            FakeObj::Class(
                "Big",
                vec![
                    ("@cache", V::Obj(1)),
                    ("@two", V::Int(2)),
                    ("@three", V::Int(3)),
                    ("@four", V::Int(4)),
                    ("@five", V::Int(5)),
                ],
                None,
            ),
            FakeObj::List((2..40).map(V::Obj).collect()),
        ]
        .into_iter()
        .chain((2..40).map(|_| FakeObj::Str("x")))
        .collect();
        let small = Limits {
            max_objects: 12,
            max_collection_items: 4,
            ..limits()
        };
        let (_, arena, classes, stats) = frame_walk(objects, None, V::Obj(0), V::Int(0), small);
        // The class itself (the frame's self), then 12 / 4 = 3 more objects: the list and
        // two of the four items it keeps.
        assert_eq!(arena.len(), 4);
        assert_eq!(stats.cut_objects, 2);
        assert_eq!(classes[0].vars.len(), 4);
        assert_eq!(classes[0].vars_left_out, 1);
    }

    #[test]
    fn class_state_is_bounded_in_classes_and_never_loops() {
        // A chain of classes, each with state, each the superclass of the next; the last
        // is its own superclass (a broken reader must not loop).
        let n = 40;
        let objects: Vec<FakeObj> = (0..n)
            .map(|i| {
                FakeObj::Class(
                    "C",
                    vec![("@v", V::Int(i as i64))],
                    Some((i + 1).min(n - 1)),
                )
            })
            .collect();
        let (_, _, classes, _) = frame_walk(objects, None, V::Obj(0), V::Int(0), limits());
        assert_eq!(
            classes.len(),
            1 + SUPERCLASSES,
            "a class and its superclasses"
        );
        let looped: Vec<FakeObj> = vec![FakeObj::Class("Loop", vec![("@v", V::Int(1))], Some(0))];
        let (_, _, classes, _) = frame_walk(looped, None, V::Obj(0), V::Int(0), limits());
        assert_eq!(classes.len(), 1);
    }
}
