//! Recent traffic by route for the status page and `pdp status`: requests, server errors and latency
//! percentiles over the last minutes, kept as a ring of 10-second slices of log-scale latency counts (each
//! bucket about 9 % wide, so a percentile is its bucket's upper edge: never under the truth, at most 9 %
//! over). Also the count of every request since start, the figure `/metrics`' `pdp_requests_total` sums to.
//!
//! Deliberately not here: long-term history (Prometheus keeps it from `/metrics`), per-key or per-model
//! rows (unbounded), exact percentiles (a histogram of all samples would cost memory per request).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One slice's length.
const SLICE: Duration = Duration::from_secs(10);
/// Slices kept: 5 minutes.
const SLICES: usize = 30;
/// Buckets per doubling of latency.
const PER_DOUBLING: f64 = 8.0;
/// The first bucket's upper edge (10 µs); buckets reach past 10 minutes.
const FIRST_EDGE_US: f64 = 10.0;
const BUCKETS: usize = 208;

/// The window reported: its length and its routes' figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// What the rates and percentiles are over (shorter than the window while pdp is young).
    pub over: Duration,
    /// By route, the busiest first.
    pub routes: Vec<RouteSummary>,
}

/// One route over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSummary {
    /// The route's name, as `/metrics` labels it.
    pub route: &'static str,
    /// Requests answered.
    pub requests: u64,
    /// Of those, answered with a 5xx status.
    pub server_errors: u64,
    /// Latency percentiles as upper bucket edges: the median…
    pub p50: Duration,
    /// …the 90th…
    pub p90: Duration,
    /// …and the 99th.
    pub p99: Duration,
}

struct RouteCounts {
    route: &'static str,
    requests: u64,
    server_errors: u64,
    buckets: Box<[u32; BUCKETS]>,
}

/// `route`'s counts in `routes`, added at zero when missing. A handful of routes: a scan comparing the
/// name's address first (one `&'static str` per route) beats hashing.
fn counts_of<'r>(routes: &'r mut Vec<RouteCounts>, route: &'static str) -> &'r mut RouteCounts {
    match routes.iter().position(|r| std::ptr::eq(r.route, route) || r.route == route) {
        Some(i) => &mut routes[i],
        None => {
            routes.push(RouteCounts { route, requests: 0, server_errors: 0, buckets: Box::new([0; BUCKETS]) });
            routes.last_mut().unwrap_or_else(|| unreachable!("just pushed"))
        }
    }
}

#[derive(Default)]
struct Slice {
    /// Which 10-second slice since start these counts are of.
    index: u64,
    routes: Vec<RouteCounts>,
}

/// Recent traffic, shared by every connection.
pub struct Window {
    started: Instant,
    /// One lock per slice: a request locks the current one only, and a summary each in turn, briefly.
    slices: Vec<Mutex<Slice>>,
    total: AtomicU64,
}

impl Default for Window {
    fn default() -> Self {
        Window::new()
    }
}

fn bucket(elapsed: Duration) -> usize {
    let us = elapsed.as_secs_f64() * 1e6;
    if us <= FIRST_EDGE_US {
        return 0;
    }
    // Upper edge of bucket i: FIRST_EDGE_US · 2^(i / PER_DOUBLING).
    let i = ((us / FIRST_EDGE_US).log2() * PER_DOUBLING).ceil();
    (i as usize).min(BUCKETS - 1)
}

fn edge(i: usize) -> Duration {
    Duration::from_secs_f64(FIRST_EDGE_US * 2f64.powf(i as f64 / PER_DOUBLING) / 1e6)
}

impl Window {
    /// An empty window starting now.
    pub fn new() -> Window {
        Window {
            started: Instant::now(),
            slices: (0..SLICES).map(|_| Mutex::new(Slice::default())).collect(),
            total: AtomicU64::new(0),
        }
    }

    /// The longest span a summary covers.
    pub fn span() -> Duration {
        SLICE * SLICES as u32
    }

    /// Counts one answered request.
    pub fn record(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.record_at(self.started.elapsed(), route, status, elapsed);
    }

    fn record_at(&self, age: Duration, route: &'static str, status: u16, elapsed: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let index = (age.as_millis() / SLICE.as_millis()) as u64;
        let b = bucket(elapsed);
        let mut slice = self.slices[(index % SLICES as u64) as usize].lock().unwrap_or_else(PoisonError::into_inner);
        if slice.index != index {
            slice.index = index;
            slice.routes.clear();
        }
        let counts = counts_of(&mut slice.routes, route);
        counts.requests += 1;
        counts.server_errors += u64::from(status >= 500);
        counts.buckets[b] = counts.buckets[b].saturating_add(1);
    }

