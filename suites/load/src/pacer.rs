//! A sleep to an exact instant inside the driver's runtime.
//!
//! tokio's timer wheel ticks in milliseconds, and at 10,000 req/s requests are 100 µs apart:
//! a request woken up to a millisecond late carries that millisecond in its latency, which
//! is measured from its intended time. On Linux the pacer arms a `timerfd` (an hrtimer, no
//! timer slack) and waits for it through the runtime's epoll, so the task that releases
//! requests wakes within microseconds of their time on the same thread as the connections
//! it hands them to — no thread of its own, no cross-thread wake-up per request. Elsewhere
//! it falls back to tokio's sleep (millisecond resolution, documented in the report's
//! lateness counts).

use std::io;
use std::time::Instant;

/// Sleeps to instants; one per pacing task.
#[derive(Debug)]
pub(crate) struct Pacer {
    #[cfg(target_os = "linux")]
    fd: tokio::io::unix::AsyncFd<std::fs::File>,
}

impl Pacer {
    /// A pacer registered with the current tokio runtime.
    pub(crate) fn new() -> io::Result<Pacer> {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // `register_with_interest` says the same in `unsafe`, which the workspace forbids;
            // its condition holds: the `File` owns the timerfd and nothing else closes or
            // replaces it while the `AsyncFd` holds it.
            #[allow(
                deprecated,
                reason = "the safe constructor is deprecated for I/O safety, which an owned File has"
            )]
            let fd = tokio::io::unix::AsyncFd::with_interest(
                std::fs::File::from(fd),
                tokio::io::Interest::READABLE,
            )?;
            Ok(Pacer { fd })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(Pacer {})
    }

    /// Returns at `deadline` or just after it; at once when it has passed.
    pub(crate) async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        loop {
            use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let value = Timespec::try_from(left).map_err(io::Error::other)?;
            timerfd_settime(
                self.fd.get_ref(),
                TimerfdTimerFlags::empty(),
                &Itimerspec {
                    it_interval: zero,
                    it_value: value,
                },
            )?;
            let mut guard = self.fd.readable().await?;
            // Reading the expiration count disarms the readiness; one-shot timers do not
            // fire again until re-armed, so clearing it cannot lose an expiration.
            let mut expirations = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                Ok(_) => guard.clear_ready(),
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            tokio::time::sleep_until(deadline.into()).await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_at_the_deadline_never_before() {
        // How close after the deadline it wakes is a figure for the benches (the schedule lag
        // a run reports), not a test assertion: a loaded machine can delay any wake-up.
        let pacer = Pacer::new().unwrap();
        for step_us in [50u64, 100, 250, 1_000, 3_000] {
            let deadline = Instant::now() + Duration::from_micros(step_us);
            pacer.sleep_until(deadline).await.unwrap();
            let woke = Instant::now();
            assert!(woke >= deadline, "woke {:?} early", deadline - woke);
        }
        // A deadline already passed returns at once, without arming the timer.
        let before = Instant::now();
        pacer
            .sleep_until(before - Duration::from_millis(1))
            .await
            .unwrap();
        assert!(before.elapsed() < Duration::from_secs(1));
    }
}
