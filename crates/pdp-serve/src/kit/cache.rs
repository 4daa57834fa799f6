//! Accelerate's query cache, self-hosted: what a request's `cache-control` and `accelerate-cache-tags`
//! ask ([`asked`]), read results kept by key for `ttl` and served stale for `swr` more while one background
//! refresh runs ([`Cache::lookup`]), concurrent misses of one key sharing one query ([`Cache::join`]),
//! memory bounded by `[serve.cache] max-size` (least recently used out), and invalidation by tag or all
//! ([`Cache::invalidate`]) that no later read can miss: every entry remembers the invalidation epoch its
//! query started in, and is dead once one of its tags (or everything) was invalidated after that.
//!
//! Deliberately not here: deciding what is a read (the routers know their protocol: only reads outside
//! transactions reach the cache), forwarding, reaching other replicas (the dispatcher sends invalidations
//! to the peers).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tokio::sync::watch;

use super::respond::{Body, full};
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{CacheLabels, Metrics};

/// Tags per query or per invalidation, and characters per tag, as the extension documents them.
pub const MAX_TAGS: usize = 5;
/// Characters per tag.
pub const MAX_TAG_LEN: usize = 64;
/// The longest `max-age` or `stale-while-revalidate` honoured: a year.
const MAX_SECONDS: u64 = 365 * 24 * 3600;
/// Past this many distinct invalidated tags remembered, an invalidation counts as one of everything.
const MAX_TAG_EPOCHS: usize = 10_000;

/// A cache key: everything that changes the answer, whole (the small parts each behind its length, then
/// the request's body), and a 64-bit hash of it under a per-process random seed. Keys are equal only when
/// their bytes are: the hash finds the entry and the bytes confirm it, so no two queries can share an
/// answer, however their hashes meet. A lookup's key shares the request's body; a key that is kept owns a
/// copy of exactly its bytes ([`Key::owned`]), so an entry never holds a connection's read buffer.
/// (A cryptographic digest of the 1–2 KB body of a Prisma 7 query took a tenth of a cache hit's CPU.)
#[derive(Clone, Debug)]
pub struct Key {
    hash: u64,
    context: Bytes,
    body: Bytes,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.context == other.context && self.body == other.body
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Key {
    /// Bytes it holds (counted against `max-size` with its entry).
    fn len(&self) -> usize {
        self.context.len() + self.body.len()
    }

    /// The same key holding only its own bytes.
    fn owned(&self) -> Key {
        Key { hash: self.hash, context: self.context.clone(), body: Bytes::copy_from_slice(&self.body) }
    }
}

/// The key of a request's `body` in its `context` (protocol, version or engine, the database, the tags).
pub fn key(context: &[&[u8]], body: &Bytes) -> Key {
    use std::hash::{BuildHasher, Hasher};
    static SEED: std::sync::OnceLock<foldhash::quality::RandomState> = std::sync::OnceLock::new();
    let mut framed = Vec::with_capacity(context.iter().map(|p| p.len() + 8).sum());
    for p in context {
        framed.extend_from_slice(&(p.len() as u64).to_be_bytes());
        framed.extend_from_slice(p);
    }
    let mut h = SEED.get_or_init(foldhash::quality::RandomState::default).build_hasher();
    h.write(&framed);
    h.write(body);
    Key { hash: h.finish(), context: Bytes::from(framed), body: body.clone() }
}

/// A cache strategy: `ttl` fresh, then `swr` stale while revalidating; the entry's tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strategy {
    /// Served from the cache this long.
    pub ttl: Duration,
    /// Then served stale this much longer, while one refresh runs.
    pub swr: Duration,
    /// Tags an invalidation can name.
    pub tags: Vec<String>,
}

impl Strategy {
    /// The tags as part of a key: an entry belongs to exactly the tags it was asked with, so invalidating
    /// one of them always reaches it.
    pub fn tag_key(&self) -> String {
        let mut tags = self.tags.clone();
        tags.sort();
        tags.join(",")
    }
}

/// What a request's headers ask of the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asked {
    /// No `cache-control`: not a client of the Accelerate extension; no cache headers in the answer.
    Nothing,
    /// `no-cache` (or no duration): answered straight, said `none`.
    NoCache,
    /// A strategy.
    Cache(Strategy),
}

