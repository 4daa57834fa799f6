//! The dispatcher: accept (TLS, spoken as HTTP/1.1; or, when configured, plain, HTTP/1.1 or h2c), a request id, `/health`, `/ready`,
//! `/metrics`, API-key auth, then the request handed to the protocol router whose route it is (Prisma 7's
//! [`Qpe`], 4.x–6.x's [`Dp1`]); the access log and the request metrics for every answer; and shutdown with
//! a deadline that lets open interactive transactions finish.
//!
//! Deliberately not here: what the Prisma protocols mean (the routers), forwarding and the transaction
//! lifecycle (the proxy kit, `kit`), how children start (`supervisor`).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::access::{AccessLog, AccessRecord};
use crate::auth::KeySet;
use crate::conn::{self, Clock, Timed, Tracked};
use crate::dp1::{self, Dp1};
use crate::kit::forward::{self, Upstreams};
use crate::kit::peers::{self, Caller};
use crate::kit::respond::{error, full, json, read_body};
use crate::kit::{Body, Kit, RequestBody};
use crate::kit::{cache, names};
use crate::qpe::{self, Qpe, Readiness};
use crate::{engine_metrics, status, tls};

/// A request's id: 64 random bits drawn once per process, then a counter, as 32 hex digits (the shape
/// of the UUIDs clients have seen), unique across replicas without a system call per request.
#[derive(Clone, Copy)]
struct RequestId([u8; 32]);

