//! The listener and the request path every protocol shares: accept (TLS or, when configured, plain),
//! HTTP/1.1 and HTTP/2, a request id, `/health`, `/ready`, `/metrics`, API-key auth, body limits, the
//! forward to a child (never re-sent), the access log and the metrics, and shutdown with a deadline that
//! lets open interactive transactions finish.
//!
//! Deliberately not here: what the Prisma protocols mean (`qpe`, and the 4.x–6.x router after it), how
//! children start (`supervisor`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use pdp_config::DatabaseUrl;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::KeySet;
use crate::executor::Executors;
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::supervisor::Supervisor;
use crate::{qpe, tls};

/// Boxed error of a response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body every response has.
pub type Body = BoxBody<Bytes, BoxError>;

/// An open interactive transaction pdp has seen start and not finish.
#[derive(Clone, Debug)]
pub struct OpenTx {
    /// Which child holds it (a Prisma version for executors).
    pub owner: String,
    /// That child's incarnation when it started.
    pub generation: u64,
    /// After this the child has certainly closed it (its own maximum timeout passed).
    pub expires: Instant,
}

/// Shared state of the running proxy.
pub struct App {
    pub(crate) keys: KeySet,
    pub(crate) limits: pdp_config::Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) metrics_on_main: bool,
    pub(crate) executors: Arc<Supervisor<Executors>>,
    pub(crate) project_version: String,
    pub(crate) pinned_executor: bool,
    pub(crate) database: DatabaseUrl,
    pub(crate) schema_dir: PathBuf,
    pub(crate) draining: AtomicBool,
    pub(crate) open_tx: Mutex<HashMap<String, OpenTx>>,
    pub(crate) client: Client<HttpConnector, Full<Bytes>>,
    pub(crate) dp1: crate::dp1::Dp1,
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A body from bytes.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// The error shape both client generations read: 7.x takes `code` and `error`; 4.x–6.x map the status
/// and quote the body (so it must not look like an engine error, which they would raise as its own code).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "code": code, "error": message }))
}

/// The answer to new work during shutdown (work of a transaction that is still open goes on).
pub fn shutting_down() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "P6000",
        "pdp is shutting down and takes no new work (open transactions may still finish); retry on another instance",
    )
}

/// Why a request body was not read.
pub enum BodyError {
    /// Over `[serve.limits] max-body-size`.
    TooLarge,
    /// The client went away or sent garbage.
    Broken(String),
}

impl BodyError {
    /// The response for it.
    pub fn response(&self, limit: u64) -> Response<Body> {
        match self {
            BodyError::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "P6005",
                &format!(
                    "the request body is larger than this pdp accepts ({limit} bytes, [serve.limits] max-body-size)"
                ),
            ),
            BodyError::Broken(why) => {
                error(StatusCode::BAD_REQUEST, "P6005", &format!("cannot read the request body: {why}"))
            }
        }
    }
}

/// Reads a whole request body, refusing more than `limit` bytes (early when Content-Length says so).
pub async fn read_body(headers: &HeaderMap, body: Incoming, limit: u64) -> Result<Bytes, BodyError> {
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}

/// Headers never passed between client and child: hop-by-hop ones, the key, and the limits the executor
/// would trust from a caller (pdp sets those from pdp.toml; protocols.md §3.3).
fn forwardable(name: &HeaderName) -> bool {
    let n = name.as_str();
    !(matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
            | "content-length"
            | "x-query-timeout"
            | "cookie"
    ) || n.starts_with("x-max-"))
}

/// Why a forward failed. Never retried.
pub enum ForwardError {
    /// No answer within the limit.
    Timeout(Duration),
    /// The child refused or dropped the connection (it may have crashed mid-request).
    Unreachable(String),
}

