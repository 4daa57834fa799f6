// pdp's launcher for Prisma's WASM query engine: serves the native `query-engine` binary's HTTP interface
// (protocols.md §4.3, JSON protocol only) on loopback, backed by the WASM build of the same engine that
// `@prisma/client` 6.x ships, plus a driver adapter (node-postgres, MariaDB connector or libSQL).
// `pdp serve` starts it instead of the native engine where that cannot be downloaded, and tests use it as a
// real 5.x/6.x JSON-protocol engine. Written next to the provisioned packages; run with `node wasm-engine.mjs`.
//
// Package set (install exactly these, `npm install --ignore-scripts`; no install script is needed):
//   @prisma/client@6.19.3                   the engine: runtime/query_engine_bg.<provider>.{mjs,wasm-base64.mjs}
//                                           (engine commit 2ba551f319ab1df4bc874a89965d8b3641056773)
//   @prisma/driver-adapter-utils@6.19.3     bindAdapter (the Result/error-registry wrapper the engine expects)
//   @prisma/adapter-pg@6.19.3 + pg@8.16.3   postgresql, cockroachdb
//   @prisma/adapter-mariadb@6.19.3 + mariadb@3.4.5   mysql (MySQL and MariaDB)
//   @prisma/adapter-libsql@6.19.3 + @libsql/client@0.8.1   sqlite (prebuilt binary ships in the npm tarball)
// Only the adapter for the schema's provider is loaded, so a postgres-only install may omit the others.
// (@prisma/client declares `prisma` as a peer dependency; the launcher does not need it.)
//
// GraphQL protocol (Prisma 4.x clients without jsonProtocol), `--engine-protocol graphql`: a second, older
// build, the only WASM query engine published that still speaks GraphQL, with the driver adapters of its era:
//   @prisma/query-engine-wasm@0.0.11        query_engine_bg.{js,wasm} (engine commit e1867df3…, 5.6-era)
//   @prisma/driver-adapter-utils@5.6.0, @prisma/adapter-pg@5.6.0, pg@8.11.3   PostgreSQL only
// Its quirks, worked around here (observed): `startTransaction` traps ("time not implemented on this
// platform"), so an interactive transaction is one pool connection that ran BEGIN with an engine instance of
// its own bound to that connection (nested writes inside it run as phantom transactions on it); a batch
// with `transaction: false` traps ("no reactor running"), so such a batch runs query by query (it promises no
// atomicity); it has no tracing and no metrics; its error wording is the 5.x engine's.
//
// Inputs. Flags mirror the native binary's so pdp can build one command line for both engines:
//   --datamodel-path FILE      schema file (env PRISMA_DML_PATH); or --datamodel / PRISMA_DML (base64 or text)
//   -H/--host IP               default 127.0.0.1
//   -p/--port N                default 4466; 0 = ephemeral (the chosen port is in the ready line)
//   -u/--unix-path PATH        listen on this Unix socket instead of TCP (what pdp always passes: the socket is
//                              in pdp's private 0700 directory; a stale file there is removed first)
//   --engine-protocol P        env PRISMA_ENGINE_PROTOCOL; json (default, the 6.19.3 build) or graphql (the
//                              0.0.11 build, PostgreSQL only; see above)
//   -m/--enable-metrics, --dataproxy-metric-override   serve /metrics (counters kept by this launcher,
//                              the WASM engine has no metrics: "Metrics is not enabled in Wasm")
//   --enable-telemetry-in-response   honour X-capture-telemetry (see Telemetry below)
//   -o/--log-queries           env LOG_QUERIES (any value): print one JSON line per SQL statement
//   -r/--enable-raw-queries, -g/--enable-playground, -d/--debug, --enable-open-telemetry,
//   --open-telemetry-endpoint X, --log-format X      accepted and ignored (raw queries are always on)
// Environment only:
//   PDP_DATABASE_URL           the database URL (never logged, never read from the schema). Fallback:
//                              OVERWRITE_DATASOURCES / --overwrite-datasources `[{"name":"db","url":"…"}]`
//                              (plain or base64 JSON, as the native engine accepts). The schema's own
//                              `url`/`env()` is never used: the engine gets an empty env and the adapter.
//   PDP_QE_PROVIDER            postgresql|postgres|cockroachdb|mysql|sqlite: the schema's datasource provider,
//                              as pdp read it (pdp's one schema scanner; this launcher never re-parses the schema)
//   PDP_QE_CONNECTION_LIMIT    pool size; default = the URL's `connection_limit`, else cores*2+1 like Prisma
//   PDP_QE_DATASOURCE          the schema's datasource name (GraphQL build: its URL is overridden by name)
//   RUST_LOG                   engine log level error|warn|info|debug|trace (default info)
//   PDP_QE_IGNORE_STDIN=1      do not exit when stdin closes (for running it by hand in the background)
//   PDP_BENCH_TCP              benchmarks only (`PDP_BENCH_CHILD_TCP`): also listen on this host:port, printed
//                              as `{"pdp_bench_tcp":{"port":N}}`; pdp never connects there
// URL parameters understood: postgres `schema`, `connection_limit`, `connect_timeout` (s),
// `pool_timeout` (s, the pool's wait for a connection); other Prisma-only parameters are dropped before
// the URL reaches the driver. sqlite `file:` paths are resolved against the schema file's directory.
//
// Output, like the native engine:
//   stdout, once the database answered and the socket or port is bound, exactly one line
//     {"timestamp":"…Z","level":"INFO","fields":{"message":"Started query engine http server on unix:PATH","unix_path":"PATH"},"target":"query_engine::server"}
//   (with --port instead: `…on http://127.0.0.1:PORT","ip":"127.0.0.1","port":"PORT"`, the native engine's line),
//   plus, later, JSON log lines in the same shape (engine events; query lines with --log-queries).
//   stderr + exit 1 on a start failure: one line, the engine's user-facing error, e.g.
//     {"is_panic":false,"message":"Can't reach database server at `127.0.0.1:1`…","meta":{…},"error_code":"P1001"}
//   stderr + exit 101 if the WASM engine panics ({"is_panic":true,…}): a trapped WASM instance cannot be
//   reused, so the process ends and the supervisor restarts it (the native engine would drop one connection).
// Exits 0 after SIGTERM/SIGINT or stdin EOF: stops accepting, waits up to 10 s for requests in flight,
// disconnects the engine and closes the pool.
//
// HTTP interface (byte-compatible with the native engine's server/mod.rs, 5.x–6.x):
//   POST /                      query or batch → 200 with the engine's JSON (query errors inside `errors`);
//                               unparsable body → 422 {"is_panic":false,"message":"Error parsing Json query.
//                               Ensure that engine protocol of the client and the engine matches. …","backtrace":null}
//                               header X-transaction-id runs it in that interactive transaction.
//   POST /transaction/start     {"max_wait","timeout","isolation_level"?,"new_tx_id"?} → {"id"}; bad body →
//                               400 "Invalid transaction options" (text, like 6.x engines)
//   POST /transaction/ID/commit|rollback → {} ; errors are user-facing bodies (P2028): 404 unknown tx,
//                               422 closed/expired, 504 max_wait exceeded, 500 otherwise;
//                               other /transaction… paths → 400 "wrong transaction handler path: …"
//   GET /status → {"status":"ok"};  GET /server_info → {"commit","version","primary_connector"}
//   GET|POST /metrics[?format=json] when enabled; anything else → 404 with an empty body.
//   Responses other than /transaction* and /metrics carry `x-elapsed` (µs); JSON ones `QE-Content-Length`.
// Telemetry: with --enable-telemetry-in-response and an X-capture-telemetry header naming `tracing`, a
//   response gains `"extensions":{"logs":[],"traces":[…spans…]}` (the engine's own spans, under the request's
//   traceparent or a made-up sampled one). Log events are NOT captured per request by the WASM engine, so
//   `logs` is always empty; query logs go to stdout instead (--log-queries).
// Known WASM differences that stay visible: span timestamps and the "… ms passed since the start of the
//   transaction" figure of an expired transaction come from a millisecond-or-coarser clock (often "0 ms").
// Deliberately not here: /sdl, /dmmf, the
//   playground, X-query-timeout (ignored, as engines before prisma-engines#4988 do), Prometheus metrics
//   from inside the engine, unix sockets, TLS, auth (pdp serve in front does that; bind to loopback only).
// WASM engine quirks this file works around (Prisma 6.19.3, observed): an unknown transaction id and an
//   unknown `action` make the WASM engine trap (abort) instead of returning an error. The launcher therefore
//   tracks the transactions it started (all open ones plus the last CLOSED_TX_MEMORY closed ones) and answers
//   unknown ids itself with the engine's NotFound error, and rejects unknown actions with the 422 the native
//   engine's deserializer gives.

