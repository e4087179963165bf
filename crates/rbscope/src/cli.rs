//! The command line: the subcommands, in the order `--help` lists them. Each command's
//! arguments are a clap `Args` struct beside its code in `commands/` (`commands::list::Args`
//! ...), with its `run`; the store's flags are on the commands that use the store
//! (`commands::store_args`). There are no global flags besides --help and --version.

use crate::commands;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rbscope",
    version,
    about = "A production debugger for Ruby: exception snapshots you can browse later, every \
        thread's stack of a running process, live tracing and eval, and heap dump analysis.",
    long_about = "A production debugger for Ruby.\n\n\
        When an exception escapes a Ruby program (or the app calls Rbscope.report), rbscope \
        stores a snapshot of every app frame: self, locals and the objects they reach. \
        Browse snapshots with `list` and `show`; no Ruby is needed for that.\n\n\
        The store is a SQLite file, by default $XDG_DATA_HOME/rbscope/snapshots.db \
        (~/.local/share/rbscope/snapshots.db); --store or RBSCOPE_STORE picks another file, \
        or a PostgreSQL database shared by a fleet (postgres://user@host/db).\n\n\
        `rbscope stacks -p PID --remote` prints every Ruby thread's stack of any Ruby process, \
        read from outside, with no agent in it. `rbscope trace -p PID` shows method calls of a \
        process that runs the agent as they happen; `rbscope eval -p PID CODE` runs code in it \
        (when the app allows it); `rbscope ps` lists the processes you may attach to.\n\n\
        `rbscope heap` analyses ObjectSpace.dump_all files: a census, leaks across dumps, \
        retention paths, the dominator tree, duplicated strings, and import into SQLite or \
        Parquet."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Run(commands::run::Args),
    List(commands::list::Args),
    Purge(commands::purge::Args),
    Show(commands::show::Args),
    Restore(commands::restore::Args),
    /// Make a signing key file for a fleet store (give the same file to every writer and to
    /// whoever restores, with RBSCOPE_STORE_KEY or --key).
    #[command(subcommand)]
    Key(commands::key::Command),
    Stacks(commands::stacks::Args),
    Snapshot(commands::snapshot::Args),
    Break(commands::breakpoint::Args),
    Log(commands::log::Args),
    Inject(commands::inject::Args),
    Ps(commands::ps::Args),
    Trace(commands::trace::Args),
    Eval(commands::eval::Args),
    Console(commands::console::Args),
    Record(commands::record::Args),
    Memory(commands::memory::Args),
    /// Heap dumps: analyse ObjectSpace.dump_all files (census, leaks across dumps, why an
    /// object is alive, what retains the memory, duplicated strings, SQL), or dump, count and
    /// watch a running process's heap.
    #[command(
        subcommand,
        long_about = "Analyse heap dumps: the JSON lines ObjectSpace.dump_all writes (Ruby 3.1 to \
            4.0), plain or compressed with gzip or zstd. No Ruby is needed. Lines Ruby wrote as \
            invalid JSON (unescaped quotes in file names) are read anyway and counted. Every \
            subcommand prints text, or JSON with --json; a progress bar appears on a terminal \
            when reading takes more than a second.",
        after_help = "Example: rbscope heap summary heap.json\n         rbscope heap diff 1.json 2.json 3.json\n         rbscope heap path 3.json 0x7f8a1c2b3d40\n         rbscope heap top heap.json --svg retained.svg\n         rbscope heap import heap.json --sqlite heap.db"
    )]
    Heap(commands::heap::Command),
    Ui(commands::ui::Args),
    Doctor(commands::doctor::Args),
}
