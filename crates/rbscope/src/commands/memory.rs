//! `rbscope memory -p PID`: one readable report of a running process's memory.
//!
//! The kernel's figures (/proc/PID/status: resident, peak, swap, virtual) beside the VM's, asked
//! of the agent: the Ruby heap (pages, slots live and free, old objects), malloc (glibc's
//! figures: in use, free in arenas, mmapped), what the GC has done, and live objects by type.
//! Ruby's heap pages are themselves malloc'ed, so "malloc outside the Ruby heap" is malloc in
//! use minus the heap pages; the rest of the resident set is code, stacks and other allocators.

use crate::agent_client;
use crate::views::numbers::{bytes, count};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Serialize)]
struct Report {
    pid: u32,
    ruby_version: String,
    /// /proc/PID/status figures in bytes (VmRSS, VmHWM, VmSwap, VmSize).
    kernel: Vec<(String, u64)>,
    #[serde(flatten)]
    vm: rbscope_proto::MemoryReport,
}

fn kernel_figures(pid: u32) -> Vec<(String, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ["VmRSS", "VmHWM", "VmSwap", "VmSize"]
        .iter()
        .filter_map(|key| {
            let line = status.lines().find(|l| l.starts_with(&format!("{key}:")))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some((key.to_string(), kb * 1024))
        })
        .collect()
}

fn render(r: &Report) -> String {
    let k = |name: &str| r.kernel.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let g = |name: &str| {
        r.vm.gc
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    let m = |name: &str| r.vm.malloc.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "process {}, Ruby {}: memory (the agent held the VM {:.2} ms; {} threads)\n",
        r.pid,
        r.ruby_version,
        r.vm.held_us as f64 / 1000.0,
        r.vm.threads
    );
    let _ = writeln!(s, "Process (kernel)");
    if let Some(rss) = k("VmRSS") {
        let _ = writeln!(
            s,
            "  resident (RSS)          {:<12} peak {}, swapped out {}",
            bytes(rss),
            bytes(k("VmHWM").unwrap_or(0)),
            bytes(k("VmSwap").unwrap_or(0))
        );
    }
    if let Some(v) = k("VmSize") {
        let _ = writeln!(s, "  virtual                 {}", bytes(v));
    }
    let pages = g("heap_allocated_pages").max(0) as u64;
    // The figures come from the agent: saturate rather than overflow on nonsense.
    let heap_bytes = pages.saturating_mul(r.vm.heap_page_bytes);
    let _ = writeln!(s, "\nRuby heap");
    let _ = writeln!(
        s,
        "  pages                   {:<12} {} pages of {}",
        bytes(heap_bytes),
        count(pages as i64),
        bytes(r.vm.heap_page_bytes)
    );
    let _ = writeln!(
        s,
        "  slots                   {:<12} {} live, {} free",
        count(g("heap_available_slots")),
        count(g("heap_live_slots")),
        count(g("heap_free_slots"))
    );
    let _ = writeln!(
        s,
        "  old objects             {:<12} limit {}",
        count(g("old_objects")),
        count(g("old_objects_limit"))
    );
    if let (Some(in_use), Some(mmapped)) = (m("in_use_bytes"), m("mmapped_bytes")) {
        let total = in_use.saturating_add(mmapped);
        let _ = writeln!(s, "\nmalloc (glibc)");
        let _ = writeln!(
            s,
            "  in use                  {:<12} {} in arenas, {} in mmapped blocks",
            bytes(total),
            bytes(in_use),
            bytes(mmapped)
        );
        let _ = writeln!(
            s,
            "  outside the Ruby heap   {:<12} (in use minus the heap pages, which malloc holds too)",
            bytes(total.saturating_sub(heap_bytes))
        );
        let _ = writeln!(
            s,
            "  free in arenas          {:<12} {} could go back to the kernel",
            bytes(m("free_bytes").unwrap_or(0)),
            bytes(m("releasable_bytes").unwrap_or(0))
        );
        if let Some(rss) = k("VmRSS") {
            let _ = writeln!(
                s,
                "  rest of RSS             {:<12} (code, thread stacks, other allocators, freed but kept)",
                bytes(rss.saturating_sub(total))
            );
        }
    }
    let _ = writeln!(s, "\nGC");
    let _ = writeln!(
        s,
        "  runs                    {:<12} {} minor, {} major, {} compactions; {} ms in all",
        count(g("count")),
        count(g("minor_gc_count")),
        count(g("major_gc_count")),
        count(g("compact_count")),
        count(g("time"))
    );
    let _ = writeln!(
        s,
        "  objects allocated       {:<12} {} freed",
        count(g("total_allocated_objects")),
        count(g("total_freed_objects"))
    );
    let _ = writeln!(
        s,
        "  malloc since last GC    {:<12} a GC comes at {}",
        bytes(g("malloc_increase_bytes").max(0) as u64),
        bytes(g("malloc_increase_bytes_limit").max(0) as u64)
    );
    let _ = writeln!(s, "\nLive objects by type");
    let mut types: Vec<&(String, i64)> =
        r.vm.objects
            .iter()
            .filter(|(n, _)| n.starts_with("T_"))
            .collect();
    types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (name, n) in types {
        let _ = writeln!(s, "  {name:<22}  {:>12}", count(*n));
    }
    s
}

/// One readable report of a running process's memory: RSS, the Ruby heap, malloc, GC
/// figures and live objects by type (through its agent).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "One readable report of a running process's memory, through its agent: the \
        kernel's figures (resident, peak, swap, virtual), the Ruby heap (pages, slots live \
        and free, old objects), malloc (glibc: in use, outside the Ruby heap, free in \
        arenas), what the GC has done, and live objects by type. The agent holds the VM \
        while it counts objects (about a millisecond per hundred thousand).",
    after_help = "Example: rbscope memory -p 4242\n         rbscope memory -p 4242 --json"
)]
pub struct Args {
    /// The process to report on (it must run the rbscope agent).
    #[arg(short, long)]
    pid: u32,
    /// Print JSON instead of the report.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    memory(a.pid, a.json)
}

fn memory(pid: u32, json: bool) -> anyhow::Result<i32> {
    let target = agent_client::locate(pid)?;
    let mut client = agent_client::connect(&target)?;
    let ruby_version = client.welcome.ruby_version.clone();
    let vm = client.memory(Duration::from_secs(5))?;
    let report = Report {
        pid,
        ruby_version,
        kernel: kernel_figures(pid),
        vm,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}
