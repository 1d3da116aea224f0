//! The [`Target`] seam: one small trait that every system under test implements.
//!
//! A target only has to carry an HTTP exchange; the typed Open Inference
//! Protocol calls live in [`TargetExt`], written once for every target.

mod container;
mod endpoint;
mod grpc;
mod http_url;
mod in_process;
pub mod retries;
pub mod security;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use gauntlet_engine::oip::{ErrorBody, InferRequest, InferResponse};

pub use container::{ContainerTarget, LABEL as CONTAINER_LABEL, split_image};
pub use endpoint::{ENGINE_THREAD_PREFIX, HttpEndpoint, ServedEngine};
pub use grpc::{CallHeaders, GrpcClient, GrpcEndpoint, GrpcTarget, grpc_authority};
pub use http_url::{HttpOptions, HttpTarget, redact_url};
pub use in_process::{InProcess, InProcessError};
pub use retries::{ConnectionRetry, Exchange, Retries, with_case};
pub use security::{ClientSecurity, ExtraHeader, SecurityAccess, Unsigned};

/// Something a case may need from a target beyond the core protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// The Triton-compatible repository extension: index, load, unload, plus
    /// promote and rollback.
    Repository,
    /// Loading a model from an artifact sent in the load request
    /// (`{"parameters": {"artifact": …}}`), as `gauntlet-engine` does.
    ArtifactUpload,
    /// A Prometheus `GET /metrics` endpoint.
    Metrics,
    /// The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), reached with
    /// [`Target::grpc_endpoint`].
    Grpc,
    /// The Open Inference Protocol over HTTP. Every case needs it unless it needs
    /// [`Capability::Grpc`], without listing it: a target lacks it when
    /// [`Target::speaks_http`] is false (a `grpc://` target).
    Http,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::Repository => "repository extension (load/promote/rollback)",
            Capability::ArtifactUpload => "artifact upload in load requests",
            Capability::Metrics => "Prometheus /metrics endpoint",
            Capability::Grpc => "the OIP over gRPC (GRPCInferenceService)",
            Capability::Http => "the OIP over HTTP (it is a gRPC-only target)",
        })
    }
}

/// The set of capabilities a target offers.
pub type Capabilities = BTreeSet<Capability>;

/// Why a request to a target did not produce a response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The base URL is not usable.
    #[error("invalid target URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the target's address within the connect deadline.
    #[error("target {url} is unreachable: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The transport's explanation.
        reason: String,
    },
    /// The request timed out.
    #[error("request {method} {path} timed out after {after_ms} ms")]
    Timeout {
        /// HTTP method.
        method: Method,
        /// Request path.
        path: String,
        /// The deadline that passed.
        after_ms: u64,
    },
    /// Any other transport failure.
    #[error("request {method} {path} failed: {reason}")]
    Transport {
        /// HTTP method.
        method: Method,
        /// Request path.
        path: String,
        /// The transport's explanation.
        reason: String,
    },
    /// The target cannot do what was asked of it.
    #[error("target {target} does not offer {what}")]
    Unsupported {
        /// The target, as described in reports.
        target: String,
        /// What it lacks.
        what: String,
    },
    /// The harness could not build the request (a bug in a case).
    #[error("failed to build request {path}: {reason}")]
    BadRequest {
        /// Request path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The harness should have made a twin of the target with controls on ([`Target::secured`],
    /// [`Target::audited`]) and could not: the cases that check those controls have no
    /// verdict, and say why.
    #[error("failed to start the {twin} twin of {target}: {reason}")]
    Twin {
        /// Which twin: `secured` or `audited`.
        twin: &'static str,
        /// The target, as described in reports.
        target: String,
        /// Why it did not start.
        reason: String,
    },
}

/// A system under test that serves the Open Inference Protocol over HTTP.
///
/// Implementations: [`InProcess`] (the reference engine's router, no socket) and
/// [`HttpTarget`] (any base URL). Suites never know which one they drive.
#[async_trait]
pub trait Target: Send + Sync {
    /// One line describing the target for reports (`in-process gauntlet-engine 0.1.0`).
    fn describe(&self) -> String;
    /// What the target offers beyond the core protocol.
    fn capabilities(&self) -> &Capabilities;
    /// Sends one request; the request URI holds only path and query.
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TargetError>;

    /// A real HTTP base URL serving this target, for drivers that need sockets (load tests).
    ///
    /// The endpoint stays served while the returned value lives. Targets that cannot be reached
    /// over HTTP keep this default, [`TargetError::Unsupported`].
    async fn http_endpoint(&self) -> Result<HttpEndpoint, TargetError> {
        Err(TargetError::Unsupported {
            target: self.describe(),
            what: "an HTTP endpoint".to_owned(),
        })
    }

    /// Whether [`Target::send`] reaches an HTTP API: true but for a `grpc://` target. Cases
    /// that do not need [`Capability::Grpc`] need HTTP, and are skipped when it is false.
    fn speaks_http(&self) -> bool {
        true
    }

    /// Where the target serves the OIP over gRPC, for cases and drivers that speak it; the
    /// in-process engine starts its gRPC server on a loopback port on first use. Targets
    /// without [`Capability::Grpc`] keep this default, [`TargetError::Unsupported`].
    async fn grpc_endpoint(&self) -> Result<GrpcEndpoint, TargetError> {
        Err(TargetError::Unsupported {
            target: self.describe(),
            what: Capability::Grpc.to_string(),
        })
    }

