//! The header names pdp reads or writes on every request of some route, each made once: a name given as a
//! string is parsed again on every use.
//!
//! Deliberately not here: names `http` already has (`http::header::*`), and names used only off the
//! request path (tests, start-up), which stay strings where they are used.

use http::HeaderName;

/// The request id pdp puts on every answer.
pub const PRISMA_REQUEST_ID: HeaderName = HeaderName::from_static("prisma-request-id");
/// The Prisma 7 client's version (`accelerateUrl` routes).
pub const PRISMA_ENGINE_HASH: HeaderName = HeaderName::from_static("prisma-engine-hash");
/// The Accelerate extension's tags for a cached query.
pub const ACCELERATE_CACHE_TAGS: HeaderName = HeaderName::from_static("accelerate-cache-tags");
/// `ttl` | `swr` | `miss` | `none`, as `withAccelerateInfo()` reads it.
pub const ACCELERATE_CACHE_STATUS: HeaderName = HeaderName::from_static("accelerate-cache-status");
/// The request id and region, as the Accelerate extension reports them.
pub const CF_RAY: HeaderName = HeaderName::from_static("cf-ray");
/// W3C trace context, passed to engines.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The 4.x–6.x clients' request for logs and traces.
pub const X_CAPTURE_TELEMETRY: HeaderName = HeaderName::from_static("x-capture-telemetry");
/// An interactive transaction's id, as the 4.x–6.x engines read it.
pub const X_TRANSACTION_ID: HeaderName = HeaderName::from_static("x-transaction-id");
