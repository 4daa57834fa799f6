//! The replicas of one deployment (`[serve.cluster]`): owner references in the transaction ids this
//! replica hands out (minted and checked under the cluster secret, so no client can make pdp connect to
//! an address pdp did not mint), the authenticated peer channel (every peer request signed with a keyed
//! MAC over its time, a one-use nonce, its method, path, caller and body), the relay of a request to the
//! replica that owns its transaction (one attempt, never re-sent), and the peer list (names resolved when
//! it is needed, so a Kubernetes headless Service stands for every replica).
//!
//! Deliberately not here: what a protocol's routes mean (the routers decide what to ask peers), serving
//! the cluster listener (`server`), the transaction table (`txs`: the owner only ever sees its own ids).

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use pdp_config::Secret;
use sha2::{Digest, Sha256};

use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::forward::{self, ForwardError};
use super::respond::{self, Body};
use super::txs::{Role, TxErrors};
use crate::metrics::{Metrics, PeerLabels};

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a minted transaction id: `pdp1_<owner>_<mac>_<the child's id>`.
const PREFIX: &str = "pdp1_";
/// Bytes of the MAC kept in an owner reference (128 bits).
const REF_MAC: usize = 16;
/// How far a peer request's clock may be from ours.
const SKEW: u64 = 60;
/// The header carrying a peer request's authentication: `<unix seconds>.<nonce>.<mac>`.
pub const PEER_AUTH: &str = "pdp-peer-auth";
/// The request headers a peer request's MAC covers: the ones the owner acts on.
const SIGNED_HEADERS: &[&str] = &["prisma-engine-hash", "content-type", "cache-control", "accelerate-cache-tags"];
/// The header naming the API key the first replica accepted (its id, never the key), for the owner's log.
pub const PEER_KEY: &str = "pdp-peer-key";

/// The cluster route a peer asks a 4.x–6.x schema at: `GET /_pdp/schema/<hash>`.
pub const SCHEMA_PATH: &str = "/_pdp/schema/";
/// The cluster route an invalidation reaches a peer's cache at.
pub const INVALIDATE_PATH: &str = "/_pdp/invalidate";

/// Who sent a request, put in its extensions by the dispatcher.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The id of the API key that was checked (on the first replica, for a relayed request).
    pub key: Arc<str>,
    /// Whether it came over the cluster channel (a relayed request is never relayed again).
    pub from_peer: bool,
}

/// Where a request of an interactive transaction is served.
#[derive(Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// Here, as this role (the child's own transaction id, the owner reference taken off).
    Here(Role<'a>),
    /// By the replica at this cluster address.
    Owner(SocketAddr),
}

/// This replica's view of the cluster.
pub struct Cluster {
    key: HmacSha256,
    me: SocketAddr,
    peers: Vec<String>,
    seen: Mutex<Nonces>,
    /// Owner references older than this are refused: no transaction lives longer, and an old pod's
    /// address may belong to another pod by now.
    max_age: Duration,
    /// Connections to peers, pooled for the whole replica (not per client connection, so that many client
    /// connections never hold many idle connections to each peer).
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The peers found now.
#[derive(Debug, Default)]
pub struct Peers {
    /// Their cluster addresses.
    pub addrs: Vec<SocketAddr>,
    /// Entries of `peers` that did not resolve (an invalidation counts them as missed).
    pub unresolved: Vec<String>,
}

#[derive(Default)]
struct Nonces {
    order: VecDeque<(u64, [u8; 16])>,
    set: HashSet<[u8; 16]>,
}

/// An owner reference that fails its check: not minted by this deployment.
#[derive(Debug, PartialEq, Eq)]
pub struct Forged;

/// Why a peer request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerRefused {
    /// No or malformed authentication header.
    Missing,
    /// Its time is too far from ours (a replay, or a clock to fix).
    Stale,
    /// The MAC does not match: another secret, or a forgery.
    BadMac,
    /// The nonce was seen already: a replay.
    Replayed,
}

impl PeerRefused {
    /// What the log says.
    pub fn message(&self) -> &'static str {
        match self {
            PeerRefused::Missing => "no valid pdp-peer-auth header",
            PeerRefused::Stale => "its timestamp is more than 60s from this replica's clock",
            PeerRefused::BadMac => "its MAC does not match (another cluster secret, or a forgery)",
            PeerRefused::Replayed => "its nonce was used before (a replay)",
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn encode_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("a{}{:04x}", hex::encode(ip.octets()), addr.port()),
        IpAddr::V6(ip) => format!("b{}{:04x}", hex::encode(ip.octets()), addr.port()),
    }
}

