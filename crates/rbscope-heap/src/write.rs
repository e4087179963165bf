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
        /// 3.4+: a chilled string literal (or `Symbol#to_s`).
        chilled: bool,
        /// Shares another string's buffer (its root is in the references).
        shared: bool,
        bytesize: u64,
        /// Heap strings only.
        capacity: Option<u64>,
        /// The text, for 7-bit strings only (as Ruby does).
        value: Option<&'a [u8]>,
        /// Left out for ASCII-8BIT, like Ruby.
        encoding: Option<&'a str>,
        /// 3.2+: the cached coderange (`unknown`, `7bit`, `valid`, `broken`); `broken` is
        /// then written after it.
        coderange: Option<&'a str>,
        /// 3.1 (no coderange field): invalid in its encoding, written right after `embedded`.
        broken: bool,
    },
    Symbol {
        bytesize: u64,
        /// As for strings (3.2+ writes a symbol's name like a string's content).
        capacity: Option<u64>,
        value: Option<&'a [u8]>,
    },
    Array {
        length: u64,
        embedded: bool,
        shared: bool,
    },
    Hash {
        size: u64,
        /// The default proc (`Hash.new { }`).
        default: Option<u64>,
    },
    Object {
        /// 3.3+: the instance variables are in the slot.
        embedded: bool,
        ivars: u64,
        /// 3.2+: the object's shape is "too complex" (its ivars are a hash table).
        too_complex: bool,
    },
    Class {
        /// 3.2+, classes only (not modules).
        variation_count: Option<u64>,
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
        /// C's `%#g` (trailing zeros kept: 3.2+) rather than `%g`.
        alternate: bool,
    },
    File {
        fd: i64,
    },
    Imemo {
        imemo_type: &'a str,
        /// 3.3+, callinfo: the method name called.
        mid: Option<IdName<'a>>,
        /// 3.3+, callcache: the cached method's name and the receiver's class.
        called_id: Option<IdName<'a>>,
        receiver_class: Option<u64>,
    },
    /// A T_ZOMBIE: Ruby's line ends after the common fields.
    Zombie,
}

/// An ID as Ruby's dump writes it: its name, or `ID_INTERNAL(serial)` for an internal ID.
#[derive(Clone, Copy, Debug)]
pub enum IdName<'a> {
    Name(&'a [u8]),
    Internal(u64),
}

/// The value of a GC flag: `true` up to 3.4; 4.0's `rb_gc_object_metadata` has others
/// (`"age":1`, `"object_id":8`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FlagValue<'a> {
    True,
    False,
    Nil,
    Int(i64),
    Float(f64),
    Symbol(&'a [u8]),
    /// Anything else: Ruby writes `{}`.
    Other,
}

/// One node of the shape tree (3.2+), as `ObjectSpace.dump_all` writes it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShapeLine<'a> {
    pub address: u64,
    pub id: u64,
    /// Left out for the root shape.
    pub parent_id: Option<u64>,
    pub depth: u64,
    /// `ROOT`, `IVAR`, ...; None for a type this writer does not know (4.0 writes nothing).
    pub shape_type: Option<&'a str>,
    /// IVAR shapes.
    pub edge_name: Option<IdName<'a>>,
    /// 3.2's CAPACITY_CHANGE and INITIAL_CAPACITY shapes.
    pub capacity: Option<u64>,
    pub edges: u64,
    pub memsize: u64,
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
    /// GC flags with their values (`wb_protected`, `old`, 4.0's `age`, ...), in Ruby's order.
    pub flags: &'a [(&'a str, FlagValue<'a>)],
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
        Kind::Zombie => {
            out.extend_from_slice(b"}\n");
            return;
        }
        Kind::String {
            embedded,
            fstring,
            chilled,
            shared,
            bytesize,
            capacity,
            value,
            encoding,
            coderange,
            broken,
        } => {
            if embedded {
                out.extend_from_slice(b", \"embedded\":true");
            }
            if broken && coderange.is_none() {
                out.extend_from_slice(b", \"broken\":true");
            }
            if fstring {
                out.extend_from_slice(b", \"fstring\":true");
            }
            if chilled {
                out.extend_from_slice(b", \"chilled\":true");
            }
            if shared {
                out.extend_from_slice(b", \"shared\":true");
            } else {
                string_content(out, bytesize, capacity, value);
            }
            if let Some(e) = encoding {
                key_str(out, b"encoding", e.as_bytes());
            }
            if let Some(c) = coderange {
                key_str(out, b"coderange", c.as_bytes());
                if c == "broken" {
                    out.extend_from_slice(b", \"broken\":true");
                }
            }
        }
        Kind::Symbol {
            bytesize,
            capacity,
            value,
        } => string_content(out, bytesize, capacity, value),
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
        Kind::Hash { size, default } => {
            key_num(out, b"size", size);
            if let Some(d) = default {
                out.extend_from_slice(b", \"default\":");
                hex(out, d);
            }
        }
        Kind::Object {
            embedded,
            ivars,
            too_complex,
        } => {
            if embedded {
                out.extend_from_slice(b", \"embedded\":true");
            }
            key_num(out, b"ivars", ivars);
            if too_complex {
                out.extend_from_slice(b", \"too_complex_shape\":true");
            }
        }
        Kind::Class {
            variation_count,
            name,
            real_class_name,
            singleton,
            superclass,
        } => {
            if let Some(v) = variation_count {
                key_num(out, b"variation_count", v);
            }
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
        Kind::Float { value, alternate } => {
            key_str(out, b"value", float_text(value, alternate).as_bytes());
        }
        Kind::File { fd } => {
            let _ = write!(out, ", \"fd\":{fd}");
        }
        Kind::Imemo {
            imemo_type,
            mid,
            called_id,
            receiver_class,
        } => {
            key_str(out, b"imemo_type", imemo_type.as_bytes());
            if let Some(m) = mid {
                out.extend_from_slice(b", \"mid\":");
                id_name(out, m);
            }
            if let Some(m) = called_id {
                out.extend_from_slice(b", \"called_id\":");
                id_name(out, m);
            }
            if let Some(k) = receiver_class {
                out.extend_from_slice(b", \"receiver_class\":");
                hex(out, k);
            }
        }
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
        for (i, (name, value)) in o.flags.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            string(out, name.as_bytes());
            out.push(b':');
            flag_value(out, value);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
}

