//! The HTTP client pdp downloads and asks registries with: rustls (ring) with the system's roots, exactly
//! the proxies of the resolved [`NetworkConfig`], connect and read timeouts, and retries with backoff for
//! what looks transient (timeouts, refused connections, 408, 429, 5xx). Its error carries the URL
//! (redacted) and how many attempts were made.
//!
//! Deliberately not here: reading the environment (the proxies come resolved from `pdp-config`), what is
//! downloaded and where it goes (`fetch`, `engines`), printing.

use std::sync::Once;
use std::time::Duration;

use pdp_config::{NetworkConfig, redact_url};

/// How often and how patiently transient failures are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time after.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 4, base_delay: Duration::from_millis(500) }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.base_delay.saturating_mul(1 << (attempt.saturating_sub(1)).min(8))
    }
}

/// A request that failed, after retries when the failure looked transient.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request did not get an answer (connection, TLS, timeout, a body cut short).
    #[error("download of {url} failed{}", attempts_note(*.attempts))]
    Request {
        /// The URL (redacted).
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered a status pdp cannot use.
    #[error("{url} answered {status}{}", attempts_note(*.attempts))]
    Status {
        /// The URL (redacted).
        url: String,
        /// The HTTP status.
        status: u16,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The answer is not the JSON document asked for.
    #[error("{url} did not answer JSON")]
    NotJson {
        /// The URL (redacted).
        url: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The client could not be built (a proxy reqwest refuses, the TLS backend).
    #[error("cannot set up the HTTP client{}", .proxy.as_ref().map(|p| format!(" with the proxy {p}")).unwrap_or_default())]
    Setup {
        /// The proxy, redacted, when it was the problem.
        proxy: Option<String>,
        /// reqwest's reason.
        #[source]
        source: reqwest::Error,
    },
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 { format!(" (after {attempts} attempts)") } else { String::new() }
}

impl HttpError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            HttpError::Request { .. } | HttpError::Status { .. } => {
                "check the network and the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)".into()
            }
            HttpError::NotJson { .. } => "the server is not an npm registry; check PDP_NPM_REGISTRY".into(),
            HttpError::Setup { .. } => "fix HTTPS_PROXY / HTTP_PROXY (a URL such as http://proxy:3128)".into(),
        })
    }

    /// The same error, counting `attempts` attempts.
    pub(crate) fn with_attempts(self, attempts: u32) -> HttpError {
        match self {
            HttpError::Request { url, source, .. } => HttpError::Request { url, attempts, source },
            HttpError::Status { url, status, .. } => HttpError::Status { url, status, attempts },
            other => other,
        }
    }
}

/// The HTTP client pdp downloads with.
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl Http {
    /// A client with rustls (ring), the system's root certificates, and exactly the configured proxies
    /// (the https one falls back to the http one, as curl does).
    pub fn new(network: &NetworkConfig, retry: RetryPolicy) -> Result<Http, HttpError> {
        static PROVIDER: Once = Once::new();
        PROVIDER.call_once(|| {
            // Fails only when another provider is already installed, which is just as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let setup = |proxy: Option<&str>| {
            let proxy = proxy.map(redact_url);
            move |source| HttpError::Setup { proxy, source }
        };
        let no_proxy = network.no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .user_agent(concat!("pdp/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60));
        if let Some(p) = network.https_proxy.as_deref().or(network.http_proxy.as_deref()) {
            builder = builder.proxy(reqwest::Proxy::https(p).map_err(setup(Some(p)))?.no_proxy(no_proxy.clone()));
        }
        if let Some(p) = network.http_proxy.as_deref() {
            builder = builder.proxy(reqwest::Proxy::http(p).map_err(setup(Some(p)))?.no_proxy(no_proxy));
        }
        let client = builder.build().map_err(setup(None))?;
        Ok(Http { client, retry })
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// Starts a GET (one attempt, the caller streams the body and decides about retries).
    pub(crate) async fn send_get(&self, url: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.client.get(url).send().await
    }

    /// GETs a JSON document; `None` on 404. Transient failures are retried.
    pub async fn get_json(&self, url: &str) -> Result<Option<serde_json::Value>, HttpError> {
        match self.get_bytes(url).await? {
            None => Ok(None),
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|source| HttpError::NotJson { url: redact_url(url), source }),
        }
    }

    /// GETs a small body; `None` on 404. Transient failures are retried.
    pub async fn get_bytes(&self, url: &str) -> Result<Option<Vec<u8>>, HttpError> {
        let mut attempt = 1;
        loop {
            let result = async {
                let resp = self.client.get(url).send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, body))
            }
            .await;
            let transient = match &result {
                Ok((status, _)) => is_transient_status(status.as_u16()),
                Err(e) => is_transient(e),
            };
            if transient && attempt < self.retry.attempts {
                tokio::time::sleep(self.retry.delay(attempt)).await;
                attempt += 1;
                continue;
            }
            return match result {
                Ok((status, _)) if status == reqwest::StatusCode::NOT_FOUND => Ok(None),
                Ok((status, body)) if status.is_success() => Ok(Some(body.to_vec())),
                Ok((status, _)) => {
                    Err(HttpError::Status { url: redact_url(url), status: status.as_u16(), attempts: attempt })
                }
                Err(source) => Err(HttpError::Request { url: redact_url(url), attempts: attempt, source }),
            };
        }
    }
}

/// Whether a status is worth another attempt.
pub(crate) fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Whether a failed request is worth another attempt.
pub(crate) fn is_transient(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let r = RetryPolicy { attempts: 4, base_delay: Duration::from_millis(500) };
        let got: Vec<u128> = (1..4).map(|a| r.delay(a).as_millis()).collect();
        assert_eq!(got, [500, 1000, 2000]);
    }

    #[test]
    fn transient_statuses() {
        assert!([408, 429, 500, 503].into_iter().all(is_transient_status));
        assert!(![200, 301, 400, 403, 404].into_iter().any(is_transient_status));
    }
}
