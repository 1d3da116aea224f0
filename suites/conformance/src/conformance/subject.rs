//! The models protocol cases run on, read from the target's own metadata, and the requests
//! generated for them; the spec texts the verdicts quote; the gate of the reference engine's
//! policy cases.
//!
//! Spec: the Open Inference Protocol REST specification (KServe V2),
//! kserve/open-inference-protocol `specification/protocol/inference_rest.md`.

use http::StatusCode;
use serde_json::{Value, json};

use gauntlet_harness::{CaseCtx, CaseError, POLICY_EXTENSION, Policy, Reply, TargetExt};

use crate::support::{Draws, describe, error_message, excerpt};

/// The spec on failed requests, quoted by every error check.
pub(crate) const SPEC_ERROR: &str = "the spec: a failed request \"must be indicated by an HTTP \
     error status (typically 400). The HTTP body must contain the … {\"error\": $string} object\"";

/// The tensor datatypes of the spec's "Tensor Data Types" table (BF16 as Triton adds it).
pub(crate) const DATATYPES: [&str; 14] = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BF16", "BYTES",
];

/// One tensor of model metadata (`$metadata_tensor`): `-1` marks a variable dimension.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorMeta {
    pub(crate) name: String,
    pub(crate) datatype: String,
    pub(crate) shape: Vec<i64>,
}

/// A model the protocol cases run on, as its metadata describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subject {
    pub(crate) name: String,
    /// `versions` of the metadata; `None` when absent (the spec makes it optional).
    pub(crate) versions: Option<Vec<String>>,
    pub(crate) inputs: Vec<TensorMeta>,
    pub(crate) outputs: Vec<TensorMeta>,
}

