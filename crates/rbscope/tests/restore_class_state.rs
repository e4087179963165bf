//! Class-level state: the class instance variables and class variables of the classes a
//! failure's frames used are captured (bounded, redacted) by a real program under `rbscope
//! run`, shown by `rbscope show`, and restored beside the live classes' values
//! (`class_state(Cfg)`), never written into a live class unless asked (`apply!`).

mod common;
use common::*;

/// The app's classes. Loading them (as the restore does with `-r ./model`) sets today's values:
/// `@limit` 3, `@@loads` 0.
const MODEL: &str = r#"
module Billing
  class Config
    @limit = 3
    @@loads = 0
    @@api_key = "k-123"
    class << self
      attr_accessor :limit
      def load! = @@loads += 1
      def check!(lines)
        raise "over the limit: #{lines.size} > #{@limit}" if lines.size > @limit
      end
    end
  end
end
class Cart
  @@created = 0
  @registry = { "default" => [] }
  class << self
    attr_reader :registry
  end
  def initialize(lines)
    @@created += 1
    @lines = lines
    Cart.registry["default"] << self
  end
  def checkout = Billing::Config.check!(@lines)
end
"#;

/// At the failure: `@limit` 2 and `@@loads` 2 (changed at run time), two carts created.
const APP: &str = r#"
require_relative "model"
Billing::Config.load!
Billing::Config.load!
Billing::Config.limit = 2
Cart.new([1])
cart = Cart.new([1, 2, 3])
cart.checkout
"#;

fn captured(sb: &Sandbox) -> String {
    sb.write("model.rb", MODEL);
    let app = sb.write("app.rb", APP);
    sb.run_failing(&app)
}

/// The class-level state of `class` in `show --json`: its variables by name.
fn vars<'a>(snap: &'a serde_json::Value, class: &str) -> Vec<(&'a str, &'a serde_json::Value)> {
    let classes = snap["class_state"].as_array().expect("a class_state list");
    let c = classes
        .iter()
        .find(|c| c["class"] == class)
        .unwrap_or_else(|| panic!("no class state for {class} in {classes:?}"));
    c["vars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), &v["value"]))
        .collect()
}

#[test]
fn class_level_state_is_captured_shown_and_restored_beside_the_live_values() {
    let sb = Sandbox::new();
    let id = captured(&sb);

    // Stored: the class-method frame's class and the instance frame's class, with the values
    // at the failure; a secret-looking class variable redacted; the objects shared with the
    // frames by reference.
    let snap = sb.show(&id);
    assert_eq!(snap["format_version"], 3);
    let s = Snap(&snap);
    let config = vars(&snap, "Billing::Config");
    let named = |list: &[(&str, &serde_json::Value)], n: &str| {
        list.iter()
            .find(|(name, _)| *name == n)
            .map(|(_, v)| (*v).clone())
            .unwrap_or_else(|| panic!("no {n} in {list:?}"))
    };
    assert_eq!(named(&config, "@limit")["value"], 2);
    assert_eq!(named(&config, "@@loads")["value"], 2);
    assert_eq!(named(&config, "@@api_key")["type"], "redacted");
    let cart = vars(&snap, "Cart");
    assert_eq!(named(&cart, "@@created")["value"], 2);
    let registry = s.obj(&named(&cart, "@registry"));
    let default_list = s.obj(&registry["entries"][0]["value"]);
    let checkout = s.frame("Cart#checkout");
    assert_eq!(
        default_list["items"][1], checkout["self"],
        "the frame's cart, by reference"
    );

    // `show` prints it after the frames.
    let text = sb.show_text(&id);
    let section = text
        .split("\nclass-level state at the failure\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no class-level state section in:\n{text}"));
    for want in [
        "  Billing::Config\n",
        "    @limit = 2\n",
        "    @@loads = 2\n",
        "    @@api_key = [REDACTED: name]\n",
        "  Cart\n",
        "    @@created = 2\n",
    ] {
        assert!(section.contains(want), "no {want:?} in:\n{section}");
    }

    // In Ruby, with the app's classes loaded: the captured values beside today's, the live
    // classes untouched until `apply!`.
    let checks = r##"
r = Rbscope.restore(ID, console: false)
cfg = r.class_state(Billing::Config)
cart_state = r.class_state("Cart")
checkout = r.frames.find { |f| f.label.start_with?("Cart#checkout") }
missing = begin; r.class_state(String); nil; rescue ArgumentError => e; e.message; end
checks = {
  captured: cfg["@limit"] == 2 && cfg[:@@loads] == 2 && Rbscope::Restored::Redacted === cfg["@@api_key"],
  live: cfg.live == { "@limit" => 3, "@@loads" => 0, "@@api_key" => "k-123" },
  changed: cfg.changed == ["@limit", "@@loads"],
  untouched: Billing::Config.limit == 3 && Billing::Config.class_variable_get(:@@loads) == 0,
  shared: cart_state["@registry"]["default"][1].equal?(checkout.self_object) &&
          cart_state["@@created"] == 2,
  info: r.info.class_state(Cart).equal?(cart_state) && r.class_state.map(&:class_path) == ["Billing::Config", "Cart"],
  inspect: cfg.inspect.include?("@limit = 2   (now 3)") && cfg.inspect.include?("@@api_key = [REDACTED: name]"),
  missing: missing == "rbscope: no class-level state was captured for String; captured: Billing::Config, Cart",
  apply: cfg.apply! == ["@limit", "@@loads"] && Billing::Config.limit == 2 &&
         Billing::Config.class_variable_get(:@@loads) == 2 &&
         Billing::Config.class_variable_get(:@@api_key) == "k-123" && cfg.changed.empty?,
}
bad = checks.reject { |_, ok| ok }.keys
puts bad.empty? ? "ALL OK" : "FAILED #{bad.inspect}"
"##;
    let out = sb.restore_check(&format!("ID = {id:?}\n{checks}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert_eq!(text.trim(), "ALL OK", "{}", stderr(&out));

    // In the console, as a user types: the class-method frame's own state, beside today's.
    let input = [
        "class_state(Billing::Config)",
        r#"puts "LIVE=#{Billing::Config.limit}""#,
        r#"puts "ALL=#{class_state.map(&:class_path).join(",")}""#,
        r#"puts "SNAP=#{snapshot.class_state(Cart)["@@created"]}""#,
    ]
    .join("\n");
    let out = with_input(sb.cli().args(["restore", &id, "-r", "./model"]), &input);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    for want in [
        "#<class-level state of Billing::Config at the failure",
        "@limit = 2   (now 3)",
        "@@loads = 2   (now 0)",
        "LIVE=3",
        "ALL=Billing::Config,Cart",
        "SNAP=2",
    ] {
        assert!(
            text.contains(want),
            "no {want:?} in:\n{text}\n{}",
            stderr(&out)
        );
    }

    // Without the app's classes: the stand-in classes hold the values at the failure.
    let input = [
        r#"puts "LIMIT=#{Billing::Config.instance_variable_get(:@limit)}""#,
        "class_state(Billing::Config)",
    ]
    .join("\n");
    let out = with_input(sb.cli().args(["restore", &id]), &input);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    for want in [
        "LIMIT=2",
        "(Billing::Config is a restored stand-in here: it holds these values)",
    ] {
        assert!(
            text.contains(want),
            "no {want:?} in:\n{text}\n{}",
            stderr(&out)
        );
    }
}
