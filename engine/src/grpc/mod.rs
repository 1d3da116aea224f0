//! The Open Inference Protocol over gRPC: KServe V2 `inference.GRPCInferenceService` on a
//! second port (`grpc-listen`), over the same [`AppState`] as the HTTP API and through the
//! same infer core (`http::infer::predict`): the same models, validation, sanitiser, limits,
//! metrics, audit and fault injection.
//!
//! Errors are gRPC statuses with the message the HTTP API would put in `{"error": …}`:
//! `NOT_FOUND` for an unknown model or version, `INVALID_ARGUMENT` for a bad tensor,
//! `RESOURCE_EXHAUSTED` for a batch over a limit, `UNAUTHENTICATED` without a valid bearer
//! token when read tokens are configured (`authorization: Bearer …` metadata; the health RPCs
//! are exempt, as the HTTP probes are). Messages are limited to `max-body-bytes`, and calls
//! to `request-timeout`. A model served by a remote backend (`[[remote-model]]`) takes the
//! HTTP API's remote path (`http::remote`): the backend (over HTTP) through its breaker, else
//! the fallback chain, the fallback named in the parameter `degraded` as in the HTTP
//! answer's `parameters.degraded`.

mod batch;
mod convert;

pub use batch::BatchedWrites;

use std::future::Future;
use std::time::Instant;

use gauntlet_oip_grpc::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use gauntlet_oip_grpc::inference::model_metadata_response::TensorMetadata;
use gauntlet_oip_grpc::inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use http::StatusCode;
use tokio::net::TcpListener;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use crate::backend::RemoteModel;
use crate::http::ApiError;
use crate::http::remote::Answer as RemoteAnswer;
use crate::state::AppState;

/// Serves `inference.GRPCInferenceService` (HTTP/2 cleartext) on `listener` until `shutdown`
/// completes, then stops accepting and waits for in-flight calls; bound the wait with a
/// timeout, as for [`crate::serve`].
///
/// # Errors
/// When the server fails (tonic's transport error).
pub async fn serve_grpc(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let config = state.config();
    let mut builder = tonic::transport::Server::builder();
    if let Some(limit) = config.request_timeout {
        builder = builder.timeout(limit);
    }
    // Each connection's answers ready together leave in one write (see `BatchedWrites`).
    let incoming = tonic::codegen::tokio_stream::StreamExt::map(
        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        |accepted| accepted.map(BatchedWrites::new),
    );
    builder
        .add_service(service(state))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The service over `state`, with its message limit (`max-body-bytes`), for a tonic server
/// of the caller's own.
pub fn service(state: AppState) -> GrpcInferenceServiceServer<InferenceService> {
    let limit = state.config().max_body_bytes;
    GrpcInferenceServiceServer::new(InferenceService { state }).max_decoding_message_size(limit)
}

/// The engine's implementation of `inference.GRPCInferenceService`.
#[derive(Clone)]
pub struct InferenceService {
    state: AppState,
}

impl std::fmt::Debug for InferenceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceService").finish_non_exhaustive()
    }
}

impl InferenceService {
    /// A bearer token from `authorization` metadata, when read tokens are configured.
    fn authorize(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(tokens) = self.state.security().tokens.as_ref() else {
            return Ok(());
        };
        let token = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token {
            Some(t) if tokens.accepts(t.as_bytes()) => Ok(()),
            _ => {
                tracing::info!("gRPC call refused: no valid bearer token");
                Err(Status::unauthenticated(
                    crate::security::auth::UNAUTHENTICATED,
                ))
            }
        }
    }

    fn versions(&self, name: &str) -> Result<std::sync::Arc<crate::ModelVersions>, Status> {
        crate::http::lookup(&self.state, name).map_err(status)
    }

    /// A local model's infer call; the flag says whether the registry knows the name (for
    /// the request metrics).
    async fn infer(
        &self,
        metadata: MetadataMap,
        message: ModelInferRequest,
    ) -> (bool, Result<ModelInferResponse, ApiError>) {
        let name = message.model_name.as_str();
        let version = (!message.model_version.is_empty()).then_some(message.model_version.as_str());
        let (known, model) = crate::http::select_model(&self.state, name, version);
        let model = match model {
            Ok(model) => model,
            Err(err) => return (known, Err(err)),
        };
        let result = async {
            let (request, raw) = convert::infer_request(message)?;
            let headers = metadata.into_headers();
            let response =
                crate::http::predict(&self.state, model, &headers, request, None).await?;
            Ok(convert::infer_response(response, raw))
        }
        .await;
        (known, result)
    }

