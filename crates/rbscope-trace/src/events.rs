//! The binary records the agent's hooks write and the CLI reads.
//!
//! A record is a little-endian `u32` header (`kind << 24 | length`, the length counting the
//! header and always a multiple of 4) and a payload. Fixed-size records (a call, a return) are
//! written with a few stores and no allocation, which is what keeps a hook cheap; names (of
//! methods and threads) are sent once, as their own records, before the first record that uses
//! them. Padding records fill the end of the ring when a record does not fit there.

use thiserror::Error;

const PAD: u8 = 0;
const CALL: u8 = 1;
const RETURN: u8 = 2;
const CALL_VALUES: u8 = 3;
const METHOD: u8 = 4;
const THREAD: u8 = 5;
const SLOW: u8 = 6;
const GC: u8 = 7;
const LOST: u8 = 8;
const NOTE: u8 = 9;

/// Bytes of a call record.
pub const CALL_LEN: usize = 20;
/// Bytes of a return record.
pub const RETURN_LEN: usize = 28;
/// Bytes of a slow-call record.
pub const SLOW_LEN: usize = 32;
/// Bytes of a GC record.
pub const GC_LEN: usize = 24;
/// Bytes of a lost-events record.
pub const LOST_LEN: usize = 12;
/// The largest record (names and captured values are cut to fit).
pub const MAX_RECORD: usize = 64 * 1024;

/// The GC phases traced with `--gc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcPhase {
    Start,
    EndMark,
    EndSweep,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A method was entered; `t` is monotonic nanoseconds when its body began.
    Call {
        thread: u32,
        method: u32,
        t: u64,
        values: Vec<(&'a str, &'a str)>,
    },
    /// A method returned (or unwound); `duration` excludes the tracer's own time spent while
    /// it ran.
    Return {
        thread: u32,
        method: u32,
        t: u64,
        duration: u64,
    },
    /// The label of a method id.
    Method {
        id: u32,
        label: &'a str,
    },
    /// A thread id's OS thread id and name.
    Thread {
        id: u32,
        tid: i32,
        name: &'a str,
    },
    /// A call slower than the `--slow` threshold, reported when it returned.
    Slow {
        thread: u32,
        method: u32,
        depth: u32,
        start: u64,
        duration: u64,
    },
    Gc {
        phase: GcPhase,
        count: u64,
        t: u64,
    },
    /// Events that did not fit in the ring (the client was too slow), since the last report.
    Lost {
        count: u64,
    },
    /// A message from the agent for the person tracing (a waiting selector now hooked).
    Note {
        text: &'a str,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event record at byte {0} is malformed")]
    Malformed(usize),
    #[error("event record of kind {1} at byte {0} is unknown (agent newer than this CLI?)")]
    UnknownKind(usize, u8),
}

