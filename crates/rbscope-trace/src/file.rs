//! Reading a recorded trace back: the JSON lines or Chrome trace events that [`crate::render`]
//! wrote with `rbscope trace -o FILE`, as spans per thread (what `rbscope ui` draws as a
//! timeline).
//!
//! The text format is for people and is not read back; the reader says so. A trace cut off in
//! the middle (the recording was killed) is read up to its last complete event, and calls that
//! had not returned when it ended become open spans that reach the end.

use serde_json::Value;
use std::collections::HashMap;
use thiserror::Error;

/// One call: where it sits and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start_ns: u64,
    /// From call to return, wall time (what the timeline draws).
    pub wall_ns: u64,
    /// The duration the tracer reported (its own time taken out), when known.
    pub duration_ns: Option<u64>,
    pub depth: u32,
    /// Index into [`TraceFile::names`].
    pub name: u32,
    /// Still running when the trace ended.
    pub open: bool,
    /// Captured values as `name=value` text.
    pub args: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ThreadSpans {
    pub tid: i64,
    pub name: String,
    /// Sorted by start.
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceFile {
    pub format: &'static str,
    pub names: Vec<String>,
    pub threads: Vec<ThreadSpans>,
    /// GC runs: start and duration.
    pub gc: Vec<(u64, u64)>,
    pub lost: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// The last event was cut off (the file ends in the middle of it).
    pub truncated: bool,
}

#[derive(Debug, Error, PartialEq)]
pub enum TraceFileError {
    #[error("it is a trace in text format, which is for reading; record it again with --format jsonl or --format chrome to open it here")]
    Text,
    #[error("it is not a trace rbscope wrote (expected JSON lines or Chrome trace events: record with `rbscope trace -o FILE --format jsonl`)")]
    NotATrace,
    #[error("it holds no events")]
    Empty,
}

/// Reads a trace file's bytes (JSON lines or Chrome's format, told apart by the first byte).
pub fn read(bytes: &[u8]) -> Result<TraceFile, TraceFileError> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    let mut b = Builder::default();
    let format = match trimmed.as_bytes().first() {
        None => return Err(TraceFileError::Empty),
        Some(b'[') => {
            b.chrome(trimmed)?;
            "chrome"
        }
        Some(b'{') => {
            b.jsonl(trimmed)?;
            "jsonl"
        }
        Some(_) => {
            let first = trimmed.lines().next().unwrap_or("");
            return Err(if looks_like_text_trace(first) {
                TraceFileError::Text
            } else {
                TraceFileError::NotATrace
            });
        }
    };
    b.finish(format)
}

/// The text renderer's lines: a method name with `#` or `.`, a duration in angle brackets, or
/// its thread prefix.
fn looks_like_text_trace(line: &str) -> bool {
    line.starts_with('[')
        || ((line.contains('#') || line.contains('.'))
            && (line.contains('<') || line.contains('(')))
}

/// A call not yet returned: method, depth, start, captured values.
type OpenCall = (u32, u32, u64, Option<String>);

#[derive(Default)]
struct Builder {
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
    threads: Vec<ThreadSpans>,
    thread_ids: HashMap<i64, usize>,
    /// Calls not yet returned, per thread.
    open: HashMap<i64, Vec<OpenCall>>,
    gc: Vec<(u64, u64)>,
    lost: u64,
    min_t: Option<u64>,
    max_t: u64,
    events: usize,
    truncated: bool,
}

