//! A decoded snapshot handed to Ruby as plain arrays, for `Rbscope::Restore` (restore.rb): the
//! shapes are rbscope-agent-core's `restore_data`, built as Ruby objects.

use crate::ffi::capture::{RubyBuild, VALUE};
use crate::ffi::Gvl;
use rbscope_snapshot::Snapshot;

pub fn build(gvl: Gvl, s: &Snapshot) -> VALUE {
    rbscope_agent_core::restore_data::build(&RubyBuild(gvl), s)
}
