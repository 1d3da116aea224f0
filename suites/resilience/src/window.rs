//! `time_window_forgets_old_calls` (ENG-CB, ENG-OBS): a breaker with a time-based window
//! counts the calls of its last seconds, as `/metrics` shows them (with no failure rate while
//! it holds fewer than `minimum-number-of-calls`), and forgets each call once its second has
//! left the window. Its first calls are checked forgotten, then calls made
//! seconds into the breaker's clock are checked counted (a window that counts only from its
//! clock's zero would pass a check made in its first second). A window that never forgets
//! opens on faults long gone; one that forgets early never opens.

use std::time::{Duration, Instant};

use gauntlet_engine::backend::{BreakerConfig, SlidingWindowType};

use crate::Setup;
use crate::cases::{Verdict, fail, ms, pass};
use crate::pair::{Pair, sample};

/// The window, in seconds: calls in the seconds `now - 1` and `now` count.
const WINDOW_SECONDS: u32 = 2;
/// Calls made first, then forgotten.
const EARLY: u32 = 2;
/// Calls made once the breaker's clock is past the window's first seconds, then counted.
const SUCCESSES: u32 = 3;
const FAILURES: u32 = 2;

pub(crate) async fn time_window_forgets_old_calls(setup: &Setup) -> Result<Verdict, String> {
    let breaker = BreakerConfig {
        sliding_window_type: SlidingWindowType::TimeBased,
        sliding_window_size: WINDOW_SECONDS,
        minimum_number_of_calls: SUCCESSES + FAILURES,
        // 40 % failed stays under it: the breaker stays closed and keeps its window.
        failure_rate_threshold: 100.0,
        slow_call_rate_threshold: 100.0,
        ..setup.config.breaker.clone()
    };
    let mut pair = Pair::start_with(setup, breaker).await?;
    // First, calls the window must forget: by `last` + the window, every second they were
    // made in has left it.
    let early_start = Instant::now();
    for _ in 0..EARLY {
        pair.answered_by_backend().await?;
    }
    let last = Instant::now();
    // Fewer calls than minimum-number-of-calls: counted, but no rate yet (resilience4j
    // reports -1 there). A breaker that rated them would open on the first failed call.
    let early = read(&pair).await?;
    let early_at = early_start.elapsed();
    let early_counted = early_at >= Duration::from_secs(1) || early.0 == Some(f64::from(EARLY));
    if early.2.is_some() || !early_counted {
        return fail(format!(
            "{EARLY} successful calls, read {} after the first: /metrics shows buffered successful {:?}, failure rate {:?} % (expected {EARLY} and no rate: below minimum-number-of-calls {})",
            ms(early_at),
            early.0,
            early.2,
            SUCCESSES + FAILURES
        ));
    }
    let forget_by = last + Duration::from_secs(u64::from(WINDOW_SECONDS));
    tokio::time::sleep_until(tokio::time::Instant::from_std(forget_by)).await;
    let later = read(&pair).await?;
    if later != (Some(0.0), Some(0.0), None) {
        return fail(format!(
            "{WINDOW_SECONDS} s after the last of {EARLY} calls, a {WINDOW_SECONDS}-second window still shows buffered successful {:?}, failed {:?}, failure rate {:?} % in /metrics (expected 0, 0 and no rate: below minimum-number-of-calls)",
            later.0, later.1, later.2
        ));
    }
    // Then, seconds into the breaker's clock, calls it must count.
    let first = Instant::now();
    for _ in 0..SUCCESSES {
        pair.answered_by_backend().await?;
    }
    pair.stop_backend().await?;
    for _ in 0..FAILURES {
        pair.infer().await?;
    }
    let held = read(&pair).await?;
    let read_at = first.elapsed();
    let expected_rate = f64::from(FAILURES) * 100.0 / f64::from(SUCCESSES + FAILURES);
    let rate_right = held.2.is_some_and(|r| (r - expected_rate).abs() < 1e-3);
    // Read within a second of the first call, every call is still in the window; later (a
    // stalled host), some may have left it, so the counts prove nothing either way.
    let checked = read_at < Duration::from_secs(1);
    if checked
        && (held.0 != Some(f64::from(SUCCESSES))
            || held.1 != Some(f64::from(FAILURES))
            || !rate_right)
    {
        return fail(format!(
            "{SUCCESSES} successful then {FAILURES} failed calls, read {} after the first: /metrics shows buffered successful {:?}, failed {:?}, failure rate {:?} % (expected {SUCCESSES}, {FAILURES}, {expected_rate} %)",
            ms(read_at),
            held.0,
            held.1,
            held.2
        ));
    }
    let counted = if checked {
        format!(
            "{SUCCESSES} successful and {FAILURES} failed calls counted (failure rate {expected_rate} %) {} after the first",
            ms(read_at)
        )
    } else {
        format!(
            "the counts not checked: read {} after the first call, past the 1 s in which every call is surely in the window",
            ms(read_at)
        )
    };
    pass(format!(
        "time-based window of {WINDOW_SECONDS} s: {EARLY} calls shown with no failure rate (below minimum-number-of-calls {}), all forgotten {WINDOW_SECONDS} s after the last; then {counted}",
        SUCCESSES + FAILURES
    ))
}

/// Buffered successful and failed calls and the failure rate of the pair's breaker, as its
/// `/metrics` shows them (`None`: the series is absent).
async fn read(pair: &Pair) -> Result<(Option<f64>, Option<f64>, Option<f64>), String> {
    let name = &pair.model.name;
    // One scrape, so the three figures are of one moment.
    let text = pair.metrics().await?;
    let buffered =
        |kind: &str| format!("gauntlet_breaker_buffered_calls{{kind=\"{kind}\",model=\"{name}\"}}");
    Ok((
        sample(&text, &buffered("successful"))?,
        sample(&text, &buffered("failed"))?,
        sample(
            &text,
            &format!("gauntlet_breaker_failure_rate{{model=\"{name}\"}}"),
        )?,
    ))
}
