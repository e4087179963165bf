//! rbscope-heap on dumps that real CRuby 3.2, 3.3, 3.4 and 4.0 wrote.
//!
//! Each test runs `tests/wasm/heap.rb` on one Ruby built for WASI (the ruby.wasm npm packages,
//! run under Node by `scripts/wasm-ruby`; `scripts/install-wasm-rubies` installs them). The
//! program builds a known heap, writes `ObjectSpace.dump_all` twice (the second time with 500
//! more `Leaked` objects) and prints Ruby's own census as JSON: instance counts per class
//! (`ObjectSpace.each_object`), `count_objects` and `count_imemo_objects` just before and just
//! after each dump (with GC off, so the dump's counts lie between them), the shape count,
//! live slots per heap, and for a few chosen objects `ObjectSpace.dump(obj)` with what Ruby
//! says about them (class name, `frozen?`, bytesize, length, ivars). The reader's summary,
//! graph, retention paths, dominators and diff must agree with that census. The expected values
//! all come from what Ruby printed, never from this crate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use rbscope_heap::diff::diff;
use rbscope_heap::graph::{HeapGraph, NodeId};
use rbscope_heap::input::{read_records, ScanOptions};
use rbscope_heap::parse::{parse_address, RecordKind};
use rbscope_heap::paths::{retention_paths, Reach, Step};
use rbscope_heap::summary::{summarize, Summary};
use rbscope_heap::top::Retention;
use rbscope_heap::Dump;
use serde_json::Value;

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn opts() -> ScanOptions<'static> {
    ScanOptions {
        jobs: 2,
        progress: None,
        allow_truncated: false,
    }
}

