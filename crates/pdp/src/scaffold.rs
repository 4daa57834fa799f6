//! Renders `templates/` (embedded in the binary) into the files `pdp init` writes, in memory.
//!
//! Rendering is strict (an undefined variable is an error) and pure: this module decides contents, never
//! touches the disk; `commands/init.rs` compares and writes.

use include_dir::{Dir, include_dir};
use minijinja::{Environment, UndefinedBehavior};
use pdp_config::Provider;
use pdp_config::prisma::{ClientGenerator, PrismaVersion, ServerEngine, WireProtocol};
use serde::Serialize;

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../templates");

/// The answers `init` collected, from flags, prompts, an existing project or defaults.
#[derive(Clone, Debug)]
pub struct Answers {
    /// `[prisma] version`.
    pub prisma: PrismaVersion,
    /// Datasource provider.
    pub provider: Provider,
    /// `[prisma] schema`, relative to the project: the sample's `prisma/schema.prisma` or an adopted
    /// schema's file or folder.
    pub schema_path: String,
    /// `[prisma] migrations` when it is known; `None` leaves it to Prisma Migrate's default.
    pub migrations_path: Option<String>,
    /// What goes into `[database] url`; `None` means the embedded database.
    pub database_url: Option<String>,
    /// `[client] base-url`.
    pub client_base_url: Option<String>,
    /// `[serve] listen`.
    pub listen: String,
    /// Whether to write the example script.
    pub example: bool,
    /// Whether to write the GitHub workflow (`.github/workflows/pdp.yml`).
    pub ci: bool,
    /// Whether to write the image, compose and Kubernetes files.
    pub deploy: bool,
    /// Where the workflow publishes the client.
    pub publish: Publish,
}

/// Where the generated workflow publishes the client folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Publish {
    /// A `client` branch, served through jsDelivr (the original template's way).
    #[default]
    Branch,
    /// A workflow artifact.
    Artifact,
    /// An S3-compatible bucket.
    S3,
}

impl Publish {
    /// The `--publish` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Publish::Branch => "branch",
            Publish::Artifact => "artifact",
            Publish::S3 => "s3",
        }
    }

    /// The value named in an existing generated workflow's header (`pdp init --force --publish s3`).
    pub fn from_workflow(text: &str) -> Option<Publish> {
        text.lines().take_while(|l| l.starts_with('#')).find_map(|l| {
            let value = l.split("--publish ").nth(1)?.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
            [Publish::Branch, Publish::Artifact, Publish::S3].into_iter().find(|p| p.as_str() == value)
        })
    }
}

/// One file init manages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Path relative to the project directory.
    pub path: String,
    /// Full contents (or, for [`Kind::Entries`], the lines that must be present).
    pub contents: String,
    /// How init treats an existing file.
    pub kind: Kind,
}

/// How init treats a file that already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Owned by init: written if missing, reported if different, overwritten only with `--force`.
    Whole,
    /// The user's from the moment it exists (the schema): adopted, never compared.
    Adopted,
    /// Lines that must be present (`.gitignore`): missing ones are appended, nothing is removed.
    Entries,
}

#[derive(Serialize)]
struct Context<'a> {
    pdp_version: &'static str,
    prisma_version: String,
    generation: &'static str,
    client_generator: &'static str,
    datasource_url_in_schema: bool,
    provider: &'static str,
    schema_path: &'a str,
    migrations_path: &'a str,
    embedded: bool,
    database_url: &'a str,
    database_url_example: &'static str,
    client_base_url: &'a str,
    listen: &'a str,
    public_url: String,
    client_import: String,
    client_option: &'static str,
    /// `pdp serve` runs the query-plan executor (Node) rather than the query-engine binary.
    needs_node: bool,
    publish: &'static str,
    /// Flags to repeat when regenerating (` --publish s3`), empty for the defaults.
    init_flags: String,
}

fn template(path: &str) -> anyhow::Result<&'static str> {
    TEMPLATES
        .get_file(path)
        .and_then(|f| f.contents_utf8())
        .ok_or_else(|| anyhow::format_err!("template `{path}` is missing from this pdp build (a pdp bug)"))
}

