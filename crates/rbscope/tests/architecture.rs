//! Promises ARCHITECTURE.md makes about the agent's code, checked on the sources: only
//! `ffi/` names `rb_sys`, raw declarations live in `ffi/raw.rs` only, and no two agent
//! modules depend on each other (directly or through others).

mod common;
use common::repo_root;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn agent_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = repo_root().join("crates/rbscope-agent/src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn only_ffi_names_rb_sys_and_raw_declarations_are_in_one_place() {
    let mut offenders = Vec::new();
    for (path, text) in agent_sources() {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if !path.starts_with("ffi/") && code.contains("rb_sys") {
                offenders.push(format!("{path}:{}: {line}", n + 1));
            }
            if path != "ffi/raw.rs" && code.contains("extern \"C\" {") {
                offenders.push(format!("{path}:{}: {line}", n + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn agent_modules_form_no_cycle() {
    let sources = agent_sources();
    let module_of = |path: &str| -> String {
        let p = path.trim_end_matches(".rs").trim_end_matches("/mod");
        if p == "lib" {
            "crate".into()
        } else {
            p.replace('/', "::")
        }
    };
    let names: BTreeSet<String> = sources.iter().map(|(p, _)| module_of(p)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in &sources {
        let me = module_of(path);
        let deps = edges.entry(me.clone()).or_default();
        for piece in text.split("crate::").skip(1) {
            let ident: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let parts: Vec<&str> = ident.split("::").filter(|s| !s.is_empty()).collect();
            if let Some(target) = (1..=parts.len())
                .rev()
                .map(|k| parts[..k].join("::"))
                .find(|c| names.contains(c))
            {
                if target != me {
                    deps.insert(target);
                }
            }
        }
    }
    // A module reached again while it is on the current path closes a cycle.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        let cycle = visit(m, &edges, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "module cycle: {}",
            cycle.unwrap().join(" -> ")
        );
    }
    assert!(
        edges.len() > 20,
        "the walk found the agent's modules: {edges:?}"
    );
}
