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
//! - [`lookahead`]: the truncation test for future data (BT-NOLOOK).
#![deny(missing_docs)]

pub use phase::BacktestPhase;

pub mod cli;
pub mod config;
pub mod data;
pub mod exec;
pub mod lookahead;
pub mod metrics;
pub mod overfit;
pub mod phase;
pub mod report;
pub mod signals;
pub mod suite;
pub mod sweep;

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
