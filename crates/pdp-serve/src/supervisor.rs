//! Supervision of the children that answer queries (query-plan executors now, query engines for 4.x–6.x):
//! a pool of children per key (as many as the [`Launch`] says; each started, supervised and restarted on its
//! own, so one crashing never stops the others), started on first use (or ahead, pinned), a request goes to
//! the least busy ready child of its key and waits while none is ready (bounded), a crashed child restarts
//! with backoff, unused pools stop after an idle time, shutdown stops them all. A pool takes its part of the
//! replica's database connection budget when it is created and gives it back when it stops; each child is
//! started with its share. With no part left, the least recently used quiet pool of this supervisor (not
//! pinned, nothing in flight or waiting, and unused for longer than a transaction lives or never up) is
//! stopped to make room; else the new pool does not start.
//!
//! The invariant: pdp never re-sends a request. If a child dies under a request, that request fails; the
//! next one waits for the restarted child. A mutation must not run twice.
//!
//! Deliberately not here: what a child is or how to provision it (a [`Launch`] says), HTTP, routing.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pdp_toolchain::launch::{self, ChildAddr, LaunchError};
use pdp_toolchain::process::Cmd;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::budget::{self, Budget, Grant, Spent};
use crate::metrics::{ChildLabels, Metrics};

/// What kind of child a supervisor runs, and how to start one.
pub trait Launch: Send + Sync + 'static {
    /// What tells children apart (a Prisma version; an engine hash and schema hash).
    type Key: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static;
    /// `executor` or `engine`, for logs and metrics.
    fn kind(&self) -> &'static str;
    /// How many children serve `key` side by side (at least 1).
    fn pool_size(&self, _key: &Self::Key) -> usize {
        1
    }
    /// Provisions what child `slot` (0-based, below [`Launch::pool_size`]) of `key` needs (may block: runs
    /// off the async threads) and returns its command; the child opens at most `connections` database
    /// connections (its share of its pool's part of the budget).
    fn prepare(&self, key: &Self::Key, slot: usize, connections: usize) -> Result<Cmd, StartError>;
    /// Reads the child's address from one of its output lines.
    fn ready(&self, line: &str) -> Option<ChildAddr> {
        launch::pdp_ready(line)
    }
    /// The route a running child answers `200` on while it is healthy (probed every
    /// [`PROBE_EVERY`]); `None`: not probed.
    fn health_path(&self) -> Option<&'static str> {
        None
    }
}

/// How often a running child's health route is asked, and how long an answer may take.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Probes in a row without an answer before a child counts as unresponsive: passed over while a pool mate
/// answers, and `/ready` says so.
const UNRESPONSIVE_AFTER: u32 = 2;
/// How long a child may stay unresponsive before it is killed and restarted (its requests fail; nothing is
/// re-sent).
pub const HUNG_KILL_AFTER: Duration = Duration::from_secs(30);

/// Why a child is not available. Shared by every request that waited for it.
#[derive(Clone, Debug)]
pub struct StartError {
    /// The sentence (with the child's framed output when it failed to start).
    pub message: String,
    /// Whether trying again cannot help (e.g. no release exists for the version).
    pub permanent: bool,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A ready child: where it listens, its place in its key's pool, and which incarnation it is (bumped on
/// every restart of that place).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its Unix socket (or, for a native query engine, its loopback port).
    pub addr: ChildAddr,
    /// Its place in the pool of its key (0-based).
    pub slot: usize,
    /// 1 for the first start, 2 after the first restart, …
    pub generation: u64,
}

/// A child picked for one request: counted busy until dropped (the pool sends the next request to the
/// least busy child).
pub struct Lease {
    /// The child.
    pub endpoint: Endpoint,
    member: Arc<Member>,
}

