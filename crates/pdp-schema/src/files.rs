//! A project's schema as Prisma reads it from disk: one `.prisma` file, or a folder of them (a multi-file
//! schema: Prisma 5.15–6.6 behind the `prismaSchemaFolder` preview, generally available since 6.7). A folder
//! is read as Prisma's `loadSchemaFiles` reads it: every file ending in `.prisma` below it, in any
//! subfolder, symbolic links followed; pdp sorts them by path so every run sees the same order.
//!
//! It also answers where a file of the schema decides something: the file with the `datasource` block (a
//! relative SQLite `file:` URL and, from Prisma 6.6, the default migrations folder are beside it) and the file with
//! the client generator.
//!
//! Deliberately not here: which Prisma versions accept a folder (the generation table's business, checked
//! by the binary), and Prisma's own merge of a folder into one text (`merge_schemas` reformats; pdp never
//! needs the merged text, it hands the folder to Prisma).

use std::path::{Path, PathBuf};

use crate::scan::{ScanError, Schema, scan};

/// The schema of a project: its files, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaFiles {
    /// What `[prisma] schema` names: the file, or the folder.
    pub location: PathBuf,
    /// Whether `location` is a folder.
    pub folder: bool,
    /// The files, sorted by their path relative to the folder (a single file: just it).
    pub files: Vec<SchemaFile>,
}

/// One file of a schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its path relative to the schema folder, `/`-separated (a single-file schema: the file name).
    pub rel: String,
    /// Its text.
    pub text: String,
}

/// Why a schema could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Nothing at the configured path.
    #[error("no Prisma schema at {}", path.display())]
    NotFound {
        /// The configured path.
        path: PathBuf,
    },
    /// A folder without a single `.prisma` file.
    #[error("the schema folder {} holds no `.prisma` file", path.display())]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },
    /// A file that is not UTF-8.
    #[error("{} is not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// Reading failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// What was read.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A scan failure, with the file it is in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct FileScanError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub error: ScanError,
}

