//! Real Ruby programs raise; the snapshot must hold every kind of value faithfully.

mod common;
use common::*;

const VALUES: &str = r#"
require "set"
require "date"
require "bigdecimal"
Point = Struct.new(:x, :y)
class Holder
  def initialize
    @me = self
    @name = "holder"
  end
end
def kinds
  int = 42
  big = 2**80
  neg = -7
  flt = 1.25
  rat = 3/4r
  cpx = Complex(1, 2)
  str = "héllo"
  bin = "\xff\x00".b
  long = "x" * 10_000
  sym = :status
  rx = /ab+c/i
  rng = (1...10)
  arr = [1, [2, [3]]]
  hsh = Hash.new(7).merge(a: 1, "b" => 2)
  hproc = Hash.new { |h, k| h[k] = 0 }
  ident = {}.compare_by_identity
  set = Set[:x, :y]
  pt = Point.new(1, 2)
  tm = Time.at(1_700_000_000, 5, :nsec).utc
  date = Date.new(2024, 2, 29)
  dt = DateTime.new(2024, 2, 29, 13, 5, 9)
  dec = BigDecimal("123.450")
  klass = Holder
  anon = Class.new
  lam = ->(a, b) { a + b }
  meth = 1.method(:+)
  err = KeyError.new("boom")
  io = $stderr
  mutex = Mutex.new
  thr = Thread.current
  holder = Holder.new
  shared = [1, 2]
  again = shared
  t = true
  f = false
  n = nil
  raise "values captured"
end
kinds
"#;

