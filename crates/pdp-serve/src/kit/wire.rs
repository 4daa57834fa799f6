//! HTTP/1.1 on a connection to one of pdp's own children, without a task or a channel of its own: the
//! request written at once (head and a small body in one write), the response head parsed in place
//! (httparse, the parser hyper uses), and a body that came with its head handed on as one frame, the
//! connection ready for the next request before the response is even returned. A body still arriving
//! streams from the connection itself ([`ChildBody`]), by `Content-Length`, chunked, or to the end of the
//! connection, and the connection is kept again once it has been read whole.
//!
//! Children are local processes pdp started (executors, WASM engines, native engines); a request never
//! goes anywhere else on this path. That is why it can skip what a general client needs: no TLS, no
//! HTTP/2, no upgrades, no `Expect: 100-continue` (an interim `100` is skipped all the same).
//!
//! Deliberately not here: which headers go and the time limit (`forward`), keeping connections and
//! whether a request may go (never re-sent: `forward`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use hyper::body::{Frame, SizeHint};
use pdp_toolchain::launch::ChildAddr;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::respond::BoxError;

/// The hop-by-hop headers of a response: never passed on (RFC 9110 §7.6.1).
pub(crate) const HOP_BY_HOP: [&str; 6] = ["connection", "keep-alive", "transfer-encoding", "upgrade", "trailer", "te"];

/// A response head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// Headers a response head is parsed for first (children send about seven)…
const FEW_HEADERS: usize = 24;
/// …and at most.
const MAX_HEADERS: usize = 128;
/// A chunk-size line (with extensions) or the trailers longer than this are refused.
const MAX_LINE: usize = 16 * 1024;
/// What a read makes room for at least (answers are mostly a few hundred bytes).
const READ_SIZE: usize = 4096;
/// A body up to this size goes out in the same write as the head.
const WRITE_WITH_HEAD: usize = 16 * 1024;

/// The socket to a child.
enum Io {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Io {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Unix(s) => s.try_read(buf),
            Io::Tcp(s) => s.try_read(buf),
        }
    }

    /// Whether the runtime has seen the socket readable (data, or the child's end closed) since it was
    /// last read to the end: no system call.
    fn seen_readable(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = match self {
            Io::Unix(s) => s.poll_read_ready(&mut cx),
            Io::Tcp(s) => s.poll_read_ready(&mut cx),
        };
        ready.is_ready()
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One connection to a child, with what has been read of it and not yet used.
pub struct Conn {
    io: Io,
    buf: BytesMut,
    /// When it was last given back (a kept connection idle too long is closed rather than used).
    pub(crate) idle_since: Instant,
}

/// Where a connection goes back to once its response has been read whole.
pub(crate) type Home = Arc<Mutex<Vec<(ChildAddr, Conn)>>>;

/// Gives `conn` back to `home` unless `home` already keeps `keep` connections to `addr`.
pub(crate) fn give_back(home: &Home, addr: &ChildAddr, mut conn: Conn, keep: usize) {
    conn.idle_since = Instant::now();
    let mut idle = home.lock().unwrap_or_else(PoisonError::into_inner);
    if idle.iter().filter(|(a, _)| a == addr).count() < keep {
        idle.push((addr.clone(), conn));
    }
}

/// Why an exchange failed; the request may have reached the child unless it says otherwise.
#[derive(Debug)]
pub struct WireError(pub String);

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> WireError {
        WireError(e.to_string())
    }
}

impl Conn {
    /// A new connection to `addr`.
    pub async fn connect(addr: &ChildAddr) -> io::Result<Conn> {
        let io = match addr {
            ChildAddr::Unix(path) => Io::Unix(tokio::net::UnixStream::connect(&**path).await?),
            ChildAddr::Tcp(addr) => {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                // Native engines are on loopback TCP: no Nagle (with delayed ACKs a request split over two
                // segments waited ~40 ms).
                tcp.set_nodelay(true)?;
                Io::Tcp(tcp)
            }
        };
        Ok(Conn { io, buf: BytesMut::with_capacity(READ_SIZE), idle_since: Instant::now() })
    }

