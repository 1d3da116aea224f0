//! The engine's HTTP API driven through `app()` with `oneshot` (no socket), plus the real
//! binary on a loopback port.
#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns unwrap too: a failure there is a test failure"
)]

mod audit;
mod connection;
mod crash;
mod grpc;
mod heavy;
mod infer_edges;
mod inject;
mod openapi;
mod remote;
mod security;
mod shutdown;
mod tls;
mod trading;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use gauntlet_engine::artifact::{FeatureSpec, ImputePolicy, ModelParams, Node, Objective, Tree};
use gauntlet_engine::oip::{InferResponse, SanitiserAction};
use gauntlet_engine::{AppState, EngineConfig, ModelArtifact, app};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// `y = 0.5 + 2a − b`; features a, b with median 0, MAD 1, clipped at 3 MADs.
fn linear(name: &str, version: &str, impute: ImputePolicy) -> ModelArtifact {
    ModelArtifact {
        format: "gauntlet-model".into(),
        format_version: 1,
        name: name.into(),
        version: version.into(),
        features: ["a", "b"]
            .iter()
            .map(|n| FeatureSpec {
                name: (*n).into(),
                median: 0.0,
                mad: 1.0,
                min: -5.0,
                max: 5.0,
            })
            .collect(),
        impute,
        clip_mads: Some(3.0),
        model: ModelParams::Linear {
            intercept: 0.5,
            weights: vec![2.0, -1.0],
        },
    }
}

/// A model whose prediction is its version number.
fn constant(name: &str, version: u32) -> ModelArtifact {
    let mut a = linear(name, &version.to_string(), ImputePolicy::Median);
    a.model = ModelParams::TreeEnsemble {
        base_score: 0.0,
        objective: Objective::Regression,
        trees: vec![Tree {
            nodes: vec![Node::Leaf {
                value: f64::from(version),
            }],
        }],
    };
    a
}

fn state_with(config: EngineConfig, artifacts: &[ModelArtifact]) -> AppState {
    let state = AppState::new(config);
    for a in artifacts {
        state.registry().load(a.clone()).unwrap();
        state.registry().promote(&a.name).unwrap();
    }
    state
}

fn engine(artifacts: &[ModelArtifact]) -> Router {
    app(state_with(EngineConfig::default(), artifacts))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a JSON error body whose message contains every fragment.
    fn error(&self, status: StatusCode, fragments: &[&str]) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/json");
        let body = self.json();
        let message = body["error"].as_str().expect("an `error` string");
        for f in fragments {
            assert!(message.contains(f), "{message:?} lacks {f:?}");
        }
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, uri: &str, body: Value) -> Reply {
    post_raw(app, uri, body.to_string()).await
}

async fn post_raw(app: &Router, uri: &str, body: impl Into<Body>) -> Reply {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    send(app, request).await
}

async fn post_empty(app: &Router, uri: &str) -> Reply {
    send(app, Request::post(uri).body(Body::empty()).unwrap()).await
}

fn rows(data: Value, shape: Value) -> Value {
    json!({"id": "req-1", "inputs": [{"name": "x", "shape": shape, "datatype": "FP64", "data": data}]})
}

#[tokio::test]
async fn health_and_server_metadata() {
    let state = state_with(EngineConfig::default(), &[]);
    let app = app(state.clone());
    let live = get(&app, "/v2/health/live").await;
    assert_eq!((live.status, live.body.len()), (StatusCode::OK, 0));
    let ready = get(&app, "/v2/health/ready").await;
    assert_eq!((ready.status, ready.body.len()), (StatusCode::OK, 0));
    state.set_ready(false);
    let ready = get(&app, "/v2/health/ready").await;
    assert_eq!(
        (ready.status, ready.body.len()),
        (StatusCode::BAD_REQUEST, 0)
    );
    let meta = get(&app, "/v2").await;
    assert_eq!(meta.status, StatusCode::OK);
    assert_eq!(
        meta.json(),
        json!({"name": "gauntlet-engine", "version": env!("CARGO_PKG_VERSION"), "extensions": ["model_repository", "gauntlet_trading", "gauntlet"]})
    );
}

