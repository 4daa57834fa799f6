//! Turns a failed command into what the user sees and the exit code: the error, its cause chain, one
//! `hint:`, all redacted. Library errors are recognised by type to find their hints and to tell a user's
//! mistake (exit 2) from an unexpected failure (exit 1).

use std::process::ExitCode;

use crate::printer::Printer;

/// How pdp exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Success,
    /// Something unexpected failed (a bug, the network, the OS).
    Failure,
    /// The user's input is wrong: a flag, pdp.toml, an env var, a file, the database URL.
    UserError,
    /// A check ran and found problems (`doctor`, `init --check`).
    CheckFailed,
    /// Ctrl-C.
    Interrupted,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(match s {
            Status::Success => 0,
            Status::Failure => 1,
            Status::UserError => 2,
            Status::CheckFailed => 3,
            Status::Interrupted => 130,
        })
    }
}

/// A mistake of the user's that pdp itself detected, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    /// What is wrong, naming the thing.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl UserError {
    /// A user error with a hint.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> UserError {
        UserError { message: message.into(), hint: Some(hint.into()) }
    }
}

/// The user pressed Ctrl-C at a prompt.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// What the renderer needs from an error it recognises: a hint, and whether it is the user's to fix.
trait Diagnosed {
    fn hint(&self) -> Option<String>;
    fn is_user_error(&self) -> bool;
}

/// Library errors that carry their own `hint()`; `$user` decides the exit code from the value.
macro_rules! diagnosed {
    ($($ty:ty => |$e:ident| $user:expr),* $(,)?) => {
        $(impl Diagnosed for $ty {
            fn hint(&self) -> Option<String> {
                <$ty>::hint(self)
            }
            fn is_user_error(&self) -> bool {
                let $e = self;
                $user
            }
        })*

        /// The one list of error types pdp renders specially; each is named once.
        fn diagnosed<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnosed> {
            $(if let Some(e) = cause.downcast_ref::<$ty>() {
                return Some(e);
            })*
            cause.downcast_ref::<UserError>().map(|e| e as &dyn Diagnosed)
                .or_else(|| cause.downcast_ref::<pdp_config::prisma::VersionError>().map(|e| e as &dyn Diagnosed))
        }
    };
}

diagnosed! {
    pdp_config::ConfigError => |_e| true,
    pdp_config::env::DotenvError => |_e| true,
    pdp_migrate::db::DbError => |_e| true,
    pdp_migrate::source::SourceError => |_e| true,
    // A refused or failed migration is about the user's database or scripts; an unexpected database
    // failure while keeping the ledger is not.
    pdp_migrate::ops::MigrateError => |e| !matches!(e, pdp_migrate::ops::MigrateError::Database { .. }),
    pdp_toolchain::engines::EngineError => |e| e.is_user_error(),
    pdp_toolchain::target::TargetError => |_e| true,
    pdp_toolchain::npm::NpmError => |e| e.is_user_error(),
    pdp_client::ClientError => |e| e.is_user_error(),
    pdp_serve::ServeError => |e| e.is_user_error(),
    pdp_toolchain::embedded::EmbeddedError => |e| e.is_user_error(),
    // A proxy reqwest refuses is the user's; a TLS backend that cannot start is not.
    pdp_toolchain::http::HttpError => |e| matches!(e, pdp_toolchain::http::HttpError::Setup { proxy: Some(_), .. }),
}

impl Diagnosed for UserError {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
    fn is_user_error(&self) -> bool {
        true
    }
}

impl Diagnosed for pdp_config::prisma::VersionError {
    fn hint(&self) -> Option<String> {
        None
    }
    fn is_user_error(&self) -> bool {
        true
    }
}

/// Prints `err` and returns the exit status it deserves.
pub fn report(printer: &Printer, err: &anyhow::Error) -> Status {
    if err.chain().any(|c| c.is::<Interrupted>()) {
        return Status::Interrupted;
    }
    let mut chain = err.chain();
    let top = chain.next().map(ToString::to_string).unwrap_or_default();
    let causes: Vec<String> = chain.map(ToString::to_string).collect();
    let hint = err.chain().filter_map(diagnosed).find_map(|d| d.hint());
    printer.error(&top, &causes, hint.as_deref());
    if err.chain().filter_map(diagnosed).any(|d| d.is_user_error()) { Status::UserError } else { Status::Failure }
}
