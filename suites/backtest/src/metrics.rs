//! Performance metrics and their conventions (BT-METRICS).
//!
//! | convention | choice |
//! |---|---|
//! | returns | simple per-bar returns of the strategy, net of costs ([`crate::exec`]) |
//! | periods per year | given, or derived from the median bar interval and a declared [`Calendar`]; always printed with its source |
//! | standard deviation | sample, ddof 1 |
//! | risk-free rate | annual rate `rf` converted per period as `(1 + rf)^(1/ppy) − 1`; 0 unless set |
//! | Sharpe | `mean(r − rf_p) / sd(r − rf_p) · √ppy`; 0 when the returns do not vary |
//! | Sortino | `mean(r − rf_p) / dd · √ppy`, `dd = √(Σ min(0, r − rf_p)² / n)` over all `n` periods; none without a losing period |
//! | CAGR | `equity^(ppy / n) − 1` over the `n` return periods |
//! | annual volatility | `sd(r) · √ppy` |
//! | drawdown | `1 − equity / running peak`, the peak starting at the initial equity 1 |
//! | max drawdown duration | the longest run of bars spent below a previous peak |
//! | Calmar | `CAGR / max drawdown`; none without a drawdown |
//! | hit rate, profit factor | over closed and open trades: share with a return above 0 (a trade at its own price, return exactly 0, is no win); sum of winning returns over the absolute sum of losing ones (none without a loser) |
//! | turnover | `Σ |order notional| / equity · ppy / n`: equity traded per year (≈ 2 = one round trip a year) |
//! | exposure | share of periods with a non-zero position |
//! | skewness, kurtosis | population moments of the per-period returns; kurtosis is *raw* (3 for a normal) |

use std::fmt;

use serde::Serialize;

use crate::exec::Execution;

/// Seconds in the mean Gregorian year.
const SECONDS_PER_YEAR: f64 = 365.25 * 86_400.0;
const SECONDS_PER_DAY: f64 = 86_400.0;

/// The trading calendar the bars follow, for deriving periods per year.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calendar {
    /// Trading around the clock, every day (crypto): `365.25 days / interval`.
    Continuous,
    /// An exchange with sessions: intraday bars give `days · session / interval`
    /// (at least one bar a day), daily to weekly bars `days / whole days between bars`,
    /// longer bars `365.25 days / interval`.
    Exchange {
        /// Trading days a year (default 252).
        days_per_year: f64,
        /// Session length in hours (default 6.5).
        session_hours: f64,
    },
}

impl Calendar {
    /// The NYSE-like default: 252 days of 6.5 hours.
    pub const EXCHANGE: Calendar = Calendar::Exchange {
        days_per_year: 252.0,
        session_hours: 6.5,
    };

    /// Periods per year for bars `interval_s` seconds apart (median).
    pub fn periods_per_year(&self, interval_s: f64) -> f64 {
        if interval_s <= 0.0 {
            return 1.0;
        }
        match *self {
            Calendar::Continuous => SECONDS_PER_YEAR / interval_s,
            Calendar::Exchange {
                days_per_year,
                session_hours,
            } => {
                if interval_s < SECONDS_PER_DAY {
                    days_per_year * (session_hours * 3_600.0 / interval_s).max(1.0)
                } else if interval_s < 7.0 * SECONDS_PER_DAY {
                    days_per_year / (interval_s / SECONDS_PER_DAY).round().max(1.0)
                } else {
                    SECONDS_PER_YEAR / interval_s
                }
            }
        }
    }
}

impl fmt::Display for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Calendar::Continuous => f.write_str("24/7"),
            Calendar::Exchange {
                days_per_year,
                session_hours,
            } => write!(f, "exchange ({days_per_year} days × {session_hours} h)"),
        }
    }
}

/// How many periods make a year, and where that number came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annualisation {
    /// Periods per year.
    pub periods_per_year: f64,
    /// `given` or `derived from a median interval of … on a … calendar`.
    pub source: String,
    /// Whether the bars have no weekend trading (inferred calendars only).
    #[serde(skip)]
    pub skip_weekends: bool,
    /// Hours shut between sessions each weekday, in ns (inferred intraday exchange bars).
    #[serde(skip)]
    pub overnight_ns: i64,
}

