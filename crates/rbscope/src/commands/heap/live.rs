//! `rbscope heap dump | count | track | watch -p PID`: the heap of a running process, through
//! its agent. The agent does the work inside the process (a forked child writes dumps); this
//! side asks, waits and prints, and for `watch --diff` analyses the dumps with rbscope-heap.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use rbscope_proto::{HeapDumpRequest, HeapDumpResult};
use serde_json::json;

use super::bytes;
use crate::agent_client;

fn connect(pid: u32) -> anyhow::Result<agent_client::Client> {
    let target = agent_client::locate(pid)?;
    agent_client::connect(&target)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn result_json(r: &HeapDumpResult) -> serde_json::Value {
    json!({
        "path": r.path,
        "objects": r.objects,
        "roots": r.roots,
        "bytes": r.bytes,
        "pause_ms": ms(r.pause_us),
        "gc_ms": ms(r.gc_us),
        "total_ms": ms(r.total_us),
        "forked": r.forked,
        "allocation_info": r.allocation_info,
    })
}

fn result_line(pid: u32, r: &HeapDumpResult) -> String {
    let how = if r.forked {
        "the fork"
    } else {
        "the whole dump (in process)"
    };
    let gc = if r.gc_us > 0 {
        format!(", GC {:.1} ms included", ms(r.gc_us))
    } else {
        String::new()
    };
    let tracing = if r.allocation_info {
        "with allocation sites"
    } else {
        "no allocation sites (rbscope heap track -p PID start)"
    };
    format!(
        "process {pid}: {} objects, {} written to {} in {:.2} s; the app paused {:.1} ms for {how}{gc}; {tracing}",
        r.objects,
        bytes(r.bytes),
        r.path,
        r.total_us as f64 / 1e6,
        ms(r.pause_us),
    )
}

pub struct DumpOptions {
    pub output: Option<String>,
    pub gzip: bool,
    pub gc: bool,
    pub in_process: bool,
}

fn request(o: &DumpOptions) -> HeapDumpRequest {
    HeapDumpRequest {
        path: o.output.clone(),
        gzip: o.gzip,
        gc: o.gc,
        in_process: o.in_process,
        wait_ms: if o.in_process { 60_000 } else { 5_000 },
    }
}

pub fn dump(pid: u32, o: DumpOptions, json_out: bool) -> anyhow::Result<i32> {
    let mut client = connect(pid)?;
    let r = client.heap_dump(request(&o))?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&result_json(&r))?);
    } else {
        println!("{}", result_line(pid, &r));
    }
    Ok(0)
}

pub fn count(pid: u32, names: Vec<String>, limit: usize, json_out: bool) -> anyhow::Result<i32> {
    let mut client = connect(pid)?;
    let c = client.heap_count(names.clone())?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "objects": c.objects,
                "by_type": c.by_type.iter().map(|(t, n)| json!({"type": t, "count": n})).collect::<Vec<_>>(),
                "classes": c.classes.iter().map(|(k, n)| json!({"class": k, "count": n})).collect::<Vec<_>>(),
                "held_ms": ms(c.held_us),
            }))?
        );
        return Ok(0);
    }
    let mut o = format!(
        "process {pid}: {} live objects (counted in {:.1} ms, the VM held meanwhile)\n\nby type\n",
        c.objects,
        ms(c.held_us)
    );
    for (t, n) in &c.by_type {
        o += &format!("  {n:>12}  {t}\n");
    }
    let what = if names.is_empty() {
        "every class".to_string()
    } else {
        names.join(", ")
    };
    o += &format!(
        "\ninstances per class ({what}; {} classes)\n",
        c.classes.len()
    );
    if c.classes.is_empty() {
        o += "  (no live instances of such classes)\n";
    }
    for (k, n) in c.classes.iter().take(limit) {
        o += &format!("  {n:>12}  {k}\n");
    }
    if c.classes.len() > limit {
        o += &format!("  ... {} more classes (-n)\n", c.classes.len() - limit);
    }
    print!("{o}");
    Ok(0)
}

pub fn track(pid: u32, action: &str) -> anyhow::Result<i32> {
    let on = action == "start";
    let mut client = connect(pid)?;
    let (now, was) = client.heap_track(on)?;
    let state = if now { "on" } else { "off" };
    let before = match (was, now) {
        (true, true) => " (it already was)",
        (false, false) => " (rbscope had not turned it on)",
        _ => "",
    };
    println!("process {pid}: allocation tracing is {state}{before}");
    Ok(0)
}

pub struct WatchOptions {
    pub every: Duration,
    pub count: usize,
    pub diff: bool,
    pub dir: Option<String>,
    pub gc: bool,
    pub limit: usize,
    pub json: bool,
}

pub fn watch(pid: u32, w: WatchOptions) -> anyhow::Result<i32> {
    if w.count < 2 {
        bail!("watch takes at least 2 dumps (-n 2 or more)");
    }
    let mut client = connect(pid)?;
    let started = Instant::now();
    let mut results = Vec::new();
    for k in 0..w.count {
        if k > 0 {
            let due = started + w.every * k as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let output = w.dir.as_ref().map(|d| {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            format!("{}/heap-{pid}-{ms}-{}.json", d.trim_end_matches('/'), k + 1)
        });
        let r = client.heap_dump(request(&DumpOptions {
            output,
            gzip: false,
            gc: w.gc,
            in_process: false,
        }))?;
        if !w.json {
            eprintln!("dump {}/{}: {}", k + 1, w.count, result_line(pid, &r));
        }
        results.push(r);
    }
    if !w.diff {
        if w.json {
            let all: Vec<_> = results.iter().map(result_json).collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        } else {
            for r in &results {
                println!("{}", r.path);
            }
        }
        return Ok(0);
    }
    // The first, the middle and the last: what appeared, and what stayed.
    let picked: Vec<&HeapDumpResult> = if results.len() == 2 {
        results.iter().collect()
    } else {
        vec![
            &results[0],
            &results[results.len() / 2],
            &results[results.len() - 1],
        ]
    };
    let paths: Vec<PathBuf> = picked.iter().map(|r| readable(pid, &r.path)).collect();
    super::diff_paths(&paths, w.limit, w.json)
}

/// The dump as this process can read it: the path the target wrote, or the same path under
/// its root (a process in another mount namespace).
fn readable(pid: u32, path: &str) -> PathBuf {
    let direct = PathBuf::from(path);
    if direct.exists() {
        return direct;
    }
    let under_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
    if under_root.exists() {
        under_root
    } else {
        direct
    }
}
