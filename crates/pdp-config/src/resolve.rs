//! Turns the raw file into a [`Config`]: strict parse with positions, then one pass that layers file,
//! environment and flags per key, validates each value where it came from, and applies defaults last.
//!
//! Every problem is collected (not just the first) so one run shows everything to fix. No value read
//! here is ever put into an error message if it may be a secret.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    Advertise, ApiKey, CacheConfig, ClientConfig, ClusterConfig, Config, DEFAULT_NPM_REGISTRY, DatabaseConfig,
    DatabaseSetting, DatabaseUrl, EnginesConfig, Limits, MIN_CLUSTER_SECRET, MigrateConfig, NetworkConfig,
    PrismaConfig, QueryEngine, Runtime, ServeConfig, Tls, UnsetSecret,
};
use crate::env::{self, Env};
use crate::error::{ConfigError, Origin, Problem};
use crate::prisma::PrismaVersion;
use crate::raw::{RawConfig, S};
use crate::secret::{Secret, redact_url};

/// Values given on the command line; they win over the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--database-url`.
    pub database_url: Option<Secret>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--public-url`.
    pub public_url: Option<String>,
}

/// Defaults, applied after the file, environment and flags were layered.
pub mod defaults {
    /// `[prisma] schema`.
    pub const SCHEMA: &str = "prisma/schema.prisma";
    /// `[engines] targets`.
    pub const TARGETS: &[&str] = &["native"];
    /// `[engines] mirror`.
    pub const MIRROR: &str = "https://binaries.prisma.sh";
    /// `[client] out`.
    pub const CLIENT_OUT: &str = "dist/client";
    /// `[client] version`.
    pub const CLIENT_VERSION: &str = "0.1.0";
    /// `[serve] listen`.
    pub const LISTEN: &str = "127.0.0.1:4466";
    /// `[serve] shutdown-timeout`.
    pub const SHUTDOWN_TIMEOUT: &str = "30s";
    /// `[serve.limits] max-body-size`.
    pub const MAX_BODY_SIZE: &str = "10MiB";
    /// `[serve.cache] max-size`.
    pub const CACHE_MAX_SIZE: &str = "64MiB";
    /// `[serve.limits] max-response-size` (the query-plan executor's own default).
    pub const MAX_RESPONSE_SIZE: &str = "128MiB";
    /// `[serve.limits] query-timeout`.
    pub const QUERY_TIMEOUT: &str = "30s";
    /// `[serve.limits] transaction-max-timeout`.
    pub const TRANSACTION_MAX_TIMEOUT: &str = "60s";
    /// `[serve.limits] transaction-max-wait`.
    pub const TRANSACTION_MAX_WAIT: &str = "10s";
    /// `[serve.limits] pool-timeout` (Prisma's own default).
    pub const POOL_TIMEOUT: &str = "10s";
    /// `[serve.limits] engine-start-timeout`.
    pub const ENGINE_START_TIMEOUT: &str = "30s";
    /// `[serve.limits] engine-idle-timeout`.
    pub const ENGINE_IDLE_TIMEOUT: &str = "15m";
    /// `[serve.limits] header-read-timeout`.
    pub const HEADER_READ_TIMEOUT: &str = "10s";
    /// `[serve.limits] tls-handshake-timeout`.
    pub const TLS_HANDSHAKE_TIMEOUT: &str = "10s";
    /// `[serve.limits] idle-timeout` (longer than the clients' own idle keep-alive, a few seconds).
    pub const IDLE_TIMEOUT: &str = "60s";
    /// `[serve.limits] max-connections`.
    pub const MAX_CONNECTIONS: u32 = 4096;
    /// `[serve.limits] connection-limit`: Prisma's own pool formula for one engine (CPUs × 2 + 1), and at
    /// least the 10 one Prisma 7 executor opens by itself, for the whole replica.
    pub fn connection_limit() -> u32 {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        u32::try_from(cpus * 2 + 1).unwrap_or(u32::MAX).max(10)
    }
    /// `[serve.limits] on-demand-connections`: a quarter of `connection-limit`, rounded down.
    pub fn on_demand_connections(connection_limit: u32) -> u32 {
        connection_limit / 4
    }
    /// `[migrate] lock-timeout` (Prisma's advisory-lock timeout).
    pub const LOCK_TIMEOUT: &str = "10s";
    /// The state directory under the project root.
    pub const STATE_DIR: &str = ".pdp";
}

/// Parses the text strictly; errors point at the line and key and suggest the fix.
pub(crate) fn parse(source: &str, file: &Path) -> Result<RawConfig, ConfigError> {
    let deserializer = match toml::Deserializer::parse(source) {
        Ok(d) => d,
        Err(e) => return Err(ConfigError::Invalid(vec![syntax_problem(&e, source, file)])),
    };
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = clean_path(&e.path().to_string());
        let inner = e.into_inner();
        ConfigError::Invalid(vec![schema_problem(&inner, key, source, file)])
    })
}

fn syntax_problem(e: &toml::de::Error, source: &str, file: &Path) -> Problem {
    let mut message = format!("invalid TOML: {}", e.message().trim_end());
    let mut key = None;
    // toml's message says "duplicate key" without naming it; its span does.
    if message.contains("duplicate key")
        && let Some(name) =
            e.span().and_then(|span| source.get(span)).map(str::trim).filter(|n| !n.is_empty() && n.len() <= 80)
    {
        let name = name.trim_start_matches('[').trim_end_matches(']').trim();
        message = format!("invalid TOML: `{name}` is defined twice");
        key = Some(name.to_owned());
    }
    Problem {
        origin: file_origin(file, source, e.span()),
        key,
        message,
        hint: Some(
            "see the reference: https://github.com/pdp-dev/pdp/blob/main/crates/pdp-config/reference.toml".into(),
        ),
    }
}

/// serde_path_to_error renders `Spanned` internals and the root as path segments; drop them.
fn clean_path(path: &str) -> String {
    path.split('.').filter(|seg| !seg.starts_with("$__") && *seg != "?").collect::<Vec<_>>().join(".")
}

fn schema_problem(e: &toml::de::Error, key: String, source: &str, file: &Path) -> Problem {
    let message = e.message().trim_end();
    let origin = file_origin(file, source, e.span());
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let table = key.rsplit_once('.').map(|(t, _)| t.to_owned());
        let full = match &table {
            Some(t) => format!("{t}.{field}"),
            None => field.to_owned(),
        };
        let where_ = match &table {
            Some(t) => format!(" in `[{t}]`"),
            None => String::new(),
        };
        let suggestion = expected
            .iter()
            .map(|cand| (strsim::jaro_winkler(field, cand), *cand))
            .filter(|(score, _)| *score > 0.75)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, cand)| cand);
        let hint = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!(
                "valid keys{where_}: {}",
                expected.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
        };
        return Problem { origin, key: Some(full.clone()), message: format!("unknown key `{full}`"), hint: Some(hint) };
    }
    let pretty = translate_type_message(message);
    let hint = expected_hint(message);
    Problem {
        origin,
        key: (!key.is_empty()).then(|| key.clone()),
        message: if key.is_empty() { pretty } else { format!("wrong value for `{key}`: {pretty}") },
        hint,
    }
}

/// Turns serde's "invalid type: string \"x\", expected u32" into words a user reads ("expected a whole
/// number, found a string"); the found value itself is left out in case it is a secret.
fn translate_type_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ") else {
        return message.to_owned();
    };
    let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "another type"));
    let found = found.split_whitespace().next().unwrap_or(found);
    let found = match found {
        "string" => "a string",
        "integer" => "an integer",
        "floating" => "a number",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "a table",
        other => other,
    };
    format!("expected {}, found {found}", describe_expected(expected))
}

fn describe_expected(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number",
        "a string" => "a string (in quotes)",
        "a sequence" => "an array",
        e if e.starts_with("struct ") => "a table",
        e => e,
    }
}

fn expected_hint(message: &str) -> Option<String> {
    if message.contains("expected u32") || message.contains("expected u64") {
        Some("write a whole number without quotes, e.g. `10`".into())
    } else if message.contains("expected a string") {
        Some("put the value in double quotes".into())
    } else if message.contains("expected a sequence") {
        Some("write an array, e.g. `[\"native\"]`".into())
    } else if message.contains("expected struct") {
        Some("this key is a table: write it as `[section]` with keys below it".into())
    } else {
        None
    }
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn file_origin(file: &Path, source: &str, span: Option<Range<usize>>) -> Origin {
    Origin::File { path: file.to_path_buf(), position: span.map(|s| line_col(source, s.start)) }
}

