//! Heap dumps in the UI. A dump is analysed once, in the background, when a page first asks
//! for it (one at a time: each analysis holds the dump's graph in memory); until then its
//! endpoints answer 202 with the progress. After that every view is computed from the graph
//! and the dominator tree in memory, and the few records a view shows are looked up in the
//! dump once and cached, so views come back in well under a second on a 2M-object heap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rbscope_heap::detail::{self, Detail};
use rbscope_heap::graph::HeapGraph;
use rbscope_heap::input::{Dump, Progress, ScanOptions};
use rbscope_heap::paths::Reach;
use rbscope_heap::top::{ClassRetained, Retention};
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{json, Value};

use super::files::{FileEntry, Kind};
use super::http::{Query, Reply};
use crate::views::heap::{self as views, diff, parse_address, path, summary, top};

/// The dump-wide figures and views kept after the analysis.
pub struct Ready {
    dump: Dump,
    name: String,
    graph: HeapGraph,
    ret: Retention,
    reach: Reach,
    by_class: Vec<ClassRetained>,
    summary: Value,
    details: Mutex<FxHashMap<u64, Detail>>,
    seconds: f64,
}

enum State {
    Waiting,
    Analysing,
    Ready(Arc<Ready>),
    Failed(String),
}

struct Analysis {
    progress: Progress,
    state: RwLock<State>,
}

/// A diff being computed or done.
enum DiffState {
    Running,
    Done(Arc<rbscope_heap::diff::Diff>),
    Failed(String),
}

#[derive(Default)]
pub struct Heaps {
    analyses: Mutex<HashMap<String, Arc<Analysis>>>,
    diffs: Mutex<HashMap<String, Arc<RwLock<DiffState>>>>,
    /// Held by the analysis that runs: one at a time.
    running: Arc<Mutex<()>>,
}

/// Most details kept in the cache before it starts afresh.
const DETAIL_CACHE: usize = 200_000;

fn opts(progress: Option<&Progress>) -> ScanOptions<'_> {
    ScanOptions {
        jobs: rbscope_heap::input::default_jobs(),
        progress,
        // A dump cut off (its writer died) is still worth looking at; the page says so.
        allow_truncated: true,
    }
}

impl Ready {
    fn describe(&self, wanted: &FxHashSet<u64>) -> anyhow::Result<FxHashMap<u64, Detail>> {
        let mut cache = self.details.lock().unwrap_or_else(|p| p.into_inner());
        let missing: FxHashSet<u64> = wanted
            .iter()
            .filter(|a| !cache.contains_key(a))
            .copied()
            .collect();
        if !missing.is_empty() {
            let found = detail::describe(&self.dump, opts(None), &missing)?;
            if cache.len() + found.len() > DETAIL_CACHE {
                cache.clear();
            }
            cache.extend(found);
        }
        Ok(wanted
            .iter()
            .filter_map(|a| cache.get(a).map(|d| (*a, d.clone())))
            .collect())
    }
}

