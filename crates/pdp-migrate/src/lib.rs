//! Database access for pdp: connecting to the project's database from a Prisma datasource URL.
//!
//! This crate will grow Prisma Migrate's ledger (deploy, status, resolve); today it owns connections,
//! which `pdp doctor` uses to check reachability. It never prints and never shows a URL unredacted.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod db;
