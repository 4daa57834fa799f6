//! `cargo xtask bench serve-dp1`: the Data Proxy protocol (Prisma 4.x–6.x clients) through `pdp serve`
//! (release build, https, API key, `[serve] engine = "wasm"`) versus straight to the same WASM query engine
//! on PostgreSQL (the very process pdp started, on the bench-only loopback port `PDP_BENCH_CHILD_TCP`
//! opens beside its private socket, because wrk cannot speak Unix sockets), and versus nginx doing pdp's
//! job in front of the same engine: one worker, TLS with pdp's own certificate, the key checked, keep-alive
//! to the engine's Unix socket, an access log buffered like pdp's. A second pdp with `tls = "off"` (and its
//! own engine, reached the same two ways) separates what TLS costs from what proxying costs.
//!
//! Workload: findUnique by a random id, 32 connections with a request each in flight, 10 s per round,
//! rounds alternating direct / pdp https / nginx https / direct / pdp tls-off, medians compared, with the
//! spread of the rounds. The load comes from
//! wrk (C, one thread, keep-alive, a Lua script building the JSON-protocol body) so that the measuring tool
//! takes little of this 2-core machine: the single-threaded engine is what a Data Proxy deployment waits
//! on, and the question is what pdp adds in front of it: TLS, the key check, routing, the forward.
//! Every round also accounts CPU per request for each process on the path (load generator, pdp, engine,
//! PostgreSQL).
//!
//! Then the same direct/https comparison with a Node fetch client, as a Prisma client process would load
//! it, sharing the two cores with everything else: there pdp's CPU comes straight out of the engine's and
//! the client's, which is reported beside the target, not instead of it.
//! The raw body is used (not the 6.19.3 client) because the client adds the same cost to both sides and
//! batches findUniques through its dataloader, hiding per-request cost.
//! Also the cold start: a new schema's first query including its upload and the engine's start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::bench::{Load, child_with, cpu, listening_port, median_f64 as median};

const ROUNDS: usize = 5;
const NODE_ROUNDS: usize = 3;
const USERS: usize = 1000;
const KEY: &str = "bench-dp1-key";

const SCHEMA: &str = "generator client {\n  provider = \"prisma-client-js\"\n}\n\ndatasource db {\n  provider = \"postgresql\"\n  url      = env(\"DATABASE_URL\")\n}\n\nmodel User {\n  id    Int     @id @default(autoincrement())\n  email String  @unique\n  name  String?\n}\n";

/// The wrk script: a random id per request, the key from `KEY`, every response checked, and the summary
/// plus wrk's own CPU (from /proc, in clock ticks) printed as `k=v` words.
const LOAD_LUA: &str = r#"
local key = os.getenv("KEY")
local max_id = tonumber(os.getenv("MAX_ID"))
wrk.method = "POST"
if key ~= nil and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
request = function()
  local body = '{"modelName":"User","action":"findUnique","query":{"arguments":{"where":{"id":' ..
    math.random(1, max_id) .. '}},"selection":{"$scalars":true}}}'
  return wrk.format(nil, nil, nil, body)
end
response = function(status, headers, body)
  if status ~= 200 or not body:find("findUniqueUser", 1, true) then
    io.stderr:write("unexpected response " .. status .. ": " .. body .. "\n")
    os.exit(1)
  end