impl Heaps {
    /// The analysis of `file`, started if it was not; `Err` is the answer to give meanwhile
    /// (202 with the progress, or the failure).
    pub fn ready(&self, file: &FileEntry) -> Result<Arc<Ready>, Reply> {
        if file.kind != Kind::Heap {
            return Err(Reply::error(
                404,
                format!("{} ({}) is not a heap dump", file.name, file.id),
            ));
        }
        let analysis = {
            let mut all = self.analyses.lock().unwrap_or_else(|p| p.into_inner());
            all.entry(file.id.clone())
                .or_insert_with(|| {
                    Arc::new(Analysis {
                        progress: Progress::default(),
                        state: RwLock::new(State::Waiting),
                    })
                })
                .clone()
        };
        {
            let state = analysis.state.read().unwrap_or_else(|p| p.into_inner());
            match &*state {
                State::Ready(r) => return Ok(r.clone()),
                State::Failed(e) => return Err(Reply::error(422, e.clone())),
                State::Analysing => return Err(analysing(&analysis.progress, "analysing")),
                State::Waiting => {}
            }
        }
        let mut state = analysis.state.write().unwrap_or_else(|p| p.into_inner());
        if matches!(*state, State::Waiting) {
            *state = State::Analysing;
            let (a, path, name, running) = (
                analysis.clone(),
                file.path.clone(),
                file.name.clone(),
                self.running.clone(),
            );
            std::thread::spawn(move || {
                let _one_at_a_time = running.lock().unwrap_or_else(|p| p.into_inner());
                // A bug in an analysis must not leave the page polling forever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    analyse(&path, name, &a.progress)
                }))
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "the analysis failed (a bug in rbscope: please report it)"
                    ))
                });
                let mut state = a.state.write().unwrap_or_else(|p| p.into_inner());
                *state = match result {
                    Ok(r) => State::Ready(Arc::new(r)),
                    Err(e) => State::Failed(format!("{}: {}", path.display(), crate::one_line(&e))),
                };
            });
        }
        Err(analysing(&analysis.progress, "analysing"))
    }

    /// For `/api/info`: where the analysis of `id` is.
    pub fn state_json(&self, id: &str) -> (String, Option<String>, Option<f64>) {
        let all = self.analyses.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = all.get(id) else {
            return ("waiting".into(), None, None);
        };
        let state = a.state.read().unwrap_or_else(|p| p.into_inner());
        match &*state {
            State::Waiting => ("waiting".into(), None, None),
            State::Analysing => ("analysing".into(), None, fraction(&a.progress)),
            State::Ready(_) => ("ready".into(), None, None),
            State::Failed(e) => ("failed".into(), Some(e.clone()), None),
        }
    }

    /// `GET /api/heap/FID` and its views.
    pub fn view(&self, file: &FileEntry, view: &str, q: &Query) -> Reply {
        let r = match self.ready(file) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let result = match view {
            "" => Ok(json!({
                "state": "ready",
                "dump": r.name,
                "objects": r.graph.node_count(),
                "reachable": views::tally_json(r.ret.reachable()),
                "unreachable": views::tally_json(r.ret.unreachable(&r.graph)),
                "seconds": r.seconds,
                "truncated": r.graph.stats.truncated_at.is_some(),
            })),
            "summary" => Ok(r.summary.clone()),
            "top" => top_view(&r, q),
            "path" => path_view(&r, q),
            _ => return Reply::error(404, format!("there is no heap view {view:?}")),
        };
        match result {
            Ok(v) => Reply::ok(&v),
            Err(reply) => reply,
        }
    }

    /// `GET /api/diff?files=f1,f2[,f3]`.
    pub fn diff(&self, files: &[&FileEntry], q: &Query) -> Reply {
        if !(2..=3).contains(&files.len()) {
            return Reply::error(400, "a diff takes 2 or 3 heap dumps: files=f1,f2[,f3]");
        }
        if let Some(f) = files.iter().find(|f| f.kind != Kind::Heap) {
            return Reply::error(400, format!("{} ({}) is not a heap dump", f.name, f.id));
        }
        let limit = match q.number("limit", 100, 10_000) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let key: Vec<&str> = files.iter().map(|f| f.id.as_str()).collect();
        let key = key.join(",");
        let slot = {
            let mut all = self.diffs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = all.get(&key) {
                s.clone()
            } else {
                let slot = Arc::new(RwLock::new(DiffState::Running));
                all.insert(key.clone(), slot.clone());
                let paths: Vec<_> = files.iter().map(|f| f.path.clone()).collect();
                let (s, running) = (slot.clone(), self.running.clone());
                std::thread::spawn(move || {
                    let _one_at_a_time = running.lock().unwrap_or_else(|p| p.into_inner());
                    let result =
                        std::panic::catch_unwind(|| -> anyhow::Result<rbscope_heap::diff::Diff> {
                            let dumps = paths
                                .iter()
                                .map(|p| Dump::open(p))
                                .collect::<Result<Vec<_>, _>>()?;
                            let refs: Vec<&Dump> = dumps.iter().collect();
                            Ok(rbscope_heap::diff::diff(&refs, opts(None))?)
                        })
                        .unwrap_or_else(|_| {
                            Err(anyhow::anyhow!(
                                "the diff failed (a bug in rbscope: please report it)"
                            ))
                        });
                    *s.write().unwrap_or_else(|p| p.into_inner()) = match result {
                        Ok(d) => DiffState::Done(Arc::new(d)),
                        Err(e) => DiffState::Failed(crate::one_line(&e)),
                    };
                });
                slot
            }
        };
        let state = slot.read().unwrap_or_else(|p| p.into_inner());
        match &*state {
            DiffState::Running => analysing(&Progress::default(), "comparing"),
            DiffState::Failed(e) => Reply::error(422, e.clone()),
            DiffState::Done(d) => {
                let mut v = diff::diff_json(d, limit, 0.0);
                v["files"] = json!(files.iter().map(|f| &f.id).collect::<Vec<_>>());
                Reply::ok(&v)
            }
        }
    }
}

