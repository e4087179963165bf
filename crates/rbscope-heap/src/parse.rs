//! One line of a heap dump into a [`Record`], fast and tolerant.
//!
//! `ObjectSpace.dump_all` writes one JSON object per line with a fixed shape: string keys,
//! values that are strings, integers, `true`, arrays of address strings (`references`) or one
//! flat object (`flags`). A general JSON parser would allocate and would stop at the lines Ruby
//! gets wrong: `file`, `real_class_name`, `struct` (and `name` up to 3.3) are written without
//! escaping, so a quote in a path breaks the line. This scanner works on bytes, borrows every
//! string from the line, skips keys it does not know, and when a string ends in a place where
//! JSON says it cannot, it looks for the next `", "key":` (or the closing `"}`) and carries on:
//! the record is kept and marked [`Record::invalid_json`] so the caller can count it.

use std::borrow::Cow;

/// Ruby's object types as the dump names them (`T_STRING` is `"STRING"`), plus the two
/// pseudo-records' types and `Unknown` for a name this reader does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum ObjType {
    None,
    Nil,
    Object,
    Class,
    IClass,
    Module,
    Float,
    String,
    Regexp,
    Array,
    Hash,
    Struct,
    Bignum,
    File,
    Fixnum,
    True,
    False,
    Data,
    Match,
    Symbol,
    Rational,
    Complex,
    Imemo,
    Undef,
    Node,
    Zombie,
    Moved,
    Root,
    Shape,
    #[default]
    Unknown,
}

impl ObjType {
    /// Every type, in the order of the enum (index = `as u8`).
    pub const ALL: [ObjType; 30] = [
        ObjType::None,
        ObjType::Nil,
        ObjType::Object,
        ObjType::Class,
        ObjType::IClass,
        ObjType::Module,
        ObjType::Float,
        ObjType::String,
        ObjType::Regexp,
        ObjType::Array,
        ObjType::Hash,
        ObjType::Struct,
        ObjType::Bignum,
        ObjType::File,
        ObjType::Fixnum,
        ObjType::True,
        ObjType::False,
        ObjType::Data,
        ObjType::Match,
        ObjType::Symbol,
        ObjType::Rational,
        ObjType::Complex,
        ObjType::Imemo,
        ObjType::Undef,
        ObjType::Node,
        ObjType::Zombie,
        ObjType::Moved,
        ObjType::Root,
        ObjType::Shape,
        ObjType::Unknown,
    ];

    /// The name the dump uses.
    pub fn name(self) -> &'static str {
        match self {
            ObjType::None => "NONE",
            ObjType::Nil => "NIL",
            ObjType::Object => "OBJECT",
            ObjType::Class => "CLASS",
            ObjType::IClass => "ICLASS",
            ObjType::Module => "MODULE",
            ObjType::Float => "FLOAT",
            ObjType::String => "STRING",
            ObjType::Regexp => "REGEXP",
            ObjType::Array => "ARRAY",
            ObjType::Hash => "HASH",
            ObjType::Struct => "STRUCT",
            ObjType::Bignum => "BIGNUM",
            ObjType::File => "FILE",
            ObjType::Fixnum => "FIXNUM",
            ObjType::True => "TRUE",
            ObjType::False => "FALSE",
            ObjType::Data => "DATA",
            ObjType::Match => "MATCH",
            ObjType::Symbol => "SYMBOL",
            ObjType::Rational => "RATIONAL",
            ObjType::Complex => "COMPLEX",
            ObjType::Imemo => "IMEMO",
            ObjType::Undef => "UNDEF",
            ObjType::Node => "NODE",
            ObjType::Zombie => "ZOMBIE",
            ObjType::Moved => "MOVED",
            ObjType::Root => "ROOT",
            ObjType::Shape => "SHAPE",
            ObjType::Unknown => "UNKNOWN",
        }
    }

    /// The type named by `name` (as the dump writes it).
    pub fn from_name(name: &[u8]) -> ObjType {
        match name {
            b"STRING" => ObjType::String,
            b"IMEMO" => ObjType::Imemo,
            b"OBJECT" => ObjType::Object,
            b"ARRAY" => ObjType::Array,
            b"HASH" => ObjType::Hash,
            b"DATA" => ObjType::Data,
            b"CLASS" => ObjType::Class,
            b"ICLASS" => ObjType::IClass,
            b"MODULE" => ObjType::Module,
            b"SYMBOL" => ObjType::Symbol,
            b"FLOAT" => ObjType::Float,
            b"REGEXP" => ObjType::Regexp,
            b"STRUCT" => ObjType::Struct,
            b"BIGNUM" => ObjType::Bignum,
            b"FILE" => ObjType::File,
            b"MATCH" => ObjType::Match,
            b"RATIONAL" => ObjType::Rational,
            b"COMPLEX" => ObjType::Complex,
            b"NONE" => ObjType::None,
            b"NIL" => ObjType::Nil,
            b"FIXNUM" => ObjType::Fixnum,
            b"TRUE" => ObjType::True,
            b"FALSE" => ObjType::False,
            b"UNDEF" => ObjType::Undef,
            b"NODE" => ObjType::Node,
            b"ZOMBIE" => ObjType::Zombie,
            b"MOVED" => ObjType::Moved,
            b"ROOT" => ObjType::Root,
            b"SHAPE" => ObjType::Shape,
            _ => ObjType::Unknown,
        }
    }

    /// Classes, modules and include classes: what an object's `class` pointer may point at.
    pub fn is_class_like(self) -> bool {
        matches!(self, ObjType::Class | ObjType::Module | ObjType::IClass)
    }
}

