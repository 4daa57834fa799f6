//! `pdp build-client` end to end with real tools: Prisma 4.16.2 (under Deno) and 7.10.1 from the npm
//! registry, installed by pdp's own provisioning into one tool cache shared by these tests (safe because
//! the cache is locked and atomic), `deno check` on the results, a URL import from a loopback file server,
//! schema errors, and the incremental no-op. Deliberately no test doubles and no skips: a missing tool fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Outcome, Project};

/// The tool cache every test here shares, so each npm package is downloaded once per machine.
fn tool_cache() -> PathBuf {
    std::env::temp_dir().join("pdp-test-tool-cache")
}

fn build(p: &Project, extra: &[&str]) -> Outcome {
    let mut args = vec!["build-client"];
    args.extend_from_slice(extra);
    p.run_with(p.pdp().env("PDP_CACHE_DIR", tool_cache()).args(&args))
}

/// A project at `prisma` with the sample schema.
fn project(prisma: &str) -> Project {
    let p = Project::new();
    p.init(&["--prisma", prisma]);
    p
}

/// Runs deno with its own cache under `dir`; asserts success and returns stdout + stderr.
fn run_deno(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(crate::support::serve::deno())
        .args(args)
        .current_dir(dir)
        .env("DENO_DIR", dir.join(".deno-dir"))
        .env("NO_COLOR", "1")
        .env("DENO_NO_UPDATE_CHECK", "1")
        .output()
        .expect("deno runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "deno {args:?} failed:\n{text}");
    text
}

fn manifest(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.read("dist/client/0.1.0/manifest.json")).expect("manifest is JSON")
}

