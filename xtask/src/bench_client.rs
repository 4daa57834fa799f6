//! `cargo xtask bench build-client`: for Prisma 7.10.0 and 4.16.2, the no-op rebuild, and a full
//! `pdp build-client --force` beside the same `prisma generate` run by hand (same CLI from pdp's tool cache,
//! same patched schema, same offline environment) — pdp's overhead on top. Tool installs are excluded: a
//! first build warms the cache. Medians of several rounds from one run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::bench::{median, run};

const MODELS: &str = "model User {\n  id    Int     @id @default(autoincrement())\n  email String  @unique\n  name  String?\n  posts Post[]\n}\n\nmodel Post {\n  id        Int      @id @default(autoincrement())\n  title     String\n  published Boolean  @default(false)\n  author    User     @relation(fields: [authorId], references: [id])\n  authorId  Int\n}\n";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The deno binary inside pdp's cached `deno` tool (`node_modules/@deno/<platform>/deno`).
fn deno_in(cache: &Path) -> anyhow::Result<PathBuf> {
    let scope = std::fs::read_dir(cache.join("tools/deno@2.9.6/node_modules/@deno")).context("deno tool not cached")?;
    for entry in scope.flatten() {
        let candidate = entry.path().join("deno");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("no deno binary in pdp's cache")
}

/// `cargo xtask bench build-client`.
pub fn build_client(root: &Path) -> anyhow::Result<()> {
    crate::step("build pdp (release)", crate::cargo().args(["build", "--release", "--locked", "-p", "pdp"]))?;
    let pdp = root.join("target/release/pdp");
    let work = std::env::temp_dir().join(format!("pdp-bench-client-{}", std::process::id()));
    let cache = work.join("cache");
    let mut report = Vec::new();
    for version in ["7.10.0", "4.16.2"] {
        let seven = version.starts_with('7');
        let project = work.join(format!("p{version}"));
        std::fs::create_dir_all(project.join("prisma"))?;
        std::fs::write(project.join("pdp.toml"), format!("[prisma]\nversion = \"{version}\"\n"))?;
        let (user_generator, datasource) = if seven {
            (
                "generator client {\n  provider = \"prisma-client\"\n  output   = \"../generated\"\n}\n",
                "datasource db {\n  provider = \"postgresql\"\n}\n",
            )
        } else {
            (
                "generator client {\n  provider = \"prisma-client-js\"\n}\n",
                "datasource db {\n  provider = \"postgresql\"\n  url      = env(\"DATABASE_URL\")\n}\n",
            )
        };
        std::fs::write(project.join("prisma/schema.prisma"), format!("{user_generator}\n{datasource}\n{MODELS}"))?;
        let pdp_cmd = |extra: &[&str]| {
            let mut c = Command::new(&pdp);
            c.args(["-q", "build-client"]).args(extra).current_dir(&project).env("PDP_CACHE_DIR", &cache);
            c
        };
        eprintln!("==> Prisma {version}: first build (installs tools into the cache; not timed)");
        run("pdp build-client (warm-up)", &mut pdp_cmd(&[]))?;
        let noop =
            median((0..5).map(|_| run("pdp build-client (no-op)", &mut pdp_cmd(&[]))).collect::<anyhow::Result<_>>()?);

        // The same generate by hand: the cached CLI, the patched schema pdp would write, the offline env.
        let hand = work.join(format!("hand{version}"));
        std::fs::create_dir_all(&hand)?;
        let tool = cache.join(format!("tools/prisma@{version}/node_modules"));
        let _ = std::fs::remove_file(hand.join("node_modules"));
        std::os::unix::fs::symlink(&tool, hand.join("node_modules"))?;
        std::fs::write(hand.join("no-engine"), "")?;
        let generator = if seven {
            "generator client {\n  provider = \"prisma-client\"\n  output   = \"./generated\"\n  runtime  = \"deno\"\n}\n"
        } else {
            "generator client {\n  provider        = \"prisma-client-js\"\n  previewFeatures = [\"deno\"]\n  output          = \"./generated\"\n}\n"
        };
        std::fs::write(hand.join("schema.prisma"), format!("{generator}\n{datasource}\n{MODELS}"))?;
        let entry = std::fs::canonicalize(tool.join("prisma/build/index.js"))?;
        let by_hand = || -> anyhow::Result<Duration> {
            let _ = std::fs::remove_dir_all(hand.join("generated"));
            let mut c = if seven {
                let mut c = Command::new("node");
                c.arg(&entry)
                    .args(["generate", "--schema=schema.prisma"])
                    .env("PRISMA_SCHEMA_ENGINE_BINARY", hand.join("no-engine"));
                c
            } else {
                let mut c = Command::new(deno_in(&cache)?);
                c.args(["run", "-A"]).arg(&entry).args(["generate", "--data-proxy", "--schema=schema.prisma"]);
                c.env("PRISMA_MIGRATION_ENGINE_BINARY", hand.join("no-engine"))
                    .env("PRISMA_QUERY_ENGINE_LIBRARY", hand.join("no-engine"));
                c
            };
            c.current_dir(&hand)
                .env("PRISMA_ENGINES_MIRROR", "http://127.0.0.1:9")
                .env("PRISMA_HIDE_UPDATE_MESSAGE", "1")
                .env("CHECKPOINT_DISABLE", "1")
                .env("PRISMA_GENERATE_SKIP_AUTOINSTALL", "1")
                .env("DENO_NO_UPDATE_CHECK", "1")
                .env("NO_COLOR", "1");
            run("prisma generate by hand", &mut c)
        };
        let (mut full, mut hand_t) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            full.push(run("pdp build-client --force", &mut pdp_cmd(&["--force"]))?);
            hand_t.push(by_hand()?);
        }
        let (f, h) = (median(full), median(hand_t));
        report.push(format!(
            "Prisma {version:<7} no-op {:>6.1} ms (target < 100 ms)   full build {:>7.1} ms vs prisma generate by hand {:>7.1} ms: overhead {:+.1}% (target <= 10%)",
            ms(noop),
            ms(f),
            ms(h),
            (f.as_secs_f64() / h.as_secs_f64() - 1.0) * 100.0
        ));
    }
    let _ = std::fs::remove_dir_all(&work);
    println!("\nbuild-client benchmark (medians, release build, tools cached)");
    for line in report {
        println!("{line}");
    }
    Ok(())
}
