//! Parameter sweeps in bounded memory, and walk-forward folds (BT-WF).
//!
//! A sweep produces each trial's target positions one at a time, executes them, keeps only
//! the trial's summary (moments, per-block statistics for CSCV, per-segment statistics for
//! walk-forward) and drops the series: memory is one trial's columns plus
//! `O(trials × blocks)`. Every trial is recorded, so the `N` of the deflated Sharpe ratio is
//! the honest count.

use std::ops::Range;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::exec::{
    Bar, Costs, Execution, Fill, PositionModel, Sizing, Stepper, Totals, Trade, execute_iter,
    execute_with, size_one,
};
use crate::metrics::{Metrics, Moments, Pass, PowerSums, TradeStats, compute};
use crate::overfit::BlockStats;

/// How predictions become returns: fill, costs, sizing, side and position model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExecParams {
    /// When orders fill.
    pub fill: Fill,
    /// Units held between target changes, or a target weight rebalanced every bar.
    pub model: PositionModel,
    /// Fees and slippage.
    pub costs: Costs,
    /// Prediction → position.
    pub sizing: Sizing,
    /// Positions in [0, 1] rather than [−1, 1].
    pub long_only: bool,
}

impl Default for ExecParams {
    fn default() -> Self {
        ExecParams {
            fill: Fill::NextClose,
            model: PositionModel::Units,
            costs: Costs::default(),
            sizing: Sizing::default(),
            long_only: false,
        }
    }
}

/// Sizes and executes predictions over bars' open and close.
pub fn run(open: &[f64], close: &[f64], predictions: &[f64], params: &ExecParams) -> Execution {
    let (sizing, long_only) = (params.sizing, params.long_only);
    execute_with(
        open,
        close,
        predictions,
        params.fill,
        params.costs,
        params.model,
        |p| size_one(p, sizing, long_only),
    )
}

/// [`run`] of predictions streamed (e.g. [`crate::signals::MaCross::spread_iter`]): the same
/// execution bit for bit, without storing the predictions.
pub fn run_iter<P>(open: &[f64], close: &[f64], predictions: P, params: &ExecParams) -> Execution
where
    P: IntoIterator<Item = f64>,
    P::IntoIter: ExactSizeIterator,
{
    let (sizing, long_only) = (params.sizing, params.long_only);
    execute_iter(
        open,
        close,
        predictions,
        params.fill,
        params.costs,
        params.model,
        |p| size_one(p, sizing, long_only),
    )
}

/// The summary [`sweep`] keeps of a trial, from the trial's stored returns rather than a
/// stream: the same values pushed in the same order, so the same bits as the streamed
/// trial's when `returns` are its run's. A sweep of one (`--no-sweep`) takes its trial from
/// the reported run this way instead of running the backtest twice.
pub fn trial_of(
    label: String,
    returns: &[f64],
    periods_per_year: f64,
    blocks: usize,
    segments: usize,
) -> Trial {
    let mut sums = PowerSums::default();
    let mut by_block = Parts::new(returns.len(), blocks);
    let mut by_segment = Parts::new(returns.len(), segments);
    for &r in returns {
        sums.push(r);
        by_block.push(r);
        by_segment.push(r);
    }
    let moments = sums.moments();
    Trial {
        label,
        moments,
        sharpe: moments.sharpe * periods_per_year.sqrt(),
        blocks: by_block.finish(),
        segments: by_segment.finish(),
    }
}

/// [`compute`] of [`run`], in one pass that stores neither the returns nor the positions (no
/// allocation at all): for a strategy whose metrics are all that is wanted, e.g. a baseline
/// or one point of a sweep. Every metric equals [`compute`]'s bit for bit except those from
/// the moments (Sharpe, Sortino, volatility, skewness, kurtosis), which come from power sums
/// (see `metrics::PowerSums`: within about 1e-12 relative of the two-pass ones).
pub fn run_metrics<P>(
    open: &[f64],
    close: &[f64],
    predictions: P,
    params: &ExecParams,
    periods_per_year: f64,
    risk_free: f64,
) -> Metrics
where
    P: IntoIterator<Item = f64>,
    P::IntoIter: ExactSizeIterator,
{
    let mut pass = Pass::new(periods_per_year, risk_free);
    let mut sums = PowerSums::default();
    let mut trades = TradeStats::default();
    let mut traded = 0.0;
    let (still_open, _) = stream(open, close, predictions, params, |bar| {
        traded += bar.traded;
        pass.push(bar.ret, bar.held != 0.0);
        sums.push(bar.ret - pass.rf_p);
        if let Some(t) = bar.closed {
            trades.push(t.ret);
        }
    });
    if let Some(t) = still_open {
        trades.push(t.ret);
    }
    // The returns' sd is the excess returns' (they differ by a constant).
    let moments = sums.moments();
    pass.metrics(moments, moments.sd, &trades, traded)
}

