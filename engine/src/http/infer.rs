//! `POST /v2/models/{m}[/versions/{v}]/infer`: decode tensors, sanitise, predict.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use super::body::{parse, read_body, require_json};
use super::error::ApiError;
use crate::model::Model;
use crate::oip::{
    Datatype, InferRequest, InferResponse, MAX_REPORTED_CHANGES, RequestInput, RequestOutput,
    ResponseOutput, ResponseParameters, SanitiserChange,
};
use crate::registry::ModelVersions;
use crate::state::AppState;

/// Name of the single output tensor (`prediction`).
pub const OUTPUT_NAME: &str = "prediction";
/// Largest magnitude an INT64 value may have: 2^53 − 1. JSON numbers are read as `f64`,
/// which holds every integer up to 2^53 exactly, but 2^53 + 1 already reads as 2^53; so from
/// 2^53 on a value may have been rounded, and it is refused rather than served rounded.
const INT64_LIMIT: f64 = 9_007_199_254_740_991.0;
/// Most work (rows × [`Model::cost_per_row`]) served inline on the async worker, about half a
/// millisecond in a release build. A larger batch runs on the blocking pool, so that probes,
/// the request deadline and shutdown are not held up behind it.
const INLINE_WORK: usize = 20_000;

// The handlers take the request whole rather than a `HeaderMap` extractor, which clones
// every header of every request.
pub(crate) async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    infer_named(&state, &name, None, parts.headers, body).await
}

pub(crate) async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    infer_named(&state, &name, Some(&version), parts.headers, body).await
}

/// Picks the model an infer call names (the live version, or `version`) and serves the call.
async fn infer_named(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    if version.is_none()
        && let Some(remote) = state.backends().get(name)
    {
        let remote = Arc::clone(remote);
        return super::remote::infer(state, &remote, start, headers, body).await;
    }
    let (known, model) = select_model(state, name, version);
    finish(state, name, known, start, model, headers, body).await
}

