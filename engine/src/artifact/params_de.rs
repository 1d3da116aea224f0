//! A streaming `Deserialize` for [`ModelParams`].
//!
//! The derived form of an internally tagged enum (`#[serde(tag = "kind")]`) buffers the whole
//! object into serde's untyped `Content` before it can pick a variant: for a large ensemble that
//! is many times the size of the document, and errors inside it lose their JSON path. This
//! visitor reads the fields in any order straight into their types instead, so memory stays
//! proportional to the model, an error names the exact value (`model.trees[3].nodes[9]...`),
//! and the tree and node counts are checked while the trees are read, not after.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use super::{MAX_TOTAL_NODES, MAX_TREES, ModelParams, Objective, Tree};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Linear,
    Logistic,
    TreeEnsemble,
}

/// The values `kind` may take.
const KINDS: &[&str] = &["linear", "logistic", "tree_ensemble"];

/// `kind` is read as a string only: a derived enum would also take the externally tagged
/// form (`{"linear": null}`) and answer `null` with a bare "expected value".
impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KindVisitor)
    }
}

struct KindVisitor;

impl Visitor<'_> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a model kind string: one of `linear`, `logistic`, `tree_ensemble`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        match v {
            "linear" => Ok(Kind::Linear),
            "logistic" => Ok(Kind::Logistic),
            "tree_ensemble" => Ok(Kind::TreeEnsemble),
            other => Err(E::unknown_variant(other, KINDS)),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Kind,
    Intercept,
    Weights,
    BaseScore,
    Objective,
    Trees,
}

const ALL_FIELDS: &[&str] = &[
    "kind",
    "intercept",
    "weights",
    "base_score",
    "objective",
    "trees",
];
const LINEAR_FIELDS: &[&str] = &["kind", "intercept", "weights"];
const ENSEMBLE_FIELDS: &[&str] = &["kind", "base_score", "objective", "trees"];

impl Field {
    fn parse(key: &str) -> Option<Field> {
        Some(match key {
            "kind" => Field::Kind,
            "intercept" => Field::Intercept,
            "weights" => Field::Weights,
            "base_score" => Field::BaseScore,
            "objective" => Field::Objective,
            "trees" => Field::Trees,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Kind => "kind",
            Field::Intercept => "intercept",
            Field::Weights => "weights",
            Field::BaseScore => "base_score",
            Field::Objective => "objective",
            Field::Trees => "trees",
        }
    }
}

impl Kind {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Linear | Kind::Logistic => LINEAR_FIELDS,
            Kind::TreeEnsemble => ENSEMBLE_FIELDS,
        }
    }

    fn allows(self, field: Field) -> bool {
        self.fields().contains(&field.name())
    }
}

impl<'de> Deserialize<'de> for ModelParams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ParamsVisitor)
    }
}

struct ParamsVisitor;

/// Stores a field's value, refusing a second occurrence as the derived form does.
fn set_once<T, E: de::Error>(slot: &mut Option<T>, field: Field, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(field.name()));
    }
    Ok(())
}

fn required<T, E: de::Error>(slot: Option<T>, field: Field) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(field.name()))
}

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = ModelParams;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a model object with a `kind` of linear, logistic or tree_ensemble")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelParams, A::Error> {
        let mut kind: Option<Kind> = None;
        let mut seen: Vec<Field> = Vec::with_capacity(4);
        let mut intercept = None;
        let mut weights = None;
        let mut base_score = None;
        let mut objective = None;
        let mut trees = None;
        while let Some(key) = map.next_key::<String>()? {
            let expected = kind.map_or(ALL_FIELDS, Kind::fields);
            let Some(field) = Field::parse(&key) else {
                return Err(A::Error::unknown_field(&key, expected));
            };
            if kind.is_some_and(|k| !k.allows(field)) {
                return Err(A::Error::unknown_field(&key, expected));
            }
            match field {
                Field::Kind => {
                    let k: Kind = map.next_value()?;
                    if let Some(other) = seen.iter().find(|f| !k.allows(**f)) {
                        return Err(A::Error::unknown_field(other.name(), k.fields()));
                    }
                    set_once(&mut kind, field, k)?;
                }
                Field::Intercept => set_once(&mut intercept, field, map.next_value::<f64>()?)?,
                Field::Weights => set_once(&mut weights, field, map.next_value::<Vec<f64>>()?)?,
                Field::BaseScore => set_once(&mut base_score, field, map.next_value::<f64>()?)?,
                Field::Objective => {
                    set_once(&mut objective, field, map.next_value::<Objective>()?)?;
                }
                Field::Trees => set_once(&mut trees, field, map.next_value_seed(TreesSeed)?)?,
            }
            seen.push(field);
        }
        match required(kind, Field::Kind)? {
            Kind::Linear => Ok(ModelParams::Linear {
                intercept: required(intercept, Field::Intercept)?,
                weights: required(weights, Field::Weights)?,
            }),
            Kind::Logistic => Ok(ModelParams::Logistic {
                intercept: required(intercept, Field::Intercept)?,
                weights: required(weights, Field::Weights)?,
            }),
            Kind::TreeEnsemble => Ok(ModelParams::TreeEnsemble {
                base_score: required(base_score, Field::BaseScore)?,
                objective: required(objective, Field::Objective)?,
                trees: required(trees, Field::Trees)?,
            }),
        }
    }
}

/// Reads `trees`, stopping at the first tree over [`MAX_TREES`] or node over
/// [`MAX_TOTAL_NODES`], so an oversized ensemble costs no more than the limit to reject.
struct TreesSeed;

impl<'de> DeserializeSeed<'de> for TreesSeed {
    type Value = Vec<Tree>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Tree>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TreesSeed {
    type Value = Vec<Tree>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of trees")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Tree>, A::Error> {
        let mut trees = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        let mut nodes = 0usize;
        while let Some(tree) = seq.next_element::<Tree>()? {
            if trees.len() == MAX_TREES {
                return Err(A::Error::custom(format_args!(
                    "more than {MAX_TREES} trees exceed the limit of {MAX_TREES}"
                )));
            }
            nodes = nodes.saturating_add(tree.nodes.len());
            if nodes > MAX_TOTAL_NODES {
                return Err(A::Error::custom(format_args!(
                    "trees[{}]: more than {MAX_TOTAL_NODES} nodes in the ensemble exceed the limit of {MAX_TOTAL_NODES}",
                    trees.len()
                )));
            }
            trees.push(tree);
        }
        Ok(trees)
    }
}
