//! The `pdp.toml` file as written: every key optional, unknown keys rejected, kebab-case names.
//!
//! These types never leave this crate; `resolve` turns them into [`crate::Config`]. Values that need
//! validation after parsing are `Spanned` so their errors can point at the line.

use serde::Deserialize;
use toml::Spanned;

/// A string value with its position in the file.
pub(crate) type S = Spanned<String>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawConfig {
    pub prisma: Option<Spanned<RawPrisma>>,
    pub database: Option<RawDatabase>,
    pub engines: Option<RawEngines>,
    pub client: Option<RawClient>,
    pub serve: Option<RawServe>,
    pub migrate: Option<RawMigrate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawPrisma {
    pub version: Option<S>,
    pub schema: Option<S>,
    pub migrations: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawDatabase {
    pub url: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawEngines {
    pub targets: Option<Vec<S>>,
    pub mirror: Option<S>,
    pub cache: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawClient {
    pub runtime: Option<S>,
    pub out: Option<S>,
    pub version: Option<S>,
    pub base_url: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawServe {
    pub listen: Option<S>,
    pub public_url: Option<S>,
    pub tls: Option<S>,
    pub tls_cert: Option<S>,
    pub tls_key: Option<S>,
    pub api_keys: Option<Vec<S>>,
    pub shutdown_timeout: Option<S>,
    pub metrics_listen: Option<S>,
    pub threads: Option<Spanned<u32>>,
    pub children: Option<Spanned<u32>>,
    pub engine: Option<S>,
    pub raw_queries: Option<Spanned<bool>>,
    pub engine_metrics: Option<Spanned<bool>>,
    pub telemetry_in_response: Option<Spanned<bool>>,
    pub log_queries: Option<Spanned<bool>>,
    pub limits: Option<RawLimits>,
    pub cluster: Option<RawCluster>,
    pub cache: Option<RawCache>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawCache {
    pub enabled: Option<Spanned<bool>>,
    pub max_size: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawCluster {
    pub secret: Option<S>,
    pub advertise: Option<S>,
    pub listen: Option<S>,
    pub peers: Option<Vec<S>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawLimits {
    pub max_body_size: Option<S>,
    pub max_response_size: Option<S>,
    pub query_timeout: Option<S>,
    pub transaction_max_timeout: Option<S>,
    pub transaction_max_wait: Option<S>,
    pub connection_limit: Option<Spanned<u32>>,
    pub on_demand_connections: Option<Spanned<u32>>,
    pub pool_timeout: Option<S>,
    pub engine_start_timeout: Option<S>,
    pub engine_idle_timeout: Option<S>,
    pub header_read_timeout: Option<S>,
    pub tls_handshake_timeout: Option<S>,
    pub idle_timeout: Option<S>,
    pub max_connections: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawMigrate {
    pub lock_timeout: Option<S>,
}
