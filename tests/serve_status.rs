//! The operator's view of a running `pdp serve` under load from the real Prisma 7.10 Deno client (cached
//! reads through `@prisma/extension-accelerate`, plain reads, an interactive transaction held open): the
//! status page in Debian's headless Chromium over both listeners, `pdp status` in the terminal, and a real
//! Prometheus (Debian's package) scraping pdp with the dashboard's every query and the alert rules that
//! `pdp init` wrote. The counts the page and the command show are checked against `/metrics` read just
//! before and just after them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::closed_port;
use crate::support::serve::{Db, Serving, api_key, cached, db_name, drop_db, metric_sum, poll, project};

/// Load that keeps every figure of the page moving or steady as the test needs: three cached reads (three
/// cache entries, ttl long enough to outlive the test), an uncached read, and one interactive transaction
/// open until the file `stop` appears.
const LOAD: &str = r#"
import { withAccelerate } from "npm:@prisma/extension-accelerate@3.0.1";
const { PrismaClient } = await import(new URL(Deno.env.get("PDP_CLIENT")!, `file://${Deno.cwd()}/`).href);
const base = new URL(Deno.env.get("PDP_URL")!);
const key = Deno.env.get("PDP_API_KEY")!;
const prisma = new PrismaClient({ accelerateUrl: `prisma://${base.host}/?api_key=${key}` }).$extends(withAccelerate());
const stop = () => { try { Deno.statSync("stop"); return true; } catch { return false; } };
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
for (let i = 0; i < 3; i++) await prisma.user.create({ data: { email: `u${i}@status.test` } });
const held = prisma.$transaction(async (tx: any) => {
  await tx.user.count();
  console.log("held");
  while (!stop()) await wait(50);
  return tx.user.count();
}, { timeout: 170000, maxWait: 10000 });
let n = 0;
let refused = 0;
while (!stop()) {
  try {
    for (const take of [1, 2, 3]) await prisma.user.findMany({ take, orderBy: { id: "asc" }, cacheStrategy: { ttl: 600, tags: ["users"] } });
    await prisma.user.findFirst({ where: { email: `u${n % 3}@status.test` } });
    if (++n === 3) console.log("warm");
  } catch (e) {
    // Once pdp drains, new work is refused (the held transaction may still finish).
    if (!String(e).includes("shutting down")) throw e;
    refused++;
    await wait(50);
  }
}
console.log(JSON.stringify({ held: await held, rounds: n, refusedWhileDraining: refused > 0 }));
"#;

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// The page as Chromium shows it: the script's JSON line.
fn page(url: &str, auth: Option<(&str, &str)>, shot: Option<&Path>) -> serde_json::Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node");
    let mut cmd = Command::new("node");
    cmd.arg("status-page.mjs").arg(url).current_dir(&dir);
    match auth {
        Some((user, password)) => cmd.args([user, password]),
        None => cmd.args(["", ""]),
    };
    if let Some(shot) = shot {
        cmd.arg(shot);
    }
    let out = cmd.output().expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the page did not load in Chromium:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.lines().last().unwrap_or("")).expect("the script's JSON line")
}

