//! The embedded PostgreSQL: PGlite (real Postgres compiled to WASM) behind its wire-protocol server, run
//! with Node from packages provisioned through npm, data under the project's state dir. What pdp uses
//! when pdp.toml configures no database, so `pdp init && pdp migrate deploy && pdp serve` needs no server.
//!
//! One process owns a data directory at a time (a lock file); a second pdp (say `pdp migrate deploy`
//! while `pdp serve` runs) connects to the running one through the port it recorded instead of opening
//! the files twice. Deliberately not here: restarts (the caller decides), anything production-grade
//! (PGlite runs one query at a time; the docs say to configure a real database for production).

use std::path::{Path, PathBuf};
use std::time::Duration;

use pdp_config::DatabaseUrl;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, ChildStdin};

use crate::files::{self, FileError, FileLock, TryLock};
use crate::launch::{self, LaunchError};
use crate::npm::{self, Npm, NpmError, ToolSpec};
use crate::process::Cmd;

/// `@electric-sql/pglite`, pinned.
pub const PGLITE_VERSION: &str = "0.5.14";
/// `@electric-sql/pglite-socket`, pinned (its peer dependency is exactly [`PGLITE_VERSION`]).
pub const PGLITE_SOCKET_VERSION: &str = "0.2.17";

const LAUNCHER: &str = include_str!("../launchers/pglite.mjs");
const LAUNCHER_FILE: &str = "pdp-pglite.mjs";

/// The npm packages the embedded database runs from.
pub fn tool_spec() -> ToolSpec {
    ToolSpec {
        name: "pglite".into(),
        version: PGLITE_VERSION.into(),
        packages: vec![
            format!("@electric-sql/pglite@{PGLITE_VERSION}"),
            format!("@electric-sql/pglite-socket@{PGLITE_SOCKET_VERSION}"),
        ],
    }
}

/// Where the embedded database keeps its files: `<state>/pglite`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pglite")
}

/// What starting the embedded database needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The project's state dir (`.pdp`).
    pub state_dir: PathBuf,
    /// pdp's cache root, where tools are provisioned.
    pub cache_root: PathBuf,
    /// The `node` executable.
    pub node: PathBuf,
    /// How long the first start (which creates the cluster) may take.
    pub start_timeout: Duration,
}

/// The running embedded database: ours (stopped by [`Embedded::stop`] or on drop) or another pdp's.
#[derive(Debug)]
pub struct Embedded {
    url: DatabaseUrl,
    data_dir: PathBuf,
    owned: Option<Owned>,
}

#[derive(Debug)]
struct Owned {
    child: Child,
    stdin: Option<ChildStdin>,
    _lock: FileLock,
}

/// Recorded by the owner so other pdp processes can connect.
#[derive(Serialize, Deserialize)]
struct Record {
    port: u16,
    pid: u32,
}

/// Why the embedded database is not available.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Provisioning the packages failed.
    #[error("cannot provision the embedded PostgreSQL (PGlite)")]
    Provision(#[source] NpmError),
    /// The launcher could not be written, or the state dir is not writable.
    #[error("cannot prepare the embedded PostgreSQL in {}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It did not start.
    #[error("the embedded PostgreSQL (PGlite, data in {}) did not start", .dir.display())]
    Start {
        /// Its data directory.
        dir: PathBuf,
        /// What happened.
        #[source]
        source: LaunchError,
    },
    /// Its lock or its address record could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// Another pdp owns the data directory but left no usable address.
    #[error("another pdp process holds the embedded PostgreSQL in {}, but its address cannot be read", .dir.display())]
    Busy {
        /// Its data directory.
        dir: PathBuf,
    },
}

impl EmbeddedError {
    /// Whether the user can fix it (npm missing, a damaged data directory, another pdp holding it) rather
    /// than the machine failing (the state dir cannot be written).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, EmbeddedError::Io { .. } | EmbeddedError::File(_))
    }

    /// One line telling the user what to do.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            EmbeddedError::Provision(e) => {
                return e.hint().or_else(|| Some("the npm registry must be reachable once to install PGlite".into()));
            }
            EmbeddedError::Io { .. } | EmbeddedError::File(_) => {
                "check that the project's state dir (.pdp, PDP_STATE_DIR) is writable".into()
            }
            EmbeddedError::Start { .. } => {
                "the output above is PGlite's; if its data is damaged, move `.pdp/pglite` aside (it holds the embedded database) or set `[database] url`".into()
            }
            EmbeddedError::Busy { .. } => "stop the other pdp (`pdp serve`), or wait for it to finish".into(),
        })
    }
}

