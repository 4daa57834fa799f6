//! `pdp serve` for Prisma 4.x–6.x clients (the Data Proxy protocol), driving the built binary over HTTPS
//! with curl, the way the clients' requests look on the wire (no Content-Type, base64 schema uploads).
//!
//! Two engines stand behind it here. Prisma's native `query-engine` cannot be downloaded on these
//! machines, so the 4.x GraphQL tests and the fault injection (start failure, crash, killed engine) use
//! `tests/support/engine-double.mjs`, a TEST DOUBLE of the native binary pointed at through
//! `PRISMA_QUERY_ENGINE_BINARY` exactly as a user would point pdp at a custom engine. The 5.x/6.x JSON
//! protocol tests use the real query engine: Prisma 6.19.3's WASM build (`[serve] engine = "wasm"`) on the
//! machine's PostgreSQL; the 4.16.2 Deno client also runs against a real GraphQL-protocol engine, the WASM
//! build `@prisma/query-engine-wasm@0.0.11` (`engine = "wasm"` for a GraphQL client).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::serve::{self, Serving, children, poll, tool_cache};
use crate::support::{Project, postgres_url};

pub(crate) const KEY: &str = "k-dp1-test-key";
/// Prisma 4.16.2's engine commit (what the double's `--version` prints).
const HASH_4_16_2: &str = "4bc8b6e1b66cb932731fb1bdbbc550d1e010de81";

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A schema as a client carries it: base64 text and the hash of that text.
struct Inline {
    b64: String,
    hash: String,
}

fn inline(schema: &str) -> Inline {
    let b64 = base64(schema.as_bytes());
    let hash = hex::encode(Sha256::digest(b64.as_bytes()));
    Inline { b64, hash }
}

fn schema(provider: &str, preview: &str, model: &str) -> String {
    format!(
        "generator client {{\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"deno\"{preview}]\n}}\n\n\
         datasource db {{\n  provider = \"{provider}\"\n  url      = env(\"DATABASE_URL\")\n}}\n\n\
         model {model} {{\n  id    Int    @id @default(autoincrement())\n  email String @unique\n  name  String?\n}}\n"
    )
}

/// One request like a DP1 edge client sends it: Bearer key, no Content-Type. Returns status and body.
fn request(s: &Serving, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
    let mut all = vec![format!("Authorization: Bearer {KEY}"), "Content-Type:".to_owned()];
    all.extend(headers.iter().map(|(k, v)| format!("{k}: {v}")));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    s.curl(method, path, &refs, body)
}

/// [`request`], its body read as JSON.
fn json_request(s: &Serving, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, text) = request(s, method, path, body, headers);
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text}\n{}", s.log()));
    (status, value)
}

/// A project for `version` whose database is `url`, serving on a free port with one key.
pub(crate) fn project(version: &str, url: &str, serve_extra: &str) -> Project {
    let p = Project::new();
    p.write(
        "pdp.toml",
        &format!(
            "[prisma]\nversion = \"{version}\"\n\n[database]\nurl = \"env:DATABASE_URL\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\n\
             api-keys = [\"env:PDP_API_KEY\"]\n{serve_extra}\n[serve.limits]\nengine-start-timeout = \"60s\"\n"
        ),
    );
    p.write(".env", &format!("DATABASE_URL={url}\nPDP_API_KEY={KEY}\n"));
    p
}

/// The engine double behind `PRISMA_QUERY_ENGINE_BINARY`: a wrapper script (the variable names one
/// program), and the 4.16.2 engine commit recorded in the cache as `pdp engines` records it.
fn double(p: &Project) -> (String, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/engine-double.mjs");
    let wrapper = p.path("bin/query-engine");
    p.write(
        "bin/query-engine",
        &format!("#!/bin/sh\nexec node {} \"$@\"\n", script.canonicalize().expect("double").display()),
    );
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let record = tool_cache().join("engines/versions/4.16.2");
    std::fs::create_dir_all(record.parent().expect("parent")).expect("mkdir");
    std::fs::write(&record, format!("{HASH_4_16_2}\n")).expect("hash record");
    (wrapper.display().to_string(), p.path("double-record.json"))
}

const CREATE_GQL: &str = r#"{"query":"mutation {\n  createOneUser(data: {email: \"a@x.io\", name: \"Ada\"}) {\n    id\n    email\n  }\n}","variables":{}}"#;
const FIND_GQL: &str = r#"{"query":"query {\n  findManyUser {\n    id\n    email\n    name\n  }\n}","variables":{}}"#;

