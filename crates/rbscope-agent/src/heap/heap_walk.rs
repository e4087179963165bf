//! Walking the VM's heap and writing it in `ObjectSpace.dump_all`'s format.
//!
//! Used in two places: the child forked for `rbscope heap dump` (the normal case: the app is
//! paused only for the fork) and, when asked, the process itself. The walk is the VM's own
//! (`rb_objspace_each_objects`, `rb_objspace_reachable_objects_from(_root)`, the functions
//! ext/objspace uses); the facts of each object are read with the VM's exported functions and
//! formatted by `rbscope_heap::write`. Nothing here allocates Ruby objects while the walk runs
//! (GC is disabled around it anyway), and the output is plain bytes written to a file
//! descriptor, so neither the app's IO buffers nor its Ruby code are involved.
//!
//! The census (`rbscope heap count`) walks the same way but only counts.

use crate::ffi::guard::{self, Feature};
use crate::ffi::Gvl;
use rb_sys::{ruby_value_type as T, ID, VALUE};
use rbscope_heap::parse::ObjType;
use rbscope_heap::write::{self, Allocation, FlagValue, Kind, ObjectLine};
#[cfg(ruby_gte_3_2)]
use rbscope_heap::write::{IdName, ShapeLine};
use rustc_hash::FxHashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write;

type EachPage = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, *mut c_void) -> c_int;
type EachRef = unsafe extern "C" fn(VALUE, *mut c_void);
type EachRoot = unsafe extern "C" fn(*const c_char, VALUE, *mut c_void);

extern "C" {
    // Exported by libruby for ext/objspace; no public header declares them.
    fn rb_objspace_each_objects(cb: EachPage, data: *mut c_void);
    fn rb_objspace_reachable_objects_from(obj: VALUE, cb: EachRef, data: *mut c_void);
    fn rb_objspace_reachable_objects_from_root(cb: EachRoot, data: *mut c_void);
    fn rb_objspace_internal_object_p(obj: VALUE) -> c_int;
    fn rb_objspace_data_type_name(obj: VALUE) -> *const c_char;
    fn rb_obj_memsize_of(obj: VALUE) -> usize;
    #[cfg(not(ruby_gte_4_0))]
    fn rb_obj_gc_flags(obj: VALUE, flags: *mut ID, max: usize) -> usize;
    /// 4.0 replaced rb_obj_gc_flags: entries of (name, value), ended by a zero name, in a
    /// static buffer the next call overwrites.
    #[cfg(ruby_gte_4_0)]
    fn rb_gc_object_metadata(obj: VALUE) -> *const MetadataEntry;
    #[cfg(ruby_gte_3_2)]
    fn rb_ivar_count(obj: VALUE) -> usize;
    fn rb_class_get_superclass(klass: VALUE) -> VALUE;
    fn rb_str_capacity(str: VALUE) -> usize;
    #[cfg(ruby_gte_3_2)]
    fn rb_enc_dummy_p(enc: *mut rb_sys::rb_encoding) -> c_int;
    #[cfg(ruby_gte_3_2)]
    fn rb_st_table_size(tbl: *const c_void) -> usize;
    // Shapes, 3.2 to 3.4 (shape.h): by `rb_shape_t *`.
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    fn rb_shape_get_shape_id(obj: VALUE) -> u32;
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    fn rb_shape_get_shape_by_id(id: u32) -> *const Shape;
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    fn rb_shape_obj_too_complex(obj: VALUE) -> bool;
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    fn rb_shape_each_shape(cb: unsafe extern "C" fn(*const Shape, *mut c_void), data: *mut c_void);
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    fn rb_shape_id(shape: *const Shape) -> u32;
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    fn rb_shape_depth(shape: *const Shape) -> usize;
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    fn rb_shape_edges_count(shape: *const Shape) -> usize;
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    fn rb_shape_memsize(shape: *const Shape) -> usize;
    // Shapes, 4.0: by shape_id_t; the shapes themselves are in `rb_shape_tree.shape_list`.
    #[cfg(ruby_gte_4_0)]
    fn rb_obj_shape_id(obj: VALUE) -> u32;
    #[cfg(ruby_gte_4_0)]
    fn rb_shape_each_shape_id(cb: unsafe extern "C" fn(u32, *mut c_void), data: *mut c_void);
    #[cfg(ruby_gte_4_0)]
    fn rb_shape_depth(id: u32) -> usize;
    #[cfg(ruby_gte_4_0)]
    fn rb_shape_edges_count(id: u32) -> usize;
    #[cfg(ruby_gte_4_0)]
    fn rb_shape_memsize(id: u32) -> usize;
    #[cfg(ruby_gte_4_0)]
    static rb_shape_tree: ShapeTree;
    #[cfg(ruby_gte_4_0)]
    fn rb_class_variation_count(klass: VALUE) -> u8;
    #[cfg(ruby_gte_4_0)]
    fn rb_class_singleton_p(klass: VALUE) -> VALUE;
}

/// The head of `struct rb_shape` (shape.h), the same in 3.2, 3.3 and 3.4 up to `parent_id`
/// (3.3 added `ancestor_index` after it; only pointers the VM hands out are read).
#[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
#[repr(C)]
struct Shape {
    edges: *mut c_void,
    edge_name: ID,
    next_iv_index: u32,
    capacity: u32,
    shape_type: u8,
    heap_index: u8,
    parent_id: u32,
}

/// `struct rb_shape` of Ruby 4.0's shape.h.
#[cfg(ruby_gte_4_0)]
#[repr(C)]
struct Shape {
    edges: VALUE,
    edge_name: ID,
    ancestor_index: *mut c_void,
    parent_id: u32,
    next_field_index: u16,
    capacity: u16,
    shape_type: u8,
}

/// The head of Ruby 4.0's `rb_shape_tree_t` (shape.h).
#[cfg(ruby_gte_4_0)]
#[repr(C)]
struct ShapeTree {
    shape_list: *const Shape,
}

/// 4.0's shape_id_t: the low 19 bits index `rb_shape_tree.shape_list`
/// (SHAPE_ID_OFFSET_MASK); bit 24 is SHAPE_ID_FL_TOO_COMPLEX.
#[cfg(ruby_gte_4_0)]
const SHAPE_ID_OFFSET_MASK: u32 = (1 << 19) - 1;
#[cfg(ruby_gte_4_0)]
const SHAPE_ID_FL_TOO_COMPLEX: u32 = 1 << (19 + 3 + 5);

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

/// `struct rb_gc_object_metadata_entry` of Ruby 4.0's internal/gc.h.
#[cfg(ruby_gte_4_0)]
#[repr(C)]
struct MetadataEntry {
    name: ID,
    value: VALUE,
}

