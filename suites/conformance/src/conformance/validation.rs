//! Requests a server must refuse. The `ENG-OIP` cases send each of the run's models a request
//! its metadata rules out and take what the spec allows: any 4xx with an `{"error": $string}`
//! body. The `ENG-POLICY` cases hold the reference engine to its own promises: exactly 400 (413
//! above the body limit) and an error naming the field and the limit.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_fixtures::REF_LINEAR;
use gauntlet_harness::{Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case, infer_path};

use super::subject::{Subject, expect_spec_error, policy_applies, subjects};
use crate::support::{
    Layout, MATRIX_INPUT, ensure_names, expect_error, expect_infer_ok, infer_request, predictions,
    present, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("conformance", shape_data_mismatch_is_4xx, ["ENG-OIP"], []),
        case!(
            "conformance",
            malformed_json_is_4xx,
            ["ENG-OIP", "ENG-ROBUST"],
            []
        ),
        case!("conformance", wrong_width_is_4xx, ["ENG-OIP"], []),
        case!("conformance", missing_inputs_is_4xx, ["ENG-OIP"], []),
        case!("conformance", unknown_datatype_is_4xx, ["ENG-OIP"], []),
        case!(
            "conformance",
            shape_data_mismatch_is_400,
            ["ENG-POLICY", "ENG-VAL"],
            []
        ),
        case!(
            "conformance",
            wrong_feature_count_is_400,
            ["ENG-POLICY", "ENG-VAL"],
            []
        ),
        case!(
            "conformance",
            wrong_feature_names_is_400,
            ["ENG-POLICY", "ENG-VAL"],
            []
        ),
        case!(
            "conformance",
            malformed_json_is_400,
            ["ENG-POLICY", "ENG-VAL"],
            []
        ),
        case!(
            "conformance",
            body_over_limit_is_413,
            ["ENG-POLICY", "ENG-VAL"],
            []
        ),
        case!(
            "conformance",
            unsupported_datatype_is_400,
            ["ENG-POLICY", "ENG-VAL"],
            []
        ),
    ]
}

/// Posts `body` to `subject`'s infer path and expects what the spec makes of a failed request.
async fn expect_refused(ctx: &CaseCtx, subject: &Subject, body: &Value, what: &str) -> CaseOutcome {
    let path = infer_path(&subject.name, None);
    let reply = ctx.target.post_json(&path, body).await?;
    expect_spec_error(&reply, &format!("POST {path} with {what}"))?;
    Ok(())
}

/// Spec: "If the input is batched, the shape and data must represent the full shape and
/// contents of the entire batch"; a request whose data is not what its shape says is a failed
/// request: "an HTTP error status (typically 400)" and `{"error": $string}`. Each model's first
/// input claims one element more than it carries, then one fewer.
async fn shape_data_mismatch_is_4xx(ctx: CaseCtx) -> CaseOutcome {
    for subject in subjects(&ctx).await? {
        let good = subject.request(ctx.seed, 2)?;
        let elements = good["inputs"][0]["data"].as_array().map_or(0, Vec::len);
        for (what, keep) in [
            ("one element fewer", elements.saturating_sub(1)),
            ("one element more", elements + 1),
        ] {
            let mut body = good.clone();
            if let Some(data) = body["inputs"][0]["data"].as_array_mut() {
                let first = data.first().cloned().unwrap_or(json!(0));
                data.resize(keep, first);
            }
            let shape = &good["inputs"][0]["shape"];
            expect_refused(
                &ctx,
                &subject,
                &body,
                &format!("input 0 of shape {shape} and {what} in `data`"),
            )
            .await?;
        }
    }
    Ok(())
}

/// The first half of `text`, cut on a character boundary.
fn truncated(text: &str) -> String {
    let cut = (0..=text.len() / 2)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[..cut].to_owned()
}

