//! The container cases: backends in `gauntlet-engine:dev` containers (`ci/image/build`), the
//! frontend the reference engine in process. They pass against the reference engine, and a
//! defective frontend fails the matching cases: one whose breaker never opens, one that
//! answers 5xx where the engine falls back, one that accepts a backend switch and ignores it.
//!
//! They run with `GAUNTLET_REQUIRE_IMAGE=1` (the `resilience` CI lane), and then a missing
//! Docker or image is a failure; without it they are skipped with the reason. (The suite's
//! own skip of a container case without Docker or its image is in `tests/suite.rs`.) One test at a time: the blue/green
//! case's 10,000 req/s must not share the machine with another case. Every container is
//! labelled `org.gauntlet.test=resilience` and removed by the case that started it; the last
//! check of each test is that none is left.
#![expect(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is the test's failure"
)]

use std::process::Command;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use gauntlet_harness::config::Settings;
use gauntlet_harness::{Capabilities, InProcess, Suite, SuiteCtx, Target, TargetError};
use gauntlet_resilience::container::{LABEL, REQUIRE_VAR, unavailable};
use gauntlet_resilience::{ResilienceSuite, WrapFrontend};
use http::StatusCode;

/// Serialises the tests of this file.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether the container cases run: only with `GAUNTLET_REQUIRE_IMAGE` set (the
/// `resilience` lane), since they take half a minute and load the machine with 10,000 req/s,
/// which the workspace's test step must not pay for; then Docker and the image must be there.
fn ready() -> bool {
    if std::env::var_os(REQUIRE_VAR).is_none() {
        eprintln!(
            "skipped: set {REQUIRE_VAR}=1 to run the container cases (ci/image/build first; the resilience lane does both)"
        );
        return false;
    }
    if let Some(why) = unavailable("gauntlet-engine:dev") {
        panic!("{REQUIRE_VAR} is set but {why}");
    }
    true
}

/// Settings with the container cases planned, and `toml` over them.
fn settings(toml: &str) -> Settings {
    let mut s = Settings::default();
    let mut table: toml::Table = toml::from_str(toml).unwrap();
    table.insert("containers".to_owned(), toml::Value::Boolean(true));
    s.sections.insert("resilience".to_owned(), table);
    s
}

/// (case, outcome, message) of the named cases, run with `wrap` around every frontend.
fn run(
    settings: Settings,
    cases: &[&str],
    wrap: Option<WrapFrontend>,
) -> Vec<(String, String, String)> {
    let mut planned = ResilienceSuite.gates(&settings).unwrap();
    planned.retain(|p| cases.iter().any(|c| *c == p.name));
    assert_eq!(planned.len(), cases.len(), "unknown case in {cases:?}");
    let ctx = SuiteCtx {
        target: Arc::new(InProcess::new(gauntlet_engine::AppState::new(
            Default::default(),
        ))),
        settings,
        planned,
        progress: false,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let output = runtime
        .block_on(async {
            match wrap {
                Some(w) => ResilienceSuite.run_with_frontend(ctx, w).await,
                None => ResilienceSuite.run(ctx).await,
            }
        })
        .unwrap();
    let results: Vec<_> = output
        .cases
        .into_iter()
        .map(|c| {
            let name = c.id.rsplit('/').next().unwrap_or(&c.id).to_owned();
            let name = name.rsplit("::").next().unwrap_or(&name).to_owned();
            let message = c.message.clone().unwrap_or_default();
            eprintln!("{name}: {} — {message}", c.outcome.label());
            (name, c.outcome.label().to_owned(), message)
        })
        .collect();
    let left = Command::new("docker")
        .args([
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label={LABEL}"),
        ])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "containers left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    results
}

fn outcome_of<'a>(results: &'a [(String, String, String)], case: &str) -> (&'a str, &'a str) {
    let r = results
        .iter()
        .find(|r| r.0.ends_with(case))
        .unwrap_or_else(|| panic!("{case} not in {results:?}"));
    (r.1.as_str(), r.2.as_str())
}

const ALL: [&str; 6] = [
    "container_pause_opens_breaker",
    "container_unpause_closes_breaker",
    "container_kill_falls_back_and_recovers",
    "container_latency_opens_breaker",
    "container_blue_green_switch",
    "container_failed_load_keeps_live_model",
];

