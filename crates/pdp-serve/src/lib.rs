//! `pdp serve`: the HTTPS data proxy. One listener, one auth layer, one supervisor per kind of child,
//! and a router per Prisma protocol (Prisma 7's query-plan-executor protocol here; 4.x–6.x's Data Proxy
//! protocol plugs in beside it). The binary builds [`Options`] from the resolved config, calls
//! [`Server::start`], prints what [`Started`] says, and runs until its shutdown future resolves.
//!
//! Deliberately not here: printing (the binary renders [`Started`] and [`Summary`]; runtime events are
//! `tracing` events the binary formats), config parsing (`pdp-config`), downloads at request time beyond
//! provisioning an executor release on first use (bounded by the engine start timeout).

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod access;
pub mod auth;
pub mod budget;
pub mod conn;
pub mod context;
pub mod dbconns;
pub mod dp1;
pub mod engine;
pub mod engine_metrics;
pub mod executor;
pub mod kit;
pub mod metrics;
pub mod qpe;
pub mod server;
pub mod status;
pub mod supervisor;
pub mod tls;
pub mod window;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulShutdown;
use pdp_config::DatabaseUrl;
use pdp_toolchain::embedded::{self, Embedded, EmbeddedError};
use pdp_toolchain::sockets::{SocketDir, SocketDirError};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::KeySet;
use crate::context::{Context, Settings};
use crate::dp1::Dp1;
use crate::kit::Kit;
use crate::metrics::Metrics;
use crate::qpe::Qpe;
use crate::server::{App, Transport};

/// The proxy's worker threads: `[serve] threads`, else half the CPUs this process may use, at least one.
///
/// Every request's expensive part runs in a child (a single-threaded engine or executor) on the same
/// machine; a proxy thread per core would compete with them for the cores and cost more throughput than it
/// adds (measured in `cargo xtask bench serve-dp1`; ARCHITECTURE.md, "Decisions and why").
pub fn worker_threads(configured: Option<u32>) -> usize {
    match configured {
        Some(n) => usize::try_from(n).unwrap_or(1).max(1),
        None => std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1),
    }
}

/// Children per key (`[serve] children`): as configured, else the CPUs pdp may use (what
/// `available_parallelism` counts, cgroup quotas included) less pdp's own worker threads (`threads`, the
/// same way resolved), at least 1: 1 on 1 and 2 cores, 2 on 4, 4 on 8 with the default threads. Measured on
/// 2 cores, a second child there brought 0.97× the throughput for 1.36× the CPU per request.
pub fn pool_size(configured: Option<u32>, threads: Option<u32>) -> usize {
    match configured {
        Some(n) => usize::try_from(n).unwrap_or(1).max(1),
        None => {
            let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            cpus.saturating_sub(worker_threads(threads)).max(1)
        }
    }
}

/// How clients' connections are secured.
#[derive(Clone, Debug)]
pub enum TlsMode {
    /// A local CA and certificate under this directory, created once.
    Auto {
        /// `<state>/tls`.
        dir: PathBuf,
        /// Host names beyond localhost the certificate must cover (the public URL's).
        hosts: Vec<String>,
    },
    /// These files, reloaded when they change.
    Files {
        /// PEM chain.
        cert: PathBuf,
        /// PEM key.
        key: PathBuf,
    },
    /// Plain HTTP.
    Off,
}

/// The database children connect to.
#[derive(Clone, Debug)]
pub enum Database {
    /// A configured URL.
    Url(DatabaseUrl),
    /// The embedded PostgreSQL.
    Embedded(embedded::Options),
}

/// Everything `pdp serve` needs, resolved.
#[derive(Clone)]
pub struct Options {
    /// Main listen address.
    pub listen: SocketAddr,
    /// Separate plain-HTTP address for `/metrics` (no key); `None`: `/metrics` on the main one, with a key.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS.
    pub tls: TlsMode,
    /// Accepted keys.
    pub keys: KeySet,
    /// Where the access log goes.
    pub access_log: Arc<dyn access::AccessLog>,
    /// What requests and children share: limits, tools, log level, temporary directory.
    pub settings: Settings,
    /// `[serve] shutdown-timeout`.
    pub shutdown_timeout: Duration,
    /// The project's Prisma version.
    pub project_version: String,
    /// Whether the project's clients speak the executor protocol (7.x): its executor is started at once.
    pub project_uses_executor: bool,
    /// The database.
    pub database: Database,
    /// The folder of the Prisma schema (relative SQLite paths).
    pub schema_dir: PathBuf,
    /// The URL clients reach pdp at; a port 0 (from `--listen …:0`) becomes the bound port.
    pub public_url: url::Url,
    /// Prisma 4.x–6.x engines.
    pub dp1: dp1::Dp1Options,
    /// `[serve.cluster]`, when this pdp is one of several replicas.
    pub cluster: Option<ClusterOptions>,
}

