//! Benchmarks, measured side by side in one run and printed as ratios (never timed tests).
//!
//! `migrate`: applying 200 migrations to PostgreSQL with `pdp migrate deploy`, against the floor of
//! `psql -1 -f` over the same scripts concatenated (one transaction, no bookkeeping); and on SQLite,
//! pdp against the real `prisma migrate deploy` (6.19, JavaScript engine) on the same folder.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const MIGRATIONS: usize = 200;
const ROUNDS: usize = 3;

/// Runs `cmd` to completion and returns its wall time; a failure is an error with its output.
pub(crate) fn run(what: &str, cmd: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!("{what} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(elapsed)
}

/// The median of several rounds.
pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn psql(sql: &str) -> anyhow::Result<()> {
    run(
        "psql",
        Command::new("psql").args([
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]),
    )
    .map(drop)
}

fn write_project(dir: &Path, provider: &str, script: impl Fn(usize) -> String) -> anyhow::Result<String> {
    let migrations = dir.join("prisma/migrations");
    std::fs::create_dir_all(&migrations)?;
    std::fs::write(migrations.join("migration_lock.toml"), format!("provider = \"{provider}\"\n"))?;
    let mut all = String::new();
    for i in 0..MIGRATIONS {
        let folder = migrations.join(format!("20260101{i:06}_m{i}"));
        std::fs::create_dir_all(&folder)?;
        let sql = script(i);
        std::fs::write(folder.join("migration.sql"), &sql)?;
        all.push_str(&sql);
    }
    std::fs::write(dir.join("pdp.toml"), "[prisma]\nversion = \"6.19.3\"\n\n[database]\nurl = \"env:BENCH_DB\"\n")?;
    Ok(all)
}

/// `cargo xtask bench migrate`.
pub fn migrate(root: &Path) -> anyhow::Result<()> {
    crate::services::ensure()?;
    crate::step("build pdp (release)", crate::cargo().args(["build", "--release", "--locked", "-p", "pdp"]))?;
    let pdp = root.join("target/release/pdp");
    let work = std::env::temp_dir().join(format!("pdp-bench-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    // PostgreSQL: every migration creates a table with an index and a few rows.
    let pg_dir = work.join("pg");
    let all = write_project(&pg_dir, "postgresql", |i| {
        format!(
            "-- CreateTable\nCREATE TABLE \"bench_{i}\" (\n    \"id\" SERIAL NOT NULL,\n    \"name\" TEXT NOT NULL,\n    \"created\" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    CONSTRAINT \"bench_{i}_pkey\" PRIMARY KEY (\"id\")\n);\n\n-- CreateIndex\nCREATE INDEX \"bench_{i}_name_idx\" ON \"bench_{i}\"(\"name\");\n\nINSERT INTO \"bench_{i}\" (\"name\") VALUES ('a'), ('b'), ('c');\n"
        )
    })?;
    let floor_file = work.join("all.sql");
    std::fs::write(&floor_file, &all)?;
    let (mut floor, mut ours) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        psql(
            "DROP SCHEMA IF EXISTS bench_floor CASCADE; CREATE SCHEMA bench_floor; DROP SCHEMA IF EXISTS bench_pdp CASCADE;",
        )?;
        floor.push(run(
            "psql -1 -f",
            Command::new("psql")
                .args(["-q", "-1", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(&floor_file)
                .env("PGOPTIONS", "--search_path=bench_floor"),
        )?);
        ours.push(run(
            "pdp migrate deploy",
            Command::new(&pdp)
                .args(["-q", "migrate", "deploy"])
                .current_dir(&pg_dir)
                .env("BENCH_DB", "postgresql://postgres@127.0.0.1:5432/test?schema=bench_pdp"),
        )?);
        eprintln!("  round {}: psql -1 -f {:?}, pdp {:?}", round + 1, floor[round], ours[round]);
    }
    psql("DROP SCHEMA IF EXISTS bench_floor CASCADE; DROP SCHEMA IF EXISTS bench_pdp CASCADE;")?;
    let (f, o) = (median(floor), median(ours));

    // SQLite: pdp against the real Prisma CLI on the same folder.
    let node_modules = root.join("tests/node/node_modules");
    let sqlite_line = if node_modules.join(".bin/prisma").exists() {
        let sq_dir = work.join("sqlite");
        write_project(&sq_dir, "sqlite", |i| {
            format!(
                "CREATE TABLE \"bench_{i}\" (\"id\" INTEGER NOT NULL PRIMARY KEY, \"name\" TEXT NOT NULL);\nCREATE INDEX \"bench_{i}_name_idx\" ON \"bench_{i}\"(\"name\");\n"
            )
        })?;
        std::fs::write(
            sq_dir.join("prisma/schema.prisma"),
            "generator client {\n  provider   = \"prisma-client-js\"\n  engineType = \"client\"\n}\n\ndatasource db {\n  provider = \"sqlite\"\n  url      = \"file:./dev.db\"\n}\n",
        )?;
        std::fs::write(
            sq_dir.join("prisma.config.ts"),
            "import { defineConfig } from \"prisma/config\";\nimport { PrismaLibSQL } from \"@prisma/adapter-libsql\";\nexport default defineConfig({ schema: \"prisma/schema.prisma\", experimental: { adapter: true }, engine: \"js\", adapter: async () => new PrismaLibSQL({ url: \"file:./prisma/prisma.db\" }) });\n",
        )?;
        std::os::unix::fs::symlink(&node_modules, sq_dir.join("node_modules"))?;
        let (mut prisma_t, mut pdp_t) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let _ = std::fs::remove_file(sq_dir.join("prisma/prisma.db"));
            let _ = std::fs::remove_file(sq_dir.join("prisma/pdp.db"));
            prisma_t.push(run(
                "prisma migrate deploy",
                Command::new(sq_dir.join("node_modules/.bin/prisma"))
                    .args(["migrate", "deploy"])
                    .current_dir(&sq_dir)
                    .env("PRISMA_ENGINES_MIRROR", "http://127.0.0.1:9")
                    .env("PRISMA_QUERY_ENGINE_LIBRARY", "/bin/true")
                    .env("CHECKPOINT_DISABLE", "1"),
            )?);
            pdp_t.push(run(
                "pdp migrate deploy (sqlite)",
                Command::new(&pdp)
                    .args(["-q", "migrate", "deploy"])
                    .current_dir(&sq_dir)
                    .env("BENCH_DB", "file:./pdp.db"),
            )?);
        }
        let (pr, pd) = (median(prisma_t), median(pdp_t));
        format!(
            "SQLite, {MIGRATIONS} migrations:  prisma migrate deploy {:>8.1} ms   pdp {:>8.1} ms   ratio pdp/prisma {:.2}x",
            pr.as_secs_f64() * 1e3,
            pd.as_secs_f64() * 1e3,
            pd.as_secs_f64() / pr.as_secs_f64()
        )
    } else {
        "SQLite comparison skipped: tests/node is not installed (run `cargo xtask test` once)".to_owned()
    };
    let _ = std::fs::remove_dir_all(&work);

    println!("\nmigrate benchmark (median of {ROUNDS} rounds, release build)");
    println!(
        "PostgreSQL, {MIGRATIONS} migrations:  psql -1 -f (floor) {:>8.1} ms   pdp {:>8.1} ms   ratio pdp/floor {:.2}x (target <= 1.50x)",
        f.as_secs_f64() * 1e3,
        o.as_secs_f64() * 1e3,
        o.as_secs_f64() / f.as_secs_f64()
    );
    println!("{sqlite_line}");
    Ok(())
}

/// One load run of the proxy benchmarks: throughput and latency percentiles (ms).
pub(crate) struct Load {
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
}

/// Median of plain numbers (the mean of the middle two for an even count).
pub(crate) fn median_f64(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

/// Prints the direct-vs-pdp table of the proxy benchmarks from alternating rounds, with the targets.
pub(crate) fn print_proxy_comparison(title: &str, direct_label: &str, proxy_label: &str, d: &[Load], p: &[Load]) {
    let med = |v: &[Load], f: fn(&Load) -> f64| median_f64(v.iter().map(f).collect());
    let (d50, p50) = (med(d, |l| l.p50), med(p, |l| l.p50));
    let (drps, prps) = (med(d, |l| l.rps), med(p, |l| l.rps));
    let (d99, p99) = (med(d, |l| l.p99), med(p, |l| l.p99));
    println!("\n{title}, medians of {} rounds:", d.len());
    println!("  {direct_label:<31} {drps:>8.0} req/s   p50 {d50:>6.2} ms   p99 {d99:>6.2} ms");
    println!("  {proxy_label:<31} {prps:>8.0} req/s   p50 {p50:>6.2} ms   p99 {p99:>6.2} ms");
    println!(
        "  p50 overhead {:+.1}% (target ≤ +10%), throughput {:.1}% of direct (target ≥ 90%)",
        (p50 / d50 - 1.0) * 100.0,
        prps / drps * 100.0
    );
}

/// Reads a child's output (`stream`, taken from it) until `port_of` finds a port in a line; the rest is
/// drained in the background so the child never blocks on a full pipe.
pub(crate) fn port_from(
    stream: Option<impl std::io::Read + Send + 'static>,
    what: &str,
    port_of: impl Fn(&str) -> Option<u16>,
) -> anyhow::Result<u16> {
    use std::io::BufRead;
    let stream = stream.ok_or_else(|| anyhow::format_err!("{what}: output is not piped"))?;
    let mut lines = std::io::BufReader::new(stream).lines();
    for line in lines.by_ref() {
        if let Some(port) = port_of(&line?) {
            std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
            return Ok(port);
        }
    }
    anyhow::bail!("{what} exited before it was ready")
}

/// The first run of digits after `marker` in `line`.
pub(crate) fn number_after(line: &str, marker: &str) -> Option<u16> {
    line.split(marker).nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `pdp serve`'s port from its `Listening on <scheme>://127.0.0.1:PORT` line on stderr.
pub(crate) fn read_listen_port(child: &mut std::process::Child, scheme: &str) -> anyhow::Result<u16> {
    let marker = format!("Listening on {scheme}://127.0.0.1:");
    port_from(child.stderr.take(), "pdp serve", |l| number_after(l, &marker))
}

/// The child of `pid` whose command line contains `marker`.
pub(crate) fn child_with(pid: u32, marker: &str) -> Option<u32> {
    children(pid).into_iter().find(|c| {
        std::fs::read(format!("/proc/{c}/cmdline"))
            .is_ok_and(|line| line.windows(marker.len()).any(|w| w == marker.as_bytes()))
    })
}

/// Every child of `pid` whose command line contains `marker`.
pub(crate) fn children_with(pid: u32, marker: &str) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|line| line.windows(marker.len()).any(|w| w == marker.as_bytes()))
        })
        .collect()
}

/// The TCP port process `pid` listens on (from `ss`, iproute2), polled for up to 10 s (a child opens its
/// bench-only listener just after it reports ready).
pub(crate) fn listening_port(pid: u32) -> anyhow::Result<u16> {
    let marker = format!("pid={pid},");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = Command::new("ss").args(["-tlnpH"]).output().context("cannot run ss")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let port = text
            .lines()
            .filter(|l| l.contains(&marker))
            .find_map(|l| l.split_whitespace().nth(3)?.rsplit(':').next()?.parse().ok());
        match port {
            Some(port) => return Ok(port),
            None if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(50)),
            None => bail!("process {pid} listens on no TCP port"),
        }
    }
}

