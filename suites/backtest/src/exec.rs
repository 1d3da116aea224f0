//! The execution model: target positions in, per-bar strategy returns, held positions and
//! the trade list out.
//!
//! **Accounting.** The account starts with cash 1 and no units; its equity at a price `P` is
//! `cash + units · P`. An order of `q` units (`q > 0` buys) fills at the *adjusted* price
//! `P · (1 ± slippage)` (up for buys, down for sells) and pays `fees · |q| · adjusted price`:
//! fees and slippage are charged on traded notional, the way vectorbt's `from_signals` and
//! backtesting.py charge them.
//!
//! **Positions.** A target in [−1, 1] is a fraction of equity. With [`PositionModel::Units`]
//! (default) the account trades only when the target changes and holds its units unchanged in
//! between (vectorbt, backtesting.py, zipline, LEAN): a change of side first closes the whole
//! position, then, from flat, buys (or sells short) `|target| · cash / (adjusted price ·
//! (1 + fees))` units, the size that spends that share of equity with its fees; a change within
//! one side trades to `target · equity / P` units. With [`PositionModel::TargetWeight`] the
//! account trades back to `target · equity` on every bar (a constant fraction, rebalanced), and
//! every such rebalancing trade pays fees and slippage and counts in turnover.
//!
//! **BT-NOLOOK.** `target[t]` is decided at bar `t`'s close from data up to that close:
//!
//! - [`Fill::NextClose`] (default): the order fills at bar `t`'s close, the first price after
//!   the decision; its costs fall in bar `t`'s return (as in vectorbt, where the equity at a
//!   close is after that close's trades), and the new units earn bar `t + 1`'s move. A target
//!   decided at the last bar is not traded (no bar is left to hold it over); one decided at
//!   bar 0 is traded from the initial equity 1, its costs falling in bar 1's return.
//! - [`Fill::NextOpen`]: the order fills at bar `t + 1`'s open; the old units still earn the
//!   overnight move `close[t] → open[t+1]`.
//!
//! Bar 0 has no return: `n` bars give `n − 1` periods, the return of bar `s` being
//! `equity(close[s]) / equity(close[s−1]) − 1` with each equity after that close's trades.
//!
//! **Trades.** A trade is a run of one side; its return is its profit (all its fills' cash
//! flows, fees included, plus the units still held at the last close when it is open) over the
//! entry's notional `units · entry price` — vectorbt's `Trades.returns`. A trade whose fills
//! net to zero has return 0 and is not a win.

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

/// How a target fraction of equity becomes a holding over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionModel {
    /// Units bought or sold when the target changes, held unchanged in between.
    #[default]
    Units,
    /// Traded back to the target fraction of equity on every bar (each rebalancing charged).
    TargetWeight,
}

impl fmt::Display for PositionModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PositionModel::Units => "units",
            PositionModel::TargetWeight => "target-weight",
        })
    }
}

impl std::str::FromStr for PositionModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "units" => Ok(PositionModel::Units),
            "target-weight" => Ok(PositionModel::TargetWeight),
            other => Err(format!("unknown sizing {other:?} (units or target-weight)")),
        }
    }
}

/// Trading costs, in basis points of traded notional.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Costs {
    /// Fees, on the notional at the slipped fill price.
    pub fees_bps: f64,
    /// Slippage: buys fill this much above the price, sells below.
    pub slippage_bps: f64,
}

impl Costs {
    /// The fee rate (fraction of notional).
    pub fn fee_rate(&self) -> f64 {
        self.fees_bps / 1e4
    }

    /// The slippage rate (fraction of price).
    pub fn slippage_rate(&self) -> f64 {
        self.slippage_bps / 1e4
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

/// One trade: a run of bars held on one side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    /// The bar whose close (next-close) or open (next-open) the entry filled at.
    pub entry_bar: usize,
    /// The bar the exit filled at; the last bar for a trade still open.
    pub exit_bar: usize,
    /// +1 long, −1 short.
    pub direction: i8,
    /// Units entered (positive).
    pub units: f64,
    /// The entry's fill price, slippage included.
    pub entry_price: f64,
    /// The exit's fill price, slippage included; the last close for a trade still open.
    pub exit_price: f64,
    /// Fees paid on every fill of the trade, in equity units (the account starts at 1).
    pub fees: f64,
    /// Slippage paid on every fill: `|units| · price · slippage`, in equity units.
    pub slippage: f64,
    /// Profit over the entry notional `units · entry_price`.
    pub ret: f64,
    /// Whether the trade was still open at the end of the data.
    pub open: bool,
}

/// The result of executing target positions over bars.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Execution {
    /// Net strategy return of bars `1..n` (`n − 1` values).
    pub returns: Vec<f64>,
    /// The target position in effect over each of bars `1..n`.
    pub held: Vec<f64>,
    /// Notional traded in each of bars `1..n`, as fractions of equity.
    pub traded_by_bar: Vec<f64>,
    /// Notional traded over the run, each order as a fraction of the equity it traded from.
    pub traded: f64,
    /// Fees paid in all, in equity units (the account starts at 1).
    pub fees: f64,
    /// Slippage paid in all, in equity units.
    pub slippage: f64,
    /// Every trade, in order.
    pub trades: Vec<Trade>,
}

