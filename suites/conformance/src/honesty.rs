//! The suites catch a defective target: each test wraps the reference engine in a target that
//! breaks one promise and checks that the cases guarding it fail, saying what differed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use serde_json::Value;

use gauntlet_harness::runner::{RunOptions, run_one};
use gauntlet_harness::{Capabilities, Case, CaseCtx, InProcess, References, Target, TargetError};
use gauntlet_reports::{CaseResult, Outcome};

use crate::{all_cases, reference_target};

/// The promise a [`Defective`] target breaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Defect {
    /// None: a faithful proxy, the control.
    None,
    /// Infer responses lose their `id`.
    DropsId,
    /// An infer body that is not JSON gets a 500 with a text body.
    ServerErrorOnMalformedJson,
    /// Every prediction is off by this much.
    SkewsPredictions(f64),
    /// Infer responses carry no sanitiser changes.
    HidesSanitiserChanges,
    /// 4xx bodies are plain text instead of JSON.
    TextErrors,
    /// Every 7th infer response of a `prop-swap-*` model reports the other version.
    MislabelsVersions,
}

struct Defective {
    inner: InProcess,
    defect: Defect,
    infers: AtomicUsize,
}

impl Defective {
    fn new(defect: Defect) -> Self {
        Defective {
            inner: reference_target().unwrap(),
            defect,
            infers: AtomicUsize::new(0),
        }
    }
}

fn rewrite_json(body: &Bytes, edit: impl FnOnce(&mut Value)) -> Bytes {
    let mut value: Value = serde_json::from_slice(body).unwrap();
    edit(&mut value);
    Bytes::from(serde_json::to_vec(&value).unwrap())
}

