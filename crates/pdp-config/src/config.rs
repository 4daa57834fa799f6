//! The resolved configuration's types: what every command reads once `pdp.toml`, the environment and
//! the flags are layered (`resolve` builds them; `lib.rs` re-exports them), including the database URL
//! that never shows its password and the Prisma provider it implies.
//!
//! Deliberately not here: parsing and validation (`raw`, `resolve`), defaults (`resolve::defaults`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{ConfigError, Problem};
use crate::prisma::PrismaVersion;
use crate::secret::{Secret, redact_url};

/// The fully resolved configuration of one project.
#[derive(Debug)]
pub struct Config {
    /// The `pdp.toml` this came from.
    pub file: PathBuf,
    /// The project root: the directory holding `pdp.toml`. Relative paths are resolved against it.
    pub root: PathBuf,
    /// Local state (embedded database, local CA): `.pdp/` under the root unless overridden.
    pub state_dir: PathBuf,
    /// `[prisma]`.
    pub prisma: PrismaConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[engines]`.
    pub engines: EnginesConfig,
    /// `[client]`.
    pub client: ClientConfig,
    /// `[serve]`.
    pub serve: ServeConfig,
    /// `[migrate]`.
    pub migrate: MigrateConfig,
    /// How pdp reaches the network (proxies, the npm registry), from the environment.
    pub network: NetworkConfig,
    /// Where temporary files go: `TMPDIR`, else the system's default.
    pub temp_dir: PathBuf,
    /// Things that are allowed but probably not what the user wants (shown by `pdp doctor`).
    pub warnings: Vec<Problem>,
}

/// `[prisma]`: which Prisma, and where the project's schema and migrations are.
#[derive(Debug)]
pub struct PrismaConfig {
    /// The Prisma version; decides generation, protocol and engines.
    pub version: PrismaVersion,
    /// Absolute path of the schema: a `.prisma` file, or a folder of them (a multi-file schema).
    pub schema: PathBuf,
    /// Absolute path of the migrations directory when `[prisma] migrations` sets one; `None` means Prisma
    /// Migrate's default beside the schema, which depends on the schema's files (the binary's
    /// `commands::schema` decides it).
    pub migrations: Option<PathBuf>,
}

/// `[database]`.
#[derive(Debug)]
pub struct DatabaseConfig {
    /// The database pdp connects to: use [`DatabaseConfig::connect_to`] in a command that connects.
    pub url: DatabaseSetting,
}

/// What `[database] url` (or `PDP_DATABASE_URL`, `--database-url`) says.
#[derive(Clone, Debug)]
pub enum DatabaseSetting {
    /// No URL anywhere: the embedded PostgreSQL under the state dir.
    Embedded,
    /// A URL.
    Url(DatabaseUrl),
    /// `env:NAME` with `NAME` not set: an error for the commands that connect, nothing for the others.
    Unset(UnsetSecret),
}

impl DatabaseConfig {
    /// The database a command that connects uses: `Ok(None)` is the embedded one, and an `env:` reference
    /// to a variable that is not set is that command's configuration error.
    pub fn connect_to(&self) -> Result<Option<&DatabaseUrl>, ConfigError> {
        match &self.url {
            DatabaseSetting::Embedded => Ok(None),
            DatabaseSetting::Url(url) => Ok(Some(url)),
            DatabaseSetting::Unset(unset) => Err(unset.error()),
        }
    }

    /// The configured URL, if one is set (for showing it; a command that connects uses `connect_to`).
    pub fn configured(&self) -> Option<&DatabaseUrl> {
        match &self.url {
            DatabaseSetting::Url(url) => Some(url),
            _ => None,
        }
    }
}

/// A secret `pdp.toml` refers to as `env:NAME` that neither the environment nor `.env` holds. Resolving
/// the file does not fail on it: only a command that uses the setting does (migrate and doctor need the
/// database URL, serve the API keys), so `pdp build-client`, `engines`, `init` and `config` run in CI with
/// no secret at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsetSecret {
    /// The variable.
    pub var: String,
    /// The problem, naming the key, its position and the variable.
    pub problem: Problem,
}

impl UnsetSecret {
    /// The error a command that needs this secret fails with.
    pub fn error(&self) -> ConfigError {
        ConfigError::Invalid(vec![self.problem.clone()])
    }
}

/// A database URL with its provider, never displayed unredacted.
#[derive(Clone, Debug)]
pub struct DatabaseUrl {
    secret: Secret,
    redacted: String,
    provider: Provider,
    /// Where the value came from, e.g. "environment variable `DATABASE_URL`".
    pub source: String,
}

impl DatabaseUrl {
    /// Parses a URL in any of the forms Prisma accepts for a datasource.
    pub fn parse(value: &str, source: impl Into<String>) -> Result<DatabaseUrl, String> {
        let provider = Provider::from_url(value)?;
        Ok(DatabaseUrl { secret: Secret::new(value), redacted: redact_url(value), provider, source: source.into() })
    }

    /// The URL itself, for the driver that connects.
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }

    /// The URL with its password masked.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The Prisma provider the URL's scheme implies.
    pub fn provider(&self) -> Provider {
        self.provider
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// A Prisma datasource provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// `postgresql` (also CockroachDB URLs).
    Postgresql,
    /// `mysql` (MySQL and MariaDB).
    Mysql,
    /// `sqlite` (`file:` URLs).
    Sqlite,
    /// `sqlserver`.
    Sqlserver,
    /// `mongodb`.
    Mongodb,
}

impl Provider {
    /// Every provider, in the order prompts list them.
    pub const ALL: [Provider; 5] =
        [Provider::Postgresql, Provider::Mysql, Provider::Sqlite, Provider::Sqlserver, Provider::Mongodb];

    /// The name used in `datasource { provider = "…" }`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Postgresql => "postgresql",
            Provider::Mysql => "mysql",
            Provider::Sqlite => "sqlite",
            Provider::Sqlserver => "sqlserver",
            Provider::Mongodb => "mongodb",
        }
    }

    /// Parses a schema provider name (`postgres` and `cockroachdb` are accepted as Prisma does).
    pub fn from_schema_name(name: &str) -> Option<Provider> {
        match name {
            "postgresql" | "postgres" | "cockroachdb" => Some(Provider::Postgresql),
            "mysql" => Some(Provider::Mysql),
            "sqlite" => Some(Provider::Sqlite),
            "sqlserver" => Some(Provider::Sqlserver),
            "mongodb" => Some(Provider::Mongodb),
            _ => None,
        }
    }

    /// The provider a datasource URL implies, or why the URL is not one.
    pub fn from_url(url: &str) -> Result<Provider, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("the database URL is empty".into());
        }
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgresql" | "postgres") => Ok(Provider::Postgresql),
            Some("mysql" | "mariadb") => Ok(Provider::Mysql),
            Some("file") => Ok(Provider::Sqlite),
            Some("sqlserver") => Ok(Provider::Sqlserver),
            Some("mongodb" | "mongodb+srv") => Ok(Provider::Mongodb),
            Some("prisma" | "prisma+postgres") => {
                Err("this is a Prisma Data Proxy/Accelerate URL, not a database URL; pdp needs the database's own URL"
                    .into())
            }
            Some(other) => Err(format!(
                "unsupported database URL scheme `{other}:` (expected postgresql://, mysql://, file:, sqlserver:// or mongodb://)"
            )),
            None => Err("not a URL (expected e.g. `postgresql://user@host:5432/db` or `file:./dev.db`)".into()),
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[engines]`.
#[derive(Debug)]
pub struct EnginesConfig {
    /// Binary target names as written (`native` allowed); validated against Prisma's list.
    pub targets: Vec<String>,
    /// Base URL of the engine download host.
    pub mirror: url::Url,
    /// Cache directory for downloaded engines and tools.
    pub cache: PathBuf,
}

/// `[client]`.
#[derive(Debug)]
pub struct ClientConfig {
    /// Runtime the client is generated for.
    pub runtime: Runtime,
    /// Absolute output directory; the client goes to `<out>/<version>/`.
    pub out: PathBuf,
    /// The client's own version: the folder name it is published under.
    pub version: String,
    /// Where `<out>` is served from (for printing import URLs), if known.
    pub base_url: Option<url::Url>,
}

/// Client runtimes pdp generates for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// Deno (Windmill, Deno Deploy).
    Deno,
}

/// `[serve]`.
#[derive(Debug)]
pub struct ServeConfig {
    /// Socket address to listen on.
    pub listen: SocketAddr,
    /// The URL clients reach the proxy at (used in generated examples and ITX endpoints).
    pub public_url: url::Url,
    /// TLS mode.
    pub tls: Tls,
    /// Accepted API keys.
    pub api_keys: Vec<ApiKey>,
    /// How long shutdown waits for in-flight requests and transactions.
    pub shutdown_timeout: Duration,
    /// A separate plain-HTTP address serving `/metrics` without a key; `None`: `/metrics` needs a key.
    pub metrics_listen: Option<SocketAddr>,
    /// The proxy's own worker threads; `None`: half the CPUs pdp may use, at least one
    /// (`pdp_serve::worker_threads`).
    pub threads: Option<u32>,
    /// Children per Prisma version (executors) or per engine key (WASM engines); `None`: the CPUs pdp may
    /// use less its own threads, at least one (`pdp_serve::pool_size`). Native engines always run one (multi-threaded).
    pub children: Option<u32>,
    /// `PDP_BENCH_CHILD_TCP`: children also listen on loopback TCP, for benchmarks only.
    pub bench_child_tcp: bool,
    /// Which query engine serves Prisma 4.x–6.x clients.
    pub engine: QueryEngine,
    /// Whether engines accept raw queries (`$queryRaw`, `$executeRaw`).
    pub raw_queries: bool,
    /// Whether engines keep metrics, merged into pdp's `/metrics`.
    pub engine_metrics: bool,
    /// Whether engines return logs and traces a client asks for (`X-capture-telemetry`).
    pub telemetry_in_response: bool,
    /// Whether engines log every SQL statement (to pdp's log).
    pub log_queries: bool,
    /// `[serve.limits]`.
    pub limits: Limits,
    /// `[serve.cluster]`: this pdp is one of several replicas; `None`: it serves alone.
    pub cluster: Option<ClusterConfig>,
    /// `[serve.cache]`.
    pub cache: CacheConfig,
}

/// `[serve.cache]`: Accelerate's query cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Whether requests' cache strategies are honoured (off: every answer says `none`).
    pub enabled: bool,
    /// Most bytes of answers kept (least recently used out).
    pub max_size: u64,
}

/// `[serve.cluster]`: how replicas of one deployment find and trust each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The shared secret every owner reference and peer request is authenticated under (`env:` only),
    /// or why it is missing ([`ServeConfig::cluster_secret`] refuses then).
    pub secret: Result<Secret, UnsetSecret>,
    /// The address peers reach this replica's cluster listener at (it goes into the owner references this
    /// replica mints, so it must be one peers can connect to as is).
    pub advertise: Advertise,
    /// Where the cluster listener binds; defaults to `advertise`.
    pub listen: SocketAddr,
    /// The peers, as `host:port`; a host name stands for every address it resolves to (a Kubernetes
    /// headless Service), resolved whenever pdp needs the list. This replica's own address is left out.
    pub peers: Vec<String>,
}

/// `[serve.cluster] advertise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advertise {
    /// This IP and port.
    Addr(SocketAddr),
    /// `auto:<port>`: the address this host's name resolves to (a container's own IP in Docker and
    /// Kubernetes), looked up when `pdp serve` starts.
    Hostname(u16),
}

/// The shortest cluster secret accepted, in bytes.
pub const MIN_CLUSTER_SECRET: usize = 32;

impl ServeConfig {
    /// The cluster secret, for the command that uses it: an unset `env:` reference is an error here.
    pub fn cluster_secret(&self) -> Result<Option<&Secret>, ConfigError> {
        match &self.cluster {
            None => Ok(None),
            Some(ClusterConfig { secret: Ok(s), .. }) => Ok(Some(s)),
            Some(ClusterConfig { secret: Err(u), .. }) => Err(ConfigError::Invalid(vec![u.problem.clone()])),
        }
    }

