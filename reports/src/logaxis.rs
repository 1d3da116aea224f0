//! A plotters log axis labelled at 1-2-5 steps (…, 0.5, 1, 2, 5, 10, 20, …), for charts with
//! `log_x`/`log_y`.
//!
//! plotters' own log axis labels powers of ten only, so a latency chart spanning 0.3–4 ms had
//! one label, and one inside a decade (3–8 ms) had none. Here the axis is widened to the 1-2-5
//! values around the data, labelled at those steps; a span of many decades falls back to the
//! powers of ten, a narrow one to every integer mantissa (2, 3, 4, 5), so an axis always has
//! between 3 and 12 labels when its span allows.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};

/// Most labels on a log axis before the 1-2-5 steps give way to powers of ten.
const MAX_LABELS: usize = 12;
/// Fewest labels before the steps grow to every integer mantissa.
const MIN_LABELS: usize = 3;
/// Relative slack when comparing tick values with the range ends.
const EPS: f64 = 1e-9;

/// `m × 10^k`, computed so that 0.3 reads back as 0.3 (a division by a power of ten, not a
/// multiplication by 0.1 repeated).
fn value(m: f64, k: i32) -> f64 {
    if k >= 0 {
        m * 10f64.powi(k)
    } else {
        m / 10f64.powi(-k)
    }
}

/// Every `m × 10^k` for `m` in `mantissas` within `[lo, hi]`, in order.
fn steps_within(lo: f64, hi: f64, mantissas: &[f64]) -> Vec<f64> {
    let (k0, k1) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
    let mut out = Vec::new();
    for k in k0..=k1 {
        for &m in mantissas {
            let v = value(m, k);
            if v >= lo * (1.0 - EPS) && v <= hi * (1.0 + EPS) {
                out.push(v);
            }
        }
    }
    out
}

/// The largest 1-2-5 value at or below `x` (`x > 0`).
fn floor_125(x: f64) -> f64 {
    let k = x.log10().floor() as i32;
    [5.0, 2.0, 1.0]
        .iter()
        .map(|m| value(*m, k))
        .find(|v| *v <= x * (1.0 + EPS))
        .unwrap_or_else(|| value(5.0, k - 1))
}

/// The smallest 1-2-5 value at or above `x` (`x > 0`).
fn ceil_125(x: f64) -> f64 {
    let k = x.log10().floor() as i32;
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| value(*m, k))
        .find(|v| *v >= x * (1.0 - EPS))
        .unwrap_or_else(|| value(1.0, k + 1))
}

/// A log axis over positive values with its labelled (major) and unlabelled (minor) ticks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogAxis {
    lo: f64,
    hi: f64,
    major: Vec<f64>,
    minor: Vec<f64>,
}

