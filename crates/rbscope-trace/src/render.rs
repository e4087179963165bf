//! Printing a trace: an indented text tree (rbtrace's layout), JSON lines, or Chrome's trace
//! event format (open it in Perfetto or chrome://tracing).
//!
//! Text: a call that made no traced calls is one line, `Foo#bar(x=1) <12.0µs>`;
//! a call that did opens a line, its calls follow indented by two spaces, and a closing line
//! repeats its name with its duration. Durations exclude the tracer's own time. A logpoint's
//! hit (`rbscope log`) is one line, `app/models/order.rb:42  order.id=5  @user.email="a@b.c"`.

use crate::timeline::{Dense, Names, Step};
use std::collections::HashSet;
use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
    Chrome,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "text" => Ok(Format::Text),
            "jsonl" => Ok(Format::Jsonl),
            "chrome" => Ok(Format::Chrome),
            other => Err(format!(
                "unknown format {other:?}: use text, jsonl or chrome"
            )),
        }
    }
}

pub trait Render {
    fn step(&mut self, names: &Names, step: Step) -> io::Result<()>;
    /// Called once at the end (calls still running are shown as such).
    fn finish(&mut self, names: &Names) -> io::Result<()>;
    /// Writes out what is buffered so far (a reader of a terminal or a pipe sees the lines as
    /// they come); lines that wait for a later event (a call that may still make calls) stay.
    fn flush(&mut self) -> io::Result<()>;
}

/// Makes the renderer for `format`. `pid` labels Chrome's process track.
pub fn renderer<'w>(
    format: Format,
    out: Box<dyn Write + 'w>,
    show_threads: bool,
    pid: u32,
) -> Box<dyn Render + 'w> {
    match format {
        Format::Text => Box::new(Text::new(out, show_threads)),
        Format::Jsonl => Box::new(Jsonl {
            out,
            threads: Dense::default(),
            methods: Dense::default(),
        }),
        Format::Chrome => Box::new(Chrome {
            out,
            pid,
            first: true,
            named: HashSet::new(),
            named_tids: HashSet::new(),
            methods: Dense::default(),
        }),
    }
}