/// The local model an infer call names: its live version, or `version`. The flag says
/// whether the registry knows the name (for the request metrics).
pub(crate) fn select_model(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> (bool, Result<Arc<Model>, ApiError>) {
    let versions = state.registry().versions(name);
    let model = match (&versions, version) {
        (None, _) => Err(ApiError::unknown_model(name)),
        (Some(v), None) => v.live.clone().ok_or_else(|| {
            ApiError::bad_request(format!(
                "model {name:?} has no live version; promote a staged version or infer a version explicitly"
            ))
        }),
        (Some(v), Some(version)) => v
            .get(version)
            .cloned()
            .ok_or_else(|| unknown_version(name, version, v)),
    };
    (versions.is_some(), model)
}

pub(crate) fn unknown_version(name: &str, version: &str, versions: &ModelVersions) -> ApiError {
    let retained: Vec<&str> = versions
        .retained()
        .iter()
        .map(|(m, _)| m.version())
        .collect();
    ApiError::not_found(format!(
        "model {name:?} has no version {version:?}; retained versions: {retained:?}"
    ))
}

async fn finish(
    state: &AppState,
    name: &str,
    known: bool,
    start: Instant,
    model: Result<Arc<Model>, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match model {
        Ok(model) => {
            let span = tracing::Span::current();
            if !span.is_disabled() {
                span.record("model", model.name());
                span.record("version", model.version());
            }
            serve(state, model, &headers, body).await
        }
        Err(err) => Err(err),
    };
    // A served request had its delay in `serve`, before its sanitiser changes were counted.
    let response = match result {
        Ok(response) => response,
        Err(err) => {
            inject_latency(state).await;
            err.into_response()
        }
    };
    state.metrics().observe_request(
        state.registry(),
        known.then_some(name),
        response.status(),
        start.elapsed(),
    );
    response
}

/// Serves one request with one model snapshot from start to end.
async fn serve(
    state: &AppState,
    model: Arc<Model>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(headers)?;
    let config = state.config();
    let bytes = read_body(headers, body, config.max_body_bytes, "max-body-bytes").await?;
    crate::security::limits::check_json_depth(&bytes, config.security.max_json_depth)?;
    let request: InferRequest = parse(&bytes)?;
    drop(bytes);
    let predicted = predict(state, model, headers, request, None).await?;
    // About 200 bytes of names and framing, up to 25 per prediction and 130 per listed change.
    let capacity = 256
        + predicted.outputs[0].data.len() * 25
        + predicted.parameters.sanitiser_changes.len() * 130;
    // `Ok` from here on: this answer has had its delay.
    Ok(json_response(&predicted, capacity).unwrap_or_else(IntoResponse::into_response))
}

/// The transport-free core of an infer call (HTTP and gRPC): checks the requested outputs and
/// the limits, decodes, sanitises and predicts with `model`, waits out `inject-latency`,
/// counts the sanitiser changes and audits the prediction. The answer has one output,
/// [`OUTPUT_NAME`].
pub(crate) async fn predict(
    state: &AppState,
    model: Arc<Model>,
    headers: &HeaderMap,
    request: InferRequest,
    degraded: Option<crate::backend::Fallback>,
) -> Result<InferResponse, ApiError> {
    let config = state.config();
    check_outputs(request.outputs.as_deref())?;
    let InferRequest { id, inputs, .. } = request;
    let max_rows = config.max_batch_rows;
    let values: usize = inputs.iter().map(|input| input.data.len()).sum();
    crate::security::limits::check_tensor_elements(values, config.security.max_tensor_elements)?;
    let work = (values / model.n_features()).saturating_mul(model.cost_per_row());
    let Batch {
        predictions,
        mut changes,
    } = if work <= INLINE_WORK {
        run_batch(&model, &inputs, max_rows, &AtomicBool::new(false))?
    } else {
        run_blocking(state, Arc::clone(&model), inputs, max_rows).await?
    };
    if let Some(row) = predictions.iter().position(|p| !p.is_finite()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("row {row}: the model produced a non-finite prediction for this input"),
        ));
    }
    // The delay stands for a slower model: a request that times out in it has had no answer,
    // so its changes are counted only after it.
    inject_latency(state).await;
    state
        .metrics()
        .record_changes(state.registry(), model.name(), &changes);
    let sanitiser_changes_total = changes.len();
    changes.truncate(MAX_REPORTED_CHANGES);
    let rows = predictions.len() as u64;
    super::audit::record_prediction(state, headers, &model, id.as_deref(), rows)?;
    Ok(InferResponse {
        model_name: model.name().to_owned(),
        model_version: model.version().to_owned(),
        id,
        parameters: ResponseParameters {
            sanitiser_changes: changes,
            sanitiser_changes_total,
            degraded,
        },
        outputs: vec![ResponseOutput {
            name: OUTPUT_NAME.to_owned(),
            shape: vec![rows],
            datatype: Datatype::Fp64,
            data: predictions,
        }],
    })
}

/// Waits out the configured `inject-latency` (fault injection), if any: once per infer
/// response, whatever its status.
pub(crate) async fn inject_latency(state: &AppState) {
    let delay = state.config().inject_latency;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// `value` as a JSON response, written into a buffer of `capacity` bytes: axum's `Json`
/// starts at 128 and grows (copying) on every infer answer.
pub(crate) fn json_response(value: &InferResponse, capacity: usize) -> Result<Response, ApiError> {
    let mut body = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut body, value)
        .map_err(|e| ApiError::internal("failed to serialise the infer response", &e))?;
    Ok((
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Refuses a requested output the engine does not have.
pub(crate) fn check_outputs(outputs: Option<&[RequestOutput]>) -> Result<(), ApiError> {
    match outputs
        .unwrap_or_default()
        .iter()
        .enumerate()
        .find(|(_, o)| o.name != OUTPUT_NAME)
    {
        Some((i, o)) => Err(ApiError::bad_request(format!(
            "outputs[{i}].name: unknown output {:?}; the only output is {OUTPUT_NAME:?}",
            o.name
        ))),
        None => Ok(()),
    }
}

/// A predicted batch and every sanitiser change made to it.
struct Batch {
    predictions: Vec<f64>,
    changes: Vec<SanitiserChange>,
}

/// Decodes, sanitises and predicts; stops early once `cancelled` is set.
fn run_batch(
    model: &Model,
    inputs: &[RequestInput],
    max_rows: usize,
    cancelled: &AtomicBool,
) -> Result<Batch, ApiError> {
    let values = decode(model, inputs, max_rows)?;
    let sanitised = model.sanitise(&values)?;
    drop(values);
    let predictions = model
        .predict_batch_until(&sanitised.values, cancelled)
        .ok_or_else(|| {
            // Nobody reads this: the request that wanted the batch is gone.
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request ended before its batch was predicted",
            )
        })?;
    Ok(Batch {
        predictions,
        changes: sanitised.changes,
    })
}

/// [`run_batch`] on the blocking pool, at most one batch per core at a time. When the request
/// is dropped (its deadline passed, the client left, shutdown gave up on it), the batch stops
/// at its next cancellation check.
async fn run_blocking(
    state: &AppState,
    model: Arc<Model>,
    inputs: Vec<RequestInput>,
    max_rows: usize,
) -> Result<Batch, ApiError> {
    let permit = Arc::clone(state.compute_permits())
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal("the compute semaphore is closed", &e))?;
    let cancel = CancelOnDrop::default();
    let cancelled = Arc::clone(&cancel.0);
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        crate::test_hooks::hold_batch(model.name(), &cancelled);
        run_batch(&model, &inputs, max_rows, &cancelled)
    })
    .await;
    drop(cancel);
    result.map_err(|e| ApiError::internal("inference task failed", &e))?
}