/// How many GC flags an object can have (RB_OBJ_GC_FLAGS_MAX is 6 up to 3.4; 4.0's metadata
/// has 10 names).
const MAX_FLAGS: usize = 12;

/// The GC flags of `obj` as (name, value) pairs in Ruby's order (at most MAX_FLAGS), and how
/// many there are. Up to 3.4 every flag written is true; 4.0 has values (`age`, `object_id`).
///
/// # Safety
/// GVL held (or in the forked child, alone); `obj` is a live heap object.
unsafe fn gc_flags(obj: VALUE, out: &mut [(ID, VALUE); MAX_FLAGS]) -> usize {
    #[cfg(not(ruby_gte_4_0))]
    {
        let mut ids: [ID; MAX_FLAGS] = [0; MAX_FLAGS];
        // SAFETY: fills at most MAX_FLAGS IDs of the flags set on obj (caller's contract).
        let n = unsafe { rb_obj_gc_flags(obj, ids.as_mut_ptr(), ids.len()) }.min(ids.len());
        for (slot, id) in out.iter_mut().zip(ids.iter().take(n)) {
            *slot = (*id, crate::ffi::TRUE);
        }
        n
    }
    #[cfg(ruby_gte_4_0)]
    {
        // SAFETY: the entries are a static array ended by a zero name (gc/default/default.c).
        let entries = unsafe { rb_gc_object_metadata(obj) };
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
            *slot = (e.name, e.value);
            n += 1;
        }
        n
    }
}

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

/// Makes the VM create, now, the few things the walk would otherwise create on first use:
/// the IDs of the GC flag names (`rb_obj_gc_flags` interns them lazily). Called before the
/// fork, so that the child allocates nothing on the Ruby heap while it walks it. GVL held.
pub fn prepare() {
    let mut flags = [(0, 0); MAX_FLAGS];
    // SAFETY: GVL held (caller); the current thread's object is a live heap object.
    unsafe { gc_flags(rb_sys::rb_thread_current(), &mut flags) };
}

/// Counts of a finished walk.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub objects: u64,
    pub roots: u64,
    pub allocation_info: bool,
}

/// The output: bytes are gathered into a buffer and written out in large pieces, here or by
/// the forked child's writer thread (`heap_writer`, which says why it is not a thread made
/// by `std::thread`). The walk itself stays on the thread that holds the GVL.
struct Out<'a> {
    sink: Sink<'a>,
    buf: Vec<u8>,
    error: Option<std::io::Error>,
}

/// Where full buffers go: written here, or handed to the forked child's writer thread.
pub enum Sink<'a> {
    Direct(&'a mut dyn Write),
    Background(crate::heap::heap_writer::Background),
}

impl Out<'_> {
    /// Small enough that the buffer being filled stays in the core's cache.
    const FLUSH_AT: usize = 256 << 10;
    const CAPACITY: usize = Self::FLUSH_AT + (64 << 10);

    fn maybe_flush(&mut self) {
        if self.buf.len() >= Self::FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.error.is_some() {
            self.buf.clear();
            return;
        }
        match &mut self.sink {
            Sink::Direct(w) => {
                if let Err(e) = w.write_all(&self.buf) {
                    self.error = Some(e);
                }
                self.buf.clear();
            }
            Sink::Background(bg) => match bg.swap(std::mem::take(&mut self.buf)) {
                Ok(empty) => self.buf = empty,
                Err(e) => self.error = Some(e),
            },
        }
    }

    /// Writes what is left and waits for the writer thread, if any.
    fn finish(mut self) -> std::io::Result<()> {
        self.flush();
        let waited = match self.sink {
            Sink::Background(bg) => bg.finish(),
            Sink::Direct(_) => Ok(()),
        };
        match self.error.take() {
            Some(e) => Err(e),
            None => waited,
        }
    }

    fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// Names looked up for every object, of which a heap has a handful (its GC flags, its
/// strings' encodings): a scan of a short list, which costs less than hashing each time.
struct Recent<K, V> {
    items: Vec<(K, V)>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent { items: Vec::new() }
    }
}

impl<K: PartialEq + Copy, V: Copy> Recent<K, V> {
    fn get_or(&mut self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some((_, v)) = self.items.iter().find(|(k, _)| *k == key) {
            return *v;
        }
        let v = make();
        self.items.push((key, v));
        v
    }
}

struct Walk<'a> {
    out: Out<'a>,
    refs: Vec<u64>,
    lookup: Option<LookupAllocation>,
    flag_names: Recent<ID, &'static str>,
    encodings: Recent<usize, Option<&'static str>>,
    written: Written,
    /// 3.2+: the slot size is the page's stride.
    write_slot_size: bool,
    /// The class of the object being written.
    klass: u64,
}

/// Writes the whole heap, roots first, to `sink`. Must run with the GVL held (in the forked
/// child it is held by the only thread left).
pub fn dump(gvl: Gvl, sink: &mut dyn Write) -> std::io::Result<Written> {
    dump_to(gvl, Sink::Direct(sink))
}

/// [`dump`] with the writes on a thread of their own (see `heap_writer`), into `file`.
pub fn dump_overlapped(gvl: Gvl, file: std::fs::File) -> std::io::Result<Written> {
    let bg = crate::heap::heap_writer::Background::start(file, Vec::with_capacity(Out::CAPACITY))?;
    dump_to(gvl, Sink::Background(bg))
}

fn dump_to(gvl: Gvl, sink: Sink<'_>) -> std::io::Result<Written> {
    let mut walk = Walk {
        out: Out {
            sink,
            buf: Vec::with_capacity(Out::CAPACITY),
            error: None,
        },
        refs: Vec::with_capacity(1024),
        lookup: allocation_lookup(),
        flag_names: Recent::default(),
        encodings: Recent::default(),
        written: Written::default(),
        write_slot_size: cfg!(ruby_gte_3_2),
        klass: 0,
    };
    walk.written.allocation_info = walk.lookup.is_some();
    let gc_off = crate::ffi::GcOff::new(gvl);
    // SAFETY: GVL held (token); the walk allocates no Ruby objects, and GC stays off (gc_off)
    // so the heap does not change under it. The data pointer is `walk`, alive for both calls.
    unsafe {
        let data = &mut walk as *mut Walk as *mut c_void;
        let mut roots = Roots {
            current: None,
            refs: Vec::new(),
            walk: data as *mut Walk,
        };
        rb_objspace_reachable_objects_from_root(each_root, &mut roots as *mut Roots as *mut c_void);
        roots.finish();
        // 3.2+: the shape tree, between the roots and the objects, as dump_all does.
        #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
        rb_shape_each_shape(each_shape, data);
        #[cfg(ruby_gte_4_0)]
        rb_shape_each_shape_id(each_shape_id, data);
        rb_objspace_each_objects(each_page, data);
    }
    drop(gc_off);
    if crate::ffi::guard::is_off(Feature::Heap) {
        return Err(std::io::Error::other(
            "an internal error stopped the heap walk (rbscope doctor -p PID says which)",
        ));
    }
    let written = walk.written;
    walk.out.finish()?;
    Ok(written)
}

