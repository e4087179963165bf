//! Recorded profiles, both ways: `rbscope record` writes the samples it counted as collapsed
//! stacks or speedscope JSON, and `rbscope ui` reads those files back into one tree of frames
//! with sample counts for its flame graph (threads at the first level, outermost frames below
//! them; tiny subtrees are merged into their parent so that a profile of any length stays a
//! page the browser draws at once). Writer and reader of each format live together so that
//! what one writes, the other reads (see the round-trip test).

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};

/// One stack as a profile keeps it: the thread, then its frames (label, file, line),
/// outermost first.
pub type Stack = (String, Vec<(String, String, i64)>);

/// Samples per stack.
pub type Counts = BTreeMap<Stack, u64>;

/// A stack as collapsed-stack tools write it: `thread;outer;...;inner` (a `;` in the thread's
/// name becomes `:`).
fn folded(key: &Stack) -> String {
    let mut s = key.0.replace(';', ":");
    for (label, _, _) in &key.1 {
        s.push(';');
        s.push_str(label);
    }
    s
}

/// The collapsed-stack lines (`thread;outer;...;inner COUNT`), for a file or a flame graph.
pub fn collapsed_lines(counts: &Counts) -> impl Iterator<Item = String> + '_ {
    counts.iter().map(|(key, n)| format!("{} {n}", folded(key)))
}

/// `rbscope record --format collapsed`.
pub fn write_collapsed(w: &mut dyn Write, counts: &Counts) -> anyhow::Result<()> {
    for line in collapsed_lines(counts) {
        writeln!(w, "{line}")?;
    }
    Ok(())
}

