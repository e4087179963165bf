//! The PostgreSQL fleet store.
//!
//! Many hosts write to one database; `rbscope list/show/restore` read from it from anywhere.
//! The schema is created and migrated by whoever connects first, under an advisory lock so
//! that a fleet starting at once does not race on `CREATE TABLE`. Tables are prefixed
//! `rbscope_` so the store can live in an application's own database. Inserts skip ids that
//! are already there, so a writer that retries a batch after losing the connection mid-commit
//! never fails on, or duplicates, what did get in.

use crate::sql::{numbered_placeholders, Arg, Cell, Db};
use crate::store::ByteCap;
use crate::{NewSnapshot, StoreError};
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, NoTls};
use std::time::Duration;

/// The schema version this build creates and understands, and the steps that reach it.
const SCHEMA_VERSION: i64 = 1;
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
CREATE TABLE IF NOT EXISTS rbscope_snapshots (
    id text COLLATE "C" PRIMARY KEY,
    reported_at_ms bigint NOT NULL,
    exception_class text NOT NULL,
    message text NOT NULL,
    top_frame text NOT NULL,
    fingerprint text NOT NULL,
    hostname text NOT NULL,
    pid bigint NOT NULL,
    size bigint NOT NULL,
    body bytea NOT NULL,
    signature bytea
);
-- Bodies are LZ4-compressed already: store them without a second compression pass.
ALTER TABLE rbscope_snapshots ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX IF NOT EXISTS rbscope_snapshots_time ON rbscope_snapshots(reported_at_ms);
CREATE INDEX IF NOT EXISTS rbscope_snapshots_fingerprint ON rbscope_snapshots(fingerprint);
"#,
)];

/// Any number, the same in every rbscope: the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x0072_6273_636f_7065; // "rbscope" in ASCII

/// How long a connection attempt may take: the writer retries later, and `rbscope` commands
/// should fail promptly when the database is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) struct PgDb {
    client: Client,
    described: String,
}

impl PgDb {
    /// Connects and creates or migrates the schema.
    pub(crate) fn open_or_create(url: &str, described: &str) -> Result<PgDb, StoreError> {
        let mut db = Self::connect(url, described)?;
        db.migrate(true)?;
        Ok(db)
    }

    /// Connects to a store that must already hold rbscope's tables.
    pub(crate) fn open_existing(url: &str, described: &str) -> Result<PgDb, StoreError> {
        let mut db = Self::connect(url, described)?;
        db.migrate(false)?;
        Ok(db)
    }