/// Checks tags as the extension documents them: at most 5, each 1–64 of `[A-Za-z0-9_]`.
pub fn check_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for tag in tags {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "the cache tag `{}` is not 1–{MAX_TAG_LEN} letters, digits and underscores",
                tag.chars().take(80).collect::<String>().escape_default()
            ));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_owned());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(format!("{} cache tags: at most {MAX_TAGS} are allowed", out.len()));
    }
    Ok(out)
}

/// Reads `cache-control` (`max-age=N`, `stale-while-revalidate=N`, `no-cache`) and `accelerate-cache-tags`.
pub fn asked(headers: &HeaderMap) -> Result<Asked, String> {
    let Some(control) = headers.get(http::header::CACHE_CONTROL) else { return Ok(Asked::Nothing) };
    let control = control.to_str().map_err(|_| "the cache-control header is not text".to_owned())?;
    let (mut ttl, mut swr) = (None, None);
    for directive in control.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // Capped at a year: nothing is kept longer, and sums of client-given durations cannot overflow.
        let seconds = |v: &str| {
            v.parse::<u64>()
                .map(|n| Duration::from_secs(n.min(MAX_SECONDS)))
                .map_err(|_| format!("`{directive}` is not a whole number of seconds"))
        };
        match directive.split_once('=') {
            Some(("max-age", v)) => ttl = Some(seconds(v)?),
            Some(("stale-while-revalidate", v)) => swr = Some(seconds(v)?),
            _ if directive == "no-cache" => return Ok(Asked::NoCache),
            // Other directives change nothing here.
            _ => {}
        }
    }
    if ttl.is_none() && swr.is_none() {
        return Ok(Asked::NoCache);
    }
    let tags = match headers.get(super::names::ACCELERATE_CACHE_TAGS) {
        Some(v) => check_tags(
            v.to_str()
                .map_err(|_| "the accelerate-cache-tags header is not text".to_owned())?
                .split(',')
                .map(str::trim),
        )?,
        None => Vec::new(),
    };
    Ok(Asked::Cache(Strategy { ttl: ttl.unwrap_or_default(), swr: swr.unwrap_or_default(), tags }))
}

/// An answer as kept: status, content type, body.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The status.
    pub status: StatusCode,
    /// Its Content-Type.
    pub content_type: Option<HeaderValue>,
    /// The whole body.
    pub body: Bytes,
}

/// `accelerate-cache-status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Fresh from the cache.
    Ttl,
    /// Stale from the cache, refreshed in the background.
    Swr,
    /// From the database (and now cached, if it could be).
    Miss,
    /// Not cached: no strategy, not a read, in a transaction, or the cache is off.
    None,
}

impl Status {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ttl => "ttl",
            Status::Swr => "swr",
            Status::Miss => "miss",
            Status::None => "none",
        }
    }

    /// The header value, as a header.
    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

impl Stored {
    /// A child's answer read whole, within `limit` bytes and `within` (its status and Content-Type kept);
    /// `Err` says why it did not arrive whole.
    pub async fn collect<B>(resp: Response<B>, limit: u64, within: Duration) -> Result<Stored, String>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<super::respond::BoxError>,
    {
        use super::respond::BodyError;
        let (parts, body) = resp.into_parts();
        let content_type = parts.headers.get(http::header::CONTENT_TYPE).cloned();
        match super::respond::read_body(&parts.headers, body, limit, within).await {
            Ok(body) => Ok(Stored { status: parts.status, content_type, body }),
            Err(BodyError::TooLarge) => Err("length limit exceeded".into()),
            Err(BodyError::Broken(why)) => Err(why),
            Err(BodyError::Slow(_)) => Err(format!("not whole within {}s", within.as_secs())),
        }
    }

    /// The client's response: the stored answer with the cache's headers (`modified` is the
    /// Last-Modified value, [`http_date`]).
    pub fn response(&self, status: Status, modified: &HeaderValue) -> Response<Body> {
        let mut r = Response::new(full(self.body.clone()));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        // These three and the dispatcher's request id and cf-ray, without the map growing.
        h.reserve(6);
        if let Some(ct) = &self.content_type {
            h.insert(http::header::CONTENT_TYPE, ct.clone());
        }
        h.insert(super::names::ACCELERATE_CACHE_STATUS, status.header());
        h.insert(http::header::LAST_MODIFIED, modified.clone());
        r
    }
}

