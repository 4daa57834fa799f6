//! The one way a request reaches a child: pooled keep-alive HTTP/1.1 to the child's Unix socket in pdp's
//! private socket directory (or, for a native query engine, its loopback port), with hop-by-hop headers, the API key and the limits a caller could set for itself taken
//! out, one attempt within a time limit, and the child's response passed back (optionally cut at
//! `max-response-size` for children that have no limit of their own).
//!
//! The invariant: a forward is never retried. If the child dies under a request, that request fails
//! with [`ForwardError::Unreachable`]; a mutation must not run twice.
//!
//! Deliberately not here: which child gets a request (`txs`, the routers), what errors mean to clients.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pdp_toolchain::launch::ChildAddr;

use super::respond::{Body, BoxError};

/// Why a forward failed. Never retried.
pub enum ForwardError {
    /// No answer within the limit.
    Timeout(Duration),
    /// The child refused or dropped the connection (it may have crashed mid-request).
    Unreachable(String),
}

/// Connects to `<socket dir>/<host of the URI>`: a child's socket file name is its host name, so the
/// pool keeps each child's connections apart.
#[derive(Clone)]
struct UnixConnector {
    dir: Arc<Path>,
}

impl tower_service::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let path = match uri.host() {
            Some(h) if h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) => {
                Ok(self.dir.join(h))
            }
            _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no child socket for {uri}"))),
        };
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path?).await?)) })
    }
}

/// The client to children.
pub struct Forwarder {
    dir: Arc<Path>,
    unix: Client<UnixConnector, Full<Bytes>>,
    tcp: Client<HttpConnector, Full<Bytes>>,
}

impl Forwarder {
    /// Keep-alive clients for the children's sockets in `dir`, and for loopback TCP.
    pub fn new(dir: &Path) -> Forwarder {
        let dir: Arc<Path> = Arc::from(dir);
        // Below the launchers' keep-alive (65 s), so pdp drops an idle connection before its child does.
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(60)).pool_max_idle_per_host(64);
            b
        };
        // Native engines are on loopback TCP: no Nagle (hyper writes head and body separately; with Nagle
        // and delayed ACKs every forwarded request waited ~40 ms).
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Forwarder { unix: builder().build(UnixConnector { dir: dir.clone() }), tcp: builder().build(connector), dir }
    }

    /// Sends one request to a child and returns its response head with the body streaming.
    pub async fn forward(
        &self,
        addr: &ChildAddr,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        limit: Duration,
    ) -> Result<Response<Incoming>, ForwardError> {
        let authority = match addr {
            ChildAddr::Unix(socket) => match (socket.parent(), socket.file_name()) {
                (Some(parent), Some(name)) if *parent == *self.dir => name.to_string_lossy().into_owned(),
                _ => {
                    return Err(ForwardError::Unreachable(format!(
                        "{} is not in pdp's socket directory",
                        socket.display()
                    )));
                }
            },
            ChildAddr::Tcp(addr) => addr.to_string(),
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() =
            format!("http://{authority}{path}").parse().map_err(|e| ForwardError::Unreachable(format!("{e}")))?;
        for (name, value) in headers {
            if forwardable(name) {
                req.headers_mut().append(name.clone(), value.clone());
            }
        }
        let sent = match addr {
            ChildAddr::Unix(_) => tokio::time::timeout(limit, self.unix.request(req)).await,
            ChildAddr::Tcp(_) => tokio::time::timeout(limit, self.tcp.request(req)).await,
        };
        match sent {
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
