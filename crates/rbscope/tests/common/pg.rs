//! A real PostgreSQL server for the fleet-store tests: its own cluster in a temporary
//! directory, on a free loopback port, trust authentication for the `rbscope` role, stopped
//! when dropped. `scripts/install-deps` installs the server (Debian's `postgresql`). As root
//! the server runs as the `postgres` user, because PostgreSQL refuses to run as root.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    root: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    owner: Option<(u32, u32)>,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("the PostgreSQL server is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-deps")
    })
}

/// The uid and gid of the `postgres` user, when we are root.
fn server_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "no postgres user: run scripts/install-deps"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

impl Postgres {
    pub fn start() -> Postgres {
        let root = tempfile::Builder::new()
            .prefix("rbscope-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let owner = server_owner();
        for sub in ["data", "sock"] {
            let p = root.path().join(sub);
            std::fs::create_dir(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut initdb = Command::new(bin_dir().join("initdb"));
        initdb
            .args(["-D", "data", "-U", "rbscope", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync", "--no-instructions"])
            .current_dir(root.path());
        let out = as_owner(&mut initdb, owner).output().unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            root,
            child: None,
            port: super::free_port(),
            owner,
        };
        pg.resume();
        pg
    }

    fn dir(&self) -> &Path {
        self.root.path()
    }

    /// Starts the server (again, after `stop`) on the same port and data, and waits until it
    /// accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir().join("server.log")).unwrap();
        let mut cmd = Command::new(bin_dir().join("postgres"));
        let sock = self.dir().join("sock");
        cmd.args(["-D", "data", "-p", &self.port.to_string()])
            .arg("-k")
            .arg(&sock)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=50"])
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(as_owner(&mut cmd, self.owner).spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill on a pid we spawned and have not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://rbscope@127.0.0.1:{}/{db}", self.port)
    }

    /// The same database over the server's Unix socket.
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "postgres://rbscope@localhost:{}/{db}?host={}",
            self.port,
            self.dir().join("sock").display()
        )
    }

    /// A new empty database; returns its URL.
    pub fn database(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url(name)
    }

    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(db), postgres::NoTls).unwrap()
    }
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid).env("HOME", "/var/lib/postgresql");
    }
    cmd
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
