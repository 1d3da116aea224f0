//! The trading extension (`gauntlet_trading`): the signal route, the kill switch and the
//! throttle release. Every intent, accepted or refused, is an audit record; every kill,
//! release and re-enable is made durable before it is acknowledged.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::{parse, read_body, require_json};
use super::error::ApiError;
use super::principal::{ANONYMOUS, Caller, caller, is_valid_id, require};
use crate::audit::{Action, AuditEvent, Outcome};
use crate::state::AppState;
use crate::trading::{
    AlgoStatus, Breach, Control, KillScope, KillState, OrderIntent, Overrides, TradingConfig,
    check_limits, derive,
};

/// Name of the extension in `GET /v2` metadata.
pub const TRADING_EXTENSION: &str = "gauntlet_trading";

/// `POST /v2/trading/signal` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignalRequest {
    /// Request id, echoed and audited.
    #[serde(default)]
    id: Option<String>,
    algo_id: String,
    trader_id: String,
    instrument: String,
    model: String,
    #[serde(default)]
    version: Option<String>,
    /// One row of features; `null` is missing.
    features: Vec<Option<f64>>,
    reference_price: f64,
    #[serde(default)]
    quantity: Option<u64>,
    #[serde(default)]
    limit_price: Option<f64>,
}

/// `POST /v2/trading/signal` answer.
#[derive(Debug, Serialize)]
pub(crate) struct SignalResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// `None` when the prediction is inside the dead band.
    intent: Option<OrderIntent>,
}

/// A refusal by a control: `{"error": …, "control": "price_collar"}`.
fn refusal(breach: &Breach) -> Response {
    let status = match breach.control {
        Control::KillSwitch => StatusCode::FORBIDDEN,
        Control::MessageRate | Control::Throttle | Control::AlgoLimit => {
            StatusCode::TOO_MANY_REQUESTS
        }
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (
        status,
        Json(serde_json::json!({
            "error": breach.to_string(),
            "control": breach.control.name(),
        })),
    )
        .into_response()
}

fn check_id(field: &str, value: &str) -> Result<(), ApiError> {
    if is_valid_id(value) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field}: must be 1 to 64 of [A-Za-z0-9_.@:-]"
        )))
    }
}

fn check_price(field: &str, value: f64) -> Result<(), ApiError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{field}: must be a finite price above 0, got {value}"
        )))
    }
}