/// Executes `target` (one position per bar) over the bars' open and close prices.
///
/// `open`, `close` and `target` must have the same length; extra values are ignored.
pub fn execute(
    open: &[f64],
    close: &[f64],
    target: &[f64],
    fill: Fill,
    costs: Costs,
    model: PositionModel,
) -> Execution {
    execute_with(open, close, target, fill, costs, model, |p| p)
}

/// [`execute`] of `position(target[t])` at each bar, without materialising the positions:
/// sizing fused into the execution loop (the same arithmetic, one pass, one allocation less).
pub fn execute_with(
    open: &[f64],
    close: &[f64],
    target: &[f64],
    fill: Fill,
    costs: Costs,
    model: PositionModel,
    position: impl Fn(f64) -> f64,
) -> Execution {
    execute_iter(
        open,
        close,
        target.iter().copied(),
        fill,
        costs,
        model,
        position,
    )
}

/// [`execute_with`] of targets streamed rather than stored (e.g. a crossover's spread as it
/// is computed): the same execution, bit for bit, without the targets' column.
pub fn execute_iter<T>(
    open: &[f64],
    close: &[f64],
    target: T,
    fill: Fill,
    costs: Costs,
    model: PositionModel,
    position: impl Fn(f64) -> f64,
) -> Execution
where
    T: IntoIterator<Item = f64>,
    T::IntoIter: ExactSizeIterator,
{
    let target = target.into_iter();
    let n = close.len().min(open.len()).min(target.len());
    let periods = n.saturating_sub(1);
    let mut out = Execution {
        returns: Vec::with_capacity(periods),
        held: Vec::with_capacity(periods),
        traded_by_bar: Vec::with_capacity(periods),
        ..Execution::default()
    };
    let mut stepper = Stepper::new(open, close, fill, costs, model, periods);
    for (t, x) in target.take(n).enumerate() {
        if let Some(bar) = stepper.step(t, position(x)) {
            out.returns.push(bar.ret);
            out.held.push(bar.held);
            out.traded_by_bar.push(bar.traded);
            out.traded += bar.traded;
            if let Some(closed) = bar.closed {
                out.trades.push(closed);
            }
        }
    }
    let (open_trade, totals) = stepper.finish();
    out.fees = totals.fees;
    out.slippage = totals.slippage;
    out.trades.extend(open_trade);
    out
}

/// One bar of a [`Stepper`].
pub(crate) struct Bar {
    /// Net return of the bar.
    pub ret: f64,
    /// The target position in effect over the bar.
    pub held: f64,
    /// Notional the bar traded, as fractions of equity (a next-close fill at bar 0 counts in
    /// bar 1).
    pub traded: f64,
    /// The trade the bar closed, if any.
    pub closed: Option<Trade>,
}

/// What a run paid in all.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub fees: f64,
    pub slippage: f64,
}

/// The open trade: its record so far, its cash flows and its entry notional.
#[derive(Debug, Clone, Copy)]
struct OpenTrade {
    trade: Trade,
    flow: f64,
    entry_value: f64,
}

/// The execution model one bar at a time: what [`execute_with`] and the streaming metrics
/// (`sweep::run_metrics`) share.
pub(crate) struct Stepper<'a> {
    open: &'a [f64],
    close: &'a [f64],
    fill: Fill,
    model: PositionModel,
    fee: f64,
    slip: f64,
    /// The last bar: a next-close target decided there is not traded.
    last: usize,
    cash: f64,
    units: f64,
    /// Equity at the previous close, after its trades (1 before the first period).
    value: f64,
    /// The target the account last traded to.
    target: f64,
    /// A next-open target waiting for the open.
    pending: f64,
    current: Option<OpenTrade>,
    totals: Totals,
    /// Notional traded since the last bar returned.
    bar_traded: f64,
}

