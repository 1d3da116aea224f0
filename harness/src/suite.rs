//! The one seam every suite plugs into: [`Suite`].
//!
//! A suite has a name, the cases it runs one by one ([`Suite::cases`]: conformance and
//! property checks) and/or the gates it plans from its settings ([`Suite::gates`]: load,
//! backtest), each tagged with requirement ids. Its settings are its own table of a
//! profile, `[profile.X.<suite>]`, which only the suite reads and validates
//! ([`Suite::gates`] is called on every run and on `gauntlet list`, so a bad key is
//! reported before any work). A measured suite reads one measurement from which several
//! gates are judged, so [`Suite::run`] measures once and returns one [`CaseResult`] per
//! selected gate plus the report [`Section`]s.
//!
//! Suites return typed results and [`SuiteError`]s; the composition root (the `gauntlet`
//! binary) registers them in one list ([`crate::registry::Registry`]) and owns exit codes
//! and terminal output.
//!
//! ```
//! use async_trait::async_trait;
//! use gauntlet_harness::config::Settings;
//! use gauntlet_harness::gate::{Bound, Verdict, threshold};
//! use gauntlet_harness::suite::{PlannedCase, Suite, SuiteCtx, SuiteError, SuiteOutput};
//!
//! /// A suite with one gate: the target's health answer within a ceiling.
//! struct Health;
//!
//! #[async_trait]
//! impl Suite for Health {
//!     fn name(&self) -> &'static str {
//!         "health"
//!     }
//!     fn about(&self) -> &'static str {
//!         "the health endpoint answers in time"
//!     }
//!     fn crate_version(&self) -> (&'static str, &'static str) {
//!         ("my-suites", "0.1.0")
//!     }
//!     fn gates(&self, settings: &Settings) -> Result<Vec<PlannedCase>, SuiteError> {
//!         settings.section(self.name()).keys().next().map_or(Ok(()), |k| {
//!             Err(SuiteError::Config(format!("unknown key `{k}`")))
//!         })?;
//!         Ok(vec![PlannedCase::new("live_ms", &["ENG-OIP"])])
//!     }
//!     async fn run(&self, ctx: SuiteCtx) -> Result<SuiteOutput, SuiteError> {
//!         let gate = threshold("live_ms", "GET /v2/health/live", Some(0.4), Some(1.0), Bound::AtMost, "ms");
//!         assert_eq!(gate.verdict, Verdict::Pass);
//!         Ok(SuiteOutput::from_gates(self.name(), &ctx.planned, &[gate], std::time::Duration::ZERO))
//!     }
//! }
//!
//! let planned = Health.gates(&Settings::default()).unwrap();
//! assert_eq!(planned[0].id("health"), "health::live_ms");
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use gauntlet_reports::{CaseResult, Outcome, Section};

use crate::case::Case;
use crate::command::SuiteCommand;
use crate::config::Settings;
use crate::gate::GateResult;
use crate::target::Target;

/// A gate a suite reports, known before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCase {
    /// Case name within the suite (`sustained_p99`).
    pub name: String,
    /// Requirement ids the gate checks; each must be in the catalogue.
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

/// Why a suite could not run at all (as opposed to a gate failing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// Its settings or inputs are invalid (`gauntlet` exits 2). Name the key and the limit.
    #[error("{0}")]
    Config(String),
    /// It cannot set up: target unreachable, data file missing (`gauntlet` exits 3).
    #[error("{0}")]
    Setup(String),
}

/// What a measured suite gets to run with.
#[derive(Clone)]
pub struct SuiteCtx {
    /// The system under test.
    pub target: Arc<dyn Target>,
    /// The run's resolved settings; the suite reads `settings.section(name)`.
    pub settings: Settings,
    /// The selected gates, in planned order; never empty.
    pub planned: Vec<PlannedCase>,
    /// Whether a live progress line may be drawn (stderr is a terminal).
    pub progress: bool,
}

impl SuiteCtx {
    /// Whether the gate `name` was selected.
    pub fn is_selected(&self, name: &str) -> bool {
        self.planned.iter().any(|p| p.name == name)
    }
}

/// A measured suite's verdicts and report sections.
#[derive(Debug, Clone, Default)]
pub struct SuiteOutput {
    /// One result per selected gate.
    pub cases: Vec<CaseResult>,
    /// Tables and charts for the report.
    pub sections: Vec<Section>,
}

impl SuiteOutput {
    /// The results of `gates` that are among `planned` (in the gates' order), each lasting
    /// `took`; no sections.
    pub fn from_gates(
        suite: &str,
        planned: &[PlannedCase],
        gates: &[GateResult],
        took: Duration,
    ) -> Self {
        SuiteOutput {
            cases: gate_results(suite, planned, gates, took),
            sections: Vec::new(),
        }
    }
}

/// The report entries of `gates` that are among `planned`, each lasting `took`.
pub fn gate_results(
    suite: &str,
    planned: &[PlannedCase],
    gates: &[GateResult],
    took: Duration,
) -> Vec<CaseResult> {
    gates
        .iter()
        .filter_map(|g| {
            planned
                .iter()
                .find(|p| p.name == g.name)
                .map(|p| p.result(suite, g.verdict.outcome(), Some(g.message.clone()), took))
        })
        .collect()
}

/// A suite: see the [module docs](self).
#[async_trait]
pub trait Suite: Send + Sync {
    /// The suite name: the `suite` of its case ids, the `--suite` value, the config table.
    fn name(&self) -> &'static str;

    /// What the suite checks, in one line (for `--suite` help and `gauntlet list --suites`).
    fn about(&self) -> &'static str;

    /// Former names `--suite` still accepts, with a deprecation warning.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// The crate that provides this suite and its version, recorded in report.json.
    fn crate_version(&self) -> (&'static str, &'static str);

    /// The subcommands the suite adds to `gauntlet` (`gauntlet load`), each named apart
    /// from `gauntlet`'s own and every other suite's.
    fn commands(&self) -> Vec<Box<dyn SuiteCommand>> {
        Vec::new()
    }

    /// The cases the runner runs one by one, each with `suite` equal to [`Suite::name`].
    fn cases(&self) -> Vec<Case> {
        Vec::new()
    }

    /// Validates the suite's `[profile.X.<suite>]` table in `settings` and returns the
    /// gates it defines, in report order. The default takes no settings: any key is an
    /// error naming it.
    ///
    /// # Errors
    ///
    /// [`SuiteError::Config`] naming the key and the limit.
    fn gates(&self, settings: &Settings) -> Result<Vec<PlannedCase>, SuiteError> {
        no_settings(self.name(), settings)?;
        Ok(Vec::new())
    }

    /// Measures what the selected gates need and returns their verdicts. Called only when
    /// [`Suite::gates`] planned a selected gate.
    ///
    /// # Errors
    ///
    /// [`SuiteError`] when nothing could be measured.
    async fn run(&self, ctx: SuiteCtx) -> Result<SuiteOutput, SuiteError> {
        let _ = ctx;
        Ok(SuiteOutput::default())
    }
}

/// Rejects any key of `suite`'s table: for suites that take no settings.
///
/// # Errors
///
/// [`SuiteError::Config`] naming the first key.
pub fn no_settings(suite: &str, settings: &Settings) -> Result<(), SuiteError> {
    match settings.section(suite).keys().next() {
        None => Ok(()),
        Some(key) => Err(SuiteError::Config(format!(
            "unknown key `{key}`: the {suite} suite takes no settings"
        ))),
    }
}
