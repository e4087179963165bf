//! `rbscope heap ...`: heap dump analysis, the CLI side of `rbscope-heap`.
//!
//! Each subcommand opens the dump(s), runs one analysis of the pure crate with a progress bar on
//! a terminal, and prints text or JSON. The analyses live in `rbscope-heap`; this module only
//! chooses what to show and how.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rbscope_heap::detail::{self, Detail};
use rbscope_heap::graph::{HeapGraph, NodeId};
use rbscope_heap::input::{Dump, Progress, ScanOptions, ScanStats};
use rbscope_heap::paths::{self, Reach, Step};
use rbscope_heap::summary::Tally;
use rbscope_heap::top::Retention;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{json, Value};

use crate::cli::{HeapCommand, HeapRead};

pub fn run(command: &HeapCommand) -> anyhow::Result<i32> {
    match command {
        HeapCommand::Summary { dump, limit, read } => summary(dump, *limit, read),
        HeapCommand::Diff { dumps, limit, read } => diff(dumps, *limit, read),
        HeapCommand::Path {
            dump,
            address,
            limit,
            read,
        } => path(dump, address, *limit, read),
        HeapCommand::Top {
            dump,
            from,
            depth,
            limit,
            svg,
            read,
        } => top(dump, from.as_deref(), *depth, *limit, svg.as_deref(), read),
        HeapCommand::Strings { dump, limit, read } => strings(dump, *limit, read),
        HeapCommand::Import {
            dump,
            sqlite,
            parquet,
            read,
        } => import(dump, sqlite.as_deref(), parquet.as_deref(), read),
        HeapCommand::Dump {
            pid,
            output,
            gzip,
            gc,
            in_process,
            json,
        } => super::heap_live::dump(
            *pid,
            super::heap_live::DumpOptions {
                output: output.clone(),
                gzip: *gzip,
                gc: *gc,
                in_process: *in_process,
            },
            *json,
        ),
        HeapCommand::Count {
            pid,
            names,
            limit,
            json,
        } => super::heap_live::count(*pid, names.clone(), *limit, *json),
        HeapCommand::Track { pid, action } => super::heap_live::track(*pid, action),
        HeapCommand::Watch {
            pid,
            every,
            count,
            diff,
            dir,
            gc,
            limit,
            json,
        } => super::heap_live::watch(
            *pid,
            super::heap_live::WatchOptions {
                every: Duration::from_millis((*every).max(0) as u64),
                count: *count,
                diff: *diff,
                dir: dir.clone(),
                gc: *gc,
                limit: *limit,
                json: *json,
            },
        ),
    }
}

/// A progress bar on standard error, drawn only on a terminal and only once an operation has
/// taken a second: quick runs and pipes print nothing extra.
struct Bar {
    progress: &'static Progress,
    phase: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    fn start() -> Bar {
        let progress: &'static Progress = Box::leak(Box::default());
        let phase = Arc::new(Mutex::new(String::from("reading")));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let (phase, stop) = (phase.clone(), stop.clone());
            std::thread::spawn(move || draw(progress, &phase, &stop))
        });
        Bar {
            progress,
            phase,
            stop,
            thread,
        }
    }

    fn phase(&self, text: impl Into<String>) {
        if let Ok(mut p) = self.phase.lock() {
            *p = text.into();
        }
    }

    fn opts(&self, read: &HeapRead) -> ScanOptions<'static> {
        ScanOptions {
            jobs: read
                .jobs
                .unwrap_or_else(rbscope_heap::input::default_jobs)
                .max(1),
            progress: Some(self.progress),
            allow_truncated: read.allow_truncated,
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw(progress: &Progress, phase: &Mutex<String>, stop: &AtomicBool) {
    let started = Instant::now();
    let mut drawn = false;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let done = progress.done.load(Ordering::Relaxed);
        let total = progress.total.load(Ordering::Relaxed).max(1);
        let pct = (done as f64 / total as f64 * 100.0).min(100.0);
        let width = 30usize;
        let filled = (pct / 100.0 * width as f64) as usize;
        let text = phase.lock().map(|p| p.clone()).unwrap_or_default();
        eprint!(
            "\r\x1b[K{text} [{}{}] {pct:3.0}% of {}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            bytes(total)
        );
        drawn = true;
    }
    if drawn {
        eprint!("\r\x1b[K");
    }
}

fn open(path: &Path) -> anyhow::Result<Dump> {
    Ok(Dump::open(path)?)
}

