//! The command line: clap definitions only. Parsing happens here; behaviour lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run your own Prisma Data Proxy: one binary and one `pdp.toml` take a project from a Prisma schema to
/// serverless scripts querying the database through a pooled, authenticated HTTPS proxy.
#[derive(Debug, Parser)]
#[command(name = "pdp", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 success, 1 unexpected failure, 2 user error (bad flag, config or input), \
3 a check found problems (`doctor`, `init --check`), 130 interrupted.\n\nDocs: https://github.com/pdp-dev/pdp")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Use this pdp.toml instead of searching upwards from the working directory.
    #[arg(long, global = true, value_name = "PATH", env = "PDP_CONFIG")]
    pub config: Option<PathBuf>,

    /// Only print errors and data.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log what pdp does to stderr (secrets are masked); `PDP_LOG` sets the filter.
    #[arg(long, short, global = true)]
    pub verbose: bool,

    /// When to use colour; `NO_COLOR` is respected under `auto`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up a project: write pdp.toml, a sample schema, .env.example, .gitignore entries and an example script.
    Init(InitArgs),
    /// Check this machine and project: binary target, tools, pdp.toml, schema, database reachability.
    Doctor(DoctorArgs),
    /// Print the effective configuration: pdp.toml, then environment, then flags, defaults last (secrets masked).
    Config(ConfigArgs),
    /// Apply and inspect migrations natively, keeping Prisma Migrate's `_prisma_migrations` ledger.
    Migrate(MigrateArgs),
    /// Make API keys for `pdp serve`, and the `sha256:` form pdp.toml stores instead of the key.
    Keys(KeysArgs),
    /// Download, verify and locate Prisma's engines for the project's Prisma version and binary targets.
    Engines(EnginesArgs),
    /// Generate the Deno client for the project's Prisma version, patch it for URL imports, lay it out as <out>/<version>/.
    BuildClient(BuildClientArgs),
    /// Run the HTTPS data proxy: TLS, API keys, supervised executors/engines, /health, /ready, /metrics, /status.
    Serve(ServeArgs),
    /// Show a running `pdp serve`: children, transactions, traffic, cache, connections (exit 3 when unready).
    Status(ServerStatusArgs),
}

/// `pdp status`.
#[derive(Debug, Args)]
pub struct ServerStatusArgs {
    /// The server's base URL (default: pdp.toml's `[serve] listen`, on loopback when it listens on all addresses).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Read the API key from this environment variable (default: pdp.toml's first `env:` api-key).
    #[arg(long, value_name = "NAME")]
    pub key_env: Option<String>,

    /// Trust this CA certificate (PEM) for the server's TLS, besides the system's and pdp's own local CA.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Redraw every this many seconds until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,

    /// Print the server's snapshot as JSON on stdout.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
}

/// `pdp serve`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct ServeArgs {
    /// Address to listen on, instead of `[serve] listen` (`PDP_LISTEN`); port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// The URL clients reach the proxy at, instead of `[serve] public-url` (`PDP_PUBLIC_URL`).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Database URL, instead of `[database] url` and `PDP_DATABASE_URL`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Log format: `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PDP_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `pdp build-client`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct BuildClientArgs {
    /// Output folder, instead of `[client] out` (the client goes to <OUT>/<VERSION>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// The client's folder version, instead of `[client] version`.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,

    /// Rebuild even when the schema, Prisma version, config and pdp version are unchanged.
    #[arg(long)]
    pub force: bool,
}

/// `pdp engines`.
#[derive(Debug, Args)]
pub struct EnginesArgs {
    #[command(subcommand)]
    pub command: EnginesCommand,
}

/// `pdp engines` subcommands.
#[derive(Debug, Subcommand)]
pub enum EnginesCommand {
    /// Download and verify engines into the cache (files already cached are not downloaded again).
    Fetch(EnginesFetchArgs),
    /// Show each target's engines: cached or missing, with paths, and any PRISMA_*_ENGINE_BINARY override.
    List(EnginesListArgs),
    /// Print one cached engine's path, alone on stdout (for scripts and Dockerfiles); never downloads.
    Path(EnginesPathArgs),
}

/// Which engines and from which commit (shared by the `engines` subcommands).
#[derive(Debug, Args)]
pub struct EngineSelection {
    /// Binary target (repeatable) instead of `[engines] targets`; `native` is this machine.
    #[arg(long = "target", short = 't', value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Use this prisma-engines commit instead of the one the npm registry gives for `[prisma] version`.
    #[arg(long, value_name = "HASH")]
    pub engine_hash: Option<String>,
}

/// `pdp engines fetch`.
#[derive(Debug, Args)]
pub struct EnginesFetchArgs {
    #[command(flatten)]
    pub selection: EngineSelection,

    /// Only this engine [default: every engine the Prisma version has].
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<EngineArg>,

    /// Never touch the network: succeed if everything is cached, fail naming what is not.
    #[arg(long)]
    pub offline: bool,
}

/// `pdp engines list`.
#[derive(Debug, Args)]
pub struct EnginesListArgs {
    #[command(flatten)]
    pub selection: EngineSelection,

    /// Do not ask the npm registry for the engine hash when it is not cached yet.
    #[arg(long)]
    pub offline: bool,
}

/// `pdp engines path`.
#[derive(Debug, Args)]
pub struct EnginesPathArgs {
    /// The engine.
    #[arg(value_enum, value_name = "ENGINE")]
    pub engine: EngineArg,

