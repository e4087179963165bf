//! Writing heap dump lines in `ObjectSpace.dump_all`'s format.
//!
//! The agent dumps a live process's heap itself (from a forked child), and what it writes must
//! read like Ruby's own dump: `rbscope heap` and every other tool that reads dump_all output
//! take it as is. Fields come in Ruby's order with Ruby's names. One difference on purpose:
//! every string is escaped, so each line is valid JSON (Ruby writes file names, class names and
//! `struct` names raw). This module only formats: the agent gathers the facts.

use crate::parse::ObjType;
use std::io::Write;

/// What a line says about an object beyond the common fields.
#[derive(Clone, Copy, Debug, Default)]
pub enum Kind<'a> {
    #[default]
    Plain,
    String {
        embedded: bool,
        fstring: bool,
        /// Shares another string's buffer (its root is in the references).
        shared: bool,
        bytesize: u64,
        /// Heap strings only.
        capacity: Option<u64>,
        /// The text, for 7-bit strings only (as Ruby does).
        value: Option<&'a [u8]>,
        /// Left out for ASCII-8BIT, like Ruby.
        encoding: Option<&'a str>,
    },
    Symbol {
        bytesize: u64,
        value: Option<&'a [u8]>,
    },
    Array {
        length: u64,
        embedded: bool,
        shared: bool,
    },
    Hash {
        size: u64,
    },
    Object {
        ivars: u64,
    },
    Class {
        name: Option<&'a [u8]>,
        /// For anonymous classes and singletons.
        real_class_name: Option<&'a [u8]>,
        singleton: bool,
        superclass: Option<u64>,
    },
    IClass {
        superclass: Option<u64>,
    },
    Data {
        struct_name: Option<&'a [u8]>,
    },
    Float {
        value: f64,
    },
    File {
        fd: i64,
    },
    Imemo {
        imemo_type: &'a str,
    },
}

/// Where and when an object was allocated (`ObjectSpace.trace_object_allocations`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Allocation<'a> {
    pub file: Option<&'a [u8]>,
    pub line: Option<u64>,
    pub method: Option<&'a [u8]>,
    pub generation: u64,
}

/// One object.
#[derive(Clone, Copy, Debug, Default)]
pub struct ObjectLine<'a> {
    pub address: u64,
    pub ty: ObjType,
    /// 3.2+ only.
    pub shape_id: Option<u64>,
    pub slot_size: Option<u64>,
    pub class: Option<u64>,
    pub frozen: bool,
    pub kind: Kind<'a>,
    pub references: &'a [u64],
    pub allocation: Option<Allocation<'a>>,
    pub memsize: u64,
    /// GC flag names that are set (`wb_protected`, `old`, ...).
    pub flags: &'a [&'a str],
}

/// Appends a ROOT record.
pub fn write_root(out: &mut Vec<u8>, category: &str, references: &[u64]) {
    out.extend_from_slice(b"{\"type\":\"ROOT\", \"root\":");
    string(out, category.as_bytes());
    refs(out, references);
    out.extend_from_slice(b"}\n");
}

