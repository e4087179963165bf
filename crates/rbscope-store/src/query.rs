//! Finding, grouping and removing snapshots: `rbscope list` filters and `--group`, `rbscope
//! purge`, and the retention limits the writer applies.
//!
//! Groups are by fingerprint (exception class + top app frame label), like an error tracker's
//! issues: how often, since when, until when, on which hosts.

use crate::sql::{Arg, Cell, Db, TABLE};
use crate::{SnapshotSummary, StoreError, Stored};

/// Which snapshots a query covers. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Reported at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Exception class, exactly.
    pub class: Option<String>,
    pub host: Option<String>,
    pub fingerprint: Option<String>,
    /// Text found (ignoring ASCII case) in the exception class, message or top frame.
    pub text: Option<String>,
    /// 0 means no limit.
    pub limit: usize,
    /// Rows to skip before the first one returned (only with a limit).
    pub offset: usize,
}

/// One fingerprint's snapshots, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub fingerprint: String,
    pub exception_class: String,
    pub top_frame: String,
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub last_id: String,
    pub last_message: String,
    pub hosts: u64,
}

/// How much the store keeps. Empty fields do not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age_ms: Option<i64>,
    pub max_count: Option<u64>,
    pub max_bytes: Option<u64>,
}

impl Filter {
    fn where_clause(&self) -> (String, Vec<Arg>) {
        let mut conds = Vec::new();
        let mut args = Vec::new();
        if let Some(t) = self.since_ms {
            conds.push("reported_at_ms >= ?");
            args.push(Arg::Int(t));
        }
        if let Some(c) = &self.class {
            conds.push("exception_class = ?");
            args.push(Arg::Text(c.clone()));
        }
        if let Some(h) = &self.host {
            conds.push("hostname = ?");
            args.push(Arg::Text(h.clone()));
        }
        if let Some(f) = &self.fingerprint {
            conds.push("fingerprint = ?");
            args.push(Arg::Text(f.clone()));
        }
        if let Some(t) = self.text.as_deref().filter(|t| !t.is_empty()) {
            // LIKE with its wildcards escaped, on lower-cased columns: the same in SQLite and
            // PostgreSQL (whose LIKE is case-sensitive).
            let mut pattern = String::from("%");
            for c in t.to_lowercase().chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            conds.push(
                "(lower(exception_class) LIKE ? ESCAPE '\\' OR lower(message) LIKE ? ESCAPE '\\' \
                 OR lower(top_frame) LIKE ? ESCAPE '\\')",
            );
            for _ in 0..3 {
                args.push(Arg::Text(pattern.clone()));
            }
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        (clause, args)
    }

    fn limit_clause(&self) -> String {
        match (self.limit, self.offset) {
            (0, _) => String::new(),
            (limit, 0) => format!("LIMIT {limit}"),
            (limit, offset) => format!("LIMIT {limit} OFFSET {offset}"),
        }
    }
}

/// Snapshots matching `filter`, newest first.
pub(crate) fn list_filtered(
    db: &mut dyn Db,
    filter: &Filter,
) -> Result<Vec<SnapshotSummary>, StoreError> {
    let (clause, args) = filter.where_clause();
    let sql = format!(
        "SELECT id, reported_at_ms, exception_class, message, top_frame, fingerprint,
                hostname, pid, size
         FROM {TABLE} {clause} ORDER BY reported_at_ms DESC, id DESC {}",
        filter.limit_clause()
    );
    let rows = db.rows(&sql, &args, 9)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut c = r.into_iter();
            let mut next = || c.next().unwrap_or(Cell::Null);
            SnapshotSummary {
                id: next().text(),
                reported_at_ms: next().int(),
                exception_class: next().text(),
                message: next().text(),
                top_frame: next().text(),
                fingerprint: next().text(),
                hostname: next().text(),
                pid: next().int() as u32,
                size: next().int() as u64,
            }
        })
        .collect())
}

/// Snapshots matching `filter`, grouped by fingerprint, most recently seen first.
pub(crate) fn groups(db: &mut dyn Db, filter: &Filter) -> Result<Vec<Group>, StoreError> {
    let (clause, args) = filter.where_clause();
    let sql = format!(
        "SELECT fingerprint, count(*), min(reported_at_ms), max(reported_at_ms),
                count(DISTINCT hostname),
                (SELECT id FROM {TABLE} l WHERE l.fingerprint = s.fingerprint
                   ORDER BY reported_at_ms DESC, id DESC LIMIT 1) AS last_id
         FROM {TABLE} s {clause}
         GROUP BY fingerprint ORDER BY max(reported_at_ms) DESC {}",
        filter.limit_clause()
    );
    let heads = db.rows(&sql, &args, 6)?;
    let mut out = Vec::with_capacity(heads.len());
    for head in heads {
        let mut c = head.into_iter();
        let mut next = || c.next().unwrap_or(Cell::Null);
        let (fingerprint, count, first_ms, last_ms, hosts, last_id) = (
            next().text(),
            next().int(),
            next().int(),
            next().int(),
            next().int(),
            next().text(),
        );
        let last = db.rows(
            &format!("SELECT exception_class, top_frame, message FROM {TABLE} WHERE id = ?"),
            &[Arg::Text(last_id.clone())],
            3,
        )?;
        let mut c = last.into_iter().next().unwrap_or_default().into_iter();
        let mut next = || c.next().unwrap_or(Cell::Null);
        out.push(Group {
            fingerprint,
            exception_class: next().text(),
            top_frame: next().text(),
            count: count as u64,
            first_ms,
            last_ms,
            last_id,
            last_message: next().text(),
            hosts: hosts as u64,
        });
    }
    Ok(out)
}

