//! `pdp build-client`: schema + pdp.toml → `<out>/<version>/` holding a Deno client importable from a URL,
//! plus `manifest.json`. Orchestrates: the incremental check, tool provisioning (npm, cached), the schema
//! patch into a build folder, `prisma generate` (under Deno for 4.x–6.7) with the offline recipe, the output
//! patch, and the swap of the finished folder into place.
//!
//! Deliberately not here: the patching rules and the recipe (`pdp-client`), installs (`pdp_toolchain::npm`),
//! publishing the folder (a CI step's job). A failed build leaves the previous output untouched: everything
//! is written beside it and renamed in only when complete.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pdp_client::manifest::{self, Manifest, StampInputs};
use pdp_client::{ClientError, generate, output, schema};
use pdp_config::env::Env;
use pdp_config::{Config, Overrides};
use pdp_toolchain::npm::{self, Installed, Npm, NpmError, ToolSpec};
use pdp_toolchain::process::{Cmd, ProcessError, frame};
use pdp_toolchain::tools::{Tool, locate};

use crate::cli::BuildClientArgs;
use crate::diagnostics::{Status, UserError};
use crate::printer::{Printer, Spinner};

/// How long one `prisma generate` may take.
const GENERATE_TIMEOUT: Duration = Duration::from_secs(600);

/// The generator output folder inside the build folder (`output = "./generated"`).
const GENERATED: &str = "generated";

/// Where a schema folder is copied inside the build folder.
const SCHEMA_FOLDER: &str = "schema";

