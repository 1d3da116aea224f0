//! The OHLCV rules checked on every row, and the gap scan.

use std::ops::Range;

use super::{Bars, ColumnNames, DataError, RowRef};

/// Intervals between bars well above the usual one: reported, not rejected (markets close).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gaps {
    /// The median interval between consecutive bars, in nanoseconds (0 with under 2 bars).
    pub median_interval_ns: i64,
    /// Intervals longer than twice the median.
    pub count: usize,
    /// The longest interval: the 1-based row of the bar after it, and its length in ns.
    pub largest: Option<(usize, i64)>,
}

impl Gaps {
    /// The gaps of validated timestamps known to be evenly spaced (every interval equal to
    /// the first): none, and the median is that interval.
    pub(super) fn evenly_spaced(ts_ns: &[i64]) -> Gaps {
        match ts_ns {
            [first, second, ..] => Gaps {
                median_interval_ns: second - first,
                count: 0,
                largest: None,
            },
            _ => Gaps::default(),
        }
    }

    /// Gaps of validated (strictly increasing) timestamps.
    pub fn of(ts_ns: &[i64]) -> Gaps {
        if ts_ns.len() < 2 {
            return Gaps::default();
        }
        // Evenly spaced bars (the usual case): the median is the one interval, no gap exists.
        let first = ts_ns[1] - ts_ns[0];
        if first > 0
            && ts_ns
                .windows(2)
                .fold(true, |ok, w| ok & (w[1] - w[0] == first))
        {
            return Gaps {
                median_interval_ns: first,
                count: 0,
                largest: None,
            };
        }
        let mut intervals: Vec<i64> = ts_ns.windows(2).map(|w| w[1] - w[0]).collect();
        let median = median_i64(&mut intervals);
        // `intervals` is reordered now: count from the timestamps again.
        let mut count = 0;
        let mut largest: Option<(usize, i64)> = None;
        for (i, w) in ts_ns.windows(2).enumerate() {
            let d = w[1] - w[0];
            if d > 2 * median {
                count += 1;
                if largest.is_none_or(|(_, l)| d > l) {
                    largest = Some((i + 2, d));
                }
            }
        }
        Gaps {
            median_interval_ns: median,
            count,
            largest,
        }
    }
}

fn median_i64(values: &mut [i64]) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable(mid);
    *m
}

/// Checks the OHLCV rules on every row: timestamps strictly increasing, prices positive and
/// finite, `high ≥ max(open, close)`, `low ≤ min(open, close)`, volume finite and ≥ 0.
///
/// # Errors
///
/// The first broken rule, naming the row (through `at`) and the column.
pub fn validate(
    bars: &Bars,
    names: &ColumnNames,
    at: &impl Fn(usize) -> RowRef,
) -> Result<(), DataError> {
    if scan_rows(bars).valid {
        return Ok(());
    }
    // Some row breaks a rule: find the first, naming it, with the row-by-row checks below.
    let invalid = |i: usize, column: &str, value: f64, rule: String| DataError::Invalid {
        at: at(i),
        column: column.to_owned(),
        value,
        rule,
    };
    for i in 0..bars.len() {
        if i > 0 && bars.ts_ns[i] <= bars.ts_ns[i - 1] {
            return Err(DataError::Order {
                at: at(i),
                column: names.timestamp.clone(),
                value: iso(bars.ts_ns[i]),
                previous: iso(bars.ts_ns[i - 1]),
                what: if bars.ts_ns[i] == bars.ts_ns[i - 1] {
                    "a duplicate of"
                } else {
                    "before"
                },
            });
        }
        let (o, h, l, c, v) = (
            bars.open[i],
            bars.high[i],
            bars.low[i],
            bars.close[i],
            bars.volume[i],
        );
        for (name, value) in [
            (&names.open, o),
            (&names.high, h),
            (&names.low, l),
            (&names.close, c),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(invalid(
                    i,
                    name,
                    value,
                    "must be positive and finite".into(),
                ));
            }
        }
        if h < o.max(c) {
            return Err(invalid(
                i,
                &names.high,
                h,
                format!("is below max(open, close) = {}", o.max(c)),
            ));
        }
        if l > o.min(c) {
            return Err(invalid(
                i,
                &names.low,
                l,
                format!("is above min(open, close) = {}", o.min(c)),
            ));
        }
        if !(v.is_finite() && v >= 0.0) {
            return Err(invalid(
                i,
                &names.volume,
                v,
                "must be finite and ≥ 0".into(),
            ));
        }
    }
    Ok(())
}

/// What one pass over the rows found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowScan {
    /// Every row passes [`validate`]'s rules.
    pub(super) valid: bool,
    /// Every interval between consecutive timestamps equals the first.
    pub(super) even: bool,
}

impl RowScan {
    /// Nothing broken yet.
    pub(super) const CLEAN: RowScan = RowScan {
        valid: true,
        even: true,
    };

