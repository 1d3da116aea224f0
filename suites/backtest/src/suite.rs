//! One backtest run end to end: bars and a signal source in; metrics, walk-forward,
//! overfitting statistics, the look-ahead verdict and the gate verdicts out.

use std::time::{Duration, Instant};

use serde::Serialize;

use gauntlet_fixtures::{WARMUP, generate_ohlcv};
use gauntlet_harness::gate::{self, Bound};

use crate::config::{DataPlan, Gates, Plan, SignalPlan};
use crate::data::{self, Bars, DataError, Gaps, LoadedBars, TimestampSource};
use crate::exec::{Execution, Fill, execute_with, size_one};
use crate::lookahead::{self, LookaheadReport};
use crate::metrics::{Annualisation, Metrics, compute};
use crate::overfit::{self, Deflated, Pbo};
use crate::signals::{MaCross, SignalError, Signals};
use crate::sweep::{self, ExecParams, Sweep, WalkForward, run};

/// Where the bars came from, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct DataInfo {
    /// The file and format, or the generator and its seed.
    pub description: String,
    /// How timestamps were read (files only).
    pub timestamps: Option<TimestampSource>,
    /// Gaps between bars.
    pub gaps: Gaps,
}

/// Loads the plan's bars.
///
/// # Errors
///
/// [`DataError`] naming the row and column.
pub fn load_bars(plan: &Plan) -> Result<(Bars, DataInfo), DataError> {
    match &plan.data {
        DataPlan::File { path, options } => {
            let LoadedBars {
                bars,
                path,
                format,
                timestamps,
                gaps,
            } = data::load(path, options)?;
            let description = format!("{} ({format}, {} bars)", path.display(), bars.len());
            Ok((
                bars,
                DataInfo {
                    description,
                    timestamps: Some(timestamps),
                    gaps,
                },
            ))
        }
        DataPlan::Fixture { seed, bars } => {
            let bars =
                generate_ohlcv(*seed, *bars).map_err(|e| DataError::Generator(e.to_string()))?;
            let gaps = Gaps::of(&bars.ts_ns);
            let description = format!(
                "generated daily bars: seed {seed}, {} bars (gauntlet-fixtures {})",
                bars.len(),
                gauntlet_fixtures::VERSION
            );
            Ok((
                bars,
                DataInfo {
                    description,
                    timestamps: None,
                    gaps,
                },
            ))
        }
    }
}

/// The moving-average grid a strategy sweep runs: 100 crossovers, fast windows 2 to 30 and
/// slow windows 2 to 12 times as long.
pub fn ma_grid() -> Vec<MaCross> {
    const FAST: [usize; 10] = [2, 3, 5, 8, 10, 13, 16, 20, 25, 30];
    const RATIO: [usize; 10] = [2, 3, 4, 5, 6, 7, 8, 9, 10, 12];
    FAST.iter()
        .flat_map(|&f| {
            RATIO.iter().map(move |&r| MaCross {
                fast: f,
                slow: f * r,
            })
        })
        .collect()
}

/// Deadbands a model sweep runs: the 0 %, 10 %, …, 90 % quantiles of `|prediction|`.
pub fn deadband_grid(predictions: &[f64]) -> Vec<f64> {
    let mut abs: Vec<f64> = predictions
        .iter()
        .filter(|p| p.is_finite())
        .map(|p| p.abs())
        .collect();
    if abs.is_empty() {
        return vec![0.0];
    }
    abs.sort_by(f64::total_cmp);
    (0..10)
        .map(|k| {
            if k == 0 {
                0.0
            } else {
                abs[k * (abs.len() - 1) / 10]
            }
        })
        .collect()
}

/// Whether the costs were charged as the model says, on this run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostCheck {
    /// Total return net of costs.
    pub net_total_return: f64,
    /// Total return of the same positions without costs.
    pub gross_total_return: f64,
    /// Largest `|net − gross·(1 − c·|Δ|)|` over the bars (0 up to rounding when correct).
    pub max_deviation: f64,
    /// Position traded in all.
    pub traded: f64,
    /// Equity fraction lost per unit traded.
    pub cost_per_unit: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What gave the predictions.
    pub signal: String,
    /// Periods per year and where that came from.
    pub annualisation: Annualisation,
    /// Number of bars.
    pub bars: usize,
    /// The reported run's execution.
    pub execution: Execution,
    /// The reported run's timestamps of periods (bar `1..n`), Unix ns.
    pub period_ts_ns: Vec<i64>,
    /// Its metrics.
    pub metrics: Metrics,
    /// The cost self-check.
    pub costs: CostCheck,
    /// Every trial of the sweep.
    pub sweep: Sweep,
    /// PSR against 0 of the reported run.
    pub psr: f64,
    /// DSR of the reported run, with the declared number of trials.
    pub deflated: Deflated,
    /// DSR of the sweep's best trial, with the sweep's size as `N`.
    pub best_deflated: Option<Deflated>,
    /// Minimum track record length (periods) at 95 % against 0.
    pub min_track_record: Option<f64>,
    /// PBO by CSCV over the sweep, or why it could not run.
    pub pbo: Result<Pbo, String>,
    /// Walk-forward over the sweep.
    pub walk_forward: Option<WalkForward>,
    /// The look-ahead detector's verdict.
    pub lookahead: LookaheadReport,
    /// Wall time of each stage.
    pub timings: Vec<(&'static str, Duration)>,
}

