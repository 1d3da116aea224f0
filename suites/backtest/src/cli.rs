//! `gauntlet backtest`: flags become a validated [`Plan`] and every input is checked
//! ([`prepare`]), then the backtest runs and its exports are written ([`Prepared::run`]).
//! The `gauntlet` binary owns the rest (config discovery, the report directory — checked
//! between the two, so nothing is written when an input is bad —, exit codes, printing).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use clap::{Args, FromArgMatches};

use gauntlet_engine::{Model, ModelArtifact};
use gauntlet_harness::command::{CommandOutput, CommandReport, Host, SuiteCommand};
use gauntlet_harness::config::{Profile, Settings};
use gauntlet_harness::error_chain;
use gauntlet_harness::suite::SuiteError;
use gauntlet_reports::{CaseResult, Section};

use crate::config::{BacktestConfig, CalendarKind, Plan, SignalPlan};
use crate::data::{Bars, DataError, TimeUnit};
use crate::exec::{Fill, PositionModel};
use crate::export::ReturnsFormat;
use crate::report::{gate_cases, section, write_terminal};
use crate::signals::{EngineModel, Signals, TargetModel};
use crate::suite::{DataInfo, Outcome, evaluate, load_bars_and_run, run_plan_with};
use crate::sweep::WalkMode;

/// Flags of `gauntlet backtest`.
#[derive(Debug, Args)]
#[command(
    after_help = "Writes junit.xml, report.json (every figure at full precision in the \
section's values), summary.md, report.html, trades.csv and returns.parquet (returns.csv with \
--returns-format csv; neither with --no-exports) into --report-dir.\n\n\
--no-sweep runs one backtest alone: the look-ahead detector, the walk-forward and the cost \
check (each re-runs the backtest) are reported as skipped with the reason, and PBO (it needs \
the sweep) too; --checks runs the three anyway.\n\n\
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
    /// Base URL of an Open Inference Protocol server to get predictions from, or
    /// `container:IMAGE[:TAG]` to start that image with Docker for the run.
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
    /// Run the one configured backtest alone: no parameter sweep and no re-runs. The checks
    /// that re-run the backtest (look-ahead detector, walk-forward, the cost check's run
    /// without costs) are reported as skipped, and PBO, which needs the sweep, too.
    #[arg(long)]
    pub no_sweep: bool,
    /// With --no-sweep: run the look-ahead detector, the walk-forward (the configured run on
    /// each fold) and the cost check anyway.
    #[arg(long, requires = "no_sweep")]
    pub checks: bool,
    /// Write no trades.csv and no returns file. The reports are written as always.
    #[arg(long)]
    pub no_exports: bool,
    /// Format of the per-period returns: parquet (returns.parquet, LZ4; default) or csv
    /// (returns.csv, 86 MB of text at 1M bars, several times slower to write).
    #[arg(long, value_name = "FORMAT")]
    pub returns_format: Option<ReturnsFormat>,
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
    #[arg(long, env = "GAUNTLET_SEED", value_parser = gauntlet_reports::parse_seed_arg)]
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

/// Why `--no-sweep` skips the checks that re-run the backtest, and how to run them.
pub const NO_SWEEP_SKIPS: &str =
    "--no-sweep runs one backtest alone; add --checks to run it too, or drop --no-sweep";

fn usage(message: impl std::fmt::Display) -> SuiteError {
    SuiteError::Config(message.to_string())
}

fn setup(message: impl std::fmt::Display) -> SuiteError {
    SuiteError::Setup(message.to_string())
}

