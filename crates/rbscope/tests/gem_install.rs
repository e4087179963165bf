//! The gem builds and installs with the Ruby under test and no RubyGems.org: extconf builds the
//! agent (against that Ruby) and the CLI with cargo, its dependencies (logger, irb) are that
//! Ruby's default or bundled gems, and the installed gem captures a snapshot.

mod common;
use common::*;
use std::process::Command;

/// The gem's install compiles the agent and the CLI from the packed sources (minutes): it is
/// tested with Debian's 3.1 and with the newest Ruby of scripts/rubies, which together show
/// that installing for a second Ruby from one checkout builds that Ruby's own agent.
fn install_tested_here() -> bool {
    let out = Command::new(repo_root().join("scripts/rubies"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    let newest = list.lines().last().unwrap_or("").to_string();
    let release_of = |ruby: &str| {
        let out = Command::new(ruby)
            .args(["-e", "print RUBY_VERSION[/\\A\\d+\\.\\d+/]"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let here = ruby_release();
    if here == "3.1" || (!newest.is_empty() && release_of(&newest) == here) {
        return true;
    }
    eprintln!(
        "gem install is tested with Ruby 3.1 and the newest Ruby here ({newest}), not {here}"
    );
    false
}

#[test]
fn gem_installs_into_a_fresh_gem_home_and_works() {
    if !install_tested_here() {
        return;
    }
    let sb = Sandbox::new();
    let home = sb.dir.path().join("gems");
    let root = repo_root();
    // GEM_HOME alone (not --install-dir, which hides the Ruby's own gems): the gem's
    // dependencies (logger, irb) are that Ruby's default or bundled gems.
    let out = Command::new(root.join("scripts/install-gem"))
        .env("GEM_HOME", &home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install failed: {}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );

    let app = sb.write(
        "app.rb",
        "def boom\n  installed = true\n  raise 'from the installed gem'\nend\nboom\n",
    );
    let cli = home.join("bin/rbscope");
    assert!(cli.is_file(), "no rbscope executable in {}", home.display());
    let run = Command::new(&cli)
        .args(["run", "--", "ruby"])
        .arg(&app)
        .env("GEM_HOME", &home)
        .env_remove("GEM_PATH")
        .env("RBSCOPE_STORE", sb.store())
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .env_remove("RBSCOPE_RUBY_LIB")
        .env_remove("RUBYOPT")
        .current_dir(sb.dir.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(err.contains("[rbscope] snapshot"), "{err}");
    // The installed agent was compiled against this Ruby's headers.
    let built = Command::new("ruby")
        .args([
            "-e",
            "require 'rbscope'; print Rbscope::Native::BUILT_WITH_RUBY, ' ', RUBY_VERSION",
        ])
        .env("GEM_HOME", &home)
        .env_remove("GEM_PATH")
        .env_remove("RUBYOPT")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&built.stdout).to_string();
    let (agent, ruby) = text.split_once(' ').unwrap_or(("", ""));
    assert_eq!(agent, ruby, "{text} {}", stderr(&built));
    // The agent came from the installed gem, not from the checkout.
    let list = Command::new(&cli)
        .args(["list", "--json"])
        .env("GEM_HOME", &home)
        .env_remove("GEM_PATH")
        .env("RBSCOPE_STORE", sb.store())
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["top_frame"], "Object#boom()");
}
