//! `gauntlet list`: every selected case and gate with its requirement ids.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use gauntlet_harness::Registry;
use gauntlet_harness::config::Profile;
use gauntlet_reports::ExitCode;

use super::run::SelectArgs;
use crate::plumbing::{Failure, resolve_settings};

/// Flags of `gauntlet list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Config profile from gauntlet.toml: the gates its suite tables define are listed.
    #[arg(long, env = "GAUNTLET_PROFILE", default_value = "default")]
    profile: String,
    /// Config file; default: ./gauntlet.toml when it exists.
    #[arg(long, env = "GAUNTLET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Prints `id  requirements` per selected case and gate to `out`.
pub fn list(
    registry: &Registry,
    args: &ListArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Failure> {
    let settings = resolve_settings(
        registry,
        args.config.as_deref(),
        &args.profile,
        &Profile::default(),
    )?;
    let planned = args.select.plan(registry, &settings)?;
    let lines = planned.listing();
    let width = lines.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
    for (id, requirements) in &lines {
        if writeln!(out, "{id:<width$}  {}", requirements.join(", ")).is_err() {
            break; // stdout closed (e.g. piped into head): nothing left to say.
        }
    }
    Ok(ExitCode::Success)
}
