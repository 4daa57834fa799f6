//! Faults under load, with a write ledger: concurrent workers of two real clients, the Prisma 7.10 Deno
//! client (query plans through an executor) and a Prisma 6.19 Node client (the Data Proxy protocol through a
//! WASM engine), do numbered inserts and increments through `pdp serve` at the same time (each increment in
//! an interactive transaction that also inserts a row carrying its operation id), every answer recorded by
//! the client; a fault is injected mid-run; afterwards the database is compared with the record.
//! Acknowledged and absent = lost; an account's counter above its transaction rows = a duplicated
//! increment (the operation-id row makes a re-sent insert fail instead); present but not acknowledged = in
//! doubt (allowed, counted). Also: the longest each client went without an acknowledged write, what the
//! clients saw, and what `/ready` said meanwhile.
//!
//! The database is a private PostgreSQL cluster this test starts on a free port (initdb as the
//! unprivileged user `nobody`: it refuses root), never the machine's shared server, so it can be restarted
//! and stopped. The short form runs in `make test`; `cargo xtask chaos` runs it with more workers and longer
//! phases (`PDP_CHAOS_FULL=1`) and prints the table.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::cluster::{Mode, balancer, replica};
use crate::support::serve::{Serving, api_key, as_nobody, cached, children, deno, poll, signal, tool_cache};
use crate::support::{Project, closed_port};

/// The ledger's tables, as a user adds models and a migration.
const MODELS: &str = "\nmodel Account {\n  id    Int @id\n  value Int @default(0)\n}\n\nmodel Op {\n  id      String @id\n  account Int\n  kind    String\n}\n";
const MIGRATION: &str = "CREATE TABLE \"Account\" (\"id\" INTEGER NOT NULL, \"value\" INTEGER NOT NULL DEFAULT 0, CONSTRAINT \"Account_pkey\" PRIMARY KEY (\"id\"));\nCREATE TABLE \"Op\" (\"id\" TEXT NOT NULL, \"account\" INTEGER NOT NULL, \"kind\" TEXT NOT NULL, CONSTRAINT \"Op_pkey\" PRIMARY KEY (\"id\"));\n";

/// The workers both clients run (plain JavaScript, so Deno and Node read it alike): each creates its
/// account, then alternates numbered inserts and increments, one JSON line per answer, until the file
/// `stop-<prefix>` appears.
const WORKERS: &str = r#"
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (v) => console.log(JSON.stringify(v));
async function worker(w) {
  const account = first + w;
  for (;;) {
    try { await prisma.account.create({ data: { id: account } }); break; }
    catch (e) { if (stop()) return; await sleep(50); }
  }
  say({ ready: w });
  for (let i = 0; !stop(); i++) {
    const id = `${prefix}-${w}-${i}`;
    const kind = i % 2 ? "inc" : "insert";
    const s = Date.now();
    try {
      if (kind === "insert") await prisma.op.create({ data: { id, account, kind } });
      else await prisma.$transaction(async (tx) => {
        await tx.account.update({ where: { id: account }, data: { value: { increment: 1 } } });
        await tx.op.create({ data: { id, account, kind } });
      }, { maxWait: 5000, timeout: 10000 });
      say({ id, ok: true, s, t: Date.now() });
    } catch (e) {
      say({ id, ok: false, s, t: Date.now(), code: e?.code ?? e?.name ?? "error", message: String(e?.message ?? e).replace(/\s+/g, " ").slice(-160) });
      await sleep(20);
    }
  }
}
"#;

/// The Prisma 7.10 Deno client's workload: `deno run ledger.ts <prefix> <workers> <first account>`.
const DENO_HEAD: &str = r#"
const { PrismaClient } = await import(new URL(Deno.env.get("PDP_CLIENT"), `file://${Deno.cwd()}/`).href);
const base = new URL(Deno.env.get("PDP_URL"));
const prisma = new PrismaClient({ accelerateUrl: `prisma://${base.host}/?api_key=${Deno.env.get("PDP_API_KEY")}` });
const [prefix, workers, first] = [Deno.args[0], Number(Deno.args[1]), Number(Deno.args[2])];
const stop = () => { try { Deno.statSync(`stop-${prefix}`); return true; } catch { return false; } };
"#;
const DENO_TAIL: &str = "await Promise.all([...Array(workers).keys()].map(worker));\nsay({ done: true });\n";

