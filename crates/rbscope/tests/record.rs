//! `rbscope record -p PID`: a sampling profile of a real, busy Ruby process read from outside,
//! in the three formats, wall and CPU time.

mod common;
use common::*;
use serde_json::Value as J;
use std::process::Command;

const PROGRAM: &str = r#"
class Burner
  def burn = (1..2000).reduce(:+)
  def nap = sleep(0.01)
end
napper = Thread.new { b = Burner.new; loop { b.nap } }
napper.name = "napper"
Thread.pass until napper.status == "sleep"
$stdout.sync = true
puts "ready #{Process.pid}"
b = Burner.new
loop { b.burn }
"#;

fn record(pid: &str, args: &[&str], out: &std::path::Path) -> std::process::Output {
    Command::new(cli())
        .args(["record", "-p", pid, "--duration", "1s", "-o"])
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

/// Collapsed lines as (stack, count).
fn collapsed(path: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap();
            (stack.to_string(), n.parse().unwrap())
        })
        .collect()
}

#[test]
fn profiles_every_thread_in_wall_and_cpu_time_in_three_formats() {
    let sb = Sandbox::new();
    let script = sb.write("burn.rb", PROGRAM);
    let p = Running::start(sb, &script, &[], "ready");
    let pid = p.pid();
    let dir = tempfile::tempdir().unwrap();

    let wall = dir.path().join("wall.txt");
    let out = record(&pid, &["--format", "collapsed"], &wall);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("samples in"), "{}", stderr(&out));
    let lines = collapsed(&wall);
    let main: u64 = lines
        .iter()
        .filter(|(s, _)| s.starts_with("main"))
        .map(|(_, n)| n)
        .sum();
    let burning: u64 = lines
        .iter()
        .filter(|(s, _)| s.starts_with("main") && s.contains(";Burner#burn();"))
        .map(|(_, n)| n)
        .sum();
    // A busy loop: nearly every sample of the main thread is inside Burner#burn.
    assert!(
        main >= 50 && burning * 10 >= main * 9,
        "{burning} of {main}: {lines:?}"
    );
    // Wall time: the sleeping thread is sampled too, where it waits.
    assert!(
        lines
            .iter()
            .any(|(s, _)| s.starts_with("napper") && s.ends_with(";Burner#nap();Kernel#sleep(*)")),
        "{lines:?}"
    );

    let cpu = dir.path().join("cpu.txt");
    assert!(record(&pid, &["--format", "collapsed", "--cpu"], &cpu)
        .status
        .success());
    let lines = collapsed(&cpu);
    assert!(
        !lines.is_empty() && lines.iter().all(|(s, _)| !s.starts_with("napper")),
        "{lines:?}"
    );

    let json = dir.path().join("profile.json");
    assert!(record(&pid, &["--format", "speedscope"], &json)
        .status
        .success());
    let doc: J = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        doc["$schema"],
        "https://www.speedscope.app/file-format-schema.json"
    );
    let names: Vec<&str> = doc["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("main"))
            && names.iter().any(|n| n.starts_with("napper")),
        "{names:?}"
    );
    let frames = doc["shared"]["frames"].as_array().unwrap();
    assert!(frames
        .iter()
        .any(|f| f["name"] == "Burner#burn()" && f["file"].as_str().unwrap().ends_with("burn.rb")));
    for p in doc["profiles"].as_array().unwrap() {
        assert_eq!(
            p["samples"].as_array().unwrap().len(),
            p["weights"].as_array().unwrap().len()
        );
    }

    let svg = dir.path().join("profile.svg");
    assert!(record(&pid, &[], &svg).status.success());
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<?xml") && text.contains("<svg") && text.contains("Burner#burn()"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&svg).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn mistakes_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = record("999999999", &[], &dir.path().join("x.svg"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "rbscope: no process with PID 999999999 (it may have exited)"
    );
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let out = record(&sleeper.id().to_string(), &[], &dir.path().join("x.svg"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}
