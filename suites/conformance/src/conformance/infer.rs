//! Successful inference: requests generated from each model's metadata (`ENG-OIP`), and on the
//! reference models every input layout and batches against single rows (`ENG-PRED`).

use serde_json::{Value, json};

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_engine::oip::InferResponse;
use gauntlet_harness::{
    Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case, ensure, ensure_eq, infer_path,
};

use super::both_references;
use super::subject::{check_infer_response, flatten, policy_applies, subjects};
use crate::support::{
    Layout, ensure_predictions, expect_infer_ok, infer_request, library_expect, library_model,
    predictions, present, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!("conformance", infer_generated_request, ["ENG-OIP"], []),
        case!("conformance", infer_accepts_batches, ["ENG-OIP"], []),
        case!("conformance", infer_requested_output, ["ENG-OIP"], []),
        case!("conformance", infer_echoes_request_id, ["ENG-OIP"], []),
        case!("conformance", infer_by_version, ["ENG-OIP"], []),
        case!("conformance", infer_nested_data_agrees, ["ENG-OIP"], []),
        case!(
            "conformance",
            infer_layouts_agree,
            ["ENG-POLICY", "ENG-PRED"],
            []
        ),
        case!(
            "conformance",
            infer_batch_equals_single_rows,
            ["ENG-PRED"],
            []
        ),
    ]
}

/// Rows per batch in these cases.
const ROWS: usize = 3;

/// Sends `data` in `layout` to the live version of `artifact`'s model and returns the checked
/// predictions.
async fn served(
    ctx: &CaseCtx,
    artifact: &ModelArtifact,
    version: Option<&str>,
    data: &[f64],
    layout: Layout,
    policy: bool,
) -> Result<(InferResponse, Vec<f64>), CaseError> {
    let rows = data.len() / artifact.features.len().max(1);
    let request = infer_request(artifact, &present(data), layout);
    let line = format!(
        "POST {} ({rows} rows, {layout:?} layout)",
        infer_path(&artifact.name, version)
    );
    let reply = ctx.target.infer(&artifact.name, version, &request).await?;
    let response = expect_infer_ok(&reply, &line)?;
    ensure_eq!(response.model_name, artifact.name, "{line}: `model_name`");
    if !policy {
        let values = predictions(&response, rows, &line)?;
        return Ok((response, values));
    }
    ensure_eq!(
        response.model_version,
        artifact.version,
        "{line}: `model_version`"
    );
    ensure!(
        response.parameters.sanitiser_changes.is_empty(),
        "{line}: rows within two MADs of the median should need no sanitising, got changes {:?}",
        response.parameters.sanitiser_changes
    );
    let values = predictions(&response, rows, &line)?;
    Ok((response, values))
}

/// Policy: the reference engine takes a batch as one `[rows, n]` tensor or one tensor per
/// feature, and predicts as the model library does.
async fn infer_layouts_agree(ctx: CaseCtx) -> CaseOutcome {
    policy_applies(&ctx, "per-feature input layouts").await?;
    for artifact in both_references(&ctx)? {
        let model = library_model(artifact)?;
        let rows = typical_rows(artifact, ctx.seed, ROWS);
        let expected = library_expect(&model, &present(&rows))
            .map_err(|e| CaseError::Error(format!("the library rejects typical rows: {e}")))?;
        for layout in Layout::BATCH {
            let (_, got) = served(&ctx, artifact, None, &rows, layout, true).await?;
            ensure_predictions(
                &got,
                &expected.predictions,
                &format!(
                    "{} rows of {:?} in the {layout:?} layout against the model library",
                    ROWS, artifact.name
                ),
            )?;
        }
    }
    Ok(())
}

