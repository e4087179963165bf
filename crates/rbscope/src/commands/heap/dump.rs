//! `rbscope heap dump -p PID`: a running process's heap, written by a forked child of it.

use super::live::{connect, request, result_json, result_line, DumpOptions};

/// Dump a running process's heap (through its agent) from a forked child: the app pauses
/// only for the fork. Prints the pause, the object count, the size and the file.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: rbscope heap dump -p 4242\n         rbscope heap dump -p 4242 -o /var/tmp/app.json.gz --gzip"
)]
pub struct Args {
    /// The process (it must run the rbscope agent).
    #[arg(short, long)]
    pid: u32,
    /// Where to write, as the process sees it (its user, its working directory); mode
    /// 0600, never overwritten. Default: a new file in the agent's private directory.
    #[arg(short, long, value_name = "FILE")]
    output: Option<String>,
    /// Compress with gzip.
    #[arg(long)]
    gzip: bool,
    /// Run a full GC first (the app pauses for it too): only live objects are written.
    #[arg(long)]
    gc: bool,
    /// Write from the process itself instead of a forked child (where fork is impossible):
    /// the app pauses for the whole dump.
    #[arg(long)]
    in_process: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    let o = DumpOptions {
        output: a.output.clone(),
        gzip: a.gzip,
        gc: a.gc,
        in_process: a.in_process,
    };
    let mut client = connect(a.pid)?;
    let r = client.heap_dump(request(&o))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result_json(&r))?);
    } else {
        println!("{}", result_line(a.pid, &r));
    }
    Ok(0)
}
