//! Infer calls of a remote model: validate, ask the backend through its breaker, and fall
//! back (last good local model → rule model → neutral) when it cannot answer.

use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::body::{parse, read_body, require_json};
use super::error::ApiError;
use super::infer::{OUTPUT_NAME, check_outputs, inject_latency, json_response, predict};
use crate::backend::{Fallback, RemoteModel, Reply};
use crate::oip::{
    Datatype, InferRequest, InferResponse, ModelMetadata, ResponseOutput, ResponseParameters,
};
use crate::state::AppState;

/// Serves `POST /v2/models/{name}/infer` for a remote model.
pub(crate) async fn infer(
    state: &AppState,
    remote: &RemoteModel,
    start: Instant,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answered = match read(state, &headers, body).await {
        Ok((bytes, request)) => answer(state, remote, &headers, bytes, request).await,
        Err(err) => Err(err),
    };
    let response = match answered {
        Ok(Answer::Backend(body)) => passed_on(StatusCode::OK, body),
        Ok(Answer::Refused(status, body)) => passed_on(status, body),
        Ok(Answer::Degraded(response)) => {
            // About 200 bytes of names and framing, up to 25 per prediction and 130 per
            // listed change.
            let capacity = 256
                + response.outputs.iter().map(|o| o.data.len()).sum::<usize>() * 25
                + response.parameters.sanitiser_changes.len() * 130;
            json_response(&response, capacity).unwrap_or_else(IntoResponse::into_response)
        }
        Err(err) => {
            inject_latency(state).await;
            err.into_response()
        }
    };
    state.metrics().observe_remote_request(
        &remote.config().name,
        response.status(),
        start.elapsed(),
    );
    response
}

/// The checks every infer call gets before any model or backend sees it.
async fn read(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, InferRequest), ApiError> {
    require_json(headers)?;
    let config = state.config();
    let bytes = read_body(headers, body, config.max_body_bytes, "max-body-bytes").await?;
    crate::security::limits::check_json_depth(&bytes, config.security.max_json_depth)?;
    let request: InferRequest = parse(&bytes)?;
    check_request(state, &request)?;
    Ok((bytes, request))
}

/// The checks of a parsed request that every transport makes before the backend sees it:
/// the requested outputs and the tensor element limit.
pub(crate) fn check_request(state: &AppState, request: &InferRequest) -> Result<(), ApiError> {
    check_outputs(request.outputs.as_deref())?;
    let values: usize = request.inputs.iter().map(|input| input.data.len()).sum();
    crate::security::limits::check_tensor_elements(
        values,
        state.config().security.max_tensor_elements,
    )
}

/// What a remote model's infer call came to, before any transport renders it.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The backend's 200: a valid OIP infer response (JSON), as it sent it.
    Backend(Bytes),
    /// A client error the backend answered about this request (400, 413, 415, 422): its
    /// status and JSON body, passed on as they are.
    Refused(StatusCode, Bytes),
    /// A fallback's answer, flagged `parameters.degraded`; it has had its injected delay.
    Degraded(InferResponse),
}

/// The transport-free core of a remote model's infer call (HTTP and gRPC): `bytes` (the
/// JSON of `request`) to the backend through its breaker, else the fallback chain. An error
/// has not had its injected delay yet: the caller waits it out, once.
pub(crate) async fn answer(
    state: &AppState,
    remote: &RemoteModel,
    headers: &HeaderMap,
    bytes: Bytes,
    request: InferRequest,
) -> Result<Answer, ApiError> {
    let name = remote.config().name.as_str();
    let breaker = remote.breaker();
    let metrics = state.metrics();
    if breaker.try_acquire_permission() {
        let started = Instant::now();
        let client = remote.client();
        match client.infer(bytes).await {
            Ok(Reply::Served(body)) => {
                breaker.on_success(started.elapsed());
                metrics.breaker_call(name, "success");
                return Ok(Answer::Backend(body));
            }
            Ok(Reply::Refused(status, body)) => {
                // The request's fault, not the backend's: give the permit back.
                breaker.release_permission();
                metrics.breaker_call(name, "ignored");
                return Ok(Answer::Refused(status, body));
            }
            Err(err) => {
                let state_after = breaker.on_error(started.elapsed());
                metrics.breaker_call(name, "failure");
                tracing::warn!(model = %name, error = %err, breaker = state_after.as_str(), "backend call failed");
            }
        }
    } else {
        metrics.breaker_call(name, "not_permitted");
    }
    let (fallback, response) = fallback(state, remote, headers, request).await?;
    metrics.degraded(name, fallback);
    Ok(Answer::Degraded(response))
}

