//! `gauntlet`: runs Gauntlet's suites against a model-serving target and writes
//! the reports. A thin layer: flags become a validated [`Plan`], then the plan runs.
//!
//! Exit codes: 0 every case passed, 1 a case or gate failed, 2 usage or config
//! error, 3 setup error (target unreachable, fixture missing, reports unwritable).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode as ProcessExit;
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};

use gauntlet_harness::config::{ConfigFile, Profile, Settings};
use gauntlet_harness::phase::{Phase, PhaseCtx, PhaseError, PlannedCase};
use gauntlet_harness::references::served_references;
use gauntlet_harness::runner::{self, RunEvent, RunOptions, Selection};
use gauntlet_harness::{Case, Catalogue, HttpOptions, HttpTarget, References, Target, error_chain};
use gauntlet_reports::{ExitCode, RunMeta, RunReport};

const EXIT_CODES: &str = "Exit codes:
  0  every case passed (skips allowed)
  1  a case failed or errored
  2  usage or config error (bad flag, unknown profile or suite, bad gauntlet.toml)
  3  setup error: target unreachable (within 5 s), reference models not served
     (see --skip-missing-models), report directory not writable";

#[derive(Debug, Parser)]
#[command(
    name = "gauntlet",
    version,
    about = "Release gate for ML model-serving systems",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the suites against a target and write the reports.
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// List the cases with their requirement ids.
    List(ListArgs),
    /// Backtest a model (in process or at a URL) or a baseline strategy on OHLCV bars.
    Backtest(Box<gauntlet_backtest::cli::BacktestArgs>),
    /// One open-model load run (or one shard of it) against a target; see `gauntlet run
    /// --suite load` for the whole load suite.
    #[command(after_help = EXIT_CODES)]
    Load(Box<gauntlet_load::cli::LoadArgs>),
    /// Work on reports: `merge` load shard files.
    Report {
        #[command(subcommand)]
        command: gauntlet_load::cli::ReportCommand,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Config profile from gauntlet.toml: the load and backtest gates it defines are listed.
    #[arg(long, env = "GAUNTLET_PROFILE", default_value = "default")]
    profile: String,
    /// Config file; default: ./gauntlet.toml when it exists.
    #[arg(long, env = "GAUNTLET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SelectArgs {
    /// Only these suites (repeatable): unit, property, and the measured suites (load, backtest).
    #[arg(
        long = "suite",
        value_name = "SUITE",
        env = "GAUNTLET_SUITE",
        value_delimiter = ','
    )]
    suites: Vec<String>,
    /// Only cases whose id (`suite::name`) contains this text.
    #[arg(long, env = "GAUNTLET_FILTER")]
    filter: Option<String>,
    /// Only cases that check one of these requirement ids (repeatable).
    #[arg(
        long = "requirement",
        value_name = "ID",
        env = "GAUNTLET_REQUIREMENT",
        value_delimiter = ','
    )]
    requirements: Vec<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Base URL of an Open Inference Protocol server; default: the in-process reference engine.
    #[arg(long, env = "GAUNTLET_TARGET", value_name = "URL")]
    target: Option<String>,
    /// Config profile from gauntlet.toml.
    #[arg(long, env = "GAUNTLET_PROFILE", default_value = "default")]
    profile: String,
    /// Config file; default: ./gauntlet.toml when it exists.
    #[arg(long, env = "GAUNTLET_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write junit.xml, report.json, summary.md and report.html.
    #[arg(long, env = "GAUNTLET_REPORT_DIR", value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Run seed (decimal or 0x-hex); every generated input derives from it.
    #[arg(long, env = "GAUNTLET_SEED", value_parser = parse_seed)]
    seed: Option<u64>,
    /// Cases running at once.
    #[arg(long, env = "GAUNTLET_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Generated inputs per property case.
    #[arg(long, env = "GAUNTLET_PROPERTY_CASES")]
    property_cases: Option<u32>,
    /// Deadline of one case, e.g. `60s`.
    #[arg(long, env = "GAUNTLET_CASE_TIMEOUT", value_parser = humantime::parse_duration)]
    case_timeout: Option<std::time::Duration>,
    /// Deadline to reach an HTTP target, e.g. `3s` (at most 5s).
    #[arg(long, env = "GAUNTLET_CONNECT_TIMEOUT", value_parser = humantime::parse_duration)]
    connect_timeout: Option<std::time::Duration>,
    /// Deadline of one HTTP request, e.g. `10s`.
    #[arg(long, env = "GAUNTLET_REQUEST_TIMEOUT", value_parser = humantime::parse_duration)]
    request_timeout: Option<std::time::Duration>,
    /// The request-body limit the target is expected to enforce (bodies above it
    /// must get 413); default 1 MiB, the reference engine's.
    #[arg(long, env = "GAUNTLET_MAX_BODY_BYTES", value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Run even when the target does not serve the reference models: the cases that
    /// need them are skipped. Without it such a target is a setup error (exit 3).
    #[arg(
        long,
        env = "GAUNTLET_SKIP_MISSING_MODELS",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    skip_missing_models: bool,
}

