//! The Data Proxy protocol of Prisma 4.x–6.x clients (protocols.md §1, §2, §4.4): `/{clientVersion}/
//! {schemaHash}/graphql`, `…/schema` uploads, `…/transaction/start` and the `…/itx/{id}/…` endpoint it hands
//! out, routed to one supervised query engine per (engine, schema hash, protocol), with the exact error
//! bodies clients turn into the right P-codes: `SchemaMissing` makes them upload, `KnownEngineStartupError`
//! carries database errors (P1000/P1001), `EngineStartupError` the rest, engine user-facing errors pass
//! through unchanged. Also the engines' `/metrics`, merged into pdp's.
//!
//! Deliberately not here: relying on Content-Type (edge clients send none), trusting anything from an uploaded
//! schema but its models (the database is pdp's), re-sending a request to an engine, caching.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use pdp_config::prisma::{PrismaVersion, WireProtocol};
use pdp_config::{Provider, QueryEngine};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::engine::{self, EngineKey, Engines, Flags, NativeSource, Protocol, Schemas};
use crate::kit::forward::{self, ForwardError, Upstreams};
use crate::kit::respond::{self, read_body};
use crate::kit::txs::{Role, TxErrors};
use crate::kit::{Body, Caller, Kit, Place, RequestBody};
use crate::kit::{cache, names};
use crate::supervisor::{ChildState, StartError, Supervisor};

/// What `[serve]` says about 4.x–6.x engines.
#[derive(Clone, Debug)]
pub struct Dp1Options {
    /// Native or WASM.
    pub engine: QueryEngine,
    /// Engine flags.
    pub flags: Flags,
    /// Where native engines come from.
    pub native: NativeSource,
    /// The project's schema, accepted without an upload.
    pub project_schema: Option<PathBuf>,
}

/// The 4.x–6.x side of the proxy.
pub struct Dp1 {
    engines: Arc<Supervisor<Engines>>,
    schemas: Arc<Schemas>,
    kind: QueryEngine,
    provider: Provider,
    project_version: String,
    public_url: url::Url,
    /// Why the project's own native query engine cannot start (nothing in the engines cache), while
    /// that is so: said at start and in `/ready`, re-checked there until it clears.
    missing_engine: std::sync::Mutex<Option<String>>,
}

impl Dp1 {
    /// Sets up the engines' supervisor and accepts the project's own schema. `project_version` is what
    /// `0.0.0` clients mean; interactive-transaction endpoints are built from `public_url`.
    pub fn new(
        options: Dp1Options,
        cx: Arc<Context>,
        project_version: String,
        public_url: url::Url,
    ) -> std::io::Result<Dp1> {
        let schemas: Arc<Schemas> = Arc::default();
        let provider = cx.database.provider();
        if let Some(path) = &options.project_schema {
            match fs_err::read_to_string(path) {
                Ok(text) => {
                    let encoded = engine::base64_encode(text.as_bytes());
                    match engine::check_schema(&text, provider) {
                        Ok(schema) => {
                            let hash = hex::encode(Sha256::digest(encoded.as_bytes()));
                            schemas
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert(hash, Arc::new(schema));
                        }
                        Err(why) => {
                            tracing::debug!(target: "pdp::dp1", "the project's schema is not served without an upload: {why}")
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "pdp::dp1", "the project's schema is not served without an upload: {e}")
                }
            }
        }
        let dir = tempfile::Builder::new().prefix("pdp-engines-").tempdir_in(&cx.settings.temp_dir)?;
        let engines = Supervisor::new(
            Engines {
                cx: cx.clone(),
                kind: options.engine,
                schemas: schemas.clone(),
                dir,
                flags: options.flags,
                native: options.native,
            },
            cx.timing,
            cx.metrics.clone(),
            cx.budget.clone(),
        );
        let dp1 = Dp1 {
            engines,
            schemas,
            kind: options.engine,
            provider,
            project_version,
            public_url,
            missing_engine: std::sync::Mutex::new(None),
        };
        let missing = dp1.check_project_engine();
        *dp1.missing_engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = missing;
        Ok(dp1)
    }

    /// Every engine, sorted by key and pool slot, with its state (`/ready`, `/metrics`).
    pub fn engines(&self) -> Vec<ChildState<EngineKey>> {
        self.engines.states()
    }

    /// For a 4.x–6.x project served by native engines: why its engine cannot start, if it cannot (checked
    /// without network; the fix is in the message). `None` for WASM engines and 7.x projects.
    fn check_project_engine(&self) -> Option<String> {
        let version: pdp_config::PrismaVersion = self.project_version.parse().ok()?;
        let dp1_project = version.generation().wire != pdp_config::prisma::WireProtocol::Qpe;
        if self.kind != QueryEngine::Native || !dp1_project {
            return None;
        }
        self.engines.launcher().check_native(&self.project_version).err()
    }

    /// Why the project's own engine cannot start, while that is so (re-checked on every call until it
    /// clears, e.g. after `pdp engines fetch`).
    pub fn missing_project_engine(&self) -> Option<String> {
        let mut missing = self.missing_engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if missing.is_some() {
            *missing = self.check_project_engine();
        }
        missing.clone()
    }

    /// What the check at start found, without checking again.
    pub fn missing_project_engine_at_start(&self) -> Option<String> {
        self.missing_engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Stops idle engines. Call periodically.
    pub fn sweep(&self) {
        self.engines.reap_idle();
    }

    /// Stops every engine.
    pub async fn shutdown(&self) {
        self.engines.shutdown().await;
    }
}

impl TxErrors for Dp1 {
    /// An engine's user-facing error: the client raises `PrismaClientKnownRequestError(error_code)`.
    fn tx_error(&self, message: &str) -> Value {
        json!({"is_panic": false, "message": message, "meta": {}, "error_code": "P2028"})
    }
}

/// A 4.x–6.x request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The `{clientVersion}` segment as sent.
    pub version: String,
    /// The `{schemaHash}` segment.
    pub hash: String,
    /// What is asked.
    pub action: Action,
}

/// The endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST …/graphql`.
    Query,
    /// `PUT …/schema`.
    Schema,
    /// `POST …/transaction/start`.
    TxStart,
    /// `POST …/itx/{id}/graphql`.
    TxQuery(String),
    /// `POST …/itx/{id}/commit`.
    TxCommit(String),
    /// `POST …/itx/{id}/rollback`.
    TxRollback(String),
}

