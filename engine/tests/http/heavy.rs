//! Heavy batches: served off the async workers, so probes, the request deadline and its
//! metrics keep working while one runs. `#[tokio::test]` runs on one thread, as a busy
//! server's only free worker would.

use super::*;

/// `trees` single-leaf trees of value 1 over features a, b: each row predicts `trees`.
pub(crate) fn heavy(trees: usize) -> ModelArtifact {
    let mut a = constant("heavy", 1);
    a.model = ModelParams::TreeEnsemble {
        base_score: 0.0,
        objective: Objective::Regression,
        trees: vec![
            Tree {
                nodes: vec![Node::Leaf { value: 1.0 }],
            };
            trees
        ],
    };
    a
}

/// One chain tree of `depth` splits on feature a, each sending a = 0.5 right to the next:
/// every row walks all of them.
pub(crate) fn chain(depth: usize) -> ModelArtifact {
    let mut a = constant("chain", 1);
    let mut nodes = Vec::with_capacity(2 * depth + 1);
    for i in 0..depth {
        nodes.push(Node::Split {
            feature: 0,
            threshold: 0.0,
            left: 2 * i + 1,
            right: 2 * i + 2,
            default_left: true,
        });
        nodes.push(Node::Leaf { value: 0.0 });
    }
    nodes.push(Node::Leaf { value: 1.0 });
    a.model = ModelParams::TreeEnsemble {
        base_score: 0.0,
        objective: Objective::Regression,
        trees: vec![Tree { nodes }],
    };
    a
}

/// A body of `n` rows of two features.
pub(crate) fn heavy_rows(n: usize) -> Value {
    rows(json!(vec![0.5; 2 * n]), json!([n, 2]))
}

/// Regression: a 10,000-row batch on a 100,000-tree model ran on a tokio worker for seconds:
/// probes waited behind it, `request-timeout` never answered 408, and the 408 (once answered)
/// was not counted. The batch is held on the blocking pool until its deadline (a test hook),
/// so it outlasts the deadline at any optimisation level; its work (5,000 rows × 100 trees)
/// is over the inline limit, so it runs there.
#[tokio::test]
async fn heavy_batch_leaves_the_worker_free_and_its_408_is_counted() {
    let config = EngineConfig {
        request_timeout: Some(Duration::from_millis(500)),
        ..EngineConfig::default()
    };
    let mut held = heavy(100);
    held.name = "held".to_owned();
    gauntlet_engine::test_hooks::hold_batches_of("held", Duration::from_secs(10));
    let app = app(state_with(config, &[held]));
    let started = Instant::now();
    let held_app = app.clone();
    let call =
        tokio::spawn(
            async move { post(&held_app, "/v2/models/held/infer", heavy_rows(5_000)).await },
        );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let live = get(&app, "/v2/health/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(
        !call.is_finished(),
        "the probe was answered while the batch ran"
    );
    call.await
        .unwrap()
        .error(StatusCode::REQUEST_TIMEOUT, &["request-timeout of 500ms"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "408 after {:?}",
        started.elapsed()
    );
    let text = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    for line in [
        "gauntlet_requests_total{model=\"held\",status=\"408\"} 1",
        "gauntlet_request_duration_seconds_count{model=\"held\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn heavy_batch_off_the_workers_predicts_every_row() {
    let app = engine(&[heavy(100_000)]);
    let reply = post(&app, "/v2/models/heavy/infer", heavy_rows(100)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.json()["outputs"][0]["data"],
        json!(vec![100_000.0; 100])
    );
}

/// Regression: the cost model counted trees, not the nodes walked, so a batch on one deep
/// chain tree ran inline on the async worker: the deadline could not fire (the batch answered
/// 200 long after it) and probes waited behind it.
#[tokio::test]
async fn deep_tree_batch_goes_off_the_worker() {
    let config = EngineConfig {
        request_timeout: Some(Duration::from_millis(200)),
        ..EngineConfig::default()
    };
    // Held on the blocking pool until the deadline (a test hook): the 408 comes at any
    // optimisation level. Inline, it would not be held, and the probe would wait.
    let mut held = chain(50_000);
    held.name = "held-chain".to_owned();
    gauntlet_engine::test_hooks::hold_batches_of("held-chain", Duration::from_secs(10));
    let app = app(state_with(config, &[held]));
    let started = Instant::now();
    let chain_app = app.clone();
    let call = tokio::spawn(async move {
        post(&chain_app, "/v2/models/held-chain/infer", heavy_rows(5_000)).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(&app, "/v2/health/live").await.status, StatusCode::OK);
    assert!(
        !call.is_finished(),
        "the probe was answered only after the batch"
    );
    call.await
        .unwrap()
        .error(StatusCode::REQUEST_TIMEOUT, &["request-timeout of 200ms"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "408 after {:?}",
        started.elapsed()
    );
}
