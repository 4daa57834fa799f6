//! Running `pdp serve` in a test: a project migrated and with its Deno client built, the server started on
//! a free port and its log collected, requests with curl (trusting the project's auto CA), Deno scripts
//! with the generated client, and signals.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Outcome, Project};

/// The tool cache the serve tests share (npm packages download once per machine).
pub fn tool_cache() -> PathBuf {
    std::env::temp_dir().join("pdp-test-tool-cache")
}

/// Deno from tests/node (installed by `cargo xtask test`).
pub fn deno() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node/node_modules/@deno/linux-x64-glibc/deno");
    assert!(path.is_file(), "{} is missing: run `cargo xtask test` (it runs npm ci in tests/node)", path.display());
    path
}

/// Where the database of a test project lives.
pub enum Db {
    /// The machine's PostgreSQL, in a database of this name (migrate creates it).
    Postgres(String),
    /// pdp's embedded PostgreSQL.
    Embedded,
}

/// A unique database name for one test.
pub fn db_name(test: &str) -> String {
    format!("pdp_serve_{test}_{}", std::process::id())
}

/// A Prisma 7.10.0 project as `pdp init` writes it (the sample schema and its first migration), migrated,
/// its Deno client built.
pub fn project(db: &Db) -> Project {
    let p = Project::new();
    match db {
        Db::Postgres(name) => {
            let url = super::postgres_url();
            let url = format!("{}/{name}", url.rsplit_once('/').expect("a URL with a database").0);
            p.init(&["--database-url", &url]);
        }
        Db::Embedded => {
            p.init(&[]);
        }
    }
    // `pdp init` wrote the sample schema's first migration: nothing is copied from pdp's repository.
    cached(&p, &["migrate", "deploy"]).expect_code(0);
    cached(&p, &["build-client"]).expect_code(0);
    p
}

/// `pdp ARGS` with the shared tool cache.
pub fn cached(p: &Project, args: &[&str]) -> Outcome {
    p.run_with(p.pdp().env("PDP_CACHE_DIR", tool_cache()).args(args))
}

/// The API key `pdp init` wrote to `.env`.
pub fn api_key(p: &Project) -> String {
    p.read(".env")
        .lines()
        .find_map(|l| l.strip_prefix("PDP_API_KEY="))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_owned())
        .expect("PDP_API_KEY in .env")
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `limit` naming `what`.
pub fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `pdp serve`.
pub struct Serving {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    /// Reads pdp's stderr into `log` until pdp exits.
    reader: Option<JoinHandle<()>>,
    /// `https`, or `http` with `tls = "off"`.
    scheme: String,
    /// The bound port.
    pub port: u16,
    /// The project's auto CA.
    pub ca: PathBuf,
    root: PathBuf,
}

