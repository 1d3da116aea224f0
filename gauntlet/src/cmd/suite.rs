//! The subcommands the suites add (`gauntlet load`, `gauntlet backtest`, `gauntlet report
//! merge`): each runs through the [`Host`] the composition root lends it, and what it
//! returns is printed and published here, once for all of them.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use gauntlet_harness::command::{CommandOutput, Host, SuiteCommand};
use gauntlet_harness::config::{Profile, Settings};
use gauntlet_harness::{ClientSecurity, ExtraHeader, HttpOptions, Registry, SuiteError, Target};
use gauntlet_reports::ExitCode;

use crate::plumbing::{self, Failure, Meta};

/// The root's side of [`Host`]: the same config discovery, target and report-directory
/// check as `gauntlet run`.
struct RootHost<'a> {
    registry: &'a Registry,
    /// The report directory the command checked, where a `container:` target's log goes
    /// (`container.log`, as in `gauntlet run`).
    report_dir: Mutex<Option<PathBuf>>,
}

/// A failure as the suite error kind that maps back to its exit code.
fn to_suite_error(f: Failure) -> SuiteError {
    match f.code {
        ExitCode::Setup => SuiteError::Setup(f.message),
        _ => SuiteError::Config(f.message),
    }
}

#[async_trait]
impl Host for RootHost<'_> {
    fn settings(
        &self,
        config: Option<&Path>,
        profile: &str,
        flags: &Profile,
    ) -> Result<Settings, SuiteError> {
        plumbing::resolve_settings(self.registry, config, profile, flags).map_err(to_suite_error)
    }

    fn check_report_dir(&self, dir: &Path) -> Result<(), SuiteError> {
        plumbing::check_report_dir(dir).map_err(to_suite_error)?;
        *self
            .report_dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir.to_owned());
        Ok(())
    }

    async fn connect(
        &self,
        url: Option<&str>,
        headers: &[ExtraHeader],
    ) -> Result<Arc<dyn Target>, SuiteError> {
        // Only a container's log goes into the report directory: given one, the in-process
        // engine would be the audited twin, which `gauntlet run` alone asks for.
        let dir = url
            .is_some_and(|u| u.starts_with("container:"))
            .then(|| {
                self.report_dir
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .flatten();
        let security = (!headers.is_empty()).then(|| ClientSecurity {
            headers: headers.to_vec(),
            ..ClientSecurity::default()
        });
        plumbing::connect(url, HttpOptions::default(), security, dir.as_deref())
            .await
            .map_err(to_suite_error)
    }

    fn progress(&self) -> bool {
        std::io::stderr().is_terminal()
    }
}

/// Runs `command` with its parsed `matches`: its stdout goes to `out`, its summary and
/// report summary to stderr, its report files into the directory it names.
pub fn run(
    registry: &Registry,
    command: &dyn SuiteCommand,
    matches: &clap::ArgMatches,
    out: &mut dyn Write,
) -> Result<ExitCode, Failure> {
    let host = RootHost {
        registry,
        report_dir: Mutex::new(None),
    };
    let output: CommandOutput =
        plumbing::runtime(command.worker_threads())?.block_on(command.run(matches, &host))?;
    let _ = out.write_all(output.stdout.as_bytes());
    if let Some(summary) = &output.summary {
        let _ = writeln!(std::io::stderr(), "{summary}");
    }
    match output.report {
        None if output.failed => Ok(ExitCode::Failed),
        None => Ok(ExitCode::Success),
        Some(r) => {
            let meta = Meta {
                tool: &r.tool,
                seed: r.seed,
                target: r.target,
                profile: &r.profile,
                started_at: r.started_at,
            };
            let report = plumbing::report(registry, meta, r.cases, r.sections);
            let code = plumbing::publish(&report, &r.dir, r.print_cases)?;
            // With reports as without: a run the command calls failed (every request failed,
            // say) never exits 0, whatever its gates as configured said.
            Ok(if output.failed && code == ExitCode::Success {
                ExitCode::Failed
            } else {
                code
            })
        }
    }
}
