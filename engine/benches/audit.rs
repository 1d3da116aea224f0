//! Audit log benchmarks (issue 13's figures; results in `benches/README.md`):
//!
//! - `append`: records queued with [`AuditLog::record`] (predictions: batched, group commit
//!   every `flush-interval`) until a checkpoint covers them, in records per second
//!   (target ≥ 200,000/s on one core: the writer is one thread);
//! - `ack`: an admin record's acknowledgement, [`AuditLog::record_durable`] (written and
//!   `fdatasync`ed before it returns), one caller at a time and eight at once, p50/p99/max
//!   (target p99 ≤ 5 ms on this disk);
//! - `proof`: [`AuditLog::inclusion_proof`] (tree path, root, the record's bytes read from
//!   its segment) on a 10M-record log, p50/p99 (target ≤ 50 µs), and the Merkle path alone;
//! - `verify`: [`verify_dir`] (what `gauntlet audit verify DIR` runs) over the `append` log,
//!   in records per second (target ≥ 1,000,000/s).
//!
//! Each figure is measured `REPS` times and printed as a range: the host is shared, so one
//! run says more about the neighbours than about the code. Run with
//! `cargo bench -p gauntlet-engine --bench audit` (`-- append ack proof verify` to pick;
//! `AUDIT_BENCH_PROOF_RECORDS` sets the proof log's size, default 10,000,000).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use gauntlet_engine::audit::{
    Action, AuditConfig, AuditEvent, AuditLog, Outcome, VerifyOptions, merkle, verify_dir,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Repetitions of each measurement.
const REPS: usize = 3;
/// Records per `append` repetition.
const APPEND_RECORDS: u64 = 1_000_000;
/// Sequential admin acknowledgements per `ack` repetition.
const ACKS: usize = 2_000;

/// A prediction record as the engine writes one: principal, model, version, request id and a
/// client pseudonym (about 200 bytes framed).
fn prediction(log: &AuditLog, i: u64) -> AuditEvent {
    let mut e = AuditEvent::new("anonymous", Action::Prediction, Outcome::Ok);
    e.model = Some("ref-ensemble".to_owned());
    e.version = Some("1".to_owned());
    e.request_id = Some(format!("req-{i:012}"));
    e.client = Some(log.pseudonym(&format!("client-{}", i % 1000)));
    e
}

fn config(dir: &Path) -> AuditConfig {
    let mut c = AuditConfig::new(dir.join("log"), dir.join("keys"));
    // Checkpoints only when asked: the figures are of appending and syncing.
    c.checkpoint_interval = Duration::from_secs(3600);
    c
}

/// `n` records queued then covered by a checkpoint; the time from the first `record` call
/// to the checkpoint's answer.
async fn append(log: &AuditLog, n: u64) -> Duration {
    // Built before the clock starts: the figure is the log's, not the event builder's.
    let first = log.len();
    let events: Vec<AuditEvent> = (first..first + n).map(|i| prediction(log, i)).collect();
    let started = Instant::now();
    for e in events {
        log.record(e).expect("writer running");
    }
    let cp = log.checkpoint_now().await.expect("checkpoint");
    let took = started.elapsed();
    assert_eq!(cp.size, first + n);
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn range(values: &[f64], unit: &str, scale: f64) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.0}–{:.0} {unit}", lo * scale, hi * scale)
}

async fn bench_append_and_verify(run_append: bool, run_verify: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let log = AuditLog::open(&config).expect("open");
    let mut rates = Vec::new();
    for rep in 0..REPS {
        let took = append(&log, APPEND_RECORDS).await;
        let rate = APPEND_RECORDS as f64 / took.as_secs_f64();
        if run_append {
            println!(
                "append  rep {rep}: {APPEND_RECORDS} records in {} = {rate:.0} records/s",
                ms(took)
            );
        }
        rates.push(rate);
    }
    log.close().await;
    let records = log.len();
    if run_append {
        println!(
            "append: {} (target ≥ 200000)",
            range(&rates, "records/s", 1.0)
        );
    }
    if run_verify {
        let mut rates = Vec::new();
        for rep in 0..REPS {
            let started = Instant::now();
            let report =
                verify_dir(&config.dir, &VerifyOptions::default()).expect("the log verifies");
            let took = started.elapsed();
            assert_eq!(report.records, records);
            let rate = records as f64 / took.as_secs_f64();
            println!(
                "verify  rep {rep}: {records} records, {} checkpoints in {} = {rate:.0} records/s",
                report.checkpoints,
                ms(took)
            );
            rates.push(rate);
        }
        println!(
            "verify: {} (target ≥ 1000000)",
            range(&rates, "records/s", 1.0)
        );
    }
}

