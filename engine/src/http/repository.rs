//! Repository extension (Triton-compatible shapes): index, load (stage), promote, rollback, unload.
//!
//! With `security.admin-keys` set, every route here requires a signed request and a role
//! that allows it (see `crate::security::auth`); without it they are open, and the server
//! binds loopback by default.
//!
//! A load takes a JSON body `{"parameters": {"artifact": {...}}}`, or an artifact file as an
//! `application/octet-stream` body (plain JSON or a `GNTLENC1` envelope), or nothing: then
//! `{model_dir}/{m}.json` or, failing that, `{model_dir}/{m}.enc`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use http::{HeaderMap, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::audit::AuditDetail;
use super::body::{check_declared_length, is_blank, parse, read_body, require_json};
use super::error::ApiError;
use super::principal::{caller, require};
use crate::artifact::{ModelArtifact, is_valid_name};
use crate::oip::{
    LoadRequest, LoadResponse, PromoteResponse, RepositoryIndexRequest, UnloadResponse,
};
use crate::registry::{GauntletRun, IndexEntry, ModelState, Promotion, RegistryError};
use crate::security::auth::Principal;
use crate::state::AppState;

/// Longest time a load may spend receiving its body. The body is read while the load permit
/// is held, so without it one slow uploader would hold every other load back for as long as
/// it liked.
pub(crate) const LOAD_BODY_DEADLINE: Duration = Duration::from_secs(30);

pub(crate) async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<IndexEntry>>, ApiError> {
    let limit = state.config().max_body_bytes;
    let bytes = read_body(&headers, body, limit, "max-body-bytes").await?;
    let request = if is_blank(&bytes) {
        RepositoryIndexRequest::default()
    } else {
        require_json(&headers)?;
        parse::<RepositoryIndexRequest>(&bytes)?
    };
    let mut entries = state.registry().index();
    if request.ready == Some(true) {
        entries.retain(|e| e.state == ModelState::Ready);
    }
    Ok(Json(entries))
}

/// Stages the posted artifact, or `{model_dir}/{m}.json` when none is posted.
///
/// Loads run one at a time (see [`AppState::load_permits`]): the permit is taken before the
/// body is read, so only one artifact is ever buffered, and travels with the blocking parse
/// and compile, so it is released only when the work ends, even if the client has gone away
/// meanwhile. The body must arrive within [`LOAD_BODY_DEADLINE`] (408 otherwise).
pub(crate) async fn load(
    State(state): State<AppState>,
    Path(name): Path<String>,
    signed: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<LoadResponse>, ApiError> {
    let loader = match signed {
        Some(Extension(p)) => Some(p.name),
        // Unsigned: the header names the loader only on an engine without admin keys.
        None => caller(&state, &headers, None)?,
    };
    // The name becomes a file name below: this check is what keeps it inside model_dir.
    if !is_valid_name(&name) {
        return Err(ApiError::bad_request(format!(
            "model name {name:?} must match [A-Za-z0-9_.-]{{1,64}}"
        )));
    }
    let limit = state.config().max_artifact_bytes;
    check_declared_length(&headers, limit, "max-artifact-bytes")?;
    let permit = Arc::clone(state.load_permits())
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal("the load semaphore is closed", &e))?;
    let bytes = read_load_body(&headers, body, limit, LOAD_BODY_DEADLINE).await?;
    let file_body = is_octet_stream(&headers);
    if !is_blank(&bytes) && !file_body {
        require_json(&headers)?;
    }
    let (posted, permit) = if is_blank(&bytes) {
        (None, permit)
    } else if file_body {
        let (opener, expected) = (state.clone(), name.clone());
        blocking(move || {
            let artifact = opener
                .security()
                .open_artifact(&bytes, Some(&expected))
                .map_err(|e| open_error("body", &e))?;
            Ok((Some((artifact, "body")), permit))
        })
        .await?
    } else {
        if state.security().require_encrypted {
            return Err(open_error(
                "parameters.artifact",
                &crate::security::OpenError::PlainRefused,
            ));
        }
        crate::security::limits::check_json_depth(&bytes, state.config().security.max_json_depth)?;
        blocking(move || {
            let request = crate::json::parse::<LoadRequest>(&bytes)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
            let artifact = request.parameters.and_then(|p| p.artifact);
            Ok((artifact.map(|a| (a, "parameters.artifact")), permit))
        })
        .await?
    };
    let (artifact, field, permit) = match posted {
        Some((artifact, field)) => (artifact, field, permit),
        None => {
            let (artifact, permit) = read_model_file(&state, &name, permit).await?;
            (artifact, "file", permit)
        }
    };
    if artifact.name != name {
        return Err(ApiError::bad_request(format!(
            "{field}.name: artifact name {:?} does not match the model {name:?} in the URL",
            artifact.name
        )));
    }
    let registry_state = state.clone();
    let (name, version) = blocking(move || {
        let _permit = permit;
        registry_state
            .registry()
            .load_by(artifact, loader.as_deref())
            .map_err(|err| match err {
                RegistryError::InvalidArtifact(e) => {
                    ApiError::bad_request(format!("{field}: invalid artifact: {e}"))
                }
                other => ApiError::from(other),
            })
    })
    .await?;
    Ok(Json(LoadResponse {
        name,
        version,
        state: "STAGED".to_owned(),
    }))
}