end
done = function(summary, latency, requests)
  local stat = io.open("/proc/self/stat"):read("*a")
  local fields = {}
  for f in stat:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = f end
  local e = summary.errors
  io.write(string.format("rps=%.1f p50=%.3f p99=%.3f n=%d errors=%d cpu_ticks=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout, fields[12] + fields[13]))
end
"#;

/// The Node fetch client (one process, 32 requests in flight, keep-alive), printing the same words.
const LOAD_NODE: &str = r#"
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
const cpu0 = process.cpuUsage();
const end = performance.now() + seconds * 1000;
await Promise.all(Array.from({ length: 32 }, async () => {
  while (performance.now() < end) { const t = performance.now(); await one(); lat.push(performance.now() - t); }
}));
const cpu = process.cpuUsage(cpu0);
lat.sort((a, b) => a - b);
console.log(`rps=${(lat.length / seconds).toFixed(1)} p50=${lat[Math.floor(lat.length / 2)].toFixed(3)} p99=${lat[Math.floor(lat.length * 0.99)].toFixed(3)} n=${lat.length} cpu_us=${cpu.user + cpu.system}`);
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
    crate::ensure_package("wrk", "wrk", "the DP1 benchmark loads with it")?;
    crate::ensure_package("nginx", "nginx-light", "the DP1 benchmark compares pdp with it")?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let pdp = target.join("release/pdp");
    let work = std::env::temp_dir().join(format!("pdp-bench-dp1-{}", std::process::id()));
    let cache = target.join("bench-cache");
    let db = format!("pdp_bench_dp1_{}", std::process::id());
    let url = format!("postgresql://postgres@127.0.0.1:5432/{db}");
    std::fs::create_dir_all(work.join("prisma"))?;
    // One engine per schema, so that "direct" and "through pdp" load the very same process; the pool
    // paths below compare `children = 2` with `children = 1`.
    let toml = "[prisma]\nversion = \"6.19.3\"\n\n[database]\nurl = \"env:DATABASE_URL\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\napi-keys = [\"env:PDP_API_KEY\"]\nengine = \"wasm\"\nchildren = 1\n\n[serve.limits]\nconnection-limit = 12\non-demand-connections = 4\n";
    std::fs::write(work.join("pdp.toml"), toml)?;
    std::fs::write(work.join("pdp-pool2.toml"), toml.replacen("children = 1", "children = 2", 1))?;
    // The same proxy without TLS (a second pdp serve), to split pdp's overhead into what TLS costs (client
    // and server side) and what the proxying itself costs.
    std::fs::write(work.join("pdp-plain.toml"), toml.replacen("[serve]\n", "[serve]\ntls = \"off\"\n", 1))?;
    std::fs::write(work.join(".env"), format!("DATABASE_URL={url}\nPDP_API_KEY={KEY}\n"))?;
    std::fs::write(work.join("load.mjs"), LOAD_NODE)?;
    std::fs::write(work.join("load.lua"), LOAD_LUA)?;
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

    let start_pdp = |config: &str, scheme: &str| -> anyhow::Result<(std::process::Child, u16)> {
        let mut child = Command::new(&pdp)
            .args(["serve", "--config", config])
            .current_dir(&work)
            .env("PDP_CACHE_DIR", &cache)
            // pdp's own default: the access log on (one line per request), as nginx's is.
            .env("PDP_LOG", "info")
            .env("PDP_BENCH_CHILD_TCP", "1")
            .stderr(Stdio::piped())
            .spawn()?;
        let port = crate::bench::read_listen_port(&mut child, scheme)?;
        Ok((child, port))
    };
    let (mut serve, port) = start_pdp("pdp.toml", "https")?;
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
    // The measured schema first, so its pool takes the big part of the connection budget (all but
    // `on-demand-connections`), as the project's own schema does; the variants take one connection each.
    let origin = format!("https://localhost:{port}");
    let out = node("cold.mjs", &[("ORIGIN", origin.clone()), ("KEY", KEY.into()), ("SCHEMA", SCHEMA.into())])?;
    let hash = word(&out, "hash").to_owned();
    let mut colds = vec![field(&out, "cold_ms")];
    for i in 0..3 {
        let schema = format!("{SCHEMA}// variant {i}\n");
        let out = node("cold.mjs", &[("ORIGIN", origin.clone()), ("KEY", KEY.into()), ("SCHEMA", schema)])?;
        colds.push(field(&out, "cold_ms"));
    }

    // The project's own schema: the second pdp (below) serves it without an upload.
    std::fs::write(work.join("prisma/schema.prisma"), SCHEMA)?;

    let (mut plain, plain_port) = start_pdp("pdp-plain.toml", "http")?;

    // One round on one path, with the CPU every process on the path spent per request (µs): the load
    // generator, the proxy (when there is one), the engine, PostgreSQL.
    let run = |tool: Tool, path: &Way, seconds: u32| -> anyhow::Result<(Load, Cpu)> {
        let engines = || path.engines.iter().map(|p| cpu(*p)).sum::<u64>();
        let before = (path.proxy.map_or(0, cpu), engines(), postgres_cpu());
        let env = [
            ("URL", path.url.clone()),
            ("KEY", path.key.to_owned()),
            ("SECONDS", seconds.to_string()),
            ("MAX_ID", USERS.to_string()),
        ];
        let out = match tool {
            Tool::Node => node("load.mjs", &env)?,
            Tool::Wrk => {
                let mut c = Command::new("wrk");
                c.args(["-t1", "-c32", &format!("-d{seconds}s"), "-s", "load.lua", &path.url]).current_dir(&work);
                for (k, v) in &env {
                    c.env(k, v);
                }
                let out = c.output().context("cannot run wrk")?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if !out.status.success() || field(&text, "errors") > 0.0 {
                    bail!("wrk against {} failed: {text}{}", path.url, String::from_utf8_lossy(&out.stderr));
                }
                text
            }
        };
        let after = (path.proxy.map_or(0, cpu), engines(), postgres_cpu());
        let n = field(&out, "n").max(1.0);
        // Clock ticks are 10 ms (100 per second on Linux).
        let per = |ticks: u64| ticks as f64 * 10_000.0 / n;
        let load = match tool {
            Tool::Node => field(&out, "cpu_us") / n,
            Tool::Wrk => field(&out, "cpu_ticks") * 10_000.0 / n,
        };
        let usage = Cpu {
            load,
            proxy: per(after.0.saturating_sub(before.0)),
            engine: per(after.1.saturating_sub(before.1)),
            postgres: per(postgres_spent(&before.2, &after.2)),
        };
        Ok((Load { rps: field(&out, "rps"), p50: field(&out, "p50"), p99: field(&out, "p99") }, usage))
    };
    // "Direct" is the very engine pdp started for the schema, reached on its loopback port: one process,
    // so JIT warm-up, heap and pool are the same on both sides of every comparison.
    let proxied = |name: &'static str, url: String, pdp: u32| -> anyhow::Result<[Way; 2]> {
        let first = Way { name, url, key: KEY, proxy: Some(pdp), engines: Vec::new() };
        let _ = run(Tool::Wrk, &first, 2)?; // starts the engine if it is not running yet
        let engine = child_with(pdp, &hash)
            .ok_or_else(|| anyhow::format_err!("pdp serve {pdp} runs no engine for schema {hash}"))?;
        let port = listening_port(engine)?;
        let direct = Way {
            name: if name == "pdp https" { "direct (1)" } else { "direct (2)" },
            url: format!("http://127.0.0.1:{port}/"),
            key: "",
            proxy: None,
            engines: vec![engine],
        };
        Ok([direct, Way { engines: vec![engine], ..first }])
    };
    let [direct_a, https] =
        proxied("pdp https", format!("https://localhost:{port}/6.19.3/{hash}/graphql"), serve.id())?;
    let nginx = crate::bench::start_nginx(&work, direct_a.engines[0], KEY, true, None)?;
    let nginx_way = Way {
        name: "nginx https",
        url: format!("https://localhost:{}/6.19.3/{hash}/graphql", nginx.port),
        key: KEY,
        proxy: Some(nginx.worker),
        engines: direct_a.engines.clone(),
    };
    let [direct_b, tls_off] =
        proxied("pdp tls off", format!("http://127.0.0.1:{plain_port}/6.19.3/{hash}/graphql"), plain.id())?;
    let paths = [direct_a, https, nginx_way, direct_b, tls_off];
    // The engine (WASM, JIT-compiled by Node) gets faster for a while: warm every path before measuring.
    for path in &paths {
        let _ = run(Tool::Node, path, 5)?;
        let _ = run(Tool::Wrk, path, 5)?;
    }
    let rounds = |tool: Tool, paths: &[&Way], rounds: usize| -> anyhow::Result<Vec<(Vec<Load>, Vec<Cpu>)>> {
        let mut results: Vec<(Vec<Load>, Vec<Cpu>)> = paths.iter().map(|_| Default::default()).collect();
        for round in 1..=rounds {
            for (path, (loads, cpus)) in paths.iter().zip(results.iter_mut()) {
                let (l, c) = run(tool, path, 10)?;
                eprintln!(
                    "{tool:?} round {round} {:<12} {:>5.0} req/s, p50 {:>6.2} ms, p99 {:>6.2} ms; CPU µs/request: load {:.0}, pdp {:.0}, engine {:.0}, postgres {:.0}",
                    path.name, l.rps, l.p50, l.p99, c.load, c.proxy, c.engine, c.postgres
                );
                loads.push(l);
                cpus.push(c);
            }
        }
        Ok(results)
    };
    let with_wrk = rounds(Tool::Wrk, &[&paths[0], &paths[1], &paths[2], &paths[3], &paths[4]], ROUNDS)?;
    let with_node = rounds(Tool::Node, &[&paths[0], &paths[1]], NODE_ROUNDS)?;
    // The pool: the same https pdp with `children = 2` against the one above (`children = 1`), alternating
    // rounds under the same load, the engines' CPU summed over the pool.
    let (mut pool2, pool2_port) = start_pdp("pdp-pool2.toml", "https")?;
    let mut two = Way {
        name: "children = 2",
        url: format!("https://localhost:{pool2_port}/6.19.3/{hash}/graphql"),
        key: KEY,
        proxy: Some(pool2.id()),
        engines: Vec::new(),
    };
    let _ = run(Tool::Wrk, &two, 2)?; // starts its pool
    two.engines = crate::bench::children_with(pool2.id(), &hash);
    if two.engines.len() != 2 {
        bail!("the `children = 2` pdp runs {} engines for schema {hash}", two.engines.len());
    }
    let one = Way {
        name: "children = 1",
        url: paths[1].url.clone(),
        key: KEY,
        proxy: paths[1].proxy,
        engines: paths[1].engines.clone(),
    };
    for path in [&one, &two] {
        let _ = run(Tool::Wrk, path, 5)?;
    }
    let with_pool = rounds(Tool::Wrk, &[&one, &two], ROUNDS)?;
    let _ = Command::new("kill").args(["-TERM", &pool2.id().to_string()]).status();
    let _ = pool2.wait();
    drop(nginx);
    let _ = Command::new("kill").args(["-TERM", &plain.id().to_string()]).status();
    let _ = plain.wait();
    let _ = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    let _ = serve.wait();
    let _ = Command::new("psql")
        .args([admin, "-q", "-c", &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")])
        .status();
    let _ = std::fs::remove_dir_all(&work);

    let [(d, dc), (p, pc), (n, nc), (d2, d2c), (h, hc)] = &with_wrk[..] else { unreachable!("five paths") };
    crate::bench::print_proxy_comparison(
        "DP1 findUnique by id, 32 connections from wrk, WASM engine on PostgreSQL, 10 s rounds after a warm-up",
        "direct to the engine (http):",
        "through pdp serve (https+key):",
        d,
        p,
    );
    crate::bench::print_proxy_comparison(
        "The same engine behind nginx 1.22 (one worker, TLS, key check, keep-alive to the engine's socket)",
        "direct to the engine (http):",
        "through nginx (https+key):",
        d,
        n,
    );
    let med = |v: &[Cpu]| median(v.iter().map(|c| c.proxy).collect());
    let spread = |v: &[Cpu]| {
        let xs: Vec<f64> = v.iter().map(|c| c.proxy).collect();
        (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(0.0, f64::max))
    };
    let rps = |v: &[Load]| median(v.iter().map(|l| l.rps).collect());
    let ((plo, phi), (nlo, nhi)) = (spread(pc), spread(nc));
    println!(
        "  proxy CPU per request: pdp {:.0} µs (rounds {plo:.0}–{phi:.0}), nginx {:.0} µs (rounds {nlo:.0}–{nhi:.0}): \
         pdp/nginx {:.2}× (target ≤ 1.00×)",
        med(pc),
        med(nc),
        med(pc) / med(nc)
    );
    println!(
        "  throughput: pdp {:.1}% of direct (target ≥ 97%), nginx {:.1}% of direct; pdp/nginx {:.2}× (target ≥ 1.00×)",
        rps(p) / rps(d) * 100.0,
        rps(n) / rps(d) * 100.0,
        rps(p) / rps(n)
    );
    crate::bench::print_proxy_comparison(
        "The same through a pdp serve with `tls = \"off\"`, to separate TLS from proxying",
        "direct to its engine (http):",
        "through pdp serve (http+key):",
        d2,
        h,
    );
    println!("  CPU per request, medians (µs):   load generator   pdp   engine   PostgreSQL   total");
    let cpu_line = |name: &str, c: &[Cpu]| {
        let m = |f: fn(&Cpu) -> f64| median(c.iter().map(f).collect());
        let (l, x, e, g) = (m(|c| c.load), m(|c| c.proxy), m(|c| c.engine), m(|c| c.postgres));
        println!("  {name:<32} {l:>14.0} {x:>5.0} {e:>8.0} {g:>12.0} {:>7.0}", l + x + e + g);
    };
    cpu_line("direct to the engine", dc);
    cpu_line("through pdp (https)", pc);
    cpu_line("through nginx (https)", nc);
    cpu_line("direct to the tls-off pdp's engine", d2c);
    cpu_line("through pdp (tls off)", hc);
    let [(nd, ndc), (np, npc)] = &with_node[..] else { unreachable!("two paths") };
    crate::bench::print_proxy_comparison(
        "With a Node fetch client instead (one process, 32 in flight) on the same two cores, where pdp's CPU is taken from the client's and the engine's",
        "direct to the engine (http):",
        "through pdp serve (https+key):",
        nd,
        np,
    );
    cpu_line("direct to the engine", ndc);
    cpu_line("through pdp (https)", npc);
    let [(o, oc), (t, tc)] = &with_pool[..] else { unreachable!("two paths") };
    let lohi = |v: &[Load]| {
        let xs: Vec<f64> = v.iter().map(|l| l.rps).collect();
        (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(0.0, f64::max))
    };
    let ((olo, ohi), (tlo, thi)) = (lohi(o), lohi(t));
    println!(
        "\nA pool of WASM engines: one pdp serve (https+key) with `[serve] children = 1` and one with `children = 2`, same load"
    );
    println!(
        "  throughput: children = 1 {:.0} req/s (rounds {olo:.0}–{ohi:.0}), children = 2 {:.0} req/s (rounds {tlo:.0}–{thi:.0}): \
         {:.2}× (target ≥ 1.30×); p50 {:.2} vs {:.2} ms",
        rps(o),
        rps(t),
        rps(t) / rps(o),
        median(o.iter().map(|l| l.p50).collect()),
        median(t.iter().map(|l| l.p50).collect()),
    );
    println!("  CPU per request, medians (µs):   load generator   pdp   engine   PostgreSQL   total");
    cpu_line("children = 1", oc);
    cpu_line("children = 2 (both engines)", tc);
    let rest = &colds[1..];
    println!(
        "  cold start (SchemaMissing, upload, engine start, first query): first ever {:.0} ms (may include npm provisioning), then {} ms",
        colds[0],
        rest.iter().map(|c| format!("{c:.0}")).collect::<Vec<_>>().join(" / ")
    );
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Tool {
    Wrk,
    Node,
}

/// One way to the engine.
struct Way {
    name: &'static str,
    url: String,
    key: &'static str,
    /// The pdp in between, if any.
    proxy: Option<u32>,
    /// The engines' pids (one, except on the pool paths).
    engines: Vec<u32>,
}

/// CPU per request of each process on a path, µs.
#[derive(Default)]
struct Cpu {
    load: f64,
    proxy: f64,
    engine: f64,
    postgres: f64,
}

/// Every PostgreSQL process's utime + stime, in clock ticks, by pid (backends come and go).
fn postgres_cpu() -> HashMap<u32, u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return HashMap::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|pid| (pid, cpu(pid)))
        .collect()
}

/// What PostgreSQL spent between two readings: each process's growth (a new one counts from zero).
fn postgres_spent(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after.iter().map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0))).sum()
}