/// Sets its flag when dropped, with the future of the request that owns it.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Turns the request tensors into a flat row-major batch of `rows × n_features` values.
///
/// Accepts one tensor `[rows, n]` (or `[n]` for one row) under any name, or one tensor per
/// feature, named after it, each `[rows]` or `[rows, 1]`.
pub(crate) fn decode(
    model: &Model,
    inputs: &[RequestInput],
    max_rows: usize,
) -> Result<Vec<Option<f64>>, ApiError> {
    let n = model.n_features();
    let per_feature = match inputs {
        [] => {
            return Err(ApiError::bad_request(format!(
                "inputs: expected one tensor of shape [rows, {n}] or {n} tensors named after the features ({}), got none",
                feature_list(model)
            )));
        }
        [only] => {
            let named_after_feature = model.feature_index(&only.name).is_some();
            let single_shape = matches!(only.shape.as_slice(), [c] | [_, c] if *c == n as u64);
            named_after_feature && (n == 1 || !single_shape)
        }
        _ => true,
    };
    if per_feature {
        decode_per_feature(model, inputs, max_rows)
    } else {
        decode_single(n, &inputs[0], max_rows)
    }
}

fn decode_single(
    n: usize,
    input: &RequestInput,
    max_rows: usize,
) -> Result<Vec<Option<f64>>, ApiError> {
    let rows = match *input.shape.as_slice() {
        [cols] if cols == n as u64 => 1,
        [rows, cols] if cols == n as u64 => rows,
        [_, cols] => {
            return Err(ApiError::bad_request(format!(
                "inputs[0].shape[1]: expected {n} (the model's feature count), got {cols}"
            )));
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "inputs[0].shape: expected [rows, {n}] or [{n}], got {:?}",
                input.shape
            )));
        }
    };
    let rows = check_rows(rows, "inputs[0].shape[0]", max_rows)?;
    let Some(len) = rows.checked_mul(n) else {
        return Err(ApiError::too_large(format!(
            "inputs[0].shape: {rows} rows of {n} features overflow the address space"
        )));
    };
    check_len(input, 0, len)?;
    input
        .data
        .iter()
        .enumerate()
        .map(|(j, v)| convert(input.datatype, *v, 0, j))
        .collect()
}