    /// What the `security` suite may use against this target (credentials, keys, raw
    /// address, the secrets to look for); `None` (the default) for a target that offers none.
    fn security(&self) -> Option<&SecurityAccess> {
        None
    }

    /// This target with its security controls switched on, when the harness can make one:
    /// the in-process engine gives an engine of the same build with admin keys, a keyring, a
    /// read token and TLS, all generated for the run. `None` (the default) when the target is
    /// what it is (a URL).
    ///
    /// # Errors
    /// [`TargetError::Twin`] when the harness should make one and could not.
    fn secured(&self) -> Result<Option<Arc<dyn Target>>, TargetError> {
        Ok(None)
    }

    /// This target with the compliance controls on, when the harness can make one: the
    /// in-process engine gives an engine of the same build and models with an audit log and
    /// four-eyes promotion, in a directory of the run. `None` (the default) when the target is
    /// what it is (a URL): its controls are as its operator configured them.
    ///
    /// # Errors
    /// [`TargetError::Twin`] when the harness should make one and could not.
    fn audited(&self) -> Result<Option<Audited>, TargetError> {
        Ok(None)
    }

    /// The requests so far that failed on a reused connection the server had dropped and
    /// were retried on a fresh one, each with the exchange before it on that connection (the
    /// likely cause). Empty (the default) for a target that pools no connections.
    fn connection_retries(&self) -> Retries {
        Retries::default()
    }
}

/// A target with an audit log on a disk the harness can read: what [`Target::audited`] gives.
#[derive(Clone)]
pub struct Audited {
    /// The target, serving the `gauntlet_audit` and `gauntlet_four_eyes` extensions.
    pub target: Arc<dyn Target>,
    /// Its audit log's directory (segments, checkpoints, public key; never the keys), for
    /// offline checks such as `gauntlet audit verify DIR`.
    pub dir: std::path::PathBuf,
    /// Its signing and pseudonymisation key files, when the harness can read them (the
    /// in-process engine's): the compliance suite checks their modes and contents.
    pub keys: Option<AuditKeyFiles>,
}

/// The two key files of an audit log (`audit.signing-key-file`, `audit.pseudonym-key-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditKeyFiles {
    /// The Ed25519 key that signs the checkpoints.
    pub signing: std::path::PathBuf,
    /// The HMAC key of the client pseudonyms.
    pub pseudonym: std::path::PathBuf,
}

impl fmt::Debug for Audited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audited")
            .field("target", &self.target.describe())
            .field("dir", &self.dir)
            .field("keys", &self.keys)
            .finish()
    }
}

/// A response with its status, parsed on demand.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl Reply {
    /// Parses the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Parses the body as the OIP error body `{"error": "..."}`.
    pub fn error_body(&self) -> Result<ErrorBody, serde_json::Error> {
        self.json()
    }

    /// The body as text, lossily, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl From<Response<Bytes>> for Reply {
    fn from(r: Response<Bytes>) -> Self {
        let (parts, body) = r.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// Typed Open Inference Protocol calls, written once over [`Target::send`].
#[async_trait]
pub trait TargetExt: Target {
    /// Sends `method path` with a raw body and an optional content type.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Reply, TargetError> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let request = builder.body(body).map_err(|e| TargetError::BadRequest {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(self.send(request).await?.into())
    }

    /// `GET path`.
    async fn get(&self, path: &str) -> Result<Reply, TargetError> {
        self.call(Method::GET, path, Bytes::new(), None).await
    }

    /// `POST path` with a JSON body.
    async fn post_json<B: Serialize + Sync + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Reply, TargetError> {
        let bytes = serde_json::to_vec(body).map_err(|e| TargetError::BadRequest {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.call(
            Method::POST,
            path,
            Bytes::from(bytes),
            Some("application/json"),
        )
        .await
    }

    /// `POST /v2/models/{model}[/versions/{version}]/infer`.
    async fn infer(
        &self,
        model: &str,
        version: Option<&str>,
        request: &InferRequest,
    ) -> Result<Reply, TargetError> {
        self.post_json(&infer_path(model, version), request).await
    }

    /// Infers and parses a 200 response; anything else is returned as the reply.
    async fn infer_ok(
        &self,
        model: &str,
        request: &InferRequest,
    ) -> Result<Result<InferResponse, Reply>, TargetError> {
        let reply = self.infer(model, None, request).await?;
        if reply.status != StatusCode::OK {
            return Ok(Err(reply));
        }
        match reply.json::<InferResponse>() {
            Ok(r) => Ok(Ok(r)),
            Err(_) => Ok(Err(reply)),
        }
    }
}

impl<T: Target + ?Sized> TargetExt for T {}

/// The infer path of a model, optionally of one version.
pub fn infer_path(model: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("/v2/models/{model}/versions/{v}/infer"),
        None => format!("/v2/models/{model}/infer"),
    }
}

/// A target that answers every request with one fixed status and no body, for unit tests.
#[cfg(test)]
pub(crate) struct Fixed {
    pub(crate) status: StatusCode,
    pub(crate) capabilities: Capabilities,
}

#[cfg(test)]
#[async_trait]
impl Target for Fixed {
    fn describe(&self) -> String {
        format!("fixed {}", self.status)
    }
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
    async fn send(&self, _request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = self.status;
        Ok(response)
    }
}
