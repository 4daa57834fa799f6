//! `pdp config` and strict parsing as a new user meets it: each mistake is one message that names the
//! file, line and key, with a hint; exit code 2; no panic; no secret in the output.

use crate::support::Project;

const MINIMAL: &str = "[prisma]\nversion = \"7.10.1\"\n";

#[test]
fn unknown_key_names_file_line_key_and_suggests() {
    let p = Project::new();
    p.write("pdp.toml", &format!("{MINIMAL}\n[serve]\npublc-url = \"https://proxy.example.com\"\n"));
    let out = p.run(&["config"]).expect_code(2);
    let file = p.path("pdp.toml");
    assert_eq!(
        out.stderr,
        format!("error: {}:5:1: unknown key `serve.publc-url`\n\nhint: did you mean `public-url`?\n", file.display())
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn wrong_type_names_the_key_and_what_was_expected() {
    let p = Project::new();
    p.write("pdp.toml", &format!("{MINIMAL}[serve.limits]\nconnection-limit = \"ten\"\n"));
    let out = p.run(&["config"]).expect_code(2);
    assert!(
        out.stderr.contains(
            ":4:20: wrong value for `serve.limits.connection-limit`: expected a whole number, found a string"
        ),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("hint: write a whole number without quotes"), "{}", out.all());
}

#[test]
fn missing_env_variable_is_shown_as_not_set_and_named_with_a_hint_where_it_is_used() {
    let p = Project::new();
    p.write("pdp.toml", &format!("{MINIMAL}[database]\nurl = \"env:APP_DATABASE_URL\"\n"));
    // `pdp config` needs no secret: it shows the reference as not set.
    let out = p.run(&["config"]).expect_code(0);
    assert!(out.stdout.contains("env:APP_DATABASE_URL (not set)"), "{}", out.all());
    // A command that connects fails with the variable, its position and a hint.
    let out = p.run(&["migrate", "status"]).expect_code(2);
    assert!(
        out.stderr.contains(":4:7: `database.url` refers to environment variable `APP_DATABASE_URL`, which is not set"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("hint: export `APP_DATABASE_URL`, or add"), "{}", out.all());
}

#[test]
fn secrets_are_masked_in_output_errors_and_verbose_logs() {
    let p = Project::new();
    p.write("pdp.toml", &format!("{MINIMAL}[database]\nurl = \"env:APP_DB\"\n[serve]\napi-keys = [\"env:APP_KEY\"]\n"));
    let ok = p
        .run_with(
            p.pdp()
                .args(["--verbose", "config"])
                .env("APP_DB", "postgresql://app:T0pS3cret@db:5432/app")
                .env("APP_KEY", "k-VERYSECRET"),
        )
        .expect_code(0);
    assert!(ok.stdout.contains("postgresql://app:****@db:5432/app"), "{}", ok.all());
    assert!(!ok.all().contains("T0pS3cret") && !ok.all().contains("VERYSECRET"), "{}", ok.all());

    // A typo in the scheme: the error quotes nothing secret.
    let bad = p
        .run_with(
            p.pdp().args(["--verbose", "config"]).env("APP_DB", "postgress://app:T0pS3cret@db/app").env("APP_KEY", "k"),
        )
        .expect_code(2);
    assert!(bad.stderr.contains("unsupported database URL scheme `postgress:`"), "{}", bad.all());
    assert!(!bad.all().contains("T0pS3cret"), "{}", bad.all());

    // The same through a flag.
    let flag = p
        .run_with(p.pdp().args(["config", "--database-url", "mysql://root:Fl4gS3cret@h:3306/x"]).env("APP_KEY", "k"))
        .expect_code(0);
    assert!(flag.stdout.contains("mysql://root:****@h:3306/x"), "{}", flag.all());
    assert!(!flag.all().contains("Fl4gS3cret"));
}

#[test]
fn file_then_env_then_flag() {
    let p = Project::new();
    p.write("pdp.toml", &format!("{MINIMAL}[serve]\nlisten = \"127.0.0.1:1111\"\n"));
    let file = p.run(&["config", "--json"]).expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&file.stdout).expect("json");
    assert_eq!(v["serve"]["listen"], "127.0.0.1:1111");
    let env = p.run_with(p.pdp().args(["config", "--json"]).env("PDP_LISTEN", "127.0.0.1:2222")).expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&env.stdout).expect("json");
    assert_eq!(v["serve"]["listen"], "127.0.0.1:2222");
    let flag = p
        .run_with(p.pdp().args(["config", "--json", "--listen", "127.0.0.1:3333"]).env("PDP_LISTEN", "127.0.0.1:2222"))
        .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&flag.stdout).expect("json");
    assert_eq!(v["serve"]["listen"], "127.0.0.1:3333");
    assert_eq!(v["serve"]["public-url"], "https://localhost:3333/");
    // Pool size and threads as serve will use them: set, or from the CPUs.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u64;
    assert_eq!(v["serve"]["children"], cpus.saturating_sub((cpus / 2).max(1)).max(1));
    assert_eq!(v["serve"]["threads"], (cpus / 2).max(1));
    p.write("pdp.toml", &format!("{MINIMAL}[serve]\nchildren = 3\nthreads = 2\n"));
    let set = p.run(&["config", "--json"]).expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&set.stdout).expect("json");
    assert_eq!((v["serve"]["children"].as_u64(), v["serve"]["threads"].as_u64()), (Some(3), Some(2)));
    p.write("pdp.toml", &format!("{MINIMAL}[serve]\nchildren = 0\n"));
    let zero = p.run(&["config", "--json"]).expect_code(2);
    assert!(
        zero.stderr.contains("`serve.children` must be at least 1")
            && zero.stderr.contains("the CPUs pdp's threads leave free"),
        "{}",
        zero.all()
    );
}