#[tokio::test]
async fn model_metadata_and_readiness() {
    let state = state_with(
        EngineConfig::default(),
        &[constant("m", 1), constant("m", 2)],
    );
    state.registry().load(constant("m", 3)).unwrap();
    let app = app(state);
    let meta = get(&app, "/v2/models/m").await;
    assert_eq!(meta.status, StatusCode::OK);
    assert_eq!(
        meta.json(),
        json!({
            "name": "m", "versions": ["2", "3", "1"], "platform": "gauntlet-tree_ensemble",
            "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 2]}],
            "outputs": [{"name": "prediction", "datatype": "FP64", "shape": [-1]}],
            "parameters": {"feature_names": ["a", "b"], "live_version": "2"}
        })
    );
    assert_eq!(
        get(&app, "/v2/models/m/versions/3").await.json()["name"],
        "m"
    );
    get(&app, "/v2/models/nope")
        .await
        .error(StatusCode::NOT_FOUND, &["unknown model \"nope\""]);
    get(&app, "/v2/models/m/versions/9").await.error(
        StatusCode::NOT_FOUND,
        &["no version \"9\"", "[\"2\", \"3\", \"1\"]"],
    );

    let ready = get(&app, "/v2/models/m/ready").await;
    assert_eq!((ready.status, ready.body.len()), (StatusCode::OK, 0));
    let ready = get(&app, "/v2/models/m/versions/2/ready").await;
    assert_eq!((ready.status, ready.body.len()), (StatusCode::OK, 0));
    let staged = get(&app, "/v2/models/m/versions/3/ready").await;
    assert_eq!(
        (staged.status, staged.body.len()),
        (StatusCode::BAD_REQUEST, 0)
    );
    get(&app, "/v2/models/m/versions/9/ready")
        .await
        .error(StatusCode::NOT_FOUND, &["\"9\""]);
    get(&app, "/v2/models/nope/ready")
        .await
        .error(StatusCode::NOT_FOUND, &["nope"]);
}

#[tokio::test]
async fn staged_only_model_is_not_ready_and_not_served_unversioned() {
    let state = AppState::new(EngineConfig::default());
    state.registry().load(constant("s", 1)).unwrap();
    let app = app(state);
    let ready = get(&app, "/v2/models/s/ready").await;
    assert_eq!(
        (ready.status, ready.body.len()),
        (StatusCode::BAD_REQUEST, 0)
    );
    assert_eq!(
        get(&app, "/v2/models/s").await.json()["parameters"]["live_version"],
        Value::Null
    );
    let body = rows(json!([1.0, 2.0]), json!([1, 2]));
    post(&app, "/v2/models/s/infer", body.clone())
        .await
        .error(StatusCode::BAD_REQUEST, &["no live version"]);
    // Staged testing before going live: the staged version is served by explicit version.
    let reply = post(&app, "/v2/models/s/versions/1/infer", body).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["outputs"][0]["data"], json!([1.0]));
}

#[tokio::test]
async fn infer_single_tensor_echoes_id_and_reports_changes() {
    let app = engine(&[linear("lin", "7", ImputePolicy::Median)]);
    let reply = post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([1.0, 2.0, 10.0, null]), json!([2, 2])),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let response: InferResponse = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(response.id.as_deref(), Some("req-1"));
    assert_eq!(
        (
            response.model_name.as_str(),
            response.model_version.as_str()
        ),
        ("lin", "7")
    );
    let out = &response.outputs[0];
    assert_eq!(
        (out.name.as_str(), out.shape.as_slice()),
        ("prediction", &[2u64][..])
    );
    assert_eq!(out.data, vec![0.5, 6.5]);
    let changes = &response.parameters.sanitiser_changes;
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[0].row, changes[0].feature.as_str()), (1, "a"));
    assert_eq!(changes[0].action, SanitiserAction::Clipped);
    assert_eq!((changes[0].original, changes[0].value), (Some(10.0), 3.0));
    assert_eq!(changes[1].action, SanitiserAction::Imputed);

    let one_row = post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([1.0, 2.0]), json!([2])),
    )
    .await;
    assert_eq!(one_row.json()["outputs"][0]["data"], json!([0.5]));
    assert!(one_row.json().get("id").is_some());
}

#[tokio::test]
async fn infer_per_feature_tensors_and_datatypes() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Median)]);
    let body = json!({"inputs": [
        {"name": "b", "shape": [2, 1], "datatype": "INT64", "data": [2, 0]},
        {"name": "a", "shape": [2], "datatype": "FP32", "data": [1.0, 0.5]}
    ]});
    let reply = post(&app, "/v2/models/lin/infer", body).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["outputs"][0]["data"], json!([0.5, 1.5]));
    assert!(reply.json().get("id").is_none());
}

