//! `gauntlet backtest`: a model or a baseline strategy on OHLCV bars.

use std::io::Write;
use std::time::SystemTime;

use gauntlet_backtest::cli::BacktestArgs;
use gauntlet_harness::Registry;
use gauntlet_harness::config::Profile;
use gauntlet_reports::ExitCode;

use crate::plumbing::{self, Failure, Meta, resolve_settings};

/// Runs `gauntlet backtest`: every input is checked before the report directory is
/// touched, so a bad flag or bad data writes nothing. The metrics table goes to `out`.
pub fn backtest(
    registry: &Registry,
    args: BacktestArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Failure> {
    let started_at = SystemTime::now();
    let flags = Profile {
        seed: args.seed,
        ..Profile::default()
    };
    let settings = resolve_settings(registry, args.config.as_deref(), &args.profile, &flags)?;
    plumbing::runtime(None)?.block_on(async {
        let prepared = gauntlet_backtest::cli::prepare(&args, &settings).await?;
        plumbing::check_report_dir(&args.report_dir)?;
        let target = prepared.target.clone();
        let outcome = prepared.run().await?;
        let _ = out.write_all(outcome.table.as_bytes());
        outcome.write_exports(&args.report_dir)?;
        let meta = Meta {
            tool: "gauntlet backtest",
            seed: settings.seed,
            target,
            profile: &settings.profile,
            started_at,
        };
        let report = plumbing::report(registry, meta, outcome.cases, vec![outcome.section]);
        plumbing::publish(&report, &args.report_dir)
    })
}
