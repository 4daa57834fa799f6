//! `pdp doctor`: checks the machine and the project and says, line by line, what is ok, what deserves a
//! warning and what will fail, each with a hint. It changes nothing (no downloads, no files written).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pdp_config::env::{Env, ProcessEnv};
use pdp_config::prisma::{ClientGenerator, ServerEngine};
use pdp_config::{ApiKey, Config, DatabaseSetting, Overrides, Provider, Tls};
use pdp_toolchain::npm::{self, ToolSpec};
use pdp_toolchain::target;
use pdp_toolchain::tools::{self, Tool};
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::diagnostics::{Status, UserError};
use crate::printer::Printer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Level,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &'static str, status: Level, message: impl Into<String>, hint: Option<String>) {
        let message = pdp_config::redact_text(&message.into());
        let hint = hint.map(|h| pdp_config::redact_text(&h));
        self.checks.push(Check { name, status, message, hint });
    }
    fn ok(&mut self, name: &'static str, message: impl Into<String>) {
        self.push(name, Level::Ok, message, None);
    }
    fn warn(&mut self, name: &'static str, message: impl Into<String>, hint: impl Into<String>) {
        self.push(name, Level::Warn, message, Some(hint.into()));
    }
    fn fail(&mut self, name: &'static str, message: impl Into<String>, hint: Option<String>) {
        self.push(name, Level::Fail, message, hint);
    }
}

/// Runs `pdp doctor`.
pub fn run(args: &DoctorArgs, config_flag: Option<&Path>, cwd: &Path, printer: &Printer) -> anyhow::Result<Status> {
    let mut report = Report::default();
    let process_env = ProcessEnv::new();

    let facts = target::HostFacts::probe();
    let detection = target::detect(&facts);
    platform(&mut report, &facts, &detection);

    let file = match config_flag {
        Some(p) => Ok(if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) }),
        None => pdp_config::discover(cwd),
    };
    let project_root = file.as_ref().ok().and_then(|f| f.parent()).unwrap_or(cwd).to_path_buf();
    let config = file.and_then(|file| {
        let env = ProcessEnv::with_dotenv(&project_root.join(".env"))?;
        pdp_config::load(&file, &env, &Overrides::default())
    });
    let path_var = process_env.var("PATH").map(OsString::from);
    match &config {
        Ok(c) => {
            report.ok("config", format!("{} is valid", c.file.display()));
            for w in &c.warnings {
                report.warn("config", w.to_string(), w.hint.clone().unwrap_or_default());
            }
            prisma(&mut report, c);
            // The schema is read once; its migrations folder and datasource directory serve the next lines
            // (when it cannot be read: beside where `[prisma] schema` points, or nothing to check).
            let (provider, paths) = schema(&mut report, c);
            let paths = paths.or_else(|| super::schema::migration_paths(c).ok());
            migrations(&mut report, paths.as_ref().map(|(m, _)| m.as_path()), provider);
            let schema_dir = paths.map_or_else(|| super::schema::datasource_dir(c), |(_, d)| d);
            database(&mut report, c, provider, &schema_dir, Duration::from_secs(args.db_timeout));
            tool_checks(&mut report, Some(c), &project_root, path_var.as_ref());
            serve(&mut report, c);
            cluster(&mut report, c);
            engines(&mut report, c, &detection);
        }
        Err(e) => {
            let mut hint = e.hint();
            if let pdp_config::ConfigError::Invalid(problems) = e
                && problems.len() > 1
            {
                hint = None;
            }
            report.fail("config", e.to_string(), hint);
            tool_checks(&mut report, None, &project_root, path_var.as_ref());
        }
    }
    Ok(render(&report, args.json, printer))
}

fn platform(report: &mut Report, facts: &target::HostFacts, d: &target::Detection) {
    let libssl = match (&d.libssl, &d.libssl_source) {
        (Some(v), Some(src)) => format!(" (libssl {v} from {src})"),
        (Some(v), None) => format!(" (libssl {v})"),
        _ => String::new(),
    };
    report.ok(
        "platform",
        format!(
            "pdp {} on {} {}; Prisma binary target `{}`{libssl}",
            env!("CARGO_PKG_VERSION"),
            facts.os,
            facts.arch,
            d.target
        ),
    );
    for w in &d.warnings {
        report.warn(
            "platform",
            w.clone(),
            "set `[engines] targets` explicitly, e.g. `[\"linux-static-x64\"]`, which needs no libssl",
        );
    }
}

