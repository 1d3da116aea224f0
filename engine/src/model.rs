//! A validated, compiled, servable model.
//!
//! [`Model::from_artifact`] validates an artifact and compiles it: linear weights into a flat
//! slice, tree ensembles into one node table laid out in depth-first order (module `forest`), so
//! that one-row prediction walks contiguous memory and never allocates. A batch of tree-ensemble rows
//! is stepped through each tree in blocks, rows interleaved.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::artifact::{ArtifactError, ImputePolicy, ModelArtifact, ModelParams};

mod forest;

use forest::Forest;

/// A model ready to serve: immutable, shared between requests behind an `Arc`.
pub struct Model {
    artifact: ModelArtifact,
    feature_names: Vec<String>,
    feature_index: HashMap<String, usize>,
    compiled: Compiled,
    /// Per-feature sanitiser settings, precomputed from the artifact.
    pub(crate) plan: Vec<FeaturePlan>,
}

/// How the sanitiser treats one feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FeaturePlan {
    /// Replacement for a missing value; `None` rejects missing values.
    pub(crate) impute: Option<f64>,
    /// Whether outliers are clipped (clipping is configured and the MAD is positive).
    pub(crate) clip: bool,
    /// Lower clip bound, `median - clip_mads * mad`.
    pub(crate) lo: f64,
    /// Upper clip bound, `median + clip_mads * mad`.
    pub(crate) hi: f64,
}

enum Compiled {
    Linear {
        intercept: f64,
        weights: Box<[f64]>,
        logistic: bool,
    },
    Forest(Forest),
}

impl Model {
    /// Validates and compiles an artifact.
    ///
    /// # Errors
    /// The first validation error (see [`ModelArtifact::validate`]).
    pub fn from_artifact(artifact: ModelArtifact) -> Result<Model, ArtifactError> {
        artifact.validate()?;
        let feature_names: Vec<String> = artifact.features.iter().map(|f| f.name.clone()).collect();
        let feature_index = feature_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let compiled = match &artifact.model {
            ModelParams::Linear { intercept, weights } => Compiled::Linear {
                intercept: *intercept,
                weights: weights.clone().into_boxed_slice(),
                logistic: false,
            },
            ModelParams::Logistic { intercept, weights } => Compiled::Linear {
                intercept: *intercept,
                weights: weights.clone().into_boxed_slice(),
                logistic: true,
            },
            ModelParams::TreeEnsemble {
                base_score,
                objective,
                trees,
            } => Compiled::Forest(Forest::compile(*base_score, *objective, trees)),
        };
        let plan = artifact
            .features
            .iter()
            .map(|f| {
                let impute = match artifact.impute {
                    ImputePolicy::Reject => None,
                    ImputePolicy::Median => Some(f.median),
                    ImputePolicy::Constant { value } => Some(value),
                };
                let (clip, lo, hi) = match artifact.clip_mads {
                    Some(k) if f.mad > 0.0 => (true, f.median - k * f.mad, f.median + k * f.mad),
                    _ => (false, f64::NEG_INFINITY, f64::INFINITY),
                };
                FeaturePlan {
                    impute,
                    clip,
                    lo,
                    hi,
                }
            })
            .collect();
        Ok(Model {
            artifact,
            feature_names,
            feature_index,
            compiled,
            plan,
        })
    }

    /// Model name.
    pub fn name(&self) -> &str {
        &self.artifact.name
    }

    /// Model version label.
    pub fn version(&self) -> &str {
        &self.artifact.version
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Feature names, in the order the model reads them.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Position of a feature by name.
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.feature_index.get(name).copied()
    }

