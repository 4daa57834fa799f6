//! Repository checks that run under `cargo test` (rust-analyzer's tidy): module docs everywhere, no
//! ignored tests, the pdp.toml reference covering every key the parser and the init template know, and no
//! import circle between the files of a crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Runs every check; the error lists every violation.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    module_docs_and_no_ignore(root, &mut problems)?;
    reference_covers_keys(root, &mut problems)?;
    no_import_circles(root, &mut problems)?;
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
    for dir in ["crates", "xtask", "tests", "fuzz/fuzz_targets"] {
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

/// A module of a crate: its path from the crate root (`[]` for lib.rs/main.rs, `["kit", "txs"]`).
type ModPath = Vec<String>;

/// Every crate under `crates/`: its files as modules, the modules each file refers to (`crate::a::b`,
/// `super::x`, or a child module `x::` it declares), and any circle among them.
fn no_import_circles(root: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(root.join("crates"))? {
        let src = entry?.path().join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files)?;
        let mut modules: BTreeMap<ModPath, PathBuf> = BTreeMap::new();
        for file in &files {
            modules.insert(module_path(&src, file), file.clone());
        }
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (module, file) in &modules {
            let text = std::fs::read_to_string(file)?;
            let targets = references(module, &text, &|m: &ModPath| modules.contains_key(m));
            edges.insert(module.clone(), targets.into_iter().filter(|t| t != module).collect());
        }
        for circle in circles(&edges) {
            let names: Vec<String> = circle
                .iter()
                .map(|m| modules[m].strip_prefix(root).unwrap_or(&modules[m]).display().to_string())
                .collect();
            problems.push(format!(
                "import circle between files: {} (move what they share into its own module)",
                names.join(" -> ")
            ));
        }
    }
    Ok(())
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if !matches!(stem, "lib" | "main" | "mod") {
            parts.push(stem.to_owned());
        }
    }
    parts
}

/// The modules `text` (the file of `module`) refers to, as far as `exists` knows them. The test module
/// (from `#[cfg(test)]` followed by `mod`) and comments (whole-line and trailing `//`) are left out. A
/// path through a re-export (`crate::kit::Body` where `kit` re-exports `kit::body::Body`) counts as a
/// reference to the re-exporting module: import from where a thing is defined, or the circle shows.
fn references(module: &ModPath, text: &str, exists: &dyn Fn(&ModPath) -> bool) -> BTreeSet<ModPath> {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| strip_visibility(next.trim()).starts_with("mod "))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let without_comment = match line.find(" //") {
            Some(at) => &line[..at],
            None => line,
        };
        code.push_str(without_comment);
        code.push('\n');
    }
    let children: BTreeSet<String> = code
        .lines()
        .filter_map(|l| strip_visibility(l.trim()).strip_prefix("mod ")?.strip_suffix(';').map(|n| n.trim().to_owned()))
        .collect();
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        if !code[i..].starts_with("::") {
            continue;
        }
        let word = &code[start..i];
        let base: Option<ModPath> = match word {
            "crate" => Some(Vec::new()),
            "super" => Some(module[..module.len().saturating_sub(1)].to_vec()),
            "self" => Some(module.clone()),
            w if children.contains(w) => Some([module.clone(), vec![w.to_owned()]].concat()),
            _ => None,
        };
        let Some(base) = base else { continue };
        for path in paths_after(&code[i + 2..]) {
            let mut full = base.clone();
            full.extend(path);
            // The longest prefix that is a module of this crate.
            while !full.is_empty() && !exists(&full) {
                full.pop();
            }
            out.insert(full);
        }
    }
    out
}

/// `pub mod x`, `pub(crate) mod x`, `pub(super) mod x` … as `mod x`.
fn strip_visibility(line: &str) -> &str {
    match line.strip_prefix("pub") {
        Some(rest) if rest.starts_with(' ') => rest.trim_start(),
        Some(rest) if rest.starts_with('(') => rest.split_once(')').map_or(line, |(_, r)| r.trim_start()),
        _ => line,
    }
}

