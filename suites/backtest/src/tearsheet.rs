//! The tear sheet of a run, after quantstats': equity against buy-and-hold with the fold
//! boundaries, drawdown, rolling Sharpe and the distribution of daily returns on calendar
//! dates; the monthly and yearly returns, the five worst drawdowns and the trade list as
//! tables. Every figure comes from the reported run's per-period returns and timestamps.

use chrono::{DateTime, Datelike, Utc};
use gauntlet_reports::{Chart, Series, Table};

use crate::exec::Trade;
use crate::report::MAX_CHART_POINTS;
use crate::suite::Outcome;

const NS_PER_DAY: i64 = 86_400_000_000_000;

/// Worst drawdowns listed.
pub const WORST_DRAWDOWNS: usize = 5;

/// Trades listed at each end of the trade list.
pub const TRADES_SHOWN: usize = 10;

/// Bins of the return histogram.
const HISTOGRAM_BINS: usize = 21;

/// Unix seconds of Unix nanoseconds, the x values of a time axis.
fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn utc(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// A timestamp for a table: the date, and the time of day when bars are intraday.
fn when(ns: i64, intraday: bool) -> String {
    if intraday {
        utc(ns).format("%Y-%m-%d %H:%M").to_string()
    } else {
        utc(ns).format("%Y-%m-%d").to_string()
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

/// The timestamp of equity point `i`: the first bar for `i = 0`, then period `i − 1`'s.
fn equity_ts(outcome: &Outcome, i: usize) -> i64 {
    match i {
        0 => outcome.start_ts_ns,
        _ => outcome.period_ts_ns.get(i - 1).copied().unwrap_or(0),
    }
}

/// Buy-and-hold's return over period `i`: its equity over the previous one's (1 before the
/// first), less 1.
fn benchmark_return(benchmark: &[f64], i: usize) -> f64 {
    let previous = match i {
        0 => 1.0,
        _ => benchmark[i - 1],
    };
    benchmark[i] / previous - 1.0
}

/// Buy-and-hold's return over each period, computed as read (no column stored).
fn benchmark_returns(outcome: &Outcome) -> impl Iterator<Item = f64> + '_ {
    (0..outcome.benchmark.len()).map(|i| benchmark_return(&outcome.benchmark, i))
}

/// [`Series::downsampled`] of points pushed one at a time, when their
/// number is known up front: the same min/max buckets and the same points chosen (the
/// first lowest and the first highest of each bucket, in order), without the full-length
/// list it would take. Charts of a 1M-bar run built those lists (16 MB a series) only to
/// keep 2,000 points of each.
///
/// Points come as a Unix-nanosecond time and a value; only the kept points' times become
/// seconds (the chart's x, [`secs`]), rather than a division for every point of which all
/// but 2,000 are dropped.
struct Downsampler {
    out: Vec<[f64; 2]>,
    /// Points expected, and buckets (0: every point is kept).
    len: usize,
    buckets: usize,
    /// The bucket being filled, where it ends, points pushed, and its lowest and highest
    /// point so far (with their indices in the bucket, for the order they are written in).
    bucket: usize,
    start: usize,
    end: usize,
    pushed: usize,
    lo: Option<(usize, (i64, f64))>,
    hi: Option<(usize, (i64, f64))>,
}

impl Downsampler {
    fn new(len: usize, max_points: usize) -> Self {
        let max_points = max_points.max(2);
        let buckets = if len <= max_points { 0 } else { max_points / 2 };
        Downsampler {
            out: Vec::with_capacity(len.min(max_points)),
            len,
            buckets,
            bucket: 0,
            start: 0,
            end: len.checked_div(buckets).unwrap_or(0),
            pushed: 0,
            lo: None,
            hi: None,
        }
    }

    fn flush(&mut self) {
        if let (Some((i, lo)), Some((j, hi))) = (self.lo.take(), self.hi.take()) {
            let (first, second) = if i <= j { (lo, hi) } else { (hi, lo) };
            self.out.push([secs(first.0), first.1]);
            if i != j {
                self.out.push([secs(second.0), second.1]);
            }
        }
    }

    /// Inlined into each chart's loop, the bucket change out of line: a call a point was
    /// a twentieth of `gauntlet backtest --no-sweep`'s samples at 1M bars (five series).
    #[inline(always)]
    fn push(&mut self, t_ns: i64, y: f64) {
        if self.buckets == 0 {
            self.out.push([secs(t_ns), y]);
            return;
        }
        let p = (t_ns, y);
        if self.pushed == self.end && self.bucket + 1 < self.buckets {
            self.next_bucket();
        }
        let k = self.pushed - self.start;
        self.pushed += 1;
        match (&mut self.lo, &mut self.hi) {
            (Some(lo), Some(hi)) => {
                if p.1 < lo.1.1 {
                    *lo = (k, p);
                }
                if p.1 > hi.1.1 {
                    *hi = (k, p);
                }
            }
            _ => {
                self.lo = Some((k, p));
                self.hi = Some((k, p));
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn next_bucket(&mut self) {
        self.flush();
        self.bucket += 1;
        self.start = self.end;
        self.end = (self.bucket + 1) * self.len / self.buckets;
    }

    fn series(mut self, name: &str) -> Series {
        debug_assert!(
            self.buckets == 0 || self.pushed == self.len,
            "pushed {} of {}",
            self.pushed,
            self.len
        );
        self.flush();
        Series::new(name, self.out)
    }
}

/// Equity (start 1) and buy-and-hold against calendar dates, log scale, with a line at the
/// start of each walk-forward test fold.
pub fn equity_chart(outcome: &Outcome) -> Chart {
    let ts = &outcome.period_ts_ns;
    let periods = outcome.execution.returns.len().min(ts.len());
    let mut equity = Downsampler::new(periods + 1, MAX_CHART_POINTS);
    let mut benchmark =
        Downsampler::new(outcome.benchmark.len().min(ts.len()) + 1, MAX_CHART_POINTS);
    // The range of both curves, for the axis: the positive finite values.
    let (mut lo, mut hi) = (f64::INFINITY, 0.0_f64);
    let mut range = |y: f64| {
        if y.is_finite() && y > 0.0 {
            (lo, hi) = (lo.min(y), hi.max(y));
        }
    };
    equity.push(outcome.start_ts_ns, 1.0);
    range(1.0);
    let mut e = 1.0;
    for (r, &t) in outcome.execution.returns.iter().zip(ts) {
        e *= 1.0 + r;
        equity.push(t, e);
        range(e);
    }
    benchmark.push(outcome.start_ts_ns, 1.0);
    range(1.0);
    for (&b, &t) in outcome.benchmark.iter().zip(ts) {
        benchmark.push(t, b);
        range(b);
    }
    // Compounding over years spans orders of magnitude: a log axis keeps early years
    // visible. Within one order plotters' log axis has a single tick: linear reads better.
    let log = hi / lo > 10.0;
    let mut chart = Chart::timeline(
        "Equity (net of costs) against buy-and-hold",
        if log {
            "equity (start = 1, log scale)"
        } else {
            "equity (start = 1)"
        },
    )
    .with_series(equity.series("strategy"))
    .with_series(benchmark.series("buy and hold (no costs)"));
    chart.log_y = log;
    if let Some(w) = &outcome.walk_forward {
        for f in &w.folds {
            if let Some(&t) = outcome.period_ts_ns.get(f.test.start) {
                chart = chart.with_marker(secs(t), format!("fold {}", f.fold));
            }
        }
    }
    chart
}

/// The drawdown below the running peak, in percent, against calendar dates.
pub fn drawdown_chart(outcome: &Outcome) -> Chart {
    let periods = outcome
        .execution
        .returns
        .len()
        .min(outcome.period_ts_ns.len());
    let mut points = Downsampler::new(periods + 1, MAX_CHART_POINTS);
    points.push(outcome.start_ts_ns, 0.0);
    let (mut e, mut peak) = (1.0_f64, 1.0_f64);
    for (r, &t) in outcome.execution.returns.iter().zip(&outcome.period_ts_ns) {
        e *= 1.0 + r;
        peak = peak.max(e);
        points.push(t, -(1.0 - e / peak) * 100.0);
    }
    // One series, no legend: an unnamed series draws none.
    Chart::timeline("Drawdown", "drawdown (%)").with_series(points.series(""))
}

/// Bars in the rolling Sharpe window: half a year of periods, as quantstats' 126 days.
pub fn rolling_window(periods_per_year: f64) -> usize {
    (periods_per_year / 2.0).round().max(2.0) as usize
}

/// The annualised Sharpe ratio over the `window` periods ending at each period (from period
/// `window − 1` on), of returns in excess of `rf_p` a period, sample sd; `NaN` where the
/// window's returns are constant.
pub fn rolling_sharpe(
    returns: &[f64],
    window: usize,
    rf_p: f64,
    periods_per_year: f64,
) -> Vec<f64> {
    let mut out = Vec::with_capacity((returns.len() + 1).saturating_sub(window));
    rolling_sharpe_each(
        returns.len(),
        |i| returns[i],
        window,
        (rf_p, periods_per_year),
        |_, s| out.push(s),
    );
    out
}

/// [`rolling_sharpe`] of the `len` returns `ret(0..len)`, each window's value handed to
/// `each` with its period index (nothing stored): the same arithmetic in the same order.
fn rolling_sharpe_each(
    len: usize,
    ret: impl Fn(usize) -> f64,
    window: usize,
    (rf_p, periods_per_year): (f64, f64),
    mut each: impl FnMut(usize, f64),
) {
    if window < 2 || len < window {
        return;
    }
    // Sums of returns centred on their overall mean: running sums of raw squares would
    // lose the variance of small returns to rounding.
    let mean = (0..len).map(&ret).sum::<f64>() / len as f64;
    let overall = (0..len).map(|i| (ret(i) - mean).powi(2)).sum::<f64>() / len as f64;
    let (mut s1, mut s2) = (0.0_f64, 0.0_f64);
    let n = window as f64;
    let ann = periods_per_year.sqrt();
    for i in 0..len {
        let c = ret(i) - mean;
        s1 += c;
        s2 += c * c;
        if i >= window {
            let old = ret(i - window) - mean;
            s1 -= old;
            s2 -= old * old;
        }
        if i + 1 >= window {
            let var = (s2 - s1 * s1 / n) / (n - 1.0);
            // A window of constant returns (flat, out of the market) has no Sharpe ratio;
            // what the running sums leave there is rounding noise.
            each(
                i,
                if var > overall * 1e-9 && var > 0.0 {
                    (s1 / n + mean - rf_p) / var.sqrt() * ann
                } else {
                    f64::NAN
                },
            );
        }
    }
}

/// The rolling Sharpe chart, or why there is none (fewer periods than the window).
pub fn rolling_sharpe_chart(outcome: &Outcome) -> Result<Chart, String> {
    let ppy = outcome.metrics.periods_per_year;
    let window = rolling_window(ppy);
    let rf_p = (1.0 + outcome.metrics.risk_free).powf(1.0 / ppy) - 1.0;
    let returns = &outcome.execution.returns;
    let ts = &outcome.period_ts_ns;
    if window < 2 || returns.len() < window {
        return Err(format!(
            "no rolling Sharpe: {} periods, fewer than its window of {window} (half a year)",
            returns.len()
        ));
    }
    let args = (window, (rf_p, ppy), ts.as_slice());
    let strategy = rolling_series(returns.len(), |i| returns[i], args, "strategy");
    let bench = &outcome.benchmark;
    let bench = rolling_series(
        bench.len(),
        |i| benchmark_return(bench, i),
        args,
        "buy and hold",
    );
    Ok(Chart::timeline(
        format!("Rolling Sharpe ({window} periods, half a year; annualised)"),
        "Sharpe ratio",
    )
    .with_series(strategy)
    .with_series(bench))
}

/// A rolling Sharpe series against `ts`, downsampled as it is computed: its points are
/// never all stored.
fn rolling_series(
    len: usize,
    ret: impl Fn(usize) -> f64,
    (window, rates, ts): (usize, (f64, f64), &[i64]),
    name: &str,
) -> Series {
    let shown = len.min(ts.len());
    let mut down = Downsampler::new((shown + 1).saturating_sub(window), MAX_CHART_POINTS);
    rolling_sharpe_each(len, ret, window, rates, |i, s| {
        if let Some(&t) = ts.get(i) {
            down.push(t, s);
        }
    });
    down.series(name)
}

/// Returns compounded per UTC calendar day, in day order (days without a period left out).
pub fn daily_returns(returns: &[f64], ts_ns: &[i64]) -> Vec<f64> {
    daily_returns_of(returns.iter().copied(), ts_ns)
}

/// [`daily_returns`] of returns as they are computed.
fn daily_returns_of(returns: impl IntoIterator<Item = f64>, ts_ns: &[i64]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut day = None;
    let mut growth = 1.0;
    for (r, &t) in returns.into_iter().zip(ts_ns) {
        let d = t.div_euclid(NS_PER_DAY);
        if day.is_some_and(|x| x != d) {
            out.push(growth - 1.0);
            growth = 1.0;
        }
        day = Some(d);
        growth *= 1.0 + r;
    }
    if day.is_some() {
        out.push(growth - 1.0);
    }
    out
}

/// The histogram of daily returns (strategy and buy-and-hold on the same bins), or why there
/// is none.
pub fn histogram_chart(outcome: &Outcome) -> Result<Chart, String> {
    let strategy = daily_returns(&outcome.execution.returns, &outcome.period_ts_ns);
    let benchmark = daily_returns_of(benchmark_returns(outcome), &outcome.period_ts_ns);
    if strategy.len() < 10 {
        return Err(format!(
            "no return histogram: {} days of data, fewer than 10",
            strategy.len()
        ));
    }
    // Bins over the middle 99 % of both series; the rest falls into the end bins.
    let mut all: Vec<f64> = strategy
        .iter()
        .chain(&benchmark)
        .copied()
        .filter(|r| r.is_finite())
        .collect();
    all.sort_by(f64::total_cmp);
    let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (q(0.005), q(0.995));
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1e-4, hi + 1e-4)
    };
    let width = (hi - lo) / HISTOGRAM_BINS as f64;
    let counts = |rets: &[f64]| {
        let mut c = vec![0_usize; HISTOGRAM_BINS];
        for r in rets.iter().filter(|r| r.is_finite()) {
            let b = ((r - lo) / width)
                .floor()
                .clamp(0.0, (HISTOGRAM_BINS - 1) as f64);
            c[b as usize] += 1;
        }
        c.into_iter()
            .enumerate()
            .map(|(i, n)| [i as f64, n as f64])
            .collect::<Vec<_>>()
    };
    let digits = if width * 100.0 >= 1.0 {
        1
    } else if width * 100.0 >= 0.1 {
        2
    } else {
        3
    };
    let categories = (0..HISTOGRAM_BINS)
        .map(|i| format!("{:.digits$}", (lo + (i as f64 + 0.5) * width) * 100.0))
        .collect();
    let mut chart = Chart::bar(
        format!(
            "Distribution of daily returns ({} days; the end bins hold the outer 1 %)",
            strategy.len()
        ),
        "days",
        categories,
    )
    .with_series(Series::new("strategy", counts(&strategy)))
    .with_series(Series::new("buy and hold", counts(&benchmark)));
    chart.x_label = "daily return (%), bin centre".into();
    Ok(chart)
}

/// Month and year of a timestamp.
fn month_of(ns: i64) -> (i32, u32) {
    let d = utc(ns);
    (d.year(), d.month())
}

/// Returns compounded per calendar month (UTC): `(year, month, return)` in time order.
pub fn monthly_returns(returns: &[f64], ts_ns: &[i64]) -> Vec<(i32, u32, f64)> {
    monthly_returns_of(returns.iter().copied(), ts_ns)
}

/// [`monthly_returns`] of returns as they are computed.
fn monthly_returns_of(
    returns: impl IntoIterator<Item = f64>,
    ts_ns: &[i64],
) -> Vec<(i32, u32, f64)> {
    let mut out: Vec<(i32, u32, f64)> = Vec::new();
    let mut last_day = i64::MIN;
    for (r, &t) in returns.into_iter().zip(ts_ns) {
        // The month can only change with the day: one date conversion a day, not a bar.
        let day = t.div_euclid(NS_PER_DAY);
        if day != last_day {
            last_day = day;
            let current = month_of(t);
            if out.last().is_none_or(|&(y, m, _)| (y, m) != current) {
                out.push((current.0, current.1, 1.0));
            }
        }
        if let Some(last) = out.last_mut() {
            last.2 *= 1.0 + r;
        }
    }
    for m in &mut out {
        m.2 -= 1.0;
    }
    out
}

/// Months as rows of years: each month's return, the year's, and buy-and-hold's year.
pub fn monthly_table(outcome: &Outcome) -> Table {
    let months = monthly_returns(&outcome.execution.returns, &outcome.period_ts_ns);
    let bench = monthly_returns_of(benchmark_returns(outcome), &outcome.period_ts_ns);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut year_of_rows: Vec<i32> = Vec::new();
    let mut growth: Vec<(f64, f64)> = Vec::new();
    for (&(y, m, r), &(_, _, b)) in months.iter().zip(&bench) {
        if year_of_rows.last() != Some(&y) {
            year_of_rows.push(y);
            let mut row = vec![String::new(); 15];
            row[0] = y.to_string();
            rows.push(row);
            growth.push((1.0, 1.0));
        }
        let (row, g) = (rows.last_mut(), growth.last_mut());
        if let (Some(row), Some(g)) = (row, g) {
            row[m as usize] = format!("{:.1}", r * 100.0);
            g.0 *= 1.0 + r;
            g.1 *= 1.0 + b;
        }
    }
    for (row, (s, b)) in rows.iter_mut().zip(growth) {
        row[13] = format!("{:.1}", (s - 1.0) * 100.0);
        row[14] = format!("{:.1}", (b - 1.0) * 100.0);
    }
    let mut columns = vec!["year".to_owned()];
    columns.extend(
        [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .map(str::to_owned),
    );
    columns.push("year".into());
    columns.push("buy and hold".into());
    Table {
        title: "Monthly and yearly returns (%, net of costs; UTC calendar)".into(),
        columns,
        rows,
    }
}

/// One drawdown: from a peak to the recovery of that peak (or the end of the data).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drawdown {
    /// Equity index of the peak (0 = the start, `k` = after period `k − 1`).
    pub peak: usize,
    /// Equity index of the bottom.
    pub trough: usize,
    /// Equity index where the peak was regained; `None` while still under it at the end.
    pub recovered: Option<usize>,
    /// `1 − bottom / peak`.
    pub depth: f64,
}

/// The `n` deepest drawdowns of `returns`, deepest first.
pub fn worst_drawdowns(returns: &[f64], n: usize) -> Vec<Drawdown> {
    let mut all = Vec::new();
    let (mut e, mut peak_e) = (1.0_f64, 1.0_f64);
    let mut current: Option<Drawdown> = None;
    let mut peak = 0;
    for (k, r) in returns.iter().enumerate() {
        e *= 1.0 + r;
        let i = k + 1;
        if e >= peak_e {
            if let Some(mut d) = current.take() {
                d.recovered = Some(i);
                all.push(d);
            }
            peak_e = e;
            peak = i;
        } else {
            let depth = 1.0 - e / peak_e;
            let d = current.get_or_insert(Drawdown {
                peak,
                trough: i,
                recovered: None,
                depth,
            });
            if depth > d.depth {
                d.depth = depth;
                d.trough = i;
            }
        }
    }
    all.extend(current);
    all.sort_by(|a, b| b.depth.total_cmp(&a.depth));
    all.truncate(n);
    all
}

/// The five worst drawdowns with their dates, length in days and bars.
pub fn drawdown_table(outcome: &Outcome, intraday: bool) -> Table {
    let last = outcome.execution.returns.len();
    let rows = worst_drawdowns(&outcome.execution.returns, WORST_DRAWDOWNS)
        .iter()
        .enumerate()
        .map(|(rank, d)| {
            let end = d.recovered.unwrap_or(last);
            let days =
                (equity_ts(outcome, end) - equity_ts(outcome, d.peak)) as f64 / NS_PER_DAY as f64;
            vec![
                (rank + 1).to_string(),
                when(equity_ts(outcome, d.peak), intraday),
                when(equity_ts(outcome, d.trough), intraday),
                d.recovered.map_or_else(
                    || "not recovered".to_owned(),
                    |i| when(equity_ts(outcome, i), intraday),
                ),
                pct(d.depth),
                if intraday {
                    format!("{days:.1}")
                } else {
                    format!("{days:.0}")
                },
                (end - d.peak).to_string(),
            ]
        })
        .collect();
    Table {
        title: format!("Worst {WORST_DRAWDOWNS} drawdowns (peak to recovery; UTC)"),
        columns: [
            "#",
            "peak",
            "bottom",
            "recovered",
            "depth",
            "length (days)",
            "length (bars)",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    }
}

fn trade_row(k: usize, t: &Trade, outcome: &Outcome, intraday: bool) -> Vec<String> {
    // Bar b's timestamp is equity point b's: bar 0 starts the curve.
    let time = |bar: usize| when(equity_ts(outcome, bar), intraday);
    vec![
        (k + 1).to_string(),
        if t.direction > 0 { "long" } else { "short" }.to_owned(),
        time(t.entry_bar),
        if t.open {
            format!("{} (open)", time(t.exit_bar))
        } else {
            time(t.exit_bar)
        },
        format!("{:.6}", t.entry_price),
        format!("{:.6}", t.exit_price),
        (t.exit_bar - t.entry_bar.min(t.exit_bar)).to_string(),
        pct(t.ret),
    ]
}

/// The first and last [`TRADES_SHOWN`] trades (all of them when there are few).
pub fn trades_table(outcome: &Outcome, intraday: bool) -> Table {
    let trades = &outcome.execution.trades;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let shown = TRADES_SHOWN;
    if trades.len() <= 2 * shown {
        rows.extend(
            trades
                .iter()
                .enumerate()
                .map(|(k, t)| trade_row(k, t, outcome, intraday)),
        );
    } else {
        rows.extend(
            trades[..shown]
                .iter()
                .enumerate()
                .map(|(k, t)| trade_row(k, t, outcome, intraday)),
        );
        // The elision in the narrow columns: "…" under #, the count under side.
        let mut gap = vec![String::new(); 8];
        gap[0] = "…".into();
        gap[1] = format!("{} more", trades.len() - 2 * shown);
        rows.push(gap);
        let from = trades.len() - shown;
        rows.extend(
            trades[from..]
                .iter()
                .enumerate()
                .map(|(k, t)| trade_row(from + k, t, outcome, intraday)),
        );
    }
    Table {
        title: format!(
            "Trades: the first and last {shown} of {} (UTC; prices with slippage; trades.csv \
             has every one)",
            trades.len()
        ),
        columns: [
            "#",
            "side",
            "entry",
            "exit",
            "entry price",
            "exit price",
            "bars",
            "return",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed downsampler keeps the points `downsample` keeps from the whole list, in
    /// order, bit for bit: short series whole, long ones by min/max bucket, with ties (the
    /// first lowest and highest win), NaN (never chosen past a bucket's first point) and
    /// lengths that do not divide evenly.
    #[test]
    fn streamed_downsampling_is_the_reports_downsampling() {
        let mut x: u64 = 11;
        for len in [
            0, 1, 2, 7, 1_999, 2_000, 2_001, 2_003, 4_001, 10_007, 123_457,
        ] {
            for max_points in [2, 3, 10, 2_000] {
                // Times a minute apart from 2024, some not whole seconds.
                let ns = |i: usize| 1_704_067_200_000_000_000 + i as i64 * 60_000_000_007;
                let points: Vec<(i64, f64)> = (0..len)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let y = match x % 7 {
                            0 => f64::NAN,
                            1 => 0.5,
                            _ => (x >> 11) as f64 / (1u64 << 53) as f64,
                        };
                        (ns(i), y)
                    })
                    .collect();
                let all: Vec<[f64; 2]> = points.iter().map(|&(t, y)| [secs(t), y]).collect();
                let want = gauntlet_reports::Series::downsampled("s", &all, max_points);
                let mut down = Downsampler::new(len, max_points);
                for &(t, y) in &points {
                    down.push(t, y);
                }
                let got = down.series("s");
                let bits = |s: &Series| -> Vec<[u64; 2]> {
                    s.points
                        .iter()
                        .map(|p| [p[0].to_bits(), p[1].to_bits()])
                        .collect()
                };
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{len} points, at most {max_points}"
                );
            }
        }
    }

    #[test]
    fn drawdowns_run_from_peak_to_recovery_deepest_first() {
        // Equity 1, 1.1, 0.99 (−10 %), 1.1 (recovered), 1.21, 0.968 (−20 %) to the end.
        let r = [0.1, -0.1, 1.1 / 0.99 - 1.0, 0.1, -0.2];
        let d = worst_drawdowns(&r, 5);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].peak, d[0].trough, d[0].recovered), (4, 5, None));
        assert!((d[0].depth - 0.2).abs() < 1e-12, "{}", d[0].depth);
        assert_eq!((d[1].peak, d[1].trough, d[1].recovered), (1, 2, Some(3)));
        assert!((d[1].depth - 0.1).abs() < 1e-12);
        assert_eq!(worst_drawdowns(&r, 1).len(), 1);
    }

    #[test]
    fn rolling_sharpe_matches_each_window_computed_alone() {
        let r: Vec<f64> = (0..300)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) * 1e-4 + 2e-4)
            .collect();
        let (w, rf, ppy) = (20, 1e-5, 252.0);
        let rolling = rolling_sharpe(&r, w, rf, ppy);
        assert_eq!(rolling.len(), r.len() - w + 1);
        for (k, got) in rolling.iter().enumerate() {
            let win = &r[k..k + w];
            let mean = win.iter().sum::<f64>() / w as f64;
            let var = win.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (w - 1) as f64;
            let want = (mean - rf) / var.sqrt() * ppy.sqrt();
            assert!(
                (got - want).abs() < 1e-9 * want.abs().max(1.0),
                "{k}: {got} {want}"
            );
        }
        // Flat stretches have no Sharpe ratio.
        let mut flat = r.clone();
        flat[100..150].fill(0.0);
        let rolling = rolling_sharpe(&flat, w, 0.0, ppy);
        assert!(rolling[140 - w + 1].is_nan());
        assert!(rolling_sharpe(&r[..10], w, 0.0, ppy).is_empty());
    }

    #[test]
    fn months_and_days_compound_in_the_utc_calendar() {
        let day = 86_400_000_000_000_i64;
        let jan31 = 1_706_659_200_000_000_000_i64; // 2024-01-31T00:00:00Z
        let ts = [jan31, jan31 + day / 2, jan31 + day, jan31 + 2 * day];
        let r = [0.1, 0.1, -0.5, 0.2];
        let m = monthly_returns(&r, &ts);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].0, m[0].1), (2024, 1));
        assert!((m[0].2 - 0.21).abs() < 1e-12);
        assert_eq!((m[1].0, m[1].1), (2024, 2));
        assert!((m[1].2 - (-0.4)).abs() < 1e-12);
        let d = daily_returns(&r, &ts);
        assert_eq!(d.len(), 3);
        assert!((d[0] - 0.21).abs() < 1e-12);
    }
}
