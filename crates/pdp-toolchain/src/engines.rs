//! Which Prisma engine files a project needs and from which commit: the engine kinds, the file name per
//! era and target, the engine hash of a Prisma version (from the npm registry, cached on disk), the
//! engines cache's layout, and the one error type of the engines area.
//!
//! Era differences come from [`pdp_config::prisma::Generation`] (one table), never from version
//! comparisons here. Downloading is in [`crate::fetch`], the HTTP client in [`crate::http`], atomic
//! writes and locks in [`crate::files`], the `PRISMA_*_ENGINE_BINARY` rules in [`crate::overrides`].
//! Nothing here prints.
//!
//! The cache layout under the cache root (`[engines] cache`, `PDP_CACHE_DIR`):
//!
//! ```text
//! engines/versions/<prisma version>          the engine hash of that version, one line
//! engines/<hash>/<target>/<file>             a verified, executable engine (its presence means "verified")
//! engines/<hash>/<target>/<file>.sha256      the SHA-256 of that file, as checked at download
//! engines/<hash>/<target>/.<file>.lock       held while one process downloads the file
//! ```
//!
//! The cache only grows; delete a hash directory to reclaim space.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pdp_config::prisma::{Generation, PrismaVersion};
use pdp_config::redact_url;

use crate::files::{self, FileError};
use crate::http::{Http, HttpError};

/// The cache root and its layout.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at `root` (created lazily, on first write).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the engine hash of `version` is recorded.
    pub fn hash_record(&self, version: &PrismaVersion) -> PathBuf {
        self.root.join("engines").join("versions").join(version.to_string())
    }

    /// Where a verified engine file lives.
    pub fn engine_path(&self, hash: &EngineHash, target: &str, file: &str) -> PathBuf {
        self.root.join("engines").join(hash.as_str()).join(target).join(file)
    }
}

/// An engine program pdp fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EngineKind {
    /// The query engine binary (`query-engine`); none from Prisma 7.
    Query,
    /// The schema engine (`migration-engine` until 4.x, `schema-engine` from 5.0).
    Schema,
}

impl EngineKind {
    /// Both kinds, in display order.
    pub const ALL: [EngineKind; 2] = [EngineKind::Query, EngineKind::Schema];

    /// The word used on the command line (`query`, `schema`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Query => "query",
            EngineKind::Schema => "schema",
        }
    }

    /// The kinds a generation publishes.
    pub fn of(generation: &Generation) -> Vec<EngineKind> {
        EngineKind::ALL.into_iter().filter(|k| k.stem(generation).is_some()).collect()
    }

    /// The file's name on the mirror and in the cache without any `.exe`; `None` when the era has none.
    pub fn stem(self, generation: &Generation) -> Option<&'static str> {
        match self {
            EngineKind::Query => generation.has_query_engine.then_some("query-engine"),
            EngineKind::Schema => Some(generation.schema_engine_file),
        }
    }

    /// What `--version` prints before the commit hash (`query-engine`, `schema-engine-cli`, …).
    pub fn version_prefix(self, generation: &Generation) -> &'static str {
        match self {
            EngineKind::Query => "query-engine",
            EngineKind::Schema => generation.schema_engine_cli,
        }
    }

    /// The env vars that override this engine in this era, current name first.
    pub fn override_vars(self, generation: &Generation) -> &[&'static str] {
        match self {
            EngineKind::Query => generation.query_engine_env.as_slice(),
            EngineKind::Schema => generation.schema_engine_env,
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine file name for `target`: the stem, plus `.exe` on Windows (before `.gz` on the mirror).
pub fn file_name(generation: &Generation, kind: EngineKind, target: &str) -> Option<String> {
    let stem = kind.stem(generation)?;
    Some(if target == "windows" { format!("{stem}.exe") } else { stem.to_owned() })
}

/// A prisma-engines commit: 40 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EngineHash(String);

impl EngineHash {
    /// The hash as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last 40 hex characters of an `@prisma/engines-version` version
    /// (`4.16.1-1.4bc8…`, `6.20.0-16.next-0c19…`), Prisma's fallback when `prisma.enginesVersion` is absent.
    pub fn from_engines_version(version: &str) -> Option<EngineHash> {
        let tail = version.get(version.len().checked_sub(40)?..)?;
        tail.parse().ok()
    }
}

impl FromStr for EngineHash {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(EngineHash(t.to_ascii_lowercase()))
        } else {
            Err(EngineError::BadHash { value: s.to_owned() })
        }
    }
}

