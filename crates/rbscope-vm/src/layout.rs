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
    /// The frame's value-stack top: the VM keeps every word below the running frame's `sp`
    /// a VALUE or an immediate (its GC marks them all), which the raise path's stack copy
    /// relies on.
    pub cfp_sp: usize,
    pub cfp_iseq: usize,
    pub cfp_self: usize,
    pub cfp_ep: usize,
    pub iseq_body: usize,
    pub body_iseq_encoded: usize,
    pub body_local_table: usize,
    pub body_local_table_size: usize,
    pub body_parent_iseq: usize,

    // Finding threads: vm->ractor.{set, main_ractor}, each ractor's threads list.
    pub vm_ractor_set: usize,
    pub vm_main_ractor: usize,
    pub vm_main_thread: usize,
    pub ractor_threads_set: usize,
    pub ractor_running_ec: usize,
    pub ractor_vmlr_node: usize,
    pub thread_lt_node: usize,
    pub thread_self: usize,
    /// The byte holding `status : 2` (first bits of the thread's first bitfield).
    pub thread_status_bits: usize,
    pub thread_name: usize,
    /// Where the OS thread id lives: in the thread (3.1) or behind `thread->nt` (3.2 on).
    pub thread_tid: ThreadTid,
    pub ec_thread_ptr: usize,

    // Iseq bodies: what a frame runs, where it came from, its lines and parameters.
    pub body_type: usize,
    pub body_iseq_size: usize,
    pub body_location_pathobj: usize,
    pub body_location_base_label: usize,
    pub body_location_label: usize,
    pub body_location_first_lineno: usize,
    /// `first_lineno` is a Fixnum VALUE (to 3.x) rather than a C int.
    pub first_lineno_is_value: bool,
    pub body_insns_info_body: usize,
    pub body_insns_info_positions: usize,
    pub body_insns_info_size: usize,
    pub body_insns_info_succ_index_table: usize,
    pub insn_info_entry_size: usize,
    pub body_param_flags: usize,
    pub body_param_lead_num: usize,
    pub body_param_opt_num: usize,
    pub body_param_rest_start: usize,
    pub body_param_post_start: usize,
    pub body_param_post_num: usize,
    pub body_param_block_start: usize,
    pub body_param_keyword: usize,
    /// `body->builtin_attrs` (3.3 on; 0 before): 3.4 marks methods shown like C functions.
    pub body_builtin_attrs: usize,
    /// Which Ruby frames this release's backtraces show like C functions.
    pub like_c: rbscope_backtrace::LikeC,

    // Method entries and definitions.
    pub me_defined_class: usize,
    pub me_def: usize,
    pub me_owner: usize,
    pub def_original_id: usize,
    /// `def->body`: for an iseq method, `body.iseq.iseqptr` comes first.
    pub def_body: usize,
    /// `rb_method_cfunc_t.argc`, inside `def->body`.
    pub cfunc_argc: usize,

    // Objects.
    pub fl_singleton: usize,
    pub t_initialize: usize,
    pub t_last_op_id: usize,
    pub objects: ObjectFamily,
    /// Offset of a class's superclass (in `RClass` to 3.4, in its extension from 4.0).
    pub class_super: usize,
}

/// Where a thread's OS id (`gettid`) is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadTid {
    InThread(usize),
    InNativeThread { nt: usize, tid: usize },
}

/// How strings, arrays and classes are laid out. These structs are not all in the bindgen
/// allow-list for every release, so their few offsets are written down per family, from
/// Ruby's headers (`internal/class.h`, `include/ruby/internal/core/rstring.h`, `rarray.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFamily {
    /// 3.1: embedded string length in the flags; `RClass.ptr` points to the class extension,
    /// whose `iv_tbl` (an `st_table`) holds `__classpath__` and `__attached__`.
    V31,
    /// 3.2: `RString.len` always; class extension embedded after `RClass`, instance variables
    /// in an `iv_ptr` array indexed by object shapes (the VM's `shape_list`, an object's shape
    /// id in the top 32 bits of its flags).
    V32 { shapes: Shapes32 },
    /// 3.3 to 4.0: the class extension holds `classpath` and `attached_object` itself.
    V33 {
        classpath: usize,
        attached_object: usize,
        refined_class: usize,
    },
}

