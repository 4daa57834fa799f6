//! `pdp serve` for Prisma 7 clients, end to end with real parts: the Prisma 7.10.0 Deno client that
//! `pdp build-client` generates, real Deno, the real `@prisma/query-plan-executor`, the machine's
//! PostgreSQL and the embedded PGlite. No doubles here.

use std::time::Duration;

use crate::support::serve::{self, Db, Serving, api_key, cached, children, db_name, drop_db, project, psql};

fn demo_script() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deno/demo.ts"))
        .expect("examples/deno/demo.ts")
}

/// A Deno script that makes `prisma` (the project's client, through the server under test) and runs `body`.
fn client_script(body: &str) -> String {
    format!(
        "const {{ PrismaClient }} = await import(new URL(Deno.env.get('PDP_CLIENT')!, `file://${{Deno.cwd()}}/`).href);\n\
         const prisma = new PrismaClient({{ accelerateUrl: `prisma://${{new URL(Deno.env.get('PDP_URL')!).host}}/?api_key=${{Deno.env.get('PDP_API_KEY')}}` }});\n{body}"
    )
}

/// The demo's five steps, checked by value.
fn assert_demo_ran(out: &str) {
    let lines: Vec<serde_json::Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let step = |name: &str| {
        lines
            .iter()
            .find(|v| v["step"] == name)
            .map(|v| v["value"].clone())
            .unwrap_or_else(|| panic!("no `{name}` step in:\n{out}"))
    };
    assert_eq!(step("create")["posts"], serde_json::json!(["Notes on the Analytical Engine", "Sketch"]), "{out}");
    assert_eq!(step("findMany")[0]["posts"], 2, "{out}");
    assert_eq!(step("interactive transaction")["postsInside"], 3, "{out}");
    assert_eq!(step("rolled back"), serde_json::json!({"rolledBack": true, "posts": 3}), "{out}");
    assert_eq!(step("batch transaction"), serde_json::json!({"updated": 3, "published": 3}), "{out}");
    assert!(lines.iter().any(|v| v["demo"] == "ok"), "{out}");
}

#[test]
fn demo_on_postgresql_with_health_ready_and_metrics() {
    let name = db_name("demo");
    let p = project(&Db::Postgres(name.clone()));
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    p.write("demo.ts", &demo_script());
    let (ok, out) = s.deno("demo.ts", &key, &[]);
    assert!(ok, "{out}\n--- pdp serve ---\n{}", s.log());
    assert_demo_ran(&out);
    assert_eq!(psql(&name, "SELECT count(*) FROM \"Post\" WHERE published"), "3");

    // Liveness and readiness need no key.
    let (code, body) = s.curl("GET", "/health", &[], None);
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (code, body) = s.curl("GET", "/ready", &[], None);
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["executor"], serde_json::json!({"version": "7.10.0", "status": "ready"}));
    assert_eq!(ready["database"]["status"], "reachable");
    assert!(ready["database"]["server"].as_str().is_some_and(|v| v.starts_with("PostgreSQL")), "{body}");

    // Metrics need the key here (no metrics-listen configured).
    assert_eq!(s.curl("GET", "/metrics", &[], None).0, 401);
    let auth = format!("Authorization: Bearer {key}");
    let (code, metrics) = s.curl("GET", "/metrics", &[&auth], None);
    assert_eq!(code, 200);
    for expected in [
        "pdp_requests_total{route=\"qpe_query\",status=\"200\"}",
        "pdp_requests_total{route=\"qpe_tx_commit\",status=\"200\"} 2",
        "pdp_requests_total{route=\"qpe_tx_rollback\",status=\"200\"} 1",
        "pdp_request_duration_seconds_bucket{le=\"+Inf\",route=\"qpe_query\"}",
        "pdp_open_transactions 0",
        "pdp_requests_in_flight 1",
        "pdp_auth_failures_total 1",
    ] {
        assert!(metrics.contains(expected), "`{expected}` missing from:\n{metrics}");
    }
    // A pool of executors for the project's version, the CPUs pdp's threads leave free by default, each started once.
    let ready = s.all_children_ready();
    let pool = ready["executors"].as_array().expect("executors").len();
    assert_eq!(pool, serve::default_pool(), "{body}");
    for slot in 0..pool {
        for series in ["pdp_child_starts_total", "pdp_children_running"] {
            let expected = format!("{series}{{kind=\"executor\",version=\"7.10.0\",slot=\"{slot}\"}} 1");
            assert!(metrics.contains(&expected), "`{expected}` missing from:\n{metrics}");
        }
    }
    // One access-log line per request, with its id and key id, never the key.
    let log = s.log_when("the access log of the transaction start", |l| l.contains("route=\"qpe_tx_start\""));
    let access: Vec<&str> = log.lines().filter(|l| l.contains("pdp::access")).collect();
    assert!(access.iter().any(|l| l.contains("route=\"qpe_tx_start\"") && l.contains("key=\"sha256:")), "{log}");
    assert!(access.iter().all(|l| l.contains(" id=") && l.contains("status=") && l.contains("ms=")), "{log}");
    assert!(!log.contains(&key), "the API key must never be logged:\n{log}");
    s.signal("TERM");
    let (code, log) = s.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    drop_db(&name);
}

