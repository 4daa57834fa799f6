//! Replicas behind a real load balancer: three `pdp serve` processes on loopback sharing one PostgreSQL,
//! behind HAProxy (Debian's package, installed by `cargo xtask test`) in HTTP mode, round-robin per
//! request, TLS terminated at the balancer, with the settings a production balancer uses for dead
//! backends (fast health checks, `option redispatch`, `retry-on conn-failure`, which re-sends only
//! requests that never reached a backend). Real clients: the Prisma 7.10 Deno client from `pdp
//! build-client` and a Prisma 6.19.3 Node client (WASM engine). Nothing here relies on affinity: every
//! interactive transaction's requests land on all three replicas and reach their owner over the cluster
//! channel.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::cluster::{Mode, SECRET, balancer, certificates, replica};
use crate::support::serve::{self, Db, Serving, api_key, db_name, drop_db, metric_sum, poll, project, tool_cache};
use crate::support::{Project, closed_port};

/// The Prisma 7 client's run: CRUD, P2002, a batch transaction, interactive transactions that commit and
/// roll back, a raw query; each outcome one JSON line.
const DENO_RUN: &str = r#"
const { PrismaClient } = await import(new URL(Deno.env.get('PDP_CLIENT')!, `file://${Deno.cwd()}/`).href);
const prisma = new PrismaClient({ accelerateUrl: `prisma://${new URL(Deno.env.get('PDP_URL')!).host}/?api_key=${Deno.env.get('PDP_API_KEY')}` });
const out = (k: string, v: unknown) => console.log(JSON.stringify({ [k]: v }));
const code = (e: unknown) => (e as { code?: string }).code ?? (e as Error).constructor.name;
const run = Deno.env.get('RUN');
const mine = { email: { endsWith: `-${run}@seven.test` } };
out('create', (await prisma.user.create({ data: { email: `a-${run}@seven.test`, name: 'A' } })).email);
try { await prisma.user.create({ data: { email: `a-${run}@seven.test` } }); out('dup', 'none'); } catch (e) { out('dup', code(e)); }
const [n, list] = await prisma.$transaction([prisma.user.count({ where: mine }), prisma.user.findMany({ where: mine })]);
out('batch', [n, list.length]);
out('itx', await prisma.$transaction(async (tx) => {
  await tx.user.create({ data: { email: `b-${run}@seven.test` } });
  await tx.user.update({ where: { email: `b-${run}@seven.test` }, data: { name: 'B' } });
  await tx.user.findMany({ where: mine });
  return tx.user.count({ where: mine });
}));
try {
  await prisma.$transaction(async (tx) => {
    await tx.user.create({ data: { email: `gone-${run}@seven.test` } });
    await tx.user.findMany({ where: mine });
    throw new Error('undo');
  });
} catch (e) { out('undo', (e as Error).message); }
out('raw', (await prisma.$queryRaw`SELECT count(*)::int AS n FROM "User" WHERE email LIKE ${'%-' + run + '@seven.test'}`)[0].n);
out('updated', (await prisma.user.findUnique({ where: { email: `b-${run}@seven.test` } }))?.name);
"#;

/// The Prisma 6.19 client's run, the same operations.
const NODE_RUN: &str = r#"
const { PrismaClient } = require("./generated");
const out = (k, v) => console.log(JSON.stringify({ [k]: v }));
const code = (e) => e.code ?? e.errorCode ?? e.name;
const run = process.env.RUN;
const mine = { email: { endsWith: `-${run}@six.test` } };
(async () => {
  const prisma = new PrismaClient({ datasourceUrl: process.env.PDP_URL });
  out("create", (await prisma.user.create({ data: { email: `a-${run}@six.test`, name: "A" } })).email);
  try { await prisma.user.create({ data: { email: `a-${run}@six.test` } }); out("dup", "none"); } catch (e) { out("dup", code(e)); }
  const [n, list] = await prisma.$transaction([prisma.user.count({ where: mine }), prisma.user.findMany({ where: mine })]);
  out("batch", [n, list.length]);
  out("itx", await prisma.$transaction(async (tx) => {
    await tx.user.create({ data: { email: `b-${run}@six.test` } });
    await tx.user.update({ where: { email: `b-${run}@six.test` }, data: { name: "B" } });
    await tx.user.findMany({ where: mine });
    return tx.user.count({ where: mine });
  }));
  try {
    await prisma.$transaction(async (tx) => {
      await tx.user.create({ data: { email: `gone-${run}@six.test` } });
      await tx.user.findMany({ where: mine });
      throw new Error("undo");
    });
  } catch (e) { out("undo", e.message); }
  out("raw", (await prisma.$queryRaw`SELECT count(*)::int AS n FROM "User" WHERE email LIKE ${"%-" + run + "@six.test"}`)[0].n);
  out("updated", (await prisma.user.findUnique({ where: { email: `b-${run}@six.test` } }))?.name);
})().catch((e) => { console.error(e); process.exit(1); });
"#;

