//! What every subcommand shares, once: the failure type and its exit code, config
//! discovery, the target, the report directory check, the run metadata and publishing the
//! reports.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use gauntlet_harness::config::{ConfigFile, Profile, Settings};
use gauntlet_harness::{
    ClientSecurity, ContainerTarget, GrpcTarget, HttpOptions, HttpTarget, Registry, RegistryError,
    SuiteError, Target, TargetError, error_chain,
};
use gauntlet_reports::{ExitCode, RunMeta, RunReport};

/// An error with the exit code it calls for.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: ExitCode,
    /// What went wrong, causes included.
    pub message: String,
}

impl Failure {
    /// A usage or config error (exit 2).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Failure {
            code: ExitCode::Usage,
            message: message.to_string(),
        }
    }

    /// A setup error (exit 3).
    pub fn setup(message: impl std::fmt::Display) -> Self {
        Failure {
            code: ExitCode::Setup,
            message: message.to_string(),
        }
    }

    /// A usage error from a library error, with its causes.
    pub fn usage_err(e: impl std::error::Error) -> Self {
        Self::usage(error_chain(&e))
    }

    /// A setup error from a library error, with its causes.
    pub fn setup_err(e: impl std::error::Error) -> Self {
        Self::setup(error_chain(&e))
    }
}

impl From<SuiteError> for Failure {
    fn from(e: SuiteError) -> Self {
        match e {
            SuiteError::Setup(m) => Failure::setup(m),
            // `SuiteError` is non-exhaustive: anything else is the user's to fix.
            other => Failure::usage(other),
        }
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure::usage_err(e)
    }
}

/// Settings from the config file (`config`, else ./gauntlet.toml when it exists), its
/// `profile`, then `flags`; a suite table naming no registered suite is an error.
pub fn resolve_settings(
    registry: &Registry,
    config: Option<&Path>,
    profile: &str,
    flags: &Profile,
) -> Result<Settings, Failure> {
    let config_path = config.map(Path::to_path_buf).or_else(|| {
        let default = PathBuf::from("gauntlet.toml");
        default.exists().then_some(default)
    });
    let file = match &config_path {
        Some(p) => {
            let file = ConfigFile::read(p).map_err(Failure::usage_err)?;
            registry.check_tables(&file, &p.display().to_string())?;
            Some(file)
        }
        None => None,
    };
    Settings::resolve(file.as_ref().zip(config_path.as_deref()), profile, flags)
        .map_err(Failure::usage_err)
}

/// Directory of the report directory where the in-process engine's audited twin keeps its
/// log (`gauntlet audit verify gauntlet-report/audit-log`).
pub const AUDIT_LOG_DIR: &str = "audit-log";

/// The target at `url` (`http://…`, `grpc://host:port`, or `container:IMAGE[:TAG]` started here, its logs in
/// `container.log` of `report_dir` when given), or the in-process reference engine when `url`
/// is None (the log of its audited twin, for the compliance suite, in `audit-log/` of
/// `report_dir` when given). `security` (`--header`, `--ca-file`, admin credentials) is for
/// a URL target only: over gRPC its headers go as metadata.
pub async fn connect(
    url: Option<&str>,
    options: HttpOptions,
    security: Option<ClientSecurity>,
    report_dir: Option<&Path>,
) -> Result<Arc<dyn Target>, Failure> {
    fn reached<T: Target + 'static>(
        result: Result<T, TargetError>,
    ) -> Result<Arc<dyn Target>, Failure> {
        match result {
            Ok(t) => Ok(Arc::new(t)),
            Err(e @ TargetError::InvalidUrl { .. }) => {
                Err(Failure::usage(format!("--target: {e}")))
            }
            Err(e) => Err(Failure::setup_err(e)),
        }
    }
    let is_url = url.is_some_and(|u| !u.starts_with("container:"));
    if security.is_some() && !is_url {
        return Err(Failure::usage(
            "--header, --ca-file, --admin-credentials and the keyrings are for an http(s):// or \
             grpc:// --target (the in-process engine and containers make their own keys)",
        ));
    }
    let logs = report_dir.map(|d| d.join("container.log"));
    let logs = logs.as_deref();
    if let Some(image) = url.and_then(|u| u.strip_prefix("container:")) {
        let startup = std::time::Duration::from_secs(30);
        return reached(ContainerTarget::start(image, options, startup, logs).await);
    }
    if let Some(url) = url.filter(|u| u.starts_with("grpc://")) {
        let security = security.unwrap_or_default();
        return reached(GrpcTarget::connect_with(url, options, security).await);
    }
    match url {
        None => {
            let engine = gauntlet_suites::reference_target().map_err(|e| {
                Failure::setup(format!(
                    "failed to start the reference engine: {}",
                    error_chain(&e)
                ))
            })?;
            Ok(Arc::new(match report_dir {
                Some(dir) => engine.audit_log_in(dir.join(AUDIT_LOG_DIR)),
                None => engine,
            }))
        }
        Some(url) => match security {
            Some(security) => reached(HttpTarget::connect_with(url, options, security).await),
            None => reached(HttpTarget::connect(url, options).await),
        },
    }
}