import http from "node:http";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const CLOSED_TX_MEMORY = 100;
const SHUTDOWN_GRACE_MS = 10_000;
const JSON_ACTIONS = new Set([
  "findUnique", "findUniqueOrThrow", "findFirst", "findFirstOrThrow", "findMany",
  "createOne", "createMany", "createManyAndReturn", "updateOne", "updateMany", "updateManyAndReturn",
  "deleteOne", "deleteMany", "upsertOne", "aggregate", "groupBy",
  "executeRaw", "queryRaw", "runCommandRaw", "findRaw", "aggregateRaw",
]);
const TX_NOT_FOUND =
  "Transaction not found. Transaction ID is invalid, refers to an old closed transaction Prisma doesn't have " +
  "information about anymore, or was obtained before disconnecting.";

// ---------------------------------------------------------------- output helpers

/** tracing-subscriber's JSON timestamp: RFC 3339 with microseconds. */
const timestamp = () => new Date().toISOString().replace(/Z$/, "000Z");

function logLine(level, target, fields) {
  process.stdout.write(JSON.stringify({ timestamp: timestamp(), level, fields, target }) + "\n");
}

/** The native engine's start-failure output: one user-facing error JSON line on stderr, exit 1. */
function failStart(error) {
  const body =
    error && typeof error === "object" && "is_panic" in error
      ? error
      : { is_panic: false, message: String(error?.message ?? error), backtrace: null };
  process.stderr.write(JSON.stringify(body) + "\n");
  process.exit(1);
}

/** A JS exception carrying a user-facing error as JSON in its message (what the engine throws) → object. */
function userFacing(err) {
  try {
    const parsed = JSON.parse(err?.message ?? "");
    if (parsed && typeof parsed === "object" && "is_panic" in parsed) return parsed;
  } catch {}
  return null;
}

// ---------------------------------------------------------------- inputs

