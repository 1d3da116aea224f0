//! The validity guard: was the generator able to keep its schedule?
//!
//! A sampler thread reads, once a second, the CPU time of the driver's threads and of the
//! in-process target's threads (`/proc/self/task/*/stat`, by thread-name prefix), the host's
//! busy fraction (`/proc/stat`), its load average (`/proc/loadavg`) and this process's
//! resident memory (`/proc/self/status`). A run whose generator saturated a core, or whose
//! scheduler fell behind beyond the tolerance, measured the generator, not the target: it is
//! reported invalid, never passed.
//!
//! A hiccup meter (thread `gx-hiccup`, after Gil Tene's jHiccup) sleeps 1 ms at a time and
//! records how much later than asked it woke: time in which this process could not run
//! although it wanted to (the host descheduled it, a hypervisor took the vCPU, the kernel
//! was busy). Every request sent or answered in such a stall carries it in its latency, so
//! the figures are reported beside the latencies (per second and over the run): a p99 no
//! lower than the host's own hiccups is the machine's, not the target's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::driver::RunStats;

/// Linux's `USER_HZ`: the unit of `utime`/`stime` in `/proc/*/stat` on every mainstream arch.
const CLOCK_TICKS: f64 = 100.0;

/// One second of CPU and host figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSample {
    /// Seconds since the schedule's start (the sample covers the second before).
    pub second: u32,
    /// CPU of all generator threads, in cores (1.0 = one core busy).
    pub generator_cpu: f64,
    /// CPU of the busiest generator thread, as a fraction of one core.
    pub generator_busiest: f64,
    /// CPU of the in-process target's threads, in cores; `None` for a remote target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<f64>,
    /// Busy fraction of all the host's cores (0 to 1).
    pub host_busy: f64,
    /// One-minute load average.
    pub loadavg: f64,
    /// Resident memory of this process, bytes.
    pub rss_bytes: u64,
    /// Largest hiccup in the second: how much later than asked the hiccup meter's 1 ms
    /// sleep woke, µs.
    #[serde(default)]
    pub hiccup_max_us: u64,
    /// Sum of the second's hiccups of at least [`STALL_FLOOR_US`], µs: time the process
    /// stood still.
    #[serde(default)]
    pub stalled_us: u64,
}

/// Smallest hiccup counted as a stall, µs (a 1 ms sleep normally wakes within ~0.1 ms).
pub const STALL_FLOOR_US: u64 = 1_000;

/// The hiccup meter's figures for the second in progress, taken by the sampler.
#[derive(Debug, Default)]
struct Hiccups {
    max_us: AtomicU64,
    stalled_us: AtomicU64,
}

impl Hiccups {
    fn record(&self, excess_us: u64) {
        self.max_us.fetch_max(excess_us, Ordering::Relaxed);
        if excess_us >= STALL_FLOOR_US {
            self.stalled_us.fetch_add(excess_us, Ordering::Relaxed);
        }
    }

    /// The second's figures, starting the next second from zero.
    fn take(&self) -> (u64, u64) {
        (
            self.max_us.swap(0, Ordering::Relaxed),
            self.stalled_us.swap(0, Ordering::Relaxed),
        )
    }
}

/// Sleeps 1 ms at a time until `stop`, recording each wake-up's lateness.
fn hiccup_loop(hiccups: &Hiccups, stop: &AtomicBool) {
    const PERIOD: Duration = Duration::from_millis(1);
    let mut next = Instant::now() + PERIOD;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let woke = Instant::now();
        hiccups.record(
            u64::try_from(woke.saturating_duration_since(next).as_micros()).unwrap_or(u64::MAX),
        );
        // No catching up: one long stall is one hiccup, not a burst of short ones.
        next = woke + PERIOD;
    }
}

/// The running sampler; [`Sampler::stop`] returns its samples.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<CpuSample>>>,
    meter: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling each second from `start`.
    pub fn start(
        generator_prefix: &str,
        target_prefix: Option<String>,
        start: Instant,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let hiccups = Arc::new(Hiccups::default());
        let meter = {
            let (hiccups, stop) = (Arc::clone(&hiccups), Arc::clone(&stop));
            std::thread::Builder::new()
                // Not under the generator's prefix either: it measures the host.
                .name("gx-hiccup".to_owned())
                .spawn(move || hiccup_loop(&hiccups, &stop))?
        };
        let flag = Arc::clone(&stop);
        let generator_prefix = generator_prefix.to_owned();
        let thread = std::thread::Builder::new()
            // Not under the generator's prefix: the sampler is the guard, not the load.
            .name("gx-sampler".to_owned())
            .spawn(move || {
                sample_loop(
                    &generator_prefix,
                    target_prefix.as_deref(),
                    start,
                    &flag,
                    &hiccups,
                )
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = meter.join();
                return Err(e);
            }
        };
        Ok(Sampler {
            stop,
            thread: Some(thread),
            meter: Some(meter),
        })
    }

    /// Stops the sampler and returns the samples.
    pub fn stop(mut self) -> Vec<CpuSample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(meter) = self.meter.take() {
            let _ = meter.join();
        }
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct HostTicks {
    busy: u64,
    total: u64,
}

