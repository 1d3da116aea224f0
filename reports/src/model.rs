//! The run-result model: a stable, versioned serde contract that every reporter
//! renders and that CI reads.
//!
//! Change it deliberately: bump [`SCHEMA_VERSION`] when a field changes meaning
//! or disappears; adding an optional field does not need a bump.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::Section;

/// Version of the run-result schema written into every report.
///
/// 2 added the `invalid` outcome (a measurement that cannot be trusted) and its
/// count in the summary; a version 1 report reads as version 2 unchanged.
pub const SCHEMA_VERSION: u32 = 2;

/// The oldest schema version [`crate::json::read`] accepts.
pub const MIN_SCHEMA_VERSION: u32 = 1;

/// The whole result of one `gauntlet run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Always [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u32,
    /// Where, when, what and with which seed.
    pub meta: RunMeta,
    /// Every selected case, in registry order.
    pub cases: Vec<CaseResult>,
    /// Counts derived from `cases`.
    pub summary: Summary,
    /// Tables and charts the measured suites attach (load, backtest), in run order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<Section>,
    /// The clause → requirement → case matrix, when a section asked for it (the compliance
    /// suite's), joined with every case of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceability: Option<crate::traceability::Traceability>,
}

impl RunReport {
    /// Builds a report and derives its summary from the cases.
    pub fn new(meta: RunMeta, cases: Vec<CaseResult>) -> Self {
        let summary = Summary::from_cases(&cases);
        Self {
            schema_version: SCHEMA_VERSION,
            meta,
            cases,
            summary,
            sections: Vec::new(),
            traceability: None,
        }
    }

    /// Adds `sections` after those already attached; a section carrying a
    /// [`crate::TraceabilitySpec`] (re)builds [`RunReport::traceability`] over every case.
    pub fn with_sections(mut self, sections: impl IntoIterator<Item = Section>) -> Self {
        self.sections.extend(sections);
        if let Some(spec) = self
            .sections
            .iter()
            .rev()
            .find_map(|s| s.traceability.as_ref())
        {
            self.traceability = Some(crate::traceability::Traceability::build(spec, &self.cases));
        }
        self
    }

    /// The process exit code this report calls for.
    pub fn exit_code(&self) -> ExitCode {
        if self.summary.failed + self.summary.errored + self.summary.invalid > 0 {
            ExitCode::Failed
        } else {
            ExitCode::Success
        }
    }

    /// The cases grouped by suite, suites in the order they first appear and
    /// cases in registry order within each suite.
    pub fn suites(&self) -> Vec<(&str, Vec<&CaseResult>)> {
        let mut suites: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
        for case in &self.cases {
            match suites.iter_mut().find(|(name, _)| *name == case.suite) {
                Some((_, cases)) => cases.push(case),
                None => suites.push((&case.suite, vec![case])),
            }
        }
        suites
    }
}

/// Run metadata: enough to reproduce the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Name of the tool that produced the report (`gauntlet`).
    pub tool: String,
    /// Version of that tool.
    pub tool_version: String,
    /// Git commit of the tool's source, when known.
    pub git_commit: Option<String>,
    /// Versions of the crates that took part (`gauntlet-engine` → `0.1.0`, ...).
    pub crate_versions: BTreeMap<String, String>,
    /// The seed every generator and property case of the run derived from. Written as a
    /// hex string (`"0x6a756e746c657400"`, what `--seed` takes): as a JSON number, seeds
    /// above 2^53 lose their low bits in JavaScript and jq. Read from either form.
    #[serde(with = "seed_hex")]
    pub seed: u64,
    /// Human description of the target (`in-process gauntlet-engine 0.1.0`, a URL, ...).
    pub target: String,
    /// The config profile in force.
    pub profile: String,
    /// When the run started (UTC).
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// When the run finished (UTC).
    #[serde(with = "humantime_serde")]
    pub finished_at: SystemTime,
}

impl RunMeta {
    /// Wall time of the run; zero if the clock stepped back while it ran.
    pub fn wall_time(&self) -> Duration {
        self.finished_at
            .duration_since(self.started_at)
            .unwrap_or_default()
    }
}

/// One case's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// `suite::name`.
    pub id: String,
    /// The suite the case belongs to.
    pub suite: String,
    /// The case name within its suite.
    pub name: String,
    /// Requirement ids the case checks (at least one).
    pub requirements: Vec<String>,
    /// The verdict.
    pub outcome: Outcome,
    /// Wall time the case took.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Failure or error message; for a pass, an optional note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the case is defined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// A case verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The case passed.
    Pass,
    /// The target did not do what the requirement says.
    Fail,
    /// The case did not run; `reason` says why (e.g. a capability the target lacks).
    Skip {
        /// Why the case was skipped.
        reason: String,
    },
    /// The case could not reach a verdict (timeout, transport error, harness bug).
    Error,
    /// The measurement behind the verdict cannot be trusted (a load generator that
    /// saturated or fell behind its schedule): never a pass, counted as a failure.
    Invalid {
        /// Why the measurement is invalid.
        reason: String,
    },
}

impl Outcome {
    /// Short lowercase label: `pass`, `fail`, `skip`, `error`, `invalid`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip { .. } => "skip",
            Outcome::Error => "error",
            Outcome::Invalid { .. } => "invalid",
        }
    }

    /// Whether this outcome fails the run (fail, error, invalid).
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            Outcome::Fail | Outcome::Error | Outcome::Invalid { .. }
        )
    }
}

/// Source location of a case definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Path relative to the workspace root.
    pub file: String,
    /// 1-based line.
    pub line: u32,
}

/// Counts of cases by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// All cases.
    pub total: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Errored.
    pub errored: usize,
    /// Measured, but the measurement cannot be trusted (schema 2; 0 when read from 1).
    #[serde(default)]
    pub invalid: usize,
}

impl Summary {
    /// Counts the outcomes of `cases`.
    pub fn from_cases(cases: &[CaseResult]) -> Self {
        let mut s = Summary {
            total: cases.len(),
            ..Summary::default()
        };
        for c in cases {
            match c.outcome {
                Outcome::Pass => s.passed += 1,
                Outcome::Fail => s.failed += 1,
                Outcome::Skip { .. } => s.skipped += 1,
                Outcome::Error => s.errored += 1,
                Outcome::Invalid { .. } => s.invalid += 1,
            }
        }
        s
    }
}

/// Documented process exit codes of the `gauntlet` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ExitCode {
    /// Every case and gate passed (skips allowed).
    Success = 0,
    /// A case or gate failed or errored.
    Failed = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Setup error: target unreachable, fixture missing.
    Setup = 3,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Parses a seed as `--seed` and the reports write it: `0x`-prefixed hex or decimal.
pub fn parse_seed(text: &str) -> Result<u64, std::num::ParseIntError> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
}

/// [`parse_seed`] for a command-line value parser: the error says what a seed is.
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_seed_arg(text: &str) -> Result<u64, String> {
    parse_seed(text)
        .map_err(|e| format!("seed must be an unsigned 64-bit integer (decimal or 0x-hex): {e}"))
}

/// Serde for a seed: written as a `0x` hex string, read from that, a decimal string or a number.
mod seed_hex {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(seed: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{seed:#x}"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct SeedVisitor;
        impl Visitor<'_> for SeedVisitor {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a seed: a \"0x\" hex string, a decimal string or an unsigned integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                super::parse_seed(v)
                    .map_err(|e| E::custom(format!("seed {v:?} is not a 64-bit seed: {e}")))
            }
        }
        d.deserialize_any(SeedVisitor)
    }
}
