// TEST DOUBLE of Prisma's native `query-engine` binary (4.x–6.x HTTP server mode, protocols.md §4).
//
// Why it exists: the real native engine cannot be downloaded on the machines pdp is tested on, and the WASM
// engine (crates/pdp-serve/launchers/wasm-engine.mjs) speaks only the JSON protocol. This double stands in for
// the native binary where a test needs (a) Prisma 4.x's GraphQL protocol or (b) faults a real engine won't
// produce on demand. Tests that use it must say so. Node built-ins only; run `node engine-double.mjs [flags]`.
//
// What it does, like the native binary:
//   flags   --datamodel-path FILE (env PRISMA_DML_PATH) | --datamodel B64|TEXT (env PRISMA_DML),
//           --overwrite-datasources JSON|B64 (env OVERWRITE_DATASOURCES), -H/--host, -p/--port (0 = ephemeral,
//           default 4466), --engine-protocol graphql|json (env PRISMA_ENGINE_PROTOCOL; default: 4.x rule, JSON
//           iff the generator has previewFeatures "jsonProtocol", else GraphQL), -r/--enable-raw-queries,
//           -m/--enable-metrics, --dataproxy-metric-override, --enable-telemetry-in-response,
//           -o/--log-queries (env LOG_QUERIES), -g/--enable-playground, -d/--debug, --enable-open-telemetry,
//           --open-telemetry-endpoint X, --log-format X, `--version` (prints "query-engine <hash>").
//   DB URL  OVERWRITE_DATASOURCES first, else the env var named by the schema's `url = env("…")`, else a
//           literal `url`. Missing → P1012-style error on stderr, exit 1. The URL is never connected to.
//   ready   one stdout line {"timestamp":…,"level":"INFO","fields":{"message":"Started query engine http server
//           on http://H:P","ip":"H","port":"P"},"target":"query_engine::server"}
//   routes  POST / (query/batch in the chosen protocol; wrong protocol → 422 "Error parsing <Json|Graphql>
//           query. Ensure that engine protocol of the client and the engine matches. …"), POST
//           /transaction/start|{id}/commit|{id}/rollback (404 unknown, 422 closed/expired, P2028 bodies),
//           GET /status, GET /server_info, GET|POST /metrics (with -m; Prometheus or ?format=json),
//           GET / playground stub with -g, everything else 404. x-elapsed / QE-Content-Length headers.
//   data    an in-memory store built from the schema's models (scalar fields, @id @default(autoincrement()),
//           @default(now()), @default(<literal>), @unique). GraphQL: findMany/findFirst/findUnique
//           (where: field equality, AND of fields), createOne(data:), deleteMany, aggregateX { _count { _all } },
//           selection sets of scalar fields; mutation queryRaw/executeRaw echo their arguments
//           ({"data":{"queryRaw":[{"query":…,"parameters":…}]}}, executeRaw → 0). JSON protocol: the same
//           operations with `$scalars` / field selections. Unique violations → 200 {"errors":[…P2002…]}.
//           Writes inside an interactive transaction are undone by rollback/expiry (no isolation otherwise).
//
// What it deliberately does NOT do: SQL, relations/nested writes, filters beyond equality, ordering,
// pagination, other actions (they answer a 200 errors body "… is not supported by the engine double"),
// telemetry capture (extensions are never added), /sdl, /dmmf, unix sockets.
//
// Fault injection (environment):
//   PDP_DOUBLE_START_DELAY_MS=N   sleep N ms before binding (a slow engine start)
//   PDP_DOUBLE_FAIL_START=1|Pxxxx print the engine's start-failure line on stderr ({"is_panic":false,
//                                 "message":"Can't reach database server at …","meta":{…},"error_code":"P1001"};
//                                 a value starting with P picks that code) and exit 1 without listening
//   PDP_DOUBLE_CRASH_AFTER=N      answer N requests (any route), then exit with status 1
//   PDP_DOUBLE_PANIC_ON=TEXT      a request whose "<METHOD> <path> <body>" contains TEXT gets HTTP 500
//                                 {"is_panic":true,"message":"PANIC: …","backtrace":"…"}
//   PDP_DOUBLE_RECORD=FILE        write {"argv":[…],"env":{…},"protocol":…,"datasource":{…}} there at start
//                                 (the full environment: tests run without secrets) so a test can check
//                                 e.g. that pdp passed --engine-protocol and never --enable-playground.
// It exits 0 on SIGTERM/SIGINT. It ignores stdin, as the native engine does.