fn sample_loop(
    generator: &str,
    target: Option<&str>,
    start: Instant,
    stop: &AtomicBool,
    hiccups: &Hiccups,
) -> Vec<CpuSample> {
    let mut samples = Vec::new();
    let mut last_threads = thread_ticks();
    let mut last_host = host_ticks();
    let mut last_at = Instant::now();
    let mut second: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Sleep to the next whole second of the schedule, waking often enough to stop soon.
        let next = start + Duration::from_secs(u64::from(second) + 1);
        let now = Instant::now();
        if next > now {
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        second += 1;
        let now = Instant::now();
        let elapsed = now
            .saturating_duration_since(last_at)
            .as_secs_f64()
            .max(1e-3);
        let threads = thread_ticks();
        let host = host_ticks();
        let mut generator_cpu = 0.0;
        let mut generator_busiest: f64 = 0.0;
        let mut target_cpu = 0.0;
        for (tid, (name, ticks)) in &threads {
            let before = last_threads.get(tid).map_or(0, |(_, t)| *t);
            let cores = ticks.saturating_sub(before) as f64 / CLOCK_TICKS / elapsed;
            if name.starts_with(generator) {
                generator_cpu += cores;
                generator_busiest = generator_busiest.max(cores);
            } else if target.is_some_and(|p| name.starts_with(p)) {
                target_cpu += cores;
            }
        }
        let host_busy = match (host, last_host) {
            (Some(h), Some(l)) if h.total > l.total => {
                h.busy.saturating_sub(l.busy) as f64 / (h.total - l.total) as f64
            }
            _ => 0.0,
        };
        let (hiccup_max_us, stalled_us) = hiccups.take();
        samples.push(CpuSample {
            second,
            generator_cpu,
            generator_busiest: generator_busiest.min(1.0),
            target_cpu: target.map(|_| target_cpu),
            host_busy,
            loadavg: loadavg().unwrap_or(0.0),
            rss_bytes: rss_bytes().unwrap_or(0),
            hiccup_max_us,
            stalled_us,
        });
        last_threads = threads;
        last_host = host;
        last_at = now;
    }
    samples
}

/// `tid → (thread name, utime + stime ticks)` of this process's threads.
fn thread_ticks() -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((name, ticks)) = parse_stat(&stat) {
            out.insert(tid, (name, ticks));
        }
    }
    out
}

/// `(comm, utime + stime)` from a `/proc/*/stat` line.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn host_ticks() -> Option<HostTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_host(stat.lines().next()?)
}

/// Busy and total ticks from the `cpu` line of `/proc/stat`.
fn parse_host(line: &str) -> Option<HostTicks> {
    let mut parts = line.split_whitespace();
    if parts.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = parts.take(8).filter_map(|p| p.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some(HostTicks {
        busy: total - idle,
        total,
    })
}

fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory of this process (`VmRSS`), bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// When a run counts as measuring the generator rather than the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Busiest generator thread's mean CPU over the measured window at or above this
    /// fraction of a core: saturated.
    pub max_generator_cpu: f64,
    /// Fraction of measured requests the scheduler dispatched late above this: behind.
    pub max_behind_fraction: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            max_generator_cpu: 0.9,
            max_behind_fraction: 0.01,
        }
    }
}

/// The validity figures of a run and, when invalid, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validity {
    /// Mean CPU of the busiest generator thread over the measured window (fraction of a core).
    pub generator_busiest: f64,
    /// Mean CPU of all generator threads (cores).
    pub generator_cpu: f64,
    /// Mean CPU of the in-process target (cores), when known.
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
    /// least [`STALL_FLOOR_US`].
    #[serde(default)]
    pub stalled_fraction: f64,
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
        invalid: (!reasons.is_empty()).then(|| reasons.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_spaces_and_parens_in_the_name() {
        let line = "1234 (gx load (1)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("gx load (1)".to_owned(), 300)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn host_line_counts_idle_and_iowait_as_not_busy() {
        let h = parse_host("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        assert_eq!(h.total, 1000);
        assert_eq!(h.busy, 150);
        assert!(parse_host("intr 1 2 3").is_none());
    }

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
    fn this_process_is_readable() {
        assert!(rss_bytes().unwrap() > 0);
        let threads = thread_ticks();
        assert!(!threads.is_empty());
    }

    #[test]
    fn hiccups_keep_the_largest_and_sum_only_stalls() {
        let h = Hiccups::default();
        for us in [80, 120, 2_500, 900, 1_000, 40] {
            h.record(us);
        }
        assert_eq!(
            h.take(),
            (2_500, 3_500),
            "largest; 2.5 ms + 1 ms are stalls"
        );
        assert_eq!(h.take(), (0, 0), "each second starts from zero");
    }

    #[test]
    fn the_meter_runs_beside_the_sampler_and_fills_every_sample() {
        let started = Instant::now();
        let sampler = Sampler::start("gx-none", None, started).unwrap();
        // A new thread names itself once it runs: wait for it, up to two seconds.
        let named = |name: &str| thread_ticks().into_values().any(|(n, _)| n == name);
        while !named("gx-hiccup") && started.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(named("gx-hiccup"), "no gx-hiccup thread in this process");
        std::thread::sleep(Duration::from_millis(2_300).saturating_sub(started.elapsed()));
        let samples = sampler.stop();
        assert!(samples.len() >= 2, "{samples:?}");
        for s in &samples {
            // A 1 ms sleep never wakes early, and not a whole second late.
            assert!(s.hiccup_max_us > 0 && s.hiccup_max_us < 1_000_000, "{s:?}");
            assert!(s.stalled_us <= 1_000_000, "{s:?}");
        }
    }
}