#[test]
fn every_value_kind_is_captured() {
    let sb = Sandbox::new();
    let out = sb.run_started("values.rb", VALUES);
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let f = s.frame("Object#kinds");
    let local = |n: &str| s.local(f, n);
    let obj = |n: &str| s.obj(s.local(f, n));

    assert_eq!(local("int")["value"], 42);
    assert_eq!(local("neg")["value"], -7);
    assert_eq!(local("big")["value"], "1208925819614629174706176");
    assert_eq!(local("flt")["value"], 1.25);
    assert_eq!(local("sym")["value"], "status");
    assert_eq!(local("t")["type"], "true");
    assert_eq!(local("f")["type"], "false");
    assert_eq!(local("n")["type"], "nil");

    let rat = obj("rat");
    assert_eq!(rat["kind"], "rational");
    assert_eq!(rat["numerator"]["value"], 3);
    assert_eq!(rat["denominator"]["value"], 4);
    let cpx = obj("cpx");
    assert_eq!(
        (
            cpx["real"]["value"].clone(),
            cpx["imaginary"]["value"].clone()
        ),
        (1.into(), 2.into())
    );

    let st = obj("str");
    assert_eq!(st["value"], "héllo");
    assert_eq!(st["encoding"], "UTF-8");
    assert_eq!(obj("bin")["encoding"], "ASCII-8BIT");
    let long = obj("long");
    assert_eq!(long["truncated"], true);
    assert_eq!(long["bytesize"], 10_000);
    assert_eq!(long["value"].as_str().unwrap().len(), 4096);

    assert_eq!(obj("rx")["source"], "ab+c");
    assert_eq!(obj("rx")["options"], 1);
    let rng = obj("rng");
    assert_eq!(rng["kind"], "range");
    assert_eq!(rng["exclusive"], true);
    assert_eq!(rng["end"]["value"], 10);

    let arr = obj("arr");
    assert_eq!(arr["kind"], "array");
    let inner = s.obj(&arr["items"][1]);
    assert_eq!(inner["items"][0]["value"], 2);

    let hsh = obj("hsh");
    assert_eq!(hsh["kind"], "hash");
    assert_eq!(hsh["default"]["value"], 7);
    assert_eq!(hsh["entries"][0]["key"]["value"], "a");
    assert_eq!(hsh["entries"][0]["value"]["value"], 1);
    assert_eq!(s.obj(&hsh["entries"][1]["key"])["value"], "b");
    assert_eq!(s.obj(&obj("hproc")["default_proc"])["kind"], "proc");
    assert_eq!(obj("ident")["compare_by_identity"], true);

    let set = obj("set");
    assert_eq!(set["kind"], "set");
    assert_eq!(set["items"].as_array().unwrap().len(), 2);
    assert!(set["ivars"].as_array().unwrap().is_empty());

    let pt = obj("pt");
    assert_eq!(pt["kind"], "struct");
    assert_eq!(pt["class"], "Point");
    assert_eq!(pt["members"][1]["name"], "y");
    assert_eq!(pt["members"][1]["value"]["value"], 2);

    let tm = obj("tm");
    assert_eq!(tm["kind"], "time");
    assert_eq!(tm["seconds"], 1_700_000_000);
    assert_eq!(tm["nanoseconds"], 5);
    assert_eq!(tm["utc"], true);
    assert_eq!(obj("date")["iso8601"], "2024-02-29");
    assert_eq!(obj("date")["kind"], "date");
    assert_eq!(obj("dt")["kind"], "datetime");
    assert!(obj("dt")["iso8601"]
        .as_str()
        .unwrap()
        .starts_with("2024-02-29T13:05:09"));
    assert_eq!(obj("dec")["kind"], "bigdecimal");
    assert_eq!(obj("dec")["value"], "0.12345e3");

    assert_eq!(obj("klass")["kind"], "module");
    assert_eq!(obj("klass")["name"], "Holder");
    assert_eq!(obj("anon")["anonymous"], true);
    let lam = obj("lam");
    assert_eq!(lam["lambda"], true);
    assert_eq!(lam["arity"], 2);
    let lam_line = VALUES.lines().position(|l| l.contains("lam = ->")).unwrap() + 3;
    assert_eq!(lam["source_location"][1], lam_line as u64);
    let meth = obj("meth");
    assert_eq!(meth["kind"], "method");
    assert_eq!(meth["owner"], "Integer");
    assert_eq!(meth["name"], "+");
    assert_eq!(obj("err")["kind"], "exception");
    assert_eq!(obj("err")["message"], "boom");
    for opaque in ["io", "mutex", "thr"] {
        assert_eq!(obj(opaque)["kind"], "opaque", "{opaque}");
    }
    assert!(obj("io")["preview"].as_str().unwrap().contains("STDERR"));

    // A cycle: the holder's @me is the holder itself (same object id).
    let holder_ref = local("holder");
    let holder = s.obj(holder_ref);
    assert_eq!(s.ivar(holder, "@me")["id"], holder_ref["id"]);
    // A shared reference: two locals, one object.
    assert_eq!(local("shared")["id"], local("again")["id"]);
}

#[test]
fn limits_cut_deep_and_wide_graphs_and_say_so() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "deep.rb",
        r#"
Rbscope.stop
Rbscope.start(max_depth: 3, max_collection_items: 5, max_objects: 50)
def deep
  chain = [[[[[["bottom"]]]]]]
  wide = (1..100).to_a
  many = Array.new(20) { |i| Array.new(5) { |j| "s#{i}-#{j}" } }
  raise ArgumentError, "limits"
end
deep
"#,
    );
    assert!(!out.status.success(), "{}", stderr(&out));
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let f = s.frame("Object#deep");
    let wide = s.obj(s.local(f, "wide"));
    assert_eq!(wide["length"], 100);
    assert_eq!(wide["items"].as_array().unwrap().len(), 5);
    let mut v = s.local(f, "chain").clone();
    let mut levels = 0;
    while v["type"] == "ref" {
        v = s.obj(&v)["items"][0].clone();
        levels += 1;
    }
    assert_eq!(v["type"], "cut", "the chain must be cut by depth: {v}");
    assert!(levels <= 4);
    let stats = &snap["stats"];
    assert!(stats["cut_depth"].as_u64().unwrap() > 0);
    assert!(stats["truncated_collections"].as_u64().unwrap() > 0);
    assert!(snap["objects"].as_array().unwrap().len() <= 50);
    let text = sb.show_text(snap["id"].as_str().unwrap());
    assert!(text.contains("cut by limits"), "{text}");
}

