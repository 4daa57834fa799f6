//! Files written so that no reader ever sees half of one, and lock files that serialise writers across
//! processes: `write_atomic` (a temp file in the same directory, flushed, then renamed), `write_if_changed`
//! for launcher scripts, exclusive advisory locks that the OS releases if the holder dies, and Unix modes.
//! Every error carries the path it is about.
//!
//! Deliberately not here: where things live (the engines cache layout is in [`crate::engines`], tools in
//! [`crate::npm`]), and any network IO.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file or directory that could not be read, written or locked.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", .path.display())]
pub struct FileError {
    /// What pdp was doing: `write`, `lock`, `create`.
    pub action: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    fn new(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError { action, path, source }
    }
}

/// The lock file guarding `path` (`.<name>.lock` beside it).
pub fn lock_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.lock"))
}

/// An exclusive advisory lock, held until dropped (the OS also releases it if the process dies).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// What [`try_lock`] found.
#[derive(Debug)]
pub enum TryLock {
    /// The lock is ours.
    Acquired(FileLock),
    /// Another process holds it; call [`lock_blocking`] to wait.
    Busy,
}

fn open_lock(path: &Path) -> Result<File, FileError> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).map_err(FileError::new("create", dir))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(FileError::new("lock", path))
}

/// Takes the lock at `path` if nobody holds it.
pub fn try_lock(path: &Path) -> Result<TryLock, FileError> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(TryLock::Acquired(FileLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(TryLock::Busy),
        Err(std::fs::TryLockError::Error(source)) => Err(FileError::new("lock", path)(source)),
    }
}

/// Waits for the lock at `path` (blocking: run it off the async executor).
pub fn lock_blocking(path: &Path) -> Result<FileLock, FileError> {
    let file = open_lock(path)?;
    file.lock().map_err(FileError::new("lock", path))?;
    Ok(FileLock { _file: file })
}

/// Writes `bytes` to `path` whole or not at all: a temp file in the same directory, flushed, then renamed.
/// `mode` sets Unix permissions on the new file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), FileError> {
    let io = FileError::new("write", path);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir).map_err(FileError::new("create", dir))?;
    let result = (|| {
        let mut tmp = tempfile::Builder::new().prefix(".pdp-").suffix(".tmp").tempfile_in(dir)?;
        tmp.write_all(bytes)?;
        if let Some(mode) = mode {
            set_mode(tmp.as_file(), mode)?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    })();
    result.map_err(io)
}

/// Writes a file (a launcher script, a schema copy) when it is missing or differs: whole, by rename.
pub fn write_if_changed(path: &Path, content: &str) -> Result<(), FileError> {
    if fs_err::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    write_atomic(path, content.as_bytes(), None)
}

/// Sets Unix permission bits (no-op elsewhere).
pub fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_path_is_a_hidden_sibling() {
        assert_eq!(lock_path(Path::new("/c/a/query-engine")), Path::new("/c/a/.query-engine.lock"));
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/.x.lock");
        let TryLock::Acquired(held) = try_lock(&path).expect("lock") else { panic!("first lock must succeed") };
        assert!(matches!(try_lock(&path).expect("try"), TryLock::Busy));
        drop(held);
        assert!(matches!(try_lock(&path).expect("try"), TryLock::Acquired(_)));
    }

    #[test]
    fn atomic_write_leaves_no_temp_files_and_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/file");
        write_atomic(&path, b"one", Some(0o755)).expect("write");
        write_if_changed(&path, "two").expect("rewrite");
        write_if_changed(&path, "two").expect("unchanged");
        assert_eq!(fs_err::read_to_string(&path).expect("read"), "two");
        let names: Vec<_> = fs_err::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["file"]);
        // A directory where the file should go: the error names the path.
        let blocked = dir.path().join("a");
        let err = write_atomic(&blocked, b"x", None).unwrap_err();
        assert_eq!(err.to_string(), format!("cannot write {}", blocked.display()));
    }
}
