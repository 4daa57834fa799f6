//! The operator's view: one snapshot of this replica (`GET /status.json`: readiness as `/ready` judges
//! it, the replica and its peers, every child with its process, load, restarts and database connections
//! against its bound, open transactions by age, recent traffic by route, the cache, client connections,
//! the TLS certificate's end) and the page that shows it (`GET /status`: one HTML file in the binary, no
//! external assets, plain JavaScript polling the snapshot). `pdp status` reads the same snapshot.
//!
//! The snapshot is the one place the per-child gauges of `/metrics` are refreshed, so the page, the command
//! and Prometheus see the same counts. It never carries a secret: no key, no database URL, no transaction
//! id (an id is a capability to use the transaction).
//!
//! Deliberately not here: history beyond the window (Prometheus keeps that), actions (the page only looks).

use std::time::Duration;

use serde::Serialize;

use crate::dbconns;
use crate::dp1::Dp1;
use crate::kit::{Kit, Transactions};
use crate::metrics::{CacheLabels, ChildLabels, unix_now};
use crate::qpe::Qpe;
use crate::supervisor::ChildState;
use crate::tls;

/// The snapshot's shape version (`pdp status` checks it).
pub const FORMAT: u32 = 1;

/// The page, served as is.
pub const PAGE: &str = include_str!("status.html");

/// Everything the page and `pdp status` show.
#[derive(Serialize)]
pub struct Snapshot {
    /// [`FORMAT`].
    pub format: u32,
    /// When this was taken (Unix ms).
    pub taken_at_ms: u64,
    /// pdp's version.
    pub pdp: &'static str,
    /// `/ready`'s status and body (`ready`, `unavailable`, `draining`).
    pub ready: serde_json::Value,
    /// Seconds since start.
    pub uptime_s: u64,
    /// This replica and the others, when clustered.
    pub cluster: Option<ClusterView>,
    /// Every child, by kind, key and slot.
    pub children: Vec<ChildView>,
    /// Open interactive transactions.
    pub transactions: TxView,
    /// Requests by route over the window.
    pub traffic: TrafficView,
    /// The query cache.
    pub cache: CacheView,
    /// Database connections of all children against their bounds.
    pub database: DbView,
    /// Client connections on the main listener.
    pub clients: ClientsView,
    /// The served certificate, when TLS is on.
    pub tls: Option<TlsView>,
}

/// The replica and its peers.
#[derive(Serialize)]
pub struct ClusterView {
    /// The address peers reach it at.
    pub advertise: String,
    /// The peer list as configured.
    pub peers: Vec<String>,
    /// What the list resolves to now (a DNS name stands for every replica).
    pub resolved: Vec<String>,
    /// Entries that did not resolve.
    pub unresolved: Vec<String>,
}

/// One child.
#[derive(Serialize)]
pub struct ChildView {
    /// `executor` or `engine`.
    pub kind: &'static str,
    /// Its Prisma version (executors) or engine key.
    pub key: String,
    /// Its place in its key's pool.
    pub slot: usize,
    /// `starting`, `ready`, `failed`, `stopped`.
    pub status: &'static str,
    /// Its incarnation (1 at first start).
    pub generation: Option<u64>,
    /// Its process id, while it runs.
    pub pid: Option<u32>,
    /// Seconds it has served.
    pub uptime_s: Option<u64>,
    /// Requests it is answering.
    pub in_flight: usize,
    /// Unexpected exits.
    pub restarts: u64,
    /// Open transactions on it.
    pub transactions: usize,
    /// Database connections it holds (`None`: not countable here).
    pub db_connections: Option<usize>,
    /// The most it opens.
    pub db_connections_limit: usize,
}

/// Open transactions.
#[derive(Serialize)]
pub struct TxView {
    /// How many.
    pub open: usize,
    /// The oldest (at most 20): where each runs and its age.
    pub oldest: Vec<TxAge>,
    /// Transactions that ran out of time without an end, since start.
    pub abandoned: u64,
}

/// One open transaction, without its id.
#[derive(Serialize)]
pub struct TxAge {
    /// The child's key.
    pub child: String,
    /// Its pool slot.
    pub slot: usize,
    /// Seconds since it started.
    pub age_s: f64,
}

/// Recent traffic.
#[derive(Serialize)]
pub struct TrafficView {
    /// The seconds the rates and percentiles cover.
    pub window_s: f64,
    /// Requests answered since start (what `pdp_requests_total` sums to).
    pub requests_total: u64,
    /// Requests being answered now.
    pub in_flight: i64,
    /// Auth failures since start.
    pub auth_failures: u64,
    /// By route, the busiest first.
    pub routes: Vec<RouteView>,
}