impl RequestId {
    fn next() -> RequestId {
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut out = [0u8; 32];
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&prefix.to_be_bytes());
        raw[8..].copy_from_slice(&n.to_be_bytes());
        // 32 hex digits into 32 bytes always fit.
        let _ = hex::encode_to_slice(raw, &mut out);
        RequestId(out)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    fn header(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shared state of the running proxy.
pub struct App {
    pub(crate) keys: KeySet,
    pub(crate) access: Arc<dyn AccessLog>,
    pub(crate) metrics_on_main: bool,
    /// The folder of the Prisma schema (relative SQLite paths for `/ready`'s database check).
    pub(crate) schema_dir: PathBuf,
    pub(crate) kit: Kit,
    pub(crate) qpe: Qpe,
    pub(crate) dp1: Dp1,
    /// The served certificate (its end for the status page and `/metrics`), when TLS is on.
    pub(crate) tls: Option<tls::Current>,
    /// Where the children's database connections go (the status page counts them).
    pub(crate) db_target: Option<crate::dbconns::Target>,
    pub(crate) started: Instant,
    /// The last database ping and when it was made…
    pub(crate) last_ping: std::sync::Mutex<Option<(Instant, Result<pdp_migrate::db::ServerInfo, String>)>>,
    /// …and the lock one running ping holds.
    pub(crate) pinging: tokio::sync::Mutex<()>,
}

/// How long a database ping answers `/ready` and the status page.
const PING_FRESH: Duration = Duration::from_secs(1);

impl App {
    async fn handle<B: RequestBody>(self: Arc<Self>, req: Request<B>, via: &Upstreams) -> Response<Body> {
        let started = Instant::now();
        let metrics = &self.kit.cx.metrics;
        let id = RequestId::next();
        metrics.in_flight.inc();
        let method = req.method().clone();
        // A `Uri` clone shares its bytes: the path is kept for the log without a copy.
        let uri = req.uri().clone();
        // A client of the Accelerate extension sends a cache strategy (or `no-cache`) with every model query.
        let asked_cache = req.headers().contains_key(http::header::CACHE_CONTROL);
        let (route, key, mut resp) = self.dispatch(req, via).await;
        metrics.in_flight.dec();
        resp.headers_mut().insert(names::PRISMA_REQUEST_ID, id.header());
        if asked_cache || route == "invalidate" {
            // The extension reports `cf-ray` (`<request id>-<region>`) as the request id and region.
            let mut ray = Vec::with_capacity(36);
            ray.extend_from_slice(&id.0);
            ray.extend_from_slice(b"-pdp");
            if let Ok(ray) = HeaderValue::from_maybe_shared(Bytes::from(ray)) {
                resp.headers_mut().insert(names::CF_RAY, ray);
            }
        }
        let cache = if asked_cache {
            // `withAccelerateInfo()` reads the status.
            let headers = resp.headers_mut();
            let status = headers.entry(names::ACCELERATE_CACHE_STATUS).or_insert(cache::Status::None.header()).clone();
            [cache::Status::Ttl, cache::Status::Swr, cache::Status::Miss, cache::Status::None]
                .into_iter()
                .find(|s| status == s.as_str())
                .map(cache::Status::as_str)
        } else {
            None
        };
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        metrics.answered(route, status, elapsed);
        self.access.record(&AccessRecord {
            id: id.as_str(),
            method: method.as_str(),
            path: uri.path(),
            route,
            status,
            elapsed,
            key: key.as_deref(),
            cache,
        });
        resp
    }

    async fn dispatch<B: RequestBody>(
        &self,
        mut req: Request<B>,
        via: &Upstreams,
    ) -> (&'static str, Option<Arc<str>>, Response<Body>) {
        if let Some(caller) = req.extensions().get::<Caller>().filter(|c| c.from_peer) {
            let key = caller.key.clone();
            let (name, resp) = self.dispatch_peer(req, via).await;
            return (name, Some(key), resp);
        }
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::GET, "/health") => ("health", None, json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
            (&Method::GET, "/ready") => ("ready", None, self.ready().await),
            (&Method::GET, "/status" | "/status.json") => {
                // A browser navigating to the page can send only Basic authentication: the key as password.
                match self.keys.check_basic_or_bearer(req.headers()) {
                    Ok(key) => ("status", Some(key), self.status_response(path).await),
                    Err(refused) => {
                        // A browser's first request carries no credentials: that is the challenge, not a failure.
                        if refused != crate::auth::Refused::Missing {
                            self.kit.cx.metrics.auth_failures.inc();
                        }
                        let mut resp = error(StatusCode::UNAUTHORIZED, "P6002", refused.message());
                        resp.headers_mut().insert(
                            http::header::WWW_AUTHENTICATE,
                            HeaderValue::from_static(
                                "Basic realm=\"pdp status (password: an API key)\", charset=\"UTF-8\"",
                            ),
                        );
                        ("unauthorized", None, resp)
                    }
                }
            }
            _ => {
                let key = match self.keys.check(req.headers()) {
                    Ok(id) => id,
                    Err(refused) => {
                        self.kit.cx.metrics.auth_failures.inc();
                        tracing::warn!(target: "pdp::auth", path = %path, "refused: {}", refused.message());
                        return ("unauthorized", None, error(StatusCode::UNAUTHORIZED, "P6002", refused.message()));
                    }
                };
                if req.method() == Method::GET && path == "/metrics" && self.metrics_on_main {
                    return ("metrics", Some(key), self.metrics_response(via).await);
                }
                if self.kit.cluster.is_some() {
                    // A request relayed to another replica carries the key's id to its log.
                    req.extensions_mut().insert(Caller { key: key.clone(), from_peer: false });
                }
                let path = req.uri().path();
                if req.method() == Method::POST && path == "/invalidate" {
                    return ("invalidate", Some(key), self.invalidate(req).await);
                }
                if let Some(route) = dp1::Route::parse(req.method(), path) {
                    let name = route.name();
                    return (name, Some(key), self.dp1.handle(&self.kit, via, route, req).await);
                }
                if let Some(route) = qpe::Route::parse(req.method(), path) {
                    let name = route.name();
                    return (name, Some(key), self.qpe.handle(&self.kit, via, route, req).await);
                }
                let message = format!("pdp serves no `{} {path}`", req.method());
                ("not_found", Some(key), error(StatusCode::NOT_FOUND, "P6000", &message))
            }
        }
    }

    /// A request from a peer (its authentication checked): the transaction routes of both protocols (the
    /// routers refuse anything but this replica's own transactions) and the schema copy.
    async fn dispatch_peer<B: RequestBody>(&self, req: Request<B>, via: &Upstreams) -> (&'static str, Response<Body>) {
        let path = req.uri().path();
        if req.method() == Method::GET
            && let Some(hash) = path.strip_prefix(peers::SCHEMA_PATH)
        {
            let resp = match self.dp1.schema_upload(hash) {
                Some(text) => Response::new(full(Bytes::from(text))),
                None => error(StatusCode::NOT_FOUND, "P6000", "no such schema here"),
            };
            return ("peer_schema", resp);
        }
        if req.method() == Method::POST && path == peers::INVALIDATE_PATH {
            let limit = self.kit.limits().max_body_size;
            let (parts, body) = req.into_parts();
            let resp = match read_body(&parts.headers, body, limit, Duration::from_secs(10)).await {
                Ok(bytes) => match invalidation(&bytes) {
                    Ok(tags) => {
                        self.kit.cache.invalidate(tags.as_deref());
                        json(StatusCode::OK, &serde_json::json!({}))
                    }
                    Err(why) => error(StatusCode::BAD_REQUEST, "P6000", &why),
                },
                Err(e) => e.response(limit),
            };
            return ("peer_invalidate", resp);
        }
        if let Some(route) = dp1::Route::parse(req.method(), path)
            && route.role().id().is_some()
        {
            return (route.name(), self.dp1.handle(&self.kit, via, route, req).await);
        }
        if let Some(route) = qpe::Route::parse(req.method(), path)
            && route.role().id().is_some()
        {
            return (route.name(), self.qpe.handle(&self.kit, via, route, req).await);
        }
        let message = format!("the cluster listener serves no `{} {path}`", req.method());
        ("not_found", error(StatusCode::NOT_FOUND, "P6000", &message))
    }

    /// `POST /invalidate` (`$accelerate.invalidate({ tags })`, `invalidateAll()`): this replica's cache, then
    /// every peer's, before answering; a peer that could not be reached is named in a 502 (the extension
    /// raises it), so the caller knows its invalidation is incomplete.
    async fn invalidate<B: RequestBody>(&self, req: Request<B>) -> Response<Body> {
        let limit = self.kit.limits().max_body_size;
        let (parts, body) = req.into_parts();
        let bytes = match read_body(&parts.headers, body, limit, Duration::from_secs(10)).await {
            Ok(b) => b,
            Err(e) => return e.response(limit),
        };
        let tags = match invalidation(&bytes) {
            Ok(t) => t,
            Err(why) => return error(StatusCode::BAD_REQUEST, "P6000", &why),
        };
        self.kit.cache.invalidate(tags.as_deref());
        let Some(cluster) = &self.kit.cluster else { return json(StatusCode::OK, &serde_json::json!({})) };
        let found = cluster.peers().await;
        let peers = found.addrs;
        let asks = peers.iter().map(|peer| {
            let bytes = bytes.clone();
            async move {
                let outcome = cluster
                    .send(
                        *peer,
                        Method::POST,
                        peers::INVALIDATE_PATH,
                        &http::HeaderMap::new(),
                        "-",
                        bytes,
                        Duration::from_secs(5),
                    )
                    .await;
                match outcome {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("{peer} (status {})", r.status().as_u16())),
                    Err(forward::ForwardError::Timeout(_)) => Some(format!("{peer} (no answer within 5s)")),
                    Err(forward::ForwardError::Unreachable(why)) => Some(format!("{peer} ({why})")),
                }
            }
        });
        let mut missed: Vec<String> = futures_util::future::join_all(asks).await.into_iter().flatten().collect();
        // A peer entry that did not resolve may be a replica that kept its entries.
        missed.extend(found.unresolved.iter().map(|e| format!("{e} (does not resolve)")));
        if missed.is_empty() {
            return json(StatusCode::OK, &serde_json::json!({ "replicas": peers.len() + 1 }));
        }
        tracing::warn!(target: "pdp::cache", "an invalidation did not reach every replica: {}", missed.join(", "));
        error(
            StatusCode::BAD_GATEWAY,
            "P6000",
            &format!(
                "the cache was invalidated on this replica and {} of {} peer(s); not on: {}",
                (peers.len() + found.unresolved.len()).saturating_sub(missed.len()),
                peers.len() + found.unresolved.len(),
                missed.join(", ")
            ),
        )
    }