fn header(buf: &mut [u8], kind: u8, len: usize) {
    debug_assert!(len.is_multiple_of(4) && len < (1 << 24));
    buf[..4].copy_from_slice(&((u32::from(kind) << 24) | len as u32).to_le_bytes());
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Rounds a length up to the record alignment.
pub fn aligned(len: usize) -> usize {
    (len + 3) & !3
}

pub fn write_call(buf: &mut [u8], thread: u32, method: u32, t: u64) {
    header(buf, CALL, CALL_LEN);
    put_u32(buf, 4, thread);
    put_u32(buf, 8, method);
    put_u64(buf, 12, t);
}

pub fn write_return(buf: &mut [u8], thread: u32, method: u32, t: u64, duration: u64) {
    header(buf, RETURN, RETURN_LEN);
    put_u32(buf, 4, thread);
    put_u32(buf, 8, method);
    put_u64(buf, 12, t);
    put_u64(buf, 20, duration);
}

pub fn write_slow(buf: &mut [u8], thread: u32, method: u32, depth: u32, start: u64, dur: u64) {
    header(buf, SLOW, SLOW_LEN);
    put_u32(buf, 4, thread);
    put_u32(buf, 8, method);
    put_u32(buf, 12, depth);
    put_u64(buf, 16, start);
    put_u64(buf, 24, dur);
}

pub fn write_gc(buf: &mut [u8], phase: GcPhase, count: u64, t: u64) {
    header(buf, GC, GC_LEN);
    put_u32(
        buf,
        4,
        match phase {
            GcPhase::Start => 0,
            GcPhase::EndMark => 1,
            GcPhase::EndSweep => 2,
        },
    );
    put_u64(buf, 8, count);
    put_u64(buf, 16, t);
}

pub fn write_lost(buf: &mut [u8], count: u64) {
    header(buf, LOST, LOST_LEN);
    put_u64(buf, 4, count);
}

/// A name cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

const NAME_MAX: usize = 4096;

/// Bytes of a method-name record for `label`.
pub fn method_len(label: &str) -> usize {
    aligned(10 + cut(label, NAME_MAX).len())
}

pub fn write_method(buf: &mut [u8], id: u32, label: &str) {
    let label = cut(label, NAME_MAX);
    let len = method_len(label);
    header(buf, METHOD, len);
    put_u32(buf, 4, id);
    buf[8..10].copy_from_slice(&(label.len() as u16).to_le_bytes());
    buf[10..10 + label.len()].copy_from_slice(label.as_bytes());
    buf[10 + label.len()..len].fill(0);
}

/// Bytes of a thread record for `name`.
pub fn thread_len(name: &str) -> usize {
    aligned(14 + cut(name, NAME_MAX).len())
}

pub fn write_thread(buf: &mut [u8], id: u32, tid: i32, name: &str) {
    let name = cut(name, NAME_MAX);
    let len = thread_len(name);
    header(buf, THREAD, len);
    put_u32(buf, 4, id);
    buf[8..12].copy_from_slice(&tid.to_le_bytes());
    buf[12..14].copy_from_slice(&(name.len() as u16).to_le_bytes());
    buf[14..14 + name.len()].copy_from_slice(name.as_bytes());
    buf[14 + name.len()..len].fill(0);
}

/// Captured values are cut so that a record stays under [`MAX_RECORD`].
const VALUE_MAX: usize = 8 * 1024;

/// Bytes of a call record that carries captured `(expression, value)` pairs.
pub fn call_values_len(values: &[(&str, &str)]) -> usize {
    let body: usize = values
        .iter()
        .take(32)
        .map(|(k, v)| 4 + cut(k, 256).len() + cut(v, VALUE_MAX).len())
        .sum();
    aligned(CALL_LEN + 2 + body)
}

pub fn write_call_values(
    buf: &mut [u8],
    thread: u32,
    method: u32,
    t: u64,
    values: &[(&str, &str)],
) {
    let len = call_values_len(values);
    header(buf, CALL_VALUES, len);
    put_u32(buf, 4, thread);
    put_u32(buf, 8, method);
    put_u64(buf, 12, t);
    let values = &values[..values.len().min(32)];
    buf[20..22].copy_from_slice(&(values.len() as u16).to_le_bytes());
    let mut at = 22;
    for (k, v) in values {
        for s in [cut(k, 256), cut(v, VALUE_MAX)] {
            buf[at..at + 2].copy_from_slice(&(s.len() as u16).to_le_bytes());
            buf[at + 2..at + 2 + s.len()].copy_from_slice(s.as_bytes());
            at += 2 + s.len();
        }
    }
    buf[at..len].fill(0);
}

/// Bytes of a note record for `text`.
pub fn note_len(text: &str) -> usize {
    aligned(6 + cut(text, NAME_MAX).len())
}

pub fn write_note(buf: &mut [u8], text: &str) {
    let text = cut(text, NAME_MAX);
    let len = note_len(text);
    header(buf, NOTE, len);
    buf[4..6].copy_from_slice(&(text.len() as u16).to_le_bytes());
    buf[6..6 + text.len()].copy_from_slice(text.as_bytes());
    buf[6 + text.len()..len].fill(0);
}

/// Bytes of a padding record of `len` bytes (a multiple of 4, at least 4).
pub fn write_pad(buf: &mut [u8], len: usize) {
    header(buf, PAD, len);
}

/// Appends a record built by `write` with `len` bytes to `out`.
pub fn push_to(out: &mut Vec<u8>, len: usize, write: impl FnOnce(&mut [u8])) {
    let start = out.len();
    out.resize(start + len, 0);
    write(&mut out[start..]);
}

/// Reads records one by one; padding is skipped.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn get_str(b: &[u8], at: usize) -> Option<(&str, usize)> {
    let n = u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize;
    let s = std::str::from_utf8(b.get(at + 2..at + 2 + n)?).ok()?;
    Some((s, at + 2 + n))
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Event<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.at >= self.buf.len() {
                return None;
            }
            let at = self.at;
            let rest = &self.buf[at..];
            if rest.len() < 4 {
                self.at = self.buf.len();
                return Some(Err(DecodeError::Malformed(at)));
            }
            let h = get_u32(rest, 0);
            let kind = (h >> 24) as u8;
            let len = (h & 0x00ff_ffff) as usize;
            if len < 4 || !len.is_multiple_of(4) || len > rest.len() {
                self.at = self.buf.len();
                return Some(Err(DecodeError::Malformed(at)));
            }
            self.at += len;
            let r = &rest[..len];
            let need = |n: usize| {
                if len >= n {
                    Ok(())
                } else {
                    Err(DecodeError::Malformed(at))
                }
            };
            let ev = match kind {
                PAD => continue,
                CALL => need(CALL_LEN).map(|_| Event::Call {
                    thread: get_u32(r, 4),
                    method: get_u32(r, 8),
                    t: get_u64(r, 12),
                    values: Vec::new(),
                }),
                RETURN => need(RETURN_LEN).map(|_| Event::Return {
                    thread: get_u32(r, 4),
                    method: get_u32(r, 8),
                    t: get_u64(r, 12),
                    duration: get_u64(r, 20),
                }),
                CALL_VALUES => need(CALL_LEN + 2).and_then(|_| {
                    let n = u16::from_le_bytes([r[20], r[21]]) as usize;
                    let mut values = Vec::with_capacity(n);
                    let mut p = 22;
                    for _ in 0..n {
                        let (k, q) = get_str(r, p).ok_or(DecodeError::Malformed(at))?;
                        let (v, q) = get_str(r, q).ok_or(DecodeError::Malformed(at))?;
                        values.push((k, v));
                        p = q;
                    }
                    Ok(Event::Call {
                        thread: get_u32(r, 4),
                        method: get_u32(r, 8),
                        t: get_u64(r, 12),
                        values,
                    })
                }),
                METHOD => need(10).and_then(|_| {
                    let (label, _) = get_str(r, 8).ok_or(DecodeError::Malformed(at))?;
                    Ok(Event::Method {
                        id: get_u32(r, 4),
                        label,
                    })
                }),
                THREAD => need(14).and_then(|_| {
                    let (name, _) = get_str(r, 12).ok_or(DecodeError::Malformed(at))?;
                    Ok(Event::Thread {
                        id: get_u32(r, 4),
                        tid: get_u32(r, 8) as i32,
                        name,
                    })
                }),
                SLOW => need(SLOW_LEN).map(|_| Event::Slow {
                    thread: get_u32(r, 4),
                    method: get_u32(r, 8),
                    depth: get_u32(r, 12),
                    start: get_u64(r, 16),
                    duration: get_u64(r, 24),
                }),
                GC => need(GC_LEN).and_then(|_| {
                    let phase = match get_u32(r, 4) {
                        0 => GcPhase::Start,
                        1 => GcPhase::EndMark,
                        2 => GcPhase::EndSweep,
                        _ => return Err(DecodeError::Malformed(at)),
                    };
                    Ok(Event::Gc {
                        phase,
                        count: get_u64(r, 8),
                        t: get_u64(r, 16),
                    })
                }),
                LOST => need(LOST_LEN).map(|_| Event::Lost {
                    count: get_u64(r, 4),
                }),
                NOTE => need(6).and_then(|_| {
                    let (text, _) = get_str(r, 4).ok_or(DecodeError::Malformed(at))?;
                    Ok(Event::Note { text })
                }),
                other => Err(DecodeError::UnknownKind(at, other)),
            };
            return Some(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips() {
        let mut out = Vec::new();
        push_to(&mut out, method_len("Foo#bar(a)"), |b| {
            write_method(b, 7, "Foo#bar(a)")
        });
        push_to(&mut out, thread_len("worker"), |b| {
            write_thread(b, 2, 4242, "worker")
        });
        push_to(&mut out, CALL_LEN, |b| write_call(b, 2, 7, 100));
        let values = [("self", "#<Foo>"), ("a", "\"é\"")];
        push_to(&mut out, call_values_len(&values), |b| {
            write_call_values(b, 2, 7, 101, &values)
        });
        push_to(&mut out, 8, |b| write_pad(b, 8));
        push_to(&mut out, RETURN_LEN, |b| write_return(b, 2, 7, 150, 49));
        push_to(&mut out, SLOW_LEN, |b| write_slow(b, 2, 7, 3, 100, 50));
        push_to(&mut out, GC_LEN, |b| write_gc(b, GcPhase::EndMark, 12, 160));
        push_to(&mut out, LOST_LEN, |b| write_lost(b, 99));
        push_to(&mut out, note_len("now tracing Foo#bar"), |b| {
            write_note(b, "now tracing Foo#bar")
        });
        assert_eq!(out.len() % 4, 0);
        let got: Vec<Event> = Reader::new(&out).map(|e| e.unwrap()).collect();
        assert_eq!(
            got,
            vec![
                Event::Method {
                    id: 7,
                    label: "Foo#bar(a)"
                },
                Event::Thread {
                    id: 2,
                    tid: 4242,
                    name: "worker"
                },
                Event::Call {
                    thread: 2,
                    method: 7,
                    t: 100,
                    values: vec![]
                },
                Event::Call {
                    thread: 2,
                    method: 7,
                    t: 101,
                    values: values.to_vec()
                },
                Event::Return {
                    thread: 2,
                    method: 7,
                    t: 150,
                    duration: 49
                },
                Event::Slow {
                    thread: 2,
                    method: 7,
                    depth: 3,
                    start: 100,
                    duration: 50
                },
                Event::Gc {
                    phase: GcPhase::EndMark,
                    count: 12,
                    t: 160
                },
                Event::Lost { count: 99 },
                Event::Note {
                    text: "now tracing Foo#bar"
                },
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [
            &[1u8, 2, 3][..],
            &[0, 0, 0, 0],
            &[20, 0, 0, 1, 0, 0],
            &[8, 0, 0, 3, 0, 0, 0, 0],
            &[12, 0, 0, 4, 0, 0, 0, 0, 0xff, 0xff, 0, 0],
            &[4, 0, 0, 99],
        ] {
            let got: Vec<_> = Reader::new(junk).collect();
            assert!(got.iter().any(|e| e.is_err()), "{junk:?} gave {got:?}");
        }
        // Long names are cut on a character boundary and still decode.
        let long = "é".repeat(5000);
        let mut out = Vec::new();
        push_to(&mut out, method_len(&long), |b| write_method(b, 1, &long));
        match Reader::new(&out).next() {
            Some(Ok(Event::Method { label, .. })) => assert!(label.len() <= NAME_MAX),
            other => panic!("{other:?}"),
        }
    }
}
