//! pdp's build system (the cargo-xtask pattern): `cargo xtask test` runs every check with the services
//! the tests need, `cargo xtask demo` shows the main job on the embedded defaults. Plain std + anyhow so
//! it builds in seconds on a fresh machine; it is the one place allowed to spawn processes directly,
//! since it builds the tool that owns the process helper.

#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod bench_client;
mod bench_engines;
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
  demo       build pdp, then in a fresh directory: `pdp init --yes`, `pdp doctor`, `pdp config`, `pdp build-client`
  services   only make sure the databases the tests use are up
  bench build-client   no-op rebuild, and a full build vs the same `prisma generate` by hand
  bench migrate   200 migrations: pdp vs `psql -1 -f` on PostgreSQL, pdp vs `prisma migrate deploy` on SQLite
  bench engines   4 × 20 MB engines from a loopback mirror: pdp vs `curl --parallel`, and a fully cached fetch
  tidy       only the repository checks (also part of `cargo test`)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    std::env::set_current_dir(&root).context("cannot enter the project root")?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("demo") => demo(&root),
        Some("services") => services::ensure(),
        Some("bench") => match args.get(1).map(String::as_str) {
            Some("migrate") => bench::migrate(&root),
            Some("build-client") => bench_client::build_client(&root),
            Some("engines") => bench_engines::engines(&root),
            _ => bail!("usage: cargo xtask bench migrate|engines|build-client"),
        },
        Some("tidy") => tidy::run(&root).map(|()| println!("tidy: ok")),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
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
    step("rustfmt", cargo().args(["fmt", "--all", "--check"]))?;
    step("clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    step("tests", cargo().args(["test", "--workspace", "--locked"]).env("PDP_REQUIRE_SERVICES", "1"))?;
    eprintln!("\nall checks passed");
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

fn demo(root: &Path) -> anyhow::Result<()> {
    step("build pdp", cargo().args(["build", "--locked", "-p", "pdp"]))?;
    let pdp = root.join("target/debug/pdp");
    let dir = std::env::temp_dir().join(format!("pdp-demo-{}", std::process::id()));
    eprintln!("\n==> a fresh project in {}", dir.display());
    step("pdp init --yes", Command::new(&pdp).arg("init").arg("--yes").arg(&dir))?;
    eprintln!("\n--- {}/pdp.toml ---", dir.display());
    eprint!("{}", std::fs::read_to_string(dir.join("pdp.toml"))?);
    step("pdp doctor", Command::new(&pdp).arg("doctor").current_dir(&dir))?;
    step("pdp config", Command::new(&pdp).arg("config").current_dir(&dir))?;
    step(
        "pdp build-client (the Deno client, laid out for publishing; first run installs the Prisma CLI into pdp's cache)",
        Command::new(&pdp).arg("build-client").current_dir(&dir),
    )?;
    step(
        "pdp build-client (again: nothing changed, nothing to do)",
        Command::new(&pdp).arg("build-client").current_dir(&dir),
    )?;
    step("pdp init --yes (again: nothing to do)", Command::new(&pdp).args(["init", "--yes"]).current_dir(&dir))?;
    eprintln!("\ndemo project left in {} (delete it when done)", dir.display());
    Ok(())
}