/// Runs the plan on `bars`: a strategy plan builds its own signals, a model plan uses
/// `model`.
///
/// # Errors
///
/// [`SignalError`] when predictions cannot be had.
pub async fn run_plan(
    plan: &Plan,
    bars: &Bars,
    median_interval_ns: i64,
    model: Option<&dyn Signals>,
    seed: u64,
) -> Result<Outcome, SignalError> {
    let annualisation = match plan.periods_per_year {
        Some(p) => Annualisation::given(p),
        None => Annualisation::derived(median_interval_ns, plan.calendar),
    };
    match (&plan.signal, model) {
        (SignalPlan::Strategy(m), _) => run_strategy(plan, bars, annualisation, *m, seed).await,
        (SignalPlan::Model(_), Some(signal)) => {
            run_model(plan, bars, annualisation, signal, seed).await
        }
        (SignalPlan::Model(name), None) => Err(SignalError::Target {
            model: name.clone(),
            reason: "no target or artifact was given for the model".into(),
        }),
    }
}

async fn run_strategy(
    plan: &Plan,
    bars: &Bars,
    annualisation: Annualisation,
    configured: MaCross,
    seed: u64,
) -> Result<Outcome, SignalError> {
    let clock = Instant::now();
    let params = plan.exec;
    let grid = ma_grid();
    let trials = grid
        .iter()
        .map(|m| (m.to_string(), m.spread_iter(&bars.close)));
    let sweep = sweep::sweep(
        &bars.open,
        &bars.close,
        trials,
        &params,
        annualisation.periods_per_year,
        plan.pbo_blocks,
        plan.folds + 1,
    );
    let chosen = match (plan.pick_best, sweep.best()) {
        (true, Some(i)) => grid[i],
        _ => configured,
    };
    let predictions = chosen.predict(bars, 0).await?;
    let mut timings = vec![("signals and sweep", clock.elapsed())];
    let lookahead = detect(plan, &chosen, bars, &predictions, seed, &mut timings).await?;
    finish(
        plan,
        bars,
        annualisation,
        chosen.describe(),
        lookahead,
        &predictions,
        sweep,
        |i| {
            run(
                &bars.open,
                &bars.close,
                &grid[i].spread(&bars.close),
                &params,
            )
        },
        timings,
    )
}

async fn run_model(
    plan: &Plan,
    bars: &Bars,
    annualisation: Annualisation,
    signal: &dyn Signals,
    seed: u64,
) -> Result<Outcome, SignalError> {
    let clock = Instant::now();
    let predictions = signal.predict(bars, 0).await?;
    let mut timings = vec![("signals", clock.elapsed())];
    let clock = Instant::now();
    let params = plan.exec;
    let grid = deadband_grid(&predictions);
    let deadband = |d: f64| move |p: f64| if p.abs() > d { p } else { 0.0 };
    let deadbanded = |d: f64| -> Vec<f64> { predictions.iter().map(|&p| deadband(d)(p)).collect() };
    // Each trial streams the deadbanded predictions: no column stored per trial.
    let trials = grid.iter().map(|&d| {
        let streamed = predictions.iter().map(move |&p| deadband(d)(p));
        (format!("deadband {d:.3e}"), streamed)
    });
    let sweep = sweep::sweep(
        &bars.open,
        &bars.close,
        trials,
        &params,
        annualisation.periods_per_year,
        plan.pbo_blocks,
        plan.folds + 1,
    );
    timings.push(("sweep", clock.elapsed()));
    let picked = match (plan.pick_best, sweep.best()) {
        (true, Some(i)) => Some(deadbanded(grid[i])),
        _ => None,
    };
    let reported = picked.as_deref().unwrap_or(&predictions);
    let lookahead = detect(plan, signal, bars, &predictions, seed, &mut timings).await?;
    finish(
        plan,
        bars,
        annualisation,
        signal.describe(),
        lookahead,
        reported,
        sweep,
        // The deadband inside the sizing: no 8 MB column of deadbanded predictions per
        // re-run (the walk-forward's peak memory).
        |i| {
            let (d, sizing, long_only) = (grid[i], params.sizing, params.long_only);
            execute_with(
                &bars.open,
                &bars.close,
                &predictions,
                params.fill,
                params.costs,
                |p| size_one(deadband(d)(p), sizing, long_only),
            )
        },
        timings,
    )
}

