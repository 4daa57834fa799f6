//! Verified engine downloads: `${mirror}/all_commits/<hash>/<target>/<file>.gz` is streamed through a
//! gunzip into a temp file inside the cache while both SHA-256s are computed, checked against the two
//! published `.sha256` files, and only then renamed into place (under a per-file lock, so concurrent pdp
//! processes download each file once). Transient failures are retried with backoff; files run in parallel.
//!
//! Also the [`Reporter`] trait through which progress reaches the binary. This module never prints and
//! never reads the environment; the client comes from [`crate::http`], the cache layout from
//! [`crate::engines`], the atomic writes and locks from [`crate::files`].

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pdp_config::redact_url;
use sha2::{Digest, Sha256};

use crate::engines::{Cache, EngineError, EngineHash, EngineKind};
use crate::files::{self, FileError, TryLock};
use crate::http::{Http, HttpError, is_transient, is_transient_status};

/// Where progress goes. The binary draws bars; tests and libraries use [`Silent`].
/// `job` is the index of the job in the list given to [`Fetcher::fetch_all`].
pub trait Reporter: Sync {
    /// A download starts (or restarts after a retry); `total` is the compressed size when known.
    fn start(&self, job: usize, label: &str, total: Option<u64>) {
        let _ = (job, label, total);
    }
    /// `bytes` more compressed bytes arrived.
    fn advance(&self, job: usize, bytes: u64) {
        let _ = (job, bytes);
    }
    /// Something worth a line: a retry, waiting for another process's lock.
    fn note(&self, job: usize, message: &str) {
        let _ = (job, message);
    }
    /// The job is over (the caller reports the result).
    fn finish(&self, job: usize) {
        let _ = job;
    }
}

/// A reporter that shows nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {}

/// One engine file to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The binary target.
    pub target: String,
    /// The engine kind.
    pub kind: EngineKind,
    /// The file name (`query-engine`, `schema-engine.exe`, …).
    pub file: String,
}

impl Job {
    /// `target/file`, for progress lines.
    pub fn label(&self) -> String {
        format!("{}/{}", self.target, self.file)
    }
}

/// How a file came to be in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum How {
    /// It was there already; nothing was requested.
    Cached,
    /// Downloaded and verified now.
    Downloaded {
        /// Size of the unpacked file.
        bytes: u64,
        /// Attempts it took.
        attempts: u32,
        /// Wall time of the successful attempt.
        elapsed: Duration,
    },
}

/// A file that is in the cache now.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The job.
    pub job: Job,
    /// Its path in the cache.
    pub path: PathBuf,
    /// How it got there.
    pub how: How,
}

/// Fetches engine files of one commit from one mirror into one cache.
#[derive(Debug)]
pub struct Fetcher<'a> {
    /// The HTTP client.
    pub http: &'a Http,
    /// The cache.
    pub cache: &'a Cache,
    /// The mirror's base URL.
    pub mirror: &'a url::Url,
    /// The commit.
    pub hash: &'a EngineHash,
    /// Never touch the network.
    pub offline: bool,
}

