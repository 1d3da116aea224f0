//! The sampler: once a second, the CPU time of the driver's threads and of the target — the
//! in-process target's threads (`/proc/self/task/*/stat`, by thread-name prefix), or the
//! process on this host that listens on a loopback target's port ([`TargetProcess`]) —, the host's busy
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
    /// CPU of the target (its threads in this process, or its process on this host), in
    /// cores; `None` when the target is not on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<f64>,
    /// Busy fraction of all the host's cores (0 to 1).
    pub host_busy: f64,
    /// One-minute load average.
    pub loadavg: f64,
    /// Resident memory of this process, bytes.
    pub rss_bytes: u64,
    /// Resident memory of the target's process on this host ([`TargetProcess::Local`]),
    /// bytes; `None` for any other target, or once that process is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rss_bytes: Option<u64>,
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

/// Whose CPU is the target's: a target on this host is not one of the "other processes"
/// that make a host too busy to blame a failed gate on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetProcess {
    /// Threads of this process whose names start with the prefix (the in-process engine).
    InProcess(String),
    /// Another process of this host (a target on a loopback address).
    Local {
        /// Its pid.
        pid: u32,
        /// Its command name (`comm`), for the report.
        name: String,
    },
}

impl TargetProcess {
    /// The process of this host listening on the port of `url` (`http://`, `https://` or
    /// `grpc://`) when its host is a loopback address and `/proc` shows whose socket it is
    /// (this user's processes, or any as root); `None` otherwise — a remote target, or one
    /// this process cannot see.
    pub fn listening_on(url: &str) -> Option<TargetProcess> {
        let (host, port) = host_port(url)?;
        let loopback = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        };
        if !loopback {
            return None;
        }
        let inodes = listening_inodes(port);
        if inodes.is_empty() {
            return None;
        }
        let pid = socket_owner(&inodes)?;
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        Some(TargetProcess::Local { pid, name })
    }

    /// How the report names it.
    pub fn describe(&self) -> String {
        match self {
            TargetProcess::InProcess(_) => "the in-process target's threads".to_owned(),
            TargetProcess::Local { pid, name } => format!("process {pid} ({name}) on this host"),
        }
    }
}

/// `(host, port)` of a URL with an explicit or scheme-default port; IPv6 hosts unbracketed.
fn host_port(url: &str) -> Option<(String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host.to_owned(), port))
}

/// The entries of `dir` named by a number (`/proc`'s pids, a process's thread ids).
fn numbered(dir: &str) -> impl Iterator<Item = (u64, std::path::PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let n = entry.file_name().to_str()?.parse().ok()?;
            Some((n, entry.path()))
        })
}

/// Inodes of the listening TCP sockets (IPv4 and IPv6) bound to `port`.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(parse_listeners(&text, port));
        }
    }
    inodes
}

/// The inodes of `/proc/net/tcp{,6}` rows in state LISTEN (`0A`) on `port`.
fn parse_listeners(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let local = fields.get(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let listening = *fields.get(3)? == "0A";
            (listening && u16::from_str_radix(hex_port, 16).ok()? == port)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The pid, other than this process, holding a socket with one of `inodes` open.
fn socket_owner(inodes: &[u64]) -> Option<u32> {
    let me = u64::from(std::process::id());
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for (pid, path) in numbered("/proc") {
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(path.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| link.as_os_str() == w.as_str())
            {
                return u32::try_from(pid).ok();
            }
        }
    }
    None
}

/// `utime + stime` ticks of process `pid`.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks)
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
        target: Option<TargetProcess>,
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
            .spawn(move || sample_loop(&generator_prefix, target.as_ref(), start, &flag, &hiccups));
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
    target: Option<&TargetProcess>,
    start: Instant,
    stop: &AtomicBool,
    hiccups: &Hiccups,
) -> Vec<CpuSample> {
    let mut samples = Vec::new();
    let local_pid = match target {
        Some(TargetProcess::Local { pid, .. }) => Some(*pid),
        _ => None,
    };
    let prefix = match target {
        Some(TargetProcess::InProcess(p)) => Some(p.as_str()),
        _ => None,
    };
    let mut last_threads = thread_ticks();
    let mut last_process = local_pid.and_then(process_ticks);
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
        let process = local_pid.and_then(process_ticks);
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
            } else if prefix.is_some_and(|p| name.starts_with(p)) {
                target_cpu += cores;
            }
        }
        // A target process that exited (or restarted under another pid) adds nothing.
        if let (Some(now_ticks), Some(before)) = (process, last_process) {
            target_cpu += now_ticks.saturating_sub(before) as f64 / CLOCK_TICKS / elapsed;
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
            target_rss_bytes: local_pid.and_then(|pid| rss_of(&format!("/proc/{pid}/status"))),
            hiccup_max_us,
            stalled_us,
        });
        last_threads = threads;
        last_process = process;
        last_host = host;
        last_at = now;
    }
    samples
}

