//! `pdp.toml`: found, parsed strictly once, resolved once (file, then environment, then flags, with
//! defaults applied at the end) into a [`Config`] every command reads.
//!
//! Also home of the project knowledge that is pure data: the Prisma generation table ([`prisma`]) and
//! Prisma's binary target names ([`targets`]). This crate does no network IO and never prints; it reads
//! `pdp.toml` and `.env` and nothing else. Raw TOML types never leave it.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod config;
pub mod env;
mod error;
pub mod prisma;
mod raw;
mod resolve;
pub mod secret;
pub mod targets;

use std::path::{Path, PathBuf};

pub use config::{
    Advertise, ApiKey, CacheConfig, ClientConfig, ClusterConfig, Config, DEFAULT_NPM_REGISTRY, DatabaseConfig,
    DatabaseSetting, DatabaseUrl, EnginesConfig, Limits, MIN_CLUSTER_SECRET, MigrateConfig, NetworkConfig,
    PrismaConfig, Provider, QueryEngine, Runtime, ServeConfig, Tls, UnsetSecret,
};
pub use error::{ConfigError, Origin, Problem};
pub use prisma::{Generation, PrismaVersion};
pub use resolve::Overrides;
pub use secret::{Secret, redact, redact_text, redact_url};

/// The file name pdp looks for.
pub const FILE_NAME: &str = "pdp.toml";

/// The documented reference: every key, set to a non-default value, with its default in a comment.
pub const REFERENCE_TOML: &str = include_str!("../reference.toml");

/// Finds `pdp.toml` in `start` or the nearest parent that has one.
pub fn discover(start: &Path) -> Result<PathBuf, ConfigError> {
    start
        .ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ConfigError::NotFound { start: start.to_path_buf() })
}

/// Reads and resolves `file`. Relative paths in it are relative to its directory.
pub fn load(file: &Path, env: &dyn env::Env, overrides: &Overrides) -> Result<Config, ConfigError> {
    let source = fs_err::read_to_string(file).map_err(|e| ConfigError::Read { path: file.to_path_buf(), source: e })?;
    from_str(&source, file, env, overrides)
}

/// Resolves configuration text as if it had been read from `file`.
pub fn from_str(source: &str, file: &Path, env: &dyn env::Env, overrides: &Overrides) -> Result<Config, ConfigError> {
    let raw = resolve::parse(source, file)?;
    resolve::resolve(raw, source, file, env, overrides)
}

#[cfg(test)]
mod tests;
