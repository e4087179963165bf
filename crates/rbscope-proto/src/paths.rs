//! Where an agent's control socket lives.
//!
//! `$XDG_RUNTIME_DIR/rbscope/` when the process has one, else `/tmp/rbscope-<uid>/`; the
//! directory is private to its user (0700) and the socket is named after the PID. Both the
//! agent (which creates it) and the CLI (which looks for it, using the *target's* environment
//! and uid) use these functions, so they cannot disagree.

use std::path::{Path, PathBuf};

/// The per-user runtime directory for a process with this `XDG_RUNTIME_DIR` and uid.
pub fn runtime_dir(xdg_runtime_dir: Option<&str>, uid: u32) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if !dir.is_empty() && Path::new(dir).is_absolute() => {
            Path::new(dir).join("rbscope")
        }
        _ => PathBuf::from(format!("/tmp/rbscope-{uid}")),
    }
}

/// The control socket of process `pid` inside `dir`.
pub fn socket_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs() {
        assert_eq!(
            runtime_dir(Some("/run/user/1000"), 1000),
            PathBuf::from("/run/user/1000/rbscope")
        );
        assert_eq!(runtime_dir(None, 1000), PathBuf::from("/tmp/rbscope-1000"));
        assert_eq!(runtime_dir(Some(""), 0), PathBuf::from("/tmp/rbscope-0"));
        assert_eq!(runtime_dir(Some("rel"), 5), PathBuf::from("/tmp/rbscope-5"));
        assert_eq!(
            socket_path(Path::new("/tmp/rbscope-0"), 42),
            PathBuf::from("/tmp/rbscope-0/42.sock")
        );
    }
}
