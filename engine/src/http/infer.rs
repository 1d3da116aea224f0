//! `POST /v2/models/{m}[/versions/{v}]/infer`: decode tensors, sanitise, predict.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use super::body::{parse, read_body, require_json};
use super::error::ApiError;
use crate::metrics::UNKNOWN_MODEL_LABEL;
use crate::model::Model;
use crate::oip::{
    Datatype, InferRequest, InferResponse, RequestInput, ResponseOutput, ResponseParameters,
};
use crate::registry::ModelVersions;
use crate::state::AppState;

/// Name of the single output tensor (`prediction`).
pub const OUTPUT_NAME: &str = "prediction";
/// Largest magnitude an INT64 value may have and still be exact in an `f64` batch.
const INT64_LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63

pub(crate) async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let versions = state.registry().versions(&name);
    let model = match &versions {
        None => Err(ApiError::unknown_model(&name)),
        Some(v) => v.live.clone().ok_or_else(|| {
            ApiError::bad_request(format!(
                "model {name:?} has no live version; promote a staged version or infer a version explicitly"
            ))
        }),
    };
    finish(
        &state,
        &name,
        versions.is_some(),
        start,
        model,
        headers,
        body,
    )
    .await
}

pub(crate) async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let versions = state.registry().versions(&name);
    let model = match &versions {
        None => Err(ApiError::unknown_model(&name)),
        Some(v) => v
            .get(&version)
            .cloned()
            .ok_or_else(|| unknown_version(&name, &version, v)),
    };
    finish(
        &state,
        &name,
        versions.is_some(),
        start,
        model,
        headers,
        body,
    )
    .await
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
            span.record("model", model.name());
            span.record("version", model.version());
            serve(state, &model, &headers, body).await
        }
        Err(err) => Err(err),
    };
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let (label, elapsed) = if known {
        (name, Some(start.elapsed()))
    } else {
        (UNKNOWN_MODEL_LABEL, None)
    };
    state
        .metrics()
        .observe_request(label, response.status(), elapsed);
    response
}

/// Serves one request with one model snapshot from start to end.
async fn serve(
    state: &AppState,
    model: &Model,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(headers)?;
    let config = state.config();
    let bytes = read_body(headers, body, config.max_body_bytes, "max-body-bytes").await?;
    let request: InferRequest = parse(&bytes)?;
    let values = decode(model, &request.inputs, config.max_batch_rows)?;
    let sanitised = model.sanitise(&values)?;
    let predictions = model.predict_batch(&sanitised.values);
    if let Some(row) = predictions.iter().position(|p| !p.is_finite()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("row {row}: the model produced a non-finite prediction for this input"),
        ));
    }
    state
        .metrics()
        .record_changes(model.name(), &sanitised.changes);
    let rows = predictions.len() as u64;
    Ok(Json(InferResponse {
        model_name: model.name().to_owned(),
        model_version: model.version().to_owned(),
        id: request.id,
        parameters: ResponseParameters {
            sanitiser_changes: sanitised.changes,
        },
        outputs: vec![ResponseOutput {
            name: OUTPUT_NAME.to_owned(),
            shape: vec![rows],
            datatype: Datatype::Fp64,
            data: predictions,
        }],
    })
    .into_response())
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
            if x.abs() > f64::from(f32::MAX) {
                Err(ApiError::bad_request(format!(
                    "inputs[{i}].data[{j}]: {x:?} is out of range for FP32 (max magnitude {:?})",
                    f32::MAX
                )))
            } else {
                // The tensor is declared FP32: use the value the client's f32 holds.
                Ok(Some(f64::from(x as f32)))
            }
        }
        Datatype::Int64 => {
            if x.fract() == 0.0 && (-INT64_LIMIT..INT64_LIMIT).contains(&x) {
                Ok(Some(x))
            } else {
                Err(ApiError::bad_request(format!(
                    "inputs[{i}].data[{j}]: {x:?} is not an INT64 integer"
                )))
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
        assert!(e.message.contains("not an INT64"));
    }

    #[test]
    fn long_feature_lists_are_cut() {
        let m = model(20);
        assert!(feature_list(&m).ends_with(", … 12 more"));
    }
}