impl Annualisation {
    /// A number the user gave.
    pub fn given(periods_per_year: f64) -> Self {
        Annualisation {
            periods_per_year,
            source: "given".into(),
            skip_weekends: false,
            overnight_ns: 0,
        }
    }

    /// Derived from the median interval between bars and a calendar.
    pub fn derived(median_interval_ns: i64, calendar: Calendar) -> Self {
        let seconds = median_interval_ns as f64 / 1e9;
        Annualisation {
            periods_per_year: calendar.periods_per_year(seconds),
            source: format!(
                "derived from the median bar interval of {} on a {calendar} calendar",
                human_seconds(seconds)
            ),
            skip_weekends: false,
            overnight_ns: 0,
        }
    }
}

/// Nanoseconds in a day.
const DAY_NS: i64 = 86_400_000_000_000;

impl Annualisation {
    /// Inferred from the timestamps (Unix ns, UTC): trading days a year × bars per trading
    /// day. Trading days: 365.25 when bars fall on weekends (24/7, crypto); without weekend
    /// bars (under 0.5 % on Saturdays and under 5 % on Sundays, where FX weeks open), 260
    /// when a day's bars span 20 hours or more (FX, 24/5) and 252 otherwise (an exchange).
    /// Bars per day: 1 for daily bars, the median count per UTC date for intraday bars;
    /// bars a week apart or more give `365.25 days / median interval`.
    pub fn inferred(ts_ns: &[i64]) -> Self {
        let mut intervals: Vec<i64> = ts_ns.windows(2).map(|w| w[1] - w[0]).collect();
        let median = match intervals.len() {
            0 => 0,
            len => *intervals.select_nth_unstable(len / 2).1,
        };
        Self::inferred_with_median(ts_ns, median)
    }

    /// [`Annualisation::inferred`] with the median interval already known (the loader's
    /// [`crate::data::Gaps`] finds it, with the same rule: the upper median): one pass over
    /// the UTC days, a division a day rather than three a bar. At 1M bars the three passes
    /// and the median's 8 MB of intervals were 278 of the 1,106 perf samples of `gauntlet
    /// backtest --no-sweep`'s main thread between the load and the tear sheet.
    pub fn inferred_with_median(ts_ns: &[i64], median: i64) -> Self {
        if ts_ns.len() < 2 {
            return Annualisation {
                periods_per_year: 1.0,
                source: "inferred: under two bars, 1 per year".into(),
                skip_weekends: false,
                overnight_ns: 0,
            };
        }
        // Bars per UTC date and a day's span from its first bar to its last (plus one
        // interval), with the bars on Saturdays and Sundays counted day by day: the
        // timestamps are sorted, so a day's bars are the run below the next midnight.
        let (mut per_day, mut span_ns) = (Vec::new(), Vec::new());
        let (mut saturday, mut sunday) = (0_usize, 0_usize);
        let mut k = 0;
        while k < ts_ns.len() {
            let day = ts_ns[k].div_euclid(DAY_NS);
            let next = (day + 1).saturating_mul(DAY_NS);
            let start = k;
            // At least this bar: `next` saturates at the end of the i64 range.
            k += ts_ns[k..].partition_point(|&t| t < next).max(1);
            match (day + 4).rem_euclid(7) {
                6 => saturday += k - start,
                0 => sunday += k - start,
                _ => {}
            }
            per_day.push(k - start);
            span_ns.push(ts_ns[k - 1] - ts_ns[start] + median);
        }
        let n = ts_ns.len() as f64;
        let weekends = saturday as f64 > 0.005 * n || sunday as f64 > 0.05 * n;
        let weekend_note = format!(
            "{saturday} of {} bars on Saturdays and {sunday} on Sundays",
            ts_ns.len()
        );
        let median_s = median as f64 / 1e9;
        if median_s >= 4.0 * SECONDS_PER_DAY {
            return Annualisation {
                periods_per_year: SECONDS_PER_YEAR / median_s,
                source: format!(
                    "inferred: a median bar interval of {}, 365.25 days / interval",
                    human_seconds(median_s)
                ),
                skip_weekends: false,
                overnight_ns: 0,
            };
        }
        let mid = per_day.len() / 2;
        let bars_per_day = if median_s >= 0.8 * SECONDS_PER_DAY {
            1.0
        } else {
            *per_day.select_nth_unstable(mid).1 as f64
        };
        let mid = span_ns.len() / 2;
        let span = *span_ns.select_nth_unstable(mid).1;
        let span_h = span as f64 / 3.6e12;
        let (days, calendar) = if weekends {
            (365.25, "24/7 (bars on weekends)")
        } else if bars_per_day > 1.0 && span_h >= 20.0 {
            (
                260.0,
                "24/5 (no weekend bars, days of 20 hours or more: FX)",
            )
        } else {
            (252.0, "exchange (no weekend bars)")
        };
        Annualisation {
            periods_per_year: days * bars_per_day,
            source: format!(
                "inferred: median interval {}, {bars_per_day} bars a day, {calendar}: \
                 {days} days × {bars_per_day} ({weekend_note}); override with \
                 --periods-per-year or --calendar",
                human_seconds(median_s)
            ),
            skip_weekends: !weekends,
            overnight_ns: if bars_per_day > 1.0 && span_h < 20.0 {
                (DAY_NS - span).max(0)
            } else {
                0
            },
        }
    }
}