/// Runs the heap program on Ruby `version`; its census and the directory holding the dumps.
fn run_heap_program(version: &str) -> (Value, tempfile::TempDir) {
    let root = checkout();
    let wasm = root
        .join("target/wasm-rubies/node_modules/@ruby")
        .join(format!("{version}-wasm-wasi/dist/ruby+stdlib.wasm"));
    assert!(
        wasm.is_file(),
        "no Ruby {version} for WASI at {}: run scripts/install-wasm-rubies",
        wasm.display()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasm/heap.rb");
    let out = Command::new(root.join("scripts/wasm-ruby"))
        .arg(version)
        .arg(&program)
        .arg(dir.path())
        .output()
        .expect("scripts/wasm-ruby runs (node must be installed)");
    assert!(
        out.status.success(),
        "the heap program failed on Ruby {version} ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let census: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the heap program's output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let got = census["ruby_version"].as_str().unwrap_or_default();
    assert!(
        got.starts_with(&format!("{version}.")),
        "asked for Ruby {version}, ran {got}"
    );
    (census, dir)
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a count in Ruby's census: {v}"))
}

fn addr(v: &Value) -> u64 {
    parse_address(v.as_str().expect("an address string").as_bytes()).expect("a hex address")
}

fn count_of(s: &Summary, name: &str) -> u64 {
    s.by_class
        .iter()
        .filter(|r| r.name == name)
        .map(|r| r.tally.count)
        .sum()
}

fn type_count(s: &Summary, name: &str) -> u64 {
    s.by_type
        .iter()
        .find(|r| r.name == name)
        .map_or(0, |r| r.tally.count)
}

/// `lo <= got <= hi`, or a message naming what was counted.
fn between(what: &str, got: u64, lo: u64, hi: u64) {
    assert!(
        lo <= got && got <= hi,
        "{what}: the dump has {got}, Ruby counted {lo} just before dump_all and {hi} just after"
    );
}

/// A dump line's fields as this crate reads them (owned, for one object).
#[derive(Debug, Default, Clone)]
struct Seen {
    ty: String,
    class: u64,
    frozen: bool,
    embedded: bool,
    shared: bool,
    fstring: bool,
    bytesize: Option<u64>,
    value: Option<String>,
    length: Option<u64>,
    size: Option<u64>,
    ivars: Option<u64>,
    shape_id: Option<u64>,
    slot_size: Option<u32>,
    references: BTreeSet<u64>,
    line: Option<u32>,
    name: Option<String>,
    invalid_json: bool,
}

/// The records at `wanted` addresses, and the SHAPE records' types by id.
fn read_some(path: &Path, wanted: &BTreeSet<u64>) -> (HashMap<u64, Seen>, HashMap<u64, String>) {
    let data = std::fs::read(path).expect("dump readable");
    let mut seen = HashMap::new();
    let mut shapes = HashMap::new();
    read_records(&data, |r| match r.kind {
        RecordKind::Shape => {
            if let (Some(id), Some(t)) = (r.id, r.shape_type) {
                shapes.insert(id, t.to_string_lossy());
            }
        }
        RecordKind::Object if wanted.contains(&r.address) => {
            seen.insert(
                r.address,
                Seen {
                    ty: r.ty.name().to_string(),
                    class: r.class,
                    frozen: r.frozen,
                    embedded: r.embedded,
                    shared: r.shared,
                    fstring: r.fstring,
                    bytesize: r.bytesize,
                    value: r.value.map(|v| v.to_string_lossy()),
                    length: r.length,
                    size: r.size,
                    ivars: r.ivars,
                    shape_id: r.shape_id,
                    slot_size: r.slot_size,
                    references: r.references.iter().collect(),
                    line: r.line,
                    name: r.name.map(|n| n.to_string_lossy()),
                    invalid_json: r.invalid_json,
                },
            );
        }
        _ => {}
    });
    (seen, shapes)
}

/// Every line read, none skipped, and the per-type counts of an independent JSON parser.
/// Returns how many objects that parser saw allocated at `site` (file, line).
fn check_lines(version: &str, path: &Path, s: &Summary, site: (&str, u64)) -> u64 {
    let st = &s.stats;
    assert_eq!(st.unreadable, 0, "{version}: unreadable lines: {st:?}");
    assert_eq!(
        st.invalid_json, 0,
        "{version}: lines read as invalid JSON: {st:?}"
    );
    assert_eq!(st.truncated_at, None, "{version}: {st:?}");
    assert_eq!(
        st.lines,
        st.objects + st.roots + st.shapes,
        "{version}: {st:?}"
    );
    let text = std::fs::read_to_string(path).expect("dump readable");
    let mut lines = 0u64;
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut roots = 0u64;
    let mut shapes = 0u64;
    let mut at_site = 0u64;
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("{version}: a line that is not JSON ({e}): {l}"));
        if v["file"].as_str() == Some(site.0) && v["line"].as_u64() == Some(site.1) {
            at_site += 1;
        }
        match v["type"].as_str().expect("every line has a type") {
            "ROOT" => roots += 1,
            "SHAPE" => shapes += 1,
            t => *types.entry(t.to_string()).or_default() += 1,
        }
    }
    assert_eq!(st.lines, lines, "{version}: lines");
    assert_eq!(st.roots, roots, "{version}: ROOT records");
    assert_eq!(st.shapes, shapes, "{version}: SHAPE records");
    assert_eq!(s.shapes, shapes, "{version}: summary.shapes");
    let ours: BTreeMap<String, u64> = s
        .by_type
        .iter()
        .map(|r| (r.name.clone(), r.tally.count))
        .collect();
    assert_eq!(ours, types, "{version}: objects per type");
    assert!(
        !ours.contains_key("UNKNOWN"),
        "{version}: a type the reader does not know"
    );
    at_site
}

