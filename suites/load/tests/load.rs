//! The load driver and the load phase against real servers on loopback.
//!
//! Runs are short (1–3 s) at modest rates: they check counting and classification, not speed.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fail the test loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gauntlet_harness::Target;
use gauntlet_harness::config::Settings;
use gauntlet_harness::suite::Suite;
use gauntlet_load::driver::{self, AnyBody};
use gauntlet_load::schedule::Shard;
use gauntlet_load::workload::NamesModel;
use gauntlet_load::{LoadSuite, settings::LoadSettings};
use gauntlet_reports::Outcome;

mod common;

use common::{config, engine, phase_settings, run_phase, served};

#[test]
fn every_scheduled_request_is_answered_and_counted() {
    let server = served();
    let started = Instant::now();
    let stats = driver::run(config(
        &server.url(),
        "/v2/models/ref-linear/infer",
        500.0,
        2.0,
        Arc::new(NamesModel::new("ref-linear")),
    ))
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run stops by itself"
    );
    let c = &stats.counters;
    assert_eq!(c.scheduled, 1000);
    assert_eq!(c.ok + c.failed(), 1000, "{c:?}");
    assert_eq!(c.failed(), 0, "{:?}", stats.samples);
    assert_eq!(stats.latencies.len(), 1000);
    assert!(stats.latencies.min() >= 1);
    assert_eq!(
        c.tags.get("1"),
        Some(&1000),
        "every response names version 1"
    );
    assert!((stats.target_rate - 500.0).abs() < 1.0);
    let ok_per_second: u64 = stats.seconds.iter().map(|s| s.ok).sum();
    assert_eq!(ok_per_second, 1000, "per-second rows add up to the total");
    assert!(!stats.cpu.is_empty(), "CPU sampled each second");
    assert!(stats.cpu.iter().all(|s| s.target_cpu.is_some()));
}

