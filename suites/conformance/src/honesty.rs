//! The suites catch a defective target: each test wraps the reference engine in a target that
//! breaks one promise and checks that the cases guarding it fail, saying what differed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use serde_json::Value;

use gauntlet_engine::artifact::ModelArtifact;
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
    /// `GET /v2` does not list the `gauntlet` extension: a server that keeps the protocol, not
    /// the reference engine's policies.
    HidesPolicyExtension,
    /// Bad requests get the status and body of a popular Python server: 422 `{"detail": …}`.
    DetailErrors,
}

struct Defective {
    inner: InProcess,
    defect: Defect,
    infers: AtomicUsize,
}

impl Defective {
    fn new(defect: Defect) -> Self {
        Self::of(reference_target().unwrap(), defect)
    }

    fn of(inner: InProcess, defect: Defect) -> Self {
        Defective {
            inner,
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

    /// The defects are the HTTP API's: gRPC reaches the engine unchanged.
    async fn grpc_endpoint(&self) -> Result<gauntlet_harness::GrpcEndpoint, TargetError> {
        self.inner.grpc_endpoint().await
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
            Defect::HidesPolicyExtension if path == "/v2" && status == StatusCode::OK => {
                Some(rewrite_json(&body, |v| {
                    v["extensions"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|e| e != gauntlet_harness::POLICY_EXTENSION);
                }))
            }
            Defect::DetailErrors if is_infer && status.is_client_error() => {
                *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                Some(rewrite_json(&body, |v| {
                    let message = v["error"].take();
                    *v = serde_json::json!({ "detail": message });
                }))
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
        &[
            "`id` expected \"gauntlet-",
            "got nothing",
            "must be returned in the response",
        ],
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
        &["conformance::malformed_json_is_4xx"],
        &[
            "expected a 4xx status",
            "got 500",
            "must be indicated by an HTTP error status",
        ],
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
            "conformance::shape_data_mismatch_is_4xx",
            "property::infer_survives_malformed_json",
        ],
        &["the body is not JSON"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_bodies_fail_the_spec_and_a_422_does_not() {
    // 422 is a 4xx, which the spec allows; `{"detail": …}` is not its `{"error": $string}`.
    caught(
        Defect::DetailErrors,
        &[
            "conformance::malformed_json_is_4xx",
            "conformance::unknown_datatype_is_4xx",
        ],
        &[
            "422 Unprocessable Entity reply: the body has no `error` field",
            "must contain",
        ],
    )
    .await;
}

/// Runs every conformance case against `target`, whose served reference models are `served`.
async fn run_conformance(target: Arc<dyn Target>, served: Vec<ModelArtifact>) -> Vec<CaseResult> {
    let references = References {
        all: Arc::new(gauntlet_fixtures::load_embedded().unwrap()),
        served: Arc::new(served),
    };
    let options = RunOptions {
        seed: crate::DEFAULT_SEED,
        property_cases: 8,
        ..RunOptions::default()
    };
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| c.suite == "conformance")
        .collect();
    gauntlet_harness::runner::run(&cases, target, &references, &options, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_another_model_gets_the_protocol_cases_and_no_policy() {
    // A 5-feature model the reference fixtures know nothing of, on a server that keeps the
    // protocol but does not claim the reference engine's policies: the issue-17 situation.
    let mut own = gauntlet_fixtures::load_embedded().unwrap().remove(0);
    own.name = "user-model".into();
    own.features.truncate(5);
    if let gauntlet_engine::artifact::ModelParams::Linear { weights, .. } = &mut own.model {
        weights.truncate(5);
    }
    let inner =
        InProcess::with_models(gauntlet_engine::EngineConfig::default(), vec![own]).unwrap();
    let target: Arc<dyn Target> = Arc::new(Defective::of(inner, Defect::HidesPolicyExtension));
    let results = run_conformance(target, vec![]).await;
    let mut oip_passed = 0;
    for r in &results {
        let message = r.message.clone().unwrap_or_default();
        match &r.outcome {
            Outcome::Pass => {
                if r.requirements.iter().any(|q| q == "ENG-OIP") {
                    oip_passed += 1;
                }
            }
            Outcome::Skip { reason } => {
                if r.requirements.iter().any(|q| q == "ENG-POLICY") {
                    assert!(
                        reason.contains("\"gauntlet\" extension"),
                        "{}: {reason}",
                        r.id
                    );
                }
            }
            other => panic!("{}: {other:?}: {message}", r.id),
        }
        assert!(
            !(r.requirements.iter().any(|q| q == "ENG-POLICY") && r.outcome == Outcome::Pass),
            "{} is a policy case and must not run on a server that does not claim the policy",
            r.id
        );
    }
    assert!(
        oip_passed >= 15,
        "only {oip_passed} protocol cases ran on the server's own model: {results:#?}"
    );
    let skipped = |id: &str| {
        results
            .iter()
            .find(|r| r.id == id)
            .map(|r| matches!(r.outcome, Outcome::Skip { .. }))
    };
    assert_eq!(
        skipped("conformance::infer_batch_equals_single_rows"),
        Some(true)
    );
    assert_eq!(skipped("conformance::body_over_limit_is_413"), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reference_runs_the_policy_cases_without_the_extension() {
    let target: Arc<dyn Target> = Arc::new(Defective::new(Defect::HidesPolicyExtension));
    let case = case("conformance::body_over_limit_is_413");
    let models = gauntlet_fixtures::load_embedded().unwrap();
    for (policy, expected) in [
        (gauntlet_harness::Policy::Auto, "skip"),
        (gauntlet_harness::Policy::Reference, "pass"),
        (gauntlet_harness::Policy::Spec, "skip"),
    ] {
        let options = RunOptions {
            policy,
            ..RunOptions::default()
        };
        let ctx = CaseCtx::for_case(
            &case,
            Arc::clone(&target),
            &options,
            &References::all_served(models.clone()),
        );
        let result = run_one(case, ctx, Duration::from_secs(60)).await;
        assert_eq!(
            result.outcome.label(),
            expected,
            "{policy}: {:?}",
            result.message
        );
    }
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

/// A promise of the security controls that a [`SecDefective`] proxy breaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SecDefect {
    /// None: a faithful proxy of the secured engine, the control.
    None,
    /// A gateway that strips the client's signature headers and signs every admin call with
    /// its own key: forged, expired and replayed calls all get through.
    StripsSignatures,
    /// Unsigned admin calls are signed by the proxy, so an unsigned model load is accepted.
    AcceptsUnsignedLoads,
    /// Every 401 body names the first admin key's secret in base64.
    LeaksKeyInErrors,
    /// A load of an artifact file the engine refuses is answered 200 `STAGED`.
    AcceptsTamperedArtifacts,
}

/// The in-process engine's secured twin behind a proxy that breaks one security promise.
struct SecDefective {
    inner: Arc<dyn Target>,
    defect: SecDefect,
}

impl SecDefective {
    fn new(defect: SecDefect) -> Self {
        SecDefective {
            inner: reference_target().unwrap().secured().unwrap().unwrap(),
            defect,
        }
    }
}

#[async_trait]
impl Target for SecDefective {
    fn describe(&self) -> String {
        format!("{:?} proxy of {}", self.defect, self.inner.describe())
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    /// The defects are the HTTP API's: gRPC reaches the engine unchanged.
    async fn grpc_endpoint(&self) -> Result<gauntlet_harness::GrpcEndpoint, TargetError> {
        self.inner.grpc_endpoint().await
    }

    fn security(&self) -> Option<&gauntlet_harness::SecurityAccess> {
        self.inner.security()
    }

    async fn send(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, TargetError> {
        let admin =
            gauntlet_engine::security::admin_route(request.method().as_str(), request.uri().path())
                .is_some();
        let hand_signed = request.headers().contains_key("x-gauntlet-key-id");
        match self.defect {
            SecDefect::StripsSignatures if admin && hand_signed => {
                let names: Vec<_> = request
                    .headers()
                    .keys()
                    .filter(|n| n.as_str().starts_with("x-gauntlet-"))
                    .cloned()
                    .collect();
                for n in names {
                    request.headers_mut().remove(n);
                }
                // Without the marker, the inner target signs it with a valid key.
                request
                    .extensions_mut()
                    .remove::<gauntlet_harness::Unsigned>();
            }
            SecDefect::AcceptsUnsignedLoads if admin && !hand_signed => {
                request
                    .extensions_mut()
                    .remove::<gauntlet_harness::Unsigned>();
            }
            _ => {}
        }
        let is_file_load = admin
            && request.uri().path().ends_with("/load")
            && request
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v == "application/octet-stream");
        let model = request
            .uri()
            .path()
            .split('/')
            .nth(4)
            .unwrap_or("")
            .to_owned();
        let mut response = self.inner.send(request).await?;
        let status = response.status();
        let edited = match self.defect {
            SecDefect::LeaksKeyInErrors if status == StatusCode::UNAUTHORIZED => {
                use base64::Engine as _;
                let secret = self.inner.security().unwrap().admin[0].secret().to_vec();
                let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
                Some(Bytes::from(format!(
                    "{{\"error\": \"signature mismatch, expected a signature by key {b64}\"}}"
                )))
            }
            SecDefect::AcceptsTamperedArtifacts if is_file_load && status.is_client_error() => {
                *response.status_mut() = StatusCode::OK;
                Some(Bytes::from(format!(
                    "{{\"name\": \"{model}\", \"version\": \"2\", \"state\": \"STAGED\"}}"
                )))
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

/// Runs the named security cases against a proxy with `defect`; each must fail, its message
/// holding every needle.
async fn security_caught(defect: SecDefect, cases: &[&str], needles: &[&str]) {
    use gauntlet_harness::Suite as _;
    let target: Arc<dyn Target> = Arc::new(SecDefective::new(defect));
    let settings = gauntlet_harness::config::Settings::default();
    let planned = gauntlet_security::SecuritySuite
        .gates(&settings)
        .unwrap()
        .into_iter()
        .filter(|p| cases.contains(&p.name.as_str()) || defect == SecDefect::None)
        .collect();
    let ctx = gauntlet_harness::SuiteCtx {
        target,
        settings,
        planned,
        progress: false,
    };
    let results = gauntlet_security::SecuritySuite
        .run(ctx)
        .await
        .unwrap()
        .cases;
    for result in &results {
        let message = result.message.clone().unwrap_or_default();
        eprintln!("--- {} against {defect:?}:\n{message}\n", result.id);
        if defect == SecDefect::None {
            // A proxy is not this build's engine: its key files and config were read before the run.
            let own_build_only = matches!(
                result.id.as_str(),
                "security::weak_key_files_are_refused"
                    | "security::weak_security_settings_are_refused"
                    | "security::model_directory_serves_only_sealed_files"
            );
            if own_build_only {
                assert!(
                    matches!(result.outcome, Outcome::Skip { .. }),
                    "{}: {message}",
                    result.id
                );
            } else {
                assert_eq!(result.outcome, Outcome::Pass, "{}: {message}", result.id);
            }
            continue;
        }
        assert_eq!(
            result.outcome,
            Outcome::Fail,
            "{} against a target that {defect:?} should fail: {message}",
            result.id
        );
        for needle in needles {
            assert!(
                message.contains(needle),
                "{}: {needle:?} in {message}",
                result.id
            );
        }
    }
    if defect != SecDefect::None {
        assert_eq!(results.len(), cases.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faithful_proxy_of_the_secured_engine_passes_every_security_case() {
    security_caught(SecDefect::None, &[], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_strips_signatures_is_caught() {
    security_caught(
        SecDefect::StripsSignatures,
        &[
            "forged_signature_is_refused",
            "expired_signature_is_refused",
            "future_dated_signature_is_refused",
            "unknown_key_is_refused",
        ],
        &["the target ACCEPTED it: 200"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_unsigned_loads_is_caught() {
    security_caught(
        SecDefect::AcceptsUnsignedLoads,
        &["unsigned_admin_load_is_refused"],
        &["ACCEPTED an unsigned model load"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_leaked_into_an_error_is_caught() {
    security_caught(
        SecDefect::LeaksKeyInErrors,
        &["no_secret_or_trace_leaks"],
        &["secret #", "appears in the body of the answer to"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_artifact_answered_200_is_caught() {
    security_caught(
        SecDefect::AcceptsTamperedArtifacts,
        &["tampered_artifact_is_refused"],
        &["expected a 4xx refusal, got 200"],
    )
    .await;
}

/// The promise a [`GrpcProxy`] breaks, between the cases and the reference engine's gRPC port.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GrpcDefect {
    /// None: a faithful proxy, the control.
    None,
    /// Every failed call's status becomes `UNKNOWN`, message kept: still an error as the spec
    /// asks, but not the reference engine's codes.
    UnknownCodes,
    /// A ModelInfer the engine refuses is answered OK with one made-up FP64 output.
    AcceptsMalformed,
    /// Infer responses carry raw outputs and keep the typed `contents` too.
    ContentsAndRaw,
}

/// A gRPC proxy of the reference engine that breaks one promise ([`GrpcDefect`]).
struct GrpcProxy {
    engine: gauntlet_harness::GrpcClient,
    defect: GrpcDefect,
}

impl GrpcProxy {
    fn status(&self, s: tonic::Status) -> tonic::Status {
        match self.defect {
            GrpcDefect::UnknownCodes => tonic::Status::unknown(s.message().to_owned()),
            _ => s,
        }
    }
}

#[tonic::async_trait]
impl gauntlet_oip_grpc::inference::grpc_inference_service_server::GrpcInferenceService
    for GrpcProxy
{
    async fn server_live(
        &self,
        r: tonic::Request<gauntlet_oip_grpc::inference::ServerLiveRequest>,
    ) -> Result<tonic::Response<gauntlet_oip_grpc::inference::ServerLiveResponse>, tonic::Status>
    {
        let inner = r.into_inner();
        self.engine
            .clone()
            .server_live(inner)
            .await
            .map_err(|s| self.status(s))
    }

    async fn server_ready(
        &self,
        r: tonic::Request<gauntlet_oip_grpc::inference::ServerReadyRequest>,
    ) -> Result<tonic::Response<gauntlet_oip_grpc::inference::ServerReadyResponse>, tonic::Status>
    {
        let inner = r.into_inner();
        self.engine
            .clone()
            .server_ready(inner)
            .await
            .map_err(|s| self.status(s))
    }

    async fn model_ready(
        &self,
        r: tonic::Request<gauntlet_oip_grpc::inference::ModelReadyRequest>,
    ) -> Result<tonic::Response<gauntlet_oip_grpc::inference::ModelReadyResponse>, tonic::Status>
    {
        let inner = r.into_inner();
        self.engine
            .clone()
            .model_ready(inner)
            .await
            .map_err(|s| self.status(s))
    }

    async fn server_metadata(
        &self,
        r: tonic::Request<gauntlet_oip_grpc::inference::ServerMetadataRequest>,
    ) -> Result<tonic::Response<gauntlet_oip_grpc::inference::ServerMetadataResponse>, tonic::Status>
    {
        let inner = r.into_inner();
        self.engine
            .clone()
            .server_metadata(inner)
            .await
            .map_err(|s| self.status(s))
    }

    async fn model_metadata(
        &self,
        r: tonic::Request<gauntlet_oip_grpc::inference::ModelMetadataRequest>,
    ) -> Result<tonic::Response<gauntlet_oip_grpc::inference::ModelMetadataResponse>, tonic::Status>
    {
        let inner = r.into_inner();
        self.engine
            .clone()
            .model_metadata(inner)
            .await
            .map_err(|s| self.status(s))
    }

    async fn model_infer(
        &self,
        r: tonic::Request<gauntlet_oip_grpc::inference::ModelInferRequest>,
    ) -> Result<tonic::Response<gauntlet_oip_grpc::inference::ModelInferResponse>, tonic::Status>
    {
        use gauntlet_oip_grpc::inference::model_infer_response::InferOutputTensor;
        use gauntlet_oip_grpc::inference::{InferTensorContents, ModelInferResponse};
        let request = r.into_inner();
        let (model, id) = (request.model_name.clone(), request.id.clone());
        match (self.engine.clone().model_infer(request).await, self.defect) {
            (Err(_), GrpcDefect::AcceptsMalformed) => {
                Ok(tonic::Response::new(ModelInferResponse {
                    model_name: model,
                    id,
                    outputs: vec![InferOutputTensor {
                        name: "prediction".to_owned(),
                        datatype: "FP64".to_owned(),
                        shape: vec![1, 1],
                        parameters: Default::default(),
                        contents: Some(InferTensorContents {
                            fp64_contents: vec![0.0],
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }))
            }
            (Ok(reply), GrpcDefect::ContentsAndRaw) => {
                let mut reply = reply.into_inner();
                reply.raw_output_contents = reply
                    .outputs
                    .iter()
                    .map(|o| {
                        let values = o.contents.as_ref().map(|c| c.fp64_contents.clone());
                        values
                            .unwrap_or_default()
                            .iter()
                            .flat_map(|x| x.to_le_bytes())
                            .collect::<Vec<u8>>()
                            .into()
                    })
                    .collect();
                Ok(tonic::Response::new(reply))
            }
            (result, _) => result.map_err(|s| self.status(s)),
        }
    }
}

/// The gRPC cases against a [`GrpcProxy`] with `defect` in front of the reference engine's gRPC
/// port: each id of `failing` fails with a message holding every needle, every other gRPC
/// case passes.
async fn grpc_caught(defect: GrpcDefect, failing: &[&str], needles: &[&str]) {
    let engine = reference_target().unwrap();
    let served = gauntlet_harness::ServedEngine::start_grpc(engine.state().clone(), 1).unwrap();
    let backend = gauntlet_harness::GrpcTarget::connect(
        &format!("grpc://{}", served.addr()),
        gauntlet_harness::HttpOptions::default(),
    )
    .await
    .unwrap();
    let client = backend
        .grpc_endpoint()
        .await
        .unwrap()
        .client()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = GrpcProxy {
        engine: client,
        defect,
    };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                gauntlet_oip_grpc::inference::grpc_inference_service_server::GrpcInferenceServiceServer::new(proxy),
            )
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let target: Arc<dyn Target> = Arc::new(
        gauntlet_harness::GrpcTarget::connect(
            &format!("grpc://{addr}"),
            gauntlet_harness::HttpOptions::default(),
        )
        .await
        .unwrap(),
    );
    let ids: Vec<String> = all_cases()
        .iter()
        .map(Case::id)
        .filter(|id| id.starts_with("conformance::grpc_"))
        .collect();
    assert_eq!(ids.len(), 10, "{ids:?}");
    for id in &ids {
        let result = run_against(Arc::clone(&target), id, 16).await;
        let message = result.message.clone().unwrap_or_default();
        if failing.contains(&id.as_str()) {
            eprintln!("--- {id} against {defect:?}:\n{message}\n");
            assert_eq!(
                result.outcome,
                Outcome::Fail,
                "{id} against {defect:?}: {message}"
            );
            for needle in needles {
                assert!(message.contains(needle), "{id}: {needle:?} in {message}");
            }
        } else {
            assert_eq!(
                result.outcome,
                Outcome::Pass,
                "{id} against {defect:?}: {message}"
            );
        }
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faithful_grpc_proxy_passes_every_grpc_case() {
    grpc_caught(GrpcDefect::None, &[], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_grpc_error_codes_fail_the_policy_case_only() {
    // The spec accepts any non-OK status: only the reference engine's codes are missed.
    grpc_caught(
        GrpcDefect::UnknownCodes,
        &["conformance::grpc_status_codes"],
        &["Unknown"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_server_accepting_malformed_tensors_is_caught() {
    grpc_caught(
        GrpcDefect::AcceptsMalformed,
        &[
            "conformance::grpc_infer_invalid_tensor",
            "conformance::grpc_infer_unknown_model",
            "conformance::grpc_status_codes",
        ],
        &["answered OK"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_outputs_in_contents_and_raw_at_once_are_caught() {
    grpc_caught(
        GrpcDefect::ContentsAndRaw,
        &[
            "conformance::grpc_infer_raw_contents",
            "conformance::grpc_infer_matches_reference",
        ],
        &["raw"],
    )
    .await;
}
