//! Tests of parsing and resolution: the reference file, and one `check` per user mistake.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::{ApiKey, ConfigError, Overrides, Provider, Secret, Tls, from_str};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    map.entry("HOME".into()).or_insert_with(|| "/home/u".into());
    map
}

const FILE: &str = "/p/pdp.toml";

/// Renders the outcome of resolving `toml` as text: the error's problems with hints, or "ok".
fn outcome(toml: &str, vars: &[(&str, &str)]) -> String {
    match from_str(toml, Path::new(FILE), &env(vars), &Overrides::default()) {
        Ok(_) => "ok".into(),
        Err(ConfigError::Invalid(problems)) => problems
            .iter()
            .map(|p| match &p.hint {
                Some(h) => format!("{p}\nhint: {h}"),
                None => p.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(other) => format!("other error: {other}"),
    }
}

fn check(toml: &str, vars: &[(&str, &str)], expect: &str) {
    let got = outcome(toml, vars);
    assert_eq!(got, expect.trim(), "\n--- toml ---\n{toml}");
}

#[test]
fn reference_parses_with_every_value() {
    let vars = [
        ("REFERENCE_DATABASE_URL", "postgresql://u:pw@db:5432/app?schema=s"),
        ("REFERENCE_API_KEY", "k-123"),
        ("REFERENCE_CLUSTER_SECRET", "0123456789abcdef0123456789abcdef"),
    ];
    let c = from_str(crate::REFERENCE_TOML, Path::new(FILE), &env(&vars), &Overrides::default())
        .unwrap_or_else(|e| panic!("reference.toml must parse: {e}"));
    assert_eq!(c.prisma.version.to_string(), "6.19.0");
    assert_eq!(c.prisma.schema, Path::new("/p/db/schema.prisma"));
    assert_eq!(c.prisma.migrations.as_deref(), Some(Path::new("/p/db/migrations")));
    let url = c.database.configured().expect("url");
    assert_eq!(url.redacted(), "postgresql://u:****@db:5432/app?schema=s");
    assert_eq!(url.expose(), "postgresql://u:pw@db:5432/app?schema=s");
    assert_eq!(url.provider(), Provider::Postgresql);
    assert_eq!(c.engines.targets, ["native", "linux-static-x64", "debian-openssl-3.0.x"]);
    assert_eq!(c.engines.mirror.as_str(), "https://mirror.example.com/prisma");
    assert_eq!(c.engines.cache, Path::new("/var/cache/pdp"));
    assert_eq!(c.client.out, Path::new("/p/public/client"));
    assert_eq!(c.client.version, "2.3.0");
    assert_eq!(
        c.client.base_url.as_ref().map(url::Url::as_str),
        Some("https://cdn.jsdelivr.net/gh/acme/data-proxy@client/")
    );
    assert_eq!(c.serve.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(c.serve.public_url.as_str(), "https://proxy.example.com/");
    assert_eq!(c.serve.tls, Tls::Files { cert: "/etc/pdp/tls/cert.pem".into(), key: "/etc/pdp/tls/key.pem".into() });
    assert_eq!(
        c.serve.api_keys,
        [
            ApiKey::Env { var: "REFERENCE_API_KEY".into(), key: Secret::new("k-123") },
            ApiKey::Sha256("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
        ]
    );
    assert_eq!(c.serve.shutdown_timeout, Duration::from_secs(45));
    assert_eq!(c.serve.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.serve.threads, Some(3));
    assert_eq!(c.serve.children, Some(3));
    assert_eq!(c.serve.engine, crate::QueryEngine::Wasm);
    assert!(!c.serve.raw_queries && !c.serve.engine_metrics && !c.serve.telemetry_in_response && c.serve.log_queries);
    let l = &c.serve.limits;
    assert_eq!(l.max_body_size, 2 << 20);
    assert_eq!(l.max_response_size, 16 << 20);
    assert_eq!(l.query_timeout, Duration::from_secs(5));
    assert_eq!(l.transaction_max_timeout, Duration::from_secs(20));
    assert_eq!(l.transaction_max_wait, Duration::from_secs(3));
    assert_eq!((l.connection_limit, l.on_demand_connections), (7, 1));
    assert_eq!(l.pool_timeout, Duration::from_secs(20));
    assert_eq!(l.engine_start_timeout, Duration::from_secs(12));
    assert_eq!(l.engine_idle_timeout, Duration::from_secs(3600));
    assert_eq!(l.header_read_timeout, Duration::from_secs(4));
    assert_eq!(l.tls_handshake_timeout, Duration::from_secs(3));
    assert_eq!(l.idle_timeout, Duration::from_secs(120));
    assert_eq!(l.max_connections, 1000);
    assert_eq!(c.serve.cache, crate::CacheConfig { enabled: false, max_size: 16 << 20 });
    let cluster = c.serve.cluster.as_ref().expect("[serve.cluster]");
    assert_eq!(cluster.secret, Ok(Secret::new("0123456789abcdef0123456789abcdef")));
    assert_eq!(cluster.advertise, crate::Advertise::Addr("10.0.0.5:4468".parse().unwrap()));
    assert_eq!(cluster.listen, "0.0.0.0:4468".parse().unwrap());
    assert_eq!(cluster.peers, ["pdp-peers.default.svc.cluster.local:4468", "10.0.0.7:4468"]);
    assert_eq!(c.migrate.lock_timeout, Duration::from_secs(120));
    assert!(c.warnings.is_empty());
}

/// Every key in the reference differs from its default: resolving the defaults must give other values.
#[test]
fn reference_values_are_not_the_defaults() {
    let d = from_str("[prisma]\nversion = \"6.19.0\"\n", Path::new(FILE), &env(&[]), &Overrides::default())
        .expect("minimal");
    assert_eq!(d.prisma.schema, Path::new("/p/prisma/schema.prisma"));
    assert_eq!(d.prisma.migrations, None, "unset: Prisma's default beside the schema");
    assert!(matches!(d.database.url, crate::DatabaseSetting::Embedded), "absent url means the embedded database");
    assert_eq!(d.engines.targets, ["native"]);
    assert_eq!(d.engines.mirror.as_str(), "https://binaries.prisma.sh/");
    assert_eq!(d.engines.cache, Path::new("/home/u/.cache/pdp"));
    assert_eq!(d.client.out, Path::new("/p/dist/client"));
    assert_eq!(d.client.version, "0.1.0");
    assert_eq!(d.serve.listen.to_string(), "127.0.0.1:4466");
    assert_eq!(d.serve.public_url.as_str(), "https://localhost:4466/");
    assert_eq!(d.serve.tls, Tls::Auto);
    assert!(d.serve.api_keys.is_empty());
    assert_eq!(d.serve.limits.max_body_size, 10 << 20);
    assert_eq!(d.serve.limits.max_response_size, 128 << 20);
    assert_eq!(d.serve.metrics_listen, None);
    assert_eq!(d.serve.threads, None);
    assert_eq!(d.serve.children, None);
    assert_eq!(d.serve.engine, crate::QueryEngine::Native);
    assert!(d.serve.raw_queries && d.serve.engine_metrics && d.serve.telemetry_in_response && !d.serve.log_queries);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u32;
    assert_eq!(d.serve.limits.connection_limit, (cpus * 2 + 1).max(10));
    assert_eq!(d.serve.limits.on_demand_connections, d.serve.limits.connection_limit / 4);
    assert_eq!(d.serve.cluster, None);
    assert_eq!(d.serve.cache, crate::CacheConfig { enabled: true, max_size: 64 << 20 });
    assert_eq!(d.serve.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(d.serve.limits.tls_handshake_timeout, Duration::from_secs(10));
    assert_eq!(d.serve.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(d.serve.limits.max_connections, 4096);
    assert_eq!(d.migrate.lock_timeout, Duration::from_secs(10));
    assert_eq!(d.state_dir, Path::new("/p/.pdp"));
}

#[test]
fn zero_counts_are_refused_with_their_key() {
    check(
        "[prisma]\nversion = \"6.19.0\"\n\n[serve]\nthreads = 0\n\n[serve.limits]\nconnection-limit = 0\n",
        &[],
        "/p/pdp.toml:5:11: `serve.threads` must be at least 1\nhint: leave it out for half the CPUs\n\
         /p/pdp.toml:8:20: `serve.limits.connection-limit` must be at least 1",
    );
}

#[test]
fn the_on_demand_part_must_leave_the_project_a_connection() {
    check(
        "[prisma]\nversion = \"6.19.0\"\n\n[serve.limits]\nconnection-limit = 4\non-demand-connections = 4\n",
        &[],
        "/p/pdp.toml:6:25: `serve.limits.on-demand-connections` (4) must be less than `connection-limit` (4): the project's own children need at least one\nhint: lower it, or raise `connection-limit`",
    );
}

#[test]
fn unknown_key_suggests_the_close_one() {
    check(
        "[prisma]\nversion = \"7.10.1\"\n\n[serve]\npublc-url = \"https://x\"\n",
        &[],
        "/p/pdp.toml:5:1: unknown key `serve.publc-url`\nhint: did you mean `public-url`?",
    );
}

#[test]
fn unknown_key_without_a_close_one_lists_the_valid_keys() {
    check(
        "[prisma]\nversion = \"7.10.1\"\nflavour = \"x\"\n",
        &[],
        "/p/pdp.toml:3:1: unknown key `prisma.flavour`\nhint: valid keys in `[prisma]`: `version`, `schema`, `migrations`",
    );
}

#[test]
fn unknown_section() {
    check(
        "[prisma]\nversion = \"7.10.1\"\n[servee]\nlisten = \"x\"\n",
        &[],
        "/p/pdp.toml:3:2: unknown key `servee`\nhint: did you mean `serve`?",
    );
}

#[test]
fn wrong_type() {
    check(
        "[prisma]\nversion = \"7.10.1\"\n[serve.limits]\nconnection-limit = \"ten\"\n",
        &[],
        "/p/pdp.toml:4:20: wrong value for `serve.limits.connection-limit`: expected a whole number, found a string\nhint: write a whole number without quotes, e.g. `10`",
    );
    check(
        "[prisma]\nversion = 7\n",
        &[],
        "/p/pdp.toml:2:11: wrong value for `prisma.version`: expected a string (in quotes), found an integer\nhint: put the value in double quotes",
    );
    check(
        "[prisma]\nversion = \"7.10.1\"\n[engines]\ntargets = \"native\"\n",
        &[],
        "/p/pdp.toml:4:11: wrong value for `engines.targets`: expected an array, found a string\nhint: write an array, e.g. `[\"native\"]`",
    );
}

#[test]
fn syntax_error_points_at_the_line() {
    let got = outcome("[prisma]\nversion = \"7.10.1\n", &[]);
    assert!(got.starts_with("/p/pdp.toml:2:"), "{got}");
    assert!(got.contains("invalid TOML"), "{got}");
}

#[test]
fn a_duplicate_table_or_key_is_named() {
    let got =
        outcome("[prisma]\nversion = \"7.10.0\"\n[serve]\nlisten = \"127.0.0.1:1\"\n[serve]\ntls = \"off\"\n", &[]);
    assert!(got.starts_with("/p/pdp.toml:5:"), "{got}");
    assert!(got.contains("`serve` is defined twice"), "{got}");
    let got = outcome("[prisma]\nversion = \"7.10.0\"\nversion = \"7.9.0\"\n", &[]);
    assert!(got.contains("`version` is defined twice"), "{got}");
}

#[test]
fn missing_required_version() {
    check(
        "[prisma]\nschema = \"s.prisma\"\n",
        &[],
        "/p/pdp.toml:1:1: missing required key `prisma.version`\nhint: add `version = \"7.10.0\"` under `[prisma]` (it decides client generation, protocol and engines)",
    );
    check(
        "",
        &[],
        "/p/pdp.toml: missing required key `prisma.version`\nhint: add `version = \"7.10.0\"` under `[prisma]` (it decides client generation, protocol and engines)",
    );
}

#[test]
fn unsupported_version_lists_the_range() {
    check(
        "[prisma]\nversion = \"3.15.2\"\n",
        &[],
        "/p/pdp.toml:2:11: `prisma.version`: Prisma 3.15.2 is not supported; pdp supports 4.16.x, 5.0.x–5.22.x, 6.0.x–6.7.x, 6.8.x–6.19.x, 7.0.x–7.10.x\nhint: pick a supported version; new projects use 7.10.0",
    );
}

#[test]
fn a_missing_secret_fails_only_the_command_that_uses_it_naming_the_variable() {
    let render = |e: ConfigError| match e {
        ConfigError::Invalid(problems) => problems
            .iter()
            .map(|p| format!("{p}\nhint: {}", p.hint.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("not a problem list: {other}"),
    };
    // The file resolves (build-client, engines, init and config need neither secret)…
    let toml = "[prisma]\nversion = \"7.10.1\"\n[database]\nurl = \"env:DATABASE_URL\"\n[serve]\napi-keys = [\"env:KEY\", \"env:OTHER\"]\n";
    let c = from_str(toml, Path::new(FILE), &env(&[("KEY", ""), ("OTHER", "k")]), &Overrides::default())
        .expect("a missing secret does not fail resolution");
    assert!(matches!(c.database.url, crate::DatabaseSetting::Unset(ref u) if u.var == "DATABASE_URL"));
    assert!(c.database.configured().is_none());
    // …and the commands that connect or check keys fail with the variable, its position and a hint.
    assert_eq!(
        render(c.database.connect_to().expect_err("migrate and serve need the URL")),
        "/p/pdp.toml:4:7: `database.url` refers to environment variable `DATABASE_URL`, which is not set\nhint: export `DATABASE_URL`, or add `DATABASE_URL=…` to `.env` next to pdp.toml (see `.env.example`)"
    );
    assert_eq!(
        render(c.serve.keys().expect_err("serve needs every key it names")),
        "/p/pdp.toml:6:13: `serve.api-keys` refers to environment variable `KEY`, which is set but empty\nhint: set `KEY` to a value, or add `KEY=…` to `.env` next to pdp.toml"
    );
    assert_eq!(c.serve.api_keys.len(), 2, "the set key is kept beside the unset one");
    // An invalid variable name is still a problem of the file itself.
    check(
        "[prisma]\nversion = \"7.10.1\"\n[database]\nurl = \"env:1BAD\"\n",
        &[],
        "/p/pdp.toml:4:7: `database.url` refers to `env:1BAD`, which is not a valid variable name\nhint: write `env:NAME` with letters, digits and underscores, e.g. `env:DATABASE_URL`",
    );
}

#[test]
fn bad_database_url_from_env_is_redacted() {
    let got = outcome(
        "[prisma]\nversion = \"7.10.1\"\n[database]\nurl = \"env:DATABASE_URL\"\n",
        &[("DATABASE_URL", "postgress://admin:hunter2@db/app")],
    );
    assert_eq!(
        got,
        "/p/pdp.toml:4:7: `database.url` (from `DATABASE_URL`): unsupported database URL scheme `postgress:` (expected postgresql://, mysql://, file:, sqlserver:// or mongodb://)\nhint: e.g. `postgresql://user@host:5432/db?schema=public`, `mysql://root@host:3306/db` or `file:./dev.db`"
    );
    assert!(!got.contains("hunter2"));
}

#[test]
fn plain_api_key_is_refused() {
    let got = outcome("[prisma]\nversion = \"7.10.1\"\n[serve]\napi-keys = [\"sk_live_abc\"]\n", &[]);
    assert!(got.starts_with("/p/pdp.toml:4:13: `serve.api-keys` holds a plain key"), "{got}");
    assert!(!got.contains("sk_live_abc"), "{got}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = outcome(
        "[prisma]\nversion = \"9.0.0\"\n[serve]\nlisten = \"localhost\"\ntls = \"maybe\"\n[engines]\ntargets = [\"debian-openssl-3.0\"]\n",
        &[],
    );
    let lines: Vec<_> = got.lines().filter(|l| l.starts_with("/p/")).collect();
    assert_eq!(lines.len(), 4, "{got}");
    assert!(got.contains("unknown binary target `debian-openssl-3.0`"), "{got}");
    assert!(got.contains("did you mean `debian-openssl-3.0.x`?"), "{got}");
}

#[test]
fn layering_file_then_env_then_flags() {
    let toml =
        "[prisma]\nversion = \"7.10.1\"\n[serve]\nlisten = \"127.0.0.1:1000\"\n[database]\nurl = \"file:./a.db\"\n";
    let file_only = from_str(toml, Path::new(FILE), &env(&[]), &Overrides::default()).expect("ok");
    assert_eq!(file_only.serve.listen.port(), 1000);
    let with_env =
        from_str(toml, Path::new(FILE), &env(&[("PDP_LISTEN", "127.0.0.1:2000")]), &Overrides::default()).expect("ok");
    assert_eq!(with_env.serve.listen.port(), 2000);
    let flags = Overrides {
        listen: Some("127.0.0.1:3000".into()),
        database_url: Some(Secret::new("mysql://root@h/db")),
        ..Overrides::default()
    };
    let with_flag = from_str(toml, Path::new(FILE), &env(&[("PDP_LISTEN", "127.0.0.1:2000")]), &flags).expect("ok");
    assert_eq!(with_flag.serve.listen.port(), 3000);
    assert_eq!(with_flag.database.configured().map(|u| u.provider()), Some(Provider::Mysql));
    assert_eq!(with_flag.serve.public_url.as_str(), "https://localhost:3000/");
}

#[test]
fn bad_env_override_names_the_variable() {
    check(
        "[prisma]\nversion = \"7.10.1\"\n",
        &[("PDP_LISTEN", "nope")],
        "environment variable `PDP_LISTEN`: `serve.listen` = `nope` is not an IP address and port\nhint: e.g. `127.0.0.1:4466` for local use, `0.0.0.0:4466` in a container",
    );
}

#[test]
fn tls_modes() {
    check(
        "[prisma]\nversion = \"7.10.1\"\n[serve]\ntls = \"files\"\ntls-cert = \"c.pem\"\n",
        &[],
        "/p/pdp.toml:4:7: TLS from files needs both `serve.tls-cert` and `serve.tls-key`; `serve.tls-key` is missing\nhint: set both to PEM files, or use `tls = \"auto\"` for a local CA",
    );
    check(
        "[prisma]\nversion = \"7.10.1\"\n[serve]\ntls = \"off\"\ntls-key = \"k.pem\"\n",
        &[],
        "/p/pdp.toml:5:11: `serve.tls-cert` / `serve.tls-key` are only used with `tls = \"files\"`, but `tls = \"off\"`\nhint: set `tls = \"files\"`, or remove the certificate keys",
    );
    let c = from_str(
        "[prisma]\nversion = \"7.10.1\"\n[serve]\ntls = \"off\"\n",
        Path::new(FILE),
        &env(&[]),
        &Overrides::default(),
    )
    .expect("ok");
    assert_eq!(c.serve.public_url.as_str(), "http://localhost:4466/");
}

#[test]
fn password_in_file_is_a_warning() {
    let c = from_str(
        "[prisma]\nversion = \"7.10.1\"\n[database]\nurl = \"postgresql://u:pw@h/db\"\n",
        Path::new(FILE),
        &env(&[]),
        &Overrides::default(),
    )
    .expect("allowed");
    assert_eq!(c.warnings.len(), 1);
    assert!(!format!("{:?}", c).contains("pw@"), "Debug must not show the password");
}

#[test]
fn sizes() {
    use crate::resolve::parse_size as p;
    assert_eq!(p("10MiB"), Some(10 << 20));
    assert_eq!(p("512KiB"), Some(512 << 10));
    assert_eq!(p("1MB"), Some(1_000_000));
    assert_eq!(p("2048"), Some(2048));
    assert_eq!(p("ten"), None);
    assert_eq!(p("10 MiB"), Some(10 << 20));
    assert_eq!(p("10XB"), None);
    assert_eq!(p("3kB"), Some(3000));
    assert_eq!(p("3KB"), Some(3000));
    assert_eq!(p("1GiB"), Some(1 << 30));
    assert_eq!(p("7B"), Some(7));
    // Forms bytesize would take but pdp.toml does not promise: decimals, other cases, no number.
    for refused in ["1.5MiB", "10mib", "10 kib", "MiB", "-1", "1 000", "99999999999999999999GiB"] {
        assert_eq!(p(refused), None, "{refused}");
    }
}

#[test]
fn network_settings_are_read_once_and_checked() {
    let toml = "[prisma]\nversion = \"7.10.1\"\n";
    let load = |vars: &[(&str, &str)]| from_str(toml, Path::new(FILE), &env(vars), &Overrides::default());
    let c = load(&[]).expect("ok");
    assert_eq!(c.network, crate::NetworkConfig::default());
    assert_eq!(c.network.registry().as_str(), "https://registry.npmjs.org/");
    let c = load(&[
        ("https_proxy", "http://lower:1"),
        ("HTTPS_PROXY", "http://upper:1"),
        ("http_proxy", "proxy.internal:3128"),
        ("no_proxy", "localhost,.internal"),
        ("PDP_NPM_REGISTRY", "https://npm.example.com/repo/"),
    ])
    .expect("ok");
    assert_eq!(c.network.https_proxy.as_deref(), Some("http://upper:1"), "the upper-case name wins");
    assert_eq!(c.network.http_proxy.as_deref(), Some("proxy.internal:3128"), "host:port is a proxy, as in curl");
    assert_eq!(c.network.no_proxy.as_deref(), Some("localhost,.internal"), "the lower-case name alone counts");
    assert_eq!(c.network.registry().as_str(), "https://npm.example.com/repo/");
    let c = load(&[("NO_PROXY", ""), ("no_proxy", "localhost")]).expect("ok");
    assert_eq!(c.network.no_proxy, None, "a set but empty upper-case name means none, masking the lower-case one");
    let c = load(&[("https_proxy", "http://lower:1")]).expect("ok");
    assert_eq!((c.network.https_proxy.as_deref(), c.network.http_proxy.as_deref()), (Some("http://lower:1"), None));
    let c = load(&[("HTTPS_PROXY", ""), ("HTTP_PROXY", "http://h:8")]).expect("ok");
    assert_eq!((c.network.https_proxy.as_deref(), c.network.http_proxy.as_deref()), (None, Some("http://h:8")));
    check(
        toml,
        &[("HTTPS_PROXY", "ftp://user:secret@p:21")],
        "environment variable `HTTPS_PROXY`: `HTTPS_PROXY` = `ftp://user:****@p:21` is not a proxy URL: unsupported scheme `ftp:`\nhint: set it to e.g. `http://proxy.example.com:3128`, or unset `HTTPS_PROXY`",
    );
    check(
        toml,
        &[("PDP_NPM_REGISTRY", "not a url")],
        "environment variable `PDP_NPM_REGISTRY`: `PDP_NPM_REGISTRY` = `not a url` is not a URL: relative URL without a base\nhint: set `PDP_NPM_REGISTRY` to a registry base URL such as https://registry.npmjs.org, or unset it",
    );
}

#[test]
fn the_temporary_directory_comes_from_the_environment() {
    let toml = "[prisma]\nversion = \"7.10.1\"\n";
    let c = from_str(toml, Path::new(FILE), &env(&[("TMPDIR", "/scratch")]), &Overrides::default()).expect("ok");
    assert_eq!(c.temp_dir, Path::new("/scratch"));
    let c = from_str(toml, Path::new(FILE), &env(&[("TMPDIR", "")]), &Overrides::default()).expect("ok");
    assert_eq!(c.temp_dir, Path::new("/tmp"), "an empty TMPDIR is unset");
}

#[test]
fn discover_walks_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a/b");
    fs_err::create_dir_all(&nested).expect("mkdir");
    fs_err::write(dir.path().join("pdp.toml"), "").expect("write");
    assert_eq!(crate::discover(&nested).expect("found"), dir.path().join("pdp.toml"));
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(matches!(crate::discover(empty.path()), Err(ConfigError::NotFound { .. })));
}

#[test]
fn cluster_settings_are_checked_and_the_secret_never_shown() {
    let head = "[prisma]\nversion = \"7.10.1\"\n[serve.cluster]\n";
    let secret = ("S", "0123456789abcdef0123456789abcdef");
    check(
        &format!("{head}secret = \"env:S\"\n"),
        &[secret],
        "/p/pdp.toml:3:1: `[serve.cluster]` has no `advertise` address: peers could not reach this replica\n\
         hint: set `advertise = \"<this replica's IP>:4468\"` or PDP_CLUSTER_ADVERTISE, or remove `[serve.cluster]` to serve alone",
    );
    // The environment alone turns it on: the secret defaults to PDP_CLUSTER_SECRET.
    let c = from_str(
        "[prisma]\nversion = \"7.10.1\"\n",
        Path::new(FILE),
        &env(&[("PDP_CLUSTER_ADVERTISE", "auto:4468"), ("PDP_CLUSTER_SECRET", secret.1)]),
        &Overrides::default(),
    )
    .expect("resolves");
    assert_eq!(c.serve.cluster_secret().expect("set").map(|s| s.expose().to_owned()).as_deref(), Some(secret.1));
    let got = outcome(&format!("{head}secret = \"plain-secret-value\"\nadvertise = \"10.0.0.5:4468\"\n"), &[]);
    assert!(got.starts_with("/p/pdp.toml:4:10: `serve.cluster.secret` holds the secret itself"), "{got}");
    assert!(!got.contains("plain-secret-value"), "{got}");
    let got = outcome(&format!("{head}secret = \"env:S\"\nadvertise = \"10.0.0.5:4468\"\n"), &[("S", "short")]);
    assert!(got.contains("the cluster secret is 5 bytes; at least 32 are needed"), "{got}");
    assert!(!got.contains("short"), "{got}");
    let got =
        outcome(&format!("{head}secret = \"env:S\"\nadvertise = \"0.0.0.0:4468\"\npeers = [\"nohost\"]\n"), &[secret]);
    assert!(
        got.contains("`serve.cluster.advertise` = `0.0.0.0:4468` is not an IP address and port peers can connect to"),
        "{got}"
    );
    assert!(got.contains("the peer `nohost` is not `host:port`"), "{got}");
    // The environment turns it on and names the peers; an unset secret fails only `pdp serve`.
    let c = from_str(
        "[prisma]\nversion = \"7.10.1\"\n[serve.cluster]\nsecret = \"env:UNSET\"\n",
        Path::new(FILE),
        &env(&[("PDP_CLUSTER_ADVERTISE", "127.0.0.1:5001"), ("PDP_CLUSTER_PEERS", "127.0.0.1:5002, peers.local:5001")]),
        &Overrides::default(),
    )
    .expect("resolves");
    let cluster = c.serve.cluster.clone().expect("cluster on");
    assert_eq!(cluster.listen, "127.0.0.1:5001".parse().unwrap());
    assert_eq!(cluster.peers, ["127.0.0.1:5002", "peers.local:5001"]);
    let err = c.serve.cluster_secret().expect_err("unset").to_string();
    assert!(err.contains("UNSET"), "{err}");
    let alone =
        from_str("[prisma]\nversion = \"7.10.1\"\n", Path::new(FILE), &env(&[]), &Overrides::default()).expect("ok");
    assert_eq!(alone.serve.cluster, None);
}
