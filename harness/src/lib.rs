//! Gauntlet's framework: the [`Target`] seam and its implementations, the [`Suite`] seam
//! and the [`Registry`] of suites, the runner, the gate vocabulary ([`gate`]), the
//! requirement catalogue and the config.
//!
//! A suite implements [`Suite`]: [`Case`]s the [`runner`] runs one by one against a
//! [`Target`], and/or gates it measures as a whole; either way the result is the
//! `gauntlet-reports` run-result model.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use gauntlet_engine::EngineConfig;
//! use gauntlet_harness::runner::{self, RunOptions};
//! use gauntlet_harness::{CaseCtx, CaseOutcome, InProcess, Target, TargetExt, case, ensure_eq};
//!
//! async fn health_live(ctx: CaseCtx) -> CaseOutcome {
//!     let reply = ctx.target.get("/v2/health/live").await?;
//!     ensure_eq!(reply.status.as_u16(), 200, "GET /v2/health/live status");
//!     Ok(())
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let target: Arc<dyn Target> = Arc::new(InProcess::with_models(EngineConfig::default(), vec![])?);
//! let cases = [case!("conformance", health_live, ["ENG-OIP"], [])];
//! let options = RunOptions {
//!     concurrency: 1,
//!     case_timeout: Duration::from_secs(5),
//!     seed: 1,
//!     property_cases: 8,
//!     ..RunOptions::default()
//! };
//! let results = runner::run(&cases, target, &Default::default(), &options, |_| {}).await;
//! assert_eq!(results[0].outcome.label(), "pass");
//! # Ok::<(), gauntlet_harness::InProcessError>(())
//! # }).unwrap();
//! ```
#![deny(missing_docs)]

mod case;
pub mod catalogue;
pub mod command;
pub mod config;
pub mod gate;
pub mod references;
pub mod registry;
pub mod runner;
pub mod scratch;
pub mod skips;
pub mod suite;
pub mod target;
pub mod trace;

pub use case::{
    Case, CaseBody, CaseCtx, CaseError, CaseOutcome, POLICY_EXTENSION, Policy, References,
};
pub use catalogue::{Catalogue, CatalogueError, Requirement};
pub use command::{CommandOutput, CommandReport, Host, SuiteCommand};
pub use registry::{Registry, RegistryError};
pub use scratch::private_temp_dir;
pub use suite::{PlannedCase, Suite, SuiteCtx, SuiteError, SuiteOutput};
pub use target::{
    AuditKeyFiles, Audited, CallHeaders, Capabilities, Capability, ClientSecurity, ContainerTarget,
    ENGINE_THREAD_PREFIX, ExtraHeader, GrpcClient, GrpcEndpoint, GrpcTarget, HttpEndpoint,
    HttpOptions, HttpTarget, InProcess, InProcessError, Reply, SecurityAccess, ServedEngine,
    Target, TargetError, TargetExt, Unsigned, infer_path, redact_url,
};

/// An error and its causes on one line. Library errors keep their cause out of
/// their own message (it is `source()`); a cause already quoted is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
