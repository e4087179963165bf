//! `rbscope heap count -p PID [NAME...]`: live objects counted in place, by type and class.

use serde_json::json;

use super::live::{connect, ms};

/// Count a running process's live objects: totals by VM type, and instances per class
/// under the namespaces or classes given (every class when none is given).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process (it must run the rbscope agent).
    #[arg(short, long)]
    pid: u32,
    /// Namespaces or classes: `MyApp` counts MyApp and MyApp::*.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// Classes to show.
    #[arg(short = 'n', long, default_value_t = 30)]
    limit: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    count(a.pid, a.names.clone(), a.limit, a.json)
}

fn count(pid: u32, names: Vec<String>, limit: usize, json_out: bool) -> anyhow::Result<i32> {
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