/// Warnings about lines that could not be read, on standard error.
fn warn_unreadable(path: &Path, stats: &ScanStats) {
    if let Some((at, e)) = stats.first_unreadable {
        eprintln!(
            "rbscope: warning: {}: {} line(s) could not be read and were left out (the first, at byte {at}, {e})",
            path.display(),
            stats.unreadable
        );
    }
    if let Some(at) = stats.truncated_at {
        eprintln!(
            "rbscope: warning: {}: the dump is truncated at byte {at}; the records before it were analysed",
            path.display()
        );
    }
}

fn scan_json(stats: &ScanStats) -> Value {
    json!({
        "bytes": stats.bytes,
        "lines": stats.lines,
        "objects": stats.objects,
        "roots": stats.roots,
        "shapes": stats.shapes,
        "invalid_json_lines": stats.invalid_json,
        "unreadable_lines": stats.unreadable,
        "truncated_at": stats.truncated_at,
    })
}

fn tally_json(t: Tally) -> Value {
    json!({"count": t.count, "bytes": t.bytes})
}

fn print_json(v: &Value) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(0)
}

fn parse_address(s: &str) -> anyhow::Result<u64> {
    rbscope_heap::parse::parse_address(s.trim().as_bytes()).ok_or_else(|| {
        anyhow!("{s:?} is not an address; give it as the dump writes it, like 0x7f1c2b3d4e50")
    })
}

// ---------------------------------------------------------------- summary

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
        let rows = |rows: &[rbscope_heap::summary::Row]| -> Value {
            rows.iter()
                .take(limit)
                .map(|r| json!({"name": r.name, "count": r.tally.count, "bytes": r.tally.bytes}))
                .collect()
        };
        return print_json(&json!({
            "dump": path.display().to_string(),
            "file_bytes": dump.file_len(),
            "total": tally_json(s.total),
            "by_type": rows(&s.by_type),
            "by_class": rows(&s.by_class),
            "classes": s.by_class.len(),
            "by_site": s.by_site.iter().take(limit).map(|r| json!({
                "file": r.file, "line": r.line, "method": r.method,
                "count": r.tally.count, "bytes": r.tally.bytes,
            })).collect::<Vec<_>>(),
            "sites": s.by_site.len(),
            "allocation_traced_objects": traced,
            "by_generation": s.by_generation.iter().map(|(g, t)| json!({
                "generation": g, "count": t.count, "bytes": t.bytes,
            })).collect::<Vec<_>>(),
            "no_generation": tally_json(s.no_generation),
            "roots": s.roots.iter().map(|(n, c)| json!({"root": n, "references": c})).collect::<Vec<_>>(),
            "shape_records": s.shapes,
            "slot_sizes": s.slot_sizes.iter().map(|(sz, c)| json!({"slot_size": sz, "count": c})).collect::<Vec<_>>(),
            "allocation_tracer": s.tracer.map(|(a, b)| json!({"address": format!("{a:#x}"), "bytes": b})),
            "scan": scan_json(&s.stats),
            "seconds": elapsed.as_secs_f64(),
        }));
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

// ---------------------------------------------------------------- diff

/// `diff` with default reading options (for `heap watch --diff`).
pub fn diff_paths(paths: &[PathBuf], limit: usize, json: bool) -> anyhow::Result<i32> {
    let read = HeapRead {
        jobs: None,
        json,
        allow_truncated: false,
    };
    diff(paths, limit, &read)
}

