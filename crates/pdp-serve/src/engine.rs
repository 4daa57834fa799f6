//! Prisma 4.x–6.x query engines as supervised children: one per (client version or WASM build, schema
//! hash, engine protocol). A native engine is the `query-engine` binary of the client version's engine
//! commit (`PRISMA_QUERY_ENGINE_BINARY` first, else the engines cache that `pdp engines fetch` fills); the
//! WASM engine is Prisma 6.19.3's, provisioned from npm and hosted by pdp's launcher under Node. Either gets
//! the schema as a file, pdp's database URL through the environment (never argv, never the schema's own
//! `url`), the engine protocol explicitly, and the flags `[serve]` chooses. The WASM engine listens on a
//! Unix socket in pdp's private directory; a native engine on a free loopback port, because Prisma's
//! 4.x–6.x engines bind TCP only (`--unix-path` is still parsed by them and then ignored).
//!
//! Deliberately not here: HTTP routing and error bodies (`dp1`), restarts and waiting (`supervisor`),
//! downloading native engines (only `pdp engines fetch` downloads them; a missing one is an error with a hint).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pdp_config::prisma::PrismaVersion;
use pdp_config::{Provider, QueryEngine};
use pdp_toolchain::engines::{Cache, EngineHash, EngineKind, file_name, resolve_hash};
use pdp_toolchain::files::{self, FileError};
use pdp_toolchain::http::Http;
use pdp_toolchain::launch::ChildAddr;
use pdp_toolchain::npm::{self, NpmError, ToolSpec};
use pdp_toolchain::overrides::{self, Pin, Probe};
use pdp_toolchain::process::Cmd;

use crate::context::Context;
use crate::supervisor::{Launch, StartError};

/// The WASM engine's Prisma version (its engine commit is 2ba551f3…).
pub const WASM_VERSION: &str = "6.19.3";
/// The packages the WASM launcher imports, pinned.
const WASM_PACKAGES: [&str; 8] = [
    "@prisma/client@6.19.3",
    "@prisma/driver-adapter-utils@6.19.3",
    "@prisma/adapter-pg@6.19.3",
    "pg@8.16.3",
    "@prisma/adapter-mariadb@6.19.3",
    "mariadb@3.4.5",
    "@prisma/adapter-libsql@6.19.3",
    "@libsql/client@0.8.1",
];
/// The only WASM query engine published that still speaks the GraphQL protocol (Prisma 4.x clients without
/// `jsonProtocol`): a 5.6-era build with the driver adapters of its time, PostgreSQL only.
pub const WASM_GRAPHQL_VERSION: &str = "0.0.11";
const WASM_GRAPHQL_PACKAGES: [&str; 4] =
    ["@prisma/query-engine-wasm@0.0.11", "@prisma/driver-adapter-utils@5.6.0", "@prisma/adapter-pg@5.6.0", "pg@8.11.3"];
const WASM_LAUNCHER: &str = include_str!("../launchers/wasm-engine.mjs");
const WASM_LAUNCHER_FILE: &str = "pdp-wasm-engine.mjs";

