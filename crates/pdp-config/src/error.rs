//! Configuration errors: each problem names the file, line, column and key, and carries a hint.
//!
//! Rendering (colour, the `hint:` prefix, exit codes) is the binary's job; this module only builds values.

use std::fmt;
use std::path::PathBuf;

/// Where a bad value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A position in `pdp.toml` (1-based line and column; `None` when only the file is known).
    File {
        /// The file.
        path: PathBuf,
        /// Line and column.
        position: Option<(usize, usize)>,
    },
    /// An environment variable layered over the file.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, position: Some((line, col)) } => write!(f, "{}:{line}:{col}", path.display()),
            Origin::File { path, position: None } => write!(f, "{}", path.display()),
            Origin::Env(name) => write!(f, "environment variable `{name}`"),
            Origin::Flag(name) => write!(f, "flag `{name}`"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where it is.
    pub origin: Origin,
    /// The dotted key, e.g. `serve.public-url`, when one applies.
    pub key: Option<String>,
    /// What is wrong, naming the key; never contains a secret value.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// Why no configuration could be produced.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `pdp.toml` in the start directory or any parent.
    #[error("no `pdp.toml` found in `{}` or any parent directory", start.display())]
    NotFound {
        /// Where the search started.
        start: PathBuf,
    },
    /// The file exists (or was named) but cannot be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The project's `.env` file is malformed.
    #[error(transparent)]
    Dotenv(#[from] crate::env::DotenvError),
    /// One or more problems in the file, the environment or the flags.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut s = format!("{} problems in the configuration:", many.len());
            for p in many {
                s.push_str("\n  ");
                s.push_str(&p.to_string());
                if let Some(hint) = &p.hint {
                    s.push_str(&format!(" ({hint})"));
                }
            }
            s
        }
    }
}

impl ConfigError {
    /// The hint for the user, if there is one thing to suggest.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::NotFound { .. } => {
                Some("run `pdp init` to create one, or point at it with `--config PATH` / `PDP_CONFIG`".into())
            }
            ConfigError::Read { .. } => Some("check the path and its permissions".into()),
            ConfigError::Dotenv(e) => e.hint(),
            ConfigError::Invalid(problems) => match problems.as_slice() {
                [one] => one.hint.clone(),
                _ => None,
            },
        }
    }

    /// The problems, when the configuration was read but is invalid.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}