impl fmt::Display for Annualisation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2} periods per year ({})",
            self.periods_per_year, self.source
        )
    }
}

fn human_seconds(s: f64) -> String {
    if s >= SECONDS_PER_DAY && s % SECONDS_PER_DAY == 0.0 {
        format!("{} d", s / SECONDS_PER_DAY)
    } else if s >= 3_600.0 && s % 3_600.0 == 0.0 {
        format!("{} h", s / 3_600.0)
    } else if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{} min", s / 60.0)
    } else {
        format!("{s} s")
    }
}

/// Moments of per-period returns, as the overfitting statistics need them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Moments {
    /// Number of periods.
    pub n: usize,
    /// Mean excess return per period.
    pub mean: f64,
    /// Sample standard deviation (ddof 1).
    pub sd: f64,
    /// Per-period Sharpe ratio `mean / sd` (0 when `sd` is 0).
    pub sharpe: f64,
    /// Skewness (population).
    pub skew: f64,
    /// Raw kurtosis (population; 3 for a normal distribution).
    pub kurtosis: f64,
}

impl Moments {
    /// Moments of `returns` less a per-period risk-free rate.
    pub fn of(returns: &[f64], rf_per_period: f64) -> Moments {
        let sum = returns.iter().map(|r| r - rf_per_period).sum::<f64>();
        Moments::with_excess_sum(returns, rf_per_period, sum)
    }

    /// [`Moments::of`] given `Σ (r − rf)` summed in order, as a caller's own pass computed it.
    fn with_excess_sum(returns: &[f64], rf_per_period: f64, sum: f64) -> Moments {
        let n = returns.len();
        let nf = n as f64;
        let mean = sum / nf;
        let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
        for r in returns {
            let d = r - rf_per_period - mean;
            let d2 = d * d;
            m2 += d2;
            m3 += d2 * d;
            m4 += d2 * d2;
        }
        Moments::from_central(n, mean, m2, m3, m4)
    }

    /// The moments of `n` values from their mean and their sums of squared, cubed and
    /// fourth-power deviations from it; with fewer than two values, all 0 and kurtosis 3.
    fn from_central(n: usize, mean: f64, m2: f64, m3: f64, m4: f64) -> Moments {
        if n < 2 {
            return Moments {
                n,
                kurtosis: 3.0,
                ..Moments::default()
            };
        }
        let nf = n as f64;
        let sd = (m2 / (nf - 1.0)).sqrt();
        let (pm2, pm3, pm4) = (m2 / nf, m3 / nf, m4 / nf);
        let (skew, kurtosis) = if pm2 > 0.0 {
            (pm3 / pm2.powf(1.5), pm4 / (pm2 * pm2))
        } else {
            (0.0, 3.0)
        };
        Moments {
            n,
            mean,
            sd,
            sharpe: if sd > 0.0 { mean / sd } else { 0.0 },
            skew,
            kurtosis,
        }
    }
}