    /// Whether a kept connection can carry a request: the child has not closed it and sent nothing
    /// unasked. Checked without waiting, before anything is written; the socket is asked only when the
    /// runtime has seen it readable.
    pub fn reusable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        if !self.io.seen_readable() {
            return true;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes `head` and `body`, then reads the response head. The response's body is complete when it
    /// came with the head ([`Exchange::conn`] is then the connection, free for the next request), or
    /// streams from the connection.
    pub async fn exchange(
        mut self,
        head: &[u8],
        body: &[u8],
        home: &Home,
        addr: &ChildAddr,
        keep: usize,
    ) -> Result<Response<ChildBody>, WireError> {
        if body.len() <= WRITE_WITH_HEAD {
            // One system call for both, as a rule.
            let mut sent = 0;
            let total = head.len() + body.len();
            while sent < total {
                let n = if sent < head.len() {
                    let parts = [io::IoSlice::new(&head[sent..]), io::IoSlice::new(body)];
                    self.io.write_vectored(&parts).await?
                } else {
                    self.io.write(&body[sent - head.len()..]).await?
                };
                if n == 0 {
                    return Err(WireError("the child stopped taking the request".into()));
                }
                sent += n;
            }
        } else {
            self.io.write_all(head).await?;
            self.io.write_all(body).await?;
        }
        let (status, headers, framing, mut reusable) = loop {
            if let Some(parsed) = self.parse_head()? {
                break parsed;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(WireError(format!("a response head over {MAX_HEAD} bytes")));
            }
            if self.read_some().await? == 0 {
                return Err(WireError("the child closed the connection before answering".into()));
            }
        };
        let body = match framing {
            Framing::Empty => {
                // Anything after an empty body: the connection's state is unknown.
                reusable &= self.buf.is_empty();
                ChildBody::whole(Bytes::new())
            }
            Framing::Length(n) if self.buf.len() as u64 >= n => {
                // usize: it is no longer than the buffer.
                let data = self.buf.split_to(n as usize).freeze();
                // More than the length said: the connection's state is unknown.
                reusable &= self.buf.is_empty();
                ChildBody::whole(data)
            }
            framing => {
                let stream = Streaming { conn: self, framing, home: home.clone(), addr: addr.clone(), keep, reusable };
                let mut resp = Response::new(ChildBody(State::Streaming(Box::new(stream))));
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                return Ok(resp);
            }
        };
        if reusable {
            give_back(home, addr, self, keep);
        }
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        Ok(resp)
    }

    /// Reads what the child has sent into the buffer: how many bytes (0 when it closed the connection).
    async fn read_some(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_some(cx)).await
    }

    fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_SIZE);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// The response head at the front of the buffer, taken off it; `None` while it is incomplete.
    #[allow(clippy::type_complexity)]
    fn parse_head(&mut self) -> Result<Option<(StatusCode, HeaderMap, Framing, bool)>, WireError> {
        loop {
            let mut few = [httparse::EMPTY_HEADER; FEW_HEADERS];
            let mut many = Vec::new();
            let mut parsed = httparse::Response::new(&mut few);
            let mut result = parsed.parse(&self.buf);
            if matches!(result, Err(httparse::Error::TooManyHeaders)) {
                many.resize(MAX_HEADERS, httparse::EMPTY_HEADER);
                parsed = httparse::Response::new(&mut many);
                result = parsed.parse(&self.buf);
            }
            let len = match result {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(WireError(format!("a malformed response head ({e})"))),
            };
            let code = parsed.code.unwrap_or(0);
            let status = StatusCode::from_u16(code).map_err(|_| WireError(format!("a response status of {code}")))?;
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(WireError("the child switched protocols".into()));
                }
                // `100 Continue` and its kind: the real answer follows.
                self.buf.advance(len);
                continue;
            }
            // Room for the headers pdp adds to every answer, so that the map does not grow for them.
            let mut headers = HeaderMap::with_capacity(parsed.headers.len() + 2);
            let (mut length, mut chunked, mut close) = (None::<u64>, false, parsed.version == Some(0));
            for h in parsed.headers.iter() {
                // Hop-by-hop headers other than the two read below (`Keep-Alive`, …) are dropped before a
                // name is made for them.
                if !h.name.eq_ignore_ascii_case("connection")
                    && !h.name.eq_ignore_ascii_case("transfer-encoding")
                    && HOP_BY_HOP.iter().any(|hop| h.name.eq_ignore_ascii_case(hop))
                {
                    continue;
                }
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| WireError(format!("a malformed header name `{}`", h.name.escape_default())))?;
                match name.as_str() {
                    "content-length" => {
                        // Digits only (a `+` that `parse` would take is not a length).
                        let n = std::str::from_utf8(h.value)
                            .ok()
                            .map(str::trim)
                            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                            .and_then(|v| v.parse::<u64>().ok())
                            .ok_or_else(|| WireError("a malformed content-length".into()))?;
                        if length.is_some_and(|m| m != n) {
                            return Err(WireError("two different content-lengths".into()));
                        }
                        length = Some(n);
                    }
                    "transfer-encoding" => {
                        // Only chunked is spoken here, and it must come last.
                        let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                        if v.rsplit(',').next().map(str::trim) != Some("chunked") {
                            return Err(WireError(format!("an unsupported transfer-encoding `{v}`")));
                        }
                        chunked = true;
                        continue;
                    }
                    "connection" => {
                        close |= h.value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
                        continue;
                    }
                    _ => {}
                }
                let value = HeaderValue::from_bytes(h.value)
                    .map_err(|_| WireError(format!("a malformed value of header `{name}`")))?;
                headers.append(name, value);
            }
            self.buf.advance(len);
            let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
                Framing::Empty
            } else if chunked {
                // A length beside chunked is ignored (RFC 9112 §6.3), and not passed on.
                headers.remove(http::header::CONTENT_LENGTH);
                Framing::Chunked(Chunk::Size)
            } else if let Some(n) = length {
                if n == 0 { Framing::Empty } else { Framing::Length(n) }
            } else {
                close = true;
                Framing::ToEnd
            };
            return Ok(Some((status, headers, framing, !close)));
        }
    }
}

