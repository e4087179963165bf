//! Snapshot storage.
//!
//! The store keeps each snapshot as its encoded blob plus the few columns that `list` needs
//! (time, exception class and message, top frame, fingerprint, host, pid), so listing never
//! decodes blobs. The embedded default is one SQLite file per user, written in WAL mode so that
//! many processes can write at once; a fleet points every host at one PostgreSQL database.
//! Both sit behind [`Store`], and every query is written once (see `sql.rs`).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod key;
mod location;
mod pg;
mod query;
mod sql;
mod sqlite;
mod store;

pub use key::{key_path, reader_key, writer_key, StoreKey};
pub use location::{check_owned_dir, default_store_path, StoreLocation};
pub use query::{Filter, Group, Retention};
pub use store::{NewSnapshot, Store, StoreStats, Stored};

use thiserror::Error;

/// The columns `rbscope list` shows, without the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub id: String,
    pub reported_at_ms: i64,
    pub exception_class: String,
    pub message: String,
    pub top_frame: String,
    pub fingerprint: String,
    pub hostname: String,
    pub pid: u32,
    pub size: u64,
}

impl SnapshotSummary {
    /// The summary columns of a snapshot about to be stored.
    pub fn of(s: &rbscope_snapshot::Snapshot, size: usize) -> Self {
        SnapshotSummary {
            id: s.id.clone(),
            reported_at_ms: s.reported_at_ms,
            exception_class: s.exception.class_name.clone(),
            message: s.exception.message.chars().take(500).collect(),
            top_frame: s.top_frame_label().to_string(),
            fingerprint: s.fingerprint.clone(),
            hostname: s.context.hostname.clone(),
            pid: s.context.pid,
            size: size as u64,
        }
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("no store at {0}: nothing has been stored there yet (check --store / RBSCOPE_STORE)")]
    Missing(String),
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("{0} is not an rbscope store (it is not a SQLite database); point --store elsewhere")]
    NotAStore(String),
    #[error("{0} was written by a newer rbscope (store schema {1}); upgrade rbscope")]
    NewerSchema(String, i64),
    #[error("the disk holding the store is full; free space, then retry")]
    DiskFull,
    #[error("the store is over its size cap of {0} bytes; purge old snapshots or raise the cap")]
    OverCap(u64),
    #[error("no snapshot with id {0} (run `rbscope list` to see ids)")]
    NotFound(String),
    #[error("id prefix {0} matches several snapshots; give more characters")]
    Ambiguous(String),
    #[error(
        "{0} is not a store location rbscope understands; give a file path or a postgres:// URL"
    )]
    UnsupportedUrl(String),
    #[error("snapshot {0} {1}: restoring builds objects from it, so it must come from this store's own writers; pass --trust (or trust: true) to restore it anyway")]
    Untrusted(String, &'static str),
    #[error("store key: {0}")]
    Key(String),
    #[error("store error: {0}")]
    Sqlite(String),
    #[error("PostgreSQL store error: {0}")]
    Postgres(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::DiskFull,
            _ => StoreError::Sqlite(e.to_string()),
        }
    }
}
