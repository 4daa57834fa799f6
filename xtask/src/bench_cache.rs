//! `cargo xtask bench cache`: a cached read against the same read uncached and against the floor for a hit.
//! One `pdp serve` (release build, https with its auto CA, one executor) on PostgreSQL; wrk (-t1 -c32)
//! replays the Prisma 7 client's own findUnique `/query` body (captured once through the real client) with
//! the key header: with `cache-control: max-age=600` every request after the first is a hit; without it
//! every request runs in the executor; the floor is `GET /health`, which pdp answers itself on the same
//! keep-alive TLS connections (a hit adds the key check, the cache lookup and the cached body). Rounds
//! alternate; medians, with req/s, p50, p99 and pdp's CPU per request.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

const ROUNDS: usize = 5;

struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    pdp_us: f64,
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

fn wrk(work: &Path, script: &str, url: &str, pdp: u32) -> anyhow::Result<Run> {
    let before = crate::bench::cpu(pdp);
    let out =
        Command::new("wrk").args(["-t1", "-c32", "-d6s", "--latency", "-s", script, url]).current_dir(work).output()?;
    let after = crate::bench::cpu(pdp);
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
    Ok(Run {
        rps: number("Requests/sec"),
        p50: ms(&text, "50%"),
        p99: ms(&text, "99%"),
        pdp_us: after.saturating_sub(before) as f64 * 10_000.0 / n,
    })
}