/// Reads a load's body within `deadline`: 408 naming the deadline after it.
async fn read_load_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<bytes::Bytes, ApiError> {
    tokio::time::timeout(
        deadline,
        read_body(headers, body, limit, "max-artifact-bytes"),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "failed to receive the load body within the load body deadline of {}",
                humantime::format_duration(deadline)
            ),
        )
    })?
}

async fn read_model_file(
    state: &AppState,
    name: &str,
    permit: OwnedSemaphorePermit,
) -> Result<(ModelArtifact, OwnedSemaphorePermit), ApiError> {
    let Some(dir) = state.config().model_dir.as_ref() else {
        return Err(ApiError::not_found(
            "parameters.artifact: no artifact posted and no model directory is configured",
        ));
    };
    let limit = state.config().max_artifact_bytes;
    let mut found = None;
    // The plain file first, as before encryption existed; then the encrypted one.
    for file_name in [format!("{name}.json"), format!("{name}.enc")] {
        let path = dir.join(&file_name);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => {
                if meta.len() > limit as u64 {
                    return Err(ApiError::too_large(format!(
                        "model file {file_name:?} is {} bytes, over the max-artifact-bytes limit of {limit}",
                        meta.len()
                    )));
                }
                found = Some((file_name, path));
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ApiError::internal("failed to stat model file", &e)),
        }
    }
    let Some((file_name, path)) = found else {
        return Err(ApiError::not_found(format!(
            "model file \"{name}.json\" not found in the model directory"
        )));
    };
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::internal("failed to read model file", &e))?;
    let (opener, expected) = (state.clone(), name.to_owned());
    blocking(move || {
        let artifact = opener
            .security()
            .open_artifact(&bytes, Some(&expected))
            .map_err(|e| open_error(&format!("model file {file_name:?}"), &e))?;
        Ok((artifact, permit))
    })
    .await
}

/// True for an `application/octet-stream` body: an artifact file, plain or encrypted.
fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// A 400 for an artifact that cannot be opened; the message names where it came from.
fn open_error(field: &str, err: &crate::security::OpenError) -> ApiError {
    match err {
        crate::security::OpenError::Artifact(e) => {
            ApiError::bad_request(format!("{field}: invalid artifact: {e}"))
        }
        other => ApiError::bad_request(format!("{field}: {other}")),
    }
}

/// Runs CPU-heavy work (parsing and compiling large artifacts) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("blocking task failed", &e))?
}

/// Promotes the staged version; with `audit.four-eyes` only once another principal than
/// its loader approved it and a passing Gauntlet run is recorded for its digest (a refusal
/// is `{"error", "control"}`, 403).
pub(crate) async fn promote(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    if !state.four_eyes() {
        return match state.registry().promote(&name) {
            Ok(p) => Json(response(p)).into_response(),
            Err(e) => refusal(e),
        };
    }
    match state.registry().promote_reviewed(&name) {
        Ok((p, review)) => {
            let run = review.last_run.as_ref().map_or("", |r| r.run_id.as_str());
            let detail = format!(
                "digest={} loaded_by={} approved_by={} run={run}",
                review.digest,
                review.loaded_by.as_deref().unwrap_or(""),
                review.approved_by.as_deref().unwrap_or("")
            );
            let body = ReviewedPromotion {
                promotion: response(p),
                digest: review.digest,
                approved_by: review.approved_by,
                run_id: review.last_run.map(|r| r.run_id),
            };
            (Extension(AuditDetail(detail)), Json(body)).into_response()
        }
        Err(e) => refusal(e),
    }
}