    /// Requests answered since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The routes over the last `SLICES` slices (the current one partly).
    pub fn summary(&self) -> Summary {
        self.summary_at(self.started.elapsed())
    }

    fn summary_at(&self, age: Duration) -> Summary {
        let now = (age.as_millis() / SLICE.as_millis()) as u64;
        let oldest = now.saturating_sub(SLICES as u64 - 1);
        let over = age
            .min(SLICE * (now - oldest) as u32 + Duration::from_millis((age.as_millis() % SLICE.as_millis()) as u64));
        let mut merged: Vec<RouteCounts> = Vec::new();
        for slice in &self.slices {
            let slice = slice.lock().unwrap_or_else(PoisonError::into_inner);
            if slice.index < oldest || slice.index > now || slice.routes.is_empty() {
                continue;
            }
            for r in &slice.routes {
                let into = counts_of(&mut merged, r.route);
                into.requests += r.requests;
                into.server_errors += r.server_errors;
                for (a, b) in into.buckets.iter_mut().zip(r.buckets.iter()) {
                    *a = a.saturating_add(*b);
                }
            }
        }
        let mut routes: Vec<RouteSummary> = merged
            .iter()
            .map(|m| RouteSummary {
                route: m.route,
                requests: m.requests,
                server_errors: m.server_errors,
                p50: percentile(&m.buckets, m.requests, 0.50),
                p90: percentile(&m.buckets, m.requests, 0.90),
                p99: percentile(&m.buckets, m.requests, 0.99),
            })
            .collect();
        routes.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.route.cmp(b.route)));
        Summary { over, routes }
    }
}

/// The upper edge of the bucket holding the `q`-th of `n` samples.
fn percentile(buckets: &[u32; BUCKETS], n: u64, q: f64) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    let rank = ((n as f64 * q).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (i, c) in buckets.iter().enumerate() {
        seen += u64::from(*c);
        if seen >= rank {
            return edge(i);
        }
    }
    edge(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_a_latency_from_above_within_a_tenth() {
        for us in [1u64, 10, 11, 95, 1_000, 4_321, 250_000, 3_000_000, 60_000_000] {
            let d = Duration::from_micros(us);
            let e = edge(bucket(d));
            assert!(e >= d || us <= 10, "{us} µs: edge {e:?}");
            assert!(e.as_secs_f64() <= d.as_secs_f64().max(10e-6) * 1.095, "{us} µs: edge {e:?} too far");
        }
        assert_eq!(bucket(Duration::from_secs(100_000)), BUCKETS - 1);
    }

    #[test]
    fn percentiles_counts_and_errors_by_route() {
        let w = Window::new();
        for i in 1..=100u64 {
            w.record("qpe_query", if i % 10 == 0 { 502 } else { 200 }, Duration::from_millis(i));
        }
        w.record("health", 200, Duration::from_micros(50));
        let s = w.summary();
        assert_eq!(w.total(), 101);
        assert_eq!(s.routes.len(), 2);
        let q = &s.routes[0];
        assert_eq!((q.route, q.requests, q.server_errors), ("qpe_query", 100, 10));
        for (p, want) in [(q.p50, 50.0), (q.p90, 90.0), (q.p99, 99.0)] {
            let ms = p.as_secs_f64() * 1e3;
            assert!(ms >= want && ms <= want * 1.095, "{ms} ms for {want}");
        }
        assert_eq!(s.routes[1].requests, 1);
    }

    #[test]
    fn old_slices_leave_the_window_and_a_reused_slice_starts_empty() {
        let w = Window::new();
        w.record_at(Duration::ZERO, "health", 200, Duration::from_millis(1));
        w.record_at(Duration::from_secs(15), "ready", 200, Duration::from_millis(1));
        let s = w.summary_at(Duration::from_secs(20));
        assert_eq!(s.over, Duration::from_secs(20));
        assert_eq!(s.routes.len(), 2);
        // Five minutes on, the first slice has left the window; the second is its last one.
        let s = w.summary_at(Window::span() + Duration::from_secs(5));
        assert_eq!(s.routes.iter().map(|r| r.route).collect::<Vec<_>>(), ["ready"]);
        assert_eq!(s.over, Window::span() - Duration::from_secs(5), "29 whole slices and 5 s of the current");
        // The ring's first place taken by a new slice: the old counts are gone.
        w.record_at(Window::span() + Duration::from_secs(1), "metrics", 200, Duration::from_millis(1));
        let s = w.summary_at(Window::span() + Duration::from_secs(20));
        assert_eq!(s.routes.iter().map(|r| r.route).collect::<Vec<_>>(), ["metrics"]);
        assert_eq!(w.total(), 3);
    }
}