impl Lease {
    /// Says the child answered this request: a sign of life the health probe counts (a child busy with
    /// requests answers them even when its probe waits in line behind them).
    pub fn answered(&self) {
        let now = u64::try_from(self.member.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.member.finished_ms.store(now, Ordering::Relaxed);
    }

    /// Says the child dropped this request's connection: it is passed over for a moment (while its death
    /// is being noticed) whenever a pool mate is ready, so a dying child, which fails fast and so looks the
    /// least busy, does not attract the next requests.
    pub fn unreachable(&self) {
        let until = self.member.born.elapsed() + AVOID_AFTER_FAILURE;
        self.member.avoid_until_ms.store(u64::try_from(until.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Debug)]
enum State {
    Starting,
    Ready(Endpoint),
    Failed(Arc<StartError>, Instant),
    Stopped,
}

/// One child of a pool.
struct Member {
    state: watch::Sender<State>,
    /// Requests forwarded to it and not yet answered.
    busy: AtomicUsize,
    /// Since when this member exists (the clock `avoid_until_ms` counts on).
    born: Instant,
    /// Passed over until this many ms after `born` (a forward to it just broke off).
    avoid_until_ms: AtomicU64,
    /// The running process's id (0 while none runs) and since when it serves.
    running: Mutex<Option<(u32, Instant)>>,
    /// Times this place's child exited unexpectedly.
    restarts: AtomicU64,
    /// Its health route stopped answering (a hung process): passed over while a pool mate answers.
    unresponsive: std::sync::atomic::AtomicBool,
    /// When it last finished a request (ms after `born`).
    finished_ms: AtomicU64,
}

impl Member {
    fn new() -> Member {
        Member {
            state: watch::Sender::new(State::Starting),
            busy: AtomicUsize::new(0),
            born: Instant::now(),
            avoid_until_ms: AtomicU64::new(0),
            running: Mutex::new(None),
            restarts: AtomicU64::new(0),
            unresponsive: std::sync::atomic::AtomicBool::new(false),
            finished_ms: AtomicU64::new(0),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<(u32, Instant)>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn avoided(&self) -> bool {
        u128::from(self.avoid_until_ms.load(Ordering::Relaxed)) > self.born.elapsed().as_millis()
            || self.unresponsive.load(Ordering::Relaxed)
    }

    /// Ready and answering its health route.
    fn serving(&self) -> bool {
        matches!(&*self.state.borrow(), State::Ready(_)) && !self.unresponsive.load(Ordering::Relaxed)
    }
}

/// How long a member whose forward broke off is passed over while another is ready.
const AVOID_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// The children of one key.
struct Pool {
    members: Vec<Arc<Member>>,
    /// Bumped on every state change of any member (what a waiting request watches).
    changed: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    pinned: bool,
    last_used: Mutex<Instant>,
    /// Where the search for the least busy child starts, rotated so that equally busy children share.
    next: AtomicUsize,
    /// Its part of the connection budget, given back when the last holder of the pool lets go (its
    /// children have stopped by then).
    grant: Grant,
}

impl Pool {
    /// The most database connections member `slot` opens.
    fn connections(&self, slot: usize) -> usize {
        budget::share(self.grant.connections(), self.members.len(), slot)
    }
}

impl Pool {
    fn set(&self, member: &Member, state: State) {
        member.state.send_replace(state);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The least busy ready member, counted busy.
    fn lease(&self) -> Option<Lease> {
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Ranked by (recently failed, busy): a member that just dropped a request comes last.
        let mut best: Option<((bool, usize), Endpoint, &Arc<Member>)> = None;
        for i in 0..n {
            let m = &self.members[(start + i) % n];
            if let State::Ready(ep) = &*m.state.borrow() {
                let rank = (m.avoided(), m.busy.load(Ordering::Relaxed));
                if best.as_ref().is_none_or(|(b, ..)| rank < *b) {
                    best = Some((rank, ep.clone(), m));
                }
            }
        }
        best.map(|(_, endpoint, m)| {
            m.busy.fetch_add(1, Ordering::Relaxed);
            Lease { endpoint, member: m.clone() }
        })
    }

    /// What a waiting request gets when no member is ready: the first failure, if every member failed
    /// or stopped; `None` while any may still become ready.
    fn settled_without_ready(&self) -> Option<State> {
        let mut failure = None;
        for m in &self.members {
            match &*m.state.borrow() {
                State::Ready(_) | State::Starting => return None,
                s @ State::Failed(..) => {
                    failure.get_or_insert_with(|| s.clone());
                }
                State::Stopped => {}
            }
        }
        Some(failure.unwrap_or(State::Stopped))
    }
}

/// One child as `/ready` and the metrics list it.
#[derive(Clone, Debug)]
pub struct ChildState<K> {
    /// Its key.
    pub key: K,
    /// Its place in the key's pool.
    pub slot: usize,
    /// `starting`, `ready`, `failed` or `stopped`.
    pub status: &'static str,
    /// Where it listens, when ready.
    pub endpoint: Option<Endpoint>,
    /// Requests it is answering now.
    pub busy: usize,
    /// Its process id and how long it has served, while it runs.
    pub running: Option<(u32, Duration)>,
    /// Times it exited unexpectedly and was restarted.
    pub restarts: u64,
    /// The most database connections it opens.
    pub connection_limit: usize,
}

/// Limits the supervisor works within.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a request waits for a starting child.
    pub start_timeout: Duration,
    /// Unpinned children with no request for this long are stopped.
    pub idle_timeout: Duration,
    /// How long a stopping child gets before it is killed.
    pub stop_grace: Duration,
    /// A pool unused this long has no open interactive transaction (the longest one waits
    /// `transaction-max-wait` to start and lives `transaction-max-timeout`): it may be stopped early to
    /// give its connections to a key that has none.
    pub quiet_after: Duration,
}

/// How long a permanent failure is remembered before the next request tries again.
const FAILED_MEMORY: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A child that served this long before dying restarts with the shortest backoff again.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Runs the children of one kind.
pub struct Supervisor<L: Launch> {
    launch: Arc<L>,
    timing: Timing,
    metrics: Arc<Metrics>,
    budget: Arc<Budget>,
    pools: Mutex<HashMap<L::Key, Arc<Pool>>>,
    tasks: Mutex<JoinSet<()>>,
    /// Held while a request stops a quiet pool to start its own.
    making_room: tokio::sync::Mutex<()>,
}

impl<L: Launch> Supervisor<L> {
    /// A supervisor with no children yet, its pools taking their connections from `budget` (which other
    /// supervisors may share).
    pub fn new(launch: L, timing: Timing, metrics: Arc<Metrics>, budget: Arc<Budget>) -> Arc<Self> {
        Arc::new(Supervisor {
            launch: Arc::new(launch),
            timing,
            metrics,
            budget,
            pools: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            making_room: tokio::sync::Mutex::new(()),
        })
    }

    /// How its children are launched (for checks that ask the launcher before any child starts).
    pub fn launcher(&self) -> &L {
        &self.launch
    }

    /// What kind of child this runs (`executor`, `engine`).
    pub fn kind(&self) -> &'static str {
        self.launch.kind()
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<L::Key, Arc<Pool>>> {
        self.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the children for `key` now and keeps them running regardless of use (the project's own
    /// version).
    pub fn pin(self: &Arc<Self>, key: &L::Key) {
        if let Err(spent) = self.pool(key, true) {
            tracing::error!(target: "pdp::supervisor", kind = self.launch.kind(), key = %key, "not started: {spent}");
        }
    }

    /// `key`'s pool; when the budget has nothing left, first the room a quiet pool gives back.
    async fn pool_or_make_room(self: &Arc<Self>, key: &L::Key) -> Result<Arc<Pool>, Arc<StartError>> {
        if let Ok(pool) = self.pool(key, false) {
            return Ok(pool);
        }
        // One request makes room at a time, so two new keys do not stop two pools for one part.
        let _turn = self.making_room.lock().await;
        let spent = match self.pool(key, false) {
            Ok(pool) => return Ok(pool),
            Err(spent) => spent,
        };
        if self.make_room(key).await
            && let Ok(pool) = self.pool(key, false)
        {
            return Ok(pool);
        }
        tracing::warn!(target: "pdp::supervisor", kind = self.launch.kind(), key = %key, "not started: {spent}");
        Err(Arc::new(StartError {
            message: format!("the {} for {key} cannot start: {spent}", self.launch.kind()),
            permanent: false,
        }))
    }

    /// Stops the least recently used pool nobody can be using (see `quiet` below) and waits until its
    /// children have exited, so its part of the budget is back (its connections closed with them). `false`
    /// when there is no such pool, or its children did not stop in time.
    async fn make_room(&self, for_key: &L::Key) -> bool {
        // Nobody can be using it: not pinned, no request in flight or waiting for a child (a waiter holds
        // the pool: more holders than the map and one task per member), and either unused for longer than
        // a transaction lives or with no child that ever came up (failed or crash-looping: it has no
        // transaction, and would otherwise hold its part until it is next asked for).
        let quiet = |p: &Arc<Pool>| {
            let never_up = !p.members.iter().any(|m| matches!(&*m.state.borrow(), State::Ready(_)));
            !p.pinned
                && !p.members.iter().any(|m| m.busy.load(Ordering::Relaxed) > 0)
                && Arc::strong_count(p) <= 1 + p.members.len()
                && (never_up
                    || p.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed()
                        > self.timing.quiet_after)
        };
        let victim = {
            let mut pools = self.pools();
            let oldest = pools
                .iter()
                .filter(|(k, p)| *k != for_key && quiet(p))
                .min_by_key(|(_, p)| *p.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
                .map(|(k, _)| k.clone());
            let Some(key) = oldest else { return false };
            tracing::info!(target: "pdp::supervisor", kind = self.launch.kind(), key = %key, "stopping: its connections are needed for {for_key}");
            pools.remove(&key).map(|p| (key, p))
        };
        let Some((key, pool)) = victim else { return false };
        pool.stop.send_replace(true);
        // The part returns when the last of its children's tasks lets go of the pool.
        let deadline = Instant::now() + self.timing.stop_grace + Duration::from_secs(2);
        let mut changed = pool.changed.subscribe();
        while Arc::strong_count(&pool) > 1 {
            if Instant::now() > deadline {
                tracing::warn!(target: "pdp::supervisor", kind = self.launch.kind(), key = %key, "its children did not stop in time");
                return false;
            }
            // A task drops the pool just after its last state change: look again shortly either way.
            let _ = tokio::time::timeout(Duration::from_millis(20), changed.changed()).await;
        }
        true
    }

    /// `key`'s pool, created (and its children started) if it has none or only stopped ones; `Err` when the
    /// connection budget has nothing left for a new one.
    fn pool(self: &Arc<Self>, key: &L::Key, pinned: bool) -> Result<Arc<Pool>, Spent> {
        let mut pools = self.pools();
        if let Some(pool) = pools.get(key) {
            let expired = pool.members.iter().all(|m| {
                matches!(&*m.state.borrow(), State::Failed(e, at) if e.permanent && at.elapsed() > FAILED_MEMORY)
                    || matches!(&*m.state.borrow(), State::Stopped)
            });
            if !expired {
                *pool.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                return Ok(pool.clone());
            }
            // Its part goes back to the budget before the new pool takes one.
            pools.remove(key);
        }
        let children = self.launch.pool_size(key).max(1);
        let grant = self.budget.take(children)?;
        // Every child opens one connection at least: no more children than connections.
        let size = children.min(grant.connections());
        if size < children {
            tracing::warn!(
                target: "pdp::supervisor",
                kind = self.launch.kind(),
                key = %key,
                "{size} of {children} children: its part of `[serve.limits] connection-limit` is {} connection(s), one per child at least",
                grant.connections()
            );
        }
        let pool = Arc::new(Pool {
            members: (0..size).map(|_| Arc::new(Member::new())).collect(),
            changed: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            pinned,
            last_used: Mutex::new(Instant::now()),
            next: AtomicUsize::new(0),
            grant,
        });
        pools.insert(key.clone(), pool.clone());
        let mut tasks = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for slot in 0..size {
            let this = self.clone();
            let (k, p) = (key.clone(), pool.clone());
            tasks.spawn(async move { this.run(k, p, slot).await });
        }
        Ok(pool)
    }

    /// The least busy ready child for `key`, its pool started if needed; waits while none is ready, up to
    /// the start timeout.
    pub async fn get(self: &Arc<Self>, key: &L::Key) -> Result<Lease, Arc<StartError>> {
        let pool = self.pool_or_make_room(key).await?;
        // The common case, a child that serves: no subscription, no timer.
        if let Some(lease) = pool.lease() {
            return Ok(lease);
        }
        let mut rx = pool.changed.subscribe();
        let deadline = tokio::time::Instant::now() + self.timing.start_timeout;
        loop {
            if let Some(lease) = pool.lease() {
                // Used from now (a transaction started on this lease lives from here).
                *pool.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                return Ok(lease);
            }
            match pool.settled_without_ready() {
                Some(State::Failed(e, _)) => return Err(e),
                Some(_) => {
                    return Err(Arc::new(StartError {
                        message: format!("the {} for {key} is stopping", self.launch.kind()),
                        permanent: false,
                    }));
                }
                None => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Arc::new(StartError { message: "pdp is shutting down".into(), permanent: false }));
                }
                Err(_) => {
                    return Err(Arc::new(StartError {
                        message: format!(
                            "the {} for {key} did not become ready within {}s ([serve.limits] engine-start-timeout)",
                            self.launch.kind(),
                            self.timing.start_timeout.as_secs()
                        ),
                        permanent: false,
                    }));
                }
            }
        }
    }

    /// Child `slot` of `key` if it is serving right now (no waiting, no starting), counted busy.
    pub fn ready_now(&self, key: &L::Key, slot: usize) -> Option<Lease> {
        let pools = self.pools();
        let pool = pools.get(key)?;
        *pool.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        let member = pool.members.get(slot)?.clone();
        let State::Ready(endpoint) = member.state.borrow().clone() else { return None };
        member.busy.fetch_add(1, Ordering::Relaxed);
        Some(Lease { endpoint, member })
    }

    /// Whether any child of `key` is serving right now (ready and answering its health route).
    pub fn any_ready(&self, key: &L::Key) -> bool {
        self.pools().get(key).is_some_and(|p| p.members.iter().any(|m| m.serving()))
    }

    /// Whether a child of `key` runs but does not answer its health route.
    pub fn any_unresponsive(&self, key: &L::Key) -> bool {
        self.pools().get(key).is_some_and(|p| p.members.iter().any(|m| m.unresponsive.load(Ordering::Relaxed)))
    }

    /// Stops every child and waits for them (each gets the stop grace, then is killed).
    pub async fn shutdown(&self) {
        for pool in self.pools().values() {
            pool.stop.send_replace(true);
        }
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        while tasks.join_next().await.is_some() {}
    }

    /// Every child this supervisor knows, sorted by key and slot, with its state in a word (`starting`,
    /// `ready`, `failed`, `stopped`), its endpoint when ready, and the requests it is answering.
    pub fn states(&self) -> Vec<ChildState<L::Key>> {
        let mut all: Vec<_> = self
            .pools()
            .iter()
            .flat_map(|(key, pool)| {
                pool.members.iter().enumerate().map(move |(slot, m)| {
                    let (status, endpoint) = match &*m.state.borrow() {
                        State::Starting => ("starting", None),
                        State::Ready(ep) if m.unresponsive.load(Ordering::Relaxed) => {
                            ("unresponsive", Some(ep.clone()))
                        }
                        State::Ready(ep) => ("ready", Some(ep.clone())),
                        State::Failed(..) => ("failed", None),
                        State::Stopped => ("stopped", None),
                    };
                    ChildState {
                        key: key.clone(),
                        slot,
                        status,
                        endpoint,
                        busy: m.busy.load(Ordering::Relaxed),
                        running: m.running().map(|(pid, since)| (pid, since.elapsed())),
                        restarts: m.restarts.load(Ordering::Relaxed),
                        connection_limit: pool.connections(slot),
                    }
                })
            })
            .collect();
        all.sort_by_cached_key(|c| (c.key.to_string(), c.slot));
        all
    }

    /// Stops unpinned pools nobody used for the idle timeout. Call periodically.
    pub fn reap_idle(&self) {
        let mut pools = self.pools();
        pools.retain(|key, pool| {
            let idle = pool.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
            let busy = pool.members.iter().any(|m| m.busy.load(Ordering::Relaxed) > 0);
            // Failed or crash-looping pools too: they hold their part of the connection budget.
            if !pool.pinned && !busy && idle > self.timing.idle_timeout {
                tracing::info!(target: "pdp::supervisor", kind = self.launch.kind(), key = %key, "stopping: unused for {}s", idle.as_secs());
                pool.stop.send_replace(true);
                false
            } else {
                true
            }
        });
    }

    async fn run(self: Arc<Self>, key: L::Key, pool: Arc<Pool>, slot: usize) {
        let kind = self.launch.kind();
        let member = pool.members[slot].clone();
        let labels = ChildLabels { kind, version: key.to_string(), slot: slot.to_string() };
        let mut stop = pool.stop.subscribe();
        let mut backoff = BACKOFF_START;
        let mut generation = 0u64;
        loop {
            if *stop.borrow() {
                break;
            }
            pool.set(&member, State::Starting);
            let launch = self.launch.clone();
            let k = key.clone();
            let connections = pool.connections(slot);
            let prepared = tokio::task::spawn_blocking(move || launch.prepare(&k, slot, connections)).await;
            let cmd = match prepared {
                Ok(Ok(cmd)) => cmd,
                Ok(Err(e)) => {
                    let permanent = e.permanent;
                    tracing::error!(target: "pdp::supervisor", kind, key = %key, slot, "{}", e.message);
                    pool.set(&member, State::Failed(Arc::new(e), Instant::now()));
                    if permanent || wait_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
                Err(join) => {
                    let e = StartError {
                        message: format!("preparing the {kind} for {key} failed: {join}"),
                        permanent: true,
                    };
                    pool.set(&member, State::Failed(Arc::new(e), Instant::now()));
                    break;
                }
            };
            self.metrics.starts.get_or_create(&labels).inc();
            // At 0 until the first restart: a dashboard shows "no restarts" rather than no series.
            let _ = self.metrics.restarts.get_or_create(&labels);
            let log_key = key.to_string();
            let launched = launch::launch(
                &cmd,
                |l| self.launch.ready(l),
                self.timing.start_timeout,
                |line| {
                    tracing::info!(target: "pdp::child", kind, key = %log_key, "{line}");
                },
            )
            .await;
            let launch::Launched { mut child, addr, stdin, mut stdout, mut stderr } = match launched {
                Ok(l) => l,
                Err(e) => {
                    let message = match &e {
                        LaunchError::Spawn(p) => p.to_string(),
                        other => other.to_string(),
                    };
                    tracing::error!(target: "pdp::supervisor", kind, key = %key, slot, "{message}");
                    pool.set(
                        &member,
                        State::Failed(Arc::new(StartError { message, permanent: false }), Instant::now()),
                    );
                    if wait_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            generation += 1;
            let up_since = Instant::now();
            *member.running() = Some((child.id().unwrap_or(0), up_since));
            tracing::info!(target: "pdp::supervisor", kind, key = %key, slot, %addr, generation, "ready");
            self.metrics.running.get_or_create(&labels).inc();
            pool.set(&member, State::Ready(Endpoint { addr: addr.clone(), slot, generation }));
            let forward_key = key.to_string();
            let forward = tokio::spawn(async move {
                let (mut out_open, mut err_open) = (true, true);
                while out_open || err_open {
                    tokio::select! {
                        line = stdout.next_line(), if out_open => match line {
                            Ok(Some(l)) => tracing::info!(target: "pdp::child", kind, key = %forward_key, "{l}"),
                            _ => out_open = false,
                        },
                        line = stderr.next_line(), if err_open => match line {
                            Ok(Some(l)) => tracing::warn!(target: "pdp::child", kind, key = %forward_key, "{l}"),
                            _ => err_open = false,
                        },
                    }
                }
            });
            let health = async {
                match self.launch.health_path() {
                    Some(path) => watch_health(&addr, path, &member, &pool, kind, &key).await,
                    None => std::future::pending().await,
                }
            };
            let stopped = tokio::select! {
                () = health => {
                    tracing::error!(target: "pdp::supervisor", kind, key = %key, slot, "did not answer its health route for {}s: killing it (its requests fail; nothing is re-sent) and restarting", HUNG_KILL_AFTER.as_secs());
                    let _ = child.kill().await;
                    self.metrics.restarts.get_or_create(&labels).inc();
                    member.restarts.fetch_add(1, Ordering::Relaxed);
                    if up_since.elapsed() > STABLE_AFTER {
                        backoff = BACKOFF_START;
                    }
                    false
                }
                status = child.wait() => {
                    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    if up_since.elapsed() > STABLE_AFTER {
                        backoff = BACKOFF_START;
                    }
                    tracing::warn!(target: "pdp::supervisor", kind, key = %key, slot, "exited unexpectedly ({status}); restarting in {} ms", backoff.as_millis());
                    self.metrics.restarts.get_or_create(&labels).inc();
                    member.restarts.fetch_add(1, Ordering::Relaxed);
                    false
                }
                () = stopped(&mut stop) => {
                    launch::stop(&mut child, stdin, self.timing.stop_grace).await;
                    true
                }
            };
            self.metrics.running.get_or_create(&labels).dec();
            // Not ready before anything else: no request is leased to the dead child meanwhile.
            if !stopped {
                pool.set(&member, State::Starting);
            }
            *member.running() = None;
            member.unresponsive.store(false, Ordering::Relaxed);
            let _ = forward.await;
            if stopped {
                break;
            }
            pool.set(&member, State::Starting);
            if wait_or_stop(&mut stop, backoff).await {
                break;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        let changed = member.state.send_if_modified(|s| {
            if matches!(s, State::Failed(e, _) if e.permanent) {
                false
            } else {
                *s = State::Stopped;
                true
            }
        });
        if changed {
            pool.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Asks a running child's health route every [`PROBE_EVERY`]; marks it unresponsive after
/// `UNRESPONSIVE_AFTER` probes in a row go unanswered while it finished no request either (a child busy
/// with requests answers them even when its probe waits), and answering again after one that is answered;
/// returns once it has stayed unresponsive for [`HUNG_KILL_AFTER`].
async fn watch_health(
    addr: &ChildAddr,
    path: &'static str,
    member: &Member,
    pool: &Pool,
    kind: &'static str,
    key: &impl fmt::Display,
) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut missed, mut since) = (0u32, None::<Instant>);
    loop {
        tick.tick().await;
        let finished_before = member.finished_ms.load(Ordering::Relaxed);
        let answered = matches!(tokio::time::timeout(PROBE_TIMEOUT, probe(addr, path)).await, Ok(true))
            // Requests it finished meanwhile: loaded, not hung.
            || member.finished_ms.load(Ordering::Relaxed) != finished_before;
        if answered {
            if since.take().is_some() {
                member.unresponsive.store(false, Ordering::Relaxed);
                pool.changed.send_modify(|n| *n = n.wrapping_add(1));
                tracing::info!(target: "pdp::supervisor", kind, key = %key, "answers its health route again");
            }
            missed = 0;
            continue;
        }
        missed += 1;
        if missed == UNRESPONSIVE_AFTER {
            since = Some(Instant::now());
            member.unresponsive.store(true, Ordering::Relaxed);
            pool.changed.send_modify(|n| *n = n.wrapping_add(1));
            tracing::warn!(target: "pdp::supervisor", kind, key = %key, "does not answer its health route within {} ms: unresponsive", PROBE_TIMEOUT.as_millis());
        }
        if since.is_some_and(|s| s.elapsed() >= HUNG_KILL_AFTER) {
            return;
        }
    }
}

/// One `GET path` on a fresh connection to the child: whether it answered 2xx.
async fn probe(addr: &ChildAddr, path: &str) -> bool {
    async fn over<IO>(io: IO, path: &str) -> bool
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await else {
            return false;
        };
        let driver = tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new());
        let ok = match req {
            Ok(req) => send.send_request(req).await.is_ok_and(|r| r.status().is_success()),
            Err(_) => false,
        };
        driver.abort();
        ok
    }
    match addr {
        ChildAddr::Unix(p) => match tokio::net::UnixStream::connect(&**p).await {
            Ok(s) => over(s, path).await,
            Err(_) => false,
        },
        ChildAddr::Tcp(a) => match tokio::net::TcpStream::connect(a).await {
            Ok(s) => over(s, path).await,
            Err(_) => false,
        },
    }
}

/// Sleeps `d`; true if a stop was requested meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = stopped(stop) => return true,
    }
    *stop.borrow()
}

/// Resolves once the flag is (or becomes) true, or its sender is gone.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Children that are `sh` printing a ready line for a made-up socket (named after the key and slot, so
    /// a test finds its own in the process list), then waiting until stdin closes.
    struct Fake {
        size: usize,
    }

    impl Launch for Fake {
        type Key = String;

        fn kind(&self) -> &'static str {
            "fake"
        }

        fn pool_size(&self, _key: &String) -> usize {
            self.size
        }

        fn prepare(&self, key: &String, slot: usize, _connections: usize) -> Result<Cmd, StartError> {
            let line = format!(r#"{{"pdp_ready":{{"path":"/fake/{key}-{slot}.sock"}}}}"#);
            Ok(Cmd::new("sh", "run a fake child", std::env::temp_dir())
                .args(["-c", &format!("echo '{line}'; read _ || true")]))
        }
    }

    fn pool_of(size: usize) -> Arc<Supervisor<Fake>> {
        supervisor(size, Budget::new(8, 2), Duration::from_secs(3600))
    }

    fn supervisor(size: usize, budget: Arc<Budget>, quiet_after: Duration) -> Arc<Supervisor<Fake>> {
        let timing = Timing {
            start_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(2),
            quiet_after,
        };
        Supervisor::new(Fake { size }, timing, Arc::new(Metrics::new()), budget)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_key_takes_the_part_of_the_least_recently_used_quiet_pool_never_a_busy_one() {
        // Two connections: the first key takes one (all but the reserve), the second the reserve.
        let budget = Budget::new(2, 1);
        let s = supervisor(1, budget.clone(), Duration::ZERO);
        let (a, b, c) = ("a".to_owned(), "b".to_owned(), "c".to_owned());
        let lease_a = s.get(&a).await.expect("a starts");
        let lease_b = s.get(&b).await.expect("b starts");
        assert_eq!(budget.granted(), 2);
        // Both busy: nothing may be stopped, and the third key is told why.
        let Err(refused) = s.get(&c).await else { panic!("no room while both serve") };
        assert!(refused.message.contains("connection-limit"), "{}", refused.message);
        assert!(!refused.permanent);
        // `a` finished and was used less recently than `b`: it makes room; `b` keeps its child.
        drop(lease_a);
        drop(lease_b);
        let _ = s.ready_now(&b, 0).expect("b serves");
        let _c = s.get(&c).await.expect("c starts in a's place");
        let mut running: Vec<String> =
            s.states().iter().filter(|c| c.status == "ready").map(|c| c.key.clone()).collect();
        running.sort();
        assert_eq!(running, [b, c], "a stopped, b kept its child");
        assert_eq!(budget.granted(), 2, "never more than the budget");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pool_used_within_a_transactions_lifetime_is_not_stopped_for_another_key() {
        let s = supervisor(1, Budget::new(2, 1), Duration::from_secs(3600));
        let (a, b, c) = ("a".to_owned(), "b".to_owned(), "c".to_owned());
        drop(s.get(&a).await.expect("a starts"));
        drop(s.get(&b).await.expect("b starts"));
        // Idle, but a transaction opened on either could still be open.
        assert!(s.get(&c).await.is_err());
        assert_eq!(s.states().iter().filter(|c| c.status == "ready").count(), 2);
    }

    async fn all_ready(s: &Arc<Supervisor<Fake>>, key: &String, n: usize) {
        let _first = s.get(key).await.expect("a child starts");
        for _ in 0..400 {
            if s.states().iter().filter(|c| c.status == "ready").count() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the pool did not become ready: {:?}", s.states().iter().map(|c| c.status).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_go_to_the_least_busy_child_and_equals_take_turns() {
        let s = pool_of(2);
        let key = "7.10.0".to_owned();
        all_ready(&s, &key, 2).await;
        // Two requests in flight at once: one on each child.
        let a = s.get(&key).await.expect("lease");
        let b = s.get(&key).await.expect("lease");
        assert_ne!(a.endpoint.slot, b.endpoint.slot, "the second goes to the idle child");
        let busy: Vec<usize> = s.states().iter().map(|c| c.busy).collect();
        assert_eq!(busy, [1, 1]);
        drop((a, b));
        assert_eq!(s.states().iter().map(|c| c.busy).sum::<usize>(), 0, "a dropped lease is no longer busy");
        // One at a time: equally idle children take turns.
        let mut slots = Vec::new();
        for _ in 0..4 {
            slots.push(s.get(&key).await.expect("lease").endpoint.slot);
        }
        assert!(slots.contains(&0) && slots.contains(&1), "{slots:?}");
        s.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_child_whose_forward_broke_off_is_passed_over_while_another_is_ready() {
        let s = pool_of(2);
        let key = "k".to_owned();
        all_ready(&s, &key, 2).await;
        let failed = s.get(&key).await.expect("lease");
        let slot = failed.endpoint.slot;
        failed.unreachable();
        drop(failed);
        for _ in 0..6 {
            assert_ne!(s.get(&key).await.expect("lease").endpoint.slot, slot, "the failed child is avoided");
        }
        // A transaction's own child is still reachable by slot, with its incarnation.
        let pinned = s.ready_now(&key, slot).expect("still ready");
        assert_eq!((pinned.endpoint.slot, pinned.endpoint.generation), (slot, 1));
        assert!(s.ready_now(&key, 2).is_none(), "no such slot");
        s.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_child_dying_leaves_the_rest_of_the_pool_serving() {
        let s = pool_of(2);
        let key = "dying-pool".to_owned();
        all_ready(&s, &key, 2).await;
        // The pids behind the two slots: kill one; the other keeps its first incarnation.
        let tmp = std::env::temp_dir();
        let pids: Vec<u32> = Cmd::new("pgrep", "list the fake children", &tmp)
            .args(["-P", &std::process::id().to_string(), "-f", "dying-pool"])
            .output()
            .map(|o| o.stdout.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        assert_eq!(pids.len(), 2, "{pids:?}");
        Cmd::new("kill", "kill one fake child", &tmp).args(["-KILL", &pids[0].to_string()]).output().expect("kill");
        // Until the dead one is back, every request is served by the live one.
        let mut generations = Vec::new();
        for _ in 0..400 {
            let states = s.states();
            generations = states.iter().map(|c| c.endpoint.as_ref().map(|e| e.generation)).collect();
            if generations.contains(&Some(2)) {
                break;
            }
            assert!(s.get(&key).await.is_ok(), "the pool keeps serving while one child restarts");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(generations.contains(&Some(1)) && generations.contains(&Some(2)), "{generations:?}");
        s.shutdown().await;
    }
}