fn token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl Route {
    /// Recognises a Data Proxy request.
    pub fn parse(method: &Method, path: &str) -> Option<Route> {
        // At most five segments (`{v}/{h}/itx/{id}/{op}`): no allocation to split them.
        let mut segments = path.strip_prefix('/')?.split('/');
        let mut parts = [""; 5];
        let mut n = 0;
        for segment in segments.by_ref() {
            *parts.get_mut(n)? = segment;
            n += 1;
        }
        let (version, hash, rest) = match &parts[..n] {
            [v, h, rest @ ..] if !rest.is_empty() => (*v, *h, rest),
            _ => return None,
        };
        if !token(version, 64)
            || !version.starts_with(|c: char| c.is_ascii_digit())
            || hash.len() != 64
            || !hash.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let action = match (method, rest) {
            (&Method::POST, ["graphql"]) => Action::Query,
            (&Method::PUT, ["schema"]) => Action::Schema,
            (&Method::POST, ["transaction", "start"]) => Action::TxStart,
            (&Method::POST, ["itx", id, op]) if token(id, 256) => match *op {
                "graphql" => Action::TxQuery((*id).to_owned()),
                "commit" => Action::TxCommit((*id).to_owned()),
                "rollback" => Action::TxRollback((*id).to_owned()),
                _ => return None,
            },
            _ => return None,
        };
        let hash =
            if hash.bytes().any(|b| b.is_ascii_uppercase()) { hash.to_ascii_lowercase() } else { hash.to_owned() };
        Some(Route { version: version.to_owned(), hash, action })
    }

    /// The metrics/log name.
    pub fn name(&self) -> &'static str {
        match self.action {
            Action::Query => "dp1_query",
            Action::Schema => "dp1_schema",
            Action::TxStart => "dp1_tx_start",
            Action::TxQuery(_) => "dp1_tx_query",
            Action::TxCommit(_) => "dp1_tx_commit",
            Action::TxRollback(_) => "dp1_tx_rollback",
        }
    }

    /// What the request does to interactive transactions.
    pub fn role(&self) -> Role<'_> {
        match &self.action {
            Action::Query | Action::Schema => Role::Plain,
            Action::TxStart => Role::Start,
            Action::TxQuery(id) => Role::Use(id),
            Action::TxCommit(id) | Action::TxRollback(id) => Role::End(id),
        }
    }
}

fn body(status: StatusCode, value: &Value) -> Response<Body> {
    respond::json(status, value)
}

/// `{"EngineNotStarted":{"reason":"SchemaMissing"}}`: the client uploads the schema and retries.
fn schema_missing() -> Response<Body> {
    body(StatusCode::NOT_FOUND, &json!({"EngineNotStarted": {"reason": "SchemaMissing"}}))
}

