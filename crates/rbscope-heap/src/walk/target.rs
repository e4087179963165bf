//! Where a heap dump is written: the asked path (relative to the process's working
//! directory) or a new file in the agent's directory; never over an existing file; first under
//! a partial name, linked to the final one only when complete.
//!
//! Why here: these are the rules a user relies on (a dump never overwrites a file, a failed
//! dump leaves nothing under the asked name), and they need no Ruby.

use std::path::{Path, PathBuf};

/// Where the dump goes. `asked` is the request's path (none or empty: a new file
/// `heap-PID-MS.json[.gz]` in `default_dir()`); a relative path is taken from `cwd()`.
pub fn dump_path(
    asked: Option<&str>,
    gzip: bool,
    cwd: impl FnOnce() -> std::io::Result<PathBuf>,
    default_dir: impl FnOnce() -> PathBuf,
    pid: u32,
    now_ms: u128,
) -> Result<PathBuf, String> {
    let path = match asked {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                cwd()
                    .map_err(|e| format!("cannot resolve {}: {e}", p.display()))?
                    .join(p)
            }
        }
        _ => {
            let ext = if gzip { "json.gz" } else { "json" };
            default_dir().join(format!("heap-{pid}-{now_ms}.{ext}"))
        }
    };
    if path.exists() {
        return Err(format!(
            "{} already exists; a heap dump never overwrites a file: remove it or choose another path",
            path.display()
        ));
    }
    Ok(path)
}

/// The name a dump is written under until it is complete: next to `path`, owned by `pid`.
pub fn partial_path(path: &Path, pid: u32) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".rbscope-partial-{pid}"));
    path.with_file_name(name)
}

/// Gives a complete dump at `partial` its final name `path`. `link` fails if that name
/// appeared meanwhile: never overwrite.
pub fn publish(partial: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::hard_link(partial, path)?;
    let _ = std::fs::remove_file(partial);
    Ok(())
}

/// What the user is told when writing the dump to `path` failed with `e` (the partial file is
/// gone by then).
pub fn failure(path: &Path, e: &std::io::Error) -> String {
    let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
        " (the disk is full: free space or choose another path with -o)"
    } else {
        ""
    };
    format!(
        "writing the heap dump to {} failed: {e}{hint}; nothing was left under that name",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_paths_relative_to_the_process_and_default_names() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = || Ok(dir.path().to_path_buf());
        let unused = || -> PathBuf { panic!("the default directory is not asked for") };
        assert_eq!(
            dump_path(Some("out/h.json"), false, cwd, unused, 1, 2),
            Ok(dir.path().join("out/h.json"))
        );
        assert_eq!(
            dump_path(
                Some("/srv/h.json"),
                false,
                || panic!("no cwd"),
                unused,
                1,
                2
            ),
            Ok(PathBuf::from("/srv/h.json"))
        );
        let default = || PathBuf::from("/run/user/1000/rbscope");
        assert_eq!(
            dump_path(None, true, cwd, default, 42, 1700),
            Ok(PathBuf::from("/run/user/1000/rbscope/heap-42-1700.json.gz"))
        );
        assert_eq!(
            dump_path(Some(""), false, cwd, default, 42, 1700),
            Ok(PathBuf::from("/run/user/1000/rbscope/heap-42-1700.json"))
        );
        let gone = || Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        let e = dump_path(Some("h.json"), false, gone, default, 1, 2).unwrap_err();
        assert!(e.starts_with("cannot resolve h.json: "), "{e}");
    }

    #[test]
    fn never_over_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("h.json"), "{}").unwrap();
        let e = dump_path(
            Some("h.json"),
            false,
            || Ok(dir.path().to_path_buf()),
            PathBuf::new,
            1,
            2,
        )
        .unwrap_err();
        assert!(e.ends_with("h.json already exists; a heap dump never overwrites a file: remove it or choose another path"), "{e}");
    }

    #[test]
    fn partial_names_sit_next_to_the_target() {
        assert_eq!(
            partial_path(Path::new("/srv/dumps/h.json.gz"), 77),
            PathBuf::from("/srv/dumps/h.json.gz.rbscope-partial-77")
        );
    }

    #[test]
    fn published_under_the_final_name_only_if_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        let partial = partial_path(&path, 5);
        std::fs::write(&partial, "{}\n").unwrap();
        publish(&partial, &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        assert!(!partial.exists());
        std::fs::write(&partial, "new").unwrap();
        assert!(publish(&partial, &path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
    }

    #[test]
    fn failures_say_what_to_do() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let m = failure(Path::new("/srv/h.json"), &full);
        assert!(
            m.starts_with("writing the heap dump to /srv/h.json failed: "),
            "{m}"
        );
        assert!(m.ends_with(" (the disk is full: free space or choose another path with -o); nothing was left under that name"), "{m}");
        let other = std::io::Error::other("broken pipe");
        assert_eq!(
            failure(Path::new("h.json"), &other),
            "writing the heap dump to h.json failed: broken pipe; nothing was left under that name"
        );
    }
}
