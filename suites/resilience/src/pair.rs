//! One case's systems: backend engine (in process or in a container) → fault proxy →
//! frontend engine, all on loopback, all stopped (and the container removed) when the
//! [`Pair`] drops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gauntlet_engine::backend::{BreakerConfig, RemoteModelConfig};
use gauntlet_engine::oip::{Datatype, InferRequest, InferResponse, RequestInput};
use gauntlet_engine::{AppState, EngineConfig, ModelArtifact};
use gauntlet_faultproxy::{FaultProxy, Toxics};
use gauntlet_harness::{ServedEngine, Target, TargetExt as _};

use crate::Setup;
use crate::container::EngineContainer;

/// Why the suite cannot run against `target`, if it cannot: its frontends are the reference
/// engine of this build, in process, and their backends in-process engines or containers.
pub(crate) fn unsupported(target: &dyn Target) -> Option<String> {
    let described = target.describe();
    (!described.starts_with("in-process")).then(|| {
        format!(
            "the resilience suite builds in-process frontend/backend pairs around a fault proxy (backends in process or in containers); {described} cannot be given a remote backend from here"
        )
    })
}

/// Where the backend engine runs.
enum Backend {
    /// In this process; `None` once stopped.
    Engine(Option<ServedEngine>),
    /// In a container of the reference image.
    Container(EngineContainer),
}

/// The backend engine, the proxy in front of it, the frontend that calls it through the
/// proxy.
pub(crate) struct Pair {
    pub(crate) model: ModelArtifact,
    backend: Backend,
    pub(crate) proxy: FaultProxy,
    /// The frontend as the cases see it (the engine in process, or what a test wrapped it in).
    pub(crate) frontend: Arc<dyn Target>,
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
    /// Starts the three, the backend in process; the frontend holds a copy of the model as
    /// its last good fallback.
    pub(crate) async fn start(setup: &Setup) -> Result<Pair, String> {
        Pair::start_with(setup, setup.config.breaker.clone()).await
    }

    /// [`Pair::start`] with the frontend's breaker set to `breaker`.
    pub(crate) async fn start_with(setup: &Setup, breaker: BreakerConfig) -> Result<Pair, String> {
        let model = fixture(&setup.config.model)?;
        let backend_state = AppState::new(EngineConfig::default());
        load(&backend_state, &model)?;
        let backend = ServedEngine::start(backend_state, 1).map_err(|e| e.to_string())?;
        let addr = backend.addr();
        Pair::around(setup, model, Backend::Engine(Some(backend)), addr, breaker).await
    }

    /// Starts the three, the backend a container of `setup.config.image` reached through
    /// 127.0.0.1 and its published port.
    pub(crate) async fn start_container(setup: &Setup) -> Result<Pair, String> {
        let model = fixture(&setup.config.model)?;
        let container = EngineContainer::start(&setup.config.image, "backend", &model.name).await?;
        let addr = container.addr();
        let breaker = setup.config.breaker.clone();
        Pair::around(setup, model, Backend::Container(container), addr, breaker).await
    }

    async fn around(
        setup: &Setup,
        model: ModelArtifact,
        backend: Backend,
        backend_addr: std::net::SocketAddr,
        breaker: BreakerConfig,
    ) -> Result<Pair, String> {
        let proxy = FaultProxy::bind(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            backend_addr,
        )
        .await
        .map_err(|e| format!("failed to start the fault proxy: {e}"))?;
        let state = frontend_state(
            &model,
            &format!("http://{}", proxy.addr()),
            setup.config.timeout,
            breaker,
        )?;
        Ok(Pair {
            request: request(&model),
            model,
            backend,
            proxy,
            frontend: setup.frontend(state),
        })
    }

    /// The backend's container (`Err` for an in-process backend).
    pub(crate) fn container(&self) -> Result<&EngineContainer, String> {
        match &self.backend {
            Backend::Container(c) => Ok(c),
            Backend::Engine(_) => Err("the backend of this pair is not a container".to_owned()),
        }
    }

