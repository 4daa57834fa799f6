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
