//! The Prisma generation table: what a Prisma version implies for client generation, wire protocol,
//! server-side engine and the offline `generate` recipe.
//!
//! This is the one place that knows how Prisma versions differ; every other crate asks
//! [`Generation::of`] instead of comparing version numbers itself. Pure data: no IO, no processes.

use std::fmt;
use std::str::FromStr;

/// The Prisma version new projects get from `pdp init`: the newest release that has all three parts pdp
/// needs to serve it — `prisma`, `@prisma/client` and `@prisma/query-plan-executor` of the same version
/// (a Prisma 7 client only works with the executor of its exact version). 7.10.1 shipped no executor.
pub const DEFAULT_PRISMA_VERSION: &str = "7.10.0";

/// A Prisma version pdp supports (always a full `MAJOR.MINOR.PATCH`, possibly with a pre-release tag).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrismaVersion(semver::Version);

/// Why a string is not a Prisma version pdp can work with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not `MAJOR.MINOR.PATCH`.
    #[error("`{input}` is not a Prisma version (expected MAJOR.MINOR.PATCH, e.g. `{DEFAULT_PRISMA_VERSION}`)")]
    Malformed {
        /// What the user wrote.
        input: String,
    },
    /// A real version outside the table below.
    #[error("Prisma {version} is not supported; pdp supports {}", supported_ranges())]
    Unsupported {
        /// The parsed version.
        version: String,
    },
}

impl PrismaVersion {
    /// The parsed semver version.
    pub fn semver(&self) -> &semver::Version {
        &self.0
    }

    /// The generation this version belongs to.
    pub fn generation(&self) -> &'static Generation {
        Generation::of(&self.0).expect("PrismaVersion is only constructed for supported versions")
    }

    /// Whether this version reads a schema from a folder of `.prisma` files: from 5.15 behind the
    /// `prismaSchemaFolder` preview feature, generally available from 6.7.
    pub fn schema_folder(&self) -> SchemaFolder {
        match (self.0.major, self.0.minor) {
            (major, minor) if (major, minor) >= (6, 7) => SchemaFolder::Stable,
            (major, minor) if (major, minor) >= (5, 15) => SchemaFolder::Preview,
            _ => SchemaFolder::Unsupported,
        }
    }

    /// Where Prisma Migrate looks for a folder schema's migrations by default: before 6.6 beside the folder
    /// (`prisma/schema` → `prisma/migrations`, read in 5.22.0 and 6.5.0's CLI), from 6.6 beside the file
    /// with the `datasource` block (`primaryDatasourceDirectory`, read in 6.6.0 and 6.19.0's CLI).
    pub fn folder_migrations_beside_folder(&self) -> bool {
        (self.0.major, self.0.minor) < (6, 6)
    }
}

/// What a version makes of a schema folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaFolder {
    /// One file only.
    Unsupported,
    /// Only with the `prismaSchemaFolder` preview feature.
    Preview,
    /// Always.
    Stable,
}

/// The preview feature 5.15–6.6 need for a schema folder.
pub const SCHEMA_FOLDER_PREVIEW: &str = "prismaSchemaFolder";

impl FromStr for PrismaVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let version = semver::Version::parse(trimmed).map_err(|_| VersionError::Malformed { input: s.to_owned() })?;
        if Generation::of(&version).is_none() {
            return Err(VersionError::Unsupported { version: version.to_string() });
        }
        Ok(PrismaVersion(version))
    }
}

impl fmt::Display for PrismaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How the Deno client is generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientGenerator {
    /// `prisma-client-js` with the `deno` preview feature, CLI run under Deno; output `deno/edge.ts`.
    JsDenoPreview,
    /// `prisma-client` with `runtime = "deno"`.
    PrismaClientDeno,
}

/// What the generated client speaks to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireProtocol {
    /// Data Proxy v1 (`/{clientVersion}/{schemaHash}/graphql`); GraphQL bodies unless `jsonProtocol`.
    Dp1GraphQl,
    /// Data Proxy v1 with JSON protocol bodies.
    Dp1Json,
    /// The query-plan executor protocol (`/query`, `/transaction/...`).
    Qpe,
}

/// What serves the queries behind the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerEngine {
    /// The native `query-engine` binary.
    QueryEngineBinary,
    /// `@prisma/query-plan-executor` of the client's exact version, run under Node.
    QueryPlanExecutor,
}

