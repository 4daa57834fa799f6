//! The one Prisma-schema scanner pdp has: it turns schema text into tokens (`//` and `///` comments,
//! strings with escapes, words, punctuation), then into the top-level blocks (`datasource`, `generator`,
//! `model`, `enum`, `view`, `type`) with their line numbers, and reads the `key = value` settings of
//! `datasource` and `generator` blocks (strings, arrays over several lines with comments inside,
//! calls like `env("DATABASE_URL")`). A `//` or `}` inside a string, a `{` inside a comment, CRLF line
//! endings and a BOM are all just text.
//!
//! Every part of pdp that reads a schema goes through here: the client build's schema patcher, the
//! Data Proxy's schema checks, `pdp init`'s adoption and `pdp doctor`; [`files`] reads a schema from disk,
//! one file or a folder of them.
//!
//! Deliberately not a Prisma schema validator: fields, attributes and types inside models are skipped
//! (only their braces are counted), and a line that is not `key = value` inside a settings block is
//! ignored. Prisma reports what is wrong with a schema; this only finds what pdp needs in it.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod files;
mod scan;

pub use files::{LoadError, SchemaFile, SchemaFiles};
pub use scan::{Block, Entry, ScanError, Schema, Value, scan};

#[cfg(test)]
mod tests;
