//! `pdp doctor` against the real databases this machine runs. CI starts them (`cargo xtask test`); when
//! one is missing these tests fail rather than skip.

use crate::support::{Project, closed_port, mysql_url, postgres_url};

fn project_with_url(provider: &str, var_value: &str) -> (Project, String) {
    let p = Project::new();
    p.init(&["--provider", provider]);
    // Point the project at the given database through an env var, as users do.
    let toml = p.read("pdp.toml").replace("url = \"env:DATABASE_URL\"", "url = \"env:DOCTOR_DB\"");
    p.write("pdp.toml", &toml);
    (p, var_value.to_owned())
}

fn doctor_json(p: &Project, db: &str) -> (i32, serde_json::Value, String) {
    let out = p.run_with(p.pdp().args(["doctor", "--json", "--db-timeout", "10"]).env("DOCTOR_DB", db));
    assert!(!out.stderr.contains("panicked"), "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", out.all()));
    (out.code, v, out.all())
}

fn check<'a>(v: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    v["checks"].as_array().expect("checks").iter().filter(|c| c["name"] == name).collect()
}

#[test]
fn fresh_project_passes() {
    let p = Project::new();
    p.init(&[]);
    let out = p.run(&["doctor"]).expect_code(0);
    assert!(out.stdout.contains("ok    config"), "{}", out.all());
    assert!(out.stdout.contains("embedded PostgreSQL"), "{}", out.all());
    assert!(!out.stdout.contains("fail "), "{}", out.all());
    assert!(out.stderr.contains("0 failure(s)"), "{}", out.all());
    // The Prisma CLI is pdp's to install (an empty cache here, npm on PATH): what pdp will use, no warning.
    assert!(
        out.stdout.contains("prisma@7.10.0: pdp installs it from the npm registry into its cache on first use"),
        "{}",
        out.all()
    );
    assert!(!out.stdout.lines().any(|l| l.starts_with("warn") && l.contains("tools")), "{}", out.all());
}

/// For a generation whose CLI runs under Deno, Deno is reported the same way; with no npm to install
/// either, both become warnings that say what would fail. A database URL whose variable is not set is
/// doctor's failed database line, naming the variable.
#[test]
fn pdps_own_tools_are_reported_as_what_pdp_will_use() {
    let p = Project::new();
    p.init(&["--prisma", "4.16.2", "--database-url", "postgresql://postgres@127.0.0.1:5432/test"]);
    let out = p.run(&["doctor"]);
    assert!(out.stdout.contains("deno@2.9.6: pdp installs it from the npm registry"), "{}", out.all());
    assert!(out.stdout.contains("prisma@4.16.2"), "{}", out.all());
    // No npm (and no node) on PATH: pdp cannot install them, and says so.
    let out = p.run_with(p.pdp().arg("doctor").env("PATH", "/nonexistent"));
    assert!(out.stdout.contains("deno@2.9.6 is not in pdp's cache and npm is missing to install it"), "{}", out.all());
    // The URL's variable unset: doctor fails its database line with the variable's name.
    std::fs::remove_file(p.path(".env")).expect("rm .env");
    let out = p.run(&["doctor"]).expect_code(3);
    assert!(
        out.stdout.contains("`database.url` refers to environment variable `DATABASE_URL`, which is not set"),
        "{}",
        out.all()
    );
}

#[test]
fn reaches_postgresql() {
    let (p, url) = project_with_url("postgresql", &postgres_url());
    let (code, v, all) = doctor_json(&p, &url);
    assert_eq!(code, 0, "{all}");
    let db = &check(&v, "database")[0];
    assert_eq!(db["status"], "ok", "{all}");
    assert!(db["message"].as_str().expect("msg").starts_with("PostgreSQL "), "{all}");
}

#[test]
fn reaches_mariadb() {
    let (p, url) = project_with_url("mysql", &mysql_url());
    let (code, v, all) = doctor_json(&p, &url);
    assert_eq!(code, 0, "{all}");
    let db = &check(&v, "database")[0];
    assert_eq!(db["status"], "ok", "{all}");
    let msg = db["message"].as_str().expect("msg");
    assert!(msg.starts_with("MariaDB ") || msg.starts_with("MySQL "), "{all}");
}

#[test]
fn sqlite_file_relative_to_the_schema() {
    let p = Project::new();
    p.init(&["--provider", "sqlite"]);
    assert!(p.read("pdp.toml").contains("url = \"file:./dev.db\""));
    let (code, v, all) = doctor_json(&p, "");
    assert_eq!(code, 0, "{all}");
    assert_eq!(check(&v, "database")[0]["status"], "warn", "missing file is a warning: {all}");
    // Create the file where Prisma would: next to the schema.
    std::fs::File::create(p.path("prisma/dev.db")).expect("create");
    let (code, v, all) = doctor_json(&p, "");
    assert_eq!(code, 0, "{all}");
    let db = &check(&v, "database")[0];
    assert_eq!(db["status"], "ok", "{all}");
    assert!(db["message"].as_str().expect("msg").starts_with("SQLite 3."), "{all}");
}

