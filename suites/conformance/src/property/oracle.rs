//! The model library as the oracle: served predictions and sanitiser reports equal the
//! library's, and the sanitiser's output is a fixed point.

use std::sync::Arc;

use proptest::test_runner::TestCaseError;

use gauntlet_engine::artifact::{ImputePolicy, ModelArtifact};
use gauntlet_engine::model::Model;
use gauntlet_engine::oip::{InferResponse, SanitiserAction};
use gauntlet_harness::{Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case};

use super::strategies::{Cell, DirtyBatch, ValidBatch, dirty_batches, valid_batches};
use super::{Probe, case_id, check, describe_reply, fail, require_references};
use crate::support::{
    Layout, check_change, clip_bounds, compare_predictions, imputed_value, infer_request,
    library_expect, library_model, prediction_values,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "property",
            predictions_match_library,
            ["ENG-PRED", "ENG-SAN"],
            []
        ),
        case!("property", sanitising_is_idempotent, ["ENG-SAN"], []),
    ]
}

/// Sends `data` to the live version of `artifact` and returns the response and predictions.
fn infer(
    probe: &Probe,
    artifact: &ModelArtifact,
    data: &[Option<f64>],
    layout: Layout,
    rows: usize,
) -> Result<(InferResponse, Vec<f64>), TestCaseError> {
    let request = infer_request(artifact, data, layout);
    let reply = probe
        .wait(probe.target().infer(&artifact.name, None, &request))
        .map_err(|e| fail(format!("the request did not complete: {e}")))?;
    let what = format!("{rows} row(s) in the {layout:?} layout");
    if reply.status != http::StatusCode::OK {
        return Err(fail(format!(
            "{what}: expected 200, got {}",
            describe_reply(&reply)
        )));
    }
    let response: InferResponse = reply.json().map_err(|e| {
        fail(format!(
            "{what}: the 200 body is not an infer response: {e}"
        ))
    })?;
    if response.model_version != artifact.version {
        return Err(fail(format!(
            "{what}: `model_version` expected {:?}, got {:?}",
            artifact.version, response.model_version
        )));
    }
    let predictions =
        prediction_values(&response, rows).map_err(|why| fail(format!("{what}: {why}")))?;
    Ok((response, predictions))
}

/// The library models of the references, built once per case.
fn library_models(ctx: &CaseCtx) -> Result<Arc<Vec<Model>>, CaseError> {
    ctx.reference_models
        .iter()
        .map(library_model)
        .collect::<Result<Vec<_>, _>>()
        .map(Arc::new)
}

/// Served predictions and sanitiser changes equal the library's (see
/// [`crate::support::REL_TOLERANCE`] for why within 1e-12 relative rather than bit for bit);
/// the last row of a batch sent alone gets the prediction it got in the batch.
fn matches_library(
    probe: &Probe,
    models: &[Model],
    batch: &ValidBatch,
) -> Result<(), TestCaseError> {
    let (Some(artifact), Some(model)) =
        (probe.references().get(batch.model), models.get(batch.model))
    else {
        return Ok(());
    };
    let n = artifact.features.len();
    let data: Vec<Option<f64>> = batch.values.iter().copied().map(Some).collect();
    let expected = library_expect(model, &data).map_err(|e| {
        fail(format!(
            "the library rejects a batch within the training range: {e}"
        ))
    })?;
    let (response, served) = infer(probe, artifact, &data, batch.layout, batch.rows)?;
    compare_predictions(&served, &expected.predictions).map_err(|why| {
        fail(format!(
            "{:?}, served against library: {why}",
            artifact.name
        ))
    })?;
    let changes = &response.parameters.sanitiser_changes;
    if changes.len() != expected.changes.len() {
        return Err(fail(format!(
            "{:?}: expected the library's {} sanitiser change(s) {:?}, got {changes:?}",
            artifact.name,
            expected.changes.len(),
            expected.changes
        )));
    }
    for (got, want) in changes.iter().zip(&expected.changes) {
        check_change(
            got,
            want.row,
            &want.feature,
            want.action,
            want.original,
            want.value,
        )
        .map_err(|why| fail(format!("{:?}: {why}", artifact.name)))?;
    }
    if batch.rows > 1 {
        let last = &data[(batch.rows - 1) * n..];
        let (_, alone) = infer(probe, artifact, last, Layout::Vector, 1)?;
        compare_predictions(&alone, &served[batch.rows - 1..]).map_err(|why| {
            fail(format!(
                "{:?}, last row alone against the batch: {why}",
                artifact.name
            ))
        })?;
    }
    Ok(())
}

