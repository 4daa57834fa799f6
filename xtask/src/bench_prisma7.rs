//! What the Prisma 7 serve benchmarks (`serve`, `cluster`, `cache`) share: a project on a fresh PostgreSQL
//! database (`pdp init`, one executor per pdp, migrated, client built, users seeded), the generated
//! client's own findUnique `/query` body captured once, the wrk scripts that replay it, and a wrk run read
//! into figures with the CPU each watched process spent per request.
//!
//! Deliberately not here: what a benchmark compares and how it prints it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The marker the captured body carries for the id wrk varies (`findUnique({ where: { id: 7 } })`).
const ID_SEVEN: &str = "\"params\":{\"%1\":7}";

/// A benchmark's Prisma 7.10 project.
pub(crate) struct Project {
    /// The project directory (a temporary one, removed by [`Project::finish`]).
    pub work: PathBuf,
    /// The tool cache the benchmarks share.
    pub cache: PathBuf,
    /// The release `pdp`.
    pub pdp: PathBuf,
    db: String,
    /// The API key `pdp init` wrote.
    pub key: String,
}

impl Project {
    /// `pdp init` in a fresh directory on a fresh database `pdp_bench_<name>_<pid>`, `[serve] children = 1`
    /// (and `tls = "off"` with `plain`), migrated, the client built, `users` users seeded (ids 1…users).
    pub(crate) fn set_up(root: &Path, name: &str, users: usize, plain: bool) -> anyhow::Result<Project> {
        let work = std::env::temp_dir().join(format!("pdp-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let db = format!("pdp_bench_{}_{}", name.replace('-', "_"), std::process::id());
        let p = Project {
            work,
            cache: root.join("target/bench-cache"),
            pdp: root.join("target/release/pdp"),
            db,
            key: String::new(),
        };
        let url = p.url();
        crate::step("pdp init", &mut p.pdp(&["init", "--yes", "--no-ci", "--no-deploy", "--database-url", &url]))?;
        let generated = std::fs::read_to_string(p.work.join("pdp.toml"))?;
        // One executor, so that "direct" and "through pdp" load the very same process.
        let mut toml = generated.replacen("[serve]\n", "[serve]\nchildren = 1\n", 1);
        if plain {
            toml = toml.replacen("tls = \"auto\"", "tls = \"off\"", 1);
        }
        if toml == generated || (plain && !toml.contains("tls = \"off\"")) {
            bail!("the generated pdp.toml has no `[serve]` table with `tls = \"auto\"`");
        }
        std::fs::write(p.work.join("pdp.toml"), toml)?;
        crate::step("pdp migrate deploy", &mut p.pdp(&["-q", "migrate", "deploy"]))?;
        crate::step("pdp build-client", &mut p.pdp(&["-q", "build-client"]))?;
        let seed = format!(
            "INSERT INTO \"User\" (email, name) SELECT 'u' || i || '@bench.test', 'user ' || i FROM generate_series(1, {users}) i"
        );
        crate::step("seed users", Command::new("psql").args([url.as_str(), "-q", "-c", &seed]))?;
        let key = std::fs::read_to_string(p.work.join(".env"))?
            .lines()
            .find_map(|l| l.strip_prefix("PDP_API_KEY=").map(|v| v.trim().trim_matches(['\'', '"']).to_owned()))
            .context("no PDP_API_KEY in .env")?;
        Ok(Project { key, ..p })
    }

    /// The database's URL.
    pub(crate) fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:5432/{}", self.db)
    }

    /// `pdp ARGS` in the project, with the shared tool cache and a quiet log.
    pub(crate) fn pdp(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.pdp);
        c.args(args);
        self.in_project(c)
    }

    /// `PROGRAM ARGS…` (`valgrind`, say) running `pdp ARGS` as [`Project::pdp`] does.
    pub(crate) fn pdp_under(&self, program: &str, wrapper: &[&str], args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(wrapper).arg(&self.pdp).args(args);
        self.in_project(c)
    }

    fn in_project(&self, mut c: Command) -> Command {
        c.current_dir(&self.work).env("PDP_CACHE_DIR", &self.cache).env("PDP_LOG", "warn");
        c
    }