impl Fetcher<'_> {
    /// The `.gz` URL of a job.
    pub fn url(&self, job: &Job) -> String {
        let base = self.mirror.as_str().trim_end_matches('/');
        format!("{base}/all_commits/{}/{}/{}.gz", self.hash, job.target, job.file)
    }

    /// Where a job's file lives in the cache.
    pub fn path(&self, job: &Job) -> PathBuf {
        self.cache.engine_path(self.hash, &job.target, &job.file)
    }

    /// Fetches every job concurrently; one result per job, in order.
    pub async fn fetch_all(&self, jobs: &[Job], reporter: &dyn Reporter) -> Vec<Result<Fetched, EngineError>> {
        let futures = jobs.iter().enumerate().map(|(i, job)| self.fetch(i, job, reporter));
        futures_util::future::join_all(futures).await
    }

    /// Makes sure one file is in the cache, downloading and verifying it when it is not.
    pub async fn fetch(&self, index: usize, job: &Job, reporter: &dyn Reporter) -> Result<Fetched, EngineError> {
        let dest = self.path(job);
        let done = |how| Ok(Fetched { job: job.clone(), path: dest.clone(), how });
        if dest.is_file() {
            return done(How::Cached);
        }
        if self.offline {
            return Err(EngineError::NotCached { engine: job.kind, target: job.target.clone(), path: dest });
        }
        let lock_path = files::lock_path(&dest);
        let _lock = match files::try_lock(&lock_path)? {
            TryLock::Acquired(lock) => lock,
            TryLock::Busy => {
                reporter.note(index, &format!("{}: waiting for another pdp downloading it", job.label()));
                let path = lock_path.clone();
                tokio::task::spawn_blocking(move || files::lock_blocking(&path))
                    .await
                    .map_err(|e| joined("lock", &lock_path, e))??
            }
        };
        // Another process may have finished it while we waited.
        if dest.is_file() {
            reporter.finish(index);
            return done(How::Cached);
        }
        let result = self.download(index, job, &dest, reporter).await;
        reporter.finish(index);
        result.and_then(done)
    }

    async fn download(
        &self,
        index: usize,
        job: &Job,
        dest: &std::path::Path,
        reporter: &dyn Reporter,
    ) -> Result<How, EngineError> {
        let url = self.url(job);
        let gz_sum_url = format!("{url}.sha256");
        let raw_sum_url = format!("{}.sha256", url.trim_end_matches(".gz"));
        let (gz_sum, raw_sum) =
            futures_util::future::join(self.checksum(job, &gz_sum_url), self.checksum(job, &raw_sum_url)).await;
        let (gz_sum, raw_sum) = (gz_sum?, raw_sum?);
        let retry = self.http.retry();
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            match self.attempt(index, job, &url, dest, attempt, reporter).await {
                Ok((tmp, gz_actual, raw_actual, bytes)) => {
                    let mismatch = |what, expected: &str, actual: String| EngineError::Checksum {
                        what,
                        engine: job.kind,
                        target: job.target.clone(),
                        url: redact_url(&url),
                        expected: expected.to_owned(),
                        actual,
                    };
                    if gz_actual != gz_sum {
                        return Err(mismatch("gzip", &gz_sum, gz_actual));
                    }
                    if raw_actual != raw_sum {
                        return Err(mismatch("unpacked", &raw_sum, raw_actual));
                    }
                    // Off the async workers: fsync blocks, and other downloads should go on meanwhile.
                    let (dest_owned, file) = (dest.to_path_buf(), job.file.clone());
                    tokio::task::spawn_blocking(move || install(tmp, &dest_owned, &file, &raw_sum))
                        .await
                        .map_err(|e| joined("write", dest, e))??;
                    return Ok(How::Downloaded { bytes, attempts: attempt, elapsed: started.elapsed() });
                }
                Err((err, transient)) => {
                    if !transient || attempt >= retry.attempts {
                        return Err(with_attempts(err, attempt));
                    }
                    let delay = retry.delay(attempt);
                    reporter.note(
                        index,
                        &format!("{}: {} — retrying in {:.1}s", job.label(), first_line(&err), delay.as_secs_f32()),
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Fetches and parses one `.sha256` file (`sha256sum` output: Prisma keeps the first token).
    async fn checksum(&self, job: &Job, url: &str) -> Result<String, EngineError> {
        let body = self.http.get_bytes(url).await?.ok_or_else(|| self.not_published(job, url))?;
        let text = String::from_utf8_lossy(&body);
        let token = text.split_whitespace().next().unwrap_or("");
        if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(token.to_ascii_lowercase())
        } else {
            Err(EngineError::BadChecksumFile { url: redact_url(url) })
        }
    }

    fn not_published(&self, job: &Job, url: &str) -> EngineError {
        EngineError::NotPublished {
            url: redact_url(url),
            target: job.target.clone(),
            engine: job.kind,
            hash: self.hash.to_string(),
        }
    }

    /// One download attempt into a temp file beside `dest`: (temp file, gzip sha256, unpacked sha256,
    /// unpacked size), or the error and whether it is worth retrying.
    async fn attempt(
        &self,
        index: usize,
        job: &Job,
        url: &str,
        dest: &std::path::Path,
        attempt: u32,
        reporter: &dyn Reporter,
    ) -> Result<(tempfile::NamedTempFile, String, String, u64), (EngineError, bool)> {
        let http_err = |source: reqwest::Error| {
            let transient = is_transient(&source);
            (HttpError::Request { url: redact_url(url), attempts: attempt, source }.into(), transient)
        };
        let resp = self.http.send_get(url).await.map_err(http_err)?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err((self.not_published(job, url), false));
        }
        if !resp.status().is_success() {
            let err = HttpError::Status { url: redact_url(url), status, attempts: attempt };
            return Err((err.into(), is_transient_status(status)));
        }
        reporter.start(index, &job.label(), resp.content_length());
        let dir = dest.parent().unwrap_or(std::path::Path::new(".")).to_path_buf();
        let io = |source| (FileError { action: "write", path: dest.to_path_buf(), source }.into(), false);
        fs_err::create_dir_all(&dir).map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", job.file))
            .suffix(".part")
            .tempfile_in(&dir)
            .map_err(io)?;
        // Gunzip, both hashes and the disk write run on a blocking worker per file, fed through a bounded
        // channel: the network keeps flowing while the CPU works, and several files use several cores.
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let worker =
            tokio::task::spawn_blocking(move || -> std::io::Result<(tempfile::NamedTempFile, String, String, u64)> {
                let sink = HashingWriter {
                    inner: std::io::BufWriter::with_capacity(256 * 1024, EarlyWriteback::new(tmp)),
                    hasher: Sha256::new(),
                    bytes: 0,
                };
                let mut decoder = flate2::write::GzDecoder::new(sink);
                let mut gz_hasher = Sha256::new();
                while let Some(chunk) = rx.blocking_recv() {
                    let chunk: bytes::Bytes = chunk;
                    gz_hasher.update(&chunk);
                    decoder.write_all(&chunk)?;
                }
                let sink = decoder.finish()?;
                let raw = hex::encode(sink.hasher.finalize());
                let tmp = sink.inner.into_inner().map_err(std::io::IntoInnerError::into_error)?.finish();
                Ok((tmp, hex::encode(gz_hasher.finalize()), raw, sink.bytes))
            });
        let mut stream = resp.bytes_stream();
        let mut network_error = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    let len = chunk.len() as u64;
                    if tx.send(chunk).await.is_err() {
                        break; // The worker stopped on a write error; it reports it below.
                    }
                    reporter.advance(index, len);
                }
                Err(e) => {
                    network_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = worker.await.map_err(|e| (joined("write", dest, e), false))?;
        if let Some(e) = network_error {
            return Err(http_err(e));
        }
        written.map_err(|e| classify_write(e, dest, url, attempt))
    }
}

/// Moves a verified temp file to its final path: executable, flushed to disk, checksum sidecar first.
fn install(tmp: tempfile::NamedTempFile, dest: &std::path::Path, file: &str, sha256: &str) -> Result<(), EngineError> {
    let io = |source| FileError { action: "write", path: dest.to_path_buf(), source };
    // Like Prisma's chmodPlusX: readable by all, executable by all.
    files::set_mode(tmp.as_file(), 0o755).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    let sidecar = dest.with_file_name(format!("{file}.sha256"));
    files::write_atomic(&sidecar, format!("{sha256}  {file}\n").as_bytes(), Some(0o644))?;
    tmp.persist(dest).map_err(|e| io(e.error))?;
    Ok(())
}

/// A blocking task that panicked or was cancelled while it worked on `path`.
fn joined(action: &'static str, path: &std::path::Path, e: tokio::task::JoinError) -> EngineError {
    FileError { action, path: path.to_path_buf(), source: std::io::Error::other(e) }.into()
}

/// A decoder error is bad data (retry: a cut-short body is often only noticed here), unless the disk failed.
fn classify_write(e: std::io::Error, dest: &std::path::Path, url: &str, attempt: u32) -> (EngineError, bool) {
    if matches!(
        e.kind(),
        std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::WriteZero
    ) {
        (EngineError::Corrupt { url: redact_url(url), attempts: attempt, source: e }, true)
    } else {
        (FileError { action: "write", path: dest.to_path_buf(), source: e }.into(), false)
    }
}

fn with_attempts(err: EngineError, attempts: u32) -> EngineError {
    match err {
        EngineError::Http(e) => EngineError::Http(e.with_attempts(attempts)),
        EngineError::Corrupt { url, source, .. } => EngineError::Corrupt { url, attempts, source },
        other => other,
    }
}

fn first_line(err: &EngineError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text.lines().next().unwrap_or_default().to_owned()
}

/// Writes to the temp file while a helper thread flushes what was written so far (`sync_data` on a
/// duplicated handle) every few MiB, so the disk works during the download instead of after it. The
/// `fsync` before the rename stays and keeps its guarantee; it just finds little left to do. (dpkg does
/// the same with `sync_file_range`, which no safe Rust wrapper exposes.)
struct EarlyWriteback {
    file: tempfile::NamedTempFile,
    written: u64,
    requested_at: u64,
    flusher: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl EarlyWriteback {
    /// Bytes between flush requests.
    const STEP: u64 = 4 * 1024 * 1024;

    fn new(file: tempfile::NamedTempFile) -> EarlyWriteback {
        // Without a second handle the writes are plain; the final fsync still makes them durable.
        let flusher = file.as_file().try_clone().ok().map(|handle| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {}
                    let _ = handle.sync_data();
                }
            });
            (tx, thread)
        });
        EarlyWriteback { file, written: 0, requested_at: 0, flusher }
    }

    /// Stops the helper (after its last flush) and hands back the file.
    fn finish(mut self) -> tempfile::NamedTempFile {
        if let Some((tx, thread)) = self.flusher.take() {
            drop(tx);
            let _ = thread.join();
        }
        self.file
    }
}