/// A duration as `<412ns>`, `<12.3µs>`, `<4.56ms>` or `<1.234s>`.
pub fn duration(ns: u64) -> String {
    if ns < 1_000 {
        format!("<{ns}ns>")
    } else if ns < 1_000_000 {
        format!("<{:.1}µs>", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("<{:.2}ms>", ns as f64 / 1e6)
    } else {
        format!("<{:.3}s>", ns as f64 / 1e9)
    }
}

fn seconds(w: &mut dyn Write, ns: u64) -> io::Result<()> {
    if ns < 1_000 {
        write!(w, "<{ns}ns>")
    } else if ns < 1_000_000 {
        write!(w, "<{:.1}µs>", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        write!(w, "<{:.2}ms>", ns as f64 / 1e6)
    } else {
        write!(w, "<{:.3}s>", ns as f64 / 1e9)
    }
}

struct Pending {
    depth: usize,
    method: u32,
    values: Vec<(String, String)>,
}

pub struct Text<'w> {
    out: Box<dyn Write + 'w>,
    show_threads: bool,
    pending: Dense<Pending>,
}

impl<'w> Text<'w> {
    pub fn new(out: Box<dyn Write + 'w>, show_threads: bool) -> Text<'w> {
        Text {
            out,
            show_threads,
            pending: Dense::default(),
        }
    }

    fn prefix(&mut self, names: &Names, thread: u32, depth: usize) -> io::Result<()> {
        if self.show_threads {
            let (tid, name) = names.thread(thread);
            if name.is_empty() {
                write!(self.out, "[{tid}] ")?;
            } else {
                write!(self.out, "[{tid} {name}] ")?;
            }
        }
        for _ in 0..depth.min(200) {
            self.out.write_all(b"  ")?;
        }
        Ok(())
    }

    fn call_line(&mut self, names: &Names, thread: u32, p: &Pending) -> io::Result<()> {
        self.prefix(names, thread, p.depth)?;
        self.out.write_all(names.method(p.method).as_bytes())?;
        if !p.values.is_empty() {
            self.out.write_all(b"(")?;
            for (i, (k, v)) in p.values.iter().enumerate() {
                if i > 0 {
                    self.out.write_all(b", ")?;
                }
                write!(self.out, "{k}={v}")?;
            }
            self.out.write_all(b")")?;
        }
        Ok(())
    }

    fn flush_pending(&mut self, names: &Names, thread: u32) -> io::Result<()> {
        if let Some(p) = self.pending.take(thread) {
            self.call_line(names, thread, &p)?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }
}

impl Render for Text<'_> {
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn step(&mut self, names: &Names, step: Step) -> io::Result<()> {
        match step {
            Step::Enter {
                thread,
                depth,
                method,
                values,
                ..
            } => {
                self.flush_pending(names, thread)?;
                *self.pending.entry(thread, || Pending {
                    depth,
                    method,
                    values: Vec::new(),
                }) = Pending {
                    depth,
                    method,
                    values,
                };
            }
            Step::Leave {
                thread,
                depth,
                method,
                duration,
                ..
            } => {
                match self.pending.take(thread) {
                    Some(p) if p.depth == depth && p.method == method => {
                        self.call_line(names, thread, &p)?;
                    }
                    other => {
                        if let Some(p) = other {
                            self.call_line(names, thread, &p)?;
                            self.out.write_all(b"\n")?;
                        }
                        self.prefix(names, thread, depth)?;
                        self.out.write_all(names.method(method).as_bytes())?;
                    }
                }
                self.out.write_all(b" ")?;
                seconds(&mut self.out, duration)?;
                self.out
                    .write_all(if depth == 0 { b"\n\n" } else { b"\n" })?;
            }
            Step::Slow {
                thread,
                depth,
                method,
                duration,
                ..
            } => {
                self.prefix(names, thread, depth as usize)?;
                self.out.write_all(names.method(method).as_bytes())?;
                self.out.write_all(b" ")?;
                seconds(&mut self.out, duration)?;
                self.out.write_all(b"\n")?;
            }
            Step::Gc {
                count, mark, total, ..
            } => {
                write!(self.out, "GC #{count} ")?;
                match total {
                    Some(t) => seconds(&mut self.out, t)?,
                    None => self.out.write_all(b"(began before the trace)")?,
                }
                if let Some(m) = mark {
                    self.out.write_all(b" mark ")?;
                    seconds(&mut self.out, m)?;
                }
                self.out.write_all(b"\n")?;
            }
            Step::Lost { count } => {
                writeln!(
                    self.out,
                    "*** {count} events lost here: this client did not read fast enough"
                )?;
            }
            Step::Log {
                tid,
                thread,
                at,
                values,
                ..
            } => {
                if self.show_threads {
                    if thread.is_empty() {
                        write!(self.out, "[{tid}] ")?;
                    } else {
                        write!(self.out, "[{tid} {thread}] ")?;
                    }
                }
                self.out.write_all(at.as_bytes())?;
                for (k, v) in &values {
                    write!(self.out, "  {k}={v}")?;
                }
                self.out.write_all(b"\n")?;
            }
            // Notes are for the person, not the trace: the CLI prints them itself.
            Step::Note(_) => {}
        }
        Ok(())
    }

    fn finish(&mut self, names: &Names) -> io::Result<()> {
        for t in self.pending.ids() {
            if let Some(p) = self.pending.take(t) {
                self.call_line(names, t, &p)?;
                self.out.write_all(b" <still running>\n")?;
            }
        }
        self.out.flush()
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn json_values(values: &[(String, String)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&json_str(k));
        s.push(':');
        s.push_str(&json_str(v));
    }
    s.push('}');
    s
}

struct Jsonl<'w> {
    out: Box<dyn Write + 'w>,
    /// Each thread's `"thread":TID,"thread_name":"NAME"`, with the name it was made from.
    threads: Dense<(String, String)>,
    /// Each method's name as a JSON string, with the name it was made from.
    methods: Dense<(String, String)>,
}

/// A thread's `"thread":TID,"thread_name":"NAME"` for a JSON line (cached).
fn thread_json<'c>(
    threads: &'c mut Dense<(String, String)>,
    names: &Names,
    thread: u32,
) -> &'c str {
    let (tid, name) = names.thread(thread);
    cached(threads, thread, name, |name| {
        format!("\"thread\":{tid},\"thread_name\":{}", json_str(name))
    })
}

