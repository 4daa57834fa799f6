//! Faults under load, with a write ledger: concurrent workers of the real Prisma 7.10 Deno client do
//! numbered inserts and increments through `pdp serve` (each increment in an interactive transaction that
//! also inserts a row carrying its operation id), every answer recorded by the client; a fault is injected
//! mid-run; afterwards the database is compared with the record. Acknowledged and absent = lost; an
//! account's counter above its transaction rows = a duplicated increment (the operation-id row makes a
//! re-sent insert fail instead); present but not acknowledged = in doubt (allowed, counted). Also: how long
//! until requests succeed again, what the clients saw, and what `/ready` said meanwhile.
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

/// The workload: `deno run ledger.ts <prefix> <workers> <first account>`; one JSON line per answer, until
/// the file `stop-<prefix>` appears.
const WORKLOAD: &str = r#"
const { PrismaClient } = await import(new URL(Deno.env.get("PDP_CLIENT")!, `file://${Deno.cwd()}/`).href);
const base = new URL(Deno.env.get("PDP_URL")!);
const prisma = new PrismaClient({ accelerateUrl: `prisma://${base.host}/?api_key=${Deno.env.get("PDP_API_KEY")}` });
const [prefix, workers, first] = [Deno.args[0], Number(Deno.args[1]), Number(Deno.args[2])];
const stop = () => { try { Deno.statSync(`stop-${prefix}`); return true; } catch { return false; } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (v: unknown) => console.log(JSON.stringify(v));
async function worker(w: number) {
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
      else await prisma.$transaction(async (tx: any) => {
        await tx.account.update({ where: { id: account }, data: { value: { increment: 1 } } });
        await tx.op.create({ data: { id, account, kind } });
      }, { maxWait: 5000, timeout: 10000 });
      say({ id, ok: true, s, t: Date.now() });
    } catch (e: any) {
      say({ id, ok: false, s, t: Date.now(), code: e?.code ?? e?.name ?? "error", message: String(e?.message ?? e).replace(/\s+/g, " ").slice(-160) });
      await sleep(20);
    }
  }
}
await Promise.all([...Array(workers).keys()].map(worker));
say({ done: true });
"#;

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
}

