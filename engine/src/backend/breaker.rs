//! A circuit breaker with resilience4j's semantics (`CircuitBreakerStateMachine`).
//!
//! Closed, it permits every call and records each outcome in a sliding window; once the
//! window holds at least `minimum-number-of-calls` and the failure rate or the slow-call rate
//! reaches its threshold, it opens. Open, it refuses calls until `wait-duration-in-open-state`
//! has passed; the next call attempt then moves it to half-open, which permits
//! `permitted-number-of-calls-in-half-open-state` trial calls and, once they are all recorded,
//! closes (both rates below their thresholds) or opens again. Forced open refuses every call;
//! disabled permits every call and records nothing; metrics-only (forced closed) records but
//! never opens. Every transition starts a fresh window, as resilience4j does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::window::{Outcome, Totals, Window};

/// The breaker's time source: a monotonic time since an arbitrary origin.
pub trait Clock: Send + Sync {
    /// Time since the clock's origin; never goes back.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock ([`Instant`]).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told: the state-machine tests run on it.
#[derive(Debug, Clone, Default)]
pub struct MockClock(Arc<AtomicU64>);

impl MockClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Clock for MockClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// How the closed state's window is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SlidingWindowType {
    /// The last `sliding-window-size` calls.
    #[default]
    CountBased,
    /// The calls of the last `sliding-window-size` seconds.
    TimeBased,
}

/// The state a breaker starts in: normal operation, or one of the manual overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InitialState {
    /// Closed, opening on its thresholds.
    #[default]
    Closed,
    /// Refuses every call until changed.
    ForcedOpen,
    /// Records outcomes but never opens (resilience4j's `METRICS_ONLY`).
    ForcedClosed,
    /// Permits every call, records nothing.
    Disabled,
}

/// `[remote-model.breaker]`: resilience4j's `CircuitBreakerConfig`, with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BreakerConfig {
    /// Count- or time-based window (`count-based`).
    pub sliding_window_type: SlidingWindowType,
    /// Calls (count-based) or seconds (time-based) in the window, 1 to 10,000 (100).
    pub sliding_window_size: u32,
    /// Calls the window must hold before a rate is computed, 1 to 10,000 (100); at most the
    /// window size for a count-based window (resilience4j caps it the same way).
    pub minimum_number_of_calls: u32,
    /// Failure rate, percent, at or above which the breaker opens: over 0, at most 100 (50).
    pub failure_rate_threshold: f32,
    /// Slow-call rate, percent, at or above which the breaker opens: over 0, at most 100 (100).
    pub slow_call_rate_threshold: f32,
    /// A call taking at least this long is slow (`60s`).
    #[serde(with = "humantime_serde")]
    pub slow_call_duration_threshold: Duration,
    /// How long the breaker stays open before permitting trial calls (`60s`).
    #[serde(with = "humantime_serde")]
    pub wait_duration_in_open_state: Duration,
    /// Trial calls permitted half-open, 1 to 10,000 (10).
    pub permitted_number_of_calls_in_half_open_state: u32,
    /// The state at start (`closed`).
    pub state: InitialState,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            sliding_window_type: SlidingWindowType::CountBased,
            sliding_window_size: 100,
            minimum_number_of_calls: 100,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration_threshold: Duration::from_secs(60),
            wait_duration_in_open_state: Duration::from_secs(60),
            permitted_number_of_calls_in_half_open_state: 10,
            state: InitialState::Closed,
        }
    }
}

/// Most calls or seconds of a window, and most trial calls.
pub const MAX_WINDOW: u32 = 10_000;

impl BreakerConfig {
    /// Checks every range.
    ///
    /// # Errors
    /// The key and what is wrong, with the limit.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("sliding-window-size", self.sliding_window_size),
            ("minimum-number-of-calls", self.minimum_number_of_calls),
            (
                "permitted-number-of-calls-in-half-open-state",
                self.permitted_number_of_calls_in_half_open_state,
            ),
        ] {
            if !(1..=MAX_WINDOW).contains(&value) {
                return Err((
                    key,
                    format!("must be between 1 and {MAX_WINDOW}, got {value}"),
                ));
            }
        }
        for (key, value) in [
            ("failure-rate-threshold", self.failure_rate_threshold),
            ("slow-call-rate-threshold", self.slow_call_rate_threshold),
        ] {
            if !(value > 0.0 && value <= 100.0) {
                return Err((key, format!("must be over 0 and at most 100, got {value}")));
            }
        }
        if self.slow_call_duration_threshold.is_zero() {
            return Err((
                "slow-call-duration-threshold",
                "must be greater than 0".to_owned(),
            ));
        }
        Ok(())
    }

    /// The minimum number of calls in effect: capped at a count window's size.
    fn minimum_calls(&self) -> u32 {
        match self.sliding_window_type {
            SlidingWindowType::CountBased => {
                self.minimum_number_of_calls.min(self.sliding_window_size)
            }
            SlidingWindowType::TimeBased => self.minimum_number_of_calls,
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Calls flow; outcomes are recorded.
    Closed,
    /// Calls are refused until the wait duration has passed.
    Open,
    /// A few trial calls decide between closed and open.
    HalfOpen,
    /// Calls flow; nothing is recorded.
    Disabled,
    /// Calls are refused until a manual transition.
    ForcedOpen,
    /// Calls flow; outcomes are recorded; the breaker never opens (forced closed).
    MetricsOnly,
}

impl State {
    /// The state's name as in the config and `/metrics` (`half-open`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced-open",
            State::MetricsOnly => "forced-closed",
        }
    }

    /// Every state, in the order of their `gauntlet_breaker_state` gauge values.
    pub const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
        State::MetricsOnly,
    ];
}

