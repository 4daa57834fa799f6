//! The migrations directory as Prisma Migrate lays it out: one folder per migration holding
//! `migration.sql`, plus `migration_lock.toml`. Reads it whole, up front, so a broken folder is reported
//! before anything touches the database; computes checksums exactly as Prisma records them.
//!
//! It does not talk to a database and does not decide what is pending (see `ledger` and `ops`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One migration folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalMigration {
    /// The folder name, e.g. `20240101000000_init`; Prisma's `migration_name`.
    pub name: String,
    /// `<folder>/migration.sql`.
    pub path: PathBuf,
    /// The script, exactly as read (UTF-8, no normalisation).
    pub script: String,
    /// Lowercase hex SHA-256 of `script`: the value Prisma stores in `checksum`.
    pub checksum: String,
}

/// The whole directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migrations {
    /// The directory.
    pub dir: PathBuf,
    /// Folders in byte order of their names (Prisma's engine order before 6.6).
    pub migrations: Vec<LocalMigration>,
    /// `provider` from `migration_lock.toml`, when the file exists.
    pub locked_provider: Option<String>,
    /// Things worth telling the user that do not stop a deploy.
    pub warnings: Vec<String>,
}

/// A migrations directory that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The directory cannot be listed.
    #[error("cannot read the migrations directory `{}`", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A folder has no readable `migration.sql` (Prisma fails mid-deploy on this; pdp before starting).
    #[error("migration `{name}` has no readable `migration.sql`")]
    Script {
        /// The folder name.
        name: String,
        /// The expected file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A folder name that is not valid UTF-8 cannot be a `migration_name`.
    #[error("migration folder `{}` has a name that is not UTF-8", path.display())]
    Name {
        /// The folder.
        path: PathBuf,
    },
}

impl SourceError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SourceError::Dir { .. } => "check `[prisma] migrations` in pdp.toml".into(),
            SourceError::Script { .. } => {
                "every folder in the migrations directory is a migration: add its `migration.sql` or remove the folder"
                    .into()
            }
            SourceError::Name { .. } => "rename the folder".into(),
        })
    }
}

/// Lowercase hex SHA-256 of the script text, as Prisma records it.
pub fn checksum(script: &str) -> String {
    let digest = Sha256::digest(script.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `script` matches a stored checksum the way Prisma's own comparison accepts: exact, with CRLF
/// turned into LF or LF into CRLF, or against the legacy form without zero-padding of each byte.
pub fn script_matches(script: &str, stored: &str) -> bool {
    let unpadded = |s: &str| -> String { Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:x}")).collect() };
    let lf = script.replace("\r\n", "\n");
    let crlf = lf.replace('\n', "\r\n");
    [script, lf.as_str(), crlf.as_str()]
        .iter()
        .any(|candidate| checksum(candidate) == stored || unpadded(candidate) == stored)
}

/// Whether a name starts with Prisma's `YYYYMMDDHHMMSS` timestamp (14 digits), which makes byte order and
/// Prisma 6.6+'s locale order agree.
pub fn is_timestamped(name: &str) -> bool {
    name.len() > 14 && name.as_bytes()[..14].iter().all(u8::is_ascii_digit)
}

/// Reads the directory. A missing directory is an empty history (Prisma: "No migration found").
pub fn read(dir: &Path) -> Result<Migrations, SourceError> {
    let mut out = Migrations { dir: dir.to_path_buf(), ..Migrations::default() };
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(SourceError::Dir { dir: dir.to_path_buf(), source }),
    };
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SourceError::Dir { dir: dir.to_path_buf(), source })?;
        let path = entry.path();
        if path.is_dir() {
            let name = entry.file_name().into_string().map_err(|_| SourceError::Name { path: path.clone() })?;
            folders.push((name, path));
        }
    }
    // Byte order; Prisma 6.6+ uses JavaScript's localeCompare, which agrees on timestamped names.
    folders.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, folder) in folders {
        let path = folder.join("migration.sql");
        let script = fs_err::read_to_string(&path).map_err(|source| SourceError::Script {
            name: name.clone(),
            path: path.clone(),
            source,
        })?;
        if !is_timestamped(&name) {
            out.warnings.push(format!(
                "migration `{name}` does not start with a YYYYMMDDHHMMSS timestamp; pdp applies folders in byte order of their names, and Prisma 6.6+ sorts by locale, which can differ"
            ));
        }
        out.migrations.push(LocalMigration { checksum: checksum(&script), name, path, script });
    }
    let lock = dir.join("migration_lock.toml");
    if let Ok(text) = fs_err::read_to_string(&lock) {
        // Prisma takes the first line starting with `provider` and strips `provider = ` and the quotes.
        out.locked_provider = text.lines().find(|l| l.trim_start().starts_with("provider")).map(|l| {
            let value = l.trim_start().trim_start_matches("provider").trim_start();
            value.trim_start_matches('=').trim().trim_matches('"').to_owned()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_sha256_of_the_exact_text() {
        assert_eq!(checksum(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(checksum("SELECT 1;\n"), checksum("SELECT 1;\n"));
        assert_ne!(checksum("SELECT 1;\n"), checksum("SELECT 1;\r\n"));
    }

    #[test]
    fn comparison_tolerates_line_endings_and_legacy_padding() {
        let lf = "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n";
        let crlf = lf.replace('\n', "\r\n");
        assert!(script_matches(lf, &checksum(lf)));
        assert!(script_matches(&crlf, &checksum(lf)), "CRLF on disk, LF recorded");
        assert!(script_matches(lf, &checksum(&crlf)), "LF on disk, CRLF recorded");
        assert!(!script_matches("CREATE TABLE c (id int);\n", &checksum(lf)));
        let legacy: String = Sha256::digest(lf.as_bytes()).iter().map(|b| format!("{b:x}")).collect();
        assert!(script_matches(lf, &legacy));
    }

    #[test]
    fn timestamps() {
        assert!(is_timestamped("20240101000000_init"));
        assert!(!is_timestamped("init"));
        assert!(!is_timestamped("2024_init"));
        assert!(!is_timestamped("20240101000000"));
    }

    #[test]
    fn reads_in_byte_order_with_the_lock_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["20240102000000_b", "20240101000000_a", "Zeta", "alpha"] {
            fs_err::create_dir_all(dir.path().join(name)).expect("mkdir");
            fs_err::write(dir.path().join(name).join("migration.sql"), format!("-- {name}\n")).expect("write");
        }
        fs_err::write(dir.path().join("migration_lock.toml"), "# comment\nprovider = \"postgresql\"\n").expect("write");
        fs_err::write(dir.path().join("README.md"), "loose files are ignored").expect("write");
        let m = read(dir.path()).expect("reads");
        let names: Vec<_> = m.migrations.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["20240101000000_a", "20240102000000_b", "Zeta", "alpha"]);
        assert_eq!(m.locked_provider.as_deref(), Some("postgresql"));
        assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
    }

    #[test]
    fn a_folder_without_a_script_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs_err::create_dir_all(dir.path().join("20240101000000_empty")).expect("mkdir");
        let err = read(dir.path()).expect_err("must fail");
        assert!(
            err.to_string().starts_with("migration `20240101000000_empty` has no readable `migration.sql`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_directory_is_an_empty_history() {
        let m = read(Path::new("/nonexistent/pdp/migrations")).expect("empty");
        assert!(m.migrations.is_empty() && m.locked_provider.is_none());
    }
}
