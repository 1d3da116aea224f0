//! SLA gates: a measurement against the ceilings and floors of the settings.
//!
//! Every gate says measured versus threshold in its message, on a pass too
//! (`p99 1.84 ms > ceiling 1.00 ms`), so a JUnit reader sees both. A measurement the
//! validity guard rejected makes every gate read from it invalid, never passed.

use std::time::Duration;

use gauntlet_harness::gate::{Bound, measured_vs};
use gauntlet_harness::suite::PlannedCase;

use crate::histogram::Latencies;
use crate::recorder::Counters;
use crate::settings::LoadSettings;

/// What the gates judge: one run, or shards merged.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The scheduled rate over the measured window, req/s (all shards).
    pub target_rate: f64,
    /// The measured window.
    pub measured: Duration,
    /// Counters of the measured window.
    pub counters: Counters,
    /// Latencies of successful measured requests, µs.
    pub latencies: Latencies,
    /// Why the measurement cannot be trusted, if it cannot.
    pub invalid: Option<String>,
    /// When other processes kept the host busier than the tolerance: why (a gate that
    /// fails on such a run is invalid, blamed on the host).
    pub host_busy: Option<String>,
    /// Largest stall of the generator's process, µs: a latency ceiling shorter than it,
    /// violated, is the host's stall, not the target's latency.
    pub stall_max_us: u64,
}

impl Measurement {
    /// Successful responses per second over the measured window.
    pub fn achieved_rate(&self) -> f64 {
        crate::driver::per_second(self.counters.ok, self.measured)
    }

    /// The verdict of a gate that `pass`ed or not on this measurement: invalid when the
    /// measurement is; a failure on a host that other processes kept busy, or (for a
    /// latency ceiling, `ceiling_us`) across a stall of the host at least that long, is
    /// invalid naming the host — never the target's failure.
    pub fn verdict(&self, pass: bool, ceiling_us: Option<u64>) -> Verdict {
        match Verdict::judged(pass, self.invalid.as_deref()) {
            Verdict::Fail => {
                if let Some(host) = &self.host_busy {
                    Verdict::Invalid(format!(
                        "{host}: a gate that fails on a busy host measures the host, not the target"
                    ))
                } else if let Some(ceiling) = ceiling_us.filter(|c| self.stall_max_us >= *c) {
                    Verdict::Invalid(format!(
                        "host {} stalled the generator for {}, longer than the ceiling {}: \
                         the host's latency, not the target's",
                        crate::validity::hostname(),
                        ms(self.stall_max_us),
                        ms(ceiling)
                    ))
                } else {
                    Verdict::Fail
                }
            }
            other => other,
        }
    }

    /// Failed requests (errors and drops) over scheduled requests; 0 with none scheduled.
    pub fn error_rate(&self) -> f64 {
        let scheduled = self
            .counters
            .scheduled
            .max(self.counters.ok + self.counters.failed());
        if scheduled == 0 {
            0.0
        } else {
            self.counters.failed() as f64 / scheduled as f64
        }
    }
}

pub use gauntlet_harness::gate::{GateResult, Verdict};

/// Formats µs as milliseconds with two decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

fn dur_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The latency gates of a scenario, in report order: `(suffix, quantile, label)`.
const LATENCY_GATES: [(&str, f64, &str); 4] = [
    ("p50", 0.5, "p50"),
    ("p95", 0.95, "p95"),
    ("p99", 0.99, "p99"),
    ("p999", 0.999, "p99.9"),
];

fn ceiling(settings: &LoadSettings, suffix: &str) -> Duration {
    match suffix {
        "p50" => settings.p50,
        "p95" => settings.p95,
        "p99" => settings.p99,
        _ => settings.p999,
    }
}

/// The SLA gate cases of a scenario: four latency ceilings, the error rate, the achieved rate.
pub fn sla_cases(scenario: &str) -> Vec<PlannedCase> {
    let mut out: Vec<PlannedCase> = LATENCY_GATES
        .iter()
        .map(|(suffix, _, _)| PlannedCase::new(format!("{scenario}_{suffix}"), &["SLA-LAT"]))
        .collect();
    out.push(PlannedCase::new(
        format!("{scenario}_error_rate"),
        &["SLA-ERR"],
    ));
    out.push(PlannedCase::new(
        format!("{scenario}_achieved_rate"),
        &["SLA-TPUT"],
    ));
    out
}

