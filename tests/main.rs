//! End-to-end tests of the `pdp` binary, run the way a user runs it: a temp directory per test, the
//! real databases this machine runs, no test doubles. One test binary keeps link time down.

// Test helpers: a temp project, a `pdp` command with an isolated environment, database URLs.
mod support;

// `pdp --help`, `--version`, and every subcommand's help.
mod cli;
// `pdp config`: strict parsing errors, layering, secret masking.
mod config;
// `pdp doctor` against real PostgreSQL, MariaDB and SQLite, and unreachable ones.
mod doctor;
// `pdp init`: fresh projects, re-runs, --check drift, adoption, --force, flags and mistakes.
mod init;
// `pdp migrate`: deploy, status and resolve against PostgreSQL, MariaDB and SQLite.
mod migrate;
