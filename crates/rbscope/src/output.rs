//! Files the CLI writes a result to (`trace -o`, `record -o`, `heap top --svg`, the console's
//! history): created 0600, an existing file replaced (`-o /dev/null` works too). A symbolic
//! link at that path is followed only when it belongs to whoever runs rbscope or to root
//! (`-o /dev/stdout`, a link of your own); one that another user planted there (in a shared
//! directory, say) would make rbscope overwrite whatever it points to with the rights of whoever
//! runs it, so it is refused, as the kernel's `fs.protected_symlinks` does in sticky
//! directories.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for writing from the start: made 0600 when new, emptied when it exists.
pub fn create(path: &Path) -> io::Result<File> {
    open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )
}

/// Opens `path` for appending: made 0600 when new.
pub fn append(path: &Path) -> io::Result<File> {
    open(path, OpenOptions::new().create(true).append(true))
}

fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    options.mode(0o600);
    match options.clone().custom_flags(libc::O_NOFOLLOW).open(path) {
        // The last part of the path is a symbolic link: whose?
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let owner = std::fs::symlink_metadata(path)?.uid();
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if owner != me && owner != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "it is a symbolic link made by uid {owner}, which rbscope does not write \
                         through (remove it, or give the path it points to)"
                    ),
                ));
            }
            options.open(path)
        }
        other => other,
    }
}