/// A four-eyes promotion's answer: the promotion and what it was checked against.
#[derive(serde::Serialize)]
struct ReviewedPromotion {
    #[serde(flatten)]
    promotion: PromoteResponse,
    digest: String,
    approved_by: Option<String>,
    run_id: Option<String>,
}

/// A registry error as JSON; a refusal by a promotion control names it:
/// `{"error": …, "control": "four_eyes"}`.
fn refusal(err: RegistryError) -> Response {
    match err.control() {
        Some(control) => (
            err.http_status(),
            Json(serde_json::json!({"error": err.to_string(), "control": control})),
        )
            .into_response(),
        None => ApiError::from(err).into_response(),
    }
}

/// `GET …/models/{m}/review`: the staged version's digest, loader, approver and latest run.
pub(crate) async fn review(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match state.registry().review(&name) {
        Ok(r) => Json(r).into_response(),
        Err(e) => refusal(e),
    }
}

/// `POST …/models/{m}/approve` body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveRequest {
    /// The digest of the staged artifact being approved (from `review`).
    digest: String,
}

/// Approves the staged version with the given digest; refused for its loader.
pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(name): Path<String>,
    signed: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let approver = match caller(&state, &headers, signed.as_ref().map(|e| &e.0)).and_then(require) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let request: ApproveRequest = match json_body(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match state.registry().approve(&name, &request.digest, &approver) {
        Ok(review) => {
            let detail = format!("digest={} approved_by={approver}", review.digest);
            (Extension(AuditDetail(detail)), Json(review)).into_response()
        }
        Err(e) => refusal(e),
    }
}

/// Records a Gauntlet run (`GauntletRun`) of the staged version's digest; the latest counts.
pub(crate) async fn record_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let run: GauntletRun = match json_body(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if run.run_id.is_empty() || run.run_id.len() > 128 {
        return ApiError::bad_request(format!(
            "run_id: must be 1 to 128 bytes, got {}",
            run.run_id.len()
        ))
        .into_response();
    }
    if let Some(sha) = &run.report_sha256
        && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return ApiError::bad_request("report_sha256: must be 64 hex digits").into_response();
    }
    let detail = format!(
        "digest={} run={} passed={}{}",
        run.digest,
        run.run_id,
        run.passed,
        run.report_sha256
            .as_deref()
            .map(|s| format!(" report_sha256={s}"))
            .unwrap_or_default()
    );
    match state.registry().record_run(&name, run) {
        Ok(review) => (Extension(AuditDetail(detail)), Json(review)).into_response(),
        Err(e) => refusal(e),
    }
}

/// `POST …/models/{m}/backend` body: the remote model's new backend.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendSwitch {
    /// `http://host:port`.
    backend: String,
}

/// `POST …/models/{m}/backend` answer.
#[derive(serde::Serialize)]
struct BackendSwitched {
    name: String,
    backend: String,
    previous: String,
}

/// Sends the remote model `m`'s calls to another backend, atomically (blue/green): calls
/// under way finish on the old one, the breaker is kept. 404 when `m` is no
/// `[[remote-model]]`, 400 for a backend that is not `http://host:port`.
pub(crate) async fn switch_backend(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request: BackendSwitch = match json_body(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(remote) = state.backends().get(&name) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no remote model {name:?}: only a [[remote-model]] has a backend to switch"),
        )
        .into_response();
    };
    match remote.switch_backend(&request.backend) {
        Ok(previous) => {
            tracing::info!(model = %name, backend = %request.backend, previous = %previous, "remote model switched backend");
            let detail = format!("backend={} previous={previous}", request.backend);
            let body = BackendSwitched {
                name,
                backend: request.backend,
                previous,
            };
            (Extension(AuditDetail(detail)), Json(body)).into_response()
        }
        Err(e) => ApiError::bad_request(format!("backend: {e}")).into_response(),
    }
}

/// A small JSON body of an admin call, within `max-body-bytes`.
async fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(
        headers,
        body,
        state.config().max_body_bytes,
        "max-body-bytes",
    )
    .await?;
    require_json(headers)?;
    parse(&bytes)
}

pub(crate) async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PromoteResponse>, ApiError> {
    Ok(Json(response(state.registry().rollback(&name)?)))
}

