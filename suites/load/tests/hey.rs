//! Honesty check: the same load against the engine from our driver and from `hey`, an
//! independent generator (`apt-get install hey`; Debian ships it, so CI installs it in seconds).
//!
//! A cross-check must fail only when the two tools disagree about the same load, never because
//! the target fell behind (an overloaded target makes both tools measure its queue, and the
//! closed-loop tool then sends less). So the target is checked first: our driver offers twice
//! the cross-check's rate for a second, and the rate is halved until the target serves that
//! probe in full with a p99 under [`PROBE_P99_MS`]. A target that cannot serve even
//! [`MIN_RATE`] that way is a setup problem of this test, said as such.
//!
//! Then both tools offer the chosen rate for [`SECONDS`]: achieved rates must agree within 2 %,
//! medians within 0.5 ms plus half of hey's median (hey reports whole 0.1 ms steps, and on a
//! shared 2-core machine a few hundred microseconds of scheduling noise separate two runs of
//! either tool).

#![expect(
    clippy::unwrap_used,
    reason = "a cross-check fails loudly on what it cannot run or read"
)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gauntlet_load::driver::{self, RunStats};
use gauntlet_load::schedule::Schedule;
use gauntlet_load::workload::{self, NamesModel};

mod common;

use common::{config, served};

/// The cross-check's rate when the target serves twice it with margin.
const RATE: f64 = 2_000.0;
/// Below this the target is too slow for the check to mean anything.
const MIN_RATE: f64 = 250.0;
const SECONDS: u64 = 5;
/// hey's workers; each is rate-limited to `rate / WORKERS` per second.
const WORKERS: usize = 16;
/// A probe whose p99 is above this means the target queues at twice the rate.
const PROBE_P99_MS: f64 = 10.0;

fn hey() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("hey"))
            .find(|p| p.is_file())
    })
}

fn drive(url: &str, rate: f64, seconds: f64) -> RunStats {
    let mut ours = config(
        url,
        "/v2/models/ref-linear/infer",
        rate,
        seconds,
        Arc::new(NamesModel::new("ref-linear")),
    );
    ours.schedule = Schedule::constant(rate, Duration::from_secs_f64(seconds));
    ours.connections = WORKERS;
    ours.request_timeout = Duration::from_secs(2);
    driver::run(ours).unwrap()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The highest rate (from [`RATE`], halving) at which the target serves twice the rate in full.
fn rate_with_margin(url: &str) -> f64 {
    let mut rate = RATE;
    let mut tried = Vec::new();
    while rate >= MIN_RATE {
        let probe = drive(url, 2.0 * rate, 1.0);
        let p99 = ms(probe.latencies.quantile(0.99));
        let achieved = probe.achieved_rate();
        if probe.counters.failed() == 0 && achieved >= 0.98 * 2.0 * rate && p99 <= PROBE_P99_MS {
            return rate;
        }
        tried.push(format!(
            "{:.0} req/s offered: {achieved:.0} served, p99 {p99:.3} ms, {} failed",
            2.0 * rate,
            probe.counters.failed()
        ));
        rate /= 2.0;
    }
    panic!(
        "setup problem, not a disagreement: the in-process engine cannot serve {:.0} req/s \
         with margin on this machine ({}); build the test in release (`cargo test --release`) \
         or run it on a quieter host",
        2.0 * MIN_RATE,
        tried.join("; ")
    );
}

/// hey's per-request CSV (`-o csv`): response time (s) and status of each request.
fn parse_hey_csv(text: &str) -> (Vec<f64>, Vec<u16>) {
    let mut times = Vec::new();
    let mut statuses = Vec::new();
    for line in text
        .lines()
        .skip_while(|l| !l.starts_with("response-time"))
        .skip(1)
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 8 {
            continue;
        }
        times.push(fields[0].parse::<f64>().unwrap());
        statuses.push(fields[6].parse::<u16>().unwrap());
    }
    (times, statuses)
}

#[test]
fn driver_and_hey_agree_on_rate_and_median() {
    let Some(hey) = hey() else {
        eprintln!(
            "SKIPPED driver_and_hey_agree_on_rate_and_median: hey is not on PATH \
             (install: apt-get install hey)"
        );
        return;
    };
    let server = served();
    let url = format!("{}/v2/models/ref-linear/infer", server.url());
    let rate = rate_with_margin(&server.url());

    let stats = drive(&server.url(), rate, SECONDS as f64);
    assert_eq!(stats.counters.failed(), 0, "{:?}", stats.samples);
    let our_rate = stats.achieved_rate();
    let our_p50 = ms(stats.latencies.quantile(0.5));

    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, workload::infer_body(1, 7).unwrap()).unwrap();
    let per_worker = rate / WORKERS as f64;
    let out = Command::new(&hey)
        .args(["-z", &format!("{SECONDS}s"), "-q", &per_worker.to_string()])
        .args(["-c", &WORKERS.to_string(), "-o", "csv", "-m", "POST"])
        .args(["-T", "application/json", "-D"])
        .arg(&body)
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut times, statuses) = parse_hey_csv(&String::from_utf8_lossy(&out.stdout));
    assert!(!times.is_empty(), "hey printed no request rows");
    let failed = statuses.iter().filter(|s| **s != 200).count();
    times.sort_by(f64::total_cmp);
    let hey_rate = times.len() as f64 / SECONDS as f64;
    let hey_p50 = times[times.len() / 2] * 1000.0;
    eprintln!(
        "at {rate:.0} req/s offered — driver: {our_rate:.0} req/s, p50 {our_p50:.3} ms; \
         hey: {hey_rate:.0} req/s, p50 {hey_p50:.3} ms, {failed} non-200"
    );
    assert_eq!(failed, 0, "hey saw {failed} responses other than 200");
    let rate_gap = (our_rate - hey_rate).abs() / hey_rate;
    assert!(
        rate_gap <= 0.02,
        "achieved rates differ by {:.1} %: driver {our_rate:.0}, hey {hey_rate:.0}",
        rate_gap * 100.0
    );
    let tolerance = 0.5 + 0.5 * hey_p50;
    assert!(
        (our_p50 - hey_p50).abs() <= tolerance,
        "p50 differ by more than {tolerance:.3} ms: driver {our_p50:.3}, hey {hey_p50:.3}"
    );
}

#[test]
fn hey_csv_rows_are_read_and_its_header_skipped() {
    let text = "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,\
                status-code,offset\n0.0004,0.0001,0.0000,0.0000,0.0003,0.0000,200,0.0081\n\
                0.0123,0.0000,0.0000,0.0000,0.0120,0.0001,503,0.0160\n";
    let (times, statuses) = parse_hey_csv(text);
    assert_eq!(times, vec![0.0004, 0.0123]);
    assert_eq!(statuses, vec![200, 503]);
}
