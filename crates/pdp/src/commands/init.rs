//! `pdp init`: sets up a project from flags, prompts, or what is already there, then writes only what is
//! missing. Existing files are never overwritten without `--force`; `--check` writes nothing and reports
//! drift. Every write goes to a temporary file in the same directory and is renamed into place.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use pdp_config::Provider;
use pdp_config::prisma::{DEFAULT_PRISMA_VERSION, PrismaVersion};
use similar::TextDiff;

use crate::cli::{InitArgs, ProviderArg, PublishArg};
use crate::diagnostics::{Interrupted, Status, UserError};
use crate::printer::Printer;
use crate::scaffold::{self, Answers, Kind, Planned, Publish};

/// What init found already in the directory.
#[derive(Debug, Default)]
struct Existing {
    prisma: Option<String>,
    database_url: Option<String>,
    schema_path: Option<String>,
    /// `[prisma] migrations` of an existing pdp.toml.
    migrations_path: Option<String>,
    base_url: Option<String>,
    listen: Option<String>,
    /// Provider read from an existing schema.
    schema_provider: Option<String>,
    /// An existing schema folder's layout, e.g. "a folder of 3 files" (`None`: one file, or none).
    schema_layout: Option<String>,
    /// Where an existing generated workflow publishes the client.
    publish: Option<Publish>,
}

fn read_existing(dir: &Path) -> Existing {
    let mut e = Existing::default();
    if let Ok(text) = fs_err::read_to_string(dir.join(pdp_config::FILE_NAME))
        && let Ok(table) = text.parse::<toml::Table>()
    {
        let get = |section: &str, key: &str| {
            table.get(section).and_then(|s| s.get(key)).and_then(|v| v.as_str()).map(str::to_owned)
        };
        e.prisma = get("prisma", "version");
        e.database_url = get("database", "url");
        e.schema_path = get("prisma", "schema");
        e.migrations_path = get("prisma", "migrations");
        e.base_url = get("client", "base-url");
        e.listen = get("serve", "listen");
    }
    if e.schema_path.is_none() {
        let (schema, migrations) = prisma_cli_settings(dir);
        // Only a schema that is there is adopted: a setting pointing at nothing gets the sample in the
        // default place rather than a file named after a folder.
        e.schema_path = schema.filter(|s| dir.join(s).exists()).or_else(|| default_schema_location(dir));
        if e.migrations_path.is_none() {
            e.migrations_path = migrations;
        }
    }
    let schema = dir.join(e.schema_path.as_deref().unwrap_or(scaffold::SAMPLE_SCHEMA));
    if let Ok(files) = pdp_schema::SchemaFiles::load(&schema) {
        e.schema_provider = files.datasource_file().and_then(|f| scaffold::schema_provider(&f.text));
        e.schema_layout = files.folder.then(|| files.layout());
    }
    if let Ok(text) = fs_err::read_to_string(dir.join(scaffold::WORKFLOW)) {
        e.publish = Publish::from_workflow(&text);
    }
    e
}

/// Where Prisma's own settings put the schema and the migrations: `package.json`'s `prisma.schema`, or
/// `prisma.config.ts`'s `schema` and `migrations.path` (read as text, never run: a string literal, or
/// `path.join(…)` of literals). Both relative to the project.
fn prisma_cli_settings(dir: &Path) -> (Option<String>, Option<String>) {
    for name in ["prisma.config.ts", "prisma.config.mts", "prisma.config.js", "prisma.config.mjs"] {
        if let Ok(text) = fs_err::read_to_string(dir.join(name)) {
            let text = without_comments(&text);
            let schema = config_path(&text, r"\bschema\s*:\s*");
            let migrations = config_path(&text, r"\bmigrations\s*:\s*\{[^}]*?\bpath\s*:\s*");
            if schema.is_some() || migrations.is_some() {
                return (schema, migrations);
            }
        }
    }
    let schema = fs_err::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["prisma"]["schema"].as_str().map(clean_relative));
    (schema, None)
}

