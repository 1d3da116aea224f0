//! Remote model backends: a model served by another OIP server, behind a [`CircuitBreaker`],
//! with a fallback chain when the backend cannot answer.
//!
//! A `[[remote-model]]` entry makes the engine answer `POST /v2/models/{name}/infer` by
//! forwarding the (validated) request to the backend. When the breaker refuses the call or the
//! call fails (timeout, connection error, 5xx, unknown model there), the answer comes from the
//! first of: the live local model of the same name (`last-good`), the `rule-model`
//! (`rule`), a neutral prediction for every row (`neutral`); the response says which in
//! `parameters.degraded` and `/metrics` counts it. A client error the backend answers (400,
//! 413, 415, 422) is passed on and is not a backend failure.
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

/// One remote model: its settings, its client and its breaker.
#[derive(Debug)]
pub struct RemoteModel {
    config: RemoteModelConfig,
    client: RemoteClient,
    breaker: CircuitBreaker,
}

impl RemoteModel {
    /// Builds the client and the breaker of a validated entry.
    ///
    /// # Errors
    /// The backend URL does not parse (an entry that passed
    /// [`RemoteModelConfig::validate`] always does).
    pub fn new(config: RemoteModelConfig) -> Result<RemoteModel, String> {
        let authority = self::config::parse_backend(&config.backend)?;
        let client = RemoteClient::new(&authority, config.remote_name(), config.timeout);
        let breaker = CircuitBreaker::new(config.breaker.clone(), MonotonicClock::default());
        Ok(RemoteModel {
            config,
            client,
            breaker,
        })
    }

    /// The entry's settings.
    pub fn config(&self) -> &RemoteModelConfig {
        &self.config
    }

    /// The backend's client.
    pub fn client(&self) -> &RemoteClient {
        &self.client
    }

    /// The breaker around the backend.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
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