async fn bench_ack() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&config(tmp.path())).expect("open");
    let admin = |i: usize| {
        let mut e = AuditEvent::new("ops", Action::ModelPromote, Outcome::Ok);
        e.model = Some("ref-ensemble".to_owned());
        e.detail = Some(format!("promotion {i}"));
        e
    };
    let mut p99s = Vec::new();
    for rep in 0..REPS {
        let mut times = Vec::with_capacity(ACKS);
        for i in 0..ACKS {
            let started = Instant::now();
            log.record_durable(admin(i)).await.expect("durable");
            times.push(started.elapsed());
        }
        times.sort();
        let p99 = percentile(&times, 0.99);
        println!(
            "ack     rep {rep}: {ACKS} sequential: p50 {} p99 {} max {}",
            ms(percentile(&times, 0.5)),
            ms(p99),
            ms(percentile(&times, 1.0))
        );
        p99s.push(p99.as_secs_f64());
        // Eight admins at once: one fsync covers each group.
        let mut tasks = Vec::new();
        for t in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::with_capacity(ACKS / 8);
                for i in 0..ACKS / 8 {
                    let mut e = AuditEvent::new("ops", Action::ModelLoad, Outcome::Ok);
                    e.detail = Some(format!("load {t}-{i}"));
                    let started = Instant::now();
                    log.record_durable(e).await.expect("durable");
                    times.push(started.elapsed());
                }
                times
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.extend(t.await.expect("task"));
        }
        times.sort();
        println!(
            "ack     rep {rep}: 8 at once: p50 {} p99 {} max {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(percentile(&times, 1.0))
        );
    }
    log.close().await;
    println!(
        "ack: sequential p99 {} (target ≤ 5 ms)",
        range(&p99s, "µs", 1e6)
    );
}

async fn bench_proof() {
    let n: u64 = std::env::var("AUDIT_BENCH_PROOF_RECORDS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&config(tmp.path())).expect("open");
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let chunk = left.min(1_000_000);
        append(&log, chunk).await;
        left -= chunk;
    }
    println!(
        "proof: wrote a log of {n} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut p99s = Vec::new();
    for rep in 0..REPS {
        let mut times = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let index = rng.random_range(0..n);
            let started = Instant::now();
            let proof = log.inclusion_proof(index, None).expect("proof");
            times.push(started.elapsed());
            black_box(proof);
        }
        times.sort();
        let p99 = percentile(&times, 0.99);
        println!(
            "proof   rep {rep}: inclusion proof with the record's bytes, log of {n}: p50 {:.1} µs p99 {:.1} µs",
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
        p99s.push(p99.as_secs_f64());
    }
    println!("proof: p99 {} (target ≤ 50 µs)", range(&p99s, "µs", 1e6));
    log.close().await;
    drop(log);
    // The Merkle path alone, on a tree of the same size in memory.
    let mut tree = merkle::MerkleTree::new();
    for i in 0..n {
        tree.push(merkle::leaf_hash(&i.to_le_bytes()));
    }
    let root = tree.root(n).expect("root");
    let mut times = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let index = rng.random_range(0..n);
        let started = Instant::now();
        let path = tree.inclusion_proof(index, n).expect("path");
        times.push(started.elapsed());
        merkle::verify_inclusion(
            index,
            n,
            &merkle::leaf_hash(&index.to_le_bytes()),
            &path,
            &root,
        )
        .expect("the path verifies");
    }
    times.sort();
    println!(
        "proof: the Merkle path alone, tree of {n}: p50 {:.2} µs p99 {:.2} µs",
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6
    );
}

fn main() {
    // `cargo bench` passes `--bench`; the other arguments pick the benchmarks.
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if wants("append") || wants("verify") {
            bench_append_and_verify(wants("append"), wants("verify")).await;
        }
        if wants("ack") {
            bench_ack().await;
        }
        if wants("proof") {
            bench_proof().await;
        }
    });
}