/// `text` without `// …` line comments and `/* … */` blocks (a commented-out `schema:` is not a setting).
fn without_comments(text: &str) -> String {
    let blocks = regex::Regex::new(r"(?s)/\*.*?\*/").map(|re| re.replace_all(text, "").into_owned());
    let text = blocks.unwrap_or_else(|_| text.to_owned());
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The path after `lead` in a config file's text: `"a/b"`, `'a/b'`, or `path.join("a", "b")`.
fn config_path(text: &str, lead: &str) -> Option<String> {
    let literal = r#"(?:"([^"]*)"|'([^']*)')"#;
    let pattern = format!(r"{lead}(?:{literal}|path\.(?:join|resolve)\(([^)]*)\))");
    let caps = regex::Regex::new(&pattern).ok()?.captures(text)?;
    if let Some(m) = caps.get(1).or_else(|| caps.get(2)) {
        return Some(clean_relative(m.as_str()));
    }
    let parts: Vec<String> = regex::Regex::new(literal)
        .ok()?
        .captures_iter(caps.get(3)?.as_str())
        .filter_map(|c| c.get(1).or_else(|| c.get(2)).map(|m| m.as_str().to_owned()))
        .filter(|p| p != "__dirname")
        .collect();
    (!parts.is_empty()).then(|| clean_relative(&parts.join("/")))
}

/// `./prisma/` → `prisma`.
fn clean_relative(path: &str) -> String {
    let trimmed = path.trim().trim_start_matches("./").trim_end_matches('/');
    if trimmed.is_empty() { ".".to_owned() } else { trimmed.to_owned() }
}

/// Prisma's default places, in its order: `prisma/schema.prisma`, then (the 5.15 preview's default for a
/// multi-file schema) a `prisma/schema/` folder holding `.prisma` files.
fn default_schema_location(dir: &Path) -> Option<String> {
    if dir.join(scaffold::SAMPLE_SCHEMA).is_file() {
        return None;
    }
    let folder = dir.join("prisma/schema");
    pdp_schema::SchemaFiles::load(&folder).is_ok_and(|f| f.folder).then(|| "prisma/schema".to_owned())
}

fn provider_of(arg: ProviderArg) -> Provider {
    match arg {
        ProviderArg::Postgresql => Provider::Postgresql,
        ProviderArg::Mysql => Provider::Mysql,
        ProviderArg::Sqlite => Provider::Sqlite,
    }
}

fn parse_version(text: &str) -> Result<PrismaVersion, UserError> {
    text.parse::<PrismaVersion>().map_err(|e| {
        UserError::new(
            format!("cannot set up Prisma `{text}`: {e}"),
            format!("pass `--prisma {DEFAULT_PRISMA_VERSION}` (newest supported) or `--prisma 4.16.2` (the original template's)"),
        )
    })
}

fn prompt_error(e: dialoguer::Error) -> anyhow::Error {
    // dialoguer hides the cursor in select menus and does not restore it when interrupted.
    let _ = console::Term::stderr().show_cursor();
    match e {
        dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => Interrupted.into(),
        dialoguer::Error::IO(io) => anyhow::Error::new(io).context("cannot read the answer from the terminal"),
    }
}

/// The database part of the answers plus the URL that belongs in `.env` (a secret, never in pdp.toml).
struct DatabaseChoice {
    provider: Provider,
    toml_url: Option<String>,
    dotenv_url: Option<String>,
}

fn choose_database(args: &InitArgs, existing: &Existing, ask: bool) -> anyhow::Result<DatabaseChoice> {
    let adopted = match &existing.schema_provider {
        Some(name) => Some(Provider::from_schema_name(name).ok_or_else(|| {
            UserError::new(
                format!("the existing schema's datasource provider `{name}` is not one pdp knows"),
                "use postgresql, mysql, sqlite, sqlserver or mongodb",
            )
        })?),
        None => None,
    };
    let from_url = match &args.database_url {
        Some(url) => Some(Provider::from_url(url).map_err(|why| {
            UserError::new(format!("`--database-url`: {why}"), "e.g. `postgresql://user@localhost:5432/app`")
        })?),
        None => None,
    };
    let flag = args.provider.map(provider_of);
    // Two sources that disagree are a mistake, not something to guess about.
    let sources = [("the existing schema", adopted), ("`--database-url`", from_url), ("`--provider`", flag)];
    let named: Vec<(&str, Provider)> = sources.iter().filter_map(|(n, p)| p.map(|p| (*n, p))).collect();
    if let Some((first, p1)) = named.first()
        && let Some((second, p2)) = named.iter().find(|(_, p)| p != p1)
    {
        return Err(UserError::new(
            format!("{first} says `{p1}` but {second} says `{p2}`"),
            "make them agree, or drop the flag",
        )
        .into());
    }
    if let Some(url) = &args.database_url {
        let provider = named[0].1;
        return Ok(if provider == Provider::Sqlite {
            DatabaseChoice { provider, toml_url: Some(url.clone()), dotenv_url: None }
        } else {
            DatabaseChoice { provider, toml_url: Some("env:DATABASE_URL".into()), dotenv_url: Some(url.clone()) }
        });
    }
    let provider = match named.first() {
        Some((_, p)) => Some(*p),
        None if ask && existing.database_url.is_none() => {
            let items = [
                "embedded PostgreSQL (PGlite under .pdp/, nothing to install)",
                "PostgreSQL (your own server)",
                "MySQL / MariaDB",
                "SQLite file",
            ];
            let pick = dialoguer::Select::new()
                .with_prompt("Database")
                .items(items)
                .default(0)
                .interact()
                .map_err(prompt_error)?;
            match pick {
                0 => return Ok(DatabaseChoice { provider: Provider::Postgresql, toml_url: None, dotenv_url: None }),
                1 => Some(Provider::Postgresql),
                2 => Some(Provider::Mysql),
                _ => Some(Provider::Sqlite),
            }
        }
        None => None,
    };
    // An existing pdp.toml's choice stands when nothing above overrides it.
    if let Some(url) = &existing.database_url {
        let provider = provider.unwrap_or(match url.strip_prefix("file:") {
            Some(_) => Provider::Sqlite,
            None => Provider::Postgresql,
        });
        return Ok(DatabaseChoice { provider, toml_url: Some(url.clone()), dotenv_url: None });
    }
    Ok(match provider {
        None => DatabaseChoice { provider: Provider::Postgresql, toml_url: None, dotenv_url: None },
        Some(Provider::Sqlite) => {
            DatabaseChoice { provider: Provider::Sqlite, toml_url: Some("file:./dev.db".into()), dotenv_url: None }
        }
        Some(p) if p == Provider::Postgresql && adopted.is_some() && !ask => {
            // An adopted PostgreSQL schema with no URL anywhere: the embedded database fits it.
            DatabaseChoice { provider: p, toml_url: None, dotenv_url: None }
        }
        Some(p) => {
            let dotenv_url = if ask {
                // Hidden like a password: the URL usually carries one.
                let url: String = dialoguer::Password::new()
                    .with_prompt(
                        "Database URL (input hidden; saved to .env, never to pdp.toml; empty to fill in later)",
                    )
                    .allow_empty_password(true)
                    .interact()
                    .map_err(prompt_error)?;
                let url = url.trim().to_owned();
                if !url.is_empty() {
                    Provider::from_url(&url)
                        .map_err(|why| UserError::new(format!("database URL: {why}"), "run `pdp init` again"))?;
                }
                (!url.is_empty()).then_some(url)
            } else {
                None
            };
            DatabaseChoice { provider: p, toml_url: Some("env:DATABASE_URL".into()), dotenv_url }
        }
    })
}

/// Now as the timestamp Prisma starts a migration's folder name with (`YYYYMMDDHHMMSS`, UTC).
fn migration_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// The state of one planned file relative to the disk.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Missing,
    Same,
    /// Differs; carries the full contents init would write.
    Differs(String),
    /// Adopted user file.
    Adopted,
}

