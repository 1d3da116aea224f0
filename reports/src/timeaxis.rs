//! A plotters x axis over Unix seconds (UTC) that ticks at calendar boundaries — years,
//! months, days, hours, minutes — and labels its ticks as dates, for [`XAxis::Time`] charts.
//!
//! plotters' own date axes need its `datetime` feature (and chrono); the civil-date arithmetic
//! here is the few lines of Howard Hinnant's `days_from_civil` / `civil_from_days`.
//!
//! [`XAxis::Time`]: crate::XAxis::Time

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// A tick spacing on the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Seconds(i64),
    Days(i64),
    Months(i64),
}

/// Tick spacings from the finest to the coarsest.
const STEPS: [Step; 22] = [
    Step::Seconds(1),
    Step::Seconds(5),
    Step::Seconds(15),
    Step::Seconds(30),
    Step::Seconds(MINUTE),
    Step::Seconds(5 * MINUTE),
    Step::Seconds(15 * MINUTE),
    Step::Seconds(30 * MINUTE),
    Step::Seconds(HOUR),
    Step::Seconds(3 * HOUR),
    Step::Seconds(6 * HOUR),
    Step::Seconds(12 * HOUR),
    Step::Days(1),
    Step::Days(2),
    Step::Days(7),
    Step::Months(1),
    Step::Months(3),
    Step::Months(6),
    Step::Months(12),
    Step::Months(24),
    Step::Months(60),
    Step::Months(120),
];

impl Step {
    /// The step's length in seconds (a month taken as 30.44 days).
    fn seconds(self) -> f64 {
        match self {
            Step::Seconds(s) => s as f64,
            Step::Days(d) => (d * DAY) as f64,
            Step::Months(m) => m as f64 * 30.436_875 * DAY as f64,
        }
    }

    /// Every tick of this spacing in `[lo, hi]`, in seconds.
    fn ticks(self, lo: f64, hi: f64) -> Vec<f64> {
        let mut out = Vec::new();
        let mut regular = |every: i64, offset: i64| {
            let first = (lo / every as f64).ceil() as i64 * every;
            let mut t = first + (offset - first).rem_euclid(every);
            while (t as f64) <= hi {
                out.push(t as f64);
                t += every;
            }
        };
        match self {
            Step::Seconds(s) => regular(s, 0),
            // Weekly ticks on Mondays: 1970-01-05 was one.
            Step::Days(7) => regular(7 * DAY, 4 * DAY),
            Step::Days(d) => regular(d * DAY, 0),
            Step::Months(m) => {
                let (y, mo, _) = civil_from_days((lo / DAY as f64).floor() as i64);
                // Months counted from year 0, rounded up to a multiple of the step.
                let mut index = (y * 12 + i64::from(mo) - 1).div_euclid(m) * m;
                loop {
                    let t = (days_from_civil(
                        index.div_euclid(12),
                        (index.rem_euclid(12) + 1) as u32,
                        1,
                    ) * DAY) as f64;
                    if t > hi {
                        break;
                    }
                    if t >= lo {
                        out.push(t);
                    }
                    index += m;
                }
            }
        }
        out
    }
}

/// Unix seconds on the x axis, ticked on the calendar.
#[derive(Debug, Clone)]
pub(crate) struct TimeAxis {
    lo: f64,
    hi: f64,
}

impl TimeAxis {
    /// The axis over `[lo, hi]` seconds.
    pub(crate) fn new(lo: f64, hi: f64) -> Self {
        TimeAxis { lo, hi }
    }

    /// The finest spacing that gives at most `max` ticks over the axis.
    fn step(&self, max: usize) -> Step {
        let span = (self.hi - self.lo).max(1.0);
        STEPS
            .iter()
            .copied()
            .find(|s| span / s.seconds() <= max.max(1) as f64)
            .unwrap_or(Step::Months(120))
    }
}

impl Ranged for TimeAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        if self.hi == self.lo {
            return (limit.0 + limit.1) / 2;
        }
        let f = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Labels of dates are wide: never more than 9 on an 860-pixel axis.
        let max = hint.max_num_points().min(9);
        self.step(max).ticks(self.lo, self.hi)
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for TimeAxis {
    fn format_ext(&self, value: &f64) -> String {
        let t = value.round() as i64;
        let days = t.div_euclid(DAY);
        let (y, m, d) = civil_from_days(days);
        let secs = t.rem_euclid(DAY);
        let (hh, mm) = (secs / HOUR, secs % HOUR / MINUTE);
        match self.step(9) {
            Step::Months(12..) => format!("{y}"),
            Step::Months(_) => format!("{y}-{m:02}"),
            Step::Days(_) => format!("{y}-{m:02}-{d:02}"),
            Step::Seconds(s) if s >= MINUTE => format!("{m:02}-{d:02} {hh:02}:{mm:02}"),
            Step::Seconds(_) => format!("{hh:02}:{mm:02}:{:02}", secs % MINUTE),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (year, month 1–12, day 1–31) of days since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_match_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn ticks_fall_on_calendar_boundaries_and_read_as_dates() {
        let day = |y, m, d| (days_from_civil(y, m, d) * DAY) as f64;
        // Ten years: yearly ticks on 1 January, labelled with the year.
        let axis = TimeAxis::new(day(2004, 8, 19), day(2013, 3, 1));
        let ticks = axis.key_points(10usize);
        assert_eq!(ticks.first(), Some(&day(2005, 1, 1)));
        assert_eq!(ticks.len(), 9, "{ticks:?}");
        assert_eq!(axis.format_ext(&ticks[0]), "2005");
        // Two years and a bit: half-years, labelled year-month.
        let axis = TimeAxis::new(day(2024, 1, 1), day(2026, 4, 15));
        let ticks = axis.key_points(10usize);
        assert_eq!(ticks[..2], [day(2024, 1, 1), day(2024, 7, 1)]);
        assert_eq!(axis.format_ext(&ticks[1]), "2024-07");
        // Three weeks: weekly ticks on Mondays, labelled with the day.
        let axis = TimeAxis::new(day(2024, 1, 3), day(2024, 1, 24));
        let ticks = axis.key_points(9usize);
        assert_eq!(ticks, [day(2024, 1, 8), day(2024, 1, 15), day(2024, 1, 22)]);
        assert!(ticks.iter().all(|t| axis.format_ext(t).len() == 10));
        // A day of minute bars: hours.
        let axis = TimeAxis::new(day(2024, 1, 2), day(2024, 1, 2) + 86_399.0);
        let ticks = axis.key_points(9usize);
        assert_eq!(ticks[1] - ticks[0], (3 * HOUR) as f64);
        assert_eq!(axis.format_ext(&ticks[1]), "01-02 03:00");
    }
}
