//! The `[trading]` table: how a prediction becomes an order intent, and the pre-trade limits
//! (RTS 6 Art. 15) every intent must pass.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[trading]`. Every key has a default; the limits are deliberately tight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TradingConfig {
    /// Predictions with `|p|` at or below this make no order (`0.0`).
    pub dead_band: f64,
    /// Order quantity per unit of `|p|`, rounded, at least 1 (`100`).
    pub quantity_scale: f64,
    /// How far through the reference price the derived limit goes, in basis points (`5`).
    pub limit_offset_bps: f64,
    /// Price grid: limits are rounded to it (`0.01`).
    pub tick_size: f64,
    /// Price collar: a limit further than this from the reference price is refused, in basis
    /// points (`100`).
    pub price_collar_bps: f64,
    /// Largest quantity × limit of one order (`1000000`).
    pub max_order_value: f64,
    /// Largest quantity of one order (`10000`).
    pub max_order_quantity: u64,
    /// Messages (signals) one algorithm may send per second, sustained, and in a burst (`100`).
    pub max_messages_per_second: u32,
    /// Breaches within `breach-window` after which an algorithm is throttled until an
    /// operator re-enables it (`3`).
    pub throttle_after_breaches: u32,
    /// Window in which breaches count towards the throttle (`60s`).
    #[serde(with = "humantime_serde")]
    pub breach_window: Duration,
    /// Principals allowed to engage and release the kill switch and to re-enable a throttled
    /// algorithm (`["risk-officer"]`).
    pub risk_principals: Vec<String>,
    /// Most algorithms tracked at once; a signal for one more is refused (`10000`).
    pub max_algos: usize,
}

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            dead_band: 0.0,
            quantity_scale: 100.0,
            limit_offset_bps: 5.0,
            tick_size: 0.01,
            price_collar_bps: 100.0,
            max_order_value: 1_000_000.0,
            max_order_quantity: 10_000,
            max_messages_per_second: 100,
            throttle_after_breaches: 3,
            breach_window: Duration::from_secs(60),
            risk_principals: vec!["risk-officer".to_owned()],
            max_algos: 10_000,
        }
    }
}

impl TradingConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// `(key, message)` naming the kebab-case key and the limit.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("trading.quantity-scale", self.quantity_scale),
            ("trading.tick-size", self.tick_size),
            ("trading.price-collar-bps", self.price_collar_bps),
            ("trading.max-order-value", self.max_order_value),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err((key, format!("must be a finite number above 0, got {v}")));
            }
        }
        for (key, v) in [
            ("trading.dead-band", self.dead_band),
            ("trading.limit-offset-bps", self.limit_offset_bps),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((key, format!("must be a finite number at least 0, got {v}")));
            }
        }
        if self.max_order_quantity == 0 {
            return Err((
                "trading.max-order-quantity",
                "must be at least 1".to_owned(),
            ));
        }
        if self.max_messages_per_second == 0 {
            return Err((
                "trading.max-messages-per-second",
                "must be at least 1".to_owned(),
            ));
        }
        if self.throttle_after_breaches == 0 {
            return Err((
                "trading.throttle-after-breaches",
                "must be at least 1".to_owned(),
            ));
        }
        if self.breach_window.is_zero() {
            return Err(("trading.breach-window", "must be greater than 0".to_owned()));
        }
        if self.max_algos == 0 {
            return Err(("trading.max-algos", "must be at least 1".to_owned()));
        }
        Ok(())
    }
}
