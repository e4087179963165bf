//! Where the socket lives and who may use it: the user's private runtime directory (created
//! 0700, refused if it belongs to someone else or is open to others), a socket named after the
//! PID with mode 0600, and each peer's uid checked with the kernel's own record
//! (`SO_PEERCRED`): the same user or root only.

use super::ControlError;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Makes sure `dir` exists, belongs to `uid` and is closed to others.
pub fn ensure_private_dir(dir: &Path, uid: u32) -> Result<(), ControlError> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(_) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| ControlError::CreateDir {
                    dir: dir.to_path_buf(),
                    source,
                })?;
            fs::symlink_metadata(dir).map_err(ControlError::Inspect)?
        }
    };
    rbscope_store::check_owned_dir(dir, &meta, uid, 0o077).map_err(ControlError::UnsafeDir)
}

/// Listens on `path` (mode 0600), replacing what is there.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if fs::symlink_metadata(path).is_ok() {
        // A leftover from a dead process that had our PID, or something planted: remove the
        // entry itself (never follow it) and bind afresh.
        fs::remove_file(path).map_err(|source| ControlError::RemoveStale {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Listen {
        path: path.to_path_buf(),
        source,
    })?;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    Ok(listener)
}

/// The uid of the process at the other end, as the kernel recorded it when it connected.
pub fn peer_uid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out-pointers of the sizes given, and the fd is the open
    // socket `stream` owns.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

/// Same user or root.
pub fn peer_allowed(peer: Option<u32>, owner: u32) -> bool {
    peer.is_some_and(|uid| uid == owner || uid == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_directory_is_made_private_and_an_open_one_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir, uid).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir, uid).unwrap_err().to_string();
        assert!(err.contains("is open to other users (mode 755)"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let err = ensure_private_dir(&dir, uid + 1).unwrap_err().to_string();
        assert!(err.contains("belongs to uid"), "{err}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = ensure_private_dir(&link, uid).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn the_socket_replaces_a_leftover_and_is_closed_to_others() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("1234.sock");
        fs::write(&path, "planted").unwrap();
        let listener = bind(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let client = UnixStream::connect(&path).unwrap();
        let (server, _) = listener.accept().unwrap();
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert_eq!(peer_uid(&server), Some(uid));
        assert_eq!(peer_uid(&client), Some(uid));
    }

    #[test]
    fn only_the_same_user_or_root_may_talk() {
        assert!(peer_allowed(Some(1000), 1000));
        assert!(peer_allowed(Some(0), 1000));
        assert!(!peer_allowed(Some(1001), 1000));
        assert!(!peer_allowed(None, 1000));
    }
}
