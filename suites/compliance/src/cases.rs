//! The compliance cases. Each skips, with the reason, when the target does not advertise the
//! extension it needs; each touches only the models, algorithms and traders it names after
//! its seed, so they run concurrently against one engine (kill switches are scoped to the
//! case's algorithm, never `all`). Each checks the target's audited twin when the harness
//! can make one (the in-process engine: [`subject`]).

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use gauntlet_engine::artifact::{
    ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION, FeatureSpec, ImputePolicy, ModelArtifact, ModelParams,
};
use gauntlet_engine::audit::{now_micros, rfc3339_micros};
use gauntlet_engine::http::CLIENT_HEADER;
use gauntlet_harness::{CaseCtx, CaseError, CaseOutcome, Target, ensure, ensure_eq};

use crate::support::{
    AUDIT_EXTENSION, FOUR_EYES_EXTENSION, RISK_PRINCIPAL, TRADING_EXTENSION, call, excerpt,
    expect_status, extensions, require_extensions, scratch, subject,
};

/// Longest time from the kill call to the first refused intent (RTS 6 Art. 12: "immediately").
pub const KILL_BOUND: Duration = Duration::from_millis(500);
/// How far back from the newest record the cases look for the records they caused.
const SCAN_BACK: u64 = 5_000;
/// Instrument of every case signal.
const INSTRUMENT: &str = "CMP-TEST";

/// A one-feature linear model predicting `intercept` (positive: buy), version `1`.
fn signal_model(name: &str, intercept: f64) -> ModelArtifact {
    ModelArtifact {
        format: ARTIFACT_FORMAT.to_owned(),
        format_version: ARTIFACT_FORMAT_VERSION,
        name: name.to_owned(),
        version: "1".to_owned(),
        features: vec![FeatureSpec {
            name: "x".to_owned(),
            median: 0.0,
            mad: 1.0,
            min: -10.0,
            max: 10.0,
        }],
        impute: ImputePolicy::Median,
        clip_mads: None,
        model: ModelParams::Linear {
            intercept,
            weights: vec![0.0],
        },
    }
}

/// Stages `artifact` as `principal` (a load with the artifact in the body).
async fn stage(target: &dyn Target, artifact: &ModelArtifact, principal: &str) -> CaseOutcome {
    let path = format!("/v2/repository/models/{}/load", artifact.name);
    let body = json!({"parameters": {"artifact": artifact}});
    let reply = call(target, Method::POST, &path, Some(principal), Some(&body)).await?;
    expect_status(&reply, 200, &format!("POST {path} as {principal}"))?;
    Ok(())
}

/// Unloads a scratch model, best effort.
async fn unload(target: &dyn Target, name: &str, principal: &str) {
    let path = format!("/v2/repository/models/{name}/unload");
    let _ = call(target, Method::POST, &path, Some(principal), None).await;
}

/// A signal for the staged version `1` of `model`.
fn signal(
    model: &str,
    algo: &str,
    trader: &str,
    reference: f64,
    quantity: u64,
    limit: f64,
) -> Value {
    let mut body = derived_signal(model, algo, trader, reference, 0.0);
    body["quantity"] = json!(quantity);
    body["limit_price"] = json!(limit);
    body
}

/// Sends a signal; returns the status and body.
async fn send_signal(target: &dyn Target, body: &Value) -> Result<(u16, Value), CaseError> {
    let reply = call(
        target,
        Method::POST,
        "/v2/trading/signal",
        Some("cmp-trader-desk"),
        Some(body),
    )
    .await?;
    Ok((reply.status.as_u16(), reply.json().unwrap_or(Value::Null)))
}

/// Fails unless the reply is a refusal by `control` with `status`.
fn expect_refusal(
    status: u16,
    body: &Value,
    expected_status: u16,
    control: &str,
    what: &str,
) -> CaseOutcome {
    ensure!(
        status == expected_status && body["control"] == control,
        "{what}: expected {expected_status} refused by control {control:?}, got {status} {}",
        excerpt(&body.to_string())
    );
    Ok(())
}

/// Signs a checkpoint as `principal`; returns its size.
async fn checkpoint(target: &dyn Target, principal: &str) -> Result<Value, CaseError> {
    let reply = call(
        target,
        Method::POST,
        "/v2/audit/checkpoint",
        Some(principal),
        None,
    )
    .await?;
    expect_status(&reply, 200, "POST /v2/audit/checkpoint")
}

/// The newest records (at most [`SCAN_BACK`]) under a fresh checkpoint, newest first.
async fn recent_records(target: &dyn Target, principal: &str) -> Result<Vec<Value>, CaseError> {
    let cp = checkpoint(target, principal).await?;
    let size = cp["size"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    for index in (size.saturating_sub(SCAN_BACK)..size).rev() {
        let path = format!("/v2/audit/records/{index}");
        let reply = call(target, Method::GET, &path, None, None).await?;
        if reply.status.as_u16() == 410 {
            break;
        }
        out.push(expect_status(&reply, 200, &format!("GET {path}"))?);
    }
    Ok(out)
}

/// The first of `records` with `action` (and `outcome`) whose detail contains `needle`.
fn find<'a>(records: &'a [Value], action: &str, outcome: &str, needle: &str) -> Option<&'a Value> {
    records.iter().find(|r| {
        r["action"] == action
            && r["outcome"] == outcome
            && r["detail"].as_str().is_some_and(|d| d.contains(needle))
    })
}

/// CMP-KILL (RTS 6 Art. 12): the kill switch, engaged for an algorithm by a risk principal,
/// refuses every following intent of it within [`KILL_BOUND`]; another principal may not
/// release it; the engagement is an audit record (when the target has the audit log). A
/// trader's kill stops that trader's other algorithms, and lifting it leaves the algorithm's
/// own kill engaged.
pub(crate) async fn kill_switch_stops_every_intent(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[TRADING_EXTENSION]).await?;
    let audited = extensions(target)
        .await?
        .iter()
        .any(|e| e == AUDIT_EXTENSION);
    let (model, algo, trader) = (
        scratch("cmp-kill", ctx.seed),
        scratch("algo-kill", ctx.seed),
        scratch("trader-kill", ctx.seed),
    );
    stage(target, &signal_model(&model, 1.0), "cmp-loader").await?;
    let outcome = kill_switch_body(target, &model, &algo, &trader, audited).await;
    unload(target, &model, "cmp-loader").await;
    outcome
}

