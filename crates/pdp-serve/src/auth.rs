//! API keys: `Authorization: Bearer <key>` checked against every configured key in constant time. Keys are
//! held only as SHA-256 digests (from `sha256:` entries, or hashed once from `env:` entries at start), so
//! a key never sits in pdp's memory longer than one request, and never reaches a log.
//!
//! Deliberately not here: key scopes, signed keys or a URL inside the key (protocols.md §6 lists why peers
//! did that; pdp keeps the database URL server-side). A key's id in logs is `sha256:` plus the first 8 hex
//! digits of its digest: enough to tell rotated keys apart, useless to an attacker.

use std::sync::Arc;

use http::HeaderMap;
use pdp_config::ApiKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted keys.
#[derive(Clone, Debug)]
pub struct KeySet {
    digests: Vec<[u8; 32]>,
    /// Each key's log id, made once (a request only clones its `Arc`).
    ids: Vec<Arc<str>>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A key that matches none of the configured ones.
    Wrong,
}

impl Refused {
    /// The sentence for the client and the log.
    pub fn message(self) -> &'static str {
        match self {
            Refused::Missing => "no API key: send `Authorization: Bearer <key>` (the `api_key` of the prisma:// URL)",
            Refused::Wrong => {
                "the API key is not accepted by this pdp serve (check the `api_key` of the prisma:// URL)"
            }
        }
    }
}

impl KeySet {
    /// From the resolved `[serve] api-keys` (as `ServeConfig::keys` hands them over: an unset `env:` key
    /// never gets here; one that did would accept nothing).
    pub fn new(keys: &[ApiKey]) -> KeySet {
        let digests = keys
            .iter()
            .filter_map(|k| match k {
                ApiKey::Env { key, .. } => Some(Sha256::digest(key.expose().as_bytes()).into()),
                ApiKey::Sha256(hex) => hex::decode(hex).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()),
                ApiKey::Unset(_) => None,
            })
            .collect::<Vec<[u8; 32]>>();
        let ids = digests.iter().map(|d| Arc::from(key_id(d))).collect();
        KeySet { digests, ids }
    }

    /// How many keys are accepted.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks a request's `Authorization` header; on success returns the key's log id.
    pub fn check(&self, headers: &HeaderMap) -> Result<Arc<str>, Refused> {
        let value = headers.get(http::header::AUTHORIZATION).ok_or(Refused::Missing)?;
        let value = value.to_str().map_err(|_| Refused::Wrong)?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(Refused::Missing)?;
        self.matching(key)
    }

    /// Like [`KeySet::check`], and also HTTP Basic authentication whose password is a key (any user name):
    /// what a browser sends when it navigates to the status page.
    pub fn check_basic_or_bearer(&self, headers: &HeaderMap) -> Result<Arc<str>, Refused> {
        use base64::Engine as _;
        let value = headers.get(http::header::AUTHORIZATION).ok_or(Refused::Missing)?;
        let Some(encoded) =
            value.to_str().ok().and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        else {
            return self.check(headers);
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| Refused::Wrong)?;
        let text = String::from_utf8(decoded).map_err(|_| Refused::Wrong)?;
        let (_user, key) = text.split_once(':').ok_or(Refused::Wrong)?;
        if key.is_empty() {
            return Err(Refused::Missing);
        }
        self.matching(key)
    }

    fn matching(&self, key: &str) -> Result<Arc<str>, Refused> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Compare against every key, always, so timing says nothing about which (or whether one) matched.
        let mut found: Option<usize> = None;
        for (i, d) in self.digests.iter().enumerate() {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(i);
            }
        }
        found.map(|i| self.ids[i].clone()).ok_or(Refused::Wrong)
    }
}

/// `sha256:` + the first 8 hex digits of a key's digest.
pub fn key_id(digest: &[u8; 32]) -> String {
    format!("sha256:{}", &hex::encode(digest)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdp_config::Secret;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn env_and_hashed_keys_are_both_accepted_and_others_refused() {
        let hashed = hex::encode(Sha256::digest(b"second-key"));
        let set = KeySet::new(&[
            ApiKey::Env { var: "PDP_API_KEY".into(), key: Secret::new("first-key") },
            ApiKey::Sha256(hashed.clone()),
        ]);
        assert_eq!(set.len(), 2);
        assert_eq!(*set.check(&headers("Bearer first-key")).unwrap(), key_id(&Sha256::digest(b"first-key").into()));
        assert_eq!(*set.check(&headers("Bearer second-key")).unwrap(), format!("sha256:{}", &hashed[..8]));
        assert_eq!(set.check(&headers("Bearer third-key")), Err(Refused::Wrong));
        assert_eq!(set.check(&headers("Basic Zmlyc3Qta2V5")), Err(Refused::Missing));
        assert_eq!(set.check(&headers("Bearer ")), Err(Refused::Missing));
        assert_eq!(set.check(&HeaderMap::new()), Err(Refused::Missing));
    }

    #[test]
    fn basic_authentication_takes_the_key_as_its_password() {
        use base64::Engine as _;
        let set = KeySet::new(&[ApiKey::Env { var: "K".into(), key: Secret::new("page-key") }]);
        let basic = |s: &str| headers(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s)));
        assert!(set.check_basic_or_bearer(&basic("admin:page-key")).is_ok());
        assert!(set.check_basic_or_bearer(&basic(":page-key")).is_ok());
        assert!(set.check_basic_or_bearer(&headers("Bearer page-key")).is_ok());
        assert_eq!(set.check_basic_or_bearer(&basic("page-key:")), Err(Refused::Missing));
        assert_eq!(set.check_basic_or_bearer(&basic("admin:other")), Err(Refused::Wrong));
        assert_eq!(set.check_basic_or_bearer(&headers("Basic !!!")), Err(Refused::Wrong));
        assert_eq!(set.check_basic_or_bearer(&HeaderMap::new()), Err(Refused::Missing));
        // Everywhere else a Basic header is no key.
        assert_eq!(set.check(&basic("admin:page-key")), Err(Refused::Missing));
    }

    #[test]
    fn the_log_id_does_not_contain_the_key() {
        let set = KeySet::new(&[ApiKey::Env { var: "K".into(), key: Secret::new("s3cr3t-value") }]);
        let id = set.check(&headers("Bearer s3cr3t-value")).unwrap();
        assert!(id.starts_with("sha256:") && id.len() == 15 && !id.contains("s3cr3t"));
    }
}
