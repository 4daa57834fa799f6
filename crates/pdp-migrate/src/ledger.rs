//! `_prisma_migrations`, exactly as Prisma Migrate keeps it: the DDL per provider, the migrate lock, and
//! the row operations deploy and resolve perform. Timestamps are written by pdp in UTC (as Prisma's
//! engine does), not taken from the database clock.
//!
//! This module knows SQL dialects; it does not decide what to apply (`ops` does) and never prints.
//!
//! PostgreSQL statements are never prepared under a name (`.persistent(false)`): where the server shares one
//! session between connections (pdp's embedded PGlite, a transaction-mode PgBouncer) a named statement
//! (`sqlx_s_1`) outlives its connection, and the next pdp connection preparing that name fails with 42P05
//! (seen: `pdp migrate status` after `pdp serve`'s `/ready` had pinged the shared PGlite).

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::Row;

use crate::db::Db;

/// The table's name, fixed by Prisma.
pub const TABLE: &str = "_prisma_migrations";
/// Prisma's PostgreSQL advisory lock key ("unique to Migrate").
pub const PG_LOCK_KEY: i64 = 72_707_369;
/// Prisma's MySQL named lock.
pub const MYSQL_LOCK_NAME: &str = "prisma_migrate";

const PG_DDL: &str = r#"CREATE TABLE "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
);"#;

const MYSQL_DDL: &str = r"CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             DATETIME(3),
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          DATETIME(3),
    started_at              DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    applied_steps_count     INTEGER UNSIGNED NOT NULL DEFAULT 0
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;";

const SQLITE_DDL: &str = r#"CREATE TABLE "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
);"#;

/// One row of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    /// A UUID per attempt.
    pub id: String,
    /// SHA-256 of the script when it was applied.
    pub checksum: String,
    /// Set when the script succeeded (or was resolved as applied).
    pub finished_at: Option<DateTime<Utc>>,
    /// The folder name.
    pub migration_name: String,
    /// The error of a failed attempt; `''` for resolved rows.
    pub logs: Option<String>,
    /// Set by `resolve --rolled-back` / `--applied` on failed rows.
    pub rolled_back_at: Option<DateTime<Utc>>,
    /// When the attempt began.
    pub started_at: DateTime<Utc>,
    /// 1 after a successful deploy, 0 for resolved or failed rows.
    pub applied_steps_count: i64,
}

impl LedgerRow {
    /// Failed or crashed and not resolved: blocks deploy (P3009).
    pub fn is_failed(&self) -> bool {
        self.finished_at.is_none() && self.rolled_back_at.is_none()
    }
}

/// A statement the database refused.
#[derive(Debug)]
pub struct DbFailure {
    /// The database's error code (SQLSTATE or vendor code), when it gave one.
    pub code: Option<String>,
    /// The database's message.
    pub message: String,
}

impl DbFailure {
    fn from(e: &sqlx::Error) -> DbFailure {
        match e {
            sqlx::Error::Database(db) => {
                DbFailure { code: db.code().map(|c| c.into_owned()), message: db.message().to_owned() }
            }
            other => DbFailure { code: None, message: other.to_string() },
        }
    }
}

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockFailure {
    /// Someone else holds it for longer than we wait.
    Timeout,
    /// The database failed while we asked.
    Db(DbFailure),
}