async fn kill_switch_body(
    target: &dyn Target,
    model: &str,
    algo: &str,
    trader: &str,
    audited: bool,
) -> CaseOutcome {
    let order = signal(model, algo, trader, 100.0, 10, 100.0);
    let (status, body) = send_signal(target, &order).await?;
    ensure!(
        status == 200 && body["intent"].is_object(),
        "a signal before the kill: expected 200 with an intent, got {status} {}",
        excerpt(&body.to_string())
    );
    let scope = json!({"scope": {"algo": algo}});
    // Only a risk principal may engage it.
    let reply = call(
        target,
        Method::POST,
        "/v2/trading/kill",
        Some("cmp-intern"),
        Some(&scope),
    )
    .await?;
    expect_status(
        &reply,
        403,
        "POST /v2/trading/kill as a principal outside trading.risk-principals",
    )?;
    let started = Instant::now();
    let reply = call(
        target,
        Method::POST,
        "/v2/trading/kill",
        Some(RISK_PRINCIPAL),
        Some(&scope),
    )
    .await?;
    expect_status(
        &reply,
        200,
        &format!("POST /v2/trading/kill as {RISK_PRINCIPAL}"),
    )?;
    let mut first_refusal = None;
    for n in 0..20 {
        let (status, body) = send_signal(target, &order).await?;
        first_refusal.get_or_insert_with(|| started.elapsed());
        expect_refusal(
            status,
            &body,
            403,
            "kill_switch",
            &format!("signal {n} after the kill switch was engaged"),
        )?;
    }
    let took = first_refusal.unwrap_or_default();
    ensure!(
        took <= KILL_BOUND,
        "first refused intent {:.1} ms after the kill call, over the bound of {} ms",
        took.as_secs_f64() * 1e3,
        KILL_BOUND.as_millis()
    );
    // An intent of another algorithm still passes: the scope is the algorithm.
    let other = signal(model, &format!("{algo}-b"), trader, 100.0, 10, 100.0);
    let (status, body) = send_signal(target, &other).await?;
    ensure!(
        status == 200,
        "a signal of another algorithm while {algo} is killed: expected 200, got {status} {}",
        excerpt(&body.to_string())
    );
    let reply = call(
        target,
        Method::POST,
        "/v2/trading/kill/release",
        Some("cmp-intern"),
        Some(&scope),
    )
    .await?;
    expect_status(
        &reply,
        403,
        "POST /v2/trading/kill/release as a principal outside trading.risk-principals",
    )?;
    let (status, body) = send_signal(target, &order).await?;
    expect_refusal(
        status,
        &body,
        403,
        "kill_switch",
        "a signal after a refused release",
    )?;
    if audited {
        let records = recent_records(target, "cmp-auditor").await?;
        ensure!(
            find(&records, "kill_engage", "ok", &format!("scope=algo:{algo}"))
                .is_some_and(|r| r["principal"] == RISK_PRINCIPAL),
            "no audit record kill_engage by {RISK_PRINCIPAL} with scope=algo:{algo} among the newest {} records",
            records.len()
        );
        ensure!(
            find(
                &records,
                "kill_release",
                "refused",
                &format!("scope=algo:{algo}")
            )
            .is_some(),
            "no audit record of the refused release by cmp-intern (scope=algo:{algo})"
        );
    }
    // Scopes stand apart: the trader's kill stops the trader's other algorithm too, and
    // lifting it leaves the algorithm's kill engaged.
    let trader_scope = json!({"scope": {"trader": trader}});
    for (path, what) in [
        ("/v2/trading/kill", "engage"),
        ("/v2/trading/kill/release", "release"),
    ] {
        let reply = call(
            target,
            Method::POST,
            path,
            Some(RISK_PRINCIPAL),
            Some(&trader_scope),
        )
        .await?;
        expect_status(
            &reply,
            200,
            &format!("POST {path} as {RISK_PRINCIPAL} ({what} trader {trader})"),
        )?;
        if what == "engage" {
            let (status, body) = send_signal(target, &other).await?;
            expect_refusal(
                status,
                &body,
                403,
                "kill_switch",
                &format!("a signal of {algo}-b while its trader {trader} is killed"),
            )?;
        }
    }
    let (status, body) = send_signal(target, &order).await?;
    expect_refusal(
        status,
        &body,
        403,
        "kill_switch",
        &format!(
            "a signal of {algo} after trader {trader}'s kill was lifted, its own still engaged"
        ),
    )?;
    let reply = call(
        target,
        Method::POST,
        "/v2/trading/kill/release",
        Some(RISK_PRINCIPAL),
        Some(&scope),
    )
    .await?;
    expect_status(
        &reply,
        200,
        &format!("POST /v2/trading/kill/release as {RISK_PRINCIPAL}"),
    )?;
    let (status, body) = send_signal(target, &order).await?;
    ensure!(
        status == 200,
        "a signal after the release: expected 200, got {status} {}",
        excerpt(&body.to_string())
    );
    Ok(())
}

/// CMP-PRETRADE (RTS 6 Art. 15): a limit or reference price of 0 is refused as bad input (400
/// naming the field) before any control prices it; a limit on the price collar passes and one
/// tick beyond it is refused by `price_collar`; `max_order_volume` and `max_order_value`
/// refuse one unit over; repeated breaches throttle the algorithm until a risk principal re-enables it; a burst over
/// the message limit is refused by `message_rate`, its refusals throttle the algorithm too, and
/// once re-enabled it is admitted again after a pause that refills the limit.
pub(crate) async fn pretrade_controls_name_the_control(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[TRADING_EXTENSION]).await?;
    let model = scratch("cmp-pretrade", ctx.seed);
    stage(target, &signal_model(&model, 1.0), "cmp-loader").await?;
    let outcome = pretrade_body(target, &model, ctx.seed).await;
    unload(target, &model, "cmp-loader").await;
    outcome
}