/// Runs `pdp build-client`.
pub fn run(
    args: &BuildClientArgs,
    config_flag: Option<&Path>,
    cwd: &Path,
    printer: &Printer,
) -> anyhow::Result<Status> {
    let started = Instant::now();
    let (config, env) = super::load_config(config_flag, cwd, &Overrides::default())?;
    let version = &config.prisma.version;
    let generation = version.generation();
    let out = args.out.as_ref().map(|p| cwd.join(p)).unwrap_or_else(|| config.client.out.clone());
    let client_version = args.version.clone().unwrap_or_else(|| config.client.version.clone());
    check_folder_name(&client_version)?;
    let project = super::schema::load(&config)?;
    let schema_path = &config.prisma.schema;
    let schema_bytes = project.files.identity();

    let deno = generate::runs_under_deno(generation);
    let deno_pin = format!("deno@{}", generate::DENO_VERSION);
    let tool_pins: Vec<&str> = if deno { vec![deno_pin.as_str()] } else { vec![] };
    let stamp = manifest::stamp(&StampInputs {
        pdp_version: env!("CARGO_PKG_VERSION"),
        prisma_version: &version.to_string(),
        generation: generation.label,
        schema: &schema_bytes,
        runtime: "deno",
        client_version: &client_version,
        tools: &tool_pins,
    });
    let target = out.join(&client_version);
    if !args.force
        && let Some(m) = manifest::up_to_date(&target, &stamp)
    {
        printer.status("Fresh", &format!("{} is up to date (use --force to rebuild)", target.display()));
        print_import(&config, &client_version, &m.entry, &target, printer);
        return Ok(Status::Success);
    }

    let steps = printer.spinner();
    let cache_root = config.engines.cache.clone();
    let path_var = env.var("PATH").map(OsString::from);
    let npm_for = |tool: &str| {
        let tool = tool.to_owned();
        let root = config.root.clone();
        let path_var = path_var.clone();
        let registry = config.network.npm_registry.as_ref().map(url::Url::to_string);
        move || -> Result<Npm, NpmError> {
            let (_, program) = npm::find_node_and_npm(&root, path_var.as_ref(), &tool)?;
            Ok(Npm { program, registry, timeout: npm::INSTALL_TIMEOUT })
        }
    };

    // Tools.
    let prisma_spec =
        ToolSpec { name: "prisma".into(), version: version.to_string(), packages: generate::prisma_packages(version) };
    steps.step(&format!("provisioning {} (npm, cached in {})", prisma_spec.label(), cache_root.display()));
    let prisma = npm::ensure(&cache_root, &prisma_spec, npm_for(&prisma_spec.label()))?;
    report_install(&steps, &prisma);
    let runtime_version = prisma.package_version(output::RUNTIME_PACKAGE)?;
    let (runner, runner_args): (PathBuf, Vec<&str>) = if deno {
        let spec = ToolSpec::single("deno", generate::DENO_VERSION);
        steps.step(&format!("provisioning {} (npm, cached)", spec.label()));
        let tool = npm::ensure(&cache_root, &spec, npm_for(&spec.label()))?;
        report_install(&steps, &tool);
        (deno_binary(&tool)?, vec!["run", "-A"])
    } else {
        let node = locate(Tool::Node, &config.root, path_var.as_ref())
            .ok_or(NpmError::NotFound { program: "node", tool: prisma_spec.label() })?;
        (node, vec![])
    };

    // Build folder beside the output, with the patched schema and the tool's node_modules.
    fs_err::create_dir_all(&out).map_err(|source| ClientError::Io { path: out.clone(), source })?;
    let build = tempfile::Builder::new()
        .prefix(".pdp-build-")
        .tempdir_in(&out)
        .map_err(|source| ClientError::Io { path: out.clone(), source })?;
    let sources: Vec<schema::SourceFile<'_>> =
        project.files.files.iter().map(|f| schema::SourceFile { rel: &f.rel, path: &f.path, text: &f.text }).collect();
    // `output` from the copy's root: a folder's copy is one level below the build folder.
    let output = if project.files.folder { format!("../{GENERATED}") } else { format!("./{GENERATED}") };
    let patched = schema::patch_files(&sources, &schema::Patch { generator: generation.generator, output: &output })?;
    for removed in &patched.removed {
        printer.info(&format!(
            "note: preview feature `{removed}` is left out of the Deno client (edge clients reject it)"
        ));
    }
    for dropped in &patched.dropped_generators {
        tracing::debug!(generator = %dropped, "generator block left out of the client build");
    }
    // A single file is copied as `schema.prisma`, a folder as `schema/` with its files where they were.
    let schema_arg = if project.files.folder { SCHEMA_FOLDER } else { "schema.prisma" };
    let build_schema = build.path().join(schema_arg);
    for (rel, text) in &patched.files {
        let path = if project.files.folder { build_schema.join(rel) } else { build_schema.clone() };
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).context("cannot create the build schema folder")?;
        }
        fs_err::write(&path, text).context("cannot write the build schema")?;
    }
    link_node_modules(&prisma, build.path())?;
    let dummy = build.path().join(".pdp-no-engine");
    fs_err::write(&dummy, "").context("cannot write the placeholder engine file")?;
    let mirror = format!("http://127.0.0.1:{}", closed_port());

    // Generate.
    let entry_script = prisma.package_dir("prisma").join("build").join("index.js");
    let mut cmd = Cmd::new(&runner, format!("generate the Prisma {version} client"), build.path())
        .args(&runner_args)
        .arg(&entry_script)
        .args(generate::args(generation, schema_arg))
        .timeout(GENERATE_TIMEOUT);
    for (k, v) in generate::offline_env(generation, &dummy.to_string_lossy(), &mirror) {
        cmd = cmd.env(k, v);
    }
    steps.step(&format!("running prisma generate ({version}{})", if deno { ", under Deno" } else { "" }));
    tracing::debug!(command = %cmd, cwd = %build.path().display(), "prisma generate");
    let gen_started = Instant::now();
    match cmd.output() {
        Ok(out) => tracing::debug!(stdout = %out.stdout, "prisma generate finished"),
        Err(ProcessError::Failed { stderr, command, .. }) => {
            steps.finish();
            tracing::debug!(%command, "prisma generate failed");
            if generate::is_schema_error(&stderr) {
                // Prisma read the build copy, whose lines are the user's (the patcher keeps every line
                // number); name the user's files instead of the copy.
                let shown = schema_path.strip_prefix(&config.root).unwrap_or(schema_path).display().to_string();
                // Prisma names a file `schema.prisma:LINE` or, in a folder, `schema/REL:LINE`.
                let (copy, user) = if project.files.folder {
                    (format!("-->  {SCHEMA_FOLDER}/"), format!("-->  {shown}/"))
                } else {
                    ("-->  schema.prisma:".to_owned(), format!("-->  {shown}:"))
                };
                let stderr = stderr.replace(&build_schema.display().to_string(), &shown).replace(&copy, &user);
                return Err(ClientError::SchemaRejected {
                    schema: schema_path.clone(),
                    version: version.to_string(),
                    output: frame(&stderr),
                }
                .into());
            }
            anyhow::bail!("`prisma generate` (Prisma {version}) failed: `{command}`\n{}", frame(&stderr));
        }
        Err(e) => {
            steps.finish();
            return Err(e.into());
        }
    }
    let gen_time = gen_started.elapsed();

    // Patch and lay out.
    steps.step("patching the client for URL imports");
    let files = manifest::read_tree(&build.path().join(GENERATED))?;
    let ctx = output::Context {
        generator: generation.generator,
        prisma_version: &version.to_string(),
        runtime_version: &runtime_version,
    };
    let layout = output::lay_out(&files, &ctx)?;
    let manifest = Manifest {
        format: manifest::FORMAT,
        pdp_version: env!("CARGO_PKG_VERSION").to_owned(),
        prisma_version: version.to_string(),
        prisma_client_version: runtime_version.clone(),
        client_version: client_version.clone(),
        generator: schema::provider_of(generation.generator).to_owned(),
        wire_protocol: generate::wire_name(generate::wire_protocol(generation, &patched.preview_features)).to_owned(),
        schema_sha256: pdp_client::sha256_hex(&schema_bytes),
        inline_schema_hash: manifest::inline_schema_hash(&layout.files),
        preview_features: patched.preview_features.clone(),
        entry: layout.entry.clone(),
        stamp,
        files: manifest::file_entries(&layout.files),
    };

    steps.step(&format!("writing {}", target.display()));
    let staging = tempfile::Builder::new()
        .prefix(&format!(".pdp-staging-{client_version}-"))
        .tempdir_in(&out)
        .map_err(|source| ClientError::Io { path: out.clone(), source })?;
    manifest::write_tree(staging.path(), &layout.files, &manifest)?;
    swap_into_place(staging, &target, &out)?;
    drop(build);
    steps.finish();

    printer.status(
        "Built",
        &format!(
            "{} ({} files, Prisma {version}, {}; generate {:.1}s, total {:.1}s)",
            target.display(),
            manifest.files.len() + 1,
            manifest.wire_protocol,
            gen_time.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ),
    );
    print_import(&config, &client_version, &manifest.entry, &target, printer);
    Ok(Status::Success)
}