/// The npm packages of the WASM engine for `protocol`.
pub fn wasm_tool_spec(protocol: Protocol) -> ToolSpec {
    let (name, version, packages): (&str, &str, &[&str]) = match protocol {
        Protocol::Json => ("wasm-query-engine", WASM_VERSION, &WASM_PACKAGES),
        Protocol::GraphQl => ("wasm-query-engine-graphql", WASM_GRAPHQL_VERSION, &WASM_GRAPHQL_PACKAGES),
    };
    ToolSpec {
        name: name.into(),
        version: version.into(),
        packages: packages.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The body format an engine is started with (`--engine-protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Prisma 4.x without the `jsonProtocol` preview.
    GraphQl,
    /// Prisma 4.x with `jsonProtocol`, and every 5.x/6.x client.
    Json,
}

impl Protocol {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::GraphQl => "graphql",
            Protocol::Json => "json",
        }
    }
}

/// What tells engines apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EngineKey {
    /// The client's Prisma version (native engines), or `wasm`.
    pub engine: String,
    /// The schema hash (hex SHA-256 of the base64 schema text).
    pub schema: String,
    /// The protocol it is started with.
    pub protocol: Protocol,
}

impl EngineKey {
    /// What names the engine's socket: the engine, 96 bits of the schema hash, the protocol.
    pub fn socket_key(&self) -> String {
        let short = self.schema.get(..24).unwrap_or(&self.schema);
        format!("{}-{short}-{}", self.engine, self.protocol.as_str())
    }
}

impl fmt::Display for EngineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.schema.get(..12).unwrap_or(&self.schema);
        write!(f, "{}/{short}", self.engine)?;
        if self.protocol == Protocol::GraphQl { f.write_str("/graphql") } else { Ok(()) }
    }
}

/// An accepted schema.
#[derive(Clone, Debug)]
pub struct Schema {
    /// The schema text.
    pub text: String,
    /// The datasource block's name (`db`), for `--overwrite-datasources`.
    pub datasource: String,
    /// The datasource's provider as written (`postgresql`, `cockroachdb`, …): the WASM launcher loads
    /// that engine build and driver adapter.
    pub provider: String,
    /// Whether a generator lists the `jsonProtocol` preview feature (4.x clients then speak JSON).
    pub json_protocol: bool,
}

/// Schemas by hash, shared by the router (uploads) and the launcher (engine starts).
pub type Schemas = Mutex<HashMap<String, Arc<Schema>>>;

/// Engine flags from `[serve]`.
#[derive(Clone, Copy, Debug)]
pub struct Flags {
    /// `--enable-raw-queries`.
    pub raw_queries: bool,
    /// `--enable-metrics`.
    pub metrics: bool,
    /// `--enable-telemetry-in-response`.
    pub telemetry_in_response: bool,
    /// `--log-queries`.
    pub log_queries: bool,
}

/// Where native engines come from.
#[derive(Clone, Debug)]
pub struct NativeSource {
    /// The value of `PRISMA_QUERY_ENGINE_BINARY`, if set (read by the binary).
    pub override_value: Option<String>,
    /// The directory a relative override path is taken from.
    pub cwd: PathBuf,
    /// For looking up an engine commit not recorded in the cache yet.
    pub http: Http,
    /// The npm registry that lookup asks.
    pub registry: url::Url,
}

/// How engines are started.
pub struct Engines {
    /// Settings, database, limits.
    pub cx: Arc<Context>,
    /// Native or WASM.
    pub kind: QueryEngine,
    /// The schemas engines are started with.
    pub schemas: Arc<Schemas>,
    /// Where datamodel files are written (removed with pdp).
    pub dir: tempfile::TempDir,
    /// Engine flags.
    pub flags: Flags,
    /// Native engine lookup.
    pub native: NativeSource,
}

impl Engines {
    /// pdp's database URL with the child's pool bound (`connections`) and `[serve.limits] pool-timeout`
    /// appended, as engines read them.
    pub fn datasource_url(&self, connections: usize) -> String {
        with_pool_params(self.cx.database.expose(), Some(connections), self.cx.limits().pool_timeout)
    }

    /// Whether the native query engine of Prisma `version` is at hand, asking no network: the pinned
    /// binary, or the engines cache with the engine commit `pdp engines fetch` recorded. `Err` carries the
    /// message and the fix, as a client would get it on its first request.
    pub fn check_native(&self, version: &str) -> Result<PathBuf, String> {
        self.find_native(version, false).map_err(|e| e.message)
    }

    fn native_binary(&self, version: &str) -> Result<PathBuf, StartError> {
        self.find_native(version, true)
    }

    /// `lookup`: ask the npm registry for the engine commit when the cache has not recorded it.
    fn find_native(&self, version: &str, lookup: bool) -> Result<PathBuf, StartError> {
        let permanent = |message: String| StartError { message, permanent: true };
        let v: PrismaVersion = version.parse().map_err(|e| permanent(format!("Prisma {version}: {e}")))?;
        let generation = v.generation();
        if EngineKind::Query.stem(generation).is_none() {
            return Err(permanent(format!("Prisma {version} has no query engine (7.x clients use `accelerateUrl`)")));
        }
        let cache = Cache::new(&self.cx.settings.cache_root);
        let var = generation.query_engine_env.unwrap_or("PRISMA_QUERY_ENGINE_BINARY");
        let pinned = self.native.override_value.as_deref().filter(|v| !v.trim().is_empty());
        let hash = match self.engine_hash(&v, &cache, lookup)? {
            Some(hash) => hash,
            None => {
                // A pinned binary is checked against the commit when it starts; offline, that it exists.
                if let Some(Pin::Path(path)) = pinned.map(|value| overrides::classify(value, &self.native.cwd))
                    && path.is_file()
                {
                    return Ok(path);
                }
                return Err(permanent(format!(
                    "no query engine for Prisma {version} in the engines cache {}; run `pdp engines fetch` \
                     where binaries.prisma.sh (or `PRISMA_ENGINES_MIRROR`) is reachable, set {var} to a \
                     query-engine binary, or use `[serve] engine = \"wasm\"` for 5.x/6.x clients",
                    self.cx.settings.cache_root.display()
                )));
            }
        };
        let target = match pinned.map(|value| overrides::classify(value, &self.native.cwd)) {
            Some(Pin::Path(path)) => {
                if !path.is_file() {
                    return Err(permanent(format!(
                        "{var} points at {}, which does not exist; set it to a query-engine binary or unset it",
                        path.display()
                    )));
                }
                return match overrides::probe(&path) {
                    Probe::Runs { commit: Some(c), .. } if c == hash.as_str() => Ok(path),
                    Probe::Runs { commit, line } => Err(permanent(format!(
                        "{var} = {} is the engine of commit {}, but Prisma {version} needs {hash} (`{line}`); point it at the engine of Prisma {version}",
                        path.display(),
                        commit.as_deref().unwrap_or("unknown"),
                    ))),
                    Probe::DoesNotRun(e) => {
                        Err(permanent(format!("{var} = {} does not run here: {e}", path.display())))
                    }
                };
            }
            Some(Pin::Target(t)) => t.to_owned(),
            None => pdp_toolchain::target::detect(&pdp_toolchain::target::HostFacts::probe()).target.to_owned(),
        };
        let file = file_name(generation, EngineKind::Query, &target).unwrap_or_else(|| "query-engine".into());
        let path = cache.engine_path(&hash, &target, &file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(permanent(format!(
                "no query engine for Prisma {version} (engine commit {hash}, target {target}) in the engines cache {}; \
                 fetch it where binaries.prisma.sh is reachable (`pdp engines fetch` with `[prisma] version = \"{version}\"`), \
                 set {var} to a query-engine binary, or use `[serve] engine = \"wasm\"` for 5.x/6.x clients",
                self.cx.settings.cache_root.display()
            )))
        }
    }

    /// The engine commit of `v`: recorded in the cache, else (with `lookup`) from the npm registry;
    /// `None` when it is not recorded and `lookup` is off.
    fn engine_hash(&self, v: &PrismaVersion, cache: &Cache, lookup: bool) -> Result<Option<EngineHash>, StartError> {
        if let Ok(text) = fs_err::read_to_string(cache.hash_record(v))
            && let Ok(hash) = text.parse()
        {
            return Ok(Some(hash));
        }
        if !lookup {
            return Ok(None);
        }
        let http = &self.native.http;
        let handle = tokio::runtime::Handle::current();
        let looked_up = handle.block_on(tokio::time::timeout(
            self.cx.timing.start_timeout,
            resolve_hash(v, None, cache, http, &self.native.registry, false),
        ));
        match looked_up {
            Ok(Ok(r)) => Ok(Some(r.hash)),
            Ok(Err(e)) => Err(StartError {
                message: format!("cannot find the engine commit of Prisma {v}: {e}"),
                permanent: e.is_user_error(),
            }),
            Err(_) => Err(StartError {
                message: format!("looking up the engine commit of Prisma {v} on the npm registry timed out"),
                permanent: false,
            }),
        }
    }

    fn wasm_command(
        &self,
        key: &EngineKey,
        slot: usize,
        connections: usize,
        datamodel: &Path,
        schema: &Schema,
    ) -> Result<Cmd, StartError> {
        let socket = self
            .cx
            .socket_for("engine", &format!("{}-{slot}", key.socket_key()))
            .map_err(|e| StartError { message: format!("{e}; {}", e.hint().unwrap_or_default()), permanent: true })?;
        let settings = &self.cx.settings;
        let node = settings.node.clone().ok_or_else(|| StartError {
            message: "the WASM query engine runs on Node.js, and `node` is not on PATH".into(),
            permanent: true,
        })?;
        let npm = settings.npm.clone();
        let spec = wasm_tool_spec(key.protocol);
        let label = spec.label();
        let installed = npm::ensure(&settings.cache_root, &spec, move || {
            npm.ok_or(NpmError::NotFound { program: "npm", tool: label })
        })
        .map_err(|e| StartError {
            message: format!(
                "cannot provision the WASM query engine: {e}{}",
                e.hint().map(|h| format!(" ({h})")).unwrap_or_default()
            ),
            permanent: false,
        })?;
        let launcher = installed.dir.join(WASM_LAUNCHER_FILE);
        files::write_if_changed(&launcher, WASM_LAUNCHER).map_err(file_error)?;
        let mut cmd = Cmd::new(node, "start the WASM query engine", &installed.dir)
            .arg(&launcher)
            .arg("--datamodel-path")
            .arg(datamodel)
            .arg("--unix-path")
            .arg(&socket)
            .args(["--engine-protocol", key.protocol.as_str()])
            .env("PDP_DATABASE_URL", self.datasource_url(connections))
            .env("PDP_QE_MODULES_DIR", &installed.dir)
            .env("PDP_QE_PROVIDER", &schema.provider)
            .env("PDP_QE_DATASOURCE", &schema.datasource)
            .env("RUST_LOG", &settings.log_level);
        // The pool's part of the budget is shared by its children, so more children never mean more connections.
        cmd = cmd.env("PDP_QE_CONNECTION_LIMIT", connections.to_string());
        Ok(self.cx.bench_tcp(self.common_flags(cmd)))
    }

    fn common_flags(&self, mut cmd: Cmd) -> Cmd {
        if self.flags.raw_queries {
            cmd = cmd.arg("--enable-raw-queries");
        }
        if self.flags.metrics {
            cmd = cmd.arg("--enable-metrics");
        }
        if self.flags.telemetry_in_response {
            cmd = cmd.arg("--enable-telemetry-in-response");
        }
        if self.flags.log_queries {
            cmd = cmd.arg("--log-queries");
        }
        cmd
    }
}

