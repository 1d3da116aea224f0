//! resilience4j's `CircuitBreakerStateMachineTest` cases, ported onto [`MockClock`]: the same
//! configuration (time-based window of 5 s, minimum 5 calls, 50 % failure and slow-call rate,
//! slow from 4 s, 4 trial calls half-open, 5 s open) and the same expected figures (their
//! `-1f` failure rate is `None` here).

use super::*;

const NS0: Duration = Duration::ZERO;

fn setup() -> (CircuitBreaker<MockClock>, MockClock) {
    let clock = MockClock::default();
    // resilience4j's mock clock starts at 2019-01-01T12:00:00Z: a whole second.
    clock.advance(Duration::from_secs(1_546_344_000));
    let config = BreakerConfig {
        failure_rate_threshold: 50.0,
        permitted_number_of_calls_in_half_open_state: 4,
        slow_call_duration_threshold: Duration::from_secs(4),
        slow_call_rate_threshold: 50.0,
        sliding_window_type: SlidingWindowType::TimeBased,
        sliding_window_size: 5,
        minimum_number_of_calls: 5,
        wait_duration_in_open_state: Duration::from_secs(5),
        state: InitialState::Closed,
    };
    config.validate().unwrap();
    (CircuitBreaker::new(config, clock.clone()), clock)
}

/// `assertCircuitBreakerMetricsEqualTo(failureRate, success, buffered, failed, notPermitted)`.
#[track_caller]
fn assert_metrics(
    cb: &CircuitBreaker<MockClock>,
    failure_rate: Option<f32>,
    success: u32,
    buffered: u32,
    failed: u32,
    not_permitted: u64,
) {
    let m = cb.snapshot();
    assert_eq!(
        (
            m.failure_rate,
            m.successful_calls,
            m.buffered_calls,
            m.failed_calls,
            m.not_permitted_calls
        ),
        (failure_rate, success, buffered, failed, not_permitted)
    );
}

#[track_caller]
fn assert_reset(cb: &CircuitBreaker<MockClock>) {
    assert_metrics(cb, None, 0, 0, 0, 0);
}

fn to_half_open(cb: &CircuitBreaker<MockClock>) {
    cb.transition_to_open().unwrap();
    cb.transition_to_half_open().unwrap();
    assert_eq!(cb.state(), State::HalfOpen);
}

#[test]
fn should_refuse_when_state_is_open() {
    let (cb, _) = setup();
    cb.transition_to_open().unwrap();
    assert!(!cb.try_acquire_permission());
    assert_eq!(cb.snapshot().not_permitted_calls, 1);
}

#[test]
fn should_refuse_when_state_is_forced_open() {
    let (cb, _) = setup();
    cb.transition_to_forced_open().unwrap();
    assert!(!cb.try_acquire_permission());
    assert_eq!(cb.snapshot().not_permitted_calls, 1);
}

#[test]
fn should_increase_counter_on_release_permission() {
    let (cb, _) = setup();
    to_half_open(&cb);
    for _ in 0..4 {
        assert!(cb.try_acquire_permission());
    }
    assert!(!cb.try_acquire_permission());
    assert!(!cb.try_acquire_permission());
    cb.release_permission();
    assert!(cb.try_acquire_permission());
}

#[test]
fn should_refuse_when_no_further_test_calls_are_permitted() {
    let (cb, _) = setup();
    to_half_open(&cb);
    for _ in 0..4 {
        assert!(cb.try_acquire_permission());
    }
    assert!(!cb.try_acquire_permission());
    assert_eq!(cb.snapshot().not_permitted_calls, 1);
}

#[test]
fn should_only_permit_four_calls_in_half_open_state() {
    let (cb, _) = setup();
    assert_reset(&cb);
    for _ in 0..2 {
        to_half_open(&cb);
        for _ in 0..4 {
            assert!(cb.try_acquire_permission());
        }
        assert!(!cb.try_acquire_permission());
        assert!(!cb.try_acquire_permission());
    }
}

