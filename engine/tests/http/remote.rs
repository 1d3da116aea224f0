//! `[[remote-model]]`: a frontend engine (driven with `oneshot`) serving a model from a real
//! backend engine on a loopback port, through its circuit breaker and fallback chain.

use gauntlet_engine::backend::{BreakerConfig, Fallback, RemoteModelConfig};
use tokio::sync::oneshot;

use super::*;

/// A backend engine serving `lin` (`0.5 + 2a − b`) on loopback until stopped.
struct Backend {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Backend {
    async fn start(addr: &str, latency: Duration) -> Backend {
        Backend::start_version(addr, latency, "1").await
    }

    /// A backend whose `lin` is `version`: its answers say which backend gave them.
    async fn start_version(addr: &str, latency: Duration, version: &str) -> Backend {
        let config = EngineConfig {
            inject_latency: latency,
            shutdown_grace: Duration::from_millis(200),
            ..EngineConfig::default()
        };
        let state = state_with(config, &[linear("lin", version, ImputePolicy::Median)]);
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gauntlet_engine::serve(listener, state, async {
            let _ = rx.await;
        }));
        Backend {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) -> std::net::SocketAddr {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("backend stops")
            .unwrap()
            .unwrap();
        self.addr
    }
}

fn breaker() -> BreakerConfig {
    BreakerConfig {
        sliding_window_size: 4,
        minimum_number_of_calls: 4,
        wait_duration_in_open_state: Duration::from_millis(300),
        permitted_number_of_calls_in_half_open_state: 2,
        ..BreakerConfig::default()
    }
}

fn frontend(
    backend: std::net::SocketAddr,
    breaker: BreakerConfig,
    local: &[ModelArtifact],
) -> Router {
    app(frontend_state(backend, breaker, local))
}

fn frontend_state(
    backend: std::net::SocketAddr,
    breaker: BreakerConfig,
    local: &[ModelArtifact],
) -> AppState {
    let config = EngineConfig {
        remote_models: vec![RemoteModelConfig {
            name: "lin".into(),
            backend: format!("http://{backend}"),
            remote_name: None,
            timeout: Duration::from_millis(300),
            rule_model: Some("rule".into()),
            neutral: 0.25,
            breaker,
        }],
        ..EngineConfig::default()
    };
    config.validate().unwrap();
    state_with(config, local)
}

async fn infer(app: &Router) -> Reply {
    post(
        app,
        "/v2/models/lin/infer",
        rows(json!([1.0, 2.0, 0.0, 0.0]), json!([2, 2])),
    )
    .await
}

/// The prediction and the `degraded` flag of a 200.
fn answer(reply: &Reply) -> (Vec<f64>, Option<Fallback>) {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let r: InferResponse = serde_json::from_slice(&reply.body).unwrap();
    (r.outputs[0].data.clone(), r.parameters.degraded)
}

async fn metrics(app: &Router) -> String {
    String::from_utf8(get(app, "/metrics").await.body).unwrap()
}

/// An address nothing listens on: connections are refused at once.
async fn dead_address() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_model_is_served_by_its_backend() {
    let backend = Backend::start("127.0.0.1:0", Duration::ZERO).await;
    let app = frontend(backend.addr, breaker(), &[]);
    let reply = infer(&app).await;
    assert_eq!(answer(&reply), (vec![0.5, 0.5], None));
    assert_eq!(
        reply.json()["id"],
        "req-1",
        "the backend's answer, id echoed"
    );
    // A client error is the backend's answer too, and no failure of the backend.
    let reply = post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([1.0, 2.0, 3.0]), json!([1, 3])),
    )
    .await;
    reply.error(StatusCode::BAD_REQUEST, &["inputs[0].shape[1]: expected 2"]);
    let text = metrics(&app).await;
    for line in [
        "gauntlet_breaker_calls_total{model=\"lin\",outcome=\"success\"} 1",
        "gauntlet_breaker_calls_total{model=\"lin\",outcome=\"ignored\"} 1",
        "gauntlet_breaker_state{model=\"lin\",state=\"closed\"} 1",
        "gauntlet_requests_total{model=\"lin\",status=\"200\"} 1",
        "gauntlet_requests_total{model=\"lin\",status=\"400\"} 1",
        // The window holds the one success; the client error was not the backend's.
        "gauntlet_breaker_buffered_calls{kind=\"successful\",model=\"lin\"} 1",
        "gauntlet_breaker_buffered_calls{kind=\"failed\",model=\"lin\"} 0",
        "gauntlet_breaker_slow_calls{model=\"lin\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains("gauntlet_degraded_responses_total{"),
        "{text}"
    );
    // 1 call of the 4 the rates need: undefined, so absent rather than 0.
    assert!(!text.contains("gauntlet_breaker_failure_rate{"), "{text}");
    assert!(!text.contains("gauntlet_breaker_slow_call_rate{"), "{text}");
    // Malformed JSON is refused before the backend is asked.
    let reply = post_raw(&app, "/v2/models/lin/infer", "{").await;
    reply.error(StatusCode::BAD_REQUEST, &["invalid JSON body"]);
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_opens_the_breaker_and_the_fallback_chain_answers() {
    let dead = dead_address().await;
    // Last good local model first: `lin` v7 predicts 7.
    let app = frontend(dead, breaker(), &[constant("lin", 7), constant("rule", 3)]);
    for call in 1..=4 {
        let (data, degraded) = answer(&infer(&app).await);
        assert_eq!(
            (data, degraded),
            (vec![7.0, 7.0], Some(Fallback::LastGood)),
            "call {call}"
        );
    }
    let text = metrics(&app).await;
    assert!(
        text.contains("gauntlet_breaker_state{model=\"lin\",state=\"open\"} 1"),
        "4 failures of a 4-call window open it:\n{text}"
    );
    // Open: the backend is not asked, the fallback answers.
    answer(&infer(&app).await);
    let text = metrics(&app).await;
    for line in [
        "gauntlet_breaker_calls_total{model=\"lin\",outcome=\"failure\"} 4",
        "gauntlet_breaker_calls_total{model=\"lin\",outcome=\"not_permitted\"} 1",
        "gauntlet_degraded_responses_total{fallback=\"last-good\",model=\"lin\"} 5",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }

    // No local `lin`: the rule model, then the neutral prediction.
    let app = frontend(dead, breaker(), &[constant("rule", 3)]);
    assert_eq!(
        answer(&infer(&app).await),
        (vec![3.0, 3.0], Some(Fallback::Rule))
    );
    let app = frontend(dead, breaker(), &[]);
    let reply = infer(&app).await;
    assert_eq!(answer(&reply), (vec![0.25, 0.25], Some(Fallback::Neutral)));
    assert_eq!(reply.json()["parameters"]["degraded"], "neutral");
    assert_eq!(reply.json()["id"], "req-1");
    // Neutral still refuses a batch whose data does not fill its shape.
    let reply = post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([1.0, 2.0, 3.0]), json!([2, 2])),
    )
    .await;
    reply.error(StatusCode::BAD_REQUEST, &["does not hold the 3 values"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_backend_times_out_and_a_restarted_one_closes_the_breaker() {
    // A listener that accepts and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hole.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            conns.push(c);
        }
    });
    let app = frontend(addr, breaker(), &[constant("lin", 7)]);
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(answer(&infer(&app).await).1, Some(Fallback::LastGood));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(4 * 300),
        "each call waited its timeout"
    );
    assert!(metrics(&app).await.contains("state=\"open\"} 1"));
    let open_at = Instant::now();
    held.abort();
    let _ = held.await;
    // The backend comes back on the same port.
    let backend = Backend::start(&addr.to_string(), Duration::ZERO).await;
    // Still open within the wait duration.
    assert_eq!(answer(&infer(&app).await).1, Some(Fallback::LastGood));
    tokio::time::sleep(Duration::from_millis(300).saturating_sub(open_at.elapsed())).await;
    // Half-open: two trial calls, both served by the backend, close it.
    assert_eq!(answer(&infer(&app).await), (vec![0.5, 0.5], None));
    assert!(metrics(&app).await.contains("state=\"half-open\"} 1"));
    assert_eq!(answer(&infer(&app).await), (vec![0.5, 0.5], None));
    assert!(metrics(&app).await.contains("state=\"closed\"} 1"));
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_opens_the_breaker_on_its_slow_call_rate() {
    let backend = Backend::start("127.0.0.1:0", Duration::from_millis(60)).await;
    let app = frontend(
        backend.addr,
        BreakerConfig {
            slow_call_duration_threshold: Duration::from_millis(40),
            slow_call_rate_threshold: 50.0,
            ..breaker()
        },
        &[constant("lin", 7)],
    );
    // Slow but successful: answered by the backend until the window is full.
    for _ in 0..4 {
        assert_eq!(answer(&infer(&app).await), (vec![0.5, 0.5], None));
    }
    let text = metrics(&app).await;
    assert!(
        text.contains("gauntlet_breaker_state{model=\"lin\",state=\"open\"} 1"),
        "{text}"
    );
    assert!(text.contains("outcome=\"success\"} 4"), "{text}");
    assert_eq!(answer(&infer(&app).await).1, Some(Fallback::LastGood));
    backend.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_open_breaker_never_asks_the_backend() {
    let backend = Backend::start("127.0.0.1:0", Duration::ZERO).await;
    let app = frontend(
        backend.addr,
        BreakerConfig {
            state: gauntlet_engine::backend::InitialState::ForcedOpen,
            ..breaker()
        },
        &[],
    );
    assert_eq!(answer(&infer(&app).await).1, Some(Fallback::Neutral));
    assert!(metrics(&app).await.contains("state=\"forced-open\"} 1"));
    backend.stop().await;
}

/// The version of `lin` a 200 that is not degraded names: which backend answered.
fn served_by(reply: &Reply) -> String {
    let (_, degraded) = answer(reply);
    assert_eq!(degraded, None, "a degraded answer, not the backend's");
    reply.json()["model_version"].as_str().unwrap().to_owned()
}

/// Blue/green: `POST /v2/repository/models/lin/backend` sends the next calls to green while a
/// call already on its way to blue finishes there, with no failure and nothing degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_switch_is_atomic_and_lets_calls_under_way_finish() {
    let blue = Backend::start_version("127.0.0.1:0", Duration::from_millis(150), "blue").await;
    let green = Backend::start_version("127.0.0.1:0", Duration::ZERO, "green").await;
    let app = frontend(blue.addr, breaker(), &[]);
    assert_eq!(served_by(&infer(&app).await), "blue");

    let in_flight = tokio::spawn({
        let app = app.clone();
        async move { infer(&app).await }
    });
    // Well inside blue's 150 ms: the call is under way when the switch lands.
    tokio::time::sleep(Duration::from_millis(40)).await;
    let switched = post(
        &app,
        "/v2/repository/models/lin/backend",
        json!({"backend": format!("http://{}", green.addr)}),
    )
    .await;
    assert_eq!(switched.status, StatusCode::OK, "{:?}", switched.json());
    assert_eq!(switched.json()["previous"], format!("http://{}", blue.addr));
    assert_eq!(switched.json()["backend"], format!("http://{}", green.addr));
    assert_eq!(served_by(&in_flight.await.unwrap()), "blue");
    assert_eq!(served_by(&infer(&app).await), "green");

    // Blue decommissioned: nothing goes there any more.
    blue.stop().await;
    for _ in 0..6 {
        assert_eq!(served_by(&infer(&app).await), "green");
    }
    let m = metrics(&app).await;
    assert!(
        m.contains("gauntlet_breaker_state{model=\"lin\",state=\"closed\"} 1"),
        "{m}"
    );
    assert!(!m.contains("outcome=\"failure\""), "no call failed: {m}");
    green.stop().await;
}

