//! `cargo xtask bench engines`: four 20 MB engine files served from a loopback mirror, fetched by
//! `pdp engines fetch` (download, gunzip, both checksums, atomic rename) and by `curl --parallel` (download
//! only), side by side in one run, plus a fully cached `pdp engines fetch`. Prints times and the ratio.
//!
//! Not a timed test: nothing fails on a slow machine. The files are random bytes (incompressible, the worst
//! case for the gzip + hashing pdp does on top of curl); `gzip` and `sha256sum` prepare them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::bench::{median, run};

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";
const SIZE: usize = 20 * 1024 * 1024;
const ROUNDS: usize = 5;
const FILES: [(&str, &str); 4] = [
    ("linux-static-x64", "query-engine"),
    ("linux-static-x64", "migration-engine"),
    ("debian-openssl-3.0.x", "query-engine"),
    ("debian-openssl-3.0.x", "migration-engine"),
];

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256sum(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("cannot run sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Lays out the mirror under `dir` and loads every file into memory, keyed by URL path.
fn prepare(dir: &Path) -> anyhow::Result<HashMap<String, Arc<Vec<u8>>>> {
    let mut files = HashMap::new();
    for (i, (target, name)) in FILES.iter().enumerate() {
        let rel = format!("all_commits/{HASH}/{target}/{name}");
        let path = dir.join(&rel);
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        std::fs::write(&path, random_bytes(SIZE, 0x9e37_79b9_7f4a_7c15 + i as u64))?;
        run("gzip", Command::new("gzip").args(["-1", "-k", "-n", "-f"]).arg(&path))?;
        let gz = path.with_file_name(format!("{name}.gz"));
        let sums = [(format!("{rel}.sha256"), sha256sum(&path)?), (format!("{rel}.gz.sha256"), sha256sum(&gz)?)];
        for (key, sum) in sums {
            files.insert(format!("/{key}"), Arc::new(format!("{sum}  ./{target}/{name}\n").into_bytes()));
        }
        files.insert(format!("/{rel}.gz"), Arc::new(std::fs::read(&gz)?));
    }
    Ok(files)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the benchmark and prints the figures.
pub fn engines(root: &Path) -> anyhow::Result<()> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    run("cargo build --release -p pdp", super::cargo().args(["build", "--release", "--quiet", "-p", "pdp"]))?;
    let pdp = target_dir.join("release/pdp");

    let work = std::env::temp_dir().join(format!("pdp-bench-engines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    eprintln!("==> preparing 4 × 20 MB engine files in {}", work.display());
    let mirror = pdp_testkit::FileServer::start().context("cannot start the loopback mirror")?;
    for (path, body) in prepare(&work.join("mirror"))? {
        mirror.put(&path, body);
    }
    let base = mirror.url();

    let project = work.join("project");
    std::fs::create_dir_all(&project)?;
    run("pdp init", Command::new(&pdp).args(["init", "--yes", "--prisma", "4.16.2"]).current_dir(&project))?;
    let cache = work.join("cache");
    let fetch = || {
        let mut cmd = Command::new(&pdp);
        cmd.args(["engines", "fetch", "--engine-hash", HASH, "-t", "linux-static-x64", "-t", "debian-openssl-3.0.x"])
            .current_dir(&project)
            .env("PRISMA_ENGINES_MIRROR", &base)
            .env("PDP_CACHE_DIR", &cache)
            .env("PDP_NO_PROGRESS", "1");
        cmd
    };
    let curl_out = work.join("curl");
    std::fs::create_dir_all(&curl_out)?;
    let curl = || {
        let mut cmd = Command::new("curl");
        cmd.args(["--silent", "--fail", "--parallel", "--parallel-immediate"]);
        for (i, (target, name)) in FILES.iter().enumerate() {
            cmd.arg("-o").arg(curl_out.join(format!("{i}.gz")));
            cmd.arg(format!("{base}/all_commits/{HASH}/{target}/{name}.gz"));
        }
        cmd
    };

    let (mut pdp_cold, mut curl_times, mut pdp_cached) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let _ = std::fs::remove_dir_all(&cache);
        // Alternate the order so neither side always runs on a warmer machine.
        if round % 2 == 0 {
            pdp_cold.push(run("pdp engines fetch", &mut fetch())?);
            curl_times.push(run("curl", &mut curl())?);
        } else {
            curl_times.push(run("curl", &mut curl())?);
            pdp_cold.push(run("pdp engines fetch", &mut fetch())?);
        }
        pdp_cached.push(run("pdp engines fetch (cached)", &mut fetch())?);
    }
    let (cold, curl, cached) = (median(pdp_cold), median(curl_times), median(pdp_cached));
    println!("engines: 4 × 20 MB from a loopback mirror, median of {ROUNDS} rounds");
    println!("  pdp engines fetch (download + gunzip + 2 × sha256 + rename): {}", ms(cold));
    println!("  curl --parallel (download only):                             {}", ms(curl));
    println!("  ratio pdp / curl: {:.2}× (goal ≤ 1.3×)", cold.as_secs_f64() / curl.as_secs_f64());
    println!("  pdp engines fetch, everything cached:                        {} (goal < 50 ms)", ms(cached));
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