/// `tid → (thread name, utime + stime ticks)` of this process's threads.
fn thread_ticks() -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    for (tid, path) in numbered("/proc/self/task") {
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
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
    rss_of("/proc/self/status")
}

/// `VmRSS` of a `/proc/*/status` file, bytes.
fn rss_of(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
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

    #[test]
    fn urls_give_their_host_and_port() {
        let hp = |u: &str| host_port(u);
        assert_eq!(
            hp("http://127.0.0.1:8080"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(hp("grpc://[::1]:50051/"), Some(("::1".into(), 50051)));
        assert_eq!(
            hp("https://u:p@localhost/v2"),
            Some(("localhost".into(), 443))
        );
        assert_eq!(hp("http://example.com"), Some(("example.com".into(), 80)));
        assert_eq!(
            hp("grpc://127.0.0.1"),
            None,
            "gRPC has no default port here"
        );
        assert_eq!(hp("127.0.0.1:80"), None);
    }

    #[test]
    fn listeners_are_the_rows_in_state_listen_on_the_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1
   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0
";
        assert_eq!(
            parse_listeners(table, 8080),
            vec![4242],
            "not the established row"
        );
        assert_eq!(parse_listeners(table, 8081), vec![4444]);
        assert!(parse_listeners(table, 9).is_empty());
    }

    #[test]
    fn a_remote_or_unheard_url_has_no_local_process() {
        assert_eq!(TargetProcess::listening_on("http://192.0.2.1:8080"), None);
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            TargetProcess::listening_on(&format!("http://127.0.0.1:{port}")),
            None
        );
        // This process's own listener is the in-process target's business, not a process.
        let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", own.local_addr().unwrap().port());
        assert_eq!(TargetProcess::listening_on(&url), None);
    }

    /// A child process that listens on loopback and keeps one core busy for a few seconds
    /// is found by its port, and its CPU is sampled as the target's.
    #[test]
    fn a_local_target_process_is_found_by_its_port_and_its_cpu_counted() {
        let script = "import socket, sys, time\n\
                      s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
                      print(s.getsockname()[1], flush=True)\n\
                      end = time.time() + 6\n\
                      while time.time() < end: pass\n";
        let child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("skipped: python3 is not installed (it plays the target process)");
            return;
        };
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        let child = Kill(child);
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let found = TargetProcess::listening_on(&format!("http://127.0.0.1:{port}"));
        let Some(TargetProcess::Local { pid, name }) = &found else {
            panic!("python3 listening on {port} not found: {found:?}");
        };
        assert_eq!(*pid, child.0.id());
        assert!(name.starts_with("python"), "{name}");
        let started = Instant::now();
        let sampler = Sampler::start("gx-none", found.clone(), started).unwrap();
        std::thread::sleep(Duration::from_millis(3_200));
        let samples = sampler.stop();
        let busiest = samples
            .iter()
            .filter_map(|s| s.target_cpu)
            .fold(0.0, f64::max);
        // The child spins for the whole window: at least half a core in its best second,
        // even on a busy 2-core host.
        assert!(busiest > 0.5, "{samples:?}");
        // Its memory is sampled too: a Python interpreter holds a few MiB at least.
        assert!(
            samples
                .iter()
                .all(|s| s.target_rss_bytes.is_some_and(|b| b > 1 << 20)),
            "{samples:?}"
        );
    }
}