/// How a response body ends.
enum Framing {
    /// No body.
    Empty,
    /// This many bytes still to come.
    Length(u64),
    /// Chunked, at this point of a chunk.
    Chunked(Chunk),
    /// When the child closes the connection.
    ToEnd,
}

/// Where a chunked body stands.
#[derive(Clone, Copy)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this much of it left.
    Data(u64),
    /// After a chunk's data, expecting its CRLF.
    DataEnd,
    /// After the last chunk, reading trailers to the empty line.
    Trailers,
}

/// A response body from a child.
pub struct ChildBody(State);

enum State {
    Whole(Option<Bytes>),
    Streaming(Box<Streaming>),
    Done,
}

struct Streaming {
    conn: Conn,
    framing: Framing,
    home: Home,
    addr: ChildAddr,
    keep: usize,
    reusable: bool,
}

impl ChildBody {
    fn whole(data: Bytes) -> ChildBody {
        ChildBody(State::Whole((!data.is_empty()).then_some(data)))
    }
}

impl Streaming {
    /// The next piece of the body: `Some(data)`, or `None` at its end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, WireError>> {
        loop {
            let buf = &mut self.conn.buf;
            match &mut self.framing {
                Framing::Empty => return Poll::Ready(Ok(None)),
                Framing::Length(left) => {
                    if *left == 0 {
                        self.reusable &= buf.is_empty();
                        return Poll::Ready(Ok(None));
                    }
                    if !buf.is_empty() {
                        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                        *left -= n as u64;
                        return Poll::Ready(Ok(Some(buf.split_to(n).freeze())));
                    }
                }
                Framing::ToEnd => {
                    if !buf.is_empty() {
                        return Poll::Ready(Ok(Some(buf.split().freeze())));
                    }
                }
                Framing::Chunked(chunk) => match chunked_step(buf, chunk)? {
                    Step::Data(data) => return Poll::Ready(Ok(Some(data))),
                    Step::End => {
                        self.reusable &= buf.is_empty();
                        return Poll::Ready(Ok(None));
                    }
                    Step::Again => continue,
                    Step::More => {}
                },
            }
            // More bytes are needed.
            let n = ready!(self.conn.poll_read_some(cx))?;
            if n == 0 {
                return match self.framing {
                    Framing::ToEnd => Poll::Ready(Ok(None)),
                    _ => Poll::Ready(Err(WireError("the child closed the connection in the middle of a body".into()))),
                };
            }
        }
    }
}

enum Step {
    /// A piece of data.
    Data(Bytes),
    /// The body ended.
    End,
    /// The state moved on: look again.
    Again,
    /// More bytes are needed.
    More,
}

