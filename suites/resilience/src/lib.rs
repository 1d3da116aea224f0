//! The `resilience` suite: a frontend engine serving a model from a backend engine through
//! a fault proxy, with faults injected while traffic flows.
//!
//! Each case builds its own pair on loopback: a backend `gauntlet-engine` on `127.0.0.1:0`,
//! a [`gauntlet_faultproxy::FaultProxy`] in front of it, and the frontend under test, an
//! engine of the target's build whose `[[remote-model]]` points at the proxy with the
//! breaker settings of `[profile.X.resilience.breaker]` (and a local copy of the model as
//! its last good fallback). Cases:
//!
//! - `blackhole_opens_breaker` (ENG-CB, ENG-FB, SLA-AVAIL): the backend is cut off
//!   (blackhole); the breaker opens within `max-calls-to-open` calls, every answer is a 200,
//!   the answers after it opened are flagged `degraded`. Reports the time from fault to open.
//! - `stopped_backend_falls_back` (ENG-CB, ENG-FB, SLA-AVAIL): the backend process stops;
//!   the same, with connections refused instead of hanging.
//! - `recovery_closes_breaker` (ENG-CB): after a blackhole opened it, the fault is lifted;
//!   the first trial call half-open is malformed, and the backend's 400 is passed on with its
//!   permit given back (`outcome="ignored"`); the breaker goes half-open then closed within
//!   `wait-duration-in-open-state` plus `max-time-to-close`. Reports the time from recovery
//!   to closed.
//! - `latency_opens_breaker` (ENG-CB, ENG-FB): a latency toxic between the slow-call
//!   threshold and the timeout; the calls succeed, slowly, and the slow-call rate opens it.
//! - `failed_load_keeps_live_model` (ENG-FB, SLA-AVAIL): loading an invalid artifact over
//!   the frontend's live model is refused and the live model keeps answering.
//! - `neutral_fallback_answers_every_row` (ENG-FB, ENG-VAL): a remote model with no local
//!   copy and no rule model, its backend's port closed: the neutral prediction answers each
//!   row of well-formed batches (`[rows, n]`, `[n]`, columns `[rows]`, up to `max-batch-rows`)
//!   with the configured neutral value flagged `degraded: neutral`, and refuses malformed
//!   ones as a local model would (400 naming the field; 413 over `max-batch-rows`).
//! - `time_window_forgets_old_calls` (ENG-CB, ENG-OBS): a breaker with a 2-second
//!   time-based window; its first 2 calls show with no failure rate (fewer than its
//!   minimum-number-of-calls, 5); 2 s after them `/metrics` shows the window empty
//!   (`gauntlet_breaker_buffered_calls` 0, the failure rate absent: undefined); then 3
//!   successful and 2 failed calls show there, a failure rate of 40 %.
//!
//! A frontend that never opens its breaker fails the first four cases. The frontends are
//! built here, so a URL or container target is skipped with the reason.
//!
//! **Container cases** (planned with `containers = true`, as in `gauntlet run --profile
//! containers`; run when Docker answers and `image` is built by `ci/image/build`, skipped
//! with the reason otherwise, an error with `GAUNTLET_REQUIRE_IMAGE` set): the backend is a
//! `gauntlet-engine:dev` container, labelled `org.gauntlet.test=resilience`, published on a
//! 127.0.0.1 port and removed when the case ends (after a panic too); the frontend is this
//! build's engine in process, its `[[remote-model]]` pointing at the fault proxy in front of
//! that port.
//!
//! - `container_pause_opens_breaker` (ENG-CB, ENG-FB, SLA-AVAIL): `docker pause`; the
//!   breaker opens within `max-calls-to-open` calls, fallback answers, zero non-2xx.
//!   Reports pause → open.
//! - `container_unpause_closes_breaker` (ENG-CB): after the pause opened it, `docker
//!   unpause`; half-open, then closed, with zero non-2xx. Reports unpause → closed.
//! - `container_kill_falls_back_and_recovers` (ENG-CB, ENG-FB, SLA-AVAIL): `docker kill
//!   --signal KILL`; the next answer is a fallback and the breaker opens; `docker start` on
//!   the same port, and the breaker closes again. Reports kill → fallback and start → closed.
//! - `container_latency_opens_breaker` (ENG-CB, ENG-FB): the latency toxic, in front of the
//!   container.
//! - `container_blue_green_switch` (ENG-BG, SLA-AVAIL): two containers, blue and green; the
//!   frontend, served on a loopback port, takes `blue-green-rate` req/s (10,000) from the
//!   `gauntlet-load` open-model driver for `blue-green-duration`; at a third of it
//!   `POST /v2/repository/models/{m}/backend` switches the remote model to green, at two
//!   thirds blue is paused. Zero failed requests and zero degraded answers, nothing sent to
//!   blue after the switch, and at least 95 % of the planned rate achieved.
//! - `container_failed_load_keeps_live_model` (ENG-FB, SLA-AVAIL): the refused load, with
//!   the container backend killed at the end.
//!
//! [`ResilienceSuite::run_with_frontend`] puts a wrapper around each frontend: the suite's
//! tests use it to show that a frontend answering 5xx where the engine falls back, or one
//! ignoring a backend switch, fails the matching cases.
//!
//! ```
//! use std::sync::Arc;
//!
//! use gauntlet_harness::config::Settings;
//! use gauntlet_harness::{InProcess, Suite, SuiteCtx, Target};
//! use gauntlet_resilience::ResilienceSuite;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Runtime::new()?;
//! let target: Arc<dyn Target> = Arc::new(InProcess::new(gauntlet_engine::AppState::new(Default::default())));
//! let settings = Settings::default();
//! let planned = ResilienceSuite.gates(&settings)?;
//! let planned: Vec<_> = planned.into_iter().filter(|p| p.name == "stopped_backend_falls_back").collect();
//! let ctx = SuiteCtx { target, settings, planned, progress: false };
//! let output = runtime.block_on(ResilienceSuite.run(ctx))?;
//! assert_eq!(output.cases[0].outcome.label(), "pass", "{:?}", output.cases[0].message);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod blue_green;
mod cases;
pub mod container;
mod neutral;
mod pair;
mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gauntlet_engine::AppState;
use gauntlet_engine::backend::BreakerConfig;
use gauntlet_harness::config::Settings;
use gauntlet_harness::suite::{PlannedCase, Suite, SuiteCtx, SuiteError, SuiteOutput};
use gauntlet_harness::{InProcess, Target};
use gauntlet_reports::Outcome;
use serde::Deserialize;