struct Roots {
    current: Option<*const c_char>,
    refs: Vec<u64>,
    walk: *mut Walk<'static>,
}

impl Roots {
    fn finish(&mut self) {
        let Some(cat) = self.current.take() else {
            return;
        };
        // SAFETY: `walk` points at the live Walk of `dump`; the category is a static C string
        // from gc.c.
        unsafe {
            let walk = &mut *self.walk;
            let name = CStr::from_ptr(cat).to_string_lossy();
            write::write_root(&mut walk.out.buf, &name, &self.refs);
            walk.written.roots += 1;
            walk.out.maybe_flush();
        }
        self.refs.clear();
    }
}

unsafe extern "C" fn each_root(category: *const c_char, obj: VALUE, data: *mut c_void) {
    guard::run(Feature::Heap, "writing the heap's roots", (), || {
        // SAFETY: what the caller of `each_root` guarantees, passed on as it came.
        unsafe { each_root_body(category, obj, data) }
    })
}

/// # Safety
/// What the caller of `each_root` guarantees.
unsafe fn each_root_body(category: *const c_char, obj: VALUE, data: *mut c_void) {
    // SAFETY: `data` is the Roots of `dump`, used only by this callback while it runs.
    let roots = unsafe { &mut *(data as *mut Roots) };
    if roots.current != Some(category) {
        roots.finish();
        roots.current = Some(category);
    }
    roots.refs.push(obj);
}

/// The name Ruby's dump gives a shape type (`enum shape_type` of shape.h).
#[cfg(ruby_gte_3_2)]
fn shape_type_name(t: u8) -> Option<&'static str> {
    #[cfg(not(ruby_gte_3_3))]
    const NAMES: &[&str] = &[
        "ROOT",
        "IVAR",
        "FROZEN",
        "CAPACITY_CHANGE",
        "INITIAL_CAPACITY",
        "T_OBJECT",
        "OBJ_TOO_COMPLEX",
    ];
    #[cfg(all(ruby_gte_3_3, not(ruby_gte_4_0)))]
    const NAMES: &[&str] = &["ROOT", "IVAR", "FROZEN", "T_OBJECT", "OBJ_TOO_COMPLEX"];
    #[cfg(ruby_gte_4_0)]
    const NAMES: &[&str] = &["ROOT", "IVAR", "OBJ_ID"];
    NAMES.get(t as usize).copied()
}

impl Walk<'_> {
    #[cfg(ruby_gte_3_2)]
    fn shape(&mut self, line: &ShapeLine<'_>) {
        write::write_shape(&mut self.out.buf, line);
        self.out.maybe_flush();
    }
}

#[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
unsafe extern "C" fn each_shape(shape: *const Shape, data: *mut c_void) {
    guard::run(Feature::Heap, "writing the heap's shapes", (), || {
        // SAFETY: what the caller of `each_shape` guarantees, passed on as it came.
        unsafe { each_shape_body(shape, data) }
    })
}

#[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
/// # Safety
/// What the caller of `each_shape` guarantees.
unsafe fn each_shape_body(shape: *const Shape, data: *mut c_void) {
    // SAFETY: `data` is the Walk of `dump`, on this thread; `shape` is one of the VM's shapes.
    let (walk, sh) = unsafe { (&mut *(data as *mut Walk), &*shape) };
    if walk.out.failed() {
        return;
    }
    let shape_type = shape_type_name(sh.shape_type);
    // SAFETY: the VM's functions on its own shape; GVL held.
    let line = unsafe {
        ShapeLine {
            address: shape as u64,
            id: rb_shape_id(shape) as u64,
            parent_id: (sh.shape_type != 0).then_some(sh.parent_id as u64),
            depth: rb_shape_depth(shape) as u64,
            shape_type,
            edge_name: (shape_type == Some("IVAR")).then(|| id_name(sh.edge_name)),
            capacity: matches!(shape_type, Some("CAPACITY_CHANGE" | "INITIAL_CAPACITY"))
                .then_some(sh.capacity as u64),
            edges: rb_shape_edges_count(shape) as u64,
            memsize: rb_shape_memsize(shape) as u64,
        }
    };
    walk.shape(&line);
}

#[cfg(ruby_gte_4_0)]
unsafe extern "C" fn each_shape_id(id: u32, data: *mut c_void) {
    guard::run(Feature::Heap, "writing the heap's shapes", (), || {
        // SAFETY: what the caller of `each_shape_id` guarantees, passed on as it came.
        unsafe { each_shape_id_body(id, data) }
    })
}

#[cfg(ruby_gte_4_0)]
/// # Safety
/// What the caller of `each_shape_id` guarantees.
unsafe fn each_shape_id_body(id: u32, data: *mut c_void) {
    // SAFETY: `data` is the Walk of `dump`, on this thread.
    let walk = unsafe { &mut *(data as *mut Walk) };
    if walk.out.failed() {
        return;
    }
    // SAFETY: the VM hands out ids of its shape list.
    let Some(sh) = (unsafe { rshape(id) }) else {
        return;
    };
    let shape_type = shape_type_name(sh.shape_type);
    // SAFETY: the VM's functions on one of its shape ids; GVL held.
    let line = unsafe {
        ShapeLine {
            address: sh as *const Shape as u64,
            id: id as u64,
            parent_id: (sh.shape_type != 0).then_some(sh.parent_id as u64),
            depth: rb_shape_depth(id) as u64,
            shape_type,
            edge_name: (shape_type == Some("IVAR")).then(|| id_name(sh.edge_name)),
            capacity: None,
            edges: rb_shape_edges_count(id) as u64,
            memsize: rb_shape_memsize(id) as u64,
        }
    };
    walk.shape(&line);
}

unsafe extern "C" fn collect_ref(obj: VALUE, data: *mut c_void) {
    guard::run(Feature::Heap, "reading an object's references", (), || {
        // SAFETY: what the caller of `collect_ref` guarantees, passed on as it came.
        unsafe { collect_ref_body(obj, data) }
    })
}

/// # Safety
/// What the caller of `collect_ref` guarantees.
unsafe fn collect_ref_body(obj: VALUE, data: *mut c_void) {
    // SAFETY: `data` is the Walk of `dump`, used only during this call.
    let walk = unsafe { &mut *(data as *mut Walk) };
    // The class is its own field, not a reference (as in Ruby's dump).
    if obj != walk.klass {
        walk.refs.push(obj);
    }
}

