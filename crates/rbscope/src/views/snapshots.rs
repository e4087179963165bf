//! Snapshots as `rbscope list`, `show` and `ui` show them: a stored snapshot's summary, a
//! fingerprint group, the whole snapshot as a document, and the command that restores one.

use rbscope_snapshot::Take;
use rbscope_store::{Group, SnapshotSummary};
use serde_json::{json, Map, Value};

use super::time::format_ms;

/// One snapshot's list columns (`list --json`, and the UI's `/api/snapshots`).
pub fn summary_json(r: &SnapshotSummary) -> Value {
    json!({
        "id": r.id,
        "reported_at_ms": r.reported_at_ms,
        "reported_at": format_ms(r.reported_at_ms),
        "exception_class": r.exception_class,
        "message": r.message,
        "top_frame": r.top_frame,
        "fingerprint": r.fingerprint,
        "hostname": r.hostname,
        "pid": r.pid,
        "size": r.size,
    })
}

/// What every view of a group shows: the fingerprint, what it is, how often and where.
fn group_fields(g: &Group) -> Map<String, Value> {
    let v = json!({
        "fingerprint": g.fingerprint,
        "exception_class": g.exception_class,
        "top_frame": g.top_frame,
        "count": g.count,
        "last_id": g.last_id,
        "last_message": g.last_message,
        "hosts": g.hosts,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// One group as `list --group --json` prints it: first and last seen in milliseconds and as
/// text.
pub fn group_json(g: &Group) -> Value {
    let mut m = group_fields(g);
    m.insert("first_seen_ms".into(), g.first_ms.into());
    m.insert("last_seen_ms".into(), g.last_ms.into());
    m.insert("first_seen".into(), format_ms(g.first_ms).into());
    m.insert("last_seen".into(), format_ms(g.last_ms).into());
    Value::Object(m)
}

/// One group as the UI's `/api/groups` gives it (the page formats the times itself).
pub fn group_api_json(g: &Group) -> Value {
    let mut m = group_fields(g);
    m.insert("first_ms".into(), g.first_ms.into());
    m.insert("last_ms".into(), g.last_ms.into());
    Value::Object(m)
}

/// The whole snapshot (`show --json`, and the UI's `/api/snapshots/ID`): the snapshot
/// crate's document, with the report time as text and the take it belongs to (`take`: its id
/// and every thread of it with its snapshot's id, `this` marking this one's; null when it was
/// taken alone) instead of the take's raw context entries.
pub fn snapshot_json(s: &rbscope_snapshot::Snapshot) -> Value {
    let mut doc = rbscope_snapshot::json::snapshot(s);
    doc["reported_at"] = format_ms(s.reported_at_ms).into();
    if let Some(Value::Object(extra)) = doc.pointer_mut("/context/extra") {
        extra.retain(|k, _| !Take::is_entry(k));
    }
    doc["take"] = match Take::of(&s.context) {
        Some(t) => json!({
            "id": t.id,
            "threads": t.members.iter().map(|m| json!({
                "id": m.id,
                "thread": m.describe(),
                "name": m.name,
                "tid": m.tid,
                "main": m.main,
                "this": m.id == s.id,
            })).collect::<Vec<_>>(),
        }),
        None => Value::Null,
    };
    doc
}

/// Marks each other thread of the document's take with whether its snapshot is in the store
/// (`"stored"`): `is_stored` answers for one id, None when the store cannot tell (left
/// unmarked). A take's snapshot may never have been stored (its thread ended first, a full
/// queue) or may have been purged since.
pub fn mark_take_stored(doc: &mut Value, mut is_stored: impl FnMut(&str) -> Option<bool>) {
    let Some(Value::Array(threads)) = doc.pointer_mut("/take/threads") else {
        return;
    };
    for t in threads.iter_mut() {
        if t["this"] == true {
            continue;
        }
        let answer = t["id"].as_str().and_then(&mut is_stored);
        if let (Some(stored), Value::Object(m)) = (answer, t) {
            m.insert("stored".into(), stored.into());
        }
    }
}

/// `rbscope restore ID` against a given store and key, quoted for a POSIX shell. `store` is
/// what to print for the store: never a URL with its password in it.
pub fn restore_command(id: &str, store: Option<&str>, key: Option<&str>) -> String {
    let mut cmd = format!("rbscope restore {id}");
    if let Some(store) = store {
        cmd += &format!(" --store {}", shell_quote(store));
    }
    if let Some(key) = key {
        cmd += &format!(" --key {}", shell_quote(key));
    }
    cmd
}

/// Single-quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:@=+,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Group {
        Group {
            fingerprint: "fp1".into(),
            exception_class: "KeyError".into(),
            top_frame: "Object#a()".into(),
            count: 3,
            first_ms: 0,
            last_ms: 1_709_211_909_000,
            last_id: "01ABC".into(),
            last_message: "key not found".into(),
            hosts: 2,
        }
    }

    #[test]
    fn the_two_group_views_differ_only_in_how_they_give_times() {
        let g = group();
        let cli = group_json(&g);
        let api = group_api_json(&g);
        assert_eq!(cli["first_seen"], "1970-01-01 00:00:00 UTC");
        assert_eq!(cli["last_seen"], "2024-02-29 13:05:09 UTC");
        assert_eq!(cli["last_seen_ms"], 1_709_211_909_000i64);
        assert_eq!(api["last_ms"], 1_709_211_909_000i64);
        assert!(api.get("last_seen").is_none());
        for k in [
            "fingerprint",
            "exception_class",
            "top_frame",
            "count",
            "last_id",
            "last_message",
            "hosts",
        ] {
            assert_eq!(cli[k], api[k], "{k}");
            assert!(!cli[k].is_null(), "{k}");
        }
        assert_eq!(cli.as_object().unwrap().len(), 11);
        assert_eq!(api.as_object().unwrap().len(), 9);
    }

    #[test]
    fn restore_commands_quote_what_the_shell_would_split() {
        assert_eq!(restore_command("01A", None, None), "rbscope restore 01A");
        assert_eq!(
            restore_command("01A", Some("/tmp/my store.db"), Some("k.key")),
            "rbscope restore 01A --store '/tmp/my store.db' --key k.key"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn a_take_replaces_its_context_entries_and_marks_this_snapshot() {
        let take = Take {
            id: "T1".into(),
            members: ["A", "B"]
                .iter()
                .zip([Some("alpha"), None])
                .map(|(id, name)| rbscope_snapshot::TakeMember {
                    id: id.to_string(),
                    name: name.map(Into::into),
                    tid: Some(7),
                    main: name.is_none(),
                })
                .collect(),
        };
        let mut s = rbscope_snapshot::Snapshot {
            id: "B".into(),
            reported_at_ms: 0,
            fingerprint: String::new(),
            exception: rbscope_snapshot::ExceptionInfo {
                class_name: "(live)".into(),
                message: String::new(),
                backtrace: vec![],
                causes: vec![],
            },
            frames: vec![],
            objects: vec![],
            context: Default::default(),
            stats: Default::default(),
            extras: Default::default(),
        };
        s.context.extra = vec![("ticket".into(), "T-1".into())];
        s.context.extra.extend(take.context_entries());
        let doc = snapshot_json(&s);
        assert_eq!(doc["context"]["extra"], json!({"ticket": "T-1"}));
        assert_eq!(doc["take"]["id"], "T1");
        let threads = doc["take"]["threads"].as_array().unwrap();
        assert_eq!(threads.len(), 2);
        assert_eq!(threads[0]["thread"], "alpha (tid 7)");
        assert_eq!(threads[0]["this"], false);
        assert_eq!(threads[1]["thread"], "main (tid 7)");
        assert_eq!(threads[1]["this"], true);
        let mut marked = doc.clone();
        mark_take_stored(&mut marked, |id| (id == "A").then_some(false));
        assert_eq!(marked["take"]["threads"][0]["stored"], false);
        assert!(marked["take"]["threads"][1].get("stored").is_none());
        s.context.extra.truncate(1);
        assert!(snapshot_json(&s)["take"].is_null());
    }
}