/// The config section of the profile, then the flags over it.
fn config(args: &BacktestArgs, settings: &Settings) -> Result<BacktestConfig, SuiteError> {
    let mut c = BacktestConfig::from_table(&settings.section(crate::report::SUITE))
        .map_err(|e| usage(format!("[profile.{}.backtest] {e}", settings.profile)))?;
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
    if let Some(f) = args.returns_format {
        c.returns_format = f;
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
    Ok(c)
}

/// The model run in process: an artifact file, or a reference model by name.
fn local_model(spec: &str) -> Result<Arc<Model>, SuiteError> {
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

/// A backtest with every input checked, ready to run.
pub struct Prepared {
    plan: Plan,
    bars: Bars,
    info: DataInfo,
    /// The reported run, when it was executed while the bars loaded.
    early: Option<crate::exec::Execution>,
    model: Option<Box<dyn Signals>>,
    seed: u64,
    /// What gives the predictions: a built-in strategy, the in-process engine, or the
    /// target's description.
    pub target: String,
}

/// What a backtest run gives the `gauntlet` binary.
#[derive(Debug)]
pub struct BacktestOutcome {
    /// The data notes, metrics table, folds and gates, as printed to stdout.
    pub table: String,
    /// One case per gate.
    pub cases: Vec<CaseResult>,
    /// The report section.
    pub section: Section,
}

/// Writes `trades.csv` and the returns (`returns.parquet` or `returns.csv`, as `format`
/// says), at full precision, into `dir`.
fn write_exports(
    dir: &Path,
    run: &Outcome,
    ts_ns: &[i64],
    format: ReturnsFormat,
) -> Result<(), SuiteError> {
    crate::export::write_all(dir, run, ts_ns, format).map_err(|e| {
        setup(format!(
            "failed to write trades.csv and {} into {}: {e}",
            format.file_name(),
            dir.display()
        ))
    })
}

/// `gauntlet backtest`, first half: the flags over `settings` become a plan, the bars are
/// read and checked, the model is loaded or the target connected.
///
/// # Errors
///
/// [`SuiteError::Config`] naming the flag, key, or row and column;
/// [`SuiteError::Setup`] when the target cannot be reached.
pub async fn prepare(
    args: &BacktestArgs,
    settings: &Settings,
    host: &dyn Host,
) -> Result<Prepared, SuiteError> {
    let config = config(args, settings)?;
    let plan = Plan::from_config(&config).map_err(|e| match e {
        crate::config::ConfigError::OutOfRange(_) => usage(format!("--{e}")),
        other => usage(other),
    })?;
    let mut plan = plan;
    if args.no_sweep && !args.checks {
        plan.skip_checks = Some(NO_SWEEP_SKIPS.to_owned());
    }
    // A crossover alone runs on the close prices while the rest of the file loads.
    let (bars, info, early) = load_bars_and_run(&plan)
        .map_err(|e: DataError| usage(format!("--data: {}", error_chain(&e))))?;
    let (model, target): (Option<Box<dyn Signals>>, String) = match (&plan.signal, &args.target) {
        (SignalPlan::Strategy(m), _) => (None, format!("built-in strategy {m}")),
        (SignalPlan::Model(name), Some(url)) => {
            // The host connects: an http(s):// URL, or a `container:` image it starts, whose
            // log goes into the report directory (checked here, once the data is good).
            if url.starts_with("container:") {
                host.check_report_dir(&args.report_dir)?;
            }
            let target = host.connect(Some(url), &[]).await?;
            let description = target.describe();
            let signals = TargetModel::connect(target, name, plan.batch_rows, plan.concurrency)
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
    Ok(Prepared {
        plan,
        bars,
        info,
        early,
        model,
        seed: settings.seed,
        target,
    })
}

impl Prepared {
    /// `gauntlet backtest`, second half: the backtest, its gates and its report section;
    /// with `exports`, `trades.csv` and the returns file written into that directory.
    ///
    /// The exports are written on a thread of their own while the tear sheet and the
    /// tables are built: at 1M bars each is about a fifth of `gauntlet backtest
    /// --no-sweep`'s CPU time (suites/backtest/README.md, Figures), and the machine has
    /// cores to spare for them.
    ///
    /// # Errors
    ///
    /// [`SuiteError::Setup`] when predictions cannot be had, or an export cannot be
    /// written (the directory named).
    pub async fn run(self, exports: Option<&Path>) -> Result<BacktestOutcome, SuiteError> {
        let started = Instant::now();
        let outcome = run_plan_with(
            &self.plan,
            &self.bars,
            self.info.gaps.median_interval_ns,
            self.model.as_deref(),
            self.seed,
            self.early,
        )
        .await
        .map_err(setup)?;
        let gates = evaluate(&outcome, &self.plan.gates);
        let (format, ts_ns) = (self.plan.returns_format, self.bars.ts_ns.as_slice());
        let (reported, written) = std::thread::scope(|scope| {
            let writer = exports.map(|dir| {
                let outcome = &outcome;
                scope.spawn(move || write_exports(dir, outcome, ts_ns, format))
            });
            let mut table = Vec::new();
            let reported = write_terminal(&mut table, &self.info, &outcome, &gates)
                .map_err(|e| setup(format!("failed to format the metrics table: {e}")))
                .map(|()| (table, section(&self.info, &outcome, "cli")));
            let written = writer.map_or(Ok(()), |w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            (reported, written)
        });
        // The bars and the run (~150 MB at 1M bars) are freed on a thread of their own
        // while the caller writes the reports: unmapping them took the main thread ~7 ms
        // (suites/backtest/README.md, Figures).
        let columns = (self.bars, outcome);
        std::thread::spawn(move || drop(columns));
        let (table, section) = reported?;
        written?;
        Ok(BacktestOutcome {
            table: String::from_utf8_lossy(&table).into_owned(),
            cases: gate_cases(&gates, started.elapsed()),
            section,
        })
    }
}

/// `gauntlet backtest`: a model or a baseline strategy on OHLCV bars.
#[derive(Debug, Clone, Copy)]
pub struct BacktestCommand;

#[async_trait]
impl SuiteCommand for BacktestCommand {
    fn command(&self) -> clap::Command {
        BacktestArgs::augment_args(clap::Command::new("backtest"))
            .about("Backtest a model (in process or at a URL) or a baseline strategy on OHLCV bars")
            .long_about(None)
    }

    /// Every input is checked before the report directory is touched, so a bad flag or bad
    /// data writes nothing. The metrics table is the output's stdout.
    async fn run(
        &self,
        matches: &clap::ArgMatches,
        host: &dyn Host,
    ) -> Result<CommandOutput, SuiteError> {
        let args = BacktestArgs::from_arg_matches(matches).map_err(|e| usage(e.to_string()))?;
        let started_at = SystemTime::now();
        let flags = Profile {
            seed: args.seed,
            ..Profile::default()
        };
        let settings = host.settings(args.config.as_deref(), &args.profile, &flags)?;
        let prepared = prepare(&args, &settings, host).await?;
        host.check_report_dir(&args.report_dir)?;
        let target = prepared.target.clone();
        let exports = (!args.no_exports).then_some(args.report_dir.as_path());
        let outcome = prepared.run(exports).await?;
        Ok(CommandOutput {
            stdout: outcome.table,
            summary: None,
            report: Some(CommandReport {
                dir: args.report_dir.clone(),
                tool: "gauntlet backtest".to_owned(),
                seed: settings.seed,
                target,
                profile: settings.profile.clone(),
                started_at,
                cases: outcome.cases,
                sections: vec![outcome.section],
                // The table on stdout already shows every gate's verdict.
                print_cases: false,
            }),
            failed: false,
        })
    }
}
