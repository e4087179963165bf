//! Finding, grouping and removing snapshots: `rbscope list` filters and `--group`, `rbscope
//! purge`, and the retention limits the writer applies.
//!
//! Groups are by fingerprint (exception class + top app frame label), like an error tracker's
//! issues: how often, since when, until when, on which hosts.

use crate::sqlite::SqliteStore;
use crate::{SnapshotSummary, StoreError};
use rusqlite::params_from_iter;
use rusqlite::types::Value as SqlValue;

/// Which snapshots a query covers. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Reported at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Exception class, exactly.
    pub class: Option<String>,
    pub host: Option<String>,
    pub fingerprint: Option<String>,
    /// 0 means no limit.
    pub limit: usize,
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
    fn where_clause(&self) -> (String, Vec<SqlValue>) {
        let mut conds = Vec::new();
        let mut args = Vec::new();
        if let Some(t) = self.since_ms {
            conds.push("reported_at_ms >= ?");
            args.push(SqlValue::Integer(t));
        }
        if let Some(c) = &self.class {
            conds.push("exception_class = ?");
            args.push(SqlValue::Text(c.clone()));
        }
        if let Some(h) = &self.host {
            conds.push("hostname = ?");
            args.push(SqlValue::Text(h.clone()));
        }
        if let Some(f) = &self.fingerprint {
            conds.push("fingerprint = ?");
            args.push(SqlValue::Text(f.clone()));
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        (clause, args)
    }

    fn limit_clause(&self) -> String {
        if self.limit == 0 {
            String::new()
        } else {
            format!("LIMIT {}", self.limit)
        }
    }
}