unsafe extern "C" fn each_page(
    start: *mut c_void,
    end: *mut c_void,
    stride: usize,
    data: *mut c_void,
) -> c_int {
    guard::run(Feature::Heap, "writing the heap's objects", 1, || {
        // SAFETY: what the caller of `each_page` guarantees, passed on as it came.
        unsafe { each_page_body(start, end, stride, data) }
    })
}

/// # Safety
/// What the caller of `each_page` guarantees.
unsafe fn each_page_body(
    start: *mut c_void,
    end: *mut c_void,
    stride: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the Walk of `dump`; the VM calls this on the same thread.
    let walk = unsafe { &mut *(data as *mut Walk) };
    let mut p = start as usize;
    while p < end as usize {
        let v = p as VALUE;
        // SAFETY: every slot of a heap page starts with its flags word; 0 means free.
        let flags = unsafe { *(p as *const VALUE) };
        if flags != 0 {
            // SAFETY: a live slot of the heap, GVL held, GC off.
            unsafe { walk.object(v, flags, stride) };
            walk.out.maybe_flush();
        }
        p += stride;
    }
    // Stop the walk once writing failed (disk full): nothing more can be kept.
    c_int::from(walk.out.failed())
}

/// The dump's name for a VM type.
fn obj_type(t: u32) -> ObjType {
    match t {
        x if x == T::RUBY_T_NONE as u32 => ObjType::None,
        x if x == T::RUBY_T_OBJECT as u32 => ObjType::Object,
        x if x == T::RUBY_T_CLASS as u32 => ObjType::Class,
        x if x == T::RUBY_T_MODULE as u32 => ObjType::Module,
        x if x == T::RUBY_T_FLOAT as u32 => ObjType::Float,
        x if x == T::RUBY_T_STRING as u32 => ObjType::String,
        x if x == T::RUBY_T_REGEXP as u32 => ObjType::Regexp,
        x if x == T::RUBY_T_ARRAY as u32 => ObjType::Array,
        x if x == T::RUBY_T_HASH as u32 => ObjType::Hash,
        x if x == T::RUBY_T_STRUCT as u32 => ObjType::Struct,
        x if x == T::RUBY_T_BIGNUM as u32 => ObjType::Bignum,
        x if x == T::RUBY_T_FILE as u32 => ObjType::File,
        x if x == T::RUBY_T_DATA as u32 => ObjType::Data,
        x if x == T::RUBY_T_MATCH as u32 => ObjType::Match,
        x if x == T::RUBY_T_COMPLEX as u32 => ObjType::Complex,
        x if x == T::RUBY_T_RATIONAL as u32 => ObjType::Rational,
        x if x == T::RUBY_T_SYMBOL as u32 => ObjType::Symbol,
        x if x == T::RUBY_T_IMEMO as u32 => ObjType::Imemo,
        x if x == T::RUBY_T_ICLASS as u32 => ObjType::IClass,
        x if x == T::RUBY_T_ZOMBIE as u32 => ObjType::Zombie,
        x if x == T::RUBY_T_MOVED as u32 => ObjType::Moved,
        _ => ObjType::Unknown,
    }
}

/// `imemo_type` names in the order of `enum imemo_type` (internal/imemo.h): the same from
/// 3.1 to 3.4.
#[cfg(not(ruby_gte_4_0))]
const IMEMO_TYPES: &[&str] = &[
    "env",
    "cref",
    "svar",
    "throw_data",
    "ifunc",
    "memo",
    "ment",
    "iseq",
    "tmpbuf",
    "ast",
    "parser_strterm",
    "callinfo",
    "callcache",
    "constcache",
];

/// 4.0 dropped `ast` (9 is unused) and `parser_strterm`, and added `fields` (class and generic
/// instance variables).
#[cfg(ruby_gte_4_0)]
const IMEMO_TYPES: &[&str] = &[
    "env",
    "cref",
    "svar",
    "throw_data",
    "ifunc",
    "memo",
    "ment",
    "iseq",
    "tmpbuf",
    "",
    "callinfo",
    "callcache",
    "constcache",
    "fields",
];
#[cfg(ruby_gte_4_0)]
const IMEMO_FIELDS: usize = 13;

/// The names written for imemo types this build does not know by name.
const IMEMO_NUMBERED: [&str; 16] = [
    "imemo_0", "imemo_1", "imemo_2", "imemo_3", "imemo_4", "imemo_5", "imemo_6", "imemo_7",
    "imemo_8", "imemo_9", "imemo_10", "imemo_11", "imemo_12", "imemo_13", "imemo_14", "imemo_15",
];

fn imemo_name(n: usize) -> &'static str {
    IMEMO_TYPES
        .get(n)
        .copied()
        .filter(|s| !s.is_empty())
        .or(IMEMO_NUMBERED.get(n).copied())
        .unwrap_or("imemo")
}

const FL_USHIFT: u32 = 12;

const fn fl_user(n: u32) -> VALUE {
    1 << (FL_USHIFT + n)
}

// Header bits Ruby's dump reports (include/ruby/internal/core/*.h, internal/string.h,
// internal/hash.h of each release).
/// STR_NOEMBED.
const STR_NOEMBED: VALUE = fl_user(1);
/// ELTS_SHARED = STR_SHARED = RARRAY_SHARED_FLAG: FL_USER2 up to 3.3, FL_USER0 since 3.4.
#[cfg(not(ruby_gte_3_4))]
const ELTS_SHARED: VALUE = fl_user(2);
#[cfg(ruby_gte_3_4)]
const ELTS_SHARED: VALUE = fl_user(0);
/// RSTRING_FSTR.
const RSTRING_FSTR: VALUE = fl_user(17);
/// STR_CHILLED (3.4+: STR_CHILLED_LITERAL | STR_CHILLED_SYMBOL_TO_S).
#[cfg(ruby_gte_3_4)]
const STR_CHILLED: VALUE = fl_user(2) | fl_user(3);
/// RARRAY_EMBED_FLAG.
const RARRAY_EMBED_FLAG: VALUE = fl_user(1);
/// ROBJECT_EMBED (3.3, 3.4; the dump says `embedded` from 3.3 on).
#[cfg(all(ruby_gte_3_3, not(ruby_gte_4_0)))]
const ROBJECT_EMBED: VALUE = fl_user(1);
/// ROBJECT_HEAP (4.0: set when the fields are not in the slot).
#[cfg(ruby_gte_4_0)]
const ROBJECT_HEAP: VALUE = fl_user(4);
/// RHASH_PROC_DEFAULT.
const RHASH_PROC_DEFAULT: VALUE = fl_user(2);
/// ENC_CODERANGE_MASK and its values.
const CR_MASK: VALUE = fl_user(8) | fl_user(9);
const CR_7BIT: VALUE = fl_user(8);
#[cfg(ruby_gte_3_2)]
const CR_VALID: VALUE = fl_user(9);
/// Where `struct RHash` keeps `ifnone`: after `as` (a pointer) up to 3.2, right after RBasic
/// since 3.3.
#[cfg(not(ruby_gte_3_3))]
const RHASH_IFNONE_OFFSET: usize = std::mem::size_of::<rb_sys::RBasic>() + 8;
#[cfg(ruby_gte_3_3)]
const RHASH_IFNONE_OFFSET: usize = std::mem::size_of::<rb_sys::RBasic>();
/// `struct RClass` (RBasic, super, m_tbl), after which 3.2 to 3.4 keep rb_classext_t.
#[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
const RCLASS_SIZE: usize = std::mem::size_of::<rb_sys::RBasic>() + 16;

