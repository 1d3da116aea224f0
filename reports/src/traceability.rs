//! The traceability matrix: each regulatory clause, the requirement ids that implement it,
//! the cases of the run that check them with their verdicts, and the evidence (the audit
//! checkpoint at the end of the run). A clause no case of the run checks is listed as
//! uncovered, never left out.
//!
//! A suite attaches the clauses and the evidence as a [`TraceabilitySpec`] to one of its
//! sections (the compliance suite does, from its data file); [`RunReport::with_sections`]
//! joins them with every case of the run into [`RunReport::traceability`], which report.json
//! carries and summary.md and report.html render.
//!
//! [`RunReport::with_sections`]: crate::RunReport::with_sections
//! [`RunReport::traceability`]: crate::RunReport::traceability

use serde::{Deserialize, Serialize};

use crate::{CaseResult, Outcome};

/// One clause and the requirement ids that implement it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clause {
    /// The clause, e.g. `RTS 6 Art. 12`.
    pub clause: String,
    /// What it asks, in a line.
    pub title: String,
    /// Requirement ids of the catalogue that implement it (may be empty: uncovered).
    pub requirements: Vec<String>,
}

/// The audit log's state at the end of the run: what a later verification starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvidence {
    /// Records under the checkpoint.
    pub size: u64,
    /// Its Merkle root, hex.
    pub root: String,
    /// When it was signed, RFC 3339 UTC.
    pub time: String,
    /// The Ed25519 key that signed it, hex.
    pub public_key: String,
}

/// What a suite attaches to a section for the report to trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceabilitySpec {
    /// The clauses, in the order they are shown.
    pub clauses: Vec<Clause>,
    /// The evidence, when the target has an audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<AuditEvidence>,
    /// Why there is no evidence, or how it was obtained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_note: Option<String>,
}

/// A clause's verdict over its cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClauseStatus {
    /// At least one case passed and none failed, errored or was invalid.
    Passed,
    /// A case failed, errored or was invalid.
    Failed,
    /// Every case was skipped: no evidence either way.
    Skipped,
    /// No case of the run checks any of its requirements.
    Uncovered,
}

impl ClauseStatus {
    /// `passed`, `failed`, `skipped` or `uncovered`.
    pub fn label(self) -> &'static str {
        match self {
            ClauseStatus::Passed => "passed",
            ClauseStatus::Failed => "failed",
            ClauseStatus::Skipped => "skipped",
            ClauseStatus::Uncovered => "uncovered",
        }
    }
}

/// A case tracing a clause, with its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedCase {
    /// `suite::name`.
    pub id: String,
    /// `pass`, `fail`, `skip`, `error` or `invalid`.
    pub outcome: String,
}

/// One row of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedClause {
    /// The clause.
    pub clause: String,
    /// What it asks.
    pub title: String,
    /// Its requirement ids.
    pub requirements: Vec<String>,
    /// The cases that check any of them, in run order.
    pub cases: Vec<TracedCase>,
    /// The verdict over those cases.
    pub status: ClauseStatus,
}

/// The matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traceability {
    /// One row per clause.
    pub clauses: Vec<TracedClause>,
    /// The audit checkpoint at the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<AuditEvidence>,
    /// Why there is no evidence, or how it was obtained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_note: Option<String>,
}

