//! The Prisma 7 protocol (protocols.md §3): `/connection-info`, `/query`, `/transaction/start` and
//! `/transaction/{id}/query|commit|rollback`, forwarded to the query-plan executor of the client's exact
//! version (its `Prisma-Engine-Hash` header carries the client version). Executor error bodies pass through
//! unchanged; pdp's own errors use the `{code, error}` shape the client turns into a known request error.
//!
//! Deliberately not here: schema handling (7.x clients send plans with SQL; there is no schema upload),
//! caching, and the Accelerate extension's `/invalidate` (it goes to Prisma's host, protocols.md §2.3).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::context::Context;
use crate::executor::{Executors, is_exact_version};
use crate::kit::cache;
use crate::kit::forward::{self, ForwardError, Upstreams};
use crate::kit::respond::{error, full, read_body};
use crate::kit::txs::{Role, TxErrors};
use crate::kit::{Body, Kit, Place, RequestBody};
use crate::supervisor::{ChildState, StartError, Supervisor};

/// The Prisma 7 side of the proxy: the executors, one per client version.
pub struct Qpe {
    executors: Arc<Supervisor<Executors>>,
    project_version: String,
    pinned: bool,
}

/// How the project's own executor is doing, for `/ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Serving.
    Ready,
    /// Started with pdp and not serving (yet, or again).
    Starting,
    /// Running but not answering its health route (hung).
    Unresponsive,
    /// The project is not a Prisma 7 one: executors start when a client asks.
    OnDemand,
}

impl Readiness {
    /// The word `/ready` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::Starting => "starting",
            Readiness::Unresponsive => "unresponsive",
            Readiness::OnDemand => "on demand",
        }
    }
}

impl Qpe {
    /// The executors' supervisor; with `pinned`, the project's own version is started now and kept
    /// running (it is a Prisma 7 project).
    pub fn new(cx: Arc<Context>, project_version: String, pinned: bool) -> Qpe {
        let executors = Supervisor::new(Executors { cx: cx.clone() }, cx.timing, cx.metrics.clone(), cx.budget.clone());
        if pinned {
            executors.pin(&project_version);
        }
        Qpe { executors, project_version, pinned }
    }

    /// Waits for the project's pinned executor to serve (or to fail starting).
    pub async fn project_ready(&self) -> Result<(), Arc<StartError>> {
        self.executors.get(&self.project_version).await.map(|_| ())
    }

    /// Every executor, sorted by version and pool slot, with its state (`/ready`).
    pub fn executors(&self) -> Vec<ChildState<String>> {
        self.executors.states()
    }

    /// How the project's executor is doing.
    pub fn readiness(&self) -> Readiness {
        match (self.pinned, self.executors.any_ready(&self.project_version)) {
            (false, _) => Readiness::OnDemand,
            (true, true) => Readiness::Ready,
            (true, false) if self.executors.any_unresponsive(&self.project_version) => Readiness::Unresponsive,
            (true, false) => Readiness::Starting,
        }
    }

    /// The project's Prisma version.
    pub fn project_version(&self) -> &str {
        &self.project_version
    }

    /// Stops executors nobody used for the idle timeout. Call periodically.
    pub fn sweep(&self) {
        self.executors.reap_idle();
    }

    /// Stops every executor.
    pub async fn shutdown(&self) {
        self.executors.shutdown().await;
    }
}

impl TxErrors for Qpe {
    /// The executor's own shape (`{code, error, meta}`), which the client raises by its `code`.
    fn tx_error(&self, message: &str) -> serde_json::Value {
        serde_json::json!({ "code": "P2028", "error": message, "meta": {} })
    }
}

/// A Prisma 7 route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /connection-info`.
    ConnectionInfo,
    /// `POST /query`.
    Query,
    /// `POST /transaction/start`.
    TxStart,
    /// `POST /transaction/{id}/query`.
    TxQuery(String),
    /// `POST /transaction/{id}/commit`.
    TxCommit(String),
    /// `POST /transaction/{id}/rollback`.
    TxRollback(String),
}

impl Route {
    /// Recognises a Prisma 7 request.
    pub fn parse(method: &Method, path: &str) -> Option<Route> {
        match (method, path) {
            (&Method::GET, "/connection-info") => return Some(Route::ConnectionInfo),
            (&Method::POST, "/query") => return Some(Route::Query),
            (&Method::POST, "/transaction/start") => return Some(Route::TxStart),
            _ => {}
        }
        if method != Method::POST {
            return None;
        }
        let rest = path.strip_prefix("/transaction/")?;
        let (id, action) = rest.split_once('/')?;
        if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
        let id = id.to_owned();
        match action {
            "query" => Some(Route::TxQuery(id)),
            "commit" => Some(Route::TxCommit(id)),
            "rollback" => Some(Route::TxRollback(id)),
            _ => None,
        }
    }

