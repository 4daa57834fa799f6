//! Progress bars for the library's [`Reporter`] events: one indicatif bar per download on stderr, hidden
//! when stderr is not a terminal, under `--quiet`, or when `PDP_NO_PROGRESS` is set. Notes (retries,
//! waiting for another process's lock) go through the printer so they also reach logs when bars are hidden.
//!
//! Deliberately not here: the summary table (the command prints it once the bars are gone).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pdp_toolchain::fetch::Reporter;

use crate::printer::Printer;

/// Download bars.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
    printer: Printer,
    visible: bool,
}

impl Bars {
    /// Bars on stderr where the printer draws progress, hidden ones otherwise.
    pub fn new(printer: &Printer) -> Bars {
        let visible = printer.progress();
        let target = if visible { ProgressDrawTarget::stderr_with_hz(10) } else { ProgressDrawTarget::hidden() };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            printer: printer.clone(),
            visible,
        }
    }

    fn style(known_total: bool) -> ProgressStyle {
        let template = if known_total {
            "{prefix:>40.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta}"
        } else {
            "{prefix:>40.bold} {spinner} {bytes:>10} {bytes_per_sec:>12}"
        };
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
    }
}

impl Reporter for Bars {
    fn start(&self, job: usize, label: &str, total: Option<u64>) {
        let Ok(mut bars) = self.bars.lock() else { return };
        let bar = bars.entry(job).or_insert_with(|| self.multi.add(ProgressBar::no_length()));
        bar.set_style(Bars::style(total.is_some()));
        bar.set_prefix(label.to_owned());
        bar.set_position(0);
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
    }

    fn advance(&self, job: usize, bytes: u64) {
        if let Ok(bars) = self.bars.lock()
            && let Some(bar) = bars.get(&job)
        {
            bar.inc(bytes);
        }
    }

    fn note(&self, _job: usize, message: &str) {
        if self.visible {
            self.multi.suspend(|| self.printer.info(message));
        } else {
            self.printer.info(message);
        }
    }

    fn finish(&self, job: usize) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some(bar) = bars.remove(&job)
        {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}
