//! `/metrics`: what pdp itself measures, in Prometheus text format (prometheus-client). Requests by route
//! and status, latency histograms by route, in-flight requests, open interactive transactions, child
//! starts and restarts, running children, each child's requests in flight and database connections against
//! its bound, abandoned transactions, the TLS certificate's end, the query cache. The recent-traffic
//! window of the status page ([`crate::window`]) is fed beside them.
//!
//! Deliberately not here: per-key or per-model labels (unbounded cardinality), and scraping the children
//! (issue 7 merges query-engine metrics into this output).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Low-cardinality route name, e.g. `qpe_query`.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// A route's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name.
    pub route: &'static str,
}

/// Why a client connection was closed by pdp.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `idle`, `header_timeout`, `tls_handshake`.
    pub reason: &'static str,
}

/// A child's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChildLabels {
    /// `executor`, `engine`, `database`.
    pub kind: &'static str,
    /// The Prisma version (or engine hash) it serves.
    pub version: String,
    /// Its place in the pool of children serving that version (`0` when there is one).
    pub slot: String,
}

/// What happened on the cluster channel.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// `relay` (a request of another replica's transaction sent to its owner), `schema` (a schema asked of
    /// the peers), `forged` (an owner reference that failed its check), `refused` (a peer request that did).
    pub kind: &'static str,
    /// `ok`, `unreachable`, `timeout`, `miss`, `refused`.
    pub outcome: &'static str,
}

/// What the query cache did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` (fresh), `stale` (served within swr), `miss`, `fill` (a miss's query run: misses of one key at
    /// one moment share it), `refresh` (a stale entry's background query), `eviction` (out for room),
    /// `invalidation`.
    pub event: &'static str,
}

/// Every `event` of `pdp_cache_events_total` (see [`CacheLabels`]).
pub const CACHE_EVENTS: [&str; 7] = ["hit", "stale", "miss", "fill", "refresh", "eviction", "invalidation"];

