//! Overfitting guards (BT-DSR), after Bailey & López de Prado.
//!
//! All Sharpe ratios here are **per period** (not annualised) and the kurtosis is **raw**
//! (3 for a normal distribution): the variance of the Sharpe estimator is
//! `(1 − γ₃·SR + (γ₄ − 1)/4 · SR²) / (T − 1)`. Several libraries plug the excess kurtosis
//! into `γ₄` here, which understates the variance by `SR²/2 · …`; the tests pin the raw form.
//!
//! - [`psr`]: Probabilistic Sharpe Ratio, `P[SR_true > SR*]`.
//! - [`expected_max_sharpe`] and [`dsr`]: the Deflated Sharpe Ratio, the PSR against the
//!   Sharpe ratio the best of `N` unskilled trials would reach by luck.
//! - [`min_track_record`]: the Minimum Track Record Length.
//! - [`pbo`]: the Probability of Backtest Overfitting by combinatorially symmetric
//!   cross-validation (CSCV) over per-block statistics of every trial.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::metrics::Moments;

/// The Euler–Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

fn normal() -> Normal {
    Normal::standard()
}

/// `Φ(x)`.
pub fn norm_cdf(x: f64) -> f64 {
    normal().cdf(x)
}

/// `Φ⁻¹(p)`.
pub fn norm_ppf(p: f64) -> f64 {
    normal().inverse_cdf(p)
}

/// The denominator term `1 − γ₃·SR + (γ₄ − 1)/4 · SR²` (raw kurtosis), floored above 0.
fn sharpe_variance_term(sharpe: f64, skew: f64, kurtosis: f64) -> f64 {
    (1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe).max(1e-12)
}

/// Probabilistic Sharpe Ratio: the probability that the true per-period Sharpe ratio
/// exceeds `benchmark`, given the estimate's moments over `n` periods.
pub fn psr(m: &Moments, benchmark: f64) -> f64 {
    if m.n < 2 {
        return 0.0;
    }
    let z = (m.sharpe - benchmark) * ((m.n - 1) as f64).sqrt()
        / sharpe_variance_term(m.sharpe, m.skew, m.kurtosis).sqrt();
    norm_cdf(z)
}

/// The per-period Sharpe ratio the best of `trials` independent unskilled trials reaches in
/// expectation, given the variance of the trials' Sharpe ratios:
/// `√V · ((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))`; 0 for a single trial.
pub fn expected_max_sharpe(trials: u64, sharpe_variance: f64) -> f64 {
    if trials <= 1 {
        return 0.0;
    }
    let n = trials as f64;
    sharpe_variance.max(0.0).sqrt()
        * ((1.0 - EULER_GAMMA) * norm_ppf(1.0 - 1.0 / n)
            + EULER_GAMMA * norm_ppf(1.0 - 1.0 / (n * std::f64::consts::E)))
}

/// The variance of the per-period Sharpe estimator itself, for when only the number of
/// trials is known: `(1 − γ₃·SR + (γ₄ − 1)/4 · SR²) / (T − 1)`.
pub fn estimator_variance(m: &Moments) -> f64 {
    sharpe_variance_term(m.sharpe, m.skew, m.kurtosis) / (m.n.max(2) - 1) as f64
}

/// The Deflated Sharpe Ratio and what went into it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Deflated {
    /// Number of trials `N`.
    pub trials: u64,
    /// Variance of the trials' per-period Sharpe ratios.
    pub sharpe_variance: f64,
    /// `SR₀`, the expected maximum per-period Sharpe of `N` unskilled trials.
    pub benchmark: f64,
    /// The DSR, `PSR(SR₀)`.
    pub dsr: f64,
}

/// The DSR of a strategy with moments `m` chosen as the best of `trials` trials whose
/// per-period Sharpe ratios vary with `sharpe_variance`.
pub fn dsr(m: &Moments, trials: u64, sharpe_variance: f64) -> Deflated {
    let benchmark = expected_max_sharpe(trials, sharpe_variance);
    Deflated {
        trials,
        sharpe_variance,
        benchmark,
        dsr: psr(m, benchmark),
    }
}

