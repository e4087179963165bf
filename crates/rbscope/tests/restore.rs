//! Restoring snapshots: real Ruby objects of the app's classes, identity kept, value types as
//! themselves, stand-ins for what cannot or must not be rebuilt, IRB in the frame, and the
//! signature check.

mod common;
use common::*;
use std::process::Command;

const MODEL: &str = r#"
require "set"
require "date"
require "bigdecimal"
Line = Struct.new(:sku, :qty)
class Order
  attr_reader :lines
  def initialize(lines)
    @lines = lines
    @me = self
    @token = "t" + "0p"
    @placed_on = Date.new(2024, 1, 31)
  end
end
"#;

const APP: &str = r#"
require_relative "model"
class NotInModel
  def initialize; @note = "only in the app"; end
end
def checkout(order, discount)
  tags = Set[:gift]
  price = BigDecimal("19.99")
  when_ = Time.at(1_700_000_000).utc
  same = order.lines
  callback = ->(x) { x * 2 }
  anon = Class.new.new
  other = NotInModel.new
  io = $stderr
  raise "declined"
end
checkout(Order.new([Line.new("A-1", 2)]), 0.1)
"#;

fn captured(sb: &Sandbox) -> String {
    sb.write("model.rb", MODEL);
    crash(sb, "app.rb", APP)
}

/// Runs `source` under the agent; it must fail. Returns the newest snapshot's id.
fn crash(sb: &Sandbox, name: &str, source: &str) -> String {
    let app = sb.write(name, source);
    let out = sb
        .ruby(&app)
        .env("RUBYOPT", "-rrbscope/autostart")
        .output()
        .unwrap();
    assert!(!out.status.success());
    sb.list()[0]["id"].as_str().unwrap().to_string()
}

fn ruby_check(sb: &Sandbox, code: &str) -> std::process::Output {
    Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .arg("-r./model")
        .arg("-rrbscope/restore")
        .args(["-e", code])
        .current_dir(sb.dir.path())
        .env("RBSCOPE_STORE", sb.store())
        .env_remove("RUBYOPT")
        .output()
        .unwrap()
}