    fn sources(&self) -> status::Sources<'_> {
        status::Sources {
            kit: &self.kit,
            qpe: &self.qpe,
            dp1: &self.dp1,
            tls: self.tls.as_ref(),
            db_target: self.db_target,
            started: self.started,
        }
    }

    /// The status page or its snapshot.
    async fn status_response(&self, path: &str) -> Response<Body> {
        if path == "/status" {
            let mut r = Response::new(full(Bytes::from_static(status::PAGE.as_bytes())));
            let headers = r.headers_mut();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            // The page loads nothing from elsewhere and runs only its own script.
            headers.insert(
                http::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"),
            );
            headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        let (_, ready) = self.readiness().await;
        let snapshot = serde_json::to_value(self.sources().snapshot(ready).await).unwrap_or_default();
        let mut r = json(StatusCode::OK, &snapshot);
        r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// `/metrics` in Prometheus text format, with the running query engines' series before `# EOF`.
    pub async fn metrics_response(&self, via: &Upstreams) -> Response<Body> {
        // The per-child gauges, the cache's and the certificate's, read now.
        self.sources().children_now();
        let mut text = self.kit.cx.metrics.render();
        // One engine's series per pool slot: `engine="<key>#<slot>"` keeps them apart.
        let running: Vec<_> = self
            .dp1
            .engines()
            .into_iter()
            .filter_map(|c| Some((format!("{}#{}", c.key, c.slot), c.endpoint?.addr)))
            .collect();
        let engines = engine_metrics::scrape(&self.kit.forwarder, via, &running).await;
        if !engines.is_empty() {
            let at = text.rfind("# EOF").unwrap_or(text.len());
            text.insert_str(at, &engines);
        }
        let mut r = Response::new(full(Bytes::from(text)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        r
    }

    async fn ready(&self) -> Response<Body> {
        let (ok, body) = self.readiness().await;
        json(if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
    }

    /// The database's answer to a connection and a query, at most [`PING_FRESH`] old: probes, pages and
    /// `pdp status --watch` together open at most one connection per interval. One ping runs at a time;
    /// while it runs (up to its timeouts), callers get the last answer instead of waiting, when there is one.
    async fn database_ping(&self) -> Result<pdp_migrate::db::ServerInfo, String> {
        let cached = || self.last_ping.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some((at, result)) = cached()
            && at.elapsed() < PING_FRESH
        {
            return result;
        }
        let _pinging = match self.pinging.try_lock() {
            Ok(guard) => guard,
            Err(_) => match cached() {
                Some((_, result)) => return result,
                None => self.pinging.lock().await,
            },
        };
        // Another caller may have pinged while this one waited.
        if let Some((at, result)) = cached()
            && at.elapsed() < PING_FRESH
        {
            return result;
        }
        let result = pdp_migrate::db::ping(&self.kit.cx.database, &self.schema_dir, Duration::from_secs(3))
            .await
            .map_err(|e| pdp_config::redact_text(&e.to_string()));
        *self.last_ping.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), result.clone()));
        result
    }

    /// Whether this replica takes work, and `/ready`'s body saying why.
    pub(crate) async fn readiness(&self) -> (bool, serde_json::Value) {
        if self.kit.txs.draining() {
            return (false, serde_json::json!({"status": "draining"}));
        }
        let executor = self.qpe.readiness();
        let db = self.database_ping().await;
        let database = match &db {
            Ok(info) => {
                serde_json::json!({"status": "reachable", "server": info.version, "max_connections": info.max_connections})
            }
            Err(e) => serde_json::json!({"status": "unreachable", "error": e}),
        };
        // 4.x–6.x engines start on first use and stop when idle: listed for operators, never a reason to
        // be unready (a failed one answers its own clients with the startup error).
        let engines: Vec<serde_json::Value> = self
            .dp1
            .engines()
            .into_iter()
            .map(|c| {
                let transactions = self.kit.txs.open_on(&c.key.to_string(), c.slot);
                serde_json::json!({
                    "engine": c.key.to_string(), "slot": c.slot, "status": c.status,
                    "generation": c.endpoint.map(|e| e.generation), "busy": c.busy, "transactions": transactions,
                    "connection_limit": c.connection_limit,
                })
            })
            .collect();
        let executors: Vec<serde_json::Value> = self
            .qpe
            .executors()
            .into_iter()
            .map(|c| {
                let transactions = self.kit.txs.open_on(&c.key, c.slot);
                serde_json::json!({
                    "version": c.key, "slot": c.slot, "status": c.status,
                    "generation": c.endpoint.map(|e| e.generation), "busy": c.busy, "transactions": transactions,
                    "connection_limit": c.connection_limit,
                })
            })
            .collect();
        // …except the project's own native engine missing from the cache: none of its clients can be served.
        let missing = self.dp1.missing_project_engine();
        let ok = db.is_ok() && matches!(executor, Readiness::Ready | Readiness::OnDemand) && missing.is_none();
        let mut body = serde_json::json!({
            "status": if ok { "ready" } else { "unavailable" },
            "executor": { "version": self.qpe.project_version(), "status": executor.as_str() },
            "database": database,
            "engines": engines,
            "executors": executors,
            // The replica's connection budget and the part running pools hold (each child's share is listed
            // with it); what is open now is on the status page and in /metrics.
            "connections": { "budget": self.kit.cx.budget.total(), "granted": self.kit.cx.budget.granted() },
        });
        if let Some(why) = missing {
            body["project_engine"] = serde_json::json!({ "status": "missing", "error": why });
        }
        if let Some(cluster) = &self.kit.cluster {
            // Configured entries only: a probe every few seconds should not resolve names.
            body["cluster"] =
                serde_json::json!({ "advertise": cluster.me().to_string(), "peers": cluster.peer_entries() });
        }
        (ok, body)
    }
}

/// How connections are secured.
#[derive(Clone)]
pub enum Transport {
    /// TLS with the current (reloadable) config.
    Tls(tls::Current),
    /// Plain HTTP (`tls = "off"`).
    Plain,
}

/// Accepts connections until `stop` flips, serving each with `app`. At most `slots` connections are served
/// at once: at the maximum pdp stops accepting and the kernel's backlog holds the rest. During a drain
/// connections are accepted regardless (a client's commit may need a new one). Connections are
/// registered with `graceful` so shutdown can wait for them.
pub async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    app: Arc<App>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
    slots: Arc<Semaphore>,
) {
    loop {
        let permit = if app.kit.txs.draining() {
            None
        } else {
            tokio::select! {
                permit = slots.clone().acquire_owned() => permit.ok(),
                () = app.kit.txs.until_draining() => None,
                () = crate::supervisor::stopped(&mut stop) => break,
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(target: "pdp::listener", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = crate::supervisor::stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let transport = transport.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let metrics = app.kit.cx.metrics.clone();
            metrics.connections.inc();
            let _permit = permit;
            match transport {
                Transport::Plain => serve_connection(tcp, app, watcher, false).await,
                Transport::Tls(current) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(current.get());
                    let limit = app.kit.limits().tls_handshake_timeout;
                    match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, watcher, true).await,
                        Ok(Err(e)) => tracing::debug!(target: "pdp::listener", %peer, "TLS handshake failed: {e}"),
                        Err(_) => {
                            metrics.connections_closed.get_or_create(&conn::Reason::TlsHandshake.into()).inc();
                            tracing::debug!(target: "pdp::listener", %peer, "TLS handshake timed out");
                        }
                    }
                }
            }
            metrics.connections.dec();
        });
    }
}