/// Appends one object's line.
pub fn write_object(out: &mut Vec<u8>, o: &ObjectLine<'_>) {
    out.extend_from_slice(b"{\"address\":");
    hex(out, o.address);
    out.extend_from_slice(b", \"type\":\"");
    out.extend_from_slice(o.ty.name().as_bytes());
    out.push(b'"');
    if let Some(s) = o.shape_id {
        key_num(out, b"shape_id", s);
    }
    if let Some(s) = o.slot_size {
        key_num(out, b"slot_size", s);
    }
    if let Some(c) = o.class {
        out.extend_from_slice(b", \"class\":");
        hex(out, c);
    }
    if o.frozen {
        out.extend_from_slice(b", \"frozen\":true");
    }
    match o.kind {
        Kind::Plain => {}
        Kind::String {
            embedded,
            fstring,
            shared,
            bytesize,
            capacity,
            value,
            encoding,
        } => {
            if embedded {
                out.extend_from_slice(b", \"embedded\":true");
            }
            if fstring {
                out.extend_from_slice(b", \"fstring\":true");
            }
            if shared {
                out.extend_from_slice(b", \"shared\":true");
            } else {
                key_num(out, b"bytesize", bytesize);
                if let Some(c) = capacity {
                    key_num(out, b"capacity", c);
                }
                if let Some(v) = value {
                    key_str(out, b"value", v);
                }
            }
            if let Some(e) = encoding {
                key_str(out, b"encoding", e.as_bytes());
            }
        }
        Kind::Symbol { bytesize, value } => {
            key_num(out, b"bytesize", bytesize);
            if let Some(v) = value {
                key_str(out, b"value", v);
            }
        }
        Kind::Array {
            length,
            embedded,
            shared,
        } => {
            key_num(out, b"length", length);
            if shared {
                out.extend_from_slice(b", \"shared\":true");
            }
            if embedded {
                out.extend_from_slice(b", \"embedded\":true");
            }
        }
        Kind::Hash { size } => key_num(out, b"size", size),
        Kind::Object { ivars } => key_num(out, b"ivars", ivars),
        Kind::Class {
            name,
            real_class_name,
            singleton,
            superclass,
        } => {
            if let Some(s) = superclass {
                out.extend_from_slice(b", \"superclass\":");
                hex(out, s);
            }
            if let Some(n) = name {
                key_str(out, b"name", n);
            } else if let Some(n) = real_class_name {
                key_str(out, b"real_class_name", n);
            }
            if singleton {
                out.extend_from_slice(b", \"singleton\":true");
            }
        }
        Kind::IClass { superclass } => {
            if let Some(s) = superclass {
                out.extend_from_slice(b", \"superclass\":");
                hex(out, s);
            }
        }
        Kind::Data { struct_name } => {
            if let Some(s) = struct_name {
                key_str(out, b"struct", s);
            }
        }
        Kind::Float { value } => {
            let text = if value.is_nan() {
                "NaN".to_string()
            } else if value.is_infinite() {
                if value > 0.0 { "Inf" } else { "-Inf" }.to_string()
            } else {
                format_g(value)
            };
            key_str(out, b"value", text.as_bytes());
        }
        Kind::File { fd } => {
            let _ = write!(out, ", \"fd\":{fd}");
        }
        Kind::Imemo { imemo_type } => key_str(out, b"imemo_type", imemo_type.as_bytes()),
    }
    if !o.references.is_empty() {
        refs(out, o.references);
    }
    if let Some(a) = o.allocation {
        if let Some(f) = a.file {
            key_str(out, b"file", f);
        }
        if let Some(l) = a.line {
            key_num(out, b"line", l);
        }
        if let Some(m) = a.method {
            key_str(out, b"method", m);
        }
        key_num(out, b"generation", a.generation);
    }
    if o.memsize > 0 {
        key_num(out, b"memsize", o.memsize);
    }
    if !o.flags.is_empty() {
        out.extend_from_slice(b", \"flags\":{");
        for (i, f) in o.flags.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            string(out, f.as_bytes());
            out.extend_from_slice(b":true");
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
}

/// C's `%g` (6 significant digits, exponent form outside 1e-4..1e6), as Ruby writes floats.
fn format_g(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let exp = v.abs().log10().floor() as i32;
    let trim = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    // Rounding to 6 digits can carry into the next power of ten (999999.5 -> 1e+06).
    let sci = format!("{v:.5e}");
    let (mant, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i32 = e.parse().unwrap_or(exp);
    if !(-4..6).contains(&e) {
        let sign = if e < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant.to_string()), e.abs())
    } else {
        let decimals = (5 - e).max(0) as usize;
        trim(format!("{v:.decimals$}"))
    }
}

fn key_num(out: &mut Vec<u8>, key: &[u8], n: u64) {
    out.extend_from_slice(b", \"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn key_str(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(b", \"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
    string(out, value);
}

/// `"0x7f12ab"`: lower-case, no padding, as Ruby writes addresses.
fn hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    buf[i - 1] = b'"';
    i -= 1;
    let mut x = v;
    loop {
        i -= 1;
        buf[i] = DIGITS[(x & 0xf) as usize];
        x >>= 4;
        if x == 0 {
            break;
        }
    }
    out.push(b'"');
    out.extend_from_slice(b"0x");
    out.extend_from_slice(&buf[i..]);
}

fn refs(out: &mut Vec<u8>, references: &[u64]) {
    out.extend_from_slice(b", \"references\":[");
    for (i, r) in references.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        hex(out, *r);
    }
    out.push(b']');
}