#[tokio::test]
async fn infer_by_version_serves_that_version() {
    let state = state_with(
        EngineConfig::default(),
        &[constant("m", 1), constant("m", 2)],
    );
    let app = app(state);
    let body = rows(json!([0.0, 0.0]), json!([1, 2]));
    let live = post(&app, "/v2/models/m/infer", body.clone()).await.json();
    assert_eq!(
        (
            live["model_version"].clone(),
            live["outputs"][0]["data"].clone()
        ),
        (json!("2"), json!([2.0]))
    );
    let old = post(&app, "/v2/models/m/versions/1/infer", body.clone())
        .await
        .json();
    assert_eq!(
        (
            old["model_version"].clone(),
            old["outputs"][0]["data"].clone()
        ),
        (json!("1"), json!([1.0]))
    );
    post(&app, "/v2/models/m/versions/5/infer", body.clone())
        .await
        .error(StatusCode::NOT_FOUND, &["no version \"5\""]);
    post(&app, "/v2/models/zz/infer", body.clone())
        .await
        .error(StatusCode::NOT_FOUND, &["unknown model \"zz\""]);
    post(&app, "/v2/models/zz/versions/1/infer", body)
        .await
        .error(StatusCode::NOT_FOUND, &["unknown model"]);
}

#[tokio::test]
async fn infer_rejects_bad_requests_with_named_fields() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Reject)]);
    let url = "/v2/models/lin/infer";
    post_raw(
        &app,
        url,
        "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, \"two\"]}]}",
    )
    .await
    .error(
        StatusCode::BAD_REQUEST,
        &["invalid JSON body", "inputs[0].shape[1]", "line 1"],
    );
    post_raw(&app, url, "{\"inputs\": [")
        .await
        .error(StatusCode::BAD_REQUEST, &["invalid JSON body", "EOF"]);
    post_raw(&app, url, "")
        .await
        .error(StatusCode::BAD_REQUEST, &["invalid JSON body"]);
    let bad_type =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": [1, 2]}]});
    post(&app, url, bad_type).await.error(
        StatusCode::BAD_REQUEST,
        &["inputs[0].datatype", "unknown variant `BYTES`"],
    );
    post(&app, url, rows(json!([1.0, 2.0, 3.0]), json!([1, 3])))
        .await
        .error(
            StatusCode::BAD_REQUEST,
            &["inputs[0].shape[1]", "expected 2"],
        );
    post(&app, url, rows(json!([1.0, 2.0, 3.0]), json!([2, 2])))
        .await
        .error(
            StatusCode::BAD_REQUEST,
            &["inputs[0].data", "needs 4 values, got 3"],
        );
    post(&app, url, rows(json!([1.0, null]), json!([1, 2])))
        .await
        .error(
            StatusCode::BAD_REQUEST,
            &["row 0", "feature \"b\"", "reject"],
        );
    post(
        &app,
        url,
        rows(json!([1.5, 2.0]), json!([1, 2])).pipe_datatype("INT64"),
    )
    .await
    .error(StatusCode::BAD_REQUEST, &["inputs[0].data[0]", "INT64"]);
    let per_feature = json!({"inputs": [
        {"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "c", "shape": [1], "datatype": "FP64", "data": [1.0]}
    ]});
    post(&app, url, per_feature).await.error(
        StatusCode::BAD_REQUEST,
        &["inputs[1].name", "\"c\" is not a feature", "a, b"],
    );
    let request = Request::post(url)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            rows(json!([1.0, 2.0]), json!([1, 2])).to_string(),
        ))
        .unwrap();
    send(&app, request).await.error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &["content-type", "application/json"],
    );
}

trait PipeDatatype {
    fn pipe_datatype(self, datatype: &str) -> Value;
}

impl PipeDatatype for Value {
    fn pipe_datatype(mut self, datatype: &str) -> Value {
        self["inputs"][0]["datatype"] = json!(datatype);
        self
    }
}

