//! The publishing manifest (`<out>/<version>/manifest.json`) and the incremental stamp stored in it.
//!
//! The stamp is the SHA-256 of everything a build depends on (pdp version, Prisma version and generation,
//! the schema's bytes, the client's runtime and folder version, the tool pins); a build whose stamp equals
//! the manifest's, with every listed file present and unchanged, is skipped. Also the small IO helpers that
//! read a generated folder into memory and write a laid-out one. Deliberately not here: the swap of the
//! finished folder into place (the binary does it, next to the previous output).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::output::Files;
use crate::{ClientError, sha256_hex};

/// The manifest's file name.
pub const FILE: &str = "manifest.json";

/// The manifest format version.
pub const FORMAT: u32 = 1;

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The pdp that built it.
    pub pdp_version: String,
    /// The Prisma CLI version.
    pub prisma_version: String,
    /// The `@prisma/client` version the client's runtime comes from.
    pub prisma_client_version: String,
    /// The client's own version (the folder name).
    pub client_version: String,
    /// `prisma-client-js` or `prisma-client`.
    pub generator: String,
    /// `dp1-graphql`, `dp1-json` or `qpe`.
    pub wire_protocol: String,
    /// SHA-256 of the project's schema file as read.
    pub schema_sha256: String,
    /// The `inlineSchemaHash` baked into a 4.x–6.7 client (what it sends in DP1 URLs), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_schema_hash: Option<String>,
    /// The generated client's preview features.
    pub preview_features: Vec<String>,
    /// The file to import, relative to this folder.
    pub entry: String,
    /// The incremental stamp.
    pub stamp: String,
    /// Every file but the manifest, sorted by path.
    pub files: Vec<FileEntry>,
}

/// One published file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative, `/`-separated.
    pub path: String,
    /// Hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// What the stamp covers.
#[derive(Clone, Debug)]
pub struct StampInputs<'a> {
    /// pdp's version.
    pub pdp_version: &'a str,
    /// The Prisma version.
    pub prisma_version: &'a str,
    /// The generation label.
    pub generation: &'a str,
    /// The schema's bytes.
    pub schema: &'a [u8],
    /// `[client] runtime`.
    pub runtime: &'a str,
    /// The folder version.
    pub client_version: &'a str,
    /// Tool pins (e.g. the Deno version), in a fixed order.
    pub tools: &'a [&'a str],
}

/// The stamp of `inputs`.
pub fn stamp(inputs: &StampInputs<'_>) -> String {
    let text = format!(
        "pdp {}\nprisma {}\ngeneration {}\nschema {}\nruntime {}\nclient {}\ntools {}\n",
        inputs.pdp_version,
        inputs.prisma_version,
        inputs.generation,
        sha256_hex(inputs.schema),
        inputs.runtime,
        inputs.client_version,
        inputs.tools.join(" "),
    );
    sha256_hex(text.as_bytes())
}

/// The file list of a laid-out client.
pub fn file_entries(files: &Files) -> Vec<FileEntry> {
    files
        .iter()
        .map(|(path, bytes)| FileEntry { path: path.clone(), sha256: sha256_hex(bytes), bytes: bytes.len() as u64 })
        .collect()
}

/// The `inlineSchemaHash` assigned in a 4.x–6.7 generated `edge.js`, if any.
pub fn inline_schema_hash(files: &Files) -> Option<String> {
    let text = std::str::from_utf8(files.get("edge.js")?).ok()?;
    let rest = &text[text.find("inlineSchemaHash")?..];
    let quote = rest.find(['"', '\''])?;
    let value: String = rest[quote + 1..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    (value.len() == 64).then_some(value)
}

/// The manifest in `dir` if its stamp is `stamp` and every file it lists is there, unchanged.
pub fn up_to_date(dir: &Path, stamp: &str) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    if manifest.stamp != stamp || manifest.format != FORMAT {
        return None;
    }
    for f in &manifest.files {
        let bytes = std::fs::read(dir.join(&f.path)).ok()?;
        if bytes.len() as u64 != f.bytes || sha256_hex(&bytes) != f.sha256 {
            return None;
        }
    }
    Some(manifest)
}