/// The client raises `PrismaClientInitializationError(msg, error_code)` and does not retry.
fn known_startup_error(msg: &str, code: &str) -> Response<Body> {
    body(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"EngineNotStarted": {"reason": {"KnownEngineStartupError": {"msg": msg, "error_code": code}}}}),
    )
}

/// An engine's user-facing error shape: the client raises `PrismaClientKnownRequestError(code)`, no retry.
fn user_facing(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    body(status, &json!({"is_panic": false, "message": message, "meta": {}, "error_code": code}))
}

/// How a failed start reaches the client: a database error from the engine (`P1xxx` in its output) as
/// `KnownEngineStartupError`; anything else as the retryable `EngineStartupError` with the output as logs.
fn start_error(e: &StartError) -> Response<Body> {
    let text = pdp_config::redact_text(&e.message);
    let engine_error = text.lines().find_map(|l| {
        let v: Value = serde_json::from_str(l.trim()).ok()?;
        let code = v.get("error_code")?.as_str()?.to_owned();
        Some((v.get("message").and_then(Value::as_str).unwrap_or("").to_owned(), code))
    });
    if let Some((msg, code)) = engine_error
        && code.starts_with("P1")
    {
        return known_startup_error(&msg, &code);
    }
    if e.permanent {
        return known_startup_error(&text, "P5014");
    }
    let mut lines = text.lines();
    let msg = lines.next().unwrap_or("the query engine did not start").to_owned();
    let logs: Vec<&str> = lines.filter(|l| !l.starts_with("──")).collect();
    body(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"EngineNotStarted": {"reason": {"EngineStartupError": {"msg": msg, "logs": logs}}}}),
    )
}

impl Dp1 {
    /// The engine for `version` and a known schema, or the answer to give instead.
    fn key_for(&self, version: &str, hash: &str, schema: &engine::Schema) -> Result<EngineKey, Box<Response<Body>>> {
        let version = if version == "0.0.0" { self.project_version.as_str() } else { version };
        let unsupported = || {
            tracing::warn!(target: "pdp::dp1", version, "refused: no Data Proxy engine for this client version");
            Box::new(body(
                StatusCode::BAD_REQUEST,
                &json!({"EngineNotStarted": {"reason": "EngineVersionNotSupported"}}),
            ))
        };
        let Ok(v) = version.parse::<PrismaVersion>() else {
            return Err(unsupported());
        };
        let protocol = match v.generation().wire {
            WireProtocol::Qpe => return Err(unsupported()),
            WireProtocol::Dp1GraphQl if !schema.json_protocol => Protocol::GraphQl,
            _ => Protocol::Json,
        };
        let engine = match self.kind {
            QueryEngine::Native => v.to_string(),
            QueryEngine::Wasm if protocol == Protocol::GraphQl && self.provider != Provider::Postgresql => {
                return Err(Box::new(known_startup_error(
                    &format!(
                        "Prisma {v} clients speak the GraphQL protocol, and the only WASM engine that speaks it (`[serve] \
                         engine = \"wasm\"`, @prisma/query-engine-wasm {}) has a PostgreSQL driver adapter only: use \
                         `engine = \"native\"`, or add `previewFeatures = [\"jsonProtocol\"]` to the generator and \
                         rebuild the client",
                        engine::WASM_GRAPHQL_VERSION
                    ),
                    "P5012",
                )));
            }
            QueryEngine::Wasm => "wasm".to_owned(),
        };
        Ok(EngineKey { engine, schema: hash.to_owned(), protocol })
    }
}