    /// Records the `/query` body the generated client sends for `findUnique({ where: { id: 7 } })` through
    /// `accel_url` (trusting `cert` when given).
    pub(crate) fn capture(&self, root: &Path, accel_url: &str, cert: Option<&Path>) -> anyhow::Result<String> {
        let mut capture = Command::new(crate::deno_binary(root)?);
        capture
            .args(["run", "-A", "--no-config"])
            .arg(root.join("xtask/bench/capture_query.ts"))
            .current_dir(&self.work)
            .env("DENO_DIR", self.cache.join("deno-dir"))
            .env("NO_COLOR", "1")
            .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
            .env("ACCEL_URL", accel_url);
        if let Some(cert) = cert {
            capture.env("DENO_CERT", cert);
        }
        crate::step("capture the client's findUnique /query body", &mut capture)?;
        Ok(std::fs::read_to_string(self.work.join("query.json"))?)
    }

    /// Drops the database and removes the directory; with `PDP_BENCH_KEEP` set, keeps both (to profile
    /// by hand against the same project) and says where they are.
    pub(crate) fn finish(&self) {
        if std::env::var_os("PDP_BENCH_KEEP").is_some() {
            eprintln!("kept (PDP_BENCH_KEEP): {} and database {}", self.work.display(), self.db);
            return;
        }
        let _ = Command::new("psql")
            .args([
                "postgresql://postgres@127.0.0.1:5432/postgres",
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db),
            ])
            .status();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A wrk script replaying `body` with the key and the client's headers plus `extra` Lua lines: with
/// `random_ids`, each request asks for a random id in 1…n instead of 7; every answer must be a found user.
pub(crate) fn lua(key: &str, body: &str, extra: &str, random_ids: Option<usize>) -> anyhow::Result<String> {
    let body_line = match random_ids {
        Some(n) => {
            let (pre, post) = body.split_once(ID_SEVEN).context("the captured body has no `%1` parameter of 7")?;
            format!(
                "local pre = {}\nlocal post = {}\nrequest = function()\n  return wrk.format(nil, nil, nil, pre .. '\"params\":{{\"%1\":' .. math.random(1, {n}) .. '}}' .. post)\nend\n",
                lua_string(pre)?,
                lua_string(post)?
            )
        }
        None => format!("wrk.body = {}\n", lua_string(body)?),
    };
    Ok(format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"Bearer {key}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Prisma-Engine-Hash\"] = \"7.10.0\"\n{extra}{body_line}\
         response = function(status, headers, body)\n  if status ~= 200 or not body:find('\"email\"', 1, true) then\n    \
         io.stderr:write(\"unexpected \" .. status .. \": \" .. body .. \"\\n\"); os.exit(1)\n  end\nend\n"
    ))
}

/// `text` as a Lua long string literal (no escapes inside).
pub(crate) fn lua_string(text: &str) -> anyhow::Result<String> {
    let level =
        (0..8).find(|n| !text.contains(&format!("]{}]", "=".repeat(*n)))).context("no Lua long bracket fits")?;
    let eq = "=".repeat(level);
    Ok(format!("[{eq}[{text}]{eq}]"))
}

/// One wrk run's figures: req/s, p50 and p99 in ms (with `--latency`), and the CPU µs per request of each
/// watched process.
pub(crate) struct Wrk {
    pub rps: f64,
    /// Requests completed.
    pub requests: f64,
    pub p50: f64,
    pub p99: f64,
    pub cpu: Vec<f64>,
}

fn ms(text: &str, label: &str) -> f64 {
    let Some(value) = text.lines().find_map(|l| l.trim().strip_prefix(label)).map(str::trim) else { return 0.0 };
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(value.len()));
    let n: f64 = number.parse().unwrap_or(0.0);
    match unit {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        _ => n,
    }
}

/// Runs `wrk -t1 -c<connections> -d<secs>s --latency -s <script> <url>` in `work`, watching `pids`' CPU.
pub(crate) fn wrk(
    work: &Path,
    script: &str,
    url: &str,
    connections: u32,
    secs: u32,
    pids: &[u32],
) -> anyhow::Result<Wrk> {
    let spent = || pids.iter().map(|p| crate::bench::cpu(*p)).collect::<Vec<_>>();
    let before = spent();
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s"), "--latency", "-s", script, url])
        .current_dir(work)
        .output()?;
    let after = spent();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk against {url} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let number = |label: &str| -> f64 {
        text.lines()
            .find(|l| l.contains(label))
            .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
            .unwrap_or(0.0)
    };
    let n = number("requests in").max(1.0);
    // Clock ticks are 10 ms.
    let cpu = before.iter().zip(&after).map(|(b, a)| a.saturating_sub(*b) as f64 * 10_000.0 / n).collect();
    Ok(Wrk { rps: number("Requests/sec"), requests: n, p50: ms(&text, "50%"), p99: ms(&text, "99%"), cpu })
}