/// A timestamp as a SQL literal of the provider's column type (pdp-generated text, never user input).
fn stamp(db: &Db, at: DateTime<Utc>) -> String {
    match db {
        Db::Postgres(_) => format!("'{}'::timestamptz", at.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
        Db::Mysql(_) => format!("'{}'", at.format("%Y-%m-%d %H:%M:%S%.3f")),
        // Prisma's native engine stores SQLite DATETIME values as unix milliseconds.
        Db::Sqlite(_) => at.timestamp_millis().to_string(),
    }
}

/// `$n` on PostgreSQL, `?` elsewhere.
fn p(db: &Db, n: usize) -> String {
    match db {
        Db::Postgres(_) => format!("${n}"),
        _ => "?".to_owned(),
    }
}

/// Runs one statement with string parameters on whichever connection this is.
macro_rules! execute {
    ($db:expr, $sql:expr $(, $bind:expr)* $(,)?) => {{
        let sql: &str = $sql;
        match $db {
            Db::Postgres(c) => sqlx::query(sql)$(.bind($bind))*.persistent(false).execute(&mut *c).await.map(|r| r.rows_affected()),
            Db::Mysql(c) => sqlx::query(sql)$(.bind($bind))*.execute(&mut *c).await.map(|r| r.rows_affected()),
            Db::Sqlite(c) => sqlx::query(sql)$(.bind($bind))*.execute(&mut *c).await.map(|r| r.rows_affected()),
        }
    }};
}

impl Db {
    /// Takes Prisma's migrate lock, waiting at most `timeout`. It is held until the connection closes.
    pub async fn lock(&mut self, timeout: Duration) -> Result<(), LockFailure> {
        // An absurd `--wait-lock` must not overflow the clock; a year is forever here.
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        match self {
            Db::Postgres(c) => {
                // Polling the non-blocking form keeps the wait bounded on our side; the key is Prisma's,
                // so pdp and `prisma migrate deploy` exclude each other.
                let mut pause = Duration::from_millis(20);
                loop {
                    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(PG_LOCK_KEY)
                        .persistent(false)
                        .fetch_one(&mut *c)
                        .await
                        .map_err(|e| LockFailure::Db(DbFailure::from(&e)))?;
                    if got {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(LockFailure::Timeout);
                    }
                    tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
            }
            Db::Mysql(c) => {
                // GET_LOCK returns 1 when taken, 0 on timeout, NULL on error. Prisma ignores the result;
                // proceeding without the lock is exactly what the lock exists to prevent, so check it.
                let secs = timeout.as_secs_f64().ceil().max(0.0);
                let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
                    .bind(MYSQL_LOCK_NAME)
                    .bind(secs)
                    .fetch_one(&mut *c)
                    .await
                    .map_err(|e| LockFailure::Db(DbFailure::from(&e)))?;
                match got {
                    Some(1) => Ok(()),
                    Some(_) => Err(LockFailure::Timeout),
                    None => Err(LockFailure::Db(DbFailure { code: None, message: "GET_LOCK returned NULL".into() })),
                }
            }
            Db::Sqlite(c) => {
                let ms = timeout.as_millis().min(i64::MAX as u128);
                let setup = format!("PRAGMA busy_timeout = {ms}; PRAGMA main.locking_mode = EXCLUSIVE;");
                sqlx::raw_sql(&setup).execute(&mut *c).await.map_err(|e| LockFailure::Db(DbFailure::from(&e)))?;
                // In exclusive locking mode the first write lock is kept until the connection closes.
                match sqlx::raw_sql("BEGIN EXCLUSIVE; COMMIT;").execute(&mut *c).await {
                    Ok(_) => Ok(()),
                    Err(sqlx::Error::Database(e)) if e.message().contains("locked") || e.message().contains("busy") => {
                        Err(LockFailure::Timeout)
                    }
                    Err(e) => Err(LockFailure::Db(DbFailure::from(&e))),
                }
            }
        }
    }

    /// On PostgreSQL, whether commits on this connection wait for the WAL flush (`synchronous_commit`).
    ///
    /// Deploy turns waiting off while it works and back on for its last ledger write: a synchronous
    /// commit flushes the WAL up to itself, so everything before it is durable when deploy reports
    /// success, and a crash midway still leaves a prefix in order (the same states Prisma can leave).
    pub async fn set_durable_commits(&mut self, durable: bool) -> Result<(), DbFailure> {
        if let Db::Postgres(c) = self {
            let sql = if durable { "SET synchronous_commit TO on" } else { "SET synchronous_commit TO off" };
            sqlx::raw_sql(sql).execute(&mut *c).await.map_err(|e| DbFailure::from(&e))?;
        }
        Ok(())
    }

    /// Creates the PostgreSQL schema the URL selects, as Prisma does before migrating.
    pub async fn ensure_schema(&mut self, schema: &str) -> Result<(), DbFailure> {
        if let Db::Postgres(c) = self {
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.replace('"', "\"\""));
            match sqlx::raw_sql(&sql).execute(&mut *c).await {
                Ok(_) => {}
                // `IF NOT EXISTS` is not safe against a concurrent creator: another deployer that won the
                // race surfaces as unique_violation or duplicate_schema. Either way the schema is there.
                Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {}
                Err(e) => return Err(DbFailure::from(&e)),
            }
        }
        Ok(())
    }

    /// Tables in the target schema (views and Prisma-ignored system tables excluded), `_prisma_migrations`
    /// included when present.
    pub async fn tables(&mut self) -> Result<Vec<String>, DbFailure> {
        let names: Result<Vec<String>, sqlx::Error> =
            match self {
                Db::Postgres(c) => {
                    sqlx::query_scalar(
                        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                     AND table_type = 'BASE TABLE' AND table_name NOT IN ('spatial_ref_sys', 'geometry_columns') \
                     ORDER BY table_name",
                    )
                    .persistent(false)
                    .fetch_all(&mut *c)
                    .await
                }
                Db::Mysql(c) => sqlx::query_scalar(
                    "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() \
                     AND table_type = 'BASE TABLE' ORDER BY table_name",
                )
                .fetch_all(&mut *c)
                .await,
                Db::Sqlite(c) => sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .fetch_all(&mut *c)
                .await,
            };
        names.map_err(|e| DbFailure::from(&e))
    }

    /// Creates `_prisma_migrations` with Prisma's DDL for this provider.
    pub async fn create_ledger(&mut self) -> Result<(), DbFailure> {
        let ddl = match self {
            Db::Postgres(_) => PG_DDL,
            Db::Mysql(_) => MYSQL_DDL,
            Db::Sqlite(_) => SQLITE_DDL,
        };
        self.run_script(ddl).await
    }

    /// Every row, oldest attempt first.
    pub async fn rows(&mut self) -> Result<Vec<LedgerRow>, DbFailure> {
        const SELECT: &str = "SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, \
                              applied_steps_count FROM _prisma_migrations ORDER BY started_at ASC, id ASC";
        let rows = match self {
            Db::Postgres(c) => sqlx::query(SELECT).persistent(false).fetch_all(&mut *c).await.and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        Ok(LedgerRow {
                            id: r.try_get(0)?,
                            checksum: r.try_get(1)?,
                            finished_at: r.try_get(2)?,
                            migration_name: r.try_get(3)?,
                            logs: r.try_get(4)?,
                            rolled_back_at: r.try_get(5)?,
                            started_at: r.try_get(6)?,
                            applied_steps_count: i64::from(r.try_get::<i32, _>(7)?),
                        })
                    })
                    .collect()
            }),
            Db::Mysql(c) => sqlx::query(SELECT).fetch_all(&mut *c).await.and_then(|rows| {
                let utc = |t: Option<NaiveDateTime>| t.map(|t| t.and_utc());
                rows.iter()
                    .map(|r| {
                        Ok(LedgerRow {
                            id: r.try_get(0)?,
                            checksum: r.try_get(1)?,
                            finished_at: utc(r.try_get(2)?),
                            migration_name: r.try_get(3)?,
                            logs: r.try_get(4)?,
                            rolled_back_at: utc(r.try_get(5)?),
                            started_at: r.try_get::<NaiveDateTime, _>(6)?.and_utc(),
                            applied_steps_count: i64::from(r.try_get::<u32, _>(7)?),
                        })
                    })
                    .collect()
            }),
            Db::Sqlite(c) => sqlx::query(SELECT).fetch_all(&mut *c).await.and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        Ok(LedgerRow {
                            id: r.try_get(0)?,
                            checksum: r.try_get(1)?,
                            finished_at: sqlite_time(r, 2)?,
                            migration_name: r.try_get(3)?,
                            logs: r.try_get(4)?,
                            rolled_back_at: sqlite_time(r, 5)?,
                            started_at: sqlite_time(r, 6)?.unwrap_or_default(),
                            applied_steps_count: r.try_get(7)?,
                        })
                    })
                    .collect()
            }),
        };
        rows.map_err(|e| DbFailure::from(&e))
    }

    /// Deploy's first step for a migration: the attempt's row, with no steps and no end.
    pub async fn insert_started(
        &mut self,
        id: &str,
        checksum: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DbFailure> {
        let sql = format!(
            "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count) VALUES ({}, {}, {}, {}, 0)",
            p(self, 1),
            p(self, 2),
            p(self, 3),
            stamp(self, at)
        );
        execute!(self, &sql, id, checksum, name).map(drop).map_err(|e| DbFailure::from(&e))
    }

    /// After the script succeeded: one step applied, then `finished_at` (two statements, as Prisma).
    pub async fn mark_finished(&mut self, id: &str, at: DateTime<Utc>) -> Result<(), DbFailure> {
        let steps = format!(
            "UPDATE _prisma_migrations SET applied_steps_count = applied_steps_count + 1 WHERE id = {}",
            p(self, 1)
        );
        execute!(self, &steps, id).map_err(|e| DbFailure::from(&e))?;
        let finished =
            format!("UPDATE _prisma_migrations SET finished_at = {} WHERE id = {}", stamp(self, at), p(self, 1));
        execute!(self, &finished, id).map(drop).map_err(|e| DbFailure::from(&e))
    }

    /// After the script failed: the error goes to `logs`, `finished_at` stays empty.
    pub async fn record_failure(&mut self, id: &str, logs: &str) -> Result<(), DbFailure> {
        let sql = format!("UPDATE _prisma_migrations SET logs = {} WHERE id = {}", p(self, 1), p(self, 2));
        execute!(self, &sql, logs, id).map(drop).map_err(|e| DbFailure::from(&e))
    }

    /// `resolve --applied`: a finished row with no steps and empty logs.
    pub async fn insert_resolved(
        &mut self,
        id: &str,
        checksum: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<(), DbFailure> {
        let sql = format!(
            "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, logs, started_at, applied_steps_count) \
             VALUES ({}, {}, {at}, {}, '', {at}, 0)",
            p(self, 1),
            p(self, 2),
            p(self, 3),
            at = stamp(self, at)
        );
        execute!(self, &sql, id, checksum, name).map(drop).map_err(|e| DbFailure::from(&e))
    }

    /// Marks the failed rows of `name` rolled back; returns how many.
    pub async fn mark_rolled_back(&mut self, name: &str, at: DateTime<Utc>) -> Result<u64, DbFailure> {
        let sql = format!(
            "UPDATE _prisma_migrations SET rolled_back_at = {} WHERE migration_name = {} AND finished_at IS NULL AND rolled_back_at IS NULL",
            stamp(self, at),
            p(self, 1)
        );
        execute!(self, &sql, name).map_err(|e| DbFailure::from(&e))
    }

    /// Runs a migration script the way Prisma does: on PostgreSQL as one simple-protocol message (one
    /// implicit transaction, so all or nothing); on MySQL as one multi-statement query; on SQLite as a
    /// batch. The last two are not atomic, as with Prisma.
    pub async fn run_script(&mut self, script: &str) -> Result<(), DbFailure> {
        let result = match self {
            Db::Postgres(c) => sqlx::raw_sql(script).execute(&mut *c).await.map(drop),
            Db::Mysql(c) => sqlx::raw_sql(script).execute(&mut *c).await.map(drop),
            Db::Sqlite(c) => sqlx::raw_sql(script).execute(&mut *c).await.map(drop),
        };
        result.map_err(|e| DbFailure::from(&e))
    }
}

/// SQLite DATETIME as Prisma's engines leave it: unix milliseconds (native engine), RFC 3339 text
/// (driver adapters), or `YYYY-MM-DD HH:MM:SS[.fff]` (column defaults).
fn sqlite_time(row: &sqlx::sqlite::SqliteRow, idx: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    use sqlx::{TypeInfo, ValueRef};
    let raw = row.try_get_raw(idx)?;
    if raw.is_null() {
        return Ok(None);
    }
    let bad = |what: String| sqlx::Error::Decode(what.into());
    match raw.type_info().name() {
        "INTEGER" => {
            let ms: i64 = row.try_get(idx)?;
            DateTime::from_timestamp_millis(ms).map(Some).ok_or_else(|| bad(format!("timestamp {ms} out of range")))
        }
        "REAL" => {
            let ms: f64 = row.try_get(idx)?;
            #[allow(clippy::cast_possible_truncation)]
            DateTime::from_timestamp_millis(ms as i64)
                .map(Some)
                .ok_or_else(|| bad(format!("timestamp {ms} out of range")))
        }
        _ => {
            let text: String = row.try_get(idx)?;
            parse_sqlite_text(&text).map(Some).ok_or_else(|| bad(format!("unrecognised timestamp `{text}`")))
        }
    }
}

fn parse_sqlite_text(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_text_forms() {
        let want = DateTime::parse_from_rfc3339("2026-11-23T19:02:48.725Z").expect("valid").with_timezone(&Utc);
        assert_eq!(parse_sqlite_text("2026-11-23T19:02:48.725+00:00"), Some(want));
        assert_eq!(parse_sqlite_text("2026-11-23 19:02:48.725"), Some(want));
        assert_eq!(parse_sqlite_text("2026-11-23 19:02:48").map(|t| t.timestamp()), Some(want.timestamp()));
        assert_eq!(parse_sqlite_text("yesterday"), None);
    }
}
