//! The heap walk's calls into Ruby (the raw declarations rb-sys lacks are in `raw.rs`).
//!
//! Why a module: the heap features read the VM more than anything else in the agent (each
//! object's facts, by this release's functions and struct layouts); here is every such read,
//! as the [`Vm`] that `rbscope_heap::walk` formats from, and the VM's iterations (roots,
//! shapes, pages) as safe functions that run a Rust closure per item inside the panic guard.

use super::raw::heap as raw;
use super::{guard, GcOff, Gvl};
use crate::ffi::guard::Feature;
use rb_sys::{ruby_value_type as T, ID, VALUE};
use rbscope_heap::walk::vm::Release;
use rbscope_heap::walk::{Refs, ShapeFacts, Vm, MAX_FLAGS};
use rbscope_heap::write::{Allocation, FlagValue};
use std::ffi::{c_char, c_int, c_void, CStr};

/// The release this agent is built for: it picks the dump's format.
#[cfg(not(ruby_gte_3_2))]
pub(crate) const RELEASE: Release = Release::R3_1;
#[cfg(all(ruby_gte_3_2, not(ruby_gte_3_3)))]
pub(crate) const RELEASE: Release = Release::R3_2;
#[cfg(all(ruby_gte_3_3, not(ruby_gte_3_4)))]
pub(crate) const RELEASE: Release = Release::R3_3;
#[cfg(all(ruby_gte_3_4, not(ruby_gte_4_0)))]
pub(crate) const RELEASE: Release = Release::R3_4;
#[cfg(ruby_gte_4_0)]
pub(crate) const RELEASE: Release = Release::R4_0;

// rbscope-heap's numbers of this release are the headers' (checked when the agent is built).
const _: () = {
    use rb_sys::ruby_fl_type as FL;
    use rbscope_heap::walk::vm;
    assert!(vm::T_MASK == T::RUBY_T_MASK as u64);
    assert!(vm::FL_USHIFT == rb_sys::ruby_fl_ushift::RUBY_FL_USHIFT as u32);
    assert!(vm::FL_FREEZE == FL::RUBY_FL_FREEZE as u64);
    assert!(RELEASE.fl_singleton() == FL::RUBY_FL_SINGLETON as u64);
    assert!(RELEASE.undef() == rb_sys::Qundef as u64);
    let (mut ours, mut theirs): (&[_], &[_]) = (&vm::VM_TYPES, &VM_TYPES);
    while let ([(n, _), o @ ..], [t, h @ ..]) = (ours, theirs) {
        assert!(*n == *t as u32);
        (ours, theirs) = (o, h);
    }
    assert!(ours.is_empty() && theirs.is_empty());
};

/// The types of `rbscope_heap::walk::vm::VM_TYPES`, as this Ruby's headers number them.
#[rustfmt::skip]
const VM_TYPES: [T; 21] = [
    T::RUBY_T_NONE, T::RUBY_T_OBJECT, T::RUBY_T_CLASS, T::RUBY_T_MODULE, T::RUBY_T_FLOAT,
    T::RUBY_T_STRING, T::RUBY_T_REGEXP, T::RUBY_T_ARRAY, T::RUBY_T_HASH, T::RUBY_T_STRUCT,
    T::RUBY_T_BIGNUM, T::RUBY_T_FILE, T::RUBY_T_DATA, T::RUBY_T_MATCH, T::RUBY_T_COMPLEX,
    T::RUBY_T_RATIONAL, T::RUBY_T_SYMBOL, T::RUBY_T_IMEMO, T::RUBY_T_ICLASS, T::RUBY_T_ZOMBIE,
    T::RUBY_T_MOVED,
];

/// `struct allocation_info` of ext/objspace/objspace.h (the same from Ruby 2.1 to 4.0).
#[repr(C)]
struct AllocationInfo {
    living: c_int,
    flags: VALUE,
    klass: VALUE,
    path: *const c_char,
    line: std::ffi::c_ulong,
    class_path: *const c_char,
    mid: VALUE,
    generation: usize,
}

type LookupAllocation = unsafe extern "C" fn(VALUE) -> *const AllocationInfo;

