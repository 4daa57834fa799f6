//! The one way a request reaches a child: HTTP/1.1 to the child's Unix socket in pdp's private socket
//! directory (or, for a native query engine, its loopback port), with hop-by-hop headers, the API key and
//! the limits a caller could set for itself taken out, one attempt within a time limit, and the child's
//! response passed back (optionally cut at `max-response-size` for children that have no limit of their
//! own).
//!
//! Connections to children belong to the client connection they serve ([`Upstreams`]) and are used by
//! its own task ([`wire`](super::wire): no connection task, no channel): an HTTP/1.1 client's requests
//! come one after another, so it keeps one connection per child and reuses it, with no shared pool to lock
//! and no second task to wake for each request and its answer. A client connection's concurrent requests
//! (HTTP/2) open more.
//!
//! The invariant: a forward is never retried. If the child dies under a request, that request fails
//! with [`ForwardError::Unreachable`]; a mutation must not run twice. A kept connection carries a request
//! only if, checked just before writing, the child has not closed it; otherwise a fresh one does.
//!
//! Deliberately not here: which child gets a request (`txs`, the routers), what errors mean to clients.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Response};
use http_body_util::{BodyExt, Limited};
use pdp_toolchain::launch::ChildAddr;

use super::respond::{Body, BoxError};
pub use super::wire::ChildBody;
use super::wire::{Conn, Home};

/// Why a forward failed. Never retried.
pub enum ForwardError {
    /// No answer within the limit.
    Timeout(Duration),
    /// The child refused or dropped the connection (it may have crashed mid-request).
    Unreachable(String),
}

/// Kept connections to a child beyond this many are closed rather than kept.
const KEEP_PER_CHILD: usize = 4;
/// A kept connection idle longer than this is closed rather than used: well inside the children's own
/// keep-alive timeouts (65 s for pdp's launchers), so a child does not close one as a request goes out.
const IDLE_MAX: Duration = Duration::from_secs(30);

/// The connections to children of one client connection.
#[derive(Default)]
pub struct Upstreams {
    idle: Home,
}

impl Upstreams {
    /// A kept connection to `addr` that can carry a request now (not closed by the child, not idle too
    /// long); the others found on the way are closed.
    fn take(&self, addr: &ChildAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(at) = idle.iter().rposition(|(a, _)| a == addr) {
            let (_, conn) = idle.swap_remove(at);
            if conn.idle_since.elapsed() < IDLE_MAX && conn.reusable() {
                return Some(conn);
            }
        }
        None
    }
}

/// The client to children.
#[derive(Clone)]
pub struct Forwarder {
    dir: Arc<std::path::Path>,
}

impl Forwarder {
    /// A forwarder to the children's sockets in `dir` (and to loopback TCP).
    pub fn new(dir: &std::path::Path) -> Forwarder {
        Forwarder { dir: Arc::from(dir) }
    }

    /// Sends one request to a child over `via` and returns its response head with the body streaming.
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        via: &Upstreams,
        addr: &ChildAddr,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        limit: Duration,
    ) -> Result<Response<ChildBody>, ForwardError> {
        let host: std::borrow::Cow<'_, str> = match addr {
            // A byte comparison: `Path`'s own compares component by component.
            ChildAddr::Unix(socket)
                if socket
                    .parent()
                    .is_some_and(|p| p.as_os_str().as_encoded_bytes() == self.dir.as_os_str().as_encoded_bytes()) =>
            {
                "localhost".into()
            }
            ChildAddr::Unix(socket) => {
                return Err(ForwardError::Unreachable(format!(
                    "{} is not in pdp's socket directory",
                    socket.display()
                )));
            }
            ChildAddr::Tcp(a) => a.to_string().into(),
        };
        // A HEAD's answer has no body whatever its head says; no route forwards one, and `wire` reads bodies.
        if method == Method::HEAD {
            return Err(ForwardError::Unreachable("HEAD is not forwarded to children".into()));
        }
        // The routers build paths from checked parts; anything that is not a plain request target is
        // refused rather than written.
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ForwardError::Unreachable(format!("`{}` is not a request path", path.escape_default())));
        }
        let mut head = Vec::with_capacity(160 + path.len() + headers.len() * 48);
        for piece in
            [method.as_str().as_bytes(), b" ", path.as_bytes(), b" HTTP/1.1\r\nhost: ", host.as_bytes(), b"\r\n"]
        {
            head.extend_from_slice(piece);
        }
        for (name, value) in headers {
            if forwardable(name) {
                for piece in [name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                    head.extend_from_slice(piece);
                }
            }
        }
        if !body.is_empty() || !matches!(method, Method::GET | Method::HEAD | Method::DELETE) {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        match tokio::time::timeout(limit, send(via, addr, &head, &body)).await {
            Ok(result) => result.map_err(ForwardError::Unreachable),
            Err(_) => Err(ForwardError::Timeout(limit)),
        }
    }
}

/// Sends the request on a kept connection to `addr` that can carry it, or on a new one. Whatever happens
/// once it is written, it is not written again.
async fn send(via: &Upstreams, addr: &ChildAddr, head: &[u8], body: &[u8]) -> Result<Response<ChildBody>, String> {
    let conn = match via.take(addr) {
        Some(conn) => conn,
        None => Conn::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?,
    };
    conn.exchange(head, body, &via.idle, addr, KEEP_PER_CHILD).await.map_err(|e| e.0)
}

/// Headers never passed between client and child: hop-by-hop ones, the key, and the limits the executor
/// would trust from a caller (pdp sets those from pdp.toml; protocols.md §3.3).
pub(crate) fn forwardable(name: &HeaderName) -> bool {
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

/// A child's (or a peer's) response, passed through with hop-by-hop headers removed.
pub fn pass_through<B>(resp: Response<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = resp.into_parts();
    retain_end_to_end(&mut parts.headers);
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}

/// Like [`pass_through`], for a child that has no response limit of its own: a response whose
/// Content-Length is over `limit` is not sent (`Err` with its size), and one without a length is cut
/// off at `limit` bytes (the client sees a broken response, never an unbounded one).
pub fn pass_through_within<B>(resp: Response<B>, limit: u64) -> Result<Response<Body>, u64>
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
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

/// Removes the hop-by-hop headers of a response (a child's answer has none left; a peer's may).
fn retain_end_to_end(headers: &mut HeaderMap) {
    // One pass over the names it has (a lookup by a string name parses that name each time).
    let hop: Vec<HeaderName> =
        headers.keys().filter(|name| super::wire::HOP_BY_HOP.contains(&name.as_str())).cloned().collect();
    for name in hop {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_answer_keeps_its_end_to_end_headers_only() {
        let mut resp = Response::new(http_body_util::Full::new(Bytes::from_static(b"{}")));
        let h = resp.headers_mut();
        for (name, value) in [
            ("content-type", "application/json"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("x-elapsed", "12"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
        ] {
            h.append(HeaderName::from_static(name), http::HeaderValue::from_static(value));
        }
        let passed = pass_through(resp);
        let mut left: Vec<&str> = passed.headers().keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-elapsed"]);
    }
}