    /// Both scans' findings: of two consecutive runs of rows, the whole run's.
    pub(super) fn and(self, other: RowScan) -> RowScan {
        RowScan {
            valid: self.valid & other.valid,
            even: self.even & other.even,
        }
    }
}

/// Whether every row passes [`validate`]'s rules, and whether the bars are evenly spaced (what
/// the gap scan would otherwise take a pass of its own for): one branch-free pass over the six
/// columns, so the compiler can vectorise it. Together the conditions are the exact negation
/// of the error tests in [`validate`] (NaN fails them all), which looks for the failing row
/// only when this says one exists.
pub(super) fn scan_rows(bars: &Bars) -> RowScan {
    let n = bars.len();
    let columns = RawColumns {
        ts: &bars.ts_ns[..n],
        open: &bars.open[..n],
        high: &bars.high[..n],
        low: &bars.low[..n],
        close: &bars.close[..n],
        volume: &bars.volume[..n],
    };
    let step = first_step(columns.ts);
    columns.scan(0..n, step)
}

/// [`RawColumns::scan_block`]'s rules on the timestamps alone: every one above `previous`
/// (the row before the first), and whether every interval equals `step`.
pub(super) fn scan_timestamps(ts: &[i64], mut previous: i64, step: i64) -> RowScan {
    let (mut ok, mut even) = (true, true);
    for &t in ts {
        ok &= t > previous;
        even &= t.wrapping_sub(previous) == step;
        previous = t;
    }
    RowScan { valid: ok, even }
}

/// [`RawColumns::scan_block`]'s rule on one price column: every value positive and finite.
pub(super) fn all_positive(prices: &[f64]) -> bool {
    prices
        .iter()
        .fold(true, |ok, &x| ok & (x > 0.0) & (x < f64::INFINITY))
}

/// [`RawColumns::scan_block`]'s rule on the volumes: every value finite and ≥ 0.
pub(super) fn all_volumes(volume: &[f64]) -> bool {
    volume
        .iter()
        .fold(true, |ok, &v| ok & (0.0..f64::INFINITY).contains(&v))
}

/// [`RawColumns::scan_block`]'s rules across columns, `high ≥ max(open, close)` and
/// `low ≤ min(open, close)`, exactly so where every price is positive (not NaN), with the
/// rows cut into `parts` consecutive runs checked on as many threads (the calling thread one
/// of them). Together with [`scan_timestamps`], [`all_positive`] and [`all_volumes`] on each
/// column this is [`scan_rows`] (`even` is only read when every row is valid).
pub(super) fn all_ordered(bars: &Bars, parts: usize) -> bool {
    let n = bars.len();
    let (o, h, l, c) = (
        &bars.open[..n],
        &bars.high[..n],
        &bars.low[..n],
        &bars.close[..n],
    );
    let run = move |rows: Range<usize>| {
        let mut ok = true;
        let mut start = rows.start;
        while start < rows.end && ok {
            let end = (start + VALIDATE_CHUNK).min(rows.end);
            let (o, h, l, c) = (
                &o[start..end],
                &h[start..end],
                &l[start..end],
                &c[start..end],
            );
            for i in 0..o.len() {
                ok &= (h[i] >= o[i]) & (h[i] >= c[i]) & (l[i] <= o[i]) & (l[i] <= c[i]);
            }
            start = end;
        }
        ok
    };
    let parts = parts.clamp(1, n.div_ceil(VALIDATE_CHUNK).max(1));
    if parts == 1 {
        return run(0..n);
    }
    let bounds: Vec<usize> = (0..=parts).map(|k| k * n / parts).collect();
    std::thread::scope(|scope| {
        let others: Vec<_> = bounds[1..]
            .windows(2)
            .map(|w| {
                let (start, end) = (w[0], w[1]);
                // A thread that cannot be spawned leaves its rows to this one.
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || run(start..end))
                    .map_err(|_| start..end)
            })
            .collect();
        let mine = run(bounds[0]..bounds[1]);
        // A check thread cannot panic (indexing in bounds, no allocation); were it to, its
        // rows count as broken, and the row-by-row checks then look at every row.
        others.into_iter().fold(mine, |ok, other| {
            ok & match other {
                Ok(thread) => thread.join().unwrap_or(false),
                Err(rows) => run(rows),
            }
        })
    })
}

/// Rows checked at a time: small enough that a chunk of six columns stays in cache.
pub(super) const VALIDATE_CHUNK: usize = 4_096;

/// Six equally long columns, borrowed.
#[derive(Clone, Copy)]
pub(super) struct RawColumns<'a> {
    pub(super) ts: &'a [i64],
    pub(super) open: &'a [f64],
    pub(super) high: &'a [f64],
    pub(super) low: &'a [f64],
    pub(super) close: &'a [f64],
    pub(super) volume: &'a [f64],
}

