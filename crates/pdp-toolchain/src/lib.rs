//! Everything pdp knows about external programs: the host's Prisma binary target, which engine files a
//! Prisma version needs and their verified download into the cache, where the Node-side tools are, and
//! the one helper that runs a child process.
//!
//! This crate never prints; it returns values and errors that carry the program, path or URL involved.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod embedded;
pub mod engines;
pub mod fetch;
pub mod files;
pub mod http;
pub mod launch;
pub mod npm;
pub mod overrides;
pub mod process;
pub mod sockets;
pub mod target;
pub mod tools;
