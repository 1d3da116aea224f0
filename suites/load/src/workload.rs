//! What the load scenarios send, and how they check what comes back.

use std::collections::BTreeMap;

use bytes::Bytes;

use gauntlet_engine::oip::{Datatype, InferRequest, InferResponse, RequestInput};

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

/// The check of every infer response under load: the body parses as JSON, names `model`
/// when it names a model at all (`model_name` is the server's to send), and has at least one
/// output whose `data` holds as many elements as its `shape` says; tags the response with
/// the `model_version` it names. Parsed, not scanned: a server's own spacing or field order
/// is not a mismatch. Borrowed strings and uncounted elements keep it cheap at high rates.
#[derive(Debug, Clone)]
pub struct NamesModel {
    model: String,
}

impl NamesModel {
    /// Checks responses of `model`.
    pub fn new(model: &str) -> Self {
        NamesModel {
            model: model.to_owned(),
        }
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

/// One output tensor: its shape, and its elements counted without being kept
/// (`IgnoredAny` is zero-sized, so the vector never allocates).
#[derive(serde::Deserialize)]
struct LightOutput<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    shape: Vec<u64>,
    data: Vec<serde::de::IgnoredAny>,
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
            if want != o.data.len() as u64 {
                return Err(format!(
                    "output {:?} has shape {:?} ({want} elements) but {} data elements",
                    o.name,
                    o.shape,
                    o.data.len()
                ));
            }
        }
        Ok(r.model_version.map(std::borrow::Cow::into_owned))
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
        let Some(want) = self.expected.get(&response.model_version) else {
            return Err(format!(
                "model_version {:?} is none of {:?}",
                response.model_version,
                self.expected.keys().collect::<Vec<_>>()
            ));
        };
        let got = match response.outputs.as_slice() {
            [one] => &one.data,
            other => return Err(format!("{} output tensors, expected 1", other.len())),
        };
        if got.len() != want.len()
            || got
                .iter()
                .zip(want)
                .any(|(g, w)| g.to_bits() != w.to_bits())
        {
            return Err(format!(
                "predictions {got:?} are not version {}'s {want:?}",
                response.model_version
            ));
        }
        Ok(Some(response.model_version))
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