/// Where 3.2's object shapes are: `rb_vm_t.shape_list`, and each `rb_shape_t`'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shapes32 {
    pub vm_shape_list: usize,
    pub size: usize,
    pub edge_name: usize,
    pub next_iv_index: usize,
    pub kind: usize,
    pub parent_id: usize,
}

macro_rules! thread_tid {
    (v31, $m:ident) => {
        ThreadTid::InThread(offset_of!($m::rb_thread_struct, tid))
    };
    ($family:ident, $m:ident) => {
        ThreadTid::InNativeThread {
            nt: offset_of!($m::rb_thread_struct, nt),
            tid: offset_of!($m::rb_native_thread, tid),
        }
    };
}

macro_rules! objects {
    (v31, $m:ident) => {
        ObjectFamily::V31
    };
    (v32, $m:ident) => {
        ObjectFamily::V32 {
            shapes: Shapes32 {
                vm_shape_list: offset_of!($m::rb_vm_struct, shape_list),
                size: size_of::<$m::rb_shape>(),
                edge_name: offset_of!($m::rb_shape, edge_name),
                next_iv_index: offset_of!($m::rb_shape, next_iv_index),
                kind: offset_of!($m::rb_shape, type_),
                parent_id: offset_of!($m::rb_shape, parent_id),
            },
        }
    };
    (v33, $m:ident) => {
        objects!(v40, $m)
    };
    (v40, $m:ident) => {
        ObjectFamily::V33 {
            classpath: offset_of!($m::RClass_and_rb_classext_t, classext.classpath),
            attached_object: offset_of!(
                $m::RClass_and_rb_classext_t,
                classext.as_.singleton_class.attached_object
            ),
            refined_class: offset_of!($m::RClass_and_rb_classext_t, classext.refined_class),
        }
    };
}

macro_rules! class_super {
    (v40, $m:ident) => {
        offset_of!($m::RClass_and_rb_classext_t, classext.super_)
    };
    ($family:ident, $m:ident) => {
        16
    };
}

macro_rules! builtin_attrs {
    (v31, $m:ident) => {
        0
    };
    (v32, $m:ident) => {
        0
    };
    ($family:ident, $m:ident) => {
        offset_of!($m::rb_iseq_constant_body, builtin_attrs)
    };
}

/// 3.4's `c_trace` methods, 4.0's internal frames (see rbscope_backtrace::LikeC).
macro_rules! like_c {
    (v40, $version:literal) => {
        rbscope_backtrace::LikeC::Internal
    };
    ($family:ident, $version:literal) => {
        if $version.as_bytes()[2] == b'4' {
            rbscope_backtrace::LikeC::CTrace
        } else {
            rbscope_backtrace::LikeC::Never
        }
    };
}