/// What a line describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecordKind {
    /// A heap slot (an object, or a free slot with `full: true`).
    #[default]
    Object,
    /// A GC root category and what it references.
    Root,
    /// A node of the shape tree (3.2+): not a heap slot, not a graph node.
    Shape,
}

/// A string value as it appears between its quotes, borrowed from the line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Text<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Text<'a> {
    /// The raw bytes between the quotes (escapes not undone).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The bytes with JSON escapes undone (borrowed when there were none).
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        if self.escaped {
            Cow::Owned(unescape(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// As text; bytes that are not UTF-8 become U+FFFD.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// The addresses of a `references` array, parsed as they are iterated.
#[derive(Clone, Copy, Debug, Default)]
pub struct Refs<'a>(&'a [u8]);

impl<'a> Refs<'a> {
    pub fn iter(&self) -> RefsIter<'a> {
        RefsIter(self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|b| *b != b'"')
    }
}

pub struct RefsIter<'a>(&'a [u8]);

impl Iterator for RefsIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        loop {
            let start = memchr::memchr(b'"', self.0)? + 1;
            let rest = &self.0[start..];
            let end = memchr::memchr(b'"', rest).unwrap_or(rest.len());
            self.0 = rest.get(end + 1..).unwrap_or(&[]);
            if let Some(address) = parse_address(&rest[..end]) {
                return Some(address);
            }
        }
    }
}

/// One record of a dump. Absent fields are `None`/`0`/`false`; strings borrow from the line.
#[derive(Clone, Debug, Default)]
pub struct Record<'a> {
    pub kind: RecordKind,
    pub ty: ObjType,
    /// 0 for ROOT records.
    pub address: u64,
    /// The `class` pointer, 0 when absent.
    pub class: u64,
    /// ROOT: the category (`vm`, `machine_context`, ...).
    pub root: Option<Text<'a>>,
    pub references: Refs<'a>,
    /// `memsize`, which includes the slot; 0 when absent.
    pub memsize: u64,
    pub file: Option<Text<'a>>,
    pub line: Option<u32>,
    pub method: Option<Text<'a>>,
    pub generation: Option<u32>,
    /// CLASS/MODULE: `name`.
    pub name: Option<Text<'a>>,
    /// CLASS/MODULE: `real_class_name` (anonymous classes, singletons).
    pub real_class_name: Option<Text<'a>>,
    pub singleton: bool,
    pub superclass: u64,
    /// STRING/SYMBOL/FLOAT `value`.
    pub value: Option<Text<'a>>,
    pub bytesize: Option<u64>,
    pub capacity: Option<u64>,
    pub encoding: Option<Text<'a>>,
    pub length: Option<u64>,
    pub size: Option<u64>,
    pub ivars: Option<u64>,
    pub shared: bool,
    pub embedded: bool,
    pub fstring: bool,
    pub frozen: bool,
    pub imemo_type: Option<Text<'a>>,
    /// DATA: the `struct` (typed data's `wrap_struct_name`).
    pub struct_name: Option<Text<'a>>,
    pub shape_id: Option<u64>,
    pub slot_size: Option<u32>,
    /// The `flags` object as written (`{"wb_protected":true, "old":true}`); see [`Record::is_old`].
    pub flags: Option<Text<'a>>,
    /// SHAPE: `id`, `parent_id`, `shape_type`, `edge_name`.
    pub id: Option<u64>,
    pub parent_id: Option<u64>,
    pub shape_type: Option<Text<'a>>,
    pub edge_name: Option<Text<'a>>,
    /// The line was not valid JSON (an unescaped quote, a bad byte) but was read anyway.
    pub invalid_json: bool,
}