/// One row of the generation table.
#[derive(Debug)]
pub struct Generation {
    /// Short label, e.g. `"6.8–6.19"`.
    pub label: &'static str,
    /// Inclusive lower bound.
    pub from: (u64, u64),
    /// Inclusive upper bound (major, minor).
    pub to: (u64, u64),
    /// Client generator and runtime.
    pub generator: ClientGenerator,
    /// Extra flag for `prisma generate` (`--data-proxy`, `--no-engine`), if any.
    pub generate_flag: Option<&'static str>,
    /// Default wire protocol of generated clients.
    pub wire: WireProtocol,
    /// Server-side engine pdp runs for these clients.
    pub server_engine: ServerEngine,
    /// Name of the migration engine file in this era (`migration-engine` until 4.x).
    pub schema_engine_file: &'static str,
    /// Whether the engine commit of this era publishes a query engine.
    pub has_query_engine: bool,
    /// What the schema engine's `--version` prints before the commit (`migration-engine-cli <hash>`).
    pub schema_engine_cli: &'static str,
    /// Env vars that point the CLI at a custom schema engine, the current name first; later names are
    /// deprecated aliases (5.0 kept `PRISMA_MIGRATION_ENGINE_BINARY` working, with a warning).
    pub schema_engine_env: &'static [&'static str],
    /// The env var that points at a custom query-engine binary; `None` when the era has no query engine.
    pub query_engine_env: Option<&'static str>,
    /// Env vars that make `prisma generate` run offline when pointed at any existing file.
    pub offline_env: &'static [&'static str],
    /// Whether the generated schema's `datasource` block carries `url = env(...)`.
    pub datasource_url_in_schema: bool,
}

/// The schema engine's override variables from 5.0 on: the new name, then the deprecated 4.x name.
const SCHEMA_ENV: &[&str] = &["PRISMA_SCHEMA_ENGINE_BINARY", "PRISMA_MIGRATION_ENGINE_BINARY"];

/// The table. Ordered oldest first; ranges do not overlap and leave no gaps between 4.16 and 7.10.
pub static GENERATIONS: &[Generation] = &[
    Generation {
        label: "4.16",
        from: (4, 16),
        to: (4, 16),
        generator: ClientGenerator::JsDenoPreview,
        generate_flag: Some("--data-proxy"),
        wire: WireProtocol::Dp1GraphQl,
        server_engine: ServerEngine::QueryEngineBinary,
        schema_engine_file: "migration-engine",
        has_query_engine: true,
        schema_engine_cli: "migration-engine-cli",
        schema_engine_env: &["PRISMA_MIGRATION_ENGINE_BINARY"],
        query_engine_env: Some("PRISMA_QUERY_ENGINE_BINARY"),
        offline_env: &["PRISMA_MIGRATION_ENGINE_BINARY", "PRISMA_QUERY_ENGINE_LIBRARY"],
        datasource_url_in_schema: true,
    },
    Generation {
        label: "5.x",
        from: (5, 0),
        to: (5, 22),
        generator: ClientGenerator::JsDenoPreview,
        generate_flag: Some("--no-engine"),
        wire: WireProtocol::Dp1Json,
        server_engine: ServerEngine::QueryEngineBinary,
        schema_engine_file: "schema-engine",
        has_query_engine: true,
        schema_engine_cli: "schema-engine-cli",
        schema_engine_env: SCHEMA_ENV,
        query_engine_env: Some("PRISMA_QUERY_ENGINE_BINARY"),
        offline_env: &["PRISMA_SCHEMA_ENGINE_BINARY", "PRISMA_QUERY_ENGINE_LIBRARY"],
        datasource_url_in_schema: true,
    },
    Generation {
        label: "6.0–6.7",
        from: (6, 0),
        to: (6, 7),
        generator: ClientGenerator::JsDenoPreview,
        generate_flag: Some("--no-engine"),
        wire: WireProtocol::Dp1Json,
        server_engine: ServerEngine::QueryEngineBinary,
        schema_engine_file: "schema-engine",
        has_query_engine: true,
        schema_engine_cli: "schema-engine-cli",
        schema_engine_env: SCHEMA_ENV,
        query_engine_env: Some("PRISMA_QUERY_ENGINE_BINARY"),
        offline_env: &["PRISMA_SCHEMA_ENGINE_BINARY", "PRISMA_QUERY_ENGINE_LIBRARY"],
        datasource_url_in_schema: true,
    },
    Generation {
        label: "6.8–6.19",
        from: (6, 8),
        to: (6, 19),
        generator: ClientGenerator::PrismaClientDeno,
        generate_flag: Some("--no-engine"),
        wire: WireProtocol::Dp1Json,
        server_engine: ServerEngine::QueryEngineBinary,
        schema_engine_file: "schema-engine",
        has_query_engine: true,
        schema_engine_cli: "schema-engine-cli",
        schema_engine_env: SCHEMA_ENV,
        query_engine_env: Some("PRISMA_QUERY_ENGINE_BINARY"),
        offline_env: &["PRISMA_SCHEMA_ENGINE_BINARY", "PRISMA_QUERY_ENGINE_LIBRARY"],
        datasource_url_in_schema: true,
    },
    Generation {
        label: "7.x",
        from: (7, 0),
        to: (7, 10),
        generator: ClientGenerator::PrismaClientDeno,
        generate_flag: None,
        wire: WireProtocol::Qpe,
        server_engine: ServerEngine::QueryPlanExecutor,
        schema_engine_file: "schema-engine",
        has_query_engine: false,
        schema_engine_cli: "schema-engine-cli",
        schema_engine_env: SCHEMA_ENV,
        query_engine_env: None,
        offline_env: &["PRISMA_SCHEMA_ENGINE_BINARY"],
        datasource_url_in_schema: false,
    },
];