/// The paths a `use` or expression continues with after `prefix::`: `a::b`, or each item of `{a, b::c}`.
fn paths_after(rest: &str) -> Vec<Vec<String>> {
    let bytes = rest.as_bytes();
    let mut segs = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            segs.push(rest[start..i].to_owned());
        }
        if rest[i..].starts_with("::") {
            i += 2;
            continue;
        }
        if i == start && rest[i..].starts_with('{') {
            let mut depth = 0;
            let mut item_start = i + 1;
            let mut out = Vec::new();
            for (k, b) in bytes.iter().enumerate().skip(i) {
                match b {
                    b'{' => depth += 1,
                    b'}' | b',' if depth == 1 => {
                        for tail in paths_after(rest[item_start..k].trim()) {
                            out.push([segs.clone(), tail].concat());
                        }
                        item_start = k + 1;
                        if *b == b'}' {
                            return out;
                        }
                    }
                    b'}' => depth -= 1,
                    _ => {}
                }
            }
            return out;
        }
        return vec![segs];
    }
}

/// Every circle in `edges` (strongly connected components of more than one module), each in a stable order.
fn circles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    let reach = |from: &ModPath| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&ModPath, BTreeSet<ModPath>> = edges.keys().map(|m| (m, reach(m))).collect();
    let mut done: BTreeSet<ModPath> = BTreeSet::new();
    let mut out = Vec::new();
    for m in edges.keys() {
        if done.contains(m) || !reachable[m].contains(m) {
            continue;
        }
        let component: Vec<ModPath> =
            edges.keys().filter(|n| reachable[m].contains(*n) && reachable[*n].contains(m)).cloned().collect();
        done.extend(component.iter().cloned());
        out.push(component);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tidy() {
        super::run(&crate::project_root()).unwrap_or_else(|e| panic!("{e:#}"));
    }

    #[test]
    fn import_circles_are_found_through_crate_super_and_child_paths() {
        use super::{ModPath, circles, references};
        use std::collections::{BTreeMap, BTreeSet};
        let m =
            |s: &str| -> ModPath { if s.is_empty() { Vec::new() } else { s.split("::").map(str::to_owned).collect() } };
        let known: BTreeSet<ModPath> = ["", "a", "kit", "kit::txs", "kit::forward", "b"].iter().map(|s| m(s)).collect();
        let exists = |p: &ModPath| known.contains(p);
        let refs = |module: &str, text: &str| references(&m(module), text, &exists);
        assert_eq!(
            refs(
                "kit::txs",
                "//! uses crate::b in a comment\nuse super::forward::{X, Y};\nuse crate::{a, kit::Kit};\n"
            ),
            [m("a"), m("kit"), m("kit::forward")].into_iter().collect()
        );
        assert_eq!(refs("", "pub mod a;\nfn f() { a::g(); other::h(); }\n"), [m("a")].into_iter().collect());
        assert!(refs("b", "fn f() {}\n#[cfg(test)]\nmod tests { use crate::a; }\n").is_empty());
        // A `#[cfg(test)]` item before the end does not hide the code after it.
        assert_eq!(
            refs("b", "#[cfg(test)]\nfn only_in_tests() {}\nuse crate::a; // and crate::kit in a comment\n"),
            [m("a")].into_iter().collect()
        );
        assert_eq!(
            refs("kit", "pub(super) mod txs;\nuse self::txs::T;\nfn f() { forward::g() }\n"),
            [m("kit::txs")].into_iter().collect()
        );
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        edges.insert(m("a"), [m("b")].into_iter().collect());
        edges.insert(m("b"), [m("a")].into_iter().collect());
        edges.insert(m("kit"), [m("a")].into_iter().collect());
        assert_eq!(circles(&edges), vec![vec![m("a"), m("b")]]);
    }

    #[test]
    fn keys_reads_sections_and_keys() {
        let k = super::keys("# c\n[a]\nx = 1\n# y = 2\n[a.b]\nz=\"q\"\n");
        assert_eq!(k.into_iter().collect::<Vec<_>>(), ["a", "a.b", "a.b.z", "a.x"]);
    }
}
