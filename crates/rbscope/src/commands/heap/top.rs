//! What retains the memory (`rbscope heap top`): the dominator tree, by class, the flame graph.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context};
use rbscope_heap::detail;
use rbscope_heap::graph::HeapGraph;
use rbscope_heap::top::Retention;

use super::HeapRead;
use super::{bytes, num, open, print_json, warn_unreadable, Bar};
use crate::views::heap::top::{top_json, top_view, TopView};
use crate::views::heap::{no_object, node_line, parse_address};

/// What retains the memory: the dominator tree from the top (an object's retained size is
/// what would be freed without it), retained bytes by class, and --from to drill down.
#[derive(clap::Args, Debug)]
pub struct Args {
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
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    top(
        &a.dump,
        a.from.as_deref(),
        a.depth,
        a.limit,
        a.svg.as_deref(),
        &a.read,
    )
}

fn top(
    dump_path: &Path,
    from: Option<&str>,
    depth: usize,
    limit: usize,
    svg: Option<&Path>,
    read: &HeapRead,
) -> anyhow::Result<i32> {
    let from_addr = from.map(parse_address).transpose()?;
    let bar = Bar::start();
    let dump = open(dump_path)?;
    let opts = bar.opts(read);
    let started = Instant::now();
    let g = HeapGraph::build(&dump, opts)?;
    warn_unreadable(dump_path, &g.stats);
    let start = match from_addr {
        Some(a) => Some(
            g.node(a)
                .ok_or_else(|| anyhow!(no_object(a, &dump_path.display().to_string())))?,
        ),
        None => None,
    };
    bar.phase("dominator tree");
    let ret = Retention::compute(&g);
    let computed = started.elapsed();
    if let Some(file) = svg {
        bar.phase("flame graph");
        write_svg(&g, &ret, file, dump_path)?;
    }
    let view = top_view(&g, &ret, start, depth, limit, &mut |wanted| {
        bar.phase("describing");
        Ok(detail::describe(&dump, opts, wanted)?)
    })?;
    drop(bar);
    let by_class = ret.by_class(&g);
    if read.json {
        return print_json(&top_json(
            &dump_path.display().to_string(),
            &g,
            &ret,
            start,
            &view,
            &by_class[..limit.min(by_class.len())],
            computed.as_secs_f64(),
        ));
    }
    let TopView {
        rows,
        chain,
        details,
    } = view;
    let reachable = ret.reachable();
    let unreachable = ret.unreachable(&g);
    let mut o = format!(
        "{}: {} objects reachable from the roots ({}), {} unreachable ({}); dominator tree in {:.2} s\n",
        dump_path.display(),
        num(reachable.count),
        bytes(reachable.bytes),
        num(unreachable.count),
        bytes(unreachable.bytes),
        computed.as_secs_f64()
    );
    if let Some((n, b)) = g.tracer {
        o += &format!(
            "note: the allocation tracer's own table ({:#x}, {}) is left out of retained sizes: it is the tracer's memory, not the app's\n",
            g.address[n as usize],
            bytes(b)
        );
    }
    if let Some(s) = start {
        o += &format!(
            "\n{}\nretains {} in {} objects",
            node_line(&g, &details, s),
            bytes(ret.retained(s)),
            num(ret.retained_count[s as usize] as u64)
        );
        if chain.is_empty() {
            o += if ret.dom.idom[s as usize] == rbscope_heap::dominators::UNREACHABLE {
                "; it is not reachable from any root\n"
            } else {
                "; no single object retains it (it hangs from the roots, or from more than one place)\n"
            };
        } else {
            o += "; it is retained by (nearest first):\n";
            for n in chain.iter().take(20) {
                o += &format!(
                    "  <- {:>10}  {}\n",
                    bytes(ret.retained(*n)),
                    node_line(&g, &details, *n)
                );
            }
            if chain.len() > 20 {
                o += &format!("  <- ... {} more\n", chain.len() - 20);
            }
        }
    }
    o += &format!(
        "\n{} (retained bytes, objects retained, object):\n",
        if start.is_some() {
            "what it retains"
        } else {
            "biggest retainers, the dominator tree from the roots"
        }
    );
    if rows.is_empty() {
        o += "  (nothing: it retains only itself)\n";
    }
    for (d, n) in &rows {
        o += &format!(
            "  {}{:>10} {:>10}  {}\n",
            "  ".repeat(*d),
            bytes(ret.retained(*n)),
            num(ret.retained_count[*n as usize] as u64),
            node_line(&g, &details, *n)
        );
    }
    o += "\nretained by class (outermost instances only, so nothing counts twice):\n";
    o += &format!("  {:>10}  {:>10}  class\n", "retained", "instances");
    for c in by_class.iter().take(limit) {
        o += &format!(
            "  {:>10}  {:>10}  {}\n",
            bytes(c.retained),
            num(c.instances),
            c.name
        );
    }
    o += "\ndrill down: rbscope heap top DUMP --from ADDRESS\n";
    print!("{o}");
    Ok(0)
}

fn write_svg(g: &HeapGraph, ret: &Retention, file: &Path, dump_path: &Path) -> anyhow::Result<()> {
    let stacks = ret.class_stacks(g, 64);
    let lines: Vec<String> = stacks.iter().map(|(s, w)| format!("{s} {w}")).collect();
    let f =
        crate::output::create(file).with_context(|| format!("cannot write {}", file.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!(
        "rbscope heap top: retained size by class path, {}",
        dump_path.display()
    );
    opts.count_name = "bytes".into();
    opts.direction = inferno::flamegraph::Direction::Inverted;
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut w)
        .map_err(|e| anyhow!("cannot draw the flame graph: {e}"))?;
    w.flush()
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
