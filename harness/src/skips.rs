//! The skip budget: a run that skipped most of its cases did not test the target, so past a
//! limit (`max-skipped = 3`, `"10%"`, or `fail-on-skip = true` for none) the skips become a
//! failing gate of their own, `gauntlet::max_skipped`.
//!
//! ```
//! use gauntlet_harness::skips::SkipLimit;
//!
//! let limit: SkipLimit = "10%".parse().unwrap();
//! assert!(limit.allows(3, 30));
//! assert!(!limit.allows(4, 30));
//! assert_eq!("0".parse::<SkipLimit>().unwrap(), SkipLimit::Count(0));
//! assert!("110%".parse::<SkipLimit>().unwrap_err().contains("0 to 100"));
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use gauntlet_reports::{CaseResult, Outcome};

/// The suite name of run-level gates (they belong to no registered suite).
pub const RUN_SUITE: &str = "gauntlet";

/// The requirement the skip budget checks.
pub const REQUIREMENT: &str = "GATE-SKIP";

/// How many cases a run may skip and still pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SkipLimit {
    /// At most this many skipped cases.
    Count(usize),
    /// At most this percentage (0 to 100) of the run's cases skipped.
    Percent(f64),
}

impl SkipLimit {
    /// Whether `skipped` of `total` cases is within the limit.
    pub fn allows(self, skipped: usize, total: usize) -> bool {
        match self {
            SkipLimit::Count(n) => skipped <= n,
            // An empty run skipped nothing; exact in integers: skipped/total <= p/100.
            SkipLimit::Percent(p) => total == 0 || skipped as f64 * 100.0 <= p * total as f64,
        }
    }
}

impl fmt::Display for SkipLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipLimit::Count(n) => write!(f, "{n}"),
            SkipLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for SkipLimit {
    type Err = String;

    /// `N` (a count) or `P%` (a percentage, 0 to 100).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(SkipLimit::Percent(p)),
                _ => Err(format!(
                    "max-skipped = {s:?}: a percentage must be 0 to 100 (e.g. \"10%\")"
                )),
            },
            None => s.parse::<usize>().map(SkipLimit::Count).map_err(|_| {
                format!(
                    "max-skipped = {s:?}: expected a count (e.g. 3) or a percentage (e.g. \"10%\")"
                )
            }),
        }
    }
}

impl<'de> serde::Deserialize<'de> for SkipLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// An integer count, or a `"P%"` / `"N"` string.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SkipLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count (3) or a percentage (\"10%\")")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<SkipLimit, E> {
                usize::try_from(n).map(SkipLimit::Count).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<SkipLimit, E> {
                usize::try_from(n)
                    .map(SkipLimit::Count)
                    .map_err(|_| E::custom(format!("max-skipped = {n}: a count is 0 or more")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<SkipLimit, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A gate of the run as a whole (suite [`RUN_SUITE`]): `gauntlet::{name}`, pass or fail,
/// with `message` saying measured versus limit.
pub(crate) fn run_gate(name: &str, requirement: &str, pass: bool, message: String) -> CaseResult {
    CaseResult {
        id: format!("{RUN_SUITE}::{name}"),
        suite: RUN_SUITE.to_owned(),
        name: name.to_owned(),
        requirements: vec![requirement.to_owned()],
        outcome: if pass { Outcome::Pass } else { Outcome::Fail },
        duration: Duration::ZERO,
        message: Some(message),
        location: None,
    }
}

/// The skip budget judged on `cases` (run-level gates excluded): a passing or failing case
/// `gauntlet::max_skipped` whose message says skipped versus the limit.
pub fn budget(limit: SkipLimit, cases: &[CaseResult]) -> CaseResult {
    let judged = cases.iter().filter(|c| c.suite != RUN_SUITE);
    let (total, skipped) = judged.fold((0, 0), |(t, s), c| {
        (
            t + 1,
            s + usize::from(matches!(c.outcome, Outcome::Skip { .. })),
        )
    });
    let pass = limit.allows(skipped, total);
    let share = if total == 0 {
        String::new()
    } else {
        format!(" ({:.0} %)", skipped as f64 * 100.0 / total as f64)
    };
    let message = format!(
        "{skipped} of {total} cases skipped{share} {} max-skipped {limit}",
        if pass { "<=" } else { ">" }
    );
    run_gate("max_skipped", REQUIREMENT, pass, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: usize, skip: bool) -> CaseResult {
        CaseResult {
            id: format!("s::c{id}"),
            suite: "s".into(),
            name: format!("c{id}"),
            requirements: vec![],
            outcome: if skip {
                Outcome::Skip {
                    reason: "no".into(),
                }
            } else {
                Outcome::Pass
            },
            duration: Duration::ZERO,
            message: None,
            location: None,
        }
    }

    #[test]
    fn three_of_thirty_ran_fails_a_ten_percent_budget_and_says_why() {
        let cases: Vec<_> = (0..30).map(|i| case(i, i >= 3)).collect();
        let gate = budget("10%".parse().unwrap(), &cases);
        assert_eq!(gate.outcome, Outcome::Fail);
        assert_eq!(
            gate.message.as_deref(),
            Some("27 of 30 cases skipped (90 %) > max-skipped 10%")
        );
        let gate = budget(SkipLimit::Count(27), &cases);
        assert_eq!(gate.outcome, Outcome::Pass, "{:?}", gate.message);
        let gate = budget(SkipLimit::Count(26), &cases);
        assert_eq!(gate.outcome, Outcome::Fail);
    }

    #[test]
    fn limits_parse_from_toml_integers_and_strings_and_refuse_nonsense() {
        #[derive(serde::Deserialize)]
        struct T {
            m: SkipLimit,
        }
        let m = |s: &str| toml::from_str::<T>(&format!("m = {s}")).map(|t| t.m);
        assert_eq!(m("3").unwrap(), SkipLimit::Count(3));
        assert_eq!(m("\"3\"").unwrap(), SkipLimit::Count(3));
        assert_eq!(m("\"12.5%\"").unwrap(), SkipLimit::Percent(12.5));
        for bad in ["-1", "\"-5%\"", "\"lots\"", "1.5"] {
            assert!(m(bad).is_err(), "{bad}");
        }
        assert!(SkipLimit::Percent(0.0).allows(0, 0));
        assert!(!SkipLimit::Percent(0.0).allows(1, 100));
    }
}
