//! Peak memory of a backtest on a Parquet file, for `/usr/bin/time -v`:
//!
//! ```sh
//! # With the workspace's features: `-p gauntlet-backtest` alone resolves polars' features
//! # differently and rebuilds it (~5 min after a workspace build).
//! cargo build --release --workspace --examples
//! target/release/examples/rss write /tmp/bars.parquet 1000000
//! /usr/bin/time -v target/release/examples/rss model /tmp/bars.parquet
//! /usr/bin/time -v target/release/examples/rss strategy /tmp/bars.parquet
//! ```
//!
//! `model` backtests `ref-ensemble` in process with the whole suite (10-trial deadband sweep,
//! walk-forward, DSR, PBO, look-ahead detector); `strategy` backtests `ma-cross:10,50` with
//! its 100-point parameter sweep. Each prints the raw column bytes and its own peak RSS
//! (`VmHWM`), so the bound "peak RSS ≤ 4 × raw column bytes" can be read off.

use std::path::PathBuf;
use std::sync::Arc;

use gauntlet_backtest::config::{BacktestConfig, Plan};
use gauntlet_backtest::data::{self, LoadOptions};
use gauntlet_backtest::signals::{EngineModel, Signals};
use gauntlet_backtest::suite::run_plan;
use gauntlet_engine::Model;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, path, rest @ ..] = args.as_slice() else {
        return Err("usage: rss write FILE N | rss model FILE | rss strategy FILE".into());
    };
    let path = PathBuf::from(path);
    if mode == "write" {
        let n: usize = rest.first().ok_or("write needs N")?.parse()?;
        let bars = gauntlet_fixtures::generate_ohlcv_every(7, n, 60)?;
        data::write_parquet(&bars, &path)?;
        println!("wrote {n} bars to {}", path.display());
        return Ok(());
    }
    let loaded = data::load(&path, &LoadOptions::default())?;
    let bars = loaded.bars;
    let mut config = BacktestConfig::default();
    let model: Option<Box<dyn Signals>> = match mode.as_str() {
        "model" => Some(Box::new(EngineModel::new(Arc::new(Model::from_artifact(
            gauntlet_fixtures::reference_ensemble(),
        )?))?)),
        "strategy" => {
            config.strategy = Some("ma-cross:10,50".into());
            None
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let plan = Plan::from_config(&config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(run_plan(
        &plan,
        &bars,
        loaded.gaps.median_interval_ns,
        model.as_deref(),
        1,
    ))?;
    let raw = bars.raw_bytes() as f64 / (1 << 20) as f64;
    let peak = peak_rss_kib().map_or(f64::NAN, |k| k as f64 / 1024.0);
    println!(
        "{mode}: {} bars, {} trials swept, Sharpe {:.3}; raw columns {raw:.1} MiB, peak RSS {peak:.1} MiB ({:.2}× raw)",
        outcome.bars,
        outcome.sweep.trials.len(),
        outcome.metrics.sharpe,
        peak / raw
    );
    for (stage, took) in &outcome.timings {
        println!("  {stage}: {:.1} ms", took.as_secs_f64() * 1e3);
    }
    Ok(())
}