/// A file a child needs could not be written: worth another try (a full disk may be freed).
pub(crate) fn file_error(e: FileError) -> StartError {
    StartError { message: format!("{e}: {}", e.source), permanent: false }
}

/// Appends `connection_limit` and `pool_timeout` (seconds) to a datasource URL, replacing any already there:
/// as query parameters, or for SQL Server's JDBC-style URL as `;connectionLimit=…;poolTimeout=…`.
pub fn with_pool_params(url: &str, connection_limit: Option<usize>, pool_timeout: Duration) -> String {
    let timeout = pool_timeout.as_secs().max(1);
    if url.starts_with("sqlserver://") {
        let mut parts: Vec<String> = url
            .split(';')
            .filter(|p| {
                let name = p.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
                !p.trim().is_empty() && name != "connectionlimit" && name != "pooltimeout"
            })
            .map(str::to_owned)
            .collect();
        if let Some(n) = connection_limit {
            parts.push(format!("connectionLimit={n}"));
        }
        parts.push(format!("poolTimeout={timeout}"));
        return parts.join(";");
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("connection_limit=") && !p.starts_with("pool_timeout="))
        .map(str::to_owned)
        .collect();
    if let Some(n) = connection_limit {
        params.push(format!("connection_limit={n}"));
    }
    params.push(format!("pool_timeout={timeout}"));
    format!("{base}?{}", params.join("&"))
}

