//! Open interactive transactions and their lifecycle, written once for every protocol. A request is
//! admitted ([`Transactions::admit`]): during shutdown only work of an open transaction is, and a request
//! naming a transaction pdp does not know gets the protocol's transaction error at once. A request of an
//! open transaction goes to its owner ([`Ticket::pin`]): the child that started it, in the incarnation
//! that started it; if that child stopped, the answer is the transaction error at once, never a wait for
//! the restarted child (which does not know the transaction). The table is kept honest from the
//! outcome: a start records the owner ([`Ticket::opened`]), a commit or rollback and a forward that
//! broke off forget it ([`Ticket::settle`]), and transactions past their maximum lifetime are swept.
//! Shutdown waits for the open ones ([`Transactions::drain`]).
//!
//! Each protocol supplies only its error body ([`TxErrors`]); the status is 409 for both, as Prisma's
//! query-plan executor answers an unknown transaction: Prisma 7 clients raise the body's `code`, and
//! Prisma 4.x–6.x clients raise an engine error body's `error_code`, for any non-2xx status, without
//! retrying.
//!
//! Deliberately not here: reading transaction ids or options from requests (the routers), forwarding.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, watch};

use super::forward::ForwardError;
use super::respond::{self, Body};
use crate::supervisor::{Endpoint, Launch, Lease, Supervisor};

/// An open interactive transaction pdp has seen start and not finish.
#[derive(Clone, Debug)]
pub struct OpenTx {
    /// Which child holds it: its supervisor key, as text…
    pub owner: String,
    /// …its place in that key's pool…
    pub slot: usize,
    /// …and its incarnation when it started.
    pub generation: u64,
    /// When it started.
    pub opened: Instant,
    /// After this the child has certainly closed it (its own maximum timeout passed).
    pub expires: Instant,
}

/// What a request does to interactive transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role<'a> {
    /// Nothing: work outside any transaction.
    Plain,
    /// Starts one.
    Start,
    /// Runs a query in this one.
    Use(&'a str),
    /// Commits or rolls back this one.
    End(&'a str),
}

impl<'a> Role<'a> {
    /// The transaction the request belongs to.
    pub fn id(self) -> Option<&'a str> {
        match self {
            Role::Use(id) | Role::End(id) => Some(id),
            Role::Plain | Role::Start => None,
        }
    }
}

/// A protocol's transaction error body, in the shape its clients raise as P2028.
pub trait TxErrors: Sync {
    /// The body for a transaction error that says `message`.
    fn tx_error(&self, message: &str) -> serde_json::Value;
}

/// The open transactions, and whether shutdown has begun.
pub struct Transactions {
    open: Mutex<HashMap<String, OpenTx>>,
    /// Starts admitted and not finished: a drain waits for them too (a start admitted just before the
    /// drain began may still open a transaction).
    starting: AtomicUsize,
    closed: Notify,
    draining: watch::Sender<bool>,
    gauge: Gauge<i64, AtomicI64>,
    /// Transactions forgotten by [`Transactions::sweep`]: neither committed nor rolled back in time.
    abandoned: Counter<u64, AtomicU64>,
    max_timeout: Duration,
}

impl Transactions {
    /// An empty table; `gauge` follows its size, `abandoned` counts the transactions that outlived
    /// `max_timeout` without an end (their child closed them).
    pub fn new(
        gauge: Gauge<i64, AtomicI64>,
        abandoned: Counter<u64, AtomicU64>,
        max_timeout: Duration,
    ) -> Transactions {
        Transactions {
            open: Mutex::new(HashMap::new()),
            starting: AtomicUsize::new(0),
            closed: Notify::new(),
            draining: watch::Sender::new(false),
            gauge,
            abandoned,
            max_timeout,
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, OpenTx>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, open: &HashMap<String, OpenTx>) {
        self.gauge.set(i64::try_from(open.len()).unwrap_or(i64::MAX));
    }

    /// A transaction pdp knows to be open.
    pub fn get(&self, id: &str) -> Option<OpenTx> {
        self.table().get(id).cloned()
    }

    /// How many are open on child `slot` of `owner`'s pool.
    pub fn open_on(&self, owner: &str, slot: usize) -> usize {
        self.table().values().filter(|t| t.owner == owner && t.slot == slot).count()
    }

    /// Every open one, the oldest first.
    pub fn list(&self) -> Vec<OpenTx> {
        let mut all: Vec<OpenTx> = self.table().values().cloned().collect();
        all.sort_by_key(|t| t.opened);
        all
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }

    fn opened(&self, id: String, owner: String, child: &Endpoint) {
        let opened = Instant::now();
        let expires = opened + self.max_timeout + Duration::from_secs(2);
        let mut open = self.table();
        open.insert(id, OpenTx { owner, slot: child.slot, generation: child.generation, opened, expires });
        self.count(&open);
    }

    fn closed(&self, id: &str) {
        let mut open = self.table();
        if open.remove(id).is_some() {
            self.count(&open);
            self.closed.notify_waiters();
        }
    }

    /// Forgets transactions whose child has certainly closed them; the ids still open.
    pub fn sweep(&self) -> Vec<String> {
        let now = Instant::now();
        let mut open = self.table();
        let before = open.len();
        open.retain(|_, tx| tx.expires > now);
        self.abandoned.inc_by((before - open.len()) as u64);
        self.count(&open);
        open.keys().cloned().collect()
    }

    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn until_draining(&self) {
        let mut rx = self.draining.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Shutdown, phase one: refuses new work from now on and waits until no transaction is open or
    /// `deadline` (from `started`) passes. Returns the transactions still open then.
    pub async fn drain(&self, started: Instant, deadline: Duration) -> Vec<String> {
        self.draining.send_replace(true);
        loop {
            let closed = self.closed.notified();
            let open = self.sweep();
            let left = deadline.saturating_sub(started.elapsed());
            let quiet = open.is_empty() && self.starting.load(Ordering::Acquire) == 0;
            if quiet || left.is_zero() {
                return open;
            }
            // Woken by a close; the timeout catches expiries and the deadline.
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), closed).await;
        }
    }

