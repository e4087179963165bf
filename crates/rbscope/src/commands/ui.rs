//! `rbscope ui [FILE...]`: the command line of the web UI; the server is in `crate::ui`.

use super::store_args::{KeyArgs, StoreArgs};
use std::path::PathBuf;

/// A web UI: browse snapshots, heap dumps, traces and profiles in the browser.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Serve a web UI for the store's snapshots (grouped, searchable, each with its \
        frames, source and an expandable tree of self and locals) and for the FILES given: \
        heap dumps (summary, a zoomable treemap of retained size, the dominator tree, \
        retention paths, diffs of 2-3 dumps), traces written with `rbscope trace -o FILE \
        --format jsonl|chrome` (a per-thread timeline), profiles written with `rbscope \
        record --format speedscope|collapsed` (a flame graph) and saved analyses (`rbscope \
        heap summary|top|diff|path --json` output). Everything is served by this binary; \
        nothing is fetched from the network. Bound to 127.0.0.1 by default; on any other \
        address a token is required (in the printed URL), and the traffic is plain HTTP.",
    after_help = "Example: rbscope ui\n         rbscope ui heap-1.json heap-2.json trace.jsonl profile.json\n         rbscope ui --store postgres://rbscope@db/rbscope --listen 0.0.0.0:7070"
)]
pub struct Args {
    /// Heap dumps, traces, profiles and saved analyses to open (told apart by content).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Where to listen. A non-loopback address requires the token.
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR:PORT")]
    listen: String,
    /// Require the token on a loopback address too (on a machine shared with other users).
    #[arg(long)]
    token: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: KeyArgs,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    crate::ui::run(
        &a.store,
        &a.key,
        &crate::ui::Options {
            listen: a.listen.clone(),
            token: a.token,
            files: a.files.clone(),
        },
    )
}