/// Serves `/` on 127.0.0.1:0; every request that arrives in `[stall_from, stall_to)`
/// after `start` is held until `stall_to`, as a target that stops for a GC pause would.
fn stalling_server(
    start: Instant,
    stall_from: Duration,
    stall_to: Duration,
) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/",
                axum::routing::any(move || async move {
                    let at = start.elapsed();
                    if at >= stall_from && at < stall_to {
                        tokio::time::sleep_until((start + stall_to).into()).await;
                    }
                    "ok"
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            // Lives until the test process exits.
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Regression guard against coordinated omission: a 400 ms stall of the target delays every
/// request scheduled during it, not only the few in flight on the 8 connections, and the
/// open model must record each of those delays from its intended send time.
#[test]
fn a_stall_shows_in_every_request_it_delayed_not_only_those_in_flight() {
    let start = Instant::now() + Duration::from_millis(200);
    let addr = stalling_server(
        start,
        Duration::from_millis(1000),
        Duration::from_millis(1400),
    );
    let mut c = config(
        &format!("http://{addr}"),
        "/",
        200.0,
        2.0,
        Arc::new(AnyBody),
    );
    c.start_at = Some(std::time::SystemTime::now() + (start - Instant::now()));
    let stats = driver::run(c).unwrap();
    assert_eq!(stats.counters.ok, 400, "{:?}", stats.counters);
    // ~80 requests are due during the stall; the ~60 due in its first 300 ms wait >= 100 ms.
    // A closed-model count would show at most 8 (one per connection).
    let slow_quantile = 1.0 - 50.0 / 400.0;
    assert!(
        stats.latencies.quantile(slow_quantile) >= 100_000,
        "at least 50 of 400 latencies >= 100 ms; q{slow_quantile} = {} us",
        stats.latencies.quantile(slow_quantile)
    );
    assert!(
        stats.latencies.max() >= 350_000,
        "max {}",
        stats.latencies.max()
    );
    assert!(
        stats.counters.late >= 40,
        "requests waited for a connection: {:?}",
        stats.counters
    );
}

#[test]
fn status_and_body_failures_are_classified() {
    let server = served();
    let stats = driver::run(config(
        &server.url(),
        "/v2/models/no-such-model/infer",
        100.0,
        1.0,
        Arc::new(AnyBody),
    ))
    .unwrap();
    assert_eq!(
        stats.counters.errors.status_4xx, 100,
        "{:?}",
        stats.counters
    );
    assert!(stats.samples[0].starts_with("404"), "{:?}", stats.samples);

    let stats = driver::run(config(
        &server.url(),
        "/v2/models/ref-linear/infer",
        100.0,
        1.0,
        Arc::new(NamesModel::new("ref-ensemble")),
    ))
    .unwrap();
    assert_eq!(stats.counters.errors.body_mismatch, 100);
    assert!(
        stats.latencies.is_empty(),
        "failed requests are not in the latency histogram"
    );
}

#[test]
fn a_closed_port_counts_connect_errors_and_stops() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let stats = driver::run(config(
        &format!("http://127.0.0.1:{port}"),
        "/",
        100.0,
        1.0,
        Arc::new(AnyBody),
    ))
    .unwrap();
    assert_eq!(stats.counters.errors.connect, 100, "{:?}", stats.counters);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_server_that_never_answers_counts_timeouts_and_drops_not_hangs() {
    // Accepts connections and reads nothing: every request times out.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let mut c = config(
        &format!("http://{addr}"),
        "/",
        200.0,
        1.0,
        Arc::new(AnyBody),
    );
    c.connections = 4;
    c.request_timeout = Duration::from_millis(300);
    c.queue_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let stats = driver::run(c).unwrap();
    let k = &stats.counters;
    assert!(k.errors.timeout > 0, "{k:?}");
    assert!(
        k.dropped > 0,
        "4 stalled connections cannot take 200 req/s: {k:?}"
    );
    assert_eq!(k.ok, 0);
    assert_eq!(
        k.errors.timeout + k.dropped + k.errors.connect,
        k.scheduled,
        "{k:?}"
    );
    assert!(k.late > 0);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Quick settings. The validity tolerance is wide: these tests share two cores with other
/// tests, and check the gates and sections, not the guard (tested on its own below).
const QUICK: &str = r#"
late-after = "50ms"
max-late-fraction = 0.2
rate = 300
duration = "2s"
warm-up = "500ms"
connections = 8
p50 = "50ms"
p95 = "100ms"
p99 = "200ms"
p999 = "400ms"
swap-rate = 300
swap-duration = "2s"
swap-interval = "100ms"
historical-peak = 100
stress-duration = "1s"
knee-step = 300
knee-steps = 1
soak = true
soak-rate = 200
soak-duration = "4s"
"#;

#[test]
fn the_phase_passes_every_gate_in_process_with_sections_and_charts() {
    let out = run_phase(QUICK, Arc::new(engine()));
    let names: Vec<&str> = out.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sustained_p50",
            "sustained_p95",
            "sustained_p99",
            "sustained_p999",
            "sustained_error_rate",
            "sustained_achieved_rate",
            "swap_availability",
            "swap_versions",
            "stress_2x_peak",
            "stress_knee",
            "soak_memory"
        ]
    );
    for case in &out.cases {
        assert_eq!(
            case.outcome,
            Outcome::Pass,
            "{}: {:?}",
            case.id,
            case.message
        );
        let message = case.message.as_deref().unwrap_or("");
        assert!(
            message.contains("ceiling") || message.contains("floor") || message.contains("knee"),
            "{}: measured vs threshold on a pass too: {message}",
            case.id
        );
    }
    let swap = out
        .cases
        .iter()
        .find(|c| c.name == "swap_versions")
        .unwrap();
    let message = swap.message.as_deref().unwrap();
    assert!(message.starts_with("0 responses with a torn"), "{message}");
    assert!(
        message.contains("v1 ") && message.contains("v2 "),
        "{message}"
    );
    let ids: Vec<&str> = out.sections.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["load.sustained", "load.swap", "load.stress", "load.soak"]
    );
    let sustained = &out.sections[0];
    assert!(sustained.charts.len() >= 4, "{:?}", sustained.charts.len());
    assert!(
        sustained
            .charts
            .iter()
            .all(|c| c.series.iter().all(|s| s.points.len() <= 2_000))
    );
    assert!(
        sustained.charts[0].series[0].points.len() >= 2,
        "latency over time has points"
    );
}

