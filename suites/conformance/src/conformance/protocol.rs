//! Health, server and model metadata, readiness, and errors for what does not exist.
//!
//! The `ENG-OIP` cases check the Open Inference Protocol REST spec as written (quoted in each
//! case's doc) on the run's models (see [`super::subject`]); the `ENG-POLICY` cases check what the
//! reference engine promises beyond it, and run only when the target claims that policy.

use http::StatusCode;
use serde_json::Value;

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_fixtures::REF_LINEAR;
use gauntlet_harness::{
    Capability, Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case, ensure, ensure_eq,
    infer_path,
};

use super::both_references;
use super::subject::{DATATYPES, expect_spec_error, policy_applies, subjects};
use crate::support::{
    Layout, describe, excerpt, expect_error, infer_request, present, reference_platform,
    scratch_name, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("conformance", health_live, ["ENG-OIP"], []),
        case!("conformance", health_ready, ["ENG-OIP"], []),
        case!("conformance", server_metadata, ["ENG-OIP"], []),
        case!("conformance", model_metadata, ["ENG-OIP"], []),
        case!("conformance", model_ready, ["ENG-OIP"], []),
        case!("conformance", unknown_model_is_4xx, ["ENG-OIP"], []),
        case!("conformance", unknown_version_is_4xx, ["ENG-OIP"], []),
        case!("conformance", health_bodies_are_empty, ["ENG-POLICY"], []),
        case!(
            "conformance",
            reference_metadata_policy,
            ["ENG-POLICY", "ENG-OIP"],
            []
        ),
        case!("conformance", unknown_model_is_404, ["ENG-POLICY"], []),
        case!("conformance", unknown_version_is_404, ["ENG-POLICY"], []),
    ]
}

/// A health probe: 200, and a body that is empty or the spec's JSON object with `field` true.
async fn probe(ctx: &CaseCtx, path: &str, field: &str) -> CaseOutcome {
    let reply = ctx.target.get(path).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "GET {path}: expected status 200 OK from a live, ready server, got {}; the spec: a \
         health probe \"can be used directly to implement the Kubernetes\" probe (200: true)",
        describe(&reply)
    );
    if reply.body.is_empty() {
        return Ok(());
    }
    let body: Value = reply.json().map_err(|e| {
        CaseError::Fail(format!(
            "GET {path}: the body is neither empty nor JSON ({e}): {:?}; the spec: \
             {{\"{field}\" : $bool}}",
            excerpt(&reply.text())
        ))
    })?;
    let flag = body.get(field).or_else(|| body.get("live"));
    ensure!(
        flag.is_none_or(|v| *v == Value::Bool(true)),
        "GET {path}: a 200 whose body says {body}; the spec's body is {{\"{field}\" : $bool}}, \
         true with a 200"
    );
    Ok(())
}

/// Spec: "The “server live” health API indicates if the inference server is able to receive and
/// respond to metadata and inference requests"; its body `$live_server_response = {"live" :
/// $bool}` (an empty body, as the older KServe V2 text has it, is accepted too).
async fn health_live(ctx: CaseCtx) -> CaseOutcome {
    probe(&ctx, "/v2/health/live", "live").await
}

/// Spec: "The “server ready” health API indicates if all the models are ready for
/// inferencing"; its body `$ready_server_response` (`{"ready": $bool}`; the spec text prints
/// `"live"`, also accepted), or empty.
async fn health_ready(ctx: CaseCtx) -> CaseOutcome {
    probe(&ctx, "/v2/health/ready", "ready").await
}

/// Policy: the reference engine answers its health probes 200 with an empty body.
async fn health_bodies_are_empty(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "empty health bodies").await?;
    for path in ["/v2/health/live", "/v2/health/ready"] {
        let reply = ctx.target.get(path).await?;
        ensure!(
            reply.status == StatusCode::OK && reply.body.is_empty(),
            "GET {path}: expected 200 with an empty body, got {} bytes: {}",
            reply.body.len(),
            describe(&reply)
        );
    }
    Ok(())
}
/// `GET path`, which must answer 200 with a JSON object.
async fn get_object(ctx: &CaseCtx, path: &str) -> Result<Value, CaseError> {
    let reply = ctx.target.get(path).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "GET {path}: expected status 200 OK, got {}",
        describe(&reply)
    );
    let body: Value = reply.json().map_err(|e| {
        CaseError::Fail(format!(
            "GET {path}: the body is not JSON ({e}): {:?}",
            excerpt(&reply.text())
        ))
    })?;
    ensure!(
        body.is_object(),
        "GET {path}: expected a JSON object, got {body}"
    );
    Ok(body)
}