import http from "node:http";
import fs from "node:fs";
import crypto from "node:crypto";

const ENGINE_HASH = "4bc8b6e1b66cb932731fb1bdbbc550d1e010de81"; // 4.16.2's engine; shown by --version only
const TX_NOT_FOUND =
  "Transaction not found. Transaction ID is invalid, refers to an old closed transaction Prisma doesn't have " +
  "information about anymore, or was obtained before disconnecting.";

const timestamp = () => new Date().toISOString().replace(/Z$/, "000Z");
const logLine = (level, target, fields) =>
  process.stdout.write(JSON.stringify({ timestamp: timestamp(), level, fields, target }) + "\n");
const fail = (body) => {
  process.stderr.write(JSON.stringify(body) + "\n");
  process.exit(1);
};
const failText = (message) => fail({ is_panic: false, message, backtrace: null });

// ------------------------------------------------------------------------------------------- arguments

const argv = process.argv.slice(2);
const opts = {
  datamodelPath: process.env.PRISMA_DML_PATH,
  datamodel: process.env.PRISMA_DML,
  overwrite: process.env.OVERWRITE_DATASOURCES,
  host: "127.0.0.1",
  port: 4466,
  protocol: process.env.PRISMA_ENGINE_PROTOCOL,
  metrics: false,
  playground: false,
  logQueries: process.env.LOG_QUERIES !== undefined,
};
for (let i = 0; i < argv.length; i++) {
  let arg = argv[i];
  let value;
  const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
  if (eq > 0) [arg, value] = [arg.slice(0, eq), arg.slice(eq + 1)];
  const next = () => (value !== undefined ? value : i + 1 < argv.length ? argv[++i] : failText(`missing value for ${arg}`));
  switch (arg) {
    case "--version": case "-V": process.stdout.write(`query-engine ${ENGINE_HASH}\n`); process.exit(0);
    case "--datamodel-path": opts.datamodelPath = next(); break;
    case "--datamodel": opts.datamodel = next(); break;
    case "--overwrite-datasources": opts.overwrite = next(); break;
    case "-H": case "--host": opts.host = next(); break;
    case "-p": case "--port": opts.port = Number(next()); break;
    case "--engine-protocol": opts.protocol = next(); break;
    case "-m": case "--enable-metrics": case "--dataproxy-metric-override": opts.metrics = true; break;
    case "-g": case "--enable-playground": opts.playground = true; break;
    case "-o": case "--log-queries": opts.logQueries = true; break;
    case "-r": case "--enable-raw-queries": case "-d": case "--debug": case "--enable-open-telemetry":
    case "--enable-telemetry-in-response": case "--legacy": break;
    case "--open-telemetry-endpoint": case "--log-format": case "-u": case "--unix-path": next(); break;
    default: failText(`error: Found argument '${argv[i]}' which wasn't expected, or isn't valid in this context`);
  }
}
if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) failText("invalid port");

function maybeBase64(text) {
  const t = text.trim();
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(t) && t.length % 4 === 0) {
    const d = Buffer.from(t, "base64");
    if (d.toString("base64") === t) return d.toString("utf8");
  }
  return text;
}

let schema;
if (opts.datamodelPath) {
  try {
    schema = fs.readFileSync(opts.datamodelPath, "utf8");
  } catch (e) {
    failText(`Error reading the datamodel at ${opts.datamodelPath}: ${e.message}`);
  }
} else if (opts.datamodel) {
  schema = maybeBase64(opts.datamodel);
} else {
  failText("Missing datamodel: pass --datamodel-path or PRISMA_DML_PATH");
}
const schemaNoComments = schema.replace(/\/\/[^\n]*/g, "");

