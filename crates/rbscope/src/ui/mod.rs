//! `rbscope ui`: snapshots, heap dumps, traces and profiles in the browser.
//!
//! A small threaded HTTP server (tiny_http) in the CLI binary serves one HTML page, its
//! scripts (compiled in: [`assets`]) and a read-only JSON API ([`snapshots`], [`heap`], trace
//! and profile files). Its views are the CLI's own, from `crate::views` (`list --json`, `show
//! --json` and `heap summary/top/path/diff --json` give the same JSON the API does), so the
//! page and the terminal never disagree. Who may connect is decided in [`access`] before any
//! route runs.

mod access;
mod assets;
mod files;
mod heap;
mod http;
mod snapshots;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::json;

use access::{Access, Verdict};
use files::{FileEntry, Kind};
use http::{Query, Reply};

/// How `rbscope ui` was started.
pub struct Options {
    pub listen: String,
    pub token: bool,
    pub files: Vec<PathBuf>,
}

struct Server {
    access: Access,
    snapshots: snapshots::Snapshots,
    files: Vec<FileEntry>,
    heaps: heap::Heaps,
}

/// Threads answering requests (heap analyses run on threads of their own).
const WORKERS: usize = 4;

pub fn run(
    store: &crate::commands::store_args::StoreArgs,
    key: &crate::commands::store_args::KeyArgs,
    o: &Options,
) -> anyhow::Result<i32> {
    let addr: SocketAddr = o
        .listen
        .to_socket_addrs()
        .with_context(|| {
            format!(
                "--listen {:?} is not an address (use 127.0.0.1:7070)",
                o.listen
            )
        })?
        .next()
        .with_context(|| format!("--listen {:?} names no address", o.listen))?;
    for f in &o.files {
        if !f.exists() {
            bail!("{} does not exist", f.display());
        }
    }
    let loopback = addr.ip().is_loopback();
    let token = if o.token || !loopback {
        Some(access::new_token()?)
    } else {
        None
    };
    let server = Arc::new(Server {
        access: Access {
            loopback,
            token: token.clone(),
        },
        snapshots: snapshots::Snapshots::new(
            store.location()?,
            store.store.clone(),
            key.key.clone(),
        ),
        files: files::entries(&o.files),
        heaps: heap::Heaps::default(),
    });
    let http = tiny_http::Server::http(addr).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr}: {e} (another program may use that port: pick another with --listen 127.0.0.1:PORT)"
        )
    })?;
    let bound = http.server_addr().to_ip().unwrap_or(addr);
    let host = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let url = format!("http://{host}:{}/", bound.port());
    match &token {
        Some(t) => println!("rbscope ui: open {url}?token={t}"),
        None => println!("rbscope ui: open {url}"),
    }
    if !loopback {
        eprintln!(
            "rbscope ui: listening on {bound}, beyond this machine: anyone who can reach it needs the token; the traffic is not encrypted (put it behind TLS or an SSH tunnel)"
        );
    }
    for f in &server.files {
        if let Kind::Unknown(why) = &f.kind {
            eprintln!("rbscope ui: {} cannot be shown: {why}", f.path.display());
        }
    }
    println!("  store: {}", server.snapshots.location.describe());
    println!("  (Ctrl-C stops it)");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let http = Arc::new(http);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (http, server) = (http.clone(), server.clone());
            std::thread::spawn(move || {
                while let Ok(req) = http.recv() {
                    server.answer(req);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    Ok(0)
}

impl Server {
    fn answer(&self, req: tiny_http::Request) {
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let path = http::decode(path);
        let query = Query::parse(query);
        let header = |name: &'static str| {
            req.headers()
                .iter()
                .find(|h| h.field.equiv(name))
                .map(|h| h.value.as_str().to_string())
        };
        let reply = match self.access.check(
            header("Host").as_deref(),
            header("Cookie").as_deref(),
            header("Authorization").as_deref(),
            &path,
            &query,
        ) {
            Verdict::Answer(r) => r,
            Verdict::Allow if *req.method() != tiny_http::Method::Get => {
                Reply::error(405, "this server only answers GET requests")
                    .with_header("Allow", "GET".into())
            }
            Verdict::Allow => self.route(&path, &query),
        };
        let mut response =
            tiny_http::Response::from_data(reply.body.clone()).with_status_code(reply.status);
        for (k, v) in reply.all_headers() {
            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                response.add_header(h);
            }
        }
        // The browser may have gone; nothing to do about it.
        let _ = req.respond(response);
    }

    fn file(&self, id: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.id == id)
    }

    fn route(&self, path: &str, q: &Query) -> Reply {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if let Some(name) = path.strip_prefix("/assets/") {
            return match assets::get(name) {
                Some((t, b)) => Reply::bytes(200, t, b.to_vec()),
                None => Reply::error(404, format!("no asset {name}")),
            };
        }
        if parts.first() == Some(&"api") {
            return self.api(&parts[1..], q);
        }
        let page =
            |status| Reply::bytes(status, "text/html; charset=utf-8", assets::INDEX.to_vec());
        let file_page = |id: &str, kinds: &[&str]| {
            let known = self.file(id).is_some_and(|f| {
                kinds.iter().any(|k| {
                    f.kind.name() == *k || (*k == "saved" && matches!(f.kind, Kind::Saved(_)))
                })
            });
            page(if known { 200 } else { 404 })
        };
        match parts.as_slice() {
            [""] => Reply::redirect("/snapshots".into()),
            ["snapshots"] | ["files"] | ["diff"] => page(200),
            ["snapshots", id] => match self.snapshots.exists(id) {
                Some(false) => page(404),
                _ => page(200),
            },
            ["heap", id] | ["heap", id, "path", _] => file_page(id, &["heap"]),
            ["traces", id] => file_page(id, &["trace"]),
            ["profiles", id] => file_page(id, &["profile"]),
            ["saved", id] => file_page(id, &["saved"]),
            ["favicon.ico"] => Reply::bytes(204, "image/x-icon", Vec::new()),
            _ => page(404),
        }
    }

    fn api(&self, parts: &[&str], q: &Query) -> Reply {
        let unknown_file = |id: &str| {
            Reply::error(
                404,
                format!(
                    "no file {id}: this rbscope ui was given {} file(s); see /files",
                    self.files.len()
                ),
            )
        };
        match parts {
            ["info"] => self.info(),
            ["groups"] => self.snapshots.groups(q),
            ["snapshots"] => self.snapshots.list(q),
            ["snapshots", id] => self.snapshots.one(id),
            ["heap", id, rest @ ..] if rest.len() <= 1 => match self.file(id) {
                Some(f) => self.heaps.view(f, rest.first().copied().unwrap_or(""), q),
                None => unknown_file(id),
            },
            ["diff"] => {
                let ids: Vec<&str> = q
                    .get("files")
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .collect();
                let mut files = Vec::new();
                for id in ids {
                    match self.file(id) {
                        Some(f) => files.push(f),
                        None => return unknown_file(id),
                    }
                }
                self.heaps.diff(&files, q)
            }
            ["traces", id] => match self.file(id) {
                Some(f) if f.kind == Kind::Trace => read_file(f, |b| {
                    rbscope_trace::file::read(b)
                        .map(|t| trace_json(&t))
                        .map_err(|e| e.to_string())
                }),
                Some(f) => Reply::error(404, format!("{} ({id}) is not a trace", f.name)),
                None => unknown_file(id),
            },
            ["profiles", id] => match self.file(id) {
                Some(f) if f.kind == Kind::Profile => {
                    read_file(f, |b| crate::views::profile::read(b).map(|p| p.to_json()))
                }
                Some(f) => Reply::error(404, format!("{} ({id}) is not a profile", f.name)),
                None => unknown_file(id),
            },
            ["saved", id] => match self.file(id) {
                Some(f) if matches!(f.kind, Kind::Saved(_)) => read_file(f, |b| {
                    let mut v: serde_json::Value = serde_json::from_slice(b)
                        .map_err(|e| format!("it is not valid JSON any more ({e})"))?;
                    let kind =
                        files::saved_kind(&v).ok_or("it is not a saved analysis any more")?;
                    v["kind"] = kind.into();
                    Ok(v)
                }),
                Some(f) => Reply::error(404, format!("{} ({id}) is not a saved analysis", f.name)),
                None => unknown_file(id),
            },
            _ => Reply::error(404, "no such API endpoint (see docs/ui-api.md)"),
        }
    }

    fn info(&self) -> Reply {
        let (store_ok, count, store_error) = match self.snapshots.count() {
            Ok(n) => (true, Some(n), None),
            Err(e) => (false, None, Some(e)),
        };
        let files: Vec<_> = self
            .files
            .iter()
            .map(|f| {
                let (state, error, progress) = match &f.kind {
                    Kind::Heap => self.heaps.state_json(&f.id),
                    Kind::Unknown(why) => ("failed".into(), Some(why.clone()), None),
                    _ => ("ready".into(), None, None),
                };
                json!({
                    "id": f.id, "name": f.name, "path": f.path.display().to_string(),
                    "bytes": f.bytes, "kind": f.kind.name(), "state": state,
                    "error": error, "progress": progress,
                })
            })
            .collect();
        Reply::ok(&json!({
            "version": env!("CARGO_PKG_VERSION"),
            "store": self.snapshots.location.describe(),
            "store_ok": store_ok,
            "store_error": store_error,
            "snapshots": count,
            "files": files,
        }))
    }
}