/// The folder version must be one URL path segment.
fn check_folder_name(version: &str) -> Result<(), UserError> {
    let bad = version.is_empty()
        || version == "."
        || version == ".."
        || version.starts_with('.')
        || version.contains(['/', '\\', '?', '#', '%', ' ']);
    if bad {
        return Err(UserError::new(
            format!("`{version}` cannot be the client's folder name"),
            "use a version such as `0.1.0` (--version or `[client] version`)",
        ));
    }
    Ok(())
}

/// The Deno executable inside the npm `deno` package: the platform package's binary (`@deno/<platform>/deno`),
/// which avoids the Node launcher; the launcher otherwise.
fn deno_binary(tool: &Installed) -> anyhow::Result<PathBuf> {
    let scope = tool.node_modules().join("@deno");
    if let Ok(entries) = fs_err::read_dir(&scope) {
        for entry in entries.flatten() {
            for name in ["deno", "deno.exe"] {
                let candidate = entry.path().join(name);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
    }
    let launcher = tool.node_modules().join(".bin").join("deno");
    if launcher.exists() {
        return Ok(launcher);
    }
    Err(NpmError::Broken { dir: tool.dir.clone(), why: "no Deno executable for this platform was installed".into() }
        .into())
}

/// `<build>/node_modules` → the tool's, so the CLI finds `@prisma/client` and never installs it itself.
fn link_node_modules(prisma: &Installed, build: &Path) -> anyhow::Result<()> {
    let link = build.join("node_modules");
    #[cfg(unix)]
    std::os::unix::fs::symlink(prisma.node_modules(), &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), prisma.node_modules().display()))?;
    #[cfg(not(unix))]
    anyhow::bail!("pdp build-client needs symbolic links (Unix) to run Prisma from its cache");
    Ok(())
}

/// A loopback port nothing listens on (bound, then released): engine downloads fail at once.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(9)
}

/// Renames `staging` to `target`; a previous `target` is moved aside first and deleted after.
fn swap_into_place(staging: tempfile::TempDir, target: &Path, out: &Path) -> Result<(), ClientError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClientError::Io { path, source }
    };
    let trash = tempfile::Builder::new().prefix(".pdp-old-").tempdir_in(out).map_err(io(out))?;
    if target.exists() {
        fs_err::rename(target, trash.path().join("previous")).map_err(io(target))?;
    }
    let staged = staging.keep();
    if let Err(e) = fs_err::rename(&staged, target) {
        // Put the previous output back before reporting.
        let _ = fs_err::rename(trash.path().join("previous"), target);
        let _ = fs_err::remove_dir_all(&staged);
        return Err(ClientError::Io { path: target.to_path_buf(), source: e });
    }
    Ok(())
}

fn report_install(steps: &Spinner<'_>, tool: &Installed) {
    if tool.fresh {
        steps.done(&format!("installed {} into {}", tool.spec.label(), tool.dir.display()));
    }
}

/// The line users paste into their script, on stdout.
fn print_import(config: &Config, client_version: &str, entry: &str, target: &Path, printer: &Printer) {
    match &config.client.base_url {
        Some(base) => {
            let base = base.as_str();
            let sep = if base.ends_with('/') { "" } else { "/" };
            printer.data(&format!("import {{ PrismaClient }} from \"{base}{sep}{client_version}/{entry}\";"));
        }
        None => {
            let local = url::Url::from_file_path(target.join(entry))
                .map(|u| u.to_string())
                .unwrap_or_else(|_| target.join(entry).display().to_string());
            printer.data(&format!("import {{ PrismaClient }} from \"{local}\";"));
            printer.info(
                "note: set `[client] base-url` in pdp.toml to the URL <out> is published at to print the import URL",
            );
        }
    }
}