#[test]
fn prisma_4_graphql_through_the_engine_double() {
    let db = format!("{}?schema=dp1", postgres_url());
    let p = project("4.16.2", &db, "");
    let (wrapper, record) = double(&p);
    let s = Serving::start(
        &p,
        &[("PRISMA_QUERY_ENGINE_BINARY", wrapper.as_str()), ("PDP_DOUBLE_RECORD", &record.display().to_string())],
    );
    let sc = inline(&schema("postgresql", "", "User"));
    let base = format!("/4.16.2/{}", sc.hash);

    // Unknown schema: the exact body that makes the client upload, then the upload (hash checked).
    let (status, body) = json_request(&s, "POST", &format!("{base}/graphql"), Some(FIND_GQL), &[]);
    assert_eq!((status, body), (404, json!({"EngineNotStarted": {"reason": "SchemaMissing"}})));
    let (status, body) = json_request(&s, "PUT", &format!("{base}/schema"), Some(&base64(b"something else")), &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("schema hash mismatch"), "{body}");
    let (status, _) = json_request(&s, "PUT", &format!("{base}/schema"), Some(&sc.b64), &[]);
    assert_eq!(status, 200);

    // Queries in GraphQL, no Content-Type; a unique violation passes through as the engine's P2002.
    let (status, body) = json_request(&s, "POST", &format!("{base}/graphql"), Some(CREATE_GQL), &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["createOneUser"]["email"], "a@x.io", "{body}");
    let (_, body) = json_request(&s, "POST", &format!("{base}/graphql"), Some(CREATE_GQL), &[]);
    assert_eq!(body["errors"][0]["user_facing_error"]["error_code"], "P2002", "{body}");
    let batch = format!(r#"{{"batch":[{FIND_GQL},{FIND_GQL}],"transaction":true}}"#);
    let (status, body) = json_request(&s, "POST", &format!("{base}/graphql"), Some(&batch), &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["batchResult"].as_array().map(Vec::len), Some(2), "{body}");

    // Interactive transaction: options validated, endpoint on the bound port, commit once.
    let (status, body) =
        json_request(&s, "POST", &format!("{base}/transaction/start"), Some(r#"{"max_wait":-5,"timeout":5000}"#), &[]);
    assert_eq!(status, 400);
    assert_eq!(body["error_code"], "P2028", "{body}");
    let (status, tx) = json_request(
        &s,
        "POST",
        &format!("{base}/transaction/start"),
        Some(r#"{"max_wait":2000,"timeout":5000}"#),
        &[],
    );
    assert_eq!(status, 200, "{tx}");
    let id = tx["id"].as_str().expect("id").to_owned();
    let endpoint = tx["data-proxy"]["endpoint"].as_str().expect("endpoint").to_owned();
    assert_eq!(endpoint, format!("https://localhost:{}{base}/itx/{id}", s.port));
    let (status, body) =
        json_request(&s, "POST", &format!("{endpoint}/graphql"), Some(FIND_GQL), &[("X-transaction-id", &id)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_request(&s, "POST", &format!("{endpoint}/commit"), None, &[]), (200, json!({})));
    let (status, body) = json_request(&s, "POST", &format!("{endpoint}/commit"), None, &[]);
    assert_eq!((status, body["error_code"].as_str()), (409, Some("P2028")), "{body}");

    // What the engine was given: the protocol explicitly, no playground, the URL only through the environment.
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&record).expect("record")).expect("json");
    let argv: Vec<&str> = rec["argv"].as_array().expect("argv").iter().filter_map(Value::as_str).collect();
    assert!(argv.windows(2).any(|w| w == ["--engine-protocol", "graphql"]), "{argv:?}");
    assert!(argv.contains(&"--enable-raw-queries") && !argv.contains(&"--enable-playground"), "{argv:?}");
    assert!(!argv.iter().any(|a| a.contains("postgres")), "the URL must not be on the command line: {argv:?}");
    assert_eq!(rec["protocol"], "graphql");
    let ds = rec["datasource"].to_string();
    assert!(ds.contains("schema=dp1") && ds.contains("pool_timeout=10"), "{ds}");

    // Engine metrics merged into /metrics; a wrong key is a plain 401 (P5007 in the client).
    let (status, metrics) = request(&s, "GET", "/metrics", None, &[]);
    assert_eq!(status, 200);
    assert!(metrics.contains("engine=\"4.16.2/"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    let (status, text) = s.curl("POST", &format!("{base}/graphql"), &["Authorization: Bearer wrong"], None);
    assert!(status == 401 && !text.contains("is_panic"), "{text}");
}

#[test]
fn prisma_4_json_protocol_is_chosen_from_the_schema() {
    let p = project("4.16.2", &postgres_url(), "");
    let (wrapper, record) = double(&p);
    let s = Serving::start(
        &p,
        &[("PRISMA_QUERY_ENGINE_BINARY", wrapper.as_str()), ("PDP_DOUBLE_RECORD", &record.display().to_string())],
    );
    let sc = inline(&schema("postgresql", ", \"jsonProtocol\"", "User"));
    let base = format!("/4.16.2/{}", sc.hash);
    assert_eq!(json_request(&s, "PUT", &format!("{base}/schema"), Some(&sc.b64), &[]).0, 200);
    let find = r#"{"modelName":"User","action":"findMany","query":{"arguments":{},"selection":{"$scalars":true}}}"#;
    let (status, body) = json_request(&s, "POST", &format!("{base}/graphql"), Some(find), &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["findManyUser"].is_array(), "{body}");
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&record).expect("record")).expect("json");
    assert_eq!(rec["protocol"], "json");
}

#[test]
fn engine_faults_reach_clients_as_clear_errors() {
    // The double again (a real engine cannot be made to fail on demand): a database it cannot reach.
    let p = project("4.16.2", &postgres_url(), "");
    let (wrapper, record) = double(&p);
    let s = Serving::start(&p, &[("PRISMA_QUERY_ENGINE_BINARY", wrapper.as_str()), ("PDP_DOUBLE_FAIL_START", "P1001")]);
    let sc = inline(&schema("postgresql", "", "User"));
    let base = format!("/4.16.2/{}", sc.hash);
    assert_eq!(json_request(&s, "PUT", &format!("{base}/schema"), Some(&sc.b64), &[]).0, 200);
    let (_, body) = json_request(&s, "POST", &format!("{base}/graphql"), Some(FIND_GQL), &[]);
    let known = &body["EngineNotStarted"]["reason"]["KnownEngineStartupError"];
    assert_eq!(known["error_code"], "P1001", "{body}");
    assert!(known["msg"].as_str().unwrap_or("").contains("Can't reach database server"), "{body}");
    drop(s);

    // A slow start is waited for (clients retry only ~0.5 s); then the engine is killed under an open
    // transaction: the transaction gets a clear P2028 at once, the next plain query reaches the restarted engine.
    let s = Serving::start(
        &p,
        &[
            ("PRISMA_QUERY_ENGINE_BINARY", wrapper.as_str()),
            ("PDP_DOUBLE_START_DELAY_MS", "1500"),
            ("PDP_DOUBLE_RECORD", &record.display().to_string()),
        ],
    );
    assert_eq!(json_request(&s, "PUT", &format!("{base}/schema"), Some(&sc.b64), &[]).0, 200);
    let started = Instant::now();
    let (status, body) = json_request(&s, "POST", &format!("{base}/graphql"), Some(FIND_GQL), &[]);
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    let (_, tx) = json_request(
        &s,
        "POST",
        &format!("{base}/transaction/start"),
        Some(r#"{"max_wait":2000,"timeout":20000}"#),
        &[],
    );
    let endpoint = tx["data-proxy"]["endpoint"].as_str().expect("endpoint").to_owned();
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&record).expect("record")).expect("json");
    let pid = rec["pid"].as_u64().expect("pid").to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().expect("kill").success());
    // Once pdp has seen its engine die (its restart counter moved), the transaction's next request gets
    // the transaction error at once: the restarted engine (1.5 s to start) is not waited for.
    poll(Duration::from_secs(10), "pdp to see the engine die", || {
        s.metrics(KEY).contains("pdp_child_restarts_total{kind=\"engine\"").then_some(())
    });
    let asked = Instant::now();
    let (status, body) = json_request(&s, "POST", &format!("{endpoint}/graphql"), Some(FIND_GQL), &[]);
    assert!(asked.elapsed() < Duration::from_secs(1), "answered without waiting for the restart");
    assert_eq!((status, body["error_code"].as_str()), (409, Some("P2028")), "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("stopped"), "{body}");
    let (status, body) = json_request(&s, "POST", &format!("{base}/graphql"), Some(FIND_GQL), &[]);
    assert_eq!(status, 200, "{body}");
}

/// A PostgreSQL database of its own for one test.
pub(crate) fn fresh_database(name: &str) -> String {
    let admin = postgres_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
    let psql = |sql: &str| {
        Command::new("psql").arg(format!("{base}/postgres")).args(["-qc", sql]).output().expect("psql runs")
    };
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    let out = psql(&format!("CREATE DATABASE {name}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = format!("{base}/{name}");
    let ddl = "CREATE TABLE \"User\" (id SERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT); \
               CREATE TABLE \"Post\" (id SERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT);";
    let out = Command::new("psql").arg(&url).args(["-qc", ddl]).output().expect("psql");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    url
}

#[test]
fn prisma_6_json_protocol_through_the_wasm_engine_on_postgres() {
    let url = fresh_database("pdp_dp1_wasm");
    let p = project("6.19.3", &url, "engine = \"wasm\"\nchildren = 2\n");
    // [serve.limits] is the file's last table: this line lands in it.
    let toml = std::fs::read_to_string(p.path("pdp.toml")).expect("pdp.toml");
    p.write("pdp.toml", &format!("{toml}max-response-size = \"8KiB\"\n"));
    let s = Serving::start(&p, &[]);
    let users = inline(&schema("postgresql", "", "User"));
    let posts = inline(&schema("postgresql", "", "Post"));
    assert_eq!(json_request(&s, "POST", &format!("/6.19.3/{}/graphql", users.hash), Some("{}"), &[]).0, 404);
    for sc in [&users, &posts] {
        assert_eq!(json_request(&s, "PUT", &format!("/6.19.3/{}/schema", sc.hash), Some(&sc.b64), &[]).0, 200);
    }
    let create = |model: &str, email: &str| {
        format!(
            r#"{{"modelName":"{model}","action":"createOne","query":{{"arguments":{{"data":{{"email":"{email}"}}}},"selection":{{"$scalars":true}}}}}}"#
        )
    };
    // Two schemas side by side, each on its own engine; cold start includes provisioning.
    let started = Instant::now();
    let (status, body) =
        json_request(&s, "POST", &format!("/6.19.3/{}/graphql", users.hash), Some(&create("User", "u@x.io")), &[]);
    assert_eq!(status, 200, "{body}\n{}", s.log());
    eprintln!("cold start (first query of a new schema, WASM engine): {:?}", started.elapsed());
    assert_eq!(body["data"]["createOneUser"]["email"], "u@x.io", "{body}");
    let (status, body) =
        json_request(&s, "POST", &format!("/6.19.3/{}/graphql", posts.hash), Some(&create("Post", "p@x.io")), &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["createOnePost"]["email"], "p@x.io", "{body}");
    // `/ready` lists both engines' pools for operators, child by child; they do not decide readiness (they
    // start on first use).
    let ready = s.all_children_ready();
    let listed: Vec<(String, u64)> = ready["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .map(|e| (e["engine"].as_str().unwrap_or("").to_owned(), e["slot"].as_u64().unwrap_or(99)))
        .collect();
    let mut expected: Vec<(String, u64)> =
        [&users, &posts].iter().flat_map(|sc| (0..2).map(|slot| (format!("wasm/{}", &sc.hash[..12]), slot))).collect();
    expected.sort();
    assert_eq!(listed, expected, "{ready}");
    // The engine's user-facing error passes through unchanged: P2002.
    let (_, body) =
        json_request(&s, "POST", &format!("/6.19.3/{}/graphql", users.hash), Some(&create("User", "u@x.io")), &[]);
    assert_eq!(body["errors"][0]["user_facing_error"]["error_code"], "P2002", "{body}");
    // Raw query, then an interactive transaction rolled back.
    let raw = r#"{"modelName":null,"action":"queryRaw","query":{"arguments":{"query":"SELECT count(*)::int AS n FROM \"User\"","parameters":"[]"},"selection":{}}}"#;
    let (status, body) = json_request(&s, "POST", &format!("/6.19.3/{}/graphql", users.hash), Some(raw), &[]);
    assert_eq!(status, 200, "{body}");
    // A result over `max-response-size` is refused whole, as a P6009 the client raises (engines have no
    // limit of their own).
    let big = r#"{"modelName":null,"action":"queryRaw","query":{"arguments":{"query":"SELECT repeat('x', 20000) AS big","parameters":"[]"},"selection":{}}}"#;
    let (status, body) = json_request(&s, "POST", &format!("/6.19.3/{}/graphql", users.hash), Some(big), &[]);
    assert_eq!((status, body["error_code"].as_str()), (422, Some("P6009")), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("max-response-size")), "{body}");
    let (status, tx) = json_request(
        &s,
        "POST",
        &format!("/6.19.3/{}/transaction/start", users.hash),
        Some(r#"{"max_wait":2000,"timeout":5000}"#),
        &[],
    );
    assert_eq!(status, 200, "{tx}");
    let endpoint = tx["data-proxy"]["endpoint"].as_str().expect("endpoint").to_owned();
    let id = tx["id"].as_str().expect("id").to_owned();
    let (status, body) = json_request(
        &s,
        "POST",
        &format!("{endpoint}/graphql"),
        Some(&create("User", "tx@x.io")),
        &[("X-transaction-id", &id)],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_request(&s, "POST", &format!("{endpoint}/rollback"), None, &[]).0, 200);
    let count = r#"{"modelName":"User","action":"aggregate","query":{"arguments":{},"selection":{"_count":{"arguments":{},"selection":{"_all":true}}}}}"#;
    let (_, body) = json_request(&s, "POST", &format!("/6.19.3/{}/graphql", users.hash), Some(count), &[]);
    assert_eq!(body["data"]["aggregateUser"]["_count"]["_all"], 1, "{body}");
    // Telemetry: a traceparent and a capture header come back as `extensions`.
    let (_, body) = json_request(
        &s,
        "POST",
        &format!("/6.19.3/{}/graphql", users.hash),
        Some(count),
        &[
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("X-capture-telemetry", "tracing"),
        ],
    );
    assert!(body["extensions"]["traces"].as_array().is_some_and(|t| !t.is_empty()), "{body}");
    // A schema for another database is refused at upload, with a P1012 the client raises.
    let mysql = inline(&schema("mysql", "", "User"));
    let (_, body) = json_request(&s, "PUT", &format!("/6.19.3/{}/schema", mysql.hash), Some(&mysql.b64), &[]);
    assert_eq!(body["EngineNotStarted"]["reason"]["KnownEngineStartupError"]["error_code"], "P1012", "{body}");
}

/// The client script: the operations a user runs, each outcome printed as one JSON line.
const NODE_CLIENT: &str = r#"
const { PrismaClient } = require("./generated");
const out = (k, v) => console.log(JSON.stringify({ [k]: v }));
const code = (e) => e.code ?? e.errorCode ?? e.name;
(async () => {
  const prisma = new PrismaClient({ datasourceUrl: process.env.PDP_URL });
  out("create", (await prisma.user.create({ data: { email: "n@x.io", name: "Node" } })).email);
  try { await prisma.user.create({ data: { email: "n@x.io" } }); out("dup", "none"); } catch (e) { out("dup", code(e)); }
  const [a, b] = await prisma.$transaction([prisma.user.count(), prisma.user.findMany()]);
  out("batch", [a, b.length]);
  const inTx = await prisma.$transaction(async (tx) => {
    await tx.user.create({ data: { email: "itx@x.io" } });
    return tx.user.count();
  });
  out("itx", inTx);
  try {
    await prisma.$transaction(async (tx) => { await tx.user.create({ data: { email: "gone@x.io" } }); throw new Error("undo"); });
  } catch (e) { out("undo", e.message); }
  out("raw", (await prisma.$queryRaw`SELECT count(*)::int AS n FROM "User"`)[0].n);
  const unique = await Promise.all([1, 2, 3].map((i) => prisma.user.findUnique({ where: { email: "n@x.io" } })));
  out("findUnique", unique.map((u) => u.email));
  const wrong = new PrismaClient({ datasourceUrl: process.env.PDP_URL.replace(/api_key=[^&]*/, "api_key=wrong") });
  try { await wrong.user.count(); out("wrongKey", "none"); } catch (e) { out("wrongKey", code(e)); }
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// A real 6.19.3 Node client of the `User` schema in `p`, generated with --no-engine (offline: the engine
/// variables point at any file), its packages from the WASM engine's provisioned set (the same pinned
/// @prisma/client). The first query of any schema provisions those packages in the tool cache.
pub(crate) fn node_client(p: &Project, s: &Serving) {
    let warm = inline(&schema("postgresql", "", "User"));
    assert_eq!(json_request(s, "PUT", &format!("/6.19.3/{}/schema", warm.hash), Some(&warm.b64), &[]).0, 200);
    let count = r#"{"modelName":"User","action":"aggregate","query":{"arguments":{},"selection":{"_count":{"arguments":{},"selection":{"_all":true}}}}}"#;
    let (status, body) = json_request(s, "POST", &format!("/6.19.3/{}/graphql", warm.hash), Some(count), &[]);
    assert_eq!(status, 200, "{body}");
    generate_node_client(p, "");
}

/// The schema of the 6.19.3 Node client of the tests, as its client uploads it: base64 text and hash.
pub(crate) fn node_client_schema() -> (String, String) {
    let sc = inline(&schema("postgresql", "", "User"));
    (sc.b64, sc.hash)
}

/// Generates the 6.19.3 Node client of the `User` schema plus `models` in `p` (`generated/`), once a WASM
/// engine has provisioned its packages in the tool cache.
pub(crate) fn generate_node_client(p: &Project, models: &str) {
    let modules = tool_cache().join("tools/wasm-query-engine@6.19.3/node_modules");
    std::os::unix::fs::symlink(&modules, p.path("node_modules")).expect("symlink");
    p.write(
        "prisma/schema.prisma",
        &format!(
            "{}{models}",
            schema("postgresql", "", "User").replace("previewFeatures = [\"deno\"]", "output = \"../generated\"")
        ),
    );
    let prisma = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node/node_modules/.bin/prisma");
    // --no-engine still wants the engine variables to name a file: any file does.
    p.write(".no-engine", "");
    let any_file = p.path(".no-engine");
    let out = Command::new(&prisma)
        .args(["generate", "--no-engine", "--schema", "prisma/schema.prisma"])
        .current_dir(p.root())
        .env("PRISMA_SCHEMA_ENGINE_BINARY", &any_file)
        .env("PRISMA_QUERY_ENGINE_LIBRARY", &any_file)
        .env("PRISMA_HIDE_UPDATE_MESSAGE", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("prisma runs");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Runs the Node script `file` of `p` against `s`; its JSON output lines merged into one object.
fn run_node(p: &Project, s: &Serving, file: &str) -> Value {
    let out = Command::new("node")
        .arg(file)
        .current_dir(p.root())
        .env("PDP_URL", format!("prisma://localhost:{}/?api_key={KEY}", s.port))
        .env("NODE_EXTRA_CA_CERTS", &s.ca)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}\n{}", String::from_utf8_lossy(&out.stderr), s.log());
    stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).fold(json!({}), |mut acc, v| {
        if let (Some(a), Some(o)) = (acc.as_object_mut(), v.as_object()) {
            a.extend(o.clone());
        }
        acc
    })
}

#[test]
fn prisma_6_node_client_through_pdp_and_the_wasm_engine() {
    let url = fresh_database("pdp_dp1_node");
    let p = project("6.19.3", &url, "engine = \"wasm\"\n");
    let s = Serving::start(&p, &[]);
    node_client(&p, &s);
    p.write("client.cjs", NODE_CLIENT);
    assert_eq!(
        run_node(&p, &s, "client.cjs"),
        json!({
            "create": "n@x.io", "dup": "P2002", "batch": [1, 1], "itx": 2, "undo": "undo", "raw": 2,
            "findUnique": ["n@x.io", "n@x.io", "n@x.io"], "wrongKey": "P5007"
        }),
        "{}",
        s.log()
    );
}

#[test]
fn the_wasm_engine_listens_only_on_a_private_unix_socket() {
    let url = fresh_database("pdp_dp1_private");
    let p = project("6.19.3", &url, "engine = \"wasm\"\nchildren = 2\n");
    let s = Serving::start(&p, &[]);
    let sc = inline(&schema("postgresql", "", "User"));
    assert_eq!(json_request(&s, "PUT", &format!("/6.19.3/{}/schema", sc.hash), Some(&sc.b64), &[]).0, 200);
    let count = r#"{"modelName":"User","action":"aggregate","query":{"arguments":{},"selection":{"_count":{"arguments":{},"selection":{"_all":true}}}}}"#;
    let (status, body) = json_request(&s, "POST", &format!("/6.19.3/{}/graphql", sc.hash), Some(count), &[]);
    assert_eq!(status, 200, "{body}");
    s.all_children_ready();
    let sockets = serve::assert_children_private(s.pid(), &|_| Some("/status"));
    assert_eq!(sockets.len(), 2, "one socket per engine of the pool: {sockets:?}");
}

/// A transaction that waits, mid-way, for the test to kill its engine, then goes on.
const NODE_TX_OWNER_DIES: &str = r#"
const fs = require("fs");
const { PrismaClient } = require("./generated");
const out = (k, v) => console.log(JSON.stringify({ [k]: v }));
(async () => {
  const prisma = new PrismaClient({ datasourceUrl: process.env.PDP_URL });
  try {
    await prisma.$transaction(async (tx) => {
      await tx.user.create({ data: { email: "first@died.test" } });
      fs.writeFileSync("tx-open", "yes");
      while (!fs.existsSync("go")) await new Promise((r) => setTimeout(r, 20));
      const asked = Date.now();
      try {
        await tx.user.create({ data: { email: "second@died.test" } });
      } catch (e) {
        out("inner", { code: e.code, class: e.constructor.name, message: e.message, ms: Date.now() - asked });
        throw e;
      }
    }, { timeout: 60000, maxWait: 5000 });
    out("outer", "committed");
  } catch (e) {
    out("outer", e.code);
  }
  out("left", await prisma.user.count({ where: { email: { endsWith: "@died.test" } } }));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn prisma_6_node_client_gets_p2028_at_once_when_its_transactions_engine_dies() {
    let url = fresh_database("pdp_dp1_owner_dies");
    let p = project("6.19.3", &url, "engine = \"wasm\"\n");
    let s = Serving::start(&p, &[]);
    node_client(&p, &s);
    p.write("tx.cjs", NODE_TX_OWNER_DIES);
    let got = std::thread::scope(|scope| {
        let client = scope.spawn(|| run_node(&p, &s, "tx.cjs"));
        poll(Duration::from_secs(120), "the transaction to open", || p.path("tx-open").exists().then_some(()));
        let engines = children(s.pid(), "pdp-wasm-engine.mjs");
        assert!(!engines.is_empty(), "no WASM engine child:\n{}", s.log());
        for pid in engines {
            serve::signal(pid, "KILL");
        }
        poll(Duration::from_secs(10), "pdp to see the engine die", || {
            s.metrics(KEY).contains("pdp_child_restarts_total{kind=\"engine\"").then_some(())
        });
        p.write("go", "");
        client.join().expect("client thread")
    });
    assert_eq!(got["inner"]["code"], "P2028", "{got}\n{}", s.log());
    assert_eq!(got["inner"]["class"], "PrismaClientKnownRequestError", "{got}");
    // pdp's own answer (the restarted engine never sees the request).
    assert!(got["inner"]["message"].as_str().is_some_and(|m| m.contains("stopped (it is being restarted)")), "{got}");
    assert!(got["inner"]["ms"].as_u64().is_some_and(|ms| ms < 1000), "answered at once: {got}");
    assert_eq!(got["outer"], "P2028", "{got}");
    assert_eq!(got["left"], 0, "the database rolled the transaction back: {got}");
}

/// The Deno script: a Prisma 4.16.2 client from `pdp build-client`, the operations a Windmill script runs.
const DENO_CLIENT: &str = r#"
import { PrismaClient } from "./dist/client/0.1.0/edge.ts";
const out = (k: string, v: unknown) => console.log(JSON.stringify({ [k]: v }));
const prisma = new PrismaClient({ datasources: { db: { url: Deno.env.get("PDP_URL")! } } });
out("create", (await prisma.user.create({ data: { email: "d@x.io", name: "Deno" } })).email);
try { await prisma.user.create({ data: { email: "d@x.io" } }); out("dup", "none"); } catch (e) { out("dup", (e as { code?: string }).code); }
const [all, count] = await prisma.$transaction([prisma.user.findMany(), prisma.user.count()]);
out("batch", [all.length, count]);
out("itx", await prisma.$transaction(async (tx) => (await tx.user.findMany()).length));
out("raw", await prisma.$queryRaw`SELECT 1`);
"#;

/// A 4.16.2 project whose schema the double can model, its Deno client built by pdp, run against pdp serve.
fn deno_client_against_the_double(preview: &str, protocol: &str) {
    let p = project("4.16.2", &postgres_url(), "");
    p.write("prisma/schema.prisma", &schema("postgresql", preview, "User"));
    p.write("pdp.toml", &format!("{}\n[client]\nout = \"dist/client\"\nversion = \"0.1.0\"\n", p.read("pdp.toml")));
    let built = p.run_with(p.pdp().env("PDP_CACHE_DIR", tool_cache()).arg("build-client"));
    assert_eq!(built.code, 0, "{}", built.all());
    let (wrapper, record) = double(&p);
    let s = Serving::start(
        &p,
        &[("PRISMA_QUERY_ENGINE_BINARY", wrapper.as_str()), ("PDP_DOUBLE_RECORD", &record.display().to_string())],
    );
    p.write("main.ts", DENO_CLIENT);
    let url = format!("prisma://localhost:{}/?api_key={KEY}", s.port);
    let (ok, stdout) = s.deno("main.ts", KEY, &[("PDP_URL", &url)]);
    assert!(ok, "{stdout}\n{}", s.log());
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines[0], json!({"create": "d@x.io"}), "{stdout}");
    assert_eq!(lines[1], json!({"dup": "P2002"}), "{stdout}");
    assert_eq!(lines[2], json!({"batch": [1, 1]}), "{stdout}");
    assert_eq!(lines[3], json!({"itx": 1}), "{stdout}");
    assert!(lines[4].get("raw").is_some(), "{stdout}");
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&record).expect("record")).expect("json");
    assert_eq!(rec["protocol"], protocol, "the engine protocol follows the uploaded schema");
}

#[test]
fn prisma_4_16_deno_client_graphql_through_the_engine_double() {
    deno_client_against_the_double("", "graphql");
}

#[test]
fn prisma_4_16_deno_client_json_protocol_through_the_engine_double() {
    deno_client_against_the_double(", \"jsonProtocol\"", "json");
}

/// A 4.x–6.x project on native engines with nothing in the engines cache: `pdp serve` says so at start
/// with the command that fixes it, `/ready` is 503 and names it, and a client's first request gets the
/// engine's start error naming the same fix. (No native engine exists here; the point is its absence.)
#[test]
fn a_native_engine_missing_from_the_cache_is_said_at_start_in_ready_and_to_the_client() {
    let p = project("5.22.0", &postgres_url(), "");
    let s = Serving::start(&p, &[("PDP_CACHE_DIR", p.path("empty-cache").to_str().expect("utf-8"))]);
    s.log_when("the missing engine's warning", |log| {
        log.contains("the project's clients cannot be served yet") && log.contains("`pdp engines fetch`")
    });
    let (status, body) = json_request(&s, "GET", "/ready", None, &[]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["project_engine"]["status"], "missing", "{body}");
    assert!(body["project_engine"]["error"].as_str().unwrap_or("").contains("pdp engines fetch"), "{body}");
    let sc = inline(&schema("postgresql", "", "User"));
    let base = format!("/5.22.0/{}", sc.hash);
    assert_eq!(json_request(&s, "PUT", &format!("{base}/schema"), Some(&sc.b64), &[]).0, 200);
    let (_, text) = request(&s, "POST", &format!("{base}/graphql"), Some(FIND_GQL), &[]);
    assert!(text.contains("pdp engines fetch"), "the client's error names the fix: {text}");
}

/// The 4.16.2 Deno client against the real GraphQL-protocol engine: what a Windmill script does, plus the
/// protocol's corners (a findUnique batch the client sends with `transaction: false`, a nested write, an
/// interactive transaction rolled back and one that expires, raw queries both ways).
const DENO_CLIENT_GRAPHQL: &str = r#"
import { PrismaClient } from "./dist/client/0.1.0/edge.ts";
const out = (k: string, v: unknown) => console.log(JSON.stringify({ [k]: v }));
const code = (e: unknown) => (e as { code?: string }).code ?? String(e);
const prisma = new PrismaClient({ datasources: { db: { url: Deno.env.get("PDP_URL")! } } });
const ada = await prisma.user.create({ data: { email: "ada@x.io", name: "Ada", posts: { create: [{ title: "a" }, { title: "b" }] } }, include: { posts: true } });
out("create", [ada.email, ada.posts.length]);
try { await prisma.user.create({ data: { email: "ada@x.io" } }); out("dup", "none"); } catch (e) { out("dup", code(e)); }
const found = await Promise.all([prisma.user.findUnique({ where: { email: "ada@x.io" } }), prisma.user.findUnique({ where: { id: ada.id } }), prisma.user.findUnique({ where: { email: "nobody@x.io" } })]);
out("findUnique", found.map((u) => u?.name ?? null));
const [users, posts] = await prisma.$transaction([prisma.user.count(), prisma.post.updateMany({ data: { published: true } })]);
out("batch", [users, posts.count]);
out("itx", await prisma.$transaction(async (tx) => { await tx.post.create({ data: { title: "c", authorId: ada.id } }); return tx.post.count(); }));
try { await prisma.$transaction(async (tx) => { await tx.post.create({ data: { title: "d", authorId: ada.id } }); throw new Error("undo"); }); } catch (e) { out("undo", (e as Error).message); }
try {
  await prisma.$transaction(async (tx) => { await tx.post.create({ data: { title: "e", authorId: ada.id } }); await new Promise((r) => setTimeout(r, 600)); await tx.post.create({ data: { title: "e2", authorId: ada.id } }); }, { timeout: 200 });
  out("expired", "none");
} catch (e) { out("expired", code(e)); }
out("posts", await prisma.post.count());
out("expiredRows", await prisma.post.count({ where: { title: { in: ["e", "e2"] } } }));
out("raw", await prisma.$queryRaw`SELECT count(*)::int AS n FROM "Post" WHERE published`);
out("exec", await prisma.$executeRaw`UPDATE "Post" SET title = upper(title) WHERE title = 'c'`);
out("deleted", (await prisma.post.deleteMany({ where: { title: "C" } })).count);
"#;

#[test]
fn prisma_4_16_deno_client_graphql_through_the_real_wasm_engine() {
    let name = "pdp_dp1_graphql_wasm";
    let admin = postgres_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
    let drop_db = || {
        Command::new("psql")
            .arg(format!("{base}/postgres"))
            .args(["-qc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
            .output()
    };
    drop_db().expect("psql");
    // A project as `pdp init` writes it for 4.16.2 (GraphQL protocol: no jsonProtocol), migrated, built.
    let p = Project::new();
    p.init(&["--prisma", "4.16.2", "--database-url", &format!("{base}/{name}")]);
    let toml = p.read("pdp.toml").replacen("[serve]\n", "[serve]\nengine = \"wasm\"\n", 1);
    p.write("pdp.toml", &toml);
    serve::cached(&p, &["migrate", "deploy"]).expect_code(0);
    serve::cached(&p, &["build-client"]).expect_code(0);
    let key = serve::api_key(&p);
    let s = Serving::start(&p, &[]);
    p.write("main.ts", DENO_CLIENT_GRAPHQL);
    let url = format!("prisma://localhost:{}/?api_key={key}", s.port);
    let (ok, stdout) = s.deno("main.ts", &key, &[("PDP_URL", &url)]);
    assert!(ok, "{stdout}\n{}", s.log());
    let got = stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).fold(json!({}), |mut acc, v| {
        if let (Some(a), Some(o)) = (acc.as_object_mut(), v.as_object()) {
            a.extend(o.clone());
        }
        acc
    });
    assert_eq!(
        got,
        json!({
            "create": ["ada@x.io", 2], "dup": "P2002", "findUnique": ["Ada", "Ada", null], "batch": [1, 2],
            "itx": 3, "undo": "undo", "expired": "P2028", "posts": 3, "expiredRows": 0, "raw": [{"n": 2}], "exec": 1, "deleted": 1
        }),
        "{stdout}\n{}",
        s.log()
    );
    // Accelerate's cache rules for GraphQL: a `query` with a strategy is kept and answered from the cache, a
    // `mutation` with one never is (the schema's hash is the one the client uploaded, from the manifest).
    let manifest: Value = serde_json::from_str(&p.read("dist/client/0.1.0/manifest.json")).expect("manifest");
    let hash = manifest["inline-schema-hash"].as_str().expect("the client's schema hash").to_owned();
    let status_of = |body: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-D", "-", "--cacert"])
            .arg(&s.ca)
            .args([
                "-H",
                &format!("Authorization: Bearer {key}"),
                "-H",
                "cache-control: max-age=60",
                "--data-binary",
                body,
            ])
            .arg(format!("{}/4.16.2/{hash}/graphql", s.url()))
            .output()
            .expect("curl");
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        head.lines()
            .find_map(|l| l.strip_prefix("accelerate-cache-status: "))
            .map(|v| v.trim().to_owned())
            .unwrap_or(head)
    };
    let read = r#"{"query":"query {\n  findManyUser {\n    id\n    email\n  }\n}","variables":{}}"#;
    assert_eq!((status_of(read), status_of(read)), ("miss".to_owned(), "ttl".to_owned()));
    let write =
        r#"{"query":"mutation {\n  createOneUser(data: {email: \"cached@x.io\"}) {\n    id\n  }\n}","variables":{}}"#;
    assert_eq!(status_of(write), "none");
    // Every interactive transaction ended on the database too: the expired one was rolled back by its timer
    // and its connection went back to the pool (nothing is left idle in a transaction).
    let idle_in_tx = || {
        let out = Command::new("psql")
            .arg(format!("{base}/postgres"))
            .args(["-tAc", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND state LIKE 'idle in transaction%'")])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    poll(Duration::from_secs(10), "no connection idle in a transaction", || (idle_in_tx() == "0").then_some(()));
    // The engine pdp started speaks GraphQL: its key says so in /ready.
    let (status, ready) = json_request(&s, "GET", "/ready", None, &[]);
    assert_eq!(status, 200, "{ready}");
    let engines: Vec<&str> =
        ready["engines"].as_array().expect("engines").iter().filter_map(|e| e["engine"].as_str()).collect();
    assert!(
        !engines.is_empty() && engines.iter().all(|e| e.starts_with("wasm/") && e.ends_with("/graphql")),
        "{ready}"
    );
    drop(s);
    let _ = drop_db();
}

/// A pool of two WASM engines shares its key's `connection-limit`: under 16 concurrent clients the database
/// never sees more connections from them than the limit (counted in `pg_stat_activity`), and both engines
/// served.
#[test]
fn a_pool_of_wasm_engines_shares_its_part_of_the_replicas_connection_budget() {
    let name = "pdp_dp1_pool_budget";
    let url = fresh_database(name);
    let p = project("6.19.3", &url, "engine = \"wasm\"\nchildren = 2\n");
    // [serve.limits] is the file's last table: this line lands in it.
    let toml = std::fs::read_to_string(p.path("pdp.toml")).expect("pdp.toml");
    p.write("pdp.toml", &format!("{toml}connection-limit = 3\n"));
    let s = Serving::start(&p, &[]);
    let sc = inline(&schema("postgresql", "", "User"));
    assert_eq!(json_request(&s, "PUT", &format!("/6.19.3/{}/schema", sc.hash), Some(&sc.b64), &[]).0, 200);
    let count = r#"{"modelName":"User","action":"aggregate","query":{"arguments":{},"selection":{"_count":{"arguments":{},"selection":{"_all":true}}}}}"#;
    let path = format!("/6.19.3/{}/graphql", sc.hash);
    assert_eq!(json_request(&s, "POST", &path, Some(count), &[]).0, 200);
    let ready = s.all_children_ready();
    assert_eq!(ready["engines"].as_array().map(Vec::len), Some(2), "{ready}");
    let admin = postgres_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
    let connections = || {
        let out = Command::new("psql")
            .arg(format!("{base}/postgres"))
            .args(["-tAc", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'")])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap_or(0)
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (most, answered) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let mut ok = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if json_request(&s, "POST", &path, Some(count), &[]).0 == 200 {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut most = 0;
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            most = most.max(connections());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (most, workers.into_iter().map(|w| w.join().expect("worker")).sum::<u32>())
    });
    eprintln!("pool of 2 WASM engines, connection-limit 3: at most {most} connections seen, {answered} answers");
    assert!(answered > 50, "the load ran: {answered}");
    assert!((2..=3).contains(&most), "the engines' connections stay within the replica's budget of 3: {most}");
    let (_, ready) = json_request(&s, "GET", "/ready", None, &[]);
    assert!(ready["engines"].as_array().expect("engines").iter().all(|e| e["status"] == "ready"), "{ready}");
}

#[test]
fn schemas_started_on_demand_share_the_replicas_budget_and_a_quiet_pool_makes_room_for_another() {
    let url = fresh_database("pdp_dp1_budget_keys");
    let p = project("6.19.3", &url, "engine = \"wasm\"\nchildren = 1\n");
    // [serve.limits] is the file's last table: these lines land in it.
    let toml = std::fs::read_to_string(p.path("pdp.toml")).expect("pdp.toml");
    // A pool unused for longer than a transaction can live (here 2 s) may be stopped for another key.
    p.write(
        "pdp.toml",
        &format!(
            "{toml}connection-limit = 3\non-demand-connections = 1\ntransaction-max-timeout = \"1s\"\ntransaction-max-wait = \"1s\"\n"
        ),
    );
    let s = Serving::start(&p, &[]);
    let count = |model: &str| {
        format!(
            r#"{{"modelName":"{model}","action":"aggregate","query":{{"arguments":{{}},"selection":{{"_count":{{"arguments":{{}},"selection":{{"_all":true}}}}}}}}}}"#
        )
    };
    let mut answers = Vec::new();
    for model in ["User", "Post", "Tag"] {
        let sc = inline(&schema("postgresql", "", model));
        assert_eq!(json_request(&s, "PUT", &format!("/6.19.3/{}/schema", sc.hash), Some(&sc.b64), &[]).0, 200);
        answers.push(json_request(&s, "POST", &format!("/6.19.3/{}/graphql", sc.hash), Some(&count(model)), &[]));
    }
    // The first two engines started and answered (`User` exists; `Post` is the database's own P2021).
    for (status, body) in &answers[..2] {
        assert_eq!(*status, 200, "{body}");
        assert!(body["data"].is_object() || body.to_string().contains("P2021"), "an engine answered: {body}");
    }
    let (status, body) = &answers[2];
    assert_eq!(*status, 503, "{body}");
    let msg = &body["EngineNotStarted"]["reason"]["EngineStartupError"]["msg"];
    let msg = msg.as_str().unwrap_or_else(|| panic!("an engine startup error: {body}"));
    assert!(msg.contains("connection-limit") && msg.contains("hold 3"), "the budget is named: {msg}");
    let (_, ready) = json_request(&s, "GET", "/ready", None, &[]);
    let mut limits: Vec<_> =
        ready["engines"].as_array().expect("engines").iter().map(|e| e["connection_limit"].as_u64()).collect();
    limits.sort();
    assert_eq!(limits, [Some(1), Some(2)], "the first schema takes all but the on-demand part: {ready}");
    assert_eq!(ready["connections"], serde_json::json!({"budget": 3, "granted": 3}), "{ready}");
    // Once the first schema's engine has been quiet for longer than a transaction lives, it is stopped and
    // the third starts on the part it gave back (the client's own retries of P5014 would get there too).
    let tag = inline(&schema("postgresql", "", "Tag"));
    let path = format!("/6.19.3/{}/graphql", tag.hash);
    poll(Duration::from_secs(30), "the third schema served", || {
        (json_request(&s, "POST", &path, Some(&count("Tag")), &[]).0 == 200).then_some(())
    });
    let (_, ready) = json_request(&s, "GET", "/ready", None, &[]);
    let engines = ready["engines"].as_array().expect("engines");
    assert_eq!(engines.len(), 2, "one engine made room: {ready}");
    let user = inline(&schema("postgresql", "", "User")).hash;
    assert!(
        engines.iter().all(|e| !e["version"].as_str().unwrap_or("").contains(&user[..12])),
        "the least recently used (User's) engine was the one stopped: {ready}"
    );
    assert!(s.log().contains("its connections are needed for"), "{}", s.log());
}
