//! Keeping VALUEs held in Rust memory alive: one hidden, permanent TypedData object per holder
//! whose mark function marks (and so pins) what the holder keeps. The pending-capture ring and
//! the frame-facts cache use it.

use crate::ffi::Gvl;
use rb_sys::rb_data_type_t;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

/// The type of one marker object: its name and mark function.
pub struct MarkerType {
    ty: rb_data_type_t,
    made: AtomicBool,
}

// SAFETY: the type description is immutable and only read by the VM; `made` is atomic.
unsafe impl Sync for MarkerType {}

impl MarkerType {
    /// `mark` runs inside GC (under the GVL) and must only call `rb_gc_mark` on what it keeps.
    pub const fn new(name: &'static CStr, mark: unsafe extern "C" fn(*mut c_void)) -> MarkerType {
        MarkerType {
            ty: rb_data_type_t {
                wrap_struct_name: name.as_ptr(),
                function: rb_sys::rb_data_type_struct__bindgen_ty_1 {
                    dmark: Some(mark),
                    dfree: None,
                    dsize: None,
                    dcompact: None,
                    reserved: [std::ptr::null_mut(); 1],
                },
                parent: std::ptr::null(),
                data: std::ptr::null_mut(),
                flags: 0,
            },
            made: AtomicBool::new(false),
        }
    }

    /// Creates the marker object, once per process.
    pub fn ensure(&'static self, _gvl: Gvl) {
        if self.made.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: GVL held. klass 0 makes the object hidden; registering it keeps it (and so
        // the marking) alive for the life of the process. The data pointer must not be null
        // (the GC skips the mark function of a TypedData whose data is null); it is never read.
        unsafe {
            let data = &MARKER_DATA as *const u8 as *mut c_void;
            let obj = rb_sys::rb_data_typed_object_wrap(0, data, &self.ty);
            rb_sys::rb_gc_register_mark_object(obj);
        }
    }
}

/// Any non-null address will do as a marker's data.
static MARKER_DATA: u8 = 0;
