//! From a prediction to an order intent: side from the sign, quantity from the size, a limit
//! a few basis points through the reference price on the tick grid.

use serde::{Deserialize, Serialize};

use super::config::TradingConfig;

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// An order intent that passed or is about to pass the pre-trade controls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderIntent {
    /// The algorithm.
    pub algo_id: String,
    /// The instrument.
    pub instrument: String,
    /// Buy or sell.
    pub side: Side,
    /// Quantity, at least 1.
    pub quantity: u64,
    /// Limit price, on the tick grid.
    pub limit_price: f64,
    /// The reference price the collar is measured from.
    pub reference_price: f64,
    /// The model's prediction.
    pub prediction: f64,
    /// The model.
    pub model: String,
    /// Its version.
    pub version: String,
}

/// What the caller may set instead of the derived values (a strategy that prices its own
/// orders); both still pass every control.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    /// Quantity instead of `|p| × quantity-scale`.
    pub quantity: Option<u64>,
    /// Limit instead of the reference moved by `limit-offset-bps`.
    pub limit_price: Option<f64>,
}

/// Side and quantity of a prediction, `None` inside the dead band.
pub fn derive(
    config: &TradingConfig,
    prediction: f64,
    reference_price: f64,
    overrides: Overrides,
) -> Option<(Side, u64, f64)> {
    if prediction.abs() <= config.dead_band {
        return None;
    }
    let side = if prediction > 0.0 {
        Side::Buy
    } else {
        Side::Sell
    };
    let quantity = overrides.quantity.unwrap_or_else(|| {
        let q = (prediction.abs() * config.quantity_scale).round();
        // Saturating float-to-int: a huge prediction becomes a huge quantity that the volume
        // control then refuses.
        (q as u64).max(1)
    });
    let limit = overrides.limit_price.unwrap_or_else(|| {
        let sign = if side == Side::Buy { 1.0 } else { -1.0 };
        let raw = reference_price * (1.0 + sign * config.limit_offset_bps / 10_000.0);
        round_to_tick(raw, config.tick_size, side)
    });
    Some((side, quantity, limit))
}

/// Rounds towards the passive side (down for a buy, up for a sell), so rounding never makes
/// a limit more aggressive than asked.
fn round_to_tick(price: f64, tick: f64, side: Side) -> f64 {
    let ticks = price / tick;
    let ticks = match side {
        Side::Buy => (ticks + 1e-9).floor(),
        Side::Sell => (ticks - 1e-9).ceil(),
    };
    // Printing 101.05 rather than 101.05000000000001.
    let decimals = (-tick.log10()).ceil().max(0.0) as i32;
    let scale = 10f64.powi(decimals);
    (ticks * tick * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_sets_side_and_size_sets_quantity() {
        let c = TradingConfig::default();
        let (side, q, limit) = derive(&c, 0.123, 100.0, Overrides::default()).unwrap();
        assert_eq!((side, q, limit), (Side::Buy, 12, 100.05));
        let (side, q, limit) = derive(&c, -0.004, 100.0, Overrides::default()).unwrap();
        assert_eq!((side, q, limit), (Side::Sell, 1, 99.95));
        assert_eq!(derive(&c, 0.0, 100.0, Overrides::default()), None);
        let o = Overrides {
            quantity: Some(7),
            limit_price: Some(100.5),
        };
        assert_eq!(derive(&c, 0.5, 100.0, o), Some((Side::Buy, 7, 100.5)));
    }
}
