//! Health, server and model metadata, readiness, and 404s for what does not exist.

use http::StatusCode;
use serde_json::Value;

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_fixtures::REF_LINEAR;
use gauntlet_harness::{
    Capability, Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case, ensure, ensure_eq,
    infer_path,
};

use super::both_references;
use crate::support::{
    Layout, describe, excerpt, expect_error, infer_request, present, scratch_name, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("conformance", health_live, ["ENG-OIP"], []),
        case!("conformance", health_ready, ["ENG-OIP"], []),
        case!("conformance", server_metadata, ["ENG-OIP"], []),
        case!("conformance", model_metadata, ["ENG-OIP"], []),
        case!("conformance", model_ready, ["ENG-OIP"], []),
        case!("conformance", unknown_model_is_404, ["ENG-OIP"], []),
        case!("conformance", unknown_version_is_404, ["ENG-OIP"], []),
    ]
}

/// A health probe answers 200 with an empty body.
async fn probe(ctx: &CaseCtx, path: &str) -> CaseOutcome {
    let reply = ctx.target.get(path).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "GET {path}: expected status 200 OK, got {}",
        describe(&reply)
    );
    ensure!(
        reply.body.is_empty(),
        "GET {path}: expected an empty body, got {} bytes: {:?}",
        reply.body.len(),
        excerpt(&reply.text())
    );
    Ok(())
}

async fn health_live(ctx: CaseCtx) -> CaseOutcome {
    probe(&ctx, "/v2/health/live").await
}

async fn health_ready(ctx: CaseCtx) -> CaseOutcome {
    probe(&ctx, "/v2/health/ready").await
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

async fn server_metadata(ctx: CaseCtx) -> CaseOutcome {
    let request = "GET /v2";
    let body = get_object(&ctx, "/v2").await?;
    non_empty_str(&body, "name", request)?;
    non_empty_str(&body, "version", request)?;
    let extensions = str_array(&body, "extensions", request)?;
    if ctx.target.capabilities().contains(&Capability::Repository) {
        ensure!(
            extensions.iter().any(|e| e == "model_repository"),
            "{request}: the target offers the repository extension, so `extensions` should list \"model_repository\", got {extensions:?}"
        );
    }
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

async fn model_metadata(ctx: CaseCtx) -> CaseOutcome {
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

async fn model_ready(ctx: CaseCtx) -> CaseOutcome {
    for artifact in both_references(&ctx)? {
        let path = format!("/v2/models/{}/ready", artifact.name);
        let reply = ctx.target.get(&path).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "GET {path}: expected status 200 OK for a live model, got {}",
            describe(&reply)
        );
    }
    let path = format!(
        "/v2/models/{}/ready",
        scratch_name("no-such-model", ctx.seed)
    );
    let reply = ctx.target.get(&path).await?;
    ensure!(
        matches!(
            reply.status,
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND
        ),
        "GET {path}: expected 400 or 404 for a model that does not exist, got {}",
        describe(&reply)
    );
    Ok(())
}

async fn unknown_model_is_404(ctx: CaseCtx) -> CaseOutcome {
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

async fn unknown_version_is_404(ctx: CaseCtx) -> CaseOutcome {
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