/// Version of this crate, recorded in every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest one case may take.
const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// Wraps the frontend engine each case builds (in process) before the case talks to it: the
/// suite's own tests use it to stand in a defective frontend (one that answers 5xx where the
/// engine falls back, or ignores a backend switch) and show the matching cases fail.
pub type WrapFrontend = Arc<dyn Fn(Arc<dyn Target>) -> Arc<dyn Target> + Send + Sync>;

/// What every case gets: the settings and how to present the frontend.
pub(crate) struct Setup {
    pub(crate) config: ResilienceConfig,
    wrap: Option<WrapFrontend>,
}

impl Setup {
    /// The frontend engine over `state`, as the cases talk to it.
    pub(crate) fn frontend(&self, state: AppState) -> Arc<dyn Target> {
        let engine: Arc<dyn Target> = Arc::new(InProcess::new(state));
        match &self.wrap {
            Some(wrap) => wrap(engine),
            None => engine,
        }
    }
}

/// `[profile.X.resilience]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ResilienceConfig {
    /// The fixture model the pair serves (`ref-linear`).
    pub model: String,
    /// The frontend's deadline for one backend call, 10 ms to 10 s (`300ms`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most calls after a fault before the breaker must be open, 1 to 1,000 (10).
    pub max_calls_to_open: u32,
    /// Longest time, after the open wait, for the breaker to close once the fault is
    /// lifted, 10 ms to 60 s (`5s`).
    #[serde(with = "humantime_serde")]
    pub max_time_to_close: Duration,
    /// The frontend's breaker (resilience4j's settings, kebab-case).
    pub breaker: BreakerConfig,
    /// Plan the container cases too (`false`): they need Docker and `image`, take a minute,
    /// and run 10,000 req/s, so a run asks for them (`gauntlet run --profile containers`).
    pub containers: bool,
    /// The backend image of the container cases, built here by `ci/image/build`
    /// (`gauntlet-engine:dev`).
    pub image: String,
    /// Planned rate of the blue/green case's load, 1 to 100,000 req/s (10,000).
    pub blue_green_rate: u32,
    /// Length of the blue/green case's load, 1 s to 60 s (`4s`); the switch lands at a
    /// third of it.
    #[serde(with = "humantime_serde")]
    pub blue_green_duration: Duration,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            model: "ref-linear".to_owned(),
            timeout: Duration::from_millis(300),
            max_calls_to_open: 10,
            max_time_to_close: Duration::from_secs(5),
            breaker: BreakerConfig {
                sliding_window_size: 10,
                minimum_number_of_calls: 5,
                failure_rate_threshold: 50.0,
                slow_call_rate_threshold: 50.0,
                slow_call_duration_threshold: Duration::from_millis(100),
                wait_duration_in_open_state: Duration::from_millis(500),
                permitted_number_of_calls_in_half_open_state: 3,
                ..BreakerConfig::default()
            },
            containers: false,
            image: "gauntlet-engine:dev".to_owned(),
            blue_green_rate: 10_000,
            blue_green_duration: Duration::from_secs(4),
        }
    }
}