/// CMP-PRETRADE: a signal that names neither quantity nor limit gets them from the prediction
/// and the configured sizing: quantity `round(|prediction| × quantity-scale)` (at least 1), limit
/// the reference moved `limit-offset-bps` towards the aggressive side, then rounded to the tick
/// towards the passive side (down for a buy, up for a sell); a prediction inside the dead band
/// gives no intent. Both sides are priced half a tick from the grid, where the two roundings
/// differ, and on the grid, where neither may move the limit.
pub(crate) async fn derived_orders_round_to_the_passive_tick(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[TRADING_EXTENSION]).await?;
    let model = scratch("cmp-derive", ctx.seed);
    stage(target, &feature_model(&model), "cmp-loader").await?;
    let outcome = derived_body(target, &model, ctx.seed).await;
    unload(target, &model, "cmp-loader").await;
    outcome
}

/// A one-feature linear model predicting its feature, version `1`.
fn feature_model(name: &str) -> ModelArtifact {
    let mut artifact = signal_model(name, 0.0);
    artifact.model = ModelParams::Linear {
        intercept: 0.0,
        weights: vec![1.0],
    };
    artifact
}

/// The trading limits in force, as `GET /v2/trading/controls` lists them.
struct Limits(Value);

impl Limits {
    async fn read(target: &dyn Target) -> Result<Limits, CaseError> {
        let reply = call(target, Method::GET, "/v2/trading/controls", None, None).await?;
        let controls = expect_status(&reply, 200, "GET /v2/trading/controls")?;
        Ok(Limits(controls["limits"].clone()))
    }

    /// The limit `key` (kebab-case), which must be a number.
    fn number(&self, key: &str) -> Result<f64, CaseError> {
        self.0[key].as_f64().ok_or_else(|| {
            CaseError::Fail(format!(
                "GET /v2/trading/controls: limits.{key} is not a number: {}",
                excerpt(&self.0.to_string())
            ))
        })
    }
}

/// A signal for version `1` of `model` with one feature and no quantity or limit.
fn derived_signal(model: &str, algo: &str, trader: &str, reference: f64, feature: f64) -> Value {
    json!({
        "algo_id": algo, "trader_id": trader, "instrument": INSTRUMENT,
        "model": model, "version": "1", "features": [feature], "reference_price": reference,
    })
}

async fn derived_body(target: &dyn Target, model: &str, seed: u64) -> CaseOutcome {
    let limits = Limits::read(target).await?;
    let number = |key: &str| limits.number(key);
    let (tick, collar_bps, max_value, scale, dead_band, offset_bps) = (
        number("tick-size")?,
        number("price-collar-bps")?,
        number("max-order-value")?,
        number("quantity-scale")?,
        number("dead-band")?,
        number("limit-offset-bps")?,
    );
    let max_quantity = number("max-order-quantity")?;
    if offset_bps > collar_bps {
        return Err(CaseError::Skip(format!(
            "limit-offset-bps {offset_bps} is beyond price-collar-bps {collar_bps}: every derived limit is refused by the collar"
        )));
    }
    // A prediction outside the dead band that sizes 2 units (2.4 × scale rounds to 2), or
    // more where the dead band is wider.
    let prediction = (2.4 / scale).max(2.0 * dead_band);
    let quantity = (prediction * scale).round().max(1.0);
    ensure!(
        quantity <= max_quantity,
        "the configured sizing cannot be tested: a prediction of {prediction} (twice the dead band) sizes {quantity} units, over max-order-quantity {max_quantity}"
    );
    // About 100, or less where the value limit needs it, in whole ticks.
    let ticks = ((max_value / quantity / 4.0).min(100.0) / tick)
        .floor()
        .max(1.0);
    let (algo, trader) = (scratch("algo-derive", seed), scratch("trader-derive", seed));
    for (side, sign) in [("buy", 1.0), ("sell", -1.0)] {
        // Half a tick above `ticks` ticks, where the passive rounding differs from the
        // aggressive one; then on the grid, where it must not round at all (the division by
        // the tick lands a hair either side of the whole number).
        let passive = if sign > 0.0 { 0.0 } else { 1.0 };
        for (raw_ticks, expected_ticks) in [(ticks + 0.5, ticks + passive), (ticks, ticks)] {
            let reference = raw_ticks * tick / (1.0 + sign * offset_bps / 10_000.0);
            let expected = expected_ticks * tick;
            let body = derived_signal(model, &algo, &trader, reference, sign * prediction);
            let (status, reply) = send_signal(target, &body).await?;
            ensure!(
                status == 200,
                "a {side} signal without quantity or limit (prediction {}, reference {reference}): expected 200, got {status} {}",
                sign * prediction,
                excerpt(&reply.to_string())
            );
            let intent = &reply["intent"];
            let served = intent["limit_price"].as_f64().unwrap_or(f64::NAN);
            ensure!(
                intent["side"] == side
                    && intent["quantity"].as_f64() == Some(quantity)
                    && (served - expected).abs() < tick / 4.0,
                "a {side} signal, prediction {}, reference {reference}, quantity-scale {scale}, limit-offset-bps {offset_bps}, tick {tick}: expected side {side}, quantity {quantity}, limit {expected} (the raw limit {} rounded towards the passive side); got {}",
                sign * prediction,
                reference * (1.0 + sign * offset_bps / 10_000.0),
                excerpt(&intent.to_string())
            );
        }
    }
    let body = derived_signal(model, &algo, &trader, ticks * tick, 0.0);
    let (status, reply) = send_signal(target, &body).await?;
    ensure!(
        status == 200 && reply["intent"].is_null(),
        "a prediction of 0 (inside dead band {dead_band}): expected 200 and no intent, got {status} {}",
        excerpt(&reply.to_string())
    );
    Ok(())
}

