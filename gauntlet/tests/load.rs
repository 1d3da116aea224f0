//! End-to-end tests of the load suite through the `gauntlet` binary: `run --suite load`,
//! `load --shard`, `report merge`; real processes, real engines on loopback.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fail the test loudly"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use gauntlet_load::histogram::Latencies;
use gauntlet_load::shard::ShardFile;
use gauntlet_testkit::{EngineProcess, code, text};

const BIN: &str = env!("CARGO_BIN_EXE_gauntlet");

fn gauntlet(args: &[&str], cwd: &Path) -> Output {
    gauntlet_testkit::run_cli(BIN, args, cwd).expect("spawn gauntlet")
}

/// Serves the reference engine on 127.0.0.1:0, optionally slowed by `delay` per infer.
fn serve_engine(delay: Option<Duration>) -> SocketAddr {
    serve_engine_behind(move |app| match delay {
        Some(delay) => app.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| slow(delay, req, next),
        )),
        None => app,
    })
}

/// Serves the reference engine's router as `wrap` changes it, on 127.0.0.1:0.
fn serve_engine_behind(
    wrap: impl FnOnce(axum::Router) -> axum::Router + Send + 'static,
) -> SocketAddr {
    gauntlet_testkit::serve_router(move || {
        let target = gauntlet_suites::reference_target().expect("reference target");
        wrap(gauntlet_engine::app(target.state().clone()))
    })
    .expect("server up")
}

/// `gauntlet load` against `url` at 200 req/s for 1 s, no warm-up.
fn quick_load(url: &str) -> Vec<&str> {
    vec![
        "load",
        "--target",
        url,
        "--rate",
        "200",
        "--duration",
        "1s",
        "--warm-up",
        "0s",
    ]
}

/// The defect a load gate must catch: every infer takes `delay` longer.
async fn slow(delay: Duration, req: Request, next: Next) -> Response {
    if req.uri().path().ends_with("/infer") {
        tokio::time::sleep(delay).await;
    }
    next.run(req).await
}

/// A quick load table: 300 req/s for 2 s, swap and a one-step stress.
/// The validity tolerance is wide: these tests share two cores with other tests.
const QUICK: &str = r#"
[profile.default.load]
late-after = "50ms"
max-late-fraction = 0.2
rate = 300
duration = "2s"
warm-up = "500ms"
connections = 16
p50 = "20ms"
p95 = "50ms"
p99 = "100ms"
p999 = "200ms"
swap-rate = 300
swap-duration = "2s"
historical-peak = 100
stress-duration = "1s"
knee-step = 300
knee-steps = 1
"#;

/// Runs the load suite against `url`, a target slowed by 60 ms per infer, with a 25 ms p99
/// ceiling (the other ceilings well above 60 ms): exit 1, and the JUnit `sustained_p99` case
/// fails saying measured vs threshold. Returns the whole JUnit file and that case.
///
/// The gate must fail on a busy host too (the tests beside it, a build): other processes
/// never excuse it here (`max-host-other-cpu = 1`), and the ceiling sits above the host's
/// usual stalls (a stall at least as long as a violated ceiling makes it the host's).
fn slowed_target_fails_the_p99_gate(url: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gauntlet.toml"),
        "[profile.default.load]\nrate = 100\nduration = \"2s\"\nwarm-up = \"500ms\"\n\
         late-after = \"50ms\"\nmax-late-fraction = 0.2\nmax-host-other-cpu = 1.0\n\
         p50 = \"1s\"\np95 = \"1s\"\np99 = \"25ms\"\np999 = \"2s\"\n\
         swap = false\nstress = false\n",
    )
    .unwrap();
    let out = gauntlet(
        &[
            "run",
            "--target",
            url,
            "--suite",
            "load",
            "--report-dir",
            "rep",
        ],
        dir.path(),
    );
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let junit = std::fs::read_to_string(dir.path().join("rep/junit.xml")).unwrap();
    let case = junit
        .split("<testcase")
        .find(|c| c.contains("sustained_p99\""))
        .unwrap_or_else(|| panic!("no sustained_p99 in {junit}"))
        .to_owned();
    assert!(case.contains("<failure"), "{case}");
    assert!(
        case.contains("&gt; ceiling 25.00 ms"),
        "the failure says measured vs threshold: {case}"
    );
    (junit, case)
}

