//! The restore console is back in the frame: the app's lexical scope (so the failing line can
//! be pasted and re-run, and rbscope's own names never shadow the app's), the frame's
//! `__method__`/`__FILE__`/`__LINE__`, errors that show the app's frames only, and stand-in
//! classes under the app's names when the app is not loaded.

mod common;
use common::*;

/// Constants named like rbscope's own (Frame, Info, Native inside the app's module; Console,
/// Restored at the top level), a struct, a class method frame, and a failing line that reads a
/// constant through the lexical scope.
const MODEL: &str = r#"Console = "the app's Console"
Restored = "the app's Restored"
module Shop
  LIMIT = 2
  Frame = "the app's Frame"
  Info = "the app's Info"
  Native = "the app's Native"
  Line = Struct.new(:sku, :qty)
  class Cart
    def initialize(lines) = @lines = lines
    def check!
      raise ArgumentError, "too many lines: #{@lines.size}" if @lines.size > LIMIT
    end
  end
  module Pricing
    def self.total(cart) = cart.check!
  end
end
"#;

const APP: &str = r#"require_relative "model"
Shop::Pricing.total(Shop::Cart.new([Shop::Line.new("A-1", 2), Shop::Line.new("B-2", 1), Shop::Line.new("C-3", 5)]))
"#;

/// The failing line of MODEL, as a developer pastes it.
const FAILING_LINE: &str =
    "raise ArgumentError, \"too many lines: #{@lines.size}\" if @lines.size > LIMIT";

/// Runs APP under the agent (it fails in Shop::Cart#check!) and returns the snapshot's id.
fn captured(sb: &Sandbox) -> String {
    sb.write("model.rb", MODEL);
    let app = sb.write("app.rb", APP);
    let out = sb
        .ruby(&app)
        .env("RUBYOPT", "-rrbscope/autostart")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the app did not fail");
    sb.list()[0]["id"].as_str().unwrap().to_string()
}

fn console(sb: &Sandbox, id: &str, require_app: bool, input: &str) -> String {
    let mut cmd = sb.cli();
    cmd.args(["restore", id]);
    if require_app {
        cmd.args(["-r", "./model"]);
    }
    let out = with_input(&mut cmd, input);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    text
}

/// Ruby 3.4 quotes backtrace labels as 'label', earlier Rubies as `label'.
fn in_label(label: &str) -> String {
    if ruby_at_least(3, 4) {
        format!(":in '{label}'")
    } else {
        format!(":in `{label}'")
    }
}

/// No line of the console's own machinery (IRB, rbscope's Ruby files, the `ruby -e` that
/// started it) in what the console printed.
fn assert_no_internals(text: &str) {
    for internal in [
        "/irb.rb",
        "/irb/",
        "rbscope/console.rb",
        "rbscope/restore.rb",
        "rbscope/restored.rb",
        "rbscope/frame_scope.rb",
        "-e:1",
    ] {
        assert!(
            !text.contains(internal),
            "console output shows {internal}:\n{text}"
        );
    }
}

