//! TLS for `pdp serve`: the `auto` local CA and certificate (created once under the state dir, reused
//! after), certificate/key files (reloaded when they change: the new config is built first and swapped in
//! only if it is good, so a bad renewal never takes the listener down), and the rustls server config.
//!
//! Deliberately not here: ACME, client certificates, SNI with several certificates.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Files of the `auto` mode, under `<state>/tls`.
#[derive(Clone, Debug)]
pub struct AutoPaths {
    /// The local CA certificate users trust (`DENO_CERT`, `NODE_EXTRA_CA_CERTS`).
    pub ca_cert: PathBuf,
    /// The CA's private key (0600).
    pub ca_key: PathBuf,
    /// The server certificate (leaf then CA).
    pub cert: PathBuf,
    /// The server key (0600).
    pub key: PathBuf,
    meta: PathBuf,
}

impl AutoPaths {
    /// The files under `dir`.
    pub fn new(dir: &Path) -> AutoPaths {
        AutoPaths {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert: dir.join("localhost.pem"),
            key: dir.join("localhost-key.pem"),
            meta: dir.join("pdp-tls.json"),
        }
    }
}

/// What `auto` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoOutcome {
    /// Made a new CA and certificate.
    Created,
    /// The CA was reused; the server certificate was renewed (new host names or near expiry).
    Renewed,
    /// Both reused as they were.
    Reused,
}

/// A TLS problem, always naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("cannot access {}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{} holds no usable {what}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the certificate {} and key {} cannot be used together: {source}", .cert.display(), .key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// A file of the local CA could not be written.
    #[error(transparent)]
    File(#[from] pdp_toolchain::files::FileError),
    /// Certificate generation failed.
    #[error("cannot create the local certificate authority: {0}")]
    Generate(String),
}

impl TlsError {
    /// One line telling the user what to do.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            TlsError::Io { .. } => {
                "check the path and permissions (`[serve] tls-cert` / `tls-key`, or the state dir for `tls = \"auto\"`)"
                    .into()
            }
            TlsError::Pem { .. } => {
                "the file must be PEM: `-----BEGIN CERTIFICATE-----` / `-----BEGIN PRIVATE KEY-----` blocks".into()
            }
            TlsError::Pair { .. } => {
                "`serve.tls-key` must be the private key of the first certificate in `serve.tls-cert`".into()
            }
            TlsError::File(_) => "check that the state dir (`.pdp`, PDP_STATE_DIR) is writable".into(),
            TlsError::Generate(_) => "delete the state dir's `tls` folder and start again".into(),
        })
    }

    /// Whether the user can fix it by changing input: a certificate or key file that is missing,
    /// unreadable or unusable. A local CA that cannot be written or generated is not.
    pub fn is_user_error(&self) -> bool {
        matches!(self, TlsError::Io { .. } | TlsError::Pem { .. } | TlsError::Pair { .. })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

/// A server config and when its certificate expires.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// For handshakes.
    pub config: Arc<ServerConfig>,
    /// The leaf certificate's end (Unix time), when it parses as X.509.
    pub expires: Option<i64>,
}

/// Builds a rustls server config (HTTP/1.1 over ALPN) from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let cert_pem = fs_err::read(cert).map_err(|e| TlsError::Io { path: cert.to_path_buf(), source: e })?;
    let key_pem = fs_err::read(key).map_err(|e| TlsError::Io { path: key.to_path_buf(), source: e })?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::Pem { path: cert.to_path_buf(), what: "certificate" });
    }
    let expires = x509_parser::parse_x509_certificate(&chain[0]).ok().map(|(_, c)| c.validity().not_after.timestamp());
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| TlsError::Pem { path: key.to_path_buf(), what: "private key" })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Pair { cert: cert.to_path_buf(), key: key.to_path_buf(), source })?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|source| TlsError::Pair { cert: cert.to_path_buf(), key: key.to_path_buf(), source })?;
    // HTTP/1.1 only: Deno's fetch over HTTP/2 waits ~40 ms per request here (its frames go out as separate
    // small writes and meet delayed ACKs; ARCHITECTURE.md, "Decisions"). Keep-alive HTTP/1.1 has no such stall.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded { config: Arc::new(config), expires })
}

/// Recorded next to the `auto` files: what the server certificate covers and until when.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Meta {
    hosts: Vec<String>,
    not_after_unix: u64,
}

/// How long a new server certificate is valid, and how close to its end it is renewed.
const LEAF_DAYS: u64 = 397;
const RENEW_BEFORE_DAYS: u64 = 30;
const CA_DAYS: u64 = 3650;