/// One step of decoding a chunked body from `buf`.
fn chunked_step(buf: &mut BytesMut, chunk: &mut Chunk) -> Result<Step, WireError> {
    let line_end = |buf: &BytesMut| buf.windows(2).position(|w| w == b"\r\n");
    match *chunk {
        Chunk::Size => {
            let Some(end) = line_end(buf) else {
                return if buf.len() > MAX_LINE {
                    Err(WireError("a chunk-size line too long".into()))
                } else {
                    Ok(Step::More)
                };
            };
            let line = &buf[..end];
            let digits = line.split(|b| *b == b';').next().unwrap_or(b"");
            let digits = std::str::from_utf8(digits).map(str::trim).unwrap_or("");
            let size = u64::from_str_radix(digits, 16)
                .ok()
                .filter(|_| !digits.is_empty() && digits.len() <= 16 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| WireError("a malformed chunk size".into()))?;
            buf.advance(end + 2);
            *chunk = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
            Ok(Step::Again)
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::More);
            }
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let data = buf.split_to(n).freeze();
            *chunk = if n as u64 == left { Chunk::DataEnd } else { Chunk::Data(left - n as u64) };
            Ok(Step::Data(data))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::More);
            }
            if &buf[..2] != b"\r\n" {
                return Err(WireError("a chunk not followed by CRLF".into()));
            }
            buf.advance(2);
            *chunk = Chunk::Size;
            Ok(Step::Again)
        }
        Chunk::Trailers => {
            let Some(end) = line_end(buf) else {
                return if buf.len() > MAX_LINE { Err(WireError("trailers too long".into())) } else { Ok(Step::More) };
            };
            buf.advance(end + 2);
            // The empty line ends the body; trailer fields are dropped.
            if end == 0 { Ok(Step::End) } else { Ok(Step::Again) }
        }
    }
}

