//! The gate vocabulary every measured suite speaks: a [`Verdict`], a [`GateResult`] whose
//! message says measured versus threshold (on a pass too, so a JUnit reader sees both), and
//! the [`RangeError`] a suite's settings check returns.
//!
//! ```
//! use gauntlet_harness::gate::{Bound, Verdict, measured_vs, threshold};
//!
//! let g = threshold("sharpe_min", "annualised Sharpe", Some(0.8), Some(1.0), Bound::AtLeast, "");
//! assert_eq!(g.verdict, Verdict::Fail);
//! assert_eq!(g.message, "annualised Sharpe 0.8000 < floor 1");
//! assert_eq!(
//!     measured_vs("p99", "0.84 ms", true, Bound::AtMost, "1.00 ms"),
//!     "p99 0.84 ms <= ceiling 1.00 ms"
//! );
//! ```

use std::fmt::Display;

use gauntlet_reports::Outcome;

/// A gate's verdict before it becomes a report outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within the threshold.
    Pass,
    /// Outside it.
    Fail,
    /// The measurement cannot be trusted (the reason names why).
    Invalid(String),
    /// Not measurable here, or no threshold set.
    Skip(String),
}

impl Verdict {
    /// Pass or fail, unless the measurement is invalid: then invalid, never a pass.
    pub fn judged(pass: bool, invalid: Option<&str>) -> Verdict {
        match invalid {
            Some(reason) => Verdict::Invalid(reason.to_owned()),
            None if pass => Verdict::Pass,
            None => Verdict::Fail,
        }
    }

    /// The report outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            Verdict::Pass => Outcome::Pass,
            Verdict::Fail => Outcome::Fail,
            Verdict::Invalid(reason) => Outcome::Invalid {
                reason: reason.clone(),
            },
            Verdict::Skip(reason) => Outcome::Skip {
                reason: reason.clone(),
            },
        }
    }
}

/// One gate's result, as it becomes a report case `suite::name`.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    /// Case name (`sustained_p99`).
    pub name: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Measured versus threshold.
    pub message: String,
}

/// Which side of its threshold a measurement must stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A ceiling: measured ≤ threshold.
    AtMost,
    /// A floor: measured ≥ threshold.
    AtLeast,
}

impl Bound {
    /// Whether `measured` is on the right side of `limit` (NaN never is).
    pub fn holds(self, measured: f64, limit: f64) -> bool {
        match self {
            Bound::AtMost => measured <= limit,
            Bound::AtLeast => measured >= limit,
        }
    }
}

/// `{label} {measured} {<=|>|>=|<} {ceiling|floor} {threshold}`: the one wording of a gate
/// message.
pub fn measured_vs(
    label: &str,
    measured: impl Display,
    pass: bool,
    bound: Bound,
    threshold: impl Display,
) -> String {
    let (op, kind) = match (bound, pass) {
        (Bound::AtMost, true) => ("<=", "ceiling"),
        (Bound::AtMost, false) => (">", "ceiling"),
        (Bound::AtLeast, true) => (">=", "floor"),
        (Bound::AtLeast, false) => ("<", "floor"),
    };
    format!("{label} {measured} {op} {kind} {threshold}")
}

/// A gate on a number: skipped when no threshold is set, failed when the figure is
/// undefined on this run (never a made-up 0), else pass or fail with [`measured_vs`]
/// (the figure to 4 decimals, then `unit`).
pub fn threshold(
    name: &str,
    label: &str,
    measured: Option<f64>,
    limit: Option<f64>,
    bound: Bound,
    unit: &str,
) -> GateResult {
    let (verdict, message) = match (limit, measured) {
        (None, _) => (
            Verdict::Skip("no threshold set".to_owned()),
            format!("{label}: no threshold set"),
        ),
        (Some(t), None) => (
            Verdict::Fail,
            format!("{label} is undefined on this run (threshold {t}{unit})"),
        ),
        (Some(t), Some(m)) => {
            let pass = bound.holds(m, t);
            (
                if pass { Verdict::Pass } else { Verdict::Fail },
                measured_vs(
                    label,
                    format!("{m:.4}{unit}"),
                    pass,
                    bound,
                    format!("{t}{unit}"),
                ),
            )
        }
    };
    GateResult {
        name: name.to_owned(),
        verdict,
        message,
    }
}