/// A string's `bytesize`, `capacity` and `value` as Ruby's dump decides them.
///
/// # Safety
/// `s` is a live String; GVL held.
unsafe fn string_content<'a>(
    s: VALUE,
    flags: VALUE,
    enc: *mut rb_sys::rb_encoding,
) -> (u64, Option<u64>, Option<&'a [u8]>) {
    // SAFETY: per the caller, with the VM's own accessors.
    unsafe {
        let len = rb_sys::RSTRING_LEN(s).max(0) as usize;
        let embedded = flags & STR_NOEMBED == 0;
        let shared = !embedded && flags & ELTS_SHARED != 0;
        let capa = rb_str_capacity(s);
        let capacity = (!embedded && !shared && capa != len).then_some(capa as u64);
        let bytes = std::slice::from_raw_parts(RSTRING_PTR_u8(s), len);
        #[cfg(not(ruby_gte_3_2))]
        let value = {
            // 3.1 asks for the coderange (computed, and cached in the string, when unknown).
            let _ = enc;
            (rb_sys::rb_enc_str_coderange(s) == CR_7BIT as c_int).then_some(bytes)
        };
        #[cfg(ruby_gte_3_2)]
        let value = {
            // 3.2+: the text of non-empty strings of an ASCII-compatible encoding whose cached
            // coderange is 7-bit, or unknown and the bytes are 7-bit (nothing is cached).
            let cr = flags & CR_MASK;
            let ascii_compat =
                !enc.is_null() && (*enc).min_enc_len == 1 && rb_enc_dummy_p(enc) == 0;
            (len > 0
                && ascii_compat
                && (cr == CR_7BIT || (cr == 0 && bytes.iter().all(|b| *b < 0x80))))
            .then_some(bytes)
        };
        (len as u64, capacity, value)
    }
}

/// What Ruby's dump writes for an ID: its name, or ID_INTERNAL(serial) when it has none.
///
/// # Safety
/// GVL held; `id` is an ID of the VM.
#[cfg(ruby_gte_3_2)]
unsafe fn id_name<'a>(id: ID) -> IdName<'a> {
    // 3.2 names instance variable IDs only (scope bits ID_INSTANCE; an edge name is never an
    // operator ID) and writes the serial of the others (`__classpath__`...).
    #[cfg(not(ruby_gte_3_3))]
    if id & 0x0e != 0x02 {
        return IdName::Internal(id >> 4);
    }
    // SAFETY: looking a static or dynamic ID's symbol and name up creates nothing.
    unsafe {
        let sym = rb_sys::rb_id2sym(id);
        let name = if sym != 0 { rb_sys::rb_sym2str(sym) } else { 0 };
        if name != 0 && name != crate::ffi::NIL && rb_sys::RB_TYPE(name) == T::RUBY_T_STRING {
            IdName::Name(std::slice::from_raw_parts(
                RSTRING_PTR_u8(name),
                rb_sys::RSTRING_LEN(name).max(0) as usize,
            ))
        } else {
            // rb_id_to_serial: internal IDs are never operator IDs, so the serial is the ID
            // without its 4 scope bits (RUBY_ID_SCOPE_SHIFT).
            IdName::Internal(id >> 4)
        }
    }
}

/// A String VALUE's bytes, or None when it is not a String (nil: anonymous).
///
/// # Safety
/// GVL held; `s` a VALUE.
unsafe fn str_bytes<'a>(s: VALUE) -> Option<&'a [u8]> {
    // SAFETY: per the caller; a String's pointer and length.
    unsafe {
        (s != 0 && !rb_sys::SPECIAL_CONST_P(s) && rb_sys::RB_TYPE(s) == T::RUBY_T_STRING).then(
            || {
                std::slice::from_raw_parts(
                    RSTRING_PTR_u8(s),
                    rb_sys::RSTRING_LEN(s).max(0) as usize,
                )
            },
        )
    }
}

/// A C string's bytes, or None for NULL.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string that outlives the returned slice's use.
unsafe fn c_bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: per the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

