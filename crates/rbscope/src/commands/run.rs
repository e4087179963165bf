//! `rbscope run -- CMD`: start a program with the agent preloaded and started.
//!
//! Ruby reads `RUBYOPT` at boot, so `-I<gem lib> -rrbscope/autostart` there loads and starts
//! the agent in every Ruby process the command starts (`ruby app.rb`, `bundle exec`, `rails s`).
//! The CLI then replaces itself with the command, so signals and the exit status are the
//! program's own. With trace options (`-m`, `--preset`, `-f`) it starts the command as a child
//! instead, waits for its agent (the program holds at start until the trace is hooked, see
//! `RBSCOPE_RUN_HOLD` in the gem's autostart.rb), traces it until it exits (selectors whose code is not loaded
//! yet are hooked when it appears) and exits with its status.

use super::store_args::{KeyArgs, StoreArgs};
use super::trace::{Selection, TraceOutput};
use crate::ruby_lib;
use anyhow::{bail, Context};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Run a program with the agent loaded and started (sets RUBYOPT for Ruby processes).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Run a program with the agent loaded and started (sets RUBYOPT for Ruby \
        processes). With -m, --preset, -c or -f the program is traced from the start: the \
        trace attaches as soon as its agent answers, selectors for code that is not loaded \
        yet wait and are hooked when it appears, and the trace goes to standard output (or \
        -o) until the program exits; rbscope then exits with the program's status.",
    after_help = "Example: rbscope run -- ruby app.rb\n         rbscope run -- bundle exec rails server\n         rbscope run -m 'Foo#bar(self)' -- ruby app.rb"
)]
pub struct Args {
    #[command(flatten)]
    selection: Selection,
    /// Trace every Ruby method call from the start.
    #[arg(short = 'f', long)]
    firehose: bool,
    #[command(flatten)]
    out: TraceOutput,
    /// The command and its arguments, after `--`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    key: KeyArgs,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    let selectors = a.selection.selectors()?;
    let traced = (!selectors.is_empty() || a.firehose).then(|| super::trace::Options {
        pid: None,
        ps: None,
        firehose: a.firehose,
        selectors,
        slow_ms: None,
        gc: false,
        show_threads: a.out.show_threads,
        output: a.out.output.clone(),
        format: a.out.format,
        force: false,
        duration: None,
        wait_for_code: true,
    });
    exec(&a.command, &a.store, &a.key, traced)
}

fn exec(
    command: &[String],
    store: &StoreArgs,
    key: &KeyArgs,
    traced: Option<super::trace::Options>,
) -> anyhow::Result<i32> {
    let Some((program, args)) = command.split_first() else {
        bail!("give the command to run after `--`, e.g. rbscope run -- ruby app.rb");
    };
    let lib = ruby_lib::find().context("cannot start the agent")?;
    let lib_s = lib.display().to_string();
    if lib_s.contains(char::is_whitespace) {
        bail!("the rbscope gem lives in a path with spaces ({lib_s}), which RUBYOPT cannot carry; install it elsewhere");
    }
    let mut rubyopt = format!("-I{lib_s} -rrbscope/autostart");
    if let Ok(existing) = std::env::var("RUBYOPT") {
        if !existing.trim().is_empty() {
            rubyopt.push(' ');
            rubyopt.push_str(&existing);
        }
    }
    let mut cmd = Command::new(program);
    cmd.args(args).env("RUBYOPT", rubyopt);
    if store.store.is_some() {
        match store.location()? {
            rbscope_store::StoreLocation::Sqlite(path) => cmd.env("RBSCOPE_STORE", path),
            rbscope_store::StoreLocation::Postgres(url) => cmd.env("RBSCOPE_STORE", url),
        };
    }
    if let Some(key) = &key.key {
        cmd.env("RBSCOPE_STORE_KEY", key);
    }
    if let Some(options) = traced {
        // The program waits (up to this many seconds) after starting its agent until the
        // trace is hooked, so that a short program is traced from its first line.
        cmd.env("RBSCOPE_RUN_HOLD", "5");
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {program}"))?;
        return super::trace::run_traced(options, child);
    }
    let err = cmd.exec();
    bail!("cannot run {program}: {err}")
}