/// `time` as an HTTP date (Last-Modified).
pub fn http_date(time: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(time)).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

struct Entry {
    stored: Stored,
    at: Instant,
    /// Last-Modified, formatted once.
    modified: HeaderValue,
    ttl: Duration,
    swr: Duration,
    tags: Box<[String]>,
    epoch: u64,
}

impl Entry {
    fn size(&self) -> u32 {
        // The body, and what the entry and its key hold besides.
        u32::try_from(self.stored.body.len() + self.tags.iter().map(String::len).sum::<usize>() + 160)
            .unwrap_or(u32::MAX)
    }
}

struct Lifetime;

impl moka::Expiry<Key, Arc<Entry>> for Lifetime {
    fn expire_after_create(&self, _: &Key, e: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(e.ttl + e.swr)
    }
    fn expire_after_update(&self, _: &Key, e: &Arc<Entry>, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(e.ttl + e.swr)
    }
}

#[derive(Default)]
struct Epochs {
    /// The epoch of the last invalidation of everything.
    all: u64,
    /// The epoch of each tag's last invalidation.
    tags: HashMap<String, u64>,
}

/// What a lookup found.
pub enum Lookup {
    /// Fresh, with its Last-Modified.
    Fresh(Stored, HeaderValue),
    /// Stale within `swr`; `refresh` says this request is the one to start the refresh.
    Stale(Stored, HeaderValue, bool),
    /// Nothing usable.
    Miss,
}

/// Where a miss's leader hands its answer to the followers.
type Answer = watch::Sender<Option<Arc<Stored>>>;

/// A miss's part: the first runs the query, the rest wait for its answer.
pub enum Flight<'c> {
    /// Run the query, then [`Leader::finish`].
    Leader(Leader<'c>),
    /// Wait for the leader's answer: `None` if it gave up (its client went away); then try again.
    Follower(watch::Receiver<Option<Arc<Stored>>>),
}

/// The request that runs a miss's query; dropping it without finishing lets a follower take over.
pub struct Leader<'c> {
    cache: &'c Cache,
    slot: (Key, u64),
    tx: Answer,
    epoch: u64,
}

impl Leader<'_> {
    /// Hands `stored` to the followers and keeps it under `strategy` if `cacheable`.
    pub fn finish(self, stored: &Stored, strategy: &Strategy, cacheable: bool) {
        if cacheable {
            self.cache.store(self.slot.0.clone(), stored.clone(), strategy, self.epoch);
        }
        self.tx.send_replace(Some(Arc::new(stored.clone())));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.cache.inflight.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.slot);
    }
}

