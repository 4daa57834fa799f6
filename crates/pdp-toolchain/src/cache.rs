//! pdp's download cache on disk: where engine files, engine-hash records and tools live, the lock files
//! that serialise writers across processes, and the write-then-rename that keeps unverified data away
//! from final paths.
//!
//! Layout under the cache root (`[engines] cache`, `PDP_CACHE_DIR`):
//!
//! ```text
//! engines/versions/<prisma version>          the engine hash of that version, one line
//! engines/<hash>/<target>/<file>             a verified, executable engine (its presence means "verified")
//! engines/<hash>/<target>/<file>.sha256      the SHA-256 of that file, as checked at download
//! engines/<hash>/<target>/.<file>.lock       held while one process downloads the file
//! ```
//!
//! Deliberately not here: eviction (the cache only grows; delete a hash directory to reclaim space) and
//! any network IO.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use pdp_config::PrismaVersion;

use crate::engines::{EngineError, EngineHash};

/// The cache root and its layout.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at `root` (created lazily, on first write).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the engine hash of `version` is recorded.
    pub fn hash_record(&self, version: &PrismaVersion) -> PathBuf {
        self.root.join("engines").join("versions").join(version.to_string())
    }

    /// Where a verified engine file lives.
    pub fn engine_path(&self, hash: &EngineHash, target: &str, file: &str) -> PathBuf {
        self.root.join("engines").join(hash.as_str()).join(target).join(file)
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
pub enum TryLock {
    /// The lock is ours.
    Acquired(FileLock),
    /// Another process holds it; call [`lock_blocking`] to wait.
    Busy,
}

fn open_lock(path: &Path) -> Result<File, EngineError> {
    let io = |source| EngineError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).map_err(io)?;
    }
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io)
}

/// Takes the lock at `path` if nobody holds it.
pub fn try_lock(path: &Path) -> Result<TryLock, EngineError> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(TryLock::Acquired(FileLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(TryLock::Busy),
        Err(std::fs::TryLockError::Error(source)) => Err(EngineError::Io { path: path.to_path_buf(), source }),
    }
}

/// Waits for the lock at `path` (blocking: run it off the async executor).
pub fn lock_blocking(path: &Path) -> Result<FileLock, EngineError> {
    let file = open_lock(path)?;
    file.lock().map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
    Ok(FileLock { _file: file })
}

/// Writes `bytes` to `path` whole or not at all: a temp file in the same directory, flushed, then renamed.
/// `mode` sets Unix permissions on the new file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), EngineError> {
    let io = |source| EngineError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::Builder::new().prefix(".pdp-").suffix(".tmp").tempfile_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    if let Some(mode) = mode {
        set_mode(tmp.as_file(), mode).map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
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
    fn layout() {
        let cache = Cache::new("/c");
        let hash: EngineHash = "4bc8b6e1b66cb932731fb1bdbbc550d1e010de81".parse().expect("hash");
        let v: PrismaVersion = "4.16.2".parse().expect("version");
        assert_eq!(cache.hash_record(&v), Path::new("/c/engines/versions/4.16.2"));
        let p = cache.engine_path(&hash, "linux-static-x64", "query-engine");
        assert_eq!(p, Path::new("/c/engines/4bc8b6e1b66cb932731fb1bdbbc550d1e010de81/linux-static-x64/query-engine"));
        assert_eq!(
            lock_path(&p),
            Path::new("/c/engines/4bc8b6e1b66cb932731fb1bdbbc550d1e010de81/linux-static-x64/.query-engine.lock")
        );
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
    fn atomic_write_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/file");
        write_atomic(&path, b"one", Some(0o755)).expect("write");
        write_atomic(&path, b"two", None).expect("rewrite");
        assert_eq!(fs_err::read_to_string(&path).expect("read"), "two");
        let names: Vec<_> = fs_err::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["file"]);
    }
}
