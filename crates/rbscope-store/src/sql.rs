//! The little that differs between SQLite and PostgreSQL, behind one trait.
//!
//! Every query rbscope runs (list, groups, get, purge, retention) is written once, in SQL both
//! databases accept, with `?` placeholders; a backend only runs statements and hands back rows
//! as [`Cell`]s. PostgreSQL wants `$1, $2, ...`, so its backend renumbers the placeholders
//! (our statements never contain a literal `?`). Writing a batch and creating or migrating the
//! schema are the backends' own, because their transactions and DDL differ.

use crate::StoreError;

/// The table that holds snapshots, in both databases.
pub(crate) const TABLE: &str = "rbscope_snapshots";

/// A statement argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// One column of one result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    pub(crate) fn int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            _ => 0,
        }
    }

    pub(crate) fn text(self) -> String {
        match self {
            Cell::Text(s) => s,
            Cell::Int(i) => i.to_string(),
            _ => String::new(),
        }
    }

    pub(crate) fn bytes(self) -> Option<Vec<u8>> {
        match self {
            Cell::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// What a backend does for the shared queries.
pub(crate) trait Db {
    /// Runs a query; every row comes back with exactly `columns` cells.
    fn rows(
        &mut self,
        sql: &str,
        args: &[Arg],
        columns: usize,
    ) -> Result<Vec<Vec<Cell>>, StoreError>;
    /// Runs a statement; returns how many rows it changed.
    fn exec(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError>;
}

/// `?, ?, ?` → `$1, $2, $3`, for PostgreSQL.
pub(crate) fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbers_placeholders() {
        assert_eq!(
            numbered_placeholders("a = ? AND b < ? LIMIT ?"),
            "a = $1 AND b < $2 LIMIT $3"
        );
        assert_eq!(numbered_placeholders("no args"), "no args");
    }
}
