//! `gauntlet load`: one open-model run, or one shard of it.

use std::io::{IsTerminal, Write};
use std::time::SystemTime;

use gauntlet_harness::config::Profile;
use gauntlet_harness::{HttpOptions, Registry};
use gauntlet_load::cli::LoadArgs;
use gauntlet_reports::ExitCode;

use crate::plumbing::{self, Failure, Meta, resolve_settings};

/// Runs `gauntlet load`: 0 gates passed (or a valid shard written), 1 a gate failed or the
/// run is invalid.
pub fn load(registry: &Registry, args: LoadArgs) -> Result<ExitCode, Failure> {
    let settings = resolve_settings(
        registry,
        args.config.as_deref(),
        &args.profile,
        &Profile::default(),
    )?;
    gauntlet_load::cli::check(&args, &settings)?;
    if let Some(dir) = &args.report_dir {
        plumbing::check_report_dir(dir)?;
    }
    let started_at = SystemTime::now();
    // One worker: the driver runs its own threads; this runtime only waits for them.
    plumbing::runtime(Some(1))?.block_on(async {
        let url = Some(args.target.as_str()).filter(|t| *t != "in-process");
        let target = plumbing::connect(url, HttpOptions::default()).await?;
        let outcome =
            gauntlet_load::cli::load(&args, &settings, target, std::io::stderr().is_terminal())
                .await?;
        let _ = writeln!(std::io::stderr(), "{}", outcome.summary);
        let (Some(dir), Some((cases, section))) = (&args.report_dir, outcome.judged) else {
            // No gates to judge here (the merge applies them), but a measurement that
            // cannot be trusted is never a success: the shard file says why.
            return Ok(if outcome.invalid.is_some() {
                ExitCode::Failed
            } else {
                ExitCode::Success
            });
        };
        let meta = Meta {
            tool: "gauntlet",
            seed: outcome.seed,
            target: outcome.target,
            profile: &args.profile,
            started_at,
        };
        plumbing::publish(&plumbing::report(registry, meta, cases, vec![section]), dir)
    })
}