async fn pretrade_body(target: &dyn Target, model: &str, seed: u64) -> CaseOutcome {
    let limits = Limits::read(target).await?;
    let number = |key: &str| limits.number(key);
    let (tick, collar_bps, max_value) = (
        number("tick-size")?,
        number("price-collar-bps")?,
        number("max-order-value")?,
    );
    let max_quantity = number("max-order-quantity")? as u64;
    let breaches = number("throttle-after-breaches")? as u32;
    let rate = number("max-messages-per-second")? as u64;
    // A reference price where one unit over the value limit is still within the volume limit.
    let reference = ((2.0 * max_value / max_quantity as f64) / tick)
        .round()
        .max(1.0)
        * tick;
    let collar_ticks = (reference * collar_bps / 10_000.0 / tick + 1e-9).floor();
    let on_collar = reference + collar_ticks * tick;
    let beyond = on_collar + tick;
    let (algo, trader) = (scratch("algo-pre", seed), scratch("trader-pre", seed));

    // A price of 0 is no price: refused as input, not judged by the collar (where it would
    // count as a breach towards the throttle).
    for (field, order) in [
        (
            "limit_price",
            signal(model, &algo, &trader, reference, 1, 0.0),
        ),
        (
            "reference_price",
            signal(model, &algo, &trader, 0.0, 1, on_collar),
        ),
    ] {
        let (status, body) = send_signal(target, &order).await?;
        ensure!(
            status == 400 && body["error"].as_str().is_some_and(|e| e.contains(field)),
            "a {field} of 0: expected 400 naming {field}, got {status} {}",
            excerpt(&body.to_string())
        );
    }
    let (status, body) = send_signal(
        target,
        &signal(model, &algo, &trader, reference, 1, on_collar),
    )
    .await?;
    ensure!(
        status == 200,
        "a limit exactly on the collar ({on_collar}, {collar_ticks} ticks from {reference}) must pass: got {status} {}",
        excerpt(&body.to_string())
    );
    let served = body["intent"]["limit_price"].as_f64().unwrap_or(f64::NAN);
    ensure!(
        (served - on_collar).abs() < tick / 2.0,
        "the intent's limit: expected {on_collar}, got {served}"
    );
    let mut refused = 0;
    let (status, body) =
        send_signal(target, &signal(model, &algo, &trader, reference, 1, beyond)).await?;
    expect_refusal(
        status,
        &body,
        422,
        "price_collar",
        &format!("a limit one tick beyond the collar ({beyond})"),
    )?;
    refused += 1;
    if refused < breaches {
        let (status, body) = send_signal(
            target,
            &signal(
                model,
                &algo,
                &trader,
                reference,
                max_quantity + 1,
                reference,
            ),
        )
        .await?;
        expect_refusal(
            status,
            &body,
            422,
            "max_order_volume",
            &format!(
                "quantity {} over max-order-quantity {max_quantity}",
                max_quantity + 1
            ),
        )?;
        refused += 1;
    }
    let over_value = (max_value / reference).floor() as u64 + 1;
    if refused < breaches && over_value <= max_quantity {
        let (status, body) = send_signal(
            target,
            &signal(model, &algo, &trader, reference, over_value, reference),
        )
        .await?;
        expect_refusal(
            status,
            &body,
            422,
            "max_order_value",
            &format!("quantity {over_value} at {reference} over max-order-value {max_value}"),
        )?;
        refused += 1;
    }
    while refused < breaches {
        let (status, body) =
            send_signal(target, &signal(model, &algo, &trader, reference, 1, beyond)).await?;
        expect_refusal(
            status,
            &body,
            422,
            "price_collar",
            "a further collar breach",
        )?;
        refused += 1;
    }
    // Tripped: even a good order is refused until a risk principal re-enables the algorithm.
    let good = signal(model, &algo, &trader, reference, 1, reference);
    let (status, body) = send_signal(target, &good).await?;
    expect_refusal(
        status,
        &body,
        429,
        "throttle",
        &format!("a good order after {breaches} breaches"),
    )?;
    let enable = format!("/v2/trading/algos/{algo}/enable");
    let reply = call(target, Method::POST, &enable, Some("cmp-intern"), None).await?;
    expect_status(
        &reply,
        403,
        &format!("POST {enable} as a principal outside trading.risk-principals"),
    )?;
    let (status, body) = send_signal(target, &good).await?;
    expect_refusal(
        status,
        &body,
        429,
        "throttle",
        "a good order after a refused re-enable",
    )?;
    let reply = call(target, Method::POST, &enable, Some(RISK_PRINCIPAL), None).await?;
    expect_status(&reply, 200, &format!("POST {enable} as {RISK_PRINCIPAL}"))?;
    let (status, body) = send_signal(target, &good).await?;
    ensure!(
        status == 200,
        "a good order after the re-enable: expected 200, got {status} {}",
        excerpt(&body.to_string())
    );
    // The message limit, on an algorithm of its own: a burst of three seconds' worth at once.
    let burst_algo = scratch("algo-burst", seed);
    let burst = signal(model, &burst_algo, &trader, reference, 1, reference);
    let sent = 3 * rate + 10;
    let started = Instant::now();
    let replies = futures::future::join_all((0..sent).map(|_| send_signal(target, &burst))).await;
    let took = started.elapsed();
    let mut limited = 0;
    for reply in replies {
        let (status, body) = reply?;
        if status == 429 && body["control"] == "message_rate" {
            limited += 1;
        }
    }
    if limited == 0 {
        // A bucket of `rate` refilled at `rate`/s admits everything sent slower than this.
        let admissible = Duration::from_secs_f64((sent - rate) as f64 / rate as f64);
        if took >= admissible {
            return Err(CaseError::Error(format!(
                "{sent} signals took {:.2} s to send, too slow to exceed max-messages-per-second {rate}: no verdict on message_rate",
                took.as_secs_f64()
            )));
        }
        return Err(CaseError::Fail(format!(
            "{sent} signals of one algorithm within {:.2} s: none refused by message_rate (max-messages-per-second {rate})",
            took.as_secs_f64()
        )));
    }
    // The burst's refusals count as breaches: they throttled the algorithm, and a risk
    // principal lifts the throttle. Then the bucket refills at the rate: three messages'
    // worth of quiet admits one again.
    let enable = format!("/v2/trading/algos/{burst_algo}/enable");
    let reply = call(target, Method::POST, &enable, Some(RISK_PRINCIPAL), None).await?;
    let lifted = expect_status(&reply, 200, &format!("POST {enable} as {RISK_PRINCIPAL}"))?;
    ensure!(
        limited < breaches || lifted["was_throttled"] == true,
        "{limited} signals refused by message_rate did not throttle {burst_algo} \
         (throttle-after-breaches {breaches}): POST {enable} answered {}",
        excerpt(&lifted.to_string())
    );
    let quiet = Duration::from_secs_f64(3.0 / rate as f64);
    tokio::time::sleep(quiet).await;
    let (status, body) = send_signal(target, &burst).await?;
    ensure!(
        status == 200,
        "a signal {:.0} ms after the burst (max-messages-per-second {rate} refills 3 in that \
         time): expected 200, got {status} {}",
        quiet.as_secs_f64() * 1e3,
        excerpt(&body.to_string())
    );
    Ok(())
}

