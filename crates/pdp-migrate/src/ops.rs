//! `deploy`, `status` and `resolve` with Prisma Migrate's semantics (engines.md §5), over a connection
//! and a migrations directory read in full beforehand. Errors carry Prisma's P-code meaning and wording.
//!
//! Reports progress through [`Reporter`]; never prints. Never compares checksums in deploy (Prisma does
//! not either); `status` reports edited migrations as extra information.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pdp_config::{DatabaseUrl, Provider};

use crate::db::{self, Db, DbError};
use crate::ledger::{DbFailure, LedgerRow, LockFailure, TABLE};
use crate::source::{LocalMigration, Migrations, script_matches};

/// Where to migrate.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The database.
    pub url: &'a DatabaseUrl,
    /// Directory relative SQLite paths are anchored at (the schema's).
    pub schema_dir: &'a Path,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

/// How to treat Prisma's migrate lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Take it, waiting at most this long for another deployer.
    Wait(Duration),
    /// Do not take it (`PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK`, e.g. behind PgBouncer in transaction mode).
    Skip,
}

/// Progress of a deploy, for the binary to render.
pub trait Reporter {
    /// The lock is held by someone else and we are waiting.
    fn waiting_for_lock(&self) {}
    /// The database did not exist and was created.
    fn created_database(&self, _name: &str) {}
    /// A migration is about to run.
    fn applying(&self, _name: &str) {}
    /// A migration finished.
    fn applied(&self, _name: &str, _elapsed: Duration) {}
}

/// A reporter that says nothing.
pub struct Silent;
impl Reporter for Silent {}

/// A failed row, as P3009 describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    /// The migration.
    pub name: String,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// What was logged (`None` when it crashed before logging).
    pub logs: Option<String>,
}

/// Why a migrate command stopped. Nothing after the failing step was done.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Could not connect.
    #[error(transparent)]
    Connect(#[from] DbError),
    /// The migrations directory is unusable.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// P3019.
    #[error(
        "P3019: the datasource provider `{actual}` of the database URL does not match the one in migration_lock.toml, `{locked}`"
    )]
    ProviderMismatch {
        /// From the URL.
        actual: Provider,
        /// From the lock file.
        locked: String,
    },
    /// P1002.
    #[error("P1002: timed out after {}s waiting for the migrate lock ({what}) held by another deployer", timeout.as_secs_f32())]
    LockTimeout {
        /// Which lock, e.g. `SELECT pg_advisory_lock(72707369)`.
        what: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// P3005.
    #[error("P3005: the database schema is not empty and is not managed by Prisma Migrate (found {})", list(tables))]
    NotEmpty {
        /// Tables found.
        tables: Vec<String>,
        /// The first local migration, for the baseline hint.
        first: Option<String>,
    },
    /// P3009.
    #[error("P3009: found failed migrations in the target database; new migrations will not be applied{}", render_failed(.0))]
    FailedMigrations(Vec<Failed>),
    /// P3018.
    #[error(
        "P3018: migration `{name}` failed to apply; new migrations cannot be applied before the error is recovered from\n\nDatabase error{}:\n{message}",
        code.as_ref().map(|c| format!(" code {c}")).unwrap_or_default()
    )]
    ApplyFailed {
        /// The migration.
        name: String,
        /// The database's error code.
        code: Option<String>,
        /// The database's message.
        message: String,
        /// Whether the script's partial effects were rolled back (PostgreSQL) or may remain.
        atomic: bool,
    },
    /// P3017.
    #[error("P3017: migration `{name}` could not be found in `{}`", dir.display())]
    NotFoundLocally {
        /// The name given.
        name: String,
        /// The migrations directory.
        dir: std::path::PathBuf,
    },
    /// P3008.
    #[error("P3008: migration `{name}` is already recorded as applied in the database")]
    AlreadyApplied {
        /// The migration.
        name: String,
    },
    /// P3011.
    #[error("P3011: migration `{name}` cannot be rolled back because it was never applied to the database")]
    NeverApplied {
        /// The migration.
        name: String,
    },
    /// P3012.
    #[error("P3012: migration `{name}` cannot be rolled back because it is not in a failed state")]
    NotFailed {
        /// The migration.
        name: String,
    },
    /// Any other database failure, with what pdp was doing.
    #[error("could not {doing}: {}{}", failure.message, failure.code.as_ref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    Database {
        /// What pdp was doing.
        doing: String,
        /// The failure.
        failure: DbFailure,
    },
}