function parseArgs(argv) {
  const opts = {
    datamodelPath: process.env.PRISMA_DML_PATH,
    datamodel: process.env.PRISMA_DML,
    host: "127.0.0.1",
    port: 4466,
    protocol: process.env.PRISMA_ENGINE_PROTOCOL,
    metrics: false,
    telemetryInResponse: false,
    logQueries: process.env.LOG_QUERIES !== undefined,
    overwriteDatasources: process.env.OVERWRITE_DATASOURCES,
  };
  const ignoredWithValue = new Set(["--open-telemetry-endpoint", "--log-format"]);
  const ignored = new Set([
    "-r", "--enable-raw-queries", "-g", "--enable-playground", "-d", "--debug",
    "--enable-open-telemetry", "--legacy",
  ]);
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    if (eq > 0) [arg, value] = [arg.slice(0, eq), arg.slice(eq + 1)];
    const next = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) failStart(`missing value for ${arg}`);
      return argv[++i];
    };
    switch (arg) {
      case "--datamodel-path": opts.datamodelPath = next(); break;
      case "--datamodel": opts.datamodel = next(); break;
      case "-H": case "--host": opts.host = next(); break;
      case "-p": case "--port": opts.port = Number(next()); break;
      case "-u": case "--unix-path": opts.unixPath = next(); break;
      case "--engine-protocol": opts.protocol = next(); break;
      case "-m": case "--enable-metrics": case "--dataproxy-metric-override": opts.metrics = true; break;
      case "--enable-telemetry-in-response": opts.telemetryInResponse = true; break;
      case "-o": case "--log-queries": opts.logQueries = true; break;
      case "--overwrite-datasources": opts.overwriteDatasources = next(); break;
      default:
        if (ignored.has(arg)) break;
        if (ignoredWithValue.has(arg)) { next(); break; }
        failStart(`unknown argument: ${argv[i]}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) failStart("invalid --port");
  opts.protocol = (opts.protocol || "json").toLowerCase();
  if (opts.protocol !== "json" && opts.protocol !== "graphql") {
    failStart(`unknown --engine-protocol ${opts.protocol} (json or graphql)`);
  }
  return opts;
}

/** base64 if it decodes to something that re-encodes identically, else the text itself (native rule). */
function maybeBase64(text) {
  const trimmed = text.trim();
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) && trimmed.length % 4 === 0) {
    const decoded = Buffer.from(trimmed, "base64");
    if (decoded.toString("base64") === trimmed) return decoded.toString("utf8");
  }
  return text;
}

function readDatamodel(opts) {
  if (opts.datamodelPath) {
    try {
      return { text: fs.readFileSync(opts.datamodelPath, "utf8"), dir: path.dirname(path.resolve(opts.datamodelPath)) };
    } catch (e) {
      failStart(`cannot read the datamodel at ${opts.datamodelPath}: ${e.message}`);
    }
  }
  if (opts.datamodel) return { text: maybeBase64(opts.datamodel), dir: process.cwd() };
  failStart("no datamodel: pass --datamodel-path FILE (or PRISMA_DML_PATH / PRISMA_DML)");
}

function databaseUrl(opts) {
  if (process.env.PDP_DATABASE_URL) return process.env.PDP_DATABASE_URL;
  if (opts.overwriteDatasources) {
    try {
      const list = JSON.parse(maybeBase64(opts.overwriteDatasources));
      if (Array.isArray(list) && typeof list[0]?.url === "string") return list[0].url;
    } catch {}
    failStart("OVERWRITE_DATASOURCES is not a JSON array like [{\"name\":\"db\",\"url\":\"…\"}]");
  }
  failStart("no database URL: set PDP_DATABASE_URL");
}

// ---------------------------------------------------------------- modules

const require = createRequire(
  process.env.PDP_QE_MODULES_DIR ? path.join(path.resolve(process.env.PDP_QE_MODULES_DIR), "noop.js") : import.meta.url,
);
async function load(specifier) {
  let resolved;
  try {
    resolved = require.resolve(specifier);
  } catch (e) {
    failStart(`cannot find ${specifier} next to the launcher (install the pinned package set): ${e.message}`);
  }
  return import(pathToFileURL(resolved).href);
}

const ENGINE_FILES = { postgresql: "postgresql", postgres: "postgresql", cockroachdb: "cockroachdb", mysql: "mysql", sqlite: "sqlite" };

async function instantiateEngineModule(provider) {
  const name = ENGINE_FILES[provider];
  const runtime = await load(`@prisma/client/runtime/query_engine_bg.${name}.mjs`);
  const { wasm } = await load(`@prisma/client/runtime/query_engine_bg.${name}.wasm-base64.mjs`);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(wasm, "base64")), {
    "./query_engine_bg.js": runtime,
  });
  runtime.__wbg_set_wasm(instance.exports);
  instance.exports.__wbindgen_start();
  return runtime;
}

/** The GraphQL-speaking build (@prisma/query-engine-wasm 0.0.11): its wasm-bindgen glue and module. */
async function instantiateGraphqlEngine() {
  const glue = await load("@prisma/query-engine-wasm/query_engine_bg.js");
  const bytes = fs.readFileSync(require.resolve("@prisma/query-engine-wasm/query_engine_bg.wasm"));
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { "./query_engine_bg.js": glue });
  glue.__wbg_set_wasm(instance.exports);
  return glue;
}

const PRISMA_ONLY_PARAMS = [
  "schema", "connection_limit", "pool_timeout", "connect_timeout", "socket_timeout", "pgbouncer",
  "statement_cache_size", "max_connection_lifetime", "max_idle_connection_lifetime", "sslaccept",
  "sslidentity", "sslpassword", "single_use_connections", "max_idle_connection_lifetime",
];

function positiveInt(value) {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

async function createAdapter(provider, rawUrl, schemaDir) {
  const defaultLimit = (os.availableParallelism?.() ?? os.cpus().length) * 2 + 1;
  if (provider === "sqlite") {
    const { PrismaLibSQL } = await load("@prisma/adapter-libsql");
    let url = rawUrl;
    const m = /^file:(.*)$/.exec(rawUrl);
    if (m) {
      const file = m[1].split("?")[0];
      url = "file:" + (path.isAbsolute(file) ? file : path.resolve(schemaDir, file));
    }
    return new PrismaLibSQL({ url });
  }
  let url;
  try {
    url = new URL(rawUrl);
  } catch {
    failStart({ is_panic: false, message: "The provided database string is invalid. The URL could not be parsed.", backtrace: null });
  }
  const params = url.searchParams;
  const limit = positiveInt(process.env.PDP_QE_CONNECTION_LIMIT) ?? positiveInt(params.get("connection_limit")) ?? defaultLimit;
  const connectTimeoutS = params.has("connect_timeout") ? Number(params.get("connect_timeout")) : 5;
  const poolTimeoutS = params.has("pool_timeout") ? Number(params.get("pool_timeout")) : 10;
  if (provider === "mysql") {
    const { PrismaMariaDb } = await load("@prisma/adapter-mariadb");
    return new PrismaMariaDb({
      host: decodeURIComponent(url.hostname),
      port: url.port ? Number(url.port) : 3306,
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: decodeURIComponent(url.pathname.replace(/^\//, "")) || undefined,
      connectionLimit: limit,
      connectTimeout: connectTimeoutS > 0 ? connectTimeoutS * 1000 : undefined,
      acquireTimeout: poolTimeoutS > 0 ? poolTimeoutS * 1000 : undefined,
    });
  }
  const { PrismaPg } = await load("@prisma/adapter-pg");
  const schema = params.get("schema") ?? undefined;
  for (const p of PRISMA_ONLY_PARAMS) params.delete(p);
  return new PrismaPg(
    {
      connectionString: url.toString(),
      max: limit,
      connectionTimeoutMillis: poolTimeoutS > 0 ? poolTimeoutS * 1000 : 0,
    },
    schema ? { schema } : undefined,
  );
}

// ---------------------------------------------------------------- engine

const opts = parseArgs(process.argv.slice(2));
const datamodel = readDatamodel(opts);
const url = databaseUrl(opts);
const provider = (process.env.PDP_QE_PROVIDER || "").replace(/^postgres$/, "postgresql");
if (!ENGINE_FILES[provider]) {
  failStart(`PDP_QE_PROVIDER must name the schema's provider (postgresql, cockroachdb, mysql or sqlite), not ${JSON.stringify(provider)}`);
}
const logLevel = ["error", "warn", "info", "debug", "trace"].includes(process.env.RUST_LOG) ? process.env.RUST_LOG : "info";

const graphql = opts.protocol === "graphql";
if (graphql && provider !== "postgresql") {
  failStart(`the GraphQL-protocol WASM engine has a PostgreSQL driver adapter only (the schema's provider is ${provider})`);
}
const wasmRuntime = await (graphql ? instantiateGraphqlEngine() : instantiateEngineModule(provider)).catch((e) =>
  failStart(`cannot load the WASM query engine: ${e.message}`),
);
const { bindAdapter, ok } = await load("@prisma/driver-adapter-utils");
let adapter;
/** GraphQL build: the pg pool every transaction takes its connection from, and its PrismaPg class. */
let pgPool;
let LegacyPrismaPg;
if (graphql) {
  ({ PrismaPg: LegacyPrismaPg } = await load("@prisma/adapter-pg"));
  const pg = (await load("pg")).default;
  const u = new URL(url);
  const params = u.searchParams;
  const limit = positiveInt(process.env.PDP_QE_CONNECTION_LIMIT) ?? positiveInt(params.get("connection_limit")) ??
    (os.availableParallelism?.() ?? os.cpus().length) * 2 + 1;
  const poolTimeoutS = params.has("pool_timeout") ? Number(params.get("pool_timeout")) : 10;
  const schema = params.get("schema");
  for (const p of PRISMA_ONLY_PARAMS) params.delete(p);
  pgPool = new pg.Pool({
    connectionString: u.toString(),
    max: limit,
    connectionTimeoutMillis: poolTimeoutS > 0 ? poolTimeoutS * 1000 : 0,
    ...(schema ? { options: `-c search_path="${schema.replace(/"/g, '""')}"` } : {}),
  });
  adapter = bindAdapter(new LegacyPrismaPg(pgPool));
} else {
  const factory = await createAdapter(provider, url, datamodel.dir);
  try {
    const connected = await factory.connect();
    adapter = bindAdapter(connected);
  } catch (e) {
    failStart(userFacing(e) ?? `cannot create the ${provider} driver adapter: ${e.message}`);
  }
}

function engineLog(json) {
  let event;
  try {
    event = JSON.parse(json);
  } catch {
    return;
  }
  const target = event.module_path ?? "query_engine";
  if (event.item_type === "query") {
    if (!opts.logQueries) return;
    logLine("INFO", target, {
      message: event.query,
      item_type: "query",
      is_query: true,
      query: event.query,
      params: event.params,
      duration_ms: event.duration_ms,
      result: event.result,
    });
    return;
  }
  const { level = "INFO", module_path, message, ...rest } = event;
  logLine(String(level).toUpperCase(), target, { message, ...rest });
}

/** A query engine over `boundAdapter` (the GraphQL build takes the URL by datasource name, never from env). */
function makeEngine(boundAdapter) {
  const common = { datamodel: datamodel.text, env: {}, ignoreEnvVarErrors: true, logQueries: opts.logQueries, logLevel, configDir: datamodel.dir };
  const options = graphql
    ? { ...common, datasourceOverrides: { [process.env.PDP_QE_DATASOURCE || "db"]: url }, engineProtocol: "graphql" }
    : { ...common, datasourceOverrides: {}, engineProtocol: "json", enableTracing: opts.telemetryInResponse };
  return new wasmRuntime.QueryEngine(options, engineLog, boundAdapter);
}

let engine;
try {
  engine = makeEngine(adapter);
} catch (e) {
  failStart(userFacing(e) ?? e);
}

let nextRequestId = 1n;
/** Calls an engine method with a fresh request id; with tracing on, also collects (and frees) its spans. */
async function callEngine(method, args, traceparent) {
  const requestId = String(nextRequestId++);
  const traceArg = JSON.stringify(traceparent ? { traceparent } : {});
  try {
    const result = await engine[method](...args(traceArg), requestId);
    return { result, spans: await takeSpans(requestId) };
  } catch (e) {
    await takeSpans(requestId);
    throw e;
  }
}
async function takeSpans(requestId) {
  if (!opts.telemetryInResponse) return undefined;
  try {
    const trace = await engine.trace(requestId);
    return trace ? (JSON.parse(trace).spans ?? []) : [];
  } catch {
    return [];
  }
}

// A trapped WASM instance (RuntimeError: unreachable) surfaces as an uncaught exception: end the process.
function panic(err) {
  process.stderr.write(
    JSON.stringify({ is_panic: true, message: String(err?.message ?? err), backtrace: String(err?.stack ?? "") }) + "\n",
  );
  process.exit(101);
}
process.on("uncaughtException", panic);
process.on("unhandledRejection", panic);

try {
  await callEngine("connect", (t) => [t]);
} catch (e) {
  failStart(userFacing(e) ?? e);
}

// MySQL/MariaDB: the connector's pool turns a refused connection into a 10 s "pool timeout"; check the socket
// first so an unreachable server fails fast with the engine's P1001 error like the other providers.
if (provider === "mysql") {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = u.port ? Number(u.port) : 3306;
  const reachable = await new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 5000 }, () => { socket.destroy(); resolve(true); });
    socket.on("error", () => resolve(false));
    socket.on("timeout", () => { socket.destroy(); resolve(false); });
  });
  if (!reachable) {
    const location = `${host}:${port}`;
    failStart({
      is_panic: false,
      message: `Can't reach database server at \`${location}\`\n\nPlease make sure your database server is running at \`${location}\`.`,
      meta: { database_location: location },
      error_code: "P1001",
    });
  }
}

