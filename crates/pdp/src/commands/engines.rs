//! `pdp engines fetch / list / path`: resolves the project's engine commit, the binary targets and the
//! `PRISMA_*_ENGINE_BINARY` overrides, then lets `pdp-toolchain` download, verify and locate the files.
//!
//! This module only orchestrates and prints: the summary table and listings go through the printer,
//! progress through [`crate::reporters::Bars`]. It reads the environment (proxies, overrides, registry)
//! through `pdp_config::env` and passes the values down; the library never reads it.

use std::path::Path;

use anyhow::Context as _;
use pdp_config::env::{Env, ProcessEnv};
use pdp_config::{Config, Overrides, targets};
use pdp_toolchain::engines::{Cache, EngineError, EngineKind, ResolvedHash, file_name, resolve_hash};
use pdp_toolchain::fetch::{Fetcher, How, Job, Reporter, Silent};
use pdp_toolchain::http::{Http, HttpError, RetryPolicy};
use pdp_toolchain::overrides;
use pdp_toolchain::target::{Detection, HostFacts, detect, resolve_target};

use crate::cli::{EngineArg, EnginesArgs, EnginesCommand, EnginesFetchArgs, EnginesListArgs, EnginesPathArgs};
use crate::diagnostics::{Status, UserError};
use crate::printer::Printer;
use crate::reporters::Bars;

/// Runs `pdp engines …`.
pub fn run(args: &EnginesArgs, config_flag: Option<&Path>, cwd: &Path, printer: &Printer) -> anyhow::Result<Status> {
    let (config, env) = super::load_config(config_flag, cwd, &Overrides::default())?;
    let setup = Setup::new(config, env, cwd)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match &args.command {
            EnginesCommand::Fetch(a) => fetch(&setup, a, printer).await,
            EnginesCommand::List(a) => list(&setup, a, printer).await,
            EnginesCommand::Path(a) => path(&setup, a, printer).await,
        }
    })
}

/// What every subcommand needs.
struct Setup {
    config: Config,
    env: ProcessEnv,
    http: Http,
    cache: Cache,
    registry: url::Url,
    cwd: std::path::PathBuf,
}

impl Setup {
    fn new(config: Config, env: ProcessEnv, cwd: &Path) -> anyhow::Result<Setup> {
        let http = Http::new(&config.network, RetryPolicy::default())?;
        let registry = config.network.registry();
        let cache = Cache::new(&config.engines.cache);
        Ok(Setup { config, env, http, cache, registry, cwd: cwd.to_path_buf() })
    }

    /// `--target` values, or `[engines] targets`, resolved to known names (`native` detected once), deduplicated.
    fn targets(&self, flags: &[String], printer: &Printer) -> anyhow::Result<Vec<String>> {
        let names = if flags.is_empty() { &self.config.engines.targets } else { flags };
        let mut host: Option<Detection> = None;
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let target = resolve_target(name, || host.get_or_insert_with(|| detect(&HostFacts::probe())).clone())?;
            if !out.iter().any(|t| t == target) {
                out.push(target.to_owned());
            }
        }
        if let Some(d) = &host {
            for w in &d.warnings {
                printer.warn(&format!("native target {}: {w}", d.target), None);
            }
        }
        Ok(out)
    }

    async fn hash(&self, flag: Option<&str>, offline: bool) -> Result<ResolvedHash, EngineError> {
        resolve_hash(&self.config.prisma.version, flag, &self.cache, &self.http, &self.registry, offline).await
    }

    fn fetcher<'a>(&'a self, hash: &'a ResolvedHash, offline: bool) -> Fetcher<'a> {
        Fetcher { http: &self.http, cache: &self.cache, mirror: &self.config.engines.mirror, hash: &hash.hash, offline }
    }

    fn override_for(&self, kind: EngineKind) -> Option<overrides::Override> {
        overrides::find(self.config.prisma.version.generation(), kind, &|name| self.env.var(name))
    }
}

fn kind_of(arg: EngineArg) -> EngineKind {
    match arg {
        EngineArg::Query => EngineKind::Query,
        EngineArg::Schema => EngineKind::Schema,
    }
}