/// The head of `rb_classext_t` (internal/class.h) of 3.2 to 3.4, which follows the 32-byte
/// `struct RClass` in the class's slot; only `variation_count` is read (a uint32_t in 3.2, an
/// unsigned char from 3.3 on, at the same offset).
#[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
#[repr(C)]
struct ClassExtHead {
    fields: [usize; 14],
    max_iv_count: u32,
    variation_count: VariationCount,
}
#[cfg(all(ruby_gte_3_2, not(ruby_gte_3_3)))]
type VariationCount = u32;
#[cfg(all(ruby_gte_3_3, not(ruby_gte_4_0)))]
type VariationCount = u8;
/// `struct RClass` (RBasic, super, m_tbl), after which 3.2 to 3.4 keep rb_classext_t.
#[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
const RCLASS_SIZE: usize = std::mem::size_of::<rb_sys::RBasic>() + 16;

/// `struct rb_callinfo` (vm_callinfo.h, 3.3 to 4.0); heap callinfos are never packed.
#[cfg(ruby_gte_3_3)]
#[repr(C)]
struct CallInfo {
    flags: VALUE,
    kwarg: *const c_void,
    mid: VALUE,
}

/// The head of `struct rb_callcache` (vm_callinfo.h, 3.3 to 4.0).
#[cfg(ruby_gte_3_3)]
#[repr(C)]
struct CallCache {
    flags: VALUE,
    klass: VALUE,
    cme: *const MethodEntry,
}

/// The head of `rb_method_entry_t` (method.h, 3.3 to 4.0).
#[cfg(ruby_gte_3_3)]
#[repr(C)]
struct MethodEntry {
    flags: VALUE,
    defined_class: VALUE,
    def: *const c_void,
    called_id: ID,
}

/// Where `struct RHash` keeps `ifnone`: after `as` (a pointer) up to 3.2, right after RBasic
/// since 3.3.
#[cfg(not(ruby_gte_3_3))]
const RHASH_IFNONE_OFFSET: usize = std::mem::size_of::<rb_sys::RBasic>() + 8;
#[cfg(ruby_gte_3_3)]
const RHASH_IFNONE_OFFSET: usize = std::mem::size_of::<rb_sys::RBasic>();

/// The VM, as the heap walk reads it. Made on a thread holding the GVL (not `Send`).
pub(crate) struct RubyHeap {
    lookup: Option<LookupAllocation>,
    _gvl: Gvl,
}

impl RubyHeap {
    pub(crate) fn new(gvl: Gvl) -> RubyHeap {
        RubyHeap {
            lookup: allocation_lookup(),
            _gvl: gvl,
        }
    }

    /// Whether objspace's allocation tracing is loaded (the dump then says where objects were
    /// allocated).
    pub(crate) fn tracing_allocations(&self) -> bool {
        self.lookup.is_some()
    }
}

/// objspace.so's lookup of an object's allocation info, when objspace is loaded.
fn allocation_lookup() -> Option<LookupAllocation> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks a symbol up.
    let sym = unsafe {
        libc::dlsym(
            libc::RTLD_DEFAULT,
            c"objspace_lookup_allocation_info".as_ptr(),
        )
    };
    if sym.is_null() {
        return None;
    }
    // SAFETY: the symbol is objspace.so's `struct allocation_info *(VALUE)` function.
    Some(unsafe { std::mem::transmute::<*mut c_void, LookupAllocation>(sym) })
}

/// A C string's bytes, or None for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives the returned slice's use.
unsafe fn c_bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: per the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// A String VALUE's bytes, or None when it is not a String (nil: anonymous).
///
/// # Safety
/// GVL held; `s` a VALUE.
unsafe fn str_bytes<'a>(s: VALUE) -> Option<&'a [u8]> {
    // SAFETY: RB_TYPE reads the header of a heap object; `s` is then a live String.
    unsafe {
        (s != 0 && !rb_sys::SPECIAL_CONST_P(s) && rb_sys::RB_TYPE(s) == T::RUBY_T_STRING)
            .then(|| super::str_bytes(s))
    }
}