impl Record<'_> {
    /// `flags.old`: the object survived enough GCs to be in the old generation.
    pub fn is_old(&self) -> bool {
        self.flags
            .is_some_and(|f| memchr::memmem::find(f.raw, b"\"old\":true").is_some())
    }
}

/// Why a line could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("ends before its closing brace (truncated)")]
    Truncated,
    #[error("unreadable value at byte {0}")]
    BadValue(usize),
    #[error("has neither an address nor a type: not a heap dump record")]
    NotARecord,
}

/// Reads one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Record<'_>, LineError> {
    parse_record(line).map_err(|e| match e {
        // A line that stops before its closing brace was cut, whatever tripped the scanner.
        LineError::BadValue(_) if line.trim_ascii_end().last() != Some(&b'}') => {
            LineError::Truncated
        }
        e => e,
    })
}

fn parse_record(line: &[u8]) -> Result<Record<'_>, LineError> {
    let mut p = Parser { s: line, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(LineError::NotAnObject);
    }
    p.i += 1;
    let mut rec = Record::default();
    let mut has_type = false;
    p.ws();
    if p.peek() == Some(b'}') {
        return Err(LineError::NotARecord);
    }
    loop {
        p.ws();
        match p.peek() {
            Some(b'"') => {}
            None => return Err(LineError::Truncated),
            Some(_) => return Err(LineError::BadValue(p.i)),
        }
        let key = p.key()?;
        p.ws();
        if p.peek() != Some(b':') {
            return Err(if p.at_end() {
                LineError::Truncated
            } else {
                LineError::BadValue(p.i)
            });
        }
        p.i += 1;
        p.ws();
        match key {
            b"address" => rec.address = p.address()?,
            b"type" => {
                let t = p.string(false, &mut rec.invalid_json)?;
                rec.ty = ObjType::from_name(t.raw);
                has_type = true;
            }
            b"class" => rec.class = p.address()?,
            b"references" => rec.references = p.refs()?,
            b"memsize" => rec.memsize = p.uint()?,
            b"file" => rec.file = Some(p.string(true, &mut rec.invalid_json)?),
            b"line" => rec.line = Some(p.uint()? as u32),
            b"method" => rec.method = Some(p.string(false, &mut rec.invalid_json)?),
            b"generation" => rec.generation = Some(p.uint()? as u32),
            b"root" => rec.root = Some(p.string(false, &mut rec.invalid_json)?),
            // Escaped since 3.4, raw before: read as JSON; a stray quote is still got past.
            b"name" => rec.name = Some(p.string(false, &mut rec.invalid_json)?),
            b"real_class_name" => {
                rec.real_class_name = Some(p.string(true, &mut rec.invalid_json)?)
            }
            b"singleton" => rec.singleton = p.boolean()?,
            b"superclass" => rec.superclass = p.address()?,
            b"value" => rec.value = Some(p.string(false, &mut rec.invalid_json)?),
            b"bytesize" => rec.bytesize = Some(p.uint()?),
            b"capacity" => rec.capacity = Some(p.uint()?),
            b"encoding" => rec.encoding = Some(p.string(false, &mut rec.invalid_json)?),
            b"length" => rec.length = Some(p.uint()?),
            b"size" => rec.size = Some(p.uint()?),
            b"ivars" => rec.ivars = Some(p.uint()?),
            b"shared" => rec.shared = p.boolean()?,
            b"embedded" => rec.embedded = p.boolean()?,
            b"fstring" => rec.fstring = p.boolean()?,
            b"frozen" => rec.frozen = p.boolean()?,
            b"imemo_type" => rec.imemo_type = Some(p.string(false, &mut rec.invalid_json)?),
            b"struct" => rec.struct_name = Some(p.string(true, &mut rec.invalid_json)?),
            b"shape_id" => rec.shape_id = Some(p.uint()?),
            b"slot_size" => rec.slot_size = Some(p.uint()? as u32),
            b"flags" => rec.flags = Some(p.flags()?),
            b"id" => rec.id = Some(p.uint()?),
            b"parent_id" => rec.parent_id = Some(p.uint()?),
            b"shape_type" => rec.shape_type = Some(p.string(false, &mut rec.invalid_json)?),
            b"edge_name" => rec.edge_name = Some(p.string(false, &mut rec.invalid_json)?),
            _ => p.skip_value(&mut rec.invalid_json)?,
        }
        p.ws();
        match p.peek() {
            Some(b',') => p.i += 1,
            Some(b'}') => {
                p.i += 1;
                break;
            }
            None => return Err(LineError::Truncated),
            Some(_) => return Err(LineError::BadValue(p.i)),
        }
    }
    p.ws();
    if !p.at_end() {
        rec.invalid_json = true;
    }
    if !has_type {
        return Err(LineError::NotARecord);
    }
    rec.kind = match rec.ty {
        ObjType::Root => RecordKind::Root,
        ObjType::Shape => RecordKind::Shape,
        _ => RecordKind::Object,
    };
    if rec.kind == RecordKind::Object && rec.address == 0 {
        return Err(LineError::NotARecord);
    }
    Ok(rec)
}