#[test]
fn should_open_after_failure_rate_threshold_exceeded() {
    let (cb, _) = setup();
    assert!(cb.try_acquire_permission());
    assert_eq!(cb.state(), State::Closed);
    assert_reset(&cb);
    for (call, failed) in [(1, 1), (2, 2), (3, 3)] {
        assert!(cb.try_acquire_permission());
        cb.on_error(NS0);
        assert_eq!(cb.state(), State::Closed);
        assert_metrics(&cb, None, 0, call, failed, 0);
    }
    assert!(cb.try_acquire_permission());
    cb.on_success(NS0);
    assert_eq!(cb.state(), State::Closed);
    assert_metrics(&cb, None, 1, 4, 3, 0);
    // Call 5 fills the window: 3 of 5 failed, 60 % >= 50 %.
    cb.on_success(NS0);
    assert_eq!(cb.state(), State::Open);
    assert_metrics(&cb, Some(60.0), 2, 5, 3, 0);
    assert!(!cb.try_acquire_permission());
    assert_metrics(&cb, Some(60.0), 2, 5, 3, 1);
}

#[test]
fn should_open_after_slow_call_rate_threshold_exceeded() {
    let (cb, _) = setup();
    assert_eq!(cb.state(), State::Closed);
    assert_reset(&cb);
    assert!(cb.try_acquire_permission());
    cb.on_error(Duration::from_secs(5));
    assert!(cb.try_acquire_permission());
    cb.on_success(Duration::from_secs(5));
    assert!(cb.try_acquire_permission());
    cb.on_error(Duration::from_millis(100));
    assert!(cb.try_acquire_permission());
    cb.on_success(Duration::from_millis(100));
    assert_eq!(cb.state(), State::Closed);
    cb.on_success(Duration::from_secs(5));
    assert_eq!(cb.state(), State::Open);
    let m = cb.snapshot();
    assert_eq!((m.buffered_calls, m.slow_calls), (5, 3));
    assert_eq!(m.slow_call_rate, Some(60.0));
}

#[test]
fn should_transition_to_half_open_after_wait_duration() {
    let (cb, clock) = setup();
    cb.transition_to_open().unwrap();
    assert_reset(&cb);
    assert_eq!(cb.state(), State::Open);
    assert!(!cb.try_acquire_permission());
    clock.advance(Duration::from_secs(3));
    // Still open: 3 s of the 5 s wait.
    assert_eq!(cb.state(), State::Open);
    assert!(!cb.try_acquire_permission());
    assert_metrics(&cb, None, 0, 0, 0, 2);
    clock.advance(Duration::from_secs(3));
    assert!(cb.try_acquire_permission());
    assert_eq!(cb.state(), State::HalfOpen);
    assert_reset(&cb);
}

#[test]
fn should_transition_back_to_open_state_when_failure_rate_is_above_threshold() {
    let (cb, _) = setup();
    to_half_open(&cb);
    assert_reset(&cb);
    for failed in [true, true, false, true] {
        assert!(cb.try_acquire_permission());
        if failed {
            cb.on_error(NS0);
        } else {
            cb.on_success(NS0);
        }
    }
    assert_eq!(cb.state(), State::Open);
    assert_metrics(&cb, Some(75.0), 1, 4, 3, 0);
}

#[test]
fn should_transition_back_to_open_state_when_slow_call_rate_is_above_threshold() {
    let (cb, _) = setup();
    to_half_open(&cb);
    for secs in [5, 5, 5, 1] {
        assert!(cb.try_acquire_permission());
        cb.on_success(Duration::from_secs(secs));
    }
    assert_eq!(cb.state(), State::Open);
    let m = cb.snapshot();
    assert_eq!(m.slow_calls, 3);
    assert_eq!(m.slow_call_rate, Some(75.0));
    assert_eq!(m.failure_rate, Some(0.0));
}

#[test]
fn should_transition_back_to_closed_state_when_failure_is_below_threshold() {
    let (cb, _) = setup();
    to_half_open(&cb);
    assert_reset(&cb);
    assert!(cb.try_acquire_permission());
    cb.on_error(NS0);
    for _ in 0..3 {
        assert!(cb.try_acquire_permission());
        cb.on_success(NS0);
    }
    assert!(cb.try_acquire_permission());
    assert_eq!(cb.state(), State::Closed);
    assert_reset(&cb);
    assert!(cb.try_acquire_permission());
    cb.on_success(NS0);
    assert_metrics(&cb, None, 1, 1, 0, 0);
}

