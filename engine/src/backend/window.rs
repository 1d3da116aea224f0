//! The breaker's sliding windows: the last N calls (count-based) or the last N seconds
//! (time-based, one bucket a second), as resilience4j aggregates them.
//!
//! Both keep running totals, so a call costs O(1): the count window subtracts the outcome
//! it overwrites; the time window, like resilience4j's `SlidingTimeWindowMetrics`,
//! subtracts the buckets of the seconds it moves past (at most N, once each). Summing the
//! N buckets on every call cost 126–130 ns a call over 60 s (benches/breaker.rs).

use std::time::Duration;

/// What one call did, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
}

/// Totals over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failed: u32,
    pub(crate) slow: u32,
}

impl Totals {
    fn add(&mut self, o: Outcome) {
        self.calls += 1;
        self.failed += u32::from(o.failed);
        self.slow += u32::from(o.slow);
    }

    fn sub(&mut self, o: Outcome) {
        self.calls -= 1;
        self.failed -= u32::from(o.failed);
        self.slow -= u32::from(o.slow);
    }

    fn merge(&mut self, other: Totals) {
        self.calls += other.calls;
        self.failed += other.failed;
        self.slow += other.slow;
    }

    fn remove(&mut self, other: Totals) {
        self.calls -= other.calls;
        self.failed -= other.failed;
        self.slow -= other.slow;
    }
}

/// A sliding window of call outcomes.
#[derive(Debug, Clone)]
pub(crate) enum Window {
    /// The last `ring.len()` calls.
    Count {
        ring: Box<[Option<Outcome>]>,
        next: usize,
        totals: Totals,
    },
    /// The calls of the last `buckets.len()` whole seconds of the breaker's clock.
    Time {
        /// Bucket `s % len` holds second `s` (epoch `u64::MAX`: never written).
        buckets: Box<[(u64, Totals)]>,
        /// The latest second recorded (`None` before the first call).
        head: Option<u64>,
        /// The sum of the buckets of seconds `head - len + 1 ..= head`.
        totals: Totals,
    },
}

impl Window {
    /// A window over the last `size` calls (`size` ≥ 1).
    pub(crate) fn count(size: u32) -> Window {
        Window::Count {
            ring: vec![None; size.max(1) as usize].into_boxed_slice(),
            next: 0,
            totals: Totals::default(),
        }
    }

    /// A window over the last `seconds` seconds (`seconds` ≥ 1).
    pub(crate) fn time(seconds: u32) -> Window {
        Window::Time {
            // Epoch second `u64::MAX` marks a bucket never written.
            buckets: vec![(u64::MAX, Totals::default()); seconds.max(1) as usize]
                .into_boxed_slice(),
            head: None,
            totals: Totals::default(),
        }
    }

    /// Whether the window is time-based (reads the clock).
    pub(crate) fn is_timed(&self) -> bool {
        matches!(self, Window::Time { .. })
    }

    /// Records `outcome` at `now` (the breaker clock) and returns the window's totals.
    pub(crate) fn record(&mut self, outcome: Outcome, now: Duration) -> Totals {
        match self {
            Window::Count { ring, next, totals } => {
                if let Some(old) = ring[*next].replace(outcome) {
                    totals.sub(old);
                }
                totals.add(outcome);
                *next = (*next + 1) % ring.len();
                *totals
            }
            Window::Time {
                buckets,
                head,
                totals,
            } => {
                let len = buckets.len() as u64;
                // A monotonic clock never goes back; if a clock did, its call counts in
                // the latest second rather than overwriting a newer bucket.
                let second = head.map_or(now.as_secs(), |h| now.as_secs().max(h));
                if let Some(h) = *head {
                    // Move past seconds h+1 ..= second: each one's bucket leaves the
                    // window (at most `len` of them, however long the pause).
                    let first = (h + 1).max(second.saturating_sub(len - 1));
                    for s in first..=second {
                        let bucket = &mut buckets[(s % len) as usize];
                        if bucket.0 != u64::MAX {
                            totals.remove(bucket.1);
                        }
                        *bucket = (s, Totals::default());
                    }
                    if second > h && second - h >= len {
                        // Every earlier bucket is out of the window.
                        debug_assert_eq!(*totals, Totals::default());
                    }
                } else {
                    buckets[(second % len) as usize] = (second, Totals::default());
                }
                *head = Some(second);
                buckets[(second % len) as usize].1.add(outcome);
                totals.add(outcome);
                *totals
            }
        }
    }

