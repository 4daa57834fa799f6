//! Private directories for children's Unix sockets: created fresh (mode 0700, so only pdp's own user can
//! enter them and reach a socket inside), removed when dropped, and naming sockets whose whole path fits in
//! a socket address (`sun_path`: 108 bytes on Linux, 104 on macOS, including the final NUL).
//!
//! A child that listens on a socket in here is reachable by pdp's user alone: no other local user, no
//! neighbour process of another uid, can connect and skip pdp's API key. (Root ignores directory modes, as
//! it ignores every file permission.)
//!
//! Deliberately not here: starting the children (`launch`), speaking HTTP over the sockets (`pdp-serve`).

use std::path::{Path, PathBuf};

/// The longest socket path accepted: macOS's 104-byte `sun_path` less its NUL, so a path that works on one
/// Unix works on all.
pub const MAX_SOCKET_PATH: usize = 103;

/// Why no socket directory or path could be made.
#[derive(Debug, thiserror::Error)]
pub enum SocketDirError {
    /// The directory could not be created or protected.
    #[error("cannot create a private directory for children's sockets in {}", .parent.display())]
    Create {
        /// Where it was to be created.
        parent: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The socket's path is longer than a socket address holds.
    #[error("the socket path {} is {len} bytes, longer than a Unix socket address holds ({MAX_SOCKET_PATH})", .path.display())]
    TooLong {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

impl SocketDirError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SocketDirError::Create { .. } => "check that TMPDIR (or /tmp) exists and is writable".into(),
            SocketDirError::TooLong { .. } => "set TMPDIR to a shorter directory, e.g. `TMPDIR=/tmp`".into(),
        })
    }
}

/// A private directory of sockets, removed (with whatever is left in it) when dropped.
#[derive(Debug)]
pub struct SocketDir {
    dir: tempfile::TempDir,
}

impl SocketDir {
    /// Creates `<parent>/<prefix>XXXXXX` with mode 0700.
    pub fn create(parent: &Path, prefix: &str) -> Result<SocketDir, SocketDirError> {
        let fail = |source| SocketDirError::Create { parent: parent.to_path_buf(), source };
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent).map_err(fail)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
        Ok(SocketDir { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The path of socket `name` in here (letters, digits, `.`, `-` and `_` only), if it fits.
    pub fn socket(&self, name: &str) -> Result<PathBuf, SocketDirError> {
        debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
        let path = self.dir.path().join(name);
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(SocketDirError::TooLong { path, len });
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_private_and_goes_away() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = SocketDir::create(parent.path(), "pdp-").expect("create");
        let kept = dir.path().to_path_buf();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&kept).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert_eq!(dir.socket("a.sock").expect("fits"), kept.join("a.sock"));
        drop(dir);
        assert!(!kept.exists());
    }

    #[test]
    fn a_path_too_long_for_a_socket_address_is_refused() {
        let parent = tempfile::tempdir().expect("tempdir");
        let deep = parent.path().join("x".repeat(90));
        std::fs::create_dir_all(&deep).expect("mkdir");
        let dir = SocketDir::create(&deep, "pdp-").expect("create");
        let err = dir.socket("executor-7-10-0.sock").unwrap_err();
        assert!(matches!(err, SocketDirError::TooLong { .. }), "{err}");
        assert!(err.hint().is_some_and(|h| h.contains("TMPDIR")));
    }
}
