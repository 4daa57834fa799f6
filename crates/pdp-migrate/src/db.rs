//! Opens a connection from a Prisma datasource URL: translates Prisma's URL dialect (its own query
//! parameters, `file:` paths relative to the schema) into driver options, and classifies failures into
//! errors that say what to check.
//!
//! It does not pool, retry or run migrations; callers decide that. SQL Server and MongoDB are recognised
//! but not supported here.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use pdp_config::{DatabaseUrl, Provider};
use sqlx::{Connection, Row};

/// An open connection to one of the supported databases.
#[derive(Debug)]
pub enum Db {
    /// PostgreSQL (and anything speaking its protocol).
    Postgres(sqlx::PgConnection),
    /// MySQL or MariaDB.
    Mysql(sqlx::MySqlConnection),
    /// A SQLite file.
    Sqlite(sqlx::SqliteConnection),
}

/// What [`ping`] learned about the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// e.g. "PostgreSQL 15.19", "MariaDB 10.11.19", "SQLite 3.46.0".
    pub version: String,
    /// The server's connection limit (`max_connections`); `None` for SQLite.
    pub max_connections: Option<u64>,
}

/// Why a connection could not be made; every variant names the redacted URL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL's provider is one pdp cannot connect to itself.
    #[error("pdp cannot connect to {provider} databases itself (`{url}`)")]
    Unsupported {
        /// The provider.
        provider: Provider,
        /// The redacted URL.
        url: String,
    },
    /// The URL is not valid for its driver.
    #[error("invalid database URL `{url}`: {reason}")]
    InvalidUrl {
        /// The redacted URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The SQLite file does not exist (and `create` was not asked for).
    #[error("SQLite database file `{}` does not exist", path.display())]
    MissingFile {
        /// The resolved path.
        path: PathBuf,
    },
    /// Nothing answered in time.
    #[error("no answer from `{url}` within {}s", timeout.as_secs())]
    Timeout {
        /// The redacted URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The driver failed.
    #[error("cannot connect to `{url}`: {reason}")]
    Connect {
        /// The redacted URL.
        url: String,
        /// The driver's message, redacted.
        reason: String,
        /// What kind of failure, for the hint.
        kind: FailureKind,
    },
}

/// Coarse classification of connection failures, to choose a hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// TCP refused / host unreachable.
    Unreachable,
    /// Wrong user or password.
    Auth,
    /// The database (catalog) does not exist.
    NoDatabase,
    /// TLS negotiation failed.
    Tls,
    /// Anything else.
    Other,
}

impl DbError {
    /// What the user should check.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            DbError::Unsupported { .. } => "pdp connects to PostgreSQL, MySQL/MariaDB and SQLite".into(),
            DbError::InvalidUrl { .. } => "check the URL's form, e.g. `postgresql://user@host:5432/db` (percent-encode special characters in the password)".into(),
            DbError::MissingFile { .. } => {
                "the path in `file:` is relative to the schema file, as in Prisma; `pdp migrate deploy` creates it"
                    .into()
            }
            DbError::Timeout { .. } => "check the host and port, and that a firewall lets pdp through".into(),
            DbError::Connect { kind, .. } => match kind {
                FailureKind::Unreachable => "is the database running, and are the host and port right?".into(),
                FailureKind::Auth => "check the user name and password in the URL".into(),
                FailureKind::NoDatabase => "create the database, or fix its name in the URL".into(),
                FailureKind::Tls => "check `sslmode` in the URL and the server's certificate".into(),
                FailureKind::Other => return None,
            },
        })
    }
}

/// Prisma-only query parameters that drivers would reject or misread.
const PRISMA_ONLY_PARAMS: &[&str] = &[
    "schema",
    "connection_limit",
    "pool_timeout",
    "connect_timeout",
    "socket_timeout",
    "pgbouncer",
    "statement_cache_size",
    "sslaccept",
    "sslidentity",
    "single_use_connections",
    "max_connection_lifetime",
    "max_idle_connection_lifetime",
];

/// The PostgreSQL schema a Prisma URL selects (`?schema=`, default `public`).
pub fn postgres_schema(url: &DatabaseUrl) -> String {
    url::Url::parse(url.expose())
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "schema").map(|(_, v)| v.into_owned()))
        .unwrap_or_else(|| "public".to_owned())
}

/// The file a Prisma SQLite URL points at; relative paths are relative to the schema's directory.
pub fn sqlite_path(url: &DatabaseUrl, schema_dir: &Path) -> PathBuf {
    let raw = url.expose().trim();
    let rest = raw.strip_prefix("file:").unwrap_or(raw);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    let path = Path::new(path);
    if path.is_absolute() { path.to_path_buf() } else { schema_dir.join(path) }
}