impl<'a> Stepper<'a> {
    /// A stepper over `periods` return periods (bars `0..=periods`).
    pub(crate) fn new(
        open: &'a [f64],
        close: &'a [f64],
        fill: Fill,
        costs: Costs,
        model: PositionModel,
        periods: usize,
    ) -> Self {
        Stepper {
            open,
            close,
            fill,
            model,
            fee: costs.fee_rate(),
            slip: costs.slippage_rate(),
            last: periods,
            cash: 1.0,
            units: 0.0,
            value: 1.0,
            target: 0.0,
            pending: 0.0,
            current: None,
            totals: Totals::default(),
            bar_traded: 0.0,
        }
    }

    /// Bar `t` (below both price columns' lengths, taken in order from 0) with the target
    /// decided at its close; the bar's period for `t ≥ 1`.
    ///
    /// Always inlined: called once a bar by the sweep, a call returned its `Bar` (with an
    /// optional trade, ~120 bytes) through memory and kept the account off the registers —
    /// a third of the 100-trial sweep's time (`perf`, suites/backtest/README.md, Figures).
    #[inline(always)]
    pub(crate) fn step(&mut self, t: usize, x: f64) -> Option<Bar> {
        let mut closed = None;
        let held;
        match self.fill {
            Fill::NextClose => {
                held = self.target;
                if t < self.last {
                    closed = self.rebalance(t, x, self.close[t]);
                }
                if t == 0 {
                    return None;
                }
            }
            Fill::NextOpen => {
                if t == 0 {
                    self.pending = x;
                    return None;
                }
                closed = self.rebalance(t, self.pending, self.open[t]);
                held = self.target;
                self.pending = x;
            }
        }
        let value = self.cash + self.units * self.close[t];
        let ret = value / self.value - 1.0;
        self.value = value;
        let traded = std::mem::take(&mut self.bar_traded);
        Some(Bar {
            ret,
            held,
            traded,
            closed,
        })
    }

    /// Trades to target `x` at price `p` on bar `t`; returns the trade it closed. The usual
    /// bar, with nothing to trade, is decided inline; the trade itself is out of line.
    #[inline(always)]
    fn rebalance(&mut self, t: usize, x: f64, p: f64) -> Option<Trade> {
        let x = if x.is_finite() { x } else { 0.0 };
        if x == self.target && (self.model == PositionModel::Units || x == 0.0) {
            return None;
        }
        self.trade_to(t, x, p)
    }

    /// [`Stepper::rebalance`] when the account trades: to finite target `x`.
    #[inline(never)]
    fn trade_to(&mut self, t: usize, x: f64, p: f64) -> Option<Trade> {
        self.target = x;
        let mut closed = None;
        let side = |v: f64| (v > 0.0) as i8 - (v < 0.0) as i8;
        if self.units != 0.0 && side(x) != side(self.units) {
            self.order(t, -self.units, p);
            self.units = 0.0;
            closed = self.current.take().map(|c| {
                let mut trade = c.trade;
                trade.ret = c.flow / c.entry_value;
                trade.open = false;
                trade
            });
        }
        // Flat, or nothing left to put up (a short that lost all the equity).
        if x == 0.0 || (self.units == 0.0 && self.cash <= 0.0) {
            return closed;
        }
        if self.units == 0.0 {
            let adj = p * (1.0 + f64::from(side(x)) * self.slip);
            let q = x.abs() * self.cash / (adj * (1.0 + self.fee)) * f64::from(side(x));
            self.current = Some(OpenTrade {
                trade: Trade {
                    entry_bar: t,
                    exit_bar: t,
                    direction: side(x),
                    units: q.abs(),
                    entry_price: adj,
                    exit_price: adj,
                    fees: 0.0,
                    slippage: 0.0,
                    ret: 0.0,
                    open: true,
                },
                flow: 0.0,
                entry_value: q.abs() * adj,
            });
            self.order(t, q, p);
        } else {
            let equity = self.cash + self.units * p;
            let q = x * equity / p - self.units;
            if q != 0.0 {
                self.order(t, q, p);
            }
        }
        closed
    }

