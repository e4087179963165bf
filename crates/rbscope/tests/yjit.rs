//! YJIT: scripts/test runs part of the suite a second time per Ruby with RUBY_YJIT_ENABLE=1.
//! This checks that the switch really reached Ruby, and that an app started with rbscope under
//! YJIT captures through the fast path and prints nothing rbscope-related on its stderr (Ruby
//! 3.1 alone gets one warning: there a raise hook makes YJIT discard its code).

mod common;
use common::*;
use std::process::Command;

fn yjit_asked() -> bool {
    std::env::var("RUBY_YJIT_ENABLE").is_ok_and(|v| v == "1")
}

#[test]
fn yjit_is_on_exactly_when_the_suite_asks_for_it() {
    let out = Command::new("ruby")
        .args([
            "-e",
            "print((defined?(RubyVM::YJIT) && RubyVM::YJIT.enabled?) ? 'on' : 'off')",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = if yjit_asked() { "on" } else { "off" };
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn an_app_under_this_yjit_setting_captures_fast_and_stays_quiet() {
    let sb = Sandbox::new();
    let out = sb.run_started(
        "app.rb",
        "def price(cart)\n  total = cart.sum\n  raise ArgumentError, \"bad total #{total}\"\nend\n\
         200.times { begin; price([1, 2]); rescue ArgumentError; end }\n\
         warn \"counters #{Rbscope.counters[:raises_captured]}\"\n\
         price([3, 4])\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let rbscope_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("[rbscope]")).collect();
    // The stored-snapshot line, and on 3.1 with YJIT the one warning about YJIT. (Were the
    // fast path's self-test to fail, the agent would warn that it uses the debug inspector.)
    let warnings: Vec<&&str> = rbscope_lines
        .iter()
        .filter(|l| l.starts_with("[rbscope] warning"))
        .collect();
    if yjit_asked() && ruby_release() == "3.1" {
        assert_eq!(warnings.len(), 1, "{err}");
        assert!(warnings[0].contains("YJIT is on"), "{err}");
    } else {
        assert!(warnings.is_empty(), "{err}");
    }
    assert!(err.contains("counters 200"), "{err}");
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    let f = s.frame("Object#price");
    assert_eq!(s.local(f, "total")["value"], 7);
}
