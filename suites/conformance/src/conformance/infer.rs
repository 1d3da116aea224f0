//! Successful inference: every input layout, batches against single rows, the request id and
//! the versioned path.

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_engine::oip::InferResponse;
use gauntlet_fixtures::REF_LINEAR;
use gauntlet_harness::{
    Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case, ensure, ensure_eq, infer_path,
};

use super::both_references;
use crate::support::{
    Layout, ensure_predictions, expect_infer_ok, infer_request, library_expect, library_model,
    predictions, present, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "conformance",
            infer_layouts_agree,
            ["ENG-OIP", "ENG-PRED"],
            []
        ),
        case!(
            "conformance",
            infer_batch_equals_single_rows,
            ["ENG-PRED"],
            []
        ),
        case!("conformance", infer_echoes_request_id, ["ENG-OIP"], []),
        case!("conformance", infer_by_version, ["ENG-OIP"], []),
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

async fn infer_layouts_agree(ctx: CaseCtx) -> CaseOutcome {
    for artifact in both_references(&ctx)? {
        let model = library_model(artifact)?;
        let rows = typical_rows(artifact, ctx.seed, ROWS);
        let expected = library_expect(&model, &present(&rows))
            .map_err(|e| CaseError::Error(format!("the library rejects typical rows: {e}")))?;
        for layout in Layout::BATCH {
            let (_, got) = served(&ctx, artifact, None, &rows, layout).await?;
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

async fn infer_batch_equals_single_rows(ctx: CaseCtx) -> CaseOutcome {
    for artifact in both_references(&ctx)? {
        let n = artifact.features.len();
        let rows = typical_rows(artifact, ctx.seed, ROWS);
        let (_, batch) = served(&ctx, artifact, None, &rows, Layout::Matrix).await?;
        let mut singles = Vec::with_capacity(ROWS);
        for row in rows.chunks_exact(n) {
            let (_, one) = served(&ctx, artifact, None, row, Layout::Vector).await?;
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

async fn infer_echoes_request_id(ctx: CaseCtx) -> CaseOutcome {
    let artifact = ctx.reference(REF_LINEAR)?;
    let rows = typical_rows(artifact, ctx.seed, 1);
    // Unicode, quotes and a slash: the id must come back byte for byte.
    let id = format!("gauntlet-{:016x}-ΔΣ-\"q\"/é", ctx.seed);
    let mut request = infer_request(artifact, &present(&rows), Layout::Matrix);
    request.id = Some(id.clone());
    let line = format!("POST {} with id {id:?}", infer_path(&artifact.name, None));
    let reply = ctx.target.infer(&artifact.name, None, &request).await?;
    let response = expect_infer_ok(&reply, &line)?;
    ensure_eq!(response.id.as_deref(), Some(id.as_str()), "{line}: `id`");
    Ok(())
}

async fn infer_by_version(ctx: CaseCtx) -> CaseOutcome {
    for artifact in both_references(&ctx)? {
        let rows = typical_rows(artifact, ctx.seed, ROWS);
        let (_, live) = served(&ctx, artifact, None, &rows, Layout::Matrix).await?;
        let (_, pinned) = served(
            &ctx,
            artifact,
            Some(&artifact.version),
            &rows,
            Layout::Matrix,
        )
        .await?;
        ensure_predictions(
            &pinned,
            &live,
            &format!(
                "{:?}: the versioned path (version {:?}) against the unversioned one",
                artifact.name, artifact.version
            ),
        )?;
    }
    Ok(())
}
