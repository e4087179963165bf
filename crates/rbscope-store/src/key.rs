//! The per-store signing key.
//!
//! Restoring a snapshot rebuilds objects of the app's classes from stored data, so a store that
//! others can write to is an attack surface (like `Marshal.load`). Every snapshot is signed
//! with HMAC-SHA256 under a key kept beside the store (`<store>.key`, 0600, 32 random bytes,
//! made by the first writer); restore refuses a snapshot whose signature is missing or wrong
//! unless told to trust it.

use crate::StoreError;
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

impl StoreKey {
    /// The store's key, made (0600) if there is none yet.
    pub fn load_or_create(store: &Path) -> Result<StoreKey, StoreError> {
        if let Some(k) = Self::load(store)? {
            return Ok(k);
        }
        let path = key_path(store);
        let mut key = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(|e| StoreError::Key(format!("cannot read /dev/urandom: {e}")))?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(&key).map_err(|e| {
                    StoreError::Key(format!("cannot write {}: {e}", path.display()))
                })?;
                Ok(StoreKey(key))
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(store)?
                .ok_or_else(|| StoreError::Key(format!("{} is empty", path.display()))),
            Err(e) => Err(StoreError::Key(format!(
                "cannot create {}: {e}",
                path.display()
            ))),
        }
    }

    /// The store's key, if it has one.
    pub fn load(store: &Path) -> Result<Option<StoreKey>, StoreError> {
        let path = key_path(store);
        match fs::read(&path) {
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
        let k = StoreKey::load_or_create(&store).unwrap();
        let sig = k.sign(b"blob");
        assert!(k.verify(b"blob", &sig));
        assert!(!k.verify(b"blob2", &sig));
        assert!(!k.verify(b"blob", &sig[..10]));
        let again = StoreKey::load_or_create(&store).unwrap();
        assert!(again.verify(b"blob", &sig));
        let mode = fs::metadata(key_path(&store)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
