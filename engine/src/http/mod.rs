//! The HTTP API: Open Inference Protocol (KServe V2) core, the Triton-compatible repository
//! extension and Prometheus metrics. [`app`] builds the router; tests drive it with
//! `tower::ServiceExt::oneshot`, no socket needed.
//!
//! Every error response, including unknown routes (404) and wrong methods (405), is
//! `{"error": "..."}` with a JSON content type. Health and readiness probes answer with empty
//! bodies, as the protocol specifies.

mod audit;
mod body;
mod drain;
mod error;
mod infer;
mod principal;
pub(crate) mod remote;
mod repository;
mod trading;

use std::time::{Duration, Instant};

use axum::Json;
use axum::RequestExt as _;
use axum::Router;
use axum::extract::{MatchedPath, Path, RawPathParams, Request, State};
use axum::handler::Handler as _;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::BodyExt as _;
use tracing::Instrument as _;

use self::error::json_error;
use crate::model::Model;
use crate::oip::{ModelMetadata, ModelMetadataParameters, ServerMetadata, TensorMetadata};
use crate::registry::ModelVersions;
use crate::state::AppState;

/// Server name reported by `GET /v2`.
pub const SERVER_NAME: &str = "gauntlet-engine";
/// Name of the single-tensor input in model metadata.
pub const INPUT_NAME: &str = "features";
pub use self::audit::{AUDIT_EXTENSION, FOUR_EYES_EXTENSION};
pub(crate) use self::body::{check_declared_length, read_body};
pub(crate) use self::error::ApiError;
pub use self::infer::OUTPUT_NAME;
pub(crate) use self::infer::{inject_latency, predict, select_model, unknown_version};
pub use self::principal::{CLIENT_HEADER, PRINCIPAL_HEADER};
pub(crate) use self::repository::LOAD_BODY_DEADLINE;
pub use self::trading::TRADING_EXTENSION;

/// Marks a deliberate error response without a body (readiness probes), which the JSON
/// error layer must leave alone.
#[derive(Clone, Copy)]
struct EmptyBody;

/// Route of unversioned inference.
const INFER_ROUTE: &str = "/v2/models/{m}/infer";
/// Route of versioned inference.
const INFER_VERSION_ROUTE: &str = "/v2/models/{m}/versions/{v}/infer";

/// Builds the engine's router over `state`.
///
/// `request-timeout` applies to every route except the repository extension's
/// (`/v2/repository/...`): a load runs its parse and compile to the end on the blocking pool,
/// so a load answered 408 would still stage its model. Loads are bounded by
/// `max-artifact-bytes` and run one at a time instead.
pub fn app(state: AppState) -> Router {
    let mut data = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(health_live))
        .route("/v2/health/ready", get(health_ready))
        .route("/v2/models/{m}", get(model_metadata))
        .route("/v2/models/{m}/ready", get(model_ready))
        .route(INFER_ROUTE, post(infer::infer))
        .route("/v2/models/{m}/versions/{v}", get(version_metadata))
        .route("/v2/models/{m}/versions/{v}/ready", get(version_ready))
        .route(INFER_VERSION_ROUTE, post(infer::infer_version))
        .route("/metrics", get(metrics))
        .route("/v2/openapi.json", get(openapi));
    if let Some(limit) = state.config().request_timeout {
        data = data.layer(middleware::from_fn_with_state(
            Deadline {
                limit,
                state: state.clone(),
            },
            deadline,
        ));
    }
    let repository = Router::new()
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{m}/load", post(repository::load))
        .route("/v2/repository/models/{m}/unload", post(repository::unload))
        .route(
            "/v2/repository/models/{m}/promote",
            post(repository::promote),
        )
        .route(
            "/v2/repository/models/{m}/rollback",
            post(repository::rollback),
        )
        .route("/v2/repository/models/{m}/review", get(repository::review))
        .route(
            "/v2/repository/models/{m}/approve",
            post(repository::approve),
        )
        .route(
            "/v2/repository/models/{m}/runs",
            post(repository::record_run),
        )
        .route(
            "/v2/repository/models/{m}/backend",
            post(repository::switch_backend),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit::audit_admin,
        ));
    // Signed admin calls (when admin keys are configured) and bearer tokens on the rest
    // (when read tokens are): `route_layer`, so an unknown route is still a plain 404. The
    // signature is checked before the audit log sees the call.
    let repository = repository.route_layer(middleware::from_fn_with_state(
        state.clone(),
        crate::security::auth::admin_auth,
    ));
    if state.security().tokens.is_some() {
        data = data.route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::security::auth::read_auth,
        ));
    }
    // The audit and trading routes that act for a principal are admin routes too
    // (`security::ADMIN_ROUTES`): signed when admin keys are configured. So are the audit
    // log's reads (viewer or auditor): the trading routes' reads stay open.
    let signed =
        || middleware::from_fn_with_state(state.clone(), crate::security::auth::admin_auth);
    let audit_routes = Router::new()
        .route(
            "/v2/audit/checkpoint",
            get(audit::latest_checkpoint.layer(signed()))
                .post(audit::sign_checkpoint.layer(signed())),
        )
        .route(
            "/v2/audit/proof/inclusion",
            get(audit::inclusion.layer(signed())),
        )
        .route(
            "/v2/audit/proof/consistency",
            get(audit::consistency.layer(signed())),
        )
        .route(
            "/v2/audit/records/{index}",
            get(audit::record.layer(signed())),
        )
        .route("/v2/audit/prune", post(audit::prune.layer(signed())))
        .route("/v2/trading/signal", post(trading::signal))
        .route(
            "/v2/trading/kill",
            get(trading::kill_state).post(trading::kill_engage.layer(signed())),
        )
        .route(
            "/v2/trading/kill/release",
            post(trading::kill_release.layer(signed())),
        )
        .route(
            "/v2/trading/algos/{algo}/enable",
            post(trading::enable_algo.layer(signed())),
        )
        .route("/v2/trading/controls", get(trading::controls));
    data.merge(repository)
        .merge(audit_routes)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// What every request passes through, outermost first: the header limits
