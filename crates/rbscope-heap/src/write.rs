//! Writing heap dump lines in `ObjectSpace.dump_all`'s format.
//!
//! The agent dumps a live process's heap itself (from a forked child), and what it writes must
//! read like Ruby's own dump: `rbscope heap` and every other tool that reads dump_all output
//! take it as is. Fields come in Ruby's order with Ruby's names. One difference on purpose:
//! every string is escaped, so each line is valid JSON (Ruby writes file names, class names and
//! `struct` names raw). This module only formats: the agent gathers the facts.

use crate::parse::ObjType;
use std::io::{self, Write};

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

/// Writes a ROOT record.
pub fn write_root(out: &mut impl Write, category: &str, references: &[u64]) -> io::Result<()> {
    out.write_all(b"{\"type\":\"ROOT\", \"root\":")?;
    string(out, category.as_bytes())?;
    refs(out, references)?;
    out.write_all(b"}\n")
}

/// Writes one object's line.
pub fn write_object(out: &mut impl Write, o: &ObjectLine<'_>) -> io::Result<()> {
    write!(
        out,
        "{{\"address\":\"{:#x}\", \"type\":\"{}\"",
        o.address,
        o.ty.name()
    )?;
    if let Some(s) = o.shape_id {
        write!(out, ", \"shape_id\":{s}")?;
    }
    if let Some(s) = o.slot_size {
        write!(out, ", \"slot_size\":{s}")?;
    }
    if let Some(c) = o.class {
        write!(out, ", \"class\":\"{c:#x}\"")?;
    }
    if o.frozen {
        out.write_all(b", \"frozen\":true")?;
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
                out.write_all(b", \"embedded\":true")?;
            }
            if fstring {
                out.write_all(b", \"fstring\":true")?;
            }
            if shared {
                out.write_all(b", \"shared\":true")?;
            } else {
                write!(out, ", \"bytesize\":{bytesize}")?;
                if let Some(c) = capacity {
                    write!(out, ", \"capacity\":{c}")?;
                }
                if let Some(v) = value {
                    out.write_all(b", \"value\":")?;
                    string(out, v)?;
                }
            }
            if let Some(e) = encoding {
                out.write_all(b", \"encoding\":")?;
                string(out, e.as_bytes())?;
            }
        }
        Kind::Symbol { bytesize, value } => {
            write!(out, ", \"bytesize\":{bytesize}")?;
            if let Some(v) = value {
                out.write_all(b", \"value\":")?;
                string(out, v)?;
            }
        }
        Kind::Array {
            length,
            embedded,
            shared,
        } => {
            write!(out, ", \"length\":{length}")?;
            if shared {
                out.write_all(b", \"shared\":true")?;
            }
            if embedded {
                out.write_all(b", \"embedded\":true")?;
            }
        }
        Kind::Hash { size } => write!(out, ", \"size\":{size}")?,
        Kind::Object { ivars } => write!(out, ", \"ivars\":{ivars}")?,
        Kind::Class {
            name,
            real_class_name,
            singleton,
            superclass,
        } => {
            if let Some(s) = superclass {
                write!(out, ", \"superclass\":\"{s:#x}\"")?;
            }
            if let Some(n) = name {
                out.write_all(b", \"name\":")?;
                string(out, n)?;
            } else if let Some(n) = real_class_name {
                out.write_all(b", \"real_class_name\":")?;
                string(out, n)?;
            }
            if singleton {
                out.write_all(b", \"singleton\":true")?;
            }
        }
        Kind::IClass { superclass } => {
            if let Some(s) = superclass {
                write!(out, ", \"superclass\":\"{s:#x}\"")?;
            }
        }
        Kind::Data { struct_name } => {
            if let Some(s) = struct_name {
                out.write_all(b", \"struct\":")?;
                string(out, s)?;
            }
        }
        Kind::Float { value } => {
            out.write_all(b", \"value\":")?;
            let text = if value.is_nan() {
                "NaN".to_string()
            } else if value.is_infinite() {
                if value > 0.0 { "Inf" } else { "-Inf" }.to_string()
            } else {
                format!("{value}")
            };
            string(out, text.as_bytes())?;
        }
        Kind::File { fd } => write!(out, ", \"fd\":{fd}")?,
        Kind::Imemo { imemo_type } => {
            out.write_all(b", \"imemo_type\":")?;
            string(out, imemo_type.as_bytes())?;
        }
    }
    if !o.references.is_empty() {
        refs(out, o.references)?;
    }
    if let Some(a) = o.allocation {
        if let Some(f) = a.file {
            out.write_all(b", \"file\":")?;
            string(out, f)?;
        }
        if let Some(l) = a.line {
            write!(out, ", \"line\":{l}")?;
        }
        if let Some(m) = a.method {
            out.write_all(b", \"method\":")?;
            string(out, m)?;
        }
        write!(out, ", \"generation\":{}", a.generation)?;
    }
    if o.memsize > 0 {
        write!(out, ", \"memsize\":{}", o.memsize)?;
    }
    if !o.flags.is_empty() {
        out.write_all(b", \"flags\":{")?;
        for (i, f) in o.flags.iter().enumerate() {
            if i > 0 {
                out.write_all(b", ")?;
            }
            string(out, f.as_bytes())?;
            out.write_all(b":true")?;
        }
        out.write_all(b"}")?;
    }
    out.write_all(b"}\n")
}

fn refs(out: &mut impl Write, references: &[u64]) -> io::Result<()> {
    out.write_all(b", \"references\":[")?;
    for (i, r) in references.iter().enumerate() {
        if i > 0 {
            out.write_all(b", ")?;
        }
        write!(out, "\"{r:#x}\"")?;
    }
    out.write_all(b"]")
}

/// A JSON string: quotes, backslashes and control characters escaped; bytes that are not UTF-8
/// become `\ufffd` (JSON has no other way to say them).
fn string(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(b"\"")?;
    let text = String::from_utf8_lossy(bytes);
    let mut start = 0;
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let esc: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            c if c < 0x20 => None,
            _ => continue,
        };
        out.write_all(&b[start..i])?;
        match esc {
            Some(e) => out.write_all(e)?,
            None => write!(out, "\\u{:04x}", c)?,
        }
        start = i + 1;
    }
    out.write_all(&b[start..])?;
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_line, RecordKind};

    fn line(o: &ObjectLine<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        write_object(&mut v, o).unwrap();
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
    fn roots_and_odd_bytes() {
        let mut v = Vec::new();
        write_root(&mut v, "vm", &[0x1, 0x2]).unwrap();
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
