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
/// Distinct response bodies (or transport messages) kept per failure class.
pub const MAX_BODIES_PER_CLASS: usize = 3;
/// Bytes kept of each of those bodies.
pub const MAX_BODY_BYTES: usize = 512;
/// Distinct status codes counted per class; more are counted under status 0.
const MAX_STATUSES: usize = 16;

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

impl ErrorClass {
    /// The class's name in tables and messages (`5xx`, `body mismatch`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Status4xx => "4xx",
            ErrorClass::Status5xx => "5xx",
            ErrorClass::BodyMismatch => "body mismatch",
            ErrorClass::Transport => "transport",
        }
    }
}

/// One failed request, as the recorder gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Its class.
    pub class: ErrorClass,
    /// The response's status code, when there was a response.
    pub status: Option<u16>,
    /// The response body's first [`MAX_BODY_BYTES`] (lossy UTF-8), with the check's reason
    /// first for a body mismatch; the transport's message when there was no response.
    pub detail: String,
}

impl Failure {
    /// A failure with no response.
    pub fn new(class: ErrorClass, detail: impl Into<String>) -> Self {
        Failure {
            class,
            status: None,
            detail: detail.into(),
        }
    }

    /// One line: `503: {"error":"overloaded"}` or the transport's message.
    pub fn message(&self) -> String {
        match self.status {
            Some(status) if self.class != ErrorClass::BodyMismatch => {
                format!("{status}: {}", self.detail)
            }
            _ => self.detail.clone(),
        }
    }
}

/// At most `max` bytes of `body` as text, cut at a character boundary.
pub fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max)]);
    let mut text = text.into_owned();
    if body.len() > max {
        // A multi-byte character cut in two reads as U+FFFD; drop it and say the rest is cut.
        while text.ends_with('\u{fffd}') {
            text.pop();
        }
        text.push('…');
    }
    text
}

/// The failures of one class: how many, by status code, and the first distinct bodies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassFailures {
    /// The class (`5xx`, `transport`, …).
    pub class: String,
    /// Failures of the class.
    pub count: u64,
    /// By status code (classes with a response); status 0 counts codes past the first 16.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub statuses: BTreeMap<u16, u64>,
    /// The first [`MAX_BODIES_PER_CLASS`] distinct bodies (or messages), each with its status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<FailureSample>,
}

/// One distinct failure body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureSample {
    /// The status it came with, when there was a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The body's first [`MAX_BODY_BYTES`], or the transport's message.
    pub body: String,
}

/// Failure detail by class, bounded: at most six classes, sixteen status codes and three
/// bodies of 512 bytes each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Failures(pub Vec<ClassFailures>);

impl Failures {
    fn class_mut(&mut self, class: &str) -> &mut ClassFailures {
        let i = match self.0.iter().position(|c| c.class == class) {
            Some(i) => i,
            None => {
                self.0.push(ClassFailures {
                    class: class.to_owned(),
                    ..ClassFailures::default()
                });
                self.0.len() - 1
            }
        };
        &mut self.0[i]
    }

    fn add_one(&mut self, class: &str, status: Option<u16>, count: u64, body: Option<&str>) {
        let c = self.class_mut(class);
        c.count += count;
        if let Some(status) = status {
            let key = if c.statuses.len() < MAX_STATUSES || c.statuses.contains_key(&status) {
                status
            } else {
                0
            };
            *c.statuses.entry(key).or_default() += count;
        }
        if let Some(body) = body
            && c.samples.len() < MAX_BODIES_PER_CLASS
            && !c
                .samples
                .iter()
                .any(|s| s.status == status && s.body == body)
        {
            c.samples.push(FailureSample {
                status,
                body: body.to_owned(),
            });
        }
    }

    /// Counts one failure.
    pub fn record(&mut self, failure: &Failure) {
        self.add_one(
            failure.class.name(),
            failure.status,
            1,
            Some(&failure.detail),
        );
    }

