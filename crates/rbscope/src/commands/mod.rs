//! One module per command. Each returns the process exit code.

mod doctor;
mod list;
mod restore;
mod run;
mod show;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Run { command } => run::run(&cli, command),
        Command::List { limit, json } => list::list(&cli, *limit, *json),
        Command::Show {
            id,
            json,
            depth,
            items,
        } => show::show(&cli, id, *json, *depth, *items),
        Command::Doctor { pid } => doctor::doctor(&cli, *pid),
        Command::Restore {
            id,
            frame,
            trust,
            requires,
        } => restore::restore(&cli, id, *frame, *trust, requires),
    }
}