// Protocol: explicit flag/env, else the 4.x rule (jsonProtocol preview feature ⇒ JSON, else GraphQL).
const previewJson = /previewFeatures\s*=\s*\[[^\]]*"jsonProtocol"/.test(schemaNoComments);
let protocol = (opts.protocol ?? (previewJson ? "json" : "graphql")).toLowerCase();
if (protocol !== "json" && protocol !== "graphql") failText(`invalid value '${opts.protocol}' for '--engine-protocol'`);
const protocolName = protocol === "json" ? "Json" : "Graphql";

// Datasource URL, the native ways.
const dsBlock = /datasource\s+(\w+)\s*\{([^}]*)\}/m.exec(schemaNoComments);
const dsName = dsBlock?.[1] ?? "db";
const provider = /provider\s*=\s*"([^"]+)"/.exec(dsBlock?.[2] ?? "")?.[1] ?? "unknown";
let datasource;
if (opts.overwrite) {
  try {
    const list = JSON.parse(maybeBase64(opts.overwrite));
    const entry = list.find((d) => d.name === dsName) ?? list[0];
    datasource = { source: "overwrite", name: entry.name, url: entry.url };
  } catch {
    failText("Invalid --overwrite-datasources: expected a JSON array of {name, url}");
  }
} else {
  const envName = /url\s*=\s*env\(\s*"([^"]+)"\s*\)/.exec(dsBlock?.[2] ?? "")?.[1];
  const literal = /url\s*=\s*"([^"]+)"/.exec(dsBlock?.[2] ?? "")?.[1];
  if (envName !== undefined) {
    if (process.env[envName] === undefined) {
      fail({
        is_panic: false,
        message: `error: Environment variable not found: ${envName}.\n  -->  schema.prisma\n   | \n   |   url      = env("${envName}")\n   | \n\nValidation Error Count: 1`,
        meta: { full_error: `Environment variable not found: ${envName}.` },
        error_code: "P1012",
      });
    }
    datasource = { source: `env:${envName}`, name: dsName, url: process.env[envName] };
  } else if (literal !== undefined) {
    datasource = { source: "literal", name: dsName, url: literal };
  } else {
    failText("The datasource has no url");
  }
}

if (process.env.PDP_DOUBLE_RECORD) {
  fs.writeFileSync(
    process.env.PDP_DOUBLE_RECORD,
    JSON.stringify({ argv, env: process.env, protocol, datasource, pid: process.pid }, null, 2),
  );
}

// ------------------------------------------------------------------------------------------- faults at start

const startDelay = Number(process.env.PDP_DOUBLE_START_DELAY_MS ?? 0);
if (startDelay > 0) await new Promise((r) => setTimeout(r, startDelay));
if (process.env.PDP_DOUBLE_FAIL_START) {
  let location = "localhost:5432";
  try {
    const u = new URL(datasource.url);
    location = `${u.hostname}:${u.port || (provider === "mysql" ? 3306 : 5432)}`;
  } catch {}
  const code = /^P\d{4}$/.test(process.env.PDP_DOUBLE_FAIL_START) ? process.env.PDP_DOUBLE_FAIL_START : "P1001";
  const [host, port] = location.split(":");
  fail(
    code === "P1001"
      ? {
          is_panic: false,
          message: `Can't reach database server at \`${host}\`:\`${port}\`\n\nPlease make sure your database server is running at \`${host}\`:\`${port}\`.`,
          meta: { database_host: host, database_port: Number(port) },
          error_code: "P1001",
        }
      : { is_panic: false, message: `Engine double: injected start failure ${code}`, meta: {}, error_code: code },
  );
}

// ------------------------------------------------------------------------------------------- the store

