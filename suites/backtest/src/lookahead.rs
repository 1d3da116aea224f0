//! The look-ahead detector (BT-NOLOOK): rerun the signal pipeline on the data truncated at
//! seeded random points and require the predictions before each cut to be bit-identical
//! to the full run's. A feature or strategy that reads a later bar changes its value at the
//! bar before the cut, where that later bar no longer exists.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::Bars;
use crate::signals::{SignalError, Signals};

/// Bars before each cut that are compared (the pipeline still sees the whole prefix).
pub const WINDOW: usize = 256;

/// A prediction that changed when later data was removed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mismatch {
    /// The data was cut to bars `0..cut`.
    pub cut: usize,
    /// The bar whose prediction changed.
    pub bar: usize,
    /// The prediction with all data.
    pub full: f64,
    /// The prediction with the data cut.
    pub truncated: f64,
}

/// The detector's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LookaheadReport {
    /// The cut points tried.
    pub cuts: Vec<usize>,
    /// Predictions compared in all.
    pub compared: usize,
    /// The first prediction that changed, if any.
    pub mismatch: Option<Mismatch>,
}

/// `count` distinct cut points in `min_len..n` from `seed` (fewer when the range is small),
/// always including `n − 1`.
pub fn cut_points(seed: u64, n: usize, min_len: usize, count: usize) -> Vec<usize> {
    if n <= min_len + 1 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cuts = vec![n - 1];
    for _ in 0..count.saturating_mul(4) {
        if cuts.len() >= count {
            break;
        }
        let c = rng.random_range(min_len..n - 1);
        if !cuts.contains(&c) {
            cuts.push(c);
        }
    }
    cuts.sort_unstable();
    cuts
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Compares `full` (the predictions for every bar) with predictions made on `bars[..cut]`
/// for each cut, over the [`WINDOW`] bars before it.
///
/// # Errors
///
/// The signal source's error.
pub async fn check(
    signals: &dyn Signals,
    bars: &Bars,
    full: &[f64],
    cuts: &[usize],
) -> Result<LookaheadReport, SignalError> {
    // Every prefix from one copy of the bars, cut shorter from the longest cut down: the
    // same bars as a copy per cut, without copying up to every column once a cut (6 × up
    // to 48 MB at 1M bars was most of the detector's time).
    let mut longest_first: Vec<usize> = (0..cuts.len()).collect();
    longest_first.sort_by_key(|&i| std::cmp::Reverse(cuts[i]));
    let mut runs: Vec<Option<Result<Vec<f64>, SignalError>>> =
        std::iter::repeat_with(|| None).take(cuts.len()).collect();
    let mut prefix: Option<Bars> = None;
    for i in longest_first {
        let cut = cuts[i];
        let prefix = match prefix.as_mut() {
            Some(p) => {
                truncate(p, cut);
                p
            }
            None => prefix.insert(bars.slice(0..cut)),
        };
        runs[i] = Some(signals.predict(prefix, cut.saturating_sub(WINDOW)).await);
    }
    drop(prefix);
    // Compared in the order of the cuts: the first mismatch (or error) is the one reported.
    let mut compared = 0;
    for (&cut, run) in cuts.iter().zip(runs) {
        let from = cut.saturating_sub(WINDOW);
        let Some(truncated) = run else { continue };
        let truncated = truncated?;
        for (i, &t) in truncated.iter().enumerate() {
            let bar = from + i;
            let f = full.get(bar).copied().unwrap_or(f64::NAN);
            compared += 1;
            if !same(f, t) {
                return Ok(LookaheadReport {
                    cuts: cuts.to_vec(),
                    compared,
                    mismatch: Some(Mismatch {
                        cut,
                        bar,
                        full: f,
                        truncated: t,
                    }),
                });
            }
        }
        if truncated.len() != cut - from {
            return Ok(LookaheadReport {
                cuts: cuts.to_vec(),
                compared,
                mismatch: Some(Mismatch {
                    cut,
                    bar: from + truncated.len(),
                    full: full
                        .get(from + truncated.len())
                        .copied()
                        .unwrap_or(f64::NAN),
                    truncated: f64::NAN,
                }),
            });
        }
    }
    Ok(LookaheadReport {
        cuts: cuts.to_vec(),
        compared,
        mismatch: None,
    })
}

/// `bars` cut to its first `len` bars (as [`Bars::slice`] of `0..len`).
fn truncate(bars: &mut Bars, len: usize) {
    bars.ts_ns.truncate(len);
    for column in [
        &mut bars.open,
        &mut bars.high,
        &mut bars.low,
        &mut bars.close,
        &mut bars.volume,
    ] {
        column.truncate(len);
    }
}
