//! The model artifact format (`gauntlet-model`, format version 1).
//!
//! An artifact is one JSON document that carries everything the engine needs to
//! serve a model: its identity, its declared features with the statistics the
//! sanitiser uses, the missing-value policy, and the model parameters.
//!
//! ```json
//! {
//!   "format": "gauntlet-model",
//!   "format_version": 1,
//!   "name": "ref-linear",
//!   "version": "1",
//!   "features": [
//!     { "name": "ret_1", "median": 0.0, "mad": 0.01, "min": -0.2, "max": 0.2 }
//!   ],
//!   "impute": { "policy": "median" },
//!   "clip_mads": 6.0,
//!   "model": { "kind": "linear", "intercept": 0.0, "weights": [0.5] }
//! }
//! ```
//!
//! The types here are the serialised form. [`ModelArtifact::from_json`] parses
//! *and validates* an artifact; only a validated artifact becomes a servable model.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

mod params_de;

/// The value of the `format` field of every artifact.
pub const ARTIFACT_FORMAT: &str = "gauntlet-model";
/// The artifact format version this engine reads and writes.
pub const ARTIFACT_FORMAT_VERSION: u32 = 1;

/// A model artifact as stored on disk (serialised form, format version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelArtifact {
    /// Always [`ARTIFACT_FORMAT`].
    pub format: String,
    /// Always [`ARTIFACT_FORMAT_VERSION`] for this engine.
    pub format_version: u32,
    /// Model name, as used in URLs: `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    /// Model version label, `[A-Za-z0-9_.-]{1,64}`.
    pub version: String,
    /// The declared input features, in the order the model reads them.
    pub features: Vec<FeatureSpec>,
    /// What to do with a missing (null) feature value.
    pub impute: ImputePolicy,
    /// Robust outlier clipping: values are clipped to `median ± clip_mads · MAD`.
    /// `None` disables clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_mads: Option<f64>,
    /// The model parameters.
    pub model: ModelParams,
}

/// One declared input feature and its training statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Feature name, unique within the artifact.
    pub name: String,
    /// Median of the feature on the training data.
    pub median: f64,
    /// Median absolute deviation on the training data (≥ 0).
    pub mad: f64,
    /// Smallest value seen in training.
    pub min: f64,
    /// Largest value seen in training.
    pub max: f64,
}

/// Missing-value policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum ImputePolicy {
    /// Reject a request with any missing value (400).
    Reject,
    /// Replace a missing value with the feature's median.
    Median,
    /// Replace a missing value with a constant.
    Constant {
        /// The replacement value.
        value: f64,
    },
}

/// Model parameters, tagged by `kind`.
///
/// `Deserialize` is written by hand (the `params_de` module) so that a large ensemble is read
/// without buffering and its tree and node counts are checked while it is read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelParams {
    /// `y = intercept + Σ wᵢ·xᵢ`.
    Linear {
        /// Intercept.
        intercept: f64,
        /// One weight per feature.
        weights: Vec<f64>,
    },
    /// `y = σ(intercept + Σ wᵢ·xᵢ)`, a probability in (0, 1).
    Logistic {
        /// Intercept.
        intercept: f64,
        /// One weight per feature.
        weights: Vec<f64>,
    },
    /// Gradient-boosted trees: `raw = base_score + Σ tree(x)`, then the objective's link.
    TreeEnsemble {
        /// Added to the sum of the trees' outputs.
        base_score: f64,
        /// How the raw score becomes the prediction.
        objective: Objective,
        /// The trees; each is evaluated from its node 0.
        trees: Vec<Tree>,
    },
}

/// The link from an ensemble's raw score to its prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Prediction is the raw score.
    Regression,
    /// Prediction is `σ(raw)`.
    BinaryLogistic,
}

/// One decision tree: a flat node list, root at index 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Nodes; children are referenced by index into this list.
    pub nodes: Vec<Node>,
}

/// A tree node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Go `left` when `x[feature] < threshold`, else `right`; a NaN goes left when `default_left`.
    Split {
        /// Feature index.
        feature: usize,
        /// Split threshold.
        threshold: f64,
        /// Index of the left child.
        left: usize,
        /// Index of the right child.
        right: usize,
        /// Direction of a missing value.
        default_left: bool,
    },
    /// A leaf with its output value.
    Leaf {
        /// The leaf's value.
        value: f64,
    },
}