impl Generation {
    /// The row for `version`, or `None` when pdp does not support it.
    pub fn of(version: &semver::Version) -> Option<&'static Generation> {
        let key = (version.major, version.minor);
        GENERATIONS.iter().find(|g| g.from <= key && key <= g.to)
    }

    /// Whether the 4.x GraphQL default applies (clients switch to JSON with the `jsonProtocol` preview).
    pub fn defaults_to_graphql(&self) -> bool {
        self.wire == WireProtocol::Dp1GraphQl
    }
}

/// Human list of the supported ranges, e.g. `4.16.x, 5.0–5.22, …`.
pub fn supported_ranges() -> String {
    GENERATIONS
        .iter()
        .map(|g| {
            if g.from == g.to {
                format!("{}.{}.x", g.from.0, g.from.1)
            } else {
                format!("{}.{}.x–{}.{}.x", g.from.0, g.from.1, g.to.0, g.to.1)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let got = match input.parse::<PrismaVersion>() {
            Ok(v) => format!("{} -> {}", v, v.generation().label),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expect, "input: {input}");
    }

    #[test]
    fn versions_map_to_generations() {
        check("4.16.2", "4.16.2 -> 4.16");
        check("5.0.0", "5.0.0 -> 5.x");
        check("5.22.0", "5.22.0 -> 5.x");
        check("6.7.0", "6.7.0 -> 6.0–6.7");
        check("6.8.0", "6.8.0 -> 6.8–6.19");
        check("6.19.3", "6.19.3 -> 6.8–6.19");
        check("7.0.0", "7.0.0 -> 7.x");
        check(DEFAULT_PRISMA_VERSION, "7.10.0 -> 7.x");
        check(" 7.2.0 ", "7.2.0 -> 7.x");
        check("7.3.0-dev.12", "7.3.0-dev.12 -> 7.x");
    }

    #[test]
    fn schema_folders_by_version() {
        let of = |v: &str| {
            let v: PrismaVersion = v.parse().expect("supported");
            (v.schema_folder(), v.folder_migrations_beside_folder())
        };
        assert_eq!(of("4.16.2"), (SchemaFolder::Unsupported, true));
        assert_eq!(of("5.14.0"), (SchemaFolder::Unsupported, true));
        assert_eq!(of("5.15.0"), (SchemaFolder::Preview, true));
        assert_eq!(of("6.5.0"), (SchemaFolder::Preview, true));
        assert_eq!(of("6.6.0"), (SchemaFolder::Preview, false));
        assert_eq!(of("6.7.0"), (SchemaFolder::Stable, false));
        assert_eq!(of("7.10.0"), (SchemaFolder::Stable, false));
    }

    #[test]
    fn unsupported_versions_list_the_range() {
        let all = "4.16.x, 5.0.x–5.22.x, 6.0.x–6.7.x, 6.8.x–6.19.x, 7.0.x–7.10.x";
        check("4.15.0", &format!("Prisma 4.15.0 is not supported; pdp supports {all}"));
        check("7.11.0", &format!("Prisma 7.11.0 is not supported; pdp supports {all}"));
        check("3.0.0", &format!("Prisma 3.0.0 is not supported; pdp supports {all}"));
        check("latest", "`latest` is not a Prisma version (expected MAJOR.MINOR.PATCH, e.g. `7.10.0`)");
        check("7.10", "`7.10` is not a Prisma version (expected MAJOR.MINOR.PATCH, e.g. `7.10.0`)");
    }

    #[test]
    fn engine_columns_agree() {
        for g in GENERATIONS {
            assert_eq!(g.query_engine_env.is_some(), g.has_query_engine, "{}", g.label);
            assert_eq!(g.schema_engine_cli, format!("{}-cli", g.schema_engine_file), "{}", g.label);
            assert!(
                g.schema_engine_env[0].contains(&g.schema_engine_file.replace("-engine", "").to_uppercase()),
                "{}",
                g.label
            );
        }
    }

    #[test]
    fn table_has_no_gaps_between_rows() {
        for pair in GENERATIONS.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let next = if b.from.0 == a.to.0 { (a.to.0, a.to.1 + 1) } else { (b.from.0, 0) };
            assert_eq!(b.from, next, "gap or overlap between {} and {}", a.label, b.label);
        }
    }
}