/// One value and where it came from, before validation.
struct Input {
    value: String,
    origin: Origin,
    from_file: bool,
}

struct Resolver<'a> {
    source: &'a str,
    file: &'a Path,
    root: PathBuf,
    env: &'a dyn Env,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Resolver<'_> {
    fn at(&self, s: &S) -> Origin {
        file_origin(self.file, self.source, Some(s.span()))
    }

    fn input(
        &self,
        file: Option<&S>,
        env_var: Option<&'static str>,
        flag: Option<(&'static str, Option<&String>)>,
    ) -> Option<Input> {
        if let Some((name, Some(v))) = flag {
            return Some(Input { value: v.clone(), origin: Origin::Flag(name), from_file: false });
        }
        if let Some(var) = env_var
            && let Some(v) = self.env.var(var)
            && !v.is_empty()
        {
            return Some(Input { value: v, origin: Origin::Env(var), from_file: false });
        }
        file.map(|s| Input { value: s.get_ref().clone(), origin: self.at(s), from_file: true })
    }

    fn problem(&mut self, origin: Origin, key: &str, message: impl Into<String>, hint: Option<String>) {
        self.problems.push(Problem { origin, key: Some(key.to_owned()), message: message.into(), hint });
    }

    fn path(&self, value: &str) -> PathBuf {
        let expanded = match value.strip_prefix("~/") {
            Some(rest) => match self.env.var("HOME") {
                Some(home) => PathBuf::from(home).join(rest),
                None => PathBuf::from(value),
            },
            None => PathBuf::from(value),
        };
        if expanded.is_absolute() { expanded } else { self.root.join(expanded) }
    }

    fn duration(&mut self, key: &str, input: Option<Input>, default: &str) -> Duration {
        let Some(input) = input else {
            return humantime::parse_duration(default).expect("defaults are valid durations");
        };
        match humantime::parse_duration(input.value.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.problem(input.origin, key, format!("`{key}` must be longer than zero"), None);
                Duration::ZERO
            }
            Err(e) => {
                self.problem(
                    input.origin,
                    key,
                    format!("`{key}` = `{}` is not a duration: {e}", input.value),
                    Some("write a number with a unit, e.g. `10s`, `500ms`, `2m`".into()),
                );
                Duration::ZERO
            }
        }
    }

    fn http_url(&mut self, key: &str, input: &Input) -> Option<url::Url> {
        match url::Url::parse(input.value.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
            Ok(u) => {
                self.problem(
                    input.origin.clone(),
                    key,
                    format!("`{key}` must be an http(s) URL, not `{}:`", u.scheme()),
                    Some("e.g. `https://proxy.example.com`".into()),
                );
                None
            }
            Err(e) => {
                self.problem(
                    input.origin.clone(),
                    key,
                    format!("`{key}` = `{}` is not a URL: {e}", redact_url(&input.value)),
                    Some("e.g. `https://proxy.example.com`".into()),
                );
                None
            }
        }
    }

    /// Reads an `env:NAME` reference to a secret (the database URL, an API key), or returns the literal.
    /// A variable that is not set (or set but empty) is no problem of the configuration as a whole: it
    /// comes back as the [`UnsetSecret`] a command that uses the setting fails with. An invalid name is a
    /// problem of the file (recorded; `Ok(None)`).
    fn deref_secret(&mut self, key: &str, input: &Input) -> Result<Option<(String, Option<String>)>, Box<UnsetSecret>> {
        let Some(name) = input.value.strip_prefix("env:").map(str::trim) else {
            return Ok(Some((input.value.clone(), None)));
        };
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            self.problem(
                input.origin.clone(),
                key,
                format!("`{key}` refers to `env:{name}`, which is not a valid variable name"),
                Some("write `env:NAME` with letters, digits and underscores, e.g. `env:DATABASE_URL`".into()),
            );
            return Ok(None);
        }
        self.secret_env(key, input, name).map(|v| Some((v, Some(name.to_owned()))))
    }

    fn secret_env(&self, key: &str, input: &Input, name: &str) -> Result<String, Box<UnsetSecret>> {
        let (message, hint) = match self.env.var(name) {
            Some(v) if !v.is_empty() => return Ok(v),
            Some(_) => (
                format!("`{key}` refers to environment variable `{name}`, which is set but empty"),
                format!("set `{name}` to a value, or add `{name}=…` to `.env` next to pdp.toml"),
            ),
            None => (
                format!("`{key}` refers to environment variable `{name}`, which is not set"),
                format!("export `{name}`, or add `{name}=…` to `.env` next to pdp.toml (see `.env.example`)"),
            ),
        };
        Err(Box::new(UnsetSecret {
            var: name.to_owned(),
            problem: Problem { origin: input.origin.clone(), key: Some(key.to_owned()), message, hint: Some(hint) },
        }))
    }

    fn table_origin(&self, table: &str) -> Origin {
        let header = format!("[{table}]");
        let position =
            self.source.lines().enumerate().find(|(_, l)| l.trim_start().starts_with(&header)).map(|(i, _)| (i + 1, 1));
        Origin::File { path: self.file.to_path_buf(), position }
    }
}

