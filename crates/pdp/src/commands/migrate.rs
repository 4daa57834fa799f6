//! `pdp migrate deploy | status | resolve`: resolves the database and migrations folder from the config,
//! runs the `pdp-migrate` operation on a small async runtime, and renders the outcome the way Prisma's
//! CLI words it. Progress goes to stderr; `--dry-run` lists and `status` reports go to stdout.

use std::path::Path;
use std::time::Duration;

use pdp_config::env::{Env, ProcessEnv};
use pdp_migrate::ops::{self, Lock, Reporter, Resolved, Target, Verdict};
use pdp_migrate::source;

use crate::cli::{MigrateArgs, MigrateCommand, MigrateTarget};
use crate::diagnostics::Status;
use crate::printer::Printer;

/// Prisma's switch for databases behind a pooler that cannot hold session locks.
const DISABLE_LOCK_VAR: &str = "PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK";

struct Progress<'a>(&'a Printer);

impl Reporter for Progress<'_> {
    fn waiting_for_lock(&self) {
        self.0.info("Waiting for the migrate lock held by another deployer…");
    }
    fn created_database(&self, name: &str) {
        self.0.status("created", &format!("database `{name}` (it did not exist)"));
    }
    fn applying(&self, name: &str) {
        self.0.status("applying", &format!("`{name}`"));
    }
    fn applied(&self, name: &str, elapsed: Duration) {
        self.0.status("applied", &format!("`{name}` ({} ms)", elapsed.as_millis()));
    }
}

/// Runs `pdp migrate …`.
pub fn run(args: &MigrateArgs, config_flag: Option<&Path>, cwd: &Path, printer: &Printer) -> anyhow::Result<Status> {
    let target_args: &MigrateTarget = match &args.command {
        MigrateCommand::Deploy(a) => &a.target,
        MigrateCommand::Status(a) => &a.target,
        MigrateCommand::Resolve(a) => &a.target,
    };
    let overrides = pdp_config::Overrides {
        database_url: target_args.database_url.clone().map(pdp_config::Secret::new),
        ..pdp_config::Overrides::default()
    };
    let (config, process_env) = super::load_config(config_flag, cwd, &overrides)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // No URL configured: the embedded PostgreSQL `pdp serve` uses (started here, or `pdp serve`'s own
    // while it runs), so `pdp init && pdp migrate deploy && pdp serve` needs no database server.
    let embedded = match config.database.connect_to()? {
        Some(_) => None,
        None => {
            let (node, npm) = super::node_and_npm(&config, &process_env);
            let options = super::embedded_options(&config, node);
            printer.status("Starting", "the embedded PostgreSQL (PGlite; no `[database] url` is configured)");
            let started = runtime.block_on(pdp_toolchain::embedded::start(&options, move || {
                npm.ok_or(pdp_toolchain::npm::NpmError::NotFound { program: "npm", tool: "PGlite".into() })
            }))?;
            Some(started)
        }
    };
    let outcome = run_on(args, &config, embedded.as_ref().map(|e| e.url()), &runtime, printer);
    if let Some(e) = embedded {
        runtime.block_on(e.stop());
    }
    outcome
}

