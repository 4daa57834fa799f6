//! Node-side tools provisioned from the npm registry into pdp's cache: one directory per tool and
//! version (`<cache>/tools/<name>@<version>/`), installed once with `npm install --ignore-scripts` into a
//! temp directory beside it and renamed into place under a lock, then reused by every project and run.
//!
//! Deliberately not here: choosing which packages a Prisma version needs (the caller passes a
//! [`ToolSpec`]), running the installed tools (that is [`crate::process::Cmd`]'s job), eviction, and
//! install scripts (npm does not run them here and nothing pdp needs requires them).
//!
//! Layout:
//!
//! ```text
//! tools/<name>@<version>/package.json           written by pdp: an empty private package
//! tools/<name>@<version>/node_modules/...       what npm installed
//! tools/<name>@<version>/pdp-tool.json          the package specs installed, written last (its presence means "complete")
//! tools/.<name>@<version>.lock                  held while one process installs
//! tools/.tmp-<name>@<version>-XXXXXX/           an install in progress (removed on failure)
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::files::{self, FileError};
use crate::process::{Cmd, ProcessError};
use crate::tools::{Tool, locate};

/// The stamp file whose presence marks a complete install.
pub const STAMP_FILE: &str = "pdp-tool.json";

/// How long one `npm install` may take before pdp gives up.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A tool to provision: a name and version for the directory, and the exact npm package specs installed
/// together into it (e.g. `prisma@4.16.2` and `@prisma/client@4.16.2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSpec {
    /// The tool's name (the directory's first half), e.g. `prisma`.
    pub name: String,
    /// The tool's version (the directory's second half).
    pub version: String,
    /// npm package specs, installed in one `npm install`.
    pub packages: Vec<String>,
}

impl ToolSpec {
    /// One package at one exact version.
    pub fn single(name: &str, version: &str) -> ToolSpec {
        ToolSpec { name: name.to_owned(), version: version.to_owned(), packages: vec![format!("{name}@{version}")] }
    }

    /// `<name>@<version>`, with a scope's `/` made safe for a file name (`@scope+name@1.0.0`).
    pub fn dir_name(&self) -> String {
        format!("{}@{}", self.name.replace('/', "+"), self.version)
    }

    /// `name@version`, as shown to people.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// The recorded content of [`STAMP_FILE`].
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    packages: Vec<String>,
}

/// How to run npm.
#[derive(Clone, Debug)]
pub struct Npm {
    /// The `npm` executable.
    pub program: PathBuf,
    /// `--registry` to pass, when the user configured one.
    pub registry: Option<String>,
    /// Limit for one install.
    pub timeout: Duration,
}

/// A provisioned tool.
#[derive(Clone, Debug)]
pub struct Installed {
    /// `<cache>/tools/<name>@<version>`.
    pub dir: PathBuf,
    /// What was asked for.
    pub spec: ToolSpec,
    /// Whether this call ran npm (false: the cache already had it).
    pub fresh: bool,
}

impl Installed {
    /// `<dir>/node_modules`.
    pub fn node_modules(&self) -> PathBuf {
        self.dir.join("node_modules")
    }

    /// Where package `name` was installed (`@scope/name` allowed).
    pub fn package_dir(&self, name: &str) -> PathBuf {
        name.split('/').fold(self.node_modules(), |p, part| p.join(part))
    }

    /// The version npm installed for package `name`, from its `package.json`.
    pub fn package_version(&self, name: &str) -> Result<String, NpmError> {
        let path = self.package_dir(name).join("package.json");
        let text = fs_err::read_to_string(&path).map_err(|source| NpmError::Io { path: path.clone(), source })?;
        #[derive(Deserialize)]
        struct Manifest {
            version: String,
        }
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| NpmError::Broken { dir: self.dir.clone(), why: format!("{}: {e}", path.display()) })?;
        Ok(manifest.version)
    }
}