/// Runs the look-ahead detector on the signal's raw predictions.
async fn detect(
    plan: &Plan,
    signal: &dyn Signals,
    bars: &Bars,
    predictions: &[f64],
    seed: u64,
    timings: &mut Vec<(&'static str, Duration)>,
) -> Result<LookaheadReport, SignalError> {
    let clock = Instant::now();
    let cuts = lookahead::cut_points(seed, bars.len(), WARMUP + 2, plan.lookahead_cuts);
    let report = lookahead::check(signal, bars, predictions, &cuts).await?;
    timings.push(("look-ahead detector", clock.elapsed()));
    Ok(report)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one internal step shared by both signal kinds"
)]
fn finish(
    plan: &Plan,
    bars: &Bars,
    annualisation: Annualisation,
    signal: String,
    lookahead: LookaheadReport,
    predictions: &[f64],
    sweep: Sweep,
    rerun: impl FnMut(usize) -> Execution,
    mut timings: Vec<(&'static str, Duration)>,
) -> Result<Outcome, SignalError> {
    let mut clock = Instant::now();
    let ppy = annualisation.periods_per_year;
    let params = plan.exec;
    // Walk-forward first: its re-runs and the reported run's execution are never alive
    // together, which keeps the peak memory down.
    let walk_forward = sweep::walk_forward(&sweep, plan.folds, plan.walk, ppy, rerun);
    timings.push(("walk-forward", clock.elapsed()));
    clock = Instant::now();

    let execution = run(&bars.open, &bars.close, predictions, &params);
    let metrics = compute(&execution, ppy, plan.risk_free);
    let costs = cost_check(bars, &params, &execution);
    timings.push(("execution and metrics", clock.elapsed()));
    clock = Instant::now();

    let m = &metrics.moments;
    let trials = if plan.pick_best {
        plan.trials.max(sweep.trials.len() as u64)
    } else {
        plan.trials
    };
    let variance = if sweep.trials.len() >= 2 {
        sweep.sharpe_variance()
    } else {
        overfit::estimator_variance(m)
    };
    let deflated = overfit::dsr(m, trials, variance);
    let best_deflated = sweep.best().map(|i| {
        overfit::dsr(
            &sweep.trials[i].moments,
            sweep.trials.len() as u64,
            variance,
        )
    });
    let pbo = overfit::pbo(&sweep.blocks()).map_err(|e| e.to_string());
    timings.push(("overfitting statistics", clock.elapsed()));

    Ok(Outcome {
        signal,
        annualisation,
        bars: bars.len(),
        period_ts_ns: bars.ts_ns.iter().skip(1).copied().collect(),
        psr: overfit::psr(m, 0.0),
        min_track_record: overfit::min_track_record(m, 0.0, 0.95),
        execution,
        metrics,
        costs,
        sweep,
        deflated,
        best_deflated,
        pbo,
        walk_forward,
        lookahead,
        timings,
    })
}

/// Recomputes each bar's gross return from the prices and the positions held, without
/// the execution code, and compares `net` with `gross · (1 − c·|Δ|)`.
fn cost_check(bars: &Bars, params: &ExecParams, net: &Execution) -> CostCheck {
    let c = params.costs.per_unit();
    let (open, close) = (&bars.open, &bars.close);
    let mut prev = 0.0;
    let mut max_deviation = 0.0_f64;
    let (mut net_equity, mut gross_equity) = (1.0, 1.0);
    for (k, (&r, &p)) in net.returns.iter().zip(&net.held).enumerate() {
        let s = k + 1;
        let gross = match params.fill {
            Fill::NextClose => 1.0 + p * (close[s] / close[s - 1] - 1.0),
            Fill::NextOpen => {
                (1.0 + prev * (open[s] / close[s - 1] - 1.0))
                    * (1.0 + p * (close[s] / open[s] - 1.0))
            }
        };
        let expected = gross * (1.0 - c * (p - prev).abs());
        max_deviation = max_deviation.max((1.0 + r - expected).abs());
        net_equity *= 1.0 + r;
        gross_equity *= gross;
        prev = p;
    }
    CostCheck {
        net_total_return: net_equity - 1.0,
        gross_total_return: gross_equity - 1.0,
        max_deviation,
        traded: net.traded,
        cost_per_unit: c,
    }
}

pub use gauntlet_harness::gate::{GateResult, Verdict};

/// Every gate this suite reports, with its requirement ids, in report order.
pub const GATES: [(&str, &[&str]); 9] = [
    ("no_lookahead", &["BT-NOLOOK"]),
    ("costs_applied", &["BT-COST"]),
    ("sharpe_min", &["BT-METRICS"]),
    ("max_drawdown", &["BT-METRICS"]),
    ("hit_rate_min", &["BT-METRICS"]),
    ("turnover_max", &["BT-COST", "BT-METRICS"]),
    ("walk_forward", &["BT-WF"]),
    ("dsr_min", &["BT-DSR"]),
    ("pbo_max", &["BT-DSR"]),
];

/// The requirement ids of gate `name` (none for a name that is not a gate).
pub fn requirements(name: &str) -> &'static [&'static str] {
    GATES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, r)| r)
}

