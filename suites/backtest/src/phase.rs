//! [`BacktestSuite`]: the backtest as a measured suite of `gauntlet run`.
//!
//! It reads `[profile.X.backtest]` ([`BacktestConfig`]), backtests the configured model
//! through the run's target (or the configured strategy) on the configured bars — by
//! default generated fixture bars, seed 1 — and reports each gate as a case
//! `backtest::<gate>` with measured versus threshold, plus one report section, and writes
//! `trades.csv` and the returns (`returns.parquet`, or `returns.csv` with
//! `returns-format = "csv"`) into the run's report directory.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use gauntlet_harness::config::Settings;
use gauntlet_harness::error_chain;
use gauntlet_harness::suite::{PlannedCase, Suite, SuiteCtx, SuiteError, SuiteOutput};
use gauntlet_reports::Outcome as CaseOutcome;

use crate::config::{BacktestConfig, DataPlan, Plan, SignalPlan};
use crate::data::DataError;
use crate::report::{SUITE, gate_cases, section};
use crate::signals::{SignalError, Signals, TargetModel};
use crate::suite::{GATES, evaluate, load_bars, run_plan};

/// The backtest suite, as the `gauntlet` binary registers it.
#[derive(Debug, Clone, Copy, Default)]
pub struct BacktestSuite;

fn plan(settings: &Settings) -> Result<Plan, SuiteError> {
    let config = BacktestConfig::from_table(&settings.section(SUITE))
        .map_err(|e| SuiteError::Config(e.to_string()))?;
    Plan::from_config(&config).map_err(|e| SuiteError::Config(e.to_string()))
}

/// A missing or unreadable file is a setup problem; bad contents are the config's.
fn data_error(e: DataError) -> SuiteError {
    match e {
        DataError::Io { .. } => SuiteError::Setup(error_chain(&e)),
        other => SuiteError::Config(error_chain(&other)),
    }
}

fn signal_error(e: SignalError) -> SuiteError {
    match e {
        SignalError::Strategy { .. } | SignalError::UnknownFeature { .. } => {
            SuiteError::Config(e.to_string())
        }
        other => SuiteError::Setup(other.to_string()),
    }
}

#[async_trait]
impl Suite for BacktestSuite {
    fn name(&self) -> &'static str {
        SUITE
    }

    fn about(&self) -> &'static str {
        "backtest of the served model: costs, no look-ahead, walk-forward, DSR, PBO"
    }

    fn crate_version(&self) -> (&'static str, &'static str) {
        ("gauntlet-backtest", crate::VERSION)
    }

    fn commands(&self) -> Vec<Box<dyn gauntlet_harness::SuiteCommand>> {
        vec![Box::new(crate::cli::BacktestCommand)]
    }

    fn gates(&self, settings: &Settings) -> Result<Vec<PlannedCase>, SuiteError> {
        plan(settings)?;
        Ok(GATES
            .iter()
            .map(|(name, requirements)| PlannedCase::new(*name, requirements))
            .collect())
    }

    async fn run(&self, ctx: SuiteCtx) -> Result<SuiteOutput, SuiteError> {
        let started = Instant::now();
        let plan = plan(&ctx.settings)?;
        let (bars, info) = load_bars(&plan).map_err(data_error)?;
        let model: Option<Box<dyn Signals>> = match &plan.signal {
            SignalPlan::Model(name) => {
                let connected = TargetModel::connect(
                    Arc::clone(&ctx.target),
                    name,
                    plan.batch_rows,
                    plan.concurrency,
                )
                .await;
                match connected {
                    Ok(m) => Some(Box::new(m)),
                    // A target without the model (run with --skip-missing-models): every gate
                    // is skipped with the reason, as for any capability a target lacks.
                    Err(e @ SignalError::NotServed { .. }) => {
                        let reason = e.to_string();
                        let cases = GATES
                            .iter()
                            .filter(|(n, _)| ctx.is_selected(n))
                            .map(|(n, r)| {
                                PlannedCase::new(*n, r).result(
                                    SUITE,
                                    CaseOutcome::Skip {
                                        reason: reason.clone(),
                                    },
                                    None,
                                    started.elapsed(),
                                )
                            })
                            .collect();
                        return Ok(SuiteOutput {
                            cases,
                            sections: Vec::new(),
                        });
                    }
                    Err(e) => return Err(signal_error(e)),
                }
            }
            SignalPlan::Strategy(_) => None,
        };
        let outcome = run_plan(
            &plan,
            &bars,
            info.gaps.median_interval_ns,
            model.as_deref(),
            ctx.settings.seed,
        )
        .await
        .map_err(signal_error)?;
        let gates: Vec<_> = evaluate(&outcome, &plan.gates)
            .into_iter()
            .filter(|g| ctx.is_selected(&g.name))
            .collect();
        // The same full-precision exports as `gauntlet backtest`, beside the run's reports.
        let dir = &ctx.settings.report_dir;
        let format = plan.returns_format;
        crate::export::write_all(dir, &outcome, &bars.ts_ns, format).map_err(|e| {
            SuiteError::Setup(format!(
                "failed to write trades.csv and {} into {}: {e}",
                format.file_name(),
                dir.display()
            ))
        })?;
        let id = match &plan.data {
            DataPlan::Fixture { seed, .. } => format!("fixture-{seed}"),
            DataPlan::File { .. } => "file".to_owned(),
        };
        Ok(SuiteOutput {
            cases: gate_cases(&gates, started.elapsed()),
            sections: vec![section(&info, &outcome, &id)],
        })
    }
}