impl Load {
    /// Against `url` (a replica, or the balancer in front of several), trusting `ca`.
    fn start(
        p: &Project,
        url: &str,
        ca: &std::path::Path,
        key: &str,
        prefix: &str,
        workers: usize,
        first_account: usize,
    ) -> Load {
        let mut child = Command::new(deno())
            .args(["run", "-A", "--no-config", "ledger.ts", prefix, &workers.to_string(), &first_account.to_string()])
            .current_dir(p.root())
            .env("DENO_CERT", ca)
            .env("DENO_DIR", tool_cache().join("deno-dir"))
            .env("NO_COLOR", "1")
            .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
            .env("PDP_URL", url)
            .env("PDP_API_KEY", key)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("deno runs");
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
            root: p.root().to_path_buf(),
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
    prefix: &'a str,
    first: usize,
    workers: usize,
    fault_at: u64,
    fault_end: u64,
    ready: Vec<String>,
}

/// Compares the record with the database: the run's accounts and the ops of its prefix.
fn ledger(pg: &PrivatePg, run: Run<'_>, answers: &[Answer]) -> Figures {
    let Run { fault, prefix, first, workers, fault_at, fault_end, ready } = run;
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
            eprintln!("{fault}: first {code}: {}", a.message);
        }
        *n += 1;
    }
    // Requests succeed again: the first acknowledged operation that started after the fault ended and
    // after the last failure.
    let last_failure = answers.iter().filter(|a| !a.ok && a.at >= fault_at).map(|a| a.at).max().unwrap_or(fault_end);
    let recovery_ms = answers
        .iter()
        .filter(|a| a.ok && a.started >= fault_end.max(last_failure))
        .map(|a| a.at)
        .min()
        .map(|t| t.saturating_sub(fault_at));
    Figures {
        fault,
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
        "\n| fault | requests | acknowledged writes | lost | duplicated | in doubt | recovery | errors the clients saw | /ready during the fault |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let errors: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        eprintln!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.fault,
            r.requests,
            r.acked,
            r.lost,
            r.duplicated,
            r.in_doubt,
            r.recovery_ms.map_or("–".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
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
    p.write("ledger.ts", WORKLOAD);
    p
}

/// Runs one fault under load: `inject` returns when the fault is over.
fn scenario(
    p: &Project,
    s: &Serving,
    pg: &PrivatePg,
    key: &str,
    fault: &'static str,
    first: usize,
    inject: impl FnOnce(),
) -> Figures {
    let (workers, warm, after) = if full() { (16, 400, 400) } else { (4, 40, 40) };
    let load = Load::start(p, &s.url(), &s.ca, key, fault, workers, first);
    poll(Duration::from_secs(60), "the workload warm", || (load.acked() >= warm).then_some(()));
    let on = Arc::new(AtomicBool::new(true));
    let watcher = watch_ready(s, on.clone());
    let fault_at = now_ms();
    inject();
    let fault_end = now_ms();
    load.wait_acks_since(fault_end, after, Duration::from_secs(90));
    // `/ready` follows (its database check is at most a second old).
    poll(Duration::from_secs(30), "/ready after the fault", || {
        (s.curl("GET", "/ready", &[], None).0 == 200).then_some(())
    });
    std::thread::sleep(Duration::from_millis(150));
    on.store(false, Ordering::Relaxed);
    let ready = watcher.join().expect("watcher");
    let answers = load.stop();
    ledger(pg, Run { fault, prefix: fault, first, workers, fault_at, fault_end, ready }, &answers)
}

fn executor(s: &Serving) -> u32 {
    let kids = children(s.pid(), "pdp-qpe.mjs");
    assert_eq!(kids.len(), 1, "one executor: {kids:?}");
    kids[0]
}

/// A private cluster with the ledger's database and a project on it, one executor per replica (killing it
/// is the whole of Prisma 7's service there).
fn ledger_setup() -> (PrivatePg, Project, String) {
    let pg = PrivatePg::start();
    let out = Command::new("psql")
        .args([pg.url("postgres").as_str(), "-c", "CREATE DATABASE ledger"])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = ledger_project(&pg);
    let key = api_key(&p);
    let toml = p.read("pdp.toml").replace("[serve]\n", "[serve]\nchildren = 1\n");
    p.write("pdp.toml", &toml);
    (pg, p, key)
}

#[test]
fn a_killed_replica_behind_haproxy_loses_no_acknowledged_write() {
    let (pg, p, key) = ledger_setup();
    p.write("pdp.toml", &format!("{}\n[serve.cluster]\nsecret = \"env:PDP_CLUSTER_SECRET\"\n", p.read("pdp.toml")));
    let dir = tempfile::tempdir().expect("tempdir");
    let (lb_port, c0, c1) = (closed_port(), closed_port(), closed_port());
    let peers = format!("127.0.0.1:{c0},127.0.0.1:{c1}");
    let public = format!("https://localhost:{lb_port}");
    let doomed = replica(&p, c0, &peers, &public);
    let survivor = replica(&p, c1, &peers, &public);
    doomed.all_children_ready();
    survivor.all_children_ready();
    // As deploy/haproxy.cfg runs it: TCP mode, TLS passed through to pdp, so the balancer holds no request it
    // could re-send. In HTTP mode with connection reuse, even with `retry-on none`, a request in flight on the
    // killed replica reached the database twice in each of 3 full runs and 2 of 4 short ones here (a P2002 on
    // an operation id; once an increment applied twice): see the README's reliability section.
    let _lb = balancer(dir.path(), lb_port, Mode::Tcp, &[doomed.port, survivor.port]);
    let ca = survivor.ca.clone();
    let (workers, warm, after) = if full() { (16, 400, 400) } else { (4, 40, 40) };
    let fault = "replica SIGKILL (1 of 2, behind HAProxy in TCP mode)";
    let load = Load::start(&p, &public, &ca, &key, "replica", workers, 6000);
    poll(Duration::from_secs(60), "the workload warm", || (load.acked() >= warm).then_some(()));
    // The survivor's /ready: it keeps serving, and the balancer's checks find the dead one.
    let on = Arc::new(AtomicBool::new(true));
    let watcher = watch_ready(&survivor, on.clone());
    let fault_at = now_ms();
    doomed.signal("KILL");
    let fault_end = now_ms();
    load.wait_acks_since(fault_end, after, Duration::from_secs(90));
    on.store(false, Ordering::Relaxed);
    let ready = watcher.join().expect("watcher");
    let answers = load.stop();
    let row = ledger(&pg, Run { fault, prefix: "replica", first: 6000, workers, fault_at, fault_end, ready }, &answers);
    print_table(std::slice::from_ref(&row));
    assert!(!row.errors.contains_key("P2002"), "an operation reached the database twice");
    assert_eq!(row.lost, 0, "acknowledged writes lost");
    assert_eq!(row.duplicated, 0, "increments ran twice");
    assert!(row.recovery_ms.is_some(), "requests never succeeded again");
    assert_eq!(row.ready, ["ready"], "the survivor stayed ready");
    drop(doomed);
}

#[test]
fn no_acknowledged_write_is_lost_or_run_twice_under_faults() {
    let (pg, p, key) = ledger_setup();
    let s = Serving::start(&p, &[]);
    s.all_children_ready();
    let mut rows = Vec::new();
    let outage = if full() { Duration::from_secs(10) } else { Duration::from_secs(3) };

    rows.push(scenario(&p, &s, &pg, &key, "executor SIGKILL", 1000, || signal(executor(&s), "KILL")));
    // A hung executor: unresponsive to its health route, then answering again (SIGCONT) before pdp's kill.
    rows.push(scenario(&p, &s, &pg, &key, "executor hangs 5 s (SIGSTOP)", 1500, || {
        let pid = executor(&s);
        signal(pid, "STOP");
        std::thread::sleep(Duration::from_secs(5));
        signal(pid, "CONT");
    }));
    if full() {
        // Hung for longer than pdp waits: killed and restarted.
        rows.push(scenario(&p, &s, &pg, &key, "executor hangs 40 s (SIGSTOP)", 1700, || {
            let pid = executor(&s);
            signal(pid, "STOP");
            // pdp kills it (SIGKILL works on a stopped process): nothing to continue.
            poll(Duration::from_secs(60), "the hung executor killed", || {
                (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
        }));
    }
    rows.push(scenario(&p, &s, &pg, &key, "PostgreSQL restarted", 2000, || pg.ctl(&["restart", "-m", "immediate"])));
    rows.push(scenario(&p, &s, &pg, &key, "PostgreSQL unreachable", 3000, || {
        pg.stop_immediately();
        // The outage's length is the fault itself, not a wait for a state.
        std::thread::sleep(outage);
        pg.ctl(&["start"]);
    }));

    // SIGTERM with transactions open: new work is refused, what is open finishes, pdp exits.
    let (workers, warm) = if full() { (16, 400) } else { (4, 40) };
    let load = Load::start(&p, &s.url(), &s.ca, &key, "pdp SIGTERM", workers, 4000);
    poll(Duration::from_secs(60), "the workload warm", || (load.acked() >= warm).then_some(()));
    let on = Arc::new(AtomicBool::new(true));
    let watcher = watch_ready(&s, on.clone());
    let fault_at = now_ms();
    s.signal("TERM");
    let (code, log) = s.wait(Duration::from_secs(60));
    on.store(false, Ordering::Relaxed);
    let ready = watcher.join().expect("watcher");
    let answers = load.stop();
    assert_eq!(code, 0, "{log}");
    let mut last = ledger(
        &pg,
        Run { fault: "pdp SIGTERM", prefix: "pdp SIGTERM", first: 4000, workers, fault_at, fault_end: now_ms(), ready },
        &answers,
    );
    last.recovery_ms = None;
    rows.push(last);

    print_table(&rows);
    for r in &rows {
        // An operation id meeting itself (P2002) would be a write sent twice.
        assert!(!r.errors.contains_key("P2002"), "{}: an operation ran twice", r.fault);
        assert_eq!(r.lost, 0, "{}: acknowledged writes lost", r.fault);
        assert_eq!(r.duplicated, 0, "{}: increments ran twice", r.fault);
        assert!(r.acked > 0, "{}: nothing was acknowledged", r.fault);
    }
    // Recovery: every fault but the stop ends with requests succeeding again.
    for r in rows.iter().filter(|r| r.fault != "pdp SIGTERM") {
        assert!(r.recovery_ms.is_some(), "{}: requests never succeeded again", r.fault);
    }
    // /ready told the truth: unready while the database was down, ready again after.
    let row = |name: &str| rows.iter().find(|r| r.fault == name).expect("a row");
    let outage_row = row("PostgreSQL unreachable");
    assert!(outage_row.ready.iter().any(|s| s.contains("database unreachable")), "{:?}", outage_row.ready);
    assert_eq!(outage_row.ready.last().map(String::as_str), Some("ready"), "{:?}", outage_row.ready);
    let hung = row("executor hangs 5 s (SIGSTOP)");
    assert!(hung.ready.iter().any(|s| s.contains("executor unresponsive")), "/ready saw the hang: {:?}", hung.ready);
    assert_eq!(hung.ready.last().map(String::as_str), Some("ready"), "{:?}", hung.ready);
    let stop = row("pdp SIGTERM");
    assert!(stop.ready.iter().any(|s| s.starts_with("draining") || s == "no answer"), "{:?}", stop.ready);
}
