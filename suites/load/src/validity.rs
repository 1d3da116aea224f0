//! The validity guard: was the generator able to keep its schedule, and was the host quiet
//! enough for a failed gate to be the target's?
//!
//! From the [`CpuSample`]s of the [`sampler`](crate::sampler): a run whose generator
//! saturated a core, or whose scheduler fell behind beyond the tolerance, measured the
//! generator, not the target: it is reported invalid, never passed. A run during which other
//! processes kept the host busier than the tolerance carries the reason
//! ([`Validity::host_busy_reason`]): a gate that fails on it is invalid, naming the host.

use serde::{Deserialize, Serialize};

use crate::driver::RunStats;
use crate::sampler::CpuSample;

/// When a run counts as measuring the generator rather than the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Busiest generator thread's mean CPU over the measured window at or above this
    /// fraction of a core: saturated.
    pub max_generator_cpu: f64,
    /// Fraction of measured requests the scheduler dispatched late above this: behind.
    pub max_behind_fraction: f64,
    /// Mean CPU of other processes (host busy − generator − the target when local), as a
    /// fraction of the host's cores, above which the host is too busy for a failed gate
    /// to be the target's.
    pub max_other_cpu: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            max_generator_cpu: 0.9,
            max_behind_fraction: 0.01,
            max_other_cpu: 0.25,
        }
    }
}

/// This machine's name, for messages that blame it (`/proc/sys/kernel/hostname`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this host".to_owned())
}

/// The validity figures of a run and, when invalid, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validity {
    /// Mean CPU of the busiest generator thread over the measured window (fraction of a core).
    pub generator_busiest: f64,
    /// Mean CPU of all generator threads (cores).
    pub generator_cpu: f64,
    /// Mean CPU of the target (cores) when it runs in this process or on this host.
    pub target_cpu: Option<f64>,
    /// Mean host busy fraction.
    pub host_busy: f64,
    /// Largest one-minute load average seen.
    pub max_loadavg: f64,
    /// Fraction of measured requests dispatched late by the scheduler.
    pub behind_fraction: f64,
    /// Largest hiccup of the generator's process over the measured window, µs (see the
    /// module docs): a stall every latency measured across it includes.
    #[serde(default)]
    pub hiccup_max_us: u64,
    /// Fraction of the measured window the generator's process stood still in hiccups of at
    /// least [`crate::sampler::STALL_FLOOR_US`].
    #[serde(default)]
    pub stalled_fraction: f64,
    /// Mean CPU of other processes over the measured window, as a fraction of the host's
    /// cores: host busy less the generator and the target (when local).
    #[serde(default)]
    pub other_cpu: f64,
    /// When other processes kept the host busier than the tolerance: the host and the
    /// figures. A gate that fails on such a run is invalid (the host's), not failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_busy_reason: Option<String>,
    /// Why the run is invalid; `None` when valid.
    pub invalid: Option<String>,
}

/// Judges a run against the tolerance, on the cores this process may run on.
pub fn judge(stats: &RunStats, tolerance: Tolerance) -> Validity {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    judge_on(stats, tolerance, cores)
}