/// `body[field]` as a non-empty string.
fn non_empty_str<'a>(body: &'a Value, field: &str, request: &str) -> Result<&'a str, CaseError> {
    match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        other => Err(CaseError::Fail(format!(
            "{request}: `{field}` should be a non-empty string, got {}",
            other.map_or_else(|| "nothing".to_owned(), Value::to_string)
        ))),
    }
}

/// `body[field]` as an array of strings.
fn str_array(body: &Value, field: &str, request: &str) -> Result<Vec<String>, CaseError> {
    let items = body.get(field).and_then(Value::as_array).ok_or_else(|| {
        CaseError::Fail(format!(
            "{request}: `{field}` should be an array, got {}",
            body.get(field)
                .map_or_else(|| "nothing".to_owned(), Value::to_string)
        ))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().map(str::to_owned).ok_or_else(|| {
                CaseError::Fail(format!(
                    "{request}: `{field}[{i}]` should be a string, got {v}"
                ))
            })
        })
        .collect()
}

/// Spec: `$metadata_server_response = {"name" : $string, "version" : $string, "extensions" :
/// [ $string, ... ]}`; "Currently, no standard extensions are defined".
async fn server_metadata(ctx: CaseCtx) -> CaseOutcome {
    let request = "GET /v2";
    let body = get_object(&ctx, "/v2").await?;
    non_empty_str(&body, "name", request)?;
    non_empty_str(&body, "version", request)?;
    str_array(&body, "extensions", request)?;
    Ok(())
}

/// Checks one tensor description (`{name, datatype, shape}`) of model metadata.
fn check_tensor(
    tensor: &Value,
    at: &str,
    datatype: &str,
    shape: &[i64],
    request: &str,
) -> CaseOutcome {
    non_empty_str(tensor, "name", request)?;
    let got_type = tensor.get("datatype").and_then(Value::as_str);
    ensure!(
        got_type == Some(datatype),
        "{request}: `{at}.datatype` expected {datatype:?}, got {}",
        tensor.get("datatype").unwrap_or(&Value::Null)
    );
    let got_shape: Option<Vec<i64>> = tensor
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| dims.iter().map(Value::as_i64).collect());
    ensure!(
        got_shape.as_deref() == Some(shape),
        "{request}: `{at}.shape` expected {shape:?}, got {}",
        tensor.get("shape").unwrap_or(&Value::Null)
    );
    Ok(())
}

/// Checks one tensor of model metadata against `$metadata_tensor = {"name" : $string,
/// "datatype" : $string, "shape" : [ $number, ... ]}`: a spec datatype, integer dimensions,
/// "Variable-size dimensions are specified as -1".
fn check_spec_tensor(tensor: &Value, at: &str, request: &str) -> CaseOutcome {
    let spec = "the spec's $metadata_tensor";
    ensure!(
        tensor.get("name").is_some_and(Value::is_string),
        "{request}: `{at}.name` should be a string ({spec}), got {}",
        tensor.get("name").unwrap_or(&Value::Null)
    );
    let datatype = tensor.get("datatype").and_then(Value::as_str);
    ensure!(
        datatype.is_some_and(|d| DATATYPES.contains(&d)),
        "{request}: `{at}.datatype` should be one of the spec's tensor data types {DATATYPES:?}, got {}",
        tensor.get("datatype").unwrap_or(&Value::Null)
    );
    let dims = tensor.get("shape").and_then(Value::as_array);
    ensure!(
        dims.is_some_and(|d| d.iter().all(|x| x.as_i64().is_some_and(|x| x >= -1))),
        "{request}: `{at}.shape` should be an array of integers, -1 for a variable size ({spec}), got {}",
        tensor.get("shape").unwrap_or(&Value::Null)
    );
    Ok(())
}

/// Spec: `$metadata_model_response = {"name" : $string, "versions" : [ $string, ... ] #optional,
/// "platform" : $string, "inputs" : [ $metadata_tensor, ... ], "outputs" : [ $metadata_tensor,
/// ... ]}`, on each of the run's models.
async fn model_metadata(ctx: CaseCtx) -> CaseOutcome {
    for subject in subjects(&ctx).await? {
        let path = format!("/v2/models/{}", subject.name);
        let request = format!("GET {path}");
        let request = request.as_str();
        let body = get_object(&ctx, &path).await?;
        ensure_eq!(
            body.get("name").and_then(Value::as_str),
            Some(subject.name.as_str()),
            "{request}: `name` (\"The name of the model\", the spec's $metadata_model_response)"
        );
        if body.get("versions").is_some() {
            str_array(&body, "versions", request)?;
        }
        ensure!(
            body.get("platform").is_some_and(Value::is_string),
            "{request}: `platform` should be a string (\"The framework/backend for the model\", \
             the spec's $metadata_model_response), got {}",
            body.get("platform").unwrap_or(&Value::Null)
        );
        for field in ["inputs", "outputs"] {
            let Some(tensors) = body.get(field).and_then(Value::as_array) else {
                return Err(CaseError::Fail(format!(
                    "{request}: `{field}` should be an array of $metadata_tensor (the spec's \
                     $metadata_model_response), got {}",
                    body.get(field).unwrap_or(&Value::Null)
                )));
            };
            for (i, tensor) in tensors.iter().enumerate() {
                check_spec_tensor(tensor, &format!("{field}[{i}]"), request)?;
            }
        }
    }
    Ok(())
}

