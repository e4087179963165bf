//! What retains the memory (`rbscope heap top`): the dominator tree, by class, the flame graph.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context};
use rbscope_heap::detail::{self, Detail};
use rbscope_heap::graph::{HeapGraph, NodeId};
use rbscope_heap::top::{ClassRetained, Retention};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{json, Value};

use super::path::{node_json, node_line};
use super::HeapRead;
use super::{bytes, num, open, parse_address, print_json, tally_json, warn_unreadable, Bar};

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
        Some(a) => Some(g.node(a).ok_or_else(|| {
            anyhow!(
                "there is no object at {a:#x} in {} (an address is only valid in the dump it came from)",
                dump_path.display()
            )
        })?),
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

/// What `heap top` shows (the CLI and `rbscope ui` both print it).
pub(crate) struct TopView {
    /// The dominator tree under the start, depth-first, `limit` children per node.
    pub rows: Vec<(usize, NodeId)>,
    /// The start's dominators, nearest first.
    pub chain: Vec<NodeId>,
    pub details: FxHashMap<u64, Detail>,
}

/// The dominator tree under `start` (the roots when None), `depth` levels of at most `limit`
/// children; `describe` gives the details of the objects to show.
pub(crate) fn top_view(
    g: &HeapGraph,
    ret: &Retention,
    start: Option<NodeId>,
    depth: usize,
    limit: usize,
    describe: &mut super::Describe,
) -> anyhow::Result<TopView> {
    let mut rows: Vec<(usize, NodeId)> = Vec::new();
    let mut stack: Vec<(usize, NodeId)> = ret
        .children(start)
        .iter()
        .take(limit)
        .rev()
        .map(|n| (0usize, *n))
        .collect();
    while let Some((d, n)) = stack.pop() {
        rows.push((d, n));
        if d + 1 < depth {
            stack.extend(
                ret.children(Some(n))
                    .iter()
                    .take(limit)
                    .rev()
                    .map(|c| (d + 1, *c)),
            );
        }
    }
    let chain = start.map(|s| ret.dominators_of(s)).unwrap_or_default();
    let mut wanted: FxHashSet<u64> = rows.iter().map(|(_, n)| g.address[*n as usize]).collect();
    wanted.extend(chain.iter().take(20).map(|n| g.address[*n as usize]));
    if let Some(s) = start {
        wanted.insert(g.address[s as usize]);
    }
    let details = describe(&wanted)?;
    Ok(TopView {
        rows,
        chain,
        details,
    })
}

/// `heap top --json`.
pub(crate) fn top_json(
    dump: &str,
    g: &HeapGraph,
    ret: &Retention,
    start: Option<NodeId>,
    v: &TopView,
    by_class: &[ClassRetained],
    seconds: f64,
) -> Value {
    let details = &v.details;
    json!({
        "dump": dump,
        "reachable": tally_json(ret.reachable()),
        "unreachable": tally_json(ret.unreachable(g)),
        "allocation_tracer": g.tracer.map(|(n, b)| json!({"address": format!("{:#x}", g.address[n as usize]), "bytes": b})),
        "dangling_references": g.dangling_refs,
        "from": start.map(|s| json!({
            "object": node_json(g, details, s),
            "retained": ret.retained(s),
            "retained_objects": ret.retained_count[s as usize],
            "dominators": v.chain.iter().take(20).map(|n| node_json(g, details, *n)).collect::<Vec<_>>(),
        })),
        "tree": v.rows.iter().map(|(d, n)| {
            let mut j = node_json(g, details, *n);
            j["depth"] = json!(d);
            j["retained"] = json!(ret.retained(*n));
            j["retained_objects"] = json!(ret.retained_count[*n as usize]);
            j["children"] = json!(ret.children(Some(*n)).len());
            j
        }).collect::<Vec<_>>(),
        "by_class": by_class.iter().map(|c| json!({
            "class": c.name, "instances": c.instances, "retained": c.retained,
        })).collect::<Vec<_>>(),
        "seconds": seconds,
    })
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