pub(crate) fn resolve(
    raw: RawConfig,
    source: &str,
    file: &Path,
    env: &dyn Env,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let root = file.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut r = Resolver { source, file, root, env, problems: Vec::new(), warnings: Vec::new() };

    // [prisma]
    let prisma_span = raw.prisma.as_ref().map(|p| p.span());
    let prisma = raw.prisma.map(toml::Spanned::into_inner).unwrap_or_default();
    let version = match &prisma.version {
        Some(v) => match v.get_ref().parse::<PrismaVersion>() {
            Ok(version) => Some(version),
            Err(e) => {
                let hint = match &e {
                    crate::prisma::VersionError::Malformed { .. } => {
                        format!("write a full version, e.g. `version = \"{}\"`", crate::prisma::DEFAULT_PRISMA_VERSION)
                    }
                    crate::prisma::VersionError::Unsupported { .. } => {
                        format!("pick a supported version; new projects use {}", crate::prisma::DEFAULT_PRISMA_VERSION)
                    }
                };
                r.problem(r.at(v), "prisma.version", format!("`prisma.version`: {e}"), Some(hint));
                None
            }
        },
        None => {
            let origin = match prisma_span {
                Some(span) => file_origin(file, source, Some(span)),
                None => Origin::File { path: file.to_path_buf(), position: None },
            };
            r.problem(
                origin,
                "prisma.version",
                "missing required key `prisma.version`",
                Some(format!(
                    "add `version = \"{}\"` under `[prisma]` (it decides client generation, protocol and engines)",
                    crate::prisma::DEFAULT_PRISMA_VERSION
                )),
            );
            None
        }
    };
    let schema = r.path(prisma.schema.as_ref().map_or(defaults::SCHEMA, |s| s.get_ref()));
    let migrations = prisma.migrations.as_ref().map(|s| r.path(s.get_ref()));

    // [database]
    let database = raw.database.unwrap_or_default();
    let db_input = match &overrides.database_url {
        Some(secret) => {
            Some(Input { value: secret.expose().to_owned(), origin: Origin::Flag("--database-url"), from_file: false })
        }
        None => r.input(database.url.as_ref(), Some(env::PDP_DATABASE_URL), None),
    };
    let mut db_url = DatabaseSetting::Embedded;
    if let Some(input) = db_input {
        // A literal from the file keeps `env:` semantics; env vars and flags are literal URLs.
        let resolved = if input.from_file {
            r.deref_secret("database.url", &input)
        } else {
            Ok(Some((input.value.clone(), None)))
        };
        let resolved = match resolved {
            Ok(resolved) => resolved,
            Err(unset) => {
                db_url = DatabaseSetting::Unset(*unset);
                None
            }
        };
        if let Some((value, var)) = resolved {
            let source = match &var {
                Some(name) => format!("environment variable `{name}`, via `database.url`"),
                None => input.origin.to_string(),
            };
            match DatabaseUrl::parse(&value, source) {
                Ok(url) => {
                    if input.from_file && var.is_none() && url.redacted() != value {
                        r.warnings.push(Problem {
                            origin: input.origin.clone(),
                            key: Some("database.url".into()),
                            message: "`database.url` holds a password in pdp.toml".into(),
                            hint: Some(
                                "use `url = \"env:DATABASE_URL\"` and keep the URL in `.env` or the environment".into(),
                            ),
                        });
                    }
                    db_url = DatabaseSetting::Url(url);
                }
                Err(why) => {
                    let from = match &var {
                        Some(name) => format!(" (from `{name}`)"),
                        None => String::new(),
                    };
                    r.problem(
                        input.origin.clone(),
                        "database.url",
                        format!("`database.url`{from}: {why}"),
                        Some("e.g. `postgresql://user@host:5432/db?schema=public`, `mysql://root@host:3306/db` or `file:./dev.db`".into()),
                    );
                }
            }
        }
    }

    // [engines]
    let engines = raw.engines.unwrap_or_default();
    let mut targets = Vec::new();
    match &engines.targets {
        Some(list) if list.is_empty() => r.problem(
            r.table_origin("engines"),
            "engines.targets",
            "`engines.targets` is empty",
            Some(
                "use `[\"native\"]` for this machine, or name Prisma binary targets such as `linux-static-x64`".into(),
            ),
        ),
        Some(list) => {
            for t in list {
                let name = t.get_ref().trim();
                if name == crate::targets::NATIVE || crate::targets::lookup(name).is_some() {
                    targets.push(name.to_owned());
                } else if let Some(modern) = crate::targets::modern_name(name) {
                    targets.push(modern.to_owned());
                } else {
                    let hint = match crate::targets::closest(name) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "known targets: native, {}",
                            crate::targets::TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
                        ),
                    };
                    r.problem(
                        r.at(t),
                        "engines.targets",
                        format!("unknown binary target `{name}` in `engines.targets`"),
                        Some(hint),
                    );
                }
            }
        }
        None => targets.extend(defaults::TARGETS.iter().map(|s| (*s).to_owned())),
    }
    let mirror_input = r.input(engines.mirror.as_ref(), Some(env::PRISMA_ENGINES_MIRROR), None);
    let mirror = match mirror_input {
        Some(input) => r.http_url("engines.mirror", &input),
        None => url::Url::parse(defaults::MIRROR).ok(),
    };
    let cache = match r.input(engines.cache.as_ref(), Some(env::PDP_CACHE_DIR), None) {
        Some(input) => r.path(&input.value),
        None => default_cache_dir(env),
    };

    // [client]
    let client = raw.client.unwrap_or_default();
    let runtime = match &client.runtime {
        None => Runtime::Deno,
        Some(s) if s.get_ref() == "deno" => Runtime::Deno,
        Some(s) => {
            r.problem(
                r.at(s),
                "client.runtime",
                format!("unsupported `client.runtime` `{}`", s.get_ref()),
                Some("pdp generates clients for `deno` (Windmill, Deno Deploy)".into()),
            );
            Runtime::Deno
        }
    };
    let out = r.path(client.out.as_ref().map_or(defaults::CLIENT_OUT, |s| s.get_ref()));
    let client_version = match &client.version {
        None => defaults::CLIENT_VERSION.to_owned(),
        Some(s) => {
            let v = s.get_ref().trim();
            let ok = !v.is_empty()
                && v != "."
                && v != ".."
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
            if !ok {
                r.problem(
                    r.at(s),
                    "client.version",
                    format!("`client.version` = `{v}` cannot be a folder name in a URL"),
                    Some("use letters, digits, `.`, `-`, `_` or `+`, e.g. `1.2.0`".into()),
                );
            }
            v.to_owned()
        }
    };
    let base_url = client.base_url.as_ref().and_then(|s| {
        let input = Input { value: s.get_ref().clone(), origin: r.at(s), from_file: true };
        r.http_url("client.base-url", &input).map(|mut u| {
            if !u.path().ends_with('/') {
                u.set_path(&format!("{}/", u.path()));
            }
            u
        })
    });

    // [serve]
    let serve = raw.serve.unwrap_or_default();
    let listen =
        match r.input(serve.listen.as_ref(), Some(env::PDP_LISTEN), Some(("--listen", overrides.listen.as_ref()))) {
            None => defaults::LISTEN.parse::<SocketAddr>().ok(),
            Some(input) => match input.value.trim().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.problem(
                        input.origin,
                        "serve.listen",
                        format!("`serve.listen` = `{}` is not an IP address and port", input.value),
                        Some("e.g. `127.0.0.1:4466` for local use, `0.0.0.0:4466` in a container".into()),
                    );
                    None
                }
            },
        };
    let tls = resolve_tls(&mut r, serve.tls.as_ref(), serve.tls_cert.as_ref(), serve.tls_key.as_ref());
    let public_url = match r.input(
        serve.public_url.as_ref(),
        Some(env::PDP_PUBLIC_URL),
        Some(("--public-url", overrides.public_url.as_ref())),
    ) {
        Some(input) => r.http_url("serve.public-url", &input),
        None => listen.and_then(|addr| {
            let scheme = if tls == Tls::Off { "http" } else { "https" };
            let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
                "localhost".to_owned()
            } else {
                addr.ip().to_string()
            };
            url::Url::parse(&format!("{scheme}://{host}:{}", addr.port())).ok()
        }),
    };
    let mut api_keys = Vec::new();
    for entry in serve.api_keys.iter().flatten() {
        let value = entry.get_ref().trim();
        if let Some(hex) = value.strip_prefix("sha256:") {
            if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                api_keys.push(ApiKey::Sha256(hex.to_ascii_lowercase()));
            } else {
                r.problem(
                    r.at(entry),
                    "serve.api-keys",
                    "an entry of `serve.api-keys` starts with `sha256:` but is not 64 hex digits",
                    Some("`pdp keys new` prints a key and its `sha256:` line".into()),
                );
            }
        } else if value.starts_with("env:") {
            let input = Input { value: value.to_owned(), origin: r.at(entry), from_file: true };
            match r.deref_secret("serve.api-keys", &input) {
                Ok(Some((key, Some(var)))) => api_keys.push(ApiKey::Env { var, key: Secret::new(key) }),
                Ok(_) => {}
                Err(unset) => api_keys.push(ApiKey::Unset(*unset)),
            }
        } else {
            r.problem(
                r.at(entry),
                "serve.api-keys",
                "`serve.api-keys` holds a plain key; pdp.toml must not contain secrets",
                Some("write `\"env:PDP_API_KEY\"` or a `\"sha256:…\"` hash (`pdp keys new` prints both), and rotate this key".into()),
            );
        }
    }
    let shutdown_timeout = {
        let input = serve.shutdown_timeout.as_ref().map(|s| Input {
            value: s.get_ref().clone(),
            origin: r.at(s),
            from_file: true,
        });
        r.duration("serve.shutdown-timeout", input, defaults::SHUTDOWN_TIMEOUT)
    };

    let limits_raw = serve.limits.unwrap_or_default();
    let mut lim = |key: &str, v: &Option<S>, default: &str| {
        let input = v.as_ref().map(|s| Input { value: s.get_ref().clone(), origin: r.at(s), from_file: true });
        r.duration(key, input, default)
    };
    let query_timeout = lim("serve.limits.query-timeout", &limits_raw.query_timeout, defaults::QUERY_TIMEOUT);
    let transaction_max_timeout = lim(
        "serve.limits.transaction-max-timeout",
        &limits_raw.transaction_max_timeout,
        defaults::TRANSACTION_MAX_TIMEOUT,
    );
    let transaction_max_wait =
        lim("serve.limits.transaction-max-wait", &limits_raw.transaction_max_wait, defaults::TRANSACTION_MAX_WAIT);
    let pool_timeout = lim("serve.limits.pool-timeout", &limits_raw.pool_timeout, defaults::POOL_TIMEOUT);
    let engine_start_timeout =
        lim("serve.limits.engine-start-timeout", &limits_raw.engine_start_timeout, defaults::ENGINE_START_TIMEOUT);
    let engine_idle_timeout =
        lim("serve.limits.engine-idle-timeout", &limits_raw.engine_idle_timeout, defaults::ENGINE_IDLE_TIMEOUT);
    let header_read_timeout =
        lim("serve.limits.header-read-timeout", &limits_raw.header_read_timeout, defaults::HEADER_READ_TIMEOUT);
    let tls_handshake_timeout =
        lim("serve.limits.tls-handshake-timeout", &limits_raw.tls_handshake_timeout, defaults::TLS_HANDSHAKE_TIMEOUT);
    let idle_timeout = lim("serve.limits.idle-timeout", &limits_raw.idle_timeout, defaults::IDLE_TIMEOUT);
    let mut size = |key: &str, v: &Option<S>, default: &str| {
        let (value, origin) = match v {
            Some(s) => (s.get_ref().clone(), Some(r.at(s))),
            None => (default.to_owned(), None),
        };
        match parse_size(&value) {
            Some(n) if n > 0 => n,
            _ => {
                r.problem(
                    origin.unwrap_or_else(|| r.table_origin("serve.limits")),
                    key,
                    format!("`{key}` = `{value}` is not a size"),
                    Some("write a number with a unit, e.g. `10MiB`, `512KiB`, `1MB`".into()),
                );
                0
            }
        }
    };
    let max_body_size = size("serve.limits.max-body-size", &limits_raw.max_body_size, defaults::MAX_BODY_SIZE);
    let cache_raw = serve.cache.unwrap_or_default();
    let query_cache = CacheConfig {
        enabled: cache_raw.enabled.as_ref().is_none_or(|b| *b.get_ref()),
        max_size: size("serve.cache.max-size", &cache_raw.max_size, defaults::CACHE_MAX_SIZE),
    };
    let max_response_size =
        size("serve.limits.max-response-size", &limits_raw.max_response_size, defaults::MAX_RESPONSE_SIZE);
    let metrics_listen = serve.metrics_listen.as_ref().and_then(|s| match s.get_ref().trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.problem(
                r.at(s),
                "serve.metrics-listen",
                format!("`serve.metrics-listen` = `{}` is not an IP address and port", s.get_ref()),
                Some("e.g. `127.0.0.1:9464`; leave it out to serve /metrics on the main address, behind a key".into()),
            );
            None
        }
    });
    // A count that must be at least 1, if given.
    let mut at_least_one = |key: &str, n: &Option<toml::Spanned<u32>>, hint: Option<&str>| match n {
        Some(n) if *n.get_ref() == 0 => {
            let origin = file_origin(file, source, Some(n.span()));
            r.problem(origin, key, format!("`{key}` must be at least 1"), hint.map(str::to_owned));
            None
        }
        Some(n) => Some(*n.get_ref()),
        None => None,
    };
    let threads = at_least_one("serve.threads", &serve.threads, Some("leave it out for half the CPUs"));
    let children =
        at_least_one("serve.children", &serve.children, Some("leave it out for the CPUs pdp's threads leave free"));
    let connection_limit = at_least_one("serve.limits.connection-limit", &limits_raw.connection_limit, None)
        .unwrap_or_else(defaults::connection_limit);
    let max_connections = at_least_one("serve.limits.max-connections", &limits_raw.max_connections, None)
        .unwrap_or(defaults::MAX_CONNECTIONS);
    // Held back from the project's own children for those that start on demand; less than the whole.
    let on_demand_connections = match &limits_raw.on_demand_connections {
        Some(n) if *n.get_ref() >= connection_limit => {
            let origin = file_origin(file, source, Some(n.span()));
            r.problem(
                origin,
                "serve.limits.on-demand-connections",
                format!(
                    "`serve.limits.on-demand-connections` ({}) must be less than `connection-limit` ({connection_limit}): the project's own children need at least one",
                    n.get_ref()
                ),
                Some("lower it, or raise `connection-limit`".to_owned()),
            );
            0
        }
        Some(n) => *n.get_ref(),
        None => defaults::on_demand_connections(connection_limit),
    };

    let engine = match serve.engine.as_ref().map(|s| (s, s.get_ref().trim())) {
        None | Some((_, "native")) => QueryEngine::Native,
        Some((_, "wasm")) => QueryEngine::Wasm,
        Some((s, other)) => {
            r.problem(
                r.at(s),
                "serve.engine",
                format!("unknown `serve.engine` `{other}`"),
                Some("use `\"native\"` (Prisma's query-engine binary) or `\"wasm\"` (Prisma 6.19's WASM engine under Node)".into()),
            );
            QueryEngine::Native
        }
    };
    let flag = |b: &Option<toml::Spanned<bool>>, default: bool| b.as_ref().map_or(default, |b| *b.get_ref());
    let (raw_queries, engine_metrics) = (flag(&serve.raw_queries, true), flag(&serve.engine_metrics, true));
    let (telemetry_in_response, log_queries) =
        (flag(&serve.telemetry_in_response, true), flag(&serve.log_queries, false));

    let cluster = resolve_cluster(&mut r, serve.cluster.as_ref());

    // [migrate]
    let migrate = raw.migrate.unwrap_or_default();
    let lock_timeout = {
        let input = migrate.lock_timeout.as_ref().map(|s| Input {
            value: s.get_ref().clone(),
            origin: r.at(s),
            from_file: true,
        });
        r.duration("migrate.lock-timeout", input, defaults::LOCK_TIMEOUT)
    };

    let state_dir = match env.var(env::PDP_STATE_DIR).filter(|v| !v.is_empty()) {
        Some(dir) => r.path(&dir),
        None => r.root.join(defaults::STATE_DIR),
    };
    let network = resolve_network(&mut r);
    let temp_dir = temp_dir(env);

    if !r.problems.is_empty() {
        return Err(ConfigError::Invalid(r.problems));
    }
    let (Some(version), Some(mirror), Some(listen), Some(public_url)) = (version, mirror, listen, public_url) else {
        unreachable!("every None above recorded a problem");
    };
    Ok(Config {
        file: file.to_path_buf(),
        root: r.root,
        state_dir,
        prisma: PrismaConfig { version, schema, migrations },
        database: DatabaseConfig { url: db_url },
        engines: EnginesConfig { targets, mirror, cache },
        client: ClientConfig { runtime, out, version: client_version, base_url },
        serve: ServeConfig {
            listen,
            public_url,
            tls,
            api_keys,
            shutdown_timeout,
            metrics_listen,
            threads,
            children,
            bench_child_tcp: env.var(env::PDP_BENCH_CHILD_TCP).is_some_and(|v| !v.is_empty()),
            engine,
            raw_queries,
            engine_metrics,
            telemetry_in_response,
            log_queries,
            limits: Limits {
                max_body_size,
                max_response_size,
                query_timeout,
                transaction_max_timeout,
                transaction_max_wait,
                connection_limit,
                on_demand_connections,
                pool_timeout,
                engine_start_timeout,
                engine_idle_timeout,
                header_read_timeout,
                tls_handshake_timeout,
                idle_timeout,
                max_connections,
            },
            cluster,
            cache: query_cache,
        },
        migrate: MigrateConfig { lock_timeout },
        network,
        temp_dir,
        warnings: r.warnings,
    })
}