#[test]
fn should_reset_metrics() {
    let (cb, _) = setup();
    assert_eq!(cb.state(), State::Closed);
    assert_reset(&cb);
    cb.on_success(NS0);
    cb.on_error(NS0);
    assert_metrics(&cb, None, 1, 2, 1, 0);
    cb.reset();
    assert_reset(&cb);
}

#[test]
fn should_disable_circuit_breaker() {
    let (cb, _) = setup();
    cb.transition_to_disabled().unwrap();
    assert_eq!(cb.state(), State::Disabled);
    assert_reset(&cb);
    assert!(cb.try_acquire_permission());
    cb.on_success(NS0);
    for _ in 0..4 {
        assert!(cb.try_acquire_permission());
        cb.on_error(NS0);
    }
    assert_reset(&cb);
}

#[test]
fn should_force_open_circuit_breaker() {
    let (cb, clock) = setup();
    cb.transition_to_forced_open().unwrap();
    assert_eq!(cb.state(), State::ForcedOpen);
    assert!(!cb.try_acquire_permission());
    clock.advance(Duration::from_secs(6));
    // No half-open, however long the wait.
    assert!(!cb.try_acquire_permission());
    assert_eq!(cb.state(), State::ForcedOpen);
    assert_metrics(&cb, None, 0, 0, 0, 2);
}

#[test]
fn should_force_close_circuit_breaker() {
    let (cb, _) = setup();
    cb.transition_to_forced_closed().unwrap();
    assert_eq!(cb.state(), State::MetricsOnly);
    assert!(cb.try_acquire_permission());
    cb.on_success(Duration::from_secs(1));
    assert!(cb.try_acquire_permission());
    cb.on_error(Duration::from_secs(1));
    assert_eq!(cb.state(), State::MetricsOnly);
    let m = cb.snapshot();
    assert_eq!((m.failed_calls, m.successful_calls), (1, 1));
}

#[test]
fn should_release_permission_when_exception_ignored() {
    let (cb, _) = setup();
    to_half_open(&cb);
    for n in 1..=3 {
        assert!(cb.try_acquire_permission());
        cb.on_success(NS0);
        assert_eq!(cb.state(), State::HalfOpen);
        assert_metrics(&cb, None, n, n, 0, 0);
    }
    // An ignored outcome gives the permit back and records nothing.
    assert!(cb.try_acquire_permission());
    cb.release_permission();
    assert_eq!(cb.state(), State::HalfOpen);
    assert_metrics(&cb, None, 3, 3, 0, 0);
    assert!(cb.try_acquire_permission());
    cb.on_error(NS0);
    assert_eq!(cb.state(), State::Closed);
    assert_reset(&cb);
}

#[test]
fn should_ignore_exceptions_and_then_transition_to_closed() {
    let (cb, _) = setup();
    to_half_open(&cb);
    for _ in 0..4 {
        assert!(cb.try_acquire_permission());
        cb.release_permission();
        assert_eq!(cb.state(), State::HalfOpen);
    }
    assert_reset(&cb);
    for _ in 0..3 {
        assert!(cb.try_acquire_permission());
        cb.on_success(NS0);
        assert_eq!(cb.state(), State::HalfOpen);
    }
    assert_metrics(&cb, None, 3, 3, 0, 0);
    assert!(cb.try_acquire_permission());
    cb.on_success(NS0);
    assert_eq!(cb.state(), State::Closed);
    assert_reset(&cb);
}

#[test]
fn should_not_allow_transition_from_closed_to_half_open() {
    let (cb, _) = setup();
    let err = cb.transition_to_half_open().unwrap_err();
    assert_eq!(
        err.to_string(),
        "illegal breaker transition from closed to half-open"
    );
    assert_eq!(cb.state(), State::Closed);
}

#[test]
fn should_not_allow_transition_from_closed_to_closed() {
    let (cb, _) = setup();
    let err = cb.transition_to_closed().unwrap_err();
    assert_eq!(
        err,
        IllegalTransition {
            from: State::Closed,
            to: State::Closed
        }
    );
    assert_eq!(cb.state(), State::Closed);
}

#[test]
fn should_reset_to_closed_state() {
    let (cb, _) = setup();
    cb.transition_to_open().unwrap();
    cb.reset();
    assert_eq!(cb.state(), State::Closed);
}

#[test]
fn should_reset_closed_state() {
    let (cb, _) = setup();
    cb.on_success(NS0);
    cb.on_success(NS0);
    assert_eq!(cb.snapshot().successful_calls, 2);
    cb.reset();
    assert_eq!(cb.state(), State::Closed);
    assert_eq!(cb.snapshot().successful_calls, 0);
}