#[test]
fn every_container_case_passes_against_the_reference_engine() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let results = run(settings(""), &ALL, None);
    for case in ALL {
        let (outcome, message) = outcome_of(&results, case);
        assert_eq!(outcome, "pass", "{case}: {message}");
    }
    let (_, pause) = outcome_of(&results, "container_pause_opens_breaker");
    assert!(pause.contains("from fault to open"), "{pause}");
    let (_, unpause) = outcome_of(&results, "container_unpause_closes_breaker");
    assert!(unpause.contains("half-open → closed"), "{unpause}");
    let (_, blue_green) = outcome_of(&results, "container_blue_green_switch");
    assert!(blue_green.contains(", 0 failed"), "{blue_green}");
}

/// A frontend whose breaker is forced closed never opens it: the breaker cases fail, each
/// saying so; the blue/green switch and the refused load do not depend on it.
#[test]
fn a_breaker_that_never_opens_fails_the_container_breaker_cases() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let cases = [
        "container_pause_opens_breaker",
        "container_unpause_closes_breaker",
        "container_kill_falls_back_and_recovers",
        "container_latency_opens_breaker",
    ];
    let results = run(
        settings(
            "timeout = \"120ms\"\nmax-calls-to-open = 6\n[breaker]\nstate = \"forced-closed\"\n\
             slow-call-duration-threshold = \"40ms\"\nminimum-number-of-calls = 3\n",
        ),
        &cases,
        None,
    );
    for case in cases {
        let (outcome, message) = outcome_of(&results, case);
        assert_eq!(outcome, "fail", "{case}: {message}");
    }
    let (_, pause) = outcome_of(&results, "container_pause_opens_breaker");
    assert!(
        pause.contains("breaker still forced-closed after 6 calls"),
        "{pause}"
    );
}

/// What a defective frontend does wrong.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Defect {
    /// Answers 503 where the engine answers with a fallback (no fallback chain).
    ServerErrorInsteadOfFallback,
    /// Answers a backend switch with 200 and keeps calling the old backend.
    IgnoresBackendSwitch,
}

/// The reference engine behind a defect.
struct Defective {
    inner: Arc<dyn Target>,
    defect: Defect,
}

#[async_trait]
impl Target for Defective {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TargetError> {
        let path = request.uri().path().to_owned();
        if self.defect == Defect::IgnoresBackendSwitch && path.ends_with("/backend") {
            return Ok(http::Response::new(Bytes::from_static(b"{}")));
        }
        let response = self.inner.send(request).await?;
        let degraded = response.body().windows(10).any(|w| w == b"\"degraded\"");
        if self.defect == Defect::ServerErrorInsteadOfFallback
            && path.ends_with("/infer")
            && degraded
        {
            let mut failed =
                http::Response::new(Bytes::from_static(b"{\"error\":\"backend unavailable\"}"));
            *failed.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok(failed);
        }
        Ok(response)
    }
}

fn wrap(defect: Defect) -> WrapFrontend {
    Arc::new(move |inner| Arc::new(Defective { inner, defect }) as Arc<dyn Target>)
}

/// A frontend that answers 5xx instead of falling back fails every case where the backend
/// is gone: pause, unpause (while open), kill, and the refused load with the backend killed.
#[test]
fn a_frontend_that_serves_5xx_during_a_fault_fails_the_container_cases() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let cases = [
        "container_pause_opens_breaker",
        "container_unpause_closes_breaker",
        "container_kill_falls_back_and_recovers",
        "container_failed_load_keeps_live_model",
    ];
    let results = run(
        settings(""),
        &cases,
        Some(wrap(Defect::ServerErrorInsteadOfFallback)),
    );
    for case in cases {
        let (outcome, message) = outcome_of(&results, case);
        assert_eq!(outcome, "fail", "{case}: {message}");
        assert!(
            message.contains("503") || message.contains("non-2xx"),
            "{case}: {message}"
        );
    }
}

/// A frontend that acknowledges a switch to green and keeps calling blue fails blue/green:
/// its calls time out once blue is paused, and clients see degraded answers.
#[test]
fn a_switch_that_is_not_applied_fails_blue_green() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let cases = ["container_blue_green_switch"];
    let results = run(
        settings("blue-green-rate = 2000\nblue-green-duration = \"3s\"\n"),
        &cases,
        Some(wrap(Defect::IgnoresBackendSwitch)),
    );
    let (outcome, message) = outcome_of(&results, cases[0]);
    assert_eq!(outcome, "fail", "{message}");
    assert!(message.contains("failed across the switch"), "{message}");
}