fn compare(dir: &Path, file: &Planned) -> anyhow::Result<State> {
    let path = dir.join(&file.path);
    // An adopted schema may be a folder; whatever is there is the user's.
    if file.kind == Kind::Adopted && path.exists() {
        return Ok(State::Adopted);
    }
    let current = match fs_err::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Missing),
        Err(e) => return Err(e).context("cannot compare with the file on disk"),
    };
    Ok(match file.kind {
        Kind::Adopted => State::Adopted,
        Kind::Whole if current == file.contents => State::Same,
        Kind::Whole => State::Differs(file.contents.clone()),
        Kind::Entries => {
            let present: Vec<&str> = current.lines().map(str::trim).collect();
            let missing: Vec<&str> = file
                .contents
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !present.contains(&l.trim()))
                .collect();
            if missing.is_empty() {
                State::Same
            } else {
                let mut next = current.clone();
                if !next.is_empty() && !next.ends_with('\n') {
                    next.push('\n');
                }
                if !next.is_empty() {
                    next.push('\n');
                }
                next.push_str(&file.contents);
                State::Differs(next)
            }
        }
    })
}

/// Who may read a file init writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Ordinary project file (0644 when new).
    Shared,
    /// Holds secrets, like `.env` (0600 when new).
    Private,
}