/// `cargo xtask bench cache`.
pub fn cache(root: &Path) -> anyhow::Result<()> {
    crate::step("build pdp (release)", crate::cargo().args(["build", "--release", "--locked", "-p", "pdp"]))?;
    crate::node_tools(root)?;
    crate::services::ensure()?;
    crate::ensure_package("wrk", "wrk", "the cache benchmark loads with it")?;
    let pdp = root.join("target/release/pdp");
    let deno = crate::deno_binary(root)?;
    let work = std::env::temp_dir().join(format!("pdp-bench-cache-{}", std::process::id()));
    let cache = root.join("target/bench-cache");
    let db = format!("pdp_bench_cache_{}", std::process::id());
    let url = format!("postgresql://postgres@127.0.0.1:5432/{db}");
    std::fs::create_dir_all(&work)?;
    let pdp_in = |args: &[&str]| {
        let mut c = Command::new(&pdp);
        c.args(args).current_dir(&work).env("PDP_CACHE_DIR", &cache).env("PDP_LOG", "warn");
        c
    };
    crate::step("pdp init", &mut pdp_in(&["init", "--yes", "--no-ci", "--no-deploy", "--database-url", &url]))?;
    let generated = std::fs::read_to_string(work.join("pdp.toml"))?;
    let toml = generated.replacen("[serve]\n", "[serve]\nchildren = 1\n", 1);
    if toml == generated {
        bail!("the generated pdp.toml has no `[serve]` table");
    }
    std::fs::write(work.join("pdp.toml"), toml)?;
    crate::step("pdp migrate deploy", &mut pdp_in(&["-q", "migrate", "deploy"]))?;
    crate::step("pdp build-client", &mut pdp_in(&["-q", "build-client"]))?;
    let seed = "INSERT INTO \"User\" (email, name) SELECT 'u' || i || '@bench.test', 'user ' || i FROM generate_series(1, 1000) i";
    crate::step("seed users", Command::new("psql").args([url.as_str(), "-q", "-c", seed]))?;
    let key = std::fs::read_to_string(work.join(".env"))?
        .lines()
        .find_map(|l| l.strip_prefix("PDP_API_KEY=").map(|v| v.trim().trim_matches(['\'', '"']).to_owned()))
        .context("no PDP_API_KEY in .env")?;
    let mut serve = pdp_in(&["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn()?;
    let port = crate::bench::read_listen_port(&mut serve, "https")?;
    let ca = work.join(".pdp/tls/ca.pem");

    let mut capture = Command::new(&deno);
    capture
        .args(["run", "-A", "--no-config"])
        .arg(root.join("xtask/bench/capture_query.ts"))
        .current_dir(&work)
        .env("DENO_DIR", cache.join("deno-dir"))
        .env("NO_COLOR", "1")
        .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
        .env("ACCEL_URL", format!("prisma://localhost:{port}/?api_key={key}"))
        .env("DENO_CERT", &ca);
    crate::step("capture the client's findUnique /query body", &mut capture)?;
    let body = std::fs::read_to_string(work.join("query.json"))?;
    let script = |cache_control: &str| -> anyhow::Result<String> {
        Ok(format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"Bearer {key}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Prisma-Engine-Hash\"] = \"7.10.0\"\n{cache_control}wrk.body = {}\n\
             response = function(status, headers, body)\n  if status ~= 200 or not body:find('\"email\"', 1, true) then\n    \
             io.stderr:write(\"unexpected \" .. status .. \": \" .. body .. \"\\n\"); os.exit(1)\n  end\nend\n",
            crate::bench_serve::lua_string(&body)?
        ))
    };
    std::fs::write(work.join("hit.lua"), script("wrk.headers[\"Cache-Control\"] = \"max-age=600\"\n")?)?;
    std::fs::write(work.join("uncached.lua"), script("")?)?;
    std::fs::write(
        work.join("health.lua"),
        format!(
            "wrk.headers[\"Authorization\"] = \"Bearer {key}\"\nresponse = function(status) if status ~= 200 then os.exit(1) end end\n"
        ),
    )?;
    // wrk checks https certificates against nothing: it connects to pdp's own, as a client would.
    let paths = [
        ("floor: GET /health", "health.lua", format!("https://localhost:{port}/health")),
        ("cached findUnique (hits)", "hit.lua", format!("https://localhost:{port}/query")),
        ("uncached findUnique", "uncached.lua", format!("https://localhost:{port}/query")),
    ];
    let pid = serve.id();
    for (_, script, url) in &paths {
        let _ = wrk(&work, script, url, pid)?;
    }
    let mut results: Vec<Vec<Run>> = paths.iter().map(|_| Vec::new()).collect();
    for round in 1..=ROUNDS {
        for ((name, script, url), runs) in paths.iter().zip(results.iter_mut()) {
            let r = wrk(&work, script, url, pid)?;
            eprintln!(
                "round {round} {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms; pdp {:.0} µs/request",
                r.rps, r.p50, r.p99, r.pdp_us
            );
            runs.push(r);
        }
    }
    let metrics = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("https://localhost:{port}/metrics"))
        .output()?;
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = serve.wait();
    let _ = Command::new("psql")
        .args([
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
        ])
        .status();

    let med = |runs: &[Run], f: &dyn Fn(&Run) -> f64| crate::bench::median_f64(runs.iter().map(f).collect());
    println!(
        "\nQuery cache: wrk -t1 -c32, 6 s rounds over pdp's https with the key header, medians of {ROUNDS} alternating rounds"
    );
    for ((name, ..), runs) in paths.iter().zip(&results) {
        let lo = runs.iter().map(|r| r.rps).fold(f64::INFINITY, f64::min);
        let hi = runs.iter().map(|r| r.rps).fold(0.0, f64::max);
        println!(
            "  {name:<26} {:>7.0} req/s (rounds {lo:.0}–{hi:.0}), p50 {:.3} ms, p99 {:.3} ms; pdp {:.0} µs CPU/request",
            med(runs, &|r| r.rps),
            med(runs, &|r| r.p50),
            med(runs, &|r| r.p99),
            med(runs, &|r| r.pdp_us)
        );
    }
    let (floor, hits, uncached) = (&results[0], &results[1], &results[2]);
    println!(
        "  hits: {:.1}% of the floor's throughput (target ≥ 90%), p50 {:.2}× the floor's (target ≤ 1.2×); {:.1}× the uncached throughput",
        100.0 * med(hits, &|r| r.rps) / med(floor, &|r| r.rps),
        med(hits, &|r| r.p50) / med(floor, &|r| r.p50),
        med(hits, &|r| r.rps) / med(uncached, &|r| r.rps)
    );
    let fills = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pdp_cache_events_total{event=\"fill\"} "))
        .unwrap_or("?")
        .to_owned();
    println!("  queries the cache ran for the hits' key over the whole run (warm-up included): {fills}");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
