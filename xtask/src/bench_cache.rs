//! `cargo xtask bench cache`: a cached read against the same read uncached and against the floor for a hit.
//! One `pdp serve` (release build, https with its auto CA, one executor) on PostgreSQL; wrk (-t1 -c32)
//! replays the Prisma 7 client's own findUnique `/query` body (captured once through the real client) with
//! the key header: with `cache-control: max-age=600` every request after the first is a hit; without it
//! every request runs in the executor; the floor is `GET /health`, which pdp answers itself on the same
//! keep-alive TLS connections (a hit adds the key check, the cache lookup and the cached body). Rounds
//! alternate; medians, with req/s, p50, p99 and pdp's CPU per request.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::bench_prisma7::{Project, Wrk, lua, wrk};

const ROUNDS: usize = 5;

/// Writes the three wrk scripts into `work`: `hit.lua` (the captured `/query` `body` with a cache strategy),
/// `uncached.lua` (the same without one) and `health.lua` (`GET /health`), each with `key` and a check of
/// every answer.
pub(crate) fn scripts(work: &Path, key: &str, body: &str) -> anyhow::Result<()> {
    std::fs::write(work.join("hit.lua"), lua(key, body, "wrk.headers[\"Cache-Control\"] = \"max-age=600\"\n", None)?)?;
    std::fs::write(work.join("uncached.lua"), lua(key, body, "", None)?)?;
    std::fs::write(
        work.join("health.lua"),
        format!(
            "wrk.headers[\"Authorization\"] = \"Bearer {key}\"\nresponse = function(status) if status ~= 200 then os.exit(1) end end\n"
        ),
    )?;
    Ok(())
}

/// `cargo xtask bench cache`.
pub fn cache(root: &Path) -> anyhow::Result<()> {
    crate::step("build pdp (release)", crate::cargo().args(["build", "--release", "--locked", "-p", "pdp"]))?;
    crate::node_tools(root)?;
    crate::services::ensure()?;
    crate::ensure_package("wrk", "wrk", "the cache benchmark loads with it")?;
    let project = Project::set_up(root, "cache", 1000, false)?;
    let (work, key) = (&project.work, &project.key);
    let mut serve = project.pdp(&["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn()?;
    let port = crate::bench::read_listen_port(&mut serve, "https")?;
    let ca = work.join(".pdp/tls/ca.pem");
    let body = project.capture(root, &format!("prisma://localhost:{port}/?api_key={key}"), Some(&ca))?;
    scripts(work, key, &body)?;
    // wrk checks https certificates against nothing: it connects to pdp's own, as a client would.
    let paths = [
        ("floor: GET /health", "health.lua", format!("https://localhost:{port}/health")),
        ("cached findUnique (hits)", "hit.lua", format!("https://localhost:{port}/query")),
        ("uncached findUnique", "uncached.lua", format!("https://localhost:{port}/query")),
    ];
    let pid = serve.id();
    for (_, script, url) in &paths {
        let _ = wrk(work, script, url, 32, 6, &[pid])?;
    }
    let mut results: Vec<Vec<Wrk>> = paths.iter().map(|_| Vec::new()).collect();
    for round in 1..=ROUNDS {
        for ((name, script, url), runs) in paths.iter().zip(results.iter_mut()) {
            let r = wrk(work, script, url, 32, 6, &[pid])?;
            eprintln!(
                "round {round} {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms; pdp {:.0} µs/request",
                r.rps, r.p50, r.p99, r.cpu[0]
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

    let med = |runs: &[Wrk], f: &dyn Fn(&Wrk) -> f64| crate::bench::median_f64(runs.iter().map(f).collect());
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
            med(runs, &|r| r.cpu[0])
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
    // The machine's own speed drifts between rounds; a hit round against the floor round just before it
    // shows how much of the spread is that drift.
    let paired: Vec<String> =
        floor.iter().zip(hits).map(|(f, h)| format!("{:.0}%", 100.0 * h.rps / f.rps.max(1.0))).collect();
    println!("  hits/floor round by round: {}", paired.join(", "));
    project.finish();
    Ok(())
}
