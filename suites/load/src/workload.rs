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

/// A cheap check fit for the highest rates: the response names the model and has outputs;
/// tags it with the version it names. Scans bytes, parses no JSON.
#[derive(Debug, Clone)]
pub struct NamesModel {
    model_field: Vec<u8>,
}

impl NamesModel {
    /// Checks responses of `model`.
    pub fn new(model: &str) -> Self {
        NamesModel {
            model_field: format!("\"model_name\":\"{model}\"").into_bytes(),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The string value of the first `"model_version":"…"` in a compact JSON body.
fn version_of(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"model_version\":\"";
    let start = find(body, KEY)? + KEY.len();
    let len = body.get(start..)?.iter().position(|b| *b == b'"')?;
    Some(String::from_utf8_lossy(&body[start..start + len]).into_owned())
}

impl ResponseCheck for NamesModel {
    fn check(&self, body: &[u8]) -> Result<Option<String>, String> {
        if find(body, &self.model_field).is_none() {
            return Err(format!(
                "no {} in the response",
                String::from_utf8_lossy(&self.model_field)
            ));
        }
        if find(body, b"\"outputs\":[").is_none() {
            return Err("no outputs in the response".to_owned());
        }
        Ok(version_of(body))
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

    #[test]
    fn names_model_scans_without_parsing() {
        let check = NamesModel::new("ref-linear");
        let good =
            br#"{"model_name":"ref-linear","model_version":"1","outputs":[{"name":"prediction"}]}"#;
        assert_eq!(check.check(good), Ok(Some("1".to_owned())));
        let other = br#"{"model_name":"other","model_version":"1","outputs":[]}"#;
        assert!(check.check(other).unwrap_err().contains("ref-linear"));
        assert!(check.check(br#"{"model_name":"ref-linear"}"#).is_err());
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