    /// The metrics/log name.
    pub fn name(&self) -> &'static str {
        match self {
            Route::ConnectionInfo => "qpe_connection_info",
            Route::Query => "qpe_query",
            Route::TxStart => "qpe_tx_start",
            Route::TxQuery(_) => "qpe_tx_query",
            Route::TxCommit(_) => "qpe_tx_commit",
            Route::TxRollback(_) => "qpe_tx_rollback",
        }
    }

    /// What the request does to interactive transactions.
    pub fn role(&self) -> Role<'_> {
        match self {
            Route::ConnectionInfo | Route::Query => Role::Plain,
            Route::TxStart => Role::Start,
            Route::TxQuery(id) => Role::Use(id),
            Route::TxCommit(id) | Route::TxRollback(id) => Role::End(id),
        }
    }
}

impl Qpe {
    /// The client's version from `Prisma-Engine-Hash` (`0.0.0`, a development build, means the project's).
    fn client_version<'a, B>(&'a self, req: &'a Request<B>) -> Result<&'a str, Box<Response<Body>>> {
        let Some(value) = req.headers().get(crate::kit::names::PRISMA_ENGINE_HASH) else {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "P6000",
                "no `Prisma-Engine-Hash` header: these routes serve Prisma 7 clients created with `accelerateUrl`",
            )));
        };
        let version = value.to_str().unwrap_or("");
        if version == "0.0.0" {
            return Ok(&self.project_version);
        }
        if !is_exact_version(version) {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "P6006",
                &format!("`Prisma-Engine-Hash: {}` is not a Prisma Client version", version.escape_default()),
            )));
        }
        Ok(version)
    }

    /// Handles one Prisma 7 request.
    pub async fn handle<B: RequestBody>(
        &self,
        kit: &Kit,
        via: &Upstreams,
        route: Route,
        req: Request<B>,
    ) -> Response<Body> {
        let version = match self.client_version(&req) {
            Ok(v) => v.to_owned(),
            Err(resp) => return *resp,
        };
        let role = match kit.place(route.role(), &req, self) {
            Ok(Place::Here(role)) => role,
            Ok(Place::Owner(owner)) => return kit.relay(owner, req, self).await,
            Err(resp) => return *resp,
        };
        let ticket = match kit.txs.admit(role, self) {
            Ok(t) => t,
            Err(resp) => return *resp,
        };
        let limits = kit.limits();
        let (parts, body) = req.into_parts();
        let body = match read_body(&parts.headers, body, limits.max_body_size, limits.query_timeout).await {
            Ok(b) => b,
            Err(e) => return e.response(limits.max_body_size),
        };
        if route == Route::Query {
            match cache::asked(&parts.headers) {
                Err(why) => return error(StatusCode::BAD_REQUEST, "P6000", &why),
                Ok(cache::Asked::Cache(strategy)) if kit.cache.enabled() => {
                    let tags = strategy.tag_key();
                    let db = kit.cx.database_fingerprint();
                    let key = cache::key(&[b"qpe", version.as_bytes(), db, tags.as_bytes()], &body);
                    if let Some(resp) = self.cached(kit, via, key, strategy, &version, &parts.headers, &body).await {
                        return resp;
                    }
                }
                Ok(_) => {}
            }
        }
        let lease = match ticket.pin(&self.executors, &version, self) {
            Err(resp) => return *resp,
            Ok(Some(lease)) => lease,
            Ok(None) => match self.executors.get(&version).await {
                Ok(lease) => lease,
                Err(e) if e.permanent => return error(StatusCode::BAD_REQUEST, "P6006", &e.message),
                Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "P6008", &e.message),
            },
        };
        let limit = match route {
            Route::TxStart => limits.transaction_max_wait + Duration::from_secs(5),
            _ => limits.query_timeout + Duration::from_secs(5),
        };
        // The child's own path: a transaction's id without the owner reference clients were given.
        let path: std::borrow::Cow<'_, str> = match (&route, role.id()) {
            (Route::TxQuery(_), Some(id)) => format!("/transaction/{id}/query").into(),
            (Route::TxCommit(_), Some(id)) => format!("/transaction/{id}/commit").into(),
            (Route::TxRollback(_), Some(id)) => format!("/transaction/{id}/rollback").into(),
            _ => parts.uri.path().into(),
        };
        let outcome = kit
            .forwarder
            .forward(via, &lease.endpoint.addr, parts.method.clone(), &path, &parts.headers, body, limit)
            .await;
        if outcome.is_ok() {
            lease.answered();
        }
        ticket.settle(&outcome);
        let resp = match outcome {
            Ok(r) => r,
            Err(ForwardError::Timeout(d)) => {
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "P6004",
                    &format!("the executor for Prisma {version} did not answer within {}s", d.as_secs()),
                );
            }
            Err(ForwardError::Unreachable(why)) => {
                lease.unreachable();
                return error(
                    StatusCode::BAD_GATEWAY,
                    "P6000",
                    &format!(
                        "the executor for Prisma {version} failed while handling this request ({why}); it is being \
                         restarted. pdp does not re-send requests, so check whether a write took effect before retrying"
                    ),
                );
            }
        };
        if route != Route::TxStart || !resp.status().is_success() {
            return forward::pass_through(resp);
        }
        let (head, body) = resp.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return error(StatusCode::BAD_GATEWAY, "P6000", &format!("the executor's answer broke off: {e}"));
            }
        };
        let mut bytes = bytes;
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(id) = value.get("id").and_then(|i| i.as_str()).map(str::to_owned)
        {
            if kit.cluster.is_some() {
                value["id"] = serde_json::Value::String(kit.client_tx_id(&id));
                bytes = Bytes::from(value.to_string());
            }
            ticket.opened(id, &version, &lease.endpoint);
        }
        let mut out = Response::from_parts(head, full(Bytes::new()));
        out.headers_mut().remove(http::header::CONTENT_LENGTH);
        *out.body_mut() = full(bytes);
        out.headers_mut().remove(http::header::TRANSFER_ENCODING);
        out
    }
}

