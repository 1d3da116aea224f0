//! Every figure a human reads in a report is formatted here, once, so the
//! Markdown summary, the terminal and the JUnit texts never disagree.
//!
//! Escaping for a particular output (Markdown cells, XML) stays in that
//! renderer: it is about the format, not the figure.

use std::time::{Duration, SystemTime};

use crate::{CaseResult, ExitCode, Location, Outcome, RunMeta, RunReport, Summary};

/// A duration in milliseconds with one decimal, without unit: `12.3`.
pub(crate) fn duration_ms(d: Duration) -> String {
    // Via nanoseconds rather than `as_secs_f64() * 1000.0`, which turns 12.3 ms into 12.2999….
    format!("{:.1}", d.as_nanos() as f64 / 1e6)
}

/// A duration in seconds with two decimals and unit: `1.23s`.
pub(crate) fn duration_secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// A UTC RFC 3339 timestamp to the second: `2023-11-14T22:13:20Z`.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Requirement ids, comma separated: `ENG-VAL-001, ENG-VAL-002`.
pub(crate) fn requirements(ids: &[String]) -> String {
    ids.join(", ")
}

/// `file:line`.
pub(crate) fn location(loc: &Location) -> String {
    format!("{}:{}", loc.file, loc.line)
}

/// The git commit, or `unknown`.
pub(crate) fn git_commit(meta: &RunMeta) -> &str {
    meta.git_commit.as_deref().unwrap_or("unknown")
}

/// The run seed as the `gauntlet run --seed` flag takes it (hex), which is what a
/// person copies to replay a run.
pub(crate) fn seed(seed: u64) -> String {
    format!("{seed:#x}")
}

/// `40 passed, 1 failed, 2 skipped, 0 errored`, then `, 1 invalid` when any is.
pub(crate) fn counts(s: &Summary) -> String {
    let counts = format!(
        "{} passed, {} failed, {} skipped, {} errored",
        s.passed, s.failed, s.skipped, s.errored
    );
    // Only runs with measured suites can have invalid cases: keep the usual line short.
    if s.invalid > 0 {
        format!("{counts}, {} invalid", s.invalid)
    } else {
        counts
    }
}

/// The run verdict: `PASSED` or `FAILED`, decided by [`RunReport::exit_code`].
pub(crate) fn verdict(report: &RunReport) -> &'static str {
    match report.exit_code() {
        ExitCode::Success => "PASSED",
        ExitCode::Failed | ExitCode::Usage | ExitCode::Setup => "FAILED",
    }
}

/// The headline of a run: its verdict and how much of it ran, so that a run that skipped
/// most of its cases never reads as a plain pass: `PASSED — 3 ran, 27 skipped`.
pub(crate) fn headline(report: &RunReport) -> String {
    let s = &report.summary;
    format!(
        "{} — {} ran, {} skipped",
        verdict(report),
        s.total - s.skipped,
        s.skipped
    )
}

/// The status word of a case: `PASS`, `FAIL`, `SKIP`, `ERROR` or `INVALID`.
pub(crate) fn status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Skip { .. } => "SKIP",
        Outcome::Error => "ERROR",
        Outcome::Invalid { .. } => "INVALID",
    }
}

/// Width of the usual [`status`] words, for aligned columns; the rare
/// `INVALID` overflows it by two rather than widening every line.
pub(crate) const STATUS_WIDTH: usize = 5;

/// What a reader needs to know about a case's outcome, never empty: the skip
/// reason for a skip, otherwise the case message or, when there is none, a
/// default naming the outcome (`case failed`).
pub(crate) fn message(case: &CaseResult) -> &str {
    let given = |text: &str| !text.trim().is_empty();
    match &case.outcome {
        Outcome::Skip { reason } if given(reason) => reason.as_str(),
        Outcome::Skip { .. } => "no reason given",
        Outcome::Invalid { reason } if given(reason) => reason.as_str(),
        Outcome::Invalid { .. } => "measurement invalid, no reason given",
        _ => match case.message.as_deref() {
            Some(text) if given(text) => text,
            _ => match case.outcome {
                Outcome::Fail => "case failed",
                Outcome::Error => "case errored",
                _ => "case passed",
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(outcome: Outcome, message: Option<&str>) -> CaseResult {
        CaseResult {
            id: "unit::c".into(),
            suite: "unit".into(),
            name: "c".into(),
            requirements: vec!["ENG-VAL-001".into()],
            outcome,
            duration: Duration::ZERO,
            message: message.map(Into::into),
            location: None,
        }
    }

    #[test]
    fn duration_ms_rounds_to_one_decimal() {
        assert_eq!(duration_ms(Duration::from_micros(12_300)), "12.3");
        assert_eq!(duration_ms(Duration::from_micros(12_349)), "12.3");
        assert_eq!(duration_ms(Duration::ZERO), "0.0");
        assert_eq!(duration_ms(Duration::from_secs(2)), "2000.0");
    }

    #[test]
    fn duration_secs_has_two_decimals() {
        assert_eq!(duration_secs(Duration::from_millis(1_234)), "1.23s");
        assert_eq!(duration_secs(Duration::ZERO), "0.00s");
    }

    #[test]
    fn message_is_never_empty() {
        assert_eq!(message(&case(Outcome::Fail, None)), "case failed");
        assert_eq!(message(&case(Outcome::Fail, Some("  \n"))), "case failed");
        assert_eq!(message(&case(Outcome::Error, None)), "case errored");
        assert_eq!(message(&case(Outcome::Fail, Some("boom"))), "boom");
        let skip = |reason: &str| Outcome::Skip {
            reason: reason.into(),
        };
        assert_eq!(message(&case(skip("no gpu"), Some("x"))), "no gpu");
        assert_eq!(message(&case(skip(""), None)), "no reason given");
        let invalid = Outcome::Invalid {
            reason: "generator fell behind".into(),
        };
        assert_eq!(message(&case(invalid, None)), "generator fell behind");
    }
}
