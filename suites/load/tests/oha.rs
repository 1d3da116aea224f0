//! Honesty check: the same 10,000 req/s against the engine with our driver and with oha
//! (`cargo install oha --version 1.16.0 --locked`, `-q 10000 --latency-correction`).
//!
//! Achieved rates must agree within 2 %. Median latencies must agree within 0.5 ms plus half
//! of oha's median: both tools measure from the intended send time, and on a shared 2-core
//! machine a few hundred microseconds of scheduling noise separate two runs of either tool.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gauntlet_load::driver;
use gauntlet_load::schedule::Schedule;
use gauntlet_load::workload::{self, NamesModel};

mod common;

use common::{config, served};

const RATE: f64 = 10_000.0;
const SECONDS: u64 = 5;
const CONNECTIONS: usize = 64;

/// oha on PATH or in ~/.cargo/bin.
fn oha() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("oha"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = PathBuf::from(home).join(".cargo/bin/oha");
        p.is_file().then_some(p)
    })
}

#[test]
fn driver_and_oha_agree_on_rate_and_median() {
    let Some(oha) = oha() else {
        eprintln!(
            "SKIPPED driver_and_oha_agree_on_rate_and_median: oha is not on PATH nor in \
             ~/.cargo/bin (install: cargo install oha --version 1.16.0 --locked)"
        );
        return;
    };
    let server = served();
    let url = format!("{}/v2/models/ref-linear/infer", server.url());

    let mut ours = config(
        &server.url(),
        "/v2/models/ref-linear/infer",
        RATE,
        SECONDS as f64,
        Arc::new(NamesModel::new("ref-linear")),
    );
    ours.schedule = Schedule::constant(RATE, Duration::from_secs(SECONDS));
    ours.connections = CONNECTIONS;
    ours.request_timeout = Duration::from_secs(2);
    let stats = driver::run(ours).unwrap();
    assert_eq!(stats.counters.failed(), 0, "{:?}", stats.samples);
    let our_rate = stats.achieved_rate();
    let our_p50 = stats.latencies.quantile(0.5) as f64 / 1000.0;

    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, workload::infer_body(1, 7).unwrap()).unwrap();
    let out = Command::new(&oha)
        .args(["-z", &format!("{SECONDS}s"), "-q", &RATE.to_string()])
        .args(["--latency-correction", "-c", &CONNECTIONS.to_string()])
        .args(["--no-tui", "--output-format", "json", "-m", "POST"])
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
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let oha_rate = report["summary"]["requestsPerSec"].as_f64().unwrap();
    let oha_p50 = report["latencyPercentiles"]["p50"].as_f64().unwrap() * 1000.0;
    let success = report["summary"]["successRate"].as_f64().unwrap();
    eprintln!(
        "driver: {our_rate:.0} req/s, p50 {our_p50:.3} ms; oha: {oha_rate:.0} req/s, \
         p50 {oha_p50:.3} ms, success {success}"
    );
    assert!(success > 0.999, "oha saw failures: {success}");
    let rate_gap = (our_rate - oha_rate).abs() / oha_rate;
    assert!(
        rate_gap <= 0.02,
        "achieved rates differ by {:.1} %: driver {our_rate:.0}, oha {oha_rate:.0}",
        rate_gap * 100.0
    );
    let tolerance = 0.5 + 0.5 * oha_p50;
    assert!(
        (our_p50 - oha_p50).abs() <= tolerance,
        "p50 differ by more than {tolerance:.3} ms: driver {our_p50:.3}, oha {oha_p50:.3}"
    );
}