impl Walk<'_> {
    /// Writes one object's line, field by field as the `dump_object` of ext/objspace of this
    /// Ruby release does.
    ///
    /// # Safety
    /// `v` is a live heap slot, the GVL is held and GC is off.
    unsafe fn object(&mut self, v: VALUE, flags: VALUE, stride: usize) {
        let t = (flags & 0x1f) as u32;
        let ty = obj_type(t);
        if ty == ObjType::None || ty == ObjType::Moved {
            return;
        }
        let basic = v as *const rb_sys::RBasic;
        let imemo_type = ((flags >> FL_USHIFT) & 0x0f) as usize;
        // 4.0: a fields object has a class and a shape.
        #[cfg(ruby_gte_4_0)]
        let imemo_has_class = imemo_type == IMEMO_FIELDS;
        // 3.1 takes an IMEMO's class word like any object's (whatever it holds: a callcache's
        // class, nil...), writes it and leaves it out of the references; 3.2 and 3.3 do not.
        #[cfg(not(ruby_gte_3_2))]
        let imemo_has_class = true;
        #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
        let imemo_has_class = false;
        // Ruby's cur_obj_klass: none for IMEMOs (but as said above).
        let klass = if ty == ObjType::Imemo && !imemo_has_class {
            0
        } else {
            // SAFETY: every heap object starts with RBasic.
            unsafe { (*basic).klass }
        };
        // SAFETY: v is live; GVL held.
        let shape_id = unsafe { shape_id_of(v, ty, imemo_has_class) };
        let frozen = flags & (rb_sys::ruby_fl_type::RUBY_FL_FREEZE as VALUE) != 0;
        // SAFETY (whole block): v is a live object of type `t`, read with the VM's own
        // accessors for that type, or at the offsets of this release's headers; GVL held.
        let kind = unsafe {
            match ty {
                ObjType::String => {
                    let enc = rb_sys::rb_enc_get(v);
                    let enc_name = self.encoding_name(enc);
                    let embedded = flags & STR_NOEMBED == 0;
                    let shared = !embedded && flags & ELTS_SHARED != 0;
                    let (bytesize, capacity, value) = string_content(v, flags, enc);
                    #[cfg(ruby_gte_3_4)]
                    let chilled = flags & STR_CHILLED != 0;
                    #[cfg(not(ruby_gte_3_4))]
                    let chilled = false;
                    #[cfg(ruby_gte_3_2)]
                    let coderange = Some(match flags & CR_MASK {
                        0 => "unknown",
                        CR_7BIT => "7bit",
                        CR_VALID => "valid",
                        _ => "broken",
                    });
                    #[cfg(not(ruby_gte_3_2))]
                    let coderange = None;
                    // 3.1 says `broken` from the coderange it computes (and caches).
                    #[cfg(not(ruby_gte_3_2))]
                    let broken = rb_sys::rb_enc_str_coderange(v) == CR_MASK as c_int;
                    #[cfg(ruby_gte_3_2)]
                    let broken = false;
                    Kind::String {
                        embedded,
                        fstring: flags & RSTRING_FSTR != 0,
                        chilled,
                        shared,
                        bytesize,
                        capacity,
                        value,
                        encoding: enc_name,
                        coderange,
                        broken,
                    }
                }
                ObjType::Symbol => {
                    let s = rb_sys::rb_sym2str(v);
                    if str_bytes(s).is_some() {
                        let sflags = (*(s as *const rb_sys::RBasic)).flags;
                        #[cfg(ruby_gte_3_2)]
                        let (bytesize, capacity, value) =
                            string_content(s, sflags, rb_sys::rb_enc_get(s));
                        // 3.1 writes a symbol's length and name.
                        #[cfg(not(ruby_gte_3_2))]
                        let (bytesize, capacity, value) = {
                            let _ = sflags;
                            let b = str_bytes(s);
                            (b.map_or(0, |b| b.len() as u64), None, b)
                        };
                        Kind::Symbol {
                            bytesize,
                            capacity,
                            value,
                        }
                    } else {
                        Kind::Symbol {
                            bytesize: 0,
                            capacity: None,
                            value: None,
                        }
                    }
                }
                ObjType::Array => {
                    let length = rb_sys::RARRAY_LEN(v).max(0) as u64;
                    let embedded = flags & RARRAY_EMBED_FLAG != 0;
                    Kind::Array {
                        length,
                        // Ruby 3.1 says so for non-empty arrays only.
                        embedded: embedded && (length > 0 || cfg!(ruby_gte_3_2)),
                        shared: flags & ELTS_SHARED != 0 && length > 0,
                    }
                }
                ObjType::Hash => {
                    let default = (flags & RHASH_PROC_DEFAULT != 0).then(|| {
                        // SAFETY: RHash's ifnone, at this release's offset.
                        *((v as usize + RHASH_IFNONE_OFFSET) as *const VALUE)
                    });
                    Kind::Hash {
                        size: rb_sys::rb_hash_size_num(v) as u64,
                        default,
                    }
                }
                ObjType::Object => {
                    let (ivars, too_complex) = object_ivars(v, flags);
                    #[cfg(all(ruby_gte_3_3, not(ruby_gte_4_0)))]
                    let embedded = flags & ROBJECT_EMBED != 0;
                    #[cfg(ruby_gte_4_0)]
                    let embedded = flags & ROBJECT_HEAP == 0;
                    #[cfg(not(ruby_gte_3_3))]
                    let embedded = false;
                    Kind::Object {
                        embedded,
                        ivars,
                        too_complex,
                    }
                }
                ObjType::Class | ObjType::Module => {
                    let variation_count = if ty == ObjType::Class {
                        class_variation_count(v)
                    } else {
                        None
                    };
                    let sup = rb_class_get_superclass(v);
                    let (mut name, mut real_class_name, mut singleton) = (None, None, false);
                    // Ruby names a class only when it has a class of its own.
                    if klass != 0 {
                        name = str_bytes(rb_sys::rb_mod_name(v));
                        if name.is_none() {
                            real_class_name =
                                str_bytes(rb_sys::rb_mod_name(rb_sys::rb_class_real(v)));
                        }
                        singleton = is_singleton(v, ty, flags);
                    }
                    Kind::Class {
                        variation_count,
                        name,
                        real_class_name,
                        singleton,
                        superclass: (sup != 0).then_some(sup as u64),
                    }
                }
                ObjType::IClass => {
                    let sup = rb_class_get_superclass(v);
                    Kind::IClass {
                        superclass: (sup != 0).then_some(sup as u64),
                    }
                }
                ObjType::Data => Kind::Data {
                    struct_name: c_bytes(rb_objspace_data_type_name(v)),
                },
                // Every release writes `%#g`.
                ObjType::Float => Kind::Float {
                    value: rb_sys::rb_float_value(v),
                    alternate: true,
                },
                ObjType::File => {
                    let fptr = (*(v as *const rb_sys::RFile)).fptr;
                    if fptr.is_null() {
                        Kind::Plain
                    } else {
                        // SAFETY: a File's rb_io, whose `fd` follows `self` and `stdio_file`
                        // in every release.
                        #[allow(deprecated)]
                        let fd = (*fptr).fd;
                        Kind::File { fd: fd as i64 }
                    }
                }
                ObjType::Imemo => imemo_kind(v, imemo_type),
                ObjType::Zombie => Kind::Zombie,
                _ => Kind::Plain,
            }
        };
        self.refs.clear();
        self.klass = klass;
        if ty != ObjType::Zombie {
            // SAFETY: v is live; the callback only pushes into `refs`.
            unsafe {
                rb_objspace_reachable_objects_from(v, collect_ref, self as *mut Walk as *mut c_void)
            };
        }
        let mut method_buf: Option<&[u8]> = None;
        let allocation = match self.lookup {
            // SAFETY: objspace's lookup takes any VALUE and returns its record or NULL.
            Some(lookup) => match unsafe { lookup(v) } {
                p if p.is_null() => None,
                p => {
                    // SAFETY: a live allocation_info record of objspace's table.
                    let info = unsafe { &*p };
                    // SAFETY: path is NULL or objspace's own NUL-terminated copy.
                    let file = unsafe { c_bytes(info.path) };
                    // `mid` is the method's Symbol (or nil).
                    // SAFETY: a Symbol's name is a String the VM keeps (its fstring).
                    if unsafe { rb_sys::RB_SYMBOL_P(info.mid) } {
                        method_buf = unsafe { str_bytes(rb_sys::rb_sym2str(info.mid)) };
                    }
                    Some(Allocation {
                        file,
                        // Ruby writes the line when it is not 0.
                        line: (info.line != 0).then_some(info.line),
                        method: method_buf,
                        generation: info.generation as u64,
                    })
                }
            },
            None => None,
        };
        let mut raw = [(0, 0); MAX_FLAGS];
        // SAFETY: v is a live object of the page being walked.
        let n = unsafe { gc_flags(v, &mut raw) };
        let mut flags_out: [(&str, FlagValue); MAX_FLAGS] = [("", FlagValue::True); MAX_FLAGS];
        for (slot, (id, value)) in flags_out.iter_mut().zip(raw.iter().take(n)) {
            // SAFETY: GVL held; the value is what the VM gave for this flag.
            *slot = (self.flag_name(*id), unsafe { flag_value(*value) });
        }
        let line = ObjectLine {
            address: v,
            ty,
            shape_id,
            slot_size: self.write_slot_size.then_some(stride as u64),
            class: (klass != 0).then_some(klass),
            frozen,
            kind,
            references: &self.refs,
            allocation,
            // SAFETY: v is live.
            memsize: unsafe { rb_obj_memsize_of(v) } as u64,
            flags: flags_out.get(..n).unwrap_or(&[]),
        };
        write::write_object(&mut self.out.buf, &line);
        self.written.objects += 1;
    }

    /// An encoding's name (left out for ASCII-8BIT, like Ruby), looked up once per encoding.
    ///
    /// # Safety
    /// `enc` is NULL or one of the VM's encodings, which live as long as the process.
    unsafe fn encoding_name(&mut self, enc: *mut rb_sys::rb_encoding) -> Option<&'static str> {
        if enc.is_null() {
            return None;
        }
        self.encodings.get_or(enc as usize, || {
            // SAFETY: per the caller; the name is a static C string of the encoding table.
            unsafe { c_bytes::<'static>((*enc).name as *const c_char) }
                .and_then(|n| std::str::from_utf8(n).ok())
                .filter(|n| *n != "ASCII-8BIT")
        })
    }

    fn flag_name(&mut self, id: ID) -> &'static str {
        self.flag_names.get_or(id, || {
            // SAFETY: GVL held; the flags' IDs are static symbols with names.
            let name = unsafe { c_bytes(rb_sys::rb_id2name(id)) }
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Box::leak(name.into_boxed_str())
        })
    }
}