/// The engines to handle: the one asked for (which the version must have) or all the version has.
fn kinds(config: &Config, arg: Option<EngineArg>) -> Result<Vec<EngineKind>, EngineError> {
    let generation = config.prisma.version.generation();
    match arg.map(kind_of) {
        None => Ok(EngineKind::of(generation)),
        Some(kind) if kind.stem(generation).is_some() => Ok(vec![kind]),
        Some(kind) => Err(EngineError::NoSuchEngine { version: config.prisma.version.to_string(), engine: kind }),
    }
}

/// One line of the summary table.
struct Row {
    target: String,
    engine: EngineKind,
    result: String,
    path: String,
}

async fn fetch(s: &Setup, a: &EnginesFetchArgs, printer: &Printer) -> anyhow::Result<Status> {
    let version = &s.config.prisma.version;
    let generation = version.generation();
    let kinds = kinds(&s.config, a.engine)?;
    let targets = s.targets(&a.selection.targets, printer)?;
    let hash = s.hash(a.selection.engine_hash.as_deref(), a.offline).await?;
    printer.info(&format!("Prisma {version}: engine commit {} ({})", hash.hash, hash.source));
    let fetcher = s.fetcher(&hash, a.offline);

    let overridden: Vec<(EngineKind, overrides::Override)> =
        kinds.iter().filter_map(|k| s.override_for(*k).map(|o| (*k, o))).collect();
    let mut rows = Vec::new();
    let mut errors: Vec<EngineError> = Vec::new();
    let mut jobs = Vec::new();
    for target in &targets {
        for kind in kinds.iter().filter(|k| !overridden.iter().any(|(o, _)| o == *k)) {
            if targets::lookup(target).is_some_and(|t| !t.prebuilt) {
                let var = kind.override_vars(generation).first().copied();
                let err = EngineError::NoPrebuilt { target: target.clone(), var };
                rows.push(failed_row(target, *kind, &err));
                errors.push(err);
                continue;
            }
            let file = file_name(generation, *kind, target).context("engine file name")?;
            jobs.push(Job { target: target.clone(), kind: *kind, file });
        }
    }

    let bars = Bars::new(printer);
    let results = fetcher.fetch_all(&jobs, &bars).await;
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Ok(f) => rows.push(Row {
                target: job.target.clone(),
                engine: job.kind,
                result: match f.how {
                    How::Cached => "cached".into(),
                    How::Downloaded { bytes, attempts, elapsed } => format!(
                        "downloaded {} in {:.1}s{}",
                        human_bytes(bytes),
                        elapsed.as_secs_f64(),
                        if attempts > 1 { format!(" ({attempts} attempts)") } else { String::new() }
                    ),
                },
                path: f.path.display().to_string(),
            }),
            Err(e) => {
                rows.push(failed_row(&job.target, job.kind, &e));
                errors.push(e);
            }
        }
    }
    for (kind, o) in &overridden {
        match apply_override(s, &fetcher, &targets, *kind, o, &bars, printer).await {
            Ok(row) => rows.push(row),
            Err(e) => {
                rows.push(failed_row(o.var, *kind, &e));
                errors.push(e);
            }
        }
    }
    drop(bars);

    print_table(printer, &rows);
    let total = rows.len();
    let failed = errors.len();
    // Every failure but the first (which becomes the error) is shown in full, with its hint.
    for e in errors.iter().skip(1) {
        printer.warn(&e.to_string(), e.hint().as_deref());
    }
    match errors.into_iter().next() {
        None => {
            printer.status("ready", &format!("{total} engine file(s) in {}", s.cache.root().display()));
            // With `--engine`, only that engine; without, everything `pdp serve` needs, the executor included.
            if a.engine.is_none() && generation.server_engine == pdp_config::prisma::ServerEngine::QueryPlanExecutor {
                provision_executor(s, a.offline, printer).await?;
            }
            Ok(Status::Success)
        }
        Some(first) => Err(anyhow::Error::new(first).context(format!("{failed} of {total} engine file(s) failed"))),
    }
}