fn context(a: &Answers) -> Context<'_> {
    let generation = a.prisma.generation();
    let (client_generator, entry) = match generation.generator {
        ClientGenerator::PrismaClientDeno => ("prisma-client", "client.ts"),
        ClientGenerator::JsDenoPreview => ("prisma-client-js", "edge.ts"),
    };
    let client_option = match (generation.wire, a.prisma.semver().major) {
        (WireProtocol::Qpe, _) => "accelerateUrl",
        (_, 4) => "datasources",
        _ => "datasourceUrl",
    };
    let base = a
        .client_base_url
        .as_deref()
        .map(|b| if b.ends_with('/') { b.to_owned() } else { format!("{b}/") })
        .unwrap_or_else(|| "https://cdn.jsdelivr.net/gh/OWNER/REPO@client/".to_owned());
    let port = a.listen.rsplit(':').next().unwrap_or("4466");
    Context {
        pdp_version: env!("CARGO_PKG_VERSION"),
        prisma_version: a.prisma.to_string(),
        generation: generation.label,
        client_generator,
        datasource_url_in_schema: generation.datasource_url_in_schema,
        provider: a.provider.as_str(),
        schema_path: &a.schema_path,
        migrations_path: a.migrations_path.as_deref().unwrap_or(""),
        embedded: a.database_url.is_none(),
        database_url: a.database_url.as_deref().unwrap_or(""),
        database_url_example: match a.provider {
            Provider::Mysql => "mysql://root:password@localhost:3306/app",
            _ => "postgresql://postgres:password@localhost:5432/app?schema=public",
        },
        client_base_url: a.client_base_url.as_deref().unwrap_or(""),
        listen: &a.listen,
        public_url: format!("https://localhost:{port}"),
        client_import: format!("{base}0.1.0/{entry}"),
        client_option,
        needs_node: generation.server_engine == ServerEngine::QueryPlanExecutor,
        publish: a.publish.as_str(),
        init_flags: if a.publish == Publish::default() {
            String::new()
        } else {
            format!(" --publish {}", a.publish.as_str())
        },
    }
}

fn render(env: &Environment<'_>, name: &str, ctx: &Context<'_>) -> anyhow::Result<String> {
    let source = template(name)?;
    let mut out = env
        .render_str(source, ctx)
        .map_err(|e| anyhow::format_err!("cannot render template `{name}` (a pdp bug): {e:#}"))?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Where the sample schema goes.
pub const SAMPLE_SCHEMA: &str = "prisma/schema.prisma";

/// Where the sample schema's migrations go.
pub const SAMPLE_MIGRATIONS: &str = "prisma/migrations";

/// Every file init manages for these answers, in the order they are reported.
pub fn plan(a: &Answers) -> anyhow::Result<Vec<Planned>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    let ctx = context(a);
    let mut files = vec![
        Planned { path: "pdp.toml".into(), contents: render(&env, "pdp.toml.j2", &ctx)?, kind: Kind::Whole },
        Planned {
            path: a.schema_path.clone(),
            contents: render(&env, "prisma/schema.prisma.j2", &ctx)?,
            kind: Kind::Adopted,
        },
        Planned { path: ".env.example".into(), contents: render(&env, "env.example.j2", &ctx)?, kind: Kind::Whole },
        Planned { path: ".gitignore".into(), contents: template("gitignore")?.to_owned(), kind: Kind::Entries },
    ];
    if a.example {
        files.push(Planned {
            path: "examples/windmill/query_users.ts".into(),
            contents: render(&env, "examples/windmill/query_users.ts.j2", &ctx)?,
            kind: Kind::Whole,
        });
        files.push(whole(&env, WINDMILL_RESOURCE_TYPE, "examples/windmill/c_pdp_proxy.resource-type.json.j2", &ctx)?);
    }
    if a.ci {
        files.push(whole(&env, WORKFLOW, "ci/pdp.yml.j2", &ctx)?);
    }
    if a.deploy {
        for (path, name) in DEPLOY_FILES {
            files.push(whole(&env, path, name, &ctx)?);
        }
    }
    Ok(files)
}

