//! Repository checks that run under `cargo test` (rust-analyzer's tidy): module docs everywhere, no
//! ignored tests, and the pdp.toml reference covering every key the parser and the init template know.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Runs every check; the error lists every violation.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    module_docs_and_no_ignore(root, &mut problems)?;
    reference_covers_keys(root, &mut problems)?;
    if !problems.is_empty() {
        bail!("tidy found {} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    Ok(())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn module_docs_and_no_ignore(root: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        rust_files(&root.join(dir), &mut files)?;
    }
    // Spelled in two parts so this file does not trip its own check.
    let ignore_attr = concat!("#[", "ignore");
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let rel = file.strip_prefix(root).unwrap_or(&file).display().to_string();
        if !text.starts_with("//!") {
            problems.push(format!("{rel}: must start with a `//!` line saying what the module does and doesn't"));
        }
        if text.contains(ignore_attr) {
            problems.push(format!("{rel}: ignored tests are not allowed; make the test pass or fail"));
        }
    }
    Ok(())
}

/// `section.key` pairs of a TOML-ish file: `[a.b]` headers and `key =` lines, comments skipped.
fn keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with("{%") || line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = h.to_owned();
            out.insert(section.clone());
        } else if let Some((k, _)) = line.split_once('=') {
            out.insert(format!("{section}.{}", k.trim()));
        }
    }
    out
}

fn reference_covers_keys(root: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let reference = keys(&std::fs::read_to_string(root.join("crates/pdp-config/reference.toml"))?);
    let template = keys(&std::fs::read_to_string(root.join("templates/pdp.toml.j2"))?);
    for k in template.difference(&reference) {
        problems.push(format!(
            "templates/pdp.toml.j2 writes `{k}`, which crates/pdp-config/reference.toml does not document"
        ));
    }
    // Every field of the raw structs, by struct -> section.
    let raw = std::fs::read_to_string(root.join("crates/pdp-config/src/raw.rs"))?;
    let sections = [
        ("RawPrisma", "prisma"),
        ("RawDatabase", "database"),
        ("RawEngines", "engines"),
        ("RawClient", "client"),
        ("RawServe", "serve"),
        ("RawLimits", "serve.limits"),
        ("RawMigrate", "migrate"),
    ];
    let mut current: Option<&str> = None;
    let mut seen_structs = 0;
    for line in raw.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub(crate) struct ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            current = sections.iter().find(|(s, _)| *s == name).map(|(_, sec)| *sec);
            seen_structs += usize::from(current.is_some());
        } else if let (Some(section), Some(field)) = (current, line.strip_prefix("pub ")) {
            let name = field.split(':').next().unwrap_or("").replace('_', "-");
            let key = format!("{section}.{name}");
            if name != "limits" && !reference.contains(&key) {
                problems
                    .push(format!("pdp.toml key `{key}` (raw.rs) is missing from crates/pdp-config/reference.toml"));
            }
        }
    }
    if seen_structs != sections.len() {
        problems.push(format!(
            "tidy expected {} raw sections in raw.rs, found {seen_structs}: update xtask/src/tidy.rs",
            sections.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tidy() {
        super::run(&crate::project_root()).unwrap_or_else(|e| panic!("{e:#}"));
    }

    #[test]
    fn keys_reads_sections_and_keys() {
        let k = super::keys("# c\n[a]\nx = 1\n# y = 2\n[a.b]\nz=\"q\"\n");
        assert_eq!(k.into_iter().collect::<Vec<_>>(), ["a", "a.b", "a.b.z", "a.x"]);
    }
}
