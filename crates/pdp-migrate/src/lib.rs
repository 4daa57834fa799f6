//! Prisma Migrate, natively: `deploy`, `status` and `resolve` over Prisma's own `_prisma_migrations`
//! ledger, so a database migrated by pdp looks exactly as if Prisma had done it and the other way round.
//! Also owns database connections from Prisma URLs (used by `pdp doctor` too).
//!
//! It never prints (progress goes through `ops::Reporter`) and never shows a URL unredacted.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod db;
pub mod ledger;
pub mod ops;
pub mod source;