/// The metrics listener's `/metrics` (no key).
fn metrics(port: u16) -> String {
    let out = Command::new("curl").args(["-sSf", &format!("http://127.0.0.1:{port}/metrics")]).output().expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A running Prometheus from Debian's package, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates `rules` every second.
    fn start(target: u16, rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: pdp\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let port = closed_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package, installed by `cargo xtask test`) starts");
        let p = Prometheus { child, port, _dir: dir };
        poll(Duration::from_secs(60), "Prometheus ready", || p.get("/-/ready").filter(|b| b.contains("Ready")));
        p
    }

    fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-G", &format!("http://127.0.0.1:{}{path}", self.port)])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The series an instant query returns.
    fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-G", &format!("http://127.0.0.1:{}/api/v1/query", self.port)])
            .arg("--data-urlencode")
            .arg(format!("query={expr}"))
            .output()
            .expect("curl");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_ne!(v["status"], "error", "Prometheus refused `{expr}`: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

#[test]
fn the_status_page_pdp_status_and_the_dashboard_show_what_metrics_counts() {
    let name = db_name("status");
    let secret = "status-test-cluster-secret-0123456789abcdef";
    let p = project(&Db::Postgres(name.clone()));
    let key = api_key(&p);
    let (metrics_port, cluster_port) = (closed_port(), closed_port());
    // A replica of a cluster of one (its cluster series exist), with /metrics and /status on their own port.
    let mut toml =
        p.read("pdp.toml").replace("[serve]\n", &format!("[serve]\nmetrics-listen = \"127.0.0.1:{metrics_port}\"\n"));
    toml.push_str(&format!(
        "\n[serve.cluster]\nadvertise = \"127.0.0.1:{cluster_port}\"\nlisten = \"127.0.0.1:{cluster_port}\"\npeers = []\n"
    ));
    p.write("pdp.toml", &toml);
    let s = Serving::start(&p, &[("PDP_CLUSTER_SECRET", secret)]);
    s.all_children_ready();

    // The page needs the key on the main listener, sent as Basic authentication's password.
    let (code, body) = s.curl("GET", "/status", &[], None);
    assert_eq!(code, 401, "{body}");
    let (code, _) = s.curl("GET", "/status", &["Authorization: Basic cGRwOndyb25n"], None);
    assert_eq!(code, 401, "a wrong password is refused");
    let headers = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(&s.ca)
        .arg(format!("{}/status", s.url()))
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&headers.stdout).to_lowercase();
    assert!(headers.contains("www-authenticate: basic realm="), "{headers}");
    let (code, _) = s.curl("GET", "/status.json", &[], None);
    assert_eq!(code, 401, "the snapshot needs the key on the main listener too");
    let (code, json) = s.curl("GET", "/status.json", &[&format!("Authorization: Bearer {key}")], None);
    assert_eq!(code, 200, "{json}");
    assert!(!json.contains(&key) && !json.contains("postgresql://") && !json.contains(secret), "a secret in {json}");

    p.write("load.ts", LOAD);
    let mut load = Command::new(crate::support::serve::deno())
        .args(["run", "-A", "--no-config", "load.ts"])
        .current_dir(p.root())
        .env("DENO_CERT", &s.ca)
        .env("DENO_DIR", crate::support::serve::tool_cache().join("deno-dir"))
        .env("NO_COLOR", "1")
        .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
        .env("PDP_URL", s.url())
        .env("PDP_API_KEY", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("deno runs");
    let mut lines = BufReader::new(load.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    while !(seen.iter().any(|l: &String| l == "held") && seen.iter().any(|l| l == "warm")) {
        match lines.next() {
            Some(Ok(l)) => seen.push(l),
            _ => {
                let _ = load.wait();
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(&mut load.stderr.take().expect("stderr"), &mut err);
                panic!("the load script ended early: {seen:?}\n{err}\n--- pdp serve ---\n{}", s.log());
            }
        }
    }

    // The page over the main listener (https, Basic authentication) and over the metrics listener (no key),
    // each between two readings of /metrics.
    let shot = artifacts().join("status-page.png");
    for (url, auth, shot) in [
        (format!("{}/status", s.url()), Some(("operator", key.as_str())), Some(shot.as_path())),
        (format!("http://127.0.0.1:{metrics_port}/status"), None, None),
    ] {
        let before = metrics(metrics_port);
        let shown = page(&url, auth, shot);
        let after = metrics(metrics_port);
        assert_eq!(shown["status"], 200, "{url}");
        assert_eq!(shown["ready"], "ready", "{url}");
        assert_eq!(shown["errors"], serde_json::json!([]), "the page's script failed: {url}");
        assert_eq!(shown["external"], serde_json::json!([]), "the page loaded something from elsewhere");
        let html = shown["html"].as_str().expect("html");
        assert!(
            !html.contains(&key)
                && !html.contains(secret)
                && !html.contains("postgres://")
                && !html.contains("postgresql://"),
            "a secret on the page"
        );
        let total = |t: &str| metric_sum(t, "pdp_requests_total{");
        let requests = shown["requests_total"].as_f64().expect("requests");
        assert!(
            total(&before) <= requests && requests <= total(&after),
            "page {requests}, /metrics {} then {}",
            total(&before),
            total(&after)
        );
        // The Deno client's queries alone (the page's own polls are counted too, so look at the query route).
        let queries = |t: &str| metric_sum(t, "pdp_requests_total{route=\"qpe_query\"");
        assert!(queries(&after) > queries(&before), "the server was under load");
        // Children, open transactions and cache entries hold still under this load: equal to /metrics.
        for (shown_as, metric) in [
            ("children", "pdp_children_running{"),
            ("open_transactions", "pdp_open_transactions "),
            ("cache_entries", "pdp_cache_entries "),
        ] {
            assert_eq!(shown[shown_as].as_f64(), Some(metric_sum(&after, metric)), "{shown_as} on {url}");
            assert_eq!(metric_sum(&before, metric), metric_sum(&after, metric), "{metric} moved during the reading");
        }
        assert_eq!(shown["open_transactions"], 1);
        assert_eq!(shown["cache_entries"], 3);
        assert_eq!(shown["child_rows"], shown["children"]);
        assert!(shown["routes"].as_u64().unwrap_or(0) >= 3, "qpe_query, qpe_tx_* and status rows: {shown}");
        assert!(shown["window"].as_str().is_some_and(|w| w.starts_with("last ")), "the page states its window");
        let db: f64 = shown["db_connections"].as_str().and_then(|d| d.parse().ok()).expect("connections counted");
        assert!(db >= 1.0 && db == metric_sum(&after, "pdp_db_connections{"), "db connections {db}");
    }
    assert!(
        std::fs::metadata(&shot).expect("screenshot").len() > 10_000,
        "a screenshot was kept at {}",
        shot.display()
    );

    // `pdp status`: the same counts, the key from pdp.toml's api-keys (.env).
    let before = metrics(metrics_port);
    let out = cached(&p, &["status", "--url", &s.url(), "--json"]).expect_code(0);
    let after = metrics(metrics_port);
    let snap: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json is JSON");
    let requests = snap["traffic"]["requests_total"].as_f64().expect("requests");
    let total = |t: &str| metric_sum(t, "pdp_requests_total{");
    assert!(total(&before) <= requests && requests <= total(&after));
    assert_eq!(snap["children"].as_array().map(Vec::len), Some(metric_sum(&after, "pdp_children_running{") as usize));
    assert_eq!(snap["transactions"]["open"], 1);
    assert_eq!(snap["cache"]["entries"], 3);
    assert_eq!(snap["cluster"]["advertise"], format!("127.0.0.1:{cluster_port}"));
    assert!(!out.stdout.contains(&key) && !out.stdout.contains(secret));
    let out = cached(&p, &["status", "--url", &s.url()]).expect_code(0);
    for want in ["— ready", "executor  7.10.0", "transactions open 1", "cache 3 entries", "ROUTE", "qpe_query"] {
        assert!(out.stdout.contains(want), "`{want}` in:\n{}", out.stdout);
    }
    // `--watch` redraws: two tables within a few seconds, then interrupted.
    let mut watch = p
        .std_pdp()
        .args(["status", "--url", &s.url(), "--watch", "0.5"])
        .env("PDP_CACHE_DIR", crate::support::serve::tool_cache())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pdp status --watch");
    let mut tables = 0;
    for line in BufReader::new(watch.stdout.take().expect("stdout")).lines().map_while(Result::ok) {
        tables += usize::from(line.starts_with("ROUTE"));
        if tables == 2 {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(tables, 2, "--watch printed the table again");
    let wrong =
        p.run_with(p.pdp().env("WRONG_KEY", "nope").args(["status", "--url", &s.url(), "--key-env", "WRONG_KEY"]));
    let wrong = wrong.expect_code(2);
    assert!(wrong.stderr.contains("refused the API key") && wrong.stderr.contains("hint:"), "{}", wrong.stderr);

    // A real Prometheus scraping the metrics listener: every panel of the dashboard init wrote returns a
    // series, and every alert rule evaluates.
    let rules = p.path("deploy/prometheus/pdp-rules.yaml");
    let check = Command::new("promtool").arg("check").arg("rules").arg(&rules).output().expect("promtool runs");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let prom = Prometheus::start(metrics_port, &rules);
    let dashboard: serde_json::Value =
        serde_json::from_str(&p.read("deploy/grafana/pdp.json")).expect("the dashboard is JSON");
    let exprs: Vec<(String, String)> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            panel["targets"].as_array().cloned().unwrap_or_default().into_iter().map(move |t| {
                (
                    title.clone(),
                    t["expr"].as_str().expect("expr").replace("$__rate_interval", "10s").replace("$instance", ".*"),
                )
            })
        })
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let mut missing: Vec<(String, String)> = exprs.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !missing.is_empty() && std::time::Instant::now() < deadline {
        missing.retain(|(_, e)| prom.query(e).is_empty());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(missing.is_empty(), "dashboard panels without a series after 90 s: {missing:#?}");
    let rules_state: serde_json::Value = poll(Duration::from_secs(30), "the rules evaluated", || {
        let v: serde_json::Value = serde_json::from_str(&prom.get("/api/v1/rules")?).ok()?;
        let rules: Vec<serde_json::Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == 6 && rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001"))))
            .then_some(v)
    });
    for group in rules_state["data"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    drop(prom);

    // Draining with the transaction open: /ready is false, and `pdp status` says so with exit 3.
    s.signal("TERM");
    poll(Duration::from_secs(10), "the drain", || (s.curl("GET", "/ready", &[], None).0 == 503).then_some(()));
    let out = cached(&p, &["status", "--url", &s.url()]).expect_code(3);
    assert!(out.stdout.contains("— draining"), "{}", out.stdout);
    p.write("stop", "");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = load.wait().expect("deno");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut load.stderr.take().expect("stderr"), &mut err);
    assert!(status.success(), "{rest:?}\n{err}");
    let end: serde_json::Value =
        serde_json::from_str(rest.last().map_or("", String::as_str)).expect("the load's last line");
    assert_eq!(end["held"], 3, "the held transaction committed during the drain: {rest:?}");
    assert_eq!(end["refusedWhileDraining"], true, "{rest:?}");
    let (code, log) = s.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{log}");
    drop_db(&name);
}