fn decode_addr(code: &str) -> Option<SocketAddr> {
    let bytes = hex::decode(code.get(1..)?).ok()?;
    match (code.as_bytes().first()?, bytes.len()) {
        (b'a', 6) => {
            let ip = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([bytes[4], bytes[5]])))
        }
        (b'b', 18) => {
            let octets: [u8; 16] = bytes[..16].try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), u16::from_be_bytes([bytes[16], bytes[17]])))
        }
        _ => None,
    }
}

impl Cluster {
    /// This replica, at cluster address `me`, with `peers` (`host:port` entries) and the shared `secret`;
    /// the transaction ids it mints are honoured for `max_age`.
    pub fn new(secret: &Secret, me: SocketAddr, peers: Vec<String>, max_age: Duration) -> Cluster {
        // HMAC takes keys of any length.
        let key = HmacSha256::new_from_slice(secret.expose().as_bytes()).unwrap_or_else(|_| unreachable!());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Cluster { key, me, peers, seen: Mutex::new(Nonces::default()), max_age, client }
    }

    /// This replica's cluster address.
    pub fn me(&self) -> SocketAddr {
        self.me
    }

    /// The configured peer entries (names unresolved).
    pub fn peer_entries(&self) -> &[String] {
        &self.peers
    }

    fn ref_mac(&self, owner: &str, minted: &str, id: &str) -> HmacSha256 {
        let mut mac = self.key.clone();
        for part in ["owner", owner, minted] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        mac.update(id.as_bytes());
        mac
    }

    /// The id handed to the client for the child's transaction `id`: it names this replica as the owner,
    /// and when it was minted.
    pub fn mint(&self, id: &str) -> String {
        self.mint_at(id, now_secs())
    }

    fn mint_at(&self, id: &str, at: u64) -> String {
        let owner = encode_addr(self.me);
        let minted = format!("{at:x}");
        let tag = self.ref_mac(&owner, &minted, id).finalize().into_bytes();
        format!("{PREFIX}{owner}_{minted}_{}_{id}", hex::encode(&tag[..REF_MAC]))
    }