#[test]
fn a_slowed_target_fails_the_p99_gate_with_exit_1_and_says_measured_vs_threshold() {
    let addr = serve_engine(Some(Duration::from_millis(60)));
    let (junit, case) = slowed_target_fails_the_p99_gate(&format!("http://{addr}"));
    let measured: f64 = case
        .split("p99 ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no measured p99 in {case}"));
    assert!(
        measured >= 60.0,
        "60 ms were added to every infer: {measured}"
    );
    // The gates the delay does not break still pass.
    let p50 = junit
        .split("<testcase")
        .find(|c| c.contains("sustained_p50"))
        .unwrap();
    assert!(!p50.contains("<failure"), "{p50}");
}

#[test]
fn merged_worker_processes_equal_one_histogram_of_their_raw_samples() {
    let addr = serve_engine(None);
    let url = format!("http://{addr}");
    let dir = tempfile::tempdir().unwrap();
    // Wide tolerances: three workers and the engine share two cores here, and this test is
    // about exact merging, not about the engine's latency.
    std::fs::write(
        dir.path().join("gauntlet.toml"),
        "[profile.default.load]\nlate-after = \"50ms\"\nmax-late-fraction = 0.2\n\
         p50 = \"1s\"\np95 = \"1s\"\np99 = \"1s\"\np999 = \"1s\"\n",
    )
    .unwrap();
    let start = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let workers: Vec<Child> = (0..3)
        .map(|i| {
            Command::new(BIN)
                .args([
                    "load",
                    "--target",
                    &url,
                    "--rate",
                    "600",
                    "--duration",
                    "2s",
                ])
                .args(["--warm-up", "500ms", "--shard", &format!("{i}/3")])
                .args(["--start-at", &start.to_string()])
                .args(["--out", &format!("shard-{i}.json")])
                .args(["--raw-latencies", &format!("raw-{i}.txt")])
                .current_dir(dir.path())
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for worker in workers {
        let out = worker.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = gauntlet(
        &[
            "report",
            "merge",
            "shard-0.json",
            "shard-1.json",
            "shard-2.json",
            "--report-dir",
            "merged",
        ],
        dir.path(),
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let merged = ShardFile::read(&dir.path().join("merged/merged.json")).unwrap();

    // The reference: one histogram of every raw sample the workers recorded.
    let mut reference = Latencies::new();
    let mut samples = 0u64;
    for i in 0..3 {
        let raw = std::fs::read_to_string(dir.path().join(format!("raw-{i}.txt"))).unwrap();
        for line in raw.lines() {
            reference.record(line.parse().unwrap());
            samples += 1;
        }
    }
    assert_eq!(
        merged.counters.scheduled, 900,
        "600 req/s over the 1.5 s measured window"
    );
    assert_eq!(merged.counters.ok, samples);
    assert_eq!(merged.latencies.len(), samples);
    for q in [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
        assert_eq!(
            merged.latencies.quantile(q),
            reference.quantile(q),
            "q = {q}"
        );
    }
    assert_eq!(merged.latencies, reference);
    assert!(
        (merged.target_rate - 600.0).abs() < 1.0,
        "{}",
        merged.target_rate
    );

    // A single process running the whole schedule is scheduled the same requests.
    let out = gauntlet(
        &[
            "load",
            "--target",
            &url,
            "--rate",
            "600",
            "--duration",
            "2s",
            "--warm-up",
            "500ms",
            "--out",
            "single.json",
        ],
        dir.path(),
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let single = ShardFile::read(&dir.path().join("single.json")).unwrap();
    assert_eq!(single.counters.scheduled, merged.counters.scheduled);

    // The merged report holds the gates as cases and the merged figures.
    let junit = std::fs::read_to_string(dir.path().join("merged/junit.xml")).unwrap();
    assert!(junit.contains("sustained_p99"), "{junit}");
    assert!(dir.path().join("merged/report.html").exists());
}

#[test]
fn merge_refuses_an_incomplete_set_with_exit_2() {
    let addr = serve_engine(None);
    let dir = tempfile::tempdir().unwrap();
    let out = gauntlet(
        &[
            "load",
            "--target",
            &format!("http://{addr}"),
            "--rate",
            "100",
            "--duration",
            "1s",
            "--warm-up",
            "200ms",
            "--shard",
            "0/2",
            "--out",
            "shard-0.json",
        ],
        dir.path(),
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = gauntlet(&["report", "merge", "shard-0.json"], dir.path());
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("missing shards 1/2"),
        "{}",
        text(&out.stderr)
    );
    let out = gauntlet(&["load", "--shard", "2/2"], dir.path());
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("--shard"),
        "{}",
        text(&out.stderr)
    );
}

/// A shard whose measurement cannot be trusted still writes its file (the merge says why)
/// but does not exit 0: no report directory, no gates, and still never a success.
#[test]
fn an_invalid_shard_writes_its_file_and_exits_1() {
    let addr = serve_engine(None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gauntlet.toml"),
        "[profile.default.load]\nmax-generator-cpu = 0.0\n",
    )
    .unwrap();
    let out = gauntlet(
        &[
            "load",
            "--target",
            &format!("http://{addr}"),
            "--rate",
            "100",
            // A warm-up as long as the default profile's stress-duration (2 s): `gauntlet
            // load` runs no stress scenario, so that setting must not refuse it.
            "--duration",
            "2500ms",
            "--warm-up",
            "2s",
            "--out",
            "shard.json",
        ],
        dir.path(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(stderr.contains("INVALID: generator saturated"), "{stderr}");
    let shard = ShardFile::read(&dir.path().join("shard.json")).unwrap();
    assert_eq!(
        shard.counters.scheduled, 50,
        "100 req/s over the 0.5 s measured window"
    );
}

#[test]
fn a_bad_load_table_is_a_usage_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gauntlet.toml"),
        "[profile.default.load]\nrtae = 1000\n",
    )
    .unwrap();
    let out = gauntlet(&["run", "--suite", "load"], dir.path());
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("rtae"), "{}", text(&out.stderr));
    let out = gauntlet(&["list", "--suite", "load"], dir.path());
    assert_eq!(code(&out), 2);
}

#[test]
fn list_shows_the_load_gates_with_their_requirements() {
    let dir = tempfile::tempdir().unwrap();
    let out = gauntlet(&["list", "--suite", "load"], dir.path());
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    for (case, requirement) in [
        ("load::sustained_p99", "SLA-LAT"),
        ("load::sustained_error_rate", "SLA-ERR"),
        ("load::sustained_achieved_rate", "SLA-TPUT"),
        ("load::swap_availability", "SLA-AVAIL"),
        ("load::swap_versions", "ENG-SWAP"),
        ("load::stress_knee", "CMP-STRESS"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.contains(case))
            .unwrap_or_else(|| panic!("{case} not in {listing}"));
        assert!(line.contains(requirement), "{line}");
    }
}

/// Starts the engine binary (next to the `gauntlet` binary, built first if this test run did
/// not) on 127.0.0.1:0 with `extra` flags.
fn spawn_engine(extra: &[&str]) -> EngineProcess {
    let dir = Path::new(BIN).parent().expect("bin dir");
    let binary = gauntlet_testkit::engine_binary_in(dir, false).expect("gauntlet-engine binary");
    EngineProcess::spawn(&binary, &gauntlet_testkit::fixture_models(), extra).expect("engine")
}

/// The engine's own fault injection slows every inference: the p99 gate fails, exit 1.
#[test]
fn the_engine_binary_with_injected_latency_fails_the_p99_gate() {
    let engine = spawn_engine(&["--inject-latency", "60ms"]);
    slowed_target_fails_the_p99_gate(&engine.url());
}

/// `gauntlet run --suite load` against `url` with `config` as gauntlet.toml, in a directory
/// of its own: it must exit 0. The directory (reports in `rep/`) and report.json.
fn load_suite_passes(url: &str, config: &str) -> (tempfile::TempDir, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gauntlet.toml"), config).unwrap();
    let out = gauntlet(
        &[
            "run",
            "--target",
            url,
            "--suite",
            "load",
            "--report-dir",
            "rep",
        ],
        dir.path(),
    );
    assert_eq!(
        code(&out),
        0,
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("rep/report.json")).unwrap())
            .unwrap();
    (dir, report)
}

#[test]
fn run_suite_load_passes_against_the_engine_binary_and_writes_the_charts() {
    let engine = spawn_engine(&[]);
    let (dir, report) = load_suite_passes(&engine.url(), QUICK);
    assert_eq!(report["summary"]["passed"], 10, "{}", report["summary"]);
    let html = std::fs::read_to_string(dir.path().join("rep/report.html")).unwrap();
    assert!(html.contains("<svg"), "report.html has charts");
    assert!(html.contains("Latency over time"));
    assert!(html.contains("Swap under load"));
}

/// An engine process on this host's loopback is found by its port: its CPU is the target's
/// (not "other processes" that would excuse its failed gates as the host's), and the soak
/// measures its memory.
#[test]
fn a_target_process_on_loopback_is_measured_as_the_target() {
    let engine = spawn_engine(&[]);
    let (_dir, report) = load_suite_passes(
        &engine.url(),
        "[profile.default.load]\nsustained = false\nswap = false\nstress = false\nsoak = true\n\
         soak-rate = 300\nsoak-duration = \"3s\"\nwarm-up = \"500ms\"\n",
    );
    let soak = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "load.soak")
        .expect("a soak section");
    let notes = soak["notes"].to_string();
    assert!(
        notes.contains("the resident set of the target, process")
            && notes.contains("(gauntlet-engine)"),
        "{notes}"
    );
    let runs = soak["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["title"].as_str().unwrap().starts_with("Runs"))
        .unwrap();
    let column = runs["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "target CPU")
        .unwrap();
    let cpu = runs["rows"][0][column].as_str().unwrap();
    assert!(cpu.ends_with(" cores"), "target CPU {cpu:?}");
    let case = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "load::soak_memory")
        .unwrap();
    assert!(
        case["message"]
            .as_str()
            .unwrap()
            .starts_with("resident memory grew"),
        "{case}"
    );
}

/// A gateway in front of the engine that answers an infer 401 unless both the bearer token
/// and the API key are there (health and metadata are open, so the run gets to its load).
async fn keyed_gateway(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let has = |name: &str, value: &str| headers.get(name).is_some_and(|v| v == value);
    let keyed = has("authorization", "Bearer t0k3n-load") && has("x-api-key", "k3y-l0ad");
    if req.uri().path().ends_with("/infer") && !keyed {
        return (axum::http::StatusCode::UNAUTHORIZED, "missing credentials").into_response();
    }
    next.run(req).await
}

/// Every `--header` reaches the target on every load request, not only `authorization`.
#[test]
fn load_sends_every_header_it_is_given() {
    let addr = serve_engine_behind(|app| app.layer(axum::middleware::from_fn(keyed_gateway)));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let base = quick_load(&url);
    let bearer = "authorization: Bearer t0k3n-load";
    let key = "x-api-key: k3y-l0ad";
    let with = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        gauntlet(&args, dir.path())
    };
    let out = with(&["--header", bearer, "--header", key]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    // The control: without the API key every request is refused, and no secret is printed.
    let out = with(&["--header", bearer]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(stderr.contains("4xx 200 (401 ×200)"), "{stderr}");
    assert!(!stderr.contains("t0k3n-load"), "{stderr}");
}

/// Every infer answered 500: the defect a load run without `--report-dir` must not pass.
async fn broken_infer(req: Request, next: Next) -> Response {
    if req.uri().path().ends_with("/infer") {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "model backend exploded",
        )
            .into_response();
    }
    next.run(req).await
}

/// Regression: `gauntlet load` without `--report-dir` exited 0 when every request failed.
/// Now a run where nothing succeeded, or a whole run whose gate fails, exits 1 with or
/// without a report.
#[test]
fn load_without_a_report_dir_exits_1_when_every_request_fails() {
    let addr = serve_engine_behind(|app| app.layer(axum::middleware::from_fn(broken_infer)));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let args = quick_load(&url);
    let out = gauntlet(&args, dir.path());
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(stderr.contains("no request succeeded"), "{stderr}");
    // No latency was measured: undefined, never 0 ms.
    assert!(
        stderr.contains("latency undefined") && !stderr.contains("p50 0.00"),
        "{stderr}"
    );
    assert!(
        stderr.contains("load::sustained_error_rate (error rate 100"),
        "{stderr}"
    );
    // The status code and what the server said, not only a count.
    assert!(
        stderr.contains("5xx 200 (500 ×200): first \"model backend exploded\""),
        "{stderr}"
    );
    // With reports too: exit 1, and the failure detail in report.json and summary.md.
    let reports = dir.path().join("reports");
    let mut with_reports = args.to_vec();
    with_reports.extend(["--report-dir", reports.to_str().unwrap()]);
    let out = gauntlet(&with_reports, dir.path());
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let json = std::fs::read_to_string(reports.join("report.json")).unwrap();
    assert!(json.contains("Failure detail"), "{json}");
    assert!(json.contains("[500] model backend exploded"), "{json}");
    let summary = std::fs::read_to_string(reports.join("summary.md")).unwrap();
    assert!(summary.contains("500 ×200"), "{summary}");
}

/// A third-party-like OIP server of one model, `market-model`: input `market` of 5 FP32
/// features, output `predict` FP32 `[-1, 1]`, pretty-printed JSON. `defect`: its responses say
/// FP64, against its own metadata.
fn serve_market_model(defect: bool) -> SocketAddr {
    use axum::Json;
    use axum::routing::{get, post};
    gauntlet_testkit::serve_router(move || {
        let metadata = serde_json::json!({
            "name": "market-model",
            "platform": "toy",
            "inputs": [{"name": "market", "datatype": "FP32", "shape": [-1, 5]}],
            "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1, 1]}]
        });
        let infer = move |Json(request): Json<serde_json::Value>| async move {
            let input = &request["inputs"][0];
            let rows = input["shape"][0].as_u64().unwrap_or(0);
            let leaves = |v: &serde_json::Value| -> Vec<f64> {
                fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
                    match v {
                        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                        x => out.extend(x.as_f64()),
                    }
                }
                let mut out = Vec::new();
                walk(v, &mut out);
                out
            };
            let data = leaves(&input["data"]);
            if input["name"] != "market" || input["shape"][1] != 5 || data.len() as u64 != rows * 5
            {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    "{\"error\": \"expected input market [rows, 5]\"}",
                )
                    .into_response();
            }
            let predict: Vec<f64> = data.chunks(5).map(|r| r.iter().sum()).collect();
            let body = serde_json::json!({
                "model_name": "market-model",
                "id": request["id"],
                "outputs": [{
                    "name": "predict",
                    "datatype": if defect { "FP64" } else { "FP32" },
                    "shape": [rows, 1],
                    "data": predict
                }]
            });
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                serde_json::to_string_pretty(&body).unwrap(),
            )
                .into_response()
        };
        axum::Router::new()
            .route("/v2/health/live", get(|| async { "" }))
            .route("/v2/health/ready", get(|| async { "" }))
            .route(
                "/v2",
                get(|| async {
                    Json(serde_json::json!({"name": "toy", "version": "1", "extensions": []}))
                }),
            )
            .route(
                "/v2/models/market-model",
                get(move || async move { Json(metadata) }),
            )
            .route("/v2/models/market-model/infer", post(infer))
    })
    .expect("server up")
}