/// A batch predicts what each of its rows predicts alone, on the reference models.
async fn infer_batch_equals_single_rows(ctx: CaseCtx) -> CaseOutcome {
    let references = both_references(&ctx)?;
    let policy = policy_applies(&ctx, "").await.is_ok();
    for artifact in references {
        let n = artifact.features.len();
        let rows = typical_rows(artifact, ctx.seed, ROWS);
        let (_, batch) = served(&ctx, artifact, None, &rows, Layout::Matrix, policy).await?;
        let mut singles = Vec::with_capacity(ROWS);
        for row in rows.chunks_exact(n) {
            let (_, one) = served(&ctx, artifact, None, row, Layout::Vector, policy).await?;
            singles.extend(one);
        }
        ensure_predictions(
            &batch,
            &singles,
            &format!(
                "{:?}: a batch of {ROWS} rows against each row sent alone (shape [{n}])",
                artifact.name
            ),
        )?;
    }
    Ok(())
}

/// Posts `body` to `subject`'s infer path (`version`: the versioned one) and checks the reply
/// against the spec's `$inference_response`.
async fn post_checked(
    ctx: &CaseCtx,
    subject: &super::subject::Subject,
    version: Option<&str>,
    body: &Value,
    what: &str,
) -> Result<Value, CaseError> {
    let path = infer_path(&subject.name, version);
    let line = format!("POST {path} with {what}");
    let reply = ctx.target.post_json(&path, body).await?;
    let id = body.get("id").and_then(Value::as_str);
    check_infer_response(&reply, subject, id, &line)
}

/// Spec: "A successful inference request is indicated by a 200 HTTP status code", the body
/// `$inference_response = {"model_name" : $string, "model_version" : $string #optional, "id" :
/// $string, "parameters" : $parameters #optional, "outputs" : [ $response_output, ... ]}`, for
/// a one-row request built from each model's metadata.
async fn infer_generated_request(ctx: CaseCtx) -> CaseOutcome {
    for subject in subjects(&ctx).await? {
        let body = subject.request(ctx.seed, 1)?;
        post_checked(&ctx, &subject, None, &body, "one generated row").await?;
    }
    Ok(())
}

/// Spec: "If the input is batched, the shape and data must represent the full shape and
/// contents of the entire batch": a model whose inputs have a variable first dimension takes
/// 1, 3 and 16 rows.
async fn infer_accepts_batches(ctx: CaseCtx) -> CaseOutcome {
    let subjects = subjects(&ctx).await?;
    let batched: Vec<_> = subjects.iter().filter(|s| s.batched()).collect();
    if batched.is_empty() {
        return Err(CaseError::Skip(
            "no model of the run has inputs with a variable first dimension (-1)".into(),
        ));
    }
    for subject in batched {
        for rows in [1, 3, 16] {
            let body = subject.request(ctx.seed ^ rows as u64, rows)?;
            post_checked(
                &ctx,
                subject,
                None,
                &body,
                &format!("{rows} generated rows"),
            )
            .await?;
        }
    }
    Ok(())
}

/// `data` (flat, row-major) nested to `shape`: `[[a, b], [c, d]]` for `[2, 2]`.
fn nest(data: &[Value], shape: &[u64]) -> Value {
    match shape {
        [] | [_] => Value::Array(data.to_vec()),
        [d0, rest @ ..] => {
            let per = data.len() / usize::try_from(*d0).unwrap_or(1).max(1);
            Value::Array(
                data.chunks(per.max(1))
                    .map(|part| nest(part, rest))
                    .collect(),
            )
        }
    }
}