/// The staged review of `model`: its digest.
async fn staged_digest(target: &dyn Target, model: &str) -> Result<String, CaseError> {
    let path = format!("/v2/repository/models/{model}/review");
    let reply = call(target, Method::GET, &path, Some("cmp-auditor"), None).await?;
    let review = expect_status(&reply, 200, &format!("GET {path}"))?;
    review["digest"].as_str().map(str::to_owned).ok_or_else(|| {
        CaseError::Fail(format!(
            "GET {path}: no digest in {}",
            excerpt(&review.to_string())
        ))
    })
}

/// CMP-4EYES (SOX-style change control): the principal who loaded a model may not approve
/// it; another may, and both attempts are audit records.
pub(crate) async fn self_approval_is_refused(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[FOUR_EYES_EXTENSION]).await?;
    let model = scratch("cmp-4eyes", ctx.seed);
    stage(target, &signal_model(&model, 0.5), "cmp-alice").await?;
    let outcome = self_approval_body(target, &model).await;
    unload(target, &model, "cmp-alice").await;
    outcome
}

async fn self_approval_body(target: &dyn Target, model: &str) -> CaseOutcome {
    let digest = staged_digest(target, model).await?;
    let path = format!("/v2/repository/models/{model}/approve");
    let body = json!({ "digest": digest });
    let reply = call(target, Method::POST, &path, Some("cmp-alice"), Some(&body)).await?;
    let refusal = reply.json::<Value>().unwrap_or(Value::Null);
    expect_refusal(
        reply.status.as_u16(),
        &refusal,
        403,
        "four_eyes",
        &format!("POST {path} by cmp-alice, who loaded it"),
    )?;
    let reply = call(target, Method::POST, &path, Some("cmp-bob"), Some(&body)).await?;
    let review = expect_status(&reply, 200, &format!("POST {path} by cmp-bob"))?;
    ensure_eq!(
        review["approved_by"].as_str(),
        Some("cmp-bob"),
        "approved_by after cmp-bob's approval"
    );
    if extensions(target)
        .await?
        .iter()
        .any(|e| e == AUDIT_EXTENSION)
    {
        let records = recent_records(target, "cmp-auditor").await?;
        let of_model = |outcome: &str, who: &str| {
            records.iter().any(|r| {
                r["action"] == "model_approve"
                    && r["outcome"] == outcome
                    && r["principal"] == who
                    && r["model"] == model
            })
        };
        ensure!(
            of_model("refused", "cmp-alice"),
            "no audit record of cmp-alice's refused approval of {model}"
        );
        ensure!(
            of_model("ok", "cmp-bob"),
            "no audit record of cmp-bob's approval of {model}"
        );
    }
    Ok(())
}

/// CMP-TEST, CMP-4EYES (RTS 6 Art. 5–7): an approved model is not promoted without a passing
/// Gauntlet run recorded for its exact digest; with one it is, and the promotion's audit
/// record names the digest.
pub(crate) async fn promotion_needs_a_passing_run(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[FOUR_EYES_EXTENSION]).await?;
    let model = scratch("cmp-tested", ctx.seed);
    stage(target, &signal_model(&model, 0.25), "cmp-alice").await?;
    let outcome = promotion_body(target, &model).await;
    unload(target, &model, "cmp-alice").await;
    outcome
}

async fn promotion_body(target: &dyn Target, model: &str) -> CaseOutcome {
    let digest = staged_digest(target, model).await?;
    let base = format!("/v2/repository/models/{model}");
    let reply = call(
        target,
        Method::POST,
        &format!("{base}/approve"),
        Some("cmp-bob"),
        Some(&json!({ "digest": digest })),
    )
    .await?;
    expect_status(&reply, 200, &format!("POST {base}/approve by cmp-bob"))?;
    let promote = |who: &'static str| {
        let path = format!("{base}/promote");
        async move { call(target, Method::POST, &path, Some(who), None).await }
    };
    let reply = promote("cmp-bob").await?;
    let body = reply.json::<Value>().unwrap_or(Value::Null);
    expect_refusal(
        reply.status.as_u16(),
        &body,
        403,
        "tested_before_live",
        "promotion with no Gauntlet run recorded",
    )?;
    let run = |passed: bool| json!({"run_id": format!("cmp-run-{passed}"), "digest": digest, "passed": passed});
    // A run record with an unknown field of 2 KiB: refused whole, as any malformed call. Its
    // error quotes the field, so the answer is larger than any successful admin answer: the
    // audit layer, which reads every admin answer before it is sent, must pass it on intact.
    let mut malformed = run(true);
    let unknown = format!("cmp-{}", "u".repeat(2048));
    malformed[&unknown] = json!(true);
    let reply = call(
        target,
        Method::POST,
        &format!("{base}/runs"),
        Some("cmp-ci"),
        Some(&malformed),
    )
    .await?;
    let body = reply.json::<Value>().unwrap_or(Value::Null);
    ensure_eq!(
        reply.status.as_u16(),
        400,
        "status of POST {base}/runs with an unknown field of 2 KiB"
    );
    ensure!(
        body["error"].as_str().is_some_and(|e| e.contains(&unknown)),
        "POST {base}/runs with an unknown field of 2 KiB: the error does not name the field: {}",
        reply.text().chars().take(160).collect::<String>()
    );
    let reply = call(
        target,
        Method::POST,
        &format!("{base}/runs"),
        Some("cmp-ci"),
        Some(&run(false)),
    )
    .await?;
    expect_status(&reply, 200, &format!("POST {base}/runs (failing run)"))?;
    let reply = promote("cmp-bob").await?;
    let body = reply.json::<Value>().unwrap_or(Value::Null);
    expect_refusal(
        reply.status.as_u16(),
        &body,
        403,
        "tested_before_live",
        "promotion after a failing run",
    )?;
    let mut other = run(true);
    other["digest"] = json!(format!("sha256:{}", "0".repeat(64)));
    let reply = call(
        target,
        Method::POST,
        &format!("{base}/runs"),
        Some("cmp-ci"),
        Some(&other),
    )
    .await?;
    let body = reply.json::<Value>().unwrap_or(Value::Null);
    expect_refusal(
        reply.status.as_u16(),
        &body,
        409,
        "artifact_digest",
        "a passing run of another artifact",
    )?;
    let reply = call(
        target,
        Method::POST,
        &format!("{base}/runs"),
        Some("cmp-ci"),
        Some(&run(true)),
    )
    .await?;
    expect_status(&reply, 200, &format!("POST {base}/runs (passing run)"))?;
    let reply = promote("cmp-bob").await?;
    let promoted = expect_status(
        &reply,
        200,
        &format!("POST {base}/promote after a passing run"),
    )?;
    ensure_eq!(
        promoted["live_version"].as_str(),
        Some("1"),
        "live_version after the promotion"
    );
    ensure_eq!(
        promoted["digest"].as_str(),
        Some(digest.as_str()),
        "digest the promotion was checked against"
    );
    if extensions(target)
        .await?
        .iter()
        .any(|e| e == AUDIT_EXTENSION)
    {
        let records = recent_records(target, "cmp-auditor").await?;
        let needle = format!("digest={digest}");
        for (action, outcome) in [
            ("model_promote", "ok"),
            ("gauntlet_run", "ok"),
            ("model_approve", "ok"),
        ] {
            ensure!(
                records.iter().any(|r| r["action"] == action
                    && r["outcome"] == outcome
                    && r["model"] == model
                    && r["detail"].as_str().is_some_and(|d| d.contains(&needle))),
                "no audit record {action} ({outcome}) of {model} naming {needle}"
            );
        }
        ensure!(
            records
                .iter()
                .filter(|r| r["action"] == "model_promote"
                    && r["outcome"] == "refused"
                    && r["model"] == model)
                .count()
                >= 2,
            "the two refused promotions of {model} are not both audit records"
        );
    }
    Ok(())
}

