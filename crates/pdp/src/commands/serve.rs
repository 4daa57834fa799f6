//! `pdp serve`: resolves the config into the proxy's options, starts it, tells the user how to reach and
//! trust it, runs until SIGTERM or Ctrl-C, and reports what shutdown had to cut.
//!
//! Deliberately not here: the proxy itself (`pdp-serve`); runtime events are tracing events, formatted by
//! the subscriber `main` installs (text or JSON, secrets masked).

use std::path::Path;

use pdp_config::{Overrides, Secret, Tls};
use pdp_serve::auth::KeySet;
use pdp_serve::context::Settings;
use pdp_serve::tls::AutoOutcome;
use pdp_serve::{Database, Options, Server, Started, TlsMode, TlsStarted};

use crate::cli::ServeArgs;
use crate::diagnostics::Status;
use crate::printer::Printer;

/// Runs `pdp serve`.
pub fn run(args: &ServeArgs, config_flag: Option<&Path>, cwd: &Path, printer: &Printer) -> anyhow::Result<Status> {
    let overrides = Overrides {
        database_url: args.database_url.clone().map(Secret::new),
        listen: args.listen.clone(),
        public_url: args.public_url.clone(),
    };
    let (config, env) = super::load_config(config_flag, cwd, &overrides)?;
    for w in &config.warnings {
        printer.warn(&w.to_string(), w.hint.as_deref());
    }
    let (node, npm) = super::node_and_npm(&config, &env);
    let serve = &config.serve;
    let tls = match &serve.tls {
        Tls::Auto => {
            let host = serve.public_url.host_str().unwrap_or("localhost").trim_matches(['[', ']']).to_owned();
            TlsMode::Auto { dir: config.state_dir.join("tls"), hosts: vec![host] }
        }
        Tls::Files { cert, key } => TlsMode::Files { cert: cert.clone(), key: key.clone() },
        Tls::Off => TlsMode::Off,
    };
    let database = match config.database.connect_to()? {
        Some(url) => Database::Url(url.clone()),
        None => Database::Embedded(super::embedded_options(&config, node.clone())),
    };
    let version = config.prisma.version.to_string();
    // Serve needs no schema of its own (clients bring theirs); when the project's can be read, its
    // datasource directory resolves a relative SQLite path and a one-file schema is accepted unuploaded.
    let project =
        super::schema::load(&config).inspect_err(|e| tracing::debug!("the project's schema is not read: {e:#}")).ok();
    let schema_dir =
        project.as_ref().map_or_else(|| super::schema::datasource_dir(&config), |p| p.files.datasource_dir());
    // A folder is merged by Prisma's generator into a text pdp cannot reproduce byte for byte (and so not
    // hash as the client does); its clients upload it once per engine.
    let project_schema = project.as_ref().filter(|p| !p.files.folder).map(|p| p.files.location.clone());
    let options = Options {
        listen: serve.listen,
        metrics_listen: serve.metrics_listen,
        tls,
        keys: KeySet::new(serve.keys()?),
        access_log: std::sync::Arc::new(crate::logging::AccessWriter::new(
            args.log_format == crate::cli::LogFormat::Json,
            printer.color(),
        )),
        settings: Settings {
            limits: serve.limits.clone(),
            cache: serve.cache.clone(),
            cache_root: config.engines.cache.clone(),
            node,
            npm,
            log_level: "warn".into(),
            temp_dir: config.temp_dir.clone(),
            bench_child_tcp: serve.bench_child_tcp,
            children: pdp_serve::pool_size(serve.children, serve.threads),
        },
        shutdown_timeout: serve.shutdown_timeout,
        project_uses_executor: config.prisma.version.generation().server_engine
            == pdp_config::prisma::ServerEngine::QueryPlanExecutor,
        project_version: version.clone(),
        database,
        schema_dir,
        public_url: serve.public_url.clone(),
        dp1: dp1_options(&config, &env, cwd, project_schema)?,
        cluster: match (&serve.cluster, serve.cluster_secret()?) {
            (Some(c), Some(secret)) => Some(pdp_serve::ClusterOptions {
                secret: secret.clone(),
                advertise: advertised(c.advertise)?,
                listen: c.listen,
                peers: c.peers.clone(),
            }),
            _ => None,
        },
    };
    pdp_serve::preflight(&options).map_err(|e| *e)?;
    if serve.bench_child_tcp {
        printer.warn(
            "PDP_BENCH_CHILD_TCP is set: children also listen on loopback TCP, reachable without an API key",
            Some("this is for benchmarks only: unset PDP_BENCH_CHILD_TCP"),
        );
    }
    if matches!(options.database, Database::Embedded(_)) {
        printer.status(
            "Starting",
            "the embedded PostgreSQL (PGlite; the first start installs it and creates the database)",
        );
    }
    if options.project_uses_executor {
        printer.status("Starting", &format!("the query-plan executor for Prisma {version}"));
    }
    let threads = pdp_serve::worker_threads(serve.threads);
    tracing::debug!(target: "pdp::serve", threads, "worker threads");
    // One thread (the default on 2 cores): tokio's current-thread scheduler, which polls tasks and the IO
    // driver on the thread itself, without the work-stealing machinery a pool of workers needs.
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    runtime.block_on(async {
        let server = Server::start(options).await?;
        render_started(printer, server.started(), &config.root);
        let summary = server.run(shutdown_signal()).await;
        if summary.cut_transactions.is_empty() && !summary.cut_requests {
            printer.status("Stopped", &format!("after draining in {} ms", summary.took.as_millis()));
        } else {
            printer.warn(
                &format!(
                    "stopped at the shutdown deadline: {} open transaction(s) cut{}",
                    summary.cut_transactions.len(),
                    if summary.cut_requests { ", requests still running were cut" } else { "" }
                ),
                Some("raise `[serve] shutdown-timeout` if clients need longer to finish"),
            );
        }
        Ok(Status::Success)
    })
}

