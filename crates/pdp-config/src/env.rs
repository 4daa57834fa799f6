//! Where environment variables come from, and the registry of every variable pdp reads.
//!
//! Library crates never call `std::env::var`: they get an [`Env`] (the process environment layered over
//! the project's `.env`, or a plain map in tests). This module reads `.env` but never writes the process
//! environment.

use std::collections::BTreeMap;
use std::path::Path;

/// A source of environment variables.
pub trait Env {
    /// The value of `name`, if set (an empty value counts as set).
    fn var(&self, name: &str) -> Option<String>;
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The process environment, over the variables of a `.env` file (the process wins, as with Prisma's CLI).
#[derive(Debug, Default)]
pub struct ProcessEnv {
    dotenv: BTreeMap<String, String>,
}

/// A `.env` file that exists but cannot be read as one. Never quotes the file's content: its values are
/// secrets.
#[derive(Debug, thiserror::Error)]
#[error("cannot read `{}` as a .env file: {problem}", path.display())]
pub struct DotenvError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong, by line number and variable name only.
    pub problem: String,
}

impl DotenvError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some("each line of `.env` is `NAME=value`; quote values with spaces or `#` in single quotes".into())
    }

    fn from(path: &Path, text: &str, err: &dotenvy::Error) -> DotenvError {
        let problem = match err {
            dotenvy::Error::LineParse(bad, _) => {
                let line =
                    text.lines().position(|l| !bad.is_empty() && (l.contains(bad.as_str()) || bad.contains(l.trim())));
                // dotenvy quotes the value (or the line); the name comes from the line itself.
                let name = line
                    .and_then(|i| text.lines().nth(i))
                    .and_then(|l| l.split('=').next())
                    .map(str::trim)
                    .map(|n| n.trim_start_matches("export ").trim())
                    .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'));
                match (line, name) {
                    (Some(i), Some(n)) => format!("line {} (`{n}`) cannot be parsed (its value is not shown)", i + 1),
                    (Some(i), None) => format!("line {} cannot be parsed (its content is not shown)", i + 1),
                    (None, Some(n)) => format!("the entry for `{n}` cannot be parsed (its value is not shown)"),
                    (None, None) => "an entry cannot be parsed (its content is not shown)".to_owned(),
                }
            }
            dotenvy::Error::Io(e) => e.to_string(),
            _ => "the file is not valid".to_owned(),
        };
        DotenvError { path: path.to_path_buf(), problem }
    }
}

impl ProcessEnv {
    /// The process environment alone.
    pub fn new() -> ProcessEnv {
        ProcessEnv::default()
    }

    /// The process environment over `path`, when that file exists.
    pub fn with_dotenv(path: &Path) -> Result<ProcessEnv, DotenvError> {
        if !path.is_file() {
            return Ok(ProcessEnv::default());
        }
        let text = fs_err::read_to_string(path)
            .map_err(|e| DotenvError { path: path.to_path_buf(), problem: e.kind().to_string() })?;
        let mut dotenv = BTreeMap::new();
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            let (k, v) = item.map_err(|e| DotenvError::from(path, &text, &e))?;
            dotenv.insert(k, v);
        }
        Ok(ProcessEnv { dotenv })
    }
}

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        // The one place in the workspace that reads the process environment for configuration.
        #[allow(clippy::disallowed_methods)]
        std::env::var(name).ok().or_else(|| self.dotenv.get(name).cloned())
    }
}

/// One environment variable pdp reads.
#[derive(Debug)]
pub struct EnvVar {
    /// Its name.
    pub name: &'static str,
    /// What it does, one sentence.
    pub doc: &'static str,
}

