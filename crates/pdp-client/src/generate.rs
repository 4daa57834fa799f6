//! The `prisma generate` recipe per generation, as data: which npm packages to provision, whether the CLI
//! runs under Deno, its arguments, the offline environment (engines.md §0.8), and how to tell Prisma's
//! schema errors from other failures. Read from the generation table; no version comparisons here.
//!
//! Deliberately not here: running anything (the binary does, through `pdp_toolchain::process::Cmd`).

use pdp_config::prisma::{ClientGenerator, WireProtocol};
use pdp_config::{Generation, PrismaVersion};

/// The Deno release pdp installs from npm to run the 4.x–6.7 CLI under (the lab used it for 4.16.2 and 5.22.0).
pub const DENO_VERSION: &str = "2.9.6";

/// The npm package specs installed together as the `prisma@<version>` tool: the CLI, and the
/// `@prisma/client` its generator loads (4.x–6.7; without it the CLI runs `npm install` in the project) and
/// whose runtime the 6.8+ client imports. Some CLI patch releases have no `@prisma/client` of the same
/// number (7.10.1 has none; the newest client is 7.10.0), so the client is the newest of the same
/// `major.minor` not newer than the CLI.
pub fn prisma_packages(version: &PrismaVersion) -> Vec<String> {
    let v = version.semver();
    vec![format!("prisma@{v}"), format!("@prisma/client@>={}.{}.0 <={v}", v.major, v.minor)]
}

/// Whether the CLI must run under Deno (Prisma writes `deno/edge.ts` only then).
pub fn runs_under_deno(generation: &Generation) -> bool {
    generation.generator == ClientGenerator::JsDenoPreview
}

/// `generate` arguments after the CLI's entry script.
pub fn args(generation: &Generation, schema: &str) -> Vec<String> {
    let mut args = vec!["generate".to_owned()];
    args.extend(generation.generate_flag.map(str::to_owned));
    args.push(format!("--schema={schema}"));
    args
}

/// The environment that keeps `generate` offline: every engine variable of the generation's recipe points
/// at `dummy` (any existing file), the engine mirror at `mirror` (a closed loopback port, so a download
/// attempt fails at once instead of reaching the internet), and Prisma's update check and auto-install off.
pub fn offline_env(generation: &Generation, dummy: &str, mirror: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        generation.offline_env.iter().map(|name| ((*name).to_owned(), dummy.to_owned())).collect();
    env.extend(
        [
            ("PRISMA_ENGINES_MIRROR", mirror),
            ("PRISMA_HIDE_UPDATE_MESSAGE", "1"),
            ("CHECKPOINT_DISABLE", "1"),
            ("PRISMA_GENERATE_SKIP_AUTOINSTALL", "1"),
            ("PRISMA_SKIP_POSTINSTALL_GENERATE", "1"),
            ("DENO_NO_UPDATE_CHECK", "1"),
            ("NO_COLOR", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

/// Whether Prisma's output says the schema is wrong (a user error) rather than the tool failing.
pub fn is_schema_error(output: &str) -> bool {
    [
        "P1012",
        "Prisma schema validation",
        "Schema parsing",
        "Error validating",
        "error: Error parsing attribute",
        "Get config: Schema Parsing",
        "Schema validation error",
    ]
    .iter()
    .any(|needle| output.contains(needle))
}

/// The wire protocol a generated client speaks: the generation's default, except that 4.x clients
/// switch from GraphQL to JSON with the `jsonProtocol` preview feature.
pub fn wire_protocol(generation: &Generation, preview_features: &[String]) -> WireProtocol {
    if generation.defaults_to_graphql() && preview_features.iter().any(|f| f.eq_ignore_ascii_case("jsonProtocol")) {
        WireProtocol::Dp1Json
    } else {
        generation.wire
    }
}

/// The manifest's name of a wire protocol.
pub fn wire_name(wire: WireProtocol) -> &'static str {
    match wire {
        WireProtocol::Dp1GraphQl => "dp1-graphql",
        WireProtocol::Dp1Json => "dp1-json",
        WireProtocol::Qpe => "qpe",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(version: &str, features: &[&str], expect: &str) {
        let v: PrismaVersion = version.parse().expect("version");
        let g = v.generation();
        let features: Vec<String> = features.iter().map(|s| (*s).to_owned()).collect();
        let env: Vec<String> =
            offline_env(g, "/d", "http://127.0.0.1:9").into_iter().take(g.offline_env.len()).map(|(k, _)| k).collect();
        let got = format!(
            "packages {:?} deno {} args {:?} env {:?} wire {}",
            prisma_packages(&v),
            runs_under_deno(g),
            args(g, "s.prisma"),
            env,
            wire_name(wire_protocol(g, &features)),
        );
        assert_eq!(got, expect, "version {version}");
    }

    #[test]
    fn recipes() {
        check(
            "4.16.2",
            &["jsonProtocol"],
            r#"packages ["prisma@4.16.2", "@prisma/client@>=4.16.0 <=4.16.2"] deno true args ["generate", "--data-proxy", "--schema=s.prisma"] env ["PRISMA_MIGRATION_ENGINE_BINARY", "PRISMA_QUERY_ENGINE_LIBRARY"] wire dp1-json"#,
        );
        check(
            "4.16.2",
            &[],
            r#"packages ["prisma@4.16.2", "@prisma/client@>=4.16.0 <=4.16.2"] deno true args ["generate", "--data-proxy", "--schema=s.prisma"] env ["PRISMA_MIGRATION_ENGINE_BINARY", "PRISMA_QUERY_ENGINE_LIBRARY"] wire dp1-graphql"#,
        );
        check(
            "5.22.0",
            &[],
            r#"packages ["prisma@5.22.0", "@prisma/client@>=5.22.0 <=5.22.0"] deno true args ["generate", "--no-engine", "--schema=s.prisma"] env ["PRISMA_SCHEMA_ENGINE_BINARY", "PRISMA_QUERY_ENGINE_LIBRARY"] wire dp1-json"#,
        );
        check(
            "7.10.1",
            &[],
            r#"packages ["prisma@7.10.1", "@prisma/client@>=7.10.0 <=7.10.1"] deno false args ["generate", "--schema=s.prisma"] env ["PRISMA_SCHEMA_ENGINE_BINARY"] wire qpe"#,
        );
    }

    #[test]
    fn schema_errors_are_recognised() {
        assert!(is_schema_error("Error: Prisma schema validation - (get-config wasm)\nError code: P1012"));
        assert!(is_schema_error("error: Error validating model \"User\": ..."));
        assert!(!is_schema_error("Error: spawn deno ENOENT"));
    }
}