async fn predictions_match_library(ctx: CaseCtx) -> CaseOutcome {
    let models = library_models(&ctx)?;
    let references = ctx.reference_models.clone();
    check(
        &ctx,
        case_id!(predictions_match_library),
        move || valid_batches(&references),
        move |probe, batch| matches_library(probe, &models, &batch),
    )
    .await
}

/// The value a cell stands for (`None` for a missing value), and whether the sanitiser must
/// change it.
fn cell_value(artifact: &ModelArtifact, j: usize, cell: Cell) -> (Option<f64>, bool) {
    let feature = &artifact.features[j];
    match cell {
        Cell::Typical(offset) => (
            Some((feature.median + offset * feature.mad).clamp(feature.min, feature.max)),
            false,
        ),
        Cell::Missing => (None, true),
        Cell::Outlier { above, factor } => match clip_bounds(artifact, j) {
            Some((lo, hi)) => {
                let reach = if above {
                    hi - feature.median
                } else {
                    lo - feature.median
                };
                (Some(feature.median + reach * factor), true)
            }
            // Unclipped feature (no clipping or a zero MAD): far away, but left alone.
            None => (
                Some(feature.median + if above { factor } else { -factor }),
                false,
            ),
        },
    }
}

/// Missing values and outliers are reported where they are; sending the reported values back
/// changes nothing, and predicts exactly the same.
fn idempotent(probe: &Probe, batch: &DirtyBatch) -> Result<(), TestCaseError> {
    let Some(artifact) = probe.references().get(batch.model) else {
        return Ok(());
    };
    let n = artifact.features.len();
    let mut data = Vec::with_capacity(batch.cells.len());
    let mut dirty = Vec::new();
    for (i, &cell) in batch.cells.iter().enumerate() {
        let (value, changes) = cell_value(artifact, i % n, cell);
        if changes {
            dirty.push((i, value));
        }
        data.push(value);
    }
    let (first, predictions) = infer(probe, artifact, &data, batch.layout, batch.rows)?;
    let changes = &first.parameters.sanitiser_changes;
    if changes.len() != dirty.len() {
        return Err(fail(format!(
            "expected {} sanitiser change(s), at row-major positions {:?}, got {changes:?}",
            dirty.len(),
            dirty.iter().map(|(i, _)| *i).collect::<Vec<_>>()
        )));
    }
    for (change, &(i, original)) in changes.iter().zip(&dirty) {
        let (row, j) = (i / n, i % n);
        let (action, value) = match original {
            None => (SanitiserAction::Imputed, imputed_value(artifact, j)),
            Some(x) => (
                SanitiserAction::Clipped,
                clip_bounds(artifact, j).map(|(lo, hi)| x.clamp(lo, hi)),
            ),
        };
        let Some(value) = value else {
            return Err(fail(format!(
                "row {row}, feature {:?}: the case expected no change here",
                artifact.features[j].name
            )));
        };
        check_change(
            change,
            row,
            &artifact.features[j].name,
            action,
            original,
            value,
        )
        .map_err(|why| fail(format!("first request: {why}")))?;
    }

    let mut resent = data.clone();
    for change in changes {
        let Some(j) = artifact
            .features
            .iter()
            .position(|f| f.name == change.feature)
        else {
            return Err(fail(format!(
                "a change names unknown feature {:?}",
                change.feature
            )));
        };
        resent[change.row * n + j] = Some(change.value);
    }
    let (second, again) = infer(probe, artifact, &resent, batch.layout, batch.rows)?;
    if !second.parameters.sanitiser_changes.is_empty() {
        return Err(fail(format!(
            "sending back the sanitised values changed them again: {:?}",
            second.parameters.sanitiser_changes
        )));
    }
    // The same floats reach the same model, so the predictions must be the same bits.
    if let Some(row) = (0..batch.rows).find(|&r| predictions[r].to_bits() != again[r].to_bits()) {
        return Err(fail(format!(
            "row {row}: the sanitised values sent back predict {:?}, the first request predicted {:?}; expected bit-identical",
            again[row], predictions[row]
        )));
    }
    Ok(())
}

async fn sanitising_is_idempotent(ctx: CaseCtx) -> CaseOutcome {
    require_references(&ctx)?;
    let imputing: Vec<usize> = ctx
        .reference_models
        .iter()
        .enumerate()
        .filter(|(_, a)| a.impute != ImputePolicy::Reject)
        .map(|(i, _)| i)
        .collect();
    if imputing.is_empty() {
        return Err(CaseError::Skip(
            "no reference model imputes missing values".to_owned(),
        ));
    }
    let references = ctx.reference_models.clone();
    check(
        &ctx,
        case_id!(sanitising_is_idempotent),
        move || dirty_batches(&references, imputing),
        |probe, batch| idempotent(probe, &batch),
    )
    .await
}