    /// The artifact this model was compiled from.
    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// The artifact's model kind as serialised: `linear`, `logistic` or `tree_ensemble`.
    pub fn kind(&self) -> &'static str {
        match self.artifact.model {
            ModelParams::Linear { .. } => "linear",
            ModelParams::Logistic { .. } => "logistic",
            ModelParams::TreeEnsemble { .. } => "tree_ensemble",
        }
    }

    /// Predicts one row of `n_features` values (already sanitised: no NaN is required,
    /// but a NaN follows each split's default direction).
    ///
    /// `row.len()` must equal [`Model::n_features`]; the handler guarantees it, and debug
    /// builds assert it.
    ///
    /// # Panics
    /// A tree ensemble panics on a row shorter than [`Model::n_features`] (a caller bug).
    #[inline]
    pub fn predict(&self, row: &[f64]) -> f64 {
        debug_assert_eq!(
            row.len(),
            self.n_features(),
            "row length must equal n_features"
        );
        match &self.compiled {
            Compiled::Linear {
                intercept,
                weights,
                logistic,
            } => {
                let raw = weights
                    .iter()
                    .zip(row)
                    .fold(*intercept, |acc, (w, x)| acc + w * x);
                if *logistic { sigmoid(raw) } else { raw }
            }
            Compiled::Forest(forest) => forest.predict(row),
        }
    }

    /// Predicts a flat row-major batch; equals [`Model::predict`] on each row, bit for bit.
    ///
    /// A tree ensemble steps blocks of rows through each tree together (see the module docs),
    /// several times faster per row than one [`Model::predict`] after another.
    ///
    /// A trailing partial row (length not a multiple of `n_features`) is ignored; it is a
    /// caller bug, checked with `debug_assert`.
    pub fn predict_batch(&self, rows: &[f64]) -> Vec<f64> {
        let (rows, mut out) = self.batch_output(rows);
        self.predict_into(rows, &mut out);
        out
    }

    /// [`Model::predict_batch`] with `L` rows to a block instead of the tuned default: for the
    /// benchmarks that pick the default. A linear model ignores `L`.
    #[doc(hidden)]
    pub fn predict_batch_lanes<const L: usize>(&self, rows: &[f64]) -> Vec<f64> {
        let (rows, mut out) = self.batch_output(rows);
        match &self.compiled {
            Compiled::Forest(forest) => {
                forest.predict_rows_lanes::<L>(rows, self.n_features(), &mut out);
            }
            Compiled::Linear { .. } => self.predict_into(rows, &mut out),
        }
        out
    }

    /// [`Model::predict_batch`] that gives up, returning `None`, once `cancelled` is set; it
    /// checks every [`CANCEL_CHECK_ROWS`] rows.
    pub(crate) fn predict_batch_until(
        &self,
        rows: &[f64],
        cancelled: &AtomicBool,
    ) -> Option<Vec<f64>> {
        let n = self.n_features();
        let (rows, mut out) = self.batch_output(rows);
        for (block, out) in rows
            .chunks(n * CANCEL_CHECK_ROWS)
            .zip(out.chunks_mut(CANCEL_CHECK_ROWS))
        {
            if cancelled.load(Ordering::Relaxed) {
                return None;
            }
            self.predict_into(block, out);
        }
        Some(out)
    }

    /// The whole rows of a batch, and a zeroed output with one slot per row.
    fn batch_output<'r>(&self, rows: &'r [f64]) -> (&'r [f64], Vec<f64>) {
        let n = self.n_features();
        debug_assert_eq!(
            rows.len() % n,
            0,
            "batch length must be a multiple of n_features"
        );
        let count = rows.len() / n;
        (&rows[..count * n], vec![0.0; count])
    }

    /// Predicts whole rows into `out`, one slot per row.
    fn predict_into(&self, rows: &[f64], out: &mut [f64]) {
        let n = self.n_features();
        match &self.compiled {
            Compiled::Forest(forest) => forest.predict_rows(rows, n, out),
            Compiled::Linear { .. } => {
                for (row, out) in rows.chunks_exact(n).zip(out) {
                    *out = self.predict(row);
                }
            }
        }
    }

    /// The work of sanitising and predicting one row, in rough units of a feature read or a
    /// tree node visited (at worst: every tree's longest path): what decides whether a batch
    /// is served inline or on the blocking pool. Counting trees rather than nodes let one deep
    /// chain tree pass for cheap and run for seconds on an async worker.
    pub(crate) fn cost_per_row(&self) -> usize {
        let walk = match &self.compiled {
            Compiled::Linear { .. } => 0,
            Compiled::Forest(forest) => forest.walk,
        };
        self.n_features().saturating_add(walk)
    }
}

/// Rows predicted between two checks for cancellation: whole blocks of the interleaved
/// tree-ensemble walk.
const CANCEL_CHECK_ROWS: usize = 64;
const _: () = assert!(CANCEL_CHECK_ROWS.is_multiple_of(forest::LANES));

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("kind", &self.kind())
            .field("n_features", &self.n_features())
            .finish_non_exhaustive()
    }
}

