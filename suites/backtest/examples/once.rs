//! The `ma_cross_parquet_1m` bench's work, done once in a fresh process: what `gauntlet
//! backtest --no-sweep` cannot beat, since it does the same before anything else. The
//! bench's figure is criterion's steady state (the file in the page cache, every column's
//! memory already mapped by earlier iterations); a process pays for its start, its first
//! page faults and its threads once.
//!
//! ```sh
//! # With the workspace's features: `-p gauntlet-backtest` alone resolves polars' features
//! # differently and rebuilds it (~5 min after a workspace build).
//! cargo build --release --workspace --examples
//! target/release/examples/rss write /tmp/bt-1m.parquet 1000000
//! /usr/bin/time target/release/examples/once /tmp/bt-1m.parquet
//! ```
//!
//! Prints the time from `main` to the metrics (the process start is what `time` adds).

use std::path::PathBuf;
use std::time::Instant;

use gauntlet_backtest::data::{self, LoadOptions};
use gauntlet_backtest::exec::{Costs, Fill, PositionModel, Sizing};
use gauntlet_backtest::signals::MaCross;
use gauntlet_backtest::sweep::{ExecParams, run_metrics};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let path = PathBuf::from(std::env::args().nth(1).ok_or("usage: once FILE.parquet")?);
    // As the bench: next-close fills, units, 10 bp fees, one-minute bars' 525,960 a year.
    let params = ExecParams {
        fill: Fill::NextClose,
        model: PositionModel::Units,
        costs: Costs {
            fees_bps: 10.0,
            slippage_bps: 0.0,
        },
        sizing: Sizing::default(),
        long_only: false,
    };
    let ma = MaCross { fast: 10, slow: 50 };
    let (_, metrics) = data::load_then(&path, &LoadOptions::default(), |close: &[f64]| {
        run_metrics(close, close, ma.spread_iter(close), &params, 525_960.0, 0.0)
    })?;
    println!(
        "{} trades, Sharpe {:.4}: {:.1} ms from main to the metrics",
        metrics.trades,
        metrics.sharpe,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