fn parse_seed(s: &str) -> Result<u64, String> {
    gauntlet_reports::parse_seed(s)
        .map_err(|e| format!("seed must be an unsigned 64-bit integer (decimal or 0x-hex): {e}"))
}

/// An error with the exit code it calls for.
#[derive(Debug)]
struct Failure {
    code: ExitCode,
    message: String,
}

impl Failure {
    fn usage(message: impl std::fmt::Display) -> Self {
        Failure {
            code: ExitCode::Usage,
            message: message.to_string(),
        }
    }
    fn setup(message: impl std::fmt::Display) -> Self {
        Failure {
            code: ExitCode::Setup,
            message: message.to_string(),
        }
    }
    /// A usage error from a library error, with its causes.
    fn usage_err(e: impl std::error::Error) -> Self {
        Self::usage(error_chain(&e))
    }
    /// A setup error from a library error, with its causes.
    fn setup_err(e: impl std::error::Error) -> Self {
        Self::setup(error_chain(&e))
    }
}

/// The command line, where an environment twin set to "" (as CI matrices do) counts as unset.
fn parse_cli() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    fn unset_empty_env(cmd: clap::Command) -> clap::Command {
        let empty: Vec<clap::Id> = cmd
            .get_arguments()
            .filter(|a| {
                a.get_env()
                    .and_then(std::env::var_os)
                    .is_some_and(|v| v.is_empty())
            })
            .map(|a| a.get_id().clone())
            .collect();
        let cmd = empty.into_iter().fold(cmd, |cmd, id| {
            cmd.mut_arg(id, |a| a.env(clap::builder::Resettable::Reset))
        });
        cmd.mut_subcommands(unset_empty_env)
    }
    let matches = unset_empty_env(Cli::command()).try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

fn main() -> ProcessExit {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                0
            };
            // clap prints help and version to stdout, errors to stderr.
            let _ = e.print();
            return ProcessExit::from(code);
        }
    };
    init_tracing();
    let result = match cli.command {
        Command::List(args) => list(&args),
        Command::Run(args) => run(*args),
        Command::Backtest(args) => return ProcessExit::from(gauntlet_backtest::cli::run(*args)),
        Command::Load(args) => Ok(gauntlet_load::cli::run_load(*args)),
        Command::Report { command } => Ok(gauntlet_load::cli::run_report(command)),
    };
    match result {
        Ok(code) => ProcessExit::from(code.code()),
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "gauntlet: error: {}", f.message);
            ProcessExit::from(f.code.code())
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GAUNTLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Every registered case, checked against the requirement catalogue.
fn checked_cases() -> Result<Vec<Case>, Failure> {
    let cases = gauntlet_suites::all_cases();
    let catalogue = Catalogue::builtin().map_err(Failure::usage_err)?;
    catalogue.check(&cases).map_err(Failure::usage_err)?;
    Ok(cases)
}

/// The measured suites, run after the case suites, one at a time.
fn phases() -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(gauntlet_backtest::BacktestPhase),
        Box::new(gauntlet_load::LoadPhase),
    ]
}

/// A phase with the gate cases its settings define and those the run selected.
struct PlannedPhase {
    phase: Box<dyn Phase>,
    planned: Vec<PlannedCase>,
    selected: Vec<String>,
}