fn decode_per_feature(
    model: &Model,
    inputs: &[RequestInput],
    max_rows: usize,
) -> Result<Vec<Option<f64>>, ApiError> {
    let n = model.n_features();
    let mut by_feature: Vec<Option<usize>> = vec![None; n];
    for (i, input) in inputs.iter().enumerate() {
        let Some(f) = model.feature_index(&input.name) else {
            return Err(ApiError::bad_request(format!(
                "inputs[{i}].name: {:?} is not a feature of model {:?}; send one tensor of shape [rows, {n}] or one tensor per feature named after it ({})",
                input.name,
                model.name(),
                feature_list(model)
            )));
        };
        if by_feature[f].replace(i).is_some() {
            return Err(ApiError::bad_request(format!(
                "inputs[{i}].name: duplicate tensor for feature {:?}",
                input.name
            )));
        }
    }
    if let Some(missing) = by_feature.iter().position(Option::is_none) {
        return Err(ApiError::bad_request(format!(
            "inputs: missing tensor for feature {:?}; expected {n} tensors, one per feature, got {}",
            model.feature_names()[missing],
            inputs.len()
        )));
    }
    let mut rows: Option<(usize, usize)> = None; // (rows, input that set it)
    for (i, input) in inputs.iter().enumerate() {
        let r = match *input.shape.as_slice() {
            [r] | [r, 1] => r,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "inputs[{i}].shape: expected [rows] or [rows, 1] for a per-feature tensor, got {:?}",
                    input.shape
                )));
            }
        };
        let r = check_rows(r, &format!("inputs[{i}].shape[0]"), max_rows)?;
        match rows {
            Some((expected, first)) if expected != r => {
                return Err(ApiError::bad_request(format!(
                    "inputs[{i}].shape[0]: expected {expected} rows (as inputs[{first}]), got {r}"
                )));
            }
            Some(_) => {}
            None => rows = Some((r, i)),
        }
        check_len(input, i, r)?;
    }
    let rows = rows.map_or(0, |(r, _)| r);
    let mut values = vec![None; rows * n];
    for (f, i) in by_feature.into_iter().enumerate() {
        let Some(i) = i else { continue };
        let input = &inputs[i];
        for (r, v) in input.data.iter().enumerate() {
            values[r * n + f] = convert(input.datatype, *v, i, r)?;
        }
    }
    Ok(values)
}

fn check_rows(rows: u64, field: &str, max_rows: usize) -> Result<usize, ApiError> {
    if rows == 0 {
        return Err(ApiError::bad_request(format!(
            "{field}: a batch needs at least 1 row, got 0"
        )));
    }
    match usize::try_from(rows) {
        Ok(r) if r <= max_rows => Ok(r),
        _ => Err(ApiError::too_large(format!(
            "{field}: batch of {rows} rows exceeds the max-batch-rows limit of {max_rows}"
        ))),
    }
}

fn check_len(input: &RequestInput, i: usize, expected: usize) -> Result<(), ApiError> {
    if input.data.len() == expected {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "inputs[{i}].data: shape {:?} needs {expected} values, got {}",
            input.shape,
            input.data.len()
        )))
    }
}

fn convert(
    datatype: Datatype,
    value: Option<f64>,
    i: usize,
    j: usize,
) -> Result<Option<f64>, ApiError> {
    let Some(x) = value else { return Ok(None) };
    match datatype {
        Datatype::Fp64 => Ok(Some(x)),
        Datatype::Fp32 => {
            // The tensor is declared FP32: use the value the client's f32 holds. Rounding to
            // the nearest f32 keeps values up to f32::MAX (3.4028235e38 as written) finite.
            let narrowed = x as f32;
            if narrowed.is_infinite() {
                Err(ApiError::bad_request(format!(
                    "inputs[{i}].data[{j}]: {x:?} is out of range for FP32 (max magnitude {:?})",
                    f32::MAX
                )))
            } else {
                Ok(Some(f64::from(narrowed)))
            }
        }
        Datatype::Int64 => {
            if x.fract() != 0.0 {
                Err(ApiError::bad_request(format!(
                    "inputs[{i}].data[{j}]: {x:?} is not an INT64 integer"
                )))
            } else if x.abs() > INT64_LIMIT {
                Err(ApiError::bad_request(format!(
                    "inputs[{i}].data[{j}]: {x:.0} exceeds the INT64 limit of ±{INT64_LIMIT:.0} \
                     (2^53 - 1), beyond which JSON integers are not read exactly"
                )))
            } else {
                Ok(Some(x))
            }
        }
    }
}