/// Most features an artifact may declare.
pub const MAX_FEATURES: usize = 4096;
/// Longest model name or version label, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest feature name, in bytes.
pub const MAX_FEATURE_NAME_LEN: usize = 256;
/// Most trees an ensemble may hold.
pub const MAX_TREES: usize = 100_000;
/// Most nodes one tree may hold.
pub const MAX_TREE_NODES: usize = 1 << 20;
/// Most nodes a whole ensemble may hold (the compiled form indexes nodes with `u32`).
pub const MAX_TOTAL_NODES: usize = 1 << 24;

/// Why an artifact was rejected. Every message names the offending field and the limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The document is not valid JSON or does not match the schema.
    #[error("failed to parse artifact{}: {message}", fmt_path(path))]
    Json {
        /// JSON path of the offending value (`model.trees[0].nodes[3]`), when known.
        path: Option<String>,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message (it includes the line and column).
        message: String,
    },
    /// `format` is not [`ARTIFACT_FORMAT`].
    #[error("format: expected \"{ARTIFACT_FORMAT}\", got {found:?}")]
    Format {
        /// The value found.
        found: String,
    },
    /// `format_version` is not one this engine reads.
    #[error(
        "format_version: unsupported version {found}; this engine reads version {ARTIFACT_FORMAT_VERSION}"
    )]
    FormatVersion {
        /// The value found.
        found: u64,
    },
    /// `name` or `version` is not `[A-Za-z0-9_.-]{1,64}`.
    #[error("{field}: {value:?} must match [A-Za-z0-9_.-]{{1,{MAX_NAME_LEN}}}")]
    InvalidName {
        /// `name` or `version`.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// `features` is empty.
    #[error("features: an artifact must declare at least 1 feature")]
    NoFeatures,
    /// `features` has more than [`MAX_FEATURES`] entries.
    #[error("features: {count} features exceed the limit of {limit}")]
    TooManyFeatures {
        /// Number declared.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A feature name is empty, too long or contains control characters.
    #[error(
        "features[{index}].name: {name:?} must be 1 to {MAX_FEATURE_NAME_LEN} bytes without control characters"
    )]
    InvalidFeatureName {
        /// Feature index.
        index: usize,
        /// The name found.
        name: String,
    },
    /// Two features share a name.
    #[error("features[{index}].name: duplicate feature name {name:?}")]
    DuplicateFeature {
        /// Index of the second occurrence.
        index: usize,
        /// The duplicated name.
        name: String,
    },
    /// A feature statistic is NaN or infinite.
    #[error("features[{index}].{field}: must be finite, got {value:?}")]
    FeatureStatNotFinite {
        /// Feature index.
        index: usize,
        /// `median`, `mad`, `min` or `max`.
        field: &'static str,
        /// The value found.
        value: f64,
    },
    /// A feature's MAD is negative.
    #[error("features[{index}].mad: must be >= 0, got {value:?}")]
    NegativeMad {
        /// Feature index.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// A feature's `min` is greater than its `max`.
    #[error("features[{index}].min: {min:?} is greater than max {max:?}")]
    MinAboveMax {
        /// Feature index.
        index: usize,
        /// The minimum found.
        min: f64,
        /// The maximum found.
        max: f64,
    },
    /// `impute.value` of a constant policy is NaN or infinite.
    #[error("impute.value: must be finite, got {value:?}")]
    ImputeValueNotFinite {
        /// The value found.
        value: f64,
    },
    /// `clip_mads` is not a finite positive number.
    #[error("clip_mads: must be finite and > 0, got {value:?}")]
    InvalidClipMads {
        /// The value found.
        value: f64,
    },
    /// A linear or logistic model has the wrong number of weights.
    #[error("model.weights: expected {expected} weights (one per feature), got {found}")]
    WeightsLength {
        /// Number of features.
        expected: usize,
        /// Number of weights.
        found: usize,
    },
    /// A model parameter (weight, intercept, threshold, leaf value, base score) is NaN or infinite.
    #[error("{field}: must be finite, got {value:?}")]
    ParamNotFinite {
        /// JSON path of the parameter, e.g. `model.trees[2].nodes[5].threshold`.
        field: String,
        /// The value found.
        value: f64,
    },
    /// A tree ensemble has no trees.
    #[error("model.trees: an ensemble must have at least 1 tree")]
    EmptyEnsemble,
    /// A tree ensemble has more than [`MAX_TREES`] trees.
    #[error("model.trees: {count} trees exceed the limit of {limit}")]
    TooManyTrees {
        /// Number of trees.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A tree has no nodes.
    #[error("model.trees[{tree}].nodes: a tree must have at least 1 node")]
    EmptyTree {
        /// Tree index.
        tree: usize,
    },
    /// A tree, or the whole ensemble, has too many nodes.
    #[error("model.trees[{tree}].nodes: {count} nodes exceed the limit of {limit}")]
    TooManyNodes {
        /// Index of the tree where the limit was crossed.
        tree: usize,
        /// Node count (of the tree, or of the ensemble so far).
        count: usize,
        /// The limit crossed ([`MAX_TREE_NODES`] or [`MAX_TOTAL_NODES`]).
        limit: usize,
    },
    /// A split's child index is outside the tree's node list.
    #[error(
        "model.trees[{tree}].nodes[{node}].{side}: child index {child} is out of range (the tree has {n_nodes} nodes)"
    )]
    ChildOutOfRange {
        /// Tree index.
        tree: usize,
        /// Node index.
        node: usize,
        /// `left` or `right`.
        side: &'static str,
        /// The child index found.
        child: usize,
        /// Number of nodes in the tree.
        n_nodes: usize,
    },
    /// A split's feature index is not below the number of features.
    #[error(
        "model.trees[{tree}].nodes[{node}].feature: index {feature} is out of range (the model has {n_features} features)"
    )]
    FeatureOutOfRange {
        /// Tree index.
        tree: usize,
        /// Node index.
        node: usize,
        /// The feature index found.
        feature: usize,
        /// Number of features.
        n_features: usize,
    },
    /// A node is reachable from the root more than once: a cycle or a shared child.
    #[error(
        "model.trees[{tree}].nodes[{node}]: node is reachable more than once from the root (a cycle or a shared child)"
    )]
    NodeReachedTwice {
        /// Tree index.
        tree: usize,
        /// Node index.
        node: usize,
    },
    /// A node cannot be reached from the root.
    #[error("model.trees[{tree}].nodes[{node}]: node is unreachable from the root (node 0)")]
    UnreachableNode {
        /// Tree index.
        tree: usize,
        /// Node index.
        node: usize,
    },
}

