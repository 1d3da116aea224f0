//! The Open Inference Protocol over gRPC (`ENG-OIP`): KServe V2
//! `inference.GRPCInferenceService` — ServerLive, ServerReady, ServerMetadata, ModelReady,
//! ModelMetadata, ModelInfer — on targets that serve it ([`Capability::Grpc`]: a
//! `grpc://host:port` target, or the in-process engine's gRPC port).
//!
//! Spec: the Open Inference Protocol gRPC specification,
//! kserve/open-inference-protocol `specification/protocol/inference_grpc.md` and its
//! `grpc_predict_v2.proto`. The protocol leaves error codes to gRPC's canonical ones; these
//! cases expect `NOT_FOUND` for a model the server does not have and `INVALID_ARGUMENT` for a
//! malformed tensor, as gRPC's status code guide defines them.

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_harness::{
    Capability, Case, CaseCtx, CaseError, CaseOutcome, GrpcClient, TargetExt, case, ensure,
    ensure_eq,
};
use gauntlet_oip_grpc::inference::model_infer_request::InferInputTensor;
use gauntlet_oip_grpc::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use tonic::Code;

use super::both_references;
use crate::support::{
    Layout, ensure_predictions, expect_infer_ok, infer_request, library_expect, library_model,
    predictions, present, scratch_name, typical_rows,
};

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
/// model the server does not have is not ready: `ready: false` or `NOT_FOUND` both say so.
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
            "ModelReady {unknown:?} status ({:?})",
            s.message()
        ),
    }
    Ok(())
}

/// The spec: ModelMetadata gives the model's `name`, `platform`, `inputs` and `outputs` (each
/// `name`, `datatype`, `shape`); errors are a non-OK status — `NOT_FOUND` for a model the
/// server does not have.
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
            "ModelMetadata {unknown:?} answered OK ({:?}) for a model the server does not have",
            r.into_inner()
        ))),
        Err(s) => {
            ensure_eq!(
                s.code(),
                Code::NotFound,
                "ModelMetadata {unknown:?} status ({:?})",
                s.message()
            );
            Ok(())
        }
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

/// The spec: tensor data may be sent "in 'raw' bytes form" (`raw_input_contents`, flattened,
/// row-major, little-endian); the answer — typed or raw — carries the same predictions.
async fn grpc_infer_raw_contents(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let [artifact, _] = both_references(&ctx)?;
    let n = artifact.features.len();
    let data = typical_rows(artifact, ctx.seed, ROWS);
    let typed = infer_rows(
        &mut c,
        artifact,
        fp64_request(&artifact.name, n, &data),
        "ModelInfer (FP64 contents)",
    )
    .await?;
    let mut raw = fp64_request(&artifact.name, n, &data);
    raw.inputs[0].contents = None;
    raw.raw_input_contents = vec![
        data.iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>()
            .into(),
    ];
    let line = format!("ModelInfer {:?} (raw_input_contents)", artifact.name);
    let from_raw = infer_rows(&mut c, artifact, raw, &line).await?;
    ensure_eq!(
        from_raw,
        typed,
        "{line}: predictions against the same rows as typed contents"
    );
    Ok(())
}

/// A malformed tensor is `INVALID_ARGUMENT`: a datatype the model does not take, a shape that
/// does not match the data, a feature width the model does not have, an input name the model
/// does not know.
async fn grpc_infer_invalid_tensor(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let [artifact, _] = both_references(&ctx)?;
    let n = artifact.features.len();
    let data = typical_rows(artifact, ctx.seed, 1);
    let mut bad_datatype = fp64_request(&artifact.name, n, &data);
    bad_datatype.inputs[0].datatype = "BYTES".to_owned();
    bad_datatype.inputs[0].contents = Some(InferTensorContents {
        bytes_contents: vec![bytes::Bytes::from_static(b"x"); n],
        ..Default::default()
    });
    let mut short_data = fp64_request(&artifact.name, n, &data);
    short_data.inputs[0].shape = vec![2, i64::try_from(n).unwrap_or(i64::MAX)];
    let mut wide = fp64_request(&artifact.name, n + 1, &[data.clone(), vec![0.0]].concat());
    wide.id = "gauntlet-grpc".to_owned();
    let mut unknown_input = fp64_request(&artifact.name, n, &data);
    let mut second = unknown_input.inputs[0].clone();
    second.name = "no_such_input".to_owned();
    unknown_input.inputs.push(second);
    for (what, request) in [
        ("datatype BYTES", bad_datatype),
        ("shape [2, n] with one row of data", short_data),
        ("shape [1, n + 1]", wide),
        ("a second input named \"no_such_input\"", unknown_input),
    ] {
        match c.model_infer(request).await {
            Ok(r) => {
                return Err(CaseError::Fail(format!(
                    "ModelInfer {:?} with {what}: answered OK ({:?}); expected INVALID_ARGUMENT",
                    artifact.name,
                    r.into_inner().outputs
                )));
            }
            Err(s) => ensure_eq!(
                s.code(),
                Code::InvalidArgument,
                "ModelInfer {:?} with {what}: status ({:?})",
                artifact.name,
                s.message()
            ),
        }
    }
    Ok(())
}

/// Inference with a model the server does not have is `NOT_FOUND`.
async fn grpc_infer_unknown_model(ctx: CaseCtx) -> CaseOutcome {
    let (_guard, mut c) = client(&ctx).await?;
    let unknown = scratch_name("no-such-model", ctx.seed);
    match c.model_infer(fp64_request(&unknown, 2, &[0.0, 0.0])).await {
        Ok(r) => Err(CaseError::Fail(format!(
            "ModelInfer {unknown:?}: answered OK ({:?}) for a model the server does not have",
            r.into_inner().outputs
        ))),
        Err(s) => {
            ensure_eq!(
                s.code(),
                Code::NotFound,
                "ModelInfer {unknown:?}: status ({:?})",
                s.message()
            );
            Ok(())
        }
    }
}