fn prisma(report: &mut Report, c: &Config) {
    let g = c.prisma.version.generation();
    let generator = match g.generator {
        ClientGenerator::JsDenoPreview => "prisma-client-js with the deno preview",
        ClientGenerator::PrismaClientDeno => "prisma-client with runtime = \"deno\"",
    };
    let engine = match g.server_engine {
        ServerEngine::QueryEngineBinary => "query-engine binary",
        ServerEngine::QueryPlanExecutor => "@prisma/query-plan-executor under Node",
    };
    report.ok(
        "prisma",
        format!(
            "Prisma {} ({} generation): client from {generator}; served by the {engine}",
            c.prisma.version, g.label
        ),
    );
}

/// Checks the schema; returns its provider when it could be read, and its (migrations folder, datasource
/// directory) when its files could.
fn schema(report: &mut Report, c: &Config) -> (Option<Provider>, Option<(PathBuf, PathBuf)>) {
    let project = match super::schema::load(c) {
        Ok(p) => p,
        Err(e) => {
            let (message, hint) = match e.downcast_ref::<UserError>() {
                Some(u) => (u.message.clone(), u.hint.clone()),
                None => (format!("{e:#}"), None),
            };
            report.fail("schema", message, hint);
            return (None, None);
        }
    };
    let paths = Some((project.migrations.clone(), project.files.datasource_dir()));
    let shown = project.shown(c);
    let scanned = match project.files.scan() {
        Ok(s) => s,
        Err(e) => {
            report.fail("schema", e.to_string(), Some("close it (`]` or `}`); `prisma format` shows where".into()));
            return (None, paths);
        }
    };
    let Some((file, ds)) = scanned.iter().find_map(|(f, s)| s.datasource().map(|d| (*f, d))) else {
        report.fail(
            "schema",
            format!("{shown} has no `datasource` block with a provider"),
            Some("add `datasource db { provider = \"postgresql\" }`".into()),
        );
        return (None, paths);
    };
    let at = file.path.strip_prefix(&c.root).unwrap_or(&file.path).display().to_string();
    let Some(name) = ds.string("provider") else {
        report.fail(
            "schema",
            format!("{at}: datasource `{}` has no provider", ds.name),
            Some("add `provider = \"postgresql\"` (or mysql, sqlite, …) to it".into()),
        );
        return (None, paths);
    };
    let Some(provider) = Provider::from_schema_name(name) else {
        report.fail(
            "schema",
            format!("{at}: unknown datasource provider `{name}`"),
            Some("use postgresql, mysql, sqlite, sqlserver or mongodb".into()),
        );
        return (None, paths);
    };
    let g = c.prisma.version.generation();
    if !g.datasource_url_in_schema && ds.get("url").is_some() {
        report.fail(
            "schema",
            format!("{at}: Prisma {} rejects `url` in the datasource block", c.prisma.version),
            Some("remove the `url` line; pdp takes the URL from `[database] url`".into()),
        );
    } else {
        report.ok("schema", format!("{shown} ({provider})"));
    }
    (Some(provider), paths)
}