fn list(items: &[String]) -> String {
    let shown: Vec<String> = items.iter().take(5).map(|t| format!("`{t}`")).collect();
    let more = items.len().saturating_sub(5);
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

fn render_failed(failed: &[Failed]) -> String {
    let mut s = String::new();
    for f in failed {
        s.push_str(&format!("\nThe `{}` migration started at {} failed", f.name, f.started_at.to_rfc3339()));
        if let Some(logs) = f.logs.as_deref().filter(|l| !l.trim().is_empty()) {
            s.push_str(" with the following logs:\n");
            s.push_str(logs.trim_end());
        }
    }
    s
}

impl MigrateError {
    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            MigrateError::Connect(e) => e.hint(),
            MigrateError::Source(e) => e.hint(),
            MigrateError::ProviderMismatch { .. } => Some(
                "migrations are provider-specific: point the URL at the right database, or start a new migration history for this provider".into(),
            ),
            MigrateError::LockTimeout { .. } => Some(
                "another deploy is running; wait longer with `--wait-lock 2m`, or set PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK=1 behind PgBouncer in transaction mode".into(),
            ),
            MigrateError::NotEmpty { first, .. } => Some(match first {
                Some(f) => format!("baseline the existing database: `pdp migrate resolve --applied {f}` marks the migration that matches it as applied"),
                None => "baseline it with `pdp migrate resolve --applied <migration>` once you have a migration that matches it".into(),
            }),
            MigrateError::FailedMigrations(failed) => {
                let name = failed.first().map_or("<migration>", |f| f.name.as_str());
                Some(format!(
                    "fix the database by hand, then `pdp migrate resolve --rolled-back {name}` to retry it or `--applied {name}` if its changes are in place"
                ))
            }
            MigrateError::ApplyFailed { name, atomic, .. } => Some(if *atomic {
                format!("nothing of `{name}` was kept (PostgreSQL ran it in one transaction); fix the script, then `pdp migrate resolve --rolled-back {name}` and deploy again")
            } else {
                format!("part of `{name}` may have been applied (this database cannot run DDL atomically); repair it, then `pdp migrate resolve --rolled-back {name}` or `--applied {name}`")
            }),
            MigrateError::NotFoundLocally { .. } => Some("pass the whole folder name, e.g. `20201207184859_initial_migration`".into()),
            MigrateError::AlreadyApplied { .. } => None,
            MigrateError::NeverApplied { .. } => Some("did you pass the whole migration name? (`pdp migrate status` lists them)".into()),
            MigrateError::NotFailed { .. } => Some("`--rolled-back` only marks failed migrations; it does not undo applied ones".into()),
            MigrateError::Database { .. } => None,
        }
    }
}

fn dbe(doing: impl Into<String>) -> impl FnOnce(DbFailure) -> MigrateError {
    let doing = doing.into();
    move |failure| MigrateError::Database { doing, failure }
}

fn check_provider(url: &DatabaseUrl, migrations: &Migrations) -> Result<(), MigrateError> {
    if let Some(locked) = &migrations.locked_provider {
        let same = Provider::from_schema_name(locked) == Some(url.provider());
        if !same {
            return Err(MigrateError::ProviderMismatch { actual: url.provider(), locked: locked.clone() });
        }
    }
    Ok(())
}

async fn open(target: &Target<'_>, create: bool, reporter: &dyn Reporter) -> Result<Db, MigrateError> {
    let connect = || db::connect(target.url, target.schema_dir, target.connect_timeout, create);
    let mut conn = match connect().await {
        // Prisma's deploy creates a missing database first; an init container on a fresh server relies on it.
        Err(DbError::Connect { kind: db::FailureKind::NoDatabase, .. }) if create => {
            let name = db::create_database(target.url, target.connect_timeout).await?;
            reporter.created_database(&name);
            connect().await?
        }
        other => other?,
    };
    if create && target.url.provider() == Provider::Postgresql {
        let schema = db::postgres_schema(target.url);
        conn.ensure_schema(&schema).await.map_err(dbe(format!("create schema `{schema}`")))?;
    }
    Ok(conn)
}

