//! Restore fidelity: a real program captured under `rbscope run`, restored with `rbscope restore`
//! (piped console input) and with `Rbscope.restore(..., console: false)`, value kind by value
//! kind: classes and modules as values, symbols of every encoding, composite hash and set keys,
//! cut values marked and listed, redacted values inert, extended objects, singleton methods,
//! default procs, proc and method metadata; and the kinds that already worked (objects without
//! `initialize`, cycles, identity shared across frames, encodings, frozen state,
//! Time/Date/BigDecimal, IO and Thread stand-ins), so that they keep working.

mod common;
use common::*;

/// The app's classes: loaded by the app, and by the restore (`-r ./model`).
const MODEL: &str = r#"
require "set"
require "date"
require "bigdecimal"
Point = Struct.new(:x, :y)
Pt = (Data.define(:x, :y) if defined?(::Data) && ::Data.respond_to?(:define)) # Ruby 3.2+
# A key with its own #hash, found by value.
class Key
  attr_reader :id
  def initialize(id) = @id = id
  def hash = @id.hash
  def eql?(other) = other.is_a?(Key) && other.id == @id
  alias == eql?
end
module Greeter
  def greet = "hi from #{self.class}"
end
class Base; end
class NoInit
  def initialize = raise("restore must not call initialize")
end
class Order
  attr_reader :lines
  def initialize(lines)
    @lines = lines
    @me = self
  end
end
class Report
  def self.explode(order)
    total = order.lines.size
    raise "declined #{total}"
  end
end
"#;

const APP: &str = r##"
require_relative "model"
def values(order)
  klass = String
  by_class = { Class => 17, Comparable => 3 }
  anon = Class.new(Base)
  anon_obj = anon.new
  anon_mod = Module.new
  sym_new = "fresh_#{1 + 1}".to_sym
  sym_utf8 = :"héllo"
  sym_sjis = "\x82\xa0".dup.force_encoding("Shift_JIS").to_sym
  sym_bin = "\xff".b.to_sym
  pairs = { [1, 2] => "a", Point.new(1, 2) => "p", Key.new(7) => "k" }
  data_key = Pt && { Pt.new(1, [2]) => "d" }
  grouped = %w[apple avocado banana].group_by { |w| [w[0], w.size] }
  set_of_arrays = Set[[1, 2], [3, 4]]
  ident = { [1] => :x }.compare_by_identity
  long = "x" * 10_000
  many = (1..1_500).to_a
  big_hash = (1..1_200).to_h { |i| [i, i] }
  deep = [[[[[[[[[[[:bottom]]]]]]]]]]]
  nested = { a: { "b" => [[[[[[[[[:x]]]]]]]]] } }
  password = "hunter2"
  creds = { password: "s3cret", user: "ada" }
  extended = Object.new.extend(Greeter)
  single = Object.new
  def single.shout = "HEY"
  dflt = Hash.new { |h, k| h[k] = [] }
  lam = ->(a, b) { a + b }
  meth = order.method(:lines)
  noinit = NoInit.allocate
  noinit.instance_variable_set(:@v, 1)
  cyc = []
  cyc << cyc
  latin = "caf\xe9".dup.force_encoding("ISO-8859-1")
  ice = "ice".dup.freeze
  tm = Time.at(1_700_000_000, 5, :nsec).utc
  date = Date.new(2024, 2, 29)
  dec = BigDecimal("123.450")
  io = $stderr
  thr = Thread.current
  tiny = 1e-300
  spaced = :"a b"
  empty_dflt = Hash.new(5)
  Report.explode(order)
end
values(Order.new([Point.new(3, 4)]))
"##;

/// Runs the app under `rbscope run`; it must fail. Returns the snapshot's id.
fn captured(sb: &Sandbox) -> String {
    sb.write("model.rb", MODEL);
    let app = sb.write("app.rb", APP);
    sb.run_failing(&app)
}

