//! The sampler: once a second, the CPU time of the driver's threads and of the in-process
//! target's threads (`/proc/self/task/*/stat`, by thread-name prefix), the host's busy
//! fraction (`/proc/stat`), its load average (`/proc/loadavg`) and this process's resident
//! memory (`/proc/self/status`), as [`CpuSample`]s the validity guard judges.
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