impl Builder {
    fn name(&mut self, s: &str) -> u32 {
        if let Some(id) = self.name_ids.get(s) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.to_string());
        self.name_ids.insert(s.to_string(), id);
        id
    }

    fn thread(&mut self, tid: i64, name: Option<&str>) -> usize {
        let k = match self.thread_ids.get(&tid) {
            Some(k) => *k,
            None => {
                self.threads.push(ThreadSpans {
                    tid,
                    ..ThreadSpans::default()
                });
                self.thread_ids.insert(tid, self.threads.len() - 1);
                self.threads.len() - 1
            }
        };
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            self.threads[k].name = n.to_string();
        }
        k
    }

    fn saw(&mut self, t: u64) {
        self.min_t = Some(self.min_t.map_or(t, |m| m.min(t)));
        self.max_t = self.max_t.max(t);
    }

    fn call(&mut self, tid: i64, method: &str, depth: u32, t: u64, args: Option<String>) {
        self.saw(t);
        let name = self.name(method);
        self.open
            .entry(tid)
            .or_default()
            .push((name, depth, t, args));
    }

    fn ret(&mut self, tid: i64, method: &str, depth: u32, start: u64, end: u64, dur: Option<u64>) {
        self.saw(start);
        self.saw(end);
        let name = self.name(method);
        // The matching call is the innermost open one of this method; calls above it that never
        // returned (events lost) are closed here too.
        let mut args = None;
        if let Some(stack) = self.open.get_mut(&tid) {
            if let Some(pos) = stack.iter().rposition(|c| c.0 == name) {
                let closed: Vec<_> = stack.drain(pos..).collect();
                args = closed.first().and_then(|c| c.3.clone());
            }
        }
        let k = self.thread(tid, None);
        self.threads[k].spans.push(Span {
            start_ns: start,
            wall_ns: end.saturating_sub(start),
            duration_ns: dur,
            depth,
            name,
            open: false,
            args,
        });
    }

    fn span(&mut self, tid: i64, method: &str, depth: u32, start: u64, dur: u64) {
        self.saw(start);
        self.saw(start + dur);
        let name = self.name(method);
        let k = self.thread(tid, None);
        self.threads[k].spans.push(Span {
            start_ns: start,
            wall_ns: dur,
            duration_ns: Some(dur),
            depth,
            name,
            open: false,
            args: None,
        });
    }

    /// One JSON object per line, as [`crate::render`]'s jsonl renderer writes them.
    fn jsonl(&mut self, text: &str) -> Result<(), TraceFileError> {
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let v: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                // The last line of a recording that was killed while writing.
                Err(_) if lines.peek().is_none() && self.events > 0 => {
                    self.truncated = true;
                    break;
                }
                Err(_) => return Err(TraceFileError::NotATrace),
            };
            let Some(event) = v["event"].as_str() else {
                return Err(TraceFileError::NotATrace);
            };
            self.events += 1;
            let tid = v["thread"].as_i64().unwrap_or(0);
            let method = v["method"].as_str().unwrap_or("?");
            let depth = v["depth"].as_u64().unwrap_or(0) as u32;
            match event {
                "call" => {
                    self.thread(tid, v["thread_name"].as_str());
                    let args = args_text(&v["values"]);
                    self.call(tid, method, depth, v["t_ns"].as_u64().unwrap_or(0), args);
                }
                "return" => {
                    self.thread(tid, v["thread_name"].as_str());
                    let end = v["t_ns"].as_u64().unwrap_or(0);
                    let start = v["start_ns"].as_u64().unwrap_or(end);
                    self.ret(tid, method, depth, start, end, v["duration_ns"].as_u64());
                }
                "slow" => {
                    self.thread(tid, v["thread_name"].as_str());
                    let start = v["start_ns"].as_u64().unwrap_or(0);
                    self.span(
                        tid,
                        method,
                        depth,
                        start,
                        v["duration_ns"].as_u64().unwrap_or(0),
                    );
                }
                "gc" => {
                    let t = v["t_ns"].as_u64().unwrap_or(0);
                    let d = v["duration_ns"].as_u64().unwrap_or(0);
                    self.saw(t.saturating_sub(d));
                    self.saw(t);
                    self.gc.push((t.saturating_sub(d), d));
                }
                "lost" => self.lost += v["count"].as_u64().unwrap_or(0),
                _ => {}
            }
        }
        Ok(())
    }

    /// A JSON array of Chrome trace events (B/E pairs, X spans, M thread names).
    fn chrome(&mut self, text: &str) -> Result<(), TraceFileError> {
        let events: Vec<Value> = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(a)) => a,
            Ok(_) => return Err(TraceFileError::NotATrace),
            Err(_) => {
                // Cut off: read the events one per line up to the last complete one.
                self.truncated = true;
                text.lines()
                    .skip(1)
                    .filter_map(|l| serde_json::from_str(l.trim().trim_end_matches(',')).ok())
                    .collect()
            }
        };
        let micros = |v: &Value| (v.as_f64().unwrap_or(0.0) * 1000.0).round() as u64;
        for e in &events {
            let Some(ph) = e["ph"].as_str() else {
                return Err(TraceFileError::NotATrace);
            };
            self.events += 1;
            let tid = e["tid"].as_i64().unwrap_or(0);
            let name = e["name"].as_str().unwrap_or("?");
            match ph {
                "M" if name == "thread_name" => {
                    self.thread(tid, e["args"]["name"].as_str());
                }
                "B" => {
                    let depth = self.open.get(&tid).map_or(0, |s| s.len()) as u32;
                    self.thread(tid, None);
                    self.call(tid, name, depth, micros(&e["ts"]), args_text(&e["args"]));
                }
                "E" => {
                    let end = micros(&e["ts"]);
                    let start = self
                        .open
                        .get(&tid)
                        .and_then(|s| s.iter().rev().find(|c| self.names[c.0 as usize] == name))
                        .map_or(end, |c| c.2);
                    let depth = self.open.get(&tid).map_or(1, |s| s.len()).saturating_sub(1);
                    self.ret(
                        tid,
                        name,
                        depth as u32,
                        start,
                        end,
                        e["args"]["duration_ns"].as_u64(),
                    );
                }
                "X" if e["cat"] == "gc" => {
                    let (s, d) = (micros(&e["ts"]), micros(&e["dur"]));
                    self.saw(s);
                    self.saw(s + d);
                    self.gc.push((s, d));
                }
                "X" => {
                    let depth = self.open.get(&tid).map_or(0, |s| s.len()) as u32;
                    self.span(tid, name, depth, micros(&e["ts"]), micros(&e["dur"]));
                }
                "i" => {
                    // "N events lost"
                    if let Some(n) = name
                        .strip_suffix(" events lost")
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        self.lost += n;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn finish(mut self, format: &'static str) -> Result<TraceFile, TraceFileError> {
        if self.events == 0 {
            return Err(TraceFileError::Empty);
        }
        let end = self.max_t;
        let open = std::mem::take(&mut self.open);
        for (tid, stack) in open {
            let k = self.thread(tid, None);
            for (name, depth, start, args) in stack {
                self.threads[k].spans.push(Span {
                    start_ns: start,
                    wall_ns: end.saturating_sub(start),
                    duration_ns: None,
                    depth,
                    name,
                    open: true,
                    args,
                });
            }
        }
        let start = self.min_t.unwrap_or(0);
        for t in &mut self.threads {
            t.spans
                .sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.depth.cmp(&b.depth)));
        }
        self.threads.retain(|t| !t.spans.is_empty());
        self.threads.sort_by_key(|t| t.tid);
        Ok(TraceFile {
            format,
            names: self.names,
            threads: self.threads,
            gc: self.gc,
            lost: self.lost,
            start_ns: start,
            end_ns: end,
            truncated: self.truncated,
        })
    }
}

/// Captured values as `k=v, k=v` (None when there are none).
fn args_text(v: &Value) -> Option<String> {
    let map = v.as_object()?;
    let parts: Vec<String> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "duration_ns")
        .map(|(k, v)| match v.as_str() {
            Some(s) => format!("{k}={s}"),
            None => format!("{k}={v}"),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_trace() {
        assert_eq!(read(b""), Err(TraceFileError::Empty));
        assert_eq!(read(b"  \n"), Err(TraceFileError::Empty));
        assert_eq!(
            read(b"Greeter#greet <12.0\xc2\xb5s>\n"),
            Err(TraceFileError::Text)
        );
        assert_eq!(read(b"hello"), Err(TraceFileError::NotATrace));
        assert_eq!(read(b"{\"a\":1}\n"), Err(TraceFileError::NotATrace));
        assert_eq!(read(b"{\"a\":1}"), Err(TraceFileError::NotATrace));
        assert_eq!(read(b"[{\"a\":1}]"), Err(TraceFileError::NotATrace));
        assert_eq!(read(b"[]"), Err(TraceFileError::Empty));
        assert_eq!(read(b"\x00\xff\x10"), Err(TraceFileError::NotATrace));
    }
}
