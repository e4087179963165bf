//! Command-line arguments (clap derive), converted to domain types by each command.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
    /// Where snapshots are stored: a file path (default: the per-user data directory) or a
    /// postgres:// URL.
    #[arg(long, global = true, env = "RBSCOPE_STORE", value_name = "PATH|URL")]
    pub store: Option<String>,

    /// The key file snapshots are signed with (default for a SQLite store: <store>.key beside
    /// it; a PostgreSQL store has none unless given; make one with `rbscope key new`).
    #[arg(long, global = true, env = "RBSCOPE_STORE_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a program with the agent loaded and started (sets RUBYOPT for Ruby processes).
    #[command(
        long_about = "Run a program with the agent loaded and started (sets RUBYOPT for Ruby \
            processes). With -m, --preset, -c or -f the program is traced from the start: the \
            trace attaches as soon as its agent answers, selectors for code that is not loaded \
            yet wait and are hooked when it appears, and the trace goes to standard output (or \
            -o) until the program exits; rbscope then exits with the program's status.",
        after_help = "Example: rbscope run -- ruby app.rb\n         rbscope run -- bundle exec rails server\n         rbscope run -m 'Foo#bar(self)' -- ruby app.rb"
    )]
    Run {
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
    },
    /// List stored snapshots, newest first (or grouped by fingerprint with --group).
    List {
        /// How many to show (snapshots, or groups with --group).
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: usize,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        /// Group by fingerprint (exception class + top app frame): counts, first and last seen.
        #[arg(long)]
        group: bool,
        /// Only snapshots reported within this long (30m, 2h, 7d).
        #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_ms)]
        since: Option<i64>,
        /// Only this exception class.
        #[arg(long = "class", value_name = "CLASS")]
        class: Option<String>,
        /// Only snapshots from this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Delete snapshots: by id, by age, by fingerprint, or down to a retention limit.
    Purge {
        /// Delete this snapshot (id or unambiguous prefix).
        #[arg(long)]
        id: Option<String>,
        /// Delete snapshots reported longer ago than this (30d, 12h).
        #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_ms)]
        older_than: Option<i64>,
        /// Delete every snapshot with this fingerprint (see `list --group --json`).
        #[arg(long)]
        fingerprint: Option<String>,
        /// Keep only the newest N snapshots.
        #[arg(long, value_name = "N")]
        keep_count: Option<u64>,
        /// Keep only the newest snapshots that fit in this many bytes.
        #[arg(long, value_name = "BYTES")]
        keep_bytes: Option<u64>,
    },
    /// Show one snapshot: the exception, its causes, then every frame with source, self,
    /// locals and instance variables.
    Show {
        /// The snapshot id, or an unambiguous prefix of it.
        id: String,
        /// Print the whole snapshot as JSON.
        #[arg(long)]
        json: bool,
        /// How deep to expand objects in the text view.
        #[arg(long, default_value_t = 4)]
        depth: usize,
        /// How many items of each array or hash to print in the text view.
        #[arg(long, default_value_t = 20)]
        items: usize,
    },
    /// Open IRB back in a snapshot's frame: self and locals restored as Ruby objects.
    #[command(
        after_help = "In the console: frames, frame N, up, down, snapshot; exit leaves.\n\
        Load your app first so its classes exist (else objects come back as marked stand-ins):\n  \
        rbscope restore ID -r ./config/environment\n\
        From a running console: Rbscope.restore(\"ID\")"
    )]
    Restore {
        /// The snapshot id, or an unambiguous prefix of it.
        id: String,
        /// The frame to start in (0 = innermost; see `rbscope show`).
        #[arg(long, default_value_t = 0)]
        frame: usize,
        /// Restore a snapshot that is unsigned or not signed with this store's key.
        #[arg(long)]
        trust: bool,
        /// Ruby files to require first (your app), like `ruby -r`.
        #[arg(short = 'r', long = "require", value_name = "FILE")]
        requires: Vec<String>,
    },
    /// Make a signing key file for a fleet store (give the same file to every writer and to
    /// whoever restores, with RBSCOPE_STORE_KEY or --key).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print every Ruby thread's stack of a running process (through its agent, or read from
    /// outside) or of a core file.
    #[command(
        long_about = "Print every Ruby thread's stack. Frames show class paths, # / . / \
            $singleton, {block} depth, parameter names and the line each frame is executing.\n\n\
            With -p PID, a process that runs the rbscope agent is asked through its control \
            socket: the agent's Ruby thread reads every other thread while it holds the VM \
            (its output says for how long). If the agent does not answer within a second \
            (native code holding the GVL), or the process has no agent, the stacks are read \
            from outside instead, and the output says why.\n\n\
            With --remote the process is always read from outside, straight from the VM's \
            memory: no agent, no code run in the target. It is paused for the read (well under \
            a millisecond for tens of threads; --no-pause reads it running and re-reads any \
            thread whose stack changed meanwhile). With --core FILE --ruby BIN the same is \
            read from a core file (gcore PID), with BIN the ruby program that dumped it.\n\n\
            Reading another process from outside needs the right to trace it: the same user \
            with kernel.yama.ptrace_scope=0, or root / CAP_SYS_PTRACE.",
        after_help = "Example: rbscope stacks -p 4242\n         sudo rbscope stacks -p 4242 --remote --no-pause --json\n         gcore -o /tmp/core 4242 && rbscope stacks --core /tmp/core.4242 --ruby /usr/bin/ruby3.1"
    )]
    Stacks {
        /// The process to read.
        #[arg(short, long, conflicts_with = "core")]
        pid: Option<i32>,
        /// Read the process's memory from outside (process_vm_readv), without asking its agent.
        #[arg(long)]
        remote: bool,
        /// When read from outside, do not pause the process: read it running, re-reading
        /// threads whose stack changed.
        #[arg(long)]
        no_pause: bool,
        /// A core file to read instead of a process.
        #[arg(long, value_name = "FILE", requires = "ruby")]
        core: Option<PathBuf>,
        /// The ruby program that wrote the core file (as installed on this machine).
        #[arg(long, value_name = "BIN")]
        ruby: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load and start the agent in a running Ruby process that never loaded it, at a safe point
    /// of its VM; then trace, eval (if allowed), stacks and heap work on it.
    #[command(
        long_about = "Load and start the agent in a running Ruby process that never loaded it. The \
            process's main thread is stopped with ptrace for a few milliseconds and made to queue \
            one of Ruby's postponed jobs (made to be queued from any instant); its registers are \
            put back exactly; Ruby runs the job (`require \"rbscope\"; Rbscope.start`) at its next \
            safe point, and a thread blocked in a system call is woken the way Ruby wakes its own \
            threads, without the app noticing. Needs the right to ptrace the process (same user \
            and kernel.yama.ptrace_scope 0, or root) and the rbscope gem for the process's Ruby.",
        after_help = "Example: rbscope inject -p 4242 && rbscope trace -p 4242 -m 'Order#total'"
    )]
    Inject {
        /// The process.
        #[arg(short, long)]
        pid: u32,
        /// How long to wait for the agent to answer (loading competes with a busy main thread
        /// for the GVL: seconds).
        #[arg(long, default_value = "15s", value_parser = crate::duration::parse_ms)]
        timeout: i64,
    },
    /// List the Ruby processes you may attach to, and whether each runs the rbscope agent.
    Ps {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Trace method calls in a running process, nested per thread and timed.
    #[command(
        long_about = "Trace method calls in a running process through its agent, without \
            restarting it. Output: one line per call that made no traced calls \
            (`Foo#bar <12.0µs>`); a call that did opens a line, its calls follow \
            indented, and a closing line gives its duration. Durations exclude the tracer's \
            own time. Nesting is per thread (--show-threads prefixes each line with the \
            thread's OS id and name).\n\n\
            Selectors (-m, repeatable): Class#method, Class.method (singleton), Class# or \
            Class. (every method of its own), or a bare method name (that method on every \
            class that defines it); a leading ? makes one optional (reported, not an error, \
            when it names nothing loaded). --preset NAME adds a library's selectors (built-in \
            data files) and -c FILE reads them from a file, one per line. C methods are traced \
            by wrapping them, removed on detach. \
            Values to capture at call time go in parentheses: \
            'Foo#bar(self, arg, @ivar, arg.name.size)' -- self, arguments by name, instance \
            variables, then argument-less methods; never arbitrary code.\n\n\
            Only what is asked for is hooked. Events go through a bounded buffer: the app \
            never waits for this client; if it cannot keep up, events are dropped and the \
            count is printed. Ctrl-C (or --for) detaches; if this command is killed, the \
            agent detaches by itself.",
        after_help = "Examples:\n  rbscope trace -p 4242 -m 'User#save' -m 'Net::HTTP#request'\n  rbscope trace -p 4242 --preset activerecord --preset net-http -c my-selectors.txt\n  rbscope trace -p 4242 -m 'Foo#bar(self, arg, @ivar)' --show-threads\n  rbscope trace -p 4242 --slow 50\n  rbscope trace -p 4242 -f --for 2s -o trace.json --format chrome"
    )]
    Trace {
        /// The process to trace (it must run the rbscope agent).
        #[arg(short, long, required_unless_present = "ps", conflicts_with = "ps")]
        pid: Option<u32>,
        /// Trace every Ruby process of yours whose command line contains PATTERN (and those
        /// that start later, such as restarted puma workers); lines start with [PID].
        #[arg(long, value_name = "PATTERN")]
        ps: Option<String>,
        /// Trace every Ruby method call (C methods only when selected with -m).
        #[arg(short = 'f', long)]
        firehose: bool,
        #[command(flatten)]
        selection: Selection,
        /// Only print calls that took at least this many milliseconds (of the selected
        /// methods, or of every Ruby method without -m), indented by stack depth.
        #[arg(long, value_name = "MS")]
        slow: Option<u32>,
        /// Print each garbage collection with its duration (and marking's).
        #[arg(long)]
        gc: bool,
        #[command(flatten)]
        out: TraceOutput,
        /// Trace even though YJIT is on in a Ruby 3.1 process (it stays slower until restart).
        #[arg(long)]
        force: bool,
        /// Detach after this long (e.g. 10s, 2m) instead of waiting for Ctrl-C.
        #[arg(long = "for", value_name = "DURATION", value_parser = crate::duration::parse_ms)]
        duration: Option<i64>,
    },
    /// Evaluate Ruby code inside a running process and print the result's inspect.
    #[command(
        long_about = "Evaluate Ruby code inside a running process (through its agent) and \
            print the result's inspect on stdout, whole. An exception is printed with its \
            backtrace on stderr, exit status 1.\n\n\
            The app must allow it: Rbscope.start(allow_eval: true), or RBSCOPE_ALLOW_EVAL=1 \
            in its environment. The code runs on a new thread of its own (no app thread is \
            interrupted or woken), inside Rails.application.executor when Rails is loaded, \
            with the app's privileges. Past --timeout the thread is killed.",
        after_help = "Example: rbscope eval -p 4242 'User.count'"
    )]
    Eval {
        /// The process to evaluate in.
        #[arg(short, long)]
        pid: u32,
        /// The Ruby code.
        code: String,
        /// Give up (and kill the eval's thread) after this long.
        #[arg(long, default_value = "10s", value_parser = crate::duration::parse_ms)]
        timeout: i64,
    },
    /// An interactive Ruby console inside a running process (the app must allow eval).
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
    Console {
        /// The process to open a console in.
        #[arg(short, long)]
        pid: u32,
        /// Stop any one evaluation after this long.
        #[arg(long, default_value = "10m", value_parser = crate::duration::parse_ms)]
        timeout: i64,
    },
    /// A sampling profile of every thread of a running Ruby process (no agent needed).
    #[command(
        long_about = "A sampling profile of every thread of a running Ruby process, read from \
            outside (like `rbscope stacks --remote`: no agent, the process is never paused or \
            signalled). Each sample reads every thread's stack with better-backtrace labels; \
            wall time (default) counts every thread in every sample, --cpu only the threads \
            that are running. Written as a flame graph SVG (opens in a browser), speedscope \
            JSON (https://www.speedscope.app) or collapsed stacks (one line per stack and \
            count). Reading another process needs the right to trace it (same user with \
            kernel.yama.ptrace_scope=0, or root / CAP_SYS_PTRACE).",
        after_help = "Example: rbscope record -p 4242 --duration 30s -o profile.svg\n         rbscope record -p 4242 --duration 10s --format speedscope -o profile.json --cpu"
    )]
    Record {
        /// The process to sample.
        #[arg(short, long)]
        pid: i32,
        /// How long to sample (Ctrl-C stops early and still writes the profile).
        #[arg(long, default_value = "30s", value_parser = crate::duration::parse_ms)]
        duration: i64,
        /// Samples per second.
        #[arg(long, default_value_t = 99)]
        rate: u32,
        /// Where to write the profile (mode 0600).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// flamegraph (SVG), speedscope (JSON) or collapsed (text).
        #[arg(long, default_value = "flamegraph", value_parser = parse_record_format)]
        format: crate::commands::RecordFormat,
        /// Count only running threads (CPU time), not every thread (wall time).
        #[arg(long)]
        cpu: bool,
    },
    /// One readable report of a running process's memory: RSS, the Ruby heap, malloc, GC
    /// figures and live objects by type (through its agent).
    #[command(
        long_about = "One readable report of a running process's memory, through its agent: the \
            kernel's figures (resident, peak, swap, virtual), the Ruby heap (pages, slots live \
            and free, old objects), malloc (glibc: in use, outside the Ruby heap, free in \
            arenas), what the GC has done, and live objects by type. The agent holds the VM \
            while it counts objects (about a millisecond per hundred thousand).",
        after_help = "Example: rbscope memory -p 4242\n         rbscope memory -p 4242 --json"
    )]
    Memory {
        /// The process to report on (it must run the rbscope agent).
        #[arg(short, long)]
        pid: u32,
        /// Print JSON instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Heap dumps: analyse ObjectSpace.dump_all files (census, leaks across dumps, why an
    /// object is alive, what retains the memory, duplicated strings, SQL), or dump, count and
    /// watch a running process's heap.
    #[command(
        long_about = "Analyse heap dumps: the JSON lines ObjectSpace.dump_all writes (Ruby 3.1 to \
            4.0), plain or compressed with gzip or zstd. No Ruby is needed. Lines Ruby wrote as \
            invalid JSON (unescaped quotes in file names) are read anyway and counted. Every \
            subcommand prints text, or JSON with --json; a progress bar appears on a terminal \
            when reading takes more than a second.",
        after_help = "Example: rbscope heap summary heap.json\n         rbscope heap diff 1.json 2.json 3.json\n         rbscope heap path 3.json 0x7f8a1c2b3d40\n         rbscope heap top heap.json --svg retained.svg\n         rbscope heap import heap.json --sqlite heap.db"
    )]
    Heap {
        #[command(subcommand)]
        command: HeapCommand,
    },
    /// A web UI: browse snapshots, heap dumps, traces and profiles in the browser.
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
    Ui {
        /// Heap dumps, traces, profiles and saved analyses to open (told apart by content).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Where to listen. A non-loopback address requires the token.
        #[arg(long, default_value = "127.0.0.1:7070", value_name = "ADDR:PORT")]
        listen: String,
        /// Require the token on a loopback address too (on a machine shared with other users).
        #[arg(long)]
        token: bool,
    },
    /// Check the set-up: the store, the Ruby agent, and with -p a running process's agent.
    Doctor {
        /// A running process to ask for its agent's state and counters.
        #[arg(short, long)]
        pid: Option<u32>,
    },
}

