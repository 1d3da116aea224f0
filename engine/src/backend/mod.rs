//! Remote model backends: a model served by another OIP server, behind a [`CircuitBreaker`],
//! with a fallback chain when the backend cannot answer.
//!
//! A `[[remote-model]]` entry makes the engine answer `POST /v2/models/{name}/infer` (and
//! gRPC `ModelInfer` of the name) by forwarding the (validated) request to the backend over
//! HTTP. When the breaker refuses the call or the
//! call fails (timeout, connection error, 5xx, unknown model there), the answer comes from the
//! first of: the live local model of the same name (`last-good`), the `rule-model`
//! (`rule`), a neutral prediction for every row (`neutral`); the response says which in
//! `parameters.degraded` (over gRPC, the parameter `degraded`) and `/metrics` counts it. A client error the backend answers (400,
//! 413, 415, 422) is passed on and is not a backend failure.
//!
//! A remote model's backend can be switched at run time ([`RemoteModel::switch_backend`],
//! `POST /v2/repository/models/{m}/backend`): the new client replaces the old one atomically,
//! calls already under way finish on the backend they started on, and the breaker is kept
//! (its window goes on counting across the switch) — a blue/green switch without a failed
//! request.
//!
//! ```
//! use std::time::Duration;
//! use gauntlet_engine::backend::{BreakerConfig, CircuitBreaker, MockClock, State};
//!
//! let clock = MockClock::default();
//! let breaker = CircuitBreaker::new(
//!     BreakerConfig {
//!         sliding_window_size: 4,
//!         minimum_number_of_calls: 4,
//!         wait_duration_in_open_state: Duration::from_secs(1),
//!         permitted_number_of_calls_in_half_open_state: 1,
//!         ..BreakerConfig::default()
//!     },
//!     clock.clone(),
//! );
//! for _ in 0..4 {
//!     assert!(breaker.try_acquire_permission());
//!     breaker.on_error(Duration::from_millis(3));
//! }
//! assert_eq!(breaker.state(), State::Open);
//! assert!(!breaker.try_acquire_permission());
//! clock.advance(Duration::from_secs(1));
//! assert!(breaker.try_acquire_permission()); // half-open: one trial call
//! assert_eq!(breaker.on_success(Duration::from_millis(3)), State::Closed);
//! ```

mod breaker;
mod config;
mod remote;
mod window;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

pub use self::breaker::{
    BreakerConfig, CircuitBreaker, Clock, IllegalTransition, InitialState, MAX_WINDOW, MockClock,
    MonotonicClock, SlidingWindowType, Snapshot, State,
};
pub use self::config::{DEFAULT_TIMEOUT, MAX_TIMEOUT, RemoteModelConfig};
pub use self::remote::{CallError, RemoteClient, Reply};

/// Which fallback answered a degraded response (`parameters.degraded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// The live local model of the same name.
    LastGood,
    /// The configured rule model.
    Rule,
    /// The neutral prediction.
    Neutral,
}

impl Fallback {
    /// The name in responses and `/metrics` (`last-good`).
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::LastGood => "last-good",
            Fallback::Rule => "rule",
            Fallback::Neutral => "neutral",
        }
    }
}

/// Where a remote model's calls go: the backend's base URL and its client.
#[derive(Debug)]
struct Route {
    backend: String,
    client: Arc<RemoteClient>,
}

/// One remote model: its settings, its client and its breaker.
#[derive(Debug)]
pub struct RemoteModel {
    config: RemoteModelConfig,
    /// Swapped whole by [`RemoteModel::switch_backend`]; read without a lock.
    route: ArcSwap<Route>,
    breaker: CircuitBreaker,
}

impl RemoteModel {
    /// Builds the client and the breaker of a validated entry.
    ///
    /// # Errors
    /// The backend URL does not parse (an entry that passed
    /// [`RemoteModelConfig::validate`] always does).
    pub fn new(config: RemoteModelConfig) -> Result<RemoteModel, String> {
        let route = Route::new(&config, &config.backend)?;
        let breaker = CircuitBreaker::new(config.breaker.clone(), MonotonicClock::default());
        Ok(RemoteModel {
            config,
            route: ArcSwap::from_pointee(route),
            breaker,
        })
    }

    /// The entry's settings, as configured (`backend` is the backend at start: see
    /// [`RemoteModel::backend`] for the current one).
    pub fn config(&self) -> &RemoteModelConfig {
        &self.config
    }

    /// The current backend's client. A call holds it to its end, so a switch meanwhile does
    /// not cut it off.
    pub fn client(&self) -> Arc<RemoteClient> {
        Arc::clone(&self.route.load().client)
    }

    /// The current backend's base URL.
    pub fn backend(&self) -> String {
        self.route.load().backend.clone()
    }

    /// Sends every call from now on to `backend` (`http://host:port`), atomically; calls
    /// under way finish where they started. The breaker is kept as it is. Returns the
    /// previous backend.
    ///
    /// # Errors
    /// `backend` is not `http://host:port` (the message says what is wrong); nothing changes.
    pub fn switch_backend(&self, backend: &str) -> Result<String, String> {
        let route = Route::new(&self.config, backend)?;
        let previous = self.route.swap(Arc::new(route));
        Ok(previous.backend.clone())
    }

    /// The breaker around the backend.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl Route {
    fn new(config: &RemoteModelConfig, backend: &str) -> Result<Route, String> {
        let authority = self::config::parse_backend(backend)?;
        Ok(Route {
            backend: backend.to_owned(),
            client: Arc::new(RemoteClient::new(
                &authority,
                config.remote_name(),
                config.timeout,
            )),
        })
    }
}

/// Every remote model of an engine, by the name clients use.
#[derive(Debug, Default, Clone)]
pub struct Backends {
    models: Arc<HashMap<String, Arc<RemoteModel>>>,
}

impl Backends {
    /// The remote models of validated `[[remote-model]]` entries.
    ///
    /// # Errors
    /// The first entry whose backend URL does not parse.
    pub fn new(entries: &[RemoteModelConfig]) -> Result<Backends, String> {
        let mut models = HashMap::with_capacity(entries.len());
        for entry in entries {
            models.insert(
                entry.name.clone(),
                Arc::new(RemoteModel::new(entry.clone())?),
            );
        }
        Ok(Backends {
            models: Arc::new(models),
        })
    }

    /// The remote model clients call `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<RemoteModel>> {
        if self.models.is_empty() {
            return None;
        }
        self.models.get(name)
    }

    /// Every remote model, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<RemoteModel>> {
        self.models.values()
    }
}
