//! The embedded SQLite store.
//!
//! One file per user, WAL journal, a busy timeout so that many processes (puma workers, forked
//! children) can write at once without errors. The file, its directory and SQLite's side files
//! are private to the user (0600 / 0700): snapshots hold application data.

use crate::sql::{Arg, Cell, Db};
use crate::store::ByteCap;
use crate::{NewSnapshot, StoreError};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema this build creates and understands. 2 added the `signature` column; 3 renamed
/// `snapshots` to `rbscope_snapshots`, the name the PostgreSQL store uses too.
/// How long a writer waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rbscope_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rbscope_snapshots (
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
CREATE INDEX IF NOT EXISTS rbscope_snapshots_time ON rbscope_snapshots(reported_at_ms);
CREATE INDEX IF NOT EXISTS rbscope_snapshots_fingerprint ON rbscope_snapshots(fingerprint);
";

pub(crate) struct SqliteDb {
    conn: Connection,
    path: PathBuf,
}

impl SqliteDb {
    /// Opens the store for writing, creating the file (0600) and its directory (0700).
    pub(crate) fn open_or_create(path: &Path) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        crate::location::check_store_dir(path).map_err(open_err)?;
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                // Every directory made on the way is private too (whatever the umask): one
                // that others could write would let them swap the store's directory.
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| open_err(e.to_string()))?;
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
            }
        }
        // Again now that it exists: someone may have made it in between.
        crate::location::check_store_dir(path).map_err(open_err)?;
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
    pub(crate) fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        crate::location::check_store_dir(path).map_err(|reason| StoreError::Open {
            path: path.display().to_string(),
            reason,
        })?;
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE, false)
    }

    fn open_with(path: &Path, flags: OpenFlags, create: bool) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| StoreError::Open {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let not_a_store = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ffi::ErrorCode::NotADatabase) => StoreError::NotAStore(p.clone()),
            _ => StoreError::from(e),
        };
        // Switching a new file to WAL takes an exclusive lock, and SQLite reports a busy file
        // at once rather than through the busy timeout: retry, within the same time bound.
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ffi::ErrorCode::DatabaseBusy)
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(not_a_store(e)),
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let store = SqliteDb {
            conn,
            path: path.to_path_buf(),
        };
        store.check_schema(create)?;
        Ok(store)
    }

    /// The schema version written in the store: None when it has no `rbscope_meta` table, 0 when
    /// the table has no version (a store from before versions were written).
    fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='rbscope_meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if !has_meta {
            return Ok(None);
        }
        let version: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM rbscope_meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(Some(
            version.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0),
        ))
    }

    /// Creates the schema of a new store or migrates an older one. Many processes may open a
    /// new store at once (forked workers raising together): the check is repeated under the
    /// write lock (`BEGIN IMMEDIATE`) and the schema and its version are written in the same
    /// transaction, so no process ever sees a half-made schema.
    fn check_schema(&self, create: bool) -> Result<(), StoreError> {
        match self.schema_version()? {
            Some(v) if v == SCHEMA_VERSION => return Ok(()),
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema(self.path.display().to_string(), v))
            }
            _ => {}
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = self.create_or_migrate(create);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.conn.execute_batch(end);
        result?;
        Ok(ended?)
    }

    fn create_or_migrate(&self, create: bool) -> Result<(), StoreError> {
        let mut steps = String::new();
        match self.schema_version()? {
            Some(v) if v == SCHEMA_VERSION => return Ok(()),
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema(self.path.display().to_string(), v))
            }
            Some(version) => {
                // Older stores are migrated in place, step by step.
                if version <= 1 {
                    steps.push_str("ALTER TABLE snapshots ADD COLUMN signature BLOB;");
                }
                if version <= 2 {
                    steps.push_str(
                        "ALTER TABLE snapshots RENAME TO rbscope_snapshots;
                         DROP INDEX IF EXISTS snapshots_time;
                         DROP INDEX IF EXISTS snapshots_fingerprint;",
                    );
                }
            }
            None if !create => {
                let tables: i64 = self.conn.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type='table'",
                    [],
                    |r| r.get(0),
                )?;
                if tables > 0 {
                    return Err(StoreError::NotAStore(self.path.display().to_string()));
                }
            }
            None => {}
        }
        steps.push_str(SCHEMA);
        self.conn.execute_batch(&steps)?;
        self.conn.execute(
            "INSERT OR REPLACE INTO rbscope_meta(key, value) VALUES ('schema_version', ?1)",
            params![SCHEMA_VERSION.to_string()],
        )?;
        Ok(())
    }

    /// Stores several snapshots in one transaction. The outer error is for the whole batch
    /// (nothing stored); the inner results say, per snapshot, whether the byte cap refused it.
    /// An id already stored is skipped, so a batch retried after a lost commit is harmless.
    pub(crate) fn insert_batch(
        &mut self,
        rows: &[NewSnapshot],
        max_bytes: Option<u64>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let used: u64 = match max_bytes {
            Some(_) => tx.query_row(
                "SELECT coalesce(sum(size), 0) FROM rbscope_snapshots",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64,
            None => 0,
        };
        let mut budget = ByteCap::new(max_bytes, used);
        let mut results = Vec::with_capacity(rows.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO rbscope_snapshots (id, reported_at_ms, exception_class,
                     message, top_frame, fingerprint, hostname, pid, size, body, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for row in rows {
                let size = row.body.len() as u64;
                if let Err(e) = budget.admit(size) {
                    results.push(Err(e));
                    continue;
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
                results.push(Ok(()));
            }
        }
        tx.commit()?;
        Ok(results)
    }

    /// The size of the database file.
    pub(crate) fn file_bytes(&self) -> u64 {
        fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

fn sql_arg(a: &Arg) -> SqlValue {
    match a {
        Arg::Int(i) => SqlValue::Integer(*i),
        Arg::Text(t) => SqlValue::Text(t.clone()),
    }
}

impl Db for SqliteDb {
    fn rows(
        &mut self,
        sql: &str,
        args: &[Arg],
        columns: usize,
    ) -> Result<Vec<Vec<Cell>>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params_from_iter(args.iter().map(sql_arg)), |r| {
            (0..columns)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(n) => Cell::Int(n),
                        ValueRef::Real(f) => Cell::Int(f as i64),
                        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
                    })
                })
                .collect::<Result<Vec<_>, rusqlite::Error>>()
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute(sql, params_from_iter(args.iter().map(sql_arg)))?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{conformance, Store, StoreKey, StoreLocation};

    fn fresh(dir: &tempfile::TempDir, name: &str) -> Store {
        Store::open_or_create(&StoreLocation::Sqlite(dir.path().join(name))).unwrap()
    }

    #[test]
    fn passes_the_backend_checks() {
        let dir = tempfile::tempdir().unwrap();
        conformance::insert_and_get(&mut fresh(&dir, "a.db"));
        conformance::filters_and_groups(&mut fresh(&dir, "b.db"));
        conformance::purge_and_retention(&mut fresh(&dir, "c.db"), &mut fresh(&dir, "d.db"));
        let key = StoreKey::create_file(&dir.path().join("k1")).unwrap();
        let other = StoreKey::create_file(&dir.path().join("k2")).unwrap();
        conformance::restore_trust(&mut fresh(&dir, "e.db"), &key, &other);
    }

    #[test]
    fn files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/store.db");
        Store::open_or_create(&StoreLocation::Sqlite(path.clone())).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
    }

    #[test]
    fn many_openers_of_a_new_store_at_once_all_get_a_whole_schema() {
        // Forked workers raising together each create the store: before the schema was made
        // under the write lock, some saw its meta table without a version and failed.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("race-{round}.db"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open_or_create(&StoreLocation::Sqlite(path))
                            .map(|mut s| s.stats().map(|st| st.snapshots))
                    })
                })
                .collect();
            for o in openers {
                let opened = o.join().unwrap();
                assert!(matches!(opened, Ok(Ok(0))), "round {round}: {opened:?}");
            }
        }
    }

    #[test]
    fn migrates_a_schema_2_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE rbscope_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO rbscope_meta VALUES ('schema_version', '2');
                 CREATE TABLE snapshots (id TEXT PRIMARY KEY, reported_at_ms INTEGER NOT NULL,
                   exception_class TEXT NOT NULL, message TEXT NOT NULL, top_frame TEXT NOT NULL,
                   fingerprint TEXT NOT NULL, hostname TEXT NOT NULL, pid INTEGER NOT NULL,
                   size INTEGER NOT NULL, body BLOB NOT NULL, signature BLOB);
                 CREATE INDEX snapshots_time ON snapshots(reported_at_ms);
                 CREATE INDEX snapshots_fingerprint ON snapshots(fingerprint);
                 INSERT INTO snapshots VALUES ('01OLD', 5, 'E', 'm', 'A#b', 'E@A#b', 'h', 1, 3,
                   X'616263', NULL);",
            )
            .unwrap();
        }
        let mut s = Store::open_existing(&StoreLocation::Sqlite(path.clone())).unwrap();
        assert_eq!(s.get("01OLD").unwrap().1, b"abc");
        assert_eq!(s.list(10).unwrap()[0].top_frame, "A#b");
        let c = Connection::open(&path).unwrap();
        let v: String = c
            .query_row(
                "SELECT value FROM rbscope_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION.to_string());
        c.execute("UPDATE rbscope_meta SET value = '99'", [])
            .unwrap();
        drop(c);
        assert!(matches!(
            Store::open_existing(&StoreLocation::Sqlite(path)),
            Err(StoreError::NewerSchema(_, 99))
        ));
    }

    #[test]
    fn refuses_garbage_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        fs::write(&junk, vec![0x42u8; 8192]).unwrap();
        assert!(matches!(
            SqliteDb::open_existing(&junk),
            Err(StoreError::NotAStore(_))
        ));
        assert!(matches!(
            SqliteDb::open_existing(&dir.path().join("nope.db")),
            Err(StoreError::Missing(_))
        ));
    }
}