/// The metadata of a remote model the registry does not know: the backend's, under the name
/// clients here use. Not a call the breaker counts: it judges infer calls only.
pub(crate) async fn metadata(remote: &RemoteModel) -> Result<ModelMetadata, ApiError> {
    let name = remote.config().name.as_str();
    match remote.client().metadata().await {
        Ok(mut metadata) => {
            name.clone_into(&mut metadata.name);
            Ok(metadata)
        }
        Err(err) => {
            tracing::warn!(model = %name, error = %err, "backend metadata call failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "model {name:?} is served by a remote backend, which did not give its metadata"
                ),
            ))
        }
    }
}

/// The backend's answer, as it sent it.
fn passed_on(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The first fallback that answers: the live local model of the same name, the rule model,
/// then the neutral prediction (which always answers, or refuses a malformed batch with 400).
async fn fallback(
    state: &AppState,
    remote: &RemoteModel,
    headers: &HeaderMap,
    request: InferRequest,
) -> Result<(Fallback, InferResponse), ApiError> {
    let config = remote.config();
    let candidates = [
        (Fallback::LastGood, Some(config.name.as_str())),
        (Fallback::Rule, config.rule_model.as_deref()),
    ];
    for (fallback, model) in candidates {
        let Some(model) = model.and_then(|m| state.registry().live(m)) else {
            continue;
        };
        match predict(state, model, headers, request.clone(), Some(fallback)).await {
            Ok(response) => return Ok((fallback, response)),
            Err(err) => {
                tracing::debug!(model = %config.name, fallback = fallback.as_str(), error = %err.message, "fallback refused the request");
            }
        }
    }
    Ok((Fallback::Neutral, neutral(state, config, request).await?))
}

async fn neutral(
    state: &AppState,
    config: &crate::backend::RemoteModelConfig,
    request: InferRequest,
) -> Result<InferResponse, ApiError> {
    let rows = batch_rows(&request, state.config().max_batch_rows)?;
    inject_latency(state).await;
    Ok(InferResponse {
        model_name: config.name.clone(),
        model_version: "neutral".to_owned(),
        id: request.id,
        parameters: ResponseParameters {
            degraded: Some(Fallback::Neutral),
            ..ResponseParameters::default()
        },
        outputs: vec![ResponseOutput {
            name: OUTPUT_NAME.to_owned(),
            shape: vec![rows as u64],
            datatype: Datatype::Fp64,
            data: vec![config.neutral; rows],
        }],
    })
}

/// The rows of a batch whose model is unknown here: one tensor `[rows, n]` or `[n]` (one
/// row), or tensors `[rows]`/`[rows, 1]` all of one row count; each tensor's data must fill
/// its shape.
fn batch_rows(request: &InferRequest, max_rows: usize) -> Result<usize, ApiError> {
    let mut rows = None;
    for (i, input) in request.inputs.iter().enumerate() {
        let product = input
            .shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d));
        if product != Some(input.data.len() as u64) {
            return Err(ApiError::bad_request(format!(
                "inputs[{i}].shape: {:?} does not hold the {} values sent",
                input.shape,
                input.data.len()
            )));
        }
        let r = match (request.inputs.len(), input.shape.as_slice()) {
            (1, [_]) => 1,
            (_, [r] | [r, _]) => *r,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "inputs[{i}].shape: expected [rows, n], [n] or [rows], got {:?}",
                    input.shape
                )));
            }
        };
        match rows {
            Some(expected) if expected != r => {
                return Err(ApiError::bad_request(format!(
                    "inputs[{i}].shape[0]: expected {expected} rows (as inputs[0]), got {r}"
                )));
            }
            _ => rows = Some(r),
        }
    }
    let Some(rows) = rows else {
        return Err(ApiError::bad_request(
            "inputs: expected at least one tensor",
        ));
    };
    if rows > max_rows as u64 {
        return Err(ApiError::too_large(format!(
            "inputs[0].shape[0]: {rows} rows exceed the max-batch-rows limit of {max_rows}"
        )));
    }
    Ok(rows as usize)
}