impl Traceability {
    /// Joins `spec` with the run's `cases`.
    pub fn build(spec: &TraceabilitySpec, cases: &[CaseResult]) -> Traceability {
        let clauses = spec
            .clauses
            .iter()
            .map(|clause| {
                let traced: Vec<&CaseResult> = cases
                    .iter()
                    .filter(|c| {
                        c.requirements
                            .iter()
                            .any(|r| clause.requirements.contains(r))
                    })
                    .collect();
                let status = if traced.is_empty() {
                    ClauseStatus::Uncovered
                } else if traced.iter().any(|c| c.outcome.is_problem()) {
                    ClauseStatus::Failed
                } else if traced.iter().any(|c| c.outcome == Outcome::Pass) {
                    ClauseStatus::Passed
                } else {
                    ClauseStatus::Skipped
                };
                TracedClause {
                    clause: clause.clause.clone(),
                    title: clause.title.clone(),
                    requirements: clause.requirements.clone(),
                    cases: traced
                        .iter()
                        .map(|c| TracedCase {
                            id: c.id.clone(),
                            outcome: c.outcome.label().to_owned(),
                        })
                        .collect(),
                    status,
                }
            })
            .collect();
        Traceability {
            clauses,
            evidence: spec.evidence.clone(),
            evidence_note: spec.evidence_note.clone(),
        }
    }

    /// One line on the evidence, for both renderers.
    pub(crate) fn evidence_line(&self) -> String {
        match (&self.evidence, &self.evidence_note) {
            (Some(e), note) => format!(
                "audit checkpoint at the end of the run: size {}, root {}, signed {} by key {}{}",
                e.size,
                e.root,
                e.time,
                e.public_key,
                note.as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            (None, Some(note)) => format!("no audit evidence: {note}"),
            (None, None) => "no audit evidence".to_owned(),
        }
    }
}

/// `id (outcome), …` of a row's cases, or `none`.
pub(crate) fn cases_cell(row: &TracedClause) -> String {
    if row.cases.is_empty() {
        return "none".to_owned();
    }
    row.cases
        .iter()
        .map(|c| format!("{} ({})", c.id, c.outcome))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn case(id: &str, reqs: &[&str], outcome: Outcome) -> CaseResult {
        let (suite, name) = id.split_once("::").unwrap();
        CaseResult {
            id: id.into(),
            suite: suite.into(),
            name: name.into(),
            requirements: reqs.iter().map(|r| (*r).to_owned()).collect(),
            outcome,
            duration: Duration::from_millis(1),
            message: None,
            location: None,
        }
    }

    #[test]
    fn every_clause_gets_a_row_with_its_status() {
        let spec = TraceabilitySpec {
            clauses: vec![
                Clause {
                    clause: "RTS 6 Art. 12".into(),
                    title: "kill".into(),
                    requirements: vec!["CMP-KILL".into()],
                },
                Clause {
                    clause: "RTS 6 Art. 15".into(),
                    title: "pre-trade".into(),
                    requirements: vec!["CMP-PRETRADE".into()],
                },
                Clause {
                    clause: "RTS 6 Art. 10".into(),
                    title: "stress".into(),
                    requirements: vec!["CMP-STRESS".into()],
                },
                Clause {
                    clause: "GDPR Art. 25".into(),
                    title: "pseudonyms".into(),
                    requirements: vec!["CMP-GDPR".into()],
                },
            ],
            evidence: None,
            evidence_note: Some("no audit extension".into()),
        };
        let cases = [
            case("compliance::kill", &["CMP-KILL"], Outcome::Pass),
            case("compliance::pre", &["CMP-PRETRADE"], Outcome::Pass),
            case(
                "compliance::pre2",
                &["CMP-PRETRADE", "CMP-KILL"],
                Outcome::Fail,
            ),
            case(
                "compliance::gdpr",
                &["CMP-GDPR"],
                Outcome::Skip {
                    reason: "no audit".into(),
                },
            ),
        ];
        let t = Traceability::build(&spec, &cases);
        let statuses: Vec<_> = t.clauses.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [
                ClauseStatus::Failed,
                ClauseStatus::Failed,
                ClauseStatus::Uncovered,
                ClauseStatus::Skipped
            ]
        );
        assert_eq!(
            cases_cell(&t.clauses[0]),
            "compliance::kill (pass), compliance::pre2 (fail)"
        );
        assert_eq!(cases_cell(&t.clauses[2]), "none");
        assert_eq!(t.evidence_line(), "no audit evidence: no audit extension");
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["clauses"][2]["status"], "uncovered");
    }
}