impl From<crate::json::JsonError> for ArtifactError {
    fn from(e: crate::json::JsonError) -> Self {
        ArtifactError::Json {
            path: e.path,
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

fn fmt_path(path: &Option<String>) -> String {
    match path {
        Some(p) => format!(" at {p}"),
        None => String::new(),
    }
}

/// True for `[A-Za-z0-9_.-]{1,64}`: model names and version labels, safe in URLs and file names.
pub(crate) fn is_valid_name(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The first two fields, read leniently so that a newer format is reported as such
/// rather than as an unknown field of this version's schema.
#[derive(Deserialize)]
struct Header {
    format: Option<serde_json::Value>,
    format_version: Option<serde_json::Value>,
}

impl ModelArtifact {
    /// Parses and validates an artifact.
    ///
    /// # Errors
    /// [`ArtifactError::Json`] with the JSON path for malformed input, or the validation error
    /// of [`ModelArtifact::validate`].
    pub fn from_json(bytes: &[u8]) -> Result<ModelArtifact, ArtifactError> {
        let artifact = crate::json::parse::<ModelArtifact>(bytes).map_err(|err| {
            let err = ArtifactError::from(err);
            // A wrong format or a newer version says more than a schema mismatch would.
            match serde_json::from_slice::<Header>(bytes) {
                Ok(Header {
                    format: Some(serde_json::Value::String(f)),
                    ..
                }) if f != ARTIFACT_FORMAT => ArtifactError::Format { found: f },
                Ok(Header {
                    format_version: Some(serde_json::Value::Number(n)),
                    ..
                }) if n.as_u64() != Some(u64::from(ARTIFACT_FORMAT_VERSION)) => match n.as_u64() {
                    Some(found) => ArtifactError::FormatVersion { found },
                    None => err,
                },
                _ => err,
            }
        })?;
        artifact.validate()?;
        Ok(artifact)
    }

    /// The artifact as pretty-printed JSON with a trailing newline; deterministic.
    pub fn to_json_pretty(&self) -> String {
        // Serialising these types cannot fail: every map key is a string and no Serialize
        // impl returns an error.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Checks every invariant the engine relies on (see [`ArtifactError`] for the list).
    ///
    /// # Errors
    /// The first violation found, in document order.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        if self.format != ARTIFACT_FORMAT {
            return Err(ArtifactError::Format {
                found: self.format.clone(),
            });
        }
        if self.format_version != ARTIFACT_FORMAT_VERSION {
            return Err(ArtifactError::FormatVersion {
                found: u64::from(self.format_version),
            });
        }
        for (field, value) in [("name", &self.name), ("version", &self.version)] {
            if !is_valid_name(value) {
                return Err(ArtifactError::InvalidName {
                    field,
                    value: value.clone(),
                });
            }
        }
        validate_features(&self.features)?;
        if let ImputePolicy::Constant { value } = self.impute
            && !value.is_finite()
        {
            return Err(ArtifactError::ImputeValueNotFinite { value });
        }
        if let Some(value) = self.clip_mads
            && !(value.is_finite() && value > 0.0)
        {
            return Err(ArtifactError::InvalidClipMads { value });
        }
        validate_params(&self.model, self.features.len())
    }
}

fn validate_features(features: &[FeatureSpec]) -> Result<(), ArtifactError> {
    if features.is_empty() {
        return Err(ArtifactError::NoFeatures);
    }
    if features.len() > MAX_FEATURES {
        return Err(ArtifactError::TooManyFeatures {
            count: features.len(),
            limit: MAX_FEATURES,
        });
    }
    let mut seen = HashSet::with_capacity(features.len());
    for (index, f) in features.iter().enumerate() {
        if f.name.is_empty()
            || f.name.len() > MAX_FEATURE_NAME_LEN
            || f.name.chars().any(char::is_control)
        {
            return Err(ArtifactError::InvalidFeatureName {
                index,
                name: f.name.clone(),
            });
        }
        if !seen.insert(f.name.as_str()) {
            return Err(ArtifactError::DuplicateFeature {
                index,
                name: f.name.clone(),
            });
        }
        for (field, value) in [
            ("median", f.median),
            ("mad", f.mad),
            ("min", f.min),
            ("max", f.max),
        ] {
            if !value.is_finite() {
                return Err(ArtifactError::FeatureStatNotFinite {
                    index,
                    field,
                    value,
                });
            }
        }
        if f.mad < 0.0 {
            return Err(ArtifactError::NegativeMad {
                index,
                value: f.mad,
            });
        }
        if f.min > f.max {
            return Err(ArtifactError::MinAboveMax {
                index,
                min: f.min,
                max: f.max,
            });
        }
    }
    Ok(())
}

fn finite(field: impl FnOnce() -> String, value: f64) -> Result<(), ArtifactError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ArtifactError::ParamNotFinite {
            field: field(),
            value,
        })
    }
}