/// The snapshot whose id is `id`, or starts with `id` when that is unambiguous.
pub(crate) fn get_signed(db: &mut dyn Db, id: &str) -> Result<Stored, StoreError> {
    let id = id.trim().to_ascii_uppercase();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(StoreError::NotFound(id));
    }
    // Ids are upper-case ASCII, so "starts with" is a range: index-friendly in both databases
    // (PostgreSQL's id column uses the C collation for this).
    let upper = format!("{id}\u{7f}");
    let rows = db.rows(
        &format!("SELECT id, body, signature FROM {TABLE} WHERE id >= ? AND id < ? LIMIT 2"),
        &[Arg::Text(id.clone()), Arg::Text(upper)],
        3,
    )?;
    let mut found: Vec<Stored> = rows
        .into_iter()
        .map(|r| {
            let mut c = r.into_iter();
            let mut next = || c.next().unwrap_or(Cell::Null);
            Stored {
                id: next().text(),
                body: next().bytes().unwrap_or_default(),
                signature: next().bytes(),
            }
        })
        .collect();
    match found.len() {
        0 => Err(StoreError::NotFound(id)),
        1 => found.pop().ok_or(StoreError::NotFound(id)),
        // An exact match wins over longer ids sharing the prefix.
        _ => match found.into_iter().find(|s| s.id == id) {
            Some(row) => Ok(row),
            None => Err(StoreError::Ambiguous(id)),
        },
    }
}

/// Deletes the snapshots matching `filter` (all of them when it is empty: callers refuse
/// that). Returns how many were deleted.
pub(crate) fn delete_matching(db: &mut dyn Db, filter: &Filter) -> Result<u64, StoreError> {
    let (clause, args) = filter.where_clause();
    db.exec(&format!("DELETE FROM {TABLE} {clause}"), &args)
}

/// Deletes one snapshot by id or unambiguous prefix; returns its full id.
pub(crate) fn delete_id(db: &mut dyn Db, id: &str) -> Result<String, StoreError> {
    let full = get_signed(db, id)?.id;
    db.exec(
        &format!("DELETE FROM {TABLE} WHERE id = ?"),
        &[Arg::Text(full.clone())],
    )?;
    Ok(full)
}

/// Applies retention limits, oldest first. Returns how many snapshots were deleted.
pub(crate) fn apply_retention(
    db: &mut dyn Db,
    r: &Retention,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    if let Some(age) = r.max_age_ms {
        deleted += db.exec(
            &format!("DELETE FROM {TABLE} WHERE reported_at_ms < ?"),
            &[Arg::Int(now_ms.saturating_sub(age))],
        )?;
    }
    // Newest first, number them (or add up their sizes) and delete past the limit.
    if let Some(max) = r.max_count {
        deleted += db.exec(
            &format!(
                "DELETE FROM {TABLE} WHERE id IN (SELECT id FROM (SELECT id, row_number()
                   OVER (ORDER BY reported_at_ms DESC, id DESC) AS n FROM {TABLE}) ranked
                 WHERE n > ?)"
            ),
            &[Arg::Int(max.min(i64::MAX as u64) as i64)],
        )?;
    }
    if let Some(max) = r.max_bytes {
        deleted += db.exec(
            &format!(
                "DELETE FROM {TABLE} WHERE id IN (SELECT id FROM (SELECT id, CAST(sum(size)
                   OVER (ORDER BY reported_at_ms DESC, id DESC) AS BIGINT) AS running FROM {TABLE}) ranked
                 WHERE running > ?)"
            ),
            &[Arg::Int(max.min(i64::MAX as u64) as i64)],
        )?;
    }
    Ok(deleted)
}

/// How many snapshots and how many bytes of them.
pub(crate) fn totals(db: &mut dyn Db) -> Result<(u64, u64), StoreError> {
    let rows = db.rows(
        &format!("SELECT count(*), CAST(coalesce(sum(size), 0) AS BIGINT) FROM {TABLE}"),
        &[],
        2,
    )?;
    let row = rows.into_iter().next().unwrap_or_default();
    let get = |i: usize| row.get(i).map(Cell::int).unwrap_or(0).max(0) as u64;
    Ok((get(0), get(1)))
}