impl SchemaFiles {
    /// Reads the schema at `location` (a `.prisma` file or a folder).
    pub fn load(location: &Path) -> Result<SchemaFiles, LoadError> {
        let meta = match std::fs::metadata(location) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoadError::NotFound { path: location.to_path_buf() });
            }
            Err(source) => return Err(LoadError::Io { path: location.to_path_buf(), source }),
        };
        if !meta.is_dir() {
            let rel = location.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let text = read_text(location)?;
            return Ok(SchemaFiles {
                location: location.to_path_buf(),
                folder: false,
                files: vec![SchemaFile { path: location.to_path_buf(), rel, text }],
            });
        }
        let mut found = Vec::new();
        let mut path_so_far = vec![std::fs::canonicalize(location).unwrap_or_else(|_| location.to_path_buf())];
        collect(location, "", &mut found, &mut path_so_far)?;
        if found.is_empty() {
            return Err(LoadError::EmptyFolder { path: location.to_path_buf() });
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        // A file reached twice through links is one file (its first path in order names it).
        let mut seen = std::collections::HashSet::new();
        found.retain(|(_, path)| seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())));
        let files = found
            .into_iter()
            .map(|(rel, path)| Ok(SchemaFile { text: read_text(&path)?, path, rel }))
            .collect::<Result<Vec<_>, LoadError>>()?;
        Ok(SchemaFiles { location: location.to_path_buf(), folder: true, files })
    }

    /// Every file scanned, in order; the first file that cannot be scanned is the error.
    pub fn scan(&self) -> Result<Vec<(&SchemaFile, Schema<'_>)>, FileScanError> {
        self.files
            .iter()
            .map(|f| scan(&f.text).map(|s| (f, s)).map_err(|error| FileScanError { path: f.path.clone(), error }))
            .collect()
    }

    /// The first file with a `datasource` block (files that cannot be scanned are skipped).
    pub fn datasource_file(&self) -> Option<&SchemaFile> {
        self.files.iter().find(|f| scan(&f.text).is_ok_and(|s| s.datasource().is_some()))
    }

    /// The directory Prisma resolves the datasource's relative paths against (a SQLite `file:./dev.db`):
    /// beside the file with the `datasource` block; with none, the folder itself, or a single file's
    /// directory.
    pub fn datasource_dir(&self) -> PathBuf {
        match self.datasource_file() {
            Some(f) => parent_of(&f.path),
            None if self.folder => self.location.clone(),
            None => parent_of(&self.location),
        }
    }

    /// Prisma Migrate's default migrations folder for this schema. A single file: `migrations` beside it. A
    /// folder: beside the datasource file (Prisma 6.6 and later, `primaryDatasourceDirectory`), or, with
    /// `folder_beside = true` (Prisma 5's preview), beside the folder itself (`prisma/schema` →
    /// `prisma/migrations`).
    pub fn default_migrations(&self, folder_beside: bool) -> PathBuf {
        if self.folder && folder_beside {
            parent_of(&self.location).join("migrations")
        } else {
            self.datasource_dir().join("migrations")
        }
    }

    /// The bytes that identify the schema for change detection: a single file's bytes as they are; a
    /// folder's files as `path NUL text NUL` each, in order, so that moving a model between files changes
    /// them too.
    pub fn identity(&self) -> Vec<u8> {
        if !self.folder {
            return self.files.first().map(|f| f.text.as_bytes().to_vec()).unwrap_or_default();
        }
        let mut out = Vec::new();
        for f in &self.files {
            out.extend_from_slice(f.rel.as_bytes());
            out.push(0);
            out.extend_from_slice(f.text.as_bytes());
            out.push(0);
        }
        out
    }

    /// How the schema is named to a person: the path, and for a folder how many files it holds.
    pub fn describe(&self, shown: &Path) -> String {
        if self.folder { format!("{} ({})", shown.display(), self.layout()) } else { shown.display().to_string() }
    }

    /// "a folder of 3 files", "a folder of 1 file", or "one file".
    pub fn layout(&self) -> String {
        match (self.folder, self.files.len()) {
            (false, _) => "one file".to_owned(),
            (true, 1) => "a folder of 1 file".to_owned(),
            (true, n) => format!("a folder of {n} files"),
        }
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 { path: path.to_path_buf() })
}