/** model name → { fields: [{name, type, optional, list, id, unique, default}], rows: [], nextId } */
const models = new Map();
const SCALARS = new Set(["String", "Int", "BigInt", "Float", "Decimal", "Boolean", "DateTime", "Json", "Bytes"]);
for (const m of schemaNoComments.matchAll(/model\s+(\w+)\s*\{([^}]*)\}/g)) {
  const fields = [];
  for (const line of m[2].split("\n")) {
    const f = /^\s*(\w+)\s+(\w+)(\[\])?(\?)?(.*)$/.exec(line);
    if (!f || f[1].startsWith("@@") || !SCALARS.has(f[2])) continue;
    const attrs = f[5];
    const def = /@default\(([^)]*\)?)\)/.exec(attrs)?.[1];
    fields.push({ name: f[1], type: f[2], list: !!f[3], optional: !!f[4], id: /@id\b/.test(attrs), unique: /@unique\b/.test(attrs), default: def });
  }
  models.set(m[1], { name: m[1], fields, rows: [], nextId: 1 });
}

class QueryError extends Error {
  constructor(userFacing, text) {
    super(userFacing.message);
    this.userFacing = userFacing;
    this.text = text ?? userFacing.message;
  }
}
const unsupported = (what) =>
  new QueryError({ is_panic: false, message: `${what} is not supported by the engine double`, backtrace: null });

function modelOf(name) {
  const m = models.get(name);
  if (!m) throw new QueryError({ is_panic: false, message: `Model ${name} does not exist in the engine double's schema`, backtrace: null });
  return m;
}

function defaultFor(field, model) {
  const d = field.default;
  if (d === undefined) return field.optional ? null : undefined;
  if (d === "autoincrement()") return model.nextId++;
  if (d === "now()") return new Date().toISOString();
  if (d === "uuid()" || d === "cuid()") return crypto.randomUUID();
  if (d === "true" || d === "false") return d === "true";
  if (/^-?\d+(\.\d+)?$/.test(d)) return Number(d);
  if (/^".*"$/.test(d)) return JSON.parse(d);
  return d;
}

const matches = (row, where) => Object.entries(where ?? {}).every(([k, v]) => {
  if (v && typeof v === "object" && !Array.isArray(v) && "equals" in v) return row[k] === v.equals;
  if (v && typeof v === "object" && !Array.isArray(v)) return Object.entries(v).every(([kk, vv]) => row[kk] === vv); // compound unique
  return row[k] === v;
});

/** Executes one operation. `undo` collects inverse actions when inside an interactive transaction. */
function execute(op, modelName, args, undo) {
  const model = modelOf(modelName);
  switch (op) {
    case "findMany": return model.rows.filter((r) => matches(r, args.where));
    case "findFirst": case "findUnique": return model.rows.find((r) => matches(r, args.where)) ?? null;
    case "count": return model.rows.filter((r) => matches(r, args.where)).length;
    case "createOne": {
      const data = args.data ?? {};
      const row = {};
      for (const f of model.fields) {
        row[f.name] = f.name in data ? data[f.name] : defaultFor(f, model);
        if (row[f.name] === undefined) {
          throw new QueryError({ is_panic: false, message: `Argument \`${f.name}\` is missing.`, backtrace: null });
        }
        if (f.id && f.default === "autoincrement()" && f.name in data && typeof data[f.name] === "number") {
          model.nextId = Math.max(model.nextId, data[f.name] + 1);
        }
      }
      for (const f of model.fields.filter((f) => f.id || f.unique)) {
        if (model.rows.some((r) => r[f.name] === row[f.name])) {
          const msg = `Unique constraint failed on the fields: (\`${f.name}\`)`;
          throw new QueryError(
            { is_panic: false, message: msg, meta: { target: [f.name] }, error_code: "P2002" },
            `KnownError { message: "${msg.replace(/"/g, '\\"')}", meta: Object {"target": Array [String("${f.name}")]}, error_code: "P2002" }`,
          );
        }
      }
      model.rows.push(row);
      undo?.push(() => { model.rows = model.rows.filter((r) => r !== row); });
      return row;
    }
    case "deleteMany": {
      const gone = model.rows.filter((r) => matches(r, args.where));
      model.rows = model.rows.filter((r) => !gone.includes(r));
      undo?.push(() => { model.rows.push(...gone); });
      return { count: gone.length };
    }
    default: throw unsupported(`Operation '${op}'`);
  }
}

