//! Reporting an exception that ends a thread, without a frame in the thread's stack.
//!
//! Ruby has no hook that sees the exception a thread dies of (`RUBY_EVENT_THREAD_END` fires
//! only when the block returns; during hooks `$!` is cleared), so the thread's block has to
//! be wrapped. A Ruby wrapper would sit at the bottom of every thread the app starts and show
//! in `Thread#backtrace`, in error trackers, in `rbscope stacks` and in snapshots. The wrapper
//! here is a Proc made of a native function ([`ffi::proc_of_fn`]): Ruby runs it in an IFUNC
//! frame, which no backtrace shows (rbscope-vm's frame walk skips it too).
//!
//! The wrapper calls the app's block with the same arguments, block and keywords. When the
//! block exits by a raise, it reports the exception (`Rbscope.__report_thread`, which also
//! prints the better backtrace when installed) and resumes the raise exactly where it was, so
//! the thread ends as it would have: `join` and `value` raise it, `report_on_exception`
//! prints it, `abort_on_exception` applies. Any other exit (`throw`, `break`, a kill) passes
//! through untouched.

use crate::ffi::guard::{self, Feature};
use crate::ffi::{self, BlockFn, Gvl, Raised, VALUE};
use std::ffi::c_int;

/// The app's `block` wrapped so an exception that escapes it is reported.
pub fn wrap(gvl: Gvl, block: VALUE) -> Result<VALUE, Raised> {
    ffi::proc_of_fn(gvl, thread_body as BlockFn, block)
}

/// The wrapper's body: Ruby calls it, on the new thread, with the arguments of `Thread.new`.
unsafe extern "C" fn thread_body(
    _yielded: VALUE,
    block: VALUE,
    argc: c_int,
    argv: *const VALUE,
    blockarg: VALUE,
) -> VALUE {
    // SAFETY: Ruby calls a Proc's function on the Ruby thread running the Proc, with the GVL.
    let gvl = unsafe { Gvl::assume() };
    let kw = ffi::keyword_given(gvl);
    // SAFETY: `argv` holds `argc` VALUEs Ruby passed to this block function, alive for its
    // call; `block` is the app's Proc, kept alive by the wrapper Proc's ifunc.
    match unsafe { ffi::call_proc_stopping_exits(gvl, block, argc, argv, blockarg, kw) } {
        Ok(v) => v,
        Err(exit) => {
            if let Some(exception) = exit.raised {
                guard::run(
                    Feature::Capture,
                    "report of a thread's exception",
                    (),
                    || report(gvl, exception, block),
                );
            }
            ffi::resume_exit(gvl, exit)
        }
    }
}

/// `Rbscope.__report_thread(exception, nil, block)`: stores the snapshot unless the exception
/// is one an exit ignores, and prints the better backtrace. A failure there is Ruby's own
/// (counted by `protect`'s callers elsewhere); the thread ends the same way regardless.
fn report(gvl: Gvl, exception: VALUE, block: VALUE) {
    if let Some(rbscope) = ffi::const_at(gvl, "Rbscope") {
        let _ = ffi::call(
            gvl,
            rbscope,
            "__report_thread",
            &[exception, ffi::NIL, block],
        );
    }
}