/// `rbscope record --format speedscope`: speedscope's file format, shared frames and one
/// sampled profile per thread, weighted in seconds.
pub fn write_speedscope(
    w: &mut dyn Write,
    counts: &Counts,
    pid: i32,
    seconds_per_sample: f64,
) -> anyhow::Result<()> {
    let mut frames: Vec<Value> = Vec::new();
    let mut index: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    let mut profiles: BTreeMap<String, (Vec<Vec<usize>>, Vec<f64>)> = BTreeMap::new();
    for ((thread, stack), n) in counts {
        let ids: Vec<usize> = stack
            .iter()
            .map(|f| {
                *index.entry(f.clone()).or_insert_with(|| {
                    frames.push(json!({"name": f.0, "file": f.1, "line": f.2}));
                    frames.len() - 1
                })
            })
            .collect();
        let p = profiles.entry(thread.clone()).or_default();
        p.0.push(ids);
        p.1.push(*n as f64 * seconds_per_sample);
    }
    let profiles: Vec<Value> = profiles
        .into_iter()
        .map(|(name, (samples, weights))| {
            let total: f64 = weights.iter().sum();
            json!({
                "type": "sampled",
                "name": name,
                "unit": "seconds",
                "startValue": 0.0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": format!("rbscope record: process {pid}"),
        "exporter": concat!("rbscope ", env!("CARGO_PKG_VERSION")),
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": profiles,
    });
    serde_json::to_writer(w, &doc)?;
    Ok(())
}

#[derive(Default, Debug)]
struct Node {
    value: f64,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn add(&mut self, stack: &[&str], value: f64) {
        self.value += value;
        let mut n = self;
        for frame in stack {
            n = n.children.entry((*frame).to_string()).or_default();
            n.value += value;
        }
    }

    fn to_json(&self, name: &str, min: f64) -> Value {
        let kids: Vec<Value> = self
            .children
            .iter()
            .filter(|(_, c)| c.value >= min)
            .map(|(n, c)| c.to_json(n, min))
            .collect();
        json!({"n": name, "v": self.value, "c": kids})
    }
}

#[derive(Debug)]
pub struct Profile {
    root: Node,
    unit: &'static str,
    threads: usize,
}

impl Profile {
    pub fn to_json(&self) -> Value {
        let min = self.root.value / 20_000.0;
        json!({
            "total": self.root.value,
            "unit": self.unit,
            "threads": self.threads,
            "root": self.root.to_json("all", min),
        })
    }
}

/// Reads collapsed stacks or speedscope JSON; the error says what the file is not.
pub fn read(bytes: &[u8]) -> Result<Profile, String> {
    let text = String::from_utf8_lossy(bytes);
    if text.trim_start().starts_with('{') {
        return speedscope(&text);
    }
    let mut root = Node::default();
    let mut threads = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let Some((stack, n)) = line.rsplit_once(' ') else {
            return Err(format!("line {} is not `frame;frame COUNT`", i + 1));
        };
        let Ok(n) = n.parse::<f64>() else {
            return Err(format!("line {} does not end with a sample count", i + 1));
        };
        let frames: Vec<&str> = stack.split(';').collect();
        threads.insert(frames[0].to_string());
        root.add(&frames, n);
    }
    if root.value == 0.0 {
        return Err("it holds no samples".into());
    }
    Ok(Profile {
        root,
        unit: "samples",
        threads: threads.len(),
    })
}

/// speedscope's file format: frames shared, one "sampled" profile per thread (what `rbscope
/// record` writes; "evented" profiles of other tools are refused with a message).
fn speedscope(text: &str) -> Result<Profile, String> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| format!("it is not valid JSON ({e})"))?;
    let frames: Vec<String> = doc["shared"]["frames"]
        .as_array()
        .ok_or("it has no shared.frames: not a speedscope file")?
        .iter()
        .map(|f| f["name"].as_str().unwrap_or("?").to_string())
        .collect();
    let profiles = doc["profiles"]
        .as_array()
        .ok_or("it has no profiles: not a speedscope file")?;
    let mut root = Node::default();
    let mut unit = "samples";
    for p in profiles {
        if p["type"] != "sampled" {
            return Err(format!(
                "its profile {:?} is of type {}, and only sampled profiles are read",
                p["name"].as_str().unwrap_or(""),
                p["type"]
            ));
        }
        if p["unit"] == "seconds" {
            unit = "seconds";
        }
        let thread = p["name"].as_str().unwrap_or("thread");
        let samples = p["samples"].as_array().ok_or("a profile has no samples")?;
        let weights = p["weights"].as_array();
        for (i, s) in samples.iter().enumerate() {
            let mut stack: Vec<&str> = vec![thread];
            for id in s.as_array().into_iter().flatten() {
                let frame = id
                    .as_u64()
                    .and_then(|k| frames.get(k as usize))
                    .ok_or("a sample names a frame that is not in shared.frames")?;
                stack.push(frame);
            }
            let w = weights
                .and_then(|w| w.get(i))
                .and_then(Value::as_f64)
                .unwrap_or(1.0);
            root.add(&stack, w);
        }
    }
    Ok(Profile {
        root,
        unit,
        threads: profiles.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapsed_and_speedscope_give_the_same_tree() {
        let collapsed = "main;A#a;B#b 3\nmain;A#a 1\nworker;C#c 2\n";
        let c = read(collapsed.as_bytes()).unwrap().to_json();
        assert_eq!(c["total"], 6.0);
        assert_eq!(c["threads"], 2);
        assert_eq!(c["root"]["c"][0]["n"], "main");
        assert_eq!(c["root"]["c"][0]["v"], 4.0);
        assert_eq!(c["root"]["c"][0]["c"][0]["c"][0]["n"], "B#b");
        let speedscope = json!({
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": [{"name": "A#a"}, {"name": "B#b"}, {"name": "C#c"}]},
            "profiles": [
                {"type": "sampled", "name": "main", "unit": "seconds", "samples": [[0, 1], [0]], "weights": [3.0, 1.0]},
                {"type": "sampled", "name": "worker", "unit": "seconds", "samples": [[2]], "weights": [2.0]},
            ],
        });
        let s = read(speedscope.to_string().as_bytes()).unwrap().to_json();
        assert_eq!(s["root"], c["root"]);
        assert_eq!(s["unit"], "seconds");
    }

    #[test]
    fn what_record_writes_the_ui_reads_the_same_in_both_formats() {
        let frame = |l: &str| (l.to_string(), "app.rb".to_string(), 3i64);
        let mut counts = Counts::new();
        counts.insert(("main (7)".into(), vec![frame("A#a"), frame("B#b")]), 3);
        counts.insert(("main (7)".into(), vec![frame("A#a")]), 1);
        counts.insert(("w;1 (8)".into(), vec![frame("C#c")]), 2);
        let mut collapsed = Vec::new();
        write_collapsed(&mut collapsed, &counts).unwrap();
        assert_eq!(
            String::from_utf8(collapsed.clone()).unwrap(),
            "main (7);A#a 1\nmain (7);A#a;B#b 3\nw:1 (8);C#c 2\n"
        );
        let c = read(&collapsed).unwrap().to_json();
        assert_eq!(c["total"], 6.0);
        assert_eq!(c["threads"], 2);
        let mut speedscope = Vec::new();
        write_speedscope(&mut speedscope, &counts, 7, 0.5).unwrap();
        let s = read(&speedscope).unwrap().to_json();
        assert_eq!(s["unit"], "seconds");
        assert_eq!(s["total"], 3.0);
        // Same tree, weights in seconds instead of samples; the thread keeps its `;` in JSON.
        let main = &s["root"]["c"][0];
        assert_eq!(main["n"], "main (7)");
        assert_eq!(main["v"], 2.0);
        assert_eq!(main["c"][0]["c"][0]["n"], "B#b");
        assert_eq!(c["root"]["c"][0]["c"][0]["c"][0]["n"], "B#b");
        assert_eq!(s["root"]["c"][1]["n"], "w;1 (8)");
    }

    #[test]
    fn bad_profiles_say_why() {
        assert!(read(b"").is_err());
        assert!(read(b"main;a x\n").unwrap_err().contains("sample count"));
        assert!(read(b"{").unwrap_err().contains("not valid JSON"));
        assert!(read(
            b"{\"shared\":{\"frames\":[]},\"profiles\":[{\"type\":\"sampled\",\"samples\":[[4]]}]}"
        )
        .unwrap_err()
        .contains("not in shared.frames"));
        assert!(
            read(b"{\"shared\":{\"frames\":[]},\"profiles\":[{\"type\":\"evented\"}]}")
                .unwrap_err()
                .contains("only sampled")
        );
    }
}
