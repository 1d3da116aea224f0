//! The execution model: target positions in, per-bar strategy returns, held positions and
//! the trade list out.
//!
//! **BT-NOLOOK.** `target[t]` is the position decided at bar `t`'s close from data up to
//! that close. It is held over bar `t + 1`, never over bar `t`:
//!
//! - [`Fill::NextClose`] (default): the order fills at bar `t`'s close, the first price
//!   after the decision, and the position earns the close-to-close return of bar `t + 1`.
//! - [`Fill::NextOpen`]: the order fills at bar `t + 1`'s open; the old position still earns
//!   the overnight move `close[t] → open[t+1]`, the new one `open[t+1] → close[t+1]`.
//!
//! **BT-COST.** Each position change of size `|Δ|` multiplies equity by
//! `1 − (fees_bps + slippage_bps) / 10⁴ · |Δ|`: fees on traded value plus slippage, both
//! in basis points of the value traded.
//!
//! The strategy's return of bar `s ≥ 1` is therefore, with `p_old = target[s-2]`
//! (0 before the start) and `p_new = target[s-1]`,
//! `(1 + p_old·gap[s]) · (1 − cost·|p_new − p_old|) · (1 + p_new·move[s]) − 1`,
//! where `gap` is 0 and `move` close-to-close for `NextClose`, and `gap = open/close[s-1] − 1`,
//! `move = close/open − 1` for `NextOpen`. Bar 0 has no return: `n` bars give `n − 1` periods.

use std::fmt;

use serde::Deserialize;

/// When an order decided at a bar's close fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fill {
    /// At the deciding bar's close; the position is held over the next bar.
    #[default]
    NextClose,
    /// At the next bar's open.
    NextOpen,
}

impl fmt::Display for Fill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fill::NextClose => "next-close",
            Fill::NextOpen => "next-open",
        })
    }
}

impl std::str::FromStr for Fill {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "next-close" => Ok(Fill::NextClose),
            "next-open" => Ok(Fill::NextOpen),
            other => Err(format!("unknown fill {other:?} (next-close or next-open)")),
        }
    }
}

/// Trading costs, in basis points of traded value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Costs {
    /// Fees.
    pub fees_bps: f64,
    /// Slippage.
    pub slippage_bps: f64,
}

impl Costs {
    /// The equity fraction lost per unit of position traded.
    pub fn per_unit(&self) -> f64 {
        (self.fees_bps + self.slippage_bps) / 1e4
    }
}

/// How a prediction becomes a target position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sizing {
    /// `sign(prediction)`, flat when `|prediction| ≤ deadband`.
    Sign {
        /// Predictions this close to 0 mean flat.
        deadband: f64,
    },
    /// `prediction / scale`, clamped to [−1, 1].
    Scaled {
        /// The prediction that means a full position.
        scale: f64,
    },
}

impl Default for Sizing {
    fn default() -> Self {
        Sizing::Sign { deadband: 0.0 }
    }
}

/// Target positions in [−1, 1] (or [0, 1] when `long_only`) from predictions; a
/// non-finite prediction (no features yet) means flat.
pub fn size(predictions: &[f64], sizing: Sizing, long_only: bool) -> Vec<f64> {
    predictions
        .iter()
        .map(|&p| size_one(p, sizing, long_only))
        .collect()
}

/// The target position of one prediction, as [`size`] sizes it.
#[inline]
pub fn size_one(p: f64, sizing: Sizing, long_only: bool) -> f64 {
    let x = if !p.is_finite() {
        0.0
    } else {
        match sizing {
            Sizing::Sign { deadband } if p > deadband => 1.0,
            Sizing::Sign { deadband } if p < -deadband => -1.0,
            Sizing::Sign { .. } => 0.0,
            Sizing::Scaled { scale } => (p / scale).clamp(-1.0, 1.0),
        }
    };
    if long_only { x.max(0.0) } else { x }
}

/// One trade: a run of bars held in one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    /// Index of the bar whose close decided the entry.
    pub entry_bar: usize,
    /// Index of the last bar the position was held over.
    pub exit_bar: usize,
    /// +1 long, −1 short.
    pub direction: i8,
    /// Net return of the trade (costs of entering, resizing and leaving included).
    pub ret: f64,
    /// Whether the trade was still open at the end of the data.
    pub open: bool,
}

/// The result of executing target positions over bars.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Execution {
    /// Net strategy return of bars `1..n` (`n − 1` values).
    pub returns: Vec<f64>,
    /// The position held over each of bars `1..n`.
    pub held: Vec<f64>,
    /// Sum of `|Δposition|` over the run.
    pub traded: f64,
    /// Every trade, in order.
    pub trades: Vec<Trade>,
}