impl SqliteStore {
    /// Snapshots matching `filter`, newest first.
    pub fn list_filtered(&self, filter: &Filter) -> Result<Vec<SnapshotSummary>, StoreError> {
        let (clause, args) = filter.where_clause();
        let sql = format!(
            "SELECT id, reported_at_ms, exception_class, message, top_frame, fingerprint,
                    hostname, pid, size
             FROM snapshots {clause} ORDER BY reported_at_ms DESC, id DESC {}",
            filter.limit_clause()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok(SnapshotSummary {
                id: r.get(0)?,
                reported_at_ms: r.get(1)?,
                exception_class: r.get(2)?,
                message: r.get(3)?,
                top_frame: r.get(4)?,
                fingerprint: r.get(5)?,
                hostname: r.get(6)?,
                pid: r.get::<_, i64>(7)? as u32,
                size: r.get::<_, i64>(8)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Snapshots matching `filter`, grouped by fingerprint, most recently seen first.
    pub fn groups(&self, filter: &Filter) -> Result<Vec<Group>, StoreError> {
        let (clause, args) = filter.where_clause();
        let sql = format!(
            "SELECT fingerprint, count(*), min(reported_at_ms), max(reported_at_ms),
                    count(DISTINCT hostname),
                    (SELECT id FROM snapshots l WHERE l.fingerprint = s.fingerprint
                       ORDER BY reported_at_ms DESC, id DESC LIMIT 1) AS last_id
             FROM snapshots s {clause}
             GROUP BY fingerprint ORDER BY max(reported_at_ms) DESC {}",
            filter.limit_clause()
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let heads: Vec<(String, i64, i64, i64, i64, String)> = stmt
            .query_map(params_from_iter(args), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(heads.len());
        let mut last = self
            .conn
            .prepare("SELECT exception_class, top_frame, message FROM snapshots WHERE id = ?1")?;
        for (fingerprint, count, first_ms, last_ms, hosts, last_id) in heads {
            let (class, top, message): (String, String, String) =
                last.query_row([&last_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            out.push(Group {
                fingerprint,
                exception_class: class,
                top_frame: top,
                count: count as u64,
                first_ms,
                last_ms,
                last_id,
                last_message: message,
                hosts: hosts as u64,
            });
        }
        Ok(out)
    }

    /// Deletes the snapshots matching `filter` (all of them when it is empty: callers refuse
    /// that). Returns how many were deleted.
    pub fn delete_matching(&mut self, filter: &Filter) -> Result<u64, StoreError> {
        let (clause, args) = filter.where_clause();
        let n = self.conn.execute(
            &format!("DELETE FROM snapshots {clause}"),
            params_from_iter(args),
        )?;
        Ok(n as u64)
    }

    /// Deletes one snapshot by id or unambiguous prefix; returns its full id.
    pub fn delete_id(&mut self, id: &str) -> Result<String, StoreError> {
        let full = self.get_signed(id)?.id;
        self.conn
            .execute("DELETE FROM snapshots WHERE id = ?1", [&full])?;
        Ok(full)
    }

    /// Deletes what is older than reported before `before_ms`.
    pub fn delete_older_than(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM snapshots WHERE reported_at_ms < ?1",
            [before_ms],
        )?;
        Ok(n as u64)
    }

    /// Applies retention limits, oldest first. Returns how many snapshots were deleted.
    pub fn apply_retention(&mut self, r: &Retention, now_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        if let Some(age) = r.max_age_ms {
            deleted += self.delete_older_than(now_ms.saturating_sub(age))?;
        }
        if let Some(max) = r.max_count {
            deleted += self.conn.execute(
                "DELETE FROM snapshots WHERE id IN (SELECT id FROM snapshots
                   ORDER BY reported_at_ms DESC, id DESC LIMIT -1 OFFSET ?1)",
                [max as i64],
            )? as u64;
        }
        if let Some(max) = r.max_bytes {
            // Keep the newest snapshots whose sizes add up to at most `max`.
            let sizes: Vec<(String, i64)> = {
                let mut stmt = self.conn.prepare(
                    "SELECT id, size FROM snapshots ORDER BY reported_at_ms DESC, id DESC",
                )?;
                let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            let mut total = 0u64;
            let tx = self.conn.transaction()?;
            for (id, size) in sizes {
                total += size.max(0) as u64;
                if total > max {
                    deleted += tx.execute("DELETE FROM snapshots WHERE id = ?1", [&id])? as u64;
                }
            }
            tx.commit()?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, t: i64, class: &str, fp: &str, host: &str) -> SnapshotSummary {
        SnapshotSummary {
            id: id.into(),
            reported_at_ms: t,
            exception_class: class.into(),
            message: format!("m {id}"),
            top_frame: "A#b".into(),
            fingerprint: fp.into(),
            hostname: host.into(),
            pid: 1,
            size: 0,
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open_or_create(&dir.path().join("q.db")).unwrap();
        for (id, t, c, fp, h) in [
            ("01A", 100, "KeyError", "KeyError@A#b", "web-1"),
            ("01B", 200, "KeyError", "KeyError@A#b", "web-2"),
            ("01C", 300, "IOError", "IOError@A#b", "web-1"),
            ("01D", 400, "KeyError", "KeyError@A#b", "web-1"),
        ] {
            s.insert(&row(id, t, c, fp, h), &[0u8; 10], None, None)
                .unwrap();
        }
        (dir, s)
    }

    #[test]
    fn filters_and_groups() {
        let (_d, s) = store();
        let f = Filter {
            class: Some("KeyError".into()),
            since_ms: Some(150),
            ..Filter::default()
        };
        let ids: Vec<_> = s
            .list_filtered(&f)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["01D", "01B"]);
        let g = s.groups(&Filter::default()).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].fingerprint, "KeyError@A#b");
        assert_eq!(
            (g[0].count, g[0].first_ms, g[0].last_ms, g[0].hosts),
            (3, 100, 400, 2)
        );
        assert_eq!(g[0].last_id, "01D");
        assert_eq!(g[1].count, 1);
    }

    #[test]
    fn purges_and_retention() {
        let (_d, mut s) = store();
        assert_eq!(s.delete_id("01c").unwrap(), "01C");
        assert_eq!(s.delete_older_than(150).unwrap(), 1);
        assert_eq!(s.list(10).unwrap().len(), 2);
        let (_d2, mut s2) = store();
        let r = Retention {
            max_count: Some(3),
            ..Retention::default()
        };
        assert_eq!(s2.apply_retention(&r, 0).unwrap(), 1);
        let r = Retention {
            max_bytes: Some(25),
            ..Retention::default()
        };
        assert_eq!(s2.apply_retention(&r, 0).unwrap(), 1);
        let left: Vec<_> = s2.list(10).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(left, ["01D", "01C"]);
        let r = Retention {
            max_age_ms: Some(50),
            ..Retention::default()
        };
        assert_eq!(s2.apply_retention(&r, 400).unwrap(), 1);
        let f = Filter {
            fingerprint: Some("KeyError@A#b".into()),
            ..Filter::default()
        };
        assert_eq!(s2.delete_matching(&f).unwrap(), 1);
        assert!(s2.list(10).unwrap().is_empty());
    }
}
