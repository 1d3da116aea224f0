//! Latency histograms: HDR histograms of microseconds, their serialised form, and the
//! per-second summaries a run keeps instead of a histogram per second (bounded memory).

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

/// Largest latency recorded exactly, in µs (one hour); larger values are clamped to it.
pub const MAX_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept: values are exact to 0.1 %.
pub const SIGFIG: u8 = 3;

/// A latency histogram in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

/// A histogram that cannot be read back from its serialised form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistogramError {
    /// Not base64.
    #[error("failed to decode the histogram's base64: {0}")]
    Base64(String),
    /// Not an HdrHistogram V2 blob.
    #[error("failed to read the HdrHistogram V2 blob: {0}")]
    Decode(String),
    /// Two histograms cannot be added.
    #[error("failed to add histograms: {0}")]
    Add(String),
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram covering 1 µs to [`MAX_MICROS`] at [`SIGFIG`] digits.
    pub fn new() -> Self {
        // Bounds are constants known to be valid (1 <= low, high >= 2·low, sigfig <= 5).
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, SIGFIG)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Latencies { histogram }
    }

    /// Records one latency in µs (at least 1, at most [`MAX_MICROS`]).
    pub fn record(&mut self, micros: u64) {
        self.histogram
            .saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds every count of `other`: merging shards is this, exactly.
    pub fn add(&mut self, other: &Latencies) -> Result<(), HistogramError> {
        self.histogram
            .add(&other.histogram)
            .map_err(|e| HistogramError::Add(format!("{e:?}")))
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The value at quantile `q` (0 to 1) in µs; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.histogram.is_empty() {
            return 0;
        }
        self.histogram.value_at_quantile(q)
    }

    /// Largest recorded value in µs.
    pub fn max(&self) -> u64 {
        self.histogram.max()
    }

    /// Smallest recorded value in µs.
    pub fn min(&self) -> u64 {
        self.histogram.min()
    }

    /// Mean in µs.
    pub fn mean(&self) -> f64 {
        self.histogram.mean()
    }

    /// Clears every count.
    pub fn reset(&mut self) {
        self.histogram.reset();
    }

    /// The percentile curve for charts: `(percentile, µs)` at quantiles that halve the
    /// remaining tail each step, up to 99.999 %.
    pub fn percentile_curve(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        if self.is_empty() {
            return out;
        }
        let mut q = 0.0_f64;
        while q < 0.99999 {
            out.push((q * 100.0, self.quantile(q)));
            // Ten points per halving of the tail.
            q = 1.0 - (1.0 - q) * 0.5_f64.powf(0.1);
        }
        out.push((99.999, self.quantile(0.99999)));
        out.push((100.0, self.max()));
        out
    }

    /// HdrHistogram's V2 serialisation (uncompressed), base64: the shard file's form.
    pub fn to_base64(&self) -> String {
        let mut buf = Vec::new();
        // Writing into a Vec cannot fail for lack of space; V2 errors only on I/O.
        if V2Serializer::new()
            .serialize(&self.histogram, &mut buf)
            .is_err()
        {
            buf.clear();
        }
        base64::engine::general_purpose::STANDARD.encode(buf)
    }

    /// Reads [`Latencies::to_base64`] back.
    pub fn from_base64(text: &str) -> Result<Self, HistogramError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| HistogramError::Base64(e.to_string()))?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| HistogramError::Decode(format!("{e:?}")))?;
        // Re-bucket into our bounds so that adding to a fresh histogram never fails.
        let mut out = Latencies::new();
        for v in decoded.iter_recorded() {
            out.histogram.saturating_record_n(
                v.value_iterated_to().clamp(1, MAX_MICROS),
                v.count_at_value(),
            );
        }
        Ok(out)
    }
}

/// Serde as a base64 V2 blob.
impl Serialize for Latencies {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Latencies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Latencies::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// What one second of a run looked like (by completion time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondStats {
    /// Seconds since the schedule's start.
    pub second: u32,
    /// Responses that passed every check.
    pub ok: u64,
    /// Requests that failed (any class).
    pub errors: u64,
    /// Requests dropped: never sent because no connection was free in time.
    pub dropped: u64,
    /// Requests sent later than the late threshold after their intended time.
    pub late: u64,
    /// Latency percentiles of the second's completions, µs.
    pub p50: u64,
    /// 90th percentile, µs.
    pub p90: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p999: u64,
    /// Largest, µs.
    pub max: u64,
    /// The second's latencies themselves, serialised as [`Latencies::to_base64`] (about a
    /// kilobyte; a live histogram is ~180 KB): what lets a merge of shards recompute the
    /// second's percentiles exactly. `None` in files written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
}

impl SecondStats {
    /// Fills the percentiles from a histogram of the second's latencies, and keeps the
    /// histogram in its serialised form.
    pub fn with_latencies(mut self, h: &Latencies) -> Self {
        self.p50 = h.quantile(0.5);
        self.p90 = h.quantile(0.9);
        self.p99 = h.quantile(0.99);
        self.p999 = h.quantile(0.999);
        self.max = if h.is_empty() { 0 } else { h.max() };
        self.histogram = (!h.is_empty()).then(|| h.to_base64());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialised_histogram_reads_back_equal() {
        let mut h = Latencies::new();
        for v in [1, 7, 150, 150, 999, 12_345, 2_000_000, MAX_MICROS + 5] {
            h.record(v);
        }
        let back = Latencies::from_base64(&h.to_base64()).unwrap();
        assert_eq!(back, h);
        let json = serde_json::to_string(&h).unwrap();
        let back: Latencies = serde_json::from_str(&json).unwrap();
        assert_eq!(back.len(), 8);
        assert_eq!(back.max(), h.max());
    }

    #[test]
    fn adding_shards_equals_recording_all_in_one() {
        // The values of one run dealt round-robin to three shards.
        let values: Vec<u64> = (0..30_000u64).map(|i| (i * 7919) % 50_000 + 20).collect();
        let mut whole = Latencies::new();
        let mut shards = [Latencies::new(), Latencies::new(), Latencies::new()];
        for (i, v) in values.iter().enumerate() {
            whole.record(*v);
            shards[i % 3].record(*v);
        }
        let mut merged = Latencies::new();
        for s in &shards {
            let through_json = Latencies::from_base64(&s.to_base64()).unwrap();
            merged.add(&through_json).unwrap();
        }
        assert_eq!(merged.len(), whole.len());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(merged.quantile(q), whole.quantile(q), "q = {q}");
        }
        assert_eq!(merged, whole);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            Latencies::from_base64("%%%"),
            Err(HistogramError::Base64(_))
        ));
        assert!(matches!(
            Latencies::from_base64("AAAA"),
            Err(HistogramError::Decode(_))
        ));
    }

    #[test]
    fn percentile_curve_rises_to_the_max() {
        let mut h = Latencies::new();
        for v in 1..=10_000 {
            h.record(v);
        }
        let curve = h.percentile_curve();
        assert!(
            curve
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(curve.last().map(|p| p.1), Some(h.max()));
        assert!(curve.len() < 200);
    }
}
