//! The audit extension (`gauntlet_audit`): the latest signed checkpoint, inclusion and
//! consistency proofs, single records; and the layer that records every repository (admin)
//! call, durably, before it is acknowledged. No route edits or deletes a record.

use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri};
use http_body_util::BodyExt as _;

use super::error::ApiError;
use super::principal::{ANONYMOUS, CLIENT_HEADER, Caller, caller, require};
use crate::audit::merkle::ProofError;
use crate::audit::{
    Action, AuditError, AuditEvent, AuditLog, AuditRecord, Checkpoint, ConsistencyProof,
    InclusionProof, Outcome, decode_payload,
};
use crate::model::Model;
use crate::state::AppState;

/// Name of the extension in `GET /v2` metadata.
pub const AUDIT_EXTENSION: &str = "gauntlet_audit";
/// Name of the four-eyes promotion extension in `GET /v2` metadata (`audit.four-eyes`).
pub const FOUR_EYES_EXTENSION: &str = "gauntlet_four_eyes";

/// What a handler tells the audit layer to record as the detail of a successful admin call
/// (a digest, an approver, a run), put in the response's extensions.
#[derive(Debug, Clone)]
pub(crate) struct AuditDetail(pub(crate) String);

/// Largest admin response body the audit layer reads for the version it names.
const MAX_ADMIN_RESPONSE: usize = 64 * 1024;

fn log(state: &AppState) -> Result<&AuditLog, ApiError> {
    state.audit().ok_or_else(|| {
        ApiError::not_found("the audit log is not enabled (set [audit] in the engine config)")
    })
}

impl From<AuditError> for ApiError {
    fn from(err: AuditError) -> ApiError {
        match &err {
            AuditError::Proof(
                p @ (ProofError::IndexOutOfRange { .. }
                | ProofError::SizeOutOfRange { .. }
                | ProofError::SizesOutOfOrder { .. }),
            ) => ApiError::bad_request(p.to_string()),
            AuditError::Pruned { .. } => ApiError::new(StatusCode::GONE, err.to_string()),
            AuditError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "failed to record the audit record: the audit log has stopped",
            ),
            _ => ApiError::internal("audit log failed", &err),
        }
    }
}

pub(crate) async fn latest_checkpoint(
    State(state): State<AppState>,
) -> Result<Json<Checkpoint>, ApiError> {
    log(&state)?
        .latest_checkpoint()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))
}

/// Signs a checkpoint now (after recording who asked).
pub(crate) async fn sign_checkpoint(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<Checkpoint>, ApiError> {
    let log = log(&state)?;
    let who = require(who)?;
    log.record_durable(AuditEvent::new(who, Action::CheckpointRequest, Outcome::Ok))
        .await?;
    Ok(Json(log.checkpoint_now().await?))
}

/// `POST /v2/audit/prune` body (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PruneRequest {
    /// Cut-off, RFC 3339: prune segments whose newest record is older. Default: now less
    /// `audit.retention`; a later one is refused.
    before: Option<String>,
}

/// Prunes the segments older than the retention period (needs a principal; recorded). A
/// younger cut-off is `{"error", "control": "retention"}`, 409.
pub(crate) async fn prune(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let log = log(&state)?;
    let who = require(who)?;
    let bytes = super::body::read_body(&headers, body, 4096, "prune body").await?;
    let request: PruneRequest = if super::body::is_blank(&bytes) {
        PruneRequest::default()
    } else {
        super::body::require_json(&headers)?;
        super::body::parse(&bytes)?
    };
    let before = match request.before.as_deref() {
        None => None,
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    ApiError::bad_request(format!("before: must be an RFC 3339 time ({e})"))
                })?
                .timestamp_micros(),
        ),
    };
    match log.prune(&who, before).await {
        Ok(report) => Ok(Json(report).into_response()),
        Err(e @ AuditError::RetentionRefused { .. }) => Ok((
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": e.to_string(), "control": "retention"})),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// The integer parameters of a query string; an unknown key, a repeated key or a value that
/// is not an integer is a 400 naming it.
fn query_u64s<const N: usize>(
    uri: &Uri,
    keys: [&'static str; N],
) -> Result<[Option<u64>; N], ApiError> {
    let mut out = [None; N];
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(slot) = keys.iter().position(|k| *k == key) else {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {key:?}; expected {keys:?}"
            )));
        };
        if out[slot].is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter {key:?} given twice"
            )));
        }
        out[slot] = Some(value.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter {key:?} must be an integer from 0 to {}",
                u64::MAX
            ))
        })?);
    }
    Ok(out)
}

