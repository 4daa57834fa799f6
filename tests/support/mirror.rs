//! A real HTTP server on loopback that plays both Prisma's engine host (`all_commits/<hash>/<target>/…`
//! with `.gz` and both `.sha256` files, laid out like binaries.prisma.sh) and the npm registry's two
//! manifests pdp reads for the engine hash. It counts requests per path and injects faults.
//!
//! The engine files are fakes: Prisma's host is unreachable from here, so each "engine" is a small shell
//! script that answers `--version` with a commit, the way the real binaries do. The server itself is the
//! shared `pdp_testkit::FileServer` (GET only, `Connection: close`, one thread per connection).

use std::io::Write;

pub use pdp_testkit::Fault;
use pdp_testkit::FileServer;
use sha2::{Digest, Sha256};

/// The running server; it stops with the test process.
pub struct Mirror {
    server: FileServer,
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// A fake engine: a shell script whose `--version` prints `<prefix> <commit>`, padded to `size` bytes.
pub fn fake_engine(prefix: &str, commit: &str, size: usize) -> Vec<u8> {
    let mut script = format!("#!/bin/sh\necho \"{prefix} {commit}\"\nexit 0\n# ").into_bytes();
    // Pseudo-random padding so gzip cannot shrink it to nothing; a comment line, so the script still runs.
    let mut x: u32 = 0x1234_5678;
    while script.len() < size.saturating_sub(1) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        script.push(b'a' + (x % 26) as u8);
    }
    script.push(b'\n');
    script
}

impl Mirror {
    /// Starts the server on a free loopback port.
    pub fn start() -> Mirror {
        Mirror { server: FileServer::start().expect("start the mirror") }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Serves `body` at `path`.
    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.server.put(path, body);
    }

    /// Makes `path` misbehave.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.server.fault(path, fault);
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.server.hits(path)
    }

    /// Requests seen in total.
    pub fn total_hits(&self) -> usize {
        self.server.total_hits()
    }

    /// Publishes one engine file like Prisma's host: `<file>.gz`, `<file>.gz.sha256` and `<file>.sha256`
    /// (in `sha256sum` format). Returns the URL path of the `.gz`.
    pub fn engine(&self, hash: &str, target: &str, file: &str, content: &[u8]) -> String {
        let base = format!("/all_commits/{hash}/{target}/{file}");
        let gz = gzip(content);
        self.put(&format!("{base}.gz.sha256"), format!("{}  ./{target}/{file}.gz\n", sha256(&gz)).into_bytes());
        self.put(&format!("{base}.sha256"), format!("{}  ./{target}/{file}\n", sha256(content)).into_bytes());
        self.put(&format!("{base}.gz"), gz);
        format!("{base}.gz")
    }

    /// Publishes the npm manifests that give Prisma `version` the engine commit `hash` (the 4.x shape:
    /// `@prisma/engines` lists `@prisma/engines-version` under `devDependencies`).
    pub fn npm(&self, version: &str, hash: &str) {
        let ev = format!("4.16.1-1.{hash}");
        let engines = serde_json::json!({
            "name": "@prisma/engines", "version": version, "dependencies": {},
            "devDependencies": { "@prisma/engines-version": ev, "typescript": "4.9.5" },
        });
        let ev_doc = serde_json::json!({
            "name": "@prisma/engines-version", "version": ev, "prisma": { "enginesVersion": hash },
        });
        self.put(&format!("/@prisma%2Fengines/{version}"), engines.to_string().into_bytes());
        self.put(&format!("/@prisma%2Fengines-version/{ev}"), ev_doc.to_string().into_bytes());
    }
}
