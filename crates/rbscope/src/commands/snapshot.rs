//! `rbscope snapshot -p PID`: a live snapshot of threads of a running process, now, through its
//! agent. Each thread chosen gets a snapshot of its own (every app frame with self, locals, the
//! objects they reach and source lines, as an exception snapshot has), stored in the app's store
//! and listed as `(live)`; the threads go on as before. Several threads asked for at once are
//! one take: each snapshot's context names the others (rbscope_snapshot::take), for `show`,
//! `restore ID --thread` and the UI.

use crate::agent_client;
use rbscope_proto::SnapshotRequest;

/// Snapshot threads of a running process now, without an exception (through its agent).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Store a live snapshot of threads of a running process now, through its agent: \
        every app frame of each thread with self, locals, the objects they reach and source \
        lines, exactly as an exception snapshot (same limits, redaction, signing and store). \
        Each thread gets a snapshot of its own, listed as (live) by `rbscope list`, shown by \
        `rbscope show`, restorable with `rbscope restore`. Several threads asked for at once \
        (--all, or --thread more than once) are one take: `rbscope show ID` names the take's \
        other threads and their snapshots, and `rbscope restore ID --thread NAME|TID` opens \
        another thread's snapshot of the same take. The threads go on running: the agent \
        holds the VM only while it copies and walks their frames. Without --thread or --all, \
        the main thread.",
    after_help = "Examples: rbscope snapshot -p 4242\n          \
        rbscope snapshot -p 4242 --thread worker-1 --thread 4250\n          \
        rbscope snapshot -p 4242 --all --json"
)]
pub struct Args {
    /// The process (it must run the rbscope agent; `rbscope inject -p PID` loads it).
    #[arg(short, long)]
    pid: u32,
    /// A thread to snapshot: its name or its OS thread id (as `rbscope stacks -p PID` shows);
    /// repeat for several.
    #[arg(short, long = "thread", value_name = "NAME|TID")]
    threads: Vec<String>,
    /// Snapshot every thread (but the agent's own).
    #[arg(long, conflicts_with = "threads")]
    all: bool,
    /// Print JSON instead of one line per thread.
    #[arg(long)]
    json: bool,
    /// How long to wait for the VM to give the agent a turn.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::duration::parse_ms)]
    wait: i64,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    let target = agent_client::locate(a.pid)?;
    let mut client = agent_client::connect(&target)?;
    let taken = client.snapshot(SnapshotRequest {
        threads: a.threads.clone(),
        all: a.all,
        wait_ms: a.wait.clamp(1, 60_000) as u32,
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&taken)?);
    } else {
        for t in &taken.taken {
            match (&t.id, &t.note) {
                (Some(id), _) => println!("{id}  thread {}", t.thread),
                (None, note) => println!(
                    "-  thread {}: {}",
                    t.thread,
                    note.as_deref().unwrap_or("not stored")
                ),
            }
        }
        eprintln!(
            "rbscope: {} of {} threads snapshotted (the agent held the VM {:.1} ms); see them \
             with `rbscope show ID`",
            taken.taken.iter().filter(|t| t.id.is_some()).count(),
            taken.taken.len(),
            taken.held_us as f64 / 1000.0
        );
    }
    Ok(if taken.taken.iter().all(|t| t.id.is_some()) {
        0
    } else {
        1
    })
}