/// `0x7f12ab` (with or without the prefix) as a number; `None` for anything else.
pub fn parse_address(s: &[u8]) -> Option<u64> {
    let digits = s.strip_prefix(b"0x").unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    #[inline]
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A key: keys never contain quotes or escapes.
    #[inline]
    fn key(&mut self) -> Result<&'a [u8], LineError> {
        let start = self.i + 1;
        let len = memchr::memchr(b'"', &self.s[start..]).ok_or(LineError::Truncated)?;
        self.i = start + len + 1;
        Ok(&self.s[start..start + len])
    }

    /// A string value. `raw_field` marks the fields Ruby writes without escaping (`file`,
    /// `real_class_name`, `struct`); rbscope's own dumps escape them. Such a field is read as
    /// JSON when it is valid JSON (every backslash a JSON escape, a proper end), and otherwise
    /// as the raw bytes Ruby wrote (a Windows path keeps its backslashes), ended at the first
    /// quote JSON allows to end a value, or at the next `", "key":`; the line is then counted as
    /// invalid JSON. Any string with a stray quote inside is got past the same way.
    fn string(&mut self, raw_field: bool, invalid: &mut bool) -> Result<Text<'a>, LineError> {
        if self.peek() != Some(b'"') {
            return Err(self.bad());
        }
        let start = self.i + 1;
        // As JSON: backslashes escape the next byte.
        let mut j = start;
        let mut escaped = false;
        let json_end = loop {
            let Some(off) = memchr::memchr2(b'"', b'\\', &self.s[j..]) else {
                break None;
            };
            j += off;
            if self.s[j] == b'\\' {
                escaped = true;
                j += 2;
                if j > self.s.len() {
                    break None;
                }
                continue;
            }
            break Some(j);
        };
        if let Some(end) = json_end.filter(|e| self.ends_value(e + 1)) {
            let raw = &self.s[start..end];
            if !raw_field || raw_is_valid_json(raw) {
                self.i = end + 1;
                return Ok(Text { raw, escaped });
            }
        }
        if !raw_field {
            // A stray quote: end at the next `", "key":` instead.
            let from = json_end.ok_or(LineError::Truncated)?;
            *invalid = true;
            let end = self
                .recover_string_end(from)
                .ok_or(LineError::BadValue(from))?;
            self.i = end + 1;
            return Ok(Text {
                raw: &self.s[start..end],
                escaped: false,
            });
        }
        // Raw bytes: backslashes are themselves, the first quote that may end a value ends it.
        *invalid = true;
        let q = start + memchr::memchr(b'"', &self.s[start..]).ok_or(LineError::Truncated)?;
        let end = if self.ends_value(q + 1) {
            q
        } else {
            self.recover_string_end(q).ok_or(LineError::BadValue(q))?
        };
        self.i = end + 1;
        Ok(Text {
            raw: &self.s[start..end],
            escaped: false,
        })
    }

    /// After a closing quote: only `,`, `}` or `]` (after spaces) may follow.
    #[inline]
    fn ends_value(&self, mut k: usize) -> bool {
        while let Some(b' ' | b'\t' | b'\r') = self.s.get(k) {
            k += 1;
        }
        matches!(self.s.get(k), Some(b',' | b'}' | b']') | None)
    }

    /// The quote that really ends a value started before `from`: the next `", "key":` or a
    /// `"}` that closes the line.
    fn recover_string_end(&self, from: usize) -> Option<usize> {
        let mut k = from;
        while k < self.s.len() {
            let q = k + memchr::memchr(b'"', &self.s[k..])?;
            let rest = &self.s[q + 1..];
            if looks_like_next_key(rest) || closes_line(rest) {
                return Some(q);
            }
            k = q + 1;
        }
        None
    }

    fn bad(&self) -> LineError {
        if self.at_end() {
            LineError::Truncated
        } else {
            LineError::BadValue(self.i)
        }
    }

    fn address(&mut self) -> Result<u64, LineError> {
        let mut ignored = false;
        let at = self.i;
        let t = self.string(false, &mut ignored)?;
        parse_address(t.raw).ok_or(LineError::BadValue(at))
    }

    #[inline]
    fn uint(&mut self) -> Result<u64, LineError> {
        let start = self.i;
        let mut v: u64 = 0;
        // A negative number would be a format this reader does not know: read it as 0.
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        while let Some(b @ b'0'..=b'9') = self.peek() {
            v = v.wrapping_mul(10).wrapping_add((b - b'0') as u64);
            self.i += 1;
        }
        if self.i == start + negative as usize {
            return Err(self.bad());
        }
        // Fractions or exponents are not written by Ruby for these keys; skip them if present.
        while let Some(b'.' | b'e' | b'E' | b'+' | b'-' | b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        Ok(if negative { 0 } else { v })
    }

    fn boolean(&mut self) -> Result<bool, LineError> {
        let rest = &self.s[self.i..];
        if rest.starts_with(b"true") {
            self.i += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.i += 5;
            Ok(false)
        } else if rest.starts_with(b"null") {
            self.i += 4;
            Ok(false)
        } else {
            Err(self.bad())
        }
    }

    fn refs(&mut self) -> Result<Refs<'a>, LineError> {
        if self.peek() != Some(b'[') {
            return Err(self.bad());
        }
        let start = self.i + 1;
        // Addresses never contain `]`.
        let len = memchr::memchr(b']', &self.s[start..]).ok_or(LineError::Truncated)?;
        self.i = start + len + 1;
        Ok(Refs(&self.s[start..start + len]))
    }

    /// The `flags` object, kept raw: it is flat (no nested braces) in every version.
    fn flags(&mut self) -> Result<Text<'a>, LineError> {
        if self.peek() != Some(b'{') {
            return Err(self.bad());
        }
        let start = self.i;
        let len = memchr::memchr(b'}', &self.s[start..]).ok_or(LineError::Truncated)?;
        self.i = start + len + 1;
        Ok(Text {
            raw: &self.s[start..start + len + 1],
            escaped: false,
        })
    }

    /// Any value of a key this reader does not keep.
    fn skip_value(&mut self, invalid: &mut bool) -> Result<(), LineError> {
        match self.peek() {
            Some(b'"') => self.string(true, invalid).map(|_| ()),
            Some(b'[') | Some(b'{') => {
                let (open, close) = if self.peek() == Some(b'[') {
                    (b'[', b']')
                } else {
                    (b'{', b'}')
                };
                let mut depth = 0usize;
                let mut in_str = false;
                while let Some(b) = self.peek() {
                    self.i += 1;
                    if in_str {
                        if b == b'\\' {
                            self.i += 1;
                        } else if b == b'"' {
                            in_str = false;
                        }
                    } else if b == b'"' {
                        in_str = true;
                    } else if b == open {
                        depth += 1;
                    } else if b == close {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(());
                        }
                    }
                }
                Err(LineError::Truncated)
            }
            Some(b't' | b'f' | b'n') => self.boolean().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.uint().map(|_| ()),
            _ => Err(self.bad()),
        }
    }
}