/// Policy: the reference engine's metadata — the repository extension listed, one FP64 input
/// `[-1, n]`, an FP64 output `prediction` `[-1]`, the live version first in `versions`,
/// `parameters.feature_names` and `parameters.live_version`.
async fn reference_metadata_policy(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(
        &ctx,
        "feature names, the `prediction` output, versions in metadata",
    )
    .await?;
    if ctx.target.capabilities().contains(&Capability::Repository) {
        let body = get_object(&ctx, "/v2").await?;
        let extensions = str_array(&body, "extensions", "GET /v2")?;
        ensure!(
            extensions.iter().any(|e| e == "model_repository"),
            "GET /v2: the target offers the repository extension, so `extensions` should list \"model_repository\", got {extensions:?}"
        );
    }
    for artifact in both_references(&ctx)? {
        check_model_metadata(&ctx, artifact).await?;
    }
    Ok(())
}

async fn check_model_metadata(ctx: &CaseCtx, artifact: &ModelArtifact) -> CaseOutcome {
    let path = format!("/v2/models/{}", artifact.name);
    let request = format!("GET {path}");
    let request = request.as_str();
    let body = get_object(ctx, &path).await?;
    ensure_eq!(
        non_empty_str(&body, "name", request)?,
        artifact.name.as_str(),
        "{request}: `name`"
    );
    let versions = str_array(&body, "versions", request)?;
    ensure!(
        versions.first() == Some(&artifact.version),
        "{request}: `versions` should list the live version {:?} first, got {versions:?}",
        artifact.version
    );
    ensure!(
        body.get("platform").is_some_and(Value::is_string),
        "{request}: `platform` should be a string, got {}",
        body.get("platform").unwrap_or(&Value::Null)
    );
    // The reference engine names the artifact's kind, as the artifact spells it.
    ensure_eq!(
        body["platform"].as_str().unwrap_or_default().to_owned(),
        reference_platform(artifact),
        "{request}: `platform` (the reference engine's is `gauntlet-` and the artifact's kind)"
    );
    let n = i64::try_from(artifact.features.len()).unwrap_or(i64::MAX);
    let inputs = body.get("inputs").and_then(Value::as_array);
    let Some([input]) = inputs.map(Vec::as_slice) else {
        return Err(CaseError::Fail(format!(
            "{request}: `inputs` should be an array of one tensor, got {}",
            body.get("inputs").unwrap_or(&Value::Null)
        )));
    };
    check_tensor(input, "inputs[0]", "FP64", &[-1, n], request)?;
    let outputs = body
        .get("outputs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(prediction) = outputs
        .iter()
        .find(|o| o.get("name").and_then(Value::as_str) == Some("prediction"))
    else {
        return Err(CaseError::Fail(format!(
            "{request}: `outputs` should describe a tensor named \"prediction\", got {}",
            body.get("outputs").unwrap_or(&Value::Null)
        )));
    };
    check_tensor(prediction, "outputs.prediction", "FP64", &[-1], request)?;
    let parameters = body.get("parameters").unwrap_or(&Value::Null);
    let names = str_array(
        parameters,
        "feature_names",
        &format!("{request} parameters"),
    )?;
    let expected: Vec<&str> = artifact.features.iter().map(|f| f.name.as_str()).collect();
    ensure_eq!(names, expected, "{request}: `parameters.feature_names`");
    ensure_eq!(
        parameters.get("live_version").and_then(Value::as_str),
        Some(artifact.version.as_str()),
        "{request}: `parameters.live_version`"
    );
    Ok(())
}

/// Spec: "The “model ready” health API indicates if a specific model is ready for
/// inferencing"; `$ready_model_response = {"name" : $string, "ready": $bool}` (or empty). A model
/// that does not exist is not ready: a 4xx.
async fn model_ready(ctx: CaseCtx) -> CaseOutcome {
    for subject in subjects(&ctx).await? {
        let path = format!("/v2/models/{}/ready", subject.name);
        let reply = ctx.target.get(&path).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "GET {path}: expected status 200 OK for a served model, got {}",
            describe(&reply)
        );
        if !reply.body.is_empty() {
            let body: Value = reply.json().map_err(|e| {
                CaseError::Fail(format!(
                    "GET {path}: the body is neither empty nor JSON ({e}): {:?}; the spec: \
                     {{\"name\" : $string, \"ready\": $bool}}",
                    excerpt(&reply.text())
                ))
            })?;
            ensure!(
                body.get("ready").is_none_or(|r| *r == Value::Bool(true)),
                "GET {path}: a 200 whose body says {body}; the spec's {{\"ready\": $bool}} is true with a 200"
            );
        }
    }
    let path = format!(
        "/v2/models/{}/ready",
        scratch_name("no-such-model", ctx.seed)
    );
    let reply = ctx.target.get(&path).await?;
    ensure!(
        reply.status.is_client_error(),
        "GET {path}: expected a 4xx for a model that does not exist, got {}",
        describe(&reply)
    );
    Ok(())
}