/// What Ruby's dump calls `ivars`, and whether the object's shape is too complex: on 3.1 the
/// instance variable table's capacity (ROBJECT_NUMIV: 3 when embedded in the slot, else
/// `as.heap.numiv`, the first field after RBasic); from 3.2 on (shapes) ROBJECT_IV_COUNT /
/// ROBJECT_FIELDS_COUNT: the entries of the ivar table of a too-complex object, else the
/// shape's next field index (4.0 counts the object_id field too).
///
/// # Safety
/// `v` is a live T_OBJECT.
unsafe fn object_ivars(v: VALUE, flags: VALUE) -> (u64, bool) {
    #[cfg(not(ruby_gte_3_2))]
    {
        let embedded = flags & (1 << (FL_USHIFT + 1)) != 0;
        if embedded {
            (3, false)
        } else {
            // SAFETY: a non-embedded RObject keeps `uint32_t numiv` right after RBasic.
            let n =
                unsafe { *((v as usize + std::mem::size_of::<rb_sys::RBasic>()) as *const u32) };
            (n as u64, false)
        }
    }
    #[cfg(ruby_gte_3_2)]
    {
        let _ = flags;
        // The ivar table of a too-complex object is `as.heap.ivptr` (`as.heap.fields` in 4.0),
        // right after RBasic.
        let table = |v: VALUE| -> u64 {
            // SAFETY: v is a too-complex T_OBJECT, whose first field after RBasic is its
            // st_table.
            unsafe {
                let tbl =
                    *((v as usize + std::mem::size_of::<rb_sys::RBasic>()) as *const *const c_void);
                if tbl.is_null() {
                    0
                } else {
                    rb_st_table_size(tbl) as u64
                }
            }
        };
        #[cfg(not(ruby_gte_4_0))]
        {
            // SAFETY: v is a live T_OBJECT (caller); the shape is the VM's.
            unsafe {
                if rb_shape_obj_too_complex(v) {
                    (table(v), true)
                } else {
                    let shape = rb_shape_get_shape_by_id(rb_shape_get_shape_id(v));
                    if shape.is_null() {
                        (rb_ivar_count(v) as u64, false)
                    } else {
                        ((*shape).next_iv_index as u64, false)
                    }
                }
            }
        }
        #[cfg(ruby_gte_4_0)]
        {
            // SAFETY: v is a live T_OBJECT (caller); RSHAPE(id) is in the VM's shape list.
            unsafe {
                let id = rb_obj_shape_id(v);
                if id & SHAPE_ID_FL_TOO_COMPLEX != 0 {
                    (table(v), true)
                } else {
                    match rshape(id) {
                        Some(shape) => (shape.next_field_index as u64, false),
                        None => (rb_ivar_count(v) as u64, false),
                    }
                }
            }
        }
    }
}

/// RSHAPE(id): the shape of a 4.0 shape_id.
///
/// # Safety
/// GVL held; `id` is a shape id the VM handed out.
#[cfg(ruby_gte_4_0)]
unsafe fn rshape<'a>(id: u32) -> Option<&'a Shape> {
    // SAFETY: rb_shape_tree is initialised at boot; the offset of a handed-out id is inside
    // its shape list.
    unsafe {
        let list = (*std::ptr::addr_of!(rb_shape_tree)).shape_list;
        (!list.is_null()).then(|| &*list.add((id & SHAPE_ID_OFFSET_MASK) as usize))
    }
}

/// The `shape_id` Ruby's dump writes for an object: none on 3.1; every object's on 3.2 to 3.4;
/// on 4.0 every object's but IMEMOs' (fields objects excepted), without the flag bits.
///
/// # Safety
/// GVL held; `v` is a live object of type `ty`.
unsafe fn shape_id_of(v: VALUE, ty: ObjType, imemo_has_shape: bool) -> Option<u64> {
    let _ = (v, ty, imemo_has_shape);
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    {
        // SAFETY: per the caller; reads the object's shape id.
        Some(unsafe { rb_shape_get_shape_id(v) } as u64)
    }
    #[cfg(ruby_gte_4_0)]
    {
        (ty != ObjType::Imemo || imemo_has_shape)
            // SAFETY: per the caller; classes' fields object is read, nothing is made.
            .then(|| (unsafe { rb_obj_shape_id(v) } & SHAPE_ID_OFFSET_MASK) as u64)
    }
    #[cfg(not(ruby_gte_3_2))]
    {
        None
    }
}

/// A class's `variation_count` (3.2+).
///
/// # Safety
/// GVL held; `v` is a live T_CLASS.
unsafe fn class_variation_count(v: VALUE) -> Option<u64> {
    let _ = v;
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    {
        // SAFETY: a class's slot holds rb_classext_t right after struct RClass (RCLASS_EXT).
        let ext = (v as usize + RCLASS_SIZE) as *const ClassExtHead;
        Some(unsafe { (*ext).variation_count } as u64)
    }
    #[cfg(ruby_gte_4_0)]
    {
        // SAFETY: per the caller.
        Some(unsafe { rb_class_variation_count(v) } as u64)
    }
    #[cfg(not(ruby_gte_3_2))]
    {
        None
    }
}

