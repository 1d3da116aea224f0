//! The repository extension: load stages, promote makes live, rollback restores, unload
//! removes; a failed load changes nothing. Every case works on a scratch model of its own.

use http::StatusCode;
use serde_json::Value;

use gauntlet_engine::artifact::{ModelArtifact, ModelParams, Node, Objective};
use gauntlet_fixtures::{REF_ENSEMBLE, REF_LINEAR};
use gauntlet_harness::{
    Capability, Case, CaseCtx, CaseError, CaseOutcome, Target, TargetExt, case, ensure, ensure_eq,
    infer_path,
};

use super::subject::policy_applies;
use crate::repository::{
    Action, act, action_line, altered, index, live_version_1, load, load_raw, renamed, stage,
    switch, with_scratch,
};
use crate::support::{
    Layout, describe, ensure_names, ensure_predictions, excerpt, expect_error, expect_infer_ok,
    infer_request, library_expect, library_model, plain_predict, predictions, present,
    reference_platform, scratch_name, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "conformance",
            load_promote_rollback,
            ["ENG-BG", "ENG-SWAP", "CMP-TEST"],
            [Capability::Repository, Capability::ArtifactUpload]
        ),
        case!(
            "conformance",
            failed_load_keeps_live_model,
            ["ENG-BG"],
            [Capability::Repository, Capability::ArtifactUpload]
        ),
        case!(
            "conformance",
            promote_without_staged_is_409,
            ["ENG-BG"],
            [Capability::Repository, Capability::ArtifactUpload]
        ),
        case!(
            "conformance",
            deep_trees_predict_like_the_artifact,
            ["ENG-PRED"],
            [Capability::Repository, Capability::ArtifactUpload]
        ),
        case!(
            "conformance",
            logistic_models_predict_like_the_artifact,
            ["ENG-PRED"],
            [Capability::Repository, Capability::ArtifactUpload]
        ),
    ]
}

/// Depth of [`deep_trees_predict_like_the_artifact`]'s deep trees: past the reference
/// ensemble's and past the depth the reference engine lays out level by level (10), so its
/// other evaluation path (walking each tree node by node) answers.
const DEEP: usize = 11;

/// Depth of the same case's other trees: full trees the reference engine lays out level by
/// level and steps 16 rows at a time, deeper than the reference ensemble's (whose batches in
/// the property cases are too short for a block of 16).
const LEVELLED: usize = 6;

/// Depth of the same case's chain: one split a level, far past any level-by-level layout
/// (2^70 slots) and past 64, where a full tree's size no longer fits a machine word.
const CHAIN: usize = 70;

/// Rows each check sends.
const ROWS: usize = 3;

/// Infers `rows` on the live version of `artifact`'s model and checks that `artifact` answers.
async fn expect_serving(
    target: &dyn Target,
    artifact: &ModelArtifact,
    rows: &[f64],
    expected: &[f64],
    when: &str,
) -> CaseOutcome {
    expect_answer(target, artifact, None, rows, expected, when).await
}

/// Infers `rows` on `version` (the live one for `None`) and checks that `artifact` answers.
async fn expect_answer(
    target: &dyn Target,
    artifact: &ModelArtifact,
    version: Option<&str>,
    rows: &[f64],
    expected: &[f64],
    when: &str,
) -> CaseOutcome {
    let line = format!("POST {} {when}", infer_path(&artifact.name, version));
    let request = infer_request(artifact, &present(rows), Layout::Matrix);
    let reply = target.infer(&artifact.name, version, &request).await?;
    let response = expect_infer_ok(&reply, &line)?;
    ensure_eq!(
        response.model_version,
        artifact.version,
        "{line}: `model_version`"
    );
    let got = predictions(&response, expected.len(), &line)?;
    ensure_predictions(
        &got,
        expected,
        &format!("{line}: predictions against version {:?}", artifact.version),
    )
}

/// The library's predictions of `rows` under `artifact`.
fn predicted(artifact: &ModelArtifact, rows: &[f64]) -> Result<Vec<f64>, CaseError> {
    let model = library_model(artifact)?;
    library_expect(&model, &present(rows))
        .map(|e| e.predictions)
        .map_err(|e| CaseError::Error(format!("the library rejects typical rows: {e}")))
}