fn required(value: Option<u64>, key: &str) -> Result<u64, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("query parameter {key:?} is required")))
}

/// `?index=I[&size=N]`: the size defaults to the latest checkpoint's.
pub(crate) async fn inclusion(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<InclusionProof>, ApiError> {
    let log = log(&state)?;
    let [index, size] = query_u64s(&uri, ["index", "size"])?;
    Ok(Json(log.inclusion_proof(required(index, "index")?, size)?))
}

/// `?first=M&second=N`.
pub(crate) async fn consistency(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let log = log(&state)?;
    let [first, second] = query_u64s(&uri, ["first", "second"])?;
    Ok(Json(log.consistency_proof(
        required(first, "first")?,
        required(second, "second")?,
    )?))
}

pub(crate) async fn record(
    State(state): State<AppState>,
    Path(index): Path<u64>,
) -> Result<Json<AuditRecord>, ApiError> {
    let payload = log(&state)?.read_payload(index)?;
    decode_payload(&payload)
        .map(Json)
        .map_err(|e| ApiError::internal("stored audit record is unreadable", &e))
}

/// The action a repository route performs, `None` for read-only routes.
fn admin_action(route: &str) -> Option<Action> {
    Some(match route.rsplit('/').next()? {
        "load" => Action::ModelLoad,
        "unload" => Action::ModelUnload,
        "promote" => Action::ModelPromote,
        "rollback" => Action::ModelRollback,
        "approve" => Action::ModelApprove,
        "runs" => Action::GauntletRun,
        "backend" => Action::ModelBackend,
        _ => return None,
    })
}

/// Records every repository call that changes state, and acknowledges it only after its
/// record is synced. With the audit log on, such a call needs a principal (401 without).
pub(crate) async fn audit_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(log) = state.audit().cloned() else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some(action) = route.as_deref().and_then(admin_action) else {
        return next.run(req).await;
    };
    let who = match caller(
        &state,
        req.headers(),
        req.extensions().get::<crate::security::Principal>(),
    )
    .and_then(require)
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let model = req
        .uri()
        .path()
        .strip_prefix("/v2/repository/models/")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned);
    let response = next.run(req).await;
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_ADMIN_RESPONSE)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
                .into_response();
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut event = AuditEvent::new(
        who,
        action,
        if status.is_success() {
            Outcome::Ok
        } else if status == StatusCode::FORBIDDEN || status == StatusCode::CONFLICT {
            Outcome::Refused
        } else {
            Outcome::Failed
        },
    );
    event.model = model;
    event.version = ["version", "live_version"]
        .iter()
        .find_map(|k| json.get(k).and_then(|v| v.as_str()).map(str::to_owned));
    if status.is_success() {
        event.detail = parts.extensions.get::<AuditDetail>().map(|d| d.0.clone());
    } else {
        event.detail = json
            .get("error")
            .and_then(|v| v.as_str())
            .map(|s| s.chars().take(256).collect());
    }
    match log.record_durable(event).await {
        Ok(_) => Response::from_parts(parts, Body::from(bytes)),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Queues the record of one answered inference request (not waited for: batched).
pub(crate) fn record_prediction(
    state: &AppState,
    headers: &HeaderMap,
    model: &Model,
    request_id: Option<&str>,
    rows: u64,
) -> Result<(), ApiError> {
    let Some(log) = state.audit() else {
        return Ok(());
    };
    let who = caller(state, headers, None)?.unwrap_or_else(|| ANONYMOUS.to_owned());
    let client = super::principal::id_header(headers, CLIENT_HEADER)?;
    let mut event = AuditEvent::new(who, Action::Prediction, Outcome::Ok);
    event.model = Some(model.name().to_owned());
    event.version = Some(model.version().to_owned());
    event.request_id = request_id.map(|s| s.chars().take(128).collect());
    event.client = client.map(|c| log.pseudonym(&c));
    event.detail = Some(format!("rows={rows}"));
    log.record(event).map_err(ApiError::from)
}