/// Minimum Track Record Length: periods needed for `PSR(benchmark) ≥ confidence`;
/// `None` when the Sharpe ratio does not beat the benchmark at all.
pub fn min_track_record(m: &Moments, benchmark: f64, confidence: f64) -> Option<f64> {
    if m.sharpe <= benchmark {
        return None;
    }
    let z = norm_ppf(confidence);
    Some(
        1.0 + sharpe_variance_term(m.sharpe, m.skew, m.kurtosis)
            * (z / (m.sharpe - benchmark)).powi(2),
    )
}

/// Count, sum and sum of squares of one block of per-period returns.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct BlockStats {
    /// Periods.
    pub n: usize,
    /// Sum of returns.
    pub sum: f64,
    /// Sum of squared returns.
    pub sum_sq: f64,
}

impl BlockStats {
    /// Stats of `returns` split into `blocks` contiguous blocks of near-equal size.
    pub fn split(returns: &[f64], blocks: usize) -> Vec<BlockStats> {
        let blocks = blocks.max(1);
        let len = returns.len();
        (0..blocks)
            .map(|b| {
                let part = &returns[b * len / blocks..(b + 1) * len / blocks];
                BlockStats {
                    n: part.len(),
                    sum: part.iter().sum(),
                    sum_sq: part.iter().map(|r| r * r).sum(),
                }
            })
            .collect()
    }

    fn add(&mut self, other: &BlockStats) {
        self.n += other.n;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
    }

    /// Per-period Sharpe ratio (sample sd); 0 when it does not vary.
    pub fn sharpe(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq - n * mean * mean) / (n - 1.0);
        if var > 0.0 { mean / var.sqrt() } else { 0.0 }
    }
}

/// The outcome of CSCV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pbo {
    /// Probability of backtest overfitting: the share of splits where the in-sample best
    /// trial ranks at or below the out-of-sample median (`λ ≤ 0`).
    pub pbo: f64,
    /// Number of in-sample/out-of-sample splits, `C(S, S/2)`.
    pub splits: usize,
    /// Number of trials.
    pub trials: usize,
    /// Number of blocks `S`.
    pub blocks: usize,
    /// Every split's logit `λ = ln(ω / (1 − ω))` of the best trial's relative OOS rank.
    pub logits: Vec<f64>,
}

/// Most CSCV blocks PBO takes: C(24, 12) = 2,704,156 splits, each ranking every trial.
pub const MAX_PBO_BLOCKS: usize = 24;

/// Why CSCV cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PboError {
    /// Fewer than two trials.
    #[error("PBO needs at least 2 trials, got {0}")]
    TooFewTrials(usize),
    /// An odd, too small or too large number of blocks.
    #[error("PBO needs an even number of blocks from 2 to {MAX_PBO_BLOCKS}, got {0}")]
    Blocks(usize),
    /// Trials with different block counts.
    #[error("trial {trial} has {got} blocks, expected {expected}")]
    Ragged {
        /// The trial.
        trial: usize,
        /// Its block count.
        got: usize,
        /// The first trial's.
        expected: usize,
    },
}