#[test]
fn unreachable_database_fails_without_leaking_the_password() {
    let url = format!("postgresql://postgres:Sup3rS3cret@127.0.0.1:{}/test", closed_port());
    let (p, url) = project_with_url("postgresql", &url);
    let (code, v, all) = doctor_json(&p, &url);
    assert_eq!(code, 3, "{all}");
    assert_eq!(v["ok"], false);
    let db = &check(&v, "database")[0];
    assert_eq!(db["status"], "fail", "{all}");
    assert!(db["message"].as_str().expect("msg").contains("postgresql://postgres:****@127.0.0.1:"), "{all}");
    assert!(db["hint"].as_str().expect("hint").contains("is the database running"), "{all}");
    assert!(!all.contains("Sup3rS3cret"), "{all}");
    // The human report says the same, also without the password.
    let human = p.run_with(p.pdp().args(["doctor"]).env("DOCTOR_DB", &url)).expect_code(3);
    assert!(human.stdout.contains("fail  database"), "{}", human.all());
    assert!(!human.all().contains("Sup3rS3cret"));
}

#[test]
fn wrong_database_name_gets_its_own_hint() {
    let url = postgres_url().rsplit_once('/').map(|(base, _)| format!("{base}/pdp_no_such_db")).expect("url");
    let (p, url) = project_with_url("postgresql", &url);
    let (code, v, all) = doctor_json(&p, &url);
    assert_eq!(code, 3, "{all}");
    assert!(check(&v, "database")[0]["hint"].as_str().expect("hint").contains("create the database"), "{all}");
}

#[test]
fn provider_mismatch_between_schema_and_url_fails() {
    let (p, _) = project_with_url("postgresql", "");
    let (code, v, all) = doctor_json(&p, &mysql_url());
    assert_eq!(code, 3, "{all}");
    assert!(
        check(&v, "database")[0]["message"].as_str().expect("msg").contains("schema's provider is `postgresql`"),
        "{all}"
    );
}

#[test]
fn no_config_fails_with_the_init_hint() {
    let p = Project::new();
    let out = p.run(&["doctor"]).expect_code(3);
    assert!(out.stdout.contains("fail  config     no `pdp.toml` found"), "{}", out.all());
    assert!(out.stdout.contains("hint: run `pdp init`"), "{}", out.all());
    // The machine-level checks still ran.
    assert!(out.stdout.contains("ok    platform"), "{}", out.all());
}

#[test]
fn invalid_config_is_a_failed_check_with_its_position() {
    let p = Project::new();
    p.init(&[]);
    let toml = p.read("pdp.toml").replace("[serve]\n", "[serve]\nlisten-on = \"x\"\n");
    p.write("pdp.toml", &toml);
    let out = p.run(&["doctor"]).expect_code(3);
    assert!(out.stdout.contains("unknown key `serve.listen-on`"), "{}", out.all());
    assert!(out.stdout.contains("pdp.toml:"), "{}", out.all());
}

#[test]
fn prisma7_schema_with_datasource_url_fails() {
    let p = Project::new();
    p.init(&[]);
    let schema = p
        .read("prisma/schema.prisma")
        .replace("provider = \"postgresql\"", "provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")");
    p.write("prisma/schema.prisma", &schema);
    let out = p.run(&["doctor"]).expect_code(3);
    assert!(out.stdout.contains("rejects `url` in the datasource block"), "{}", out.all());
}

/// The repository's sample project (`prisma/`) copied into a new project is adopted by init and
/// accepted by doctor, migrations and lock file included.
#[test]
fn the_sample_project_is_adopted_with_its_migrations() {
    let p = Project::new();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prisma");
    copy_dir(&sample, &p.path("prisma"));
    let out = p.init(&[]);
    assert!(out.stderr.contains("adopted prisma/schema.prisma (postgresql)"), "{}", out.all());
    let doctor = p.run(&["doctor"]).expect_code(0);
    assert!(doctor.stdout.contains("ok    migrations 2 migration(s)"), "{}", doctor.all());
    // A lock file for another provider is caught.
    p.write("prisma/migrations/migration_lock.toml", "provider = \"mysql\"\n");
    let doctor = p.run(&["doctor"]).expect_code(3);
    assert!(doctor.stdout.contains("says `mysql` but the schema says `postgresql`"), "{}", doctor.all());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("ls") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn connections_pdp_may_open_are_weighed_against_the_servers_max_connections() {
    let (p, url) = project_with_url("postgresql", &postgres_url());
    let max = {
        let out =
            std::process::Command::new("psql").arg(&url).args(["-tAc", "SHOW max_connections"]).output().expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().expect("a number")
    };
    let toml = p.read("pdp.toml");
    p.write("pdp.toml", &format!("{toml}\n[serve.limits]\nconnection-limit = 20\non-demand-connections = 4\n"));
    let hpa = p.read("deploy/k8s/hpa.yaml");
    assert!(hpa.contains("maxReplicas: 6"), "{hpa}");
    // One replica's budget, whatever its pool size; the cluster's at the autoscaler's most replicas.
    for (replicas, status) in [(2, "ok"), (max / 20 + 1, "warn")] {
        p.write("deploy/k8s/hpa.yaml", &hpa.replace("maxReplicas: 6", &format!("maxReplicas: {replicas}")));
        let (_, v, all) = doctor_json(&p, &url);
        let line = check(&v, "connections");
        assert_eq!(line.len(), 1, "{all}");
        assert_eq!(line[0]["status"], status, "{all}");
        let message = line[0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("one replica opens at most 20 "), "{all}");
        assert!(message.contains("4 of it kept for"), "{all}");
        let cluster =
            format!("; {replicas} replicas (maxReplicas in deploy/k8s/hpa.yaml) open at most {}", replicas * 20);
        assert!(message.contains(&cluster) && message.ends_with(&format!("allows {max}")), "{all}");
    }
}
