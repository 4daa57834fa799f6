//! All terminal output goes through here (buffered log lines are written out first, to keep the order): stdout is data, stderr is everything else; `--quiet`,
//! colour choice, `NO_COLOR` and `PDP_NO_PROGRESS` are decided once. Every line is passed through secret
//! redaction, a spinner's message too ([`Printer::spinner`]).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ColorChoice;

/// Decides what is shown and how.
#[derive(Clone, Debug)]
pub struct Printer {
    quiet: bool,
    color: bool,
    progress: bool,
    /// Whether stdin and stderr are terminals (prompts possible).
    pub interactive: bool,
}

impl Printer {
    /// Builds the printer from the global flags, the `NO_COLOR` convention and `PDP_NO_PROGRESS`.
    pub fn new(quiet: bool, color: ColorChoice, no_color_env: bool, no_progress_env: bool) -> Printer {
        let stderr_tty = std::io::stderr().is_terminal();
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stderr_tty && !no_color_env,
        };
        console::set_colors_enabled(color);
        console::set_colors_enabled_stderr(color);
        Printer {
            quiet,
            color,
            progress: !quiet && !no_progress_env && stderr_tty,
            interactive: stderr_tty && std::io::stdin().is_terminal(),
        }
    }

    /// Whether progress is drawn: stderr is a terminal, no `--quiet`, no `PDP_NO_PROGRESS`.
    pub fn progress(&self) -> bool {
        self.progress
    }

    /// A spinner naming the current step where progress is drawn; plain `Step` status lines otherwise.
    pub fn spinner(&self) -> Spinner<'_> {
        let bar = self.progress.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Spinner { printer: self, bar }
    }

    /// Whether colour is on.
    pub fn color(&self) -> bool {
        self.color
    }

    /// A line of data on stdout (never suppressed by `--quiet`).
    pub fn data(&self, line: &str) {
        println!("{}", pdp_config::redact_text(line));
    }

    /// A status line on stderr, e.g. `  created  pdp.toml`.
    pub fn status(&self, verb: &str, what: &str) {
        crate::logging::flush();
        if !self.quiet {
            eprintln!("{:>10} {}", style(verb).green().bold(), pdp_config::redact_text(what));
        }
    }

    /// A plain message on stderr.
    pub fn info(&self, line: &str) {
        crate::logging::flush();
        if !self.quiet {
            eprintln!("{}", pdp_config::redact_text(line));
        }
    }

    /// A warning on stderr (shown even with `--quiet`).
    pub fn warn(&self, message: &str, hint: Option<&str>) {
        crate::logging::flush();
        eprintln!("{} {}", style("warning:").yellow().bold(), pdp_config::redact_text(message));
        if let Some(hint) = hint {
            eprintln!("  {} {}", style("hint:").cyan().bold(), pdp_config::redact_text(hint));
        }
    }

    /// An error with its causes and hint, on stderr.
    pub fn error(&self, message: &str, causes: &[String], hint: Option<&str>) {
        crate::logging::flush();
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

/// The current step of a longer job: on a spinner, or as status lines. Cleared when dropped.
pub struct Spinner<'a> {
    printer: &'a Printer,
    bar: Option<ProgressBar>,
}

impl Spinner<'_> {
    /// Names the step now running.
    pub fn step(&self, what: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(pdp_config::redact_text(what)),
            None => self.printer.status("Step", what),
        }
    }

    /// A finished step worth a line of its own.
    pub fn done(&self, what: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.printer.status("Done", what)),
            None => self.printer.status("Done", what),
        }
    }

    /// Clears the spinner before other output (also done when it is dropped).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinner<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}