/// CMP-AUDIT: a record just written proves its inclusion under a signed checkpoint, and the
/// next checkpoint proves the log only grew (RFC 6962 inclusion and consistency proofs).
pub(crate) async fn record_proves_inclusion_and_consistency(ctx: CaseCtx) -> CaseOutcome {
    use gauntlet_engine::audit::{Checkpoint, hex, merkle};
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[AUDIT_EXTENSION]).await?;
    let who = scratch("cmp-auditor", ctx.seed);
    let first: Checkpoint =
        serde_json::from_value(checkpoint(target, &who).await?).map_err(|e| {
            CaseError::Fail(format!("POST /v2/audit/checkpoint: not a checkpoint: {e}"))
        })?;
    first
        .verify_with(&first.public_key)
        .map_err(|e| CaseError::Fail(format!("checkpoint of size {}: {e}", first.size)))?;
    // The verifier must be able to say no: the same checkpoint with a signature bit flipped,
    // or claiming one more record, is refused (else the check above proves nothing).
    let mut flipped = first.clone();
    flipped.signature[0] ^= 1;
    let mut grown = first.clone();
    grown.size += 1;
    for (what, forged) in [
        ("a signature bit flipped", flipped),
        ("one record more than it signed", grown),
    ] {
        ensure!(
            forged.verify_with(&first.public_key).is_err(),
            "the checkpoint of size {} with {what} verifies against its key: the signature \
             check accepts forgeries",
            first.size
        );
    }
    ensure!(
        first.size > 0,
        "the checkpoint after a recorded request covers no record"
    );
    // The checkpoint request itself is among the newest records it covers (records of
    // concurrent requests may follow it).
    let mut index = None;
    for i in (first.size.saturating_sub(SCAN_BACK)..first.size).rev() {
        let path = format!("/v2/audit/records/{i}");
        let reply = call(target, Method::GET, &path, None, None).await?;
        let record = expect_status(&reply, 200, &format!("GET {path}"))?;
        if record["principal"] == who.as_str() && record["action"] == "checkpoint_request" {
            index = Some(i);
            break;
        }
    }
    let Some(index) = index else {
        return Err(CaseError::Fail(format!(
            "no checkpoint_request record by {who} under the checkpoint of size {}",
            first.size
        )));
    };
    let path = format!(
        "/v2/audit/proof/inclusion?index={index}&size={}",
        first.size
    );
    let reply = call(target, Method::GET, &path, None, None).await?;
    let proof = expect_status(&reply, 200, &format!("GET {path}"))?;
    let leaf = hex::decode(proof["leaf"].as_str().unwrap_or(""))
        .map_err(|e| CaseError::Fail(format!("GET {path}: leaf: {e}")))?;
    let hashes: Vec<merkle::Hash> = proof["proof"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().and_then(|h| hex::decode32(h).ok()))
                .collect()
        })
        .unwrap_or_default();
    merkle::verify_inclusion(
        index,
        first.size,
        &merkle::leaf_hash(&leaf),
        &hashes,
        &first.root,
    )
    .map_err(|e| {
        CaseError::Fail(format!(
            "record {index} under the checkpoint of size {}: {e}",
            first.size
        ))
    })?;
    let record = gauntlet_engine::audit::decode_payload(&leaf)
        .map_err(|e| CaseError::Fail(format!("record {index}: {e}")))?;
    ensure!(
        record.event.principal == who
            && record.event.action == gauntlet_engine::audit::Action::CheckpointRequest,
        "record {index} under the checkpoint should be {who}'s checkpoint request, got {:?} by {}",
        record.event.action,
        record.event.principal
    );
    let second: Checkpoint =
        serde_json::from_value(checkpoint(target, &who).await?).map_err(|e| {
            CaseError::Fail(format!("POST /v2/audit/checkpoint: not a checkpoint: {e}"))
        })?;
    second
        .verify_with(&first.public_key)
        .map_err(|e| CaseError::Fail(format!("second checkpoint: {e}")))?;
    ensure!(
        second.size > first.size,
        "the second checkpoint (size {}) does not cover the second request (first size {})",
        second.size,
        first.size
    );
    let path = consistency_path(first.size, second.size);
    let reply = call(target, Method::GET, &path, None, None).await?;
    let proof = expect_status(&reply, 200, &format!("GET {path}"))?;
    let hashes: Vec<merkle::Hash> = proof["proof"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().and_then(|h| hex::decode32(h).ok()))
                .collect()
        })
        .unwrap_or_default();
    merkle::verify_consistency(first.size, second.size, &first.root, &second.root, &hashes)
        .map_err(|e| {
            CaseError::Fail(format!("consistency {} → {}: {e}", first.size, second.size))
        })?;
    // The verifier must be able to say no: the proof with a hash flipped, or for the sizes
    // swapped, is refused.
    if !hashes.is_empty() {
        let mut forged = hashes.clone();
        forged[0][0] ^= 1;
        ensure!(
            merkle::verify_consistency(first.size, second.size, &first.root, &second.root, &forged)
                .is_err(),
            "a consistency proof {} → {} with a hash flipped verifies: the check accepts forgeries",
            first.size,
            second.size
        );
    }
    ensure!(
        merkle::verify_consistency(second.size, first.size, &second.root, &first.root, &hashes)
            .is_err(),
        "a consistency proof from size {} back to {} verifies",
        second.size,
        first.size
    );
    // A tree is consistent with itself (an empty proof, the same root) and with no other root
    // of its size; the target proves it so, and refuses a proof from a larger to a smaller tree.
    let path = consistency_path(first.size, first.size);
    let reply = call(target, Method::GET, &path, None, None).await?;
    let same = expect_status(&reply, 200, &format!("GET {path}"))?;
    ensure!(
        same["proof"].as_array().is_some_and(Vec::is_empty),
        "GET {path}: expected an empty proof, got {}",
        excerpt(&same.to_string())
    );
    merkle::verify_consistency(first.size, first.size, &first.root, &first.root, &[]).map_err(
        |e| {
            CaseError::Fail(format!(
                "the checkpoint of size {} is not consistent with itself: {e}",
                first.size
            ))
        },
    )?;
    ensure!(
        merkle::verify_consistency(first.size, first.size, &first.root, &second.root, &[]).is_err(),
        "two different roots of size {} verify as consistent",
        first.size
    );
    let path = consistency_path(second.size, first.size);
    let reply = call(target, Method::GET, &path, None, None).await?;
    expect_status(&reply, 400, &format!("GET {path} (first above second)"))?;
    Ok(())
}