#[tokio::test]
async fn non_finite_prediction_is_422_not_a_500() {
    let mut huge = linear("huge", "1", ImputePolicy::Median);
    huge.model = ModelParams::Linear {
        intercept: 0.0,
        weights: vec![1e308, 1e308],
    };
    let app = engine(&[huge]);
    post(
        &app,
        "/v2/models/huge/infer",
        rows(json!([2.0, 2.0]), json!([1, 2])),
    )
    .await
    .error(
        StatusCode::UNPROCESSABLE_ENTITY,
        &["row 0", "non-finite prediction"],
    );
}

#[tokio::test]
async fn body_and_batch_limits_are_413_with_json() {
    let config = EngineConfig {
        max_body_bytes: 200,
        max_batch_rows: 3,
        ..EngineConfig::default()
    };
    let app = app(state_with(
        config,
        &[linear("lin", "1", ImputePolicy::Median)],
    ));
    let big = rows(json!(vec![1.0; 100]), json!([50, 2]));
    // Refused from the declared Content-Length, before reading.
    let body = big.to_string();
    let request = Request::post("/v2/models/lin/infer")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body.clone()))
        .unwrap();
    send(&app, request).await.error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &[
            "request body of 480 bytes",
            "max-body-bytes limit of 200 bytes",
        ],
    );
    // Without a Content-Length header the limit holds while reading.
    post_raw(&app, "/v2/models/lin/infer", body).await.error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &["max-body-bytes limit of 200 bytes"],
    );
    post(
        &app,
        "/v2/models/lin/infer",
        rows(json!(vec![1.0; 8]), json!([4, 2])),
    )
    .await
    .error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &["inputs[0].shape[0]", "max-batch-rows limit of 3"],
    );
    post(&app, "/v2/models/lin/infer", rows(json!([]), json!([0, 2])))
        .await
        .error(StatusCode::BAD_REQUEST, &["at least 1 row"]);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Median)]);
    get(&app, "/nope")
        .await
        .error(StatusCode::NOT_FOUND, &["no route for GET /nope"]);
    let reply = get(&app, "/v2/models/lin/infer").await;
    reply.error(StatusCode::METHOD_NOT_ALLOWED, &["method not allowed"]);
    assert!(reply.headers.contains_key(header::ALLOW));
    post_empty(&app, "/v2/health/live")
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED, &[]);
    // axum's own plain-text rejections (here: a path that is not UTF-8) come back as JSON.
    get(&app, "/v2/models/%FF")
        .await
        .error(StatusCode::BAD_REQUEST, &["UTF-8"]);
}

#[tokio::test]
async fn repository_lifecycle() {
    let app = engine(&[]);
    let index = post_empty(&app, "/v2/repository/index").await;
    assert_eq!((index.status, index.json()), (StatusCode::OK, json!([])));

    let load = |a: &ModelArtifact| json!({"parameters": {"artifact": a}});
    let reply = post(
        &app,
        "/v2/repository/models/m/load",
        load(&constant("m", 1)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"name": "m", "version": "1", "state": "STAGED"})
    );
    post_empty(&app, "/v2/repository/models/m/rollback")
        .await
        .error(StatusCode::CONFLICT, &["no previous version"]);
    let reply = post_empty(&app, "/v2/repository/models/m/promote").await;
    assert_eq!(
        reply.json(),
        json!({"name": "m", "live_version": "1", "previous_version": null})
    );
    post_empty(&app, "/v2/repository/models/m/promote")
        .await
        .error(StatusCode::CONFLICT, &["no staged version"]);
    post(
        &app,
        "/v2/repository/models/m/load",
        load(&constant("m", 2)),
    )
    .await;
    let reply = post_empty(&app, "/v2/repository/models/m/promote").await;
    assert_eq!(
        reply.json(),
        json!({"name": "m", "live_version": "2", "previous_version": "1"})
    );

    let index = post(&app, "/v2/repository/index", json!({})).await.json();
    assert_eq!(
        index,
        json!([
            {"name": "m", "version": "2", "state": "READY", "reason": ""},
            {"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "previous"}
        ])
    );
    let ready_only = post(&app, "/v2/repository/index", json!({"ready": true}))
        .await
        .json();
    assert_eq!(ready_only.as_array().map(Vec::len), Some(1));
    post(&app, "/v2/repository/index", json!({"bogus": 1}))
        .await
        .error(StatusCode::BAD_REQUEST, &["unknown field `bogus`"]);

    let body = rows(json!([0.0, 0.0]), json!([1, 2]));
    let reply = post_empty(&app, "/v2/repository/models/m/rollback").await;
    assert_eq!(
        reply.json(),
        json!({"name": "m", "live_version": "1", "previous_version": "2"})
    );
    assert_eq!(
        post(&app, "/v2/models/m/infer", body.clone()).await.json()["outputs"][0]["data"],
        json!([1.0])
    );
    let reply = post_empty(&app, "/v2/repository/models/m/rollback").await;
    assert_eq!(reply.json()["live_version"], "2");

    let reply = post_empty(&app, "/v2/repository/models/m/unload").await;
    assert_eq!(
        (reply.status, reply.json()),
        (StatusCode::OK, json!({"name": "m"}))
    );
    post_empty(&app, "/v2/repository/models/m/unload")
        .await
        .error(StatusCode::NOT_FOUND, &["unknown model \"m\""]);
    post_empty(&app, "/v2/repository/models/m/promote")
        .await
        .error(StatusCode::NOT_FOUND, &["\"m\""]);
    post(&app, "/v2/models/m/infer", body)
        .await
        .error(StatusCode::NOT_FOUND, &["unknown model"]);
}