    /// A remote model's infer call, through the same breaker and fallbacks as over HTTP.
    async fn infer_remote(
        &self,
        remote: &RemoteModel,
        metadata: MetadataMap,
        message: ModelInferRequest,
    ) -> Result<ModelInferResponse, RemoteError> {
        let (request, raw) = convert::infer_request(message)?;
        crate::http::remote::check_request(&self.state, &request)?;
        convert::forwardable(&request)?;
        let bytes = serde_json::to_vec(&request)
            .map_err(|e| ApiError::internal("failed to serialise the backend request", &e))?;
        let headers = metadata.into_headers();
        match crate::http::remote::answer(&self.state, remote, &headers, bytes.into(), request)
            .await?
        {
            RemoteAnswer::Backend(body) => {
                // The client checked that this parses before calling it served.
                let response: crate::oip::InferResponse = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::internal("failed to read the backend's answer", &e))?;
                Ok(convert::infer_response(response, raw))
            }
            RemoteAnswer::Refused(status, body) => Err(RemoteError::Backend(ApiError::new(
                status,
                serde_json::from_slice::<crate::oip::ErrorBody>(&body).map_or_else(
                    |_| format!("the backend refused the request with {status}"),
                    |b| b.error,
                ),
            ))),
            RemoteAnswer::Degraded(response) => Ok(convert::infer_response(response, raw)),
        }
    }
}

/// Why a remote model's gRPC infer call failed.
enum RemoteError {
    /// The engine's own error (a bad request, the neutral fallback's refusal).
    Local(ApiError),
    /// The backend refused the request (a 4xx about it).
    Backend(ApiError),
}

impl From<ApiError> for RemoteError {
    fn from(err: ApiError) -> RemoteError {
        RemoteError::Local(err)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        self.authorize(request.metadata())?;
        let ModelReadyRequest { name, version } = request.into_inner();
        if version.is_empty() {
            let ready = crate::http::model_is_ready(&self.state, &name).map_err(status)?;
            return Ok(Response::new(ModelReadyResponse { ready }));
        }
        let versions = self.versions(&name)?;
        if versions.get(&version).is_none() {
            return Err(status(crate::http::unknown_version(
                &name, &version, &versions,
            )));
        }
        let ready = versions
            .live
            .as_ref()
            .is_some_and(|m| m.version() == version);
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.authorize(request.metadata())?;
        let info = crate::http::server_info(&self.state);
        Ok(Response::new(ServerMetadataResponse {
            name: info.name,
            version: info.version,
            extensions: info.extensions,
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.authorize(request.metadata())?;
        let ModelMetadataRequest { name, version } = request.into_inner();
        let versions = match self.versions(&name) {
            Ok(versions) => versions,
            Err(err) => match self
                .state
                .backends()
                .get(&name)
                .filter(|_| version.is_empty())
            {
                Some(remote) => {
                    let m = crate::http::remote::metadata(remote)
                        .await
                        .map_err(status)?;
                    return Ok(Response::new(metadata_response(m)));
                }
                None => return Err(err),
            },
        };
        let model =
            if version.is_empty() {
                versions.primary()
            } else {
                Some(versions.get(&version).ok_or_else(|| {
                    status(crate::http::unknown_version(&name, &version, &versions))
                })?)
            };
        let model = model.ok_or_else(|| status(ApiError::unknown_model(&name)))?;
        let m = crate::http::metadata(&versions, model);
        Ok(Response::new(metadata_response(m)))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let start = Instant::now();
        let (metadata, _, message) = request.into_parts();
        self.authorize(&metadata)?;
        let name = message.model_name.clone();
        let remote = message
            .model_version
            .is_empty()
            .then(|| self.state.backends().get(&name).cloned())
            .flatten();
        let (known, result) = match &remote {
            Some(remote) => {
                let result = self.infer_remote(remote, metadata, message).await;
                // A refusal of the backend is its answer, passed on without the injected
                // delay, as over HTTP.
                let result = result.map_err(|e| match e {
                    RemoteError::Local(err) => (err, true),
                    RemoteError::Backend(err) => (err, false),
                });
                (true, result)
            }
            None => {
                let (known, result) = self.infer(metadata, message).await;
                (known, result.map_err(|err| (err, true)))
            }
        };
        let code = match &result {
            Ok(_) => StatusCode::OK,
            Err((err, delay)) => {
                // As over HTTP: every answer of the engine's own has the injected delay once.
                if *delay {
                    crate::http::inject_latency(&self.state).await;
                }
                err.status
            }
        };
        match remote {
            Some(_) => self
                .state
                .metrics()
                .observe_remote_request(&name, code, start.elapsed()),
            None => self.state.metrics().observe_request(
                self.state.registry(),
                known.then_some(name.as_str()),
                code,
                start.elapsed(),
            ),
        }
        result.map(Response::new).map_err(|(err, _)| status(err))
    }
}

fn metadata_response(m: crate::oip::ModelMetadata) -> ModelMetadataResponse {
    let tensors = |list: Vec<crate::oip::TensorMetadata>| {
        list.into_iter()
            .map(|t| TensorMetadata {
                name: t.name,
                datatype: t.datatype,
                shape: t.shape,
            })
            .collect()
    };
    ModelMetadataResponse {
        name: m.name,
        versions: m.versions,
        platform: m.platform,
        inputs: tensors(m.inputs),
        outputs: tensors(m.outputs),
    }
}

/// The gRPC status of an API error: its HTTP status mapped as gRPC's HTTP mapping does in
/// reverse, with the same message.
fn status(err: ApiError) -> Status {
    let code = match err.status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidArgument,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::CONFLICT => Code::FailedPrecondition,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::NOT_IMPLEMENTED => Code::Unimplemented,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, err.message)
}
