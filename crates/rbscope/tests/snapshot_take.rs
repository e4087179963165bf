//! Snapshots taken together: `rbscope snapshot -p PID --all` on a real process with two named
//! threads, each parked in a method with a local only it has. The snapshots of the take name
//! each other (`show`, `show --json`), `restore ID --thread NAME|TID` lands in the other
//! thread's frame (its own local there, the first thread's not), the console's `threads` lists
//! the take, and each wrong use is one clear line.

mod common;
use common::*;
use serde_json::Value as J;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Two threads parked (blocked in `Queue#pop`) in methods with their own locals; `ready` once
/// both are asleep there.
const TWO_THREADS: &str = r#"
require "rbscope"
Rbscope.start
class Alpha
  def park(parked, go)
    only_alpha = 11
    parked << :alpha
    go.pop
    only_alpha
  end
end
class Beta
  def park(parked, go)
    only_beta = 22
    parked << :beta
    go.pop
    only_beta
  end
end
parked = Queue.new
go = Queue.new
threads = [["alpha", Alpha], ["beta", Beta]].map do |name, klass|
  Thread.new do
    Thread.current.name = name
    klass.new.park(parked, go)
  end
end
2.times { parked.pop }
# Each thread has pushed and is (about to be) blocked in go.pop: wait until both sleep there.
sleep 0.01 until threads.all? { |t| t.status == "sleep" }
$stdout.puts "ready"
$stdout.flush
go.pop
"#;

fn cli_in(store: &Path, args: &[&str]) -> Output {
    Command::new(cli())
        .args(args)
        .env("RBSCOPE_STORE", store)
        .env("RBSCOPE_RUBY_LIB", gem_lib())
        .output()
        .unwrap()
}