/// A knee step that breaks a gate runs once more before it counts: with a p50 ceiling no
/// run can meet, the one knee step breaks twice, and the message gives both runs' verdicts.
#[test]
fn a_breaking_knee_step_is_run_again_before_it_counts() {
    let load = "rate = 200\nduration = \"1s\"\nwarm-up = \"300ms\"\np50 = \"1us\"\n\
                swap = false\nsoak = false\nhistorical-peak = 50\nstress-duration = \"1s\"\n\
                knee-step = 200\nknee-steps = 1";
    let out = run_phase(load, Arc::new(engine()));
    let knee = out.cases.iter().find(|c| c.name == "stress_knee").unwrap();
    let message = knee.message.as_deref().unwrap_or("");
    assert_eq!(knee.outcome, Outcome::Pass, "{message}");
    assert!(
        message.starts_with("knee at 200 req/s > 2x peak 100 req/s (first broken gate: ")
            && message.contains("; run again: ")
            && message.matches("p50").count() == 2,
        "{message}"
    );
}

#[test]
fn a_saturated_generator_makes_every_gate_invalid_never_passed() {
    // A tolerance of 0 % CPU: any generator is "saturated", so the guard must fire, on the
    // first measurement and on each one again (invalid-retries).
    for retries in [0_usize, 2] {
        let load = format!(
            "rate = 200\nduration = \"1s\"\nwarm-up = \"200ms\"\nmax-generator-cpu = 0.0\n\
             swap = false\nstress = false\ninvalid-retries = {retries}"
        );
        let out = run_phase(&load, Arc::new(engine()));
        assert_eq!(out.cases.len(), 6);
        for case in &out.cases {
            match &case.outcome {
                Outcome::Invalid { reason } => {
                    assert!(reason.contains("generator saturated"), "{reason}");
                }
                other => panic!("{}: {other:?}", case.id),
            }
        }
        // Every attempt is in the runs table: the kept one first, then the discarded ones.
        let section = &out.sections[0];
        let runs = section
            .tables
            .iter()
            .find(|t| t.title.starts_with("Runs"))
            .unwrap();
        let labels: Vec<&str> = runs.rows.iter().map(|r| r[0].as_str()).collect();
        let mut expected = vec!["sustained".to_owned()];
        expected
            .extend((1..=retries).map(|n| format!("sustained (attempt {n}, invalid, discarded)")));
        assert_eq!(labels, expected);
        let measured_again = section.notes.iter().any(|n| {
            n.starts_with(&format!(
                "Measured {} times (invalid-retries = {retries})",
                retries + 1
            )) && n.contains("the verdicts stay invalid")
        });
        assert_eq!(measured_again, retries > 0, "{:?}", section.notes);
    }
}