    /// Adds another run's (or shard's) detail, keeping the bounds.
    pub fn add(&mut self, other: &Failures) {
        for c in &other.0 {
            let mine = self.class_mut(&c.class);
            mine.count += c.count;
            for (status, n) in &c.statuses {
                let key =
                    if mine.statuses.len() < MAX_STATUSES || mine.statuses.contains_key(status) {
                        *status
                    } else {
                        0
                    };
                *mine.statuses.entry(key).or_default() += n;
            }
            for sample in &c.samples {
                if mine.samples.len() < MAX_BODIES_PER_CLASS && !mine.samples.contains(sample) {
                    mine.samples.push(sample.clone());
                }
            }
        }
    }

    /// Whether nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One line per class: `5xx 120 (500 ×100, 503 ×20): first "boom"`.
    pub fn summary(&self) -> String {
        self.0
            .iter()
            .map(|c| {
                let statuses: Vec<String> = c
                    .statuses
                    .iter()
                    .map(|(s, n)| format!("{s} ×{n}"))
                    .collect();
                let first = c
                    .samples
                    .first()
                    .map(|s| format!(": first {:?}", excerpt(s.body.as_bytes(), 160)))
                    .unwrap_or_default();
                if statuses.is_empty() {
                    format!("{} {}{first}", c.class, c.count)
                } else {
                    format!("{} {} ({}){first}", c.class, c.count, statuses.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
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
    /// The failures by class with their status codes and first distinct bodies.
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub failures: Failures,
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
        self.failures.add(&o.failures);
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
    /// A failure, with its status and body or message.
    Failed(Failure),
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
            Completion::Failed(failure) => {
                self.second_stats.errors += 1;
                let c = self.window(intended);
                c.errors.bump(failure.class);
                c.failures.record(&failure);
                if self.samples.len() < MAX_SAMPLES {
                    self.samples.push(failure.message());
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
            Completion::Failed(Failure {
                class: ErrorClass::Status5xx,
                status: Some(503),
                detail: "busy".into(),
            }),
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
        assert_eq!(r.samples, vec!["503: busy".to_owned()]);
        assert_eq!(
            r.counters.failures.summary(),
            "5xx 1 (503 ×1): first \"busy\""
        );
    }

    /// Failures keep their status codes and the first three distinct bodies of each class,
    /// each cut to 512 bytes, however many fail.
    #[test]
    fn failure_detail_is_bounded_and_keeps_distinct_bodies() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, Duration::ZERO, Duration::from_millis(1));
        let long = "x".repeat(2_000);
        for i in 0..1_000u32 {
            let (status, body) = match i % 4 {
                0 => (500, "{\"error\":\"boom\"}".to_owned()),
                1 => (503, "overloaded".to_owned()),
                2 => (500, long.clone()),
                _ => (500 + (i % 40) as u16, format!("body {i}")),
            };
            let detail = excerpt(body.as_bytes(), MAX_BODY_BYTES);
            r.completed(
                t0,
                t0,
                Completion::Failed(Failure {
                    class: ErrorClass::Status5xx,
                    status: Some(status),
                    detail,
                }),
            );
        }
        r.completed(
            t0,
            t0,
            Completion::Failed(Failure::new(ErrorClass::Transport, "connection reset")),
        );
        let f = &r.counters.failures.0;
        assert_eq!(f.len(), 2);
        let five = &f[0];
        assert_eq!((five.class.as_str(), five.count), ("5xx", 1_000));
        // 500 twice in four, 503 once in four and in a tenth of the rest (503, 507, …, 539).
        assert_eq!(five.statuses[&500], 500, "{:?}", five.statuses);
        assert_eq!(five.statuses[&503], 250 + 25);
        assert_eq!(five.statuses.len(), 11);
        assert_eq!(five.statuses.values().sum::<u64>(), 1_000);
        let bodies: Vec<&str> = five.samples.iter().map(|s| s.body.as_str()).collect();
        assert_eq!(bodies.len(), MAX_BODIES_PER_CLASS);
        assert_eq!(bodies[..2], ["{\"error\":\"boom\"}", "overloaded"]);
        assert_eq!(bodies[2].len(), MAX_BODY_BYTES + '…'.len_utf8());
        assert_eq!(f[1].samples[0].body, "connection reset");
        // Shards merge within the same bounds.
        let mut merged = r.counters.failures.clone();
        merged.add(&r.counters.failures);
        assert_eq!(merged.0[0].count, 2_000);
        assert_eq!(merged.0[0].samples.len(), MAX_BODIES_PER_CLASS);
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
