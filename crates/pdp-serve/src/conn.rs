//! What a client connection may cost pdp: a bounded time to send each request's head (counted from its
//! first byte), a bounded idle time between requests on a keep-alive connection, and (in `server`) a
//! bounded TLS handshake and a maximum number of connections served at once. The two timers live in the
//! connection's own reads ([`Timed`]), so a connection needs no task or timer wheel entry of its own
//! beyond one sleep, re-armed only when its deadline moves.
//!
//! A connection is *idle* while no request is in flight: from when it opens, and from when the last
//! response has been sent. The first byte read while idle starts the head timer; the request reaching pdp's
//! service stops it ([`Clock::start`]); the response body's end (or drop) makes the connection idle again.
//! Time spent on a request itself is bounded elsewhere (`query-timeout`, the forward's limits).
//!
//! Deliberately not here: accepting, TLS, HTTP itself (hyper), what requests mean.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::kit::{Body, BoxError};
use crate::metrics::{Metrics, ReasonLabels};

const NONE: u64 = u64::MAX;

/// One connection's state: requests in flight, and since when it is idle or reading a head.
#[derive(Debug)]
pub struct Clock {
    base: Instant,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    head_since: AtomicU64,
    /// The reader parked without a deadline (a request was in flight): woken when the connection turns
    /// idle, so the idle timer starts even if hyper does not read again by itself.
    reader: AtomicWaker,
}

impl Clock {
    /// A connection that opened now (idle).
    pub fn new() -> Arc<Clock> {
        Arc::new(Clock {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            reader: AtomicWaker::new(),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// A request reached the service: no head is being read any more. The guard ends it.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        InFlight(self.clone())
    }

    fn read_some(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Acquire) == NONE {
            self.head_since.store(self.now(), Ordering::Release);
        }
    }

    /// When the connection times out if nothing changes, and why; `None` while a request is in flight.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, Reason)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Acquire) {
            NONE => Some((self.at(self.idle_since.load(Ordering::Acquire)) + idle, Reason::Idle)),
            since => Some((self.at(since) + header, Reason::HeaderTimeout)),
        }
    }
}

/// A request in flight on a connection; dropping it (with the response body) makes the connection idle
/// again once no other request is in flight.
#[derive(Debug)]
pub struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::Release);
            self.0.head_since.store(NONE, Ordering::Release);
            self.0.reader.wake();
        }
    }
}

/// Why pdp closed a client connection, for `pdp_client_connections_closed_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No request for `idle-timeout`.
    Idle,
    /// A request head not complete within `header-read-timeout`.
    HeaderTimeout,
    /// A TLS handshake not complete within `tls-handshake-timeout`.
    TlsHandshake,
}

impl Reason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Idle => "idle",
            Reason::HeaderTimeout => "header_timeout",
            Reason::TlsHandshake => "tls_handshake",
        }
    }
}

impl From<Reason> for ReasonLabels {
    fn from(r: Reason) -> ReasonLabels {
        ReasonLabels { reason: r.as_str() }
    }
}

/// A connection's transport with the head and idle timers in its reads: when a read would wait past the
/// deadline, it fails with `TimedOut` instead, and hyper closes the connection.
pub struct Timed<IO> {
    io: IO,
    clock: Arc<Clock>,
    header: Duration,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    metrics: Arc<Metrics>,
}

impl<IO> Timed<IO> {
    /// `io` under `clock`, with these limits.
    pub fn new(io: IO, clock: Arc<Clock>, header: Duration, idle: Duration, metrics: Arc<Metrics>) -> Timed<IO> {
        Timed { io, clock, header, idle, sleep: Box::pin(tokio::time::sleep(Duration::ZERO)), armed: None, metrics }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Timed<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.read_some();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.clock.reader.register(cx.waker());
                let Some((deadline, reason)) = this.clock.deadline(this.header, this.idle) else {
                    return Poll::Pending;
                };
                // Re-arm only when the deadline came earlier: a later one (the usual case, each response
                // moves the idle deadline on) is found when the armed sleep fires, so a busy connection
                // touches the timer wheel about once per idle period, not once per request.
                if this.armed.is_none_or(|armed| deadline < armed) {
                    this.sleep.as_mut().reset(deadline);
                    this.armed = Some(deadline);
                }
                loop {
                    match this.sleep.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(()) if Instant::now() >= deadline => {
                            this.metrics.connections_closed.get_or_create(&reason.into()).inc();
                            return Poll::Ready(Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                reason.as_str(),
                            )));
                        }
                        Poll::Ready(()) => {
                            this.sleep.as_mut().reset(deadline);
                            this.armed = Some(deadline);
                        }
                    }
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Timed<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in flight until it has been sent (or dropped).
pub struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl Tracked {
    /// `body`, ending `in_flight` with it.
    pub fn new(body: Body, in_flight: InFlight) -> Tracked {
        Tracked { body, _in_flight: in_flight }
    }
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_then_head_then_in_flight() {
        let clock = Clock::new();
        let (h, i) = (Duration::from_secs(2), Duration::from_secs(10));
        let opened = Instant::now();
        assert_eq!(clock.deadline(h, i), Some((opened + i, Reason::Idle)));
        tokio::time::advance(Duration::from_secs(3)).await;
        clock.read_some();
        let head = clock.deadline(h, i).expect("a deadline");
        assert_eq!(head.1, Reason::HeaderTimeout);
        assert!(head.0 <= Instant::now() + h && head.0 + Duration::from_millis(5) >= Instant::now() + h);
        let in_flight = clock.start();
        assert_eq!(clock.deadline(h, i), None, "no timer while a request runs");
        let second = clock.start();
        drop(in_flight);
        assert_eq!(clock.deadline(h, i), None, "another request is still in flight");
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(second);
        let (at, why) = clock.deadline(h, i).expect("idle again");
        assert_eq!(why, Reason::Idle);
        assert!(at >= Instant::now() + i - Duration::from_millis(5), "idle counts from the last response");
    }
}