/// Path to `pdp.toml`, instead of searching upwards from the working directory (same as `--config`).
pub const PDP_CONFIG: &str = "PDP_CONFIG";
/// Overrides `[database] url` (a literal URL; `env:` references are for the file).
pub const PDP_DATABASE_URL: &str = "PDP_DATABASE_URL";
/// Overrides `[serve] listen`.
pub const PDP_LISTEN: &str = "PDP_LISTEN";
/// Overrides `[serve] public-url`.
pub const PDP_PUBLIC_URL: &str = "PDP_PUBLIC_URL";
/// Overrides `[engines] mirror`; the same variable Prisma's CLI reads.
pub const PRISMA_ENGINES_MIRROR: &str = "PRISMA_ENGINES_MIRROR";
/// Overrides `[engines] cache`.
pub const PDP_CACHE_DIR: &str = "PDP_CACHE_DIR";
/// Where pdp keeps local state (embedded database, local CA); default `.pdp/` next to `pdp.toml`.
pub const PDP_STATE_DIR: &str = "PDP_STATE_DIR";
/// Log filter for `--verbose` output, in `tracing` syntax (e.g. `pdp=debug`).
pub const PDP_LOG: &str = "PDP_LOG";
/// Hides progress bars even on a terminal.
pub const PDP_NO_PROGRESS: &str = "PDP_NO_PROGRESS";
/// Disables colour (any value), per no-color.org.
pub const NO_COLOR: &str = "NO_COLOR";
/// Base URL of the npm registry pdp asks for engine hashes and installs tools from.
pub const PDP_NPM_REGISTRY: &str = "PDP_NPM_REGISTRY";
/// A custom query-engine binary (path) or a binary target name, as in Prisma's CLI (Prisma 4.x–6.x).
pub const PRISMA_QUERY_ENGINE_BINARY: &str = "PRISMA_QUERY_ENGINE_BINARY";
/// A custom schema-engine binary (path) or a binary target name, as in Prisma's CLI (Prisma 5.0 and later).
pub const PRISMA_SCHEMA_ENGINE_BINARY: &str = "PRISMA_SCHEMA_ENGINE_BINARY";
/// The 4.x name of the schema-engine override; a deprecated alias from 5.0.
pub const PRISMA_MIGRATION_ENGINE_BINARY: &str = "PRISMA_MIGRATION_ENGINE_BINARY";
/// Proxy for https downloads (`https_proxy` is read too).
pub const HTTPS_PROXY: &str = "HTTPS_PROXY";
/// Proxy for http downloads, and for https ones when `HTTPS_PROXY` is unset (`http_proxy` is read too).
pub const HTTP_PROXY: &str = "HTTP_PROXY";
/// Hosts that are reached directly, not through the proxy (`no_proxy` is read too).
pub const NO_PROXY: &str = "NO_PROXY";
/// Benchmarks only: children of pdp's own also listen on a loopback TCP port (any non-empty value), so a
/// load generator that cannot speak Unix sockets can reach them "straight". Never set it in production:
/// it gives up what the private sockets protect.
pub const PDP_BENCH_CHILD_TCP: &str = "PDP_BENCH_CHILD_TCP";
/// Overrides `[serve.cluster] advertise` (in Kubernetes: `$(POD_IP):4468` from the downward API).
pub const PDP_CLUSTER_ADVERTISE: &str = "PDP_CLUSTER_ADVERTISE";
/// The cluster secret when `[serve.cluster] secret` is left out (at least 32 bytes, the same on every replica).
pub const PDP_CLUSTER_SECRET: &str = "PDP_CLUSTER_SECRET";
/// Overrides `[serve.cluster] peers`: `host:port` entries separated by commas.
pub const PDP_CLUSTER_PEERS: &str = "PDP_CLUSTER_PEERS";
/// Where temporary files go (the query engines' schema copies; the fallback cache without a home).
pub const TMPDIR: &str = "TMPDIR";

/// Every variable, for docs and `pdp doctor`.
pub static ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: PDP_CONFIG,
        doc: "Path to `pdp.toml` instead of searching upwards from the working directory (same as `--config`).",
    },
    EnvVar { name: PDP_DATABASE_URL, doc: "Overrides `[database] url` (a literal URL)." },
    EnvVar { name: PDP_LISTEN, doc: "Overrides `[serve] listen`." },
    EnvVar { name: PDP_PUBLIC_URL, doc: "Overrides `[serve] public-url`." },
    EnvVar { name: PRISMA_ENGINES_MIRROR, doc: "Overrides `[engines] mirror`; the variable Prisma's CLI reads too." },
    EnvVar { name: PDP_CACHE_DIR, doc: "Overrides `[engines] cache`." },
    EnvVar {
        name: PDP_STATE_DIR,
        doc: "Where pdp keeps local state (embedded database, local CA); default `.pdp/` next to `pdp.toml`.",
    },
    EnvVar { name: PDP_LOG, doc: "Log filter for `--verbose` output, in `tracing` syntax (e.g. `pdp=debug`)." },
    EnvVar { name: PDP_NO_PROGRESS, doc: "Hides progress bars even on a terminal." },
    EnvVar { name: NO_COLOR, doc: "Disables colour when set to any non-empty value." },
    EnvVar {
        name: PDP_NPM_REGISTRY,
        doc: "Base URL of the npm registry for engine hashes and tools (default `https://registry.npmjs.org`).",
    },
    EnvVar {
        name: PRISMA_QUERY_ENGINE_BINARY,
        doc: "A custom query-engine binary (path) or a binary target name, as in Prisma's CLI (4.x–6.x).",
    },
    EnvVar {
        name: PRISMA_SCHEMA_ENGINE_BINARY,
        doc: "A custom schema-engine binary (path) or a binary target name, as in Prisma's CLI (5.0 and later).",
    },
    EnvVar {
        name: PRISMA_MIGRATION_ENGINE_BINARY,
        doc: "The schema-engine override's 4.x name; a deprecated alias from 5.0.",
    },
    EnvVar { name: HTTPS_PROXY, doc: "Proxy for https downloads (`https_proxy` is read too)." },
    EnvVar {
        name: HTTP_PROXY,
        doc: "Proxy for http downloads, and https ones without `HTTPS_PROXY` (`http_proxy` too).",
    },
    EnvVar { name: NO_PROXY, doc: "Hosts reached directly, bypassing the proxy (`no_proxy` is read too)." },
    EnvVar {
        name: PDP_BENCH_CHILD_TCP,
        doc: "Benchmarks only: children also listen on loopback TCP (gives up the private sockets' protection).",
    },
    EnvVar {
        name: PDP_CLUSTER_ADVERTISE,
        doc: "Overrides `[serve.cluster] advertise` (Kubernetes: `$(POD_IP):4468` from the downward API).",
    },
    EnvVar {
        name: PDP_CLUSTER_SECRET,
        doc: "The cluster secret when `[serve.cluster] secret` is left out (32+ bytes, the same on every replica).",
    },
    EnvVar { name: PDP_CLUSTER_PEERS, doc: "Overrides `[serve.cluster] peers`: `host:port` entries, comma-separated." },
    EnvVar {
        name: TMPDIR,
        doc: "Where temporary files go (engines' schema copies; the cache when there is no home directory).",
    },
];