/// Appends a SHAPE record (3.2+; `dump_all` writes them between the roots and the objects).
pub fn write_shape(out: &mut Vec<u8>, s: &ShapeLine<'_>) {
    out.extend_from_slice(b"{\"address\":");
    hex(out, s.address);
    out.extend_from_slice(b", \"type\":\"SHAPE\"");
    key_num(out, b"id", s.id);
    if let Some(p) = s.parent_id {
        key_num(out, b"parent_id", p);
    }
    key_num(out, b"depth", s.depth);
    if let Some(t) = s.shape_type {
        key_str(out, b"shape_type", t.as_bytes());
    }
    if let Some(e) = s.edge_name {
        out.extend_from_slice(b",\"edge_name\":");
        id_name(out, e);
    }
    if let Some(c) = s.capacity {
        key_num(out, b"capacity", c);
    }
    key_num(out, b"edges", s.edges);
    key_num(out, b"memsize", s.memsize);
    out.extend_from_slice(b"}\n");
}

/// A string's (or symbol's) `bytesize`, `capacity` and `value`.
fn string_content(out: &mut Vec<u8>, bytesize: u64, capacity: Option<u64>, value: Option<&[u8]>) {
    key_num(out, b"bytesize", bytesize);
    if let Some(c) = capacity {
        key_num(out, b"capacity", c);
    }
    if let Some(v) = value {
        key_str(out, b"value", v);
    }
}

fn id_name(out: &mut Vec<u8>, id: IdName<'_>) {
    match id {
        IdName::Name(n) => string(out, n),
        IdName::Internal(serial) => {
            let _ = write!(out, "\"ID_INTERNAL({serial})\"");
        }
    }
}

fn flag_value(out: &mut Vec<u8>, v: &FlagValue<'_>) {
    match *v {
        FlagValue::True => out.extend_from_slice(b"true"),
        FlagValue::False => out.extend_from_slice(b"false"),
        FlagValue::Nil => out.extend_from_slice(b"null"),
        FlagValue::Int(n) => {
            let _ = write!(out, "{n}");
        }
        // Ruby writes a flonum with `%#g`, unquoted.
        FlagValue::Float(f) => out.extend_from_slice(float_text(f, true).as_bytes()),
        FlagValue::Symbol(name) => {
            out.extend_from_slice(b"{\"type\":\"SYMBOL\", \"value\":");
            string(out, name);
            out.push(b'}');
        }
        FlagValue::Other => out.extend_from_slice(b"{}"),
    }
}

/// A float as Ruby's dump writes it: `%g` (3.1) or `%#g` (3.2+), `NaN`, `Inf`, `-Inf`.
fn float_text(value: f64, alternate: bool) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Inf" } else { "-Inf" }.to_string()
    } else if alternate {
        format_alt_g(value)
    } else {
        format_g(value)
    }
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