    /// Where a request doing `role` is served: ids this pdp did not mint in cluster form are its own (or
    /// unknown, which the transaction table answers); a minted one is checked before anything is
    /// connected to, and `Err` means it failed the check.
    pub fn place<'a>(&self, role: Role<'a>) -> Result<Place<'a>, Forged> {
        let Some(id) = role.id() else { return Ok(Place::Here(role)) };
        let Some(rest) = id.strip_prefix(PREFIX) else { return Ok(Place::Here(role)) };
        let mut parts = rest.splitn(4, '_');
        let (Some(owner), Some(minted), Some(tag), Some(child_id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Forged);
        };
        let tag = hex::decode(tag).map_err(|_| Forged)?;
        if child_id.is_empty() || tag.len() != REF_MAC {
            return Err(Forged);
        }
        self.ref_mac(owner, minted, child_id).verify_truncated_left(&tag).map_err(|_| Forged)?;
        // Authentic but older than any transaction lives: its owner's address may be another pod's now.
        let at = u64::from_str_radix(minted, 16).map_err(|_| Forged)?;
        if now_secs().saturating_sub(at) > self.max_age.as_secs() {
            return Err(Forged);
        }
        let addr = decode_addr(owner).ok_or(Forged)?;
        if addr != self.me {
            return Ok(Place::Owner(addr));
        }
        Ok(Place::Here(match role {
            Role::Use(_) => Role::Use(child_id),
            Role::End(_) => Role::End(child_id),
            other => other,
        }))
    }

    /// The MAC of a peer request: its time and nonce, the replica it is for, method, path, the caller's key
    /// id, the headers the owner acts on, and the body.
    #[allow(clippy::too_many_arguments)]
    fn request_mac(
        &self,
        ts: u64,
        nonce: &str,
        to: SocketAddr,
        method: &Method,
        path: &str,
        caller: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> HmacSha256 {
        let mut mac = self.key.clone();
        let (ts, to) = (ts.to_string(), to.to_string());
        for part in ["peer", &ts, nonce, &to, method.as_str(), path, caller] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        for name in SIGNED_HEADERS {
            for value in headers.get_all(*name) {
                mac.update(name.as_bytes());
                mac.update(b":");
                mac.update(value.as_bytes());
                mac.update(b"\0");
            }
        }
        mac.update(&Sha256::digest(body));
        mac
    }

    /// The headers that authenticate a peer request for the replica at `to` (`path` with its query).
    pub fn sign(
        &self,
        to: SocketAddr,
        method: &Method,
        path: &str,
        caller: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> [(&'static str, HeaderValue); 2] {
        let ts = now_secs();
        let nonce = hex::encode(uuid::Uuid::new_v4().as_bytes());
        let tag = self.request_mac(ts, &nonce, to, method, path, caller, headers, body).finalize().into_bytes();
        let tag = hex::encode(tag);
        let auth = HeaderValue::from_str(&format!("{ts}.{nonce}.{tag}")).unwrap_or_else(|_| unreachable!());
        let key = HeaderValue::from_str(caller).unwrap_or_else(|_| HeaderValue::from_static("-"));
        [(PEER_AUTH, auth), (PEER_KEY, key)]
    }

    /// The checks a peer request's head can take before its body is read: an authentication header of
    /// the right shape with a current time (a stranger's request is refused without reading its body).
    pub fn precheck(&self, headers: &HeaderMap) -> Result<(), PeerRefused> {
        let auth = headers.get(PEER_AUTH).and_then(|v| v.to_str().ok()).ok_or(PeerRefused::Missing)?;
        let ts: u64 = auth.split('.').next().and_then(|t| t.parse().ok()).ok_or(PeerRefused::Missing)?;
        if now_secs().abs_diff(ts) > SKEW {
            return Err(PeerRefused::Stale);
        }
        Ok(())
    }

    /// Checks a peer request; the id of the key its first replica accepted.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Result<Arc<str>, PeerRefused> {
        let auth = headers.get(PEER_AUTH).and_then(|v| v.to_str().ok()).ok_or(PeerRefused::Missing)?;
        let caller = headers.get(PEER_KEY).and_then(|v| v.to_str().ok()).unwrap_or("-");
        let mut parts = auth.splitn(3, '.');
        let (Some(ts), Some(nonce), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(PeerRefused::Missing);
        };
        let ts: u64 = ts.parse().map_err(|_| PeerRefused::Missing)?;
        let nonce_bytes: [u8; 16] =
            hex::decode(nonce).ok().and_then(|b| b.try_into().ok()).ok_or(PeerRefused::Missing)?;
        let tag = hex::decode(tag).map_err(|_| PeerRefused::Missing)?;
        self.request_mac(ts, nonce, self.me, method, path, caller, headers, body)
            .verify_slice(&tag)
            .map_err(|_| PeerRefused::BadMac)?;
        let now = now_secs();
        if now.abs_diff(ts) > SKEW {
            return Err(PeerRefused::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // A nonce is remembered as long as its timestamp could still pass the check above.
        while seen.order.front().is_some_and(|(t, _)| t + 2 * SKEW < now) {
            if let Some((_, old)) = seen.order.pop_front() {
                seen.set.remove(&old);
            }
        }
        if !seen.set.insert(nonce_bytes) {
            return Err(PeerRefused::Replayed);
        }
        seen.order.push_back((ts, nonce_bytes));
        Ok(Arc::from(caller))
    }

    /// The peers' cluster addresses now: every entry resolved (a name to all its addresses), this
    /// replica's own left out, duplicates dropped. An entry that does not resolve is logged and skipped.
    pub async fn peers(&self) -> Peers {
        let mut out = Peers::default();
        for entry in &self.peers {
            match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(entry.as_str())).await {
                Ok(Ok(addrs)) => {
                    for a in addrs {
                        if a != self.me && !out.addrs.contains(&a) {
                            out.addrs.push(a);
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "pdp::cluster", peer = %entry, "the peer does not resolve: {e}");
                    out.unresolved.push(entry.clone());
                }
                Err(_) => {
                    tracing::warn!(target: "pdp::cluster", peer = %entry, "the peer did not resolve within 2s");
                    out.unresolved.push(entry.clone());
                }
            }
        }
        out
    }

    /// Sends one signed request to the peer at `addr` on the replica's shared pool of peer connections:
    /// one attempt, never re-sent (a pooled connection found closed before the request was written is the
    /// only case another connection carries it).
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        caller: &str,
        body: Bytes,
        limit: Duration,
    ) -> Result<Response<Incoming>, ForwardError> {
        let uri: http::Uri =
            format!("http://{addr}{path}").parse().map_err(|e| ForwardError::Unreachable(format!("{e}")))?;
        let mut out = HeaderMap::with_capacity(headers.len() + 2);
        for (name, value) in headers {
            if forward::forwardable(name) {
                out.append(name.clone(), value.clone());
            }
        }
        for (name, value) in self.sign(addr, &method, path, caller, &out, &body) {
            out.insert(name, value);
        }
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = out;
        match tokio::time::timeout(limit, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                // The legacy client's own message is generic: the causes say what happened.
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    source = s.source();
                }
                Err(ForwardError::Unreachable(why))
            }
            Err(_) => Err(ForwardError::Timeout(limit)),
        }
    }
}