#[test]
fn phase_settings_errors_name_the_key() {
    let err = LoadSuite
        .gates(&phase_settings("rate = 0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rate = 0"), "{err}");
    let err = LoadSuite
        .gates(&phase_settings("p99 = 5"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("p99"), "{err}");
    let defaults = LoadSuite.gates(&Settings::default()).unwrap();
    assert_eq!(
        defaults.len(),
        10,
        "sustained, swap and stress by default; soak off"
    );
    assert!(!LoadSettings::default().soak);
}

#[cfg(not(feature = "goose"))]
#[test]
fn goose_cases_are_skipped_with_the_reason_when_built_without_goose() {
    let out = run_phase(
        "sustained = false\nswap = false\nstress = false\ngoose = true",
        Arc::new(engine()),
    );
    assert_eq!(out.cases.len(), 3);
    for case in &out.cases {
        match &case.outcome {
            Outcome::Skip { reason } => assert!(reason.contains("`goose` feature"), "{reason}"),
            other => panic!("{}: {other:?}", case.id),
        }
    }
}

#[test]
fn a_target_without_the_load_model_skips_what_needs_it_and_still_swaps() {
    let bare = gauntlet_harness::InProcess::with_models(Default::default(), vec![]).unwrap();
    let out = run_phase(QUICK, Arc::new(bare));
    for case in &out.cases {
        if case.name.starts_with("swap_") {
            assert_eq!(
                case.outcome,
                Outcome::Pass,
                "{}: {:?}",
                case.id,
                case.message
            );
        } else {
            match &case.outcome {
                Outcome::Skip { reason } => {
                    assert!(
                        reason.contains("does not serve model ref-linear"),
                        "{reason}"
                    );
                }
                other => panic!("{}: {other:?}", case.id),
            }
        }
    }
}

#[test]
fn shards_of_one_schedule_send_exactly_the_whole() {
    let server = served();
    let start = std::time::SystemTime::now() + Duration::from_millis(300);
    let handles: Vec<_> = (0..3)
        .map(|index| {
            let mut c = config(
                &server.url(),
                "/v2/models/ref-linear/infer",
                600.0,
                1.0,
                Arc::new(AnyBody),
            );
            c.shard = Shard { index, count: 3 };
            c.start_at = Some(start);
            std::thread::spawn(move || driver::run(c).unwrap())
        })
        .collect();
    let runs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let scheduled: u64 = runs.iter().map(|r| r.counters.scheduled).sum();
    assert_eq!(scheduled, 600);
    let rate: f64 = runs.iter().map(|r| r.target_rate).sum();
    assert!((rate - 600.0).abs() < 1.0, "{rate}");
    assert!(runs.iter().all(|r| r.started_at == start));
}

#[test]
fn an_http_target_yields_its_url_as_endpoint() {
    let server = served();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoint = rt.block_on(async {
        let target = gauntlet_harness::HttpTarget::connect(&server.url(), Default::default())
            .await
            .unwrap();
        target.http_endpoint().await.unwrap()
    });
    assert_eq!(endpoint.url, server.url());
    assert!(endpoint.server.is_none());
}

#[test]
fn a_coarse_pacing_releases_requests_together_and_their_wait_counts_in_the_latency() {
    // 1,000 req/s with a 10 ms pacing resolution: each wake-up releases the ~10 requests
    // that fell due since the last one, so a request waits 0–10 ms past its intended time
    // before it is sent — and that wait is in its latency, which runs from the intended
    // time. (Against a sub-millisecond server, a pacing that ignored the setting would give
    // a median well under 1 ms.)
    let server = served();
    let mut c = config(
        &server.url(),
        "/v2/models/ref-linear/infer",
        1000.0,
        1.5,
        Arc::new(AnyBody),
    );
    c.pacing = Duration::from_millis(10);
    c.late_after = Duration::from_millis(100);
    let stats = driver::run(c).unwrap();
    assert_eq!(stats.counters.scheduled, 1500);
    assert_eq!(stats.counters.ok, 1500, "{:?}", stats.samples);
    assert!(
        stats.max_schedule_lag_us >= 5_000,
        "largest release lag {} µs",
        stats.max_schedule_lag_us
    );
    let p50 = stats.latencies.quantile(0.5);
    assert!(p50 >= 2_500, "p50 {p50} µs: the pacing wait is not counted");

    // Out of range: a typed error naming the setting and its limit.
    let mut c = config(&server.url(), "/", 10.0, 0.1, Arc::new(AnyBody));
    c.pacing = Duration::from_millis(11);
    let err = driver::run(c).unwrap_err().to_string();
    assert!(
        err.contains("pacing") && err.contains("0 to 10 ms"),
        "{err}"
    );
}

/// The load suite sends the user's payload (`payload` setting) and keeps each failure's
/// status and body: a template of two seeded rows for `ref-linear` passes; one whose input
/// the engine rejects fails the error-rate gate, and the report keeps the engine's 400 body.
#[test]
fn the_suite_sends_the_configured_payload_and_keeps_failure_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"inputs": [{"name": "features", "datatype": "FP64", "shape": [2, 8],
            "data": [{{repeat:16}}{{rand:-0.5:0.5}}{{end}}]}]}"#,
    )
    .unwrap();
    let phase = |payload: &std::path::Path| {
        let load = format!(
            "rate = 200\nduration = \"1s\"\nwarm-up = \"300ms\"\nlate-after = \"50ms\"\n\
             max-late-fraction = 0.2\np50 = \"200ms\"\np95 = \"500ms\"\np99 = \"1s\"\n\
             p999 = \"2s\"\nswap = false\nstress = false\nsoak = false\npayload = {:?}\n\
             payload-variants = 4",
            payload.display().to_string()
        );
        run_phase(&load, Arc::new(engine()))
    };
    let out = phase(&good);
    let error_rate = out
        .cases
        .iter()
        .find(|c| c.name == "sustained_error_rate")
        .unwrap();
    assert_eq!(
        error_rate.outcome,
        Outcome::Pass,
        "{:?}",
        error_rate.message
    );
    let notes = out.sections[0].notes.join("\n");
    assert!(
        notes.contains("4 bodies from payload") && notes.contains("prediction FP64 [-1]"),
        "{notes}"
    );
    // Seven values for a shape of eight: a 400 for every request.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8],
            "data": [{{repeat:7}}{{rand}}{{end}}]}]}"#,
    )
    .unwrap();
    let out = phase(&bad);
    let error_rate = out
        .cases
        .iter()
        .find(|c| c.name == "sustained_error_rate")
        .unwrap();
    assert_eq!(
        error_rate.outcome,
        Outcome::Fail,
        "{:?}",
        error_rate.message
    );
    let detail = out.sections[0]
        .tables
        .iter()
        .find(|t| t.title.starts_with("Failure detail"))
        .expect("a failure detail table");
    let row = &detail.rows[0];
    assert_eq!(row[1], "4xx");
    assert!(row[3].starts_with("400 ×"), "{row:?}");
    assert!(row[4].starts_with("[400] {\"error\""), "{row:?}");
}

