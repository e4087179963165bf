//! `rbscope console -p PID`: an interactive Ruby console inside a running process.
//!
//! Each input runs through the agent's eval (so the app must allow eval), on a thread of its own
//! inside the app, in a binding the agent keeps for this console (locals survive from one input
//! to the next). Input that is not complete yet (an open `def`, block, bracket or string) is
//! continued on the next line. While the console waits at its prompt nothing runs in the app;
//! Ctrl-C during an evaluation asks the agent to kill that evaluation's thread (the app goes
//! on), Ctrl-C at the prompt clears the input, Ctrl-D leaves. History is kept in
//! `$XDG_DATA_HOME/rbscope/console_history` (0600).

use crate::agent_client;
use rustyline::error::ReadlineError;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn history_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("rbscope/console_history"))
}

/// An interactive Ruby console inside a running process (the app must allow eval).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "An interactive Ruby console inside a running process, through its agent. \
        The app must allow eval (Rbscope.start(allow_eval: true) or RBSCOPE_ALLOW_EVAL=1). \
        Each input runs inside the app on a thread of its own (in Rails.application.executor \
        when Rails is loaded), in a binding kept for this console, so local variables \
        survive between inputs; input that is not complete yet continues on the next line. \
        Nothing runs in the app while the console waits at its prompt. Ctrl-C during an \
        evaluation stops it (its thread is killed; the app goes on), Ctrl-C at the prompt \
        clears the input, Ctrl-D leaves. History: $XDG_DATA_HOME/rbscope/console_history.",
    after_help = "Example: rbscope console -p 4242"
)]
pub struct Args {
    /// The process to open a console in.
    #[arg(short, long)]
    pid: u32,
    /// Stop any one evaluation after this long.
    #[arg(long, default_value = "10m", value_parser = crate::duration::parse_ms)]
    timeout: i64,
}

pub fn run(a: &Args) -> anyhow::Result<i32> {
    console(a.pid, Duration::from_millis(a.timeout as u64))
}

fn console(pid: u32, timeout: Duration) -> anyhow::Result<i32> {
    let target = agent_client::locate(pid)?;
    let mut client = agent_client::connect(&target)?;
    // The agent keeps one binding per console: any id unlikely to be another console's.
    let binding = u64::from(std::process::id()) << 32
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    // Probe once, so a process that does not allow eval says so before the first prompt.
    let probe = client.eval_in("nil", Some(binding), timeout, &INTERRUPTED)?;
    if !probe.ok {
        anyhow::bail!("{}", probe.text);
    }
    eprintln!(
        "rbscope console: process {pid}, Ruby {}. Each input runs inside the app on a thread of \
         its own; Ctrl-C stops a running evaluation (not the app), Ctrl-D leaves.",
        client.welcome.ruby_version
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        )
    };
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = history_file();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut input = String::new();
    loop {
        let prompt = if input.is_empty() {
            "rbscope> "
        } else {
            "rbscope*> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                input.push_str(&line);
                input.push('\n');
            }
            Err(ReadlineError::Interrupted) => {
                input.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
        if input.trim().is_empty() {
            input.clear();
            continue;
        }
        INTERRUPTED.store(false, Ordering::SeqCst);
        let result = client.eval_in(&input, Some(binding), timeout, &INTERRUPTED)?;
        if result.incomplete {
            continue;
        }
        let _ = editor.add_history_entry(input.trim_end());
        input.clear();
        if result.ok {
            println!("=> {}", result.text);
        } else {
            eprintln!("{}", result.text);
        }
        let _ = std::io::stdout().flush();
    }
    if let Some(h) = &history {
        save_history(&mut editor, h);
    }
    Ok(0)
}

/// Saves the history, which holds whatever was typed: its directory made 0700 and the file
/// 0600 (both before rustyline writes), and never through a symbolic link at its path, which
/// rustyline would follow. (Swapping one in after the check needs write access to the user's
/// own data directory.)
fn save_history(editor: &mut rustyline::DefaultEditor, path: &Path) {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
    }
    match crate::output::append(path) {
        Ok(_) => {
            let _ = editor.save_history(path);
        }
        Err(e) => eprintln!(
            "rbscope console: the history was not saved to {}: {e}",
            path.display()
        ),
    }
}