/// The GC flags of `obj` as (name, value) pairs in Ruby's order (at most MAX_FLAGS), and how
/// many there are. Up to 3.4 every flag written is true; 4.0 has values (`age`, `object_id`).
///
/// # Safety
/// GVL held (or in the forked child, alone); `obj` is a live heap object.
unsafe fn gc_flags<'a>(obj: VALUE, out: &mut [(u64, FlagValue<'a>); MAX_FLAGS]) -> usize {
    #[cfg(not(ruby_gte_4_0))]
    {
        let mut ids: [ID; MAX_FLAGS] = [0; MAX_FLAGS];
        // SAFETY: fills at most MAX_FLAGS IDs of the flags set on obj (caller's contract).
        let n = unsafe { raw::rb_obj_gc_flags(obj, ids.as_mut_ptr(), ids.len()) }.min(ids.len());
        for (slot, id) in out.iter_mut().zip(ids.iter().take(n)) {
            *slot = (*id, FlagValue::True);
        }
        n
    }
    #[cfg(ruby_gte_4_0)]
    {
        // SAFETY: the entries are a static array ended by a zero name (gc/default/default.c).
        let entries = unsafe { raw::rb_gc_object_metadata(obj) };
        let mut n = 0;
        while n < out.len() && !entries.is_null() {
            // SAFETY: n never passes the terminating entry.
            let e = unsafe { &*entries.add(n) };
            if e.name == 0 {
                break;
            }
            let Some(slot) = out.get_mut(n) else {
                break;
            };
            // SAFETY: the value is what the VM gave for this flag (a special constant).
            *slot = (e.name, unsafe { flag_value(e.value) });
            n += 1;
        }
        n
    }
}

/// A GC flag's value as the dump writes it (dump_append_special_const).
///
/// # Safety
/// GVL held.
#[cfg(ruby_gte_4_0)]
unsafe fn flag_value<'a>(v: VALUE) -> FlagValue<'a> {
    // SAFETY: only special constants are decoded; a Symbol's name is the VM's.
    unsafe {
        if v == super::TRUE {
            FlagValue::True
        } else if v == super::FALSE {
            FlagValue::False
        } else if v == super::NIL {
            FlagValue::Nil
        } else if rb_sys::FIXNUM_P(v) {
            FlagValue::Int((v as i64) >> 1)
        } else if rb_sys::FLONUM_P(v) {
            FlagValue::Float(rb_sys::rb_float_value(v))
        } else if rb_sys::RB_SYMBOL_P(v) {
            str_bytes(rb_sys::rb_sym2str(v)).map_or(FlagValue::Other, FlagValue::Symbol)
        } else {
            FlagValue::Other
        }
    }
}

/// RSHAPE(id): the shape of a 4.0 shape_id.
///
/// # Safety
/// GVL held; `id` is a shape id the VM handed out.
#[cfg(ruby_gte_4_0)]
unsafe fn rshape<'a>(id: u32) -> Option<&'a raw::Shape> {
    use rbscope_heap::walk::vm::SHAPE_ID_OFFSET_MASK;
    // SAFETY: rb_shape_tree is initialised at boot; the offset of a handed-out id is inside
    // its shape list.
    unsafe {
        let list = (*std::ptr::addr_of!(raw::rb_shape_tree)).shape_list;
        (!list.is_null()).then(|| &*list.add((id & SHAPE_ID_OFFSET_MASK) as usize))
    }
}

// Every method: see `Vm`'s contract (GVL held or alone in the forked child, GC off, `v` a live
// object of the kind named). Each SAFETY comment says what else the read relies on.
impl Vm for RubyHeap {
    const RELEASE: Release = RELEASE;

    #[inline(always)]
    unsafe fn slot_flags(&self, slot: u64) -> u64 {
        // SAFETY: every slot of a heap page starts with its flags word (0 when free).
        unsafe { *(slot as *const VALUE) }
    }

    #[inline(always)]
    unsafe fn class_of(&self, v: u64) -> u64 {
        // SAFETY: every heap object starts with RBasic.
        unsafe { (*(v as *const rb_sys::RBasic)).klass }
    }

    #[inline(always)]
    unsafe fn internal(&self, v: u64) -> bool {
        // SAFETY: takes any live object.
        unsafe { raw::rb_objspace_internal_object_p(v) != 0 }
    }

