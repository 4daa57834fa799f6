//! The proxy kit the protocol routers are built from: the response body type and pdp's own answers
//! ([`respond`]), the one way a request reaches a child ([`forward`]: never re-sent), and the open
//! interactive transactions with their lifecycle ([`txs`]: who owns each, the answer when the owner is
//! gone, open/close bookkeeping, drain). Every protocol uses the same pieces and supplies only its error
//! bodies.
//!
//! With replicas, [`peers`] puts this replica's address in the transaction ids it hands out and relays a
//! request of another replica's transaction to its owner.
//!
//! Deliberately not here: what a protocol's routes mean (`qpe`, `dp1`), accepting connections, keys and
//! the access log (`server`), starting children (`supervisor`).

pub mod cache;
pub mod forward;
pub mod names;
pub mod peers;
pub mod respond;
pub mod txs;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::context::Context;

pub use forward::{ForwardError, Forwarder};
pub use peers::{Caller, Cluster, Place};
pub use respond::{Body, BoxError};
pub use txs::Transactions;

/// A request body any entry point hands the routers: a client's streaming one, or a peer's read whole.
pub trait RequestBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}
impl<B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static> RequestBody for B {}

/// What every router is handed with each request: the shared context, the forwarder and the
/// transaction table.
pub struct Kit {
    /// Settings, database, timing, metrics.
    pub cx: Arc<Context>,
    /// The client to children.
    pub forwarder: Forwarder,
    /// Open interactive transactions, and whether shutdown has begun.
    pub txs: Transactions,
    /// The other replicas, when this pdp is one of several.
    pub cluster: Option<Cluster>,
    /// The query cache (shared with background refreshes).
    pub cache: Arc<cache::Cache>,
}

impl Kit {
    /// A kit for `cx`.
    pub fn new(cx: Arc<Context>, cluster: Option<Cluster>) -> Kit {
        let txs = Transactions::new(
            cx.metrics.open_transactions.clone(),
            cx.metrics.transactions_abandoned.clone(),
            cx.limits().transaction_max_timeout,
        );
        let forwarder = Forwarder::new(cx.sockets.path());
        if cluster.is_some() {
            cx.metrics.clustered();
        }
        let settings = &cx.settings.cache;
        let query_limit = cx.limits().query_timeout + Duration::from_secs(10);
        let cache = Arc::new(cache::Cache::new(settings.enabled, settings.max_size, query_limit, cx.metrics.clone()));
        Kit { cx, forwarder, txs, cluster, cache }
    }

    /// Where a request doing `role` is served: here (as the role with the owner reference taken off) or
    /// by its owner, or the answer to give instead (a forged owner reference; a relayed request whose
    /// owner is not this replica).
    pub fn place<'a, B>(
        &self,
        role: txs::Role<'a>,
        req: &Request<B>,
        errors: &dyn txs::TxErrors,
    ) -> Result<Place<'a>, Box<Response<Body>>> {
        let Some(cluster) = &self.cluster else { return Ok(Place::Here(role)) };
        let id = role.id().unwrap_or("");
        match cluster.place(role) {
            Err(peers::Forged) => Err(Box::new(peers::forged(errors, &self.cx.metrics, id))),
            Ok(Place::Owner(_)) if req.extensions().get::<Caller>().is_some_and(|c| c.from_peer) => {
                Err(Box::new(peers::not_ours(errors, id)))
            }
            Ok(place) => Ok(place),
        }
    }

    /// Relays a request of a transaction that the replica at `owner` holds, and passes its answer back:
    /// one attempt, never re-sent; a replica that cannot be reached gets the protocol's transaction error.
    pub async fn relay<B: RequestBody>(
        &self,
        owner: SocketAddr,
        req: Request<B>,
        errors: &dyn txs::TxErrors,
    ) -> Response<Body> {
        let Some(cluster) = &self.cluster else {
            return respond::error(StatusCode::INTERNAL_SERVER_ERROR, "P6000", "pdp has no peers to relay to");
        };
        let limits = self.limits();
        let caller = req.extensions().get::<Caller>().map_or_else(|| Arc::from("-"), |c| c.key.clone());
        let (parts, body) = req.into_parts();
        let body = match respond::read_body(&parts.headers, body, limits.max_body_size, limits.query_timeout).await {
            Ok(b) => b,
            Err(e) => return e.response(limits.max_body_size),
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let id = path.split('/').find(|s| s.starts_with("pdp1_")).unwrap_or("").to_owned();
        // Long enough for the slowest thing the owner may be doing: a start waiting for a connection or
        // a query running to its timeout, and its own answer on top.
        let limit = limits.query_timeout.max(limits.transaction_max_wait) + Duration::from_secs(10);
        let metrics = &self.cx.metrics;
        let outcome = cluster.send(owner, parts.method, &path, &parts.headers, &caller, body, limit).await;
        match outcome {
            Ok(resp) => {
                peers::count(metrics, "relay", "ok");
                forward::pass_through(resp)
            }
            Err(ForwardError::Timeout(d)) => {
                peers::count(metrics, "relay", "timeout");
                respond::error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "P6004",
                    &format!(
                        "the replica {owner} that holds transaction {id} did not answer within {}s; nothing was re-sent",
                        d.as_secs()
                    ),
                )
            }
            Err(ForwardError::Unreachable(why)) => {
                peers::count(metrics, "relay", "unreachable");
                tracing::warn!(target: "pdp::cluster", %owner, "a transaction's owner cannot be reached: {why}");
                peers::owner_unreachable(errors, &id, owner, &why)
            }
        }
    }

    /// The id to hand a client for the child's transaction `id`: with replicas, it names this one.
    pub fn client_tx_id(&self, id: &str) -> String {
        match &self.cluster {
            Some(c) => c.mint(id),
            None => id.to_owned(),
        }
    }

    /// `[serve.limits]`.
    pub fn limits(&self) -> &pdp_config::Limits {
        self.cx.limits()
    }
}
