//! The driver's figures, printed: its highest valid open-model rate from one core, wrk's
//! closed-loop rate on the same endpoint in the same run, and the driver's resident memory
//! over a soak.
//!
//! `cargo bench -p gauntlet-load --bench driver` (Linux, `taskset` and `wrk` installed):
//! the engine binary runs pinned to core 0, this process (the driver) and wrk to core 1.
//! `GAUNTLET_BENCH_SOAK=300s` sets the soak (default 5 minutes; `0s` skips it);
//! `GAUNTLET_BENCH_STEPS=30000,40000` sets the rates tried; `GAUNTLET_BENCH_ENDPOINT=infer`
//! drives the infer route instead of the health route (see [`Endpoint`]). With `--features goose` it also
//! prints goose's closed-loop rate on the same endpoint from the same core.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench fails loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use gauntlet_load::driver::{self, AnyBody, DriverConfig, RequestSpec};
use gauntlet_load::schedule::{Schedule, Shard};
use gauntlet_load::validity::{self, Tolerance};
use gauntlet_testkit::EngineProcess;

/// The route every generator drives, from `GAUNTLET_BENCH_ENDPOINT`: `health` (default,
/// `GET /v2/health/live`: the engine's cheapest answer, so the generators are what is
/// measured) or `infer` (`POST /v2/models/ref-ensemble/infer` with the one-row OIP body of
/// `engine/benches/http/body.json`: the engine's infer path, a JSON endpoint as in the issue's
/// comparison). The driver, wrk and goose send the same bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Endpoint {
    Health,
    Infer,
}

impl Endpoint {
    fn from_env() -> Endpoint {
        match std::env::var("GAUNTLET_BENCH_ENDPOINT").as_deref() {
            Ok("infer") => Endpoint::Infer,
            Ok("health") | Err(_) => Endpoint::Health,
            Ok(other) => panic!("GAUNTLET_BENCH_ENDPOINT={other}: expected health or infer"),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Health => "/v2/health/live",
            Endpoint::Infer => "/v2/models/ref-ensemble/infer",
        }
    }

    fn method(self) -> Method {
        match self {
            Endpoint::Health => Method::GET,
            Endpoint::Infer => Method::POST,
        }
    }

    /// The engine bench's wrk script and body, shared so every generator sends the same.
    fn http_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../engine/benches/http")
    }

    fn body(self) -> Bytes {
        match self {
            Endpoint::Health => Bytes::new(),
            Endpoint::Infer => {
                let text = std::fs::read_to_string(Self::http_dir().join("body.json")).unwrap();
                Bytes::from(text.trim_end().to_owned())
            }
        }
    }
}

/// The release engine binary, pinned to core 0, on a loopback port.
fn start_engine() -> EngineProcess {
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/driver-HASH → target/release
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let engine = gauntlet_testkit::engine_binary_in(profile_dir, true).unwrap();
    let mut command = Command::new("taskset");
    command
        .args(["-c", "0"])
        .arg(engine)
        .args(["--listen", "127.0.0.1:0", "--model-dir"])
        .arg(gauntlet_testkit::fixture_models());
    EngineProcess::start(command).expect("taskset and the engine binary")
}

fn config(url: &str, endpoint: Endpoint, rate: f64, duration: Duration) -> DriverConfig {
    DriverConfig {
        request: RequestSpec {
            base_url: url.to_owned(),
            method: endpoint.method(),
            path: endpoint.path().to_owned(),
            body: endpoint.body(),
            variants: Vec::new(),
            headers: Vec::new(),
        },
        schedule: Schedule::constant(rate, duration),
        shard: Shard::WHOLE,
        start_at: None,
        warm_up: Duration::from_secs(1),
        connections: 64,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        late_after: Duration::from_millis(5),
        queue_timeout: Duration::from_secs(1),
        pacing: driver::DEFAULT_PACING,
        threads: 1,
        check: Arc::new(AnyBody),
        target_process: None,
        progress: None,
        raw_latencies: None,
    }
}

