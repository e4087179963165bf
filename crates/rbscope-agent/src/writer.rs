//! The store writer thread (rbscope-agent-core's `writer`), started with the agent's
//! counters and panic guard.

use crate::counters::Counters;
use crate::ffi::guard::{self, Feature};
use rbscope_agent_core::writer::{self as core, Bounds, StoreSink};
use rbscope_store::StoreLocation;
use std::path::PathBuf;
use std::sync::Arc;

pub use rbscope_agent_core::writer::{Limits, EXIT_FLUSH};

pub struct Writer(core::Writer);

impl Writer {
    pub fn spawn(
        location: StoreLocation,
        key_file: Option<PathBuf>,
        limits: Limits,
        counters: Arc<Counters>,
        log: bool,
    ) -> Result<Writer, String> {
        let sink = StoreSink::new(location, key_file);
        core::Writer::spawn(sink, limits, Bounds::default(), counters, log, |work| {
            guard::run(Feature::Writer, "the store writer", (), work)
        })
        .map(Writer)
        .map_err(|e| format!("rbscope: cannot start the writer thread: {e}"))
    }
}

impl std::ops::Deref for Writer {
    type Target = core::Writer;
    fn deref(&self) -> &core::Writer {
        &self.0
    }
}
