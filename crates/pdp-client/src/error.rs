//! The one error type of the client build, naming the schema, file, import or version involved, with a
//! hint and the user-error classification the binary maps to exit code 2.

use std::path::PathBuf;

/// What can go wrong building a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A block or array in the schema never closes.
    #[error("{}:{line}: {what} is never closed", .schema.display())]
    Unclosed {
        /// The schema file.
        schema: PathBuf,
        /// 1-based line where it opens.
        line: usize,
        /// "generator block `client`", "the `previewFeatures` array".
        what: String,
    },
    /// `prisma generate` failed because of the schema (Prisma's message is in `output`).
    #[error("Prisma {version} rejected the schema {}:\n{output}", .schema.display())]
    SchemaRejected {
        /// The user's schema.
        schema: PathBuf,
        /// The Prisma version.
        version: String,
        /// Prisma's output, framed.
        output: String,
    },
    /// Prisma did not write the file the Deno client is imported through.
    #[error("Prisma {version} did not write `{entry}` (generated files: {found})")]
    MissingEntry {
        /// The Prisma version.
        version: String,
        /// The expected entry, relative to the generator output.
        entry: String,
        /// A few of the files that were generated.
        found: String,
    },
    /// A relative import in the generated client points at no generated file.
    #[error("`{file}` imports `{specifier}`, which is not among the generated files")]
    UnresolvedImport {
        /// The importing file, relative to the output.
        file: String,
        /// The specifier.
        specifier: String,
    },
    /// A bare import pdp does not know how to pin.
    #[error("`{file}` imports the bare specifier `{specifier}`, which pdp cannot pin to a version")]
    UnknownBareImport {
        /// The importing file.
        file: String,
        /// The specifier.
        specifier: String,
    },
    /// A generated source file is not UTF-8.
    #[error("`{file}` is not UTF-8 text")]
    NotUtf8 {
        /// The file.
        file: String,
    },
    /// A file or folder could not be read or written.
    #[error("cannot access {}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Unclosed { .. } => Some("close it (`]` or `}`); `prisma format` shows where".into()),
            ClientError::SchemaRejected { .. } => {
                Some("fix the schema at the line Prisma names, then run `pdp build-client` again".into())
            }
            ClientError::MissingEntry { .. } => Some(
                "this is a pdp bug for this Prisma version; run with --verbose and report the command and output"
                    .into(),
            ),
            ClientError::UnresolvedImport { .. } | ClientError::UnknownBareImport { .. } => Some(
                "the generated client cannot be imported from a URL as is; report it with your Prisma version".into(),
            ),
            ClientError::NotUtf8 { .. } => None,
            ClientError::Io { .. } => Some("check the permissions of the output folder (`[client] out`, --out)".into()),
        }
    }

    /// Whether the user's input caused it (exit code 2).
    pub fn is_user_error(&self) -> bool {
        matches!(self, ClientError::Unclosed { .. } | ClientError::SchemaRejected { .. })
    }
}
