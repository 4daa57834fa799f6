//! End-to-end tests of the `pdp` binary, run the way a user runs it: a temp directory per test, the
//! real databases this machine runs, no test doubles. One test binary keeps link time down.

// The tests drive pdp and reference tools (sha256sum, the Prisma CLI) as a user would, so they spawn
// processes and read their own settings directly; the process/env rules are for pdp's own code.
#![allow(clippy::disallowed_methods)]

// Test helpers: a temp project, a `pdp` command with an isolated environment, database URLs.
mod support;

// `pdp --help`, `--version`, and every subcommand's help.
mod cli;
// `pdp config`: strict parsing errors, layering, secret masking.
mod config;
// `pdp doctor` against real PostgreSQL, MariaDB and SQLite, and unreachable ones.
mod doctor;
// What `pdp init` writes for CI and deployment, through actionlint, hadolint, yamllint, the compose and
// Kubernetes schemas; the image's build steps run outside Docker; the Windmill script under `deno check`.
mod deploy;
// `pdp serve` for Prisma 7: real Deno client, executor, PostgreSQL and PGlite; drain, restarts, limits.
mod serve;
// Interchangeability with the real Prisma CLI (6.19, JavaScript schema engine, SQLite).
mod interop;
// `pdp engines fetch/list/path` against a loopback mirror: verification, retries, locks, overrides.
mod engines;
// `pdp build-client` with real Prisma 4.16.2 / 7.10.1 and Deno from npm: deno check, URL import, no-op.
mod build_client;
// `pdp init`: fresh projects, re-runs, --check drift, adoption, --force, flags and mistakes.
mod init;
// `pdp migrate`: deploy, status and resolve against PostgreSQL, MariaDB and SQLite.
mod migrate;
// `pdp serve` against slow and idle clients: header, TLS handshake and idle timeouts, max connections.
mod serve_limits;
// `pdp serve` for Prisma 4.x–6.x (Data Proxy protocol): the engine double (4.x GraphQL, faults), the WASM engine.
mod serve_dp1;
// Multi-file schemas (5.x preview, 6.x, 7.x): init's adoption, migrate, doctor, build-client and serve.
mod schema_folder;
// `pdp serve` on MariaDB (Prisma 7 and 6) and SQLite (6), and Prisma 7 on SQLite refused at start.
mod serve_databases;
// Faults under load with a write ledger (7.10 and 6.19 clients): killed or hung children, one child of a
// pool, a killed replica, PostgreSQL restarted and unreachable, SIGTERM.
mod chaos;
// The operator's view: the status page in headless Chromium, `pdp status`, a real Prometheus on the dashboard and rules.
mod serve_status;
// Three `pdp serve` replicas behind HAProxy: Prisma 7 and 6 clients, transactions relayed to their owner, a killed replica.
mod serve_cluster;
// The fuzz targets' checks over every seed and finding kept in fuzz/seeds: a crash found once stays fixed.
mod fuzz_seeds;
// Accelerate's query cache with the real @prisma/extension-accelerate on the Prisma 7 Deno client.
mod serve_cache;