/// The `{scenario}_error_rate` gate: failed over scheduled requests of the measured window
/// against `max_error_rate`; invalid when the measurement is.
pub fn error_rate_gate(scenario: &str, m: &Measurement, max_error_rate: f64) -> GateResult {
    let rate = m.error_rate();
    let pass = Bound::AtMost.holds(rate, max_error_rate);
    GateResult {
        name: format!("{scenario}_error_rate"),
        verdict: m.verdict(pass, None),
        message: format!(
            "{} ({} failed of {} scheduled: {})",
            measured_vs(
                "error rate",
                format!("{:.4} %", rate * 100.0),
                pass,
                Bound::AtMost,
                format!("{:.4} %", max_error_rate * 100.0)
            ),
            m.counters.failed(),
            m.counters.scheduled,
            error_breakdown(&m.counters)
        ),
    }
}

/// Evaluates the SLA gates of [`sla_cases`] on a measurement.
pub fn sla_gates(scenario: &str, m: &Measurement, settings: &LoadSettings) -> Vec<GateResult> {
    let mut out = Vec::new();
    for (suffix, q, label) in LATENCY_GATES {
        let limit = dur_us(ceiling(settings, suffix));
        let (pass, message) = if m.latencies.is_empty() {
            (
                false,
                format!(
                    "{label}: no successful response to measure (ceiling {})",
                    ms(limit)
                ),
            )
        } else {
            let got = m.latencies.quantile(q);
            let pass = got <= limit;
            (
                pass,
                format!(
                    "{} ({} responses)",
                    measured_vs(label, ms(got), pass, Bound::AtMost, ms(limit)),
                    m.latencies.len()
                ),
            )
        };
        out.push(GateResult {
            name: format!("{scenario}_{suffix}"),
            verdict: m.verdict(pass, Some(limit)),
            message,
        });
    }
    out.push(error_rate_gate(scenario, m, settings.max_error_rate));
    let achieved = m.achieved_rate();
    let floor = m.target_rate * settings.min_achieved_rate;
    let pass = Bound::AtLeast.holds(achieved, floor);
    out.push(GateResult {
        name: format!("{scenario}_achieved_rate"),
        verdict: m.verdict(pass, None),
        message: format!(
            "{} ({:.0} % of scheduled {:.0} req/s)",
            measured_vs(
                "achieved",
                format!("{achieved:.0} req/s"),
                pass,
                Bound::AtLeast,
                format!("{floor:.0} req/s")
            ),
            settings.min_achieved_rate * 100.0,
            m.target_rate
        ),
    });
    out
}

