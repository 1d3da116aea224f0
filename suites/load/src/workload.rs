//! What the load scenarios send, and how they check what comes back.

use std::collections::BTreeMap;

use bytes::Bytes;

use gauntlet_engine::oip::{Datatype, InferRequest, InferResponse, RequestInput};
use gauntlet_oip_grpc::inference::ModelInferResponse;

use crate::driver::ResponseCheck;

/// A workload that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The seeded generator refused.
    #[error("failed to generate feature rows: {0}")]
    Rows(String),
    /// Serialisation failed.
    #[error("failed to serialise the infer request: {0}")]
    Json(String),
}

/// An infer request of `rows` seeded rows of the fixtures' eight features, as JSON.
pub fn infer_body(rows: usize, seed: u64) -> Result<Bytes, WorkloadError> {
    let data = gauntlet_fixtures::generate_rows(seed, rows)
        .map_err(|e| WorkloadError::Rows(e.to_string()))?;
    let request = InferRequest {
        id: None,
        parameters: None,
        inputs: vec![RequestInput {
            name: "features".to_owned(),
            shape: vec![rows as u64, gauntlet_fixtures::N_FEATURES as u64],
            datatype: Datatype::Fp64,
            data: data.features.into_iter().map(Some).collect(),
        }],
        outputs: None,
    };
    serde_json::to_vec(&request)
        .map(Bytes::from)
        .map_err(|e| WorkloadError::Json(e.to_string()))
}

/// The infer path of `model`.
pub fn infer_path(model: &str) -> String {
    gauntlet_harness::infer_path(model, None)
}

/// An output tensor as the model's metadata (`GET /v2/models/{m}`) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedOutput {
    /// Its name.
    pub name: String,
    /// Its datatype (`FP32`, `BYTES`, …), when the metadata gives one.
    pub datatype: Option<String>,
    /// Its shape, `-1` for a variable dimension, when the metadata gives one.
    pub shape: Option<Vec<i64>>,
}

/// The outputs a response must carry: those `requested` (`"outputs"` of the request), else
/// every output of the model's `metadata`, with their datatypes and shapes as it gives them.
pub fn expected_outputs(
    metadata: &serde_json::Value,
    requested: Option<&[String]>,
) -> Vec<ExpectedOutput> {
    let described: Vec<ExpectedOutput> = metadata
        .get("outputs")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    Some(ExpectedOutput {
                        name: o.get("name")?.as_str()?.to_owned(),
                        datatype: o
                            .get("datatype")
                            .and_then(serde_json::Value::as_str)
                            .map(str::to_owned),
                        shape: o
                            .get("shape")
                            .and_then(serde_json::Value::as_array)
                            .and_then(|dims| dims.iter().map(serde_json::Value::as_i64).collect()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    match requested {
        None => described,
        Some(names) => names
            .iter()
            .map(|name| {
                described
                    .iter()
                    .find(|o| &o.name == name)
                    .cloned()
                    .unwrap_or_else(|| ExpectedOutput {
                        name: name.clone(),
                        datatype: None,
                        shape: None,
                    })
            })
            .collect(),
    }
}

/// The check of every infer response under load: the body parses as JSON, names `model`
/// when it names a model at all (`model_name` is the server's to send), has at least one
/// output, every output's data holds as many elements as its `shape` says and of the kind its
/// `datatype` says (numbers, booleans, strings), and every output the model's metadata
/// promises ([`NamesModel::expecting`]) is there with the metadata's datatype and shape
/// (`-1` matching any size). Tags the response with the `model_version` it names. Parsed,
/// not scanned: a server's own spacing or field order is not a mismatch. Borrowed strings
/// and elements counted, not kept, keep it cheap at high rates.
#[derive(Debug, Clone)]
pub struct NamesModel {
    model: String,
    expected: Vec<ExpectedOutput>,
}

impl NamesModel {
    /// Checks responses of `model`.
    pub fn new(model: &str) -> Self {
        NamesModel {
            model: model.to_owned(),
            expected: Vec::new(),
        }
    }

    /// The same check, also requiring `outputs` as the model's metadata describes them.
    pub fn expecting(mut self, outputs: Vec<ExpectedOutput>) -> Self {
        self.expected = outputs;
        self
    }

    /// The outputs required besides the basic checks.
    pub fn expected(&self) -> &[ExpectedOutput] {
        &self.expected
    }
}

/// The parts of an infer response the check reads.
#[derive(serde::Deserialize)]
struct Light<'a> {
    #[serde(borrow, default)]
    model_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    model_version: Option<std::borrow::Cow<'a, str>>,
    outputs: Option<Vec<LightOutput<'a>>>,
}

/// One output tensor: its name, datatype and shape, and its elements counted by kind without
/// being kept.
#[derive(serde::Deserialize)]
struct LightOutput<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    datatype: Option<std::borrow::Cow<'a, str>>,
    shape: Vec<u64>,
    data: Leaves,
}

/// The leaves of a tensor's `data` (flat or nested arrays), counted by JSON kind.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Leaves {
    count: u64,
    numbers: u64,
    bools: u64,
    strings: u64,
}

