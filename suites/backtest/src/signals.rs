//! Predictions for every bar: from a model behind a [`Target`] (OIP infer batches), from a
//! model compiled in process, or from the built-in moving-average crossover.
//!
//! A prediction is a number whose sign (or size, see [`crate::exec::Sizing`]) becomes the
//! target position decided at that bar's close; `NaN` means "no view yet" (flat), as for
//! bars before the feature warm-up.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use http::StatusCode;

use gauntlet_engine::Model;
use gauntlet_engine::oip::{Datatype, InferRequest, ModelMetadata, RequestInput};
use gauntlet_fixtures::{FEATURE_NAMES, WARMUP, bar_features};
use gauntlet_harness::{Target, TargetExt, error_chain};

use crate::data::Bars;

/// Why predictions could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The strategy spec does not parse.
    #[error("invalid strategy {spec:?}: {reason}")]
    Strategy {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// The model declares a feature the bar pipeline does not produce.
    #[error("model {model:?} reads feature {feature:?}, which the bar feature pipeline does not produce (it produces {})", FEATURE_NAMES.join(", "))]
    UnknownFeature {
        /// The model.
        model: String,
        /// The feature.
        feature: String,
    },
    /// The target could not be asked.
    #[error("failed to call the target for model {model:?}: {reason}")]
    Target {
        /// The model.
        model: String,
        /// What went wrong.
        reason: String,
    },
    /// The target does not serve the model (its metadata call was not answered 200).
    #[error("the target does not serve model {model:?}: GET /v2/models/{model} answered {status}")]
    NotServed {
        /// The model.
        model: String,
        /// The status it answered.
        status: u16,
    },
    /// The target answered something unusable.
    #[error("model {model:?}: {what}")]
    BadReply {
        /// The model.
        model: String,
        /// What was wrong with the reply.
        what: String,
    },
}

/// Anything that gives a prediction per bar.
#[async_trait]
pub trait Signals: Send + Sync {
    /// One line for reports: `ma-cross:10,50`, `model ref-ensemble via in-process …`.
    fn describe(&self) -> String;

    /// Predictions for bars `from..bars.len()`, each from bars up to its own close only
    /// (the look-ahead detector checks that claim).
    async fn predict(&self, bars: &Bars, from: usize) -> Result<Vec<f64>, SignalError>;
}

/// The moving-average crossover baseline: `+1` when the `fast`-bar simple moving average of
/// closes is above the `slow` one, `−1` below, 0 equal; `NaN` for the first `slow − 1` bars.
///
/// "Equal" means within the rounding error of the sliding sums (a bound tracked bar by bar,
/// about `window · 2.2e-16` relative of the averages just after each fresh start of the sums
/// and growing by about that much per bar until the next one): averages of windows holding
/// the same prices are equal, whatever the sums carried from earlier bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaCross {
    /// Fast window, in bars.
    pub fast: usize,
    /// Slow window, in bars.
    pub slow: usize,
}