/// Checks in Ruby; each prints its name when it fails, so the assertion names them.
const CHECKS: &str = r##"
fresh = "fresh_#{1 + 1}".to_sym # made here before the restore: a dynamic symbol
r = Rbscope.restore(ID, console: false)
f0, f1 = r.frames
l = f1.locals
order = l[:order]
raises = ->(&b) { begin; b.call; false; rescue NotImplementedError; true; end }
lam_line = File.readlines("app.rb").index { |line| line.include?("lam = ->") } + 1
cuts = r.cut_values.map { |c| [c.where, c.reason] }
checks = {
  # Classes and modules as values.
  class_method_self: f0.self_object.equal?(Report),
  klass: l[:klass].equal?(String),
  class_keys: l[:by_class][Class] == 17 && l[:by_class][Comparable] == 3,
  anon: l[:anon].is_a?(Class) && l[:anon] < Base && l[:anon].name.nil? &&
        l[:anon].inspect.match?(/\A#<Class:0x\h+> \(restored anonymous class\)\z/),
  anon_instance: l[:anon_obj].class.equal?(l[:anon]),
  anon_module: l[:anon_mod].instance_of?(Module) && l[:anon_mod].inspect.include?("#<Module:0x"),
  # Symbols.
  sym_dynamic: l[:sym_new].equal?(fresh),
  sym_utf8: l[:sym_utf8] == :"héllo" && l[:sym_utf8].encoding == Encoding::UTF_8,
  sym_sjis: l[:sym_sjis] == "\x82\xa0".dup.force_encoding("Shift_JIS").to_sym &&
            l[:sym_sjis].encoding == Encoding::Shift_JIS,
  sym_binary: l[:sym_bin] == "\xff".b.to_sym,
  # Composite keys.
  array_key: l[:pairs][[1, 2]] == "a",
  struct_key: l[:pairs][Point.new(1, 2)] == "p",
  own_hash_key: l[:pairs][Key.new(7)] == "k",
  data_key: Pt.nil? || (l[:data_key][Pt.new(1, [2])] == "d" && l[:data_key].keys[0].frozen?),
  group_by: l[:grouped][["a", 5]] == ["apple"] && l[:grouped][["b", 6]] == ["banana"],
  set_of_arrays: l[:set_of_arrays].include?([1, 2]) && l[:set_of_arrays].include?([3, 4]),
  identity: l[:ident].compare_by_identity? && l[:ident][l[:ident].keys.first] == :x && l[:ident][[1]].nil?,
  # Cut values.
  long: l[:long].bytesize == 4096 && l[:long].inspect.end_with?(" [cut: kept 4096 of 10000 bytes]") &&
        Rbscope::Restored::Truncated === l[:long],
  many: l[:many].size == 1000 && l[:many].inspect.end_with?(" [cut: kept 1000 of 1500 items]"),
  big_hash: l[:big_hash].size == 1000 && l[:big_hash][1000] == 1000 &&
            l[:big_hash].inspect.end_with?(" [cut: kept 1000 of 1200 entries]"),
  whole_not_marked: !(Rbscope::Restored::Truncated === l[:grouped]) && !l[:pairs].inspect.include?("[cut:"),
  cut_listed: cuts.include?(["frame 1: long", "kept 4096 of 10000 bytes"]) &&
              cuts.include?(["frame 1: many", "kept 1000 of 1500 items"]) &&
              cuts.include?(["frame 1: big_hash", "kept 1000 of 1200 entries"]) &&
              cuts.any? { |w, why| w.start_with?("frame 1: deep[0][0]") && why == "depth limit" } &&
              cuts.any? { |w, _| w.start_with?('frame 1: nested[:a]["b"][0][0]') },
  snapshot_lists_them: r.info.cut_values.size == r.cut_values.size,
  # Redacted values are inert markers.
  redacted: Rbscope::Restored::Redacted === l[:password] && l[:password].upcase.strip.to_s == "[REDACTED: name]" &&
            "#{l[:password]}" == "[REDACTED: name]" && !l[:password].respond_to?(:to_str),
  redacted_in_hash: l[:creds].inspect.include?("[REDACTED: name]") && l[:creds][:user] == "ada" &&
                    !l[:creds].to_s.empty?,
  # Extended objects, singleton methods, default procs, callables.
  extended: l[:extended].greet == "hi from Object" && l[:extended].singleton_class.include?(Greeter),
  singleton_methods: l[:single].singleton_methods == [:shout] && raises.call { l[:single].shout },
  default_proc: l[:dflt].default_proc.is_a?(Proc) && l[:dflt].default_proc.arity == 2 &&
                !l[:dflt].default_proc.lambda? && raises.call { l[:dflt][:missing] } && l[:dflt].empty?,
  lambda: l[:lam].lambda? && l[:lam].arity == 2 && File.basename(l[:lam].source_location[0]) == "app.rb" &&
          l[:lam].source_location[1] == lam_line &&
          raises.call { l[:lam].call(1, 2) },
  method: l[:meth].owner.equal?(Order) && l[:meth].name == :lines && l[:meth].receiver.equal?(order) &&
          l[:meth].arity == 0,
  # What already worked.
  no_initialize: l[:noinit].class == NoInit && l[:noinit].instance_variable_get(:@v) == 1,
  cycle: l[:cyc][0].equal?(l[:cyc]) && order.instance_variable_get(:@me).equal?(order),
  shared_across_frames: f0.locals[:order].equal?(order) && f0.locals[:total] == 1,
  encoding: l[:latin].encoding == Encoding::ISO_8859_1 && l[:latin].bytes.last == 0xe9,
  frozen: l[:ice].frozen? && l[:ice] == "ice" && !l[:long].frozen?,
  time: l[:tm] == Time.at(1_700_000_000, 5, :nsec).utc,
  date: l[:date] == Date.new(2024, 2, 29),
  bigdecimal: l[:dec] == BigDecimal("123.450"),
  io: l[:io].is_a?(Rbscope::Restored::Opaque) && l[:thr].is_a?(Rbscope::Restored::Opaque),
  struct: order.lines == [Point.new(3, 4)],
}
bad = checks.reject { |_, ok| ok }.keys
puts bad.empty? ? "ALL OK" : "FAILED #{bad.inspect}"
"##;

#[test]
fn every_value_kind_comes_back_as_it_was() {
    let sb = Sandbox::new();
    let id = captured(&sb);

    // What format 2 stored, as `show --json` gives it.
    let snap = sb.show(&id);
    let s = Snap(&snap);
    let f = s.frame("Object#values");
    let obj = |n: &str| s.obj(s.local(f, n));
    assert_eq!(snap["format_version"], 3);
    assert_eq!(obj("extended")["extended"], serde_json::json!(["Greeter"]));
    assert_eq!(
        obj("single")["singleton_methods"],
        serde_json::json!(["shout"])
    );
    assert!(obj("anon")["anonymous_path"]
        .as_str()
        .unwrap()
        .starts_with("#<Class:0x"));
    assert_eq!(obj("anon")["superclass"], "Base");
    assert_eq!(obj("anon_obj")["class"], obj("anon")["anonymous_path"]);
    assert_eq!(obj("meth")["receiver"], *s.local(f, "order"));
    let sjis = s.local(f, "sym_sjis");
    assert_eq!(sjis["encoding"], "Shift_JIS");
    assert_eq!(sjis["base64"], "gqA=");
    assert_eq!(s.local(f, "sym_utf8")["value"], "héllo");
    assert!(
        obj("klass").get("anonymous_path").is_none(),
        "a named class has no extras"
    );

    // `show` writes strings, symbols and floats as Ruby's inspect does, and shows a default.
    let text = sb.show_text(&id);
    for want in [
        "tiny = 1.0e-300\n",
        "spaced = :\"a b\"\n",
        "latin = \"caf\\xE9\" (ISO-8859-1)\n",
        "sym_sjis = :\"\\x{82A0}\" (Shift_JIS)\n",
        "sym_bin = :\"\\xFF\" (ASCII-8BIT)\n",
        "sym_utf8 = :héllo\n",
        "empty_dflt = Hash (0 entries)\n        (default) = 5\n",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }

    // In Ruby, without a console.
    let out = sb.restore_check(&format!("ID = {id:?}\n{CHECKS}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert_eq!(text.trim(), "ALL OK", "{}", stderr(&out));

    // In the console, as a user types.
    let input = [
        r#"puts "SELF=#{self.inspect}""#,
        "up",
        r#"puts "K=#{klass.inspect} S=#{sym_utf8 == "h\u00e9llo".to_sym} P=#{pairs[[1, 2]]}""#,
        r#"puts "LONG=#{long.inspect[-40..]}""#,
        r#"puts "MANY=#{many.inspect[-40..]}""#,
        r#"puts "PW=#{password.inspect} CREDS=#{creds.inspect}""#,
        r#"puts "CUTS=#{snapshot.cut_values.map(&:where).sort.join(";")}""#,
        r#"puts "ANON=#{anon_obj.class.inspect}""#,
    ]
    .join("\n");
    let out = with_input(sb.cli().args(["restore", &id, "-r", "./model"]), &input);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    for want in [
        "SELF=Report",
        "K=String S=true P=a",
        r#"xxxxx" [cut: kept 4096 of 10000 bytes]"#,
        "1000] [cut: kept 1000 of 1500 items]",
        "PW=[REDACTED: name] CREDS={",
        "CUTS=",
        "frame 1: big_hash;",
        "frame 1: deep[0][0][0]",
        "frame 1: long;frame 1: many",
        "(restored anonymous class)",
    ] {
        assert!(
            text.contains(want),
            "no {want:?} in:\n{text}\n{}",
            stderr(&out)
        );
    }
    assert!(!text.contains("unknown kind"), "{text}");
}

/// A format 1 snapshot (the one the real agent wrote on Ruby 3.1, kept as a golden fixture)
/// still restores, with what format 1 has: classes as values, cut marks from the stored
/// lengths, a method whose receiver says it was not stored.
#[test]
fn a_format_1_snapshot_restores() {
    let sb = Sandbox::new();
    captured(&sb); // makes the store and its key
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rbscope-snapshot/tests/fixtures/agent-ruby-3.1-v1.bin");
    let body = std::fs::read(fixture).unwrap();
    assert_eq!(u16::from_le_bytes([body[6], body[7]]), 1, "a format 1 file");
    let snap = rbscope_snapshot::decode(&body).unwrap();
    sb.insert_signed(&snap, &body);

    let checks = r##"
class Holder; end # Point is the model's
r = Rbscope.restore(ID, console: false)
l = r.frames[0].locals
cuts = r.cut_values.map(&:where)
checks = {
  klass: l[:klass].equal?(Holder),
  anon: l[:anon].is_a?(Class) && l[:anon].inspect == "#<Class:(anonymous)> (restored anonymous class)",
  sym: l[:sym].equal?(:status),
  long: l[:long].inspect.end_with?("[cut: kept 4096 of 10000 bytes]"),
  method: l[:meth].owner.equal?(Integer) && l[:meth].name == :+ &&
          l[:meth].receiver.inspect == "[not captured: receiver not stored]",
  unbound: l[:unbound].receiver.nil?,
  default_proc: l[:hproc].default_proc.arity == 2,
  cycle: l[:holder].instance_variable_get(:@me).equal?(l[:holder]),
  cut_listed: cuts.include?("frame 0: long") && cuts.any? { |w| w.start_with?("frame 0: chain[0][0]") },
  redacted: Rbscope::Restored::Redacted === l[:password],
  point: l[:pt] == Point.new(1, 2),
}
bad = checks.reject { |_, ok| ok }.keys
puts bad.empty? ? "ALL OK" : "FAILED #{bad.inspect}"
"##;
    let out = sb.restore_check(&format!("ID = {:?}\n{checks}", snap.id));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert_eq!(text.trim(), "ALL OK", "{}", stderr(&out));
}

/// A redacted column never breaks an ActiveRecord record: it inspects, lists its attributes and
/// reads its other columns; a relation's `@klass` is the live model class. `show` prints a
/// record as its attributes (redacted, unselected and uncast ones marked) and
/// `ActionController::Parameters` as its entries; both restore and read as in the app.
#[test]
fn a_record_with_a_redacted_column_stays_readable() {
    if !debian_gems_available("Rails 6.1 (ActiveRecord, sqlite3)") {
        return;
    }
    let sb = Sandbox::new();
    sb.write(
        "model.rb",
        r#"
require "active_record"
require "action_controller"
ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: ":memory:")
ActiveRecord::Base.logger = nil
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table(:users) { |t| t.string :name; t.string :password_digest; t.integer :age; t.datetime :seen_at }
end
class User < ActiveRecord::Base; end
"#,
    );
    let app = sb.write(
        "app.rb",
        r#"require_relative "model"
def go
  User.create!(name: "ada", password_digest: "xyz", age: 36, seen_at: Time.utc(2024, 2, 29, 13, 5, 9))
  user = User.first
  user.name
  rel = User.where(age: 36)
  partial = User.select(:id, :name).first
  fresh = User.new(name: "bob", age: "7")
  params = ActionController::Parameters.new(user: { name: "ada", password: "pw" }, id: "1")
  permitted = params.require(:user).permit(:name)
  raise "boom"
end
go
"#,
    );
    let id = sb.run_failing(&app);
    let checks = r##"
r = Rbscope.restore(ID, console: false)
l = r.frames[0].locals
u = l[:user]
checks = {
  record: u.class == User && u.name == "ada" && u.age == 36,
  inspect: u.inspect == '#<User id: 1, name: "ada", password_digest: [REDACTED: name], age: 36, seen_at: "2024-02-29 13:05:09.000000000 +0000">',
  attributes: u.attributes.keys == %w[id name password_digest age seen_at] &&
              Rbscope::Restored::Redacted === u.attributes["password_digest"],
  to_s: u.to_s.start_with?("#<User:"),
  relation_class: l[:rel].klass.equal?(User),
  params_inspect: l[:params].inspect == '#<ActionController::Parameters {"user"=>#<ActionController::Parameters {"name"=>"ada", "password"=>[REDACTED: name]} permitted: false>, "id"=>"1"} permitted: false>',
  params_read: l[:params][:id] == "1" && l[:params]["user"][:name] == "ada" &&
               Rbscope::Restored::Redacted === l[:params][:user][:password] && !l[:params].permitted?,
  permitted: l[:permitted].permitted? && l[:permitted].to_h == { "name" => "ada" },
}
bad = checks.reject { |_, ok| ok }.keys
puts bad.empty? ? "ALL OK" : "FAILED #{bad.inspect}"
"##;
    let out = sb.restore_check(&format!("ID = {id:?}\n{checks}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert_eq!(text.trim(), "ALL OK", "{}", stderr(&out));

    // `show` at its default depth: the attributes, not the attribute set's insides.
    let text = sb.show_text(&id);
    let user = r#"
      user = #<User> (5 attributes)
        id = 1
        name = "ada"
        password_digest = [REDACTED: name]
        age = 36
        seen_at = "2024-02-29 13:05:09"  (before type cast)
"#;
    assert!(text.contains(user), "{text}");
    let partial = r#"
      partial = #<User> (5 attributes)
        id = 1
        name = "ada"
        password_digest = (not loaded: the query did not select it)
"#;
    assert!(text.contains(partial), "{text}");
    let fresh = r#"
      fresh = #<User> (new record, 5 attributes)
        id = nil
        name = "bob"
        password_digest = [REDACTED: name]
        age = "7"  (before type cast)
        seen_at = nil
"#;
    assert!(text.contains(fresh), "{text}");
    let params = r#"
      params = #<ActionController::Parameters permitted: false> (2 entries)
        "user" => #<ActionController::Parameters permitted: false> (2 entries)
          "name" #"#;
    assert!(text.contains(params), "{text}");
    assert!(
        text.contains("\n          \"password\" => [REDACTED: name]\n        \"id\" => \"1\"\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "      permitted = #<ActionController::Parameters permitted: true> (1 entry)\n"
        ),
        "{text}"
    );
    assert!(!text.contains("LazyAttributeSet"), "{text}");
    // --raw shows the objects Rails keeps them in.
    let out = sb.cli().args(["show", &id, "--raw"]).output().unwrap();
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(
        raw.contains("@attributes = #<ActiveModel::LazyAttributeSet>"),
        "{raw}"
    );
    assert!(
        raw.contains("@parameters = ActiveSupport::HashWithIndifferentAccess"),
        "{raw}"
    );
}
