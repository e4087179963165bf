//! The embedded SQLite store.
//!
//! One file per user, WAL journal, a busy timeout so that many processes (puma workers, forked
//! children) can write at once without errors. The file, its directory and SQLite's side files
//! are private to the user (0600 / 0700): snapshots hold application data.

use crate::{SnapshotSummary, StoreError};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema this build creates and understands. 2 added the `signature` column.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rbscope_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    reported_at_ms INTEGER NOT NULL,
    exception_class TEXT NOT NULL,
    message TEXT NOT NULL,
    top_frame TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    signature BLOB
);
CREATE INDEX IF NOT EXISTS snapshots_time ON snapshots(reported_at_ms);
CREATE INDEX IF NOT EXISTS snapshots_fingerprint ON snapshots(fingerprint);
";

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

pub struct SqliteStore {
    pub(crate) conn: Connection,
    path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    pub snapshots: u64,
    pub snapshot_bytes: u64,
    pub file_bytes: u64,
}

impl SqliteStore {
    /// Opens the store for writing, creating the file (0600) and its directory (0700).
    pub fn open_or_create(path: &Path) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
            }
        }
        // Create the file ourselves so its mode is 0600 whatever the umask; SQLite gives its
        // -wal and -shm files the same mode as the database file.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| open_err(e.to_string()))?;
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE, true)
    }

    /// Opens an existing store; a missing file is [`StoreError::Missing`], never created.
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE, false)
    }

    fn open_with(path: &Path, flags: OpenFlags, create: bool) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| StoreError::Open {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let not_a_store = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ffi::ErrorCode::NotADatabase) => StoreError::NotAStore(p.clone()),
            _ => StoreError::from(e),
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(not_a_store)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let store = SqliteStore {
            conn,
            path: path.to_path_buf(),
        };
        store.check_schema(create)?;
        Ok(store)
    }

    fn check_schema(&self, create: bool) -> Result<(), StoreError> {
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='rbscope_meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if has_meta {
            let version: Option<String> = self
                .conn
                .query_row(
                    "SELECT value FROM rbscope_meta WHERE key='schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let version = version.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
            if version > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema(
                    self.path.display().to_string(),
                    version,
                ));
            }
            if version == SCHEMA_VERSION {
                return Ok(());
            }
            if version == 1 {
                self.conn
                    .execute_batch("ALTER TABLE snapshots ADD COLUMN signature BLOB")?;
            }
        } else if !create {
            let tables: i64 = self.conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table'",
                [],
                |r| r.get(0),
            )?;
            if tables > 0 {
                return Err(StoreError::NotAStore(self.path.display().to_string()));
            }
        }
        self.conn.execute_batch(SCHEMA)?;
        self.conn.execute(
            "INSERT OR REPLACE INTO rbscope_meta(key, value) VALUES ('schema_version', ?1)",
            params![SCHEMA_VERSION.to_string()],
        )?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
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
    /// say, per snapshot, whether the byte cap refused it.
    pub fn insert_batch(
        &mut self,
        rows: &[NewSnapshot],
        max_bytes: Option<u64>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut used: u64 = match max_bytes {
            Some(_) => tx.query_row("SELECT coalesce(sum(size), 0) FROM snapshots", [], |r| {
                r.get::<_, i64>(0)
            })? as u64,
            None => 0,
        };
        let mut results = Vec::with_capacity(rows.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO snapshots (id, reported_at_ms, exception_class, message, top_frame,
                     fingerprint, hostname, pid, size, body, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for row in rows {
                let size = row.body.len() as u64;
                if let Some(cap) = max_bytes {
                    if used + size > cap {
                        results.push(Err(StoreError::OverCap(cap)));
                        continue;
                    }
                }
                let s = row.summary;
                stmt.execute(params![
                    s.id,
                    s.reported_at_ms,
                    s.exception_class,
                    s.message,
                    s.top_frame,
                    s.fingerprint,
                    s.hostname,
                    s.pid,
                    size as i64,
                    row.body,
                    row.signature
                ])?;
                used += size;
                results.push(Ok(()));
            }
        }
        tx.commit()?;
        Ok(results)
    }

    /// The newest `limit` snapshots, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<SnapshotSummary>, StoreError> {
        self.list_filtered(&crate::Filter {
            limit,
            ..crate::Filter::default()
        })
    }

    /// The encoded snapshot whose id is `id`, or starts with `id` when that is unambiguous.
    pub fn get(&self, id: &str) -> Result<(String, Vec<u8>), StoreError> {
        self.get_signed(id).map(|s| (s.id, s.body))
    }

    /// Like [`get`](Self::get), with the stored signature (None for unsigned snapshots).
    pub fn get_signed(&self, id: &str) -> Result<Stored, StoreError> {
        let id = id.trim().to_ascii_uppercase();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StoreError::NotFound(id));
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, body, signature FROM snapshots WHERE id >= ?1 AND id < ?2 LIMIT 2",
        )?;
        let upper = format!("{id}\u{7f}");
        let rows: Vec<Stored> = stmt
            .query_map(params![id, upper], |r| {
                Ok(Stored {
                    id: r.get(0)?,
                    body: r.get(1)?,
                    signature: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        match rows.len() {
            0 => Err(StoreError::NotFound(id)),
            1 => Ok(rows.into_iter().next().ok_or(StoreError::NotFound(id))?),
            _ => {
                // An exact match wins over longer ids sharing the prefix.
                match rows.into_iter().find(|s| s.id == id) {
                    Some(row) => Ok(row),
                    None => Err(StoreError::Ambiguous(id)),
                }
            }
        }
    }

    /// The encoded snapshot for a restore: its signature must verify under the store's key,
    /// unless `trust` is given.
    pub fn get_for_restore(&self, id: &str, trust: bool) -> Result<(String, Vec<u8>), StoreError> {
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
        let Some(key) = crate::StoreKey::load(&self.path)? else {
            return Err(StoreError::Untrusted(
                id,
                "is signed, but this store has no key file",
            ));
        };
        if !key.verify(&body, &signature) {
            return Err(StoreError::Untrusted(
                id,
                "has a signature that does not match this store's key",
            ));
        }
        Ok((id, body))
    }

    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let (n, bytes): (i64, i64) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM snapshots",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let file_bytes = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(StoreStats {
            snapshots: n as u64,
            snapshot_bytes: bytes as u64,
            file_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str) -> SnapshotSummary {
        SnapshotSummary {
            id: id.into(),
            reported_at_ms: 1,
            exception_class: "E".into(),
            message: "m".into(),
            top_frame: "A#b".into(),
            fingerprint: "E@A#b".into(),
            hostname: "h".into(),
            pid: 1,
            size: 0,
        }
    }

    #[test]
    fn insert_list_get_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/store.db");
        let mut s = SqliteStore::open_or_create(&path).unwrap();
        s.insert(&summary("01AAA"), b"one", None, None).unwrap();
        s.insert(&summary("01AAB"), b"two", Some(b"sig"), None)
            .unwrap();
        assert_eq!(
            s.get_signed("01AAB").unwrap().signature,
            Some(b"sig".to_vec())
        );
        assert_eq!(s.get_signed("01AAA").unwrap().signature, None);
        assert_eq!(s.list(10).unwrap().len(), 2);
        assert_eq!(s.get("01aab").unwrap().1, b"two");
        assert!(matches!(s.get("01AA"), Err(StoreError::Ambiguous(_))));
        assert!(matches!(s.get("01Z"), Err(StoreError::NotFound(_))));
        assert!(matches!(s.get("'; drop"), Err(StoreError::NotFound(_))));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert!(matches!(
            s.insert(&summary("01AAC"), b"three", None, Some(7)),
            Err(StoreError::OverCap(7))
        ));
        assert_eq!(s.stats().unwrap().snapshots, 2);

        // Restores: only snapshots signed with this store's key, unless trusted.
        assert!(matches!(
            s.get_for_restore("01AAA", false),
            Err(StoreError::Untrusted(_, _))
        ));
        assert!(s.get_for_restore("01AAA", true).is_ok());
        let key = crate::StoreKey::load_or_create(&path).unwrap();
        assert!(matches!(
            s.get_for_restore("01AAB", false),
            Err(StoreError::Untrusted(_, _))
        ));
        s.insert(&summary("01AAD"), b"four", Some(&key.sign(b"four")), None)
            .unwrap();
        assert_eq!(s.get_for_restore("01AAD", false).unwrap().1, b"four");
    }

    #[test]
    fn refuses_garbage_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        fs::write(&junk, vec![0x42u8; 8192]).unwrap();
        assert!(matches!(
            SqliteStore::open_existing(&junk),
            Err(StoreError::NotAStore(_))
        ));
        assert!(matches!(
            SqliteStore::open_existing(&dir.path().join("nope.db")),
            Err(StoreError::Missing(_))
        ));
    }
}
