//! The Open Inference Protocol over gRPC (`ENG-OIP`): KServe V2
//! `inference.GRPCInferenceService` — ServerLive, ServerReady, ServerMetadata, ModelReady,
//! ModelMetadata, ModelInfer — on targets that serve it ([`Capability::Grpc`]: a
//! `grpc://host:port` target, or the in-process engine's gRPC port).
//!
//! Spec: the Open Inference Protocol gRPC specification,
//! kserve/open-inference-protocol `specification/protocol/inference_grpc.md` and its
//! `open_inference_grpc.proto`. The spec leaves error codes open ("errors are indicated by the
//! google.rpc.Status returned for the request. The OK code indicates success and other codes
//! indicate failure"), so the `ENG-OIP` cases accept any non-OK status for a request that must
//! fail; the reference engine's exact codes (`NOT_FOUND` for a model it does not have,
//! `INVALID_ARGUMENT` for a malformed tensor, as gRPC's status code guide defines them) are the
//! `ENG-POLICY` case [`grpc_status_codes`].
//!
//! The model cases run on the run's first model (`--model`, else `ref-linear`), their requests
//! generated from its gRPC `ModelMetadata` (see [`super::subject`]); only
//! [`grpc_infer_matches_reference`] needs the reference models.

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_harness::{
    Capability, Case, CaseCtx, CaseError, CaseOutcome, GrpcClient, TargetExt, case, ensure,
    ensure_eq,
};
use gauntlet_oip_grpc::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use gauntlet_oip_grpc::inference::model_metadata_response::TensorMetadata;
use gauntlet_oip_grpc::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use tonic::Code;

use super::both_references;
use super::subject::{Subject, policy_applies};
use crate::support::{
    Layout, ensure_predictions, expect_infer_ok, infer_request, library_expect, library_model,
    predictions, present, scratch_name, typical_rows,
};

/// The spec on failed calls, quoted by every check of one.
const SPEC_ERROR: &str = "the spec: \"errors are indicated by the google.rpc.Status returned for \
     the request. The OK code indicates success and other codes indicate failure\"";

