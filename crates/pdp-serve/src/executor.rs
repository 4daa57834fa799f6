//! The Prisma 7 query-plan executor as a supervised child: `@prisma/query-plan-executor` of the client's
//! exact version, provisioned through npm into pdp's tool cache (or ahead by `pdp engines fetch`), run by
//! pdp's launcher under Node on a Unix socket in pdp's private socket directory, with the limits of
//! `[serve.limits]`.
//!
//! Deliberately not here: HTTP forwarding (`qpe`), restarts (`supervisor`).

use std::path::PathBuf;
use std::sync::Arc;

use pdp_toolchain::npm::{self, Npm, NpmError, ToolSpec};
use pdp_toolchain::process::{Cmd, ProcessError};

use crate::context::Context;
use crate::supervisor::{Launch, StartError};

/// Companion packages the launcher imports, pinned (the executor bundles everything else).
const COMPANIONS: [&str; 3] =
    ["@opentelemetry/api@1.9.0", "@opentelemetry/context-async-hooks@2.1.0", "@hono/node-server@1.19.5"];

const LAUNCHER: &str = include_str!("../launchers/qpe.mjs");
const LAUNCHER_FILE: &str = "pdp-qpe.mjs";

/// The npm packages for the executor of Prisma `version`.
pub fn tool_spec(version: &str) -> ToolSpec {
    let mut packages = vec![format!("@prisma/query-plan-executor@{version}")];
    packages.extend(COMPANIONS.iter().map(|s| (*s).to_owned()));
    ToolSpec { name: "query-plan-executor".into(), version: version.into(), packages }
}

/// Whether `text` is an exact version pdp may hand to npm (no ranges, tags, URLs or paths: the value
/// comes from a request header).
pub fn is_exact_version(text: &str) -> bool {
    semver::Version::parse(text).is_ok()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Provisions the executor for `version` (a no-op when cached) and writes the launcher next to it.
pub fn provision(
    cache_root: &std::path::Path,
    version: &str,
    npm: impl FnOnce() -> Result<Npm, NpmError>,
) -> Result<PathBuf, ProvisionError> {
    let installed = npm::ensure(cache_root, &tool_spec(version), npm).map_err(|e| classify(version, e))?;
    let launcher = installed.dir.join(LAUNCHER_FILE);
    pdp_toolchain::files::write_if_changed(&launcher, LAUNCHER)
        .map_err(|e| ProvisionError::Other(format!("{e}: {}", e.source)))?;
    Ok(launcher)
}

/// Why an executor could not be provisioned.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// npm has no such release.
    #[error(
        "there is no query-plan executor for Prisma {version}: `@prisma/query-plan-executor@{version}` is not published on the npm registry"
    )]
    NoRelease {
        /// The version asked for.
        version: String,
    },
    /// npm is not installed (the user's to fix, as in every other command).
    #[error("{0}")]
    NoNpm(String),
    /// Anything else (registry unreachable, disk).
    #[error("{0}")]
    Other(String),
}

impl ProvisionError {
    /// One line telling the user what to do.
    pub fn hint(&self) -> String {
        match self {
            ProvisionError::NoRelease { .. } => {
                "use a Prisma Client version that has an executor release (`npm view @prisma/query-plan-executor versions`) and set `[prisma] version` to it".into()
            }
            ProvisionError::NoNpm(_) | ProvisionError::Other(_) => {
                "provision it ahead with `pdp engines fetch` where the npm registry is reachable".into()
            }
        }
    }
}

fn classify(version: &str, e: NpmError) -> ProvisionError {
    let text = match &e {
        NpmError::Install { source: ProcessError::Failed { stderr, .. }, .. } => stderr.clone(),
        _ => String::new(),
    };
    if text.contains("ETARGET") || text.contains("E404") || text.contains("No matching version") {
        ProvisionError::NoRelease { version: version.to_owned() }
    } else if e.is_user_error() {
        let mut message = e.to_string();
        if let Some(h) = e.hint() {
            message.push_str(&format!(" ({h})"));
        }
        ProvisionError::NoNpm(message)
    } else {
        let mut message = e.to_string();
        if let Some(h) = e.hint() {
            message.push_str(&format!(" ({h})"));
        }
        ProvisionError::Other(message)
    }
}