/// One route over the window.
#[derive(Serialize)]
pub struct RouteView {
    /// Its name (`/metrics`' `route` label).
    pub route: &'static str,
    /// Requests.
    pub requests: u64,
    /// Requests per second.
    pub rate: f64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Latency percentiles, ms: the median…
    pub p50_ms: f64,
    /// …the 90th…
    pub p90_ms: f64,
    /// …and the 99th.
    pub p99_ms: f64,
}

/// The cache.
#[derive(Serialize)]
pub struct CacheView {
    /// `[serve.cache] enabled`.
    pub enabled: bool,
    /// Answers held.
    pub entries: u64,
    /// Bytes held…
    pub bytes: u64,
    /// …and the bound (`[serve.cache] max-size`).
    pub max_bytes: u64,
    /// Since start: fresh hits…
    pub hits: u64,
    /// …stale serves…
    pub stale: u64,
    /// …and misses.
    pub misses: u64,
    /// (hits + stale) / (hits + stale + misses), since start; `None` before the first cached read.
    pub hit_rate: Option<f64>,
}

/// Database connections.
#[derive(Serialize)]
pub struct DbView {
    /// Held by the running children now (`None`: not countable on this platform or database).
    pub connections: Option<usize>,
    /// What the running children may open at most.
    pub limit: usize,
    /// The replica's budget (`connection-limit`): what all children together may ever open.
    pub budget: usize,
    /// The part of it running pools hold.
    pub granted: usize,
}

/// Client connections.
#[derive(Serialize)]
pub struct ClientsView {
    /// Open now.
    pub open: i64,
    /// The most served at once.
    pub max: i64,
}

/// The certificate.
#[derive(Serialize)]
pub struct TlsView {
    /// Its end (Unix seconds).
    pub expires_at: i64,
    /// Days until then (negative: expired).
    pub days_left: f64,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What the snapshot is read from.
pub struct Sources<'a> {
    /// The proxy kit (metrics, transactions, cache, cluster).
    pub kit: &'a Kit,
    /// The executors.
    pub qpe: &'a Qpe,
    /// The engines.
    pub dp1: &'a Dp1,
    /// The served certificate, when TLS is on.
    pub tls: Option<&'a tls::Current>,
    /// Where the children's database connections go.
    pub db_target: Option<dbconns::Target>,
    /// When serving began.
    pub started: std::time::Instant,
}