#[test]
fn the_failing_line_reruns_in_the_frames_own_scope() {
    let sb = Sandbox::new();
    let id = captured(&sb);
    let input = format!(
        "puts \"RERUN=#{{@lines.size > LIMIT}}\"\n\
         {FAILING_LINE}\n\
         puts \"NESTING=#{{Module.nesting.inspect}} METHOD=#{{__method__.inspect}} AT=#{{File.basename(__FILE__)}}:#{{__LINE__}}\"\n\
         puts \"CONSTS=#{{[Frame, Info, Native, Console, Restored, Line].inspect}}\"\n\
         puts \"SELF=#{{self.class.name}} STANDIN=#{{self.class.is_a?(Rbscope::Restored::StandIn)}} LOCALS=#{{local_variables.reject {{ |l| l == :_ }}.inspect}}\"\n\
         Pricing.total(self)\n\
         no_such_name\n\
         up\n\
         puts \"UP=#{{Module.nesting.inspect}} #{{__method__.inspect}} #{{cart.class.name}} #{{__LINE__}}\"\n"
    );
    let text = console(&sb, &id, true, &input);
    assert!(text.contains("RERUN=true"), "{text}");
    // The pasted line fails as it did in production, at the frame's line, named as the frame.
    let failure = format!(
        "model.rb:12{}: too many lines: 3 (ArgumentError)",
        in_label("Shop::Cart#check!")
    );
    assert!(text.contains(&failure), "no {failure:?} in:\n{text}");
    assert!(
        text.contains("NESTING=[Shop::Cart, Shop] METHOD=:check! AT=model.rb:12"),
        "{text}"
    );
    assert!(
        text.contains(
            "CONSTS=[\"the app's Frame\", \"the app's Info\", \"the app's Native\", \
             \"the app's Console\", \"the app's Restored\", Shop::Line]"
        ),
        "{text}"
    );
    assert!(
        text.contains("SELF=Shop::Cart STANDIN=false LOCALS=[]"),
        "{text}"
    );
    // An error in the app's code called from the console: the app's frames, then the input's,
    // and nothing below it.
    let from: Vec<&str> = text.lines().filter(|l| l.starts_with("\tfrom ")).collect();
    assert_eq!(from.len(), 2, "{text}");
    assert!(
        from[0].contains("model.rb:16")
            && from[1].ends_with(&format!("model.rb:12{}", in_label("Shop::Cart#check!"))),
        "{from:?}"
    );
    let undefined = format!(
        "model.rb:12{}: undefined local variable or method",
        in_label("Shop::Cart#check!")
    );
    assert!(text.contains(&undefined), "{text}");
    assert_no_internals(&text);
    // The class method's frame: its module's scope, its method, its line.
    assert!(
        text.contains("UP=[Shop::Pricing, Shop] :total Shop::Cart 16"),
        "{text}"
    );
}

#[test]
fn stand_ins_take_the_apps_names_when_the_app_is_not_loaded() {
    let sb = Sandbox::new();
    let id = captured(&sb);
    let input = "puts \"CLASS=#{self.class.name} STANDIN=#{self.class.is_a?(Rbscope::Restored::StandIn)} SHOP=#{Shop.class}\"\n\
                 puts \"SKU=#{@lines.first.sku} QTY=#{@lines.last.qty} LINE=#{@lines.first.class.name} MEMBERS=#{@lines.first.class.members.inspect}\"\n\
                 puts \"READER=#{lines.size} NESTING=#{Module.nesting.map(&:name).inspect} METHOD=#{__method__.inspect}\"\n\
                 puts \"SELF=#{inspect}\"\n\
                 check!\n\
                 @lines.size > LIMIT\n\
                 up\n\
                 puts \"UP=#{name} #{is_a?(Rbscope::Restored::StandIn)} #{Module.nesting.map(&:name).inspect}\"\n";
    let text = console(&sb, &id, false, input);
    assert!(
        text.contains("CLASS=Shop::Cart STANDIN=true SHOP=Module"),
        "{text}"
    );
    assert!(
        text.contains("SKU=A-1 QTY=5 LINE=Shop::Line MEMBERS=[:sku, :qty]"),
        "{text}"
    );
    assert!(
        text.contains("READER=3 NESTING=[\"Shop::Cart\", \"Shop\"] METHOD=:check!"),
        "{text}"
    );
    assert!(
        text.contains(
            "SELF=#<Shop::Cart (restored stand-in: class not loaded here) @lines=[#<struct Shop::Line \
             (restored stand-in: class not loaded here) sku=\"A-1\", qty=2>"
        ),
        "{text}"
    );
    // The app's own methods are not there, and say why; its constants were not captured.
    assert!(
        text.contains("undefined method 'check!' for a restored stand-in of Shop::Cart"),
        "{text}"
    );
    assert!(text.contains("uninitialized constant"), "{text}");
    // The class method's frame: self is the stand-in module, in its own scope.
    assert!(
        text.contains("UP=Shop::Pricing true [\"Shop::Pricing\", \"Shop\"]"),
        "{text}"
    );
    assert_no_internals(&text);
}