macro_rules! layouts {
    ($($module:ident => $version:literal : $family:ident),* $(,)?) => {
        /// Every release this build knows.
        pub const LAYOUTS: &[Layout] = &[$({
            use std::mem::{offset_of, size_of};
            use rs::$module as m;
            type Body = m::rb_iseq_constant_body;
            Layout {
                version: $version,
                thread_ec: offset_of!(m::rb_thread_struct, ec),
                ec_vm_stack: offset_of!(m::rb_execution_context_struct, vm_stack),
                ec_vm_stack_size: offset_of!(m::rb_execution_context_struct, vm_stack_size),
                ec_cfp: offset_of!(m::rb_execution_context_struct, cfp),
                cfp_size: size_of::<m::rb_control_frame_struct>(),
                cfp_pc: offset_of!(m::rb_control_frame_struct, pc),
                cfp_sp: offset_of!(m::rb_control_frame_struct, sp),
                cfp_iseq: offset_of!(m::rb_control_frame_struct, iseq),
                cfp_self: offset_of!(m::rb_control_frame_struct, self_),
                cfp_ep: offset_of!(m::rb_control_frame_struct, ep),
                iseq_body: offset_of!(m::rb_iseq_struct, body),
                body_iseq_encoded: offset_of!(m::rb_iseq_constant_body, iseq_encoded),
                body_local_table: offset_of!(m::rb_iseq_constant_body, local_table),
                body_local_table_size: offset_of!(m::rb_iseq_constant_body, local_table_size),
                body_parent_iseq: offset_of!(m::rb_iseq_constant_body, parent_iseq),
                vm_ractor_set: offset_of!(m::rb_vm_struct, ractor.set),
                vm_main_ractor: offset_of!(m::rb_vm_struct, ractor.main_ractor),
                vm_main_thread: offset_of!(m::rb_vm_struct, ractor.main_thread),
                ractor_threads_set: offset_of!(m::rb_ractor_struct, threads.set),
                ractor_running_ec: offset_of!(m::rb_ractor_struct, threads.running_ec),
                ractor_vmlr_node: offset_of!(m::rb_ractor_struct, vmlr_node),
                thread_lt_node: offset_of!(m::rb_thread_struct, lt_node),
                thread_self: offset_of!(m::rb_thread_struct, self_),
                thread_status_bits: offset_of!(m::rb_thread_struct, _bitfield_1),
                thread_name: offset_of!(m::rb_thread_struct, name),
                thread_tid: thread_tid!($family, m),
                ec_thread_ptr: offset_of!(m::rb_execution_context_struct, thread_ptr),
                body_type: offset_of!(Body, type_),
                body_iseq_size: offset_of!(Body, iseq_size),
                body_location_pathobj: offset_of!(Body, location.pathobj),
                body_location_base_label: offset_of!(Body, location.base_label),
                body_location_label: offset_of!(Body, location.label),
                body_location_first_lineno: offset_of!(Body, location.first_lineno),
                first_lineno_is_value: offset_of!(Body, location.node_id)
                    - offset_of!(Body, location.first_lineno)
                    == 8,
                body_insns_info_body: offset_of!(Body, insns_info.body),
                body_insns_info_positions: offset_of!(Body, insns_info.positions),
                body_insns_info_size: offset_of!(Body, insns_info.size),
                body_insns_info_succ_index_table: offset_of!(Body, insns_info.succ_index_table),
                insn_info_entry_size: size_of::<m::iseq_insn_info_entry>(),
                body_param_flags: offset_of!(Body, param.flags),
                body_param_lead_num: offset_of!(Body, param.lead_num),
                body_param_opt_num: offset_of!(Body, param.opt_num),
                body_param_rest_start: offset_of!(Body, param.rest_start),
                body_param_post_start: offset_of!(Body, param.post_start),
                body_param_post_num: offset_of!(Body, param.post_num),
                body_param_block_start: offset_of!(Body, param.block_start),
                body_param_keyword: offset_of!(Body, param.keyword),
                body_builtin_attrs: builtin_attrs!($family, m),
                like_c: like_c!($family, $version),
                me_defined_class: offset_of!(m::rb_method_entry_struct, defined_class),
                me_def: offset_of!(m::rb_method_entry_struct, def),
                me_owner: offset_of!(m::rb_method_entry_struct, owner),
                def_original_id: offset_of!(m::rb_method_definition_struct, original_id),
                def_body: offset_of!(m::rb_method_definition_struct, body),
                cfunc_argc: offset_of!(m::rb_method_cfunc_struct, argc),
                fl_singleton: m::ruby_fl_type_RUBY_FL_SINGLETON as usize,
                t_initialize: m::ruby_method_ids_tInitialize as usize,
                t_last_op_id: m::ruby_method_ids_tLAST_OP_ID as usize,
                objects: objects!($family, m),
                class_super: class_super!($family, m),
            }
        },)*];
    };
}