/// `[serve.cluster]`, on when `advertise` is given (in the file or `PDP_CLUSTER_ADVERTISE`).
fn resolve_cluster(r: &mut Resolver<'_>, raw: Option<&crate::raw::RawCluster>) -> Option<ClusterConfig> {
    let empty = crate::raw::RawCluster::default();
    let c = raw.unwrap_or(&empty);
    let addr = |r: &mut Resolver<'_>, key: &str, input: &Input| {
        let value = input.value.trim();
        if let Some(port) = value.strip_prefix("auto:").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0) {
            return Some(Advertise::Hostname(port));
        }
        match value.parse::<SocketAddr>() {
            Ok(a) if !a.ip().is_unspecified() && a.port() != 0 => Some(Advertise::Addr(a)),
            _ => {
                r.problem(
                    input.origin.clone(),
                    key,
                    format!("`{key}` = `{}` is not an IP address and port peers can connect to", input.value),
                    Some("e.g. `10.0.0.5:4468`, or `auto:4468` for the address this host's name resolves to (Docker, Kubernetes)".into()),
                );
                None
            }
        }
    };
    let Some(advertise_input) = r.input(c.advertise.as_ref(), Some(env::PDP_CLUSTER_ADVERTISE), None) else {
        if raw.is_some() {
            r.problem(
                r.table_origin("serve.cluster"),
                "serve.cluster.advertise",
                "`[serve.cluster]` has no `advertise` address: peers could not reach this replica",
                Some("set `advertise = \"<this replica's IP>:4468\"` or PDP_CLUSTER_ADVERTISE, or remove `[serve.cluster]` to serve alone".into()),
            );
        }
        return None;
    };
    let advertise = addr(r, "serve.cluster.advertise", &advertise_input);
    let listen = match c.listen.as_ref() {
        Some(s) => {
            let input = Input { value: s.get_ref().clone(), origin: r.at(s), from_file: true };
            match input.value.trim().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.problem(
                        input.origin,
                        "serve.cluster.listen",
                        format!("`serve.cluster.listen` = `{}` is not an IP address and port", input.value),
                        Some("e.g. `0.0.0.0:4468`; leave it out to listen on the advertised address".into()),
                    );
                    None
                }
            }
        }
        None => advertise.map(|a| match a {
            Advertise::Addr(a) => a,
            Advertise::Hostname(port) => SocketAddr::from(([0, 0, 0, 0], port)),
        }),
    };
    let secret_input = match c.secret.as_ref() {
        Some(s) => Input { value: s.get_ref().trim().to_owned(), origin: r.at(s), from_file: true },
        // Left out: the variable the deploy files set.
        None => Input {
            value: format!("env:{}", env::PDP_CLUSTER_SECRET),
            origin: advertise_input.origin.clone(),
            from_file: true,
        },
    };
    let secret = if secret_input.value.starts_with("env:") {
        match r.deref_secret("serve.cluster.secret", &secret_input) {
            Ok(Some((value, _))) if value.len() < MIN_CLUSTER_SECRET => {
                r.problem(
                    secret_input.origin,
                    "serve.cluster.secret",
                    format!("the cluster secret is {} bytes; at least {MIN_CLUSTER_SECRET} are needed", value.len()),
                    Some("generate one with `openssl rand -hex 32` and give every replica the same".into()),
                );
                None
            }
            Ok(Some((value, _))) => Some(Ok(Secret::new(value))),
            Ok(None) => None,
            Err(unset) => Some(Err(*unset)),
        }
    } else {
        r.problem(
            secret_input.origin,
            "serve.cluster.secret",
            "`serve.cluster.secret` holds the secret itself; pdp.toml must not contain secrets",
            Some("write `\"env:PDP_CLUSTER_SECRET\"` and keep the value in the environment, then rotate it".into()),
        );
        None
    };
    let mut peers = Vec::new();
    let peer_inputs: Vec<Input> = match r.env.var(env::PDP_CLUSTER_PEERS).filter(|v| !v.trim().is_empty()) {
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| Input { value: p.to_owned(), origin: Origin::Env(env::PDP_CLUSTER_PEERS), from_file: false })
            .collect(),
        None => c
            .peers
            .iter()
            .flatten()
            .map(|s| Input { value: s.get_ref().trim().to_owned(), origin: r.at(s), from_file: true })
            .collect(),
    };
    for input in peer_inputs {
        match input.value.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
                peers.push(input.value);
            }
            _ => r.problem(
                input.origin,
                "serve.cluster.peers",
                format!("the peer `{}` is not `host:port`", input.value),
                Some("e.g. `10.0.0.6:4468`, or a name that resolves to every replica such as `pdp-peers.default.svc.cluster.local:4468`".into()),
            ),
        }
    }
    Some(ClusterConfig { secret: secret?, advertise: advertise?, listen: listen?, peers })
}

