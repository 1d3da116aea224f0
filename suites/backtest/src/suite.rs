//! One backtest run end to end: bars and a signal source in; metrics, walk-forward,
//! overfitting statistics, the look-ahead verdict and the gate verdicts out.

use std::time::{Duration, Instant};

use serde::Serialize;

use gauntlet_fixtures::{WARMUP, generate_ohlcv};
use gauntlet_harness::gate::{self, Bound};

use crate::config::{DataPlan, Gates, Plan, SignalPlan};
use crate::data::{self, Bars, DataError, Gaps, LoadedBars, TimestampSource};
use crate::exec::{Costs, Execution, Fill, execute_with, size_one};
use crate::lookahead::{self, LookaheadReport};
use crate::metrics::{Annualisation, Metrics, compute};
use crate::overfit::{self, Deflated, Pbo};
use crate::signals::{MaCross, SignalError, Signals};
use crate::sweep::{self, ExecParams, Sweep, WalkForward, run, run_iter};

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
    load_bars_then(plan, |_| ()).map(|(bars, info, _)| (bars, info))
}

/// [`load_bars`], and the reported run executed on the close prices while the other
/// columns load (`data::load_then`) when that run reads nothing else: a crossover without
/// the sweep or the checks, filled at the next close (which reads no open price). The
/// execution is then the one [`run_plan_with`] would run, bit for bit; `None` for any other
/// plan, or generated bars.
///
/// # Errors
///
/// As [`load_bars`].
pub fn load_bars_and_run(plan: &Plan) -> Result<(Bars, DataInfo, Option<Execution>), DataError> {
    let close_only = match plan.signal {
        SignalPlan::Strategy(m)
            if !plan.sweep && plan.skip_checks.is_some() && plan.exec.fill == Fill::NextClose =>
        {
            Some(m)
        }
        _ => None,
    };
    let Some(m) = close_only else {
        return load_bars(plan).map(|(bars, info)| (bars, info, None));
    };
    let params = plan.exec;
    load_bars_then(plan, |close| {
        run_iter(close, close, m.spread_iter(close), &params)
    })
}

/// [`load_bars`], with `consume` run on a file's close prices as `data::load_then` runs it
/// (`None` for generated bars).
fn load_bars_then<R>(
    plan: &Plan,
    consume: impl FnOnce(&[f64]) -> R,
) -> Result<(Bars, DataInfo, Option<R>), DataError> {
    match &plan.data {
        DataPlan::File { path, options } => {
            let (
                LoadedBars {
                    bars,
                    path,
                    format,
                    timestamps,
                    gaps,
                },
                consumed,
            ) = data::load_then(path, options, consume)?;
            check_gaps(&bars, &gaps, plan.max_gap)?;
            let description = format!("{} ({format}, {} bars)", path.display(), bars.len());
            Ok((
                bars,
                DataInfo {
                    description,
                    timestamps: Some(timestamps),
                    gaps,
                },
                Some(consumed),
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
                None,
            ))
        }
    }
}