/// What to trace (`rbscope trace`, `rbscope run`): selectors given one by one, by preset, or
/// in files.
#[derive(clap::Args, Debug)]
pub struct Selection {
    /// A method selector, optionally with values to capture; repeatable.
    #[arg(short = 'm', long = "method", value_name = "SELECTOR")]
    pub methods: Vec<String>,
    /// Selectors for a library (its data file, built in); repeatable. A selector for
    /// something the app has not loaded is reported as not traced.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(crate::presets::NAMES))]
    pub preset: Vec<String>,
    /// Read selectors from FILE: one per line, `#` comments, a leading `?` marks one
    /// optional; repeatable.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
}

impl Selection {
    /// Every selector: those given with -m, then the presets', then the files'.
    pub fn selectors(&self) -> anyhow::Result<Vec<String>> {
        let mut all = self.methods.clone();
        for name in &self.preset {
            all.extend(crate::presets::preset(name).unwrap_or_default());
        }
        for file in &self.config {
            all.extend(crate::presets::file(file)?);
        }
        Ok(all)
    }
}

/// Where and how a trace is written.
#[derive(clap::Args, Debug)]
pub struct TraceOutput {
    /// Prefix each line with the thread's OS id and name.
    #[arg(long)]
    pub show_threads: bool,
    /// Write the trace to FILE (mode 0600) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// text (indented tree), jsonl (one event per line), or chrome (open in Perfetto).
    #[arg(long, default_value = "text", value_parser = parse_format)]
    pub format: rbscope_trace::render::Format,
}

