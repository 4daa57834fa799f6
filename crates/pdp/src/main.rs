//! `pdp`, the binary: parses the command line, sets up output and logging, runs one command and maps
//! the outcome to an exit code. The only crate in the workspace that prints, prompts or draws progress.

mod cli;
mod commands;
mod diagnostics;
mod logging;
mod printer;
mod reporters;
mod scaffold;

use std::process::ExitCode;

use clap::Parser;
use pdp_config::env::{Env, ProcessEnv};

use crate::cli::{Cli, Command};

// The request path of `pdp serve` makes small allocations per request; mimalloc serves them from
// thread-local pages (measured in `cargo xtask bench serve-dp1`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
        logging::init(
            env.var(pdp_config::env::PDP_LOG),
            default,
            printer.color(),
            args.log_format == cli::LogFormat::Json,
            true,
        );
    } else if cli.global.verbose {
        logging::init(env.var(pdp_config::env::PDP_LOG), VERBOSE_FILTER, printer.color(), false, false);
    }
    let status = match run(&cli, &printer) {
        Ok(status) => status,
        Err(err) => {
            logging::flush();
            diagnostics::report(&printer, &err)
        }
    };
    logging::flush();
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
        Command::Status(args) => commands::status::run(args, cli.global.config.as_deref(), &cwd, printer),
    }
}

/// `--verbose`'s log filter.
const VERBOSE_FILTER: &str = "pdp=debug,pdp_config=debug,pdp_toolchain=debug,pdp_migrate=debug,pdp_serve=debug,info";
/// `pdp serve`'s: the access log, supervision, children's output.
const SERVE_FILTER: &str = "info";