/// How executors are started: everything comes from the shared context.
pub struct Executors {
    /// Settings, database, limits.
    pub cx: Arc<Context>,
}

/// Why the query-plan executor cannot serve a database of `provider`, if it cannot: it ships driver
/// adapters for PostgreSQL, MySQL/MariaDB and SQL Server only (`defaultFactories` in
/// `@prisma/query-plan-executor` 7.10's bundle), so a Prisma 7 client on SQLite has nothing to run on.
pub fn unsupported_database(provider: pdp_config::Provider) -> Option<String> {
    use pdp_config::Provider;
    match provider {
        Provider::Postgresql | Provider::Mysql | Provider::Sqlserver => None,
        other => Some(format!(
            "Prisma 7's query-plan executor has no driver for {} (it speaks PostgreSQL, MySQL/MariaDB and SQL \
             Server), so pdp cannot serve Prisma 7 clients on this database",
            other.as_str()
        )),
    }
}

impl Launch for Executors {
    type Key = String;

    fn kind(&self) -> &'static str {
        "executor"
    }

    fn pool_size(&self, _version: &String) -> usize {
        self.cx.settings.children
    }

    fn health_path(&self) -> Option<&'static str> {
        Some("/health")
    }

    /// The executor builds its driver pool from the URL alone; pdp's launcher bounds it to `connections`
    /// (see `PDP_QPE_POOL_MAX` in `launchers/qpe.mjs`).
    fn prepare(&self, version: &String, slot: usize, connections: usize) -> Result<Cmd, StartError> {
        if let Some(why) = unsupported_database(self.cx.database.provider()) {
            return Err(StartError { message: why, permanent: true });
        }
        let settings = &self.cx.settings;
        let limits = &settings.limits;
        let node = settings.node.clone().ok_or_else(|| StartError {
            message: "the query-plan executor runs on Node.js, and `node` is not on PATH".into(),
            permanent: true,
        })?;
        let npm = settings.npm.clone();
        let label = format!("query-plan-executor@{version}");
        let launcher = provision(&settings.cache_root, version, move || {
            npm.ok_or(NpmError::NotFound { program: "npm", tool: label })
        })
        .map_err(|e| StartError {
            permanent: matches!(e, ProvisionError::NoRelease { .. }),
            message: format!("{e}; {}", e.hint()),
        })?;
        let dir = launcher.parent().map(PathBuf::from).unwrap_or_default();
        let pg_pool_line = match self.cx.database.provider() {
            pdp_config::Provider::Postgresql => Some(check_pg_pool_line(&dir, version)?),
            _ => None,
        };
        let socket = self
            .cx
            .socket_for("executor", &format!("{version}-{slot}"))
            .map_err(|e| StartError { message: format!("{e}; {}", e.hint().unwrap_or_default()), permanent: true })?;
        let cmd = Cmd::new(node, format!("start the query-plan executor for Prisma {version}"), dir)
            .arg(&launcher)
            .env("PDP_QPE_DATABASE_URL", self.cx.database.expose())
            .env("PDP_QPE_SOCKET", &socket)
            .env("PDP_QPE_POOL_MAX", connections.to_string())
            .env("PDP_QPE_QUERY_TIMEOUT_MS", limits.query_timeout.as_millis().to_string())
            .env("PDP_QPE_MAX_TX_TIMEOUT_MS", limits.transaction_max_timeout.as_millis().to_string())
            .env("PDP_QPE_MAX_TX_WAIT_MS", limits.transaction_max_wait.as_millis().to_string())
            .env("PDP_QPE_MAX_RESPONSE_SIZE", limits.max_response_size.to_string())
            .env("PDP_QPE_LOG_LEVEL", &settings.log_level);
        let cmd = match pg_pool_line {
            Some(line) => cmd.env("PDP_QPE_PG_POOL_LINE", line),
            None => cmd,
        };
        Ok(self.cx.bench_tcp(cmd))
    }
}