fn validate_params(params: &ModelParams, n_features: usize) -> Result<(), ArtifactError> {
    match params {
        ModelParams::Linear { intercept, weights }
        | ModelParams::Logistic { intercept, weights } => {
            finite(|| "model.intercept".to_owned(), *intercept)?;
            if weights.len() != n_features {
                return Err(ArtifactError::WeightsLength {
                    expected: n_features,
                    found: weights.len(),
                });
            }
            for (i, w) in weights.iter().enumerate() {
                finite(|| format!("model.weights[{i}]"), *w)?;
            }
            Ok(())
        }
        ModelParams::TreeEnsemble {
            base_score, trees, ..
        } => {
            finite(|| "model.base_score".to_owned(), *base_score)?;
            if trees.is_empty() {
                return Err(ArtifactError::EmptyEnsemble);
            }
            if trees.len() > MAX_TREES {
                return Err(ArtifactError::TooManyTrees {
                    count: trees.len(),
                    limit: MAX_TREES,
                });
            }
            let mut total = 0usize;
            let mut visited = Vec::new();
            for (t, tree) in trees.iter().enumerate() {
                total += tree.nodes.len();
                if total > MAX_TOTAL_NODES {
                    return Err(ArtifactError::TooManyNodes {
                        tree: t,
                        count: total,
                        limit: MAX_TOTAL_NODES,
                    });
                }
                validate_tree(t, tree, n_features, &mut visited)?;
            }
            Ok(())
        }
    }
}

