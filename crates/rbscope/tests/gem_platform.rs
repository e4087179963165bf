//! The precompiled platform gem (`scripts/build-gem --platform`): it installs and runs where
//! there is no Rust at all, its binaries need glibc 2.31 or older, a Ruby it has no agent for
//! is told which gem to install instead, and Bundler picks it over the source gem.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The newest glibc the gem's binaries may need: Debian 11 and Ubuntu 20.04.
const OLDEST_GLIBC: (u32, u32) = (2, 31);

/// Builds the platform gem from the binaries scripts/build placed in gem/lib, holding the
/// agents of `rubies` (`RBSCOPE_RUBIES`; empty: every Ruby of scripts/rubies, as the suite
/// built). Returns the gem's path and what the script printed.
fn build_platform_gem(sb: &Sandbox, rubies: Option<&str>) -> (PathBuf, String) {
    let out = sb.dir.path().join("rbscope-platform.gem");
    let mut cmd = Command::new(repo_root().join("scripts/build-gem"));
    cmd.args(["--platform", "--prebuilt", "--out"]).arg(&out);
    if let Some(list) = rubies {
        cmd.env("RBSCOPE_RUBIES", list);
    }
    let run = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "scripts/build-gem --platform failed: {}{text}",
        stderr(&run)
    );
    assert!(out.is_file(), "no gem at {}: {text}", out.display());
    (out, text)
}

/// A PATH holding only this Ruby's `ruby` and `gem`: no cargo, rustc, clang or compiler. Made
/// in the sandbox the first time it is asked for.
fn rustless_path(sb: &Sandbox) -> PathBuf {
    let bin = sb.dir.path().join("bin");
    if bin.is_dir() {
        return bin;
    }
    std::fs::create_dir_all(&bin).unwrap();
    let ruby = which("ruby");
    let dir = ruby.parent().unwrap();
    for tool in ["ruby", "gem"] {
        let target = dir.join(tool);
        let target = if target.exists() {
            target
        } else {
            // Debian names them ruby3.1 and gem3.1 behind the plain names' symlinks.
            dir.join(format!("{tool}{}", ruby_release()))
        };
        std::os::unix::fs::symlink(&target, bin.join(tool)).unwrap();
    }
    bin
}

fn which(tool: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!path.is_empty(), "{tool} is not on PATH");
    PathBuf::from(path)
}

/// A command run with nothing of Rust reachable: PATH as above, cargo's and rustup's homes
/// pointing nowhere, and the gem home `home`.
fn rustless(program: impl AsRef<std::ffi::OsStr>, sb: &Sandbox, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", rustless_path(sb))
        .env("HOME", sb.dir.path())
        .env("GEM_HOME", home)
        .env("CARGO_HOME", "/nonexistent/cargo")
        .env("RUSTUP_HOME", "/nonexistent/rustup")
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .env("RBSCOPE_STORE", sb.store())
        .current_dir(sb.dir.path());
    cmd
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}\n{}",
        out.status,
        stderr(out),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The highest GLIBC_ symbol version an ELF file references, read by objdump.
fn glibc_needed(file: &Path) -> (u32, u32) {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "objdump -T {}: {}",
        file.display(),
        stderr(&out)
    );
    let highest = text
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max();
    highest.unwrap_or_else(|| panic!("{} references no GLIBC_ symbol:\n{text}", file.display()))
}

