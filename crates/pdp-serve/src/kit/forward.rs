//! The one way a request reaches a child: HTTP/1.1 to the child's Unix socket in pdp's private socket
//! directory (or, for a native query engine, its loopback port), with hop-by-hop headers, the API key and
//! the limits a caller could set for itself taken out, one attempt within a time limit, and the child's
//! response passed back (optionally cut at `max-response-size` for children that have no limit of their
//! own).
//!
//! Connections to children belong to the client connection they serve ([`Upstreams`]) and are driven by
//! its own task ([`with_upstreams`]): an HTTP/1.1 client's requests come one after another, so it keeps one
//! connection per child and reuses it, with no shared pool to lock and no second task to wake for each
//! request and its answer. A client connection's concurrent requests (HTTP/2) open more.
//!
//! The invariant: a forward is never retried. If the child dies under a request, that request fails
//! with [`ForwardError::Unreachable`]; a mutation must not run twice. A request goes to a fresh connection
//! only when hyper hands it back unsent (the kept connection had closed before it was written).
//!
//! Deliberately not here: which child gets a request (`txs`, the routers), what errors mean to clients.

use std::future::Future;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use pdp_toolchain::launch::ChildAddr;

use super::respond::{Body, BoxError};

/// Why a forward failed. Never retried.
pub enum ForwardError {
    /// No answer within the limit.
    Timeout(Duration),
    /// The child refused or dropped the connection (it may have crashed mid-request).
    Unreachable(String),
}

type Sender = http1::SendRequest<Full<Bytes>>;
type Driven = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Kept connections to a child beyond this many are closed rather than kept.
const KEEP_PER_CHILD: usize = 4;

/// The connections to children of one client connection.
pub struct Upstreams {
    idle: Mutex<Vec<(ChildAddr, Sender)>>,
    /// New connections for the driver to take up; `opened` says there are some.
    opened: Mutex<Vec<Driven>>,
    pending: AtomicBool,
}

/// What drives a client connection's [`Upstreams`]: polled beside the client connection, in its task.
pub struct Driver {
    upstreams: Arc<Upstreams>,
    running: FuturesUnordered<Driven>,
}

/// A client connection's upstreams and their driver.
pub fn upstreams() -> (Arc<Upstreams>, Driver) {
    let upstreams = Arc::new(Upstreams {
        idle: Mutex::new(Vec::new()),
        opened: Mutex::new(Vec::new()),
        pending: AtomicBool::new(false),
    });
    (upstreams.clone(), Driver { upstreams, running: FuturesUnordered::new() })
}

impl Driver {
    fn poll(&mut self, cx: &mut Context<'_>) {
        // Connections are only ever opened from this same task (by a request future the client
        // connection polls), so a flag checked after each poll of it is enough: no channel, no wake-up.
        if self.upstreams.pending.swap(false, Ordering::AcqRel) {
            let opened = std::mem::take(&mut *self.upstreams.opened.lock().unwrap_or_else(PoisonError::into_inner));
            self.running.extend(opened);
        }
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {}
    }
}

/// Runs `client` (a client connection being served) with its upstream connections driven beside it,
/// until it ends; connections to children still open then are closed.
pub async fn with_upstreams<F: Future>(client: F, mut driver: Driver) -> F::Output {
    let mut client = pin!(client);
    std::future::poll_fn(|cx| {
        driver.poll(cx);
        match client.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(out),
            Poll::Pending => {
                // The client connection may just have opened a connection to a child.
                driver.poll(cx);
                Poll::Pending
            }
        }
    })
    .await
}

impl Upstreams {
    fn take(&self, addr: &ChildAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|(_, s)| !s.is_closed());
        let at = idle.iter().rposition(|(a, s)| a == addr && s.is_ready())?;
        Some(idle.swap_remove(at).1)
    }

    fn keep(&self, addr: &ChildAddr, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.iter().filter(|(a, _)| a == addr).count() < KEEP_PER_CHILD {
            idle.push((addr.clone(), sender));
        }
    }

    /// A new connection to `addr`, its driving handed to the client connection's task.
    async fn connect(&self, addr: &ChildAddr) -> std::io::Result<Sender> {
        let failed = |e: hyper::Error| std::io::Error::other(e.to_string());
        let (sender, conn): (Sender, Driven) = match addr {
            ChildAddr::Unix(path) => {
                let io = TokioIo::new(tokio::net::UnixStream::connect(&**path).await?);
                let (s, c) = http1::handshake(io).await.map_err(failed)?;
                (
                    s,
                    Box::pin(async move {
                        let _ = c.await;
                    }),
                )
            }
            ChildAddr::Tcp(addr) => {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                // Native engines are on loopback TCP: no Nagle (hyper writes head and body separately; with
                // Nagle and delayed ACKs every forwarded request waited ~40 ms).
                tcp.set_nodelay(true)?;
                let (s, c) = http1::handshake(TokioIo::new(tcp)).await.map_err(failed)?;
                (
                    s,
                    Box::pin(async move {
                        let _ = c.await;
                    }),
                )
            }
        };
        self.opened.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        self.pending.store(true, Ordering::Release);
        Ok(sender)
    }
}

/// The client to children.
#[derive(Clone)]
pub struct Forwarder {
    dir: Arc<Path>,
}

impl Forwarder {
    /// A forwarder to the children's sockets in `dir` (and to loopback TCP).
    pub fn new(dir: &Path) -> Forwarder {
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
    ) -> Result<Response<Incoming>, ForwardError> {
        let host = match addr {
            // A byte comparison: `Path`'s own compares component by component.
            ChildAddr::Unix(socket)
                if socket
                    .parent()
                    .is_some_and(|p| p.as_os_str().as_encoded_bytes() == self.dir.as_os_str().as_encoded_bytes()) =>
            {
                HeaderValue::from_static("localhost")
            }
            ChildAddr::Unix(socket) => {
                return Err(ForwardError::Unreachable(format!(
                    "{} is not in pdp's socket directory",
                    socket.display()
                )));
            }
            ChildAddr::Tcp(a) => {
                HeaderValue::from_str(&a.to_string()).map_err(|e| ForwardError::Unreachable(e.to_string()))?
            }
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = path.parse().map_err(|e| ForwardError::Unreachable(format!("{e}")))?;
        let out = req.headers_mut();
        out.reserve(headers.len() + 1);
        for (name, value) in headers {
            if forwardable(name) {
                out.append(name.clone(), value.clone());
            }
        }
        out.insert(http::header::HOST, host);
        match tokio::time::timeout(limit, send(via, addr, req)).await {
            Ok(result) => result.map_err(ForwardError::Unreachable),
            Err(_) => Err(ForwardError::Timeout(limit)),
        }
    }
}

/// Sends `req` on a kept connection to `addr`, or on a new one; a new one only if the kept one handed the
/// request back unsent.
async fn send(via: &Upstreams, addr: &ChildAddr, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
    let mut req = req;
    if let Some(mut sender) = via.take(addr) {
        match sender.try_send_request(req).await {
            Ok(resp) => {
                via.keep(addr, sender);
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                // Never written: the kept connection had closed. A fresh one may carry it.
                Some(unsent) => req = unsent,
                None => return Err(e.into_error().to_string()),
            },
        }
    }
    let mut sender = via.connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    via.keep(addr, sender);
    Ok(resp)
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
