//! Phases: suites measured as a whole (load, backtest) rather than case by case.
//!
//! A load test or a backtest is one measurement from which several gates are
//! read (p99, error rate, achieved rate; Sharpe, drawdown, DSR). Such a suite
//! implements [`Phase`]: it says which gate cases its settings define
//! ([`Phase::cases`]), and [`Phase::run`] measures once and returns one
//! [`CaseResult`] per selected gate plus the [`Section`]s (tables, charts) of
//! the report. `gauntlet run` runs phases after the case suites, one at a
//! time, so a load test never shares the machine with other cases.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use gauntlet_reports::{CaseResult, Outcome, Section};

use crate::config::Settings;
use crate::runner::Selection;
use crate::target::Target;

/// A gate case a phase reports, known before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCase {
    /// Case name within the phase's suite (`sustained_p99`).
    pub name: String,
    /// Requirement ids the gate checks.
    pub requirements: Vec<String>,
}

impl PlannedCase {
    /// A planned case.
    pub fn new(name: impl Into<String>, requirements: &[&str]) -> Self {
        PlannedCase {
            name: name.into(),
            requirements: requirements.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    /// `suite::name`.
    pub fn id(&self, suite: &str) -> String {
        format!("{suite}::{}", self.name)
    }

    /// This case's verdict as a report entry. `message` should say measured
    /// vs threshold (`p99 1.84 ms > ceiling 1.00 ms`), for a pass too.
    pub fn result(
        &self,
        suite: &str,
        outcome: Outcome,
        message: Option<String>,
        duration: Duration,
    ) -> CaseResult {
        CaseResult {
            id: self.id(suite),
            suite: suite.to_owned(),
            name: self.name.clone(),
            requirements: self.requirements.clone(),
            outcome,
            duration,
            message,
            location: None,
        }
    }
}

/// Why a phase could not run at all (as opposed to a gate failing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhaseError {
    /// Its settings are invalid: `gauntlet` exits 2. Name the key and the limit.
    #[error("{0}")]
    Config(String),
    /// It cannot set up (target unreachable, data file missing): `gauntlet` exits 3.
    #[error("{0}")]
    Setup(String),
}

/// What a phase gets to run with.
#[derive(Clone)]
pub struct PhaseCtx {
    /// The system under test.
    pub target: Arc<dyn Target>,
    /// The run's resolved settings; the phase reads `settings.section(suite)`.
    pub settings: Settings,
    /// Names of the selected cases ([`PlannedCase::name`]); never empty.
    pub selected: Vec<String>,
    /// Whether a live progress line may be drawn (stderr is a terminal).
    pub progress: bool,
}

impl PhaseCtx {
    /// Whether the case `name` was selected.
    pub fn is_selected(&self, name: &str) -> bool {
        self.selected.iter().any(|s| s == name)
    }
}

/// A phase's verdicts and report sections.
#[derive(Debug, Clone, Default)]
pub struct PhaseOutput {
    /// One result per selected case.
    pub cases: Vec<CaseResult>,
    /// Tables and charts for the report.
    pub sections: Vec<Section>,
}

/// A suite measured as a whole; see the [module docs](self).
#[async_trait]
pub trait Phase: Send + Sync {
    /// The suite name (`load`, `backtest`).
    fn suite(&self) -> &'static str;

    /// The gate cases these settings define, in report order.
    ///
    /// # Errors
    ///
    /// [`PhaseError::Config`] when the suite's settings are invalid.
    fn cases(&self, settings: &Settings) -> Result<Vec<PlannedCase>, PhaseError>;

    /// Measures what the selected cases need and returns their verdicts.
    ///
    /// # Errors
    ///
    /// [`PhaseError`] when nothing could be measured.
    async fn run(&self, ctx: PhaseCtx) -> Result<PhaseOutput, PhaseError>;
}

impl Selection {
    /// The names of `planned` cases of `suite` that this selection takes.
    pub fn apply_planned(&self, suite: &str, planned: &[PlannedCase]) -> Vec<String> {
        planned
            .iter()
            .filter(|p| self.matches_parts(suite, &p.id(suite), &p.requirements))
            .map(|p| p.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_applies_to_planned_cases_by_suite_id_and_requirement() {
        let planned = [
            PlannedCase::new("sustained_p99", &["SLA-LAT"]),
            PlannedCase::new("sustained_errors", &["SLA-ERR"]),
        ];
        let all = Selection::default();
        assert_eq!(all.apply_planned("load", &planned).len(), 2);
        let by_suite = Selection {
            suites: vec!["unit".into()],
            ..Selection::default()
        };
        assert!(by_suite.apply_planned("load", &planned).is_empty());
        let by_filter = Selection {
            filter: Some("load::sustained_p".into()),
            ..Selection::default()
        };
        assert_eq!(by_filter.apply_planned("load", &planned), ["sustained_p99"]);
        let by_requirement = Selection {
            requirements: vec!["SLA-ERR".into()],
            ..Selection::default()
        };
        assert_eq!(
            by_requirement.apply_planned("load", &planned),
            ["sustained_errors"]
        );
    }
}
