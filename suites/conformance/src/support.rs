//! Pieces every suite uses: request builders, reply checks, the model-library oracle and
//! deterministic rows.

use http::StatusCode;
use serde_json::Value;

use gauntlet_engine::artifact::{ImputePolicy, ModelArtifact, ModelParams, Node, Objective, Tree};
use gauntlet_engine::model::Model;
use gauntlet_engine::oip::{
    Datatype, InferRequest, InferResponse, RequestInput, SanitiserAction, SanitiserChange,
};
use gauntlet_harness::{CaseError, CaseOutcome, Reply};

/// Served predictions may differ from the library's by this much, relative to the larger
/// magnitude.
///
/// The in-process engine runs the library's own code on the same floats, so it agrees bit for
/// bit; an independent server may sum a linear model in another order, or parse JSON floats
/// with a parser that is not correctly rounded (serde_json without `float_roundtrip` may be one
/// ULP off), each of which moves the last few bits. 1e-12 is about 4,500 ULP: far above that
/// noise, far below any real difference between two models (a changed weight, a wrong branch).
pub(crate) const REL_TOLERANCE: f64 = 1e-12;

/// How an infer request lays out its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One tensor of shape `[rows, n_features]`.
    Matrix,
    /// One tensor of shape `[n_features]`: a single row.
    Vector,
    /// One tensor per feature, named after it, of shape `[rows]`.
    Columns,
    /// One tensor per feature, named after it, of shape `[rows, 1]`.
    ColumnVectors,
}

impl Layout {
    /// The layouts that carry any number of rows.
    pub(crate) const BATCH: [Layout; 3] = [Layout::Matrix, Layout::Columns, Layout::ColumnVectors];
}

/// The name of the single tensor of the matrix and vector layouts.
pub(crate) const MATRIX_INPUT: &str = "features";

/// An infer request for row-major `data` (`None` = missing) laid out as `layout`.
///
/// `data.len()` must be a multiple of the artifact's feature count (one row for
/// [`Layout::Vector`]); the cases that send malformed shapes build them by hand.
pub(crate) fn infer_request(
    artifact: &ModelArtifact,
    data: &[Option<f64>],
    layout: Layout,
) -> InferRequest {
    let n = artifact.features.len().max(1);
    let rows = data.len() / n;
    let tensor = |name: &str, shape: Vec<usize>, data: Vec<Option<f64>>| RequestInput {
        name: name.to_owned(),
        shape: shape.into_iter().map(|d| d as u64).collect(),
        datatype: Datatype::Fp64,
        data,
    };
    let inputs = match layout {
        Layout::Matrix => vec![tensor(MATRIX_INPUT, vec![rows, n], data.to_vec())],
        Layout::Vector => vec![tensor(MATRIX_INPUT, vec![n], data.to_vec())],
        Layout::Columns | Layout::ColumnVectors => artifact
            .features
            .iter()
            .enumerate()
            .map(|(j, feature)| {
                let column = data.iter().skip(j).step_by(n).copied().collect();
                let shape = if layout == Layout::Columns {
                    vec![rows]
                } else {
                    vec![rows, 1]
                };
                tensor(&feature.name, shape, column)
            })
            .collect(),
    };
    InferRequest {
        id: None,
        parameters: None,
        inputs,
        outputs: None,
    }
}

/// Row-major values as request data with nothing missing.
pub(crate) fn present(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().copied().map(Some).collect()
}

/// At most 400 characters of `text`, marked when cut.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 400;
    match text.char_indices().nth(MAX) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

/// `status body-excerpt`, for messages.
pub(crate) fn describe(reply: &Reply) -> String {
    format!("{} {:?}", reply.status, excerpt(&reply.text()))
}