/// Regression: a different artifact loaded under the live label "1" was staged but hidden:
/// the index listed one "1", `/versions/1/infer` served the live one, and promote reported
/// live "1", previous "1".
#[tokio::test]
async fn reusing_a_live_label_for_other_content_is_a_409() {
    let app = engine(&[constant("m", 1)]);
    let mut other = constant("m", 1);
    other.model = ModelParams::Linear {
        intercept: 7.0,
        weights: vec![0.0, 0.0],
    };
    post(
        &app,
        "/v2/repository/models/m/load",
        json!({"parameters": {"artifact": other}}),
    )
    .await
    .error(
        StatusCode::CONFLICT,
        &["version 1 of m is already live with different content; give the new artifact a new version"],
    );
    post_empty(&app, "/v2/repository/models/m/promote")
        .await
        .error(StatusCode::CONFLICT, &["no staged version"]);
    // Reloading the identical artifact is still allowed.
    let reply = post(
        &app,
        "/v2/repository/models/m/load",
        json!({"parameters": {"artifact": constant("m", 1)}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        post_empty(&app, "/v2/repository/index")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// Regression: series of unloaded models stayed in `/metrics` forever.
#[tokio::test]
async fn unload_drops_the_models_metric_series() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Median), constant("m", 1)]);
    for model in ["lin", "m"] {
        post(
            &app,
            &format!("/v2/models/{model}/infer"),
            rows(json!([null, 1.0]), json!([1, 2])),
        )
        .await;
    }
    let text = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    assert!(text.contains("model=\"lin\""), "{text}");
    let reply = post_empty(&app, "/v2/repository/models/lin/unload").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    assert!(!text.contains("model=\"lin\""), "{text}");
    assert!(
        text.contains("gauntlet_requests_total{model=\"m\",status=\"200\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn load_rejects_bad_artifacts_and_names() {
    let app = engine(&[constant("m", 1)]);
    let reply = post(
        &app,
        "/v2/repository/models/other/load",
        json!({"parameters": {"artifact": constant("m", 2)}}),
    )
    .await;
    reply.error(
        StatusCode::BAD_REQUEST,
        &["parameters.artifact.name", "\"m\"", "\"other\""],
    );
    let mut bad = constant("m", 2);
    bad.features[0].mad = -1.0;
    post(
        &app,
        "/v2/repository/models/m/load",
        json!({"parameters": {"artifact": bad}}),
    )
    .await
    .error(
        StatusCode::BAD_REQUEST,
        &["invalid artifact", "features[0].mad", ">= 0"],
    );
    let mut malformed = serde_json::to_value(constant("m", 2)).unwrap();
    malformed["model"]["trees"][0]["nodes"][0]["leaf"]["value"] = json!("x");
    post(
        &app,
        "/v2/repository/models/m/load",
        json!({"parameters": {"artifact": malformed}}),
    )
    .await
    .error(
        StatusCode::BAD_REQUEST,
        &["parameters.artifact.model.trees[0].nodes[0].leaf.value"],
    );
    post(
        &app,
        "/v2/repository/models/m/load",
        json!({"parameters": {"artefact": {}}}),
    )
    .await
    .error(StatusCode::BAD_REQUEST, &["unknown field `artefact`"]);
    // Failed loads left the live version alone and staged nothing.
    assert_eq!(
        get(&app, "/v2/models/m").await.json()["versions"],
        json!(["1"])
    );
    post_empty(&app, "/v2/repository/models/..%2F..%2Fetc%2Fpasswd/load")
        .await
        .error(
            StatusCode::BAD_REQUEST,
            &["must match [A-Za-z0-9_.-]{1,64}"],
        );
    post_empty(&app, "/v2/repository/models/m/load")
        .await
        .error(StatusCode::NOT_FOUND, &["no model directory is configured"]);
}

#[tokio::test]
async fn load_from_model_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("disk.json"),
        constant("disk", 4).to_json_pretty(),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("misnamed.json"),
        constant("disk", 5).to_json_pretty(),
    )
    .unwrap();
    let config = EngineConfig {
        model_dir: Some(dir.path().to_owned()),
        ..EngineConfig::default()
    };
    let app = app(AppState::new(config));
    let reply = post_empty(&app, "/v2/repository/models/disk/load").await;
    assert_eq!(
        reply.json(),
        json!({"name": "disk", "version": "4", "state": "STAGED"})
    );
    post_empty(&app, "/v2/repository/models/absent/load")
        .await
        .error(StatusCode::NOT_FOUND, &["\"absent.json\" not found"]);
    post_empty(&app, "/v2/repository/models/broken/load")
        .await
        .error(
            StatusCode::BAD_REQUEST,
            &["\"broken.json\"", "missing field"],
        );
    post_empty(&app, "/v2/repository/models/misnamed/load")
        .await
        .error(StatusCode::BAD_REQUEST, &["file.name", "\"disk\""]);
}