/// The summary of one dump against Ruby's counts just before and after it.
fn check_census(version: &str, census: &Value, dump: &Value, s: &Summary, at_site: u64) {
    let before = &dump["before"];
    let after = &dump["after"];

    // Instances of the program's classes: nothing makes or frees one around dump_all.
    for (class, n) in before["classes"].as_object().expect("classes") {
        assert_eq!(
            u(n),
            u(&after["classes"][class]),
            "{version}: Ruby's own count of {class} moved during dump_all"
        );
        assert_eq!(
            count_of(s, class),
            u(n),
            "{version}: instances of {class} (by_class, named from the dump's class records)"
        );
    }

    // Objects per type: between Ruby's counts before and after (GC is off meanwhile).
    for (t, n) in before["types"].as_object().expect("types") {
        let name = t.strip_prefix("T_").expect("count_objects keys are T_*");
        between(
            &format!("{version}: {t}"),
            type_count(s, name),
            u(n),
            u(&after["types"][t]),
        );
    }
    let ruby_types: BTreeSet<String> = after["types"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, n)| u(n) > 0)
        .map(|(t, _)| t.trim_start_matches("T_").to_string())
        .collect();
    for r in &s.by_type {
        assert!(
            ruby_types.contains(&r.name),
            "{version}: the dump has {} {} objects, a type Ruby did not count: {ruby_types:?}",
            r.tally.count,
            r.name
        );
    }

    // IMEMO subtypes: named as Ruby names them, counted as Ruby counts them.
    let imemo_before = before["imemo"].as_object().expect("imemo");
    for (k, n) in imemo_before {
        let name = k.strip_prefix("imemo_").expect("imemo_* keys");
        between(
            &format!("{version}: {k}"),
            count_of(s, &format!("<imemo:{name}>")),
            u(n),
            u(&after["imemo"][k]),
        );
    }
    for r in s.by_class.iter().filter(|r| r.name.starts_with("<imemo:")) {
        let name = r.name.trim_start_matches("<imemo:").trim_end_matches('>');
        assert!(
            imemo_before.contains_key(&format!("imemo_{name}")),
            "{version}: {} is not an imemo type Ruby knows: {:?}",
            r.name,
            imemo_before.keys().collect::<Vec<_>>()
        );
    }
    let imemo_total: u64 = s
        .by_class
        .iter()
        .filter(|r| r.name.starts_with("<imemo:"))
        .map(|r| r.tally.count)
        .sum();
    assert_eq!(
        imemo_total,
        type_count(s, "IMEMO"),
        "{version}: every IMEMO has a named subtype"
    );

    // Shapes (3.2+): one SHAPE record per shape Ruby made.
    between(
        &format!("{version}: shapes"),
        s.shapes,
        u(&before["next_shape_id"]),
        u(&after["next_shape_id"]),
    );

    // Slot sizes: those of Ruby's heaps; where Ruby counts live slots per heap (3.3+), the
    // dump's objects per slot size lie between its counts.
    let ruby_sizes: BTreeSet<u64> = census["slot_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(u)
        .collect();
    let ours: BTreeMap<u64, u64> = s.slot_sizes.iter().map(|(k, v)| (*k as u64, *v)).collect();
    assert!(
        ours.keys().all(|k| ruby_sizes.contains(k)),
        "{version}: slot sizes {ours:?}, Ruby's heaps {ruby_sizes:?}"
    );
    assert_eq!(
        ours.values().sum::<u64>(),
        s.total.count,
        "{version}: every object has a slot_size"
    );
    for (size, live) in before["heaps"].as_object().unwrap() {
        if live.is_null() {
            continue; // 3.2 does not count objects per heap
        }
        let size: u64 = size.parse().unwrap();
        between(
            &format!("{version}: objects in {size}-byte slots"),
            ours.get(&size).copied().unwrap_or(0),
            u(live),
            u(&after["heaps"][size.to_string()]),
        );
    }

    // Allocation sites: the census class's instances all come from one line, with the call
    // caches and constant caches of that line (which Ruby's each_object does not show).
    let file = census["file"].as_str().unwrap();
    let line = u(&census["leaf_line"]) as u32;
    let at_line: u64 = s
        .by_site
        .iter()
        .filter(|r| r.file == file && r.line == Some(line))
        .map(|r| r.tally.count)
        .sum();
    assert_eq!(
        at_line, at_site,
        "{version}: objects allocated at {file}:{line} (the JSON parser's count)"
    );
    between(
        &format!("{version}: objects allocated at {file}:{line}"),
        at_line,
        u(&before["at_leaf_line"]),
        u(&before["at_leaf_line"]) + 8,
    );
    assert!(
        s.tracer.is_some(),
        "{version}: the allocation tracer's table"
    );
}