/// A threshold gate; unset, it is skipped naming its key under `[…backtest.gates]`.
fn threshold(
    (name, key): (&str, &str),
    label: &str,
    measured: Option<f64>,
    limit: Option<f64>,
    bound: Bound,
) -> GateResult {
    let mut g = gate::threshold(name, label, measured, limit, bound, "");
    if matches!(g.verdict, Verdict::Skip(_)) {
        g.verdict = Verdict::Skip(format!("no threshold set (gates.{key})"));
    }
    g
}

/// The gate verdicts of an outcome.
pub fn evaluate(outcome: &Outcome, gates: &Gates) -> Vec<GateResult> {
    let m = &outcome.metrics;
    let look = &outcome.lookahead;
    let no_lookahead = GateResult {
        name: "no_lookahead".to_owned(),
        verdict: if look.mismatch.is_none() && !look.cuts.is_empty() {
            Verdict::Pass
        } else if look.cuts.is_empty() {
            Verdict::Skip("too few bars to cut".into())
        } else {
            Verdict::Fail
        },
        message: match &look.mismatch {
            None => format!(
                "{} predictions before {} cut points identical to the full run's",
                look.compared,
                look.cuts.len()
            ),
            Some(x) => format!(
                "prediction of bar {} changed from {} to {} when the data was cut at bar {}: \
                 the signal reads data after the bar's close",
                x.bar, x.full, x.truncated, x.cut
            ),
        },
    };
    let c = &outcome.costs;
    let charged = c.max_deviation <= 1e-12
        && (c.traded == 0.0 || c.cost_per_unit == 0.0 || c.net_total_return < c.gross_total_return);
    let costs_applied = GateResult {
        name: "costs_applied".to_owned(),
        verdict: if charged {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        message: format!(
            "{:.2} bps per unit traded on {:.1} units: total return {:.4} net vs {:.4} gross \
             (largest per-bar deviation from the cost model {:.1e})",
            c.cost_per_unit * 1e4,
            c.traded,
            c.net_total_return,
            c.gross_total_return,
            c.max_deviation
        ),
    };
    let wf = outcome.walk_forward.as_ref().map(|w| w.oos.sharpe);
    let pbo_max = match (&outcome.pbo, gates.pbo_max) {
        // Uncomputable, with a threshold set: a failure that says why, never a made-up PBO.
        (Err(why), Some(_)) => GateResult {
            name: "pbo_max".to_owned(),
            verdict: Verdict::Fail,
            message: format!("PBO could not be computed: {why}"),
        },
        (pbo, limit) => threshold(
            ("pbo_max", "pbo-max"),
            "probability of backtest overfitting",
            pbo.as_ref().ok().map(|p| p.pbo),
            limit,
            Bound::AtMost,
        ),
    };
    vec![
        no_lookahead,
        costs_applied,
        threshold(
            ("sharpe_min", "sharpe-min"),
            "annualised Sharpe",
            Some(m.sharpe),
            gates.sharpe_min,
            Bound::AtLeast,
        ),
        threshold(
            ("max_drawdown", "max-drawdown"),
            "max drawdown",
            Some(m.max_drawdown),
            gates.max_drawdown,
            Bound::AtMost,
        ),
        threshold(
            ("hit_rate_min", "hit-rate-min"),
            "hit rate",
            m.hit_rate,
            gates.hit_rate_min,
            Bound::AtLeast,
        ),
        threshold(
            ("turnover_max", "turnover-max"),
            "turnover per year",
            Some(m.turnover),
            gates.turnover_max,
            Bound::AtMost,
        ),
        threshold(
            ("walk_forward", "walk-forward-sharpe-min"),
            "out-of-sample walk-forward Sharpe",
            wf,
            gates.walk_forward_sharpe_min,
            Bound::AtLeast,
        ),
        threshold(
            ("dsr_min", "dsr-min"),
            &format!("deflated Sharpe ratio (N = {})", outcome.deflated.trials),
            Some(outcome.deflated.dsr),
            gates.dsr_min,
            Bound::AtLeast,
        ),
        pbo_max,
    ]
}