impl LogAxis {
    /// The axis over data from `lo` to `hi` (both > 0, `lo <= hi`), widened to the 1-2-5
    /// values around them.
    pub(crate) fn new(lo: f64, hi: f64) -> Self {
        let mut lo = floor_125(lo);
        let mut hi = ceil_125(hi.max(lo));
        if hi <= lo * (1.0 + EPS) {
            hi = ceil_125(lo * (1.0 + 1e-6));
        }
        let mut major = steps_within(lo, hi, &[1.0, 2.0, 5.0]);
        if major.len() > MAX_LABELS {
            // Many decades: label the powers of ten, every n-th when still too many.
            lo = value(1.0, lo.log10().floor() as i32);
            hi = value(1.0, hi.log10().ceil() as i32);
            let powers = steps_within(lo, hi, &[1.0]);
            let every = powers.len().div_ceil(MAX_LABELS).max(1);
            major = powers.into_iter().step_by(every).collect();
        } else if major.len() < MIN_LABELS {
            major = steps_within(lo, hi, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        }
        let minor = steps_within(lo, hi, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
            .into_iter()
            .filter(|v| !major.iter().any(|m| (m - v).abs() <= v * EPS))
            .collect();
        LogAxis {
            lo,
            hi,
            major,
            minor,
        }
    }

    /// The labelled ticks, in order.
    #[cfg(test)]
    pub(crate) fn major(&self) -> &[f64] {
        &self.major
    }
}

/// A tick label: at most three significant digits, no trailing zeros, `k`/`M` past 10,000.
pub(crate) fn label(v: f64) -> String {
    let plain = |x: f64| {
        let s = format!("{:.3}", x);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() {
            "0".to_owned()
        } else {
            s.to_owned()
        }
    };
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 1e6 {
        format!("{}M", plain(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", plain(v / 1e3))
    } else if a >= 1e-3 {
        // Three significant digits below 1 (0.005, 0.02), three decimals above.
        let digits = if a >= 1.0 {
            3
        } else {
            (2 - a.log10().floor() as i32).clamp(3, 6) as usize
        };
        let s = format!("{:.*}", digits, v);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_owned()
    } else {
        format!("{v:.0e}")
    }
}

impl Ranged for LogAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (l, h) = (self.lo.ln(), self.hi.ln());
        if h <= l || *value <= 0.0 {
            return limit.0;
        }
        let f = (value.ln() - l) / (h - l);
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for LogAxis {
    fn format_ext(&self, value: &f64) -> String {
        label(*value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mantissa of a positive value: `0.2` → 2, `5000` → 5.
    fn mantissa(v: f64) -> f64 {
        let m = v / 10f64.powf(v.log10().floor());
        (m * 1e6).round() / 1e6
    }

    #[test]
    fn log_ticks_fall_on_1_2_5_steps_over_a_few_decades() {
        // Latency of a quiet run: 0.3 ms to 40 ms.
        let axis = LogAxis::new(0.3, 40.0);
        assert_eq!(axis.major(), [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(
            axis.range(),
            0.2..50.0,
            "widened to the steps around the data"
        );
        assert!(
            axis.major()
                .iter()
                .all(|v| [1.0, 2.0, 5.0].contains(&mantissa(*v)))
        );
        // Microsecond-scale to a few ms.
        let axis = LogAxis::new(0.012, 3.0);
        assert_eq!(
            axis.major(),
            [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
        );
        // Requests per second, 800 to 12,000.
        let axis = LogAxis::new(800.0, 12_000.0);
        assert_eq!(
            axis.major(),
            [500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0]
        );
        let labels: Vec<String> = axis.major().iter().map(|v| label(*v)).collect();
        assert_eq!(labels, ["500", "1000", "2000", "5000", "10k", "20k"]);
    }

    #[test]
    fn many_decades_label_powers_of_ten_and_narrow_spans_every_mantissa() {
        // Eight decades: 1-2-5 would give 25 labels.
        let axis = LogAxis::new(0.01, 900_000.0);
        assert_eq!(
            axis.major(),
            [
                0.01,
                0.1,
                1.0,
                10.0,
                100.0,
                1_000.0,
                10_000.0,
                100_000.0,
                1_000_000.0
            ]
        );
        // Inside one step (3.1 to 4.4 ms): powers of ten alone would label nothing.
        let axis = LogAxis::new(3.1, 4.4);
        assert_eq!(axis.major(), [2.0, 3.0, 4.0, 5.0]);
        // One value only: still an axis with labels around it.
        let axis = LogAxis::new(7.0, 7.0);
        assert!(axis.major().len() >= 2, "{:?}", axis.major());
        assert!(axis.range().start <= 7.0 && axis.range().end >= 7.0);
        // Minor ticks never repeat a major one.
        let axis = LogAxis::new(0.3, 40.0);
        let minor = axis.key_points(plotters::coord::ranged1d::LightPoints::new(100, 100));
        assert!(minor.contains(&3.0) && !minor.contains(&2.0), "{minor:?}");
    }

    #[test]
    fn labels_are_short_and_exact() {
        assert_eq!(label(0.2), "0.2");
        assert_eq!(label(0.05), "0.05");
        assert_eq!(label(0.005), "0.005");
        assert_eq!(label(1.0), "1");
        assert_eq!(label(2.5), "2.5");
        assert_eq!(label(50.0), "50");
        assert_eq!(label(20_000.0), "20k");
        assert_eq!(label(2_000_000.0), "2M");
    }
}
