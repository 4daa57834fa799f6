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
    let no_progress = env.var(pdp_config::env::PDP_NO_PROGRESS).is_some_and(|v| !v.is_empty());
    let printer = Printer::new(cli.global.quiet, cli.global.color, no_color, no_progress);
    if let Command::Serve(args) = &cli.command {
        // A server logs always: its access log and children's output are its output.
        let default = if cli.global.verbose { VERBOSE_FILTER } else { SERVE_FILTER };
        init_logging(
            env.var(pdp_config::env::PDP_LOG),
            default,
            printer.color(),
            args.log_format == cli::LogFormat::Json,
        );
    } else if cli.global.verbose {
        init_logging(env.var(pdp_config::env::PDP_LOG), VERBOSE_FILTER, printer.color(), false);
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
        Command::Serve(args) => commands::serve::run(args, cli.global.config.as_deref(), &cwd, printer),
    }
}

/// `--verbose`'s log filter.
const VERBOSE_FILTER: &str = "pdp=debug,pdp_config=debug,pdp_toolchain=debug,pdp_migrate=debug,pdp_serve=debug,info";
/// `pdp serve`'s: the access log, supervision, children's output.
const SERVE_FILTER: &str = "info";

/// Tracing to stderr (`PDP_LOG` overrides the filter), every line passed through secret redaction
/// before it is written.
fn init_logging(filter: Option<String>, default: &str, color: bool, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| RedactingWriter(std::io::stderr()));
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.with_ansi(color).init();
    }
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
