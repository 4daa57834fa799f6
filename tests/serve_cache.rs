//! Accelerate's query cache through pdp, with the real `@prisma/extension-accelerate` 3.0.1 on the Prisma
//! 7.10 Deno client that `pdp build-client` generates (query code as a user of Prisma's hosted Accelerate
//! writes it), the real executor and the machine's PostgreSQL. The invalidation goes over https to pdp's
//! `/invalidate` through the `fetch` the README documents for `withAccelerate({ fetch })`.

use crate::support::serve::{Db, Serving, api_key, db_name, drop_db, project};

/// The user's code: `withAccelerate({ fetch })`, `cacheStrategy`, `withAccelerateInfo()`, `$accelerate.invalidate`.
const SCRIPT: &str = r#"
import { withAccelerate } from "npm:@prisma/extension-accelerate@3.0.1";
const { PrismaClient } = await import(new URL(Deno.env.get("PDP_CLIENT")!, `file://${Deno.cwd()}/`).href);
const base = new URL(Deno.env.get("PDP_URL")!);
const key = Deno.env.get("PDP_API_KEY")!;
// The helper `pdp build-client` writes beside the client sends the extension's invalidations to pdp; the
// spy under it only watches what goes by.
const { pdpFetch } = await import(new URL("dist/client/0.1.0/pdp-accelerate.ts", `file://${Deno.cwd()}/`).href);
let last: string | null = null;
let recorded: { headers: Headers; body: string } | null = null;
const invalidations: string[] = [];
const spy = async (input: RequestInfo | URL, init?: RequestInit) => {
  const url = new URL(input instanceof Request ? input.url : input.toString());
  if (url.pathname === "/query" && typeof init?.body === "string") recorded = { headers: new Headers(init.headers), body: init.body };
  if (url.pathname === "/invalidate") invalidations.push(url.origin);
  const resp = await fetch(input, init);
  last = resp.headers.get("accelerate-cache-status");
  return resp;
};
const accelerateUrl = `prisma://${base.host}/?api_key=${key}`;
const prisma = new PrismaClient({ accelerateUrl }).$extends(withAccelerate({ fetch: pdpFetch(accelerateUrl, spy) }));
const out = (k: string, v: unknown) => console.log(JSON.stringify({ [k]: v }));
const fills = async () => {
  const text = await (await fetch(new URL("/metrics", base), { headers: { authorization: `Bearer ${key}` } })).text();
  const line = text.split("\n").find((l) => l.startsWith('pdp_cache_events_total{event="fill"}'));
  return Number(line?.split(" ").pop() ?? 0);
};
const poll = async <T>(what: string, f: () => Promise<T | undefined>): Promise<T> => {
  for (let i = 0; i < 500; i++) { const v = await f(); if (v !== undefined) return v; await new Promise((r) => setTimeout(r, 20)); }
  throw new Error(`waited 10 s for ${what}`);
};
const where = { email: { endsWith: "@cache.test" } };
await prisma.user.create({ data: { email: "one@cache.test" } });

// Miss, then fresh from the cache: a write in between does not show until the tag is invalidated.
const users = () => prisma.user.findMany({ where, cacheStrategy: { ttl: 60, tags: ["users"] } }).withAccelerateInfo();
const queriesBefore = await fills();
let r = await users();
out("first", [r.info.cacheStatus, r.data.length, r.info.requestId.endsWith("-pdp"), r.info.region]);
await prisma.user.create({ data: { email: "two@cache.test" } });
out("write", last);
r = await users();
out("cached", [r.info.cacheStatus, r.data.length, r.info.lastModified instanceof Date && !isNaN(r.info.lastModified.getTime())]);
// The database saw one query for the two reads; one parameter more is another query.
out("queries", (await fills()) - queriesBefore);
out("otherParameter", (await prisma.user.findMany({ where, take: 5, cacheStrategy: { ttl: 60, tags: ["users"] } }).withAccelerateInfo()).info.cacheStatus);
out("invalidate", (await prisma.$accelerate.invalidate({ tags: ["users"] })).requestId.endsWith("-pdp"));
r = await users();
out("after", [r.info.cacheStatus, r.data.length]);
try { await prisma.$accelerate.invalidate({ tags: ["no-dashes"] }); out("badTag", "accepted"); }
catch (e) { out("badTag", (e as Error).message.includes("letters, digits and underscores")); }