/// C's `%#g`: like `%g` but trailing zeros (and the point) are kept: `2.50000`, `100.000`,
/// `1.00000e+100`, `0.00000`.
fn format_alt_g(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.00000"
        } else {
            "0.00000"
        }
        .to_string();
    }
    let sci = format!("{v:.5e}");
    let (mant, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    if !(-4..6).contains(&e) {
        let sign = if e < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", e.abs())
    } else {
        let decimals = (5 - e).max(0) as usize;
        let text = format!("{v:.decimals$}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.")
        }
    }
}

// Inlined: with the key a constant at each call, its copy is inlined too (a call of memcpy
// otherwise, for every number of every object).
#[inline(always)]
fn key_num(out: &mut Vec<u8>, key: &[u8], n: u64) {
    out.extend_from_slice(b", \"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
    // The digits are built left-aligned in a fixed array, appended whole and cut to length: a
    // copy of a known size is inlined, where one of a varying size calls memcpy (a dump writes
    // several numbers per object).
    let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut buf = [0u8; 20];
    let mut v = n;
    let mut i = digits; // at most 20
    while i > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let len = out.len();
    out.extend_from_slice(&buf);
    out.truncate(len + digits);
}

#[inline(always)]
fn key_str(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(b", \"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
    string(out, value);
}

/// `"0x7f12ab"`: lower-case, no padding, as Ruby writes addresses. Built in a fixed array,
/// appended whole and cut to length (see `key_num`).
#[inline(always)]
fn hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - (v | 1).leading_zeros()).div_ceil(4) as usize;
    let mut buf = [0u8; 20];
    buf[0] = b'"';
    buf[1] = b'0';
    buf[2] = b'x';
    // An index loop: the iterator form (`skip`, `take`, `rev`) compiled to a slow `nth_back`.
    let mut x = v;
    let mut i = 3 + digits; // at most 19
    buf[i] = b'"';
    while i > 3 {
        i -= 1;
        buf[i] = DIGITS[(x & 0xf) as usize];
        x >>= 4;
    }
    let len = out.len();
    out.extend_from_slice(&buf);
    out.truncate(len + 4 + digits);
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

/// True when every byte is printable ASCII other than `"` and `\\`: checked eight bytes at a
/// time (the usual bit tricks: a byte below 0x20, one of 0x7f or above, one equal to `"` or to
/// `\\`), the rest one by one.
fn plain(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        let del_or_high = (w.wrapping_add(ONES) | w) & HIGH != 0;
        if below_space || del_or_high || has_zero(w ^ (ONES * 0x22)) || has_zero(w ^ (ONES * 0x5c))
        {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
}

/// A JSON string: quotes, backslashes and control characters escaped; bytes that are not UTF-8
/// become U+FFFD (JSON has no other way to say them).
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // Plain printable ASCII (most of a heap's strings) goes out as it is.
    if plain(bytes) {
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

    /// A small deterministic generator for the comparisons below.
    fn numbers(seed: u64) -> impl Iterator<Item = u64> {
        let mut x = seed;
        std::iter::repeat_with(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
    }

    #[test]
    fn numbers_and_addresses_are_written_as_format_writes_them() {
        let edges = [
            0,
            1,
            9,
            10,
            15,
            16,
            99,
            100,
            255,
            256,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ];
        let powers = (0..64).flat_map(|b| [1u64 << b, (1u64 << b) - 1, (1u64 << b) + 1]);
        let tens = (0..20)
            .map(|e| 10u64.pow(e))
            .flat_map(|t| [t - 1, t, t + 1]);
        let random = numbers(7).take(20_000).flat_map(|r| [r, r >> (r % 64)]);
        for n in edges.into_iter().chain(powers).chain(tens).chain(random) {
            let mut out = b"x".to_vec();
            hex(&mut out, n);
            assert_eq!(out, format!("x\"0x{n:x}\"").into_bytes(), "{n}");
            let mut out = b"x".to_vec();
            key_num(&mut out, b"k", n);
            assert_eq!(out, format!("x, \"k\":{n}").into_bytes(), "{n}");
        }
    }

    #[test]
    fn plain_strings_are_told_from_those_that_need_escapes_at_every_position() {
        let simple = |b: &[u8]| {
            b.iter()
                .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
        };
        for len in 0..40usize {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(plain(&base));
            for pos in 0..len {
                for c in [
                    0u8, 0x1f, 0x20, b'"', b'\\', 0x7e, 0x7f, 0x80, 0xc3, 0xff, b'!', b'#', b'[',
                    b']',
                ] {
                    let mut b = base.clone();
                    b[pos] = c;
                    assert_eq!(plain(&b), simple(&b), "{b:?}");
                }
            }
        }
        for r in numbers(11).take(50_000) {
            let b = r.to_le_bytes();
            let n = (r % 9) as usize;
            assert_eq!(plain(&b[..n.min(8)]), simple(&b[..n.min(8)]), "{b:?}");
            assert_eq!(plain(&b), simple(&b), "{b:?}");
        }
    }

    fn line(o: &ObjectLine<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        write_object(&mut v, o);
        v
    }

    #[test]
    fn every_kind_reads_back_and_is_valid_json() {
        let flags = [("wb_protected", FlagValue::True), ("old", FlagValue::True)];
        let kinds = [
            Kind::String {
                embedded: true,
                fstring: false,
                shared: false,
                bytesize: 11,
                capacity: None,
                value: Some(b"a \"q\" \\ \n"),
                encoding: Some("UTF-8"),
                chilled: true,
                coderange: Some("broken"),
                broken: true,
            },
            Kind::Symbol {
                bytesize: 3,
                capacity: None,
                value: Some(b"sym"),
            },
            Kind::Array {
                length: 2,
                embedded: true,
                shared: false,
            },
            Kind::Hash {
                size: 4,
                default: Some(0x40),
            },
            Kind::Object {
                embedded: true,
                ivars: 3,
                too_complex: true,
            },
            Kind::Class {
                variation_count: Some(2),
                name: Some(b"Shop::Order"),
                real_class_name: None,
                singleton: false,
                superclass: Some(0x30),
            },
            Kind::Data {
                struct_name: Some(b"we\"ird"),
            },
            Kind::Float {
                value: 2.5,
                alternate: true,
            },
            Kind::Imemo {
                imemo_type: "callcache",
                mid: None,
                called_id: Some(IdName::Internal(42)),
                receiver_class: Some(0x50),
            },
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
    fn floats_like_c_percent_alt_g() {
        for (v, s) in [
            (2.5, "2.50000"),
            (0.1, "0.100000"),
            (100.0, "100.000"),
            (1e100, "1.00000e+100"),
            (123456.0, "123456."),
            (123456789.0, "1.23457e+08"),
            (0.00001234, "1.23400e-05"),
            (-3.25, "-3.25000"),
            (0.0, "0.00000"),
        ] {
            assert_eq!(format_alt_g(v), s, "{v}");
        }
    }

    #[test]
    fn flag_values_as_ruby_4_writes_them() {
        let flags = [
            ("wb_protected", FlagValue::True),
            ("age", FlagValue::Int(3)),
            ("object_id", FlagValue::Int(8)),
            ("x", FlagValue::Nil),
            ("y", FlagValue::Symbol(b"s")),
            ("z", FlagValue::Other),
        ];
        let o = ObjectLine {
            address: 0x10,
            ty: ObjType::Object,
            flags: &flags,
            ..ObjectLine::default()
        };
        let l = line(&o);
        let text = std::str::from_utf8(&l).unwrap();
        assert!(
            text.ends_with(r#", "flags":{"wb_protected":true, "age":3, "object_id":8, "x":null, "y":{"type":"SYMBOL", "value":"s"}, "z":{}}}
"#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["flags"]["age"], 3);
    }

    #[test]
    fn shapes_and_zombies() {
        let mut v = Vec::new();
        write_shape(
            &mut v,
            &ShapeLine {
                address: 0x7f00,
                id: 8,
                parent_id: Some(3),
                depth: 2,
                shape_type: Some("IVAR"),
                edge_name: Some(IdName::Name(b"@mesg")),
                capacity: None,
                edges: 1,
                memsize: 40,
            },
        );
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            "{\"address\":\"0x7f00\", \"type\":\"SHAPE\", \"id\":8, \"parent_id\":3, \"depth\":2, \"shape_type\":\"IVAR\",\"edge_name\":\"@mesg\", \"edges\":1, \"memsize\":40}\n"
        );
        let r = parse_line(&v[..v.len() - 1]).unwrap();
        assert_eq!(r.kind, RecordKind::Shape);
        let z = ObjectLine {
            address: 0x20,
            ty: ObjType::Zombie,
            shape_id: Some(0),
            slot_size: Some(40),
            class: Some(0x30),
            kind: Kind::Zombie,
            references: &[0x40],
            memsize: 40,
            ..ObjectLine::default()
        };
        assert_eq!(
            std::str::from_utf8(&line(&z)).unwrap(),
            "{\"address\":\"0x20\", \"type\":\"ZOMBIE\", \"shape_id\":0, \"slot_size\":40, \"class\":\"0x30\"}\n"
        );
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
                variation_count: None,
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