/// Writes `contents` to `path` through a temporary file in the same directory, so the file is either
/// the old one or the new one, never half-written. An existing file keeps its permissions.
pub fn write_atomically(path: &Path, contents: &str, visibility: Visibility) -> anyhow::Result<()> {
    use std::io::Write as _;
    let parent = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("cannot create a temporary file in `{}`", parent.display()))?;
    tmp.write_all(contents.as_bytes()).with_context(|| format!("cannot write `{}`", path.display()))?;
    let permissions = match fs_err::metadata(path) {
        Ok(meta) => meta.permissions(),
        Err(_) => new_file_permissions(visibility),
    };
    fs_err::set_permissions(tmp.path(), permissions)?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

#[cfg(unix)]
fn new_file_permissions(visibility: Visibility) -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::Permissions::from_mode(if visibility == Visibility::Private { 0o600 } else { 0o644 })
}

#[cfg(not(unix))]
fn new_file_permissions(_: Visibility) -> std::fs::Permissions {
    let mut p = fs_err::metadata(".").map(|m| m.permissions()).expect("the working directory exists");
    p.set_readonly(false);
    p
}

/// Lines `.env` needs: a local API key, and the database URL when one was given.
fn dotenv_additions(
    dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<(PathBuf, Option<String>, Vec<&'static str>)> {
    let path = dir.join(".env");
    let current = match fs_err::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let has = |name: &str| {
        current.lines().any(|l| l.trim_start().strip_prefix(name).is_some_and(|r| r.trim_start().starts_with('=')))
    };
    let mut add = String::new();
    let mut names = Vec::new();
    if !has("PDP_API_KEY") {
        add.push_str(&format!(
            "# API key for local development, generated by `pdp init`.\nPDP_API_KEY={}\n",
            super::keys::generate()?
        ));
        names.push("PDP_API_KEY");
    }
    if let Some(url) = database_url
        && !has("DATABASE_URL")
    {
        add.push_str(&format!("DATABASE_URL={}\n", dotenv_quote(url)));
        names.push("DATABASE_URL");
    }
    if add.is_empty() {
        return Ok((path, None, names));
    }
    let mut next = current;
    if !next.is_empty() && !next.ends_with('\n') {
        next.push('\n');
    }
    next.push_str(&add);
    Ok((path, Some(next), names))
}

/// A `.env` value that reads back exactly: single quotes are literal in dotenv (no `$` expansion, no
/// escapes); a value with a `'` goes in double quotes with `\\`, `"` and `$` escaped.
fn dotenv_quote(value: &str) -> String {
    if value.contains('\'') {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$");
        format!("\"{escaped}\"")
    } else {
        format!("'{value}'")
    }
}

/// Runs `pdp init`.
pub fn run(args: &InitArgs, printer: &Printer) -> anyhow::Result<Status> {
    let dir = &args.dir;
    if dir.exists() && !dir.is_dir() {
        return Err(UserError::new(
            format!("`{}` is a file, not a directory", dir.display()),
            "pass a directory to `pdp init`",
        )
        .into());
    }
    let existing = read_existing(dir);
    let ask = !args.yes && !args.check;
    if ask && !printer.interactive {
        return Err(UserError::new(
            "`pdp init` asks questions, but there is no terminal to ask on",
            "pass `--yes` to take the defaults (with `--prisma`, `--provider`, `--database-url` to choose)",
        )
        .into());
    }
    if ask {
        // dialoguer hides the cursor in menus and leaves it hidden when SIGINT ends the process
        // (console-rs/dialoguer#294): restore it, then exit as interrupted. Nothing is written before
        // the last answer, so there is nothing to undo.
        let _ = ctrlc::set_handler(|| {
            let _ = console::Term::stderr().show_cursor();
            std::process::exit(130);
        });
    }

    let version_text = match (&args.prisma, &existing.prisma) {
        (Some(v), _) => v.clone(),
        (None, Some(v)) => v.clone(),
        (None, None) if ask => dialoguer::Input::<String>::new()
            .with_prompt("Prisma version")
            .default(DEFAULT_PRISMA_VERSION.to_owned())
            .validate_with(|v: &String| v.parse::<PrismaVersion>().map(|_| ()).map_err(|e| e.to_string()))
            .interact_text()
            .map_err(prompt_error)?,
        (None, None) => DEFAULT_PRISMA_VERSION.to_owned(),
    };
    let prisma = parse_version(&version_text)?;
    let db = choose_database(args, &existing, ask)?;
    let schema_path = existing.schema_path.clone().unwrap_or_else(|| scaffold::SAMPLE_SCHEMA.to_owned());
    // The sample schema is written with its migrations in the sample's place; an adopted schema keeps
    // what its settings say, or Prisma Migrate's default.
    let migrations_path = existing
        .migrations_path
        .clone()
        .or_else(|| (!dir.join(&schema_path).exists()).then(|| scaffold::SAMPLE_MIGRATIONS.to_owned()));
    let answers = Answers {
        prisma,
        provider: db.provider,
        schema_path,
        migrations_path,
        database_url: db.toml_url,
        client_base_url: args.client_base_url.clone().or(existing.base_url),
        listen: existing.listen.unwrap_or_else(|| "127.0.0.1:4466".into()),
        example: !args.no_example,
        ci: !args.no_ci,
        deploy: !args.no_deploy,
        publish: match args.publish {
            Some(PublishArg::Branch) => Publish::Branch,
            Some(PublishArg::Artifact) => Publish::Artifact,
            Some(PublishArg::S3) => Publish::S3,
            None => existing.publish.unwrap_or_default(),
        },
    };
    let mut files = scaffold::plan(&answers)?;

    // The sample schema comes with its first migration, so `pdp migrate deploy` right after init has
    // something to apply; an existing schema or migrations folder is the user's and left as it is.
    if let Some(at) = files.iter().position(|f| f.kind == Kind::Adopted)
        && !dir.join(&files[at].path).exists()
    {
        let migrations = answers.migrations_path.clone().unwrap_or_else(|| scaffold::SAMPLE_MIGRATIONS.to_owned());
        if !dir.join(&migrations).exists()
            && let Some(planned) = scaffold::initial_migration(answers.provider, &migrations, &migration_stamp())?
        {
            files.splice(at + 1..at + 1, planned);
        }
    }

    let states = files
        .iter()
        .map(|f| compare(dir, f).with_context(|| format!("cannot read `{}`", dir.join(&f.path).display())))
        .collect::<anyhow::Result<Vec<_>>>()?;

    if args.check {
        return Ok(check_report(dir, &files, &states, printer));
    }

    if !dir.exists() {
        fs_err::create_dir_all(dir).context("cannot create the project directory")?;
        printer.status("created", &format!("{}/", dir.display()));
    }
    let mut changed = 0;
    let mut kept = Vec::new();
    for (file, state) in files.iter().zip(&states) {
        let path = dir.join(&file.path);
        match state {
            State::Missing => {
                write_atomically(&path, &file.contents, Visibility::Shared)?;
                printer.status("created", &file.path);
                changed += 1;
            }
            State::Same => printer.status("unchanged", &file.path),
            State::Adopted => {
                let provider = existing.schema_provider.as_deref().unwrap_or("unknown provider");
                let layout = existing.schema_layout.as_ref().map(|l| format!("{l}, ")).unwrap_or_default();
                printer.status("adopted", &format!("{} ({layout}{provider})", file.path));
            }
            State::Differs(next) if file.kind == Kind::Entries => {
                write_atomically(&path, next, Visibility::Shared)?;
                printer.status("updated", &format!("{} (added pdp's entries)", file.path));
                changed += 1;
            }
            State::Differs(next) if args.force => {
                write_atomically(&path, next, Visibility::Shared)?;
                printer.status("overwrote", &file.path);
                changed += 1;
            }
            State::Differs(_) => {
                printer.status("kept", &format!("{} (differs from what init would write)", file.path));
                kept.push(file.path.clone());
            }
        }
    }
    let (env_path, env_next, added) = dotenv_additions(dir, db.dotenv_url.as_deref())?;
    if db.dotenv_url.is_some() && !added.contains(&"DATABASE_URL") {
        printer.warn(
            "`.env` already sets DATABASE_URL, so the URL given to init was not written",
            Some("edit DATABASE_URL in `.env` yourself; init never changes an existing value"),
        );
    }
    if let Some(next) = env_next {
        let existed = env_path.exists();
        write_atomically(&env_path, &next, Visibility::Private)?;
        let what = added.join(", ");
        printer.status(
            if existed { "updated" } else { "created" },
            &format!(".env ({what}; git-ignored, never commit it)"),
        );
        changed += 1;
    }

    if !kept.is_empty() {
        printer.warn(
            &format!("kept {} file(s) you changed: {}", kept.len(), kept.join(", ")),
            Some("`pdp init --check` shows the differences; `--force` overwrites them"),
        );
    }
    if changed == 0 {
        printer.info("Nothing to do: the project is already set up.");
    } else {
        printer.info("");
        printer.info(&format!(
            "Project ready (Prisma {}, {}). Next: `pdp doctor`{}",
            answers.prisma,
            match &answers.database_url {
                None => "embedded PostgreSQL".to_owned(),
                Some(_) => answers.provider.to_string(),
            },
            if dir == Path::new(".") { String::new() } else { format!(" in `{}`", dir.display()) }
        ));
    }
    Ok(Status::Success)
}

fn check_report(dir: &Path, files: &[Planned], states: &[State], printer: &Printer) -> Status {
    let mut drift = 0;
    for (file, state) in files.iter().zip(states) {
        match state {
            State::Same => printer.data(&format!("ok       {}", file.path)),
            State::Adopted => printer.data(&format!("ok       {} (yours: adopted, not compared)", file.path)),
            State::Missing => {
                drift += 1;
                printer.data(&format!("missing  {}", file.path));
            }
            State::Differs(next) => {
                drift += 1;
                printer.data(&format!("differs  {}", file.path));
                let current = fs_err::read_to_string(dir.join(&file.path)).unwrap_or_default();
                let diff = TextDiff::from_lines(&current, next);
                let rendered = diff
                    .unified_diff()
                    .context_radius(2)
                    .header(&format!("{} (on disk)", file.path), &format!("{} (pdp init)", file.path))
                    .to_string();
                for line in rendered.lines() {
                    printer.data(&format!("    {line}"));
                }
            }
        }
    }
    if drift == 0 {
        printer.info("Every file matches what `pdp init` would write.");
        Status::Success
    } else {
        printer.info(&format!("{drift} file(s) differ from what `pdp init` would write; `pdp init` adds missing ones, `--force` overwrites."));
        Status::CheckFailed
    }
}

#[cfg(test)]
mod tests {
    use pdp_config::env::{Env, ProcessEnv};

    use super::config_path;

    /// Whatever the password holds, `.env` gives back the URL that was written.
    #[test]
    fn dotenv_values_read_back_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        for url in [
            "postgresql://u:plain@h/db",
            "postgresql://u:pa${HOME}x@h/db",
            "postgresql://u:pa$word@h/db",
            "postgresql://u:pa\\word@h/db",
            "postgresql://u:it's@h/db",
            "postgresql://u:it's$\"q\\@h/db",
            "postgresql://u:se#cret @h/db?schema=a b",
        ] {
            let path = dir.path().join(".env");
            fs_err::write(&path, format!("DATABASE_URL={}\n", super::dotenv_quote(url))).expect("write");
            let env = ProcessEnv::with_dotenv(&path).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(env.var("DATABASE_URL").as_deref(), Some(url), "round trip of {url}");
        }
    }

    #[test]
    fn prisma_config_paths_are_read_as_literals_or_joins() {
        let ts = r#"import path from "node:path";
import { defineConfig, env } from "prisma/config";
export default defineConfig({
  schema: path.join(__dirname, "prisma", "schema"),
  migrations: { seed: "tsx seed.ts", path: './db/migrations/' },
  datasource: { url: env("DATABASE_URL") },
});"#;
        assert_eq!(config_path(ts, r"\bschema\s*:\s*").as_deref(), Some("prisma/schema"));
        assert_eq!(config_path(ts, r"\bmigrations\s*:\s*\{[^}]*?\bpath\s*:\s*").as_deref(), Some("db/migrations"));
        assert_eq!(config_path(r#"{ schema: "prisma/" }"#, r"\bschema\s*:\s*").as_deref(), Some("prisma"));
        assert_eq!(config_path("{ schema: process.env.X }", r"\bschema\s*:\s*"), None);
    }
}
