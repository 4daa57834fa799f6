//! `cargo xtask bench serve-dp1`: the Data Proxy protocol (Prisma 4.x–6.x clients) through `pdp serve`
//! (release build, https, API key, `[serve] engine = "wasm"`) versus straight to the same WASM query engine
//! (pdp's launcher started by hand with the flags pdp passes) on PostgreSQL.
//!
//! Workload: findUnique by a random id, 32 requests in flight from one Node process, 10 s per round, rounds
//! alternating direct / pdp, medians compared. Both sides get the identical JSON-protocol body from the
//! identical load generator (Node's fetch, keep-alive): the 6.19.3 client would add the same client-side
//! cost to both (and batch findUniques through its dataloader, hiding per-request cost), so the raw body
//! measures what pdp adds — TLS, the key check, routing, the forward — and nothing else. Also the cold start:
//! a new schema's first query including its upload and the engine's start (packages already provisioned).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::bail;

use crate::bench::Load;

const ROUNDS: usize = 5;
const USERS: usize = 1000;
const KEY: &str = "bench-dp1-key";

const SCHEMA: &str = "generator client {\n  provider = \"prisma-client-js\"\n}\n\ndatasource db {\n  provider = \"postgresql\"\n  url      = env(\"DATABASE_URL\")\n}\n\nmodel User {\n  id    Int     @id @default(autoincrement())\n  email String  @unique\n  name  String?\n}\n";

const LOAD: &str = r#"
const [url, key, seconds, maxId] = [process.env.URL, process.env.KEY, Number(process.env.SECONDS), Number(process.env.MAX_ID)];
const headers = key ? { authorization: `Bearer ${key}` } : {};
const body = (id) => JSON.stringify({ modelName: "User", action: "findUnique",
  query: { arguments: { where: { id } }, selection: { $scalars: true } } });
const one = async () => {
  const r = await fetch(url, { method: "POST", headers, body: body(1 + Math.floor(Math.random() * maxId)) });
  const j = await r.json();
  if (!j.data?.findUniqueUser) throw new Error(JSON.stringify(j));
};
for (let i = 0; i < 64; i++) await one(); // warm connections and the engine
const lat = [];
const end = performance.now() + seconds * 1000;
await Promise.all(Array.from({ length: 32 }, async () => {
  while (performance.now() < end) { const t = performance.now(); await one(); lat.push(performance.now() - t); }
}));
lat.sort((a, b) => a - b);
console.log(`rps=${(lat.length / seconds).toFixed(1)} p50=${lat[Math.floor(lat.length / 2)].toFixed(3)} p99=${lat[Math.floor(lat.length * 0.99)].toFixed(3)}`);
"#;

const COLD: &str = r#"
import { createHash } from "node:crypto";
const [key, schema] = [process.env.KEY, Buffer.from(process.env.SCHEMA).toString("base64")];
const hash = createHash("sha256").update(schema).digest("hex");
const base = `${process.env.ORIGIN}/6.19.3/${hash}`;
const headers = { authorization: `Bearer ${key}` };
const t = performance.now();
const find = JSON.stringify({ modelName: "User", action: "findUnique", query: { arguments: { where: { id: 1 } }, selection: { $scalars: true } } });
let r = await fetch(`${base}/graphql`, { method: "POST", headers, body: find });
if (r.status !== 404) throw new Error(`expected SchemaMissing, got ${r.status}`);
await r.text();
r = await fetch(`${base}/schema`, { method: "PUT", headers, body: schema });
await r.text();
r = await fetch(`${base}/graphql`, { method: "POST", headers, body: find });
const j = await r.json();
if (!j.data) throw new Error(JSON.stringify(j));
console.log(`cold_ms=${(performance.now() - t).toFixed(1)} hash=${hash}`);
"#;

fn word<'a>(text: &'a str, k: &str) -> &'a str {
    text.split_whitespace().find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('='))).unwrap_or("")
}

fn field(text: &str, k: &str) -> f64 {
    word(text, k).parse().unwrap_or(0.0)
}