#[test]
fn demo_on_the_embedded_database_and_the_certificate_survives_a_restart() {
    let p = project(&Db::Embedded);
    assert!(p.path(".pdp/pglite/data").is_dir(), "migrate deploy created the embedded database");
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    assert!(s.log().contains("embedded PostgreSQL (PGlite) with data in .pdp/pglite/data"), "{}", s.log());
    assert!(s.log().contains("created a local CA"), "{}", s.log());
    let ca = std::fs::read(&s.ca).expect("ca.pem");
    p.write("demo.ts", &demo_script());
    let (ok, out) = s.deno("demo.ts", &key, &[]);
    assert!(ok, "{out}\n--- pdp serve ---\n{}", s.log());
    assert_demo_ran(&out);
    // The Windmill script `pdp init` wrote, unmodified, called as Windmill calls it.
    assert!(p.read("examples/windmill/query_users.ts").contains("0.1.0/client.ts\""), "the Prisma 7 entry");
    let (ok, out) = s.run_windmill_example(&p, &key);
    assert!(ok && out.contains(r#"{"users":1,"posts":3}"#), "{out}\n{}", s.log());
    s.signal("INT");
    let (code, log) = s.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    assert!(!p.path(".pdp/pglite/server.json").exists(), "the embedded database was stopped:\n{log}");

    // Second start: the same CA (clients keep trusting it), the data still there.
    let s = Serving::start(&p, &[]);
    assert!(s.log().contains("reusing the local CA"), "{}", s.log());
    assert_eq!(std::fs::read(&s.ca).expect("ca.pem"), ca, "the CA changed across restarts");
    p.write("count.ts", &client_script("console.log(JSON.stringify({ posts: await prisma.post.count() }));\n"));
    let (ok, out) = s.deno("count.ts", &key, &[]);
    assert!(ok && out.contains(r#"{"posts":3}"#), "{out}\n{}", s.log());
}

#[test]
fn children_listen_only_on_private_unix_sockets_no_other_user_can_reach() {
    let p = project(&Db::Embedded);
    with_children(&p, 2);
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    p.write("count.ts", &client_script("console.log(JSON.stringify({ users: await prisma.user.count() }));\n"));
    let (ok, out) = s.deno("count.ts", &key, &[]);
    assert!(ok && out.contains(r#"{"users":"#), "{out}\n{}", s.log());
    // The executor (HTTP) and the embedded PostgreSQL (psql probes it).
    let probe = |socket: &std::path::Path| (!socket.ends_with(".s.PGSQL.5432")).then_some("/connection-info");
    s.all_children_ready();
    let sockets = serve::assert_children_private(s.pid(), &probe);
    assert_eq!(sockets.len(), 1 + 2, "the database and one socket per executor: {sockets:?}");
    // Another pdp of the same user finds the running embedded database through its record: the socket
    // directory, not a port.
    let record: serde_json::Value = serde_json::from_str(&p.read(".pdp/pglite/server.json")).expect("record");
    let pglite = sockets.iter().find(|s| s.ends_with(".s.PGSQL.5432")).expect("the PGlite socket");
    assert_eq!(record["socket_dir"].as_str().map(std::path::Path::new), pglite.parent(), "{record}");
    assert!(record.get("port").is_none(), "{record}");
    // `/ready` has pinged the shared database meanwhile: pdp's statements must not collide in its one session.
    let status = cached(&p, &["migrate", "status"]).expect_code(0);
    assert!(status.all().contains("up to date"), "{}", status.all());
    let dirs: Vec<_> = sockets.iter().filter_map(|p| p.parent().map(std::path::Path::to_path_buf)).collect();
    s.signal("TERM");
    let (code, log) = s.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{log}");
    for dir in dirs {
        assert!(!dir.exists(), "{} is removed when pdp stops", dir.display());
    }
}

#[test]
fn a_wrong_or_missing_key_is_the_clients_unauthorized_error_and_is_never_logged() {
    let name = db_name("auth");
    let p = project(&Db::Postgres(name.clone()));
    let s = Serving::start(&p, &[]);
    p.write(
        "wrong.ts",
        &client_script(
            "try { await prisma.user.findMany(); console.log('no error'); }\n\
         catch (e) { console.log(JSON.stringify({ name: e.constructor.name, code: e.code, message: e.message })); }\n",
        ),
    );
    let wrong = "pdp_not-the-right-key-0123456789";
    let (ok, out) = s.deno("wrong.ts", wrong, &[]);
    assert!(ok, "{out}");
    let err: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("name").is_some())
        .unwrap_or_else(|| panic!("no error line in:\n{out}"));
    assert_eq!(err["name"], "PrismaClientKnownRequestError", "{out}");
    assert_eq!(err["code"], "P6002", "{out}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("API key is not accepted")), "{out}");
    let (code, body) = s.curl("POST", "/query", &["Prisma-Engine-Hash: 7.10.0"], Some("{}"));
    assert_eq!(code, 401);
    assert!(body.contains("\"code\":\"P6002\"") && body.contains("no API key"), "{body}");
    let log = s.log_when("the refusal in the log", |l| l.contains("pdp::auth") && l.contains("refused"));
    assert!(!log.contains(wrong), "a presented key must never be logged:\n{log}");
    drop(s);
    drop_db(&name);
}

#[test]
fn a_killed_executor_restarts_and_the_next_request_succeeds() {
    let name = db_name("restart");
    let p = project(&Db::Postgres(name.clone()));
    with_children(&p, 2);
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    s.all_children_ready();
    p.write("demo.ts", &demo_script());
    assert!(s.deno("demo.ts", &key, &[]).0, "{}", s.log());
    let executors = children(s.pid(), "pdp-qpe.mjs");
    let pool = 2;
    assert_eq!(executors.len(), pool, "one executor child per pool slot: {executors:?}\n{}", s.log());
    serve::signal(executors[0], "KILL");
    // The next client run succeeds: on another child of the pool, or on the restarted one.
    let (ok, out) = s.deno("demo.ts", &key, &[]);
    assert!(ok, "{out}\n--- pdp serve ---\n{}", s.log());
    assert_demo_ran(&out);
    s.log_when("the executor's exit in the log", |l| l.contains("exited unexpectedly"));
    let restarted = serve::poll(Duration::from_secs(60), "the pool full again", || {
        let now = children(s.pid(), "pdp-qpe.mjs");
        (now.len() == pool).then_some(now)
    });
    assert!(!restarted.contains(&executors[0]), "a new executor process: {executors:?} -> {restarted:?}");
    assert!(
        executors[1..].iter().all(|pid| restarted.contains(pid)),
        "the others kept running: {executors:?} -> {restarted:?}"
    );
    let (_, metrics) = s.curl("GET", "/metrics", &[&format!("Authorization: Bearer {key}")], None);
    let series = |name: &str| serve::metric_sum(&metrics, &format!("{name}{{kind=\"executor\",version=\"7.10.0\""));
    assert_eq!(series("pdp_child_restarts_total"), 1.0, "{metrics}");
    assert_eq!(series("pdp_child_starts_total"), (pool + 1) as f64, "{metrics}");
    drop(s);
    drop_db(&name);
}

/// A client script that opens an interactive transaction (one row created with an e-mail at `domain`),
/// writes `tx-open`, waits for a `go` file, then tries a second create: prints `inner` (that query's error:
/// code, class, message, how long it took) and `outer` (the transaction's outcome), then `left` (rows at
/// `domain`).
fn held_transaction_script(domain: &str) -> String {
    client_script(&format!(
        "const out = (k: string, v: unknown) => console.log(JSON.stringify({{ [k]: v }}));\n\
         try {{\n\
           await prisma.$transaction(async (tx) => {{\n\
             await tx.user.create({{ data: {{ email: 'first@{domain}' }} }});\n\
             await Deno.writeTextFile('tx-open', 'yes');\n\
             while (!(await Deno.stat('go').then(() => true, () => false))) await new Promise((r) => setTimeout(r, 20));\n\
             const asked = Date.now();\n\
             try {{ await tx.user.create({{ data: {{ email: 'second@{domain}' }} }}); }}\n\
             catch (e) {{ out('inner', {{ code: (e as {{ code?: string }}).code, class: (e as Error).constructor.name, message: (e as Error).message, ms: Date.now() - asked }}); throw e; }}\n\
           }}, {{ timeout: 60000, maxWait: 5000 }});\n\
           out('outer', 'committed');\n\
         }} catch (e) {{ out('outer', (e as {{ code?: string }}).code); }}\n\
         out('left', await prisma.user.count({{ where: {{ email: {{ endsWith: '@{domain}' }} }} }}));\n"
    ))
}

/// Sets `[serve] children` in the project's pdp.toml (tests of a pool say its size rather than take the
/// machine's CPU count).
fn with_children(p: &crate::support::Project, n: usize) {
    let toml = p.read("pdp.toml");
    let set = toml.replacen("[serve]\n", &format!("[serve]\nchildren = {n}\n"), 1);
    assert_ne!(set, toml, "pdp.toml has a [serve] table");
    p.write("pdp.toml", &set);
}

/// The `{"load": …}` line a load script prints at its end.
fn tally(out: &str) -> serde_json::Value {
    out.lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("load").cloned())
        .unwrap_or_else(|| panic!("no tally in the load's output: {out}"))
}

/// Writes a file the client scripts wait for (`go`, `stop`) when dropped, so a failed assertion never leaves
/// a client waiting.
struct Touch<'a>(&'a crate::support::Project, &'static str);

impl Drop for Touch<'_> {
    fn drop(&mut self) {
        self.0.write(self.1, "");
    }
}

#[test]
fn a_transaction_whose_executor_died_is_the_clients_p2028_at_once() {
    let name = db_name("owner_dies");
    let p = project(&Db::Postgres(name.clone()));
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    p.write("tx.ts", &held_transaction_script("died.test"));
    let (ok, out) = std::thread::scope(|scope| {
        let client = scope.spawn(|| s.deno("tx.ts", &key, &[]));
        serve::poll(Duration::from_secs(120), "the transaction to open", || p.path("tx-open").exists().then_some(()));
        // Whatever happens below, the client is let go (a failed assertion must not leave it waiting).
        let _go = Touch(&p, "go");
        // The transaction's owner is one of the pool: every executor is killed.
        let executors = children(s.pid(), "pdp-qpe.mjs");
        assert!(!executors.is_empty(), "no executor child:\n{}", s.log());
        for pid in &executors {
            serve::signal(*pid, "KILL");
        }
        serve::poll(Duration::from_secs(10), "pdp to see the executors die", || {
            let m = s.metrics(&key);
            let restarts = serve::metric_sum(&m, "pdp_child_restarts_total{kind=\"executor\",version=\"7.10.0\"");
            (restarts >= executors.len() as f64).then_some(())
        });
        drop(_go);
        client.join().expect("client thread")
    });
    assert!(ok, "{out}\n--- pdp serve ---\n{}", s.log());
    let got: serde_json::Value = out.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).fold(
        serde_json::json!({}),
        |mut acc, v| {
            if let (Some(a), Some(o)) = (acc.as_object_mut(), v.as_object()) {
                a.extend(o.clone());
            }
            acc
        },
    );
    assert_eq!(got["inner"]["code"], "P2028", "{out}\n{}", s.log());
    assert_eq!(got["inner"]["class"], "PrismaClientKnownRequestError", "{out}");
    // pdp's own answer (the restarted executor never sees the request).
    assert!(got["inner"]["message"].as_str().is_some_and(|m| m.contains("stopped (it is being restarted)")), "{out}");
    assert!(got["inner"]["ms"].as_u64().is_some_and(|ms| ms < 1000), "answered at once: {out}");
    assert_eq!(got["outer"], "P2028", "{out}");
    assert_eq!(got["left"], 0, "the database rolled the transaction back: {out}");
    drop(s);
    drop_db(&name);
}

#[test]
fn sigterm_lets_an_open_interactive_transaction_commit_and_refuses_new_work() {
    let name = db_name("drain");
    let p = project(&Db::Postgres(name.clone()));
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    p.write(
        "slow_tx.ts",
        &client_script(
            "await prisma.$transaction(async (tx) => {\n\
           await tx.user.create({ data: { email: 'first@drain.test' } });\n\
           await Deno.writeTextFile('tx-open', 'yes');\n\
           await new Promise((r) => setTimeout(r, 2500));\n\
           await tx.user.create({ data: { email: 'second@drain.test' } });\n\
         }, { timeout: 20000 });\n\
         console.log('committed');\n",
        ),
    );
    let script = {
        let root = p.root().to_path_buf();
        let (url, ca, key) = (s.url(), s.ca.clone(), key.clone());
        std::thread::spawn(move || {
            std::process::Command::new(serve::deno())
                .args(["run", "-A", "--no-config", "slow_tx.ts"])
                .current_dir(root)
                .env("DENO_CERT", ca)
                .env("DENO_DIR", serve::tool_cache().join("deno-dir"))
                .env("NO_COLOR", "1")
                .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
                .env("PDP_URL", url)
                .env("PDP_API_KEY", key)
                .output()
                .expect("deno runs")
        })
    };
    serve::poll(Duration::from_secs(120), "the transaction to open", || p.path("tx-open").exists().then_some(()));
    s.signal("TERM");
    // While draining: not ready, and work outside the open transaction is refused.
    serve::poll(Duration::from_secs(10), "/ready to turn 503", || {
        (s.curl("GET", "/ready", &[], None).0 == 503).then_some(())
    });
    let auth = format!("Authorization: Bearer {key}");
    let (code, body) = s.curl("POST", "/transaction/start", &[&auth, "Prisma-Engine-Hash: 7.10.0"], Some("{}"));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    let out = script.join().expect("script thread");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("committed"), "{text}\n--- pdp serve ---\n{}", s.log());
    let (code, log) = s.wait(Duration::from_secs(40));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Stopped after draining"), "{log}");
    assert_eq!(psql(&name, "SELECT count(*) FROM \"User\" WHERE email LIKE '%@drain.test'"), "2", "all or nothing");
    drop_db(&name);
}

#[test]
fn limits_body_size_and_unknown_versions_get_clear_errors() {
    let name = db_name("limits");
    let p = project(&Db::Postgres(name.clone()));
    let key = api_key(&p);
    let config = p.read("pdp.toml").replace("[serve]\n", "[serve]\nlimits = { max-body-size = \"1KiB\" }\n");
    p.write("pdp.toml", &config);
    let s = Serving::start(&p, &[]);
    let auth = format!("Authorization: Bearer {key}");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(4096));
    let (code, body) = s.curl("POST", "/query", &[&auth, "Prisma-Engine-Hash: 7.10.0"], Some(&big));
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("larger than this pdp accepts (1024 bytes, [serve.limits] max-body-size)"), "{body}");
    // A client version with no executor release: the version is named.
    let (code, body) = s.curl("GET", "/connection-info", &[&auth, "Prisma-Engine-Hash: 7.10.1"], None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no query-plan executor for Prisma 7.10.1"), "{body}");
    // Not a version at all: refused before anything reaches npm.
    let (code, body) = s.curl("GET", "/connection-info", &[&auth, "Prisma-Engine-Hash: latest"], None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not a Prisma Client version"), "{body}");
    // Client-supplied limit headers never reach the executor (the request still works).
    let (code, body) = s.curl(
        "GET",
        "/connection-info",
        &[&auth, "Prisma-Engine-Hash: 7.10.0", "x-query-timeout: 1", "x-max-response-size: 1"],
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"provider\":\"postgres\""), "{body}");
    drop(s);
    drop_db(&name);
}

#[test]
fn a_project_version_without_an_executor_release_stops_serve_with_the_version_named() {
    let p = crate::support::Project::new();
    p.init(&["--prisma", "7.10.1", "--database-url", &crate::support::postgres_url()]);
    let out = p.run_with(p.pdp().env("PDP_CACHE_DIR", serve::tool_cache()).args(["serve", "--listen", "127.0.0.1:0"]));
    let out = out.expect_code(2);
    assert!(out.stderr.contains("@prisma/query-plan-executor@7.10.1` is not published"), "{}", out.all());
    assert!(out.stderr.contains("hint:"), "{}", out.all());
}

#[test]
fn serve_refuses_to_start_without_keys_and_names_a_taken_port() {
    let p = crate::support::Project::new();
    p.init(&["--database-url", &crate::support::postgres_url()]);
    let config = p.read("pdp.toml").replace("api-keys = [\"env:PDP_API_KEY\"]", "api-keys = []");
    p.write("pdp.toml", &config);
    let out = cached(&p, &["serve"]).expect_code(2);
    assert!(
        out.stderr.contains("refuses to run without API keys") && out.stderr.contains("pdp keys new"),
        "{}",
        out.all()
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let p = crate::support::Project::new();
    p.init(&["--database-url", &crate::support::postgres_url()]);
    let out = cached(&p, &["serve", "--listen", &addr]).expect_code(2);
    assert!(
        out.stderr.contains(&format!("cannot listen on {addr}")) && out.stderr.contains("another process"),
        "{}",
        out.all()
    );
}

/// The pool child serving `slot`: the executor whose socket (in its environment) ends in `-<slot>.sock`.
fn executor_in_slot(pdp: u32, slot: u64) -> u32 {
    let suffix = format!("-{slot}.sock");
    children(pdp, "pdp-qpe.mjs")
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .filter_map(|kv| std::str::from_utf8(kv).ok())
                    .any(|kv| kv.starts_with("PDP_QPE_SOCKET=") && kv.ends_with(&suffix))
            })
        })
        .unwrap_or_else(|| panic!("no executor in slot {slot}"))
}

