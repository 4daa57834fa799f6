//! The proxy kit the protocol routers are built from: the response body type and pdp's own answers
//! ([`respond`]), the one way a request reaches a child ([`forward`]: never re-sent), and the open
//! interactive transactions with their lifecycle ([`txs`]: who owns each, the answer when the owner is
//! gone, open/close bookkeeping, drain). Every protocol uses the same pieces and supplies only its error
//! bodies.
//!
//! Deliberately not here: what a protocol's routes mean (`qpe`, `dp1`), accepting connections, keys and
//! the access log (`server`), starting children (`supervisor`).

pub mod forward;
pub mod respond;
pub mod txs;

use std::sync::Arc;

use crate::context::Context;

pub use forward::{ForwardError, Forwarder};
pub use respond::{Body, BoxError};
pub use txs::Transactions;

/// What every router is handed with each request: the shared context, the forwarder and the
/// transaction table.
pub struct Kit {
    /// Settings, database, timing, metrics.
    pub cx: Arc<Context>,
    /// The client to children.
    pub forwarder: Forwarder,
    /// Open interactive transactions, and whether shutdown has begun.
    pub txs: Transactions,
}

impl Kit {
    /// A kit for `cx`.
    pub fn new(cx: Arc<Context>) -> Kit {
        let txs = Transactions::new(cx.metrics.open_transactions.clone(), cx.limits().transaction_max_timeout);
        let forwarder = Forwarder::new(cx.sockets.path());
        Kit { cx, forwarder, txs }
    }

    /// `[serve.limits]`.
    pub fn limits(&self) -> &pdp_config::Limits {
        self.cx.limits()
    }
}
