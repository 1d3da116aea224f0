//! Gauntlet's suites: the cases a release gate runs against any [`Target`].
//!
//! - `conformance` (formerly `unit`): Open Inference Protocol conformance of one target —
//!   health, metadata, infer in every input layout, validation errors, the sanitiser's report, the repository's
//!   load → promote → rollback cycle and the metrics endpoint.
//! - `property`: proptest invariants driven through the target — no input yields a 5xx or a
//!   non-JSON error, served predictions equal the model library's, sanitising is idempotent, and
//!   readers never see a torn model during swaps.
//!
//! Every case names the requirement ids it checks (see `harness/requirements.toml`); a case that
//! needs a capability the target lacks is skipped with the reason. Cases that change the target
//! only touch models they create under names derived from their seed, so they may run
//! concurrently against a shared server.
//!
//! [`Conformance`] and [`Property`] are the two suites as the `gauntlet` binary registers
//! them; [`all_cases`] is what the `cases` test binary runs; [`reference_target`] builds the
//! in-process reference engine with the checked-in reference models.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use gauntlet_harness::References;
//! use gauntlet_harness::runner::{RunOptions, Selection, run};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Runtime::new()?;
//! let target = Arc::new(gauntlet_suites::reference_target()?);
//! let models = References::all_served(gauntlet_fixtures::load_embedded()?);
//! let selection = Selection {
//!     suites: vec!["conformance".to_owned()],
//!     filter: Some("health".to_owned()),
//!     ..Selection::default()
//! };
//! let cases = selection.apply(&gauntlet_suites::all_cases());
//! let options = RunOptions {
//!     concurrency: 2,
//!     case_timeout: Duration::from_secs(30),
//!     seed: gauntlet_suites::DEFAULT_SEED,
//!     property_cases: 16,
//!     ..RunOptions::default()
//! };
//! let results = runtime.block_on(run(&cases, target, &models, &options, |_| {}));
//! assert!(!results.is_empty());
//! assert!(results.iter().all(|r| r.outcome.label() == "pass"), "{results:#?}");
//! # Ok(())
//! # }
//! ```
//!
//! [`Target`]: gauntlet_harness::Target
#![deny(missing_docs)]

mod conformance;
mod property;
mod repository;
mod support;

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod honesty;

use gauntlet_engine::EngineConfig;
use gauntlet_fixtures::FixtureError;
use gauntlet_harness::{Case, InProcess, InProcessError, Suite};

/// The run seed used when none is given (`GAUNTLET_SEED` unset, no `--seed`): the CLI's default,
/// so that `cargo test` and `gauntlet run` without a seed try the same inputs.
pub const DEFAULT_SEED: u64 = gauntlet_harness::config::DEFAULT_SEED;

/// The `conformance` suite: Open Inference Protocol conformance of one target, case by case.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conformance;

impl Suite for Conformance {
    fn name(&self) -> &'static str {
        "conformance"
    }
    fn about(&self) -> &'static str {
        "Open Inference Protocol conformance, validation, sanitiser, repository, metrics"
    }
    fn aliases(&self) -> &'static [&'static str] {
        // Deprecated: the suite's name until 0.1; accepted (with a warning) for one release.
        &["unit"]
    }
    fn crate_version(&self) -> (&'static str, &'static str) {
        ("gauntlet-suites", VERSION)
    }
    fn cases(&self) -> Vec<Case> {
        conformance::cases()
    }
}

/// The `property` suite: proptest invariants driven through the target.
#[derive(Debug, Clone, Copy, Default)]
pub struct Property;

impl Suite for Property {
    fn name(&self) -> &'static str {
        "property"
    }
    fn about(&self) -> &'static str {
        "generated inputs: no 5xx, predictions equal the library's, no torn swaps"
    }
    fn crate_version(&self) -> (&'static str, &'static str) {
        ("gauntlet-suites", VERSION)
    }
    fn cases(&self) -> Vec<Case> {
        property::cases()
    }
}

/// Every case of this crate's suites: `conformance` first, then `property`.
pub fn all_cases() -> Vec<Case> {
    let mut cases = Conformance.cases();
    cases.extend(Property.cases());
    cases
}

/// Why the in-process reference target could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The checked-in reference artifacts did not load.
    #[error("failed to load the reference models")]
    Models(#[source] FixtureError),
    /// The engine refused a reference artifact.
    #[error("failed to start the in-process engine")]
    Engine(#[source] InProcessError),
}

/// The in-process reference engine (default config) serving the checked-in reference models
/// (`ref-linear`, `ref-ensemble`), each live at its artifact version.
///
/// # Errors
/// [`ReferenceError`] when the embedded artifacts do not parse or the engine rejects one.
pub fn reference_target() -> Result<InProcess, ReferenceError> {
    let models = gauntlet_fixtures::load_embedded().map_err(ReferenceError::Models)?;
    InProcess::with_models(EngineConfig::default(), models).map_err(ReferenceError::Engine)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use gauntlet_harness::Catalogue;

    use super::*;

    #[test]
    fn case_ids_are_unique_and_suites_known() {
        let cases = all_cases();
        let ids: BTreeSet<String> = cases.iter().map(Case::id).collect();
        assert_eq!(ids.len(), cases.len(), "duplicate case ids in {ids:?}");
        for case in &cases {
            assert!(
                ["conformance", "property"].contains(&case.suite),
                "{}",
                case.id()
            );
        }
        // Conformance cases come before property cases.
        let first_property = cases.iter().position(|c| c.suite == "property").unwrap();
        assert!(
            cases[first_property..]
                .iter()
                .all(|c| c.suite == "property")
        );
        assert!(cases.iter().any(|c| c.suite == "conformance"));
    }

    #[test]
    fn every_requirement_is_in_the_catalogue() {
        Catalogue::builtin().unwrap().check(&all_cases()).unwrap();
        assert_eq!(DEFAULT_SEED, 0x6A75_6E74_6C65_7400);
    }

    #[test]
    fn reference_target_serves_the_reference_models() {
        let target = reference_target().unwrap();
        let described = gauntlet_harness::Target::describe(&target);
        assert!(described.contains("in-process"), "{described}");
    }
}