impl Sources<'_> {
    /// Every child of both kinds, with its database connections counted now; refreshes the per-child
    /// gauges of `/metrics` (and the cache's and certificate's) from the same reading.
    pub fn children_now(&self) -> Vec<ChildView> {
        let metrics = &self.kit.cx.metrics;
        let txs = &self.kit.txs;
        let mut children: Vec<ChildView> =
            self.qpe.executors().iter().map(|c| child_view("executor", c.key.clone(), c, txs)).collect();
        children.extend(self.dp1.engines().iter().map(|c| child_view("engine", c.key.to_string(), c, txs)));
        let pids: Vec<u32> = children.iter().map(|c| c.pid.unwrap_or(0)).collect();
        let counts = dbconns::count(&pids, self.db_target);
        // Set every running child's series, then drop those of children gone: a scrape at the same moment
        // sees the old or the new value, never an empty family.
        let mut series = metrics.child_series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut now = Vec::new();
        for (child, n) in children.iter_mut().zip(counts) {
            if child.pid.is_none() {
                continue;
            }
            child.db_connections = n;
            let labels = ChildLabels { kind: child.kind, version: child.key.clone(), slot: child.slot.to_string() };
            metrics.child_busy.get_or_create(&labels).set(i64::try_from(child.in_flight).unwrap_or(i64::MAX));
            metrics
                .db_connections_limit
                .get_or_create(&labels)
                .set(i64::try_from(child.db_connections_limit).unwrap_or(i64::MAX));
            match n {
                Some(n) => {
                    metrics.db_connections.get_or_create(&labels).set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                None => {
                    metrics.db_connections.remove(&labels);
                }
            }
            now.push(labels);
        }
        for gone in series.iter().filter(|l| !now.contains(l)) {
            metrics.child_busy.remove(gone);
            metrics.db_connections.remove(gone);
            metrics.db_connections_limit.remove(gone);
        }
        *series = now;
        drop(series);
        let (entries, bytes) = self.kit.cache.usage();
        metrics.cache_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        metrics.cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        metrics.tls_expiry.set(self.tls.and_then(tls::Current::expires).unwrap_or(0));
        let budget = &self.kit.cx.budget;
        metrics.db_budget.set(i64::try_from(budget.total()).unwrap_or(i64::MAX));
        metrics.db_granted.set(i64::try_from(budget.granted()).unwrap_or(i64::MAX));
        children
    }

    /// The snapshot `/status.json` answers; `ready` is `/ready`'s body.
    pub async fn snapshot(&self, ready: serde_json::Value) -> Snapshot {
        let metrics = &self.kit.cx.metrics;
        let children = self.children_now();
        let cluster = match &self.kit.cluster {
            Some(c) => {
                let found = c.peers().await;
                Some(ClusterView {
                    advertise: c.me().to_string(),
                    peers: c.peer_entries().to_vec(),
                    resolved: found.addrs.iter().map(ToString::to_string).collect(),
                    unresolved: found.unresolved,
                })
            }
            None => None,
        };
        let open = self.kit.txs.list();
        let transactions = TxView {
            open: open.len(),
            oldest: open
                .iter()
                .take(20)
                .map(|t| TxAge {
                    child: t.owner.clone(),
                    slot: t.slot,
                    age_s: (t.opened.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                })
                .collect(),
            abandoned: metrics.transactions_abandoned.get(),
        };
        let summary = metrics.window.summary();
        let over = summary.over.as_secs_f64().max(1.0);
        let traffic = TrafficView {
            window_s: (summary.over.as_secs_f64() * 10.0).round() / 10.0,
            requests_total: metrics.window.total(),
            in_flight: metrics.in_flight.get(),
            auth_failures: metrics.auth_failures.get(),
            routes: summary
                .routes
                .iter()
                .map(|r| RouteView {
                    route: r.route,
                    requests: r.requests,
                    rate: (r.requests as f64 / over * 100.0).round() / 100.0,
                    server_errors: r.server_errors,
                    p50_ms: ms(r.p50),
                    p90_ms: ms(r.p90),
                    p99_ms: ms(r.p99),
                })
                .collect(),
        };
        let event = |event: &'static str| metrics.cache.get_or_create(&CacheLabels { event }).get();
        let (hits, stale, misses) = (event("hit"), event("stale"), event("miss"));
        let (entries, bytes) = self.kit.cache.usage();
        let served = hits + stale + misses;
        let cache = CacheView {
            enabled: self.kit.cache.enabled(),
            entries,
            bytes,
            max_bytes: self.kit.cx.settings.cache.max_size,
            hits,
            stale,
            misses,
            hit_rate: (served > 0).then(|| ((hits + stale) as f64 / served as f64 * 1e4).round() / 1e4),
        };
        let running: Vec<&ChildView> = children.iter().filter(|c| c.pid.is_some()).collect();
        // Children whose connections cannot be counted are left out of the sum (`None` when none can be).
        let counted: Vec<usize> = running.iter().filter_map(|c| c.db_connections).collect();
        let database = DbView {
            connections: (!counted.is_empty() || running.is_empty()).then(|| counted.iter().sum()),
            limit: running.iter().map(|c| c.db_connections_limit).sum(),
            budget: self.kit.cx.budget.total(),
            granted: self.kit.cx.budget.granted(),
        };
        let tls = self.tls.and_then(tls::Current::expires).map(|at| TlsView {
            expires_at: at,
            days_left: ((at as f64 - unix_now() as f64) / 86_400.0 * 10.0).round() / 10.0,
        });
        Snapshot {
            format: FORMAT,
            taken_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            pdp: env!("CARGO_PKG_VERSION"),
            ready,
            uptime_s: self.started.elapsed().as_secs(),
            cluster,
            children,
            transactions,
            traffic,
            cache,
            database,
            clients: ClientsView { open: metrics.connections.get(), max: metrics.connections_max.get() },
            tls,
        }
    }
}

fn child_view<K>(kind: &'static str, key: String, c: &ChildState<K>, txs: &Transactions) -> ChildView {
    ChildView {
        kind,
        transactions: txs.open_on(&key, c.slot),
        key,
        slot: c.slot,
        status: c.status,
        generation: c.endpoint.as_ref().map(|e| e.generation),
        pid: c.running.map(|(pid, _)| pid),
        uptime_s: c.running.map(|(_, up)| up.as_secs()),
        in_flight: c.busy,
        restarts: c.restarts,
        db_connections: None,
        db_connections_limit: c.connection_limit,
    }
}