impl<'de> serde::Deserialize<'de> for Leaves {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut leaves = Leaves::default();
        d.deserialize_seq(CountLeaves(&mut leaves, 0))?;
        Ok(leaves)
    }
}

/// Deepest nesting of `data` arrays read (tensors of higher rank are rare; a hostile body
/// must not recurse without bound).
const MAX_DATA_DEPTH: u8 = 16;

/// Visits one JSON value of `data` at nesting `.1`, adding its leaves to `.0`.
struct CountLeaves<'a>(&'a mut Leaves, u8);

impl<'de> serde::de::DeserializeSeed<'de> for CountLeaves<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CountLeaves<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tensor data: an array of numbers, booleans or strings, possibly nested")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let CountLeaves(leaves, depth) = self;
        if depth >= MAX_DATA_DEPTH {
            return Err(serde::de::Error::custom(format!(
                "data nested deeper than {MAX_DATA_DEPTH} arrays"
            )));
        }
        while seq
            .next_element_seed(CountLeaves(&mut *leaves, depth + 1))?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.0.count += 1;
        self.0.bools += 1;
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.0.count += 1;
        self.0.numbers += 1;
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.visit_i64(0)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.visit_i64(0)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.0.count += 1;
        self.0.strings += 1;
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        // null: a leaf of no datatype's kind.
        self.0.count += 1;
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // BYTES may be sent as {"b64": …}: one leaf, of no numeric kind.
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        self.0.count += 1;
        Ok(())
    }
}

/// Whether `leaves` are all of the kind `datatype` calls for (any kind for a datatype this
/// check does not know).
fn kind_matches(datatype: &str, leaves: &Leaves) -> bool {
    match datatype {
        "BOOL" => leaves.bools == leaves.count,
        "BYTES" => leaves.numbers == 0 && leaves.bools == 0,
        d if d.starts_with("FP")
            || d.starts_with("INT")
            || d.starts_with("UINT")
            || d == "BF16" =>
        {
            leaves.numbers == leaves.count
        }
        _ => true,
    }
}