impl App {
    /// Sends one request to a child and returns its response head with the body streaming.
    pub async fn forward(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        limit: Duration,
    ) -> Result<Response<Incoming>, ForwardError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() =
            format!("http://{addr}{path}").parse().map_err(|e| ForwardError::Unreachable(format!("{e}")))?;
        for (name, value) in headers {
            if forwardable(name) {
                req.headers_mut().append(name.clone(), value.clone());
            }
        }
        match tokio::time::timeout(limit, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(ForwardError::Unreachable(e.to_string())),
            Err(_) => Err(ForwardError::Timeout(limit)),
        }
    }

    /// The child's response, passed through with hop-by-hop headers removed.
    pub fn pass_through(resp: Response<Incoming>) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        parts.headers.retain_forwardable();
        Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
    }

    /// Like [`App::pass_through`], for a child that has no response limit of its own: a response whose
    /// Content-Length is over `limit` is not sent (`Err` with its size), and one without a length is cut
    /// off at `limit` bytes (the client sees a broken response, never an unbounded one).
    pub fn pass_through_within(resp: Response<Incoming>, limit: u64) -> Result<Response<Body>, u64> {
        let declared = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared.filter(|n| *n > limit) {
            return Err(n);
        }
        let (mut parts, body) = resp.into_parts();
        parts.headers.retain_forwardable();
        let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(Response::from_parts(parts, limited.boxed()))
    }

    /// Records a transaction start.
    pub fn tx_opened(&self, id: String, owner: String, generation: u64) {
        let expires = Instant::now() + self.limits.transaction_max_timeout + Duration::from_secs(2);
        let mut open = self.open_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.insert(id, OpenTx { owner, generation, expires });
        self.metrics.open_transactions.set(i64::try_from(open.len()).unwrap_or(i64::MAX));
    }

    /// Forgets a transaction (committed, rolled back, or its child is gone).
    pub fn tx_closed(&self, id: &str) -> Option<OpenTx> {
        let mut open = self.open_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = open.remove(id);
        self.metrics.open_transactions.set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        tx
    }

    /// A transaction pdp knows to be open.
    pub fn tx(&self, id: &str) -> Option<OpenTx> {
        self.open_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    fn sweep_transactions(&self) -> Vec<String> {
        let now = Instant::now();
        let mut open = self.open_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|_, tx| tx.expires > now);
        self.metrics.open_transactions.set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        open.keys().cloned().collect()
    }

    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.metrics.in_flight.inc();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (route, key, mut resp) = self.dispatch(req).await;
        self.metrics.in_flight.dec();
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("prisma-request-id", v);
        }
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.requests.get_or_create(&RequestLabels { route, status }).inc();
        self.metrics.latency.get_or_create(&RouteLabels { route }).observe(elapsed.as_secs_f64());
        tracing::info!(
            target: "pdp::access",
            id = %id,
            method = %method,
            path = %path,
            route,
            status,
            ms = format_args!("{:.1}", elapsed.as_secs_f64() * 1000.0),
            key = key.as_deref().unwrap_or("-"),
        );
        resp
    }

    async fn dispatch(&self, req: Request<Incoming>) -> (&'static str, Option<String>, Response<Body>) {
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::GET, "/health") => ("health", None, json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
            (&Method::GET, "/ready") => ("ready", None, self.ready().await),
            _ => {
                let key = match self.keys.check(req.headers()) {
                    Ok(id) => id,
                    Err(refused) => {
                        self.metrics.auth_failures.inc();
                        tracing::warn!(target: "pdp::auth", path = %path, "refused: {}", refused.message());
                        return ("unauthorized", None, error(StatusCode::UNAUTHORIZED, "P6002", refused.message()));
                    }
                };
                if req.method() == Method::GET && path == "/metrics" && self.metrics_on_main {
                    return ("metrics", Some(key), self.metrics_response().await);
                }
                if let Some(route) = crate::dp1::Route::parse(req.method(), path) {
                    let name = route.name();
                    return (name, Some(key), crate::dp1::handle(self, route, req).await);
                }
                if let Some(route) = qpe::Route::parse(req.method(), path) {
                    let name = route.name();
                    return (name, Some(key), qpe::handle(self, route, req).await);
                }
                let message = format!("pdp serves no `{} {path}`", req.method());
                ("not_found", Some(key), error(StatusCode::NOT_FOUND, "P6000", &message))
            }
        }
    }

    /// `/metrics` in Prometheus text format, with the running query engines' series before `# EOF`.
    pub async fn metrics_response(&self) -> Response<Body> {
        let mut text = self.metrics.render();
        let engines = crate::dp1::scrape(self).await;
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
        if self.draining() {
            return json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"status": "draining"}));
        }
        let executor = if self.pinned_executor {
            match self.executors.ready_now(&self.project_version) {
                Some(_) => "ready",
                None => "starting",
            }
        } else {
            "on demand"
        };
        let db = pdp_migrate::db::ping(&self.database, &self.schema_dir, Duration::from_secs(3)).await;
        let database = match &db {
            Ok(info) => serde_json::json!({"status": "reachable", "server": info.version}),
            Err(e) => serde_json::json!({"status": "unreachable", "error": pdp_config::redact_text(&e.to_string())}),
        };
        // 4.x–6.x engines start on first use and stop when idle: listed for operators, never a reason to
        // be unready (a failed one answers its own clients with the startup error).
        let engines: Vec<serde_json::Value> = self
            .dp1
            .engines
            .states()
            .into_iter()
            .map(|(engine, status, ep)| {
                serde_json::json!({"engine": engine.to_string(), "status": status, "generation": ep.map(|e| e.generation)})
            })
            .collect();
        let ok = db.is_ok() && executor != "starting";
        let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        json(
            status,
            &serde_json::json!({
                "status": if ok { "ready" } else { "unavailable" },
                "executor": { "version": self.project_version, "status": executor },
                "database": database,
                "engines": engines,
            }),
        )
    }
}

