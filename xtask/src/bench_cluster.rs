//! `cargo xtask bench cluster`: replicas behind HAProxy versus one pdp, and what relaying a transaction's
//! request to its owner costs. Two `pdp serve` replicas (release build, `tls = "off"`, one executor each,
//! `[serve.cluster]` on) share one PostgreSQL; HAProxy (Debian's package) balances per request in HTTP mode.
//! wrk replays the Prisma 7 client's own findUnique `/query` body (captured once through the real client),
//! so the load generator leaves the cores to the processes measured. Paths, alternating in rounds: one
//! replica straight, HAProxy in front of that one replica, HAProxy in front of both. Then the hop: one open
//! interactive transaction on replica A, its `/transaction/{id}/query` loaded at one request at a time
//! straight on A (local) and through replica B (relayed to A), p50 and p99 side by side.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

use crate::bench_prisma7::{Project, Wrk, lua, wrk};

const ROUNDS: usize = 3;
const USERS: usize = 1000;
const SECRET: &str = "bench-cluster-secret-0123456789abcdef0123";

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// `cargo xtask bench cluster`.
pub fn cluster(root: &Path) -> anyhow::Result<()> {
    crate::step("build pdp (release)", crate::cargo().args(["build", "--release", "--locked", "-p", "pdp"]))?;
    crate::node_tools(root)?;
    crate::services::ensure()?;
    crate::ensure_package("wrk", "wrk", "the cluster benchmark loads with it")?;
    crate::ensure_package("haproxy", "haproxy", "the cluster benchmark balances with it")?;
    let project = Project::set_up(root, "cluster", USERS, true)?;
    let (work, key) = (&project.work, &project.key);
    // Two replicas, each the other's peer.
    let cluster_ports = [crate::bench::free_port()?, crate::bench::free_port()?];
    let peers = cluster_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let mut replicas = Vec::new();
    for port in cluster_ports {
        let mut child = project
            .pdp(&["serve", "--listen", "127.0.0.1:0"])
            .env("PDP_CLUSTER_SECRET", SECRET)
            .env("PDP_CLUSTER_ADVERTISE", format!("127.0.0.1:{port}"))
            .env("PDP_CLUSTER_PEERS", &peers)
            .stderr(Stdio::piped())
            .spawn()?;
        let listen = crate::bench::read_listen_port(&mut child, "http")?;
        let executor = crate::bench::child_with(child.id(), "pdp-qpe.mjs").context("a replica runs no executor")?;
        replicas.push((child, listen, executor));
    }
    let (a_pid, a_port, a_exec) = (replicas[0].0.id(), replicas[0].1, replicas[0].2);
    let (b_pid, b_port, b_exec) = (replicas[1].0.id(), replicas[1].1, replicas[1].2);

    // HAProxy: one frontend in front of replica A alone, one in front of both; per-request round robin.
    let (one_port, both_port) = (crate::bench::free_port()?, crate::bench::free_port()?);
    let config = format!(
        "global\n  maxconn 4096\n\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  \
         option redispatch\n  retry-on conn-failure\n  http-reuse safe\n\n\
         frontend one\n  bind 127.0.0.1:{one_port}\n  default_backend one\n\n\
         frontend both\n  bind 127.0.0.1:{both_port}\n  default_backend both\n\n\
         backend one\n  balance roundrobin\n  server a 127.0.0.1:{a_port}\n\n\
         backend both\n  balance roundrobin\n  server a 127.0.0.1:{a_port}\n  server b 127.0.0.1:{b_port}\n"
    );
    std::fs::write(work.join("haproxy.cfg"), config)?;
    let mut haproxy = Command::new("haproxy").args(["-db", "-f", "haproxy.cfg"]).current_dir(work).spawn()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", both_port)).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("HAProxy did not start listening");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let lb = haproxy.id();

    // The client's own findUnique body, as in `bench serve`, a random user each request.
    let body = project.capture(root, &format!("prisma+postgres://localhost:{a_port}/?api_key={key}"), None)?;
    std::fs::write(work.join("query.lua"), lua(key, &body, "", Some(USERS))?)?;

    let pids = [a_pid, b_pid, a_exec, b_exec, lb];
    let paths = [
        ("one replica, straight", format!("http://127.0.0.1:{a_port}/query")),
        ("HAProxy → one replica", format!("http://127.0.0.1:{one_port}/query")),
        ("HAProxy → two replicas", format!("http://127.0.0.1:{both_port}/query")),
    ];
    for (_, url) in &paths {
        let _ = wrk(work, "query.lua", url, 32, 6, &pids)?;
    }
    let mut results: Vec<Vec<Wrk>> = paths.iter().map(|_| Vec::new()).collect();
    for round in 1..=ROUNDS {
        for ((name, url), runs) in paths.iter().zip(results.iter_mut()) {
            let r = wrk(work, "query.lua", url, 32, 6, &pids)?;
            eprintln!(
                "round {round} {name}: {:.0} req/s, p50 {:.2} ms; CPU µs/request: pdp A {:.0}, B {:.0}, executors {:.0} + {:.0}, HAProxy {:.0}",
                r.rps, r.p50, r.cpu[0], r.cpu[1], r.cpu[2], r.cpu[3], r.cpu[4]
            );
            runs.push(r);
        }
    }

    // The hop: a transaction open on A, queried one request at a time straight on A and through B.
    let start = Command::new("curl")
        .args(["-s", "-X", "POST", "-H", &format!("Authorization: Bearer {key}"), "-H", "Prisma-Engine-Hash: 7.10.0"])
        .args(["-H", "Content-Type: application/json", "--data-binary", r#"{"timeout":60000,"maxWait":5000}"#])
        .arg(format!("http://127.0.0.1:{a_port}/transaction/start"))
        .output()?;
    let started = String::from_utf8_lossy(&start.stdout).into_owned();
    let id = started
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .with_context(|| format!("no transaction id in {started}"))?
        .to_owned();
    let hop_paths = [
        ("local (owner A, straight)", format!("http://127.0.0.1:{a_port}/transaction/{id}/query")),
        ("relayed (through B to A)", format!("http://127.0.0.1:{b_port}/transaction/{id}/query")),
    ];
    let mut hops: Vec<Vec<Wrk>> = hop_paths.iter().map(|_| Vec::new()).collect();
    for round in 1..=ROUNDS {
        for ((name, url), runs) in hop_paths.iter().zip(hops.iter_mut()) {
            let r = wrk(work, "query.lua", url, 1, 6, &pids)?;
            eprintln!("hop round {round} {name}: p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s", r.p50, r.p99, r.rps);
            runs.push(r);
        }
    }

    stop(&mut haproxy);
    for (child, ..) in &mut replicas {
        stop(child);
    }

    let med = |runs: &[Wrk], f: &dyn Fn(&Wrk) -> f64| crate::bench::median_f64(runs.iter().map(f).collect());
    let spread = |runs: &[Wrk]| {
        let xs: Vec<f64> = runs.iter().map(|r| r.rps).collect();
        (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(0.0, f64::max))
    };
    println!(
        "\nReplicas: wrk (-t1 -c32, 6 s rounds) replaying the Prisma 7 client's findUnique /query, plain HTTP, medians of {ROUNDS} alternating rounds"
    );
    let base = med(&results[0], &|r| r.rps);
    for ((name, _), runs) in paths.iter().zip(&results) {
        let (lo, hi) = spread(runs);
        println!(
            "  {name:<24} {:>6.0} req/s (rounds {lo:.0}–{hi:.0}, {:.2}× one replica), p50 {:.2} ms; CPU µs/request: pdp A {:.0}, pdp B {:.0}, executors {:.0} + {:.0}, HAProxy {:.0}",
            med(runs, &|r| r.rps),
            med(runs, &|r| r.rps) / base,
            med(runs, &|r| r.p50),
            med(runs, &|r| r.cpu[0]),
            med(runs, &|r| r.cpu[1]),
            med(runs, &|r| r.cpu[2]),
            med(runs, &|r| r.cpu[3]),
            med(runs, &|r| r.cpu[4]),
        );
    }
    println!(
        "\nA transaction's query relayed to its owner, one request at a time (wrk -c1, 6 s rounds), medians of {ROUNDS}"
    );
    let local = med(&hops[0], &|r| r.p50);
    for ((name, _), runs) in hop_paths.iter().zip(&hops) {
        println!(
            "  {name:<26} p50 {:.3} ms, p99 {:.3} ms; CPU µs/request: pdp A {:.0}, pdp B {:.0}",
            med(runs, &|r| r.p50),
            med(runs, &|r| r.p99),
            med(runs, &|r| r.cpu[0]),
            med(runs, &|r| r.cpu[1])
        );
    }
    println!("  added by the relay: p50 +{:.3} ms", med(&hops[1], &|r| r.p50) - local);
    project.finish();
    Ok(())
}
