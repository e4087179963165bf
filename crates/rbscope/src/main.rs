//! The `rbscope` command-line tool.
//!
//! Every command is a module under `commands/` (its arguments and its `run`); what the CLI and
//! the web UI (`ui/`) both show is built in `views/`. Errors travel as
//! `anyhow` errors and are printed as one line by `main`, with a non-zero exit: a user should
//! never see a panic or a backtrace from this tool.

mod agent_client;
mod cli;
mod commands;
mod duration;
mod inbox;
mod output;
mod presets;
mod ruby_lib;
mod ui;
mod views;

use clap::Parser;

fn main() {
    // Like other Unix tools, end quietly when the reader goes away (`rbscope stacks | head`)
    // instead of failing to print.
    // SAFETY: setting a signal's disposition to the default at start-up, before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = cli::Cli::parse();
    match commands::dispatch(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("rbscope: {}", one_line(&e));
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line: "cannot read x: permission denied". Control
/// characters become spaces: an error may quote what a file or a peer on the socket sent
/// (newlines, carriage returns, terminal escape sequences), and the line must stay one line
/// that the terminal only prints.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    printable(&parts.join(": "))
}

/// `text` with every control character (newline, carriage return, escape ...) made a space:
/// for text from a file or a peer on the socket that goes into a line for a person.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