/// Makes sure the `auto` CA and a server certificate for `hosts` (plus localhost, 127.0.0.1, ::1) exist
/// under `dir`. The CA is created once and kept, so clients trust it once; the server certificate is
/// re-issued by the same CA when the host names change or it nears its end.
pub fn ensure_auto(dir: &Path, extra_hosts: &[String]) -> Result<(AutoPaths, AutoOutcome), TlsError> {
    let paths = AutoPaths::new(dir);
    fs_err::create_dir_all(dir).map_err(|source| pdp_toolchain::files::FileError {
        action: "create",
        path: dir.to_path_buf(),
        source,
    })?;
    // Replicas sharing one state directory (compose's scaled variant) start together: one creates the
    // CA and certificate while the others wait, then reuse them.
    let _lock = pdp_toolchain::files::lock_blocking(&dir.join(".auto.lock"))?;
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    for h in extra_hosts {
        if !hosts.contains(h) {
            hosts.push(h.clone());
        }
    }
    let now = unix_now();
    let meta: Option<Meta> = fs_err::read_to_string(&paths.meta).ok().and_then(|t| serde_json::from_str(&t).ok());
    let ca_ok = paths.ca_cert.is_file() && paths.ca_key.is_file();
    let leaf_ok = paths.cert.is_file()
        && paths.key.is_file()
        && meta.as_ref().is_some_and(|m| m.hosts == hosts && m.not_after_unix > now + RENEW_BEFORE_DAYS * 86_400);
    if ca_ok && leaf_ok {
        return Ok((paths, AutoOutcome::Reused));
    }
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let (issuer, outcome) = if ca_ok {
        // The issuer is the CA's name and key; the name is fixed, so the stored key is all that is needed.
        let key_pem = fs_err::read_to_string(&paths.ca_key).map_err(|e| io(&paths.ca_key)(e))?;
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(gen_err)?;
        (rcgen::Issuer::new(ca_params(now), key), AutoOutcome::Renewed)
    } else {
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let params = ca_params(now);
        let cert = params.self_signed(&key).map_err(gen_err)?;
        write_secret_file(&paths.ca_key, key.serialize_pem().as_bytes())?;
        write_file(&paths.ca_cert, cert.pem().as_bytes())?;
        (rcgen::Issuer::new(params, key), AutoOutcome::Created)
    };
    let leaf_key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
            Err(_) => h.clone().try_into().map(rcgen::SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(gen_err)?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
    let (nb, na) = validity(now, LEAF_DAYS);
    params.not_before = nb;
    params.not_after = na;
    let leaf = params.signed_by(&leaf_key, &issuer).map_err(gen_err)?;
    let ca_pem = fs_err::read_to_string(&paths.ca_cert).map_err(|e| io(&paths.ca_cert)(e))?;
    write_secret_file(&paths.key, leaf_key.serialize_pem().as_bytes())?;
    write_file(&paths.cert, format!("{}{}", leaf.pem(), ca_pem).as_bytes())?;
    let meta = Meta { hosts, not_after_unix: now + LEAF_DAYS * 86_400 };
    write_file(&paths.meta, serde_json::to_string_pretty(&meta).unwrap_or_default().as_bytes())?;
    Ok((paths, outcome))
}

/// The local CA's certificate parameters; its name never changes, so a stored CA key can sign again.
fn ca_params(now: u64) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.distinguished_name.push(rcgen::DnType::CommonName, "pdp local development CA");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "pdp");
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let (nb, na) = validity(now, CA_DAYS);
    params.not_before = nb;
    params.not_after = na;
    params
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// From an hour ago (clock skew) to `days` from now.
fn validity(now: u64, days: u64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let at = |secs: u64| {
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    (at(now.saturating_sub(3600)), at(now + days * 86_400))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    Ok(pdp_toolchain::files::write_atomic(path, bytes, Some(0o644))?)
}

fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    Ok(pdp_toolchain::files::write_atomic(path, bytes, Some(0o600))?)
}

/// The TLS config new connections use; swapped in place when the files change.
#[derive(Clone)]
pub struct Current(Arc<RwLock<Loaded>>);