/// (`security.max-headers`, `security.max-header-bytes`), [`trace`], then
/// [`drain::drain_unread_body`], then [`json_errors`] on the response. One layer rather than
/// three: each `from_fn` layer boxes a clone of the service and a future per request, which
/// was a few percent of the infer path's CPU time.
async fn edge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(err) =
        crate::security::limits::check_headers(req.headers(), &state.config().security)
    {
        return err.into_response();
    }
    trace(req, |req| {
        drain::drain_unread_body(
            req,
            |req| async move { json_errors(next.run(req).await).await },
        )
    })
    .await
}

async fn server_metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    Json(server_info(&state))
}

/// The server's name, version and extensions (`GET /v2`, gRPC `ServerMetadata`).
pub(crate) fn server_info(state: &AppState) -> ServerMetadata {
    let mut extensions = vec![
        "model_repository".to_owned(),
        TRADING_EXTENSION.to_owned(),
        GAUNTLET_EXTENSION.to_owned(),
    ];
    if state.audit().is_some() {
        extensions.push(AUDIT_EXTENSION.to_owned());
    }
    if state.four_eyes() {
        extensions.push(FOUR_EYES_EXTENSION.to_owned());
    }
    ServerMetadata {
        name: SERVER_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        extensions,
    }
}

/// The server-metadata extension that says this server keeps the reference engine's policies
/// beyond the protocol (1 MiB body limit and 413, exact 400/404, feature names in metadata, the
/// `prediction` output, the sanitiser report, `gauntlet_*` metrics): Gauntlet checks them only
/// on a server that lists it.
pub const GAUNTLET_EXTENSION: &str = "gauntlet";

/// The OpenAPI 3 document of every route, checked in as `engine/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn health_live() -> StatusCode {
    StatusCode::OK
}

async fn health_ready(State(state): State<AppState>) -> Response {
    probe(state.is_ready())
}

/// 200 or 400, both with an empty body.
fn probe(ready: bool) -> Response {
    if ready {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::BAD_REQUEST, axum::Extension(EmptyBody)).into_response()
    }
}

pub(crate) fn lookup(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<ModelVersions>, ApiError> {
    state
        .registry()
        .versions(name)
        .ok_or_else(|| ApiError::unknown_model(name))
}

async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let versions = match lookup(&state, &name) {
        Ok(versions) => versions,
        Err(err) => match state.backends().get(&name) {
            Some(remote) => return remote::metadata(remote).await.map(Json),
            None => return Err(err),
        },
    };
    let model = versions
        .primary()
        .ok_or_else(|| ApiError::unknown_model(&name))?;
    Ok(Json(metadata(&versions, model)))
}

async fn version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let versions = lookup(&state, &name)?;
    let model = versions
        .get(&version)
        .ok_or_else(|| infer::unknown_version(&name, &version, &versions))?;
    Ok(Json(metadata(&versions, model)))
}

pub(crate) fn metadata(versions: &ModelVersions, model: &Model) -> ModelMetadata {
    let n = i64::try_from(model.n_features()).unwrap_or(i64::MAX);
    ModelMetadata {
        name: model.name().to_owned(),
        versions: versions
            .retained()
            .iter()
            .map(|(m, _)| m.version().to_owned())
            .collect(),
        platform: format!("gauntlet-{}", model.kind()),
        inputs: vec![TensorMetadata {
            name: INPUT_NAME.to_owned(),
            datatype: "FP64".to_owned(),
            shape: vec![-1, n],
        }],
        outputs: vec![TensorMetadata {
            name: OUTPUT_NAME.to_owned(),
            datatype: "FP64".to_owned(),
            shape: vec![-1],
        }],
        parameters: ModelMetadataParameters {
            feature_names: model.feature_names().to_vec(),
            live_version: versions.live.as_ref().map(|m| m.version().to_owned()),
        },
    }
}

async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(probe(model_is_ready(&state, &name)?))
}