/// The summary a sweep keeps of one trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// What the trial was, e.g. `ma-cross:10,50`.
    pub label: String,
    /// Per-period moments of its returns.
    pub moments: Moments,
    /// Annualised Sharpe ratio.
    pub sharpe: f64,
    /// Per-block statistics for CSCV.
    #[serde(skip)]
    pub blocks: Vec<BlockStats>,
    /// Per-segment statistics for walk-forward.
    #[serde(skip)]
    pub segments: Vec<BlockStats>,
}

/// Every trial of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// The trials, in the order run.
    pub trials: Vec<Trial>,
}

impl Sweep {
    /// Index of the trial with the highest Sharpe ratio.
    pub fn best(&self) -> Option<usize> {
        (0..self.trials.len()).max_by(|&a, &b| {
            self.trials[a]
                .moments
                .sharpe
                .total_cmp(&self.trials[b].moments.sharpe)
        })
    }

    /// Sample variance (ddof 1) of the trials' per-period Sharpe ratios.
    pub fn sharpe_variance(&self) -> f64 {
        let s: Vec<f64> = self.trials.iter().map(|t| t.moments.sharpe).collect();
        Moments::of(&s, 0.0).sd.powi(2)
    }

    /// The block statistics of every trial, for [`crate::overfit::pbo`].
    pub fn blocks(&self) -> Vec<Vec<BlockStats>> {
        self.trials.iter().map(|t| t.blocks.clone()).collect()
    }
}

