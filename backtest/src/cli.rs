//! `gauntlet backtest`: flags become a validated [`Plan`], every input is checked, then the
//! backtest runs and the reports are written (nothing is written when an input is bad).
//!
//! Exit codes: 0 every gate passed, 1 a gate failed, 2 bad flag or bad data (the flag, or
//! the row and column, named), 3 setup error (target unreachable, model not served, report
//! directory not writable).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use clap::Args;

use gauntlet_engine::{Model, ModelArtifact};
use gauntlet_harness::config::{ConfigFile, Profile, Settings};
use gauntlet_harness::{HttpOptions, HttpTarget, TargetError, error_chain};
use gauntlet_reports::{ExitCode, RunMeta, RunReport};

use crate::config::{BacktestConfig, CalendarKind, Plan, SignalPlan};
use crate::data::{DataError, TimeUnit};
use crate::exec::{Fill, PositionModel};
use crate::report::{gate_cases, section, write_terminal};
use crate::signals::{EngineModel, Signals, TargetModel};
use crate::suite::{evaluate, load_bars, run_plan};
use crate::sweep::WalkMode;

/// Flags of `gauntlet backtest`.
#[derive(Debug, Args)]
#[command(
    after_help = "Writes junit.xml, report.json (every figure at full precision in the \
section's values), summary.md, report.html, trades.csv and returns.csv into --report-dir.\n\n\
Exit codes: 0 every gate passed, 1 a gate failed, 2 bad flag or bad \
data (flag, or row and column, named), 3 setup error (target unreachable, model not served, \
report directory not writable)."
)]
pub struct BacktestArgs {
    /// OHLCV bars: a .csv (with a header) or .parquet file. Default: generated fixture bars.
    #[arg(long, value_name = "FILE", env = "GAUNTLET_BACKTEST_DATA")]
    pub data: Option<PathBuf>,
    /// Model artifact file (JSON) run in process, or a reference model name (ref-linear,
    /// ref-ensemble); with --target, the name of the model the target serves.
    #[arg(long, value_name = "ARTIFACT|NAME", env = "GAUNTLET_BACKTEST_MODEL")]
    pub model: Option<String>,
    /// Base URL of an Open Inference Protocol server to get predictions from.
    #[arg(long, value_name = "URL", env = "GAUNTLET_TARGET", requires = "model")]
    pub target: Option<String>,
    /// Built-in strategy instead of a model: ma-cross:FAST,SLOW.
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["model", "target"])]
    pub strategy: Option<String>,
    /// Fees in basis points of traded notional [default: 1, or the config's fees-bps].
    #[arg(long, value_name = "BPS", allow_negative_numbers = true)]
    pub fees_bps: Option<f64>,
    /// Slippage in basis points of the price, against the trade [default: 1, or the
    /// config's slippage-bps].
    #[arg(long, value_name = "BPS", allow_negative_numbers = true)]
    pub slippage_bps: Option<f64>,
    /// Walk-forward folds.
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub folds: Option<usize>,
    /// Anchored or rolling walk-forward training windows.
    #[arg(long, value_name = "MODE")]
    pub walk_forward: Option<WalkMode>,
    /// Positions in [0, 1] only.
    #[arg(long)]
    pub long_only: bool,
    /// When orders fill: next-close (default) or next-open.
    #[arg(long, value_name = "FILL")]
    pub fill: Option<Fill>,
    /// Position model: units (default: bought or sold when the target changes, held in
    /// between) or target-weight (traded back to the target fraction of equity every bar,
    /// each rebalancing charged).
    #[arg(long, value_name = "MODEL")]
    pub sizing: Option<PositionModel>,
    /// Predictions with |p| ≤ this mean flat.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub deadband: Option<f64>,
    /// Periods per year; default: inferred from the timestamps (weekend bars, bars per day),
    /// printed with how.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub periods_per_year: Option<f64>,
    /// Calendar for periods per year: auto (inferred from the timestamps), 24/7 or exchange.
    #[arg(long, value_name = "CAL")]
    pub calendar: Option<CalendarKind>,
    /// Annual risk-free rate (0.03 = 3 %).
    #[arg(long, value_name = "RATE", allow_negative_numbers = true)]
    pub risk_free: Option<f64>,
    /// Unit of integer timestamps (s, ms, us, ns); default: inferred from the magnitude.
    #[arg(long, value_name = "UNIT")]
    pub time_unit: Option<TimeUnit>,
    /// Column names: timestamp,open,high,low,close,volume.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Variants tried outside this run, this one included; the deflated Sharpe ratio's N is
    /// this plus the sweep's other trials [default: 1].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub trials: Option<u64>,
    /// Run the one configured backtest alone: no parameter sweep (no PBO; the walk-forward
    /// tests the configured run on each fold).
    #[arg(long)]
    pub no_sweep: bool,
    /// Longest interval between bars accepted, in median intervals of trading time (weekends
    /// and overnight hours left out when the bars have none) [default: 10].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub max_gap: Option<f64>,
    /// Accept gaps longer than --max-gap.
    #[arg(long)]
    pub allow_gaps: bool,
    /// Report the best trial of the sweep (N becomes at least the sweep's size).
    #[arg(long)]
    pub pick_best: bool,
    /// Seed of the generated bars (without --data).
    #[arg(long, value_name = "SEED")]
    pub fixture_seed: Option<u64>,
    /// Number of generated bars (without --data).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub fixture_bars: Option<usize>,
    /// Gate: lowest annualised Sharpe ratio.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub sharpe_min: Option<f64>,
    /// Gate: largest max drawdown (0.2 = 20 %).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub max_drawdown: Option<f64>,
    /// Gate: lowest deflated Sharpe ratio.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub dsr_min: Option<f64>,
    /// Gate: largest probability of backtest overfitting.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub pbo_max: Option<f64>,
    /// Gate: lowest hit rate over trades.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub hit_rate_min: Option<f64>,
    /// Gate: largest turnover per year.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub turnover_max: Option<f64>,
    /// Gate: lowest out-of-sample walk-forward Sharpe ratio.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub walk_forward_sharpe_min: Option<f64>,
    /// Config profile whose backtest section in gauntlet.toml gives the defaults for these flags.
    #[arg(long, env = "GAUNTLET_PROFILE", default_value = "default")]
    pub profile: String,
    /// Config file; default: ./gauntlet.toml when it exists.
    #[arg(long, env = "GAUNTLET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seed of the look-ahead detector's cut points (decimal or 0x-hex).
    #[arg(long, env = "GAUNTLET_SEED", value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// Where junit.xml, report.json, summary.md and report.html go.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "backtest-report",
        env = "GAUNTLET_REPORT_DIR"
    )]
    pub report_dir: PathBuf,
}