/// The index entries of model `name`.
async fn index_entries(target: &dyn Target, name: &str) -> Result<Vec<Value>, CaseError> {
    let reply = index(target).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "POST /v2/repository/index: expected status 200 OK, got {}",
        describe(&reply)
    );
    let body: Value = reply.json().map_err(|e| {
        CaseError::Fail(format!(
            "POST /v2/repository/index: the body is not JSON ({e}): {:?}",
            excerpt(&reply.text())
        ))
    })?;
    let Some(entries) = body.as_array() else {
        return Err(CaseError::Fail(format!(
            "POST /v2/repository/index: expected an array, got {}",
            excerpt(&body.to_string())
        )));
    };
    for (i, entry) in entries.iter().enumerate() {
        for field in ["name", "version", "state"] {
            ensure!(
                entry.get(field).is_some_and(Value::is_string),
                "POST /v2/repository/index: entry {i} should have a string `{field}`, got {entry}"
            );
        }
    }
    Ok(entries
        .iter()
        .filter(|e| e["name"].as_str() == Some(name))
        .cloned()
        .collect())
}

async fn load_promote_rollback(ctx: CaseCtx) -> CaseOutcome {
    let reference = ctx.template(REF_LINEAR)?;
    let name = scratch_name("conf-swap", ctx.seed);
    let target = ctx.target.as_ref();
    with_scratch(&ctx.target, &name, || async {
        let v1 = renamed(reference, &name, "1");
        let v2 = altered(&renamed(reference, &name, "2"));
        let rows = typical_rows(reference, ctx.seed, ROWS);
        let (p1, p2) = (predicted(&v1, &rows)?, predicted(&v2, &rows)?);
        if p1.iter().zip(&p2).any(|(a, b)| a == b) {
            return Err(CaseError::Error(
                "the two versions predict the same for some row; the case cannot tell them apart"
                    .into(),
            ));
        }

        stage(target, &v1).await?;
        // A staged version can be tested by naming it...
        expect_answer(target, &v1, Some("1"), &rows, &p1, "with version 1 staged").await?;
        // ...but it is not served: the live path has nothing yet.
        let request = infer_request(&v1, &present(&rows), Layout::Matrix);
        let reply = target.infer(&name, None, &request).await?;
        ensure!(
            reply.status.is_client_error(),
            "POST {} after load, before promote: a staged model must not serve the live path; expected a 4xx, got {}",
            infer_path(&name, None),
            describe(&reply)
        );

        switch(target, &name, Action::Promote, "1", None).await?;
        expect_serving(target, &v1, &rows, &p1, "after promoting version 1").await?;

        stage(target, &v2).await?;
        expect_serving(target, &v1, &rows, &p1, "with version 2 staged").await?;
        expect_answer(target, &v2, Some("2"), &rows, &p2, "with version 2 staged").await?;

        switch(target, &name, Action::Promote, "2", Some("1")).await?;
        expect_serving(target, &v2, &rows, &p2, "after promoting version 2").await?;

        let entries = index_entries(target, &name).await?;
        let ready: Vec<&str> = entries
            .iter()
            .filter(|e| e["state"] == "READY")
            .filter_map(|e| e["version"].as_str())
            .collect();
        ensure!(
            ready == ["2"],
            "POST /v2/repository/index: expected exactly version \"2\" of {name:?} READY (live), got READY versions {ready:?} in {entries:?}"
        );
        ensure!(
            entries.iter().any(|e| e["version"] == "1"),
            "POST /v2/repository/index: expected version \"1\" of {name:?} listed as the rollback target, got {entries:?}"
        );

        switch(target, &name, Action::Rollback, "1", Some("2")).await?;
        expect_serving(target, &v1, &rows, &p1, "after rolling back").await?;

        let reply = act(target, &name, Action::Unload).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "{}: expected status 200 OK, got {}",
            action_line(&name, Action::Unload),
            describe(&reply)
        );
        let reply = target.infer(&name, None, &request).await?;
        expect_error(
            &reply,
            StatusCode::NOT_FOUND,
            &format!("POST {} after unload", infer_path(&name, None)),
        )?;
        let entries = index_entries(target, &name).await?;
        ensure!(
            entries.is_empty(),
            "POST /v2/repository/index after unload: expected no entry for {name:?}, got {entries:?}"
        );
        Ok(())
    })
    .await
}

/// `artifact` with the first split of its first tree pointing past the end of the tree.
fn with_dangling_child(artifact: &ModelArtifact) -> Option<ModelArtifact> {
    let mut broken = artifact.clone();
    let ModelParams::TreeEnsemble { trees, .. } = &mut broken.model else {
        return None;
    };
    let tree = trees.first_mut()?;
    let n_nodes = tree.nodes.len();
    let split = tree.nodes.iter_mut().find_map(|node| match node {
        Node::Split { left, .. } => Some(left),
        Node::Leaf { .. } => None,
    })?;
    *split = n_nodes + 7;
    Some(broken)
}

