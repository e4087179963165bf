//! A VM made of a table, for the walk's unit tests: each object's facts are fields of an
//! [`Obj`], set by the test.

use super::vm::Release;
use super::{Refs, Vm, MAX_FLAGS};
use crate::write::{Allocation, FlagValue};
use std::collections::HashMap;

/// The facts of one object; what a type does not use is ignored.
#[derive(Clone, Debug)]
pub struct Obj {
    pub flags: u64,
    pub class: u64,
    pub internal: bool,
    pub shape_id: u32,
    pub memsize: u64,
    pub refs: Vec<u64>,
    pub flags_out: Vec<(&'static str, FlagValue<'static>)>,
    /// (file, line, method, generation).
    pub allocated: Option<(&'static [u8], u64, &'static [u8], u64)>,
    pub bytes: &'static [u8],
    pub capacity: u64,
    pub encoding: Option<&'static str>,
    pub coderange_scan: u64,
    /// A Symbol's name String (0: none).
    pub symbol_string: u64,
    /// An Array's length, a Hash's size.
    pub len: u64,
    pub ifnone: u64,
    pub ivars: (u64, bool),
    pub variation: u64,
    pub superclass: u64,
    /// A class's name, a DATA's struct name.
    pub name: Option<&'static [u8]>,
    pub real_name: Option<&'static [u8]>,
    pub singleton: bool,
    pub float: f64,
    pub fd: Option<i64>,
    pub mid: u64,
    pub cc_class: u64,
    pub called_id: u64,
}

impl Obj {
    /// An object of header `flags` (its type in the low bits) with nothing else set but a
    /// 40-byte memsize.
    pub fn with_type(flags: u64) -> Obj {
        Obj {
            flags,
            class: 0,
            internal: false,
            shape_id: 0,
            memsize: 40,
            refs: Vec::new(),
            flags_out: Vec::new(),
            allocated: None,
            bytes: b"",
            capacity: 0,
            encoding: None,
            coderange_scan: 0,
            symbol_string: 0,
            len: 0,
            ifnone: 0,
            ivars: (0, false),
            variation: 0,
            superclass: 0,
            name: None,
            real_name: None,
            singleton: false,
            float: 0.0,
            fd: None,
            mid: 0,
            cc_class: 0,
            called_id: 0,
        }
    }

    /// An embedded String.
    pub fn string(bytes: &'static [u8]) -> Obj {
        Obj {
            bytes,
            capacity: bytes.len() as u64,
            ..Obj::with_type(0x05)
        }
    }

    /// A Symbol whose name is the String at `name` (0: none).
    pub fn symbol(name: u64) -> Obj {
        Obj {
            symbol_string: name,
            ..Obj::with_type(0x14)
        }
    }
}

/// Encodings by handle (index + 1).
const ENCODINGS: [&str; 4] = ["US-ASCII", "UTF-8", "ASCII-8BIT", "UTF-16LE"];
/// GC flag names by ID (index + 1).
const FLAG_NAMES: [&str; 4] = ["wb_protected", "age", "old", "uncollectible"];

pub struct FakeVm {
    pub release: Release,
    pub objects: HashMap<u64, Obj>,
    pub ids: HashMap<u64, &'static [u8]>,
}

impl FakeVm {
    pub fn new(release: Release) -> FakeVm {
        FakeVm {
            release,
            objects: HashMap::new(),
            ids: HashMap::new(),
        }
    }

    pub fn add(&mut self, at: u64, obj: Obj) {
        self.objects.insert(at, obj);
    }

    fn obj(&self, v: u64) -> &Obj {
        self.objects
            .get(&v)
            .unwrap_or_else(|| panic!("the walk read {v:#x}, which the test did not make"))
    }
}

/// A fake of each release: the trait's release is a constant.
pub struct Fake<const R: u8>(pub FakeVm);