    /// The API keys, for the command that checks them: an `env:` key whose variable is not set is an
    /// error here (every one of them listed), rather than a key silently missing from the set.
    pub fn keys(&self) -> Result<&[ApiKey], ConfigError> {
        let unset: Vec<Problem> = self
            .api_keys
            .iter()
            .filter_map(|k| match k {
                ApiKey::Unset(u) => Some(u.problem.clone()),
                _ => None,
            })
            .collect();
        if unset.is_empty() { Ok(&self.api_keys) } else { Err(ConfigError::Invalid(unset)) }
    }
}

/// The query engine behind Prisma 4.x–6.x clients (`[serve] engine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryEngine {
    /// Prisma's `query-engine` binary of each client's engine commit.
    Native,
    /// The WASM build of Prisma 6.19's engine under Node, hosted by pdp's launcher (JSON protocol only).
    Wasm,
}

/// How `pdp serve` terminates TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// A local CA and localhost certificate under the state dir, created once.
    Auto,
    /// Plain HTTP (only behind a TLS-terminating proxy: Prisma clients require https).
    Off,
    /// Certificate and key files, reloaded when they change.
    Files {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
}

/// One accepted API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKey {
    /// A key read from the environment.
    Env {
        /// The variable it came from.
        var: String,
        /// The key.
        key: Secret,
    },
    /// The lowercase hex SHA-256 of a key.
    Sha256(String),
    /// `env:NAME` with `NAME` not set: `pdp serve` refuses to start ([`ServeConfig::keys`]).
    Unset(UnsetSecret),
}

