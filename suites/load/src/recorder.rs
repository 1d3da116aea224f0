//! What a run counts: latencies (overall and per second), errors by class, drops, lateness.
//!
//! One recorder is shared by the connection tasks and the pacing task behind a mutex: a
//! record is a few hundred nanoseconds, and the driver runs one worker thread by default,
//! so the lock is almost never contended. Memory is bounded: one overall histogram, one
//! histogram for the current second, and a small summary row per finished second.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::histogram::{Latencies, SecondStats};

/// Distinct response tags (model versions) kept; more are counted under [`OTHER_TAG`].
const MAX_TAGS: usize = 16;
/// The tag under which distinct tags past the first sixteen are counted.
pub const OTHER_TAG: &str = "(other)";
/// Failure samples kept for messages.
const MAX_SAMPLES: usize = 5;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No TCP connection could be made.
    Connect,
    /// No complete response within the request timeout.
    Timeout,
    /// A 4xx status.
    Status4xx,
    /// A 5xx status (or any other non-2xx status).
    Status5xx,
    /// A 2xx response whose body failed the scenario's check.
    BodyMismatch,
    /// The connection failed mid-request (reset, closed, malformed response).
    Transport,
}

/// Counts of failed requests by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Connect failures.
    pub connect: u64,
    /// Timeouts.
    pub timeout: u64,
    /// 4xx responses.
    #[serde(rename = "4xx")]
    pub status_4xx: u64,
    /// 5xx (and other non-2xx) responses.
    #[serde(rename = "5xx")]
    pub status_5xx: u64,
    /// Bodies that failed the check.
    pub body_mismatch: u64,
    /// Transport failures mid-request.
    pub transport: u64,
}

impl ErrorCounts {
    /// All failures.
    pub fn total(&self) -> u64 {
        self.connect
            + self.timeout
            + self.status_4xx
            + self.status_5xx
            + self.body_mismatch
            + self.transport
    }

    fn bump(&mut self, class: ErrorClass) {
        match class {
            ErrorClass::Connect => self.connect += 1,
            ErrorClass::Timeout => self.timeout += 1,
            ErrorClass::Status4xx => self.status_4xx += 1,
            ErrorClass::Status5xx => self.status_5xx += 1,
            ErrorClass::BodyMismatch => self.body_mismatch += 1,
            ErrorClass::Transport => self.transport += 1,
        }
    }

    /// Adds another set of counts.
    pub fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.body_mismatch += o.body_mismatch;
        self.transport += o.transport;
    }

    /// `(class name, count)` pairs, for tables.
    pub fn by_class(&self) -> [(&'static str, u64); 6] {
        [
            ("connect", self.connect),
            ("timeout", self.timeout),
            ("4xx", self.status_4xx),
            ("5xx", self.status_5xx),
            ("body mismatch", self.body_mismatch),
            ("transport", self.transport),
        ]
    }
}

/// The counters of the measured window (after the warm-up), which the gates judge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests the schedule called for in this window (this shard's share).
    pub scheduled: u64,
    /// Requests written to a connection.
    pub sent: u64,
    /// Responses that passed every check.
    pub ok: u64,
    /// Failures by class.
    pub errors: ErrorCounts,
    /// Requests never sent: no connection was free within the queue deadline, or the
    /// queue was full.
    pub dropped: u64,
    /// Requests sent later than the late threshold after their intended time.
    pub late: u64,
    /// Requests the pacing task itself released later than the late threshold: the
    /// generator falling behind, which makes a run invalid past the tolerance.
    pub behind: u64,
    /// Responses by tag (the model version a response named), when the check tags them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, u64>,
}

impl Counters {
    /// Adds another shard's counters.
    pub fn add(&mut self, o: &Counters) {
        self.scheduled += o.scheduled;
        self.sent += o.sent;
        self.ok += o.ok;
        self.errors.add(&o.errors);
        self.dropped += o.dropped;
        self.late += o.late;
        self.behind += o.behind;
        for (k, v) in &o.tags {
            *self.tags.entry(k.clone()).or_default() += v;
        }
    }

    /// Requests that did not succeed: errors plus drops.
    pub fn failed(&self) -> u64 {
        self.errors.total() + self.dropped
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// A response that passed the check, with its tag if the check gives one.
    Ok(Option<String>),
    /// A failure, with a sample message.
    Failed(ErrorClass, String),
}

/// The shared recorder of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    warm_up_end: Instant,
    late_after: Duration,
    /// Latencies of successful requests intended after the warm-up.
    pub overall: Latencies,
    /// Counters of the measured window.
    pub counters: Counters,
    /// Counters of the warm-up, kept apart.
    pub warm_up: Counters,
    /// Failure samples, for messages.
    pub samples: Vec<String>,
    second: u32,
    second_latencies: Latencies,
    second_stats: SecondStats,
    /// Finished seconds.
    pub seconds: Vec<SecondStats>,
    /// Largest release lag of the pacing task seen, µs.
    pub max_schedule_lag_us: u64,
    /// Where every measured latency is also written, one µs value per line.
    pub raw: Option<std::io::BufWriter<std::fs::File>>,
}

impl Recorder {
    /// A recorder for a schedule starting at `start`; requests intended before
    /// `start + warm_up` are counted apart.
    pub fn new(start: Instant, warm_up: Duration, late_after: Duration) -> Self {
        Recorder {
            start,
            warm_up_end: start + warm_up,
            late_after,
            overall: Latencies::new(),
            counters: Counters::default(),
            warm_up: Counters::default(),
            samples: Vec::new(),
            second: 0,
            second_latencies: Latencies::new(),
            second_stats: SecondStats::default(),
            seconds: Vec::new(),
            max_schedule_lag_us: 0,
            raw: None,
        }
    }

