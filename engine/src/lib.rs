//! `gauntlet-engine`: the reference ML model-serving engine that the Gauntlet harness proves.
//!
//! It serves [`Model`]s compiled from [`ModelArtifact`]s (linear, logistic, gradient-boosted
//! tree ensembles) over the Open Inference Protocol (KServe V2) with a Triton-compatible
//! repository extension. A [`Registry`] keeps a live, a staged and a previous version of each
//! model and swaps them atomically; the [`sanitise`] step imputes missing values and clips
//! outliers, reporting every change; `/metrics` speaks Prometheus.
//!
//! ```
//! use gauntlet_engine::{Model, ModelArtifact};
//!
//! let artifact = ModelArtifact::from_json(br#"{
//!     "format": "gauntlet-model", "format_version": 1,
//!     "name": "ref-linear", "version": "1",
//!     "features": [{ "name": "ret_1", "median": 0.0, "mad": 0.01, "min": -0.2, "max": 0.2 }],
//!     "impute": { "policy": "median" },
//!     "clip_mads": 6.0,
//!     "model": { "kind": "linear", "intercept": 0.5, "weights": [2.0] }
//! }"#)?;
//! let model = Model::from_artifact(artifact)?;
//!
//! // A missing value is imputed with the median; an outlier is clipped to median ± 6·MAD.
//! let clean = model.sanitise(&[None, Some(1.0)])?;
//! assert_eq!(clean.values, vec![0.0, 0.06]);
//! assert_eq!(clean.changes.len(), 2);
//! assert_eq!(model.predict_batch(&clean.values), vec![0.5, 0.62]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The HTTP API is [`app`], a plain `axum::Router` over an [`AppState`]; [`serve`] runs it on
//! a socket with graceful shutdown. [`serve_grpc`] serves the same state over the protocol's
//! gRPC form ([`grpc`]) on a second socket. The `gauntlet-engine` binary wraps them.
#![deny(missing_docs)]

pub mod artifact;
pub mod audit;
pub mod backend;
pub mod config;
pub mod grpc;
pub mod http;
mod json;
mod metrics;
pub mod model;
pub mod oip;
pub mod registry;
pub mod sanitise;
pub mod security;
pub mod server;
pub mod state;
#[doc(hidden)]
pub mod test_hooks;
pub mod trading;

pub use crate::artifact::{ArtifactError, ModelArtifact};
pub use crate::config::{ConfigError, EngineConfig};
pub use crate::grpc::serve_grpc;
pub use crate::http::app;
pub use crate::model::Model;
pub use crate::registry::{
    IndexEntry, ModelState, ModelVersions, Promotion, Registry, RegistryError,
};
pub use crate::sanitise::{SanitiseError, Sanitised};
pub use crate::server::{ShutdownSignals, serve, serve_tls, shutdown_signal};
pub use crate::state::{AppState, EngineError};

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
