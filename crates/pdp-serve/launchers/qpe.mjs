// pdp's launcher for @prisma/query-plan-executor (a library with no CLI of its own). Written next to the
// provisioned packages by `pdp serve` / `pdp engines fetch`; started and supervised by `pdp serve`.
//
// Inputs (environment, so the database URL never appears in a process listing):
//   PDP_QPE_DATABASE_URL          the database (never printed)
//   PDP_QPE_SOCKET                the Unix socket to listen on (in pdp's private 0700 directory; a stale
//                                 file there is removed first). It never listens on TCP.
//   PDP_QPE_POOL_MAX              the most database connections this executor opens (its share of pdp's
//                                 `connection-limit`). The executor builds its driver pool from the URL
//                                 alone: for MySQL/MariaDB and SQL Server the URL's `connectionLimit` says
//                                 it; for PostgreSQL node-postgres takes no pool size from a URL, so the
//                                 bundle is loaded with pg-pool's default size (10, used because the
//                                 executor passes none) set to this instead.
//   PDP_QPE_PG_POOL_LINE          PostgreSQL only: that default-size line, which pdp checked the bundle has
//                                 exactly once (a bundle without it is refused before this launcher runs).
//   PDP_QPE_QUERY_TIMEOUT_MS, PDP_QPE_MAX_TX_TIMEOUT_MS, PDP_QPE_MAX_TX_WAIT_MS, PDP_QPE_MAX_RESPONSE_SIZE
//   PDP_QPE_LOG_LEVEL             debug | info | warn | error | off
//   PDP_BENCH_TCP                 benchmarks only (`PDP_BENCH_CHILD_TCP`): also listen on this host:port, printed as
//                                 `{"pdp_bench_tcp":{"port":N}}`; pdp never connects there
// Output: one line `{"pdp_ready":{"path":"<socket>","version":"…"}}` on stdout once it serves;
// the executor's own JSON log lines otherwise. It exits when its stdin closes (pdp is gone or asks it to
// stop), on SIGTERM/SIGINT, or with code 1 (and a message on stderr) if it cannot start.
// Deliberately not here: retries, auth, limits beyond the executor's own options (pdp does those).
import { context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { createAdaptorServer } from "@hono/node-server";
import { readFileSync, rmSync } from "node:fs";
import Module, { createRequire } from "node:module";
import { dirname } from "node:path";

// The executor reads the active OpenTelemetry context for its logger; without a global context manager
// every request fails with "No active logger found".
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const need = (name) => {
  const value = process.env[name];
  if (value === undefined || value === "") {
    process.stderr.write(`pdp qpe launcher: ${name} is not set\n`);
    process.exit(1);
  }
  return value;
};

const require = createRequire(import.meta.url);
const version = require("@prisma/query-plan-executor/package.json").version;

const poolMax = (() => {
  const raw = need("PDP_QPE_POOL_MAX");
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`pdp qpe launcher: PDP_QPE_POOL_MAX must be a whole number of at least 1, not ${raw}\n`);
    process.exit(1);
  }
  return n;
})();

// PostgreSQL: pg-pool's default-size line in the executor's bundle (one CommonJS file), which pdp found
// there exactly once before starting this launcher; the bundle is compiled with that default set to `max`.
// Other databases: the bundle as it is (their drivers read the bound from the URL, below).
const loadExecutor = (max) => {
  const line = process.env.PDP_QPE_PG_POOL_LINE;
  if (!line) return require("@prisma/query-plan-executor");
  const entry = require.resolve("@prisma/query-plan-executor");
  const source = readFileSync(entry, "utf8");
  if (source.split(line).length !== 2 || !line.endsWith("|| 10;")) {
    process.stderr.write(`cannot bound the PostgreSQL pool of @prisma/query-plan-executor ${version}: its bundle changed\n`);
    process.exit(1);
  }
  const module = new Module(entry);
  module.filename = entry;
  module.paths = Module._nodeModulePaths(dirname(entry));
  module._compile(source.replace(line, line.replace("|| 10;", `|| ${max};`)), entry);
  return module.exports;
};

// The URL with the pool bound where the driver reads one from it (MySQL/MariaDB, SQL Server).
const boundedUrl = (url, max) => {
  if (/^(mysql|mariadb):\/\//.test(url)) {
    const u = new URL(url);
    u.searchParams.set("connectionLimit", String(max));
    return u.toString();
  }
  if (url.startsWith("sqlserver://")) {
    const parts = url.split(";").filter((p) => !/^\s*connectionLimit\s*=/i.test(p));
    return [...parts, `connectionLimit=${max}`].join(";");
  }
  return url;
};

const qpe = loadExecutor(poolMax);
const level = process.env.PDP_QPE_LOG_LEVEL || "warn";
const logger = qpe.createConsoleLogger("json", level);

await qpe.withActiveLogger(logger, async () => {
  let server;
  try {
    server = await qpe.Server.create({
      databaseUrl: boundedUrl(need("PDP_QPE_DATABASE_URL"), poolMax),
      queryTimeout: qpe.parseDuration(need("PDP_QPE_QUERY_TIMEOUT_MS")),
      maxTransactionTimeout: qpe.parseDuration(need("PDP_QPE_MAX_TX_TIMEOUT_MS")),
      maxTransactionWaitTime: qpe.parseDuration(need("PDP_QPE_MAX_TX_WAIT_MS")),
      maxResponseSize: qpe.parseSize(need("PDP_QPE_MAX_RESPONSE_SIZE")),
    });
  } catch (err) {
    process.stderr.write(`cannot start the query-plan executor: ${err?.message ?? err}\n`);
    process.exit(1);
  }
  // `hostname` is only the fallback for a request without a Host header (pdp always sends one).
  const http = createAdaptorServer({ fetch: server.fetch, hostname: "localhost" });
  const socket = need("PDP_QPE_SOCKET");
  rmSync(socket, { force: true });
  http.once("error", (err) => {
    process.stderr.write(`cannot listen on ${socket}: ${err?.message ?? err}\n`);
    process.exit(1);
  });
  http.listen(socket, () => {
    process.stdout.write(JSON.stringify({ pdp_ready: { path: socket, version } }) + "\n");
  });
  if (process.env.PDP_BENCH_TCP) {
    const [host, port] = process.env.PDP_BENCH_TCP.split(":");
    const bench = createAdaptorServer({ fetch: server.fetch, hostname: "localhost" });
    bench.keepAliveTimeout = 65_000;
    bench.listen(Number(port), host, () => {
      process.stdout.write(JSON.stringify({ pdp_bench_tcp: { port: bench.address().port } }) + "\n");
    });
  }
  // Keep idle connections longer than pdp's pool does (60 s): with Node's default of 5 s the executor
  // would close connections pdp still counts as reusable, and a request could meet a closing socket.
  http.keepAliveTimeout = 65_000;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    http.close();
    await server.shutdown().catch(() => {});
    process.exit(0);
  };
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.resume();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
});