/// The sample schema's first migration, as `prisma migrate dev --name init` writes it for the provider
/// (`<dir>/<stamp>_init/migration.sql` and `<dir>/migration_lock.toml`), where `dir` is the migrations
/// folder beside the schema and `stamp` Prisma's `YYYYMMDDHHMMSS` (UTC). `None` for a provider the sample
/// has no migration for (init offers PostgreSQL, MySQL and SQLite). Init plans these only when it writes
/// the sample schema itself and no migrations folder exists: an adopted schema's migrations are the user's.
pub fn initial_migration(provider: Provider, dir: &str, stamp: &str) -> anyhow::Result<Option<Vec<Planned>>> {
    let script = match provider {
        Provider::Postgresql => "prisma/migrations/postgresql.sql",
        Provider::Mysql => "prisma/migrations/mysql.sql",
        Provider::Sqlite => "prisma/migrations/sqlite.sql",
        Provider::Sqlserver | Provider::Mongodb => return Ok(None),
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let lock = env
        .render_str(
            template("prisma/migrations/migration_lock.toml.j2")?,
            minijinja::context! { provider => provider.as_str() },
        )
        .map_err(|e| anyhow::format_err!("cannot render the migration lock (a pdp bug): {e:#}"))?;
    Ok(Some(vec![
        Planned {
            path: format!("{dir}/{stamp}_init/migration.sql"),
            contents: template(script)?.to_owned(),
            kind: Kind::Whole,
        },
        Planned { path: format!("{dir}/migration_lock.toml"), contents: lock, kind: Kind::Whole },
    ]))
}

/// Where the workflow goes.
pub const WORKFLOW: &str = ".github/workflows/pdp.yml";
/// The Windmill resource type the example script's argument refers to.
pub const WINDMILL_RESOURCE_TYPE: &str = "examples/windmill/c_pdp_proxy.resource-type.json";

/// The image, compose and Kubernetes files (`--no-deploy` leaves them out): path written, template.
pub const DEPLOY_FILES: [(&str, &str); 17] = [
    ("Dockerfile", "deploy/Dockerfile.j2"),
    (".dockerignore", "deploy/dockerignore.j2"),
    ("deploy/compose.yaml", "deploy/compose.yaml.j2"),
    ("deploy/compose.env.example", "deploy/compose.env.example.j2"),
    ("deploy/compose.scaled.yaml", "deploy/compose.scaled.yaml.j2"),
    ("deploy/haproxy.cfg", "deploy/haproxy.cfg.j2"),
    ("deploy/k8s/kustomization.yaml", "deploy/k8s/kustomization.yaml.j2"),
    ("deploy/k8s/deployment.yaml", "deploy/k8s/deployment.yaml.j2"),
    ("deploy/k8s/service.yaml", "deploy/k8s/service.yaml.j2"),
    ("deploy/k8s/peers.yaml", "deploy/k8s/peers.yaml.j2"),
    ("deploy/k8s/hpa.yaml", "deploy/k8s/hpa.yaml.j2"),
    ("deploy/k8s/pdb.yaml", "deploy/k8s/pdb.yaml.j2"),
    ("deploy/k8s/networkpolicy.yaml", "deploy/k8s/networkpolicy.yaml.j2"),
    ("deploy/k8s/pdp.toml", "deploy/k8s/pdp.toml.j2"),
    ("deploy/k8s/secrets.env.example", "deploy/k8s/secrets.env.example.j2"),
    ("deploy/grafana/pdp.json", "deploy/grafana/pdp.json.j2"),
    ("deploy/prometheus/pdp-rules.yaml", "deploy/prometheus/pdp-rules.yaml.j2"),
];

fn whole(env: &Environment<'_>, path: &str, name: &str, ctx: &Context<'_>) -> anyhow::Result<Planned> {
    Ok(Planned { path: path.into(), contents: render(env, name, ctx)?, kind: Kind::Whole })
}

/// The provider named in a schema's first `datasource` block, if the schema can be read and has one.
pub fn schema_provider(schema: &str) -> Option<String> {
    pdp_schema::scan(schema).ok()?.datasource()?.string("provider").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn answers(version: &str, provider: Provider, url: Option<&str>) -> Answers {
        Answers {
            prisma: version.parse().expect("supported"),
            provider,
            schema_path: SAMPLE_SCHEMA.into(),
            migrations_path: Some(SAMPLE_MIGRATIONS.into()),
            database_url: url.map(str::to_owned),
            client_base_url: Some("https://cdn.example/gh/a/b@client".into()),
            listen: "127.0.0.1:4466".into(),
            example: true,
            ci: true,
            deploy: true,
            publish: Publish::Branch,
        }
    }

    /// Every template renders for every generation and provider, and the pdp.toml it writes resolves.
    #[test]
    fn every_generation_and_provider_renders_a_valid_project() {
        for version in ["4.16.2", "5.22.0", "6.7.0", "6.19.0", "7.10.1"] {
            for (provider, url) in [
                (Provider::Postgresql, None),
                (Provider::Postgresql, Some("env:DATABASE_URL")),
                (Provider::Mysql, Some("env:DATABASE_URL")),
                (Provider::Sqlite, Some("file:./dev.db")),
            ] {
                let files = plan(&answers(version, provider, url)).expect("renders");
                assert_eq!(files.len(), 6 + 1 + DEPLOY_FILES.len());
                let toml = &files[0].contents;
                let mut env = BTreeMap::new();
                env.insert("PDP_API_KEY".to_owned(), "k".to_owned());
                env.insert("DATABASE_URL".to_owned(), "postgresql://u@h/db".to_owned());
                env.insert("HOME".to_owned(), "/h".to_owned());
                let config = pdp_config::from_str(toml, Path::new("/p/pdp.toml"), &env, &Default::default())
                    .unwrap_or_else(|e| panic!("{version} {provider:?}: generated pdp.toml must resolve: {e}\n{toml}"));
                assert_eq!(config.prisma.version.to_string(), version);
                assert_eq!(matches!(config.database.url, pdp_config::DatabaseSetting::Embedded), url.is_none());
                let schema = &files[1].contents;
                assert_eq!(schema_provider(schema).as_deref(), Some(provider.as_str()), "{schema}");
                let generation = config.prisma.version.generation();
                assert_eq!(
                    schema.contains("url      = env(\"DATABASE_URL\")"),
                    generation.datasource_url_in_schema,
                    "{schema}"
                );
                let example = &files[4].contents;
                assert!(example.contains("https://cdn.example/gh/a/b@client/0.1.0/"), "{example}");
                assert!(!example.contains("{{") && !toml.contains("{%"), "unrendered template syntax");
            }
        }
    }

    #[test]
    fn client_option_follows_the_generation() {
        let example = |v: &str| plan(&answers(v, Provider::Postgresql, None)).expect("renders")[4].contents.clone();
        assert!(example("7.10.1").contains("new PrismaClient({ accelerateUrl: proxyUrl })"));
        assert!(example("6.19.0").contains("new PrismaClient({ datasourceUrl: proxyUrl })"));
        assert!(example("6.19.0").contains("/client.ts\""));
        assert!(example("5.22.0").contains("/edge.ts\""));
        assert!(example("4.16.2").contains("datasources: { db: { url: proxyUrl } }"));
    }

    #[test]
    fn provider_is_read_from_a_schema() {
        let schema = "// c\ngenerator client {\n  provider = \"prisma-client-js\"\n}\n\ndatasource db {\n  provider = \"mysql\" // MariaDB\n  url = env(\"X\")\n}\n";
        assert_eq!(schema_provider(schema).as_deref(), Some("mysql"));
        assert_eq!(schema_provider("model A { id Int @id }"), None);
        assert_eq!(schema_provider("datasource db {\n  provider = \"sqlite\"}\n").as_deref(), Some("sqlite"));
        // A `//` inside a string is not a comment (it used to cut the line there).
        let url_with_slashes = "datasource db {\n  url = \"file://./x\" // c\n  provider = \"sqlite\"\n}\n";
        assert_eq!(schema_provider(url_with_slashes).as_deref(), Some("sqlite"));
    }
}
