//! The sanitiser seen through the protocol: imputed and clipped values, each reported with the
//! row, the feature, the original and the value used.

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_engine::oip::{SanitiserAction, SanitiserChange};
use gauntlet_fixtures::REF_LINEAR;
use gauntlet_harness::{Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case, infer_path};

use crate::support::{
    Layout, check_change, clip_bounds, ensure_predictions, expect_infer_ok, imputed_value,
    infer_request, library_model, predictions, present, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "conformance",
            missing_value_is_imputed,
            ["ENG-POLICY", "ENG-SAN"],
            []
        ),
        case!(
            "conformance",
            outlier_is_clipped,
            ["ENG-POLICY", "ENG-SAN"],
            []
        ),
    ]
}

/// One expected sanitiser change.
struct Change {
    row: usize,
    feature: usize,
    action: SanitiserAction,
    original: Option<f64>,
    value: f64,
}

/// Sends `data` (2 rows) in the matrix and per-feature layouts and checks that the engine
/// reports exactly `expected`, in row-major order, and predicts on the sanitised rows.
async fn check_sanitised(
    ctx: &CaseCtx,
    artifact: &ModelArtifact,
    data: &[Option<f64>],
    expected: &[Change],
    what: &str,
) -> CaseOutcome {
    let n = artifact.features.len();
    let rows = data.len() / n;
    // The rows the model should see: the data with every expected change applied.
    let mut sanitised: Vec<f64> = data.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    for change in expected {
        sanitised[change.row * n + change.feature] = change.value;
    }
    library_model(artifact)?;
    let expected_predictions = crate::support::plain_predict(artifact, &sanitised);
    for layout in [Layout::Matrix, Layout::Columns] {
        let line = format!(
            "POST {} with {what} ({layout:?} layout)",
            infer_path(&artifact.name, None)
        );
        let request = infer_request(artifact, data, layout);
        let reply = ctx.target.infer(&artifact.name, None, &request).await?;
        let response = expect_infer_ok(&reply, &line)?;
        let got: &[SanitiserChange] = &response.parameters.sanitiser_changes;
        if got.len() != expected.len() {
            return Err(CaseError::Fail(format!(
                "{line}: expected {} sanitiser change(s), got {}: {got:?}",
                expected.len(),
                got.len()
            )));
        }
        for (change, want) in got.iter().zip(expected) {
            check_change(
                change,
                want.row,
                &artifact.features[want.feature].name,
                want.action,
                want.original,
                want.value,
            )
            .map_err(|why| CaseError::Fail(format!("{line}: {why}")))?;
        }
        let served = predictions(&response, rows, &line)?;
        ensure_predictions(
            &served,
            &expected_predictions,
            &format!("{line}: predictions against the library on the sanitised rows"),
        )?;
    }
    Ok(())
}

async fn missing_value_is_imputed(ctx: CaseCtx) -> CaseOutcome {
    crate::conformance::subject::policy_applies(&ctx, "the sanitiser report").await?;
    let artifact = ctx.reference(REF_LINEAR)?;
    let n = artifact.features.len();
    let feature = ctx.seed as usize % n;
    let Some(value) = imputed_value(artifact, feature) else {
        return Err(CaseError::Skip(format!(
            "reference {:?} rejects missing values; nothing is imputed",
            artifact.name
        )));
    };
    // Row 0 is complete; row 1 misses one value.
    let mut data = present(&typical_rows(artifact, ctx.seed, 2));
    data[n + feature] = None;
    let expected = [Change {
        row: 1,
        feature,
        action: SanitiserAction::Imputed,
        original: None,
        value,
    }];
    check_sanitised(
        &ctx,
        artifact,
        &data,
        &expected,
        &format!("null for {:?} in row 1", artifact.features[feature].name),
    )
    .await
}

async fn outlier_is_clipped(ctx: CaseCtx) -> CaseOutcome {
    crate::conformance::subject::policy_applies(&ctx, "the sanitiser report").await?;
    let artifact = ctx.reference(REF_LINEAR)?;
    let n = artifact.features.len();
    let start = ctx.seed as usize % n;
    let mut clipped = (0..n)
        .map(|i| (start + i) % n)
        .filter_map(|j| clip_bounds(artifact, j).map(|bounds| (j, bounds)));
    let (Some((high, (_, hi))), Some((low, (lo, _)))) = (clipped.next(), clipped.next()) else {
        return Err(CaseError::Skip(format!(
            "reference {:?} clips fewer than 2 features",
            artifact.name
        )));
    };
    // Ten times as far from the median as the bound, one above and one below.
    let median = |j: usize| artifact.features[j].median;
    let above = median(high) + 10.0 * (hi - median(high));
    let below = median(low) - 10.0 * (median(low) - lo);
    let mut data = present(&typical_rows(artifact, ctx.seed, 2));
    data[n + high] = Some(above);
    data[n + low] = Some(below);
    let mut expected = vec![
        Change {
            row: 1,
            feature: high,
            action: SanitiserAction::Clipped,
            original: Some(above),
            value: hi,
        },
        Change {
            row: 1,
            feature: low,
            action: SanitiserAction::Clipped,
            original: Some(below),
            value: lo,
        },
    ];
    expected.sort_by_key(|c| c.feature);
    check_sanitised(
        &ctx,
        artifact,
        &data,
        &expected,
        &format!(
            "{:?} = {above} and {:?} = {below} in row 1",
            artifact.features[high].name, artifact.features[low].name
        ),
    )
    .await
}