/// A transition resilience4j refuses (closed to closed, closed to half-open, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal breaker transition from {} to {}", from.as_str(), to.as_str())]
pub struct IllegalTransition {
    /// The state it was in.
    pub from: State,
    /// The state asked for.
    pub to: State,
}

/// The window's figures, as resilience4j's `CircuitBreaker.Metrics` reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Failed calls over calls, percent; `None` below the minimum number of calls.
    pub failure_rate: Option<f32>,
    /// Slow calls over calls, percent; `None` below the minimum number of calls.
    pub slow_call_rate: Option<f32>,
    /// Calls in the window.
    pub buffered_calls: u32,
    /// Failed calls in the window.
    pub failed_calls: u32,
    /// Successful calls in the window.
    pub successful_calls: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Calls refused since the current window began.
    pub not_permitted_calls: u64,
}

struct Inner {
    state: State,
    window: Window,
    /// Calls the window needs before its rates are defined.
    minimum: u32,
    /// Open: when the next attempt moves to half-open (clock time).
    retry_at: Duration,
    /// Half-open: trial calls still permitted.
    half_open_permits: u32,
    not_permitted: u64,
}

/// A circuit breaker around one backend. Thread-safe: one short mutex section per decision.
pub struct CircuitBreaker<C: Clock = MonotonicClock> {
    config: BreakerConfig,
    clock: C,
    inner: Mutex<Inner>,
}

impl<C: Clock> std::fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Whether a window's totals are over a threshold.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    BelowMinimum,
    Below,
    Above,
}