/// The route of the consistency proof between the trees of `first` and `second` records.
fn consistency_path(first: u64, second: u64) -> String {
    format!("/v2/audit/proof/consistency?first={first}&second={second}")
}

/// CMP-CLOCK (RTS 25): record times are UTC with microseconds, never go back, and are close
/// to this machine's clock.
pub(crate) async fn timestamps_are_utc_microseconds(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[AUDIT_EXTENSION]).await?;
    let who = scratch("cmp-clock", ctx.seed);
    let before = now_micros();
    // A few records of our own, then the newest records in order.
    for _ in 0..3 {
        checkpoint(target, &who).await?;
    }
    let after = now_micros();
    // Newest first: keep every record back to this case's oldest one (concurrent cases may
    // have written many after it), and at least the newest 50 for the order checks.
    let mut records = recent_records(target, &who).await?;
    let oldest_ours = records
        .iter()
        .rposition(|r| r["principal"] == who.as_str())
        .map_or(0, |p| p + 1);
    records.truncate(oldest_ours.max(50));
    records.reverse();
    ensure!(
        records.len() >= 3,
        "expected at least 3 records, got {}",
        records.len()
    );
    let mut previous: Option<(u64, i64)> = None;
    let mut sub_millisecond = false;
    for r in &records {
        let (index, time_us, time) = (
            r["index"].as_u64().unwrap_or(u64::MAX),
            r["time_us"].as_i64().unwrap_or(i64::MIN),
            r["time"].as_str().unwrap_or(""),
        );
        ensure!(
            time.len() == "2026-12-05T18:51:38.123456Z".len()
                && time.ends_with('Z')
                && time.as_bytes().get(19) == Some(&b'.'),
            "record {index}: time {time:?} is not RFC 3339 UTC with 6 fractional digits"
        );
        ensure_eq!(
            time,
            rfc3339_micros(time_us),
            "record {index}: time against time_us {time_us}"
        );
        if let Some((pi, pt)) = previous {
            ensure!(index == pi + 1, "record {index} follows record {pi}");
            ensure!(
                time_us >= pt,
                "record {index} is timed {time_us} µs, before record {pi} at {pt} µs"
            );
        }
        sub_millisecond |= time_us % 1000 != 0;
        previous = Some((index, time_us));
    }
    ensure!(
        sub_millisecond,
        "no record time has a non-zero microsecond part: the clock has millisecond granularity at best"
    );
    let ours: Vec<i64> = records
        .iter()
        .filter(|r| r["principal"] == who.as_str())
        .filter_map(|r| r["time_us"].as_i64())
        .collect();
    ensure!(
        !ours.is_empty(),
        "none of {who}'s checkpoint requests is among the newest records"
    );
    let skew = Duration::from_secs(5).as_micros() as i64;
    for t in ours {
        ensure!(
            t >= before - skew && t <= after + skew,
            "a record of this case is timed {} but was written between {} and {} (± 5 s)",
            rfc3339_micros(t),
            rfc3339_micros(before),
            rfc3339_micros(after)
        );
    }
    Ok(())
}

/// CMP-GDPR (Art. 25, 32): a client id sent with a prediction and a trader id sent with a
/// signal never appear in the log in clear; both are keyed pseudonyms. A client id that is
/// not one (a space, over 64 bytes) is refused with 400 naming the header.
pub(crate) async fn client_ids_are_pseudonymised(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[AUDIT_EXTENSION, TRADING_EXTENSION]).await?;
    let model = scratch("cmp-gdpr", ctx.seed);
    stage(target, &signal_model(&model, 1.0), "cmp-loader").await?;
    let outcome = pseudonym_body(target, &model, ctx.seed).await;
    unload(target, &model, "cmp-loader").await;
    outcome
}