/// A `/query` as the cache runs it (the leader's, or a background refresh's).
#[derive(Clone)]
struct Ask {
    version: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// Runs `ask` on an executor of its version over `via`: the whole answer, or pdp's error response.
async fn fetch(
    executors: &Arc<Supervisor<Executors>>,
    forwarder: &forward::Forwarder,
    via: &Upstreams,
    ask: &Ask,
    limits: &pdp_config::Limits,
) -> Result<cache::Stored, Response<Body>> {
    let lease = match executors.get(&ask.version).await {
        Ok(lease) => lease,
        Err(e) if e.permanent => return Err(error(StatusCode::BAD_REQUEST, "P6006", &e.message)),
        Err(e) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, "P6008", &e.message)),
    };
    let limit = limits.query_timeout + Duration::from_secs(5);
    let outcome = forwarder
        .forward(via, &lease.endpoint.addr, Method::POST, "/query", &ask.headers, ask.body.clone(), limit)
        .await;
    if outcome.is_ok() {
        lease.answered();
    }
    let resp = match outcome {
        Ok(r) => r,
        Err(ForwardError::Timeout(d)) => {
            return Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "P6004",
                &format!("the executor for Prisma {} did not answer within {}s", ask.version, d.as_secs()),
            ));
        }
        Err(ForwardError::Unreachable(why)) => {
            lease.unreachable();
            return Err(error(
                StatusCode::BAD_GATEWAY,
                "P6000",
                &format!("the executor for Prisma {} failed while handling this request ({why})", ask.version),
            ));
        }
    };
    cache::Stored::collect(resp, limits.max_response_size, limit)
        .await
        .map_err(|e| error(StatusCode::BAD_GATEWAY, "P6000", &format!("the executor's answer broke off: {e}")))
}

impl Qpe {
    /// A read with a cache strategy, through the cache.
    #[allow(clippy::too_many_arguments)]
    async fn cached(
        &self,
        kit: &Kit,
        via: &Upstreams,
        key: cache::Key,
        strategy: cache::Strategy,
        version: &str,
        headers: &http::HeaderMap,
        body: &Bytes,
    ) -> Option<Response<Body>> {
        let limits = kit.limits();
        // Copies only on a miss or a refresh: a hit needs nothing of the request but its key.
        let owned = || Ask { version: version.to_owned(), headers: headers.clone(), body: body.clone() };
        let refresh = || -> cache::Refresh {
            let (executors, forwarder, limits, ask) =
                (self.executors.clone(), kit.forwarder.clone(), limits.clone(), owned());
            Box::pin(async move {
                let via = Upstreams::default();
                fetch(&executors, &forwarder, &via, &ask, &limits).await
            })
        };
        let read = || is_read(body);
        let run = || {
            let ask = owned();
            async move { fetch(&self.executors, &kit.forwarder, via, &ask, limits).await }
        };
        kit.cache.serve(key, strategy, read, run, refresh).await
    }
}

