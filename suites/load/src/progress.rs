//! The live progress line on a terminal (indicatif): elapsed, rate, p99, failures.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::driver::{Progress, ProgressFn};

/// Makes a progress callback per run; the bar draws on stderr and hides when stderr is not
/// a terminal, so CI logs stay quiet.
pub type ProgressFactory = Arc<dyn Fn(&str) -> ProgressFn + Send + Sync>;

/// A factory of terminal progress bars.
pub fn terminal() -> ProgressFactory {
    Arc::new(|label: &str| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>16} [{bar:24}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        let callback: ProgressFn = Arc::new(move |p: &Progress| {
            bar.set_length(p.total.as_secs().max(1));
            bar.set_position(p.elapsed.as_secs().min(p.total.as_secs()));
            bar.set_message(line(p));
            if p.finished {
                bar.finish_and_clear();
            }
        });
        callback
    })
}

/// The message of a progress line: `rate 9998/s  p99 1.21 ms  failed 0`.
pub fn line(p: &Progress) -> String {
    match &p.last {
        Some(s) => format!(
            "rate {}/s  p99 {:.2} ms  failed {}",
            s.ok + s.errors,
            Duration::from_micros(s.p99).as_secs_f64() * 1000.0,
            p.failed
        ),
        None => format!("starting  failed {}", p.failed),
    }
}