/// [`judge`] for a generator allowed `cores` cores (its CPU affinity): besides its busiest
/// thread, all its threads together must stay under the limit of those cores — a driver
/// pinned to one core saturates it with no single thread near a full core.
pub fn judge_on(stats: &RunStats, tolerance: Tolerance, cores: usize) -> Validity {
    let from = stats.warm_up.as_secs();
    let measured: Vec<&CpuSample> = stats
        .cpu
        .iter()
        .filter(|s| u64::from(s.second) > from)
        .collect();
    let mean = |f: &dyn Fn(&CpuSample) -> f64| {
        if measured.is_empty() {
            0.0
        } else {
            measured.iter().map(|s| f(s)).sum::<f64>() / measured.len() as f64
        }
    };
    let generator_busiest = mean(&|s| s.generator_busiest);
    let generator_cpu = mean(&|s| s.generator_cpu);
    let target_cpu = measured
        .first()
        .and_then(|s| s.target_cpu)
        .map(|_| mean(&|s| s.target_cpu.unwrap_or(0.0)));
    let host_busy = mean(&|s| s.host_busy);
    let max_loadavg = stats.cpu.iter().map(|s| s.loadavg).fold(0.0, f64::max);
    let scheduled = stats.counters.scheduled.max(1);
    let behind_fraction = stats.counters.behind as f64 / scheduled as f64;
    let hiccup_max_us = measured.iter().map(|s| s.hiccup_max_us).max().unwrap_or(0);
    let stalled_fraction = if measured.is_empty() {
        0.0
    } else {
        measured.iter().map(|s| s.stalled_us).sum::<u64>() as f64 / (measured.len() as f64 * 1e6)
    };
    let host_cores = cores.max(1) as f64;
    let other_cpu = (host_busy - (generator_cpu + target_cpu.unwrap_or(0.0)) / host_cores).max(0.0);
    let host_busy_reason = (other_cpu > tolerance.max_other_cpu).then(|| {
        format!(
            "host {} busy: other processes used {:.0} % of its CPU (host {:.0} % busy; \
             tolerance {:.0} %)",
            hostname(),
            other_cpu * 100.0,
            host_busy * 100.0,
            tolerance.max_other_cpu * 100.0
        )
    });
    let mut reasons = Vec::new();
    if generator_busiest >= tolerance.max_generator_cpu {
        reasons.push(format!(
            "generator saturated: its busiest thread used {:.0} % of a core (limit {:.0} %)",
            generator_busiest * 100.0,
            tolerance.max_generator_cpu * 100.0
        ));
    }
    let cores = cores.max(1) as f64;
    if generator_cpu >= tolerance.max_generator_cpu * cores {
        reasons.push(format!(
            "generator saturated: its threads together used {generator_cpu:.2} of the {cores:.0} \
             core(s) it may run on (limit {:.0} %)",
            tolerance.max_generator_cpu * 100.0
        ));
    }
    if behind_fraction > tolerance.max_behind_fraction {
        reasons.push(format!(
            "generator fell behind schedule: {:.2} % of requests dispatched late (tolerance {:.2} %)",
            behind_fraction * 100.0,
            tolerance.max_behind_fraction * 100.0
        ));
    }
    Validity {
        generator_busiest,
        generator_cpu,
        target_cpu,
        host_busy,
        max_loadavg,
        behind_fraction,
        hiccup_max_us,
        stalled_fraction,
        other_cpu,
        host_busy_reason,
        invalid: (!reasons.is_empty()).then(|| reasons.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    fn stats(cpu: Vec<CpuSample>, scheduled: u64, behind: u64) -> RunStats {
        RunStats {
            started_at: std::time::SystemTime::UNIX_EPOCH,
            shard: crate::schedule::Shard::WHOLE,
            measured: Duration::from_secs(3),
            warm_up: Duration::from_secs(1),
            target_rate: 100.0,
            counters: crate::recorder::Counters {
                scheduled,
                behind,
                ..Default::default()
            },
            warm_up_counters: Default::default(),
            latencies: Default::default(),
            seconds: Vec::new(),
            cpu,
            max_schedule_lag_us: 0,
            samples: Vec::new(),
            wall: Duration::from_secs(4),
        }
    }

    fn sample(second: u32, busiest: f64) -> CpuSample {
        CpuSample {
            second,
            generator_cpu: busiest,
            generator_busiest: busiest,
            ..CpuSample::default()
        }
    }

    #[test]
    fn saturation_is_judged_on_the_measured_window_only() {
        // A busy warm-up second (1) does not count; seconds 2-4 average 0.5.
        let cpu = vec![
            sample(1, 1.0),
            sample(2, 0.4),
            sample(3, 0.5),
            sample(4, 0.6),
        ];
        let v = judge(&stats(cpu.clone(), 300, 0), Tolerance::default());
        assert!((v.generator_busiest - 0.5).abs() < 1e-9);
        assert_eq!(v.invalid, None);
        let strict = Tolerance {
            max_other_cpu: 1.0,
            max_generator_cpu: 0.5,
            ..Tolerance::default()
        };
        let v = judge(&stats(cpu, 300, 0), strict);
        assert!(
            v.invalid
                .unwrap()
                .starts_with("generator saturated: its busiest thread used 50 %")
        );
    }

    #[test]
    fn threads_that_together_fill_the_cores_allowed_are_saturation() {
        // Two threads at 48 % each on a generator pinned to one core: no thread is near a
        // full core, but the core is.
        let cpu: Vec<CpuSample> = (2..=4)
            .map(|second| CpuSample {
                second,
                generator_cpu: 0.96,
                generator_busiest: 0.48,
                ..CpuSample::default()
            })
            .collect();
        let pinned = judge_on(&stats(cpu.clone(), 300, 0), Tolerance::default(), 1);
        let reason = pinned.invalid.unwrap();
        assert!(
            reason.contains("threads together used 0.96 of the 1 core(s)"),
            "{reason}"
        );
        let two = judge_on(&stats(cpu, 300, 0), Tolerance::default(), 2);
        assert_eq!(two.invalid, None);
    }

    #[test]
    fn falling_behind_past_the_tolerance_is_invalid() {
        let at = |behind| {
            judge(
                &stats(vec![sample(2, 0.1)], 1000, behind),
                Tolerance::default(),
            )
        };
        assert_eq!(at(10).invalid, None, "1 % is within the 1 % tolerance");
        let v = at(11);
        assert!((v.behind_fraction - 0.011).abs() < 1e-9);
        assert!(
            v.invalid
                .unwrap()
                .contains("1.10 % of requests dispatched late")
        );
    }

    #[test]
    fn other_processes_past_the_tolerance_name_the_host() {
        // Two cores, 92 % busy; the generator and the target use 0.3 core together: other
        // processes used 77 % of the host (the case measured: p95 105 ms judged "valid").
        let mut samples: Vec<CpuSample> = (1..=5).map(|s| sample(s, 0.1)).collect();
        for s in &mut samples {
            s.host_busy = 0.92;
            s.generator_cpu = 0.1;
            s.target_cpu = Some(0.2);
        }
        let busy = judge_on(&stats(samples.clone(), 100, 0), Tolerance::default(), 2);
        assert!((busy.other_cpu - 0.77).abs() < 1e-9, "{}", busy.other_cpu);
        let reason = busy.host_busy_reason.expect("busy host");
        assert!(
            reason.starts_with(&format!("host {} busy", hostname())),
            "{reason}"
        );
        assert!(
            reason.contains("77 %") && reason.contains("tolerance 25 %"),
            "{reason}"
        );
        for s in &mut samples {
            s.host_busy = 0.3;
        }
        let quiet = judge_on(&stats(samples, 100, 0), Tolerance::default(), 2);
        assert_eq!(quiet.host_busy_reason, None);
    }
}
