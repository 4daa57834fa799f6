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