/// Refuses a gap longer than `max_gap` median intervals of trading time.
fn check_gaps(bars: &Bars, gaps: &Gaps, max_gap: Option<f64>) -> Result<(), DataError> {
    let Some(limit) = max_gap else {
        return Ok(());
    };
    // Evenly spaced bars have no interval over twice the median.
    if gaps.count == 0 || gaps.median_interval_ns <= 0 {
        return Ok(());
    }
    let shape = Annualisation::inferred_with_median(&bars.ts_ns, gaps.median_interval_ns);
    let Some((after, gap)) =
        data::longest_trading_gap(&bars.ts_ns, shape.skip_weekends, shape.overnight_ns)
    else {
        return Ok(());
    };
    let median = gaps.median_interval_ns;
    if (gap as f64) <= limit * median as f64 {
        return Ok(());
    }
    let iso = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    let words = |ns: i64| {
        let s = ns as f64 / 1e9;
        if s >= 86_400.0 {
            format!("{:.1} days", s / 86_400.0)
        } else {
            format!("{:.1} hours", s / 3_600.0)
        }
    };
    Err(DataError::Gap {
        before: iso(bars.ts_ns[after - 1]),
        after: iso(bars.ts_ns[after]),
        length: words(gap),
        median: words(median),
        limit,
    })
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
    /// Total return of the same targets run without costs; `None` when the checks were
    /// skipped (that run did not happen).
    pub gross_total_return: Option<f64>,
    /// Fees paid, in equity units (the account starts at 1).
    pub fees: f64,
    /// Slippage paid, in equity units.
    pub slippage: f64,
    /// `|Σ trades' fees − fees| + |Σ trades' slippage − slippage|`: 0 up to rounding when
    /// every fill's costs are booked to its trade.
    pub max_deviation: f64,
    /// Equity traded in all (order notionals over the equity they traded from).
    pub traded: f64,
    /// The costs asked for.
    pub costs_bps: (f64, f64),
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What gave the predictions.
    pub signal: String,
    /// Periods per year and where that came from.
    pub annualisation: Annualisation,
    /// How predictions became returns (fill, costs, sizing, position model).
    pub exec: ExecParams,
    /// Number of bars.
    pub bars: usize,
    /// The reported run's execution.
    pub execution: Execution,
    /// The reported run's timestamps of periods (bar `1..n`), Unix ns.
    pub period_ts_ns: Vec<i64>,
    /// The first bar's timestamp, Unix ns: where the equity curve starts at 1.
    pub start_ts_ns: i64,
    /// Buy-and-hold equity after each period (bar `1..n`): the close over the first close,
    /// no costs; the tear sheet's benchmark.
    pub benchmark: Vec<f64>,
    /// Its metrics.
    pub metrics: Metrics,
    /// The cost self-check.
    pub costs: CostCheck,
    /// Every trial of the sweep.
    pub sweep: Sweep,
    /// PSR against 0 of the reported run.
    pub psr: f64,
    /// DSR of the reported run; its N counts the declared trials and the sweep's others.
    pub deflated: Deflated,
    /// DSR of the sweep's best trial, with the sweep's size as `N`.
    pub best_deflated: Option<Deflated>,
    /// Minimum track record length (periods) at 95 % against 0.
    pub min_track_record: Option<f64>,
    /// PBO by CSCV over the sweep, or why it could not run.
    pub pbo: Result<Pbo, String>,
    /// Walk-forward over the sweep.
    pub walk_forward: Option<WalkForward>,
    /// Why the reported run's Sharpe-type metrics (Sharpe, Sortino, PSR, DSR, drawdown, hit
    /// rate) are undefined, when they are: a warm-up as long as the data, no trade, constant
    /// returns.
    pub undefined: Option<String>,
    /// Why the walk-forward's out-of-sample Sharpe is undefined, when it is (a fold with no
    /// trade, constant returns).
    pub walk_forward_undefined: Option<String>,
    /// The look-ahead detector's verdict; `None` when the checks were skipped.
    pub lookahead: Option<LookaheadReport>,
    /// Why the checks that re-run the backtest (the look-ahead detector, the walk-forward,
    /// the cost check's run without costs) did not run, when they did not.
    pub skipped_checks: Option<String>,
    /// Whether the parameter sweep ran (`false`: the configured run alone, no PBO).
    pub swept: bool,
    /// Wall time of each stage.
    pub timings: Vec<(&'static str, Duration)>,
}

/// Runs the plan on `bars`: a strategy plan builds its own signals, a model plan uses
/// `model`. `median_interval_ns` is the bars' median interval, as their
/// [`crate::data::Gaps`] found it.
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
    run_plan_with(plan, bars, median_interval_ns, model, seed, None).await
}

