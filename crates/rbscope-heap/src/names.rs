//! What to call an object: its class's name, found through the dump's own class records.
//!
//! An object only carries its class's address; the name is on the CLASS/MODULE record, which
//! may come later in the file. So every scan collects the class records it meets
//! ([`ClassTable`]) and names groups at the end. Objects whose class is a singleton class are
//! named after their real class (`real_class_name`, else the first named superclass); anonymous
//! classes are `#<Class:0x…>`. IMEMO objects are grouped by `imemo_type` (their `class` is junk
//! on Ruby 3.1 and absent since 3.2), untyped DATA by its `struct`, and the allocation tracer's
//! own table gets a name that says what it is.

use rustc_hash::FxHashMap;

use crate::parse::{ObjType, Record};

/// The `struct` of the DATA object holding `ObjectSpace.trace_object_allocations`'s table.
pub const ALLOCATION_TRACER: &[u8] = b"ObjectTracing/allocation_info_tracer";
/// The group name given to it.
pub const ALLOCATION_TRACER_LABEL: &str = "(allocation tracer's table)";

/// Names numbered in the order they are first seen, each once: group names of a graph, or
/// group and site names shared by the dumps of a diff (so groups line up across them).
#[derive(Debug, Default)]
pub struct Interner {
    ids: FxHashMap<String, u32>,
    pub names: Vec<String>,
}

impl Interner {
    /// The number of `s`, given it if new.
    pub fn id(&mut self, s: String) -> u32 {
        if let Some(id) = self.ids.get(&s) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.clone());
        self.ids.insert(s, id);
        id
    }
}

/// A class or module as the dump describes it.
#[derive(Clone, Debug, Default)]
pub struct ClassInfo {
    pub ty: ObjType,
    pub name: Option<String>,
    pub real_class_name: Option<String>,
    pub singleton: bool,
    pub superclass: u64,
}

/// Class records by address.
#[derive(Clone, Debug, Default)]
pub struct ClassTable {
    classes: FxHashMap<u64, ClassInfo>,
}

impl ClassTable {
    /// Keeps `rec` if it is a class, module or include class.
    pub fn note(&mut self, rec: &Record<'_>) {
        if rec.ty.is_class_like() {
            self.classes.insert(
                rec.address,
                ClassInfo {
                    ty: rec.ty,
                    name: rec.name.map(|t| t.to_string_lossy()),
                    real_class_name: rec.real_class_name.map(|t| t.to_string_lossy()),
                    singleton: rec.singleton,
                    superclass: rec.superclass,
                },
            );
        }
    }

    pub fn merge(&mut self, other: ClassTable) {
        if self.classes.is_empty() {
            self.classes = other.classes;
        } else {
            self.classes.extend(other.classes);
        }
    }

    pub fn get(&self, address: u64) -> Option<&ClassInfo> {
        self.classes.get(&address)
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The name of the class at `address` as Ruby would print it.
    pub fn class_name(&self, address: u64) -> String {
        match self.classes.get(&address) {
            Some(c) => match (&c.name, c.singleton) {
                (Some(n), false) => n.clone(),
                _ if c.singleton => format!("#<Class:{address:#x}>"),
                _ if c.ty == ObjType::Module => format!("#<Module:{address:#x}>"),
                _ => format!("#<Class:{address:#x}>"),
            },
            None => format!("(class {address:#x} not in dump)"),
        }
    }

    /// The name for an object of class `address`: a singleton class stands for its real class.
    pub fn instance_name(&self, address: u64) -> String {
        let mut at = address;
        for _ in 0..16 {
            let Some(c) = self.classes.get(&at) else {
                break;
            };
            if !c.singleton && c.ty != ObjType::IClass {
                return self.class_name(at);
            }
            if let Some(real) = &c.real_class_name {
                return real.clone();
            }
            if c.superclass == 0 {
                break;
            }
            at = c.superclass;
        }
        self.class_name(address)
    }
}

/// What an object is grouped by before names are known: its class pointer, its type, and for
/// IMEMO / untyped DATA a hash of the subtype (`imemo_type`, `struct`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub class: u64,
    pub ty: ObjType,
    pub sub: u64,
}

/// Subtype names seen, by hash (the names are few and short).
#[derive(Clone, Debug, Default)]
pub struct SubNames(FxHashMap<u64, String>);

impl SubNames {
    pub fn merge(&mut self, other: SubNames) {
        self.0.extend(other.0);
    }
}

/// Marks the allocation tracer's table in `GroupKey::sub`.
const TRACER_SUB: u64 = u64::MAX;