/// PBO by CSCV over `trials[i][b]`, the block stats of trial `i` on block `b`; performance
/// is the per-period Sharpe ratio. Memory is `O(trials × blocks)`: the returns themselves
/// are never held (Bailey, Borwein, López de Prado & Zhu, 2017).
///
/// # Errors
///
/// [`PboError`] for fewer than 2 trials or a bad block count.
pub fn pbo(trials: &[Vec<BlockStats>]) -> Result<Pbo, PboError> {
    let n_trials = trials.len();
    if n_trials < 2 {
        return Err(PboError::TooFewTrials(n_trials));
    }
    let s = trials[0].len();
    if s < 2 || s % 2 == 1 || s > MAX_PBO_BLOCKS {
        return Err(PboError::Blocks(s));
    }
    if let Some((i, t)) = trials.iter().enumerate().find(|(_, t)| t.len() != s) {
        return Err(PboError::Ragged {
            trial: i,
            got: t.len(),
            expected: s,
        });
    }
    let mut logits = Vec::new();
    let mut is_sharpe = vec![0.0; n_trials];
    let mut oos_sharpe = vec![0.0; n_trials];
    for mask in 0u32..(1 << s) {
        if mask.count_ones() as usize != s / 2 {
            continue;
        }
        for (i, blocks) in trials.iter().enumerate() {
            let (mut is, mut oos) = (BlockStats::default(), BlockStats::default());
            for (b, stats) in blocks.iter().enumerate() {
                if mask & (1 << b) != 0 {
                    is.add(stats);
                } else {
                    oos.add(stats);
                }
            }
            is_sharpe[i] = is.sharpe();
            oos_sharpe[i] = oos.sharpe();
        }
        let best = (0..n_trials)
            .max_by(|&a, &b| is_sharpe[a].total_cmp(&is_sharpe[b]))
            .unwrap_or(0);
        let below = oos_sharpe.iter().filter(|v| **v < oos_sharpe[best]).count();
        let omega = (below + 1) as f64 / (n_trials + 1) as f64;
        logits.push((omega / (1.0 - omega)).ln());
    }
    let overfit = logits.iter().filter(|l| **l <= 0.0).count();
    Ok(Pbo {
        pbo: overfit as f64 / logits.len() as f64,
        splits: logits.len(),
        trials: n_trials,
        blocks: s,
        logits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(n: usize, sharpe: f64, skew: f64, kurtosis: f64) -> Moments {
        Moments {
            n,
            mean: sharpe,
            sd: 1.0,
            sharpe,
            skew,
            kurtosis,
        }
    }

    /// The worked example of Bailey & López de Prado (2014), "The Deflated Sharpe Ratio",
    /// section 4: annualised SR 2.5 over 5 years of daily returns (T = 1250, 250 a year),
    /// skewness −3, raw kurtosis 10, N = 100 trials whose annualised Sharpe ratios vary
    /// by V = 1/2. The paper reports SR₀ ≈ 0.1132 per day and DSR ≈ 0.9004.
    #[test]
    fn dsr_worked_example_from_the_paper() {
        let sr = 2.5 / 250f64.sqrt();
        let m = moments(1250, sr, -3.0, 10.0);
        let d = dsr(&m, 100, 0.5 / 250.0);
        // By hand: √0.002 · (0.42278 · 2.32635 + 0.57722 · Φ⁻¹(1 − 1/(100e)) = 2.68160).
        assert!((d.benchmark - 0.1132).abs() < 5e-4, "SR0 {}", d.benchmark);
        assert!((d.dsr - 0.9004).abs() < 1e-3, "DSR {}", d.dsr);
        // With the excess kurtosis (7) plugged in by mistake the answer moves.
        let wrong = dsr(&moments(1250, sr, -3.0, 7.0), 100, 0.5 / 250.0);
        assert!(
            (wrong.dsr - d.dsr).abs() > 5e-4,
            "{} vs {}",
            wrong.dsr,
            d.dsr
        );
    }

    /// PSR by hand: SR 0.1 over T = 101, normal moments (skew 0, raw kurtosis 3):
    /// z = 0.1 · √100 / √(1 + 0.5 · 0.01) = 1 / √1.005 = 0.997509…, Φ(z) = 0.84073…
    #[test]
    fn psr_by_hand_with_raw_kurtosis() {
        let p = psr(&moments(101, 0.1, 0.0, 3.0), 0.0);
        let z = 1.0 / 1.005f64.sqrt();
        assert!((p - norm_cdf(z)).abs() < 1e-15);
        assert!((p - 0.840_73).abs() < 1e-4, "{p}");
        // Excess kurtosis (0) would give z = 1/√0.9975 instead: a different number.
        assert!((psr(&moments(101, 0.1, 0.0, 0.0), 0.0) - p).abs() > 5e-4);
    }

    /// MinTRL by hand: SR 0.1, benchmark 0, normal moments, 95 %:
    /// 1 + 1.005 · (1.644854 / 0.1)² = 272.91…
    #[test]
    fn min_track_record_by_hand() {
        let t = min_track_record(&moments(500, 0.1, 0.0, 3.0), 0.0, 0.95).unwrap();
        assert!((t - (1.0 + 1.005 * (1.644_853_626_951_472_2_f64 / 0.1).powi(2))).abs() < 1e-9);
        assert!((t - 272.91).abs() < 0.01, "{t}");
        assert_eq!(
            min_track_record(&moments(500, 0.1, 0.0, 3.0), 0.2, 0.95),
            None
        );
        // At exactly MinTRL periods the PSR is the confidence.
        let m = moments(t.round() as usize, 0.1, 0.0, 3.0);
        assert!((psr(&m, 0.0) - 0.95).abs() < 2e-3);
    }

    #[test]
    fn one_trial_is_not_deflated() {
        let m = moments(1000, 0.05, 0.0, 3.0);
        assert_eq!(expected_max_sharpe(1, 1.0), 0.0);
        assert_eq!(dsr(&m, 1, 0.3).dsr, psr(&m, 0.0));
        // More trials, higher bar, lower DSR.
        assert!(
            dsr(&m, 1000, estimator_variance(&m)).dsr < dsr(&m, 10, estimator_variance(&m)).dsr
        );
    }

    #[test]
    fn block_stats_merge_to_the_whole() {
        let r = [0.01, -0.02, 0.03, 0.0, 0.015, -0.005, 0.02];
        let blocks = BlockStats::split(&r, 3);
        assert_eq!(blocks.iter().map(|b| b.n).sum::<usize>(), 7);
        let mut all = BlockStats::default();
        for b in &blocks {
            all.add(b);
        }
        let m = Moments::of(&r, 0.0);
        assert!((all.sharpe() - m.sharpe).abs() < 1e-12);
    }

    #[test]
    fn pbo_is_low_when_the_best_trial_is_best_everywhere() {
        // Trial i has mean 0.001·i on every block, same spread: the IS best is the OOS best.
        let trials: Vec<Vec<BlockStats>> = (0..10)
            .map(|i| {
                let r: Vec<f64> = (0..800)
                    .map(|k| 0.001 * i as f64 + if k % 2 == 0 { 0.01 } else { -0.01 })
                    .collect();
                BlockStats::split(&r, 8)
            })
            .collect();
        let p = pbo(&trials).unwrap();
        assert_eq!(p.splits, 70);
        assert_eq!(p.pbo, 0.0);
    }

    #[test]
    fn pbo_is_high_when_in_sample_skill_reverses() {
        // Trial i is good on the even blocks exactly when it is bad on the odd ones, and the
        // other way round: what looks best in sample is worst out of sample.
        let trials: Vec<Vec<BlockStats>> = (0..6)
            .map(|i| {
                let tilt = (i as f64 - 2.5) * 0.002;
                let r: Vec<f64> = (0..1200)
                    .map(|k| {
                        let block = k / 100;
                        let sign = if block % 2 == 0 { 1.0 } else { -1.0 };
                        sign * tilt + if k % 2 == 0 { 0.01 } else { -0.01 }
                    })
                    .collect();
                BlockStats::split(&r, 12)
            })
            .collect();
        let p = pbo(&trials).unwrap();
        assert!(p.pbo > 0.5, "{}", p.pbo);
    }

    #[test]
    fn pbo_rejects_bad_input() {
        assert_eq!(
            pbo(&[vec![BlockStats::default(); 4]]),
            Err(PboError::TooFewTrials(1))
        );
        assert_eq!(
            pbo(&[
                vec![BlockStats::default(); 3],
                vec![BlockStats::default(); 3]
            ]),
            Err(PboError::Blocks(3))
        );
        assert!(matches!(
            pbo(&[
                vec![BlockStats::default(); 4],
                vec![BlockStats::default(); 2]
            ]),
            Err(PboError::Ragged { trial: 1, .. })
        ));
    }
}