/// [`run_plan`], with the reported run already executed by [`load_bars_and_run`] (`early`),
/// which it then does not run again.
///
/// # Errors
///
/// [`SignalError`] when predictions cannot be had.
pub async fn run_plan_with(
    plan: &Plan,
    bars: &Bars,
    median_interval_ns: i64,
    model: Option<&dyn Signals>,
    seed: u64,
    early: Option<Execution>,
) -> Result<Outcome, SignalError> {
    let annualisation = match plan.periods_per_year {
        Some(p) => Annualisation::given(p),
        None => match plan.calendar {
            Some(calendar) => Annualisation::derived(median_interval_ns, calendar),
            None => Annualisation::inferred_with_median(&bars.ts_ns, median_interval_ns),
        },
    };
    match (&plan.signal, model) {
        (SignalPlan::Strategy(m), _) => {
            run_strategy(plan, bars, annualisation, *m, seed, early).await
        }
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
    early: Option<Execution>,
) -> Result<Outcome, SignalError> {
    let clock = Instant::now();
    let params = plan.exec;
    let ppy = annualisation.periods_per_year;
    let segments = plan.folds + 1;
    let rerun = |m: MaCross| run(&bars.open, &bars.close, &m.spread(&bars.close), &params);
    if !plan.sweep {
        // One backtest: the sweep's one trial is summed from the reported run's returns
        // (the same bits as streaming it), so the backtest runs once.
        let (execution, predictions) = if plan.skip_checks.is_some() {
            // Nothing else reads the predictions: executed as they are computed (or while
            // the bars loaded).
            let execution = early.unwrap_or_else(|| {
                let spread = configured.spread_iter(&bars.close);
                run_iter(&bars.open, &bars.close, spread, &params)
            });
            (execution, None)
        } else {
            let predictions = configured.predict(bars, 0).await?;
            let execution = run(&bars.open, &bars.close, &predictions, &params);
            (execution, Some(predictions))
        };
        let trial = sweep::trial_of(
            configured.to_string(),
            &execution.returns,
            ppy,
            plan.pbo_blocks,
            segments,
        );
        let sweep = Sweep {
            trials: vec![trial],
        };
        let mut timings = vec![("signals and execution", clock.elapsed())];
        let lookahead = match &predictions {
            Some(p) => Some(detect(plan, &configured, bars, p, seed, &mut timings).await?),
            None => None,
        };
        let mut stored = Some(execution);
        return finish(
            plan,
            bars,
            (configured.slow, "the slow moving average"),
            annualisation,
            configured.describe(),
            lookahead,
            predictions.as_deref(),
            sweep,
            Some(0),
            |_| stored.take().unwrap_or_else(|| rerun(configured)),
            timings,
        );
    }
    let grid = ma_grid();
    let trials = grid
        .iter()
        .map(|m| (m.to_string(), m.spread_iter(&bars.close)));
    let sweep = sweep::sweep(
        &bars.open,
        &bars.close,
        trials,
        &params,
        ppy,
        plan.pbo_blocks,
        segments,
    );
    let chosen = match (plan.pick_best, sweep.best()) {
        (true, Some(i)) => grid[i],
        _ => configured,
    };
    let predictions = chosen.predict(bars, 0).await?;
    let mut timings = vec![("signals and sweep", clock.elapsed())];
    let lookahead = match plan.skip_checks {
        None => Some(detect(plan, &chosen, bars, &predictions, seed, &mut timings).await?),
        Some(_) => None,
    };
    finish(
        plan,
        bars,
        (chosen.slow, "the slow moving average"),
        annualisation,
        chosen.describe(),
        lookahead,
        Some(&predictions),
        sweep,
        // The reported run is this trial's (the same spread, the same execution).
        grid.iter().position(|m| *m == chosen),
        |i| rerun(grid[i]),
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
    let grid = if plan.sweep {
        deadband_grid(&predictions)
    } else {
        vec![0.0]
    };
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
    let best = match (plan.pick_best, sweep.best()) {
        (true, Some(i)) => Some(i),
        _ => None,
    };
    let picked = best.map(|i| deadbanded(grid[i]));
    let reported = picked.as_deref().unwrap_or(&predictions);
    let lookahead = match plan.skip_checks {
        None => Some(detect(plan, signal, bars, &predictions, seed, &mut timings).await?),
        Some(_) => None,
    };
    finish(
        plan,
        bars,
        (WARMUP, "the bar features"),
        annualisation,
        signal.describe(),
        lookahead,
        Some(reported),
        sweep,
        // A picked trial's re-run is the reported run; the raw predictions are not a
        // trial's (deadband 0 maps −0 to 0).
        best,
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
                params.model,
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
    warmup: (usize, &str),
    annualisation: Annualisation,
    signal: String,
    lookahead: Option<LookaheadReport>,
    predictions: Option<&[f64]>,
    sweep: Sweep,
    reported_trial: Option<usize>,
    mut rerun: impl FnMut(usize) -> Execution,
    mut timings: Vec<(&'static str, Duration)>,
) -> Result<Outcome, SignalError> {
    let mut clock = Instant::now();
    let ppy = annualisation.periods_per_year;
    let params = plan.exec;
    let checks = plan.skip_checks.is_none();
    // Walk-forward first: its re-runs and the reported run's execution are never alive
    // together, which keeps the peak memory down; its last re-run is the reported run when
    // it is that trial's.
    let (walk_forward, kept) = if checks {
        let (w, kept) = sweep::walk_forward_keeping(
            &sweep,
            plan.folds,
            plan.walk,
            ppy,
            &mut rerun,
            reported_trial,
        );
        timings.push(("walk-forward", clock.elapsed()));
        clock = Instant::now();
        (w, kept)
    } else {
        (None, None)
    };

    let execution = match (kept, predictions) {
        (Some(e), _) => e,
        (None, Some(p)) => run(&bars.open, &bars.close, p, &params),
        // Only a strategy without a sweep hands no predictions: its run is its one trial's.
        (None, None) => rerun(reported_trial.unwrap_or(0)),
    };
    let metrics = compute(&execution, ppy, plan.risk_free);
    let gross = match (checks, predictions) {
        (true, Some(p)) => Some(p),
        _ => None,
    };
    let costs = cost_check(bars, &params, gross, &execution);
    timings.push(("execution and metrics", clock.elapsed()));
    clock = Instant::now();

    let undefined = if warmup.0 >= bars.len() {
        Some(format!(
            "the warm-up of {} ({} bars) is not shorter than the data ({} bars): no \
             position was ever taken",
            warmup.1,
            warmup.0,
            bars.len()
        ))
    } else if metrics.trades == 0 {
        Some("the run made no trade".to_owned())
    } else if metrics.moments.sd == 0.0 || !metrics.moments.sd.is_finite() {
        Some("the run's returns are constant".to_owned())
    } else {
        None
    };
    let walk_forward_undefined = walk_forward.as_ref().and_then(|w| {
        w.folds
            .iter()
            .find_map(|f| {
                (f.metrics.trades == 0).then(|| {
                    format!(
                        "fold {} (periods {}..{}, {}) made no trade",
                        f.fold, f.test.start, f.test.end, f.chosen
                    )
                })
            })
            .or_else(|| {
                (w.oos.moments.sd == 0.0).then(|| "the out-of-sample returns are constant".into())
            })
    });
    let m = &metrics.moments;
    // Every variant tried counts: those declared (this one included) and the sweep's others.
    let trials = plan.trials + (sweep.trials.len() as u64).saturating_sub(1);
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
    let pbo = if plan.sweep {
        overfit::pbo(&sweep.blocks()).map_err(|e| e.to_string())
    } else {
        Err(NO_SWEEP_PBO.to_owned())
    };
    timings.push(("overfitting statistics", clock.elapsed()));

    Ok(Outcome {
        signal,
        annualisation,
        exec: params,
        bars: bars.len(),
        period_ts_ns: bars.ts_ns.iter().skip(1).copied().collect(),
        start_ts_ns: bars.ts_ns.first().copied().unwrap_or(0),
        benchmark: bars
            .close
            .first()
            .map(|&c0| bars.close.iter().skip(1).map(|c| c / c0).collect())
            .unwrap_or_default(),
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
        undefined,
        walk_forward_undefined,
        lookahead,
        skipped_checks: plan.skip_checks.clone(),
        swept: plan.sweep,
        timings,
    })
}

/// Why PBO is not computed without the sweep, and how to have it.
pub const NO_SWEEP_PBO: &str = "no parameter sweep ran (--no-sweep, or sweep = false in the \
     config): PBO needs the sweep's trials; drop --no-sweep to compute it";

/// Runs the same targets without costs (unless `predictions` is `None`: the checks are
/// skipped), and checks that every fill's costs were booked to its trade.
fn cost_check(
    bars: &Bars,
    params: &ExecParams,
    predictions: Option<&[f64]>,
    net: &Execution,
) -> CostCheck {
    let free = ExecParams {
        costs: Costs::default(),
        ..*params
    };
    let total = |r: &[f64]| r.iter().fold(1.0, |e, x| e * (1.0 + x)) - 1.0;
    let by_trade = |f: fn(&crate::exec::Trade) -> f64| net.trades.iter().map(f).sum::<f64>();
    CostCheck {
        net_total_return: total(&net.returns),
        gross_total_return: predictions
            .map(|p| sweep::total_return(&bars.open, &bars.close, p, &free)),
        fees: net.fees,
        slippage: net.slippage,
        max_deviation: (by_trade(|t| t.fees) - net.fees).abs()
            + (by_trade(|t| t.slippage) - net.slippage).abs(),
        traded: net.traded,
        costs_bps: (params.costs.fees_bps, params.costs.slippage_bps),
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
    // A check that did not run is skipped with the reason (which says how to run it), never
    // passed.
    let skipped = |what: &str| {
        outcome
            .skipped_checks
            .as_ref()
            .map(|why| Verdict::Skip(format!("{what} did not run: {why}")))
    };
    let no_lookahead = match &outcome.lookahead {
        Some(look) => GateResult {
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
                    "prediction of bar {} changed from {} to {} when the data was cut at bar \
                     {}: the signal reads data after the bar's close",
                    x.bar, x.full, x.truncated, x.cut
                ),
            },
        },
        None => GateResult {
            name: "no_lookahead".to_owned(),
            verdict: skipped("the look-ahead detector (re-runs of the signal on cut data)")
                .unwrap_or_else(|| Verdict::Skip("the look-ahead detector did not run".into())),
            message: String::new(),
        },
    };
    let c = &outcome.costs;
    let asked = c.costs_bps.0 + c.costs_bps.1 > 0.0;
    let costs_applied = match c.gross_total_return {
        Some(gross) => {
            let charged = c.max_deviation <= 1e-12 * c.fees.max(1.0)
                && (c.traded == 0.0
                    || !asked
                    || (c.net_total_return < gross && c.fees + c.slippage > 0.0));
            GateResult {
                name: "costs_applied".to_owned(),
                verdict: if charged {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                },
                message: format!(
                    "{} bps fees and {} bps slippage on traded notional, {:.1} × equity \
                     traded: paid {:.4} fees and {:.4} slippage (equity units); total return \
                     {:.4} net vs {:.4} gross (costs booked to trades within {:.1e})",
                    c.costs_bps.0,
                    c.costs_bps.1,
                    c.traded,
                    c.fees,
                    c.slippage,
                    c.net_total_return,
                    gross,
                    c.max_deviation
                ),
            }
        }
        None => GateResult {
            name: "costs_applied".to_owned(),
            verdict: skipped("the cost check (the run again without costs)")
                .unwrap_or_else(|| Verdict::Skip("the cost check did not run".into())),
            message: String::new(),
        },
    };
    let defined = |x: f64| outcome.undefined.is_none().then_some(x);
    let wf = outcome
        .walk_forward
        .as_ref()
        .filter(|_| outcome.walk_forward_undefined.is_none())
        .map(|w| w.oos.sharpe);
    let pbo_max = match (&outcome.pbo, gates.pbo_max) {
        // No sweep was asked for: nothing to compute PBO over, and the reason says how.
        (Err(why), _) if !outcome.swept => GateResult {
            name: "pbo_max".to_owned(),
            verdict: Verdict::Skip(why.clone()),
            message: String::new(),
        },
        // Uncomputable, with a threshold set: a failure that says why, never a made-up PBO.
        (Err(why), Some(_)) => GateResult {
            name: "pbo_max".to_owned(),
            verdict: Verdict::Fail,
            message: format!("PBO is undefined on this run: {why}"),
        },
        (pbo, limit) => threshold(
            ("pbo_max", "pbo-max"),
            "probability of backtest overfitting",
            pbo.as_ref().ok().map(|p| p.pbo),
            limit,
            Bound::AtMost,
        ),
    };
    let walk_forward = match (&outcome.walk_forward, skipped("the walk-forward")) {
        (None, Some(skip)) => GateResult {
            name: "walk_forward".to_owned(),
            verdict: skip,
            message: String::new(),
        },
        _ => threshold(
            ("walk_forward", "walk-forward-sharpe-min"),
            "out-of-sample walk-forward Sharpe",
            wf,
            gates.walk_forward_sharpe_min,
            Bound::AtLeast,
        ),
    };
    let mut results = vec![
        no_lookahead,
        costs_applied,
        threshold(
            ("sharpe_min", "sharpe-min"),
            "annualised Sharpe",
            defined(m.sharpe),
            gates.sharpe_min,
            Bound::AtLeast,
        ),
        threshold(
            ("max_drawdown", "max-drawdown"),
            "max drawdown",
            defined(m.max_drawdown),
            gates.max_drawdown,
            Bound::AtMost,
        ),
        threshold(
            ("hit_rate_min", "hit-rate-min"),
            "hit rate",
            m.hit_rate.and_then(defined),
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
        walk_forward,
        threshold(
            ("dsr_min", "dsr-min"),
            &format!("deflated Sharpe ratio (N = {})", outcome.deflated.trials),
            defined(outcome.deflated.dsr),
            gates.dsr_min,
            Bound::AtLeast,
        ),
        pbo_max,
    ];
    // A check skipped for a reason prints that reason.
    for r in &mut results {
        if let (Verdict::Skip(why), true) = (&r.verdict, r.message.is_empty()) {
            r.message = why.clone();
        }
    }
    // Undefined metrics name their reason.
    for r in &mut results {
        if r.verdict != Verdict::Fail || !r.message.contains("is undefined on this run") {
            continue;
        }
        let why = match r.name.as_str() {
            "walk_forward" => outcome.walk_forward_undefined.as_deref(),
            "pbo_max" => None,
            _ => outcome.undefined.as_deref(),
        };
        if let Some(why) = why {
            r.message = format!("{}: {why}", r.message);
        }
    }
    results
}
