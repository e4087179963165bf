//! The heap of a running Ruby process (3.1 to 4.0, whichever `ruby` is first on PATH):
//! `rbscope heap dump | count | track | watch -p PID` and `Rbscope.heap_dump` /
//! `Rbscope.count_objects`, checked against Ruby's own `ObjectSpace.dump_all` and
//! `ObjectSpace.count_objects` of the same heap.

mod common;
use common::*;
use serde_json::Value as J;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn heap(args: &[&str]) -> std::process::Output {
    Command::new(cli()).arg("heap").args(args).output().unwrap()
}

fn ok_json(args: &[&str]) -> J {
    let out = heap(args);
    assert!(out.status.success(), "heap {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The keys of a dump line's top-level object, in the order written.
fn keys_in_order(line: &str) -> Vec<String> {
    let (mut keys, mut depth, mut in_str, mut escaped) = (Vec::new(), 0, false, false);
    let mut current = String::new();
    let bytes = line.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
                let next = bytes[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                if depth == 1 && next == Some(&b':') {
                    keys.push(std::mem::take(&mut current));
                }
                current.clear();
            } else {
                current.push(c as char);
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    keys
}

fn lines_of(path: &Path) -> Vec<J> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn our_dump_matches_rubys_dump_all_of_the_same_heap() {
    let mut app = Program::start("heap_live.rb", &[]);
    app.run("trace");
    app.run("items 3000");
    app.run("zoo");
    let ours = app.sb.dir.path().join("ours.json");
    let theirs = app.sb.dir.path().join("theirs.json");
    let done = app.run(&format!("both {} {}", ours.display(), theirs.display()));
    let result: J = serde_json::from_str(&done).unwrap();
    assert_eq!(result["ours"]["forked"], true);
    assert_eq!(result["ours"]["allocation_info"], true);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Every line is JSON (Ruby's own parser reads it too, below).
    let ours_lines = lines_of(&ours);
    let theirs_text = std::fs::read_to_string(&theirs).unwrap();
    let theirs_lines: Vec<J> = theirs_text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let by_address = |lines: &[J]| -> HashMap<String, J> {
        lines
            .iter()
            .filter(|l| l["address"].is_string())
            .map(|l| (l["address"].as_str().unwrap().to_string(), l.clone()))
            .collect()
    };
    let ours_by = by_address(&ours_lines);
    let theirs_by = by_address(&theirs_lines);
    // The raw lines, for the order of their fields.
    let raw_by_address = |text: &str| -> HashMap<String, String> {
        text.lines()
            .filter_map(|l| {
                let j: J = serde_json::from_str(l).ok()?;
                Some((j["address"].as_str()?.to_string(), l.to_string()))
            })
            .collect()
    };
    let ours_raw = raw_by_address(&std::fs::read_to_string(&ours).unwrap());
    let theirs_raw = raw_by_address(&theirs_text);
    // The items: same class, same references, same allocation site and generation.
    let item_class = theirs_lines
        .iter()
        .find(|l| l["type"] == "CLASS" && l["name"] == "LiveLeak::Item")
        .unwrap()["address"]
        .clone();
    let items: Vec<&J> = theirs_lines
        .iter()
        .filter(|l| l["class"] == item_class && l["type"] == "OBJECT")
        .collect();
    assert_eq!(items.len(), 3000);
    for t in items {
        let a = t["address"].as_str().unwrap();
        let o = ours_by
            .get(a)
            .unwrap_or_else(|| panic!("{a} not in our dump"));
        for key in [
            "type",
            "class",
            "references",
            "file",
            "line",
            "method",
            "generation",
            "memsize",
        ] {
            assert_eq!(o[key], t[key], "{key} of {a}");
        }
    }
    // Objects in both dumps agree on type and class (Ruby's dump has the few objects made
    // between the two; ours has nothing Ruby's lacks but those freed in between, none here).
    let common: Vec<&String> = ours_by
        .keys()
        .filter(|a| theirs_by.contains_key(*a))
        .collect();
    assert!(
        common.len() * 100 >= ours_by.len() * 99,
        "{} of {}",
        common.len(),
        ours_by.len()
    );
    // Objects can change between the two dumps (the app's own arrays grow as `require` runs):
    // those whose references or size differ are left out; every other object's line must be
    // Ruby's, every field and its value (shape_id, slot_size, class, frozen, imemo_type, mid,
    // embedded/shared/fstring/chilled, bytesize, capacity, value, encoding, coderange, ivars,
    // too_complex_shape, variation_count, name, struct, fd, default, references, allocation,
    // memsize, flags with their values...).
    let mut changed = 0;
    let total = common.len();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for a in common {
        let (o, t) = (&ours_by[a], &theirs_by[a]);
        if o["references"] != t["references"] || o["memsize"] != t["memsize"] {
            changed += 1;
            continue;
        }
        assert_eq!(o, t, "the object at {a}");
        let order = keys_in_order(&ours_raw[a]);
        assert_eq!(order[..2], ["address", "type"], "{a}");
        assert_eq!(
            order,
            keys_in_order(&theirs_raw[a]),
            "the order of the fields of {a}"
        );
        for (what, found) in [
            ("shape_id", t["shape_id"].is_u64()),
            ("slot_size", t["slot_size"].is_u64()),
            ("imemo_type", t["imemo_type"].is_string()),
            ("mid", t["mid"].is_string()),
            ("called_id", t["called_id"].is_string()),
            (
                "embedded string",
                t["type"] == "STRING" && t["embedded"] == true,
            ),
            (
                "shared string",
                t["type"] == "STRING" && t["shared"] == true,
            ),
            ("fstring", t["fstring"] == true),
            ("chilled", t["chilled"] == true),
            ("capacity", t["capacity"].is_u64()),
            ("coderange", t["coderange"].is_string()),
            ("broken", t["broken"] == true),
            ("shared array", t["type"] == "ARRAY" && t["shared"] == true),
            (
                "embedded array",
                t["type"] == "ARRAY" && t["embedded"] == true,
            ),
            (
                "embedded object",
                t["type"] == "OBJECT" && t["embedded"] == true,
            ),
            ("too_complex_shape", t["too_complex_shape"] == true),
            ("variation_count", t["variation_count"].is_u64()),
            ("default", t["default"].is_string()),
            ("fd", t["fd"].is_i64()),
            ("float", t["type"] == "FLOAT"),
            ("singleton", t["singleton"] == true),
            ("real_class_name", t["real_class_name"].is_string()),
            ("struct", t["struct"].is_string()),
            ("frozen", t["frozen"] == true),
            ("flags", t["flags"].is_object()),
            ("age", t["flags"]["age"].is_u64()),
            ("object_id", t["flags"]["object_id"].is_u64()),
        ] {
            if found {
                *seen.entry(what).or_default() += 1;
            }
        }
    }
    assert!(
        changed * 100 <= total,
        "{changed} of {total} objects changed"
    );
    // The comparison above covered what this Ruby's dump says (an object kind can only be
    // missed where Ruby's own dump never writes it).
    let mut expected = vec![
        "imemo_type",
        "embedded string",
        "shared string",
        "fstring",
        "capacity",
        "shared array",
        "embedded array",
        "default",
        "fd",
        "float",
        "singleton",
        "struct",
        "frozen",
        "flags",
    ];
    if ruby_at_least(3, 2) {
        expected.extend([
            "shape_id",
            "slot_size",
            "coderange",
            "broken",
            "too_complex_shape",
            "variation_count",
        ]);
    }
    if ruby_at_least(3, 3) {
        expected.extend(["mid", "called_id", "embedded object"]);
    }
    if ruby_at_least(3, 4) {
        expected.push("chilled");
    }
    if ruby_at_least(4, 0) {
        expected.extend(["age", "object_id"]);
    }
    for what in expected {
        assert!(
            seen.contains_key(what),
            "no object with {what} compared: {seen:?}"
        );
    }
    // The shape tree (3.2+): the same records, between the roots and the objects.
    let shapes = |lines: &[J]| -> Vec<J> {
        lines
            .iter()
            .filter(|l| l["type"] == "SHAPE")
            .cloned()
            .collect()
    };
    let (our_shapes, their_shapes) = (shapes(&ours_lines), shapes(&theirs_lines));
    assert_eq!(our_shapes, their_shapes);
    for s in &our_shapes {
        let a = s["address"].as_str().unwrap();
        assert_eq!(
            keys_in_order(&ours_raw[a]),
            keys_in_order(&theirs_raw[a]),
            "{a}"
        );
    }
    assert_eq!(!their_shapes.is_empty(), ruby_at_least(3, 2));
    if let Some(first) = ours_lines.iter().position(|l| l["type"] == "SHAPE") {
        assert!(ours_lines[..first].iter().all(|l| l["type"] == "ROOT"));
        assert!(ours_lines[first + our_shapes.len()..]
            .iter()
            .all(|l| l["address"].is_string() && l["type"] != "SHAPE" && l["type"] != "ROOT"));
    }
    // The roots: the same categories in the same order (their references are not compared:
    // the machine stack of the two calls is not the same, nor what is on it).
    let roots = |lines: &[J]| -> Vec<J> {
        lines
            .iter()
            .filter(|l| l["type"] == "ROOT")
            .map(|l| l["root"].clone())
            .collect()
    };
    assert_eq!(roots(&ours_lines), roots(&theirs_lines));
    // Counts by type agree with ObjectSpace.count_objects taken right after (GC was off; the
    // call to Rbscope.heap_dump itself makes a handful of objects).
    let counts = &result["counts"];
    let summary = ok_json(&["summary", ours.to_str().unwrap(), "--json", "-n", "100"]);
    for row in summary["by_type"].as_array().unwrap() {
        let name = row["name"].as_str().unwrap();
        let ruby = counts[format!("T_{name}")].as_i64().unwrap_or(0);
        let ours = row["count"].as_i64().unwrap();
        assert!(
            (ruby - ours).abs() <= 20,
            "{name}: ruby {ruby}, ours {ours}"
        );
    }
    let live = counts["TOTAL"].as_i64().unwrap() - counts["FREE"].as_i64().unwrap();
    let ours_total = summary["total"]["count"].as_i64().unwrap();
    assert!(
        (live - ours_total).abs() <= 40,
        "ruby {live}, ours {ours_total}"
    );
    // Ruby's JSON parser, line by line.
    let out = Command::new("ruby")
        .args([
            "-rjson",
            "-e",
            "n = 0; File.foreach(ARGV[0]) { |l| JSON.parse(l); n += 1 }; puts n",
        ])
        .arg(&ours)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ours_lines.len().to_string()
    );
}

#[test]
fn dump_through_the_cli_from_a_forked_child() {
    let mut app = Program::start("heap_live.rb", &[]);
    let pid = app.pid.to_string();
    app.run("items 500");
    // Another Ruby thread busy sleeping: the child reads its stack (this crashed the child once,
    // when the child started a thread of its own).
    app.run("ticker");
    for _ in 0..5 {
        let j = ok_json(&["dump", "-p", &pid, "--json"]);
        std::fs::remove_file(j["path"].as_str().unwrap()).unwrap();
    }
    // Default place: the agent's private directory.
    let j = ok_json(&["dump", "-p", &pid, "--json"]);
    assert_eq!(j["forked"], true);
    let path = j["path"].as_str().unwrap();
    assert!(
        path.starts_with(app.sb.dir.path().join("run").to_str().unwrap()),
        "{path}"
    );
    let summary = ok_json(&["summary", path, "--json", "-n", "1000"]);
    assert_eq!(summary["total"]["count"], j["objects"]);
    let widgets = summary["by_class"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Census::Widget")
        .unwrap()["count"]
        .clone();
    assert_eq!(widgets, 1234);
    // -o, gzip, and the text line.
    let gz = app.sb.dir.path().join("out.json.gz");
    let out = heap(&["dump", "-p", &pid, "-o", gz.to_str().unwrap(), "--gzip"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("the app paused") && text.contains("for the fork"),
        "{text}"
    );
    let again = ok_json(&["summary", gz.to_str().unwrap(), "--json", "-n", "1000"]);
    assert!(again["total"]["count"].as_u64().unwrap() > 1234);
    // Never overwrites; a bad directory is one line.
    let before = std::fs::read(&gz).unwrap();
    let out = heap(&["dump", "-p", &pid, "-o", gz.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1);
    assert_eq!(std::fs::read(&gz).unwrap(), before);
    // A symlink planted at the output path is refused, never followed: neither the file it
    // points to nor, for a dangling one, the place it points at is written.
    let victim = app.sb.dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let planted = app.sb.dir.path().join("planted.json");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let out = heap(&["dump", "-p", &pid, "-o", planted.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let nowhere = app.sb.dir.path().join("nowhere.json");
    let dangling = app.sb.dir.path().join("dangling.json");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    let out = heap(&["dump", "-p", &pid, "-o", dangling.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(!nowhere.exists());
    let out = heap(&["dump", "-p", &pid, "-o", "/nonexistent-dir/x.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot write the heap dump"),
        "{}",
        stderr(&out)
    );
    // In process.
    let inproc = app.sb.dir.path().join("inproc.json");
    let j = ok_json(&[
        "dump",
        "-p",
        &pid,
        "-o",
        inproc.to_str().unwrap(),
        "--in-process",
        "--json",
    ]);
    assert_eq!(j["forked"], false);
    assert!(inproc.is_file());
    // The app still runs.
    assert_eq!(app.run("items 1"), "501");
}

#[test]
fn a_failed_write_leaves_no_file() {
    // A process whose files may not grow past 64 KiB: the child's write fails (EFBIG).
    let sb = Sandbox::new();
    let program = repo_root().join("crates/rbscope/tests/programs/heap_live.rb");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -f 64; exec ruby -I'{}' '{}'",
            gem_lib().display(),
            program.display()
        ))
        .current_dir(sb.dir.path())
        .env("RBSCOPE_STORE", sb.store())
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .env_remove("RUBYOPT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "{line}");
    let target = sb.dir.path().join("big.json");
    let res = heap(&[
        "dump",
        "-p",
        &child.id().to_string(),
        "-o",
        target.to_str().unwrap(),
    ]);
    let err = stderr(&res);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("failed") && err.contains("nothing was left"),
        "{err}"
    );
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(sb.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("big.json"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn count_and_track() {
    let mut app = Program::start("heap_live.rb", &[]);
    let pid = app.pid.to_string();
    let c = ok_json(&["count", "-p", &pid, "Census", "--json"]);
    let classes = c["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 1, "{classes:?}");
    assert_eq!(classes[0]["class"], "Census::Widget");
    assert_eq!(classes[0]["count"], 1234);
    assert!(c["objects"].as_u64().unwrap() > 10_000);
    let strings = c["by_type"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "T_STRING")
        .unwrap()["count"]
        .as_u64()
        .unwrap();
    assert!(strings > 1234);
    // The same from Ruby.
    let from_ruby: J = serde_json::from_str(&app.run("count Census LiveLeak::Item")).unwrap();
    assert_eq!(from_ruby["Census::Widget"], 1234);
    // Tracing on: what is allocated afterwards carries its site.
    let out = heap(&["track", "-p", &pid, "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("allocation tracing is on"));
    app.run("items 200");
    // With a GC first, only the kept payload strings of that line are left.
    let j = ok_json(&["dump", "-p", &pid, "--gc", "--json"]);
    assert!(j["gc_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(j["allocation_info"], true);
    let summary = ok_json(&[
        "summary",
        j["path"].as_str().unwrap(),
        "--json",
        "-n",
        "1000",
    ]);
    let line =
        std::fs::read_to_string(repo_root().join("crates/rbscope/tests/programs/heap_live.rb"))
            .unwrap()
            .lines()
            .position(|l| l.contains("ITEM_LINE"))
            .unwrap() as u64
            + 1;
    // A site is a line and a method: the payload string is made in `String#+`, but YJIT
    // calls some C methods without a frame of their own, so objspace records `initialize` for
    // those once the method is compiled. The line is the same.
    let rows: Vec<&J> = summary["by_site"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["line"] == line && r["file"].as_str().unwrap().ends_with("heap_live.rb"))
        .collect();
    assert!(!rows.is_empty(), "no site for line {line}");
    // The kept payload strings of 200 items (and at most a temporary one still on the stack).
    let kept: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert!((200..=202).contains(&kept), "{kept}");
    let out = heap(&["track", "-p", &pid, "stop"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("allocation tracing is off"));
}

#[test]
fn watch_finds_the_leak() {
    let mut app = Program::start("heap_live.rb", &[]);
    let pid = app.pid.to_string();
    app.run("trace");
    app.run("leak");
    let j = ok_json(&[
        "watch", "-p", &pid, "--every", "400ms", "-n", "3", "--diff", "--json",
    ]);
    let top = &j["groups"][0];
    assert!(
        top["class"] == "String" || top["class"] == "LiveLeak::Item",
        "{top}"
    );
    let item = j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["class"] == "LiveLeak::Item")
        .unwrap();
    assert!(item["retained"]["count"].as_u64().unwrap() >= 300, "{item}");
    assert!(item["site"].as_str().unwrap().contains("heap_live.rb"));
}

#[test]
fn no_agent_and_bad_pid() {
    let out = heap(&["dump", "-p", "999999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = heap(&["count", "-p", &std::process::id().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