/** Applies a selection: `true` (all scalars) or {field: true | {...}} with `_count: {_all}` for aggregates. */
function project(value, selection) {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => project(v, selection));
  if (selection === true) return value;
  const out = {};
  for (const key of Object.keys(selection)) if (key in value) out[key] = value[key];
  return out;
}

// ------------------------------------------------------------------------------------------- GraphQL

/** Tokens: names, strings, numbers and the punctuation GraphQL uses. */
function tokenize(src) {
  const tokens = [];
  const re = /\s+|,|#[^\n]*|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|([{}()[\]:$!=])/gy;
  let m;
  while (re.lastIndex < src.length) {
    const at = re.lastIndex;
    m = re.exec(src);
    if (!m || m.index !== at) throw new Error(`unexpected character at ${at}`);
    if (m[1]) tokens.push({ t: "str", v: JSON.parse(m[1]) });
    else if (m[2]) tokens.push({ t: "num", v: Number(m[2]) });
    else if (m[3]) tokens.push({ t: "name", v: m[3] });
    else if (m[4]) tokens.push({ t: m[4] });
  }
  return tokens;
}

function parseGraphql(src) {
  const tk = tokenize(src);
  let i = 0;
  const peek = () => tk[i];
  const expect = (t) => {
    const x = tk[i++];
    if (!x || x.t !== t) throw new Error(`expected ${t}`);
    return x;
  };
  const value = () => {
    const x = tk[i++];
    if (!x) throw new Error("unexpected end");
    if (x.t === "str" || x.t === "num") return x.v;
    if (x.t === "name") return x.v === "true" ? true : x.v === "false" ? false : x.v === "null" ? null : x.v; // enums as strings
    if (x.t === "[") {
      const list = [];
      while (peek()?.t !== "]") list.push(value());
      i++;
      return list;
    }
    if (x.t === "{") {
      const obj = {};
      while (peek()?.t !== "}") {
        const k = expect("name").v;
        expect(":");
        obj[k] = value();
      }
      i++;
      return obj;
    }
    throw new Error(`unexpected ${x.t}`);
  };
  const selectionSet = () => {
    expect("{");
    const fields = [];
    while (peek()?.t !== "}") {
      const name = expect("name").v;
      let args = {};
      if (peek()?.t === "(") {
        i++;
        while (peek()?.t !== ")") {
          const k = expect("name").v;
          expect(":");
          args[k] = value();
        }
        i++;
      }
      const sub = peek()?.t === "{" ? selectionSet() : undefined;
      fields.push({ name, args, sub });
    }
    i++;
    return fields;
  };
  let kind = "query";
  if (peek()?.t === "name" && (peek().v === "query" || peek().v === "mutation")) {
    kind = tk[i++].v;
    if (peek()?.t === "name") i++; // operation name
  }
  const fields = selectionSet();
  if (i !== tk.length) throw new Error("trailing tokens");
  if (fields.length !== 1) throw new Error("expected exactly one root field");
  return { kind, field: fields[0] };
}

const toSelection = (sub) => (sub ? Object.fromEntries(sub.map((f) => [f.name, f.sub ? toSelection(f.sub) : true])) : true);
const ROOT = /^(findMany|findFirst|findUnique|createOne|deleteMany|aggregate)(\w+)$/;

function runGraphqlSingle(body, undo) {
  const { field } = parseGraphql(body.query);
  if (field.name === "queryRaw") return { queryRaw: [{ query: field.args.query ?? null, parameters: field.args.parameters ?? null }] };
  if (field.name === "executeRaw") return { executeRaw: 0 };
  const m = ROOT.exec(field.name);
  if (!m) throw unsupported(`Root field '${field.name}'`);
  const [, op, modelName] = m;
  if (op === "aggregate") {
    const count = execute("count", modelName, field.args, undo);
    return { [field.name]: { _count: { _all: count } } };
  }
  const result = execute(op, modelName, field.args, undo);
  return { [field.name]: project(result, toSelection(field.sub)) };
}