/// The Prisma 6.19 Node client's (through a WASM engine): `node ledger.cjs <prefix> <workers> <first>`.
const NODE_HEAD: &str = r#"
const { PrismaClient } = require("./generated");
const prisma = new PrismaClient({ datasourceUrl: process.env.PDP_URL });
const [prefix, workers, first] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const stop = () => require("fs").existsSync(`stop-${prefix}`);
"#;
const NODE_TAIL: &str = "Promise.all([...Array(workers).keys()].map(worker)).then(() => { say({ done: true }); process.exit(0); }, (e) => { console.error(e); process.exit(1); });\n";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

fn full() -> bool {
    std::env::var("PDP_CHAOS_FULL").is_ok_and(|v| v == "1")
}

/// A private PostgreSQL cluster owned by `nobody`, on a free port.
struct PrivatePg {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    port: u16,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pg");
        std::fs::create_dir_all(&dir).expect("mkdir");
        // nobody must reach its data directory.
        for p in [tmp.path(), dir.as_path()] {
            assert!(Command::new("chown").arg("65534:65534").arg(p).status().expect("chown").success());
        }
        let d = dir.to_str().expect("utf-8");
        let out = as_nobody("initdb", &["-D", &format!("{d}/data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let pg = PrivatePg { dir, _tmp: tmp, port: closed_port() };
        pg.ctl(&["start"]);
        pg
    }

    fn ctl(&self, args: &[&str]) {
        let d = self.dir.to_str().expect("utf-8");
        let opts = format!("-p {} -k {d} -c listen_addresses=127.0.0.1 -c max_connections=200", self.port);
        let (data, log) = (format!("{d}/data"), format!("{d}/log"));
        let mut argv: Vec<&str> = args.to_vec();
        argv.extend(["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts]);
        let out = as_nobody("pg_ctl", &argv);
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop_immediately(&self) {
        self.ctl(&["stop", "-m", "immediate"]);
    }

    fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([self.url("ledger").as_str(), "-At", "-F", "\t", "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let d = self.dir.to_str().unwrap_or("");
        let _ = as_nobody("pg_ctl", &["-D", &format!("{d}/data"), "stop", "-m", "immediate"]);
    }
}

/// One answer the client recorded.
struct Answer {
    id: String,
    ok: bool,
    started: u64,
    at: u64,
    code: String,
    message: String,
}

/// A running workload.
struct Load {
    /// Taken by [`Load::stop`]; killed on drop otherwise (a failed test leaves no client running).
    child: Option<Child>,
    answers: Arc<Mutex<Vec<Answer>>>,
    ready: Arc<Mutex<usize>>,
    reader: Option<std::thread::JoinHandle<()>>,
    prefix: String,
    root: PathBuf,
    workers: usize,
}

/// Which real client a workload runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    /// The Prisma 7.10 Deno client `pdp build-client` built, in the project.
    Seven,
    /// A Prisma 6.19 Node client (the Data Proxy protocol, through a WASM engine), in its own directory.
    Six,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Seven => "7.10 Deno",
            Client::Six => "6.19 Node",
        }
    }
}

impl Load {
    /// `client`'s workload in `dir` against `url` (a replica, or the balancer in front of several), trusting
    /// `ca`: `workers` accounts from `first_account`, ops named `<prefix>-…`.
    #[allow(clippy::too_many_arguments)] // One workload's whole description; a struct would only rename it.
    fn start(
        client: Client,
        dir: &std::path::Path,
        url: &str,
        ca: &std::path::Path,
        key: &str,
        prefix: &str,
        workers: usize,
        first_account: usize,
    ) -> Load {
        let args = [prefix.to_owned(), workers.to_string(), first_account.to_string()];
        let mut cmd = match client {
            Client::Seven => {
                let mut cmd = Command::new(deno());
                cmd.args(["run", "-A", "--no-config", "ledger.ts"])
                    .env("DENO_CERT", ca)
                    .env("DENO_DIR", tool_cache().join("deno-dir"))
                    .env("NO_COLOR", "1")
                    .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
                    .env("PDP_URL", url)
                    .env("PDP_API_KEY", key);
                cmd
            }
            Client::Six => {
                let host = url.trim_start_matches("https://");
                let mut cmd = Command::new("node");
                cmd.arg("ledger.cjs")
                    .env("PDP_URL", format!("prisma://{host}/?api_key={key}"))
                    .env("NODE_EXTRA_CA_CERTS", ca);
                cmd
            }
        };
        let mut child = cmd
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the client runs");
        let stdout = child.stdout.take().expect("stdout");
        let answers = Arc::new(Mutex::new(Vec::new()));
        let ready = Arc::new(Mutex::new(0));
        let (a, r) = (answers.clone(), ready.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                if v.get("ready").is_some() {
                    *r.lock().expect("ready") += 1;
                    continue;
                }
                let Some(id) = v["id"].as_str() else { continue };
                a.lock().expect("answers").push(Answer {
                    id: id.to_owned(),
                    ok: v["ok"] == true,
                    started: v["s"].as_u64().unwrap_or(0),
                    at: v["t"].as_u64().unwrap_or(0),
                    code: v["code"].as_str().unwrap_or("").to_owned(),
                    message: v["message"].as_str().unwrap_or("").to_owned(),
                });
            }
        });
        let load = Load {
            child: Some(child),
            answers,
            ready,
            reader: Some(reader),
            prefix: prefix.to_owned(),
            root: dir.to_path_buf(),
            workers,
        };
        poll(Duration::from_secs(120), "every worker's account created", || {
            (*load.ready.lock().expect("ready") == workers).then_some(())
        });
        load
    }

    fn acked(&self) -> usize {
        self.answers.lock().expect("answers").iter().filter(|a| a.ok).count()
    }

    /// Waits until `n` more operations were acknowledged that started at or after `since` (Unix ms).
    fn wait_acks_since(&self, since: u64, n: usize, limit: Duration) {
        poll(limit, "acknowledged operations", || {
            (self.answers.lock().expect("answers").iter().filter(|a| a.ok && a.started >= since).count() >= n)
                .then_some(())
        });
    }

    /// Waits until every worker had an operation acknowledged that started after the fault ended (`since`)
    /// and after that worker's last failure. One worker can be stuck on a dead connection while the others
    /// make the acknowledgments `wait_acks_since` counted, and fail later.
    fn wait_resumed(&self, since: u64, limit: Duration) {
        // Op ids are `<prefix>-<worker>-<i>`.
        let worker = |a: &Answer| a.id.rsplit('-').nth(1).and_then(|w| w.parse::<usize>().ok());
        poll(limit, "every worker acknowledged after its last failure", || {
            let answers = self.answers.lock().expect("answers");
            (0..self.workers)
                .all(|w| {
                    let mine = || answers.iter().filter(|a| worker(a) == Some(w));
                    let last_failure = mine().filter(|a| !a.ok).map(|a| a.at).max().unwrap_or(0).max(since);
                    mine().any(|a| a.ok && a.started >= last_failure)
                })
                .then_some(())
        });
    }

    fn stop(mut self) -> Vec<Answer> {
        std::fs::write(self.root.join(format!("stop-{}", self.prefix)), "").expect("stop file");
        let mut child = self.child.take().expect("running");
        let status = child.wait().expect("deno");
        assert!(status.success(), "the workload failed");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::mem::take(&mut *self.answers.lock().expect("answers"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What `/ready` said, polled every 100 ms while `on` holds: the sequence of distinct states.
fn watch_ready(s: &Serving, on: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    let url = format!("{}/ready", s.url());
    let ca = s.ca.clone();
    std::thread::spawn(move || {
        let mut seen: Vec<String> = Vec::new();
        while on.load(Ordering::Relaxed) {
            let out = Command::new("curl").args(["-s", "--max-time", "2", "--cacert"]).arg(&ca).arg(&url).output();
            let state = out.ok().and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok()).map_or_else(
                || "no answer".to_owned(),
                |v| {
                    let status = v["status"].as_str().unwrap_or("?").to_owned();
                    match v["database"]["status"].as_str() {
                        Some("unreachable") => format!("{status} (database unreachable)"),
                        _ => match v["executor"]["status"].as_str() {
                            Some(e) if e != "ready" => format!("{status} (executor {e})"),
                            _ => status,
                        },
                    }
                },
            );
            if seen.last() != Some(&state) {
                seen.push(state);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        seen
    })
}

/// One row of the table.
struct Figures {
    fault: &'static str,
    client: Client,
    requests: usize,
    acked: usize,
    lost: usize,
    duplicated: i64,
    in_doubt: usize,
    recovery_ms: Option<u64>,
    errors: BTreeMap<String, usize>,
    ready: Vec<String>,
}

/// One fault's run: its name, the ops' prefix, the workers' accounts, when the fault began and ended (Unix
/// ms), and what `/ready` said.
struct Run<'a> {
    fault: &'static str,
    client: Client,
    prefix: &'a str,
    first: usize,
    workers: usize,
    fault_at: u64,
    fault_end: u64,
    ready: Vec<String>,
}

/// Compares the record with the database: the run's accounts and the ops of its prefix.
fn ledger(pg: &PrivatePg, run: Run<'_>, answers: &[Answer]) -> Figures {
    let Run { fault, client, prefix, first, workers, fault_at, fault_end, ready } = run;
    let present: HashSet<String> =
        pg.psql(&format!("SELECT id FROM \"Op\" WHERE id LIKE '{prefix}-%'")).lines().map(str::to_owned).collect();
    let acked: HashSet<&str> = answers.iter().filter(|a| a.ok).map(|a| a.id.as_str()).collect();
    let lost = acked.iter().filter(|id| !present.contains(**id)).count();
    let in_doubt = present.iter().filter(|id| !acked.contains(id.as_str())).count();
    // Each increment and its op row commit together: a counter above its rows is an increment that ran twice.
    let rows = pg.psql(&format!(
        "SELECT a.id, a.value, (SELECT count(*) FROM \"Op\" o WHERE o.account = a.id AND o.kind = 'inc') FROM \"Account\" a WHERE a.id >= {first} AND a.id < {}",
        first + workers
    ));
    let mut duplicated = 0i64;
    for row in rows.lines() {
        let f: Vec<i64> = row.split('\t').filter_map(|x| x.parse().ok()).collect();
        if let [_, value, count] = f[..] {
            duplicated += (value - count).max(0);
            assert!(value >= count, "an increment's op row without its increment: {row}");
        }
    }
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers.iter().filter(|a| !a.ok) {
        let code = if a.code.is_empty() { "error".to_owned() } else { a.code.clone() };
        let n = errors.entry(code.clone()).or_insert(0);
        if *n == 0 {
            eprintln!("{fault} ({}): first {code}: {}", client.name(), a.message);
        }
        *n += 1;
    }
    // Requests succeed again: an acknowledged operation that started after the fault ended and after the
    // last failure.
    let last_failure = answers.iter().filter(|a| !a.ok && a.at >= fault_at).map(|a| a.at).max().unwrap_or(fault_end);
    let resumed = answers.iter().any(|a| a.ok && a.started >= fault_end.max(last_failure));
    // What the fault cost this client: the longest it went without an acknowledged write from the fault's
    // start, whether its requests failed meanwhile or waited (a hung child).
    let mut acks: Vec<u64> = answers.iter().filter(|a| a.ok && a.at >= fault_at).map(|a| a.at).collect();
    acks.sort_unstable();
    let recovery_ms = resumed
        .then(|| {
            acks.iter()
                .scan(fault_at, |prev, &t| {
                    let gap = t - *prev;
                    *prev = t;
                    Some(gap)
                })
                .max()
        })
        .flatten();
    Figures {
        fault,
        client,
        requests: answers.len(),
        acked: acked.len(),
        lost,
        duplicated,
        in_doubt,
        recovery_ms,
        errors,
        ready,
    }
}

fn print_table(rows: &[Figures]) {
    eprintln!(
        "\n| fault | client | requests | acknowledged writes | lost | duplicated | in doubt | longest without an acknowledgment | errors the clients saw | /ready during the fault |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let errors: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        eprintln!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.fault,
            r.client.name(),
            r.requests,
            r.acked,
            r.lost,
            r.duplicated,
            r.in_doubt,
            r.recovery_ms.map_or("–".to_owned(), |ms| format!("{:.2} s", ms as f64 / 1000.0)),
            if errors.is_empty() { "none".to_owned() } else { errors.join(", ") },
            r.ready.join(" → "),
        );
    }
}

/// A ledger project on `pg`: the sample schema plus the ledger's models and migration, migrated, its
/// client built.
fn ledger_project(pg: &PrivatePg) -> Project {
    let p = Project::new();
    p.init(&["--database-url", &pg.url("ledger")]);
    let schema = p.read("prisma/schema.prisma");
    p.write("prisma/schema.prisma", &format!("{schema}{MODELS}"));
    p.write("prisma/migrations/20990101000000_ledger/migration.sql", MIGRATION);
    cached(&p, &["migrate", "deploy"]).expect_code(0);
    cached(&p, &["build-client"]).expect_code(0);
    p.write("ledger.ts", &format!("{DENO_HEAD}{WORKERS}{DENO_TAIL}"));
    p
}

/// The Prisma 6.19 Node client of the ledger's models, in its own directory, for `s` (its first query
/// provisions the WASM engine's packages, which the client's generation takes its @prisma/client from).
fn six_client(s: &Serving, key: &str) -> Project {
    let (b64, hash) = crate::serve_dp1::node_client_schema();
    let bearer = format!("Authorization: Bearer {key}");
    let (code, body) = s.curl("PUT", &format!("/6.19.3/{hash}/schema"), &[&bearer], Some(&b64));
    assert_eq!(code, 200, "{body}");
    let count = r#"{"modelName":"User","action":"aggregate","query":{"arguments":{},"selection":{"_count":{"arguments":{},"selection":{"_all":true}}}}}"#;
    let (code, body) = s.curl("POST", &format!("/6.19.3/{hash}/graphql"), &[&bearer], Some(count));
    assert_eq!(code, 200, "{body}\n{}", s.log());
    let six = Project::new();
    crate::serve_dp1::generate_node_client(&six, MODELS);
    six.write("ledger.cjs", &format!("{NODE_HEAD}{WORKERS}{NODE_TAIL}"));
    six
}

/// The private database, the project on it and its key.
struct Rig {
    pg: PrivatePg,
    p: Project,
    key: String,
}

/// `[serve.limits]` for a pool of `children` per key serving the project's executors and two 6.x schemas
/// (the warm-up's and the ledger's): the executors take all but the reserve, each schema one connection per
/// child from it.
fn limits_for(children: usize) -> String {
    let reserve = 2 * children;
    format!("\n[serve.limits]\nconnection-limit = {}\non-demand-connections = {reserve}\n", reserve + 4 * children)
}

/// Runs one fault under the load of both clients at once (their accounts apart) sent to `url` (`s`, or a
/// balancer in front of it and others), `/ready` watched on `s`: `inject` returns when the fault is over.
/// One row per client.
fn scenario(
    rig: &Rig,
    six: &Project,
    s: &Serving,
    url: &str,
    fault: &'static str,
    first: usize,
    inject: impl FnOnce(),
) -> Vec<Figures> {
    let Rig { pg, p, key } = rig;
    let (workers, warm, after) = if full() { (8, 200, 200) } else { (3, 30, 30) };
    let clients = [(Client::Seven, p, first), (Client::Six, six, first + 100)];
    let loads: Vec<(Client, usize, String, Load)> = clients
        .iter()
        .map(|&(client, dir, first)| {
            let prefix = format!("{fault} {}", client.name());
            let load = Load::start(client, dir.root(), url, &s.ca, key, &prefix, workers, first);
            (client, first, prefix, load)
        })
        .collect();
    for (_, _, _, load) in &loads {
        poll(Duration::from_secs(60), "the workload warm", || (load.acked() >= warm).then_some(()));
    }
    let on = Arc::new(AtomicBool::new(true));
    let watcher = watch_ready(s, on.clone());
    let fault_at = now_ms();
    inject();
    let fault_end = now_ms();
    for (_, _, _, load) in &loads {
        load.wait_acks_since(fault_end, after, Duration::from_secs(90));
        load.wait_resumed(fault_end, Duration::from_secs(60));
    }
    // `/ready` follows (its database check is at most a second old).
    poll(Duration::from_secs(30), "/ready after the fault", || {
        (s.curl("GET", "/ready", &[], None).0 == 200).then_some(())
    });
    std::thread::sleep(Duration::from_millis(150));
    on.store(false, Ordering::Relaxed);
    let ready = watcher.join().expect("watcher");
    loads
        .into_iter()
        .map(|(client, first, prefix, load)| {
            let answers = load.stop();
            let run = Run { fault, client, prefix: &prefix, first, workers, fault_at, fault_end, ready: ready.clone() };
            ledger(pg, run, &answers)
        })
        .collect()
}

/// The children of `s` whose command line has `needle` (`pdp-qpe.mjs`, `pdp-wasm-engine.mjs`).
fn kids(s: &Serving, needle: &str, expected: usize) -> Vec<u32> {
    let kids = children(s.pid(), needle);
    assert_eq!(kids.len(), expected, "{expected} {needle}: {kids:?}");
    kids
}

/// The process ids of the WASM engines serving the ledger's schema (not the warm-up schema's), from the
/// operator's snapshot.
fn ledger_engines(s: &Serving, key: &str) -> Vec<u32> {
    let (code, json) = s.curl("GET", "/status.json", &[&format!("Authorization: Bearer {key}")], None);
    assert_eq!(code, 200, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let (_, warm) = crate::serve_dp1::node_client_schema();
    v["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter(|c| c["kind"] == "engine" && !c["key"].as_str().unwrap_or("").contains(&warm[..12]))
        .filter_map(|c| c["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
        .collect()
}

/// A private cluster with the ledger's database and a project on it, `children` per key.
fn ledger_setup(children: usize) -> Rig {
    let pg = PrivatePg::start();
    let out = Command::new("psql")
        .args([pg.url("postgres").as_str(), "-c", "CREATE DATABASE ledger"])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = ledger_project(&pg);
    let key = api_key(&p);
    // 6.x clients through WASM engines: no native engine can be fetched here.
    let toml = p.read("pdp.toml").replace("[serve]\n", &format!("[serve]\nchildren = {children}\nengine = \"wasm\"\n"));
    p.write("pdp.toml", &format!("{toml}{}", limits_for(children)));
    Rig { pg, p, key }
}

/// A ledger rig with `children` per key, one `pdp serve` on it with every child ready, and the 6.19 client.
fn serving(children: usize) -> (Rig, Serving, Project) {
    let rig = ledger_setup(children);
    let s = Serving::start(&rig.p, &[]);
    s.all_children_ready();
    let six = six_client(&s, &rig.key);
    (rig, s, six)
}

/// Every row: nothing lost, nothing run twice, something acknowledged.
fn assert_ledgers(rows: &[Figures]) {
    assert_ledgers_with(rows, |_| false);
}

/// The same, where `resends(row)` says its client may itself re-send a write whose connection failed (the
/// 5.x/6.x Data Proxy client does, up to 3 attempts): its P2002 (an operation id meeting itself) is then the
/// client's, counted and shown, not a failure of pdp's.
fn assert_ledgers_with(rows: &[Figures], resends: impl Fn(&Figures) -> bool) {
    for r in rows {
        let name = format!("{} ({})", r.fault, r.client.name());
        if resends(r) {
            eprintln!("{name}: the client re-sent {} write(s) itself", r.errors.get("P2002").copied().unwrap_or(0));
        } else {
            // An operation id meeting itself (P2002) would be a write sent twice.
            assert!(!r.errors.contains_key("P2002"), "{name}: an operation ran twice");
        }
        assert_eq!(r.lost, 0, "{name}: acknowledged writes lost");
        assert_eq!(r.duplicated, 0, "{name}: increments ran twice");
        assert!(r.acked > 0, "{name}: nothing was acknowledged");
    }
}

#[test]
fn a_killed_replica_behind_haproxy_loses_no_acknowledged_write() {
    let rig = ledger_setup(1);
    let p = &rig.p;
    p.write("pdp.toml", &format!("{}\n[serve.cluster]\nsecret = \"env:PDP_CLUSTER_SECRET\"\n", p.read("pdp.toml")));
    let dir = tempfile::tempdir().expect("tempdir");
    let (lb_port, c0, c1) = (closed_port(), closed_port(), closed_port());
    let peers = format!("127.0.0.1:{c0},127.0.0.1:{c1}");
    let public = format!("https://localhost:{lb_port}");
    let doomed = replica(p, c0, &peers, &public);
    let survivor = replica(p, c1, &peers, &public);
    doomed.all_children_ready();
    survivor.all_children_ready();
    let six = six_client(&survivor, &rig.key);
    // As deploy/haproxy.cfg runs it: TCP mode, TLS passed through to pdp, so the balancer holds no request it
    // could re-send. In HTTP mode with connection reuse, even with `retry-on none`, a request in flight on the
    // killed replica reached the database twice in each of 3 full runs and 2 of 4 short ones here (a P2002 on
    // an operation id; once an increment applied twice): see the README's reliability section.
    let _lb = balancer(dir.path(), lb_port, Mode::Tcp, &[doomed.port, survivor.port]);
    let fault = "replica SIGKILL (1 of 2, behind HAProxy in TCP mode)";
    // The survivor's /ready: it keeps serving, and the balancer's checks find the dead one.
    let rows = scenario(&rig, &six, &survivor, &public, fault, 6000, || doomed.signal("KILL"));
    print_table(&rows);
    // A write in flight on the killed replica fails its connection, and the 6.19 client sends it again.
    assert_ledgers_with(&rows, |r| r.client == Client::Six);
    for r in &rows {
        assert!(r.recovery_ms.is_some(), "{}: requests never succeeded again", r.client.name());
        assert_eq!(r.ready, ["ready"], "the survivor stayed ready");
    }
    drop(doomed);
}

#[test]
fn one_killed_child_of_a_pool_of_two_loses_no_acknowledged_write_and_its_mate_serves_on() {
    let (rig, s, six) = serving(2);
    let url = s.url();
    let mut rows = scenario(&rig, &six, &s, &url, "1 of 2 executors SIGKILL", 7000, || {
        signal(kids(&s, "pdp-qpe.mjs", 2)[0], "KILL");
    });
    // Two engine keys (the warm-up schema's and the ledger's), two children each: one of the ledger's.
    rows.extend(scenario(&rig, &six, &s, &url, "1 of 2 engines SIGKILL", 7500, || {
        let ledger = ledger_engines(&s, &rig.key);
        assert_eq!(ledger.len(), 2, "the ledger schema's pool of two: {ledger:?}");
        signal(ledger[0], "KILL");
    }));
    print_table(&rows);
    assert_ledgers(&rows);
    for r in &rows {
        assert!(r.recovery_ms.is_some(), "{} ({}): requests never succeeded again", r.fault, r.client.name());
        // Its pool mate kept the key served: never unready.
        assert_eq!(r.ready, ["ready"], "{} ({})", r.fault, r.client.name());
    }
}

#[test]
fn no_acknowledged_write_is_lost_or_run_twice_under_faults() {
    let (rig, s, six) = serving(1);
    let (url, pg) = (s.url(), &rig.pg);
    let mut rows = Vec::new();
    let outage = if full() { Duration::from_secs(10) } else { Duration::from_secs(3) };
    let executor = || kids(&s, "pdp-qpe.mjs", 1)[0];

    rows.extend(scenario(&rig, &six, &s, &url, "executor SIGKILL", 1000, || signal(executor(), "KILL")));
    rows.extend(scenario(&rig, &six, &s, &url, "WASM engine SIGKILL", 1200, || {
        let ledger = ledger_engines(&s, &rig.key);
        assert_eq!(ledger.len(), 1, "the ledger schema's engine: {ledger:?}");
        signal(ledger[0], "KILL");
    }));
    // A hung executor: unresponsive to its health route, then answering again (SIGCONT) before pdp's kill.
    rows.extend(scenario(&rig, &six, &s, &url, "executor hangs 5 s (SIGSTOP)", 1500, || {
        let pid = executor();
        signal(pid, "STOP");
        std::thread::sleep(Duration::from_secs(5));
        signal(pid, "CONT");
    }));
    if full() {
        // Hung for longer than pdp waits: killed and restarted.
        rows.extend(scenario(&rig, &six, &s, &url, "executor hangs 40 s (SIGSTOP)", 1700, || {
            let pid = executor();
            signal(pid, "STOP");
            // pdp kills it (SIGKILL works on a stopped process): nothing to continue.
            poll(Duration::from_secs(60), "the hung executor killed", || {
                (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
        }));
    }
    rows.extend(scenario(&rig, &six, &s, &url, "PostgreSQL restarted", 2000, || {
        pg.ctl(&["restart", "-m", "immediate"]);
    }));
    rows.extend(scenario(&rig, &six, &s, &url, "PostgreSQL unreachable", 3000, || {
        pg.stop_immediately();
        // The outage's length is the fault itself, not a wait for a state.
        std::thread::sleep(outage);
        pg.ctl(&["start"]);
    }));

    // SIGTERM with transactions open: new work is refused, what is open finishes, pdp exits.
    let fault = "pdp SIGTERM";
    let (workers, warm) = if full() { (8, 200) } else { (3, 30) };
    let loads: Vec<(Client, usize, String, Load)> = [(Client::Seven, &rig.p, 4000), (Client::Six, &six, 4100)]
        .into_iter()
        .map(|(client, dir, first)| {
            let prefix = format!("{fault} {}", client.name());
            (
                client,
                first,
                prefix.clone(),
                Load::start(client, dir.root(), &url, &s.ca, &rig.key, &prefix, workers, first),
            )
        })
        .collect();
    for (_, _, _, load) in &loads {
        poll(Duration::from_secs(60), "the workload warm", || (load.acked() >= warm).then_some(()));
    }
    let on = Arc::new(AtomicBool::new(true));
    let watcher = watch_ready(&s, on.clone());
    let fault_at = now_ms();
    s.signal("TERM");
    let (code, log) = s.wait(Duration::from_secs(60));
    on.store(false, Ordering::Relaxed);
    let ready = watcher.join().expect("watcher");
    assert_eq!(code, 0, "{log}");
    for (client, first, prefix, load) in loads {
        let answers = load.stop();
        let run =
            Run { fault, client, prefix: &prefix, first, workers, fault_at, fault_end: now_ms(), ready: ready.clone() };
        let mut row = ledger(pg, run, &answers);
        row.recovery_ms = None;
        rows.push(row);
    }

    print_table(&rows);
    assert_ledgers(&rows);
    // Recovery: every fault but the stop ends with requests succeeding again.
    for r in rows.iter().filter(|r| r.fault != fault) {
        assert!(r.recovery_ms.is_some(), "{} ({}): requests never succeeded again", r.fault, r.client.name());
    }
    // /ready told the truth: unready while the database was down, ready again after.
    let row = |name: &str| rows.iter().find(|r| r.fault == name).expect("a row");
    let outage_row = row("PostgreSQL unreachable");
    assert!(outage_row.ready.iter().any(|s| s.contains("database unreachable")), "{:?}", outage_row.ready);
    assert_eq!(outage_row.ready.last().map(String::as_str), Some("ready"), "{:?}", outage_row.ready);
    let hung = row("executor hangs 5 s (SIGSTOP)");
    assert!(hung.ready.iter().any(|s| s.contains("executor unresponsive")), "/ready saw the hang: {:?}", hung.ready);
    assert_eq!(hung.ready.last().map(String::as_str), Some("ready"), "{:?}", hung.ready);
    let stop = row(fault);
    assert!(stop.ready.iter().any(|s| s.starts_with("draining") || s == "no answer"), "{:?}", stop.ready);
}
