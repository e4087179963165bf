//! One module per command. Each returns the process exit code.

mod console;
mod doctor;
mod eval;
pub(crate) mod heap;
mod inject;
mod key;
pub(crate) mod list;
mod memory;
mod ps;
mod purge;
mod record;
mod restore;
mod run;
mod show;
mod stacks;
mod trace;

use crate::cli::{Cli, Command};
pub use record::Format as RecordFormat;

pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Run {
            command,
            selection,
            firehose,
            out,
        } => {
            let selectors = selection.selectors()?;
            let traced = (!selectors.is_empty() || *firehose).then(|| trace::Options {
                pid: None,
                ps: None,
                firehose: *firehose,
                selectors,
                slow_ms: None,
                gc: false,
                show_threads: out.show_threads,
                output: out.output.clone(),
                format: out.format,
                force: false,
                duration: None,
                wait_for_code: true,
            });
            run::run(&cli, command, traced)
        }
        Command::List {
            limit,
            json,
            group,
            since,
            class,
            host,
        } => {
            let filter = rbscope_store::Filter {
                since_ms: since.map(|d| crate::time::now_ms() - d),
                class: class.clone(),
                host: host.clone(),
                limit: *limit,
                ..rbscope_store::Filter::default()
            };
            list::list(&cli, &filter, *json, *group)
        }
        Command::Purge {
            id,
            older_than,
            fingerprint,
            keep_count,
            keep_bytes,
        } => purge::purge(
            &cli,
            purge::Request {
                id: id.clone(),
                older_than_ms: *older_than,
                fingerprint: fingerprint.clone(),
                keep_count: *keep_count,
                keep_bytes: *keep_bytes,
            },
        ),
        Command::Show {
            id,
            json,
            depth,
            items,
        } => show::show(&cli, id, *json, *depth, *items),
        Command::Key(crate::cli::KeyCommand::New { file }) => key::new(file),
        Command::Doctor { pid } => doctor::doctor(&cli, *pid),
        Command::Stacks {
            pid,
            remote,
            no_pause,
            core,
            ruby,
            json,
        } => match (pid, core, ruby) {
            (Some(pid), _, _) if !*remote => stacks::via_agent(*pid, !*no_pause, *json),
            (Some(pid), _, _) => stacks::process(*pid, !*no_pause, *json, None),
            (None, Some(core), Some(ruby)) => stacks::core(core, ruby, *json),
            _ => anyhow::bail!(
                "say what to read: `rbscope stacks -p PID` or `rbscope stacks --core FILE --ruby BIN`"
            ),
        },
        Command::Ps { json } => ps::ps(*json),
        Command::Memory { pid, json } => memory::memory(*pid, *json),
        Command::Heap { command } => heap::run(command),
        Command::Ui {
            files,
            listen,
            token,
        } => crate::ui::run(
            &cli,
            &crate::ui::Options {
                listen: listen.clone(),
                token: *token,
                files: files.clone(),
            },
        ),
        Command::Inject { pid, timeout } => {
            inject::inject(*pid, std::time::Duration::from_millis((*timeout).max(0) as u64))
        }
        Command::Record {
            pid,
            duration,
            rate,
            output,
            format,
            cpu,
        } => record::record(record::Options {
            pid: *pid,
            duration: std::time::Duration::from_millis(*duration as u64),
            rate: *rate,
            output: output.clone(),
            format: *format,
            cpu: *cpu,
        }),
        Command::Console { pid, timeout } => {
            console::console(*pid, std::time::Duration::from_millis(*timeout as u64))
        }
        Command::Trace {
            pid,
            ps,
            firehose,
            selection,
            slow,
            gc,
            out,
            force,
            duration,
        } => trace::trace(trace::Options {
            pid: *pid,
            ps: ps.clone(),
            firehose: *firehose,
            selectors: selection.selectors()?,
            slow_ms: *slow,
            gc: *gc,
            show_threads: out.show_threads,
            output: out.output.clone(),
            format: out.format,
            force: *force,
            duration: duration.map(|ms| std::time::Duration::from_millis(ms as u64)),
            wait_for_code: false,
        }),
        Command::Eval { pid, code, timeout } => {
            eval::eval(*pid, code, std::time::Duration::from_millis(*timeout as u64))
        }
        Command::Restore {
            id,
            frame,
            trust,
            requires,
        } => restore::restore(&cli, id, *frame, *trust, requires),
    }
}