/// Spec: "A failed model metadata request must be indicated by an HTTP error status (typically
/// 400). The HTTP body must contain the $metadata_model_error_response object" `{"error":
/// $string}`; the same of a failed inference request. Asked of a model that does not exist.
async fn unknown_model_is_4xx(ctx: CaseCtx) -> CaseOutcome {
    let missing = scratch_name("no-such-model", ctx.seed);
    let path = format!("/v2/models/{missing}");
    let reply = ctx.target.get(&path).await?;
    expect_spec_error(&reply, &format!("GET {path}"))?;
    // A well-formed request, shaped for one of the run's models when there is one.
    let body = match subjects(&ctx).await {
        Ok(s) if !s.is_empty() => s[0].request(ctx.seed, 1)?,
        _ => {
            serde_json::json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5]}]})
        }
    };
    let infer = infer_path(&missing, None);
    let reply = ctx.target.post_json(&infer, &body).await?;
    expect_spec_error(&reply, &format!("POST {infer}"))?;
    Ok(())
}

/// Spec: the version in `v2/models/<model_name>/versions/<model_version>/infer` names one the
/// model serves; a request for one it does not serve fails: "an HTTP error status (typically
/// 400)" with `{"error": $string}`.
async fn unknown_version_is_4xx(ctx: CaseCtx) -> CaseOutcome {
    let version = format!("{}-no-such-version", ctx.seed % 1000);
    for subject in subjects(&ctx).await? {
        let body = subject.request(ctx.seed, 1)?;
        let path = infer_path(&subject.name, Some(&version));
        let reply = ctx.target.post_json(&path, &body).await?;
        expect_spec_error(&reply, &format!("POST {path}"))?;
    }
    Ok(())
}

/// Policy: the reference engine answers exactly 404 for a model it does not serve, naming it.
async fn unknown_model_is_404(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "404 for an unknown model, naming it").await?;
    let reference = ctx.reference(REF_LINEAR)?;
    let missing = scratch_name("no-such-model", ctx.seed);
    let path = format!("/v2/models/{missing}");
    let reply = ctx.target.get(&path).await?;
    let message = expect_error(&reply, StatusCode::NOT_FOUND, &format!("GET {path}"))?;
    ensure!(
        message.contains(&missing),
        "GET {path}: the error should name the model {missing:?}, got {message:?}"
    );
    let rows = typical_rows(reference, ctx.seed, 1);
    let request = infer_request(reference, &present(&rows), Layout::Matrix);
    let reply = ctx.target.infer(&missing, None, &request).await?;
    expect_error(
        &reply,
        StatusCode::NOT_FOUND,
        &format!("POST {}", infer_path(&missing, None)),
    )?;
    Ok(())
}

/// Policy: the reference engine answers exactly 404 for a version it does not serve, naming it.
async fn unknown_version_is_404(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "404 for an unknown version, naming it").await?;
    let reference = ctx.reference(REF_LINEAR)?;
    let version = format!("{}-no-such-version", ctx.seed % 1000);
    let rows = typical_rows(reference, ctx.seed, 1);
    let request = infer_request(reference, &present(&rows), Layout::Matrix);
    let reply = ctx
        .target
        .infer(&reference.name, Some(&version), &request)
        .await?;
    let line = format!("POST {}", infer_path(&reference.name, Some(&version)));
    let message = expect_error(&reply, StatusCode::NOT_FOUND, &line)?;
    ensure!(
        message.contains(&version),
        "{line}: the error should name the version {version:?}, got {message:?}"
    );
    Ok(())
}