/// Runs every trial: `trials` yields each trial's label and predictions (a stored column or
/// a stream such as [`crate::signals::MaCross::spread_iter`]), one at a time. Each trial
/// goes from its predictions to its moments and block statistics in one pass that stores
/// nothing ([`run_metrics`]' pass); the trials are shared among the cores, each thread
/// taking the next one when done, so no more than one trial a thread is alive. Block
/// statistics are bit for bit those of [`BlockStats::split`] on the trial's returns; the
/// moments come from power sums (within about 1e-12 relative of [`Moments::of`]).
pub fn sweep<P>(
    open: &[f64],
    close: &[f64],
    trials: impl Iterator<Item = (String, P)> + Send,
    params: &ExecParams,
    periods_per_year: f64,
    blocks: usize,
    segments: usize,
) -> Sweep
where
    P: IntoIterator<Item = f64> + Send,
    P::IntoIter: ExactSizeIterator,
{
    let queue = Mutex::new(trials.enumerate());
    let done = Mutex::new(Vec::new());
    let work = || {
        loop {
            let Some((i, (label, predictions))) = queue.lock().ok().and_then(|mut q| q.next())
            else {
                break;
            };
            let (moments, blocks, segments) =
                trial_stats(open, close, predictions, params, blocks, segments);
            let trial = Trial {
                label,
                moments,
                sharpe: moments.sharpe * periods_per_year.sqrt(),
                blocks,
                segments,
            };
            if let Ok(mut done) = done.lock() {
                done.push((i, trial));
            }
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 1..threads {
            // A thread that cannot be spawned leaves its trials to the others.
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
    let mut trials = done.into_inner().unwrap_or_default();
    trials.sort_by_key(|(i, _)| *i);
    Sweep {
        trials: trials.into_iter().map(|(_, trial)| trial).collect(),
    }
}

/// One trial's per-period moments and its returns' statistics in `blocks` and `segments`
/// near-equal contiguous parts, streamed.
fn trial_stats<P>(
    open: &[f64],
    close: &[f64],
    predictions: P,
    params: &ExecParams,
    blocks: usize,
    segments: usize,
) -> (Moments, Vec<BlockStats>, Vec<BlockStats>)
where
    P: IntoIterator<Item = f64>,
    P::IntoIter: ExactSizeIterator,
{
    let predictions = predictions.into_iter();
    let periods = periods(open, close, predictions.len());
    let mut sums = PowerSums::default();
    let mut by_block = Parts::new(periods, blocks);
    let mut by_segment = Parts::new(periods, segments);
    stream(open, close, predictions, params, |bar| {
        sums.push(bar.ret);
        by_block.push(bar.ret);
        by_segment.push(bar.ret);
    });
    (sums.moments(), by_block.finish(), by_segment.finish())
}

/// The periods [`run`] executes: one fewer than the bars with both prices and a prediction.
fn periods(open: &[f64], close: &[f64], predictions: usize) -> usize {
    close
        .len()
        .min(open.len())
        .min(predictions)
        .saturating_sub(1)
}

/// [`run`] bar by bar, nothing stored: `each` gets every period's bar; the trade still open
/// after the last bar and the costs paid are returned.
fn stream<P>(
    open: &[f64],
    close: &[f64],
    predictions: P,
    params: &ExecParams,
    mut each: impl FnMut(Bar),
) -> (Option<Trade>, Totals)
where
    P: IntoIterator<Item = f64>,
    P::IntoIter: ExactSizeIterator,
{
    let predictions = predictions.into_iter();
    let periods = periods(open, close, predictions.len());
    let (sizing, long_only) = (params.sizing, params.long_only);
    let mut stepper = Stepper::new(
        open,
        close,
        params.fill,
        params.costs,
        params.model,
        periods,
    );
    if periods > 0 {
        for (t, p) in (0..=periods).zip(predictions) {
            if let Some(bar) = stepper.step(t, size_one(p, sizing, long_only)) {
                each(bar);
            }
        }
    }
    stepper.finish()
}

/// [`BlockStats::split`] of `len` values pushed one at a time, summed in the same order (so
/// the same bits). The part being filled is summed in plain fields, not in its slot of
/// `stats`: through the vector every bar's sums went through memory (a store and a load on
/// the sweep's critical path).
struct Parts {
    stats: Vec<BlockStats>,
    /// The part being filled, its sums so far, the index where the next one starts, values
    /// pushed.
    part: usize,
    current: BlockStats,
    end: usize,
    index: usize,
    len: usize,
}

/// Where `Sum for f64` starts.
const EMPTY: BlockStats = BlockStats {
    n: 0,
    sum: -0.0,
    sum_sq: -0.0,
};

impl Parts {
    fn new(len: usize, parts: usize) -> Self {
        let parts = parts.max(1);
        Parts {
            stats: vec![EMPTY; parts],
            part: 0,
            current: EMPTY,
            end: len / parts,
            index: 0,
            len,
        }
    }

    #[inline]
    fn push(&mut self, r: f64) {
        let parts = self.stats.len();
        while self.index >= self.end && self.part + 1 < parts {
            self.stats[self.part] = std::mem::replace(&mut self.current, EMPTY);
            self.part += 1;
            self.end = (self.part + 1) * self.len / parts;
        }
        let stats = &mut self.current;
        stats.n += 1;
        stats.sum += r;
        stats.sum_sq += r * r;
        self.index += 1;
    }

    /// Every part's statistics.
    fn finish(mut self) -> Vec<BlockStats> {
        self.stats[self.part] = self.current;
        self.stats
    }
}

/// Anchored or rolling training windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WalkMode {
    /// Training always starts at the first bar and grows.
    #[default]
    Anchored,
    /// Training is the one segment before the test segment.
    Rolling,
}

impl std::str::FromStr for WalkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "anchored" => Ok(WalkMode::Anchored),
            "rolling" => Ok(WalkMode::Rolling),
            other => Err(format!(
                "unknown walk-forward mode {other:?} (anchored or rolling)"
            )),
        }
    }
}