impl Dp1 {
    /// Handles one Data Proxy request.
    pub async fn handle<B: RequestBody>(
        &self,
        kit: &Kit,
        via: &Upstreams,
        route: Route,
        req: Request<B>,
    ) -> Response<Body> {
        let role = match kit.place(route.role(), &req, self) {
            Ok(Place::Here(role)) => role,
            Ok(Place::Owner(owner)) => return kit.relay(owner, req, self).await,
            Err(resp) => return *resp,
        };
        let from_peer = req.extensions().get::<Caller>().is_some_and(|c| c.from_peer);
        let ticket = match kit.txs.admit(role, self) {
            Ok(t) => t,
            Err(resp) => return *resp,
        };
        let limits = kit.limits();
        let (parts, incoming) = req.into_parts();
        let bytes = match read_body(&parts.headers, incoming, limits.max_body_size, limits.query_timeout).await {
            Ok(b) => b,
            Err(e) => return e.response(limits.max_body_size),
        };
        if route.action == Action::Schema {
            return self.upload(&route, &bytes);
        }
        let schema = self.schemas.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&route.hash).cloned();
        let schema = match schema {
            Some(s) => s,
            // The client's upload may have reached another replica: ask them before making it upload again.
            None if !from_peer => match self.schema_from_peers(kit, &route.hash).await {
                Some(s) => s,
                None => return schema_missing(),
            },
            None => return schema_missing(),
        };
        let key = match self.key_for(&route.version, &route.hash, &schema) {
            Ok(k) => k,
            Err(resp) => return *resp,
        };
        if route.action == Action::Query {
            match cache::asked(&parts.headers) {
                Err(why) => return respond::error(StatusCode::BAD_REQUEST, "P6000", &why),
                // A request for logs or traces gets its own: never from the cache. (Clients always ask for
                // error logs, which an answer worth keeping has none of.)
                Ok(cache::Asked::Cache(strategy)) if kit.cache.enabled() && !wants_telemetry(&parts.headers) => {
                    // The whole engine key (its Display shortens the schema hash).
                    let protocol: &[u8] = if key.protocol == Protocol::Json { b"json" } else { b"graphql" };
                    let (tags, db) = (strategy.tag_key(), kit.cx.database_fingerprint());
                    let key_parts = [
                        b"dp1".as_slice(),
                        key.engine.as_bytes(),
                        key.schema.as_bytes(),
                        protocol,
                        db,
                        tags.as_bytes(),
                    ];
                    let ckey = cache::key(&key_parts, &bytes);
                    if let Some(resp) = self.cached(kit, via, ckey, strategy, &key, &parts.headers, &bytes).await {
                        return resp;
                    }
                }
                Ok(_) => {}
            }
        }
        let lease = match ticket.pin(&self.engines, &key, self) {
            Err(resp) => return *resp,
            Ok(Some(lease)) => lease,
            Ok(None) => match self.engines.get(&key).await {
                Ok(lease) => lease,
                Err(e) => return start_error(&e),
            },
        };
        let mut headers = query_headers(&parts.headers);
        // The engine's own transaction id: without the owner reference clients were given.
        let tx_id = role.id().unwrap_or("");
        let (path, send, limit) = match &route.action {
            Action::Query => ("/".to_owned(), bytes, limits.query_timeout),
            Action::TxQuery(_) => {
                let id = tx_id;
                if let Ok(v) = HeaderValue::from_str(id) {
                    headers.insert(names::X_TRANSACTION_ID, v);
                }
                ("/".to_owned(), bytes, limits.query_timeout)
            }
            Action::TxStart => match tx_options(&bytes, limits) {
                Ok(b) => ("/transaction/start".to_owned(), b, limits.transaction_max_wait),
                Err(why) => {
                    return user_facing(StatusCode::BAD_REQUEST, "P2028", &format!("Transaction API error: {why}"));
                }
            },
            Action::TxCommit(_) => (format!("/transaction/{tx_id}/commit"), Bytes::new(), limits.query_timeout),
            Action::TxRollback(_) => (format!("/transaction/{tx_id}/rollback"), Bytes::new(), limits.query_timeout),
            Action::Schema => unreachable!("handled above"),
        };
        let outcome = kit
            .forwarder
            .forward(via, &lease.endpoint.addr, Method::POST, &path, &headers, send, limit + Duration::from_secs(5))
            .await;
        if outcome.is_ok() {
            lease.answered();
        }
        ticket.settle(&outcome);
        let resp = match outcome {
            Ok(r) => r,
            Err(ForwardError::Timeout(d)) => {
                return respond::error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "P6004",
                    &format!("the query engine for {key} did not answer within {}s", d.as_secs()),
                );
            }
            Err(ForwardError::Unreachable(why)) => {
                lease.unreachable();
                return user_facing(
                    StatusCode::BAD_GATEWAY,
                    "P1017",
                    &format!(
                        "the query engine for {key} failed while handling this request ({why}); it is being restarted. \
                         pdp does not re-send requests, so check whether a write took effect before retrying"
                    ),
                );
            }
        };
        match &route.action {
            Action::TxStart if resp.status().is_success() => {
                let (head, incoming) = resp.into_parts();
                let bytes = match incoming.collect().await {
                    Ok(c) => c.to_bytes(),
                    Err(e) => {
                        return respond::error(
                            StatusCode::BAD_GATEWAY,
                            "P6000",
                            &format!("the engine's answer broke off: {e}"),
                        );
                    }
                };
                let mut value: Value = match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(_) => {
                        return respond::error(
                            StatusCode::BAD_GATEWAY,
                            "P6000",
                            "the engine's transaction start was not JSON",
                        );
                    }
                };
                let Some(id) = value.get("id").and_then(Value::as_str).map(str::to_owned) else {
                    return respond::error(
                        StatusCode::BAD_GATEWAY,
                        "P6000",
                        "the engine's transaction start had no `id`",
                    );
                };
                let client_id = kit.client_tx_id(&id);
                let endpoint_url = format!(
                    "{}/{}/{}/itx/{client_id}",
                    self.public_url.as_str().trim_end_matches('/'),
                    route.version,
                    route.hash
                );
                value["id"] = json!(client_id);
                value["data-proxy"] = json!({ "endpoint": endpoint_url });
                ticket.opened(id, &key, &lease.endpoint);
                let mut out = body(head.status, &value);
                for (name, v) in &head.headers {
                    if name.as_str().starts_with("x-") {
                        out.headers_mut().insert(name.clone(), v.clone());
                    }
                }
                out
            }
            Action::TxCommit(_) | Action::TxRollback(_) => forward::pass_through(resp),
            // Engines have no response limit of their own: pdp applies `max-response-size`.
            _ => forward::pass_through_within(resp, limits.max_response_size).unwrap_or_else(|size| {
                tracing::warn!(target: "pdp::dp1", engine = %key, size, "refused: response over max-response-size");
                user_facing(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "P6009",
                    &format!(
                        "the query's result is {size} bytes, more than this pdp returns ({} bytes, [serve.limits] \
                         max-response-size): select fewer rows or fields, or raise the limit",
                        limits.max_response_size
                    ),
                )
            }),
        }
    }

    /// `PUT …/schema`: the body is the base64 schema; its SHA-256 must be the hash in the path.
    fn upload(&self, route: &Route, bytes: &Bytes) -> Response<Body> {
        match self.accept_schema(&route.hash, bytes) {
            Ok(_) => {
                tracing::info!(target: "pdp::dp1", hash = %route.hash, version = %route.version, "schema uploaded");
                body(StatusCode::OK, &json!({}))
            }
            Err(SchemaRefused::Hash(actual)) => respond::error(
                StatusCode::BAD_REQUEST,
                "P6005",
                &format!(
                    "schema hash mismatch: the uploaded schema's SHA-256 is {actual}, the path says {}",
                    route.hash
                ),
            ),
            Err(SchemaRefused::Encoding) => {
                respond::error(StatusCode::BAD_REQUEST, "P6005", "the uploaded schema is not base64-encoded UTF-8 text")
            }
            Err(SchemaRefused::Unservable(why)) => {
                tracing::warn!(target: "pdp::dp1", hash = %route.hash, "schema refused: {why}");
                known_startup_error(&format!("pdp cannot serve this schema: {why}"), "P1012")
            }
        }
    }

    /// Checks a base64 schema against `hash` and what pdp can serve, and registers it: the one check for
    /// a client's upload and a peer's copy.
    fn accept_schema(&self, hash: &str, bytes: &[u8]) -> Result<Arc<engine::Schema>, SchemaRefused> {
        let text = String::from_utf8_lossy(bytes);
        let encoded = text.trim();
        let actual = hex::encode(Sha256::digest(encoded.as_bytes()));
        if actual != hash {
            return Err(SchemaRefused::Hash(actual));
        }
        let schema = engine::base64_decode(encoded).and_then(|b| String::from_utf8(b).ok());
        let schema = schema.ok_or(SchemaRefused::Encoding)?;
        let checked = Arc::new(engine::check_schema(&schema, self.provider).map_err(SchemaRefused::Unservable)?);
        self.schemas.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(hash.to_owned(), checked.clone());
        Ok(checked)
    }

    /// A registered schema as a client uploads it (base64), for a peer that was asked for it.
    pub fn schema_upload(&self, hash: &str) -> Option<String> {
        let schemas = self.schemas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        schemas.get(hash).map(|s| engine::base64_encode(s.text.as_bytes()))
    }

    /// Asks every peer at once for the schema `hash`; the first copy that passes the upload's checks is
    /// registered and returned.
    async fn schema_from_peers(&self, kit: &Kit, hash: &str) -> Option<Arc<engine::Schema>> {
        let cluster = kit.cluster.as_ref()?;
        let peers = cluster.peers().await.addrs;
        if peers.is_empty() {
            return None;
        }
        let path = format!("{}{hash}", crate::kit::peers::SCHEMA_PATH);
        let limit = kit.limits().max_body_size;
        let mut asks: futures_util::stream::FuturesUnordered<_> = peers
            .iter()
            .map(|peer| {
                let path = path.clone();
                async move {
                    let resp = cluster
                        .send(*peer, Method::GET, &path, &HeaderMap::new(), "-", Bytes::new(), Duration::from_secs(3))
                        .await
                        .ok()?;
                    if resp.status() != StatusCode::OK {
                        return None;
                    }
                    let limited =
                        http_body_util::Limited::new(resp.into_body(), usize::try_from(limit).unwrap_or(usize::MAX));
                    Some((*peer, limited.collect().await.ok()?.to_bytes()))
                }
            })
            .collect();
        use futures_util::StreamExt;
        while let Some(answer) = asks.next().await {
            let Some((peer, bytes)) = answer else { continue };
            match self.accept_schema(hash, &bytes) {
                Ok(schema) => {
                    crate::kit::peers::count(&kit.cx.metrics, "schema", "ok");
                    tracing::info!(target: "pdp::dp1", %hash, %peer, "schema copied from a peer");
                    return Some(schema);
                }
                Err(_) => {
                    tracing::warn!(target: "pdp::dp1", %hash, %peer, "a peer's copy of the schema failed the checks")
                }
            }
        }
        crate::kit::peers::count(&kit.cx.metrics, "schema", "miss");
        None
    }
}