/// `cache`'s text for `id`, made again by `make` when the name it was made from changed: a
/// firehose writes millions of lines naming a few threads and methods, and escaping their
/// names once keeps a JSON line as cheap as a text one.
fn cached<'c>(
    cache: &'c mut Dense<(String, String)>,
    id: u32,
    name: &str,
    make: impl Fn(&str) -> String,
) -> &'c str {
    let e = cache.entry(id, || (name.to_string(), make(name)));
    if e.0 != name {
        *e = (name.to_string(), make(name));
    }
    &e.1
}

impl Jsonl<'_> {
    /// A call's or return's JSON line up to its depth, written without going through fmt (a
    /// firehose writes millions): `open` (`{"event":"call",`), then
    /// `"thread":..,"thread_name":..,"method":..,"depth":..`.
    fn call_head(
        &mut self,
        names: &Names,
        open: &[u8],
        thread: u32,
        method: u32,
        depth: usize,
    ) -> io::Result<()> {
        let th = thread_json(&mut self.threads, names, thread);
        let m = cached(&mut self.methods, method, &names.method(method), json_str);
        let out = &mut self.out;
        out.write_all(open)?;
        out.write_all(th.as_bytes())?;
        out.write_all(b",\"method\":")?;
        out.write_all(m.as_bytes())?;
        out.write_all(b",\"depth\":")?;
        out.write_all(itoa::Buffer::new().format(depth).as_bytes())
    }
}

impl Render for Jsonl<'_> {
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn step(&mut self, names: &Names, step: Step) -> io::Result<()> {
        match step {
            Step::Enter {
                thread,
                depth,
                method,
                t,
                values,
            } => {
                self.call_head(names, b"{\"event\":\"call\",", thread, method, depth)?;
                let (out, mut n) = (&mut self.out, itoa::Buffer::new());
                out.write_all(b",\"t_ns\":")?;
                out.write_all(n.format(t).as_bytes())?;
                out.write_all(b",\"values\":")?;
                if values.is_empty() {
                    out.write_all(b"{}}\n")
                } else {
                    writeln!(out, "{}}}", json_values(&values))
                }
            }
            Step::Leave {
                thread,
                depth,
                method,
                start,
                end,
                duration,
            } => {
                self.call_head(names, b"{\"event\":\"return\",", thread, method, depth)?;
                let (out, mut n) = (&mut self.out, itoa::Buffer::new());
                out.write_all(b",\"start_ns\":")?;
                out.write_all(n.format(start).as_bytes())?;
                out.write_all(b",\"t_ns\":")?;
                out.write_all(n.format(end).as_bytes())?;
                out.write_all(b",\"duration_ns\":")?;
                out.write_all(n.format(duration).as_bytes())?;
                out.write_all(b"}\n")
            }
            Step::Slow {
                thread,
                depth,
                method,
                start,
                duration,
            } => {
                let Jsonl {
                    out,
                    threads,
                    methods,
                } = self;
                let th = thread_json(threads, names, thread);
                let m = cached(methods, method, &names.method(method), json_str);
                writeln!(
                    out,
                    "{{\"event\":\"slow\",{th},\"method\":{m},\"depth\":{depth},\"start_ns\":{start},\"duration_ns\":{duration}}}",
                )
            }
            Step::Gc {
                count,
                t,
                mark,
                total,
            } => writeln!(
                self.out,
                "{{\"event\":\"gc\",\"count\":{count},\"t_ns\":{t},\"mark_ns\":{},\"duration_ns\":{}}}",
                mark.map_or("null".to_string(), |m| m.to_string()),
                total.map_or("null".to_string(), |m| m.to_string()),
            ),
            Step::Lost { count } => {
                writeln!(self.out, "{{\"event\":\"lost\",\"count\":{count}}}")
            }
            Step::Log {
                tid,
                thread,
                t,
                at,
                values,
            } => writeln!(
                self.out,
                "{{\"event\":\"log\",\"thread\":{tid},\"thread_name\":{},\"at\":{},\"t_ns\":{t},\"values\":{}}}",
                json_str(&thread),
                json_str(&at),
                json_values(&values)
            ),
            Step::Note(_) => Ok(()),
        }
    }

    fn finish(&mut self, _names: &Names) -> io::Result<()> {
        self.out.flush()
    }
}