/// Whether a `/query` body only reads: a read operation, and a plan whose every SQL statement is a
/// SELECT (a second lock: a plan node that writes never reaches the cache, whatever the operation says).
pub fn is_read(body: &[u8]) -> bool {
    const READS: &[&str] = &[
        "findUnique",
        "findUniqueOrThrow",
        "findFirst",
        "findFirstOrThrow",
        "findMany",
        "aggregate",
        "groupBy",
        "count",
    ];
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    let read_op = v.get("operation").and_then(|o| o.as_str()).is_some_and(|o| READS.contains(&o));
    read_op && v.get("plan").is_some_and(plan_only_selects)
}

fn plan_only_selects(node: &serde_json::Value) -> bool {
    use serde_json::Value;
    match node {
        Value::Array(items) => items.iter().all(plan_only_selects),
        Value::Object(o) => {
            let kind = o.get("type").and_then(Value::as_str);
            if matches!(kind, Some("execute" | "transaction")) {
                return false;
            }
            if matches!(kind, Some("templateSql" | "rawSql")) {
                let first = o
                    .get("fragments")
                    .and_then(Value::as_array)
                    .and_then(|f| f.iter().find_map(|x| x.get("chunk").and_then(Value::as_str)))
                    .or_else(|| o.get("sql").and_then(Value::as_str))
                    .unwrap_or("");
                if !first.trim_start().get(..6).is_some_and(|w| w.eq_ignore_ascii_case("select")) {
                    return false;
                }
            }
            o.values().all(plan_only_selects)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_operations_whose_plans_only_select_are_reads() {
        let plan = |op: &str, sql: &str| {
            serde_json::json!({"model": "User", "operation": op, "plan": {"type": "dataMap", "args": {"expr": {"type": "query", "args": {
                "type": "templateSql", "fragments": [{"type": "stringChunk", "chunk": sql}], "args": []}}}}, "params": {}})
            .to_string()
        };
        assert!(is_read(plan("findMany", "SELECT \"id\" FROM \"User\"").as_bytes()));
        assert!(is_read(plan("aggregate", " select count(*) FROM t").as_bytes()));
        assert!(!is_read(plan("createOne", "INSERT INTO t VALUES (1) RETURNING id").as_bytes()));
        assert!(
            !is_read(plan("findMany", "INSERT INTO t VALUES (1) RETURNING id").as_bytes()),
            "the plan is the second lock"
        );
        assert!(!is_read(plan("findMany", "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x").as_bytes()));
        let execute = serde_json::json!({"operation": "findMany", "plan": {"type": "seq", "args": [{"type": "execute", "args": {}}]}});
        assert!(!is_read(execute.to_string().as_bytes()));
        assert!(!is_read(b"{\"operation\":\"queryRaw\",\"plan\":{}}"));
        assert!(!is_read(b"not json"));
    }

    #[test]
    fn routes_are_recognised_exactly() {
        assert_eq!(Route::parse(&Method::POST, "/query"), Some(Route::Query));
        assert_eq!(Route::parse(&Method::GET, "/connection-info"), Some(Route::ConnectionInfo));
        assert_eq!(Route::parse(&Method::POST, "/transaction/start"), Some(Route::TxStart));
        assert_eq!(Route::parse(&Method::POST, "/transaction/abc-1/query"), Some(Route::TxQuery("abc-1".into())));
        assert_eq!(Route::parse(&Method::POST, "/transaction/abc/commit"), Some(Route::TxCommit("abc".into())));
        assert_eq!(Route::parse(&Method::POST, "/transaction/abc/rollback"), Some(Route::TxRollback("abc".into())));
        assert_eq!(Route::parse(&Method::GET, "/query"), None);
        assert_eq!(Route::parse(&Method::POST, "/transaction/../query"), None);
        assert_eq!(Route::parse(&Method::POST, "/transaction/abc/drop"), None);
        assert_eq!(Route::parse(&Method::POST, "/4.16.2/abc/graphql"), None);
    }
}