trait RetainForwardable {
    fn retain_forwardable(&mut self);
}

impl RetainForwardable for HeaderMap {
    fn retain_forwardable(&mut self) {
        let drop: Vec<HeaderName> = self
            .keys()
            .filter(|n| {
                matches!(n.as_str(), "connection" | "keep-alive" | "transfer-encoding" | "upgrade" | "trailer" | "te")
            })
            .cloned()
            .collect();
        for n in drop {
            self.remove(n);
        }
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

/// Accepts connections until `stop` flips, serving each with `app`. Connections are registered with
/// `graceful` so shutdown can wait for them.
pub async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    app: Arc<App>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
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
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match transport {
                Transport::Plain => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
                    let _ = watcher.watch(conn).await;
                }
                Transport::Tls(current) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(current.get());
                    let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(target: "pdp::listener", %peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(target: "pdp::listener", %peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
}

/// Serves `/metrics` (and `/health`) over plain HTTP on its own address, without a key.
pub async fn metrics_loop(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted { Ok(p) => p, Err(_) => continue },
            () = crate::supervisor::stopped(&mut stop) => break,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move {
                    Ok::<_, Infallible>(match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") => app.metrics_response().await,
                        (&Method::GET, "/health") => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
                        _ => error(StatusCode::NOT_FOUND, "P6000", "this address serves only /metrics and /health"),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

/// What shutdown could not finish.
#[derive(Debug, Default)]
pub struct Drained {
    /// Transactions still open at the deadline (the database rolls them back when the child stops).
    pub cut_transactions: Vec<String>,
    /// Whether connections were still busy at the deadline.
    pub cut_requests: bool,
    /// How long draining took.
    pub took: Duration,
}

/// Shutdown, phase one: refuse new work but let open transactions finish, still accepting connections
/// (a client's commit may arrive on a new one). Returns the transactions still open at `deadline`.
pub async fn drain_transactions(app: &App, started: Instant, deadline: Duration) -> Vec<String> {
    app.draining.store(true, Ordering::SeqCst);
    loop {
        let open = app.sweep_transactions();
        if open.is_empty() || started.elapsed() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Keeps the transaction gauge honest: forgets transactions whose child has certainly closed them.
pub async fn sweep_loop(app: Arc<App>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        app.sweep_transactions();
        app.executors.reap_idle();
        app.dp1.sweep();
    }
}
