//! Supervision of the children that answer queries (query-plan executors now, query engines for 4.x–6.x):
//! one child per key, started on first use (or ahead, pinned), requests wait while it starts (bounded),
//! a crashed child restarts with backoff, unused children stop after an idle time, shutdown stops them all.
//!
//! The invariant: pdp never re-sends a request. If a child dies under a request, that request fails; the
//! next one waits for the restarted child. A mutation must not run twice.
//!
//! Deliberately not here: what a child is or how to provision it (a [`Launch`] says), HTTP, routing.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pdp_toolchain::launch::{self, ChildAddr, LaunchError};
use pdp_toolchain::process::Cmd;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::{ChildLabels, Metrics};

/// What kind of child a supervisor runs, and how to start one.
pub trait Launch: Send + Sync + 'static {
    /// What tells children apart (a Prisma version; an engine hash and schema hash).
    type Key: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static;
    /// `executor` or `engine`, for logs and metrics.
    fn kind(&self) -> &'static str;
    /// Provisions what the child needs (may block: runs off the async threads) and returns its command.
    fn prepare(&self, key: &Self::Key) -> Result<Cmd, StartError>;
    /// Reads the child's address from one of its output lines.
    fn ready(&self, line: &str) -> Option<ChildAddr> {
        launch::pdp_ready(line)
    }
}

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

/// A ready child: where it listens and which incarnation it is (bumped on every restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its Unix socket (or, for a native query engine, its loopback port).
    pub addr: ChildAddr,
    /// 1 for the first start, 2 after the first restart, …
    pub generation: u64,
}

#[derive(Clone, Debug)]
enum State {
    Starting,
    Ready(Endpoint),
    Failed(Arc<StartError>, Instant),
    Stopped,
}