/// No `.pdp-build-…`, `.pdp-staging-…` or `.pdp-old-…` left next to the output.
fn assert_no_leftovers(p: &Project) {
    let names: Vec<String> = std::fs::read_dir(p.path("dist/client"))
        .expect("out exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["0.1.0"], "leftovers in dist/client");
}

#[test]
fn prisma_4_16_client_passes_deno_check_and_rebuilds_only_when_needed() {
    let p = project("4.16.2");
    let out = build(&p, &[]).expect_code(0);
    assert!(out.stdout.contains("/dist/client/0.1.0/edge.ts\";"), "{}", out.all());
    assert_no_leftovers(&p);
    let m = manifest(&p);
    assert_eq!(m["prisma-version"], "4.16.2");
    assert_eq!(m["generator"], "prisma-client-js");
    assert_eq!(m["wire-protocol"], "dp1-graphql");
    assert_eq!(m["entry"], "edge.ts");
    assert_eq!(m["inline-schema-hash"].as_str().map(str::len), Some(64));
    for f in ["edge.ts", "edge.js", "polyfill.js", "index.d.ts", "runtime/edge-esm.js"] {
        assert!(p.path(&format!("dist/client/0.1.0/{f}")).is_file(), "{f} missing");
    }
    // Node-only files Prisma also writes are not published.
    assert!(!p.path("dist/client/0.1.0/index.js").exists());
    assert!(p.read("dist/client/0.1.0/edge.js").contains("from './runtime/edge-esm.js'"));
    run_deno(&p.path("dist/client/0.1.0"), &["check", "edge.ts"]);

    // Unchanged: a no-op, well under a second, output untouched.
    let before = p.read("dist/client/0.1.0/manifest.json");
    let started = Instant::now();
    let again = build(&p, &[]).expect_code(0);
    let took = started.elapsed();
    assert!(again.stderr.contains("up to date"), "{}", again.all());
    assert!(took < Duration::from_secs(1), "no-op took {took:?}");
    assert_eq!(p.read("dist/client/0.1.0/manifest.json"), before);

    // A schema change rebuilds; --force rebuilds without one.
    let schema = p.read("prisma/schema.prisma").replace("name  String?", "name  String?\n  bio   String?");
    p.write("prisma/schema.prisma", &schema);
    let rebuilt = build(&p, &[]).expect_code(0);
    assert!(rebuilt.stderr.contains("Built"), "{}", rebuilt.all());
    assert!(p.read("dist/client/0.1.0/index.d.ts").contains("bio"), "the new field is in the client");
    assert_ne!(p.read("dist/client/0.1.0/manifest.json"), before);
    let forced = build(&p, &["--force"]).expect_code(0);
    assert!(forced.stderr.contains("Built"), "{}", forced.all());
    assert_no_leftovers(&p);
}

#[test]
fn prisma_4_16_keeps_json_protocol_and_drops_metrics() {
    let p = project("4.16.2");
    let schema = p.read("prisma/schema.prisma").replace(
        "  provider = \"prisma-client-js\"\n",
        "  provider = \"prisma-client-js\"\n  // the server schema enables these\n  previewFeatures = [\n    \"metrics\", // not on the edge\n    \"jsonProtocol\"\n  ]\n",
    );
    assert!(schema.contains("\"metrics\", // not on the edge"), "the sample schema changed:\n{schema}");
    p.write("prisma/schema.prisma", &schema);
    let out = build(&p, &[]).expect_code(0);
    assert!(out.stderr.contains("`metrics` is left out"), "{}", out.all());
    let edge = p.read("dist/client/0.1.0/edge.js");
    let features = &edge[edge.find("\"previewFeatures\"").expect("previewFeatures in the config")..];
    let features = &features[..features.find(']').expect("array end")];
    assert!(features.contains("\"jsonProtocol\""), "{features}");
    assert!(features.contains("\"deno\""), "{features}");
    assert!(!features.contains("metrics"), "{features}");
    assert!(edge.contains("config.edgeClientProtocol = \"json\""), "the client speaks JSON");
    let m = manifest(&p);
    assert_eq!(m["wire-protocol"], "dp1-json");
    assert_eq!(m["preview-features"], serde_json::json!(["jsonProtocol", "deno"]));
    // The project's own schema is never modified.
    assert_eq!(p.read("prisma/schema.prisma"), schema);
}

#[test]
fn prisma_7_client_is_importable_from_a_url_without_an_import_map() {
    let p = project("7.10.1");
    let out = build(&p, &[]).expect_code(0);
    assert!(out.stdout.contains("/dist/client/0.1.0/client.ts\";"), "{}", out.all());
    let m = manifest(&p);
    assert_eq!(m["prisma-version"], "7.10.1");
    assert_eq!(m["generator"], "prisma-client");
    assert_eq!(m["wire-protocol"], "qpe");
    let runtime = m["prisma-client-version"].as_str().expect("runtime version").to_owned();
    let client = p.read("dist/client/0.1.0/internal/class.ts");
    assert!(client.contains(&format!("npm:@prisma/client@{runtime}/runtime/client")), "{client}");
    assert!(!client.contains("\"@prisma/client/"), "no bare specifier is left");
    run_deno(&p.path("dist/client/0.1.0"), &["check", "client.ts"]);

    let files = pdp_testkit::FileServer::serve_dir(p.path("dist/client")).expect("start a file server");
    let port = files.port();
    p.write(
        "use.ts",
        &format!(
            "import {{ PrismaClient }} from \"http://127.0.0.1:{port}/0.1.0/client.ts\";\n\
             const prisma = new PrismaClient({{ accelerateUrl: \"prisma://localhost:4466/?api_key=test\" }});\n\
             console.log(\"constructed:\", typeof prisma.user.findMany);\n"
        ),
    );
    let text = run_deno(p.root(), &["run", "-A", "--no-config", "use.ts"]);
    assert!(text.contains("constructed: function"), "{text}");

    // The printed import line uses `[client] base-url` when set.
    let config = p
        .read("pdp.toml")
        .replace("version = \"0.1.0\"\n", "version = \"0.1.0\"\nbase-url = \"https://cdn.example.com/c\"\n");
    p.write("pdp.toml", &config);
    let again = build(&p, &[]).expect_code(0);
    assert!(
        again.stdout.contains("import { PrismaClient } from \"https://cdn.example.com/c/0.1.0/client.ts\";"),
        "{}",
        again.all()
    );
}

#[test]
fn a_broken_schema_fails_with_prismas_message_and_keeps_the_previous_output() {
    let p = project("7.10.1");
    build(&p, &[]).expect_code(0);
    let before = p.read("dist/client/0.1.0/manifest.json");
    let client_before = p.read("dist/client/0.1.0/client.ts");
    let schema = p.read("prisma/schema.prisma").replace("email String  @unique", "email Strin @unique");
    p.write("prisma/schema.prisma", &schema);
    let out = build(&p, &[]).expect_code(2);
    assert!(out.stderr.contains("rejected the schema"), "{}", out.all());
    assert!(out.stderr.contains("P1012"), "Prisma's own code: {}", out.all());
    assert!(out.stderr.contains("Type \"Strin\" is neither a built-in type"), "Prisma's message: {}", out.all());
    // Prisma names the user's file and line, not the patched build copy's.
    let line = schema.lines().position(|l| l.contains("email Strin")).expect("the broken line") + 1;
    assert!(out.stderr.contains(&format!("-->  prisma/schema.prisma:{line}")), "line {line}: {}", out.all());
    assert!(out.stderr.contains(&format!("{line} |   email Strin @unique")), "line {line}: {}", out.all());
    assert!(out.stderr.contains("hint:"), "{}", out.all());
    // With --verbose, the exact command that failed is in the log.
    let verbose = build(&p, &["--verbose"]).expect_code(2);
    assert!(
        verbose.stderr.contains("prisma/build/index.js generate") && verbose.stderr.contains("--schema=schema.prisma"),
        "{}",
        verbose.all()
    );
    assert_eq!(p.read("dist/client/0.1.0/manifest.json"), before);
    assert_eq!(p.read("dist/client/0.1.0/client.ts"), client_before);
    assert_no_leftovers(&p);
}

#[test]
fn flags_override_the_folder_and_reject_bad_versions() {
    let p = project("7.10.1");
    let out = build(&p, &["--out", "public", "--version", "2.0.0"]).expect_code(0);
    assert!(p.path("public/2.0.0/client.ts").is_file(), "{}", out.all());
    assert!(p.path("public/2.0.0/manifest.json").is_file());
    let bad = build(&p, &["--version", "../x"]).expect_code(2);
    assert!(bad.stderr.contains("cannot be the client's folder name"), "{}", bad.all());
}