impl Current {
    /// Starts with `loaded`.
    pub fn new(loaded: Loaded) -> Current {
        Current(Arc::new(RwLock::new(loaded)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The config for the next handshake.
    pub fn get(&self) -> Arc<ServerConfig> {
        self.read().config.clone()
    }

    /// When the certificate served now expires (Unix time).
    pub fn expires(&self) -> Option<i64> {
        self.read().expires
    }

    fn set(&self, loaded: Loaded) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = loaded;
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = fs_err::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Watches `cert` and `key` every `every`; when either changes, builds a new config and swaps it in.
/// A bad pair is logged and the old config kept. Existing connections are never touched.
/// The files' state is read when this is called (not when the future first runs), so a change made right
/// after the config was loaded is not missed.
pub fn watch(current: Current, cert: PathBuf, key: PathBuf, every: Duration) -> impl Future<Output = ()> {
    let last = (stamp(&cert), stamp(&key));
    watch_from(current, cert, key, every, last)
}

type Stamps = (Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

async fn watch_from(current: Current, cert: PathBuf, key: PathBuf, every: Duration, mut last: Stamps) {
    loop {
        tokio::time::sleep(every).await;
        let now = (stamp(&cert), stamp(&key));
        if now == last {
            continue;
        }
        // Give a writer that replaces both files a moment to finish the second one.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = (stamp(&cert), stamp(&key));
        last = now;
        match load(&cert, &key) {
            Ok(config) => {
                current.set(config);
                tracing::info!(target: "pdp::tls", cert = %cert.display(), "reloaded the TLS certificate; new connections use it");
            }
            Err(e) => {
                let hint = e.hint().unwrap_or_default();
                tracing::warn!(target: "pdp::tls", cert = %cert.display(), "kept the previous TLS certificate: {e} ({hint})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_creates_once_then_reuses_and_renews_for_new_hosts_with_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, outcome) = ensure_auto(dir.path(), &[]).unwrap();
        assert_eq!(outcome, AutoOutcome::Created);
        let ca = fs_err::read(&paths.ca_cert).unwrap();
        load(&paths.cert, &paths.key).unwrap();
        let (_, outcome) = ensure_auto(dir.path(), &[]).unwrap();
        assert_eq!(outcome, AutoOutcome::Reused);
        let (_, outcome) = ensure_auto(dir.path(), &["pdp.test".into()]).unwrap();
        assert_eq!(outcome, AutoOutcome::Renewed);
        assert_eq!(fs_err::read(&paths.ca_cert).unwrap(), ca, "the CA users trust must not change");
        load(&paths.cert, &paths.key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs_err::metadata(&paths.ca_key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    /// Reload builds the new config first and swaps only a good one; a bad pair leaves the old in place.
    #[tokio::test(flavor = "current_thread")]
    async fn a_changed_pair_is_swapped_in_and_a_bad_one_is_ignored() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (pa, _) = ensure_auto(a.path(), &[]).unwrap();
        let (pb, _) = ensure_auto(b.path(), &[]).unwrap();
        let live = tempfile::tempdir().unwrap();
        let (cert, key) = (live.path().join("cert.pem"), live.path().join("key.pem"));
        fs_err::copy(&pa.cert, &cert).unwrap();
        fs_err::copy(&pa.key, &key).unwrap();
        let current = Current::new(load(&cert, &key).unwrap());
        // The auto certificate's end, read from the certificate itself: 397 days from now.
        let days = (current.expires().unwrap() - i64::try_from(crate::metrics::unix_now()).unwrap()) / 86_400;
        assert!((396..=397).contains(&days), "{days} days");
        let first = current.get();
        let watcher = tokio::spawn(watch(current.clone(), cert.clone(), key.clone(), Duration::from_millis(50)));
        // A renewed pair (another CA's, so the bytes surely differ): swapped in.
        fs_err::copy(&pb.key, &key).unwrap();
        fs_err::copy(&pb.cert, &cert).unwrap();
        let mut swapped = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !Arc::ptr_eq(&current.get(), &first) {
                swapped = true;
                break;
            }
        }
        assert!(swapped, "the new pair was never swapped in");
        let second = current.get();
        // A half-written or mismatched pair: logged and ignored, the previous config stays.
        fs_err::copy(&pa.key, &key).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(Arc::ptr_eq(&current.get(), &second), "a mismatched pair must not replace a good config");
        watcher.abort();
    }

    #[test]
    fn mismatched_or_empty_files_are_named() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (pa, _) = ensure_auto(a.path(), &[]).unwrap();
        let (pb, _) = ensure_auto(b.path(), &[]).unwrap();
        let err = load(&pa.cert, &pb.key).unwrap_err();
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
        let empty = a.path().join("empty.pem");
        fs_err::write(&empty, "").unwrap();
        let err = load(&empty, &pa.key).unwrap_err();
        assert!(err.to_string().contains("empty.pem") && err.to_string().contains("certificate"), "{err}");
    }
}