impl MaCross {
    /// Parses `ma-cross:FAST,SLOW` with `1 ≤ FAST < SLOW ≤ 100000`.
    ///
    /// # Errors
    ///
    /// [`SignalError::Strategy`] naming what is wrong.
    pub fn parse(spec: &str) -> Result<MaCross, SignalError> {
        let bad = |reason: &str| SignalError::Strategy {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let params = spec
            .strip_prefix("ma-cross:")
            .ok_or_else(|| bad("expected ma-cross:FAST,SLOW (the only built-in strategy)"))?;
        let (fast, slow) = params
            .split_once(',')
            .ok_or_else(|| bad("expected two windows, FAST,SLOW"))?;
        let window = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| bad("windows must be whole numbers of bars"))
        };
        MaCross::new(window(fast)?, window(slow)?).map_err(|reason| bad(&reason))
    }

    /// A crossover with `1 ≤ fast < slow ≤ 100000`.
    ///
    /// # Errors
    ///
    /// The rule broken.
    pub fn new(fast: usize, slow: usize) -> Result<MaCross, String> {
        if fast == 0 || fast >= slow {
            return Err(format!(
                "need 1 ≤ FAST < SLOW, got FAST {fast}, SLOW {slow}"
            ));
        }
        if slow > 100_000 {
            return Err(format!("SLOW {slow} exceeds the limit of 100000 bars"));
        }
        Ok(MaCross { fast, slow })
    }

    /// `SMA_fast − SMA_slow` of `close` at every bar (`NaN` before the longer window is full:
    /// bar `slow − 1`; all `NaN` for a zero window, which [`MaCross::new`] refuses).
    ///
    /// Sliding sums, each step one addition of `close[t] − close[t − window]` (the loop runs
    /// at the speed of one floating-point addition a bar), started afresh from the window's
    /// prices every [`RESUM_BARS`] bars (or 8 slow windows, if longer). A sliding sum's
    /// rounding error is relative to the largest prices it has seen: after prices fall by
    /// orders of magnitude (the 1M-bar fixture's random walk ends near 10⁻²⁵), a sum that
    /// never restarts compares the two averages by its noise, and the sign of the spread,
    /// hence the position, flips on bars where the averages differ by far more.
    pub fn spread(&self, close: &[f64]) -> Vec<f64> {
        self.spread_iter(close).collect()
    }

    /// `spread(close)[from..]`, computed from the last fresh start of the sums at or before
    /// `from` rather than from bar 0: the same bits (a fresh start forgets every earlier
    /// bar), in time proportional to what is returned. The look-ahead detector asks for the
    /// last few hundred bars of each cut.
    pub fn spread_from(&self, close: &[f64], from: usize) -> Vec<f64> {
        let mut iter = self.spread_iter(close);
        let from = from.min(close.len());
        if from > iter.restart && iter.first < close.len() {
            // Fresh starts fall at `first + k · (block + 1)`.
            let period = iter.block + 1;
            let start = iter.restart + (from - iter.restart) / period * period;
            iter.t = start;
            iter.restart = start;
        }
        let skip = from - iter.t;
        iter.skip(skip).collect()
    }

    /// [`MaCross::spread`] one bar at a time, nothing stored: for `sweep::run_metrics`.
    pub fn spread_iter<'a>(&self, close: &'a [f64]) -> Spread<'a> {
        let (fast, slow) = (self.fast, self.slow);
        let longest = fast.max(slow);
        Spread {
            close,
            fast,
            slow,
            t: 0,
            // No bar has both windows full when either is empty or longer than the prices.
            first: if fast == 0 || slow == 0 || close.len() < longest {
                close.len()
            } else {
                longest - 1
            },
            restart: longest.saturating_sub(1),
            block: RESUM_BARS.max(8 * longest),
            fast_sum: 0.0,
            slow_sum: 0.0,
            fast_err: 0.0,
            slow_err: 0.0,
        }
    }
}

/// [`MaCross::spread_iter`]: the spread bar by bar.
#[derive(Debug, Clone)]
pub struct Spread<'a> {
    close: &'a [f64],
    fast: usize,
    slow: usize,
    /// The next bar.
    t: usize,
    /// The first bar with both windows full (`NaN` before).
    first: usize,
    /// The next bar whose window sums start afresh, and bars between fresh starts less one.
    restart: usize,
    block: usize,
    fast_sum: f64,
    slow_sum: f64,
    /// Bounds on each sum's rounding error, in units of the rounding unit: every addition
    /// adds at most the magnitude of its operands.
    fast_err: f64,
    slow_err: f64,
}