fn resolve_tls(r: &mut Resolver<'_>, mode: Option<&S>, cert: Option<&S>, key: Option<&S>) -> Tls {
    let mode_text = mode.map(|s| s.get_ref().trim());
    let cert_path = cert.map(|s| r.path(s.get_ref()));
    let key_path = key.map(|s| r.path(s.get_ref()));
    match mode_text {
        Some(m @ ("auto" | "off")) => {
            if let Some(stray) = cert.or(key) {
                r.problem(
                    r.at(stray),
                    "serve.tls",
                    format!(
                        "`serve.tls-cert` / `serve.tls-key` are only used with `tls = \"files\"`, but `tls = \"{m}\"`"
                    ),
                    Some("set `tls = \"files\"`, or remove the certificate keys".into()),
                );
            }
            if m == "auto" { Tls::Auto } else { Tls::Off }
        }
        Some("files") | None if mode_text.is_some() || cert.is_some() || key.is_some() => match (cert_path, key_path) {
            (Some(cert), Some(key)) => Tls::Files { cert, key },
            (cert_path, _) => {
                let missing = if cert_path.is_none() { "serve.tls-cert" } else { "serve.tls-key" };
                let origin = match mode.or(cert).or(key) {
                    Some(s) => r.at(s),
                    None => r.table_origin("serve"),
                };
                r.problem(
                    origin,
                    missing,
                    format!("TLS from files needs both `serve.tls-cert` and `serve.tls-key`; `{missing}` is missing"),
                    Some("set both to PEM files, or use `tls = \"auto\"` for a local CA".into()),
                );
                Tls::Auto
            }
        },
        None => Tls::Auto,
        Some(other) => {
            let origin = mode.map_or_else(|| r.table_origin("serve"), |s| r.at(s));
            r.problem(
                origin,
                "serve.tls",
                format!("unknown `serve.tls` mode `{other}`"),
                Some("use `\"auto\"` (local CA, for development), `\"files\"` (with `tls-cert` and `tls-key`) or `\"off\"` (behind a TLS-terminating proxy)".into()),
            );
            Tls::Auto
        }
    }
}

