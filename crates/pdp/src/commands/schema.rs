//! The project's schema as every command reads it: `[prisma] schema` loaded (one file or a folder of
//! them), the Prisma version's rules for a folder checked, and the migrations folder decided
//! (`[prisma] migrations`, or Prisma Migrate's default for this layout and version).
//!
//! Deliberately not here: what a command does with the schema, and whether the schema is valid Prisma
//! (Prisma says that; `pdp doctor` reports what pdp itself needs from it).

use std::path::PathBuf;

use pdp_config::Config;
use pdp_config::prisma::{SCHEMA_FOLDER_PREVIEW, SchemaFolder};
use pdp_schema::{LoadError, SchemaFiles};

use crate::diagnostics::UserError;

/// The project's schema and where its migrations are.
#[derive(Debug)]
pub struct ProjectSchema {
    /// The files.
    pub files: SchemaFiles,
    /// The migrations folder.
    pub migrations: PathBuf,
}

impl ProjectSchema {
    /// The schema's path as a person reads it: relative to the project, and for a folder how many files.
    pub fn shown(&self, config: &Config) -> String {
        let path = &self.files.location;
        self.files.describe(path.strip_prefix(&config.root).unwrap_or(path))
    }
}

/// Reads `[prisma] schema` and checks that the project's Prisma version can read it laid out that way.
pub fn load(config: &Config) -> anyhow::Result<ProjectSchema> {
    let version = &config.prisma.version;
    let files = SchemaFiles::load(&config.prisma.schema).map_err(|e| match e {
        LoadError::NotFound { .. } => anyhow::Error::new(UserError::new(
            e.to_string(),
            "create it (`pdp init` writes a sample) or point `[prisma] schema` in pdp.toml at it",
        )),
        LoadError::EmptyFolder { .. } => anyhow::Error::new(UserError::new(
            e.to_string(),
            "put the schema's `.prisma` files there, or point `[prisma] schema` at the schema file",
        )),
        LoadError::NotUtf8 { .. } => anyhow::Error::new(UserError::new(e.to_string(), "save it as UTF-8")),
        LoadError::Io { .. } => anyhow::Error::new(UserError::new(
            e.to_string(),
            "check that pdp's user may read it (and every folder of a schema folder)",
        )),
    })?;
    if files.folder {
        let shown = config.prisma.schema.strip_prefix(&config.root).unwrap_or(&config.prisma.schema).display();
        match version.schema_folder() {
            SchemaFolder::Stable => {}
            SchemaFolder::Unsupported => {
                return Err(UserError::new(
                    format!(
                        "`[prisma] schema` is a folder ({shown}), but Prisma {version} reads a schema from one file"
                    ),
                    "schema folders need Prisma 5.15 or later (with the `prismaSchemaFolder` preview until 6.6): \
                     point `[prisma] schema` at one `.prisma` file, or raise `[prisma] version`",
                )
                .into());
            }
            SchemaFolder::Preview => {
                let enabled = files.files.iter().any(|f| {
                    pdp_schema::scan(&f.text).is_ok_and(|s| {
                        s.blocks_of("generator")
                            .filter_map(|g| g.get("previewFeatures"))
                            .any(|e| e.value.strings().iter().any(|p| p.eq_ignore_ascii_case(SCHEMA_FOLDER_PREVIEW)))
                    })
                });
                if !enabled {
                    return Err(UserError::new(
                        format!(
                            "`[prisma] schema` is a folder ({shown}), which Prisma {version} reads only with the \
                             `{SCHEMA_FOLDER_PREVIEW}` preview feature"
                        ),
                        format!(
                            "add `previewFeatures = [\"{SCHEMA_FOLDER_PREVIEW}\"]` to the schema's generator block \
                             (Prisma 6.7 and later need no flag)"
                        ),
                    )
                    .into());
                }
            }
        }
    }
    let migrations = config
        .prisma
        .migrations
        .clone()
        .unwrap_or_else(|| files.default_migrations(version.folder_migrations_beside_folder()));
    Ok(ProjectSchema { files, migrations })
}

/// Where a command that needs no schema text (`pdp migrate`, the database check of `pdp doctor`) finds
/// the migrations and resolves a relative SQLite path: from the schema's files when they exist, else
/// beside where `[prisma] schema` points (Prisma's CLI insists on a schema; pdp's migrate does not need
/// one). Returns `(migrations, datasource directory)`.
pub fn migration_paths(config: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !config.prisma.schema.exists() {
        let dir = beside_schema(config);
        return Ok((config.prisma.migrations.clone().unwrap_or_else(|| dir.join("migrations")), dir));
    }
    let project = load(config)?;
    Ok((project.migrations.clone(), project.files.datasource_dir()))
}

/// The directory a relative SQLite path is resolved against, for commands that go on when the schema
/// cannot be read (serve, doctor's database line): the datasource file's directory when it can be, else
/// beside where `[prisma] schema` points.
pub fn datasource_dir(config: &Config) -> PathBuf {
    migration_paths(config).map_or_else(|_| beside_schema(config), |(_, dir)| dir)
}

fn beside_schema(config: &Config) -> PathBuf {
    config.prisma.schema.parent().unwrap_or(&config.root).to_path_buf()
}
