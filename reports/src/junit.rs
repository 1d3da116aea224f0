//! JUnit XML, built from quick-junit's typed model (never from strings).
//!
//! Layout:
//!
//! - one `<testsuites name="gauntlet">`, one `<testsuite>` per suite in the
//!   order suites first appear in the report;
//! - each `<testsuite>` carries the run metadata as `<properties>`: `tool`,
//!   `tool-version`, `git-commit` (when known), `seed`, `target`, `profile`,
//!   `schema-version`, `started-at`, and `crate-version:<crate>` per crate;
//! - one `<testcase name="<case>" classname="<suite>" time="…">` per case, with
//!   testcase `<properties>`: `requirements` (comma separated, the Xray
//!   convention) and `location` (`file:line`, when known);
//! - a fail is a `<failure>`, an error an `<error>`, both with a `message`
//!   attribute that is never empty (the message on one line, or `case failed` /
//!   `case errored`) and a text of the full message, the requirement ids and
//!   the location; a skip is a `<skipped message="reason">`; a pass
//!   with a note carries the note in `<system-out>`.

use std::io::Write;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::{CaseResult, Outcome, ReportError, RunReport, fmt};

/// Name of the root `<testsuites>` element; CI dashboards group runs by it.
const REPORT_NAME: &str = "gauntlet";

/// Writes `report` as JUnit XML to `out`.
///
/// # Errors
///
/// [`ReportError::Junit`] when `out` fails.
pub fn write(report: &RunReport, out: impl Write) -> Result<(), ReportError> {
    to_junit(report).serialize(out).map_err(ReportError::Junit)
}

fn to_junit(report: &RunReport) -> Report {
    let mut junit = Report::new(REPORT_NAME);
    junit.set_time(report.meta.wall_time());
    let run_properties = run_properties(report);
    for (suite, cases) in report.suites() {
        let mut test_suite = TestSuite::new(suite);
        test_suite
            .set_time(cases.iter().map(|case| case.duration).sum())
            .add_properties(run_properties.iter().cloned())
            .add_test_cases(cases.into_iter().map(test_case));
        junit.add_test_suite(test_suite);
    }
    junit
}

fn run_properties(report: &RunReport) -> Vec<Property> {
    let meta = &report.meta;
    let mut properties = vec![
        Property::new("tool", &meta.tool),
        Property::new("tool-version", &meta.tool_version),
    ];
    if let Some(commit) = &meta.git_commit {
        properties.push(Property::new("git-commit", commit));
    }
    properties.extend([
        Property::new("seed", fmt::seed(meta.seed)),
        Property::new("target", &meta.target),
        Property::new("profile", &meta.profile),
        Property::new("schema-version", report.schema_version.to_string()),
        Property::new("started-at", fmt::timestamp(meta.started_at)),
    ]);
    properties.extend(
        meta.crate_versions
            .iter()
            .map(|(name, version)| Property::new(format!("crate-version:{name}"), version)),
    );
    properties
}

fn test_case(case: &CaseResult) -> TestCase {
    let status = match &case.outcome {
        Outcome::Pass => TestCaseStatus::success(),
        Outcome::Fail => non_success(case, NonSuccessKind::Failure),
        // JUnit has no "untrustworthy measurement": a failure that says so.
        Outcome::Invalid { .. } => non_success(case, NonSuccessKind::Failure),
        Outcome::Error => non_success(case, NonSuccessKind::Error),
        Outcome::Skip { .. } => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(attribute(fmt::message(case)));
            status
        }
    };
    let mut test_case = TestCase::new(&case.name, status);
    test_case
        .set_classname(&case.suite)
        .set_time(case.duration)
        .add_property(Property::new(
            "requirements",
            fmt::requirements(&case.requirements),
        ));
    if let Some(location) = &case.location {
        test_case.add_property(Property::new("location", fmt::location(location)));
    }
    if let (Outcome::Pass, Some(note)) = (&case.outcome, &case.message) {
        test_case.set_system_out(note);
    }
    test_case
}

fn non_success(case: &CaseResult, kind: NonSuccessKind) -> TestCaseStatus {
    let message = match case.outcome {
        Outcome::Invalid { .. } => format!("invalid measurement: {}", fmt::message(case)),
        _ => fmt::message(case).to_owned(),
    };
    let message = message.as_str();
    let mut description = format!(
        "{message}\nrequirements: {}",
        fmt::requirements(&case.requirements)
    );
    if let Some(location) = &case.location {
        description.push_str("\nlocation: ");
        description.push_str(&fmt::location(location));
    }
    let mut status = TestCaseStatus::non_success(kind);
    status
        .set_message(attribute(message))
        .set_description(description);
    status
}

/// XML parsers turn each newline inside an attribute into a space; joining the
/// lines here makes every consumer show the same one-line message. The element
/// text keeps the message as written.
fn attribute(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join(" ")
}