impl Embedded {
    /// The URL to connect with.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether this process started it (false: another pdp's was reused).
    pub fn owned(&self) -> bool {
        self.owned.is_some()
    }

    /// Waits until the embedded database exits on its own (never returns for a shared one).
    pub async fn exited(&mut self) -> String {
        match &mut self.owned {
            Some(owned) => match owned.child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            },
            None => std::future::pending().await,
        }
    }

    /// Stops it cleanly (PGlite flushes and closes its files), killing it after 10 s.
    pub async fn stop(mut self) {
        if let Some(mut owned) = self.owned.take() {
            launch::stop(&mut owned.child, owned.stdin.take(), Duration::from_secs(10)).await;
            if let Some(base) = self.data_dir.parent() {
                let _ = fs_err::remove_file(base.join("server.json"));
            }
        }
    }
}

/// Starts the embedded database (provisioning PGlite on first use), or attaches to the one another pdp
/// process runs for the same project. `npm` is called only when the packages are not cached.
pub async fn start(
    options: &Options,
    npm: impl FnOnce() -> Result<Npm, NpmError> + Send + 'static,
) -> Result<Embedded, EmbeddedError> {
    let base = dir(&options.state_dir);
    let data_dir = base.join("data");
    let record_path = base.join("server.json");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EmbeddedError::Io { path, source }
    };
    fs_err::create_dir_all(&base).map_err(io(&base))?;
    let lock_path = base.join("lock");
    let lock = match files::try_lock(&lock_path)? {
        TryLock::Acquired(lock) => lock,
        TryLock::Busy => {
            let record: Option<Record> =
                fs_err::read_to_string(&record_path).ok().and_then(|t| serde_json::from_str(&t).ok());
            return match record {
                Some(r) => Ok(Embedded { url: url_for(r.port), data_dir, owned: None }),
                None => Err(EmbeddedError::Busy { dir: data_dir }),
            };
        }
    };
    let cache_root = options.cache_root.clone();
    let installed = tokio::task::spawn_blocking(move || npm::ensure(&cache_root, &tool_spec(), npm))
        .await
        .map_err(|e| EmbeddedError::Io { path: base.clone(), source: std::io::Error::other(e) })?
        .map_err(EmbeddedError::Provision)?;
    let launcher = installed.dir.join(LAUNCHER_FILE);
    files::write_if_changed(&launcher, LAUNCHER)?;
    let cmd = Cmd::new(&options.node, "start the embedded PostgreSQL (PGlite)", &installed.dir)
        .arg(&launcher)
        .env("PDP_PGLITE_DIR", &data_dir)
        .env("PDP_PGLITE_PORT", "0")
        .env("PDP_PGLITE_MAX_CONNECTIONS", "64");
    let launched = launch::launch(&cmd, launch::pdp_ready, options.start_timeout, |line| {
        tracing::debug!(target: "pdp::embedded", "{line}");
    })
    .await
    .map_err(|source| EmbeddedError::Start { dir: data_dir.clone(), source })?;
    let port = launched.addr.port();
    let record = serde_json::to_vec(&Record { port, pid: launched.child.id().unwrap_or(0) }).unwrap_or_default();
    files::write_atomic(&record_path, &record, None)?;
    let launch::Launched { child, stdin, mut stdout, mut stderr, .. } = launched;
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                line = stdout.next_line() => match line { Ok(Some(l)) => tracing::debug!(target: "pdp::embedded", "{l}"), _ => break },
                line = stderr.next_line() => match line { Ok(Some(l)) => tracing::warn!(target: "pdp::embedded", "{l}"), _ => break },
            }
        }
    });
    Ok(Embedded { url: url_for(port), data_dir, owned: Some(Owned { child, stdin, _lock: lock }) })
}

fn url_for(port: u16) -> DatabaseUrl {
    DatabaseUrl::parse(
        &format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
        "the embedded PostgreSQL (PGlite)",
    )
    .unwrap_or_else(|e| unreachable!("a fixed postgresql URL parses: {e}"))
}
