//! Strings, symbols and floats written the way Ruby's own `inspect` writes them, so that what
//! `rbscope show` prints can be pasted back into Ruby and reads as the value it was.
//!
//! Why not a plain escape: Ruby shows a string in an encoding other than UTF-8 with its
//! non-ASCII characters escaped (`"caf\xE9"` for ISO-8859-1, `"\x{93FA}"` for a Shift_JIS
//! character), bytes that form no character as `\xHH`, a symbol that is not a plain name quoted
//! (`:"a b"`), and floats in exponent form outside 1e-4 to 1e16 (`1.0e-300`). The rules follow
//! `rb_str_inspect`, `rb_str_buf_cat_escaped_char` and `flo_to_s` of Ruby 3.1 to 4.0, and
//! the symbol names its parser reads without quotes.

use std::fmt::Write as _;

/// A string's bytes in `encoding` (Ruby's name for it), double-quoted as `String#inspect` does
/// when the default external encoding is UTF-8.
pub fn string(bytes: &[u8], encoding: &str) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let kind = Kind::of(encoding);
    let mut rest = bytes;
    while !rest.is_empty() {
        let (ch, len) = kind.next_char(rest);
        let next = rest.get(len..).unwrap_or_default();
        match ch {
            None => {
                // Not a character of the encoding: each byte as \xHH.
                for b in rest.iter().take(len.max(1)) {
                    let _ = write!(out, "\\x{b:02X}");
                }
            }
            Some(c) => {
                // Only a `#` looks at the character after it (`#{`, `#$`, `#@` are escaped).
                let after = if c == 0x23 {
                    kind.next_char(next).0
                } else {
                    None
                };
                push_char(&mut out, c, kind, after);
            }
        }
        rest = rest.get(len.max(1)..).unwrap_or_default();
    }
    out.push('"');
    out
}

/// A symbol named `name` (UTF-8) as `Symbol#inspect` writes it: `:name` when the name reads
/// as a symbol literal by itself, else `:"quoted"`.
pub fn symbol(name: &str) -> String {
    if plain_symbol(name) {
        format!(":{name}")
    } else {
        format!(":{}", string(name.as_bytes(), "UTF-8"))
    }
}

/// A symbol of another encoding: Ruby quotes it unless it is a plain ASCII name.
pub fn encoded_symbol(bytes: &[u8], encoding: &str) -> String {
    match std::str::from_utf8(bytes) {
        Ok(name) if name.is_ascii() && plain_symbol(name) => format!(":{name}"),
        _ => format!(":{}", string(bytes, encoding)),
    }
}

/// A Float as `Float#inspect` writes it.
pub fn float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // The shortest digits that read back as `f`, and the decimal exponent: d.ddd e X.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i64 = exp.parse().unwrap_or(0);
    let sign = if f < 0.0 { "-" } else { "" };
    // Ruby's decpt: where the decimal point falls after the first digit.
    let decpt = exp + 1;
    let n = digits.len() as i64;
    let body = if decpt > 0 && decpt < n {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{int}.{frac}")
    } else if decpt > 0 && decpt <= 15 {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else if decpt <= 0 && decpt > -4 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else {
        let (first, more) = digits.split_at(1);
        let more = if more.is_empty() { "0" } else { more };
        let e = decpt - 1;
        format!(
            "{first}.{more}e{}{:02}",
            if e < 0 { '-' } else { '+' },
            e.unsigned_abs()
        )
    };
    format!("{sign}{body}")
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Utf8,
    /// US-ASCII: bytes above 0x7F are not characters.
    Ascii,
    /// One byte per character (binary, ISO-8859-x, Windows-125x, ...).
    SingleByte,
    ShiftJis,
    EucJp,
    Utf16 {
        big_endian: bool,
    },
}

impl Kind {
    fn of(encoding: &str) -> Kind {
        match encoding.to_ascii_uppercase().as_str() {
            "UTF-8" | "UTF8-MAC" | "CESU-8" => Kind::Utf8,
            "US-ASCII" => Kind::Ascii,
            "SHIFT_JIS" | "WINDOWS-31J" | "CP932" | "SJIS-DOCOMO" | "SJIS-KDDI"
            | "SJIS-SOFTBANK" | "MACJAPANESE" => Kind::ShiftJis,
            "EUC-JP" | "EUCJP-MS" | "CP51932" | "EUC-JIS-2004" => Kind::EucJp,
            "UTF-16LE" => Kind::Utf16 { big_endian: false },
            "UTF-16BE" | "UTF-16" => Kind::Utf16 { big_endian: true },
            _ => Kind::SingleByte,
        }
    }

    fn unicode(self) -> bool {
        matches!(self, Kind::Utf8 | Kind::Utf16 { .. })
    }