/// pg-pool's constructor as bundled in @prisma/query-plan-executor 7.1 to 7.10: its default pool size,
/// which the launcher sets to the child's share (node-postgres takes no pool size from a URL, and the
/// executor passes none).
const PG_POOL_LINE: &str = "this.options.max = this.options.max || this.options.poolSize || 10;";

/// Checks that the provisioned executor bundle in `dir` sets pg-pool's default size exactly once, as
/// [`PG_POOL_LINE`] says, so its PostgreSQL pool can be bounded; the line for the launcher. A release
/// that does not is refused for good (pdp runs no child unbounded).
fn check_pg_pool_line(dir: &std::path::Path, version: &str) -> Result<&'static str, StartError> {
    let package = dir.join("node_modules/@prisma/query-plan-executor");
    let main = std::fs::read_to_string(package.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["main"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "index.js".to_owned());
    let bundle = package.join(main);
    let text = std::fs::read_to_string(&bundle).map_err(|e| StartError {
        message: format!("cannot read the query-plan executor's bundle {}: {e}", bundle.display()),
        permanent: false,
    })?;
    if text.matches(PG_POOL_LINE).count() == 1 {
        return Ok(PG_POOL_LINE);
    }
    Err(StartError {
        message: format!(
            "cannot bound the PostgreSQL pool of @prisma/query-plan-executor {version}: its bundle ({}) does not set pg-pool's default size the way pdp knows, and pdp runs no child with an unbounded pool (every child's connections are its share of `[serve.limits] connection-limit`); use a Prisma version pdp supports (7.1 to 7.10)",
            bundle.display()
        ),
        permanent: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_versions_reach_npm() {
        for ok in ["7.10.0", "7.1.0-dev.3", "6.19.3"] {
            assert!(is_exact_version(ok), "{ok}");
        }
        for bad in ["latest", "^7.0.0", "7.x", "file:../evil", "7.10.0 || 1.0.0", "git+https://x", "", "7.10"] {
            assert!(!is_exact_version(bad), "{bad}");
        }
    }

    #[test]
    fn the_spec_pins_every_package() {
        let spec = tool_spec("7.10.0");
        assert_eq!(spec.dir_name(), "query-plan-executor@7.10.0");
        assert!(spec.packages.iter().all(|p| p.rsplit_once('@').is_some_and(|(_, v)| is_exact_version(v))));
    }

    #[test]
    fn a_bundle_is_bounded_only_where_pg_pools_default_line_appears_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let package = dir.path().join("node_modules/@prisma/query-plan-executor");
        std::fs::create_dir_all(package.join("dist")).expect("mkdir");
        std::fs::write(package.join("package.json"), r#"{"main": "dist/index.js"}"#).expect("write");
        let bundle = package.join("dist/index.js");
        std::fs::write(&bundle, format!("a();\n{PG_POOL_LINE}\nb();\n")).expect("write");
        assert_eq!(check_pg_pool_line(dir.path(), "7.10.0").expect("found"), PG_POOL_LINE);
        for text in ["this.options.max = this.options.max || 10;".to_owned(), format!("{PG_POOL_LINE}{PG_POOL_LINE}")] {
            std::fs::write(&bundle, text).expect("write");
            let e = check_pg_pool_line(dir.path(), "7.99.0").expect_err("refused");
            assert!(e.permanent, "a release without the line is refused for good");
            assert!(e.message.contains("7.99.0") && e.message.contains("connection-limit"), "{}", e.message);
        }
    }
}
