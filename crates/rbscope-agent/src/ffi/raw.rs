//! Every raw declaration of a Ruby C function that rb-sys does not bind (or binds with a type
//! that cannot be used as is), in one place, so what the agent links against beyond Ruby's
//! public headers can be read at a glance and checked against each Ruby's `nm -D`.
//!
//! Nothing here is safe to call without the rules of the module that wraps it (`ffi`): the GVL
//! held, arguments of the right kind.

use rb_sys::VALUE;

extern "C" {
    // The iseq accessors, exported by libruby 3.1 to 4.0 (checked with `nm -D`); declared here because no public header
    // has them. They take `const rb_iseq_t *`, passed as a pointer-sized integer.
    pub(crate) fn rb_iseq_path(iseq: VALUE) -> VALUE;
    pub(crate) fn rb_iseq_realpath(iseq: VALUE) -> VALUE;
    pub(crate) fn rb_iseq_label(iseq: VALUE) -> VALUE;
    pub(crate) fn rb_iseq_base_label(iseq: VALUE) -> VALUE;
    pub(crate) fn rb_iseq_line_no(iseq: VALUE, pos: usize) -> u32;
}

/// An event hook that takes the raw trace argument (`RUBY_EVENT_HOOK_FLAG_RAW_ARG`).
pub type RawArgHook = unsafe extern "C" fn(data: VALUE, arg: *mut rb_sys::rb_trace_arg_t);

extern "C" {
    // Declared here with the hook's real signature and a plain integer flag: the generated
    // binding types the flag as a Rust enum, which cannot hold combinations.
    #[link_name = "rb_add_event_hook2"]
    pub fn add_raw_event_hook(func: RawArgHook, events: u32, data: VALUE, flags: u32);
    #[link_name = "rb_remove_event_hook"]
    pub fn remove_raw_event_hook(func: RawArgHook) -> i32;
    #[link_name = "rb_remove_event_hook_with_data"]
    pub fn remove_raw_event_hook_with_data(func: RawArgHook, data: VALUE) -> i32;
}

/// `RUBY_EVENT_HOOK_FLAG_RAW_ARG`.
pub const HOOK_FLAG_RAW_ARG: u32 = 0x04;

/// The heap walk's declarations (wrapped by `ffi/heap.rs`): the functions libruby exports for
/// ext/objspace, and the shape functions, which no public header declares (checked against
/// each Ruby's `nm -D`), with the VM structs their signatures name.
pub(crate) mod heap {
    use rb_sys::{ID, VALUE};
    use std::ffi::{c_char, c_int, c_void};

    /// `rb_objspace_each_objects`'s callback: a heap page's first slot, its end, the slot size.
    pub(crate) type EachPage =
        unsafe extern "C" fn(*mut c_void, *mut c_void, usize, *mut c_void) -> c_int;
    /// `rb_objspace_reachable_objects_from`'s callback: one referenced object.
    pub(crate) type EachRef = unsafe extern "C" fn(VALUE, *mut c_void);
    /// `rb_objspace_reachable_objects_from_root`'s callback: a root category and one object.
    pub(crate) type EachRoot = unsafe extern "C" fn(*const c_char, VALUE, *mut c_void);

    extern "C" {
        pub(crate) fn rb_objspace_each_objects(cb: EachPage, data: *mut c_void);
        pub(crate) fn rb_objspace_reachable_objects_from(
            obj: VALUE,
            cb: EachRef,
            data: *mut c_void,
        );
        pub(crate) fn rb_objspace_reachable_objects_from_root(cb: EachRoot, data: *mut c_void);
        pub(crate) fn rb_objspace_internal_object_p(obj: VALUE) -> c_int;
        pub(crate) fn rb_objspace_data_type_name(obj: VALUE) -> *const c_char;
        pub(crate) fn rb_obj_memsize_of(obj: VALUE) -> usize;
        #[cfg(not(ruby_gte_4_0))]
        pub(crate) fn rb_obj_gc_flags(obj: VALUE, flags: *mut ID, max: usize) -> usize;
        /// 4.0 replaced rb_obj_gc_flags: entries of (name, value), ended by a zero name, in a
        /// static buffer the next call overwrites.
        #[cfg(ruby_gte_4_0)]
        pub(crate) fn rb_gc_object_metadata(obj: VALUE) -> *const MetadataEntry;
        pub(crate) fn rb_class_get_superclass(klass: VALUE) -> VALUE;
        pub(crate) fn rb_str_capacity(str: VALUE) -> usize;
    }