impl fmt::Display for EngineHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an engine hash came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashSource {
    /// `--engine-hash`.
    Flag,
    /// A record pdp wrote earlier.
    Cache(PathBuf),
    /// Looked up now; the URL of the `@prisma/engines` manifest (redacted).
    Registry(String),
}

impl fmt::Display for HashSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashSource::Flag => f.write_str("--engine-hash"),
            HashSource::Cache(p) => write!(f, "cached in {}", p.display()),
            HashSource::Registry(url) => write!(f, "npm registry, {url}"),
        }
    }
}

/// An engine hash and where it came from.
#[derive(Clone, Debug)]
pub struct ResolvedHash {
    /// The commit.
    pub hash: EngineHash,
    /// Its source.
    pub source: HashSource,
}

/// Finds the engine hash of `version`: the flag if given, else the cached record, else the npm registry
/// (`@prisma/engines@<version>` names an `@prisma/engines-version` whose `prisma.enginesVersion` is the
/// hash; engines.md §3). A looked-up hash is recorded in the cache so later runs work offline.
pub async fn resolve_hash(
    version: &PrismaVersion,
    flag: Option<&str>,
    cache: &Cache,
    http: &Http,
    registry: &url::Url,
    offline: bool,
) -> Result<ResolvedHash, EngineError> {
    if let Some(flag) = flag {
        return Ok(ResolvedHash { hash: flag.parse()?, source: HashSource::Flag });
    }
    let record = cache.hash_record(version);
    if let Ok(text) = fs_err::read_to_string(&record)
        && let Ok(hash) = text.parse::<EngineHash>()
    {
        return Ok(ResolvedHash { hash, source: HashSource::Cache(record) });
    }
    if offline {
        return Err(EngineError::HashNotCached { version: version.to_string(), path: record });
    }
    let base = registry.as_str().trim_end_matches('/');
    let manifest_url = format!("{base}/@prisma%2Fengines/{version}");
    let manifest = match http.get_json(&manifest_url).await? {
        Some(m) => m,
        None => {
            return Err(EngineError::VersionNotPublished {
                version: version.to_string(),
                url: redact_url(&manifest_url),
            });
        }
    };
    // `dependencies` from 5.10, `devDependencies` before (4.16.2 included).
    let engines_version = ["dependencies", "devDependencies"]
        .iter()
        .find_map(|field| manifest.get(field)?.get("@prisma/engines-version")?.as_str())
        .ok_or_else(|| EngineError::RegistryData {
            url: redact_url(&manifest_url),
            why: "it names no `@prisma/engines-version` in `dependencies` or `devDependencies`".into(),
        })?
        .to_owned();
    let ev_url = format!("{base}/@prisma%2Fengines-version/{engines_version}");
    let from_field = match http.get_json(&ev_url).await? {
        Some(doc) => doc.pointer("/prisma/enginesVersion").and_then(|v| v.as_str()).and_then(|s| s.parse().ok()),
        None => None,
    };
    let hash = from_field.or_else(|| EngineHash::from_engines_version(&engines_version)).ok_or_else(|| {
        EngineError::RegistryData {
            url: redact_url(&ev_url),
            why: format!("`{engines_version}` carries no engine hash"),
        }
    })?;
    files::write_atomic(&record, format!("{hash}\n").as_bytes(), None)?;
    Ok(ResolvedHash { hash, source: HashSource::Registry(redact_url(&manifest_url)) })
}