/// The load suite with the user's payload (#17 item 6): a template of 4 rows of the model's
/// own 5 features, each row led by the row counter, sent to `--model`; the responses are
/// parsed (the server pretty-prints them) and held to the model's metadata, and a server
/// that answers against its own metadata fails.
#[test]
fn load_sends_the_users_payload_and_checks_responses_against_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    // Ceilings wide enough for a shared test machine: this checks bodies, not latency.
    std::fs::write(
        dir.path().join("gauntlet.toml"),
        "[profile.default.load]\nlate-after = \"50ms\"\nmax-late-fraction = 0.2\n\
         p50 = \"500ms\"\np95 = \"1s\"\np99 = \"1s\"\np999 = \"2s\"\nmin-achieved-rate = 0.5\n",
    )
    .unwrap();
    let template = dir.path().join("market.json");
    std::fs::write(
        &template,
        r#"{"id": "load-{{variant}}",
 "inputs": [{"name": "market", "datatype": "FP32", "shape": [4, 5],
             "data": [{{repeat:4}}[{{row}}, {{repeat:4}}{{rand:-1:1}}{{end}}]{{end}}]}]}"#,
    )
    .unwrap();
    let run = |defect: bool, reports: &str| {
        let url = format!("http://{}", serve_market_model(defect));
        let reports = dir.path().join(reports);
        let args = [
            "load",
            "--target",
            &url,
            "--model",
            "market-model",
            "--payload",
            template.to_str().unwrap(),
            "--rate",
            "200",
            "--duration",
            "1500ms",
            "--warm-up",
            "500ms",
            "--report-dir",
            reports.to_str().unwrap(),
        ];
        let out = gauntlet(&args, dir.path());
        let json = std::fs::read_to_string(reports.join("report.json")).unwrap_or_default();
        (code(&out), text(&out.stderr), json)
    };
    let (status, stderr, json) = run(false, "good");
    assert_eq!(status, 0, "{stderr}");
    assert!(stderr.contains(" 0 failed"), "{stderr}");
    assert!(
        json.contains("16 bodies from payload") && json.contains("predict FP32 [-1, 1]"),
        "{json}"
    );
    let (status, stderr, json) = run(true, "defect");
    assert_eq!(status, 1, "{stderr}");
    assert!(
        stderr.contains("body mismatch") && stderr.contains("but the model's metadata says"),
        "{stderr}"
    );
    assert!(json.contains("Failure detail"), "{json}");
    // A template that does not parse is a usage error naming the byte.
    std::fs::write(&template, r#"{"inputs": [{{repeat:2}}1]}"#).unwrap();
    let (status, stderr, _) = run(false, "bad");
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("without its `{{end}}`"), "{stderr}");
}
