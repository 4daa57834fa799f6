//! `pdp engines fetch / list / path` against a real HTTP server on loopback standing in for Prisma's
//! engine host and the npm registry (`support::mirror`; its engines are fake shell scripts because the
//! real host is unreachable here). Covers verification, retries, locking across processes, the cache,
//! `--offline`, and the `PRISMA_*_ENGINE_BINARY` override rules. No test here touches the internet.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::mirror::{Fault, Mirror, fake_engine, sha256};
use crate::support::{Outcome, Project};

/// The engine commit the fake registry gives every version (deliberately not a real one).
const HASH: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba98";

struct Env {
    p: Project,
    mirror: Mirror,
    cache: PathBuf,
}

fn setup(prisma: &str) -> Env {
    let p = Project::new();
    p.init(&["--prisma", prisma]);
    let mirror = Mirror::start();
    mirror.npm(prisma, HASH);
    let cache = p.path(".engine-cache");
    Env { p, mirror, cache }
}

impl Env {
    fn pdp(&self) -> assert_cmd::Command {
        let mut cmd = self.p.pdp();
        cmd.env("PRISMA_ENGINES_MIRROR", self.mirror.url())
            .env("PDP_NPM_REGISTRY", self.mirror.url())
            .env("PDP_CACHE_DIR", &self.cache);
        cmd
    }

    fn run(&self, args: &[&str]) -> Outcome {
        self.p.run_with(self.pdp().args(args))
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut cmd = self.pdp();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.p.run_with(&mut cmd)
    }

    /// Publishes a runnable fake engine; returns (URL path of the .gz, content).
    fn publish(&self, target: &str, file: &str, prefix: &str, size: usize) -> (String, Vec<u8>) {
        let content = fake_engine(prefix, HASH, size);
        (self.mirror.engine(HASH, target, file, &content), content)
    }

    /// Publishes both 4.16 engines of `target`.
    fn publish_416(&self, target: &str) -> [(String, Vec<u8>); 2] {
        [
            self.publish(target, "query-engine", "query-engine", 200_000),
            self.publish(target, "migration-engine", "migration-engine-cli", 100_000),
        ]
    }

    fn cached(&self, target: &str, file: &str) -> PathBuf {
        self.cache.join("engines").join(HASH).join(target).join(file)
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o111 == 0o111).unwrap_or(false)
}