    /// Admits a request that does `role`: during shutdown only work of an open transaction; a request
    /// of a transaction pdp does not know gets the protocol's transaction error.
    pub fn admit<'t>(&'t self, role: Role<'t>, errors: &dyn TxErrors) -> Result<Ticket<'t>, Box<Response<Body>>> {
        let open = role.id().and_then(|id| self.get(id));
        if self.draining() && open.is_none() {
            return Err(Box::new(respond::shutting_down()));
        }
        if let (Some(id), None) = (role.id(), &open) {
            return Err(Box::new(unknown(errors, id)));
        }
        if role == Role::Start {
            self.starting.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Ticket { txs: self, role, open })
    }
}

/// An admitted request's part in the transaction lifecycle.
pub struct Ticket<'t> {
    txs: &'t Transactions,
    role: Role<'t>,
    open: Option<OpenTx>,
}

impl Ticket<'_> {
    /// What the request does.
    pub fn role(&self) -> Role<'_> {
        self.role
    }

    /// For a request of an open transaction, the child of `children` that holds it, if it still runs the
    /// incarnation that started it, and the protocol's transaction error at once otherwise (`key` is the
    /// child the request names; another key is another pdp's or an old transaction). `None` for work
    /// outside a transaction: the router picks a child.
    pub fn pin<L: Launch>(
        &self,
        children: &Supervisor<L>,
        key: &L::Key,
        errors: &dyn TxErrors,
    ) -> Result<Option<Lease>, Box<Response<Body>>> {
        let (Some(id), Some(tx)) = (self.role.id(), &self.open) else { return Ok(None) };
        if tx.owner != key.to_string() {
            return Err(Box::new(unknown(errors, id)));
        }
        match children.ready_now(key, tx.slot) {
            Some(lease) if lease.endpoint.generation == tx.generation => Ok(Some(lease)),
            _ => {
                self.txs.closed(id);
                Err(Box::new(owner_gone(errors, id, children.kind())))
            }
        }
    }

    /// Records the transaction a successful start opened on `child` of `owner`'s pool.
    pub fn opened(&self, id: String, owner: &impl fmt::Display, child: &Endpoint) {
        if self.role == Role::Start {
            self.txs.opened(id, owner.to_string(), child);
        }
    }

    /// Keeps the table honest after the forward: a commit or rollback that got an answer ends the
    /// transaction, and so does a forward that broke off (the child is gone or going, and the database
    /// rolls the transaction back).
    pub fn settle<B>(&self, outcome: &Result<Response<B>, ForwardError>) {
        let Some(id) = self.role.id() else { return };
        let ended = matches!(self.role, Role::End(_)) && outcome.is_ok();
        if ended || matches!(outcome, Err(ForwardError::Unreachable(_))) {
            self.txs.closed(id);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.role == Role::Start {
            self.txs.starting.fetch_sub(1, Ordering::AcqRel);
            self.txs.closed.notify_waiters();
        }
    }
}

/// The protocol's transaction error, with 409 (the executor's own status for it).
fn tx_error(errors: &dyn TxErrors, message: &str) -> Response<Body> {
    respond::json(StatusCode::CONFLICT, &errors.tx_error(message))
}

fn unknown(errors: &dyn TxErrors, id: &str) -> Response<Body> {
    tx_error(
        errors,
        &format!(
            "Transaction API error: Transaction not found. pdp knows no open interactive transaction {id}: it \
             ended (committed, rolled back or timed out) or was started on another pdp"
        ),
    )
}

