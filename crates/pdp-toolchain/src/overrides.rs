//! The Binaries spec's override rules for `PRISMA_QUERY_ENGINE_BINARY`, `PRISMA_SCHEMA_ENGINE_BINARY` and
//! (4.x, and as a deprecated alias later) `PRISMA_MIGRATION_ENGINE_BINARY`.
//!
//! A variable holds either a path to a custom binary (relative to the working directory, or absolute) or
//! a known binary target name. A pinned path must exist and run here; a pinned target that does not run
//! here falls back to the other configured targets. "Runs here" means `<binary> --version` executes and
//! prints the commit of the Prisma version's engine hash; a different commit is an error naming both.
//! Which variables exist in which era comes from the generation table. Values arrive from the caller
//! (the binary reads the environment); this module never reads it and never prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pdp_config::prisma::Generation;
use pdp_config::targets::{lookup, modern_name};

use crate::engines::{EngineError, EngineHash, EngineKind, file_name};
use crate::fetch::{Fetcher, Job, Reporter};
use crate::process::Cmd;

/// How long `--version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// An override variable that is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// The variable's name.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// Whether the name is a deprecated alias in this era (`PRISMA_MIGRATION_ENGINE_BINARY` from 5.0).
    pub deprecated: bool,
}

/// The set variable overriding `kind` in this era, if any; `lookup` reads a variable (empty means unset,
/// as in Prisma). The current name wins over a deprecated alias.
pub fn find(generation: &Generation, kind: EngineKind, lookup: &dyn Fn(&str) -> Option<String>) -> Option<Override> {
    kind.override_vars(generation).iter().enumerate().find_map(|(i, var)| {
        let value = lookup(var).filter(|v| !v.trim().is_empty())?;
        Some(Override { var, value, deprecated: i > 0 })
    })
}

/// What an override value means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// A custom binary at this path (made absolute against the working directory).
    Path(PathBuf),
    /// A known binary target (legacy spec names mapped to today's).
    Target(&'static str),
}

/// Reads an override value: a known target name, else a path relative to `cwd`.
pub fn classify(value: &str, cwd: &Path) -> Pin {
    let v = value.trim();
    if let Some(t) = lookup(v) {
        return Pin::Target(t.name);
    }
    if let Some(t) = modern_name(v) {
        return Pin::Target(t);
    }
    Pin::Path(cwd.join(v))
}

/// What running `<binary> --version` showed.
#[derive(Debug)]
pub enum Probe {
    /// It ran; the commit it printed (the first 40-hex word), and its first line.
    Runs {
        /// The commit, when the output has one.
        commit: Option<String>,
        /// The first line of its output.
        line: String,
    },
    /// It did not run (wrong architecture, missing libraries, not a program, …).
    DoesNotRun(crate::process::ProcessError),
}

/// Runs `<binary> --version`.
pub fn probe(binary: &Path) -> Probe {
    let cwd = binary.parent().unwrap_or(Path::new("/"));
    match Cmd::new(binary, "ask the engine for its version", cwd).arg("--version").timeout(VERSION_TIMEOUT).output() {
        Err(e) => Probe::DoesNotRun(e),
        Ok(out) => {
            let text = if out.stdout.trim().is_empty() { out.stderr } else { out.stdout };
            let commit = text
                .split_whitespace()
                .find(|w| w.len() == 40 && w.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_ascii_lowercase);
            Probe::Runs { commit, line: text.lines().next().unwrap_or("").trim().to_owned() }
        }
    }
}

/// Where an override led.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The variable.
    pub var: &'static str,
    /// Whether the variable's name is deprecated in this era.
    pub deprecated: bool,
    /// The binary to use.
    pub path: PathBuf,
    /// The target whose engine it is, when the variable named a target.
    pub target: Option<String>,
    /// Targets tried before this one and why they were passed over.
    pub passed_over: Vec<String>,
}