async fn pseudonym_body(target: &dyn Target, model: &str, seed: u64) -> CaseOutcome {
    let (client, trader) = (scratch("client-gdpr", seed), scratch("trader-gdpr", seed));
    let path = format!("/v2/models/{model}/versions/1/infer");
    let infer = json!({"id": scratch("req-gdpr", seed), "inputs": [{"name": "features", "shape": [1, 1], "datatype": "FP64", "data": [0.0]}]});
    // The prediction, sent with `id` as the client.
    let infer_as = |id: &str| {
        let request = http::Request::post(path.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(CLIENT_HEADER, id)
            .body(bytes::Bytes::from(infer.to_string()));
        async move {
            let request = request.map_err(|e| CaseError::Error(e.to_string()))?;
            Ok::<gauntlet_harness::Reply, CaseError>(target.send(request).await?.into())
        }
    };
    let reply = infer_as(&client).await?;
    expect_status(&reply, 200, &format!("POST {path} with {CLIENT_HEADER}"))?;
    // What is not an id (a space, 65 characters) is refused naming the header: it could be
    // anything, a name or an e-mail address, and is never recorded or pseudonymised.
    let long = "c".repeat(65);
    for bad in [format!("{client} x"), long] {
        let reply = infer_as(&bad).await?;
        let what = format!("POST {path} with {CLIENT_HEADER} of {} bytes", bad.len());
        expect_status(&reply, 400, &what)?;
        ensure!(
            reply.text().contains(CLIENT_HEADER),
            "{what}: the 400 does not name the header: {}",
            excerpt(&reply.text())
        );
    }
    let (status, body) = send_signal(
        target,
        &signal(model, &scratch("algo-gdpr", seed), &trader, 100.0, 1, 100.0),
    )
    .await?;
    ensure!(
        status == 200,
        "a signal naming trader {trader}: expected 200, got {status} {}",
        excerpt(&body.to_string())
    );
    let records = recent_records(target, "cmp-auditor").await?;
    let mut seen = (false, false);
    for r in &records {
        let text = r.to_string();
        ensure!(
            !text.contains(&client) && !text.contains(&trader),
            "record {} holds an identifier in clear: {}",
            r["index"],
            excerpt(&text)
        );
        let pseudonym = r["client"]
            .as_str()
            .is_some_and(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()));
        if r["model"] == model && r["action"] == "prediction" {
            ensure!(
                pseudonym,
                "the prediction record {} carries no 128-bit hex pseudonym: {}",
                r["index"],
                excerpt(&text)
            );
            seen.0 = true;
        }
        if r["model"] == model && r["action"] == "order_intent" {
            ensure!(
                pseudonym,
                "the order intent record {} carries no 128-bit hex pseudonym: {}",
                r["index"],
                excerpt(&text)
            );
            seen.1 = true;
        }
    }
    ensure!(
        seen.0 && seen.1,
        "records of this case's prediction ({}) and order intent ({}) not found among the newest {}",
        seen.0,
        seen.1,
        records.len()
    );
    Ok(())
}

/// CMP-AUDIT, CMP-RETAIN: no route deletes or edits a record: every such method on the audit
/// routes is refused, the record reads the same after, and the log only grew.
pub(crate) async fn no_route_deletes_records(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[AUDIT_EXTENSION]).await?;
    let who = scratch("cmp-eraser", ctx.seed);
    let cp = checkpoint(target, &who).await?;
    let size = cp["size"].as_u64().unwrap_or(0);
    ensure!(size > 0, "the checkpoint covers no record");
    let index = size - 1;
    let record_path = format!("/v2/audit/records/{index}");
    let before = call(target, Method::GET, &record_path, None, None).await?;
    let before = expect_status(&before, 200, &format!("GET {record_path}"))?;
    let edit = json!({"principal": "nobody", "outcome": "ok"});
    for (method, path) in [
        (Method::DELETE, record_path.as_str()),
        (Method::PUT, record_path.as_str()),
        (Method::PATCH, record_path.as_str()),
        (Method::POST, record_path.as_str()),
        (Method::DELETE, "/v2/audit/checkpoint"),
        (Method::PUT, "/v2/audit/checkpoint"),
        (Method::DELETE, "/v2/audit/records"),
        (Method::DELETE, "/v2/audit"),
    ] {
        let reply = call(
            target,
            method.clone(),
            path,
            Some(RISK_PRINCIPAL),
            Some(&edit),
        )
        .await?;
        ensure!(
            !reply.status.is_success(),
            "{method} {path} answered {}: a route edits or deletes records",
            reply.status.as_u16()
        );
    }
    let after = call(target, Method::GET, &record_path, None, None).await?;
    let after = expect_status(
        &after,
        200,
        &format!("GET {record_path} after the attempts"),
    )?;
    ensure_eq!(
        after,
        before,
        "record {index} after the delete and edit attempts"
    );
    let cp2 = checkpoint(target, &who).await?;
    let size2 = cp2["size"].as_u64().unwrap_or(0);
    ensure!(size2 > size, "the log went from {size} to {size2} records");
    Ok(())
}

/// CMP-RETAIN (RTS 6 Art. 28, MiFID II Art. 16(6)): a prune with a cut-off inside the
/// retention period is refused by `retention`; the default prune keeps every record younger
/// than five years.
pub(crate) async fn retention_refuses_young_prunes(ctx: CaseCtx) -> CaseOutcome {
    let subject = subject(&ctx.target)?.target;
    let target = subject.as_ref();
    require_extensions(target, &[AUDIT_EXTENSION]).await?;
    let who = scratch("cmp-retention", ctx.seed);
    let cp = checkpoint(target, &who).await?;
    let newest = cp["size"].as_u64().unwrap_or(1) - 1;
    let year_us = 31_557_600_000_000_i64;
    let young = rfc3339_micros(now_micros() - year_us);
    let reply = call(
        target,
        Method::POST,
        "/v2/audit/prune",
        Some(&who),
        Some(&json!({ "before": young })),
    )
    .await?;
    let body = reply.json::<Value>().unwrap_or(Value::Null);
    expect_refusal(
        reply.status.as_u16(),
        &body,
        409,
        "retention",
        &format!("POST /v2/audit/prune before {young}"),
    )?;
    let reply = call(target, Method::POST, "/v2/audit/prune", Some(&who), None).await?;
    let report = expect_status(&reply, 200, "POST /v2/audit/prune (default cut-off)")?;
    let before = report["before_us"].as_i64().unwrap_or(i64::MAX);
    ensure!(
        before <= now_micros() - 5 * year_us,
        "the default cut-off {} is inside five years",
        report["before"]
    );
    let path = format!("/v2/audit/records/{newest}");
    let reply = call(target, Method::GET, &path, None, None).await?;
    expect_status(&reply, 200, &format!("GET {path} after the default prune"))?;
    Ok(())
}
