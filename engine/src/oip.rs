//! Open Inference Protocol (KServe V2) wire types used by the engine and its clients.
//!
//! Request tensors carry row-major `data`; a JSON `null` is a missing value that
//! the model's imputation policy handles. Response types accept unknown fields so
//! that clients can read other OIP servers (Triton, MLServer) too.

use serde::{Deserialize, Serialize};

mod tensor_data;

pub use self::tensor_data::MAX_NESTING;
use self::tensor_data::TensorData;

/// Tensor element types the engine accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Datatype {
    /// 32-bit float.
    #[serde(rename = "FP32")]
    Fp32,
    /// 64-bit float.
    #[serde(rename = "FP64")]
    Fp64,
    /// 64-bit signed integer.
    #[serde(rename = "INT64")]
    Int64,
}

/// `POST /v2/models/{m}/infer` request body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InferRequest {
    /// Request id, echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free-form request parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Input tensors: either one tensor of shape `[rows, n_features]` (any name),
    /// or one tensor per feature, named after it, of shape `[rows]` or `[rows, 1]`.
    pub inputs: Vec<RequestInput>,
    /// The outputs wanted; absent or empty for all. The engine has one, `prediction`; any other
    /// name is a 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One requested output tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestOutput {
    /// Output name.
    pub name: String,
    /// Free-form output parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One input tensor.
///
/// `data` is read flat or nested as the shape (`[[1, 2], [3, 4]]` for `[2, 2]`), at most
/// [`MAX_NESTING`] arrays deep, and is always held (and written) flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRequestInput")]
pub struct RequestInput {
    /// Tensor name.
    pub name: String,
    /// Tensor shape; the product must equal `data.len()`.
    pub shape: Vec<u64>,
    /// Element type.
    pub datatype: Datatype,
    /// Row-major data; `null` is a missing value.
    pub data: Vec<Option<f64>>,
}

/// [`RequestInput`] as read, before nested data is checked against the shape.
#[derive(Deserialize)]
struct RawRequestInput {
    name: String,
    shape: Vec<u64>,
    datatype: Datatype,
    data: TensorData,
}

impl TryFrom<RawRequestInput> for RequestInput {
    type Error = String;

    fn try_from(raw: RawRequestInput) -> Result<Self, String> {
        let TensorData { values, dims } = raw.data;
        let nested = dims.len() > 1;
        if nested
            && (dims.len() != raw.shape.len()
                || dims.iter().zip(&raw.shape).any(|(d, s)| *d as u64 != *s))
        {
            return Err(format!(
                "data: nested as {dims:?}, which does not match shape {:?}",
                raw.shape
            ));
        }
        Ok(RequestInput {
            name: raw.name,
            shape: raw.shape,
            datatype: raw.datatype,
            data: values,
        })
    }
}

/// `POST /v2/models/{m}/infer` response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResponse {
    /// The model that answered.
    pub model_name: String,
    /// The version of the model that answered.
    #[serde(default)]
    pub model_version: String,
    /// The request id, when the request had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the engine did to the input (sanitiser changes).
    #[serde(default)]
    pub parameters: ResponseParameters,
    /// Output tensors: `prediction`, FP64, shape `[rows]`.
    pub outputs: Vec<ResponseOutput>,
}

/// Most sanitiser changes listed in one response; `sanitiser_changes_total` counts them all.
pub const MAX_REPORTED_CHANGES: usize = 1_000;

/// Response parameters: the sanitiser report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResponseParameters {
    /// The values the sanitiser changed, in row-major order: the first
    /// [`MAX_REPORTED_CHANGES`], so that a large dirty batch does not get a response many
    /// times its size.
    #[serde(default)]
    pub sanitiser_changes: Vec<SanitiserChange>,
    /// How many values the sanitiser changed in all; more than `sanitiser_changes.len()` when
    /// the list was cut. Metrics count every change.
    #[serde(default)]
    pub sanitiser_changes_total: usize,
    /// Set when a remote model's backend could not answer and a fallback did: which one
    /// (`last-good`, `rule`, `neutral`). Absent on a normal answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<crate::backend::Fallback>,
}

/// One value changed by the sanitiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanitiserChange {
    /// Row index in the batch.
    pub row: usize,
    /// Feature name.
    pub feature: String,
    /// What was done.
    pub action: SanitiserAction,
    /// The value as received (`None` when missing).
    pub original: Option<f64>,
    /// The value used for prediction.
    pub value: f64,
}

/// Kind of sanitiser change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SanitiserAction {
    /// A missing value was imputed.
    Imputed,
    /// An outlier was clipped to `median ± k·MAD`.
    Clipped,
}

/// One output tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutput {
    /// Tensor name.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<u64>,
    /// Element type.
    pub datatype: Datatype,
    /// Row-major data.
    pub data: Vec<f64>,
}

/// Error body of every 4xx/5xx response: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable message naming the offending field and the limit.
    pub error: String,
}

/// `GET /v2` response: server metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadata {
    /// Server name (`gauntlet-engine`).
    pub name: String,
    /// Server version.
    pub version: String,
    /// Supported protocol extensions (`model_repository`).
    #[serde(default)]
    pub extensions: Vec<String>,
}

/// `GET /v2/models/{m}[/versions/{v}]` response: model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Retained versions, the live one first.
    #[serde(default)]
    pub versions: Vec<String>,
    /// `gauntlet-<kind>`, e.g. `gauntlet-tree_ensemble`.
    #[serde(default)]
    pub platform: String,
    /// Input tensors: `features`, FP64, shape `[-1, n_features]`.
    #[serde(default)]
    pub inputs: Vec<TensorMetadata>,
    /// Output tensors: `prediction`, FP64, shape `[-1]`.
    #[serde(default)]
    pub outputs: Vec<TensorMetadata>,
    /// Engine-specific details.
    #[serde(default)]
    pub parameters: ModelMetadataParameters,
}

/// A tensor's name, element type and shape (`-1` = any size) in model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Element type as text, so that other servers' types (`BYTES`, …) read too.
    pub datatype: String,
    /// Shape; `-1` for a variable dimension.
    pub shape: Vec<i64>,
}

/// Engine-specific model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelMetadataParameters {
    /// Feature names in input order: the names per-feature input tensors must use.
    #[serde(default)]
    pub feature_names: Vec<String>,
    /// The live version, if any.
    #[serde(default)]
    pub live_version: Option<String>,
}

/// `POST /v2/repository/index` request body (optional).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryIndexRequest {
    /// `true` lists only live (`READY`) versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// `POST /v2/repository/models/{m}/load` request body (optional).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Load parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<LoadParameters>,
}

/// Parameters of a load request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadParameters {
    /// The artifact to stage; without it the engine reads `{model_dir}/{m}.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<crate::artifact::ModelArtifact>,
}

/// `POST /v2/repository/models/{m}/load` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadResponse {
    /// Model name.
    pub name: String,
    /// The version staged.
    pub version: String,
    /// Always `STAGED`: promote to make it live.
    pub state: String,
}

/// `POST /v2/repository/models/{m}/promote` and `/rollback` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteResponse {
    /// Model name.
    pub name: String,
    /// The version now live.
    pub live_version: String,
    /// The version live before (the rollback target), if any.
    pub previous_version: Option<String>,
}

/// `POST /v2/repository/models/{m}/unload` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnloadResponse {
    /// The model unloaded.
    pub name: String,
}