#[test]
fn objects_come_back_as_themselves() {
    let sb = Sandbox::new();
    let id = captured(&sb);
    let out = ruby_check(
        &sb,
        &format!(
            r#"
r = Rbscope.restore("{id}", console: false)
f = r.frames[0]
l = f.locals
order = l[:order]
checks = {{
  label: f.label == "Object#checkout(order, discount)",
  order_class: order.class == Order,
  cycle: order.instance_variable_get(:@me).equal?(order),
  shared: l[:same].equal?(order.lines),
  struct: order.lines.first == Line.new("A-1", 2),
  date: order.instance_variable_get(:@placed_on) == Date.new(2024, 1, 31),
  redacted: order.instance_variable_get(:@token).is_a?(Rbscope::Restored::Redacted),
  set: l[:tags] == Set[:gift],
  bigdecimal: l[:price] == BigDecimal("19.99"),
  time: l[:when_] == Time.at(1_700_000_000).utc,
  float: l[:discount] == 0.1,
  proc_stand_in: l[:callback].is_a?(Rbscope::Restored::Callable) && l[:callback].source_location[1] == 11,
  missing_class: l[:other].class.name == "NotInModel" && l[:other].class.is_a?(Rbscope::Restored::StandIn) &&
                 l[:other].note == "only in the app",
  anonymous: Rbscope::Restored::Missing === l[:anon],
  opaque: l[:io].is_a?(Rbscope::Restored::Opaque),
  frozen_literal_kept: true,
}}
bad = checks.reject {{ |_, ok| ok }}.keys
puts bad.empty? ? "ALL OK" : "FAILED #{{bad.inspect}}"
"#
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ALL OK");
}

#[test]
fn console_is_back_in_the_frame() {
    let sb = Sandbox::new();
    let id = captured(&sb);
    let out = with_input(
        sb.cli().args(["restore", &id, "-r", "./model"]),
        "puts \"SELF=#{self.class} ORDER=#{order.class} DISCOUNT=#{discount}\"\nframes\nup\nputs \"UP=#{self.inspect[0, 20]}\"\ndown\nputs \"SKU=#{order.lines.first.sku}\"\nputs \"EXC=#{snapshot.exception_class}\"\n",
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(
        text.contains("SELF=Object ORDER=Order DISCOUNT=0.1"),
        "{text}"
    );
    assert!(
        text.contains("=> 0 Object#checkout(order, discount)"),
        "{text}"
    );
    assert!(
        text.contains("rbscope: in frame 1 Object$singleton#<main>()"),
        "{text}"
    );
    assert!(text.contains("UP=#<Object:"), "{text}");
    assert!(text.contains("SKU=A-1"), "{text}");
    assert!(text.contains("EXC=RuntimeError"), "{text}");
}

#[test]
fn unsigned_or_tampered_snapshots_are_refused_unless_trusted() {
    let sb = Sandbox::new();
    let id = captured(&sb);
    let key = rbscope_key(&sb);
    std::fs::write(&key, [7u8; 32]).unwrap();
    let out = sb.cli().args(["restore", &id]).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not match the store's key"), "{err}");
    // The same check inside Ruby.
    let out = ruby_check(
        &sb,
        &format!(
            "begin; Rbscope.restore('{id}', console: false); rescue => e; puts e.message; end"
        ),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pass --trust"),
        "{}",
        stderr(&out)
    );
    // Trusted explicitly: it restores.
    let out = ruby_check(
        &sb,
        &format!("p Rbscope.restore('{id}', trust: true, console: false).frames.size"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&key).unwrap();
    let out = sb.cli().args(["restore", &id]).output().unwrap();
    assert!(stderr(&out).contains("no key file"), "{}", stderr(&out));
}

fn rbscope_key(sb: &Sandbox) -> std::path::PathBuf {
    let mut p = sb.store().into_os_string();
    p.push(".key");
    let p = std::path::PathBuf::from(p);
    assert!(p.is_file(), "the writer made no key at {}", p.display());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    p
}

#[test]
fn nothing_stored_is_evaluated() {
    let sb = Sandbox::new();
    sb.write("model.rb", "");
    let marker = sb.dir.path().join("pwned");
    // A hand-made snapshot naming code instead of classes: restore must only look constants up.
    let code = format!(
        r#"
evil = "Object.send(:system, 'touch {m}')"
objects = [
  [:object, evil, false, []],
  [:module, "Module", false, [], evil],
  [:magic, "X", false, [], "Kernel.exit!"],
  [:regexp, "Regexp", false, [], "\#{{`touch {m}`}}", 0],
  [:struct, evil, false, [], ["a", 1]],
  [:exception, evil, false, [], "m"],
]
frame = ["x", nil, "x.rb", 1, [0], ["a", [1], "b", [2], "c", [3], "d", [4], "e", [5]], nil, nil]
r = Rbscope::Restore.new([1, "X", [evil, "m", []], [frame], objects, "{{}}"])
f = r.frames[0]
puts [Rbscope::Restored::Missing === f.self_object, Rbscope::Restored::Missing === f.locals[:a],
      Rbscope::Restored::Missing === f.locals[:b], f.locals[:c].class,
      Rbscope::Restored::Missing === f.locals[:d], f.locals[:e].class].inspect
"#,
        m = marker.display()
    );
    let out = ruby_check(&sb, &code);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[true, true, true, Regexp, true, StandardError]"
    );
    assert!(!marker.exists(), "stored text was executed");
}

#[test]
fn a_console_works_when_self_is_a_stand_in() {
    let sb = Sandbox::new();
    let id = crash(
        &sb,
        "gone.rb",
        "class Gone\n  def initialize; @note = \"kept\"; end\n  def go(x) = raise(\"boom #{x}\")\nend\nGone.new.go(7)\n",
    );
    // Restored without loading the app: self is a stand-in, yet locals and ivars are there.
    let out = with_input(
        sb.cli().args(["restore", &id]),
        "puts \"X=#{x} NOTE=#{@note}\"\nputs \"SELF=#{self.inspect}\"\n",
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains("X=7 NOTE=kept"), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("SELF=#<Gone (restored stand-in: class not loaded here) @note=\"kept\">"),
        "{text}"
    );
}