#[test]
fn should_reset_metrics_after_metrics_only_state_transition() {
    let (cb, _) = setup();
    cb.on_success(NS0);
    cb.on_success(NS0);
    assert_eq!(cb.snapshot().successful_calls, 2);
    cb.transition_to_forced_closed().unwrap();
    assert_eq!(cb.state(), State::MetricsOnly);
    assert_eq!(cb.snapshot().successful_calls, 0);
}

#[test]
fn should_record_metrics_in_metrics_only_state() {
    let (cb, _) = setup();
    cb.transition_to_forced_closed().unwrap();
    assert!(cb.try_acquire_permission());
    assert_reset(&cb);
    for n in 1..=3 {
        assert!(cb.try_acquire_permission());
        cb.on_error(NS0);
        assert_eq!(cb.state(), State::MetricsOnly);
        assert_metrics(&cb, None, 0, n, n, 0);
    }
    assert!(cb.try_acquire_permission());
    cb.on_success(NS0);
    assert_metrics(&cb, None, 1, 4, 3, 0);
    cb.on_success(NS0);
    // Above the threshold, and still closed.
    assert_eq!(cb.state(), State::MetricsOnly);
    assert_metrics(&cb, Some(60.0), 2, 5, 3, 0);
    cb.on_error(NS0);
    assert_eq!(cb.state(), State::MetricsOnly);
}

// Beyond the Java file: the count-based window and the time window's expiry.

#[test]
fn count_based_window_opens_on_the_last_calls_only() {
    let clock = MockClock::default();
    let cb = CircuitBreaker::new(
        BreakerConfig {
            sliding_window_size: 4,
            minimum_number_of_calls: 10, // capped at the window size, as resilience4j does
            wait_duration_in_open_state: Duration::from_secs(1),
            permitted_number_of_calls_in_half_open_state: 2,
            ..BreakerConfig::default()
        },
        clock.clone(),
    );
    for _ in 0..10 {
        cb.on_success(NS0);
    }
    cb.on_error(NS0);
    assert_eq!(cb.state(), State::Closed, "1 of the last 4 failed");
    cb.on_error(NS0);
    assert_eq!(cb.state(), State::Open, "2 of the last 4 failed: 50 %");
    clock.advance(Duration::from_secs(1));
    assert!(cb.try_acquire_permission());
    assert!(cb.try_acquire_permission());
    assert!(!cb.try_acquire_permission());
    cb.on_success(NS0);
    assert_eq!(cb.state(), State::HalfOpen);
    cb.on_success(NS0);
    assert_eq!(cb.state(), State::Closed);
}

#[test]
fn time_based_window_forgets_failures_older_than_its_seconds() {
    let (cb, clock) = setup();
    for _ in 0..4 {
        cb.on_error(NS0);
    }
    clock.advance(Duration::from_secs(5));
    // The four failures are out of the 5 s window: one call is below the minimum.
    cb.on_error(NS0);
    assert_eq!(cb.state(), State::Closed);
    assert_metrics(&cb, None, 0, 1, 1, 0);
}

#[test]
fn initial_state_and_config_ranges() {
    let forced = CircuitBreaker::new(
        BreakerConfig {
            state: InitialState::ForcedOpen,
            ..BreakerConfig::default()
        },
        MockClock::default(),
    );
    assert_eq!(forced.state(), State::ForcedOpen);
    for (config, key) in [
        (
            BreakerConfig {
                sliding_window_size: 0,
                ..BreakerConfig::default()
            },
            "sliding-window-size",
        ),
        (
            BreakerConfig {
                failure_rate_threshold: 0.0,
                ..BreakerConfig::default()
            },
            "failure-rate-threshold",
        ),
        (
            BreakerConfig {
                slow_call_rate_threshold: f32::NAN,
                ..BreakerConfig::default()
            },
            "slow-call-rate-threshold",
        ),
        (
            BreakerConfig {
                permitted_number_of_calls_in_half_open_state: 10_001,
                ..BreakerConfig::default()
            },
            "permitted-number-of-calls-in-half-open-state",
        ),
    ] {
        assert_eq!(config.validate().unwrap_err().0, key);
    }
}