/// Everything that can go wrong resolving, fetching or overriding engines.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `--engine-hash` is not a commit hash.
    #[error("`{value}` is not an engine hash (expected 40 hex characters)")]
    BadHash {
        /// What was given.
        value: String,
    },
    /// The npm registry has no `@prisma/engines` of this version.
    #[error("Prisma {version} is not published: {url} answered 404")]
    VersionNotPublished {
        /// The Prisma version.
        version: String,
        /// The manifest URL.
        url: String,
    },
    /// The registry answered with something pdp cannot read.
    #[error("unexpected npm registry data at {url}: {why}")]
    RegistryData {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// `--offline` and the hash of this version was never looked up.
    #[error("the engine hash of Prisma {version} is not cached (looked for {}) and --offline forbids asking the npm registry", .path.display())]
    HashNotCached {
        /// The Prisma version.
        version: String,
        /// Where the record would be.
        path: PathBuf,
    },
    /// `--offline` (or `pdp engines path`) and the engine is not in the cache.
    #[error("the {engine} engine for `{target}` is not in the cache ({})", .path.display())]
    NotCached {
        /// The engine kind.
        engine: EngineKind,
        /// The binary target.
        target: String,
        /// Where it would be.
        path: PathBuf,
    },
    /// The Prisma version has no engine of this kind.
    #[error("Prisma {version} has no {engine} engine")]
    NoSuchEngine {
        /// The Prisma version.
        version: String,
        /// The engine kind.
        engine: EngineKind,
    },
    /// Prisma publishes no engines for this target.
    #[error("Prisma publishes no prebuilt engines for `{target}`")]
    NoPrebuilt {
        /// The binary target.
        target: String,
        /// The override variable for the engine asked for.
        var: Option<&'static str>,
    },
    /// The mirror answered 404.
    #[error("no {engine} engine for `{target}` at commit {hash}: {url} answered 404")]
    NotPublished {
        /// The URL.
        url: String,
        /// The binary target.
        target: String,
        /// The engine kind.
        engine: EngineKind,
        /// The commit.
        hash: String,
    },
    /// A request failed, or the registry's answer was not JSON.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The download ended early or is not gzip (after retries).
    #[error("{url} is truncated or not gzip data{}", attempts_note(*.attempts))]
    Corrupt {
        /// The URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The decoder's complaint.
        #[source]
        source: std::io::Error,
    },
    /// A `.sha256` file does not start with a SHA-256.
    #[error("{url} does not hold a SHA-256 checksum")]
    BadChecksumFile {
        /// The URL of the checksum file.
        url: String,
    },
    /// The download does not match its published checksum.
    #[error(
        "checksum mismatch for the {what} {engine} engine of `{target}` from {url}: expected {expected}, got {actual}"
    )]
    Checksum {
        /// `gzip` or `unpacked`.
        what: &'static str,
        /// The engine kind.
        engine: EngineKind,
        /// The binary target.
        target: String,
        /// The URL downloaded.
        url: String,
        /// The published SHA-256.
        expected: String,
        /// The SHA-256 of what arrived.
        actual: String,
    },
    /// A file in the cache could not be written or locked.
    #[error(transparent)]
    File(#[from] FileError),
    /// An override variable names a path that does not exist.
    #[error("{var} is set to `{}`, which does not exist", .path.display())]
    OverrideMissing {
        /// The variable.
        var: &'static str,
        /// The path, resolved against the working directory.
        path: PathBuf,
    },
    /// An override variable names a binary that does not run here.
    #[error("{var} names `{}`, which does not run on this machine", .path.display())]
    OverrideNotRunnable {
        /// The variable.
        var: &'static str,
        /// The path.
        path: PathBuf,
        /// Why it did not run.
        #[source]
        source: Box<crate::process::ProcessError>,
    },
    /// An engine runs but is built from another commit.
    #[error("`{}` reports commit {actual}, but Prisma {version} needs engine commit {expected}", .path.display())]
    WrongCommit {
        /// The variable that pointed at it, if any.
        var: Option<&'static str>,
        /// The binary.
        path: PathBuf,
        /// The Prisma version.
        version: String,
        /// The version's engine hash.
        expected: String,
        /// What `--version` printed (its commit, or the whole line when it has none).
        actual: String,
    },
    /// An override names a target, and neither it nor any configured fallback runs here.
    #[error("{var}={target}: no {engine} engine of the pinned or configured targets runs on this machine:\n  {}", .tried.join("\n  "))]
    OverrideNoTargetRuns {
        /// The variable.
        var: &'static str,
        /// The pinned target.
        target: String,
        /// The engine kind.
        engine: EngineKind,
        /// One line per target tried: the target and why it was passed over.
        tried: Vec<String>,
    },
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 { format!(" (after {attempts} attempts)") } else { String::new() }
}

