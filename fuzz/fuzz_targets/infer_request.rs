//! The infer request decoder, through the engine's whole router: any body posted to
//! `/v2/models/ref-linear/infer` gets a 2xx or a 4xx with a JSON `{"error": string}` that
//! shows no internals — never a 5xx, a panic or a hang.
#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

use gauntlet_engine::{AppState, EngineConfig};

/// One engine with the reference models, and a runtime to drive it.
static ENGINE: LazyLock<(tokio::runtime::Runtime, axum::Router)> = LazyLock::new(|| {
    let state = AppState::new(EngineConfig::default());
    for artifact in gauntlet_fixtures::load_embedded().expect("reference models") {
        let name = artifact.name.clone();
        state.registry().load(artifact).expect("load");
        state.registry().promote(&name).expect("promote");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (runtime, gauntlet_engine::app(state))
});

fuzz_target!(|body: &[u8]| {
    let (runtime, app) = &*ENGINE;
    let request = Request::post("/v2/models/ref-linear/infer")
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("request");
    let (status, bytes) = runtime.block_on(async {
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        (
            status,
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes(),
        )
    });
    assert!(!status.is_server_error(), "{status} for {body:?}");
    if status.is_client_error() {
        let error: serde_json::Value = serde_json::from_slice(&bytes).expect("4xx body is JSON");
        let message = error["error"]
            .as_str()
            .expect("4xx body has an error string");
        assert!(
            !message.contains("panicked") && !message.contains(".rs:"),
            "internals in {message:?}"
        );
    }
});