/// Whether Ruby's dump calls a class or module a singleton: FL_SINGLETON up to 3.3, and on
/// classes only in 3.4 (RCLASS_SINGLETON_P); 4.0 asks rb_class_singleton_p.
///
/// # Safety
/// GVL held; `v` is a live class or module.
unsafe fn is_singleton(v: VALUE, ty: ObjType, flags: VALUE) -> bool {
    let fl = flags & (rb_sys::ruby_fl_type::RUBY_FL_SINGLETON as VALUE) != 0;
    let _ = (v, ty, fl);
    #[cfg(not(ruby_gte_3_4))]
    {
        fl
    }
    #[cfg(all(ruby_gte_3_4, not(ruby_gte_4_0)))]
    {
        fl && ty == ObjType::Class
    }
    #[cfg(ruby_gte_4_0)]
    {
        // SAFETY: per the caller.
        unsafe { rb_class_singleton_p(v) != 0 }
    }
}

/// The extra fields of an IMEMO: its type's name; from 3.3 on a callinfo's method name and a
/// callcache's cached method name and receiver class.
///
/// # Safety
/// GVL held; `v` is a live T_IMEMO of type `n`.
unsafe fn imemo_kind<'a>(v: VALUE, n: usize) -> Kind<'a> {
    let name = imemo_name(n);
    #[cfg(ruby_gte_3_3)]
    let (mut mid, mut called_id, mut receiver_class) = (None, None, None);
    #[cfg(not(ruby_gte_3_3))]
    let (mid, called_id, receiver_class) = (None, None, None);
    let _ = v;
    #[cfg(ruby_gte_3_3)]
    // SAFETY: per the caller, v is a callinfo or callcache of this release's layout.
    unsafe {
        if name == "callinfo" {
            let ci = &*(v as *const CallInfo);
            if ci.mid != 0 {
                mid = Some(id_name(ci.mid as ID));
            }
        } else if name == "callcache" {
            let cc = &*(v as *const CallCache);
            // A callcache's method entry, when set, is a live imemo_ment.
            let called = |cc: &CallCache| -> Option<IdName<'a>> {
                let cme = cc.cme.as_ref()?;
                (cme.called_id != 0).then(|| id_name(cme.called_id))
            };
            // 3.3: the receiver class only with a method name; 3.4: both only for a cache
            // with a class; 4.0: the class is Qundef once collected.
            #[cfg(not(ruby_gte_3_4))]
            {
                called_id = called(cc);
                if called_id.is_some() && cc.klass != 0 {
                    receiver_class = Some(cc.klass);
                }
            }
            #[cfg(all(ruby_gte_3_4, not(ruby_gte_4_0)))]
            let has_class = cc.klass != 0;
            #[cfg(ruby_gte_4_0)]
            let has_class = cc.klass != rb_sys::Qundef as VALUE;
            #[cfg(ruby_gte_3_4)]
            if has_class {
                called_id = called(cc);
                receiver_class = Some(cc.klass);
            }
        }
    }
    Kind::Imemo {
        imemo_type: name,
        mid,
        called_id,
        receiver_class,
    }
}

/// A GC flag's value as the dump writes it (dump_append_special_const).
///
/// # Safety
/// GVL held.
unsafe fn flag_value<'a>(v: VALUE) -> FlagValue<'a> {
    // SAFETY: only special constants are decoded; a Symbol's name is the VM's.
    unsafe {
        if v == crate::ffi::TRUE {
            FlagValue::True
        } else if v == crate::ffi::FALSE {
            FlagValue::False
        } else if v == crate::ffi::NIL {
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

/// RSTRING_PTR as bytes.
///
/// # Safety
/// `v` must be a live String.
#[allow(non_snake_case)]
unsafe fn RSTRING_PTR_u8(v: VALUE) -> *const u8 {
    // SAFETY: per the caller.
    unsafe { rb_sys::RSTRING_PTR(v) as *const u8 }
}

/// Live objects by VM type and by class, counted by walking the heap pages.
pub struct Census {
    pub objects: u64,
    pub by_type: FxHashMap<u32, u64>,
    pub by_class: FxHashMap<VALUE, u64>,
}

unsafe extern "C" fn count_page(
    start: *mut c_void,
    end: *mut c_void,
    stride: usize,
    data: *mut c_void,
) -> c_int {
    guard::run(Feature::Heap, "counting the heap", 1, || {
        // SAFETY: what the caller of `count_page` guarantees, passed on as it came.
        unsafe { count_page_body(start, end, stride, data) }
    })
}

/// # Safety
/// What the caller of `count_page` guarantees.
unsafe fn count_page_body(
    start: *mut c_void,
    end: *mut c_void,
    stride: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the Census of `census`, on this thread.
    let c = unsafe { &mut *(data as *mut Census) };
    let mut p = start as usize;
    while p < end as usize {
        // SAFETY: a heap slot starts with its flags; 0 is a free slot.
        let flags = unsafe { *(p as *const VALUE) };
        if flags != 0 {
            let v = p as VALUE;
            *c.by_type.entry((flags & 0x1f) as u32).or_default() += 1;
            c.objects += 1;
            // SAFETY: v is live; internal objects (imemo, hidden) have no class to count.
            if unsafe { rb_objspace_internal_object_p(v) } == 0 {
                // SAFETY: every object starts with RBasic.
                let klass = unsafe { (*(v as *const rb_sys::RBasic)).klass };
                *c.by_class.entry(klass).or_default() += 1;
            }
        }
        p += stride;
    }
    0
}

/// Counts every live object and hands the counts to `use_it` while GC is still off: the
/// class VALUEs in the map are not GC roots, so they are only valid until GC runs again.
/// GVL held by the caller.
pub fn census<R>(gvl: Gvl, use_it: impl FnOnce(&Census) -> R) -> R {
    let mut c = Census {
        objects: 0,
        by_type: FxHashMap::default(),
        by_class: FxHashMap::default(),
    };
    // GC is turned back on (if it was on) only after `use_it` is done with the class VALUEs.
    let _gc_off = crate::ffi::GcOff::new(gvl);
    // SAFETY: GVL held (token); the callback only counts into `c`, alive for the call.
    unsafe { rb_objspace_each_objects(count_page, &mut c as *mut Census as *mut c_void) };
    use_it(&c)
}

/// The dump's type name for a VM type number (`T_STRING`).
pub fn type_name(t: u32) -> String {
    format!("T_{}", obj_type(t).name())
}
