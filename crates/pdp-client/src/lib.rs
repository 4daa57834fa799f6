//! The logic of `pdp build-client`, as pure functions over text and in-memory file sets: the schema
//! patcher for the `prisma-client-js` + `deno` generations ([`schema`]), the output patcher that makes a
//! generated client importable from a URL with no import map ([`output`]), the publishing manifest and the
//! incremental stamp ([`manifest`]), and the `prisma generate` recipe per generation ([`generate`]).
//!
//! Deliberately not here: running Prisma or npm, reading the environment, writing the output folder, and
//! printing (the binary does those). The one IO helper is reading a folder into memory and back
//! ([`manifest::read_tree`], [`manifest::write_tree`]), so the binary stays an orchestrator.

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod error;
pub mod generate;
pub mod manifest;
pub mod output;
pub mod schema;

pub use error::ClientError;

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
