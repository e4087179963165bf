//! Loading a stored snapshot for `Rbscope::Restore` (`Rbscope::Native.snapshot_json` and
//! `snapshot_data`): the store and key as configured, the signature checked unless trusted.

use rbscope_snapshot::Snapshot;
use rbscope_store::{Store, StoreLocation};
use std::path::PathBuf;

/// The snapshot `id` of `store` (else `RBSCOPE_STORE`, else the default store), its signature
/// checked with the key of `RBSCOPE_STORE_KEY` (else `agent_key`, the running agent's) unless
/// `trust`. The error is one line that starts with "rbscope: ".
pub fn load(
    store: Option<String>,
    id: &str,
    trust: bool,
    agent_key: Option<String>,
) -> Result<Snapshot, String> {
    let fail = |m: String| format!("rbscope: {m}");
    let store = store.or_else(|| std::env::var("RBSCOPE_STORE").ok());
    let location = StoreLocation::parse(store.as_deref()).map_err(|e| fail(e.to_string()))?;
    let configured_key = std::env::var_os("RBSCOPE_STORE_KEY")
        .filter(|k| !k.is_empty())
        .map(PathBuf::from)
        .or_else(|| agent_key.map(PathBuf::from));
    let mut s = Store::open_existing(&location).map_err(|e| fail(e.to_string()))?;
    let key = if trust {
        None
    } else {
        rbscope_store::reader_key(&location, configured_key.as_deref())
            .map_err(|e| fail(e.to_string()))?
    };
    let (id, body) = s
        .get_for_restore(id, trust, key.as_ref())
        .map_err(|e| fail(e.to_string()))?;
    rbscope_snapshot::decode(&body).map_err(|e| fail(format!("snapshot {id} cannot be read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_store_says_so_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nothing-here.db");
        let err = load(Some(path.display().to_string()), "abc", true, None).unwrap_err();
        assert!(err.starts_with("rbscope: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let direct = Store::open_existing(&StoreLocation::Sqlite(path))
            .err()
            .unwrap();
        assert_eq!(err, format!("rbscope: {direct}"));
    }
}
