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

fn hint_of(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(e) = cause.downcast_ref::<UserError>() {
        return e.hint.clone();
    }
    if let Some(e) = cause.downcast_ref::<pdp_config::ConfigError>() {
        return e.hint();
    }
    if let Some(e) = cause.downcast_ref::<pdp_config::env::DotenvError>() {
        return e.hint();
    }
    if let Some(e) = cause.downcast_ref::<pdp_migrate::db::DbError>() {
        return e.hint();
    }
    if let Some(e) = cause.downcast_ref::<pdp_migrate::ops::MigrateError>() {
        return e.hint();
    }
    if let Some(e) = cause.downcast_ref::<pdp_migrate::source::SourceError>() {
        return e.hint();
    }
    if let Some(e) = cause.downcast_ref::<pdp_toolchain::engines::EngineError>() {
        return e.hint();
    }
    if let Some(e) = cause.downcast_ref::<pdp_toolchain::target::TargetError>() {
        return e.hint();
    }
    if let Some(e) = cause.downcast_ref::<pdp_toolchain::npm::NpmError>() {
        return e.hint();
    }
    if let Some(e) = cause.downcast_ref::<pdp_client::ClientError>() {
        return e.hint();
    }
    None
}

fn is_user_error(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.is::<UserError>()
        || cause.is::<pdp_config::ConfigError>()
        || cause.is::<pdp_config::env::DotenvError>()
        || cause.is::<pdp_config::prisma::VersionError>()
        || cause.is::<pdp_migrate::db::DbError>()
        || cause.is::<pdp_migrate::source::SourceError>()
        || cause.is::<pdp_toolchain::target::TargetError>()
        || cause.downcast_ref::<pdp_toolchain::npm::NpmError>().is_some_and(|e| e.is_user_error())
        || cause.downcast_ref::<pdp_client::ClientError>().is_some_and(|e| e.is_user_error())
        || cause.downcast_ref::<pdp_toolchain::engines::EngineError>().is_some_and(|e| e.is_user_error())
        // A refused or failed migration is about the user's database or scripts; an unexpected database
        // failure while keeping the ledger is not.
        || cause
            .downcast_ref::<pdp_migrate::ops::MigrateError>()
            .is_some_and(|e| !matches!(e, pdp_migrate::ops::MigrateError::Database { .. }))
}

/// Prints `err` and returns the exit status it deserves.
pub fn report(printer: &Printer, err: &anyhow::Error) -> Status {
    if err.chain().any(|c| c.is::<Interrupted>()) {
        return Status::Interrupted;
    }
    let mut chain = err.chain();
    let top = chain.next().map(ToString::to_string).unwrap_or_default();
    let causes: Vec<String> = chain.map(ToString::to_string).collect();
    let hint = err.chain().find_map(hint_of);
    printer.error(&top, &causes, hint.as_deref());
    if err.chain().any(is_user_error) { Status::UserError } else { Status::Failure }
}
