//! The compact human summary printed at the end of a run, and the live
//! per-case progress line the runner prints as cases finish.
//!
//! Colour is the caller's decision (`--color`, `NO_COLOR`, whether stdout is a
//! terminal); when asked for, only the status words are coloured, with plain
//! ANSI SGR codes.

use std::io::{self, Write};

use crate::{CaseResult, Format, Outcome, ReportError, RunReport, fmt};

const RESET: &str = "\x1b[0m";

/// Writes one line per failed, errored and then skipped case, and a final
/// counts line:
///
/// ```text
/// FAIL  unit::predict_schema [ENG-VAL-002] expected field `price`
/// SKIP  sla::p99_latency [ENG-VAL-010] (target lacks capability `metrics`)
/// gauntlet: FAILED — 41 ran (40 passed, 1 failed, 0 errored), 1 skipped in 1.23s
/// ```
///
/// # Errors
///
/// [`ReportError::Write`] when `out` fails.
pub fn write(report: &RunReport, mut out: impl Write, color: bool) -> Result<(), ReportError> {
    render(report, &mut out, color).map_err(|source| ReportError::Write {
        format: Format::Terminal,
        source,
    })
}

/// One live progress line for a finished case, without a trailing newline:
/// `PASS  unit::health_live (12.3 ms)`.
pub fn case_line(case: &CaseResult, color: bool) -> String {
    format!(
        "{} {} ({} ms)",
        status_word(&case.outcome, color),
        case.id,
        fmt::duration_ms(case.duration)
    )
}

fn render(report: &RunReport, out: &mut impl Write, color: bool) -> io::Result<()> {
    let failed = report.cases.iter().filter(|case| case.outcome.is_problem());
    let skipped = report
        .cases
        .iter()
        .filter(|case| matches!(case.outcome, Outcome::Skip { .. }));
    for case in failed.chain(skipped) {
        writeln!(out, "{}", problem_line(case, color))?;
    }
    let s = &report.summary;
    let invalid = if s.invalid > 0 {
        format!(", {} invalid", s.invalid)
    } else {
        String::new()
    };
    writeln!(
        out,
        "{}: {} — {} ran ({} passed, {} failed, {} errored{invalid}), {} skipped in {}",
        report.meta.tool,
        fmt::verdict(report),
        s.total - s.skipped,
        s.passed,
        s.failed,
        s.errored,
        s.skipped,
        fmt::duration_secs(report.meta.wall_time())
    )
}

/// `FAIL  suite::name [REQ-1, REQ-2] message`, or `(reason)` for a skip; the
/// lines of a multi-line message are indented under the first.
fn problem_line(case: &CaseResult, color: bool) -> String {
    let mut line = format!("{} {}", status_word(&case.outcome, color), case.id);
    if !case.requirements.is_empty() {
        line.push_str(&format!(" [{}]", fmt::requirements(&case.requirements)));
    }
    let message = fmt::message(case).trim_end();
    let message = match case.outcome {
        Outcome::Skip { .. } => format!("({message})"),
        _ => message.to_owned(),
    };
    let indent = format!("\n{:width$} ", "", width = fmt::STATUS_WIDTH);
    line.push(' ');
    line.push_str(&message.lines().collect::<Vec<_>>().join(&indent));
    line
}

/// The status word padded to a fixed width, coloured when asked.
fn status_word(outcome: &Outcome, color: bool) -> String {
    let word = fmt::status(outcome);
    let padding = " ".repeat(fmt::STATUS_WIDTH.saturating_sub(word.len()));
    if !color {
        return format!("{word}{padding}");
    }
    let style = match outcome {
        Outcome::Pass => "\x1b[32m",
        Outcome::Fail => "\x1b[1;31m",
        Outcome::Skip { .. } => "\x1b[33m",
        Outcome::Error => "\x1b[1;35m",
        Outcome::Invalid { .. } => "\x1b[1;33m",
    };
    format!("{style}{word}{RESET}{padding}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn case(outcome: Outcome, message: Option<&str>) -> CaseResult {
        CaseResult {
            id: "unit::health_live".into(),
            suite: "unit".into(),
            name: "health_live".into(),
            requirements: vec!["ENG-VAL-001".into()],
            outcome,
            duration: Duration::from_micros(12_300),
            message: message.map(Into::into),
            location: None,
        }
    }

    #[test]
    fn case_line_aligns_status_words() {
        assert_eq!(
            case_line(&case(Outcome::Pass, None), false),
            "PASS  unit::health_live (12.3 ms)"
        );
        assert_eq!(
            case_line(&case(Outcome::Error, None), false),
            "ERROR unit::health_live (12.3 ms)"
        );
    }

    #[test]
    fn case_line_colours_only_the_status_word() {
        assert_eq!(
            case_line(&case(Outcome::Fail, None), true),
            "\x1b[1;31mFAIL\x1b[0m  unit::health_live (12.3 ms)"
        );
    }

    #[test]
    fn multi_line_message_is_indented() {
        assert_eq!(
            problem_line(&case(Outcome::Fail, Some("first\nsecond\n")), false),
            "FAIL  unit::health_live [ENG-VAL-001] first\n      second"
        );
    }
}