fn lines(out: &str) -> Value {
    out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).fold(json!({}), |mut acc, v| {
        if let (Some(a), Some(o)) = (acc.as_object_mut(), v.as_object()) {
            a.extend(o.clone());
        }
        acc
    })
}

fn expected(run: &str, domain: &str) -> Value {
    json!({
        "create": format!("a-{run}@{domain}"), "dup": "P2002", "batch": [1, 1], "itx": 2, "undo": "undo", "raw": 2,
        "updated": "B",
    })
}

struct Clients {
    seven: PathBuf,
    six: PathBuf,
    url: String,
    ca: PathBuf,
    key: String,
}

impl Clients {
    fn deno(&self, run: &str) -> (bool, String) {
        let out = Command::new(serve::deno())
            .args(["run", "-A", "--no-config", "run.ts"])
            .current_dir(&self.seven)
            .env("DENO_CERT", &self.ca)
            .env("DENO_DIR", tool_cache().join("deno-dir"))
            .env("NO_COLOR", "1")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
            .env("PDP_URL", &self.url)
            .env("PDP_API_KEY", &self.key)
            .env("RUN", run)
            .output()
            .expect("deno runs");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    fn node(&self, run: &str) -> (bool, String) {
        let host = self.url.trim_start_matches("https://");
        let out = Command::new("node")
            .arg("run.cjs")
            .current_dir(&self.six)
            .env("PDP_URL", format!("prisma://{host}/?api_key={}", self.key))
            .env("NODE_EXTRA_CA_CERTS", &self.ca)
            .env("RUN", run)
            .output()
            .expect("node runs");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    /// Both clients' runs, checked by value.
    fn both_pass(&self, run: &str, logs: &dyn Fn() -> String) {
        let (ok, out) = self.deno(run);
        assert!(ok, "Prisma 7 run {run}:\n{out}\n{}", logs());
        assert_eq!(lines(&out), expected(run, "seven.test"), "Prisma 7 run {run}:\n{out}\n{}", logs());
        let (ok, out) = self.node(run);
        assert!(ok, "Prisma 6 run {run}:\n{out}\n{}", logs());
        assert_eq!(lines(&out), expected(run, "six.test"), "Prisma 6 run {run}:\n{out}\n{}", logs());
    }
}

/// curl straight to a replica (plain HTTP): status and body.
fn curl(port: u16, method: &str, path: &str, headers: &[&str], body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let out = cmd.arg(format!("http://127.0.0.1:{port}{path}")).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn three_replicas_behind_haproxy_serve_prisma_7_and_6_clients_and_survive_a_killed_replica() {
    let name = db_name("cluster");
    let p = project(&Db::Postgres(name.clone()));
    let key = api_key(&p);
    let toml = p.read("pdp.toml").replacen("tls = \"auto\"\n", "tls = \"off\"\nengine = \"wasm\"\n", 1);
    p.write("pdp.toml", &format!("{toml}\n[serve.cluster]\nsecret = \"env:PDP_CLUSTER_SECRET\"\n"));
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, pem) = certificates(certs.path());
    let lb_port = closed_port();
    let public = format!("https://localhost:{lb_port}");
    let cluster_ports: Vec<u16> = (0..3).map(|_| closed_port()).collect();
    let peers = cluster_ports.iter().map(|c| format!("127.0.0.1:{c}")).collect::<Vec<_>>().join(",");
    let mut replicas: Vec<Option<Serving>> =
        cluster_ports.iter().map(|c| Some(replica(&p, *c, &peers, &public))).collect();
    let ports: Vec<u16> = replicas.iter().flatten().map(|s| s.port).collect();
    let lb = balancer(certs.path(), lb_port, Mode::Http { pem: &pem, retry_on: "conn-failure" }, &ports);
    let logs = |replicas: &[Option<Serving>]| {
        let mut all = format!("--- haproxy ---\n{}", lb.log.lock().expect("log"));
        for (i, s) in replicas.iter().enumerate() {
            if let Some(s) = s {
                all.push_str(&format!("\n--- replica {i} ---\n{}", s.log()));
            }
        }
        all
    };

    // A 6.x schema uploaded to one replica is served by another, which copies it from its peers
    // (a client's upload and its retry may land on different replicas).
    let (b64, hash) = crate::serve_dp1::node_client_schema();
    let bearer = format!("Authorization: Bearer {key}");
    let (code, body) = curl(ports[0], "PUT", &format!("/6.19.3/{hash}/schema"), &[&bearer], Some(&b64));
    assert_eq!(code, 200, "{body}");
    let count = r#"{"modelName":"User","action":"aggregate","query":{"arguments":{},"selection":{"_count":{"arguments":{},"selection":{"_all":true}}}}}"#;
    let (code, body) = curl(ports[1], "POST", &format!("/6.19.3/{hash}/graphql"), &[&bearer], Some(count));
    assert_eq!(code, 200, "{body}\n{}", logs(&replicas));
    let copied = replicas[1].as_ref().map(|s| s.metrics(&key)).unwrap_or_default();
    // `/ready` says who this replica is to its peers.
    let (code, ready) = curl(ports[1], "GET", "/ready", &[], None);
    assert_eq!(code, 200, "{ready}");
    let ready: Value = serde_json::from_str(&ready).expect("JSON");
    assert_eq!(ready["cluster"]["advertise"], format!("127.0.0.1:{}", cluster_ports[1]), "{ready}");
    assert_eq!(ready["cluster"]["peers"].as_array().map(Vec::len), Some(3), "{ready}");
    // The query cache is per replica; an invalidation on any replica reaches every replica's before it
    // answers.
    let status = |port: u16| -> String {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-D", "-", "-X", "POST", "-H", &bearer, "-H", "cache-control: max-age=60"])
            .args(["-H", "accelerate-cache-tags: users", "--data-binary", count])
            .arg(format!("http://127.0.0.1:{port}/6.19.3/{hash}/graphql"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("accelerate-cache-status: "))
            .unwrap_or("absent")
            .trim()
            .to_owned()
    };
    for port in &ports[..2] {
        assert_eq!((status(*port), status(*port)), ("miss".into(), "ttl".into()), "replica on {port}");
    }
    let (code, body) = curl(
        ports[2],
        "POST",
        "/invalidate",
        &[&bearer, "Content-Type: application/json"],
        Some(r#"{"tags":["users"]}"#),
    );
    assert_eq!((code, body.as_str()), (200, r#"{"replicas":3}"#));
    for port in &ports[..2] {
        assert_eq!(status(*port), "miss", "replica on {port} after the invalidation");
    }
    assert_eq!(metric_sum(&copied, "pdp_peer_requests_total{kind=\"schema\",outcome=\"ok\""), 1.0, "{copied}");

    // The clients, each in its own directory: the 7.10 Deno client the project built, the 6.19 Node client.
    let six = Project::new();
    crate::serve_dp1::generate_node_client(&six, "");
    six.write("run.cjs", NODE_RUN);
    p.write("run.ts", DENO_RUN);
    let clients = Clients {
        seven: p.root().to_path_buf(),
        six: six.root().to_path_buf(),
        url: public.clone(),
        ca,
        key: key.clone(),
    };
    for run in ["r1", "r2", "r3"] {
        clients.both_pass(run, &|| logs(&replicas));
    }
    // Round-robin per request spread every transaction over the replicas: some requests reached their
    // transaction's owner through another replica, and every replica served.
    let relayed: f64 = replicas
        .iter()
        .flatten()
        .map(|s| metric_sum(&s.metrics(&key), "pdp_peer_requests_total{kind=\"relay\",outcome=\"ok\""))
        .sum();
    eprintln!("requests relayed to their transaction's owner over 6 client runs: {relayed}");
    assert!(relayed >= 6.0, "requests were relayed to their transaction's owner: {relayed}\n{}", logs(&replicas));
    for s in replicas.iter().flatten() {
        let served = metric_sum(&s.metrics(&key), "pdp_requests_total{route=\"qpe_");
        assert!(served > 0.0, "replica on {} served Prisma 7 requests", s.port);
    }

    // A forged owner reference is refused without any connection attempt: it names a port this test
    // listens on, and nothing connects to it.
    let trap = TcpListener::bind("127.0.0.1:0").expect("bind");
    trap.set_nonblocking(true).expect("nonblocking");
    let trap_code = format!("a7f000001{:04x}", trap.local_addr().expect("addr").port());
    // Well-formed (owner, mint time, MAC, child id), with a MAC the test cannot know.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let forged = format!("pdp1_{trap_code}_{now:x}_{}_abc", "0".repeat(32));
    let engine_hash = "Prisma-Engine-Hash: 7.10.0";
    let (code, body) =
        curl(ports[2], "POST", &format!("/transaction/{forged}/query"), &[&bearer, engine_hash], Some("{}"));
    assert_eq!(code, 409, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["code"], "P2028", "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("not issued by this deployment")), "{body}");
    assert!(
        trap.accept().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "pdp connected to the forged owner"
    );
    // The cluster listener takes only authenticated peer requests.
    let (code, _) = curl(cluster_ports[0], "POST", &format!("/transaction/{forged}/commit"), &[&bearer], None);
    assert_eq!(code, 401);

    // `pdp doctor` on a replica's settings sees its peers answer and counts the replicas' connections.
    let doctor = p.run_with(
        p.pdp()
            .args(["doctor"])
            .env("PDP_CLUSTER_SECRET", SECRET)
            .env("PDP_CLUSTER_ADVERTISE", format!("127.0.0.1:{}", cluster_ports[0]))
            .env("PDP_CLUSTER_PEERS", &peers),
    );
    let said = doctor.all();
    assert!(said.contains(&format!("this replica is 127.0.0.1:{} to its peers", cluster_ports[0])), "{said}");
    assert!(said.contains("2 peer(s) answer on their cluster port"), "{said}");
    assert!(said.contains("3 replica(s) now (this one and its peers)"), "{said}");

    // A transaction the doomed replica owns, opened straight on it.
    let (code, body) = curl(
        ports[2],
        "POST",
        "/transaction/start",
        &[&bearer, engine_hash, "Content-Type: application/json"],
        Some(r#"{"timeout":60000,"maxWait":5000}"#),
    );
    assert_eq!(code, 200, "{body}");
    let orphan = serde_json::from_str::<Value>(&body).expect("JSON")["id"].as_str().expect("id").to_owned();

    // SIGKILL one replica while a run is under way; the balancer's checks take it out.
    let killed = replicas[2].take().expect("replica 2");
    let doomed_port = killed.port;
    let served = |s: &Serving| metric_sum(&s.metrics(&key), "pdp_requests_total{route=\"qpe_");
    let before = served(&killed);
    let during = std::thread::scope(|scope| {
        let run = scope.spawn(|| clients.deno("during"));
        poll(Duration::from_secs(60), "the run under way on the doomed replica", || {
            (served(&killed) >= before + 3.0).then_some(())
        });
        killed.signal("KILL");
        run.join().expect("the run ends")
    });
    drop(killed);
    // That run either finished or failed with the client's own error for what it lost: never a hang.
    let (_, out) = &during;
    eprintln!("the run during the kill:\n{out}");
    // Its transaction is lost, and says so at once on a surviving replica, with nothing re-sent.
    let (code, body) =
        curl(ports[0], "POST", &format!("/transaction/{orphan}/query"), &[&bearer, engine_hash], Some("{}"));
    assert_eq!(code, 409, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["code"], "P2028", "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("cannot be reached")), "{body}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", doomed_port)).is_err(), "the replica is gone");
    // An invalidation now reaches the two living replicas and says which one it could not.
    let (code, body) =
        curl(ports[0], "POST", "/invalidate", &[&bearer, "Content-Type: application/json"], Some(r#"{"tags":"all"}"#));
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains(&format!("not on: 127.0.0.1:{}", cluster_ports[2])) && body.contains("1 of 2 peer(s)"),
        "{body}"
    );
    for run in ["after1", "after2"] {
        clients.both_pass(run, &|| logs(&replicas));
    }
    drop(lb);
    drop(replicas);
    drop_db(&name);
}