fn diff(paths: &[PathBuf], limit: usize, read: &HeapRead) -> anyhow::Result<i32> {
    let bar = Bar::start();
    let dumps = paths
        .iter()
        .map(|p| open(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&Dump> = dumps.iter().collect();
    let started = Instant::now();
    let d = rbscope_heap::diff::diff(&refs, bar.opts(read))?;
    let elapsed = started.elapsed();
    drop(bar);
    for (p, info) in paths.iter().zip(&d.dumps) {
        warn_unreadable(p, &info.stats);
    }
    let three = d.dumps.len() == 3;
    let leaking: Vec<_> = d.groups.iter().filter(|g| g.leaked().count > 0).collect();
    if read.json {
        return print_json(&json!({
            "dumps": d.dumps.iter().map(|i| json!({
                "path": i.path, "total": tally_json(i.total), "allocation_traced_objects": i.traced,
                "scan": scan_json(&i.stats),
            })).collect::<Vec<_>>(),
            "new_in_second": tally_json(d.new_total),
            "retained_in_third": d.retained_total.map(tally_json),
            "groups": leaking.iter().take(limit).map(|g| json!({
                "class": g.name,
                "site": g.site,
                "counts": g.counts.iter().map(|t| tally_json(*t)).collect::<Vec<_>>(),
                "new": tally_json(g.new),
                "retained": g.retained.map(tally_json),
                "samples": g.samples.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "groups_with_new_objects": leaking.len(),
            "seconds": elapsed.as_secs_f64(),
        }));
    }
    let mut o = String::new();
    for (k, i) in d.dumps.iter().enumerate() {
        o += &format!(
            "dump {}: {}  {} objects, {}{}\n",
            k + 1,
            i.path,
            num(i.total.count),
            bytes(i.total.bytes),
            if i.traced == 0 {
                "  (no allocation tracing)"
            } else {
                ""
            }
        );
    }
    o += &format!(
        "new in dump 2 (not in dump 1): {} objects, {}\n",
        num(d.new_total.count),
        bytes(d.new_total.bytes)
    );
    if let Some(r) = d.retained_total {
        o += &format!(
            "of those, still in dump 3 (leak candidates): {} objects, {}\n",
            num(r.count),
            bytes(r.bytes)
        );
    }
    if d.dumps.iter().any(|i| i.traced == 0) {
        o += "note: without allocation tracing objects are matched by address, type and class only: objects moved by GC.compact count as new\n";
    }
    o += &format!("compared in {:.2} s\n\n", elapsed.as_secs_f64());
    if leaking.is_empty() {
        o += if three {
            "nothing new in dump 2 is still in dump 3\n"
        } else {
            "nothing in dump 2 is new\n"
        };
        print!("{o}");
        return Ok(0);
    }
    let heads: Vec<String> = (1..=d.dumps.len()).map(|k| format!("in {k}")).collect();
    let kept = if three { "new+kept" } else { "new" };
    o += &format!(
        "  {}  {:>10}  {:>10}  class, allocation site\n",
        heads
            .iter()
            .map(|h| format!("{h:>10}"))
            .collect::<Vec<_>>()
            .join(""),
        kept,
        "bytes"
    );
    for g in leaking.iter().take(limit) {
        let counts: String = g
            .counts
            .iter()
            .map(|t| format!("{:>10}", num(t.count)))
            .collect();
        let l = g.leaked();
        o += &format!(
            "  {counts}  {:>10}  {:>10}  {}{}\n",
            num(l.count),
            bytes(l.bytes),
            g.name,
            g.site
                .as_deref()
                .map(|s| format!("  {s}"))
                .unwrap_or_default()
        );
        if !g.samples.is_empty() {
            o += &format!(
                "  {:width$}  e.g. (in dump {}) {}\n",
                "",
                d.dumps.len(),
                g.samples
                    .iter()
                    .map(|a| format!("{a:#x}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                width = 10 * d.dumps.len() + 24
            );
        }
    }
    if leaking.len() > limit {
        o += &format!("  ... {} more groups (-n)\n", leaking.len() - limit);
    }
    print!("{o}");
    Ok(0)
}

// ---------------------------------------------------------------- path

fn path(dump_path: &Path, address: &str, limit: usize, read: &HeapRead) -> anyhow::Result<i32> {
    let target_addr = parse_address(address)?;
    let bar = Bar::start();
    let dump = open(dump_path)?;
    let opts = bar.opts(read);
    let g = HeapGraph::build(&dump, opts)?;
    warn_unreadable(dump_path, &g.stats);
    let Some(target) = g.node(target_addr) else {
        bail!(
            "there is no object at {target_addr:#x} in {} (an address is only valid in the dump it came from; `rbscope heap diff` prints sample addresses of the last dump)",
            dump_path.display()
        );
    };
    bar.phase("searching");
    let reach = Reach::compute(&g);
    let found = paths::retention_paths(&g, &reach, target, limit.max(1));
    let referrers = paths::referrers(&g, target);
    let root_refs = paths::root_referrers(&g, target);
    let mut wanted: FxHashSet<u64> = FxHashSet::default();
    wanted.insert(target_addr);
    for p in &found {
        for s in p {
            if let Step::Node(n) = s {
                wanted.insert(g.address[*n as usize]);
            }
        }
    }
    for r in referrers.iter().take(20) {
        wanted.insert(g.address[*r as usize]);
    }
    bar.phase("describing");
    let details = detail::describe(&dump, opts, &wanted)?;
    drop(bar);
    let show = |n: NodeId| node_line(&g, &details, n);
    if read.json {
        return print_json(&json!({
            "object": node_json(&g, &details, target),
            "reachable": reach.is_reachable(target),
            "referenced_by_roots": root_refs,
            "referrers": referrers.iter().take(100).map(|r| node_json(&g, &details, *r)).collect::<Vec<_>>(),
            "referrer_count": referrers.len(),
            "paths": found.iter().map(|p| p.iter().map(|s| match s {
                Step::Root(name) => json!({"root": name}),
                Step::Node(n) => node_json(&g, &details, *n),
            }).collect::<Vec<_>>()).collect::<Vec<_>>(),
        }));
    }
    let mut o = format!("{}\n", show(target));
    if found.is_empty() {
        o += "is not reachable from any GC root: it is garbage the GC had not collected yet when the dump was written";
        if !referrers.is_empty() {
            o += &format!(
                " (referenced only by {} other unreachable object(s))",
                referrers.len()
            );
        }
        o += "\n";
        print!("{o}");
        return Ok(0);
    }
    o += &format!(
        "is referenced by {} object(s){}; {} retention path(s), shortest first:\n",
        referrers.len(),
        if root_refs.is_empty() {
            String::new()
        } else {
            format!(" and directly by the roots: {}", root_refs.join(", "))
        },
        found.len()
    );
    for (k, p) in found.iter().enumerate() {
        o += &format!("\npath {} ({} references):\n", k + 1, p.len() - 1);
        for (i, s) in p.iter().enumerate() {
            let arrow = if i == 0 { "  " } else { "  -> " };
            match s {
                Step::Root(name) => o += &format!("{arrow}root {name}\n"),
                Step::Node(n) => o += &format!("{arrow}{}\n", show(*n)),
            }
        }
    }
    print!("{o}");
    Ok(0)
}

fn node_line(g: &HeapGraph, details: &FxHashMap<u64, Detail>, n: NodeId) -> String {
    let addr = g.address[n as usize];
    match details.get(&addr) {
        Some(d) => detail::one_line(d, g.group_name(n)),
        None => format!("{addr:#x} {}", g.group_name(n)),
    }
}

fn node_json(g: &HeapGraph, details: &FxHashMap<u64, Detail>, n: NodeId) -> Value {
    let addr = g.address[n as usize];
    let d = details.get(&addr);
    json!({
        "address": format!("{addr:#x}"),
        "type": g.ty[n as usize].name(),
        "class": g.group_name(n),
        "info": d.map(|d| d.info.clone()),
        "file": d.and_then(|d| d.file.clone()),
        "line": d.and_then(|d| d.line),
        "generation": d.and_then(|d| d.generation),
        "memsize": d.map(|d| d.memsize),
    })
}

// ---------------------------------------------------------------- top

fn top(
    dump_path: &Path,
    from: Option<&str>,
    depth: usize,
    limit: usize,
    svg: Option<&Path>,
    read: &HeapRead,
) -> anyhow::Result<i32> {
    let from_addr = from.map(parse_address).transpose()?;
    let bar = Bar::start();
    let dump = open(dump_path)?;
    let opts = bar.opts(read);
    let started = Instant::now();
    let g = HeapGraph::build(&dump, opts)?;
    warn_unreadable(dump_path, &g.stats);
    let start = match from_addr {
        Some(a) => Some(g.node(a).ok_or_else(|| {
            anyhow!(
                "there is no object at {a:#x} in {} (an address is only valid in the dump it came from)",
                dump_path.display()
            )
        })?),
        None => None,
    };
    bar.phase("dominator tree");
    let ret = Retention::compute(&g);
    let computed = started.elapsed();
    if let Some(file) = svg {
        bar.phase("flame graph");
        write_svg(&g, &ret, file, dump_path)?;
    }
    // The tree to show, breadth-limited.
    let mut rows: Vec<(usize, NodeId)> = Vec::new();
    let mut stack: Vec<(usize, NodeId)> = ret
        .children(start)
        .iter()
        .take(limit)
        .rev()
        .map(|n| (0usize, *n))
        .collect();
    while let Some((d, n)) = stack.pop() {
        rows.push((d, n));
        if d + 1 < depth {
            stack.extend(
                ret.children(Some(n))
                    .iter()
                    .take(limit)
                    .rev()
                    .map(|c| (d + 1, *c)),
            );
        }
    }
    let chain = start.map(|s| ret.dominators_of(s)).unwrap_or_default();
    let by_class = ret.by_class(&g);
    let mut wanted: FxHashSet<u64> = rows.iter().map(|(_, n)| g.address[*n as usize]).collect();
    wanted.extend(chain.iter().take(20).map(|n| g.address[*n as usize]));
    if let Some(s) = start {
        wanted.insert(g.address[s as usize]);
    }
    bar.phase("describing");
    let details = detail::describe(&dump, opts, &wanted)?;
    drop(bar);
    let reachable = ret.reachable();
    let unreachable = ret.unreachable(&g);
    if read.json {
        return print_json(&json!({
            "dump": dump_path.display().to_string(),
            "reachable": tally_json(reachable),
            "unreachable": tally_json(unreachable),
            "allocation_tracer": g.tracer.map(|(n, b)| json!({"address": format!("{:#x}", g.address[n as usize]), "bytes": b})),
            "dangling_references": g.dangling_refs,
            "from": start.map(|s| json!({
                "object": node_json(&g, &details, s),
                "retained": ret.retained(s),
                "retained_objects": ret.retained_count[s as usize],
                "dominators": chain.iter().map(|n| node_json(&g, &details, *n)).collect::<Vec<_>>(),
            })),
            "tree": rows.iter().map(|(d, n)| {
                let mut v = node_json(&g, &details, *n);
                v["depth"] = json!(d);
                v["retained"] = json!(ret.retained(*n));
                v["retained_objects"] = json!(ret.retained_count[*n as usize]);
                v
            }).collect::<Vec<_>>(),
            "by_class": by_class.iter().take(limit).map(|c| json!({
                "class": c.name, "instances": c.instances, "retained": c.retained,
            })).collect::<Vec<_>>(),
            "seconds": computed.as_secs_f64(),
        }));
    }
    let mut o = format!(
        "{}: {} objects reachable from the roots ({}), {} unreachable ({}); dominator tree in {:.2} s\n",
        dump_path.display(),
        num(reachable.count),
        bytes(reachable.bytes),
        num(unreachable.count),
        bytes(unreachable.bytes),
        computed.as_secs_f64()
    );
    if let Some((n, b)) = g.tracer {
        o += &format!(
            "note: the allocation tracer's own table ({:#x}, {}) is left out of retained sizes: it is the tracer's memory, not the app's\n",
            g.address[n as usize],
            bytes(b)
        );
    }
    if let Some(s) = start {
        o += &format!(
            "\n{}\nretains {} in {} objects",
            node_line(&g, &details, s),
            bytes(ret.retained(s)),
            num(ret.retained_count[s as usize] as u64)
        );
        if chain.is_empty() {
            o += if ret.dom.idom[s as usize] == rbscope_heap::dominators::UNREACHABLE {
                "; it is not reachable from any root\n"
            } else {
                "; no single object retains it (it hangs from the roots, or from more than one place)\n"
            };
        } else {
            o += "; it is retained by (nearest first):\n";
            for n in chain.iter().take(20) {
                o += &format!(
                    "  <- {:>10}  {}\n",
                    bytes(ret.retained(*n)),
                    node_line(&g, &details, *n)
                );
            }
            if chain.len() > 20 {
                o += &format!("  <- ... {} more\n", chain.len() - 20);
            }
        }
    }
    o += &format!(
        "\n{} (retained bytes, objects retained, object):\n",
        if start.is_some() {
            "what it retains"
        } else {
            "biggest retainers, the dominator tree from the roots"
        }
    );
    if rows.is_empty() {
        o += "  (nothing: it retains only itself)\n";
    }
    for (d, n) in &rows {
        o += &format!(
            "  {}{:>10} {:>10}  {}\n",
            "  ".repeat(*d),
            bytes(ret.retained(*n)),
            num(ret.retained_count[*n as usize] as u64),
            node_line(&g, &details, *n)
        );
    }
    o += "\nretained by class (outermost instances only, so nothing counts twice):\n";
    o += &format!("  {:>10}  {:>10}  class\n", "retained", "instances");
    for c in by_class.iter().take(limit) {
        o += &format!(
            "  {:>10}  {:>10}  {}\n",
            bytes(c.retained),
            num(c.instances),
            c.name
        );
    }
    o += "\ndrill down: rbscope heap top DUMP --from ADDRESS\n";
    print!("{o}");
    Ok(0)
}

fn write_svg(g: &HeapGraph, ret: &Retention, file: &Path, dump_path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let stacks = ret.class_stacks(g, 64);
    let lines: Vec<String> = stacks.iter().map(|(s, w)| format!("{s} {w}")).collect();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!(
        "rbscope heap top: retained size by class path, {}",
        dump_path.display()
    );
    opts.count_name = "bytes".into();
    opts.direction = inferno::flamegraph::Direction::Inverted;
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut w)
        .map_err(|e| anyhow!("cannot draw the flame graph: {e}"))?;
    w.flush()
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}

// ---------------------------------------------------------------- strings

fn strings(path: &Path, limit: usize, read: &HeapRead) -> anyhow::Result<i32> {
    let bar = Bar::start();
    let dump = open(path)?;
    let r = rbscope_heap::strings::duplicated_strings(&dump, bar.opts(read))?;
    drop(bar);
    warn_unreadable(path, &r.stats);
    if read.json {
        return print_json(&json!({
            "strings": tally_json(r.all),
            "without_value": tally_json(r.without_value),
            "wasted_bytes": r.wasted,
            "duplicated_texts": r.duplicated.len(),
            "duplicated": r.duplicated.iter().take(limit).map(|d| json!({
                "text": d.preview, "bytesize": d.bytesize, "copies": d.copies.count,
                "bytes": d.copies.bytes, "wasted": d.wasted, "interned": d.interned,
                "samples": d.samples.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    let mut o = format!(
        "{}: {} String objects ({}); {} texts held more than once waste {}\n",
        path.display(),
        num(r.all.count),
        bytes(r.all.bytes),
        num(r.duplicated.len() as u64),
        bytes(r.wasted)
    );
    if r.without_value.count > 0 {
        o += &format!(
            "  {} strings ({}) are not compared: the dump shows no text for non-ASCII or shared strings\n",
            num(r.without_value.count),
            bytes(r.without_value.bytes)
        );
    }
    if r.duplicated.is_empty() {
        print!("{o}");
        return Ok(0);
    }
    o += &format!(
        "\n  {:>10}  {:>10}  {:>9}  text (interned copies, sample address)\n",
        "copies", "wasted", "bytesize"
    );
    for d in r.duplicated.iter().take(limit) {
        o += &format!(
            "  {:>10}  {:>10}  {:>9}  {}{}  {}\n",
            num(d.copies.count),
            bytes(d.wasted),
            num(d.bytesize),
            d.preview,
            if d.interned > 0 {
                format!(" ({} interned)", num(d.interned))
            } else {
                String::new()
            },
            d.samples
                .first()
                .map(|a| format!("{a:#x}"))
                .unwrap_or_default()
        );
    }
    print!("{o}");
    Ok(0)
}

// ---------------------------------------------------------------- import

fn import(
    dump_path: &Path,
    sqlite: Option<&Path>,
    parquet: Option<&Path>,
    read: &HeapRead,
) -> anyhow::Result<i32> {
    let bar = Bar::start();
    let dump = open(dump_path)?;
    bar.phase("importing");
    let (stats, dest) = match (sqlite, parquet) {
        (Some(db), _) => (
            rbscope_heap::import::import_sqlite(&dump, bar.opts(read), db)?,
            db,
        ),
        (None, Some(dir)) => (
            rbscope_heap::import::import_parquet(&dump, bar.opts(read), dir)?,
            dir,
        ),
        (None, None) => bail!("say where to import to: --sqlite FILE or --parquet DIR"),
    };
    drop(bar);
    warn_unreadable(dump_path, &stats.scan);
    if read.json {
        return print_json(&json!({
            "to": dest.display().to_string(),
            "objects": stats.objects,
            "refs": stats.refs,
            "roots": stats.roots,
            "rows": stats.rows(),
            "seconds": stats.elapsed.as_secs_f64(),
            "rows_per_second": stats.rows_per_sec(),
            "scan": scan_json(&stats.scan),
        }));
    }
    println!(
        "{} -> {}: {} objects, {} refs, {} roots; {} rows in {:.2} s ({} rows/s)",
        dump_path.display(),
        dest.display(),
        num(stats.objects),
        num(stats.refs),
        num(stats.roots),
        num(stats.rows()),
        stats.elapsed.as_secs_f64(),
        num(stats.rows_per_sec() as u64)
    );
    Ok(0)
}

// ---------------------------------------------------------------- formatting

/// 1,234,567
fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

use super::memory::bytes;

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
