//! `pdp migrate` against the real databases: PostgreSQL and MariaDB on this machine (one schema or
//! database per test) and SQLite files. The ledger is read back with plain SQL, independently of pdp's
//! own code, and compared column by column with what Prisma Migrate writes.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{Connection, Row};

use crate::support::{Outcome, Project, mysql_url, postgres_url};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Postgres,
    Mysql,
    Sqlite,
}

const ALL: [Kind; 3] = [Kind::Postgres, Kind::Mysql, Kind::Sqlite];

impl Kind {
    fn provider(self) -> &'static str {
        match self {
            Kind::Postgres => "postgresql",
            Kind::Mysql => "mysql",
            Kind::Sqlite => "sqlite",
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// One row of `_prisma_migrations`, read with plain SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ledger {
    id: String,
    checksum: String,
    name: String,
    finished: bool,
    rolled_back: bool,
    logs: Option<String>,
    steps: i64,
}

/// A database of its own for one test, and a project pointing at it through `TEST_DB`.
struct TestDb {
    kind: Kind,
    /// URL pdp gets.
    url: String,
    /// Name of the PostgreSQL schema or MySQL database.
    name: String,
    /// PostgreSQL: the database the schema lives in (a database of its own for tests that hold Prisma's
    /// advisory lock, which is per database, so parallel tests don't wait on it).
    pg_base: String,
    /// PostgreSQL: a database created for this test, dropped with it.
    own_pg_database: Option<String>,
    project: Project,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    fn new(kind: Kind) -> TestDb {
        TestDb::create(kind, false)
    }

    /// A PostgreSQL test database of its own (see `pg_base`).
    fn own_postgres_database() -> TestDb {
        TestDb::create(Kind::Postgres, true)
    }

    fn create(kind: Kind, own_database: bool) -> TestDb {
        let project = Project::new();
        let name = format!("pdp_t_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let own_pg_database = own_database.then(|| format!("{name}_db"));
        let pg_base = match &own_pg_database {
            Some(db) => {
                rt().block_on(async {
                    let mut c = sqlx::PgConnection::connect(&postgres_url()).await.expect("PostgreSQL must be running");
                    sqlx::raw_sql(&format!("CREATE DATABASE \"{db}\"")).execute(&mut c).await.expect("create database");
                });
                format!("{}/{db}", postgres_url().rsplit_once('/').expect("url").0)
            }
            None => postgres_url(),
        };
        let url = match kind {
            Kind::Postgres => format!("{pg_base}?schema={name}"),
            Kind::Mysql => {
                let admin = mysql_url();
                let stmt = format!("CREATE DATABASE `{name}`");
                rt().block_on(async {
                    let mut c = sqlx::MySqlConnection::connect(&admin)
                        .await
                        .expect("MariaDB must be running (cargo xtask services)");
                    sqlx::raw_sql(&stmt).execute(&mut c).await.expect("create database");
                });
                format!("{}/{name}", admin.rsplit_once('/').expect("url has a database").0)
            }
            Kind::Sqlite => "file:./dev.db".to_owned(),
        };
        project.write("pdp.toml", "[prisma]\nversion = \"7.10.1\"\n\n[database]\nurl = \"env:TEST_DB\"\n");
        project.write("prisma/migrations/migration_lock.toml", &format!("provider = \"{}\"\n", kind.provider()));
        project.write("prisma/.keep", "");
        TestDb { kind, url, name, pg_base, own_pg_database, project }
    }

    fn migration(&self, name: &str, sql: &str) {
        self.project.write(&format!("prisma/migrations/{name}/migration.sql"), sql);
    }

    fn pdp(&self, args: &[&str]) -> Outcome {
        self.project.run_with(self.project.pdp().args(args).env("TEST_DB", &self.url))
    }

    /// Runs SQL against the test database directly.
    fn sql(&self, statements: &str) {
        rt().block_on(async {
            match self.kind {
                Kind::Postgres => {
                    let mut c = sqlx::PgConnection::connect(&self.pg_base).await.expect("connect");
                    let sql = format!(
                        "CREATE SCHEMA IF NOT EXISTS \"{0}\"; SET search_path TO \"{0}\"; {statements}",
                        self.name
                    );
                    sqlx::raw_sql(&sql).execute(&mut c).await.expect("sql");
                }
                Kind::Mysql => {
                    let mut c = sqlx::MySqlConnection::connect(&self.url).await.expect("connect");
                    sqlx::raw_sql(statements).execute(&mut c).await.expect("sql");
                }
                Kind::Sqlite => {
                    let path = self.project.path("prisma/dev.db");
                    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true);
                    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.expect("connect");
                    sqlx::raw_sql(statements).execute(&mut c).await.expect("sql");
                }
            }
        });
    }