/// The Unix socket process `pid` listens on (from `ss`, iproute2).
pub(crate) fn unix_socket(pid: u32) -> anyhow::Result<std::path::PathBuf> {
    let out = Command::new("ss").args(["-xlpH"]).output().context("cannot run ss")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let marker = format!("pid={pid},");
    text.lines()
        .filter(|l| l.contains(&marker))
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with('/')).map(std::path::PathBuf::from))
        .ok_or_else(|| anyhow::format_err!("process {pid} listens on no Unix socket"))
}

/// A loopback port nothing listens on now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The pids whose parent is `pid`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| stat_fields(*child).get(1).and_then(|f| f.parse::<u32>().ok()) == Some(pid))
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name (state is field 0, ppid 1, utime 11, stime 12).
pub(crate) fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    after.split_whitespace().map(str::to_owned).collect()
}

/// A process's utime + stime, in clock ticks.
pub(crate) fn cpu(pid: u32) -> u64 {
    let fields = stat_fields(pid);
    let n = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// A running nginx: the master (stopped at the end) and the worker whose CPU is counted.
pub(crate) struct Nginx {
    pub master: std::process::Child,
    pub worker: u32,
    pub port: u16,
}

/// Dropping it stops nginx with its worker, on every way out of a bench: SIGTERM to the master, which ends
/// its workers (a SIGKILL would leave the worker running, orphaned, on its port); a worker still there
/// after 10 s is killed.
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.master.id().to_string()]).status();
        let _ = self.master.wait();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{}", self.worker)).exists()
            && stat_fields(self.worker).first().is_some_and(|state| state != "Z")
        {
            if std::time::Instant::now() > deadline {
                let _ = Command::new("kill").args(["-KILL", &self.worker.to_string()]).status();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// nginx in front of the child `engine`'s Unix socket, configured as issue 14 describes the template's
/// peer: one worker, TLS with pdp's own certificate (`work/.pdp/tls`), a bearer-key check for `key`,
/// keep-alive upstream, every path mapped to the child's `/` when `to_root` (the Data Proxy protocol's
/// engine) or passed as it is (Prisma 7's executor), and an access log buffered as pdp's is. With
/// `callgrind` (an output file), nginx runs under valgrind's callgrind as one process (`master_process
/// off`), which is then also the worker.
pub(crate) fn start_nginx(
    work: &Path,
    engine: u32,
    key: &str,
    to_root: bool,
    callgrind: Option<&Path>,
) -> anyhow::Result<Nginx> {
    let socket = unix_socket(engine)?;
    let port = free_port()?;
    let rewrite = if to_root { "rewrite ^ / break;\n      " } else { "" };
    let dir = work.join("nginx");
    std::fs::create_dir_all(dir.join("logs"))?;
    let tls = work.join(".pdp/tls");
    let conf = format!(
        "user root;\nworker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {dir}/logs/access.log combined buffer=64k flush=1s;\n\
           upstream engine {{ server unix:{socket}; keepalive 32; }}\n\
           server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {tls_key};\n\
             location / {{\n      if ($http_authorization != \"Bearer {bearer}\") {{ return 401; }}\n\
               {rewrite}proxy_pass http://engine;\n      proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n      proxy_set_header Authorization \"\";\n    }}\n  }}\n}}\n",
        dir = dir.display(),
        socket = socket.display(),
        cert = tls.join("localhost.pem").display(),
        tls_key = tls.join("localhost-key.pem").display(),
        bearer = key,
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let mut command = match callgrind {
        Some(out) => {
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out.display())).arg("nginx");
            c
        }
        None => Command::new("nginx"),
    };
    command.args(["-p"]).arg(&dir).arg("-c").arg(dir.join("nginx.conf"));
    if callgrind.is_some() {
        command.args(["-g", "master_process off;"]).stdout(Stdio::null()).stderr(Stdio::null());
    } else {
        command.stderr(Stdio::inherit());
    }
    let master = command.spawn().context("cannot start nginx")?;
    let started = std::time::Instant::now();
    let worker = loop {
        let worker = if callgrind.is_some() { Some(master.id()) } else { children(master.id()).into_iter().next() };
        if let Some(w) = worker
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            break w;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            bail!("nginx did not start: see {}", dir.join("logs/error.log").display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Ok(Nginx { master, worker, port })
}
