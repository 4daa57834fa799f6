//! `cargo xtask bench instructions`: what pdp and nginx execute per request, counted by valgrind's
//! callgrind instead of timed. A count repeats within about 1% whatever else the machine does, where the
//! timed benches' rounds swing by tens of percent on two shared cores. One Prisma 7 project (release pdp,
//! https, one executor, PostgreSQL); a native `pdp serve` runs the executor that nginx (configured as in
//! `bench serve`, as one process) forwards to, and a second `pdp serve` runs under callgrind with its own.
//! Per path: a warm-up, the counters zeroed, wrk -t1 -c8 for 5 s (every answer checked), the counters
//! dumped, the instructions divided by the requests wrk completed.
//!
//! Deliberately not counted: the kernel's part (about half of either proxy's CPU, and alike for both) and
//! the children. Under valgrind the CPU has no SHA extensions, so pdp's API-key check (a SHA-256 of the key)
//! runs in software here, where the native build uses the CPU's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::bench_prisma7::{Project, wrk};

/// One process under callgrind: its pid and where its dumps go (`<out>.1`, `<out>.2`, …).
struct Counted {
    pid: u32,
    out: PathBuf,
    dumps: u32,
}

impl Counted {
    /// Instructions per request of `script` against `url`: a warm-up, then 5 s counted.
    fn per_request(&mut self, work: &Path, script: &str, url: &str) -> anyhow::Result<f64> {
        let _ = wrk(work, script, url, 8, 3, &[])?;
        control(&["-z", &self.pid.to_string()])?;
        let run = wrk(work, script, url, 8, 5, &[])?;
        control(&["-d", &self.pid.to_string()])?;
        self.dumps += 1;
        let dump = PathBuf::from(format!("{}.{}", self.out.display(), self.dumps));
        let text = std::fs::read_to_string(&dump).with_context(|| format!("no callgrind dump {}", dump.display()))?;
        let total: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("{} has no instruction total", dump.display()))?;
        Ok(total / run.requests.max(1.0))
    }
}

fn control(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control").args(args).output().context("cannot run callgrind_control")?;
    anyhow::ensure!(
        out.status.success(),
        "callgrind_control {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `cargo xtask bench instructions`.
pub fn instructions(root: &Path) -> anyhow::Result<()> {
    crate::step("build pdp (release)", crate::cargo().args(["build", "--release", "--locked", "-p", "pdp"]))?;
    crate::node_tools(root)?;
    crate::services::ensure()?;
    crate::ensure_package("wrk", "wrk", "the instruction counts load with it")?;
    crate::ensure_package("nginx", "nginx-light", "the instruction counts compare pdp with it")?;
    crate::ensure_package("valgrind", "valgrind", "callgrind counts the instructions")?;
    let project = Project::set_up(root, "instructions", 1000, false)?;
    let (work, key) = (&project.work, &project.key);
    let mut native = project.pdp(&["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn()?;
    let port = crate::bench::read_listen_port(&mut native, "https")?;
    let ca = work.join(".pdp/tls/ca.pem");
    let body = project.capture(root, &format!("prisma://localhost:{port}/?api_key={key}"), Some(&ca))?;
    crate::bench_cache::scripts(work, key, &body)?;
    let executor = crate::bench::child_with(native.id(), "pdp-qpe.mjs").context("pdp serve runs no executor")?;

    let pdp_out = work.join("callgrind.pdp");
    let mut counted = project
        .pdp_under(
            "valgrind",
            &["--tool=callgrind", &format!("--callgrind-out-file={}", pdp_out.display())],
            &["serve", "--listen", "127.0.0.1:0"],
        )
        .stderr(Stdio::piped())
        .spawn()?;
    let counted_port = crate::bench::read_listen_port(&mut counted, "https")?;
    let mut pdp = Counted { pid: counted.id(), out: pdp_out, dumps: 0 };
    let nginx_out = work.join("callgrind.nginx");
    let nginx_run = crate::bench::start_nginx(work, executor, key, false, Some(&nginx_out))?;
    let mut nginx = Counted { pid: nginx_run.worker, out: nginx_out, dumps: 0 };

    let at = |port: u16, path: &str| format!("https://localhost:{port}{path}");
    let forward = pdp.per_request(work, "uncached.lua", &at(counted_port, "/query"))?;
    let nginx_forward = nginx.per_request(work, "uncached.lua", &at(nginx_run.port, "/query"))?;
    let hit = pdp.per_request(work, "hit.lua", &at(counted_port, "/query"))?;
    let floor = pdp.per_request(work, "health.lua", &at(counted_port, "/health"))?;

    drop(nginx_run);
    for child in [&mut counted, &mut native] {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    println!(
        "\nInstructions per request (callgrind, user space only; wrk -t1 -c8 over https with the key, 5 s per path after a warm-up):"
    );
    println!("  forward of the client's findUnique /query, pdp     {forward:>8.0}");
    println!(
        "  the same through nginx 1.22                        {nginx_forward:>8.0}   pdp/nginx {:.2}×",
        forward / nginx_forward
    );
    println!("  a cache hit, pdp                                   {hit:>8.0}");
    println!("  GET /health, pdp (the floor for a hit)             {floor:>8.0}   hit/floor {:.2}×", hit / floor);
    println!("  (pdp's counts include its API-key SHA-256, which runs in software under valgrind)");
    project.finish();
    Ok(())
}