/// `cargo xtask bench serve-dp1`.
pub fn serve_dp1(root: &Path) -> anyhow::Result<()> {
    crate::step("build pdp (release)", crate::cargo().args(["build", "--release", "--locked", "-p", "pdp"]))?;
    crate::services::ensure()?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let pdp = target.join("release/pdp");
    let work = std::env::temp_dir().join(format!("pdp-bench-dp1-{}", std::process::id()));
    let cache = target.join("bench-cache");
    let db = format!("pdp_bench_dp1_{}", std::process::id());
    let url = format!("postgresql://postgres@127.0.0.1:5432/{db}");
    std::fs::create_dir_all(work.join("prisma"))?;
    std::fs::write(
        work.join("pdp.toml"),
        "[prisma]\nversion = \"6.19.3\"\n\n[database]\nurl = \"env:DATABASE_URL\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\napi-keys = [\"env:PDP_API_KEY\"]\nengine = \"wasm\"\n",
    )?;
    std::fs::write(work.join(".env"), format!("DATABASE_URL={url}\nPDP_API_KEY={KEY}\n"))?;
    std::fs::write(work.join("load.mjs"), LOAD)?;
    std::fs::write(work.join("cold.mjs"), COLD)?;
    let admin = "postgresql://postgres@127.0.0.1:5432/postgres";
    crate::step(
        "create the database",
        Command::new("psql").args([admin, "-q", "-c", &format!("CREATE DATABASE \"{db}\"")]),
    )?;
    let seed = format!(
        "CREATE TABLE \"User\" (id SERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT); \
         INSERT INTO \"User\" (email, name) SELECT 'u' || i || '@bench.test', 'user ' || i FROM generate_series(1, {USERS}) i"
    );
    crate::step("seed users", Command::new("psql").args([url.as_str(), "-q", "-c", &seed]))?;

    let mut serve = Command::new(&pdp)
        .args(["serve"])
        .current_dir(&work)
        .env("PDP_CACHE_DIR", &cache)
        .env("PDP_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()?;
    let port = crate::bench::read_listen_port(&mut serve, "https")?;
    let ca = work.join(".pdp/tls/ca.pem");
    let node = |script: &str, env: &[(&str, String)]| -> anyhow::Result<String> {
        let mut c = Command::new("node");
        c.arg(work.join(script)).current_dir(&work).env("NODE_EXTRA_CA_CERTS", &ca);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("{script} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(text)
    };

    // Cold starts: the first provisions the WASM engine's packages (reported apart); then new schemas.
    let mut colds = Vec::new();
    let origin = format!("https://localhost:{port}");
    for i in 0..4 {
        let schema = format!("{SCHEMA}// variant {i}\n");
        let out = node("cold.mjs", &[("ORIGIN", origin.clone()), ("KEY", KEY.into()), ("SCHEMA", schema)])?;
        colds.push(field(&out, "cold_ms"));
    }
    let out = node("cold.mjs", &[("ORIGIN", origin.clone()), ("KEY", KEY.into()), ("SCHEMA", SCHEMA.into())])?;
    let hash = word(&out, "hash").to_owned();

    // The same engine started by hand, as pdp starts it.
    let tool = cache.join("tools/wasm-query-engine@6.19.3");
    std::fs::write(work.join("prisma/schema.prisma"), SCHEMA)?;
    let mut direct = Command::new("node")
        .arg(tool.join("pdp-wasm-engine.mjs"))
        .args(["--datamodel-path"])
        .arg(work.join("prisma/schema.prisma"))
        .args([
            "--port",
            "0",
            "--engine-protocol",
            "json",
            "--enable-raw-queries",
            "--enable-metrics",
            "--enable-telemetry-in-response",
        ])
        .current_dir(&tool)
        .env("PDP_DATABASE_URL", format!("{url}?pool_timeout=10"))
        .env("PDP_QE_MODULES_DIR", &tool)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let direct_port = crate::bench::port_from(direct.stdout.take(), "the query engine", |l| {
        l.contains("Started query engine http server").then(|| crate::bench::number_after(l, "\"port\":\"")).flatten()
    })?;

    // The same proxy without TLS (a second pdp serve, `tls = "off"`), to split pdp's overhead into what
    // TLS costs (client and server side) and what the proxying itself costs.
    std::fs::write(
        work.join("pdp-plain.toml"),
        "[prisma]\nversion = \"6.19.3\"\n\n[database]\nurl = \"env:DATABASE_URL\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\ntls = \"off\"\napi-keys = [\"env:PDP_API_KEY\"]\nengine = \"wasm\"\n",
    )?;
    let mut plain = Command::new(&pdp)
        .args(["serve", "--config", "pdp-plain.toml"])
        .current_dir(&work)
        .env("PDP_CACHE_DIR", &cache)
        .env("PDP_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()?;
    let plain_port = crate::bench::read_listen_port(&mut plain, "http")?;
    // It finds the schema the first one stored under the project's state dir: no upload needed.

    let run = |u: String, key: &str| -> anyhow::Result<Load> {
        let out = node(
            "load.mjs",
            &[("URL", u), ("KEY", key.into()), ("SECONDS", "10".into()), ("MAX_ID", USERS.to_string())],
        )?;
        Ok(Load { rps: field(&out, "rps"), p50: field(&out, "p50"), p99: field(&out, "p99") })
    };
    // The engine (WASM, JIT-compiled by Node) gets faster for a while: warm both paths before measuring.
    let _ = run(format!("http://127.0.0.1:{direct_port}/"), "")?;
    let _ = run(format!("https://localhost:{port}/6.19.3/{hash}/graphql"), KEY)?;
    let _ = run(format!("http://127.0.0.1:{plain_port}/6.19.3/{hash}/graphql"), KEY)?;
    let (mut d, mut p, mut h) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_ticks, mut served) = (0u64, 0.0f64);
    for round in 1..=ROUNDS {
        let a = run(format!("http://127.0.0.1:{direct_port}/"), "")?;
        eprintln!("round {round} direct:      {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", a.rps, a.p50, a.p99);
        let before = cpu(serve.id());
        let b = run(format!("https://localhost:{port}/6.19.3/{hash}/graphql"), KEY)?;
        cpu_ticks += cpu(serve.id()).saturating_sub(before);
        served += b.rps * 10.0;
        eprintln!("round {round} pdp:         {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", b.rps, b.p50, b.p99);
        let c = run(format!("http://127.0.0.1:{plain_port}/6.19.3/{hash}/graphql"), KEY)?;
        eprintln!("round {round} pdp tls off: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", c.rps, c.p50, c.p99);
        d.push(a);
        p.push(b);
        h.push(c);
    }
    let _ = Command::new("kill").args(["-TERM", &plain.id().to_string()]).status();
    let _ = plain.wait();
    let _ = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    let _ = serve.wait();
    drop(direct.stdin.take());
    let _ = direct.kill();
    let _ = direct.wait();
    let _ = Command::new("psql")
        .args([admin, "-q", "-c", &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")])
        .status();
    let _ = std::fs::remove_dir_all(&work);

    crate::bench::print_proxy_comparison(
        "DP1 findUnique by id, 32 concurrent, one Node process, WASM engine on PostgreSQL, 10 s rounds after a warm-up",
        "direct to the engine (http):",
        &d,
        &p,
    );
    crate::bench::print_proxy_comparison(
        "The same through a pdp serve with `tls = \"off\"` (http + key), to separate TLS from proxying",
        "direct to the engine (http):",
        &d,
        &h,
    );
    // utime + stime are in clock ticks (100 per second on Linux).
    println!(
        "  pdp serve's own CPU (https rounds): {:.0} µs per request",
        cpu_ticks as f64 * 10_000.0 / served.max(1.0)
    );
    let rest = &colds[1..];
    println!(
        "  cold start (SchemaMissing, upload, engine start, first query): first ever {:.0} ms (may include npm provisioning), then {} ms",
        colds[0],
        rest.iter().map(|c| format!("{c:.0}")).collect::<Vec<_>>().join(" / ")
    );
    Ok(())
}

/// A process's utime + stime, in clock ticks.
fn cpu(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // After the command name: state is field 0, utime 11, stime 12.
    n(11) + n(12)
}
