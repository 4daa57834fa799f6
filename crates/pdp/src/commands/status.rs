//! `pdp status`: the status page's facts in the terminal. Reads `/status.json` of the configured server
//! (its listen address, TLS as pdp.toml sets it, trusting pdp's own CA under `auto`) or of `--url`, with a
//! key from pdp.toml's `api-keys` (the first `env:` one, resolved as serve resolves it) or `--key-env`;
//! prints a table, redraws it with `--watch`, or the snapshot as JSON with `--json`. Exit 3 when the
//! server says it is not ready.
//!
//! Deliberately not here: what the snapshot holds (`pdp_serve::status`), changing anything on the server.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pdp_config::{ApiKey, Overrides, Secret, Tls};
use serde_json::Value;

use crate::cli::ServerStatusArgs;
use crate::diagnostics::{Status, UserError};
use crate::printer::Printer;

/// The snapshot format this pdp reads.
const FORMAT: u64 = pdp_serve::status::FORMAT as u64;

/// Runs `pdp status`.
pub fn run(
    args: &ServerStatusArgs,
    config_flag: Option<&Path>,
    cwd: &Path,
    printer: &Printer,
) -> anyhow::Result<Status> {
    let target = target(args, config_flag, cwd)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = client(&target)?;
    // Between 0.5 s and an hour; clap has already refused what is not a number.
    let every = args.watch.map(|s| Duration::try_from_secs_f64(s.clamp(0.5, 3600.0)).unwrap_or(Duration::from_secs(2)));
    loop {
        let snapshot = match (runtime.block_on(fetch(&client, &target)), every) {
            (Ok(s), _) => s,
            (Err(e), None) => return Err(e),
            // Watching goes on through a restart of the server: the error is the frame until it answers.
            (Err(e), Some(every)) => {
                if console::Term::stdout().is_term() {
                    print!("\x1b[H\x1b[2J");
                }
                printer.data(&format!("{e:#}"));
                std::thread::sleep(every);
                continue;
            }
        };
        let ready = snapshot.pointer("/ready/status").and_then(Value::as_str) == Some("ready");
        if args.json {
            printer.data(&serde_json::to_string_pretty(&snapshot)?);
        } else {
            if every.is_some() && console::Term::stdout().is_term() {
                // Home and clear: the table redraws in place.
                print!("\x1b[H\x1b[2J");
            }
            printer.data(&render(&snapshot, &target.url));
        }
        match every {
            Some(every) => std::thread::sleep(every),
            None => return Ok(if ready { Status::Success } else { Status::CheckFailed }),
        }
    }
}

/// Where to ask and with what.
struct Target {
    url: url::Url,
    key: Secret,
    /// Extra trust anchors: `--ca` (must exist) and pdp's auto CA (appears on the server's first start).
    roots: Vec<(PathBuf, bool)>,
}

