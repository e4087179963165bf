//! Finding the rbscope gem's Ruby files, for `rbscope run` and `doctor`.
//!
//! In order: `RBSCOPE_RUBY_LIB` (set by the gem's `rbscope` wrapper and by checkouts), then
//! the installed gem as RubyGems reports it.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Command;

pub fn find() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RBSCOPE_RUBY_LIB").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.join("rbscope.rb").is_file() {
            return Ok(dir);
        }
        bail!(
            "RBSCOPE_RUBY_LIB is {} but there is no rbscope.rb in it",
            dir.display()
        );
    }
    let out = Command::new("ruby")
        .args([
            "-e",
            "begin; print Gem::Specification.find_by_name('rbscope').full_require_paths.first; rescue Gem::MissingSpecError; end",
        ])
        .output()
        .context("cannot run `ruby` to find the rbscope gem (is Ruby installed and on PATH?)")?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    if dir.as_os_str().is_empty() || !dir.join("rbscope.rb").is_file() {
        bail!("the rbscope gem is not installed for `ruby` on PATH: install it (scripts/install-gem) or set RBSCOPE_RUBY_LIB to its lib directory");
    }
    Ok(dir)
}