impl Serving {
    /// Starts `pdp serve --listen 127.0.0.1:0` in `p` and waits until it listens.
    pub fn start(p: &Project, env: &[(&str, &str)]) -> Serving {
        let mut cmd = p.std_pdp();
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).env("PDP_CACHE_DIR", tool_cache());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("pdp serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut port: Option<(String, u16)> = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening on ").nth(1)
                    && let Some((scheme, p)) = rest.split_once("://127.0.0.1:")
                {
                    port = p.split(' ').next().and_then(|s| s.parse().ok()).map(|port| (scheme.to_owned(), port));
                }
                {
                    let mut log = sink.lock().expect("log");
                    log.push_str(&line);
                    log.push('\n');
                }
                // The `Clients` line ends the start-up report: everything above it is in the log now.
                if line.contains("Clients prisma://")
                    && let (Some(tx), Some(port)) = (tx.take(), port.take())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let (scheme, port) = match rx.recv_timeout(Duration::from_secs(240)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Its stderr closes with it: the reader has everything once it returns.
                let _ = reader.join();
                panic!("pdp serve did not start listening:\n{}", log.lock().expect("log"));
            }
        };
        Serving {
            child: Some(child),
            log,
            reader: Some(reader),
            scheme,
            port,
            ca: p.path(".pdp/tls/ca.pem"),
            root: p.root().to_path_buf(),
        }
    }

    /// Waits (bounded) until every child `/ready` lists, executors and engines, is ready: a pool's other
    /// children may still be starting when the first answered. Returns that `/ready` body.
    pub fn all_children_ready(&self) -> serde_json::Value {
        poll(Duration::from_secs(120), "every child of the pools ready", || {
            let (_, body) = self.curl("GET", "/ready", &[], None);
            let ready: serde_json::Value = serde_json::from_str(&body).ok()?;
            let children: Vec<&serde_json::Value> =
                ["engines", "executors"].iter().filter_map(|k| ready[*k].as_array()).flatten().collect();
            children.iter().all(|c| c["status"] == "ready").then_some(ready.clone())
        })
    }

    /// The Windmill script `pdp init` wrote (`examples/windmill/query_users.ts`), unmodified, called as
    /// Windmill calls it, `main({ url, api_key }, 5)`: an import map points the published-client URL it
    /// imports (`[client] base-url` unset: the placeholder) at the local `dist/client/`. Returns success and
    /// the output, whose line `{"users":N,"posts":M}` counts the first user's posts.
    pub fn run_windmill_example(&self, p: &Project, key: &str) -> (bool, String) {
        let script = p.read("examples/windmill/query_users.ts");
        let import = script.lines().find(|l| l.starts_with("import { PrismaClient }")).expect("an import line");
        let published = import.split('"').nth(1).expect("a quoted URL");
        let base = published.rsplit_once("0.1.0/").expect("the client's version in the URL").0;
        assert!(base.starts_with("https://"), "{import}");
        p.write("import_map.json", &serde_json::json!({ "imports": { base: "./dist/client/" } }).to_string());
        p.write(
            "windmill_run.ts",
            "import { main } from './examples/windmill/query_users.ts';\n\
             const users = await main({ url: Deno.env.get('PDP_URL')!, api_key: Deno.env.get('PDP_API_KEY')! }, 5);\n\
             console.log(JSON.stringify({ users: users.length, posts: users[0].posts.length }));\n",
        );
        self.deno_run(&["--import-map=import_map.json", "windmill_run.ts"], key, &[])
    }

    /// Everything pdp serve logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// The log once `ready` holds for it (pdp writes its log in batches up to 100 ms apart).
    pub fn log_when(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        poll(Duration::from_secs(5), what, || {
            let log = self.log();
            ready(&log).then_some(log)
        })
    }

    /// pdp serve's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `https://localhost:PORT` (`http://` with `tls = "off"`).
    pub fn url(&self) -> String {
        format!("{}://localhost:{}", self.scheme, self.port)
    }

    /// Sends a signal (`TERM`, `KILL`, …) to pdp serve.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Waits for pdp serve to exit; its exit code and full log.
    pub fn wait(mut self, limit: Duration) -> (i32, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("pdp serve did not exit within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // pdp is gone, so its stderr is closed: the reader ends once it has read the last line.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status.code().unwrap_or(-1), self.log())
    }

    /// `curl` against the server (trusting the project's CA): status and body. `path` is a path on this
    /// server or a whole `https://` URL (an interactive-transaction endpoint); the body goes through stdin.
    pub fn curl(&self, method: &str, path: &str, headers: &[&str], body: Option<&str>) -> (u16, String) {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.url()) };
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg("--cacert")
            .arg(&self.ca);
        for h in headers {
            cmd.args(["-H", h]);
        }
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]).stdin(Stdio::piped());
        }
        cmd.arg(&url).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("curl runs");
        if let Some(b) = body {
            child.stdin.take().expect("stdin").write_all(b.as_bytes()).expect("write the body");
        }
        let out = child.wait_with_output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log()));
        (code, body.to_owned())
    }

    /// `/metrics` read with `key`.
    pub fn metrics(&self, key: &str) -> String {
        let (code, text) = self.curl("GET", "/metrics", &[&format!("Authorization: Bearer {key}")], None);
        assert_eq!(code, 200, "{text}");
        text
    }

    /// Runs a Deno script (path relative to the project) with the project's client, this server's URL and
    /// `key`; returns exit success and stdout + stderr.
    pub fn deno(&self, script: &str, key: &str, env: &[(&str, &str)]) -> (bool, String) {
        self.deno_run(&[script], key, env)
    }

    /// [`Serving::deno`] with more arguments to `deno run` before the script (`--import-map=…`).
    pub fn deno_run(&self, args: &[&str], key: &str, env: &[(&str, &str)]) -> (bool, String) {
        let mut cmd = Command::new(deno());
        cmd.args(["run", "-A", "--no-config"])
            .args(args)
            .current_dir(&self.root)
            .env("DENO_CERT", &self.ca)
            .env("DENO_DIR", tool_cache().join("deno-dir"))
            .env("NO_COLOR", "1")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
            .env("PDP_URL", self.url())
            .env("PDP_API_KEY", key);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("deno runs");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The sum of every sample in Prometheus `text` whose line starts with `prefix` (a metric name and the
/// first labels, e.g. `pdp_child_restarts_total{kind="executor"`): one figure over a pool's slots.
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// The default pool size: `[serve] children` left out is the CPUs pdp may use less its own threads (half
/// of them by default), at least 1.
pub fn default_pool() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cpus.saturating_sub((cpus / 2).max(1)).max(1)
}

/// Sends `sig` to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill runs").success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// The pids of `parent`'s children whose command line contains `needle`.
pub fn children(parent: u32, needle: &str) -> Vec<u32> {
    let mut pgrep = Command::new("pgrep");
    pgrep.args(["-P", &parent.to_string()]);
    if !needle.is_empty() {
        pgrep.args(["-f", needle]);
    }
    let out = pgrep.output().expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// What a process listens on: its listening TCP ports (v4 and v6) and listening Unix socket paths, read
/// from /proc (its open socket inodes matched against the kernel's socket tables).
pub fn listening(pid: u32) -> (Vec<u16>, Vec<PathBuf>) {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut tcp = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A = LISTEN), inode
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()).unwrap_or(0);
                tcp.push(port);
            }
        }
    }
    let mut unix = Vec::new();
    for line in std::fs::read_to_string("/proc/net/unix").unwrap_or_default().lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Flags 00010000 is __SO_ACCEPTCON: a listening socket.
        if f.len() > 7 && f[3] == "00010000" && inodes.iter().any(|i| i == f[6]) {
            unix.push(PathBuf::from(f[7]));
        }
    }
    (tcp, unix)
}

