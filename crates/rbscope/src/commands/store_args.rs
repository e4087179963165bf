//! The flags of the commands that read or write the snapshot store: where it is (`--store`,
//! on list, show, restore, purge, doctor, ui and run) and the key its snapshots are signed with
//! (`--key`, on the commands that sign or check signatures: restore, ui and run). Each command
//! flattens the ones it uses, so no other command offers them. Both also come from the
//! environment (RBSCOPE_STORE, RBSCOPE_STORE_KEY), the same variables the agent reads, so a
//! shell set up for an app reads that app's store.

use std::path::PathBuf;

/// `--store PATH|URL`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// Where snapshots are stored: a file path (default: the per-user data directory) or a
    /// postgres:// URL.
    #[arg(long, env = "RBSCOPE_STORE", value_name = "PATH|URL")]
    pub store: Option<String>,
}

impl StoreArgs {
    /// The store these flags name (the per-user default when none is given).
    pub fn location(&self) -> anyhow::Result<rbscope_store::StoreLocation> {
        Ok(rbscope_store::StoreLocation::parse(self.store.as_deref())?)
    }
}

/// `--key FILE`, for the commands that sign or check signatures.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeyArgs {
    /// The key file snapshots are signed with (default for a SQLite store: <store>.key beside
    /// it; a PostgreSQL store has none unless given; make one with `rbscope key new`).
    #[arg(long, env = "RBSCOPE_STORE_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
}