/// Whether the bytes of an unescaped field would also be read right as the inside of a JSON
/// string: valid UTF-8, no control characters, and every backslash a JSON escape.
fn raw_is_valid_json(raw: &[u8]) -> bool {
    if !raw.is_ascii() && std::str::from_utf8(raw).is_err() {
        return false;
    }
    if raw.iter().any(|b| *b < 0x20) {
        return false;
    }
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &raw[i..]) {
        match raw.get(i + k + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += k + 2,
            Some(b'u')
                if raw
                    .get(i + k + 2..i + k + 6)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                i += k + 6
            }
            _ => return false,
        }
    }
    true
}

/// `, "key":` — what follows a value when another key comes.
fn looks_like_next_key(rest: &[u8]) -> bool {
    let mut k = 0;
    while let Some(b' ') = rest.get(k) {
        k += 1;
    }
    if rest.get(k) != Some(&b',') {
        return false;
    }
    k += 1;
    while let Some(b' ') = rest.get(k) {
        k += 1;
    }
    if rest.get(k) != Some(&b'"') {
        return false;
    }
    k += 1;
    let key_start = k;
    while let Some(b'a'..=b'z' | b'_' | b'0'..=b'9') = rest.get(k) {
        k += 1;
    }
    k > key_start && rest.get(k) == Some(&b'"') && rest.get(k + 1) == Some(&b':')
}

