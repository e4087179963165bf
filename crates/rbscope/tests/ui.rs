//! `rbscope ui`: the JSON API on real data (snapshots a real Ruby program reported, a trace and
//! a profile recorded from real processes, heap dumps of a leaking process), its access rules,
//! bad input, and the pages in a real headless Chromium (tests/browser/ui_e2e.py, driven by
//! Playwright), which saves screenshots under target/ui-test/screenshots.

mod common;
use common::*;
use serde_json::Value as J;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Everything the pages show, made once for all tests of this file.
struct Fixture {
    dir: PathBuf,
    store: PathBuf,
    /// A copy of the store in which one snapshot's blob is garbage.
    broken_store: PathBuf,
    broken_id: String,
    heaps: [PathBuf; 3],
    trace_jsonl: PathBuf,
    trace_chrome: PathBuf,
    profile: PathBuf,
    saved_top: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(make_fixture)
}

fn make_fixture() -> Fixture {
    let dir = repo_root().join("target/ui-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::create_dir_all(dir.join("screenshots")).unwrap();
    let app = repo_root().join("crates/rbscope/tests/programs/ui_app.rb");
    let store = dir.join("store.db");
    // The shop under `rbscope run --firehose`: its snapshots, and a trace of every call from
    // its first line, in both formats the UI reads (the second run into a store of its own).
    let traced = |format: &str, store: &Path| -> PathBuf {
        let out_file = dir.join(format!("trace.{format}"));
        let out = Command::new(cli())
            .args(["run", "-f", "--format", format, "-o"])
            .arg(&out_file)
            .args(["--", "ruby"])
            .arg(&app)
            .env("RBSCOPE_STORE", store)
            .env("RBSCOPE_RUBY_LIB", gem_lib())
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env_remove("RUBYOPT")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out_file
    };
    let trace_jsonl = traced("jsonl", &store);
    let trace_chrome = traced("chrome", &dir.join("other-store.db"));

    // The same store with the oldest payment snapshot's blob overwritten.
    let broken_store = dir.join("broken.db");
    // (The store is in WAL mode: VACUUM INTO copies what is in the log too.)
    rusqlite::Connection::open(&store)
        .unwrap()
        .execute("VACUUM INTO ?1", [broken_store.to_str().unwrap()])
        .unwrap();
    std::fs::copy(
        store.with_extension("db.key"),
        broken_store.with_extension("db.key"),
    )
    .unwrap();
    let db = rusqlite::Connection::open(&broken_store).unwrap();
    let broken_id: String = db
        .query_row(
            "SELECT id FROM rbscope_snapshots WHERE exception_class = 'Shop::PaymentError' ORDER BY reported_at_ms, id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute(
        "UPDATE rbscope_snapshots SET body = x'52425300ffff00' WHERE id = ?1",
        [&broken_id],
    )
    .unwrap();
    drop(db);

    // Three dumps of a process that leaks 3,000 entries per round.
    write_leak_dumps(&dir, 3000);
    let heaps = [dir.join("1.json"), dir.join("2.json"), dir.join("3.json")];

    // A saved analysis: `heap top --json` of the last dump.
    let out = Command::new(cli())
        .args(["heap", "top", "--json", "--depth", "2"])
        .arg(&heaps[2])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let saved_top = dir.join("top.json");
    std::fs::write(&saved_top, &out.stdout).unwrap();

    // A one-second profile of a busy process.
    let sb = Sandbox::new();
    let script = sb.write(
        "burn.rb",
        "class Burner\n  def burn = (1..2000).reduce(:+)\nend\n$stdout.sync = true\nputs \"ready\"\nb = Burner.new\nloop { b.burn }\n",
    );
    let p = Running::start(sb, &script, &[], "ready");
    let profile = dir.join("profile.json");
    let out = Command::new(cli())
        .args([
            "record",
            "-p",
            &p.pid(),
            "--duration",
            "1s",
            "--format",
            "speedscope",
            "-o",
        ])
        .arg(&profile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    drop(p);

    Fixture {
        dir,
        store,
        broken_store,
        broken_id,
        heaps,
        trace_jsonl,
        trace_chrome,
        profile,
        saved_top,
    }
}

/// A store holding the snapshot of tests/programs/ui_rails_app.rb (Debian's Rails 6.1, so
/// only on Ruby 3.1: None elsewhere) and that snapshot's id.
fn rails_fixture() -> Option<&'static (PathBuf, String)> {
    static F: OnceLock<Option<(PathBuf, String)>> = OnceLock::new();
    F.get_or_init(|| {
        if !debian_gems_available("Rails 6.1 (ActiveRecord, ActionPack, sqlite3)") {
            return None;
        }
        let dir = repo_root().join("target/ui-test-rails");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let store = dir.join("store.db");
        let out = Command::new(cli())
            .args(["run", "--", "ruby"])
            .arg(repo_root().join("crates/rbscope/tests/programs/ui_rails_app.rb"))
            .env("RBSCOPE_STORE", &store)
            .env("RBSCOPE_RUBY_LIB", gem_lib())
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env_remove("RUBYOPT")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let list = cli_json(&["list", "--json", "--store"], &store);
        let id = list[0]["id"].as_str().unwrap().to_string();
        Some((store, id))
    })
    .as_ref()
}

/// A record and parameters come with their view: the attributes (the redacted one marked) and
/// the entries, as `show` prints them; the objects themselves stay in the arena.
#[test]
fn records_and_parameters_api() {
    let Some((store, id)) = rails_fixture() else {
        return;
    };
    let ui = Ui::start(store, &[], &[]);
    let snap = ui.get(&format!("/api/snapshots/{id}")).json();
    let locals = snap["frames"][0]["locals"].as_array().unwrap();
    let local = |name: &str| {
        let v = &locals.iter().find(|l| l["name"] == name).unwrap()["value"];
        assert_eq!(v["type"], "ref", "{name}: {v}");
        v["id"].as_u64().unwrap().to_string()
    };
    let string = |v: &J| {
        assert_eq!(v["type"], "ref", "{v}");
        snap["objects"][v["id"].as_u64().unwrap() as usize]["value"].clone()
    };
    let user = &snap["views"][local("user")];
    assert_eq!(user["kind"], "record", "{user}");
    assert_eq!(user["head"], "#<User> (4 attributes)");
    let attrs = user["attributes"].as_array().unwrap();
    let names: Vec<&str> = attrs.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "name", "password_digest", "age"]);
    assert_eq!(
        attrs[0]["value"],
        serde_json::json!({"type": "integer", "value": 1})
    );
    assert_eq!(string(&attrs[1]["value"]), "ada");
    assert_eq!(attrs[2]["value"]["type"], "redacted");
    assert_eq!(attrs[3]["value"]["value"], 36);
    // The record itself is still there as captured (restore reads it).
    let raw = &snap["objects"][local("user").parse::<usize>().unwrap()];
    assert!(raw["ivars"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "@attributes"));

    let fresh = &snap["views"][local("fresh")];
    assert_eq!(fresh["flags"], serde_json::json!(["new record"]));
    assert_eq!(string(&fresh["attributes"][1]["value"]), "bob");

    let params = &snap["views"][local("params")];
    assert_eq!(params["kind"], "parameters", "{params}");
    assert_eq!(params["permitted"], false);
    let hash = &snap["objects"][params["parameters"]["id"].as_u64().unwrap() as usize];
    assert_eq!(hash["class"], "ActiveSupport::HashWithIndifferentAccess");
    assert_eq!(hash["length"], 2);

    // `show --json` stays the arena alone.
    let shown = Command::new(cli())
        .args(["show", id, "--json"])
        .env("RBSCOPE_STORE", store)
        .output()
        .unwrap();
    let shown: J = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(shown.get("views").is_none());
}