/// The gate cases of every phase under `settings`; an invalid suite table is a usage error.
fn planned_phases(settings: &Settings) -> Result<Vec<PlannedPhase>, Failure> {
    phases()
        .into_iter()
        .map(|phase| {
            let planned = phase.cases(settings).map_err(|e| {
                Failure::usage(format!(
                    "[profile.{}.{}] {e}",
                    settings.profile,
                    phase.suite()
                ))
            })?;
            Ok(PlannedPhase {
                phase,
                planned,
                selected: Vec::new(),
            })
        })
        .collect()
}

/// Selected cases of both kinds.
struct Selected {
    cases: Vec<Case>,
    /// The phases with at least one selected case.
    phases: Vec<PlannedPhase>,
}

impl Selected {
    fn total(&self) -> usize {
        self.cases.len() + self.phases.iter().map(|p| p.selected.len()).sum::<usize>()
    }
}

fn select(
    args: &SelectArgs,
    cases: &[Case],
    phases: Vec<PlannedPhase>,
) -> Result<Selected, Failure> {
    let phase_suites: Vec<&'static str> = phases.iter().map(|p| p.phase.suite()).collect();
    let selection = selection(args, &phase_suites)?;
    let selected = Selected {
        cases: selection.apply(cases),
        phases: phases
            .into_iter()
            .filter_map(|mut p| {
                p.selected = selection.apply_planned(p.phase.suite(), &p.planned);
                (!p.selected.is_empty()).then_some(p)
            })
            .collect(),
    };
    if selected.total() == 0 {
        return Err(Failure::usage("no case matches the selection"));
    }
    Ok(selected)
}

fn selection(args: &SelectArgs, phase_suites: &[&'static str]) -> Result<Selection, Failure> {
    // A "" among comma-separated values (`--suite unit,`) selects nothing: drop it.
    let args = &SelectArgs {
        suites: args
            .suites
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        filter: args.filter.clone(),
        requirements: args
            .requirements
            .iter()
            .filter(|r| !r.is_empty())
            .cloned()
            .collect(),
    };
    let mut known = gauntlet_suites::suite_names().to_vec();
    known.extend_from_slice(phase_suites);
    for s in &args.suites {
        if !known.contains(&s.as_str()) {
            return Err(Failure::usage(format!(
                "suite {s:?} (from --suite or the profile's `suites`) is not a suite (known: {})",
                known.join(", ")
            )));
        }
    }
    let catalogue = Catalogue::builtin().map_err(Failure::usage_err)?;
    for r in &args.requirements {
        if catalogue.get(r).is_none() {
            return Err(Failure::usage(format!(
                "--requirement {r:?} is not in the requirement catalogue"
            )));
        }
    }
    Ok(Selection {
        suites: args.suites.clone(),
        filter: args.filter.clone().filter(|f| !f.is_empty()),
        requirements: args.requirements.clone(),
    })
}

fn list(args: &ListArgs) -> Result<ExitCode, Failure> {
    let cases = checked_cases()?;
    let settings = resolve_settings(args.config.clone(), &args.profile, &Profile::default())?;
    let mut select_args = SelectArgs {
        suites: args.select.suites.clone(),
        filter: args.select.filter.clone(),
        requirements: args.select.requirements.clone(),
    };
    select_args.suites.retain(|s| !s.is_empty());
    if select_args.suites.is_empty() {
        select_args.suites = settings.suites.clone();
    }
    let selected = select(&select_args, &cases, planned_phases(&settings)?)?;
    let mut lines: Vec<(String, String)> = selected
        .cases
        .iter()
        .map(|c| (c.id(), c.requirements.join(", ")))
        .collect();
    for p in &selected.phases {
        for case in p.planned.iter().filter(|c| p.selected.contains(&c.name)) {
            lines.push((case.id(p.phase.suite()), case.requirements.join(", ")));
        }
    }
    let width = lines.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for (id, requirements) in &lines {
        if writeln!(out, "{id:<width$}  {requirements}").is_err() {
            break; // stdout closed (e.g. piped into head): nothing left to say.
        }
    }
    Ok(ExitCode::Success)
}

/// Settings from the config file (`config`, else ./gauntlet.toml when it exists),
/// its `profile`, then `flags`.
fn resolve_settings(
    config: Option<PathBuf>,
    profile: &str,
    flags: &Profile,
) -> Result<Settings, Failure> {
    let config_path = config.or_else(|| {
        let default = PathBuf::from("gauntlet.toml");
        default.exists().then_some(default)
    });
    let file = match &config_path {
        Some(p) => Some(ConfigFile::read(p).map_err(Failure::usage_err)?),
        None => None,
    };
    Settings::resolve(file.as_ref().zip(config_path.as_deref()), profile, flags)
        .map_err(Failure::usage_err)
}

/// A validated run: everything checked before any work starts.
struct Plan {
    settings: Settings,
    selected: Selected,
    target_url: Option<String>,
    skip_missing_models: bool,
}

fn plan(args: RunArgs) -> Result<Plan, Failure> {
    let cases = checked_cases()?;
    let flags = Profile {
        seed: args.seed,
        concurrency: args.concurrency,
        case_timeout: args.case_timeout,
        property_cases: args.property_cases,
        suites: None,
        report_dir: args.report_dir.clone(),
        connect_timeout: args.connect_timeout,
        request_timeout: args.request_timeout,
        max_body_bytes: args.max_body_bytes,
        load: None,
        backtest: None,
    };
    let settings = resolve_settings(args.config.clone(), &args.profile, &flags)?;
    let mut select_args = args.select;
    select_args.suites.retain(|s| !s.is_empty());
    if select_args.suites.is_empty() {
        select_args.suites = settings.suites.clone();
    }
    let selected = select(&select_args, &cases, planned_phases(&settings)?)?;
    Ok(Plan {
        settings,
        selected,
        target_url: args.target,
        skip_missing_models: args.skip_missing_models,
    })
}

fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let plan = plan(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::setup(format!("failed to start the async runtime: {e}")))?;
    runtime.block_on(execute(plan))
}

