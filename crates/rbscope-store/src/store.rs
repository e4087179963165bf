//! [`Store`]: one type for both backends, so the agent's writer and every CLI command work the
//! same on a developer's SQLite file and on a fleet's PostgreSQL database.

use crate::pg::PgDb;
use crate::query;
use crate::sql::Db;
use crate::sqlite::SqliteDb;
use crate::{Filter, Group, Retention, SnapshotSummary, StoreError, StoreKey, StoreLocation};

/// A snapshot to store.
pub struct NewSnapshot<'a> {
    pub summary: &'a SnapshotSummary,
    pub body: &'a [u8],
    pub signature: Option<&'a [u8]>,
}

/// One stored snapshot as it sits in the store.
pub struct Stored {
    pub id: String,
    pub body: Vec<u8>,
    pub signature: Option<Vec<u8>>,
}

/// The byte cap during one batch insert: what the store held when the transaction began, plus
/// what the batch has added since. Both backends use it the same way.
pub(crate) struct ByteCap {
    cap: Option<u64>,
    used: u64,
}

impl ByteCap {
    pub(crate) fn new(cap: Option<u64>, used: u64) -> ByteCap {
        ByteCap { cap, used }
    }

    /// Whether a body of `size` bytes still fits under the cap; counts it when it does.
    pub(crate) fn admit(&mut self, size: u64) -> Result<(), StoreError> {
        if let Some(cap) = self.cap {
            if self.used + size > cap {
                return Err(StoreError::OverCap(cap));
            }
        }
        self.used += size;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    pub snapshots: u64,
    pub snapshot_bytes: u64,
    /// The SQLite file's size, or the PostgreSQL table's (with indexes and TOAST).
    pub file_bytes: u64,
}

enum Backend {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

pub struct Store {
    backend: Backend,
    location: StoreLocation,
}

impl Store {
    /// Opens the store for writing: creates the SQLite file (0600) or the PostgreSQL tables,
    /// and migrates an older schema.
    pub fn open_or_create(location: &StoreLocation) -> Result<Store, StoreError> {
        let backend = match location {
            StoreLocation::Sqlite(path) => Backend::Sqlite(SqliteDb::open_or_create(path)?),
            StoreLocation::Postgres(url) => {
                Backend::Postgres(PgDb::open_or_create(url, &location.describe())?)
            }
        };
        Ok(Store {
            backend,
            location: location.clone(),
        })
    }

    /// Opens a store that exists; [`StoreError::Missing`] when nothing was ever stored there.
    pub fn open_existing(location: &StoreLocation) -> Result<Store, StoreError> {
        let backend = match location {
            StoreLocation::Sqlite(path) => Backend::Sqlite(SqliteDb::open_existing(path)?),
            StoreLocation::Postgres(url) => {
                Backend::Postgres(PgDb::open_existing(url, &location.describe())?)
            }
        };
        Ok(Store {
            backend,
            location: location.clone(),
        })
    }

    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// Where the store is, for messages (never with a password).
    pub fn describe(&self) -> String {
        self.location.describe()
    }

    fn db(&mut self) -> &mut dyn Db {
        match &mut self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(db) => db,
        }
    }

    /// True when the connection is known to be gone (PostgreSQL restarted, network dropped):
    /// the writer then reconnects instead of failing on it again.
    pub fn is_broken(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(_) => false,
            Backend::Postgres(db) => db.is_closed(),
        }
    }