/// The first few feature names, for error messages that must stay short.
fn feature_list(model: &Model) -> String {
    const SHOWN: usize = 8;
    let names = model.feature_names();
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(", … {} more", names.len() - SHOWN));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{artifact, linear};

    fn model(n: usize) -> Model {
        Model::from_artifact(artifact("m", "1", n, linear(0.0, vec![1.0; n]))).unwrap()
    }

    fn input(name: &str, shape: &[u64], datatype: Datatype, data: &[Option<f64>]) -> RequestInput {
        RequestInput {
            name: name.into(),
            shape: shape.to_vec(),
            datatype,
            data: data.to_vec(),
        }
    }

    fn err(m: &Model, inputs: &[RequestInput]) -> ApiError {
        decode(m, inputs, 10).unwrap_err()
    }

    #[test]
    fn single_tensor_shapes() {
        let m = model(2);
        let d = [Some(1.0), Some(2.0), Some(3.0), None];
        assert_eq!(
            decode(&m, &[input("x", &[2, 2], Datatype::Fp64, &d)], 10).unwrap(),
            d
        );
        assert_eq!(
            decode(&m, &[input("x", &[2], Datatype::Fp64, &d[..2])], 10).unwrap(),
            &d[..2]
        );
        let e = err(&m, &[input("x", &[2, 3], Datatype::Fp64, &d)]);
        assert_eq!(
            e.message,
            "inputs[0].shape[1]: expected 2 (the model's feature count), got 3"
        );
        let e = err(&m, &[input("x", &[1, 2, 2], Datatype::Fp64, &d)]);
        assert!(
            e.message
                .starts_with("inputs[0].shape: expected [rows, 2] or [2]"),
            "{}",
            e.message
        );
        let e = err(&m, &[input("x", &[3, 2], Datatype::Fp64, &d)]);
        assert_eq!(
            e.message,
            "inputs[0].data: shape [3, 2] needs 6 values, got 4"
        );
    }

    #[test]
    fn row_limits() {
        let m = model(1);
        let e = err(&m, &[input("x", &[0, 1], Datatype::Fp64, &[])]);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("at least 1 row"));
        let e = err(
            &m,
            &[input("x", &[11, 1], Datatype::Fp64, &[Some(0.0); 11])],
        );
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            e.message.contains("max-batch-rows limit of 10"),
            "{}",
            e.message
        );
        let e = err(&m, &[input("x", &[u64::MAX, 1], Datatype::Fp64, &[])]);
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn per_feature_tensors_any_order() {
        let m = model(2);
        let inputs = [
            input("f1", &[2, 1], Datatype::Fp64, &[Some(10.0), Some(20.0)]),
            input("f0", &[2], Datatype::Fp64, &[Some(1.0), None]),
        ];
        assert_eq!(
            decode(&m, &inputs, 10).unwrap(),
            vec![Some(1.0), Some(10.0), None, Some(20.0)]
        );
    }

    #[test]
    fn per_feature_errors_name_the_field() {
        let m = model(2);
        let a = input("f0", &[1], Datatype::Fp64, &[Some(1.0)]);
        let e = err(
            &m,
            &[a.clone(), input("zz", &[1], Datatype::Fp64, &[Some(1.0)])],
        );
        assert!(
            e.message
                .starts_with("inputs[1].name: \"zz\" is not a feature"),
            "{}",
            e.message
        );
        let e = err(&m, &[a.clone(), a.clone()]);
        assert_eq!(
            e.message,
            "inputs[1].name: duplicate tensor for feature \"f0\""
        );
        let e = err(&m, std::slice::from_ref(&a));
        assert!(
            e.message
                .starts_with("inputs: missing tensor for feature \"f1\""),
            "{}",
            e.message
        );
        let e = err(
            &m,
            &[
                a.clone(),
                input("f1", &[2], Datatype::Fp64, &[Some(1.0); 2]),
            ],
        );
        assert_eq!(
            e.message,
            "inputs[1].shape[0]: expected 1 rows (as inputs[0]), got 2"
        );
        let e = err(
            &m,
            &[
                a.clone(),
                input("f1", &[1, 2], Datatype::Fp64, &[Some(1.0); 2]),
            ],
        );
        assert!(
            e.message
                .starts_with("inputs[1].shape: expected [rows] or [rows, 1]"),
            "{}",
            e.message
        );
        let e = err(&m, &[a, input("f1", &[1], Datatype::Fp64, &[])]);
        assert_eq!(e.message, "inputs[1].data: shape [1] needs 1 values, got 0");
        let e = err(&m, &[]);
        assert!(
            e.message
                .starts_with("inputs: expected one tensor of shape [rows, 2]"),
            "{}",
            e.message
        );
    }

    #[test]
    fn single_feature_model_accepts_both_forms() {
        let m = model(1);
        let d = [Some(1.0), Some(2.0)];
        assert_eq!(
            decode(&m, &[input("f0", &[2], Datatype::Fp64, &d)], 10).unwrap(),
            d
        );
        assert_eq!(
            decode(&m, &[input("x", &[2, 1], Datatype::Fp64, &d)], 10).unwrap(),
            d
        );
        // A feature-named [n] tensor of a multi-feature model is a single row.
        let m = model(2);
        assert_eq!(
            decode(&m, &[input("f0", &[2], Datatype::Fp64, &d)], 10).unwrap(),
            d
        );
    }

    #[test]
    fn datatypes() {
        let m = model(1);
        let got = decode(&m, &[input("x", &[1], Datatype::Fp32, &[Some(0.1)])], 10).unwrap();
        assert_eq!(got, [Some(f64::from(0.1f32))]);
        let e = err(&m, &[input("x", &[1], Datatype::Fp32, &[Some(1e300)])]);
        assert!(
            e.message
                .starts_with("inputs[0].data[0]: 1e300 is out of range for FP32"),
            "{}",
            e.message
        );
        let got = decode(&m, &[input("x", &[1], Datatype::Int64, &[Some(-3.0)])], 10).unwrap();
        assert_eq!(got, [Some(-3.0)]);
        let e = err(&m, &[input("x", &[1], Datatype::Int64, &[Some(1.5)])]);
        assert_eq!(e.message, "inputs[0].data[0]: 1.5 is not an INT64 integer");
        let e = err(&m, &[input("x", &[1], Datatype::Int64, &[Some(1e19)])]);
        assert!(e.message.contains("INT64 limit"), "{}", e.message);
    }

    /// Regression: the FP32 check compared with `f32::MAX` widened, so `3.4028235e38` (how
    /// f32::MAX is written) was refused though it rounds to f32::MAX.
    #[test]
    fn fp32_accepts_its_largest_value_as_written() {
        let m = model(1);
        for x in [3.402_823_5e38, -3.402_823_5e38] {
            let got = decode(&m, &[input("x", &[1], Datatype::Fp32, &[Some(x)])], 10).unwrap();
            assert_eq!(got, [Some(f64::from(f32::MAX).copysign(x))]);
        }
        let e = err(&m, &[input("x", &[1], Datatype::Fp32, &[Some(3.5e38)])]);
        assert!(e.message.contains("out of range for FP32"), "{}", e.message);
    }

    /// Regression: `9007199254740993` was served as 9007199254740992; the old limit claimed
    /// f64 holds integers exactly up to 2^63.
    #[test]
    fn int64_beyond_2_pow_53_is_refused_not_rounded() {
        let m = model(1);
        let limit = 9_007_199_254_740_991.0;
        for x in [limit, -limit] {
            let got = decode(&m, &[input("x", &[1], Datatype::Int64, &[Some(x)])], 10).unwrap();
            assert_eq!(got, [Some(x)]);
        }
        let read: f64 = serde_json::from_str("9007199254740993").unwrap();
        let e = err(
            &m,
            &[input(
                "x",
                &[2, 1],
                Datatype::Int64,
                &[Some(1.0), Some(read)],
            )],
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.message.starts_with(
                "inputs[0].data[1]: 9007199254740992 exceeds the INT64 limit of ±9007199254740991"
            ),
            "{}",
            e.message
        );
        let e = err(
            &m,
            &[input("x", &[1], Datatype::Int64, &[Some(-limit - 1.0)])],
        );
        assert!(e.message.contains("INT64 limit"), "{}", e.message);
    }

    #[test]
    fn unknown_requested_output_is_named() {
        let out = |name: &str| RequestOutput {
            name: name.into(),
            parameters: None,
        };
        assert!(check_outputs(None).is_ok());
        assert!(check_outputs(Some(&[])).is_ok());
        assert!(check_outputs(Some(&[out("prediction")])).is_ok());
        let e = check_outputs(Some(&[out("prediction"), out("no_such_output")])).unwrap_err();
        assert_eq!(
            e.message,
            "outputs[1].name: unknown output \"no_such_output\"; the only output is \"prediction\""
        );
    }

    #[test]
    fn long_feature_lists_are_cut() {
        let m = model(20);
        assert!(feature_list(&m).ends_with(", … 12 more"));
    }
}
