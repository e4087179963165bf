//! Reading Ruby objects the VM's structures point at: strings, arrays, symbols (IDs), classes.
//!
//! Out of process there is no `rb_id2name` or `rb_class_path`; their data is read directly.
//! IDs are named through the global symbol table (`ruby_global_symbols.ids`: an array of
//! 512-entry arrays of frozen strings). Class paths live in the class itself from 3.3 on, and in
//! a hidden `__classpath__` instance variable before (an `st_table` on 3.1; on 3.2 the first
//! slot of the class's instance variable array). Every read is bounded, and anything that does
//! not look like what it should be is an error, never a guess passed on as fact.

use crate::layout::{Layout, ObjectFamily};
use crate::memory::{Memory, ReadError};
use std::cell::RefCell;
use std::collections::HashMap;

pub const T_OBJECT: usize = 0x01;
pub const T_CLASS: usize = 0x02;
pub const T_MODULE: usize = 0x03;
pub const T_STRING: usize = 0x05;
pub const T_ARRAY: usize = 0x07;
pub const T_IMEMO: usize = 0x1a;
pub const T_ICLASS: usize = 0x1c;
pub const T_MASK: usize = 0x1f;
const FL_USER1: usize = 1 << 13;
const FL_USER3: usize = 1 << 15;
/// Strings longer than this are cut: labels and paths are short.
const MAX_STRING: usize = 64 * 1024;
/// `ID_ENTRY_UNIT` in symbol.c.
const ID_ENTRY_UNIT: usize = 512;
const QNIL: usize = 0x08;

/// Reads objects of one VM, caching names (IDs and class paths do not change).
pub struct Objects<'m, M: Memory> {
    pub mem: &'m M,
    pub l: &'static Layout,
    global_symbols: Option<usize>,
    /// The VM (`rb_vm_t`), when known: 3.2's class paths are found through its object shapes.
    vm: Option<usize>,
    ids: RefCell<HashMap<usize, Option<String>>>,
    paths: RefCell<HashMap<usize, String>>,
}

impl<'m, M: Memory> Objects<'m, M> {
    pub fn new(mem: &'m M, l: &'static Layout, global_symbols: Option<usize>) -> Self {
        Objects {
            mem,
            l,
            global_symbols,
            vm: None,
            ids: RefCell::new(HashMap::new()),
            paths: RefCell::new(HashMap::new()),
        }
    }

    /// The same reader, knowing where the VM is (3.2 reads class paths through it).
    pub fn with_vm(mut self, vm: usize) -> Self {
        self.vm = Some(vm);
        self
    }

    pub fn has_symbols(&self) -> bool {
        self.global_symbols.is_some()
    }

    /// The builtin type of a heap object, or None for special constants (nil, Integers...).
    pub fn builtin_type(&self, v: usize) -> Result<Option<usize>, ReadError> {
        if v == 0 || v & 0x07 != 0 || v == QNIL {
            return Ok(None);
        }
        Ok(Some(self.mem.read_word(v)? & T_MASK))
    }

    pub fn flags(&self, v: usize) -> Result<usize, ReadError> {
        self.mem.read_word(v)
    }

    /// `RBasic.klass`.
    pub fn klass(&self, v: usize) -> Result<usize, ReadError> {
        self.mem.read_word(v + 8)
    }