/// `[serve.cluster]`, resolved.
#[derive(Clone)]
pub struct ClusterOptions {
    /// The shared secret.
    pub secret: pdp_config::Secret,
    /// This replica's cluster address, as peers reach it.
    pub advertise: SocketAddr,
    /// Where the cluster listener binds.
    pub listen: SocketAddr,
    /// The peers (`host:port`; names resolved when needed).
    pub peers: Vec<String>,
}

/// Why `pdp serve` did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No API key configured.
    #[error("`[serve] api-keys` is empty: pdp serve refuses to run without API keys")]
    NoKeys,
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The embedded database did not start.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// No private directory for the children's sockets.
    #[error(transparent)]
    Sockets(#[from] SocketDirError),
    /// No directory for the engines' schema files.
    #[error("cannot create a temporary directory for the query engines' schema files")]
    EngineDir(#[source] std::io::Error),
    /// The project's Prisma 7 cannot run on the configured database.
    #[error("cannot serve the project's Prisma {version}: {why}")]
    UnsupportedDatabase {
        /// The version.
        version: String,
        /// Why.
        why: String,
    },
    /// The project's executor did not start.
    #[error("the query-plan executor for the project's Prisma {version} did not start: {message}")]
    Executor {
        /// The version.
        version: String,
        /// Why (with the child's output framed).
        message: String,
        /// Whether trying again cannot help (no release for the version, no Node.js): the user's to fix.
        permanent: bool,
    },
}

impl ServeError {
    /// One line telling the user what to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            ServeError::NoKeys => Some(
                "make a key with `pdp keys new` and list it: `api-keys = [\"env:PDP_API_KEY\"]` or its `sha256:` form".into(),
            ),
            ServeError::Tls(e) => e.hint(),
            ServeError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
                Some("another process listens there: stop it, or change `[serve] listen` (PDP_LISTEN, --listen)".into())
            }
            ServeError::Bind { .. } => Some("check `[serve] listen` (PDP_LISTEN, --listen)".into()),
            ServeError::Embedded(e) => e.hint(),
            ServeError::Sockets(e) => e.hint(),
            ServeError::EngineDir(_) => Some("check that TMPDIR (or /tmp) exists and is writable".into()),
            ServeError::UnsupportedDatabase { .. } => Some(
                "use PostgreSQL or MySQL/MariaDB for a Prisma 7 project (`[database] url`), or Prisma 6.19 with `[serve] engine = \"wasm\"` for SQLite".into(),
            ),
            ServeError::Executor { .. } => Some(
                "the executor's output is above; `pdp doctor` checks Node.js and the database, `pdp engines fetch` provisions the executor ahead".into(),
            ),
        }
    }

    /// Whether the user can fix it by changing input (exit code 2) rather than it being a failure of
    /// the machine or of a child (exit code 1), variant by variant.
    pub fn is_user_error(&self) -> bool {
        match self {
            // A missing key, or an address that is taken or not this machine's: the configuration.
            ServeError::NoKeys | ServeError::Bind { .. } | ServeError::UnsupportedDatabase { .. } => true,
            ServeError::Tls(e) => e.is_user_error(),
            ServeError::Embedded(e) => e.is_user_error(),
            // A TMPDIR too long for socket paths is the user's to shorten; one that cannot be written is
            // the machine's.
            ServeError::Sockets(e) => matches!(e, SocketDirError::TooLong { .. }),
            ServeError::EngineDir(_) => false,
            ServeError::Executor { permanent, .. } => *permanent,
        }
    }
}