// Startup probe, like the native engine's verify_connection: it needs a real connection and reports the
// engine's own user-facing error (P1001 unreachable, P1003 no database, P1010/P1000 access…). A transaction
// start where the engine can (its own way of asking for a connection); a raw `SELECT 1` on the GraphQL build.
if (graphql) {
  const probe = JSON.stringify({ query: 'mutation { queryRaw(query: "SELECT 1", parameters: "[]") }', variables: {} });
  const { result } = await callEngine("query", (t) => [probe, t, undefined]);
  const answer = JSON.parse(result);
  if (answer.errors) failStart(answer.errors[0]?.user_facing_error ?? answer.errors[0]?.error ?? answer);
} else {
  const { result } = await callEngine("startTransaction", (t) => [JSON.stringify({ max_wait: 10_000, timeout: 10_000 }), t]);
  const started = JSON.parse(result);
  if (!started.id) failStart(started);
  await callEngine("rollbackTransaction", (t) => [started.id, t]);
}

// ---------------------------------------------------------------- transactions table

/** id → { deadline } for open transactions started here; closed ones kept in insertion order, bounded. */
const openTx = new Map();
const closedTx = new Set();
function closeTx(id) {
  openTx.delete(id);
  closedTx.delete(id);
  closedTx.add(id);
  while (closedTx.size > CLOSED_TX_MEMORY) closedTx.delete(closedTx.values().next().value);
}
function sweepExpired() {
  const now = Date.now();
  for (const [id, tx] of openTx) if (tx.deadline <= now) closeTx(id);
}
const knownTx = (id) => openTx.has(id) || closedTx.has(id);
const notFoundError = () => ({
  is_panic: false,
  message: `Transaction API error: ${TX_NOT_FOUND}`,
  meta: { error: TX_NOT_FOUND },
  error_code: "P2028",
});

