//! `rbscope key new FILE`: the signing key a fleet shares (see rbscope-store's key.rs).

use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Write a new random 32-byte key to FILE (mode 0600); never replaces an existing file.
    New {
        /// Where to write it.
        file: PathBuf,
    },
}

pub fn run(c: &Command) -> anyhow::Result<i32> {
    match c {
        Command::New { file } => new(file),
    }
}

fn new(file: &Path) -> anyhow::Result<i32> {
    if file.exists() {
        anyhow::bail!(
            "{} already exists; rbscope never replaces a key (snapshots signed with it would stop restoring)",
            file.display()
        );
    }
    rbscope_store::StoreKey::create_file(file)
        .with_context(|| format!("cannot make a key at {}", file.display()))?;
    println!(
        "wrote a new signing key to {} (mode 0600)\n\
         Give this same file to every app host (RBSCOPE_STORE_KEY={}) and to whoever restores \
         ({}). Keep it out of the database and out of git.",
        file.display(),
        file.display(),
        crate::views::snapshots::restore_command("ID", None, Some(&file.display().to_string()))
    );
    Ok(0)
}