/// Every metric of one backtest run; ratios that are undefined on the data are `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Return periods (bars − 1).
    pub periods: usize,
    /// Periods per year used.
    pub periods_per_year: f64,
    /// Annual risk-free rate used.
    pub risk_free: f64,
    /// `equity_end − 1`.
    pub total_return: f64,
    /// Compound annual growth rate.
    pub cagr: f64,
    /// Annualised volatility.
    pub annual_volatility: f64,
    /// Annualised Sharpe ratio.
    pub sharpe: f64,
    /// Annualised Sortino ratio.
    pub sortino: Option<f64>,
    /// CAGR over max drawdown.
    pub calmar: Option<f64>,
    /// Largest fall from a running peak, as a fraction (0.25 = 25 %).
    pub max_drawdown: f64,
    /// Longest time under water, in bars.
    pub max_drawdown_bars: usize,
    /// Share of trades with a positive net return.
    pub hit_rate: Option<f64>,
    /// Winning over losing trade returns.
    pub profit_factor: Option<f64>,
    /// Equity traded per year (each order's notional over the equity it traded from).
    pub turnover: f64,
    /// Share of periods with a position.
    pub exposure: f64,
    /// Number of trades.
    pub trades: usize,
    /// Per-period moments (excess of the risk-free rate).
    pub moments: Moments,
}

/// Metrics of an execution.
pub fn compute(execution: &Execution, periods_per_year: f64, risk_free: f64) -> Metrics {
    let r = &execution.returns;
    let n = r.len();
    let mut pass = Pass::new(periods_per_year, risk_free);
    let held = &execution.held;
    for (i, &x) in r.iter().enumerate() {
        pass.push(x, held.get(i).is_some_and(|p| *p != 0.0));
    }
    pass.exposed += held.iter().skip(n).filter(|p| **p != 0.0).count();
    let rf_p = pass.rf_p;
    let moments = Moments::with_excess_sum(r, rf_p, pass.excess_sum);
    // With no risk-free rate the excess returns are the returns: the same sd, bit for bit.
    let sd_raw = if rf_p == 0.0 {
        moments.sd
    } else {
        Moments::of(r, 0.0).sd
    };
    let mut trades = TradeStats::default();
    for t in &execution.trades {
        trades.push(t.ret);
    }
    pass.metrics(moments, sd_raw, &trades, execution.traded)
}

/// What [`compute`] gathers in its pass over the returns, in order: a struct so that the
/// streaming metrics (`sweep::run_metrics`) gather the very same from returns never stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    periods_per_year: f64,
    risk_free: f64,
    /// The per-period risk-free rate.
    pub rf_p: f64,
    n: usize,
    /// `Σ (r − rf_p)` in order, as [`Moments::of`] sums it.
    pub excess_sum: f64,
    equity: f64,
    peak: f64,
    max_dd: f64,
    under: usize,
    max_under: usize,
    downside: f64,
    /// Periods with a non-zero position.
    pub exposed: usize,
}

impl Pass {
    pub(crate) fn new(periods_per_year: f64, risk_free: f64) -> Self {
        Pass {
            periods_per_year,
            risk_free,
            rf_p: (1.0 + risk_free).powf(1.0 / periods_per_year) - 1.0,
            n: 0,
            excess_sum: -0.0, // where `Sum for f64` starts
            equity: 1.0,
            peak: 1.0,
            max_dd: 0.0,
            under: 0,
            max_under: 0,
            downside: 0.0,
            exposed: 0,
        }
    }

    /// The next period's return, and whether a position was held over it.
    #[inline]
    pub(crate) fn push(&mut self, x: f64, exposed: bool) {
        self.n += 1;
        self.excess_sum += x - self.rf_p;
        self.exposed += usize::from(exposed);
        self.equity *= 1.0 + x;
        if self.equity >= self.peak {
            self.peak = self.equity;
            self.under = 0;
        } else {
            self.under += 1;
            self.max_under = self.max_under.max(self.under);
            self.max_dd = self.max_dd.max(1.0 - self.equity / self.peak);
        }
        let d = (x - self.rf_p).min(0.0);
        self.downside += d * d;
    }