// ------------------------------------------------------------------------------------------- JSON protocol

const JSON_OPS = { findMany: "findMany", findFirst: "findFirst", findUnique: "findUnique", createOne: "createOne", deleteMany: "deleteMany", aggregate: "aggregate" };

function jsonSelection(sel) {
  if (!sel || sel.$scalars) return true;
  return Object.fromEntries(Object.entries(sel).filter(([k]) => !k.startsWith("$")).map(([k, v]) => [k, v === true ? true : jsonSelection(v.selection)]));
}
const unwrapTagged = (v) =>
  v && typeof v === "object" && !Array.isArray(v)
    ? "$type" in v ? v.value : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapTagged(x)]))
    : v;

function runJsonSingle(q, undo) {
  const args = unwrapTagged(q.query?.arguments ?? {});
  if (q.action === "queryRaw") return { queryRaw: [{ query: args.query ?? null, parameters: args.parameters ?? null }] };
  if (q.action === "executeRaw") return { executeRaw: 0 };
  const op = JSON_OPS[q.action];
  if (!op) throw unsupported(`Operation '${q.action}'`);
  const root = `${q.action}${q.modelName}`;
  if (op === "aggregate") return { [root]: { _count: { _all: execute("count", q.modelName, args, undo) } } };
  const result = execute(op, q.modelName, args, undo);
  const tagged = (row) => row && Object.fromEntries(Object.entries(row).map(([k, v]) => {
    const f = modelOf(q.modelName).fields.find((f) => f.name === k);
    return [k, f?.type === "DateTime" && v !== null ? { $type: "DateTime", value: v } : v];
  }));
  const projected = project(result, jsonSelection(q.query?.selection));
  return { [root]: Array.isArray(projected) ? projected.map(tagged) : op === "deleteMany" ? projected : tagged(projected) };
}

// ------------------------------------------------------------------------------------------- requests

/** Returns the parsed body when it is in the engine's protocol, else undefined (→ 422). */
function validBody(text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    return { error: e.message };
  }
  const gqlSingle = (b) => b && typeof b === "object" && typeof b.query === "string";
  const jsonSingle = (b) => b && typeof b === "object" && typeof b.action === "string" && typeof b.query === "object";
  const single = protocol === "graphql" ? gqlSingle : jsonSingle;
  if (body && Array.isArray(body.batch)) {
    const txOk = protocol === "graphql"
      ? body.transaction === undefined || typeof body.transaction === "boolean"
      : body.transaction === undefined || body.transaction === null || typeof body.transaction === "object";
    if (txOk && body.batch.every(single)) return { body };
  } else if (single(body)) {
    return { body };
  }
  return { error: `data did not match any variant of untagged enum ${protocol === "graphql" ? "GraphqlBody" : "JsonBody"}` };
}

const errorEntry = (e, batchIdx) => {
  const ufe = e instanceof QueryError ? { ...e.userFacing } : { is_panic: false, message: String(e.message), backtrace: null };
  if (batchIdx !== undefined) ufe.batch_request_idx = batchIdx;
  return { error: e instanceof QueryError ? e.text : String(e.message), user_facing_error: ufe };
};

let queryCount = 0;
function runOne(single, undo) {
  queryCount++;
  const data = protocol === "graphql" ? runGraphqlSingle(single, undo) : runJsonSingle(single, undo);
  if (opts.logQueries) {
    logLine("INFO", "quaint::connector::metrics", { message: "SELECT 1 /* engine double */", item_type: "query", is_query: true, query: "SELECT 1 /* engine double */", params: "[]", duration_ms: 0, result: "success" });
  }
  return data;
}