/// Counts one event on the cluster channel.
pub fn count(metrics: &Metrics, kind: &'static str, outcome: &'static str) {
    metrics.peer.get_or_create(&PeerLabels { kind, outcome }).inc();
}

/// The answer to an owner reference that failed its check: the protocol's transaction error, with
/// nothing connected to.
pub fn forged(errors: &dyn TxErrors, metrics: &Metrics, id: &str) -> Response<Body> {
    count(metrics, "forged", "refused");
    tracing::warn!(target: "pdp::cluster", "refused: a transaction id whose owner reference fails its check");
    respond::json(
        StatusCode::CONFLICT,
        &errors.tx_error(&format!(
            "Transaction API error: Transaction not found. The transaction id {} was not issued by this \
             deployment, or is older than any transaction lives (its owner reference fails the check)",
            id.chars().take(80).collect::<String>()
        )),
    )
}

/// The answer when the owner of a transaction could not be asked.
pub fn owner_unreachable(errors: &dyn TxErrors, id: &str, owner: SocketAddr, why: &str) -> Response<Body> {
    respond::json(
        StatusCode::CONFLICT,
        &errors.tx_error(&format!(
            "Transaction API error: the replica {owner} that holds transaction {id} cannot be reached ({why}); \
             nothing was re-sent. If that replica stopped, the database rolled the transaction back: run the \
             whole transaction again."
        )),
    )
}