/// One walk-forward fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fold {
    /// 1-based fold number.
    pub fold: usize,
    /// Training periods (indices into the return series).
    pub train: Range<usize>,
    /// Test periods.
    pub test: Range<usize>,
    /// The trial chosen on the training periods.
    pub chosen: String,
    /// Its annualised Sharpe ratio on the training periods.
    pub train_sharpe: f64,
    /// Its metrics on the test periods.
    pub metrics: Metrics,
}

/// Walk-forward results: each fold and the out-of-sample aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WalkForward {
    /// Anchored or rolling.
    pub mode: WalkMode,
    /// The folds.
    pub folds: Vec<Fold>,
    /// Metrics of all test periods joined.
    pub oos: Metrics,
}

/// Period boundaries of `segments` near-equal segments of `n` periods (as [`BlockStats::split`]).
pub fn segment_bounds(n: usize, segments: usize) -> Vec<Range<usize>> {
    (0..segments)
        .map(|s| s * n / segments..(s + 1) * n / segments)
        .collect()
}

/// Walk-forward over a swept set of trials: `folds` folds over `folds + 1` segments; each
/// fold picks the trial with the best training Sharpe and tests it on the next segment.
/// `rerun(i)` recomputes trial `i`'s execution for its test periods.
///
/// The sweep must have been run with `segments = folds + 1`.
pub fn walk_forward(
    sweep: &Sweep,
    folds: usize,
    mode: WalkMode,
    periods_per_year: f64,
    rerun: impl FnMut(usize) -> Execution,
) -> Option<WalkForward> {
    walk_forward_keeping(sweep, folds, mode, periods_per_year, rerun, None).0
}

/// [`walk_forward`], also handing back trial `keep`'s execution when it is the last one the
/// folds ran: the reported run's, when it is one of the trials, is then not run again (with
/// `--no-sweep` it always is).
pub fn walk_forward_keeping(
    sweep: &Sweep,
    folds: usize,
    mode: WalkMode,
    periods_per_year: f64,
    mut rerun: impl FnMut(usize) -> Execution,
    keep: Option<usize>,
) -> (Option<WalkForward>, Option<Execution>) {
    let Some(first) = sweep.trials.first() else {
        return (None, None);
    };
    if folds == 0 || first.segments.len() != folds + 1 {
        return (None, None);
    }
    let n: usize = first.segments.iter().map(|s| s.n).sum();
    let bounds = segment_bounds(n, folds + 1);
    let mut chosen = Vec::with_capacity(folds);
    for k in 1..=folds {
        let train_segments = match mode {
            WalkMode::Anchored => 0..k,
            WalkMode::Rolling => k - 1..k,
        };
        let train_stats = |t: &Trial| {
            let mut s = BlockStats::default();
            for seg in &t.segments[train_segments.clone()] {
                s.n += seg.n;
                s.sum += seg.sum;
                s.sum_sq += seg.sum_sq;
            }
            s.sharpe()
        };
        let best = (0..sweep.trials.len())
            .max_by(|&a, &b| {
                train_stats(&sweep.trials[a]).total_cmp(&train_stats(&sweep.trials[b]))
            })
            .unwrap_or(0);
        let train = bounds[train_segments.start].start..bounds[train_segments.end - 1].end;
        chosen.push((k, best, train, train_stats(&sweep.trials[best])));
    }
    let mut folds_out = Vec::with_capacity(folds);
    // The out-of-sample run, every test segment's part in turn, allocated once: grown by
    // doubling, its old and new buffers were alive together at the walk-forward's peak.
    let tested: usize = bounds[1..=folds].iter().map(|r| r.len()).sum();
    let mut oos = Execution {
        returns: Vec::with_capacity(tested),
        held: Vec::with_capacity(tested),
        traded_by_bar: Vec::with_capacity(tested),
        ..Execution::default()
    };
    let mut cache: Option<(usize, Execution)> = None;
    for (k, best, train, train_sharpe) in chosen {
        if cache.as_ref().is_none_or(|(i, _)| *i != best) {
            // The previous trial's execution goes before the next one is run: never two
            // alive at once (16 MB each at 1M bars).
            drop(cache.take());
            cache = Some((best, rerun(best)));
        }
        let Some((_, execution)) = cache.as_ref() else {
            continue;
        };
        let test = bounds[k].clone();
        let part = slice(execution, test.clone());
        oos.returns.extend_from_slice(&part.returns);
        oos.held.extend_from_slice(&part.held);
        oos.traded_by_bar.extend_from_slice(&part.traded_by_bar);
        oos.traded += part.traded;
        oos.fees += part.fees;
        oos.slippage += part.slippage;
        oos.trades.extend_from_slice(&part.trades);
        folds_out.push(Fold {
            fold: k,
            train,
            test,
            chosen: sweep.trials[best].label.clone(),
            train_sharpe: train_sharpe * periods_per_year.sqrt(),
            metrics: compute(&part, periods_per_year, 0.0),
        });
    }
    let kept = cache
        .filter(|(i, _)| Some(*i) == keep)
        .map(|(_, execution)| execution);
    let walk = WalkForward {
        mode,
        folds: folds_out,
        oos: compute(&oos, periods_per_year, 0.0),
    };
    (Some(walk), kept)
}

