//! Requests the engine must refuse, each with a 4xx and a JSON error naming what is wrong.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_fixtures::REF_LINEAR;
use gauntlet_harness::{Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case, infer_path};

use crate::support::{
    Layout, MATRIX_INPUT, ensure_names, expect_error, expect_infer_ok, infer_request, predictions,
    present, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "conformance",
            shape_data_mismatch_is_400,
            ["ENG-VAL", "ENG-OIP"],
            []
        ),
        case!("conformance", wrong_feature_count_is_400, ["ENG-VAL"], []),
        case!("conformance", wrong_feature_names_is_400, ["ENG-VAL"], []),
        case!(
            "conformance",
            malformed_json_is_400,
            ["ENG-VAL", "ENG-ROBUST"],
            []
        ),
        case!("conformance", body_over_limit_is_413, ["ENG-VAL"], []),
        case!("conformance", unsupported_datatype_is_400, ["ENG-VAL"], []),
    ]
}

/// A valid one-row request to `artifact`'s model as JSON, for cases to break.
fn valid_body(artifact: &ModelArtifact, seed: u64, layout: Layout) -> Result<Value, CaseError> {
    let rows = typical_rows(artifact, seed, 1);
    serde_json::to_value(infer_request(artifact, &present(&rows), layout))
        .map_err(|e| CaseError::Error(format!("failed to serialise a request: {e}")))
}

/// Posts raw bytes as JSON to the live infer path of `model`.
async fn post_raw(
    ctx: &CaseCtx,
    model: &str,
    body: Vec<u8>,
) -> Result<gauntlet_harness::Reply, CaseError> {
    Ok(ctx
        .target
        .call(
            Method::POST,
            &infer_path(model, None),
            Bytes::from(body),
            Some("application/json"),
        )
        .await?)
}

/// Posts `body` and expects a 400 whose error names one of `needles` (none: any message);
/// returns the error message.
async fn expect_400(
    ctx: &CaseCtx,
    model: &str,
    body: &Value,
    what: &str,
    needles: &[&str],
) -> Result<String, CaseError> {
    let line = format!("POST {} with {what}", infer_path(model, None));
    let reply = ctx.target.post_json(&infer_path(model, None), body).await?;
    let message = expect_error(&reply, StatusCode::BAD_REQUEST, &line)?;
    if !needles.is_empty() {
        ensure_names(&message, needles, &line)?;
    }
    Ok(message)
}