#[tokio::test]
async fn metrics_expose_requests_versions_and_changes() {
    let app = engine(&[linear("lin", "3", ImputePolicy::Median)]);
    post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([null, 1.0]), json!([1, 2])),
    )
    .await;
    post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([1.0]), json!([1, 2])),
    )
    .await;
    post(
        &app,
        "/v2/models/ghost/infer",
        rows(json!([1.0]), json!([1, 2])),
    )
    .await;
    let reply = get(&app, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(reply.body).unwrap();
    for line in [
        "gauntlet_requests_total{model=\"lin\",status=\"200\"} 1",
        "gauntlet_requests_total{model=\"lin\",status=\"400\"} 1",
        "gauntlet_requests_total{model=\"\",status=\"404\"} 1",
        "gauntlet_request_duration_seconds_count{model=\"lin\"} 2",
        "gauntlet_model_live_version{model=\"lin\",version=\"3\"} 1",
        "gauntlet_sanitiser_changes_total{action=\"imputed\",feature=\"a\",model=\"lin\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        !text.contains("ghost"),
        "unknown model names never become labels"
    );
}

// ---- the real binary ----

fn write_model_dir(dir: &Path) {
    std::fs::write(
        dir.join("lin.json"),
        linear("lin", "1", ImputePolicy::Median).to_json_pretty(),
    )
    .unwrap();
}

fn http_request(port: u16, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("the engine did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn binary_serves_on_an_ephemeral_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let (mut child, port) = shutdown::spawn_engine(dir.path(), &[]);
    assert_ne!(port, 0);

    let body = rows(json!([1.0, 2.0]), json!([1, 2])).to_string();
    let response = http_request(
        port,
        &format!(
            "POST /v2/models/lin/infer HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"model_version\":\"1\""), "{response}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
}

fn run_failing(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gauntlet-engine"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nmax-bodybytes = 5\n").unwrap();
    let (code, stderr) = run_failing(&["--config".as_ref(), config.as_os_str()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("max-bodybytes"), "{stderr}");
    assert!(stderr.contains("engine.toml"), "{stderr}");
    let (code, stderr) = run_failing(&["--listen".as_ref(), "not-an-address".as_ref()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");
}

#[test]
fn model_dir_failures_exit_with_documented_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.json"), "{").unwrap();
    let (code, stderr) = run_failing(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--model-dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.json"), "{stderr}");
    let missing = dir.path().join("missing");
    let (code, stderr) = run_failing(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--model-dir".as_ref(),
        missing.as_os_str(),
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}
