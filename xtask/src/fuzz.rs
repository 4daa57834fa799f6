//! `cargo xtask fuzz [SECONDS]`: every cargo-fuzz target in fuzz/ (libFuzzer, built on the stable toolchain
//! without a sanitizer: Rust's own checks catch what a fuzzer finds here, panics and overflows) run for a
//! bounded time each, seeded from fuzz/seeds/<target> into a corpus under target/, then the HTTP request path
//! of a running `pdp serve` fuzzed end to end with mutated requests. Prints inputs run and findings per target;
//! fails on any finding. A finding's input is kept (fuzz/artifacts/, target/fuzz-http/) to become a
//! regression test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{cargo, step};

const CARGO_FUZZ: &str = "0.13.2";

const TARGETS: [&str; 9] = [
    "config_toml",
    "dotenv",
    "routes",
    "dp1_upload",
    "schema_scan",
    "schema_patch",
    "migrations",
    "metrics_relabel",
    "cache_headers",
];

struct Row {
    target: String,
    inputs: u64,
    findings: Vec<String>,
}

/// Runs every target, or only `only` (a target's name, or `http` for the server).
pub fn fuzz(root: &Path, seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    if let Some(name) = only
        && name != "http"
        && !TARGETS.contains(&name)
    {
        bail!("no fuzz target `{name}`: {} or http", TARGETS.join(", "));
    }
    let have = Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !have {
        step(
            &format!("cargo install cargo-fuzz {CARGO_FUZZ}"),
            cargo().args(["install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ]),
        )?;
    }
    let dir = root.join("fuzz");
    step(
        "cargo fuzz build (release with debug assertions and overflow checks, no sanitizer: the stable toolchain)",
        Command::new("cargo").args(["fuzz", "build", "-O", "-a", "-s", "none"]).current_dir(&dir),
    )?;
    let bin = dir.join("target/x86_64-unknown-linux-gnu/release");
    let mut rows = Vec::new();
    for target in TARGETS.into_iter().filter(|t| only.is_none_or(|o| o == *t)) {
        let corpus = root.join("target/fuzz-corpus").join(target);
        let artifacts = dir.join("artifacts").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        eprintln!("==> fuzz {target} for {seconds}s");
        let out = Command::new(bin.join(target))
            .arg(format!("-max_total_time={seconds}"))
            // An input that takes over 10 s is a hang; over 2 GiB a leak.
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus)
            .arg(dir.join("seeds").join(target))
            // The migrations init writes are the migrations reader's seeds too, read where they live.
            .args((target == "migrations").then(|| root.join("templates/prisma/migrations")))
            .stdout(Stdio::null())
            .output()
            .with_context(|| format!("cannot run the fuzz target {target}"))?;
        let text = String::from_utf8_lossy(&out.stderr);
        let inputs = text
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let mut findings: Vec<String> =
            std::fs::read_dir(&artifacts)?.filter_map(Result::ok).map(|e| e.path().display().to_string()).collect();
        if !out.status.success() && findings.is_empty() {
            findings.push(format!("libFuzzer exited with {}", out.status));
        }
        rows.push(Row { target: target.to_owned(), inputs, findings });
    }
    if only.is_none_or(|o| o == "http") {
        rows.push(http(root, seconds)?);
    }
    println!("\n| target | inputs run | findings |");
    println!("|---|---|---|");
    for r in &rows {
        let f = if r.findings.is_empty() { "0".to_owned() } else { r.findings.join("; ") };
        println!("| {} | {} | {f} |", r.target, r.inputs);
    }
    if rows.iter().any(|r| !r.findings.is_empty()) {
        bail!("the fuzzers found inputs that fail (kept where the table says)");
    }
    Ok(())
}

/// A small, fast, deterministic PRNG (xorshift64*): no dependency, and a run is repeatable by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const DICT: [&[u8]; 16] = [
    b"\r\n",
    b"\r\n\r\n",
    b"Content-Length: 99999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"0\r\n\r\n",
    b"ffffffff\r\n",
    b"Authorization: Bearer ",
    b"Authorization: Basic Og==\r\n",
    b"/transaction/",
    b"pdp1_127.0.0.1:1_0_00_0",
    b"{\"tags\":",
    b"cache-control: max-age=99999999999999999999\r\n",
    b"accelerate-cache-tags: a,b,c\r\n",
    b"%00",
    b"\xff\xfe",
    b"Expect: 100-continue\r\n",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let piece = DICT[rng.below(DICT.len())];
                v.splice(at..at, piece.iter().copied());
            }
            2 if at < v.len() => {
                let end = (at + rng.below(32)).min(v.len());
                v.drain(at..end);
            }
            3 => v.truncate(at),
            4 => {
                let n = rng.below(64);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            _ => {
                // Repeat a slice: long headers, many headers.
                let end = (at + rng.below(64)).min(v.len());
                let piece = v[at..end].to_vec();
                for _ in 0..rng.below(16) {
                    v.splice(at..at, piece.iter().copied());
                }
            }
        }
    }
    v
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// Sends one raw request and reads what comes back until the server closes, 300 ms pass without a first
/// byte (a request pdp still waits to complete) or 30 ms after the last (a kept-alive connection); then
/// drops the connection.
fn send(addr: &str, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    send_within(addr, bytes, Duration::from_millis(300))
}

