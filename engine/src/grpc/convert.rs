//! Between the gRPC messages and the engine's OIP types: input tensors from the typed
//! `contents` or from `raw_input_contents`, the answer in the form the request used.

use bytes::Bytes;
use gauntlet_oip_grpc::datatype;
use gauntlet_oip_grpc::inference::model_infer_request::InferInputTensor;
use gauntlet_oip_grpc::inference::model_infer_response::InferOutputTensor;
use gauntlet_oip_grpc::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse, infer_parameter,
};

use crate::http::ApiError;
use crate::oip::{Datatype, InferRequest, InferResponse, RequestInput, RequestOutput};

/// Largest magnitude of an INT64 element: every integer up to 2^53 − 1 is an `f64` exactly,
/// and the models compute in `f64`, so a larger one would be served rounded.
const INT64_LIMIT: i64 = (1 << 53) - 1;

/// The engine's request from a gRPC one; `true` when its tensors came as raw bytes (the
/// answer then does too).
pub(crate) fn infer_request(message: ModelInferRequest) -> Result<(InferRequest, bool), ApiError> {
    let ModelInferRequest {
        id,
        inputs,
        outputs,
        raw_input_contents,
        ..
    } = message;
    let raw = !raw_input_contents.is_empty();
    if raw && raw_input_contents.len() != inputs.len() {
        return Err(ApiError::bad_request(format!(
            "raw_input_contents: {} entries for {} inputs; send one per input, in the order of inputs",
            raw_input_contents.len(),
            inputs.len()
        )));
    }
    let mut raw_contents = raw_input_contents.into_iter();
    let inputs = inputs
        .into_iter()
        .enumerate()
        .map(|(i, tensor)| input(i, tensor, raw_contents.next()))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = (!outputs.is_empty()).then(|| {
        outputs
            .into_iter()
            .map(|o| RequestOutput {
                name: o.name,
                parameters: None,
            })
            .collect()
    });
    Ok((
        InferRequest {
            id: (!id.is_empty()).then_some(id),
            parameters: None,
            inputs,
            outputs,
        },
        raw,
    ))
}

/// Refuses what JSON cannot carry to a remote model's backend: an infinite element (a NaN
/// goes as `null`, the missing value it stands for).
pub(crate) fn forwardable(request: &InferRequest) -> Result<(), ApiError> {
    for (i, input) in request.inputs.iter().enumerate() {
        if let Some((j, x)) = input
            .data
            .iter()
            .enumerate()
            .find_map(|(j, x)| x.filter(|x| x.is_infinite()).map(|x| (j, x)))
        {
            return Err(ApiError::bad_request(format!(
                "inputs[{i}] element {j}: {x} cannot be sent to the remote backend serving this \
                 model, which is reached over JSON (no infinities)"
            )));
        }
    }
    Ok(())
}

fn input(i: usize, tensor: InferInputTensor, raw: Option<Bytes>) -> Result<RequestInput, ApiError> {
    let datatype = match tensor.datatype.as_str() {
        datatype::FP64 => Datatype::Fp64,
        datatype::FP32 => Datatype::Fp32,
        datatype::INT64 => Datatype::Int64,
        other => {
            return Err(ApiError::bad_request(format!(
                "inputs[{i}].datatype: {other:?} is not served; the engine takes FP64, FP32 or INT64"
            )));
        }
    };
    let shape = tensor
        .shape
        .iter()
        .enumerate()
        .map(|(k, &d)| {
            u64::try_from(d).map_err(|_| {
                ApiError::bad_request(format!("inputs[{i}].shape[{k}]: {d} is negative"))
            })
        })
        .collect::<Result<Vec<u64>, _>>()?;
    let data = match raw {
        Some(bytes) => {
            if tensor.contents.is_some() {
                return Err(ApiError::bad_request(format!(
                    "inputs[{i}].contents: set together with raw_input_contents; send one or the other"
                )));
            }
            from_raw(i, datatype, &bytes)?
        }
        None => from_contents(i, datatype, tensor.contents.unwrap_or_default())?,
    };
    Ok(RequestInput {
        name: tensor.name,
        shape,
        datatype,
        data,
    })
}