impl ResponseCheck for NamesModel {
    fn check(&self, body: &[u8]) -> Result<Option<String>, String> {
        let r: Light<'_> =
            serde_json::from_slice(body).map_err(|e| format!("not an infer response: {e}"))?;
        if let Some(name) = &r.model_name
            && name != &self.model
        {
            return Err(format!(
                "model_name {name:?} is not the model asked, {:?}",
                self.model
            ));
        }
        let outputs = r.outputs.unwrap_or_default();
        if outputs.is_empty() {
            return Err("no outputs in the response".to_owned());
        }
        for o in &outputs {
            let want = o
                .shape
                .iter()
                .try_fold(1u64, |n, d| n.checked_mul(*d))
                .unwrap_or(u64::MAX);
            if want != o.data.count {
                return Err(format!(
                    "output {:?} has shape {:?} ({want} elements) but {} data elements",
                    o.name, o.shape, o.data.count
                ));
            }
            if let Some(datatype) = &o.datatype
                && !kind_matches(datatype, &o.data)
            {
                return Err(format!(
                    "output {:?} is {datatype} but its data holds {} numbers, {} booleans and {} \
                     strings of {} elements",
                    o.name, o.data.numbers, o.data.bools, o.data.strings, o.data.count
                ));
            }
        }
        let views: Vec<OutputView<'_>> = outputs
            .iter()
            .map(|o| OutputView {
                name: &o.name,
                datatype: o.datatype.as_deref(),
                shape: std::borrow::Cow::Borrowed(&o.shape),
            })
            .collect();
        self.check_expected(&views)?;
        Ok(r.model_version.map(std::borrow::Cow::into_owned))
    }

