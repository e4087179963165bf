//! The per-store signing key.
//!
//! Restoring a snapshot rebuilds objects of the app's classes from stored data, so a store that
//! others can write to is an attack surface (like `Marshal.load`). Every snapshot is signed
//! with HMAC-SHA256 under a 32-byte key file (0600); restore refuses a snapshot whose signature
//! is missing or wrong unless told to trust it.
//!
//! Where the key lives:
//! - SQLite: beside the store (`<store>.key`), made by the first writer.
//! - PostgreSQL: never in the database (whoever can write rows could then sign them). The
//!   fleet's key is a file made once with `rbscope key new FILE` and deployed like any other
//!   secret to the app hosts and to whoever restores; `RBSCOPE_STORE_KEY` (or `--key`) names
//!   it. Writers without it store unsigned snapshots, which restore refuses without `--trust`.
//!   `RBSCOPE_STORE_KEY` also overrides the SQLite default.

use crate::{StoreError, StoreLocation};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

pub struct StoreKey([u8; 32]);

/// Where the key of the store at `store` lives.
pub fn key_path(store: &Path) -> PathBuf {
    let mut p = store.as_os_str().to_owned();
    p.push(".key");
    PathBuf::from(p)
}

/// The key a writer signs with: the configured file (which must exist), else for SQLite the
/// key beside the store (made if missing), else none.
pub fn writer_key(
    location: &StoreLocation,
    configured: Option<&Path>,
) -> Result<Option<StoreKey>, StoreError> {
    key_for(location, configured, true)
}

/// The key a restore checks signatures with (never made here).
pub fn reader_key(
    location: &StoreLocation,
    configured: Option<&Path>,
) -> Result<Option<StoreKey>, StoreError> {
    key_for(location, configured, false)
}

fn key_for(
    location: &StoreLocation,
    configured: Option<&Path>,
    make: bool,
) -> Result<Option<StoreKey>, StoreError> {
    match (configured, location) {
        (Some(file), _) => StoreKey::load_file(file)?
            .map(Some)
            .ok_or_else(|| missing_key(file)),
        (None, StoreLocation::Sqlite(store)) => {
            crate::location::check_store_dir(store).map_err(StoreError::Key)?;
            if make {
                StoreKey::load_or_create(&key_path(store)).map(Some)
            } else {
                StoreKey::load_file(&key_path(store))
            }
        }
        (None, StoreLocation::Postgres(_)) => Ok(None),
    }
}

fn missing_key(file: &Path) -> StoreError {
    StoreError::Key(format!(
        "no key file at {} (make one with `rbscope key new {}` and give the same file to every writer)",
        file.display(),
        file.display()
    ))
}

impl StoreKey {
    /// Makes a new random key file (0600); refuses to replace an existing one.
    pub fn create_file(path: &Path) -> Result<StoreKey, StoreError> {
        let key = Self::random()?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Key(format!("cannot create {}: {e}", path.display())))?;
        f.write_all(&key.0)
            .map_err(|e| StoreError::Key(format!("cannot write {}: {e}", path.display())))?;
        Ok(key)
    }

    fn random() -> Result<StoreKey, StoreError> {
        let mut key = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(|e| StoreError::Key(format!("cannot read /dev/urandom: {e}")))?;
        Ok(StoreKey(key))
    }

    /// The key in `path`, made (0600) if there is none yet.
    pub fn load_or_create(path: &Path) -> Result<StoreKey, StoreError> {
        if let Some(k) = Self::load_file(path)? {
            return Ok(k);
        }
        let key = Self::random()?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                f.write_all(&key.0).map_err(|e| {
                    StoreError::Key(format!("cannot write {}: {e}", path.display()))
                })?;
                Ok(key)
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_file(path)?
                .ok_or_else(|| StoreError::Key(format!("{} is empty", path.display()))),
            Err(e) => Err(StoreError::Key(format!(
                "cannot create {}: {e}",
                path.display()
            ))),
        }
    }

    /// The key in `path`, if there is one.
    pub fn load_file(path: &Path) -> Result<Option<StoreKey>, StoreError> {
        match fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(Some(StoreKey(key)))
            }
            // A key being written by another process right now reads short: treat as absent.
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(_) => Err(StoreError::Key(format!(
                "{} is not a 32-byte key",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// The signature of `body` (empty only if HMAC refused the key, which it never does).
    pub fn sign(&self, body: &[u8]) -> Vec<u8> {
        match <HmacSha256 as Mac>::new_from_slice(&self.0) {
            Ok(mut mac) => {
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Constant-time check of a signature.
    pub fn verify(&self, body: &[u8], signature: &[u8]) -> bool {
        let mut mac = match <HmacSha256 as Mac>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return false,
        };
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sign_verify_and_file_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.db");
        let k = StoreKey::load_or_create(&key_path(&store)).unwrap();
        let sig = k.sign(b"blob");
        assert!(k.verify(b"blob", &sig));
        assert!(!k.verify(b"blob2", &sig));
        assert!(!k.verify(b"blob", &sig[..10]));
        let again = StoreKey::load_or_create(&key_path(&store)).unwrap();
        assert!(again.verify(b"blob", &sig));
        let mode = fs::metadata(key_path(&store)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Fleet keys: made once, never replaced, required when configured.
        let fleet = dir.path().join("fleet.key");
        let pg = StoreLocation::Postgres("postgres://h/db".into());
        assert!(writer_key(&pg, None).unwrap().is_none());
        assert!(matches!(
            writer_key(&pg, Some(&fleet)),
            Err(StoreError::Key(_))
        ));
        let made = StoreKey::create_file(&fleet).unwrap();
        assert!(StoreKey::create_file(&fleet).is_err());
        let read = reader_key(&pg, Some(&fleet)).unwrap().unwrap();
        assert!(read.verify(b"x", &made.sign(b"x")));
        let sqlite = StoreLocation::Sqlite(store.clone());
        assert!(reader_key(&sqlite, None)
            .unwrap()
            .unwrap()
            .verify(b"blob", &sig));
    }
}
