//! Security micro-benchmarks (figures in `benches/README.md`, targets from issue 12):
//! - `security/sign_verify`: verify one admin request's signature (≤ 5 µs);
//! - `security/bearer_check`: the read-token check a predict request pays (≤ 2 µs added), and
//!   `security/infer_*`: a whole one-row infer through the router without and with it;
//! - `security/load_*`: parse + compile of a 100-tree depth-6 artifact, plain and decrypted +
//!   verified from its envelope (≤ 2× plain).
//!
//! Like `batch_benches` in `engine.rs`, these measure the bench thread's CPU time (the infer
//! router runs on a current-thread runtime, so on the same thread): on a host shared with
//! builds, wall time says more about the neighbours than about the code.

use std::hint::black_box;

use axum::body::Body;
use criterion::Criterion;
use gauntlet_engine::security::keyring::Keyring;
use gauntlet_engine::security::{ReadTokens, Security, SecurityConfig, envelope, sign};
use gauntlet_engine::{AppState, EngineConfig, Model, ModelArtifact, app};
use tower::ServiceExt as _;

#[path = "support/cpu_time.rs"]
mod cpu_time;

use cpu_time::ThreadCpuTime;

type Cpu = Criterion<ThreadCpuTime>;

fn forest() -> ModelArtifact {
    let base = gauntlet_fixtures::load_embedded()
        .expect("embedded models")
        .into_iter()
        .find(|a| a.name == "ref-ensemble")
        .expect("ref-ensemble");
    gauntlet_fixtures::random_forest(&base, 100, 6, 100)
}

fn bench_sign(c: &mut Cpu) {
    let secret = [7u8; 32];
    let body = br#"{"parameters":{"artifact":null}}"#;
    let headers = [("content-type", "application/json")];
    let request = sign::Request {
        method: "POST",
        path: "/v2/repository/models/ref-ensemble/load",
        query: None,
        headers: &headers,
        body,
        key_id: "ops-1",
        timestamp: 1_767_225_600,
        nonce: "0123456789abcdef0123456789abcdef",
    };
    let signature = sign::sign(&secret, &request);
    c.bench_function("security/sign_verify", |b| {
        b.iter(|| {
            sign::verify(
                black_box(&secret),
                black_box(&request),
                black_box(&signature),
            )
        });
    });
    let mut tokens = ReadTokens::default();
    tokens.insert_token("tok-0123456789abcdef0123456789abcdef", "predictor");
    c.bench_function("security/bearer_check", |b| {
        b.iter(|| tokens.accepts(black_box(b"tok-0123456789abcdef0123456789abcdef")));
    });
}

fn infer_app(tokens: Option<ReadTokens>) -> axum::Router {
    let config = EngineConfig {
        security: SecurityConfig {
            read_tokens: tokens.as_ref().map(|_| "tokens.toml".into()),
            ..SecurityConfig::default()
        },
        ..EngineConfig::default()
    };
    let security = Security::from_parts(&config.security, None, None, tokens);
    let state = AppState::with_security(config, security);
    let model = forest();
    state.registry().load(model).expect("load");
    state
        .registry()
        .promote("bench-ensemble-100x6")
        .expect("promote");
    app(state)
}

fn bench_infer(c: &mut Cpu) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let n = forest().features.len();
    let body = serde_json::json!({"inputs": [{"name": "x", "shape": [1, n], "datatype": "FP64", "data": vec![0.0; n]}]}).to_string();
    let mut tokens = ReadTokens::default();
    tokens.insert_token("tok-0123456789abcdef0123456789abcdef", "predictor");
    // Alternating A/B in one run: the host's stalls hit both alike.
    let mut group = c.benchmark_group("security/infer");
    for (label, app, auth) in [
        ("open", infer_app(None), false),
        ("bearer", infer_app(Some(tokens)), true),
    ] {
        group.bench_function(label, |b| {
            b.to_async(&runtime).iter(|| {
                let mut request = http::Request::post("/v2/models/bench-ensemble-100x6/infer")
                    .header("content-type", "application/json");
                if auth {
                    request = request.header(
                        "authorization",
                        "Bearer tok-0123456789abcdef0123456789abcdef",
                    );
                }
                let request = request.body(Body::from(body.clone())).expect("request");
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await.expect("infallible");
                    assert_eq!(response.status(), 200);
                }
            });
        });
    }
    group.finish();
}

fn bench_load(c: &mut Cpu) {
    let artifact = forest();
    let plain = serde_json::to_vec(&artifact).expect("json");
    let mut ring = Keyring::new();
    ring.add_random("k1").expect("key");
    let sealed =
        envelope::encrypt(&mut ring, &artifact.name, &artifact.version, &plain).expect("encrypt");
    let config = SecurityConfig {
        keyring: Some("keyring.toml".into()),
        ..SecurityConfig::default()
    };
    let security = Security::from_parts(&config, Some(ring), None, None);
    let mut group = c.benchmark_group("security/load");
    // A load takes tens of milliseconds: 20 samples keep a run under half a minute.
    group.sample_size(20);
    group.bench_function("plain", |b| {
        b.iter(|| {
            let a = security
                .open_artifact(black_box(&plain), None)
                .expect("open");
            Model::from_artifact(a).expect("compile")
        });
    });
    group.bench_function("encrypted", |b| {
        b.iter(|| {
            let a = security
                .open_artifact(black_box(&sealed), Some("bench-ensemble-100x6"))
                .expect("open");
            Model::from_artifact(a).expect("compile")
        });
    });
    group.finish();
    println!(
        "security/load: artifact {} bytes plain, {} bytes sealed",
        plain.len(),
        sealed.len()
    );
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .with_measurement(ThreadCpuTime);
    bench_sign(&mut c);
    bench_infer(&mut c);
    bench_load(&mut c);
    c.final_summary();
}