/// `10MiB`, `512KiB`, `1MB`, `2048` (bytes): a whole number, optional spaces, then one of the units
/// reference.toml documents. The value is read by `bytesize`; the form is checked first, because
/// bytesize also takes decimals and units in any letter case, which pdp.toml does not promise, and it
/// saturates where pdp refuses a size too large to count.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    const UNITS: [&str; 9] = ["", "B", "KB", "kB", "KiB", "MB", "MiB", "GB", "GiB"];
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 || !UNITS.contains(&text[digits..].trim_start()) {
        return None;
    }
    let size = text.parse::<bytesize::ByteSize>().ok()?.as_u64();
    (size != u64::MAX).then_some(size)
}

/// The per-user cache for engines and tools: `$XDG_CACHE_HOME/pdp`, `~/.cache/pdp`, or the OS equivalents.
fn default_cache_dir(env: &dyn Env) -> PathBuf {
    let base = if cfg!(target_os = "macos") {
        env.var("HOME").map(|h| PathBuf::from(h).join("Library/Caches"))
    } else if cfg!(windows) {
        env.var("LOCALAPPDATA").map(PathBuf::from)
    } else {
        env.var("XDG_CACHE_HOME")
            .filter(|v| Path::new(v).is_absolute())
            .map(PathBuf::from)
            .or_else(|| env.var("HOME").map(|h| PathBuf::from(h).join(".cache")))
    };
    base.unwrap_or_else(|| temp_dir(env)).join("pdp")
}