/// `connect 0, timeout 2, 4xx 0, …, dropped 1`, only the non-zero classes (or `none`).
pub fn error_breakdown(c: &Counters) -> String {
    let mut parts: Vec<String> = c
        .errors
        .by_class()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if c.dropped > 0 {
        parts.push(format!("dropped {}", c.dropped));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The first SLA gate of `gates` that did not pass, as `(name, message)`.
pub fn first_broken(gates: &[GateResult]) -> Option<&GateResult> {
    gates.iter().find(|g| g.verdict != Verdict::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(values: &[u64], ok: u64, failed: u64, scheduled: u64) -> Measurement {
        let mut latencies = Latencies::new();
        for v in values {
            latencies.record(*v);
        }
        let mut counters = Counters {
            scheduled,
            ok,
            ..Counters::default()
        };
        counters.errors.status_5xx = failed;
        Measurement {
            target_rate: scheduled as f64 / 10.0,
            measured: Duration::from_secs(10),
            counters,
            latencies,
            invalid: None,
            host_busy: None,
            stall_max_us: 0,
        }
    }

    fn settings() -> LoadSettings {
        LoadSettings {
            p50: Duration::from_millis(1),
            p95: Duration::from_millis(2),
            p99: Duration::from_millis(3),
            p999: Duration::from_millis(10),
            max_error_rate: 0.001,
            min_achieved_rate: 0.99,
            ..LoadSettings::default()
        }
    }

    #[test]
    fn each_gate_says_measured_versus_threshold_on_pass_and_fail() {
        // 990 fast values and 10 slow ones: p99 lands on the slow tail.
        let mut values = vec![500; 990];
        values.extend([5_000; 10]);
        let m = measurement(&values, 1000, 0, 1000);
        let gates = sla_gates("sustained", &m, &settings());
        let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
        let planned: Vec<String> = sla_cases("sustained").into_iter().map(|p| p.name).collect();
        assert_eq!(names, planned);
        assert_eq!(gates[0].verdict, Verdict::Pass);
        assert_eq!(
            gates[0].message,
            "p50 0.50 ms <= ceiling 1.00 ms (1000 responses)"
        );
        assert_eq!(gates[2].verdict, Verdict::Pass, "{}", gates[2].message);
        assert_eq!(gates[3].verdict, Verdict::Pass);
        let mut values = vec![500; 980];
        values.extend([5_000; 20]);
        let m = measurement(&values, 1000, 0, 1000);
        let gates = sla_gates("sustained", &m, &settings());
        assert_eq!(gates[2].verdict, Verdict::Fail);
        assert_eq!(
            gates[2].message,
            "p99 5.00 ms > ceiling 3.00 ms (1000 responses)"
        );
        assert_eq!(gates[4].verdict, Verdict::Pass);
        assert_eq!(gates[5].verdict, Verdict::Pass);
    }

    #[test]
    fn errors_and_shortfall_fail_their_gates() {
        let m = measurement(&[100; 950], 950, 50, 1000);
        let gates = sla_gates("s", &m, &settings());
        assert_eq!(gates[4].verdict, Verdict::Fail);
        assert!(
            gates[4]
                .message
                .starts_with("error rate 5.0000 % > ceiling 0.1000 %"),
            "{}",
            gates[4].message
        );
        assert!(gates[4].message.contains("5xx 50"), "{}", gates[4].message);
        assert_eq!(gates[5].verdict, Verdict::Fail);
        assert_eq!(
            gates[5].message,
            "achieved 95 req/s < floor 99 req/s (99 % of scheduled 100 req/s)"
        );
    }

    #[test]
    fn an_invalid_measurement_is_never_a_pass() {
        let mut m = measurement(&[100; 1000], 1000, 0, 1000);
        m.invalid = Some("generator saturated".into());
        for g in sla_gates("s", &m, &settings()) {
            assert_eq!(g.verdict, Verdict::Invalid("generator saturated".into()));
            assert!(g.message.contains("ceiling") || g.message.contains("floor"));
        }
    }

    #[test]
    fn a_failure_on_a_busy_or_stalled_host_is_invalid_naming_the_host() {
        let mut values = vec![500; 980];
        values.extend([5_000; 20]);
        let mut m = measurement(&values, 1000, 0, 1000);
        m.host_busy = Some("host ci-7 busy: other processes used 77 % of its CPU".into());
        let gates = sla_gates("s", &m, &settings());
        assert_eq!(gates[0].verdict, Verdict::Pass, "a pass stays a pass");
        let Verdict::Invalid(why) = &gates[2].verdict else {
            panic!("{:?}", gates[2].verdict)
        };
        assert!(why.starts_with("host ci-7 busy"), "{why}");
        assert!(gates[2].message.contains("p99 5.00 ms > ceiling 3.00 ms"));
        // A quiet host, but the process stood still 4 ms: longer than the 3 ms ceiling.
        m.host_busy = None;
        m.stall_max_us = 4_000;
        let gates = sla_gates("s", &m, &settings());
        let Verdict::Invalid(why) = &gates[2].verdict else {
            panic!("{:?}", gates[2].verdict)
        };
        assert!(why.contains("stalled the generator for 4.00 ms"), "{why}");
        // A stall shorter than the ceiling explains nothing: the failure is the target's.
        m.stall_max_us = 2_000;
        assert_eq!(sla_gates("s", &m, &settings())[2].verdict, Verdict::Fail);
    }

    #[test]
    fn no_response_fails_the_latency_gates() {
        let m = measurement(&[], 0, 10, 10);
        let gates = sla_gates("s", &m, &settings());
        assert_eq!(gates[2].verdict, Verdict::Fail);
        assert!(gates[2].message.contains("no successful response"));
    }
}