/// Symbolic links are followed as Prisma follows them; a link back to a folder already on the way down (a
/// cycle) is not entered again (and `load` keeps one path per file reached twice).
fn collect(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
    path_so_far: &mut Vec<PathBuf>,
) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io { path: dir.to_path_buf(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Io { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        // `metadata` follows links; a dangling link is skipped.
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if path_so_far.contains(&real) {
                continue;
            }
            path_so_far.push(real);
            collect(&path, &rel, out, path_so_far)?;
            path_so_far.pop();
        } else if meta.is_file() && Path::new(&name).extension().is_some_and(|e| e == "prisma") {
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "generator client {\n  provider = \"prisma-client-js\"\n}\n";
    const DS: &str = "datasource db {\n  provider = \"sqlite\"\n  url = \"file:./dev.db\"\n}\n";

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn a_folder_is_every_prisma_file_below_it_sorted_links_followed() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("prisma");
        write(&root, "schema.prisma", MAIN);
        write(&root, "models/user.prisma", "model User {\n  id Int @id\n}\n");
        write(&root, "models/a/post.prisma", "model Post {\n  id Int @id\n}\n");
        write(&root, "db/source.prisma", DS);
        write(&root, "migrations/20260101000000_init/migration.sql", "CREATE TABLE x (id int);");
        write(&root, "notes.md", "not a schema");
        write(t.path(), "elsewhere/linked.prisma", "enum Role {\n  A\n}\n");
        std::os::unix::fs::symlink(t.path().join("elsewhere"), root.join("shared")).expect("symlink");
        std::os::unix::fs::symlink(t.path().join("gone"), root.join("dangling.prisma")).expect("symlink");
        // Cycles: a link to the folder itself and one to its parent are not followed again.
        std::os::unix::fs::symlink(&root, root.join("models/loop")).expect("symlink");
        std::os::unix::fs::symlink(t.path(), root.join("db/up")).expect("symlink");

        let s = SchemaFiles::load(&root).expect("loads");
        assert!(s.folder);
        let rels: Vec<&str> = s.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(
            rels,
            // `elsewhere/linked.prisma` is reached twice (`shared/`, `db/up/elsewhere/`): read once.
            [
                "db/source.prisma",
                "db/up/elsewhere/linked.prisma",
                "models/a/post.prisma",
                "models/user.prisma",
                "schema.prisma"
            ]
        );
        assert_eq!(s.datasource_file().map(|f| f.rel.as_str()), Some("db/source.prisma"));
        assert_eq!(s.datasource_dir(), root.join("db"));
        assert_eq!(s.default_migrations(false), root.join("db/migrations"));
        assert_eq!(s.default_migrations(true), t.path().join("migrations"));
        assert_eq!(s.scan().expect("scans").len(), 5);
        assert_eq!(s.describe(Path::new("prisma")), "prisma (a folder of 5 files)");
    }

    #[test]
    fn a_single_file_is_itself_and_its_identity_is_its_bytes() {
        let t = tempfile::tempdir().expect("tempdir");
        write(t.path(), "db/schema.prisma", &format!("{MAIN}{DS}"));
        let s = SchemaFiles::load(&t.path().join("db/schema.prisma")).expect("loads");
        assert!(!s.folder);
        assert_eq!(s.files.len(), 1);
        assert_eq!(s.files[0].rel, "schema.prisma");
        assert_eq!(s.identity(), format!("{MAIN}{DS}").into_bytes());
        assert_eq!(s.datasource_dir(), t.path().join("db"));
        assert_eq!(s.default_migrations(true), t.path().join("db/migrations"));
    }

    #[test]
    fn moving_a_model_between_files_changes_a_folders_identity() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("s");
        write(&root, "a.prisma", "model A {\n  id Int @id\n}\n");
        write(&root, "b.prisma", "");
        let before = SchemaFiles::load(&root).expect("loads").identity();
        write(&root, "a.prisma", "");
        write(&root, "b.prisma", "model A {\n  id Int @id\n}\n");
        assert_ne!(SchemaFiles::load(&root).expect("loads").identity(), before);
    }

    #[test]
    fn missing_empty_non_utf8_and_unclosed_are_named() {
        let t = tempfile::tempdir().expect("tempdir");
        let missing = t.path().join("nope.prisma");
        assert!(matches!(SchemaFiles::load(&missing), Err(LoadError::NotFound { path }) if path == missing));
        let empty = t.path().join("empty");
        write(&empty, "README.md", "x");
        let e = SchemaFiles::load(&empty).expect_err("empty");
        assert_eq!(e.to_string(), format!("the schema folder {} holds no `.prisma` file", empty.display()));
        let bad = t.path().join("bad");
        std::fs::create_dir_all(&bad).expect("mkdir");
        std::fs::write(bad.join("x.prisma"), [0xff, 0xfe, b'a']).expect("write");
        assert!(matches!(SchemaFiles::load(&bad), Err(LoadError::NotUtf8 { path }) if path == bad.join("x.prisma")));
        let open = t.path().join("open");
        write(&open, "ok.prisma", MAIN);
        write(&open, "broken.prisma", "model A {\n  id Int @id\n");
        let s = SchemaFiles::load(&open).expect("loads");
        let e = s.scan().expect_err("unclosed");
        assert_eq!(e.path, open.join("broken.prisma"));
        assert_eq!(s.datasource_file(), None);
        assert_eq!(s.datasource_dir(), open);
    }
}