/// `TMPDIR` when set, else the system's temporary directory (`/tmp` on Unix), as the standard library reads it.
fn temp_dir(env: &dyn Env) -> PathBuf {
    match env.var(env::TMPDIR).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None if cfg!(unix) => PathBuf::from("/tmp"),
        // Windows keeps it in TEMP/TMP; the Env registry does not name those, so ask the OS.
        None => env.var("TEMP").or_else(|| env.var("TMP")).map_or_else(|| PathBuf::from("."), PathBuf::from),
    }
}

/// Proxies (upper-case name first, an empty value is unset, as curl and Prisma's CLI read them) and the
/// npm registry, each checked once so that every command means the same by them.
fn resolve_network(r: &mut Resolver<'_>) -> NetworkConfig {
    // The upper-case name wins when it is set at all (an empty value then means "no proxy", masking the
    // lower-case one), as pdp has always read them.
    let either = |upper: &'static str, lower: &'static str| -> Option<(String, &'static str)> {
        let (value, name) = match r.env.var(upper) {
            Some(v) => (v, upper),
            None => (r.env.var(lower)?, lower),
        };
        (!value.trim().is_empty()).then_some((value, name))
    };
    let (https, http, no_proxy) = (
        either(env::HTTPS_PROXY, "https_proxy"),
        either(env::HTTP_PROXY, "http_proxy"),
        either(env::NO_PROXY, "no_proxy"),
    );
    let mut proxy = |found: Option<(String, &'static str)>| {
        let (value, var) = found?;
        match check_proxy(&value) {
            Ok(()) => Some(value.trim().to_owned()),
            Err(why) => {
                r.problem(
                    Origin::Env(var),
                    var,
                    format!("`{var}` = `{}` is not a proxy URL: {why}", redact_url(&value)),
                    Some(format!("set it to e.g. `http://proxy.example.com:3128`, or unset `{var}`")),
                );
                None
            }
        }
    };
    let https_proxy = proxy(https);
    let http_proxy = proxy(http);
    let npm_registry = match r.env.var(env::PDP_NPM_REGISTRY).filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(value) => {
            let input = Input { value, origin: Origin::Env(env::PDP_NPM_REGISTRY), from_file: false };
            let url = r.http_url(env::PDP_NPM_REGISTRY, &input);
            if url.is_none()
                && let Some(p) = r.problems.last_mut()
            {
                p.hint = Some(format!(
                    "set `{}` to a registry base URL such as {}, or unset it",
                    env::PDP_NPM_REGISTRY,
                    DEFAULT_NPM_REGISTRY
                ));
            }
            url
        }
    };
    NetworkConfig { https_proxy, http_proxy, no_proxy: no_proxy.map(|(v, _)| v.trim().to_owned()), npm_registry }
}

/// reqwest's reading of a proxy: a URL, or `host:port` taken as `http://host:port`; schemes http, https,
/// socks4, socks4a, socks5 and socks5h; a host.
fn check_proxy(value: &str) -> Result<(), String> {
    let value = value.trim();
    let parsed = match url::Url::parse(value) {
        Err(url::ParseError::RelativeUrlWithoutBase) => url::Url::parse(&format!("http://{value}")),
        // `host:port` parses as scheme `host` with path `port`.
        Ok(u) if u.cannot_be_a_base() => url::Url::parse(&format!("http://{value}")),
        other => other,
    }
    .map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https" | "socks4" | "socks4a" | "socks5" | "socks5h") {
        return Err(format!("unsupported scheme `{}:`", parsed.scheme()));
    }
    if !parsed.has_host() || parsed.host_str().is_some_and(str::is_empty) {
        return Err("it names no host".into());
    }
    Ok(())
}