impl Iterator for Spread<'_> {
    type Item = f64;

    #[inline]
    fn next(&mut self) -> Option<f64> {
        let t = self.t;
        let close = self.close;
        let &new = close.get(t)?;
        self.t += 1;
        if t < self.first {
            return Some(f64::NAN);
        }
        let (f, s) = (self.fast, self.slow);
        if t == self.restart {
            self.fast_sum = close[t + 1 - f..=t].iter().sum();
            self.slow_sum = close[t + 1 - s..=t].iter().sum();
            // A sum of w positive values is within (w − 1)·u·sum of the exact one.
            self.fast_err = f as f64 * self.fast_sum;
            self.slow_err = s as f64 * self.slow_sum;
            self.restart = t + 1 + self.block;
        } else {
            let (df, ds) = (new - close[t - f], new - close[t - s]);
            self.fast_sum += df;
            self.slow_sum += ds;
            self.fast_err += df.abs() + self.fast_sum.abs();
            self.slow_err += ds.abs() + self.slow_sum.abs();
        }
        let (fast, slow) = (self.fast_sum / f as f64, self.slow_sum / s as f64);
        let spread = fast - slow;
        // Averages within their rounding error of each other are equal (flat when equal):
        // the bound is the sums' error bounds plus the divisions', at 2 units each.
        let noise = f64::EPSILON
            * (self.fast_err / f as f64 + self.slow_err / s as f64 + fast.abs() + slow.abs());
        Some(if spread.abs() <= noise { 0.0 } else { spread })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.close.len() - self.t;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Spread<'_> {}

/// Bars between fresh starts of [`MaCross::spread`]'s sliding sums.
pub const RESUM_BARS: usize = 4_096;

impl fmt::Display for MaCross {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ma-cross:{},{}", self.fast, self.slow)
    }
}

#[async_trait]
impl Signals for MaCross {
    fn describe(&self) -> String {
        self.to_string()
    }

    async fn predict(&self, bars: &Bars, from: usize) -> Result<Vec<f64>, SignalError> {
        Ok(self.spread_from(&bars.close, from))
    }
}

/// The feature rows of bars `from..n` (rows before [`WARMUP`] are skipped), row-major in the
/// order `names`, and the bar index of the first row.
fn feature_rows(bars: &Bars, from: usize, order: &[usize]) -> (Vec<f64>, usize) {
    let start = from.max(WARMUP);
    let cols = bars.columns();
    let mut rows = Vec::with_capacity(bars.len().saturating_sub(start) * order.len());
    for t in start..bars.len() {
        if let Some(row) = bar_features(cols, t) {
            rows.extend(order.iter().map(|&j| row[j]));
        }
    }
    (rows, start)
}

/// Positions in [`FEATURE_NAMES`] of the features a model reads, in its order.
fn feature_order(model: &str, names: &[String]) -> Result<Vec<usize>, SignalError> {
    names
        .iter()
        .map(|name| {
            FEATURE_NAMES.iter().position(|f| f == name).ok_or_else(|| {
                SignalError::UnknownFeature {
                    model: model.to_owned(),
                    feature: name.clone(),
                }
            })
        })
        .collect()
}

/// NaN for the warm-up bars, then `predictions`.
fn with_warmup(from: usize, start: usize, predictions: Vec<f64>) -> Vec<f64> {
    let mut out = vec![f64::NAN; start.saturating_sub(from)];
    out.extend(predictions);
    out
}

/// A model compiled in process: sanitised and predicted with the engine's own code, the
/// path the `/infer` handler takes, without JSON. Bit-identical to [`TargetModel`] on the
/// same engine (a test pins it).
pub struct EngineModel {
    model: Arc<Model>,
    order: Vec<usize>,
}

impl EngineModel {
    /// Wraps a compiled model.
    ///
    /// # Errors
    ///
    /// [`SignalError::UnknownFeature`] when it reads a feature the pipeline lacks.
    pub fn new(model: Arc<Model>) -> Result<Self, SignalError> {
        let order = feature_order(model.name(), model.feature_names())?;
        Ok(EngineModel { model, order })
    }
}

/// Rows per block of the in-process path: a few blocks per core, small enough for the cache.
const ENGINE_BLOCK_ROWS: usize = 16_384;

#[async_trait]
impl Signals for EngineModel {
    fn describe(&self) -> String {
        format!(
            "model {} version {} compiled in process (gauntlet-engine {})",
            self.model.name(),
            self.model.version(),
            gauntlet_engine::VERSION
        )
    }

