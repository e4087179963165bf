//! How a value captured by a selector (`Foo#bar(self, arg, @ivar)`) is shown in the event
//! stream: the agent walks the Ruby object and writes its parts with these helpers, so an
//! app's `inspect` (slow, huge or broken) is never called and every value stays within
//! [`VALUE_BUDGET`] bytes: strings are cut, collections show their first items, objects their
//! class and first instance variables.

use std::fmt::Write;

/// The most bytes a rendered value takes (then cut, with `…`).
pub const VALUE_BUDGET: usize = 256;
/// Array items shown.
pub const ITEMS: usize = 8;
/// Hash pairs shown.
pub const HASH_PAIRS: usize = 8;
/// Instance variables shown for an object.
pub const IVARS: usize = 4;

/// Whether `out` has used up its budget (nothing more is written into it).
#[inline]
pub fn spent(out: &str) -> bool {
    out.len() > VALUE_BUDGET
}

/// Cuts a finished rendering to [`VALUE_BUDGET`] bytes (at a character boundary) and marks
/// the cut with `…`.
pub fn finish(out: &mut String) {
    if out.len() > VALUE_BUDGET {
        let mut end = VALUE_BUDGET;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
}

/// A string's bytes, quoted and escaped as Rust's `{:?}` does, cut to the budget, with the
/// whole length after a cut (`"abc…"…(300 bytes)`).
pub fn string(out: &mut String, bytes: &[u8]) {
    let cut = bytes.get(..VALUE_BUDGET).unwrap_or(bytes);
    let text = String::from_utf8_lossy(cut);
    let _ = write!(out, "{text:?}");
    if bytes.len() > cut.len() {
        let _ = write!(out, "…({} bytes)", bytes.len());
    }
}

/// `, …N more` when `shown` of `total` items were written.
pub fn more(out: &mut String, total: usize, shown: usize) {
    if total > shown {
        let _ = write!(out, ", …{} more", total - shown);
    }
}

/// The budget of a walk over pairs (a Hash's, or an object's instance variables): at most
/// `limit` pairs, none once the rendering is [`spent`], separated by `, `.
pub struct Pairs {
    limit: usize,
    seen: usize,
    /// What goes before the first pair.
    lead: &'static str,
}

impl Pairs {
    /// A Hash's pairs: `{k => v, k => v}`.
    pub fn hash() -> Pairs {
        Pairs {
            limit: HASH_PAIRS,
            seen: 0,
            lead: "",
        }
    }

    /// An object's instance variables: `#<Foo @a=1, @b=2>`.
    pub fn ivars() -> Pairs {
        Pairs {
            limit: IVARS,
            seen: 0,
            lead: " ",
        }
    }

    /// Whether another pair may be written; if so, its separator is written and it counts as
    /// seen. False: stop the walk.
    pub fn next(&mut self, out: &mut String) -> bool {
        if self.seen >= self.limit || spent(out) {
            return false;
        }
        out.push_str(if self.seen == 0 { self.lead } else { ", " });
        self.seen += 1;
        true
    }

    /// Pairs written so far.
    pub fn seen(&self) -> usize {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_rendering_is_cut_at_a_character_boundary() {
        let mut out = "a".repeat(VALUE_BUDGET - 1) + "éé";
        finish(&mut out);
        // The é across the budget's end goes whole.
        assert_eq!(out, "a".repeat(VALUE_BUDGET - 1) + "…");
        let mut short = String::from("[1, 2]");
        finish(&mut short);
        assert_eq!(short, "[1, 2]");
        let mut exact = "b".repeat(VALUE_BUDGET);
        finish(&mut exact);
        assert_eq!(exact.len(), VALUE_BUDGET);
    }

    #[test]
    fn strings_are_quoted_escaped_and_cut_with_their_length() {
        let mut out = String::new();
        string(&mut out, b"say \"hi\"\n");
        assert_eq!(out, r#""say \"hi\"\n""#);
        let mut long = String::new();
        string(&mut long, &[b'x'; 300]);
        assert_eq!(
            long,
            format!("\"{}\"…(300 bytes)", "x".repeat(VALUE_BUDGET))
        );
        let mut bad = String::new();
        string(&mut bad, b"\xff!");
        assert_eq!(bad, "\"\u{fffd}!\"");
    }

    #[test]
    fn more_counts_what_was_left_out() {
        let mut out = String::from("[1");
        more(&mut out, 10, 8);
        more(&mut out, 8, 8);
        assert_eq!(out, "[1, …2 more");
    }

    #[test]
    fn hash_pairs_and_ivars_share_one_budget_rule() {
        let mut out = String::from("{");
        let mut pairs = Pairs::hash();
        let mut n = 0;
        while pairs.next(&mut out) {
            out.push_str("k => v");
            n += 1;
        }
        assert_eq!((n, pairs.seen()), (HASH_PAIRS, HASH_PAIRS));
        assert!(out.starts_with("{k => v, k => v"));
        let mut obj = String::from("#<Foo");
        let mut ivars = Pairs::ivars();
        while ivars.next(&mut obj) {
            obj.push_str("@a=1");
        }
        assert_eq!(obj, "#<Foo @a=1, @a=1, @a=1, @a=1");
        // A spent rendering takes no more pairs.
        let mut full = "x".repeat(VALUE_BUDGET + 1);
        assert!(!Pairs::hash().next(&mut full));
        assert_eq!(full.len(), VALUE_BUDGET + 1);
    }
}