impl Write for EarlyWriteback {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.requested_at >= Self::STEP {
            self.requested_at = self.written;
            if let Some((tx, _)) = &self.flusher {
                let _ = tx.send(());
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Hashes and counts what passes through to the file.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_mirror_layout() {
        let http = Http::new(&Default::default(), Default::default()).expect("client");
        let cache = Cache::new("/c");
        let hash: EngineHash = "4bc8b6e1b66cb932731fb1bdbbc550d1e010de81".parse().expect("hash");
        let check = |mirror: &str, file: &str, expect: &str| {
            let mirror = url::Url::parse(mirror).expect("url");
            let f = Fetcher { http: &http, cache: &cache, mirror: &mirror, hash: &hash, offline: false };
            let job = Job { target: "windows".into(), kind: EngineKind::Query, file: file.into() };
            assert_eq!(f.url(&job), expect);
        };
        check(
            "https://binaries.prisma.sh",
            "query-engine.exe",
            "https://binaries.prisma.sh/all_commits/4bc8b6e1b66cb932731fb1bdbbc550d1e010de81/windows/query-engine.exe.gz",
        );
        check(
            "https://mirror.example.com/prisma/",
            "schema-engine.exe",
            "https://mirror.example.com/prisma/all_commits/4bc8b6e1b66cb932731fb1bdbbc550d1e010de81/windows/schema-engine.exe.gz",
        );
    }
}