/// A JSON string: quotes, backslashes and control characters escaped; bytes that are not UTF-8
/// become U+FFFD (JSON has no other way to say them).
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // Plain printable ASCII (most of a heap's strings) goes out as it is.
    if bytes
        .iter()
        .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let b = text.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            c if c < 0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", c);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_line, RecordKind};

    fn line(o: &ObjectLine<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        write_object(&mut v, o);
        v
    }

    #[test]
    fn every_kind_reads_back_and_is_valid_json() {
        let flags = ["wb_protected", "old"];
        let kinds = [
            Kind::String {
                embedded: true,
                fstring: false,
                shared: false,
                bytesize: 11,
                capacity: None,
                value: Some(b"a \"q\" \\ \n"),
                encoding: Some("UTF-8"),
            },
            Kind::Symbol {
                bytesize: 3,
                value: Some(b"sym"),
            },
            Kind::Array {
                length: 2,
                embedded: true,
                shared: false,
            },
            Kind::Hash { size: 4 },
            Kind::Object { ivars: 3 },
            Kind::Class {
                name: Some(b"Shop::Order"),
                real_class_name: None,
                singleton: false,
                superclass: Some(0x30),
            },
            Kind::Data {
                struct_name: Some(b"we\"ird"),
            },
            Kind::Float { value: 2.5 },
            Kind::Imemo { imemo_type: "ment" },
        ];
        for kind in kinds {
            let o = ObjectLine {
                address: 0x7f00_1234_5678,
                ty: ObjType::String,
                class: Some(0x20),
                frozen: true,
                kind,
                references: &[0x10, 0x18],
                allocation: Some(Allocation {
                    file: Some(b"C:\\app\\we\"ird.rb"),
                    line: Some(12),
                    method: Some(b"new"),
                    generation: 7,
                }),
                memsize: 40,
                flags: &flags,
                ..ObjectLine::default()
            };
            let l = line(&o);
            assert_eq!(l.last(), Some(&b'\n'));
            let text = &l[..l.len() - 1];
            serde_json::from_slice::<serde_json::Value>(text)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(text)));
            let r = parse_line(text).unwrap();
            assert!(!r.invalid_json, "{}", String::from_utf8_lossy(text));
            assert_eq!(r.address, 0x7f00_1234_5678);
            assert_eq!(r.class, 0x20);
            assert_eq!(r.references.iter().collect::<Vec<_>>(), vec![0x10, 0x18]);
            assert_eq!(r.memsize, 40);
            assert_eq!(r.line, Some(12));
            assert_eq!(r.generation, Some(7));
            assert!(r.is_old());
            // Our reader keeps raw fields' bytes as written; this writer escapes them, as
            // JSON should (a reader that unescapes gets the exact path).
            let file: serde_json::Value = serde_json::from_slice(text).unwrap();
            assert_eq!(file["file"], "C:\\app\\we\"ird.rb");
        }
    }

    #[test]
    fn floats_like_c_percent_g() {
        for (v, s) in [
            (2.5, "2.5"),
            (0.1, "0.1"),
            (100.0, "100"),
            (1e100, "1e+100"),
            (123456789.0, "1.23457e+08"),
            (0.00001234, "1.234e-05"),
            (999999.5, "1e+06"),
            (-3.25, "-3.25"),
            (1.0 / 3.0, "0.333333"),
        ] {
            assert_eq!(format_g(v), s, "{v}");
        }
    }

    #[test]
    fn roots_and_odd_bytes() {
        let mut v = Vec::new();
        write_root(&mut v, "vm", &[0x1, 0x2]);
        let r = parse_line(&v[..v.len() - 1]).unwrap();
        assert_eq!(r.kind, RecordKind::Root);
        assert_eq!(r.references.iter().count(), 2);
        let o = ObjectLine {
            address: 1,
            ty: ObjType::Class,
            kind: Kind::Class {
                name: Some(&[0xff, b'A', 0x01]),
                real_class_name: None,
                singleton: true,
                superclass: None,
            },
            ..ObjectLine::default()
        };
        let l = line(&o);
        let v: serde_json::Value = serde_json::from_slice(&l[..l.len() - 1]).unwrap();
        assert_eq!(v["name"], "\u{fffd}A\u{1}");
    }
}