    #[inline(always)]
    unsafe fn shape_id(&self, v: u64) -> u32 {
        let _ = v;
        #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
        {
            // SAFETY: reads the shape id of a live object.
            unsafe { raw::rb_shape_get_shape_id(v) }
        }
        #[cfg(ruby_gte_4_0)]
        {
            // SAFETY: reads the shape id of a live object (a class's fields object is read,
            // nothing is made).
            unsafe { raw::rb_obj_shape_id(v) }
        }
        #[cfg(not(ruby_gte_3_2))]
        0
    }

    #[inline(always)]
    unsafe fn memsize(&self, v: u64) -> u64 {
        // SAFETY: takes any live object.
        unsafe { raw::rb_obj_memsize_of(v) as u64 }
    }

    #[inline(always)]
    unsafe fn references(&self, v: u64, refs: &mut Refs) {
        // SAFETY: `v` is live; the callback only pushes into `refs`, alive for the call.
        unsafe {
            raw::rb_objspace_reachable_objects_from(
                v,
                collect_ref,
                refs as *mut Refs as *mut c_void,
            )
        }
    }

    #[inline(always)]
    unsafe fn gc_flags<'a>(&self, v: u64, out: &mut [(u64, FlagValue<'a>); MAX_FLAGS]) -> usize {
        // SAFETY: `v` is a live heap object.
        unsafe { gc_flags(v, out) }
    }

    unsafe fn flag_name(&self, id: u64) -> Option<&'static [u8]> {
        // SAFETY: the flags' IDs are static symbols, whose names live as long as the process.
        unsafe { c_bytes(rb_sys::rb_id2name(id)) }
    }

    #[inline(always)]
    unsafe fn allocation<'a>(&self, v: u64) -> Option<Allocation<'a>> {
        let lookup = self.lookup?;
        // SAFETY: objspace's lookup takes any VALUE and returns its record or NULL.
        let p = unsafe { lookup(v) };
        if p.is_null() {
            return None;
        }
        // SAFETY: a live allocation_info record of objspace's table (GC is off: objspace
        // frees records only when their object is freed).
        let info = unsafe { &*p };
        // `mid` is the method's Symbol (or nil).
        // SAFETY: a Symbol's name is a String the VM keeps (its fstring).
        let method = unsafe {
            rb_sys::RB_SYMBOL_P(info.mid)
                .then(|| str_bytes(rb_sys::rb_sym2str(info.mid)))
                .flatten()
        };
        Some(Allocation {
            // SAFETY: path is NULL or objspace's own NUL-terminated copy.
            file: unsafe { c_bytes(info.path) },
            // Ruby writes the line when it is not 0.
            line: (info.line != 0).then_some(info.line),
            method,
            generation: info.generation as u64,
        })
    }

    #[inline(always)]
    unsafe fn string<'a>(&self, s: u64) -> &'a [u8] {
        // SAFETY: `s` is a live String; GC is off, so its buffer stays.
        unsafe { super::str_bytes(s) }
    }

    #[inline(always)]
    unsafe fn string_capacity(&self, s: u64) -> u64 {
        // SAFETY: `s` is a live String.
        unsafe { raw::rb_str_capacity(s) as u64 }
    }

    #[inline(always)]
    unsafe fn encoding(&self, s: u64) -> usize {
        // SAFETY: `s` is a live String; rb_enc_get reads its encoding index.
        unsafe { rb_sys::rb_enc_get(s) as usize }
    }

    unsafe fn encoding_name(&self, enc: usize) -> Option<&'static str> {
        let enc = enc as *const rb_sys::rb_encoding;
        // SAFETY: one of the VM's encodings, which live as long as the process, as their
        // names (static C strings of the encoding table).
        unsafe { c_bytes::<'static>((*enc).name as *const c_char) }
            .and_then(|n| std::str::from_utf8(n).ok())
    }

    #[inline(always)]
    unsafe fn ascii_compatible(&self, enc: usize) -> bool {
        let _ = enc;
        #[cfg(ruby_gte_3_2)]
        {
            let enc = enc as *mut rb_sys::rb_encoding;
            // SAFETY: one of the VM's encodings (see `encoding_name`).
            unsafe { (*enc).min_enc_len == 1 && raw::rb_enc_dummy_p(enc) == 0 }
        }
        #[cfg(not(ruby_gte_3_2))]
        false
    }

    #[inline(always)]
    unsafe fn coderange_scan(&self, s: u64) -> u64 {
        // SAFETY: `s` is a live String; the coderange is computed and cached in its header
        // when unknown (what 3.1's dump does).
        unsafe { rb_sys::rb_enc_str_coderange(s) as u64 }
    }

    #[inline(always)]
    unsafe fn symbol_string(&self, sym: u64) -> Option<u64> {
        // SAFETY: `sym` is a live Symbol; its name is a String the VM keeps.
        unsafe {
            let s = rb_sys::rb_sym2str(sym);
            str_bytes(s).map(|_| s)
        }
    }

    #[inline(always)]
    unsafe fn array_len(&self, v: u64) -> u64 {
        // SAFETY: `v` is a live Array.
        unsafe { rb_sys::RARRAY_LEN(v).max(0) as u64 }
    }

    #[inline(always)]
    unsafe fn hash_size(&self, v: u64) -> u64 {
        // SAFETY: `v` is a live Hash.
        unsafe { rb_sys::rb_hash_size_num(v) as u64 }
    }

    #[inline(always)]
    unsafe fn hash_ifnone(&self, v: u64) -> u64 {
        // SAFETY: `v` is a live Hash: RHash's ifnone, at this release's offset.
        unsafe { *((v as usize + RHASH_IFNONE_OFFSET) as *const VALUE) }
    }

    /// On 3.1 the instance variable table's capacity (ROBJECT_NUMIV: 3 when embedded in the
    /// slot, else `as.heap.numiv`, the first field after RBasic); from 3.2 on (shapes)
    /// ROBJECT_IV_COUNT / ROBJECT_FIELDS_COUNT: the entries of the ivar table of a too-complex
    /// object, else the shape's next field index (4.0 counts the object_id field too).
    unsafe fn object_ivars(&self, v: u64, flags: u64) -> (u64, bool) {
        let after_basic = v as usize + std::mem::size_of::<rb_sys::RBasic>();
        #[cfg(not(ruby_gte_3_2))]
        {
            if flags & rbscope_heap::walk::vm::fl_user(1) != 0 {
                (3, false)
            } else {
                // SAFETY: a non-embedded RObject keeps `uint32_t numiv` right after RBasic.
                (unsafe { *(after_basic as *const u32) } as u64, false)
            }
        }
        #[cfg(ruby_gte_3_2)]
        {
            let _ = flags;
            // The ivar table of a too-complex object is `as.heap.ivptr` (`as.heap.fields` in
            // 4.0), right after RBasic.
            let table = || -> u64 {
                // SAFETY: `v` is a too-complex T_OBJECT, whose first field after RBasic is its
                // st_table.
                unsafe {
                    let tbl = *(after_basic as *const *const c_void);
                    if tbl.is_null() {
                        0
                    } else {
                        raw::rb_st_table_size(tbl) as u64
                    }
                }
            };
            #[cfg(not(ruby_gte_4_0))]
            // SAFETY: `v` is a live T_OBJECT; the shape is the VM's.
            unsafe {
                if raw::rb_shape_obj_too_complex(v) {
                    (table(), true)
                } else {
                    let shape = raw::rb_shape_get_shape_by_id(raw::rb_shape_get_shape_id(v));
                    if shape.is_null() {
                        (raw::rb_ivar_count(v) as u64, false)
                    } else {
                        ((*shape).next_iv_index as u64, false)
                    }
                }
            }
            #[cfg(ruby_gte_4_0)]
            // SAFETY: `v` is a live T_OBJECT; RSHAPE(id) is in the VM's shape list.
            unsafe {
                let id = raw::rb_obj_shape_id(v);
                if id & rbscope_heap::walk::vm::SHAPE_ID_FL_TOO_COMPLEX != 0 {
                    (table(), true)
                } else {
                    match rshape(id) {
                        Some(shape) => (shape.next_field_index as u64, false),
                        None => (raw::rb_ivar_count(v) as u64, false),
                    }
                }
            }
        }
    }

    unsafe fn variation_count(&self, v: u64) -> u64 {
        let _ = v;
        #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
        {
            let ext = (v as usize + RCLASS_SIZE) as *const ClassExtHead;
            // SAFETY: a class's slot holds rb_classext_t right after struct RClass
            // (RCLASS_EXT).
            unsafe { (*ext).variation_count as u64 }
        }
        #[cfg(ruby_gte_4_0)]
        {
            // SAFETY: `v` is a live class.
            unsafe { raw::rb_class_variation_count(v) as u64 }
        }
        #[cfg(not(ruby_gte_3_2))]
        0
    }

    #[inline(always)]
    unsafe fn superclass(&self, v: u64) -> u64 {
        // SAFETY: `v` is a live class, module or iclass.
        unsafe { raw::rb_class_get_superclass(v) }
    }

    unsafe fn module_name<'a>(&self, v: u64) -> Option<&'a [u8]> {
        // SAFETY: `v` is a live class or module; its name is a String the VM keeps.
        unsafe { str_bytes(rb_sys::rb_mod_name(v)) }
    }

    unsafe fn real_class_name<'a>(&self, v: u64) -> Option<&'a [u8]> {
        // SAFETY: `v` is a live class; rb_class_real skips singletons and iclasses.
        unsafe { str_bytes(rb_sys::rb_mod_name(rb_sys::rb_class_real(v))) }
    }

    unsafe fn singleton(&self, v: u64) -> bool {
        let _ = v;
        #[cfg(ruby_gte_4_0)]
        {
            // SAFETY: `v` is a live class or module.
            unsafe { raw::rb_class_singleton_p(v) != 0 }
        }
        #[cfg(not(ruby_gte_4_0))]
        false
    }

    unsafe fn data_type_name<'a>(&self, v: u64) -> Option<&'a [u8]> {
        // SAFETY: `v` is a live T_DATA; the name is its type's static C string (or NULL).
        unsafe { c_bytes(raw::rb_objspace_data_type_name(v)) }
    }

    unsafe fn float_value(&self, v: u64) -> f64 {
        // SAFETY: `v` is a live Float.
        unsafe { rb_sys::rb_float_value(v) }
    }

    unsafe fn file_fd(&self, v: u64) -> Option<i64> {
        // SAFETY: `v` is a live File; its rb_io, when set, keeps `fd` after `self` and
        // `stdio_file` in every release.
        unsafe {
            let fptr = (*(v as *const rb_sys::RFile)).fptr;
            #[allow(deprecated)]
            let fd = fptr.as_ref().map(|io| io.fd as i64);
            fd
        }
    }

    unsafe fn callinfo_mid(&self, v: u64) -> u64 {
        let _ = v;
        #[cfg(ruby_gte_3_3)]
        {
            // SAFETY: `v` is a live callinfo of this release's layout.
            unsafe { (*(v as *const CallInfo)).mid }
        }
        #[cfg(not(ruby_gte_3_3))]
        0
    }

    unsafe fn callcache_class(&self, v: u64) -> u64 {
        let _ = v;
        #[cfg(ruby_gte_3_3)]
        {
            // SAFETY: `v` is a live callcache of this release's layout.
            unsafe { (*(v as *const CallCache)).klass }
        }
        #[cfg(not(ruby_gte_3_3))]
        0
    }

    unsafe fn callcache_called_id(&self, v: u64) -> u64 {
        let _ = v;
        #[cfg(ruby_gte_3_3)]
        {
            // SAFETY: `v` is a live callcache whose class says its method entry, when set, is
            // a live imemo_ment.
            unsafe { (*(v as *const CallCache)).cme.as_ref() }.map_or(0, |m| m.called_id)
        }
        #[cfg(not(ruby_gte_3_3))]
        0
    }

    unsafe fn id_name<'a>(&self, id: u64) -> Option<&'a [u8]> {
        // SAFETY: looking a static or dynamic ID's symbol and name up creates nothing.
        unsafe {
            let sym = rb_sys::rb_id2sym(id);
            let name = if sym != 0 { rb_sys::rb_sym2str(sym) } else { 0 };
            str_bytes(name)
        }
    }
}