/// Executes `target` (one position per bar) over the bars' open and close prices.
///
/// `open`, `close` and `target` must have the same length; extra values are ignored.
pub fn execute(open: &[f64], close: &[f64], target: &[f64], fill: Fill, costs: Costs) -> Execution {
    execute_with(open, close, target, fill, costs, |p| p)
}

/// [`execute`] of `position(target[t])` at each bar, without materialising the positions:
/// sizing fused into the execution loop (the same arithmetic, one pass, one allocation less).
pub fn execute_with(
    open: &[f64],
    close: &[f64],
    target: &[f64],
    fill: Fill,
    costs: Costs,
    position: impl Fn(f64) -> f64,
) -> Execution {
    let n = close.len().min(open.len()).min(target.len());
    let periods = n.saturating_sub(1);
    let mut out = Execution {
        returns: Vec::with_capacity(periods),
        held: Vec::with_capacity(periods),
        traded: 0.0,
        trades: Vec::new(),
    };
    let mut stepper = Stepper::new(open, close, fill, costs);
    for (s, &t) in (1..n).zip(target) {
        let p_new = position(t);
        let bar = stepper.step(s, p_new);
        out.traded += bar.delta;
        out.returns.push(bar.ret);
        out.held.push(p_new);
        if let Some(closed) = bar.closed {
            out.trades.push(closed);
        }
    }
    out.trades.extend(stepper.finish());
    out
}

/// The execution model one bar at a time: what [`execute_with`] and the streaming metrics
/// (`sweep::run_metrics`) share.
pub(crate) struct Stepper<'a> {
    open: &'a [f64],
    close: &'a [f64],
    fill: Fill,
    cost: f64,
    p_old: f64,
    /// The open trade and its growth factor so far: one multiplication a bar while it lasts
    /// (the loop's only chain besides the position), its return `growth − 1` taken at exit.
    current: Option<(Trade, f64)>,
}

/// One bar of a [`Stepper`].
pub(crate) struct Bar {
    /// Net return of the bar.
    pub ret: f64,
    /// `|Δposition|`.
    pub delta: f64,
    /// The trade the bar closed, if any.
    pub closed: Option<Trade>,
}

impl<'a> Stepper<'a> {
    pub(crate) fn new(open: &'a [f64], close: &'a [f64], fill: Fill, costs: Costs) -> Self {
        Stepper {
            open,
            close,
            fill,
            cost: costs.per_unit(),
            p_old: 0.0,
            current: None,
        }
    }

    /// Bar `s` (≥ 1, below both price columns' lengths) held at `p_new`, decided at bar
    /// `s − 1`'s close.
    #[inline]
    pub(crate) fn step(&mut self, s: usize, p_new: f64) -> Bar {
        let (open, close, cost, p_old) = (self.open, self.close, self.cost, self.p_old);
        let (gap, mv) = match self.fill {
            Fill::NextClose => (0.0, close[s] / close[s - 1] - 1.0),
            Fill::NextOpen => (open[s] / close[s - 1] - 1.0, close[s] / open[s] - 1.0),
        };
        let delta = (p_new - p_old).abs();
        let before = 1.0 + p_old * gap;
        let after = 1.0 + p_new * mv;
        let factor = before * (1.0 - cost * delta) * after;
        let mut closed = None;
        let same_side = p_old != 0.0 && p_new != 0.0 && (p_old > 0.0) == (p_new > 0.0);
        if same_side {
            if let Some((t, growth)) = self.current.as_mut() {
                *growth *= factor;
                t.exit_bar = s;
            }
        } else {
            if let Some((mut t, growth)) = self.current.take() {
                t.ret = growth * before * (1.0 - cost * p_old.abs()) - 1.0;
                t.open = false;
                closed = Some(t);
            }
            if p_new != 0.0 {
                let trade = Trade {
                    entry_bar: s - 1,
                    exit_bar: s,
                    direction: if p_new > 0.0 { 1 } else { -1 },
                    ret: 0.0,
                    open: true,
                };
                self.current = Some((trade, (1.0 - cost * p_new.abs()) * after));
            }
        }
        self.p_old = p_new;
        Bar {
            ret: factor - 1.0,
            delta,
            closed,
        }
    }