// Stale while revalidating: after ttl the stale answer comes at once, and one refresh brings the new one.
const count = () => prisma.user.count({ where, cacheStrategy: { ttl: 1, swr: 60 } }).withAccelerateInfo();
const c0 = await count();
await prisma.user.create({ data: { email: "three@cache.test" } });
const stale = await poll("a stale answer", async () => { const c = await count(); return c.info.cacheStatus === "swr" ? c : undefined; });
const fresh = await poll("the refreshed answer", async () => { const c = await count(); return c.info.cacheStatus === "ttl" && c.data === 3 ? c : undefined; });
out("swr", [c0.info.cacheStatus, c0.data, stale.data, fresh.data]);

// Misses of one key at one moment share one query: the client's own request, sent 8 times at once while
// a transaction holds the table locked, so that all 8 are in pdp before the first query can finish.
await prisma.user.findMany({ where: { name: "together" }, cacheStrategy: { ttl: 60, tags: ["together"] } });
const sent = recorded!;
await prisma.$accelerate.invalidate({ tags: ["together"] });
const inFlight = async () => {
  const text = await (await fetch(new URL("/metrics", base), { headers: { authorization: `Bearer ${key}` } })).text();
  return Number(text.split("\n").find((l) => l.startsWith("pdp_requests_in_flight "))?.split(" ").pop() ?? 0);
};
const before = await fills();
let same: Response[] = [];
let waiting: Promise<Response[]> | null = null;
await prisma.$transaction(async (tx) => {
  await tx.$executeRaw`LOCK TABLE "User" IN ACCESS EXCLUSIVE MODE`;
  waiting = Promise.all(Array.from({ length: 8 }, () => fetch(new URL("/query", base), { method: "POST", headers: sent.headers, body: sent.body })));
  // The 8, and this /metrics request itself.
  await poll("8 requests held by the lock", async () => ((await inFlight()) >= 9 ? true : undefined));
}, { timeout: 20000 });
same = await waiting!;
out("together", [same.map((r) => r.headers.get("accelerate-cache-status")), (await fills()) - before]);
for (const r of same) await r.body?.cancel();

// Never cached: inside a transaction, raw queries, and the cache strategy on a write.
await prisma.$transaction(async (tx) => { await tx.user.findMany({ where, cacheStrategy: { ttl: 60 } }); out("inTx", last); });
await prisma.user.update({ where: { email: "one@cache.test" }, data: { name: "x" }, cacheStrategy: { ttl: 60 } } as never);
out("update", last);
last = null;
await prisma.$queryRaw`SELECT 1`;
out("raw", last);
r = await users();
out("stillCached", r.info.cacheStatus);
await prisma.$accelerate.invalidateAll();
out("all", (await users()).info.cacheStatus);
out("invalidatedAt", [...new Set(invalidations)]);
"#;

fn lines(out: &str) -> serde_json::Value {
    out.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).fold(
        serde_json::json!({}),
        |mut acc, v| {
            if let (Some(a), Some(o)) = (acc.as_object_mut(), v.as_object()) {
                a.extend(o.clone());
            }
            acc
        },
    )
}