    /// The next character (its code point as Ruby numbers it) and its length in bytes; None
    /// with the number of bytes that form no character.
    fn next_char(self, b: &[u8]) -> (Option<u32>, usize) {
        let Some(&first) = b.first() else {
            return (None, 0);
        };
        let byte = |i: usize| b.get(i).copied();
        match self {
            Kind::Utf8 => {
                let len = match first {
                    0x00..=0x7F => 1,
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF4 => 4,
                    _ => return (None, 1),
                };
                match b.get(..len).map(std::str::from_utf8) {
                    Some(Ok(s)) => (s.chars().next().map(u32::from), len),
                    _ => (None, 1),
                }
            }
            Kind::Ascii if first > 0x7F => (None, 1),
            Kind::Ascii | Kind::SingleByte => (Some(u32::from(first)), 1),
            Kind::ShiftJis => match (first, byte(1)) {
                (0x81..=0x9F | 0xE0..=0xFC, Some(t @ (0x40..=0x7E | 0x80..=0xFC))) => {
                    (Some(u32::from(first) << 8 | u32::from(t)), 2)
                }
                (0x81..=0x9F | 0xE0..=0xFC, _) => (None, 1),
                (0x80 | 0xA0 | 0xFD..=0xFF, _) => (None, 1),
                _ => (Some(u32::from(first)), 1),
            },
            Kind::EucJp => match (first, byte(1), byte(2)) {
                (0x8E, Some(t @ 0xA1..=0xFE), _) => (Some(0x8E00 | u32::from(t)), 2),
                (0x8F, Some(t @ 0xA1..=0xFE), Some(u @ 0xA1..=0xFE)) => {
                    (Some(0x8F_0000 | u32::from(t) << 8 | u32::from(u)), 3)
                }
                (0xA1..=0xFE, Some(t @ 0xA1..=0xFE), _) => {
                    (Some(u32::from(first) << 8 | u32::from(t)), 2)
                }
                (0x00..=0x7F, _, _) => (Some(u32::from(first)), 1),
                _ => (None, 1),
            },
            Kind::Utf16 { big_endian } => {
                let unit = |i: usize| -> Option<u16> {
                    let (x, y) = (byte(i)?, byte(i + 1)?);
                    Some(if big_endian {
                        u16::from_be_bytes([x, y])
                    } else {
                        u16::from_le_bytes([x, y])
                    })
                };
                let Some(u) = unit(0) else {
                    return (None, b.len());
                };
                match u {
                    0xD800..=0xDBFF => match unit(2) {
                        Some(l @ 0xDC00..=0xDFFF) => {
                            let c =
                                0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(l) - 0xDC00);
                            (Some(c), 4)
                        }
                        _ => (None, 2),
                    },
                    0xDC00..=0xDFFF => (None, 2),
                    _ => (Some(u32::from(u)), 2),
                }
            }
        }
    }
}

fn push_char(out: &mut String, c: u32, kind: Kind, next: Option<u32>) {
    let special = match c {
        0x22 => Some("\\\""),
        0x5C => Some("\\\\"),
        0x23 if matches!(next, Some(0x24 | 0x40 | 0x7B)) => Some("\\#"),
        0x0A => Some("\\n"),
        0x0D => Some("\\r"),
        0x09 => Some("\\t"),
        0x0C => Some("\\f"),
        0x0B => Some("\\v"),
        0x08 => Some("\\b"),
        0x07 => Some("\\a"),
        0x1B => Some("\\e"),
        _ => None,
    };
    if let Some(s) = special {
        out.push_str(s);
        return;
    }
    let ascii_printable = (0x20..0x7F).contains(&c);
    // Shown as itself: printable ASCII, and printable characters of a UTF-8 string (the result's
    // own encoding). U+0085 is escaped as Ruby does (bug #16842).
    if ascii_printable
        || (kind == Kind::Utf8 && c != 0x85 && char::from_u32(c).is_some_and(|ch| !ch.is_control()))
    {
        if let Some(ch) = char::from_u32(c) {
            out.push(ch);
            return;
        }
    }
    let _ = match (kind.unicode(), c) {
        (true, c) if c < 0x10000 => write!(out, "\\u{c:04X}"),
        (true, c) => write!(out, "\\u{{{c:X}}}"),
        (false, c) if c < 0x100 => write!(out, "\\x{c:02X}"),
        (false, c) => write!(out, "\\x{{{c:X}}}"),
    };
}

