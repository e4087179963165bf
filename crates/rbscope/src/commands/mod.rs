//! One module per command: its arguments (a clap `Args` struct) and its `run`, which returns
//! the process exit code.

pub(crate) mod breakpoint;
pub(crate) mod console;
pub(crate) mod doctor;
pub(crate) mod eval;
pub(crate) mod heap;
pub(crate) mod inject;
pub(crate) mod key;
pub(crate) mod list;
pub(crate) mod log;
pub(crate) mod memory;
pub(crate) mod ps;
pub(crate) mod purge;
pub(crate) mod record;
pub(crate) mod restore;
pub(crate) mod run;
pub(crate) mod show;
pub(crate) mod snapshot;
pub(crate) mod stacks;
pub(crate) mod store_args;
pub(crate) mod trace;
pub(crate) mod ui;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Run(a) => run::run(a),
        Command::List(a) => list::run(a),
        Command::Purge(a) => purge::run(a),
        Command::Show(a) => show::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Key(c) => key::run(c),
        Command::Stacks(a) => stacks::run(a),
        Command::Snapshot(a) => snapshot::run(a),
        Command::Break(a) => breakpoint::run(a),
        Command::Log(a) => log::run(a),
        Command::Inject(a) => inject::run(a),
        Command::Ps(a) => ps::run(a),
        Command::Trace(a) => trace::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Console(a) => console::run(a),
        Command::Record(a) => record::run(a),
        Command::Memory(a) => memory::run(a),
        Command::Heap(c) => heap::run(c),
        Command::Ui(a) => ui::run(a),
        Command::Doctor(a) => doctor::run(a),
    }
}