function runBody(body, tx) {
  if (!Array.isArray(body.batch)) {
    try {
      return { data: runOne(body, tx?.undo) };
    } catch (e) {
      return { errors: [errorEntry(e)] };
    }
  }
  const transactional = protocol === "graphql" ? body.transaction === true : body.transaction != null;
  if (transactional && !tx) {
    const undo = [];
    const results = [];
    for (const [idx, q] of body.batch.entries()) {
      try {
        results.push({ data: runOne(q, undo) });
      } catch (e) {
        for (const u of undo.reverse()) u();
        const entry = errorEntry(e, idx);
        entry.error = `Error in batch request ${idx}: ${entry.error}`;
        return { errors: [entry] };
      }
    }
    return { batchResult: results };
  }
  return {
    batchResult: body.batch.map((q) => {
      try {
        return { data: runOne(q, tx?.undo) };
      } catch (e) {
        return { errors: [errorEntry(e)] };
      }
    }),
  };
}

// ------------------------------------------------------------------------------------------- transactions

/** id → { state: "open"|"committed"|"rolled back"|"expired", timeout, started, undo, timer } */
const txs = new Map();
const txError = (inner) => ({ is_panic: false, message: `Transaction API error: ${inner}`, meta: { error: inner }, error_code: "P2028" });
function closedReason(tx, op) {
  if (tx.state === "committed") return `Transaction already closed: A ${op} cannot be executed on a committed transaction.`;
  if (tx.state === "rolled back") return `Transaction already closed: A ${op} cannot be executed on a transaction that was rolled back.`;
  return `Transaction already closed: A ${op} cannot be executed on an expired transaction. The timeout for this transaction was ${tx.timeout} ms, however ${Date.now() - tx.started} ms passed since the start of the transaction. Consider increasing the interactive transaction timeout or doing less work in the transaction.`;
}
function endTx(tx, state) {
  clearTimeout(tx.timer);
  if (state !== "committed") for (const u of tx.undo.reverse()) u();
  tx.undo = [];
  tx.state = state;
}

// ------------------------------------------------------------------------------------------- metrics

const counters = { prisma_client_queries_total: 0, prisma_datasource_queries_total: 0, prisma_pool_connections_opened_total: 1 };
function prometheus(labels) {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",");
  const lab = l ? `{${l}}` : "";
  const out = [];
  for (const [k, v] of Object.entries(counters)) out.push(`# HELP ${k} ${k}`, `# TYPE ${k} counter`, `${k}${lab} ${v}`);
  out.push("# HELP prisma_pool_connections_open prisma_pool_connections_open", "# TYPE prisma_pool_connections_open gauge", `prisma_pool_connections_open${lab} 1`);
  return out.join("\n") + "\n\n";
}

// ------------------------------------------------------------------------------------------- HTTP

const panicOn = process.env.PDP_DOUBLE_PANIC_ON;
const crashAfter = process.env.PDP_DOUBLE_CRASH_AFTER ? Number(process.env.PDP_DOUBLE_CRASH_AFTER) : undefined;
let requests = 0;

function send(res, status, body, { json = true, started } = {}) {
  const bytes = Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  const headers = { "content-length": String(bytes.length) };
  if (json) Object.assign(headers, { "content-type": "application/json", "QE-Content-Length": String(bytes.length) });
  if (started !== undefined) headers["x-elapsed"] = String(Number((process.hrtime.bigint() - started) / 1000n));
  res.writeHead(status, headers);
  res.end(bytes);
}