/// What can go wrong provisioning a tool.
#[derive(Debug, thiserror::Error)]
pub enum NpmError {
    /// `node` or `npm` is not on PATH.
    #[error("`{program}` was not found on PATH (needed to install {tool})")]
    NotFound {
        /// `node` or `npm`.
        program: &'static str,
        /// The tool pdp wanted to install.
        tool: String,
    },
    /// `npm install` failed (unknown version, no network, registry down).
    #[error("could not install {tool} from the npm registry")]
    Install {
        /// The tool.
        tool: String,
        /// npm's failure, stderr framed.
        #[source]
        source: ProcessError,
    },
    /// npm said it succeeded but the package is not where it should be.
    #[error("the install of {} looks incomplete: {why}", .dir.display())]
    Broken {
        /// The tool directory.
        dir: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The install lock could not be taken.
    #[error(transparent)]
    Lock(#[from] FileError),
    /// A file or directory in the cache could not be read or written.
    #[error("cannot access {}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl NpmError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            NpmError::NotFound { .. } => Some(
                "install Node.js 18 or later with npm (https://nodejs.org, or your package manager), then run pdp again"
                    .into(),
            ),
            NpmError::Install { .. } => Some(
                "check that the npm registry is reachable (PDP_NPM_REGISTRY, HTTPS_PROXY) and that the version exists \
                 (`npm view <package> versions`)"
                    .into(),
            ),
            NpmError::Broken { dir, .. } => Some(format!("delete {} and run pdp again", dir.display())),
            NpmError::Lock(_) | NpmError::Io { .. } => {
                Some("check the permissions of the cache directory (`[engines] cache`, PDP_CACHE_DIR)".into())
            }
        }
    }

    /// Whether the user can fix it (missing node/npm, a version npm does not have).
    pub fn is_user_error(&self) -> bool {
        matches!(self, NpmError::NotFound { .. })
    }
}

/// Finds `node` and `npm` (project `node_modules/.bin` first, then `path_var`); both must exist.
pub fn find_node_and_npm(
    project: &Path,
    path_var: Option<&OsString>,
    tool: &str,
) -> Result<(PathBuf, PathBuf), NpmError> {
    let node =
        locate(Tool::Node, project, path_var).ok_or(NpmError::NotFound { program: "node", tool: tool.into() })?;
    let npm = locate(Tool::Npm, project, path_var).ok_or(NpmError::NotFound { program: "npm", tool: tool.into() })?;
    Ok((node, npm))
}

/// `<cache>/tools`.
pub fn tools_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("tools")
}

/// Where `spec` is (or would be) installed.
pub fn tool_dir(cache_root: &Path, spec: &ToolSpec) -> PathBuf {
    tools_dir(cache_root).join(spec.dir_name())
}

/// Every completely installed tool in the cache (a folder with its stamp), sorted by folder name:
/// (folder name, packages, folder). Half-written installs have no stamp and are not listed.
pub fn installed(cache_root: &Path) -> Vec<(String, Vec<String>, PathBuf)> {
    let Ok(entries) = fs_err::read_dir(tools_dir(cache_root)) else { return Vec::new() };
    let mut out: Vec<(String, Vec<String>, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let text = fs_err::read_to_string(dir.join(STAMP_FILE)).ok()?;
            let stamp: Stamp = serde_json::from_str(&text).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), stamp.packages, dir))
        })
        .collect();
    out.sort();
    out
}

/// The tool if it is completely installed with exactly `spec`'s packages; no lock, no npm.
pub fn cached(cache_root: &Path, spec: &ToolSpec) -> Option<Installed> {
    let dir = tool_dir(cache_root, spec);
    let text = fs_err::read_to_string(dir.join(STAMP_FILE)).ok()?;
    let stamp: Stamp = serde_json::from_str(&text).ok()?;
    (stamp.packages == spec.packages).then(|| Installed { dir, spec: spec.clone(), fresh: false })
}