/// Whether `name` answers unversioned infer calls: a remote model always does (from its
/// backend, else from a fallback, flagged), a local one when it has a live version.
pub(crate) fn model_is_ready(state: &AppState, name: &str) -> Result<bool, ApiError> {
    if state.backends().get(name).is_some() {
        return Ok(true);
    }
    Ok(lookup(state, name)?.live.is_some())
}

async fn version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let versions = lookup(&state, &name)?;
    if versions.get(&version).is_none() {
        return Err(infer::unknown_version(&name, &version, &versions));
    }
    let live = versions
        .live
        .as_ref()
        .is_some_and(|m| m.version() == version);
    Ok(probe(live))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics()
        .render(state.registry(), state.backends())
        .map_err(|e| ApiError::internal("failed to render metrics", &e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus::TEXT_FORMAT),
        )],
        text,
    )
        .into_response())
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// The deadline layer's settings.
#[derive(Clone)]
struct Deadline {
    limit: Duration,
    state: AppState,
}

/// Answers 408 when a request outlives `request-timeout`. The handler's future is dropped
/// then, with the request count it would have recorded, so an inference request is counted
/// here.
async fn deadline(State(d): State<Deadline>, mut req: Request, next: Next) -> Response {
    let model = infer_model(&mut req).await;
    let start = Instant::now();
    match tokio::time::timeout(d.limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            if let Some(name) = model {
                d.state.metrics().observe_request(
                    d.state.registry(),
                    Some(&name),
                    StatusCode::REQUEST_TIMEOUT,
                    start.elapsed(),
                );
            }
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request exceeded the request-timeout of {}",
                    humantime::format_duration(d.limit)
                ),
            )
            .into_response()
        }
    }
}

/// The model named by an inference route, `None` for other routes.
async fn infer_model(req: &mut Request) -> Option<String> {
    let route = req.extensions().get::<MatchedPath>()?.as_str();
    if route != INFER_ROUTE && route != INFER_VERSION_ROUTE {
        return None;
    }
    let params = req.extract_parts::<RawPathParams>().await.ok()?;
    params
        .iter()
        .find(|(key, _)| *key == "m")
        .map(|(_, value)| value.to_owned())
}

/// Turns every non-JSON error response (axum's plain-text rejections, its empty 405) into
/// `{"error": ...}`, keeping the status and the `Allow` header.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<EmptyBody>().is_some()
        || is_json(response.headers())
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection bodies are short messages; anything longer is cut rather than buffered.
    let text = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_ascii_lowercase()
    } else {
        text
    };
    let mut out = json_error(status, message);
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// One span per request, with the route template (not the raw path: bounded cardinality).
///
/// The span is at DEBUG, as tower-http's `TraceLayer` makes it: at the default `info` level it
/// is disabled and costs next to nothing, where an enabled span took about a tenth of the
/// infer path's user-space samples in a profile (the subscriber formats and stores its fields
/// on creation and on every `record`). `RUST_LOG=gauntlet_engine=debug` turns it on with the per-request
/// `request finished` line. So that a server error keeps its route at the default level, a
/// 5xx answer is logged at WARN with the method, route and status.
async fn trace<F, Fut>(req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route_str = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::debug_span!(
        "request",
        method = %req.method(),
        route = %route_str,
        model = tracing::field::Empty,
        version = tracing::field::Empty,
    );
    let method = req.method().clone();
    let start = Instant::now();
    let response = if span.is_disabled() {
        inner(req).await
    } else {
        let response = inner(req).instrument(span.clone()).await;
        span.in_scope(|| {
            tracing::debug!(
                status = response.status().as_u16(),
                micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
                "request finished"
            );
        });
        response
    };
    if response.status().is_server_error() {
        tracing::warn!(
            %method,
            route = %route_str,
            status = response.status().as_u16(),
            micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request answered with a server error"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    async fn call(router: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let request = http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn deadline_answers_408_as_json() {
        let router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .layer(middleware::from_fn_with_state(
                Deadline {
                    limit: Duration::from_millis(10),
                    state: AppState::new(crate::EngineConfig::default()),
                },
                deadline,
            ));
        let (status, body) = call(router, "/slow").await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            body["error"],
            "request exceeded the request-timeout of 10ms"
        );
    }

    #[tokio::test]
    async fn plain_text_rejections_become_json() {
        let router = Router::new()
            .route(
                "/n/{x}",
                get(|Path(x): Path<u32>| async move { x.to_string() }),
            )
            .layer(middleware::from_fn(|req: Request, next: Next| async move {
                json_errors(next.run(req).await).await
            }));
        let (status, body) = call(router, "/n/abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains("Cannot parse"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn configured_timeout_is_layered() {
        let config = crate::EngineConfig {
            request_timeout: Some(Duration::from_secs(5)),
            ..crate::EngineConfig::default()
        };
        let (status, body) = call(app(AppState::new(config)), "/v2").await;
        assert_eq!(
            (status, body["name"].as_str()),
            (StatusCode::OK, Some(SERVER_NAME))
        );
    }
}
