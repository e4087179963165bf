//! `rbscope restore ID`: IRB back in the frame.
//!
//! The CLI checks what it can without Ruby (the store, the id, the signature, the format) so
//! that each failure is one clear line, then replaces itself with `ruby`, which loads the gem's
//! restore code and the app files given with `-r`, rebuilds the objects and opens IRB.

use super::store_args::{KeyArgs, StoreArgs};
use crate::ruby_lib;
use anyhow::{bail, Context};
use rbscope_snapshot::{Snapshot, Take};
use rbscope_store::{reader_key, Store, StoreError, StoreLocation};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Open IRB back in a snapshot's frame: self and locals restored as Ruby objects.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "In the console: frames, frame N, up, down, snapshot, class_state, threads; exit leaves.\n\
    Load your app first so its classes exist (else objects come back as marked stand-ins):\n  \
    rbscope restore ID -r ./config/environment\n\
    From a running console: Rbscope.restore(\"ID\")"
)]
pub struct Args {
    /// The snapshot id, or an unambiguous prefix of it.
    id: String,
    /// Another thread of the same take (a snapshot taken with `rbscope snapshot -p --all` or
    /// several --thread): open that thread's snapshot instead; its name, `main`, or its OS
    /// thread id.
    #[arg(long, value_name = "NAME|TID")]
    thread: Option<String>,
    /// The frame to start in (0 = innermost; see `rbscope show`).
    #[arg(long, default_value_t = 0)]
    frame: usize,
    /// Restore a snapshot that is unsigned or not signed with this store's key.
    #[arg(long)]
    trust: bool,
    /// Ruby files to require first (your app), like `ruby -r`.
    #[arg(short = 'r', long = "require", value_name = "FILE")]
    requires: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: KeyArgs,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    let Args {
        id,
        thread,
        frame,
        trust,
        requires,
        store,
        key: key_args,
    } = a;
    let (frame, trust) = (*frame, *trust);
    let location = store.location()?;
    let mut store = Store::open_existing(&location)?;
    let key = if trust {
        None
    } else {
        reader_key(&location, key_args.key.as_deref())?
    };
    let (mut full_id, mut body) = store.get_for_restore(id, trust, key.as_ref())?;
    if let Some(wanted) = thread {
        let given = rbscope_snapshot::decode(&body)
            .with_context(|| format!("snapshot {full_id} cannot be read"))?;
        let other = take_member(&given, wanted)?;
        if other != full_id {
            (full_id, body) = match store.get_for_restore(&other, trust, key.as_ref()) {
                Err(StoreError::NotFound(_)) => bail!(
                    "the snapshot of thread {wanted} in the take of {full_id} ({other}) is not in \
                     this store: it was not stored, or was purged"
                ),
                r => r?,
            };
        }
    }
    let snapshot = rbscope_snapshot::decode(&body)
        .with_context(|| format!("snapshot {full_id} cannot be read"))?;
    let frames = snapshot.frames.len()
        + snapshot
            .exception
            .causes
            .iter()
            .map(|c| c.frames.len())
            .sum::<usize>();
    if frames == 0 {
        bail!("snapshot {full_id} has no captured frames to restore");
    }
    if frame >= frames {
        bail!(
            "snapshot {full_id} has frames 0 to {}; --frame {frame} is not one of them",
            frames - 1
        );
    }
    let lib = ruby_lib::find().context("restore needs the rbscope gem")?;
    let mut cmd = Command::new("ruby");
    cmd.arg(format!("-I{}", lib.display()));
    for r in requires {
        cmd.arg(format!("-r{r}"));
    }
    cmd.args([
        "-rrbscope/restore",
        "-e",
        "Rbscope.restore(ARGV[0], frame: Integer(ARGV[1]), trust: ARGV[2] == '1')",
        "--",
        &full_id,
        &frame.to_string(),
        if trust { "1" } else { "0" },
    ])
    .env("RBSCOPE_DISABLE", "1");
    match &location {
        StoreLocation::Sqlite(path) => cmd.env("RBSCOPE_STORE", path),
        StoreLocation::Postgres(url) => cmd.env("RBSCOPE_STORE", url),
    };
    if let Some(key) = &key_args.key {
        cmd.env("RBSCOPE_STORE_KEY", key);
    }
    let err = cmd.exec();
    bail!("cannot run ruby: {err}")
}

/// The id of the snapshot of thread `wanted` in the take of snapshot `s`.
fn take_member(s: &Snapshot, wanted: &str) -> anyhow::Result<String> {
    let Some(take) = Take::of(&s.context) else {
        bail!(
            "snapshot {} was not taken with other threads (only `rbscope snapshot -p` with --all \
             or several --thread makes a take); restore it without --thread",
            s.id
        );
    };
    match take.find(wanted) {
        Some(m) => Ok(m.id.clone()),
        None => bail!(
            "no thread named or with tid {wanted:?} in the take of snapshot {}; its threads are: {}",
            s.id,
            take.describe_threads()
        ),
    }
}