async fn failed_load_keeps_live_model(ctx: CaseCtx) -> CaseOutcome {
    let reference = ctx.template(REF_ENSEMBLE)?;
    let name = scratch_name("conf-badload", ctx.seed);
    let target = ctx.target.as_ref();
    with_scratch(&ctx.target, &name, || async {
        let v1 = live_version_1(target, reference, &name).await?;
        let rows = typical_rows(reference, ctx.seed, ROWS);
        let p1 = predicted(&v1, &rows)?;
        expect_serving(target, &v1, &rows, &p1, "after promoting version 1").await?;

        let Some(dangling) = with_dangling_child(&renamed(reference, &name, "2")) else {
            return Err(CaseError::Skip(format!(
                "reference {REF_ENSEMBLE:?} has no split node to break"
            )));
        };
        let other_name = renamed(reference, &format!("{name}-other"), "2");
        let v2 = serde_json::to_value(renamed(reference, &name, "2"))
            .map_err(|e| CaseError::Error(format!("failed to serialise an artifact: {e}")))?;
        let mut no_format = v2.clone();
        no_format["format"] = Value::from("not-a-gauntlet-model");
        let line = |what: &str| format!("POST /v2/repository/models/{name}/load with {what}");

        let reply = load(target, &name, &dangling).await?;
        let what = line("a tree child index out of range");
        let message = expect_error(&reply, StatusCode::BAD_REQUEST, &what)?;
        ensure_names(&message, &["trees[0]", "left", "out of range"], &what)?;

        let reply = load(target, &name, &other_name).await?;
        let what = line(&format!("an artifact named {:?}", other_name.name));
        let message = expect_error(&reply, StatusCode::BAD_REQUEST, &what)?;
        ensure_names(&message, &["name"], &what)?;

        let reply = load_raw(target, &name, no_format).await?;
        let what = line("an artifact of another format");
        let message = expect_error(&reply, StatusCode::BAD_REQUEST, &what)?;
        ensure_names(&message, &["format"], &what)?;

        // A value of the wrong type says nothing of where it is: the error must name the
        // field's path (the type error alone does not).
        let mut mistyped = v2;
        mistyped["model"]["base_score"] = Value::from("high");
        let reply = load_raw(target, &name, mistyped).await?;
        let what = line("a string for model.base_score");
        let message = expect_error(&reply, StatusCode::BAD_REQUEST, &what)?;
        ensure_names(&message, &["base_score"], &what)?;

        expect_serving(target, &v1, &rows, &p1, "after four failed loads").await?;
        // A failed load stages nothing, so there is nothing to promote.
        let reply = act(target, &name, Action::Promote).await?;
        expect_error(
            &reply,
            StatusCode::CONFLICT,
            &format!(
                "{} after failed loads only",
                action_line(&name, Action::Promote)
            ),
        )?;
        expect_serving(target, &v1, &rows, &p1, "after the refused promote").await
    })
    .await
}

async fn promote_without_staged_is_409(ctx: CaseCtx) -> CaseOutcome {
    let reference = ctx.template(REF_LINEAR)?;
    let name = scratch_name("conf-conflict", ctx.seed);
    let target = ctx.target.as_ref();
    with_scratch(&ctx.target, &name, || async {
        let v1 = live_version_1(target, reference, &name).await?;
        let rows = typical_rows(reference, ctx.seed, ROWS);
        let p1 = predicted(&v1, &rows)?;

        let reply = act(target, &name, Action::Promote).await?;
        expect_error(
            &reply,
            StatusCode::CONFLICT,
            &format!(
                "{} with nothing staged",
                action_line(&name, Action::Promote)
            ),
        )?;
        let reply = act(target, &name, Action::Rollback).await?;
        expect_error(
            &reply,
            StatusCode::CONFLICT,
            &format!(
                "{} with no previous version",
                action_line(&name, Action::Rollback)
            ),
        )?;
        expect_serving(
            target,
            &v1,
            &rows,
            &p1,
            "after the refused promote and rollback",
        )
        .await
    })
    .await
}