impl hyper::body::Body for ChildBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            State::Whole(data) => {
                let data = data.take();
                self.0 = State::Done;
                Poll::Ready(data.map(|d| Ok(Frame::data(d))))
            }
            State::Done => Poll::Ready(None),
            State::Streaming(s) => match ready!(s.poll_next(cx)) {
                Ok(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) => {
                    let State::Streaming(s) = std::mem::replace(&mut self.0, State::Done) else {
                        unreachable!("matched above")
                    };
                    if s.reusable {
                        give_back(&s.home, &s.addr, s.conn, s.keep);
                    }
                    Poll::Ready(None)
                }
                Err(e) => {
                    // The connection is dropped with it: its state is unknown.
                    self.0 = State::Done;
                    Poll::Ready(Some(Err(e.0.into())))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, State::Done | State::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            State::Whole(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            State::Done => SizeHint::with_exact(0),
            State::Streaming(s) => match s.framing {
                Framing::Length(left) => SizeHint::with_exact(left),
                _ => SizeHint::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(parts: &[&[u8]]) -> Result<Vec<u8>, String> {
        let mut buf = BytesMut::new();
        let mut chunk = Chunk::Size;
        let mut out = Vec::new();
        let mut parts = parts.iter();
        loop {
            match chunked_step(&mut buf, &mut chunk).map_err(|e| e.0)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::End => return Ok(out),
                Step::Again => {}
                Step::More => match parts.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => return Err("needs more".into()),
                },
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_however_they_are_split() {
        let whole: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        assert_eq!(decode(&[whole]).as_deref(), Ok(&b"hello, world"[..]));
        // Every split into two pieces, and one byte at a time.
        for at in 1..whole.len() {
            assert_eq!(decode(&[&whole[..at], &whole[at..]]).as_deref(), Ok(&b"hello, world"[..]), "split at {at}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(decode(&bytes).as_deref(), Ok(&b"hello, world"[..]));
        assert_eq!(decode(&[b"A\r\n0123456789\r\n0\r\n\r\n"]).as_deref(), Ok(&b"0123456789"[..]));
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        assert!(decode(&[b"zz\r\nhello\r\n0\r\n\r\n"]).is_err(), "not hex");
        assert!(decode(&[b"\r\n"]).is_err(), "no size");
        assert!(decode(&[b"5\r\nhelloXX0\r\n\r\n"]).is_err(), "no CRLF after the data");
        assert!(decode(&[b"11111111111111111\r\n"]).is_err(), "a size past 64 bits");
        assert!(decode(&[b"5\r\nhel"]).is_err(), "cut short");
        assert!(decode(&[b"+5\r\nhello\r\n0\r\n\r\n"]).is_err(), "a sign is not hex");
    }

    async fn served(answer: &'static [u8]) -> (ChildAddr, tokio::task::JoinHandle<Vec<u8>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("child.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let task = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).await.expect("read");
            got.truncate(n);
            s.write_all(answer).await.expect("write");
            // Hold the connection open a little: the client must not need the close.
            let mut rest = [0u8; 1];
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), s.read(&mut rest)).await;
            got
        });
        (ChildAddr::Unix(Arc::from(path.as_path())), task, dir)
    }

    async fn exchange(answer: &'static [u8]) -> (Result<(StatusCode, HeaderMap, Vec<u8>), String>, Vec<u8>, usize) {
        use http_body_util::BodyExt;
        let (addr, task, _dir) = served(answer).await;
        let home: Home = Arc::new(Mutex::new(Vec::new()));
        let conn = Conn::connect(&addr).await.expect("connect");
        let out = match conn
            .exchange(b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n", b"{}", &home, &addr, 4)
            .await
        {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                match body.collect().await {
                    Ok(c) => Ok((parts.status, parts.headers, c.to_bytes().to_vec())),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.0),
        };
        let kept = home.lock().unwrap_or_else(PoisonError::into_inner).len();
        let sent = task.await.expect("the child task");
        (out, sent, kept)
    }

    #[tokio::test]
    async fn a_response_with_its_length_is_read_and_the_connection_kept() {
        let (out, sent, kept) =
            exchange(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nConnection: keep-alive\r\nKeep-Alive: timeout=65\r\n\r\n{\"data\":{}}").await;
        let (status, headers, body) = out.expect("an answer");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"{\"data\":{}}");
        assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/json"[..]));
        assert!(
            headers.get("connection").is_none() && headers.get("keep-alive").is_none(),
            "hop-by-hop headers dropped"
        );
        assert_eq!(sent, b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(kept, 1, "the connection is kept for the next request");
    }

    #[tokio::test]
    async fn chunked_and_closing_responses_are_read_whole() {
        let (out, _, kept) =
            exchange(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await;
        let (status, headers, body) = out.expect("an answer");
        assert_eq!((status, body.as_slice()), (StatusCode::CREATED, &b"abcde"[..]));
        assert!(headers.get("transfer-encoding").is_none());
        assert_eq!(kept, 1);
        let (out, _, kept) = exchange(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok").await;
        assert_eq!(out.expect("an answer").2, b"ok");
        assert_eq!(kept, 0, "a connection the child closes is not kept");
        let (_, _, kept) =
            exchange(b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive , CLOSE\r\ncontent-length: 2\r\n\r\nok").await;
        assert_eq!(kept, 0, "connection tokens are matched whatever their case and spacing");
        let (_, _, kept) = exchange(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\nok").await;
        assert_eq!(kept, 1);
    }

    #[tokio::test]
    async fn a_kept_connection_the_child_closed_is_not_reused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("child.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let addr = ChildAddr::Unix(Arc::from(path.as_path()));
        let conn = Conn::connect(&addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        assert!(conn.reusable(), "an open, quiet connection can carry a request");
        drop(server);
        // The runtime learns of the close on its next turn: poll until it has, within a bound.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while conn.reusable() {
            assert!(Instant::now() < deadline, "a closed connection still looks reusable");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_response_cut_short_or_malformed_is_an_error() {
        let (out, _, kept) = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await;
        assert!(out.is_err(), "cut short: {out:?}");
        assert_eq!(kept, 0);
        let (out, _, _) = exchange(b"HTTP/1.1 2000 What\r\n\r\n").await;
        assert!(out.is_err(), "{out:?}");
        let (out, _, _) = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab").await;
        assert!(out.is_err(), "{out:?}");
        let (out, _, _) = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nab").await;
        assert!(out.is_err(), "{out:?}");
        // Bytes after an empty body: answered, but the connection is not kept.
        let (out, _, kept) = exchange(b"HTTP/1.1 204 No Content\r\n\r\nstray").await;
        assert_eq!(out.expect("an answer").0, StatusCode::NO_CONTENT);
        assert_eq!(kept, 0);
    }
}