    /// Binary target [default: the first of `[engines] targets`]; `native` is this machine.
    #[arg(long, short = 't', value_name = "TARGET")]
    pub target: Option<String>,

    /// Use this prisma-engines commit instead of the one for `[prisma] version`.
    #[arg(long, value_name = "HASH")]
    pub engine_hash: Option<String>,
}

/// An engine on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The query engine (`query-engine`; Prisma 4.x–6.x).
    Query,
    /// The schema engine (`migration-engine` in 4.x, `schema-engine` from 5.0).
    Schema,
}

/// `pdp keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The keys subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random key on stdout, and on stderr the lines to put in pdp.toml.
    New,
    /// Read a key on stdin and print its `sha256:…` form for `[serve] api-keys`.
    Hash,
}

/// `pdp migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

/// The migrate subcommands.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Apply pending migrations in order, each recorded in `_prisma_migrations` exactly as Prisma does.
    Deploy(DeployArgs),
    /// Compare the migrations folder with the database (exit 3 unless up to date); also lists edited migrations.
    Status(StatusArgs),
    /// Record a migration as applied (baselining, or after fixing a failure by hand) or a failed one as rolled back.
    Resolve(ResolveArgs),
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. `30s`, `2m`)"))
}

/// Options shared by the migrate subcommands.
#[derive(Debug, Args)]
pub struct MigrateTarget {
    /// Database URL, instead of `[database] url` and `PDP_DATABASE_URL`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// `pdp migrate deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// List what would be applied (on stdout) without changing the database or taking the lock.
    #[arg(long)]
    pub dry_run: bool,

    /// How long to wait for another deployer's lock [default: `[migrate] lock-timeout`, 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_lock: Option<std::time::Duration>,

    #[command(flatten)]
    pub target: MigrateTarget,
}

/// `pdp migrate status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub target: MigrateTarget,
}

/// `pdp migrate resolve`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mark").required(true).args(["applied", "rolled_back"])))]
pub struct ResolveArgs {
    /// Record this migration as applied without running it.
    #[arg(long, value_name = "MIGRATION")]
    pub applied: Option<String>,

    /// Mark this failed migration as rolled back, so deploy runs it again.
    #[arg(long, value_name = "MIGRATION")]
    pub rolled_back: Option<String>,

    /// How long to wait for another deployer's lock [default: `[migrate] lock-timeout`, 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_lock: Option<std::time::Duration>,

    #[command(flatten)]
    pub target: MigrateTarget,
}

/// `pdp config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub overrides: OverrideArgs,
}

/// Flags that override pdp.toml and the environment (shared by the commands that connect or listen).
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// Database URL, instead of `[database] url` and `PDP_DATABASE_URL`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Address to listen on, instead of `[serve] listen` and `PDP_LISTEN`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// URL clients reach the proxy at, instead of `[serve] public-url` and `PDP_PUBLIC_URL`.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

impl OverrideArgs {
    /// As the config crate's overrides.
    pub fn to_overrides(&self) -> pdp_config::Overrides {
        pdp_config::Overrides {
            database_url: self.database_url.clone().map(pdp_config::Secret::new),
            listen: self.listen.clone(),
            public_url: self.public_url.clone(),
        }
    }
}

/// `pdp init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project directory (created if missing).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    /// Take the default for every question instead of prompting.
    #[arg(long, short)]
    pub yes: bool,

    /// Overwrite files that exist and differ from what init would write.
    #[arg(long, conflicts_with = "check")]
    pub force: bool,

    /// Write nothing; show how the files on disk differ from what init would write (exit 3 if they do).
    #[arg(long)]
    pub check: bool,

    /// Prisma version of the project [default: the newest pdp supports; `4.16.2` gives the original template's generation].
    #[arg(long, value_name = "VERSION")]
    pub prisma: Option<String>,

    /// Database provider for a new schema [default: postgresql, embedded unless --database-url is given].
    #[arg(long, value_enum, value_name = "PROVIDER")]
    pub provider: Option<ProviderArg>,

    /// Database URL, written to .env (never to pdp.toml); implies the provider.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Base URL the client folder is published at, e.g. `https://cdn.jsdelivr.net/gh/OWNER/REPO@client/`.
    #[arg(long, value_name = "URL")]
    pub client_base_url: Option<String>,

    /// Do not write the Windmill example script.
    #[arg(long)]
    pub no_example: bool,

    /// Do not write the GitHub workflow (.github/workflows/pdp.yml).
    #[arg(long)]
    pub no_ci: bool,

    /// Do not write the Dockerfile, compose file and Kubernetes manifests (Dockerfile, deploy/).
    #[arg(long)]
    pub no_deploy: bool,

    /// Where the workflow publishes the client [default: what an existing workflow says, else `branch`].
    #[arg(long, value_enum, value_name = "WHERE")]
    pub publish: Option<PublishArg>,
}

/// `pdp init --publish`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PublishArg {
    /// A `client` branch, served through jsDelivr.
    Branch,
    /// A workflow artifact.
    Artifact,
    /// An S3-compatible bucket (AWS, MinIO, R2, ...).
    S3,
}

/// Providers init can write a schema for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    /// PostgreSQL.
    Postgresql,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

/// `pdp doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Seconds to wait for the database to answer.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub db_timeout: u64,
}