    /// Stores one encoded snapshot and its signature. With `max_bytes`, refuses it when the
    /// store would go over.
    pub fn insert(
        &mut self,
        summary: &SnapshotSummary,
        body: &[u8],
        signature: Option<&[u8]>,
        max_bytes: Option<u64>,
    ) -> Result<(), StoreError> {
        let row = NewSnapshot {
            summary,
            body,
            signature,
        };
        self.insert_batch(&[row], max_bytes)?
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Stores several snapshots in one transaction (how the agent's writer keeps up with many
    /// processes). The outer error is for the whole batch (nothing stored); the inner results
    /// say, per snapshot, whether the byte cap refused it. Ids already stored are skipped, so
    /// retrying a batch is safe.
    pub fn insert_batch(
        &mut self,
        rows: &[NewSnapshot],
        max_bytes: Option<u64>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        match &mut self.backend {
            Backend::Sqlite(db) => db.insert_batch(rows, max_bytes),
            Backend::Postgres(db) => db.insert_batch(rows, max_bytes),
        }
    }

    /// The newest `limit` snapshots, newest first.
    pub fn list(&mut self, limit: usize) -> Result<Vec<SnapshotSummary>, StoreError> {
        self.list_filtered(&Filter {
            limit,
            ..Filter::default()
        })
    }

    /// Snapshots matching `filter`, newest first.
    pub fn list_filtered(&mut self, filter: &Filter) -> Result<Vec<SnapshotSummary>, StoreError> {
        query::list_filtered(self.db(), filter)
    }

    /// Snapshots matching `filter`, grouped by fingerprint, most recently seen first.
    pub fn groups(&mut self, filter: &Filter) -> Result<Vec<Group>, StoreError> {
        query::groups(self.db(), filter)
    }

    /// The encoded snapshot whose id is `id`, or starts with `id` when that is unambiguous.
    pub fn get(&mut self, id: &str) -> Result<(String, Vec<u8>), StoreError> {
        self.get_signed(id).map(|s| (s.id, s.body))
    }

    /// Like [`get`](Self::get), with the stored signature (None for unsigned snapshots).
    pub fn get_signed(&mut self, id: &str) -> Result<Stored, StoreError> {
        query::get_signed(self.db(), id)
    }

    /// The encoded snapshot for a restore: its signature must verify under `key` (see
    /// [`crate::reader_key`]), unless `trust` is given.
    pub fn get_for_restore(
        &mut self,
        id: &str,
        trust: bool,
        key: Option<&StoreKey>,
    ) -> Result<(String, Vec<u8>), StoreError> {
        let Stored {
            id,
            body,
            signature,
        } = self.get_signed(id)?;
        if trust {
            return Ok((id, body));
        }
        let Some(signature) = signature else {
            return Err(StoreError::Untrusted(id, "is unsigned"));
        };
        let Some(key) = key else {
            return Err(StoreError::Untrusted(
                id,
                match self.location {
                    StoreLocation::Sqlite(_) => "is signed, but this store has no key file",
                    StoreLocation::Postgres(_) => {
                        "is signed, but no key was given to check it (set RBSCOPE_STORE_KEY or --key to the fleet's key file)"
                    }
                },
            ));
        };
        if !key.verify(&body, &signature) {
            return Err(StoreError::Untrusted(
                id,
                "has a signature that does not match the store's key",
            ));
        }
        Ok((id, body))
    }

    /// Deletes the snapshots matching `filter` (all of them when it is empty: callers refuse
    /// that). Returns how many were deleted.
    pub fn delete_matching(&mut self, filter: &Filter) -> Result<u64, StoreError> {
        query::delete_matching(self.db(), filter)
    }

    /// Deletes one snapshot by id or unambiguous prefix; returns its full id.
    pub fn delete_id(&mut self, id: &str) -> Result<String, StoreError> {
        query::delete_id(self.db(), id)
    }

    /// Deletes what was reported before `before_ms`.
    pub fn delete_older_than(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        self.apply_retention(
            &Retention {
                max_age_ms: Some(0),
                ..Retention::default()
            },
            before_ms,
        )
    }

    /// Applies retention limits, oldest first. Returns how many snapshots were deleted.
    pub fn apply_retention(&mut self, r: &Retention, now_ms: i64) -> Result<u64, StoreError> {
        query::apply_retention(self.db(), r, now_ms)
    }

    pub fn stats(&mut self) -> Result<StoreStats, StoreError> {
        let (snapshots, snapshot_bytes) = query::totals(self.db())?;
        let file_bytes = match &mut self.backend {
            Backend::Sqlite(db) => db.file_bytes(),
            Backend::Postgres(db) => db.table_bytes(),
        };
        Ok(StoreStats {
            snapshots,
            snapshot_bytes,
            file_bytes,
        })
    }
}
