//! `neutral_fallback_answers_every_row` (ENG-FB, ENG-VAL): a remote model with no local
//! copy and no rule model, its backend unreachable. The last fallback, the neutral
//! prediction, must answer each row of a well-formed batch with the configured neutral
//! value, flagged `degraded: neutral`, and refuse a malformed batch as a local model would
//! (400 naming the field, 413 over `max-batch-rows`): a fallback that guesses a row count
//! sends a client a wrong number of predictions.

use gauntlet_engine::backend::RemoteModelConfig;
use gauntlet_engine::oip::{Datatype, InferRequest, InferResponse, RequestInput};
use gauntlet_engine::{AppState, EngineConfig};
use gauntlet_harness::{Target, TargetExt as _};
use gauntlet_load::recorder::excerpt;

use crate::Setup;
use crate::cases::{Verdict, fail, pass};
use crate::pair::{fixture, remote_model};

/// The frontend's neutral prediction: not 0, so an answer of zeros shows.
const NEUTRAL: f64 = 0.25;
/// The frontend's `max-batch-rows`: small, so the limit's edge costs nothing to send.
const MAX_ROWS: u64 = 8;

/// One request and what the neutral fallback must answer it with.
struct Probe {
    what: &'static str,
    /// `(name, shape, values)` of each input tensor.
    inputs: Vec<(&'static str, Vec<u64>, usize)>,
    expect: Expect,
}

enum Expect {
    /// 200, this many neutral predictions.
    Rows(u64),
    /// This status, its error naming this text.
    Refused(u16, &'static str),
}

fn probes(features: u64) -> Vec<Probe> {
    let f = features as usize;
    let one = |what, shape: Vec<u64>, values, expect| Probe {
        what,
        inputs: vec![("x", shape, values)],
        expect,
    };
    vec![
        one("[3, n]", vec![3, features], 3 * f, Expect::Rows(3)),
        one("[n], one row", vec![features], f, Expect::Rows(1)),
        Probe {
            what: "two columns [4] and [4, 1]",
            inputs: vec![("a", vec![4], 4), ("b", vec![4, 1], 4)],
            expect: Expect::Rows(4),
        },
        one(
            "[max-batch-rows, n]",
            vec![MAX_ROWS, features],
            MAX_ROWS as usize * f,
            Expect::Rows(MAX_ROWS),
        ),
        one(
            "[2, n] with one value short",
            vec![2, features],
            2 * f - 1,
            Expect::Refused(400, "inputs[0].shape"),
        ),
        one(
            "[1, 1, n]",
            vec![1, 1, features],
            f,
            Expect::Refused(400, "expected [rows, n]"),
        ),
        Probe {
            what: "columns of 3 and 2 rows",
            inputs: vec![("a", vec![3], 3), ("b", vec![2], 2)],
            expect: Expect::Refused(400, "inputs[1].shape[0]"),
        },
        Probe {
            what: "no input tensor",
            inputs: vec![],
            expect: Expect::Refused(400, "at least one tensor"),
        },
        one(
            "[max-batch-rows + 1, n]",
            vec![MAX_ROWS + 1, features],
            (MAX_ROWS as usize + 1) * f,
            Expect::Refused(413, "max-batch-rows"),
        ),
    ]
}

fn request(probe: &Probe) -> InferRequest {
    InferRequest {
        id: Some("neutral".to_owned()),
        inputs: probe
            .inputs
            .iter()
            .map(|(name, shape, values)| RequestInput {
                name: (*name).to_owned(),
                shape: shape.clone(),
                datatype: Datatype::Fp64,
                data: (0..*values).map(|i| Some(i as f64 * 0.1)).collect(),
            })
            .collect(),
        ..InferRequest::default()
    }
}

/// A frontend whose remote model `name` calls a loopback port nothing listens on.
fn frontend(setup: &Setup, name: &str) -> Result<std::sync::Arc<dyn Target>, String> {
    // Bound then closed: connections to it are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("failed to find a closed loopback port: {e}"))?;
    let config = EngineConfig {
        max_batch_rows: MAX_ROWS as usize,
        remote_models: vec![RemoteModelConfig {
            neutral: NEUTRAL,
            ..remote_model(
                name,
                &format!("http://{closed}"),
                setup.config.timeout,
                setup.config.breaker.clone(),
            )
        }],
        ..EngineConfig::default()
    };
    config
        .validate()
        .map_err(|e| format!("frontend config: {e}"))?;
    Ok(setup.frontend(AppState::new(config)))
}

pub(crate) async fn neutral_fallback_answers_every_row(setup: &Setup) -> Result<Verdict, String> {
    let model = fixture(&setup.config.model)?;
    let frontend = frontend(setup, &model.name)?;
    let probes = probes(model.features.len() as u64);
    let mut problems = Vec::new();
    for probe in &probes {
        let reply = frontend
            .infer(&model.name, None, &request(probe))
            .await
            .map_err(|e| e.to_string())?;
        let status = reply.status.as_u16();
        match probe.expect {
            Expect::Rows(rows) => {
                if status != 200 {
                    problems.push(format!(
                        "{}: expected 200 with {rows} neutral rows, got {status} {}",
                        probe.what,
                        excerpt(reply.text().as_bytes(), 200)
                    ));
                    continue;
                }
                let body: InferResponse = reply.json().map_err(|e| {
                    format!("{}: a 200 that is not an infer response: {e}", probe.what)
                })?;
                let degraded = body.parameters.degraded.map(|d| d.as_str());
                let output = body.outputs.first();
                let shape = output.map(|o| o.shape.clone());
                let data = output.map(|o| o.data.clone()).unwrap_or_default();
                if degraded != Some("neutral")
                    || body.model_version != "neutral"
                    || body.outputs.len() != 1
                    || shape != Some(vec![rows])
                    || data.len() as u64 != rows
                    || data.iter().any(|v| v.to_bits() != NEUTRAL.to_bits())
                {
                    problems.push(format!(
                        "{}: expected {rows} rows of {NEUTRAL} flagged degraded \"neutral\" (version \"neutral\"), got degraded {degraded:?}, version {:?}, {} outputs, shape {shape:?}, data {data:?}",
                        probe.what,
                        body.model_version,
                        body.outputs.len()
                    ));
                }
            }
            Expect::Refused(code, names) => {
                let text = reply.text();
                if status != code || !text.contains(names) {
                    problems.push(format!(
                        "{}: expected {code} naming {names:?}, got {status} {}",
                        probe.what,
                        excerpt(text.as_bytes(), 200)
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        pass(format!(
            "backend unreachable, no local copy or rule model: {} batches answered {NEUTRAL} a row flagged degraded \"neutral\" (1 to {MAX_ROWS} rows), {} malformed ones refused naming the field (400, 413 over max-batch-rows {MAX_ROWS})",
            probes
                .iter()
                .filter(|p| matches!(p.expect, Expect::Rows(_)))
                .count(),
            probes
                .iter()
                .filter(|p| matches!(p.expect, Expect::Refused(..)))
                .count()
        ))
    } else {
        fail(format!(
            "the neutral fallback: {} of {} batches wrong: {}",
            problems.len(),
            probes.len(),
            problems.join("; ")
        ))
    }
}