struct Slot {
    state: watch::Sender<State>,
    stop: watch::Sender<bool>,
    pinned: bool,
    last_used: Mutex<Instant>,
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
    slots: Mutex<HashMap<L::Key, Arc<Slot>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl<L: Launch> Supervisor<L> {
    /// A supervisor with no children yet.
    pub fn new(launch: L, timing: Timing, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Supervisor {
            launch: Arc::new(launch),
            timing,
            metrics,
            slots: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
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

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<L::Key, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the child for `key` now and keeps it running regardless of use (the project's own version).
    pub fn pin(self: &Arc<Self>, key: &L::Key) {
        self.slot(key, true);
    }

    fn slot(self: &Arc<Self>, key: &L::Key, pinned: bool) -> Arc<Slot> {
        let mut slots = self.slots();
        if let Some(slot) = slots.get(key) {
            let expired = matches!(&*slot.state.borrow(), State::Failed(e, at) if e.permanent && at.elapsed() > FAILED_MEMORY)
                || matches!(&*slot.state.borrow(), State::Stopped);
            if !expired {
                *slot.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                return slot.clone();
            }
        }
        let slot = Arc::new(Slot {
            state: watch::Sender::new(State::Starting),
            stop: watch::Sender::new(false),
            pinned,
            last_used: Mutex::new(Instant::now()),
        });
        slots.insert(key.clone(), slot.clone());
        let this = self.clone();
        let (k, s) = (key.clone(), slot.clone());
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).spawn(async move { this.run(k, s).await });
        slot
    }

    /// The child for `key`, started if needed; waits while it starts, up to the start timeout.
    pub async fn get(self: &Arc<Self>, key: &L::Key) -> Result<Endpoint, Arc<StartError>> {
        let slot = self.slot(key, false);
        // The common case, a child that serves: no subscription, no timer.
        if let State::Ready(ep) = &*slot.state.borrow() {
            return Ok(ep.clone());
        }
        let mut rx = slot.state.subscribe();
        let waited = tokio::time::timeout(
            self.timing.start_timeout,
            rx.wait_for(|s| matches!(s, State::Ready(_) | State::Failed(..) | State::Stopped)),
        )
        .await;
        match waited {
            Ok(Ok(state)) => match &*state {
                State::Ready(ep) => Ok(ep.clone()),
                State::Failed(e, _) => Err(e.clone()),
                _ => Err(Arc::new(StartError {
                    message: format!("the {} for {key} is stopping", self.launch.kind()),
                    permanent: false,
                })),
            },
            Ok(Err(_)) => Err(Arc::new(StartError { message: "pdp is shutting down".into(), permanent: false })),
            Err(_) => Err(Arc::new(StartError {
                message: format!(
                    "the {} for {key} did not become ready within {}s ([serve.limits] engine-start-timeout)",
                    self.launch.kind(),
                    self.timing.start_timeout.as_secs()
                ),
                permanent: false,
            })),
        }
    }

    /// The child's endpoint if it is serving right now (no waiting, no starting).
    pub fn ready_now(&self, key: &L::Key) -> Option<Endpoint> {
        let slots = self.slots();
        let slot = slots.get(key)?;
        match &*slot.state.borrow() {
            State::Ready(ep) => Some(ep.clone()),
            _ => None,
        }
    }

    /// Stops every child and waits for them (each gets the stop grace, then is killed).
    pub async fn shutdown(&self) {
        for slot in self.slots().values() {
            slot.stop.send_replace(true);
        }
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        while tasks.join_next().await.is_some() {}
    }

    /// Every child this supervisor knows, sorted by key, with its state in a word (`starting`, `ready`,
    /// `failed`, `stopped`) and its endpoint when ready.
    pub fn states(&self) -> Vec<(L::Key, &'static str, Option<Endpoint>)> {
        let mut all: Vec<_> = self
            .slots()
            .iter()
            .map(|(key, slot)| {
                let (word, endpoint) = match &*slot.state.borrow() {
                    State::Starting => ("starting", None),
                    State::Ready(ep) => ("ready", Some(ep.clone())),
                    State::Failed(..) => ("failed", None),
                    State::Stopped => ("stopped", None),
                };
                (key.clone(), word, endpoint)
            })
            .collect();
        all.sort_by_cached_key(|(key, ..)| key.to_string());
        all
    }

    /// Stops unpinned children nobody used for the idle timeout. Call periodically.
    pub fn reap_idle(&self) {
        let mut slots = self.slots();
        slots.retain(|key, slot| {
            let idle = slot.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
            let ready = matches!(&*slot.state.borrow(), State::Ready(_));
            if !slot.pinned && ready && idle > self.timing.idle_timeout {
                tracing::info!(target: "pdp::supervisor", kind = self.launch.kind(), key = %key, "stopping: unused for {}s", idle.as_secs());
                slot.stop.send_replace(true);
                false
            } else {
                true
            }
        });
    }

    async fn run(self: Arc<Self>, key: L::Key, slot: Arc<Slot>) {
        let kind = self.launch.kind();
        let labels = ChildLabels { kind, version: key.to_string() };
        let mut stop = slot.stop.subscribe();
        let mut backoff = BACKOFF_START;
        let mut generation = 0u64;
        loop {
            if *stop.borrow() {
                break;
            }
            slot.state.send_replace(State::Starting);
            let launch = self.launch.clone();
            let k = key.clone();
            let prepared = tokio::task::spawn_blocking(move || launch.prepare(&k)).await;
            let cmd = match prepared {
                Ok(Ok(cmd)) => cmd,
                Ok(Err(e)) => {
                    let permanent = e.permanent;
                    tracing::error!(target: "pdp::supervisor", kind, key = %key, "{}", e.message);
                    slot.state.send_replace(State::Failed(Arc::new(e), Instant::now()));
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
                    slot.state.send_replace(State::Failed(Arc::new(e), Instant::now()));
                    break;
                }
            };
            self.metrics.starts.get_or_create(&labels).inc();
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
                    tracing::error!(target: "pdp::supervisor", kind, key = %key, "{message}");
                    slot.state.send_replace(State::Failed(
                        Arc::new(StartError { message, permanent: false }),
                        Instant::now(),
                    ));
                    if wait_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            generation += 1;
            let up_since = Instant::now();
            tracing::info!(target: "pdp::supervisor", kind, key = %key, %addr, generation, "ready");
            self.metrics.running.get_or_create(&labels).inc();
            slot.state.send_replace(State::Ready(Endpoint { addr: addr.clone(), generation }));
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
            let stopped = tokio::select! {
                status = child.wait() => {
                    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    if up_since.elapsed() > STABLE_AFTER {
                        backoff = BACKOFF_START;
                    }
                    tracing::warn!(target: "pdp::supervisor", kind, key = %key, "exited unexpectedly ({status}); restarting in {} ms", backoff.as_millis());
                    self.metrics.restarts.get_or_create(&labels).inc();
                    false
                }
                () = stopped(&mut stop) => {
                    launch::stop(&mut child, stdin, self.timing.stop_grace).await;
                    true
                }
            };
            self.metrics.running.get_or_create(&labels).dec();
            let _ = forward.await;
            if stopped {
                break;
            }
            slot.state.send_replace(State::Starting);
            if wait_or_stop(&mut stop, backoff).await {
                break;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        slot.state.send_if_modified(|s| {
            if matches!(s, State::Failed(e, _) if e.permanent) {
                false
            } else {
                *s = State::Stopped;
                true
            }
        });
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
