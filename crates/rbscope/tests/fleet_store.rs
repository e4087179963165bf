//! The PostgreSQL fleet store against a real server: the same backend checks the SQLite store
//! passes, schema creation and migration, concurrent first connections, and what the CLI says
//! when the server is down or the URL is wrong.

mod common;

use common::pg::Postgres;
use common::Sandbox;
use rbscope_store::{conformance, Store, StoreError, StoreKey, StoreLocation};

fn store(url: &str) -> Store {
    Store::open_or_create(&StoreLocation::Postgres(url.to_string())).unwrap()
}

#[test]
fn passes_the_backend_checks() {
    let pg = Postgres::start();
    conformance::insert_and_get(&mut store(&pg.database("a")));
    conformance::filters_and_groups(&mut store(&pg.database("b")));
    conformance::purge_and_retention(&mut store(&pg.database("c")), &mut store(&pg.database("d")));
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::create_file(&dir.path().join("k1")).unwrap();
    let other = StoreKey::create_file(&dir.path().join("k2")).unwrap();
    conformance::restore_trust(&mut store(&pg.database("e")), &key, &other);
}

#[test]
fn schema_is_created_once_by_a_fleet_starting_together_and_refuses_newer() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let loc = StoreLocation::Postgres(url.clone());
    // Nothing there yet: readers say so instead of creating tables.
    assert!(matches!(
        Store::open_existing(&loc),
        Err(StoreError::Missing(_))
    ));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let loc = loc.clone();
            std::thread::spawn(move || Store::open_or_create(&loc).map(|_| ()))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let mut c = pg.client("fleet");
    let version: String = c
        .query_one(
            "SELECT value FROM rbscope_meta WHERE key = 'schema_version'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, "1");
    let collation: String = c
        .query_one(
            "SELECT collation_name FROM information_schema.columns
             WHERE table_name = 'rbscope_snapshots' AND column_name = 'id'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(collation, "C");
    c.execute(
        "UPDATE rbscope_meta SET value = '7' WHERE key = 'schema_version'",
        &[],
    )
    .unwrap();
    match Store::open_existing(&loc) {
        Err(e @ StoreError::NewerSchema(_, 7)) => {
            assert!(e.to_string().contains("upgrade rbscope"), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a store with a newer schema"),
    }
}

#[test]
fn cli_says_what_is_wrong_with_a_postgres_store() {
    let pg = Postgres::start();
    let sb = Sandbox::new();
    let run = |store: &str, args: &[&str]| {
        let out = sb
            .cli()
            .env("RBSCOPE_STORE", store)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // An empty database: nothing stored yet, not an error.
    let empty = pg.database("empty");
    let (code, out, _) = run(&empty, &["list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("No snapshots yet"), "{out}");

    // A server that is not there: one line, naming the place without the password.
    let port = common::free_port();
    let down = format!("postgres://rbscope:hunter2@127.0.0.1:{port}/x");
    let (code, _, err) = run(&down, &["show", "01ABC"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("rbscope: cannot open the store at postgres://rbscope:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // A database that does not exist: the server's own reason.
    let (code, _, err) = run(&pg.url("no_such_db"), &["list"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no_such_db") && err.contains("does not exist"),
        "{err}"
    );

    // doctor reports the store and its size.
    let mut s = store(&empty);
    let summary = rbscope_store::SnapshotSummary {
        id: "01DOCTOR".into(),
        reported_at_ms: 1,
        exception_class: "E".into(),
        message: "m".into(),
        top_frame: "A#b".into(),
        fingerprint: "E@A#b".into(),
        hostname: "h".into(),
        pid: 1,
        size: 0,
    };
    s.insert(&summary, b"body", None, None).unwrap();
    let (code, out, _) = run(&empty, &["doctor"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("(1 snapshots, 4 bytes of snapshots, table"),
        "{out}"
    );

    // The same store over the server's Unix socket.
    let (code, out, err) = run(&pg.socket_url("empty"), &["list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("01DOCTOR"), "{out}");
}