async fn lock(conn: &mut Db, lock: Lock, reporter: &dyn Reporter) -> Result<(), MigrateError> {
    let Lock::Wait(timeout) = lock else { return Ok(()) };
    let what = match conn {
        Db::Postgres(_) => "SELECT pg_advisory_lock(72707369)",
        Db::Mysql(_) => "SELECT GET_LOCK('prisma_migrate', …)",
        Db::Sqlite(_) => "PRAGMA main.locking_mode=EXCLUSIVE",
    };
    // Try briefly first so the reporter only speaks when there really is a wait.
    match conn.lock(Duration::from_millis(50).min(timeout)).await {
        Ok(()) => return Ok(()),
        Err(LockFailure::Db(f)) => return Err(dbe("take the migrate lock")(f)),
        Err(LockFailure::Timeout) => reporter.waiting_for_lock(),
    }
    match conn.lock(timeout).await {
        Ok(()) => Ok(()),
        Err(LockFailure::Timeout) => Err(MigrateError::LockTimeout { what, timeout }),
        Err(LockFailure::Db(f)) => Err(dbe("take the migrate lock")(f)),
    }
}

fn failed_rows(rows: &[LedgerRow]) -> Vec<Failed> {
    rows.iter()
        .filter(|r| r.is_failed())
        .map(|r| Failed { name: r.migration_name.clone(), started_at: r.started_at, logs: r.logs.clone() })
        .collect()
}

/// Local migrations with no row that is not rolled back: what deploy applies (Prisma's rule).
pub fn pending<'m>(migrations: &'m Migrations, rows: &[LedgerRow]) -> Vec<&'m LocalMigration> {
    migrations
        .migrations
        .iter()
        .filter(|m| !rows.iter().any(|r| r.migration_name == m.name && r.rolled_back_at.is_none()))
        .collect()
}

/// What deploy did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct Deployed {
    /// Names applied (or to apply), in order.
    pub applied: Vec<String>,
    /// Whether `_prisma_migrations` had to be created.
    pub created_ledger: bool,
}

/// `migrate deploy`.
pub async fn deploy(
    target: &Target<'_>,
    migrations: &Migrations,
    lock_policy: Lock,
    dry_run: bool,
    reporter: &dyn Reporter,
) -> Result<Deployed, MigrateError> {
    check_provider(target.url, migrations)?;
    let mut conn = match open(target, !dry_run, reporter).await {
        // A dry run against a database deploy would create (a missing SQLite file, a missing database)
        // would apply everything.
        Err(MigrateError::Connect(
            DbError::MissingFile { .. } | DbError::Connect { kind: db::FailureKind::NoDatabase, .. },
        )) if dry_run => {
            let applied = migrations.migrations.iter().map(|m| m.name.clone()).collect();
            return Ok(Deployed { applied, created_ledger: true });
        }
        other => other?,
    };
    if !dry_run {
        lock(&mut conn, lock_policy, reporter).await?;
    }
    let tables = conn.tables().await.map_err(dbe("list the tables"))?;
    let mut out = Deployed::default();
    let rows = if tables.iter().any(|t| t == TABLE) {
        conn.rows().await.map_err(dbe("read _prisma_migrations"))?
    } else if !tables.is_empty() {
        return Err(MigrateError::NotEmpty { tables, first: migrations.migrations.first().map(|m| m.name.clone()) });
    } else {
        if !dry_run {
            conn.create_ledger().await.map_err(dbe("create _prisma_migrations"))?;
        }
        out.created_ledger = true;
        Vec::new()
    };
    let failed = failed_rows(&rows);
    if !failed.is_empty() {
        return Err(MigrateError::FailedMigrations(failed));
    }
    let todo = pending(migrations, &rows);
    if dry_run {
        out.applied = todo.iter().map(|m| m.name.clone()).collect();
        return Ok(out);
    }
    let atomic = matches!(conn, Db::Postgres(_));
    let last = todo.len().saturating_sub(1);
    if !todo.is_empty() {
        conn.set_durable_commits(false).await.map_err(dbe("set synchronous_commit"))?;
    }
    for (i, m) in todo.into_iter().enumerate() {
        let id = uuid::Uuid::new_v4().to_string();
        conn.insert_started(&id, &m.checksum, &m.name, Utc::now())
            .await
            .map_err(dbe(format!("record the start of `{}`", m.name)))?;
        reporter.applying(&m.name);
        let started = Instant::now();
        if let Err(failure) = conn.run_script(&m.script).await {
            let logs = match &failure.code {
                Some(code) => format!("Database error code: {code}\n\nDatabase error:\n{}", failure.message),
                None => format!("Database error:\n{}", failure.message),
            };
            conn.set_durable_commits(true).await.map_err(dbe("set synchronous_commit"))?;
            conn.record_failure(&id, &logs).await.map_err(dbe(format!("record the failure of `{}`", m.name)))?;
            return Err(MigrateError::ApplyFailed {
                name: m.name.clone(),
                code: failure.code,
                message: failure.message,
                atomic,
            });
        }
        if i == last {
            conn.set_durable_commits(true).await.map_err(dbe("set synchronous_commit"))?;
        }
        conn.mark_finished(&id, Utc::now()).await.map_err(dbe(format!("record `{}` as finished", m.name)))?;
        reporter.applied(&m.name, started.elapsed());
        out.applied.push(m.name.clone());
    }
    Ok(out)
}