/// The spec on tensor contents, quoted when a malformed tensor is answered OK.
const SPEC_CONTENTS: &str = "the spec: \"For each tensor, the size of this content must match \
     what is expected by the tensor's shape and data type\"";

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "conformance",
            grpc_server_live,
            ["ENG-OIP"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_server_ready,
            ["ENG-OIP"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_server_metadata,
            ["ENG-OIP"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_model_ready,
            ["ENG-OIP"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_model_metadata,
            ["ENG-OIP"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_infer_matches_reference,
            ["ENG-OIP", "ENG-PRED"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_infer_raw_contents,
            ["ENG-OIP"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_infer_invalid_tensor,
            ["ENG-OIP", "ENG-VAL"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_infer_unknown_model,
            ["ENG-OIP"],
            [Capability::Grpc]
        ),
        case!(
            "conformance",
            grpc_status_codes,
            ["ENG-POLICY", "ENG-VAL"],
            [Capability::Grpc]
        ),
    ]
}

/// Rows per request in these cases.
const ROWS: usize = 3;

/// A client of the target's gRPC service, after the endpoint that keeps an in-process server
/// up: bound as `let (_guard, c)`, the client drops (closing its connection) before the server
/// stops, which would otherwise wait out its shutdown grace for that connection.
async fn client(ctx: &CaseCtx) -> Result<(gauntlet_harness::GrpcEndpoint, GrpcClient), CaseError> {
    let endpoint = ctx.target.grpc_endpoint().await?;
    let client = endpoint.client().await?;
    Ok((endpoint, client))
}

/// A transport failure of a call is an error (no verdict); a status is the target's answer.
fn status_line(status: &tonic::Status) -> String {
    format!("{:?}: {:?}", status.code(), status.message())
}

/// The model the model cases run on: the first of `--model`, else `ref-linear`.
fn subject(ctx: &CaseCtx) -> Result<String, CaseError> {
    if let Some(first) = ctx.models.first() {
        return Ok(first.clone());
    }
    ctx.reference_models
        .first()
        .map(|m| m.name.clone())
        .ok_or_else(|| {
            CaseError::Skip(
                "needs a model: serve the reference models or name one with --model".to_owned(),
            )
        })
}

/// The spec: "The ServerLive API indicates if the inference server is able to receive and
/// respond to metadata and inference requests."
async fn grpc_server_live(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let reply = c
        .server_live(ServerLiveRequest {})
        .await
        .map_err(|s| CaseError::Fail(format!("ServerLive answered {}", status_line(&s))))?;
    ensure!(
        reply.into_inner().live,
        "ServerLive: `live` is false on a serving target"
    );
    Ok(())
}

/// The spec: "The ServerReady API indicates if the server is ready for inferencing."
async fn grpc_server_ready(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let reply = c
        .server_ready(ServerReadyRequest {})
        .await
        .map_err(|s| CaseError::Fail(format!("ServerReady answered {}", status_line(&s))))?;
    ensure!(
        reply.into_inner().ready,
        "ServerReady: `ready` is false on a serving target"
    );
    Ok(())
}

/// The spec: the ServerMetadata response carries the server's `name`, `version` and
/// `extensions`.
async fn grpc_server_metadata(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .map_err(|s| CaseError::Fail(format!("ServerMetadata answered {}", status_line(&s))))?
        .into_inner();
    ensure!(
        !meta.name.is_empty(),
        "ServerMetadata: empty `name` ({meta:?})"
    );
    ensure!(
        !meta.version.is_empty(),
        "ServerMetadata: empty `version` ({meta:?})"
    );
    Ok(())
}

/// The spec: "The ModelReady API indicates if a specific model is ready for inferencing." A
/// model the server does not have is not ready: `ready: false` or any non-OK status says so.
async fn grpc_model_ready(ctx: CaseCtx) -> CaseOutcome {
    let name = subject(&ctx)?;
    let (_guard, mut c) = client(&ctx).await?;
    let ready = c
        .model_ready(ModelReadyRequest {
            name: name.clone(),
            version: String::new(),
        })
        .await
        .map_err(|s| {
            CaseError::Fail(format!("ModelReady {name:?} answered {}", status_line(&s)))
        })?;
    ensure!(
        ready.into_inner().ready,
        "ModelReady {name:?}: `ready` is false for a served model"
    );
    let unknown = scratch_name("no-such-model", ctx.seed);
    // A non-OK status says "not ready" too.
    if let Ok(r) = c
        .model_ready(ModelReadyRequest {
            name: unknown.clone(),
            version: String::new(),
        })
        .await
    {
        ensure!(
            !r.into_inner().ready,
            "ModelReady {unknown:?}: `ready` is true for a model the server does not have"
        );
    }
    Ok(())
}

/// The spec: ModelMetadata gives the model's `name`, `platform`, `inputs` and `outputs` (each
/// `name`, `datatype`, `shape`); errors are a non-OK status, e.g. for a model the server does
/// not have.
async fn grpc_model_metadata(ctx: CaseCtx) -> CaseOutcome {
    let name = subject(&ctx)?;
    let (_guard, mut c) = client(&ctx).await?;
    let meta = c
        .model_metadata(ModelMetadataRequest {
            name: name.clone(),
            version: String::new(),
        })
        .await
        .map_err(|s| {
            CaseError::Fail(format!(
                "ModelMetadata {name:?} answered {}",
                status_line(&s)
            ))
        })?
        .into_inner();
    ensure_eq!(meta.name, name, "ModelMetadata {name:?}: `name`");
    ensure!(
        !meta.inputs.is_empty(),
        "ModelMetadata {name:?}: no `inputs` ({meta:?})"
    );
    ensure!(
        !meta.outputs.is_empty(),
        "ModelMetadata {name:?}: no `outputs` ({meta:?})"
    );
    for t in meta.inputs.iter().chain(&meta.outputs) {
        ensure!(
            super::subject::DATATYPES.contains(&t.datatype.as_str()),
            "ModelMetadata {name:?}: tensor {:?} has datatype {:?}, not one of the spec's {:?}",
            t.name,
            t.datatype,
            super::subject::DATATYPES
        );
        ensure!(
            t.shape.iter().all(|&d| d >= -1),
            "ModelMetadata {name:?}: tensor {:?} has shape {:?}; dimensions are sizes or -1",
            t.name,
            t.shape
        );
    }
    if let Some(reference) = ctx.reference_models.iter().find(|m| m.name == name)
        && let Some(&width) = meta.inputs[0].shape.last()
        && meta.inputs.len() == 1
    {
        ensure_eq!(
            usize::try_from(width).ok(),
            Some(reference.features.len()),
            "ModelMetadata {name:?}: the input's last dimension (the reference has {} features)",
            reference.features.len()
        );
    }
    let unknown = scratch_name("no-such-model", ctx.seed);
    match c
        .model_metadata(ModelMetadataRequest {
            name: unknown.clone(),
            version: String::new(),
        })
        .await
    {
        Ok(r) => Err(CaseError::Fail(format!(
            "ModelMetadata {unknown:?} answered OK ({:?}) for a model the server does not have; \
             {SPEC_ERROR}",
            r.into_inner()
        ))),
        Err(_) => Ok(()),
    }
}

/// One FP64 tensor `[rows, n]` named `features` with `values`.
fn fp64_request(model: &str, n: usize, values: &[f64]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_owned(),
        id: "gauntlet-grpc".to_owned(),
        inputs: vec![InferInputTensor {
            name: "features".to_owned(),
            datatype: "FP64".to_owned(),
            shape: vec![
                i64::try_from(values.len() / n.max(1)).unwrap_or(i64::MAX),
                i64::try_from(n).unwrap_or(i64::MAX),
            ],
            parameters: Default::default(),
            contents: Some(InferTensorContents {
                fp64_contents: values.to_vec(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

/// The FP64 predictions of a response's first output, typed or raw.
fn outputs(response: &ModelInferResponse, rows: usize, line: &str) -> Result<Vec<f64>, CaseError> {
    let Some(out) = response.outputs.first() else {
        return Err(CaseError::Fail(format!(
            "{line}: no outputs in {response:?}"
        )));
    };
    ensure_eq!(
        out.datatype,
        "FP64",
        "{line}: output {:?} datatype",
        out.name
    );
    let values: Vec<f64> = match (&out.contents, response.raw_output_contents.first()) {
        (Some(c), None) => c.fp64_contents.clone(),
        (None, Some(raw)) => {
            ensure!(
                raw.len() % 8 == 0,
                "{line}: raw output of {} bytes is not FP64 elements",
                raw.len()
            );
            raw.chunks_exact(8)
                .map(|b| {
                    let mut e = [0u8; 8];
                    e.copy_from_slice(b);
                    f64::from_le_bytes(e)
                })
                .collect()
        }
        (Some(_), Some(_)) => {
            return Err(CaseError::Fail(format!(
                "{line}: output {:?} has both `contents` and `raw_output_contents`; the spec allows one",
                out.name
            )));
        }
        (None, None) => {
            return Err(CaseError::Fail(format!(
                "{line}: output {:?} has no data",
                out.name
            )));
        }
    };
    ensure_eq!(values.len(), rows, "{line}: number of predictions");
    Ok(values)
}

/// Infers `values` (typical rows of `artifact`) over gRPC and checks the answer's names.
async fn infer_rows(
    c: &mut GrpcClient,
    artifact: &ModelArtifact,
    request: ModelInferRequest,
    line: &str,
) -> Result<Vec<f64>, CaseError> {
    let response = c
        .model_infer(request)
        .await
        .map_err(|s| CaseError::Fail(format!("{line} answered {}", status_line(&s))))?
        .into_inner();
    ensure_eq!(response.model_name, artifact.name, "{line}: `model_name`");
    ensure_eq!(response.id, "gauntlet-grpc", "{line}: `id` echoed");
    outputs(&response, ROWS, line)
}

/// The reference models' predictions over gRPC equal the model library's, and over HTTP the
/// same target's (when it speaks HTTP too).
async fn grpc_infer_matches_reference(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    for artifact in both_references(&ctx)? {
        let n = artifact.features.len();
        let data = typical_rows(artifact, ctx.seed, ROWS);
        let line = format!(
            "ModelInfer {:?} ({ROWS} rows, FP64 contents)",
            artifact.name
        );
        let got = infer_rows(
            &mut c,
            artifact,
            fp64_request(&artifact.name, n, &data),
            &line,
        )
        .await?;
        let model = library_model(artifact)?;
        let expected = library_expect(&model, &present(&data))
            .map_err(|e| CaseError::Error(format!("the library rejects typical rows: {e}")))?;
        ensure_predictions(
            &got,
            &expected.predictions,
            &format!("{line} against the model library"),
        )?;
        if ctx.target.speaks_http() {
            let request = infer_request(artifact, &present(&data), Layout::Matrix);
            let http_line = format!("POST /v2/models/{}/infer", artifact.name);
            let reply = ctx.target.infer(&artifact.name, None, &request).await?;
            let response = expect_infer_ok(&reply, &http_line)?;
            let over_http = predictions(&response, ROWS, &http_line)?;
            ensure_eq!(
                got,
                over_http,
                "{line}: predictions against the same rows over HTTP"
            );
        }
    }
    Ok(())
}

/// The run's first model as its gRPC `ModelMetadata` describes it.
async fn grpc_subject(ctx: &CaseCtx, c: &mut GrpcClient) -> Result<Subject, CaseError> {
    let name = subject(ctx)?;
    let meta = c
        .model_metadata(ModelMetadataRequest {
            name: name.clone(),
            version: String::new(),
        })
        .await
        .map_err(|s| {
            CaseError::Error(format!(
                "ModelMetadata {name:?}: the model's metadata is needed to generate requests for \
                 it, got {} (is --model {name} served?)",
                status_line(&s)
            ))
        })?
        .into_inner();
    let tensors = |list: &[TensorMetadata]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|t| serde_json::json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
            .collect()
    };
    let versions = (!meta.versions.is_empty()).then(|| meta.versions.clone());
    Ok(Subject::from_metadata(
        &name,
        &serde_json::json!({
            "name": meta.name,
            "versions": versions,
            "inputs": tensors(&meta.inputs),
            "outputs": tensors(&meta.outputs),
        }),
    ))
}

/// A valid `ModelInferRequest` of `rows` rows for `subject`, generated from its metadata as
/// the HTTP cases generate theirs, with the tensors in the typed `contents`.
fn generated_request(
    subject: &Subject,
    seed: u64,
    rows: usize,
) -> Result<ModelInferRequest, CaseError> {
    let body = subject.request(seed, rows)?;
    let inputs = body["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let datatype = t["datatype"].as_str().unwrap_or_default();
            let data = t["data"].as_array().map(Vec::as_slice).unwrap_or_default();
            let contents = typed_contents(datatype, data).ok_or_else(|| {
                CaseError::Skip(format!(
                    "input {} of model {:?} has datatype {datatype:?}, which gRPC's typed \
                     contents do not hold",
                    t["name"], subject.name
                ))
            })?;
            Ok(InferInputTensor {
                name: t["name"].as_str().unwrap_or_default().to_owned(),
                datatype: datatype.to_owned(),
                shape: t["shape"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_i64)
                    .collect(),
                parameters: Default::default(),
                contents: Some(contents),
            })
        })
        .collect::<Result<Vec<_>, CaseError>>()?;
    Ok(ModelInferRequest {
        model_name: subject.name.clone(),
        id: "gauntlet-grpc".to_owned(),
        inputs,
        ..Default::default()
    })
}

/// The typed contents of `datatype` holding the generated JSON `data`; `None` for a datatype
/// with no typed field (FP16, BF16) or data of another kind.
fn typed_contents(datatype: &str, data: &[serde_json::Value]) -> Option<InferTensorContents> {
    use serde_json::Value;
    let mut c = InferTensorContents::default();
    match datatype {
        "BOOL" => c.bool_contents = data.iter().map(Value::as_bool).collect::<Option<_>>()?,
        "INT8" | "INT16" | "INT32" => {
            c.int_contents = data
                .iter()
                .map(|v| v.as_i64().and_then(|x| i32::try_from(x).ok()))
                .collect::<Option<_>>()?;
        }
        "INT64" => c.int64_contents = data.iter().map(Value::as_i64).collect::<Option<_>>()?,
        "UINT8" | "UINT16" | "UINT32" => {
            c.uint_contents = data
                .iter()
                .map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
                .collect::<Option<_>>()?;
        }
        "UINT64" => c.uint64_contents = data.iter().map(Value::as_u64).collect::<Option<_>>()?,
        "FP32" => {
            // The generated values are quarters in [-2, 2): exact as f32.
            #[expect(clippy::cast_possible_truncation, reason = "exact quarters")]
            let values = data.iter().map(|v| v.as_f64().map(|x| x as f32));
            c.fp32_contents = values.collect::<Option<_>>()?;
        }
        "FP64" => c.fp64_contents = data.iter().map(Value::as_f64).collect::<Option<_>>()?,
        "BYTES" => {
            c.bytes_contents = data
                .iter()
                .map(|v| v.as_str().map(|s| bytes::Bytes::from(s.to_owned())))
                .collect::<Option<_>>()?;
        }
        _ => return None,
    }
    Some(c)
}

/// The elements of typed `contents` of `datatype` as the spec's raw form: flattened,
/// little-endian, each element its datatype's size (BYTES: a 4-byte length, then the bytes).
/// `None` when the contents are not of that datatype's field.
fn raw_form(datatype: &str, c: &InferTensorContents) -> Option<Vec<u8>> {
    // The narrow integer types are carried widened in int/uint contents; raw keeps their size.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "values of the narrow type, widened"
    )]
    let raw: Vec<u8> = match datatype {
        "BOOL" => c.bool_contents.iter().map(|&b| u8::from(b)).collect(),
        "INT8" => c
            .int_contents
            .iter()
            .flat_map(|&x| (x as i8).to_le_bytes())
            .collect(),
        "INT16" => c
            .int_contents
            .iter()
            .flat_map(|&x| (x as i16).to_le_bytes())
            .collect(),
        "INT32" => c
            .int_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "INT64" => c
            .int64_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "UINT8" => c.uint_contents.iter().map(|&x| x as u8).collect(),
        "UINT16" => c
            .uint_contents
            .iter()
            .flat_map(|&x| (x as u16).to_le_bytes())
            .collect(),
        "UINT32" => c
            .uint_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "UINT64" => c
            .uint64_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "FP32" => c
            .fp32_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "FP64" => c
            .fp64_contents
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        "BYTES" => c
            .bytes_contents
            .iter()
            .flat_map(|b| {
                let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
                len.to_le_bytes().into_iter().chain(b.iter().copied())
            })
            .collect(),
        _ => return None,
    };
    Some(raw)
}

/// One output of a response: name, datatype, shape and its elements in the raw form.
type Output = (String, String, Vec<i64>, Vec<u8>);

/// Each output of `response` as an [`Output`], checked against the
/// spec: the model named, the id echoed, typed or raw contents but not both, every output the
/// metadata lists present with its datatype, and as many elements as the output's shape says.
fn check_response(
    response: &ModelInferResponse,
    subject: &Subject,
    line: &str,
) -> Result<Vec<Output>, CaseError> {
    let spec = "the spec's ModelInferResponse";
    ensure_eq!(
        response.model_name,
        subject.name,
        "{line}: `model_name` (\"The name of the model used for inference\", {spec})"
    );
    ensure_eq!(
        response.id,
        "gauntlet-grpc",
        "{line}: `id` (\"The id of the inference request if one was specified\", {spec})"
    );
    let raw = !response.raw_output_contents.is_empty();
    if raw {
        ensure_eq!(
            response.raw_output_contents.len(),
            response.outputs.len(),
            "{line}: `raw_output_contents` entries, one \"for each tensor in the same order as \
             'outputs'\" ({spec})"
        );
    }
    let mut out = Vec::with_capacity(response.outputs.len());
    for (i, o) in response.outputs.iter().enumerate() {
        // An empty `contents` message on the wire carries no element: not "specified".
        let contents = o
            .contents
            .as_ref()
            .filter(|c| **c != InferTensorContents::default());
        let bytes = match (contents, raw) {
            (Some(_), true) => {
                return Err(CaseError::Fail(format!(
                    "{line}: output {:?} has `contents` and the response `raw_output_contents`; \
                     {spec}: \"If this field is specified then InferOutputTensor::contents must \
                     not be specified for any output tensor\"",
                    o.name
                )));
            }
            (None, true) => response.raw_output_contents[i].to_vec(),
            (Some(c), false) => raw_form(&o.datatype, c).ok_or_else(|| {
                CaseError::Fail(format!(
                    "{line}: output {:?} has datatype {:?}, not one of the spec's {:?}",
                    o.name,
                    o.datatype,
                    super::subject::DATATYPES
                ))
            })?,
            (None, false) => {
                return Err(CaseError::Fail(format!(
                    "{line}: output {:?} carries no data, neither `contents` nor raw",
                    o.name
                )));
            }
        };
        let elements: i64 = o.shape.iter().product();
        if let Some(size) = gauntlet_oip_grpc::datatype::element_size(&o.datatype) {
            ensure_eq!(
                i64::try_from(bytes.len() / size).ok(),
                Some(elements),
                "{line}: elements of output {:?} (shape {:?}, {} bytes of {}); {SPEC_CONTENTS}",
                o.name,
                o.shape,
                bytes.len(),
                o.datatype
            );
        }
        out.push((o.name.clone(), o.datatype.clone(), o.shape.clone(), bytes));
    }
    for want in &subject.outputs {
        let Some((_, datatype, _, _)) = out.iter().find(|(n, ..)| *n == want.name) else {
            return Err(CaseError::Fail(format!(
                "{line}: no output {:?}, which the model's metadata lists; {spec}: \"if not \
                 specified all outputs produced by the model will be returned\"",
                want.name
            )));
        };
        ensure_eq!(
            datatype,
            &want.datatype,
            "{line}: datatype of output {:?}, as the metadata declares it",
            want.name
        );
    }
    Ok(out)
}

/// The spec: tensor data may be sent in the typed `contents` or "in 'raw' bytes form"
/// (`raw_input_contents`, flattened, row-major, little-endian). A request generated from the
/// model's metadata is answered OK with every output the metadata lists, and the raw form of
/// the same tensors gets the same outputs.
async fn grpc_infer_raw_contents(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let subject = grpc_subject(&ctx, &mut c).await?;
    let rows = if subject.batched() { ROWS } else { 1 };
    let typed_request = generated_request(&subject, ctx.seed, rows)?;
    let mut raw_request = typed_request.clone();
    raw_request.raw_input_contents = raw_request
        .inputs
        .iter_mut()
        .map(|t| {
            let contents = t.contents.take().unwrap_or_default();
            raw_form(&t.datatype, &contents).map(Into::into)
        })
        .collect::<Option<_>>()
        .ok_or_else(|| CaseError::Error("a generated tensor has no raw form".to_owned()))?;
    let name = &subject.name;
    let mut answers = Vec::new();
    for (form, request) in [
        ("contents", typed_request),
        ("raw_input_contents", raw_request),
    ] {
        let line = format!("ModelInfer {name:?} ({rows} rows, {form})");
        let response = c
            .model_infer(request)
            .await
            .map_err(|s| {
                CaseError::Fail(format!(
                    "{line}: answered {} to a request built from the model's metadata; the \
                     spec: \"The OK code indicates success\"",
                    status_line(&s)
                ))
            })?
            .into_inner();
        answers.push(check_response(&response, &subject, &line)?);
    }
    ensure_eq!(
        answers[1],
        answers[0],
        "ModelInfer {name:?}: the outputs of raw_input_contents against those of the same \
         tensors as typed contents (name, datatype, shape, elements)"
    );
    Ok(())
}

/// The malformed requests for `subject`: (what, request). Each breaks the spec's rules for
/// tensors or its metadata: a datatype outside the spec's table, contents shorter than the
/// shape, a tensor wider than the metadata declares, no inputs at all.
fn malformed(subject: &Subject, seed: u64) -> Result<Vec<(String, ModelInferRequest)>, CaseError> {
    let valid = generated_request(subject, seed, 1)?;
    let mut unknown_type = valid.clone();
    unknown_type.inputs[0].datatype = "NOT_A_TYPE".to_owned();
    let mut short = valid.clone();
    if let Some(first) = short.inputs[0].shape.first_mut() {
        *first *= 2;
    }
    let mut out = vec![
        (
            "datatype \"NOT_A_TYPE\" on input 0".to_owned(),
            unknown_type,
        ),
        (
            format!(
                "input 0 of shape {:?} and the contents of half of it",
                short.inputs[0].shape
            ),
            short,
        ),
    ];
    // One element more on the last axis, where the metadata fixes it.
    if let Some(meta) = subject.inputs.first()
        && meta.shape.last().is_some_and(|&d| d > 0)
    {
        let mut wider = subject.clone();
        if let Some(last) = wider.inputs[0].shape.last_mut() {
            *last += 1;
        }
        let mut request = generated_request(&wider, seed, 1)?;
        request.model_name.clone_from(&subject.name);
        out.push((
            format!(
                "input {:?} of shape {:?} where the metadata says {:?}",
                meta.name, request.inputs[0].shape, meta.shape
            ),
            request,
        ));
    }
    let mut empty = valid;
    empty.inputs.clear();
    out.push(("no inputs".to_owned(), empty));
    Ok(out)
}

/// A malformed tensor is an error, any non-OK status: a datatype outside the spec's table,
/// contents that do not fill the shape, a tensor wider than the metadata, no inputs.
async fn grpc_infer_invalid_tensor(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let subject = grpc_subject(&ctx, &mut c).await?;
    for (what, request) in malformed(&subject, ctx.seed)? {
        if let Ok(r) = c.model_infer(request).await {
            return Err(CaseError::Fail(format!(
                "ModelInfer {:?} with {what}: answered OK ({:?}); {SPEC_CONTENTS}, and \
                 {SPEC_ERROR}",
                subject.name,
                r.into_inner().outputs
            )));
        }
    }
    Ok(())
}

/// Inference with a model the server does not have is an error, any non-OK status.
async fn grpc_infer_unknown_model(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let unknown = scratch_name("no-such-model", ctx.seed);
    match c.model_infer(fp64_request(&unknown, 2, &[0.0, 0.0])).await {
        Ok(r) => Err(CaseError::Fail(format!(
            "ModelInfer {unknown:?}: answered OK ({:?}) for a model the server does not have; \
             {SPEC_ERROR}",
            r.into_inner().outputs
        ))),
        Err(_) => Ok(()),
    }
}

/// The reference engine's status codes (policy, not spec: the spec accepts any non-OK code):
/// `NOT_FOUND` for a model it does not have, on ModelMetadata and ModelInfer (ModelReady
/// answers `ready: false` or `NOT_FOUND`), and `INVALID_ARGUMENT` for each malformed tensor
/// and for an output asked for that the model does not have, as gRPC's status code guide
/// defines the two.
async fn grpc_status_codes(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "gRPC status codes NOT_FOUND and INVALID_ARGUMENT").await?;
    let (_guard, mut c) = client(&ctx).await?;
    let unknown = scratch_name("no-such-model", ctx.seed);
    let request = |name: &str| ModelMetadataRequest {
        name: name.to_owned(),
        version: String::new(),
    };
    let code = |r: Result<(), tonic::Status>| r.err().map(|s| (s.code(), s.message().to_owned()));
    let said = |r: &Option<(Code, String)>| match r {
        None => "answered OK".to_owned(),
        Some((code, message)) => format!("answered {code:?}: {message:?}"),
    };
    let metadata = code(c.model_metadata(request(&unknown)).await.map(drop));
    ensure_eq!(
        metadata.as_ref().map(|(c, _)| *c),
        Some(Code::NotFound),
        "ModelMetadata {unknown:?}: {}",
        said(&metadata)
    );
    let infer = code(
        c.model_infer(fp64_request(&unknown, 2, &[0.0, 0.0]))
            .await
            .map(drop),
    );
    ensure_eq!(
        infer.as_ref().map(|(c, _)| *c),
        Some(Code::NotFound),
        "ModelInfer {unknown:?}: {}",
        said(&infer)
    );
    match c
        .model_ready(ModelReadyRequest {
            name: unknown.clone(),
            version: String::new(),
        })
        .await
    {
        Ok(r) => ensure!(
            !r.into_inner().ready,
            "ModelReady {unknown:?}: `ready` is true for a model the server does not have"
        ),
        Err(s) => ensure_eq!(
            s.code(),
            Code::NotFound,
            "ModelReady {unknown:?}: status ({:?})",
            s.message()
        ),
    }
    let subject = grpc_subject(&ctx, &mut c).await?;
    // Also an output the model does not have, asked for by name: refused as the HTTP route
    // refuses it (400), not answered with the outputs it has.
    let missing = scratch_name("no-such-output", ctx.seed);
    let mut asks_missing = generated_request(&subject, ctx.seed, 1)?;
    asks_missing.outputs = vec![InferRequestedOutputTensor {
        name: missing.clone(),
        parameters: Default::default(),
    }];
    let refused = malformed(&subject, ctx.seed)?.into_iter().chain([(
        format!("output {missing:?} asked for, which it does not have"),
        asks_missing,
    )]);
    for (what, request) in refused {
        let got = code(c.model_infer(request).await.map(drop));
        ensure_eq!(
            got.as_ref().map(|(c, _)| *c),
            Some(Code::InvalidArgument),
            "ModelInfer {:?} with {what}: {}",
            subject.name,
            said(&got)
        );
    }
    Ok(())
}