/// What can be refused before anything starts: Prisma 7 on a database its executor has no driver for.
/// `start` runs it first; the binary runs it before it announces what it starts.
pub fn preflight(options: &Options) -> Result<(), Box<ServeError>> {
    if options.project_uses_executor
        && let Database::Url(url) = &options.database
        && let Some(why) = executor::unsupported_database(url.provider())
    {
        return Err(Box::new(ServeError::UnsupportedDatabase { version: options.project_version.clone(), why }));
    }
    Ok(())
}

/// What the binary tells the user once serving.
#[derive(Debug)]
pub struct Started {
    /// The bound address.
    pub addr: SocketAddr,
    /// The metrics address, when separate.
    pub metrics_addr: Option<SocketAddr>,
    /// The cluster listener's address and the advertised one, with replicas.
    pub cluster: Option<(SocketAddr, SocketAddr)>,
    /// TLS as set up.
    pub tls: TlsStarted,
    /// The database children use (redacted when shown).
    pub database: DatabaseUrl,
    /// The embedded database's data directory, when it is used.
    pub embedded_dir: Option<PathBuf>,
    /// Whether the embedded database was another pdp's, reused.
    pub embedded_shared: bool,
    /// The executor started for the project's version, if any.
    pub executor: Option<String>,
    /// How many keys are accepted.
    pub keys: usize,
    /// The URL clients reach pdp at, with the bound port when `listen` asked for port 0.
    pub public_url: url::Url,
    /// The private directory of the children's sockets.
    pub socket_dir: PathBuf,
    /// Client connections served at once.
    pub max_connections: u32,
    /// `[serve.limits] max-connections` when the open-file limit forced fewer: (configured, the limit).
    pub max_connections_reduced: Option<(u32, u64)>,
    /// Whether the project's 4.x–6.x clients are served by Prisma's native query engines, which listen on
    /// loopback TCP (they have no other way) where any local process reaches them without a key.
    pub native_engines_on_tcp: bool,
    /// Why the project's own native query engine cannot start (not in the engines cache), with the fix.
    pub missing_project_engine: Option<String>,
}

/// TLS as set up.
#[derive(Debug)]
pub enum TlsStarted {
    /// The local CA.
    Auto {
        /// Its files.
        paths: tls::AutoPaths,
        /// Whether they were created now.
        outcome: tls::AutoOutcome,
    },
    /// Files, watched.
    Files {
        /// The certificate file.
        cert: PathBuf,
    },
    /// Plain HTTP.
    Off,
}

/// How the run ended.
#[derive(Debug)]
pub struct Summary {
    /// Transactions still open at the deadline.
    pub cut_transactions: Vec<String>,
    /// Whether requests were still running at the deadline.
    pub cut_requests: bool,
    /// How long shutdown took.
    pub took: Duration,
}

/// A started proxy.
pub struct Server {
    started: Started,
    app: Arc<App>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    peer_listener: Option<TcpListener>,
    transport: Transport,
    tls_watch: Option<(tls::Current, PathBuf, PathBuf)>,
    embedded: Option<Embedded>,
    shutdown_timeout: Duration,
    slots: Arc<tokio::sync::Semaphore>,
}

/// How many client connections one pdp serves at once: the configured maximum, within the open-file
/// limit (raised to its hard value first, as nginx's `worker_rlimit_nofile` does), less what children,
/// the database and pdp's own files need.
struct ConnectionBudget {
    max: u32,
    reduced: Option<(u32, u64)>,
}

/// Descriptors kept back from client connections: children's sockets and pipes, pooled connections to
/// children and the database, TLS and log files.
const RESERVED_FDS: u64 = 512;

fn connection_budget(configured: u32) -> ConnectionBudget {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => return ConnectionBudget { max: configured, reduced: None },
    };
    let room = u32::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(u32::MAX).max(1);
    if room < configured {
        ConnectionBudget { max: room, reduced: Some((configured, soft)) }
    } else {
        ConnectionBudget { max: configured, reduced: None }
    }
}