macro_rules! releases {
    ($($n:literal => $r:expr),*) => {
        $(impl Vm for Fake<$n> {
            const RELEASE: Release = $r;
            unsafe fn slot_flags(&self, slot: u64) -> u64 { self.0.objects.get(&slot).map_or(0, |o| o.flags) }
            unsafe fn class_of(&self, v: u64) -> u64 { self.0.obj(v).class }
            unsafe fn internal(&self, v: u64) -> bool { self.0.obj(v).internal }
            unsafe fn shape_id(&self, v: u64) -> u32 { self.0.obj(v).shape_id }
            unsafe fn memsize(&self, v: u64) -> u64 { self.0.obj(v).memsize }
            unsafe fn references(&self, v: u64, refs: &mut Refs) {
                for r in &self.0.obj(v).refs { refs.push(*r) }
            }
            unsafe fn gc_flags<'a>(&self, v: u64, out: &mut [(u64, FlagValue<'a>); MAX_FLAGS]) -> usize {
                let flags = &self.0.obj(v).flags_out;
                for (slot, (name, value)) in out.iter_mut().zip(flags) {
                    let id = FLAG_NAMES.iter().position(|n| n == name).expect("a known flag") as u64 + 1;
                    *slot = (id, *value);
                }
                flags.len()
            }
            unsafe fn flag_name(&self, id: u64) -> Option<&'static [u8]> {
                FLAG_NAMES.get(id as usize - 1).map(|n| n.as_bytes())
            }
            unsafe fn allocation<'a>(&self, v: u64) -> Option<Allocation<'a>> {
                self.0.obj(v).allocated.map(|(file, line, method, generation)| Allocation {
                    file: Some(file), line: Some(line), method: Some(method), generation,
                })
            }
            unsafe fn string<'a>(&self, s: u64) -> &'a [u8] { self.0.obj(s).bytes }
            unsafe fn string_capacity(&self, s: u64) -> u64 { self.0.obj(s).capacity }
            unsafe fn encoding(&self, s: u64) -> usize {
                self.0.obj(s).encoding.map_or(0, |e| ENCODINGS.iter().position(|n| *n == e).expect("a known encoding") + 1)
            }
            unsafe fn encoding_name(&self, enc: usize) -> Option<&'static str> { ENCODINGS.get(enc - 1).copied() }
            unsafe fn ascii_compatible(&self, enc: usize) -> bool { ENCODINGS.get(enc - 1) != Some(&"UTF-16LE") }
            unsafe fn coderange_scan(&self, s: u64) -> u64 { self.0.obj(s).coderange_scan }
            unsafe fn symbol_string(&self, sym: u64) -> Option<u64> {
                Some(self.0.obj(sym).symbol_string).filter(|s| *s != 0)
            }
            unsafe fn array_len(&self, v: u64) -> u64 { self.0.obj(v).len }
            unsafe fn hash_size(&self, v: u64) -> u64 { self.0.obj(v).len }
            unsafe fn hash_ifnone(&self, v: u64) -> u64 { self.0.obj(v).ifnone }
            unsafe fn object_ivars(&self, v: u64, _flags: u64) -> (u64, bool) { self.0.obj(v).ivars }
            unsafe fn variation_count(&self, v: u64) -> u64 { self.0.obj(v).variation }
            unsafe fn superclass(&self, v: u64) -> u64 { self.0.obj(v).superclass }
            unsafe fn module_name<'a>(&self, v: u64) -> Option<&'a [u8]> { self.0.obj(v).name }
            unsafe fn real_class_name<'a>(&self, v: u64) -> Option<&'a [u8]> { self.0.obj(v).real_name }
            unsafe fn singleton(&self, v: u64) -> bool { self.0.obj(v).singleton }
            unsafe fn data_type_name<'a>(&self, v: u64) -> Option<&'a [u8]> { self.0.obj(v).name }
            unsafe fn float_value(&self, v: u64) -> f64 { self.0.obj(v).float }
            unsafe fn file_fd(&self, v: u64) -> Option<i64> { self.0.obj(v).fd }
            unsafe fn callinfo_mid(&self, v: u64) -> u64 { self.0.obj(v).mid }
            unsafe fn callcache_class(&self, v: u64) -> u64 { self.0.obj(v).cc_class }
            unsafe fn callcache_called_id(&self, v: u64) -> u64 { self.0.obj(v).called_id }
            unsafe fn id_name<'a>(&self, id: u64) -> Option<&'a [u8]> { self.0.ids.get(&id).copied() }
        })*
    };
}

releases!(31 => Release::R3_1, 32 => Release::R3_2, 33 => Release::R3_3, 34 => Release::R3_4, 40 => Release::R4_0);

/// Calls the generic `$f(vm, args...)` with `$vm` (a [`FakeVm`]) as the fake of its release.
macro_rules! dispatch {
    ($vm:expr, $f:ident $(, $arg:expr)*) => {{
        use $crate::walk::fake::Fake;
        use $crate::walk::vm::Release;
        let vm = $vm;
        match vm.release {
            Release::R3_1 => $f(Fake::<31>(vm) $(, $arg)*),
            Release::R3_2 => $f(Fake::<32>(vm) $(, $arg)*),
            Release::R3_3 => $f(Fake::<33>(vm) $(, $arg)*),
            Release::R3_4 => $f(Fake::<34>(vm) $(, $arg)*),
            Release::R4_0 => $f(Fake::<40>(vm) $(, $arg)*),
        }
    }};
}
pub(crate) use dispatch;