#[async_trait]
impl Target for Defective {
    fn describe(&self) -> String {
        format!("{:?} proxy of {}", self.defect, self.inner.describe())
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        let path = request.uri().path().to_owned();
        let is_infer = path.ends_with("/infer");
        if is_infer {
            self.infers.fetch_add(1, Ordering::Relaxed);
        }
        if is_infer
            && self.defect == Defect::ServerErrorOnMalformedJson
            && serde_json::from_slice::<Value>(request.body()).is_err()
        {
            let mut response = Response::new(Bytes::from_static(b"internal error"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return Ok(response);
        }
        let mut response = self.inner.send(request).await?;
        let status = response.status();
        let body = response.body().clone();
        let edited = match self.defect {
            Defect::DropsId if is_infer && status == StatusCode::OK => {
                Some(rewrite_json(&body, |v| {
                    v.as_object_mut().unwrap().remove("id");
                }))
            }
            Defect::SkewsPredictions(delta) if is_infer && status == StatusCode::OK => {
                Some(rewrite_json(&body, |v| {
                    for p in v["outputs"][0]["data"].as_array_mut().unwrap() {
                        *p = Value::from(p.as_f64().unwrap() + delta);
                    }
                }))
            }
            Defect::HidesSanitiserChanges if is_infer && status == StatusCode::OK => {
                Some(rewrite_json(&body, |v| {
                    v["parameters"]["sanitiser_changes"] = Value::Array(vec![]);
                }))
            }
            Defect::TextErrors if status.is_client_error() && !body.is_empty() => {
                let message = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
                Some(Bytes::from(message))
            }
            Defect::MislabelsVersions
                if path.starts_with("/v2/models/prop-swap-")
                    && status == StatusCode::OK
                    && self.infers.load(Ordering::Relaxed).is_multiple_of(7) =>
            {
                Some(rewrite_json(&body, |v| {
                    let other = if v["model_version"] == "1" { "2" } else { "1" };
                    v["model_version"] = Value::from(other);
                }))
            }
            _ => None,
        };
        if let Some(edited) = edited {
            *response.body_mut() = edited;
            response.headers_mut().remove(header::CONTENT_LENGTH);
        }
        Ok(response)
    }
}

fn case(id: &str) -> Case {
    all_cases()
        .into_iter()
        .find(|c| c.id() == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

async fn run_against(target: Arc<dyn Target>, id: &str, property_cases: u32) -> CaseResult {
    let case = case(id);
    let options = RunOptions {
        seed: crate::DEFAULT_SEED,
        property_cases,
        ..RunOptions::default()
    };
    let ctx = CaseCtx::for_case(
        &case,
        target,
        &options,
        &References::all_served(gauntlet_fixtures::load_embedded().unwrap()),
    );
    run_one(case, ctx, Duration::from_secs(120)).await
}

/// Runs each case against a target with `defect` and checks it fails with a message holding
/// every `needle`.
async fn caught(defect: Defect, cases: &[&str], needles: &[&str]) {
    let target: Arc<dyn Target> = Arc::new(Defective::new(defect));
    for id in cases {
        let result = run_against(Arc::clone(&target), id, 32).await;
        let message = result.message.clone().unwrap_or_default();
        // Shown with `--nocapture`, to read what a reviewer of a failed gate would read.
        eprintln!("--- {id} against {defect:?}:\n{message}\n");
        assert_eq!(
            result.outcome,
            Outcome::Fail,
            "{id} against a target that {defect:?} should fail, got {:?}: {message}",
            result.outcome
        );
        for needle in needles {
            assert!(
                message.contains(needle),
                "{id} against {defect:?}: the message should contain {needle:?}: {message}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faithful_proxy_passes_every_case_and_properties_really_run() {
    let proxy = Arc::new(Defective::new(Defect::None));
    let target: Arc<dyn Target> = proxy.clone();
    for case in all_cases() {
        let id = case.id();
        let result = run_against(Arc::clone(&target), &id, 16).await;
        assert_eq!(result.outcome, Outcome::Pass, "{id}: {:?}", result.message);
    }
    let before = proxy.infers.load(Ordering::Relaxed);
    let result = run_against(target, "property::predictions_match_library", 40).await;
    assert_eq!(result.outcome, Outcome::Pass, "{:?}", result.message);
    let sent = proxy.infers.load(Ordering::Relaxed) - before;
    assert!(
        sent >= 40,
        "40 property inputs should send at least 40 requests, sent {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_id_is_caught() {
    caught(
        Defect::DropsId,
        &["conformance::infer_echoes_request_id"],
        &["`id`", "expected Some(\"gauntlet-", "got None"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_malformed_json_is_caught() {
    caught(
        Defect::ServerErrorOnMalformedJson,
        &["conformance::malformed_json_is_400"],
        &["expected status 400 Bad Request, got 500"],
    )
    .await;
    caught(
        Defect::ServerErrorOnMalformedJson,
        &[
            "property::infer_survives_arbitrary_bytes",
            "property::infer_survives_malformed_json",
        ],
        &[
            "a bad request got a server error: 500",
            "minimal failing input: ",
            "case seed 0x",
            "replay with `gauntlet run --seed",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_predictions_are_caught() {
    caught(
        Defect::SkewsPredictions(1e-3),
        &[
            "conformance::infer_layouts_agree",
            "conformance::load_promote_rollback",
            "property::predictions_match_library",
        ],
        &["prediction of row 0: expected", "difference 1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_sanitiser_changes_are_caught() {
    caught(
        Defect::HidesSanitiserChanges,
        &[
            "conformance::missing_value_is_imputed",
            "conformance::outlier_is_clipped",
        ],
        &["sanitiser change(s), got 0"],
    )
    .await;
    caught(
        Defect::HidesSanitiserChanges,
        &["property::sanitising_is_idempotent"],
        &["sanitiser change(s)", "minimal failing input: DirtyBatch"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_error_bodies_are_caught() {
    caught(
        Defect::TextErrors,
        &[
            "conformance::shape_data_mismatch_is_400",
            "property::infer_survives_malformed_json",
        ],
        &["the body is not JSON"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_versions_during_swaps_are_caught() {
    caught(
        Defect::MislabelsVersions,
        &["property::readers_see_whole_versions_during_swaps"],
        &["torn read: the response says version"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_failures_replay_from_the_seed() {
    let messages = [0, 1].map(|_| async {
        let target: Arc<dyn Target> = Arc::new(Defective::new(Defect::SkewsPredictions(1e-3)));
        run_against(target, "property::predictions_match_library", 32)
            .await
            .message
            .unwrap()
    });
    let [a, b] = messages;
    assert_eq!(
        a.await,
        b.await,
        "the same seed must find the same minimal input"
    );
}