/// Spec: "The inference request object … is required in the HTTP body of the POST request";
/// a body that is not one is a failed request: a 4xx and `{"error": $string}` (a 5xx says the
/// server failed, not the request; a body of another shape is not the spec's).
async fn malformed_json_is_4xx(ctx: CaseCtx) -> CaseOutcome {
    for subject in subjects(&ctx).await? {
        let good = serde_json::to_string(&subject.request(ctx.seed, 1)?)
            .map_err(|e| CaseError::Error(format!("failed to serialise a request: {e}")))?;
        let bodies: [(&str, String); 5] = [
            ("a truncated document", truncated(&good)),
            ("text that is not JSON", "inputs=1,2,3".into()),
            ("an empty body", String::new()),
            ("a JSON array", "[]".into()),
            ("`inputs` as a string", r#"{"inputs": "x"}"#.into()),
        ];
        for (what, body) in bodies {
            let path = infer_path(&subject.name, None);
            let reply = post_raw(&ctx, &subject.name, body.into_bytes()).await?;
            expect_spec_error(&reply, &format!("POST {path} with {what}"))?;
        }
    }
    Ok(())
}

/// Spec: `"inputs" : [ $metadata_tensor, ... ]` are "The inputs required by the model", each
/// with its "shape"; a row one value wider than a fixed last dimension is a failed request: a
/// 4xx and `{"error": $string}`.
async fn wrong_width_is_4xx(ctx: CaseCtx) -> CaseOutcome {
    let mut ran = false;
    for subject in subjects(&ctx).await? {
        let Some(width) = subject
            .inputs
            .first()
            .and_then(|t| (t.shape.len() >= 2).then(|| t.shape[t.shape.len() - 1]))
            .filter(|w| *w > 0)
        else {
            continue;
        };
        ran = true;
        let mut wide = subject.clone();
        if let Some(last) = wide.inputs[0].shape.last_mut() {
            *last = width + 1;
        }
        let body = wide.request(ctx.seed, 1)?;
        let what = format!(
            "input {:?} {} values wide where the metadata says {width}",
            subject.inputs[0].name,
            width + 1
        );
        expect_refused(&ctx, &subject, &body, &what).await?;
    }
    if !ran {
        return Err(CaseError::Skip(
            "no model of the run declares a fixed last dimension on its first input".into(),
        ));
    }
    Ok(())
}

/// Spec: `"inputs" : [ $request_input, ... ]` carries "The input tensors"; a request with none
/// of the inputs the model requires is a failed request: a 4xx and `{"error": $string}`.
async fn missing_inputs_is_4xx(ctx: CaseCtx) -> CaseOutcome {
    for subject in subjects(&ctx).await? {
        if subject.inputs.is_empty() {
            continue;
        }
        expect_refused(
            &ctx,
            &subject,
            &json!({"inputs": []}),
            "an empty `inputs` array",
        )
        .await?;
        expect_refused(
            &ctx,
            &subject,
            &json!({"id": "no-inputs"}),
            "no `inputs` field",
        )
        .await?;
    }
    Ok(())
}

/// Spec: `"datatype" : The data-type of the input tensor elements as defined in Tensor Data
/// Types`; a datatype outside that table is a failed request: a 4xx and `{"error": $string}`.
async fn unknown_datatype_is_4xx(ctx: CaseCtx) -> CaseOutcome {
    for subject in subjects(&ctx).await? {
        for datatype in ["NOT_A_TYPE", "fp64"] {
            let mut body = subject.request(ctx.seed, 1)?;
            body["inputs"][0]["datatype"] = json!(datatype);
            expect_refused(
                &ctx,
                &subject,
                &body,
                &format!("datatype {datatype:?} on input 0"),
            )
            .await?;
        }
    }
    Ok(())
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

/// Policy: exactly 400 naming the tensor's shape.
async fn shape_data_mismatch_is_400(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "exactly 400 naming the tensor's shape").await?;
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

/// Policy: exactly 400 stating the feature count.
async fn wrong_feature_count_is_400(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "exactly 400 stating the feature count").await?;
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

/// Policy: per-feature inputs checked by name.
async fn wrong_feature_names_is_400(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "per-feature inputs checked by name").await?;
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

/// Policy: exactly 400 naming the bad field.
async fn malformed_json_is_400(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "exactly 400 naming the bad field").await?;
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

/// Policy: the request-body limit and 413.
async fn body_over_limit_is_413(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "the request-body limit and 413").await?;
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

/// Policy: FP64 inputs only, exactly 400.
async fn unsupported_datatype_is_400(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "FP64 inputs only, exactly 400").await?;
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