fn wrk(url: &str, endpoint: Endpoint) -> Option<f64> {
    let mut command = Command::new("taskset");
    command.args(["-c", "1", "wrk", "-t1", "-c64", "-d5s"]);
    if endpoint == Endpoint::Infer {
        command.arg("-s").arg(Endpoint::http_dir().join("post.lua"));
    }
    let out = command
        .arg(format!("{url}{}", endpoint.path()))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// Goose 0.19 (closed model) on the same endpoint from the same core: `users` users
/// requesting back to back for 5 s; successful requests per second.
#[cfg(feature = "goose")]
fn goose(url: &str, endpoint: Endpoint, users: usize) -> Option<f64> {
    use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
    use goose::prelude::*;

    let body: Arc<serde_json::Value> = Arc::new(match endpoint {
        Endpoint::Health => serde_json::Value::Null,
        Endpoint::Infer => serde_json::from_slice(&endpoint.body()).ok()?,
    });
    let health: TransactionFunction = Arc::new(move |user| {
        let body = Arc::clone(&body);
        Box::pin(async move {
            let _ = match endpoint {
                Endpoint::Health => user.get(endpoint.path()).await?,
                Endpoint::Infer => user.post_json(endpoint.path(), body.as_ref()).await?,
            };
            Ok(())
        })
    });
    let attack = GooseAttack::initialize_with_config(GooseConfiguration::default())
        .ok()?
        .register_scenario(scenario!("Health").register_transaction(Transaction::new(health)))
        .set_default(GooseDefault::Host, url)
        .ok()?
        .set_default(GooseDefault::Users, users)
        .ok()?
        .set_default(GooseDefault::IncreaseRate, users.to_string().as_str())
        .ok()?
        .set_default(GooseDefault::RunTime, 5)
        .ok()?
        .set_default(GooseDefault::Quiet, 1)
        .ok()?
        .set_default(GooseDefault::NoPrintMetrics, true)
        .ok()?
        .set_default(GooseDefault::NoTelnet, true)
        .ok()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .ok()?;
    let metrics = runtime.block_on(attack.execute()).ok()?;
    let ok: usize = metrics.requests.values().map(|a| a.success_count).sum();
    Some(ok as f64 / metrics.duration.max(1) as f64)
}

fn parse_duration(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(default)
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Pin every thread of this process (and those it starts) to core 1.
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let endpoint = Endpoint::from_env();
    let engine = start_engine();
    let url = engine.url();
    println!(
        "machine: {cores} cores; engine pinned to core 0, driver {} core 1; endpoint {} {}",
        if pinned { "pinned to" } else { "NOT pinned to" },
        endpoint.method(),
        endpoint.path()
    );
    let steps: Vec<f64> = std::env::var("GAUNTLET_BENCH_STEPS")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            vec![
                20_000.0, 40_000.0, 60_000.0, 80_000.0, 100_000.0, 120_000.0, 140_000.0, 160_000.0,
            ]
        });
    let wrk_before = wrk(&url, endpoint);
    let mut best = 0.0_f64;
    // CPU per request at the highest valid step: lower rates pay more per request, as
    // the driver's thread wakes from idle for almost every one.
    let mut best_cpu_us = 0.0_f64;
    for rate in steps {
        let stats = driver::run(config(&url, endpoint, rate, Duration::from_secs(5))).unwrap();
        let v = validity::judge(&stats, Tolerance::default());
        // The engine on its one core keeps up while the median stays within 10 ms; past
        // that the step measures the engine's queue, not the driver.
        let kept_up = stats.latencies.quantile(0.5) <= 10_000;
        let ok = stats.counters.failed() == 0
            && stats.achieved_rate() >= 0.99 * stats.target_rate
            && kept_up;
        let cpu_us = if stats.achieved_rate() > 0.0 {
            v.generator_cpu / stats.achieved_rate() * 1e6
        } else {
            0.0
        };
        println!(
            "driver  scheduled {:>6.0} req/s  achieved {:>6.0} req/s  p50 {:>6.3} ms  p99 {:>7.3} ms  \
             failed {:>6}  driver busiest thread {:>3.0} %  all driver threads {:.2} cores \
             ({:.1} us a request)  {}",
            rate,
            stats.achieved_rate(),
            stats.latencies.quantile(0.5) as f64 / 1000.0,
            stats.latencies.quantile(0.99) as f64 / 1000.0,
            stats.counters.failed(),
            v.generator_busiest * 100.0,
            v.generator_cpu,
            cpu_us,
            match (&v.invalid, ok) {
                (Some(r), _) => format!("INVALID: {r}"),
                (None, false) if !kept_up => "engine saturated (p50 > 10 ms)".to_owned(),
                (None, false) => "target fell short".to_owned(),
                (None, true) => "valid".to_owned(),
            }
        );
        if v.invalid.is_none() && ok {
            best = best.max(stats.achieved_rate());
            best_cpu_us = cpu_us;
        } else {
            break;
        }
    }
    let wrk_after = wrk(&url, endpoint);
    println!(
        "driver  highest valid rate with the engine keeping up: {best:.0} req/s; there the driver \
         used {best_cpu_us:.1} us of CPU a request (all its threads), i.e. ~{:.0} req/s per core",
        if best_cpu_us > 0.0 {
            1e6 / best_cpu_us
        } else {
            0.0
        }
    );
    match (wrk_before, wrk_after) {
        (Some(a), Some(b)) => {
            let w = a.max(b);
            println!(
                "wrk     -t1 -c64 -d5s on core 1, before and after: {a:.0} and {b:.0} req/s \
                 (closed loop); driver {best:.0} req/s = {:.2}x wrk's best",
                best / w
            );
        }
        _ => println!("wrk     not available (apt-get install -y wrk)"),
    }
    #[cfg(feature = "goose")]
    match goose(&url, endpoint, 64) {
        Some(rate) => println!(
            "goose   64 users, 5 s on core 1 (closed loop): {rate:.0} req/s; driver {best:.0} req/s \
             = {:.2}x goose",
            best / rate
        ),
        None => println!("goose   failed to run"),
    }
    #[cfg(not(feature = "goose"))]
    println!("goose   not built: cargo bench -p gauntlet-load --bench driver --features goose");

    let soak = parse_duration("GAUNTLET_BENCH_SOAK", Duration::from_secs(300));
    if soak.is_zero() {
        return;
    }
    let rate = (best * 0.5).max(10_000.0);
    let started = Instant::now();
    let stats = driver::run(config(&url, endpoint, rate, soak)).unwrap();
    let rss: Vec<(u32, u64)> = stats
        .cpu
        .iter()
        .filter(|s| s.rss_bytes > 0)
        .map(|s| (s.second, s.rss_bytes))
        .collect();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (first, last) = (rss.first().copied(), rss.last().copied());
    let peak = rss.iter().map(|(_, b)| *b).max().unwrap_or(0);
    if let (Some((s0, r0)), Some((s1, r1))) = (first, last) {
        println!(
            "soak    {rate:.0} req/s for {}: {} ok, {} failed; driver RSS {:.1} MiB at {s0} s -> \
             {:.1} MiB at {s1} s (peak {:.1} MiB); took {:.0} s",
            humantime::format_duration(soak),
            stats.counters.ok + stats.warm_up_counters.ok,
            stats.counters.failed(),
            mib(r0),
            mib(r1),
            mib(peak),
            started.elapsed().as_secs_f64()
        );
    }
}