/// Resolves one override variable for `fetch`, warning about deprecated names and skipped targets.
async fn apply_override(
    s: &Setup,
    fetcher: &Fetcher<'_>,
    targets: &[String],
    kind: EngineKind,
    o: &overrides::Override,
    reporter: &dyn Reporter,
    printer: &Printer,
) -> Result<Row, EngineError> {
    let generation = s.config.prisma.version.generation();
    if o.deprecated {
        let current = kind.override_vars(generation).first().copied().unwrap_or(o.var);
        printer.warn(&format!("{} is deprecated since Prisma 5.0", o.var), Some(&format!("use {current}")));
    }
    let version = s.config.prisma.version.to_string();
    let cx = overrides::Context { generation, version: &version, kind, fetcher, targets, cwd: &s.cwd };
    let resolved = overrides::resolve(o, &cx, reporter).await?;
    for why in &resolved.passed_over {
        printer.warn(&format!("{}: passed over {why}", o.var), None);
    }
    Ok(Row {
        target: resolved.target.clone().unwrap_or_else(|| "(custom)".into()),
        engine: kind,
        result: format!("from {}={}", o.var, o.value),
        path: resolved.path.display().to_string(),
    })
}

fn failed_row(target: &str, engine: EngineKind, e: &EngineError) -> Row {
    let why = match e {
        EngineError::NotPublished { .. } => "not on the mirror (404)".to_owned(),
        EngineError::NotCached { .. } => "not cached (--offline)".to_owned(),
        EngineError::NoPrebuilt { .. } => "no prebuilt engines".to_owned(),
        EngineError::Checksum { what, .. } => format!("{what} checksum mismatch"),
        EngineError::BadChecksumFile { .. } => "unreadable checksum file".to_owned(),
        EngineError::Corrupt { .. } => "truncated or not gzip".to_owned(),
        EngineError::Http(HttpError::Status { status, .. }) => format!("HTTP {status}"),
        EngineError::Http(_) => "network error".to_owned(),
        EngineError::File(_) => "cache not writable".to_owned(),
        EngineError::OverrideMissing { .. } => "override path missing".to_owned(),
        EngineError::OverrideNotRunnable { .. } => "override does not run here".to_owned(),
        EngineError::WrongCommit { .. } => "wrong engine commit".to_owned(),
        EngineError::OverrideNoTargetRuns { .. } => "no target runs here".to_owned(),
        other => other.to_string().lines().next().unwrap_or("").to_owned(),
    };
    Row { target: target.to_owned(), engine, result: format!("failed: {why}"), path: String::new() }
}

fn print_table(printer: &Printer, rows: &[Row]) {
    let w_target = rows.iter().map(|r| r.target.len()).max().unwrap_or(0).max("TARGET".len());
    let w_result = rows.iter().map(|r| r.result.chars().count()).max().unwrap_or(0).max("RESULT".len());
    let line = |t: &str, e: &str, r: &str, p: &str| {
        format!("{t:<w_target$}  {e:<6}  {r:<w_result$}  {p}").trim_end().to_owned()
    };
    printer.info(&line("TARGET", "ENGINE", "RESULT", "PATH"));
    for r in rows {
        printer.info(&line(&r.target, r.engine.as_str(), &r.result, &r.path));
    }
}

fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n >= 1024 * 1024 { format!("{:.1} MiB", n as f64 / MIB) } else { format!("{:.1} KiB", n as f64 / 1024.0) }
}

async fn list(s: &Setup, a: &EnginesListArgs, printer: &Printer) -> anyhow::Result<Status> {
    let version = &s.config.prisma.version;
    let generation = version.generation();
    let targets = s.targets(&a.selection.targets, printer)?;
    let hash = s.hash(a.selection.engine_hash.as_deref(), a.offline).await?;
    printer.info(&format!(
        "Prisma {version}: engine commit {} ({}); cache {}",
        hash.hash,
        hash.source,
        s.cache.root().display()
    ));
    let mut lines = vec![("TARGET".to_owned(), "ENGINE", "STATUS".to_owned(), "PATH".to_owned())];
    for target in &targets {
        for kind in EngineKind::of(generation) {
            let file = file_name(generation, kind, target).context("engine file name")?;
            let path = s.cache.engine_path(&hash.hash, target, &file);
            let status = if path.is_file() { "cached" } else { "missing" };
            lines.push((target.clone(), kind.as_str(), status.to_owned(), path.display().to_string()));
        }
    }
    for kind in EngineKind::of(generation) {
        if let Some(o) = s.override_for(kind) {
            lines.push(("(override)".into(), kind.as_str(), format!("{}={}", o.var, o.value), String::new()));
        }
    }
    let w0 = lines.iter().map(|l| l.0.len()).max().unwrap_or(0);
    let w2 = lines.iter().map(|l| l.2.len()).max().unwrap_or(0);
    for (t, e, st, p) in &lines {
        printer.data(format!("{t:<w0$}  {e:<6}  {st:<w2$}  {p}").trim_end());
    }
    // The Node-side tools pdp provisioned into the same cache (prisma CLI, deno, …).
    let tools = pdp_toolchain::npm::installed(s.cache.root());
    if !tools.is_empty() {
        let rows: Vec<(String, String, String)> = tools
            .into_iter()
            .map(|(name, packages, dir)| (name, packages.join(" "), dir.display().to_string()))
            .collect();
        let t0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
        let t1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(8);
        printer.data("");
        printer.data(&format!("{:<t0$}  {:<t1$}  PATH", "TOOL", "PACKAGES"));
        for (name, packages, dir) in &rows {
            printer.data(&format!("{name:<t0$}  {packages:<t1$}  {dir}"));
        }
    }
    Ok(Status::Success)
}