    /// The metrics, given the moments of the excess returns, the sample sd of the returns
    /// themselves, the trades' statistics and the position traded.
    pub(crate) fn metrics(
        self,
        moments: Moments,
        sd_raw: f64,
        trades: &TradeStats,
        traded: f64,
    ) -> Metrics {
        let (n, ppy) = (self.n, self.periods_per_year);
        let nf = n.max(1) as f64;
        let ann = ppy.sqrt();
        let dd = (self.downside / nf).sqrt();
        let cagr = if n > 0 {
            self.equity.powf(ppy / nf) - 1.0
        } else {
            0.0
        };
        let max_dd = self.max_dd;
        Metrics {
            periods: n,
            periods_per_year: ppy,
            risk_free: self.risk_free,
            total_return: self.equity - 1.0,
            cagr,
            annual_volatility: sd_raw * ann,
            sharpe: moments.sharpe * ann,
            sortino: (dd > 0.0).then(|| moments.mean / dd * ann),
            calmar: (max_dd > 0.0).then(|| cagr / max_dd),
            max_drawdown: max_dd,
            max_drawdown_bars: self.max_under,
            hit_rate: (trades.count > 0).then(|| trades.positive as f64 / trades.count as f64),
            profit_factor: (trades.losses > 0.0).then(|| trades.wins / trades.losses),
            turnover: traded * ppy / nf,
            exposure: self.exposed as f64 / nf,
            trades: trades.count,
            moments,
        }
    }
}

/// The trades' net returns summed in trade order, for hit rate and profit factor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TradeStats {
    count: usize,
    positive: usize,
    wins: f64,
    losses: f64,
}

impl Default for TradeStats {
    fn default() -> Self {
        // Where `Sum for f64` starts, as the sums once were.
        TradeStats {
            count: 0,
            positive: 0,
            wins: -0.0,
            losses: -0.0,
        }
    }
}

impl TradeStats {
    pub(crate) fn push(&mut self, ret: f64) {
        self.count += 1;
        self.positive += usize::from(ret > 0.0);
        self.wins += ret.max(0.0);
        self.losses += (-ret).max(0.0);
    }
}

/// Power sums of `x − shift` for streamed values: their moments without a second pass. The
/// shift is the first value, so that the sums stay near the centred ones (for returns whose
/// mean is small against their spread, as per-bar returns are, the difference from the
/// two-pass [`Moments::of`] is a few units in the 13th digit).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PowerSums {
    n: usize,
    shift: f64,
    s1: f64,
    s2: f64,
    s3: f64,
    s4: f64,
}

impl PowerSums {
    #[inline]
    pub(crate) fn push(&mut self, x: f64) {
        if self.n == 0 {
            self.shift = x;
        }
        self.n += 1;
        let d = x - self.shift;
        let d2 = d * d;
        self.s1 += d;
        self.s2 += d2;
        self.s3 += d2 * d;
        self.s4 += d2 * d2;
    }

    /// The moments, as [`Moments::of`] defines them.
    pub(crate) fn moments(&self) -> Moments {
        let n = self.n;
        let nf = n as f64;
        // Central sums from the shifted ones: c = mean − shift.
        let c = self.s1 / nf;
        let mean = self.shift + c;
        let m2 = (self.s2 - c * self.s1).max(0.0);
        let m3 = self.s3 - 3.0 * c * self.s2 + 2.0 * nf * c * c * c;
        let m4 = self.s4 - 4.0 * c * self.s3 + 6.0 * c * c * self.s2 - 3.0 * nf * c * c * c * c;
        Moments::from_central(n, mean, m2, m3, m4)
    }
}

/// The equity curve `Π (1 + r)` after each period, starting from 1.
pub fn equity_curve(returns: &[f64]) -> Vec<f64> {
    let mut e = 1.0;
    returns
        .iter()
        .map(|r| {
            e *= 1.0 + r;
            e
        })
        .collect()
}