async fn execute(plan: Plan) -> Result<ExitCode, Failure> {
    let Plan {
        settings,
        selected,
        target_url,
        skip_missing_models,
    } = plan;
    let started_at = SystemTime::now();
    // Fail before the run, not after it, when the reports cannot be written.
    check_report_dir(&settings.report_dir)?;
    let reference = gauntlet_fixtures::load_embedded().map_err(Failure::setup_err)?;
    let target: Arc<dyn Target> = match &target_url {
        None => Arc::new(gauntlet_suites::reference_target().map_err(|e| {
            Failure::setup(format!(
                "failed to start the reference engine: {}",
                error_chain(&e)
            ))
        })?),
        Some(url) => {
            let options = HttpOptions {
                connect_timeout: settings.connect_timeout,
                request_timeout: settings.request_timeout,
                ..HttpOptions::default()
            };
            match HttpTarget::connect(url, options).await {
                Ok(t) => Arc::new(t),
                Err(e @ gauntlet_harness::TargetError::InvalidUrl { .. }) => {
                    return Err(Failure::usage(format!("--target: {e}")));
                }
                Err(e) => return Err(Failure::setup_err(e)),
            }
        }
    };
    let check = served_references(target.as_ref(), reference).await;
    let mut err = std::io::stderr();
    if !check.missing.is_empty() && !skip_missing_models {
        let names: Vec<String> = check
            .missing
            .iter()
            .map(|(name, why)| format!("{name} ({why})"))
            .collect();
        return Err(Failure::setup(format!(
            "the target does not serve the reference models {}: serve fixtures/models, or pass \
             --skip-missing-models to run only the cases that do not need them",
            names.join(", ")
        )));
    }
    for (name, why) in &check.missing {
        // Ignore write errors: a closed stderr (`| head`) must not stop the run or its reports.
        let _ = writeln!(
            err,
            "gauntlet: warning: the target does not serve reference model {name} ({why}); \
             cases that need it are skipped"
        );
    }
    let references = References {
        all: Arc::new(check.all),
        served: Arc::new(check.served),
    };
    let options = RunOptions {
        concurrency: settings.concurrency,
        case_timeout: settings.case_timeout,
        seed: settings.seed,
        property_cases: settings.property_cases,
        max_body_bytes: settings.max_body_bytes,
        replay_args: replay_args(target_url.as_deref(), skip_missing_models, &settings),
    };
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = writeln!(
        err,
        "gauntlet: running {} cases against {} (profile {}, seed {:#x})",
        selected.total(),
        target.describe(),
        settings.profile,
        settings.seed
    );
    let mut cases = runner::run(
        &selected.cases,
        Arc::clone(&target),
        &references,
        &options,
        |event| {
            if let RunEvent::CaseFinished(result) = event {
                let _ = writeln!(
                    std::io::stderr(),
                    "{}",
                    gauntlet_reports::terminal::case_line(result, color)
                );
            }
        },
    )
    .await;
    let mut sections = Vec::new();
    for PlannedPhase {
        phase, selected, ..
    } in selected.phases
    {
        let ctx = PhaseCtx {
            target: Arc::clone(&target),
            settings: settings.clone(),
            selected,
            progress: std::io::stderr().is_terminal(),
        };
        let output = phase.run(ctx).await.map_err(|e| match e {
            PhaseError::Config(m) => Failure::usage(format!(
                "[profile.{}.{}] {m}",
                settings.profile,
                phase.suite()
            )),
            PhaseError::Setup(m) => Failure::setup(format!("{} suite: {m}", phase.suite())),
        })?;
        for result in &output.cases {
            let _ = writeln!(
                std::io::stderr(),
                "{}",
                gauntlet_reports::terminal::case_line(result, color)
            );
        }
        cases.extend(output.cases);
        sections.extend(output.sections);
    }
    let meta = RunMeta {
        tool: "gauntlet".to_owned(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: Some(env!("GAUNTLET_GIT_COMMIT"))
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        crate_versions: crate_versions(),
        seed: settings.seed,
        target: target.describe(),
        profile: settings.profile.clone(),
        started_at,
        finished_at: SystemTime::now(),
    };
    let report = RunReport::new(meta, cases).with_sections(sections);
    let mut err = std::io::stderr().lock();
    let _ = gauntlet_reports::terminal::write(&report, &mut err, color);
    write_reports(&report, &settings.report_dir)?;
    let _ = writeln!(
        err,
        "gauntlet: reports in {}",
        settings.report_dir.display()
    );
    let code = report.exit_code();
    if code != ExitCode::Success {
        let _ = writeln!(
            err,
            "gauntlet: replay the same inputs with `{}`",
            runner::replay_command(
                &options.replay_args,
                options.seed,
                options.property_cases,
                "SUITE::CASE"
            )
        );
    }
    Ok(code)
}

/// The arguments a replay needs besides the seed: which target, and how it is judged.
/// The target URL is shown without credentials (they are the user's to add back).
fn replay_args(target: Option<&str>, skip_missing_models: bool, settings: &Settings) -> String {
    let mut args = Vec::new();
    if let Some(url) = target {
        args.push(format!("--target {}", gauntlet_harness::redact_url(url)));
    }
    if skip_missing_models {
        args.push("--skip-missing-models".to_owned());
    }
    if settings.max_body_bytes != Settings::default().max_body_bytes {
        args.push(format!("--max-body-bytes {}", settings.max_body_bytes));
    }
    args.join(" ")
}

fn crate_versions() -> std::collections::BTreeMap<String, String> {
    [
        ("gauntlet", env!("CARGO_PKG_VERSION")),
        ("gauntlet-engine", gauntlet_engine::VERSION),
        ("gauntlet-harness", gauntlet_harness::VERSION),
        ("gauntlet-reports", gauntlet_reports::VERSION),
        ("gauntlet-suites", gauntlet_suites::VERSION),
        ("gauntlet-fixtures", gauntlet_fixtures::VERSION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Creates `dir` and proves a file can be written there.
fn check_report_dir(dir: &Path) -> Result<(), Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::setup(format!(
            "failed to {what} report directory {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create", e))?;
    let probe = dir.join(format!(".gauntlet-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| fail("write into", e))?;
    std::fs::remove_file(&probe).map_err(|e| fail("clean up a probe file in", e))?;
    Ok(())
}

fn write_reports(report: &RunReport, dir: &Path) -> Result<(), Failure> {
    gauntlet_reports::write_all(report, dir)
        .map(|_| ())
        .map_err(Failure::setup_err)
}