    /// Fills `q` units at price `p` (slippage and fees charged) on bar `t`.
    #[inline]
    fn order(&mut self, t: usize, q: f64, p: f64) {
        let buy = q > 0.0;
        let adj = if buy {
            p * (1.0 + self.slip)
        } else {
            p * (1.0 - self.slip)
        };
        let fee = q.abs() * adj * self.fee;
        let slippage = q.abs() * p * self.slip;
        let equity = self.cash + self.units * p;
        let flow = -(q * adj) - fee;
        self.cash += flow;
        self.units += q;
        let traded = q.abs() * p / equity.abs().max(f64::MIN_POSITIVE);
        self.bar_traded += traded;
        self.totals.fees += fee;
        self.totals.slippage += slippage;
        if let Some(c) = self.current.as_mut() {
            c.flow += flow;
            c.trade.fees += fee;
            c.trade.slippage += slippage;
            c.trade.exit_bar = t;
            c.trade.exit_price = adj;
        }
    }

    /// The trade still open after the last bar (marked at the last close, no exit costs,
    /// as vectorbt marks its open trades) and what the run paid.
    pub(crate) fn finish(self) -> (Option<Trade>, Totals) {
        let last = self.last;
        let mark = self.close.get(last).copied().unwrap_or(f64::NAN);
        let units = self.units;
        let open = self.current.map(|c| {
            let mut trade = c.trade;
            trade.exit_bar = last;
            trade.exit_price = mark;
            trade.ret = (c.flow + units * mark) / c.entry_value;
            trade
        });
        (open, self.totals)
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

    fn units(target: &[f64], fill: Fill, costs: Costs) -> Execution {
        execute(&OPEN, &CLOSE, target, fill, costs, PositionModel::Units)
    }

    #[test]
    fn position_from_bar_t_earns_bar_t_plus_one() {
        // Long decided at bar 0's close earns bar 1 (+10 %), flat afterwards.
        let e = units(
            &[1.0, 0.0, 0.0, 0.0, 0.0],
            Fill::NextClose,
            Costs::default(),
        );
        assert_eq!(e.held, vec![1.0, 0.0, 0.0, 0.0]);
        assert!(close_to(e.returns[0], 0.1));
        assert_eq!(&e.returns[1..], &[0.0, 0.0, 0.0]);
        // A long decided at the last bar is never traded.
        let e = units(
            &[0.0, 0.0, 0.0, 0.0, 1.0],
            Fill::NextClose,
            Costs::default(),
        );
        assert!(e.returns.iter().all(|r| *r == 0.0));
        assert!(e.trades.is_empty());
        assert_eq!(e.traded, 0.0);
    }

    /// The peers' arithmetic by hand: 10 bps fees on the notional at the slipped price, 5 bps
    /// slippage; long at bar 0's close, reversed short at bar 1's close, flat at bar 2's.
    #[test]
    fn costs_are_charged_on_traded_notional() {
        let costs = Costs {
            fees_bps: 10.0,
            slippage_bps: 5.0,
        };
        let (f, s) = (0.001, 0.0005);
        let e = units(&[1.0, -1.0, 0.0, 0.0, 0.0], Fill::NextClose, costs);
        // Buy at 100.05 with all the cash, fees included.
        let (buy0, long) = (100.0 * (1.0 + s), 1.0 / (100.0 * (1.0 + s) * (1.0 + f)));
        // Sell them at 109.945, then short with all the cash.
        let sell1 = 110.0 * (1.0 - s);
        let cash1 = long * sell1 * (1.0 - f);
        let short = cash1 / (sell1 * (1.0 + f));
        let cash1 = cash1 + short * sell1 * (1.0 - f);
        let equity1 = cash1 - short * 110.0;
        // The close's trades fall in bar 1's return.
        assert!(close_to(e.returns[0], equity1 - 1.0), "{}", e.returns[0]);
        // Cover at 99.0495 on bar 2's close.
        let buy2 = 99.0 * (1.0 + s);
        let cash2 = cash1 - short * buy2 * (1.0 + f);
        assert!(close_to(e.returns[1], cash2 / equity1 - 1.0));
        assert_eq!(&e.returns[2..], &[0.0, 0.0]);
        assert_eq!(e.trades.len(), 2);
        let (l, sh) = (e.trades[0], e.trades[1]);
        assert_eq!((l.entry_bar, l.exit_bar, l.direction), (0, 1, 1));
        assert!(close_to(l.entry_price, buy0) && close_to(l.exit_price, sell1));
        let long_fees = long * buy0 * f + long * sell1 * f;
        assert!(close_to(l.fees, long_fees));
        assert!(close_to(l.slippage, long * (100.0 + 110.0) * s));
        // vectorbt's trade return: profit over the entry notional.
        let pnl = long * (sell1 - buy0) - long_fees;
        assert!(close_to(l.ret, pnl / (long * buy0)));
        assert_eq!((sh.entry_bar, sh.exit_bar, sh.direction), (1, 2, -1));
        let pnl = short * (sell1 - buy2) - short * sell1 * f - short * buy2 * f;
        assert!(close_to(sh.ret, pnl / (short * sell1)));
        assert!(!sh.open);
        assert!(close_to(e.fees, long_fees + short * (sell1 + buy2) * f));
    }

    #[test]
    fn next_open_fill_splits_the_bar() {
        // Long decided at bar 0, filled at bar 1's open (105): earns 110/105 − 1 in bar 1.
        let e = units(&[1.0, 0.0, 0.0, 0.0, 0.0], Fill::NextOpen, Costs::default());
        assert!(close_to(e.returns[0], 110.0 / 105.0 - 1.0));
        // Flat from bar 2's open (100): the long still earns the move into it, 100/110 − 1.
        assert!(close_to(e.returns[1], 100.0 / 110.0 - 1.0));
        assert!(close_to(e.returns[2], 0.0));
        assert_eq!(e.trades.len(), 1);
        assert_eq!((e.trades[0].entry_bar, e.trades[0].exit_bar), (1, 2));
        assert!(close_to(e.trades[0].ret, 100.0 / 105.0 - 1.0));
    }

    /// Held units differ from a constant fraction once the price moves: a short held in units
    /// gains `P0/P1 − 1`-style amounts on equity, the fraction rebalances every bar.
    #[test]
    fn units_are_held_and_target_weight_rebalances_at_a_cost() {
        let short = [-1.0, -1.0, -1.0, -1.0, -1.0];
        let held = units(&short, Fill::NextClose, Costs::default());
        // Short 1/100 units: equity 1 − (P − 100)/100 at each close.
        for (k, r) in held.returns.iter().enumerate() {
            let before = 2.0 - if k == 0 { 100.0 } else { CLOSE[k] } / 100.0;
            let after = 2.0 - CLOSE[k + 1] / 100.0;
            assert!(close_to(*r, after / before - 1.0), "bar {}: {r}", k + 1);
        }
        assert_eq!(held.trades.len(), 1);
        let weight = |costs| {
            execute(
                &OPEN,
                &CLOSE,
                &short,
                Fill::NextClose,
                costs,
                PositionModel::TargetWeight,
            )
        };
        // Without costs: −1 × each bar's move, the old constant-fraction returns.
        let free = weight(Costs::default());
        for (k, r) in free.returns.iter().enumerate() {
            assert!(
                close_to(*r, -(CLOSE[k + 1] / CLOSE[k] - 1.0)),
                "bar {}",
                k + 1
            );
        }
        assert!(free.traded > held.traded);
        // With costs every rebalancing pays: lower equity, and fees on more than two fills.
        let costs = Costs {
            fees_bps: 10.0,
            slippage_bps: 0.0,
        };
        let charged = weight(costs);
        let units_fees = units(&short, Fill::NextClose, costs).fees;
        assert!(
            charged.fees > units_fees,
            "{} vs {units_fees}",
            charged.fees
        );
        // Every fill belongs to one trade.
        let by_trade: f64 = charged.trades.iter().map(|t| t.fees).sum();
        assert!(close_to(charged.fees, by_trade));
    }

    #[test]
    fn a_trade_at_its_own_price_returns_zero() {
        // Bought at 99 (bar 2's close), sold at 99 (bar 3's): no costs, no gain.
        let e = units(
            &[0.0, 0.0, 1.0, 0.0, 0.0],
            Fill::NextClose,
            Costs::default(),
        );
        assert_eq!(e.trades.len(), 1);
        assert_eq!(e.trades[0].ret, 0.0);
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
        let e = units(
            &[0.0, 0.0, 1.0, 1.0, 1.0],
            Fill::NextClose,
            Costs::default(),
        );
        assert_eq!(e.trades.len(), 1);
        assert!(e.trades[0].open);
        assert_eq!(e.trades[0].exit_bar, 4);
        assert!(close_to(e.trades[0].ret, 108.9 / 99.0 - 1.0));
    }
}
