//! Selector presets (`rbscope trace --preset NAME`) and selector files (`-c FILE`).
//!
//! Presets are plain data files (crates/rbscope/presets/NAME.txt) built into the binary: one
//! selector per line, `#` comments. Their selectors are optional (`?`): a library the app has
//! not loaded is reported as not traced instead of failing the trace.

use anyhow::Context;
use std::path::Path;

/// Every preset: its name and its file.
pub const PRESETS: &[(&str, &str)] = &[
    ("activerecord", include_str!("../presets/activerecord.txt")),
    ("io", include_str!("../presets/io.txt")),
    ("net-http", include_str!("../presets/net-http.txt")),
    ("puma", include_str!("../presets/puma.txt")),
    ("rails", include_str!("../presets/rails.txt")),
    ("redis", include_str!("../presets/redis.txt")),
    ("sidekiq", include_str!("../presets/sidekiq.txt")),
];

/// The preset names, for `--help` and argument checking.
pub const NAMES: &[&str] = &[
    "activerecord",
    "io",
    "net-http",
    "puma",
    "rails",
    "redis",
    "sidekiq",
];

/// The selectors in a selector file's text.
pub fn parse(text: &str) -> Vec<String> {
    text.lines()
        .map(without_comment)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A `#` starts a comment only at the start of a line or after a space (`Foo#bar` is a
/// selector).
fn without_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return &line[..i];
        }
    }
    line
}

pub fn preset(name: &str) -> Option<Vec<String>> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| parse(text))
}

pub fn file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the selector file {}", path.display()))?;
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbscope_trace::selector::Selector;

    #[test]
    fn every_preset_parses_and_is_optional() {
        assert_eq!(PRESETS.len(), NAMES.len());
        for (name, _) in PRESETS {
            assert!(NAMES.contains(name));
            let selectors = preset(name).unwrap();
            assert!(!selectors.is_empty(), "{name}");
            for s in selectors {
                let parsed = Selector::parse(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(parsed.optional, "{name}: {s}");
            }
        }
    }

    #[test]
    fn comments_and_blank_lines() {
        assert_eq!(
            parse("# all of it\n\nFoo#bar  # trailing\n  Baz.qux(self)\n#Foo#x\n"),
            vec!["Foo#bar".to_string(), "Baz.qux(self)".to_string()]
        );
    }
}