/// How the database's history compares with the directory (Prisma's `migrate status` verdicts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to apply (including when the database has migrations the directory lacks).
    UpToDate,
    /// No `_prisma_migrations` table.
    NotManaged {
        /// Whether the schema has other tables (then it needs a baseline).
        has_tables: bool,
    },
    /// Failed rows block deploy.
    Failed,
    /// Local migrations not yet applied.
    Behind,
    /// Both sides have migrations the other lacks.
    Diverged {
        /// The last migration both sides share, in local order.
        last_common: Option<String>,
    },
}

/// `migrate status`.
#[derive(Clone, Debug)]
pub struct Status {
    /// The verdict.
    pub verdict: Verdict,
    /// Local migrations, in order.
    pub local: Vec<String>,
    /// Local migrations with no row at all (Prisma's diagnose counts rolled-back rows as present).
    pub unapplied: Vec<String>,
    /// Rows whose migration is missing locally.
    pub missing_locally: Vec<String>,
    /// Failed rows.
    pub failed: Vec<Failed>,
    /// Applied migrations whose file changed since (beyond CRLF/LF); Prisma does not report this.
    pub edited: Vec<String>,
}

/// `migrate status`: reads only; takes no lock and creates nothing.
pub async fn status(target: &Target<'_>, migrations: &Migrations) -> Result<Status, MigrateError> {
    check_provider(target.url, migrations)?;
    let mut conn = open(target, false, &Silent).await?;
    let local: Vec<String> = migrations.migrations.iter().map(|m| m.name.clone()).collect();
    let tables = conn.tables().await.map_err(dbe("list the tables"))?;
    let mut status = Status {
        verdict: Verdict::UpToDate,
        local: local.clone(),
        unapplied: Vec::new(),
        missing_locally: Vec::new(),
        failed: Vec::new(),
        edited: Vec::new(),
    };
    if !tables.iter().any(|t| t == TABLE) {
        status.unapplied = local;
        status.verdict = Verdict::NotManaged { has_tables: !tables.is_empty() };
        return Ok(status);
    }
    let rows = conn.rows().await.map_err(dbe("read _prisma_migrations"))?;
    status.failed = failed_rows(&rows);
    status.unapplied = local.iter().filter(|n| !rows.iter().any(|r| &r.migration_name == *n)).cloned().collect();
    let mut missing: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.rolled_back_at.is_none()) {
        if !local.contains(&r.migration_name) && !missing.contains(&r.migration_name) {
            missing.push(r.migration_name.clone());
        }
    }
    status.missing_locally = missing;
    for m in &migrations.migrations {
        let edited = rows
            .iter()
            .filter(|r| r.migration_name == m.name && r.finished_at.is_some() && r.rolled_back_at.is_none())
            .any(|r| !script_matches(&m.script, &r.checksum));
        if edited {
            status.edited.push(m.name.clone());
        }
    }
    status.verdict = if !status.failed.is_empty() {
        Verdict::Failed
    } else if !status.unapplied.is_empty() && !status.missing_locally.is_empty() {
        let last_common = local.iter().take_while(|n| rows.iter().any(|r| &r.migration_name == *n)).last().cloned();
        Verdict::Diverged { last_common }
    } else if !status.unapplied.is_empty() {
        Verdict::Behind
    } else {
        Verdict::UpToDate
    };
    Ok(status)
}

