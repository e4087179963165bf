//! When the agent cannot run in a Ruby (no agent built for that release, one built for another
//! release, one that cannot be loaded), `require "rbscope"` still succeeds, the app runs
//! unchanged, one line at start says why, and `rbscope doctor` says what is off.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of gem/lib's Ruby files (no agent, no CLI) in `dir`.
fn lib_without_agent(dir: &Path) -> PathBuf {
    let lib = dir.join("lib");
    let src = repo_root().join("gem/lib");
    for entry in walk(&src) {
        let rel = entry.strip_prefix(&src).unwrap();
        if entry.extension().is_some_and(|e| e == "rb") {
            let to = lib.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &to).unwrap();
        }
    }
    lib
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

const APP: &str = "require 'rbscope'\n\
    Rbscope.start\n\
    puts \"started=#{Rbscope.started?}\"\n\
    begin\n  raise ArgumentError, 'handled'\nrescue => e\n  puts \"rescued #{e.message}\"\nend\n\
    puts \"report=#{Rbscope.report(RuntimeError.new('x')).inspect}\"\n\
    puts \"better=#{RuntimeError.new('y').better_backtrace.inspect}\"\n\
    begin\n  Rbscope.backtrace\nrescue NotImplementedError => e\n  puts \"backtrace: #{e.message[0, 40]}\"\nend\n\
    Rbscope.start\n\
    puts 'done'\n";

fn run_app(sb: &Sandbox, lib: &Path) -> std::process::Output {
    let app = sb.write("app.rb", APP);
    Command::new("ruby")
        .arg(format!("-I{}", lib.display()))
        .arg(&app)
        .env("RBSCOPE_STORE", sb.store())
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .env_remove("RUBYOPT")
        .env_remove("RBSCOPE_DISABLE")
        .current_dir(sb.dir.path())
        .output()
        .unwrap()
}

/// The app's own output, exactly, whatever the reason the agent is off.
fn assert_app_ran_unchanged(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "started=false\nrescued handled\nreport=nil\nbetter=nil\n\
         backtrace: rbscope: this needs the native agent, wh\ndone\n"
    );
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line at start, got: {err}");
    assert!(lines[0].starts_with("[rbscope] off: "), "{err}");
    lines[0].to_string()
}

#[test]
fn no_agent_for_this_ruby_leaves_the_app_running_with_one_line() {
    let sb = Sandbox::new();
    let lib = lib_without_agent(sb.dir.path());
    let line = assert_app_ran_unchanged(&run_app(&sb, &lib));
    assert!(
        line.contains(&format!("no native agent for Ruby {}", ruby_release())),
        "{line}"
    );
    assert!(!sb.store().exists(), "nothing may be stored");
}

#[test]
fn an_agent_that_cannot_be_loaded_leaves_the_app_running_with_one_line() {
    let sb = Sandbox::new();
    let lib = lib_without_agent(sb.dir.path());
    // Not a shared object at all: dlopen refuses it, as it refuses an agent whose symbols this
    // Ruby lacks.
    let so = lib.join(format!("rbscope/{}/rbscope_agent.so", ruby_release()));
    std::fs::create_dir_all(so.parent().unwrap()).unwrap();
    std::fs::write(&so, b"not an ELF file\n").unwrap();
    let line = assert_app_ran_unchanged(&run_app(&sb, &lib));
    assert!(line.contains("the native agent cannot load"), "{line}");
}

#[test]
fn rbscope_run_and_doctor_say_what_is_off() {
    let sb = Sandbox::new();
    let lib = lib_without_agent(sb.dir.path());
    let app = sb.write(
        "plain.rb",
        "puts 'hello from the app'\n$stderr.puts 'app warning'\nexit 3\n",
    );
    let out = sb
        .cli()
        .env("RBSCOPE_RUBY_LIB", &lib)
        .args(["run", "--", "ruby"])
        .arg(&app)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the app\n");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("[rbscope] off: no native agent"),
        "{err}"
    );
    assert_eq!(lines[1], "app warning");

    let doctor = sb
        .cli()
        .env("RBSCOPE_RUBY_LIB", &lib)
        .arg("doctor")
        .output()
        .unwrap();
    assert!(doctor.status.success(), "{}", stderr(&doctor));
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains(&format!(
            "agent     OFF in `ruby` (Ruby {}): no native agent for Ruby {}",
            ruby_version(),
            ruby_release()
        )),
        "{text}"
    );
    assert!(text.contains("          off: snapshots,"), "{text}");
}

/// An agent built for one Ruby release, put where another release looks for its own, refuses
/// to run there (it never runs with a wrong layout). Needs a second Ruby (scripts/rubies).
#[test]
fn an_agent_built_for_another_ruby_refuses_to_start() {
    let here = ruby_release();
    let built = repo_root().join("gem/lib/rbscope");
    let other = std::fs::read_dir(&built)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name != &here && built.join(name).join("rbscope_agent.so").is_file());
    let Some(other) = other else {
        eprintln!(
            "not checked on this machine: only the agent for Ruby {here} is built (scripts/rubies lists one Ruby)"
        );
        return;
    };
    let sb = Sandbox::new();
    let lib = lib_without_agent(sb.dir.path());
    let so = lib.join(format!("rbscope/{here}/rbscope_agent.so"));
    std::fs::create_dir_all(so.parent().unwrap()).unwrap();
    std::fs::copy(built.join(&other).join("rbscope_agent.so"), &so).unwrap();
    let line = assert_app_ran_unchanged(&run_app(&sb, &lib));
    // Either the agent's own check (same symbols, other release) or the dynamic loader (a
    // symbol this Ruby lacks) refuses it.
    assert!(
        line.contains(&format!(
            "this agent was built for Ruby {other} and will not run in Ruby {}",
            ruby_version()
        )) || line.contains("the native agent cannot load"),
        "{line}"
    );
}