/// Everything the rules need besides the variable.
pub struct Context<'a> {
    /// The project's generation.
    pub generation: &'static Generation,
    /// The Prisma version, for messages.
    pub version: &'a str,
    /// The engine kind overridden.
    pub kind: EngineKind,
    /// Fetches (or, offline, finds) engines of the version's hash.
    pub fetcher: &'a Fetcher<'a>,
    /// The configured targets, resolved, in order (fallbacks for a pinned target).
    pub targets: &'a [String],
    /// The working directory relative paths are taken from.
    pub cwd: &'a Path,
}

/// Applies the rules to one set variable.
pub async fn resolve(o: &Override, cx: &Context<'_>, reporter: &dyn Reporter) -> Result<Resolved, EngineError> {
    let expected = cx.fetcher.hash;
    match classify(&o.value, cx.cwd) {
        Pin::Path(path) => {
            if !path.exists() {
                return Err(EngineError::OverrideMissing { var: o.var, path });
            }
            match probe(&path) {
                Probe::DoesNotRun(source) => {
                    Err(EngineError::OverrideNotRunnable { var: o.var, path, source: Box::new(source) })
                }
                Probe::Runs { commit, line } => {
                    check_commit(Some(o.var), &path, commit, line, expected, cx.version)?;
                    Ok(Resolved { var: o.var, deprecated: o.deprecated, path, target: None, passed_over: Vec::new() })
                }
            }
        }
        Pin::Target(pinned) => {
            let mut candidates = vec![pinned.to_owned()];
            candidates.extend(cx.targets.iter().filter(|t| *t != pinned).cloned());
            let mut passed_over = Vec::new();
            for target in candidates {
                let Some(file) = file_name(cx.generation, cx.kind, &target) else {
                    return Err(EngineError::NoSuchEngine { version: cx.version.to_owned(), engine: cx.kind });
                };
                if lookup(&target).is_some_and(|t| !t.prebuilt) {
                    passed_over.push(format!("{target}: Prisma publishes no engines for it"));
                    continue;
                }
                let job = Job { target: target.clone(), kind: cx.kind, file };
                let fetched = match cx.fetcher.fetch(usize::MAX, &job, reporter).await {
                    Ok(f) => f,
                    Err(e) => {
                        passed_over.push(format!("{target}: {e}"));
                        continue;
                    }
                };
                match probe(&fetched.path) {
                    Probe::DoesNotRun(e) => {
                        let why = e.to_string();
                        passed_over.push(format!("{target}: does not run here ({})", why.lines().next().unwrap_or("")));
                    }
                    Probe::Runs { commit, line } => {
                        check_commit(Some(o.var), &fetched.path, commit, line, expected, cx.version)?;
                        return Ok(Resolved {
                            var: o.var,
                            deprecated: o.deprecated,
                            path: fetched.path,
                            target: Some(target),
                            passed_over,
                        });
                    }
                }
            }
            Err(EngineError::OverrideNoTargetRuns {
                var: o.var,
                target: pinned.to_owned(),
                engine: cx.kind,
                tried: passed_over,
            })
        }
    }
}

