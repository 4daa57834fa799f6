//! The one way a request reaches a child: a pooled keep-alive HTTP/1.1 client to the children's loopback
//! addresses, with hop-by-hop headers, the API key and the limits a caller could set for itself taken
//! out, one attempt within a time limit, and the child's response passed back (optionally cut at
//! `max-response-size` for children that have no limit of their own).
//!
//! The invariant: a forward is never retried. If the child dies under a request, that request fails
//! with [`ForwardError::Unreachable`]; a mutation must not run twice.
//!
//! Deliberately not here: which child gets a request (`txs`, the routers), what errors mean to clients.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::respond::{Body, BoxError};

/// Why a forward failed. Never retried.
pub enum ForwardError {
    /// No answer within the limit.
    Timeout(Duration),
    /// The child refused or dropped the connection (it may have crashed mid-request).
    Unreachable(String),
}

/// The client to children.
pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Forwarder::new()
    }
}

impl Forwarder {
    /// A keep-alive client for loopback children.
    pub fn new() -> Forwarder {
        // Children are on loopback: no Nagle (hyper writes head and body separately; with Nagle and delayed
        // ACKs every forwarded request waited ~40 ms).
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // Below the launchers' keep-alive (65 s), so pdp drops an idle connection before its child does.
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        Forwarder { client }
    }

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

/// The child's response, passed through with hop-by-hop headers removed.
pub fn pass_through(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    retain_end_to_end(&mut parts.headers);
    Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
}

/// Like [`pass_through`], for a child that has no response limit of its own: a response whose
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
    retain_end_to_end(&mut parts.headers);
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Response::from_parts(parts, limited.boxed()))
}

/// Removes the hop-by-hop headers of a child's response.
fn retain_end_to_end(headers: &mut HeaderMap) {
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            matches!(n.as_str(), "connection" | "keep-alive" | "transfer-encoding" | "upgrade" | "trailer" | "te")
        })
        .cloned()
        .collect();
    for n in drop {
        headers.remove(n);
    }
}