/// `}` and nothing but spaces after it.
fn closes_line(rest: &[u8]) -> bool {
    let mut k = 0;
    while let Some(b' ') = rest.get(k) {
        k += 1;
    }
    rest.get(k) == Some(&b'}') && rest[k + 1..].iter().all(|b| b.is_ascii_whitespace())
}

/// Undoes JSON string escapes; `\uXXXX` (with surrogate pairs) becomes UTF-8.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 >= raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'u' => {
                let hex = |s: &[u8]| -> Option<u32> {
                    std::str::from_utf8(s)
                        .ok()
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                };
                let Some(mut cp) = raw.get(i..i + 4).and_then(hex) else {
                    out.extend_from_slice(b"\\u");
                    continue;
                };
                i += 4;
                if (0xD800..0xDC00).contains(&cp) && raw.get(i..i + 2) == Some(b"\\u") {
                    if let Some(lo) = raw.get(i + 2..i + 6).and_then(hex) {
                        if (0xDC00..0xE000).contains(&lo) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            i += 6;
                        }
                    }
                }
                let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_record() {
        let l = br#"{"address":"0x7ff3f0e2c390", "type":"STRING", "class":"0x7ff3f0dd6440", "frozen":true, "bytesize":31, "capacity":47, "value":"_deprecated_default_executable=", "encoding":"UTF-8", "memsize":88, "flags":{"wb_protected":true, "old":true, "uncollectible":true, "marked":true}}"#;
        let r = parse_line(l).unwrap();
        assert_eq!(r.kind, RecordKind::Object);
        assert_eq!(r.ty, ObjType::String);
        assert_eq!(r.address, 0x7ff3f0e2c390);
        assert_eq!(r.class, 0x7ff3f0dd6440);
        assert!(r.frozen && r.is_old() && !r.invalid_json);
        assert_eq!(r.bytesize, Some(31));
        assert_eq!(r.memsize, 88);
        assert_eq!(r.value.unwrap().raw(), b"_deprecated_default_executable=");
    }

    #[test]
    fn a_root_record_and_its_references() {
        let l = br#"{"type":"ROOT", "root":"global_tbl", "references":["0x7ff3f0def0f8", "0x7ff3f0de8f50", "0x7ff3f0def0f8"]}"#;
        let r = parse_line(l).unwrap();
        assert_eq!(r.kind, RecordKind::Root);
        assert_eq!(r.root.unwrap().raw(), b"global_tbl");
        let refs: Vec<u64> = r.references.iter().collect();
        assert_eq!(refs, vec![0x7ff3f0def0f8, 0x7ff3f0de8f50, 0x7ff3f0def0f8]);
    }

    #[test]
    fn an_unescaped_quote_in_file_is_recovered_and_flagged() {
        let l = br#"{"address":"0x7ff3ed16d7b0", "type":"STRING", "class":"0x7ff3f0dd6440", "value":"a=", "file":"we"ird dir/sample.rb", "line":13, "method":"new", "generation":9, "memsize":40, "flags":{"wb_protected":true}}"#;
        let r = parse_line(l).unwrap();
        assert!(r.invalid_json);
        assert_eq!(r.file.unwrap().raw(), br#"we"ird dir/sample.rb"#);
        assert_eq!(r.line, Some(13));
        assert_eq!(r.generation, Some(9));
        assert_eq!(r.memsize, 40);
    }

    #[test]
    fn backslashes_in_unescaped_fields_are_kept() {
        let l = br#"{"address":"0x10", "type":"STRING", "file":"C:\Users\dev\order.rb", "line":3}"#;
        let r = parse_line(l).unwrap();
        assert_eq!(r.file.unwrap().bytes().as_ref(), br"C:\Users\dev\order.rb");
        assert!(r.invalid_json, "\\U is not a JSON escape");
        let l = br#"{"address":"0x10", "type":"STRING", "file":"C:\dir\", "line":3}"#;
        let r = parse_line(l).unwrap();
        assert_eq!(r.file.unwrap().bytes().as_ref(), br"C:\dir\");
        assert_eq!(r.line, Some(3));
    }

    #[test]
    fn a_quote_at_the_end_of_the_last_field() {
        let l = br#"{"address":"0x10", "type":"DATA", "struct":"my"struct"}"#;
        let r = parse_line(l).unwrap();
        assert!(r.invalid_json);
        assert_eq!(r.struct_name.unwrap().raw(), br#"my"struct"#);
    }

    #[test]
    fn escapes_are_undone_in_escaped_fields() {
        let l = br#"{"address":"0x10", "type":"STRING", "value":"a \"q\" \\ \u00e9 \ud83d\ude00"}"#;
        let r = parse_line(l).unwrap();
        assert!(!r.invalid_json);
        assert_eq!(
            String::from_utf8(r.value.unwrap().bytes().into_owned()).unwrap(),
            "a \"q\" \\ é 😀"
        );
    }

    #[test]
    fn a_shape_record() {
        let l = br#"{"address":"0x7f7358000140", "type":"SHAPE", "id":8, "parent_id":3, "depth":2, "shape_type":"IVAR","edge_name":"mesg", "edges":1, "memsize":40}"#;
        let r = parse_line(l).unwrap();
        assert_eq!(r.kind, RecordKind::Shape);
        assert_eq!((r.id, r.parent_id), (Some(8), Some(3)));
        assert_eq!(r.edge_name.unwrap().raw(), b"mesg");
    }

    #[test]
    fn flags_of_ruby_4_with_integers() {
        let l = br#"{"address":"0x10", "type":"OBJECT", "shape_id":5, "slot_size":40, "class":"0x20", "ivars":2, "memsize":40, "flags":{"wb_protected":true, "age":3, "old":true, "object_id":17, "shareable":true}}"#;
        let r = parse_line(l).unwrap();
        assert!(r.is_old());
        assert_eq!(r.shape_id, Some(5));
        assert_eq!(r.slot_size, Some(40));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(parse_line(b"").unwrap_err(), LineError::NotAnObject);
        assert_eq!(parse_line(b"hello").unwrap_err(), LineError::NotAnObject);
        assert_eq!(parse_line(b"{}").unwrap_err(), LineError::NotARecord);
        assert_eq!(
            parse_line(br#"{"address":"0x10", "type":"STR"#).unwrap_err(),
            LineError::Truncated
        );
        assert_eq!(
            parse_line(br#"{"address":"0x10", "type":"STRING", "memsize":4"#).unwrap_err(),
            LineError::Truncated
        );
        assert_eq!(
            parse_line(br#"{"a":1}"#).unwrap_err(),
            LineError::NotARecord
        );
        assert!(parse_line(br#"{"address":"zz", "type":"STRING"}"#).is_err());
        assert!(parse_line(&[0xff, 0xfe, 0x00, 0x7b]).is_err());
    }

    #[test]
    fn every_prefix_and_byte_flip_of_a_line_is_handled() {
        let l = br#"{"address":"0x7ff3ed16d7b0", "type":"STRING", "class":"0x7ff3f0dd6440", "value":"a=\"", "file":"we"ird dir/sample.rb", "references":["0x1", "0x2"], "line":13, "flags":{"old":true}}"#;
        for n in 0..l.len() {
            let _ = parse_line(&l[..n]);
        }
        let mut v = l.to_vec();
        for i in 0..v.len() {
            for b in [b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0, 0xff] {
                let old = v[i];
                v[i] = b;
                let _ = parse_line(&v);
                v[i] = old;
            }
        }
    }
}