/// Serves one client connection under the head and idle timers of `[serve.limits]`: HTTP/1.1 only over TLS
/// (ALPN offers nothing else, so no protocol sniffing), HTTP/1.1 or HTTP/2 with prior knowledge on a
/// plain listener.
async fn serve_connection<IO>(io: IO, app: Arc<App>, watcher: hyper_util::server::graceful::Watcher, http1_only: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = app.kit.limits();
    let clock = Clock::new();
    let timed =
        Timed::new(io, clock.clone(), limits.header_read_timeout, limits.idle_timeout, app.kit.cx.metrics.clone());
    let via = Arc::new(Upstreams::default());
    let service = hyper::service::service_fn(move |req| {
        let (app, via) = (app.clone(), via.clone());
        let in_flight = clock.start();
        async move { Ok::<_, Infallible>(app.handle(req, &via).await.map(|body| Tracked::new(body, in_flight))) }
    });
    if http1_only {
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(timed), service);
        let _ = watcher.watch(conn).await;
    } else {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(timed), service).into_owned();
        let _ = watcher.watch(conn).await;
    }
}

/// Serves `/metrics` (and `/health`) over plain HTTP on its own address, without a key; a few connections
/// at a time, under the same timers.
pub async fn metrics_loop(listener: TcpListener, app: Arc<App>, stop: watch::Receiver<bool>) {
    side_loop(listener, app, stop, 16, |app, req, via| async move {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => app.metrics_response(&via).await,
            (&Method::GET, "/health") => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            (&Method::GET, path @ ("/status" | "/status.json")) => app.status_response(path).await,
            _ => error(StatusCode::NOT_FOUND, "P6000", "this address serves only /metrics, /status and /health"),
        }
    })
    .await;
}