/// Every regular file under `dir`, relative and `/`-separated.
pub fn read_tree(dir: &Path) -> Result<Files, ClientError> {
    let mut out = Files::new();
    let mut todo: Vec<PathBuf> = vec![dir.to_path_buf()];
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClientError::Io { path, source }
    };
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                let key = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                out.insert(key, std::fs::read(&path).map_err(io(&path))?);
            }
        }
    }
    Ok(out)
}

/// Writes `files` and `manifest` under `dir` (which must exist and be empty).
pub fn write_tree(dir: &Path, files: &Files, manifest: &Manifest) -> Result<(), ClientError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClientError::Io { path, source }
    };
    for (rel, bytes) in files {
        let path = rel.split('/').fold(dir.to_path_buf(), |p, part| p.join(part));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    let path = dir.join(FILE);
    let json = serde_json::to_string_pretty(manifest).unwrap_or_default() + "\n";
    std::fs::write(&path, json).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(schema: &'a [u8], version: &'a str) -> StampInputs<'a> {
        StampInputs {
            pdp_version: "0.1.0",
            prisma_version: "4.16.2",
            generation: "4.16",
            schema,
            runtime: "deno",
            client_version: version,
            tools: &["deno@2.9.6"],
        }
    }

    /// Stamps compare equal exactly when `same` says so.
    fn check(a: StampInputs<'_>, b: StampInputs<'_>, same: bool) {
        assert_eq!(stamp(&a) == stamp(&b), same, "{a:?} vs {b:?}");
    }

    #[test]
    fn stamp_covers_every_input() {
        check(inputs(b"model A {}", "0.1.0"), inputs(b"model A {}", "0.1.0"), true);
        check(inputs(b"model A {}", "0.1.0"), inputs(b"model B {}", "0.1.0"), false);
        check(inputs(b"model A {}", "0.1.0"), inputs(b"model A {}", "0.2.0"), false);
        check(inputs(b"x", "1"), StampInputs { prisma_version: "4.16.1", ..inputs(b"x", "1") }, false);
        check(inputs(b"x", "1"), StampInputs { pdp_version: "0.2.0", ..inputs(b"x", "1") }, false);
        check(inputs(b"x", "1"), StampInputs { tools: &["deno@2.9.7"], ..inputs(b"x", "1") }, false);
    }

    #[test]
    fn inline_hash_is_read_from_edge_js() {
        let hash = "9512a000bc5aa947c19dc73f899f3c965d8c0db09403dae19328ef441a121c7f";
        let files: Files =
            [("edge.js".to_owned(), format!("config.inlineSchemaHash = '{hash}'\n").into_bytes())].into();
        assert_eq!(inline_schema_hash(&files).as_deref(), Some(hash));
        assert_eq!(inline_schema_hash(&Files::new()), None);
    }

    #[test]
    fn written_tree_is_up_to_date_until_a_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: Files =
            [("client.ts".to_owned(), b"export {}".to_vec()), ("a/b.ts".to_owned(), b"1".to_vec())].into();
        let manifest = Manifest {
            format: FORMAT,
            pdp_version: "0.1.0".into(),
            prisma_version: "7.10.1".into(),
            prisma_client_version: "7.10.0".into(),
            client_version: "0.1.0".into(),
            generator: "prisma-client".into(),
            wire_protocol: "qpe".into(),
            schema_sha256: sha256_hex(b"s"),
            inline_schema_hash: None,
            preview_features: vec![],
            entry: "client.ts".into(),
            stamp: "abc".into(),
            files: file_entries(&files),
        };
        write_tree(dir.path(), &files, &manifest).expect("write");
        assert_eq!(up_to_date(dir.path(), "abc"), Some(manifest.clone()));
        assert_eq!(up_to_date(dir.path(), "abd"), None);
        let mut read = read_tree(dir.path()).expect("read");
        assert!(read.remove(FILE).is_some());
        assert_eq!(read, files);
        std::fs::write(dir.path().join("a/b.ts"), "2").expect("write");
        assert_eq!(up_to_date(dir.path(), "abc"), None);
    }
}