impl EngineError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::BadHash { .. } => {
                Some("pass the full commit, e.g. `--engine-hash 4bc8b6e1b66cb932731fb1bdbbc550d1e010de81`".into())
            }
            EngineError::VersionNotPublished { .. } => {
                Some("check `[prisma] version` in pdp.toml against `npm view prisma versions`".into())
            }
            EngineError::RegistryData { .. } => Some("pass the engine commit with `--engine-hash`".into()),
            EngineError::HashNotCached { .. } => Some("run once without --offline, or pass `--engine-hash`".into()),
            EngineError::NotCached { target, engine, .. } => {
                Some(format!("run `pdp engines fetch --target {target} --engine {engine}` (with network access) first"))
            }
            EngineError::NoSuchEngine { .. } => {
                Some("Prisma 7 has no query engine; `pdp serve` runs the query-plan executor instead".into())
            }
            EngineError::NoPrebuilt { var, .. } => Some(match var {
                Some(var) => format!("build the engine yourself and point {var} at it, or pick another target"),
                None => "pick a target Prisma builds for, e.g. `linux-static-x64`".into(),
            }),
            EngineError::NotPublished { .. } => Some(
                "check the target name and `[engines] mirror` / PRISMA_ENGINES_MIRROR; a mirror must hold \
                 all_commits/<hash>/<target>/<file>.gz and its .sha256 files"
                    .into(),
            ),
            EngineError::Http(HttpError::Request { .. } | HttpError::Status { .. }) => {
                Some("check the network, HTTPS_PROXY / NO_PROXY, and `[engines] mirror`".into())
            }
            EngineError::Http(e) => e.hint(),
            EngineError::Checksum { .. } | EngineError::BadChecksumFile { .. } | EngineError::Corrupt { .. } => {
                Some("nothing was written to the cache; if it persists, the mirror serves a bad copy".into())
            }
            EngineError::File(_) => Some("check the permissions of `[engines] cache` (PDP_CACHE_DIR)".into()),
            EngineError::OverrideMissing { var, .. } => {
                Some(format!("fix or unset {var}; a relative path is taken from the working directory"))
            }
            EngineError::OverrideNotRunnable { var, .. } => {
                Some(format!("{var} must name a binary built for this machine, or a binary target name"))
            }
            EngineError::WrongCommit { var: Some(var), .. } => {
                Some(format!("point {var} at an engine built from the expected commit, or unset it"))
            }
            EngineError::WrongCommit { var: None, .. } => Some("delete the cached file and fetch it again".into()),
            EngineError::OverrideNoTargetRuns { var, .. } => {
                Some(format!("add this machine's target (`native`) to `[engines] targets`, or unset {var}"))
            }
        }
    }

    /// Whether the user can fix it (exit 2) rather than it being a failure of the network, mirror or OS.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            EngineError::BadHash { .. }
                | EngineError::VersionNotPublished { .. }
                | EngineError::HashNotCached { .. }
                | EngineError::NotCached { .. }
                | EngineError::NoSuchEngine { .. }
                | EngineError::NoPrebuilt { .. }
                | EngineError::NotPublished { .. }
                | EngineError::OverrideMissing { .. }
                | EngineError::OverrideNotRunnable { .. }
                | EngineError::WrongCommit { var: Some(_), .. }
                | EngineError::OverrideNoTargetRuns { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdp_config::prisma::GENERATIONS;

    fn generation(label: &str) -> &'static Generation {
        GENERATIONS.iter().find(|g| g.label == label).expect("label")
    }

    /// One era and target: the files it needs, the `--version` prefixes and override variables.
    fn check(label: &str, target: &str, expect: &str) {
        let g = generation(label);
        let got = EngineKind::of(g)
            .into_iter()
            .map(|k| {
                format!(
                    "{}:{}:{}:{}",
                    k,
                    file_name(g, k, target).expect("file"),
                    k.version_prefix(g),
                    k.override_vars(g).join("|")
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(got, expect, "{label} {target}");
    }

    #[test]
    fn file_names_per_era() {
        check(
            "4.16",
            "linux-static-x64",
            "query:query-engine:query-engine:PRISMA_QUERY_ENGINE_BINARY \
             schema:migration-engine:migration-engine-cli:PRISMA_MIGRATION_ENGINE_BINARY",
        );
        check(
            "5.x",
            "debian-openssl-3.0.x",
            "query:query-engine:query-engine:PRISMA_QUERY_ENGINE_BINARY \
             schema:schema-engine:schema-engine-cli:PRISMA_SCHEMA_ENGINE_BINARY|PRISMA_MIGRATION_ENGINE_BINARY",
        );
        check(
            "6.8–6.19",
            "windows",
            "query:query-engine.exe:query-engine:PRISMA_QUERY_ENGINE_BINARY \
             schema:schema-engine.exe:schema-engine-cli:PRISMA_SCHEMA_ENGINE_BINARY|PRISMA_MIGRATION_ENGINE_BINARY",
        );
        check(
            "7.x",
            "darwin-arm64",
            "schema:schema-engine:schema-engine-cli:PRISMA_SCHEMA_ENGINE_BINARY|PRISMA_MIGRATION_ENGINE_BINARY",
        );
        assert_eq!(file_name(generation("7.x"), EngineKind::Query, "windows"), None);
    }

    /// The one test that talks to the real npm registry (reachable here and in CI); the loopback e2e
    /// tests cover the same code against a fake registry.
    #[tokio::test]
    async fn real_registry_gives_the_4_16_2_hash_then_the_cache_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let http = Http::new(&Default::default(), Default::default()).expect("client");
        let registry = pdp_config::NetworkConfig::default().registry();
        let v: PrismaVersion = "4.16.2".parse().expect("version");
        let got = resolve_hash(&v, None, &cache, &http, &registry, false).await.expect("lookup");
        assert_eq!(got.hash.as_str(), "4bc8b6e1b66cb932731fb1bdbbc550d1e010de81");
        assert_eq!(got.source, HashSource::Registry("https://registry.npmjs.org/@prisma%2Fengines/4.16.2".into()));
        let again = resolve_hash(&v, None, &cache, &http, &registry, true).await.expect("cached");
        assert_eq!(again.hash, got.hash);
        assert_eq!(again.source, HashSource::Cache(cache.hash_record(&v)));
        let other: PrismaVersion = "5.22.0".parse().expect("version");
        let err = resolve_hash(&other, None, &cache, &http, &registry, true).await.unwrap_err();
        assert!(matches!(err, EngineError::HashNotCached { .. }), "{err}");
    }

    #[test]
    fn cache_layout() {
        let cache = Cache::new("/c");
        let hash: EngineHash = "4bc8b6e1b66cb932731fb1bdbbc550d1e010de81".parse().expect("hash");
        let v: PrismaVersion = "4.16.2".parse().expect("version");
        assert_eq!(cache.hash_record(&v), Path::new("/c/engines/versions/4.16.2"));
        let p = cache.engine_path(&hash, "linux-static-x64", "query-engine");
        assert_eq!(p, Path::new("/c/engines/4bc8b6e1b66cb932731fb1bdbbc550d1e010de81/linux-static-x64/query-engine"));
        assert_eq!(
            files::lock_path(&p),
            Path::new("/c/engines/4bc8b6e1b66cb932731fb1bdbbc550d1e010de81/linux-static-x64/.query-engine.lock")
        );
    }

    #[test]
    fn hashes() {
        let ok = |s: &str| s.parse::<EngineHash>().map(|h| h.to_string()).map_err(|e| e.to_string());
        assert_eq!(
            ok(" 4BC8B6E1B66CB932731FB1BDBBC550D1E010DE81\n").as_deref(),
            Ok("4bc8b6e1b66cb932731fb1bdbbc550d1e010de81")
        );
        assert_eq!(ok("4bc8b6e1").unwrap_err(), "`4bc8b6e1` is not an engine hash (expected 40 hex characters)");
        assert!(ok("g".repeat(40).as_str()).is_err());
        let ev = |s: &str| EngineHash::from_engines_version(s).map(|h| h.to_string());
        assert_eq!(
            ev("4.16.1-1.4bc8b6e1b66cb932731fb1bdbbc550d1e010de81").as_deref(),
            Some("4bc8b6e1b66cb932731fb1bdbbc550d1e010de81")
        );
        assert_eq!(
            ev("6.20.0-16.next-0c19ccc313cf9911a90d99d2ac2eb0280c76c513").as_deref(),
            Some("0c19ccc313cf9911a90d99d2ac2eb0280c76c513")
        );
        assert_eq!(ev("1.0.0"), None);
    }
}
