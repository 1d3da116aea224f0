//! `gauntlet report merge`: load shard files merged exactly and judged.

use std::time::SystemTime;

use gauntlet_harness::Registry;
use gauntlet_load::cli::ReportCommand;
use gauntlet_reports::ExitCode;

use crate::plumbing::{self, Failure, Meta};

/// Runs `gauntlet report …`.
pub fn report(registry: &Registry, command: ReportCommand) -> Result<ExitCode, Failure> {
    match command {
        ReportCommand::Merge(args) => {
            let started_at = SystemTime::now();
            plumbing::check_report_dir(&args.report_dir)?;
            let merged = gauntlet_load::cli::merge(&args)?;
            let meta = Meta {
                tool: "gauntlet",
                seed: merged.seed,
                target: merged.target,
                profile: "merge",
                started_at,
            };
            let report = plumbing::report(registry, meta, merged.cases, vec![merged.section]);
            plumbing::publish(&report, &args.report_dir)
        }
    }
}