/// `[serve.limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_size: u64,
    /// Largest response an executor or engine may return, in bytes.
    pub max_response_size: u64,
    /// Longest a single query may run.
    pub query_timeout: Duration,
    /// Longest an interactive transaction may stay open.
    pub transaction_max_timeout: Duration,
    /// Longest a transaction may wait to start.
    pub transaction_max_wait: Duration,
    /// The most database connections this replica's children open together, whatever their kind, key or
    /// pool slot (`connection-limit`, resolved: its default follows the CPUs).
    pub connection_limit: u32,
    /// The part of `connection_limit` held back from the project's own children for children that start on
    /// demand (another client version or schema); always less than `connection_limit`.
    pub on_demand_connections: u32,
    /// How long a query waits for a pooled connection.
    pub pool_timeout: Duration,
    /// How long a request waits for its engine to start.
    pub engine_start_timeout: Duration,
    /// Unused engines are stopped after this long.
    pub engine_idle_timeout: Duration,
    /// Longest a client may take to send a request's head, from its first byte.
    pub header_read_timeout: Duration,
    /// Longest a client may take to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Most client connections served at once; beyond it pdp stops accepting until one closes.
    pub max_connections: u32,
}

/// The npm registry pdp asks when `PDP_NPM_REGISTRY` is not set.
pub const DEFAULT_NPM_REGISTRY: &str = "https://registry.npmjs.org";