layouts! {
    ruby_3_1_0 => "3.1.0": v31, ruby_3_1_1 => "3.1.1": v31, ruby_3_1_2 => "3.1.2": v31, ruby_3_1_3 => "3.1.3": v31,
    ruby_3_1_4 => "3.1.4": v31, ruby_3_1_5 => "3.1.5": v31, ruby_3_1_6 => "3.1.6": v31, ruby_3_1_7 => "3.1.7": v31,
    ruby_3_2_0 => "3.2.0": v32, ruby_3_2_1 => "3.2.1": v32, ruby_3_2_2 => "3.2.2": v32, ruby_3_2_3 => "3.2.3": v32,
    ruby_3_2_4 => "3.2.4": v32, ruby_3_2_5 => "3.2.5": v32, ruby_3_2_6 => "3.2.6": v32, ruby_3_2_7 => "3.2.7": v32,
    ruby_3_2_8 => "3.2.8": v32, ruby_3_2_9 => "3.2.9": v32, ruby_3_2_10 => "3.2.10": v32, ruby_3_2_11 => "3.2.11": v32,
    ruby_3_3_0 => "3.3.0": v33, ruby_3_3_1 => "3.3.1": v33, ruby_3_3_2 => "3.3.2": v33, ruby_3_3_3 => "3.3.3": v33,
    ruby_3_3_4 => "3.3.4": v33, ruby_3_3_5 => "3.3.5": v33, ruby_3_3_6 => "3.3.6": v33, ruby_3_3_7 => "3.3.7": v33,
    ruby_3_3_8 => "3.3.8": v33, ruby_3_3_9 => "3.3.9": v33, ruby_3_3_10 => "3.3.10": v33, ruby_3_3_11 => "3.3.11": v33,
    ruby_3_3_12 => "3.3.12": v33, ruby_3_3_13 => "3.3.13": v33,
    ruby_3_4_0 => "3.4.0": v33, ruby_3_4_1 => "3.4.1": v33, ruby_3_4_2 => "3.4.2": v33, ruby_3_4_3 => "3.4.3": v33,
    ruby_3_4_4 => "3.4.4": v33, ruby_3_4_5 => "3.4.5": v33, ruby_3_4_6 => "3.4.6": v33, ruby_3_4_7 => "3.4.7": v33,
    ruby_3_4_8 => "3.4.8": v33, ruby_3_4_9 => "3.4.9": v33, ruby_3_4_10 => "3.4.10": v33, ruby_3_4_11 => "3.4.11": v33,
    ruby_3_4_12 => "3.4.12": v33,
    ruby_4_0_0 => "4.0.0": v40, ruby_4_0_1 => "4.0.1": v40, ruby_4_0_2 => "4.0.2": v40, ruby_4_0_3 => "4.0.3": v40,
    ruby_4_0_4 => "4.0.4": v40, ruby_4_0_5 => "4.0.5": v40, ruby_4_0_6 => "4.0.6": v40, ruby_4_0_7 => "4.0.7": v40,
    ruby_4_0_8 => "4.0.8": v40, ruby_4_0_9 => "4.0.9": v40,
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

    #[test]
    fn which_frames_each_release_shows_like_c_functions() {
        use rbscope_backtrace::LikeC;
        let like_c = |v| Layout::for_version(v).unwrap().like_c;
        assert_eq!(like_c("3.1.2"), LikeC::Never);
        assert_eq!(like_c("3.3.10"), LikeC::Never);
        assert_eq!(like_c("3.4.0"), LikeC::CTrace);
        assert_eq!(like_c("3.4.12"), LikeC::CTrace);
        assert_eq!(like_c("4.0.2"), LikeC::Internal);
        assert_ne!(Layout::for_version("3.4.9").unwrap().body_builtin_attrs, 0);
    }
}