#[test]
fn one_crashed_child_of_a_pool_costs_only_its_own_requests_and_transactions() {
    let name = db_name("pool");
    let p = project(&Db::Postgres(name.clone()));
    with_children(&p, 2);
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    let ready = s.all_children_ready();
    assert_eq!(ready["executors"].as_array().map(Vec::len), Some(2), "{ready}");
    // Load: 8 workers counting users until told to stop; every answer is tallied by the time it came:
    // before the kill, after it, and what failed (with the client's error code).
    p.write(
        "load.ts",
        &client_script(
            "const exists = (f: string) => Deno.stat(f).then(() => true, () => false);\n\
             const t = { before: 0, after: 0, failed: [] as string[] };\n\
             await Promise.all(Array.from({ length: 8 }, async () => {\n\
               while (!(await exists('stop'))) {\n\
                 const killed = await exists('killed');\n\
                 try { await prisma.user.count(); if (killed) t.after++; else t.before++; }\n\
                 catch (e) { t.failed.push((e as { code?: string }).code ?? String(e)); }\n\
               }\n\
             }));\n\
             console.log(JSON.stringify({ load: t }));\n",
        ),
    );
    p.write("tx.ts", &held_transaction_script("pool.test"));
    let ((tx_ok, tx_out), (load_ok, load_out)) = std::thread::scope(|scope| {
        let tx = scope.spawn(|| s.deno("tx.ts", &key, &[]));
        let _go = Touch(&p, "go");
        serve::poll(Duration::from_secs(120), "the transaction to open", || p.path("tx-open").exists().then_some(()));
        let load = scope.spawn(|| s.deno("load.ts", &key, &[]));
        // The transaction's owner, as /ready says; the other child is the survivor.
        let (_, body) = s.curl("GET", "/ready", &[], None);
        let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let executors = ready["executors"].as_array().expect("executors").clone();
        let owner = executors.iter().find(|e| e["transactions"] == 1).expect("the owner is listed").clone();
        let owner_slot = owner["slot"].as_u64().expect("slot");
        let other_slot = 1 - owner_slot;
        let (owner_pid, other_pid) = (executor_in_slot(s.pid(), owner_slot), executor_in_slot(s.pid(), other_slot));
        serve::poll(Duration::from_secs(60), "some load before the kill", || {
            (serve::metric_sum(&s.metrics(&key), "pdp_requests_total{route=\"qpe_query\",status=\"200\"}") > 50.0)
                .then_some(())
        });
        serve::signal(owner_pid, "KILL");
        p.write("killed", "");
        serve::poll(Duration::from_secs(10), "pdp to see the owner die", || {
            let m = s.metrics(&key);
            (serve::metric_sum(&m, "pdp_child_restarts_total{kind=\"executor\",version=\"7.10.0\"") >= 1.0)
                .then_some(())
        });
        drop(_go);
        let tx = tx.join().expect("tx client");
        // Let the load run on a while after the kill, then stop it.
        let after = serve::metric_sum(&s.metrics(&key), "pdp_requests_total{route=\"qpe_query\",status=\"200\"}");
        serve::poll(Duration::from_secs(60), "load served after the kill", || {
            (serve::metric_sum(&s.metrics(&key), "pdp_requests_total{route=\"qpe_query\",status=\"200\"}")
                > after + 50.0)
                .then_some(())
        });
        p.write("stop", "");
        let load = load.join().expect("load client");
        // The survivor never stopped: same process, first incarnation.
        assert!(std::path::Path::new(&format!("/proc/{other_pid}")).exists(), "the other child kept running");
        let (_, body) = s.curl("GET", "/ready", &[], None);
        let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let other = ready["executors"].as_array().expect("executors").iter().find(|e| e["slot"] == other_slot).cloned();
        assert_eq!(other.map(|e| e["generation"].clone()), Some(serde_json::json!(1)), "{ready}");
        (tx, load)
    });
    assert!(tx_ok, "{tx_out}\n{}", s.log());
    let lines: Vec<serde_json::Value> = tx_out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let inner = lines.iter().find_map(|v| v.get("inner")).expect("the inner error");
    assert_eq!(inner["code"], "P2028", "{tx_out}");
    assert!(inner["ms"].as_u64().is_some_and(|ms| ms < 1000), "answered at once: {tx_out}");
    assert!(load_ok, "{load_out}\n{}", s.log());
    let load = tally(&load_out);
    eprintln!("pool of 2, one child killed under load: {load}; the transaction's next query: {inner}");
    // Only what was in flight on the killed child failed: at most one request per worker.
    let failed = load["failed"].as_array().expect("failed").len();
    assert!(failed <= 8, "more failures than requests in flight on the killed child: {load}");
    assert!(load["before"].as_u64() > Some(0) && load["after"].as_u64() > Some(50), "{load}");
    assert_eq!(psql(&name, "SELECT count(*) FROM \"User\" WHERE email LIKE '%@pool.test'"), "0", "rolled back");
    drop(s);
    drop_db(&name);
}