    async fn predict(&self, bars: &Bars, from: usize) -> Result<Vec<f64>, SignalError> {
        let start = from.max(WARMUP).min(bars.len());
        let model = &self.model;
        let order = &self.order;
        // Blocks of bars, their features built inside the worker: the whole feature matrix
        // is never held at once.
        let blocks: Vec<(usize, usize)> = (start..bars.len())
            .step_by(ENGINE_BLOCK_ROWS)
            .map(|s| (s, (s + ENGINE_BLOCK_ROWS).min(bars.len())))
            .collect();
        let workers = std::thread::available_parallelism().map_or(1, |p| p.get());
        let per_worker = blocks.len().div_ceil(workers.max(1)).max(1);
        let results: Vec<Result<Vec<f64>, SignalError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = blocks
                .chunks(per_worker)
                .map(|group| {
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        let cols = bars.columns();
                        let mut raw = Vec::with_capacity(ENGINE_BLOCK_ROWS * order.len());
                        for &(s, e) in group {
                            raw.clear();
                            for t in s..e {
                                if let Some(row) = bar_features(cols, t) {
                                    raw.extend(order.iter().map(|&j| Some(row[j])));
                                }
                            }
                            let clean =
                                model.sanitise(&raw).map_err(|e| SignalError::BadReply {
                                    model: model.name().to_owned(),
                                    what: format!(
                                        "sanitiser rejected a feature row: {}",
                                        error_chain(&e)
                                    ),
                                })?;
                            out.extend(model.predict_batch(&clean.values));
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(SignalError::BadReply {
                            model: model.name().to_owned(),
                            what: "a prediction worker panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut predictions = Vec::with_capacity(bars.len() - start);
        for r in results {
            predictions.extend(r?);
        }
        Ok(with_warmup(from, start, predictions))
    }
}

/// A model behind any [`Target`]: OIP infer calls of `batch_rows` rows, `concurrency` at once.
pub struct TargetModel {
    target: Arc<dyn Target>,
    model: String,
    order: Vec<usize>,
    batch_rows: usize,
    concurrency: usize,
}

/// Default rows per infer call: 4,096 rows of 8 features stay well under a 1 MiB body.
pub const DEFAULT_BATCH_ROWS: usize = 4_096;
/// Default infer calls in flight.
pub const DEFAULT_CONCURRENCY: usize = 4;

impl TargetModel {
    /// Asks the target for the model's metadata (`GET /v2/models/{model}`) to learn the
    /// feature order. A server that does not list feature names is assumed to read
    /// [`FEATURE_NAMES`] in order when its input is `[-1, 8]`.
    ///
    /// # Errors
    ///
    /// [`SignalError`] when the model is not served or reads unknown features.
    pub async fn connect(
        target: Arc<dyn Target>,
        model: &str,
        batch_rows: usize,
        concurrency: usize,
    ) -> Result<Self, SignalError> {
        let fail = |reason: String| SignalError::Target {
            model: model.to_owned(),
            reason,
        };
        let reply = target
            .get(&format!("/v2/models/{model}"))
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        if reply.status != StatusCode::OK {
            return Err(SignalError::NotServed {
                model: model.to_owned(),
                status: reply.status.as_u16(),
            });
        }
        let meta: ModelMetadata = reply
            .json()
            .map_err(|e| fail(format!("model metadata is not OIP JSON: {e}")))?;
        let names = if meta.parameters.feature_names.is_empty() {
            FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            meta.parameters.feature_names.clone()
        };
        let order = feature_order(model, &names)?;
        Ok(TargetModel {
            target,
            model: model.to_owned(),
            order,
            batch_rows: batch_rows.max(1),
            concurrency: concurrency.max(1),
        })
    }

    async fn infer(&self, rows: &[f64]) -> Result<Vec<f64>, SignalError> {
        let n = self.order.len();
        let count = rows.len() / n;
        let request = InferRequest {
            inputs: vec![RequestInput {
                name: "features".into(),
                shape: vec![count as u64, n as u64],
                datatype: Datatype::Fp64,
                data: rows.iter().map(|v| Some(*v)).collect(),
            }],
            ..InferRequest::default()
        };
        let bad = |what: String| SignalError::BadReply {
            model: self.model.clone(),
            what,
        };
        let reply = self
            .target
            .infer_ok(&self.model, &request)
            .await
            .map_err(|e| SignalError::Target {
                model: self.model.clone(),
                reason: error_chain(&e),
            })?
            .map_err(|reply| bad(format!("infer answered {}: {}", reply.status, reply.text())))?;
        let output = reply
            .outputs
            .into_iter()
            .find(|o| o.name == "prediction")
            .ok_or_else(|| bad("infer response has no `prediction` output".into()))?;
        if output.data.len() != count {
            return Err(bad(format!(
                "infer returned {} predictions for {count} rows",
                output.data.len()
            )));
        }
        Ok(output.data)
    }
}

#[async_trait]
impl Signals for TargetModel {
    fn describe(&self) -> String {
        format!("model {} via {}", self.model, self.target.describe())
    }

    async fn predict(&self, bars: &Bars, from: usize) -> Result<Vec<f64>, SignalError> {
        let (rows, start) = feature_rows(bars, from, &self.order);
        let n = self.order.len();
        let width = n * self.batch_rows;
        let rows = &rows;
        let batches: Vec<Vec<f64>> = futures::stream::iter(0..rows.len().div_ceil(width.max(1)))
            .map(|i| self.infer(&rows[i * width..((i + 1) * width).min(rows.len())]))
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        Ok(with_warmup(from, start, batches.concat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ma_cross_spec_parses_and_rejects() {
        assert_eq!(
            MaCross::parse("ma-cross:10,50").unwrap(),
            MaCross { fast: 10, slow: 50 }
        );
        for bad in [
            "ma-cross:50,10",
            "ma-cross:0,5",
            "ma-cross:5",
            "sma:1,2",
            "ma-cross:a,5",
            "ma-cross:1,100001",
        ] {
            let e = MaCross::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    /// `SMA_fast − SMA_slow` at bar `t` from the window's prices themselves.
    fn direct_spread(close: &[f64], fast: usize, slow: usize, t: usize) -> f64 {
        let mean = |w: usize| close[t + 1 - w..=t].iter().sum::<f64>() / w as f64;
        mean(fast) - mean(slow)
    }

    #[test]
    fn ma_cross_spread_follows_prices_that_fall_by_orders_of_magnitude() {
        // Twenty orders of magnitude down, one for each restart of the sliding sums, with a
        // zigzag so the averages cross.
        let n = 20 * RESUM_BARS;
        let close: Vec<f64> = (0..n)
            .map(|i| {
                let level = 100.0 * 10f64.powf(-20.0 * i as f64 / n as f64);
                level * (1.0 + 0.1 * ((i as f64) * 0.15).sin())
            })
            .collect();
        let (fast, slow) = (10, 50);
        let s = MaCross { fast, slow }.spread(&close);
        assert_eq!(s.len(), n);
        assert!(s[..slow - 1].iter().all(|x| x.is_nan()));
        let positive = s.iter().filter(|x| **x > 0.0).count();
        assert!(
            positive > n / 4 && positive < 3 * n / 4,
            "{positive} of {n}"
        );
        // A sliding sum that never restarts, for contrast: its absolute error stays that of
        // the early prices of 100, so its late signs are noise.
        let (mut fs, mut ss) = (0.0_f64, 0.0_f64);
        let mut never_restarted_wrong = 0;
        for t in 0..n {
            fs += close[t] - if t >= fast { close[t - fast] } else { 0.0 };
            ss += close[t] - if t >= slow { close[t - slow] } else { 0.0 };
            if t + 1 < slow {
                continue;
            }
            let want = direct_spread(&close, fast, slow, t);
            let scale = close[t + 1 - slow..=t]
                .iter()
                .fold(0.0_f64, |m, x| m.max(*x));
            assert!(
                (s[t] - want).abs() <= 1e-12 * scale,
                "bar {t}: {} vs {want} (prices ~{scale:e})",
                s[t]
            );
            if want.abs() > 1e-10 * scale {
                assert_eq!(s[t] > 0.0, want > 0.0, "bar {t}: {} vs {want}", s[t]);
                let naive = fs / fast as f64 - ss / slow as f64;
                never_restarted_wrong += usize::from((naive > 0.0) != (want > 0.0));
            }
        }
        assert!(never_restarted_wrong > n / 10, "{never_restarted_wrong}");
    }

    /// Regression: averages of windows holding the same prices came out −1e-12 apart (the
    /// sliding sums' noise from earlier prices), so "flat when equal" never applied.
    #[test]
    fn ma_cross_averages_of_a_flat_stretch_are_exactly_equal() {
        let mut close: Vec<f64> = (0..3_000)
            .map(|i| 100.0 * (1.0 + 0.3 * ((i as f64) * 0.013).sin()) + (i % 7) as f64 * 0.1)
            .collect();
        close.extend(std::iter::repeat_n(87.3, 200));
        let ma = MaCross { fast: 10, slow: 50 };
        let s = ma.spread(&close);
        // Sliding sums compared without the tolerance are not equal there.
        let (mut fs, mut ss, mut unequal) = (0.0_f64, 0.0_f64, 0);
        for t in 0..close.len() {
            fs += close[t] - if t >= 10 { close[t - 10] } else { 0.0 };
            ss += close[t] - if t >= 50 { close[t - 50] } else { 0.0 };
            unequal += usize::from(t >= 3_049 && fs / 10.0 != ss / 50.0);
        }
        assert!(unequal > 0, "the data no longer shows the noise");
        for (t, x) in s.iter().enumerate().skip(3_049) {
            assert_eq!(*x, 0.0, "bar {t}");
        }
        assert!(s[3_000..3_049].iter().all(|x| *x != 0.0));
        // Sign sizing turns a tie into flat.
        assert_eq!(
            crate::exec::size_one(s[3_100], crate::exec::Sizing::default(), false),
            0.0
        );
    }

    /// `spread_from` starts at the last fresh start of the sums and gives `spread`'s bits
    /// from `from` on: before the first full window, on and next to fresh starts, for slow
    /// windows whose block is 4,096 bars and longer, and past the end.
    #[test]
    fn ma_cross_spread_from_is_the_tail_of_the_spread() {
        let bars = gauntlet_fixtures::generate_ohlcv_every(11, 30_000, 60).unwrap();
        let close = &bars.close;
        for m in [
            MaCross { fast: 3, slow: 7 },
            MaCross { fast: 10, slow: 50 },
            MaCross {
                fast: 100,
                slow: 1_000,
            },
        ] {
            let all = m.spread(close);
            let period = RESUM_BARS.max(8 * m.slow) + 1;
            let mut froms = vec![0, 1, m.slow - 2, m.slow - 1, m.slow, 29_000, 30_000, 40_000];
            for k in 1..=3 {
                let at = m.slow - 1 + k * period;
                froms.extend([at - 1, at, at + 1]);
            }
            for from in froms {
                let tail = m.spread_from(close, from);
                let want = &all[from.min(all.len())..];
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&tail), bits(want), "{m} from {from}");
            }
        }
        // Fewer bars than the slow window: all NaN, from anywhere.
        let short = MaCross { fast: 2, slow: 50 }.spread_from(&close[..20], 5);
        assert_eq!(short.len(), 15);
        assert!(short.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn ma_cross_spread_of_short_or_odd_inputs() {
        let close = [1.0, 2.0, 3.0];
        assert!(
            MaCross { fast: 2, slow: 5 }
                .spread(&close)
                .iter()
                .all(|x| x.is_nan())
        );
        assert!(
            MaCross { fast: 0, slow: 2 }
                .spread(&close)
                .iter()
                .all(|x| x.is_nan())
        );
        assert_eq!(MaCross { fast: 2, slow: 3 }.spread(&[]), Vec::<f64>::new());
        // A fast window longer than the slow one (not what `new` builds): still the
        // difference of the two averages, from the bar where both are full.
        let s = MaCross { fast: 3, slow: 2 }.spread(&close);
        assert!(s[1].is_nan());
        assert!((s[2] - (2.0 - 2.5)).abs() < 1e-12);
    }

    #[test]
    fn ma_cross_spread_by_hand() {
        let close = [1.0, 2.0, 3.0, 4.0, 3.0];
        let s = MaCross { fast: 2, slow: 3 }.spread(&close);
        assert!(s[0].is_nan() && s[1].is_nan());
        // t=2: (2+3)/2 − (1+2+3)/3 = 0.5; t=3: 3.5 − 3 = 0.5; t=4: 3.5 − 10/3.
        assert!((s[2] - 0.5).abs() < 1e-12);
        assert!((s[3] - 0.5).abs() < 1e-12);
        assert!((s[4] - (3.5 - 10.0 / 3.0)).abs() < 1e-12);
    }
}
