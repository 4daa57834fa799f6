//! `pdp`, the binary: parses the command line, sets up output and logging, runs one command and maps
//! the outcome to an exit code. The only crate in the workspace that prints, prompts or draws progress.

mod cli;
mod commands;
mod diagnostics;
mod printer;
mod reporters;
mod scaffold;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pdp_config::env::{Env, ProcessEnv};

use crate::cli::{Cli, Command};
use crate::diagnostics::Status;
use crate::printer::Printer;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = ProcessEnv::new();
    let no_color = env.var(pdp_config::env::NO_COLOR).is_some_and(|v| !v.is_empty());
    let printer = Printer::new(cli.global.quiet, cli.global.color, no_color);
    if cli.global.verbose {
        init_logging(env.var(pdp_config::env::PDP_LOG), printer.color());
    }
    let status = match run(&cli, &printer) {
        Ok(status) => status,
        Err(err) => diagnostics::report(&printer, &err),
    };
    status.into()
}

fn run(cli: &Cli, printer: &Printer) -> anyhow::Result<Status> {
    let cwd = std::env::current_dir().map_err(|e| anyhow::format_err!("cannot read the working directory: {e}"))?;
    tracing::debug!(cwd = %cwd.display(), "starting");
    match &cli.command {
        Command::Init(args) => commands::init::run(args, printer),
        Command::Doctor(args) => commands::doctor::run(args, cli.global.config.as_deref(), &cwd, printer),
        Command::Config(args) => commands::config::run(args, cli.global.config.as_deref(), &cwd, printer),
        Command::Migrate(args) => commands::migrate::run(args, cli.global.config.as_deref(), &cwd, printer),
        Command::Keys(args) => commands::keys::run(args, printer),
        Command::Engines(args) => commands::engines::run(args, cli.global.config.as_deref(), &cwd, printer),
        Command::BuildClient(args) => commands::build_client::run(args, cli.global.config.as_deref(), &cwd, printer),
    }
}

/// `--verbose`: tracing to stderr, every line passed through secret redaction before it is written.
fn init_logging(filter: Option<String>, color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(
        filter.as_deref().unwrap_or("pdp=debug,pdp_config=debug,pdp_toolchain=debug,pdp_migrate=debug,info"),
    )
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .init();
}

/// Masks credentials in whatever passes through (one log event arrives as one write).
struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(pdp_config::redact_text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