    /// Stops the backend engine (its port then refuses connections): an in-process one
    /// shuts down, a container is killed (`docker kill --signal KILL`).
    pub(crate) async fn stop_backend(&mut self) -> Result<(), String> {
        match &mut self.backend {
            Backend::Engine(engine) => {
                *engine = None;
                Ok(())
            }
            Backend::Container(c) => c.kill().await,
        }
    }

    /// Sets the proxy's toxics.
    pub(crate) fn toxics(&self, toxics: Toxics) -> Result<(), String> {
        self.proxy.control().set(toxics).map_err(|e| e.to_string())
    }

    /// One infer call of the model through the frontend.
    pub(crate) async fn infer(&self) -> Result<Answer, String> {
        self.infer_with(&self.request).await
    }

    /// One infer call of the model through the frontend with `request`.
    pub(crate) async fn infer_with(&self, request: &InferRequest) -> Result<Answer, String> {
        let reply = self
            .frontend
            .infer(&self.model.name, None, request)
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

    /// One infer call that the backend must answer (200, not degraded).
    pub(crate) async fn answered_by_backend(&self) -> Result<(), String> {
        let answer = self.infer().await?;
        if answer.status != 200 || answer.degraded.is_some() {
            return Err(format!(
                "the backend did not answer before any fault: status {}, degraded {:?}",
                answer.status, answer.degraded
            ));
        }
        Ok(())
    }

    /// The frontend's `/metrics` text.
    pub(crate) async fn metrics(&self) -> Result<String, String> {
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

/// A sample of `/metrics` `text`, `series` being its name and labels as printed (`None`
/// when the series is absent).
pub(crate) fn sample(text: &str, series: &str) -> Result<Option<f64>, String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|e| format!("{series} in /metrics: {v:?} is not a number: {e}"))
        })
        .transpose()
}

/// `[[remote-model]]` `name` calling `backend` with `timeout` and `breaker`: no rule model,
/// a neutral prediction of 0.
pub(crate) fn remote_model(
    name: &str,
    backend: &str,
    timeout: Duration,
    breaker: BreakerConfig,
) -> RemoteModelConfig {
    RemoteModelConfig {
        name: name.to_owned(),
        backend: backend.to_owned(),
        remote_name: None,
        timeout,
        rule_model: None,
        neutral: 0.0,
        breaker,
    }
}

/// The fixture model `name`.
pub(crate) fn fixture(name: &str) -> Result<ModelArtifact, String> {
    gauntlet_fixtures::load_embedded()
        .map_err(|e| format!("failed to load the fixture models: {e}"))?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| format!("model = {name:?} is not a fixture model"))
}

/// A frontend engine whose `[[remote-model]]` `model` calls `backend` with `timeout` and
/// `breaker`, holding a copy of the model as its last good fallback.
pub(crate) fn frontend_state(
    model: &ModelArtifact,
    backend: &str,
    timeout: Duration,
    breaker: BreakerConfig,
) -> Result<AppState, String> {
    let frontend_config = EngineConfig {
        remote_models: vec![remote_model(&model.name, backend, timeout, breaker)],
        ..EngineConfig::default()
    };
    frontend_config
        .validate()
        .map_err(|e| format!("frontend config: {e}"))?;
    let state = AppState::new(frontend_config);
    load(&state, model)?;
    Ok(state)
}

/// The model's request with one value short of its shape: malformed, the client's fault.
pub(crate) fn short_request(model: &ModelArtifact) -> InferRequest {
    let mut short = request(model);
    if let Some(input) = short.inputs.first_mut() {
        input.data.pop();
    }
    short
}

/// One row of the model's feature medians.
fn request(model: &ModelArtifact) -> InferRequest {
    InferRequest {
        id: Some("resilience".to_owned()),
        inputs: vec![RequestInput {
            name: "x".to_owned(),
            shape: vec![1, model.features.len() as u64],
            datatype: Datatype::Fp64,
            data: model.features.iter().map(|f| Some(f.median)).collect(),
        }],
        ..InferRequest::default()
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