function handle(req, text, res) {
  const started = process.hrtime.bigint();
  const [path, query = ""] = (req.url ?? "/").split("?");
  if (panicOn && `${req.method} ${path} ${text}`.includes(panicOn)) {
    return send(res, 500, { is_panic: true, message: `PANIC: injected by PDP_DOUBLE_PANIC_ON (${panicOn})`, backtrace: "   0: engine_double::panic\n" });
  }
  if (req.method === "POST" && path.startsWith("/transaction")) {
    const s = path.split("/");
    if (s.length === 3 && s[2] === "start") {
      let o;
      try {
        o = JSON.parse(text);
      } catch {}
      if (!o || !Number.isInteger(o.max_wait) || !Number.isInteger(o.timeout)) return send(res, 400, "Invalid transaction options", { json: false });
      const id = o.new_tx_id ?? crypto.randomBytes(12).toString("hex");
      const tx = { state: "open", timeout: o.timeout, started: Date.now(), undo: [] };
      tx.timer = setTimeout(() => tx.state === "open" && endTx(tx, "expired"), o.timeout);
      txs.set(id, tx);
      return send(res, 200, { id });
    }
    if (s.length === 4 && (s[3] === "commit" || s[3] === "rollback")) {
      const tx = txs.get(s[2]);
      if (!tx) return send(res, 404, txError(TX_NOT_FOUND));
      if (tx.state !== "open") return send(res, 422, txError(closedReason(tx, s[3])));
      endTx(tx, s[3] === "commit" ? "committed" : "rolled back");
      return send(res, 200, {});
    }
    return send(res, 400, `wrong transaction handler path: ${path}`, { json: false });
  }
  if ((req.method === "GET" || req.method === "POST") && path.startsWith("/metrics") && opts.metrics) {
    let labels = {};
    try {
      labels = JSON.parse(text) ?? {};
    } catch {}
    if (query.includes("format=json")) {
      return send(res, 200, {
        counters: Object.entries(counters).map(([key, value]) => ({ key, labels, value, description: key })),
        gauges: [{ key: "prisma_pool_connections_open", labels, value: 1, description: "prisma_pool_connections_open" }],
        histograms: [],
      });
    }
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
    return res.end(prometheus(labels));
  }
  if (req.method === "POST" && path === "/") {
    const { body, error } = validBody(text);
    if (error) {
      return send(res, 422, { is_panic: false, message: `Error parsing ${protocolName} query. Ensure that engine protocol of the client and the engine matches. ${error}`, backtrace: null }, { started });
    }
    counters.prisma_client_queries_total++;
    counters.prisma_datasource_queries_total++;
    const txId = req.headers["x-transaction-id"];
    let tx;
    if (txId !== undefined) {
      tx = txs.get(txId);
      const inner = !tx ? TX_NOT_FOUND : tx.state !== "open" ? closedReason(tx, "query") : undefined;
      if (inner) return send(res, 200, { errors: [{ error: inner, user_facing_error: txError(inner) }] }, { started });
    }
    return send(res, 200, runBody(body, tx), { started });
  }
  if (req.method === "GET" && path === "/status") return send(res, 200, { status: "ok" }, { started });
  if (req.method === "GET" && path === "/server_info") {
    return send(res, 200, { commit: ENGINE_HASH, version: "engine-double", primary_connector: provider }, { started });
  }
  if (req.method === "GET" && path === "/" && opts.playground) {
    res.writeHead(200, { "content-type": "text/html" });
    return res.end("<!doctype html><title>GraphQL Playground (engine double)</title>");
  }
  res.writeHead(404, { "content-length": "0", "x-elapsed": String(Number((process.hrtime.bigint() - started) / 1000n)) });
  res.end();
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    requests++;
    try {
      handle(req, Buffer.concat(chunks).toString("utf8"), res);
    } catch (e) {
      send(res, 500, { is_panic: true, message: String(e?.message ?? e), backtrace: String(e?.stack ?? "") });
    }
    if (crashAfter !== undefined && requests >= crashAfter) {
      res.on("finish", () => process.exit(1));
    }
  });
});

server.on("error", (e) => failText(`Error binding ${opts.host}:${opts.port}: ${e.message}`));
server.listen(opts.port, opts.host, () => {
  const a = server.address();
  const shown = a.family === "IPv6" ? `[${a.address}]` : a.address;
  logLine("INFO", "query_engine::server", {
    message: `Started query engine http server on http://${shown}:${a.port}`,
    ip: a.address,
    port: String(a.port),
  });
});
const stop = () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 2000).unref();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
