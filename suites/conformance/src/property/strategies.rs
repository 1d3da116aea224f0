//! Generators of request bodies, from raw bytes to valid batches, and their failure renderings.

use std::fmt;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

use gauntlet_engine::artifact::ModelArtifact;
use gauntlet_engine::oip::Datatype;

use crate::support::{Layout, excerpt, infer_request, present, typical_rows};

/// A request body to post to the infer path of reference model `model`.
#[derive(Clone)]
pub(crate) struct Body {
    /// Index of the reference model whose infer path gets the body.
    pub(crate) model: usize,
    /// The `content-type` header, if any.
    pub(crate) content_type: Option<&'static str>,
    /// The bytes.
    pub(crate) bytes: Vec<u8>,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("model", &self.model)
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .field("text", &excerpt(&String::from_utf8_lossy(&self.bytes)))
            .finish()
    }
}

/// JSON fragments that the engine's parser must meet without falling over.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"inputs\"",
    "\"shape\"",
    "\"data\"",
    "\"datatype\"",
    "\"name\"",
    "\"id\"",
    "\"FP64\"",
    "\"features\"",
    "1",
    "-1",
    "0",
    "8",
    "0.5",
    "1e999",
    "-1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "null",
    "true",
    "\"",
    "\\",
    "NaN",
    "Infinity",
    " ",
    "\n",
    "\u{0}",
    "\"\\ud800\"",
    "\u{feff}",
    "é",
];

/// The content types posted with a body: mostly JSON, sometimes none or the wrong one.
fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        6 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(None),
        1 => Just(Some("text/plain")),
    ]
}

/// A valid one-row request to each reference model, as JSON bytes.
pub(crate) fn valid_templates(references: &[ModelArtifact]) -> Vec<Vec<u8>> {
    references
        .iter()
        .map(|a| {
            let request = infer_request(a, &present(&typical_rows(a, 0, 1)), Layout::Matrix);
            serde_json::to_vec(&request).unwrap_or_default()
        })
        .collect()
}

/// Arbitrary bytes: noise, JSON token soup, deep nesting, and valid requests cut short or with
/// one byte changed.
pub(crate) fn raw_bodies(references: &[ModelArtifact]) -> impl Strategy<Value = Body> + use<> {
    let models = references.len().max(1);
    let templates = valid_templates(references);
    let truncate = templates.clone();
    let flip = templates;
    let bytes = prop_oneof![
        2 => vec(any::<u8>(), 0..512),
        2 => vec(select(TOKENS), 0..64).prop_map(|t| t.concat().into_bytes()),
        1 => (1usize..20_000, select(&["[", "{\"inputs\":", "{\"a\":["][..]))
            .prop_map(|(depth, open)| open.repeat(depth).into_bytes()),
        1 => (0..models, 0.0f64..1.0).prop_map(move |(m, at)| {
            let t = &truncate[m % truncate.len()];
            t[..(t.len() as f64 * at) as usize].to_vec()
        }),
        1 => (0..models, any::<prop::sample::Index>(), any::<u8>()).prop_map(move |(m, at, byte)| {
            let mut t = flip[m % flip.len()].clone();
            if !t.is_empty() {
                let i = at.index(t.len());
                t[i] = byte;
            }
            t
        }),
    ];
    (0..models, content_type(), bytes).prop_map(|(model, content_type, bytes)| Body {
        model,
        content_type,
        bytes,
    })
}

/// Short strings of any characters, control and non-ASCII included.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "(?s).{0,16}",
        1 => select(&["", "NaN", "Infinity", "-Infinity", "1e999", "FP64", "features", "ret_1", "ΔΣ\u{0}"][..])
            .prop_map(str::to_owned),
    ]
}