fn run_on(
    args: &MigrateArgs,
    config: &pdp_config::Config,
    embedded: Option<&pdp_config::DatabaseUrl>,
    runtime: &tokio::runtime::Runtime,
    printer: &Printer,
) -> anyhow::Result<Status> {
    let Some(url) = config.database.configured().or(embedded) else {
        unreachable!("the caller starts the embedded database when no URL is configured")
    };
    let (migrations_dir, schema_dir) = super::schema::migration_paths(config)?;
    let migrations = source::read(&migrations_dir)?;
    let dir = migrations_dir.strip_prefix(&config.root).unwrap_or(&migrations_dir).display().to_string();
    let target = Target { url, schema_dir: &schema_dir, connect_timeout: Duration::from_secs(15) };
    let env = ProcessEnv::new();
    let lock_disabled = env.var(DISABLE_LOCK_VAR).is_some_and(|v| !v.is_empty() && v != "0");
    let lock = |wait: Option<Duration>| {
        if lock_disabled { Lock::Skip } else { Lock::Wait(wait.unwrap_or(config.migrate.lock_timeout)) }
    };
    let reporter = Progress(printer);

    let found = match migrations.migrations.len() {
        0 => format!("No migration found in {dir}"),
        1 => format!("1 migration found in {dir}"),
        n => format!("{n} migrations found in {dir}"),
    };
    match &args.command {
        MigrateCommand::Deploy(a) => {
            printer.info(&format!("Datasource: {} ({})", url.redacted(), url.provider()));
            printer.info(&found);
            for w in &migrations.warnings {
                printer.warn(w, None);
            }
            if lock_disabled && !a.dry_run {
                printer.warn(&format!("{DISABLE_LOCK_VAR} is set: not taking the migrate lock"), None);
            }
            let done = runtime.block_on(ops::deploy(&target, &migrations, lock(a.wait_lock), a.dry_run, &reporter))?;
            if a.dry_run {
                for name in &done.applied {
                    printer.data(name);
                }
                printer.info(&match done.applied.len() {
                    0 => "No pending migrations to apply.".to_owned(),
                    n => format!("{n} migration(s) would be applied (dry run: nothing was changed)."),
                });
            } else if done.applied.is_empty() {
                printer.info("No pending migrations to apply.");
            } else {
                printer.info(&format!("All {} migration(s) have been successfully applied.", done.applied.len()));
            }
            Ok(Status::Success)
        }
        MigrateCommand::Status(a) => {
            let st = runtime.block_on(ops::status(&target, &migrations))?;
            if a.json {
                let verdict = match &st.verdict {
                    Verdict::UpToDate => "up-to-date",
                    Verdict::NotManaged { .. } => "not-managed",
                    Verdict::Failed => "failed",
                    Verdict::Behind => "behind",
                    Verdict::Diverged { .. } => "diverged",
                };
                let failed: Vec<_> = st
                    .failed
                    .iter()
                    .map(|f| serde_json::json!({ "name": f.name, "started_at": f.started_at.to_rfc3339(), "logs": f.logs }))
                    .collect();
                let doc = serde_json::json!({
                    "status": verdict,
                    "local": st.local,
                    "unapplied": st.unapplied,
                    "missing_locally": st.missing_locally,
                    "failed": failed,
                    "edited": st.edited,
                });
                printer.data(&serde_json::to_string_pretty(&doc)?);
            } else {
                render_status(printer, &found, &st);
            }
            Ok(if st.verdict == Verdict::UpToDate { Status::Success } else { Status::CheckFailed })
        }
        MigrateCommand::Resolve(a) => {
            let outcome = match (&a.applied, &a.rolled_back) {
                (Some(name), _) => {
                    runtime.block_on(ops::resolve_applied(&target, &migrations, name, lock(a.wait_lock), &reporter))?
                }
                (None, Some(name)) => runtime.block_on(ops::resolve_rolled_back(
                    &target,
                    &migrations,
                    name,
                    lock(a.wait_lock),
                    &reporter,
                ))?,
                (None, None) => unreachable!("clap requires one of --applied / --rolled-back"),
            };
            match outcome {
                Resolved::Applied { rolled_back, created_ledger } => {
                    if created_ledger {
                        printer.info("Created `_prisma_migrations` (baseline).");
                    }
                    if rolled_back > 0 {
                        printer.info(&format!("Marked {rolled_back} failed attempt(s) as rolled back."));
                    }
                    printer
                        .info(&format!("Migration `{}` marked as applied.", a.applied.as_deref().unwrap_or_default()));
                }
                Resolved::RolledBack(n) => printer.info(&format!(
                    "Migration `{}` marked as rolled back ({n} row(s)); `pdp migrate deploy` will run it again.",
                    a.rolled_back.as_deref().unwrap_or_default()
                )),
            }
            Ok(Status::Success)
        }
    }
}

fn render_status(printer: &Printer, found: &str, st: &ops::Status) {
    printer.data(found);
    let list = |names: &[String]| {
        for n in names {
            printer.data(&format!("  {n}"));
        }
    };
    match &st.verdict {
        Verdict::UpToDate => printer.data("Database schema is up to date!"),
        Verdict::NotManaged { has_tables } => {
            printer.data("The current database is not managed by Prisma Migrate.");
            if *has_tables && let Some(first) = st.local.first() {
                printer.data(&format!("To baseline it, run: pdp migrate resolve --applied {first}"));
            }
        }
        Verdict::Failed => {
            printer.data("Following migration(s) have failed:");
            for f in &st.failed {
                printer.data(&format!("  {} (started {})", f.name, f.started_at.to_rfc3339()));
            }
            if let Some(f) = st.failed.first() {
                printer.data(&format!(
                    "After fixing the database: pdp migrate resolve --rolled-back {0} (to retry) or --applied {0}",
                    f.name
                ));
            }
        }
        Verdict::Behind => {
            printer.data("Following migration(s) have not yet been applied:");
            list(&st.unapplied);
            printer.data("To apply them: pdp migrate deploy");
        }
        Verdict::Diverged { last_common } => {
            printer.data("Your local migration history and the migrations table from your database are different:");
            printer.data(&format!("The last common migration is: {}", last_common.as_deref().unwrap_or("(none)")));
            printer.data("The migration(s) have not yet been applied:");
            list(&st.unapplied);
            printer.data("The migration(s) from the database are not found locally in prisma/migrations:");
            list(&st.missing_locally);
        }
    }
    if !st.edited.is_empty() {
        printer.data(
            "Applied migration(s) edited since (the file differs from what was applied; Prisma does not report this):",
        );
        list(&st.edited);
    }
}