/// The headers an engine gets with a query: the client's trace context and telemetry request, JSON.
fn query_headers(client: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in [names::TRACEPARENT, names::X_CAPTURE_TELEMETRY] {
        if let Some(v) = client.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}

/// Whether a request asks for logs or traces beyond errors (`X-capture-telemetry: query, tracing, …`).
fn wants_telemetry(headers: &HeaderMap) -> bool {
    headers.get_all(names::X_CAPTURE_TELEMETRY).iter().any(|v| {
        v.to_str().map_or(true, |v| v.split(',').map(str::trim).any(|level| !level.is_empty() && level != "error"))
    })
}

/// A query as the cache runs it (the leader's, or a background refresh's).
#[derive(Clone)]
struct Ask {
    key: EngineKey,
    headers: HeaderMap,
    body: Bytes,
}

/// Runs `ask` on an engine of its key over `via`: the whole answer (within `max-response-size`), or pdp's
/// error response.
async fn fetch(
    engines: &Arc<Supervisor<Engines>>,
    forwarder: &forward::Forwarder,
    via: &Upstreams,
    ask: &Ask,
    limits: &pdp_config::Limits,
) -> cache::Fetched {
    let lease = engines.get(&ask.key).await.map_err(|e| start_error(&e))?;
    let limit = limits.query_timeout + Duration::from_secs(5);
    let outcome =
        forwarder.forward(via, &lease.endpoint.addr, Method::POST, "/", &ask.headers, ask.body.clone(), limit).await;
    if outcome.is_ok() {
        lease.answered();
    }
    let resp = match outcome {
        Ok(r) => r,
        Err(ForwardError::Timeout(d)) => {
            return Err(respond::error(
                StatusCode::GATEWAY_TIMEOUT,
                "P6004",
                &format!("the query engine for {} did not answer within {}s", ask.key, d.as_secs()),
            ));
        }
        Err(ForwardError::Unreachable(why)) => {
            lease.unreachable();
            return Err(user_facing(
                StatusCode::BAD_GATEWAY,
                "P1017",
                &format!("the query engine for {} failed while handling this request ({why})", ask.key),
            ));
        }
    };
    cache::Stored::collect(resp, limits.max_response_size, limit).await.map_err(|e| {
        user_facing(
            StatusCode::UNPROCESSABLE_ENTITY,
            "P6009",
            &format!("the query's result did not arrive whole within [serve.limits] max-response-size: {e}"),
        )
    })
}

impl Dp1 {
    /// A read with a cache strategy, through the cache.
    #[allow(clippy::too_many_arguments)]
    async fn cached(
        &self,
        kit: &Kit,
        via: &Upstreams,
        key: cache::Key,
        strategy: cache::Strategy,
        engine: &EngineKey,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Option<Response<Body>> {
        let limits = kit.limits();
        // Copies only on a miss or a refresh: a hit needs nothing of the request but its key.
        let owned = || Ask { key: engine.clone(), headers: query_headers(headers), body: body.clone() };
        let refresh = || -> cache::Refresh {
            let (engines, forwarder, limits, ask) =
                (self.engines.clone(), kit.forwarder.clone(), limits.clone(), owned());
            Box::pin(async move {
                let via = Upstreams::default();
                fetch(&engines, &forwarder, &via, &ask, &limits).await
            })
        };
        let read = || is_read(body, engine.protocol);
        let run = || {
            let ask = owned();
            async move { fetch(&self.engines, &kit.forwarder, via, &ask, limits).await }
        };
        kit.cache.serve(key, strategy, read, run, refresh).await
    }
}

/// Whether a Data Proxy query only reads: JSON protocol by action (a batch only if it is not a
/// `$transaction` and every part reads), GraphQL by operation type (`query`, never `mutation`).
pub fn is_read(body: &[u8], protocol: Protocol) -> bool {
    const READS: &[&str] =
        &["findUnique", "findUniqueOrThrow", "findFirst", "findFirstOrThrow", "findMany", "aggregate", "groupBy"];
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return false };
    let one = |q: &Value| match protocol {
        Protocol::Json => q.get("action").and_then(Value::as_str).is_some_and(|a| READS.contains(&a)),
        Protocol::GraphQl => q.get("query").and_then(Value::as_str).is_some_and(|text| {
            let text = text.trim_start();
            text.starts_with('{')
                || text.strip_prefix("query").is_some_and(|rest| rest.starts_with([' ', '{', '\n', '(']))
        }),
    };
    match v.get("batch").and_then(Value::as_array) {
        Some(parts) => {
            let in_tx = match v.get("transaction") {
                None | Some(Value::Null) | Some(Value::Bool(false)) => false,
                Some(_) => true,
            };
            !in_tx && !parts.is_empty() && parts.iter().all(one)
        }
        None => one(&v),
    }
}

/// Why a schema was not accepted.
enum SchemaRefused {
    /// Its SHA-256 is this, not the hash asked for.
    Hash(String),
    /// Not base64 of UTF-8 text.
    Encoding,
    /// pdp cannot serve it: why.
    Unservable(String),
}

/// The engine's transaction options from the client's: `max_wait` and `timeout` non-negative integers (ms),
/// capped by `[serve.limits]`; `isolation_level` kept; nothing else passed on.
fn tx_options(bytes: &[u8], limits: &pdp_config::Limits) -> Result<Bytes, String> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes).map_err(|e| format!("the transaction options are not JSON: {e}"))?
    };
    let Some(obj) = value.as_object() else {
        return Err("the transaction options must be a JSON object".into());
    };
    let ms = |key: &str, default: u64, cap: Duration| -> Result<u64, String> {
        let cap = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        match obj.get(key) {
            None | Some(Value::Null) => Ok(default.min(cap)),
            Some(v) => v
                .as_u64()
                .map(|n| n.min(cap))
                .ok_or_else(|| format!("`{key}` must be a non-negative whole number of milliseconds, not {v}")),
        }
    };
    let mut out = json!({
        "max_wait": ms("max_wait", 2000, limits.transaction_max_wait)?,
        "timeout": ms("timeout", 5000, limits.transaction_max_timeout)?,
    });
    match obj.get("isolation_level") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out["isolation_level"] = json!(s),
        Some(other) => return Err(format!("`isolation_level` must be a string, not {other}")),
    }
    Ok(Bytes::from(out.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "274521ba0c2cc85d4b8d2a4f5f3a0d44cd6ea7cd8fcd0b3d33ba9b5b1c8bab54";

    #[test]
    fn routes_are_recognised_exactly() {
        let r = |m: &Method, p: &str| Route::parse(m, p).map(|r| (r.version, r.action));
        assert_eq!(r(&Method::POST, &format!("/4.16.2/{H}/graphql")), Some(("4.16.2".into(), Action::Query)));
        assert_eq!(r(&Method::PUT, &format!("/6.19.3/{H}/schema")), Some(("6.19.3".into(), Action::Schema)));
        assert_eq!(
            r(&Method::POST, &format!("/6.19.3/{H}/transaction/start")),
            Some(("6.19.3".into(), Action::TxStart))
        );
        assert_eq!(
            r(&Method::POST, &format!("/6.19.3/{H}/itx/abc-1/commit")),
            Some(("6.19.3".into(), Action::TxCommit("abc-1".into())))
        );
        assert_eq!(r(&Method::GET, &format!("/4.16.2/{H}/graphql")), None);
        assert_eq!(r(&Method::POST, &format!("/4.16.2/{H}/schema")), None);
        assert_eq!(r(&Method::POST, "/4.16.2/abc/graphql"), None);
        assert_eq!(r(&Method::POST, &format!("/../{H}/graphql")), None);
        assert_eq!(r(&Method::POST, &format!("/6.19.3/{H}/itx/a/b/commit")), None);
        assert_eq!(r(&Method::POST, "/query"), None);
        assert_eq!(r(&Method::POST, "/transaction/abc/commit"), None);
    }

    fn limits() -> pdp_config::Limits {
        pdp_config::Limits {
            max_body_size: 1,
            max_response_size: 1,
            query_timeout: Duration::from_secs(30),
            transaction_max_timeout: Duration::from_secs(60),
            transaction_max_wait: Duration::from_secs(10),
            connection_limit: 10,
            on_demand_connections: 2,
            pool_timeout: Duration::from_secs(10),
            engine_start_timeout: Duration::from_secs(30),
            engine_idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }

    #[test]
    fn only_reads_outside_transactions_are_reads() {
        let json = |a: &str| format!(r#"{{"modelName":"User","action":"{a}","query":{{}}}}"#);
        assert!(is_read(json("findMany").as_bytes(), Protocol::Json));
        assert!(is_read(json("aggregate").as_bytes(), Protocol::Json));
        assert!(!is_read(json("createOne").as_bytes(), Protocol::Json));
        assert!(!is_read(json("queryRaw").as_bytes(), Protocol::Json));
        let batch = |tx: &str, a: &str, b: &str| format!(r#"{{"batch":[{},{}]{tx}}}"#, json(a), json(b));
        assert!(is_read(batch("", "findUnique", "findUnique").as_bytes(), Protocol::Json));
        assert!(!is_read(batch("", "findUnique", "updateOne").as_bytes(), Protocol::Json));
        assert!(!is_read(
            batch(r#","transaction":{"isolationLevel":null}"#, "findMany", "count").as_bytes(),
            Protocol::Json
        ));
        assert!(is_read(br#"{"query":"query {\n  findManyUser { id }\n}","variables":{}}"#, Protocol::GraphQl));
        assert!(is_read(br#"{"query":"{ findManyUser { id } }"}"#, Protocol::GraphQl));
        assert!(!is_read(br#"{"query":"mutation {\n  createOneUser(data: {}) { id }\n}"}"#, Protocol::GraphQl));
        assert!(!is_read(br#"{"query":"queryRawish"}"#, Protocol::GraphQl));
        assert!(!is_read(br#"{"batch":[{"query":"query { a }"}],"transaction":true}"#, Protocol::GraphQl));
    }

    #[test]
    fn transaction_options_are_validated_and_capped() {
        let check = |body: &str| match tx_options(body.as_bytes(), &limits()) {
            Ok(b) => String::from_utf8(b.to_vec()).unwrap(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(check(r#"{"max_wait":2000,"timeout":5000}"#), r#"{"max_wait":2000,"timeout":5000}"#);
        assert_eq!(
            check(r#"{"max_wait":99999,"timeout":999999,"isolation_level":"Serializable","new_tx_id":"x"}"#),
            r#"{"isolation_level":"Serializable","max_wait":10000,"timeout":60000}"#
        );
        assert_eq!(check(""), r#"{"max_wait":2000,"timeout":5000}"#);
        assert!(check(r#"{"max_wait":-1}"#).contains("non-negative whole number"));
        assert!(check(r#"{"timeout":1.5}"#).contains("`timeout`"));
        assert!(check("[1]").contains("JSON object"));
    }

    #[test]
    fn start_failures_map_to_the_client_shapes() {
        let read = |message: &str, permanent: bool| {
            let r = start_error(&StartError { message: message.into(), permanent });
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let bytes = rt.block_on(r.into_body().collect()).expect("body").to_bytes();
            serde_json::from_slice::<Value>(&bytes).expect("json")["EngineNotStarted"]["reason"].clone()
        };
        let db = "could not start the query engine: it exited (exit code 1) before it was ready\n──── stderr ────\n{\"is_panic\":false,\"message\":\"Can't reach database server\",\"error_code\":\"P1001\"}\n────";
        assert_eq!(
            read(db, false),
            json!({"KnownEngineStartupError": {"msg": "Can't reach database server", "error_code": "P1001"}})
        );
        let other =
            "could not start the query engine: not ready within 30s\n──── stderr ────\nthread main panicked\n────";
        assert_eq!(
            read(other, false),
            json!({"EngineStartupError": {"msg": "could not start the query engine: not ready within 30s", "logs": ["thread main panicked"]}})
        );
        assert_eq!(read("no query engine for Prisma 4.16.2", true)["KnownEngineStartupError"]["error_code"], "P5014");
    }
}