/// Reads an engine's ready line: the native engine's
/// `{"fields":{"message":"Started query engine http server on http://127.0.0.1:PORT","ip":"127.0.0.1","port":"PORT"}}`,
/// or pdp's WASM launcher's on its socket, `{"fields":{"message":"Started query engine http server on unix:PATH","unix_path":"PATH"}}`.
pub fn native_ready(line: &str) -> Option<ChildAddr> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let fields = value.get("fields")?;
    if !fields.get("message")?.as_str()?.starts_with("Started query engine http server") {
        return None;
    }
    if let Some(path) = fields.get("unix_path").and_then(serde_json::Value::as_str) {
        return Some(ChildAddr::Unix(Arc::from(Path::new(path))));
    }
    let ip = fields.get("ip")?.as_str()?;
    let port = match fields.get("port")? {
        serde_json::Value::String(s) => s.parse::<u16>().ok()?,
        serde_json::Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
        _ => return None,
    };
    format!("{ip}:{port}").parse().ok().map(ChildAddr::Tcp)
}

impl Launch for Engines {
    type Key = EngineKey;

    fn kind(&self) -> &'static str {
        "engine"
    }

    /// WASM engines are single-threaded Node processes: a pool of them. Native engines are multi-threaded
    /// Rust processes that use every core: one per key.
    fn pool_size(&self, _key: &EngineKey) -> usize {
        match self.kind {
            QueryEngine::Wasm => self.cx.settings.children,
            QueryEngine::Native => 1,
        }
    }

    /// Both the native engine and pdp's WASM launcher answer `GET /status`.
    fn health_path(&self) -> Option<&'static str> {
        Some("/status")
    }

    fn prepare(&self, key: &EngineKey, slot: usize, connections: usize) -> Result<Cmd, StartError> {
        let schema = self
            .schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key.schema)
            .cloned()
            .ok_or_else(|| StartError {
            message: format!("no schema with hash {}", key.schema),
            permanent: true,
        })?;
        let datamodel = self.dir.path().join(format!("{}.prisma", key.schema));
        files::write_if_changed(&datamodel, &schema.text).map_err(file_error)?;
        match self.kind {
            QueryEngine::Wasm => self.wasm_command(key, slot, connections, &datamodel, &schema),
            QueryEngine::Native => {
                let binary = self.native_binary(&key.engine)?;
                tracing::info!(
                    target: "pdp::engine",
                    engine = %key,
                    "native query engine on loopback TCP: Prisma's 4.x-6.x engines cannot listen on a Unix socket"
                );
                let overwrite =
                    serde_json::json!([{ "name": schema.datasource, "url": self.datasource_url(connections) }]);
                let encoded = base64_encode(overwrite.to_string().as_bytes());
                let cmd =
                    Cmd::new(&binary, format!("start the query engine for Prisma {}", key.engine), self.dir.path())
                        .arg("--datamodel-path")
                        .arg(&datamodel)
                        .args(["--port", "0", "--engine-protocol", key.protocol.as_str()])
                        .env("OVERWRITE_DATASOURCES", encoded)
                        .env("RUST_LOG", &self.cx.settings.log_level)
                        .env("RUST_LOG_FORMAT", "json");
                Ok(self.common_flags(cmd))
            }
        }
    }

    fn ready(&self, line: &str) -> Option<ChildAddr> {
        native_ready(line)
    }
}