/// Whether `message` contains `number` with no digit directly before or after it.
fn names_number(message: &str, number: &str) -> bool {
    message.match_indices(number).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let after = message[at + number.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

async fn shape_data_mismatch_is_400(ctx: CaseCtx) -> CaseOutcome {
    let artifact = ctx.reference(REF_LINEAR)?;
    let n = artifact.features.len();
    // Claims two rows but carries one.
    let mut body = valid_body(artifact, ctx.seed, Layout::Matrix)?;
    body["inputs"][0]["shape"] = json!([2, n]);
    expect_400(
        &ctx,
        &artifact.name,
        &body,
        &format!("shape [2, {n}] and {n} values"),
        &["inputs[0].shape", "shape"],
    )
    .await?;
    // A per-feature tensor that claims more rows than the others.
    let mut body = valid_body(artifact, ctx.seed, Layout::Columns)?;
    body["inputs"][1]["shape"] = json!([3]);
    expect_400(
        &ctx,
        &artifact.name,
        &body,
        "a per-feature tensor of shape [3] with 1 value",
        &["inputs[1].shape", "shape"],
    )
    .await?;
    Ok(())
}

async fn wrong_feature_count_is_400(ctx: CaseCtx) -> CaseOutcome {
    let artifact = ctx.reference(REF_LINEAR)?;
    let n = artifact.features.len();
    if n < 2 {
        return Err(CaseError::Skip(format!(
            "reference {:?} has {n} feature(s); the case needs at least 2",
            artifact.name
        )));
    }
    // The message must state the expected count as a number of its own ("8"), not as a digit of
    // some other number ("18"): the checks below look for it between non-digits.
    let expected_count = n.to_string();
    for count in [n - 1, n + 1] {
        let data: Vec<Option<f64>> = (0..count)
            .map(|j| {
                artifact
                    .features
                    .get(j)
                    .map_or(Some(0.0), |f| Some(f.median))
            })
            .collect();
        let body = json!({
            "inputs": [{"name": MATRIX_INPUT, "shape": [1, count], "datatype": "FP64", "data": data}]
        });
        expect_400(
            &ctx,
            &artifact.name,
            &body,
            &format!("{count} features where the model takes {n}"),
            &[],
        )
        .await
        .and_then(|message| {
            if names_number(&message, &expected_count) {
                Ok(())
            } else {
                Err(CaseError::Fail(format!(
                    "{count} features where the model takes {n}: the error should state the \
                     expected count {n}, got {message:?}"
                )))
            }
        })?;
    }
    Ok(())
}

async fn wrong_feature_names_is_400(ctx: CaseCtx) -> CaseOutcome {
    let artifact = ctx.reference(REF_LINEAR)?;
    let bad = format!("not_a_feature_{:x}", ctx.seed & 0xffff);
    let renamed = &artifact.features[ctx.seed as usize % artifact.features.len()].name;
    let mut body = valid_body(artifact, ctx.seed, Layout::Columns)?;
    let Some(inputs) = body["inputs"].as_array_mut() else {
        return Err(CaseError::Error(
            "a per-feature request has no inputs array".into(),
        ));
    };
    for input in inputs.iter_mut() {
        if input["name"] == json!(renamed) {
            input["name"] = json!(bad);
        }
    }
    expect_400(
        &ctx,
        &artifact.name,
        &body,
        &format!("feature {renamed:?} sent as {bad:?}"),
        &[&bad],
    )
    .await?;
    // One feature left out: the error names the missing one.
    let mut body = valid_body(artifact, ctx.seed, Layout::Columns)?;
    if let Some(inputs) = body["inputs"].as_array_mut() {
        inputs.retain(|input| input["name"] != json!(renamed));
    }
    expect_400(
        &ctx,
        &artifact.name,
        &body,
        &format!("feature {renamed:?} left out"),
        &[renamed],
    )
    .await?;
    Ok(())
}

async fn malformed_json_is_400(ctx: CaseCtx) -> CaseOutcome {
    let artifact = ctx.reference(REF_LINEAR)?;
    let n = artifact.features.len();
    let bodies: [(&str, String, &[&str]); 7] = [
        (
            "a truncated document",
            r#"{"inputs": [{"name": "features", "shape": [1,"#.into(),
            &[],
        ),
        ("text that is not JSON", "inputs=1,2,3".into(), &[]),
        ("an empty body", String::new(), &[]),
        (
            "a JSON array",
            "[]".into(),
            &["inputs", "object", "map", "struct"],
        ),
        (
            "`inputs` as a string",
            r#"{"inputs": "features"}"#.into(),
            &["inputs"],
        ),
        (
            "a tensor without `data`",
            format!(
                r#"{{"inputs": [{{"name": "features", "shape": [1, {n}], "datatype": "FP64"}}]}}"#
            ),
            &["data"],
        ),
        (
            "a string value in `data`",
            format!(
                r#"{{"inputs": [{{"name": "features", "shape": [1, {n}], "datatype": "FP64", "data": [{}"NaN"]}}]}}"#,
                "0.0, ".repeat(n - 1)
            ),
            &["data"],
        ),
    ];
    for (what, body, needles) in bodies {
        let line = format!("POST {} with {what}", infer_path(&artifact.name, None));
        let reply = post_raw(&ctx, &artifact.name, body.into_bytes()).await?;
        let message = expect_error(&reply, StatusCode::BAD_REQUEST, &line)?;
        if !needles.is_empty() {
            ensure_names(&message, needles, &line)?;
        }
    }
    Ok(())
}

async fn body_over_limit_is_413(ctx: CaseCtx) -> CaseOutcome {
    let artifact = ctx.reference(REF_LINEAR)?;
    let body = serde_json::to_vec(&valid_body(artifact, ctx.seed, Layout::Matrix)?)
        .map_err(|e| CaseError::Error(format!("failed to serialise a request: {e}")))?;
    // Trailing whitespace keeps the document valid: only its size changes.
    let padded = |size: usize| {
        let mut b = body.clone();
        b.resize(size.max(body.len()), b' ');
        b
    };
    // The limit the run expects the target to enforce (`--max-body-bytes`, 1 MiB by default).
    let limit = ctx.max_body_bytes;
    let under = limit.saturating_sub(1024).max(body.len());
    let line = format!(
        "POST {} with a valid {under}-byte body",
        infer_path(&artifact.name, None)
    );
    let reply = post_raw(&ctx, &artifact.name, padded(under)).await?;
    let response = expect_infer_ok(&reply, &line)?;
    predictions(&response, 1, &line)?;

    let over = limit + 1024;
    let line = format!(
        "POST {} with a valid {over}-byte body",
        infer_path(&artifact.name, None)
    );
    let reply = post_raw(&ctx, &artifact.name, padded(over)).await?;
    let message = expect_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, &line)?;
    let exact = limit.to_string();
    let mut names = vec![exact.as_str()];
    let mib = format!("{} MiB", limit >> 20);
    if limit.is_multiple_of(1 << 20) {
        names.push(&mib);
    }
    ensure_names(&message, &names, &line)
}

async fn unsupported_datatype_is_400(ctx: CaseCtx) -> CaseOutcome {
    let artifact = ctx.reference(REF_LINEAR)?;
    for datatype in ["BYTES", "FP16", "fp64", "BOOL"] {
        let mut body = valid_body(artifact, ctx.seed, Layout::Matrix)?;
        body["inputs"][0]["datatype"] = json!(datatype);
        expect_400(
            &ctx,
            &artifact.name,
            &body,
            &format!("datatype {datatype:?}"),
            &["datatype", datatype],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::names_number;

    #[test]
    fn numbers_match_whole() {
        assert!(names_number(
            "expected 8 (the model's feature count), got 7",
            "8"
        ));
        assert!(!names_number("error 18", "8"));
        assert!(!names_number("shape [1, 80]", "8"));
        assert!(names_number("[rows, 8]", "8"));
    }
}