/// A tokio runtime for one subcommand.
pub fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n).thread_name("gx-cli");
    }
    builder
        .enable_all()
        .build()
        .map_err(|e| Failure::setup(format!("failed to start the async runtime: {e}")))
}

/// Creates `dir` and proves a file can be written there, before any work.
pub fn check_report_dir(dir: &Path) -> Result<(), Failure> {
    gauntlet_reports::check_dir(dir).map_err(Failure::setup_err)
}

/// Whether stderr takes colour.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// What a run's metadata says beyond its cases.
pub struct Meta<'a> {
    /// `gauntlet`, or `gauntlet backtest` for that subcommand.
    pub tool: &'a str,
    /// The run seed.
    pub seed: u64,
    /// The target, credentials redacted.
    pub target: String,
    /// The profile (or `merge`).
    pub profile: &'a str,
    /// When the run started.
    pub started_at: SystemTime,
}

/// The report of `cases` and `sections`: its metadata names the version of this binary,
/// of the framework crates, and of every crate whose suite produced a case or gate.
pub fn report(
    registry: &Registry,
    meta: Meta<'_>,
    cases: Vec<gauntlet_reports::CaseResult>,
    sections: Vec<gauntlet_reports::Section>,
) -> RunReport {
    let base = [
        ("gauntlet", env!("CARGO_PKG_VERSION")),
        ("gauntlet-engine", gauntlet_engine::VERSION),
        ("gauntlet-fixtures", gauntlet_fixtures::VERSION),
        ("gauntlet-harness", gauntlet_harness::VERSION),
        ("gauntlet-reports", gauntlet_reports::VERSION),
    ];
    let crate_versions = registry.crate_versions(&base, cases.iter().map(|c| c.suite.as_str()));
    let meta = RunMeta {
        tool: meta.tool.to_owned(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: Some(env!("GAUNTLET_GIT_COMMIT"))
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        crate_versions,
        seed: meta.seed,
        target: meta.target,
        profile: meta.profile.to_owned(),
        started_at: meta.started_at,
        finished_at: SystemTime::now(),
    };
    RunReport::new(meta, cases).with_sections(sections)
}

/// Prints the summary to stderr (with `print_cases`, the case list too), writes every
/// report file into `dir` and says where; returns the report's exit code.
pub fn publish(report: &RunReport, dir: &Path, print_cases: bool) -> Result<ExitCode, Failure> {
    let mut err = std::io::stderr().lock();
    // Ignore write errors: a closed stderr (`| head`) must not stop the reports.
    if print_cases {
        let _ = gauntlet_reports::terminal::write(report, &mut err, color());
    }
    gauntlet_reports::write_all(report, dir).map_err(Failure::setup_err)?;
    let _ = writeln!(err, "gauntlet: reports in {}", dir.display());
    Ok(report.exit_code())
}