pub(crate) async fn signal(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    let who = caller(&state, &headers, None)?.unwrap_or_else(|| ANONYMOUS.to_owned());
    let bytes = read_body(
        &headers,
        body,
        state.config().max_body_bytes,
        "max-body-bytes",
    )
    .await?;
    let req: SignalRequest = parse(&bytes)?;
    check_id("algo_id", &req.algo_id)?;
    check_id("trader_id", &req.trader_id)?;
    check_id("instrument", &req.instrument)?;
    check_price("reference_price", req.reference_price)?;
    if let Some(limit) = req.limit_price {
        check_price("limit_price", limit)?;
    }
    if req.quantity == Some(0) {
        return Err(ApiError::bad_request("quantity: must be at least 1"));
    }
    let config = &state.config().trading;
    let trading = state.trading();
    let mut event = AuditEvent::new(who, Action::OrderIntent, Outcome::Refused);
    event.model = Some(req.model.clone());
    event.request_id = req.id.clone();
    event.client = state.audit().map(|a| a.pseudonym(&req.trader_id));

    // Kill switch first: nothing else is looked at for a stopped algorithm or trader.
    if let Some(scope) = trading.kill.stops(&req.algo_id, &req.trader_id) {
        let breach = Breach {
            control: Control::KillSwitch,
            message: format!("the kill switch is engaged for {}", describe(&scope)),
        };
        return refuse(&state, event, &req.algo_id, &breach, false);
    }
    let now = Instant::now();
    if let Err(breach) = trading.algos.admit(config, &req.algo_id, now) {
        let counts = breach.control == Control::MessageRate;
        return refuse(&state, event, &req.algo_id, &breach, counts);
    }
    let versions = state
        .registry()
        .versions(&req.model)
        .ok_or_else(|| ApiError::unknown_model(&req.model))?;
    let model = match &req.version {
        Some(v) => versions
            .get(v)
            .cloned()
            .ok_or_else(|| super::infer::unknown_version(&req.model, v, &versions))?,
        None => versions.live.clone().ok_or_else(|| {
            ApiError::bad_request(format!("model {:?} has no live version", req.model))
        })?,
    };
    let clean = model.sanitise(&req.features)?;
    if clean.values.len() != model.n_features() {
        return Err(ApiError::bad_request(format!(
            "features: expected one row of {} values, got {}",
            model.n_features(),
            req.features.len()
        )));
    }
    let prediction = model.predict_batch(&clean.values)[0];
    if !prediction.is_finite() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the model produced a non-finite prediction for this input",
        ));
    }
    event.version = Some(model.version().to_owned());
    let overrides = Overrides {
        quantity: req.quantity,
        limit_price: req.limit_price,
    };
    let Some((side, quantity, limit_price)) =
        derive(config, prediction, req.reference_price, overrides)
    else {
        event.outcome = Outcome::Ok;
        event.detail = Some(format!(
            "algo={} no order: prediction {prediction} in the dead band",
            req.algo_id
        ));
        record(&state, event)?;
        return Ok(Json(SignalResponse {
            id: req.id,
            intent: None,
        })
        .into_response());
    };
    let intent = OrderIntent {
        algo_id: req.algo_id.clone(),
        instrument: req.instrument,
        side,
        quantity,
        limit_price,
        reference_price: req.reference_price,
        prediction,
        model: model.name().to_owned(),
        version: model.version().to_owned(),
    };
    if let Err(breach) = check_limits(config, &intent) {
        return refuse(&state, event, &req.algo_id, &breach, true);
    }
    event.outcome = Outcome::Ok;
    event.detail = Some(format!(
        "algo={} side={:?} quantity={} limit={} reference={}",
        intent.algo_id, intent.side, intent.quantity, intent.limit_price, intent.reference_price
    ));
    record(&state, event)?;
    Ok(Json(SignalResponse {
        id: req.id,
        intent: Some(intent),
    })
    .into_response())
}

/// Records the refusal, counts it towards the throttle when it is a breach, and answers it.
fn refuse(
    state: &AppState,
    mut event: AuditEvent,
    algo: &str,
    breach: &Breach,
    counts: bool,
) -> Result<Response, ApiError> {
    let config = &state.config().trading;
    let tripped = counts
        && state
            .trading()
            .algos
            .record_breach(config, algo, Instant::now());
    event.detail = Some(format!(
        "algo={algo} control={}{}",
        breach.control.name(),
        if tripped { " throttle=tripped" } else { "" }
    ));
    record(state, event)?;
    if tripped {
        tracing::warn!(
            algo,
            control = breach.control.name(),
            "algorithm throttled after repeated breaches"
        );
    }
    Ok(refusal(breach))
}

fn record(state: &AppState, event: AuditEvent) -> Result<(), ApiError> {
    match state.audit() {
        Some(log) => log.record(event).map_err(ApiError::from),
        None => Ok(()),
    }
}

fn describe(scope: &KillScope) -> String {
    match scope {
        KillScope::All => "all intents".to_owned(),
        KillScope::Algo(a) => format!("algorithm {a:?}"),
        KillScope::Trader(_) => "this trader".to_owned(),
    }
}

