// pdp's launcher for the embedded PostgreSQL: PGlite (Postgres compiled to WASM) behind
// @electric-sql/pglite-socket's wire-protocol server. Written next to the provisioned packages and
// started by `pdp serve` and `pdp migrate` when pdp.toml configures no database.
//
// Inputs (environment): PDP_PGLITE_DIR (data directory, created on first start), PDP_PGLITE_SOCKET (the
// Unix socket to listen on, `<private dir>/.s.PGSQL.5432`: PostgreSQL clients find it from the directory),
// PDP_PGLITE_MAX_CONNECTIONS. It never listens on TCP.
// Output: one line `{"pdp_ready":{"path":"<socket>"}}` on stdout once it accepts connections.
// It exits (closing the database cleanly) when its stdin closes, on SIGTERM/SIGINT, or with code 1 and
// a message on stderr if it cannot start. PGlite runs one query at a time; connections queue.
import { rmSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const dir = process.env.PDP_PGLITE_DIR;
const socket = process.env.PDP_PGLITE_SOCKET;
if (!dir || !socket) {
  process.stderr.write("pdp pglite launcher: PDP_PGLITE_DIR and PDP_PGLITE_SOCKET must be set\n");
  process.exit(1);
}
let db, server;
try {
  db = await PGlite.create(dir);
  // A socket file left by a killed predecessor would make listen() fail.
  rmSync(socket, { force: true });
  server = new PGLiteSocketServer({
    db,
    path: socket,
    maxConnections: Number(process.env.PDP_PGLITE_MAX_CONNECTIONS || "32"),
  });
  await server.start();
} catch (err) {
  process.stderr.write(`cannot start the embedded PostgreSQL in ${dir}: ${err?.message ?? err}\n`);
  process.exit(1);
}
process.stdout.write(JSON.stringify({ pdp_ready: { path: socket } }) + "\n");

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