/// A gRPC server on 127.0.0.1:0 (HTTP/2 with `h2`, no tonic) whose every answer is
/// `answer` with grpc-status 0, whatever was asked; it lives until the test process exits.
fn grpc_answering(
    answer: gauntlet_oip_grpc::inference::ModelInferResponse,
) -> std::net::SocketAddr {
    use prost::Message as _;
    let message = answer.encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let frame = bytes::Bytes::from(frame);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let frame = frame.clone();
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        let frame = frame.clone();
                        tokio::spawn(async move {
                            let mut body = request.into_body();
                            while let Some(Ok(chunk)) = body.data().await {
                                let _ = body.flow_control().release_capacity(chunk.len());
                            }
                            let head = http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(())
                                .unwrap();
                            let Ok(mut send) = respond.send_response(head, false) else {
                                return;
                            };
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            if send.send_data(frame, false).is_ok() {
                                let _ = send.send_trailers(trailers);
                            }
                        });
                    }
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// The gRPC path checks each decoded answer as the HTTP path checks JSON: data consistent
/// with shape and datatype (raw bytes too), and the outputs of the model's metadata present
/// with its datatype and shape; a failed check is a body mismatch with the reason sampled.
#[test]
fn grpc_answers_that_disagree_with_shape_datatype_or_metadata_are_body_mismatches() {
    use gauntlet_load::workload::ExpectedOutput;
    use gauntlet_oip_grpc::inference::InferTensorContents;
    use gauntlet_oip_grpc::inference::ModelInferResponse;
    use gauntlet_oip_grpc::inference::model_infer_response::InferOutputTensor;

    let output =
        |name: &str, datatype: &str, shape: &[i64], contents: Option<InferTensorContents>| {
            InferOutputTensor {
                name: name.into(),
                datatype: datatype.into(),
                shape: shape.to_vec(),
                parameters: Default::default(),
                contents,
            }
        };
    let fp64 = |values: &[f64]| {
        Some(InferTensorContents {
            fp64_contents: values.to_vec(),
            ..Default::default()
        })
    };
    let answer = |o: InferOutputTensor, raw: Vec<bytes::Bytes>| ModelInferResponse {
        model_name: "ref-linear".into(),
        model_version: "1".into(),
        outputs: vec![o],
        raw_output_contents: raw,
        ..Default::default()
    };
    let check = Arc::new(
        NamesModel::new("ref-linear").expecting(vec![ExpectedOutput {
            name: "prediction".into(),
            datatype: Some("FP64".into()),
            shape: Some(vec![-1]),
        }]),
    );
    let raw_half = bytes::Bytes::from(0.5f64.to_le_bytes().to_vec());
    let cases = [
        (
            answer(output("prediction", "FP64", &[1], fp64(&[0.5])), vec![]),
            None,
        ),
        (
            answer(
                output("prediction", "FP64", &[1], None),
                vec![raw_half.clone()],
            ),
            None,
        ),
        (
            answer(output("prediction", "FP64", &[2], fp64(&[0.5])), vec![]),
            Some("output \"prediction\" has shape [2] (2 elements) but 1 data elements"),
        ),
        (
            answer(
                output(
                    "prediction",
                    "FP32",
                    &[1],
                    Some(InferTensorContents {
                        fp32_contents: vec![0.5],
                        ..Default::default()
                    }),
                ),
                vec![],
            ),
            Some(
                "output \"prediction\" has datatype \"FP32\" but the model's metadata says \"FP64\"",
            ),
        ),
        (
            answer(
                output(
                    "prediction",
                    "FP64",
                    &[1],
                    fp64(&[]).map(|mut c| {
                        c.fp32_contents = vec![0.5];
                        c
                    }),
                ),
                vec![],
            ),
            Some("FP64 data in fp32_contents, where a FP64 tensor's go in fp64_contents"),
        ),
        (
            answer(output("prediction", "FP64", &[1, 1], fp64(&[0.5])), vec![]),
            Some("has shape [1, 1] but the model's metadata says [-1]"),
        ),
        (
            answer(
                output("prediction", "FP64", &[1], None),
                vec![bytes::Bytes::from_static(&[0; 12])],
            ),
            Some("raw_output_contents[0] holds 12 bytes, not a whole number of FP64 elements"),
        ),
        (
            answer(output("prediction", "FP64", &[2], None), vec![raw_half]),
            Some("has shape [2] (2 elements) but 1 data elements"),
        ),
        (
            answer(output("score", "FP64", &[1], fp64(&[0.5])), vec![]),
            Some("output \"prediction\" of the model's metadata is not in the response"),
        ),
    ];
    for (i, (answer, failure)) in cases.into_iter().enumerate() {
        let addr = grpc_answering(answer);
        let stats = driver::run(config(
            &format!("grpc://{addr}"),
            "/v2/models/ref-linear/infer",
            50.0,
            1.0,
            check.clone(),
        ))
        .unwrap();
        let c = &stats.counters;
        assert_eq!(c.scheduled, 50, "case {i}: {c:?}");
        match failure {
            None => {
                assert_eq!(c.ok, 50, "case {i}: {:?}", stats.samples);
                assert_eq!(
                    c.tags.get("1"),
                    Some(&50),
                    "case {i}: tagged with its version"
                );
            }
            Some(reason) => {
                assert_eq!(c.errors.body_mismatch, 50, "case {i}: {c:?}");
                assert_eq!(c.ok, 0, "case {i}");
                assert!(
                    stats.samples[0].starts_with("body mismatch: ")
                        && stats.samples[0].contains(reason),
                    "case {i}: {:?} lacks {reason:?}",
                    stats.samples
                );
            }
        }
    }
}