/// Runs `program args` as the unprivileged user `nobody` (root, which the tests run as, ignores file modes).
pub fn as_nobody(program: &str, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("setpriv runs (util-linux)")
}

/// Asserts what pdp's children listen on: no TCP port at all, one Unix socket each, inside a directory
/// only pdp's user may enter; and that the user `nobody` cannot connect to any of them while pdp's own
/// user can (so the refusal is the permission, not a dead socket). `probe` is an HTTP path each child
/// answers (`None` for a child that is not HTTP, which is probed with psql). Returns the sockets seen.
pub fn assert_children_private(pdp: u32, probe: &dyn Fn(&Path) -> Option<&'static str>) -> Vec<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let kids = children(pdp, "");
    assert!(!kids.is_empty(), "pdp {pdp} has no children");
    let mut sockets = Vec::new();
    for kid in kids {
        let cmdline = std::fs::read_to_string(format!("/proc/{kid}/cmdline")).unwrap_or_default().replace('\0', " ");
        let (tcp, unix) = listening(kid);
        assert!(tcp.is_empty(), "child {kid} ({cmdline}) listens on TCP ports {tcp:?}");
        assert_eq!(unix.len(), 1, "child {kid} ({cmdline}) should listen on exactly one Unix socket: {unix:?}");
        let socket = unix[0].clone();
        let dir = socket.parent().expect("a directory");
        let meta = std::fs::metadata(dir).expect("the socket directory");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{} must be 0700", dir.display());
        assert_eq!(meta.uid(), std::fs::metadata(format!("/proc/{pdp}")).expect("pdp").uid(), "owned by pdp's user");
        let socket_text = socket.to_string_lossy().into_owned();
        match probe(&socket) {
            Some(path) => {
                let url = format!("http://localhost{path}");
                let curl = |out: std::process::Output| out.status.code();
                let mine = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "--unix-socket", &socket_text, &url])
                    .output()
                    .expect("curl");
                assert_eq!(curl(mine), Some(0), "pdp's user reaches {socket_text}");
                let theirs = as_nobody("curl", &["-s", "-o", "/dev/null", "--unix-socket", &socket_text, &url]);
                assert_eq!(curl(theirs), Some(7), "user nobody must not connect to {socket_text}");
            }
            None => {
                let dir_text = dir.to_string_lossy().into_owned();
                let conn = format!("host={dir_text} user=postgres dbname=postgres");
                let mine = Command::new("psql").args([conn.as_str(), "-Atc", "SELECT 1"]).output().expect("psql");
                assert!(
                    mine.status.success(),
                    "pdp's user reaches {socket_text}: {}",
                    String::from_utf8_lossy(&mine.stderr)
                );
                let theirs = as_nobody("psql", &[conn.as_str(), "-Atc", "SELECT 1"]);
                assert!(!theirs.status.success(), "user nobody must not connect to {socket_text}");
                let why = String::from_utf8_lossy(&theirs.stderr);
                assert!(why.contains("Permission denied"), "refused by the directory's mode: {why}");
            }
        }
        sockets.push(socket);
    }
    sockets
}

/// Runs SQL on the machine's PostgreSQL database `db` with psql; the unaligned output.
pub fn psql(db: &str, sql: &str) -> String {
    let url = super::postgres_url();
    let url = format!("{}/{db}", url.rsplit_once('/').expect("a URL").0);
    let out = Command::new("psql").args([url.as_str(), "-At", "-c", sql]).output().expect("psql runs");
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Drops a test database (best effort).
pub fn drop_db(name: &str) {
    let url = super::postgres_url();
    let _ = Command::new("psql")
        .args([url.as_str(), "-c", &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")])
        .output();
}
