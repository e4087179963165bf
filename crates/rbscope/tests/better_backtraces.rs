//! Better backtraces on real Ruby: every construct the seed lists, labelled the same whether
//! the stack is read live (`Rbscope.backtrace`) or from an exception (`better_backtrace`), with
//! paths and lines equal to Ruby's own; uncaught exceptions printed in the better format
//! (main thread, threads, causes); the Logger formatter; the Rails error log; and the cases
//! where there is no better backtrace to give. A rescue clause's frame stands for the frame of
//! the method it is in (as Ruby 3.4+ shows it), on every Ruby.

mod common;
use common::*;

fn constructs(mode: &str) -> Vec<String> {
    let sb = Sandbox::new();
    let program = repo_root().join("crates/rbscope/tests/programs/constructs.rb");
    let out = sb.ruby(&program).arg(mode).output().unwrap();
    assert!(out.status.success(), "{mode}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn every_seed_construct_is_labelled_live_and_at_raise() {
    for mode in ["live", "raise"] {
        let lines = constructs(mode);
        let n = CONSTRUCT_LABELS.len();
        assert_eq!(lines.len(), n + 1, "{mode}: {lines:#?}");
        assert_eq!(&lines[..n], CONSTRUCT_LABELS, "{mode}");
        // Same number of frames as Ruby's backtrace, each at Ruby's path and line (the eval
        // frame included, at `(eval)`:1).
        assert_eq!(
            lines[n],
            format!("agrees=true ours={n} theirs={n}"),
            "{mode}"
        );
    }
}

const UNCAUGHT: &str = r#"require "rbscope"
Rbscope::BetterBacktraces.install
module Billing
  class Invoice
    def total(rate, *rest, key: 1)
      [1].each { |x| helper(x) }
    end

    def helper(x) = Integer("nope")

    def outer
      begin
        raise "inner"
      rescue
        raise ArgumentError, "outer\nsecond line"
      end
    end
  end
end
t = Thread.new { Billing::Invoice.new.total(3) }
begin
  t.join
rescue ArgumentError => e
  puts "join raised #{e.class}"
end
at_exit { puts "exit hook sees #{$!.backtrace_locations.first.label}" }
Billing::Invoice.new.outer
"#;

#[test]
fn install_prints_uncaught_exceptions_in_the_better_format() {
    let sb = Sandbox::new();
    let app = sb.write("uncaught.rb", UNCAUGHT);
    let out = sb.ruby(&app).env("RBSCOPE_LOG", "0").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let dir = format!("{}/", sb.dir.path().display());
    let mut err = stderr(&out).replace(&dir, "");
    if ruby_at_least(3, 2) {
        // From Ruby 3.2 on, error_highlight also points at the raise of an ArgumentError.
        let snippet = format!(
            "\n        raise ArgumentError, \"outer\\nsecond line\"\n              {}\n",
            "^".repeat(35)
        );
        assert!(err.contains(&snippet), "{err}");
        err = err.replace(&snippet, "");
    }
    // Kernel#Integer is a C function before 3.3 and Ruby code from 3.3 on, with parameters:
    // at a line of <internal:kernel> on 3.3 and 3.4, and from 4.0 at its caller's line, where
    // Ruby's own backtrace shows it too.
    let integer = if ruby_at_least(4, 0) {
        "uncaught.rb:9:in Kernel#Integer(arg, base, exception:)".to_string()
    } else if ruby_at_least(3, 3) {
        let line = err.lines().nth(1).unwrap_or_default();
        let at = line.split(":in ").next().unwrap_or_default();
        assert!(at.starts_with("<internal:kernel>:"), "{err}");
        format!("{at}:in Kernel#Integer(arg, base, exception:)")
    } else {
        "uncaught.rb:9:in Kernel#Integer(*)".to_string()
    };
    let expected = "\
#<Thread:0xADDR uncaught.rb:20 run> terminated with exception (report_on_exception is true):
INTEGER: invalid value for Integer(): \"nope\" (ArgumentError)
\tfrom uncaught.rb:9:in Billing::Invoice#helper(x)
\tfrom uncaught.rb:6:in Billing::Invoice#total{block}(rate, *rest, key:)
\tfrom uncaught.rb:6:in Array#each()
\tfrom uncaught.rb:6:in Billing::Invoice#total(rate, *rest, key:)
\tfrom uncaught.rb:20:in Object$singleton#<main>{block}()
uncaught.rb:15:in Billing::Invoice#outer{rescue}(): outer (ArgumentError)
second line
\tfrom uncaught.rb:27:in Object$singleton#<main>()
uncaught.rb:13:in Billing::Invoice#outer(): inner (RuntimeError)
\tfrom uncaught.rb:27:in Object$singleton#<main>()
"
    .replace("INTEGER", &integer);
    let addr = err
        .split("#<Thread:")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(err.replace(&addr, "0xADDR"), expected, "{err}");
    // The thread still ended with its exception, and exit hooks registered after
    // Rbscope.start still saw Ruby's own backtrace.
    // Ruby's own label for the rescue clause's frame: 3.4 names the method's class and leaves
    // out `rescue in` (the clause's frame stands for the method's, as in ours on every Ruby).
    let rubys_label = if ruby_at_least(3, 4) {
        "Billing::Invoice#outer"
    } else {
        "rescue in outer"
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("join raised ArgumentError\nexit hook sees {rubys_label}\n")
    );
}

const CASES: &str = r#"require "rbscope"
def fails(msg) = raise(ArgumentError, msg)
before = (fails("before start") rescue $!)
Rbscope.start(log: false)
puts "before start: #{before.better_backtrace.inspect}"

e = (fails("kept") rescue $!)
first = e.better_backtrace.map(&:to_s)
puts first.first
200.times { fails("churn") rescue nil }
puts "asked again: #{e.better_backtrace.map(&:to_s) == first}"
puts "marshal: #{Marshal.load(Marshal.dump(e)).message}"
puts "backtrace unchanged: #{e.backtrace.first}"
# Facts kept across collections (the cache pins what its keys name) stay right after objects move.
def labels_here = [Rbscope.backtrace.map(&:label), caller_locations(0).size]
warm = labels_here
GC.compact
GC.start
now = labels_here
puts "after compaction: #{now == warm && now[0].size == now[1]} #{now[0].first}"

by_hand = (raise ArgumentError, "by hand", ["x.rb:1:in `y'"] rescue $!)
puts "set by hand: #{by_hand.better_backtrace.inspect}"
lost = (fails("lost") rescue $!)
200.times { fails("churn") rescue nil }
puts "replaced: #{lost.better_backtrace.inspect}"

require "logger"
require "stringio"
io = StringIO.new
logger = Logger.new(io)
logger.formatter = Rbscope::BetterBacktraces::Formatter.new
logger.error(e)
logger.info("plain text")
puts io.string.lines.map { |l| l.sub(/\A.*-- : /, "") }
"#;

#[test]
fn exceptions_without_a_better_backtrace_and_the_logger_formatter() {
    let sb = Sandbox::new();
    let app = sb.write("cases.rb", CASES);
    let out = sb.ruby(&app).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = format!("{}/", sb.dir.path().display());
    // Ruby's own backtrace line: 3.4 quotes with ' and names the class.
    let rubys = if ruby_at_least(3, 4) {
        "cases.rb:2:in 'Object#fails'"
    } else {
        "cases.rb:2:in `fails'"
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).replace(&dir, ""),
        "\
before start: nil
cases.rb:2:in Object#fails(msg)
asked again: true
marshal: kept
backtrace unchanged: RUBYS
after compaction: true Object#labels_here()
set by hand: nil
replaced: nil
kept (ArgumentError)
cases.rb:2:in Object#fails(msg)
cases.rb:7:in Object$singleton#<main>()
plain text
"
        .replace("RUBYS", rubys)
    );
}