/** The native err_to_http_resp status for an engine transaction error body. */
function txErrorStatus(err) {
  const inner = String(err?.meta?.error ?? err?.message ?? "");
  if (inner.includes("Transaction not found")) return 404;
  if (inner.includes("Transaction already closed")) return 422;
  if (inner.includes("Unable to start a transaction in the given time")) return 504;
  return 500;
}

// ---------------------------------------------------------------- interactive transactions of the GraphQL build

/** id → { client, engine, started, timeout, timer, inFlight, drained }: a pool connection that ran BEGIN and
 *  its own engine, with the queries running in it now (`drained` resolves when the last one ends). */
const ownTx = new Map();
/** id → how it closed ({ why: "committed" | "rolled back" | "expired", timeout, elapsed }), bounded. */
const ownClosed = new Map();
const ISOLATION = {
  ReadUncommitted: "READ UNCOMMITTED", ReadCommitted: "READ COMMITTED", RepeatableRead: "REPEATABLE READ", Serializable: "SERIALIZABLE",
};
const txApiError = (message) => ({ is_panic: false, message: `Transaction API error: ${message}`, meta: { error: message }, error_code: "P2028" });

/** The native engine's words for an operation on a closed transaction. */
function closedError(id, operation) {
  const c = ownClosed.get(id);
  if (!c) return notFoundError();
  if (c.why !== "expired") return txApiError(`Transaction already closed: A ${operation} cannot be executed on a ${c.why} transaction.`);
  return txApiError(
    `Transaction already closed: A ${operation} cannot be executed on an expired transaction. The timeout for this transaction was ${c.timeout} ms, ` +
      `however ${c.elapsed} ms passed since the start of the transaction. Consider increasing the interactive transaction timeout or doing less work in the transaction.`,
  );
}

/** The 0.0.11 adapter over one connection; the engine's own (nested-write) transactions become phantom ones on it. */
function boundToConnection(client) {
  const inner = new LegacyPrismaPg(client);
  const queryable = { flavour: "postgres", queryRaw: (q) => inner.queryRaw(q), executeRaw: (q) => inner.executeRaw(q) };
  const nested = { ...queryable, options: { usePhantomQuery: true }, commit: async () => ok(undefined), rollback: async () => ok(undefined), dispose: () => ok(undefined) };
  return bindAdapter({ ...queryable, startTransaction: async () => ok(nested), close: async () => ok(undefined) });
}

