//! `pdp config`: prints the configuration every command would use, after layering file, environment and
//! flags and applying defaults. Secrets are shown masked; nothing is written.

use std::path::Path;

use pdp_config::{ApiKey, Config, DatabaseSetting, Tls};

use crate::cli::ConfigArgs;
use crate::diagnostics::Status;
use crate::printer::Printer;

/// Runs `pdp config`.
pub fn run(args: &ConfigArgs, config_flag: Option<&Path>, cwd: &Path, printer: &Printer) -> anyhow::Result<Status> {
    let (config, _) = super::load_config(config_flag, cwd, &args.overrides.to_overrides())?;
    for w in &config.warnings {
        printer.warn(&w.to_string(), w.hint.as_deref());
    }
    let doc = effective(&config);
    let text = if args.json { serde_json::to_string_pretty(&doc)? } else { toml::to_string(&doc)? };
    printer.data(text.trim_end());
    Ok(Status::Success)
}

fn effective(c: &Config) -> serde_json::Value {
    let l = &c.serve.limits;
    let dur = |d: std::time::Duration| humantime_like(d);
    let tls = match &c.serve.tls {
        Tls::Auto => serde_json::json!({ "mode": "auto" }),
        Tls::Off => serde_json::json!({ "mode": "off" }),
        Tls::Files { cert, key } => serde_json::json!({ "mode": "files", "cert": cert, "key": key }),
    };
    let keys: Vec<String> = c
        .serve
        .api_keys
        .iter()
        .map(|k| match k {
            ApiKey::Env { var, .. } => format!("env:{var} (set)"),
            ApiKey::Sha256(h) => format!("sha256:{h}"),
            ApiKey::Unset(u) => format!("env:{} (not set)", u.var),
        })
        .collect();
    let database = match &c.database.url {
        DatabaseSetting::Url(url) => {
            serde_json::json!({ "url": url.redacted(), "provider": url.provider().as_str(), "from": url.source })
        }
        DatabaseSetting::Embedded => serde_json::json!({ "embedded": c.state_dir.join("pglite") }),
        DatabaseSetting::Unset(u) => serde_json::json!({ "url": format!("env:{} (not set)", u.var) }),
    };
    let mut client = serde_json::json!({ "runtime": "deno", "out": c.client.out, "version": c.client.version });
    if let Some(base) = &c.client.base_url {
        client["base-url"] = base.as_str().into();
    }
    let mut doc = serde_json::json!({
        "file": c.file,
        "state-dir": c.state_dir,
        "prisma": {
            "version": c.prisma.version.to_string(),
            "generation": c.prisma.version.generation().label,
            "schema": c.prisma.schema,
            // Unset: where Prisma Migrate would look for this schema's layout (shown as such when the
            // schema cannot be read).
            "migrations": super::schema::migration_paths(c).map_or_else(|e| serde_json::json!(format!("beside the schema ({e:#})")), |(dir, _)| serde_json::json!(dir)),
        },
        "database": database,
        "engines": { "targets": c.engines.targets, "mirror": c.engines.mirror.as_str(), "cache": c.engines.cache },
        "client": client,
        "serve": {
            "listen": c.serve.listen.to_string(),
            "public-url": c.serve.public_url.as_str(),
            "tls": tls,
            "api-keys": keys,
            "shutdown-timeout": dur(c.serve.shutdown_timeout),
            // The numbers `pdp serve` will use (the defaults follow the CPUs pdp may use).
            "threads": pdp_serve::worker_threads(c.serve.threads),
            "children": pdp_serve::pool_size(c.serve.children, c.serve.threads),
            "limits": {
                "max-body-size": l.max_body_size,
                "query-timeout": dur(l.query_timeout),
                "transaction-max-timeout": dur(l.transaction_max_timeout),
                "transaction-max-wait": dur(l.transaction_max_wait),
                "connection-limit": l.connection_limit,
                "on-demand-connections": l.on_demand_connections,
                "pool-timeout": dur(l.pool_timeout),
                "engine-start-timeout": dur(l.engine_start_timeout),
                "engine-idle-timeout": dur(l.engine_idle_timeout),
            },
        },
        "migrate": { "lock-timeout": dur(c.migrate.lock_timeout) },
    });
    // TOML has no null: the table is there only when clustering is on.
    if let Some(cl) = &c.serve.cluster {
        doc["serve"]["cluster"] = serde_json::json!({
            // The secret itself is never shown: only whether it is there.
            "secret": match &cl.secret { Ok(_) => "set".to_owned(), Err(u) => format!("not set (`{}`)", u.var) },
            "advertise": match cl.advertise {
                pdp_config::Advertise::Addr(a) => a.to_string(),
                pdp_config::Advertise::Hostname(port) => format!("auto:{port} (this host's address)"),
            },
            "listen": cl.listen.to_string(),
            "peers": cl.peers,
        });
    }
    doc
}

fn humantime_like(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}
