//! The resilience suite against the in-process engine (every case passes), against an engine
//! whose breaker never opens (the breaker cases fail), and against a URL target (skipped).
//! The container cases (backends in `gauntlet-engine:dev` containers) are in
//! `tests/containers.rs`.
#![expect(
    clippy::unwrap_used,
    reason = "a failed unwrap in a test is the test's failure"
)]

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gauntlet_harness::config::Settings;
use gauntlet_harness::{Capabilities, InProcess, Suite, SuiteCtx, Target, TargetError};
use gauntlet_resilience::ResilienceSuite;

/// The in-process cases (the container cases are named `container_…`).
fn in_process_only(name: &str) -> bool {
    !name.starts_with("container_")
}

fn settings(toml: &str) -> Settings {
    let mut s = Settings::default();
    s.sections
        .insert("resilience".to_owned(), toml::from_str(toml).unwrap());
    s
}

fn run(target: Arc<dyn Target>, settings: Settings) -> Vec<(String, String, String)> {
    run_only(target, settings, |_| true)
}

fn run_only(
    target: Arc<dyn Target>,
    settings: Settings,
    keep: fn(&str) -> bool,
) -> Vec<(String, String, String)> {
    let mut planned = ResilienceSuite.gates(&settings).unwrap();
    planned.retain(|p| keep(&p.name));
    let ctx = SuiteCtx {
        target,
        settings,
        planned,
        progress: false,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let output = runtime.block_on(ResilienceSuite.run(ctx)).unwrap();
    output
        .cases
        .into_iter()
        .map(|c| {
            (
                c.id.clone(),
                c.outcome.label().to_owned(),
                c.message.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn in_process() -> Arc<dyn Target> {
    Arc::new(InProcess::new(gauntlet_engine::AppState::new(
        Default::default(),
    )))
}

#[test]
fn every_case_passes_against_the_reference_engine() {
    let results = run_only(in_process(), Settings::default(), in_process_only);
    assert_eq!(results.len(), 7);
    for (id, outcome, message) in &results {
        assert_eq!(outcome, "pass", "{id}: {message}");
    }
    let message = |id: &str| &results.iter().find(|r| r.0.ends_with(id)).unwrap().2;
    assert!(message("blackhole_opens_breaker").contains("from fault to open"));
    assert!(message("recovery_closes_breaker").contains("from recovery to closed"));
    assert!(message("recovery_closes_breaker").contains("half-open → closed"));
}

/// Regression guard for the suite itself: an engine that never opens its breaker (forced
/// closed) must fail every breaker case, while a failed load still passes.
#[test]
fn a_breaker_that_never_opens_fails_the_breaker_cases() {
    let results = run_only(
        in_process(),
        settings(
            "timeout = \"120ms\"\nmax-calls-to-open = 6\n[breaker]\nstate = \"forced-closed\"\n\
             slow-call-duration-threshold = \"40ms\"\nminimum-number-of-calls = 3\n",
        ),
        in_process_only,
    );
    for (id, outcome, message) in &results {
        // These three never need the breaker to open.
        let expected = if id.ends_with("failed_load_keeps_live_model")
            || id.ends_with("neutral_fallback_answers_every_row")
            || id.ends_with("time_window_forgets_old_calls")
        {
            "pass"
        } else {
            "fail"
        };
        assert_eq!(outcome, expected, "{id}: {message}");
    }
    let blackhole = &results[0].2;
    assert!(
        blackhole.contains("breaker still forced-closed after 6 calls"),
        "{blackhole}"
    );
}

/// A target the suite cannot pair with a backend.
struct Url;

#[async_trait]
impl Target for Url {
    fn describe(&self) -> String {
        "http://127.0.0.1:9 (gauntlet-engine)".to_owned()
    }
    fn capabilities(&self) -> &Capabilities {
        static NONE: std::sync::OnceLock<Capabilities> = std::sync::OnceLock::new();
        NONE.get_or_init(Capabilities::new)
    }
    async fn send(
        &self,
        _request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TargetError> {
        Err(TargetError::Unsupported {
            target: self.describe(),
            what: "anything".to_owned(),
        })
    }
}

#[test]
fn a_url_target_is_skipped_with_the_reason() {
    let results = run(Arc::new(Url), Settings::default());
    assert_eq!(
        results.len(),
        7,
        "the container cases are not planned by default"
    );
    for (id, outcome, message) in &results {
        assert_eq!(outcome, "skip", "{id}");
        assert!(
            message.contains("in-process frontend/backend pairs"),
            "{message}"
        );
    }
}

/// The container cases are planned when asked for (and skipped with the reason where Docker
/// or the image is absent: `tests/containers.rs`).
#[test]
fn the_container_cases_are_planned_with_containers_true() {
    let planned = ResilienceSuite
        .gates(&settings("containers = true"))
        .unwrap();
    assert_eq!(planned.len(), 13);
    assert_eq!(
        planned
            .iter()
            .filter(|p| p.name.starts_with("container_"))
            .count(),
        6
    );
    let results = run(Arc::new(Url), settings("containers = true"));
    assert_eq!(results.len(), 13);
    assert!(results.iter().all(|r| r.1 == "skip"), "{results:?}");
}

/// Asked for but impossible here (an image tag nobody built): each container case is skipped
/// with the reason and the way to build it; the in-process cases still run.
#[test]
fn container_cases_without_their_image_are_skipped_with_the_reason() {
    if std::env::var_os("GAUNTLET_REQUIRE_IMAGE").is_some() {
        // There a missing image is an error by design (tests/containers.rs covers it).
        return;
    }
    let results = run_only(
        in_process(),
        settings("containers = true\nimage = \"gauntlet-engine:no-such-tag\""),
        |name| name.starts_with("container_"),
    );
    assert_eq!(results.len(), 6);
    for (id, outcome, message) in &results {
        assert_eq!(outcome, "skip", "{id}: {message}");
        assert!(
            message.contains("no Docker daemon")
                || (message.contains("gauntlet-engine:no-such-tag is not built")
                    && message.contains("ci/image/build")),
            "{id}: {message}"
        );
    }
}

/// A frontend whose neutral fallback answers one row whatever the batch (what a fallback that
/// ignores the batch's shape would send).
struct OneNeutralRow {
    inner: Arc<dyn Target>,
}

#[async_trait]
impl Target for OneNeutralRow {
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
        let response = self.inner.send(request).await?;
        let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(response.body()) else {
            return Ok(response);
        };
        if body["parameters"]["degraded"] != "neutral" {
            return Ok(response);
        }
        let output = &mut body["outputs"][0];
        output["shape"] = serde_json::json!([1]);
        if let Some(data) = output["data"].as_array_mut() {
            data.truncate(1);
        }
        Ok(http::Response::new(Bytes::from(body.to_string())))
    }
}

/// The neutral case fails a frontend whose neutral answer has one row for a batch of three,
/// and only that case.
#[test]
fn a_neutral_fallback_of_one_row_fails_the_neutral_case() {
    let settings = Settings::default();
    let mut planned = ResilienceSuite.gates(&settings).unwrap();
    planned.retain(|p| {
        p.name == "neutral_fallback_answers_every_row" || p.name == "failed_load_keeps_live_model"
    });
    assert_eq!(planned.len(), 2);
    let ctx = SuiteCtx {
        target: in_process(),
        settings,
        planned,
        progress: false,
    };
    let wrap: gauntlet_resilience::WrapFrontend =
        Arc::new(|inner| Arc::new(OneNeutralRow { inner }) as Arc<dyn Target>);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let output = runtime
        .block_on(ResilienceSuite.run_with_frontend(ctx, wrap))
        .unwrap();
    for case in &output.cases {
        let message = case.message.clone().unwrap_or_default();
        if case.id.ends_with("neutral_fallback_answers_every_row") {
            assert_eq!(case.outcome.label(), "fail", "{message}");
            assert!(message.contains("[3, n]: expected 3 rows"), "{message}");
        } else {
            assert_eq!(case.outcome.label(), "pass", "{}: {message}", case.id);
        }
    }
}
