//! What every part of the running proxy borrows, declared once: `[serve]`'s settings for requests and
//! children ([`Settings`], from the binary), and, once the database is up, the [`Context`] built from them
//! in `Server::start` (the database URL children connect to, supervision timing, pdp's metrics, and the
//! private directory where every child of pdp's own listens on a Unix socket). The
//! dispatcher, the protocol routers, the proxy kit and the launchers of executors and engines all hold
//! the same `Arc<Context>`.
//!
//! Deliberately not here: per-protocol settings (`dp1::Dp1Options`), listener and TLS settings (`Options`).

use std::path::PathBuf;
use std::sync::Arc;

use sha2::Digest;
use std::time::Duration;

use pdp_config::{DatabaseUrl, Limits};
use pdp_toolchain::npm::Npm;
use pdp_toolchain::sockets::{SocketDir, SocketDirError};

use crate::budget::Budget;
use crate::metrics::Metrics;
use crate::supervisor::Timing;

/// `[serve]`'s settings that requests and children share.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `[serve.limits]`.
    pub limits: Limits,
    /// `[serve.cache]`.
    pub cache: pdp_config::CacheConfig,
    /// pdp's cache root (tools, engines).
    pub cache_root: PathBuf,
    /// `node`, if found.
    pub node: Option<PathBuf>,
    /// npm, if found.
    pub npm: Option<Npm>,
    /// The children's own log level.
    pub log_level: String,
    /// Where temporary files go (`TMPDIR`, resolved by the config).
    pub temp_dir: PathBuf,
    /// Children per executor version or WASM engine key (`[serve] children`, resolved).
    pub children: usize,
    /// Benchmarks only (`PDP_BENCH_CHILD_TCP`): children also listen on a loopback TCP port, which pdp
    /// itself never uses.
    pub bench_child_tcp: bool,
}

/// The running proxy's shared settings and services.
pub struct Context {
    /// `[serve]`'s settings.
    pub settings: Settings,
    /// The database every child connects to (the embedded one's address once it runs).
    pub database: DatabaseUrl,
    /// How children are supervised.
    pub timing: Timing,
    /// pdp's metrics.
    pub metrics: Arc<Metrics>,
    /// The private (0700) directory of the children's sockets, removed when pdp stops.
    pub sockets: SocketDir,
    /// The database connections every child of every kind shares (`[serve.limits] connection-limit`).
    pub budget: Arc<Budget>,
    /// SHA-256 of the database URL: what names the database in a cache key (never the URL itself).
    database_key: [u8; 32],
}

impl Context {
    /// The context for `settings` and `database`; supervision timing follows from the limits.
    pub fn new(settings: Settings, database: DatabaseUrl, metrics: Arc<Metrics>, sockets: SocketDir) -> Arc<Context> {
        let limits = &settings.limits;
        // An interactive transaction is never idle longer than its own maximum, so a child with one open
        // is never stopped for idleness.
        let idle_timeout = limits.engine_idle_timeout.max(limits.transaction_max_timeout + Duration::from_secs(5));
        let timing = Timing {
            start_timeout: limits.engine_start_timeout,
            idle_timeout,
            stop_grace: Duration::from_secs(5),
            quiet_after: limits.transaction_max_wait + limits.transaction_max_timeout,
        };
        let database_key = sha2::Sha256::digest(database.expose().as_bytes()).into();
        let budget = Budget::new(limits.connection_limit as usize, limits.on_demand_connections as usize);
        Arc::new(Context { settings, database, timing, metrics, sockets, budget, database_key })
    }

    /// What names the database in a cache key (a digest of its URL).
    pub fn database_fingerprint(&self) -> &[u8] {
        &self.database_key
    }

    /// The socket a child of `kind` for `key` listens on: `<dir>/<kind>-<key>.sock`, the key reduced to
    /// lowercase letters, digits and `-` (the file name doubles as the host name pdp's client uses).
    pub fn socket_for(&self, kind: &str, key: &str) -> Result<PathBuf, SocketDirError> {
        let mut name = String::with_capacity(kind.len() + key.len() + 6);
        name.push_str(kind);
        name.push('-');
        for c in key.chars() {
            let c = c.to_ascii_lowercase();
            let c = if c.is_ascii_alphanumeric() { c } else { '-' };
            if !(c == '-' && name.ends_with('-')) {
                name.push(c);
            }
        }
        let name = name.trim_end_matches('-');
        self.sockets.socket(&format!("{name}.sock"))
    }

    /// `[serve.limits]`.
    pub fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    /// The bench-only TCP listener's setting for a child's command (removed from what the child would
    /// inherit unless benchmarks asked for it).
    pub fn bench_tcp(&self, cmd: pdp_toolchain::process::Cmd) -> pdp_toolchain::process::Cmd {
        if self.settings.bench_child_tcp {
            cmd.env("PDP_BENCH_TCP", "127.0.0.1:0")
        } else {
            cmd.env_remove("PDP_BENCH_TCP")
        }
    }
}