/// Whether `:name` reads back as this symbol: an identifier (local, constant, method with `?`,
/// `!` or `=`), an instance, class or global variable name, or an operator method.
fn plain_symbol(name: &str) -> bool {
    const OPERATORS: &[&str] = &[
        "[]", "[]=", "+", "-", "*", "/", "%", "**", "==", "===", "!=", "=~", "!~", "!", "<", ">",
        "<=", ">=", "<=>", "<<", ">>", "&", "|", "^", "~", "+@", "-@", "`",
    ];
    if OPERATORS.contains(&name) {
        return true;
    }
    let ident_start = |c: char| c == '_' || c.is_alphabetic() || !c.is_ascii();
    let ident_char = |c: char| c == '_' || c.is_alphanumeric() || !c.is_ascii();
    let word = |s: &str| {
        let mut cs = s.chars();
        cs.next().is_some_and(ident_start) && cs.all(ident_char)
    };
    if let Some(rest) = name.strip_prefix("@@").or_else(|| name.strip_prefix('@')) {
        return word(rest);
    }
    if let Some(rest) = name.strip_prefix('$') {
        return word(rest)
            || (!rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
            || matches!(
                rest,
                "~" | "*"
                    | "$"
                    | "?"
                    | "!"
                    | "@"
                    | "/"
                    | "\\"
                    | ";"
                    | ","
                    | "."
                    | "="
                    | ":"
                    | "<"
                    | ">"
                    | "\""
                    | "&"
                    | "`"
                    | "'"
                    | "+"
                    | "0"
            )
            || (rest.len() == 2 && rest.starts_with('-') && rest[1..].chars().all(ident_char));
    }
    let (base, suffix) = match name.char_indices().last() {
        Some((i, c @ ('?' | '!' | '='))) => (&name[..i], Some(c)),
        _ => (name, None),
    };
    // `foo?=` is not a name; a `=` suffix makes a setter, not allowed after `?` or `!`.
    word(base) && !(suffix == Some('=') && (base.ends_with('?') || base.ends_with('!')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case is what Ruby 3.1 to 4.0 print for the value (checked with `ruby -e 'p ...'`).
    #[test]
    fn floats_read_as_ruby_writes_them() {
        let cases = [
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1e-300, "1.0e-300"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (0.00001, "1.0e-05"),
            (1e14, "100000000000000.0"),
            (1e15, "1.0e+15"),
            (1234567890123456.7, "1234567890123456.8"),
            (1e16, "1.0e+16"),
            (123456789.125, "123456789.125"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (-0.0, "-0.0"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5.0e-324"),
        ];
        for (f, want) in cases {
            assert_eq!(float(f), want, "{f:e}");
        }
    }

    #[test]
    fn symbols_are_quoted_only_when_ruby_quotes_them() {
        for plain in [
            "foo", "Foo", "foo?", "save!", "name=", "@iv", "@@cv", "$stdout", "$1", "$~", "[]",
            "[]=", "<=>", "+@", "héllo", "_",
        ] {
            assert_eq!(symbol(plain), format!(":{plain}"));
        }
        assert_eq!(symbol("a b"), ":\"a b\"");
        assert_eq!(symbol(""), ":\"\"");
        assert_eq!(symbol("9lives"), ":\"9lives\"");
        assert_eq!(symbol("foo?="), ":\"foo?=\"");
        assert_eq!(symbol("a-b"), ":\"a-b\"");
        assert_eq!(symbol("@"), ":\"@\"");
        assert_eq!(symbol("say \"hi\""), ":\"say \\\"hi\\\"\"");
        assert_eq!(encoded_symbol(b"caf\xE9", "ISO-8859-1"), ":\"caf\\xE9\"");
        assert_eq!(encoded_symbol(b"plain", "ASCII-8BIT"), ":plain");
    }

    #[test]
    fn strings_escape_what_ruby_escapes() {
        assert_eq!(string(b"plain", "UTF-8"), "\"plain\"");
        assert_eq!(string("héllo ✓".as_bytes(), "UTF-8"), "\"héllo ✓\"");
        assert_eq!(
            string(b"a\"b\\c\n\t\x1b", "UTF-8"),
            "\"a\\\"b\\\\c\\n\\t\\e\""
        );
        assert_eq!(
            string(b"#{x} #@y #$z #x", "UTF-8"),
            "\"\\#{x} \\#@y \\#$z #x\""
        );
        assert_eq!(string(b"\x00\x7f", "UTF-8"), "\"\\u0000\\u007F\"");
        // U+0085 escaped as Ruby 3.2 and later do (3.1 printed it as is); a zero-width space is
        // printable to Ruby.
        assert_eq!(
            string("\u{85}\u{200B}".as_bytes(), "UTF-8"),
            "\"\\u0085\u{200B}\""
        );
        // Bytes that form no UTF-8 character, each as \xHH (not a replacement character).
        assert_eq!(string(b"ok\xff\xfe", "UTF-8"), "\"ok\\xFF\\xFE\"");
        assert_eq!(string(b"\xe2\x9c", "UTF-8"), "\"\\xE2\\x9C\"");
        // Other encodings: non-ASCII characters escaped by code point.
        assert_eq!(string(b"caf\xe9", "ISO-8859-1"), "\"caf\\xE9\"");
        assert_eq!(string(b"\x00\xff", "ASCII-8BIT"), "\"\\x00\\xFF\"");
        assert_eq!(
            string(b"\x93\xfa\x96{", "Shift_JIS"),
            "\"\\x{93FA}\\x{967B}\""
        );
        assert_eq!(string(b"a\xb1", "Shift_JIS"), "\"a\\xB1\"");
        assert_eq!(string(b"\x93", "Shift_JIS"), "\"\\x93\"");
        assert_eq!(string(b"\xc6\xfc", "EUC-JP"), "\"\\x{C6FC}\"");
        assert_eq!(string(b"a\xc3\xa9", "US-ASCII"), "\"a\\xC3\\xA9\"");
        assert_eq!(string(b"a\x00\xe9\x00", "UTF-16LE"), "\"a\\u00E9\"");
        assert_eq!(string(b"\x00a", "UTF-16BE"), "\"a\"");
    }
}
