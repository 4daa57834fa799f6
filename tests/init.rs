//! `pdp init`: a fresh project, re-runs that change nothing, `--check` drift, adoption of an existing
//! schema, `--force`, the generations, and the mistakes a new user makes.

use crate::support::Project;

const FILES: [&str; 5] =
    ["pdp.toml", "prisma/schema.prisma", ".env.example", ".gitignore", "examples/windmill/query_users.ts"];

#[test]
fn yes_in_an_empty_directory_writes_the_project() {
    let p = Project::new();
    let out = p.init(&[]);
    for f in FILES {
        assert!(p.path(f).is_file(), "{f} missing\n{}", out.all());
        assert!(out.stderr.contains(&format!("created {f}")), "{}", out.all());
    }
    assert!(out.stdout.is_empty(), "init's report goes to stderr: {}", out.all());
    let toml = p.read("pdp.toml");
    assert!(toml.contains("version = \"7.10.0\""), "{toml}");
    assert!(toml.contains("api-keys = [\"env:PDP_API_KEY\"]"), "{toml}");
    // The local API key lives in .env, readable only by the owner.
    let env = p.read(".env");
    let key = env.lines().find_map(|l| l.strip_prefix("PDP_API_KEY=")).expect("key in .env");
    assert_eq!(key.len(), 4 + 64, "{key}");
    assert!(!out.all().contains(key), "the key is never printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| std::fs::metadata(p.path(f)).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(".env"), 0o600);
        assert_eq!(mode("pdp.toml"), 0o644);
    }
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(p.root())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn second_run_changes_nothing_and_says_so() {
    let p = Project::new();
    p.init(&[]);
    let before: Vec<String> = FILES.iter().chain([".env"].iter()).map(|f| p.read(f)).collect();
    let out = p.init(&[]);
    assert!(out.stderr.contains("Nothing to do: the project is already set up."), "{}", out.all());
    assert!(!out.stderr.contains("created"), "{}", out.all());
    let after: Vec<String> = FILES.iter().chain([".env"].iter()).map(|f| p.read(f)).collect();
    assert_eq!(before, after);
    let check = p.run(&["init", "--check"]).expect_code(0);
    assert!(check.stdout.contains("ok       pdp.toml"), "{}", check.all());
}

#[test]
fn check_reports_drift_after_an_edit_and_writes_nothing() {
    let p = Project::new();
    p.init(&[]);
    let edited = p.read("examples/windmill/query_users.ts").replace("take = 10", "take = 99");
    p.write("examples/windmill/query_users.ts", &edited);
    std::fs::remove_file(p.path(".env.example")).expect("rm");
    let out = p.run(&["init", "--check"]).expect_code(3);
    assert!(out.stdout.contains("differs  examples/windmill/query_users.ts"), "{}", out.all());
    assert!(out.stdout.contains("-export async function main(pdp: CPdpProxy, take = 99) {"), "{}", out.all());
    assert!(out.stdout.contains("+export async function main(pdp: CPdpProxy, take = 10) {"), "{}", out.all());
    assert!(out.stdout.contains("missing  .env.example"), "{}", out.all());
    assert!(out.stdout.contains("ok       pdp.toml"), "{}", out.all());
    assert!(!p.path(".env.example").exists(), "--check must not write");
    assert_eq!(p.read("examples/windmill/query_users.ts"), edited);
}

#[test]
fn edited_files_are_kept_unless_forced() {
    let p = Project::new();
    p.init(&[]);
    p.write("examples/windmill/query_users.ts", "// mine\n");
    let out = p.init(&[]);
    assert!(out.stderr.contains("kept examples/windmill/query_users.ts"), "{}", out.all());
    assert!(out.stderr.contains("--force"), "{}", out.all());
    assert_eq!(p.read("examples/windmill/query_users.ts"), "// mine\n");
    let out = p.init(&["--force"]);
    assert!(out.stderr.contains("overwrote examples/windmill/query_users.ts"), "{}", out.all());
    assert!(p.read("examples/windmill/query_users.ts").contains("PrismaClient"));
}

#[test]
fn an_existing_schema_is_adopted_and_its_provider_read() {
    let p = Project::new();
    let schema = "generator client {\n  provider = \"prisma-client-js\"\n}\n\ndatasource db {\n  provider = \"mysql\"\n  url      = env(\"DATABASE_URL\")\n}\n\nmodel Thing {\n  id Int @id\n}\n";
    p.write("prisma/schema.prisma", schema);
    let out = p.init(&["--prisma", "5.22.0"]);
    assert!(out.stderr.contains("adopted prisma/schema.prisma (mysql)"), "{}", out.all());
    assert_eq!(p.read("prisma/schema.prisma"), schema, "the schema is the user's");
    let toml = p.read("pdp.toml");
    assert!(toml.contains("url = \"env:DATABASE_URL\""), "{toml}");
    assert!(p.read(".env.example").contains("DATABASE_URL=\"mysql://"), "{}", p.read(".env.example"));
    // A flag that contradicts the schema is refused.
    let q = Project::new();
    q.write("prisma/schema.prisma", schema);
    let out = q.run(&["init", "--yes", "--provider", "sqlite"]).expect_code(2);
    assert!(out.stderr.contains("the existing schema says `mysql` but `--provider` says `sqlite`"), "{}", out.all());
    assert!(!q.path("pdp.toml").exists(), "nothing written after a refused run");
}

#[test]
fn prisma_4_16_2_gives_the_original_template_generation() {
    let p = Project::new();
    p.init(&["--prisma", "4.16.2"]);
    assert!(p.read("pdp.toml").contains("version = \"4.16.2\""));
    let schema = p.read("prisma/schema.prisma");
    assert!(schema.contains("provider = \"prisma-client-js\""), "{schema}");
    assert!(schema.contains("url      = env(\"DATABASE_URL\")"), "{schema}");
    let example = p.read("examples/windmill/query_users.ts");
    assert!(example.contains("datasources: { db: { url: proxyUrl } }"), "{example}");
    assert!(example.contains("/0.1.0/edge.ts\""), "{example}");
}

#[test]
fn unsupported_version_is_a_user_error_listing_the_range() {
    let p = Project::new();
    let out = p.run(&["init", "--yes", "--prisma", "7.99.0"]).expect_code(2);
    assert!(out.stderr.contains("Prisma 7.99.0 is not supported; pdp supports 4.16.x, 5.0.x–5.22.x"), "{}", out.all());
    assert!(out.stderr.contains("hint: pass `--prisma 7.10.0`"), "{}", out.all());
    assert!(std::fs::read_dir(p.root()).expect("ls").next().is_none(), "nothing written");
}

#[test]
fn database_url_goes_to_dotenv_never_to_pdp_toml() {
    let p = Project::new();
    let url = "postgresql://app:Pa55word@db.internal:5432/app?schema=public";
    let out = p.init(&["--database-url", url]);
    assert!(!out.all().contains("Pa55word"), "{}", out.all());
    assert!(p.read("pdp.toml").contains("url = \"env:DATABASE_URL\""));
    assert!(!p.read("pdp.toml").contains("Pa55word"));
    assert!(p.read(".env").contains(&format!("DATABASE_URL='{url}'")));
    // A second URL does not silently replace or vanish: init says it kept the existing one.
    let again = p.run(&["init", "--yes", "--database-url", "postgresql://other@h/db"]).expect_code(0);
    assert!(again.stderr.contains("`.env` already sets DATABASE_URL"), "{}", again.all());
    assert!(p.read(".env").contains(&format!("DATABASE_URL='{url}'")));
    let config = p.run(&["config"]).expect_code(0);
    assert!(config.stdout.contains("postgresql://app:****@db.internal:5432/app"), "{}", config.all());
}

#[test]
fn gitignore_and_dotenv_are_extended_not_replaced() {
    let p = Project::new();
    p.write(".gitignore", "node_modules\n");
    p.write(".env", "OTHER=1\nPDP_API_KEY=mine\n");
    let out = p.init(&[]);
    assert!(out.stderr.contains("updated .gitignore"), "{}", out.all());
    let gitignore = p.read(".gitignore");
    assert!(gitignore.starts_with("node_modules\n"), "{gitignore}");
    assert!(gitignore.contains("/.pdp/\n") && gitignore.contains(".env\n"), "{gitignore}");
    assert_eq!(p.read(".env"), "OTHER=1\nPDP_API_KEY=mine\n", "an existing key is kept");
}

#[test]
fn without_a_terminal_init_asks_for_yes() {
    let p = Project::new();
    let out = p.run(&["init"]).expect_code(2);
    assert!(out.stderr.contains("there is no terminal to ask on"), "{}", out.all());
    assert!(out.stderr.contains("hint: pass `--yes`"), "{}", out.all());
}

#[test]
fn a_new_directory_is_created() {
    let p = Project::new();
    let out = p.run(&["init", "--yes", "sub/app"]).expect_code(0);
    assert!(p.path("sub/app/pdp.toml").is_file(), "{}", out.all());
    let doctor = p.run_with(p.pdp().current_dir(p.path("sub/app")).arg("doctor")).expect_code(0);
    assert!(doctor.stdout.contains("ok    config"), "{}", doctor.all());
}

/// Each row of `sql`'s answer as its columns joined with `|` (every column cast to text by the query).
fn rows(url: &str, sql: &str) -> Vec<String> {
    use sqlx::{Connection, Row};
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt").block_on(async {
        let rows = if url.starts_with("mysql") {
            let mut c =
                sqlx::MySqlConnection::connect(url).await.expect("MariaDB must be running (cargo xtask services)");
            let rows = sqlx::query(sql).fetch_all(&mut c).await.expect(sql);
            rows.iter()
                .map(|r| (0..r.len()).map(|i| r.get::<Option<String>, _>(i).unwrap_or_default()).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        } else {
            let mut c =
                sqlx::PgConnection::connect(url).await.expect("PostgreSQL must be running (cargo xtask services)");
            let rows = sqlx::query(sql).fetch_all(&mut c).await.expect(sql);
            rows.iter()
                .map(|r| (0..r.len()).map(|i| r.get::<Option<String>, _>(i).unwrap_or_default()).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        rows.into_iter().map(|r| r.join("|")).collect()
    })
}

/// `pdp init` with a PostgreSQL or MySQL URL writes the sample schema's first migration; `pdp migrate
/// deploy` applies it to the machine's server, and what the server then holds is the schema's models:
/// the tables, each column's type (Prisma's native type for Int, String, Boolean, DateTime on that
/// provider), nullability and default, the unique index, and the relation's foreign key with Prisma's
/// default actions.
#[test]
fn the_sample_schemas_first_migration_builds_its_models_on_postgresql_and_mysql() {
    let name = format!("pdp_init_{}", std::process::id());
    for base in [crate::support::postgres_url(), crate::support::mysql_url()] {
        let url = format!("{}/{name}", base.rsplit_once('/').expect("a URL with a database").0);
        let p = Project::new();
        let out = p.init(&["--database-url", &url]);
        let mysql = url.starts_with("mysql");
        let provider = if mysql { "mysql" } else { "postgresql" };
        let dirs: Vec<String> = std::fs::read_dir(p.path("prisma/migrations"))
            .expect("init wrote prisma/migrations")
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        assert!(
            dirs[0].len() == 19 && dirs[0].ends_with("_init") && dirs[0][..14].bytes().all(|b| b.is_ascii_digit()),
            "Prisma's folder name: {dirs:?}"
        );
        assert!(out.stderr.contains(&format!("created prisma/migrations/{}/migration.sql", dirs[0])), "{}", out.all());
        assert!(p.read("prisma/migrations/migration_lock.toml").contains(&format!("provider = \"{provider}\"")));
        let migrated = p.run(&["migrate", "deploy"]).expect_code(0);
        assert!(migrated.all().contains(&dirs[0]), "{}", migrated.all());
        let (columns, indexes, foreign_keys) = if mysql {
            (
                "SELECT CAST(CONCAT_WS('|', TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COALESCE(COLUMN_DEFAULT, ''), EXTRA) AS CHAR) \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('User', 'Post') ORDER BY TABLE_NAME DESC, ORDINAL_POSITION",
                "SELECT CAST(CONCAT_WS('|', TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME) AS CHAR) FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('User', 'Post') ORDER BY TABLE_NAME DESC, INDEX_NAME",
                "SELECT CAST(CONCAT_WS('|', r.CONSTRAINT_NAME, k.TABLE_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE) AS CHAR) \
                 FROM information_schema.REFERENTIAL_CONSTRAINTS r JOIN information_schema.KEY_COLUMN_USAGE k \
                 ON k.CONSTRAINT_SCHEMA = r.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME = r.CONSTRAINT_NAME WHERE r.CONSTRAINT_SCHEMA = DATABASE()",
            )
        } else {
            (
                "SELECT concat_ws('|', table_name, column_name, CASE WHEN data_type LIKE 'timestamp%' THEN data_type || '(' || datetime_precision || ')' ELSE data_type END, \
                 is_nullable, coalesce(column_default, ''), '') FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name IN ('User', 'Post') ORDER BY table_name DESC, ordinal_position",
                "SELECT concat_ws('|', tablename, indexname, indexdef) FROM pg_indexes WHERE schemaname = 'public' AND tablename IN ('User', 'Post') ORDER BY tablename DESC, indexname",
                "SELECT concat_ws('|', conname, pg_get_constraintdef(oid)) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace",
            )
        };
        let db = url.clone();
        let (int, text, boolean, datetime) = if mysql {
            ("int(11)", "varchar(191)", "tinyint(1)", "datetime(3)")
        } else {
            ("integer", "text", "boolean", "timestamp without time zone(3)")
        };
        let (serial_user, serial_post, falsy, now, auto) = if mysql {
            ("", "", "0", "current_timestamp(3)", "auto_increment")
        } else {
            (
                "nextval('\"User_id_seq\"'::regclass)",
                "nextval('\"Post_id_seq\"'::regclass)",
                "false",
                "CURRENT_TIMESTAMP",
                "",
            )
        };
        let null_default = if mysql { "NULL" } else { "" };
        let expected_columns = [
            format!("User|id|{int}|NO|{serial_user}|{auto}"),
            format!("User|email|{text}|NO||"),
            format!("User|name|{text}|YES|{null_default}|"),
            format!("Post|id|{int}|NO|{serial_post}|{auto}"),
            format!("Post|title|{text}|NO||"),
            format!("Post|content|{text}|YES|{null_default}|"),
            format!("Post|published|{boolean}|NO|{falsy}|"),
            format!("Post|authorId|{int}|NO||"),
            format!("Post|createdAt|{datetime}|NO|{now}|"),
        ];
        assert_eq!(rows(&db, columns), expected_columns, "{provider}: the columns of the sample schema's models");
        let expected_indexes: Vec<String> = if mysql {
            vec![
                "User|PRIMARY|0|id".into(),
                "User|User_email_key|0|email".into(),
                // InnoDB's own index for the foreign key's column, named after the constraint.
                "Post|Post_authorId_fkey|1|authorId".into(),
                "Post|PRIMARY|0|id".into(),
            ]
        } else {
            vec![
                "User|User_email_key|CREATE UNIQUE INDEX \"User_email_key\" ON public.\"User\" USING btree (email)"
                    .into(),
                "User|User_pkey|CREATE UNIQUE INDEX \"User_pkey\" ON public.\"User\" USING btree (id)".into(),
                "Post|Post_pkey|CREATE UNIQUE INDEX \"Post_pkey\" ON public.\"Post\" USING btree (id)".into(),
            ]
        };
        assert_eq!(rows(&db, indexes), expected_indexes, "{provider}: the indexes (@id, @unique)");
        let expected_fk = if mysql {
            "Post_authorId_fkey|Post|authorId|User|id|CASCADE|RESTRICT".to_owned()
        } else {
            "Post_authorId_fkey|FOREIGN KEY (\"authorId\") REFERENCES \"User\"(id) ON UPDATE CASCADE ON DELETE RESTRICT"
                .to_owned()
        };
        assert_eq!(
            rows(&db, foreign_keys),
            [expected_fk],
            "{provider}: the relation's foreign key, Prisma's default actions"
        );
        // A second init keeps the migrations folder as it is: it is the user's now.
        let again = p.init(&[]);
        assert!(!again.stderr.contains("migration.sql"), "{}", again.all());
        let drop =
            if mysql { format!("DROP DATABASE `{name}`") } else { format!("DROP DATABASE \"{name}\" WITH (FORCE)") };
        let admin = base.clone();
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt").block_on(async {
            use sqlx::Connection;
            if mysql {
                let mut c = sqlx::MySqlConnection::connect(&admin).await.expect("connect");
                sqlx::raw_sql(&drop).execute(&mut c).await.expect("drop the test database");
            } else {
                let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect");
                sqlx::raw_sql(&drop).execute(&mut c).await.expect("drop the test database");
            }
        });
    }
}

/// An existing migrations folder is adopted untouched, even beside init's own sample schema; and an
/// adopted schema gets no migration written for it (its migrations are the user's to make).
#[test]
fn existing_migrations_and_schemas_get_no_sample_migration() {
    let p = Project::new();
    p.write("prisma/migrations/20250101000000_mine/migration.sql", "CREATE TABLE \"Mine\" (id INTEGER);\n");
    let out = p.init(&[]);
    assert!(!out.stderr.contains("migration.sql") && !out.stderr.contains("migration_lock"), "{}", out.all());
    let entries: Vec<_> =
        std::fs::read_dir(p.path("prisma/migrations")).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries, ["20250101000000_mine"], "nothing added beside the user's migration");
    let q = Project::new();
    q.write(
        "prisma/schema.prisma",
        "datasource db {\n  provider = \"postgresql\"\n}\n\nmodel Thing {\n  id Int @id\n}\n",
    );
    q.init(&[]);
    assert!(!q.path("prisma/migrations").exists(), "no sample migration for the user's own schema");
}
