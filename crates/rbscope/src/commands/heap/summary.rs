//! The census of one dump (`rbscope heap summary`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rbscope_heap::summary::Tally;

use super::HeapRead;
use super::{bytes, num, open, print_json, warn_unreadable, Bar};
use crate::views::heap::summary::summary_json;

/// Objects and bytes by type, by class, by allocation site (when allocation tracing was on)
/// and by GC generation; the roots; the dump's format.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
    dump: PathBuf,
    /// Rows per table.
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    read: HeapRead,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    summary(&a.dump, a.limit, &a.read)
}

fn summary(path: &Path, limit: usize, read: &HeapRead) -> anyhow::Result<i32> {
    let bar = Bar::start();
    let dump = open(path)?;
    let started = Instant::now();
    let s = rbscope_heap::summary::summarize(&dump, bar.opts(read))?;
    let elapsed = started.elapsed();
    drop(bar);
    warn_unreadable(path, &s.stats);
    let traced: u64 = s.by_site.iter().map(|r| r.tally.count).sum();
    if read.json {
        return print_json(&summary_json(
            &path.display().to_string(),
            dump.file_len(),
            &s,
            limit,
            elapsed.as_secs_f64(),
        ));
    }
    let mut o = String::new();
    o += &format!(
        "{}: {} objects, {} (memsize), read in {:.2} s\n",
        path.display(),
        num(s.total.count),
        bytes(s.total.bytes),
        elapsed.as_secs_f64()
    );
    o += &format!(
        "  {} lines, {} invalid JSON read anyway, {} unreadable; {}\n",
        num(s.stats.lines),
        num(s.stats.invalid_json),
        num(s.stats.unreadable),
        format_line(&s)
    );
    o += &format!(
        "  roots: {}\n",
        s.roots
            .iter()
            .map(|(n, c)| format!("{n} {}", num(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some((a, b)) = s.tracer {
        o += &format!(
            "  note: {b} bytes ({}) of this is the allocation tracer's own table ({a:#x}), not the app's memory\n",
            bytes(b)
        );
    }
    o += "\nby type\n";
    o += &table_header("type");
    for r in s.by_type.iter().take(limit) {
        o += &table_row(r.tally, &r.name);
    }
    o += &format!(
        "\nby class ({} of {})\n",
        s.by_class.len().min(limit),
        num(s.by_class.len() as u64)
    );
    o += &table_header("class");
    for r in s.by_class.iter().take(limit) {
        o += &table_row(r.tally, &r.name);
    }
    if s.by_site.is_empty() {
        o += "\nby allocation site: none recorded (start ObjectSpace.trace_object_allocations before allocating to get file:line)\n";
    } else {
        o += &format!(
            "\nby allocation site ({} of {}; {} objects have one)\n",
            s.by_site.len().min(limit),
            num(s.by_site.len() as u64),
            num(traced)
        );
        o += &table_header("site");
        for r in s.by_site.iter().take(limit) {
            let mut site = r.file.clone();
            if let Some(l) = r.line {
                site += &format!(":{l}");
            }
            if let Some(m) = &r.method {
                site += &format!(" in {m}");
            }
            o += &table_row(r.tally, &site);
        }
    }
    if !s.by_generation.is_empty() {
        o += "\nby generation (GC count when allocated)\n";
        o += &table_header("generation");
        for (label, t) in generation_buckets(&s.by_generation, limit) {
            o += &table_row(t, &label);
        }
        if s.no_generation.count > 0 {
            o += &table_row(s.no_generation, "(none: allocated before tracing started)");
        }
    }
    print!("{o}");
    Ok(0)
}

/// What the records say about the Ruby that wrote them.
fn format_line(s: &rbscope_heap::summary::Summary) -> String {
    if s.slot_sizes.is_empty() && s.shapes == 0 {
        "no shapes or slot sizes (written by Ruby 3.1 or older)".into()
    } else {
        format!(
            "{} shape records, slot sizes {} (Ruby 3.2 or newer)",
            num(s.shapes),
            s.slot_sizes
                .iter()
                .map(|(sz, c)| format!("{sz}:{}", num(*c)))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

/// At most `limit` rows: each generation when few, else equal ranges of generations.
fn generation_buckets(gens: &[(u32, Tally)], limit: usize) -> Vec<(String, Tally)> {
    if gens.len() <= limit.max(1) {
        return gens.iter().map(|(g, t)| (g.to_string(), *t)).collect();
    }
    let (lo, hi) = (gens[0].0, gens[gens.len() - 1].0);
    let span = ((hi - lo) as usize / limit.max(1)) as u32 + 1;
    let mut out: Vec<(String, Tally)> = Vec::new();
    let mut current: Option<(u32, Tally)> = None;
    for (g, t) in gens {
        let start = lo + (g - lo) / span * span;
        match &mut current {
            Some((s, acc)) if *s == start => {
                acc.count += t.count;
                acc.bytes += t.bytes;
            }
            _ => {
                if let Some((s, acc)) = current.take() {
                    out.push((format!("{s}-{}", s + span - 1), acc));
                }
                current = Some((start, *t));
            }
        }
    }
    if let Some((s, acc)) = current {
        out.push((format!("{s}-{}", (s + span - 1).min(hi)), acc));
    }
    out
}

fn table_header(what: &str) -> String {
    format!("  {:>12}  {:>10}  {what}\n", "objects", "bytes")
}

fn table_row(t: Tally, name: &str) -> String {
    format!("  {:>12}  {:>10}  {name}\n", num(t.count), bytes(t.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_buckets() {
        assert_eq!(num(0), "0");
        assert_eq!(num(1234567), "1,234,567");
        assert_eq!(num(123), "123");
        let gens: Vec<(u32, Tally)> = (0..100)
            .map(|g| {
                (
                    g,
                    Tally {
                        count: 1,
                        bytes: 40,
                    },
                )
            })
            .collect();
        let b = generation_buckets(&gens, 10);
        assert_eq!(b.len(), 10);
        assert_eq!(b[0].0, "0-9");
        assert_eq!(b.iter().map(|(_, t)| t.count).sum::<u64>(), 100);
    }
}