    /// The totals at `now`: for a time window, only the buckets of the last seconds.
    pub(crate) fn totals(&self, now: Duration) -> Totals {
        match self {
            Window::Count { totals, .. } => *totals,
            // Off the call path (snapshots): sums the buckets still in the window at `now`.
            Window::Time { buckets, .. } => {
                let second = now.as_secs();
                let len = buckets.len() as u64;
                let mut sum = Totals::default();
                for (epoch, totals) in buckets.iter() {
                    if *epoch != u64::MAX && *epoch <= second && second - *epoch < len {
                        sum.merge(*totals);
                    }
                }
                sum
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL: Outcome = Outcome {
        failed: true,
        slow: false,
    };
    const OK: Outcome = Outcome {
        failed: false,
        slow: false,
    };
    const SLOW: Outcome = Outcome {
        failed: false,
        slow: true,
    };

    #[test]
    fn count_window_keeps_the_last_calls() {
        let mut w = Window::count(3);
        let t = Duration::ZERO;
        w.record(FAIL, t);
        w.record(FAIL, t);
        w.record(SLOW, t);
        assert_eq!(
            w.totals(t),
            Totals {
                calls: 3,
                failed: 2,
                slow: 1
            }
        );
        // The first failure leaves the window.
        let totals = w.record(OK, t);
        assert_eq!(
            totals,
            Totals {
                calls: 3,
                failed: 1,
                slow: 1
            }
        );
    }

    #[test]
    fn time_window_forgets_old_seconds() {
        let mut w = Window::time(2);
        w.record(FAIL, Duration::from_millis(100));
        w.record(OK, Duration::from_millis(1_900));
        assert_eq!(w.totals(Duration::from_millis(1_950)).calls, 2);
        // At 2.0 s the bucket of second 0 is out of a 2-second window.
        let t = w.totals(Duration::from_secs(2));
        assert_eq!((t.calls, t.failed), (1, 0));
        // Second 3 reuses the bucket of second 1.
        let t = w.record(SLOW, Duration::from_millis(3_100));
        assert_eq!(
            t,
            Totals {
                calls: 1,
                failed: 0,
                slow: 1
            }
        );
        assert_eq!(w.totals(Duration::from_secs(10)), Totals::default());
    }

    /// The running totals equal a plain sum over the calls of the last `len` seconds, for
    /// calls spread over pauses shorter and longer than the window (seeded).
    #[test]
    fn time_window_running_totals_equal_a_recount() {
        use rand::{Rng, SeedableRng};
        for len in [1u32, 2, 3, 10, 60] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(len));
            let mut w = Window::time(len);
            let mut calls: Vec<(u64, Outcome)> = Vec::new();
            let mut now_ms = 0u64;
            for _ in 0..5_000 {
                now_ms += match rng.random_range(0..10) {
                    0 => rng.random_range(0..(u64::from(len) + 3) * 1_000),
                    _ => rng.random_range(0..300),
                };
                let outcome = Outcome {
                    failed: rng.random_bool(0.3),
                    slow: rng.random_bool(0.2),
                };
                calls.push((now_ms / 1_000, outcome));
                let got = w.record(outcome, Duration::from_millis(now_ms));
                let second = now_ms / 1_000;
                let mut want = Totals::default();
                for (s, o) in &calls {
                    if second - s < u64::from(len) {
                        want.add(*o);
                    }
                }
                assert_eq!(got, want, "len {len}, at {now_ms} ms");
                assert_eq!(w.totals(Duration::from_millis(now_ms)), want);
            }
        }
    }
}
