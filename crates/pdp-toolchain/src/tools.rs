//! Finds the Node-side tools pdp drives (node, npm, deno, the Prisma CLI) and reads their versions.
//!
//! Lookup order: the project's `node_modules/.bin`, then `PATH` (passed in, never read from the process
//! here). It does not install anything; provisioning pinned versions is a separate concern.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{Cmd, ProcessError};

/// A tool pdp may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Node.js.
    Node,
    /// npm.
    Npm,
    /// Deno.
    Deno,
    /// The Prisma CLI.
    Prisma,
}

impl Tool {
    /// Every tool, in report order.
    pub const ALL: [Tool; 4] = [Tool::Node, Tool::Npm, Tool::Deno, Tool::Prisma];

    /// The executable name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Node => "node",
            Tool::Npm => "npm",
            Tool::Deno => "deno",
            Tool::Prisma => "prisma",
        }
    }
}

/// A tool that was found.
#[derive(Clone, Debug)]
pub struct Found {
    /// Which tool.
    pub tool: Tool,
    /// Where.
    pub path: PathBuf,
    /// Its version, or why it could not be read.
    pub version: Result<String, String>,
}

/// Where `tool` is: `<project>/node_modules/.bin` first, then the directories of `path_var`.
pub fn locate(tool: Tool, project: &Path, path_var: Option<&OsString>) -> Option<PathBuf> {
    let local = project.join("node_modules").join(".bin");
    let mut dirs: Vec<PathBuf> = vec![local];
    if let Some(p) = path_var {
        dirs.extend(std::env::split_paths(p));
    }
    let joined = std::env::join_paths(dirs).ok()?;
    which::which_in(tool.program(), Some(joined), project).ok()
}

/// Finds `tool` and asks it for its version (bounded by `timeout`).
pub fn probe(tool: Tool, project: &Path, path_var: Option<&OsString>, timeout: Duration) -> Option<Found> {
    let path = locate(tool, project, path_var)?;
    let cmd =
        Cmd::new(&path, format!("read the version of {}", tool.program()), project).arg("--version").timeout(timeout);
    let version = match cmd.output() {
        Ok(out) => parse_version(tool, &out.stdout)
            .ok_or_else(|| format!("unrecognised `--version` output: {}", out.stdout.trim())),
        Err(ProcessError::Failed { stderr, .. }) => Err(stderr.lines().next().unwrap_or("failed").to_owned()),
        Err(e) => Err(e.to_string()),
    };
    Some(Found { tool, path, version })
}

/// Extracts the version number from a tool's `--version` output.
pub fn parse_version(tool: Tool, output: &str) -> Option<String> {
    let line = match tool {
        // `prisma --version` prints a table; the CLI's own line starts with `prisma` (5.x+) or
        // `Prisma CLI Version` / `@prisma/cli` (older).
        Tool::Prisma => output.lines().find(|l| {
            let l = l.trim_start().to_ascii_lowercase();
            l.starts_with("prisma ")
                || l.starts_with("prisma:")
                || l.starts_with("@prisma/cli")
                || l.starts_with("prisma cli")
        })?,
        _ => output.lines().find(|l| !l.trim().is_empty())?,
    };
    let candidate = match tool {
        Tool::Prisma => line.rsplit(':').next()?.trim(),
        Tool::Deno => line.split_whitespace().nth(1)?,
        _ => line.trim(),
    };
    let v = candidate.trim_start_matches('v');
    v.split('.').next()?.parse::<u64>().ok()?;
    Some(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version(Tool::Node, "v20.20.2\n").as_deref(), Some("20.20.2"));
        assert_eq!(parse_version(Tool::Npm, "11.19.1\n").as_deref(), Some("11.19.1"));
        assert_eq!(
            parse_version(
                Tool::Deno,
                "deno 2.5.6 (stable, release, x86_64-unknown-linux-gnu)\nv8 14.0\ntypescript 5.9\n"
            )
            .as_deref(),
            Some("2.5.6")
        );
        let prisma5 = "Environment variables loaded from .env\nprisma                  : 5.22.0\n@prisma/client          : 5.22.0\nComputed binaryTarget   : debian-openssl-3.0.x\n";
        assert_eq!(parse_version(Tool::Prisma, prisma5).as_deref(), Some("5.22.0"));
        assert_eq!(parse_version(Tool::Prisma, "Prisma CLI Version : 4.16.2\n").as_deref(), Some("4.16.2"));
        assert_eq!(parse_version(Tool::Node, "garbage"), None);
    }

    #[test]
    fn finds_sh_on_path_and_project_bin_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("node_modules/.bin");
        fs_err::create_dir_all(&bin).expect("mkdir");
        let fake = bin.join("node");
        fs_err::write(&fake, "#!/bin/sh\necho v99.1.0\n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let path = OsString::from("/usr/bin:/bin");
        let found = probe(Tool::Node, dir.path(), Some(&path), Duration::from_secs(5)).expect("found");
        assert_eq!(found.path, fake);
        assert_eq!(found.version.as_deref(), Ok("99.1.0"));
        assert!(locate(Tool::Deno, dir.path(), Some(&OsString::from("/nonexistent"))).is_none());
    }
}
