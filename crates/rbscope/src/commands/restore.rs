//! `rbscope restore ID`: IRB back in the frame.
//!
//! The CLI checks what it can without Ruby (the store, the id, the signature, the format) so
//! that each failure is one clear line, then replaces itself with `ruby`, which loads the gem's
//! restore code and the app files given with `-r`, rebuilds the objects and opens IRB.

use crate::cli::Cli;
use crate::ruby_lib;
use anyhow::{bail, Context};
use rbscope_store::{reader_key, Store, StoreLocation};
use std::os::unix::process::CommandExt;
use std::process::Command;

pub fn restore(
    cli: &Cli,
    id: &str,
    frame: usize,
    trust: bool,
    requires: &[String],
) -> anyhow::Result<i32> {
    let location = cli.store_location()?;
    let mut store = Store::open_existing(&location)?;
    let key = if trust {
        None
    } else {
        reader_key(&location, cli.key.as_deref())?
    };
    let (full_id, body) = store.get_for_restore(id, trust, key.as_ref())?;
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
    if let Some(key) = &cli.key {
        cmd.env("RBSCOPE_STORE_KEY", key);
    }
    let err = cmd.exec();
    bail!("cannot run ruby: {err}")
}