#[test]
fn fetches_several_targets_and_verifies_them() {
    let e = setup("4.16.2");
    let targets = ["linux-static-x64", "debian-openssl-3.0.x", "darwin-arm64"];
    let published: Vec<_> = targets.iter().map(|t| (t, e.publish_416(t))).collect();
    let out =
        e.run(&["engines", "fetch", "-t", targets[0], "--target", targets[1], "--target", targets[2]]).expect_code(0);
    assert!(out.stderr.contains(&format!("engine commit {HASH} (npm registry")), "{}", out.all());
    for (target, files) in &published {
        for (file, (gz, content)) in ["query-engine", "migration-engine"].iter().zip(files) {
            let path = e.cached(target, file);
            assert_eq!(&std::fs::read(&path).expect("cached file"), content, "{}", path.display());
            assert!(is_executable(&path), "{} must be executable", path.display());
            assert_eq!(e.mirror.hits(gz), 1, "{gz}");
            assert_eq!(e.mirror.hits(&format!("{gz}.sha256")), 1);
            let sidecar = std::fs::read_to_string(path.with_file_name(format!("{file}.sha256"))).expect("sidecar");
            assert!(sidecar.starts_with(&sha256(content)), "{sidecar}");
            assert!(out.stderr.contains(&path.display().to_string()), "{}", out.all());
        }
    }
    assert!(out.stderr.contains("downloaded"), "{}", out.all());
    // The hash is recorded for offline use.
    assert_eq!(std::fs::read_to_string(e.cache.join("engines/versions/4.16.2")).expect("record").trim(), HASH);

    let list = e.run(&["engines", "list", "--offline", "-t", targets[0], "-t", "linux-musl"]).expect_code(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(lines[0].starts_with("TARGET"), "{}", list.all());
    assert!(lines.iter().any(|l| l.starts_with("linux-static-x64") && l.contains("query ") && l.contains("cached")));
    assert!(lines.iter().any(|l| l.starts_with("linux-musl ") && l.contains("schema") && l.contains("missing")));

    let path = e.run(&["engines", "path", "schema", "--target", "darwin-arm64"]).expect_code(0);
    assert_eq!(path.stdout, format!("{}\n", e.cached("darwin-arm64", "migration-engine").display()));
}

#[test]
fn cache_hit_makes_no_request() {
    let e = setup("4.16.2");
    e.publish_416("linux-static-x64");
    e.run(&["engines", "fetch", "-t", "linux-static-x64"]).expect_code(0);
    let before = e.mirror.total_hits();
    let out = e.run(&["engines", "fetch", "-t", "linux-static-x64"]).expect_code(0);
    assert_eq!(e.mirror.total_hits(), before, "a cached fetch must not make any request\n{}", out.all());
    assert!(out.stderr.contains("cached"), "{}", out.all());
    assert!(out.stderr.contains("cached in"), "hash from the cache: {}", out.all());
    // --offline succeeds on a full cache too.
    e.run(&["engines", "fetch", "--offline", "-t", "linux-static-x64"]).expect_code(0);
    assert_eq!(e.mirror.total_hits(), before);
}

#[test]
fn checksum_mismatch_names_both_hashes_and_leaves_nothing() {
    let e = setup("4.16.2");
    let (gz, _) = e.publish("linux-static-x64", "query-engine", "query-engine", 50_000);
    let wrong = sha256(b"something else");
    e.mirror.put(&gz.replace(".gz", ".sha256"), format!("{wrong}  ./linux-static-x64/query-engine\n").into_bytes());
    let out = e.run(&["engines", "fetch", "-t", "linux-static-x64", "--engine", "query"]).expect_code(1);
    let actual = sha256(&fake_engine("query-engine", HASH, 50_000));
    assert!(
        out.stderr.contains("checksum mismatch for the unpacked query engine of `linux-static-x64`"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains(&format!("expected {wrong}, got {actual}")), "{}", out.all());
    assert!(out.stderr.contains(&format!("{}{gz}", e.mirror.url())), "names the URL: {}", out.all());
    // Nothing but the lock file is left where the engine would go.
    let dir = e.cached("linux-static-x64", "query-engine").parent().expect("dir").to_path_buf();
    assert_eq!(names_in(&dir), [".query-engine.lock"], "{}", out.all());
    // The gzip checksum is checked too.
    let (gz, _) = e.publish("linux-musl", "query-engine", "query-engine", 50_000);
    e.mirror.put(&format!("{gz}.sha256"), format!("{wrong}  x\n").into_bytes());
    let out = e.run(&["engines", "fetch", "-t", "linux-musl", "--engine", "query"]).expect_code(1);
    assert!(out.stderr.contains("checksum mismatch for the gzip query engine"), "{}", out.all());
    assert!(!e.cached("linux-musl", "query-engine").exists());
}

#[test]
fn download_cut_short_is_retried() {
    let e = setup("4.16.2");
    let (gz, content) = e.publish("linux-static-x64", "query-engine", "query-engine", 400_000);
    e.mirror.fault(&gz, Fault::CutShort(2));
    let out = e.run(&["engines", "fetch", "-t", "linux-static-x64", "--engine", "query"]).expect_code(0);
    assert_eq!(e.mirror.hits(&gz), 3, "two cut-short attempts, then a good one\n{}", out.all());
    assert!(out.stderr.contains("retrying"), "{}", out.all());
    assert!(out.stderr.contains("(3 attempts)"), "{}", out.all());
    assert_eq!(std::fs::read(e.cached("linux-static-x64", "query-engine")).expect("cached"), content);
}

#[test]
fn not_found_names_url_and_target() {
    let e = setup("4.16.2");
    let out = e.run(&["engines", "fetch", "-t", "rhel-openssl-1.0.x", "--engine", "schema"]).expect_code(2);
    let url = format!("{}/all_commits/{HASH}/rhel-openssl-1.0.x/migration-engine.gz.sha256", e.mirror.url());
    assert!(out.stderr.contains(&url), "{}", out.all());
    assert!(out.stderr.contains("no schema engine for `rhel-openssl-1.0.x`"), "{}", out.all());
    assert!(out.stderr.contains("hint: check the target name"), "{}", out.all());
}

#[test]
fn two_processes_download_each_file_once() {
    let e = setup("4.16.2");
    let files = e.publish_416("linux-static-x64");
    for (gz, _) in &files {
        // Slow enough (0.3–0.6 s per file) that both processes are surely running at once.
        e.mirror.fault(gz, Fault::Slow(Duration::from_millis(150)));
    }
    let outs: Vec<Outcome> = std::thread::scope(|s| {
        let a = s.spawn(|| e.run(&["engines", "fetch", "-t", "linux-static-x64"]));
        let b = s.spawn(|| e.run(&["engines", "fetch", "-t", "linux-static-x64"]));
        vec![a.join().expect("a"), b.join().expect("b")]
    });
    let outs: Vec<Outcome> = outs.into_iter().map(|o| o.expect_code(0)).collect();
    assert!(
        outs.iter().any(|o| o.stderr.contains("waiting for another pdp downloading it")),
        "the processes did not overlap:\n{}\n{}",
        outs[0].all(),
        outs[1].all()
    );
    for (gz, content) in &files {
        assert_eq!(e.mirror.hits(gz), 1, "{gz} downloaded once");
        let file = gz.rsplit('/').next().expect("name").trim_end_matches(".gz");
        assert_eq!(&std::fs::read(e.cached("linux-static-x64", file)).expect("cached"), content);
    }
}

#[test]
fn offline_miss_fails_clearly() {
    let e = setup("4.16.2");
    e.publish_416("linux-static-x64");
    let out = e.run(&["engines", "fetch", "--offline", "-t", "linux-static-x64"]).expect_code(2);
    assert!(out.stderr.contains("engine hash of Prisma 4.16.2 is not cached"), "{}", out.all());
    assert!(out.stderr.contains("--offline"), "{}", out.all());
    let out = e.run(&["engines", "fetch", "--offline", "--engine-hash", HASH, "-t", "linux-static-x64"]).expect_code(2);
    assert!(out.stderr.contains("the query engine for `linux-static-x64` is not in the cache"), "{}", out.all());
    assert!(out.stderr.contains("hint: run `pdp engines fetch --target linux-static-x64"), "{}", out.all());
    assert_eq!(e.mirror.total_hits(), 0, "--offline must not touch the network");
    let out = e.run(&["engines", "path", "query", "--engine-hash", HASH, "-t", "linux-static-x64"]).expect_code(2);
    assert!(out.stdout.is_empty(), "{}", out.all());
}

#[test]
fn engine_hash_flag_and_bad_values() {
    let e = setup("4.16.2");
    let content = fake_engine("query-engine", OTHER, 10_000);
    e.mirror.engine(OTHER, "linux-static-x64", "query-engine", &content);
    e.run(&["engines", "fetch", "--engine-hash", OTHER, "-t", "linux-static-x64", "--engine", "query"]).expect_code(0);
    assert_eq!(e.mirror.hits("/@prisma%2Fengines/4.16.2"), 0, "--engine-hash skips the registry");
    assert!(e.cache.join("engines").join(OTHER).join("linux-static-x64/query-engine").is_file());
    let out = e.run(&["engines", "fetch", "--engine-hash", "abc"]).expect_code(2);
    assert!(out.stderr.contains("`abc` is not an engine hash"), "{}", out.all());
    let out = e.run(&["engines", "fetch", "-t", "linux-static-x65"]).expect_code(2);
    assert!(out.stderr.contains("did you mean `linux-static-x64`?"), "{}", out.all());
}

#[test]
fn unpublished_version_is_a_user_error() {
    let e = setup("5.22.0");
    e.mirror.put("/@prisma%2Fengines/5.22.0", b"".to_vec());
    let p = Project::new();
    p.init(&["--prisma", "5.21.0"]);
    let out = p.run_with(
        p.pdp()
            .args(["engines", "fetch"])
            .env("PDP_NPM_REGISTRY", e.mirror.url())
            .env("PDP_CACHE_DIR", p.path("cache")),
    );
    let out = out.expect_code(2);
    assert!(out.stderr.contains("Prisma 5.21.0 is not published"), "{}", out.all());
    assert!(out.stderr.contains("/@prisma%2Fengines/5.21.0 answered 404"), "{}", out.all());
}

#[test]
fn prisma_7_has_no_query_engine() {
    let e = setup("7.10.1");
    let (gz, _) = e.publish("linux-static-x64", "schema-engine", "schema-engine-cli", 20_000);
    let out = e.run(&["engines", "fetch", "-t", "linux-static-x64", "--engine", "schema"]).expect_code(0);
    assert_eq!(e.mirror.hits(&gz), 1);
    assert!(!out.stderr.contains("query-engine"), "{}", out.all());
    // Without `--engine`, fetch also provisions what `pdp serve` runs for 7.x: the executor of this exact
    // version, which npm (here the loopback registry) does not have.
    let out = e.run(&["engines", "fetch", "-t", "linux-static-x64"]).expect_code(2);
    assert_eq!(e.mirror.hits(&gz), 1, "the cached schema engine is not downloaded again");
    assert!(out.stderr.contains("no query-plan executor for Prisma 7.10.1"), "{}", out.all());
    let out = e.run(&["engines", "fetch", "-t", "linux-static-x64", "--engine", "query"]).expect_code(2);
    assert!(out.stderr.contains("Prisma 7.10.1 has no query engine"), "{}", out.all());
}

#[test]
fn freebsd_has_no_prebuilt_engines() {
    let e = setup("5.22.0");
    let out = e.run(&["engines", "fetch", "-t", "freebsd14", "--engine", "schema"]).expect_code(2);
    assert!(out.stderr.contains("Prisma publishes no prebuilt engines for `freebsd14`"), "{}", out.all());
    assert!(out.stderr.contains("PRISMA_SCHEMA_ENGINE_BINARY"), "{}", out.all());
}

/// A script at `rel` in the project that prints `output` for `--version`.
fn script(p: &Project, rel: &str, output: &str) -> PathBuf {
    p.write(rel, &format!("#!/bin/sh\necho \"{output}\"\n"));
    let path = p.path(rel);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn override_with_a_custom_binary() {
    let e = setup("4.16.2");
    e.publish_416("linux-static-x64");
    let custom = script(&e.p, "bin/qe", &format!("query-engine {HASH}"));
    let env = [("PRISMA_QUERY_ENGINE_BINARY", "bin/qe")];
    let out = e.run_env(&["engines", "fetch", "-t", "linux-static-x64"], &env).expect_code(0);
    assert!(out.stderr.contains("from PRISMA_QUERY_ENGINE_BINARY=bin/qe"), "{}", out.all());
    let qe_gz = format!("/all_commits/{HASH}/linux-static-x64/query-engine.gz");
    assert_eq!(e.mirror.hits(&qe_gz), 0, "a set variable suppresses the download");
    assert!(e.cached("linux-static-x64", "migration-engine").is_file(), "the other engine is still fetched");
    let out = e.run_env(&["engines", "path", "query"], &env).expect_code(0);
    assert_eq!(out.stdout, format!("{}\n", custom.display()));
    let list = e.run_env(&["engines", "list", "-t", "linux-static-x64"], &env).expect_code(0);
    assert!(list.stdout.contains("PRISMA_QUERY_ENGINE_BINARY=bin/qe"), "{}", list.all());
}

#[test]
fn override_errors_name_the_variable() {
    let e = setup("4.16.2");
    // A path that does not exist.
    let out = e.run_env(&["engines", "path", "query"], &[("PRISMA_QUERY_ENGINE_BINARY", "nope/qe")]).expect_code(2);
    assert!(out.stderr.contains("PRISMA_QUERY_ENGINE_BINARY is set to"), "{}", out.all());
    assert!(out.stderr.contains("nope/qe`, which does not exist"), "{}", out.all());
    // A custom binary built from another commit.
    script(&e.p, "bin/old-qe", &format!("query-engine {OTHER}"));
    let out = e
        .run_env(
            &["engines", "fetch", "-t", "linux-static-x64", "--engine", "query"],
            &[("PRISMA_QUERY_ENGINE_BINARY", "bin/old-qe")],
        )
        .expect_code(2);
    assert!(
        out.stderr.contains(&format!("reports commit {OTHER}, but Prisma 4.16.2 needs engine commit {HASH}")),
        "{}",
        out.all()
    );
    // A custom binary that does not run on this machine.
    e.p.write("bin/arm-qe", "\u{7f}ELF not really");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(e.p.path("bin/arm-qe"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = e.run_env(&["engines", "path", "query"], &[("PRISMA_QUERY_ENGINE_BINARY", "bin/arm-qe")]).expect_code(2);
    assert!(out.stderr.contains("which does not run on this machine"), "{}", out.all());
    // An absolute path works the same way.
    let abs = e.p.path("bin/old-qe").display().to_string();
    let out = e.run_env(&["engines", "path", "query"], &[("PRISMA_QUERY_ENGINE_BINARY", &abs)]).expect_code(2);
    assert!(out.stderr.contains(&format!("reports commit {OTHER}")), "{}", out.all());
}

#[test]
fn pinned_target_that_does_not_run_falls_back_to_configured_targets() {
    let e = setup("4.16.2");
    // The pinned target's engine is not a program this machine runs (an ELF header and nothing else).
    let foreign = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".repeat(64);
    e.mirror.engine(HASH, "linux-musl-arm64-openssl-3.0.x", "query-engine", &foreign);
    e.publish_416("linux-static-x64");
    let toml = e.p.read("pdp.toml").replace("targets = [\"native\"]", "targets = [\"linux-static-x64\"]");
    e.p.write("pdp.toml", &toml);
    let env = [("PRISMA_QUERY_ENGINE_BINARY", "linux-musl-arm64-openssl-3.0.x")];
    let out = e.run_env(&["engines", "fetch"], &env).expect_code(0);
    assert!(out.stderr.contains("passed over linux-musl-arm64-openssl-3.0.x: does not run here"), "{}", out.all());
    let out = e.run_env(&["engines", "path", "query"], &env).expect_code(0);
    assert_eq!(out.stdout, format!("{}\n", e.cached("linux-static-x64", "query-engine").display()));

    // With no configured target that runs, it is an error listing what was tried.
    let toml =
        e.p.read("pdp.toml")
            .replace("targets = [\"linux-static-x64\"]", "targets = [\"linux-musl-arm64-openssl-3.0.x\"]");
    e.p.write("pdp.toml", &toml);
    let out = e.run_env(&["engines", "path", "query"], &env).expect_code(2);
    assert!(out.stderr.contains("no query engine of the pinned or configured targets runs"), "{}", out.all());
    assert!(out.stderr.contains("linux-musl-arm64-openssl-3.0.x: does not run here"), "{}", out.all());
}

#[test]
fn override_variables_follow_the_era() {
    // 5.x: PRISMA_MIGRATION_ENGINE_BINARY still works for the schema engine, with a deprecation warning.
    let e = setup("5.22.0");
    script(&e.p, "bin/se", &format!("schema-engine-cli {HASH}"));
    let out = e
        .run_env(
            &["engines", "fetch", "--engine", "schema", "-t", "linux-static-x64"],
            &[("PRISMA_MIGRATION_ENGINE_BINARY", "bin/se")],
        )
        .expect_code(0);
    assert!(out.stderr.contains("PRISMA_MIGRATION_ENGINE_BINARY is deprecated"), "{}", out.all());
    assert!(out.stderr.contains("use PRISMA_SCHEMA_ENGINE_BINARY"), "{}", out.all());
    assert_eq!(e.mirror.total_hits(), 2, "only the registry was asked: {}", out.all());

    // 4.16.2 does not know PRISMA_SCHEMA_ENGINE_BINARY: it downloads migration-engine regardless.
    let e = setup("4.16.2");
    let [_, (gz, _)] = e.publish_416("linux-static-x64");
    script(&e.p, "bin/se", &format!("schema-engine-cli {HASH}"));
    e.run_env(
        &["engines", "fetch", "--engine", "schema", "-t", "linux-static-x64"],
        &[("PRISMA_SCHEMA_ENGINE_BINARY", "bin/se")],
    )
    .expect_code(0);
    assert_eq!(e.mirror.hits(&gz), 1);
}

#[test]
fn http_proxy_is_used_unless_no_proxy_matches() {
    let e = setup("4.16.2");
    e.publish_416("linux-static-x64");
    // A second loopback server plays the proxy: it sees absolute-form requests and serves nothing.
    let proxy = Mirror::start();
    let args = ["engines", "fetch", "--engine-hash", HASH, "-t", "linux-static-x64"];
    let out = e.run_env(&args, &[("HTTP_PROXY", &proxy.url())]).expect_code(2);
    assert!(proxy.total_hits() > 0, "the proxy was not used\n{}", out.all());
    assert_eq!(e.mirror.total_hits(), 0, "{}", out.all());
    let before = proxy.total_hits();
    e.run_env(&args, &[("http_proxy", &proxy.url()), ("NO_PROXY", "127.0.0.1")]).expect_code(0);
    assert_eq!(proxy.total_hits(), before, "NO_PROXY must bypass the proxy");
}
