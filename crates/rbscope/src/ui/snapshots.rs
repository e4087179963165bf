//! The snapshot API: groups, lists and one snapshot, from the store `rbscope ui` was pointed
//! at. The store is opened on first use and again after a failure, so a PostgreSQL server that
//! restarts comes back without restarting the UI; while it is unreachable, the API says so
//! (503) and the pages show that line.

use std::path::PathBuf;
use std::sync::Mutex;

use rbscope_store::{Filter, Store, StoreError, StoreLocation};
use serde_json::{json, Value};

use super::http::{Query, Reply};
use crate::views::records;
use crate::views::snapshots::{self, shell_quote};

pub struct Snapshots {
    pub location: StoreLocation,
    /// `--store` as given (for the restore command), `--key` as given.
    pub store_arg: Option<String>,
    pub key_file: Option<PathBuf>,
    store: Mutex<Option<Store>>,
}

/// Most rows one request returns.
const MAX_PAGE: usize = 500;

impl Snapshots {
    pub fn new(
        location: StoreLocation,
        store_arg: Option<String>,
        key_file: Option<PathBuf>,
    ) -> Self {
        Snapshots {
            location,
            store_arg,
            key_file,
            store: Mutex::new(None),
        }
    }

    /// Runs `f` on the store (opened if needed). A store that does not exist yet is `Ok(None)`:
    /// nothing was ever stored, which is not an error for a list.
    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|s| s.is_broken()) {
            match Store::open_existing(&self.location) {
                Ok(s) => *guard = Some(s),
                Err(StoreError::Missing(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let Some(store) = guard.as_mut() else {
            return Ok(None);
        };
        let result = f(store);
        if let Err(e) = &result {
            if !matches!(e, StoreError::NotFound(_) | StoreError::Ambiguous(_)) {
                // Open it afresh next time (a dropped connection, a replaced file).
                *guard = None;
            }
        }
        result.map(Some)
    }

    /// For `/api/info`: the number of snapshots, or why the store cannot be read.
    pub fn count(&self) -> Result<u64, String> {
        match self.with_store(|s| s.stats()) {
            Ok(Some(st)) => Ok(st.snapshots),
            Ok(None) => Ok(0),
            Err(e) => Err(store_message(&e, &self.location)),
        }
    }

    fn filter(&self, q: &Query) -> Result<Filter, Reply> {
        let since_ms = match q.get("since") {
            None => None,
            Some(s) if s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<i64>().ok()
            }
            Some(s) => Some(
                crate::views::time::now_ms()
                    - crate::duration::parse_ms(s).map_err(|e| {
                        Reply::error(400, format!("since={s:?}: {e} (use e.g. 30m, 6h, 2d)"))
                    })?,
            ),
        };
        Ok(Filter {
            since_ms,
            class: q.get("class").map(str::to_string),
            host: q.get("host").map(str::to_string),
            fingerprint: q.get("fingerprint").map(str::to_string),
            text: q.get("q").map(str::to_string),
            // One more than asked for, to know whether there are more.
            limit: q.number("limit", 50, MAX_PAGE)?.max(1) + 1,
            offset: q.number("offset", 0, usize::MAX)?,
        })
    }

    /// `GET /api/groups`.
    pub fn groups(&self, q: &Query) -> Reply {
        self.page(q, "groups", |s, f| s.groups(f), snapshots::group_api_json)
    }

    /// `GET /api/snapshots`.
    pub fn list(&self, q: &Query) -> Reply {
        self.page(
            q,
            "snapshots",
            |s, f| s.list_filtered(f),
            snapshots::summary_json,
        )
    }

    /// One page of rows under `key`, and whether there are more: the filter asks the store for
    /// one row more than the page holds.
    fn page<T>(
        &self,
        q: &Query,
        key: &str,
        fetch: impl FnOnce(&mut Store, &Filter) -> Result<Vec<T>, StoreError>,
        to_json: impl Fn(&T) -> Value,
    ) -> Reply {
        let filter = match self.filter(q) {
            Ok(f) => f,
            Err(r) => return r,
        };
        match self.with_store(|s| fetch(s, &filter)) {
            Ok(rows) => {
                let mut rows = rows.unwrap_or_default();
                let more = rows.len() >= filter.limit;
                rows.truncate(filter.limit - 1);
                let mut out = serde_json::Map::new();
                out.insert(key.into(), rows.iter().map(to_json).collect());
                out.insert("more".into(), more.into());
                Reply::ok(&Value::Object(out))
            }
            Err(e) => self.store_error(&e),
        }
    }

    /// Whether a snapshot page exists (for the page's HTTP status): None when the store cannot
    /// tell.
    pub fn exists(&self, id: &str) -> Option<bool> {
        match self.with_store(|s| s.get_signed(id)) {
            Ok(Some(_)) => Some(true),
            Ok(None) | Err(StoreError::NotFound(_)) => Some(false),
            Err(_) => None,
        }
    }

    /// `GET /api/snapshots/ID`.
    pub fn one(&self, id: &str) -> Reply {
        let stored = match self.with_store(|s| s.get_signed(id)) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Reply::error(404, format!("no snapshot with id {id}: the store is empty"))
            }
            Err(e) => return self.store_error(&e),
        };
        let snapshot = match rbscope_snapshot::decode(&stored.body) {
            Ok(s) => s,
            Err(e) => {
                return Reply::json(
                    422,
                    &json!({
                        "error": format!("snapshot {} cannot be read: {e}. It is damaged or was written by a newer rbscope; it can only be deleted (`rbscope purge --id {}`)", stored.id, stored.id),
                        "id": stored.id,
                    }),
                )
            }
        };
        let mut doc = snapshots::snapshot_json(&snapshot);
        snapshots::mark_take_stored(&mut doc, |id| self.exists(id));
        // Records and parameters as their attributes and entries, for the value tree.
        doc["views"] = records::views_json(&snapshot);
        doc["signed"] = stored.signature.is_some().into();
        doc["signature_ok"] = self.signature_ok(&stored.body, stored.signature.as_deref());
        doc["restore_command"] = self
            .restore_command(&snapshot, stored.signature.is_some())
            .into();
        Reply::ok(&doc)
    }

    /// Whether the signature verifies with the store's key (null when there is no key here).
    fn signature_ok(&self, body: &[u8], signature: Option<&[u8]>) -> Value {
        let Some(sig) = signature else {
            return Value::Bool(false);
        };
        match rbscope_store::reader_key(&self.location, self.key_file.as_deref()) {
            Ok(Some(key)) => Value::Bool(key.verify(body, sig)),
            _ => Value::Null,
        }
    }

    /// The command that opens this snapshot in IRB: from the app's directory when it is a
    /// Rails app (so its classes load), against the same store, `--trust` never added for the
    /// user.
    fn restore_command(&self, s: &rbscope_snapshot::Snapshot, signed: bool) -> String {
        let rails = s
            .context
            .gems
            .iter()
            .any(|(g, _)| g == "rails" || g == "railties");
        let mut cmd = String::new();
        if rails && !s.context.app_root.is_empty() {
            cmd += &format!("cd {} && ", shell_quote(&s.context.app_root));
        }
        let store = self
            .store_arg
            .as_deref()
            .map(|s| self.location_for_command(s));
        let key = self.key_file.as_ref().map(|k| k.display().to_string());
        cmd += &snapshots::restore_command(&s.id, store.as_deref(), key.as_deref());
        if rails {
            cmd += " -r ./config/environment";
        }
        if !signed {
            cmd += "  # unsigned: restore refuses it unless you add --trust";
        }
        cmd
    }

    fn location_for_command(&self, given: &str) -> String {
        match &self.location {
            // Never print a password: PGPASSWORD or ~/.pgpass supply it.
            StoreLocation::Postgres(_) => self.location.describe(),
            StoreLocation::Sqlite(_) => given.to_string(),
        }
    }

    fn store_error(&self, e: &StoreError) -> Reply {
        match e {
            StoreError::NotFound(_) => Reply::error(404, e.to_string()),
            StoreError::Ambiguous(_) => Reply::error(400, e.to_string()),
            _ => Reply::error(503, store_message(e, &self.location)),
        }
    }
}

fn store_message(e: &StoreError, location: &StoreLocation) -> String {
    format!(
        "the store at {} cannot be read: {e}. Check that it is reachable, then reload this page",
        location.describe()
    )
}