unsafe extern "C" fn collect_ref(obj: VALUE, data: *mut c_void) {
    guard::run(Feature::Heap, "reading an object's references", (), || {
        // SAFETY: `data` is the Refs of `RubyHeap::references`, used only during this call.
        unsafe { &mut *(data as *mut Refs) }.push(obj)
    })
}

/// Makes the VM create, now, the few things the walk would otherwise create on first use:
/// the IDs of the GC flag names (`rb_obj_gc_flags` interns them lazily). Called before the
/// fork, so that the child allocates nothing on the Ruby heap while it walks it.
pub(crate) fn prepare(_gvl: Gvl) {
    let mut flags = [(0, FlagValue::True); MAX_FLAGS];
    // SAFETY: GVL held (token); the current thread's object is a live heap object.
    unsafe { gc_flags(rb_sys::rb_thread_current(), &mut flags) };
}

/// Calls `f(category, object)` for every root of the heap, in the VM's order, each call
/// guarded ("writing the heap's roots"). GC must be off (`gc_off`).
pub(crate) fn each_root(_gc_off: &GcOff, f: &mut dyn FnMut(&'static CStr, u64)) {
    unsafe extern "C" fn each(category: *const c_char, obj: VALUE, data: *mut c_void) {
        guard::run(Feature::Heap, "writing the heap's roots", (), || {
            // SAFETY: `data` is the closure of `each_root`, alive for the walk; the category is
            // a static C string of gc.c.
            unsafe {
                (*(data as *mut &mut dyn FnMut(&'static CStr, u64)))(CStr::from_ptr(category), obj)
            }
        })
    }
    let mut f = f;
    // SAFETY: GVL held and GC off (a GcOff exists only on a GVL thread); `data` is `f`,
    // alive for the call.
    unsafe { raw::rb_objspace_reachable_objects_from_root(each, &mut f as *mut _ as *mut c_void) };
}

/// Calls `f` with the facts of every shape (3.2+; nothing on 3.1), each call guarded
/// ("writing the heap's shapes"). GC must be off (`gc_off`).
pub(crate) fn each_shape(_gc_off: &GcOff, f: &mut dyn FnMut(&ShapeFacts)) {
    let mut f = f;
    let data = &mut f as *mut &mut dyn FnMut(&ShapeFacts) as *mut c_void;
    /// One shape's facts (None: skip it) for the closure at `data`, guarded.
    #[cfg(ruby_gte_3_2)]
    fn give(data: *mut c_void, facts: impl FnOnce() -> Option<ShapeFacts>) {
        guard::run(Feature::Heap, "writing the heap's shapes", (), || {
            if let Some(facts) = facts() {
                // SAFETY: `data` is the closure of `each_shape`, alive for the whole walk.
                unsafe { (*(data as *mut &mut dyn FnMut(&ShapeFacts)))(&facts) }
            }
        })
    }
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    {
        unsafe extern "C" fn each(shape: *const raw::Shape, data: *mut c_void) {
            give(data, || {
                // SAFETY: `shape` is one of the VM's shapes, read with the VM's functions.
                unsafe {
                    let sh = &*shape;
                    Some(ShapeFacts {
                        address: shape as u64,
                        id: raw::rb_shape_id(shape) as u64,
                        parent_id: sh.parent_id as u64,
                        depth: raw::rb_shape_depth(shape) as u64,
                        shape_type: sh.shape_type,
                        edge_name: sh.edge_name,
                        capacity: sh.capacity as u64,
                        edges: raw::rb_shape_edges_count(shape) as u64,
                        memsize: raw::rb_shape_memsize(shape) as u64,
                    })
                }
            })
        }
        // SAFETY: GVL held and GC off; `data` is `f`, alive for the call.
        unsafe { raw::rb_shape_each_shape(each, data) };
    }
    #[cfg(ruby_gte_4_0)]
    {
        unsafe extern "C" fn each(id: u32, data: *mut c_void) {
            give(data, || {
                // SAFETY: `id` is a shape id the VM hands out, read with the VM's functions.
                unsafe {
                    let sh = rshape(id)?;
                    Some(ShapeFacts {
                        address: sh as *const raw::Shape as u64,
                        id: id as u64,
                        parent_id: sh.parent_id as u64,
                        depth: raw::rb_shape_depth(id) as u64,
                        shape_type: sh.shape_type,
                        edge_name: sh.edge_name,
                        capacity: sh.capacity as u64,
                        edges: raw::rb_shape_edges_count(id) as u64,
                        memsize: raw::rb_shape_memsize(id) as u64,
                    })
                }
            })
        }
        // SAFETY: GVL held and GC off; `data` is `f`, alive for the call.
        unsafe { raw::rb_shape_each_shape_id(each, data) };
    }
    let _ = data;
}

/// What a page callback is given: the closure, and what the guard calls it.
struct PageCall<'a> {
    what: &'static str,
    f: &'a mut dyn FnMut(u64, u64, u64) -> bool,
}

/// Calls `f(start, end, stride)` for every page of the heap, each call guarded (as `what`);
/// `f` returns true to stop the walk. GC must be off (`gc_off`).
pub(crate) fn each_page(
    _gc_off: &GcOff,
    what: &'static str,
    f: &mut dyn FnMut(u64, u64, u64) -> bool,
) {
    unsafe extern "C" fn each(
        start: *mut c_void,
        end: *mut c_void,
        stride: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the PageCall of `each_page`, alive for the walk.
        let call = unsafe { &mut *(data as *mut PageCall) };
        guard::run(Feature::Heap, call.what, 1, || {
            c_int::from((call.f)(start as u64, end as u64, stride as u64))
        })
    }
    let mut call = PageCall { what, f };
    // SAFETY: GVL held and GC off (a GcOff exists only on a GVL thread); `data` is `call`,
    // alive for the call.
    unsafe { raw::rb_objspace_each_objects(each, &mut call as *mut PageCall as *mut c_void) };
}

/// `rb_class_real`: the class of `klass` that is not a singleton or include class (0: none).
pub(crate) fn class_real(_gvl: Gvl, klass: VALUE) -> VALUE {
    // SAFETY: GVL held (token); callers pass class VALUEs the VM gave, alive while GC is off.
    unsafe { rb_sys::rb_class_real(klass) }
}

/// A full GC, as GC.start does (protected).
pub(crate) fn gc_start(gvl: Gvl) {
    // SAFETY: GVL held (token).
    let _ = super::protect(gvl, || unsafe { rb_sys::rb_gc_start() });
}

/// `require "objspace"`; false when it could not be loaded.
pub(crate) fn require_objspace(gvl: Gvl) -> bool {
    // SAFETY: GVL held (token); rb_require raises on failure, which protect catches.
    super::protect(gvl, || unsafe { rb_sys::rb_require(c"objspace".as_ptr()) }).is_ok()
}

/// Runs `f` with the GVL released, so the app's other threads run meanwhile (guarded as
/// `what`); None if it panicked. `f` must not touch Ruby. No unblocking function: the wait
/// ends when `f` does.
pub(crate) fn without_gvl<R, F: FnOnce() -> R>(_gvl: Gvl, what: &'static str, f: F) -> Option<R> {
    struct Slot<F, R> {
        what: &'static str,
        f: Option<F>,
        out: Option<R>,
    }
    unsafe extern "C" fn call<F: FnOnce() -> R, R>(data: *mut c_void) -> *mut c_void {
        // SAFETY: `data` is the Slot of `without_gvl`, alive for the whole call and used only
        // here.
        let slot = unsafe { &mut *(data as *mut Slot<F, R>) };
        guard::run(Feature::Heap, slot.what, (), || {
            if let Some(f) = slot.f.take() {
                slot.out = Some(f());
            }
        });
        std::ptr::null_mut()
    }
    let mut slot = Slot {
        what,
        f: Some(f),
        out: None,
    };
    // SAFETY: GVL held (token); `call` touches no Ruby object and `slot` outlives the call.
    unsafe {
        rb_sys::rb_thread_call_without_gvl(
            Some(call::<F, R>),
            &mut slot as *mut Slot<F, R> as *mut c_void,
            None,
            std::ptr::null_mut(),
        );
    }
    slot.out
}
