//! The body every response has, and the answers pdp gives itself rather than a child: JSON responses, the
//! `{code, error}` shape both client generations read, the refusal of new work during shutdown, and the
//! request body read within `[serve.limits] max-body-size`.
//!
//! Deliberately not here: a protocol's own error shapes (`dp1` builds the engine's user-facing errors).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};

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

/// Reads a whole request body within `within`, refusing more than `limit` bytes (early when Content-Length
/// says so).
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
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let Ok(collected) = tokio::time::timeout(within, limited.collect()).await else {
        return Err(BodyError::Slow(within));
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}