/// The logistic function, computed without overflow for any finite or infinite input.
#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::artifact::{
        ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION, FeatureSpec, ImputePolicy, ModelArtifact, Node,
        Objective, Tree,
    };
    use proptest::prelude::*;

    /// An artifact with `n` features `f0..`, median 0, MAD 1, median imputation, clip at 3 MADs.
    pub(crate) fn artifact(
        name: &str,
        version: &str,
        n: usize,
        model: ModelParams,
    ) -> ModelArtifact {
        ModelArtifact {
            format: ARTIFACT_FORMAT.to_owned(),
            format_version: ARTIFACT_FORMAT_VERSION,
            name: name.to_owned(),
            version: version.to_owned(),
            features: (0..n)
                .map(|i| FeatureSpec {
                    name: format!("f{i}"),
                    median: 0.0,
                    mad: 1.0,
                    min: -10.0,
                    max: 10.0,
                })
                .collect(),
            impute: ImputePolicy::Median,
            clip_mads: Some(3.0),
            model,
        }
    }

    pub(crate) fn linear(intercept: f64, weights: Vec<f64>) -> ModelParams {
        ModelParams::Linear { intercept, weights }
    }

    fn split(
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
        default_left: bool,
    ) -> Node {
        Node::Split {
            feature,
            threshold,
            left,
            right,
            default_left,
        }
    }

    fn leaf(value: f64) -> Node {
        Node::Leaf { value }
    }

    /// The next 31 bits of an LCG.
    fn next(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// A threshold or a row value on the grid `k / 1000 - 1`, so rows hit thresholds exactly.
    fn grid(seed: &mut u64) -> f64 {
        (next(seed) % 2001) as f64 / 1000.0 - 1.0
    }

    /// A deterministic random full tree of `depth` over `n` features, from an LCG seed.
    pub(crate) fn random_tree(seed: &mut u64, depth: u32, n: usize) -> Tree {
        fn build(seed: &mut u64, depth: u32, n: usize, nodes: &mut Vec<Node>) -> usize {
            let at = nodes.len();
            if depth == 0 || next(seed).is_multiple_of(8) {
                nodes.push(leaf((next(seed) % 2001) as f64 / 1000.0 - 1.0));
                return at;
            }
            nodes.push(leaf(0.0));
            let feature = (next(seed) as usize) % n;
            let threshold = (next(seed) % 2001) as f64 / 1000.0 - 1.0;
            let default_left = next(seed).is_multiple_of(2);
            // Children in reverse order so the compiled layout differs from the source.
            let right = build(seed, depth - 1, n, nodes);
            let left = build(seed, depth - 1, n, nodes);
            nodes[at] = split(feature, threshold, left, right, default_left);
            at
        }
        let mut nodes = Vec::new();
        build(seed, depth, n, &mut nodes);
        Tree { nodes }
    }

    /// A deep, unbalanced tree: a spine of `depth` splits that turns left or right at random,
    /// every other child a leaf or, now and then, a small random subtree.
    fn random_spine_tree(seed: &mut u64, depth: u32, n: usize) -> Tree {
        fn side(seed: &mut u64, n: usize, nodes: &mut Vec<Node>) -> usize {
            let at = nodes.len();
            if next(seed).is_multiple_of(4) {
                let sub = random_tree(seed, 3, n);
                nodes.extend(sub.nodes.into_iter().map(|node| match node {
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                        default_left,
                    } => split(feature, threshold, left + at, right + at, default_left),
                    leaf => leaf,
                }));
            } else {
                nodes.push(leaf(grid(seed)));
            }
            at
        }
        let mut nodes = Vec::new();
        let mut parent: Option<(usize, bool)> = None;
        for _ in 0..depth {
            let at = nodes.len();
            nodes.push(leaf(0.0));
            let feature = (next(seed) as usize) % n;
            let threshold = grid(seed);
            let default_left = next(seed).is_multiple_of(2);
            let spine_left = next(seed).is_multiple_of(2);
            let other = side(seed, n, &mut nodes);
            // Patched once the spine's next node exists.
            nodes[at] = split(feature, threshold, other, other, default_left);
            if let Some((p, left)) = parent {
                patch(&mut nodes[p], left, at);
            }
            parent = Some((at, spine_left));
        }
        let end = nodes.len();
        nodes.push(leaf(grid(seed)));
        if let Some((p, left)) = parent {
            patch(&mut nodes[p], left, end);
        }
        Tree { nodes }
    }

    fn patch(node: &mut Node, left_side: bool, child: usize) {
        if let Node::Split { left, right, .. } = node {
            if left_side {
                *left = child;
            } else {
                *right = child;
            }
        }
    }

    /// Row values from a seed: mostly uniform in [-2, 2), some on the threshold grid, some
    /// NaN when `nan` says so, now and then an infinity.
    fn random_rows(seed: &mut u64, count: usize, nan: bool) -> Vec<f64> {
        (0..count)
            .map(|_| match next(seed) % 40 {
                0..=3 if nan => f64::NAN,
                0..=3 => grid(seed),
                4..=7 => grid(seed),
                8 => f64::INFINITY,
                9 => f64::NEG_INFINITY,
                _ => (next(seed) % 4_000_000) as f64 / 1_000_000.0 - 2.0,
            })
            .collect()
    }

    /// Straightforward interpreter of the artifact form, the oracle for the compiled form.
    fn reference(artifact: &ModelArtifact, row: &[f64]) -> f64 {
        match &artifact.model {
            ModelParams::Linear { intercept, weights } => weights
                .iter()
                .zip(row)
                .fold(*intercept, |a, (w, x)| a + w * x),
            ModelParams::Logistic { intercept, weights } => sigmoid(
                weights
                    .iter()
                    .zip(row)
                    .fold(*intercept, |a, (w, x)| a + w * x),
            ),
            ModelParams::TreeEnsemble {
                base_score,
                objective,
                trees,
            } => {
                let mut raw = *base_score;
                for tree in trees {
                    let mut i = 0;
                    raw += loop {
                        match tree.nodes[i] {
                            Node::Leaf { value } => break value,
                            Node::Split {
                                feature,
                                threshold,
                                left,
                                right,
                                default_left,
                            } => {
                                let x = row[feature];
                                i = if x.is_nan() {
                                    if default_left { left } else { right }
                                } else if x < threshold {
                                    left
                                } else {
                                    right
                                };
                            }
                        }
                    };
                }
                match objective {
                    Objective::Regression => raw,
                    Objective::BinaryLogistic => sigmoid(raw),
                }
            }
        }
    }

    #[test]
    fn linear_and_logistic_predict() {
        let m = Model::from_artifact(artifact("m", "1", 2, linear(1.0, vec![2.0, -1.0]))).unwrap();
        assert_eq!(m.predict(&[3.0, 4.0]), 3.0);
        assert_eq!(m.kind(), "linear");
        let mut a = artifact("m", "1", 2, linear(0.0, vec![1.0, 1.0]));
        a.model = ModelParams::Logistic {
            intercept: 0.0,
            weights: vec![1.0, 1.0],
        };
        let m = Model::from_artifact(a).unwrap();
        assert_eq!(m.predict(&[0.0, 0.0]), 0.5);
        assert_eq!(m.kind(), "logistic");
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(f64::INFINITY), 1.0);
        assert_eq!(sigmoid(f64::NEG_INFINITY), 0.0);
        assert!((sigmoid(-30.0) - 9.357_622_968_840_175e-14).abs() < 1e-26);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn tree_routes_by_threshold_and_nan_default() {
        let trees = vec![Tree {
            nodes: vec![
                split(0, 0.5, 2, 1, true),
                leaf(10.0),
                split(1, 0.0, 3, 4, false),
                leaf(1.0),
                leaf(2.0),
            ],
        }];
        let params = ModelParams::TreeEnsemble {
            base_score: 0.25,
            objective: Objective::Regression,
            trees,
        };
        let m = Model::from_artifact(artifact("t", "1", 2, params)).unwrap();
        assert_eq!(m.kind(), "tree_ensemble");
        assert_eq!(m.predict(&[0.5, 0.0]), 10.25); // not < threshold: right
        assert_eq!(m.predict(&[0.4, -1.0]), 1.25);
        assert_eq!(m.predict(&[0.4, 0.0]), 2.25);
        assert_eq!(m.predict(&[f64::NAN, f64::NAN]), 2.25); // left, then right
        assert_eq!(m.predict_batch(&[0.5, 0.0, 0.4, -1.0]), vec![10.25, 1.25]);
    }

    /// Regression: the cost counted one unit per tree, so one deep chain tree passed for cheap.
    #[test]
    fn cost_per_row_counts_each_trees_longest_path() {
        let trees = vec![
            Tree {
                nodes: vec![
                    split(0, 0.5, 2, 1, true),
                    leaf(10.0),
                    split(1, 0.0, 3, 4, false),
                    leaf(1.0),
                    leaf(2.0),
                ],
            },
            Tree {
                nodes: vec![leaf(0.0)],
            },
        ];
        let params = ModelParams::TreeEnsemble {
            base_score: 0.0,
            objective: Objective::Regression,
            trees,
        };
        let m = Model::from_artifact(artifact("t", "1", 2, params)).unwrap();
        // 2 features + a path of 3 nodes + a lone leaf.
        assert_eq!(m.cost_per_row(), 6);
        let m = Model::from_artifact(artifact("l", "1", 3, linear(0.0, vec![0.0; 3]))).unwrap();
        assert_eq!(m.cost_per_row(), 3);
    }

    /// A chain far deeper than the fixed-step limit: rows leave it at different depths, and the
    /// block stops stepping once all have (the rounds' check), with each row's own leaf.
    #[test]
    fn deep_chain_batch_leaves_at_each_rows_own_depth() {
        let depth = 5_000;
        let mut nodes = Vec::with_capacity(2 * depth + 1);
        for i in 0..depth {
            // Below threshold i: the leaf of value i; otherwise on down the chain.
            nodes.push(split(0, i as f64, 2 * i + 1, 2 * i + 2, false));
            nodes.push(leaf(i as f64));
        }
        nodes.push(leaf(-1.0));
        let params = ModelParams::TreeEnsemble {
            base_score: 0.5,
            objective: Objective::Regression,
            trees: vec![Tree { nodes }],
        };
        let m = Model::from_artifact(artifact("chain", "1", 1, params)).unwrap();
        let rows: Vec<f64> = (0..100)
            .map(|k| match k % 4 {
                0 => k as f64 - 0.5,
                1 => (k * 49) as f64 - 0.5,
                2 => f64::NAN,
                _ => 1e9,
            })
            .collect();
        let expected: Vec<f64> = rows
            .iter()
            .map(|&x| {
                let leaf = if x.is_nan() || x >= depth as f64 {
                    -1.0
                } else {
                    x.ceil()
                };
                leaf + 0.5
            })
            .collect();
        assert_eq!(m.predict_batch(&rows), expected);
        let one: Vec<f64> = rows
            .iter()
            .map(|x| m.predict(std::slice::from_ref(x)))
            .collect();
        assert_eq!(one, expected);
    }

    #[test]
    fn binary_logistic_applies_sigmoid() {
        let params = ModelParams::TreeEnsemble {
            base_score: 0.0,
            objective: Objective::BinaryLogistic,
            trees: vec![Tree {
                nodes: vec![leaf(0.0)],
            }],
        };
        let m = Model::from_artifact(artifact("t", "1", 1, params)).unwrap();
        assert_eq!(m.predict(&[3.0]), 0.5);
    }

    #[test]
    fn accessors() {
        let m = Model::from_artifact(artifact("acc", "v2", 3, linear(0.0, vec![0.0; 3]))).unwrap();
        assert_eq!((m.name(), m.version(), m.n_features()), ("acc", "v2", 3));
        assert_eq!(m.feature_names(), ["f0", "f1", "f2"]);
        assert_eq!(m.feature_index("f2"), Some(2));
        assert_eq!(m.feature_index("nope"), None);
        assert_eq!(m.artifact().name, "acc");
        assert!(format!("{m:?}").contains("acc"));
    }

    #[test]
    fn from_artifact_rejects_invalid() {
        let a = artifact("m", "1", 2, linear(0.0, vec![1.0]));
        assert!(matches!(
            Model::from_artifact(a),
            Err(ArtifactError::WeightsLength { .. })
        ));
    }

    fn row_value() -> impl Strategy<Value = f64> {
        prop_oneof![8 => -2.0f64..2.0, 1 => Just(f64::NAN)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn compiled_forest_matches_reference_and_batch_matches_single(
            seed in any::<u64>(),
            n in 1usize..6,
            n_trees in 1usize..8,
            logistic in any::<bool>(),
            values in proptest::collection::vec(row_value(), 0..60),
        ) {
            let mut s = seed;
            let trees = (0..n_trees).map(|_| random_tree(&mut s, 5, n)).collect();
            let objective = if logistic { Objective::BinaryLogistic } else { Objective::Regression };
            let params = ModelParams::TreeEnsemble { base_score: 0.1, objective, trees };
            let a = artifact("p", "1", n, params);
            let m = Model::from_artifact(a.clone()).unwrap();
            let rows = values.len() / n;
            let flat = &values[..rows * n];
            let batch = m.predict_batch(flat);
            prop_assert_eq!(batch.len(), rows);
            for (row, got) in flat.chunks_exact(n).zip(&batch) {
                prop_assert_eq!(got.to_bits(), m.predict(row).to_bits());
                prop_assert_eq!(got.to_bits(), reference(&a, row).to_bits());
            }
        }

        /// Every batch path (tuned blocks, other block sizes, the cancellable one) equals the
        /// one-row walk and the artifact interpreter bit for bit, on forests mixing full,
        /// unbalanced and deep trees (deeper than the fixed-step limit, so the rounds with the
        /// all-at-a-leaf check run; sparse ones that get no level-order copy), batches with and
        /// without NaN (each has its own step), infinities, and batches of 0, 1 and
        /// not-a-multiple-of-the-block rows.
        #[test]
        fn interleaved_batch_equals_one_row_walk_bit_for_bit(
            seed in any::<u64>(),
            n in 1usize..9,
            shapes in proptest::collection::vec(0u8..4, 1..12),
            logistic in any::<bool>(),
            base_score in -1.0f64..1.0,
            rows in prop_oneof![Just(0usize), Just(1), 0usize..200],
            nan in any::<bool>(),
        ) {
            let mut s = seed;
            let trees = shapes
                .iter()
                .map(|shape| {
                    let r = next(&mut s) as u32;
                    match shape {
                        0 => Tree { nodes: vec![leaf(grid(&mut s))] },
                        1 => random_tree(&mut s, 1 + r % 7, n),
                        2 => random_spine_tree(&mut s, 1 + r % 12, n),
                        _ => random_spine_tree(&mut s, 17 + r % 40, n),
                    }
                })
                .collect();
            let objective = if logistic { Objective::BinaryLogistic } else { Objective::Regression };
            let params = ModelParams::TreeEnsemble { base_score, objective, trees };
            let a = artifact("p", "1", n, params);
            let m = Model::from_artifact(a.clone()).unwrap();
            let flat = random_rows(&mut s, rows * n, nan);
            let expected: Vec<u64> = flat
                .chunks_exact(n)
                .map(|row| {
                    let one = m.predict(row).to_bits();
                    assert_eq!(one, reference(&a, row).to_bits(), "row {row:?}");
                    one
                })
                .collect();
            let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
            prop_assert_eq!(&bits(m.predict_batch(&flat)), &expected);
            prop_assert_eq!(&bits(m.predict_batch_lanes::<1>(&flat)), &expected);
            prop_assert_eq!(&bits(m.predict_batch_lanes::<7>(&flat)), &expected);
            prop_assert_eq!(&bits(m.predict_batch_lanes::<64>(&flat)), &expected);
            let until = m.predict_batch_until(&flat, &AtomicBool::new(false));
            prop_assert_eq!(&bits(until.unwrap()), &expected);
        }

        #[test]
        fn linear_batch_matches_single(
            weights in proptest::collection::vec(-5.0f64..5.0, 1..40),
            intercept in -5.0f64..5.0,
            raw in proptest::collection::vec(-100.0f64..100.0, 0..200),
        ) {
            let n = weights.len();
            let m = Model::from_artifact(artifact("p", "1", n, linear(intercept, weights))).unwrap();
            let rows = raw.len() / n;
            let flat = &raw[..rows * n];
            for (row, got) in flat.chunks_exact(n).zip(m.predict_batch(flat)) {
                prop_assert_eq!(got.to_bits(), m.predict(row).to_bits());
                prop_assert_eq!(got.to_bits(), reference(m.artifact(), row).to_bits());
            }
        }

        #[test]
        fn sigmoid_is_a_probability(x in proptest::num::f64::ANY) {
            let y = sigmoid(x);
            if x.is_nan() {
                prop_assert!(y.is_nan());
            } else {
                prop_assert!((0.0..=1.0).contains(&y));
            }
        }
    }
}