fn cli_json(args: &[&str], file: &Path) -> J {
    let out = Command::new(cli()).args(args).arg(file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn snapshots_api() {
    let f = fixture();
    let ui = Ui::start(&f.store, &[], &[]);
    let info = ui.get("/api/info").json();
    assert_eq!(info["store_ok"], true);
    assert_eq!(info["snapshots"], 4);

    // Grouped like an error tracker: 3 payments from one place, 1 config error.
    let g = ui.get("/api/groups").json();
    let groups = g["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{g}");
    let pay = groups
        .iter()
        .find(|g| g["exception_class"] == "Shop::PaymentError")
        .unwrap();
    assert_eq!(pay["count"], 3);
    assert_eq!(
        pay["top_frame"],
        "Shop::Checkout#charge(order, card_token:)"
    );
    let cfg = groups
        .iter()
        .find(|g| g["exception_class"] == "ArgumentError")
        .unwrap();
    assert_eq!(cfg["count"], 1);

    // Search, filters, pages.
    let found = ui.get("/api/snapshots?q=CONFIG+is").json();
    assert_eq!(found["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(found["snapshots"][0]["exception_class"], "ArgumentError");
    let by_class = ui.get("/api/snapshots?class=Shop::PaymentError").json();
    assert_eq!(by_class["snapshots"].as_array().unwrap().len(), 3);
    let fp = pay["fingerprint"].as_str().unwrap();
    let by_fp = ui
        .get(&format!(
            "/api/snapshots?fingerprint={}",
            fp.replace('#', "%23").replace(' ', "%20")
        ))
        .json();
    assert_eq!(by_fp["snapshots"].as_array().unwrap().len(), 3, "{by_fp}");
    let p1 = ui.get("/api/snapshots?limit=3").json();
    let p2 = ui.get("/api/snapshots?limit=3&offset=3").json();
    assert_eq!(p1["snapshots"].as_array().unwrap().len(), 3);
    assert_eq!(p1["more"], true);
    assert_eq!(p2["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(p2["more"], false);
    assert_eq!(
        ui.get("/api/snapshots?since=1h").json()["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(ui.get("/api/snapshots?since=soon").status, 400);
    assert_eq!(ui.get("/api/snapshots?limit=x").status, 400);

    // One snapshot: what `rbscope show --json` prints, plus the restore command.
    let id = pay["last_id"].as_str().unwrap();
    let r = ui.get(&format!("/api/snapshots/{id}"));
    assert_eq!(r.status, 200);
    let s = r.json();
    let out = Command::new(cli())
        .args(["show", "--json", id])
        .env("RBSCOPE_STORE", &f.store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["frames"], shown["frames"]);
    assert_eq!(s["objects"], shown["objects"]);
    assert_eq!(s["exception"], shown["exception"]);
    assert_eq!(s["signed"], true);
    assert_eq!(s["signature_ok"], true);
    assert_eq!(
        s["restore_command"],
        format!("rbscope restore {id} --store {}", f.store.display())
    );
    // A prefix works, like on the command line.
    assert_eq!(
        ui.get(&format!("/api/snapshots/{}", &id[..20])).json()["id"],
        id
    );

    // Unknown ids: 404 from the API and for the page.
    let r = ui.get("/api/snapshots/01NOSUCHSNAPSHOT");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("no snapshot with id"));
    assert_eq!(ui.get("/snapshots/01NOSUCHSNAPSHOT").status, 404);
    assert_eq!(ui.get(&format!("/snapshots/{id}")).status, 200);
    assert_eq!(ui.get("/api/snapshots/../../etc/passwd").status, 404);
}

/// A snapshot the store cannot decode, and a store that cannot be reached.
#[test]
fn broken_snapshot_and_unreachable_store() {
    let f = fixture();
    let ui = Ui::start(&f.broken_store, &[], &[]);
    let r = ui.get(&format!("/api/snapshots/{}", f.broken_id));
    assert_eq!(r.status, 422, "{}", r.body);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("cannot be read") && msg.contains(&f.broken_id),
        "{msg}"
    );
    // The others still read, and the list shows all four.
    assert_eq!(
        ui.get("/api/snapshots").json()["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Nothing listens on port 1: every store call says so, in one line, with 503.
    let url = "postgres://rbscope@127.0.0.1:1/rbscope";
    let ui = Ui::start(Path::new(url), &[], &[]);
    let info = ui.get("/api/info").json();
    assert_eq!(info["store_ok"], false);
    for path in ["/api/groups", "/api/snapshots", "/api/snapshots/01ABC"] {
        let r = ui.get(path);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains("127.0.0.1:1") && !e.contains('\n'), "{e}");
    }
    // The pages are still served (they show the error).
    assert_eq!(ui.get("/snapshots").status, 200);
}

#[test]
fn heap_api_agrees_with_the_cli() {
    let f = fixture();
    let [h1, h2, h3] = &f.heaps;
    let ui = Ui::start(&f.store, &[], &[h3.as_path(), h1, h2, &f.saved_top]);
    let info = ui.get("/api/info").json();
    let kinds: Vec<&str> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["heap", "heap", "heap", "saved-top"]);
    assert_eq!(info["files"][0]["state"], "waiting");

    // The first request starts the analysis and answers 202 until it is done.
    let first = ui.get("/api/heap/f1/top");
    assert!(first.status == 202 || first.status == 200, "{}", first.body);
    let top = ui.ready("/api/heap/f1/top?depth=2&limit=20").json();
    let cli_top = cli_json(&["heap", "top", "--json", "--depth", "2", "-n", "20"], h3);
    assert_eq!(
        top["tree"].as_array().unwrap().len(),
        cli_top["tree"].as_array().unwrap().len()
    );
    for (a, b) in top["tree"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cli_top["tree"].as_array().unwrap())
    {
        for k in [
            "address",
            "class",
            "retained",
            "retained_objects",
            "depth",
            "info",
        ] {
            assert_eq!(a[k], b[k], "{k}: {a} vs {b}");
        }
    }
    assert_eq!(top["by_class"], cli_top["by_class"]);
    assert_eq!(top["reachable"], cli_top["reachable"]);

    // Drill down to the leaking array: it retains 1 + 4 x 6,000 objects (entries, their
    // payloads and ivar tables are not separate on 3.1: entry + payload string per item),
    // the same as the CLI says.
    let array = top["tree"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["class"] == "Array" && n["info"].as_str().unwrap_or("").contains("6000"))
        .unwrap_or_else(|| panic!("no Array of 6000 in {top}"));
    let addr = array["address"].as_str().unwrap();
    let from = ui
        .get(&format!("/api/heap/f1/top?from={addr}&limit=5"))
        .json();
    let cli_from = cli_json(&["heap", "top", "--json", "-n", "5", "--from", addr], h3);
    assert_eq!(from["from"]["retained"], cli_from["from"]["retained"]);
    assert_eq!(
        from["from"]["retained_objects"],
        cli_from["from"]["retained_objects"]
    );
    assert_eq!(from["tree"][0]["class"], "Leak::Entry");
    assert_eq!(from["from"]["dominators"], cli_from["from"]["dominators"]);

    // Why an entry is alive: the same paths as `heap path`.
    let entry = from["tree"][0]["address"].as_str().unwrap();
    let path = ui.get(&format!("/api/heap/f1/path?address={entry}")).json();
    let out = Command::new(cli())
        .args(["heap", "path", "--json"])
        .arg(h3)
        .arg(entry)
        .output()
        .unwrap();
    let cli_path: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(path["paths"], cli_path["paths"]);
    assert_eq!(path["reachable"], true);

    // Summary as `heap summary --json`.
    let summary = ui.ready("/api/heap/f1/summary").json();
    let cli_summary = cli_json(&["heap", "summary", "--json", "-n", "50"], h3);
    assert_eq!(summary["by_class"], cli_summary["by_class"]);
    assert_eq!(summary["total"], cli_summary["total"]);

    // Diff of the three dumps, in file order 1, 2, 3 = f2, f3, f1.
    let diff = ui.ready("/api/diff?files=f2,f3,f1").json();
    let cli_diff = {
        let out = Command::new(cli())
            .args(["heap", "diff", "--json"])
            .args([h1, h2, h3])
            .output()
            .unwrap();
        serde_json::from_slice::<J>(&out.stdout).unwrap()
    };
    assert_eq!(diff["groups"], cli_diff["groups"]);
    assert!(diff["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["class"] == "Leak::Entry"));

    // The saved analysis comes back as it was written, with its kind.
    let saved = ui.get("/api/saved/f4").json();
    assert_eq!(saved["kind"], "top");
    assert_eq!(
        saved["tree"],
        cli_json(&["heap", "top", "--json", "--depth", "2"], h3)["tree"]
    );

    // Bad input.
    assert_eq!(ui.get("/api/heap/f9/top").status, 404);
    assert_eq!(ui.get("/heap/f9").status, 404);
    assert_eq!(
        ui.get("/heap/f4").status,
        404,
        "a saved analysis is not a heap page"
    );
    assert_eq!(ui.get("/api/heap/f1/top?from=0x1").status, 404);
    assert_eq!(ui.get("/api/heap/f1/top?from=nope").status, 400);
    assert_eq!(ui.get("/api/heap/f1/path").status, 400);
    assert_eq!(ui.get("/api/diff?files=f1").status, 400);
    assert_eq!(ui.get("/api/diff?files=f1,f4").status, 400);
    assert_eq!(ui.get("/api/heap/f4/top").status, 404);
}

#[test]
fn traces_profiles_and_bad_files() {
    let f = fixture();
    let garbage = f.dir.join("garbage.json");
    std::fs::write(&garbage, b"\x00\x01binary\xff").unwrap();
    let text_trace = f.dir.join("trace.txt");
    std::fs::write(
        &text_trace,
        "Shop::Pricing#total(order=#<Shop::Order>) <12.0\u{b5}s>\n",
    )
    .unwrap();
    let ui = Ui::start(
        &f.store,
        &[],
        &[
            &f.trace_jsonl,
            &f.trace_chrome,
            &f.profile,
            &garbage,
            &text_trace,
        ],
    );
    for id in ["f1", "f2"] {
        let t = ui.get(&format!("/api/traces/{id}")).json();
        let names = t["names"].as_array().unwrap();
        let threads = t["threads"].as_array().unwrap();
        let thread_names: Vec<&str> = threads
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(
            thread_names.contains(&"main") && thread_names.contains(&"pricing-worker"),
            "{thread_names:?}"
        );
        let total_idx = names
            .iter()
            .position(|n| n == "Shop::Pricing#total")
            .unwrap();
        let worker = threads
            .iter()
            .find(|t| t["name"] == "pricing-worker")
            .unwrap();
        let totals = worker["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s[3] == total_idx)
            .count();
        assert_eq!(totals, 200, "{id}");
        // Sorted by start, each inside the trace.
        let spans = worker["spans"].as_array().unwrap();
        assert!(spans
            .windows(2)
            .all(|w| w[0][0].as_u64() <= w[1][0].as_u64()));
        let end = t["end_ns"].as_u64().unwrap();
        assert!(spans
            .iter()
            .all(|s| s[0].as_u64().unwrap() + s[1].as_u64().unwrap() <= end));
        assert_eq!(t["lost"], 0);
    }
    let p = ui.get("/api/profiles/f3").json();
    assert_eq!(p["unit"], "seconds");
    let text = p.to_string();
    assert!(text.contains("Burner#burn"), "{text}");
    assert!(p["total"].as_f64().unwrap() > 0.5);

    // Files that are not what the UI reads: listed with the reason, 404 for their pages.
    let info = ui.get("/api/info").json();
    assert_eq!(info["files"][3]["kind"], "unknown");
    assert!(info["files"][3]["error"]
        .as_str()
        .unwrap()
        .contains("not a heap dump"));
    assert!(info["files"][4]["error"]
        .as_str()
        .unwrap()
        .contains("text format"));
    assert_eq!(ui.get("/api/traces/f4").status, 404);
    assert_eq!(ui.get("/traces/f4").status, 404);
    assert_eq!(ui.get("/api/traces/f3").status, 404);
    assert_eq!(ui.get("/profiles/f3").status, 200);

    // A trace that turns to garbage after it was opened: 422 with the reason.
    let later = f.dir.join("later.jsonl");
    std::fs::copy(&f.trace_jsonl, &later).unwrap();
    let ui = Ui::start(&f.store, &[], &[&later]);
    std::fs::write(&later, b"not a trace any more").unwrap();
    let r = ui.get("/api/traces/f1");
    assert_eq!(r.status, 422);
    assert!(r.json()["error"].as_str().unwrap().contains("later.jsonl"));
}

#[test]
fn access_rules() {
    let f = fixture();
    let ui = Ui::start(&f.store, &[], &[]);
    // Loopback, no token: any loopback Host name; another name is refused (DNS rebinding).
    assert_eq!(ui.request("/api/info", "Host: localhost:1\r\n").status, 200);
    let r = ui.request("/api/info", "Host: rebound.example\r\n");
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("loopback"));
    assert_eq!(ui.request("/", "").status, 403, "no Host header");
    // Headers on every answer.
    let r = ui.get("/snapshots");
    assert!(
        r.head
            .contains("Content-Security-Policy: default-src 'self'"),
        "{}",
        r.head
    );
    assert!(r.head.contains("X-Content-Type-Options: nosniff"));
    assert!(r.body.contains("<script type=\"module\""));
    assert!(!r.body.contains("<script>"), "no inline script");
    let api = ui.get("/api/info");
    assert!(api.head.contains("Cache-Control: no-store"));
    // Read-only.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", ui.port)).unwrap();
    write!(
        s,
        "POST /api/info HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.0 405") || text.starts_with("HTTP/1.1 405"),
        "{text}"
    );
    // Assets are the embedded ones only.
    assert_eq!(ui.get("/assets/main.js").status, 200);
    assert_eq!(ui.get("/assets/../Cargo.toml").status, 404);
    assert_eq!(ui.get("/no/such/page").status, 404);
    assert_eq!(ui.get("/").status, 302);

    // With --token (and always on other addresses): nothing without it.
    let ui = Ui::start(&f.store, &["--token"], &[]);
    let token = ui.url.split("token=").nth(1).unwrap().to_string();
    assert!(token.len() >= 32, "{}", ui.url);
    assert_eq!(ui.get("/api/info").status, 401);
    assert_eq!(ui.get("/snapshots").status, 401);
    assert_eq!(ui.get("/api/info?token=wrong").status, 401);
    let r = ui.get(&format!("/snapshots?token={token}&q=x"));
    assert_eq!(r.status, 302);
    assert!(r.head.contains("Location: /snapshots?q=x"), "{}", r.head);
    let cookie = r
        .head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(
        ui.request(
            "/api/info",
            &format!("Host: 127.0.0.1\r\nCookie: {pair}\r\n")
        )
        .status,
        200
    );
    assert_eq!(
        ui.request(
            "/api/info",
            &format!("Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n")
        )
        .status,
        200
    );

    // A non-loopback address always prints a token.
    let out = Command::new(cli())
        .args(["ui", "--listen", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--listen"), "{}", stderr(&out));
    let missing = Command::new(cli())
        .args(["ui", "/no/such/dump.json"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("does not exist"));
    let mut open = Command::new(cli())
        .args(["ui", "--listen", "0.0.0.0:0"])
        .env("RBSCOPE_STORE", &f.store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(open.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = open.kill();
    let _ = open.wait();
    assert!(line.contains("?token="), "{line}");
}

/// The pages in Debian's Chromium, driven by Playwright (tests/browser/ui_e2e.py): the
/// snapshot list, a snapshot with its value tree and a cycle, the 404 and error pages, the heap
/// treemap and a node, a retention path, a diff, a trace timeline and a flame graph; on Ruby
/// 3.1, a Rails record and parameters. Screenshots go to target/ui-test/screenshots.
#[test]
fn in_a_real_browser() {
    let f = fixture();
    let python = repo_root().join("target/pyenv/bin/python");
    assert!(
        python.exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Chromium and Playwright: run scripts/install-deps"
    );
    let [h1, h2, h3] = &f.heaps;
    let ui = Ui::start(
        &f.broken_store,
        &[],
        &[
            h1.as_path(),
            h2,
            h3,
            &f.trace_jsonl,
            &f.profile,
            &f.saved_top,
        ],
    );
    let unreachable = Ui::start(
        Path::new("postgres://rbscope@127.0.0.1:1/rbscope"),
        &[],
        &[],
    );
    // The Rails record's page, where Debian's Rails is (Ruby 3.1); "-" elsewhere.
    let rails = rails_fixture().map(|(store, id)| (Ui::start(store, &[], &[]), id));
    let rails_page = rails
        .as_ref()
        .map(|(ui, id)| format!("{}snapshots/{id}", ui.url))
        .unwrap_or_else(|| "-".into());
    let out = Command::new(python)
        .arg(repo_root().join("crates/rbscope/tests/browser/ui_e2e.py"))
        .arg(&ui.url)
        .arg(&unreachable.url)
        .arg(f.dir.join("screenshots"))
        .arg(&f.broken_id)
        .arg(&rails_page)
        .output()
        .unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser test failed:\n{log}");
    assert!(log.contains("all browser checks passed"), "{log}");
}
