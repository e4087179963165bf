//! Field offsets of the VM structures rbscope reads, per Ruby release.
//!
//! The offsets are computed with `offset_of!` on the bindgen structs of `rbspy-ruby-structs`,
//! so they are exactly what that release's compiler laid out (x86-64 Linux). Adding a release
//! is one line in the table below.

use rbspy_ruby_structs as rs;

/// Offsets (in bytes) of the fields read by [`crate::frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub version: &'static str,
    pub thread_ec: usize,
    pub ec_vm_stack: usize,
    pub ec_vm_stack_size: usize,
    pub ec_cfp: usize,
    pub cfp_size: usize,
    pub cfp_pc: usize,
    pub cfp_iseq: usize,
    pub cfp_self: usize,
    pub cfp_ep: usize,
    pub iseq_body: usize,
    pub body_iseq_encoded: usize,
    pub body_local_table: usize,
    pub body_local_table_size: usize,
    pub body_parent_iseq: usize,
}

macro_rules! layouts {
    ($($module:ident => $version:literal),* $(,)?) => {
        /// Every release this build knows.
        pub const LAYOUTS: &[Layout] = &[$({
            use std::mem::{offset_of, size_of};
            use rs::$module as m;
            Layout {
                version: $version,
                thread_ec: offset_of!(m::rb_thread_struct, ec),
                ec_vm_stack: offset_of!(m::rb_execution_context_struct, vm_stack),
                ec_vm_stack_size: offset_of!(m::rb_execution_context_struct, vm_stack_size),
                ec_cfp: offset_of!(m::rb_execution_context_struct, cfp),
                cfp_size: size_of::<m::rb_control_frame_struct>(),
                cfp_pc: offset_of!(m::rb_control_frame_struct, pc),
                cfp_iseq: offset_of!(m::rb_control_frame_struct, iseq),
                cfp_self: offset_of!(m::rb_control_frame_struct, self_),
                cfp_ep: offset_of!(m::rb_control_frame_struct, ep),
                iseq_body: offset_of!(m::rb_iseq_struct, body),
                body_iseq_encoded: offset_of!(m::rb_iseq_constant_body, iseq_encoded),
                body_local_table: offset_of!(m::rb_iseq_constant_body, local_table),
                body_local_table_size: offset_of!(m::rb_iseq_constant_body, local_table_size),
                body_parent_iseq: offset_of!(m::rb_iseq_constant_body, parent_iseq),
            }
        },)*];
    };
}

layouts! {
    ruby_3_1_0 => "3.1.0", ruby_3_1_1 => "3.1.1", ruby_3_1_2 => "3.1.2", ruby_3_1_3 => "3.1.3",
    ruby_3_1_4 => "3.1.4", ruby_3_1_5 => "3.1.5", ruby_3_1_6 => "3.1.6", ruby_3_1_7 => "3.1.7",
    ruby_3_2_0 => "3.2.0", ruby_3_2_1 => "3.2.1", ruby_3_2_2 => "3.2.2", ruby_3_2_3 => "3.2.3",
    ruby_3_2_4 => "3.2.4", ruby_3_2_5 => "3.2.5", ruby_3_2_6 => "3.2.6", ruby_3_2_7 => "3.2.7",
    ruby_3_2_8 => "3.2.8", ruby_3_2_9 => "3.2.9", ruby_3_2_10 => "3.2.10", ruby_3_2_11 => "3.2.11",
    ruby_3_3_0 => "3.3.0", ruby_3_3_1 => "3.3.1", ruby_3_3_2 => "3.3.2", ruby_3_3_3 => "3.3.3",
    ruby_3_3_4 => "3.3.4", ruby_3_3_5 => "3.3.5", ruby_3_3_6 => "3.3.6", ruby_3_3_7 => "3.3.7",
    ruby_3_3_8 => "3.3.8", ruby_3_3_9 => "3.3.9", ruby_3_3_10 => "3.3.10", ruby_3_3_11 => "3.3.11",
    ruby_3_3_12 => "3.3.12", ruby_3_3_13 => "3.3.13",
    ruby_3_4_0 => "3.4.0", ruby_3_4_1 => "3.4.1", ruby_3_4_2 => "3.4.2", ruby_3_4_3 => "3.4.3",
    ruby_3_4_4 => "3.4.4", ruby_3_4_5 => "3.4.5", ruby_3_4_6 => "3.4.6", ruby_3_4_7 => "3.4.7",
    ruby_3_4_8 => "3.4.8", ruby_3_4_9 => "3.4.9", ruby_3_4_10 => "3.4.10", ruby_3_4_11 => "3.4.11",
    ruby_3_4_12 => "3.4.12",
    ruby_4_0_0 => "4.0.0", ruby_4_0_1 => "4.0.1", ruby_4_0_2 => "4.0.2", ruby_4_0_3 => "4.0.3",
    ruby_4_0_4 => "4.0.4", ruby_4_0_5 => "4.0.5", ruby_4_0_6 => "4.0.6", ruby_4_0_7 => "4.0.7",
    ruby_4_0_8 => "4.0.8", ruby_4_0_9 => "4.0.9",
}

impl Layout {
    /// The layout of an exact Ruby version (`RUBY_VERSION`), if known.
    pub fn for_version(version: &str) -> Option<&'static Layout> {
        LAYOUTS.iter().find(|l| l.version == version)
    }

    /// The versions this build knows, for messages.
    pub fn known_versions() -> String {
        let first = LAYOUTS.first().map(|l| l.version).unwrap_or("-");
        let last = LAYOUTS.last().map(|l| l.version).unwrap_or("-");
        format!("{first} to {last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_layouts_match_the_3_1_release() {
        let l = Layout::for_version("3.1.2").unwrap();
        // The 3.1 control frame: pc, sp, iseq, self, ep, block_code, __bp__, jit_return.
        assert_eq!(
            (l.cfp_pc, l.cfp_iseq, l.cfp_self, l.cfp_ep),
            (0, 16, 24, 32)
        );
        assert_eq!(l.cfp_size, 64);
        assert_eq!((l.ec_vm_stack, l.ec_vm_stack_size, l.ec_cfp), (0, 8, 16));
        assert_eq!(l.iseq_body, 16);
        assert!(Layout::for_version("2.7.0").is_none());
        assert!(Layout::for_version("4.0.0").is_some());
    }
}