    /// Names of the user tables in the test database.
    fn tables(&self) -> Vec<String> {
        rt().block_on(async {
            match self.kind {
                Kind::Postgres => {
                    let mut c = sqlx::PgConnection::connect(&self.pg_base).await.expect("connect");
                    sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1")
                        .bind(&self.name)
                        .fetch_all(&mut c)
                        .await
                        .expect("tables")
                }
                Kind::Mysql => {
                    let mut c = sqlx::MySqlConnection::connect(&self.url).await.expect("connect");
                    sqlx::query_scalar("SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1")
                        .fetch_all(&mut c)
                        .await
                        .expect("tables")
                }
                Kind::Sqlite => {
                    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(self.project.path("prisma/dev.db"));
                    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.expect("connect");
                    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
                        .fetch_all(&mut c)
                        .await
                        .expect("tables")
                }
            }
        })
    }

    fn ledger(&self) -> Vec<Ledger> {
        const Q: &str = "SELECT id, checksum, migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, logs, \
                         CAST(applied_steps_count AS SIGNED) FROM _prisma_migrations ORDER BY started_at, id";
        rt().block_on(async {
            match self.kind {
                Kind::Postgres => {
                    let mut c = sqlx::PgConnection::connect(&self.pg_base).await.expect("connect");
                    let q = format!(
                        "SELECT id, checksum, migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, logs, \
                         applied_steps_count::bigint FROM \"{}\"._prisma_migrations ORDER BY started_at, id",
                        self.name
                    );
                    let rows = sqlx::query(&q).fetch_all(&mut c).await.expect("ledger");
                    rows.iter()
                        .map(|r| Ledger {
                            id: r.get(0),
                            checksum: r.get(1),
                            name: r.get(2),
                            finished: r.get(3),
                            rolled_back: r.get(4),
                            logs: r.get(5),
                            steps: r.get(6),
                        })
                        .collect()
                }
                Kind::Mysql => {
                    let mut c = sqlx::MySqlConnection::connect(&self.url).await.expect("connect");
                    let rows = sqlx::query(Q).fetch_all(&mut c).await.expect("ledger");
                    rows.iter()
                        .map(|r| Ledger {
                            id: r.get(0),
                            checksum: r.get(1),
                            name: r.get(2),
                            finished: r.get::<i64, _>(3) == 1,
                            rolled_back: r.get::<i64, _>(4) == 1,
                            logs: r.get(5),
                            steps: r.get(6),
                        })
                        .collect()
                }
                Kind::Sqlite => {
                    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(self.project.path("prisma/dev.db"));
                    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.expect("connect");
                    let q = Q.replace("CAST(applied_steps_count AS SIGNED)", "applied_steps_count");
                    let rows = sqlx::query(&q).fetch_all(&mut c).await.expect("ledger");
                    rows.iter()
                        .map(|r| Ledger {
                            id: r.get(0),
                            checksum: r.get(1),
                            name: r.get(2),
                            finished: r.get(3),
                            rolled_back: r.get(4),
                            logs: r.get(5),
                            steps: r.get(6),
                        })
                        .collect()
                }
            }
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let stmt = match self.kind {
            Kind::Postgres if self.own_pg_database.is_some() => {
                format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.own_pg_database.as_deref().unwrap_or_default()
                )
            }
            Kind::Postgres => format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name),
            Kind::Mysql => format!("DROP DATABASE IF EXISTS `{}`", self.name),
            Kind::Sqlite => return,
        };
        let kind = self.kind;
        rt().block_on(async move {
            let _ = match kind {
                Kind::Postgres => match sqlx::PgConnection::connect(&postgres_url()).await {
                    Ok(mut c) => sqlx::raw_sql(&stmt).execute(&mut c).await.map(drop),
                    Err(e) => Err(e),
                },
                _ => match sqlx::MySqlConnection::connect(&mysql_url()).await {
                    Ok(mut c) => sqlx::raw_sql(&stmt).execute(&mut c).await.map(drop),
                    Err(e) => Err(e),
                },
            };
        });
    }
}

fn sha256_hex(text: &str) -> String {
    // Independent of pdp's code: the system's sha256sum is the reference.
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("sha256sum runs");
    String::from_utf8(out.stdout).expect("utf8").split_whitespace().next().expect("hash").to_owned()
}

fn five(db: &TestDb, third: &str) {
    db.migration("20260101000001_one", "CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n");
    db.migration("20260101000002_two", "CREATE TABLE t2 (id INTEGER PRIMARY KEY);\n");
    db.migration("20260101000003_three", third);
    db.migration("20260101000004_four", "CREATE TABLE t4 (id INTEGER PRIMARY KEY);\n");
    db.migration("20260101000005_five", "CREATE TABLE t5 (id INTEGER PRIMARY KEY);\n");
}

const GOOD_THREE: &str = "CREATE TABLE t3 (id INTEGER PRIMARY KEY);\n";
const BAD_THREE: &str = "CREATE TABLE half3 (id INTEGER PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);\n";

#[test]
fn fresh_database_then_rerun_is_a_no_op() {
    for kind in ALL {
        let db = TestDb::new(kind);
        five(&db, GOOD_THREE);
        let out = db.pdp(&["migrate", "deploy"]).expect_code(0);
        assert!(out.stderr.contains("5 migrations found in prisma/migrations"), "{kind:?}\n{}", out.all());
        assert!(out.stderr.contains("All 5 migration(s) have been successfully applied."), "{kind:?}\n{}", out.all());
        let rows = db.ledger();
        assert_eq!(rows.len(), 5, "{kind:?}: {rows:?}");
        for (row, n) in rows.iter().zip(["one", "two", "three", "four", "five"]) {
            assert!(row.name.ends_with(n), "{kind:?}: order {rows:?}");
            assert!(row.finished && !row.rolled_back && row.logs.is_none() && row.steps == 1, "{kind:?}: {row:?}");
            assert_eq!(row.id.len(), 36, "a UUID: {row:?}");
            let script = db.project.read(&format!("prisma/migrations/{}/migration.sql", row.name));
            assert_eq!(row.checksum, sha256_hex(&script), "{kind:?}: checksum is sha256 of the file");
        }
        for t in ["t1", "t2", "t3", "t4", "t5", "_prisma_migrations"] {
            assert!(db.tables().iter().any(|x| x == t), "{kind:?}: {t} missing: {:?}", db.tables());
        }
        let again = db.pdp(&["migrate", "deploy"]).expect_code(0);
        assert!(again.stderr.contains("No pending migrations to apply."), "{kind:?}\n{}", again.all());
        assert_eq!(db.ledger(), rows, "{kind:?}: re-run changed the ledger");
        let status = db.pdp(&["migrate", "status"]).expect_code(0);
        assert!(status.stdout.contains("Database schema is up to date!"), "{kind:?}\n{}", status.all());
    }
}

#[test]
fn a_failure_in_the_third_of_five_stops_records_and_blocks_the_next_run() {
    for kind in ALL {
        let db = TestDb::new(kind);
        five(&db, BAD_THREE);
        let out = db.pdp(&["migrate", "deploy"]).expect_code(2);
        assert!(
            out.stderr.contains("P3018: migration `20260101000003_three` failed to apply"),
            "{kind:?}\n{}",
            out.all()
        );
        assert!(out.stderr.contains("no_such_table"), "the database error is shown: {kind:?}\n{}", out.all());
        let rows = db.ledger();
        assert_eq!(rows.len(), 3, "{kind:?}: {rows:?}");
        assert!(rows[0].finished && rows[1].finished, "{kind:?}: {rows:?}");
        let failed = &rows[2];
        assert!(!failed.finished && !failed.rolled_back && failed.steps == 0, "{kind:?}: {failed:?}");
        assert!(failed.logs.as_deref().is_some_and(|l| l.contains("no_such_table")), "{kind:?}: logs {failed:?}");
        let tables = db.tables();
        assert!(!tables.iter().any(|t| t == "t4" || t == "t5"), "{kind:?}: later migrations must not run: {tables:?}");
        // PostgreSQL runs the script as one implicit transaction; MySQL and SQLite keep what ran.
        assert_eq!(tables.iter().any(|t| t == "half3"), kind != Kind::Postgres, "{kind:?}: {tables:?}");
        if kind == Kind::Postgres {
            assert!(out.stderr.contains("nothing of `20260101000003_three` was kept"), "{}", out.all());
        }

        let next = db.pdp(&["migrate", "deploy"]).expect_code(2);
        assert!(next.stderr.contains("P3009: found failed migrations"), "{kind:?}\n{}", next.all());
        assert!(next.stderr.contains("The `20260101000003_three` migration started at "), "{kind:?}\n{}", next.all());
        assert!(next.stderr.contains("no_such_table"), "logs are shown: {kind:?}\n{}", next.all());
        assert!(
            next.stderr.contains("pdp migrate resolve --rolled-back 20260101000003_three"),
            "{kind:?}\n{}",
            next.all()
        );
        let status = db.pdp(&["migrate", "status"]).expect_code(3);
        assert!(status.stdout.contains("Following migration(s) have failed:"), "{kind:?}\n{}", status.all());
    }
}

#[test]
fn resolve_rolled_back_then_fixed_script_deploys_the_rest() {
    for kind in ALL {
        let db = TestDb::new(kind);
        five(&db, BAD_THREE);
        db.pdp(&["migrate", "deploy"]).expect_code(2);
        if kind != Kind::Postgres {
            db.sql("DROP TABLE half3;");
        }
        db.migration("20260101000003_three", GOOD_THREE);
        let out = db.pdp(&["migrate", "resolve", "--rolled-back", "20260101000003_three"]).expect_code(0);
        assert!(out.stderr.contains("marked as rolled back"), "{kind:?}\n{}", out.all());
        db.pdp(&["migrate", "deploy"]).expect_code(0);
        let rows = db.ledger();
        let names: Vec<(&str, bool, bool)> = rows.iter().map(|r| (&r.name[15..], r.finished, r.rolled_back)).collect();
        assert_eq!(
            names,
            [
                ("one", true, false),
                ("two", true, false),
                ("three", false, true),
                ("three", true, false),
                ("four", true, false),
                ("five", true, false)
            ],
            "{kind:?}"
        );
        // Resolving a finished migration as rolled back is refused (P3012); an unknown one too (P3011).
        let again = db.pdp(&["migrate", "resolve", "--rolled-back", "20260101000001_one"]).expect_code(2);
        assert!(again.stderr.contains("P3012"), "{}", again.all());
        let unknown = db.pdp(&["migrate", "resolve", "--rolled-back", "20991231000000_nope"]).expect_code(2);
        assert!(unknown.stderr.contains("P3011"), "{}", unknown.all());
    }
}

#[test]
fn resolve_applied_after_a_manual_fix_skips_the_migration() {
    for kind in ALL {
        let db = TestDb::new(kind);
        five(&db, BAD_THREE);
        db.pdp(&["migrate", "deploy"]).expect_code(2);
        let out = db.pdp(&["migrate", "resolve", "--applied", "20260101000003_three"]).expect_code(0);
        assert!(out.stderr.contains("Marked 1 failed attempt(s) as rolled back."), "{kind:?}\n{}", out.all());
        db.pdp(&["migrate", "deploy"]).expect_code(0);
        let rows = db.ledger();
        let three: Vec<&Ledger> = rows.iter().filter(|r| r.name.ends_with("three")).collect();
        assert_eq!(three.len(), 2, "{kind:?}: {rows:?}");
        assert!(three[0].rolled_back && !three[0].finished, "{kind:?}: {three:?}");
        let resolved = three[1];
        assert!(
            resolved.finished && resolved.steps == 0 && resolved.logs.as_deref() == Some(""),
            "{kind:?}: {resolved:?}"
        );
        assert!(rows.iter().any(|r| r.name.ends_with("five") && r.finished), "{kind:?}");
        let twice = db.pdp(&["migrate", "resolve", "--applied", "20260101000003_three"]).expect_code(2);
        assert!(twice.stderr.contains("P3008"), "{}", twice.all());
        let missing = db.pdp(&["migrate", "resolve", "--applied", "20991231000000_nope"]).expect_code(2);
        assert!(missing.stderr.contains("P3017"), "{}", missing.all());
    }
}

#[test]
fn crash_window_row_without_finished_at_blocks_deploy() {
    for kind in ALL {
        let db = TestDb::new(kind);
        db.migration("20260101000001_one", "CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n");
        db.pdp(&["migrate", "deploy"]).expect_code(0);
        // What a deployer killed between its INSERT and its UPDATE leaves behind.
        db.sql("INSERT INTO _prisma_migrations (id, checksum, migration_name, applied_steps_count) VALUES ('crashed-0000', 'x', '20260101000002_two', 0);");
        db.migration("20260101000002_two", "CREATE TABLE t2 (id INTEGER PRIMARY KEY);\n");
        let out = db.pdp(&["migrate", "deploy"]).expect_code(2);
        assert!(out.stderr.contains("P3009"), "{kind:?}\n{}", out.all());
        assert!(out.stderr.contains("`20260101000002_two` migration started at"), "{kind:?}\n{}", out.all());
        assert!(!db.tables().iter().any(|t| t == "t2"), "{kind:?}");
    }
}

#[test]
fn non_empty_unmanaged_database_is_refused_then_baselined() {
    for kind in ALL {
        let db = TestDb::new(kind);
        db.sql("CREATE TABLE legacy (id INTEGER PRIMARY KEY);");
        db.migration("20260101000001_baseline", "CREATE TABLE legacy (id INTEGER PRIMARY KEY);\n");
        db.migration("20260101000002_next", "CREATE TABLE t2 (id INTEGER PRIMARY KEY);\n");
        let status = db.pdp(&["migrate", "status"]).expect_code(3);
        assert!(status.stdout.contains("not managed by Prisma Migrate"), "{kind:?}\n{}", status.all());
        assert!(status.stdout.contains("pdp migrate resolve --applied 20260101000001_baseline"), "{}", status.all());
        let out = db.pdp(&["migrate", "deploy"]).expect_code(2);
        assert!(out.stderr.contains("P3005: the database schema is not empty"), "{kind:?}\n{}", out.all());
        assert!(out.stderr.contains("`legacy`"), "{}", out.all());
        assert!(
            out.stderr.contains(
                "hint: baseline the existing database: `pdp migrate resolve --applied 20260101000001_baseline`"
            ),
            "{}",
            out.all()
        );
        assert!(!db.tables().iter().any(|t| t == "_prisma_migrations"), "{kind:?}: nothing created on refusal");
        db.pdp(&["migrate", "resolve", "--applied", "20260101000001_baseline"]).expect_code(0);
        let out = db.pdp(&["migrate", "deploy"]).expect_code(0);
        assert!(out.stderr.contains("applied `20260101000002_next`"), "{kind:?}\n{}", out.all());
        assert!(!out.stderr.contains("applying `20260101000001_baseline`"), "{}", out.all());
    }
}

#[test]
fn three_deployers_at_once_apply_each_migration_exactly_once() {
    for kind in ALL {
        let db = TestDb::new(kind);
        for i in 1..=6 {
            db.migration(&format!("2026010100000{i}_m{i}"), &format!("CREATE TABLE c{i} (id INTEGER PRIMARY KEY);\n"));
        }
        let children: Vec<_> = (0..3)
            .map(|_| {
                db.project
                    .std_pdp()
                    .args(["migrate", "deploy", "--wait-lock", "60s"])
                    .env("TEST_DB", &db.url)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
        let mut applied_by = Vec::new();
        for o in &outs {
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{kind:?}: {stderr}");
            applied_by.push(stderr.matches("   applied `").count());
        }
        assert_eq!(
            applied_by.iter().sum::<usize>(),
            6,
            "{kind:?}: each migration applied once in total: {applied_by:?}"
        );
        let rows = db.ledger();
        assert_eq!(rows.len(), 6, "{kind:?}: {rows:?}");
        assert!(rows.iter().all(|r| r.finished && r.steps == 1), "{kind:?}: {rows:?}");
    }
}

#[test]
fn crlf_script_checksum_is_of_the_exact_bytes_and_lf_conversion_is_not_an_edit() {
    let db = TestDb::new(Kind::Sqlite);
    let crlf = "CREATE TABLE a (id INTEGER PRIMARY KEY);\r\nCREATE TABLE b (id INTEGER PRIMARY KEY);\r\n";
    db.migration("20260101000001_crlf", crlf);
    db.pdp(&["migrate", "deploy"]).expect_code(0);
    assert_eq!(db.ledger()[0].checksum, sha256_hex(crlf));
    db.migration("20260101000001_crlf", &crlf.replace("\r\n", "\n"));
    let status = db.pdp(&["migrate", "status"]).expect_code(0);
    assert!(!status.stdout.contains("edited"), "{}", status.all());
    db.migration("20260101000001_crlf", "CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT);\n");
    let status = db.pdp(&["migrate", "status"]).expect_code(0);
    assert!(status.stdout.contains("Applied migration(s) edited since"), "{}", status.all());
    assert!(status.stdout.contains("  20260101000001_crlf"), "{}", status.all());
}

#[test]
fn odd_folders_names_and_lock_files() {
    let db = TestDb::new(Kind::Sqlite);
    db.migration("init", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    let out = db.pdp(&["migrate", "deploy"]).expect_code(0);
    assert!(
        out.stderr.contains("warning: migration `init` does not start with a YYYYMMDDHHMMSS timestamp"),
        "{}",
        out.all()
    );

    let empty = TestDb::new(Kind::Sqlite);
    empty.migration("20260101000001_ok", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    empty.project.write("prisma/migrations/20260101000002_empty/notes.txt", "no script here");
    let out = empty.pdp(&["migrate", "deploy"]).expect_code(2);
    assert!(out.stderr.contains("migration `20260101000002_empty` has no readable `migration.sql`"), "{}", out.all());
    assert!(!empty.project.path("prisma/dev.db").exists(), "nothing applied, not even the first");

    let wrong = TestDb::new(Kind::Sqlite);
    wrong.project.write("prisma/migrations/migration_lock.toml", "provider = \"postgresql\"\n");
    wrong.migration("20260101000001_ok", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    let out = wrong.pdp(&["migrate", "deploy"]).expect_code(2);
    assert!(out.stderr.contains("P3019"), "{}", out.all());
    assert!(out.stderr.contains("`sqlite`") && out.stderr.contains("`postgresql`"), "{}", out.all());
}

#[test]
fn status_behind_and_diverged() {
    let db = TestDb::new(Kind::Postgres);
    db.migration("20260101000001_one", "CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n");
    db.pdp(&["migrate", "deploy"]).expect_code(0);
    db.migration("20260101000002_two", "CREATE TABLE t2 (id INTEGER PRIMARY KEY);\n");
    let behind = db.pdp(&["migrate", "status"]).expect_code(3);
    assert!(
        behind.stdout.contains("Following migration(s) have not yet been applied:\n  20260101000002_two"),
        "{}",
        behind.all()
    );
    let dry = db.pdp(&["migrate", "deploy", "--dry-run"]).expect_code(0);
    assert_eq!(dry.stdout, "20260101000002_two\n", "{}", dry.all());
    // A row whose folder is gone, plus a local migration not applied: the histories diverge.
    db.sql("INSERT INTO _prisma_migrations (id, checksum, migration_name, finished_at, applied_steps_count) VALUES ('gone-0000', 'x', '20250101000000_elsewhere', now(), 1);");
    let out = db.pdp(&["migrate", "status", "--json"]).expect_code(3);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["status"], "diverged", "{}", out.all());
    assert_eq!(v["missing_locally"][0], "20250101000000_elsewhere");
    assert_eq!(v["unapplied"][0], "20260101000002_two");
}

#[test]
fn a_held_lock_times_out_with_p1002_and_the_url_stays_masked() {
    for kind in [Kind::Postgres, Kind::Mysql] {
        let db = if kind == Kind::Postgres { TestDb::own_postgres_database() } else { TestDb::new(kind) };
        db.migration("20260101000001_one", "CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n");
        let runtime = rt();
        // Another deployer holds Prisma's lock on its own connection.
        let holder = runtime.block_on(async {
            match kind {
                Kind::Postgres => {
                    let mut c = sqlx::PgConnection::connect(&db.pg_base).await.expect("connect");
                    sqlx::query("SELECT pg_advisory_lock(72707369)").execute(&mut c).await.expect("lock");
                    Box::new(c) as Box<dyn std::any::Any>
                }
                _ => {
                    let mut c = sqlx::MySqlConnection::connect(&db.url).await.expect("connect");
                    sqlx::query("SELECT GET_LOCK('prisma_migrate', 5)").execute(&mut c).await.expect("lock");
                    Box::new(c) as Box<dyn std::any::Any>
                }
            }
        });
        let started = std::time::Instant::now();
        let out = db.pdp(&["migrate", "deploy", "--wait-lock", "1s"]).expect_code(2);
        let waited = started.elapsed();
        assert!(
            out.stderr.contains("P1002: timed out after 1s waiting for the migrate lock"),
            "{kind:?}\n{}",
            out.all()
        );
        assert!(waited < std::time::Duration::from_secs(8), "{kind:?}: waited {waited:?}");
        assert!(db.ledger_is_absent(), "{kind:?}: nothing done without the lock");
        drop(holder);
    }
    // A password in the URL never reaches the output, even when connecting fails.
    let p = Project::new();
    p.write("pdp.toml", "[prisma]\nversion = \"7.10.1\"\n[database]\nurl = \"env:TEST_DB\"\n");
    let url = format!("postgresql://postgres:M1grateS3cret@127.0.0.1:{}/test", crate::support::closed_port());
    let out = p.run_with(p.pdp().args(["migrate", "deploy"]).env("TEST_DB", &url)).expect_code(2);
    assert!(out.stderr.contains("postgresql://postgres:****@127.0.0.1:"), "{}", out.all());
    assert!(!out.all().contains("M1grateS3cret"), "{}", out.all());
}

impl TestDb {
    fn ledger_is_absent(&self) -> bool {
        !self.tables().iter().any(|t| t == "_prisma_migrations")
    }
}

#[test]
fn prisma_switch_skips_the_lock_for_poolers() {
    let db = TestDb::own_postgres_database();
    db.migration("20260101000001_one", "CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n");
    let runtime = rt();
    let holder = runtime.block_on(async {
        let mut c = sqlx::PgConnection::connect(&db.pg_base).await.expect("connect");
        sqlx::query("SELECT pg_advisory_lock(72707369)").execute(&mut c).await.expect("lock");
        c
    });
    let out = db
        .project
        .run_with(
            db.project
                .pdp()
                .args(["migrate", "deploy", "--wait-lock", "1s"])
                .env("TEST_DB", &db.url)
                .env("PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK", "1"),
        )
        .expect_code(0);
    assert!(
        out.stderr.contains("PRISMA_SCHEMA_DISABLE_ADVISORY_LOCK is set: not taking the migrate lock"),
        "{}",
        out.all()
    );
    assert_eq!(db.ledger().len(), 1);
    // The other deployer's connection goes before the database is dropped.
    drop(holder);
}

#[test]
fn deploy_creates_a_missing_database_like_prisma() {
    for kind in [Kind::Postgres, Kind::Mysql] {
        let p = Project::new();
        p.write("pdp.toml", "[prisma]\nversion = \"7.10.0\"\n[database]\nurl = \"env:TEST_DB\"\n");
        p.write("prisma/migrations/20260101000001_one/migration.sql", "CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n");
        let name = format!("pdp_newdb_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let base = match kind {
            Kind::Postgres => postgres_url(),
            _ => mysql_url(),
        };
        let url = format!("{}/{name}", base.rsplit_once('/').expect("url").0);
        // Status only reads: a missing database is reported, not created.
        let status = p.run_with(p.pdp().args(["migrate", "status"]).env("TEST_DB", &url)).expect_code(2);
        assert!(status.stderr.contains("create the database"), "{kind:?}\n{}", status.all());
        let out = p.run_with(p.pdp().args(["migrate", "deploy"]).env("TEST_DB", &url)).expect_code(0);
        assert!(out.stderr.contains(&format!("created database `{name}`")), "{kind:?}\n{}", out.all());
        assert!(out.stderr.contains("applied `20260101000001_one`"), "{kind:?}\n{}", out.all());
        let again = p.run_with(p.pdp().args(["migrate", "status"]).env("TEST_DB", &url)).expect_code(0);
        assert!(again.stdout.contains("up to date"), "{kind:?}\n{}", again.all());
        rt().block_on(async {
            match kind {
                Kind::Postgres => {
                    let mut c = sqlx::PgConnection::connect(&postgres_url()).await.expect("connect");
                    sqlx::raw_sql(&format!("DROP DATABASE \"{name}\"")).execute(&mut c).await.expect("drop");
                }
                _ => {
                    let mut c = sqlx::MySqlConnection::connect(&mysql_url()).await.expect("connect");
                    sqlx::raw_sql(&format!("DROP DATABASE `{name}`")).execute(&mut c).await.expect("drop");
                }
            }
        });
    }
}

#[test]
fn dry_run_on_a_database_that_does_not_exist_yet_lists_everything() {
    let db = TestDb::new(Kind::Sqlite);
    db.migration("20260101000001_one", "CREATE TABLE a (id INTEGER PRIMARY KEY);\n");
    db.migration("20260101000002_two", "CREATE TABLE b (id INTEGER PRIMARY KEY);\n");
    let out = db.pdp(&["migrate", "deploy", "--dry-run"]).expect_code(0);
    assert_eq!(out.stdout, "20260101000001_one\n20260101000002_two\n", "{}", out.all());
    assert!(!db.project.path("prisma/dev.db").exists(), "a dry run creates nothing");
    let mysql = TestDb::new(Kind::Mysql);
    let url = format!("{}_missing", mysql.url);
    let out = mysql.project.run_with(mysql.project.pdp().args(["migrate", "deploy", "--dry-run"]).env("TEST_DB", &url));
    assert_eq!(out.code, 0, "{}", out.all());
}
