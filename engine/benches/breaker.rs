//! Circuit breaker decision overhead (issue 14: ≤ 100 ns a call), figures in
//! `benches/README.md`:
//! - `breaker/closed_call`: `try_acquire_permission` + `on_success` in the closed state, a
//!   count-based window of 100 calls (what every remote call pays);
//! - `breaker/closed_call_time_window`: the same over a 60-second time-based window;
//! - `breaker/open_refusal`: `try_acquire_permission` refused while open (what every call
//!   pays during an outage before its fallback);
//! - `breaker/closed_call_4_threads`: the closed-state call while three other threads make
//!   the same calls on the same breaker (its mutex contended).
//!
//! Like `security.rs`, these measure the bench thread's CPU time: on a host shared with
//! builds, wall time says more about the neighbours than about a 50 ns decision.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gauntlet_engine::backend::{BreakerConfig, CircuitBreaker, MonotonicClock, SlidingWindowType};

#[path = "support/cpu_time.rs"]
mod cpu_time;

use cpu_time::ThreadCpuTime;

type Cpu = Criterion<ThreadCpuTime>;

fn config(window: SlidingWindowType, size: u32) -> BreakerConfig {
    BreakerConfig {
        sliding_window_type: window,
        sliding_window_size: size,
        minimum_number_of_calls: 10,
        slow_call_duration_threshold: Duration::from_millis(100),
        ..BreakerConfig::default()
    }
}

fn call(breaker: &CircuitBreaker) {
    if black_box(breaker.try_acquire_permission()) {
        black_box(breaker.on_success(black_box(Duration::from_micros(250))));
    }
}

fn bench_breaker(c: &mut Cpu) {
    let count = CircuitBreaker::new(
        config(SlidingWindowType::CountBased, 100),
        MonotonicClock::default(),
    );
    c.bench_function("breaker/closed_call", |b| b.iter(|| call(&count)));

    let time = CircuitBreaker::new(
        config(SlidingWindowType::TimeBased, 60),
        MonotonicClock::default(),
    );
    c.bench_function("breaker/closed_call_time_window", |b| {
        b.iter(|| call(&time))
    });

    let open = CircuitBreaker::new(
        BreakerConfig {
            wait_duration_in_open_state: Duration::from_secs(3_600),
            ..config(SlidingWindowType::CountBased, 100)
        },
        MonotonicClock::default(),
    );
    open.transition_to_open().expect("closed to open");
    c.bench_function("breaker/open_refusal", |b| {
        b.iter(|| black_box(open.try_acquire_permission()))
    });

    let shared = Arc::new(CircuitBreaker::new(
        config(SlidingWindowType::CountBased, 100),
        MonotonicClock::default(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let others: Vec<_> = (0..3)
        .map(|_| {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    call(&shared);
                }
            })
        })
        .collect();
    c.bench_function("breaker/closed_call_4_threads", |b| {
        b.iter(|| call(&shared))
    });
    stop.store(true, Ordering::Relaxed);
    for t in others {
        t.join().expect("caller thread");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_breaker
}
criterion_main!(benches);
