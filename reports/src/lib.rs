//! Gauntlet's run-result model ([`RunReport`]) and its renderers.
//!
//! A [`RunReport`] is the versioned contract of one run ([`SCHEMA_VERSION`]):
//! metadata to reproduce it, one [`CaseResult`] per case and the [`Summary`]
//! counts. Every renderer takes the report and any [`std::io::Write`], so tests
//! render into a `Vec<u8>`:
//!
//! - [`junit::write`]: JUnit XML for CI test dashboards;
//! - [`json::write`] / [`json::read`]: the JSON contract CI gates read;
//! - [`markdown::write`]: a GitHub-flavoured summary for job summaries and PRs;
//! - [`terminal::write`] and [`terminal::case_line`]: what a human sees;
//! - [`html::write`]: one self-contained page with every case and the charts
//!   of the run's [`Section`]s (load latency over time, backtest equity, ...).
//!
//! [`write_all`] writes the four report files of a run into a directory,
//! each atomically.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use gauntlet_reports::{CaseResult, Outcome, RunMeta, RunReport, terminal};
//!
//! let started_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let meta = RunMeta {
//!     tool: "gauntlet".into(),
//!     tool_version: "0.1.0".into(),
//!     git_commit: None,
//!     crate_versions: Default::default(),
//!     seed: 42,
//!     target: "in-process gauntlet-engine 0.1.0".into(),
//!     profile: "default".into(),
//!     started_at,
//!     finished_at: started_at + Duration::from_millis(1_230),
//! };
//! let case = CaseResult {
//!     id: "unit::health_live".into(),
//!     suite: "unit".into(),
//!     name: "health_live".into(),
//!     requirements: vec!["ENG-VAL-001".into()],
//!     outcome: Outcome::Fail,
//!     duration: Duration::from_micros(12_300),
//!     message: Some("expected 200, got 503".into()),
//!     location: None,
//! };
//! let report = RunReport::new(meta, vec![case]);
//!
//! let mut out = Vec::new();
//! terminal::write(&report, &mut out, false)?;
//! assert_eq!(
//!     String::from_utf8_lossy(&out),
//!     "FAIL  unit::health_live [ENG-VAL-001] expected 200, got 503\n\
//!      gauntlet: FAILED — 1 ran (0 passed, 1 failed, 0 errored), 0 skipped in 1.23s\n",
//! );
//!
//! let mut xml = Vec::new();
//! gauntlet_reports::junit::write(&report, &mut xml)?;
//! assert!(String::from_utf8_lossy(&xml).contains(r#"<failure message="expected 200, got 503">"#));
//! # Ok::<(), gauntlet_reports::ReportError>(())
//! ```
#![deny(missing_docs)]

mod error;
mod files;
mod fmt;
pub mod html;
pub mod json;
pub mod junit;
mod logaxis;
pub mod markdown;
mod model;
mod section;
pub mod terminal;
mod timeaxis;
mod traceability;

pub use error::{Format, ReportError};
pub use files::{HTML_FILE, JSON_FILE, JUNIT_FILE, MARKDOWN_FILE, check_dir, write_all};
pub use model::{
    CaseResult, ExitCode, Location, MIN_SCHEMA_VERSION, Outcome, RunMeta, RunReport,
    SCHEMA_VERSION, Summary, parse_seed, parse_seed_arg,
};
pub use section::{Chart, ChartKind, Marker, Section, Series, Table, XAxis, downsample};
pub use traceability::{
    AuditEvidence, Clause, ClauseStatus, Traceability, TraceabilitySpec, TracedCase, TracedClause,
};

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