    fn check_grpc(&self, response: &ModelInferResponse) -> Result<Option<String>, String> {
        // The driver found the model name, the outputs and their data consistent.
        let views = response
            .outputs
            .iter()
            .map(|o| {
                Ok(OutputView {
                    name: &o.name,
                    datatype: Some(o.datatype.as_str()),
                    shape: std::borrow::Cow::Owned(
                        o.shape
                            .iter()
                            .map(|&d| u64::try_from(d))
                            .collect::<Result<_, _>>()
                            .map_err(|_| format!("output {:?} has shape {:?}", o.name, o.shape))?,
                    ),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        self.check_expected(&views)?;
        Ok((!response.model_version.is_empty()).then(|| response.model_version.clone()))
    }
}

/// What the metadata check reads of one output, from JSON or from a gRPC answer.
struct OutputView<'a> {
    name: &'a str,
    datatype: Option<&'a str>,
    shape: std::borrow::Cow<'a, [u64]>,
}

impl NamesModel {
    /// Every output the model's metadata promises is among `outputs`, with the metadata's
    /// datatype and shape (`-1` matching any size).
    fn check_expected(&self, outputs: &[OutputView<'_>]) -> Result<(), String> {
        for e in &self.expected {
            let Some(o) = outputs.iter().find(|o| o.name == e.name.as_str()) else {
                let names: Vec<&str> = outputs.iter().map(|o| o.name).collect();
                return Err(format!(
                    "output {:?} of the model's metadata is not in the response (outputs: {names:?})",
                    e.name
                ));
            };
            if let Some(want) = &e.datatype
                && o.datatype != Some(want.as_str())
            {
                return Err(format!(
                    "output {:?} has datatype {:?} but the model's metadata says {want:?}",
                    e.name,
                    o.datatype.unwrap_or("(none)")
                ));
            }
            if let Some(want) = &e.shape
                && (want.len() != o.shape.len()
                    || want
                        .iter()
                        .zip(o.shape.iter())
                        .any(|(w, g)| *w >= 0 && u64::try_from(*w).ok() != Some(*g)))
            {
                return Err(format!(
                    "output {:?} has shape {:?} but the model's metadata says {want:?} (-1: any size)",
                    e.name, o.shape
                ));
            }
        }
        Ok(())
    }
}

/// The swap-under-load check: each response parses, names exactly one of the expected
/// versions, and carries that version's exact predictions — a response computed half by one
/// version and half by the other, or naming one and computed by the other, fails.
#[derive(Debug, Clone)]
pub struct ExactVersion {
    /// Expected predictions by version label.
    pub expected: BTreeMap<String, Vec<f64>>,
}

impl ResponseCheck for ExactVersion {
    fn check(&self, body: &[u8]) -> Result<Option<String>, String> {
        // Derived Deserialize rejects a duplicated field, so two versions cannot hide here.
        let response: InferResponse =
            serde_json::from_slice(body).map_err(|e| format!("not an infer response: {e}"))?;
        let got = match response.outputs.as_slice() {
            [one] => &one.data,
            other => return Err(format!("{} output tensors, expected 1", other.len())),
        };
        self.judge(&response.model_version, got)
    }

    fn check_grpc(&self, response: &ModelInferResponse) -> Result<Option<String>, String> {
        if response.outputs.len() != 1 {
            return Err(format!(
                "{} output tensors, expected 1",
                response.outputs.len()
            ));
        }
        let got = crate::grpc::fp64_output(response, 0).ok_or_else(|| {
            format!(
                "output {:?} is {}, expected FP64",
                response.outputs[0].name, response.outputs[0].datatype
            )
        })?;
        self.judge(&response.model_version, &got)
    }
}

impl ExactVersion {
    /// `got` are exactly the predictions of `version`, one of the expected versions.
    fn judge(&self, version: &str, got: &[f64]) -> Result<Option<String>, String> {
        let Some(want) = self.expected.get(version) else {
            return Err(format!(
                "model_version {version:?} is none of {:?}",
                self.expected.keys().collect::<Vec<_>>()
            ));
        };
        if got.len() != want.len()
            || got
                .iter()
                .zip(want)
                .any(|(g, w)| g.to_bits() != w.to_bits())
        {
            return Err(format!(
                "predictions {got:?} are not version {version}'s {want:?}"
            ));
        }
        Ok(Some(version.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infer_body_is_a_valid_seeded_request() {
        let a = infer_body(2, 7).unwrap();
        assert_eq!(a, infer_body(2, 7).unwrap());
        assert_ne!(a, infer_body(2, 8).unwrap());
        let parsed: InferRequest = serde_json::from_slice(&a).unwrap();
        assert_eq!(parsed.inputs[0].shape, vec![2, 8]);
    }

    /// Regression: the check looked for the exact text `"model_name":"<m>"`, so a valid
    /// response with spaces after the colons counted as a 100 % body mismatch.
    #[test]
    fn names_model_parses_so_spacing_and_order_do_not_matter() {
        let check = NamesModel::new("ref-linear");
        let good = br#"{"model_name":"ref-linear","model_version":"1","outputs":[{"name":"prediction","shape":[2,1],"datatype":"FP64","data":[0.5,1.5]}]}"#;
        assert_eq!(check.check(good), Ok(Some("1".to_owned())));
        let spaced =
            br#"{ "outputs": [ { "name": "y", "datatype": "FP32", "shape": [1], "data": [3] } ],
                          "model_name": "ref-linear", "model_version": "7" }"#;
        assert_eq!(check.check(spaced), Ok(Some("7".to_owned())));
        // model_name and model_version are the server's to omit.
        let bare = br#"{"outputs":[{"name":"y","datatype":"FP64","shape":[1],"data":[1]}]}"#;
        assert_eq!(check.check(bare), Ok(None));
        let other = br#"{"model_name":"other","outputs":[{"name":"y","datatype":"FP64","shape":[1],"data":[1]}]}"#;
        assert!(check.check(other).unwrap_err().contains("ref-linear"));
        assert!(
            check
                .check(br#"{"model_name":"ref-linear"}"#)
                .unwrap_err()
                .contains("no outputs")
        );
        let short = br#"{"outputs":[{"name":"y","datatype":"FP64","shape":[2,2],"data":[1,2,3]}]}"#;
        assert!(
            check.check(short).unwrap_err().contains("4 elements"),
            "{:?}",
            check.check(short)
        );
        assert!(
            check
                .check(b"internal error")
                .unwrap_err()
                .contains("not an infer response")
        );
    }

    /// The response is held to the model's metadata: every promised output, with its
    /// datatype and shape (`-1` any size), and data of the datatype's kind.
    #[test]
    fn names_model_holds_outputs_to_the_metadata() {
        let metadata = serde_json::json!({
            "name": "market-model",
            "outputs": [
                {"name": "predict", "datatype": "FP32", "shape": [-1, 1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]}
            ]
        });
        let all = expected_outputs(&metadata, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].shape, Some(vec![-1, 1]));
        let check = NamesModel::new("market-model").expecting(all);
        let good = br#"{"model_name":"market-model","outputs":[
            {"name":"predict","datatype":"FP32","shape":[2,1],"data":[[0.5],[1.5]]},
            {"name":"label","datatype":"BYTES","shape":[2],"data":["up","down"]}]}"#;
        assert_eq!(check.check(good), Ok(None));
        let cases: [(&[u8], &str); 5] = [
            (
                br#"{"outputs":[{"name":"predict","datatype":"FP32","shape":[1,1],"data":[1]}]}"#,
                "output \"label\" of the model's metadata is not in the response",
            ),
            (
                br#"{"outputs":[{"name":"predict","datatype":"FP64","shape":[1,1],"data":[1]},
                    {"name":"label","datatype":"BYTES","shape":[1],"data":["a"]}]}"#,
                "datatype \"FP64\" but the model's metadata says \"FP32\"",
            ),
            (
                br#"{"outputs":[{"name":"predict","datatype":"FP32","shape":[1],"data":[1]},
                    {"name":"label","datatype":"BYTES","shape":[1],"data":["a"]}]}"#,
                "shape [1] but the model's metadata says [-1, 1]",
            ),
            (
                br#"{"outputs":[{"name":"predict","datatype":"FP32","shape":[1,1],"data":["x"]},
                    {"name":"label","datatype":"BYTES","shape":[1],"data":["a"]}]}"#,
                "is FP32 but its data holds 0 numbers",
            ),
            (
                br#"{"outputs":[{"name":"predict","datatype":"FP32","shape":[2,1],"data":[[1],[2],[3]]},
                    {"name":"label","datatype":"BYTES","shape":[1],"data":["a"]}]}"#,
                "(2 elements) but 3 data elements",
            ),
        ];
        for (body, needle) in cases {
            let err = check.check(body).unwrap_err();
            assert!(err.contains(needle), "{needle:?} in {err:?}");
        }
        // The outputs the request names, not all the metadata's.
        let one = expected_outputs(&metadata, Some(&["label".to_owned()]));
        assert_eq!(one.len(), 1);
        let check = NamesModel::new("market-model").expecting(one);
        let only_label =
            br#"{"outputs":[{"name":"label","datatype":"BYTES","shape":[1],"data":["a"]}]}"#;
        assert_eq!(check.check(only_label), Ok(None));
        // Nesting is bounded.
        let deep = format!(
            r#"{{"outputs":[{{"name":"y","shape":[1],"data":{}1{}}}]}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(
            check
                .check(deep.as_bytes())
                .unwrap_err()
                .contains("nested deeper")
        );
    }

    fn body(version: &str, data: &str) -> Vec<u8> {
        format!(
            r#"{{"model_name":"m","model_version":"{version}","outputs":[{{"name":"prediction","shape":[1],"datatype":"FP64","data":[{data}]}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn exact_version_rejects_mixed_and_unknown_versions() {
        let check = ExactVersion {
            expected: [("a".to_owned(), vec![1.5]), ("b".to_owned(), vec![2.5])].into(),
        };
        assert_eq!(check.check(&body("a", "1.5")), Ok(Some("a".to_owned())));
        assert_eq!(check.check(&body("b", "2.5")), Ok(Some("b".to_owned())));
        assert!(
            check
                .check(&body("a", "2.5"))
                .unwrap_err()
                .contains("not version a")
        );
        assert!(
            check
                .check(&body("c", "1.5"))
                .unwrap_err()
                .contains("none of")
        );
        let twice = br#"{"model_name":"m","model_version":"a","model_version":"b","outputs":[]}"#;
        assert!(check.check(twice).is_err());
    }
}