/// ENG-PRED: the two link functions the reference models do not use. A logistic model (the
/// reference linear model's weights) and a binary-logistic ensemble (the reference trees),
/// each with its intercept or base score moved so that typical rows give raw scores of both
/// signs (the sigmoid has a branch for each), predict what the artifact read plainly says,
/// and, under the reference engine's policy, their metadata names their kind.
async fn logistic_models_predict_like_the_artifact(ctx: CaseCtx) -> CaseOutcome {
    let target = ctx.target.as_ref();
    // `platform` is the reference engine's policy, not the protocol's.
    let names_platform = policy_applies(&ctx, "`platform` names the model's kind")
        .await
        .is_ok();
    for template in [ctx.template(REF_LINEAR)?, ctx.template(REF_ENSEMBLE)?] {
        let rows = typical_rows(template, ctx.seed, 40);
        let raw = plain_predict(template, &rows);
        let mut sorted = raw.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let (kind, model) = match &template.model {
            ModelParams::Linear { intercept, weights } => (
                "logistic",
                ModelParams::Logistic {
                    intercept: intercept - middle,
                    weights: weights.clone(),
                },
            ),
            ModelParams::TreeEnsemble {
                base_score, trees, ..
            } => (
                "tree_ensemble",
                ModelParams::TreeEnsemble {
                    base_score: base_score - middle,
                    objective: Objective::BinaryLogistic,
                    trees: trees.clone(),
                },
            ),
            ModelParams::Logistic { .. } => {
                return Err(CaseError::Error(format!(
                    "reference model {} is already logistic",
                    template.name
                )));
            }
        };
        let mut logistic = template.clone();
        logistic.model = model;
        let signs = |above: bool| raw.iter().filter(|r| (**r > middle) == above).count();
        ensure!(
            signs(true) > 0 && signs(false) > 0,
            "typical rows of {} give raw scores of one sign only around {middle}",
            template.name
        );
        let name = scratch_name(&format!("conf-{kind}"), ctx.seed);
        with_scratch(&ctx.target, &name, || async {
            let v1 = live_version_1(target, &logistic, &name).await?;
            let expected = predicted(&v1, &rows)?;
            expect_serving(
                target,
                &v1,
                &rows,
                &expected,
                &format!("({kind} with a sigmoid link)"),
            )
            .await?;
            if !names_platform {
                return Ok(());
            }
            let reply = target.get(&format!("/v2/models/{name}")).await?;
            let body: Value = reply.json().map_err(|e| {
                CaseError::Fail(format!("GET /v2/models/{name}: the body is not JSON ({e})"))
            })?;
            ensure_eq!(
                body["platform"].as_str().unwrap_or_default().to_owned(),
                reference_platform(&v1),
                "GET /v2/models/{name}: `platform` names the artifact's kind"
            );
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// ENG-PRED: an ensemble of trees deeper than the reference ones (two full trees of
/// [`LEVELLED`] levels, then two of [`DEEP`], seeded random splits around each feature's
/// median: ~0.8 MB of artifact, and a chain of [`CHAIN`] splits) predicts what the artifact
/// read plainly says, on more rows than two evaluation blocks.
async fn deep_trees_predict_like_the_artifact(ctx: CaseCtx) -> CaseOutcome {
    let reference = ctx.template(REF_ENSEMBLE)?;
    let name = scratch_name("conf-deep", ctx.seed);
    let target = ctx.target.as_ref();
    let mut deep = gauntlet_fixtures::random_forest(reference, 2, LEVELLED, ctx.seed);
    let walked = gauntlet_fixtures::random_forest(reference, 2, DEEP, ctx.seed ^ 1);
    if let (
        ModelParams::TreeEnsemble { trees, .. },
        ModelParams::TreeEnsemble { trees: more, .. },
    ) = (&mut deep.model, walked.model)
    {
        trees.extend(more);
        trees.push(chain(CHAIN));
    }
    with_scratch(&ctx.target, &name, || async {
        let v1 = live_version_1(target, &deep, &name).await?;
        let rows = typical_rows(reference, ctx.seed, 40);
        let expected = predicted(&v1, &rows)?;
        expect_serving(
            target,
            &v1,
            &rows,
            &expected,
            &format!("(2 trees of depth {LEVELLED}, 2 of depth {DEEP})"),
        )
        .await
    })
    .await
}

/// A tree of `depth` splits on feature 0, one a level: split `i` sends `x < t_i` to a leaf of
/// value `i / 64` and the rest on. The first thresholds pass every finite row on; the last eight
/// are spread over [-2, 2), so rows stop at different depths near the bottom.
fn chain(depth: usize) -> gauntlet_engine::artifact::Tree {
    let mut nodes = Vec::with_capacity(2 * depth + 1);
    for i in 0..depth {
        let threshold = match depth - i {
            left if left <= 8 => -2.0 + 0.5 * (8 - left) as f64,
            _ => -1e300,
        };
        let at = nodes.len();
        nodes.push(Node::Split {
            feature: 0,
            threshold,
            left: at + 1,
            right: at + 2,
            default_left: i % 2 == 0,
        });
        nodes.push(Node::Leaf {
            value: i as f64 / 64.0,
        });
    }
    nodes.push(Node::Leaf { value: 2.0 });
    gauntlet_engine::artifact::Tree { nodes }
}
