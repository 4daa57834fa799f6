// pdp's launcher for the embedded PostgreSQL: PGlite (Postgres compiled to WASM) behind
// @electric-sql/pglite-socket's wire-protocol server. Written next to the provisioned packages and
// started by `pdp serve` and `pdp migrate` when pdp.toml configures no database.
//
// Inputs (environment): PDP_PGLITE_DIR (data directory, created on first start), PDP_PGLITE_PORT (loopback
// port, 0 = any free port), PDP_PGLITE_MAX_CONNECTIONS.
// Output: one line `{"pdp_ready":{"host":"127.0.0.1","port":N}}` on stdout once it accepts connections.
// It exits (closing the database cleanly) when its stdin closes, on SIGTERM/SIGINT, or with code 1 and
// a message on stderr if it cannot start. PGlite runs one query at a time; connections queue.
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const dir = process.env.PDP_PGLITE_DIR;
if (!dir) {
  process.stderr.write("pdp pglite launcher: PDP_PGLITE_DIR is not set\n");
  process.exit(1);
}
let db, server;
try {
  db = await PGlite.create(dir);
  server = new PGLiteSocketServer({
    db,
    host: "127.0.0.1",
    port: Number(process.env.PDP_PGLITE_PORT || "0"),
    maxConnections: Number(process.env.PDP_PGLITE_MAX_CONNECTIONS || "32"),
  });
  await server.start();
} catch (err) {
  process.stderr.write(`cannot start the embedded PostgreSQL in ${dir}: ${err?.message ?? err}\n`);
  process.exit(1);
}
const port = Number(server.getServerConn().split(":").pop());
process.stdout.write(JSON.stringify({ pdp_ready: { host: "127.0.0.1", port } }) + "\n");

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.stop().catch(() => {});
  await db.close().catch(() => {});
  process.exit(0);
};
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