/// How pdp reaches the network, read from the environment once for every command (downloads, engine-hash
/// lookups, `npm install`). Each value has been checked: a proxy is a URL (or `host:port`, as curl takes
/// it) of a scheme reqwest speaks, the registry an http(s) URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    /// `HTTPS_PROXY` (else `https_proxy`): the proxy for https URLs.
    pub https_proxy: Option<String>,
    /// `HTTP_PROXY` (else `http_proxy`): the proxy for http URLs, and for https ones without an https proxy.
    pub http_proxy: Option<String>,
    /// `NO_PROXY` (else `no_proxy`): hosts, domains and CIDRs reached directly (`*` for all).
    pub no_proxy: Option<String>,
    /// `PDP_NPM_REGISTRY`, when set.
    pub npm_registry: Option<url::Url>,
}

impl NetworkConfig {
    /// The npm registry to ask: the configured one, else [`DEFAULT_NPM_REGISTRY`].
    pub fn registry(&self) -> url::Url {
        self.npm_registry.clone().unwrap_or_else(|| {
            url::Url::parse(DEFAULT_NPM_REGISTRY).unwrap_or_else(|e| unreachable!("the default registry parses: {e}"))
        })
    }
}

/// `[migrate]`.
#[derive(Debug)]
pub struct MigrateConfig {
    /// How long `pdp migrate deploy` waits for another deployer's lock.
    pub lock_timeout: Duration,
}