fn migrations(report: &mut Report, dir: Option<&Path>, provider: Option<Provider>) {
    // None: the schema line already says what is wrong with it.
    let Some(dir) = dir else { return };
    let Ok(entries) = fs_err::read_dir(dir) else {
        report.warn(
            "migrations",
            format!("no migrations directory at {}", dir.display()),
            "create migrations with `prisma migrate dev`; pdp applies them",
        );
        return;
    };
    let count = entries.flatten().filter(|e| e.path().join("migration.sql").is_file()).count();
    let lock = dir.join("migration_lock.toml");
    let locked = fs_err::read_to_string(&lock).ok().and_then(|t| {
        t.lines().find_map(|l| {
            l.trim()
                .strip_prefix("provider")
                .and_then(|r| r.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    });
    match (locked.as_deref().and_then(Provider::from_schema_name), provider) {
        (Some(l), Some(p)) if l != p => report.fail(
            "migrations",
            format!("{} says `{l}` but the schema says `{p}`", lock.display()),
            Some("migrations are provider-specific: recreate them for the new provider".into()),
        ),
        _ => report.ok("migrations", format!("{count} migration(s) in {}", dir.display())),
    }
}

fn database(report: &mut Report, c: &Config, provider: Option<Provider>, schema_dir: &Path, timeout: Duration) {
    let url = match &c.database.url {
        DatabaseSetting::Url(url) => url,
        DatabaseSetting::Unset(unset) => {
            report.fail("database", unset.problem.to_string(), unset.problem.hint.clone());
            return;
        }
        DatabaseSetting::Embedded => {
            if provider.is_some_and(|p| p != Provider::Postgresql) {
                report.fail(
                "database",
                format!(
                    "no `[database] url`, so pdp would use its embedded PostgreSQL, but the schema's provider is `{}`",
                    provider.map_or("?", Provider::as_str)
                ),
                Some("set `url = \"env:DATABASE_URL\"` under `[database]`".into()),
            );
            } else {
                report.ok(
                    "database",
                    format!(
                        "embedded PostgreSQL (PGlite), kept in {}; `pdp serve` starts it",
                        c.state_dir.join("pglite").display()
                    ),
                );
            }
            return;
        }
    };
    if let Some(p) = provider
        && p != url.provider()
    {
        report.fail(
            "database",
            format!("the database URL is {} but the schema's provider is `{p}`", url.provider()),
            Some("point `[database] url` at a database of the schema's provider".into()),
        );
        return;
    }
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .map(|rt| rt.block_on(pdp_migrate::db::ping(url, schema_dir, timeout)));
    match outcome {
        Ok(Ok(info)) => {
            report.ok("database", format!("{} at {} (from {})", info.version, url.redacted(), url.source));
            if let Some(max) = info.max_connections {
                connections(report, c, max);
            }
        }
        Ok(Err(pdp_migrate::db::DbError::MissingFile { path })) => report.warn(
            "database",
            format!("SQLite file {} does not exist yet", path.display()),
            "`pdp migrate deploy` creates it",
        ),
        Ok(Err(e)) => report.fail("database", e.to_string(), e.hint()),
        Err(e) => report.fail("database", format!("cannot start the async runtime: {e}"), None),
    }
}

/// The database connections `pdp serve` opens at most, against the server's `max_connections`: one replica's
/// budget (`[serve.limits] connection-limit`, every child of every key together), and the cluster's at its
/// largest (the replicas the peer list names now, and the Kubernetes autoscaler's `maxReplicas` from
/// `deploy/k8s/hpa.yaml` when the project has one: the larger counts).
fn connections(report: &mut Report, c: &Config, max: u64) {
    let limits = &c.serve.limits;
    let budget = u64::from(limits.connection_limit);
    let mut message = format!(
        "one replica opens at most {budget} (`[serve.limits] connection-limit`, shared by all its children; {} of it kept for client versions and schemas that start on demand)",
        limits.on_demand_connections
    );
    // The replicas that answer to the peer list now (this one included), and the most the autoscaler runs.
    let now = c.serve.cluster.as_ref().map(|cl| peer_addrs(cl).len() as u64 + 1);
    let hpa = std::fs::read_to_string(c.root.join("deploy/k8s/hpa.yaml")).ok().as_deref().and_then(max_replicas);
    if let Some(n) = now {
        message.push_str(&format!("; {n} replica(s) now (this one and its peers) open at most {}", n * budget));
    }
    if let Some(n) = hpa {
        message.push_str(&format!("; {n} replicas (maxReplicas in deploy/k8s/hpa.yaml) open at most {}", n * budget));
    }
    let total = now.into_iter().chain(hpa).max().unwrap_or(1) * budget;
    message.push_str(&format!("; the server allows {max}"));
    if total > max {
        report.warn(
            "connections",
            message,
            "lower `[serve.limits] connection-limit` or the most replicas, or raise the server's max_connections (pdp migrate and other clients need some too)",
        );
    } else {
        report.ok("connections", message);
    }
}

/// `maxReplicas` of a HorizontalPodAutoscaler manifest (the one key read, so no YAML parser: the first line
/// that sets it, as `pdp init` writes it).
fn max_replicas(yaml: &str) -> Option<u64> {
    yaml.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("maxReplicas:"))
        .and_then(|v| v.split('#').next())
        .and_then(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').parse().ok())
}

fn tool_checks(report: &mut Report, c: Option<&Config>, root: &Path, path_var: Option<&OsString>) {
    let g = c.map(|c| c.prisma.version.generation());
    let mut npm_found = true;
    for tool in [Tool::Node, Tool::Npm] {
        let why = match (tool, g) {
            (Tool::Node, Some(g)) if g.server_engine == ServerEngine::QueryPlanExecutor => {
                "needed by `pdp serve` (query-plan executor) and `pdp build-client`"
            }
            (Tool::Node, _) => "needed by `pdp build-client`",
            _ => "installs the pinned Prisma CLI, Deno and executor into pdp's cache",
        };
        match tools::probe(tool, root, path_var, Duration::from_secs(20)) {
            Some(found) => match &found.version {
                Ok(v) => report.ok("tools", format!("{} {v} at {}", tool.program(), found.path.display())),
                Err(why_not) => report.warn(
                    "tools",
                    format!("{} at {} did not report a version: {why_not}", tool.program(), found.path.display()),
                    "reinstall it",
                ),
            },
            None => {
                npm_found &= tool != Tool::Npm;
                report.warn("tools", format!("{} not found ({why})", tool.program()), "install Node.js 20 or newer");
            }
        }
    }
    // The Prisma CLI and Deno are pdp's own: installed from the npm registry into its cache, pinned to
    // the project's version, whatever the machine has. Only a missing npm makes them a problem.
    let Some(c) = c else { return };
    let version = &c.prisma.version;
    let prisma = ToolSpec {
        name: "prisma".into(),
        version: version.to_string(),
        packages: pdp_client::generate::prisma_packages(version),
    };
    let needs_deno = pdp_client::generate::runs_under_deno(version.generation());
    let mut pdps = vec![(prisma, "`pdp build-client` runs it")];
    if needs_deno {
        pdps.push((
            ToolSpec::single("deno", pdp_client::generate::DENO_VERSION),
            "`pdp build-client` runs this Prisma version's CLI under it",
        ));
    }
    for (spec, why) in pdps {
        let cache = &c.engines.cache;
        if npm::cached(cache, &spec).is_some() {
            report.ok("tools", format!("{} in pdp's cache ({why})", spec.label()));
        } else if npm_found {
            report.ok(
                "tools",
                format!("{}: pdp installs it from the npm registry into its cache on first use ({why})", spec.label()),
            );
        } else {
            report.warn(
                "tools",
                format!("{} is not in pdp's cache and npm is missing to install it ({why})", spec.label()),
                "install Node.js 20 or newer (with npm), or run `pdp build-client` once where npm is available",
            );
        }
    }
    if !needs_deno && let Some(found) = tools::probe(Tool::Deno, root, path_var, Duration::from_secs(20)) {
        let v = found.version.as_deref().unwrap_or("(no version)");
        report.ok("tools", format!("deno {v} at {} (runs your scripts; pdp does not need it)", found.path.display()));
    }
}

fn serve(report: &mut Report, c: &Config) {
    let s = &c.serve;
    let tls = match &s.tls {
        Tls::Auto => "TLS from a local CA".to_owned(),
        Tls::Off => "plain HTTP".to_owned(),
        Tls::Files { cert, key } => {
            for (what, path) in [("certificate", cert), ("private key", key)] {
                if !path.is_file() {
                    report.fail(
                        "serve",
                        format!("TLS {what} {} does not exist", path.display()),
                        Some("fix `[serve] tls-cert` / `tls-key`".into()),
                    );
                }
            }
            format!("TLS from {}", cert.display())
        }
    };
    report.ok("serve", format!("listens on {} ({tls}); clients use {}", s.listen, s.public_url));
    if s.tls == Tls::Off && s.public_url.scheme() == "http" {
        report.warn("serve", "plain HTTP: Prisma clients require https for prisma:// URLs", "use `tls = \"auto\"`, `\"files\"`, or put a TLS-terminating proxy in front and set `public-url` to its https URL");
    }
    if s.api_keys.is_empty() {
        report.warn(
            "serve",
            "no API keys configured: `pdp serve` will refuse every client",
            "add `api-keys = [\"env:PDP_API_KEY\"]` under `[serve]` (`pdp keys new` makes a key)",
        );
    } else {
        let names: Vec<String> = s
            .api_keys
            .iter()
            .map(|k| match k {
                ApiKey::Env { var, .. } => format!("env {var}"),
                ApiKey::Sha256(h) => format!("sha256 {}…", &h[..8]),
                ApiKey::Unset(u) => format!("env {} (not set)", u.var),
            })
            .collect();
        match s.keys() {
            Ok(_) => report.ok("serve", format!("{} API key(s): {}", s.api_keys.len(), names.join(", "))),
            Err(_) => {
                for unset in s.api_keys.iter().filter_map(|k| if let ApiKey::Unset(u) = k { Some(u) } else { None }) {
                    report.fail("serve", unset.problem.to_string(), unset.problem.hint.clone());
                }
            }
        }
    }
}

/// The peers' addresses as `pdp serve` would find them now (names resolved; this replica's left out).
fn peer_addrs(cluster: &pdp_config::ClusterConfig) -> Vec<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let me = match cluster.advertise {
        pdp_config::Advertise::Addr(a) => Some(a),
        pdp_config::Advertise::Hostname(_) => super::serve::advertised(cluster.advertise).ok(),
    };
    let mut out = Vec::new();
    for entry in &cluster.peers {
        for a in entry.to_socket_addrs().into_iter().flatten() {
            if Some(a) != me && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// `[serve.cluster]`: the secret, the advertised address, and whether each peer's cluster port answers.
fn cluster(report: &mut Report, c: &Config) {
    let Some(cluster) = &c.serve.cluster else { return };
    if let Err(unset) = &cluster.secret {
        report.fail("cluster", unset.problem.to_string(), unset.problem.hint.clone());
    }
    let me = match super::serve::advertised(cluster.advertise) {
        Ok(a) => a,
        Err(e) => {
            report.fail(
                "cluster",
                format!("{e:#}"),
                Some("set `[serve.cluster] advertise` to this replica's IP and port".into()),
            );
            return;
        }
    };
    report.ok("cluster", format!("this replica is {me} to its peers (cluster listener on {})", cluster.listen));
    let loopback_peer =
        cluster.peers.iter().all(|p| p.starts_with("127.") || p.starts_with("localhost:") || p.starts_with("[::1]"));
    if me.ip().is_loopback() && !loopback_peer {
        report.warn(
            "cluster",
            format!("the advertised address {me} is a loopback one: replicas on other hosts cannot reach it"),
            "advertise this host's own address (`auto:4468`, or Kubernetes' `$(POD_IP):4468`)",
        );
    }
    let peers = peer_addrs(cluster);
    if peers.is_empty() {
        report.warn(
            "cluster",
            format!("no peers found from {:?}: transactions work (they carry their owner), but 4.x–6.x schemas are not shared", cluster.peers),
            "list the other replicas in `[serve.cluster] peers` (a headless Service's name stands for all of them)",
        );
        return;
    }
    let (up, down): (Vec<_>, Vec<_>) =
        peers.iter().partition(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok());
    let list = |v: &[&std::net::SocketAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if down.is_empty() {
        report.ok("cluster", format!("{} peer(s) answer on their cluster port: {}", up.len(), list(&up)));
    } else {
        report.warn(
            "cluster",
            format!("{} of {} peer(s) do not answer on their cluster port: {}", down.len(), peers.len(), list(&down)),
            "start them, or check `[serve.cluster] peers` and that the cluster port is open between replicas",
        );
    }
}

fn engines(report: &mut Report, c: &Config, d: &target::Detection) {
    let names: Vec<String> = c
        .engines
        .targets
        .iter()
        .map(|t| if t == pdp_config::targets::NATIVE { format!("native ({})", d.target) } else { t.clone() })
        .collect();
    report.ok(
        "engines",
        format!("targets {}; mirror {}; cache {}", names.join(", "), c.engines.mirror, c.engines.cache.display()),
    );
}

fn render(report: &Report, json: bool, printer: &Printer) -> Status {
    let fails = report.checks.iter().filter(|c| c.status == Level::Fail).count();
    let warns = report.checks.iter().filter(|c| c.status == Level::Warn).count();
    if json {
        let doc =
            serde_json::json!({ "ok": fails == 0, "failures": fails, "warnings": warns, "checks": report.checks });
        printer.data(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for c in &report.checks {
            let tag = match c.status {
                Level::Ok => console::style("ok  ").green(),
                Level::Warn => console::style("warn").yellow(),
                Level::Fail => console::style("fail").red().bold(),
            };
            let mut lines = c.message.lines();
            printer.data(&format!("{tag}  {:<10} {}", c.name, lines.next().unwrap_or("")));
            for line in lines {
                printer.data(&format!("{:<16} {line}", ""));
            }
            if let Some(h) = &c.hint {
                printer.data(&format!("{:<16} {} {h}", "", console::style("hint:").cyan()));
            }
        }
        printer.info(&format!("{fails} failure(s), {warns} warning(s)"));
    }
    if fails > 0 { Status::CheckFailed } else { Status::Success }
}