pub(crate) async fn unload(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UnloadResponse>, ApiError> {
    state.registry().unload(&name)?;
    state.metrics().forget_model(&name);
    Ok(Json(UnloadResponse { name }))
}

fn response(p: Promotion) -> PromoteResponse {
    PromoteResponse {
        name: p.name,
        live_version: p.live,
        previous_version: p.previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::model::tests::{artifact, linear};
    use std::time::Duration;
    use tower::ServiceExt as _;

    /// Starts a load of model `m` through the router while the test holds the load permit;
    /// returns the pending call once it has had time to finish, had it not waited.
    async fn load_behind_held_permit(
        config: EngineConfig,
    ) -> (
        AppState,
        OwnedSemaphorePermit,
        tokio::task::JoinHandle<http::StatusCode>,
    ) {
        let state = AppState::new(config);
        let held = Arc::clone(state.load_permits())
            .acquire_owned()
            .await
            .unwrap();
        let body = serde_json::json!({"parameters": {"artifact": artifact("m", "1", 1, linear(0.0, vec![1.0]))}});
        let request = http::Request::post("/v2/repository/models/m/load")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let router = crate::http::app(state.clone());
        let call = tokio::spawn(async move { router.oneshot(request).await.unwrap().status() });
        tokio::time::sleep(Duration::from_millis(300)).await;
        (state, held, call)
    }

    /// Regression: concurrent loads each took several times their document in memory at once.
    #[tokio::test]
    async fn loads_run_one_at_a_time() {
        let (state, held, call) = load_behind_held_permit(EngineConfig::default()).await;
        assert!(!call.is_finished(), "a load waits for the load permit");
        assert!(state.registry().is_empty());
        drop(held);
        assert_eq!(call.await.unwrap(), http::StatusCode::OK);
        assert!(state.registry().contains("m"));
    }

    /// Regression: a load answered 408 went on to stage its model. Repository routes are
    /// exempt from the request deadline, so the answer is the load's own.
    #[tokio::test]
    async fn request_timeout_does_not_cut_a_load_short() {
        let config = EngineConfig {
            request_timeout: Some(Duration::from_millis(50)),
            ..EngineConfig::default()
        };
        let (state, held, call) = load_behind_held_permit(config).await;
        assert!(!call.is_finished(), "no 408 after the 50ms request-timeout");
        drop(held);
        assert_eq!(call.await.unwrap(), http::StatusCode::OK);
        assert!(state.registry().contains("m"));
    }

    /// A body that records whether it was polled and never ends.
    struct Watched(Arc<std::sync::atomic::AtomicBool>);

    impl http_body::Body for Watched {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            std::task::Poll::Pending
        }
    }

    /// Regression: each load buffered its whole body before waiting for the load permit, so
    /// 24 concurrent 16 MB loads held 24 bodies in memory at once.
    #[tokio::test]
    async fn a_load_reads_its_body_only_with_the_permit() {
        let state = AppState::new(EngineConfig::default());
        let held = Arc::clone(state.load_permits())
            .acquire_owned()
            .await
            .unwrap();
        let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let request = http::Request::post("/v2/repository/models/m/load")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::new(Watched(Arc::clone(&polled))))
            .unwrap();
        let router = crate::http::app(state.clone());
        let call = tokio::spawn(async move { router.oneshot(request).await.unwrap().status() });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !polled.load(std::sync::atomic::Ordering::SeqCst),
            "the body was read while another load held the permit"
        );
        drop(held);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(polled.load(std::sync::atomic::Ordering::SeqCst));
        call.abort();
    }

    #[tokio::test]
    async fn a_load_body_slower_than_the_deadline_gets_408() {
        let body = Body::new(Watched(Arc::default()));
        let err = read_load_body(&HeaderMap::new(), body, 10, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            err.message,
            "failed to receive the load body within the load body deadline of 20ms"
        );
    }

    #[tokio::test]
    async fn a_declared_oversized_load_is_refused_without_the_permit() {
        let state = AppState::new(EngineConfig::default());
        let _held = Arc::clone(state.load_permits())
            .acquire_owned()
            .await
            .unwrap();
        let request = http::Request::post("/v2/repository/models/m/load")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, "999999999")
            .body(Body::new(Watched(Arc::default())))
            .unwrap();
        let response = tokio::time::timeout(
            Duration::from_secs(2),
            crate::http::app(state).oneshot(request),
        )
        .await
        .expect("answered without waiting for the permit")
        .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// One request through the router as `who`; status and JSON body.
    async fn call(
        router: &axum::Router,
        method: &str,
        uri: &str,
        who: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(crate::http::PRINCIPAL_HEADER, who);
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// CMP-4EYES, CMP-TEST: self-approval and untested promotion are refused with the
    /// control's name; approval, run and promotion are audit records carrying the digest.
    #[tokio::test]
    async fn four_eyes_promotion_over_http_is_refused_then_audited() {
        let tmp = tempfile::tempdir().unwrap();
        let mut audit =
            crate::audit::AuditConfig::new(tmp.path().join("log"), tmp.path().join("keys"));
        audit.four_eyes = true;
        let state = AppState::open(EngineConfig {
            audit: Some(audit),
            ..EngineConfig::default()
        })
        .unwrap();
        let router = crate::http::app(state.clone());
        let (_, meta) = call(&router, "GET", "/v2", "x", None).await;
        assert!(
            meta["extensions"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(crate::http::FOUR_EYES_EXTENSION)),
            "{meta}"
        );
        let body = serde_json::json!({"parameters": {"artifact": artifact("m", "1", 1, linear(0.0, vec![1.0]))}});
        let base = "/v2/repository/models/m";
        let (status, _) = call(
            &router,
            "POST",
            &format!("{base}/load"),
            "alice",
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, review) = call(&router, "GET", &format!("{base}/review"), "alice", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(review["loaded_by"], "alice");
        let digest = review["digest"].as_str().unwrap().to_owned();
        let approve = serde_json::json!({ "digest": digest });

        let (status, err) = call(&router, "POST", &format!("{base}/promote"), "alice", None).await;
        assert_eq!(
            (status, err["control"].as_str()),
            (StatusCode::FORBIDDEN, Some("four_eyes"))
        );
        let (status, err) = call(
            &router,
            "POST",
            &format!("{base}/approve"),
            "alice",
            Some(approve.clone()),
        )
        .await;
        assert_eq!(
            (status, err["control"].as_str()),
            (StatusCode::FORBIDDEN, Some("four_eyes"))
        );
        assert!(
            err["error"].as_str().unwrap().contains("alice loaded"),
            "{err}"
        );
        let (status, _) = call(
            &router,
            "POST",
            &format!("{base}/approve"),
            "bob",
            Some(approve),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, err) = call(&router, "POST", &format!("{base}/promote"), "bob", None).await;
        assert_eq!(
            (status, err["control"].as_str()),
            (StatusCode::FORBIDDEN, Some("tested_before_live"))
        );
        let run = serde_json::json!({"run_id": "ci-42", "digest": digest, "passed": true});
        let (status, _) = call(&router, "POST", &format!("{base}/runs"), "ci", Some(run)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, promoted) =
            call(&router, "POST", &format!("{base}/promote"), "bob", None).await;
        assert_eq!(status, StatusCode::OK, "{promoted}");
        assert_eq!(
            (
                promoted["live_version"].as_str(),
                promoted["digest"].as_str()
            ),
            (Some("1"), Some(digest.as_str()))
        );
        assert!(state.registry().live("m").is_some());

        let log = state.audit().unwrap();
        let trail: Vec<(Action, Outcome, String, Option<String>)> = (0..log.len())
            .map(|i| {
                let r = crate::audit::decode_payload(&log.read_payload(i).unwrap()).unwrap();
                (
                    r.event.action,
                    r.event.outcome,
                    r.event.principal,
                    r.event.detail,
                )
            })
            .collect();
        let kinds: Vec<(Action, Outcome)> = trail.iter().map(|t| (t.0, t.1)).collect();
        use crate::audit::{Action, Outcome};
        assert_eq!(
            kinds,
            vec![
                (Action::ModelLoad, Outcome::Ok),
                (Action::ModelPromote, Outcome::Refused),
                (Action::ModelApprove, Outcome::Refused),
                (Action::ModelApprove, Outcome::Ok),
                (Action::ModelPromote, Outcome::Refused),
                (Action::GauntletRun, Outcome::Ok),
                (Action::ModelPromote, Outcome::Ok),
            ]
        );
        for i in [3, 5, 6] {
            let detail = trail[i].3.as_deref().unwrap();
            assert!(detail.contains(&format!("digest={digest}")), "{detail}");
        }
        assert!(
            trail[5]
                .3
                .as_deref()
                .unwrap()
                .contains("run=ci-42 passed=true")
        );
        assert!(trail[6].3.as_deref().unwrap().contains("approved_by=bob"));
        log.close().await;
    }

    #[tokio::test]
    async fn blocking_passes_results_through() {
        assert_eq!(blocking(|| Ok(3)).await.unwrap(), 3);
        let err = blocking::<()>(|| Err(ApiError::bad_request("x")))
            .await
            .unwrap_err();
        assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
    }
}