struct Chrome<'w> {
    out: Box<dyn Write + 'w>,
    pid: u32,
    first: bool,
    named: HashSet<u32>,
    /// Threads named by their OS id (a logpoint's hits).
    named_tids: HashSet<i64>,
    /// Each method's name as a JSON string (see `cached`).
    methods: Dense<(String, String)>,
}

impl Chrome<'_> {
    fn event(&mut self, body: String) -> io::Result<()> {
        self.out
            .write_all(if self.first { b"[\n" } else { b",\n" })?;
        self.first = false;
        self.out.write_all(body.as_bytes())
    }

    /// A call's or return's event up to its `"args":`, written without going through fmt
    /// (a firehose writes millions): `{"name":..,"cat":"ruby","ph":PH,"ts":..,"pid":..,"tid":..,"args":`.
    fn span_head(
        &mut self,
        names: &Names,
        thread: u32,
        method: u32,
        ph: &[u8],
        ns: u64,
    ) -> io::Result<()> {
        let tid = self.thread(names, thread)?;
        self.out
            .write_all(if self.first { b"[\n" } else { b",\n" })?;
        self.first = false;
        let m = cached(&mut self.methods, method, &names.method(method), json_str);
        let out = &mut self.out;
        let mut n = itoa::Buffer::new();
        out.write_all(b"{\"name\":")?;
        out.write_all(m.as_bytes())?;
        out.write_all(b",\"cat\":\"ruby\",\"ph\":\"")?;
        out.write_all(ph)?;
        out.write_all(b"\",\"ts\":")?;
        write_micros(out, ns)?;
        out.write_all(b",\"pid\":")?;
        out.write_all(n.format(self.pid).as_bytes())?;
        out.write_all(b",\"tid\":")?;
        out.write_all(n.format(tid).as_bytes())?;
        out.write_all(b",\"args\":")
    }

    fn thread(&mut self, names: &Names, thread: u32) -> io::Result<i64> {
        let (tid, name) = names.thread(thread);
        if self.named.insert(thread) {
            let name = if name.is_empty() {
                format!("thread {tid}")
            } else {
                name.to_string()
            };
            self.event(format!(
                "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{},\"tid\":{tid},\"args\":{{\"name\":{}}}}}",
                self.pid,
                json_str(&name)
            ))?;
        }
        Ok(tid)
    }
}

