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

    /// One point: the curve's start, or a short series.
    fn push(&mut self, t_ns: i64, y: f64) {
        self.extend(&[t_ns], &[y]);
    }

    /// The points `(ts[k], ys[k])` in order, as many pushed one at a time would be: each
    /// bucket's part of the slice is scanned for its first lowest and first highest value
    /// in a tight loop, the times read only for the points that win (pushed one at a time,
    /// every point went through the bucket test and an `Option` match).
    fn extend(&mut self, ts: &[i64], ys: &[f64]) {
        let (ts, ys) = (&ts[..ts.len().min(ys.len())], &ys[..ts.len().min(ys.len())]);
        if self.buckets == 0 {
            self.out
                .extend(ts.iter().zip(ys).map(|(&t, &y)| [secs(t), y]));
            return;
        }
        let mut from = 0;
        while from < ys.len() {
            if self.pushed == self.end && self.bucket + 1 < self.buckets {
                self.next_bucket();
            }
            // The last bucket takes whatever comes, as `push` did.
            let room = if self.bucket + 1 < self.buckets {
                self.end - self.pushed
            } else {
                usize::MAX
            };
            let part = &ys[from..from + room.min(ys.len() - from)];
            let base = self.pushed - self.start;
            // The bucket's first point starts both extremes, whatever its value (NaN too).
            let mut skip = 0;
            if self.lo.is_none() || self.hi.is_none() {
                let p = (base, (ts[from], part[0]));
                (self.lo, self.hi, skip) = (Some(p), Some(p), 1);
            }
            if let (Some(lo), Some(hi)) = (&mut self.lo, &mut self.hi) {
                // A later point wins only when strictly lower (higher): the first one stays.
                let (mut lo_y, mut hi_y) = (lo.1.1, hi.1.1);
                let (mut lo_k, mut hi_k) = (usize::MAX, usize::MAX);
                for (k, &y) in part.iter().enumerate().skip(skip) {
                    if y < lo_y {
                        (lo_y, lo_k) = (y, k);
                    }
                    if y > hi_y {
                        (hi_y, hi_k) = (y, k);
                    }
                }
                if lo_k != usize::MAX {
                    *lo = (base + lo_k, (ts[from + lo_k], lo_y));
                }
                if hi_k != usize::MAX {
                    *hi = (base + hi_k, (ts[from + hi_k], hi_y));
                }
            }
            self.pushed += part.len();
            from += part.len();
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

/// Periods a [`Pass`] computes at a time before handing them on: three columns of it
/// (96 KB) stay in the core's cache for the calendar loop that reads them again.
const PASS_CHUNK: usize = 4096;

/// What the tear sheet reads of every period, gathered in one pass over the run: the
/// equity, buy-and-hold and drawdown curves (downsampled), the equity axis's range, the
/// worst drawdowns, and both series' daily and monthly returns. Each chart and table had
/// its own pass over the 1M periods of a 1M-bar run, compounding the equity four times and
/// dividing buy-and-hold's levels three times (suites/backtest/README.md, Figures); the
/// figures are the same bits.
#[derive(Debug, Clone)]
pub struct Pass {
    equity: Series,
    benchmark: Series,
    /// The lowest and highest positive finite value of both curves (the start's 1
    /// included).
    range: (f64, f64),
    drawdown: Series,
    worst: Vec<Drawdown>,
    daily: (Vec<f64>, Vec<f64>),
    monthly: (Vec<Month>, Vec<Month>),
}

/// A month's return: `(year, month, return)`.
type Month = (i32, u32, f64);

/// The lowest and highest positive finite values of `ys` and `range`.
fn positive_range(ys: &[f64], range: (f64, f64)) -> (f64, f64) {
    ys.iter()
        .filter(|y| y.is_finite() && **y > 0.0)
        .fold(range, |(lo, hi), &y| (lo.min(y), hi.max(y)))
}

/// The drawdown episodes of an equity curve as it is compounded, as [`worst_drawdowns`]
/// finds them.
#[derive(Debug, Default)]
struct Episodes {
    all: Vec<Drawdown>,
    current: Option<Drawdown>,
    peak: usize,
}

impl Episodes {
    /// Equity point `i` (after period `i − 1`): a new high when `rising` (at or above the
    /// running peak), else `depth` (`1 − equity / peak`) below it.
    #[inline(always)]
    fn step(&mut self, i: usize, rising: bool, depth: f64) {
        if rising {
            if let Some(mut d) = self.current.take() {
                d.recovered = Some(i);
                self.all.push(d);
            }
            self.peak = i;
        } else {
            let d = self.current.get_or_insert(Drawdown {
                peak: self.peak,
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

    fn worst(mut self, n: usize) -> Vec<Drawdown> {
        self.all.extend(self.current);
        self.all.sort_by(|a, b| b.depth.total_cmp(&a.depth));
        self.all.truncate(n);
        self.all
    }
}

/// Daily and monthly returns of the strategy and buy-and-hold, compounded together as the
/// periods come (one day and month change test for both).
#[derive(Debug, Default)]
struct Calendar {
    day: Option<i64>,
    growth: (f64, f64),
    daily: (Vec<f64>, Vec<f64>),
    month: Option<(i32, u32)>,
    month_growth: (f64, f64),
    monthly: (Vec<Month>, Vec<Month>),
}

impl Calendar {
    #[inline(always)]
    fn step(&mut self, t: i64, r: f64, b: f64) {
        let d = t.div_euclid(NS_PER_DAY);
        if self.day != Some(d) {
            if self.day.is_some() {
                self.daily.0.push(self.growth.0 - 1.0);
                self.daily.1.push(self.growth.1 - 1.0);
            }
            self.day = Some(d);
            self.growth = (1.0, 1.0);
            // The month can only change with the day: one date conversion a day, not a bar.
            let current = month_of(t);
            if self.month != Some(current) {
                self.close_month();
                self.month = Some(current);
                self.month_growth = (1.0, 1.0);
            }
        }
        self.growth.0 *= 1.0 + r;
        self.growth.1 *= 1.0 + b;
        self.month_growth.0 *= 1.0 + r;
        self.month_growth.1 *= 1.0 + b;
    }

    fn close_month(&mut self) {
        if let Some((y, m)) = self.month {
            self.monthly.0.push((y, m, self.month_growth.0 - 1.0));
            self.monthly.1.push((y, m, self.month_growth.1 - 1.0));
        }
    }

    fn finish(mut self) -> Calendar {
        if self.day.is_some() {
            self.daily.0.push(self.growth.0 - 1.0);
            self.daily.1.push(self.growth.1 - 1.0);
        }
        self.close_month();
        self
    }
}

impl Pass {
    /// The pass over `outcome`'s periods.
    pub fn of(outcome: &Outcome) -> Pass {
        Pass::over(
            &outcome.execution.returns,
            &outcome.period_ts_ns,
            outcome.start_ts_ns,
            &outcome.benchmark,
        )
    }

    /// The pass over `returns` with the periods' times `ts`, the first bar's `start` and
    /// buy-and-hold's equity `bench`.
    fn over(returns: &[f64], ts: &[i64], start: i64, bench: &[f64]) -> Pass {
        let shown = returns.len().min(ts.len());
        let mut equity = Downsampler::new(shown + 1, MAX_CHART_POINTS);
        let mut drawdown = Downsampler::new(shown + 1, MAX_CHART_POINTS);
        equity.push(start, 1.0);
        drawdown.push(start, 0.0);
        let mut range = positive_range(&[1.0], (f64::INFINITY, 0.0));
        // Both series' calendars over the periods with a time and a benchmark (every period
        // of a run).
        let dated = shown.min(bench.len());
        let mut calendar = Calendar::default();
        let mut episodes = Episodes::default();
        let (mut e, mut peak) = (1.0_f64, 1.0_f64);
        let (mut eq, mut dd) = (vec![0.0; PASS_CHUNK], vec![0.0; PASS_CHUNK]);
        for (c, chunk) in returns.chunks(PASS_CHUNK).enumerate() {
            let from = c * PASS_CHUNK;
            for (k, &r) in chunk.iter().enumerate() {
                e *= 1.0 + r;
                // At or above the peak before this period: a new high (NaN never is).
                let rising = e >= peak;
                peak = peak.max(e);
                let depth = 1.0 - e / peak;
                eq[k] = e;
                dd[k] = -depth * 100.0;
                episodes.step(from + k + 1, rising, depth);
            }
            let m = chunk.len().min(shown.saturating_sub(from));
            let times = &ts[from.min(ts.len())..][..m];
            equity.extend(times, &eq[..m]);
            drawdown.extend(times, &dd[..m]);
            range = positive_range(&eq[..m], range);
            let d = chunk.len().min(dated.saturating_sub(from));
            for (k, (&r, &t)) in chunk[..d].iter().zip(times).enumerate() {
                calendar.step(t, r, benchmark_return(bench, from + k));
            }
        }
        let shown_bench = bench.len().min(ts.len());
        let mut benchmark = Downsampler::new(shown_bench + 1, MAX_CHART_POINTS);
        benchmark.push(start, 1.0);
        benchmark.extend(&ts[..shown_bench], &bench[..shown_bench]);
        range = positive_range(&bench[..shown_bench], range);
        let Calendar { daily, monthly, .. } = calendar.finish();
        Pass {
            equity: equity.series("strategy"),
            benchmark: benchmark.series("buy and hold (no costs)"),
            range,
            drawdown: drawdown.series(""),
            worst: episodes.worst(WORST_DRAWDOWNS),
            daily,
            monthly,
        }
    }
}

/// Equity (start 1) and buy-and-hold against calendar dates, log scale, with a line at the
/// start of each walk-forward test fold.
pub fn equity_chart(outcome: &Outcome, pass: &Pass) -> Chart {
    // Compounding over years spans orders of magnitude: a log axis keeps early years
    // visible. Within one order plotters' log axis has a single tick: linear reads better.
    let (lo, hi) = pass.range;
    let log = hi / lo > 10.0;
    let mut chart = Chart::timeline(
        "Equity (net of costs) against buy-and-hold",
        if log {
            "equity (start = 1, log scale)"
        } else {
            "equity (start = 1)"
        },
    )
    .with_series(pass.equity.clone())
    .with_series(pass.benchmark.clone());
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
pub fn drawdown_chart(pass: &Pass) -> Chart {
    // One series, no legend: an unnamed series draws none.
    Chart::timeline("Drawdown", "drawdown (%)").with_series(pass.drawdown.clone())
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
    rolling_sharpe_chunks(
        returns.len(),
        |i| returns[i],
        window,
        (rf_p, periods_per_year),
        |_, s| out.extend_from_slice(s),
    );
    out
}

/// [`rolling_sharpe`] of the `len` returns `ret(0..len)`, handed to `each` a chunk at a
/// time with the period index of its first value (nothing stored): the same arithmetic in
/// the same order. The running sums go first over a chunk; then the chunk's ratios, which
/// depend on nothing but their own sums, are computed together (their divisions and square
/// roots no longer wait on the sums, nor one on another).
fn rolling_sharpe_chunks(
    len: usize,
    ret: impl Fn(usize) -> f64,
    window: usize,
    (rf_p, periods_per_year): (f64, f64),
    mut each: impl FnMut(usize, &[f64]),
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
    let mut sums = vec![(0.0_f64, 0.0_f64); PASS_CHUNK];
    let mut ratios = vec![0.0_f64; PASS_CHUNK];
    let mut from = 0;
    while from < len {
        let end = (from + PASS_CHUNK).min(len);
        for (i, slot) in (from..end).zip(sums.iter_mut()) {
            let c = ret(i) - mean;
            s1 += c;
            s2 += c * c;
            if i >= window {
                let old = ret(i - window) - mean;
                s1 -= old;
                s2 -= old * old;
            }
            *slot = (s1, s2);
        }
        let first = from.max(window - 1);
        if first < end {
            let chunk = &sums[first - from..end - from];
            for (ratio, &(s1, s2)) in ratios.iter_mut().zip(chunk) {
                let var = (s2 - s1 * s1 / n) / (n - 1.0);
                // A window of constant returns (flat, out of the market) has no Sharpe
                // ratio; what the running sums leave there is rounding noise.
                *ratio = if var > overall * 1e-9 && var > 0.0 {
                    (s1 / n + mean - rf_p) / var.sqrt() * ann
                } else {
                    f64::NAN
                };
            }
            each(first, &ratios[..chunk.len()]);
        }
        from = end;
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
    rolling_sharpe_chunks(len, ret, window, rates, |first, ratios| {
        let times = &ts[first.min(ts.len())..];
        down.extend(times, ratios);
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
pub fn histogram_chart(pass: &Pass) -> Result<Chart, String> {
    let (strategy, benchmark) = &pass.daily;
    if strategy.len() < 10 {
        return Err(format!(
            "no return histogram: {} days of data, fewer than 10",
            strategy.len()
        ));
    }
    // Bins over the middle 99 % of both series; the rest falls into the end bins.
    let mut all: Vec<f64> = strategy
        .iter()
        .chain(benchmark)
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
    .with_series(Series::new("strategy", counts(strategy)))
    .with_series(Series::new("buy and hold", counts(benchmark)));
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
pub fn monthly_table(pass: &Pass) -> Table {
    let (months, bench) = &pass.monthly;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut year_of_rows: Vec<i32> = Vec::new();
    let mut growth: Vec<(f64, f64)> = Vec::new();
    for (&(y, m, r), &(_, _, b)) in months.iter().zip(bench) {
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
    let mut episodes = Episodes::default();
    let (mut e, mut peak) = (1.0_f64, 1.0_f64);
    for (k, r) in returns.iter().enumerate() {
        e *= 1.0 + r;
        let rising = e >= peak;
        peak = peak.max(e);
        episodes.step(k + 1, rising, 1.0 - e / peak);
    }
    episodes.worst(n)
}

/// The five worst drawdowns with their dates, length in days and bars.
pub fn drawdown_table(outcome: &Outcome, pass: &Pass, intraday: bool) -> Table {
    let last = outcome.execution.returns.len();
    let rows = pass
        .worst
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

    /// Buy-and-hold's return over each period of its equity `benchmark`.
    fn levels_returns(benchmark: &[f64]) -> impl Iterator<Item = f64> + '_ {
        (0..benchmark.len()).map(|i| benchmark_return(benchmark, i))
    }

    fn bits(s: &Series) -> Vec<[u64; 2]> {
        s.points
            .iter()
            .map(|p| [p[0].to_bits(), p[1].to_bits()])
            .collect()
    }

    /// The one pass gives, bit for bit, what each chart and table computed on its own:
    /// the curves downsampled from their full lists by the reports' own function, the
    /// axis range, the worst drawdowns, and both series' daily and monthly returns; at
    /// lengths around the pass's chunk and the charts' buckets, over month ends, with flat
    /// stretches, exact new highs and a NaN return.
    #[test]
    fn one_pass_gives_what_each_chart_computed_alone() {
        let mut x: u64 = 29;
        let mut rand = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        for len in [0, 1, 5, 4_095, 4_096, 4_097, 10_007, 123_457] {
            // Bars 17 minutes apart from 2024-01-30 (a month end within 5,000 bars).
            let start = 1_706_572_800_000_000_000_i64;
            let ts: Vec<i64> = (1..=len as i64)
                .map(|i| start + i * 17 * 60_000_000_000)
                .collect();
            let returns: Vec<f64> = (0..len)
                .map(|i| match i % 997 {
                    0..=40 => 0.0,
                    500 if len == 4_097 => f64::NAN,
                    _ => (rand() - 0.49) * 0.02,
                })
                .collect();
            let mut level = 1.0;
            let bench: Vec<f64> = (0..len)
                .map(|_| {
                    level *= 1.0 + (rand() - 0.5) * 0.01;
                    level
                })
                .collect();
            let pass = Pass::over(&returns, &ts, start, &bench);

            let (mut e, mut peak) = (1.0_f64, 1.0_f64);
            let mut equity = vec![[secs(start), 1.0]];
            let mut drawdown = vec![[secs(start), 0.0]];
            for (r, &t) in returns.iter().zip(&ts) {
                e *= 1.0 + r;
                peak = peak.max(e);
                equity.push([secs(t), e]);
                drawdown.push([secs(t), -(1.0 - e / peak) * 100.0]);
            }
            let benchmark: Vec<[f64; 2]> = std::iter::once([secs(start), 1.0])
                .chain(bench.iter().zip(&ts).map(|(&b, &t)| [secs(t), b]))
                .collect();
            let down = |points: &[[f64; 2]]| Series::downsampled("", points, MAX_CHART_POINTS);
            assert_eq!(bits(&pass.equity), bits(&down(&equity)), "{len}");
            assert_eq!(bits(&pass.drawdown), bits(&down(&drawdown)), "{len}");
            assert_eq!(bits(&pass.benchmark), bits(&down(&benchmark)), "{len}");
            let positive = equity
                .iter()
                .chain(&benchmark)
                .map(|p| p[1])
                .filter(|y| y.is_finite() && *y > 0.0);
            let range = positive.fold((f64::INFINITY, 0.0_f64), |(lo, hi), y| {
                (lo.min(y), hi.max(y))
            });
            assert_eq!(pass.range, range, "{len}");
            assert_eq!(
                pass.worst,
                worst_drawdowns(&returns, WORST_DRAWDOWNS),
                "{len}"
            );
            let same = |a: &[f64], b: &[f64]| {
                a.iter()
                    .map(|v| v.to_bits())
                    .eq(b.iter().map(|v| v.to_bits()))
            };
            assert!(same(&pass.daily.0, &daily_returns(&returns, &ts)), "{len}");
            let bench_daily = daily_returns_of(levels_returns(&bench), &ts);
            assert!(same(&pass.daily.1, &bench_daily), "{len}");
            let month_bits = |m: &[(i32, u32, f64)]| -> Vec<(i32, u32, u64)> {
                m.iter().map(|&(y, m, r)| (y, m, r.to_bits())).collect()
            };
            assert_eq!(
                month_bits(&pass.monthly.0),
                month_bits(&monthly_returns(&returns, &ts)),
                "{len}"
            );
            assert_eq!(
                month_bits(&pass.monthly.1),
                month_bits(&monthly_returns_of(levels_returns(&bench), &ts)),
                "{len}"
            );
            if len > 10_000 {
                assert!(pass.monthly.0.len() >= 2 && pass.worst.len() == WORST_DRAWDOWNS);
            }
        }
    }

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
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{len} points, at most {max_points}"
                );
                // The same points in slices of random lengths, across bucket ends.
                let (ts, ys): (Vec<i64>, Vec<f64>) = points.iter().copied().unzip();
                let mut down = Downsampler::new(len, max_points);
                let mut from = 0;
                while from < len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let to = (from + 1 + (x % 3_000) as usize).min(len);
                    down.extend(&ts[from..to], &ys[from..to]);
                    from = to;
                }
                assert_eq!(
                    bits(&down.series("s")),
                    bits(&want),
                    "{len} points in slices, at most {max_points}"
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