#[test]
fn secrets_are_redacted_by_name_and_by_value() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "secrets.rb",
        r#"
class Client
  def initialize
    @api_key = "abc" + "123"
    @endpoint = "https://example.com"
  end
  def call(password)
    params = { "user" => "ann", "access_token" => "t" + "ok", nested: { "card" => (["4111"] + ["1111"] * 3).join("-") } }
    stripe = ["sk", "live", "12345"].join("_")
    raise "denied"
  end
end
Client.new.call("hunter" + "2")
"#,
    );
    assert!(!out.status.success());
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let f = s.frame("Client#call");
    assert_eq!(s.local(f, "password")["type"], "redacted");
    assert_eq!(s.local(f, "stripe")["type"], "redacted");
    let params = s.obj(s.local(f, "params"));
    let entry = |h: &serde_json::Value, i: usize| h["entries"][i]["value"].clone();
    assert_eq!(s.obj(&entry(params, 0))["value"], "ann");
    assert_eq!(entry(params, 1)["type"], "redacted");
    let nested = s.obj(&params["entries"][2]["value"]);
    assert_eq!(entry(nested, 0)["type"], "redacted");
    let client = s.obj(&f["self"]);
    assert_eq!(s.ivar(client, "@api_key")["type"], "redacted");
    assert_eq!(
        s.obj(s.ivar(client, "@endpoint"))["value"],
        "https://example.com"
    );
    assert_eq!(snap["stats"]["redacted"], 5);
    let text = sb.show_text(snap["id"].as_str().unwrap());
    assert!(text.contains("5 values redacted"), "{text}");
    for secret in ["hunter2", "abc123", "sk_live_12345", "4111-1111", "\"tok\""] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn values_are_read_at_report_time() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "late.rb",
        r#"
def work
  state = "before"
  begin
    raise "first"
  rescue => e
    state = "changed in rescue"
    Rbscope.report(e)
  end
end
work
Rbscope.flush
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let f = s.frame("Object#work");
    assert_eq!(s.obj(s.local(f, "state"))["value"], "changed in rescue");
    assert_eq!(snap["context"]["extra"]["reported_by"], "Rbscope.report");
}

/// The raise path copies the raising stack as blocks and reads the frames out of the copy only
/// at report: frames of procs and blocks whose methods had returned, with GC (and compaction,
/// where Ruby has it) between the raise and the report, still show every local as it was.
#[test]
fn frames_of_procs_and_blocks_read_right_after_gc_between_raise_and_report() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "procs.rb",
        r#"
def make_counter
  outer = "made in make_counter"
  proc do |n|
    inner = "in the proc #{n}"
    [10].each do |i|
      deepest = "in a block #{i} with #{outer}"
      raise ArgumentError, "from a block in a proc"
    end
  end
end

def run_it
  make_counter.call(7)
end

begin
  run_it
rescue ArgumentError => e
  200_000.times { "garbage " * 4 }
  GC.start(full_mark: true, immediate_sweep: true)
  begin
    GC.compact
  rescue NotImplementedError
  end
  GC.start
  Rbscope.report(e)
end
Rbscope.flush
"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let deepest = s.frame("Object#make_counter{block}{block}");
    assert_eq!(
        s.obj(s.local(deepest, "deepest"))["value"],
        "in a block 10 with made in make_counter"
    );
    assert_eq!(s.obj(s.local(deepest, "inner"))["value"], "in the proc 7");
    assert_eq!(
        s.obj(s.local(deepest, "outer"))["value"],
        "made in make_counter"
    );
    let block = s.frame("Object#make_counter{block}(");
    assert_eq!(s.local(block, "n")["value"], 7);
    assert!(s.frame("Object#run_it").is_object());
}