fn tensors(meta: &Value, field: &str) -> Vec<TensorMeta> {
    meta[field]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|t| TensorMeta {
                    name: t["name"].as_str().unwrap_or_default().to_owned(),
                    datatype: t["datatype"].as_str().unwrap_or_default().to_owned(),
                    shape: t["shape"]
                        .as_array()
                        .map(|d| d.iter().filter_map(Value::as_i64).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Subject {
    /// The subject `name` as `meta` (a model metadata body) describes it.
    pub(crate) fn from_metadata(name: &str, meta: &Value) -> Self {
        Subject {
            name: name.to_owned(),
            versions: meta["versions"].as_array().map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            }),
            inputs: tensors(meta, "inputs"),
            outputs: tensors(meta, "outputs"),
        }
    }

    /// Whether every input's first dimension is variable, so a request may carry any number of
    /// rows.
    pub(crate) fn batched(&self) -> bool {
        !self.inputs.is_empty() && self.inputs.iter().all(|t| t.shape.first() == Some(&-1))
    }

    /// A valid request body (`$inference_request`) of `rows` rows, values deterministic in
    /// `seed`; a skip when the metadata gives nothing to build one from.
    pub(crate) fn request(&self, seed: u64, rows: usize) -> Result<Value, CaseError> {
        if self.inputs.is_empty() {
            return Err(CaseError::Skip(format!(
                "the metadata of model {:?} declares no inputs, so no request can be generated \
                 for it (declare its inputs, or name another model with --model)",
                self.name
            )));
        }
        let mut draws = Draws::new(seed);
        let inputs = self
            .inputs
            .iter()
            .map(|t| {
                let shape = request_shape(&t.shape, rows);
                let count = shape.iter().product::<u64>();
                let data = (0..count)
                    .map(|i| value(&t.datatype, &mut draws, i))
                    .collect::<Option<Vec<Value>>>()
                    .ok_or_else(|| {
                        CaseError::Skip(format!(
                            "input {:?} of model {:?} has datatype {:?}, for which no data can \
                             be generated",
                            t.name, self.name, t.datatype
                        ))
                    })?;
                Ok(json!({"name": t.name, "shape": shape, "datatype": t.datatype, "data": data}))
            })
            .collect::<Result<Vec<Value>, CaseError>>()?;
        Ok(json!({ "inputs": inputs }))
    }
}

/// The shape of a request tensor: the first variable dimension takes `rows`, any other 1.
pub(crate) fn request_shape(meta: &[i64], rows: usize) -> Vec<u64> {
    meta.iter()
        .enumerate()
        .map(|(i, &d)| match (i, u64::try_from(d)) {
            (_, Ok(fixed)) => fixed,
            (0, Err(_)) => rows as u64,
            (_, Err(_)) => 1,
        })
        .collect()
}

/// Element `i` of a generated tensor of `datatype`: small values every type holds exactly.
fn value(datatype: &str, draws: &mut Draws, i: u64) -> Option<Value> {
    Some(match datatype {
        "FP16" | "FP32" | "FP64" | "BF16" => {
            // Quarters in [-2, 2): exact in every float width.
            json!((draws.below(16) as f64 - 8.0) / 4.0)
        }
        "INT8" | "INT16" | "INT32" | "INT64" | "UINT8" | "UINT16" | "UINT32" | "UINT64" => {
            json!(draws.below(10))
        }
        "BOOL" => json!(draws.below(2) == 1),
        "BYTES" => json!(format!("g{i}")),
        _ => return None,
    })
}

/// The models this run's protocol cases run on: `--model` names, else the reference models the
/// target serves, else every ready model of `POST /v2/repository/index`; each read from
/// `GET /v2/models/{name}`.
pub(crate) async fn subjects(ctx: &CaseCtx) -> Result<Vec<Subject>, CaseError> {
    let names: Vec<String> = if !ctx.models.is_empty() {
        ctx.models.to_vec()
    } else if !ctx.reference_models.is_empty() {
        ctx.reference_models
            .iter()
            .map(|m| m.name.clone())
            .collect()
    } else {
        listed_models(ctx).await?
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = format!("/v2/models/{name}");
        let reply = ctx.target.get(&path).await?;
        if reply.status != StatusCode::OK {
            return Err(CaseError::Error(format!(
                "GET {path}: the model's metadata is needed to generate requests for it, got {} \
                 (is --model {name} served?)",
                describe(&reply)
            )));
        }
        let meta: Value = reply.json().map_err(|e| {
            CaseError::Error(format!(
                "GET {path}: the model's metadata is needed to generate requests for it, but the \
                 body is not JSON ({e}): {:?}",
                excerpt(&reply.text())
            ))
        })?;
        out.push(Subject::from_metadata(&name, &meta));
    }
    Ok(out)
}

/// The ready models of the target's repository index.
async fn listed_models(ctx: &CaseCtx) -> Result<Vec<String>, CaseError> {
    let none = |why: String| {
        CaseError::Skip(format!(
            "no model to run on: the target serves no reference model and {why}; name one with \
             --model"
        ))
    };
    let reply = ctx
        .target
        .post_json("/v2/repository/index", &json!({"ready": true}))
        .await?;
    if reply.status != StatusCode::OK {
        return Err(none(format!(
            "POST /v2/repository/index answered {}",
            describe(&reply)
        )));
    }
    let index: Value = reply
        .json()
        .map_err(|e| none(format!("POST /v2/repository/index is not JSON ({e})")))?;
    let mut names: Vec<String> = index
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["state"]
                .as_str()
                .is_none_or(|s| s.eq_ignore_ascii_case("ready"))
        })
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(none(
            "POST /v2/repository/index lists no ready model".into(),
        ));
    }
    Ok(names)
}

/// Checks a reply the spec makes an error: a 4xx status and an `{"error": string}` body; returns
/// the message. A 5xx fails too: the request was bad, not the server.
pub(crate) fn expect_spec_error(reply: &Reply, request: &str) -> Result<String, CaseError> {
    if !reply.status.is_client_error() {
        return Err(CaseError::Fail(format!(
            "{request}: expected a 4xx status (a bad request), got {}; {SPEC_ERROR}",
            describe(reply)
        )));
    }
    error_message(reply).map_err(|why| {
        CaseError::Fail(format!(
            "{request}: {} reply: {why}; {SPEC_ERROR}",
            reply.status
        ))
    })
}

