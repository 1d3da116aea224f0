//! Every suite case as a libtest test, so `cargo test` and `cargo nextest run` run them
//! against the in-process reference engine.
//!
//! Tests are named `suite::case`. `GAUNTLET_SEED` (decimal or `0x` hex) sets the run seed,
//! `GAUNTLET_PROPERTY_CASES` the inputs per property case. A case needing a capability the
//! target lacks is listed as ignored; a skip decided at run time is reported as ignored with
//! its reason.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use gauntlet_harness::runner::{RunOptions, run_one};
use gauntlet_harness::{CaseCtx, References, Target, error_chain};
use gauntlet_reports::Outcome;

/// Deadline of one case; the property cases take a few seconds in a debug build.
const CASE_TIMEOUT: Duration = Duration::from_secs(300);
/// Generated inputs per property case unless `GAUNTLET_PROPERTY_CASES` says otherwise.
const DEFAULT_PROPERTY_CASES: u32 = 64;

fn env_u64(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{name}: {e}")),
        Ok(text) => {
            let text = text.trim().replace('_', "");
            gauntlet_reports::parse_seed(&text)
                .map_err(|e| format!("{name}: {text:?} is not a u64 (decimal or 0x hex): {e}"))
        }
    }
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let setup = || -> Result<_, String> {
        let seed = env_u64("GAUNTLET_SEED", gauntlet_suites::DEFAULT_SEED)?;
        let property_cases = env_u64("GAUNTLET_PROPERTY_CASES", DEFAULT_PROPERTY_CASES.into())?;
        // The same range as the CLI's `property-cases`: 0 would pass every property unrun.
        let property_cases = u32::try_from(property_cases)
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| {
                format!("GAUNTLET_PROPERTY_CASES: {property_cases} is out of range: 1 to 100000")
            })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("failed to build the tokio runtime: {e}"))?;
        let target: Arc<dyn Target> =
            Arc::new(gauntlet_suites::reference_target().map_err(|e| error_chain(&e))?);
        let models = References::all_served(
            gauntlet_fixtures::load_embedded().map_err(|e| error_chain(&e))?,
        );
        Ok((seed, property_cases, Arc::new(runtime), target, models))
    };
    let (seed, property_cases, runtime, target, models) = match setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let trials = gauntlet_suites::all_cases()
        .into_iter()
        .map(|case| {
            let lacks = case.missing_capability(target.as_ref());
            let options = RunOptions {
                seed,
                property_cases,
                ..RunOptions::default()
            };
            let ctx = CaseCtx::for_case(&case, Arc::clone(&target), &options, &models);
            let runtime = Arc::clone(&runtime);
            Trial::ignorable_test(case.id(), move || {
                let result = runtime.block_on(run_one(case, ctx, CASE_TIMEOUT));
                let requirements = result.requirements.join(", ");
                let message = result.message.unwrap_or_default();
                match result.outcome {
                    Outcome::Pass => Ok(Completion::Completed),
                    Outcome::Skip { reason } => Ok(Completion::ignored_with(reason)),
                    Outcome::Fail => Err(Failed::from(format!(
                        "[{requirements}] failed (run seed {seed:#018x}): {message}"
                    ))),
                    Outcome::Error => Err(Failed::from(format!(
                        "[{requirements}] error, no verdict (run seed {seed:#018x}): {message}"
                    ))),
                    Outcome::Invalid { reason } => Err(Failed::from(format!(
                        "[{requirements}] invalid measurement (run seed {seed:#018x}): {reason}"
                    ))),
                }
            })
            .with_ignored_flag(lacks.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
