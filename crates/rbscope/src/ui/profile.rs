//! A recorded profile (`rbscope record --format collapsed|speedscope`) as one tree of frames
//! with sample counts, for the flame graph: threads at the first level, outermost frames below
//! them. Tiny subtrees are merged into their parent so that a profile of any length stays a
//! page the browser draws at once.

use std::collections::BTreeMap;

use serde_json::{json, Value};

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