/// The cache of one replica.
pub struct Cache {
    entries: moka::sync::Cache<Key, Arc<Entry>>,
    epoch: AtomicU64,
    epochs: Mutex<Epochs>,
    inflight: Mutex<HashMap<(Key, u64), Answer>>,
    refreshing: Mutex<HashSet<Key>>,
    enabled: bool,
    /// The longest a query may take (a follower's wait, a refresh): `query-timeout` and some.
    query_limit: Duration,
    /// `pdp_cache_events_total`'s series, taken from the family once (a hit costs no label lookup).
    events: Vec<(&'static str, Counter)>,
}

impl Cache {
    /// A cache of at most `max_bytes`; `enabled = false` keeps nothing (every answer says `none`);
    /// `query_limit` bounds a follower's wait for its leader and a background refresh.
    pub fn new(enabled: bool, max_bytes: u64, query_limit: Duration, metrics: Arc<Metrics>) -> Cache {
        let evictions = metrics.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Key, e: &Arc<Entry>| e.size().saturating_add(u32::try_from(k.len()).unwrap_or(u32::MAX)))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .expire_after(Lifetime)
            .support_invalidation_closures()
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.cache.get_or_create(&CacheLabels { event: "eviction" }).inc();
                }
            })
            .build();
        Cache {
            entries,
            epoch: AtomicU64::new(0),
            epochs: Mutex::new(Epochs::default()),
            inflight: Mutex::new(HashMap::new()),
            refreshing: Mutex::new(HashSet::new()),
            enabled,
            query_limit,
            events: crate::metrics::CACHE_EVENTS
                .into_iter()
                .map(|event| (event, metrics.cache.get_or_create(&CacheLabels { event }).clone()))
                .collect(),
        }
    }

    /// Whether `[serve.cache] enabled`.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn count(&self, event: &'static str) {
        if let Some((_, counter)) = self.events.iter().find(|(e, _)| *e == event) {
            counter.inc();
        }
    }

    fn alive(&self, e: &Entry) -> bool {
        let epochs = self.epochs.lock().unwrap_or_else(PoisonError::into_inner);
        e.epoch >= epochs.all && e.tags.iter().all(|t| epochs.tags.get(t).is_none_or(|at| e.epoch >= *at))
    }

    /// What is kept for `key` now, judged by the asking request's own `strategy` within the entry's (a
    /// request that accepts less staleness gets no older an answer).
    pub fn lookup(&self, key: &Key, strategy: &Strategy) -> Lookup {
        let Some(e) = self.entries.get(key) else { return Lookup::Miss };
        if !self.alive(&e) {
            self.entries.invalidate(key);
            return Lookup::Miss;
        }
        let age = e.at.elapsed();
        let ttl = e.ttl.min(strategy.ttl);
        let stale = (e.ttl + e.swr).min(strategy.ttl + strategy.swr);
        if age < ttl {
            self.count("hit");
            return Lookup::Fresh(e.stored.clone(), e.modified.clone());
        }
        if age < stale {
            self.count("stale");
            let refresh = self.refreshing.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone());
            return Lookup::Stale(e.stored.clone(), e.modified.clone(), refresh);
        }
        Lookup::Miss
    }

    /// Joins the query for a missed `key`: the first request since the last invalidation leads, the
    /// others follow it.
    pub fn join(&self, key: Key) -> Flight<'_> {
        self.count("miss");
        let epoch = self.epoch.load(Ordering::Acquire);
        let slot = (key, epoch);
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = inflight.get(&slot) {
            return Flight::Follower(tx.subscribe());
        }
        let tx = watch::Sender::new(None);
        inflight.insert(slot.clone(), tx.clone());
        self.count("fill");
        Flight::Leader(Leader { cache: self, slot, tx, epoch })
    }

    /// The epoch a refresh starting now belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps the answer of a refresh of `key` that started in `epoch` (`None`: it failed; the stale
    /// entry stays until its time is up).
    pub fn refreshed(&self, key: Key, stored: Option<&Stored>, strategy: &Strategy, epoch: u64) {
        self.refreshing.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
        self.count("refresh");
        if let Some(stored) = stored {
            self.store(key, stored.clone(), strategy, epoch);
        }
    }

    fn store(&self, key: Key, stored: Stored, strategy: &Strategy, epoch: u64) {
        if strategy.ttl + strategy.swr == Duration::ZERO {
            return;
        }
        let entry = Entry {
            stored,
            at: Instant::now(),
            modified: http_date(SystemTime::now()),
            ttl: strategy.ttl,
            swr: strategy.swr,
            tags: strategy.tags.clone().into_boxed_slice(),
            epoch,
        };
        if self.alive(&entry) {
            self.entries.insert(key.owned(), Arc::new(entry));
        }
    }

    /// Invalidates the entries of `tags` (`None`: every entry): no read after this returns finds them, and
    /// no query that started before it is kept.
    pub fn invalidate(&self, tags: Option<&[String]>) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        {
            let mut epochs = self.epochs.lock().unwrap_or_else(PoisonError::into_inner);
            match tags {
                Some(tags) if epochs.tags.len() + tags.len() <= MAX_TAG_EPOCHS => {
                    for t in tags {
                        epochs.tags.insert(t.clone(), epoch);
                    }
                }
                _ => {
                    epochs.all = epoch;
                    epochs.tags.clear();
                }
            }
        }
        self.count("invalidation");
        // Free the memory now (reads already see them dead).
        match tags {
            Some(tags) => {
                let tags: Vec<String> = tags.to_vec();
                let _ = self.entries.invalidate_entries_if(move |_, e| e.tags.iter().any(|t| tags.contains(t)));
            }
            None => self.entries.invalidate_all(),
        }
    }

    /// Entries and bytes held now, for `/metrics`.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