    #[cfg(ruby_gte_3_2)]
    extern "C" {
        pub(crate) fn rb_ivar_count(obj: VALUE) -> usize;
        pub(crate) fn rb_enc_dummy_p(enc: *mut rb_sys::rb_encoding) -> c_int;
        pub(crate) fn rb_st_table_size(tbl: *const c_void) -> usize;
    }

    // Shapes, 3.2 to 3.4 (shape.h): by `rb_shape_t *`.
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    extern "C" {
        pub(crate) fn rb_shape_get_shape_id(obj: VALUE) -> u32;
        pub(crate) fn rb_shape_get_shape_by_id(id: u32) -> *const Shape;
        pub(crate) fn rb_shape_obj_too_complex(obj: VALUE) -> bool;
        pub(crate) fn rb_shape_each_shape(
            cb: unsafe extern "C" fn(*const Shape, *mut c_void),
            data: *mut c_void,
        );
        pub(crate) fn rb_shape_id(shape: *const Shape) -> u32;
        pub(crate) fn rb_shape_depth(shape: *const Shape) -> usize;
        pub(crate) fn rb_shape_edges_count(shape: *const Shape) -> usize;
        pub(crate) fn rb_shape_memsize(shape: *const Shape) -> usize;
    }

    // Shapes, 4.0: by shape_id_t; the shapes themselves are in `rb_shape_tree.shape_list`.
    #[cfg(ruby_gte_4_0)]
    extern "C" {
        pub(crate) fn rb_obj_shape_id(obj: VALUE) -> u32;
        pub(crate) fn rb_shape_each_shape_id(
            cb: unsafe extern "C" fn(u32, *mut c_void),
            data: *mut c_void,
        );
        pub(crate) fn rb_shape_depth(id: u32) -> usize;
        pub(crate) fn rb_shape_edges_count(id: u32) -> usize;
        pub(crate) fn rb_shape_memsize(id: u32) -> usize;
        pub(crate) static rb_shape_tree: ShapeTree;
        pub(crate) fn rb_class_variation_count(klass: VALUE) -> u8;
        pub(crate) fn rb_class_singleton_p(klass: VALUE) -> VALUE;
    }

    /// The head of `struct rb_shape` (shape.h), the same in 3.2, 3.3 and 3.4 up to `parent_id`
    /// (3.3 added `ancestor_index` after it; only pointers the VM hands out are read).
    #[cfg(all(ruby_gte_3_2, not(ruby_gte_4_0)))]
    #[repr(C)]
    pub(crate) struct Shape {
        pub edges: *mut c_void,
        pub edge_name: ID,
        pub next_iv_index: u32,
        pub capacity: u32,
        pub shape_type: u8,
        pub heap_index: u8,
        pub parent_id: u32,
    }

    /// `struct rb_shape` of Ruby 4.0's shape.h.
    #[cfg(ruby_gte_4_0)]
    #[repr(C)]
    pub(crate) struct Shape {
        pub edges: VALUE,
        pub edge_name: ID,
        pub ancestor_index: *mut c_void,
        pub parent_id: u32,
        pub next_field_index: u16,
        pub capacity: u16,
        pub shape_type: u8,
    }

    /// The head of Ruby 4.0's `rb_shape_tree_t` (shape.h).
    #[cfg(ruby_gte_4_0)]
    #[repr(C)]
    pub(crate) struct ShapeTree {
        pub shape_list: *const Shape,
    }

    /// `struct rb_gc_object_metadata_entry` of Ruby 4.0's internal/gc.h.
    #[cfg(ruby_gte_4_0)]
    #[repr(C)]
    pub(crate) struct MetadataEntry {
        pub name: ID,
        pub value: VALUE,
    }
}
