//! The body every response has, and the answers pdp gives itself rather than a child: JSON responses, the
//! `{code, error}` shape both client generations read, the refusal of new work during shutdown, and the
//! request body read within `[serve.limits] max-body-size`.
//!
//! Deliberately not here: a protocol's own error shapes (`dp1` builds the engine's user-facing errors).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Boxed error of a response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body every response has.
pub type Body = BoxBody<Bytes, BoxError>;

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
    /// The body did not arrive within the limit.
    Slow(std::time::Duration),
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
            BodyError::Slow(d) => error(
                StatusCode::REQUEST_TIMEOUT,
                "P6005",
                &format!("the request body did not arrive within {}s ([serve.limits] query-timeout)", d.as_secs()),
            ),
        }
    }
}

/// Reads a whole body (a client's request, or a child's answer the cache keeps) within `within`, refusing more than `limit` bytes (early when Content-Length
/// says so). A body that arrived with its head (the usual query) is taken as it is: one chunk, no copy, no
/// timer; the body is done once it has all the bytes its length promised, without waiting for the
/// connection to say so.
pub async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: u64,
    within: std::time::Duration,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = std::pin::pin!(body);
    let read = async move {
        let mut first = Bytes::new();
        let mut rest: Option<bytes::BytesMut> = None;
        while !body.is_end_stream() {
            let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await else { break };
            let Ok(data) = frame.map_err(|e| BodyError::Broken(e.into().to_string()))?.into_data() else {
                continue; // trailers: not part of a query
            };
            // `rest`, once there, holds `first` too.
            if rest.as_ref().map_or(first.len(), bytes::BytesMut::len) + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            match &mut rest {
                None if first.is_empty() => first = data,
                None => {
                    let mut joined = bytes::BytesMut::with_capacity(first.len() + data.len());
                    joined.extend_from_slice(&first);
                    joined.extend_from_slice(&data);
                    rest = Some(joined);
                }
                Some(joined) => joined.extend_from_slice(&data),
            }
        }
        Ok(rest.map_or(first, bytes::BytesMut::freeze))
    };
    let mut read = std::pin::pin!(read);
    // Polled once as it is; the timer is set only if the body is still coming.
    let now = std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(done) = now {
        return done;
    }
    tokio::time::timeout(within, read).await.unwrap_or(Err(BodyError::Slow(within)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use std::time::Duration;

    type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>;

    fn chunks(parts: &[&'static str]) -> StreamBody<Chunks> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes())))).collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn read(body: impl hyper::body::Body<Data = Bytes, Error = BoxError>, limit: u64) -> Result<Bytes, BodyError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(read_body(&HeaderMap::new(), body, limit, Duration::from_secs(5)))
    }

    #[test]
    fn a_whole_body_is_taken_without_a_copy() {
        let whole = Bytes::from_static(b"{\"query\":1}");
        let Ok(got) = read(Full::new(whole.clone()).map_err(|never| match never {}), 100) else { panic!() };
        assert_eq!(got.as_ptr(), whole.as_ptr());
    }

    #[test]
    fn chunks_are_joined_and_the_limit_counts_them_all() {
        let Ok(got) = read(chunks(&["{\"a\":", "", "1", "}"]), 100) else { panic!() };
        assert_eq!(&got[..], b"{\"a\":1}");
        assert!(matches!(read(chunks(&["12345", "67890", "x"]), 10), Err(BodyError::TooLarge)));
        assert!(matches!(read(chunks(&["12345", "67890"]), 10), Ok(b) if b.len() == 10));
        // Every byte counted once, however many chunks.
        assert!(matches!(read(chunks(&["123", "456", "789", "0"]), 10), Ok(b) if &b[..] == b"1234567890"));
        assert!(matches!(read(chunks(&["123", "456", "789", "0", "x"]), 10), Err(BodyError::TooLarge)));
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let got = rt.block_on(read_body(&headers, chunks(&["x"]), 10, Duration::from_secs(5)));
        assert!(matches!(got, Err(BodyError::TooLarge)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_coming_times_out() {
        // One chunk, then nothing more and no end.
        let stalled = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"{")))])
            .chain(futures_util::stream::pending());
        let got = read_body(&HeaderMap::new(), StreamBody::new(stalled), 100, Duration::from_secs(3)).await;
        assert!(matches!(got, Err(BodyError::Slow(d)) if d == Duration::from_secs(3)));
    }
}