fn config(settings: &Settings) -> Result<ResilienceConfig, SuiteError> {
    let c: ResilienceConfig = toml::Value::Table(settings.section("resilience"))
        .try_into()
        .map_err(|e: toml::de::Error| SuiteError::Config(e.message().to_owned()))?;
    let err = |e: String| SuiteError::Config(e);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    gauntlet_harness::gate::in_range("timeout", ms(c.timeout), 10.0, 10_000.0, "10ms to 10s")
        .map_err(|e| err(e.to_string()))?;
    gauntlet_harness::gate::in_range(
        "max-calls-to-open",
        c.max_calls_to_open,
        1,
        1_000,
        "1 to 1000",
    )
    .map_err(|e| err(e.to_string()))?;
    gauntlet_harness::gate::in_range(
        "max-time-to-close",
        ms(c.max_time_to_close),
        10.0,
        60_000.0,
        "10ms to 60s",
    )
    .map_err(|e| err(e.to_string()))?;
    gauntlet_harness::gate::in_range(
        "blue-green-rate",
        c.blue_green_rate,
        1,
        100_000,
        "1 to 100000 req/s",
    )
    .map_err(|e| err(e.to_string()))?;
    gauntlet_harness::gate::in_range(
        "blue-green-duration",
        ms(c.blue_green_duration),
        1_000.0,
        60_000.0,
        "1s to 60s",
    )
    .map_err(|e| err(e.to_string()))?;
    if c.image.is_empty() || c.image.len() > 255 || c.image.contains(char::is_whitespace) {
        return Err(err(format!(
            "image = {:?} must be an image reference: 1 to 255 characters, no space",
            c.image
        )));
    }
    c.breaker
        .validate()
        .map_err(|(key, m)| err(format!("breaker.{key} {m}")))?;
    if c.breaker.slow_call_duration_threshold >= c.timeout {
        return Err(err(format!(
            "breaker.slow-call-duration-threshold ({}) must be under timeout ({}): the latency case needs slow calls that still succeed",
            humantime::format_duration(c.breaker.slow_call_duration_threshold),
            humantime::format_duration(c.timeout)
        )));
    }
    Ok(c)
}

/// The `resilience` suite.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResilienceSuite;

#[async_trait]
impl Suite for ResilienceSuite {
    fn name(&self) -> &'static str {
        "resilience"
    }

    fn about(&self) -> &'static str {
        "frontend → fault proxy → backend: breaker opens and closes, fallbacks answer, no 5xx"
    }

    fn crate_version(&self) -> (&'static str, &'static str) {
        ("gauntlet-resilience", VERSION)
    }

    fn gates(&self, settings: &Settings) -> Result<Vec<PlannedCase>, SuiteError> {
        let config = config(settings)?;
        Ok(cases::CASES
            .iter()
            .filter(|c| config.containers || !c.container)
            .map(|c| PlannedCase::new(c.name, c.requirements))
            .collect())
    }

    /// Runs the selected cases one after another, each on a pair of its own.
    async fn run(&self, ctx: SuiteCtx) -> Result<SuiteOutput, SuiteError> {
        self.run_cases(ctx, None).await
    }
}

