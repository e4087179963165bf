//! Values captured by selectors (`Foo#bar(self, arg, @ivar, arg.id)`), and how they are shown.
//!
//! A capture is read at call time inside the hook: `self`, an instance variable (read
//! directly, no method called), an argument (from the call's binding), then a chain of
//! argument-less public methods. Every call is protected (an exception becomes the shown
//! value), and values are rendered here rather than with `inspect`, so an app's `inspect`
//! that is slow, huge or broken cannot hurt: strings are cut, collections show their first
//! items, objects show their class and first instance variables, all within a byte budget.

use crate::ffi::guard::{self, Feature};
use crate::ffi::{self, Gvl, NIL};
use rb_sys::{ruby_value_type as T, ID, VALUE};
use rbscope_trace::selector::{Capture, Root};
use std::ffi::c_void;
use std::fmt::Write;

/// The most bytes a rendered value takes.
pub const VALUE_BUDGET: usize = 256;

pub enum Start {
    SelfValue,
    Ivar(ID),
    /// An argument, by name (a Symbol).
    Arg(VALUE),
}

pub struct Compiled {
    pub text: String,
    pub start: Start,
    pub chain: Vec<ID>,
}

pub fn compile(gvl: Gvl, c: &Capture) -> Compiled {
    let start = match &c.root {
        Root::SelfValue => Start::SelfValue,
        Root::Ivar(name) => Start::Ivar(ffi::intern(gvl, name)),
        Root::Arg(name) => Start::Arg(rb_sys::ID2SYM(ffi::intern(gvl, name))),
    };
    Compiled {
        text: c.text.clone(),
        start,
        chain: c.chain.iter().map(|m| ffi::intern(gvl, m)).collect(),
    }
}

/// Reads every capture for the call described by `arg` (a call event).
pub fn read(gvl: Gvl, captures: &[Compiled], arg: *mut rb_sys::rb_trace_arg_t) -> Vec<String> {
    // SAFETY: GVL held, inside the hook that received `arg`.
    let self_value = unsafe { rb_sys::rb_tracearg_self(arg) };
    let mut binding: VALUE = 0;
    let local_variable_get = ffi::intern(gvl, "local_variable_get");
    captures
        .iter()
        .map(|c| {
            let got = ffi::protect(gvl, || {
                // SAFETY: GVL held; all receivers are live VALUEs of this call, and the
                // binding is made once per call on demand.
                unsafe {
                    let mut v = match c.start {
                        Start::SelfValue => self_value,
                        Start::Ivar(id) => rb_sys::rb_attr_get(self_value, id),
                        Start::Arg(sym) => {
                            if binding == 0 {
                                binding = rb_sys::rb_tracearg_binding(arg);
                            }
                            if binding == NIL {
                                return NIL;
                            }
                            rb_sys::rb_funcallv(binding, local_variable_get, 1, &sym)
                        }
                    };
                    for id in &c.chain {
                        v = rb_sys::rb_funcallv_public(v, *id, 0, std::ptr::null());
                    }
                    v
                }
            });
            match got {
                Ok(v) => render(gvl, v),
                Err(_) => "(raised an exception)".into(),
            }
        })
        .collect()
}