#[test]
fn platform_gem_installs_without_rust_and_its_cli_and_agent_work() {
    let sb = Sandbox::new();
    let (gem, printed) = build_platform_gem(&sb, None);
    let home = sb.dir.path().join("gems");
    let bin = rustless_path(&sb);
    for tool in ["cargo", "rustc", "clang", "cc", "gcc"] {
        assert!(!bin.join(tool).exists(), "{tool} is on the test's PATH");
    }

    // Installed from the file alone: nothing compiled, nothing fetched.
    let install = rustless(bin.join("gem"), &sb, &home)
        .args(["install", "--local", "--no-document"])
        .arg(&gem)
        .output()
        .unwrap();
    let said = ok(&install, "gem install of the platform gem");
    assert!(said.contains("x86_64-linux"), "{said}");
    let gem_dir = home.join(format!("gems/rbscope-{}-x86_64-linux", gem_version()));
    let agent = gem_dir.join(format!("lib/rbscope/{}/rbscope_agent.so", ruby_release()));
    assert!(
        agent.is_file(),
        "no agent for Ruby {} in {}",
        ruby_release(),
        gem_dir.display()
    );
    assert!(
        !gem_dir.join("ext").exists(),
        "the platform gem carries extension sources"
    );

    // Its binaries need glibc 2.31 or older, as the build script said.
    let cli_bin = gem_dir.join("lib/rbscope/rbscope-cli");
    for file in [&cli_bin, &agent] {
        let needed = glibc_needed(file);
        assert!(
            needed <= OLDEST_GLIBC,
            "{} needs glibc {}.{}",
            file.display(),
            needed.0,
            needed.1
        );
    }
    assert!(printed.contains("the binaries need glibc 2."), "{printed}");

    // The demo app under the installed gem: a snapshot, then list and show.
    let rbscope = home.join("bin/rbscope");
    let shop = repo_root().join("examples/demo/shop.rb");
    let run = rustless(&rbscope, &sb, &home)
        .args(["run", "--", "ruby"])
        .arg(&shop)
        .output()
        .unwrap();
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("[rbscope] snapshot"), "{err}");
    let list = ok(
        &rustless(&rbscope, &sb, &home)
            .args(["list", "--json"])
            .output()
            .unwrap(),
        "rbscope list",
    );
    let rows: serde_json::Value = serde_json::from_str(&list).unwrap();
    let id = rows[0]["id"].as_str().unwrap_or_else(|| panic!("{list}"));
    let show = ok(
        &rustless(&rbscope, &sb, &home)
            .args(["show", id])
            .output()
            .unwrap(),
        "rbscope show",
    );
    assert!(show.contains("Shop::"), "{show}");

    // A running job runner: trace its calls and dump its heap through the installed agent.
    let mut workers = rustless(&rbscope, &sb, &home)
        .args(["run", "--", "ruby"])
        .arg(repo_root().join("examples/demo/workers.rb"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(workers.stdout.take().unwrap()).lines();
        let ready = lines
            .find_map(|l| l.ok().filter(|l| l.starts_with("ready ")))
            .expect("the job runner never said ready");
        ready.trim_start_matches("ready ").trim().to_string()
    };
    let trace = rustless(&rbscope, &sb, &home)
        .args([
            "trace",
            "-p",
            &pid,
            "-m",
            "Shop::Order#total",
            "--for",
            "400ms",
        ])
        .output()
        .unwrap();
    let traced = ok(&trace, "rbscope trace");
    assert!(traced.contains("Shop::Order#total"), "{traced}");
    let dump_file = sb.dir.path().join("workers-heap.json");
    let dump = rustless(&rbscope, &sb, &home)
        .args(["heap", "dump", "-p", &pid, "-o"])
        .arg(&dump_file)
        .output()
        .unwrap();
    ok(&dump, "rbscope heap dump");
    let _ = workers.kill();
    let _ = workers.wait();
    let heap = std::fs::read_to_string(&dump_file).unwrap();
    assert!(
        heap.contains("\"Shop::Order\"") || heap.contains("Shop::Order"),
        "no Shop::Order in the heap dump"
    );
}

