//! What pdp's end-to-end tests and `cargo xtask bench` share: [`FileServer`], a real HTTP/1.1 server on
//! loopback that serves bytes put into it by URL path (or the files of a folder), counts requests per path,
//! and misbehaves on demand ([`Fault`]). It plays Prisma's engine host and the npm registry in the engines
//! tests and benchmark, and a static host for URL imports of a built client.
//!
//! Deliberately not here: anything a shipped crate uses (no crate but the tests and xtask depends on this),
//! TLS, methods other than GET, keep-alive (every response closes its connection).

#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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
    files: HashMap<String, Arc<Vec<u8>>>,
    root: Option<PathBuf>,
    hits: HashMap<String, usize>,
    faults: HashMap<String, Fault>,
}

/// The running server; it serves until the process ends.
pub struct FileServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FileServer {
    /// A server with nothing to serve yet, on a free loopback port.
    pub fn start() -> std::io::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || respond(stream, &state));
            }
        });
        Ok(FileServer { port, state })
    }

    /// A server of the files under `root` (a path with `..` is refused), besides what is put.
    pub fn serve_dir(root: impl Into<PathBuf>) -> std::io::Result<FileServer> {
        let server = FileServer::start()?;
        server.lock().root = Some(root.into());
        Ok(server)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves `body` at `path` (e.g. `/all_commits/…/query-engine.gz`).
    pub fn put(&self, path: &str, body: impl Into<Arc<Vec<u8>>>) {
        self.lock().files.insert(path.to_owned(), body.into());
    }

    /// Makes `path` misbehave.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.lock().faults.insert(path.to_owned(), fault);
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().hits.get(path).copied().unwrap_or(0)
    }

    /// Requests seen in total.
    pub fn total_hits(&self) -> usize {
        self.lock().hits.values().sum()
    }
}

/// The content type a static host gives a file (Deno imports `.ts` only as TypeScript).
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("ts" | "mts") => "application/typescript",
        Some("js" | "mjs") => "application/javascript",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn respond(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (body, fault) = {
        let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
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
        let from_dir = || {
            let root = s.root.as_ref()?;
            let rel = path.trim_start_matches('/');
            if rel.split('/').any(|part| part == "..") {
                return None;
            }
            std::fs::read(root.join(rel)).ok().map(Arc::new)
        };
        (s.files.get(&path).cloned().or_else(from_dir), fault)
    };
    let mut stream = reader.into_inner();
    let Some(body) = body else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
        return;
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content_type(&path),
        body.len()
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> (String, Vec<u8>) {
        let rest = url.strip_prefix("http://").expect("http");
        let (host, path) = rest.split_once('/').expect("a path");
        let mut stream = TcpStream::connect(host).expect("connect");
        write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send");
        let mut all = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut all);
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").map_or(all.len(), |i| i + 4);
        (String::from_utf8_lossy(&all[..split]).into_owned(), all[split..].to_vec())
    }

    #[test]
    fn serves_counts_and_cuts_short() {
        let dir = std::env::temp_dir().join(format!("pdp-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("client.ts"), "export {};").expect("write");
        let s = FileServer::serve_dir(&dir).expect("start");
        s.put("/a.json", b"{}".to_vec());
        let (head, body) = get(&format!("{}/a.json", s.url()));
        assert!(head.starts_with("HTTP/1.1 200") && head.contains("application/json"), "{head}");
        assert_eq!(body, b"{}");
        let (head, body) = get(&format!("{}/client.ts", s.url()));
        assert!(head.contains("application/typescript"), "{head}");
        assert_eq!(body, b"export {};");
        assert!(get(&format!("{}/../etc/passwd", s.url())).0.starts_with("HTTP/1.1 404"));
        s.put("/big", vec![7u8; 1000]);
        s.fault("/big", Fault::CutShort(1));
        assert_eq!(get(&format!("{}/big", s.url())).1.len(), 500, "half, then closed");
        assert_eq!(get(&format!("{}/big", s.url())).1.len(), 1000, "then whole");
        assert_eq!((s.hits("/big"), s.total_hits()), (2, 5));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
