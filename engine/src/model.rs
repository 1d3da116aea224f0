//! A validated, compiled, servable model.
//!
//! [`Model::from_artifact`] validates an artifact and compiles it: linear weights into a flat
//! slice, tree ensembles into one struct-of-arrays node table laid out in depth-first order, so
//! that prediction walks contiguous memory and never allocates.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::artifact::{ArtifactError, ImputePolicy, ModelArtifact, ModelParams, Node, Objective};

/// Sentinel in [`Forest::feature`] marking a leaf.
const LEAF: u32 = u32::MAX;

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

/// Every tree of an ensemble in one node table, each tree's nodes contiguous in
/// depth-first (left-first) order so the common left path is a sequential read.
struct Forest {
    base_score: f64,
    logistic: bool,
    /// Index of each tree's root.
    roots: Box<[u32]>,
    /// Split feature, or [`LEAF`].
    feature: Box<[u32]>,
    /// Split threshold, or the leaf's value.
    value: Box<[f64]>,
    /// Children `[left, right]` of a split.
    children: Box<[[u32; 2]]>,
    /// Whether a NaN goes left.
    default_left: Box<[bool]>,
    /// Most nodes one row visits: the sum over trees of the nodes on the tree's longest
    /// root-to-leaf path.
    walk: usize,
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
    /// A trailing partial row (length not a multiple of `n_features`) is ignored; it is a
    /// caller bug, checked with `debug_assert`.
    pub fn predict_batch(&self, rows: &[f64]) -> Vec<f64> {
        let n = self.n_features();
        debug_assert_eq!(
            rows.len() % n,
            0,
            "batch length must be a multiple of n_features"
        );
        rows.chunks_exact(n).map(|row| self.predict(row)).collect()
    }

    /// [`Model::predict_batch`] that gives up, returning `None`, once `cancelled` is set; it
    /// checks every [`CANCEL_CHECK_ROWS`] rows.
    pub(crate) fn predict_batch_until(
        &self,
        rows: &[f64],
        cancelled: &AtomicBool,
    ) -> Option<Vec<f64>> {
        let n = self.n_features();
        let mut out = Vec::with_capacity(rows.len() / n);
        for block in rows.chunks(n * CANCEL_CHECK_ROWS) {
            if cancelled.load(Ordering::Relaxed) {
                return None;
            }
            out.extend(block.chunks_exact(n).map(|row| self.predict(row)));
        }
        Some(out)
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

/// Rows predicted between two checks for cancellation.
const CANCEL_CHECK_ROWS: usize = 64;

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

/// A node waiting to be compiled: its source index, the slot in `children` of its parent to
/// patch (parent, side), and the number of nodes on the path from the root down to it.
type Pending = (usize, Option<(usize, usize)>, usize);

impl Forest {
    /// Compiles validated trees (indices in range, every node reached once from node 0).
    fn compile(base_score: f64, objective: Objective, trees: &[crate::artifact::Tree]) -> Forest {
        let total: usize = trees.iter().map(|t| t.nodes.len()).sum();
        let mut roots = Vec::with_capacity(trees.len());
        let mut feature = Vec::with_capacity(total);
        let mut value = Vec::with_capacity(total);
        let mut children: Vec<[u32; 2]> = Vec::with_capacity(total);
        let mut default_left = Vec::with_capacity(total);
        let mut walk = 0usize;
        let mut stack: Vec<Pending> = Vec::new();
        for tree in trees {
            roots.push(to_u32(feature.len()));
            stack.push((0, None, 1));
            let mut longest = 0usize;
            while let Some((src, parent, path)) = stack.pop() {
                longest = longest.max(path);
                let at = feature.len();
                if let Some((p, side)) = parent {
                    children[p][side] = to_u32(at);
                }
                match tree.nodes[src] {
                    Node::Split {
                        feature: f,
                        threshold,
                        left,
                        right,
                        default_left: dl,
                    } => {
                        feature.push(to_u32(f));
                        value.push(threshold);
                        children.push([0, 0]);
                        default_left.push(dl);
                        // Left popped first: it lands right after its parent.
                        stack.push((right, Some((at, 1)), path + 1));
                        stack.push((left, Some((at, 0)), path + 1));
                    }
                    Node::Leaf { value: v } => {
                        feature.push(LEAF);
                        value.push(v);
                        children.push([0, 0]);
                        default_left.push(false);
                    }
                }
            }
            walk = walk.saturating_add(longest);
        }
        Forest {
            base_score,
            logistic: objective == Objective::BinaryLogistic,
            roots: roots.into_boxed_slice(),
            feature: feature.into_boxed_slice(),
            value: value.into_boxed_slice(),
            children: children.into_boxed_slice(),
            default_left: default_left.into_boxed_slice(),
            walk,
        }
    }

    #[inline]
    fn predict(&self, row: &[f64]) -> f64 {
        let mut raw = self.base_score;
        for &root in self.roots.iter() {
            raw += self.eval(root as usize, row);
        }
        if self.logistic { sigmoid(raw) } else { raw }
    }

    #[inline]
    fn eval(&self, mut i: usize, row: &[f64]) -> f64 {
        loop {
            let f = self.feature[i];
            let v = self.value[i];
            if f == LEAF {
                return v;
            }
            let x = row[f as usize];
            let go_left = x < v || (x.is_nan() && self.default_left[i]);
            i = self.children[i][usize::from(!go_left)] as usize;
        }
    }
}

/// Node and feature indices are bounded by validation (`MAX_TOTAL_NODES`, `MAX_FEATURES`).
fn to_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(LEAF)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::artifact::{
        ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION, FeatureSpec, ImputePolicy, ModelArtifact, Tree,
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

    /// A deterministic random full tree of `depth` over `n` features, from an LCG seed.
    pub(crate) fn random_tree(seed: &mut u64, depth: u32, n: usize) -> Tree {
        fn next(seed: &mut u64) -> u64 {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *seed >> 33
        }
        fn build(seed: &mut u64, depth: u32, n: usize, nodes: &mut Vec<Node>) -> usize {
            let at = nodes.len();
            if depth == 0 || next(seed) % 8 == 0 {
                nodes.push(leaf((next(seed) % 2001) as f64 / 1000.0 - 1.0));
                return at;
            }
            nodes.push(leaf(0.0));
            let feature = (next(seed) as usize) % n;
            let threshold = (next(seed) % 2001) as f64 / 1000.0 - 1.0;
            let default_left = next(seed) % 2 == 0;
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
