//! Where the store is.
//!
//! The app and the CLI must find the same store whatever their working directory, so the
//! default is a per-user data directory, never a relative path: `$XDG_DATA_HOME/rbscope/
//! snapshots.db`, else `$HOME/.local/share/rbscope/snapshots.db`. `RBSCOPE_STORE` (or the
//! CLI's `--store`) overrides it with a path; `postgres://` URLs are recognised so the error
//! can say they are not supported yet.

use crate::StoreError;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// A libpq-style URL: `postgres://user:password@host:port/database?options`.
    Postgres(String),
}

impl StoreLocation {
    /// Interprets a `--store` / `RBSCOPE_STORE` value; None or empty means the default.
    pub fn parse(value: Option<&str>) -> Result<Self, StoreError> {
        match value.map(str::trim) {
            None | Some("") => Ok(StoreLocation::Sqlite(default_store_path())),
            Some(v) if v.contains("://") => {
                if let Some(path) = v.strip_prefix("sqlite://") {
                    Ok(StoreLocation::Sqlite(PathBuf::from(path)))
                } else if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                    Ok(StoreLocation::Postgres(v.to_string()))
                } else {
                    Err(StoreError::UnsupportedUrl(v.to_string()))
                }
            }
            Some(v) => Ok(StoreLocation::Sqlite(absolute(Path::new(v)))),
        }
    }

    /// A human-readable description for messages, without any password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(p) => p.display().to_string(),
            StoreLocation::Postgres(url) => without_password(url),
        }
    }
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
fn without_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The default store file for this user.
pub fn default_store_path() -> PathBuf {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(shared_fallback_dir);
    data_home.join("rbscope").join("snapshots.db")
}

/// The data directory when neither `XDG_DATA_HOME` nor `HOME` is set (a service without a
/// home): in /tmp, where any local user could have made it first.
fn shared_fallback_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/rbscope-data-{uid}"))
}

/// Refuses a store (or its key) under the /tmp fallback directory unless that directory is a
/// real directory of this user that no one else may write: otherwise whoever made it could
/// swap the store, plant snapshots and the key that signs them, or point the files elsewhere.
/// (The agent's runtime directory in /tmp is checked the same way.) Other places are the
/// user's choice and are used as they are.
pub(crate) fn check_store_dir(store: &Path) -> Result<(), String> {
    let dir = shared_fallback_dir();
    if !store.starts_with(&dir) {
        return Ok(());
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    check_private_dir(&dir, uid)
}

fn check_private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        // Not there yet: the store makes it (0700).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot check {}: {e}", dir.display())),
        Ok(meta) => check_owned_dir(dir, &meta, uid, 0o022),
    }
}

/// That `dir` (whose `symlink_metadata` is `meta`) is a real directory of `uid`, with none of
/// the `forbidden` mode bits: what a directory must be before rbscope puts a store or a socket
/// in it (the agent's control directory uses this too, forbidding 0o077).
pub fn check_owned_dir(
    dir: &Path,
    meta: &std::fs::Metadata,
    uid: u32,
    forbidden: u32,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.file_type().is_dir() {
        return Err(format!(
            "{} is not a directory (a symlink or file is in the way); remove it",
            dir.display()
        ));
    }
    if meta.uid() != uid {
        return Err(format!(
            "{} belongs to uid {}, not to this process's uid {uid}; remove it",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & forbidden != 0 {
        return Err(format!(
            "{} is open to other users (mode {:o}); run chmod 700 on it",
            dir.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            StoreLocation::parse(Some("/x/y.db")).unwrap(),
            StoreLocation::Sqlite("/x/y.db".into())
        );
        assert_eq!(
            StoreLocation::parse(Some("sqlite:///x/y.db")).unwrap(),
            StoreLocation::Sqlite("/x/y.db".into())
        );
        let pg = StoreLocation::parse(Some(
            "postgres://app:s3cret@db.internal:5433/ops?sslmode=disable&password=x",
        ))
        .unwrap();
        assert!(matches!(pg, StoreLocation::Postgres(_)));
        assert_eq!(
            pg.describe(),
            "postgres://app:***@db.internal:5433/ops?sslmode=disable&password=***"
        );
        assert_eq!(
            StoreLocation::parse(Some("postgresql://h/db"))
                .unwrap()
                .describe(),
            "postgresql://h/db"
        );
        assert!(matches!(
            StoreLocation::parse(Some("mysql://h/db")),
            Err(StoreError::UnsupportedUrl(_))
        ));
        assert!(
            matches!(StoreLocation::parse(None).unwrap(), StoreLocation::Sqlite(p) if p.ends_with("rbscope/snapshots.db"))
        );
    }

    #[test]
    fn the_shared_fallback_directory_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let dir = tmp.path().join("data");
        assert!(check_private_dir(&dir, uid).is_ok(), "not there yet");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(check_private_dir(&dir, uid).is_ok());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_private_dir(&dir, uid).is_ok(), "readable is fine");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_private_dir(&dir, uid)
            .unwrap_err()
            .contains("is open to other users (mode 777)"));
        assert!(check_private_dir(&dir, uid + 1)
            .unwrap_err()
            .contains("belongs to uid"));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_private_dir(&link, uid)
            .unwrap_err()
            .contains("is not a directory"));
        assert!(check_store_dir(Path::new("/srv/rbscope/snapshots.db")).is_ok());
    }
}
