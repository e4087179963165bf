//! A real Sidekiq 6 process (Debian's ruby-sidekiq) against a real redis-server on loopback:
//! a failing job stores a snapshot with its frames and the job's facts, and Sidekiq still
//! schedules its retry.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn a_failing_sidekiq_job_is_stored() {
    if !debian_gems_available("Sidekiq") {
        return;
    }
    let sb = Sandbox::new();
    let port = free_port();
    let mut redis = Child(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(sb.dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server (Debian package) must be installed: scripts/install-deps"),
    );
    let mut out = BufReader::new(redis.0.stdout.take().unwrap()).lines();
    while !out
        .next()
        .expect("redis exited")
        .unwrap()
        .contains("Ready to accept connections")
    {}
    std::thread::spawn(move || for _ in out {});

    let url = format!("redis://127.0.0.1:{port}/0");
    sb.write(
        "jobs.rb",
        r#"
require "sidekiq"
require "rbscope/sidekiq"
class InvoiceJob
  include Sidekiq::Worker
  sidekiq_options retry: 3
  def perform(invoice_id, amount)
    total = amount * 2
    raise ArgumentError, "invoice #{invoice_id} cannot be sent" if total > 100
  end
end
"#,
    );
    let enqueue = Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .args(["-r./jobs", "-e", "InvoiceJob.perform_async(77, 60)"])
        .current_dir(sb.dir.path())
        .env("REDIS_URL", &url)
        .env_remove("RUBYOPT")
        .output()
        .unwrap();
    assert!(enqueue.status.success(), "{}", stderr(&enqueue));

    let _worker = Child(
        Command::new("ruby")
            .arg(format!("-I{}", gem_lib().display()))
            .args(["/usr/bin/sidekiq", "-r", "./jobs.rb", "-c", "1", "-t", "1"])
            .current_dir(sb.dir.path())
            .env("REDIS_URL", &url)
            .env("RBSCOPE_STORE", sb.store())
            .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
            .env_remove("RUBYOPT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait for the snapshot (the worker processes the job asynchronously).
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        // The job's snapshot. Once, on a loaded machine, a RuntimeError snapshot from the worker
        // was listed before it (not reproduced since); this test is about the job's.
        let out = sb
            .cli()
            .args(["list", "--json", "--class", "ArgumentError"])
            .output()
            .unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if rows.as_array().map(|r| !r.is_empty()).unwrap_or(false) {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot from the Sidekiq job"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let snap = sb.show(rows[0]["id"].as_str().unwrap());
    let s = Snap(&snap);
    assert_eq!(snap["exception"]["class"], "ArgumentError");
    let extra = &snap["context"]["extra"];
    assert_eq!(extra["job_class"], "InvoiceJob");
    assert_eq!(extra["queue"], "default");
    assert_eq!(extra["attempt"], "1");
    let f = s.frame("InvoiceJob#perform");
    assert_eq!(s.local(f, "invoice_id")["value"], 77);
    assert_eq!(s.local(f, "total")["value"], 120);
    // Sidekiq still owns the retry.
    let retries = Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .args([
            "-r./jobs",
            "-rsidekiq/api",
            "-e",
            "puts Sidekiq::RetrySet.new.size",
        ])
        .current_dir(sb.dir.path())
        .env("REDIS_URL", &url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&retries.stdout).trim(), "1");
}