impl<C: Clock> CircuitBreaker<C> {
    /// A breaker in `config.state` (validate the config first: out-of-range sizes are raised
    /// to 1).
    pub fn new(config: BreakerConfig, clock: C) -> CircuitBreaker<C> {
        let initial = match config.state {
            InitialState::Closed => State::Closed,
            InitialState::ForcedOpen => State::ForcedOpen,
            InitialState::ForcedClosed => State::MetricsOnly,
            InitialState::Disabled => State::Disabled,
        };
        let inner = Inner {
            state: initial,
            window: closed_window(&config),
            minimum: config.minimum_calls(),
            retry_at: Duration::ZERO,
            half_open_permits: 0,
            not_permitted: 0,
        };
        CircuitBreaker {
            config,
            clock,
            inner: Mutex::new(inner),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent integers: keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current state (open stays open until a call attempt after the wait duration).
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Asks to make a call. `false`: the call must not be made (counted as not permitted).
    /// Open past its wait duration, this moves the breaker to half-open and takes a trial
    /// permit.
    pub fn try_acquire_permission(&self) -> bool {
        let mut inner = self.lock();
        match inner.state {
            State::Closed | State::Disabled | State::MetricsOnly => true,
            State::Open => {
                if self.clock.now() >= inner.retry_at {
                    self.enter(&mut inner, State::HalfOpen);
                    take_trial_permit(&mut inner)
                } else {
                    inner.not_permitted += 1;
                    false
                }
            }
            State::HalfOpen => take_trial_permit(&mut inner),
            State::ForcedOpen => {
                inner.not_permitted += 1;
                false
            }
        }
    }

    /// Gives back a permit whose call was not made or whose outcome is ignored (a client
    /// error): half-open, another trial call is permitted.
    pub fn release_permission(&self) {
        let mut inner = self.lock();
        if inner.state == State::HalfOpen {
            inner.half_open_permits = (inner.half_open_permits + 1)
                .min(self.config.permitted_number_of_calls_in_half_open_state);
        }
    }

    /// Records a successful call that took `duration`.
    pub fn on_success(&self, duration: Duration) -> State {
        self.record(false, duration)
    }

    /// Records a failed call that took `duration`.
    pub fn on_error(&self, duration: Duration) -> State {
        self.record(true, duration)
    }

    fn record(&self, failed: bool, duration: Duration) -> State {
        let mut inner = self.lock();
        let recording = matches!(
            inner.state,
            State::Closed | State::HalfOpen | State::MetricsOnly | State::Open
        );
        if !recording {
            return inner.state;
        }
        let outcome = Outcome {
            failed,
            slow: duration >= self.config.slow_call_duration_threshold,
        };
        // Only a time window reads the clock: a count window's call skips it (benches/breaker.rs).
        let now = if inner.window.is_timed() {
            self.clock.now()
        } else {
            Duration::ZERO
        };
        let totals = inner.window.record(outcome, now);
        let verdict = self.verdict(totals, inner.minimum);
        match (inner.state, verdict) {
            (State::Closed | State::HalfOpen, Verdict::Above) => {
                self.enter(&mut inner, State::Open)
            }
            (State::HalfOpen, Verdict::Below) => self.enter(&mut inner, State::Closed),
            // Open (a call permitted before it opened) and metrics-only only record.
            _ => {}
        }
        inner.state
    }

    fn verdict(&self, totals: Totals, minimum: u32) -> Verdict {
        if totals.calls == 0 || totals.calls < minimum {
            return Verdict::BelowMinimum;
        }
        let (failure, slow) = rates(totals);
        if failure >= self.config.failure_rate_threshold
            || slow >= self.config.slow_call_rate_threshold
        {
            Verdict::Above
        } else {
            Verdict::Below
        }
    }

    /// Moves to `to` with a fresh window, as every resilience4j transition does.
    fn enter(&self, inner: &mut Inner, to: State) {
        inner.state = to;
        if to == State::Open {
            // Open keeps the window that opened it (its figures stay readable) and its
            // count of refused calls, as resilience4j's `OpenState` shares its metrics.
            inner.retry_at = self.clock.now() + self.config.wait_duration_in_open_state;
            return;
        }
        inner.not_permitted = 0;
        match to {
            State::HalfOpen => {
                let n = self.config.permitted_number_of_calls_in_half_open_state;
                inner.window = Window::count(n);
                inner.minimum = n;
                inner.half_open_permits = n;
            }
            _ => {
                inner.window = closed_window(&self.config);
                inner.minimum = self.config.minimum_calls();
            }
        }
    }

    fn transition(&self, to: State) -> Result<(), IllegalTransition> {
        let mut inner = self.lock();
        let from = inner.state;
        let legal = from != to
            && !matches!(
                (from, to),
                (State::Closed, State::HalfOpen)
                    | (State::MetricsOnly, State::Open | State::HalfOpen)
            );
        if !legal {
            return Err(IllegalTransition { from, to });
        }
        self.enter(&mut inner, to);
        Ok(())
    }

    /// Opens the breaker by hand; it moves to half-open after the wait duration.
    ///
    /// # Errors
    /// When already open, or forced closed.
    pub fn transition_to_open(&self) -> Result<(), IllegalTransition> {
        self.transition(State::Open)
    }

    /// Moves to half-open by hand.
    ///
    /// # Errors
    /// From closed, from forced closed, or when already half-open.
    pub fn transition_to_half_open(&self) -> Result<(), IllegalTransition> {
        self.transition(State::HalfOpen)
    }

    /// Closes the breaker by hand.
    ///
    /// # Errors
    /// When already closed.
    pub fn transition_to_closed(&self) -> Result<(), IllegalTransition> {
        self.transition(State::Closed)
    }

    /// Refuses every call until another manual transition.
    ///
    /// # Errors
    /// When already forced open.
    pub fn transition_to_forced_open(&self) -> Result<(), IllegalTransition> {
        self.transition(State::ForcedOpen)
    }

    /// Records outcomes but never opens (forced closed).
    ///
    /// # Errors
    /// When already forced closed.
    pub fn transition_to_forced_closed(&self) -> Result<(), IllegalTransition> {
        self.transition(State::MetricsOnly)
    }

    /// Permits every call and records nothing.
    ///
    /// # Errors
    /// When already disabled.
    pub fn transition_to_disabled(&self) -> Result<(), IllegalTransition> {
        self.transition(State::Disabled)
    }

    /// Back to closed with a fresh window, from any state.
    pub fn reset(&self) {
        let mut inner = self.lock();
        self.enter(&mut inner, State::Closed);
    }

    /// The current window's figures.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let totals = inner.window.totals(self.clock.now());
        let defined = totals.calls > 0 && totals.calls >= inner.minimum;
        let (failure, slow) = rates(totals);
        Snapshot {
            failure_rate: defined.then_some(failure),
            slow_call_rate: defined.then_some(slow),
            buffered_calls: totals.calls,
            failed_calls: totals.failed,
            successful_calls: totals.calls - totals.failed,
            slow_calls: totals.slow,
            not_permitted_calls: inner.not_permitted,
        }
    }
}

fn rates(totals: Totals) -> (f32, f32) {
    let calls = totals.calls.max(1) as f32;
    (
        totals.failed as f32 * 100.0 / calls,
        totals.slow as f32 * 100.0 / calls,
    )
}

fn closed_window(config: &BreakerConfig) -> Window {
    match config.sliding_window_type {
        SlidingWindowType::CountBased => Window::count(config.sliding_window_size),
        SlidingWindowType::TimeBased => Window::time(config.sliding_window_size),
    }
}

fn take_trial_permit(inner: &mut Inner) -> bool {
    if inner.half_open_permits > 0 {
        inner.half_open_permits -= 1;
        true
    } else {
        inner.not_permitted += 1;
        false
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