/// The elements of the typed field the datatype names; any other field set is an error.
fn from_contents(
    i: usize,
    datatype: Datatype,
    c: InferTensorContents,
) -> Result<Vec<Option<f64>>, ApiError> {
    let (expected, data) = match datatype {
        Datatype::Fp64 => (
            "fp64_contents",
            c.fp64_contents.iter().map(|&x| Some(x)).collect(),
        ),
        Datatype::Fp32 => (
            "fp32_contents",
            c.fp32_contents
                .iter()
                .map(|&x| Some(f64::from(x)))
                .collect(),
        ),
        Datatype::Int64 => (
            "int64_contents",
            c.int64_contents
                .iter()
                .enumerate()
                .map(|(j, &x)| {
                    int64(x, || format!("inputs[{i}].contents.int64_contents[{j}]")).map(Some)
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let set = datatype::field_lengths(&c);
    if let Some((field, _)) = set.iter().find(|(f, n)| *n > 0 && *f != expected) {
        return Err(ApiError::bad_request(format!(
            "inputs[{i}].contents.{field}: set, but a {} tensor's elements go in {expected}",
            name(datatype)
        )));
    }
    Ok(data)
}

/// Little-endian elements of the datatype's width, no padding.
fn from_raw(i: usize, datatype: Datatype, bytes: &[u8]) -> Result<Vec<Option<f64>>, ApiError> {
    let width = match datatype {
        Datatype::Fp32 => 4,
        Datatype::Fp64 | Datatype::Int64 => 8,
    };
    if !bytes.len().is_multiple_of(width) {
        return Err(ApiError::bad_request(format!(
            "raw_input_contents[{i}]: {} bytes are not a whole number of {} elements of {width} bytes",
            bytes.len(),
            name(datatype)
        )));
    }
    let mut data = Vec::with_capacity(bytes.len() / width);
    for (j, chunk) in bytes.chunks_exact(width).enumerate() {
        let value = match datatype {
            Datatype::Fp32 => {
                f64::from(f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            }
            Datatype::Fp64 => f64::from_le_bytes(eight(chunk)),
            Datatype::Int64 => int64(i64::from_le_bytes(eight(chunk)), || {
                format!("raw_input_contents[{i}][{j}]")
            })?,
        };
        data.push(Some(value));
    }
    Ok(data)
}

fn eight(chunk: &[u8]) -> [u8; 8] {
    let mut b = [0; 8];
    b.copy_from_slice(chunk);
    b
}

fn int64(x: i64, field: impl FnOnce() -> String) -> Result<f64, ApiError> {
    if x.unsigned_abs() > INT64_LIMIT.unsigned_abs() {
        return Err(ApiError::bad_request(format!(
            "{}: {x} exceeds the INT64 limit of ±{INT64_LIMIT} (2^53 - 1), beyond which the model's \
             f64 features do not hold integers exactly",
            field()
        )));
    }
    // Within ±(2^53 - 1): exact.
    Ok(x as f64)
}

fn name(datatype: Datatype) -> &'static str {
    match datatype {
        Datatype::Fp64 => datatype::FP64,
        Datatype::Fp32 => datatype::FP32,
        Datatype::Int64 => datatype::INT64,
    }
}

/// The gRPC answer: the predictions as `fp64_contents`, or as `raw_output_contents` when the
/// request sent raw bytes; the sanitiser report as the parameters `sanitiser_changes_total`
/// (always) and `sanitiser_changes` (a JSON array, when there are any).
pub(crate) fn infer_response(response: InferResponse, raw: bool) -> ModelInferResponse {
    let InferResponse {
        model_name,
        model_version,
        id,
        parameters,
        outputs,
    } = response;
    let mut raw_output_contents = Vec::new();
    let outputs = outputs
        .into_iter()
        .map(|o| {
            let shape = o
                .shape
                .iter()
                .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                .collect();
            let contents = if raw {
                let mut bytes = Vec::with_capacity(o.data.len() * 8);
                for x in &o.data {
                    bytes.extend_from_slice(&x.to_le_bytes());
                }
                raw_output_contents.push(Bytes::from(bytes));
                None
            } else {
                Some(InferTensorContents {
                    fp64_contents: o.data,
                    ..InferTensorContents::default()
                })
            };
            InferOutputTensor {
                name: o.name,
                datatype: name(o.datatype).to_owned(),
                shape,
                parameters: Default::default(),
                contents,
            }
        })
        .collect();
    let mut params = std::collections::HashMap::new();
    params.insert(
        "sanitiser_changes_total".to_owned(),
        parameter(infer_parameter::ParameterChoice::Int64Param(
            i64::try_from(parameters.sanitiser_changes_total).unwrap_or(i64::MAX),
        )),
    );
    if !parameters.sanitiser_changes.is_empty()
        && let Ok(json) = serde_json::to_string(&parameters.sanitiser_changes)
    {
        params.insert(
            "sanitiser_changes".to_owned(),
            parameter(infer_parameter::ParameterChoice::StringParam(json)),
        );
    }
    if let Some(fallback) = parameters.degraded
        && let Ok(serde_json::Value::String(name)) = serde_json::to_value(fallback)
    {
        params.insert(
            "degraded".to_owned(),
            parameter(infer_parameter::ParameterChoice::StringParam(name)),
        );
    }
    ModelInferResponse {
        model_name,
        model_version,
        id: id.unwrap_or_default(),
        parameters: params,
        outputs,
        raw_output_contents,
    }
}

fn parameter(choice: infer_parameter::ParameterChoice) -> InferParameter {
    InferParameter {
        parameter_choice: Some(choice),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(datatype: &str, shape: &[i64], contents: InferTensorContents) -> InferInputTensor {
        InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            parameters: Default::default(),
            contents: Some(contents),
        }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Bytes>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            id: "r1".into(),
            inputs,
            raw_input_contents: raw,
            ..Default::default()
        }
    }

    fn err(message: ModelInferRequest) -> String {
        infer_request(message).unwrap_err().message
    }

    #[test]
    fn typed_contents_of_each_datatype() {
        let fp64 = InferTensorContents {
            fp64_contents: vec![1.5, f64::NAN],
            ..Default::default()
        };
        let (r, raw) = infer_request(request(vec![tensor("FP64", &[1, 2], fp64)], vec![])).unwrap();
        assert!(!raw);
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!(r.inputs[0].shape, [1, 2]);
        assert_eq!(r.inputs[0].data[0], Some(1.5));
        assert!(r.inputs[0].data[1].is_some_and(f64::is_nan));
        let fp32 = InferTensorContents {
            fp32_contents: vec![0.1],
            ..Default::default()
        };
        let (r, _) = infer_request(request(vec![tensor("FP32", &[1], fp32)], vec![])).unwrap();
        assert_eq!(r.inputs[0].data, [Some(f64::from(0.1f32))]);
        assert_eq!(r.inputs[0].datatype, Datatype::Fp32);
        let int64 = InferTensorContents {
            int64_contents: vec![-3, INT64_LIMIT],
            ..Default::default()
        };
        let (r, _) = infer_request(request(vec![tensor("INT64", &[2], int64)], vec![])).unwrap();
        assert_eq!(
            r.inputs[0].data,
            [Some(-3.0), Some(9_007_199_254_740_991.0)]
        );
    }

    #[test]
    fn raw_contents_are_little_endian_elements() {
        let mut t = tensor("FP64", &[2], InferTensorContents::default());
        t.contents = None;
        let bytes: Vec<u8> = [2.0f64, -0.5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let (r, raw) = infer_request(request(vec![t.clone()], vec![bytes.into()])).unwrap();
        assert!(raw);
        assert_eq!(r.inputs[0].data, [Some(2.0), Some(-0.5)]);
        let e = err(request(vec![t.clone()], vec![Bytes::from_static(&[0; 9])]));
        assert_eq!(
            e,
            "raw_input_contents[0]: 9 bytes are not a whole number of FP64 elements of 8 bytes"
        );
        let e = err(request(
            vec![t.clone(), t],
            vec![Bytes::from_static(&[0; 8])],
        ));
        assert!(
            e.starts_with("raw_input_contents: 1 entries for 2 inputs"),
            "{e}"
        );
        let both = tensor("FP64", &[1], InferTensorContents::default());
        let e = err(request(vec![both], vec![Bytes::from_static(&[0; 8])]));
        assert!(
            e.starts_with("inputs[0].contents: set together with raw_input_contents"),
            "{e}"
        );
    }

    #[test]
    fn bad_tensors_name_the_field_and_the_limit() {
        let e = err(request(
            vec![tensor("BYTES", &[1], InferTensorContents::default())],
            vec![],
        ));
        assert_eq!(
            e,
            "inputs[0].datatype: \"BYTES\" is not served; the engine takes FP64, FP32 or INT64"
        );
        let e = err(request(
            vec![tensor("FP64", &[-1, 2], InferTensorContents::default())],
            vec![],
        ));
        assert_eq!(e, "inputs[0].shape[0]: -1 is negative");
        let wrong_field = InferTensorContents {
            fp32_contents: vec![1.0],
            ..Default::default()
        };
        let e = err(request(vec![tensor("FP64", &[1], wrong_field)], vec![]));
        assert_eq!(
            e,
            "inputs[0].contents.fp32_contents: set, but a FP64 tensor's elements go in fp64_contents"
        );
        let big = InferTensorContents {
            int64_contents: vec![0, INT64_LIMIT + 1],
            ..Default::default()
        };
        let e = err(request(vec![tensor("INT64", &[2], big)], vec![]));
        assert!(
            e.starts_with(
                "inputs[0].contents.int64_contents[1]: 9007199254740992 exceeds the INT64 limit of ±9007199254740991"
            ),
            "{e}"
        );
        let mut t = tensor("INT64", &[1], InferTensorContents::default());
        t.contents = None;
        let e = err(request(
            vec![t],
            vec![Bytes::copy_from_slice(&i64::MIN.to_le_bytes())],
        ));
        assert!(
            e.starts_with("raw_input_contents[0][0]: -9223372036854775808 exceeds"),
            "{e}"
        );
    }

    #[test]
    fn infinities_are_not_forwarded_to_a_backend() {
        let contents = InferTensorContents {
            fp64_contents: vec![1.0, f64::NAN, f64::NEG_INFINITY],
            ..Default::default()
        };
        let (r, _) = infer_request(request(vec![tensor("FP64", &[3], contents)], vec![])).unwrap();
        let e = forwardable(&r).unwrap_err().message;
        assert!(
            e.starts_with("inputs[0] element 2: -inf cannot be sent"),
            "{e}"
        );
        let (r, _) = infer_request(request(
            vec![tensor("FP64", &[1], fp64(&[f64::NAN]))],
            vec![],
        ))
        .unwrap();
        assert_eq!(forwardable(&r), Ok(()));
    }

    fn fp64(values: &[f64]) -> InferTensorContents {
        InferTensorContents {
            fp64_contents: values.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn answers_in_the_form_of_the_request() {
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            parameters: Default::default(),
            outputs: vec![crate::oip::ResponseOutput {
                name: "prediction".into(),
                shape: vec![2],
                datatype: Datatype::Fp64,
                data: vec![0.25, -1.0],
            }],
        };
        let typed = infer_response(response.clone(), false);
        assert_eq!(typed.outputs[0].shape, [2]);
        assert_eq!(typed.outputs[0].datatype, "FP64");
        assert_eq!(
            typed.outputs[0].contents.as_ref().unwrap().fp64_contents,
            [0.25, -1.0]
        );
        assert!(typed.raw_output_contents.is_empty());
        assert_eq!(
            typed.parameters["sanitiser_changes_total"].parameter_choice,
            Some(infer_parameter::ParameterChoice::Int64Param(0))
        );
        let raw = infer_response(response, true);
        assert!(raw.outputs[0].contents.is_none());
        let bytes: Vec<u8> = [0.25f64, -1.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(raw.raw_output_contents, [Bytes::from(bytes)]);
    }
}