fn show(store: &Path, id: &str) -> J {
    let out = cli_in(store, &["show", id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn restore(store: &PathBuf, args: &[&str], input: &str) -> (Output, String) {
    let mut cmd = Command::new(cli());
    cmd.arg("restore")
        .args(args)
        .env("RBSCOPE_STORE", store)
        .env("RBSCOPE_RUBY_LIB", gem_lib());
    let out = with_input(&mut cmd, input);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out, text)
}

/// The one line of a failed command, which must exit 1.
fn failure(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err.trim_end().to_string()
}

#[test]
fn threads_taken_together_name_each_other_and_restore_by_thread() {
    let sb = Sandbox::new();
    let store = sb.store();
    let script = sb.write("two.rb", TWO_THREADS);
    let p = Running::start(sb, &script, &[], "ready");
    let pid = p.pid();

    let out = cli_in(&store, &["snapshot", "-p", &pid, "--all", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let taken: J = serde_json::from_slice(&out.stdout).unwrap();
    let taken = taken["taken"].as_array().unwrap().clone();
    assert_eq!(taken.len(), 3, "main, alpha and beta: {taken:?}");
    let id_of = |name: &str| -> (String, String) {
        let t = taken
            .iter()
            .find(|t| {
                t["thread"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{name} (tid "))
            })
            .unwrap_or_else(|| panic!("no {name} in {taken:?}"));
        (
            t["id"].as_str().unwrap().to_string(),
            t["tid"].as_i64().unwrap().to_string(),
        )
    };
    let (main, _) = id_of("main");
    let (alpha, _) = id_of("alpha");
    let (beta, beta_tid) = id_of("beta");

    // Listed one line each, as (live).
    let list: J = serde_json::from_slice(&cli_in(&store, &["list", "--json"]).stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(
        list.iter().all(|s| s["exception_class"] == "(live)"),
        "{list:?}"
    );
    let text = String::from_utf8_lossy(&cli_in(&store, &["list"]).stdout).to_string();
    assert!(text.contains("(live): thread alpha (asked by"), "{text}");

    // show --json: the same take in every snapshot, this one marked.
    let a = show(&store, &alpha);
    let take = &a["take"];
    let threads = take["threads"].as_array().unwrap();
    let ids: Vec<&str> = threads.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [main.as_str(), alpha.as_str(), beta.as_str()],
        "{take}"
    );
    let this: Vec<bool> = threads
        .iter()
        .map(|t| t["this"].as_bool().unwrap())
        .collect();
    assert_eq!(this, [false, true, false]);
    assert_eq!(threads[2]["name"], "beta");
    assert_eq!(threads[2]["thread"], format!("beta (tid {beta_tid})"));
    assert_eq!(threads[2]["stored"], true);
    assert!(threads[1].get("stored").is_none(), "{take}");
    assert!(
        a["context"]["extra"].get("take_threads").is_none(),
        "{}",
        a["context"]
    );
    let b = show(&store, &beta);
    assert_eq!(b["take"]["id"], take["id"]);
    assert_eq!(b["take"]["threads"][2]["this"], true);

    // show: one line per other thread, with its id.
    let out = cli_in(&store, &["show", &alpha]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let take_id = take["id"].as_str().unwrap();
    assert!(
        text.contains(&format!("take      {take_id}  with 2 other threads")),
        "{text}"
    );
    assert!(
        text.contains(&format!("  thread  beta (tid {beta_tid})  {beta}\n")),
        "{text}"
    );
    assert!(text.contains("  thread  main (tid "), "{text}");
    assert!(!text.contains("  thread  alpha"), "{text}");
    assert!(!text.contains("take_threads"), "{text}");

    // restore ID --thread NAME: the other thread's frame, with its local and not the first's.
    let probe =
        r#"puts "BETA=#{only_beta} ALPHA=#{defined?(only_alpha).inspect} SELF=#{self.class}""#;
    let (out, text) = restore(&store, &[&alpha, "--thread", "beta"], probe);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains("BETA=22 ALPHA=nil SELF=Beta"), "{text}");
    // By its OS thread id, from the main thread's snapshot, and the console's `threads`.
    let (out, text) = restore(
        &store,
        &[&main, "--thread", &beta_tid],
        &format!("{probe}\nthreads\n"),
    );
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains("BETA=22 ALPHA=nil SELF=Beta"), "{text}");
    assert!(text.contains(&format!("take {take_id} ")), "{text}");
    let marked = text
        .lines()
        .find(|l| l.starts_with("=>"))
        .unwrap_or_else(|| panic!("no line for this thread: {text}"));
    assert!(
        marked.contains(&format!("beta (tid {beta_tid})")) && marked.contains(&beta),
        "{text}"
    );
    assert!(text.contains(&format!("rbscope restore {alpha}")), "{text}");
    // Its own thread: the same snapshot.
    let (out, text) = restore(
        &store,
        &[&alpha, "--thread", "alpha"],
        r#"puts "ALPHA=#{only_alpha}""#,
    );
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains("ALPHA=11"), "{text}");

    // No such thread in the take: the threads it has.
    let err = failure(&cli_in(&store, &["restore", &alpha, "--thread", "gamma"]));
    assert!(
        err.contains(&format!(
            "no thread named or with tid \"gamma\" in the take of snapshot {alpha}; its threads \
             are: main (tid "
        )) && err.contains(", alpha (tid ")
            && err.contains(&format!(", beta (tid {beta_tid})")),
        "{err}"
    );

    // A snapshot taken alone is in no take.
    let out = cli_in(&store, &["snapshot", "-p", &pid, "--thread", "alpha"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let alone = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(show(&store, &alone)["take"].is_null());
    let err = failure(&cli_in(&store, &["restore", &alone, "--thread", "beta"]));
    assert!(
        err.contains(&format!(
            "snapshot {alone} was not taken with other threads"
        )),
        "{err}"
    );
    let text = String::from_utf8_lossy(&cli_in(&store, &["show", &alone]).stdout).to_string();
    assert!(!text.contains("take "), "{text}");

    // The other thread's snapshot purged: said so.
    let out = cli_in(&store, &["purge", "--id", &beta]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = failure(&cli_in(&store, &["restore", &alpha, "--thread", "beta"]));
    assert!(
        err.contains(&format!(
            "the snapshot of thread beta in the take of {alpha} ({beta}) is not in this store"
        )),
        "{err}"
    );
    // show says so too.
    assert_eq!(show(&store, &alpha)["take"]["threads"][2]["stored"], false);
    let text = String::from_utf8_lossy(&cli_in(&store, &["show", &alpha]).stdout).to_string();
    assert!(
        text.contains(&format!(
            "  thread  beta (tid {beta_tid})  {beta}  (not in this store)\n"
        )),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("  thread  main (tid ") && !l.contains("not in")),
        "{text}"
    );
    drop(p);
}