/// Standard base64 with padding (the `base64` crate).
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard base64, padding optional (whitespace around it ignored); `None` if it is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let config = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, config).decode(text.trim()).ok()
}

/// Checks an uploaded schema enough to start an engine on pdp's database: one `datasource` block whose
/// provider matches the database and which has a `url` (its value is never used), and reads the
/// datasource name and whether a generator enables `jsonProtocol` (matched exactly, as the client does).
pub fn check_schema(text: &str, database: Provider) -> Result<Schema, String> {
    let scanned = pdp_schema::scan(text).map_err(|e| format!("the schema cannot be read: {e}"))?;
    let mut datasources = scanned.blocks_of("datasource");
    let ds = match (datasources.next(), datasources.next()) {
        (Some(one), None) => one,
        (None, _) => return Err("the schema has no `datasource` block".into()),
        (Some(_), Some(_)) => return Err("the schema has more than one `datasource` block".into()),
    };
    let name = ds.name;
    let provider_name = ds.string("provider").ok_or_else(|| format!("datasource `{name}` has no `provider`"))?;
    let provider = Provider::from_schema_name(provider_name)
        .ok_or_else(|| format!("datasource `{name}` has an unknown provider `{provider_name}`"))?;
    if provider != database {
        return Err(format!(
            "datasource `{name}` uses provider `{provider_name}`, but this pdp serves a {} database",
            database.as_str()
        ));
    }
    if ds.get("url").is_none() {
        return Err(format!(
            "datasource `{name}` has no `url` (pdp replaces it with its own database, but Prisma requires one)"
        ));
    }
    let json_protocol = scanned
        .blocks_of("generator")
        .filter_map(|g| g.get("previewFeatures"))
        .any(|f| f.value.strings().contains(&"jsonProtocol"));
    Ok(Schema { text: text.to_owned(), datasource: name.to_owned(), provider: provider_name.to_owned(), json_protocol })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_of_the_native_engine() {
        let line = r#"{"timestamp":"x","level":"INFO","fields":{"message":"Started query engine http server on http://127.0.0.1:40123","ip":"127.0.0.1","port":"40123"},"target":"query_engine::server"}"#;
        assert_eq!(native_ready(line), Some(ChildAddr::Tcp("127.0.0.1:40123".parse().unwrap())));
        let unix = r#"{"fields":{"message":"Started query engine http server on unix:/tmp/pdp-x/e.sock","unix_path":"/tmp/pdp-x/e.sock"}}"#;
        assert_eq!(native_ready(unix), Some(ChildAddr::Unix(Arc::from(Path::new("/tmp/pdp-x/e.sock")))));
        assert_eq!(native_ready(r#"{"fields":{"message":"Starting","ip":"127.0.0.1","port":"1"}}"#), None);
        assert_eq!(native_ready("Started query engine http server"), None);
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "datasource db {\n  provider = \"postgresql\"\n}\n"] {
            let e = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&e).as_deref(), Some(s.as_bytes()), "{s}");
        }
        assert_eq!(base64_encode(b"abcd"), "YWJjZA==");
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn pool_parameters_are_appended_once() {
        let d = Duration::from_secs(10);
        assert_eq!(
            with_pool_params("postgresql://u@h/db", Some(5), d),
            "postgresql://u@h/db?connection_limit=5&pool_timeout=10"
        );
        assert_eq!(
            with_pool_params("postgresql://u@h/db?schema=x&connection_limit=99", None, d),
            "postgresql://u@h/db?schema=x&pool_timeout=10"
        );
        // SQL Server's URL is JDBC-style: `;name=value` pairs, no query string.
        assert_eq!(
            with_pool_params("sqlserver://h:1433;database=d;user=u;ConnectionLimit=99;", Some(3), d),
            "sqlserver://h:1433;database=d;user=u;connectionLimit=3;poolTimeout=10"
        );
    }

    fn check(schema: &str) -> String {
        match check_schema(schema, Provider::Postgresql) {
            Ok(s) => format!("ok {} json={}", s.datasource, s.json_protocol),
            Err(e) => e,
        }
    }

    #[test]
    fn uploaded_schemas_are_checked() {
        let ds = "datasource db {\n  provider = \"postgresql\" // pg\n  url = env(\"DATABASE_URL\")\n}\n";
        assert_eq!(check(ds), "ok db json=false");
        let gen_json = "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"deno\",\n  \"jsonProtocol\"]\n}\n";
        assert_eq!(check(&format!("{gen_json}{ds}")), "ok db json=true");
        let commented =
            "generator client {\n  provider = \"prisma-client-js\"\n  // previewFeatures = [\"jsonProtocol\"]\n}\n";
        assert_eq!(check(&format!("{commented}{ds}")), "ok db json=false");
        assert_eq!(check("model A {\n id Int @id\n}\n"), "the schema has no `datasource` block");
        assert_eq!(
            check("datasource db {\n provider = \"mysql\"\n url = \"mysql://x\"\n}\n"),
            "datasource `db` uses provider `mysql`, but this pdp serves a postgresql database"
        );
        assert!(check("datasource db {\n provider = \"postgresql\"\n}\n").contains("has no `url`"));
        assert!(check(&format!("{ds}{ds}")).contains("more than one"));
        // A brace in a string and a datasource in a comment change nothing.
        let tricky = "model A {\n  id String @id @default(\"}\")\n}\n// datasource x {\n";
        assert_eq!(check(&format!("{tricky}{ds}")), "ok db json=false");
        assert!(check("datasource db {\n provider = \"postgresql\"\n").contains("never closed"));
    }

    #[test]
    fn the_wasm_spec_pins_every_package() {
        for protocol in [Protocol::Json, Protocol::GraphQl] {
            assert!(
                wasm_tool_spec(protocol)
                    .packages
                    .iter()
                    .all(|p| p.rsplit_once('@').is_some_and(|(_, v)| { semver::Version::parse(v).is_ok() })),
                "{protocol:?}"
            );
        }
    }
}
