//! The access log's records: one per answered request (its id, method, path, route, status, time, the
//! key's id, never the key, and what the query cache did), handed to the [`AccessLog`] the binary supplies, which formats and writes
//! them beside its other log lines. A record is plain data: pdp-serve never prints.
//!
//! Deliberately not here: the line's format and where it goes (the binary's log writer).

use std::time::Duration;

/// One answered request.
#[derive(Clone, Copy, Debug)]
pub struct AccessRecord<'a> {
    /// The request id (also the `prisma-request-id` response header).
    pub id: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path, without the query (it is the client's: redact it before writing).
    pub path: &'a str,
    /// The route's low-cardinality name.
    pub route: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// Time to the response head.
    pub elapsed: Duration,
    /// The key's log id (`sha256:1a2b3c4d`), when a key was accepted.
    pub key: Option<&'a str>,
    /// What the query cache did (`ttl`, `swr`, `miss`, `none`), when the request carried a cache strategy.
    pub cache: Option<&'a str>,
}

/// Where access records go.
pub trait AccessLog: Send + Sync {
    /// Writes one record (cheaply: this runs once per request on the request path).
    fn record(&self, record: &AccessRecord<'_>);
}

/// The access log as `tracing` events (target `pdp::access`), for callers without a writer of their own.
#[derive(Debug, Default)]
pub struct TracingAccessLog;

impl AccessLog for TracingAccessLog {
    fn record(&self, r: &AccessRecord<'_>) {
        tracing::info!(
            target: "pdp::access",
            id = r.id,
            method = r.method,
            path = r.path,
            route = r.route,
            status = r.status,
            ms = format_args!("{:.1}", r.elapsed.as_secs_f64() * 1000.0),
            key = r.key.unwrap_or("-"),
            cache = r.cache.unwrap_or("-"),
        );
    }
}