    fn connect(url: &str, described: &str) -> Result<PgDb, StoreError> {
        let mut config: Config = url.parse().map_err(|e| StoreError::Open {
            path: described.to_string(),
            reason: format!("not a valid PostgreSQL URL: {e}"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("rbscope");
        }
        let client = config.connect(NoTls).map_err(|e| StoreError::Open {
            path: described.to_string(),
            reason: pg_reason(&e),
        })?;
        Ok(PgDb {
            client,
            described: described.to_string(),
        })
    }

    fn migrate(&mut self, create: bool) -> Result<(), StoreError> {
        let mut tx = self.client.transaction().map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(pg_error)?;
        let has_meta: bool = tx
            .query_one("SELECT to_regclass('rbscope_meta') IS NOT NULL", &[])
            .map_err(pg_error)?
            .get(0);
        let version = if has_meta {
            tx.query_opt(
                "SELECT value FROM rbscope_meta WHERE key = 'schema_version'",
                &[],
            )
            .map_err(pg_error)?
            .and_then(|r| r.get::<_, String>(0).parse::<i64>().ok())
            .unwrap_or(0)
        } else if create {
            tx.batch_execute(
                "CREATE TABLE rbscope_meta (key text PRIMARY KEY, value text NOT NULL)",
            )
            .map_err(pg_error)?;
            0
        } else {
            return Err(StoreError::Missing(self.described.clone()));
        };
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema(self.described.clone(), version));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        for (step, sql) in MIGRATIONS {
            if *step > version {
                tx.batch_execute(sql).map_err(pg_error)?;
            }
        }
        tx.execute(
            "INSERT INTO rbscope_meta(key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&SCHEMA_VERSION.to_string()],
        )
        .map_err(pg_error)?;
        tx.commit().map_err(pg_error)
    }

    /// See [`crate::Store::insert_batch`].
    pub(crate) fn insert_batch(
        &mut self,
        rows: &[NewSnapshot],
        max_bytes: Option<u64>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut tx = self.client.transaction().map_err(pg_error)?;
        let used: u64 = match max_bytes {
            Some(_) => tx
                .query_one(
                    "SELECT CAST(coalesce(sum(size), 0) AS bigint) FROM rbscope_snapshots",
                    &[],
                )
                .map_err(pg_error)?
                .get::<_, i64>(0)
                .max(0) as u64,
            None => 0,
        };
        let stmt = tx
            .prepare(
                "INSERT INTO rbscope_snapshots (id, reported_at_ms, exception_class, message,
                     top_frame, fingerprint, hostname, pid, size, body, signature)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (id) DO NOTHING",
            )
            .map_err(pg_error)?;
        let mut budget = ByteCap::new(max_bytes, used);
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let size = row.body.len() as u64;
            if let Err(e) = budget.admit(size) {
                results.push(Err(e));
                continue;
            }
            let s = row.summary;
            tx.execute(
                &stmt,
                &[
                    &s.id,
                    &s.reported_at_ms,
                    &no_nul(&s.exception_class),
                    &no_nul(&s.message),
                    &no_nul(&s.top_frame),
                    &no_nul(&s.fingerprint),
                    &no_nul(&s.hostname),
                    &i64::from(s.pid),
                    &(size as i64),
                    &row.body,
                    &row.signature,
                ],
            )
            .map_err(pg_error)?;
            results.push(Ok(()));
        }
        tx.commit().map_err(pg_error)?;
        Ok(results)
    }

    /// Bytes the table takes in the database, indexes and TOAST included.
    pub(crate) fn table_bytes(&mut self) -> u64 {
        self.client
            .query_one("SELECT pg_total_relation_size('rbscope_snapshots')", &[])
            .map(|r| r.get::<_, i64>(0).max(0) as u64)
            .unwrap_or(0)
    }

    /// Whether the connection is gone (the server restarted or the network dropped it).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// PostgreSQL text cannot hold NUL; an exception message can. The blob keeps the original.
fn no_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn pg_reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The driver's own text is terse ("error connecting to server"); its source says
            // what actually failed (refused, timed out, no such host).
            let mut text = e.to_string();
            if let Some(src) = std::error::Error::source(e) {
                text = format!("{text}: {src}");
            }
            text
        }
    }
}

fn pg_error(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &postgres::error::SqlState::DISK_FULL {
            return StoreError::DiskFull;
        }
    }
    StoreError::Postgres(pg_reason(&e))
}

impl Db for PgDb {
    fn rows(
        &mut self,
        sql: &str,
        args: &[Arg],
        columns: usize,
    ) -> Result<Vec<Vec<Cell>>, StoreError> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(arg_ref).collect();
        let rows = self
            .client
            .query(&numbered_placeholders(sql), &params)
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                (0..columns)
                    .map(|i| {
                        let ty = row
                            .columns()
                            .get(i)
                            .map(|c| c.type_().clone())
                            .unwrap_or(Type::TEXT);
                        let cell = match ty {
                            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
                            Type::INT4 => row
                                .try_get::<_, Option<i32>>(i)?
                                .map(|v| Cell::Int(v.into())),
                            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Bytes),
                            _ => row.try_get::<_, Option<String>>(i)?.map(Cell::Text),
                        };
                        Ok(cell.unwrap_or(Cell::Null))
                    })
                    .collect::<Result<Vec<_>, postgres::Error>>()
                    .map_err(pg_error)
            })
            .collect()
    }

    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(arg_ref).collect();
        self.client
            .execute(&numbered_placeholders(sql), &params)
            .map_err(pg_error)
    }
}

fn arg_ref(a: &Arg) -> &(dyn ToSql + Sync) {
    match a {
        Arg::Int(i) => i,
        Arg::Text(t) => t,
    }
}