/// Flattens nested tensor data: the spec accepts either form.
pub(crate) fn flatten<'a>(data: &'a Value, out: &mut Vec<&'a Value>) {
    match data {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

/// Checks a successful infer reply against `$inference_response`: status 200, `model_name`,
/// optional `model_version` and `parameters`, `id` when the request had one, and each output's
/// name, known datatype (the metadata's when it describes the output), shape and element count.
/// Returns the body.
pub(crate) fn check_infer_response(
    reply: &Reply,
    subject: &Subject,
    id: Option<&str>,
    request: &str,
) -> Result<Value, CaseError> {
    let fail = |why: String| CaseError::Fail(format!("{request}: {why}"));
    if reply.status != StatusCode::OK {
        return Err(fail(format!(
            "expected 200 OK for a request built from the model's metadata, got {}; the spec: \
             \"A successful inference request is indicated by a 200 HTTP status code\"",
            describe(reply)
        )));
    }
    let body: Value = reply.json().map_err(|e| {
        fail(format!(
            "the 200 body is not JSON ({e}): {:?}",
            excerpt(&reply.text())
        ))
    })?;
    let spec = "the spec's $inference_response";
    match body.get("model_name") {
        Some(Value::String(name)) if *name == subject.name => {}
        other => {
            return Err(fail(format!(
                "`model_name` expected {:?} (\"The name of the model used for inference\", {spec}), got {}",
                subject.name,
                other.map_or_else(|| "nothing".to_owned(), Value::to_string)
            )));
        }
    }
    if let Some(v) = body.get("model_version")
        && !v.is_string()
    {
        return Err(fail(format!(
            "`model_version` should be a string when present ({spec}), got {v}"
        )));
    }
    if let Some(p) = body.get("parameters")
        && !p.is_object()
    {
        return Err(fail(format!(
            "`parameters` should be an object when present ({spec}), got {p}"
        )));
    }
    if let Some(id) = id {
        let got = body.get("id");
        if got.and_then(Value::as_str) != Some(id) {
            return Err(fail(format!(
                "`id` expected {id:?}, got {}; the spec: \"if specified this identifier must be \
                 returned in the response\"",
                got.map_or_else(|| "nothing".to_owned(), Value::to_string)
            )));
        }
    }
    let Some(outputs) = body.get("outputs").and_then(Value::as_array) else {
        return Err(fail(format!(
            "`outputs` should be an array of output tensors ({spec}), got {}",
            body.get("outputs")
                .map_or_else(|| "nothing".to_owned(), Value::to_string)
        )));
    };
    if outputs.is_empty() {
        return Err(fail(format!(
            "`outputs` is empty; the spec: \"if not specified all outputs produced by the model \
             will be returned\" ({spec})"
        )));
    }
    for (i, output) in outputs.iter().enumerate() {
        check_output(output, subject).map_err(|why| fail(format!("`outputs[{i}]`: {why}")))?;
    }
    Ok(body)
}

/// One `$response_output`: `name`, `shape`, `datatype`, `data` of as many elements as the shape.
fn check_output(output: &Value, subject: &Subject) -> Result<(), String> {
    let name = output["name"]
        .as_str()
        .ok_or_else(|| format!("`name` should be a string, got {}", output["name"]))?;
    let datatype = output["datatype"]
        .as_str()
        .filter(|d| DATATYPES.contains(d))
        .ok_or_else(|| {
            format!(
                "`datatype` of {name:?} should be one of the spec's tensor data types, got {}",
                output["datatype"]
            )
        })?;
    if let Some(declared) = subject.outputs.iter().find(|t| t.name == name)
        && declared.datatype != datatype
    {
        return Err(format!(
            "{name:?} has datatype {datatype}, but the model's metadata declares {} (\"outputs\" \
             : \"The outputs produced by the model\")",
            declared.datatype
        ));
    }
    let shape: Vec<u64> = output["shape"]
        .as_array()
        .and_then(|d| d.iter().map(Value::as_u64).collect())
        .ok_or_else(|| {
            format!(
                "`shape` of {name:?} should be an array of non-negative integers, got {}",
                output["shape"]
            )
        })?;
    let mut elements = Vec::new();
    flatten(&output["data"], &mut elements);
    let expected = shape.iter().product::<u64>();
    if !output["data"].is_array() || elements.len() as u64 != expected {
        return Err(format!(
            "{name:?} has shape {shape:?} ({expected} elements) but `data` holds {}: {}",
            elements.len(),
            excerpt(&output["data"].to_string())
        ));
    }
    Ok(())
}

/// Whether the reference engine's own policy cases run against this target: with
/// `--policy reference`, or when `GET /v2` (gRPC `ServerMetadata` on a target that speaks only
/// gRPC) lists the [`POLICY_EXTENSION`]; otherwise a skip saying so. `what` names the policy,
/// for the reason.
pub(crate) async fn policy_applies(ctx: &CaseCtx, what: &str) -> Result<(), CaseError> {
    let skip = |why: String| {
        CaseError::Skip(format!(
            "checks the reference engine's policy ({what}), which the protocol does not require; \
             {why}"
        ))
    };
    match ctx.policy {
        Policy::Reference => return Ok(()),
        Policy::Spec => return Err(skip("the run has --policy spec".into())),
        _ => {}
    }
    let (listed, asked) = if ctx.target.speaks_http() {
        let reply = ctx.target.get("/v2").await?;
        let listed = reply.status == StatusCode::OK
            && reply.json::<Value>().is_ok_and(|meta| {
                meta["extensions"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x.as_str() == Some(POLICY_EXTENSION)))
            });
        (listed, "GET /v2")
    } else {
        let endpoint = ctx.target.grpc_endpoint().await?;
        let listed = endpoint
            .client()
            .await?
            .server_metadata(gauntlet_oip_grpc::inference::ServerMetadataRequest {})
            .await
            .is_ok_and(|m| {
                m.into_inner()
                    .extensions
                    .iter()
                    .any(|x| x == POLICY_EXTENSION)
            });
        (listed, "gRPC ServerMetadata")
    };
    if listed {
        Ok(())
    } else {
        Err(skip(format!(
            "runs when {asked} lists the {POLICY_EXTENSION:?} extension, or with --policy reference"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject::from_metadata(
            "m",
            &json!({"name": "m", "platform": "sklearn", "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [-1, 5]},
                {"name": "flag", "datatype": "BOOL", "shape": [-1]}
            ], "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1]}]}),
        )
    }

    #[test]
    fn requests_follow_the_metadata() {
        let s = subject();
        assert!(s.batched());
        assert_eq!(s.versions, None);
        let body = s.request(7, 3).unwrap();
        assert_eq!(body["inputs"][0]["shape"], json!([3, 5]));
        assert_eq!(body["inputs"][0]["data"].as_array().unwrap().len(), 15);
        assert_eq!(body["inputs"][1]["shape"], json!([3]));
        assert!(body["inputs"][1]["data"][0].is_boolean());
        assert_eq!(s.request(7, 3).unwrap(), body);
        assert_eq!(request_shape(&[2, -1, -1], 9), [2, 1, 1]);
        let mut odd = s.clone();
        odd.inputs[0].datatype = "COMPLEX".into();
        assert!(matches!(odd.request(1, 1), Err(CaseError::Skip(_))));
        odd.inputs.clear();
        assert!(matches!(odd.request(1, 1), Err(CaseError::Skip(_))));
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn responses_are_checked_against_the_spec() {
        let s = subject();
        let ok = r#"{"model_name":"m","id":"a","outputs":[{"name":"y","shape":[2,1],"datatype":"FP64","data":[[1.0],[2.0]]}]}"#;
        check_infer_response(&reply(200, ok), &s, Some("a"), "r").unwrap();
        let cases = [
            (reply(500, "oops"), "expected 200"),
            (reply(200, ok), "`id` expected \"b\""),
            (
                reply(
                    200,
                    r#"{"model_name":"m","outputs":[{"name":"y","shape":[3],"datatype":"FP64","data":[1]}]}"#,
                ),
                "holds 1",
            ),
            (
                reply(
                    200,
                    r#"{"model_name":"m","outputs":[{"name":"y","shape":[1],"datatype":"INT64","data":[1]}]}"#,
                ),
                "declares FP64",
            ),
            (
                reply(200, r#"{"model_name":"n","outputs":[]}"#),
                "model_name",
            ),
        ];
        for (i, (r, needle)) in cases.iter().enumerate() {
            let id = if i == 1 { Some("b") } else { None };
            let err = check_infer_response(r, &s, id, "r")
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn spec_errors_take_any_4xx_with_an_error_body() {
        expect_spec_error(&reply(422, r#"{"error":"bad"}"#), "r").unwrap();
        let detail = expect_spec_error(&reply(422, r#"{"detail":"bad"}"#), "r")
            .unwrap_err()
            .to_string();
        assert!(
            detail.contains("no `error` field") && detail.contains("must contain"),
            "{detail}"
        );
        let server = expect_spec_error(&reply(500, r#"{"error":"x"}"#), "r")
            .unwrap_err()
            .to_string();
        assert!(server.contains("expected a 4xx"), "{server}");
    }
}