/// The `error` message of an OIP error body, or what is wrong with the body.
pub(crate) fn error_message(reply: &Reply) -> Result<String, String> {
    let value: Value = reply
        .json()
        .map_err(|e| format!("the body is not JSON ({e}): {:?}", excerpt(&reply.text())))?;
    match value.get("error") {
        Some(Value::String(message)) if !message.trim().is_empty() => Ok(message.clone()),
        Some(Value::String(_)) => Err("the body's `error` is empty".to_owned()),
        Some(other) => Err(format!("the body's `error` is not a string: {other}")),
        None => Err(format!(
            "the body has no `error` field: {}",
            excerpt(&value.to_string())
        )),
    }
}

/// Checks an error reply (status `expected`, a JSON body with a non-empty `error`) and returns
/// the message.
pub(crate) fn expect_error(
    reply: &Reply,
    expected: StatusCode,
    request: &str,
) -> Result<String, CaseError> {
    if reply.status != expected {
        return Err(CaseError::Fail(format!(
            "{request}: expected status {expected}, got {}",
            describe(reply)
        )));
    }
    error_message(reply)
        .map_err(|why| CaseError::Fail(format!("{request}: {expected} reply: {why}")))
}

/// Checks that an error message names at least one of `needles` (ASCII case-insensitive).
pub(crate) fn ensure_names(message: &str, needles: &[&str], request: &str) -> CaseOutcome {
    let lower = message.to_ascii_lowercase();
    if needles
        .iter()
        .any(|n| lower.contains(&n.to_ascii_lowercase()))
    {
        Ok(())
    } else {
        Err(CaseError::Fail(format!(
            "{request}: the error should name {}, got {message:?}",
            needles
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }
}

/// Parses a reply that must be a successful infer response.
pub(crate) fn expect_infer_ok(reply: &Reply, request: &str) -> Result<InferResponse, CaseError> {
    if reply.status != StatusCode::OK {
        return Err(CaseError::Fail(format!(
            "{request}: expected status 200 OK, got {}",
            describe(reply)
        )));
    }
    reply.json::<InferResponse>().map_err(|e| {
        CaseError::Fail(format!(
            "{request}: the 200 body is not an infer response ({e}): {:?}",
            excerpt(&reply.text())
        ))
    })
}

/// The `prediction` output of a response (or its only output, from a server that names it
/// otherwise), checked to be FP64 of shape `[rows]` with finite values.
pub(crate) fn predictions(
    response: &InferResponse,
    rows: usize,
    request: &str,
) -> Result<Vec<f64>, CaseError> {
    prediction_values(response, rows).map_err(|why| CaseError::Fail(format!("{request}: {why}")))
}

/// [`predictions`] with a plain message, for property cases.
pub(crate) fn prediction_values(response: &InferResponse, rows: usize) -> Result<Vec<f64>, String> {
    let names: Vec<&str> = response.outputs.iter().map(|o| o.name.as_str()).collect();
    let only = match response.outputs.as_slice() {
        [one] => Some(one),
        _ => None,
    };
    let Some(output) = response
        .outputs
        .iter()
        .find(|o| o.name == "prediction")
        .or(only)
    else {
        return Err(format!(
            "expected an output named \"prediction\", got outputs {names:?}"
        ));
    };
    if output.datatype != Datatype::Fp64 {
        return Err(format!(
            "outputs.prediction.datatype: expected FP64, got {:?}",
            output.datatype
        ));
    }
    if output.shape != [rows as u64] {
        return Err(format!(
            "outputs.prediction.shape: expected [{rows}], got {:?}",
            output.shape
        ));
    }
    if output.data.len() != rows {
        return Err(format!(
            "outputs.prediction.data: expected {rows} values, got {}",
            output.data.len()
        ));
    }
    if let Some((i, v)) = output.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(format!(
            "outputs.prediction.data[{i}]: expected a finite value, got {v}"
        ));
    }
    Ok(output.data.clone())
}

/// Whether a served prediction equals the expected one within [`REL_TOLERANCE`].
pub(crate) fn same_prediction(got: f64, expected: f64) -> bool {
    got == expected || (got - expected).abs() <= REL_TOLERANCE * got.abs().max(expected.abs())
}

/// Compares two prediction vectors element-wise within [`REL_TOLERANCE`], naming the first
/// row that differs.
pub(crate) fn compare_predictions(got: &[f64], expected: &[f64]) -> Result<(), String> {
    if got.len() != expected.len() {
        return Err(format!(
            "expected {} predictions, got {}",
            expected.len(),
            got.len()
        ));
    }
    match got
        .iter()
        .zip(expected)
        .enumerate()
        .find(|(_, (g, e))| !same_prediction(**g, **e))
    {
        None => Ok(()),
        Some((row, (g, e))) => Err(format!(
            "prediction of row {row}: expected {e:?}, got {g:?} (difference {:e}, tolerance {REL_TOLERANCE:e} relative)",
            g - e
        )),
    }
}

/// [`compare_predictions`] as a case verdict.
pub(crate) fn ensure_predictions(got: &[f64], expected: &[f64], what: &str) -> CaseOutcome {
    compare_predictions(got, expected).map_err(|why| CaseError::Fail(format!("{what}: {why}")))
}

/// The model library's view of a reference artifact: the oracle for served predictions.
pub(crate) fn library_model(artifact: &ModelArtifact) -> Result<Model, CaseError> {
    Model::from_artifact(artifact.clone()).map_err(|e| {
        CaseError::Error(format!(
            "the model library rejects reference artifact {:?} version {:?}: {e}",
            artifact.name, artifact.version
        ))
    })
}

/// What the library makes of a batch: its sanitiser report, and the predictions of the
/// artifact read plainly on the sanitised rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expected {
    /// The predictions, one per row ([`plain_predict`]).
    pub(crate) predictions: Vec<f64>,
    /// The library's sanitiser changes.
    pub(crate) changes: Vec<SanitiserChange>,
}

/// Sanitises `data` with the library and predicts the sanitised rows with [`plain_predict`];
/// `Err` when the library rejects the batch.
pub(crate) fn library_expect(model: &Model, data: &[Option<f64>]) -> Result<Expected, String> {
    let sanitised = model.sanitise(data).map_err(|e| e.to_string())?;
    Ok(Expected {
        predictions: plain_predict(model.artifact(), &sanitised.values),
        changes: sanitised.changes,
    })
}

/// The `platform` the reference engine's metadata gives a model of `artifact`: `gauntlet-` and
/// the artifact's kind as the artifact spells it (read here, not from the engine's `Model`).
pub(crate) fn reference_platform(artifact: &ModelArtifact) -> String {
    let kind = match &artifact.model {
        ModelParams::Linear { .. } => "linear",
        ModelParams::Logistic { .. } => "logistic",
        ModelParams::TreeEnsemble { .. } => "tree_ensemble",
    };
    format!("gauntlet-{kind}")
}

/// The artifact's predictions of row-major `rows`, read the plainest way: the linear sum in
/// feature order, each tree walked from node 0 to its leaf and summed in tree order after
/// the base score, then the link. Independent of the engine's compiled models (its column
/// blocks, levelled trees, folded weights), so a fault there differs from this oracle even
/// when the engine in the same build is the target; the engine's contract is to equal it
/// bit for bit (the same additions in the same order).
pub(crate) fn plain_predict(artifact: &ModelArtifact, rows: &[f64]) -> Vec<f64> {
    let n = artifact.features.len().max(1);
    let sigmoid = |x: f64| {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    };
    rows.chunks_exact(n)
        .map(|row| match &artifact.model {
            ModelParams::Linear { intercept, weights } => linear(*intercept, weights, row),
            ModelParams::Logistic { intercept, weights } => {
                sigmoid(linear(*intercept, weights, row))
            }
            ModelParams::TreeEnsemble {
                base_score,
                objective,
                trees,
            } => {
                let raw = trees
                    .iter()
                    .fold(*base_score, |raw, tree| raw + leaf_of(tree, row));
                match objective {
                    Objective::Regression => raw,
                    Objective::BinaryLogistic => sigmoid(raw),
                }
            }
        })
        .collect()
}

fn linear(intercept: f64, weights: &[f64], row: &[f64]) -> f64 {
    weights
        .iter()
        .zip(row)
        .fold(intercept, |acc, (w, x)| acc + w * x)
}

/// The leaf value `row` reaches: left when `x < threshold`, or when `x` is NaN and the split
/// sends missing values left. A malformed tree (the library refuses those) gives NaN.
fn leaf_of(tree: &Tree, row: &[f64]) -> f64 {
    let mut i = 0;
    for _ in 0..=tree.nodes.len() {
        match tree.nodes.get(i) {
            Some(Node::Leaf { value }) => return *value,
            Some(Node::Split {
                feature,
                threshold,
                left,
                right,
                default_left,
            }) => {
                let x = row.get(*feature).copied().unwrap_or(f64::NAN);
                let go_left = x < *threshold || (x.is_nan() && *default_left);
                i = if go_left { *left } else { *right };
            }
            None => return f64::NAN,
        }
    }
    f64::NAN
}

/// The lower and upper clip bounds of feature `j`, when the artifact clips it.
pub(crate) fn clip_bounds(artifact: &ModelArtifact, j: usize) -> Option<(f64, f64)> {
    let feature = artifact.features.get(j)?;
    let k = artifact.clip_mads?;
    let reach = k * feature.mad;
    (feature.mad > 0.0).then_some((feature.median - reach, feature.median + reach))
}

/// The value the artifact's policy puts in place of a missing value of feature `j` (clipped
/// like any value), or `None` under the reject policy.
pub(crate) fn imputed_value(artifact: &ModelArtifact, j: usize) -> Option<f64> {
    let feature = artifact.features.get(j)?;
    let raw = match artifact.impute {
        ImputePolicy::Median => feature.median,
        ImputePolicy::Constant { value } => value,
        ImputePolicy::Reject => return None,
    };
    Some(match clip_bounds(artifact, j) {
        Some((lo, hi)) => raw.clamp(lo, hi),
        None => raw,
    })
}

/// A deterministic stream of uniform draws (splitmix64), for the fixed inputs of unit cases.
#[derive(Debug, Clone)]
pub(crate) struct Draws(u64);

impl Draws {
    pub(crate) fn new(seed: u64) -> Self {
        Draws(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// `rows` typical rows for `artifact`, row-major: each value within two MADs of the feature's
/// median and inside its training range, so the sanitiser leaves them alone. Deterministic in
/// `seed`.
pub(crate) fn typical_rows(artifact: &ModelArtifact, seed: u64, rows: usize) -> Vec<f64> {
    let mut draws = Draws::new(seed);
    let mut out = Vec::with_capacity(rows * artifact.features.len());
    for _ in 0..rows {
        for feature in &artifact.features {
            let offset = (draws.unit() * 4.0 - 2.0) * feature.mad;
            let value = (feature.median + offset).clamp(feature.min, feature.max);
            out.push(value);
        }
    }
    out
}

/// A model name no other case uses: `{prefix}-{seed as 16 hex digits}`.
pub(crate) fn scratch_name(prefix: &str, seed: u64) -> String {
    format!("{prefix}-{seed:016x}-{}", run_nonce())
}

/// A tag unique to this process, so two runs with the same seed against one shared server
/// never touch each other's scratch models. It does not feed any generated input.
fn run_nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{:x}{:05x}", std::process::id(), nanos & 0xf_ffff)
    })
}

/// Checks a sanitiser change against the expected row, feature, action and values.
pub(crate) fn check_change(
    change: &SanitiserChange,
    row: usize,
    feature: &str,
    action: SanitiserAction,
    original: Option<f64>,
    value: f64,
) -> Result<(), String> {
    let at = format!("sanitiser change for row {row}, feature {feature:?}");
    if change.row != row || change.feature != feature {
        return Err(format!(
            "{at}: got a change for row {}, feature {:?}",
            change.row, change.feature
        ));
    }
    if change.action != action {
        return Err(format!(
            "{at}: action expected {action:?}, got {:?}",
            change.action
        ));
    }
    match (original, change.original) {
        (None, None) => {}
        (Some(e), Some(g)) if same_prediction(g, e) => {}
        (e, g) => return Err(format!("{at}: original expected {e:?}, got {g:?}")),
    }
    if !same_prediction(change.value, value) {
        return Err(format!(
            "{at}: value expected {value:?}, got {:?}",
            change.value
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> ModelArtifact {
        gauntlet_fixtures::load_embedded().unwrap().remove(0)
    }

    #[test]
    fn layouts_carry_the_same_rows() {
        let a = artifact();
        let n = a.features.len();
        let data = present(&typical_rows(&a, 1, 2));
        let matrix = infer_request(&a, &data, Layout::Matrix);
        assert_eq!(matrix.inputs[0].shape, [2, n as u64]);
        let columns = infer_request(&a, &data, Layout::ColumnVectors);
        assert_eq!(columns.inputs.len(), n);
        assert_eq!(columns.inputs[3].name, a.features[3].name);
        assert_eq!(columns.inputs[3].shape, [2, 1]);
        assert_eq!(columns.inputs[3].data, [data[3], data[n + 3]]);
    }

    /// The plain reading equals the engine's compiled models bit for bit on every
    /// reference model (a linear, a logistic-linked ensemble), on rows with NaNs (each
    /// split's default direction) and in batches past the ensemble's column block.
    #[test]
    fn the_plain_reading_equals_the_library_bit_for_bit() {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut draws = Draws::new(7);
        for a in gauntlet_fixtures::load_embedded().unwrap() {
            let model = library_model(&a).unwrap();
            let mut rows = typical_rows(&a, 5, 67);
            let trees = matches!(a.model, ModelParams::TreeEnsemble { .. });
            for x in rows.iter_mut() {
                if trees && draws.next_u64().is_multiple_of(7) {
                    *x = f64::NAN;
                }
            }
            let plain = plain_predict(&a, &rows);
            assert_eq!(plain.len(), 67);
            assert!(plain.iter().all(|p| p.is_finite()), "{}", a.name);
            assert_eq!(
                bits(&plain),
                bits(&model.predict_batch(&rows)),
                "{}",
                a.name
            );
        }
    }

    /// A fault the library could have (the wrong side of one split) shows against the plain
    /// reading: the oracle does not share the engine's code.
    #[test]
    fn a_flipped_split_differs_from_the_plain_reading() {
        let a = gauntlet_fixtures::load_embedded()
            .unwrap()
            .into_iter()
            .find(|a| matches!(a.model, ModelParams::TreeEnsemble { .. }))
            .unwrap();
        let mut flipped = a.clone();
        let ModelParams::TreeEnsemble { trees, .. } = &mut flipped.model else {
            unreachable!()
        };
        if let Some(Node::Split { left, right, .. }) = trees[0].nodes.get_mut(0) {
            std::mem::swap(left, right);
        }
        let rows = typical_rows(&a, 5, 40);
        assert_ne!(plain_predict(&a, &rows), plain_predict(&flipped, &rows));
    }

    #[test]
    fn typical_rows_are_left_alone_by_the_sanitiser() {
        let a = artifact();
        let model = library_model(&a).unwrap();
        let rows = typical_rows(&a, 99, 50);
        assert_eq!(library_expect(&model, &present(&rows)).unwrap().changes, []);
        assert_ne!(typical_rows(&a, 1, 1), typical_rows(&a, 2, 1));
    }

    #[test]
    fn tolerance_separates_noise_from_differences() {
        assert!(same_prediction(0.1, 0.1 + f64::EPSILON * 0.1));
        assert!(!same_prediction(0.1, 0.1 + 1e-9));
        assert!(same_prediction(0.0, -0.0));
        let err = compare_predictions(&[1.0, 2.0], &[1.0, 2.5]).unwrap_err();
        assert!(err.contains("row 1") && err.contains("2.5"), "{err}");
    }

    #[test]
    fn excerpt_cuts_long_text_on_char_boundaries() {
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert!(cut.contains("2000 bytes in all"), "{cut}");
        assert_eq!(excerpt("short"), "short");
    }
}