#[test]
fn the_accelerate_extension_caches_reads_refreshes_stale_ones_and_invalidates_by_tag() {
    let name = db_name("cache");
    let p = project(&Db::Postgres(name.clone()));
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    p.write("cache.ts", SCRIPT);
    // The helper type-checks as shipped.
    let check = std::process::Command::new(crate::support::serve::deno())
        .args(["check", "--no-config", "dist/client/0.1.0/pdp-accelerate.ts"])
        .current_dir(p.root())
        .env("DENO_DIR", crate::support::serve::tool_cache().join("deno-dir"))
        .env("NO_COLOR", "1")
        .output()
        .expect("deno check runs");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let (ok, out) = s.deno("cache.ts", &key, &[]);
    assert!(ok, "{out}\n--- pdp serve ---\n{}", s.log());
    assert_eq!(
        lines(&out),
        serde_json::json!({
            "first": ["miss", 1, true, "pdp"],
            "write": "none",
            "cached": ["ttl", 1, true],
            "queries": 1,
            "otherParameter": "miss",
            "invalidate": true,
            "after": ["miss", 2],
            "badTag": true,
            "swr": ["miss", 2, 2, 3],
            "together": [["miss", "miss", "miss", "miss", "miss", "miss", "miss", "miss"], 1],
            "inTx": "none",
            "update": "none",
            "raw": null,
            "stillCached": "ttl",
            "all": "miss",
            "invalidatedAt": [s.url()],
        }),
        "{out}\n--- pdp serve ---\n{}",
        s.log()
    );
    // The access log says what the cache did; /metrics counts it.
    s.log_when("the cache's access-log lines", |log| {
        log.contains("cache=ttl") && log.contains("cache=miss") && log.contains("cache=swr")
    });
    let metrics = s.metrics(&key);
    for event in ["hit", "stale", "miss", "fill", "refresh", "invalidation"] {
        let line = format!("pdp_cache_events_total{{event=\"{event}\"}}");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    assert!(metrics.lines().any(|l| l.starts_with("pdp_cache_entries ") && !l.ends_with(" 0")), "{metrics}");
    drop(s);

    // `[serve.cache] enabled = false`: the strategies are ignored and every answer says `none`.
    let toml = p.read("pdp.toml");
    p.write("pdp.toml", &format!("{toml}\n[serve.cache]\nenabled = false\n"));
    let s = Serving::start(&p, &[]);
    let preamble = SCRIPT.split("const where").next().expect("the preamble");
    let off = "for (let i = 0; i < 2; i++) out(`off${i}`, (await prisma.user.findMany({ cacheStrategy: { ttl: 60 } }).withAccelerateInfo()).info.cacheStatus);\n";
    p.write("off.ts", &format!("{preamble}{off}"));
    let (ok, out) = s.deno("off.ts", &key, &[]);
    assert!(ok, "{out}\n{}", s.log());
    assert_eq!(lines(&out), serde_json::json!({"off0": "none", "off1": "none"}), "{out}");
    drop(s);
    drop_db(&name);
}

/// The same with a Prisma 6.19.3 Node client (Data Proxy protocol, JSON) on the WASM engine.
const NODE_SCRIPT: &str = r#"
const { PrismaClient } = require("./generated");
const { withAccelerate } = require(process.env.ACCELERATE_EXTENSION);
const base = new URL(process.env.PDP_BASE);
let last = null;
const pdpFetch = async (input, init) => {
  const url = new URL(typeof input === "string" ? input : input.url);
  if (url.hostname === "accelerate.prisma-data.net") { url.protocol = base.protocol; url.host = base.host; }
  const resp = await fetch(url, init);
  last = resp.headers.get("accelerate-cache-status");
  return resp;
};
const out = (k, v) => console.log(JSON.stringify({ [k]: v }));
(async () => {
  const prisma = new PrismaClient({ datasourceUrl: process.env.PDP_URL }).$extends(withAccelerate({ fetch: pdpFetch }));
  await prisma.user.create({ data: { email: "one@six.test" } });
  const users = () => prisma.user.findMany({ cacheStrategy: { ttl: 60, tags: ["users"] } }).withAccelerateInfo();
  let r = await users();
  out("first", [r.info.cacheStatus, r.data.length]);
  await prisma.user.create({ data: { email: "two@six.test" } });
  r = await users();
  out("cached", [r.info.cacheStatus, r.data.length]);
  await prisma.$accelerate.invalidate({ tags: ["users"] });
  r = await users();
  out("after", [r.info.cacheStatus, r.data.length]);
  // A batch (a `$transaction([...])`) goes out through the client's own fetch, without the extension's
  // headers: pdp answers it straight.
  last = "untouched";
  out("batchTx", [await prisma.$transaction([prisma.user.count(), prisma.user.count()]), last]);
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn the_extension_on_a_prisma_6_client_caches_through_the_data_proxy_protocol() {
    use crate::serve_dp1::{KEY, fresh_database, node_client, project};
    let url = fresh_database("pdp_cache_six");
    let p = project("6.19.3", &url, "engine = \"wasm\"\n");
    let s = Serving::start(&p, &[]);
    node_client(&p, &s);
    p.write("cache.cjs", NODE_SCRIPT);
    let extension = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/node/node_modules/@prisma/extension-accelerate/dist/index.cjs");
    let out = std::process::Command::new("node")
        .arg("cache.cjs")
        .current_dir(p.root())
        .env("PDP_URL", format!("prisma://localhost:{}/?api_key={KEY}", s.port))
        .env("PDP_BASE", s.url())
        .env("NODE_EXTRA_CA_CERTS", &s.ca)
        .env("ACCELERATE_EXTENSION", extension)
        .output()
        .expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}\n{}", s.log());
    assert_eq!(
        lines(&text),
        serde_json::json!({
            "first": ["miss", 1], "cached": ["ttl", 1],
            "after": ["miss", 2], "batchTx": [[2, 2], "untouched"],
        }),
        "{text}\n{}",
        s.log()
    );
    s.log_when("a cached DP1 query's access-log line", |log| {
        log.contains("route=\"dp1_query\"") && log.contains("cache=ttl")
    });
}
