//! `cargo xtask bench serve`: a findUnique-by-id workload at 32 concurrent requests from one client
//! process (the generated Prisma 7.10.0 Deno client), through `pdp serve` (https, API key, release build)
//! versus straight to the same query-plan executor over http (the process pdp started, on its loopback
//! port), and the same again for a second pdp with `tls = "off"`. After a warm-up of each path, rounds
//! alternate between the four; medians are compared. Also samples `pdp serve`'s own resident memory (its
//! children are separate processes and excluded) and its CPU per query while the load runs. Then the same
//! paths under wrk replaying the client's own findUnique `/query` body (captured once through the real
//! client), so that the load generator does not eat the cores and each request is one query; and the pool
//! dimension: `[serve] children = 2` against 1, under the client and under wrk.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::bench::Load;

const ROUNDS: usize = 5;
const POOL_ROUNDS: usize = 3;
const WRK_ROUNDS: usize = 3;
/// Rounds of the wrk comparison with direct and with nginx (issue 14 asks for five at least).
const PROXY_ROUNDS: usize = 5;
const USERS: usize = 1000;

/// `cargo xtask bench serve`.
pub fn serve(root: &Path) -> anyhow::Result<()> {
    crate::step("build pdp (release)", crate::cargo().args(["build", "--release", "--locked", "-p", "pdp"]))?;
    crate::node_tools(root)?;
    crate::services::ensure()?;
    let deno = crate::deno_binary(root)?;
    let project = crate::bench_prisma7::Project::set_up(root, "serve", USERS, false)?;
    let (work, cache, key) = (project.work.clone(), project.cache.clone(), project.key.clone());
    // Children also on a loopback port (bench only): the "direct" paths load the very executor pdp runs.
    let pdp_in = |args: &[&str]| {
        let mut c = project.pdp(args);
        c.env("PDP_BENCH_CHILD_TCP", "1");
        c
    };

    // pdp serve, and its port from its log.
    let mut serve = pdp_in(&["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn()?;
    let port = crate::bench::read_listen_port(&mut serve, "https")?;
    // "Direct" is the very executor pdp started for the project (pinned at start), on its loopback port:
    // one process, so JIT warm-up, heap and pool are the same on both sides of the comparison.
    let executor = crate::bench::child_with(serve.id(), "pdp-qpe.mjs").context("pdp serve runs no executor")?;
    let direct_port = crate::bench::listening_port(executor)?;
    // The same proxy without TLS (a second pdp serve with its own executor, reached the same two ways), to
    // split pdp's overhead into what TLS costs (the client's side included) and what the hop costs.
    let toml = std::fs::read_to_string(work.join("pdp.toml"))?;
    let plain_toml = toml.replacen("tls = \"auto\"", "tls = \"off\"", 1);
    if plain_toml == toml {
        bail!("the generated pdp.toml has no `tls = \"auto\"` line to turn off");
    }
    std::fs::write(work.join("pdp-plain.toml"), plain_toml)?;
    let mut plain =
        pdp_in(&["serve", "--config", "pdp-plain.toml", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn()?;
    let plain_port = crate::bench::read_listen_port(&mut plain, "http")?;
    let plain_executor =
        crate::bench::child_with(plain.id(), "pdp-qpe.mjs").context("the tls-off pdp serve runs no executor")?;
    let plain_direct_port = crate::bench::listening_port(plain_executor)?;

    // A load run: its figures, and how many requests it sent in all (warm-up included).
    let run_load = |accel: &str, cert: Option<&Path>| -> anyhow::Result<(Load, f64)> {
        let mut c = Command::new(&deno);
        c.args(["run", "-A", "--no-config"])
            .arg(root.join("xtask/bench/serve_load.ts"))
            .current_dir(&work)
            .env("DENO_DIR", cache.join("deno-dir"))
            .env("NO_COLOR", "1")
            .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
            .env("ACCEL_URL", accel)
            .env("MAX_ID", USERS.to_string());
        if let Some(cert) = cert {
            c.env("DENO_CERT", cert);
        }
        let out = c.output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("load run failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
        }
        let last = text.lines().last().unwrap_or("").to_owned();
        let f = |k: &str| {
            last.split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok((Load { rps: f("rps"), p50: f("p50"), p99: f("p99") }, f("requests") + f("warmup")))
    };
    let via_pdp = format!("prisma://localhost:{port}/?api_key={key}");
    let straight = format!("prisma+postgres://localhost:{direct_port}/?api_key=unused");
    // `prisma+postgres://localhost` is plain http to Prisma 7 clients (the `prisma dev` convention).
    let via_plain = format!("prisma+postgres://localhost:{plain_port}/?api_key={key}");
    let plain_straight = format!("prisma+postgres://localhost:{plain_direct_port}/?api_key=unused");
    let ca = work.join(".pdp/tls/ca.pem");
    let pid = serve.id();
    let (mut d, mut p, mut d2, mut h) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut peak_rss_kb = 0u64;
    let (mut pdp_us, mut executor_us) = (Vec::new(), Vec::new());
    // The executor (Node's JIT) and the client get faster for a while: warm both paths before measuring.
    let _ = run_load(&straight, None)?;
    let _ = run_load(&via_pdp, Some(&ca))?;
    let _ = run_load(&plain_straight, None)?;
    let _ = run_load(&via_plain, None)?;
    for round in 1..=ROUNDS {
        let (a, _) = run_load(&straight, None)?;
        eprintln!("round {round} direct: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", a.rps, a.p50, a.p99);
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            for _ in 0..120 {
                peak = peak.max(rss_kb(pid).unwrap_or(0));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            peak
        });
        let before = (crate::bench::cpu(pid), crate::bench::cpu(executor));
        let (b, sent) = run_load(&via_pdp, Some(&ca))?;
        let after = (crate::bench::cpu(pid), crate::bench::cpu(executor));
        // Clock ticks are 10 ms.
        pdp_us.push((after.0 - before.0) as f64 * 10_000.0 / sent.max(1.0));
        executor_us.push((after.1 - before.1) as f64 * 10_000.0 / sent.max(1.0));
        peak_rss_kb = peak_rss_kb.max(sampler.join().unwrap_or(0));
        eprintln!("round {round} pdp:    {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", b.rps, b.p50, b.p99);
        let (c, _) = run_load(&plain_straight, None)?;
        eprintln!("round {round} direct (2): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", c.rps, c.p50, c.p99);
        let (e, _) = run_load(&via_plain, None)?;
        eprintln!("round {round} pdp tls off: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", e.rps, e.p50, e.p99);
        d.push(a);
        p.push(b);
        d2.push(c);
        h.push(e);
    }
    let hwm = hwm_kb(pid).unwrap_or(0);

    // The same paths loaded by wrk replaying the client's own `/query` body (a random id each), so that
    // the load generator does not eat the cores and every request is one query (the client batches).
    crate::ensure_package("wrk", "wrk", "the serve benchmark loads with it")?;
    let body = project.capture(root, &via_pdp, Some(&ca))?;
    std::fs::write(work.join("query.lua"), crate::bench_prisma7::lua(&key, &body, "", Some(USERS))?)?;
    // req/s, and CPU µs per request of the proxy and of the executors together.
    let wrk = |url: &str, proxy: Option<u32>, executors: &[u32]| -> anyhow::Result<(f64, f64, f64)> {
        let pids: Vec<u32> = proxy.into_iter().chain(executors.iter().copied()).collect();
        let r = crate::bench_prisma7::wrk(&work, "query.lua", url, 32, 8, &pids)?;
        let proxy_us = if proxy.is_some() { r.cpu[0] } else { 0.0 };
        let skip = usize::from(proxy.is_some());
        Ok((r.rps, proxy_us, r.cpu[skip..].iter().sum()))
    };
    // nginx doing pdp's job in front of the same executor (one worker, TLS, the key checked, keep-alive to
    // its socket, an access log buffered as pdp's), the peer pdp's forward is measured against.
    crate::ensure_package("nginx", "nginx-light", "the serve benchmark compares pdp with it")?;
    let nginx = crate::bench::start_nginx(&work, executor, &key, false, None)?;
    let wrk_paths = [
        ("direct", format!("http://127.0.0.1:{direct_port}/query"), None, vec![executor]),
        ("pdp https", format!("https://localhost:{port}/query"), Some(pid), vec![executor]),
        ("nginx https", format!("https://localhost:{}/query", nginx.port), Some(nginx.worker), vec![executor]),
        ("pdp tls off", format!("http://127.0.0.1:{plain_port}/query"), Some(plain.id()), vec![plain_executor]),
    ];
    for (_, url, proxy, ex) in &wrk_paths {
        let _ = wrk(url, *proxy, ex)?;
    }
    let mut wrk_results: Vec<Vec<(f64, f64, f64)>> = wrk_paths.iter().map(|_| Vec::new()).collect();
    for round in 1..=PROXY_ROUNDS {
        for ((name, url, proxy, ex), results) in wrk_paths.iter().zip(wrk_results.iter_mut()) {
            let r = wrk(url, *proxy, ex)?;
            eprintln!(
                "wrk round {round} {name}: {:.0} req/s; CPU µs/request: proxy {:.0}, executor {:.0}",
                r.0, r.1, r.2
            );
            results.push(r);
        }
    }

    // The pool: a third pdp (https) with `[serve] children = 2` against the first (`children = 1`), rounds
    // alternating under the same client load; CPU per request of pdp and of its executors (summed).
    std::fs::write(work.join("pdp-pool2.toml"), toml.replacen("children = 1", "children = 2", 1))?;
    let mut pool2 =
        pdp_in(&["serve", "--config", "pdp-pool2.toml", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn()?;
    let pool2_port = crate::bench::read_listen_port(&mut pool2, "https")?;
    let via_pool2 = format!("prisma://localhost:{pool2_port}/?api_key={key}");
    let spent = |pdp: u32| {
        let executors = crate::bench::children_with(pdp, "pdp-qpe.mjs");
        (crate::bench::cpu(pdp), executors.iter().map(|e| crate::bench::cpu(*e)).sum::<u64>(), executors.len())
    };
    let _ = run_load(&via_pool2, Some(&ca))?;
    let _ = run_load(&via_pdp, Some(&ca))?;
    let (mut one, mut two, mut one_cpu, mut two_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=POOL_ROUNDS {
        for (name, url, pdp_pid, loads, cpus) in [
            ("children = 1", &via_pdp, pid, &mut one, &mut one_cpu),
            ("children = 2", &via_pool2, pool2.id(), &mut two, &mut two_cpu),
        ] {
            let before = spent(pdp_pid);
            let (l, sent) = run_load(url, Some(&ca))?;
            let after = spent(pdp_pid);
            if after.2 != before.2 {
                bail!("the {name} pdp's executors changed during the round");
            }
            let per = |a: u64, b: u64| a.saturating_sub(b) as f64 * 10_000.0 / sent.max(1.0);
            let c = (per(after.0, before.0), per(after.1, before.1));
            eprintln!(
                "pool round {round} {name}: {:.0} req/s, p50 {:.2} ms; CPU µs/request: pdp {:.0}, executors ({}) {:.0}",
                l.rps, l.p50, c.0, after.2, c.1
            );
            loads.push(l);
            cpus.push(c);
        }
    }
    // The pool again under wrk, which leaves the cores to pdp and the executors.
    let pool_paths = [
        ("children = 1", format!("https://localhost:{port}/query"), pid),
        ("children = 2", format!("https://localhost:{pool2_port}/query"), pool2.id()),
    ];
    let mut pool_wrk: Vec<Vec<(f64, f64, f64)>> = pool_paths.iter().map(|_| Vec::new()).collect();
    for (_, url, pdp_pid) in &pool_paths {
        let _ = wrk(url, Some(*pdp_pid), &crate::bench::children_with(*pdp_pid, "pdp-qpe.mjs"))?;
    }
    for round in 1..=WRK_ROUNDS {
        for ((name, url, pdp_pid), results) in pool_paths.iter().zip(pool_wrk.iter_mut()) {
            let executors = crate::bench::children_with(*pdp_pid, "pdp-qpe.mjs");
            let r = wrk(url, Some(*pdp_pid), &executors)?;
            eprintln!(
                "wrk pool round {round} {name}: {:.0} req/s; CPU µs/request: pdp {:.0}, executors ({}) {:.0}",
                r.0,
                r.1,
                executors.len(),
                r.2
            );
            results.push(r);
        }
    }
    drop(nginx);
    let _ = Command::new("kill").args(["-TERM", &pool2.id().to_string()]).status();
    let _ = pool2.wait();
    for child in [&mut serve, &mut plain] {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    crate::bench::print_proxy_comparison(
        "findUnique by id, 32 concurrent, one Deno client process, 10 s rounds after a warm-up of each path",
        "direct to the executor (http):",
        "through pdp serve (https+key):",
        &d,
        &p,
    );
    crate::bench::print_proxy_comparison(
        "The same through a pdp serve with `tls = \"off\"`, to separate TLS from proxying",
        "direct to its executor (http):",
        "through pdp serve (http+key):",
        &d2,
        &h,
    );
    println!(
        "  CPU per request through pdp, medians: pdp serve {:.0} µs, the executor {:.0} µs",
        crate::bench::median_f64(pdp_us),
        crate::bench::median_f64(executor_us)
    );
    println!(
        "  pdp serve resident memory during the load: peak sampled {:.1} MB, VmHWM {:.1} MB (target < 30 MB; children excluded)",
        peak_rss_kb as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "\nThe same paths loaded by wrk (-t1 -c32, 8 s rounds) replaying the client's own findUnique /query body, one query per request, medians of {PROXY_ROUNDS} alternating rounds"
    );
    for ((name, ..), results) in wrk_paths.iter().zip(&wrk_results) {
        let m = |f: fn(&(f64, f64, f64)) -> f64| crate::bench::median_f64(results.iter().map(f).collect());
        let lo = results.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let hi = results.iter().map(|r| r.0).fold(0.0, f64::max);
        let (plo, phi) = (
            results.iter().map(|r| r.1).fold(f64::INFINITY, f64::min),
            results.iter().map(|r| r.1).fold(0.0, f64::max),
        );
        println!(
            "  {name:<12} {:>6.0} req/s (rounds {lo:.0}–{hi:.0}); CPU per request: proxy {:.0} µs (rounds {plo:.0}–{phi:.0}), executor {:.0} µs",
            m(|r| r.0),
            m(|r| r.1),
            m(|r| r.2)
        );
    }
    let med =
        |i: usize, f: fn(&(f64, f64, f64)) -> f64| crate::bench::median_f64(wrk_results[i].iter().map(f).collect());
    println!(
        "  proxy CPU per request: pdp {:.0} µs, nginx {:.0} µs: pdp/nginx {:.2}× (target ≤ 1.00×); throughput: pdp {:.1}% of direct (target ≥ 97%), nginx {:.1}%; pdp/nginx {:.2}× (target ≥ 1.00×)",
        med(1, |r| r.1),
        med(2, |r| r.1),
        med(1, |r| r.1) / med(2, |r| r.1),
        100.0 * med(1, |r| r.0) / med(0, |r| r.0),
        100.0 * med(2, |r| r.0) / med(0, |r| r.0),
        med(1, |r| r.0) / med(2, |r| r.0)
    );
    let rps = |v: &[Load]| crate::bench::median_f64(v.iter().map(|l| l.rps).collect());
    let lohi = |v: &[Load]| {
        let xs: Vec<f64> = v.iter().map(|l| l.rps).collect();
        (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(0.0, f64::max))
    };
    let cpu = |v: &[(f64, f64)]| {
        (
            crate::bench::median_f64(v.iter().map(|c| c.0).collect()),
            crate::bench::median_f64(v.iter().map(|c| c.1).collect()),
        )
    };
    let ((olo, ohi), (tlo, thi)) = (lohi(&one), lohi(&two));
    let ((op, oe), (tp, te)) = (cpu(&one_cpu), cpu(&two_cpu));
    println!(
        "\nA pool of executors: pdp serve (https+key) with `[serve] children = 1` and with `children = 2`, the same Deno client load, medians of {POOL_ROUNDS} rounds"
    );
    println!(
        "  throughput: children = 1 {:.0} req/s (rounds {olo:.0}–{ohi:.0}), children = 2 {:.0} req/s (rounds {tlo:.0}–{thi:.0}): {:.2}×",
        rps(&one),
        rps(&two),
        rps(&two) / rps(&one)
    );
    println!(
        "  CPU per request: children = 1 pdp {op:.0} µs, executor {oe:.0} µs; children = 2 pdp {tp:.0} µs, executors {te:.0} µs (the Deno client shares the two cores)"
    );
    let wrk_rps = |v: &[(f64, f64, f64)]| crate::bench::median_f64(v.iter().map(|r| r.0).collect());
    let wrk_cpu = |v: &[(f64, f64, f64)]| {
        (
            crate::bench::median_f64(v.iter().map(|r| r.1).collect()),
            crate::bench::median_f64(v.iter().map(|r| r.2).collect()),
        )
    };
    let [o, t] = &pool_wrk[..] else { unreachable!("two pool paths") };
    let ((op, oe), (tp, te)) = (wrk_cpu(o), wrk_cpu(t));
    println!(
        "  with wrk replaying /query (the client out of the way), medians of {WRK_ROUNDS} rounds: children = 1 {:.0} req/s, children = 2 {:.0} req/s: {:.2}×; CPU per request pdp {op:.0} → {tp:.0} µs, executor(s) {oe:.0} → {te:.0} µs",
        wrk_rps(o),
        wrk_rps(t),
        wrk_rps(t) / wrk_rps(o)
    );
    project.finish();
    Ok(())
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

fn hwm_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}