/// A setting outside its range: `{key} = {value} is out of range: {limit}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value} is out of range: {limit}")]
pub struct RangeError {
    /// The key as written in the config (`knee-step`, `gates.pbo-max`).
    pub key: String,
    /// The value given.
    pub value: String,
    /// The accepted range, in words.
    pub limit: String,
}

impl RangeError {
    /// An error for `key = value`, accepted: `limit`.
    pub fn new(key: impl Into<String>, value: impl Display, limit: impl Into<String>) -> Self {
        RangeError {
            key: key.into(),
            value: value.to_string(),
            limit: limit.into(),
        }
    }
}

/// `Ok` when `ok`, else a [`RangeError`] naming `key`, `value` and `limit`.
///
/// # Errors
///
/// [`RangeError`] when `ok` is false.
pub fn ensure_range(
    key: &str,
    value: impl Display,
    ok: bool,
    limit: impl Into<String>,
) -> Result<(), RangeError> {
    if ok {
        Ok(())
    } else {
        Err(RangeError::new(key, value, limit))
    }
}

/// `Ok` when `lo <= value <= hi`, else a [`RangeError`] with `limit` (e.g. `1 to 256`).
///
/// # Errors
///
/// [`RangeError`] outside the range.
pub fn in_range<T: PartialOrd + Display>(
    key: &str,
    value: T,
    lo: T,
    hi: T,
    limit: impl Into<String>,
) -> Result<(), RangeError> {
    let ok = value >= lo && value <= hi;
    ensure_range(key, value, ok, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_measured_versus_threshold_both_ways() {
        let pass = threshold("x", "hit rate", Some(0.6), Some(0.5), Bound::AtLeast, "");
        assert_eq!(pass.verdict, Verdict::Pass);
        assert_eq!(pass.message, "hit rate 0.6000 >= floor 0.5");
        let fail = threshold("x", "drawdown", Some(0.3), Some(0.25), Bound::AtMost, "");
        assert_eq!(fail.verdict, Verdict::Fail);
        assert_eq!(fail.message, "drawdown 0.3000 > ceiling 0.25");
        let nan = threshold("x", "ratio", Some(f64::NAN), Some(1.0), Bound::AtLeast, "");
        assert_eq!(nan.verdict, Verdict::Fail, "NaN never passes");
        let undefined = threshold("x", "hit rate", None, Some(0.5), Bound::AtLeast, "");
        assert_eq!(undefined.verdict, Verdict::Fail);
        assert!(
            undefined.message.contains("undefined"),
            "{}",
            undefined.message
        );
        let unset = threshold("x", "hit rate", Some(1.0), None, Bound::AtLeast, "");
        assert!(matches!(unset.verdict, Verdict::Skip(_)));
    }

    #[test]
    fn an_invalid_measurement_is_never_judged_a_pass() {
        assert_eq!(Verdict::judged(true, None), Verdict::Pass);
        assert_eq!(Verdict::judged(false, None), Verdict::Fail);
        assert_eq!(
            Verdict::judged(true, Some("host busy")),
            Verdict::Invalid("host busy".into())
        );
    }

    #[test]
    fn range_errors_name_key_value_and_limit() {
        assert!(in_range("threads", 4, 1, 64, "1 to 64").is_ok());
        let e = in_range("threads", 65, 1, 64, "1 to 64").unwrap_err();
        assert_eq!(e.to_string(), "threads = 65 is out of range: 1 to 64");
    }
}
