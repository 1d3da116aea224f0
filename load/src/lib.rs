//! `gauntlet-load`: Gauntlet's load suite.
//!
//! An open-model HTTP load driver ([`driver::run`]) that sends each request at its scheduled
//! time and measures latency from that time, HDR histograms per second and overall
//! ([`histogram::Latencies`]), SLA gates read from `gauntlet.toml`, the scenarios of the load
//! suite (sustained, swap under load, stress with its knee, soak), a validity guard that
//! reports a saturated generator as invalid, and shard files that merge exactly.
#![deny(missing_docs)]

pub mod driver;
pub mod histogram;
pub mod recorder;
pub mod schedule;
pub mod validity;

/// Version of this crate, recorded in reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
