//! The fast path (VM frames read directly) and the debug-inspector path must store the same
//! snapshot: same frames, labels, lines, locals and values. Plus the situations that stress
//! the fast path: GC compaction and GC stress between raise and report, deep stacks, blocks
//! seeing their method's locals.

mod common;
use common::*;

const SCENARIO: &str = r#"
class Ledger
  def initialize
    @entries = [{ amount: 5, memo: "coffee" }, { amount: 7, memo: "tea" }]
    @me = self
  end

  def total(scale, rounding: :floor)
    running = 0
    @entries.each_with_index do |entry, i|
      doubled = entry[:amount] * scale
      [1].each do |inner|
        running += doubled
        check(entry) if i == 1
      end
    end
    running
  end

  def check(entry)
    limit = 10
    raise ArgumentError, "over limit" if entry[:amount] > 6
  end
end

def outer
  ledger = Ledger.new
  ledger.total(2)
end

begin
  outer
rescue => e
  after = "set in rescue"
  GC.start
  Rbscope.report(e)
end
Rbscope.flush
"#;

/// Runs the scenario in `sb` with capture `mode`, into a store of its own.
fn snapshot_text(sb: &Sandbox, mode: &str) -> (serde_json::Value, String) {
    let script = sb.write(
        "ledger.rb",
        &format!("require 'rbscope'\nRbscope.start\n{SCENARIO}"),
    );
    let store = sb.dir.path().join(format!("{mode}.db"));
    let out = sb
        .ruby(&script)
        .env("RBSCOPE_CAPTURE", mode)
        .env("RBSCOPE_STORE", &store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{mode}: {}", stderr(&out));
    let rows = sb.cli_json_on(&store, &["list", "--json"]);
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let snap = sb.cli_json_on(&store, &["show", &id, "--json"]);
    let text = sb.cli_on(&store, &["show", &id]);
    // Drop the lines that differ between runs (id, time, pid).
    let stable: String = text
        .lines()
        .filter(|l| !l.starts_with("snapshot ") && !l.starts_with("process "))
        .collect::<Vec<_>>()
        .join("\n");
    (snap, stable)
}

#[test]
fn fast_and_inspector_paths_store_the_same_snapshot() {
    let sb = Sandbox::new();
    let (fast, fast_text) = snapshot_text(&sb, "auto");
    let (slow, slow_text) = snapshot_text(&sb, "inspector");
    assert_eq!(fast_text, slow_text);
    assert_eq!(fast["frames"], slow["frames"]);
    let s = Snap(&fast);
    // Labels and lines as Ruby reports them; blocks see their method's locals.
    let labels: Vec<&str> = fast["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "Ledger#check(entry)",
            "Ledger#total{block}{block}(scale, rounding:)",
            "Ledger#total{block}(scale, rounding:)",
            "Ledger#total(scale, rounding:)",
            "Object#outer()",
            "Object$singleton#<main>()",
        ]
    );
    let inner = s.frame("Ledger#total{block}{block}");
    assert_eq!(inner["lineno"], 16);
    for name in [
        "inner", "entry", "i", "doubled", "scale", "rounding", "running",
    ] {
        s.local(inner, name);
    }
    assert_eq!(s.local(inner, "running")["value"], 24);
    // The rescuing frame is still running at report time: its later assignment shows.
    let main = s.frame("Object$singleton#<main>");
    assert_eq!(s.obj(s.local(main, "after"))["value"], "set in rescue");
}

#[test]
fn gc_compaction_and_stress_between_raise_and_report() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "gc.rb",
        r#"
def make
  keep = Array.new(2000) { |i| "str #{i}" }
  hash = { key: keep.last, list: keep.first(3) }
  raise "compact me"
end
begin
  make
rescue => e
  200.times { Array.new(100) { Object.new } }
  GC.compact
  GC.stress = true
  id = Rbscope.report(e)
  GC.stress = false
  puts id
end
Rbscope.flush
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let f = s.frame("Object#make");
    let hash = s.obj(s.local(f, "hash"));
    assert_eq!(s.obj(&hash["entries"][0]["value"])["value"], "str 1999");
    let keep = s.obj(s.local(f, "keep"));
    assert_eq!(keep["length"], 2000);
    assert_eq!(s.obj(&keep["items"][7])["value"], "str 7");
}

#[test]
fn deep_stacks_are_captured_up_to_the_frame_cap() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "deep.rb",
        "def down(n, tag)\n  n.zero? ? raise('bottom') : down(n - 1, tag)\nend\ndown(3000, :t)\n",
    );
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    assert_eq!(snap["frames"].as_array().unwrap().len(), 50);
    assert_eq!(snap["frames"][0]["locals"][0]["value"]["value"], 0);
    assert_eq!(snap["frames"][49]["locals"][0]["value"]["value"], 49);
    assert!(snap["stats"]["frames_skipped"].as_u64().unwrap() > 400);
}