/// `v` shown safely within [`VALUE_BUDGET`] bytes.
pub fn render(gvl: Gvl, v: VALUE) -> String {
    let mut out = String::new();
    show(gvl, v, &mut out, 2);
    if out.len() > VALUE_BUDGET {
        let mut end = VALUE_BUDGET;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

fn show(gvl: Gvl, v: VALUE, out: &mut String, depth: u8) {
    if out.len() > VALUE_BUDGET {
        return;
    }
    match ffi::type_of(gvl, v) {
        T::RUBY_T_NIL => out.push_str("nil"),
        T::RUBY_T_TRUE => out.push_str("true"),
        T::RUBY_T_FALSE => out.push_str("false"),
        T::RUBY_T_FIXNUM => {
            let _ = write!(out, "{}", ffi::fixnum(v).unwrap_or(0));
        }
        T::RUBY_T_FLOAT => {
            // SAFETY: v is a Float.
            let f = unsafe { rb_sys::rb_float_value(v) };
            let _ = write!(out, "{f:?}");
        }
        T::RUBY_T_BIGNUM => {
            // SAFETY: GVL held; v is an Integer; base 10 is valid.
            let s = unsafe { rb_sys::rb_big2str(v, 10) };
            out.push_str(&ffi::to_string(gvl, s).unwrap_or_default());
        }
        T::RUBY_T_SYMBOL => {
            out.push(':');
            out.push_str(&ffi::symbol_name(gvl, v).unwrap_or_default());
        }
        T::RUBY_T_STRING => {
            // SAFETY: v is a String; its bytes are copied at once.
            let bytes = unsafe { ffi::str_bytes(v) };
            let cut = bytes.get(..VALUE_BUDGET).unwrap_or(bytes);
            let text = String::from_utf8_lossy(cut);
            let _ = write!(out, "{text:?}");
            if bytes.len() > cut.len() {
                let _ = write!(out, "…({} bytes)", bytes.len());
            }
        }
        T::RUBY_T_CLASS | T::RUBY_T_MODULE => out.push_str(&ffi::class_path(gvl, v)),
        T::RUBY_T_ARRAY if depth > 0 => {
            // SAFETY: v is an Array.
            let len = unsafe { rb_sys::RARRAY_LEN(v) };
            out.push('[');
            for i in 0..len.min(8) {
                if i > 0 {
                    out.push_str(", ");
                }
                // SAFETY: GVL held; i is within the array.
                show(gvl, unsafe { rb_sys::rb_ary_entry(v, i) }, out, depth - 1);
            }
            if len > 8 {
                let _ = write!(out, ", …{} more", len - 8);
            }
            out.push(']');
        }
        T::RUBY_T_HASH if depth > 0 => {
            out.push('{');
            let mut state = HashWalk {
                gvl,
                out: &mut *out,
                depth: depth - 1,
                seen: 0,
            };
            // SAFETY: GVL held; v is a Hash; the callback only reads the pairs it is given
            // and `state` outlives the walk.
            unsafe {
                rb_sys::rb_hash_foreach(v, Some(hash_pair), &mut state as *mut HashWalk as VALUE)
            };
            let seen = state.seen;
            // SAFETY: v is a Hash.
            let size = unsafe { rb_sys::rb_hash_size_num(v) } as usize;
            if size > seen {
                let _ = write!(out, ", …{} more", size - seen);
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "#<{}", ffi::class_name_of(gvl, v));
            if depth > 0 && ffi::type_of(gvl, v) == T::RUBY_T_OBJECT {
                let mut state = IvarWalk {
                    gvl,
                    out: &mut *out,
                    depth: depth - 1,
                    seen: 0,
                };
                // SAFETY: GVL held; v is a plain object; the callback only reads.
                unsafe {
                    rb_sys::rb_ivar_foreach(
                        v,
                        Some(ivar_pair),
                        &mut state as *mut IvarWalk as VALUE,
                    )
                };
            }
            out.push('>');
        }
    }
}

struct HashWalk<'a> {
    gvl: Gvl,
    out: &'a mut String,
    depth: u8,
    seen: usize,
}

unsafe extern "C" fn hash_pair(k: VALUE, v: VALUE, data: VALUE) -> std::ffi::c_int {
    guard::run(
        Feature::Trace,
        "reading a traced hash",
        rb_sys::st_retval::ST_STOP as std::ffi::c_int,
        || {
            // SAFETY: what the caller of `hash_pair` guarantees, passed on as it came.
            unsafe { hash_pair_body(k, v, data) }
        },
    )
}

/// # Safety
/// What the caller of `hash_pair` guarantees.
unsafe fn hash_pair_body(k: VALUE, v: VALUE, data: VALUE) -> std::ffi::c_int {
    // SAFETY: `data` is the HashWalk passed by `show`, live for the walk.
    let w = unsafe { &mut *(data as *mut c_void as *mut HashWalk) };
    if w.seen >= 8 || w.out.len() > VALUE_BUDGET {
        return rb_sys::st_retval::ST_STOP as std::ffi::c_int;
    }
    if w.seen > 0 {
        w.out.push_str(", ");
    }
    show(w.gvl, k, w.out, w.depth);
    w.out.push_str(" => ");
    show(w.gvl, v, w.out, w.depth);
    w.seen += 1;
    rb_sys::st_retval::ST_CONTINUE as std::ffi::c_int
}

struct IvarWalk<'a> {
    gvl: Gvl,
    out: &'a mut String,
    depth: u8,
    seen: usize,
}

unsafe extern "C" fn ivar_pair(id: ID, v: VALUE, data: VALUE) -> std::ffi::c_int {
    guard::run(
        Feature::Trace,
        "reading traced instance variables",
        rb_sys::st_retval::ST_STOP as std::ffi::c_int,
        || {
            // SAFETY: what the caller of `ivar_pair` guarantees, passed on as it came.
            unsafe { ivar_pair_body(id, v, data) }
        },
    )
}

/// # Safety
/// What the caller of `ivar_pair` guarantees.
unsafe fn ivar_pair_body(id: ID, v: VALUE, data: VALUE) -> std::ffi::c_int {
    // SAFETY: `data` is the IvarWalk passed by `show`, live for the walk.
    let w = unsafe { &mut *(data as *mut c_void as *mut IvarWalk) };
    if w.seen >= 4 || w.out.len() > VALUE_BUDGET {
        return rb_sys::st_retval::ST_STOP as std::ffi::c_int;
    }
    w.out.push_str(if w.seen == 0 { " " } else { ", " });
    w.out.push_str(&ffi::id_name(w.gvl, id).unwrap_or_default());
    w.out.push('=');
    show(w.gvl, v, w.out, w.depth);
    w.seen += 1;
    rb_sys::st_retval::ST_CONTINUE as std::ffi::c_int
}
