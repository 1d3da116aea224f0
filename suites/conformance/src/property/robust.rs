//! Robustness: no body, however malformed, gets a 5xx or an error that is not JSON.

use bytes::Bytes;
use http::{Method, StatusCode};
use proptest::test_runner::TestCaseError;

use gauntlet_engine::oip::{Datatype, InferResponse};
use gauntlet_harness::{Case, CaseCtx, CaseOutcome, Reply, TargetExt, case, infer_path};

use super::strategies::{Body, FloatBatch, float_batches, json_bodies, raw_bodies};
use super::{Probe, case_id, check, describe_reply, fail};
use crate::support::{
    compare_predictions, error_message, infer_request, library_expect, library_model,
    prediction_values, present,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "property",
            infer_survives_arbitrary_bytes,
            ["ENG-ROBUST", "SEC-INPUT"],
            []
        ),
        case!(
            "property",
            infer_survives_malformed_json,
            ["ENG-ROBUST", "ENG-VAL"],
            []
        ),
        case!(
            "property",
            infer_survives_extreme_floats,
            ["ENG-ROBUST", "ENG-VAL", "ENG-PRED"],
            []
        ),
    ]
}

/// What a well-behaved server answers to any request: a 200 infer response, or a 4xx with a
/// JSON error; never a 5xx, never another status.
fn sane_reply(reply: &Reply, model: &str) -> Result<Option<InferResponse>, TestCaseError> {
    let status = reply.status;
    if status.is_server_error() {
        return Err(fail(format!(
            "a bad request got a server error: {}",
            describe_reply(reply)
        )));
    }
    if status.is_client_error() {
        return match error_message(reply) {
            Ok(_) => Ok(None),
            Err(why) => Err(fail(format!("status {status}: {why}"))),
        };
    }
    if status != StatusCode::OK {
        return Err(fail(format!(
            "expected 200 or a 4xx, got {}",
            describe_reply(reply)
        )));
    }
    let response: InferResponse = reply.json().map_err(|e| {
        fail(format!(
            "a 200 whose body is not an infer response ({e}): {}",
            describe_reply(reply)
        ))
    })?;
    if response.model_name != model {
        return Err(fail(format!(
            "a 200 from model {model:?}: `model_name` expected {model:?}, got {:?}",
            response.model_name
        )));
    }
    Ok(Some(response))
}

/// Posts a body to its model's infer path and checks the reply is sane.
fn post_sanely(probe: &Probe, body: &Body) -> Result<(), TestCaseError> {
    let Some(artifact) = probe.references().get(body.model) else {
        return Ok(());
    };
    let reply = probe
        .wait(probe.target().call(
            Method::POST,
            &infer_path(&artifact.name, None),
            Bytes::from(body.bytes.clone()),
            body.content_type,
        ))
        .map_err(|e| fail(format!("the request did not complete: {e}")))?;
    if let Some(response) = sane_reply(&reply, &artifact.name)? {
        // Whatever the engine accepted, it must answer with one prediction per row it read.
        let rows = response
            .outputs
            .iter()
            .find(|o| o.name == "prediction")
            .map_or(0, |o| o.data.len());
        prediction_values(&response, rows).map_err(|why| fail(format!("a 200 reply: {why}")))?;
    }
    Ok(())
}

async fn infer_survives_arbitrary_bytes(ctx: CaseCtx) -> CaseOutcome {
    let references = ctx.reference_models.clone();
    check(
        &ctx,
        case_id!(infer_survives_arbitrary_bytes),
        move || raw_bodies(&references),
        |probe, body| post_sanely(probe, &body),
    )
    .await
}

async fn infer_survives_malformed_json(ctx: CaseCtx) -> CaseOutcome {
    let references = ctx.reference_models.clone();
    check(
        &ctx,
        case_id!(infer_survives_malformed_json),
        move || json_bodies(&references),
        |probe, json| post_sanely(probe, &json.body),
    )
    .await
}

/// Extreme but finite values: the engine answers 200 or a JSON 4xx; when it accepts FP64
/// values the library also accepts, it predicts what the library predicts.
fn extreme_floats(probe: &Probe, batch: &FloatBatch) -> Result<(), TestCaseError> {
    let Some(artifact) = probe.references().get(batch.model) else {
        return Ok(());
    };
    let data = present(&batch.values);
    let mut request = infer_request(artifact, &data, batch.layout);
    for input in &mut request.inputs {
        input.datatype = batch.datatype;
    }
    let reply = probe
        .wait(probe.target().infer(&artifact.name, None, &request))
        .map_err(|e| fail(format!("the request did not complete: {e}")))?;
    let Some(response) = sane_reply(&reply, &artifact.name)? else {
        return Ok(());
    };
    let served = prediction_values(&response, batch.rows)
        .map_err(|why| fail(format!("a 200 reply: {why}")))?;
    if batch.datatype != Datatype::Fp64 {
        return Ok(());
    }
    let model = library_model(artifact).map_err(|e| fail(e.to_string()))?;
    if let Ok(expected) = library_expect(&model, &data) {
        compare_predictions(&served, &expected.predictions)
            .map_err(|why| fail(format!("served against library: {why}")))?;
    }
    Ok(())
}

async fn infer_survives_extreme_floats(ctx: CaseCtx) -> CaseOutcome {
    let references = ctx.reference_models.clone();
    check(
        &ctx,
        case_id!(infer_survives_extreme_floats),
        move || float_batches(&references),
        |probe, batch| extreme_floats(probe, &batch),
    )
    .await
}
