//! A real HTTP server on loopback that plays both Prisma's engine host (`all_commits/<hash>/<target>/…`
//! with `.gz` and both `.sha256` files, laid out like binaries.prisma.sh) and the npm registry's two
//! manifests pdp reads for the engine hash. It counts requests per path and injects faults.
//!
//! The engine files are fakes: Prisma's host is unreachable from here, so each "engine" is a small shell
//! script that answers `--version` with a commit, the way the real binaries do. Not a general HTTP server:
//! GET only, `Connection: close`, one thread per connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// What the server does wrong for one path.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Announce the full length, send half, close; this many times, then behave.
    CutShort(usize),
    /// Send the body in 64 KiB pieces with this pause between them (to make downloads overlap).
    Slow(Duration),
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    hits: HashMap<String, usize>,
    faults: HashMap<String, Fault>,
}

/// The running server; it stops with the test process.
pub struct Mirror {
    port: u16,
    state: Arc<Mutex<State>>,
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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Mirror { port, state }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves `body` at `path`.
    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.state.lock().expect("lock").files.insert(path.to_owned(), body);
    }

    /// Makes `path` misbehave.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.state.lock().expect("lock").faults.insert(path.to_owned(), fault);
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state.lock().expect("lock").hits.get(path).copied().unwrap_or(0)
    }

    /// Requests seen in total.
    pub fn total_hits(&self) -> usize {
        self.state.lock().expect("lock").hits.values().sum()
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

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (body, fault) = {
        let mut s = state.lock().expect("lock");
        *s.hits.entry(path.clone()).or_default() += 1;
        let fault = match s.faults.get_mut(&path) {
            Some(Fault::CutShort(0)) => None,
            Some(Fault::CutShort(n)) => {
                *n -= 1;
                Some(Fault::CutShort(1))
            }
            Some(f) => Some(f.clone()),
            None => None,
        };
        (s.files.get(&path).cloned(), fault)
    };
    let mut stream = reader.into_inner();
    let Some(body) = body else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
        return;
    };
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    match fault {
        Some(Fault::CutShort(_)) => {
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
            // Dropping the stream closes the connection mid-body.
        }
        Some(Fault::Slow(pause)) => {
            for piece in body.chunks(64 * 1024) {
                if stream.write_all(piece).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        }
        None => {
            let _ = stream.write_all(&body);
        }
    }
}
