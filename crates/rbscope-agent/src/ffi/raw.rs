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