impl GroupKey {
    /// The group of the allocation tracer's own table.
    pub fn is_allocation_tracer(&self) -> bool {
        self.ty == ObjType::Data && self.sub == TRACER_SUB
    }
}

/// The group of `rec`, remembering subtype names in `subs`.
pub fn group_key(rec: &Record<'_>, subs: &mut SubNames) -> GroupKey {
    let mut key = GroupKey {
        class: rec.class,
        ty: rec.ty,
        sub: 0,
    };
    let sub = match rec.ty {
        ObjType::Imemo => {
            key.class = 0;
            rec.imemo_type
        }
        ObjType::Node => {
            key.class = 0;
            None
        }
        ObjType::Data => {
            if rec.struct_name.map(|s| s.raw()) == Some(ALLOCATION_TRACER) {
                key.class = 0;
                key.sub = TRACER_SUB;
                return key;
            }
            if rec.class == 0 {
                rec.struct_name
            } else {
                None
            }
        }
        _ => None,
    };
    if let Some(s) = sub {
        let raw = s.raw();
        let h = hash_bytes(raw);
        key.sub = h;
        subs.0
            .entry(h)
            .or_insert_with(|| String::from_utf8_lossy(raw).into_owned());
    }
    key
}

/// A short, fast hash for grouping (not for identity of large values).
pub fn hash_bytes(b: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(b);
    h.write_usize(b.len());
    h.finish() | 1
}

/// The display name of a group.
pub fn group_name(key: &GroupKey, classes: &ClassTable, subs: &SubNames) -> String {
    let sub = || subs.0.get(&key.sub).cloned().unwrap_or_default();
    match key.ty {
        ObjType::Imemo if key.sub != 0 => format!("<imemo:{}>", sub()),
        ObjType::Data if key.sub == TRACER_SUB => ALLOCATION_TRACER_LABEL.to_string(),
        ObjType::Data if key.class == 0 && key.sub != 0 => format!("<data:{}>", sub()),
        ObjType::Node => "<NODE>".to_string(),
        // Hidden objects (no class): Ruby's internal arrays, hashes and strings.
        _ if key.class == 0 => format!("<hidden {}>", key.ty.name()),
        _ => classes.instance_name(key.class),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_line;

    #[test]
    fn names_of_named_singleton_and_anonymous_classes() {
        let mut t = ClassTable::default();
        for l in [
            r#"{"address":"0x100", "type":"CLASS", "class":"0x200", "superclass":"0x300", "name":"Foo"}"#,
            r#"{"address":"0x200", "type":"CLASS", "class":"0x400", "superclass":"0x500", "real_class_name":"Class", "singleton":true}"#,
            r#"{"address":"0x600", "type":"CLASS", "class":"0x400", "superclass":"0x100", "singleton":true}"#,
            r#"{"address":"0x700", "type":"CLASS", "class":"0x400", "superclass":"0x100"}"#,
            r#"{"address":"0x800", "type":"MODULE", "class":"0x400"}"#,
        ] {
            t.note(&parse_line(l.as_bytes()).unwrap());
        }
        assert_eq!(t.instance_name(0x100), "Foo");
        assert_eq!(t.instance_name(0x200), "Class");
        // A singleton without real_class_name: its superclass names it.
        assert_eq!(t.instance_name(0x600), "Foo");
        assert_eq!(t.instance_name(0x700), "#<Class:0x700>");
        assert_eq!(t.class_name(0x800), "#<Module:0x800>");
        assert_eq!(t.instance_name(0x999), "(class 0x999 not in dump)");
    }

    #[test]
    fn groups_of_imemo_data_and_the_tracer() {
        let t = ClassTable::default();
        let mut subs = SubNames::default();
        let imemo =
            parse_line(br#"{"address":"0x1", "type":"IMEMO", "class":"0x8", "imemo_type":"cref"}"#)
                .unwrap();
        let k = group_key(&imemo, &mut subs);
        assert_eq!(group_name(&k, &t, &subs), "<imemo:cref>");
        let tracer = parse_line(br#"{"address":"0x2", "type":"DATA", "class":"0x9", "struct":"ObjectTracing/allocation_info_tracer", "memsize":3720}"#).unwrap();
        let k = group_key(&tracer, &mut subs);
        assert_eq!(group_name(&k, &t, &subs), ALLOCATION_TRACER_LABEL);
        let node = parse_line(br#"{"address":"0x3", "type":"NODE"}"#).unwrap();
        assert_eq!(
            group_name(&group_key(&node, &mut subs), &t, &subs),
            "<NODE>"
        );
    }
}