/// The chosen objects, read from dump_all, against `ObjectSpace.dump(obj)` and Ruby's facts.
fn check_samples(version: &str, census: &Value, path: &Path, g: &HeapGraph) {
    let samples = census["samples"].as_object().expect("samples");
    let wanted: BTreeSet<u64> = samples
        .values()
        .map(|s| addr(&s["dump"]["address"]))
        .collect();
    let (seen, shapes) = read_some(path, &wanted);
    let sizes: BTreeSet<u64> = census["slot_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(u)
        .collect();
    for (name, s) in samples {
        let d = &s["dump"];
        let at = addr(&d["address"]);
        let r = seen
            .get(&at)
            .unwrap_or_else(|| panic!("{version}: {name} ({at:#x}) is not in dump_all"));
        let what = format!("{version}: {name} {d}");
        assert!(!r.invalid_json, "{what}");
        assert_eq!(r.ty, d["type"].as_str().unwrap(), "{what}: type");
        // What Ruby itself says about the object.
        assert_eq!(r.frozen, s["frozen"].as_bool().unwrap(), "{what}: frozen?");
        if let Some(b) = s["bytesize"].as_u64() {
            if let Some(ours) = r.bytesize {
                assert_eq!(ours, b, "{what}: bytesize");
            }
        }
        if let (Some(v), Some(ours)) = (s["value"].as_str(), &r.value) {
            assert_eq!(ours, v, "{what}: value");
        }
        if let Some(n) = s["length"].as_u64() {
            assert_eq!(r.length, Some(n), "{what}: Array#length");
        }
        if let Some(n) = s["size"].as_u64() {
            assert_eq!(r.size, Some(n), "{what}: Hash#size");
        }
        if r.ty == "OBJECT" {
            assert_eq!(r.ivars, Some(u(&s["ivars"])), "{what}: instance_variables");
        }
        if let Some(n) = s["name"].as_str() {
            assert_eq!(r.name.as_deref(), Some(n), "{what}: Module#name");
        }
        let class_name = s["class"].as_str();
        let ours = g.classes.instance_name(r.class);
        match class_name {
            Some(c) => assert_eq!(ours, c, "{what}: class name"),
            None => assert!(
                ours.starts_with("#<Class:0x"),
                "{what}: an anonymous class is named {ours}"
            ),
        }
        // The same object as ObjectSpace.dump wrote it on its own.
        let flag = |k: &str| d[k].as_bool().unwrap_or(false);
        assert_eq!(r.class, d.get("class").map_or(0, addr), "{what}: class");
        assert_eq!(r.embedded, flag("embedded"), "{what}: embedded");
        assert_eq!(r.shared, flag("shared"), "{what}: shared");
        assert_eq!(r.fstring, flag("fstring"), "{what}: fstring");
        assert_eq!(r.frozen, flag("frozen"), "{what}: frozen");
        assert_eq!(r.bytesize, d["bytesize"].as_u64(), "{what}: bytesize");
        assert_eq!(r.shape_id, d["shape_id"].as_u64(), "{what}: shape_id");
        assert_eq!(
            r.slot_size.map(u64::from),
            d["slot_size"].as_u64(),
            "{what}: slot_size"
        );
        if let Some(sz) = r.slot_size {
            assert!(
                sizes.contains(&(sz as u64)),
                "{what}: slot size {sz} not Ruby's"
            );
        }
        assert_eq!(r.line.map(u64::from), d["line"].as_u64(), "{what}: line");
        let refs: BTreeSet<u64> = d["references"]
            .as_array()
            .map(|a| a.iter().map(addr).collect())
            .unwrap_or_default();
        assert_eq!(r.references, refs, "{what}: references");
        if d["too_complex_shape"].as_bool() == Some(true) {
            // 3.3+ says so on the object. Where the tree has a too-complex shape (3.2 to 3.4),
            // that is the object's shape; 4.0 has none (too complex is a bit of the shape id,
            // which the dump masks off).
            if shapes.values().any(|t| t == "OBJ_TOO_COMPLEX") {
                let id = r.shape_id.expect("a shape id");
                assert_eq!(shapes[&id], "OBJ_TOO_COMPLEX", "{what}: shape {id}");
            }
        }
    }
    // Shape ids of objects with ivars name SHAPE records that the dump has.
    for name in ["few", "many", "item", "leaf"] {
        let at = addr(&samples[name]["dump"]["address"]);
        if let Some(id) = seen[&at].shape_id {
            assert!(
                shapes.contains_key(&id),
                "{version}: {name}'s shape {id} has no SHAPE record"
            );
        }
    }
}

type ChainFacts = (
    HashMap<&'static str, bool>,
    HashMap<&'static str, Vec<&'static str>>,
    HashMap<&'static str, u64>,
);

/// For each link of the chain, read from the dump with a JSON parser: whether a root
/// references it, which links reference it, and its memsize.
fn chain_facts(path: &Path, census: &Value) -> ChainFacts {
    const LINKS: [&str; 3] = ["chain_a", "chain_b", "chain_c"];
    let at: Vec<String> = LINKS
        .iter()
        .map(|n| {
            census["samples"][n]["dump"]["address"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut held = HashMap::new();
    let mut referrers: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut memsize = HashMap::new();
    for n in LINKS {
        held.insert(n, false);
        referrers.insert(n, Vec::new());
    }
    let text = std::fs::read_to_string(path).expect("dump readable");
    for l in text.lines() {
        if !at.iter().any(|a| l.contains(a.as_str())) {
            continue;
        }
        let v: Value = serde_json::from_str(l).expect("JSON");
        let refs: Vec<&str> = v["references"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
            .unwrap_or_default();
        let me = LINKS
            .iter()
            .zip(&at)
            .find(|(_, a)| v["address"].as_str() == Some(a.as_str()));
        if let Some((n, _)) = me {
            memsize.insert(*n, v["memsize"].as_u64().unwrap_or(0));
        }
        for (n, a) in LINKS.iter().zip(&at) {
            if !refs.contains(&a.as_str()) {
                continue;
            }
            if v["type"] == "ROOT" {
                held.insert(*n, true);
            } else {
                let by = me.map_or("(another object)", |(m, _)| *m);
                referrers.get_mut(n).unwrap().push(by);
            }
        }
    }
    (held, referrers, memsize)
}

/// Retention paths and dominators of the A -> B -> C chain held by a global.
fn check_graph(version: &str, census: &Value, path: &Path, g: &HeapGraph) {
    let at = |n: &str| {
        let a = addr(&census["samples"][n]["dump"]["address"]);
        g.node(a)
            .unwrap_or_else(|| panic!("{version}: {n} ({a:#x}) is not a graph node"))
    };
    let (a, b, c) = (at("chain_a"), at("chain_b"), at("chain_c"));
    let reach = Reach::compute(g);
    let paths = retention_paths(g, &reach, c, 8);
    let want_tail = [Step::Node(a), Step::Node(b), Step::Node(c)];
    assert!(
        paths.iter().any(|p| p.len() == 4
            && p[0] == Step::Root("global_tbl".to_string())
            && p[1..] == want_tail),
        "{version}: no path global_tbl -> ChainA -> ChainB -> ChainC among {paths:?}"
    );
    let names: Vec<&str> = [a, b, c].iter().map(|n| g.group_name(*n)).collect();
    assert_eq!(names, ["ChainA", "ChainB", "ChainC"], "{version}");

    // Dominators. Ruby scans the machine stack conservatively, so a stale slot can hold B or
    // C as a root of its own; what the chain then retains follows from the dump's own lines,
    // read here with a JSON parser: who references each link, and its memsize.
    let (held, referrers, memsize) = chain_facts(path, census);
    assert_eq!(
        referrers["chain_b"],
        ["chain_a"],
        "{version}: B's referrers"
    );
    assert_eq!(
        referrers["chain_c"],
        ["chain_b"],
        "{version}: C's referrers"
    );
    let r = Retention::compute(g);
    let idom = |n: NodeId| r.dominators_of(n).first().copied();
    let want_b = (!held["chain_b"]).then_some(a);
    let want_c = (!held["chain_c"]).then_some(b);
    assert_eq!(
        idom(b),
        want_b,
        "{version}: B's dominator (B held by a root: {})",
        held["chain_b"]
    );
    assert_eq!(
        idom(c),
        want_c,
        "{version}: C's dominator (C held by a root: {})",
        held["chain_c"]
    );
    let mut own = memsize["chain_a"];
    if !held["chain_b"] {
        own += memsize["chain_b"];
        if !held["chain_c"] {
            own += memsize["chain_c"];
        }
    }
    assert_eq!(r.retained(a), own, "{version}: what ChainA retains");
    let leaves = r
        .by_class(g)
        .into_iter()
        .find(|c| c.name == "Leaf")
        .expect("Leaf in top");
    assert_eq!(
        leaves.instances,
        u(&census["dumps"][0]["before"]["classes"]["Leaf"]),
        "{version}: outermost Leaf instances"
    );
}

/// The second dump has `leaks` more Leaked objects and nothing else of the program's.
fn check_diff(version: &str, census: &Value, d1: &Dump, d2: &Dump) {
    let dumps = census["dumps"].as_array().unwrap();
    let d = diff(&[d1, d2], opts()).expect("diff");
    for (class, n1) in dumps[0]["before"]["classes"].as_object().unwrap() {
        let n2 = u(&dumps[1]["before"]["classes"][class]);
        let rows: Vec<_> = d.groups.iter().filter(|g| g.name == *class).collect();
        let new: u64 = rows.iter().map(|g| g.new.count).sum();
        let first: u64 = rows.iter().map(|g| g.counts[0].count).sum();
        let second: u64 = rows.iter().map(|g| g.counts[1].count).sum();
        assert_eq!(first, u(n1), "{version}: {class} in the first dump");
        assert_eq!(second, n2, "{version}: {class} in the second dump");
        assert_eq!(new, n2 - u(n1), "{version}: new {class}");
    }
    let leaked: u64 = d
        .groups
        .iter()
        .filter(|g| g.name == "Leaked")
        .map(|g| g.new.count)
        .sum();
    assert_eq!(leaked, u(&census["leaks"]), "{version}: +Leaked");
}

fn check(version: &str) {
    let (census, _dir) = run_heap_program(version);
    let dumps = census["dumps"].as_array().expect("dumps");
    assert_eq!(dumps.len(), 2);
    let mut opened = Vec::new();
    for dump in dumps {
        let path = PathBuf::from(dump["path"].as_str().unwrap());
        let d = Dump::open(&path).expect("dump opens");
        let s = summarize(&d, opts()).expect("summary");
        let site = (census["file"].as_str().unwrap(), u(&census["leaf_line"]));
        let at_site = check_lines(version, &path, &s, site);
        check_census(version, &census, dump, &s, at_site);
        opened.push(d);
    }
    let first = PathBuf::from(dumps[0]["path"].as_str().unwrap());
    let g = HeapGraph::build(&opened[0], opts()).expect("graph");
    assert_eq!(g.stats.unreadable, 0);
    check_samples(version, &census, &first, &g);
    check_graph(version, &census, &first, &g);
    check_diff(version, &census, &opened[0], &opened[1]);
}

#[test]
fn ruby_3_2() {
    check("3.2");
}

#[test]
fn ruby_3_3() {
    check("3.3");
}

#[test]
fn ruby_3_4() {
    check("3.4");
}

#[test]
fn ruby_4_0() {
    check("4.0");
}
