//! Gauntlet's backtest suite: does a model (or a baseline strategy) make money on bars it
//! has never seen, net of costs, without peeking, and not only because many variants were
//! tried?
//!
//! The pieces, in the order data flows:
//!
//! - [`data`]: OHLCV bars from CSV or Parquet (polars, eager API), validated row by row;
//! - [`signals`]: a prediction per bar, from a model behind a [`gauntlet_harness::Target`]
//!   (OIP infer batches), from a model compiled in process, or from the `ma-cross` baseline;
//!   features come from [`gauntlet_fixtures::bar_features`];
//! - [`exec`]: predictions → positions → net returns and trades (BT-NOLOOK, BT-COST);
//! - [`metrics`]: the metrics and their conventions (BT-METRICS);
//! - [`sweep`]: parameter sweeps in bounded memory and walk-forward folds (BT-WF);
//! - [`overfit`]: PSR, DSR, MinTRL and PBO by CSCV (BT-DSR);
//! - [`lookahead`]: the truncation test for future data (BT-NOLOOK);
//! - [`export`]: `trades.csv` and the returns (`returns.parquet` or `.csv`) at full precision;
//! - [`report`] and [`tearsheet`]: the metrics, tables and charts of `report.html`;
//! - [`suite`] runs all of it for a [`config::Plan`]; [`BacktestSuite`] is the suite as
//!   `gauntlet run` registers it, [`cli`] is `gauntlet backtest`.
//!
//! ```
//! use gauntlet_backtest::data::Bars;
//! use gauntlet_backtest::metrics::compute;
//! use gauntlet_backtest::signals::MaCross;
//! use gauntlet_backtest::sweep::{ExecParams, run};
//!
//! let bars: Bars = gauntlet_fixtures::generate_ohlcv(1, 2_000)?;
//! let spread = MaCross::parse("ma-cross:10,50")?.spread(&bars.close);
//! let execution = run(&bars.open, &bars.close, &spread, &ExecParams::default());
//! let metrics = compute(&execution, 365.25, 0.0);
//! assert_eq!(metrics.periods, 1_999);
//! assert!(metrics.max_drawdown >= 0.0 && metrics.max_drawdown < 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub use phase::BacktestSuite;

pub mod cli;
pub mod config;
pub mod data;
pub mod exec;
pub mod export;
pub mod lookahead;
pub mod metrics;
pub mod overfit;
pub mod phase;
pub mod report;
pub mod signals;
pub mod suite;
pub mod sweep;
pub mod tearsheet;

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