/// `url` with a relative SQLite path made absolute against `schema_dir` (query parameters kept), for a
/// process that runs in another directory; any other URL unchanged.
pub fn with_absolute_sqlite_path(url: &DatabaseUrl, schema_dir: &Path) -> DatabaseUrl {
    if url.provider() != pdp_config::Provider::Sqlite || sqlite_path(url, Path::new("")).is_absolute() {
        return url.clone();
    }
    let raw = url.expose().trim();
    let query = raw.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    let absolute = format!("file:{}{query}", sqlite_path(url, schema_dir).display());
    DatabaseUrl::parse(&absolute, url.source.clone()).unwrap_or_else(|_| url.clone())
}

fn driver_url(url: &DatabaseUrl) -> Result<String, DbError> {
    let mut parsed = url::Url::parse(url.expose())
        .map_err(|e| DbError::InvalidUrl { url: url.redacted().to_owned(), reason: e.to_string() })?;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| !PRISMA_ONLY_PARAMS.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok(parsed.into())
}

/// Connects, bounded by `timeout`. `schema_dir` anchors relative SQLite paths; with `create`, a missing
/// SQLite file is created (as Prisma's migrate does), otherwise it is an error.
pub async fn connect(url: &DatabaseUrl, schema_dir: &Path, timeout: Duration, create: bool) -> Result<Db, DbError> {
    let redacted = url.redacted().to_owned();
    let attempt = async {
        match url.provider() {
            Provider::Postgresql => {
                let options = sqlx::postgres::PgConnectOptions::from_str(&driver_url(url)?)
                    .map_err(|e| invalid(&redacted, &e))?
                    .options([("search_path", postgres_schema(url))]);
                sqlx::PgConnection::connect_with(&options).await.map(Db::Postgres).map_err(|e| failed(&redacted, &e))
            }
            Provider::Mysql => {
                let options = sqlx::mysql::MySqlConnectOptions::from_str(&driver_url(url)?)
                    .map_err(|e| invalid(&redacted, &e))?;
                sqlx::MySqlConnection::connect_with(&options).await.map(Db::Mysql).map_err(|e| failed(&redacted, &e))
            }
            Provider::Sqlite => {
                let path = sqlite_path(url, schema_dir);
                if !create && !path.exists() {
                    return Err(DbError::MissingFile { path });
                }
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(create);
                sqlx::SqliteConnection::connect_with(&options).await.map(Db::Sqlite).map_err(|e| failed(&redacted, &e))
            }
            provider @ (Provider::Sqlserver | Provider::Mongodb) => {
                Err(DbError::Unsupported { provider, url: redacted.clone() })
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(DbError::Timeout { url: url.redacted().to_owned(), timeout }),
    }
}

/// The database (catalog) name a PostgreSQL or MySQL URL selects, percent-decoded.
pub fn database_name(url: &DatabaseUrl) -> Option<String> {
    let parsed = url::Url::parse(url.expose()).ok()?;
    let name = parsed.path().trim_start_matches('/');
    let decoded = url::form_urlencoded::parse(format!("n={name}").as_bytes()).next().map(|(_, v)| v.into_owned())?;
    (!decoded.is_empty()).then_some(decoded)
}

/// Creates the database a PostgreSQL or MySQL URL names, as `prisma migrate deploy` does before migrating
/// (its `ensureDatabaseExists`): connects to the server without it (PostgreSQL: the `postgres` maintenance
/// database) and runs `CREATE DATABASE`. Another deployer creating it first is not an error. Returns the name.
pub async fn create_database(url: &DatabaseUrl, timeout: Duration) -> Result<String, DbError> {
    let redacted = url.redacted().to_owned();
    let name = database_name(url)
        .ok_or_else(|| DbError::InvalidUrl { url: redacted.clone(), reason: "the URL names no database".into() })?;
    let mut server = url::Url::parse(&driver_url(url)?)
        .map_err(|e| DbError::InvalidUrl { url: redacted.clone(), reason: e.to_string() })?;
    let attempt = async {
        match url.provider() {
            Provider::Postgresql => {
                server.set_path("/postgres");
                let options =
                    sqlx::postgres::PgConnectOptions::from_str(server.as_str()).map_err(|e| invalid(&redacted, &e))?;
                let mut c = sqlx::PgConnection::connect_with(&options).await.map_err(|e| failed(&redacted, &e))?;
                let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
                match sqlx::raw_sql(&sql).execute(&mut c).await {
                    Ok(_) => Ok(()),
                    // duplicate_database: someone else was quicker.
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
                    Err(e) => Err(failed(&redacted, &e)),
                }
            }
            Provider::Mysql => {
                server.set_path("/");
                let options =
                    sqlx::mysql::MySqlConnectOptions::from_str(server.as_str()).map_err(|e| invalid(&redacted, &e))?;
                let mut c = sqlx::MySqlConnection::connect_with(&options).await.map_err(|e| failed(&redacted, &e))?;
                // The character set and collation Prisma gives the databases it creates.
                let sql = format!(
                    "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                    name.replace('`', "``")
                );
                sqlx::raw_sql(&sql).execute(&mut c).await.map(drop).map_err(|e| failed(&redacted, &e))
            }
            provider => Err(DbError::Unsupported { provider, url: redacted.clone() }),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(name),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DbError::Timeout { url: redacted, timeout }),
    }
}

/// Connects and asks the server for its version.
pub async fn ping(url: &DatabaseUrl, schema_dir: &Path, timeout: Duration) -> Result<ServerInfo, DbError> {
    let db = connect(url, schema_dir, timeout, false).await?;
    let redacted = url.redacted().to_owned();
    let query = async {
        let info = match db {
            Db::Postgres(mut c) => {
                let row = sqlx::query("SELECT current_setting('server_version'), current_setting('max_connections')")
                    .persistent(false)
                    .fetch_one(&mut c)
                    .await?;
                let (v, max): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                let _ = c.close().await;
                (format!("PostgreSQL {v}"), max.trim().parse().ok())
            }
            Db::Mysql(mut c) => {
                let row = sqlx::query("SELECT VERSION(), CAST(@@max_connections AS CHAR)").fetch_one(&mut c).await?;
                let (v, max): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                let _ = c.close().await;
                let (name, number) = if v.to_ascii_lowercase().contains("mariadb") {
                    ("MariaDB", v.split('-').next().unwrap_or(&v).to_owned())
                } else {
                    ("MySQL", v.clone())
                };
                (format!("{name} {number}"), max.trim().parse().ok())
            }
            Db::Sqlite(mut c) => {
                let row = sqlx::query("SELECT sqlite_version()").fetch_one(&mut c).await?;
                let v: String = row.try_get(0)?;
                let _ = c.close().await;
                (format!("SQLite {v}"), None)
            }
        };
        Ok::<_, sqlx::Error>(info)
    };
    match tokio::time::timeout(timeout, query).await {
        Ok(Ok((version, max_connections))) => Ok(ServerInfo { version, max_connections }),
        Ok(Err(e)) => Err(failed(&redacted, &e)),
        Err(_) => Err(DbError::Timeout { url: redacted, timeout }),
    }
}

fn invalid(url: &str, e: &sqlx::Error) -> DbError {
    DbError::InvalidUrl { url: url.to_owned(), reason: pdp_config::redact_text(&e.to_string()) }
}

fn failed(url: &str, e: &sqlx::Error) -> DbError {
    let kind = match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::NotFound
            | std::io::ErrorKind::AddrNotAvailable => FailureKind::Unreachable,
            _ => FailureKind::Other,
        },
        sqlx::Error::Tls(_) => FailureKind::Tls,
        sqlx::Error::Database(db) => {
            // MySQL's own error number says more than its SQLSTATE (1049 and 1064 share 42000).
            let mysql_number = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|e| e.number());
            match (db.code().as_deref(), mysql_number) {
                // PostgreSQL: invalid_password, invalid_authorization_specification; MySQL: access denied.
                (Some("28P01" | "28000"), _) | (_, Some(1044 | 1045)) => FailureKind::Auth,
                // PostgreSQL: invalid_catalog_name; MySQL: unknown database.
                (Some("3D000"), _) | (_, Some(1049)) => FailureKind::NoDatabase,
                _ => FailureKind::Other,
            }
        }
        _ => FailureKind::Other,
    };
    let mut reason = pdp_config::redact_text(&e.to_string());
    if let sqlx::Error::Database(db) = e
        && let Some(code) = db.code()
    {
        reason = format!("{reason} (code {code})");
    }
    DbError::Connect { url: url.to_owned(), reason, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DatabaseUrl {
        DatabaseUrl::parse(s, "test").expect("valid url")
    }

    #[test]
    fn prisma_params_are_dropped_for_the_driver() {
        let u = url("postgresql://u:p@h:5432/db?schema=app&connection_limit=5&sslmode=require&pool_timeout=3");
        assert_eq!(driver_url(&u).expect("ok"), "postgresql://u:p@h:5432/db?sslmode=require");
        assert_eq!(postgres_schema(&u), "app");
        assert_eq!(postgres_schema(&url("postgresql://h/db")), "public");
        assert_eq!(
            driver_url(&url("mysql://root@h:3306/db?connection_limit=1")).expect("ok"),
            "mysql://root@h:3306/db"
        );
    }

    #[test]
    fn sqlite_paths_are_relative_to_the_schema() {
        let dir = Path::new("/proj/prisma");
        assert_eq!(sqlite_path(&url("file:./dev.db"), dir), Path::new("/proj/prisma/./dev.db"));
        assert_eq!(sqlite_path(&url("file:dev.db?connection_limit=1"), dir), Path::new("/proj/prisma/dev.db"));
        assert_eq!(sqlite_path(&url("file:/var/data/app.db"), dir), Path::new("/var/data/app.db"));
        let abs = |u: &str| with_absolute_sqlite_path(&url(u), dir).expose().to_owned();
        assert_eq!(abs("file:./dev.db?connection_limit=1"), "file:/proj/prisma/./dev.db?connection_limit=1");
        assert_eq!(abs("file:/var/data/app.db"), "file:/var/data/app.db");
        assert_eq!(abs("postgresql://u@h/db"), "postgresql://u@h/db");
    }
}