/// The principal, if it is one of `risk-principals`: 401 without one, 403 (audited) for
/// another.
async fn authorise(
    state: &AppState,
    who: Option<String>,
    action: Action,
    detail: &str,
) -> Result<String, ApiError> {
    let who = require(who)?;
    if state.config().trading.risk_principals.contains(&who) {
        return Ok(who);
    }
    if let Some(log) = state.audit() {
        let mut e = AuditEvent::new(who.clone(), action, Outcome::Refused);
        e.detail = Some(format!("{detail}: not a risk principal"));
        log.record_durable(e).await?;
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("principal {who:?} is not one of trading.risk-principals"),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KillRequest {
    scope: KillScope,
}

#[derive(Debug, Serialize)]
pub(crate) struct KillResponse {
    /// False when the scope was already in the asked state.
    changed: bool,
    state: KillState,
}

fn scope_detail(scope: &KillScope, state: &AppState) -> String {
    match scope {
        KillScope::All => "scope=all".to_owned(),
        KillScope::Algo(a) => format!("scope=algo:{a}"),
        // A trader is a person: pseudonymised like every client id.
        KillScope::Trader(t) => format!(
            "scope=trader:{}",
            state
                .audit()
                .map_or_else(|| "-".to_owned(), |l| l.pseudonym(t))
        ),
    }
}

async fn kill_request(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<KillScope, ApiError> {
    require_json(headers)?;
    let bytes = read_body(headers, body, limit, "max-body-bytes").await?;
    let req: KillRequest = parse(&bytes)?;
    if let KillScope::Algo(id) | KillScope::Trader(id) = &req.scope {
        check_id("scope", id)?;
    }
    Ok(req.scope)
}

pub(crate) async fn kill_engage(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<KillResponse>, ApiError> {
    let scope = kill_request(&headers, body, state.config().max_body_bytes).await?;
    let detail = scope_detail(&scope, &state);
    let who = authorise(&state, caller, Action::KillEngage, &detail).await?;
    // Engaged before it is recorded: stopping must not wait on the disk.
    let changed = state.trading().kill.engage(&scope);
    if let Some(log) = state.audit() {
        let mut e = AuditEvent::new(who, Action::KillEngage, Outcome::Ok);
        e.detail = Some(detail);
        log.record_durable(e).await?;
    }
    tracing::warn!(scope = ?scope_kind(&scope), "kill switch engaged");
    Ok(Json(KillResponse {
        changed,
        state: state.trading().kill.state(),
    }))
}

pub(crate) async fn kill_release(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<KillResponse>, ApiError> {
    let scope = kill_request(&headers, body, state.config().max_body_bytes).await?;
    let detail = scope_detail(&scope, &state);
    let who = authorise(&state, caller, Action::KillRelease, &detail).await?;
    // Recorded before it takes effect: no release without its record.
    if let Some(log) = state.audit() {
        let mut e = AuditEvent::new(who, Action::KillRelease, Outcome::Ok);
        e.detail = Some(detail);
        log.record_durable(e).await?;
    }
    let changed = state.trading().kill.release(&scope);
    Ok(Json(KillResponse {
        changed,
        state: state.trading().kill.state(),
    }))
}

fn scope_kind(scope: &KillScope) -> &'static str {
    match scope {
        KillScope::All => "all",
        KillScope::Algo(_) => "algo",
        KillScope::Trader(_) => "trader",
    }
}

pub(crate) async fn kill_state(State(state): State<AppState>) -> Json<KillState> {
    let mut s = state.trading().kill.state();
    // Trader ids are personal data: the state lists how many, not who.
    if let Some(log) = state.audit() {
        s.traders = s.traders.iter().map(|t| log.pseudonym(t)).collect();
    }
    Json(s)
}

/// `POST /v2/trading/algos/{algo}/enable`: lifts a throttle.
pub(crate) async fn enable_algo(
    State(state): State<AppState>,
    Path(algo): Path<String>,
    Caller(caller): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_id("algo", &algo)?;
    let detail = format!("algo={algo}");
    let who = authorise(&state, caller, Action::ThrottleRelease, &detail).await?;
    if let Some(log) = state.audit() {
        let mut e = AuditEvent::new(who, Action::ThrottleRelease, Outcome::Ok);
        e.detail = Some(detail);
        log.record_durable(e).await?;
    }
    let was_throttled = state.trading().algos.enable(&algo);
    Ok(Json(
        serde_json::json!({ "algo_id": algo, "was_throttled": was_throttled }),
    ))
}

#[derive(Debug, Serialize)]
pub(crate) struct ControlsResponse {
    limits: TradingConfig,
    algos: Vec<AlgoStatus>,
}

/// `GET /v2/trading/controls`: the limits in force and the throttled algorithms.
pub(crate) async fn controls(State(state): State<AppState>) -> Json<ControlsResponse> {
    Json(ControlsResponse {
        limits: state.config().trading.clone(),
        algos: state.trading().algos.status(),
    })
}