/// The replica's connection budget bounds Prisma 7 executors too: a pool of two shares
/// `connection-limit = 4` (2 each, enforced in each executor's own driver pool), and 24 clients holding
/// transactions and sleeping queries never make PostgreSQL see more than 4 connections from it (counted in
/// `pg_stat_activity`). Unbounded, each executor's driver pool opens up to 10.
#[test]
fn a_pool_of_executors_stays_within_the_replicas_connection_budget() {
    let name = db_name("budget");
    let p = project(&Db::Postgres(name.clone()));
    with_children(&p, 2);
    let toml = p.read("pdp.toml");
    p.write("pdp.toml", &format!("{toml}\n[serve.limits]\nconnection-limit = 4\non-demand-connections = 0\n"));
    let key = api_key(&p);
    let s = Serving::start(&p, &[]);
    let ready = s.all_children_ready();
    let limits: Vec<_> =
        ready["executors"].as_array().expect("executors").iter().map(|e| e["connection_limit"].clone()).collect();
    assert_eq!(limits, [2, 2], "each executor gets half the budget: {ready}");
    assert_eq!(ready["connections"], serde_json::json!({"budget": 4, "granted": 4}), "{ready}");
    p.write(
        "load.ts",
        &client_script(
            "const exists = (f: string) => Deno.stat(f).then(() => true, () => false);\n\
             const t = { ok: 0, failed: {} as Record<string, number> };\n\
             await Promise.all(Array.from({ length: 24 }, async (_, i) => {\n\
               while (!(await exists('stop'))) {\n\
                 try {\n\
                   if (i % 2) await prisma.$queryRaw`SELECT 1 AS one FROM pg_sleep(0.02)`;\n\
                   else await prisma.$transaction(async (tx) => { await tx.user.count(); await new Promise((r) => setTimeout(r, 20)); await tx.user.count(); }, { maxWait: 20000, timeout: 30000 });\n\
                   t.ok++;\n\
                 } catch (e) { const c = (e as { code?: string }).code ?? String(e); t.failed[c] = (t.failed[c] ?? 0) + 1; }\n\
               }\n\
             }));\n\
             console.log(JSON.stringify({ load: t }));\n",
        ),
    );
    let count = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()");
    let (most, (ok, out)) = std::thread::scope(|scope| {
        let load = scope.spawn(|| s.deno("load.ts", &key, &[]));
        // The stop file is written however this scope ends, so a failed wait never leaves the load running.
        let stop = Touch(&p, "stop");
        serve::poll(Duration::from_secs(60), "the load to get going", || {
            let m = s.metrics(&key);
            let answered = serve::metric_sum(&m, "pdp_requests_total{route=\"qpe_query\",status=\"200\"}")
                + serve::metric_sum(&m, "pdp_requests_total{route=\"qpe_tx_commit\",status=\"200\"}");
            (load.is_finished() || answered > 20.0).then_some(())
        });
        if load.is_finished() {
            return (0, load.join().expect("load client"));
        }
        let mut most = 0u32;
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < until {
            most = most.max(psql(&name, &count).parse().unwrap_or(0));
        }
        drop(stop);
        (most, load.join().expect("load client"))
    });
    assert!(ok, "{out}\n{}", s.log());
    let load = tally(&out);
    eprintln!("pool of 2 executors, connection-limit 4, 24 clients: at most {most} connections seen; {load}");
    assert!(load["ok"].as_u64() > Some(100), "the load ran: {load}");
    assert_eq!(load["failed"], serde_json::json!({}), "waiting for a connection is not a failure: {load}");
    assert!(most <= 4, "the executors' connections stay within the replica's budget of 4: {most}");
    assert!(most >= 3, "the load used the budget (so the bound was what held it): {most}");
    // The operator's view agrees: open against the budget.
    let m = s.metrics(&key);
    assert_eq!(serve::metric_sum(&m, "pdp_db_connection_budget"), 4.0, "{m}");
    assert_eq!(serve::metric_sum(&m, "pdp_db_connections_granted"), 4.0, "{m}");
    drop(s);
    drop_db(&name);
}