fn top_view(r: &Ready, q: &Query) -> Result<Value, Reply> {
    let start = match q.get("from") {
        None => None,
        Some(a) => Some(node(r, a)?),
    };
    let depth = q.number("depth", 1, 4)?.max(1);
    let limit = q.number("limit", 50, 500)?.max(1);
    let view = top::top_view(&r.graph, &r.ret, start, depth, limit, &mut |w| {
        r.describe(w)
    })
    .map_err(|e| Reply::error(422, crate::one_line(&e)))?;
    Ok(top::top_json(
        &r.name,
        &r.graph,
        &r.ret,
        start,
        &view,
        &r.by_class[..limit.min(r.by_class.len())],
        r.seconds,
    ))
}

fn path_view(r: &Ready, q: &Query) -> Result<Value, Reply> {
    let Some(a) = q.get("address") else {
        return Err(Reply::error(400, "give the object: path?address=0x..."));
    };
    let target = node(r, a)?;
    let limit = q.number("limit", 3, 20)?.max(1);
    let view = path::path_view(&r.graph, &r.reach, target, limit, &mut |w| r.describe(w))
        .map_err(|e| Reply::error(422, crate::one_line(&e)))?;
    Ok(path::path_json(&r.graph, &r.reach, target, &view))
}

fn node(r: &Ready, a: &str) -> Result<u32, Reply> {
    let addr = parse_address(a).map_err(|e| Reply::error(400, crate::one_line(&e)))?;
    r.graph
        .node(addr)
        .ok_or_else(|| Reply::error(404, views::no_object(addr, &r.name)))
}

fn analyse(path: &std::path::Path, name: String, progress: &Progress) -> anyhow::Result<Ready> {
    let started = Instant::now();
    let dump = Dump::open(path)?;
    let graph = HeapGraph::build(&dump, opts(Some(progress)))?;
    let ret = Retention::compute(&graph);
    let reach = Reach::compute(&graph);
    let by_class = ret.by_class(&graph);
    let seconds = started.elapsed().as_secs_f64();
    let s = rbscope_heap::summary::summarize(&dump, opts(None))?;
    let summary = summary::summary_json(&name, dump.file_len(), &s, 50, seconds);
    let ready = Ready {
        dump,
        name,
        graph,
        ret,
        reach,
        by_class,
        summary,
        details: Mutex::new(FxHashMap::default()),
        seconds,
    };
    // The first view (the biggest retainers, two levels) is looked up now, with the analysis.
    let first = top::top_view(&ready.graph, &ready.ret, None, 2, 60, &mut |w| {
        ready.describe(w)
    })?;
    drop(first);
    Ok(ready)
}

fn fraction(p: &Progress) -> Option<f64> {
    use std::sync::atomic::Ordering;
    let total = p.total.load(Ordering::Relaxed);
    (total > 0).then(|| (p.done.load(Ordering::Relaxed) as f64 / total as f64).min(1.0))
}

fn analysing(p: &Progress, what: &str) -> Reply {
    Reply::json(202, &json!({"state": what, "progress": fraction(p)}))
}