/// The drawdown `1 − equity / peak` after each period (peak starting at 1).
pub fn drawdown_curve(returns: &[f64]) -> Vec<f64> {
    let mut e = 1.0_f64;
    let mut peak = 1.0_f64;
    returns
        .iter()
        .map(|r| {
            e *= 1.0 + r;
            peak = peak.max(e);
            1.0 - e / peak
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Trade;

    fn approx(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    /// Moments from streamed power sums against the two-pass ones: by hand for a short
    /// series, and for values far from 0 against their spread (the shift keeps the sums
    /// centred; raw power sums would lose every digit of the variance here).
    #[test]
    fn power_sums_give_the_two_pass_moments() {
        let streamed = |xs: &[f64]| {
            let mut sums = PowerSums::default();
            for &x in xs {
                sums.push(x);
            }
            sums.moments()
        };
        assert_eq!(streamed(&[]), Moments::of(&[], 0.0));
        assert_eq!(streamed(&[0.5]), Moments::of(&[0.5], 0.0));
        // 1, 2, 3, 4, 10: mean 4, deviations −3 −2 −1 0 6: Σd² 50, Σd³ 180, Σd⁴ 1394.
        let xs = [1.0, 2.0, 3.0, 4.0, 10.0];
        let (s, t) = (streamed(&xs), Moments::of(&xs, 0.0));
        approx(s.mean, 4.0);
        approx(s.sd, (50.0_f64 / 4.0).sqrt());
        approx(s.skew, (180.0 / 5.0) / 10.0_f64.powf(1.5));
        approx(s.kurtosis, (1394.0 / 5.0) / 100.0);
        approx(s.sharpe, t.sharpe);
        let far: Vec<f64> = (0..10_000)
            .map(|i| 1e6 + ((i * 7919) % 1000) as f64 * 1e-3)
            .collect();
        let (s, t) = (streamed(&far), Moments::of(&far, 0.0));
        for (a, b) in [(s.mean, t.mean), (s.sd, t.sd), (s.kurtosis, t.kurtosis)] {
            assert!((a - b).abs() <= 1e-9 * b.abs(), "{a} vs {b}");
        }
        assert!((s.skew - t.skew).abs() < 1e-6, "{} vs {}", s.skew, t.skew);
    }

    fn execution(returns: &[f64], held: &[f64], trades: Vec<Trade>, traded: f64) -> Execution {
        Execution {
            returns: returns.to_vec(),
            held: held.to_vec(),
            traded,
            trades,
            ..Execution::default()
        }
    }

    fn trade(ret: f64) -> Trade {
        Trade {
            entry_bar: 0,
            exit_bar: 1,
            direction: 1,
            units: 1.0,
            entry_price: 1.0,
            exit_price: 1.0 + ret,
            fees: 0.0,
            slippage: 0.0,
            ret,
            open: false,
        }
    }

    /// Returns +10 %, −20 %, +5 %, 0, with 4 periods a year.
    ///
    /// Equity 1.1, 0.88, 0.924, 0.924. Mean −0.0125; deviations 0.1125, −0.1875, 0.0625,
    /// −0.0125; squares sum 0.05187 5 → sd √(0.051875/3) = 0.131497…
    #[test]
    fn metrics_by_hand() {
        let r = [0.1, -0.2, 0.05, 0.0];
        let e = execution(
            &r,
            &[1.0, 1.0, -1.0, 0.0],
            vec![trade(-0.12), trade(0.05)],
            3.0,
        );
        let m = compute(&e, 4.0, 0.0);
        approx(m.total_return, 0.924 - 1.0);
        // Four periods at 4 a year: one year, so CAGR = total return.
        approx(m.cagr, 0.924 - 1.0);
        let sd = (0.051875_f64 / 3.0).sqrt();
        approx(m.moments.sd, sd);
        approx(m.annual_volatility, sd * 2.0);
        approx(m.sharpe, -0.0125 / sd * 2.0);
        // Downside: only −0.2 → √(0.04 / 4) = 0.1.
        approx(m.sortino.unwrap(), -0.0125 / 0.1 * 2.0);
        // Peak 1.1, trough 0.88: 20 %; under water for 3 bars to the end.
        approx(m.max_drawdown, 0.2);
        assert_eq!(m.max_drawdown_bars, 3);
        approx(m.calmar.unwrap(), (0.924 - 1.0) / 0.2);
        approx(m.hit_rate.unwrap(), 0.5);
        approx(m.profit_factor.unwrap(), 0.05 / 0.12);
        // 3 units traded over 4 periods at 4 a year.
        approx(m.turnover, 3.0);
        approx(m.exposure, 0.75);
        assert_eq!(m.trades, 2);
    }

    /// On a long run every metric has the bits of the plain definition (each sum in bar
    /// order, the moments from [`Moments::of`]), with and without a risk-free rate.
    #[test]
    fn fused_passes_give_the_bits_of_the_definition() {
        let n = 196_608;
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let returns: Vec<f64> = (0..n).map(|_| 0.01 * next()).collect();
        let held: Vec<f64> = (0..n).map(|i| [0.0, 1.0, -1.0][i % 3]).collect();
        let e = execution(&returns, &held, vec![trade(0.01), trade(-0.02)], 1_000.0);
        for rf in [0.0, 0.03] {
            let m = compute(&e, 525_960.0, rf);
            let rf_p = (1.0_f64 + rf).powf(1.0 / 525_960.0) - 1.0;
            let (equity, max_dd, max_under) = reference_drawdown(&returns);
            let downside: f64 = returns
                .iter()
                .map(|r| {
                    let d = (r - rf_p).min(0.0);
                    d * d
                })
                .fold(0.0, |a, b| a + b);
            let moments = Moments::of(&returns, rf_p);
            assert_eq!(m.moments, moments);
            assert_eq!(m.total_return.to_bits(), (equity - 1.0).to_bits());
            assert_eq!(m.max_drawdown.to_bits(), max_dd.to_bits());
            assert_eq!(m.max_drawdown_bars, max_under);
            let dd = (downside / n as f64).sqrt();
            assert_eq!(
                m.sortino.map(f64::to_bits),
                Some((moments.mean / dd * 525_960f64.sqrt()).to_bits())
            );
            assert_eq!(m.exposure, 2.0 / 3.0);
        }
    }

    /// The drawdown by its definition, one bar at a time from a starting equity of 1:
    /// `(final equity, max drawdown, longest run of bars under the peak)`.
    fn reference_drawdown(returns: &[f64]) -> (f64, f64, usize) {
        let (mut equity, mut peak, mut max_dd, mut under, mut max_under) =
            (1.0_f64, 1.0_f64, 0.0_f64, 0usize, 0usize);
        for &r in returns {
            equity *= 1.0 + r;
            if equity >= peak {
                peak = equity;
                under = 0;
            } else {
                under += 1;
                max_under = max_under.max(under);
                max_dd = max_dd.max(1.0 - equity / peak);
            }
        }
        (equity, max_dd, max_under)
    }

    /// The drawdown pass against the definition on the series where a rewrite of it is most
    /// likely to differ: new highs equal to the peak, NaN, infinite and zero equity.
    #[test]
    fn drawdown_pass_matches_the_definition_on_edge_cases() {
        let series: [&[f64]; 5] = [
            &[0.1, -0.1, 0.0, 0.2, -0.5, 0.0, 1.0, -0.25],
            &[0.1, f64::NAN, -0.5, 0.2],
            &[-0.2, f64::INFINITY, -0.5, 0.1],
            &[0.3, -1.0, 0.5, 0.2],
            &[-0.1, f64::NEG_INFINITY, 0.1],
        ];
        for returns in series {
            let (_, max_dd, max_under) = reference_drawdown(returns);
            let held = vec![1.0; returns.len()];
            let m = compute(&execution(returns, &held, vec![], 1.0), 252.0, 0.0);
            assert_eq!(m.max_drawdown.to_bits(), max_dd.to_bits(), "{returns:?}");
            assert_eq!(m.max_drawdown_bars, max_under, "{returns:?}");
        }
    }

    #[test]
    fn drawdown_counts_from_the_starting_equity() {
        // Falls straight away: the peak is the initial equity 1, not the first bar.
        let m = compute(
            &execution(&[-0.1, 0.05], &[1.0, 1.0], vec![], 1.0),
            252.0,
            0.0,
        );
        approx(m.max_drawdown, 0.1);
        assert_eq!(m.max_drawdown_bars, 2);
        let dd = drawdown_curve(&[-0.1, 0.05]);
        approx(dd[0], 0.1);
        approx(dd[1], 1.0 - 0.945);
        approx(equity_curve(&[-0.1, 0.05])[1], 0.945);
    }

    #[test]
    fn risk_free_is_converted_per_period() {
        let r = [0.01, 0.02, 0.0, 0.03];
        let m = compute(&execution(&r, &[1.0; 4], vec![], 1.0), 12.0, 0.12);
        let rf_p = 1.12_f64.powf(1.0 / 12.0) - 1.0;
        let mean = 0.015 - rf_p;
        let sd = Moments::of(&r, 0.0).sd;
        approx(m.sharpe, mean / sd * 12f64.sqrt());
    }

    #[test]
    fn flat_returns_give_zero_sharpe_and_no_ratios() {
        let m = compute(&execution(&[0.0; 5], &[0.0; 5], vec![], 0.0), 252.0, 0.0);
        assert_eq!(m.sharpe, 0.0);
        assert_eq!(m.sortino, None);
        assert_eq!(m.calmar, None);
        assert_eq!(m.hit_rate, None);
        assert_eq!(m.profit_factor, None);
        assert_eq!(m.exposure, 0.0);
    }

    #[test]
    fn moments_skew_and_raw_kurtosis() {
        // Symmetric two-point distribution: skew 0, raw kurtosis 1.
        let m = Moments::of(&[1.0, -1.0, 1.0, -1.0], 0.0);
        approx(m.skew, 0.0);
        approx(m.kurtosis, 1.0);
        // 0, 0, 0, 4: mean 1, deviations −1, −1, −1, 3; m2 = 3, m3 = 6, m4 = 21.
        let m = Moments::of(&[0.0, 0.0, 0.0, 4.0], 0.0);
        approx(m.skew, 6.0 / 3f64.powf(1.5));
        approx(m.kurtosis, 21.0 / 9.0);
    }

    /// Daily bars without weekends are an exchange's (252), with weekends crypto's (365.25);
    /// hourly bars round the clock on weekdays are FX (260 × 24); a 6.5-hour session of
    /// 30-minute bars is 252 × 13.
    #[test]
    fn periods_per_year_inferred_from_timestamps() {
        // 2024-01-01 was a Monday.
        let monday = 1_704_067_200 * 1_000_000_000_i64;
        let weekdays = |per_day: &[i64]| -> Vec<i64> {
            (0..200)
                .filter(|d| d % 7 < 5)
                .flat_map(|d| per_day.iter().map(move |o| monday + d * DAY_NS + o))
                .collect()
        };
        let daily = Annualisation::inferred(&weekdays(&[0]));
        assert_eq!(daily.periods_per_year, 252.0, "{daily}");
        assert!(daily.skip_weekends);
        let every_day: Vec<i64> = (0..300).map(|d| monday + d * DAY_NS).collect();
        let crypto = Annualisation::inferred(&every_day);
        assert_eq!(crypto.periods_per_year, 365.25, "{crypto}");
        assert!(!crypto.skip_weekends);
        let hours: Vec<i64> = (0..24).map(|h| h * 3_600_000_000_000).collect();
        let fx = Annualisation::inferred(&weekdays(&hours));
        assert_eq!(fx.periods_per_year, 260.0 * 24.0, "{fx}");
        let session: Vec<i64> = (0..13)
            .map(|k| 14 * 3_600_000_000_000 + 30 * k * 60_000_000_000)
            .collect();
        let stocks = Annualisation::inferred(&weekdays(&session));
        assert_eq!(stocks.periods_per_year, 252.0 * 13.0, "{stocks}");
        assert_eq!(stocks.overnight_ns, DAY_NS - 13 * 30 * 60_000_000_000);
        let weekly: Vec<i64> = (0..100).map(|w| monday + 7 * w * DAY_NS).collect();
        let w = Annualisation::inferred(&weekly);
        assert!((w.periods_per_year - 365.25 / 7.0).abs() < 1e-9, "{w}");
        // The loader's median gives the same inference as the timestamps' own, and the
        // day scan ends at both ends of the i64 range.
        for ts in [
            weekdays(&[0]),
            every_day,
            weekdays(&hours),
            weekdays(&session),
            weekly,
            vec![i64::MIN, i64::MIN + 1, 0, i64::MAX - 1, i64::MAX],
        ] {
            let median = crate::data::Gaps::of(&ts).median_interval_ns;
            let given = Annualisation::inferred_with_median(&ts, median);
            let own = Annualisation::inferred(&ts);
            assert_eq!(given.periods_per_year, own.periods_per_year, "{given}");
            assert_eq!(given.source, own.source);
            assert_eq!(
                (given.skip_weekends, given.overnight_ns),
                (own.skip_weekends, own.overnight_ns)
            );
        }
    }

    #[test]
    fn periods_per_year_from_intervals() {
        approx(Calendar::Continuous.periods_per_year(3_600.0), 8_766.0);
        approx(Calendar::Continuous.periods_per_year(60.0), 525_960.0);
        approx(Calendar::EXCHANGE.periods_per_year(86_400.0), 252.0);
        approx(Calendar::EXCHANGE.periods_per_year(60.0), 252.0 * 390.0);
        approx(
            Calendar::EXCHANGE.periods_per_year(7.0 * 86_400.0),
            365.25 / 7.0,
        );
        let a = Annualisation::derived(3_600_000_000_000, Calendar::Continuous);
        assert!(a.to_string().contains("8766.00 periods per year"), "{a}");
        assert!(a.source.contains("1 h"), "{}", a.source);
    }
}
