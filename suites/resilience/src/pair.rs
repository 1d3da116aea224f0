//! One case's systems: backend engine → fault proxy → frontend engine, all on loopback, all
//! stopped when the [`Pair`] drops.

use std::time::{Duration, Instant};

use gauntlet_engine::backend::RemoteModelConfig;
use gauntlet_engine::oip::{Datatype, InferRequest, InferResponse, RequestInput};
use gauntlet_engine::{AppState, EngineConfig, ModelArtifact};
use gauntlet_faultproxy::{FaultProxy, Toxics};
use gauntlet_harness::{InProcess, ServedEngine, Target, TargetExt as _};

use crate::ResilienceConfig;

/// Why the suite cannot run against `target`, if it cannot: its pairs are built from the
/// reference engine in process.
pub(crate) fn unsupported(target: &dyn Target) -> Option<String> {
    let described = target.describe();
    (!described.starts_with("in-process")).then(|| {
        format!(
            "the resilience suite builds in-process frontend/backend pairs around a fault proxy; {described} cannot be given a remote backend from here (container pairs are a later step)"
        )
    })
}

/// The backend engine, the proxy in front of it, the frontend that calls it through the
/// proxy.
pub(crate) struct Pair {
    pub(crate) model: ModelArtifact,
    backend: Option<ServedEngine>,
    pub(crate) proxy: FaultProxy,
    pub(crate) frontend: InProcess,
    request: InferRequest,
}

/// What one infer call through the frontend gave.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// `parameters.degraded` of a 200, as sent (`last-good`).
    pub(crate) degraded: Option<String>,
}

impl Pair {
    /// Starts the three; the frontend holds a copy of the model as its last good fallback.
    pub(crate) async fn start(config: &ResilienceConfig) -> Result<Pair, String> {
        let model = gauntlet_fixtures::load_embedded()
            .map_err(|e| format!("failed to load the fixture models: {e}"))?
            .into_iter()
            .find(|a| a.name == config.model)
            .ok_or_else(|| format!("model = {:?} is not a fixture model", config.model))?;
        let backend_state = AppState::new(EngineConfig::default());
        load(&backend_state, &model)?;
        let backend = ServedEngine::start(backend_state, 1).map_err(|e| e.to_string())?;
        let proxy = FaultProxy::bind(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            backend.addr(),
        )
        .await
        .map_err(|e| format!("failed to start the fault proxy: {e}"))?;
        let frontend_config = EngineConfig {
            remote_models: vec![RemoteModelConfig {
                name: model.name.clone(),
                backend: format!("http://{}", proxy.addr()),
                remote_name: None,
                timeout: config.timeout,
                rule_model: None,
                neutral: 0.0,
                breaker: config.breaker.clone(),
            }],
            ..EngineConfig::default()
        };
        frontend_config
            .validate()
            .map_err(|e| format!("frontend config: {e}"))?;
        let frontend_state = AppState::new(frontend_config);
        load(&frontend_state, &model)?;
        let request = InferRequest {
            id: Some("resilience".to_owned()),
            inputs: vec![RequestInput {
                name: "x".to_owned(),
                shape: vec![1, model.features.len() as u64],
                datatype: Datatype::Fp64,
                data: model.features.iter().map(|f| Some(f.median)).collect(),
            }],
            ..InferRequest::default()
        };
        Ok(Pair {
            model,
            backend: Some(backend),
            proxy,
            frontend: InProcess::new(frontend_state),
            request,
        })
    }

    /// Stops the backend engine (its port then refuses connections).
    pub(crate) fn stop_backend(&mut self) {
        self.backend = None;
    }

    /// Sets the proxy's toxics.
    pub(crate) fn toxics(&self, toxics: Toxics) -> Result<(), String> {
        self.proxy.control().set(toxics).map_err(|e| e.to_string())
    }

    /// One infer call of the model through the frontend.
    pub(crate) async fn infer(&self) -> Result<Answer, String> {
        let reply = self
            .frontend
            .infer(&self.model.name, None, &self.request)
            .await
            .map_err(|e| e.to_string())?;
        let degraded = if reply.status.is_success() {
            let body: InferResponse = reply
                .json()
                .map_err(|e| format!("a 200 that is not an infer response: {e}"))?;
            body.parameters.degraded.map(|f| f.as_str().to_owned())
        } else {
            None
        };
        Ok(Answer {
            status: reply.status.as_u16(),
            degraded,
        })
    }

    /// The frontend's breaker state, from its `/metrics` (`open`, `half-open`, ...).
    pub(crate) async fn breaker_state(&self) -> Result<String, String> {
        let text = self.metrics().await?;
        let prefix = format!(
            "gauntlet_breaker_state{{model=\"{}\",state=\"",
            self.model.name
        );
        text.lines()
            .find_map(|l| {
                let rest = l.strip_prefix(&prefix)?;
                let (state, value) = rest.split_once("\"} ")?;
                (value.trim() == "1").then(|| state.to_owned())
            })
            .ok_or_else(|| {
                format!(
                    "no gauntlet_breaker_state for {} in /metrics",
                    self.model.name
                )
            })
    }

    /// A counter of the frontend's `/metrics` (0 when the series is absent).
    pub(crate) async fn counter(&self, series: &str) -> Result<u64, String> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<u64>().ok())
            .unwrap_or(0))
    }

    async fn metrics(&self) -> Result<String, String> {
        let reply = self
            .frontend
            .get("/metrics")
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply.text())
    }

    /// Calls until the breaker is in `state`, `max_calls` were made or `deadline` passed,
    /// `pause` apart: how many calls and how long it took, every answer's status, and the
    /// breaker states seen in order.
    pub(crate) async fn call_until(
        &self,
        state: &str,
        max_calls: u32,
        deadline: Duration,
        pause: Duration,
    ) -> Result<Progress, String> {
        let started = Instant::now();
        let mut progress = Progress::default();
        while progress.calls < max_calls && started.elapsed() < deadline {
            let answer = self.infer().await?;
            progress.calls += 1;
            progress.record(&answer);
            let now = self.breaker_state().await?;
            if progress.states.last() != Some(&now) {
                progress.states.push(now.clone());
            }
            if now == state {
                progress.reached = Some(started.elapsed());
                break;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(progress)
    }
}

fn load(state: &AppState, model: &ModelArtifact) -> Result<(), String> {
    state
        .registry()
        .load(model.clone())
        .map_err(|e| e.to_string())?;
    state
        .registry()
        .promote(&model.name)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Calls made towards a breaker state.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) calls: u32,
    /// When the state was reached, from the first call.
    pub(crate) reached: Option<Duration>,
    /// Answers that were not 2xx, by status.
    pub(crate) non_2xx: Vec<u16>,
    /// 2xx answers flagged degraded.
    pub(crate) degraded: u32,
    /// Breaker states seen after each call, repeats folded.
    pub(crate) states: Vec<String>,
}

impl Progress {
    pub(crate) fn record(&mut self, answer: &Answer) {
        if !(200..300).contains(&answer.status) {
            self.non_2xx.push(answer.status);
        } else if answer.degraded.is_some() {
            self.degraded += 1;
        }
    }
}