/// A query as the cache runs it: the answer whole, or the response to give instead (nothing to share).
pub type Fetched = Result<Stored, Response<Body>>;

/// The background refresh of a stale entry: runs on its own, after the request that started it answered.
pub type Refresh = std::pin::Pin<Box<dyn std::future::Future<Output = Fetched> + Send + 'static>>;

impl Cache {
    /// Answers a request under `strategy`: fresh or stale from the cache (a stale one refreshed once, by
    /// `refresh`, in the background), or, if `is_read` says it is a read, by `fetch`, run once for every
    /// request of this key that misses at this moment (a follower whose leader's client went away runs it
    /// itself). `None`: not a read, not for the cache. `is_read` runs on a miss only: an entry exists only
    /// for a body that was a read, and the key covers the body.
    pub async fn serve<F, Fut>(
        self: &Arc<Self>,
        key: Key,
        strategy: Strategy,
        is_read: impl FnOnce() -> bool,
        mut fetch: F,
        refresh: impl FnOnce() -> Refresh,
    ) -> Option<Response<Body>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Fetched>,
    {
        match self.lookup(&key, &strategy) {
            Lookup::Fresh(stored, modified) => return Some(stored.response(Status::Ttl, &modified)),
            Lookup::Stale(stored, modified, start) => {
                if start {
                    let (cache, epoch, run) = (self.clone(), self.epoch(), refresh());
                    let limit = self.query_limit;
                    tokio::spawn(async move {
                        // Bounded, so that the key is always released for the next refresh.
                        let done = tokio::time::timeout(limit, run).await.ok().and_then(Result::ok);
                        let kept = done.filter(|s| is_clean_answer(s.status, &s.body));
                        cache.refreshed(key, kept.as_ref(), &strategy, epoch);
                    });
                }
                return Some(stored.response(Status::Swr, &modified));
            }
            Lookup::Miss if !is_read() => return None,
            Lookup::Miss => {}
        }
        {
            match self.join(key) {
                Flight::Leader(leader) => {
                    return Some(match fetch().await {
                        Ok(stored) => {
                            leader.finish(&stored, &strategy, is_clean_answer(stored.status, &stored.body));
                            stored.response(Status::Miss, &http_date(SystemTime::now()))
                        }
                        // Nothing answered to share: the followers run it themselves.
                        Err(resp) => resp,
                    });
                }
                Flight::Follower(mut rx) => {
                    let waited = tokio::time::timeout(self.query_limit, rx.wait_for(Option::is_some)).await;
                    let answer = waited.ok().and_then(Result::ok).and_then(|v| v.clone());
                    if let Some(stored) = answer {
                        return Some(stored.response(Status::Miss, &http_date(SystemTime::now())));
                    }
                    // The leader's query failed or its client went away: run it now rather than queue
                    // behind another leader (its answer is not kept: the next miss leads again).
                    return Some(match fetch().await {
                        Ok(stored) => stored.response(Status::Miss, &http_date(SystemTime::now())),
                        Err(resp) => resp,
                    });
                }
            }
        }
    }
}

