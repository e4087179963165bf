//! Checks and bounds of the arguments `Rbscope::Native`'s methods take, and the words of
//! their errors (the agent raises them; Ruby's side checks the public API first).

use std::path::Path;
use std::time::Duration;

/// A wait of `seconds`, at most `max`: NaN and negative numbers wait nothing, infinity waits
/// `max` (`Duration::from_secs_f64` panics on NaN, infinity and huge numbers).
pub fn bounded_wait(seconds: f64, max: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds.min(max)).unwrap_or(Duration::ZERO)
}

/// Whether `path` may be recorded as one of the gem's own loaded files (`__provide`): only a
/// full path to `rbscope.rb` or to a `.rb` file in a directory named `rbscope`, with no `.`
/// or `..` step, so that no other library can be marked loaded through it.
pub fn own_gem_file(path: &str) -> bool {
    let p = Path::new(path);
    let own = p.is_absolute()
        && p.extension().is_some_and(|e| e == "rb")
        && (p.file_name().is_some_and(|f| f == "rbscope.rb")
            || p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|d| d == "rbscope"));
    own && !path.contains("/../") && !path.contains("/./")
}

/// The error of `__provide` for a path [`own_gem_file`] refuses.
pub fn not_own_gem_file(path: &str) -> String {
    format!("expected the full path of one of rbscope's own Ruby files, got {path:?}")
}

/// A class name with its article, for an error message ("an Integer", "a String").
pub fn with_article(name: &str) -> String {
    let article = if name.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// The TypeError of `Rbscope::Native.{arg}` (`trace_hook(owner)`) given `got` instead of
/// `expected`.
pub fn type_error(arg: &str, expected: &str, got: &str) -> String {
    format!("rbscope: Rbscope::Native.{arg} expects {expected}, got {got}")
}

/// Why an agent built for Ruby `built` (`3.4`) must not run in Ruby `running` (`3.3.6`), or
/// None when it may: struct layouts, inline functions and symbols differ between minor
/// releases, so running anyway could corrupt the app.
pub fn wrong_ruby(built: &str, running: &str) -> Option<String> {
    (release_of(running) != built).then(|| {
        format!(
            "rbscope: this agent was built for Ruby {built} and will not run in Ruby \
             {running}; install the gem again with this Ruby (gem pristine rbscope, or \
             scripts/install-gem in a checkout)"
        )
    })
}

/// `3.4` of `3.4.9`: the release an extension's ABI follows.
pub fn release_of(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_bounded() {
        assert_eq!(bounded_wait(f64::NAN, 5.0), Duration::ZERO);
        assert_eq!(bounded_wait(-1.0, 5.0), Duration::ZERO);
        assert_eq!(bounded_wait(0.0, 5.0), Duration::ZERO);
        assert_eq!(bounded_wait(f64::INFINITY, 5.0), Duration::from_secs(5));
        assert_eq!(bounded_wait(1e300, 60.0), Duration::from_secs(60));
        assert_eq!(bounded_wait(0.25, 5.0), Duration::from_millis(250));
    }

    #[test]
    fn only_the_gems_own_files() {
        assert!(own_gem_file("/gems/rbscope/lib/rbscope.rb"));
        assert!(own_gem_file("/gems/rbscope/lib/rbscope/live.rb"));
        assert!(!own_gem_file("lib/rbscope/live.rb"));
        assert!(!own_gem_file("/gems/rack/lib/rack.rb"));
        assert!(!own_gem_file("/gems/rbscope/lib/rbscope/live.so"));
        assert!(!own_gem_file(
            "/gems/rbscope/lib/rbscope/../../rack/lib/rbscope/x.rb"
        ));
        assert!(!own_gem_file("/gems/x/./rbscope/live.rb"));
        assert!(not_own_gem_file("x.rb").ends_with("got \"x.rb\""));
    }

    #[test]
    fn articles_and_messages() {
        assert_eq!(with_article("Integer"), "an Integer");
        assert_eq!(with_article("String"), "a String");
        assert_eq!(
            type_error("trace_hook(owner)", "a Module", "an Integer"),
            "rbscope: Rbscope::Native.trace_hook(owner) expects a Module, got an Integer"
        );
    }

    #[test]
    fn releases() {
        assert_eq!(release_of("3.4.9"), "3.4");
        assert_eq!(release_of("4.0.0-preview2"), "4.0");
        assert_eq!(release_of("3"), "3");
        assert_eq!(wrong_ruby("3.4", "3.4.9"), None);
        let why = wrong_ruby("3.4", "3.3.6").unwrap();
        assert!(why.starts_with(
            "rbscope: this agent was built for Ruby 3.4 and will not run in Ruby 3.3.6; install"
        ));
    }
}