/// Serves the cluster listener: plain HTTP/1.1 from peers, each request read whole, its authentication
/// checked (a keyed MAC over its time, nonce, method, path, caller and body) and then dispatched as a
/// peer's. Runs until `stop` flips, after the drain, so peers can finish this replica's transactions.
pub async fn peer_loop(listener: TcpListener, app: Arc<App>, stop: watch::Receiver<bool>) {
    side_loop(listener, app, stop, 1024, |app, req, via| async move { peer_request(app, req, &via).await }).await;
}

/// A plain-HTTP/1.1 listener beside the main one (metrics, cluster): at most `slots` connections at once,
/// each under the head and idle timers of `[serve.limits]`, every request answered by `answer`, until
/// `stop` flips.
async fn side_loop<F, Fut>(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
    slots: usize,
    answer: F,
) where
    F: Fn(Arc<App>, Request<Incoming>, Arc<Upstreams>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(slots));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.ok(),
            () = crate::supervisor::stopped(&mut stop) => break,
        };
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(p) => p,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(target: "pdp::listener", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = crate::supervisor::stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let (app, answer) = (app.clone(), answer.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let limits = app.kit.limits();
            let clock = Clock::new();
            let timed = Timed::new(
                tcp,
                clock.clone(),
                limits.header_read_timeout,
                limits.idle_timeout,
                app.kit.cx.metrics.clone(),
            );
            let via = Arc::new(Upstreams::default());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let in_flight = clock.start();
                let resp = answer(app.clone(), req, via.clone());
                async move { Ok::<_, Infallible>(resp.await.map(|body| Tracked::new(body, in_flight))) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(timed), service);
            let _ = conn.await;
        });
    }
}