fn send_within(addr: &str, bytes: &[u8], first_byte: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(first_byte))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while out.len() < 1 << 20 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // An answer has begun: the rest of it follows at once, or the connection is kept alive.
                s.set_read_timeout(Some(Duration::from_millis(30)))?;
            }
        }
    }
    Ok(out)
}

fn health_ms(addr: &str) -> Option<u128> {
    let t = Instant::now();
    let out =
        send_within(addr, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(1))
            .ok()?;
    out.starts_with(b"HTTP/1.1 200").then(|| t.elapsed().as_millis())
}

/// `pdp serve` (plain HTTP: TLS would refuse mutated bytes before pdp's HTTP path saw them) on the
/// machine's PostgreSQL, fed mutations of real requests for `seconds`; a finding is pdp exiting, `/health`
/// not answering within a second, or RSS growing over 20 % from warm-up to the end.
fn http(root: &Path, seconds: u64) -> anyhow::Result<Row> {
    eprintln!("==> fuzz the HTTP request path of a running pdp serve for {seconds}s");
    step("build pdp (release)", cargo().args(["build", "--locked", "--release", "-p", "pdp"]))?;
    let pdp = root.join("target/release/pdp");
    let dir = std::env::temp_dir().join(format!("pdp-fuzz-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = format!("postgresql://postgres@127.0.0.1:5432/pdp_fuzz_{}", std::process::id());
    step("pdp init", Command::new(&pdp).args(["init", "--yes", "--database-url", &db]).arg(&dir))?;
    let toml = std::fs::read_to_string(dir.join("pdp.toml"))?.replace("tls = \"auto\"", "tls = \"off\"");
    std::fs::write(dir.join("pdp.toml"), toml)?;
    step("pdp migrate deploy", Command::new(&pdp).args(["migrate", "deploy"]).current_dir(&dir))?;
    let key = std::fs::read_to_string(dir.join(".env"))?
        .lines()
        .find_map(|l| l.strip_prefix("PDP_API_KEY="))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_owned())
        .context("PDP_API_KEY in .env")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    // Its log: a panic inside a connection's task does not end the process, but it is logged.
    let log_path = root.join("target/fuzz-http/serve.log");
    std::fs::create_dir_all(root.join("target/fuzz-http"))?;
    let mut serve = Command::new(&pdp)
        .args(["serve", "--listen", &addr])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .context("pdp serve")?;
    /// Kills pdp serve if the run ends early (after a normal end it is gone: quietly nothing to do).
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).stderr(Stdio::null()).status();
        }
    }
    let _guard = Kill(serve.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    while send(&addr, b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_or(true, |r| !r.starts_with(b"HTTP/1.1 200"))
    {
        if Instant::now() > deadline {
            let _ = serve.kill();
            bail!("pdp serve did not become ready");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let auth = format!("Authorization: Bearer {key}\r\n");
    let query =
        r#"{"modelName":"User","action":"findMany","query":{"arguments":{"take":1},"selection":{"$scalars":true}}}"#;
    let seeds: Vec<Vec<u8>> = vec![
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n").into_bytes(),
        format!("GET /status.json HTTP/1.1\r\nHost: x\r\n{auth}\r\n").into_bytes(),
        format!("POST /query HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\ncache-control: max-age=60\r\nContent-Length: {}\r\n\r\n{query}", query.len()).into_bytes(),
        format!("POST /transaction/start HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2\r\n\r\n{{}}").into_bytes(),
        format!("POST /invalidate HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 16\r\n\r\n{{\"tags\":[\"a\"]}} ").into_bytes(),
        format!("POST /6.19.0/{}/graphql HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2\r\n\r\n{{}}", "0".repeat(64)).into_bytes(),
        format!("PUT /6.19.0/{}/schema HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 4\r\n\r\nAAAA", "0".repeat(64)).into_bytes(),
    ];
    let pid = serve.id();
    let keep = root.join("target/fuzz-http");
    std::fs::create_dir_all(&keep)?;
    let started = Instant::now();
    let run_for = Duration::from_secs(seconds);
    let inputs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let last = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    // Sixteen clients at once, each with its own repeatable stream of mutations.
    let workers: Vec<_> = (0..16u64)
        .map(|w| {
            let (seeds, addr, inputs, last) = (seeds.clone(), addr.clone(), inputs.clone(), last.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1).wrapping_mul(0x1000_0001));
                while started.elapsed() < run_for {
                    let pick = rng.below(seeds.len());
                    let input = mutate(&mut rng, &seeds[pick]);
                    let _ = send(&addr, &input);
                    inputs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let mut kept = last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if kept.len() >= 64 {
                        kept.remove(0);
                    }
                    kept.push(input);
                }
            })
        })
        .collect();
    let mut findings = Vec::new();
    let mut warm_rss = None;
    let save_last = |name: &str| -> anyhow::Result<String> {
        let file = keep.join(name);
        let kept = last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::write(&file, kept.join(&b"\n--- next input ---\n"[..]))?;
        Ok(file.display().to_string())
    };
    while started.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(500));
        if warm_rss.is_none() && started.elapsed() >= run_for / 4 {
            warm_rss = rss_kib(pid);
        }
        if let Some(status) = serve.try_wait()? {
            findings.push(format!("pdp serve exited ({status}); the last inputs are in {}", save_last("crash")?));
            break;
        }
        match health_ms(&addr) {
            Some(ms) if ms < 1000 => {}
            other => findings.push(format!("/health took {other:?} ms; the last inputs are in {}", save_last("slow")?)),
        }
    }
    for w in workers {
        let _ = w.join();
    }
    let inputs = inputs.load(std::sync::atomic::Ordering::Relaxed);
    let end_rss = rss_kib(pid);
    if let Some(status) = serve.try_wait()?
        && findings.is_empty()
    {
        findings.push(format!("pdp serve exited ({status}) in the run's last moment"));
    }
    if end_rss.is_none() && findings.is_empty() {
        findings.push("pdp serve's RSS could not be read at the end (did it exit?)".into());
    }
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = serve.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Some(line) = log.lines().find(|l| l.contains("panicked at")) {
        findings.push(format!("a panic in pdp serve's log ({}): {line}", log_path.display()));
    }
    let _ = Command::new("psql")
        .args(["postgresql://postgres@127.0.0.1:5432/postgres", "-c"])
        .arg(format!("DROP DATABASE IF EXISTS pdp_fuzz_{} WITH (FORCE)", std::process::id()))
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    if let (Some(w), Some(e)) = (warm_rss, end_rss) {
        eprintln!(
            "pdp serve RSS: {w} KiB after warm-up, {e} KiB at the end ({:+.1} %)",
            (e as f64 / w as f64 - 1.0) * 100.0
        );
        if e as f64 > w as f64 * 1.2 {
            findings.push(format!("RSS grew from {w} KiB to {e} KiB"));
        }
    }
    Ok(Row { target: format!("pdp serve HTTP ({} inputs/s)", inputs / seconds.max(1)), inputs, findings })
}
