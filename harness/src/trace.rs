//! Requirement traceability: every catalogue id → the cases and gates of this run that check
//! it → their verdicts. A requirement no case ran for is *uncovered* (a skipped case covers
//! nothing), and is listed as such, never left out. With `require-traced = true` in a profile,
//! a required requirement (`required = true` in the catalogue) left uncovered fails the gate
//! `gauntlet::requirements_traced`.
//!
//! ```
//! use gauntlet_harness::Catalogue;
//! use gauntlet_harness::trace;
//!
//! let catalogue = Catalogue::builtin().unwrap();
//! let section = trace::section(&catalogue, &[]);
//! // Every catalogue id is a row, uncovered when nothing ran.
//! assert_eq!(section.tables[0].rows.len(), catalogue.requirements.len());
//! assert!(section.tables[0].rows.iter().all(|r| r[3] == "uncovered"));
//! ```

use std::collections::BTreeMap;

use gauntlet_reports::{CaseResult, Outcome, Section, Table};

use crate::catalogue::Catalogue;
use crate::skips::{RUN_SUITE, run_gate};

/// The requirement the traceability gate checks.
pub const REQUIREMENT: &str = "GATE-TRACE";

/// Per requirement id: the cases naming it, in run order.
fn by_requirement(cases: &[CaseResult]) -> BTreeMap<&str, Vec<&CaseResult>> {
    let mut map: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for case in cases {
        for r in &case.requirements {
            map.entry(r.as_str()).or_default().push(case);
        }
    }
    map
}

/// Whether a case ran (a skip covers nothing).
fn ran(case: &CaseResult) -> bool {
    !matches!(case.outcome, Outcome::Skip { .. })
}

/// `3 pass, 1 fail, 2 skip`, in a fixed order.
fn verdicts(cases: &[&CaseResult]) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for c in cases {
        *counts.entry(c.outcome.label()).or_default() += 1;
    }
    ["pass", "fail", "error", "invalid", "skip"]
        .iter()
        .filter_map(|label| counts.get(label).map(|n| format!("{n} {label}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The traceability table of `cases` against every id of `catalogue`, as a report section.
pub fn section(catalogue: &Catalogue, cases: &[CaseResult]) -> Section {
    let map = by_requirement(cases);
    let rows: Vec<Vec<String>> = catalogue
        .requirements
        .iter()
        .map(|r| {
            let checked = map.get(r.id.as_str()).cloned().unwrap_or_default();
            let status = if checked.iter().any(|c| ran(c)) {
                verdicts(&checked)
            } else if checked.is_empty() {
                "uncovered".to_owned()
            } else {
                format!("uncovered ({})", verdicts(&checked))
            };
            let ids = checked
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                r.id.clone(),
                format!("{}{}", r.title, if r.required { " (required)" } else { "" }),
                if ids.is_empty() {
                    "—".to_owned()
                } else {
                    ids
                },
                status,
            ]
        })
        .collect();
    let uncovered = rows
        .iter()
        .filter(|r| r[3].starts_with("uncovered"))
        .count();
    let mut section = Section::new("requirements", "Requirement traceability", RUN_SUITE);
    section.notes.push(format!(
        "{} of {} requirements in the catalogue (harness/requirements.toml) were checked by a \
         case or gate that ran; {uncovered} uncovered (a skipped case covers nothing).",
        rows.len() - uncovered,
        rows.len()
    ));
    section.tables.push(Table {
        title: "Requirements, their cases and verdicts".to_owned(),
        columns: ["requirement", "title", "cases and gates", "verdicts"]
            .map(str::to_owned)
            .to_vec(),
        rows,
    });
    section
}

/// The gate `gauntlet::requirements_traced`: fails when a requirement marked `required` in
/// `catalogue` has no case that ran in `cases`, naming them.
pub fn gate(catalogue: &Catalogue, cases: &[CaseResult]) -> CaseResult {
    let map = by_requirement(cases);
    let required: Vec<&str> = catalogue
        .requirements
        .iter()
        .filter(|r| r.required)
        .map(|r| r.id.as_str())
        .collect();
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|id| !map.get(id).is_some_and(|cs| cs.iter().any(|c| ran(c))))
        .collect();
    let message = if missing.is_empty() {
        format!(
            "all {} required requirements checked by a case that ran",
            required.len()
        )
    } else {
        format!(
            "{} of {} required requirements uncovered: {}",
            missing.len(),
            required.len(),
            missing.join(", ")
        )
    };
    run_gate(
        "requirements_traced",
        REQUIREMENT,
        missing.is_empty(),
        message,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn case(id: &str, reqs: &[&str], outcome: Outcome) -> CaseResult {
        CaseResult {
            id: id.to_owned(),
            suite: "s".into(),
            name: id.to_owned(),
            requirements: reqs.iter().map(|r| (*r).to_owned()).collect(),
            outcome,
            duration: Duration::ZERO,
            message: None,
            location: None,
        }
    }

    const CATALOGUE: &str = "
[[requirement]]
id = 'A'
title = 'a'
source = 's'
required = true

[[requirement]]
id = 'B'
title = 'b'
source = 's'
required = true

[[requirement]]
id = 'C'
title = 'c'
source = 's'
";

    #[test]
    fn every_id_is_listed_and_a_skip_covers_nothing() {
        let catalogue = Catalogue::parse(CATALOGUE).unwrap();
        let skip = Outcome::Skip {
            reason: "no".into(),
        };
        let cases = [
            case("s::one", &["A"], Outcome::Pass),
            case("s::two", &["A", "B"], Outcome::Fail),
            case("s::three", &["C"], skip),
        ];
        let s = section(&catalogue, &cases);
        let rows = &s.tables[0].rows;
        assert_eq!(rows[0][2], "s::one, s::two");
        assert_eq!(rows[0][3], "1 pass, 1 fail");
        assert_eq!(rows[1][3], "1 fail");
        assert_eq!(rows[2][3], "uncovered (1 skip)");
        assert!(s.notes[0].starts_with("2 of 3"), "{}", s.notes[0]);
        assert_eq!(gate(&catalogue, &cases).outcome, Outcome::Pass);
        // B's only case skipped: required and uncovered, the gate names it.
        let cases = [
            case("s::one", &["A"], Outcome::Pass),
            case(
                "s::two",
                &["B"],
                Outcome::Skip {
                    reason: "no".into(),
                },
            ),
        ];
        let g = gate(&catalogue, &cases);
        assert_eq!(g.outcome, Outcome::Fail);
        assert_eq!(
            g.message.as_deref(),
            Some("1 of 2 required requirements uncovered: B")
        );
    }
}
