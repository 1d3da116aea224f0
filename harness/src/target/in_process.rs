//! The reference engine driven in process, through its router, with no socket.

use async_trait::async_trait;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_engine::{AppState, EngineConfig};

use super::{Capabilities, Capability, HttpEndpoint, ServedEngine, Target, TargetError};

/// The reference engine's `app()` driven with `oneshot`: no socket, no port.
#[derive(Clone)]
pub struct InProcess {
    state: AppState,
    router: Router,
    capabilities: Capabilities,
}

/// A model the in-process engine could not load or promote at start-up.
#[derive(Debug, thiserror::Error)]
#[error("failed to set up in-process engine with model {model:?}: {reason}")]
pub struct InProcessError {
    /// The model name.
    pub model: String,
    /// The engine's error.
    pub reason: String,
}

impl InProcess {
    /// Wraps an engine state (its models already loaded or not).
    pub fn new(state: AppState) -> Self {
        let router = gauntlet_engine::app(state.clone());
        let capabilities = [
            Capability::Repository,
            Capability::ArtifactUpload,
            Capability::Metrics,
        ]
        .into_iter()
        .collect();
        InProcess {
            state,
            router,
            capabilities,
        }
    }

    /// Starts an engine with `config`, loads every artifact and makes it live.
    pub fn with_models(
        config: EngineConfig,
        models: Vec<ModelArtifact>,
    ) -> Result<Self, InProcessError> {
        let state = AppState::new(config);
        for artifact in models {
            let name = artifact.name.clone();
            let fail = |e: &dyn std::fmt::Display| InProcessError {
                model: name.clone(),
                reason: e.to_string(),
            };
            state.registry().load(artifact).map_err(|e| fail(&e))?;
            state.registry().promote(&name).map_err(|e| fail(&e))?;
        }
        Ok(Self::new(state))
    }

    /// The engine state, for cases that inspect the engine directly.
    pub fn state(&self) -> &AppState {
        &self.state
    }
}

#[async_trait]
impl Target for InProcess {
    fn describe(&self) -> String {
        format!("in-process gauntlet-engine {}", gauntlet_engine::VERSION)
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Serves this engine's state (same registry, same models) on `127.0.0.1:0` with its own
    /// runtime: all cores but one, so a load generator on the same machine keeps a core.
    async fn http_endpoint(&self) -> Result<HttpEndpoint, TargetError> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let server = ServedEngine::start(self.state.clone(), cores.saturating_sub(1).max(1))?;
        Ok(HttpEndpoint {
            url: server.url(),
            authorization: None,
            server: Some(server),
        })
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let request = request.map(axum::body::Body::from);
        let response = match self.router.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| TargetError::Transport {
                method,
                path,
                reason: e.to_string(),
            })?
            .to_bytes();
        Ok(Response::from_parts(parts, bytes))
    }
}