/// How a heap dump is read (every `rbscope heap` subcommand).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct HeapRead {
    /// Threads to read with (default: one per core).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Analyse a dump whose last record is cut off (a dump that was not finished), using the
    /// complete records before it.
    #[arg(long)]
    pub allow_truncated: bool,
}

#[derive(Subcommand, Debug)]
pub enum HeapCommand {
    /// Objects and bytes by type, by class, by allocation site (when allocation tracing was on)
    /// and by GC generation; the roots; the dump's format.
    Summary {
        /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
        dump: PathBuf,
        /// Rows per table.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        read: HeapRead,
    },
    /// Leak hunt across two or three dumps of one process, oldest first: per class and
    /// allocation site, counts and bytes in each dump and the objects that are new in the
    /// second (and still there in the third), with sample addresses for `heap path`.
    Diff {
        /// Two or three dumps of one process, oldest first.
        #[arg(required = true, num_args = 2..=3, value_name = "DUMP")]
        dumps: Vec<PathBuf>,
        /// Groups to show.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        read: HeapRead,
    },
    /// Why an object is alive: the shortest chain of references from a GC root to it, and one
    /// through each other object that references it.
    Path {
        /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
        dump: PathBuf,
        /// The object's address, as the dump writes it (0x7f...).
        address: String,
        /// Paths to show at most.
        #[arg(short = 'n', long, default_value_t = 3)]
        limit: usize,
        #[command(flatten)]
        read: HeapRead,
    },
    /// What retains the memory: the dominator tree from the top (an object's retained size is
    /// what would be freed without it), retained bytes by class, and --from to drill down.
    Top {
        /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
        dump: PathBuf,
        /// Start the tree at this object (an address from an earlier run) instead of the roots.
        #[arg(long, value_name = "ADDRESS")]
        from: Option<String>,
        /// Levels of the tree to print.
        #[arg(long, default_value_t = 3)]
        depth: usize,
        /// Children per object, and rows of the by-class table.
        #[arg(short = 'n', long, default_value_t = 10)]
        limit: usize,
        /// Also write a flame graph (SVG, mode 0600) of retained size by class path.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        #[command(flatten)]
        read: HeapRead,
    },
    /// Duplicated strings (the same text in many String objects) and the bytes they waste.
    Strings {
        /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
        dump: PathBuf,
        /// Texts to show.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        read: HeapRead,
    },
    /// Dump a running process's heap (through its agent) from a forked child: the app pauses
    /// only for the fork. Prints the pause, the object count, the size and the file.
    #[command(
        after_help = "Example: rbscope heap dump -p 4242\n         rbscope heap dump -p 4242 -o /var/tmp/app.json.gz --gzip"
    )]
    Dump {
        /// The process (it must run the rbscope agent).
        #[arg(short, long)]
        pid: u32,
        /// Where to write, as the process sees it (its user, its working directory); mode
        /// 0600, never overwritten. Default: a new file in the agent's private directory.
        #[arg(short, long, value_name = "FILE")]
        output: Option<String>,
        /// Compress with gzip.
        #[arg(long)]
        gzip: bool,
        /// Run a full GC first (the app pauses for it too): only live objects are written.
        #[arg(long)]
        gc: bool,
        /// Write from the process itself instead of a forked child (where fork is impossible):
        /// the app pauses for the whole dump.
        #[arg(long)]
        in_process: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Count a running process's live objects: totals by VM type, and instances per class
    /// under the namespaces or classes given (every class when none is given).
    Count {
        #[arg(short, long)]
        pid: u32,
        /// Namespaces or classes: `MyApp` counts MyApp and MyApp::*.
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Classes to show.
        #[arg(short = 'n', long, default_value_t = 30)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Turn allocation tracing on or off in a running process, so that later dumps carry
    /// each object's file, line and GC generation (it costs the app some speed while on).
    Track {
        #[arg(short, long)]
        pid: u32,
        #[arg(value_parser = ["start", "stop"])]
        action: String,
    },
    /// Dump a running process's heap N times, EVERY apart, then (with --diff) compare the
    /// dumps: the leak hunt in one command.
    #[command(after_help = "Example: rbscope heap watch -p 4242 --every 60s -n 3 --diff")]
    Watch {
        #[arg(short, long)]
        pid: u32,
        /// Time between dumps (30s, 5m).
        #[arg(long, default_value = "60s", value_parser = crate::duration::parse_ms)]
        every: i64,
        /// Dumps to take (2 or more; the diff uses the first, the middle and the last).
        #[arg(short = 'n', long = "count", default_value_t = 3)]
        count: usize,
        /// Compare the dumps when they are taken (`rbscope heap diff`).
        #[arg(long)]
        diff: bool,
        /// A directory for the dumps, as the process sees it (default: the agent's private
        /// directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<String>,
        /// Run a full GC before each dump.
        #[arg(long)]
        gc: bool,
        /// Groups to show in the diff.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write the dump as tables for SQL: objects, refs (one row per reference), roots.
    #[command(group(clap::ArgGroup::new("to").required(true).args(["sqlite", "parquet"])))]
    Import {
        /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
        dump: PathBuf,
        /// A new SQLite database file (mode 0600).
        #[arg(long, value_name = "FILE")]
        sqlite: Option<PathBuf>,
        /// A directory for objects.parquet, refs.parquet and roots.parquet.
        #[arg(long, value_name = "DIR")]
        parquet: Option<PathBuf>,
        #[command(flatten)]
        read: HeapRead,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a new random 32-byte key to FILE (mode 0600); never replaces an existing file.
    New {
        /// Where to write it.
        file: PathBuf,
    },
}

impl Cli {
    pub fn store_location(&self) -> anyhow::Result<rbscope_store::StoreLocation> {
        Ok(rbscope_store::StoreLocation::parse(self.store.as_deref())?)
    }
}

fn parse_format(s: &str) -> Result<rbscope_trace::render::Format, String> {
    s.parse()
}

fn parse_record_format(s: &str) -> Result<crate::commands::RecordFormat, String> {
    s.parse()
}