async fn path(s: &Setup, a: &EnginesPathArgs, printer: &Printer) -> anyhow::Result<Status> {
    let version = &s.config.prisma.version;
    let generation = version.generation();
    let kind = kind_of(a.engine);
    kinds(&s.config, Some(a.engine))?;
    // The hash may be looked up (a small registry request); engines themselves are never downloaded here.
    let hash = s.hash(a.engine_hash.as_deref(), false).await?;
    let fetcher = s.fetcher(&hash, true);
    if let Some(o) = s.override_for(kind) {
        let targets = s.targets(&s.config.engines.targets, printer)?;
        let version = version.to_string();
        let cx = overrides::Context {
            generation,
            version: &version,
            kind,
            fetcher: &fetcher,
            targets: &targets,
            cwd: &s.cwd,
        };
        let resolved = overrides::resolve(&o, &cx, &Silent).await?;
        printer.data(&resolved.path.display().to_string());
        return Ok(Status::Success);
    }
    let flags: Vec<String> = a.target.iter().cloned().collect();
    let targets = s.targets(&flags, printer)?;
    let target = targets.first().context("no binary target configured")?;
    let file = file_name(generation, kind, target).context("engine file name")?;
    let job = Job { target: target.clone(), kind, file };
    let fetched = fetcher.fetch(0, &job, &Silent).await?;
    printer.data(&fetched.path.display().to_string());
    Ok(Status::Success)
}

/// Prisma 7 clients are served by `@prisma/query-plan-executor` of their exact version: provision it now
/// (npm, into the same cache) so `pdp serve` starts without the registry, e.g. in a container image.
async fn provision_executor(s: &Setup, offline: bool, printer: &Printer) -> anyhow::Result<()> {
    let version = s.config.prisma.version.to_string();
    let spec = pdp_serve::executor::tool_spec(&version);
    let cache_root = s.config.engines.cache.clone();
    if offline {
        return match pdp_toolchain::npm::cached(&cache_root, &spec) {
            Some(hit) => {
                printer.status("cached", &format!("{} in {}", spec.label(), hit.dir.display()));
                Ok(())
            }
            None => Err(UserError::new(
                format!("{} is not in the cache and --offline forbids installing it", spec.label()),
                "run `pdp engines fetch` once where the npm registry is reachable",
            )
            .into()),
        };
    }
    let (_, npm) = super::node_and_npm(&s.config, &s.env);
    let label = spec.label();
    let fresh = pdp_toolchain::npm::cached(&cache_root, &spec).is_none();
    let launcher = tokio::task::spawn_blocking(move || {
        pdp_serve::executor::provision(&cache_root, &version, move || {
            npm.ok_or(pdp_toolchain::npm::NpmError::NotFound { program: "npm", tool: label })
        })
    })
    .await
    .context("the provisioning task failed")?
    .map_err(|e| UserError::new(e.to_string(), e.hint()))?;
    let dir = launcher.parent().unwrap_or(&launcher).display().to_string();
    printer.status(if fresh { "installed" } else { "cached" }, &format!("{} in {dir}", spec.label()));
    Ok(())
}