fn parse_seed(s: &str) -> Result<u64, String> {
    gauntlet_reports::parse_seed(s)
        .map_err(|e| format!("seed must be an unsigned 64-bit integer (decimal or 0x-hex): {e}"))
}

struct Failure(ExitCode, String);

fn usage(message: impl std::fmt::Display) -> Failure {
    Failure(ExitCode::Usage, message.to_string())
}

fn setup(message: impl std::fmt::Display) -> Failure {
    Failure(ExitCode::Setup, message.to_string())
}

/// Runs `gauntlet backtest`; returns the process exit code. Messages go to stderr, the
/// metrics table to stdout.
pub fn run(args: BacktestArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "gauntlet: error: failed to start the async runtime: {e}"
            );
            return ExitCode::Setup.code();
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(code) => code.code(),
        Err(Failure(code, message)) => {
            let _ = writeln!(std::io::stderr(), "gauntlet: error: {message}");
            code.code()
        }
    }
}

/// The config section of the profile, then the flags over it.
fn config(args: &BacktestArgs) -> Result<(BacktestConfig, Settings), Failure> {
    let path = args.config.clone().or_else(|| {
        let default = PathBuf::from("gauntlet.toml");
        default.exists().then_some(default)
    });
    let file = match &path {
        Some(p) => Some(ConfigFile::read(p).map_err(|e| usage(error_chain(&e)))?),
        None => None,
    };
    let flags = Profile {
        seed: args.seed,
        ..Profile::default()
    };
    let settings = Settings::resolve(file.as_ref().zip(path.as_deref()), &args.profile, &flags)
        .map_err(|e| usage(error_chain(&e)))?;
    let mut c = BacktestConfig::from_table(&settings.section(crate::report::SUITE))
        .map_err(|e| usage(format!("[profile.{}.backtest] {e}", args.profile)))?;
    if let Some(d) = &args.data {
        c.file = Some(d.clone());
    }
    if let Some(s) = &args.strategy {
        c.strategy = Some(s.clone());
    }
    if let Some(m) = &args.model {
        c.strategy = None;
        c.model = m.clone();
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field.clone() { c.$field = v; } )* };
    }
    set!(
        fees_bps,
        slippage_bps,
        folds,
        fill,
        sizing,
        deadband,
        calendar,
        risk_free,
        trials,
        fixture_seed,
        fixture_bars
    );
    if let Some(w) = args.walk_forward {
        c.walk_forward = w;
    }
    if args.periods_per_year.is_some() {
        c.periods_per_year = args.periods_per_year;
    }
    if args.time_unit.is_some() {
        c.time_unit = args.time_unit;
    }
    c.long_only |= args.long_only;
    c.pick_best |= args.pick_best;
    if args.no_sweep {
        c.sweep = false;
    }
    if let Some(g) = args.max_gap {
        c.max_gap = g;
    }
    c.allow_gaps |= args.allow_gaps;
    if let Some(names) = &args.columns {
        let [timestamp, open, high, low, close, volume] = names.as_slice() else {
            return Err(usage(
                "--columns: expected six names: timestamp,open,high,low,close,volume",
            ));
        };
        c.columns = crate::data::ColumnNames {
            timestamp: timestamp.clone(),
            open: open.clone(),
            high: high.clone(),
            low: low.clone(),
            close: close.clone(),
            volume: volume.clone(),
        };
    }
    let g = &mut c.gates;
    for (slot, flag) in [
        (&mut g.sharpe_min, args.sharpe_min),
        (&mut g.max_drawdown, args.max_drawdown),
        (&mut g.dsr_min, args.dsr_min),
        (&mut g.pbo_max, args.pbo_max),
        (&mut g.hit_rate_min, args.hit_rate_min),
        (&mut g.turnover_max, args.turnover_max),
        (&mut g.walk_forward_sharpe_min, args.walk_forward_sharpe_min),
    ] {
        if flag.is_some() {
            *slot = flag;
        }
    }
    Ok((c, settings))
}