fn target(args: &ServerStatusArgs, config_flag: Option<&Path>, cwd: &Path) -> anyhow::Result<Target> {
    // The key from the environment needs no project; a project's settings fill in what flags do not.
    let project = super::load_config(config_flag, cwd, &Overrides::default());
    let from_env = |name: &str, env: &dyn pdp_config::env::Env| {
        env.var(name).filter(|v| !v.is_empty()).map(Secret::new).ok_or_else(|| {
            UserError::new(
                format!("`--key-env {name}`: the environment variable `{name}` is not set"),
                "export the API key under that name, or leave out --key-env to use pdp.toml's api-keys",
            )
        })
    };
    let (config, env) = match project {
        Ok((c, e)) => (Some(c), Some(e)),
        Err(e) if args.url.is_some() && args.key_env.is_some() => {
            tracing::debug!("no project config for pdp status: {e:#}");
            (None, None)
        }
        Err(e) => return Err(e),
    };
    let key = match (&args.key_env, &config) {
        (Some(name), _) => match &env {
            Some(env) => from_env(name, env)?,
            None => from_env(name, &pdp_config::env::ProcessEnv::new())?,
        },
        (None, Some(c)) => {
            let keys = c.serve.keys()?;
            keys.iter()
                .find_map(|k| match k {
                    ApiKey::Env { key, .. } => Some(key.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    UserError::new(
                        "pdp.toml's `[serve] api-keys` hold only `sha256:` digests, which cannot be sent as a key",
                        "pass `--key-env NAME` naming an environment variable that holds an API key",
                    )
                })?
        }
        (None, None) => unreachable!("without a project both --url and --key-env are given"),
    };
    let mut roots: Vec<(PathBuf, bool)> = args.ca.iter().map(|p| (p.clone(), true)).collect();
    let url = match (&args.url, &config) {
        (Some(u), c) => {
            if let Some(c) = c.as_ref().filter(|c| c.serve.tls == Tls::Auto) {
                roots.push((c.state_dir.join("tls/ca.pem"), false));
            }
            let mut u = url::Url::parse(u).map_err(|e| {
                UserError::new(
                    format!("`--url {u}` is not a URL: {e}"),
                    "give the server's base URL, e.g. https://pdp.example.com",
                )
            })?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(UserError::new(
                    format!("`--url {u}` is not http:// or https://"),
                    "give the server's base URL, e.g. https://pdp.example.com",
                )
                .into());
            }
            // Behind a reverse proxy the server may live under a path: the snapshot is beside it.
            if !u.path().ends_with('/') {
                let path = format!("{}/", u.path());
                u.set_path(&path);
            }
            u.join("status.json")?
        }
        (None, Some(c)) => {
            let scheme = if c.serve.tls == Tls::Off { "http" } else { "https" };
            if c.serve.tls == Tls::Auto {
                roots.push((c.state_dir.join("tls/ca.pem"), false));
            }
            // An unspecified listen address is reached on loopback; the auto certificate names localhost.
            let host = match c.serve.listen.ip() {
                ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            };
            url::Url::parse(&format!("{scheme}://{host}:{}/status.json", c.serve.listen.port()))?
        }
        (None, None) => unreachable!("without a project --url is given"),
    };
    Ok(Target { url, key, roots })
}

fn client(target: &Target) -> anyhow::Result<reqwest::Client> {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("pdp-status/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15));
    for (root, required) in &target.roots {
        let pem = match fs_err::read(root) {
            Ok(p) => p,
            Err(_) if !required => continue,
            Err(e) => {
                return Err(UserError::new(
                    format!("{e}"),
                    "`--ca` names the PEM file of the CA that signed the server's certificate",
                )
                .into());
            }
        };
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            UserError::new(format!("{} is not a PEM certificate: {e}", root.display()), "`--ca` takes a PEM file")
        })?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder.build()?)
}

async fn fetch(client: &reqwest::Client, target: &Target) -> anyhow::Result<Value> {
    let url = &target.url;
    let resp = client.get(url.as_str()).bearer_auth(target.key.expose()).send().await.map_err(|e| {
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        UserError::new(
            format!("cannot reach pdp serve at {}: {why}", origin(url)),
            "is `pdp serve` running there? Give its address with `--url`; for TLS with your own CA, `--ca FILE`",
        )
    })?;
    match resp.status().as_u16() {
        200 => {}
        401 => {
            return Err(UserError::new(
                format!("{} refused the API key", origin(url)),
                "use a key that server accepts: `--key-env NAME`, or the `env:` entry of `[serve] api-keys`",
            )
            .into());
        }
        404 => {
            return Err(UserError::new(
                format!("{} has no /status.json", origin(url)),
                "is it a pdp serve of this version or later?",
            )
            .into());
        }
        other => anyhow::bail!("{} answered /status.json with status {other}", origin(url)),
    }
    let body = resp.bytes().await.map_err(|e| anyhow::anyhow!("{} cut /status.json short: {e}", origin(url)))?;
    let snapshot: Value = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("{} answered /status.json with no JSON: {e}", origin(url)))?;
    match snapshot.get("format").and_then(Value::as_u64) {
        Some(FORMAT) => Ok(snapshot),
        other => Err(UserError::new(
            format!("{} speaks status format {other:?}; this pdp reads {FORMAT}", origin(url)),
            "use the pdp version the server runs",
        )
        .into()),
    }
}

fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    v.pointer(path).unwrap_or(&Value::Null)
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn dur(v: &Value) -> String {
    let Some(s) = v.as_f64() else { return "–".into() };
    let s = s as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn size(n: u64) -> String {
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < 3 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", ["B", "KiB", "MiB", "GiB"][unit])
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells.iter().zip(&width).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// The snapshot as text.
fn render(s: &Value, url: &url::Url) -> String {
    let mut out = Vec::new();
    let status = get(s, "/ready/status").as_str().unwrap_or("?");
    out.push(format!("pdp {} at {} — {status}, up {}", num(get(s, "/pdp")), origin(url), dur(get(s, "/uptime_s"))));
    if let Some(c) = s.get("cluster").filter(|c| !c.is_null()) {
        let list = |p: &str| {
            get(c, p)
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        out.push(format!(
            "replica {}; peers {} (now {})",
            num(get(c, "/advertise")),
            list("/peers"),
            list("/resolved")
        ));
    }
    let routes = get(s, "/traffic/routes").as_array().cloned().unwrap_or_default();
    let rate = routes.iter().filter_map(|r| r["rate"].as_f64()).fold(0.0, |a, b| a + b);
    out.push(format!(
        "requests {} since start · {rate:.1}/s over the last {} · in flight {} · clients {}/{}",
        num(get(s, "/traffic/requests_total")),
        dur(get(s, "/traffic/window_s")),
        num(get(s, "/traffic/in_flight")),
        num(get(s, "/clients/open")),
        num(get(s, "/clients/max")),
    ));
    let oldest = get(s, "/transactions/oldest/0/age_s");
    out.push(format!(
        "transactions open {}{} · abandoned {}",
        num(get(s, "/transactions/open")),
        if oldest.is_null() { String::new() } else { format!(" (oldest {})", dur(oldest)) },
        num(get(s, "/transactions/abandoned")),
    ));
    let cache = get(s, "/cache");
    if cache["enabled"].as_bool() == Some(true) {
        let rate = cache["hit_rate"].as_f64().map_or("–".to_owned(), |r| format!("{:.1} %", r * 100.0));
        out.push(format!(
            "cache {} entries, {} of {} · hit rate {rate} (hits {}, stale {}, misses {})",
            num(&cache["entries"]),
            size(cache["bytes"].as_u64().unwrap_or(0)),
            size(cache["max_bytes"].as_u64().unwrap_or(0)),
            num(&cache["hits"]),
            num(&cache["stale"]),
            num(&cache["misses"]),
        ));
    } else {
        out.push("cache off".into());
    }
    let tls = match s.get("tls").filter(|t| !t.is_null()) {
        Some(t) => format!(
            "TLS certificate: {} days left",
            t["days_left"].as_f64().map_or("?".to_owned(), |d| format!("{d:.0}"))
        ),
        None => "plain HTTP".into(),
    };
    out.push(format!(
        "database connections {} of {} · {tls}",
        num(get(s, "/database/connections")),
        num(get(s, "/database/limit"))
    ));
    let children: Vec<Vec<String>> = get(s, "/children")
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    vec![
                        num(&c["kind"]),
                        num(&c["key"]),
                        num(&c["slot"]),
                        num(&c["status"]),
                        num(&c["generation"]),
                        num(&c["pid"]),
                        dur(&c["uptime_s"]),
                        num(&c["in_flight"]),
                        num(&c["restarts"]),
                        num(&c["transactions"]),
                        format!("{}/{}", num(&c["db_connections"]), num(&c["db_connections_limit"])),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out.push(String::new());
    out.push(table(
        &["KIND", "KEY", "SLOT", "STATE", "GEN", "PID", "UPTIME", "IN-FLIGHT", "RESTARTS", "TX", "DB"],
        &children,
    ));
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            let ms = |k: &str| r[k].as_f64().map_or("–".to_owned(), |v| format!("{v:.2}"));
            vec![
                num(&r["route"]),
                num(&r["requests"]),
                r["rate"].as_f64().map_or("–".to_owned(), |v| format!("{v:.2}")),
                num(&r["server_errors"]),
                ms("p50_ms"),
                ms("p90_ms"),
                ms("p99_ms"),
            ]
        })
        .collect();
    out.push(String::new());
    out.push(table(&["ROUTE", "REQUESTS", "REQ/S", "5XX", "P50 MS", "P90 MS", "P99 MS"], &rows));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_to_the_widest_cell() {
        let t = table(&["A", "LONG"], &[vec!["wide cell".into(), "1".into()], vec!["x".into(), "22".into()]]);
        assert_eq!(t, "A          LONG\nwide cell  1\nx          22");
    }

    #[test]
    fn durations_read_like_uptime() {
        assert_eq!(dur(&serde_json::json!(59)), "59s");
        assert_eq!(dur(&serde_json::json!(61)), "1m01s");
        assert_eq!(dur(&serde_json::json!(7322)), "2h02m");
        assert_eq!(dur(&serde_json::json!(90_000)), "1d01h");
        assert_eq!(dur(&Value::Null), "–");
    }
}