async function ownStart(options) {
  const acquire = pgPool.connect();
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(() => resolve(null), options.max_wait); });
  let client;
  try {
    client = await Promise.race([acquire, late]);
  } catch (e) {
    return txApiError(`Unable to start a transaction: ${e.message}`);
  } finally {
    clearTimeout(timer);
  }
  if (!client) {
    acquire.then((c) => c.release(), () => {});
    return txApiError("Unable to start a transaction in the given time.");
  }
  const level = options.isolation_level;
  if (level != null && !ISOLATION[level]) {
    client.release();
    return { is_panic: false, message: `Inconsistent column data: Conversion failed: Invalid isolation level \`${level}\``, meta: {}, error_code: "P2023" };
  }
  const id = options.new_tx_id ?? crypto.randomUUID();
  if (ownTx.has(id) || ownClosed.has(id)) {
    client.release();
    return txApiError(`Unable to start a transaction: the transaction id ${id} is already in use`);
  }
  let txEngine;
  try {
    await client.query(level ? `BEGIN ISOLATION LEVEL ${ISOLATION[level]}` : "BEGIN");
    txEngine = makeEngine(boundToConnection(client));
    await txEngine.connect("{}");
  } catch (e) {
    client.release(true);
    try {
      txEngine?.free();
    } catch {}
    return userFacing(e) ?? txApiError(`Unable to start a transaction: ${e.message}`);
  }
  const entry = { client, engine: txEngine, started: Date.now(), timeout: options.timeout, inFlight: 0, drained: null };
  entry.timer = setTimeout(() => ownClose(id, "expired").catch(() => {}), options.timeout);
  ownTx.set(id, entry);
  return { id };
}

/** Runs `work` as one of transaction `entry`'s queries, counted in flight. */
async function inTransaction(entry, work) {
  entry.inFlight++;
  try {
    return await work();
  } finally {
    if (--entry.inFlight === 0 && entry.drained) entry.drained();
  }
}

/** Ends transaction `id`; `null` when done, else the error body. It leaves the table at once (a later query
 *  gets the closed-transaction error). A commit or rollback waits for the queries still running in it, then
 *  says COMMIT/ROLLBACK and returns the connection; an expiry does not wait: it destroys the connection, so the
 *  server rolls back and nothing still running in the transaction can write outside it (the connection is
 *  gone, never handed to another transaction). The engine is freed once its last query has ended. */
async function ownClose(id, why) {
  const entry = ownTx.get(id);
  if (!entry) return closedError(id, why === "committed" ? "commit" : "rollback");
  ownTx.delete(id);
  clearTimeout(entry.timer);
  ownClosed.set(id, { why, timeout: entry.timeout, elapsed: Date.now() - entry.started });
  while (ownClosed.size > CLOSED_TX_MEMORY) ownClosed.delete(ownClosed.keys().next().value);
  closeTx(id);
  const drained = entry.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => { entry.drained = resolve; });
  let failure = null;
  if (why === "expired") {
    entry.client.release(true);
  } else {
    await drained;
    try {
      await entry.client.query(why === "committed" ? "COMMIT" : "ROLLBACK");
      entry.client.release();
    } catch (e) {
      entry.client.release(true);
      failure = txApiError(`Transaction ${why === "committed" ? "commit" : "rollback"} failed: ${e.message}`);
    }
  }
  drained.then(async () => {
    try {
      await entry.engine.disconnect("{}");
      entry.engine.free();
    } catch {}
  });
  return failure;
}

/** A batch without `transaction: true` traps the GraphQL build: run it query by query, as the native engine
 *  runs a non-transactional batch (each part answers for itself). `null` when `raw` is no such batch. */
async function splitBatch(target, raw) {
  let body;
  try {
    body = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!body || !Array.isArray(body.batch) || body.transaction === true) return null;
  const parts = [];
  for (const q of body.batch) parts.push(await target.query(JSON.stringify(q), "{}", undefined));
  return `{"batchResult":[${parts.join(",")}]}`;
}

// ---------------------------------------------------------------- metrics (kept here; the WASM engine has none)