/// [`micros`] written to `out` without going through fmt (a Chrome event's `ts`).
fn write_micros(out: &mut dyn Write, ns: u64) -> io::Result<()> {
    let mut n = itoa::Buffer::new();
    out.write_all(n.format(ns / 1000).as_bytes())?;
    let frac = ns % 1000;
    let digits = [
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    out.write_all(&digits)
}

fn micros(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

impl Render for Chrome<'_> {
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn step(&mut self, names: &Names, step: Step) -> io::Result<()> {
        match step {
            Step::Enter {
                thread,
                method,
                t,
                values,
                ..
            } => {
                self.span_head(names, thread, method, b"B", t)?;
                if values.is_empty() {
                    self.out.write_all(b"{}}")
                } else {
                    write!(self.out, "{}}}", json_values(&values))
                }
            }
            Step::Leave {
                thread,
                method,
                end,
                duration,
                ..
            } => {
                self.span_head(names, thread, method, b"E", end)?;
                let mut n = itoa::Buffer::new();
                self.out.write_all(b"{\"duration_ns\":")?;
                self.out.write_all(n.format(duration).as_bytes())?;
                self.out.write_all(b"}}")
            }
            Step::Slow {
                thread,
                method,
                start,
                duration,
                ..
            } => {
                let tid = self.thread(names, thread)?;
                self.event(format!(
                    "{{\"name\":{},\"cat\":\"ruby\",\"ph\":\"X\",\"ts\":{},\"dur\":{},\"pid\":{},\"tid\":{tid}}}",
                    json_str(&names.method(method)),
                    micros(start),
                    micros(duration),
                    self.pid,
                ))
            }
            Step::Gc {
                count, t, total, ..
            } => {
                let dur = total.unwrap_or(0);
                self.event(format!(
                    "{{\"name\":\"GC #{count}\",\"cat\":\"gc\",\"ph\":\"X\",\"ts\":{},\"dur\":{},\"pid\":{},\"tid\":0}}",
                    micros(t.saturating_sub(dur)),
                    micros(dur),
                    self.pid,
                ))
            }
            Step::Lost { count } => self.event(format!(
                "{{\"name\":\"{count} events lost\",\"ph\":\"i\",\"s\":\"g\",\"ts\":0,\"pid\":{}}}",
                self.pid
            )),
            Step::Log {
                tid,
                thread,
                t,
                at,
                values,
            } => {
                if self.named_tids.insert(tid) {
                    let name = if thread.is_empty() {
                        format!("thread {tid}")
                    } else {
                        thread
                    };
                    self.event(format!(
                        "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{},\"tid\":{tid},\"args\":{{\"name\":{}}}}}",
                        self.pid,
                        json_str(&name)
                    ))?;
                }
                self.event(format!(
                    "{{\"name\":{},\"cat\":\"log\",\"ph\":\"i\",\"s\":\"t\",\"ts\":{},\"pid\":{},\"tid\":{tid},\"args\":{}}}",
                    json_str(&at),
                    micros(t),
                    self.pid,
                    json_values(&values)
                ))
            }
            Step::Note(_) => Ok(()),
        }
    }

    fn finish(&mut self, _names: &Names) -> io::Result<()> {
        self.out
            .write_all(if self.first { b"[]\n" } else { b"\n]\n" })?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use crate::timeline::Timeline;

    fn trace() -> Vec<u8> {
        let mut v = Vec::new();
        push_to(&mut v, method_len("Greeter#greet"), |b| {
            write_method(b, 1, "Greeter#greet")
        });
        push_to(&mut v, method_len("Greeter#shout"), |b| {
            write_method(b, 2, "Greeter#shout")
        });
        push_to(&mut v, thread_len("main"), |b| {
            write_thread(b, 1, 700, "main")
        });
        let vals = [("self", "#<Greeter>"), ("times", "2")];
        push_to(&mut v, call_values_len(&vals), |b| {
            write_call_values(b, 1, 1, 1_000, &vals)
        });
        push_to(&mut v, CALL_LEN, |b| write_call(b, 1, 2, 2_000));
        push_to(&mut v, RETURN_LEN, |b| {
            write_return(b, 1, 2, 392_000, 390_000)
        });
        push_to(&mut v, RETURN_LEN, |b| {
            write_return(b, 1, 1, 700_000, 635_000)
        });
        push_to(&mut v, CALL_LEN, |b| write_call(b, 1, 2, 800_000));
        push_to(&mut v, RETURN_LEN, |b| {
            write_return(b, 1, 2, 900_000, 8_000)
        });
        push_to(&mut v, LOST_LEN, |b| write_lost(b, 3));
        push_to(&mut v, CALL_LEN, |b| write_call(b, 1, 1, 1_000_000));
        v
    }

    fn render(format: Format, show_threads: bool) -> String {
        let mut buf = Vec::new();
        {
            let mut r = renderer(format, Box::new(&mut buf), show_threads, 42);
            let mut t = Timeline::default();
            t.feed(&trace(), |n, s| r.step(n, s).unwrap()).unwrap();
            r.finish(&t.names).unwrap();
        }
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn text_tree() {
        assert_eq!(
            render(Format::Text, false),
            "Greeter#greet(self=#<Greeter>, times=2)\n  Greeter#shout <390.0µs>\n\
             Greeter#greet <635.0µs>\n\nGreeter#shout <8.0µs>\n\n\
             *** 3 events lost here: this client did not read fast enough\n\
             Greeter#greet <still running>\n"
        );
        assert!(render(Format::Text, true).starts_with("[700 main] Greeter#greet("));
    }

    #[test]
    fn chrome_timestamps_are_written_as_micros_formats_them() {
        for ns in [0, 7, 999, 1_000, 1_001, 123_456_789, u64::MAX] {
            let mut out = Vec::new();
            write_micros(&mut out, ns).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), micros(ns), "{ns}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration(412), "<412ns>");
        assert_eq!(duration(12_345), "<12.3µs>");
        assert_eq!(duration(4_561_000), "<4.56ms>");
        assert_eq!(duration(1_234_000_000), "<1.234s>");
    }

    #[test]
    fn jsonl_and_chrome_are_json() {
        for line in render(Format::Jsonl, false).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["event"].is_string());
        }
        let chrome: serde_json::Value =
            serde_json::from_str(&render(Format::Chrome, false)).unwrap();
        let events = chrome.as_array().unwrap();
        let b = events.iter().filter(|e| e["ph"] == "B").count();
        let e = events.iter().filter(|e| e["ph"] == "E").count();
        assert_eq!((b, e), (4, 3));
        assert_eq!(events[0]["ph"], "M");
    }

    /// A JSON line's thread and method names are escaped once and kept; a thread renamed
    /// meanwhile (its record sent again) is named anew, and names needing escapes stay JSON.
    #[test]
    fn jsonl_names_follow_a_renamed_thread() {
        let mut v = Vec::new();
        push_to(&mut v, method_len("Say#\"hi\""), |b| {
            write_method(b, 1, "Say#\"hi\"")
        });
        push_to(&mut v, thread_len("first"), |b| {
            write_thread(b, 1, 700, "first")
        });
        push_to(&mut v, CALL_LEN, |b| write_call(b, 1, 1, 1_000));
        push_to(&mut v, RETURN_LEN, |b| write_return(b, 1, 1, 2_000, 1_000));
        push_to(&mut v, thread_len("second"), |b| {
            write_thread(b, 1, 700, "second")
        });
        push_to(&mut v, CALL_LEN, |b| write_call(b, 1, 1, 3_000));
        let mut buf = Vec::new();
        {
            let mut r = renderer(Format::Jsonl, Box::new(&mut buf), false, 42);
            let mut t = Timeline::default();
            t.feed(&v, |n, s| r.step(n, s).unwrap()).unwrap();
        }
        let lines: Vec<serde_json::Value> = String::from_utf8(buf)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l["thread_name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["first", "first", "second"]);
        assert!(lines.iter().all(|l| l["method"] == "Say#\"hi\""));
    }

    /// What the renderers write, `rbscope ui` reads back (crate::file): the same spans from
    /// either format.
    #[test]
    fn written_traces_read_back() {
        for format in [Format::Jsonl, Format::Chrome] {
            let t = crate::file::read(render(format, false).as_bytes()).unwrap();
            assert_eq!(t.threads.len(), 1, "{format:?}");
            let th = &t.threads[0];
            assert_eq!((th.tid, th.name.as_str()), (700, "main"));
            let spans: Vec<_> = th
                .spans
                .iter()
                .map(|s| {
                    (
                        t.names[s.name as usize].as_str(),
                        s.start_ns,
                        s.wall_ns,
                        s.depth,
                        s.open,
                    )
                })
                .collect();
            assert_eq!(
                spans,
                [
                    ("Greeter#greet", 1_000, 699_000, 0, false),
                    ("Greeter#shout", 2_000, 390_000, 1, false),
                    ("Greeter#shout", 800_000, 100_000, 0, false),
                    ("Greeter#greet", 1_000_000, 0, 0, true),
                ],
                "{format:?}"
            );
            assert_eq!(
                th.spans[0].args.as_deref(),
                Some("self=#<Greeter>, times=2")
            );
            assert_eq!(th.spans[0].duration_ns, Some(635_000));
            assert_eq!(t.lost, 3);
            assert_eq!((t.start_ns, t.end_ns), (1_000, 1_000_000));
            assert!(!t.truncated);
            // Cut off in the middle of its last event: read up to it.
            let full = render(format, false);
            let cut = &full[..full.len() - 12];
            let t = crate::file::read(cut.as_bytes()).unwrap();
            assert!(t.truncated, "{format:?}");
            assert!(t.threads[0].spans.len() >= 3);
        }
        assert_eq!(
            crate::file::read(render(Format::Text, false).as_bytes()),
            Err(crate::file::TraceFileError::Text)
        );
    }

    fn logged(format: Format, show_threads: bool) -> String {
        let mut buf = Vec::new();
        {
            let mut r = renderer(format, Box::new(&mut buf), show_threads, 42);
            let names = Names::default();
            for (n, tid, thread) in [(5, 700, "main"), (6, 701, "")] {
                let step = Step::Log {
                    tid,
                    thread: thread.into(),
                    t: 1_500_000 + n,
                    at: "app/models/order.rb:42".into(),
                    values: vec![
                        ("order.id".into(), n.to_string()),
                        ("@user.email".into(), "\"a@b.c\"".into()),
                    ],
                };
                r.step(&names, step).unwrap();
            }
            r.finish(&names).unwrap();
        }
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn a_logpoint_hit_is_one_line_or_event() {
        assert_eq!(
            logged(Format::Text, false),
            "app/models/order.rb:42  order.id=5  @user.email=\"a@b.c\"\n\
             app/models/order.rb:42  order.id=6  @user.email=\"a@b.c\"\n"
        );
        let threads = logged(Format::Text, true);
        assert!(threads.starts_with("[700 main] app/models/order.rb:42  order.id=5"));
        assert!(threads.contains("\n[701] app/models/order.rb:42  order.id=6"));
        let lines: Vec<serde_json::Value> = logged(Format::Jsonl, false)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "log");
        assert_eq!(lines[0]["thread"], 700);
        assert_eq!(lines[0]["thread_name"], "main");
        assert_eq!(lines[0]["at"], "app/models/order.rb:42");
        assert_eq!(lines[0]["t_ns"], 1_500_005);
        assert_eq!(lines[1]["values"]["order.id"], "6");
        assert_eq!(lines[1]["values"]["@user.email"], "\"a@b.c\"");
        let chrome: serde_json::Value =
            serde_json::from_str(&logged(Format::Chrome, false)).unwrap();
        let events = chrome.as_array().unwrap();
        let hits: Vec<_> = events.iter().filter(|e| e["ph"] == "i").collect();
        assert_eq!(hits.len(), 2);
        assert_eq!(
            (hits[0]["tid"].clone(), hits[0]["ts"].clone()),
            (700.into(), 1500.005.into())
        );
        assert_eq!(hits[1]["args"]["order.id"], "6");
        assert_eq!(events.iter().filter(|e| e["ph"] == "M").count(), 2);
        // `rbscope ui` reads a written log as a trace with no spans, not as an error.
        for format in [Format::Jsonl, Format::Chrome] {
            let t = crate::file::read(logged(format, false).as_bytes()).unwrap();
            assert!(t.threads.iter().all(|th| th.spans.is_empty()), "{format:?}");
        }
    }
}