async fn peer_request(app: Arc<App>, req: Request<Incoming>, via: &Upstreams) -> Response<Body> {
    let Some(cluster) = &app.kit.cluster else {
        return error(StatusCode::NOT_FOUND, "P6000", "this pdp is not in a cluster");
    };
    let limits = app.kit.limits();
    let (parts, body) = req.into_parts();
    // A request without a current authentication header is refused before its body is read.
    if let Err(why) = cluster.precheck(&parts.headers) {
        peers::count(&app.kit.cx.metrics, "peer", "refused");
        tracing::debug!(target: "pdp::cluster", "refused a peer request: {}", why.message());
        return error(StatusCode::UNAUTHORIZED, "P6002", "not an authenticated peer request");
    }
    let bytes = match read_body(&parts.headers, body, limits.max_body_size, limits.query_timeout).await {
        Ok(b) => b,
        Err(e) => return e.response(limits.max_body_size),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match cluster.verify(&parts.headers, &parts.method, path, &bytes) {
        Ok(key) => {
            let mut req = Request::from_parts(parts, http_body_util::Full::new(bytes));
            req.extensions_mut().insert(Caller { key, from_peer: true });
            app.handle(req, via).await
        }
        Err(why) => {
            peers::count(&app.kit.cx.metrics, "peer", "refused");
            tracing::warn!(target: "pdp::cluster", path = %parts.uri.path(), "refused a peer request: {}", why.message());
            error(StatusCode::UNAUTHORIZED, "P6002", "not an authenticated peer request")
        }
    }
}

/// An invalidation's body: `{"tags": [...]}` (checked as the extension documents tags) or
/// `{"tags": "all"}` (`None`).
fn invalidation(body: &[u8]) -> Result<Option<Vec<String>>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the invalidation is not JSON: {e}"))?;
    match value.get("tags") {
        Some(serde_json::Value::String(all)) if all == "all" => Ok(None),
        Some(serde_json::Value::Array(tags)) => {
            let names: Option<Vec<&str>> = tags.iter().map(serde_json::Value::as_str).collect();
            let names = names.ok_or("`tags` must be a list of strings, or \"all\"")?;
            if names.is_empty() {
                return Err("`tags` is empty: name at least one tag, or use invalidateAll()".into());
            }
            cache::check_tags(names).map(Some)
        }
        _ => Err("the invalidation needs `tags`: a list of strings, or \"all\"".into()),
    }
}

/// Keeps the transaction gauge honest and stops idle children, once a second.
pub async fn sweep_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.kit.txs.sweep();
        app.qpe.sweep();
        app.dp1.sweep();
    }
}