fn owner_gone(errors: &dyn TxErrors, id: &str, kind: &str) -> Response<Body> {
    tx_error(
        errors,
        &format!(
            "Transaction API error: the {kind} that held transaction {id} stopped (it is being restarted); the \
             database rolled the transaction back. Run the whole transaction again."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shape;

    impl TxErrors for Shape {
        fn tx_error(&self, message: &str) -> serde_json::Value {
            serde_json::json!({ "code": "P2028", "error": message })
        }
    }

    fn table() -> Transactions {
        Transactions::new(Gauge::default(), Counter::default(), Duration::from_secs(60))
    }

    fn child(slot: usize, generation: u64) -> Endpoint {
        let addr = pdp_toolchain::launch::ChildAddr::Unix(std::sync::Arc::from(std::path::Path::new("/x.sock")));
        Endpoint { addr, slot, generation }
    }

    fn status(r: Result<Ticket<'_>, Box<Response<Body>>>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(resp) => resp.status().as_u16(),
        }
    }

    #[test]
    fn admission_refuses_unknown_transactions_and_new_work_while_draining() {
        let txs = table();
        assert_eq!(status(txs.admit(Role::Plain, &Shape)), 200);
        assert_eq!(status(txs.admit(Role::Use("nope"), &Shape)), 409);
        let ticket = txs.admit(Role::Start, &Shape).expect("admitted");
        ticket.opened("t1".into(), &"7.10.0", &child(1, 1));
        assert_eq!(txs.len(), 1);
        assert_eq!(txs.get("t1").map(|t| (t.owner, t.slot, t.generation)), Some(("7.10.0".into(), 1, 1)));
        txs.draining.send_replace(true);
        assert_eq!(status(txs.admit(Role::Plain, &Shape)), 503);
        assert_eq!(status(txs.admit(Role::Start, &Shape)), 503);
        assert_eq!(status(txs.admit(Role::Use("t1"), &Shape)), 200, "an open transaction may finish");
        assert_eq!(status(txs.admit(Role::Use("nope"), &Shape)), 503);
    }

    #[test]
    fn only_a_start_opens_and_only_an_answered_end_or_a_broken_forward_closes() {
        let txs = table();
        let plain = txs.admit(Role::Plain, &Shape).expect("admitted");
        plain.opened("p".into(), &"k", &child(0, 1));
        assert!(txs.is_empty(), "a plain request opens nothing");
        txs.admit(Role::Start, &Shape).expect("admitted").opened("a".into(), &"k", &child(0, 1));
        txs.admit(Role::Start, &Shape).expect("admitted").opened("b".into(), &"k", &child(0, 1));
        let timed_out: Result<Response<()>, ForwardError> = Err(ForwardError::Timeout(Duration::ZERO));
        txs.admit(Role::End("a"), &Shape).expect("admitted").settle(&timed_out);
        assert!(txs.get("a").is_some(), "a commit that got no answer may still have happened: kept until expiry");
        let broke: Result<Response<()>, ForwardError> = Err(ForwardError::Unreachable("reset".into()));
        txs.admit(Role::Use("b"), &Shape).expect("admitted").settle(&broke);
        assert!(txs.get("b").is_none(), "the child went away under it");
    }

    #[tokio::test]
    async fn drain_waits_for_a_start_admitted_before_it_began() {
        let txs = std::sync::Arc::new(table());
        let starter = txs.clone();
        let (admitted_tx, admitted_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let start = tokio::spawn(async move {
            let ticket = starter.admit(Role::Start, &Shape).expect("admitted before the drain");
            let _ = admitted_tx.send(());
            let _ = go_rx.await;
            ticket.opened("late".into(), &"k", &child(0, 1));
        });
        admitted_rx.await.expect("admitted");
        let drain = {
            let txs = txs.clone();
            tokio::spawn(async move { txs.drain(Instant::now(), Duration::from_secs(5)).await })
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!drain.is_finished(), "a start is still in flight");
        let _ = go_tx.send(());
        start.await.expect("start");
        // The start opened a transaction: the drain goes on waiting for it until it closes.
        txs.closed("late");
        assert!(drain.await.expect("drain").is_empty());
    }

    #[tokio::test]
    async fn drain_returns_when_the_last_transaction_closes() {
        let txs = std::sync::Arc::new(table());
        txs.admit(Role::Start, &Shape).expect("admitted").opened("a".into(), &"k", &child(0, 1));
        let closer = txs.clone();
        let started = Instant::now();
        let close = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            closer.closed("a");
        });
        let left = txs.drain(started, Duration::from_secs(10)).await;
        close.await.expect("closer");
        assert!(left.is_empty());
        assert!(started.elapsed() < Duration::from_secs(1), "woken by the close, not by a poll");
        txs.admit(Role::Start, &Shape).err().expect("draining refuses new transactions");
    }
}