/// The answer to a relayed request whose transaction another replica owns (relays are never relayed).
pub fn not_ours(errors: &dyn TxErrors, id: &str) -> Response<Body> {
    respond::json(
        StatusCode::CONFLICT,
        &errors.tx_error(&format!(
            "Transaction API error: transaction {id} was relayed to a replica that does not own it (peers disagree \
             on their addresses: check `[serve.cluster] advertise` on every replica)"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(me: &str, secret: &str) -> Cluster {
        Cluster::new(&Secret::new(secret), me.parse().unwrap(), vec![], Duration::from_secs(120))
    }

    const S: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn owner_references_round_trip_and_forgeries_fail() {
        let a = cluster("10.0.0.5:4468", S);
        let b = cluster("[fd00::7]:4468", S);
        let id = a.mint("3f9c-uuid_x");
        assert!(id.starts_with("pdp1_a0a0000051174_"), "{id}");
        // Authentic but older than a transaction lives: refused.
        assert_eq!(b.place(Role::Use(&a.mint_at("t", now_secs() - 3600))), Err(Forged));
        assert_eq!(a.place(Role::Use(&id)), Ok(Place::Here(Role::Use("3f9c-uuid_x"))));
        assert_eq!(b.place(Role::End(&id)), Ok(Place::Owner("10.0.0.5:4468".parse().unwrap())));
        let v6 = b.mint("t");
        assert_eq!(a.place(Role::Use(&v6)), Ok(Place::Owner("[fd00::7]:4468".parse().unwrap())));
        // Another address with the same MAC, another child id, another secret, garbage: all refused.
        let moved = id.replacen("a0a000005", "a7f000001", 1);
        assert_eq!(b.place(Role::Use(&moved)), Err(Forged));
        assert_eq!(b.place(Role::Use(&id.replace("uuid_x", "uuid_y"))), Err(Forged));
        assert_eq!(cluster("10.0.0.6:4468", &S.replace('0', "1")).place(Role::Use(&id)), Err(Forged));
        assert_eq!(a.place(Role::Use("pdp1_zz")), Err(Forged));
        assert_eq!(a.place(Role::Use("pdp1_a0a0000051174_1_00_x")), Err(Forged));
        // Ids outside the cluster form are the child's own; requests outside transactions are untouched.
        assert_eq!(a.place(Role::Use("plain-id")), Ok(Place::Here(Role::Use("plain-id"))));
        assert_eq!(a.place(Role::Start), Ok(Place::Here(Role::Start)));
    }

    #[test]
    fn peer_requests_verify_once_and_only_unaltered() {
        let a = cluster("10.0.0.5:4468", S);
        let b = cluster("10.0.0.6:4468", S);
        let to_b: SocketAddr = "10.0.0.6:4468".parse().unwrap();
        let mut base = HeaderMap::new();
        base.insert("prisma-engine-hash", HeaderValue::from_static("7.10.0"));
        let headers = |signed: [(&'static str, HeaderValue); 2]| {
            let mut h = base.clone();
            for (n, v) in signed {
                h.insert(n, v);
            }
            h
        };
        let h = headers(a.sign(to_b, &Method::POST, "/transaction/x/commit", "key1", &base, b"{}"));
        assert_eq!(b.precheck(&h), Ok(()));
        assert_eq!(b.verify(&h, &Method::POST, "/transaction/x/commit", b"{}").as_deref(), Ok("key1"));
        assert_eq!(b.verify(&h, &Method::POST, "/transaction/x/commit", b"{}"), Err(PeerRefused::Replayed));
        // Signed for another replica, or with a header the owner acts on changed: refused.
        let c = cluster("10.0.0.7:4468", S);
        let h = headers(a.sign(to_b, &Method::POST, "/transaction/x/commit", "key1", &base, b"{}"));
        assert_eq!(c.verify(&h, &Method::POST, "/transaction/x/commit", b"{}"), Err(PeerRefused::BadMac));
        let mut changed = h.clone();
        changed.insert("prisma-engine-hash", HeaderValue::from_static("7.9.0"));
        assert_eq!(b.verify(&changed, &Method::POST, "/transaction/x/commit", b"{}"), Err(PeerRefused::BadMac));
        let h = headers(a.sign(to_b, &Method::POST, "/transaction/x/commit", "key1", &base, b"{}"));
        assert_eq!(b.verify(&h, &Method::POST, "/transaction/x/rollback", b"{}"), Err(PeerRefused::BadMac));
        assert_eq!(b.verify(&h, &Method::POST, "/transaction/x/commit", b"{ }"), Err(PeerRefused::BadMac));
        let mut other_key = h.clone();
        other_key.insert(PEER_KEY, HeaderValue::from_static("key2"));
        assert_eq!(b.verify(&other_key, &Method::POST, "/transaction/x/commit", b"{}"), Err(PeerRefused::BadMac));
        let stranger = cluster("10.0.0.9:4468", &S.replace('a', "b"));
        let h = headers(stranger.sign(to_b, &Method::GET, "/_pdp/schema/x", "k", &base, b""));
        assert_eq!(b.verify(&h, &Method::GET, "/_pdp/schema/x", b""), Err(PeerRefused::BadMac));
        assert_eq!(b.verify(&HeaderMap::new(), &Method::GET, "/", b""), Err(PeerRefused::Missing));
        // A correct MAC on an old timestamp: a replay from outside the window.
        let ts = now_secs() - 3600;
        let nonce = hex::encode([7u8; 16]);
        let empty = HeaderMap::new();
        let mac = a.request_mac(ts, &nonce, to_b, &Method::GET, "/p", "k", &empty, b"");
        let tag = hex::encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert(PEER_AUTH, HeaderValue::from_str(&format!("{ts}.{nonce}.{tag}")).unwrap());
        h.insert(PEER_KEY, HeaderValue::from_static("k"));
        assert_eq!(b.verify(&h, &Method::GET, "/p", b""), Err(PeerRefused::Stale));
        assert_eq!(b.precheck(&h), Err(PeerRefused::Stale), "refused before the body is read");
        assert_eq!(b.precheck(&HeaderMap::new()), Err(PeerRefused::Missing));
    }

    #[tokio::test]
    async fn the_peer_list_resolves_names_and_leaves_this_replica_out() {
        let c = Cluster::new(
            &Secret::new(S),
            "127.0.0.1:5001".parse().unwrap(),
            vec![
                "127.0.0.1:5001".into(),
                "localhost:5002".into(),
                "127.0.0.1:5002".into(),
                "no-such-host.invalid:1".into(),
            ],
            Duration::from_secs(120),
        );
        let found = c.peers().await;
        assert_eq!(found.unresolved, ["no-such-host.invalid:1"]);
        let peers = found.addrs;
        assert!(peers.contains(&"127.0.0.1:5002".parse().unwrap()), "{peers:?}");
        assert!(!peers.contains(&"127.0.0.1:5001".parse().unwrap()), "{peers:?}");
        assert_eq!(peers.iter().filter(|p| **p == "127.0.0.1:5002".parse::<SocketAddr>().unwrap()).count(), 1);
    }
}