/// Reads a JSON body's top level: whether it is an answer worth keeping (no `errors`).
pub fn is_clean_answer(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::OK
        && serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.as_object().map(|o| !o.contains_key("errors")))
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key of `parts` around an empty JSON body.
    fn tkey(parts: &[&[u8]]) -> Key {
        key(parts, &Bytes::from_static(b"{}"))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn stored(text: &str) -> Stored {
        Stored { status: StatusCode::OK, content_type: None, body: Bytes::from(text.to_owned()) }
    }

    fn strategy(ttl: u64, swr: u64, tags: &[&str]) -> Strategy {
        Strategy {
            ttl: Duration::from_secs(ttl),
            swr: Duration::from_secs(swr),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn the_headers_the_extension_sends_are_read_and_bad_tags_refused() {
        assert_eq!(asked(&HeaderMap::new()), Ok(Asked::Nothing));
        assert_eq!(asked(&headers(&[("cache-control", "no-cache")])), Ok(Asked::NoCache));
        assert_eq!(
            asked(&headers(&[
                ("cache-control", "max-age=60,stale-while-revalidate=30"),
                ("accelerate-cache-tags", "users,posts")
            ])),
            Ok(Asked::Cache(strategy(60, 30, &["users", "posts"])))
        );
        assert_eq!(
            asked(&headers(&[("cache-control", "stale-while-revalidate=5")])),
            Ok(Asked::Cache(strategy(0, 5, &[])))
        );
        assert!(asked(&headers(&[("cache-control", "max-age=soon")])).unwrap_err().contains("max-age=soon"));
        let six = headers(&[("cache-control", "max-age=1"), ("accelerate-cache-tags", "a,b,c,d,e,f")]);
        assert!(asked(&six).unwrap_err().contains("at most 5"));
        let bad = headers(&[("cache-control", "max-age=1"), ("accelerate-cache-tags", "no-dashes")]);
        assert!(asked(&bad).unwrap_err().contains("no-dashes"));
        assert!(check_tags([&*"x".repeat(65)]).is_err());
        // Client-given durations are capped: their sum never overflows.
        let huge = headers(&[("cache-control", "max-age=18446744073709551615,stale-while-revalidate=1")]);
        let Ok(Asked::Cache(s)) = asked(&huge) else { panic!("a strategy") };
        assert_eq!(s.ttl, Duration::from_secs(MAX_SECONDS));
        let _ = s.ttl + s.swr;
        assert_eq!(check_tags(["a_1", "a_1"]), Ok(vec!["a_1".to_owned()]));
    }

    #[tokio::test]
    async fn a_miss_is_run_once_then_fresh_then_stale_with_one_refresh() {
        let cache = Cache::new(true, 1 << 20, Duration::from_secs(5), Arc::new(Metrics::new()));
        let k = tkey(&[b"t", b"q"]);
        let s60 = strategy(0, 60, &[]);
        assert!(matches!(cache.lookup(&k, &s60), Lookup::Miss));
        let Flight::Leader(leader) = cache.join(k.clone()) else { panic!("first is the leader") };
        let Flight::Follower(mut rx) = cache.join(k.clone()) else { panic!("second follows") };
        leader.finish(&stored("{\"data\":1}"), &strategy(0, 60, &[]), true);
        rx.wait_for(Option::is_some).await.expect("the answer");
        assert_eq!(rx.borrow().as_ref().map(|s| s.body.clone()), Some(Bytes::from_static(b"{\"data\":1}")));
        // ttl 0, swr 60: stale at once; only the first stale read starts the refresh.
        assert!(matches!(cache.lookup(&k, &s60), Lookup::Stale(_, _, true)));
        assert!(matches!(cache.lookup(&k, &s60), Lookup::Stale(_, _, false)));
        // A request that takes no stale answer gets none.
        assert!(matches!(cache.lookup(&k, &strategy(0, 0, &[])), Lookup::Miss));
        cache.refreshed(k.clone(), Some(&stored("{\"data\":2}")), &strategy(60, 0, &[]), cache.epoch());
        assert!(matches!(cache.lookup(&k, &strategy(60, 0, &[])), Lookup::Fresh(..)));
        match cache.lookup(&k, &s60) {
            // The asker's ttl is 0: the refreshed entry is stale to it.
            Lookup::Stale(s, ..) => assert_eq!(s.body, Bytes::from_static(b"{\"data\":2}")),
            _ => panic!("the refreshed entry"),
        }
    }

    #[tokio::test]
    async fn invalidation_kills_tagged_entries_and_queries_that_started_before_it() {
        let cache = Cache::new(true, 1 << 20, Duration::from_secs(5), Arc::new(Metrics::new()));
        let (users, posts) = (tkey(&[b"users"]), tkey(&[b"posts"]));
        for (k, tag) in [(users.clone(), "users"), (posts.clone(), "posts")] {
            let Flight::Leader(l) = cache.join(k) else { panic!() };
            l.finish(&stored("{}"), &strategy(60, 0, &[tag]), true);
        }
        // A query for `users` in flight when `users` is invalidated: its answer is not kept.
        let Flight::Leader(late) = cache.join(tkey(&[b"late"])) else { panic!() };
        cache.invalidate(Some(&["users".to_owned()]));
        let any = strategy(60, 0, &[]);
        assert!(matches!(cache.lookup(&users, &any), Lookup::Miss));
        assert!(matches!(cache.lookup(&posts, &any), Lookup::Fresh(..)));
        late.finish(&stored("{}"), &strategy(60, 0, &["users"]), true);
        assert!(matches!(cache.lookup(&tkey(&[b"late"]), &any), Lookup::Miss));
        // A request after the invalidation does not follow a flight from before it.
        let Flight::Leader(_old) = cache.join(tkey(&[b"x"])) else { panic!() };
        cache.invalidate(None);
        assert!(matches!(cache.join(tkey(&[b"x"])), Flight::Leader(_)));
        assert!(matches!(cache.lookup(&posts, &any), Lookup::Miss));
    }

    #[test]
    fn keys_are_equal_only_when_their_bytes_are() {
        assert_eq!(tkey(&[b"qpe", b"7.10.0", b"{}"]), tkey(&[b"qpe", b"7.10.0", b"{}"]));
        // The parts are framed by their lengths: moving a byte between two parts is another key.
        assert_ne!(tkey(&[b"ab", b"c"]), tkey(&[b"a", b"bc"]));
        assert_ne!(key(&[b"a"], &Bytes::from_static(b"bc")), key(&[b"ab"], &Bytes::from_static(b"c")));
        // A kept key owns a copy of its body: an entry never pins the buffer the request was read into.
        let read_buffer = Bytes::from(vec![b'x'; 4096]);
        let asked = key(&[b"qpe"], &read_buffer.slice(10..20));
        let kept = asked.owned();
        assert_eq!(kept, asked);
        assert_ne!(kept.body.as_ptr(), asked.body.as_ptr());
        // …and what the cache stores is that copy.
        let cache = Cache::new(true, 1 << 20, Duration::from_secs(5), Arc::new(Metrics::new()));
        let Flight::Leader(l) = cache.join(asked.clone()) else { panic!() };
        l.finish(&stored("{\"data\":1}"), &strategy(60, 0, &[]), true);
        let held: Vec<_> = cache.entries.iter().map(|(k, _)| k.body.as_ptr()).collect();
        assert_eq!(held.len(), 1);
        assert_ne!(held[0], asked.body.as_ptr(), "an entry never holds the request's read buffer");
        // A key whose hash meets another's is still another key (forged here: the hashes are seeded).
        let (a, b) = (tkey(&[b"one"]), tkey(&[b"two"]));
        let forged = Key { hash: a.hash, context: b.context.clone(), body: b.body.clone() };
        assert_ne!(a, forged);
        let cache = Cache::new(true, 1 << 20, Duration::from_secs(5), Arc::new(Metrics::new()));
        let Flight::Leader(l) = cache.join(a.clone()) else { panic!() };
        l.finish(&stored("{\"data\":1}"), &strategy(60, 0, &[]), true);
        assert!(matches!(cache.lookup(&a, &strategy(60, 0, &[])), Lookup::Fresh(..)));
        assert!(matches!(cache.lookup(&forged, &strategy(60, 0, &[])), Lookup::Miss), "a hash match alone is no hit");
    }

    #[test]
    fn memory_is_bounded_and_the_least_recently_used_goes() {
        let metrics = Arc::new(Metrics::new());
        let cache = Cache::new(true, 10_000, Duration::from_secs(5), metrics.clone());
        for i in 0..100u32 {
            let Flight::Leader(l) = cache.join(tkey(&[&i.to_be_bytes()])) else { panic!() };
            l.finish(&stored(&"x".repeat(1000)), &strategy(60, 0, &[]), true);
        }
        let (entries, bytes) = cache.usage();
        assert!(bytes <= 10_000, "{bytes} bytes");
        assert!(entries < 100 && entries > 0, "{entries}");
        assert!(metrics.render().contains("pdp_cache_events_total{event=\"eviction\"}"), "{}", metrics.render());
    }

    #[test]
    fn only_clean_answers_are_kept() {
        assert!(is_clean_answer(StatusCode::OK, br#"{"data":{"findManyUser":[]}}"#));
        assert!(!is_clean_answer(StatusCode::OK, br#"{"errors":[{"error":"x"}]}"#));
        assert!(!is_clean_answer(StatusCode::BAD_REQUEST, br#"{"data":1}"#));
        assert!(!is_clean_answer(StatusCode::OK, b"not json"));
    }
}