/// Any JSON value, up to 4 levels deep, with keys that the request schema uses.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite_f64().prop_map(Value::from),
        any_string().prop_map(Value::from),
    ];
    let key = prop_oneof![
        3 => select(&["inputs", "name", "shape", "datatype", "data", "id", "parameters", "outputs"][..])
            .prop_map(str::to_owned),
        1 => any_string(),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec((key.clone(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Shape dimensions a client could send: small, negative, huge, fractional, or not numbers.
fn dimension() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0u64..10).prop_map(Value::from),
        1 => select(
            &[-1i64, -8, i64::MIN, i64::MAX, 1 << 32, (1 << 53) + 1, 1 << 62][..]
        )
        .prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => select(&[1.5f64, 1e300, -0.0, 8.0][..]).prop_map(Value::from),
        1 => select(&["8", "", "-1"][..]).prop_map(Value::from),
        1 => Just(Value::Null),
    ]
}

/// Raw number tokens JSON allows or that look like numbers but are not JSON.
const NUMBER_TOKENS: &[&str] = &[
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1e-400",
    "\"1.0\"",
    "null",
    "true",
    "0x10",
    "+1",
    ".5",
    "01",
    "1.",
    "-0",
    "5e-324",
    "1.7976931348623157e308",
    "[]",
    "{}",
    "\"\"",
];

/// A marker replaced by raw tokens after serialising.
const RAW_MARKER: &str = "__gauntlet_raw_tokens__";

/// One change to a valid request.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    /// Remove a top-level field.
    RemoveTop(&'static str),
    /// Set a top-level field to any JSON.
    SetTop(&'static str, Value),
    /// Remove a field of the chosen input tensor.
    RemoveField(&'static str),
    /// Set a field of the chosen input tensor to any JSON.
    SetField(&'static str, Value),
    /// Replace the chosen tensor's shape.
    Shape(Vec<Value>),
    /// Replace the chosen tensor's datatype.
    Datatype(String),
    /// Replace the chosen tensor's data with raw tokens (not all of them JSON).
    DataTokens(Vec<&'static str>),
    /// Rename the chosen tensor.
    Rename(String),
    /// Send the chosen tensor twice.
    Duplicate,
    /// Leave the chosen tensor out.
    Drop,
    /// Wrap the chosen tensor's data in this many arrays.
    Nest(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let top = || select(&["inputs", "id", "parameters", "outputs"][..]);
    let field = || select(&["name", "shape", "datatype", "data", "parameters"][..]);
    let datatype = prop_oneof![
        select(
            &[
                "FP32", "INT64", "BYTES", "FP16", "BOOL", "UINT8", "fp64", "", "FP64 ", "ＦＰ64"
            ][..]
        )
        .prop_map(str::to_owned),
        any_string(),
    ];
    prop_oneof![
        1 => top().prop_map(Mutation::RemoveTop),
        1 => (top(), json_value()).prop_map(|(f, v)| Mutation::SetTop(f, v)),
        1 => field().prop_map(Mutation::RemoveField),
        1 => (field(), json_value()).prop_map(|(f, v)| Mutation::SetField(f, v)),
        2 => vec(dimension(), 0..4).prop_map(Mutation::Shape),
        1 => datatype.prop_map(Mutation::Datatype),
        2 => vec(select(NUMBER_TOKENS), 0..10).prop_map(Mutation::DataTokens),
        1 => any_string().prop_map(Mutation::Rename),
        1 => Just(Mutation::Duplicate),
        1 => Just(Mutation::Drop),
        1 => (1usize..300).prop_map(Mutation::Nest),
    ]
}

/// A valid request to a reference model with 1 to 3 mutations, rendered to JSON.
#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    model: usize,
    layout: Layout,
    rows: usize,
    input: prop::sample::Index,
    mutations: Vec<Mutation>,
}

impl Recipe {
    fn render(&self, references: &[ModelArtifact]) -> Vec<u8> {
        let Some(artifact) = references.get(self.model) else {
            return Vec::new();
        };
        let data = present(&typical_rows(artifact, self.rows as u64, self.rows));
        let mut request =
            serde_json::to_value(infer_request(artifact, &data, self.layout)).unwrap_or_default();
        for m in &self.mutations {
            apply(&mut request, self.input, m);
        }
        let text = request.to_string();
        let tokens = self.mutations.iter().rev().find_map(|m| match m {
            Mutation::DataTokens(t) => Some(format!("[{}]", t.join(","))),
            _ => None,
        });
        match tokens {
            Some(raw) => text.replace(&format!("\"{RAW_MARKER}\""), &raw),
            None => text,
        }
        .into_bytes()
    }
}

fn apply(request: &mut Value, input: prop::sample::Index, mutation: &Mutation) {
    let Some(top) = request.as_object_mut() else {
        return;
    };
    match mutation {
        Mutation::RemoveTop(f) => {
            top.remove(*f);
            return;
        }
        Mutation::SetTop(f, v) => {
            top.insert((*f).to_owned(), v.clone());
            return;
        }
        _ => {}
    }
    let Some(inputs) = top.get_mut("inputs").and_then(Value::as_array_mut) else {
        return;
    };
    if inputs.is_empty() {
        return;
    }
    let i = input.index(inputs.len());
    match mutation {
        Mutation::Duplicate => {
            let copy = inputs[i].clone();
            inputs.push(copy);
            return;
        }
        Mutation::Drop => {
            inputs.remove(i);
            return;
        }
        _ => {}
    }
    let Some(tensor) = inputs[i].as_object_mut() else {
        return;
    };
    match mutation {
        Mutation::RemoveField(f) => {
            tensor.remove(*f);
        }
        Mutation::SetField(f, v) => {
            tensor.insert((*f).to_owned(), v.clone());
        }
        Mutation::Shape(dims) => {
            tensor.insert("shape".into(), Value::Array(dims.clone()));
        }
        Mutation::Datatype(d) => {
            tensor.insert("datatype".into(), Value::from(d.as_str()));
        }
        Mutation::DataTokens(_) => {
            tensor.insert("data".into(), Value::from(RAW_MARKER));
        }
        Mutation::Rename(name) => {
            tensor.insert("name".into(), Value::from(name.as_str()));
        }
        Mutation::Nest(depth) => {
            let mut data = tensor.remove("data").unwrap_or(Value::Null);
            for _ in 0..*depth {
                data = Value::Array(vec![data]);
            }
            tensor.insert("data".into(), data);
        }
        Mutation::RemoveTop(_) | Mutation::SetTop(..) | Mutation::Duplicate | Mutation::Drop => {}
    }
}

/// A rendered JSON body with the recipe that made it.
#[derive(Clone)]
pub(crate) struct JsonBody {
    /// The body to post.
    pub(crate) body: Body,
    /// How it was made, when it is a mutated request.
    pub(crate) recipe: Option<Recipe>,
}

impl fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("JsonBody");
        if let Some(recipe) = &self.recipe {
            s.field("mutations", &recipe.mutations)
                .field("layout", &recipe.layout)
                .field("rows", &recipe.rows);
        }
        s.field("body", &self.body).finish()
    }
}

/// Any JSON value, or a valid request with a few mutations: wrong types, huge and negative
/// shapes, missing fields, NaN-like tokens, deep nesting, unicode names.
pub(crate) fn json_bodies(references: &[ModelArtifact]) -> impl Strategy<Value = JsonBody> + use<> {
    let models = references.len().max(1);
    let owned = references.to_vec();
    let random = (0..models, json_value()).prop_map(|(model, value)| JsonBody {
        body: Body {
            model,
            content_type: Some("application/json"),
            bytes: value.to_string().into_bytes(),
        },
        recipe: None,
    });
    let layout = select(&[Layout::Matrix, Layout::Columns, Layout::ColumnVectors][..]);
    let mutated = (
        0..models,
        layout,
        1usize..4,
        any::<prop::sample::Index>(),
        vec(mutation(), 1..4),
    )
        .prop_map(move |(model, layout, rows, input, mutations)| {
            let recipe = Recipe {
                model,
                layout,
                rows,
                input,
                mutations,
            };
            JsonBody {
                body: Body {
                    model,
                    content_type: Some("application/json"),
                    bytes: recipe.render(&owned),
                },
                recipe: Some(recipe),
            }
        });
    prop_oneof![1 => random, 3 => mutated]
}

/// Finite floats of every class: normal, subnormal, ±0, the extremes, and everyday magnitudes.
pub(crate) fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64 as class;
    prop_oneof![
        3 => class::POSITIVE | class::NEGATIVE | class::NORMAL | class::SUBNORMAL | class::ZERO,
        2 => select(&[
            0.0,
            -0.0,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            1e300,
            -1e300,
            1e-300,
            9_007_199_254_740_993.0,
            f64::EPSILON,
        ][..]),
        2 => -1.0f64..1.0,
        1 => -1e6f64..1e6,
    ]
}

/// A batch of finite floats in some layout and datatype.
#[derive(Debug, Clone)]
pub(crate) struct FloatBatch {
    pub(crate) model: usize,
    pub(crate) layout: Layout,
    pub(crate) datatype: Datatype,
    pub(crate) rows: usize,
    pub(crate) values: Vec<f64>,
}

fn layout_for(rows: usize) -> BoxedStrategy<Layout> {
    let mut layouts = Layout::BATCH.to_vec();
    if rows == 1 {
        layouts.push(Layout::Vector);
    }
    select(layouts).boxed()
}

/// Batches of 1 to 4 rows of [`finite_f64`] values for any reference model.
pub(crate) fn float_batches(
    references: &[ModelArtifact],
) -> impl Strategy<Value = FloatBatch> + use<> {
    let widths: Vec<usize> = references.iter().map(|a| a.features.len()).collect();
    let datatype = prop_oneof![
        6 => Just(Datatype::Fp64),
        1 => Just(Datatype::Fp32),
        1 => Just(Datatype::Int64),
    ];
    (0..widths.len().max(1), 1usize..=4, datatype).prop_flat_map(move |(model, rows, datatype)| {
        let n = widths.get(model).copied().unwrap_or(1);
        (vec(finite_f64(), rows * n), layout_for(rows)).prop_map(move |(values, layout)| {
            FloatBatch {
                model,
                layout,
                datatype,
                rows,
                values,
            }
        })
    })
}

/// A batch whose every value lies in its feature's training range `[min, max]`.
#[derive(Debug, Clone)]
pub(crate) struct ValidBatch {
    pub(crate) model: usize,
    pub(crate) layout: Layout,
    pub(crate) rows: usize,
    pub(crate) values: Vec<f64>,
}

/// Batches of 1 to 8 rows within the training range of any reference model.
pub(crate) fn valid_batches(
    references: &[ModelArtifact],
) -> impl Strategy<Value = ValidBatch> + use<> {
    let ranges: Vec<Vec<(f64, f64)>> = references
        .iter()
        .map(|a| a.features.iter().map(|f| (f.min, f.max)).collect())
        .collect();
    (0..ranges.len().max(1), 1usize..=8).prop_flat_map(move |(model, rows)| {
        let row: Vec<_> = ranges
            .get(model)
            .map(|r| r.iter().map(|&(lo, hi)| lo..=hi).collect())
            .unwrap_or_default();
        (vec(row, rows), layout_for(rows)).prop_map(move |(values, layout)| ValidBatch {
            model,
            layout,
            rows,
            values: values.concat(),
        })
    })
}

/// One value of a dirty batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell {
    /// Within two MADs of the median: `median + offset · MAD`, offset in `[-2, 2]`.
    Typical(f64),
    /// Missing (`null`).
    Missing,
    /// `factor` times the clip distance away from the median, above or below.
    Outlier {
        /// Above the median or below it.
        above: bool,
        /// How many clip distances away (> 1).
        factor: f64,
    },
}

impl Cell {
    /// Whether the sanitiser must change this cell.
    pub(crate) fn is_dirty(self) -> bool {
        !matches!(self, Cell::Typical(_))
    }
}

/// A batch with missing values and outliers among typical values.
#[derive(Debug, Clone)]
pub(crate) struct DirtyBatch {
    pub(crate) model: usize,
    pub(crate) layout: Layout,
    pub(crate) rows: usize,
    pub(crate) cells: Vec<Cell>,
}

/// Batches of 1 to 4 rows for one of `models` (indices into the references), each with at
/// least one missing value or outlier.
pub(crate) fn dirty_batches(
    references: &[ModelArtifact],
    models: Vec<usize>,
) -> impl Strategy<Value = DirtyBatch> + use<> {
    let widths: Vec<usize> = references.iter().map(|a| a.features.len()).collect();
    let cell = prop_oneof![
        3 => (-2.0f64..=2.0).prop_map(Cell::Typical),
        1 => Just(Cell::Missing),
        1 => (any::<bool>(), 1.5f64..1e6).prop_map(|(above, factor)| Cell::Outlier { above, factor }),
    ];
    (select(models), 1usize..=4)
        .prop_flat_map(move |(model, rows)| {
            let n = widths.get(model).copied().unwrap_or(1);
            (vec(cell.clone(), rows * n), layout_for(rows)).prop_map(move |(cells, layout)| {
                DirtyBatch {
                    model,
                    layout,
                    rows,
                    cells,
                }
            })
        })
        .prop_filter("a batch needs a missing value or an outlier", |b| {
            b.cells.iter().any(|c| c.is_dirty())
        })
}