/// A switch that cannot be made changes nothing and says why: an unknown or local model
/// (404), a backend that is not `http://host:port` or an unknown field (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_backend_switch_is_refused_and_changes_nothing() {
    let blue = Backend::start_version("127.0.0.1:0", Duration::ZERO, "blue").await;
    let app = frontend(
        blue.addr,
        breaker(),
        &[linear("local", "1", ImputePolicy::Median)],
    );
    for (path, body, status, needle) in [
        (
            "/v2/repository/models/nope/backend",
            json!({"backend": "http://127.0.0.1:9"}),
            StatusCode::NOT_FOUND,
            "no remote model \"nope\"",
        ),
        (
            "/v2/repository/models/local/backend",
            json!({"backend": "http://127.0.0.1:9"}),
            StatusCode::NOT_FOUND,
            "no remote model \"local\"",
        ),
        (
            "/v2/repository/models/lin/backend",
            json!({"backend": "https://127.0.0.1:9"}),
            StatusCode::BAD_REQUEST,
            "backend: \"https://127.0.0.1:9\" must start with http://",
        ),
        (
            "/v2/repository/models/lin/backend",
            json!({"backend": "http://127.0.0.1"}),
            StatusCode::BAD_REQUEST,
            "has no port",
        ),
        (
            "/v2/repository/models/lin/backend",
            json!({"backend": "http://127.0.0.1:9", "drain": true}),
            StatusCode::BAD_REQUEST,
            "unknown field `drain`",
        ),
        (
            "/v2/repository/models/lin/backend",
            json!({}),
            StatusCode::BAD_REQUEST,
            "missing field `backend`",
        ),
    ] {
        let reply = post(&app, path, body).await;
        assert_eq!(reply.status, status, "{path}: {:?}", reply.json());
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(needle), "{path}: {error}");
    }
    assert_eq!(served_by(&infer(&app).await), "blue");
    blue.stop().await;
}