#[test]
fn dotenv_next_to_pdp_toml_is_read_and_the_environment_wins() {
    let p = Project::new();
    p.write("pdp.toml", &format!("{MINIMAL}[database]\nurl = \"env:DATABASE_URL\"\n"));
    p.write(".env", "DATABASE_URL=\"mysql://root@from-dotenv:3306/db\"\n");
    let out = p.run(&["config", "--json"]).expect_code(0);
    assert!(out.stdout.contains("from-dotenv"), "{}", out.all());
    let out = p
        .run_with(p.pdp().args(["config", "--json"]).env("DATABASE_URL", "mysql://root@from-env:3306/db"))
        .expect_code(0);
    assert!(out.stdout.contains("from-env"), "{}", out.all());
}

#[test]
fn config_is_found_from_a_subdirectory_and_by_flag() {
    let p = Project::new();
    p.write("pdp.toml", MINIMAL);
    p.write("deep/er/.keep", "");
    let out = p.run_with(p.pdp().current_dir(p.path("deep/er")).args(["config", "--json"])).expect_code(0);
    assert!(out.stdout.contains("\"version\": \"7.10.1\""), "{}", out.all());

    let elsewhere = Project::new();
    let by_flag = elsewhere.run(&["--config", p.path("pdp.toml").to_str().expect("utf8"), "config"]).expect_code(0);
    assert!(by_flag.stdout.contains("version = \"7.10.1\""), "{}", by_flag.all());
    let missing = elsewhere.run(&["config"]).expect_code(2);
    assert!(missing.stderr.contains("no `pdp.toml` found in"), "{}", missing.all());
    assert!(missing.stderr.contains("hint: run `pdp init`"), "{}", missing.all());
}

#[test]
fn passwords_with_special_characters_stay_masked() {
    let p = Project::new();
    p.write("pdp.toml", &format!("{MINIMAL}[database]\nurl = \"env:APP_DB\"\n"));
    for password in ["se/cret", "se#cret", "se?cret", "a@b/c", "sec ret"] {
        let url = format!("postgresql://app:{password}@127.0.0.1:{}/db", crate::support::closed_port());
        let config = p.run_with(p.pdp().args(["--verbose", "config"]).env("APP_DB", &url)).expect_code(0);
        let deploy = p.run_with(p.pdp().args(["--verbose", "migrate", "deploy"]).env("APP_DB", &url)).expect_code(2);
        for out in [&config, &deploy] {
            assert!(!out.all().contains(password), "{password} leaked:\n{}", out.all());
            assert!(out.all().contains("app:****@"), "{}", out.all());
        }
    }
}

#[test]
fn a_broken_dotenv_names_the_line_not_the_value() {
    let p = Project::new();
    p.write("pdp.toml", MINIMAL);
    p.write(".env", "OK=1\nPDP_API_KEY=pdp_t0psecretkey\\x\n");
    let out = p.run(&["config"]).expect_code(2);
    assert!(out.stderr.contains(".env` as a .env file: line 2 (`PDP_API_KEY`) cannot be parsed"), "{}", out.all());
    assert!(out.stderr.contains("hint: each line of `.env` is `NAME=value`"), "{}", out.all());
    assert!(!out.all().contains("t0psecret"), "{}", out.all());
}

#[test]
fn the_cluster_settings_are_shown_without_the_secret_and_an_unset_one_fails_only_serve() {
    let p = Project::new();
    p.write(
        "pdp.toml",
        &format!("{MINIMAL}[serve]\napi-keys = [\"env:K\"]\n[serve.cluster]\nadvertise = \"10.0.0.5:4468\"\npeers = [\"pdp-peers:4468\"]\n"),
    );
    let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
    let out = p.run_with(p.pdp().args(["config"]).env("PDP_CLUSTER_SECRET", secret)).expect_code(0);
    assert!(out.stdout.contains("[serve.cluster]"), "{}", out.all());
    assert!(
        out.stdout.contains("advertise = \"10.0.0.5:4468\"") && out.stdout.contains("secret = \"set\""),
        "{}",
        out.all()
    );
    assert!(!out.all().contains(secret), "{}", out.all());
    // Without the variable, `pdp config` says so and `pdp serve` refuses, naming it.
    let out = p.run(&["config"]).expect_code(0);
    assert!(out.stdout.contains("not set (`PDP_CLUSTER_SECRET`)"), "{}", out.all());
    let out = p.run_with(p.pdp().args(["serve", "--listen", "127.0.0.1:0"]).env("K", "key"));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("PDP_CLUSTER_SECRET"), "{}", out.all());
}