/// Spec: tensor data may be sent "in their natural multi-dimensional representation, or as a
/// flattened one-dimensional representation": three generated rows sent with every input of
/// two or more dimensions nested to its shape answer what the same rows sent flat answer
/// (the same outputs, value for value).
async fn infer_nested_data_agrees(ctx: CaseCtx) -> CaseOutcome {
    let subjects = subjects(&ctx).await?;
    let mut ran = false;
    for subject in &subjects {
        let flat = subject.request(ctx.seed, ROWS)?;
        let mut nested = flat.clone();
        let mut reshaped = Vec::new();
        if let Some(inputs) = nested["inputs"].as_array_mut() {
            for input in inputs {
                let shape: Vec<u64> = input["shape"]
                    .as_array()
                    .map(|s| s.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                let data = input["data"].as_array().cloned().unwrap_or_default();
                if shape.len() >= 2 && shape.iter().product::<u64>() == data.len() as u64 {
                    input["data"] = nest(&data, &shape);
                    reshaped.push(format!("{} {shape:?}", input["name"]));
                }
            }
        }
        if reshaped.is_empty() {
            continue;
        }
        ran = true;
        let as_flat =
            post_checked(&ctx, subject, None, &flat, "three generated rows, flat").await?;
        let what = format!(
            "the same rows nested to their shapes ({})",
            reshaped.join(", ")
        );
        let as_nested = post_checked(&ctx, subject, None, &nested, &what).await?;
        for (got, want) in as_nested["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(as_flat["outputs"].as_array().into_iter().flatten())
        {
            // Either answer may itself be nested or flat: its values are compared.
            let (mut got_values, mut want_values) = (Vec::new(), Vec::new());
            flatten(&got["data"], &mut got_values);
            flatten(&want["data"], &mut want_values);
            ensure!(
                got_values == want_values,
                "model {:?}, output {}: {what} answered {} where flat data answered {}; the \
                 spec: tensor data may be sent \"in their natural multi-dimensional \
                 representation, or as a flattened one-dimensional representation\"",
                subject.name,
                got["name"],
                crate::support::excerpt(&got["data"].to_string()),
                crate::support::excerpt(&want["data"].to_string())
            );
        }
    }
    if ran {
        Ok(())
    } else {
        Err(CaseError::Skip(
            "no model of the run has an input of two or more dimensions".into(),
        ))
    }
}

/// Spec: `"outputs" : [ $request_output, ... ] #optional` names "The output tensors requested
/// for this inference"; "For the above request the inference server must return the “output0”
/// output tensor". Asks for each model's first declared output.
async fn infer_requested_output(ctx: CaseCtx) -> CaseOutcome {
    let subjects = subjects(&ctx).await?;
    let mut ran = false;
    for subject in &subjects {
        let Some(first) = subject.outputs.first() else {
            continue;
        };
        ran = true;
        let mut body = subject.request(ctx.seed, 2)?;
        body["outputs"] = json!([{ "name": first.name }]);
        let what = format!("outputs [{{\"name\": {:?}}}]", first.name);
        let response = post_checked(&ctx, subject, None, &body, &what).await?;
        let names: Vec<&str> = response["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["name"].as_str())
            .collect();
        ensure!(
            names.contains(&first.name.as_str()),
            "POST {} with {what}: the response should hold the requested output {:?}, got \
             outputs {names:?}; the spec: \"the inference server must return the “output0” \
             output tensor\"",
            infer_path(&subject.name, None),
            first.name
        );
    }
    if !ran {
        return Err(CaseError::Skip(
            "the metadata of no model of the run declares an output to ask for".into(),
        ));
    }
    Ok(())
}

/// Spec: `"id" : $string #optional`, "if specified this identifier must be returned in the
/// response". The id holds non-ASCII characters, quotes and a slash, returned byte for byte.
async fn infer_echoes_request_id(ctx: CaseCtx) -> CaseOutcome {
    let id = format!("gauntlet-{:016x}-ΔΣ-\"q\"/é", ctx.seed);
    for subject in subjects(&ctx).await? {
        let mut body = subject.request(ctx.seed, 1)?;
        body["id"] = json!(id);
        post_checked(&ctx, &subject, None, &body, &format!("id {id:?}")).await?;
    }
    Ok(())
}

/// Spec: `POST v2/models/<model_name>[/versions/<model_version>]/infer`; "versions: The model
/// versions that may be explicitly requested via the appropriate endpoint". Each listed
/// version of each model answers; a model listing none is not asked.
async fn infer_by_version(ctx: CaseCtx) -> CaseOutcome {
    let subjects = subjects(&ctx).await?;
    let mut ran = false;
    for subject in &subjects {
        for version in subject.versions.iter().flatten() {
            ran = true;
            let body = subject.request(ctx.seed, 1)?;
            post_checked(&ctx, subject, Some(version), &body, "one generated row").await?;
        }
    }
    if !ran {
        return Err(CaseError::Skip(
            "no model of the run lists `versions` in its metadata (the spec makes them optional)"
                .into(),
        ));
    }
    Ok(())
}