/// Makes sure `spec` is installed in the cache and returns where. A cache hit runs nothing; otherwise
/// one process installs (others wait on the lock and then find it done). `npm` is only called for on a miss.
pub fn ensure(
    cache_root: &Path,
    spec: &ToolSpec,
    npm: impl FnOnce() -> Result<Npm, NpmError>,
) -> Result<Installed, NpmError> {
    if let Some(hit) = cached(cache_root, spec) {
        return Ok(hit);
    }
    let dir = tool_dir(cache_root, spec);
    let parent = tools_dir(cache_root);
    let _guard = files::lock_blocking(&files::lock_path(&dir))?;
    // Another process may have finished while we waited.
    if let Some(hit) = cached(cache_root, spec) {
        return Ok(hit);
    }
    let npm = npm()?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NpmError::Io { path, source }
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{}-", spec.dir_name()))
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    let package_json = tmp.path().join("package.json");
    fs_err::write(&package_json, "{\"name\":\"pdp-tool\",\"private\":true}\n").map_err(io(&package_json))?;
    let mut cmd = Cmd::new(&npm.program, format!("install {} with npm", spec.label()), tmp.path())
        .args(["install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", "--no-update-notifier"])
        .args(&spec.packages)
        .env("npm_config_loglevel", "warn")
        .timeout(npm.timeout);
    if let Some(registry) = &npm.registry {
        cmd = cmd.arg("--registry").arg(registry);
    }
    tracing::debug!(command = %cmd, dir = %tmp.path().display(), "installing a tool");
    cmd.output().map_err(|source| NpmError::Install { tool: spec.label(), source })?;
    for package in &spec.packages {
        let name = package_name(package);
        let path = name.split('/').fold(tmp.path().join("node_modules"), |p, part| p.join(part));
        if !path.join("package.json").is_file() {
            return Err(NpmError::Broken {
                dir: tmp.path().to_path_buf(),
                why: format!("npm did not install `{name}`"),
            });
        }
    }
    let stamp = serde_json::to_string_pretty(&Stamp { packages: spec.packages.clone() }).unwrap_or_default();
    let stamp_path = tmp.path().join(STAMP_FILE);
    fs_err::write(&stamp_path, stamp + "\n").map_err(io(&stamp_path))?;
    if dir.exists() {
        // A stale or different install of the same name: move it aside, then delete it.
        let trash = tempfile::Builder::new()
            .prefix(&format!(".old-{}-", spec.dir_name()))
            .tempdir_in(&parent)
            .map_err(io(&parent))?;
        let aside = trash.path().join("old");
        fs_err::rename(&dir, &aside).map_err(io(&dir))?;
    }
    let kept = tmp.keep();
    fs_err::rename(&kept, &dir).map_err(io(&dir))?;
    Ok(Installed { dir, spec: spec.clone(), fresh: true })
}

/// The package name of an npm spec: `@scope/name@range` → `@scope/name`, `name@1.0.0` → `name`.
pub fn package_name(spec: &str) -> &str {
    let search_from = usize::from(spec.starts_with('@'));
    match spec[search_from..].find('@') {
        Some(i) => &spec[..search_from + i],
        None => spec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &str, expect: &str) {
        assert_eq!(package_name(spec), expect, "spec: {spec}");
    }

    #[test]
    fn package_names() {
        check("prisma@4.16.2", "prisma");
        check("@prisma/client@>=7.10.0 <=7.10.1", "@prisma/client");
        check("@prisma/client", "@prisma/client");
        check("deno", "deno");
    }

    #[test]
    fn layout() {
        let spec = ToolSpec::single("deno", "2.9.6");
        assert_eq!(tool_dir(Path::new("/c"), &spec), Path::new("/c/tools/deno@2.9.6"));
        let scoped = ToolSpec::single("@prisma/client", "7.10.0");
        assert_eq!(scoped.dir_name(), "@prisma+client@7.10.0");
        assert_eq!(scoped.label(), "@prisma/client@7.10.0");
    }

    #[test]
    fn a_cache_hit_needs_the_exact_stamp_and_never_calls_npm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = ToolSpec::single("left-pad", "1.3.0");
        let tool = tool_dir(dir.path(), &spec);
        fs_err::create_dir_all(&tool).expect("mkdir");
        // A directory without a stamp is not a hit (an interrupted install).
        assert!(cached(dir.path(), &spec).is_none());
        fs_err::write(tool.join(STAMP_FILE), "{\"packages\":[\"left-pad@1.3.0\"]}").expect("write");
        let hit = ensure(dir.path(), &spec, || panic!("npm must not be needed on a hit")).expect("hit");
        assert!(!hit.fresh);
        let other = ToolSpec { packages: vec!["left-pad@1.3.0".into(), "x@1".into()], ..spec };
        assert!(cached(dir.path(), &other).is_none());
    }

    #[test]
    fn installed_lists_only_finished_installs() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(installed(dir.path()).is_empty(), "no tools folder yet");
        for (spec, stamped) in
            [(ToolSpec::single("deno", "2.9.6"), true), (ToolSpec::single("prisma", "7.10.0"), false)]
        {
            let tool = tool_dir(dir.path(), &spec);
            fs_err::create_dir_all(&tool).expect("mkdir");
            if stamped {
                fs_err::write(tool.join(STAMP_FILE), "{\"packages\":[\"deno@2.9.6\"]}").expect("write");
            }
        }
        let listed = installed(dir.path());
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].0, "deno@2.9.6");
        assert_eq!(listed[0].1, ["deno@2.9.6"]);
    }

    #[test]
    fn missing_npm_is_reported_with_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = find_node_and_npm(dir.path(), Some(&OsString::from("/nonexistent")), "prisma@4.16.2").unwrap_err();
        assert_eq!(err.to_string(), "`node` was not found on PATH (needed to install prisma@4.16.2)");
        assert!(err.hint().is_some_and(|h| h.contains("Node.js")));
        assert!(err.is_user_error());
    }
}