/// Every metric pdp exports.
pub struct Metrics {
    registry: Registry,
    /// `pdp_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `pdp_request_duration_seconds`.
    pub latency: Family<RouteLabels, Histogram>,
    /// `pdp_requests_in_flight`.
    pub in_flight: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_open_transactions`.
    pub open_transactions: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_child_starts_total`.
    pub starts: Family<ChildLabels, Counter>,
    /// `pdp_child_restarts_total`.
    pub restarts: Family<ChildLabels, Counter>,
    /// `pdp_children_running`.
    pub running: Family<ChildLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// `pdp_auth_failures_total`.
    pub auth_failures: Counter<u64, AtomicU64>,
    /// `pdp_client_connections`.
    pub connections: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_client_connections_max`.
    pub connections_max: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_client_connections_closed_total`.
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// `pdp_peer_requests_total`.
    pub peer: Family<PeerLabels, Counter>,
    /// `pdp_cache_events_total`.
    pub cache: Family<CacheLabels, Counter>,
    /// `pdp_cache_entries`.
    pub cache_entries: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_cache_bytes`.
    pub cache_bytes: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_transactions_abandoned_total`.
    pub transactions_abandoned: Counter<u64, AtomicU64>,
    /// `pdp_child_requests_in_flight` (set when read).
    pub child_busy: Family<ChildLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// `pdp_db_connections` (counted when read).
    pub db_connections: Family<ChildLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// `pdp_db_connections_limit`.
    pub db_connections_limit: Family<ChildLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// `pdp_db_connection_budget`.
    pub db_budget: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_db_connections_granted` (set when read).
    pub db_granted: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_tls_certificate_expiry_timestamp_seconds`.
    pub tls_expiry: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// `pdp_start_time_seconds`.
    pub start_time: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Recent traffic by route (not exported: the status page's).
    pub window: crate::window::Window,
    /// The children the per-child gauges were last set for (held while they are refreshed).
    pub child_series: std::sync::Mutex<Vec<ChildLabels>>,
    /// Each (route, status) seen: its request counter and its route's histogram, taken from their families
    /// once, so an answered request costs a short scan instead of two label hashes under the families' locks.
    meters: std::sync::RwLock<Vec<Meter>>,
}

/// One (route, status)'s series, shared with their families.
struct Meter {
    route: &'static str,
    status: u16,
    count: Counter,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pdp");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by route and HTTP status", requests.clone());
        // 0.5 ms … ~16 s.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("request_duration_seconds", "Time to the response headers, by route", latency.clone());
        let in_flight = Gauge::default();
        registry.register("requests_in_flight", "Requests being handled", in_flight.clone());
        let open_transactions = Gauge::default();
        registry.register(
            "open_transactions",
            "Interactive transactions started and not yet finished",
            open_transactions.clone(),
        );
        let starts = Family::<ChildLabels, Counter>::default();
        registry.register("child_starts", "Executor, engine and database processes started", starts.clone());
        let restarts = Family::<ChildLabels, Counter>::default();
        registry.register("child_restarts", "Children restarted after exiting unexpectedly", restarts.clone());
        let running = Family::<ChildLabels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        registry.register("children_running", "Children currently serving", running.clone());
        let auth_failures = Counter::default();
        registry.register("auth_failures", "Requests refused for a missing or wrong API key", auth_failures.clone());
        let connections = Gauge::default();
        registry.register("client_connections", "Client connections open (on the main listener)", connections.clone());
        let connections_max = Gauge::default();
        registry.register(
            "client_connections_max",
            "Most client connections served at once ([serve.limits] max-connections, within the open-file limit)",
            connections_max.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "client_connections_closed",
            "Client connections pdp closed: idle, a request head or a TLS handshake too slow",
            connections_closed.clone(),
        );
        let peer = Family::<PeerLabels, Counter>::default();
        registry.register(
            "peer_requests",
            "Cluster traffic: requests relayed to the replica owning their transaction, schemas asked of peers, forged owner references and refused peer requests",
            peer.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_events",
            "Query cache: fresh hits, stale serves, misses, queries run for misses, background refreshes, evictions, invalidations",
            cache.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register("cache_entries", "Answers held in the query cache", cache_entries.clone());
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Bytes held in the query cache ([serve.cache] max-size bounds it)",
            cache_bytes.clone(),
        );
        let transactions_abandoned = Counter::default();
        registry.register(
            "transactions_abandoned",
            "Interactive transactions that neither committed nor rolled back within [serve.limits] transaction-max-timeout (their child closed them)",
            transactions_abandoned.clone(),
        );
        let child_busy = Family::<ChildLabels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        registry.register("child_requests_in_flight", "Requests each child is answering now", child_busy.clone());
        let db_connections = Family::<ChildLabels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        registry.register(
            "db_connections",
            "Database connections each child holds open now (counted from the operating system's socket table)",
            db_connections.clone(),
        );
        let db_connections_limit = Family::<ChildLabels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        registry.register(
            "db_connections_limit",
            "The most database connections each child opens (its share of its pool's part of connection-limit)",
            db_connections_limit.clone(),
        );
        let db_budget = Gauge::default();
        registry.register(
            "db_connection_budget",
            "The most database connections this replica's children open together ([serve.limits] connection-limit)",
            db_budget.clone(),
        );
        let db_granted = Gauge::default();
        registry.register(
            "db_connections_granted",
            "The part of the connection budget running pools hold (what their children may open)",
            db_granted.clone(),
        );
        let tls_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served TLS certificate expires (Unix time; 0 when pdp serves plain HTTP)",
            tls_expiry.clone(),
        );
        let start_time = Gauge::default();
        registry.register("start_time_seconds", "When this pdp serve started (Unix time)", start_time.clone());
        start_time.set(i64::try_from(unix_now()).unwrap_or(0));
        // Series that exist from the start at 0, so dashboards and alerts see "none yet" rather than nothing.
        for event in CACHE_EVENTS {
            let _ = cache.get_or_create(&CacheLabels { event });
        }
        for reason in ["idle", "header_timeout", "tls_handshake"] {
            let _ = connections_closed.get_or_create(&ReasonLabels { reason });
        }
        Metrics {
            transactions_abandoned,
            child_busy,
            db_connections,
            db_connections_limit,
            db_budget,
            db_granted,
            tls_expiry,
            start_time,
            window: crate::window::Window::new(),
            child_series: std::sync::Mutex::new(Vec::new()),
            meters: std::sync::RwLock::new(Vec::new()),
            registry,
            peer,
            cache,
            cache_entries,
            cache_bytes,
            requests,
            latency,
            in_flight,
            open_transactions,
            starts,
            restarts,
            running,
            auth_failures,
            connections,
            connections_max,
            connections_closed,
        }
    }

    /// Counts one answered request: `pdp_requests_total`, `pdp_request_duration_seconds` and the status
    /// page's window.
    pub fn answered(&self, route: &'static str, status: u16, elapsed: std::time::Duration) {
        // Routes are `&'static str`s: the address settles it almost always, the text when two are alike.
        let same = |m: &Meter| m.status == status && (std::ptr::eq(m.route, route) || m.route == route);
        let observe = |m: &Meter| {
            m.count.inc();
            m.latency.observe(elapsed.as_secs_f64());
        };
        let found = {
            let meters = self.meters.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            meters.iter().find(|m| same(m)).map(observe).is_some()
        };
        if !found {
            let mut meters = self.meters.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !meters.iter().any(same) {
                meters.push(Meter {
                    route,
                    status,
                    count: self.requests.get_or_create(&RequestLabels { route, status }).clone(),
                    latency: self.latency.get_or_create(&RouteLabels { route }).clone(),
                });
            }
            meters.iter().filter(|m| same(m)).for_each(observe);
        }
        self.window.record(route, status, elapsed);
    }

    /// Creates the cluster's series at 0 (a replica that has relayed nothing yet says so).
    pub fn clustered(&self) {
        for (kind, outcome) in [
            ("relay", "ok"),
            ("relay", "unreachable"),
            ("relay", "timeout"),
            ("schema", "ok"),
            ("schema", "miss"),
            ("forged", "refused"),
            ("peer", "refused"),
        ] {
            let _ = self.peer.get_or_create(&PeerLabels { kind, outcome });
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
