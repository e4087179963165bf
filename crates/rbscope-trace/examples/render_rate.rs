//! How many events a second the CLI's side of a trace can decode and print, without Ruby or
//! a socket: a firehose-shaped stream (a method calling three leaf methods, again and again, on
//! one thread) is built in the agent's wire format, cut into 256 KiB messages as the agent sends
//! them, then fed through `Timeline` into each renderer, writing to /dev/null (or to FILE).
//!
//!   cargo run --release -p rbscope-trace --example render_rate [EVENTS] [FILE] [FORMAT]
//!
//! The goal for the whole pipeline is 20 M events/s; this is the ceiling the CLI's
//! decoding and rendering put on it.

use rbscope_trace::events::{self, CALL_LEN, RETURN_LEN};
use rbscope_trace::render::{self, Format};
use rbscope_trace::timeline::Timeline;
use std::io::BufWriter;
use std::time::Instant;

const MESSAGE: usize = 256 * 1024;

fn stream(events: usize) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut buf = Vec::with_capacity(MESSAGE + 4096);
    events::push_to(&mut buf, events::thread_len("main"), |b| {
        events::write_thread(b, 1, 4242, "main")
    });
    for (id, label) in [
        "Shop::Order#total",
        "Shop::Order#price",
        "String#size",
        "Integer#*",
    ]
    .iter()
    .enumerate()
    {
        events::push_to(&mut buf, events::method_len(label), |b| {
            events::write_method(b, id as u32 + 1, label)
        });
    }
    let mut t = 1_000u64;
    let mut written = 0;
    while written < events {
        events::push_to(&mut buf, CALL_LEN, |b| events::write_call(b, 1, 1, t));
        for leaf in 2..=4 {
            events::push_to(&mut buf, CALL_LEN, |b| {
                events::write_call(b, 1, leaf, t + 10)
            });
            events::push_to(&mut buf, RETURN_LEN, |b| {
                events::write_return(b, 1, leaf, t + 40, 30)
            });
            t += 50;
        }
        events::push_to(&mut buf, RETURN_LEN, |b| {
            events::write_return(b, 1, 1, t, 160)
        });
        t += 20;
        written += 8;
        if buf.len() >= MESSAGE {
            messages.push(std::mem::take(&mut buf));
        }
    }
    messages.push(buf);
    messages
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let path = args.get(2).cloned().unwrap_or_else(|| "/dev/null".into());
    let messages = stream(events);
    let formats = match args.get(3) {
        Some(f) => vec![f
            .parse::<Format>()
            .expect("a format: text, jsonl or chrome")],
        None => vec![Format::Text, Format::Jsonl, Format::Chrome],
    };
    for format in formats {
        let file = std::fs::File::create(&path).expect("the output file");
        let out = Box::new(BufWriter::with_capacity(1 << 20, file));
        let mut renderer = render::renderer(format, out, false, 4242);
        let mut timeline = Timeline::default();
        let started = Instant::now();
        for m in &messages {
            timeline
                .feed(m, |names, step| {
                    renderer.step(names, step).expect("writing");
                })
                .expect("decoding");
        }
        renderer.finish(&timeline.names).expect("writing");
        let took = started.elapsed().as_secs_f64();
        println!(
            "{format:?}: {} events in {took:.3} s: {:.1} M events/s",
            timeline.events,
            timeline.events as f64 / took / 1e6
        );
    }
}
