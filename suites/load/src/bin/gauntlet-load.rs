//! `gauntlet-load`: the load worker on its own, for container images and Kubernetes Jobs.
//!
//! `gauntlet-load load …` takes exactly the arguments of `gauntlet load` (the same
//! [`LoadCommand`]) and writes the same shard file with `--out`; `gauntlet report merge` then
//! merges the shards. It is not the `gauntlet` binary because that one links polars (the
//! backtest suite): this crate does not, so a static build of the worker is small and quick
//! and goes into a `FROM scratch` image (`ci/image/build --load` → `gauntlet-load:dev`).
//!
//! The worker drives an `http://`, `https://` or `grpc://host:port` URL only: starting containers or an
//! in-process engine is `gauntlet`'s, and judging gates into a report directory is the
//! merge's. `gauntlet-load report merge SHARD.json|DIR… --report-dir DIR` is that merge, the
//! same as `gauntlet report merge`, so that the merge Job of `ci/k8s/load-merge.yaml` runs
//! the same image as the workers. Exit codes are `gauntlet`'s: 0 a valid shard written (or
//! every merged gate passed), 1 a failed gate or an invalid measurement, 2 a usage or config
//! error, 3 a setup error (target unreachable, report directory not writable).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use gauntlet_harness::command::{CommandReport, Host, SuiteCommand};
use gauntlet_harness::config::{ConfigFile, Profile, Settings};
use gauntlet_harness::target::TargetError;
use gauntlet_harness::{
    ClientSecurity, ExtraHeader, GrpcTarget, HttpOptions, HttpTarget, SuiteError, Target,
    error_chain,
};
use gauntlet_load::cli::{LoadCommand, ReportCommandGroup};
use gauntlet_reports::{ExitCode as ReportExit, RunMeta, RunReport};

/// The git commit the binary was built from, when the build said (`ci/image/build --load`
/// sets it); a plain `cargo build` leaves it unknown rather than re-running a build script on
/// every commit.
const GIT_COMMIT: Option<&str> = option_env!("GAUNTLET_GIT_COMMIT");

/// The worker's side of [`Host`]: config discovery as `gauntlet`'s, URL targets only; a
/// report directory for `report merge` only.
struct WorkerHost {
    /// Whether the command writes reports (`report merge`); `load` writes a shard file.
    reports: bool,
}

#[async_trait]
impl Host for WorkerHost {
    fn settings(
        &self,
        config: Option<&Path>,
        profile: &str,
        flags: &Profile,
    ) -> Result<Settings, SuiteError> {
        let path = config.map(Path::to_path_buf).or_else(|| {
            let default = PathBuf::from("gauntlet.toml");
            default.exists().then_some(default)
        });
        let file = match &path {
            Some(p) => Some(ConfigFile::read(p).map_err(|e| SuiteError::Config(error_chain(&e)))?),
            None => None,
        };
        // Other suites' tables in the file are not checked here (this binary knows only the
        // load suite); the load table itself is checked key by key when the run is planned.
        Settings::resolve(file.as_ref().zip(path.as_deref()), profile, flags)
            .map_err(|e| SuiteError::Config(error_chain(&e)))
    }

    fn check_report_dir(&self, dir: &Path) -> Result<(), SuiteError> {
        if !self.reports {
            return Err(SuiteError::Config(format!(
                "--report-dir {}: `gauntlet-load load` writes shard files (--out) only; judge \
                 them with `gauntlet-load report merge --report-dir DIR`, or run `gauntlet load`",
                dir.display()
            )));
        }
        gauntlet_reports::check_dir(dir).map_err(|e| SuiteError::Setup(error_chain(&e)))
    }

    async fn connect(
        &self,
        url: Option<&str>,
        headers: &[ExtraHeader],
    ) -> Result<Arc<dyn Target>, SuiteError> {
        fn reached<T: Target + 'static>(
            result: Result<T, TargetError>,
        ) -> Result<Arc<dyn Target>, SuiteError> {
            match result {
                Ok(t) => Ok(Arc::new(t)),
                Err(e @ TargetError::InvalidUrl { .. }) => {
                    Err(SuiteError::Config(format!("--target: {}", error_chain(&e))))
                }
                Err(e) => Err(SuiteError::Setup(error_chain(&e))),
            }
        }
        let security = ClientSecurity {
            headers: headers.to_vec(),
            ..ClientSecurity::default()
        };
        if let Some(u) = url.filter(|u| u.starts_with("grpc://")) {
            return reached(GrpcTarget::connect_with(u, HttpOptions::default(), security).await);
        }
        let url = match url {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => u,
            other => {
                return Err(SuiteError::Config(format!(
                    "--target {}: gauntlet-load drives an http://, https:// or grpc:// URL; in-process and \
                     container: targets are `gauntlet load`'s",
                    other.unwrap_or("in-process")
                )));
            }
        };
        reached(HttpTarget::connect_with(url, HttpOptions::default(), security).await)
    }

    fn progress(&self) -> bool {
        std::io::stderr().is_terminal()
    }
}

/// Writes `report`'s files and prints its verdict, as `gauntlet` does; the exit code is the
/// report's.
fn publish(report: CommandReport) -> ExitCode {
    let meta = RunMeta {
        tool: "gauntlet-load".to_owned(),
        tool_version: gauntlet_load::VERSION.to_owned(),
        git_commit: GIT_COMMIT.filter(|c| !c.is_empty()).map(str::to_owned),
        crate_versions: [
            ("gauntlet-load", gauntlet_load::VERSION),
            ("gauntlet-harness", gauntlet_harness::VERSION),
            ("gauntlet-reports", gauntlet_reports::VERSION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        seed: report.seed,
        target: report.target,
        profile: report.profile,
        started_at: report.started_at,
        finished_at: std::time::SystemTime::now(),
    };
    let run = RunReport::new(meta, report.cases).with_sections(report.sections);
    let mut err = std::io::stderr().lock();
    // A closed stderr must not stop the reports.
    if report.print_cases {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let _ = gauntlet_reports::terminal::write(&run, &mut err, color);
    }
    if let Err(e) = gauntlet_reports::write_all(&run, &report.dir) {
        let _ = writeln!(err, "error: {}", error_chain(&e));
        return ExitCode::from(3);
    }
    let _ = writeln!(err, "gauntlet-load: reports in {}", report.dir.display());
    match run.exit_code() {
        ReportExit::Success => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

fn main() -> ExitCode {
    let load = LoadCommand;
    let matches = clap::Command::new("gauntlet-load")
        .version(gauntlet_load::VERSION)
        .about(
            "The load worker of `gauntlet load` on its own: one open-model run or one shard of \
             it against an http(s) URL, written as a shard file for `gauntlet report merge`",
        )
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(load.command())
        .subcommand(ReportCommandGroup.command())
        .get_matches();
    let Some((name, args)) = matches.subcommand() else {
        // subcommand_required: clap has already exited with its usage message.
        return ExitCode::from(2);
    };
    let (command, host): (&dyn SuiteCommand, WorkerHost) = match name {
        "report" => (&ReportCommandGroup, WorkerHost { reports: true }),
        _ => (&load, WorkerHost { reports: false }),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(command.worker_threads().unwrap_or(1))
        .thread_name("gx-cli")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(command.run(args, &host)) {
        Ok(output) => {
            print!("{}", output.stdout);
            if let Some(summary) = &output.summary {
                eprintln!("{summary}");
            }
            // Only `report merge` has a report: `load`'s check_report_dir refuses --report-dir.
            if let Some(report) = output.report {
                return publish(report);
            }
            if output.failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(SuiteError::Setup(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
