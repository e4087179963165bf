//! Checks every backend must pass, written once: the SQLite unit tests run them on a temporary
//! file and the fleet tests run them on a real PostgreSQL server. Each takes an empty store
//! and panics (like a test) on the first difference. Built with the `conformance` feature.

use crate::{Filter, Retention, SnapshotSummary, Store, StoreError, StoreKey};

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

fn fill(s: &mut Store) {
    for (id, t, c, fp, h) in [
        ("01A", 100, "KeyError", "KeyError@A#b", "web-1"),
        ("01B", 200, "KeyError", "KeyError@A#b", "web-2"),
        ("01C", 300, "IOError", "IOError@A#b", "web-1"),
        ("01D", 400, "KeyError", "KeyError@A#b", "web-1"),
    ] {
        s.insert(&row(id, t, c, fp, h), &[0u8; 10], None, None)
            .unwrap();
    }
}

/// Insert, get by prefix, signatures, the byte cap, retries of the same id, odd text.
pub fn insert_and_get(s: &mut Store) {
    let one = row("01AAA", 1, "E", "E@A#b", "h");
    s.insert(&one, b"one", None, None).unwrap();
    s.insert(
        &row("01AAB", 2, "E", "E@A#b", "h"),
        b"two",
        Some(b"sig"),
        None,
    )
    .unwrap();
    // The same id again (a retried batch) is skipped, not an error and not a second row.
    s.insert(&one, b"one", None, None).unwrap();
    assert_eq!(s.list(10).unwrap().len(), 2);
    assert_eq!(
        s.get_signed("01AAB").unwrap().signature,
        Some(b"sig".to_vec())
    );
    assert_eq!(s.get_signed("01AAA").unwrap().signature, None);
    assert_eq!(s.get("01aab").unwrap().1, b"two");
    assert!(matches!(s.get("01AA"), Err(StoreError::Ambiguous(_))));
    assert!(matches!(s.get("01Z"), Err(StoreError::NotFound(_))));
    assert!(matches!(s.get("'; drop"), Err(StoreError::NotFound(_))));
    assert!(matches!(
        s.insert(&row("01AAC", 3, "E", "E@A#b", "h"), b"three", None, Some(7)),
        Err(StoreError::OverCap(7))
    ));
    let st = s.stats().unwrap();
    assert_eq!((st.snapshots, st.snapshot_bytes), (2, 6));
    assert!(st.file_bytes > 0);

    // Messages with NUL, quotes and non-ASCII come back (NUL as U+FFFD where text cannot
    // hold it); the blob is untouched.
    let mut odd = row("01AAE", 5, "Ünïcode::Error", "fp'\"", "h");
    odd.message = "a\0b 'quoted' ✓".into();
    s.insert(&odd, &[0, 1, 2, 255], None, None).unwrap();
    let listed = s
        .list_filtered(&Filter {
            class: Some("Ünïcode::Error".into()),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].message.starts_with('a') && listed[0].message.ends_with("'quoted' ✓"));
    assert_eq!(s.get("01AAE").unwrap().1, [0, 1, 2, 255]);
}

/// Restore's trust rule: only snapshots signed with the key, unless trusted.
pub fn restore_trust(s: &mut Store, key: &StoreKey, other: &StoreKey) {
    let r = row("01T1", 1, "E", "E@A#b", "h");
    s.insert(&r, b"unsigned", None, None).unwrap();
    s.insert(
        &row("01T2", 2, "E", "E@A#b", "h"),
        b"signed",
        Some(&key.sign(b"signed")),
        None,
    )
    .unwrap();
    s.insert(
        &row("01T3", 3, "E", "E@A#b", "h"),
        b"forged",
        Some(&other.sign(b"forged")),
        None,
    )
    .unwrap();
    assert!(matches!(
        s.get_for_restore("01T1", false, Some(key)),
        Err(StoreError::Untrusted(_, _))
    ));
    assert_eq!(
        s.get_for_restore("01T1", true, None).unwrap().1,
        b"unsigned"
    );
    assert_eq!(
        s.get_for_restore("01T2", false, Some(key)).unwrap().1,
        b"signed"
    );
    assert!(matches!(
        s.get_for_restore("01T2", false, None),
        Err(StoreError::Untrusted(_, _))
    ));
    assert!(matches!(
        s.get_for_restore("01T3", false, Some(key)),
        Err(StoreError::Untrusted(_, _))
    ));
}

/// `list` filters and `--group`.
pub fn filters_and_groups(s: &mut Store) {
    fill(s);
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
    let hosts: Vec<_> = s
        .list_filtered(&Filter {
            host: Some("web-2".into()),
            ..Filter::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(hosts, ["01B"]);
    let g = s.groups(&Filter::default()).unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].fingerprint, "KeyError@A#b");
    assert_eq!(
        (g[0].count, g[0].first_ms, g[0].last_ms, g[0].hosts),
        (3, 100, 400, 2)
    );
    assert_eq!(g[0].last_id, "01D");
    assert_eq!(g[0].last_message, "m 01D");
    assert_eq!(g[0].exception_class, "KeyError");
    assert_eq!(g[1].count, 1);

    // Search in class, message and top frame, ignoring case; wildcards are literal.
    let found = |s: &mut Store, text: &str| -> Vec<String> {
        s.list_filtered(&Filter {
            text: Some(text.into()),
            ..Filter::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
    };
    assert_eq!(found(s, "M 01c"), ["01C"]);
    assert_eq!(found(s, "keyerr").len(), 3);
    assert_eq!(found(s, "a#B").len(), 4);
    assert!(found(s, "%").is_empty());
    assert!(found(s, "m_01").is_empty());
    // Pages.
    let page = |s: &mut Store, offset: usize| -> Vec<String> {
        s.list_filtered(&Filter {
            limit: 2,
            offset,
            ..Filter::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
    };
    assert_eq!(page(s, 0).len(), 2);
    assert_eq!([page(s, 0), page(s, 2)].concat().len(), 4);
    assert!(page(s, 4).is_empty());
    let groups = s
        .groups(&Filter {
            limit: 1,
            offset: 1,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].count, 1);
}

/// `purge` and retention.
pub fn purge_and_retention(s: &mut Store, again: &mut Store) {
    fill(s);
    assert_eq!(s.delete_id("01c").unwrap(), "01C");
    assert_eq!(s.delete_older_than(150).unwrap(), 1);
    assert_eq!(s.list(10).unwrap().len(), 2);

    fill(again);
    let r = Retention {
        max_count: Some(3),
        ..Retention::default()
    };
    assert_eq!(again.apply_retention(&r, 0).unwrap(), 1);
    let r = Retention {
        max_bytes: Some(25),
        ..Retention::default()
    };
    assert_eq!(again.apply_retention(&r, 0).unwrap(), 1);
    let left: Vec<_> = again.list(10).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left, ["01D", "01C"]);
    let r = Retention {
        max_age_ms: Some(50),
        ..Retention::default()
    };
    assert_eq!(again.apply_retention(&r, 400).unwrap(), 1);
    let f = Filter {
        fingerprint: Some("KeyError@A#b".into()),
        ..Filter::default()
    };
    assert_eq!(again.delete_matching(&f).unwrap(), 1);
    assert!(again.list(10).unwrap().is_empty());
}