/// The total return of [`run`]'s returns, compounded in order (the same bits), with nothing
/// stored.
pub fn total_return(open: &[f64], close: &[f64], predictions: &[f64], params: &ExecParams) -> f64 {
    let mut equity = 1.0_f64;
    stream(open, close, predictions.iter().copied(), params, |bar| {
        equity *= 1.0 + bar.ret;
    });
    equity - 1.0
}

/// The part of an execution over return periods `range`: the trades whose entry falls in it
/// (period `k` is bar `k + 1`; a next-close entry at bar 0 counts in period 0), the notional
/// traded within it, and the fees and slippage of those trades.
pub fn slice(e: &Execution, range: Range<usize>) -> Execution {
    let end = range.end.min(e.returns.len());
    let start = range.start.min(end);
    let traded_by_bar = e.traded_by_bar.get(start..end).unwrap_or_default().to_vec();
    let trades: Vec<Trade> = e
        .trades
        .iter()
        .filter(|t| (start..end).contains(&t.entry_bar.saturating_sub(1)))
        .copied()
        .collect();
    Execution {
        returns: e.returns[start..end].to_vec(),
        held: e.held[start..end].to_vec(),
        traded: traded_by_bar.iter().sum(),
        traded_by_bar,
        fees: trades.iter().map(|t| t.fees).sum(),
        slippage: trades.iter().map(|t| t.slippage).sum(),
        trades,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(n: usize) -> Vec<f64> {
        // Up 1 % on even bars, down 0.5 % on odd ones.
        let mut c = vec![100.0];
        for i in 1..n {
            let r = if i.is_multiple_of(2) { 0.01 } else { -0.005 };
            c.push(c[i - 1] * (1.0 + r));
        }
        c
    }

    #[test]
    fn sweep_records_every_trial_and_finds_the_best() {
        let close = prices(400);
        // Trial "right": long before even bars; "wrong": long before odd bars; "flat".
        let make = |phase: Option<usize>| -> Vec<f64> {
            (0..close.len())
                .map(|t| match phase {
                    Some(p) if (t + 1) % 2 == p => 1.0,
                    Some(_) => 0.0,
                    None => 0.0,
                })
                .collect()
        };
        let trials = vec![
            ("wrong".to_owned(), make(Some(1))),
            ("right".to_owned(), make(Some(0))),
            ("flat".to_owned(), make(None)),
        ];
        let s = sweep(
            &close,
            &close,
            trials.into_iter(),
            &ExecParams::default(),
            252.0,
            4,
            5,
        );
        assert_eq!(s.trials.len(), 3);
        assert_eq!(s.trials[s.best().unwrap()].label, "right");
        assert_eq!(s.trials[0].blocks.len(), 4);
        assert_eq!(s.trials[0].segments.len(), 5);
        assert!(s.sharpe_variance() > 0.0);
    }

    #[test]
    fn walk_forward_folds_cover_the_test_segments() {
        let close = prices(501);
        let good: Vec<f64> = (0..close.len())
            .map(|t| if (t + 1).is_multiple_of(2) { 1.0 } else { 0.0 })
            .collect();
        let bad: Vec<f64> = good.iter().map(|p| 1.0 - p).collect();
        let params = ExecParams::default();
        let trials = vec![
            ("bad".to_owned(), bad.clone()),
            ("good".to_owned(), good.clone()),
        ];
        let s = sweep(&close, &close, trials.into_iter(), &params, 252.0, 4, 5);
        let all = [bad, good];
        for mode in [WalkMode::Anchored, WalkMode::Rolling] {
            let wf = walk_forward(&s, 4, mode, 252.0, |i| {
                run(&close, &close, &all[i], &params)
            })
            .unwrap();
            assert_eq!(wf.folds.len(), 4);
            assert_eq!(wf.folds[0].test, 100..200);
            assert_eq!(wf.folds[3].test, 400..500);
            match mode {
                WalkMode::Anchored => assert_eq!(wf.folds[2].train, 0..300),
                WalkMode::Rolling => assert_eq!(wf.folds[2].train, 200..300),
            }
            assert!(wf.folds.iter().all(|f| f.chosen == "good"));
            assert_eq!(wf.oos.periods, 400);
            assert!(wf.oos.sharpe > 0.0);
        }
        assert!(walk_forward(&s, 3, WalkMode::Anchored, 252.0, |_| Execution::default()).is_none());
    }

    #[test]
    fn slice_counts_the_entry_from_the_previous_position() {
        let close = prices(10);
        let e = run(
            &close,
            &close,
            &[1.0, 1.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            &ExecParams::default(),
        );
        let part = slice(&e, 2..5);
        // Held over periods 2..5 (bars 3..6): 0, −1, −1; the long's exit at bar 2's close
        // is period 1's, the short's entry (bar 3) and exit (bar 5) are in the slice: one
        // equity's worth each, the exit's grown by the short's gain.
        assert_eq!(part.held, vec![0.0, -1.0, -1.0]);
        assert_eq!(part.traded, e.traded_by_bar[2..5].iter().sum::<f64>());
        assert!((part.traded - 2.0).abs() < 0.05, "{}", part.traded);
        assert!((e.traded_by_bar[1] - 1.0).abs() < 1e-12);
        assert_eq!(part.trades.len(), 1);
        assert_eq!(part.trades[0].direction, -1);
        assert_eq!(part.returns.len(), 3);
    }

    /// The streamed metrics are `compute` of `run`: bit for bit but for the moments, which
    /// agree to 1e-12 relative; for both fills, costs, sizings, long-only, a risk-free rate,
    /// the crossover's spread and a model-like signal.
    #[test]
    fn run_metrics_are_compute_of_run() {
        let bars = gauntlet_fixtures::generate_ohlcv_every(5, 20_000, 60).unwrap();
        let (open, close) = (&bars.open, &bars.close);
        let ma = crate::signals::MaCross { fast: 5, slow: 40 };
        let wave: Vec<f64> = (0..close.len())
            .map(|t| ((t as f64) * 0.05).sin() * 0.002)
            .collect();
        let signals: [(&str, Vec<f64>); 2] = [("spread", ma.spread(close)), ("wave", wave)];
        let param_sets = [
            ExecParams::default(),
            ExecParams {
                fill: Fill::NextOpen,
                model: PositionModel::TargetWeight,
                costs: Costs {
                    fees_bps: 10.0,
                    slippage_bps: 2.5,
                },
                sizing: Sizing::Scaled { scale: 0.001 },
                long_only: false,
            },
            ExecParams {
                fill: Fill::NextClose,
                model: PositionModel::Units,
                costs: Costs {
                    fees_bps: 5.0,
                    slippage_bps: 0.0,
                },
                sizing: Sizing::Sign { deadband: 0.0005 },
                long_only: true,
            },
        ];
        let close_to = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300),
                "{what}: {a} vs {b}"
            );
        };
        for (name, signal) in &signals {
            for (k, params) in param_sets.iter().enumerate() {
                for rf in [0.0, 0.03] {
                    let ppy = 525_960.0;
                    let want = compute(&run(open, close, signal, params), ppy, rf);
                    let got = run_metrics(open, close, signal.iter().copied(), params, ppy, rf);
                    let case = format!("{name}, params {k}, rf {rf}");
                    assert!(want.trades > 10, "{case}: {} trades", want.trades);
                    let exact = |m: &Metrics| {
                        (
                            m.periods,
                            m.total_return.to_bits(),
                            m.cagr.to_bits(),
                            m.max_drawdown.to_bits(),
                            m.max_drawdown_bars,
                            m.hit_rate.map(f64::to_bits),
                            m.profit_factor.map(f64::to_bits),
                            m.turnover.to_bits(),
                            m.exposure.to_bits(),
                            m.trades,
                        )
                    };
                    assert_eq!(exact(&got), exact(&want), "{case}");
                    close_to(got.sharpe, want.sharpe, &case);
                    close_to(got.annual_volatility, want.annual_volatility, &case);
                    close_to(
                        got.sortino.unwrap_or(0.0),
                        want.sortino.unwrap_or(0.0),
                        &case,
                    );
                    let (g, w) = (got.moments, want.moments);
                    assert_eq!(g.n, w.n, "{case}");
                    for (a, b) in [
                        (g.mean, w.mean),
                        (g.sd, w.sd),
                        (g.skew, w.skew),
                        (g.kurtosis, w.kurtosis),
                    ] {
                        close_to(a, b, &case);
                    }
                }
            }
        }
        // The spread bar by bar, as `spread` stores it.
        let streamed = run_metrics(
            open,
            close,
            ma.spread_iter(close),
            &param_sets[0],
            252.0,
            0.0,
        );
        let stored = run_metrics(open, close, ma.spread(close), &param_sets[0], 252.0, 0.0);
        assert_eq!(streamed, stored);
        // Fewer predictions than bars: the periods they cover, as `run` takes them.
        let short = run_metrics(
            open,
            close,
            signals[1].1[..100].iter().copied(),
            &param_sets[0],
            252.0,
            0.0,
        );
        assert_eq!(short.periods, 99);
    }

    /// A streamed trial is the stored one: block and segment statistics bit for bit those of
    /// `BlockStats::split` on `run`'s returns, moments within 1e-12; trials come back in the
    /// order given, whether their predictions are stored or streamed.
    #[test]
    fn swept_trials_are_their_runs_summed_by_block() {
        let bars = gauntlet_fixtures::generate_ohlcv_every(8, 5_003, 60).unwrap();
        let (open, close) = (&bars.open, &bars.close);
        let params = ExecParams {
            costs: Costs {
                fees_bps: 3.0,
                slippage_bps: 1.0,
            },
            ..ExecParams::default()
        };
        let grid: Vec<crate::signals::MaCross> = [(2, 7), (5, 40), (10, 50), (20, 200)]
            .into_iter()
            .map(|(f, s)| crate::signals::MaCross { fast: f, slow: s })
            .collect();
        let streamed = sweep(
            open,
            close,
            grid.iter().map(|m| (m.to_string(), m.spread_iter(close))),
            &params,
            252.0,
            16,
            5,
        );
        let stored = sweep(
            open,
            close,
            grid.iter().map(|m| (m.to_string(), m.spread(close))),
            &params,
            252.0,
            16,
            5,
        );
        assert_eq!(streamed, stored);
        for (m, trial) in grid.iter().zip(&streamed.trials) {
            assert_eq!(trial.label, m.to_string());
            let e = run(open, close, &m.spread(close), &params);
            assert_eq!(trial.blocks, BlockStats::split(&e.returns, 16));
            assert_eq!(trial.segments, BlockStats::split(&e.returns, 5));
            let want = Moments::of(&e.returns, 0.0);
            for (a, b) in [
                (trial.moments.sharpe, want.sharpe),
                (trial.moments.sd, want.sd),
                (trial.moments.kurtosis, want.kurtosis),
            ] {
                assert!((a - b).abs() <= 1e-12 * b.abs(), "{m}: {a} vs {b}");
            }
        }
        // More parts than returns: empty parts, as `split` makes them.
        let tiny = sweep(
            &open[..4],
            &close[..4],
            std::iter::once(("t".to_owned(), vec![1.0; 4])),
            &params,
            252.0,
            8,
            5,
        );
        let e = run(&open[..4], &close[..4], &[1.0; 4], &params);
        assert_eq!(tiny.trials[0].blocks, BlockStats::split(&e.returns, 8));
    }
}