    fn window(&mut self, intended: Instant) -> &mut Counters {
        if intended >= self.warm_up_end {
            &mut self.counters
        } else {
            &mut self.warm_up
        }
    }

    /// Moves the per-second window to `now`, closing finished seconds.
    pub fn tick(&mut self, now: Instant) {
        let second =
            u32::try_from(now.saturating_duration_since(self.start).as_secs()).unwrap_or(u32::MAX);
        while self.second < second {
            let done = std::mem::take(&mut self.second_stats);
            let row = SecondStats {
                second: self.second,
                ..done
            }
            .with_latencies(&self.second_latencies);
            self.seconds.push(row);
            self.second_latencies.reset();
            self.second += 1;
        }
    }

    /// Closes the current second, at the end of a run.
    pub fn finish(&mut self, now: Instant) {
        self.tick(now);
        let has_data = self.second_stats != SecondStats::default();
        if has_data || !self.second_latencies.is_empty() {
            self.tick(now + Duration::from_secs(1));
        }
    }

    /// The pacing task released a request `lag` after its intended time.
    pub fn dispatched(&mut self, intended: Instant, lag: Duration) {
        let lag_us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.max_schedule_lag_us = self.max_schedule_lag_us.max(lag_us);
        let late_after = self.late_after;
        let c = self.window(intended);
        c.scheduled += 1;
        if lag > late_after {
            c.behind += 1;
        }
    }

    /// A request was dropped unsent at `now`.
    pub fn dropped(&mut self, intended: Instant, now: Instant) {
        self.tick(now);
        self.window(intended).dropped += 1;
        self.second_stats.dropped += 1;
    }

    /// A request was written to a connection at `sent`.
    pub fn sent(&mut self, intended: Instant, sent: Instant) {
        let late = sent.saturating_duration_since(intended) > self.late_after;
        let c = self.window(intended);
        c.sent += 1;
        if late {
            c.late += 1;
        }
        if late {
            self.second_stats.late += 1;
        }
    }

    /// A request intended at `intended` completed at `done`.
    pub fn completed(&mut self, intended: Instant, done: Instant, how: Completion) {
        self.tick(done);
        let measured = intended >= self.warm_up_end;
        let micros =
            u64::try_from(done.saturating_duration_since(intended).as_micros()).unwrap_or(u64::MAX);
        match how {
            Completion::Ok(tag) => {
                self.second_stats.ok += 1;
                self.second_latencies.record(micros);
                if measured {
                    self.overall.record(micros);
                    if let Some(raw) = &mut self.raw {
                        // A full disk loses audit lines, not the run; the flush at the end reports it.
                        let _ = writeln!(raw, "{micros}");
                    }
                }
                let c = self.window(intended);
                c.ok += 1;
                if let Some(tag) = tag {
                    let key = if c.tags.len() < MAX_TAGS || c.tags.contains_key(&tag) {
                        tag
                    } else {
                        OTHER_TAG.to_owned()
                    };
                    *c.tags.entry(key).or_default() += 1;
                }
            }
            Completion::Failed(class, message) => {
                self.second_stats.errors += 1;
                self.window(intended).errors.bump(class);
                if self.samples.len() < MAX_SAMPLES {
                    self.samples.push(message);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_is_counted_apart_and_seconds_close_in_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Recorder::new(t0, Duration::from_secs(1), ms(1));
        // A warm-up request, a measured one that is late, and one that fails.
        r.dispatched(t0, Duration::ZERO);
        r.sent(t0, t0);
        r.completed(t0, t0 + ms(2), Completion::Ok(Some("1".into())));
        let t1 = t0 + ms(1500);
        r.dispatched(t1, Duration::ZERO);
        r.sent(t1, t1 + ms(5));
        r.completed(t1, t1 + ms(7), Completion::Ok(Some("2".into())));
        r.dispatched(t1, ms(3));
        r.sent(t1, t1 + ms(3));
        r.completed(
            t1,
            t1 + ms(2600),
            Completion::Failed(ErrorClass::Status5xx, "503".into()),
        );
        r.dropped(t1, t1 + ms(2700));
        r.finish(t1 + ms(2700));
        assert_eq!(r.warm_up.ok, 1);
        assert_eq!(r.counters.scheduled, 2);
        assert_eq!(r.counters.ok, 1);
        assert_eq!(r.counters.late, 2);
        assert_eq!(r.counters.behind, 1);
        assert_eq!(r.counters.errors.status_5xx, 1);
        assert_eq!(r.counters.dropped, 1);
        assert_eq!(r.counters.failed(), 2);
        assert_eq!(r.overall.len(), 1);
        // Three significant digits: 7 ms reads back within 0.1 %.
        assert!((6993..=7007).contains(&r.overall.quantile(0.5)));
        let seconds: Vec<u32> = r.seconds.iter().map(|s| s.second).collect();
        assert_eq!(seconds, vec![0, 1, 2, 3, 4]);
        assert_eq!(r.seconds[0].ok, 1);
        assert_eq!(r.seconds[1].ok, 1);
        assert_eq!(r.seconds[4].errors, 1);
        assert_eq!(r.seconds[4].dropped, 1);
        assert_eq!(r.samples, vec!["503".to_owned()]);
    }

    #[test]
    fn tags_are_bounded() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, Duration::ZERO, Duration::from_millis(1));
        for i in 0..100 {
            r.completed(t0, t0, Completion::Ok(Some(i.to_string())));
        }
        assert_eq!(r.counters.tags.len(), MAX_TAGS + 1);
        assert_eq!(r.counters.tags[OTHER_TAG], 100 - MAX_TAGS as u64);
    }
}
