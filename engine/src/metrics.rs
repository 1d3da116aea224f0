//! Prometheus metrics, one `prometheus::Registry` per [`crate::AppState`] so that many engines
//! in one process (tests, the in-process harness target) never share counters.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus::core::{Collector as _, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder as _, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    TextEncoder,
};

use crate::oip::{SanitiserAction, SanitiserChange};
use crate::registry::Registry;

/// The `model` label of requests for a model that is not loaded. No model can have this name
/// (names are 1 to 64 characters), and it keeps label cardinality bounded whatever clients send.
pub(crate) const UNKNOWN_MODEL_LABEL: &str = "";

/// Latency buckets from 50 µs to 1 s: the engine answers in microseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

pub(crate) struct Metrics {
    registry: prometheus::Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    live_version: IntGaugeVec,
    sanitiser: IntCounterVec,
    /// Remote model calls by outcome (success, failure, ignored, not_permitted).
    breaker_calls: IntCounterVec,
    /// Answers a fallback gave, by remote model and fallback.
    degraded: IntCounterVec,
    /// 1 for each remote model's current breaker state; rebuilt at scrape time.
    breaker_state: IntGaugeVec,
    /// Each remote model's breaker window at scrape time (resilience4j's
    /// `buffered_calls{kind}` and `slow_calls`): calls, by `kind` successful or failed.
    breaker_buffered: IntGaugeVec,
    /// Slow calls in each remote model's breaker window, at scrape time.
    breaker_slow: IntGaugeVec,
    /// Failure and slow-call rates of each breaker window, percent; a model's series is
    /// absent while its window holds fewer than `minimum-number-of-calls` (undefined, not 0).
    breaker_failure_rate: GaugeVec,
    breaker_slow_rate: GaugeVec,
    /// Serialises scrapes: each rebuilds the live-version gauge before gathering.
    scrape: Mutex<()>,
    /// Held shared while a request's series are recorded and exclusively while a model's are
    /// forgotten, so that a request still in flight when its model is unloaded cannot bring
    /// the series back (it sees the model gone; see [`Metrics::observe_request`]).
    series: RwLock<()>,
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = prometheus::Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gauntlet_requests_total",
                "Inference requests by model and HTTP status.",
            ),
            &["model", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gauntlet_request_duration_seconds",
                "Inference request duration, from routing to response, by model.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )?;
        let live_version = IntGaugeVec::new(
            Opts::new(
                "gauntlet_model_live_version",
                "1 for the version of each model that is live.",
            ),
            &["model", "version"],
        )?;
        let sanitiser = IntCounterVec::new(
            Opts::new(
                "gauntlet_sanitiser_changes_total",
                "Values changed by the sanitiser, by model, feature and action.",
            ),
            &["model", "feature", "action"],
        )?;
        let breaker_calls = IntCounterVec::new(
            Opts::new(
                "gauntlet_breaker_calls_total",
                "Remote model calls by breaker outcome: success, failure, ignored (a client error passed on), not_permitted.",
            ),
            &["model", "outcome"],
        )?;
        let degraded = IntCounterVec::new(
            Opts::new(
                "gauntlet_degraded_responses_total",
                "Remote model answers given by a fallback, by fallback (last-good, rule, neutral).",
            ),
            &["model", "fallback"],
        )?;
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "gauntlet_breaker_state",
                "1 for each remote model's current circuit breaker state.",
            ),
            &["model", "state"],
        )?;
        let breaker_buffered = IntGaugeVec::new(
            Opts::new(
                "gauntlet_breaker_buffered_calls",
                "Calls in each remote model's breaker window at scrape time, by kind (successful, failed); a time-based window holds its last seconds only.",
            ),
            &["model", "kind"],
        )?;
        let breaker_slow = IntGaugeVec::new(
            Opts::new(
                "gauntlet_breaker_slow_calls",
                "Slow calls in each remote model's breaker window at scrape time.",
            ),
            &["model"],
        )?;
        let breaker_failure_rate = GaugeVec::new(
            Opts::new(
                "gauntlet_breaker_failure_rate",
                "Failed calls over calls in each remote model's breaker window, percent; absent below minimum-number-of-calls.",
            ),
            &["model"],
        )?;
        let breaker_slow_rate = GaugeVec::new(
            Opts::new(
                "gauntlet_breaker_slow_call_rate",
                "Slow calls over calls in each remote model's breaker window, percent; absent below minimum-number-of-calls.",
            ),
            &["model"],
        )?;
        registry.register(Box::new(breaker_calls.clone()))?;
        registry.register(Box::new(breaker_buffered.clone()))?;
        registry.register(Box::new(breaker_slow.clone()))?;
        registry.register(Box::new(breaker_failure_rate.clone()))?;
        registry.register(Box::new(breaker_slow_rate.clone()))?;
        registry.register(Box::new(degraded.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(live_version.clone()))?;
        registry.register(Box::new(sanitiser.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            live_version,
            sanitiser,
            breaker_calls,
            degraded,
            breaker_state,
            breaker_buffered,
            breaker_slow,
            breaker_failure_rate,
            breaker_slow_rate,
            scrape: Mutex::new(()),
            series: RwLock::new(()),
        })
    }

    /// Counts one inference request for `model` (`None`: not loaded when the request was
    /// routed) and records its duration. A model no longer in `registry` (unloaded while the
    /// request ran) is counted under [`UNKNOWN_MODEL_LABEL`] without a duration, as if it had
    /// never been loaded, so its forgotten series stay forgotten.
    pub(crate) fn observe_request(
        &self,
        registry: &Registry,
        model: Option<&str>,
        status: http::StatusCode,
        elapsed: Duration,
    ) {
        let _guard = self.series.read().unwrap_or_else(PoisonError::into_inner);
        match model.filter(|name| registry.contains(name)) {
            Some(name) => {
                self.requests
                    .with_label_values(&[name, status.as_str()])
                    .inc();
                self.duration
                    .with_label_values(&[name])
                    .observe(elapsed.as_secs_f64());
            }
            None => self
                .requests
                .with_label_values(&[UNKNOWN_MODEL_LABEL, status.as_str()])
                .inc(),
        }
    }

    /// Counts one infer request of a remote model (`[[remote-model]]`: names from the
    /// config, so the label set stays bounded) and records its duration.
    pub(crate) fn observe_remote_request(
        &self,
        model: &str,
        status: http::StatusCode,
        elapsed: Duration,
    ) {
        let _guard = self.series.read().unwrap_or_else(PoisonError::into_inner);
        self.requests
            .with_label_values(&[model, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[model])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a remote model call's breaker outcome.
    pub(crate) fn breaker_call(&self, model: &str, outcome: &'static str) {
        self.breaker_calls
            .with_label_values(&[model, outcome])
            .inc();
    }

    /// Counts an answer given by `fallback`.
    pub(crate) fn degraded(&self, model: &str, fallback: crate::backend::Fallback) {
        self.degraded
            .with_label_values(&[model, fallback.as_str()])
            .inc();
    }

    /// Counts sanitiser changes by feature and action: every change, however many the
    /// response lists. Nothing is recorded for a model no longer in `registry`.
    pub(crate) fn record_changes(
        &self,
        registry: &Registry,
        model: &str,
        changes: &[SanitiserChange],
    ) {
        if changes.is_empty() {
            // The common clean request: no lock, no registry lookup.
            return;
        }
        let mut counts: HashMap<(&str, &'static str), u64> = HashMap::new();
        for c in changes {
            let action = match c.action {
                SanitiserAction::Imputed => "imputed",
                SanitiserAction::Clipped => "clipped",
            };
            *counts.entry((c.feature.as_str(), action)).or_default() += 1;
        }
        let _guard = self.series.read().unwrap_or_else(PoisonError::into_inner);
        if !registry.contains(model) {
            return;
        }
        for ((feature, action), n) in counts {
            self.sanitiser
                .with_label_values(&[model, feature, action])
                .inc_by(n);
        }
    }

    /// Drops every series of `model`, so that series do not pile up for each model ever
    /// loaded. Called once a model is unloaded (removed from the registry).
    pub(crate) fn forget_model(&self, model: &str) {
        let _series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        forget(&self.requests, model);
        forget(&self.duration, model);
        forget(&self.sanitiser, model);
        let _guard = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        forget(&self.live_version, model);
    }

    /// Renders the text exposition format, with the live-version gauge read from `registry`
    /// at scrape time so it is right whoever changed the registry.
    pub(crate) fn render(
        &self,
        registry: &Registry,
        backends: &crate::backend::Backends,
    ) -> Result<Vec<u8>, prometheus::Error> {
        let _guard = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.breaker_failure_rate.reset();
        self.breaker_slow_rate.reset();
        for remote in backends.iter() {
            let name = remote.config().name.as_str();
            let current = remote.breaker().state();
            for state in crate::backend::State::ALL {
                self.breaker_state
                    .with_label_values(&[name, state.as_str()])
                    .set(i64::from(state == current));
            }
            let window = remote.breaker().snapshot();
            for (kind, calls) in [
                ("successful", window.successful_calls),
                ("failed", window.failed_calls),
            ] {
                self.breaker_buffered
                    .with_label_values(&[name, kind])
                    .set(i64::from(calls));
            }
            self.breaker_slow
                .with_label_values(&[name])
                .set(i64::from(window.slow_calls));
            if let Some(rate) = window.failure_rate {
                self.breaker_failure_rate
                    .with_label_values(&[name])
                    .set(f64::from(rate));
            }
            if let Some(rate) = window.slow_call_rate {
                self.breaker_slow_rate
                    .with_label_values(&[name])
                    .set(f64::from(rate));
            }
        }
        self.live_version.reset();
        for entry in registry.index() {
            if entry.state == crate::registry::ModelState::Ready {
                self.live_version
                    .with_label_values(&[entry.name.as_str(), entry.version.as_str()])
                    .set(1);
            }
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// Removes the series of `vec` whose `model` label is `model`.
fn forget<T: MetricVecBuilder>(vec: &MetricVec<T>, model: &str) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|pair| (pair.name(), pair.value()))
                .collect();
            if labels.get("model") == Some(&model) {
                // Fails only if another thread removed it first.
                let _ = vec.remove(&labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{artifact, linear};

    #[test]
    fn renders_every_family() {
        let m = Metrics::new().unwrap();
        let r = Registry::new();
        r.load(artifact("m", "7", 1, linear(0.0, vec![1.0])))
            .unwrap();
        r.promote("m").unwrap();
        m.observe_request(
            &r,
            Some("m"),
            http::StatusCode::OK,
            Duration::from_micros(30),
        );
        m.observe_request(&r, None, http::StatusCode::NOT_FOUND, Duration::ZERO);
        m.record_changes(
            &r,
            "m",
            &[SanitiserChange {
                row: 0,
                feature: "f0".into(),
                action: SanitiserAction::Clipped,
                original: Some(9.0),
                value: 3.0,
            }],
        );
        let text =
            String::from_utf8(m.render(&r, &crate::backend::Backends::default()).unwrap()).unwrap();
        assert!(
            text.contains("gauntlet_requests_total{model=\"m\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gauntlet_request_duration_seconds_bucket{model=\"m\",le=\"0.00005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gauntlet_model_live_version{model=\"m\",version=\"7\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "gauntlet_sanitiser_changes_total{action=\"clipped\",feature=\"f0\",model=\"m\"} 1"
            ),
            "{text}"
        );
        r.unload("m").unwrap();
        let text =
            String::from_utf8(m.render(&r, &crate::backend::Backends::default()).unwrap()).unwrap();
        assert!(!text.contains("gauntlet_model_live_version{"), "{text}");
    }

    /// Regression: series of unloaded models stayed forever, one set per model ever loaded.
    #[test]
    fn forgetting_a_model_drops_its_series_only() {
        let m = Metrics::new().unwrap();
        let r = Registry::new();
        let change = |feature: &str| SanitiserChange {
            row: 0,
            feature: feature.into(),
            action: SanitiserAction::Imputed,
            original: None,
            value: 0.0,
        };
        for model in ["m", "keep"] {
            r.load(artifact(model, "1", 1, linear(0.0, vec![1.0])))
                .unwrap();
            m.observe_request(
                &r,
                Some(model),
                http::StatusCode::OK,
                Duration::from_micros(30),
            );
            m.observe_request(
                &r,
                Some(model),
                http::StatusCode::BAD_REQUEST,
                Duration::ZERO,
            );
            m.record_changes(&r, model, &[change("a"), change("b"), change("a")]);
        }
        let text =
            String::from_utf8(m.render(&r, &crate::backend::Backends::default()).unwrap()).unwrap();
        assert!(
            text.contains(
                "gauntlet_sanitiser_changes_total{action=\"imputed\",feature=\"a\",model=\"m\"} 2"
            ),
            "{text}"
        );
        m.forget_model("m");
        let text =
            String::from_utf8(m.render(&r, &crate::backend::Backends::default()).unwrap()).unwrap();
        assert!(!text.contains("model=\"m\""), "{text}");
        for family in [
            "gauntlet_requests_total",
            "gauntlet_request_duration_seconds_count",
            "gauntlet_sanitiser_changes_total",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(family) && l.contains("model=\"keep\"")),
                "{family} lost the other model:\n{text}"
            );
        }
    }

    /// Regression: a request in flight while its model was unloaded recorded its duration
    /// after the unload had forgotten the model's series, bringing them back for good.
    #[test]
    fn a_request_finishing_after_unload_brings_no_series_back() {
        let m = Metrics::new().unwrap();
        let r = Registry::new();
        r.load(artifact("deep", "1", 1, linear(0.0, vec![1.0])))
            .unwrap();
        r.unload("deep").unwrap();
        m.forget_model("deep");
        m.observe_request(
            &r,
            Some("deep"),
            http::StatusCode::OK,
            Duration::from_millis(5),
        );
        m.record_changes(
            &r,
            "deep",
            &[SanitiserChange {
                row: 0,
                feature: "f0".into(),
                action: SanitiserAction::Imputed,
                original: None,
                value: 0.0,
            }],
        );
        let text =
            String::from_utf8(m.render(&r, &crate::backend::Backends::default()).unwrap()).unwrap();
        assert!(!text.contains("model=\"deep\""), "{text}");
        assert!(
            text.contains("gauntlet_requests_total{model=\"\",status=\"200\"} 1"),
            "{text}"
        );
    }
}