#[test]
fn a_ruby_the_platform_gem_has_no_agent_for_is_told_which_gem_to_install_and_runs_on() {
    if ruby_release() == "3.1" {
        eprintln!("needs a Ruby other than 3.1: the gem under test holds 3.1's agent only");
        return;
    }
    let sb = Sandbox::new();
    // A gem with Debian's 3.1 agent only.
    let (gem, printed) = build_platform_gem(&sb, Some("/usr/bin/ruby"));
    assert!(printed.contains("agents for Ruby 3.1;"), "{printed}");
    let home = sb.dir.path().join("gems");
    let bin = rustless_path(&sb);

    // RubyGems itself keeps it off this Ruby...
    let refused = rustless(bin.join("gem"), &sb, &home)
        .args(["install", "--local", "--no-document"])
        .arg(&gem)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "installed on Ruby {}",
        ruby_version()
    );
    assert!(
        stderr(&refused).contains("requires Ruby version >= 3.1, < 3.2.dev"),
        "{}",
        stderr(&refused)
    );
    // ...unless forced; then the app still runs, and require says why rbscope is off.
    let forced = rustless(bin.join("gem"), &sb, &home)
        .args(["install", "--local", "--no-document", "--force"])
        .arg(&gem)
        .output()
        .unwrap();
    ok(&forced, "gem install --force");
    let app = rustless(bin.join("ruby"), &sb, &home)
        .args([
            "-e",
            "require 'rbscope'; puts 'the app ran'; p Rbscope.start",
        ])
        .output()
        .unwrap();
    let out = ok(&app, "the app");
    assert_eq!(out, "the app ran\nfalse\n");
    let expected = format!(
        "[rbscope] off: this rbscope gem (x86_64-linux) has native agents for Ruby 3.1, not for \
         Ruby {}; install the source gem, which builds one for this Ruby with Rust: gem install \
         rbscope --platform ruby (Bundler: gem \"rbscope\", force_ruby_platform: true)\n",
        ruby_release()
    );
    assert_eq!(stderr(&app), expected);
}

#[test]
fn bundler_resolves_a_gemfile_naming_rbscope_to_the_platform_gem() {
    if ruby_release() != "3.1" {
        eprintln!("Bundler comes from Debian's packages, which serve Ruby 3.1 only");
        return;
    }
    let sb = Sandbox::new();
    let cache = sb.dir.path().join("app/vendor/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let version = gem_version();
    // Both gems side by side in the app's gem source directory, as a gem server offers them.
    build_platform_gem(&sb, None);
    std::fs::rename(
        sb.dir.path().join("rbscope-platform.gem"),
        cache.join(format!("rbscope-{version}-x86_64-linux.gem")),
    )
    .unwrap();
    let source = Command::new(repo_root().join("scripts/build-gem"))
        .arg("--out")
        .arg(cache.join(format!("rbscope-{version}.gem")))
        .output()
        .unwrap();
    ok(&source, "scripts/build-gem (the source gem)");

    let app = sb.dir.path().join("app");
    std::fs::write(
        app.join("Gemfile"),
        "source \"https://rubygems.org\"\ngem \"rbscope\"\n",
    )
    .unwrap();
    std::fs::write(
        app.join("app.rb"),
        "require 'bundler/setup'\nrequire 'rbscope'\nRbscope.start\ndef boom(v)\n  raise 'bundled'\nend\nboom(3)\n",
    )
    .unwrap();
    let home = sb.dir.path().join("gems");
    let bundle = |args: &[&str]| {
        rustless("/usr/bin/bundle", &sb, &home)
            .env("BUNDLE_PATH", sb.dir.path().join("bundle"))
            .args(args)
            .current_dir(&app)
            .output()
            .unwrap()
    };
    // --local: resolved from vendor/cache and this Ruby's own gems only (no network here).
    ok(
        &bundle(&["install", "--local", "--no-cache"]),
        "bundle install",
    );
    let lock = std::fs::read_to_string(app.join("Gemfile.lock")).unwrap();
    assert!(
        lock.contains(&format!("rbscope ({version}-x86_64-linux)")),
        "{lock}"
    );
    let run = bundle(&["exec", "ruby", "app.rb"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("[rbscope] snapshot"),
        "{}",
        stderr(&run)
    );
    let installed = sb.dir.path().join(format!(
        "bundle/ruby/3.1.0/gems/rbscope-{version}-x86_64-linux"
    ));
    assert!(
        installed.is_dir(),
        "not installed at {}",
        installed.display()
    );
}

fn gem_version() -> String {
    let out = Command::new("ruby")
        .arg("-e")
        .arg(format!(
            "require '{}'; print Rbscope::VERSION",
            repo_root().join("gem/lib/rbscope/version").display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}