fn check_commit(
    var: Option<&'static str>,
    path: &Path,
    commit: Option<String>,
    line: String,
    expected: &EngineHash,
    version: &str,
) -> Result<(), EngineError> {
    match commit {
        Some(c) if c == expected.as_str() => Ok(()),
        other => Err(EngineError::WrongCommit {
            var,
            path: path.to_path_buf(),
            version: version.to_owned(),
            expected: expected.to_string(),
            actual: other.unwrap_or_else(|| if line.is_empty() { "nothing".into() } else { format!("`{line}`") }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use pdp_config::prisma::GENERATIONS;

    use super::*;

    fn generation(label: &str) -> &'static Generation {
        GENERATIONS.iter().find(|g| g.label == label).expect("label")
    }

    /// Which variable wins for an era and kind, given the set variables.
    fn check(label: &str, kind: EngineKind, set: &[(&str, &str)], expect: &str) {
        let env: BTreeMap<String, String> = set.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let got = match find(generation(label), kind, &|name| env.get(name).cloned()) {
            Some(o) => format!("{}={}{}", o.var, o.value, if o.deprecated { " (deprecated)" } else { "" }),
            None => "none".into(),
        };
        assert_eq!(got, expect, "{label} {kind} {set:?}");
    }

    #[test]
    fn variables_per_era() {
        use EngineKind::{Query, Schema};
        check("4.16", Schema, &[("PRISMA_MIGRATION_ENGINE_BINARY", "/m")], "PRISMA_MIGRATION_ENGINE_BINARY=/m");
        // 4.16.2 does not know PRISMA_SCHEMA_ENGINE_BINARY (engines.md §3, lab).
        check("4.16", Schema, &[("PRISMA_SCHEMA_ENGINE_BINARY", "/s")], "none");
        check("5.x", Schema, &[("PRISMA_SCHEMA_ENGINE_BINARY", "/s")], "PRISMA_SCHEMA_ENGINE_BINARY=/s");
        check(
            "5.x",
            Schema,
            &[("PRISMA_MIGRATION_ENGINE_BINARY", "/m")],
            "PRISMA_MIGRATION_ENGINE_BINARY=/m (deprecated)",
        );
        check(
            "6.8–6.19",
            Schema,
            &[("PRISMA_MIGRATION_ENGINE_BINARY", "/m"), ("PRISMA_SCHEMA_ENGINE_BINARY", "/s")],
            "PRISMA_SCHEMA_ENGINE_BINARY=/s",
        );
        check(
            "6.0–6.7",
            Query,
            &[("PRISMA_QUERY_ENGINE_BINARY", "linux-musl")],
            "PRISMA_QUERY_ENGINE_BINARY=linux-musl",
        );
        check("7.x", Query, &[("PRISMA_QUERY_ENGINE_BINARY", "/q")], "none");
        check("5.x", Query, &[("PRISMA_QUERY_ENGINE_BINARY", "")], "none");
    }

    #[test]
    fn values_are_targets_or_paths() {
        let cwd = Path::new("/work/p");
        assert_eq!(classify("linux-static-x64", cwd), Pin::Target("linux-static-x64"));
        assert_eq!(classify("linux-glibc-libssl3.0.0", cwd), Pin::Target("debian-openssl-3.0.x"));
        assert_eq!(classify("bin/qe", cwd), Pin::Path(PathBuf::from("/work/p/bin/qe")));
        assert_eq!(classify("/opt/qe", cwd), Pin::Path(PathBuf::from("/opt/qe")));
        // `native` is not a target name here: Prisma treats it as a path too.
        assert_eq!(classify("native", cwd), Pin::Path(PathBuf::from("/work/p/native")));
    }

    #[test]
    fn probe_reads_the_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("engine");
        fs_err::write(&script, "#!/bin/sh\necho \"query-engine 4BC8B6E1B66CB932731FB1BDBBC550D1E010DE81\"\n")
            .expect("write");
        crate::files::set_mode(&std::fs::File::open(&script).expect("open"), 0o755).expect("chmod");
        match probe(&script) {
            Probe::Runs { commit, line } => {
                assert_eq!(commit.as_deref(), Some("4bc8b6e1b66cb932731fb1bdbbc550d1e010de81"));
                assert_eq!(line, "query-engine 4BC8B6E1B66CB932731FB1BDBBC550D1E010DE81");
            }
            Probe::DoesNotRun(e) => panic!("should run: {e}"),
        }
        let garbage = dir.path().join("garbage");
        fs_err::write(&garbage, [0x7f, b'E', b'L', b'F', 0, 0, 0, 0]).expect("write");
        crate::files::set_mode(&std::fs::File::open(&garbage).expect("open"), 0o755).expect("chmod");
        assert!(matches!(probe(&garbage), Probe::DoesNotRun(_)));
    }
}