impl ResilienceSuite {
    /// [`Suite::run`], with every frontend wrapped by `wrap` before the cases talk to it.
    ///
    /// # Errors
    /// [`SuiteError::Config`] for invalid `[resilience]` settings.
    pub async fn run_with_frontend(
        &self,
        ctx: SuiteCtx,
        wrap: WrapFrontend,
    ) -> Result<SuiteOutput, SuiteError> {
        self.run_cases(ctx, Some(wrap)).await
    }

    async fn run_cases(
        &self,
        ctx: SuiteCtx,
        wrap: Option<WrapFrontend>,
    ) -> Result<SuiteOutput, SuiteError> {
        let setup = Setup {
            config: config(&ctx.settings)?,
            wrap,
        };
        let skip = pair::unsupported(ctx.target.as_ref());
        // Asked once, when the first container case is planned.
        let mut docker: Option<Option<String>> = None;
        let mut results = Vec::new();
        for case in cases::CASES {
            let Some(planned) = ctx.planned.iter().find(|p| p.name == case.name) else {
                continue;
            };
            let started = Instant::now();
            // (why it cannot run, whether that is an error rather than a skip)
            let mut cannot: Option<(String, bool)> = skip.clone().map(|why| (why, false));
            if cannot.is_none() && case.container {
                if docker.is_none() {
                    let image = setup.config.image.clone();
                    docker = Some(
                        tokio::task::spawn_blocking(move || container::unavailable(&image))
                            .await
                            .unwrap_or_else(|e| Some(format!("docker check failed: {e}"))),
                    );
                }
                let required = std::env::var_os(container::REQUIRE_VAR).is_some();
                cannot = docker.clone().flatten().map(|why| (why, required));
            }
            let (outcome, message) = match cannot {
                Some((why, true)) => (
                    Outcome::Error,
                    format!("{} is set but {why}", container::REQUIRE_VAR),
                ),
                Some((why, false)) => (
                    Outcome::Skip {
                        reason: why.clone(),
                    },
                    why,
                ),
                None => match tokio::time::timeout(CASE_TIMEOUT, (case.run)(&setup)).await {
                    Ok(Ok(verdict)) => (verdict.outcome, verdict.message),
                    Ok(Err(setup)) => (Outcome::Error, format!("setup failed: {setup}")),
                    Err(_) => (
                        Outcome::Error,
                        format!("no verdict within {} s", CASE_TIMEOUT.as_secs()),
                    ),
                },
            };
            results.push(planned.result(self.name(), outcome, Some(message), started.elapsed()));
        }
        Ok(SuiteOutput {
            cases: results,
            sections: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_harness::Catalogue;

    #[test]
    fn cases_are_distinct_and_their_requirements_known() {
        let catalogue = Catalogue::builtin().unwrap();
        let mut names: Vec<&str> = cases::CASES.iter().map(|c| c.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        for c in cases::CASES {
            for r in c.requirements {
                assert!(catalogue.get(r).is_some(), "{}: {r}", c.name);
            }
        }
    }

    #[test]
    fn settings_are_checked() {
        let settings = |toml: &str| -> Settings {
            let mut s = Settings::default();
            s.sections
                .insert("resilience".to_owned(), toml::from_str(toml).unwrap());
            s
        };
        for (toml, needle) in [
            ("max-calls-to-open = 0", "max-calls-to-open"),
            ("timeout = \"1ms\"", "timeout"),
            (
                "[breaker]\nsliding-window-size = 0",
                "breaker.sliding-window-size",
            ),
            ("[breaker]\nwindow = 3", "unknown field `window`"),
            ("timeout = \"50ms\"", "must be under timeout"),
            ("modle = \"x\"", "unknown field `modle`"),
            ("blue-green-rate = 0", "blue-green-rate"),
            ("blue-green-duration = \"2m\"", "blue-green-duration"),
            ("image = \"\"", "image"),
            ("image = \"a b\"", "no space"),
        ] {
            let err = config(&settings(toml)).unwrap_err().to_string();
            assert!(err.contains(needle), "{toml}: {err}");
        }
        assert!(config(&Settings::default()).is_ok());
    }
}
