//! `gauntlet-load`: Gauntlet's load suite.
//!
//! An open-model HTTP load driver ([`driver::run`]) that sends each request at its scheduled
//! time and measures latency from that time, HDR histograms per second and overall
//! ([`histogram::Latencies`]), SLA gates read from `gauntlet.toml` ([`gates`]), the scenarios
//! of the load suite ([`scenario`]: sustained, swap under load, stress with its knee, soak), a
//! validity guard that reports a saturated generator as invalid ([`validity`]), shard files
//! that merge exactly ([`shard`]), and the suite as the `gauntlet` binary registers it,
//! [`LoadSuite`].
//!
//! ```
//! use std::time::Duration;
//! use gauntlet_load::schedule::{Schedule, Shard};
//!
//! // 1,000 req/s for 2 s, split over two shards that together send exactly the whole.
//! let schedule = Schedule::constant(1000.0, Duration::from_secs(2));
//! let first = schedule.offsets(Shard { index: 0, count: 2 }).count();
//! let second = schedule.offsets(Shard { index: 1, count: 2 }).count();
//! assert_eq!(first + second, 2000);
//! ```
#![deny(missing_docs)]

pub mod cli;
pub mod driver;
pub mod gates;
pub mod goose_run;
mod grpc;
pub mod histogram;
mod http1;
mod pacer;
pub mod payload;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod sampler;
pub mod scenario;
pub mod schedule;
pub mod settings;
pub mod shard;
mod suite;
pub mod validity;
pub mod workload;

pub use suite::{LoadSuite, SUITE, Scenario, load_settings, planned};

/// Version of this crate, recorded in reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