/// The model run in process: an artifact file, or a reference model by name.
fn local_model(spec: &str) -> Result<Arc<Model>, Failure> {
    let artifact = if Path::new(spec).is_file() {
        let bytes = std::fs::read(spec).map_err(|e| usage(format!("--model {spec}: {e}")))?;
        ModelArtifact::from_json(&bytes)
            .map_err(|e| usage(format!("--model {spec}: {}", error_chain(&e))))?
    } else {
        let models = gauntlet_fixtures::load_embedded().map_err(|e| setup(error_chain(&e)))?;
        models.into_iter().find(|m| m.name == spec).ok_or_else(|| {
            usage(format!(
                "--model {spec}: no such file, and not a reference model (ref-linear, ref-ensemble)"
            ))
        })?
    };
    Model::from_artifact(artifact)
        .map(Arc::new)
        .map_err(|e| usage(format!("--model {spec}: {}", error_chain(&e))))
}

async fn execute(args: BacktestArgs) -> Result<ExitCode, Failure> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let (config, settings) = config(&args)?;
    let plan = Plan::from_config(&config).map_err(|e| match e {
        crate::config::ConfigError::OutOfRange { .. } => usage(format!("--{e}")),
        other => usage(other),
    })?;
    let (bars, info) =
        load_bars(&plan).map_err(|e: DataError| usage(format!("--data: {}", error_chain(&e))))?;
    let (model, target_name): (Option<Box<dyn Signals>>, String) =
        match (&plan.signal, &args.target) {
            (SignalPlan::Strategy(m), _) => (None, format!("built-in strategy {m}")),
            (SignalPlan::Model(name), Some(url)) => {
                let target = HttpTarget::connect(url, HttpOptions::default())
                    .await
                    .map_err(|e| match e {
                        TargetError::InvalidUrl { .. } => usage(format!("--target: {e}")),
                        other => setup(other),
                    })?;
                let description = gauntlet_harness::Target::describe(&target);
                let signals =
                    TargetModel::connect(Arc::new(target), name, plan.batch_rows, plan.concurrency)
                        .await
                        .map_err(setup)?;
                (Some(Box::new(signals)), description)
            }
            (SignalPlan::Model(name), None) => {
                let spec = args.model.as_deref().unwrap_or(name);
                let signals = EngineModel::new(local_model(spec)?).map_err(usage)?;
                (
                    Some(Box::new(signals)),
                    format!("in-process gauntlet-engine {}", gauntlet_engine::VERSION),
                )
            }
        };
    check_report_dir(&args.report_dir)?;
    let outcome = run_plan(
        &plan,
        &bars,
        info.gaps.median_interval_ns,
        model.as_deref(),
        settings.seed,
    )
    .await
    .map_err(setup)?;
    let gates = evaluate(&outcome, &plan.gates);
    let mut out = std::io::stdout().lock();
    let _ = write_terminal(&mut out, &info, &outcome, &gates);
    let meta = RunMeta {
        tool: "gauntlet backtest".to_owned(),
        tool_version: crate::VERSION.to_owned(),
        git_commit: None,
        crate_versions: [
            ("gauntlet-backtest", crate::VERSION),
            ("gauntlet-engine", gauntlet_engine::VERSION),
            ("gauntlet-fixtures", gauntlet_fixtures::VERSION),
            ("gauntlet-reports", gauntlet_reports::VERSION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        seed: settings.seed,
        target: target_name,
        profile: settings.profile.clone(),
        started_at,
        finished_at: SystemTime::now(),
    };
    let report = RunReport::new(meta, gate_cases(&gates, started.elapsed()))
        .with_sections(vec![section(&info, &outcome, "cli")]);
    gauntlet_reports::write_all(&report, &args.report_dir).map_err(|e| setup(error_chain(&e)))?;
    crate::export::write_all(&args.report_dir, &outcome, &bars.ts_ns).map_err(setup)?;
    let _ = writeln!(
        std::io::stderr(),
        "gauntlet: reports in {}",
        args.report_dir.display()
    );
    Ok(report.exit_code())
}

/// Creates `dir` and proves a file can be written there, before any work.
fn check_report_dir(dir: &Path) -> Result<(), Failure> {
    let fail = |what: &str, e: std::io::Error| {
        setup(format!(
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