impl Server {
    /// Sets up TLS, binds, starts the embedded database if configured and the project's executor, and
    /// returns without serving yet.
    pub async fn start(options: Options) -> Result<Server, ServeError> {
        if options.keys.is_empty() {
            return Err(ServeError::NoKeys);
        }
        preflight(&options).map_err(|e| *e)?;
        let (transport, tls_started, tls_watch) = match &options.tls {
            TlsMode::Auto { dir, hosts } => {
                let (paths, outcome) = tls::ensure_auto(dir, hosts)?;
                let loaded = tls::load(&paths.cert, &paths.key)?;
                (Transport::Tls(tls::Current::new(loaded)), TlsStarted::Auto { paths, outcome }, None)
            }
            TlsMode::Files { cert, key } => {
                let current = tls::Current::new(tls::load(cert, key)?);
                (
                    Transport::Tls(current.clone()),
                    TlsStarted::Files { cert: cert.clone() },
                    Some((current, cert.clone(), key.clone())),
                )
            }
            TlsMode::Off => (Transport::Plain, TlsStarted::Off, None),
        };
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Bind { addr: options.listen, source })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: options.listen, source })?;
        let metrics_listener = match options.metrics_listen {
            Some(m) => Some(TcpListener::bind(m).await.map_err(|source| ServeError::Bind { addr: m, source })?),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let peer_listener = match &options.cluster {
            Some(c) => {
                Some(TcpListener::bind(c.listen).await.map_err(|source| ServeError::Bind { addr: c.listen, source })?)
            }
            None => None,
        };
        let cluster_addrs = options
            .cluster
            .as_ref()
            .zip(peer_listener.as_ref().and_then(|l| l.local_addr().ok()))
            .map(|(c, bound)| (bound, c.advertise));
        let mut public_url = options.public_url.clone();
        if public_url.port() == Some(0) {
            let _ = public_url.set_port(Some(addr.port()));
        }

        let (database, embedded) = match &options.database {
            // Children run in directories of their own: a relative SQLite path is made absolute here,
            // against the schema's datasource directory, so every child opens the file `pdp migrate` wrote.
            Database::Url(url) => (pdp_migrate::db::with_absolute_sqlite_path(url, &options.schema_dir), None),
            Database::Embedded(opts) => {
                let npm = options.settings.npm.clone();
                let e = embedded::start(opts, move || {
                    npm.ok_or(pdp_toolchain::npm::NpmError::NotFound { program: "npm", tool: "PGlite".into() })
                })
                .await?;
                (e.url().clone(), Some(e))
            }
        };
        let sockets = match SocketDir::create(&options.settings.temp_dir, "pdp-") {
            Ok(dir) => dir,
            Err(e) => {
                if let Some(db) = embedded {
                    db.stop().await;
                }
                return Err(e.into());
            }
        };
        let cx = Context::new(options.settings.clone(), database.clone(), Arc::new(Metrics::new()), sockets);
        let version = options.project_version.clone();
        let qpe = Qpe::new(cx.clone(), version.clone(), options.project_uses_executor);
        let stop_all = |qpe: Qpe, embedded: Option<Embedded>| async move {
            qpe.shutdown().await;
            if let Some(e) = embedded {
                e.stop().await;
            }
        };
        let dp1 = match Dp1::new(options.dp1.clone(), cx.clone(), version.clone(), public_url.clone()) {
            Ok(dp1) => dp1,
            Err(e) => {
                stop_all(qpe, embedded).await;
                return Err(ServeError::EngineDir(e));
            }
        };
        let executor = if options.project_uses_executor {
            match qpe.project_ready().await {
                Ok(()) => Some(version.clone()),
                Err(e) => {
                    dp1.shutdown().await;
                    stop_all(qpe, embedded).await;
                    return Err(ServeError::Executor { version, message: e.message.clone(), permanent: e.permanent });
                }
            }
        } else {
            None
        };
        let connections = connection_budget(options.settings.limits.max_connections);
        cx.metrics.connections_max.set(i64::from(connections.max));
        let db_target = dbconns::target(&cx.database);
        let app = Arc::new(App {
            tls: match &transport {
                Transport::Tls(current) => Some(current.clone()),
                Transport::Plain => None,
            },
            db_target,
            started: std::time::Instant::now(),
            last_ping: std::sync::Mutex::new(None),
            pinging: tokio::sync::Mutex::new(()),
            keys: options.keys.clone(),
            access: options.access_log.clone(),
            metrics_on_main: options.metrics_listen.is_none(),
            schema_dir: options.schema_dir.clone(),
            kit: Kit::new(
                cx,
                options.cluster.as_ref().map(|c| {
                    // No transaction outlives its maximum timeout (plus its wait to start).
                    let limits = &options.settings.limits;
                    let max_age =
                        limits.transaction_max_timeout + limits.transaction_max_wait + Duration::from_secs(60);
                    kit::Cluster::new(&c.secret, c.advertise, c.peers.clone(), max_age)
                }),
            ),
            qpe,
            dp1,
        });
        let started = Started {
            addr,
            metrics_addr,
            cluster: cluster_addrs,
            tls: tls_started,
            database,
            embedded_dir: embedded.as_ref().map(|e| e.data_dir().to_path_buf()),
            embedded_shared: embedded.as_ref().is_some_and(|e| !e.owned()),
            executor,
            keys: options.keys.len(),
            public_url,
            socket_dir: app.kit.cx.sockets.path().to_path_buf(),
            max_connections: connections.max,
            max_connections_reduced: connections.reduced,
            native_engines_on_tcp: !options.project_uses_executor
                && options.dp1.engine == pdp_config::QueryEngine::Native,
            missing_project_engine: app.dp1.missing_project_engine_at_start(),
        };
        Ok(Server {
            started,
            app,
            listener,
            metrics_listener,
            peer_listener,
            transport,
            tls_watch,
            embedded,
            shutdown_timeout: options.shutdown_timeout,
            slots: Arc::new(tokio::sync::Semaphore::new(usize::try_from(connections.max).unwrap_or(usize::MAX))),
        })
    }

    /// What was set up.
    pub fn started(&self) -> &Started {
        &self.started
    }

    /// Serves until `shutdown` resolves, then drains within the shutdown timeout and stops the children.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Summary {
        let Server {
            app,
            listener,
            metrics_listener,
            peer_listener,
            transport,
            tls_watch,
            mut embedded,
            shutdown_timeout,
            slots,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let accept = tokio::spawn(server::accept_loop(
            listener,
            transport,
            app.clone(),
            graceful.clone(),
            stop_rx.clone(),
            slots,
        ));
        let metrics_task =
            metrics_listener.map(|l| tokio::spawn(server::metrics_loop(l, app.clone(), stop_rx.clone())));
        let peer_task = peer_listener.map(|l| tokio::spawn(server::peer_loop(l, app.clone(), stop_rx.clone())));
        let reload =
            tls_watch.map(|(current, cert, key)| tokio::spawn(tls::watch(current, cert, key, Duration::from_secs(2))));
        let sweeper = tokio::spawn(server::sweep_loop(app.clone()));

        let db_exit = async {
            match embedded.as_mut() {
                Some(e) if e.owned() => e.exited().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown => tracing::info!(target: "pdp::serve", "shutting down: finishing open transactions and requests (up to {}s)", shutdown_timeout.as_secs()),
            status = db_exit => tracing::error!(target: "pdp::serve", "the embedded PostgreSQL exited ({status}); shutting down"),
        }
        let started = Instant::now();
        let cut_transactions = app.kit.txs.drain(started, shutdown_timeout).await;
        stop_tx.send_replace(true);
        let _ = accept.await;
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
        if let Some(t) = peer_task {
            let _ = t.await;
        }
        let left = shutdown_timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(200));
        let cut_requests = match Arc::try_unwrap(graceful) {
            Ok(g) => tokio::time::timeout(left, g.shutdown()).await.is_err(),
            Err(_) => false,
        };
        for id in &cut_transactions {
            tracing::warn!(target: "pdp::serve", transaction = %id, "cut at the shutdown deadline: the database rolls it back");
        }
        if cut_requests {
            tracing::warn!(target: "pdp::serve", "requests were still running at the shutdown deadline and were cut");
        }
        sweeper.abort();
        if let Some(r) = reload {
            r.abort();
        }
        app.qpe.shutdown().await;
        app.dp1.shutdown().await;
        if let Some(e) = embedded {
            e.stop().await;
        }
        Summary { cut_transactions, cut_requests, took: started.elapsed() }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn worker_threads_follow_the_config_else_half_the_cpus() {
        assert_eq!(super::worker_threads(Some(3)), 3);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(super::worker_threads(None), (cpus / 2).max(1));
    }
}