    /// The trade still open after the last bar, marked open.
    pub(crate) fn finish(self) -> Option<Trade> {
        self.current.map(|(mut t, growth)| {
            t.ret = growth - 1.0;
            t
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOSE: [f64; 5] = [100.0, 110.0, 99.0, 99.0, 108.9];
    const OPEN: [f64; 5] = [100.0, 105.0, 100.0, 99.0, 100.0];

    fn close_to(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn position_from_bar_t_earns_bar_t_plus_one() {
        // Long decided at bar 0's close earns bar 1 (+10 %), flat afterwards.
        let e = execute(
            &OPEN,
            &CLOSE,
            &[1.0, 0.0, 0.0, 0.0, 0.0],
            Fill::NextClose,
            Costs::default(),
        );
        assert_eq!(e.held, vec![1.0, 0.0, 0.0, 0.0]);
        assert!(close_to(e.returns[0], 0.1));
        assert_eq!(&e.returns[1..], &[0.0, 0.0, 0.0]);
        // A long decided at the last bar is never held.
        let e = execute(
            &OPEN,
            &CLOSE,
            &[0.0, 0.0, 0.0, 0.0, 1.0],
            Fill::NextClose,
            Costs::default(),
        );
        assert!(e.returns.iter().all(|r| *r == 0.0));
        assert!(e.trades.is_empty());
    }

    #[test]
    fn costs_are_charged_multiplicatively_on_each_change() {
        // 10 bps fees + 5 bps slippage; long at bar 0, flip short at bar 1, flat at bar 2.
        let costs = Costs {
            fees_bps: 10.0,
            slippage_bps: 5.0,
        };
        let e = execute(
            &OPEN,
            &CLOSE,
            &[1.0, -1.0, 0.0, 0.0, 0.0],
            Fill::NextClose,
            costs,
        );
        let c = 0.0015;
        assert!(close_to(e.returns[0], (1.0 - c) * 1.1 - 1.0));
        // Flip: |Δ| = 2; short over bar 2 (−10 %) earns +10 %.
        assert!(close_to(e.returns[1], (1.0 - 2.0 * c) * 1.1 - 1.0));
        // Close the short: |Δ| = 1, flat over bar 3.
        assert!(close_to(e.returns[2], -c));
        assert_eq!(e.returns[3], 0.0);
        assert_eq!(e.traded, 4.0);
        assert_eq!(e.trades.len(), 2);
        assert_eq!((e.trades[0].entry_bar, e.trades[0].exit_bar), (0, 1));
        assert!(close_to(e.trades[0].ret, (1.0 - c) * 1.1 * (1.0 - c) - 1.0));
        assert_eq!(e.trades[1].direction, -1);
        assert!(close_to(e.trades[1].ret, (1.0 - c) * 1.1 * (1.0 - c) - 1.0));
        assert!(!e.trades[1].open);
    }

    #[test]
    fn next_open_fill_splits_the_bar() {
        // Long decided at bar 0, filled at bar 1's open (105): earns 110/105 − 1 in bar 1.
        let e = execute(
            &OPEN,
            &CLOSE,
            &[1.0, 0.0, 0.0, 0.0, 0.0],
            Fill::NextOpen,
            Costs::default(),
        );
        assert!(close_to(e.returns[0], 110.0 / 105.0 - 1.0));
        // Flat from bar 2's open (100): the long still earns the move into it, 100/110 − 1.
        assert!(close_to(e.returns[1], 100.0 / 110.0 - 1.0));
        assert!(close_to(e.returns[2], 0.0));
        assert_eq!(e.trades.len(), 1);
        assert!(close_to(e.trades[0].ret, 100.0 / 105.0 - 1.0));
    }

    #[test]
    fn sizing_and_long_only() {
        let p = [0.3, -0.2, 0.0, f64::NAN, 2.0];
        assert_eq!(
            size(&p, Sizing::default(), false),
            vec![1.0, -1.0, 0.0, 0.0, 1.0]
        );
        assert_eq!(
            size(&p, Sizing::default(), true),
            vec![1.0, 0.0, 0.0, 0.0, 1.0]
        );
        assert_eq!(
            size(&p, Sizing::Sign { deadband: 0.25 }, false),
            vec![1.0, 0.0, 0.0, 0.0, 1.0]
        );
        assert_eq!(
            size(&p, Sizing::Scaled { scale: 0.5 }, false),
            vec![0.6, -0.4, 0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn open_trade_at_the_end_is_listed_as_open() {
        let e = execute(
            &OPEN,
            &CLOSE,
            &[0.0, 0.0, 1.0, 1.0, 1.0],
            Fill::NextClose,
            Costs::default(),
        );
        assert_eq!(e.trades.len(), 1);
        assert!(e.trades[0].open);
        assert!(close_to(e.trades[0].ret, 108.9 / 99.0 - 1.0));
    }
}