impl RawColumns<'_> {
    /// [`scan_rows`] over `rows` (in bounds), chunk by chunk, stopping at the first chunk
    /// with a broken rule; `step` is the first interval.
    fn scan(&self, rows: Range<usize>, step: i64) -> RowScan {
        let mut found = RowScan::CLEAN;
        let mut start = rows.start;
        while start < rows.end {
            let end = (start + VALIDATE_CHUNK).min(rows.end);
            found = found.and(self.scan_chunk(start..end, step));
            if !found.valid {
                break;
            }
            start = end;
        }
        found
    }

    /// One chunk of [`RawColumns::scan`]; timestamps are compared from `rows.start`'s
    /// predecessor on.
    fn scan_chunk(&self, rows: Range<usize>, step: i64) -> RowScan {
        let (start, end) = (rows.start, rows.end);
        // Row 0 has no predecessor: compare it with its own value minus the first interval,
        // which passes both tests (unless it wraps below i64::MIN: then the order test
        // fails, and the row-by-row checks find no error and the gap scan runs in full).
        let previous = if start == 0 {
            first_predecessor(self.ts, step)
        } else {
            self.ts[start - 1]
        };
        RawColumns {
            ts: &self.ts[start..end],
            open: &self.open[start..end],
            high: &self.high[start..end],
            low: &self.low[start..end],
            close: &self.close[start..end],
            volume: &self.volume[start..end],
        }
        .scan_block(previous, step)
    }

    /// Every row of these columns, which must be equally long, `previous` the timestamp of
    /// the row before the first.
    pub(super) fn scan_block(&self, mut previous: i64, step: i64) -> RowScan {
        let n = self.ts.len();
        let (ts, o, h, l, c, v) = (
            &self.ts[..n],
            &self.open[..n],
            &self.high[..n],
            &self.low[..n],
            &self.close[..n],
            &self.volume[..n],
        );
        let positive = |x: f64| (x > 0.0) & (x < f64::INFINITY);
        let (mut ok, mut even) = (true, true);
        for i in 0..n {
            let (oi, hi, li, ci, vi) = (o[i], h[i], l[i], c[i], v[i]);
            ok &= positive(oi) & positive(hi) & positive(li) & positive(ci);
            // Non-NaN once the prices are positive, so these comparisons say exactly
            // `high ≥ max(open, close)` and `low ≤ min(open, close)`.
            ok &= (hi >= oi) & (hi >= ci) & (li <= oi) & (li <= ci);
            ok &= (0.0..f64::INFINITY).contains(&vi);
            ok &= ts[i] > previous;
            even &= ts[i].wrapping_sub(previous) == step;
            previous = ts[i];
        }
        RowScan { valid: ok, even }
    }
}

/// What row 0's timestamp is compared with: see [`RawColumns::scan_chunk`].
pub(super) fn first_predecessor(ts: &[i64], step: i64) -> i64 {
    ts.first().map_or(0, |t| t.wrapping_sub(step))
}

/// The first interval of the timestamps (0 with fewer than two).
pub(super) fn first_step(ts: &[i64]) -> i64 {
    match ts {
        [first, second, ..] => second.wrapping_sub(*first),
        _ => 0,
    }
}

/// [`validate`] for bars that did not come from a file (rows numbered from 1, no lines).
///
/// # Errors
///
/// As [`validate`].
pub fn validate_bars(bars: &Bars) -> Result<(), DataError> {
    validate(bars, &ColumnNames::default(), &|i| RowRef {
        row: i + 1,
        line: None,
    })
}

/// Nanoseconds in a day.
const DAY_NS: i64 = 86_400_000_000_000;

/// The longest interval between bars in trading time: weekend days left out when the
/// calendar has none, and `overnight_ns` left out per weekday boundary crossed (the hours
/// an exchange is shut between sessions). Returns the index of the bar after it and the
/// trading time.
pub fn longest_trading_gap(
    ts_ns: &[i64],
    skip_weekends: bool,
    overnight_ns: i64,
) -> Option<(usize, i64)> {
    let weekend = |day: i64| matches!((day + 4).rem_euclid(7), 0 | 6);
    let mut longest: Option<(usize, i64)> = None;
    for (i, w) in ts_ns.windows(2).enumerate() {
        let mut gap = w[1] - w[0];
        let (d0, d1) = (w[0].div_euclid(DAY_NS), w[1].div_euclid(DAY_NS));
        if d1 > d0 && (skip_weekends || overnight_ns > 0) {
            // Whole days between: a long gap needs no exact count beyond a few weeks.
            let days = (d1 - d0).min(10_000);
            let weekend_days = if skip_weekends {
                (d0 + 1..d0 + days).filter(|d| weekend(*d)).count() as i64
            } else {
                0
            };
            gap -= weekend_days * DAY_NS;
            gap -= (days - weekend_days) * overnight_ns;
        }
        if longest.is_none_or(|(_, l)| gap > l) {
            longest = Some((i + 1, gap));
        }
    }
    longest
}

/// RFC 3339 text of a Unix-nanosecond timestamp, for messages.
fn iso(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
