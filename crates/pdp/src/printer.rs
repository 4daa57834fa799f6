//! All terminal output goes through here: stdout is data, stderr is everything else; `--quiet`,
//! colour choice and `NO_COLOR` are decided once. Every line is passed through secret redaction.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;

use console::style;

use crate::cli::ColorChoice;

/// Decides what is shown and how.
#[derive(Clone, Debug)]
pub struct Printer {
    quiet: bool,
    color: bool,
    /// Whether stdin and stderr are terminals (prompts possible).
    pub interactive: bool,
}

impl Printer {
    /// Builds the printer from the global flags and the `NO_COLOR` convention.
    pub fn new(quiet: bool, color: ColorChoice, no_color_env: bool) -> Printer {
        let stderr_tty = std::io::stderr().is_terminal();
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stderr_tty && !no_color_env,
        };
        console::set_colors_enabled(color);
        console::set_colors_enabled_stderr(color);
        Printer { quiet, color, interactive: stderr_tty && std::io::stdin().is_terminal() }
    }

    /// Whether colour is on.
    pub fn color(&self) -> bool {
        self.color
    }

    /// Whether `--quiet` is on (status lines and progress are hidden).
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A line of data on stdout (never suppressed by `--quiet`).
    pub fn data(&self, line: &str) {
        println!("{}", pdp_config::redact_text(line));
    }

    /// A status line on stderr, e.g. `  created  pdp.toml`.
    pub fn status(&self, verb: &str, what: &str) {
        if !self.quiet {
            eprintln!("{:>10} {}", style(verb).green().bold(), pdp_config::redact_text(what));
        }
    }

    /// A plain message on stderr.
    pub fn info(&self, line: &str) {
        if !self.quiet {
            eprintln!("{}", pdp_config::redact_text(line));
        }
    }

    /// A warning on stderr (shown even with `--quiet`).
    pub fn warn(&self, message: &str, hint: Option<&str>) {
        eprintln!("{} {}", style("warning:").yellow().bold(), pdp_config::redact_text(message));
        if let Some(hint) = hint {
            eprintln!("  {} {}", style("hint:").cyan().bold(), pdp_config::redact_text(hint));
        }
    }

    /// An error with its causes and hint, on stderr.
    pub fn error(&self, message: &str, causes: &[String], hint: Option<&str>) {
        eprintln!("{} {}", style("error:").red().bold(), pdp_config::redact_text(message));
        for cause in causes {
            let text = pdp_config::redact_text(cause);
            let mut lines = text.lines();
            if let Some(first) = lines.next() {
                eprintln!("  {} {first}", style("caused by:").dim());
            }
            for line in lines {
                eprintln!("  {line}");
            }
        }
        if let Some(hint) = hint {
            eprintln!();
            eprintln!("{} {}", style("hint:").cyan().bold(), pdp_config::redact_text(hint));
        }
    }
}