/// Over gRPC a remote model takes the same path as over HTTP: the backend's prediction while
/// it answers, then a fallback flagged in the parameter `degraded`, the same calls counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_model_over_grpc_answers_from_its_backend_then_a_flagged_fallback() {
    use gauntlet_oip_grpc::inference::{
        ModelMetadataRequest, ModelReadyRequest, infer_parameter::ParameterChoice,
    };
    let backend = Backend::start("127.0.0.1:0", Duration::ZERO).await;
    let state = frontend_state(backend.addr, breaker(), &[constant("rule", 3)]);
    let http = app(state.clone());
    let (mut c, _stop) = super::grpc::start(state).await;
    let call = || {
        super::grpc::infer(
            "lin",
            vec![super::grpc::tensor(
                "features",
                "FP64",
                &[2, 2],
                super::grpc::fp64(&[1.0, 2.0, 0.0, 0.0]),
            )],
        )
    };
    let degraded = |r: &gauntlet_oip_grpc::inference::ModelInferResponse| {
        r.parameters
            .get("degraded")
            .and_then(|p| p.parameter_choice.clone())
    };

    let served = c.model_infer(call()).await.unwrap().into_inner();
    assert_eq!(
        served.outputs[0].contents.as_ref().unwrap().fp64_contents,
        [0.5, 0.5],
        "the backend's prediction (0.5 + 2a - b)"
    );
    assert_eq!((served.id.as_str(), degraded(&served)), ("req-1", None));
    // Metadata and readiness of a model only the backend has: the backend's, under our name.
    let meta = c
        .model_metadata(ModelMetadataRequest {
            name: "lin".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "lin");
    assert_eq!(meta.inputs[0].shape, [-1, 2]);
    assert_eq!(meta.outputs[0].name, "prediction");
    let ready = |name: &str| ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    };
    assert!(
        c.model_ready(ready("lin"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let over_http = get(&http, "/v2/models/lin").await;
    assert_eq!(over_http.status, StatusCode::OK);
    assert_eq!(over_http.json()["name"], "lin");
    assert_eq!(
        get(&http, "/v2/models/lin/ready").await.status,
        StatusCode::OK
    );
    // A request the backend refuses is refused with its message, and is no backend failure.
    let wide = super::grpc::infer(
        "lin",
        vec![super::grpc::tensor(
            "features",
            "FP64",
            &[1, 3],
            super::grpc::fp64(&[1.0, 2.0, 3.0]),
        )],
    );
    super::grpc::refused(
        c.model_infer(wide).await,
        tonic::Code::InvalidArgument,
        &["inputs[0].shape[1]: expected 2"],
    );

    backend.stop().await;
    let fallen = c.model_infer(call()).await.unwrap().into_inner();
    assert_eq!(
        fallen.outputs[0].contents.as_ref().unwrap().fp64_contents,
        [3.0, 3.0]
    );
    assert_eq!(
        degraded(&fallen),
        Some(ParameterChoice::StringParam("rule".into())),
        "flagged as the HTTP answer's parameters.degraded"
    );
    // The same call over HTTP says the same.
    assert_eq!(
        answer(&infer(&http).await),
        (vec![3.0, 3.0], Some(Fallback::Rule))
    );
    // Without a backend there is no metadata to give, but the model still answers.
    super::grpc::refused(
        c.model_metadata(ModelMetadataRequest {
            name: "lin".into(),
            version: String::new(),
        })
        .await,
        tonic::Code::Unavailable,
        &["remote backend"],
    );
    assert!(
        c.model_ready(ready("lin"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    get(&http, "/v2/models/lin")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, &["remote backend"]);
    let text = metrics(&http).await;
    for line in [
        "gauntlet_breaker_calls_total{model=\"lin\",outcome=\"success\"} 1",
        "gauntlet_breaker_calls_total{model=\"lin\",outcome=\"ignored\"} 1",
        "gauntlet_degraded_responses_total{fallback=\"rule\",model=\"lin\"} 2",
        "gauntlet_requests_total{model=\"lin\",status=\"200\"} 3",
        "gauntlet_requests_total{model=\"lin\",status=\"400\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}