    /// The bytes of a String (lossily as UTF-8).
    pub fn string(&self, v: usize) -> Result<String, ReadError> {
        if self.builtin_type(v)? != Some(T_STRING) {
            return Err(ReadError::Unreadable(v));
        }
        let flags = self.flags(v)?;
        let noembed = flags & FL_USER1 != 0;
        let (ptr, len) = match self.l.objects {
            ObjectFamily::V31 if noembed => {
                (self.mem.read_word(v + 24)?, self.mem.read_word(v + 16)?)
            }
            ObjectFamily::V31 => (v + 16, (flags >> 14) & 0x1f),
            _ if noembed => (self.mem.read_word(v + 24)?, self.mem.read_word(v + 16)?),
            _ => (v + 24, self.mem.read_word(v + 16)?),
        };
        let mut buf = vec![0u8; len.min(MAX_STRING)];
        self.mem.read_bytes(ptr, &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Element `i` of an Array.
    pub fn array_entry(&self, ary: usize, i: usize) -> Result<usize, ReadError> {
        if self.builtin_type(ary)? != Some(T_ARRAY) {
            return Err(ReadError::Unreadable(ary));
        }
        let flags = self.flags(ary)?;
        let (ptr, len) = if flags & FL_USER1 != 0 {
            let mask = match self.l.objects {
                ObjectFamily::V31 => 0x3,
                _ => 0x7f,
            };
            (ary + 16, (flags >> 15) & mask)
        } else {
            (self.mem.read_word(ary + 32)?, self.mem.read_word(ary + 16)?)
        };
        if i >= len {
            return Err(ReadError::Unreadable(ary));
        }
        self.mem.read_word(ptr + i * 8)
    }

    /// The name of an ID, if the symbol table is known and holds it.
    pub fn id_name(&self, id: usize) -> Option<String> {
        if let Some(hit) = self.ids.borrow().get(&id) {
            return hit.clone();
        }
        let name = self.lookup_id(id).ok().flatten();
        self.ids.borrow_mut().insert(id, name.clone());
        name
    }

    fn lookup_id(&self, id: usize) -> Result<Option<String>, ReadError> {
        let Some(table) = self.global_symbols else {
            return Ok(None);
        };
        let serial = if id > self.l.t_last_op_id {
            id >> 4
        } else {
            id
        };
        let last = self.mem.read_u32(table)? as usize;
        if serial == 0 || serial > last {
            return Ok(None);
        }
        let ids = self.mem.read_word(table + 16)?;
        let chunk = self.array_entry(ids, serial / ID_ENTRY_UNIT)?;
        let s = self.array_entry(chunk, (serial % ID_ENTRY_UNIT) * 2)?;
        if self.builtin_type(s)? != Some(T_STRING) {
            return Ok(None);
        }
        Ok(Some(self.string(s)?))
    }

    /// Checks that `table` is the global symbol table: `initialize` must be where id.def puts it.
    pub fn symbols_table_is_valid(mem: &M, l: &'static Layout, table: usize) -> bool {
        let probe = Objects::new(mem, l, Some(table));
        // `idInitialize`: the token shifted past the scope bits, tagged as a local name.
        let id_initialize = (l.t_initialize << 4) | 0x01;
        probe.lookup_id(id_initialize).ok().flatten().as_deref() == Some("initialize")
    }

    /// A class's or module's superclass pointer.
    pub fn super_of(&self, klass: usize) -> Result<usize, ReadError> {
        self.mem.read_word(klass + self.l.class_super)
    }

    pub fn is_singleton(&self, klass: usize) -> Result<bool, ReadError> {
        Ok(self.flags(klass)? & self.l.fl_singleton != 0)
    }

    /// The class an object is an instance of (skipping singleton classes and included modules).
    pub fn real_class_of(&self, obj: usize) -> Result<Option<usize>, ReadError> {
        if self.builtin_type(obj)?.is_none() {
            return Ok(None);
        }
        let mut k = self.klass(obj)?;
        for _ in 0..64 {
            if k == 0 {
                return Ok(None);
            }
            let t = self.builtin_type(k)?;
            if t == Some(T_ICLASS) || self.is_singleton(k)? {
                k = self.super_of(k)?;
                continue;
            }
            return Ok(Some(k));
        }
        Ok(None)
    }

    /// The name of a special constant's class (`nil` is a NilClass...).
    pub fn special_class_name(v: usize) -> &'static str {
        match v {
            0x00 => "FalseClass",
            QNIL => "NilClass",
            0x14 => "TrueClass",
            v if v & 1 == 1 => "Integer",
            v if v & 0x03 == 0x02 => "Float",
            v if v & 0xff == 0x0c => "Symbol",
            _ => "Object",
        }
    }

    /// The class path of `self`'s class.
    pub fn class_name_of(&self, obj: usize) -> String {
        match self.real_class_of(obj) {
            Ok(Some(k)) => self.class_path(k),
            _ => Self::special_class_name(obj).to_string(),
        }
    }

    /// A class's or module's path (`Foo::Bar`), or `#<Class:0x...>` when it has none or it
    /// cannot be read.
    pub fn class_path(&self, klass: usize) -> String {
        if let Some(p) = self.paths.borrow().get(&klass) {
            return p.clone();
        }
        let path = self
            .read_class_path(klass)
            .ok()
            .flatten()
            .unwrap_or_else(|| self.unnamed_class_path(klass));
        self.paths.borrow_mut().insert(klass, path.clone());
        path
    }

    /// What `inspect` shows for a class without a name: `#<Class:0x00007f...>` (16 digits, as
    /// Ruby prints addresses), and for a singleton class the object it belongs to,
    /// `#<Class:#<Object:0x...>>` or `#<Class:Foo>`.
    fn unnamed_class_path(&self, klass: usize) -> String {
        let kind = match self.builtin_type(klass) {
            Ok(Some(T_MODULE)) => "Module",
            _ => "Class",
        };
        if kind == "Class" && self.is_singleton(klass).unwrap_or(false) {
            if let Ok(Some(attached)) = self.attached_object(klass) {
                let inner = match self.builtin_type(attached) {
                    Ok(Some(T_CLASS)) | Ok(Some(T_MODULE)) => self.class_path(attached),
                    _ => format!("#<{}:0x{attached:016x}>", self.class_name_of(attached)),
                };
                return format!("#<Class:{inner}>");
            }
        }
        format!("#<{kind}:0x{klass:016x}>")
    }

    fn read_class_path(&self, klass: usize) -> Result<Option<String>, ReadError> {
        let v = match self.l.objects {
            ObjectFamily::V33 { classpath, .. } => self.mem.read_word(klass + classpath)?,
            ObjectFamily::V31 => match self.hidden_ivar(klass, "__classpath__")? {
                Some(v) => v,
                None => return Ok(None),
            },
            ObjectFamily::V32 { shapes } => {
                // The class extension follows `RClass` (32 bytes); its first field is the
                // instance variable array. Where `__classpath__` is in it, the class's shape
                // says (a class named by a constant assignment; Struct.new and others set
                // instance variables first). Otherwise only a first slot that reads as a class
                // path is taken.
                let ivs = self.mem.read_word(klass + 32)?;
                if ivs == 0 {
                    return Ok(None);
                }
                // Shapes that cannot be read or do not name it (3.2.0's core files) also leave
                // only the first slot.
                let at = match self
                    .vm
                    .map(|vm| self.shape_ivar_index(vm, shapes, klass, "__classpath__"))
                {
                    Some(Ok(Some(i))) => i,
                    _ => 0,
                };
                let v = self.mem.read_word(ivs + at * 8)?;
                let s = match self.builtin_type(v)? {
                    Some(T_STRING) => self.string(v)?,
                    _ => return Ok(None),
                };
                let looks_like_path = s.split("::").all(|part| {
                    part.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                        && part.chars().all(|c| c.is_alphanumeric() || c == '_')
                });
                return Ok(looks_like_path.then_some(s));
            }
        };
        if self.builtin_type(v)? != Some(T_STRING) {
            return Ok(None);
        }
        Ok(Some(self.string(v)?))
    }

    /// The object a singleton class belongs to.
    pub fn attached_object(&self, singleton: usize) -> Result<Option<usize>, ReadError> {
        match self.l.objects {
            ObjectFamily::V33 {
                attached_object, ..
            } => Ok(Some(self.mem.read_word(singleton + attached_object)?)),
            ObjectFamily::V31 => self.hidden_ivar(singleton, "__attached__"),
            ObjectFamily::V32 { .. } => {
                // The first instance variable Ruby sets on a new singleton class is
                // `__attached__` (see read_class_path for where 3.2 keeps them).
                let ivs = self.mem.read_word(singleton + 32)?;
                if ivs == 0 {
                    return Ok(None);
                }
                let v = self.mem.read_word(ivs)?;
                Ok(self.builtin_type(v)?.map(|_| v))
            }
        }
    }

    /// For a refinement module, the class it refines and the module that defined it (3.1,
    /// where both are hidden instance variables).
    pub fn refinement(&self, module: usize) -> Result<Option<(usize, usize)>, ReadError> {
        if self.builtin_type(module)? != Some(T_MODULE) || self.flags(module)? & FL_USER3 == 0 {
            return Ok(None);
        }
        if self.l.objects != ObjectFamily::V31 {
            return Ok(None);
        }
        let refined = self.hidden_ivar(module, "__refined_class__")?;
        let defined_at = self.hidden_ivar(module, "__defined_at__")?;
        Ok(refined.zip(defined_at))
    }

    /// A refinement's refined class and defining module, for a method `me` of the refinement
    /// `module`, on any Ruby: from 3.2 on, a class's instance variables live behind object
    /// shapes, so instead the refined class is the refinement's superclass (for a refined
    /// module, an iclass standing for it), and the defining module is the class after the
    /// refinement on the method's cref (`refine` runs its block with the refinement pushed onto
    /// the cref of the module's body). Falls back to [`Objects::refinement`] on 3.1.
    pub fn refinement_of_method(
        &self,
        module: usize,
        me: usize,
    ) -> Result<Option<(usize, usize)>, ReadError> {
        if self.l.objects == ObjectFamily::V31 {
            return self.refinement(module);
        }
        // RMODULE_IS_REFINEMENT: FL_USER3 before 4.0, FL_USER1 from 4.0.
        let is_refinement = if self.l.version.starts_with("3.") {
            FL_USER3
        } else {
            FL_USER3 >> 2
        };
        if self.builtin_type(module)? != Some(T_MODULE) || self.flags(module)? & is_refinement == 0
        {
            return Ok(None);
        }
        const VM_METHOD_TYPE_ISEQ: u8 = 0;
        // rb_cref_t: flags, refinements, klass_or_self, next (3.1 to 4.0).
        const CREF_KLASS: usize = 16;
        const CREF_NEXT: usize = 24;
        let def = self.mem.read_word(me + self.l.me_def)?;
        if def == 0 || self.mem.read_u8(def)? & 0x0f != VM_METHOD_TYPE_ISEQ {
            return Ok(None);
        }
        // rb_method_iseq_t: iseqptr, cref.
        let cref = self.mem.read_word(def + self.l.def_body + 8)?;
        if cref == 0 || self.mem.read_word(cref + CREF_KLASS)? != module {
            return Ok(None);
        }
        let next = self.mem.read_word(cref + CREF_NEXT)?;
        if next == 0 {
            return Ok(None);
        }
        let defined_at = self.mem.read_word(next + CREF_KLASS)?;
        let mut refined = self.super_of(module)?;
        if self.builtin_type(refined)? == Some(T_ICLASS) {
            refined = self.mem.read_word(refined + 8)?;
        }
        if !matches!(self.builtin_type(refined)?, Some(T_CLASS) | Some(T_MODULE))
            || !matches!(
                self.builtin_type(defined_at)?,
                Some(T_CLASS) | Some(T_MODULE)
            )
        {
            return Ok(None);
        }
        Ok(Some((refined, defined_at)))
    }

    /// 3.1: an instance variable of a class, found in its extension's `iv_tbl` (`st_table`
    /// from ID to VALUE) by the ID's name.
    /// 3.2: the index of instance variable `name` in `obj`'s instance variable array, from its
    /// shape (the shape id is the top half of the flags; each shape adds one variable to its
    /// parent's, at the parent's count). None when its shapes do not have it.
    fn shape_ivar_index(
        &self,
        vm: usize,
        s: crate::layout::Shapes32,
        obj: usize,
        name: &str,
    ) -> Result<Option<usize>, ReadError> {
        /// `SHAPE_IVAR` in 3.2's shape.h.
        const SHAPE_IVAR: u8 = 1;
        let list = self.mem.read_word(vm + s.vm_shape_list)?;
        let mut id = self.mem.read_word(obj)? >> 32;
        // A class has a handful of instance variables; a longer chain is a bad read.
        for _ in 0..256 {
            if id == 0 {
                return Ok(None);
            }
            let shape = list + id * s.size;
            if self.mem.read_u8(shape + s.kind)? == SHAPE_IVAR {
                let edge = self.mem.read_word(shape + s.edge_name)?;
                if self.id_name(edge).as_deref() == Some(name) {
                    let count = self.mem.read_u32(shape + s.next_iv_index)? as usize;
                    return Ok(count.checked_sub(1));
                }
            }
            id = self.mem.read_u32(shape + s.parent_id)? as usize;
        }
        Err(ReadError::Unreadable(obj))
    }

    fn hidden_ivar(&self, klass: usize, name: &str) -> Result<Option<usize>, ReadError> {
        let ext = self.mem.read_word(klass + 24)?;
        let table = self.mem.read_word(ext + 8)?;
        if table == 0 {
            return Ok(None);
        }
        let start = self.mem.read_word(table + 32)?;
        let bound = self.mem.read_word(table + 40)?;
        let entries = self.mem.read_word(table + 48)?;
        if bound < start || bound - start > 4096 {
            return Err(ReadError::Unreadable(table));
        }
        for i in start..bound {
            let e = entries + i * 24;
            if self.mem.read_word(e)? == usize::MAX {
                continue; // deleted
            }
            let key = self.mem.read_word(e + 8)?;
            if self.id_name(key).as_deref() == Some(name) {
                return Ok(Some(self.mem.read_word(e + 16)?));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_constants_name_their_classes() {
        type O<'a> = Objects<'a, crate::memory::LocalMemory>;
        assert_eq!(O::special_class_name(0x08), "NilClass");
        assert_eq!(O::special_class_name(0x15), "Integer");
        assert_eq!(O::special_class_name(0x14), "TrueClass");
        assert_eq!(O::special_class_name(0x0c), "Symbol");
    }
}