/// Checks one tree: values, indices, then shape (every node reached exactly once from the root).
fn validate_tree(
    t: usize,
    tree: &Tree,
    n_features: usize,
    visited: &mut Vec<bool>,
) -> Result<(), ArtifactError> {
    let n_nodes = tree.nodes.len();
    if n_nodes == 0 {
        return Err(ArtifactError::EmptyTree { tree: t });
    }
    if n_nodes > MAX_TREE_NODES {
        return Err(ArtifactError::TooManyNodes {
            tree: t,
            count: n_nodes,
            limit: MAX_TREE_NODES,
        });
    }
    for (n, node) in tree.nodes.iter().enumerate() {
        match *node {
            Node::Split {
                feature,
                threshold,
                left,
                right,
                ..
            } => {
                if feature >= n_features {
                    return Err(ArtifactError::FeatureOutOfRange {
                        tree: t,
                        node: n,
                        feature,
                        n_features,
                    });
                }
                finite(
                    || format!("model.trees[{t}].nodes[{n}].threshold"),
                    threshold,
                )?;
                for (side, child) in [("left", left), ("right", right)] {
                    if child >= n_nodes {
                        return Err(ArtifactError::ChildOutOfRange {
                            tree: t,
                            node: n,
                            side,
                            child,
                            n_nodes,
                        });
                    }
                }
            }
            Node::Leaf { value } => {
                finite(|| format!("model.trees[{t}].nodes[{n}].value"), value)?;
            }
        }
    }
    visited.clear();
    visited.resize(n_nodes, false);
    let mut stack = vec![0usize];
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut visited[n], true) {
            return Err(ArtifactError::NodeReachedTwice { tree: t, node: n });
        }
        if let Node::Split { left, right, .. } = tree.nodes[n] {
            // Right first so that the left subtree is walked first: errors in document order.
            stack.push(right);
            stack.push(left);
        }
    }
    match visited.iter().position(|v| !v) {
        Some(node) => Err(ArtifactError::UnreachableNode { tree: t, node }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{artifact, linear, random_tree};
    use proptest::prelude::*;

    fn valid() -> ModelArtifact {
        artifact("m", "1", 2, linear(0.0, vec![1.0, 2.0]))
    }

    fn ensemble(nodes: Vec<Node>) -> ModelArtifact {
        let mut a = valid();
        a.model = ModelParams::TreeEnsemble {
            base_score: 0.0,
            objective: Objective::Regression,
            trees: vec![Tree { nodes }],
        };
        a
    }

    fn split(feature: usize, left: usize, right: usize) -> Node {
        Node::Split {
            feature,
            threshold: 0.0,
            left,
            right,
            default_left: true,
        }
    }

    fn leaf() -> Node {
        Node::Leaf { value: 1.0 }
    }

    /// Applies `edit` to a valid artifact and returns the validation error and its message.
    fn invalid(edit: impl FnOnce(&mut ModelArtifact)) -> (ArtifactError, String) {
        let mut a = valid();
        edit(&mut a);
        let err = a.validate().unwrap_err();
        let msg = err.to_string();
        (err, msg)
    }

    #[test]
    fn valid_artifact_round_trips() {
        let a = valid();
        a.validate().unwrap();
        let json = a.to_json_pretty();
        assert!(json.ends_with("}\n"));
        assert_eq!(ModelArtifact::from_json(json.as_bytes()).unwrap(), a);
        assert_eq!(a.to_json_pretty(), json, "deterministic");
    }

    #[test]
    fn malformed_json_names_path_and_line() {
        let json = valid()
            .to_json_pretty()
            .replace("\"mad\": 1.0", "\"mad\": \"x\"");
        let err = ModelArtifact::from_json(json.as_bytes()).unwrap_err();
        let ArtifactError::Json { path, line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(path.as_deref(), Some("features[0].mad"));
        assert!(*line > 1);
        assert!(
            err.to_string()
                .starts_with("failed to parse artifact at features[0].mad: invalid type"),
            "{err}"
        );
        let err = ModelArtifact::from_json(b"{").unwrap_err();
        assert!(
            matches!(err, ArtifactError::Json { path: None, .. }),
            "{err:?}"
        );
        let mut deep = serde_json::to_value(valid()).unwrap();
        deep["model"] = serde_json::json!({"kind": "tree_ensemble", "base_score": 0.0,
            "objective": "regression", "trees": [{"nodes": [{"leaf": {"value": "x"}}]}]});
        let err = ModelArtifact::from_json(deep.to_string().as_bytes()).unwrap_err();
        let ArtifactError::Json { path, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            path.as_deref(),
            Some("model.trees[0].nodes[0].leaf.value"),
            "{err}"
        );
        deep["model"] =
            serde_json::json!({"kind": "linear", "intercept": 0.0, "weights": [1, null]});
        let err = ModelArtifact::from_json(deep.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("at model.weights[1]: invalid type: null"),
            "{err}"
        );
        let json = valid()
            .to_json_pretty()
            .replace("\"clip_mads\"", "\"clip\"");
        let msg = ModelArtifact::from_json(json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown field `clip`"), "{msg}");
    }

    /// Regression: the derived, internally tagged `model` was buffered whole before it was
    /// checked, so 1.5M tiny trees took 1.5 GB (6.5 GB with a late type error).
    #[test]
    fn tree_limit_stops_reading_before_a_late_error() {
        let mut doc = valid().to_json_pretty();
        let model_at = doc.find("\"model\"").unwrap();
        doc.truncate(model_at);
        doc.push_str("\"model\": {\"kind\": \"tree_ensemble\", \"base_score\": 0, \"objective\": \"regression\", \"trees\": [");
        let tree = "{\"nodes\":[{\"leaf\":{\"value\":0}}]},";
        doc.push_str(&tree.repeat(MAX_TREES + 1));
        doc.push_str("{\"nodes\":[{\"leaf\":{\"value\":\"late\"}}]}]}}");
        let err = ModelArtifact::from_json(doc.as_bytes()).unwrap_err();
        let ArtifactError::Json { path, message, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(path.as_deref(), Some("model.trees"), "{err}");
        assert!(
            message.starts_with("more than 100000 trees exceed the limit of 100000"),
            "{err}"
        );
    }

    #[test]
    fn model_fields_are_read_in_any_order_and_checked_against_the_kind() {
        let parse = |model: serde_json::Value| {
            let mut doc = serde_json::to_value(valid()).unwrap();
            doc["model"] = model;
            ModelArtifact::from_json(doc.to_string().as_bytes())
        };
        let a =
            parse(serde_json::json!({"weights": [1.0, 2.0], "intercept": 0.0, "kind": "linear"}))
                .unwrap();
        assert_eq!(a, valid());
        let a = parse(
            serde_json::json!({"trees": [{"nodes": [{"leaf": {"value": 1.0}}]}],
            "kind": "tree_ensemble", "objective": "binary_logistic", "base_score": 0.5}),
        )
        .unwrap();
        assert!(matches!(
            a.model,
            ModelParams::TreeEnsemble {
                base_score: 0.5,
                ..
            }
        ));
        for (model, fragments) in [
            (
                serde_json::json!({"kind": "linear", "intercept": 0.0, "weights": [1, 2], "trees": []}),
                &[
                    "at model",
                    "unknown field `trees`, expected one of `kind`, `intercept`, `weights`",
                ][..],
            ),
            (
                serde_json::json!({"trees": [], "kind": "linear"}),
                &["unknown field `trees`, expected one of `kind`, `intercept`, `weights`"],
            ),
            (
                serde_json::json!({"kind": "linear", "intercept": 0.0}),
                &["missing field `weights`"],
            ),
            (
                serde_json::json!({"intercept": 0.0, "weights": []}),
                &["missing field `kind`"],
            ),
            (
                serde_json::json!({"kind": "forest"}),
                &[
                    "at model.kind",
                    "unknown variant `forest`, expected one of `linear`, `logistic`, `tree_ensemble`",
                ],
            ),
            // Regression: the externally tagged form of the enum was accepted.
            (
                serde_json::json!({"kind": {"linear": null}, "intercept": 0.0, "weights": [1, 2]}),
                &[
                    "at model.kind",
                    "invalid type: map, expected a model kind string: one of `linear`, `logistic`, `tree_ensemble`",
                ],
            ),
            // Regression: `null` was answered with a bare "expected value".
            (
                serde_json::json!({"kind": null, "intercept": 0.0, "weights": [1, 2]}),
                &[
                    "at model.kind",
                    "invalid type: null, expected a model kind string: one of `linear`, `logistic`, `tree_ensemble`",
                ],
            ),
            (
                serde_json::json!({"kind": "linear", "bias": 1}),
                &["unknown field `bias`"],
            ),
            (serde_json::json!([1]), &["invalid type: sequence"]),
        ] {
            let msg = parse(model).unwrap_err().to_string();
            for f in fragments {
                assert!(msg.contains(f), "{msg:?} lacks {f:?}");
            }
        }
        let dup = valid().to_json_pretty().replace(
            "\"kind\": \"linear\",",
            "\"kind\": \"linear\", \"intercept\": 1.0,",
        );
        let msg = ModelArtifact::from_json(dup.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("duplicate field `intercept`"), "{msg}");
    }

    #[test]
    fn wrong_format_and_version_are_reported_even_with_a_newer_schema() {
        let newer = br#"{"format": "gauntlet-model", "format_version": 2, "brand_new": true}"#;
        assert_eq!(
            ModelArtifact::from_json(newer).unwrap_err(),
            ArtifactError::FormatVersion { found: 2 }
        );
        let other = br#"{"format": "onnx", "format_version": 1}"#;
        let err = ModelArtifact::from_json(other).unwrap_err();
        assert_eq!(
            err,
            ArtifactError::Format {
                found: "onnx".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "format: expected \"gauntlet-model\", got \"onnx\""
        );
        let (err, _) = invalid(|a| a.format_version = 9);
        assert_eq!(err, ArtifactError::FormatVersion { found: 9 });
        let (err, _) = invalid(|a| a.format = "x".into());
        assert!(matches!(err, ArtifactError::Format { .. }));
    }

    #[test]
    fn names_and_versions() {
        for bad in ["", "a/b", "..%2F", "has space", &"x".repeat(65)] {
            let (err, msg) = invalid(|a| a.name = bad.to_owned());
            assert!(
                matches!(err, ArtifactError::InvalidName { field: "name", .. }),
                "{bad}"
            );
            assert!(msg.contains("[A-Za-z0-9_.-]{1,64}"), "{msg}");
        }
        let (err, _) = invalid(|a| a.version = "v 1".into());
        assert!(matches!(
            err,
            ArtifactError::InvalidName {
                field: "version",
                ..
            }
        ));
        assert!(is_valid_name(&"a".repeat(64)) && is_valid_name("Model_1.2-x"));
    }

    #[test]
    fn feature_list_errors() {
        let (err, msg) = invalid(|a| a.features.clear());
        assert_eq!(err, ArtifactError::NoFeatures);
        assert!(msg.starts_with("features:"));
        let (err, msg) = invalid(|a| {
            let f = a.features[0].clone();
            a.features = (0..=MAX_FEATURES)
                .map(|i| FeatureSpec {
                    name: format!("f{i}"),
                    ..f.clone()
                })
                .collect();
        });
        assert!(matches!(
            err,
            ArtifactError::TooManyFeatures {
                count: 4097,
                limit: 4096
            }
        ));
        assert!(msg.contains("4096"), "{msg}");
        let (err, msg) = invalid(|a| a.features[1].name = "f0".into());
        assert_eq!(
            err,
            ArtifactError::DuplicateFeature {
                index: 1,
                name: "f0".into()
            }
        );
        assert_eq!(msg, "features[1].name: duplicate feature name \"f0\"");
        for bad in ["", "a\nb", &"n".repeat(MAX_FEATURE_NAME_LEN + 1)] {
            let (err, _) = invalid(|a| a.features[0].name = bad.to_owned());
            assert!(matches!(
                err,
                ArtifactError::InvalidFeatureName { index: 0, .. }
            ));
        }
    }

    #[test]
    fn feature_stat_errors() {
        let (err, msg) = invalid(|a| a.features[1].median = f64::NAN);
        assert!(matches!(
            err,
            ArtifactError::FeatureStatNotFinite {
                index: 1,
                field: "median",
                ..
            }
        ));
        assert_eq!(msg, "features[1].median: must be finite, got NaN");
        let (err, _) = invalid(|a| a.features[0].max = f64::INFINITY);
        assert!(matches!(
            err,
            ArtifactError::FeatureStatNotFinite { field: "max", .. }
        ));
        let (err, msg) = invalid(|a| a.features[0].mad = -0.5);
        assert_eq!(
            err,
            ArtifactError::NegativeMad {
                index: 0,
                value: -0.5
            }
        );
        assert_eq!(msg, "features[0].mad: must be >= 0, got -0.5");
        let (err, msg) = invalid(|a| a.features[0].min = 11.0);
        assert!(matches!(err, ArtifactError::MinAboveMax { index: 0, .. }));
        assert_eq!(msg, "features[0].min: 11.0 is greater than max 10.0");
    }

    #[test]
    fn policy_errors() {
        let (err, msg) = invalid(|a| {
            a.impute = ImputePolicy::Constant {
                value: f64::INFINITY,
            }
        });
        assert!(matches!(err, ArtifactError::ImputeValueNotFinite { .. }));
        assert!(msg.starts_with("impute.value:"));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let (err, msg) = invalid(|a| a.clip_mads = Some(bad));
            assert!(matches!(err, ArtifactError::InvalidClipMads { .. }));
            assert!(msg.starts_with("clip_mads: must be finite and > 0"));
        }
    }

    #[test]
    fn linear_param_errors() {
        let (err, msg) = invalid(|a| a.model = linear(0.0, vec![1.0]));
        assert_eq!(
            err,
            ArtifactError::WeightsLength {
                expected: 2,
                found: 1
            }
        );
        assert_eq!(
            msg,
            "model.weights: expected 2 weights (one per feature), got 1"
        );
        let (_, msg) = invalid(|a| a.model = linear(0.0, vec![1.0, f64::NAN]));
        assert_eq!(msg, "model.weights[1]: must be finite, got NaN");
        let (_, msg) = invalid(|a| {
            a.model = ModelParams::Logistic {
                intercept: f64::NEG_INFINITY,
                weights: vec![0.0; 2],
            }
        });
        assert_eq!(msg, "model.intercept: must be finite, got -inf");
    }

    #[test]
    fn ensemble_value_errors() {
        let (err, _) = invalid(|a| {
            a.model = ModelParams::TreeEnsemble {
                base_score: 0.0,
                objective: Objective::Regression,
                trees: vec![],
            }
        });
        assert_eq!(err, ArtifactError::EmptyEnsemble);
        let mut a = ensemble(vec![leaf()]);
        if let ModelParams::TreeEnsemble { base_score, .. } = &mut a.model {
            *base_score = f64::NAN;
        }
        assert_eq!(
            a.validate().unwrap_err().to_string(),
            "model.base_score: must be finite, got NaN"
        );
        let err = ensemble(vec![]).validate().unwrap_err();
        assert_eq!(err, ArtifactError::EmptyTree { tree: 0 });
        let err = ensemble(vec![Node::Leaf {
            value: f64::INFINITY,
        }])
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "model.trees[0].nodes[0].value: must be finite, got inf"
        );
        let bad_threshold = Node::Split {
            feature: 0,
            threshold: f64::NAN,
            left: 1,
            right: 2,
            default_left: false,
        };
        let err = ensemble(vec![bad_threshold, leaf(), leaf()])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "model.trees[0].nodes[0].threshold: must be finite, got NaN"
        );
    }

    #[test]
    fn ensemble_index_errors() {
        let err = ensemble(vec![split(0, 1, 5), leaf()])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "model.trees[0].nodes[0].right: child index 5 is out of range (the tree has 2 nodes)"
        );
        let err = ensemble(vec![split(2, 1, 2), leaf(), leaf()])
            .validate()
            .unwrap_err();
        assert_eq!(
            err,
            ArtifactError::FeatureOutOfRange {
                tree: 0,
                node: 0,
                feature: 2,
                n_features: 2
            }
        );
        assert!(err.to_string().contains("the model has 2 features"));
    }

    #[test]
    fn ensemble_shape_errors() {
        // A self-loop, a cycle back to the root, a shared child, and both children the same.
        for nodes in [
            vec![split(0, 0, 1), leaf()],
            vec![split(0, 1, 2), split(1, 0, 2), leaf()],
            vec![
                split(0, 1, 2),
                split(1, 3, 4),
                split(1, 3, 4),
                leaf(),
                leaf(),
            ],
            vec![split(0, 1, 1), leaf()],
        ] {
            let err = ensemble(nodes).validate().unwrap_err();
            assert!(
                matches!(err, ArtifactError::NodeReachedTwice { tree: 0, .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("reachable more than once"));
        }
        let err = ensemble(vec![split(0, 1, 2), leaf(), leaf(), leaf()])
            .validate()
            .unwrap_err();
        assert_eq!(err, ArtifactError::UnreachableNode { tree: 0, node: 3 });
        assert_eq!(
            err.to_string(),
            "model.trees[0].nodes[3]: node is unreachable from the root (node 0)"
        );
    }

    #[test]
    fn size_limits() {
        let mut a = ensemble(vec![leaf()]);
        if let ModelParams::TreeEnsemble { trees, .. } = &mut a.model {
            *trees = vec![
                Tree {
                    nodes: vec![leaf()]
                };
                MAX_TREES + 1
            ];
        }
        assert!(matches!(
            a.validate(),
            Err(ArtifactError::TooManyTrees {
                limit: MAX_TREES,
                ..
            })
        ));
        let mut a = ensemble(vec![leaf()]);
        if let ModelParams::TreeEnsemble { trees, .. } = &mut a.model {
            trees[0].nodes = vec![leaf(); MAX_TREE_NODES + 1];
        }
        let err = a.validate().unwrap_err();
        assert!(matches!(
            err,
            ArtifactError::TooManyNodes {
                tree: 0,
                limit: MAX_TREE_NODES,
                ..
            }
        ));
        assert!(err.to_string().contains("exceed the limit of 1048576"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn generated_ensembles_validate_and_round_trip(seed in any::<u64>(), n in 1usize..5, depth in 0u32..6) {
            let mut s = seed;
            let mut a = artifact("p", "1", n, linear(0.0, vec![0.0; n]));
            a.model = ModelParams::TreeEnsemble {
                base_score: 0.5,
                objective: Objective::BinaryLogistic,
                trees: (0..3).map(|_| random_tree(&mut s, depth, n)).collect(),
            };
            a.validate().unwrap();
            let back = ModelArtifact::from_json(a.to_json_pretty().as_bytes()).unwrap();
            prop_assert_eq!(back, a);
        }
    }
}
