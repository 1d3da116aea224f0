//! `--inject-latency`: a deliberately slowed engine, over real HTTP with the real binary.

use super::*;

/// One `connection: close` infer request for `lin`; returns the response and how long it took.
fn timed_infer(port: u16) -> (String, Duration) {
    let body = rows(json!([1.0, 2.0]), json!([1, 2])).to_string();
    let start = Instant::now();
    let response = http_request(
        port,
        &format!(
            "POST /v2/models/lin/infer HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    (response, start.elapsed())
}

/// Kills the engine, which must still be running: it exits only when told to.
fn stop(mut child: gauntlet_testkit::KillOnDrop) {
    child.kill().unwrap();
    child.wait().unwrap();
}

const DELAY: Duration = Duration::from_secs(1);

#[test]
fn injected_latency_delays_every_infer_response_but_no_other_route() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let (child, port) = shutdown::spawn_engine(dir.path(), &["--inject-latency", "1s"]);
    let (response, took) = timed_infer(port);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"model_name\":\"lin\""), "{response}");
    assert!(
        took >= DELAY,
        "answered in {took:?}, under the injected {DELAY:?}"
    );
    // An error answer of the infer route is delayed too.
    let start = Instant::now();
    let response = http_request(
        port,
        "POST /v2/models/ghost/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    );
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(start.elapsed() >= DELAY, "{:?}", start.elapsed());
    // Probes are not: a generous bound, well under the delay, that a loaded machine meets.
    let start = Instant::now();
    let response = http_request(
        port,
        "GET /v2/health/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(start.elapsed() < DELAY, "{:?}", start.elapsed());
    stop(child);
}

#[test]
fn default_engine_injects_no_latency() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let (child, port) = shutdown::spawn_engine(dir.path(), &[]);
    let (response, took) = timed_infer(port);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Not a latency assertion: only that the 1 s the other tests inject is not there.
    assert!(took < DELAY, "answered in {took:?}");
    stop(child);
}

/// The delay is a timer, not a blocked worker: with one worker thread, four delayed requests
/// at once finish in about one delay, where a blocking sleep would serialise them (≥ 4 s).
#[test]
fn injected_latency_does_not_block_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let (child, port) = shutdown::spawn_engine(
        dir.path(),
        &["--inject-latency", "1s", "--worker-threads", "1"],
    );
    let start = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || timed_infer(port)))
        .collect();
    for client in clients {
        let (response, took) = client.join().unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(took >= DELAY, "{took:?}");
    }
    let all = start.elapsed();
    assert!(
        all < 3 * DELAY,
        "four requests took {all:?}: the delay blocked the worker"
    );
    stop(child);
}

#[test]
fn inject_latency_over_the_limit_exits_2_naming_the_flag_and_the_limit() {
    let (code, stderr) = run_failing(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--inject-latency".as_ref(),
        "61s".as_ref(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--inject-latency"), "{stderr}");
    assert!(stderr.contains("must be at most 1m, got 1m 1s"), "{stderr}");
    let (code, stderr) = run_failing(&["--worker-threads".as_ref(), "0".as_ref()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("worker-threads"), "{stderr}");
}

/// The runtime's default worker count honours tokio's `TOKIO_WORKER_THREADS`, and tokio
/// panics on a bad value of it (a backtrace, exit 101). The engine reads it first: a bad value
/// is exit 2 naming the variable and the limit; a good one is used. A missing model directory
/// ends every run (exit 3 once the runtime is up), so no engine here keeps serving.
#[test]
fn bad_tokio_worker_threads_env_exits_2_naming_it() {
    let run = |value: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_gauntlet-engine"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--model-dir",
                "/nonexistent/gauntlet",
            ])
            .env("RUST_LOG", "off")
            .env("TOKIO_WORKER_THREADS", value)
            .env_remove("GAUNTLET_ENGINE_WORKER_THREADS")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for (value, limit) in [("0", "got 0"), ("abc", "got \"abc\""), ("1025", "got 1025")] {
        let (code, stderr) = run(value);
        assert_eq!(code, Some(2), "TOKIO_WORKER_THREADS={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("TOKIO_WORKER_THREADS"), "{stderr}");
        assert!(stderr.contains("between 1 and 1024"), "{stderr}");
        assert!(stderr.contains(limit), "{stderr}");
    }
    // A good value still starts the runtime: the run gets as far as the model directory.
    let (code, stderr) = run("2");
    assert_eq!(code, Some(3), "{stderr}");
    // The engine's own setting wins, and tokio's variable is then not read at all.
    let output = Command::new(env!("CARGO_BIN_EXE_gauntlet-engine"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--model-dir",
            "/nonexistent/gauntlet",
        ])
        .args(["--worker-threads", "1"])
        .env("RUST_LOG", "off")
        .env("TOKIO_WORKER_THREADS", "abc")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A request answered 408 while its injected delay ran is counted as a 408, and the values the
/// sanitiser changed for it are not counted: no client received them, as for a batch cut
/// short by the deadline (`heavy.rs`). The delay stands for a slow model, so it comes before
/// the changes are recorded.
#[tokio::test]
async fn request_timed_out_in_the_injected_delay_counts_no_sanitiser_changes() {
    let config = EngineConfig {
        request_timeout: Some(Duration::from_millis(100)),
        inject_latency: Duration::from_secs(5),
        ..EngineConfig::default()
    };
    let app = app(state_with(
        config,
        &[linear("lin", "1", ImputePolicy::Median)],
    ));
    post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([null, 2.0]), json!([1, 2])),
    )
    .await
    .error(StatusCode::REQUEST_TIMEOUT, &["request-timeout of 100ms"]);
    let text = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    assert!(
        text.contains("gauntlet_requests_total{model=\"lin\",status=\"408\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("gauntlet_sanitiser_changes_total{"),
        "a 408 counted sanitiser changes:\n{text}"
    );
}