const BUCKETS = [0, 1, 5, 10, 50, 100, 500, 1000, 5000, 50000];
const metrics = { queries: 0, active: 0, histogram: new Array(BUCKETS.length).fill(0), sum: 0, count: 0 };
function observe(ms) {
  metrics.count++;
  metrics.sum += ms;
  BUCKETS.forEach((b, i) => { if (ms <= b) metrics.histogram[i]++; });
}
function prometheus(labels) {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${String(v).replace(/["\\\n]/g, "\\$&")}"`);
  const lab = (extra = []) => (l.length + extra.length ? `{${[...l, ...extra].join(",")}}` : "");
  const lines = [
    "# HELP prisma_client_queries_total The total number of Prisma Client queries executed",
    "# TYPE prisma_client_queries_total counter",
    `prisma_client_queries_total${lab()} ${metrics.queries}`,
    "# HELP prisma_client_queries_active The number of currently active Prisma Client queries",
    "# TYPE prisma_client_queries_active gauge",
    `prisma_client_queries_active${lab()} ${metrics.active}`,
    "# HELP prisma_client_queries_duration_histogram_ms The distribution of the time Prisma Client queries took to run end to end",
    "# TYPE prisma_client_queries_duration_histogram_ms histogram",
    ...BUCKETS.map((b, i) => `prisma_client_queries_duration_histogram_ms_bucket${lab([`le="${b}"`])} ${metrics.histogram[i]}`),
    `prisma_client_queries_duration_histogram_ms_bucket${lab(['le="+Inf"'])} ${metrics.count}`,
    `prisma_client_queries_duration_histogram_ms_sum${lab()} ${metrics.sum}`,
    `prisma_client_queries_duration_histogram_ms_count${lab()} ${metrics.count}`,
  ];
  return lines.join("\n") + "\n";
}
function metricsJson(labels) {
  return {
    counters: [{ key: "prisma_client_queries_total", labels, value: metrics.queries, description: "The total number of Prisma Client queries executed" }],
    gauges: [{ key: "prisma_client_queries_active", labels, value: metrics.active, description: "The number of currently active Prisma Client queries" }],
    histograms: [{
      key: "prisma_client_queries_duration_histogram_ms",
      labels,
      value: { buckets: BUCKETS.map((b, i) => [b, metrics.histogram[i]]), sum: metrics.sum, count: metrics.count },
      description: "The distribution of the time Prisma Client queries took to run end to end",
    }],
  };
}

// ---------------------------------------------------------------- HTTP

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res, status, body, { json = true, elapsedSince } = {}) {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  const headers = {};
  if (json) {
    headers["content-type"] = "application/json";
    headers["QE-Content-Length"] = String(bytes.length);
  }
  headers["content-length"] = String(bytes.length);
  if (elapsedSince !== undefined) headers["x-elapsed"] = String(Number((process.hrtime.bigint() - elapsedSince) / 1000n));
  res.writeHead(status, headers);
  res.end(bytes);
}

function header(req, name) {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * traceparent only when it looks like one (native: at least four dash-separated parts). When spans are to be
 * captured but none came, a sampled one is made up, as the native engine roots such a request in a new span
 * (the WASM engine records spans only under a sampled traceparent).
 */
function traceparentOf(req) {
  const v = header(req, "traceparent");
  if (v && v.split("-").filter(Boolean).length >= 4) return v;
  if (!wantsTraces(req)) return undefined;
  const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `00-${hex(16)}-${hex(8)}-01`;
}

function wantsTraces(req) {
  if (!opts.telemetryInResponse) return false;
  const v = header(req, "x-capture-telemetry") ?? "";
  return v.split(",").some((s) => s.trim().toLowerCase() === "tracing");
}

/** Appends `"extensions":{…}` to a serialized JSON object without re-serializing the engine's bytes. */
function withExtensions(json, spans) {
  const trimmed = json.trimEnd();
  if (!trimmed.endsWith("}")) return json;
  const ext = `"extensions":${JSON.stringify({ logs: [], traces: spans ?? [] })}`;
  const inner = trimmed.slice(0, -1).trimEnd();
  return inner.endsWith("{") ? `${inner}${ext}}` : `${inner},${ext}}`;
}

function protocolError(detail) {
  return {
    is_panic: false,
    message: `Error parsing Json query. Ensure that engine protocol of the client and the engine matches. ${detail}`,
    backtrace: null,
  };
}

/** Unknown `action` values make the WASM engine trap; the native deserializer rejects them. */
function hasUnknownAction(body) {
  const single = (q) => q && typeof q === "object" && typeof q.action === "string" && !JSON_ACTIONS.has(q.action);
  if (body && typeof body === "object" && !Array.isArray(body)) {
    if (Array.isArray(body.batch)) return body.batch.some(single);
    return single(body);
  }
  return false;
}

async function handleQuery(req, res, started) {
  const raw = (await readBody(req)).toString("utf8");
  const txId = header(req, "x-transaction-id");
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch {}
  if (parsed !== undefined && hasUnknownAction(parsed)) {
    return send(res, 422, protocolError("data did not match any variant of untagged enum JsonBody"), { elapsedSince: started });
  }
  if (graphql && txId !== undefined && !ownTx.has(txId)) {
    const err = closedError(txId, "query");
    return send(res, 200, { errors: [{ error: err.message, user_facing_error: err }] }, { elapsedSince: started });
  }
  if (!graphql && txId !== undefined && !knownTx(txId)) {
    const err = notFoundError();
    return send(res, 200, { errors: [{ error: TX_NOT_FOUND, user_facing_error: err }] }, { elapsedSince: started });
  }
  metrics.queries++;
  metrics.active++;
  const t0 = performance.now();
  try {
    if (graphql) {
      // The transaction's own engine runs its queries (on its connection); no tx id reaches an engine.
      const entry = txId !== undefined ? ownTx.get(txId) : undefined;
      const target = entry ? entry.engine : engine;
      const run = async () => (await splitBatch(target, raw)) ?? (await target.query(raw, "{}", undefined));
      const result = entry ? await inTransaction(entry, run) : await run();
      return send(res, 200, result, { elapsedSince: started });
    }
    const { result, spans } = await callEngine("query", (t) => [raw, t, txId], traceparentOf(req));
    const out = wantsTraces(req) ? withExtensions(result, spans) : result;
    send(res, 200, out, { elapsedSince: started });
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) panic(e);
    send(res, 422, userFacing(e) ?? protocolError(e?.message ?? String(e)), { elapsedSince: started });
  } finally {
    metrics.active--;
    observe(performance.now() - t0);
  }
}

async function handleTxStart(req, res) {
  const raw = (await readBody(req)).toString("utf8");
  let input;
  try {
    input = JSON.parse(raw);
  } catch {}
  const validMs = (v) => Number.isInteger(v) && v >= 0;
  if (!input || typeof input !== "object" || !validMs(input.max_wait) || !validMs(input.timeout)) {
    return send(res, 400, "Invalid transaction options", { json: false });
  }
  const options = { max_wait: input.max_wait, timeout: input.timeout };
  if (input.isolation_level != null) options.isolation_level = input.isolation_level;
  if (input.new_tx_id != null) options.new_tx_id = input.new_tx_id;
  sweepExpired();
  if (graphql) {
    const out = await ownStart(options);
    return send(res, typeof out.id === "string" ? 200 : txErrorStatus(out), out);
  }
  const { result, spans } = await callEngine("startTransaction", (t) => [JSON.stringify(options), t], traceparentOf(req));
  const body = JSON.parse(result);
  if (typeof body.id === "string") {
    openTx.set(body.id, { deadline: Date.now() + input.timeout });
    const out = { id: body.id };
    if (wantsTraces(req)) out.extensions = { logs: [], traces: spans ?? [] };
    return send(res, 200, out);
  }
  if (wantsTraces(req)) body.extensions = { logs: [], traces: spans ?? [] };
  send(res, txErrorStatus(body), body);
}

async function handleTxEnd(req, res, id, op) {
  await readBody(req);
  if (graphql) {
    const failure = await ownClose(id, op === "commit" ? "committed" : "rolled back");
    return failure ? send(res, txErrorStatus(failure), failure) : send(res, 200, {});
  }
  if (!knownTx(id)) return send(res, 404, notFoundError());
  const method = op === "commit" ? "commitTransaction" : "rollbackTransaction";
  const { result, spans } = await callEngine(method, (t) => [id, t], traceparentOf(req));
  const body = JSON.parse(result);
  const failed = body && typeof body === "object" && body.error_code !== undefined;
  if (!failed || txErrorStatus(body) === 422) closeTx(id);
  if (wantsTraces(req)) body.extensions = { logs: [], traces: spans ?? [] };
  send(res, failed ? txErrorStatus(body) : 200, failed ? body : wantsTraces(req) ? { extensions: body.extensions } : {});
}

async function handleMetrics(req, res, query) {
  const raw = (await readBody(req)).toString("utf8");
  let labels = {};
  try {
    const parsed = JSON.parse(raw);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) labels = parsed;
  } catch {}
  if (query.includes("format=json")) return send(res, 200, metricsJson(labels));
  res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
  res.end(prometheus(labels));
}

const buildInfo = wasmRuntime.getBuildTimeInfo?.() ?? {};
let inFlight = 0;
let stopping = false;

async function route(req, res) {
  const started = process.hrtime.bigint();
  const [pathname, query = ""] = (req.url ?? "/").split("?");
  if (req.method === "POST" && pathname.startsWith("/transaction")) {
    const sections = pathname.split("/");
    if (sections.length === 3 && sections[2] === "start") return handleTxStart(req, res);
    if (sections.length === 4 && (sections[3] === "commit" || sections[3] === "rollback")) {
      return handleTxEnd(req, res, sections[2], sections[3]);
    }
    await readBody(req);
    return send(res, 400, `wrong transaction handler path: ${pathname}`, { json: false });
  }
  if ((req.method === "GET" || req.method === "POST") && pathname.startsWith("/metrics") && opts.metrics) {
    return handleMetrics(req, res, query);
  }
  if (req.method === "POST" && pathname === "/") return handleQuery(req, res, started);
  await readBody(req);
  if (req.method === "GET" && pathname === "/status") return send(res, 200, { status: "ok" }, { elapsedSince: started });
  if (req.method === "GET" && pathname === "/server_info") {
    const info = { commit: buildInfo.commit ?? "unknown", version: buildInfo.version ?? "unknown", primary_connector: provider };
    return send(res, 200, info, { elapsedSince: started });
  }
  res.writeHead(404, { "content-length": "0", "x-elapsed": String(Number((process.hrtime.bigint() - started) / 1000n)) });
  res.end();
}

function serveRequest(req, res) {
  inFlight++;
  res.on("close", () => inFlight--);
  route(req, res).catch((e) => {
    if (e instanceof WebAssembly.RuntimeError) panic(e);
    if (!res.headersSent) send(res, 500, { is_panic: false, message: String(e?.message ?? e), backtrace: null });
  });
}
const server = http.createServer(serveRequest);
server.keepAliveTimeout = 65_000;
if (process.env.PDP_BENCH_TCP) {
  const [host, port] = process.env.PDP_BENCH_TCP.split(":");
  const bench = http.createServer(serveRequest);
  bench.keepAliveTimeout = 65_000;
  bench.listen(Number(port), host, () =>
    process.stdout.write(JSON.stringify({ pdp_bench_tcp: { port: bench.address().port } }) + "\n"),
  );
}

const where = opts.unixPath ?? `${opts.host}:${opts.port}`;
if (opts.unixPath) fs.rmSync(opts.unixPath, { force: true });
await new Promise((resolve, reject) => {
  server.once("error", reject);
  if (opts.unixPath) server.listen(opts.unixPath, resolve);
  else server.listen(opts.port, opts.host, resolve);
}).catch((e) => failStart(`cannot listen on ${where}: ${e.message}`));

if (opts.unixPath) {
  logLine("INFO", "query_engine::server", {
    message: `Started query engine http server on unix:${opts.unixPath}`,
    unix_path: opts.unixPath,
  });
} else {
  const address = server.address();
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  logLine("INFO", "query_engine::server", {
    message: `Started query engine http server on http://${shownHost}:${address.port}`,
    ip: address.address,
    port: String(address.port),
  });
}

async function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeIdleConnections?.();
  const until = Date.now() + SHUTDOWN_GRACE_MS;
  while (inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  for (const id of [...ownTx.keys()]) await ownClose(id, "rolled back").catch(() => {});
  try {
    await callEngine("disconnect", (t) => [t]);
  } catch {}
  try {
    await (graphql ? pgPool.end() : adapter.dispose());
  } catch {}
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
if (!process.env.PDP_QE_IGNORE_STDIN) {
  process.stdin.on("end", shutdown);
  process.stdin.on("close", shutdown);
  process.stdin.resume();
}