/// `[serve]`'s engine settings, the query-engine override and the registry for engine commits.
fn dp1_options(
    config: &pdp_config::Config,
    env: &pdp_config::env::ProcessEnv,
    cwd: &Path,
    project_schema: Option<std::path::PathBuf>,
) -> anyhow::Result<pdp_serve::dp1::Dp1Options> {
    use pdp_config::env::Env as _;
    let var = |name: &str| env.var(name).filter(|v| !v.is_empty());
    let serve = &config.serve;
    Ok(pdp_serve::dp1::Dp1Options {
        engine: serve.engine,
        flags: pdp_serve::engine::Flags {
            raw_queries: serve.raw_queries,
            metrics: serve.engine_metrics,
            telemetry_in_response: serve.telemetry_in_response,
            log_queries: serve.log_queries,
        },
        native: pdp_serve::engine::NativeSource {
            override_value: var(pdp_config::env::PRISMA_QUERY_ENGINE_BINARY),
            cwd: cwd.to_path_buf(),
            http: pdp_toolchain::http::Http::new(&config.network, pdp_toolchain::http::RetryPolicy::default())?,
            registry: config.network.registry(),
        },
        project_schema,
    })
}

fn render_started(printer: &Printer, s: &Started, root: &Path) {
    let public_url = &s.public_url;
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let scheme = if matches!(s.tls, TlsStarted::Off) { "http" } else { "https" };
    printer.status(
        "Listening",
        &format!("on {scheme}://{} ({} API key{})", s.addr, s.keys, if s.keys == 1 { "" } else { "s" }),
    );
    match &s.tls {
        TlsStarted::Auto { paths, outcome } => {
            let verb = match outcome {
                AutoOutcome::Created => "created a local CA",
                AutoOutcome::Renewed => "renewed the certificate from the local CA",
                AutoOutcome::Reused => "reusing the local CA",
            };
            printer.status("TLS", &format!("{verb} ({}); clients must trust it:", rel(&paths.ca_cert)));
            printer.info(&format!("      DENO_CERT={}", paths.ca_cert.display()));
            printer.info(&format!("      NODE_EXTRA_CA_CERTS={}", paths.ca_cert.display()));
        }
        TlsStarted::Files { cert } => printer.status("TLS", &format!("{} (reloaded when it changes)", cert.display())),
        TlsStarted::Off => printer.warn(
            "TLS is off: Prisma clients require https for prisma:// URLs",
            Some("only run this behind a proxy that terminates TLS"),
        ),
    }
    match &s.embedded_dir {
        Some(dir) => printer.status(
            "Database",
            &format!(
                "embedded PostgreSQL (PGlite{}) with data in {}; for development: set `[database] url` for production",
                if s.embedded_shared { ", shared with another pdp" } else { "" },
                rel(dir)
            ),
        ),
        None => printer.status("Database", &format!("{} ({})", s.database.redacted(), s.database.provider())),
    }
    printer.status("Children", &format!("on Unix sockets in {} (mode 0700: pdp's user only)", s.socket_dir.display()));
    if let Some((configured, nofile)) = s.max_connections_reduced {
        printer.warn(
            &format!(
                "serving at most {} client connections, not the {configured} of `[serve.limits] max-connections`: \
                 the open-file limit is {nofile}",
                s.max_connections
            ),
            Some("raise the limit (`ulimit -n`, systemd's LimitNOFILE, the container's nofile ulimit)"),
        );
    }
    if s.native_engines_on_tcp {
        printer.warn(
            "Prisma's native query engines listen on loopback TCP (Prisma 4.x–6.x engines cannot listen on a Unix \
             socket): any process on this host can reach them without an API key",
            Some("use `[serve] engine = \"wasm\"` for 5.x/6.x clients, or run pdp alone in its network namespace (its own container)"),
        );
    }
    if let Some(why) = &s.missing_project_engine {
        printer.warn(
            &format!("the project's clients cannot be served yet: {why}"),
            Some("`pdp engines fetch` fills the engines cache (`/ready` answers 503 until the engine is there)"),
        );
    }
    if let Some(v) = &s.executor {
        printer.status("Executor", &format!("Prisma {v} ready (clients of other 7.x versions start their own)"));
    }
    if let Some((bound, advertised)) = s.cluster {
        printer.status(
            "Cluster",
            &format!("peers reach this replica at {advertised} (listening on {bound}; plain HTTP, every request authenticated)"),
        );
    }
    match s.metrics_addr {
        Some(m) => printer.status("Metrics", &format!("http://{m}/metrics (no key)")),
        None => printer.status("Metrics", "/metrics (API key required)"),
    }
    let host = public_url.host_str().unwrap_or("localhost");
    let port = public_url.port().map(|p| format!(":{p}")).unwrap_or_default();
    printer.status("Clients", &format!("prisma://{host}{port}/?api_key=<key>   (Ctrl-C stops)"));
}

/// This replica's cluster address: as configured, or for `auto:<port>` the address this host's name
/// resolves to (IPv4 first; never a loopback one, which peers on other hosts could not reach).
pub(crate) fn advertised(advertise: pdp_config::Advertise) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let port = match advertise {
        pdp_config::Advertise::Addr(a) => return Ok(a),
        pdp_config::Advertise::Hostname(port) => port,
    };
    let hint =
        "set `[serve.cluster] advertise` (or PDP_CLUSTER_ADVERTISE) to this replica's IP and port instead of `auto`";
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).ok_or_else(|| {
        crate::diagnostics::UserError::new("cannot read this host's name for `advertise = \"auto:…\"`", hint)
    })?;
    let mut found: Vec<std::net::SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map(|a| a.filter(|a| !a.ip().is_loopback() && !a.ip().is_unspecified()).collect())
        .unwrap_or_default();
    found.sort_by_key(|a| !a.is_ipv4());
    found.first().copied().ok_or_else(|| {
        crate::diagnostics::UserError::new(
            format!(
                "this host's name `{host}` resolves to no address peers could reach (`advertise = \"auto:{port}\"`)"
            ),
            hint,
        )
        .into()
    })
}

/// Resolves on SIGTERM (Kubernetes, Docker) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