/// Reads a file the UI was given and turns it into JSON; a read or format error is a 422 with
/// the reason.
fn read_file(
    f: &FileEntry,
    parse: impl FnOnce(&[u8]) -> Result<serde_json::Value, String>,
) -> Reply {
    match std::fs::read(&f.path) {
        Ok(b) => match parse(&b) {
            Ok(v) => Reply::ok(&v),
            Err(e) => Reply::error(422, format!("{} cannot be shown: {e}", f.path.display())),
        },
        Err(e) => Reply::error(422, format!("cannot read {}: {e}", f.path.display())),
    }
}

/// Most spans sent to the page; the longest are kept.
const MAX_SPANS: usize = 500_000;

fn trace_json(t: &rbscope_trace::file::TraceFile) -> serde_json::Value {
    let total: usize = t.threads.iter().map(|th| th.spans.len()).sum();
    // Above the cap, keep the longest spans (what a timeline shows at any zoom).
    let min_wall = if total > MAX_SPANS {
        let mut walls: Vec<u64> = t
            .threads
            .iter()
            .flat_map(|th| th.spans.iter().map(|s| s.wall_ns))
            .collect();
        let k = total - MAX_SPANS;
        *walls.select_nth_unstable(k).1
    } else {
        0
    };
    let mut shown = 0usize;
    let threads: Vec<_> = t
        .threads
        .iter()
        .map(|th| {
            let mut spans = Vec::new();
            for s in th.spans.iter().filter(|s| s.wall_ns >= min_wall) {
                if shown == MAX_SPANS {
                    break;
                }
                shown += 1;
                spans.push(json!([
                    s.start_ns.saturating_sub(t.start_ns),
                    s.wall_ns,
                    s.depth,
                    s.name,
                    s.open as u8,
                    s.args,
                    s.duration_ns,
                ]));
            }
            json!({"tid": th.tid, "name": th.name, "spans": spans})
        })
        .collect();
    json!({
        "format": t.format,
        "start_ns": 0,
        "end_ns": t.end_ns.saturating_sub(t.start_ns),
        "names": t.names,
        "threads": threads,
        "gc": t.gc.iter().map(|(s, d)| json!([s.saturating_sub(t.start_ns), d])).collect::<Vec<_>>(),
        "lost": t.lost,
        "spans": total,
        "shown": shown,
        "truncated": t.truncated,
    })
}