/// What `resolve` changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// `--applied`: a finished row was recorded; `rolled_back` failed rows were marked on the way.
    Applied {
        /// Failed rows marked rolled back.
        rolled_back: u64,
        /// Whether `_prisma_migrations` was created (the baselining path).
        created_ledger: bool,
    },
    /// `--rolled-back`: this many failed rows were marked.
    RolledBack(u64),
}

/// `migrate resolve --applied NAME`.
pub async fn resolve_applied(
    target: &Target<'_>,
    migrations: &Migrations,
    name: &str,
    lock_policy: Lock,
    reporter: &dyn Reporter,
) -> Result<Resolved, MigrateError> {
    check_provider(target.url, migrations)?;
    let Some(local) = migrations.migrations.iter().find(|m| m.name == name) else {
        return Err(MigrateError::NotFoundLocally { name: name.to_owned(), dir: migrations.dir.clone() });
    };
    let mut conn = open(target, true, reporter).await?;
    lock(&mut conn, lock_policy, reporter).await?;
    let tables = conn.tables().await.map_err(dbe("list the tables"))?;
    let created_ledger = !tables.iter().any(|t| t == TABLE);
    if created_ledger {
        // The baselining path: no emptiness check.
        conn.create_ledger().await.map_err(dbe("create _prisma_migrations"))?;
    }
    let rows = conn.rows().await.map_err(dbe("read _prisma_migrations"))?;
    if rows.iter().any(|r| r.migration_name == name && r.finished_at.is_some()) {
        return Err(MigrateError::AlreadyApplied { name: name.to_owned() });
    }
    let now = Utc::now();
    let rolled_back = conn.mark_rolled_back(name, now).await.map_err(dbe(format!("mark `{name}` rolled back")))?;
    let id = uuid::Uuid::new_v4().to_string();
    conn.insert_resolved(&id, &local.checksum, name, now).await.map_err(dbe(format!("record `{name}` as applied")))?;
    Ok(Resolved::Applied { rolled_back, created_ledger })
}

/// `migrate resolve --rolled-back NAME`.
pub async fn resolve_rolled_back(
    target: &Target<'_>,
    migrations: &Migrations,
    name: &str,
    lock_policy: Lock,
    reporter: &dyn Reporter,
) -> Result<Resolved, MigrateError> {
    check_provider(target.url, migrations)?;
    let mut conn = open(target, false, &Silent).await?;
    lock(&mut conn, lock_policy, reporter).await?;
    let tables = conn.tables().await.map_err(dbe("list the tables"))?;
    if !tables.iter().any(|t| t == TABLE) {
        return Err(MigrateError::NeverApplied { name: name.to_owned() });
    }
    let rows = conn.rows().await.map_err(dbe("read _prisma_migrations"))?;
    let mine: Vec<&LedgerRow> = rows.iter().filter(|r| r.migration_name == name).collect();
    if mine.is_empty() {
        return Err(MigrateError::NeverApplied { name: name.to_owned() });
    }
    if !mine.iter().any(|r| r.is_failed()) {
        return Err(MigrateError::NotFailed { name: name.to_owned() });
    }
    let n = conn.mark_rolled_back(name, Utc::now()).await.map_err(dbe(format!("mark `{name}` rolled back")))?;
    Ok(Resolved::RolledBack(n))
}
